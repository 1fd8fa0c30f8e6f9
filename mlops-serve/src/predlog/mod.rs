//! The durable prediction log (feature `predlog`): every scored row and every label posted
//! back, as Parquet files on any store URL (a folder, `file://`, `s3://`, `gs://`, `az://`),
//! partitioned by model and hour the way Hive, pyarrow, pandas and DuckDB read them:
//!
//! ```text
//! predictions/model=fraud/hour=2026-12-05T08/part-….parquet   request_id, row, time, version, variant, <features…>, prediction
//! labels/model=fraud/hour=2026-12-05T08/part-….parquet        request_id, row, time, label
//! ```
//!
//! `time` is the UTC time the row was recorded (microseconds); `row` its index in its request;
//! features are one `float32` column each, named by the model's feature names (a name equal to
//! a fixed or partition column is written `feature.{name}`). Labels join predictions on
//! `(request_id, row)`.
//!
//! - **Off the request path.** [`PredictionLog::record_scored`] copies the rows into the
//!   calling thread's shard of a tap (no allocation, channel send or shared reference count
//!   per request) and [`PredictionLog::record_labels`] into a bounded queue with a
//!   non-blocking `try_send`; a background thread batches them (by
//!   [`PredictionLogConfig::batch_rows`] and [`PredictionLogConfig::batch_age_seconds`])
//!   into one file per kind, model and hour.
//! - **Never waiting for the writer.** Past [`PredictionLogConfig::buffer_rows`] rows not yet
//!   written, rows are dropped and counted
//!   (`mlops_serve_log_dropped_total{reason="buffer_full"}`); a shard's lock is held by the
//!   writer only to swap its batch out.
//! - **A failing store** is retried with doubling backoff
//!   ([`PredictionLogConfig::retries`]), then the file's rows are dropped and counted
//!   (`reason="store_failed"`); serving never waits for it.
//! - **Whole files only.** A store gets one `put` of a whole file; a local folder gets a
//!   hidden temporary file (`.part-….tmp`), synced and renamed into place — object_store's own
//!   local staging name (`part-….parquet#1`) would be read by pyarrow's dataset discovery.
//! - **Shutdown.** [`PredictionLog::close`] writes everything buffered and returns what was
//!   written and dropped ([`LogSummary`]).
//!
//! A [`Router`](crate::router::Router) logs every request it scores and every label post
//! when its [`RouterOptions::prediction_log`](crate::router::RouterOptions) is set, so the
//! HTTP server logs with no change.
//!
//! ```
//! use std::sync::Arc;
//! use mlops_serve::predlog::{LogParts, PredictionLog, ScoredBatch};
//! use ndarray::array;
//!
//! let dir = tempfile::tempdir()?;
//! let log = PredictionLog::open(dir.path().to_str().unwrap(), LogParts::default())?;
//! let (model, variant) = (Arc::<str>::from("fraud"), Arc::<str>::from("stable"));
//! let features: Arc<[String]> = vec!["amount".to_string(), "age".to_string()].into();
//! let x = array![[12.5_f32, 40.0], [80.0, 22.0]];
//! assert!(log.record_scored(&ScoredBatch {
//!     model: &model, features: &features, request_id: Some("r-1"),
//!     variant: &variant, version: Some(3), x: x.view(), predictions: &[0.1, 0.9],
//! })?);
//! assert!(log.record_labels(&model, "r-1", &[0.0, 1.0])?);
//! let summary = log.close()?;
//! assert_eq!((summary.predictions.rows_written, summary.labels.rows_written), (2, 2));
//! assert_eq!(summary.predictions.dropped(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod files;
mod reader;
mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use mlops_core::clock::{Clock, SystemClock};
use mlops_core::store_url::{open_url, OpenedStore};
use ndarray::ArrayView2;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use config::{CheckedPredictionLogConfig, PredictionLogConfig, MAX_BUFFER_ROWS, MAX_RETRIES};
pub use files::{hour_name, RowKind, LABEL_COLUMNS, PREDICTION, PREDICTION_COLUMNS};
pub use reader::{
    read_window, read_window_in, LoggedWindow, ReadOptions, SkippedFile, WindowCounts,
    DEFAULT_MAX_ROWS, LABEL_COLUMN, ORDER_COLUMN,
};

