//! The retrain requests every replica shares: [`RetrainRequest`] (what a hook receives and a
//! retrain job reads), the [`RetrainLedger`] that holds the last one per model with a
//! conditional write, and [`claim_retrain`], the one rule that turns N replicas' alarms into
//! one request per cooldown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::step_stats::lock;
use crate::Result;

/// The registry state document a model's retrain requests are written to.
pub const RETRAIN_DOCUMENT: &str = "retrain";

/// `SystemTime` as an RFC 3339 string (UTC, microseconds), the form every reader of the JSON
/// (a webhook, `jq`, Python's `datetime.fromisoformat`) takes.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `t` as `2026-12-05T10:00:00.000000Z`.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    /// Reads an RFC 3339 time (`Z` only: the form this module writes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid time {text:?}: {e}; expected RFC 3339 in UTC, like 2026-12-05T10:00:00Z"
            ))
        })
    }
}

/// Where the rows that raised an alarm are in the prediction log: rows recorded in
/// `[from, to)` (UTC): `from` the time of the window's oldest row, `to` a microsecond after its
/// newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogWindow {
    /// The time of the window's oldest row.
    #[serde(with = "rfc3339")]
    pub from: SystemTime,
    /// A microsecond after the time of its newest row.
    #[serde(with = "rfc3339")]
    pub to: SystemTime,
}

/// The drift seen in the window that raised the alarm, in brief.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestSummary {
    /// The dataset verdict (`drift`, `no_drift`, `incomplete`).
    pub verdict: String,
    /// Columns that drifted, by name.
    pub drifted_columns: Vec<String>,
    /// Columns tested.
    pub columns_tested: usize,
    /// Share of tested columns that drifted.
    pub drifted_share: f64,
    /// Rows in the window.
    pub window_rows: usize,
    /// Prediction drift's statistic and p-value, when the version has a prediction profile.
    pub prediction_drift: Option<PredictionDrift>,
    /// The live metrics of the version when the alarm was raised (from labels posted back),
    /// by metric name; absent when too few labels came.
    pub live_metrics: BTreeMap<String, f64>,
    /// Labeled rows behind `live_metrics`.
    pub labeled_rows: usize,
}

/// The comparison of the window's predictions with the version's prediction profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionDrift {
    /// The deciding test's statistic.
    pub statistic: f64,
    /// Its p-value (`None` for a test without one).
    pub p_value: Option<f64>,
    /// Whether it drifted.
    pub drifted: bool,
}

/// A request to retrain `model`, as a hook receives it (JSON) and a retrain job reads it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mlops_serve::monitor::{LogWindow, RetrainRequest, RequestSummary};
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_796_464_800);
/// let request = RetrainRequest {
///     model: "fraud".into(), version: Some(3), sequence: 1, at: t,
///     replica: "serve-a".into(), reason: "dataset drifted: 5/7 columns".into(),
///     window: LogWindow { from: t - Duration::from_secs(600), to: t },
///     summary: RequestSummary::default(),
/// };
/// let json = serde_json::to_string(&request)?;
/// assert!(json.contains(r#""window":{"from":"2026-12-05T09:50:00.000000Z","to":"2026-12-05T10:00:00.000000Z"}"#), "{json}");
/// assert_eq!(serde_json::from_str::<RetrainRequest>(&json)?, request);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    /// The model.
    pub model: String,
    /// The version whose window drifted (`None`: a variant without a version).
    pub version: Option<u64>,
    /// The request's number in the model's ledger (1 for the first).
    pub sequence: u64,
    /// When it was claimed.
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// The replica that claimed it.
    pub replica: String,
    /// The policy's reason.
    pub reason: String,
    /// The rows of the alarm, in the prediction log.
    pub window: LogWindow,
    /// The report, in brief.
    #[serde(default)]
    pub summary: RequestSummary,
}

/// Shared storage of each model's last retrain request, with a conditional write: the
/// registry's state documents (feature `registry`) for replicas, [`MemoryRetrainLedger`] for
/// one process and tests.
#[async_trait]
pub trait RetrainLedger: Send + Sync {
    /// The last request of `model` (its `sequence` is the ledger's), if any.
    async fn last(&self, model: &str) -> Result<Option<RetrainRequest>>;

    /// Writes `request` as `request.model`'s request `request.sequence` if the last one is
    /// still `request.sequence - 1` (0: none). `Ok(false)` when another writer got there
    /// first; nothing changed.
    async fn claim(&self, request: &RetrainRequest) -> Result<bool>;
}

/// Requests kept in memory (one process; tests).
#[derive(Debug, Default)]
pub struct MemoryRetrainLedger {
    last: Mutex<HashMap<String, RetrainRequest>>,
}

