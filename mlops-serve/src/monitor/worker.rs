//! The monitor's thread: per model and version, the drift window and the label window, the
//! checks, the claim of a retrain request, and the live metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlops_core::metrics::Metric;
use mlops_drift::{ColumnStatus, DriftAction, DriftPolicy, DriftReport, WindowEstimate};

use super::config::CheckedLiveMonitorConfig;
use super::hook::Hook;
use super::ledger::{
    claim_retrain, Claimed, LogWindow, PredictionDrift, RequestSummary, RetrainRequest,
};
use super::metrics::VersionLabels;
use super::profiles::{Profiles, PREDICTION_COLUMN};
use super::window::{LabelWindow, RowWindow};
use super::{Message, MonitorParts, Statuses, VersionStatus};
use crate::step_stats::lock;
use crate::tap::{by_time, Entry, Taken, Tap};

/// How long the worker sleeps between drains of its tap and queue while rows come.
const POLL: Duration = Duration::from_millis(2);

/// How long the worker polls with nothing coming before it blocks.
const IDLE: Duration = Duration::from_millis(500);

enum ProfileState {
    /// Shared with each check (a check reads them while it updates the version's state).
    Loaded(Arc<Profiles>),
    Failed {
        at: Instant,
        error: String,
    },
}

struct VersionState {
    labels: VersionLabels,
    features: Arc<[String]>,
    window: RowWindow,
    since_check: usize,
    /// When its window was last compared (`min_check_seconds` apart at most once).
    last_check: Option<Instant>,
    profiles: Option<ProfileState>,
    labeled: LabelWindow,
    labels_since: usize,
    /// The sensitive groups whose series are shown.
    groups_shown: Vec<Arc<str>>,
    /// The model's row count when this version last scored a row.
    last_row: u64,
    status: VersionStatus,
}

#[derive(Default)]
struct ModelState {
    rows: u64,
    /// Rows taken since `mlops_monitor_rows_total` was last advanced (see [`PUBLISH_EVERY`]).
    unreported_rows: u64,
    versions: HashMap<Option<u64>, VersionState>,
}

