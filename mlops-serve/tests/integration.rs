//! Every integration test of this crate in one test binary (one link instead of one per
//! file): each `tests/<name>.rs` is the module `<name>` here, run as
//! `cargo test --test integration <name>::`. A file that must be its own process is its own
//! `[[test]]` target in Cargo.toml (`autotests = false` there); the workspace's
//! `integration::test_files_are_all_compiled` (tests/integration.rs at the root) checks that
//! every `tests/*.rs` is one or the other.

mod support;
// What tree_models.rs and onnx_models.rs share.
#[cfg(all(feature = "registry", feature = "http"))]
mod foreign;

mod analysis;
mod batch;
mod engine_reference;
mod experiment;
mod experiment_controller;
mod fairness_check;
mod grpc;
mod http;
mod http_door;
mod http_explain;
mod monitor;
mod onnx_models;
mod predictor_conformance;
mod predlog;
mod prometheus_rollout;
mod rollout;
mod rollout_registry;
mod rollout_robust;
mod rollout_sequential;
mod rollout_shared;
mod rollout_sim;
mod router;
mod sequential;
mod source;
mod tree_models;
