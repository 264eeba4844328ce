//! c360: a Customer 360 feature store and batch-inference orchestrator.
//!
//! Flow: Customer 360 tables (`source`) → point-in-time features (`features`) → offline
//! store (`offline` over `store`) → batch transform (`transform`, scoring with `model`
//! behind the `serving` contract) → data product (`product`), run step by step by
//! `pipeline`. `cli` is the thin edge.

// Errors carry the context a user needs to fix the input (file, table, column, example
// row); the large ones are boxed where they nest (`FeatureError::Source`,
// `PipelineError::Features`, `ServiceError::Pipeline`) so every `Result` stays small.

pub mod aws;
pub mod cli;
pub mod diagnostic;
#[doc(hidden)]
pub mod failpoint;
pub mod features;
pub mod generate;
pub mod mesh;
pub mod model;
pub mod names;
pub mod offline;
pub mod pipeline;
pub mod product;
pub mod project;
pub mod schedule;
pub mod service;
pub mod serving;
pub mod source;
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod transform;
