//! # mlops-drift
//!
//! Drift detection for the mlops loop.
//!
//! - [`stats`]: two-sample statistics whose names, semantics and values follow scipy 1.17;
//! - [`ReferenceProfile`]: reference statistics fitted once (sorted columns, quantile bins,
//!   category counts, missing counts), serde-serializable, compared with a current batch by
//!   [`ReferenceProfile::compare`] under a [`DriftConfig`] into a [`DriftReport`]: per-column
//!   tests (Evidently's preset or overrides), multiple-testing [`Correction`], effect-size
//!   gating, the share-of-drifted-columns rule and the seed's mean-statistic rule;
//! - [`DriftPolicy`]: report → action (none, warn, retrain) with minimum samples and a
//!   cooldown on an injected clock, a host [`RetrainTrigger`], and Prometheus [`DriftMetrics`];
//! - [`DriftMonitor`]: a whole table monitored in windows of rows across batches, every
//!   check through the policy (the served model's drift detector);
//! - [`html_report`] (feature `html`, default): the report as an HTML page with a summary table and per-column ECDFs;
//! - [`QuantileSketch`] (feature `sketch`, default): Apache DataSketches' KLL sketch (about 12 KB per column at the
//!   default `k`, the format the Java, C++ and Python DataSketches read), whose rank error
//!   holds wherever the data sit and whose KS statistics come with an error bound, and
//!   [`ProfileSketch`]: per-partition sketches of a whole reference, merged in any order into
//!   a [`ReferenceProfile`];
//! - [`stream`]: windowed detection, an ERT-calibrated online detector, ADWIN, Page–Hinkley, DDM, and seeded SEA / hyperplane
//!   streams.
//!
//! It depends only on `mlops-core`, so a host that wants drift statistics pulls in nothing
//! else.
//!
//! ```
//! use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
//!
//! let reference: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
//! let current: Vec<f64> = reference.iter().map(|v| v + 0.5).collect();
//! let r = ks_2samp(&reference, &current, Alternative::TwoSided, KsMethod::Auto)?;
//! assert!(r.p_value < 1e-6);
//! # Ok::<(), mlops_drift::Error>(())
//! ```

mod correction;
mod error;
#[cfg(feature = "html")]
mod html;
mod monitor;
mod policy;
mod profile;
mod report;
#[cfg(feature = "sketch")]
mod sketch;
#[cfg(feature = "sketch")]
mod sketch_profile;
pub mod stats;
pub mod stream;

/// The `async_trait` macro, for implementing [`RetrainTrigger`].
pub use async_trait::async_trait;
pub use correction::Correction;
pub use error::{Error, Result};
#[cfg(feature = "html")]
pub use html::html_report;
pub use monitor::{DriftMonitor, Estimator, MonitorCheck, MonitorConfig};
pub use policy::{
    DriftAction, DriftMetrics, DriftMode, DriftPolicy, DriftPolicyConfig, EstimatedMetric,
    PerformanceRule, PolicyDecision, RetrainTrigger, WindowEstimate, MAX_COOLDOWN_SECONDS,
};
pub use profile::{
    ColumnProfile, ProfileConfig, ProfileStorage, ReferenceProfile, PREDICTION_COLUMN,
};
/// The `prometheus-client` (0.24) whose `registry::Registry` [`DriftMetrics::register`]
/// takes — a metrics registry, not the model registry.
pub use prometheus_client;
pub use report::{
    CheckedDriftConfig, ColumnDrift, ColumnStatus, DatasetDrift, DatasetRule, DriftConfig,
    DriftReport, DriftTest, MissingDrift, TestOutcome, Verdict,
};
#[cfg(feature = "sketch")]
pub use sketch::{QuantileSketch, SketchKs, DEFAULT_K as DEFAULT_SKETCH_K};
#[cfg(feature = "sketch")]
pub use sketch_profile::{ColumnSketch, ProfileSketch, MAX_REPRESENTATIVES};

#[cfg(feature = "sketch")]
mlops_core::json_methods!(ProfileSketch => "profile sketch");
mlops_core::json_methods!(
    ReferenceProfile => "reference profile",
    DriftConfig => "drift config",
    DriftReport => "drift report",
    DriftPolicyConfig => "drift policy config",
    MonitorConfig => "monitor config",
);
