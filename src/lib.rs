//! # mlops
//!
//! The production machine-learning loop as embeddable Rust libraries:
//!
//! ```text
//! validate data -> train (tracked, tuned) -> gate on metrics -> register -> canary -> promote
//!       ^                                                                          |
//!       +---------------- retrain <- drift detected <- monitor live traffic <------+
//! ```
//!
//! This facade re-exports the workspace crates, each behind a cargo feature of the same name
//! (all on by default): [`core`] always, `drift`, `train`, `registry` and `serve`.
//! A host that needs only one step depends on that crate alone.
//!
//! ```
//! use mlops::core::metrics::ScoredSamples;
//!
//! let eval = ScoredSamples::new(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8], None)?;
//! assert!((eval.roc_auc()? - 0.75).abs() < 1e-12);
//! # Ok::<(), mlops::core::Error>(())
//! ```

pub use mlops_core as core;
#[cfg(feature = "drift")]
pub use mlops_drift as drift;
#[cfg(feature = "registry")]
pub use mlops_registry as registry;
#[cfg(feature = "serve")]
pub use mlops_serve as serve;
#[cfg(feature = "train")]
pub use mlops_train as train;
