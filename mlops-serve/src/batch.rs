//! Adaptive batching in front of the engine (feature `batch`, on with `http`): concurrent small
//! requests routed to the same variant are scored by one model call, and each is then
//! accounted alone (its metrics, the prediction log, the live monitor, the label join, the
//! shadow) as [`Router::route`] accounts a request scored alone. Its latency
//! (`mlops_serve_latency_seconds`, the canary's latency check) is the time of the model call
//! that scored it, as for a request scored alone: with batching on, that is its batch's call
//! (a variant's batches grow with its share of the traffic; the wait for a batch is not in it).
//! Its probabilities equal a request scored alone up to float rounding: the engine's kernels
//! sum in another order for more than 8 rows.
//!
//! - **Adaptive**: a batch waits only for requests the host has announced
//!   ([`Batcher::expect`]: the V2 server announces each inference once its body is read) and at
//!   most [`BatchConfig::max_delay_micros`] after its oldest request was queued; it leaves as
//!   soon as it holds [`BatchConfig::max_batch_rows`] rows or nothing announced is still on its
//!   way. A lone request (one client, one call at a time) is therefore not held back, and
//!   under load the requests that queue while a worker scores form the next batch. A batch
//!   that is ready goes before an older one still waiting.
//! - **Bounded**: at most [`BatchConfig::max_queue_rows`] rows wait; past it a request is
//!   refused at once with an [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error
//!   (the server's 503). A waiting request keeps what its caller handed in
//!   ([`Batcher::submit_announced`]: the server's in-flight and body-byte permits) until it is
//!   answered, and a request whose caller is gone (its [`Ticket`] dropped) is taken off the
//!   queue unscored. A request of more than `max_batch_rows` rows (or none) is a batch
//!   already: it is scored alone on the caller's thread, never queued.
//! - **One request's fault stays its own**: when the model refuses a batch (a row it does not
//!   take) or panics, every request of the batch is scored again alone, so each gets its own
//!   answer or its own error; `mlops_serve_batch_fallbacks_total` counts these. Any other
//!   failure of the model (a backend down) is every request's error, not retried.
//! - **Consistent**: a request is routed (its variant picked, sticky keys included) when it is
//!   queued, against the route table of that moment, and scored with that table; requests of
//!   different variants or tables are never mixed in one call.
//!
//! Batching needs a model whose rows are scored independently (every model this crate
//! compiles or loads: MLPs, tree ensembles, ONNX graphs with a batch dimension).
//!
//! ```
//! use std::sync::Arc;
//! use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
//! use mlops_serve::batch::{BatchConfig, Batcher};
//! use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
//! use mlops_serve::{CompiledModel, NonFinitePolicy};
//! use ndarray::array;
//!
//! let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//! let artifact = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])])?;
//! let model = Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Reject)?);
//! let router = Arc::new(Router::new("fraud", Routes::single(Variant::new("stable", Some(1), model)), RouterOptions::default())?);
//! let batcher = Batcher::start(router, BatchConfig::default().check()?)?;
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! let scored = runtime.block_on(batcher.route(&Request::default(), array![[0.0_f32], [2.0]]))?;
//! assert_eq!(&*scored.routed.variant, "stable");
//! assert!((scored.probabilities[0] - 0.5).abs() < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::router::{OwnedRequest, Request, Routed, Router, Table};
use crate::{Error, ErrorKind, Result};

/// Batching as written (TOML or JSON, or in code); [`BatchConfig::check`] turns it into the
/// [`CheckedBatchConfig`] a [`Batcher`] starts with.
///
/// ```
/// use mlops_serve::batch::BatchConfig;
///
/// let config: BatchConfig = serde_json::from_str(r#"{"max_batch_rows": 16, "max_delay_micros": 500}"#)?;
/// assert_eq!((config.max_batch_rows, config.workers), (16, 1));
/// assert!(serde_json::from_str::<BatchConfig>(r#"{"delay": 5}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Rows of one model call at most (1 to 65,536; default 64). A request of more rows is
    /// scored alone.
    pub max_batch_rows: usize,
    /// How long a batch may wait for announced requests after its first request was queued,
    /// in microseconds (0 to 1,000,000; default 1,000). 0: never wait, batch what is queued.
    pub max_delay_micros: u64,
    /// Rows waiting at most (`max_batch_rows` to 16,777,216; default 4,096); past it requests
    /// are refused as unavailable.
    pub max_queue_rows: usize,
    /// Threads scoring batches (1 to 64; default 1), each taking the next batch while the
    /// others score.
    pub workers: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 64,
            max_delay_micros: 1_000,
            max_queue_rows: 4_096,
            workers: 1,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`BatchConfig`] (see [`BatchConfig::check`]): what a [`Batcher`] starts
    /// with. Read its fields through `Deref`.
    ///
    /// ```
    /// use mlops_serve::batch::{BatchConfig, CheckedBatchConfig};
    ///
    /// let config = BatchConfig { workers: 2, ..BatchConfig::default() }.check()?;
    /// assert_eq!(config.workers, 2);
    /// assert_eq!(CheckedBatchConfig::default().config(), &BatchConfig::default());
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct CheckedBatchConfig(BatchConfig);
}

