//! A blocking tracker for synchronous hosts, in the spirit of `reqwest::blocking`: every
//! [`ExperimentTracker`] operation, waiting for its result. No async runtime is needed: the
//! backends run their store calls and requests on the library's own I/O runtime
//! ([`mlops_core::runtime`]) and the calling thread blocks until they are done.
//!
//! Call it from plain threads, not from inside async code (it would block that executor's
//! thread); async hosts use the backend directly, on any executor.
//!
//! ```
//! use std::collections::BTreeMap;
//! use mlops_train::tracking::blocking::Tracker;
//! use mlops_train::tracking::{MetricPoint, ObjectStoreTracker, RunStatus};
//!
//! let tracker = Tracker::new(ObjectStoreTracker::open("memory:///", &Default::default())?);
//! let run = tracker.start_run("fraud", "baseline", &BTreeMap::new())?;
//! tracker.log_metrics(&run, &[MetricPoint::now("roc_auc", 0.97, 0)])?;
//! tracker.end_run(&run, RunStatus::Finished)?;
//! assert_eq!(tracker.get_run(&run)?.metrics["roc_auc"], 0.97);
//! # Ok::<(), mlops_train::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use mlops_core::runtime::block_on;

use super::{ExperimentTracker, MetricPoint, RunId, RunRecord, RunStatus};
use crate::error::Result;

/// Any [`ExperimentTracker`], blocking. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<dyn ExperimentTracker>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

impl Tracker {
    /// Wraps a backend.
    pub fn new(backend: impl ExperimentTracker + 'static) -> Self {
        Tracker {
            inner: Arc::new(backend),
        }
    }

    /// Wraps a shared backend.
    pub fn from_arc(backend: Arc<dyn ExperimentTracker>) -> Self {
        Tracker { inner: backend }
    }

    /// The async backend behind this one.
    pub fn as_async(&self) -> &Arc<dyn ExperimentTracker> {
        &self.inner
    }

    /// [`ExperimentTracker::start_run`].
    pub fn start_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunId> {
        block_on(self.inner.start_run(experiment, name, tags))
    }

    /// [`ExperimentTracker::log_params`].
    pub fn log_params(&self, run: &RunId, params: &BTreeMap<String, String>) -> Result<()> {
        block_on(self.inner.log_params(run, params))
    }

    /// [`ExperimentTracker::log_metrics`].
    pub fn log_metrics(&self, run: &RunId, metrics: &[MetricPoint]) -> Result<()> {
        block_on(self.inner.log_metrics(run, metrics))
    }

    /// [`ExperimentTracker::set_tags`].
    pub fn set_tags(&self, run: &RunId, tags: &BTreeMap<String, String>) -> Result<()> {
        block_on(self.inner.set_tags(run, tags))
    }

    /// [`ExperimentTracker::log_artifact`].
    pub fn log_artifact(&self, run: &RunId, path: &str, bytes: Vec<u8>) -> Result<()> {
        block_on(self.inner.log_artifact(run, path, bytes))
    }

    /// [`ExperimentTracker::end_run`].
    pub fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        block_on(self.inner.end_run(run, status))
    }

    /// [`ExperimentTracker::get_run`].
    pub fn get_run(&self, run: &RunId) -> Result<RunRecord> {
        block_on(self.inner.get_run(run))
    }

    /// [`ExperimentTracker::list_runs`].
    pub fn list_runs(&self, experiment: &str) -> Result<Vec<RunRecord>> {
        block_on(self.inner.list_runs(experiment))
    }

    /// [`ExperimentTracker::metric_history`].
    pub fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<MetricPoint>> {
        block_on(self.inner.metric_history(run, key))
    }

    /// [`ExperimentTracker::get_artifact`].
    pub fn get_artifact(&self, run: &RunId, path: &str) -> Result<Vec<u8>> {
        block_on(self.inner.get_artifact(run, path))
    }
}
