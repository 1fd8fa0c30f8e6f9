//! A study journal shared by many workers through an object store, in Optuna's JournalStorage
//! format.
//!
//! The journal is a log of numbered entries, `journal/00000000000000000001.jsonl`, ... under
//! the study's URL. Each entry holds one or more operations, one JSON object per line, exactly
//! as Optuna's `JournalStorage` writes them (`op_code`, `worker_id`, and the operation's
//! fields), so the entries concatenated in order are a file that Optuna's
//! `JournalFileBackend` reads ([`SharedJournal::export_optuna`]).
//!
//! An entry is written with a conditional put (`PutMode::Create`) at the number after the last
//! entry the writer has read, so two writers never both take a number: the loser reads the
//! winner's entry, decides again from the new state, and retries at the next number. A trial's
//! number is its place among the journal's `CREATE_TRIAL` operations (as in Optuna), so numbers
//! are unique and gap-free, and an entry is either wholly there or not there at all. Each
//! writer decides from a state it has read up to the number it writes, so a decision (which
//! trial to pop, which stale trial to fail) is taken against exactly the state it lands on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{json, Map, Value};

use super::space::{Assignment, Distribution, ParamValue, SearchSpace};
use crate::error::{Error, Result};

/// Optuna's `JournalOperation` codes that this journal writes and reads.
pub(crate) mod op {
    pub const CREATE_STUDY: i64 = 0;
    pub const SET_STUDY_USER_ATTR: i64 = 2;
    pub const SET_STUDY_SYSTEM_ATTR: i64 = 3;
    pub const CREATE_TRIAL: i64 = 4;
    pub const SET_TRIAL_PARAM: i64 = 5;
    pub const SET_TRIAL_STATE_VALUES: i64 = 6;
    pub const SET_TRIAL_INTERMEDIATE_VALUE: i64 = 7;
    pub const SET_TRIAL_USER_ATTR: i64 = 8;
    pub const SET_TRIAL_SYSTEM_ATTR: i64 = 9;
}

/// The system attribute a running trial's worker refreshes while the trial runs.
pub(crate) const HEARTBEAT_ATTR: &str = "mlops:heartbeat";
/// The system attribute of a running trial: after how many silent seconds its worker counts
/// it as dead.
pub(crate) const STALE_AFTER_ATTR: &str = "mlops:stale_after_seconds";
/// The system attribute naming what the study's config and space do not (its objective, data).
pub(crate) const IDENTITY_ATTR: &str = "mlops:identity";
/// The system attribute holding the study's fingerprint.
pub(crate) const FINGERPRINT_ATTR: &str = "mlops:fingerprint";
/// Optuna's system attribute for why a trial failed.
pub(crate) const FAIL_REASON_ATTR: &str = "fail_reason";
/// Optuna's system attribute holding an enqueued trial's parameters.
pub(crate) const FIXED_PARAMS_ATTR: &str = "fixed_params";
/// Optuna's (`RetryFailedTrialCallback`) system attribute listing every trial a retry repeats.
pub(crate) const RETRY_HISTORY_ATTR: &str = "retry_history";
/// Optuna's (`RetryFailedTrialCallback`) system attribute naming the trial a retry repeats.
pub(crate) const FAILED_TRIAL_ATTR: &str = "failed_trial";

/// Entries read per round of concurrent reads while catching up.
const READ_BATCH: u64 = 8;

/// How a shared journal is reached and when a silent trial counts as dead.
///
/// ```
/// use mlops_train::hpo::JournalConfig;
/// let mut c = JournalConfig::default();
/// assert!(c.validate().is_ok());
/// c.stale_after_seconds = c.heartbeat_seconds; // a live trial would be failed between beats
/// assert!(c.validate().unwrap_err().to_string().contains("stale_after_seconds"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// Store options (credentials, endpoint), over the environment's, as the registry takes
    /// them; unknown keys are refused.
    pub options: BTreeMap<String, String>,
    /// The deadline of each store call (default 30 s).
    pub timeout_seconds: f64,
    /// How often a worker running a trial writes a heartbeat (default 10 s).
    pub heartbeat_seconds: f64,
    /// A running trial with no heartbeat, report or start for this long is failed by the next
    /// worker that asks, and its parameters are enqueued again (default 60 s; at least twice
    /// `heartbeat_seconds`). Workers' clocks must agree to well within it.
    pub stale_after_seconds: f64,
    /// How many times the point of a trial presumed dead is enqueued again (default 2; a
    /// point that kills its workers is not retried for ever).
    pub max_retries: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            options: BTreeMap::new(),
            timeout_seconds: 30.0,
            heartbeat_seconds: 10.0,
            stale_after_seconds: 60.0,
            max_retries: 2,
        }
    }
}

