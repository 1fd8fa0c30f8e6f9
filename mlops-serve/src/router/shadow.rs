//! The shadow worker: mirrored requests wait in a bounded queue and are scored on one
//! background thread. A full queue, an error or a panic of the shadow model is counted and
//! never reaches the primary response (fail-open). A shadow that stalls holds only its own
//! thread: the queue fills and further mirrors are dropped and counted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ndarray::ArrayView2;
use prometheus_client::metrics::counter::Counter;

use super::Table;
use crate::step_stats::Answer;
use crate::ticker::Ticker;

/// A mirrored request.
pub(crate) struct Job {
    pub(crate) table: Arc<Table>,
    pub(crate) rows: usize,
    pub(crate) x: Vec<f32>,
    /// The primary's labels, to measure agreement.
    pub(crate) primary: Vec<bool>,
}

pub(crate) struct Shadow {
    tx: SyncSender<Job>,
    queue_full: Counter,
    /// Jobs queued or being scored, and the signal the worker gives a waiter.
    backlog: Arc<Backlog>,
}

/// Jobs queued or being scored, with a signal for each one done while someone waits.
#[derive(Default)]
struct Backlog {
    count: AtomicU64,
    /// Threads in [`Shadow::wait_below`]: the worker signals only when there is one, so the
    /// scoring loop makes no wake-up call otherwise.
    waiters: AtomicU64,
    lock: Mutex<()>,
    done: Condvar,
}

impl Backlog {
    /// One job finished: the count goes down, and a waiter (if any) is woken.
    fn finished(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // Under the lock: a waiter is either waiting (and woken) or has not read the
            // count yet (and reads the new one).
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.done.notify_all();
        }
    }
}

/// Where the shadow's scored rows go besides its metrics: the prediction log (without a
/// request id: its label is the primary's, and a reader joining labels by id must not count a
/// row twice) and the live monitor (under the shadow's version: its drift, and a rollout seen).
#[derive(Clone, Default)]
pub(crate) struct Observers {
    #[cfg(any(feature = "predlog", feature = "monitor"))]
    pub(crate) model: Arc<str>,
    #[cfg(feature = "predlog")]
    pub(crate) log: Option<crate::predlog::PredictionLog>,
    #[cfg(feature = "monitor")]
    pub(crate) monitor: Option<crate::monitor::LiveMonitor>,
}

impl Observers {
    /// Feeds one scored request's rows (`request_id`: `None` for the shadow's, see above;
    /// `origin`, `request` or `shadow`, names them in a warning) to
    /// the log and the monitor at one time, so a retrain request's log window (the monitor's
    /// times) holds exactly the rows of its drift window. A full buffer or queue is counted
    /// by each; rows whose width does not match their feature names are logged and skipped.
    #[cfg_attr(not(feature = "predlog"), allow(unused_variables))]
    pub(crate) fn observe(
        &self,
        slot: &super::Slot,
        request_id: Option<&str>,
        x: ArrayView2<'_, f32>,
        out: &[f32],
        origin: &'static str,
    ) {
        #[cfg(feature = "predlog")]
        let logged_at = self.log.as_ref().map(|log| log.now());
        #[cfg(all(feature = "monitor", not(feature = "predlog")))]
        let logged_at: Option<std::time::SystemTime> = None;
        #[cfg(feature = "predlog")]
        if let (Some(log), Some(at)) = (&self.log, logged_at) {
            let batch = crate::predlog::ScoredBatch {
                model: &self.model,
                features: &slot.feature_names,
                request_id,
                variant: &slot.name,
                version: slot.version,
                x,
                predictions: out,
            };
            if let Err(e) = log.record_scored_at(&batch, at) {
                tracing::warn!(model = %self.model, origin, error = %e, "prediction log: rows not recorded");
            }
        }
        #[cfg(feature = "monitor")]
        if let Some(monitor) = &self.monitor {
            monitor.record_scored_at(
                &crate::monitor::Observed {
                    model: &self.model,
                    features: &slot.feature_names,
                    version: slot.version,
                    x,
                    predictions: out,
                },
                logged_at,
            );
        }
    }
}

pub(crate) struct Drops {
    pub(crate) queue_full: Counter,
    pub(crate) error: Counter,
    pub(crate) panic: Counter,
}

impl Shadow {
    /// Starts the worker thread; it ends when the router (the sender) is dropped.
    pub(crate) fn start(
        capacity: usize,
        ticker: Arc<dyn Ticker>,
        drops: Drops,
        observers: Observers,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let Drops {
            queue_full,
            error,
            panic,
        } = drops;
        let backlog = Arc::new(Backlog::default());
        let left = backlog.clone();
        std::thread::Builder::new()
            .name("mlops-shadow".into())
            .spawn(move || work(rx, ticker, error, panic, left, observers))?;
        Ok(Shadow {
            tx,
            queue_full,
            backlog,
        })
    }

