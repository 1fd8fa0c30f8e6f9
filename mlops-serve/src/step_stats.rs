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
    /// Requests awaiting their labels. Past this the join keeps a uniform sample of requests
    /// (by a hash of their ids, the same for every variant), lowering the sampled share by a
    /// quarter each time it is full; the requests it drops are counted as `evicted`, and the
    /// labels that come for requests outside the sample as `sampled` (once the share rises
    /// again, labels of requests the smaller sample left out count as `unknown`). The
    /// default holds an hour of the seed's mean traffic (547 requests/s) whole.
    pub label_join_capacity: usize,
    /// Bytes the requests awaiting their labels are counted as: 240 per request, the worst
    /// case (the id is kept as a 128-bit hash, whatever its length; map and queue slots at
    /// their lowest load), plus, for a request of several rows or with a sensitive group, one
    /// allocation of 56 bytes with 4 per row after the first and its groups (16 and the name's
    /// bytes, or 16 and 4 per row). Past this the join samples
    /// as past its capacity. The default, 480 MiB, is the default capacity's worth; the
    /// memory the join really holds is typically under half of what it counts.
    pub label_join_bytes: usize,
    /// Seconds a request waits for its labels before it is dropped (and counted), from a
    /// millisecond to [`MAX_LABEL_TTL_SECONDS`].
    pub label_ttl_seconds: f64,
    /// The model input whose value is each row's sensitive group (a categorical code, say), for
    /// the `fairness` canary check: labeled rows keep their group. A host may give a request's
    /// group instead ([`Request::group`](crate::router::Request::group), the V2 server's
    /// `parameters`); the feature, when named, wins. `None`: no groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_feature: Option<String>,
    /// The most distinct groups a step keeps (from 2 to [`MAX_GROUPS`]): a request chooses
    /// the value, so the table is bounded. A group takes a place when labels join (a request
    /// never labeled takes none), and every step starts a new table. Rows of a new group past
    /// it are labeled without one ([`NO_GROUP`]: the fairness check is then inconclusive) and
    /// counted ([`Router::group_overflow`](crate::router::Router::group_overflow)).
    pub max_groups: usize,
}

/// The most distinct sensitive groups a router keeps ([`StatsConfig::max_groups`]).
pub const MAX_GROUPS: usize = 1000;

/// A labeled row's group when it has none (no group source, a new group past
/// [`StatsConfig::max_groups`], a NaN feature).
pub const NO_GROUP: u16 = u16::MAX;

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            score_reservoir: 10_000,
            labeled_capacity: 100_000,
            label_join_capacity: 2_000_000,
            label_join_bytes: 480 << 20,
            label_ttl_seconds: 3600.0,
            group_feature: None,
            max_groups: 32,
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
        ] {
            if v == 0 {
                return Err(Error::invalid(field, v, "at least 1"));
            }
        }
        if self.label_join_bytes < entry_bytes(1) {
            return Err(Error::invalid(
                "StatsConfig.label_join_bytes",
                self.label_join_bytes,
                format!("at least {} (one waiting request's worth)", entry_bytes(1)),
            ));
        }
        label_ttl(self.label_ttl_seconds)?;
        if !(2..=MAX_GROUPS).contains(&self.max_groups) {
            return Err(Error::invalid(
                "StatsConfig.max_groups",
                self.max_groups,
                format!("from 2 to {MAX_GROUPS}"),
            ));
        }
        Ok(())
    }
}

/// Why `name` cannot be a sensitive group's name: more than
/// [`MAX_GROUP_VALUE_BYTES`](mlops_core::fairness::MAX_GROUP_VALUE_BYTES) bytes, empty, or a
/// control, invisible or formatting character (a line separator, a zero-width space, a
/// bidirectional override), `"` or `\`, or spaces around it (a group name becomes a
/// Prometheus label value, which those would break or disguise).
///
/// ```
/// use mlops_serve::step_stats::group_name_problem;
///
/// assert_eq!(group_name_problem("Côte d'Ivoire"), None);
/// assert!(group_name_problem("a\"b").unwrap().contains("quote"));
/// assert!(group_name_problem("").is_some());
/// assert!(group_name_problem("north\u{2028}").is_some());
/// assert!(group_name_problem("north ").is_some());
/// ```
pub fn group_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an empty group name".into());
    }
    if name.len() > mlops_core::fairness::MAX_GROUP_VALUE_BYTES {
        return Some(format!(
            "a group name of {} bytes; at most {}",
            name.len(),
            mlops_core::fairness::MAX_GROUP_VALUE_BYTES
        ));
    }
    if name.trim() != name {
        return Some(format!(
            "the group name {name:?} with spaces around it; expected none (two names that look alike)"
        ));
    }
    // Line and paragraph separators, zero-width and bidirectional formatting characters are
    // invisible, or end a line for some readers.
    let hidden = |c: char| matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
    name.chars()
        .find(|&c| c.is_control() || c == '"' || c == '\\' || hidden(c))
        .map(|c| {
            format!("a group name with {c:?}; expected no control, invisible or formatting character, quote or backslash")
        })
}

