//! The hand-written OpenAPI 3.0 document served at `/openapi.json`. A unit test (and an
//! integration test against the running service) fails when a route the router serves is
//! missing here, or when this document names a route the router does not serve.

use serde_json::{json, Value};

fn param(name: &str, inp: &str, desc: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": inp, "description": desc, "required": required, "schema": schema})
}

fn path_param(name: &str, desc: &str) -> Value {
    param(name, "path", desc, true, json!({"type": "string"}))
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn secured(op: Value, action: &str) -> Value {
    let mut op = op;
    op["security"] = json!([{"bearer": []}]);
    op["x-c360-action"] = json!(action);
    let r = op["responses"].as_object_mut().map(|r| {
        r.insert("401".into(), err("No bearer token, or an unknown one"));
        r.insert(
            "403".into(),
            err("The token's role does not grant the action"),
        );
    });
    let _ = r;
    op
}

fn obj() -> Value {
    json!({"type": "object"})
}

/// The document.
pub fn document() -> Value {
    let job = path_param("job", "The job's name (jobs/<job>.toml)");
    let product = path_param("product", "The data product's name");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "c360 service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Scheduled scoring runs, their ledgers and the data products they publish. Protected routes take `Authorization: Bearer <token>`; a role grants actions (x-c360-action) and column tags (a role without `pii` never receives a PII column).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "description": "unauthorized, forbidden, not_found, conflict, bad_request, unprocessable, unavailable, internal, no_route"},
                    "message": {"type": "string"}}},
                "Ledger": {"type": "object", "description": "runs/<job>/<run_id>/run.json", "properties": {
                    "job": {"type": "string"}, "run_id": {"type": "string"}, "as_of": {"type": "string", "format": "date"},
                    "status": {"type": "string", "enum": ["running", "failed", "succeeded"]},
                    "attempts": {"type": "integer"}, "steps": {"type": "array", "items": {"type": "object"}}}},
                "Started": {"type": "object", "properties": {
                    "job": {"type": "string"}, "run_id": {"type": "string"}, "as_of": {"type": "string", "format": "date"},
                    "trigger": {"type": "string"}, "status": {"type": "string"}, "ledger": {"type": "string"}}},
            },
        },
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                "responses": {"200": ok("The process answers", obj())}}},
            "/readyz": {"get": {"summary": "Readiness: the store answers", "operationId": "readyz",
                "responses": {"200": ok("Ready", obj()), "503": err("The store does not answer")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format)", "operationId": "metrics",
                "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                "responses": {"200": ok("OpenAPI 3 document", obj())}}},
            "/jobs": {"get": secured(json!({"summary": "Jobs with schedule, next fire and last run", "operationId": "listJobs",
                "responses": {"200": ok("Jobs", obj())}}), "read_runs")},
            "/jobs/{job}": {"get": secured(json!({"summary": "A job: schedule state, recent fires, lease", "operationId": "getJob",
                "parameters": [job.clone()],
                "responses": {"200": ok("The job", obj()), "404": err("No such job")}}), "read_runs")},
            "/jobs/{job}/runs": {
                "get": secured(json!({"summary": "A job's run ledgers, newest first", "operationId": "listRuns",
                    "parameters": [job.clone()],
                    "responses": {"200": ok("Runs", json!({"type": "object", "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Ledger"}}}})), "404": err("No such job")}}), "read_runs"),
                "post": secured(json!({"summary": "Trigger a run (202); 409 while a run of the job is in progress", "operationId": "triggerRun",
                    "parameters": [job.clone()],
                    "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"as_of": {"type": "string", "format": "date"}}}}}},
                    "responses": {"202": ok("Started", json!({"$ref": "#/components/schemas/Started"})), "400": err("Bad body"), "404": err("No such job"), "409": err("A run of the job is in progress"), "422": err("The job's definition is invalid")}}), "trigger_runs"),
            },
            "/jobs/{job}/runs/{run_id}": {"get": secured(json!({"summary": "One run's ledger", "operationId": "getRun",
                "parameters": [job, path_param("run_id", "The run id (as-of date and input hash)")],
                "responses": {"200": ok("The ledger", json!({"$ref": "#/components/schemas/Ledger"})), "404": err("No such run")}}), "read_runs")},
            "/feature-sets": {"get": secured(json!({"summary": "Feature set definitions", "operationId": "listFeatureSets",
                "responses": {"200": ok("Feature sets", obj())}}), "read_runs")},
            "/products": {"get": secured(json!({"summary": "Catalog entries of every data product", "operationId": "listProducts",
                "responses": {"200": ok("Products", obj())}}), "read_products")},
            "/products/{product}": {"get": secured(json!({"summary": "A product's catalog entry, versions and latest", "operationId": "getProduct",
                "parameters": [product.clone()],
                "responses": {"200": ok("The product", obj()), "404": err("No such product")}}), "read_products")},
            "/products/{product}/contract": {"get": secured(json!({"summary": "The Open Data Contract Standard v3 contract (YAML)", "operationId": "getContract",
                "parameters": [product.clone()],
                "responses": {"200": {"description": "The contract", "content": {"application/yaml": {"schema": {"type": "string"}}}}, "404": err("No such product")}}), "read_products")},
            "/products/{product}/customers/{customer_id}": {"get": secured(json!({"summary": "One customer's row of the latest version (from the in-memory index)", "operationId": "getCustomer",
                "parameters": [product.clone(), path_param("customer_id", "e.g. C0000042")],
                "responses": {"200": ok("The row", obj()), "404": err("No such product or customer")}}), "read_products")},
            "/products/{product}/rows": {"get": secured(json!({"summary": "A page of the latest version, JSON or CSV", "operationId": "getRows",
                "description": "format=csv is RFC 4180 CSV (UTF-8, a header line, a field quoted when it holds a comma, a double quote, CR or LF; a quote inside is doubled) made safe for spreadsheets as OWASP recommends against CSV injection: a text cell (and a header) that starts with =, +, -, @, tab or carriage return, or with their full-width (＝ ＋ － ＠) or small-form (﹦ ﹢ ﹣) forms, also after leading invisible characters (BOM, zero-width U+200B-U+200D, word joiner U+2060, bidi controls U+202A-U+202E and U+2066-U+2069, NBSP or other Unicode whitespace), gets one leading single quote ('), so a spreadsheet shows it as text and never runs it as a formula. Strip that one leading quote to get the stored value back. Typed numbers (a negative score too), dates and booleans are written as they are.",
                "parameters": [product,
                    param("offset", "query", "First row (default 0)", false, json!({"type": "integer", "minimum": 0})),
                    param("limit", "query", "Rows (default 1000, at most 10000)", false, json!({"type": "integer", "minimum": 1, "maximum": 10000})),
                    param("format", "query", "json (default) or csv", false, json!({"type": "string", "enum": ["json", "csv"]}))],
                "responses": {"200": {"description": "The page (X-Total-Count: all rows)", "content": {
                    "application/json": {"schema": obj()}, "text/csv": {"schema": {"type": "string"}}}},
                    "400": err("Bad offset, limit or format"), "404": err("No such product")}}), "read_products")},
        },
    })
}

/// The `(method, path)` pairs the document describes.
pub fn documented_routes(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, ops) in paths {
            if let Some(ops) = ops.as_object() {
                for m in ops.keys() {
                    out.push((m.clone(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_the_router() {
        let mut served: Vec<(String, String)> = crate::service::api::served_routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented_routes(&document()), served);
    }

    #[test]
    fn every_path_parameter_is_declared() {
        let doc = document();
        for (m, p) in documented_routes(&doc) {
            let op = &doc["paths"][&p][&m];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {p}"
            );
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| x["in"] == "path")
                        .filter_map(|x| x["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let mut in_path: Vec<&str> = p
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let mut declared = declared;
            in_path.sort();
            declared.sort();
            assert_eq!(in_path, declared, "{m} {p}");
        }
    }
}