impl MemoryRetrainLedger {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RetrainLedger for MemoryRetrainLedger {
    async fn last(&self, model: &str) -> Result<Option<RetrainRequest>> {
        Ok(lock(&self.last).get(model).cloned())
    }

    async fn claim(&self, request: &RetrainRequest) -> Result<bool> {
        let mut last = lock(&self.last);
        let current = last.get(&request.model).map_or(0, |r| r.sequence);
        if request.sequence != current + 1 {
            return Ok(false);
        }
        last.insert(request.model.clone(), request.clone());
        Ok(true)
    }
}

#[cfg(feature = "registry")]
#[async_trait]
impl RetrainLedger for mlops_registry::Registry {
    async fn last(&self, model: &str) -> Result<Option<RetrainRequest>> {
        let Some(entry) = self.state(model, RETRAIN_DOCUMENT).await? else {
            return Ok(None);
        };
        let mut request: RetrainRequest = serde_json::from_value(entry.value).map_err(|e| {
            crate::Error::corrupt(format!(
                "retrain request {} of {model:?} is not a request written by this version of \
                 mlops: {e}",
                entry.seq
            ))
        })?;
        request.sequence = entry.seq;
        Ok(Some(request))
    }

    async fn claim(&self, request: &RetrainRequest) -> Result<bool> {
        let value = serde_json::to_value(request).map_err(|e| {
            crate::Error::invalid(
                "retrain request",
                e.to_string(),
                "a request that serializes",
            )
        })?;
        let expected = request.sequence.saturating_sub(1);
        Ok(self
            .put_state(
                &request.model,
                RETRAIN_DOCUMENT,
                expected,
                value,
                &request.reason,
            )
            .await?
            .is_some())
    }
}

/// What [`claim_retrain`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// This caller's request is the model's request `sequence`: deliver it.
    Requested(Box<RetrainRequest>),
    /// The model's last request is within the cooldown (by this replica or another): nothing
    /// written.
    Cooldown {
        /// That request.
        last: Box<RetrainRequest>,
        /// Cooldown left.
        left: Duration,
    },
    /// Another replica claimed the same slot first: nothing written.
    LostRace,
}

impl Claimed {
    /// `requested`, `cooldown` or `lost_race` (the metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Claimed::Requested(_) => "requested",
            Claimed::Cooldown { .. } => "cooldown",
            Claimed::LostRace => "lost_race",
        }
    }
}

/// Claims a retrain of `request.model` in `ledger` unless its last request is younger than
/// `cooldown` at `request.at`: of N replicas raising the same alarm, exactly one gets
/// [`Claimed::Requested`] (with `sequence` set) and the others [`Claimed::LostRace`] or
/// [`Claimed::Cooldown`]. A failing ledger is an error and claims nothing.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mlops_serve::monitor::{claim_retrain, Claimed, LogWindow, MemoryRetrainLedger, RetrainRequest};
///
/// # futures::executor::block_on(async {
/// let ledger = MemoryRetrainLedger::new();
/// let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let request = |replica: &str, at| RetrainRequest {
///     model: "fraud".into(), version: Some(1), sequence: 0, at, replica: replica.into(),
///     reason: "drift".into(), window: LogWindow { from: at, to: at }, summary: Default::default(),
/// };
/// let hour = Duration::from_secs(3600);
/// assert!(matches!(claim_retrain(&ledger, request("a", t), hour).await?, Claimed::Requested(r) if r.sequence == 1));
/// assert!(matches!(claim_retrain(&ledger, request("b", t), hour).await?, Claimed::Cooldown { .. }));
/// assert!(matches!(claim_retrain(&ledger, request("b", t + hour), hour).await?, Claimed::Requested(r) if r.sequence == 2));
/// # Ok::<(), mlops_serve::Error>(())
/// # })?;
/// # Ok::<(), mlops_serve::Error>(())
/// ```
pub async fn claim_retrain(
    ledger: &dyn RetrainLedger,
    mut request: RetrainRequest,
    cooldown: Duration,
) -> Result<Claimed> {
    let last = ledger.last(&request.model).await?;
    if let Some(last) = last.as_ref() {
        // A request stamped later than ours (a replica's clock ahead) is within the cooldown
        // too: elapsed time never goes negative.
        let elapsed = request.at.duration_since(last.at).unwrap_or(Duration::ZERO);
        if elapsed < cooldown {
            return Ok(Claimed::Cooldown {
                left: cooldown - elapsed,
                last: Box::new(last.clone()),
            });
        }
    }
    let seq = last.map_or(0, |l| l.sequence);
    request.sequence = seq
        .checked_add(1)
        .ok_or_else(|| crate::Error::invalid("retrain ledger sequence", seq, "below u64::MAX"))?;
    if ledger.claim(&request).await? {
        Ok(Claimed::Requested(Box::new(request)))
    } else {
        Ok(Claimed::LostRace)
    }
}
