//! Step `gates`: reads the transform's `.out` results (`id,score` lines) back, checks them
//! against the input and the feature snapshot (every customer scored once), applies the
//! job's quality gates, and computes the score statistics ([`GateStats`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use polars::prelude::*;

use super::input::joined_snapshots;
use super::prepare::Prepared;
use super::record::GateStats;
use super::{PipelineError, Result};
use crate::product;
use crate::store;

/// Reads the `.out` files (`id,score` lines) and applies the quality gates.
pub(super) fn collect_and_gate(
    p: &Prepared,
    input_prefix: &str,
    output_prefix: &str,
) -> Result<(DataFrame, GateStats)> {
    let st = p.store.as_ref();
    // Every refusal is announced on the event bus (without statistics: they are not
    // computed yet), then returned.
    let gate = |m: String| {
        announce_refusal(p, &m, None);
        PipelineError::Gate(m)
    };
    let inputs: Vec<_> = st
        .list(input_prefix)?
        .into_iter()
        .filter(|o| o.key.ends_with(".csv"))
        .collect();
    let mut frames = Vec::new();
    let mut expected = 0usize;
    for i in &inputs {
        let rel = i
            .key
            .strip_prefix(input_prefix)
            .unwrap_or(&i.key)
            .trim_start_matches('/');
        let out_key = crate::store::layout::transform_output_object(output_prefix, rel);
        let in_rows = st.get(&i.key)?.iter().filter(|b| **b == b'\n').count();
        expected += in_rows;
        let bytes = match st.get(&out_key) {
            Ok(b) => b,
            Err(store::StoreError::NotFound { .. }) => {
                return Err(gate(format!("no result {out_key} for input {}", i.key)))
            }
            Err(e) => return Err(e.into()),
        };
        if bytes.is_empty() {
            continue;
        }
        let df = CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(Arc::new(Schema::from_iter([
                Field::new("customer_id".into(), DataType::String),
                Field::new("score".into(), DataType::Float64),
            ]))))
            .into_reader_with_file_handle(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| gate(format!("{out_key} is not id,score lines: {e}")))?;
        frames.push(df);
    }
    let mut df = frames
        .into_iter()
        .reduce(|mut a, b| {
            let _ = a.vstack_mut(&b);
            a
        })
        .unwrap_or_default();
    df.rechunk_mut();
    let n = df.height();
    if n == 0 {
        // Nothing to gate (and no score column to read): say so instead of a polars error.
        return Err(gate(format!(
            "no customer was scored ({expected} input rows): the feature snapshot as of {} is empty",
            p.as_of
        )));
    }
    if n != expected {
        return Err(gate(format!("{n} scores for {expected} input rows")));
    }
    let snapshot_rows = joined_snapshots(p)?.height();
    if n != snapshot_rows {
        return Err(gate(format!(
            "{n} scores for {snapshot_rows} customers in the feature snapshot"
        )));
    }
    let score = df
        .column("score")
        .map_err(|e| gate(e.to_string()))?
        .f64()
        .map_err(|e| gate(e.to_string()))?
        .clone();
    let nulls = score.null_count();
    if nulls > 0 {
        return Err(gate(format!("{nulls} null or unparsable scores")));
    }
    let g = &p.job.gates;
    let bad = score
        .into_no_null_iter()
        .filter(|v| !v.is_finite() || *v < g.min_score || *v > g.max_score)
        .count();
    if bad > 0 {
        return Err(gate(format!(
            "{bad} scores outside [min_score {}, max_score {}] of the job's [gates], or not finite",
            g.min_score, g.max_score
        )));
    }
    let dups = n - df
        .column("customer_id")
        .map_err(|e| gate(e.to_string()))?
        .n_unique()
        .unwrap_or(n);
    if dups > 0 {
        return Err(gate(format!("{dups} customers scored more than once")));
    }
    let distinct = score.n_unique().unwrap_or(0) as u64;
    if distinct < g.min_distinct_scores {
        let constant = if distinct <= 1 {
            "; the model output is constant"
        } else {
            ""
        };
        return Err(gate(format!(
            "only {distinct} distinct score(s), fewer than min_distinct_scores {} of the job's [gates]{constant}",
            g.min_distinct_scores
        )));
    }
    let mean = score.mean().unwrap_or(f64::NAN);
    let std = score.std(1).unwrap_or(f64::NAN);
    let q = |x: f64| {
        score
            .quantile(x, QuantileMethod::Linear)
            .ok()
            .flatten()
            .unwrap_or(f64::NAN)
    };
    // An unreadable or disagreeing latest.json has no trusted previous version (the
    // publish rebuilds or repairs it); the gate then has nothing to compare with.
    let previous_mean = match product::resolve_latest(p.store.as_ref(), &p.job.product.name) {
        Ok(l) => l.map(|(_, m)| m),
        Err(
            e @ (product::ProductError::Read { .. }
            | product::ProductError::LatestUnreadable { .. }),
        ) => {
            tracing::warn!(error = %e, "no previous version to compare the mean score with");
            None
        }
        Err(e) => return Err(e.into()),
    }
    .filter(|m| m.run_id != p.run_id)
    .and_then(|m| {
        m.extra
            .get("score_statistics")
            .and_then(|s| s.get("mean"))
            .and_then(|v| v.as_f64())
    });
    let mut bands: BTreeMap<String, u64> = BTreeMap::new();
    for v in score.into_no_null_iter() {
        if let Some(b) = p.spec.risk_band(v) {
            *bands.entry(b.to_string()).or_default() += 1;
        }
    }
    let stats = GateStats {
        rows: n as u64,
        mean,
        std,
        min: q(0.0),
        p10: q(0.1),
        p50: q(0.5),
        p90: q(0.9),
        max: q(1.0),
        distinct,
        previous_mean,
        risk_bands: bands,
    };
    if let (Some(max), Some(prev)) = (g.max_mean_shift, previous_mean) {
        if (mean - prev).abs() > max {
            let reason = format!(
                "mean score moved from {prev:.4} to {mean:.4} (more than max_mean_shift {max})"
            );
            announce_refusal(p, &reason, Some(&stats));
            return Err(PipelineError::Gate(reason));
        }
    }
    Ok((df, stats))
}

/// Announces a refused version on the event bus (`Data Product Version Refused`, with the
/// score statistics when they were computed); the event's fate is logged (the run fails
/// either way, and nothing is published).
fn announce_refusal(p: &Prepared, reason: &str, stats: Option<&GateStats>) {
    let event = crate::mesh::ProductEvent::Refused(crate::mesh::VersionRefused {
        product: p.job.product.name.to_string(),
        major: p.job.product.major,
        as_of: p.as_of,
        run_id: p.run_id.clone(),
        reason: reason.to_string(),
        score_statistics: stats
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_default(),
    });
    if let Some(r) = p.mesh.events.send(&event) {
        match &r.error {
            None => tracing::info!(event_id = ?r.event_id, "refusal announced"),
            Some(err) => tracing::warn!(error = %err, "the refusal event was not delivered"),
        }
    }
}
