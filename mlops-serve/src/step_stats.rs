//! Per-variant statistics over the current rollout step — counts, errors, latency (an HDR
//! histogram), the prediction distribution (a bounded reservoir) and labeled outcomes joined
//! from delayed feedback — and the label join itself (bounded by capacity and time-to-live,
//! every drop counted).
//!
//! A step's statistics live in the route table of that step: a weight change installs a new
//! table with empty statistics, so every number a check reads was measured at the step's own
//! weights.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use mlops_core::clock::Clock;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bounds of the statistics' memory: the router's [`RouterConfig::stats`](crate::router::RouterConfig::stats),
/// checked by [`RouterConfig::check`](crate::router::RouterConfig::check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Predictions kept per variant and step for the prediction-distribution check (a uniform
    /// reservoir sample of the step's predictions).
    pub score_reservoir: usize,
    /// Labeled outcomes kept per variant and step; later ones are dropped and counted.
    pub labeled_capacity: usize,
    /// Requests awaiting their labels; the oldest is dropped (and counted) past this.
    pub label_join_capacity: usize,
    /// Bytes the requests awaiting their labels may hold (their ids, kept twice, their
    /// scores and a fixed overhead per entry); the oldest are dropped (and counted as
    /// `evicted`) past this, so long request ids cannot grow the join past a memory bound.
    pub label_join_bytes: usize,
    /// Seconds a request waits for its labels before it is dropped (and counted), from a
    /// millisecond to [`MAX_LABEL_TTL_SECONDS`].
    pub label_ttl_seconds: f64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            score_reservoir: 10_000,
            labeled_capacity: 100_000,
            label_join_capacity: 100_000,
            label_join_bytes: 64 << 20,
            label_ttl_seconds: 3600.0,
        }
    }
}

/// The longest a request may wait for its labels: about 31.7 years (labels that come back
/// months later, chargebacks, are served; a duration no clock arithmetic overflows).
pub const MAX_LABEL_TTL_SECONDS: f64 = 1e9;

fn label_ttl(seconds: f64) -> Result<Duration> {
    mlops_core::duration::seconds(
        "StatsConfig.label_ttl_seconds",
        seconds,
        mlops_core::duration::SecondsRange::new(1e-3, MAX_LABEL_TTL_SECONDS),
    )
    .map_err(Error::from)
}

impl StatsConfig {
    /// Checks every field (part of [`RouterConfig::check`](crate::router::RouterConfig::check)).
    pub(crate) fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("StatsConfig.score_reservoir", self.score_reservoir),
            ("StatsConfig.labeled_capacity", self.labeled_capacity),
            ("StatsConfig.label_join_capacity", self.label_join_capacity),
            ("StatsConfig.label_join_bytes", self.label_join_bytes),
        ] {
            if v == 0 {
                return Err(Error::invalid(field, v, "at least 1"));
            }
        }
        label_ttl(self.label_ttl_seconds)?;
        Ok(())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A uniform sample of at most `capacity` values (Algorithm R), with a deterministic index
/// stream so a replay gives the same sample.
#[derive(Debug)]
struct Reservoir {
    capacity: usize,
    seen: u64,
    values: Vec<f32>,
}

impl Reservoir {
    fn push(&mut self, v: f32) {
        self.seen += 1;
        if self.values.len() < self.capacity {
            self.values.push(v);
        } else {
            let j = xxhash_rust::xxh3::xxh3_64(&self.seen.to_le_bytes()) % self.seen;
            if let Some(slot) = self.values.get_mut(j as usize) {
                *slot = v;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Labeled {
    labels: Vec<bool>,
    scores: Vec<f64>,
}

/// How a request ended, for the statistics.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer<'a> {
    /// Scored: the probabilities (NaN for rows the model could not score).
    Scored(&'a [f32]),
    /// The model refused the input (invalid values): the caller's problem, not an error of
    /// the model.
    Rejected,
    /// The model failed.
    Failed,
}

/// One variant's statistics over one step.
#[derive(Debug)]
pub(crate) struct VariantStats {
    requests: AtomicU64,
    rows: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    unscored: AtomicU64,
    /// Nanoseconds, 1 ns to 1 hour, 3 significant digits.
    latency: Mutex<Histogram<u64>>,
    scores: Mutex<Reservoir>,
    labeled: Mutex<Labeled>,
    labeled_capacity: usize,
    labeled_dropped: AtomicU64,
    shadow_compared: AtomicU64,
    shadow_agreed: AtomicU64,
}

const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// A step's latency histogram: nanoseconds from 1 to an hour, three significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records one latency, clamped into the histogram's range.
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, latency_ns: u64) {
    let _ = histogram.record(latency_ns.clamp(1, MAX_LATENCY_NS));
}

/// The latency at quantile `q` in milliseconds (`None` before the first request).
pub(crate) fn latency_ms(histogram: &Histogram<u64>, q: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q) as f64 / 1e6)
}

impl VariantStats {
    pub(crate) fn new(config: &StatsConfig) -> Self {
        VariantStats {
            requests: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unscored: AtomicU64::new(0),
            latency: Mutex::new(latency_histogram()),
            scores: Mutex::new(Reservoir {
                capacity: config.score_reservoir,
                seen: 0,
                values: Vec::new(),
            }),
            labeled: Mutex::new(Labeled::default()),
            labeled_capacity: config.labeled_capacity,
            labeled_dropped: AtomicU64::new(0),
            shadow_compared: AtomicU64::new(0),
            shadow_agreed: AtomicU64::new(0),
        }
    }

