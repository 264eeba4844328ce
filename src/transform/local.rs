//! The local batch-transform runner: SageMaker's data plane on this machine, reading and
//! writing only through the object store.
//!
//! What it does, in SageMaker's words:
//! - every object under the input location is processed on its own; objects (not records)
//!   go round-robin, in key order, to `InstanceCount` simulated instances, which run in
//!   parallel and process their objects one after the other;
//! - `SplitType=Line`: records are lines (`\n`, a trailing `\r` is dropped); blank lines are
//!   not records. `SplitType=None`: the whole object goes in one request;
//! - `MultiRecord` packs as many whole records as fit in `MaxPayloadInMB` (1 MB = 1,048,576
//!   bytes; records are joined by `\n`, with no trailing newline); `SingleRecord` sends one;
//!   a record larger than the limit fails its object;
//! - up to `MaxConcurrentTransforms` requests in flight per instance (0: ask the model's
//!   `/execution-parameters`, else 1; capped so that concurrency * payload <= 100 MB);
//! - the output of `<input>/a/part-0.csv` is `<output>/a/part-0.csv.out` (for a single
//!   input object: `<output>/part-0.csv.out`); with `AssembleWith=Line` one output record
//!   per line in input order, with `None` the responses concatenated in input order;
//!   an object with no record gives an empty `.out` without any request;
//! - `DataProcessing`: the input filter picks the fields sent, `JoinSource=Input` appends
//!   the output fields to the input record (CSV: `input,output`), the output filter picks
//!   the fields written; with a join or an output filter the model must answer one line
//!   per record sent;
//! - a request is tried `1 + InvocationsMaxRetries` times (every failure is retried), each
//!   bounded by `InvocationsTimeoutInSeconds`; an object whose request still fails gets no
//!   `.out`, the other objects go on, and the job ends `Failed` naming the object.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    AssembleWith, BatchStrategy, BatchTransform, EffectiveSettings, Invoker, JobStatus, JoinSource,
    ObjectResult, Progress, SplitType, TransformError, TransformJobSpec, TransformResult,
    ValidFilters,
};
use crate::serving::ContractBatchStrategy;
use crate::store::{self, DynStore, MIB};

/// The local runner; see the module documentation for its semantics.
#[derive(Debug, Clone)]
pub struct LocalTransform {
    invoker: Arc<dyn Invoker>,
}

/// A location: a store and a key prefix in it (`""`: the whole store).
#[derive(Debug, Clone)]
pub struct Location {
    pub store: DynStore,
    pub prefix: String,
}

/// Resolves a URI to a store and prefix: a local file becomes its folder plus its name, a
/// local folder the whole store; other schemes go to [`store::open`].
pub fn locate(uri: &str) -> Result<Location, TransformError> {
    let err = |source| TransformError::Store {
        uri: uri.to_string(),
        source,
    };
    let local = uri.strip_prefix("file://").unwrap_or(uri);
    if !uri.contains("://") || uri.starts_with("file://") {
        let p = Path::new(local);
        if p.is_file() {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let store = store::open(&parent.unwrap_or(Path::new(".")).display().to_string())
                .map_err(err)?;
            return Ok(Location {
                store,
                prefix: name,
            });
        }
    }
    Ok(Location {
        store: store::open(uri).map_err(err)?,
        prefix: String::new(),
    })
}

/// The output key of an input key: its path relative to the input prefix plus `.out`.
fn output_key(input_key: &str, prefix: &str) -> String {
    let rel = input_key
        .strip_prefix(prefix)
        .unwrap_or(input_key)
        .trim_start_matches('/');
    let rel = if rel.is_empty() {
        input_key.rsplit('/').next().unwrap_or(input_key)
    } else {
        rel
    };
    format!("{rel}.out")
}

/// Splits an object into records: non-blank lines without their `\n` / `\r\n`.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Groups records into requests. A record longer than `limit` is an error naming it (its
/// 1-based position among the object's records).
fn pack(
    sizes: &[usize],
    strategy: BatchStrategy,
    limit: usize,
) -> Result<Vec<Range<usize>>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0usize;
    for (i, &len) in sizes.iter().enumerate() {
        if len > limit {
            return Err(format!(
                "record {} is {len} bytes, more than MaxPayloadInMB allows ({limit} bytes)",
                i + 1
            ));
        }
        let grown = if i == start { len } else { size + 1 + len };
        if strategy == BatchStrategy::SingleRecord || (i > start && grown > limit) {
            if i > start {
                out.push(start..i);
            }
            start = i;
            size = len;
        } else {
            size = grown;
        }
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    Ok(out)
}

