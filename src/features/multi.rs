//! One pass for several feature sets: `c360 features build SET... --as-of D` and the
//! `features` step of `c360 run`.
//!
//! The tables the sets read are read and contract-checked once ([`load_union`]: the union
//! of their columns and, for a snapshot, of the rows their aggregations can count). Each
//! set then sees its own view of that load ([`set_inputs`]): exactly the columns and rows
//! the single-set load would have kept, in the same order, so its snapshot is computed by
//! the very plan a single-set build runs and equals it cell for cell (and its Parquet
//! bytes). An aggregation that an earlier set computed (same table, function, column,
//! filter, window...: see [`super::shared`]) is not computed again for a later set; only
//! order-independent ones are shared, so the bytes stay the same. Sets are computed one
//! after the other (the next set's view of the tables is cut on a thread meanwhile); each
//! is committed (with its own manifest) on a thread while the next is computed, at most
//! one commit pending: at most two snapshots are in memory besides
//! the shared tables, and a table is freed after the last set that reads it.
//!
//! Why not one polars plan over every set (`collect_all`): the sets' aggregations filter
//! the shared rows differently (windows, statuses), so the only sub-plan they share is the
//! scan of an in-memory frame, which costs nothing; the expensive shared work is the read
//! and the contract check, which this module does once. Computing the sets one by one also
//! keeps each set's plan (and so its output) exactly that of a single-set build, and keeps
//! peak memory at one set's aggregates instead of every set's at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use polars::prelude::*;

use super::{compile, load_union, pii_extra, snapshot_of, Built, FeatureError, FeatureSet, Result};
use crate::names::AsOf;
use crate::offline::{self, Manifest};
use crate::source::{self, Source, Table, CUSTOMER_KEY};
use crate::telemetry::peak_rss_mb;

