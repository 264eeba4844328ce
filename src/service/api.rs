//! The HTTP API (JSON): routes, handlers, the access check each protected route makes
//! first, and the request middleware (a tracing span and latency metrics per request).
//! Every blocking store or pipeline call goes through `spawn_blocking`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use chrono::NaiveDate;
use polars::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument as _;

use crate::pipeline::{self, job};
use crate::product;
use crate::store::{doc, layout, StoreError};

use super::auth::{is_pii_column, Principal};
use super::runner::{self, Trigger};
use super::scheduler::{self, Schedule};
use super::{AppState, ServiceError};

mod csv;
mod extract;

use csv::csv_safe;

use extract::{
    Caller, CustomerPath, JobPath, ProductPath, ReadProducts, ReadRuns, RunPath, TriggerRuns,
};

type Shared = Arc<AppState>;
type ApiResult<T> = Result<T, ServiceError>;

/// Routes, recorded as they are added so that the OpenAPI document can be checked
/// against what the router really serves.
struct Routes {
    router: Router<Shared>,
    list: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(
        mut self,
        path: &'static str,
        methods: &[&'static str],
        mr: MethodRouter<Shared>,
    ) -> Self {
        self.router = self.router.route(path, mr);
        self.list.extend(methods.iter().map(|m| (*m, path)));
        self
    }
}

/// Every `(method, path)` the router serves (lower-case method, OpenAPI path syntax).
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    routes().list
}

/// The router and the `(method, path)` list it serves.
pub fn router(state: Shared) -> (Router, Vec<(&'static str, &'static str)>) {
    let r = routes();
    let list = r.list;
    let router = r
        .router
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(no_route)
        .with_state(state);
    (router, list)
}

fn routes() -> Routes {
    Routes {
        router: Router::new(),
        list: Vec::new(),
    }
    .add("/healthz", &["get"], get(healthz))
    .add("/readyz", &["get"], get(readyz))
    .add("/metrics", &["get"], get(metrics))
    .add("/openapi.json", &["get"], get(openapi))
    .add("/jobs", &["get"], get(list_jobs))
    .add("/jobs/{job}", &["get"], get(get_job))
    .add(
        "/jobs/{job}/runs",
        &["get", "post"],
        get(list_runs).post(trigger_run),
    )
    .add("/jobs/{job}/runs/{run_id}", &["get"], get(get_run))
    .add("/feature-sets", &["get"], get(feature_sets))
    .add("/products", &["get"], get(list_products))
    .add("/products/{product}", &["get"], get(get_product))
    .add("/products/{product}/contract", &["get"], get(get_contract))
    .add(
        "/products/{product}/customers/{customer_id}",
        &["get"],
        get(get_customer),
    )
    .add("/products/{product}/rows", &["get"], get(get_rows))
}

/// A span and latency metrics per request.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!("request", %method, %route);
    let t = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let secs = t.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    span.in_scope(|| tracing::debug!(status, ms = secs * 1e3, "answered"));
    state.metrics.http(&route, &method, status, secs);
    if status == 401 || status == 403 {
        let s = status.to_string();
        state.metrics.inc(
            "c360_http_denials_total",
            &[("route", &route), ("status", &s)],
            1.0,
        );
    }
    resp
}

async fn no_route() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no_route", "message": "no such route (see /openapi.json)"})),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Shared>) -> Response {
    let st = state.clone();
    if let Err(e) = blocking(move || Ok(st.store.exists("catalog")?)).await {
        return ServiceError::Unavailable(format!("the store does not answer: {e}"))
            .into_response();
    }
    // SageMaker, when a job runs there: one cheap authenticated call (ListTransformJobs).
    let uses_sagemaker = crate::pipeline::job::load_all(&state.project.jobs_dir())
        .0
        .iter()
        .any(|j| j.backend == "sagemaker");
    let sagemaker = if uses_sagemaker {
        let settings = (*crate::aws::settings()).clone();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                crate::aws::block_on(async move {
                    let c = crate::aws::sagemaker_client(&settings).await?;
                    c.list_transform_jobs()
                        .max_results(1)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| crate::aws::error_text(&e))
                })
            }),
        )
        .await;
        match r {
            Ok(Ok(Ok(()))) => json!("ready"),
            Ok(Ok(Err(e))) => {
                return ServiceError::Unavailable(format!("SageMaker does not answer: {e}"))
                    .into_response()
            }
            Ok(Err(e)) => return ServiceError::Task(e).into_response(),
            Err(_) => {
                return ServiceError::Unavailable("SageMaker did not answer within 10 s".into())
                    .into_response()
            }
        }
    } else {
        json!("not configured")
    };
    Json(json!({"status": "ready", "store": state.store.uri(), "sagemaker": sagemaker}))
        .into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

