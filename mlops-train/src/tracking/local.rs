//! The tracking backend on any `object_store`: one folder per run that a person can browse.
//!
//! ```text
//! {prefix}/{experiment}/{run_id}/run.json            name, status, times, params, tags
//! {prefix}/{experiment}/{run_id}/metrics/{key}.json  every point of one metric
//! {prefix}/{experiment}/{run_id}/artifacts/{path}    logged files
//! {prefix}/_runs/{run_id}                            the run's experiment (lookup by id)
//! ```
//!
//! A run is written by the process that started it (a trainer, a trial); any number of runs
//! and readers may share the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{
    check_keys, check_name, check_start, now_ms, ExperimentTracker, MetricPoint, RunId, RunRecord,
    RunStatus,
};
use crate::error::{Error, Result};

/// Tracks runs as JSON files in an object store.
///
/// ```
/// use std::collections::BTreeMap;
/// use mlops_train::tracking::{ExperimentTracker, MetricPoint, ObjectStoreTracker, RunStatus};
///
/// # tokio_test_block(async {
/// let tracker = ObjectStoreTracker::open("memory:///", &Default::default())?;
/// let run = tracker.start_run("fraud", "baseline", &BTreeMap::new()).await?;
/// tracker.log_metrics(&run, &[MetricPoint::now("val_roc_auc", 0.97, 1)]).await?;
/// tracker.end_run(&run, RunStatus::Finished).await?;
/// assert_eq!(tracker.get_run(&run).await?.metrics["val_roc_auc"], 0.97);
/// # Ok::<(), mlops_train::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct ObjectStoreTracker {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    clock: Arc<dyn mlops_core::clock::Clock>,
    timeout: std::time::Duration,
}

/// How to open an [`ObjectStoreTracker`]: the same shape as the registry's
/// `RegistryConfig` (store options over the environment's, a deadline on every store call).
/// Plain data (serde), checked before any I/O.
///
/// ```
/// use mlops_train::tracking::TrackerConfig;
///
/// let config: TrackerConfig = serde_json::from_str(
///     r#"{"timeout_seconds": 5, "options": {"aws_region": "eu-west-1"}}"#,
/// )?;
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Options of the store's builder (object_store config keys such as `aws_endpoint`), over
    /// those read from the environment. Never logged.
    pub options: BTreeMap<String, String>,
    /// Deadline of every store call (default 30 s): an unreachable store is an error, not a
    /// hang.
    pub timeout_seconds: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            options: BTreeMap::new(),
            timeout_seconds: 30.0,
        }
    }
}

impl TrackerConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        mlops_core::store_url::deadline("TrackerConfig.timeout_seconds", self.timeout_seconds)?;
        Ok(())
    }
}

impl std::fmt::Debug for ObjectStoreTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreTracker")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRun {
    run_id: RunId,
    experiment: String,
    name: String,
    status: RunStatus,
    start_time_ms: i64,
    end_time_ms: Option<i64>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tracking {
        backend: "object_store".into(),
        message: format!("{what}: {e}"),
    }
}

