//! Live monitoring in a serving replica (feature `monitor`): the features each version is
//! asked to score are kept in a bounded window and compared, every window (at most once per
//! [`LiveMonitorConfig::min_check_seconds`]), with that version's reference profile; labels posted back make live metrics; a drift alarm becomes
//! one retrain request across every replica, delivered through a hook.
//!
//! - **Per version.** Each version a model serves has its own window of its last
//!   [`LiveMonitorConfig::window_rows`] rows (features, score, time: memory set by the
//!   window, not by the traffic), compared every [`LiveMonitorConfig::step_rows`] rows (and
//!   [`LiveMonitorConfig::min_check_seconds`] apart at least: a window that fills sooner
//!   waits, and its check, when due, reads the latest rows, even if none come after) with
//!   the version's [`Profiles`] from a [`ProfileSource`] (the registry's
//!   `reference_profile.json` and `prediction_profile.json`): per-feature drift, the dataset
//!   verdict and its `incomplete` rule ([`mlops_drift::DriftReport`]), prediction drift, and
//!   the decision of a [`mlops_drift::DriftPolicy`]. A promoted version starts its own window
//!   against its own reference: the rebase on promotion.
//! - **Unknown is not fine.** A version without a profile, or whose profile cannot be
//!   loaded, is `unknown` (`mlops_monitor_verdict{verdict="unknown"} 1`), its scores NaN.
//! - **One request per alarm.** A `retrain` decision is claimed in a shared
//!   [`RetrainLedger`] by a conditional write ([`claim_retrain`]): of N replicas raising the
//!   same alarm exactly one claims it, and none claims again within the policy's
//!   `cooldown_seconds` of the last request. While another version of the model serves too
//!   (a rollout runs) the alarm is deferred.
//! - **Delivery** through the [`HookConfig`]'s webhook and/or command, retried with backoff
//!   on the monitor's own thread.
//! - **Off the request path.** [`LiveMonitor::record_scored`] copies the rows into the
//!   calling thread's shard of a tap (no allocation or channel send per request) and
//!   [`LiveMonitor::record_labels`] into a bounded queue with a non-blocking `try_send`; past
//!   [`LiveMonitorConfig::queue_rows`] rows are dropped and counted
//!   (`mlops_monitor_dropped_total{reason="queue_full"}`), never waited for.
//!
//! A [`Router`](crate::router::Router) feeds its monitor every request it scores and every
//! label post it joins when [`RouterOptions::monitor`](crate::router::RouterOptions) is set.
//!
//! ```
//! use std::sync::Arc;
//! use mlops_core::Dataset;
//! use mlops_drift::{ProfileConfig, ReferenceProfile};
//! use mlops_serve::monitor::*;
//! use ndarray::Array2;
//!
//! let names: Arc<[String]> = vec!["amount".to_string()].into();
//! let rows = |shift: f32| Array2::from_shape_fn((1000, 1), |(i, _)| (i % 100) as f32 + shift);
//! let reference = Dataset::new(rows(0.0), names.to_vec())?;
//! let profiles = MemoryProfiles::new();
//! profiles.insert("fraud", 1, Profiles { features: Some(ReferenceProfile::fit(&reference, &ProfileConfig::default())?), prediction: None, performance: None });
//! // Every window compared as it fills (by default, at most once a second).
//! let config = LiveMonitorConfig { window_rows: 1000, min_check_seconds: 0.0, ..LiveMonitorConfig::default() }.check()?;
//! let monitor = LiveMonitor::start(config, MonitorParts::new(Arc::new(profiles), Arc::new(MemoryRetrainLedger::new())))?;
//! let model: Arc<str> = "fraud".into();
//! for shift in [0.0, 500.0] {
//!     let x = rows(shift);
//!     monitor.record_scored(&Observed { model: &model, features: &names, version: Some(1), x: x.view(), predictions: &[0.5; 1000] });
//! }
//! monitor.sync(std::time::Duration::from_secs(60))?;
//! let status = &monitor.status("fraud")[0];
//! assert_eq!((status.checks, status.verdict.as_str(), status.requests), (2, "drift", 1));
//! monitor.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod hook;
mod ledger;
mod metrics;
mod profiles;
mod window;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mlops_core::clock::{Clock, SystemClock};
use mlops_drift::DriftAction;
use ndarray::ArrayView2;
use serde::Serialize;