fn job_summary(state: &AppState, j: &job::Job) -> Value {
    let (next, sched_err) = match Schedule::of(j) {
        Ok(s) => (s.next_after(chrono::Utc::now()), None),
        Err(e) => (None, Some(e)),
    };
    let running = state.runner.running().get(j.name.as_str()).cloned();
    json!({
        "name": j.name,
        "description": j.description,
        "schedule": j.schedule.expr,
        "timezone": j.schedule.tz.name(),
        "as_of": j.as_of.to_string(),
        "catch_up": j.catch_up,
        "model": j.model,
        "product": j.product.name,
        "next_fire": next,
        "schedule_error": sched_err,
        "running_here": running.is_some(),
        "running_run_id": running.flatten(),
    })
}

fn load_job(state: &AppState, name: &str) -> ApiResult<job::Job> {
    let path = state.project.jobs_dir().join(format!("{name}.toml"));
    if !path.is_file() {
        return Err(ServiceError::NotFound(format!("no job {name}")));
    }
    job::load(&path).map_err(|e| {
        ServiceError::Unprocessable(
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

async fn list_jobs(State(state): State<Shared>, _: Caller<ReadRuns>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (jobs, errs) = job::load_all(&state.project.jobs_dir());
        let mut out = Vec::new();
        for j in &jobs {
            let mut v = job_summary(&state, j);
            let last = pipeline::ledgers(state.store.as_ref(), &j.name)?
                .into_iter()
                .next();
            v["last_run"] = json!(last.map(|l| json!({"run_id": l.run_id, "as_of": l.as_of, "status": l.status, "started_at": l.started_at, "finished_at": l.finished_at})));
            out.push(v);
        }
        Ok(Json(json!({
            "jobs": out,
            "errors": errs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        })))
    })
    .await
}

async fn get_job(
    State(state): State<Shared>,
    _: Caller<ReadRuns>,
    JobPath(name): JobPath,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let j = load_job(&state, &name)?;
        let mut v = job_summary(&state, &j);
        v["schedule_state"] = json!(scheduler::load_state(&state.store, &name)?);
        v["recent_fires"] = json!(scheduler::recent_fires(&state.store, &name, 50)?);
        // A damaged lease shows as none (the runner takes it over as an expired one).
        v["lease"] = match doc::get_json::<Value>(state.store.as_ref(), &layout::lease(&name)) {
            Ok(l) => l.unwrap_or(Value::Null),
            Err(StoreError::Corrupt { .. }) => Value::Null,
            Err(e) => return Err(e.into()),
        };
        Ok(Json(v))
    })
    .await
}

async fn list_runs(
    State(state): State<Shared>,
    _: Caller<ReadRuns>,
    JobPath(name): JobPath,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        load_job(&state, &name)?;
        let runs = pipeline::ledgers(state.store.as_ref(), &name)?;
        Ok(Json(json!({"job": name, "runs": runs})))
    })
    .await
}

async fn get_run(
    State(state): State<Shared>,
    _: Caller<ReadRuns>,
    RunPath { job: name, run_id }: RunPath,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let v: Value = doc::get_json(state.store.as_ref(), &layout::ledger(&name, &run_id))
            .map_err(|e| match e {
                StoreError::Corrupt { source, .. } => {
                    ServiceError::Internal(format!("unreadable ledger: {source}"))
                }
                e => e.into(),
            })?
            .ok_or_else(|| ServiceError::NotFound(format!("no run {run_id} of job {name}")))?;
        Ok(Json(v))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    as_of: Option<NaiveDate>,
}

async fn trigger_run(
    State(state): State<Shared>,
    Caller(who, _): Caller<TriggerRuns>,
    JobPath(name): JobPath,
    body: Bytes,
) -> ApiResult<Response> {
    let req: TriggerBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ServiceError::BadRequest(format!(
                "body: {e} (expected {{\"as_of\": \"YYYY-MM-DD\"}})"
            ))
        })?
    };
    let st = state.clone();
    let n = name.clone();
    blocking(move || load_job(&st, &n).map(|_| ())).await?;
    let (started, _) = runner::start(&state, &name, req.as_of, None, Trigger::Api).await?;
    tracing::info!(job = %name, run_id = %started.run_id, by = %who.name, "run triggered");
    let link = format!("/jobs/{}/runs/{}", started.job, started.run_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, link.clone())],
        Json(json!({"job": started.job, "run_id": started.run_id, "as_of": started.as_of, "trigger": started.trigger, "status": "running", "ledger": link})),
    )
        .into_response())
}

