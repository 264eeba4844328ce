//! The HTTP API (JSON): routes, handlers, the access check each protected route makes
//! first, and the request middleware (a tracing span and latency metrics per request).
//! Every blocking store or pipeline call goes through `spawn_blocking`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
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
use crate::store::StoreError;

use super::auth::{is_pii_column, Action, Principal};
use super::runner::{self, Trigger};
use super::scheduler::{self, Schedule};
use super::{AppState, ServiceError};

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

fn check(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
    route: &str,
) -> ApiResult<Principal> {
    let h = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    state.auth.authorize(h, action, route)
}

/// Names that become store keys: no path tricks.
fn valid_name(kind: &str, s: &str) -> ApiResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "{kind} {s:?}: letters, digits, '_' and '-' only"
        )))
    }
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
            Ok(Err(e)) => return ServiceError::Internal(e.to_string()).into_response(),
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
    let running = state.runner.running().get(&j.name).cloned();
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

async fn list_jobs(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check(&state, &headers, Action::ReadRuns, "/jobs")?;
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
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    check(&state, &headers, Action::ReadRuns, "/jobs/{job}")?;
    valid_name("job", &name)?;
    blocking(move || {
        let j = load_job(&state, &name)?;
        let mut v = job_summary(&state, &j);
        v["schedule_state"] = json!(scheduler::load_state(&state.store, &name)?);
        v["recent_fires"] = json!(scheduler::recent_fires(&state.store, &name, 50)?);
        v["lease"] = match state.store.get(&runner::lease_key(&name)) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(StoreError::NotFound { .. }) => Value::Null,
            Err(e) => return Err(e.into()),
        };
        Ok(Json(v))
    })
    .await
}

async fn list_runs(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    check(&state, &headers, Action::ReadRuns, "/jobs/{job}/runs")?;
    valid_name("job", &name)?;
    blocking(move || {
        load_job(&state, &name)?;
        let runs = pipeline::ledgers(state.store.as_ref(), &name)?;
        Ok(Json(json!({"job": name, "runs": runs})))
    })
    .await
}

