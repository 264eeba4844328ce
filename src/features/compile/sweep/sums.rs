//! Exact float sums of the event sweep, bit-identical to a snapshot's `exact_sum`
//! (`compile/aggregates.rs`).
//!
//! `exact_sum` splits each value `x` into `whole = floor(x)`, `high = floor(frac x 2^33) /
//! 2^33` and `low = frac - high` (`frac = x - whole`), sums each part per group in f64 and
//! adds the three sums in that order. For `x` in `[2^-14, 2^33)` (or `+0.0`) the parts
//! are `ka`, `kb x 2^-33`, `kc x 2^-66` with whole numbers `ka, kb, kc < 2^33`, so with at
//! most 2^20 rows a group every partial sum stays below 2^53 of its unit and the f64 sums
//! are exact whatever their order. Here the parts are kept as those whole numbers in
//! per-customer i64 prefix sums (exact), a range `[a, b)` gives `P[b] - P[a]` per part,
//! converted back to f64 (exact: below 2^53), scaled by 2^-33 / 2^-66 (exact: powers of
//! two, no underflow) and added as `(a + b) + c`: the snapshot's value, bit for bit.
//!
//! Values outside that range (or NaN, infinities, `-0.0`), or a customer with more than
//! [`MAX_ROWS`] rows, are not summed here: the feature takes the join path for that batch
//! ([`in_range`] decides).

/// 2^33, the scale of the second part.
const SCALE_B: f64 = 8_589_934_592.0;
/// 2^66, the scale of the third part.
const SCALE_C: f64 = 73_786_976_294_838_206_464.0;
/// The smallest nonzero value summed exactly: 2^-14.
const MIN_VALUE: f64 = 1.0 / 16_384.0;
/// The most rows one customer may have in a batch's sweep for exact part sums: 2^20.
pub(crate) const MAX_ROWS: usize = 1 << 20;

/// Whether `x` is summed exactly by the parts: `+0.0`, or in `[2^-14, 2^33)`.
pub(crate) fn in_range(x: f64) -> bool {
    x.to_bits() == 0 || (MIN_VALUE..SCALE_B).contains(&x)
}

/// The three parts of `x` as whole numbers `(ka, kb, kc)`, as `exact_sum` computes them
/// (every step exact for `x` [`in_range`]).
pub(crate) fn parts(x: f64) -> [i64; 3] {
    let whole = x.floor();
    let frac = x - whole;
    let kb = (frac * SCALE_B).floor();
    let low = frac - kb / SCALE_B;
    [whole as i64, kb as i64, (low * SCALE_C) as i64]
}

/// Prefix sums of the parts of one customer's masked values.
#[derive(Default)]
pub(crate) struct PartSums {
    /// `p[i]`: the part sums of the masked rows before `i`.
    p: Vec<[i64; 3]>,
}

impl PartSums {
    /// Rebuilds the prefix sums for `n` rows: `hit(i)` whether row `i` counts, `value(i)`
    /// its value (read only where it counts, and [`in_range`] there).
    pub(crate) fn build(
        &mut self,
        n: usize,
        hit: impl Fn(usize) -> bool,
        value: impl Fn(usize) -> f64,
    ) {
        self.p.clear();
        self.p.reserve(n + 1);
        let mut acc = [0i64; 3];
        self.p.push(acc);
        for i in 0..n {
            if hit(i) {
                let k = parts(value(i));
                for j in 0..3 {
                    acc[j] += k[j];
                }
            }
            self.p.push(acc);
        }
    }

    /// The exact sum of the masked values in `[a, b)` (`a <= b <= n`), as `exact_sum`
    /// gives it: `(whole + high) + low` in f64.
    pub(crate) fn sum(&self, a: usize, b: usize) -> f64 {
        let (x, y) = (self.p[a], self.p[b]);
        from_parts([y[0] - x[0], y[1] - x[1], y[2] - x[2]])
    }
}

/// The sum whose whole-number part sums ([`parts`] of each value, added) are `k`, as
/// `exact_sum` gives it: `(whole + high) + low` in f64 (exact conversions for part sums
/// of at most [`MAX_ROWS`] values [`in_range`]).
pub(crate) fn from_parts(k: [i64; 3]) -> f64 {
    let whole = k[0] as f64;
    let high = k[1] as f64 / SCALE_B;
    let low = k[2] as f64 / SCALE_C;
    (whole + high) + low
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot's way: three f64 part sums in row order, added in order.
    fn snapshot_sum(xs: &[f64]) -> f64 {
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for &x in xs {
            let whole = x.floor();
            let frac = x - whole;
            let high = (frac * SCALE_B).floor() / SCALE_B;
            a += whole;
            b += high;
            c += frac - high;
        }
        (a + b) + c
    }

    #[test]
    fn part_sums_equal_the_snapshot_bit_for_bit() {
        let mut xs = vec![0.1, 1e8 + 0.3, 0.0, MIN_VALUE, SCALE_B - 0.5, 12.34, 7.0];
        for i in 0..5000 {
            xs.push(0.1 + f64::from(i) * 0.37);
        }
        let mut ps = PartSums::default();
        ps.build(xs.len(), |i| i % 7 != 3, |i| xs[i]);
        for (a, b) in [(0, xs.len()), (1, 3), (2, 2), (100, 4000), (0, 1)] {
            let kept: Vec<f64> = (a..b).filter(|i| i % 7 != 3).map(|i| xs[i]).collect();
            let want = snapshot_sum(&kept);
            assert_eq!(ps.sum(a, b).to_bits(), want.to_bits(), "[{a}, {b})");
        }
        // A naive f64 prefix sum, differenced, differs from the exact sum (so the test
        // can fail): 1e8 + 0.3 many times, then 0.1 many times.
        let mut ys = vec![1e8 + 0.3; 40];
        ys.extend(std::iter::repeat_n(0.1, 3000));
        let mut prefix = vec![0.0f64];
        for y in &ys {
            prefix.push(prefix[prefix.len() - 1] + y);
        }
        let naive = prefix[ys.len()] - prefix[40];
        let mut ps2 = PartSums::default();
        ps2.build(ys.len(), |_| true, |i| ys[i]);
        let exact = ps2.sum(40, ys.len());
        assert_eq!(exact.to_bits(), snapshot_sum(&ys[40..]).to_bits());
        assert_ne!(naive.to_bits(), exact.to_bits(), "{naive} vs {exact}");
        assert_eq!(ps.sum(0, 0).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn range_excludes_what_parts_cannot_sum_exactly() {
        for x in [0.0, MIN_VALUE, 0.1, 1e8 + 0.3, SCALE_B - 1.0] {
            assert!(in_range(x), "{x}");
        }
        for x in [
            -0.0,
            1e-20,
            SCALE_B,
            2f64.powi(40),
            -1.0,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(!in_range(x), "{x}");
        }
    }
}