impl JournalConfig {
    /// Checks the durations.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("JournalConfig.timeout_seconds", self.timeout_seconds),
            ("JournalConfig.heartbeat_seconds", self.heartbeat_seconds),
            (
                "JournalConfig.stale_after_seconds",
                self.stale_after_seconds,
            ),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0 * 365.0) {
                return Err(Error::invalid(
                    field,
                    v,
                    "a number of seconds in (0, 31536000]",
                ));
            }
        }
        if self.stale_after_seconds < 2.0 * self.heartbeat_seconds {
            return Err(Error::invalid(
                "JournalConfig.stale_after_seconds",
                self.stale_after_seconds,
                format!(
                    "at least twice heartbeat_seconds ({}), so that a live trial is never \
                     failed between two heartbeats",
                    self.heartbeat_seconds
                ),
            ));
        }
        Ok(())
    }
}

/// Optuna's `TrialState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OState {
    Running,
    Complete,
    Pruned,
    Fail,
    Waiting,
}

impl OState {
    fn from_code(c: i64) -> Option<Self> {
        Some(match c {
            0 => OState::Running,
            1 => OState::Complete,
            2 => OState::Pruned,
            3 => OState::Fail,
            4 => OState::Waiting,
            _ => return None,
        })
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            OState::Running => 0,
            OState::Complete => 1,
            OState::Pruned => 2,
            OState::Fail => 3,
            OState::Waiting => 4,
        }
    }

    pub(crate) fn is_finished(self) -> bool {
        matches!(self, OState::Complete | OState::Pruned | OState::Fail)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            OState::Running => "running",
            OState::Complete => "complete",
            OState::Pruned => "pruned",
            OState::Fail => "failed",
            OState::Waiting => "waiting",
        }
    }
}

/// One trial as the journal's operations left it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JTrial {
    pub number: u64,
    pub state: OState,
    pub params: Assignment,
    pub values: Option<Vec<f64>>,
    pub intermediate: BTreeMap<i64, f64>,
    pub start: Option<DateTime<Utc>>,
    pub complete: Option<DateTime<Utc>>,
    /// The latest start, heartbeat or report.
    pub last_life: Option<DateTime<Utc>>,
    /// The worker that created or popped it.
    pub owner: String,
    pub system_attrs: Map<String, Value>,
}

/// The study as the journal's operations left it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JStudy {
    pub name: String,
    pub directions: Vec<i64>,
    pub system_attrs: Map<String, Value>,
}

/// The state replayed from the journal, with Optuna's rules: an update to a finished trial is
/// ignored, and so is a pop (`RUNNING`) of a trial already running.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Replay {
    pub study: Option<JStudy>,
    pub trials: Vec<JTrial>,
}

fn field<'a>(o: &'a Map<String, Value>, key: &str) -> std::result::Result<&'a Value, String> {
    o.get(key).ok_or_else(|| format!("no `{key}`"))
}

fn int_field(o: &Map<String, Value>, key: &str) -> std::result::Result<i64, String> {
    field(o, key)?
        .as_i64()
        .ok_or_else(|| format!("`{key}` = {}: expected an integer", o[key]))
}

fn time_field(
    o: &Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<DateTime<Utc>>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s).map(Some),
        Some(other) => Err(format!("`{key}` = {other} is not a time")),
    }
}

fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))
}

/// A time as Optuna writes it (`2026-12-07T00:07:17.320784+00:00`).
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn one_attr(o: &Map<String, Value>, key: &str) -> std::result::Result<Map<String, Value>, String> {
    match field(o, key)? {
        Value::Object(m) if m.len() == 1 => Ok(m.clone()),
        other => Err(format!(
            "`{key}` = {other} is not an object of one attribute"
        )),
    }
}