/// Group names by index, and their indices by name.
type GroupTable = (Vec<Arc<str>>, std::collections::HashMap<Arc<str>, u16>);

/// The router's table of sensitive group names: each distinct group once, at most
/// `capacity` (a request controls the value, so the table is bounded).
#[derive(Debug)]
pub(crate) struct GroupNames {
    capacity: usize,
    inner: Mutex<GroupTable>,
    /// Rows refused a place (the router's count, shared by every step's table).
    overflow: Arc<AtomicU64>,
}

impl GroupNames {
    pub(crate) fn new(capacity: usize, overflow: Arc<AtomicU64>) -> Self {
        GroupNames {
            capacity,
            inner: Mutex::new((Vec::new(), std::collections::HashMap::new())),
            overflow,
        }
    }

    /// Each row's group index for a request's labeled rows ([`NO_GROUP`] where it has none).
    pub(crate) fn indices(&self, groups: &RawGroups, rows: usize) -> Vec<u16> {
        (0..rows)
            .map(|i| match groups.name(i) {
                Some(name) => self.index(&name),
                None => NO_GROUP,
            })
            .collect()
    }

    /// The index of `name`, added when there is room; [`NO_GROUP`] (counted) when not, or
    /// when it is no valid group name ([`group_name_problem`]).
    pub(crate) fn index(&self, name: &str) -> u16 {
        if group_name_problem(name).is_some() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return NO_GROUP;
        }
        let mut inner = lock(&self.inner);
        if let Some(&i) = inner.1.get(name) {
            return i;
        }
        if inner.0.len() >= self.capacity {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return NO_GROUP;
        }
        let i = inner.0.len() as u16;
        let name: Arc<str> = name.into();
        inner.0.push(name.clone());
        inner.1.insert(name, i);
        i
    }

    /// Every group name, by index.
    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.inner).0.iter().map(|n| n.to_string()).collect()
    }

    /// The names of `groups` (`None` for [`NO_GROUP`]).
    #[cfg(feature = "monitor")]
    pub(crate) fn names_of(&self, groups: &[u16]) -> Vec<Option<Arc<str>>> {
        let inner = lock(&self.inner);
        groups
            .iter()
            .map(|&g| inner.0.get(usize::from(g)).cloned())
            .collect()
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
    /// Each row's group ([`NO_GROUP`] without one); empty while no row had one.
    groups: Vec<u16>,
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
    pub(crate) fn record_labels(
        &self,
        labels: &[bool],
        scores: &[f32],
        groups: Option<&[u16]>,
    ) -> Option<(u64, u64)> {
        let mut l = lock(&self.labeled);
        if l.labels.len() + labels.len() > self.labeled_capacity {
            self.labeled_dropped
                .fetch_add(labels.len() as u64, Ordering::Relaxed);
            return None;
        }
        let (mut kept, mut unscored) = (0, 0);
        if groups.is_some() && l.groups.len() < l.labels.len() {
            // The first row with a group: the rows before had none.
            let n = l.labels.len();
            l.groups.resize(n, NO_GROUP);
        }
        for (i, (&label, &score)) in labels.iter().zip(scores).enumerate() {
            if score.is_finite() {
                l.labels.push(label);
                l.scores.push(f64::from(score));
                if groups.is_some() || !l.groups.is_empty() {
                    let g = groups.and_then(|g| g.get(i).copied()).unwrap_or(NO_GROUP);
                    l.groups.push(g);
                }
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
            label_groups: labeled.groups.clone(),
            group_names: Vec::new(),
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
    /// Each labeled row's sensitive group, an index into `group_names` ([`NO_GROUP`] without
    /// one); empty when no row had a group ([`StatsConfig::group_feature`]).
    #[serde(skip)]
    pub label_groups: Vec<u16>,
    /// The router's group names, by index (empty without groups).
    #[serde(skip)]
    pub group_names: Vec<String>,
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
            label_groups: Vec::new(),
            group_names: Vec::new(),
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
    /// Dropped from a full join when it lowered its sample's threshold.
    Evicted,
    /// Labels for a request outside the join's sample (it keeps a uniform sample of
    /// requests once it has been full).
    Sampled,
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
    pub(crate) const ALL: [JoinDrop; 7] = [
        JoinDrop::Expired,
        JoinDrop::Evicted,
        JoinDrop::Sampled,
        JoinDrop::Duplicate,
        JoinDrop::Unknown,
        JoinDrop::Full,
        JoinDrop::Unscored,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JoinDrop::Expired => "expired",
            JoinDrop::Evicted => "evicted",
            JoinDrop::Sampled => "sampled",
            JoinDrop::Duplicate => "duplicate",
            JoinDrop::Unknown => "unknown",
            JoinDrop::Full => "full",
            JoinDrop::Unscored => "unscored",
        }
    }
}

/// A request's predictions, taken from the join with its labels.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) variant: Arc<str>,
    /// The version that answered: labels join only to that version's statistics.
    pub(crate) version: Option<u64>,
    pub(crate) scores: Vec<f32>,
    /// Its sensitive groups, when the request had groups.
    pub(crate) groups: Option<RawGroups>,
}

/// A request as the join keeps it: 24 bytes, its id reduced to a 128-bit hash (the map's
/// key), its variant to an index into the join's small table of variants.
#[derive(Debug)]
struct Waiting {
    /// Microseconds since the Unix epoch when it was scored.
    at_us: u64,
    /// Index into [`JoinInner::variants`].
    variant: u32,
    /// Its first row's score; the others (multi-row requests) and its groups in `extra`.
    first: f32,
    extra: Option<Box<Extra>>,
}

/// What a waiting request holds besides its first score: one allocation, only when needed.
#[derive(Debug)]
struct Extra {
    /// The scores of the rows after the first.
    rest: Box<[f32]>,
    /// Its sensitive groups as they came (interned when its labels join, so requests never
    /// labeled take no place in the step's table of groups).
    groups: Option<RawGroups>,
}

/// A request's sensitive groups as they came: its own group, or each row's value of
/// [`StatsConfig::group_feature`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawGroups {
    /// One group for every row ([`Request::group`](crate::router::Request::group)).
    Request(Box<str>),
    /// Each row's value of the group feature.
    Rows(Box<[f32]>),
}