struct Ctx<'a> {
    job: &'a TransformJobSpec,
    filters: &'a ValidFilters,
    eff: EffectiveSettings,
    input: &'a Location,
    output: &'a Location,
    progress: &'a dyn Progress,
}

impl LocalTransform {
    pub fn new(invoker: Arc<dyn Invoker>) -> LocalTransform {
        LocalTransform { invoker }
    }

    fn effective(&self, job: &TransformJobSpec) -> EffectiveSettings {
        let needs_params = job.max_concurrent_transforms == 0
            || job.batch_strategy.is_none()
            || job.max_payload_mb.is_none();
        let params = if needs_params {
            self.invoker.execution_parameters()
        } else {
            None
        };
        let max_payload_mb = job
            .max_payload_mb
            .or(params.map(|p| p.max_payload_in_mb))
            .unwrap_or(6)
            .clamp(1, 100);
        let batch_strategy = job.batch_strategy.unwrap_or(match params {
            Some(p) if p.batch_strategy == ContractBatchStrategy::SingleRecord => {
                BatchStrategy::SingleRecord
            }
            _ => BatchStrategy::MultiRecord,
        });
        let mut conc = job.max_concurrent_transforms;
        if conc == 0 {
            conc = params.map(|p| p.max_concurrent_transforms).unwrap_or(1);
        }
        let conc = conc.clamp(1, (100 / max_payload_mb).max(1));
        EffectiveSettings {
            batch_strategy,
            max_payload_mb,
            max_concurrent_transforms: conc,
        }
    }

    /// One object, start to end; never panics on bad data: problems become `error`.
    fn process(&self, cx: &Ctx, key: &str, instance: u32) -> ObjectResult {
        let t0 = Instant::now();
        let rel_in = key
            .strip_prefix(cx.input.prefix.as_str())
            .unwrap_or(key)
            .trim_start_matches('/');
        let rel_in = if rel_in.is_empty() { key } else { rel_in };
        let mut r = ObjectResult {
            input: rel_in.to_string(),
            output: None,
            instance,
            records: 0,
            requests: 0,
            failed_attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
            elapsed: Duration::ZERO,
            error: None,
        };
        let out = self.process_inner(cx, key, &mut r);
        match out {
            Ok(out_key) => r.output = Some(out_key),
            Err(e) => r.error = Some(e),
        }
        r.elapsed = t0.elapsed();
        cx.progress.object_finished(&r);
        r
    }

    fn process_inner(&self, cx: &Ctx, key: &str, r: &mut ObjectResult) -> Result<String, String> {
        let data = cx.input.store.get(key).map_err(|e| e.to_string())?;
        r.bytes_in = data.len() as u64;
        let records = split_lines(&data);
        r.records = records.len() as u64;
        cx.progress.object_started(&r.input, r.records);
        let out_key = output_key(key, &cx.input.prefix);
        let out_full = join_key(&cx.output.prefix, &out_key);
        if records.is_empty() {
            cx.output
                .store
                .put(&out_full, b"")
                .map_err(|e| e.to_string())?;
            return Ok(out_full);
        }

        // What the model sees: the input filter applied record by record.
        let filtered_buf;
        let sent: Vec<&[u8]> = if cx.filters.input.is_all() {
            records.clone()
        } else {
            let mut buf = Vec::with_capacity(data.len());
            let mut ends = Vec::with_capacity(records.len());
            for (i, rec) in records.iter().enumerate() {
                cx.filters
                    .input
                    .apply(rec, &mut buf)
                    .map_err(|e| format!("record {}: {e}", i + 1))?;
                ends.push(buf.len());
            }
            filtered_buf = buf;
            let mut start = 0;
            ends.iter()
                .map(|&e| {
                    let s = &filtered_buf[start..e];
                    start = e;
                    s
                })
                .collect()
        };

        let limit = (u64::from(cx.eff.max_payload_mb) * MIB) as usize;
        let batches: Vec<Range<usize>> = match cx.job.split_type {
            SplitType::Line => {
                let sizes: Vec<usize> = sent.iter().map(|s| s.len()).collect();
                pack(&sizes, cx.eff.batch_strategy, limit)?
            }
            SplitType::None => {
                let size = if cx.filters.input.is_all() {
                    data.len()
                } else {
                    sent.iter().map(|s| s.len() + 1).sum::<usize>() - 1
                };
                if size > limit {
                    return Err(format!(
                        "the object is one record (SplitType=None) of {size} bytes, more than MaxPayloadInMB allows ({limit} bytes)"
                    ));
                }
                std::iter::once(0..sent.len()).collect()
            }
        };

        let responses = self.send_all(cx, &data, &sent, &batches, r)?;

        let per_record =
            cx.job.data_processing.join_source == JoinSource::Input || !cx.filters.output.is_all();
        let mut out = Vec::with_capacity(responses.iter().map(|b| b.len()).sum::<usize>() + 16);
        for (b, resp) in batches.iter().zip(&responses) {
            if per_record {
                let lines = split_lines(resp);
                if lines.len() != b.len() {
                    return Err(format!(
                        "records {}..{}: the model answered {} lines for {} records, so outputs cannot be matched to inputs",
                        b.start + 1,
                        b.end,
                        lines.len(),
                        b.len()
                    ));
                }
                let mut joined = Vec::new();
                for (i, line) in b.clone().zip(lines) {
                    let rec: &[u8] = if cx.job.data_processing.join_source == JoinSource::Input {
                        joined.clear();
                        joined.extend_from_slice(records[i]);
                        joined.push(b',');
                        joined.extend_from_slice(line);
                        &joined
                    } else {
                        line
                    };
                    cx.filters
                        .output
                        .apply(rec, &mut out)
                        .map_err(|e| format!("record {}: {e}", i + 1))?;
                    out.push(b'\n');
                }
            } else {
                out.extend_from_slice(resp);
                if cx.job.assemble_with == AssembleWith::Line
                    && !resp.is_empty()
                    && !resp.ends_with(b"\n")
                {
                    out.push(b'\n');
                }
            }
        }
        cx.output
            .store
            .put(&out_full, &out)
            .map_err(|e| e.to_string())?;
        r.bytes_out = out.len() as u64;
        Ok(out_full)
    }