use crate::tap::{Head, Tap};
use files::{LabelRows, Rows};
use writer::{Message, Target, Writer};

use crate::{Error, Result};

/// Most label posts queued for the writer at once, whatever their rows: past it, their rows
/// are dropped as `buffer_full` too (scored rows are bounded by
/// [`PredictionLogConfig::buffer_rows`] alone).
pub const MAX_QUEUED: usize = 1 << 16;

/// The log's metric names, as registered (a counter is exposed with `_total` appended).
///
/// ```
/// assert_eq!(mlops_serve::predlog::names::LOG_DROPPED, "mlops_serve_log_dropped");
/// ```
pub mod names {
    /// Rows not written, by kind and reason: `buffer_full`, `store_failed`, `closed`
    /// (counter: kind, reason).
    pub const LOG_DROPPED: &str = "mlops_serve_log_dropped";
    /// Rows written (counter: kind).
    pub const LOG_ROWS: &str = "mlops_serve_log_rows";
    /// Files written (counter: kind).
    pub const LOG_FILES: &str = "mlops_serve_log_files";
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    kind: String,
    reason: String,
}

/// The log's Prometheus families: registered in the host's registry, or unregistered.
///
/// ```
/// use mlops_serve::predlog::LogMetrics;
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let _metrics = LogMetrics::register(&mut registry);
/// let text = mlops_core::exposition::classic_text(&registry)?;
/// assert!(text.contains(r#"mlops_serve_log_dropped_total{kind="labels",reason="buffer_full"} 0"#), "{text}");
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogMetrics {
    dropped: Family<DroppedLabels, Counter>,
    rows: Family<KindLabels, Counter>,
    files: Family<KindLabels, Counter>,
}

impl LogMetrics {
    /// Families registered in `registry`; every series of both kinds exists from the start
    /// (at 0), so a rate or an alert has a series before the first drop.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = LogMetrics::default();
        registry.register(
            names::LOG_DROPPED,
            "Prediction-log rows not written, by kind and reason",
            metrics.dropped.clone(),
        );
        registry.register(
            names::LOG_ROWS,
            "Prediction-log rows written, by kind",
            metrics.rows.clone(),
        );
        registry.register(
            names::LOG_FILES,
            "Prediction-log files written, by kind",
            metrics.files.clone(),
        );
        for kind in [RowKind::Predictions, RowKind::Labels] {
            let _ = metrics.counts(kind);
        }
        metrics
    }

    /// Families in no registry (counted, never exposed).
    pub fn unregistered() -> Self {
        LogMetrics::default()
    }

    fn counts(&self, kind: RowKind) -> KindCounters {
        let dropped = |reason: &str| Tally {
            local: AtomicU64::new(0),
            exported: self
                .dropped
                .get_or_create(&DroppedLabels {
                    kind: kind.as_str().into(),
                    reason: reason.into(),
                })
                .clone(),
        };
        let labels = KindLabels {
            kind: kind.as_str().into(),
        };
        KindCounters {
            rows: Tally {
                local: AtomicU64::new(0),
                exported: self.rows.get_or_create(&labels).clone(),
            },
            files: Tally {
                local: AtomicU64::new(0),
                exported: self.files.get_or_create(&labels).clone(),
            },
            buffer_full: dropped("buffer_full"),
            store_failed: dropped("store_failed"),
            closed: dropped("closed"),
        }
    }
}

/// A count of this log's, also added to its exported counter.
struct Tally {
    local: AtomicU64,
    exported: Counter,
}

impl Tally {
    fn add(&self, n: u64) {
        self.local.fetch_add(n, Ordering::Relaxed);
        self.exported.inc_by(n);
    }

    fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

struct KindCounters {
    rows: Tally,
    files: Tally,
    buffer_full: Tally,
    store_failed: Tally,
    closed: Tally,
}

impl KindCounters {
    fn summary(&self) -> KindCounts {
        KindCounts {
            rows_written: self.rows.get(),
            files_written: self.files.get(),
            dropped_buffer_full: self.buffer_full.get(),
            dropped_store_failed: self.store_failed.get(),
            dropped_closed: self.closed.get(),
        }
    }
}

/// What the recording side and the writer share: the rows not yet written, the counts.
pub(crate) struct Shared {
    buffered: AtomicUsize,
    predictions: KindCounters,
    labels: KindCounters,
}

impl Shared {
    fn counts(&self, kind: RowKind) -> &KindCounters {
        match kind {
            RowKind::Predictions => &self.predictions,
            RowKind::Labels => &self.labels,
        }
    }