impl RawGroups {
    /// Bytes on the heap, with the allocator's header.
    fn heap_bytes(&self) -> usize {
        16 + match self {
            RawGroups::Request(g) => g.len(),
            RawGroups::Rows(v) => v.len() * std::mem::size_of::<f32>(),
        }
    }

    /// Row `i`'s group name: the request's, or the feature's value (`-0` as `0`; `None` for
    /// a non-finite value or a row past the end).
    pub(crate) fn name(&self, i: usize) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            RawGroups::Request(g) => Some(std::borrow::Cow::Borrowed(g)),
            RawGroups::Rows(v) => {
                let v = *v.get(i)?;
                if !v.is_finite() {
                    return None;
                }
                let v = if v == 0.0 { 0.0 } else { v };
                Some(std::borrow::Cow::Owned(v.to_string()))
            }
        }
    }
}

impl Waiting {
    fn rows(&self) -> usize {
        1 + self.extra.as_ref().map_or(0, |e| e.rest.len())
    }

    /// What it is counted as: [`ENTRY_BYTES`], and its extra allocation with its contents.
    fn bytes(&self) -> usize {
        ENTRY_BYTES
            + self.extra.as_ref().map_or(0, |e| {
                EXTRA_BYTES
                    + e.rest.len() * std::mem::size_of::<f32>()
                    + e.groups.as_ref().map_or(0, RawGroups::heap_bytes)
            })
    }
}

/// The join's key of a request id under `seed`; its high 64 bits are the id's sample hash.
/// The seed is the join's own, drawn per process: not the router's sticky-bucket hash
/// (unseeded xxh3-64), so which requests the join samples is independent of the variant that
/// served them, and unknown to a client that would pick ids to stay in the sample.
fn join_key(seed: u64, id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), seed)
}

/// A random 64-bit value, fresh per call (std's per-instance random hasher keys).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6d6c_6f70_736a_6f69);
    h.finish()
}

