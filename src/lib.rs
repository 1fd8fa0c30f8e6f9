//! # mlops
//!
//! The production machine-learning loop as embeddable Rust libraries. A complete host
//! program — validate → train → track → evaluate → gate → profile → register → alias → load
//! → score — through this facade and tokio alone (it is `examples/host.rs`, and runs as this
//! crate's doc test):
//!
#![doc = concat!("```rust\n", include_str!("../examples/host.rs"), "```")]
//!
//! The loop it is one pass of:
//!
//! ```text
//! validate data -> train (tracked, tuned) -> gate on metrics -> register -> canary -> promote
//!       ^                                                                          |
//!       +---------------- retrain <- drift detected <- monitor live traffic <------+
//! ```
//!
//! This facade re-exports the workspace crates, each behind a cargo feature of the same name
//! (all on by default): [`core`] always, `drift`, `train`, `registry` and `serve`; `sim`
//! (default) adds the simulations, `core::synthetic` (seeded card transactions, the main job's
//! data) and `serve::replay` (a rollout on simulated time); `http` (not default) adds the
//! KServe V2 server (`serve::http`); `testing` (not default) adds the public conformance suites
//! a host runs on its own implementations of the traits (`core::testing`, `serve::testing`,
//! `train::testing`); `lifecycle` (default) adds the loop's parts over all of them: the
//! `Retrainer`, the rules joining drift, retrain and rollout, the timeline report.
//! A host that needs only one step depends on that crate alone.
//!
//! ```
//! use mlops::core::metrics::ScoredSamples;
//!
//! let eval = ScoredSamples::new(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8], None)?;
//! assert!((eval.roc_auc()? - 0.75).abs() < 1e-12);
//! # Ok::<(), mlops::core::Error>(())
//! ```

/// The `async_trait` macro, for implementing the crates' async traits (a tracker, a retrain
/// trigger, an objective).
pub use async_trait::async_trait;
pub use mlops_core as core;
/// The `ndarray` (0.17) of every matrix in the API: name its types through this, whatever
/// `ndarray` the host depends on itself.
pub use mlops_core::ndarray;
/// The `object_store` stores are opened with (`Registry::with_store`,
/// `ObjectStoreTracker::new`).
#[cfg(any(feature = "registry", feature = "train"))]
pub use mlops_core::object_store;
/// `prometheus-client` (0.24): its `registry::Registry` collects the drift and serving
/// metrics (`core::exposition::classic_text` writes them for a scrape). Not the model
/// registry, which is [`registry::Registry`].
pub use mlops_core::prometheus_client;
#[cfg(feature = "drift")]
pub use mlops_drift as drift;
#[cfg(feature = "registry")]
pub use mlops_registry as registry;
#[cfg(feature = "serve")]
pub use mlops_serve as serve;
#[cfg(feature = "train")]
pub use mlops_train as train;
#[cfg(feature = "lifecycle")]
pub mod lifecycle;