/// The extra (non-contract) columns the sets read from `table`, each once, in the order
/// the sets name them.
pub(super) fn union_extra(sets: &[&FeatureSet], table: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sets {
        for c in s.extra_columns.get(table).into_iter().flatten() {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out
}

/// The customers columns a set's snapshot keeps: what its plan reads, the id, the signup
/// date and the set's extra columns.
pub(super) fn customer_columns(set: &FeatureSet) -> BTreeSet<String> {
    let mut keep = compile::columns_read(set, "customers");
    keep.extend(["customer_id".to_string(), "signup_ts".to_string()]);
    if let Some(extra) = set.extra_columns.get("customers") {
        keep.extend(extra.iter().cloned());
    }
    keep
}

/// The rows of `table` some set's snapshot at `day` counts: the OR of the sets'
/// [`compile::snapshot_rows`] over the sets that aggregate the table (None: keep every
/// row, because one of them needs all, or none aggregates it).
pub(super) fn union_rows(sets: &[&FeatureSet], table: &str, day: i32) -> Result<Option<Expr>> {
    let mut conds = Vec::new();
    for s in sets.iter().filter(|s| s.tables().contains(table)) {
        match compile::snapshot_rows(s, table, day)? {
            Some(c) => conds.push(c),
            None => return Ok(None),
        }
    }
    Ok(compile::or_all(conds))
}

/// Set `i` of `sets`' input frames, cut from the shared load `shared` to exactly what a
/// single-set load keeps. A table no later set reads is moved out of `shared` (its memory
/// is freed once this set's aggregates are computed).
pub fn set_inputs(
    sets: &[&FeatureSet],
    i: usize,
    shared: &mut HashMap<&'static str, Table>,
    day: i32,
) -> Result<compile::Inputs> {
    let set = sets.get(i).ok_or_else(|| FeatureError::Polars {
        set: "(none)".into(),
        message: format!("no feature set number {i} among {}", sets.len()),
    })?;
    let mut inputs = compile::Inputs::new();
    for n in set.tables() {
        let later = sets.iter().skip(i + 1).any(|s| s.tables().contains(n));
        let table = if later {
            shared.get(n).cloned()
        } else {
            shared.remove(n)
        };
        let table = table.ok_or_else(|| FeatureError::Polars {
            set: set.name.to_string(),
            message: format!("the {n} table was not loaded"),
        })?;
        let frame = if sets.len() == 1 {
            table.frame
        } else {
            view(set, sets, n, table.frame, day)?
        };
        inputs.insert(n, frame);
    }
    Ok(inputs)
}

/// `set`'s view of the shared frame of table `n`: the columns (and, when another set also
/// reads the table, the rows) a load for `set` alone keeps. Dropping columns keeps the
/// others' order; filtering keeps the row order and the chunks (one a load batch), so
/// the plan sees the frame a single-set load gives.
fn view(
    set: &FeatureSet,
    sets: &[&FeatureSet],
    n: &'static str,
    frame: LazyFrame,
    day: i32,
) -> Result<LazyFrame> {
    let perr = |e: PolarsError| FeatureError::Computing {
        set: set.name.to_string(),
        source: e,
    };
    let Some(spec) = source::table_spec(n) else {
        return Ok(frame);
    };
    let keep = if n == "customers" {
        customer_columns(set)
    } else if spec.references_customers {
        compile::columns_read(set, n)
    } else {
        return Ok(frame);
    };
    let mut df = frame.clone().collect().map_err(perr)?;
    let mut changed = false;
    // As `Table::keep_columns`: only a frame with customer keys was cut to columns.
    if df.column(CUSTOMER_KEY).is_ok() {
        let drop: Vec<PlSmallStr> = df
            .get_column_names()
            .into_iter()
            .filter(|c| c.as_str() != CUSTOMER_KEY && !keep.contains(c.as_str()))
            .cloned()
            .collect();
        for c in drop {
            df.drop_in_place(c.as_str()).map_err(perr)?;
            changed = true;
        }
    }
    let shared_rows = sets
        .iter()
        .any(|s| s.name != set.name && s.tables().contains(n));
    if n != "customers" && shared_rows {
        if let Some(rows) = compile::snapshot_rows(set, n, day)? {
            let mask = df
                .clone()
                .lazy()
                .select([rows.alias("_keep")])
                .collect()
                .map_err(perr)?;
            // One chunk: `filter` then cuts it along the frame's chunks (a mask chunked
            // otherwise would make both one chunk).
            let mask = mask
                .column("_keep")
                .and_then(|c| c.bool().cloned())
                .map_err(perr)?
                .rechunk()
                .into_owned();
            // The set keeps every shared row (e.g. churn_signals' orders hold rfm's):
            // no copy.
            if mask.null_count() > 0 || !mask.all() {
                df = df.filter(&mask).map_err(perr)?;
                changed = true;
            }
        }
    }
    // Unchanged: the shared frame itself, as a load for this set alone holds it.
    Ok(if changed { df.lazy() } else { frame })
}

/// The snapshots of `sets` at `as_of` from one load of their tables: `each(i, frame)` gets
/// set `i`'s snapshot (the frame [`super::snapshot`] gives for it alone) as soon as it is
/// computed, before the next set is. Errors name the set, or the table and column of a
/// contract violation.
pub fn snapshots_each(
    sets: &[&FeatureSet],
    src: &Source,
    as_of: NaiveDate,
    each: &mut dyn FnMut(usize, DataFrame) -> Result<()>,
) -> Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let day = AsOf::from(as_of).day_number();
    let loaded = load_union(sets, src, &[], &super::cut::RowCut::Snapshot(day))?;
    tracing::debug!(peak_mb = peak_rss_mb(), sets = sets.len(), "tables loaded");
    let mut shared = loaded.tables;
    // Aggregations computed once for every set that has them (see `super::shared`).
    let aggs = std::cell::RefCell::new(super::shared::SharedAggs::default());
    let mut inputs = set_inputs(sets, 0, &mut shared, day)?;
    std::thread::scope(|scope| -> Result<()> {
        for i in 0..sets.len() {
            // The next set's view of the tables (a copy of the rows it keeps of a shared
            // table) is cut on a thread while this set is computed: the same frames as
            // cut afterwards, since they come from the shared load alone.
            let next = (i + 1 < sets.len()).then(|| {
                let mut tables = std::mem::take(&mut shared);
                scope.spawn(move || {
                    let next = set_inputs(sets, i + 1, &mut tables, day);
                    (tables, next)
                })
            });
            let t = std::time::Instant::now();
            let computed = snapshot_of(sets[i], inputs, as_of, (sets.len() > 1).then_some(&aggs));
            // Joined before anything is returned: an error of this set (or of its commit)
            // is the one reported, as when the next set's view is cut afterwards.
            let next = next.map(|h| {
                h.join().map_err(|_| FeatureError::Polars {
                    set: sets
                        .get(i + 1)
                        .map(|s| s.name.to_string())
                        .unwrap_or_default(),
                    message:
                        "cutting its view of the tables failed unexpectedly (its thread panicked)"
                            .into(),
                })
            });
            let df = computed?;
            tracing::info!(set = %sets[i].name, %as_of, rows = df.height(), secs = t.elapsed().as_secs_f64(), "features computed");
            tracing::debug!(peak_mb = peak_rss_mb(), "features computed");
            each(i, df)?;
            inputs = match next {
                Some(joined) => {
                    let (tables, next) = joined?;
                    shared = tables;
                    next?
                }
                None => compile::Inputs::new(),
            };
        }
        Ok(())
    })
}

/// [`snapshots_each`], collected: one frame per set, in the sets' order.
pub fn snapshots(sets: &[&FeatureSet], src: &Source, as_of: NaiveDate) -> Result<Vec<DataFrame>> {
    let mut out = Vec::with_capacity(sets.len());
    snapshots_each(sets, src, as_of, &mut |_, df| {
        out.push(df);
        Ok(())
    })?;
    Ok(out)
}

/// A set's committed snapshot as found before building: reusable, or to be built (and
/// then committed replacing exactly `replacing`, the manifest version read).
enum Found {
    Reused(Box<Built>),
    Build {
        prefix: String,
        fingerprints: BTreeMap<String, String>,
        replacing: Option<String>,
    },
}

/// Builds (or reuses) and commits the snapshots of `sets` at `as_of`, one per set, in the
/// sets' order (a set named twice is built once and listed once). Each set is decided on
/// its own, as [`super::build_snapshot`] does: a committed snapshot with the same
/// definition hash and source fingerprints that verifies is reused (unless `force`); the
/// others are computed from one load of the tables they read (see the module) and
/// committed each with its own manifest and run id. A set committed before a later one
/// fails stays committed.
pub fn build_snapshots(
    sets: &[&FeatureSet],
    source_uri: &str,
    st: &dyn crate::store::ObjectStore,
    as_of: NaiveDate,
    force: bool,
) -> Result<Vec<Built>> {
    let mut unique: Vec<&FeatureSet> = Vec::new();
    for s in sets {
        if !unique.iter().any(|u| u.name == s.name) {
            unique.push(s);
        }
    }
    let src = Source::open(source_uri)?;
    let mut fingerprint_of: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut found = Vec::with_capacity(unique.len());
    for s in &unique {
        // Fingerprints are file metadata: a committed snapshot of the same definition and
        // source is reused without reading the data again.
        let mut fingerprints = BTreeMap::new();
        for t in s.tables() {
            if let Some(spec) = source::table_spec(t) {
                let fp = match fingerprint_of.get(t) {
                    Some(fp) => fp.clone(),
                    None => {
                        let loc = src.locate(spec)?;
                        let fp = src.fingerprint(&loc);
                        fingerprint_of.insert(t, fp.clone());
                        fp
                    }
                };
                fingerprints.insert(t.to_string(), fp);
            }
        }
        found.push(committed(s, st, as_of, force, fingerprints)?);
    }
    let mut built: Vec<Option<Built>> = Vec::with_capacity(unique.len());
    // The sets to build, by their place in `unique`, with what their commit replaces.
    let mut pending = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        match f {
            Found::Reused(b) => built.push(Some(*b)),
            Found::Build {
                prefix,
                fingerprints,
                replacing,
            } => {
                built.push(None);
                pending.push((i, Some((prefix, fingerprints, replacing))));
            }
        }
    }
    // Computed in the order that frees memory soonest: the sets reading the most tables
    // first (the tables no later set reads are freed after them, and the set that keeps
    // the most shared rows uses the shared frames without a copy). The output is the same
    // in any order.
    pending.sort_by_key(|(i, _)| std::cmp::Reverse(unique[*i].tables().len()));
    let to_build: Vec<&FeatureSet> = pending.iter().map(|(i, _)| unique[*i]).collect();
    // Each set's snapshot is encoded, written and committed on its own thread while the
    // next set is computed: at most one commit is pending (the previous one is waited
    // for before the next starts), so at most two snapshots are in memory. The bytes are
    // those of a sequential commit (the same frame through the same writer), and a set
    // is committed before a later one's commit starts, as sequentially.
    std::thread::scope(|scope| -> Result<()> {
        type Pending<'s> = (usize, std::thread::ScopedJoinHandle<'s, Result<Built>>);
        let mut running: Option<Pending<'_>> = None;
        let finish = |p: Option<Pending<'_>>, built: &mut Vec<Option<Built>>| -> Result<()> {
            let Some((i, handle)) = p else {
                return Ok(());
            };
            let b = handle.join().map_err(|_| FeatureError::Polars {
                set: unique
                    .get(i)
                    .map(|s| s.name.to_string())
                    .unwrap_or_default(),
                message: "writing the snapshot failed unexpectedly (its thread panicked)".into(),
            })??;
            if let Some(slot) = built.get_mut(i) {
                *slot = Some(b);
            }
            Ok(())
        };
        let computed = snapshots_each(&to_build, &src, as_of, &mut |j, df| {
            let set = to_build[j];
            let (i, target) = match pending.get_mut(j) {
                Some((i, t)) => (*i, t.take()),
                None => (usize::MAX, None),
            };
            let (prefix, fingerprints, replacing) = target.ok_or_else(|| FeatureError::Polars {
                set: set.name.to_string(),
                message: "a snapshot was computed that no set asked for".into(),
            })?;
            finish(running.take(), &mut built)?;
            let handle = scope.spawn(move || {
                commit(
                    set,
                    source_uri,
                    st,
                    as_of,
                    &df,
                    prefix,
                    fingerprints,
                    replacing,
                )
            });
            running = Some((i, handle));
            Ok(())
        });
        // A set computed before a failure is still committed (as sequentially).
        let last = finish(running.take(), &mut built);
        computed.and(last)
    })?;
    built
        .into_iter()
        .zip(&unique)
        .map(|(b, s)| {
            b.ok_or_else(|| FeatureError::Polars {
                set: s.name.to_string(),
                message: "its snapshot was neither reused nor built".into(),
            })
        })
        .collect()
}