fn sample_hash(key: u128) -> u64 {
    (key >> 64) as u64
}

#[derive(Debug)]
struct JoinInner {
    waiting: HashMap<u128, Waiting>,
    /// Insertion order (key, time); entries whose time no longer matches are stale.
    order: VecDeque<(u128, u64)>,
    /// The (variant, version) pairs of waiting requests.
    variants: Vec<(Arc<str>, Option<u64>)>,
    /// What `waiting` holds, as [`entry_bytes`] counts it.
    bytes: usize,
    /// Requests whose sample hash is at most this are kept: `u64::MAX` keeps every one.
    threshold: u64,
    /// When the threshold last changed, microseconds since the Unix epoch.
    changed_us: u64,
}

impl Default for JoinInner {
    fn default() -> Self {
        JoinInner {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            variants: Vec::new(),
            bytes: 0,
            threshold: u64::MAX,
            changed_us: 0,
        }
    }
}

/// Bytes counted per waiting request besides the scores of its rows after the first, the
/// worst case: its map slot at the map's lowest load just after it grew (49 bytes of key,
/// entry and control byte at 7/16 load: 112) and its insertion-order entries (32 bytes; the
/// queue keeps at most twice as many entries as requests waiting, at half its capacity at
/// worst: 128). What the join really holds is at most this, typically under half.
const ENTRY_BYTES: usize = 240;

/// Bytes counted for a waiting request's extra allocation besides its contents: the
/// allocator's header and the [`Extra`] itself.
const EXTRA_BYTES: usize = 16 + std::mem::size_of::<Extra>();

/// The bytes a waiting request of `rows` rows without groups is counted as.
fn entry_bytes(rows: usize) -> usize {
    if rows <= 1 {
        ENTRY_BYTES
    } else {
        ENTRY_BYTES + EXTRA_BYTES + (rows - 1) * std::mem::size_of::<f32>()
    }
}

/// How many one-row requests the label join of `stats` holds before it samples: its
/// capacity, or fewer when its byte bound comes first.
#[cfg(feature = "sim")]
pub(crate) fn join_holds(stats: &StatsConfig) -> usize {
    stats
        .label_join_capacity
        .min(stats.label_join_bytes / entry_bytes(1))
}

/// The share of requests the join keeps at steady state when `arriving` requests wait at
/// once with every one kept and it holds `holds`: the threshold falls by a quarter each time
/// the join is full.
#[cfg(feature = "sim")]
pub(crate) fn join_share(arriving: f64, holds: usize) -> f64 {
    let mut share = 1.0;
    while arriving * share > holds as f64 && share > 1e-12 {
        share *= SHRINK;
    }
    share
}

/// The factor the sample's threshold falls by when the join is full.
const SHRINK: f64 = 0.75;

/// Requests waiting for delayed labels, bounded by capacity, bytes and time-to-live.
///
/// Past its capacity or byte bound, the join keeps a uniform sample of requests rather than
/// the newest ones: a request is kept when a hash of its id is below a threshold, and a full
/// join lowers the threshold by a quarter (the requests above it are dropped and counted as
/// `evicted`; labels that come for requests outside the sample are counted as `sampled`).
/// Evicting the oldest instead would, with labels an hour late and more than the capacity
/// of requests in that hour, drop every request before its labels came. The sample is the
/// same for every variant (the hash is not the router's), so the checks compare like with
/// like, on fewer rows. A join under half full, a time-to-live after the threshold last
/// changed, raises it again (towards three quarters full). A request larger than the whole
/// byte bound is dropped alone (`evicted`).
pub(crate) struct LabelJoin {
    inner: Mutex<JoinInner>,
    seed: u64,
    capacity: usize,
    max_bytes: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    drops: [Counter; 7],
}