    /// Sends every batch with up to `MaxConcurrentTransforms` in flight; responses in batch
    /// order. Stops early once one batch has failed for good.
    fn send_all(
        &self,
        cx: &Ctx,
        data: &[u8],
        sent: &[&[u8]],
        batches: &[Range<usize>],
        r: &mut ObjectResult,
    ) -> Result<Vec<Vec<u8>>, String> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Vec<u8>>>> = Mutex::new(vec![None; batches.len()]);
        let first_error: Mutex<Option<(usize, String)>> = Mutex::new(None);
        let counts = Mutex::new((0u64, 0u64)); // (requests, failed attempts)
        let timeout = Duration::from_secs(u64::from(cx.job.invocation_timeout_secs));
        let attempts = 1 + cx.job.invocation_max_retries;
        let raw_object = cx.job.split_type == SplitType::None && cx.filters.input.is_all();
        let workers = (cx.eff.max_concurrent_transforms as usize)
            .min(batches.len())
            .max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let mut payload = Vec::new();
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(b) = batches.get(i) else { return };
                        let body: &[u8] = if raw_object {
                            data
                        } else if b.len() == 1 {
                            sent[b.start]
                        } else {
                            payload.clear();
                            for (k, rec) in sent[b.clone()].iter().enumerate() {
                                if k > 0 {
                                    payload.push(b'\n');
                                }
                                payload.extend_from_slice(rec);
                            }
                            &payload
                        };
                        let mut last = None;
                        for _ in 0..attempts {
                            match self.invoker.invoke(body, &cx.job.content_type, timeout) {
                                Ok(resp) => {
                                    last = None;
                                    if let Ok(mut res) = results.lock() {
                                        res[i] = Some(resp);
                                    }
                                    break;
                                }
                                Err(e) => {
                                    if let Ok(mut c) = counts.lock() {
                                        c.1 += 1;
                                    }
                                    tracing::debug!(job = %cx.job.job_name, batch = i, error = %e, "invocation failed");
                                    last = Some(e);
                                }
                            }
                        }
                        match last {
                            None => {
                                if let Ok(mut c) = counts.lock() {
                                    c.0 += 1;
                                }
                                cx.progress.records_done(b.len() as u64);
                            }
                            Some(e) => {
                                failed.store(true, Ordering::Relaxed);
                                if let Ok(mut fe) = first_error.lock() {
                                    let msg = format!(
                                        "request for records {}..{} failed after {attempts} attempt(s): {e}",
                                        b.start + 1,
                                        b.end
                                    );
                                    // Report the earliest batch that failed, whatever the timing.
                                    if fe.as_ref().is_none_or(|(j, _)| i < *j) {
                                        *fe = Some((i, msg));
                                    }
                                }
                                return;
                            }
                        }
                    }
                });
            }
        });
        let (requests, failed_attempts) = counts.into_inner().unwrap_or((0, 0));
        r.requests = requests;
        r.failed_attempts = failed_attempts;
        if let Some((_, msg)) = first_error.into_inner().ok().flatten() {
            return Err(msg);
        }
        let results = results
            .into_inner()
            .map_err(|_| "internal error: a request thread panicked".to_string())?;
        results
            .into_iter()
            .map(|o| o.ok_or_else(|| "internal error: a request got no answer".to_string()))
            .collect()
    }
}