    /// A request answered: its latency and how it ended. Rows the model answered NaN (its
    /// non-finite-input policy) are counted as unscored and kept out of the prediction sample.
    pub(crate) fn record(&self, latency_ns: u64, answer: Answer<'_>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        record_latency(&mut lock(&self.latency), latency_ns);
        match answer {
            Answer::Failed => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Answer::Rejected => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Answer::Scored(scores) => {
                self.rows.fetch_add(scores.len() as u64, Ordering::Relaxed);
                let mut r = lock(&self.scores);
                let mut unscored = 0;
                for &s in scores {
                    if s.is_finite() {
                        r.push(s);
                    } else {
                        unscored += 1;
                    }
                }
                if unscored > 0 {
                    self.unscored.fetch_add(unscored, Ordering::Relaxed);
                }
            }
        }
    }

    /// Labels joined to a request's predictions: how many rows were kept, and how many were
    /// dropped because their prediction was NaN (no score to judge). When the step's buffer
    /// is full, every row is dropped and counted (`None`).
    pub(crate) fn record_labels(&self, labels: &[bool], scores: &[f32]) -> Option<(u64, u64)> {
        let mut l = lock(&self.labeled);
        if l.labels.len() + labels.len() > self.labeled_capacity {
            self.labeled_dropped
                .fetch_add(labels.len() as u64, Ordering::Relaxed);
            return None;
        }
        let (mut kept, mut unscored) = (0, 0);
        for (&label, &score) in labels.iter().zip(scores) {
            if score.is_finite() {
                l.labels.push(label);
                l.scores.push(f64::from(score));
                kept += 1;
            } else {
                unscored += 1;
            }
        }
        Some((kept, unscored))
    }

    /// A shadowed request compared: whether the shadow's labels agreed with the primary's.
    pub(crate) fn record_agreement(&self, compared: u64, agreed: u64) {
        self.shadow_compared.fetch_add(compared, Ordering::Relaxed);
        self.shadow_agreed.fetch_add(agreed, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        variant: &str,
        version: Option<u64>,
        threshold: f32,
    ) -> VariantSnapshot {
        let latency = lock(&self.latency);
        let (p50, p99) = (latency_ms(&latency, 0.5), latency_ms(&latency, 0.99));
        drop(latency);
        let scores = lock(&self.scores)
            .values
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let labeled = lock(&self.labeled);
        VariantSnapshot {
            variant: variant.to_string(),
            version,
            requests: self.requests.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unscored_rows: self.unscored.load(Ordering::Relaxed),
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            threshold,
            scores,
            labels: labeled.labels.clone(),
            label_scores: labeled.scores.clone(),
            labeled_dropped: self.labeled_dropped.load(Ordering::Relaxed),
            shadow_compared: self.shadow_compared.load(Ordering::Relaxed),
            shadow_agreed: self.shadow_agreed.load(Ordering::Relaxed),
        }
    }
}

/// What one variant did during the current step (a copy; the router goes on counting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSnapshot {
    /// The variant's name (`stable`, `canary`, an A/B arm, `shadow`).
    pub variant: String,
    /// The model version it serves, when known.
    pub version: Option<u64>,
    /// Requests answered or failed.
    pub requests: u64,
    /// Rows scored.
    pub rows: u64,
    /// Requests the model failed on (what the error-rate check counts).
    pub errors: u64,
    /// Requests the model refused as invalid input (its non-finite policy `reject`, a wrong
    /// value): the caller's, not counted as errors.
    pub rejected: u64,
    /// Rows the model answered NaN (non-finite input under the `nan` policy): out of the
    /// prediction sample and the labeled rows.
    pub unscored_rows: u64,
    /// Median latency in milliseconds (`None` before the first request).
    pub latency_p50_ms: Option<f64>,
    /// 99th-percentile latency in milliseconds (`None` before the first request).
    pub latency_p99_ms: Option<f64>,
    /// The model's decision threshold.
    pub threshold: f32,
    /// A uniform sample of the step's predicted probabilities.
    #[serde(skip)]
    pub scores: Vec<f64>,
    /// Labels joined from feedback, one per labeled row.
    #[serde(skip)]
    pub labels: Vec<bool>,
    /// The probabilities those rows were given.
    #[serde(skip)]
    pub label_scores: Vec<f64>,
    /// Labeled rows dropped because the step's buffer was full.
    pub labeled_dropped: u64,
    /// Rows a shadow scored beside the primary (shadow variants only).
    pub shadow_compared: u64,
    /// Of those, rows where the shadow's label equalled the primary's.
    pub shadow_agreed: u64,
}

impl VariantSnapshot {
    /// A variant that saw nothing (threshold 0.5 until known).
    pub fn empty(variant: &str) -> Self {
        VariantSnapshot {
            variant: variant.to_string(),
            version: None,
            requests: 0,
            rows: 0,
            errors: 0,
            rejected: 0,
            unscored_rows: 0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            threshold: 0.5,
            scores: Vec::new(),
            labels: Vec::new(),
            label_scores: Vec::new(),
            labeled_dropped: 0,
            shadow_compared: 0,
            shadow_agreed: 0,
        }
    }