/// What is committed for `s` at `as_of`: a snapshot to reuse, or what a build replaces.
/// Reuse verifies: every listed part is checked (size, SHA-256) before it is trusted; a
/// damaged snapshot is built again.
fn committed(
    s: &FeatureSet,
    st: &dyn crate::store::ObjectStore,
    as_of: NaiveDate,
    force: bool,
    fingerprints: BTreeMap<String, String>,
) -> Result<Found> {
    let prefix = offline::partition_prefix(&s.name, s.version, as_of);
    // The commit replaces exactly the manifest version read here (none: create), so a
    // concurrent build that commits in between is never overwritten (this one then uses
    // it, in `commit`).
    let (current, replacing) = match offline::read_manifest_versioned(st, &prefix) {
        Ok(Some((m, v))) => (Some(m), Some(v)),
        Ok(None) => (None, None),
        // An unreadable manifest is replaced (exactly that version).
        Err(offline::OfflineError::BadManifest { .. }) => {
            (None, offline::manifest_version(st, &prefix)?)
        }
        Err(e) => return Err(e.into()),
    };
    if let (false, Some(m)) = (force, current) {
        if m.definition_hash == s.hash && m.source_fingerprints == fingerprints {
            match offline::verify_partition(st, &prefix, &m)? {
                None => {
                    tracing::info!(set = %s.name, %as_of, "snapshot already committed; reusing it");
                    return Ok(Found::Reused(Box::new(Built {
                        manifest: m,
                        prefix,
                        reused: true,
                    })));
                }
                Some(damage) => {
                    tracing::warn!(set = %s.name, %as_of, %damage, "committed snapshot is damaged; building it again");
                }
            }
        }
    }
    Ok(Found::Build {
        prefix,
        fingerprints,
        replacing,
    })
}