/// How often the statuses and the row and window-size metrics are brought up to date while
/// rows come (besides at every check, every live-metrics step and every `sync`): not per
/// request, where their locks, label hashes and copies were a third of the thread's time.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Worker {
    pub(crate) config: CheckedLiveMonitorConfig,
    pub(crate) drift: mlops_drift::CheckedDriftConfig,
    pub(crate) policy: DriftPolicy,
    pub(crate) parts: MonitorParts,
    pub(crate) hook: Hook,
    pub(crate) status: Statuses,
    pub(crate) queued: Arc<std::sync::atomic::AtomicUsize>,
    tap: Arc<Tap>,
    /// Storage drained shards swap in.
    free: Vec<Taken>,
    /// Requests taken since the clock was last read (it is read every 64).
    since_publish: u32,
    models: HashMap<Arc<str>, ModelState>,
    published: Instant,
    /// Whether rows or labels came since the last [`Worker::publish_all`].
    unpublished: bool,
    /// The time as of the last clock read (every 64 requests, and at every idle poll).
    now: Instant,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn version_name(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

impl Worker {
    pub(crate) fn new(
        config: CheckedLiveMonitorConfig,
        parts: MonitorParts,
        hook: Hook,
        status: Statuses,
        queued: Arc<std::sync::atomic::AtomicUsize>,
        tap: Arc<Tap>,
    ) -> crate::Result<Self> {
        let drift = config.drift()?;
        let policy = DriftPolicy::new(config.policy, parts.clock.clone());
        Ok(Worker {
            config,
            drift,
            policy,
            parts,
            hook,
            status,
            queued,
            tap,
            free: Vec::new(),
            since_publish: 0,
            models: HashMap::new(),
            published: Instant::now(),
            unpublished: false,
            now: Instant::now(),
        })
    }

    /// The thread's loop, until `Close` or every sender is gone. While rows come it drains the
    /// tap and the queue without blocking and sleeps [`POLL`] between drains, so a request
    /// never has to wake it (a futex call and a context switch per request, as the prediction
    /// log's writer learned); after [`IDLE`] with nothing coming it blocks until the next
    /// message (labels, a sync, or the one recorder that finds it asleep).
    pub(crate) fn run(mut self, messages: Receiver<Message>) {
        let mut active = Instant::now();
        loop {
            let message = if active.elapsed() < IDLE {
                match messages.try_recv() {
                    Ok(message) => message,
                    Err(TryRecvError::Empty) => {
                        if self.take_tap() > 0 {
                            active = Instant::now();
                        }
                        self.now = Instant::now();
                        self.run_waiting_checks();
                        // A trickle of rows (fewer than 64 requests a publish) still shows.
                        if self.unpublished
                            && self.now.saturating_duration_since(self.published) >= PUBLISH_EVERY
                        {
                            self.publish_all();
                        }
                        std::thread::sleep(POLL);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                // Rows appended before the flag is set are read here; any after, wake it.
                self.tap.sleeping();
                if self.take_tap() > 0 {
                    self.tap.awake();
                    active = Instant::now();
                    continue;
                }
                // Idle: everything shown, then blocked until the next message or until a
                // check waiting for `min_check_seconds` is due (it runs without a new row).
                if self.unpublished {
                    self.publish_all();
                }
                let received = match self.next_waiting_check() {
                    Some(due) => {
                        messages.recv_timeout(due.saturating_duration_since(Instant::now()))
                    }
                    None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                self.tap.awake();
                match received {
                    Ok(message) => {
                        // After a wait the time last read is stale: a check would be timed
                        // from it.
                        self.now = Instant::now();
                        message
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.now = Instant::now();
                        self.run_waiting_checks();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            active = Instant::now();
            match message {
                Message::Wake => {
                    self.take_tap();
                }
                Message::Labeled(l) => {
                    // Their scored rows, recorded before them, come first.
                    self.take_tap();
                    let rows = l.labels.len();
                    self.labeled(l);
                    self.queued.fetch_sub(rows, Ordering::AcqRel);
                }
                Message::Sync(ack) => {
                    self.take_tap();
                    self.publish_all();
                    let _ = ack.send(());
                }
                Message::Close => {
                    // What was recorded before the close is monitored too.
                    self.take_tap();
                    break;
                }
            }
        }
        // Rows recorded before every sender went (a monitor dropped without `close`).
        self.take_tap();
        self.publish_all();
        self.hook.close();
    }

    /// Monitors the tap's scored rows, request by request; returns how many rows.
    fn take_tap(&mut self) -> usize {
        let tap = self.tap.clone();
        let mut filled = Vec::new();
        let rows = tap.drain_all(&mut self.free, &mut filled);
        // In the order recorded across threads (a request, then its shadow): whether another
        // version served within a window is read from that order.
        for e in by_time(&filled) {
            self.scored(&e);
            // The clock read every 64 requests, not per request.
            self.since_publish += 1;
            if self.since_publish.is_multiple_of(64) {
                self.now = Instant::now();
                if self.now.saturating_duration_since(self.published) >= PUBLISH_EVERY {
                    self.publish_all();
                }
            }
        }
        for mut taken in filled {
            taken.clear();
            self.free.push(taken);
        }
        self.queued.fetch_sub(rows, Ordering::AcqRel);
        rows
    }

    fn scored(&mut self, s: &Entry<'_>) {
        let config = &self.config;
        let metrics = &self.parts.metrics;
        self.unpublished = true;
        if !self.models.contains_key(&*s.run.model) {
            self.models
                .insert(s.run.model.clone(), ModelState::default());
        }
        let Some(model) = self.models.get_mut(&*s.run.model) else {
            return;
        };
        model.rows += s.predictions.len() as u64;
        model.unreported_rows += s.predictions.len() as u64;
        let now_row = model.rows;
        // The same names as before (by pointer: a request's names are its slot's), or equal.
        let fresh = model.versions.get(&s.run.version).is_none_or(|v| {
            !Arc::ptr_eq(&v.features, &s.run.features) && v.features != s.run.features
        });
        if fresh {
            if let Some(old) = model.versions.remove(&s.run.version) {
                // The version's features changed (a reload under the same number): start over.
                metrics.forget(&old.labels, &old.features);
                metrics.forget_groups(&old.labels, &old.groups_shown);
            }
            if model.versions.len() >= config.max_versions {
                if let Some(oldest) = model
                    .versions
                    .iter()
                    .min_by_key(|(_, v)| v.last_row)
                    .map(|(k, _)| *k)
                {
                    if let Some(gone) = model.versions.remove(&oldest) {
                        metrics.forget(&gone.labels, &gone.features);
                        metrics.forget_groups(&gone.labels, &gone.groups_shown);
                        lock(&self.status).remove(&(s.run.model.to_string(), oldest));
                    }
                }
            }
            let labels = VersionLabels {
                model: s.run.model.to_string(),
                version: version_name(s.run.version),
            };
            metrics.verdict(&labels, "unknown");
            model.versions.insert(
                s.run.version,
                VersionState {
                    labels,
                    features: s.run.features.clone(),
                    window: RowWindow::new(s.run.features.len(), config.window_rows),
                    since_check: 0,
                    last_check: None,
                    profiles: None,
                    labeled: LabelWindow::new(config.label_window_rows),
                    groups_shown: Vec::new(),
                    labels_since: 0,
                    last_row: now_row,
                    status: VersionStatus {
                        model: s.run.model.to_string(),
                        version: s.run.version,
                        verdict: "unknown".into(),
                        ..VersionStatus::default()
                    },
                },
            );
        }
        let n_features = s.run.features.len();
        let Some(state) = model.versions.get_mut(&s.run.version) else {
            return;
        };
        state.last_row = now_row;
        let rows = s.predictions.len();
        if n_features == 0 || s.x.len() != rows * n_features {
            return;
        }
        let x = match ndarray::ArrayView2::from_shape((rows, n_features), s.x) {
            Ok(x) => x,
            Err(_) => return,
        };
        state.window.push_rows(x, s.predictions, s.time_us);
        state.since_check += rows;
        state.status.window_rows = state.window.len();
        // Looked up again only when a check is due (not per request).
        if Self::due(config, state, self.now) {
            self.check_if_due(&s.run.model, s.run.version);
        }
    }

    /// Whether `state`'s window is full, `step_rows` rows came since its last check, and
    /// `min_check_seconds` have passed (as of `now`).
    fn due(config: &CheckedLiveMonitorConfig, state: &VersionState, now: Instant) -> bool {
        state.window.len() >= config.window_rows
            && state.since_check >= config.step()
            && state
                .last_check
                .is_none_or(|t| now.saturating_duration_since(t) >= config.min_check_interval())
    }

    /// Checks `version` of `model` if it is due (see [`Worker::due`]).
    fn check_if_due(&mut self, model_name: &Arc<str>, version: Option<u64>) {
        let config = &self.config;
        let now = self.now;
        let Some(model) = self.models.get_mut(model_name) else {
            return;
        };
        let now_row = model.rows;
        let Some(state) = model.versions.get_mut(&version) else {
            return;
        };
        if !Self::due(config, state, now) {
            return;
        }
        self.parts.metrics.window(&state.labels, state.window.len());
        state.since_check = 0;
        state.last_check = Some(now);
        // A rollout runs when another version of the model scored within the window.
        let others_serving: Vec<String> = model
            .versions
            .iter()
            .filter(|(v, other)| {
                **v != version && other.last_row + config.window_rows as u64 > now_row
            })
            .map(|(v, _)| version_name(*v))
            .collect();
        self.check(model_name, version, others_serving);
        self.publish(model_name, version);
    }

    /// When the earliest check that waits only for `min_check_seconds` is due, if any.
    fn next_waiting_check(&self) -> Option<Instant> {
        let interval = self.config.min_check_interval();
        self.models
            .values()
            .flat_map(|m| m.versions.values())
            .filter(|s| {
                s.window.len() >= self.config.window_rows && s.since_check >= self.config.step()
            })
            .map(|s| s.last_check.map_or(self.now, |t| t + interval))
            .min()
    }

    /// Runs the checks that became due while no rows came.
    fn run_waiting_checks(&mut self) {
        if self.next_waiting_check().is_none_or(|due| due > self.now) {
            return;
        }
        let due: Vec<(Arc<str>, Option<u64>)> = self
            .models
            .iter()
            .flat_map(|(name, m)| m.versions.keys().map(move |v| (name.clone(), *v)))
            .collect();
        for (model, version) in due {
            self.check_if_due(&model, version);
        }
    }

    fn load_profiles(&self, model: &str, state: &mut VersionState) {
        let retry_due = match &state.profiles {
            None => true,
            Some(ProfileState::Loaded(_)) => false,
            Some(ProfileState::Failed { at, .. }) => at.elapsed() >= self.config.profile_retry(),
        };
        if !retry_due {
            return;
        }
        let Some(version) = state.status.version else {
            state.profiles = Some(ProfileState::Loaded(Arc::default()));
            return;
        };
        state.profiles = Some(match block(self.parts.profiles.profiles(model, version)) {
            Ok(p) => {
                if p.features.is_none() {
                    tracing::warn!(
                        model,
                        version,
                        "version has no reference profile: its drift is unknown"
                    );
                }
                ProfileState::Loaded(Arc::new(p))
            }
            Err(e) => {
                tracing::warn!(model, version, error = %e, "reference profiles not loaded: drift unknown until a retry succeeds");
                ProfileState::Failed {
                    at: Instant::now(),
                    error: e.to_string(),
                }
            }
        });
    }

    fn check(&mut self, model_name: &Arc<str>, version: Option<u64>, others: Vec<String>) {
        let Some(mut state) = self
            .models
            .get_mut(model_name)
            .and_then(|m| m.versions.remove(&version))
        else {
            return;
        };
        self.load_profiles(model_name, &mut state);
        self.check_version(model_name, &mut state, others);
        if let Some(m) = self.models.get_mut(model_name) {
            m.versions.insert(version, state);
        }
    }

    fn check_version(&self, model: &str, state: &mut VersionState, others: Vec<String>) {
        let metrics = &self.parts.metrics;
        let unknown = |state: &mut VersionState, why: String| {
            metrics.verdict(&state.labels, "unknown");
            metrics.check(&state.labels, DriftAction::Warn.as_str());
            for f in state.features.iter() {
                metrics.feature(&state.labels, f, None);
            }
            metrics.prediction(&state.labels, None);
            metrics.estimated(&state.labels, None);
            state.status.estimated = None;
            state.status.checks += 1;
            state.status.verdict = "unknown".into();
            state.status.action = DriftAction::Warn;
            state.status.reason = why;
        };
        let profiles = match &state.profiles {
            Some(ProfileState::Loaded(p)) => p.clone(),
            Some(ProfileState::Failed { error, .. }) => {
                return unknown(state, format!("reference profiles not loaded: {error}"))
            }
            None => return unknown(state, "reference profiles not loaded".into()),
        };
        let Some(profile) = profiles.features.as_ref() else {
            return unknown(state, "the version has no reference profile".into());
        };
        let window = match state.window.features(&state.features) {
            Ok(w) => w,
            Err(e) => return unknown(state, format!("window not readable: {e}")),
        };
        let report = match profile.compare(&window, &self.drift) {
            Ok(r) => r,
            Err(e) => return unknown(state, format!("comparison failed: {e}")),
        };
        let prediction = profiles.prediction.as_ref().and_then(|p| {
            let current = state.window.predictions(PREDICTION_COLUMN).ok()?;
            let r = p.compare(&current, &self.drift).ok()?;
            let c = r.columns.iter().find(|c| c.column == PREDICTION_COLUMN)?;
            let t = c
                .tests
                .first()
                .filter(|_| c.status == ColumnStatus::Tested)?;
            Some(PredictionDrift {
                statistic: t.statistic,
                p_value: t.adjusted_p_value.or(t.p_value),
                drifted: c.drifted,
            })
        });
        // The estimated performance of the window's scores: unknown (NaN gauges, and the
        // policy reads it so) without an estimator or without a scored row.
        let estimated: std::result::Result<_, String> = match profiles.performance.as_ref() {
            None => Err("no estimator stored with the version".into()),
            Some(cbpe) => {
                let (scores, unscored) = state.window.scores();
                if scores.is_empty() {
                    Err(format!(
                        "every one of the window's {unscored} scores is NaN"
                    ))
                } else {
                    cbpe.estimate(&scores, None).map_err(|e| {
                        tracing::warn!(model, error = %e, "no performance estimate for the window");
                        e.to_string()
                    })
                }
            }
        };
        let estimate = estimated.as_ref().ok().copied();
        metrics.estimated(&state.labels, estimate.as_ref());
        state.status.estimated = estimate;
        let decision = self.policy.decide_estimated(
            &report,
            match &estimated {
                Ok(e) => WindowEstimate::Known(e),
                Err(why) => WindowEstimate::Unknown(why),
            },
        );
        self.record_report(state, &report, prediction);
        metrics.check(&state.labels, decision.action.as_str());
        state.status.checks += 1;
        state.status.action = decision.action;
        state.status.reason = decision.reason.clone();
        state.status.prediction_drift = prediction;
        tracing::info!(model, version = ?state.status.version, action = decision.action.as_str(), reason = %decision.reason, "live drift check");
        if decision.action != DriftAction::Retrain {
            return;
        }
        if !others.is_empty() {
            metrics.alarm(model, "deferred");
            state.status.reason = format!(
                "{}; deferred: a rollout runs (versions {} serve too)",
                decision.reason,
                others.join(", ")
            );
            return;
        }
        let (from, to) = state.window.bounds().unwrap_or((0, 0));
        let request = RetrainRequest {
            model: model.to_string(),
            version: state.status.version,
            sequence: 0,
            at: self.parts.clock.now(),
            replica: self.parts.replica.clone(),
            reason: decision.reason.clone(),
            window: LogWindow {
                from: mlops_core::clock::from_unix_micros(from),
                to: mlops_core::clock::from_unix_micros(to.saturating_add(1)),
            },
            summary: RequestSummary {
                verdict: report.dataset.verdict.as_str().into(),
                drifted_columns: report.drifted_columns().map(|c| c.column.clone()).collect(),
                columns_tested: report.dataset.columns_tested,
                drifted_share: report.dataset.share_rule.observed,
                window_rows: state.window.len(),
                prediction_drift: prediction,
                live_metrics: state.status.live.clone(),
                labeled_rows: state.status.labeled_rows,
            },
        };
        match block(claim_retrain(
            self.parts.ledger.as_ref(),
            request,
            self.config.cooldown(),
        )) {
            Ok(claimed) => {
                metrics.alarm(model, claimed.as_str());
                match claimed {
                    Claimed::Requested(r) => {
                        tracing::warn!(model, sequence = r.sequence, "retrain requested");
                        state.status.requests += 1;
                        self.hook.send(*r);
                    }
                    Claimed::Cooldown { last, left } => {
                        state.status.reason = format!(
                            "{}; request {} by {} is {}s old, within the cooldown ({}s left)",
                            decision.reason,
                            last.sequence,
                            last.replica,
                            secs(self.parts.clock.now()) as i64 - secs(last.at) as i64,
                            left.as_secs()
                        );
                    }
                    Claimed::LostRace => {
                        state.status.reason =
                            format!("{}; another replica claimed the request", decision.reason);
                    }
                }
            }
            Err(e) => {
                metrics.alarm(model, "ledger_failed");
                tracing::error!(model, error = %e, "retrain ledger failed: the alarm is retried at the next check");
                state.status.reason = format!("{}; ledger failed: {e}", decision.reason);
            }
        }
    }

    fn record_report(
        &self,
        state: &mut VersionState,
        report: &DriftReport,
        prediction: Option<PredictionDrift>,
    ) {
        let metrics = &self.parts.metrics;
        for c in &report.columns {
            let outcome = c
                .tests
                .first()
                .filter(|_| c.status == ColumnStatus::Tested)
                .map(|t| (t.statistic, t.adjusted_p_value.or(t.p_value)));
            metrics.feature(&state.labels, &c.column, outcome);
        }
        metrics.prediction(&state.labels, prediction.map(|p| (p.statistic, p.p_value)));
        let verdict = report.dataset.verdict.as_str();
        metrics.verdict(&state.labels, verdict);
        metrics.share(&state.labels, report.dataset.share_rule.observed);
        state.status.verdict = verdict.into();
        state.status.drifted_columns = report.drifted_columns().map(|c| c.column.clone()).collect();
    }

    fn labeled(&mut self, l: super::Labeled) {
        self.unpublished = true;
        let Some(state) = self
            .models
            .get_mut(&l.model)
            .and_then(|m| m.versions.get_mut(&l.version))
        else {
            // Labels of a version this monitor never saw score (or forgot): nothing to join.
            self.parts
                .metrics
                .dropped(&l.model, "unknown_version", l.labels.len() as u64);
            return;
        };
        for (i, (&label, &score)) in l.labels.iter().zip(&l.scores).enumerate() {
            let group = l.groups.as_ref().and_then(|g| g.get(i).cloned().flatten());
            if state.labeled.push(score, label, group) {
                state.labels_since += 1;
            }
        }
        if state.labels_since < self.config.label_step_rows {
            return;
        }
        state.labels_since = 0;
        let metrics = &self.parts.metrics;
        metrics.samples(
            &state.labels,
            state.labeled.len(),
            state.labeled.positives(),
        );
        state.status.labeled_rows = state.labeled.len();
        let samples = state.labeled.samples();
        let threshold = f64::from(l.threshold);
        state.status.live.clear();
        for m in Metric::ALL {
            let value = samples
                .as_ref()
                .ok()
                .and_then(|s| m.compute(s, threshold).ok())
                .filter(|v| v.is_finite());
            if let Some(v) = value {
                state.status.live.insert(m.as_str().to_string(), v);
            }
            metrics.live(&state.labels, m.as_str(), value.unwrap_or(f64::NAN));
        }
        publish_groups(
            state,
            metrics,
            l.threshold,
            self.config.fairness_min_group_size,
        );
        let (model, version) = (l.model.clone(), l.version);
        self.publish(&model, version);
    }

    /// Every version's status and window size, and each model's rows taken, brought up to
    /// date.
    fn publish_all(&mut self) {
        let metrics = &self.parts.metrics;
        let mut statuses = lock(&self.status);
        for (name, model) in self.models.iter_mut() {
            if model.unreported_rows > 0 {
                metrics.rows(name, model.unreported_rows);
                model.unreported_rows = 0;
            }
            for (version, state) in &model.versions {
                metrics.window(&state.labels, state.window.len());
                statuses.insert((name.to_string(), *version), state.status.clone());
            }
        }
        self.published = Instant::now();
        self.unpublished = false;
    }

    fn publish(&self, model: &Arc<str>, version: Option<u64>) {
        if let Some(state) = self
            .models
            .get(model)
            .and_then(|m| m.versions.get(&version))
        {
            lock(&self.status).insert((model.to_string(), version), state.status.clone());
        }
    }
}

/// Each sensitive group's live rates and the live disparities of `state`'s labeled window;
/// the series of groups that left the window are removed.
fn publish_groups(
    state: &mut VersionState,
    metrics: &super::metrics::MonitorMetrics,
    threshold: f32,
    min_group_size: usize,
) {
    use mlops_core::fairness::{
        assess, AssessmentStatus, DisparitySpec, FairnessConfig, MetricFrame,
    };
    let Some(data) = state.labeled.by_group(threshold) else {
        if !state.groups_shown.is_empty() {
            metrics.forget_groups(&state.labels, &std::mem::take(&mut state.groups_shown));
        }
        return;
    };
    let frame = MetricFrame::new(&data, false);
    if frame.by_group.len() > crate::step_stats::MAX_GROUPS {
        // More groups than a router keeps: a host fed names of its own; no series for them.
        tracing::warn!(
            groups = frame.by_group.len(),
            "too many sensitive groups to show"
        );
        if !state.groups_shown.is_empty() {
            metrics.forget_groups(&state.labels, &std::mem::take(&mut state.groups_shown));
        }
        return;
    }
    let shown: Vec<Arc<str>> = frame
        .by_group
        .iter()
        .map(|g| Arc::from(g.group.as_str()))
        .collect();
    let gone: Vec<Arc<str>> = state
        .groups_shown
        .iter()
        .filter(|g| !shown.contains(g))
        .cloned()
        .collect();
    if !gone.is_empty() {
        metrics.forget_groups(&state.labels, &gone);
    }
    for g in &frame.by_group {
        let rates: Vec<(&str, f64)> = super::metrics::GROUP_RATES
            .iter()
            .map(|&m| (m.name(), g.get(m).unwrap_or(f64::NAN)))
            .collect();
        metrics.group(&state.labels, &g.group, g.rows, &rates);
    }
    state.groups_shown = shown;
    let config = FairnessConfig {
        min_group_size,
        bootstrap: None,
        zero_when_undefined: false,
    };
    for measure in super::metrics::LIVE_DISPARITIES {
        let value = assess(&data, &DisparitySpec::new(measure), &config)
            .ok()
            .filter(|a| a.status == AssessmentStatus::Measured)
            .and_then(|a| a.value)
            .map_or(f64::NAN, |v| v.value);
        metrics.fairness(&state.labels, measure.name(), value);
    }
}
