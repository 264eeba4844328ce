//! The planner's explanations: the short sentences a plan gives for each choice it made.

use super::*;

/// The sentences on concurrency, payload, parts, memory and the estimate.
pub(super) fn describe(
    w: &Workload,
    s: &PlannerSettings,
    e: &Eval,
    parts_pinned: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let t = e.t;
    let c = e.w.conc;
    out.push(match e.w.conc_rule {
        ConcRule::Pinned => format!("MaxConcurrentTransforms {c}: pinned."),
        ConcRule::Vcpus => format!(
            "MaxConcurrentTransforms {c}: one request per vCPU of {} (the built-in XGBoost container runs one worker per vCPU).",
            t.instance_type
        ),
        ConcRule::PayloadLimit => format!(
            "MaxConcurrentTransforms {c}, not one per vCPU ({}): the most with MaxPayloadInMB {} (x payload <= 100).",
            t.vcpus, e.w.payload
        ),
        ConcRule::Memory { wanted } => format!(
            "MaxConcurrentTransforms {c}, not {wanted}: only {c} cop{} of the {} model (x {MODEL_MEMORY_FACTOR} headroom) {} in {} GiB; run the container with at most {c} worker{}.",
            if c == 1 { "y" } else { "ies" },
            format_bytes(w.model_bytes),
            if c == 1 { "fits" } else { "fit" },
            trim_float(t.memory_gib),
            if c == 1 { "" } else { "s" }
        ),
    });
    let p = e.w.payload;
    out.push(match e.w.payload_rule {
        PayloadRule::Pinned => format!("MaxPayloadInMB {p}: pinned ({c} x {p} <= 100)."),
        PayloadRule::Container => format!(
            "MaxPayloadInMB {p}: {c} x {p} <= 100, capped at the built-in container's MAX_CONTENT_LENGTH of 6 MB (raise both to go higher)."
        ),
        PayloadRule::SageMakerLimit => format!(
            "MaxPayloadInMB {p}: the largest with {c} x payload <= 100 (SageMaker's limit)."
        ),
    });
    if w.model_bytes > 0 && !matches!(e.w.conc_rule, ConcRule::Memory { .. }) {
        out.push(format!(
            "Memory: {c} cop{} of the {} model x {MODEL_MEMORY_FACTOR} (headroom) = {} of {} GiB.",
            if c == 1 { "y" } else { "ies" },
            format_bytes(w.model_bytes),
            format_bytes((w.model_bytes as f64 * MODEL_MEMORY_FACTOR * f64::from(c)) as u64),
            trim_float(t.memory_gib)
        ));
    }
    let (parts, n) = (e.parts, e.n);
    if parts_pinned {
        let mut sentence = format!("{parts} input parts: pinned");
        if parts < n {
            sentence.push_str(&format!(
                "; SageMaker spreads objects, not records, so {} of {n} instances get none and idle, billed",
                n - parts
            ));
        } else if !parts.is_multiple_of(n) {
            sentence.push_str(&format!(
                "; not a multiple of {n}, so the busiest instance gets {} parts and others {}",
                e.busiest_parts,
                parts / n
            ));
        }
        sentence.push('.');
        out.push(sentence);
    } else {
        let capped = if e.parts_capped {
            format!("; capped at {MAX_PARTS} parts")
        } else {
            String::new()
        };
        if n == 1 {
            out.push(format!(
                "{parts} input part{}: {} in parts of up to about {}{capped}.",
                if parts == 1 { "" } else { "s" },
                format_bytes(w.bytes),
                format_bytes(s.target_part_bytes),
            ));
        } else {
            out.push(format!(
                "{parts} input parts, {} per instance: {} / {} rounded up to a multiple of {n}, so every instance gets the same work (SageMaker spreads objects, not records){capped}.",
                e.busiest_parts,
                format_bytes(w.bytes),
                format_bytes(s.target_part_bytes),
            ));
        }
    }
    let workers_used = t.vcpus.min(c);
    let busy = if e.busy < f64::from(workers_used) {
        format!(
            "{} of {workers_used} workers (only {} mini-batch{} of up to {p} MB to send)",
            e.busy,
            e.batches,
            if e.batches == 1.0 { "" } else { "es" }
        )
    } else if c < t.vcpus {
        format!("{workers_used} of {} vCPUs", t.vcpus)
    } else {
        format!("{workers_used} workers")
    };
    out.push(format!(
        "Estimate: {} start-up + {} scoring {} rows{} at {} rows/s per vCPU on {busy} = {}{}; {} ({n} x {}/h, billed per second).",
        format_duration(s.startup_seconds),
        format_duration(e.compute_s),
        format_count(e.busiest_rows.round() as u64),
        if n == 1 { "" } else { " on the busiest instance" },
        format_count(s.rows_per_second_per_vcpu.round() as u64),
        format_duration(e.wall_s),
        if e.wall_s <= s.deadline.as_secs_f64() + 1e-9 {
            format!(" (deadline {})", format_duration(s.deadline.as_secs_f64()))
        } else {
            format!(
                ", {} over the {} deadline",
                format_duration(e.wall_s - s.deadline.as_secs_f64()),
                format_duration(s.deadline.as_secs_f64())
            )
        },
        format_usd(e.cost),
        format_usd(t.usd_per_hour)
    ));
    out
}