/// Optuna's `distribution_to_json` of `d` (a JSON text, as Optuna stores it).
pub(crate) fn distribution_json(d: &Distribution) -> String {
    let v = match d {
        Distribution::Uniform { low, high } => json!({"name": "FloatDistribution",
            "attributes": {"step": null, "low": low, "high": high, "log": false}}),
        Distribution::LogUniform { low, high } => json!({"name": "FloatDistribution",
            "attributes": {"step": null, "low": low, "high": high, "log": true}}),
        Distribution::Int { low, high, log } => json!({"name": "IntDistribution",
            "attributes": {"log": log, "step": 1, "low": low, "high": high}}),
        Distribution::Categorical { choices } => json!({"name": "CategoricalDistribution",
            "attributes": {"choices": choices}}),
    };
    v.to_string()
}

/// Reads Optuna's `distribution_to_json` text back into a distribution this crate samples.
pub(crate) fn distribution_from_json(text: &str) -> std::result::Result<Distribution, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("distribution {text}: {e}"))?;
    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
    let a = v
        .get("attributes")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("distribution {text}: no attributes"))?;
    let f = |k: &str| a.get(k).and_then(Value::as_f64);
    let i = |k: &str| a.get(k).and_then(Value::as_i64);
    let log = a.get("log").and_then(Value::as_bool).unwrap_or(false);
    let unsupported = || {
        format!("distribution {text}: not one this crate samples (a FloatDistribution without step, an IntDistribution of step 1, or a CategoricalDistribution of strings)")
    };
    match name {
        "FloatDistribution" if a.get("step").is_none_or(Value::is_null) => {
            let (Some(low), Some(high)) = (f("low"), f("high")) else {
                return Err(unsupported());
            };
            Ok(if log {
                Distribution::LogUniform { low, high }
            } else {
                Distribution::Uniform { low, high }
            })
        }
        "IntDistribution" if i("step") == Some(1) => {
            let (Some(low), Some(high)) = (i("low"), i("high")) else {
                return Err(unsupported());
            };
            Ok(Distribution::Int { low, high, log })
        }
        "CategoricalDistribution" => {
            let choices = a
                .get("choices")
                .and_then(Value::as_array)
                .ok_or_else(unsupported)?
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(unsupported)?;
            Ok(Distribution::Categorical { choices })
        }
        _ => Err(unsupported()),
    }
}

/// Optuna's internal representation of `v` under `d` (a float; a choice's index).
pub(crate) fn internal_value(d: &Distribution, v: &ParamValue) -> Option<f64> {
    match (d, v) {
        (Distribution::Categorical { choices }, ParamValue::Choice(c)) => {
            choices.iter().position(|x| x == c).map(|i| i as f64)
        }
        (Distribution::Categorical { .. }, _) => None,
        (Distribution::Int { .. }, ParamValue::Int(i)) => Some(*i as f64),
        (Distribution::Int { .. }, _) => None,
        (_, ParamValue::Float(f)) => Some(*f),
        (_, ParamValue::Int(i)) => Some(*i as f64),
        (_, ParamValue::Choice(_)) => None,
    }
}

/// The value whose internal representation under `d` is `x`.
pub(crate) fn external_value(d: &Distribution, x: f64) -> std::result::Result<ParamValue, String> {
    match d {
        Distribution::Categorical { choices } => {
            let i = x as usize;
            if x.fract() != 0.0 || x < 0.0 || i >= choices.len() {
                return Err(format!("choice index {x} out of 0..{}", choices.len()));
            }
            Ok(ParamValue::Choice(choices[i].clone()))
        }
        Distribution::Int { .. } => {
            // Beyond ±2^63 `as i64` would saturate: a different number, silently.
            if x.fract() != 0.0 || !x.is_finite() || x.abs() >= 2_f64.powi(63) {
                return Err(format!("{x} is not an integer of 64 bits"));
            }
            Ok(ParamValue::Int(x as i64))
        }
        _ => Ok(ParamValue::Float(x)),
    }
}

/// An enqueued trial's parameters as Optuna's `fixed_params` holds them (external values).
pub(crate) fn fixed_params_json(params: &Assignment) -> Value {
    let mut m = Map::new();
    for (k, v) in params {
        m.insert(
            k.clone(),
            match v {
                ParamValue::Int(i) => json!(i),
                ParamValue::Float(f) => json!(f),
                ParamValue::Choice(c) => json!(c),
            },
        );
    }
    Value::Object(m)
}

