//! What a protected handler extracts before its body runs: the caller, authorized for the
//! route's action ([`Caller`]), then the names in its path, checked ([`JobPath`],
//! [`RunPath`], [`ProductPath`], [`CustomerPath`]). Handlers list the caller first, so a
//! request without a valid token is refused (401/403) before its path is looked at (400).

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::names::KeySegment;
use crate::service::auth::{Action, Principal};
use crate::service::ServiceError;

/// The action a route needs, as a type (see [`Caller`]).
pub(crate) trait Grant {
    /// The action the caller's role must grant.
    const ACTION: Action;
}

/// Routes that read jobs, runs and feature sets.
pub(crate) struct ReadRuns;
/// Routes that start runs.
pub(crate) struct TriggerRuns;
/// Routes that read data products.
pub(crate) struct ReadProducts;

impl Grant for ReadRuns {
    const ACTION: Action = Action::ReadRuns;
}
impl Grant for TriggerRuns {
    const ACTION: Action = Action::TriggerRuns;
}
impl Grant for ReadProducts {
    const ACTION: Action = Action::ReadProducts;
}

/// The bearer token's principal, whose role grants `G`'s action; refused with 401 (no or
/// unknown token) or 403 (the role does not grant the action).
pub(crate) struct Caller<G>(pub Principal, pub PhantomData<G>);

impl<G: Grant> FromRequestParts<Shared> for Caller<G> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ServiceError> {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("(unmatched)", |m| m.as_str());
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let p = state.auth.authorize(h, G::ACTION, route)?;
        Ok(Caller(p, PhantomData))
    }
}

/// A name from the path, parsed as a [`KeySegment`] before it goes near a store key (no
/// path tricks); refused with 400, naming `kind` and the rule.
fn key_segment(kind: &'static str, s: &str) -> Result<(), Box<Response>> {
    KeySegment::parse(s).map(drop).map_err(|e| {
        Box::new(ServiceError::BadRequest(e.with_kind(kind).to_string()).into_response())
    })
}

/// The path's parameters as axum parses them; a malformed path keeps axum's own answer.
async fn path<T>(parts: &mut Parts, state: &Shared) -> Result<T, Response>
where
    T: serde::de::DeserializeOwned + Send,
{
    Path::<T>::from_request_parts(parts, state)
        .await
        .map(|Path(t)| t)
        .map_err(IntoResponse::into_response)
}

/// `{job}`, checked as a [`KeySegment`].
pub(crate) struct JobPath(pub String);

impl FromRequestParts<Shared> for JobPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let job: String = path(parts, state).await?;
        key_segment("job name", &job).map_err(|r| *r)?;
        Ok(JobPath(job))
    }
}

/// `{job}/runs/{run_id}`, both checked as a [`KeySegment`].
pub(crate) struct RunPath {
    pub job: String,
    pub run_id: String,
}

impl FromRequestParts<Shared> for RunPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let (job, run_id): (String, String) = path(parts, state).await?;
        key_segment("job name", &job).map_err(|r| *r)?;
        key_segment("run id", &run_id).map_err(|r| *r)?;
        Ok(RunPath { job, run_id })
    }
}

/// `{product}`, checked as a [`KeySegment`].
pub(crate) struct ProductPath(pub String);

impl FromRequestParts<Shared> for ProductPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let product: String = path(parts, state).await?;
        key_segment("product name", &product).map_err(|r| *r)?;
        Ok(ProductPath(product))
    }
}

/// `{product}/customers/{customer_id}`: the product checked as a [`KeySegment`]; the customer
/// id is only looked up, never a key, so it is taken as sent.
pub(crate) struct CustomerPath {
    pub product: String,
    pub customer_id: String,
}

impl FromRequestParts<Shared> for CustomerPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let (product, customer_id): (String, String) = path(parts, state).await?;
        key_segment("product name", &product).map_err(|r| *r)?;
        Ok(CustomerPath {
            product,
            customer_id,
        })
    }
}
