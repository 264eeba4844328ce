//! Step `transform_input`: the committed snapshots joined and cut to the model's inputs,
//! written as id-first CSV parts without a header (SageMaker sizes the parts from the
//! planner, run on the real rows and row width).

use polars::prelude::*;

use super::plan::cloud_plan;
use super::prepare::Prepared;
use super::record::{InputFile, StepDetail, TransformInputDetail};
use super::steps::{Run, StepOutput};
use super::{PipelineError, Result};
use crate::offline;

/// Step `transform_input`: writes `input_prefix/part-<i>.csv`.
pub(super) fn transform_input(r: &mut Run<'_>, input_prefix: &str) -> Result<StepOutput<()>> {
    let frame = model_input(r.p)?;
    let n = frame.height();
    r.p.store.delete_prefix(input_prefix)?;
    let encode = |part: &mut DataFrame| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .include_header(false)
            .with_null_value(PlSmallStr::from_static(""))
            .finish(part)
            .map_err(|e| PipelineError::Polars {
                run: r.p.run_id.clone(),
                context: "encoding the transform input".into(),
                source: e,
            })?;
        Ok(buf)
    };
    // SageMaker: the planner sizes the job from the real row count and row width.
    let plan = match &r.p.cloud {
        None => None,
        Some(c) => {
            let sample = n.min(2000);
            let sample_bytes = encode(&mut frame.slice(0, sample))?.len() as u64;
            let bytes = if sample == 0 {
                0
            } else {
                sample_bytes * n as u64 / sample as u64
            };
            Some(cloud_plan(r.p, c, n as u64, bytes)?)
        }
    };
    let parts = match &plan {
        Some(p) => p.parts as usize,
        None => r.p.job.transform.pins.parts.unwrap_or(4) as usize,
    }
    .clamp(1, n.max(1));
    let mut files = Vec::new();
    for i in 0..parts {
        let lo = n * i / parts;
        let hi = n * (i + 1) / parts;
        let buf = encode(&mut frame.slice(lo as i64, hi - lo))?;
        let key = format!("{input_prefix}/part-{i}.csv");
        r.p.store.put(&key, &buf)?;
        files.push(InputFile {
            key,
            rows: (hi - lo) as u64,
            bytes: buf.len() as u64,
        });
    }
    Ok((
        (),
        Some(n as u64),
        StepDetail::TransformInput(TransformInputDetail {
            prefix: input_prefix.to_string(),
            files,
            plan,
        }),
    ))
}

/// The committed snapshots joined and cut to the model's inputs (id first).
pub(super) fn model_input(p: &Prepared) -> Result<DataFrame> {
    let spec = &p.spec;
    let joined = joined_snapshots(p)?;
    let mut cols = vec![col("customer_id")];
    for f in &spec.features {
        let c = col(f.as_str());
        let dt = joined
            .column(f)
            .map(|c| c.dtype().clone())
            .unwrap_or(DataType::Float64);
        cols.push(if dt == DataType::Boolean {
            c.cast(DataType::Int32)
        } else {
            c
        });
    }
    joined
        .lazy()
        .select(cols)
        .collect()
        .map_err(|e| PipelineError::Polars {
            run: p.run_id.clone(),
            context: "selecting the model's input columns".into(),
            source: e,
        })
}

/// The committed snapshots of the model's feature sets joined on `customer_id`, sorted.
pub(super) fn joined_snapshots(p: &Prepared) -> Result<DataFrame> {
    let mut joined: Option<LazyFrame> = None;
    for s in &p.sets {
        let prefix = offline::partition_prefix(&s.name, s.version, p.as_of);
        let m = offline::read_manifest(p.store.as_ref(), &prefix)?.ok_or_else(|| {
            PipelineError::Run {
                run: p.run_id.clone(),
                message: format!("snapshot {prefix} is not committed"),
            }
        })?;
        let df = offline::read_partition(p.store.as_ref(), &prefix, &m)?.lazy();
        joined = Some(match joined {
            None => df,
            Some(j) => j.join(
                df.drop(cols(["as_of"])),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Inner),
            ),
        });
    }
    joined
        .ok_or_else(|| PipelineError::Definition("the model names no feature set".into()))?
        .sort(["customer_id"], Default::default())
        .collect()
        .map_err(|e| PipelineError::Polars {
            run: p.run_id.clone(),
            context: "joining the feature snapshots".into(),
            source: e,
        })
}