impl Default for CheckedBatchConfig {
    /// [`BatchConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedBatchConfig {
            config: BatchConfig::default(),
        }
    }
}

/// The largest [`BatchConfig::max_batch_rows`].
pub const MAX_BATCH_ROWS: usize = 65_536;
/// The largest [`BatchConfig::max_delay_micros`] (one second).
pub const MAX_DELAY_MICROS: u64 = 1_000_000;
/// The largest [`BatchConfig::max_queue_rows`].
pub const MAX_QUEUE_ROWS: usize = 1 << 24;
/// The largest [`BatchConfig::workers`].
pub const MAX_WORKERS: usize = 64;

impl BatchConfig {
    /// Checks every field against its range; an error names the field, its value and what
    /// was expected.
    ///
    /// ```
    /// use mlops_serve::batch::BatchConfig;
    ///
    /// let e = BatchConfig { max_queue_rows: 8, ..BatchConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().contains("BatchConfig.max_queue_rows = 8"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedBatchConfig> {
        if !(1..=MAX_BATCH_ROWS).contains(&self.max_batch_rows) {
            return Err(Error::invalid(
                "BatchConfig.max_batch_rows",
                self.max_batch_rows,
                format!("1 to {MAX_BATCH_ROWS}"),
            ));
        }
        if self.max_delay_micros > MAX_DELAY_MICROS {
            return Err(Error::invalid(
                "BatchConfig.max_delay_micros",
                self.max_delay_micros,
                format!("0 to {MAX_DELAY_MICROS} (one second)"),
            ));
        }
        if !(self.max_batch_rows..=MAX_QUEUE_ROWS).contains(&self.max_queue_rows) {
            return Err(Error::invalid(
                "BatchConfig.max_queue_rows",
                self.max_queue_rows,
                format!(
                    "max_batch_rows ({}) to {MAX_QUEUE_ROWS}",
                    self.max_batch_rows
                ),
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(Error::invalid(
                "BatchConfig.workers",
                self.workers,
                format!("1 to {MAX_WORKERS}"),
            ));
        }
        Ok(CheckedBatchConfig { config: self })
    }
}

/// A request's answer: where it went and one probability per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The variant that answered (as [`Router::route`] returns it).
    pub routed: Routed,
    /// One probability per row, in the request's order.
    pub probabilities: Vec<f32>,
}

/// What a batcher has done so far (also exported: `mlops_serve_batch_rows`,
/// `mlops_serve_batch_fallbacks_total`, and the queue's depth, `mlops_serve_batch_queued_rows`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests queued.
    pub requests: u64,
    /// Model calls made for queued requests (one per batch).
    pub batches: u64,
    /// Rows scored in those calls.
    pub rows: u64,
    /// Batches whose call the model refused (a row it does not take) or panicked in, and
    /// whose requests were scored again alone.
    pub fallbacks: u64,
    /// Requests refused because the queue was full.
    pub refused: u64,
    /// Requests of no rows or of more than `max_batch_rows` rows, scored alone without
    /// queueing.
    pub alone: u64,
    /// Queued requests (counted in `requests`) whose caller was gone (its [`Ticket`]
    /// dropped: a timeout, a client that went away) before their batch: taken off the queue
    /// unscored, and not in the router's metrics.
    pub cancelled: u64,
}

/// One queued request.
struct Job {
    table: Arc<Table>,
    index: usize,
    x: Array2<f32>,
    request: OwnedRequest,
    reply: tokio::sync::oneshot::Sender<Result<Scored>>,
    /// When it was queued, for the batch's deadline.
    queued_at: Instant,
    /// What the caller holds while the request is worked on (the server's in-flight and
    /// body-byte permits), given back once it is answered.
    _hold: Box<dyn Send>,
}

