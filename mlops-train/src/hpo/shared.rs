//! One study run by many workers (threads, processes, machines) through a journal on an object
//! store ([`super::journal`]): [`Study::ask`] / [`Study::tell`] for an external scheduler,
//! [`Study::enqueue_trial`] for known-good points, and [`Study::optimize`] as a worker loop.
//!
//! Trial `n`'s parameters are drawn with the study's seed on stream `n` (the seed policy of a
//! single-process study), from the trials finished when it is asked for, with the running
//! ones as pending points (the constant liar of TPE and GP). A sampler that learns nothing
//! from results (random, grid, and TPE's start-up design) therefore draws exactly what a
//! single-process study draws.

use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::journal::{
    distribution_json, fixed_params_from, fixed_params_json, format_time, internal_value, op,
    JTrial, Journal, JournalConfig, OState, FAILED_TRIAL_ATTR, FAIL_REASON_ATTR, FINGERPRINT_ATTR,
    FIXED_PARAMS_ATTR, HEARTBEAT_ATTR,
};
use super::journal::{IDENTITY_ATTR, RETRY_HISTORY_ATTR, STALE_AFTER_ATTR};
use super::space::{Assignment, Distribution, ParamValue, SearchSpace};
use super::study::{panicked, Direction, StopReason, Study, Trial, TrialRecord, TrialState};
use crate::error::{Error, Result};

/// Conditional appends one call may lose to other writers before it gives up.
const MAX_ATTEMPTS: usize = 10_000;

/// The shared journal of a study and its timing.
pub(super) struct Shared {
    journal: Mutex<Journal>,
    /// A second handle for heartbeats, so that a beat is never held up behind another
    /// thread's slow append on the first.
    beats: Mutex<Journal>,
    /// Trials this process runs in [`Study::optimize`] now (alive whatever their heartbeats).
    running_here: Mutex<std::collections::BTreeSet<u64>>,
    config: JournalConfig,
    clock: Arc<dyn mlops_core::clock::Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.clock.now())
    }

    /// The journal. A thread that panicked holding it left it usable: a half-applied entry
    /// poisons the journal itself, which then refuses every call.
    fn lock(&self) -> Result<MutexGuard<'_, Journal>> {
        Ok(self.journal.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn running_here(&self) -> MutexGuard<'_, std::collections::BTreeSet<u64>> {
        self.running_here.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A trial handed out by [`Study::ask`].
#[derive(Debug, Clone, PartialEq)]
pub struct AskedTrial {
    /// Its number (unique and gap-free across every worker of the study).
    pub number: u64,
    /// Its parameters.
    pub params: Assignment,
    /// The failed trial whose parameters it repeats (a trial whose worker went silent).
    pub retry_of: Option<u64>,
}

/// What [`Study::ask`] says to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Run this trial, then [`Study::tell`] its outcome.
    Run(AskedTrial),
    /// Nothing to run now: the budget is taken by trials still running, which may yet fail
    /// and free a slot. Ask again later.
    Wait,
    /// The study is over.
    Stop(StopReason),
}

/// How a trial ended, told with [`Study::tell`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The objective's value (a non-finite one fails the trial, as in Optuna).
    Complete(f64),
    /// Stopped by the pruner.
    Pruned,
    /// The objective failed, and why.
    Failed(String),
}