impl ObjectStoreTracker {
    /// A tracker on `store`, under `prefix` (may be empty), with the default deadline.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectStoreTracker {
            store,
            prefix: Path::from(prefix),
            clock: Arc::new(mlops_core::clock::SystemClock),
            timeout: std::time::Duration::from_secs_f64(TrackerConfig::default().timeout_seconds),
        }
    }

    /// Uses `timeout` as the deadline of every store call (default 30 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses `clock` for run start and end times.
    pub fn with_clock(mut self, clock: Arc<dyn mlops_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A tracker at `location`: a folder path (relative or absolute), `file:///abs/dir`,
    /// `memory:///`, or a cloud URL the build supports (`s3://bucket/prefix`, ...), opened by
    /// the same opener as the registry (credentials from the environment, overridden by
    /// `config.options`; unknown options refused; nothing secret logged). Opening does no I/O,
    /// so it is not async; every later call runs on the library's I/O runtime with the
    /// config's deadline.
    pub fn open(location: &str, config: &TrackerConfig) -> Result<Self> {
        let timeout = mlops_core::store_url::deadline(
            "TrackerConfig.timeout_seconds",
            config.timeout_seconds,
        )?;
        // The one opener of every crate: credentials from the environment, unknown options
        // refused, no secret in what is shown.
        let opened = mlops_core::store_url::open_url("tracking URL", location, &config.options)?;
        tracing::debug!(store = %opened.name, "object-store tracker");
        Ok(ObjectStoreTracker {
            store: opened.store,
            prefix: opened.prefix,
            clock: Arc::new(mlops_core::clock::SystemClock),
            timeout,
        })
    }

    fn child(&self, parts: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in parts {
            for piece in part.split('/') {
                p = p.join(piece);
            }
        }
        p
    }

    fn run_dir(&self, experiment: &str, run: &RunId) -> Vec<String> {
        vec![experiment.to_string(), run.0.clone()]
    }

    // Every store call runs on the library's I/O runtime (`mlops_core::runtime`), so the
    // tracker works under any executor, with or without a tokio timer or reactor.

    /// Runs `fut` on the library's I/O runtime with the deadline.
    async fn timed<T: Send + 'static>(
        &self,
        what: String,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match mlops_core::runtime::with_timeout(self.timeout, fut).await? {
            Some(result) => result,
            None => Err(store_err(
                &what,
                format!(
                    "no answer within {:?} (TrackerConfig.timeout_seconds)",
                    self.timeout
                ),
            )),
        }
    }

    async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.clone(), path.clone());
        self.timed(format!("reading {path}"), async move {
            match store.get(&path).await {
                Ok(r) => Ok(Some(
                    r.bytes()
                        .await
                        .map_err(|e| store_err(&format!("reading {path}"), e))?
                        .to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(store_err(&format!("reading {path}"), e)),
            }
        })
        .await
    }

    async fn write(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        let (store, path) = (self.store.clone(), path.clone());
        self.timed(format!("writing {path}"), async move {
            store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| store_err(&format!("writing {path}"), e))
        })
        .await?;
        Ok(())
    }

    async fn experiment_of(&self, run: &RunId) -> Result<String> {
        check_name("run id", &run.0)?;
        let bytes = self
            .read(&self.child(&["_runs", &run.0]))
            .await?
            .ok_or_else(|| Error::invalid("run id", &run.0, "a run started in this store"))?;
        String::from_utf8(bytes).map_err(|e| store_err("run index", e))
    }

    async fn load(&self, run: &RunId) -> Result<StoredRun> {
        let experiment = self.experiment_of(run).await?;
        let mut parts = self.run_dir(&experiment, run);
        parts.push("run.json".into());
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let bytes = self
            .read(&self.child(&refs))
            .await?
            .ok_or_else(|| store_err("run.json", format!("missing for run {run}")))?;
        serde_json::from_slice(&bytes).map_err(|e| store_err("run.json", e))
    }

    async fn save(&self, run: &StoredRun) -> Result<()> {
        let path = self.child(&[&run.experiment, &run.run_id.0, "run.json"]);
        let bytes = serde_json::to_vec_pretty(run).map_err(|e| store_err("run.json", e))?;
        self.write(&path, bytes).await
    }

    async fn history(&self, experiment: &str, run: &RunId, key: &str) -> Result<Vec<MetricPoint>> {
        let path = self.child(&[experiment, &run.0, "metrics", &format!("{key}.json")]);
        match self.read(&path).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| store_err("metric history", e))
            }
            None => Ok(Vec::new()),
        }
    }

    async fn record(&self, stored: StoredRun) -> Result<RunRecord> {
        use futures::TryStreamExt;
        let dir = self.child(&[&stored.experiment, &stored.run_id.0, "metrics"]);
        let store = self.store.clone();
        let files: Vec<object_store::ObjectMeta> = self
            .timed("listing metrics".into(), async move {
                store
                    .list(Some(&dir))
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| store_err("listing metrics", e))
            })
            .await?;
        let mut metrics = BTreeMap::new();
        for f in files {
            let Some(key) = f.location.filename().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let key = key.to_string();
            let points = self
                .history(&stored.experiment, &stored.run_id, &key)
                .await?;
            if let Some(p) = latest(&points) {
                metrics.insert(key, p.value);
            }
        }
        Ok(RunRecord {
            run_id: stored.run_id,
            experiment: stored.experiment,
            name: stored.name,
            status: stored.status,
            start_time_ms: stored.start_time_ms,
            end_time_ms: stored.end_time_ms,
            params: stored.params,
            tags: stored.tags,
            metrics,
        })
    }
}

/// The point with the largest step (latest timestamp on a tie), as MLflow reports a run's
/// metric.
pub(crate) fn latest(points: &[MetricPoint]) -> Option<&MetricPoint> {
    points.iter().max_by(|a, b| {
        a.step
            .cmp(&b.step)
            .then(a.timestamp_ms.cmp(&b.timestamp_ms))
    })
}

