//! Unit tests of the event sweep's range arithmetic, prefix arrays, filter check and switch.

use super::*;
use crate::features::def::FeatureSet;

#[test]
fn spans_give_inclusive_day_bounds() {
    // A 30-day window at D: the days (D-30, D].
    assert_eq!(
        Span::Back {
            off: 0,
            w: Some(30)
        }
        .bounds(100),
        (71, 100)
    );
    // Offset 90, 90 days: (D-180, D-90].
    assert_eq!(
        Span::Back {
            off: 90,
            w: Some(90)
        }
        .bounds(1000),
        (821, 910)
    );
    // All history on or before D.
    assert_eq!(Span::Back { off: 0, w: None }.bounds(5), (i64::MIN, 5));
    // A label's (D, D+90].
    assert_eq!(Span::Ahead { h: 90 }.bounds(10), (11, 100));
    // A zero horizon is empty.
    let (lo, hi) = Span::Ahead { h: 0 }.bounds(10);
    assert!(lo > hi);
}

#[test]
fn span_bounds_do_not_overflow_at_the_extremes() {
    let s = Span::Back {
        off: u32::MAX,
        w: Some(u32::MAX),
    };
    let (lo, hi) = s.bounds(i32::MIN);
    assert_eq!(hi, i64::from(i32::MIN) - i64::from(u32::MAX));
    assert_eq!(lo, hi - i64::from(u32::MAX) + 1);
    let (lo, hi) = Span::Ahead { h: u32::MAX }.bounds(i32::MAX);
    assert_eq!(lo, i64::from(i32::MAX) + 1);
    assert_eq!(hi, i64::from(i32::MAX) + i64::from(u32::MAX));
    // Such bounds select nothing / everything without panicking.
    let days = [i32::MIN, -5, 0, 7, i32::MAX];
    assert_eq!(day_range(&days, lo, hi), (5, 5));
    assert_eq!(day_range(&days, i64::MIN, i64::MAX), (0, 5));
}

#[test]
fn day_ranges_include_both_edges_and_whole_days() {
    let days = [3, 5, 5, 5, 8, 10, 10];
    // (D-w, D] with D = 10, w = 5: days 6..=10.
    let (lo, hi) = Span::Back { off: 0, w: Some(5) }.bounds(10);
    assert_eq!(day_range(&days, lo, hi), (4, 7));
    // w = 6 reaches day 5 exactly (D - w + 1 = 5): all three rows of day 5.
    let (lo, hi) = Span::Back { off: 0, w: Some(6) }.bounds(10);
    assert_eq!(day_range(&days, lo, hi), (1, 7));
    // D = 9: day 10 is after D and does not count.
    let (lo, hi) = Span::Back { off: 0, w: None }.bounds(9);
    assert_eq!(day_range(&days, lo, hi), (0, 5));
    // D before the first event.
    assert_eq!(day_range(&days, i64::MIN, 2), (0, 0));
    // A label after D = 5 with horizon 3: days 6..=8.
    let (lo, hi) = Span::Ahead { h: 3 }.bounds(5);
    assert_eq!(day_range(&days, lo, hi), (4, 5));
    // lo > hi and empty slices give empty ranges.
    assert_eq!(day_range(&days, 9, 4), (5, 5));
    assert_eq!(day_range(&[], i64::MIN, i64::MAX), (0, 0));
}

#[test]
fn mask_index_counts_days_and_finds_last_and_first() {
    let days = [1, 1, 2, 4, 4, 4, 7];
    let hit = [false, true, false, true, true, false, false];
    let mut ix = MaskIndex::default();
    ix.build(&days, |i| hit[i]);
    assert_eq!(ix.count(0, 7), 3);
    assert_eq!(ix.distinct_days(0, 7), 2); // days 1 and 4
    assert_eq!(ix.last_day(&days, 0, 7), Some(4));
    assert_eq!(ix.first_day(&days, 0, 7), Some(1));
    // Only day 2..=7: rows [2, 7).
    assert_eq!(ix.count(2, 7), 2);
    assert_eq!(ix.distinct_days(2, 7), 1);
    assert_eq!(ix.first_day(&days, 2, 7), Some(4));
    assert_eq!(ix.last_day(&days, 2, 7), Some(4));
    // Day 7 only: its one row is not masked.
    assert_eq!(ix.count(6, 7), 0);
    assert_eq!(ix.distinct_days(6, 7), 0);
    assert_eq!(ix.last_day(&days, 6, 7), None);
    assert_eq!(ix.first_day(&days, 6, 7), None);
    // Empty ranges anywhere, including the end.
    for a in 0..=7 {
        assert_eq!(ix.count(a, a), 0);
        assert_eq!(ix.last_day(&days, a, a), None);
        assert_eq!(ix.first_day(&days, a, a), None);
    }
    // Rebuilt (reused) for an empty slice.
    ix.build(&[], |_| true);
    assert_eq!(ix.count(0, 0), 0);
    assert_eq!(ix.distinct_days(0, 0), 0);
    assert_eq!(ix.last_day(&[], 0, 0), None);
    assert_eq!(ix.first_day(&[], 0, 0), None);
}