fn record_of(t: &JTrial) -> Option<TrialRecord> {
    let state = match t.state {
        OState::Complete => TrialState::Complete,
        OState::Pruned => TrialState::Pruned,
        OState::Fail => TrialState::Failed,
        OState::Running | OState::Waiting => return None,
    };
    Some(TrialRecord {
        number: t.number,
        params: t.params.clone(),
        state,
        value: match state {
            TrialState::Complete => t.values.as_ref().and_then(|v| v.first().copied()),
            _ => None,
        },
        intermediate: t.intermediate.iter().map(|(s, v)| (*s, *v)).collect(),
        error: t
            .system_attrs
            .get(FAIL_REASON_ATTR)
            .and_then(Value::as_str)
            .map(str::to_string),
        seconds: match (t.start, t.complete) {
            (Some(a), Some(b)) => (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6,
            _ => 0.0,
        },
    })
}

fn not_running(t: Option<&JTrial>, number: u64, trials: usize) -> Error {
    match t {
        None => Error::TrialNotRunning {
            number,
            state: "missing".into(),
            detail: format!("the journal holds trials 0..{trials}"),
        },
        Some(t) => Error::TrialNotRunning {
            number,
            state: t.state.name().into(),
            detail: match t.system_attrs.get(FAIL_REASON_ATTR).and_then(Value::as_str) {
                Some(reason) => format!("{reason}; this result is not recorded"),
                None if t.state == OState::Waiting => {
                    "it is enqueued and no worker has asked for it yet".into()
                }
                None => "its outcome was told already; this one is not recorded".into(),
            },
        },
    }
}

/// Checks that `params` assigns exactly the active parameters of `space`, each within its
/// distribution.
pub(super) fn check_assignment(space: &SearchSpace, params: &Assignment) -> Result<()> {
    for name in params.keys() {
        if !space.params().iter().any(|p| &p.name == name) {
            return Err(Error::invalid(
                "enqueued trial parameter",
                name,
                "a parameter of the search space",
            ));
        }
    }
    for p in space.params() {
        let field = format!("enqueued trial parameter `{}`", p.name);
        let active = SearchSpace::is_active(p, params);
        let Some(v) = params.get(&p.name) else {
            if active {
                return Err(Error::invalid(
                    field,
                    "missing",
                    "a value (the parameter is active)",
                ));
            }
            continue;
        };
        if !active {
            return Err(Error::invalid(
                field,
                v,
                "no value: its condition is not met by the other parameters",
            ));
        }
        let fits = match (&p.distribution, v) {
            (Distribution::Uniform { low, high } | Distribution::LogUniform { low, high }, v) => v
                .as_f64()
                .is_some_and(|x| x.is_finite() && *low <= x && x <= *high),
            (Distribution::Int { low, high, .. }, ParamValue::Int(i)) => low <= i && i <= high,
            (Distribution::Categorical { choices }, ParamValue::Choice(c)) => choices.contains(c),
            _ => false,
        };
        if !fits {
            return Err(Error::invalid(
                field,
                v,
                format!("a value of its distribution {:?}", p.distribution),
            ));
        }
    }
    Ok(())
}

impl Study {
    /// Shares the study with every worker that opens the same journal `location` (a folder
    /// path, `file:///dir`, `s3://bucket/prefix`, `gs://...`, `az://...`, opened as the
    /// registry opens its URL). The first worker writes the study (its name, direction and
    /// fingerprint); a worker of another study (another search space, config, objective or
    /// identity) is refused. Trial budgets (`maxTrialCount`, `maxFailedTrialCount`) and
    /// `parallelTrialCount` (threads) are each worker's own. The journal is in Optuna's format ([`Study::export_optuna_journal`]).
    ///
    /// ```
    /// use mlops_train::hpo::{Ask, Direction, Distribution, JournalConfig, ObjectiveConfig, Outcome, Param, SearchSpace, Study, StudyConfig};
    ///
    /// let space = SearchSpace::new(vec![Param { name: "x".into(), distribution: Distribution::Uniform { low: -5.0, high: 5.0 }, condition: None }])?;
    /// let config = StudyConfig {
    ///     name: "quadratic".into(),
    ///     objective: ObjectiveConfig { direction: Direction::Minimize, goal: None, objective_metric_name: "loss".into() },
    ///     parallel_trial_count: 1, max_trial_count: 3, max_failed_trial_count: 0, seed: 1,
    ///     sampler: Default::default(), pruner: Default::default(),
    /// };
    /// let dir = tempfile::tempdir().unwrap();
    /// let url = dir.path().to_str().unwrap();
    /// let mut study = Study::new(config, space)?.with_shared_journal(url, &JournalConfig::default())?;
    /// while let Ask::Run(trial) = study.ask()? {
    ///     let x = trial.params["x"].as_f64().unwrap();
    ///     study.tell(trial.number, Outcome::Complete((x - 1.0).powi(2)))?;
    /// }
    /// assert_eq!(study.trials().len(), 3);
    /// # Ok::<(), mlops_train::Error>(())
    /// ```
    pub fn with_shared_journal(self, location: &str, config: &JournalConfig) -> Result<Self> {
        self.with_shared_journal_and_clock(
            location,
            config,
            Arc::new(mlops_core::clock::SystemClock),
        )
    }

    /// [`Study::with_shared_journal`] with the clock that stamps starts, heartbeats and ends
    /// and decides when a silent trial is stale.
    pub fn with_shared_journal_and_clock(
        mut self,
        location: &str,
        config: &JournalConfig,
        clock: Arc<dyn mlops_core::clock::Clock>,
    ) -> Result<Self> {
        if self.journal_path().is_some() || self.shared.is_some() {
            return Err(Error::invalid(
                "Study journal",
                location,
                "one journal: a local file (with_journal) or a shared one, not both",
            ));
        }
        let mut journal = Journal::open(location, config)?;
        let fingerprint = self.shared_fingerprint();
        for _ in 0..MAX_ATTEMPTS {
            journal.sync()?;
            if let Some(study) = &journal.replay.study {
                let found = study
                    .system_attrs
                    .get(FINGERPRINT_ATTR)
                    .and_then(Value::as_str);
                if found != Some(fingerprint.as_str()) {
                    let identity = study
                        .system_attrs
                        .get(IDENTITY_ATTR)
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    return Err(Error::Journal {
                        location: journal.location().to_string(),
                        message: format!(
                            "it belongs to another study (`{}`, fingerprint {}, identity `{identity}`), \
                             not this one (`{}`, fingerprint {fingerprint}, identity `{}`): the search \
                             space, config, objective or data differ; use another URL to start a new study",
                            study.name,
                            found.unwrap_or("none: not written by mlops"),
                            self.config.name,
                            self.identity
                        ),
                    });
                }
                break;
            }
            let direction = match self.config.objective.direction {
                Direction::Minimize => 1,
                Direction::Maximize => 2,
            };
            let attr = |k: &str, v: Value| {
                journal.op(
                    op::SET_STUDY_SYSTEM_ATTR,
                    json!({"study_id": 0, "system_attr": {k: v}}),
                )
            };
            let header = vec![
                journal.op(
                    op::CREATE_STUDY,
                    json!({"study_name": self.config.name, "directions": [direction]}),
                ),
                attr(FINGERPRINT_ATTR, json!(fingerprint)),
                attr(IDENTITY_ATTR, json!(self.identity)),
                attr(
                    "mlops:study",
                    json!({"config": self.config, "space": self.space}),
                ),
            ];
            journal.append_once(&header)?;
        }
        if journal.replay.study.is_none() {
            return Err(contention(&journal));
        }
        tracing::info!(
            journal = journal.location(),
            trials = journal.replay.trials.len(),
            "shared study joined"
        );
        self.shared = Some(Shared {
            beats: Mutex::new(Journal::open(location, config)?),
            journal: Mutex::new(journal),
            running_here: Mutex::new(Default::default()),
            config: config.clone(),
            clock,
        });
        self.cache_from_journal()?;
        Ok(self)
    }

    fn shared(&self) -> Result<&Shared> {
        self.shared.as_ref().ok_or_else(|| {
            Error::invalid(
                "Study",
                "a study without a shared journal",
                "a study opened with with_shared_journal (ask, tell and enqueue_trial share trials through it)",
            )
        })
    }

    /// Finished trials of the journal, as records.
    fn finished(journal: &Journal) -> Vec<TrialRecord> {
        journal.replay.trials.iter().filter_map(record_of).collect()
    }

    fn cache_from_journal(&mut self) -> Result<()> {
        let trials = Self::finished(&*self.shared()?.lock()?);
        self.trials = trials;
        Ok(())
    }

    /// Reads what other workers wrote since the last call, so that [`Study::trials`] and
    /// [`Study::best_trial`] are up to date.
    pub fn refresh(&mut self) -> Result<()> {
        self.shared()?.lock()?.sync()?;
        self.cache_from_journal()
    }

    /// The next thing to do: run a trial (an enqueued one first, then a new draw), wait for
    /// running trials, or stop. Before deciding, a running trial silent for longer than
    /// [`JournalConfig::stale_after_seconds`] is failed, and its parameters enqueued again.
    pub fn ask(&mut self) -> Result<Ask> {
        let ask = self.ask_shared()?;
        self.cache_from_journal()?;
        Ok(ask)
    }

    /// Records how trial `number` ended. A trial that is not running (told already, failed by
    /// another worker because it went silent, or never created) is an
    /// [`Error::TrialNotRunning`] and nothing is written.
    pub fn tell(&mut self, number: u64, outcome: Outcome) -> Result<TrialRecord> {
        let record = self.tell_shared(number, outcome)?;
        self.cache_from_journal()?;
        Ok(record)
    }

    /// Adds a trial with these parameters (checked against the search space) that the next
    /// [`Study::ask`] of any worker hands out before drawing new ones; returns its number.
    pub fn enqueue_trial(&mut self, params: Assignment) -> Result<u64> {
        check_assignment(&self.space, &params)?;
        let shared = self.shared()?;
        let mut j = shared.lock()?;
        for _ in 0..MAX_ATTEMPTS {
            j.sync()?;
            let number = j.replay.trials.len() as u64;
            let ops = [waiting_trial(&j, &params, None)];
            if j.append_once(&ops)? {
                drop(j);
                self.cache_from_journal()?;
                return Ok(number);
            }
        }
        Err(contention(&j))
    }

    /// Tells the study that trial `number` is still running (for a scheduler that runs trials
    /// outside [`Study::optimize`], which beats on its own every
    /// [`JournalConfig::heartbeat_seconds`]).
    pub fn heartbeat(&self, number: u64) -> Result<()> {
        let shared = self.shared()?;
        let mut beats = shared.beats.lock().unwrap_or_else(|e| e.into_inner());
        append_to_running(&mut beats, number, |j| {
            vec![beat_op(j, number, shared.now())]
        })
    }

    /// Writes the whole journal to `out` as one file of Optuna's `JournalFileBackend`
    /// (`optuna.load_study(study_name=..., storage=JournalStorage(JournalFileBackend(path)))`
    /// and `optuna-dashboard` read it); returns the number of operations.
    pub fn export_optuna_journal(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        self.shared()?.lock()?.export(out)
    }

    /// Trials running now (as of the last read), with the worker that runs each.
    pub fn running_trials(&self) -> Result<Vec<(u64, String)>> {
        let j = self.shared()?.lock()?;
        Ok(j.replay
            .trials
            .iter()
            .filter(|t| t.state == OState::Running)
            .map(|t| (t.number, t.owner.clone()))
            .collect())
    }

    fn ask_shared(&self) -> Result<Ask> {
        let shared = self.shared()?;
        let mut j = shared.lock()?;
        let micros = |s: f64| chrono::Duration::microseconds((s * 1e6).round() as i64);
        let own_stale_after = shared.config.stale_after_seconds;
        for _ in 0..MAX_ATTEMPTS {
            j.sync()?;
            let now = shared.now();
            let here = shared.running_here().clone();
            // A trial is stale after the longer of this worker's timeout and its own worker's
            // (recorded when it started), so that a worker asking with a short timeout does not
            // fail the live trials of workers that beat less often.
            let stale_after = |t: &JTrial| {
                let theirs = t
                    .system_attrs
                    .get(STALE_AFTER_ATTR)
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                own_stale_after.max(theirs)
            };
            let stale: Vec<&JTrial> = j
                .replay
                .trials
                .iter()
                .filter(|t| {
                    // A trial this process runs is alive, whatever its heartbeats.
                    t.state == OState::Running
                        && !here.contains(&t.number)
                        && t.last_life.is_none_or(|l| {
                            // A sign of life further in the future than the timeout is a
                            // clock off by more than it: not to be trusted for ever.
                            (now - l).abs() > micros(stale_after(t))
                        })
                })
                .collect();
            if !stale.is_empty() {
                let mut ops = Vec::new();
                let first_retry = j.replay.trials.len() as u64;
                let mut next = first_retry;
                for t in &stale {
                    let silent = t
                        .last_life
                        .map(|l| format!("{:.1} s", (now - l).num_milliseconds() as f64 / 1e3))
                        .unwrap_or_else(|| "ever".into());
                    // As Optuna's RetryFailedTrialCallback: `failed_trial` names the first
                    // trial of the chain, `retry_history` every one of it.
                    let root = t
                        .system_attrs
                        .get(FAILED_TRIAL_ATTR)
                        .and_then(Value::as_u64)
                        .unwrap_or(t.number);
                    let mut history: Vec<u64> = t
                        .system_attrs
                        .get(RETRY_HISTORY_ATTR)
                        .and_then(Value::as_array)
                        .map(|h| h.iter().filter_map(Value::as_u64).collect())
                        .unwrap_or_default();
                    history.push(t.number);
                    let retry = history.len() <= shared.config.max_retries;
                    let then = if retry {
                        format!("its parameters enqueued again as trial {next}")
                    } else {
                        format!(
                            "its parameters not enqueued again: tried {} times \
                             (JournalConfig.max_retries = {})",
                            history.len(),
                            shared.config.max_retries
                        )
                    };
                    let reason = format!(
                        "no heartbeat, report or start from worker {} for {silent} \
                         (stale after {} s): presumed dead, failed by worker {}, {then}",
                        t.owner,
                        stale_after(t),
                        j.worker
                    );
                    tracing::warn!(trial = t.number, %reason, "failing a stale trial");
                    ops.extend(fail_ops(&j, t.number, reason, now));
                    if retry {
                        ops.push(waiting_trial(&j, &t.params, Some((root, history))));
                        next += 1;
                    }
                }
                j.append_once(&ops)?;
                continue;
            }
            let records = Self::finished(&j);
            let failed = records
                .iter()
                .filter(|t| t.state == TrialState::Failed)
                .count();
            if failed > self.config.max_failed_trial_count {
                return Ok(Ask::Stop(StopReason::TooManyFailures));
            }
            if self.goal_reached_in(self.best_of(&records)) {
                return Ok(Ask::Stop(StopReason::GoalReached));
            }
            let running = j.replay.trials.iter().any(|t| t.state == OState::Running);
            if let Some(w) = j.replay.trials.iter().find(|t| t.state == OState::Waiting) {
                let number = w.number;
                let fixed = w
                    .system_attrs
                    .get(FIXED_PARAMS_ATTR)
                    .cloned()
                    .unwrap_or(json!({}));
                let checked = fixed_params_from(&self.space, &fixed).and_then(|p| {
                    check_assignment(&self.space, &p).map_err(|e| e.to_string())?;
                    Ok(p)
                });
                let params = match checked {
                    Ok(p) => p,
                    Err(e) => {
                        // A point no worker can run (written by another tool or version) is
                        // failed, naming why, instead of blocking every worker's ask.
                        let reason = format!("enqueued parameters {fixed} cannot run: {e}");
                        tracing::warn!(trial = number, %reason, "failing an enqueued trial");
                        let ops = fail_ops(&j, number, reason, now);
                        j.append_once(&ops)?;
                        continue;
                    }
                };
                let retry_of = w
                    .system_attrs
                    .get(FAILED_TRIAL_ATTR)
                    .and_then(Value::as_u64);
                let mut ops = vec![
                    j.op(
                        op::SET_TRIAL_STATE_VALUES,
                        json!({"trial_id": number, "state": OState::Running.code(), "values": null,
                               "datetime_start": format_time(now)}),
                    ),
                    j.op(
                        op::SET_TRIAL_SYSTEM_ATTR,
                        json!({"trial_id": number, "system_attr": {STALE_AFTER_ATTR: own_stale_after}}),
                    ),
                ];
                ops.extend(self.param_ops(&j, number, &params));
                if j.append_once(&ops)? {
                    return Ok(Ask::Run(AskedTrial {
                        number,
                        params,
                        retry_of,
                    }));
                }
                continue;
            }
            let live = j
                .replay
                .trials
                .iter()
                .filter(|t| t.state != OState::Fail)
                .count();
            if live >= self.config.max_trial_count {
                return Ok(if running {
                    Ask::Wait
                } else {
                    Ask::Stop(StopReason::MaxTrials)
                });
            }
            let number = j.replay.trials.len() as u64;
            // Trials drawn before this one (enqueued points and retries take numbers, not
            // grid points).
            let drawn = j
                .replay
                .trials
                .iter()
                .filter(|t| !t.system_attrs.contains_key(FIXED_PARAMS_ATTR))
                .count() as u64;
            let pending: Vec<Assignment> = j
                .replay
                .trials
                .iter()
                .filter(|t| t.state == OState::Running)
                .map(|t| t.params.clone())
                .collect();
            let Some(params) = self.draw_from(
                number,
                drawn,
                || self.observations(&records, u64::MAX),
                &pending,
            ) else {
                return Ok(if running {
                    Ask::Wait
                } else {
                    Ask::Stop(StopReason::GridExhausted)
                });
            };
            let mut internal = Map::new();
            let mut distributions = Map::new();
            for p in self.space.params() {
                if let Some(v) = params.get(&p.name) {
                    internal.insert(p.name.clone(), json!(internal_value(&p.distribution, v)));
                    distributions.insert(p.name.clone(), json!(distribution_json(&p.distribution)));
                }
            }
            let ops = [j.op(
                op::CREATE_TRIAL,
                json!({"study_id": 0, "datetime_start": format_time(now),
                       "state": OState::Running.code(), "value": null, "values": null,
                       "params": internal, "distributions": distributions,
                       "user_attrs": {}, "system_attrs": {STALE_AFTER_ATTR: own_stale_after},
                       "intermediate_values": {}}),
            )];
            if j.append_once(&ops)? {
                return Ok(Ask::Run(AskedTrial {
                    number,
                    params,
                    retry_of: None,
                }));
            }
        }
        Err(contention(&j))
    }

    fn param_ops(&self, j: &Journal, number: u64, params: &Assignment) -> Vec<Value> {
        self.space
            .params()
            .iter()
            .filter_map(|p| {
                let v = params.get(&p.name)?;
                Some(j.op(
                    op::SET_TRIAL_PARAM,
                    json!({"trial_id": number, "param_name": p.name,
                           "param_value_internal": internal_value(&p.distribution, v),
                           "distribution": distribution_json(&p.distribution)}),
                ))
            })
            .collect()
    }

    fn tell_shared(&self, number: u64, outcome: Outcome) -> Result<TrialRecord> {
        let shared = self.shared()?;
        let mut j = shared.lock()?;
        for _ in 0..MAX_ATTEMPTS {
            j.sync()?;
            let t = j.replay.trial(number);
            let Some(t) = t.filter(|t| t.state == OState::Running) else {
                return Err(not_running(t, number, j.replay.trials.len()));
            };
            let (state, values, reason) = match &outcome {
                Outcome::Complete(v) if v.is_finite() => (OState::Complete, json!([v]), None),
                Outcome::Complete(v) => (
                    OState::Fail,
                    Value::Null,
                    Some(format!("the objective returned {v}")),
                ),
                Outcome::Pruned => (
                    OState::Pruned,
                    t.intermediate
                        .last_key_value()
                        .map(|(_, v)| json!([v]))
                        .unwrap_or(Value::Null),
                    None,
                ),
                Outcome::Failed(r) => (OState::Fail, Value::Null, Some(r.clone())),
            };
            let now = shared.now();
            let ops: Vec<Value> = match reason {
                Some(reason) => fail_ops(&j, number, reason, now).into(),
                None => vec![j.op(
                    op::SET_TRIAL_STATE_VALUES,
                    json!({"trial_id": number, "state": state.code(), "values": values,
                           "datetime_complete": format_time(now)}),
                )],
            };
            if j.append_once(&ops)? {
                return j
                    .replay
                    .trial(number)
                    .and_then(record_of)
                    .ok_or_else(|| Error::Journal {
                        location: j.location().to_string(),
                        message: format!(
                            "trial {number} did not finish after its outcome was written"
                        ),
                    });
            }
        }
        Err(contention(&j))
    }

    /// Appends a report of trial `number`; returns whether the pruner stops it.
    pub(super) fn shared_report(&self, number: u64, step: i64, value: f64) -> Result<bool> {
        if !value.is_finite() {
            return Err(Error::invalid(
                format!("trial {number} report at step {step}"),
                value,
                "a finite number (a shared journal is JSON)",
            ));
        }
        let now = self.shared()?.now();
        // A report is a sign of life: it carries a heartbeat.
        let mut j = self.shared()?.lock()?;
        append_to_running(&mut j, number, |j| {
            vec![
                j.op(
                    op::SET_TRIAL_INTERMEDIATE_VALUE,
                    json!({"trial_id": number, "step": step, "intermediate_value": value}),
                ),
                beat_op(j, number, now),
            ]
        })?;
        let mine: Vec<(i64, f64)> = j
            .replay
            .trial(number)
            .map(|t| t.intermediate.iter().map(|(s, v)| (*s, *v)).collect())
            .unwrap_or_default();
        // Every finished trial (this one is running, so not among them).
        Ok(self.prunes(number, &mine, &Self::finished(&j)))
    }

    /// [`Study::optimize`] on a shared journal: `parallelTrialCount` threads each ask, run
    /// (beating every `heartbeat_seconds`) and tell until the study stops.
    pub(super) fn optimize_shared<F>(
        &mut self,
        objective: F,
        on_trial: &mut dyn FnMut(&TrialRecord),
    ) -> Result<StopReason>
    where
        F: Fn(&mut Trial<'_>) -> Result<f64> + Sync,
    {
        let threads = self.config.parallel_trial_count;
        let (tx, rx) = mpsc::channel::<TrialRecord>();
        let this = &*self;
        let ended: Vec<Result<StopReason>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (tx, objective) = (tx.clone(), &objective);
                    scope.spawn(move || this.shared_worker(objective, &tx))
                })
                .collect();
            drop(tx);
            for record in rx {
                on_trial(&record);
            }
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(panicked())))
                .collect()
        });
        self.refresh()?;
        let mut reason = None;
        for r in ended {
            let r = r?;
            reason.get_or_insert(r);
        }
        reason.ok_or_else(panicked)
    }

    fn shared_worker<F>(&self, objective: &F, tx: &mpsc::Sender<TrialRecord>) -> Result<StopReason>
    where
        F: Fn(&mut Trial<'_>) -> Result<f64> + Sync,
    {
        let beat = Duration::from_secs_f64(self.shared()?.config.heartbeat_seconds);
        loop {
            let trial = match self.ask_shared()? {
                Ask::Stop(r) => return Ok(r),
                Ask::Wait => {
                    std::thread::sleep(beat);
                    continue;
                }
                Ask::Run(t) => t,
            };
            let number = trial.number;
            let shared = self.shared()?;
            shared.running_here().insert(number);
            let told = self.run_and_tell(trial, objective, beat, tx);
            shared.running_here().remove(&number);
            if let Err(e) = told {
                // Best effort: a trial this worker gives up on is failed now, not after the
                // timeout.
                let _ =
                    self.tell_shared(number, Outcome::Failed(format!("its worker stopped: {e}")));
                return Err(e);
            }
        }
    }

    fn run_and_tell<F>(
        &self,
        trial: AskedTrial,
        objective: &F,
        beat: Duration,
        tx: &mpsc::Sender<TrialRecord>,
    ) -> Result<()>
    where
        F: Fn(&mut Trial<'_>) -> Result<f64> + Sync,
    {
        let number = trial.number;
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let ran = std::thread::scope(|scope| {
            scope.spawn(move || loop {
                match stop_rx.recv_timeout(beat) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.heartbeat(number) {
                            tracing::warn!(trial = number, error = %e, "heartbeat not written");
                            if matches!(e, Error::TrialNotRunning { .. }) {
                                return;
                            }
                        }
                    }
                    _ => return,
                }
            });
            let run = std::panic::AssertUnwindSafe(|| {
                self.run_trial(number, trial.params.clone(), &[], objective)
            });
            let ran = std::panic::catch_unwind(run);
            drop(stop_tx);
            ran
        });
        let (outcome, panic) = match &ran {
            Ok(r) => (
                match r.state {
                    TrialState::Complete => Outcome::Complete(r.value.unwrap_or(f64::NAN)),
                    TrialState::Pruned => Outcome::Pruned,
                    TrialState::Failed => {
                        Outcome::Failed(r.error.clone().unwrap_or_else(|| "failed".into()))
                    }
                },
                false,
            ),
            Err(_) => (Outcome::Failed("the objective panicked".into()), true),
        };
        match self.tell_shared(number, outcome) {
            Ok(record) => {
                // The receiver lives until every worker has returned.
                let _ = tx.send(record);
            }
            Err(e @ Error::TrialNotRunning { .. }) => {
                tracing::warn!(trial = number, error = %e, "result dropped: another worker failed the trial");
            }
            Err(e) => return Err(e),
        }
        if panic {
            return Err(panicked());
        }
        Ok(())
    }
}