fn join_key(prefix: &str, rel: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        rel.to_string()
    } else {
        format!("{p}/{rel}")
    }
}

impl BatchTransform for LocalTransform {
    fn run(
        &self,
        job: &TransformJobSpec,
        progress: &dyn Progress,
    ) -> Result<TransformResult, TransformError> {
        let t0 = Instant::now();
        let filters = job.validate()?;
        let eff = self.effective(job);
        let input = locate(&job.input_uri)?;
        let output = Location {
            store: store::open(&job.output_uri).map_err(|source| TransformError::Store {
                uri: job.output_uri.clone(),
                source,
            })?,
            prefix: String::new(),
        };
        let objects = input
            .store
            .list(&input.prefix)
            .map_err(|source| TransformError::Store {
                uri: job.input_uri.clone(),
                source,
            })?;
        if objects.is_empty() {
            return Err(TransformError::NoInput {
                uri: job.input_uri.clone(),
            });
        }
        tracing::info!(
            job = %job.job_name,
            objects = objects.len(),
            instances = job.instance_count,
            concurrency = eff.max_concurrent_transforms,
            payload_mb = eff.max_payload_mb,
            "batch transform started"
        );
        let cx = Ctx {
            job,
            filters: &filters,
            eff,
            input: &input,
            output: &output,
            progress,
        };
        let n = job.instance_count.max(1) as usize;
        let results: Mutex<Vec<(usize, ObjectResult)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for inst in 0..n.min(objects.len()) {
                let cx = &cx;
                let objects = &objects;
                let results = &results;
                s.spawn(move || {
                    for (i, o) in objects.iter().enumerate().skip(inst).step_by(n) {
                        let r = self.process(cx, &o.key, inst as u32);
                        if let Ok(mut v) = results.lock() {
                            v.push((i, r));
                        }
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_default();
        results.sort_by_key(|(i, _)| *i);
        let objects: Vec<ObjectResult> = results.into_iter().map(|(_, r)| r).collect();
        let failures: Vec<&ObjectResult> = objects.iter().filter(|o| o.error.is_some()).collect();
        let failure_reason = failures.first().map(|f| {
            let more = match failures.len() {
                1 => String::new(),
                k => format!(" ({} more objects failed)", k - 1),
            };
            format!(
                "object {} failed: {}{more}",
                f.input,
                f.error.as_deref().unwrap_or("")
            )
        });
        let sum = |f: fn(&ObjectResult) -> u64| objects.iter().map(f).sum::<u64>();
        let result = TransformResult {
            job_name: job.job_name.clone(),
            status: if failures.is_empty() {
                JobStatus::Completed
            } else {
                JobStatus::Failed
            },
            failure_reason,
            records: sum(|o| o.records),
            requests: sum(|o| o.requests),
            bytes_in: sum(|o| o.bytes_in),
            bytes_out: sum(|o| o.bytes_out),
            elapsed: t0.elapsed(),
            effective: eff,
            objects,
        };
        tracing::info!(job = %job.job_name, status = ?result.status, records = result.records, "batch transform ended");
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_whole_records_up_to_the_limit() {
        // 4 + 1 + 4 = 9 bytes fit a 9-byte limit; a third record does not.
        assert_eq!(
            pack(&[4, 4, 4], BatchStrategy::MultiRecord, 9).unwrap(),
            vec![0..2, 2..3]
        );
        assert_eq!(
            pack(&[4, 4, 4], BatchStrategy::MultiRecord, 8).unwrap(),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(
            pack(&[4, 4, 4], BatchStrategy::MultiRecord, 14).unwrap(),
            vec![0..3]
        );
        assert_eq!(
            pack(&[1, 1], BatchStrategy::SingleRecord, 100).unwrap(),
            vec![0..1, 1..2]
        );
        let e = pack(&[4, 10, 4], BatchStrategy::MultiRecord, 9).unwrap_err();
        assert!(e.contains("record 2 is 10 bytes"), "{e}");
    }

    #[test]
    fn names_outputs_and_splits_lines_like_sagemaker() {
        assert_eq!(output_key("in/a/part-0.csv", "in"), "a/part-0.csv.out");
        assert_eq!(output_key("a/part-0.csv", ""), "a/part-0.csv.out");
        assert_eq!(output_key("part-0.csv", "part-0.csv"), "part-0.csv.out");
        assert_eq!(join_key("", "x.out"), "x.out");
        assert_eq!(join_key("out/", "x.out"), "out/x.out");
        assert_eq!(
            split_lines(b"a,1\r\n\nb,2\nc,3"),
            vec![&b"a,1"[..], b"b,2", b"c,3"]
        );
        assert!(split_lines(b"").is_empty());
    }
}