/// Commits `df` as `s`'s snapshot at `as_of` with its own manifest and run id.
#[allow(clippy::too_many_arguments)]
fn commit(
    s: &FeatureSet,
    source_uri: &str,
    st: &dyn crate::store::ObjectStore,
    as_of: NaiveDate,
    df: &DataFrame,
    prefix: String,
    fingerprints: BTreeMap<String, String>,
    replacing: Option<String>,
) -> Result<Built> {
    let manifest = Manifest {
        kind: "feature_snapshot".into(),
        name: s.name.to_string(),
        version: s.version,
        as_of,
        files: vec![],
        file_checks: Default::default(),
        rows: 0,
        schema: vec![],
        definition_hash: s.hash.clone(),
        source: source_uri.to_string(),
        source_fingerprints: fingerprints.clone(),
        model: None,
        run_id: offline::new_run_id(),
        created_by: offline::c360_version(),
        created_at: chrono::Utc::now(),
        extra: pii_extra(s),
    };
    let committed = offline::commit_partition_replacing(
        st,
        &prefix,
        df,
        manifest,
        replacing.as_deref(),
        &|_, _| {},
    );
    let m = match committed {
        Ok(m) => m,
        // A concurrent build of the same definition and source committed first: its
        // snapshot is the one this build would have written, so it is used.
        Err(offline::OfflineError::ConcurrentCommit { key }) => {
            match offline::read_manifest(st, &prefix)? {
                Some(m)
                    if m.definition_hash == s.hash
                        && m.source_fingerprints == fingerprints
                        && offline::verify_partition(st, &prefix, &m)?.is_none() =>
                {
                    tracing::info!(set = %s.name, %as_of, "a concurrent build committed the same snapshot first; using it");
                    return Ok(Built {
                        manifest: m,
                        prefix,
                        reused: true,
                    });
                }
                _ => return Err(offline::OfflineError::ConcurrentCommit { key }.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Built {
        manifest: m,
        prefix,
        reused: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped(name: &str) -> FeatureSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("features");
        super::super::find_set(&dir, name).expect("shipped set")
    }

    fn parsed(name: &str, extra: &str) -> FeatureSet {
        let text = format!(
            "name = \"{name}\"\nversion = 1\n[columns.orders]\n{extra} = \"float\"\nwhere_ = \"float\"\n\
             [[feature]]\nname = \"f\"\nagg = \"sum\"\ntable = \"orders\"\ncolumn = \"{extra} + where_\"\n"
        );
        super::super::def::parse(&text, Path::new(&format!("{name}.toml"))).expect("valid set")
    }

    #[test]
    fn extra_columns_are_read_once_in_the_order_the_sets_name_them() {
        let (a, b) = (parsed("a", "discount"), parsed("b", "tax"));
        assert_eq!(union_extra(&[&a], "orders"), ["discount", "where_"]);
        assert_eq!(
            union_extra(&[&a, &b, &a], "orders"),
            ["discount", "where_", "tax"]
        );
        assert!(union_extra(&[&a, &b], "customers").is_empty());
        let keep = customer_columns(&shipped("rfm"));
        assert!(
            keep.contains("customer_id") && keep.contains("signup_ts"),
            "{keep:?}"
        );
    }

    /// The rows each expression keeps of a small orders-like frame.
    fn kept(rows: Option<Expr>) -> Vec<bool> {
        let df = df!(
            "order_ts" => [100i32, 200, 290, 300, 301, -100],
            "status" => ["completed", "returned", "cancelled", "completed", "completed", "returned"],
        )
        .expect("frame");
        let Some(rows) = rows else {
            return vec![true; df.height()];
        };
        let out = df.lazy().select([rows.alias("k")]).collect().expect("mask");
        out.column("k")
            .expect("k")
            .bool()
            .expect("bool")
            .iter()
            .map(|v| v.unwrap_or(false))
            .collect()
    }

    #[test]
    fn the_shared_rows_are_the_union_of_each_sets_rows() {
        let (rfm, churn) = (shipped("rfm"), shipped("churn_signals"));
        let day = 300;
        let one = |s: &FeatureSet, t: &str| kept(compile::snapshot_rows(s, t, day).expect("rows"));
        let union = |sets: &[&FeatureSet], t: &str| kept(union_rows(sets, t, day).expect("rows"));
        // One set: its own rows (completed orders on or before the day).
        assert_eq!(union(&[&rfm], "orders"), one(&rfm, "orders"));
        assert_eq!(
            one(&rfm, "orders"),
            [true, false, false, true, false, false]
        );
        // Two sets: a row either keeps; churn_signals also keeps returns within a year.
        let both = union(&[&rfm, &churn], "orders");
        let expected: Vec<bool> = one(&rfm, "orders")
            .iter()
            .zip(one(&churn, "orders"))
            .map(|(a, b)| *a || b)
            .collect();
        assert_eq!(both, expected);
        assert_eq!(both, [true, true, true, true, false, false]);
        assert_eq!(union(&[&churn, &rfm], "orders"), both);
        // A table only one set reads: that set's rows; none reads it: no trim.
        assert!(union_rows(&[&rfm], "interactions", day)
            .expect("rows")
            .is_none());
    }
}