impl Job {
    fn group(&self) -> (*const Table, usize) {
        (Arc::as_ptr(&self.table), self.index)
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    rows: usize,
    /// Requests announced ([`Batcher::expect`]) and not yet queued or given up.
    expected: usize,
    closed: bool,
}

struct Counters {
    requests: AtomicU64,
    batches: AtomicU64,
    rows: AtomicU64,
    fallbacks: AtomicU64,
    refused: AtomicU64,
    alone: AtomicU64,
    cancelled: AtomicU64,
    batch_rows: Histogram,
    fallback_metric: Counter,
    queued_metric: Gauge,
}

struct Inner {
    router: Arc<Router>,
    config: CheckedBatchConfig,
    queue: Mutex<Queue>,
    changed: Condvar,
    counters: Counters,
}

impl Inner {
    /// The queue, whatever a panicking thread left (its rows are changed with its jobs, and
    /// nothing that runs foreign code is dropped under the lock, so a poisoned lock still
    /// guards a consistent queue).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The batcher (see the module docs): a bounded queue and its worker threads in front of a
/// [`Router`]. Dropping it lets the workers score what is queued and stop; it does not wait
/// for them (it may be dropped on an async runtime's thread).
pub struct Batcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("model", &self.inner.router.model())
            .field("config", &*self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts `config.workers` threads batching for `router`.
    pub fn start(router: Arc<Router>, config: CheckedBatchConfig) -> Result<Self> {
        let metrics = router.metrics();
        let model = router.model().to_string();
        let inner = Arc::new(Inner {
            counters: Counters {
                requests: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                rows: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                alone: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                batch_rows: metrics.batch_rows(&model),
                fallback_metric: metrics.batch_fallbacks(&model),
                queued_metric: metrics.batch_queued(&model),
            },
            router,
            config,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        // Built first: an error starting a later thread drops it, which stops the earlier ones.
        let batcher = Batcher { inner };
        for i in 0..batcher.inner.config.workers {
            let inner = batcher.inner.clone();
            std::thread::Builder::new()
                .name(format!("mlops-batch-{i}"))
                .spawn(move || work(&inner))
                .map_err(|cause| {
                    Error::Core(mlops_core::Error::Io {
                        action: "starting thread",
                        path: "mlops-batch".into(),
                        cause,
                    })
                })?;
        }
        Ok(batcher)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &CheckedBatchConfig {
        &self.inner.config
    }

    /// Announces a request on its way (its body read, not yet decoded): while any announced
    /// request is neither queued nor given up, a forming batch may wait for it (at most
    /// [`BatchConfig::max_delay_micros`]). Hand the guard to [`Batcher::submit_announced`], or
    /// drop it if the request is refused.
    pub fn expect(&self) -> Expected {
        self.inner.lock().expected += 1;
        Expected {
            inner: Some(self.inner.clone()),
        }
    }

    /// Routes `request` now and queues its rows `x` for the batch of its variant; the returned
    /// [`Ticket`] resolves to its answer. Errors at once: a matrix of the wrong width, an
    /// unknown forced variant, a full queue. A request of no rows, or of more than
    /// `max_batch_rows`, is scored alone at once on this thread (its ticket is ready).
    pub fn submit(&self, request: &Request<'_>, x: Array2<f32>) -> Result<Ticket> {
        self.enqueue(None, request, x, Box::new(()))
    }

    /// [`Batcher::submit`] for an announced request: its announcement is withdrawn as it is
    /// queued (under the same lock, so a forming batch never misses it), and `hold` (a
    /// server's permits) is kept until the request is answered or given up, so what a waiting
    /// request holds stays counted.
    pub fn submit_announced<H: Send + 'static>(
        &self,
        announced: Expected,
        request: &Request<'_>,
        x: Array2<f32>,
        hold: H,
    ) -> Result<Ticket> {
        self.enqueue(Some(announced), request, x, Box::new(hold))
    }

    fn enqueue(
        &self,
        mut announced: Option<Expected>,
        request: &Request<'_>,
        x: Array2<f32>,
        hold: Box<dyn Send>,
    ) -> Result<Ticket> {
        let router = &self.inner.router;
        let table = router.current();
        let mut out = vec![0.0_f32; x.nrows()];
        mlops_core::model::check_batch(table.n_features, x.view(), &out)?;
        if x.nrows() == 0 || x.nrows() > self.inner.config.max_batch_rows {
            // Nothing to wait for: the announcement goes before the model call.
            drop(announced);
            self.inner.counters.alone.fetch_add(1, Ordering::Relaxed);
            let index = router.pick(&table, request)?;
            let ticker = router.ticker();
            let start = ticker.now_ns();
            let result = call(&*table.slots[index].predictor, x.view(), &mut out);
            let elapsed = ticker.now_ns().saturating_sub(start);
            let answer = router
                .finish(&table, index, request, x.view(), &out, elapsed, result)
                .map(|routed| Scored {
                    routed,
                    probabilities: out,
                });
            return Ok(Ticket(TicketState::Ready(Some(answer))));
        }
        let index = router.pick(&table, request)?;
        let x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = (|| {
            let mut queue = self.inner.lock();
            // Withdrawn under the lock that queues it: a worker sees the request either
            // announced or queued, never neither.
            if let Some(inner) = announced.as_mut().and_then(|a| a.inner.take()) {
                if Arc::ptr_eq(&inner, &self.inner) {
                    queue.expected = queue.expected.saturating_sub(1);
                } else {
                    // Another batcher's announcement: withdrawn there.
                    announced = Some(Expected { inner: Some(inner) });
                }
            }
            let limit = self.inner.config.max_queue_rows;
            if queue.closed {
                return Err(Error::with_kind(
                    ErrorKind::Unavailable,
                    "the batcher is stopping; retry on another replica",
                ));
            }
            if queue.rows + x.nrows() > limit {
                self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::with_kind(
                    ErrorKind::Unavailable,
                    format!(
                        "server busy: {} rows wait to be scored and {} more do not fit in BatchConfig.max_queue_rows = {limit}; retry later",
                        queue.rows,
                        x.nrows()
                    ),
                ));
            }
            queue.rows += x.nrows();
            self.inner.counters.queued_metric.inc_by(gauge(x.nrows()));
            queue.jobs.push_back(Job {
                table,
                index,
                x,
                request: OwnedRequest::of(request),
                reply,
                queued_at: Instant::now(),
                _hold: hold,
            });
            Ok(())
        })();
        // A worker may go now: a request queued, or an announcement withdrawn.
        self.inner.changed.notify_one();
        queued?;
        drop(announced);
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket(TicketState::Queued(answer)))
    }

    /// [`Batcher::submit`], then its answer.
    pub async fn route(&self, request: &Request<'_>, x: Array2<f32>) -> Result<Scored> {
        self.submit(request, x)?.await
    }

    /// What it has done so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.inner.counters;
        BatchStats {
            requests: c.requests.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            alone: c.alone.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.changed.notify_all();
    }
}

/// A request announced to a [`Batcher`] ([`Batcher::expect`]); dropping it withdraws the
/// announcement, and [`Batcher::submit_announced`] withdraws it as the request is queued.
pub struct Expected {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expected")
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            {
                let mut queue = inner.lock();
                queue.expected = queue.expected.saturating_sub(1);
            }
            inner.changed.notify_one();
        }
    }
}

