//! The one integration-test binary (one link against polars); each area is a module.

mod aws;
mod common;
mod features;
mod fuzz;
mod hardening_panics;
mod pipeline;
mod scoring;
mod service;