async fn get_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((name, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check(
        &state,
        &headers,
        Action::ReadRuns,
        "/jobs/{job}/runs/{run_id}",
    )?;
    valid_name("job", &name)?;
    valid_name("run id", &run_id)?;
    blocking(move || {
        let b = state
            .store
            .get(&pipeline::ledger_key(&name, &run_id))
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    ServiceError::NotFound(format!("no run {run_id} of job {name}"))
                }
                e => e.into(),
            })?;
        let v: Value = serde_json::from_slice(&b)
            .map_err(|e| ServiceError::Internal(format!("unreadable ledger: {e}")))?;
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
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let who = check(&state, &headers, Action::TriggerRuns, "/jobs/{job}/runs")?;
    valid_name("job", &name)?;
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

async fn feature_sets(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check(&state, &headers, Action::ReadRuns, "/feature-sets")?;
    blocking(move || {
        let sets = state
            .project
            .feature_sets()
            .map_err(|e| ServiceError::Unprocessable(e.to_string()))?;
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

async fn list_products(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let p = check(&state, &headers, Action::ReadProducts, "/products")?;
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
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = check(
        &state,
        &headers,
        Action::ReadProducts,
        "/products/{product}",
    )?;
    valid_name("product", &name)?;
    blocking(move || {
        let b = state
            .store
            .get(&format!("catalog/{name}.json"))
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ServiceError::NotFound(format!("no product {name}")),
                e => e.into(),
            })?;
        let entry: product::CatalogEntry = serde_json::from_slice(&b)
            .map_err(|e| ServiceError::Internal(format!("catalog/{name}.json: {e}")))?;
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
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    check(
        &state,
        &headers,
        Action::ReadProducts,
        "/products/{product}/contract",
    )?;
    valid_name("product", &name)?;
    let yaml = blocking(move || {
        state
            .store
            .get(&format!("products/{name}/contract.yaml"))
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
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let p = check(
        &state,
        &headers,
        Action::ReadProducts,
        "/products/{product}/customers/{customer_id}",
    )?;
    valid_name("product", &name)?;
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

/// First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV
/// Injection"): `=`, `+`, `-`, `@`, tab and carriage return, and the full-width (`＝＋－＠`)
/// and small-form (`﹦﹢﹣`) variants that spreadsheets fold to them.
const FORMULA_TRIGGERS: [char; 13] = [
    '=', '+', '-', '@', '\t', '\r', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}', '\u{fe66}',
    '\u{fe62}', '\u{fe63}',
];

/// Characters a spreadsheet may skip before it looks for a formula trigger: Unicode
/// whitespace (NBSP too), the BOM, zero-width characters, the word joiner and the bidi
/// marks and controls.
fn invisible_lead(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{feff}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2060}'..='\u{2064}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{00ad}'
        )
}

/// Whether a text cell would be read as a formula: it starts with a trigger, or with one
/// after leading invisible characters (BOM, zero-width, bidi controls, NBSP, whitespace).
pub fn csv_formula_like(s: &str) -> bool {
    s.starts_with(FORMULA_TRIGGERS)
        || s.trim_start_matches(invisible_lead)
            .starts_with(FORMULA_TRIGGERS)
}

/// A text cell made inert for spreadsheets: one leading `'` when it would be read as a
/// formula ([`csv_formula_like`]); the quote shows in the cell, the text after it is the value.
pub fn csv_safe_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if csv_formula_like(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The page as it is exported to CSV: every text column (and the header) through
/// [`csv_safe_cell`]; typed numbers, dates and booleans as they are (a negative score stays
/// a number). RFC 4180 quoting is the writer's (`QuoteStyle::Necessary`).
pub fn csv_safe(page: &DataFrame) -> PolarsResult<DataFrame> {
    let mut cols = Vec::with_capacity(page.width());
    for c in page.columns() {
        let name = csv_safe_cell(c.name().as_str()).into_owned();
        let c = match c.dtype() {
            DataType::String | DataType::Categorical(..) | DataType::Enum(..) => {
                let text = c.cast(&DataType::String)?;
                let safe: StringChunked =
                    text.str()?.iter().map(|v| v.map(csv_safe_cell)).collect();
                safe.into_series().into_column()
            }
            _ => c.clone(),
        };
        cols.push(c.with_name(name.into()));
    }
    DataFrame::new(page.height(), cols)
}

async fn get_rows(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<RowsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let p = check(
        &state,
        &headers,
        Action::ReadProducts,
        "/products/{product}/rows",
    )?;
    valid_name("product", &name)?;
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
            let mut page = csv_safe(&page)
                .map_err(|e| ServiceError::Internal(format!("encoding CSV: {e}")))?;
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf)
                .include_header(true)
                .with_quote_style(QuoteStyle::Necessary)
                .finish(&mut page)
                .map_err(|e| ServiceError::Internal(format!("encoding CSV: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_export_is_inert_in_spreadsheets_and_rfc4180_quoted() {
        let ids = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "a,b",
            "a\"b",
            "C1",
        ];
        let mut df = df!(
            "customer_id" => ids,
            "score" => [-0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "=bad" => [-1i64, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap();
        df.with_column(
            df.column("customer_id")
                .unwrap()
                .cast(&DataType::from_categories(Categories::global()))
                .unwrap()
                .with_name("segment".into()),
        )
        .unwrap();
        let mut safe = csv_safe(&df).unwrap();
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .include_header(true)
            .with_quote_style(QuoteStyle::Necessary)
            .finish(&mut safe)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let want = "customer_id,score,'=bad,segment\n\
            \"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-0.5,-1,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n\
            '+1,1.0,0,'+1\n\
            '-2,2.0,0,'-2\n\
            '@SUM(A1),3.0,0,'@SUM(A1)\n\
            '\tx,4.0,0,'\tx\n\
            \"'\rx\",5.0,0,\"'\rx\"\n\
            \"a,b\",6.0,0,\"a,b\"\n\
            \"a\"\"b\",7.0,0,\"a\"\"b\"\n\
            C1,8.0,0,C1\n";
        assert_eq!(text, want);
        assert_eq!(csv_safe_cell("plain"), "plain");
        // Full-width and small-form triggers, and triggers after invisible leading chars.
        for s in [
            "\u{ff1d}1+1",
            "\u{ff0b}1",
            "\u{ff0d}1",
            "\u{ff20}SUM(A1)",
            "\u{fe66}1+1",
            "\u{fe62}1",
            "\u{fe63}1",
            "\u{feff}=1+1",
            "\u{200b}=1+1",
            "\u{200c}+1",
            "\u{200d}-1",
            "\u{2060}@x",
            "\u{202e}=1+1",
            "\u{202a}=1",
            "\u{2066}=1",
            "\u{2069}=1",
            "\u{a0}=1+1",
            " =1",
            "\u{3000}=1",
            "\u{2003}\u{feff}\u{202e}\u{ff1d}1",
            "\n=1",
        ] {
            assert_eq!(csv_safe_cell(s), format!("'{s}"), "{s:?}");
        }
        for s in ["\u{feff}plain", "\u{a0}x", " a=b", "a+b", "\u{ff21}"] {
            assert_eq!(csv_safe_cell(s), s, "{s:?}");
        }
        assert_eq!(csv_safe_cell(""), "");
    }
}