impl std::fmt::Debug for LabelJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelJoin")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl LabelJoin {
    pub(crate) fn new(
        config: &StatsConfig,
        clock: Arc<dyn Clock>,
        drops: [Counter; 7],
    ) -> Result<Self> {
        Ok(LabelJoin {
            inner: Mutex::new(JoinInner::default()),
            seed: random_seed(),
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

    fn ttl_us(&self) -> u64 {
        u64::try_from(self.ttl.as_micros()).unwrap_or(u64::MAX)
    }

    /// Drops entries older than the time-to-live from the front.
    fn expire(&self, inner: &mut JoinInner, now_us: u64) {
        let ttl = self.ttl_us();
        while let Some(&(key, at)) = inner.order.front() {
            let live = inner.waiting.get(&key).is_some_and(|w| w.at_us == at);
            if live && now_us.saturating_sub(at) < ttl {
                break;
            }
            inner.order.pop_front();
            if live {
                if let Some(w) = inner.waiting.remove(&key) {
                    inner.bytes = inner.bytes.saturating_sub(w.bytes());
                }
                self.count(JoinDrop::Expired, 1);
            }
        }
    }

    /// Lowers the threshold to keep three quarters of the waiting requests (in one pass: the
    /// hash at that rank) and drops the requests above it, until the join is within its
    /// bounds.
    fn shrink(&self, inner: &mut JoinInner, now_us: u64) {
        while (inner.waiting.len() > self.capacity || inner.bytes > self.max_bytes)
            && inner.threshold > 0
            && !inner.waiting.is_empty()
        {
            let mut hashes: Vec<u64> = inner.waiting.keys().map(|k| sample_hash(*k)).collect();
            let rank = ((hashes.len() as f64 * SHRINK) as usize).min(hashes.len() - 1);
            let (_, at, _) = hashes.select_nth_unstable(rank);
            // Keep what is below the hash at that rank: three quarters, fewer on ties.
            let threshold = at.saturating_sub(1).min(inner.threshold - 1);
            inner.threshold = threshold;
            inner.changed_us = now_us;
            let before = inner.waiting.len();
            let mut freed = 0;
            inner.waiting.retain(|key, w| {
                let keep = sample_hash(*key) <= threshold;
                if !keep {
                    freed += w.bytes();
                }
                keep
            });
            inner.bytes = inner.bytes.saturating_sub(freed);
            self.count(JoinDrop::Evicted, (before - inner.waiting.len()) as u64);
            tracing::debug!(
                share = threshold as f64 / u64::MAX as f64,
                waiting = inner.waiting.len(),
                "label join full: it now keeps a smaller sample of requests"
            );
        }
        // Stale order entries (replaced, taken or dropped requests) are skipped as they reach
        // the front; bound them too so a stream of duplicates cannot grow the queue.
        if inner.order.len() > 2 * inner.waiting.len() + 16 {
            let JoinInner { waiting, order, .. } = &mut *inner;
            order.retain(|(key, at)| waiting.get(key).is_some_and(|w| w.at_us == *at));
            order.shrink_to(2 * order.len() + 16);
        }
    }

    /// Raises the threshold when the join has been under half full for a time-to-live since
    /// it last changed: towards three quarters full at the traffic it saw (by a third at
    /// least, at most 2^16 times at once).
    fn regrow(&self, inner: &mut JoinInner, now_us: u64) {
        if inner.threshold < u64::MAX
            && 2 * inner.waiting.len() < self.capacity
            && 2 * inner.bytes < self.max_bytes
            && now_us.saturating_sub(inner.changed_us) >= self.ttl_us()
        {
            let room = |bound: usize, used: usize| 0.75 * bound as f64 / used.max(1) as f64;
            let factor = room(self.capacity, inner.waiting.len())
                .min(room(self.max_bytes, inner.bytes.max(entry_bytes(1))))
                .clamp(1.0 / SHRINK, 65_536.0);
            inner.threshold = ((inner.threshold as f64 * factor).min(u64::MAX as f64) as u64)
                .max(inner.threshold.saturating_add(1));
            inner.changed_us = now_us;
        }
    }

    fn variant_index(inner: &mut JoinInner, variant: Arc<str>, version: Option<u64>) -> u32 {
        if let Some(i) = inner
            .variants
            .iter()
            .position(|(v, n)| *v == variant && *n == version)
        {
            return i as u32;
        }
        // Variants come and go with rollouts: past a few, forget those nothing waits for.
        if inner.variants.len() >= 64 {
            let mut used = vec![false; inner.variants.len()];
            for w in inner.waiting.values() {
                used[w.variant as usize] = true;
            }
            let mut remap = vec![0_u32; inner.variants.len()];
            let mut kept = Vec::new();
            for (i, pair) in std::mem::take(&mut inner.variants).into_iter().enumerate() {
                if used[i] {
                    remap[i] = kept.len() as u32;
                    kept.push(pair);
                }
            }
            for w in inner.waiting.values_mut() {
                w.variant = remap[w.variant as usize];
            }
            inner.variants = kept;
        }
        inner.variants.push((variant, version));
        (inner.variants.len() - 1) as u32
    }

    pub(crate) fn insert(
        &self,
        id: &str,
        variant: Arc<str>,
        version: Option<u64>,
        scores: Vec<f32>,
        groups: Option<RawGroups>,
    ) {
        let now_us = micros(self.clock.now());
        let key = join_key(self.seed, id);
        let mut inner = lock(&self.inner);
        self.expire(&mut inner, now_us);
        self.regrow(&mut inner, now_us);
        // A request under an id already waiting replaces it, whatever happens to the new one.
        let replaced = inner.waiting.remove(&key);
        if let Some(old) = &replaced {
            inner.bytes = inner.bytes.saturating_sub(old.bytes());
            self.count(JoinDrop::Duplicate, 1);
        }
        let Some((&first, rest)) = scores.split_first() else {
            return;
        };
        if sample_hash(key) > inner.threshold {
            // Outside the sample: its labels are counted as `sampled` when they come.
            return;
        }
        let extra = (!rest.is_empty() || groups.is_some()).then(|| {
            Box::new(Extra {
                rest: rest.into(),
                groups,
            })
        });
        let waiting = Waiting {
            at_us: now_us,
            variant: 0,
            first,
            extra,
        };
        if waiting.bytes() > self.max_bytes {
            // A request larger than the whole bound: dropped alone, not by shrinking the
            // sample of every other request to nothing.
            self.count(JoinDrop::Evicted, 1);
            return;
        }
        let waiting = Waiting {
            variant: Self::variant_index(&mut inner, variant, version),
            ..waiting
        };
        inner.bytes += waiting.bytes();
        inner.waiting.insert(key, waiting);
        // The replaced request's order entry, at the same time, already stands for this one.
        if replaced.is_none_or(|old| old.at_us != now_us) {
            inner.order.push_back((key, now_us));
        }
        self.shrink(&mut inner, now_us);
    }

    /// The request waiting under `id`, removed, when it was scored on `rows` rows;
    /// `Ok(None)` (counted) when nothing waits; `Err(rows it was scored on)` when the count
    /// differs, and then it stays waiting (a corrected post can still join).
    pub(crate) fn take(
        &self,
        id: &str,
        rows: usize,
    ) -> std::result::Result<Option<Pending>, usize> {
        let now_us = micros(self.clock.now());
        let key = join_key(self.seed, id);
        let mut inner = lock(&self.inner);
        self.expire(&mut inner, now_us);
        match inner.waiting.get(&key).map(Waiting::rows) {
            None => {
                let why = if sample_hash(key) > inner.threshold {
                    JoinDrop::Sampled
                } else {
                    JoinDrop::Unknown
                };
                self.count(why, 1);
                Ok(None)
            }
            Some(n) if n != rows => Err(n),
            Some(n) => {
                let Some(w) = inner.waiting.remove(&key) else {
                    return Ok(None);
                };
                inner.bytes = inner.bytes.saturating_sub(w.bytes());
                let Some((variant, version)) = inner.variants.get(w.variant as usize).cloned()
                else {
                    self.count(JoinDrop::Unknown, 1);
                    return Ok(None);
                };
                let mut scores = Vec::with_capacity(n);
                scores.push(w.first);
                let groups = w.extra.and_then(|e| {
                    scores.extend_from_slice(&e.rest);
                    e.groups
                });
                Ok(Some(Pending {
                    variant,
                    version,
                    scores,
                    groups,
                }))
            }
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        lock(&self.inner).waiting.len()
    }

    /// The bytes the waiting requests are counted as against
    /// [`StatsConfig::label_join_bytes`].
    pub(crate) fn waiting_bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// The share of requests the join keeps (1: every one; less once it has been full).
    pub(crate) fn share(&self) -> f64 {
        let t = lock(&self.inner).threshold;
        if t == u64::MAX {
            1.0
        } else {
            t as f64 / u64::MAX as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the byte accounting assumes: a map slot of a 16-byte key and a 24-byte
    /// request within the 49 bytes `ENTRY_BYTES` counts, and the extra allocation's.
    #[test]
    fn the_join_counts_at_least_what_it_holds() {
        assert!(
            std::mem::size_of::<(u128, Waiting)>() < 49,
            "{}",
            std::mem::size_of::<(u128, Waiting)>()
        );
        assert_eq!(EXTRA_BYTES, 56);
    }
}