/// Appends the operations `make` builds to trial `number` while it runs.
fn append_to_running(
    j: &mut Journal,
    number: u64,
    make: impl Fn(&Journal) -> Vec<Value>,
) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        j.sync()?;
        let t = j.replay.trial(number);
        if t.map(|t| t.state) != Some(OState::Running) {
            return Err(not_running(t, number, j.replay.trials.len()));
        }
        let ops = make(j);
        if j.append_once(&ops)? {
            return Ok(());
        }
    }
    Err(contention(j))
}

/// Trial `number` failed, and why (Optuna's `fail_reason`).
fn fail_ops(j: &Journal, number: u64, reason: String, now: DateTime<Utc>) -> [Value; 2] {
    [
        j.op(
            op::SET_TRIAL_SYSTEM_ATTR,
            json!({"trial_id": number, "system_attr": {FAIL_REASON_ATTR: reason}}),
        ),
        j.op(
            op::SET_TRIAL_STATE_VALUES,
            json!({"trial_id": number, "state": OState::Fail.code(), "values": null,
                   "datetime_complete": format_time(now)}),
        ),
    ]
}

fn beat_op(j: &Journal, number: u64, now: DateTime<Utc>) -> Value {
    j.op(
        op::SET_TRIAL_SYSTEM_ATTR,
        json!({"trial_id": number, "system_attr": {HEARTBEAT_ATTR: format_time(now)}}),
    )
}

/// An enqueued trial; a retry names the first trial of its chain and every trial of it.
fn waiting_trial(j: &Journal, params: &Assignment, retry_of: Option<(u64, Vec<u64>)>) -> Value {
    let mut system = Map::new();
    system.insert(FIXED_PARAMS_ATTR.into(), fixed_params_json(params));
    if let Some((root, history)) = retry_of {
        system.insert(FAILED_TRIAL_ATTR.into(), json!(root));
        system.insert(RETRY_HISTORY_ATTR.into(), json!(history));
    }
    j.op(
        op::CREATE_TRIAL,
        json!({"study_id": 0, "datetime_start": null, "state": OState::Waiting.code(),
               "value": null, "values": null, "distributions": {}, "params": {},
               "user_attrs": {}, "system_attrs": system, "intermediate_values": {}}),
    )
}

fn contention(j: &Journal) -> Error {
    Error::Journal {
        location: j.location().to_string(),
        message: format!(
            "lost {MAX_ATTEMPTS} conditional appends in a row to other writers; try again"
        ),
    }
}
