//! The one integration-test binary (one link against polars); each area is a module.

mod aws;
mod common;
mod features;
mod hardening_commits;
mod pipeline;
mod scoring;
mod service;