    /// Labeled rows joined so far.
    pub fn labeled(&self) -> usize {
        self.labels.len()
    }
}

/// Every variant's statistics over the current step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSnapshot {
    /// One entry per variant of the route table (shadow included).
    pub variants: Vec<VariantSnapshot>,
}

impl StepSnapshot {
    /// The variant named `name`.
    pub fn get(&self, name: &str) -> Option<&VariantSnapshot> {
        self.variants.iter().find(|v| v.variant == name)
    }
}

/// Why a request's labels could not be joined, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum JoinDrop {
    /// Waited past the time-to-live.
    Expired,
    /// Pushed out by newer requests past the capacity.
    Evicted,
    /// A second request with the same id replaced the first.
    Duplicate,
    /// Labels for an id that is not waiting (never seen, or already dropped).
    Unknown,
    /// Joined, but the variant's labeled buffer for the step was full.
    Full,
    /// Labeled rows whose prediction was NaN (unscored input): nothing to judge.
    Unscored,
}

impl JoinDrop {
    pub(crate) const ALL: [JoinDrop; 6] = [
        JoinDrop::Expired,
        JoinDrop::Evicted,
        JoinDrop::Duplicate,
        JoinDrop::Unknown,
        JoinDrop::Full,
        JoinDrop::Unscored,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JoinDrop::Expired => "expired",
            JoinDrop::Evicted => "evicted",
            JoinDrop::Duplicate => "duplicate",
            JoinDrop::Unknown => "unknown",
            JoinDrop::Full => "full",
            JoinDrop::Unscored => "unscored",
        }
    }
}

/// A request waiting for its labels.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) variant: Arc<str>,
    /// The version that answered: labels join only to that version's statistics.
    pub(crate) version: Option<u64>,
    pub(crate) scores: Vec<f32>,
    at: std::time::SystemTime,
    seq: u64,
}

#[derive(Debug, Default)]
struct JoinInner {
    waiting: HashMap<String, Pending>,
    /// Insertion order (id, seq); entries whose seq no longer matches are stale.
    order: VecDeque<(String, u64)>,
    seq: u64,
    /// What `waiting` and `order` hold, as [`entry_bytes`] and [`order_bytes`] count it.
    bytes: usize,
}

/// Fixed bytes counted per entry besides its id and scores (map and queue slots, the
/// `Pending` fields): a request with an empty id still costs memory.
const ENTRY_OVERHEAD: usize = 96;

/// The bytes a waiting entry holds: its id (the map's key) and its scores.
fn entry_bytes(id: &str, scores: usize) -> usize {
    ENTRY_OVERHEAD + id.len() + scores * std::mem::size_of::<f32>()
}

/// The bytes an insertion-order entry holds: its own copy of the id.
fn order_bytes(id: &str) -> usize {
    32 + id.len()
}

/// How many one-row requests with ids of `id_bytes` bytes the label join of `stats` holds
/// before it evicts the oldest: its capacity, or fewer when its byte bound comes first.
#[cfg(feature = "sim")]
pub(crate) fn join_holds(stats: &StatsConfig, id_bytes: usize) -> usize {
    let id = "x".repeat(id_bytes);
    let per_request = entry_bytes(&id, 1) + order_bytes(&id);
    stats
        .label_join_capacity
        .min(stats.label_join_bytes / per_request)
}

/// Requests waiting for delayed labels, bounded by capacity and time-to-live.
pub(crate) struct LabelJoin {
    inner: Mutex<JoinInner>,
    capacity: usize,
    max_bytes: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    drops: [Counter; 6],
}