#[test]
fn mask_index_agrees_with_a_scan_on_every_range() {
    // A deterministic pseudo-random slice: days with repeats, mixed hits.
    let mut x: u64 = 18;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut days: Vec<i32> = (0..60).map(|_| (next() % 25) as i32).collect();
    days.sort_unstable();
    let hit: Vec<bool> = (0..60).map(|_| next() % 3 == 0).collect();
    let mut ix = MaskIndex::default();
    ix.build(&days, |i| hit[i]);
    for lo in -2..28i64 {
        for hi in lo - 1..28 {
            let (a, b) = day_range(&days, lo, hi);
            let sel: Vec<i32> = (0..days.len())
                .filter(|&i| hit[i] && i64::from(days[i]) >= lo && i64::from(days[i]) <= hi)
                .map(|i| days[i])
                .collect();
            let mut distinct = sel.clone();
            distinct.dedup();
            assert_eq!(ix.count(a, b), sel.len(), "[{lo}, {hi}]");
            assert_eq!(ix.distinct_days(a, b), distinct.len(), "[{lo}, {hi}]");
            assert_eq!(ix.last_day(&days, a, b), sel.last().copied());
            assert_eq!(ix.first_day(&days, a, b), sel.first().copied());
        }
    }
}

#[test]
fn as_of_readers_are_found_anywhere_in_a_filter() {
    let reads = |s: &str| reads_as_of(&expr::parse(s).expect("parses"));
    assert!(!reads("status == 'completed'"));
    assert!(!reads("event_type in ('a', 'b') and not (amount > 3)"));
    assert!(!reads("coalesce(csat, 0) > max(1, 2)"));
    assert!(reads("days_ago < 30"));
    assert!(reads("resolved_ts is null or days_ago(resolved_ts) < 0"));
    assert!(reads("if(status == 'x', days_ago, 0) > 1"));
    assert!(reads("abs(-days_ago) in (1, 2)"));
}

#[test]
fn the_switch_reads_on_and_off() {
    use std::env::VarError;
    assert_eq!(switch(SWEEP_ENV, Err(VarError::NotPresent), "x"), Ok(true));
    for on in ["on", " ON ", "1", "true", ""] {
        assert_eq!(switch(SWEEP_ENV, Ok(on.into()), "x"), Ok(true), "{on:?}");
    }
    for off in ["off", "Off", "0", "false"] {
        assert_eq!(switch(SWEEP_ENV, Ok(off.into()), "x"), Ok(false), "{off:?}");
    }
    let e = switch(SWEEP_ENV, Ok("maybe".into()), "join path only").unwrap_err();
    assert!(
        e.starts_with("C360_TRAINING_SWEEP=\"maybe\" is not on or off"),
        "{e}"
    );
    assert!(switch(SWEEP_ENV, Err(VarError::NotUnicode("x".into())), "x").is_err());
}

fn churn_signals() -> FeatureSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("features");
    crate::features::find_set(&dir, "churn_signals").expect("the shipped set loads")
}

/// The tree of a ticket filter whose `days_ago` measures `opened_ts`.
fn ticket_node(d: &mut dated::Dated, s: &str) -> Option<dated::Node> {
    let table = crate::source::table_spec("support_tickets").expect("tickets");
    let e = expr::parse(s).expect("parses");
    d.node(&churn_signals(), table, "opened_ts", &e)
        .expect("compiles")
}