async fn feature_sets(State(state): State<Shared>, _: Caller<ReadRuns>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let sets = state
            .project
            .feature_sets()
            .map_err(ServiceError::Definitions)?;
        Ok(Json(json!({"feature_sets": sets.iter().map(|s| json!({
            "name": s.name, "version": s.version, "description": s.description, "owner": s.owner,
            "definition_hash": s.hash,
            "features": s.outputs().iter().map(|f| json!({"name": f.name, "description": f.description})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()})))
    })
    .await
}

fn catalog_json(e: &product::CatalogEntry, p: &Principal) -> Value {
    let mut v = json!(e);
    if !p.role.may_see_pii() {
        if let Some(cols) = v.get_mut("columns").and_then(|c| c.as_array_mut()) {
            cols.retain(|c| {
                !c.get("name")
                    .and_then(|n| n.as_str())
                    .is_some_and(is_pii_column)
            });
        }
    }
    v
}

/// Drops PII columns from a row unless the role carries the `pii` tag.
fn visible_row(mut row: Value, p: &Principal) -> Value {
    if !p.role.may_see_pii() {
        if let Some(o) = row.as_object_mut() {
            o.retain(|k, _| !is_pii_column(k));
        }
    }
    row
}

async fn list_products(
    State(state): State<Shared>,
    Caller(p, _): Caller<ReadProducts>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let list = product::list(state.store.as_ref())?;
        Ok(Json(
            json!({"products": list.iter().map(|e| catalog_json(e, &p)).collect::<Vec<_>>()}),
        ))
    })
    .await
}

async fn get_product(
    State(state): State<Shared>,
    Caller(p, _): Caller<ReadProducts>,
    ProductPath(name): ProductPath,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let key = layout::catalog_entry(&name);
        let entry: product::CatalogEntry = doc::get_json(state.store.as_ref(), &key)
            .map_err(|e| match e {
                StoreError::Corrupt { source, .. } => {
                    ServiceError::Internal(format!("{key}: {source}"))
                }
                e => e.into(),
            })?
            .ok_or_else(|| ServiceError::NotFound(format!("no product {name}")))?;
        let versions = product::versions(state.store.as_ref(), &name)?;
        let latest = product::latest(state.store.as_ref(), &name)?;
        let mut v = catalog_json(&entry, &p);
        v["all_versions"] = json!(versions
            .iter()
            .map(|(m, d)| json!({"major": m, "as_of": d}))
            .collect::<Vec<_>>());
        v["latest_version"] = json!(latest);
        Ok(Json(v))
    })
    .await
}

async fn get_contract(
    State(state): State<Shared>,
    _: Caller<ReadProducts>,
    ProductPath(name): ProductPath,
) -> ApiResult<Response> {
    let yaml = blocking(move || {
        state
            .store
            .get(&layout::product_contract(&name))
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    ServiceError::NotFound(format!("product {name} has no contract"))
                }
                e => e.into(),
            })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

async fn get_customer(
    State(state): State<Shared>,
    Caller(p, _): Caller<ReadProducts>,
    CustomerPath {
        product: name,
        customer_id: id,
    }: CustomerPath,
) -> ApiResult<Json<Value>> {
    let idx = state.index.for_request(&state.store, &name, None).await?;
    if let Some(row) = idx.get(&id) {
        return Ok(Json(visible_row(row, &p)));
    }
    // A miss on an index not checked lately: latest.json may have moved.
    let idx = state
        .index
        .for_request(&state.store, &name, Some(state.config.reload))
        .await?;
    match idx.get(&id) {
        Some(row) => Ok(Json(visible_row(row, &p))),
        None => Err(ServiceError::NotFound(format!(
            "customer {id} is not in {name} as of {}",
            idx.latest.as_of
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowsQuery {
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The largest page.
const MAX_LIMIT: usize = 10_000;

async fn get_rows(
    State(state): State<Shared>,
    Caller(p, _): Caller<ReadProducts>,
    ProductPath(name): ProductPath,
    q: Result<Query<RowsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ServiceError::BadRequest(e.body_text()))?;
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ServiceError::BadRequest(format!("limit: 1 to {MAX_LIMIT}")));
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ServiceError::BadRequest(format!(
                "format {f:?}: json or csv"
            )))
        }
    };
    let idx = state.index.for_request(&state.store, &name, None).await?;
    blocking(move || {
        let total = idx.frame.height();
        let mut page = idx.frame.slice(offset.min(total) as i64, limit);
        if !p.role.may_see_pii() {
            let drop: Vec<PlSmallStr> = page
                .get_column_names()
                .into_iter()
                .filter(|c| is_pii_column(c))
                .cloned()
                .collect();
            page = page.drop_many(drop);
        }
        let total_h = total.to_string();
        if csv {
            let mut page = csv_safe(&page).map_err(ServiceError::Csv)?;
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf)
                .include_header(true)
                .with_quote_style(QuoteStyle::Necessary)
                .finish(&mut page)
                .map_err(ServiceError::Csv)?;
            return Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::HeaderName::from_static("x-total-count"), total_h),
                ],
                buf,
            )
                .into_response());
        }
        let rows: Vec<Value> = (0..page.height())
            .map(|i| product::row_json(&page, i))
            .collect();
        Ok((
            [(header::HeaderName::from_static("x-total-count"), total_h)],
            Json(json!({
                "product": name,
                "as_of": idx.latest.as_of,
                "run_id": idx.latest.run_id,
                "offset": offset,
                "limit": limit,
                "total": total,
                "rows": rows,
            })),
        )
            .into_response())
    })
    .await
}