pub use config::{
    CheckedLiveMonitorConfig, HookConfig, LiveMonitorConfig, MAX_HOOK_ATTEMPTS, MAX_QUEUE_ROWS,
    MAX_VERSIONS, MAX_WINDOW_ROWS,
};
pub use hook::{MAX_REQUEST_ENV_BYTES, REQUEST_ENV};
pub use ledger::{
    claim_retrain, rfc3339, Claimed, LogWindow, MemoryRetrainLedger, PredictionDrift,
    RequestSummary, RetrainLedger, RetrainRequest, RETRAIN_DOCUMENT,
};
pub use metrics::{names, MonitorMetrics};
pub use profiles::{
    MemoryProfiles, ProfileSource, Profiles, PREDICTION_COLUMN, PREDICTION_PROFILE_FILE,
};

use crate::step_stats::lock;
use crate::tap::{Head, Tap};
use crate::{Error, Result};

/// Every watched version's status, by model and version, shared with the monitor's thread.
pub(crate) type Statuses = Arc<Mutex<BTreeMap<(String, Option<u64>), VersionStatus>>>;

/// Most messages queued for the monitor's thread at once, whatever their rows.
const MAX_QUEUED: usize = 1 << 16;

/// What a monitor works with besides its config.
#[derive(Clone)]
pub struct MonitorParts {
    /// Where a version's reference profiles come from (the registry in a replica).
    pub profiles: Arc<dyn ProfileSource>,
    /// Where retrain requests are claimed (the registry: shared by every replica).
    pub ledger: Arc<dyn RetrainLedger>,
    /// Wall time: rows' times, requests' times and the cooldown.
    pub clock: Arc<dyn Clock>,
    /// Metric families (registered in the host's registry, or unregistered).
    pub metrics: MonitorMetrics,
    /// This replica's name in the requests it claims (default: host name and process id).
    pub replica: String,
}

impl MonitorParts {
    /// `profiles` and `ledger` on the system clock, unregistered metrics, this process's name.
    pub fn new(profiles: Arc<dyn ProfileSource>, ledger: Arc<dyn RetrainLedger>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
        MonitorParts {
            profiles,
            ledger,
            clock: Arc::new(SystemClock),
            metrics: MonitorMetrics::unregistered(),
            replica: format!("{host}-{}", std::process::id()),
        }
    }
}

/// Rows one request scored, as the monitor takes them.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The model.
    pub model: &'a Arc<str>,
    /// Its feature names, one per column of `x`.
    pub features: &'a Arc<[String]>,
    /// The version that scored them (`None`: a variant without one: its drift is unknown).
    pub version: Option<u64>,
    /// The rows.
    pub x: ArrayView2<'a, f32>,
    /// One score per row.
    pub predictions: &'a [f32],
}

/// A version's monitoring now, as [`LiveMonitor::status`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionStatus {
    /// The model.
    pub model: String,
    /// The version.
    pub version: Option<u64>,
    /// Rows in its drift window.
    pub window_rows: usize,
    /// Checks made.
    pub checks: u64,
    /// The last check's verdict: `no_drift`, `drift`, `incomplete`, or `unknown`.
    pub verdict: String,
    /// Features that drifted at the last check.
    pub drifted_columns: Vec<String>,
    /// Prediction drift at the last check, when the version has a prediction profile.
    pub prediction_drift: Option<PredictionDrift>,
    /// The last check's action.
    pub action: DriftAction,
    /// Why (the policy's reason, and what became of a retrain alarm).
    pub reason: String,
    /// Retrain requests this replica claimed for the version.
    pub requests: u64,
    /// Live metrics at the last computation (defined ones only).
    pub live: BTreeMap<String, f64>,
    /// Labeled rows behind them.
    pub labeled_rows: usize,
    /// The window's performance estimated before labels (CBPE) at the last check, when the
    /// version has an estimator.
    pub estimated: Option<mlops_core::cbpe::PerformanceEstimate>,
}

