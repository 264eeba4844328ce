//! Per-customer prefix arrays of the event sweep for one filter: counts, distinct days,
//! and the previous / next masked row, each range query O(1) (moved out of `sweep.rs`
//! unchanged, to keep files short).

/// Prefix arrays of one customer's slice for one filter (see the module doc). Every
/// query takes a range `[a, b)` with `a <= b <= len`, as [`super::day_range`] gives.
#[derive(Default)]
pub struct MaskIndex {
    /// `cnt[i]`: masked rows before `i`.
    cnt: Vec<usize>,
    /// `new_day[i]`: masked rows before `i` that are the first masked row of their day.
    new_day: Vec<usize>,
    /// `prev[i]`: 1 + the last masked row before `i` (0: none).
    prev: Vec<usize>,
    /// `next[i]`: the first masked row at or after `i` (`len`: none).
    next: Vec<usize>,
}

impl MaskIndex {
    /// Rebuilds the arrays (reusing their memory) for `days` (sorted) and `hit` (whether
    /// each row passes the filter), of the same length.
    pub fn build(&mut self, days: &[i32], hit: impl Fn(usize) -> bool) {
        let n = days.len();
        for v in [
            &mut self.cnt,
            &mut self.new_day,
            &mut self.prev,
            &mut self.next,
        ] {
            v.clear();
            v.resize(n + 1, 0);
        }
        let mut last_day: Option<i32> = None;
        for (i, &t) in days.iter().enumerate() {
            let h = hit(i);
            self.cnt[i + 1] = self.cnt[i] + usize::from(h);
            let first_of_day = h && last_day != Some(t);
            self.new_day[i + 1] = self.new_day[i] + usize::from(first_of_day);
            self.prev[i + 1] = if h { i + 1 } else { self.prev[i] };
            if h {
                last_day = Some(t);
            }
        }
        self.next[n] = n;
        for i in (0..n).rev() {
            self.next[i] = if hit(i) { i } else { self.next[i + 1] };
        }
    }

    /// Masked rows in `[a, b)`.
    pub fn count(&self, a: usize, b: usize) -> usize {
        self.cnt[b] - self.cnt[a]
    }

    /// Distinct days of the masked rows in `[a, b)` (`a`, `b` on day boundaries).
    pub fn distinct_days(&self, a: usize, b: usize) -> usize {
        self.new_day[b] - self.new_day[a]
    }

    /// The day of the last masked row in `[a, b)`.
    pub fn last_day(&self, days: &[i32], a: usize, b: usize) -> Option<i32> {
        let p = self.prev[b];
        (p > a).then(|| days[p - 1])
    }

    /// The day of the first masked row in `[a, b)`.
    pub fn first_day(&self, days: &[i32], a: usize, b: usize) -> Option<i32> {
        let n = self.next[a];
        (n < b).then(|| days[n])
    }
}
