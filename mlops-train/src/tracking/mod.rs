//! Experiment tracking: runs with parameters, metric histories, tags and artifacts, behind one
//! async trait with two backends — [`ObjectStoreTracker`] (any `object_store`: local disk,
//! memory, S3, ...; a layout a person can browse) and, with the `mlflow` feature,
//! [`MlflowTracker`] (an MLflow 3.x tracking server over its REST API). Both pass the same
//! conformance suite.

pub mod blocking;
mod local;
#[cfg(feature = "mlflow")]
mod mlflow;
mod run;
mod training;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::check_name;

pub use local::{ObjectStoreTracker, TrackerConfig};
#[cfg(feature = "mlflow")]
pub use mlflow::{MlflowConfig, MlflowTracker};
pub use run::Run;
pub use training::{log_training, log_training_to, log_trial};

/// A run's identifier (defined in mlops-core, so a registry version's lineage names a run
/// with the same type).
pub use mlops_core::RunId;

/// A run's lifecycle status (MLflow's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Started and not ended.
    Running,
    /// Ended normally.
    Finished,
    /// Ended by an error.
    Failed,
    /// Stopped from outside (a pruned or cancelled trial).
    Killed,
}

impl RunStatus {
    /// Every variant, in declaration order.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Finished,
        RunStatus::Failed,
        RunStatus::Killed,
    ];

    /// The serialized name (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// One metric value at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Metric name.
    pub key: String,
    /// Its value.
    pub value: f64,
    /// Step (epoch, trial report) it belongs to.
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl MetricPoint {
    /// A point stamped with the current time of the system clock.
    pub fn now(key: impl Into<String>, value: f64, step: i64) -> Self {
        Self::at(key, value, step, &mlops_core::clock::SystemClock)
    }

    /// A point stamped with the current time of `clock` (a test's manual clock, say).
    pub fn at(
        key: impl Into<String>,
        value: f64,
        step: i64,
        clock: &dyn mlops_core::clock::Clock,
    ) -> Self {
        MetricPoint {
            key: key.into(),
            value,
            step,
            timestamp_ms: now_ms(clock),
        }
    }
}

/// Milliseconds since the Unix epoch on `clock` (trackers read their injected clock).
pub(crate) fn now_ms(clock: &dyn mlops_core::clock::Clock) -> i64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a backend knows about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// Experiment name.
    pub experiment: String,
    /// Run name.
    pub name: String,
    /// Status.
    pub status: RunStatus,
    /// Start, ms since the Unix epoch.
    pub start_time_ms: i64,
    /// End, ms since the Unix epoch, once ended.
    pub end_time_ms: Option<i64>,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Tags set by the user (backend-internal tags such as MLflow's `mlflow.*` left out).
    pub tags: BTreeMap<String, String>,
    /// The latest value of each metric (largest step; latest timestamp on a tie).
    pub metrics: BTreeMap<String, f64>,
}

/// A tracking backend. Every method checks names (experiment, run, keys, artifact paths)
/// before any I/O and fails with a clear error; nothing logs secrets.
///
/// Both backends run their store calls and HTTP requests on the library's own I/O runtime
/// ([`mlops_core::runtime`]), so their futures work under any executor (any tokio flavor,
/// with or without drivers, or none); synchronous hosts use [`blocking::Tracker`].
#[async_trait]
pub trait ExperimentTracker: Send + Sync {
    /// Starts a run in `experiment` (created if missing) with a name and tags.
    async fn start_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunId>;
    /// Logs parameters (a parameter, once logged, may not change value).
    async fn log_params(&self, run: &RunId, params: &BTreeMap<String, String>) -> Result<()>;
    /// Logs metric points.
    async fn log_metrics(&self, run: &RunId, metrics: &[MetricPoint]) -> Result<()>;
    /// Sets tags (overwriting).
    async fn set_tags(&self, run: &RunId, tags: &BTreeMap<String, String>) -> Result<()>;
    /// Stores `bytes` as the artifact at relative `path` (`model/model.json`).
    async fn log_artifact(&self, run: &RunId, path: &str, bytes: Vec<u8>) -> Result<()>;
    /// Ends the run with `status`.
    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()>;
    /// A run's record.
    async fn get_run(&self, run: &RunId) -> Result<RunRecord>;
    /// Every run of an experiment (none if the experiment does not exist), oldest first.
    async fn list_runs(&self, experiment: &str) -> Result<Vec<RunRecord>>;
    /// Every logged point of one metric of a run, by step then timestamp.
    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<MetricPoint>>;
    /// The bytes of an artifact logged with [`ExperimentTracker::log_artifact`].
    async fn get_artifact(&self, run: &RunId, path: &str) -> Result<Vec<u8>>;
}

/// Runs ordered by a metric, best first (`higher_is_better`), runs without it last: the
/// comparison table of an experiment.
///
/// ```
/// use std::collections::BTreeMap;
/// use mlops_train::tracking::{compare_runs, RunId, RunRecord, RunStatus};
///
/// let run = |id: &str, auc: Option<f64>| RunRecord {
///     run_id: RunId(id.into()), experiment: "e".into(), name: id.into(), status: RunStatus::Finished,
///     start_time_ms: 0, end_time_ms: Some(1), params: BTreeMap::new(), tags: BTreeMap::new(),
///     metrics: auc.map(|a| ("val_roc_auc".to_string(), a)).into_iter().collect(),
/// };
/// let ranked = compare_runs(vec![run("a", Some(0.91)), run("b", None), run("c", Some(0.97))], "val_roc_auc", true);
/// let ids: Vec<&str> = ranked.iter().map(|r| r.run_id.0.as_str()).collect();
/// assert_eq!(ids, ["c", "a", "b"]);
/// ```
pub fn compare_runs(
    mut runs: Vec<RunRecord>,
    metric: &str,
    higher_is_better: bool,
) -> Vec<RunRecord> {
    runs.sort_by(|a, b| {
        match (a.metrics.get(metric), b.metrics.get(metric)) {
            (Some(x), Some(y)) if higher_is_better => y.total_cmp(x),
            (Some(x), Some(y)) => x.total_cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.start_time_ms.cmp(&b.start_time_ms))
    });
    runs
}

/// Runs oldest first (run id on a tie): the order `list_runs` returns.
pub(crate) fn sort_runs(runs: &mut [RunRecord]) {
    runs.sort_by(|a, b| {
        a.start_time_ms
            .cmp(&b.start_time_ms)
            .then(a.run_id.cmp(&b.run_id))
    });
}

/// Points by step, then timestamp: the order `metric_history` returns.
pub(crate) fn sort_points(points: &mut [MetricPoint]) {
    points.sort_by(|a, b| {
        a.step
            .cmp(&b.step)
            .then(a.timestamp_ms.cmp(&b.timestamp_ms))
    });
}

/// Refuses a non-finite metric value (neither JSON nor MLflow's REST API carries it).
pub(crate) fn check_metric_value(m: &MetricPoint) -> Result<()> {
    if m.value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("metric `{}` at step {}", m.key, m.step),
            m.value,
            "a finite number",
        ))
    }
}

/// Checks what `start_run` receives: the experiment and run names, and the tag keys.
pub(crate) fn check_start(
    experiment: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    check_name("experiment", experiment)?;
    check_name("run name", name)?;
    check_keys("tags", tags.keys())
}

/// Checks every key of a map, naming `field[key]`.
pub(crate) fn check_keys<'a>(field: &str, keys: impl Iterator<Item = &'a String>) -> Result<()> {
    for k in keys {
        check_name(&format!("{field} key"), k)?;
    }
    Ok(())
}