/// A queued request's answer, to await ([`Batcher::submit`]). Dropping it before its batch
/// takes the request back: it is not scored (nor counted).
#[derive(Debug)]
pub struct Ticket(TicketState);

#[derive(Debug)]
enum TicketState {
    Ready(Option<Result<Scored>>),
    Queued(tokio::sync::oneshot::Receiver<Result<Scored>>),
}

impl Future for Ticket {
    type Output = Result<Scored>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            TicketState::Ready(answer) => Poll::Ready(answer.take().unwrap_or_else(|| {
                Err(Error::with_kind(
                    ErrorKind::Internal,
                    "a batch ticket was polled after its answer",
                ))
            })),
            TicketState::Queued(receiver) => Pin::new(receiver).poll(cx).map(|answer| {
                answer.unwrap_or_else(|_| {
                    Err(Error::with_kind(
                        ErrorKind::Internal,
                        "the request's batch failed before it was answered (see the server log)",
                    ))
                })
            }),
        }
    }
}

/// A worker: takes the next batch, scores it, answers its requests; until the batcher is
/// dropped and the queue is empty. A panic outside the model call (which [`call`] catches)
/// fails the requests of its batch not yet answered, and the worker goes on.
fn work(inner: &Inner) {
    while let Some(batch) = next_batch(inner) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| score(inner, batch))).is_err() {
            tracing::error!(model = %inner.router.model(), "a batch panicked after its model call; its unanswered requests failed");
        }
    }
}