    /// `n` rows left the buffer (written or dropped).
    fn release(&self, n: usize) {
        self.buffered.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One kind's counts since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Rows written in whole files.
    pub rows_written: u64,
    /// Files written.
    pub files_written: u64,
    /// Rows dropped because the buffer was full ([`PredictionLogConfig::buffer_rows`] rows, or
    /// [`MAX_QUEUED`] label posts, waiting to be written).
    pub dropped_buffer_full: u64,
    /// Rows dropped because their file could not be written after every retry.
    pub dropped_store_failed: u64,
    /// Rows recorded after [`PredictionLog::close`] began (or after the writer stopped).
    pub dropped_closed: u64,
}

impl KindCounts {
    /// Every row dropped, whatever the reason.
    ///
    /// ```
    /// let c = mlops_serve::predlog::KindCounts { dropped_buffer_full: 2, dropped_store_failed: 3, ..Default::default() };
    /// assert_eq!(c.dropped(), 5);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.dropped_buffer_full + self.dropped_store_failed + self.dropped_closed
    }
}

/// What a log wrote and dropped, per kind ([`PredictionLog::summary`], [`PredictionLog::close`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// Scored rows.
    pub predictions: KindCounts,
    /// Label rows.
    pub labels: KindCounts,
}

/// What a log is opened with besides its store.
#[derive(Clone)]
pub struct LogParts {
    /// Settings, checked ([`PredictionLogConfig::check`]).
    pub config: CheckedPredictionLogConfig,
    /// Metric families (registered in the host's registry, or unregistered).
    pub metrics: LogMetrics,
    /// The time a row is recorded at.
    pub clock: Arc<dyn Clock>,
}

impl Default for LogParts {
    fn default() -> Self {
        LogParts {
            config: CheckedPredictionLogConfig::default(),
            metrics: LogMetrics::unregistered(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// One scored request, as [`PredictionLog::record_scored`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct ScoredBatch<'a> {
    /// The model served.
    pub model: &'a Arc<str>,
    /// Its feature names, one per column of `x`.
    pub features: &'a Arc<[String]>,
    /// The request's id (labels are posted back under it), when it has one.
    pub request_id: Option<&'a str>,
    /// The variant that answered.
    pub variant: &'a Arc<str>,
    /// Its model version, when known.
    pub version: Option<u64>,
    /// The rows scored.
    pub x: ArrayView2<'a, f32>,
    /// One probability per row.
    pub predictions: &'a [f32],
}

/// Counts a recorder out when it is done (however it returns).
struct Recording<'a>(&'a AtomicUsize);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Inner {
    queue: SyncSender<Message>,
    capacity: usize,
    closed: AtomicBool,
    /// Label recorders between their check of `closed` and their `try_send`: `close` waits
    /// for them, so no label is queued after the writer's last drain (lost without being
    /// counted). Scored rows are ordered by the tap's shard locks instead.
    recording: AtomicUsize,
    /// Scored rows on their way to the writer (see [`crate::tap`]).
    tap: Arc<Tap>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    name: String,
}

impl Inner {
    /// Whether `n` more rows may be buffered: not once the log is closed, nor past its
    /// capacity (then counted in `counts`, and nothing is reserved).
    fn admit(&self, counts: &KindCounters, n: usize) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            counts.closed.add(n as u64);
            return false;
        }
        let before = self.shared.buffered.fetch_add(n, Ordering::AcqRel);
        if before + n > self.capacity {
            self.shared.release(n);
            counts.buffer_full.add(n as u64);
            return false;
        }
        true
    }
}

