//! [`Run`]: an open run, as MLflow's `with mlflow.start_run():` gives one — everything logged
//! through it lands in the same run until it is ended.

use std::collections::BTreeMap;

use super::{ExperimentTracker, MetricPoint, RunId, RunStatus};
use crate::error::Result;

/// A run started on a tracker and not yet ended. Log into it as long as needed (training,
/// then test metrics computed afterwards), then [`Run::end`] it — or [`Run::finish_with`] a
/// result, which ends it `FINISHED` or `FAILED`. Dropped without an end, the run stays
/// `RUNNING` on the backend (as a crashed MLflow run does), and a warning is logged.
///
/// ```
/// use std::collections::BTreeMap;
/// use mlops_train::tracking::{ExperimentTracker, MetricPoint, ObjectStoreTracker, Run, RunStatus};
///
/// # futures::executor::block_on(async {
/// let tracker = ObjectStoreTracker::open("memory:///", &Default::default())?;
/// let run = Run::start(&tracker, "fraud", "mlp", &BTreeMap::new()).await?;
/// run.log_metric("val_roc_auc", 0.97, 1).await?;
/// // ... later, on the test split, into the same run:
/// run.log_metric("test_roc_auc", 0.95, 0).await?;
/// let id = run.end(RunStatus::Finished).await?;
/// let record = tracker.get_run(&id).await?;
/// assert_eq!((record.metrics["test_roc_auc"], record.status), (0.95, RunStatus::Finished));
/// # Ok::<(), mlops_train::Error>(())
/// # })?;
/// # Ok::<(), mlops_train::Error>(())
/// ```
pub struct Run<'t> {
    tracker: &'t dyn ExperimentTracker,
    id: RunId,
    ended: bool,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'t> Run<'t> {
    /// Starts a run of `experiment` (created if missing) named `name`, with `tags`.
    pub async fn start(
        tracker: &'t dyn ExperimentTracker,
        experiment: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Run<'t>> {
        let id = tracker.start_run(experiment, name, tags).await?;
        Ok(Run {
            tracker,
            id,
            ended: false,
        })
    }

    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// Logs parameters.
    pub async fn log_params(&self, params: &BTreeMap<String, String>) -> Result<()> {
        self.tracker.log_params(&self.id, params).await
    }

    /// Logs metric points.
    pub async fn log_metrics(&self, points: &[MetricPoint]) -> Result<()> {
        self.tracker.log_metrics(&self.id, points).await
    }

    /// Logs one metric value at `step`, stamped now.
    pub async fn log_metric(&self, key: &str, value: f64, step: i64) -> Result<()> {
        self.log_metrics(&[MetricPoint::now(key, value, step)])
            .await
    }

    /// Sets tags.
    pub async fn set_tags(&self, tags: &BTreeMap<String, String>) -> Result<()> {
        self.tracker.set_tags(&self.id, tags).await
    }

    /// Stores an artifact at relative `path`.
    pub async fn log_artifact(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.tracker.log_artifact(&self.id, path, bytes).await
    }

    /// Ends the run with `status`; its id, to read it back.
    pub async fn end(mut self, status: RunStatus) -> Result<RunId> {
        self.tracker.end_run(&self.id, status).await?;
        self.ended = true;
        Ok(self.id.clone())
    }

    /// Ends the run `FINISHED` when `result` is `Ok`, else `FAILED` (with the error's message
    /// as the `error` tag) and returns the original error.
    pub async fn finish_with(self, result: Result<()>) -> Result<RunId> {
        match result {
            Ok(()) => self.end(RunStatus::Finished).await,
            Err(e) => {
                let tags = [(
                    "error".to_string(),
                    e.to_string().chars().take(500).collect(),
                )];
                if let Err(tag) = self.set_tags(&tags.into()).await {
                    tracing::warn!(run = %self.id, error = %tag, "could not tag the failed run");
                }
                let id = self.id.clone();
                if let Err(end) = self.end(RunStatus::Failed).await {
                    tracing::warn!(run = %id, error = %end, "could not mark the run failed");
                }
                Err(e)
            }
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if !self.ended {
            tracing::warn!(run = %self.id, "run dropped without end(): it stays RUNNING");
        }
    }
}