#[test]
fn age_tests_of_timestamps_qualify_and_other_date_uses_do_not() {
    use dated::{Cmp, Node};
    let mut d = dated::Dated::default();
    let open = ticket_node(&mut d, "resolved_ts is null or days_ago(resolved_ts) < 0");
    assert_eq!(
        open,
        Some(Node::Or(
            Box::new(Node::Leaf(0)),
            Box::new(Node::Age {
                col: 0,
                op: Cmp::Lt,
                k: 0
            })
        ))
    );
    assert_eq!(d.ages, vec!["resolved_ts".to_string()]);
    // A literal on the left flips the comparison; `days_ago` is the feature's own
    // timestamp; a negative literal is read whole.
    let n = ticket_node(&mut d, "-1 >= days_ago(resolved_ts) and days_ago > 7");
    assert_eq!(
        n,
        Some(Node::And(
            Box::new(Node::Age {
                col: 0,
                op: Cmp::Le,
                k: -1
            }),
            Box::new(Node::Age {
                col: 1,
                op: Cmp::Gt,
                k: 7
            })
        ))
    );
    assert_eq!(
        d.ages,
        vec!["resolved_ts".to_string(), "opened_ts".to_string()]
    );
    // A date-independent part is one leaf, whatever its shape; an equal one is shared.
    let again = ticket_node(&mut d, "not (resolved_ts is null) or days_ago > 1");
    let gt1 = || {
        Box::new(Node::Age {
            col: 1,
            op: Cmp::Gt,
            k: 1,
        })
    };
    assert_eq!(again, Some(Node::Or(Box::new(Node::Leaf(1)), gt1())));
    let shared = ticket_node(&mut d, "resolved_ts is null and days_ago > 1");
    assert_eq!(shared, Some(Node::And(Box::new(Node::Leaf(0)), gt1())));
    assert_eq!(d.leaves.len(), 2);
    for refused in [
        "days_ago(resolved_ts) < days_ago",
        "days_ago(resolved_ts) < 1.5",
        "abs(days_ago) < 3",
        "days_ago(resolved_ts) + 1 < 3",
        "days_ago in (1, 2)",
        "if(csat > 3, days_ago, 0) > 1",
    ] {
        assert_eq!(ticket_node(&mut d, refused), None, "{refused}");
    }
}

/// One row's inputs, by hand.
struct Hand {
    leaves: Vec<Option<bool>>,
    days: Vec<Option<i32>>,
}

impl dated::RowInputs for Hand {
    fn leaf(&self, i: usize) -> Option<bool> {
        self.leaves[i]
    }
    fn day(&self, i: usize) -> Option<i32> {
        self.days[i]
    }
}

#[test]
fn date_dependent_filters_follow_three_valued_logic() {
    use dated::{eval, Cmp, Node};
    let age_lt0 = || Node::Age {
        col: 0,
        op: Cmp::Lt,
        k: 0,
    };
    let open = Node::Or(Box::new(Node::Leaf(0)), Box::new(age_lt0()));
    let row = |null: bool, resolved: Option<i32>| Hand {
        leaves: vec![Some(null)],
        days: vec![resolved],
    };
    // At D = -10 (before 1970): resolved on D is closed, the day after open, never open.
    assert_eq!(eval(&open, &row(false, Some(-10)), -10), Some(false));
    assert_eq!(eval(&open, &row(false, Some(-9)), -10), Some(true));
    assert_eq!(eval(&open, &row(true, None), -10), Some(true));
    // Nulls: false and null is false, true and null null, true or null true, false or
    // null null, not null null; comparisons with a null day are null.
    let null_age = row(false, None);
    assert_eq!(eval(&age_lt0(), &null_age, 5), None);
    let and = |l: Option<bool>| {
        let h = Hand {
            leaves: vec![l],
            days: vec![None],
        };
        (
            eval(
                &Node::And(Box::new(Node::Leaf(0)), Box::new(age_lt0())),
                &h,
                5,
            ),
            eval(
                &Node::Or(Box::new(Node::Leaf(0)), Box::new(age_lt0())),
                &h,
                5,
            ),
        )
    };
    assert_eq!(and(Some(false)), (Some(false), None));
    assert_eq!(and(Some(true)), (None, Some(true)));
    assert_eq!(and(None), (None, None));
    assert_eq!(eval(&Node::Not(Box::new(age_lt0())), &null_age, 5), None);
    // Ages are exact at the extremes of the day range.
    let far = Node::Age {
        col: 0,
        op: Cmp::Eq,
        k: i64::from(i32::MAX) - i64::from(i32::MIN),
    };
    let h = Hand {
        leaves: vec![],
        days: vec![Some(i32::MIN)],
    };
    assert_eq!(eval(&far, &h, i32::MAX), Some(true));
}
