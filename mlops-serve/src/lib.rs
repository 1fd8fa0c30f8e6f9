//! # mlops-serve
//!
//! Serving for the mlops loop:
//!
//! - the inference engine — [`CompiledModel`], a [`Predictor`](mlops_core::model::Predictor)
//!   compiled from a model artifact (weights packed once, standardization folded in,
//!   per-thread scratch sized to a block of rows, a configurable [`NonFinitePolicy`]), equal
//!   to the reference `MlpModel` to 1e-5 and to numpy's forward pass for every activation;
//! - [`router`]: stable, canary, N-way A/B and shadow variants with sticky buckets, atomic
//!   weight switches and per-variant statistics over the current step, with delayed labels
//!   joined by request id;
//! - [`analysis`] and [`policy`]: canary checks with statistics (Pass, Fail or
//!   Inconclusive) and a Flagger-shaped promotion config;
//! - [`sequential`]: always-valid evidence (the normal-mixture confidence sequence) pooled
//!   over a rollout's analyses, for a policy's `[sequential]` section;
//! - [`rollout`]: the rollout state machine on an injected clock, every decision an audit
//!   record, and [`rollout::Controller`], which keeps the state in a shared store
//!   ([`rollout::RolloutStore`], conditional writes) and moves the `production` and `canary`
//!   aliases by compare-and-swap through a [`source::ModelSource`];
//! - [`step_stats`]: what a router measures per variant over the current rollout step
//!   (counts, latency, the prediction reservoir, labeled outcomes) — the numbers a check reads;
//! - [`telemetry`]: serving's Prometheus families in the host's `prometheus-client` registry
//!   (the names `mlops_serve_*`, defined once in `telemetry::names`);
//! - [`Error`]: serve's errors, each with an [`ErrorKind`] a caller branches on (retry what is
//!   `Unavailable`, report the rest);
//! - [`http`] (feature `http`): the Open Inference Protocol (KServe V2) over HTTP on axum;
//! - `rollout::PrometheusSource` (feature `prometheus`): a step's statistics by PromQL from a
//!   Prometheus server;
//! - `monitor` (feature `monitor`): live monitoring in a replica, drift per version against
//!   its reference profiles, live metrics, one retrain request per alarm across replicas;
//! - `predlog` (feature `predlog`): the durable prediction log, every scored row and label
//!   as Parquet on a store, written off the request path;
//! - `replay` (feature `sim`): a rollout replayed on simulated time;
//! - `rollout_sim` (feature `sim`): a promotion policy's operating characteristics, from
//!   thousands of rollouts simulated with a known truth;
//! - `testing` (feature `testing`, off by default): the public conformance suites a host runs
//!   on its own `ModelSource`, `RolloutStore`, `MetricsSource` (and `Predictor`).

pub mod analysis;
#[cfg(feature = "batch")]
pub mod batch;
mod engine;
mod error;
pub mod experiment;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod policy;
#[cfg(feature = "predlog")]
pub mod predlog;
#[cfg(feature = "sim")]
pub mod replay;
pub mod rollout;
#[cfg(feature = "sim")]
pub mod rollout_sim;
pub mod router;
pub mod sequential;
pub mod source;
pub mod step_stats;
#[cfg(any(feature = "predlog", feature = "monitor"))]
mod tap;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ticker;

pub use engine::{CompiledModel, NonFinitePolicy};
pub use error::{Cause, Error, ErrorKind, Result};