/// Reads `fixed_params` back under the search space's distributions.
pub(crate) fn fixed_params_from(
    space: &SearchSpace,
    v: &Value,
) -> std::result::Result<Assignment, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("fixed_params = {v} is not an object"))?;
    let mut out = Assignment::new();
    for (k, x) in m {
        let p = space
            .params()
            .iter()
            .find(|p| &p.name == k)
            .ok_or_else(|| format!("fixed parameter `{k}` is not in the search space"))?;
        let value = match (&p.distribution, x) {
            (Distribution::Categorical { .. }, Value::String(s)) => ParamValue::Choice(s.clone()),
            (Distribution::Int { .. }, x) if x.as_i64().is_some() => {
                ParamValue::Int(x.as_i64().unwrap_or_default())
            }
            (Distribution::Uniform { .. } | Distribution::LogUniform { .. }, x)
                if x.as_f64().is_some() =>
            {
                ParamValue::Float(x.as_f64().unwrap_or_default())
            }
            _ => {
                return Err(format!(
                    "fixed parameter `{k}` = {x} does not fit its distribution"
                ))
            }
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

impl Replay {
    /// Trial `number`, if the journal holds it.
    pub(crate) fn trial(&self, number: u64) -> Option<&JTrial> {
        usize::try_from(number)
            .ok()
            .and_then(|i| self.trials.get(i))
    }

    /// Applies one operation; an error says what is wrong with it.
    pub(crate) fn apply(&mut self, log: &Value) -> std::result::Result<(), String> {
        let o = log.as_object().ok_or("not a JSON object")?;
        let code = int_field(o, "op_code")?;
        let worker = o
            .get("worker_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match code {
            op::CREATE_STUDY => {
                if self.study.is_none() {
                    let name = field(o, "study_name")?
                        .as_str()
                        .ok_or("`study_name` is not a string")?
                        .to_string();
                    let directions = field(o, "directions")?
                        .as_array()
                        .ok_or("`directions` is not a list")?
                        .iter()
                        .map(|d| d.as_i64().ok_or("a direction is not an integer"))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    self.study = Some(JStudy {
                        name,
                        directions,
                        system_attrs: Map::new(),
                    });
                }
                // A second study in one journal: this crate's journals hold one, and Optuna
                // refuses a duplicate name; a later study is not this one.
            }
            op::SET_STUDY_USER_ATTR | op::SET_STUDY_SYSTEM_ATTR => {
                let key = if code == op::SET_STUDY_USER_ATTR {
                    "user_attr"
                } else {
                    "system_attr"
                };
                let attr = one_attr(o, key)?;
                if int_field(o, "study_id")? == 0 && code == op::SET_STUDY_SYSTEM_ATTR {
                    if let Some(s) = &mut self.study {
                        s.system_attrs.extend(attr);
                    }
                }
            }
            op::CREATE_TRIAL => {
                let study = int_field(o, "study_id")?;
                if study != 0 || self.study.is_none() {
                    // Optuna numbers trial ids across every study of a journal; this crate's
                    // journals hold one, so a trial of another would shift every later id.
                    return Err(format!(
                        "CREATE_TRIAL for study_id {study}: expected study 0, created by the \
                         journal's first entry (a journal holds one study)"
                    ));
                }
                let state = match o.get("state") {
                    None => OState::Running,
                    Some(s) => s
                        .as_i64()
                        .and_then(OState::from_code)
                        .ok_or_else(|| format!("`state` = {s} is not a trial state"))?,
                };
                let mut params = Assignment::new();
                if let Some(p) = o.get("params").and_then(Value::as_object) {
                    let dists = o
                        .get("distributions")
                        .and_then(Value::as_object)
                        .ok_or("`params` without `distributions`")?;
                    for (k, x) in p {
                        let d = dists
                            .get(k)
                            .and_then(Value::as_str)
                            .ok_or_else(|| format!("no distribution for parameter `{k}`"))?;
                        let d = distribution_from_json(d)?;
                        let x = x.as_f64().ok_or_else(|| format!("parameter `{k}` = {x}"))?;
                        params.insert(k.clone(), external_value(&d, x)?);
                    }
                }
                let start = time_field(o, "datetime_start")?;
                let intermediate = match o.get("intermediate_values").and_then(Value::as_object) {
                    Some(m) => m
                        .iter()
                        .map(|(k, v)| match (k.parse::<i64>(), v.as_f64()) {
                            (Ok(s), Some(v)) => Ok((s, v)),
                            _ => Err(format!("intermediate value {k}: {v}")),
                        })
                        .collect::<std::result::Result<_, _>>()?,
                    None => BTreeMap::new(),
                };
                let values = match o.get("values") {
                    Some(Value::Array(a)) => Some(
                        a.iter()
                            .map(|v| v.as_f64().ok_or(format!("value {v}: expected a number")))
                            .collect::<std::result::Result<Vec<_>, _>>()?,
                    ),
                    _ => o.get("value").and_then(Value::as_f64).map(|v| vec![v]),
                };
                self.trials.push(JTrial {
                    number: self.trials.len() as u64,
                    state,
                    params,
                    values,
                    intermediate,
                    start,
                    complete: time_field(o, "datetime_complete")?,
                    last_life: start,
                    owner: worker,
                    system_attrs: o
                        .get("system_attrs")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                });
            }
            op::SET_TRIAL_PARAM
            | op::SET_TRIAL_STATE_VALUES
            | op::SET_TRIAL_INTERMEDIATE_VALUE
            | op::SET_TRIAL_USER_ATTR
            | op::SET_TRIAL_SYSTEM_ATTR => {
                let id = int_field(o, "trial_id")?;
                let Some(t) = usize::try_from(id)
                    .ok()
                    .and_then(|i| self.trials.get_mut(i))
                else {
                    return Ok(());
                };
                if t.state.is_finished() {
                    return Ok(());
                }
                match code {
                    op::SET_TRIAL_PARAM => {
                        let name = field(o, "param_name")?
                            .as_str()
                            .ok_or("`param_name` is not a string")?;
                        let d = distribution_from_json(
                            field(o, "distribution")?
                                .as_str()
                                .ok_or("`distribution` is not a string")?,
                        )?;
                        let x = field(o, "param_value_internal")?
                            .as_f64()
                            .ok_or("`param_value_internal` is not a number")?;
                        t.params.insert(name.to_string(), external_value(&d, x)?);
                    }
                    op::SET_TRIAL_STATE_VALUES => {
                        let s = field(o, "state")?;
                        let state = s
                            .as_i64()
                            .and_then(OState::from_code)
                            .ok_or_else(|| format!("`state` = {s} is not a trial state"))?;
                        if state == OState::Running {
                            if t.state == OState::Running {
                                return Ok(());
                            }
                            t.start = time_field(o, "datetime_start")?;
                            t.last_life = t.start;
                            t.owner = worker;
                        }
                        if state.is_finished() {
                            t.complete = time_field(o, "datetime_complete")?;
                        }
                        t.state = state;
                        if let Some(Value::Array(a)) = o.get("values") {
                            t.values = Some(
                                a.iter()
                                    .map(|v| {
                                        v.as_f64().ok_or(format!("value {v}: expected a number"))
                                    })
                                    .collect::<std::result::Result<Vec<_>, _>>()?,
                            );
                        }
                    }
                    op::SET_TRIAL_INTERMEDIATE_VALUE => {
                        let step = int_field(o, "step")?;
                        let v = field(o, "intermediate_value")?
                            .as_f64()
                            .ok_or("`intermediate_value` is not a number")?;
                        t.intermediate.insert(step, v);
                    }
                    op::SET_TRIAL_USER_ATTR => {
                        one_attr(o, "user_attr")?;
                    }
                    _ => {
                        let attr = one_attr(o, "system_attr")?;
                        // A heartbeat that is not a time (another tool's attribute of that
                        // name) is no sign of life, and no reason to refuse the journal.
                        if let Some(Value::String(s)) = attr.get(HEARTBEAT_ATTR) {
                            if let Ok(beat) = parse_time(s) {
                                t.last_life = t.last_life.max(Some(beat));
                            }
                        }
                        t.system_attrs.extend(attr);
                    }
                }
            }
            other => {
                return Err(format!(
                    "op_code {other} is not one a study journal of this crate holds (0, 2-9)"
                ))
            }
        }
        Ok(())
    }
}

/// The numbered entries of a study journal on an object store, and the state they replay to.
pub(crate) struct Journal {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    location: String,
    timeout: Duration,
    /// Entries applied (1..=read).
    read: u64,
    /// Why the replay cannot be trusted (an entry that failed half-way).
    poisoned: Option<String>,
    pub replay: Replay,
    pub worker: String,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("location", &self.location)
            .field("read", &self.read)
            .field("worker", &self.worker)
            .finish()
    }
}

fn worker_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!(
        "mlops-{}-{:016x}-{:016x}",
        std::process::id(),
        rng.random::<u64>(),
        rng.random::<u64>()
    )
}