#[async_trait]
impl ExperimentTracker for ObjectStoreTracker {
    async fn start_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunId> {
        check_start(experiment, name, tags)?;
        let run_id = RunId(format!("{:032x}", rand::random::<u128>()));
        self.write(
            &self.child(&["_runs", &run_id.0]),
            experiment.as_bytes().to_vec(),
        )
        .await?;
        self.save(&StoredRun {
            run_id: run_id.clone(),
            experiment: experiment.to_string(),
            name: name.to_string(),
            status: RunStatus::Running,
            start_time_ms: now_ms(self.clock.as_ref()),
            end_time_ms: None,
            params: BTreeMap::new(),
            tags: tags.clone(),
        })
        .await?;
        tracing::debug!(%run_id, experiment, "run started");
        Ok(run_id)
    }

    async fn log_params(&self, run: &RunId, params: &BTreeMap<String, String>) -> Result<()> {
        check_keys("params", params.keys())?;
        let mut stored = self.load(run).await?;
        for (k, v) in params {
            match stored.params.get(k) {
                Some(old) if old != v => {
                    return Err(Error::invalid(
                        format!("param `{k}` of run {run}"),
                        format!("{v:?}"),
                        format!("its logged value {old:?} (params never change)"),
                    ))
                }
                _ => {
                    stored.params.insert(k.clone(), v.clone());
                }
            }
        }
        self.save(&stored).await
    }

    async fn log_metrics(&self, run: &RunId, metrics: &[MetricPoint]) -> Result<()> {
        for m in metrics {
            check_name("metric key", &m.key)?;
            super::check_metric_value(m)?;
        }
        let experiment = self.experiment_of(run).await?;
        let mut by_key: BTreeMap<&str, Vec<&MetricPoint>> = BTreeMap::new();
        for m in metrics {
            by_key.entry(&m.key).or_default().push(m);
        }
        for (key, points) in by_key {
            let mut history = self.history(&experiment, run, key).await?;
            history.extend(points.into_iter().cloned());
            super::sort_points(&mut history);
            let path = self.child(&[&experiment, &run.0, "metrics", &format!("{key}.json")]);
            let bytes = serde_json::to_vec(&history).map_err(|e| store_err("metric history", e))?;
            self.write(&path, bytes).await?;
        }
        Ok(())
    }

    async fn set_tags(&self, run: &RunId, tags: &BTreeMap<String, String>) -> Result<()> {
        check_keys("tags", tags.keys())?;
        let mut stored = self.load(run).await?;
        stored
            .tags
            .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.save(&stored).await
    }

    async fn log_artifact(&self, run: &RunId, path: &str, bytes: Vec<u8>) -> Result<()> {
        check_name("artifact path", path)?;
        let experiment = self.experiment_of(run).await?;
        self.write(
            &self.child(&[&experiment, &run.0, "artifacts", path]),
            bytes,
        )
        .await
    }

    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        let mut stored = self.load(run).await?;
        stored.status = status;
        stored.end_time_ms = Some(now_ms(self.clock.as_ref()));
        self.save(&stored).await
    }

    async fn get_run(&self, run: &RunId) -> Result<RunRecord> {
        let stored = self.load(run).await?;
        self.record(stored).await
    }

    async fn list_runs(&self, experiment: &str) -> Result<Vec<RunRecord>> {
        check_name("experiment", experiment)?;
        let (store, dir) = (self.store.clone(), self.child(&[experiment]));
        let listing = self
            .timed("listing runs".into(), async move {
                store
                    .list_with_delimiter(Some(&dir))
                    .await
                    .map_err(|e| store_err("listing runs", e))
            })
            .await?;
        let mut runs = Vec::new();
        for dir in listing.common_prefixes {
            let Some(id) = dir.filename() else { continue };
            let path = dir.clone().join("run.json");
            let Some(bytes) = self.read(&path).await? else {
                continue;
            };
            let stored: StoredRun =
                serde_json::from_slice(&bytes).map_err(|e| store_err("run.json", e))?;
            if stored.run_id.0 == id {
                runs.push(self.record(stored).await?);
            }
        }
        super::sort_runs(&mut runs);
        Ok(runs)
    }

    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<MetricPoint>> {
        check_name("metric key", key)?;
        let experiment = self.experiment_of(run).await?;
        self.history(&experiment, run, key).await
    }

    async fn get_artifact(&self, run: &RunId, path: &str) -> Result<Vec<u8>> {
        check_name("artifact path", path)?;
        let experiment = self.experiment_of(run).await?;
        self.read(&self.child(&[&experiment, &run.0, "artifacts", path]))
            .await?
            .ok_or_else(|| {
                Error::invalid(format!("artifact of run {run}"), path, "a logged artifact")
            })
    }
}