    /// Queues `job`, or counts it dropped when the queue is full (or the worker is gone).
    pub(crate) fn offer(&self, job: Job) {
        self.backlog.count.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.backlog.count.fetch_sub(1, Ordering::SeqCst);
                self.queue_full.inc();
            }
        }
    }

    /// Mirrored requests queued or being scored.
    pub(crate) fn backlog(&self) -> u64 {
        self.backlog.count.load(Ordering::SeqCst)
    }

    /// Blocks this thread until the backlog is below `seen` or `timeout` passes, woken by the
    /// worker (its own thread, so this waits on no executor); returns the backlog then.
    pub(crate) fn wait_below(&self, seen: u64, timeout: Duration) -> u64 {
        let b = &*self.backlog;
        // No deadline past what `Instant` holds: then `timeout` itself, each wait.
        let deadline = Instant::now().checked_add(timeout);
        b.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = b.lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = loop {
            let now = b.count.load(Ordering::SeqCst);
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            if now < seen || left.is_zero() {
                break now;
            }
            guard = b
                .done
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        drop(guard);
        b.waiters.fetch_sub(1, Ordering::SeqCst);
        now
    }
}

fn work(
    rx: Receiver<Job>,
    ticker: Arc<dyn Ticker>,
    error: Counter,
    panic: Counter,
    backlog: Arc<Backlog>,
    observers: Observers,
) {
    let mut out: Vec<f32> = Vec::new();
    // Drain what is queued, then sleep a millisecond: the request path's `try_send` never has
    // to wake a blocked receiver (a futex call and a context switch per mirrored request),
    // and a shadow answers at most a millisecond later, off the request path anyway. After
    // [`IDLE_POLLS`] empty polls the worker blocks until the next job (the one send that
    // wakes it): a router without a shadow, or one not mirroring, costs no wake-ups.
    let mut empty = 0u32;
    loop {
        let next = if empty < IDLE_POLLS {
            rx.try_recv()
        } else {
            rx.recv().map_err(|_| TryRecvError::Disconnected)
        };
        match next {
            Ok(job) => {
                empty = 0;
                score(&job, &mut out, &*ticker, &error, &panic, &observers);
                backlog.finished();
            }
            Err(TryRecvError::Empty) => {
                empty += 1;
                std::thread::sleep(IDLE);
            }
            Err(TryRecvError::Disconnected) => return,
        }
    }
}

/// How long the worker sleeps when the queue is empty.
const IDLE: std::time::Duration = std::time::Duration::from_millis(1);

/// Empty polls (about 100 ms of no mirrored request) before the worker blocks.
const IDLE_POLLS: u32 = 100;

fn score(
    job: &Job,
    out: &mut Vec<f32>,
    ticker: &dyn Ticker,
    error: &Counter,
    panic: &Counter,
    observers: &Observers,
) {
    let Some((index, _)) = job.table.shadow else {
        return;
    };
    let slot = &job.table.slots[index];
    let cols = job.table.n_features;
    let Ok(x) = ArrayView2::from_shape((job.rows, cols), &job.x[..]) else {
        return;
    };
    out.clear();
    out.resize(job.rows, 0.0);
    let start = ticker.now_ns();
    let result = catch_unwind(AssertUnwindSafe(|| {
        slot.predictor.predict_proba_into(x, out)
    }));
    let elapsed = ticker.now_ns().saturating_sub(start);
    match result {
        Ok(Ok(())) => {
            slot.record(elapsed, Answer::Scored(out));
            observers.observe(slot, None, x, out, "shadow");
            let agreed = out
                .iter()
                .zip(&job.primary)
                .filter(|(&p, &primary)| (p >= slot.threshold) == primary)
                .count();
            slot.stats.record_agreement(job.rows as u64, agreed as u64);
            slot.handles.shadow_compared.inc_by(job.rows as u64);
            slot.handles.shadow_agreed.inc_by(agreed as u64);
        }
        Ok(Err(e)) => {
            slot.record(elapsed, Answer::Failed);
            error.inc();
            tracing::debug!(variant = %slot.name, error = %e, "shadow request failed");
        }
        Err(_) => {
            slot.record(elapsed, Answer::Failed);
            panic.inc();
            tracing::warn!(variant = %slot.name, "shadow model panicked; the primary was unaffected");
        }
    }
}
