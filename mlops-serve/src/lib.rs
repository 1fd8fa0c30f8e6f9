//! # mlops-serve
//!
//! Serving for the mlops loop. Today: the inference engine — [`CompiledModel`], a
//! [`Predictor`](mlops_core::model::Predictor) compiled from a model artifact (weights packed
//! once, standardization folded in, no allocation per call, a configurable
//! [`NonFinitePolicy`]), equal to the reference `MlpModel` to 1e-5. To come (the serving
//! issues): the traffic router (stable, canary, shadow, A/B), per-variant statistics, canary
//! analysis and the promotion policy, Prometheus metrics, and an Open Inference Protocol
//! (KServe V2) HTTP server.

mod engine;
pub mod source;

pub use engine::{CompiledModel, NonFinitePolicy};
/// Errors are mlops-core's (what the `Predictor` trait returns): every message names the
/// field, the value and what was expected.
pub use mlops_core::{Error, Result};