/// The prediction log's handle (see the module docs); clones share one log.
#[derive(Clone)]
pub struct PredictionLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog")
            .field("store", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl PredictionLog {
    /// Opens the log at `location` (a folder or a store URL; see
    /// `mlops_core::store_url::open_url`, credentials from the environment) and starts its
    /// writer thread. Nothing is written before the first batch.
    ///
    /// ```
    /// use mlops_serve::predlog::{LogParts, PredictionLog};
    ///
    /// let e = PredictionLog::open("nope://x", LogParts::default()).unwrap_err();
    /// assert!(e.to_string().contains("prediction log URL"), "{e}");
    /// ```
    pub fn open(location: &str, parts: LogParts) -> Result<Self> {
        let opened = open_url("prediction log URL", location, &BTreeMap::new())?;
        Self::with_store(opened, parts)
    }

    /// Opens the log on a store already opened (a host's own store, a test's in-memory one).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use mlops_serve::predlog::{LogParts, PredictionLog};
    ///
    /// let opened = mlops_core::store_url::open_url("log", "memory://", &BTreeMap::new())?;
    /// let log = PredictionLog::with_store(opened, LogParts::default())?;
    /// assert_eq!(log.close()?.predictions.files_written, 0);
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    pub fn with_store(opened: OpenedStore, parts: LogParts) -> Result<Self> {
        let config = parts.config.config().clone();
        let timing = config.timing()?;
        let target = match opened.local_dir {
            Some(dir) => Target::Local(dir),
            None => Target::Store {
                store: opened.store,
                prefix: opened.prefix,
            },
        };
        let shared = Arc::new(Shared {
            buffered: AtomicUsize::new(0),
            predictions: parts.metrics.counts(RowKind::Predictions),
            labels: parts.metrics.counts(RowKind::Labels),
        });
        // The queue carries label posts (each at least one row, so the row bound bounds them)
        // and at most a wake or two; its slots are allocated up front, so at most MAX_QUEUED.
        let (queue, received) = sync_channel(config.buffer_rows.min(MAX_QUEUED));
        let tap = Arc::new(Tap::default());
        let writer = Writer::new(
            target,
            timing,
            config.retries,
            config.batch_rows,
            shared.clone(),
            tap.clone(),
            rand::random(),
        );
        let thread = std::thread::Builder::new()
            .name("mlops-predlog".into())
            .spawn(move || writer.run(received))
            .map_err(|cause| {
                Error::Core(mlops_core::Error::Io {
                    action: "starting thread",
                    path: "mlops-predlog".into(),
                    cause,
                })
            })?;
        tracing::info!(store = %opened.name, buffer_rows = config.buffer_rows, "prediction log open");
        Ok(PredictionLog {
            inner: Arc::new(Inner {
                queue,
                capacity: config.buffer_rows,
                closed: AtomicBool::new(false),
                recording: AtomicUsize::new(0),
                tap,
                shared,
                clock: parts.clock,
                writer: Mutex::new(Some(thread)),
                name: opened.name,
            }),
        })
    }

    /// The time a row recorded now is stamped with (the log's clock): a host that also
    /// hands the row to another consumer (the live monitor) passes it on, so both place the
    /// row at the same instant (see [`PredictionLog::record_scored_at`]).
    ///
    /// ```
    /// use mlops_serve::predlog::{LogParts, PredictionLog};
    ///
    /// let log = PredictionLog::open("memory://", LogParts::default())?;
    /// assert!(log.now() > std::time::UNIX_EPOCH);
    /// # log.close()?;
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    pub fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// Queues a label post of `n` rows without blocking: `false` (counted) when dropped.
    fn offer_labels(&self, model: &Arc<str>, n: usize, at: SystemTime, labels: LabelRows) -> bool {
        let inner = &*self.inner;
        let counts = &inner.shared.labels;
        // Counted in before `closed` is read (both SeqCst, as `close` writes and reads them in
        // the other order): either `close` sees this recorder and waits for its send, or this
        // recorder sees the log closed.
        inner.recording.fetch_add(1, Ordering::SeqCst);
        let _recorded = Recording(&inner.recording);
        if !inner.admit(counts, n) {
            return false;
        }
        let rows = Rows {
            model: model.clone(),
            time_us: mlops_core::clock::unix_micros(at),
            labels,
        };
        match inner.queue.try_send(Message::Rows(Box::new(rows))) {
            Ok(()) => true,
            Err(e) => {
                inner.shared.release(n);
                match e {
                    TrySendError::Full(_) => counts.buffer_full.add(n as u64),
                    TrySendError::Disconnected(_) => counts.closed.add(n as u64),
                }
                false
            }
        }
    }

    /// Records one scored request's rows (copied: the only work on the request path). `Ok(true)`
    /// when they were queued (or there were none), `Ok(false)` when they were dropped and
    /// counted (a full buffer, a closed log). A batch whose shape does not match its feature
    /// names and predictions is an error, and nothing is recorded.
    pub fn record_scored(&self, batch: &ScoredBatch<'_>) -> Result<bool> {
        self.record_scored_at(batch, self.now())
    }

    /// [`PredictionLog::record_scored`] with the rows stamped `at` (from
    /// [`PredictionLog::now`]) rather than at the log's clock when queued.
    pub fn record_scored_at(&self, batch: &ScoredBatch<'_>, at: SystemTime) -> Result<bool> {
        let (rows, width) = batch.x.dim();
        if width != batch.features.len() {
            return Err(Error::invalid(
                "ScoredBatch.x columns",
                width,
                format!("{} (one per feature name)", batch.features.len()),
            ));
        }
        if rows != batch.predictions.len() {
            return Err(Error::invalid(
                "ScoredBatch.predictions length",
                batch.predictions.len(),
                format!("{rows} (one per row of x)"),
            ));
        }
        if rows == 0 {
            return Ok(true);
        }
        let inner = &*self.inner;
        let head = Head {
            model: batch.model,
            features: batch.features,
            variant: Some(batch.variant),
            version: batch.version,
            request_id: batch.request_id,
            time_us: mlops_core::clock::unix_micros(at),
        };
        // Read and counted under the shard's lock: `close` sets `closed`, then takes every
        // shard's lock before the writer's last drain, so a row is either drained or counted
        // closed, and counted before `close` returns.
        let counts = &inner.shared.predictions;
        let recorded = inner.tap.record(&head, batch.x, batch.predictions, || {
            inner.admit(counts, rows)
        });
        if recorded.wake {
            // A full queue has the writer awake already.
            let _ = inner.queue.try_send(Message::Wake);
        }
        Ok(recorded.taken)
    }

    /// Records the labels (0 or 1, one per row) posted for request `request_id`. `Ok(true)`
    /// when queued (or there were none), `Ok(false)` when dropped and counted; a label that is
    /// not 0 or 1 is an error, and nothing is recorded.
    pub fn record_labels(
        &self,
        model: &Arc<str>,
        request_id: &str,
        labels: &[f64],
    ) -> Result<bool> {
        let parsed = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| match l {
                0.0 => Ok(0_u8),
                1.0 => Ok(1_u8),
                other => Err(Error::invalid(
                    format!("labels[{i}] of request {request_id:?}"),
                    other,
                    "0 or 1",
                )),
            })
            .collect::<Result<Vec<u8>>>()?;
        if parsed.is_empty() {
            return Ok(true);
        }
        Ok(self.offer_labels(
            model,
            parsed.len(),
            self.now(),
            LabelRows {
                request_id: request_id.into(),
                labels: parsed,
            },
        ))
    }

    /// Writes everything buffered now and waits for it (a test's or a host's checkpoint; the
    /// writer also writes by batch size and age by itself).
    pub fn flush(&self) -> Result<LogSummary> {
        let (done, wait) = sync_channel(1);
        if self.inner.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
        Ok(self.summary())
    }

    /// What was written and dropped so far.
    pub fn summary(&self) -> LogSummary {
        LogSummary {
            predictions: self.inner.shared.predictions.summary(),
            labels: self.inner.shared.labels.summary(),
        }
    }

    /// Graceful shutdown: rows recorded from now on are dropped (`reason="closed"`); what is
    /// buffered is written (with its retries); the writer thread stops. Returns the final
    /// counts. A second call returns them again.
    pub fn close(&self) -> Result<LogSummary> {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Recorders inside a shard's lock finish their append; later ones see `closed`.
        self.inner.tap.barrier();
        // Label recorders past their check of `closed` are one non-blocking `try_send` from
        // done.
        while self.inner.recording.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        let (done, wait) = sync_channel(1);
        if self.inner.queue.send(Message::Close(done)).is_ok() {
            let _ = wait.recv();
        }
        let thread = self
            .inner
            .writer
            .lock()
            .map_err(|_| {
                Error::with_kind(
                    crate::ErrorKind::Internal,
                    "prediction log: writer handle poisoned",
                )
            })?
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                return Err(Error::with_kind(
                    crate::ErrorKind::Internal,
                    "prediction log: the writer thread panicked",
                ));
            }
        }
        let summary = self.summary();
        tracing::info!(?summary, "prediction log closed");
        Ok(summary)
    }
}
