//! The loop's parts as library calls a host composes (feature `lifecycle`, default on): the
//! [`Retrainer`] (a labeled window → validated against the model's schema → fit with the
//! champion's settings → gated against the champion re-scored on the same holdout →
//! registered with lineage, metrics and the reference profile → `canary` by
//! compare-and-swap), the [`rules`] that join a drift alarm to a retrain and a rollout's end
//! to the monitor, the small [`search`] whose settings a retrain reuses, the [`report`] of a
//! loop's timeline, and the [`RetrainJob`] a monitor's hook hands a retrain job. The host owns
//! the schedule: these are calls, not a daemon (`examples/pipeline` and `examples/retrain`
//! are such hosts). With the `sim` feature, a [`backtest`] replays the whole loop over a
//! labeled [`stream`] on a simulated clock.
//!
//! It lives in the facade because it needs core, drift, train, registry and serve together,
//! which no leaf crate may depend on (ARCHITECTURE.md).

#[cfg(feature = "sim")]
pub mod backtest;
mod error;
mod job;
pub mod report;
mod retrainer;
pub mod rules;
pub mod scoring;
pub mod search;
#[cfg(feature = "sim")]
pub mod stream;

pub use error::{Error, Result};
pub use job::{rfc3339, JobWindow, RetrainJob};
pub use retrainer::{
    metric_values, prediction_profile, reference_of, threshold_at_best_f1,
    with_performance_estimator, ReferenceOf, RetrainConfig, RetrainFairness, RetrainImportance,
    RetrainOutcome, RetrainRequest, RetrainSettings, Retrained, Retrainer, Tracking,
    REFERENCE_BACKGROUND_ROWS,
};
