//! Aggregations shared between the sets of a multi-set snapshot build: an aggregation that
//! an earlier set computed is not computed again for a later set that has the same one,
//! possibly under another name (e.g. `rfm`'s `recency_days` and `churn_signals`'
//! `days_since_last_order`: both the minimum `days_ago` of completed orders).
//!
//! Identity ([`identity`]): the same table, function, column expression, filter, event-time
//! column, window and offset, per-day options, extra columns and output type. Only
//! aggregations whose value does not depend on the order rows are combined in are shared
//! (count, distinct count, any; min, max and sum of non-float values), so a set's column
//! is the same bits whichever set's plan computed it, and its snapshot stays byte-identical
//! to its single-set build. Every set's view of a shared table holds every row its own
//! aggregations count (`multi::set_inputs`), so the same condition counts the same rows.
//!
//! The values are kept aligned to the snapshot's base rows (the customers signed up by the
//! as-of day, in table order), which is the same for every set of one build; a later set's
//! aggregate frame is pruned of the known columns before it is computed (polars drops the
//! unused aggregations from the group-by) and skipped when nothing else is left.

use std::collections::HashMap;

use polars::prelude::*;

use super::def::{AggFn, Feature, FeatureSet, Kind};
use super::expr::Ty;
use crate::source::CUSTOMER_KEY;

/// The identity of `f`'s aggregation when it can be shared (see the module), else `None`.
pub fn identity(f: &Feature) -> Option<String> {
    let Kind::Agg(a) = &f.kind else {
        return None;
    };
    let exact = match a.func {
        AggFn::Count | AggFn::DistinctCount | AggFn::Any => true,
        // Float min/max may pick -0.0 or 0.0, and float sums round, by row order.
        AggFn::Min | AggFn::Max | AggFn::Sum => f.ty != Ty::Float,
        AggFn::Mean | AggFn::First | AggFn::Last => false,
    };
    if !exact || a.per_day {
        return None;
    }
    Some(format!(
        "{}|{:?}|{:?}|{:?}|{}|{:?}|{}|{}|{:?}|{:?}",
        a.table.name,
        a.func,
        a.column,
        a.filter,
        a.ts,
        a.window,
        a.per_day,
        a.exclude_first_day,
        a.extra_columns,
        f.ty
    ))
}

/// The aligned columns of the shareable aggregations computed so far in one build, by
/// identity. Empty at the start of each build; used for one as-of day only.
#[derive(Default)]
pub struct SharedAggs {
    by_identity: HashMap<String, Column>,
    /// Number of columns taken from here instead of computed (for the debug log and tests).
    pub reused: usize,
}

impl SharedAggs {
    /// Splits `agg` (a set's per-table aggregate frame, keyed by the customer key) into the
    /// frame still to compute (`None`: every column is known) and the known columns, renamed
    /// to `set`'s feature names, aligned to the base rows.
    pub fn take_known(
        &mut self,
        set: &FeatureSet,
        mut agg: LazyFrame,
    ) -> PolarsResult<(Option<LazyFrame>, Vec<Column>)> {
        if self.by_identity.is_empty() {
            return Ok((Some(agg), Vec::new()));
        }
        let schema = agg.collect_schema()?;
        let mut keep = vec![col(CUSTOMER_KEY)];
        let mut known = Vec::new();
        for name in schema.iter_names() {
            if name.as_str() == CUSTOMER_KEY {
                continue;
            }
            let found = set
                .feature(name.as_str())
                .and_then(identity)
                .and_then(|id| self.by_identity.get(&id));
            match found {
                Some(c) => known.push(c.clone().with_name(name.clone())),
                None => keep.push(col(name.as_str())),
            }
        }
        self.reused += known.len();
        Ok(match (known.is_empty(), keep.len()) {
            (true, _) => (Some(agg), known),
            (false, 1) => (None, known),
            (false, _) => (Some(agg.select(keep)), known),
        })
    }

    /// Remembers the shareable ones among `columns` (aligned columns of `set`'s features).
    pub fn remember(&mut self, set: &FeatureSet, columns: &[Column]) {
        for c in columns {
            if let Some(id) = set.feature(c.name().as_str()).and_then(identity) {
                self.by_identity.entry(id).or_insert_with(|| c.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parsed(features: &str) -> FeatureSet {
        let text = format!("name = \"s\"\nversion = 1\n{features}");
        super::super::def::parse(&text, Path::new("s.toml")).expect("valid set")
    }

    #[test]
    fn only_order_independent_aggregations_with_equal_definitions_share_an_identity() {
        let s = parsed(
            "[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"min\"\ncolumn = \"days_ago\"\nwhere = \"status == 'completed'\"\n\
             [[feature]]\nname = \"b\"\ntable = \"orders\"\nagg = \"min\"\ncolumn = \"days_ago\"\nwhere = \"status == 'completed'\"\n\
             [[feature]]\nname = \"c\"\ntable = \"orders\"\nagg = \"min\"\ncolumn = \"days_ago\"\nwhere = \"status == 'returned'\"\n\
             [[feature]]\nname = \"d\"\ntable = \"orders\"\nagg = \"count\"\nwindow_days = 30\n\
             [[feature]]\nname = \"e\"\ntable = \"orders\"\nagg = \"count\"\nwindow_days = 30\noffset_days = 30\n\
             [[feature]]\nname = \"f\"\ntable = \"orders\"\nagg = \"sum\"\ncolumn = \"amount\"\n\
             [[feature]]\nname = \"g\"\ntable = \"orders\"\nagg = \"max\"\ncolumn = \"amount\"\n\
             [[feature]]\nname = \"h\"\ntable = \"orders\"\nagg = \"mean\"\ncolumn = \"days_ago\"\n\
             [[feature]]\nname = \"i\"\ntable = \"orders\"\nagg = \"max\"\ncolumn = \"amount\"\nper_day = \"sum\"\n",
        );
        let id = |n: &str| identity(s.feature(n).expect("feature"));
        assert!(id("a").is_some());
        assert_eq!(id("a"), id("b"), "same aggregation, another name");
        assert_ne!(id("a"), id("c"), "another filter");
        assert!(id("d").is_some() && id("e").is_some());
        assert_ne!(id("d"), id("e"), "another offset");
        for n in ["f", "g", "h", "i"] {
            assert_eq!(id(n), None, "{n}: float, mean or per-day: never shared");
        }
    }
}