impl std::fmt::Debug for LabelJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelJoin")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LabelJoin {
    pub(crate) fn new(
        config: &StatsConfig,
        clock: Arc<dyn Clock>,
        drops: [Counter; 6],
    ) -> Result<Self> {
        Ok(LabelJoin {
            inner: Mutex::new(JoinInner::default()),
            capacity: config.label_join_capacity,
            max_bytes: config.label_join_bytes,
            ttl: label_ttl(config.label_ttl_seconds)?,
            clock,
            drops,
        })
    }

    pub(crate) fn count(&self, why: JoinDrop, n: u64) {
        if let Some(i) = JoinDrop::ALL.iter().position(|d| *d == why) {
            self.drops[i].inc_by(n);
        }
    }

    /// Drops entries older than the time-to-live from the front.
    fn expire(&self, inner: &mut JoinInner) {
        let now = self.clock.now();
        while let Some((id, seq)) = inner.order.front() {
            let live = match inner.waiting.get(id) {
                Some(p) if p.seq == *seq => {
                    if now.duration_since(p.at).unwrap_or_default() < self.ttl {
                        break;
                    }
                    true
                }
                _ => false,
            };
            let (id, _) = inner.order.pop_front().unwrap_or_default();
            inner.bytes = inner.bytes.saturating_sub(order_bytes(&id));
            if live {
                if let Some(p) = inner.waiting.remove(&id) {
                    inner.bytes = inner.bytes.saturating_sub(entry_bytes(&id, p.scores.len()));
                }
                self.count(JoinDrop::Expired, 1);
            }
        }
    }

    pub(crate) fn insert(
        &self,
        id: &str,
        variant: Arc<str>,
        version: Option<u64>,
        scores: Vec<f32>,
    ) {
        let mut inner = lock(&self.inner);
        self.expire(&mut inner);
        inner.seq += 1;
        let seq = inner.seq;
        let pending = Pending {
            variant,
            version,
            scores,
            at: self.clock.now(),
            seq,
        };
        inner.bytes += entry_bytes(id, pending.scores.len()) + order_bytes(id);
        if let Some(old) = inner.waiting.insert(id.to_string(), pending) {
            inner.bytes = inner
                .bytes
                .saturating_sub(entry_bytes(id, old.scores.len()));
            self.count(JoinDrop::Duplicate, 1);
        }
        inner.order.push_back((id.to_string(), seq));
        while inner.waiting.len() > self.capacity || inner.bytes > self.max_bytes {
            let Some((old, seq)) = inner.order.pop_front() else {
                break;
            };
            inner.bytes = inner.bytes.saturating_sub(order_bytes(&old));
            if inner.waiting.get(&old).is_some_and(|p| p.seq == seq) {
                if let Some(p) = inner.waiting.remove(&old) {
                    inner.bytes = inner
                        .bytes
                        .saturating_sub(entry_bytes(&old, p.scores.len()));
                }
                self.count(JoinDrop::Evicted, 1);
            }
        }
        // Stale order entries (replaced or taken ids) are dropped as they reach the front;
        // bound them too so a stream of duplicates cannot grow the queue.
        if inner.order.len() > 2 * self.capacity + 16 {
            let JoinInner {
                waiting,
                order,
                bytes,
                ..
            } = &mut *inner;
            order.retain(|(id, seq)| {
                let live = waiting.get(id).is_some_and(|p| p.seq == *seq);
                if !live {
                    *bytes = bytes.saturating_sub(order_bytes(id));
                }
                live
            });
        }
    }

    /// The request waiting under `id`, removed, when it was scored on `rows` rows;
    /// `Ok(None)` (counted) when nothing waits; `Err(rows it was scored on)` when the count
    /// differs, and then it stays waiting (a corrected post can still join).
    pub(crate) fn take(
        &self,
        id: &str,
        rows: usize,
    ) -> std::result::Result<Option<Pending>, usize> {
        let mut inner = lock(&self.inner);
        self.expire(&mut inner);
        match inner.waiting.get(id).map(|p| p.scores.len()) {
            None => {
                self.count(JoinDrop::Unknown, 1);
                Ok(None)
            }
            Some(n) if n != rows => Err(n),
            Some(n) => {
                inner.bytes = inner.bytes.saturating_sub(entry_bytes(id, n));
                Ok(inner.waiting.remove(id))
            }
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        lock(&self.inner).waiting.len()
    }

    /// The bytes the waiting requests hold, as counted against
    /// [`StatsConfig::label_join_bytes`].
    pub(crate) fn waiting_bytes(&self) -> usize {
        lock(&self.inner).bytes
    }
}