impl Journal {
    pub(crate) fn open(location: &str, config: &JournalConfig) -> Result<Self> {
        config.validate()?;
        let timeout = Duration::from_secs_f64(config.timeout_seconds);
        let opened =
            mlops_core::store_url::open_url("study journal URL", location, &config.options)?;
        Ok(Journal {
            dir: opened.prefix.clone().join("journal"),
            store: opened.store,
            location: opened.name,
            timeout,
            read: 0,
            poisoned: None,
            replay: Replay::default(),
            worker: worker_id(),
        })
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Journal {
            location: self.location.clone(),
            message: message.into(),
        }
    }

    fn entry(&self, n: u64) -> Path {
        self.dir.clone().join(format!("{n:020}.jsonl").as_str())
    }

    /// Reads entries `from..from + count`, concurrently; `None` where one does not exist.
    fn read_entries(&self, from: u64, count: u64) -> Result<Vec<Option<Vec<u8>>>> {
        let reads = (from..from + count).map(|n| {
            let (store, path) = (self.store.clone(), self.entry(n));
            async move {
                match store.get(&path).await {
                    Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        });
        let all = futures::future::join_all(reads);
        let timeout = self.timeout;
        let got = mlops_core::runtime::block_on(mlops_core::runtime::with_timeout(timeout, all))?
            .ok_or_else(|| {
            self.err(format!(
                "reading entries {from}.. had no answer within {timeout:?} \
                     (JournalConfig.timeout_seconds)"
            ))
        })?;
        got.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.map_err(|e| self.err(format!("reading entry {}: {e}", from + i as u64)))
            })
            .collect()
    }