impl Default for VersionStatus {
    fn default() -> Self {
        VersionStatus {
            model: String::new(),
            version: None,
            window_rows: 0,
            checks: 0,
            verdict: "unknown".into(),
            drifted_columns: Vec::new(),
            prediction_drift: None,
            action: DriftAction::None,
            reason: String::new(),
            requests: 0,
            live: BTreeMap::new(),
            labeled_rows: 0,
            estimated: None,
        }
    }
}

pub(crate) struct Labeled {
    model: Arc<str>,
    version: Option<u64>,
    threshold: f32,
    labels: Vec<bool>,
    scores: Vec<f32>,
    groups: Option<Vec<Option<Arc<str>>>>,
}

pub(crate) enum Message {
    /// A recorder appended to the tap while the worker was blocked.
    Wake,
    Labeled(Labeled),
    Sync(SyncSender<()>),
    Close,
}

struct Inner {
    sender: SyncSender<Message>,
    /// Scored rows on their way to the worker (see [`crate::tap`]).
    tap: Arc<Tap>,
    queued: Arc<AtomicUsize>,
    queue_rows: usize,
    metrics: MonitorMetrics,
    clock: Arc<dyn Clock>,
    status: Statuses,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
}

/// The live monitor (see the module docs). Cloning shares it.
#[derive(Clone)]
pub struct LiveMonitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LiveMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMonitor")
            .field("queued_rows", &self.inner.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveMonitor {
    /// Starts the monitor's thread (and its hook's).
    pub fn start(config: CheckedLiveMonitorConfig, parts: MonitorParts) -> Result<Self> {
        let (sender, messages) = sync_channel(MAX_QUEUED);
        let queued = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let hook = hook::Hook::start(&config.hook, parts.metrics.clone())?;
        let metrics = parts.metrics.clone();
        let clock = parts.clock.clone();
        let queue_rows = config.queue_rows;
        let tap = Arc::new(Tap::default());
        let worker = worker::Worker::new(
            config,
            parts,
            hook,
            status.clone(),
            queued.clone(),
            tap.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name("mlops-monitor".into())
            .spawn(move || worker.run(messages))
            .map_err(|e| {
                Error::with_kind(
                    crate::ErrorKind::Internal,
                    format!("cannot start the monitor thread: {e}"),
                )
            })?;
        Ok(LiveMonitor {
            inner: Arc::new(Inner {
                sender,
                tap,
                queued,
                queue_rows,
                metrics,
                clock,
                status,
                thread: Mutex::new(Some(thread)),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Reserves `rows` of the queue, or counts them dropped (`closed` read as `close` writes
    /// it, SeqCst: see [`LiveMonitor::record_scored_at`]).
    fn reserve(&self, model: &str, rows: usize) -> bool {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            inner.metrics.dropped(model, "closed", rows as u64);
            return false;
        }
        let before = inner.queued.fetch_add(rows, Ordering::AcqRel);
        if before + rows > inner.queue_rows {
            inner.queued.fetch_sub(rows, Ordering::AcqRel);
            inner.metrics.dropped(model, "queue_full", rows as u64);
            return false;
        }
        true
    }

    fn send(&self, model: &str, rows: usize, message: Message) -> bool {
        match self.inner.sender.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.queued.fetch_sub(rows, Ordering::AcqRel);
                self.inner.metrics.dropped(model, "queue_full", rows as u64);
                false
            }
        }
    }

    /// Queues the rows of one scored request; `false` when they were dropped (queue full or
    /// closed: counted). Never blocks. Rows whose width is not the feature names' count
    /// are not taken (`false`, logged).
    pub fn record_scored(&self, batch: &Observed<'_>) -> bool {
        self.record_scored_at(batch, None)
    }

    /// [`LiveMonitor::record_scored`] with the rows placed `at` (the prediction log's stamp
    /// of the same rows, [`crate::predlog::PredictionLog::now`]) rather than at the monitor's
    /// clock, so the log window of a retrain request holds every row of the drift window
    /// (and, as rows reach the window shard by shard, the other rows logged between its
    /// bounds: a few milliseconds' worth at each end); `None` reads the monitor's clock.
    pub fn record_scored_at(&self, batch: &Observed<'_>, at: Option<SystemTime>) -> bool {
        let rows = batch.x.nrows();
        if rows == 0 {
            return true;
        }
        if batch.x.ncols() != batch.features.len() || batch.predictions.len() != rows {
            tracing::warn!(model = %batch.model, columns = batch.x.ncols(), features = batch.features.len(), "monitor: rows do not match their feature names; not monitored");
            return false;
        }
        let inner = &*self.inner;
        let head = Head {
            model: batch.model,
            features: batch.features,
            variant: None,
            version: batch.version,
            request_id: None,
            time_us: mlops_core::clock::unix_micros(at.unwrap_or_else(|| inner.clock.now())),
        };
        // Read and counted under the shard's lock: `close` sets `closed`, then takes every
        // shard's lock before the worker's last drain, so a row is either monitored or
        // counted closed.
        let recorded = inner.tap.record(&head, batch.x, batch.predictions, || {
            self.reserve(batch.model, rows)
        });
        if recorded.wake {
            // A full queue has the worker awake already.
            let _ = inner.sender.try_send(Message::Wake);
        }
        recorded.taken
    }

    /// Queues labels joined to their scores (one per row) for `version`'s live metrics at
    /// `threshold`, with each row's sensitive group when known (for the per-group gauges);
    /// `false` when dropped (counted). Never blocks.
    pub fn record_labels(
        &self,
        model: &Arc<str>,
        version: Option<u64>,
        threshold: f32,
        labels: &[bool],
        scores: &[f32],
        groups: Option<&[Option<Arc<str>>]>,
    ) -> bool {
        let rows = labels.len().min(scores.len());
        if rows == 0 || !self.reserve(model, rows) {
            return rows == 0;
        }
        self.send(
            model,
            rows,
            Message::Labeled(Labeled {
                model: model.clone(),
                version,
                threshold,
                labels: labels[..rows].to_vec(),
                scores: scores[..rows].to_vec(),
                // A name a label value cannot hold is no group (the gauges' labels stay valid).
                groups: groups.map(|g| {
                    g.iter()
                        .take(rows)
                        .map(|n| {
                            n.clone()
                                .filter(|n| crate::step_stats::group_name_problem(n).is_none())
                        })
                        .collect()
                }),
            }),
        )
    }

    /// Waits until everything queued before this call has been monitored (the checks then
    /// due run, their requests claimed; a check waiting for
    /// [`LiveMonitorConfig::min_check_seconds`] runs when due), at most `timeout`.
    pub fn sync(&self, timeout: Duration) -> Result<()> {
        let (ack, done) = sync_channel(1);
        self.inner
            .sender
            .send(Message::Sync(ack))
            .map_err(|_| Error::unavailable("the monitor is closed"))?;
        done.recv_timeout(timeout).map_err(|_| {
            Error::unavailable(format!(
                "the monitor did not catch up within {}s",
                timeout.as_secs_f64()
            ))
        })
    }

    /// Every watched version of `model`, by version.
    pub fn status(&self, model: &str) -> Vec<VersionStatus> {
        lock(&self.inner.status)
            .iter()
            .filter(|((m, _), _)| m == model)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Stops taking rows, monitors what is queued (a check still waiting for
    /// [`LiveMonitorConfig::min_check_seconds`] does not run), and stops the threads (a webhook
    /// attempt in progress finishes; a hook command in progress is killed with its process
    /// group; queued deliveries are counted as dropped: they stay in the ledger). Idempotent.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Recorders inside a shard's lock finish their append; later ones see `closed`.
        self.inner.tap.barrier();
        let _ = self.inner.sender.send(Message::Close);
        if let Some(t) = lock(&self.inner.thread).take() {
            let _ = t.join();
        }
    }
}