/// A batch ready to go, or when the next one will be.
enum Ready {
    /// The group (route table, variant) to take now.
    Now((*const Table, usize)),
    /// The earliest moment a waiting group is due.
    At(Instant),
}

/// The first group of the queue (in order of their oldest request) that is ready: full, past
/// its delay, or with nothing announced still on its way (or the batcher closing).
fn ready(queue: &Queue, max_rows: usize, max_delay: Duration, now: Instant) -> Option<Ready> {
    // (group, rows, oldest queued) in order of first appearance; few groups: a variant per
    // arm, and a new table only while requests of the old one drain.
    let mut groups: Vec<((*const Table, usize), usize, Instant)> = Vec::new();
    for job in &queue.jobs {
        match groups.iter_mut().find(|g| g.0 == job.group()) {
            Some(g) => g.1 = g.1.saturating_add(job.x.nrows()),
            None => groups.push((job.group(), job.x.nrows(), job.queued_at)),
        }
    }
    let no_wait = queue.expected == 0 || queue.closed;
    let mut earliest: Option<Instant> = None;
    for (group, rows, oldest) in groups {
        let due = oldest + max_delay;
        if no_wait || rows >= max_rows || now >= due {
            return Some(Ready::Now(group));
        }
        earliest = Some(earliest.map_or(due, |e| e.min(due)));
    }
    earliest.map(Ready::At)
}