    /// Parses one entry's operations.
    fn parse_entry(&self, n: u64, bytes: &[u8]) -> Result<Vec<Value>> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| self.err(format!("entry {n} is not UTF-8 ({e})")))?;
        if !text.ends_with('\n') {
            return Err(self.err(format!(
                "entry {n} does not end with a newline (not written by a journal writer)"
            )));
        }
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    self.err(format!(
                        "entry {n}, line {}: not a JSON operation ({e})",
                        i + 1
                    ))
                })
            })
            .collect()
    }

    /// Applies entry `n`. An entry that fails half-way leaves the replay half-applied, so the
    /// journal refuses every later call with the same error.
    fn apply_entry(&mut self, n: u64, ops: &[Value]) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(self.err(e.clone()));
        }
        for (i, o) in ops.iter().enumerate() {
            if let Err(e) = self.replay.apply(o) {
                let message = format!("entry {n}, line {}: {e}", i + 1);
                self.poisoned = Some(message.clone());
                return Err(self.err(message));
            }
        }
        self.read = n;
        Ok(())
    }

    /// Reads and applies every entry written since the last read.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(self.err(e.clone()));
        }
        // One read first (most calls find nothing new, or one entry), then batches.
        let mut size = 1;
        loop {
            let from = self.read + 1;
            let batch = self.read_entries(from, size)?;
            size = READ_BATCH;
            let mut all_there = true;
            for (i, entry) in batch.into_iter().enumerate() {
                let n = from + i as u64;
                let Some(bytes) = entry else {
                    all_there = false;
                    break;
                };
                let ops = self.parse_entry(n, &bytes)?;
                self.apply_entry(n, &ops)?;
            }
            if !all_there {
                return Ok(());
            }
        }
    }

    /// Writes `ops` as the next entry if no other writer took its number since the last
    /// read: `Ok(true)` when written (and applied), `Ok(false)` when another writer won (read
    /// it with [`Journal::sync`] and decide again).
    pub(crate) fn append_once(&mut self, ops: &[Value]) -> Result<bool> {
        let n = self.read + 1;
        let mut text = String::new();
        for o in ops {
            text.push_str(&o.to_string());
            text.push('\n');
        }
        let (store, path) = (self.store.clone(), self.entry(n));
        let put = async move {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            store
                .put_opts(&path, PutPayload::from(text.into_bytes()), opts)
                .await
        };
        let timeout = self.timeout;
        let outcome =
            mlops_core::runtime::block_on(mlops_core::runtime::with_timeout(timeout, put))?
                .ok_or_else(|| {
                    self.err(format!(
                        "writing entry {n} had no answer within {timeout:?} \
                     (JournalConfig.timeout_seconds); it may have been written, and is read \
                     back on the next call"
                    ))
                })?;
        match outcome {
            Ok(_) => {
                self.apply_entry(n, ops)?;
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(self.err(
                "this store has no conditional create (PutMode::Create), which a shared \
                 journal needs so that two workers never take one entry number"
                    .to_string(),
            )),
            Err(e) => Err(self.err(format!("writing entry {n}: {e}"))),
        }
    }

    /// An operation of this worker, stamped with its code and worker id.
    pub(crate) fn op(&self, code: i64, fields: Value) -> Value {
        let mut m = Map::new();
        m.insert("op_code".into(), json!(code));
        m.insert("worker_id".into(), json!(self.worker));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        Value::Object(m)
    }

    /// Writes every entry, in order, to `out` as one Optuna `JournalFileBackend` file; returns
    /// the number of operations written.
    pub(crate) fn export(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut lines = 0u64;
        let mut from = 1;
        loop {
            let batch = self.read_entries(from, READ_BATCH)?;
            for (i, entry) in batch.into_iter().enumerate() {
                let n = from + i as u64;
                let Some(bytes) = entry else {
                    return Ok(lines);
                };
                let ops = self.parse_entry(n, &bytes)?;
                for o in &ops {
                    // Optuna writes compact JSON, one operation a line.
                    writeln!(out, "{o}").map_err(|e| self.err(format!("export: {e}")))?;
                    lines += 1;
                }
            }
            from += READ_BATCH;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_round_trip_through_optunas_json() {
        for d in [
            Distribution::Uniform {
                low: -1.0,
                high: 2.5,
            },
            Distribution::LogUniform {
                low: 1e-4,
                high: 0.1,
            },
            Distribution::Int {
                low: 1,
                high: 8,
                log: true,
            },
            Distribution::Categorical {
                choices: vec!["a".into(), "b".into()],
            },
        ] {
            assert_eq!(distribution_from_json(&distribution_json(&d)).unwrap(), d);
        }
        let stepped = r#"{"name": "FloatDistribution", "attributes": {"step": 0.5, "low": 0, "high": 1, "log": false}}"#;
        assert!(distribution_from_json(stepped)
            .unwrap_err()
            .contains("not one this crate samples"));
    }

    #[test]
    fn updates_to_a_finished_trial_and_a_second_pop_are_ignored_as_optuna_does() {
        let mut r = Replay::default();
        let ops = [
            json!({"op_code": 0, "worker_id": "a", "study_name": "s", "directions": [1]}),
            json!({"op_code": 4, "worker_id": "a", "study_id": 0, "datetime_start": null, "state": 4,
                   "system_attrs": {"fixed_params": {"x": 1.0}}}),
            json!({"op_code": 6, "worker_id": "a", "trial_id": 0, "state": 0, "values": null,
                   "datetime_start": "2026-12-07T00:00:00.000000+00:00"}),
            json!({"op_code": 6, "worker_id": "b", "trial_id": 0, "state": 0, "values": null,
                   "datetime_start": "2026-12-07T00:00:01.000000+00:00"}),
            json!({"op_code": 6, "worker_id": "c", "trial_id": 0, "state": 3, "values": null,
                   "datetime_complete": "2026-12-07T00:00:02.000000+00:00"}),
            json!({"op_code": 6, "worker_id": "a", "trial_id": 0, "state": 1, "values": [1.0],
                   "datetime_complete": "2026-12-07T00:00:03.000000+00:00"}),
        ];
        for o in &ops {
            r.apply(o).unwrap();
        }
        let t = &r.trials[0];
        assert_eq!(
            (t.state, t.owner.as_str(), t.values.clone()),
            (OState::Fail, "a", None)
        );
        assert!(r
            .apply(&json!({"op_code": 1, "worker_id": "a", "study_id": 0}))
            .unwrap_err()
            .contains("op_code 1"));
    }
}
