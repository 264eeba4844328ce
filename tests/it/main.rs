//! The one integration-test binary (one link against polars); each area is a module.

mod aws;
mod clv;
mod common;
mod errors;
mod features;
mod features_multi;
mod fuzz;
mod generate_stream;
mod hardening_commits;
mod hardening_panics;
mod hardening_servers;
mod hardening_source;
mod hardening_validate;
mod mesh_catalog;
mod mesh_events;
mod mesh_run;
mod mesh_sources;
mod names;
mod pipeline;
mod products_gc;
mod schedule;
mod scoring;
mod service;
mod training_cut;
mod training_sets;