/// Waits for a batch to be ready (see the module docs) and takes it off the queue, with the
/// requests whose caller is gone dropped unscored; `None` once the batcher is dropped and
/// nothing is queued.
fn next_batch(inner: &Inner) -> Option<Vec<Job>> {
    let max_rows = inner.config.max_batch_rows;
    let max_delay = Duration::from_micros(inner.config.max_delay_micros);
    let mut queue = inner.lock();
    loop {
        let now = Instant::now();
        let group = match ready(&queue, max_rows, max_delay, now) {
            None if queue.closed => return None,
            None => {
                queue = inner
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            Some(Ready::At(due)) => {
                queue = inner
                    .changed
                    .wait_timeout(queue, due.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            Some(Ready::Now(group)) => group,
        };
        // The group's requests in order, up to max_rows (the first always: a request is at
        // most max_rows rows); the rest stay queued in their order.
        let (mut taken, mut rows, mut freed) = (Vec::new(), 0, 0);
        let mut kept = VecDeque::with_capacity(queue.jobs.len());
        // Dropped once the lock is released (what they hold runs its own code when dropped).
        let mut cancelled = Vec::new();
        while let Some(job) = queue.jobs.pop_front() {
            let joins =
                job.group() == group && (taken.is_empty() || rows + job.x.nrows() <= max_rows);
            if !joins {
                kept.push_back(job);
            } else if job.reply.is_closed() {
                // Its caller is gone (a timeout, a client that left): not scored.
                freed += job.x.nrows();
                cancelled.push(job);
            } else {
                rows += job.x.nrows();
                freed += job.x.nrows();
                taken.push(job);
            }
        }
        queue.jobs = kept;
        queue.rows -= freed;
        drop(queue);
        inner.counters.queued_metric.dec_by(gauge(freed));
        inner
            .counters
            .cancelled
            .fetch_add(cancelled.len() as u64, Ordering::Relaxed);
        drop(cancelled);
        // Another worker may start on what is left.
        inner.changed.notify_one();
        if taken.is_empty() {
            queue = inner.lock();
            continue;
        }
        return Some(taken);
    }
}

/// Scores one batch with one model call and answers its requests. A call the model refuses
/// (a row it does not take) or panics in is made again request by request, so each gets its
/// own answer; any other failure of the model is every request's error.
fn score(inner: &Inner, jobs: Vec<Job>) {
    let router = &inner.router;
    let ticker = router.ticker();
    let rows = jobs.iter().map(|j| j.x.nrows()).sum::<usize>();
    let Some(first) = jobs.first() else {
        return;
    };
    let (table, index) = (first.table.clone(), first.index);
    let predictor = table.slots[index].predictor.clone();
    let n = table.n_features;
    let c = &inner.counters;
    c.batches.fetch_add(1, Ordering::Relaxed);
    c.rows.fetch_add(rows as u64, Ordering::Relaxed);
    c.batch_rows.observe(rows as f64);
    let mut out = vec![0.0_f32; rows];
    let start = ticker.now_ns();
    let scored = if let [job] = jobs.as_slice() {
        call_batch(&*predictor, job.x.view(), &mut out)
    } else {
        let mut x = Vec::with_capacity(rows * n);
        for job in &jobs {
            x.extend(job.x.iter().copied());
        }
        match ArrayView2::from_shape((rows, n), &x) {
            Ok(view) => call_batch(&*predictor, view, &mut out),
            Err(e) => Err((
                mlops_core::Error::Predictor {
                    message: format!("a batch of {rows} × {n} from {} values: {e}", x.len()),
                },
                false,
            )),
        }
    };
    // Each request's latency: its batch's model call (as a request scored alone: the time in
    // the model).
    let elapsed = ticker.now_ns().saturating_sub(start);
    let alone = jobs.len() == 1;
    // A request's accounting (as if scored alone) and answer.
    let settle = |job: Job, probabilities: Vec<f32>, elapsed: u64, result| {
        let routed = router.finish(
            &table,
            index,
            &job.request.request(),
            job.x.view(),
            &probabilities,
            elapsed,
            result,
        );
        reply(job, routed, probabilities);
    };
    match scored {
        Ok(()) => {
            let mut at = 0;
            for job in jobs {
                let probabilities = out[at..at + job.x.nrows()].to_vec();
                at += job.x.nrows();
                settle(job, probabilities, elapsed, Ok(()));
            }
        }
        Err((e, retry_alone)) if alone || !retry_alone => {
            // The request's own answer (alone), or a failure of the model that scoring the
            // requests one by one would only repeat: each request gets it.
            let message = e.to_string();
            let mut first = Some(e);
            for job in jobs {
                let e = first
                    .take()
                    .unwrap_or_else(|| mlops_core::Error::Predictor {
                        message: message.clone(),
                    });
                settle(job, Vec::new(), elapsed, Err(e));
            }
        }
        Err((e, _)) => {
            tracing::debug!(model = %router.model(), rows, error = %e, "a batch failed; its requests are scored alone");
            c.fallbacks.fetch_add(1, Ordering::Relaxed);
            c.fallback_metric.inc();
            for job in jobs {
                let mut probabilities = vec![0.0_f32; job.x.nrows()];
                let start = ticker.now_ns();
                let result = call(&*predictor, job.x.view(), &mut probabilities);
                settle(
                    job,
                    probabilities,
                    ticker.now_ns().saturating_sub(start),
                    result,
                );
            }
        }
    }
}

/// One model call, a panic turned into an error (the worker lives on).
fn call(
    predictor: &dyn mlops_core::model::Predictor,
    x: ArrayView2<'_, f32>,
    out: &mut [f32],
) -> mlops_core::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        predictor.predict_proba_into(x, out)
    }))
    .unwrap_or_else(|_| {
        tracing::error!("the model panicked scoring a batch");
        Err(mlops_core::Error::Predictor {
            message: "the model panicked (see the server log)".into(),
        })
    })
}

/// [`call`] for a batch: its error, and whether scoring its requests one by one can answer
/// some of them (the model refused a row, or panicked) rather than repeat the failure.
fn call_batch(
    predictor: &dyn mlops_core::model::Predictor,
    x: ArrayView2<'_, f32>,
    out: &mut [f32],
) -> std::result::Result<(), (mlops_core::Error, bool)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        predictor.predict_proba_into(x, out)
    })) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let refused = matches!(
                e,
                mlops_core::Error::InvalidValue(_) | mlops_core::Error::LengthMismatch { .. }
            );
            Err((e, refused))
        }
        Err(_) => {
            tracing::error!("the model panicked scoring a batch");
            Err((
                mlops_core::Error::Predictor {
                    message: "the model panicked (see the server log)".into(),
                },
                true,
            ))
        }
    }
}

/// A row count as a gauge's step (at most `MAX_QUEUE_ROWS`).
fn gauge(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

/// Sends a request its answer (a caller that went away drops it), once what it held is given
/// back: a caller that has its answer finds its permits free.
fn reply(job: Job, routed: Result<Routed>, probabilities: Vec<f32>) {
    let Job {
        reply: sender,
        _hold: hold,
        ..
    } = job;
    drop(hold);
    let _ = sender.send(routed.map(|routed| Scored {
        routed,
        probabilities,
    }));
}
