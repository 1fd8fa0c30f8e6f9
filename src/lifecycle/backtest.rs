//! The whole loop replayed over a labeled [`Stream`] on a simulated clock (a batch is an
//! hour): each [`step`](Backtest::step) labels the previous batch, takes a retrain that fell
//! due ([`LoopRules`], the [`Retrainer`]), serves the batch one row a request through the
//! router while the rollout controller ticks, checks it with the drift monitor and its policy,
//! and records the [`BatchRow`] and every [`DecisionRow`]; [`finish`](Backtest::finish) scores
//! the models on the rows after the change and builds the [`Summary`]. The host builds the
//! first model (it owns the search, the gate and the registration) and prints the lines each
//! call returns: `examples/pipeline` is such a host.
//!
//! ```no_run
//! # async fn f(parts: mlops::lifecycle::backtest::BacktestParts<'_>) -> mlops::lifecycle::Result<()> {
//! use mlops::lifecycle::backtest::Backtest;
//!
//! let first = parts.config.train_batches;
//! let n = parts.stream.batches.len();
//! let mut backtest = Backtest::new(parts).await?;
//! for line in backtest.prepare().await? {
//!     println!("{line}");
//! }
//! for b in first..n {
//!     for line in backtest.step(b).await? {
//!         println!("{line}");
//!     }
//! }
//! let done = backtest.finish(std::time::Instant::now()).await?;
//! println!("{}", done.summary.outcome);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mlops_core::clock::{Clock, ManualClock};
use mlops_core::duration::{seconds, SecondsRange};
use mlops_core::model::{MlpModel, ModelArtifact};
use mlops_core::Dataset;
use mlops_drift::{
    DriftAction, DriftConfig, DriftMetrics, DriftMonitor, DriftPolicy, DriftPolicyConfig,
    DriftReport, DriftTest, Estimator, MonitorConfig, PerformanceRule, ReferenceProfile,
};
use mlops_registry::Registry;
use mlops_serve::analysis::Check;
use mlops_serve::policy::{Promotion, PromotionConfig, ShadowPhase};
use mlops_serve::rollout::{
    compiling, Controller, ControllerParts, DecisionKind, RolloutStore, Tick,
};
use mlops_serve::router::{Request, Router, RouterConfig, RouterOptions, Routes, Variant};
use mlops_serve::source::ModelSource;
use mlops_serve::step_stats::StatsConfig;
use mlops_serve::telemetry::ServeMetrics;
use mlops_serve::{CompiledModel, NonFinitePolicy};
use mlops_train::tracking::{ExperimentTracker, MetricPoint, Run, RunStatus};

use super::report::{BatchRow, DecisionRow, EstimatedAuc, SequencePoint, Summary};
use super::rules::{ends_rollout, LoopRules, RetrainRequests, RolloutEnd, Ruling};
use super::scoring::{auc, scored_auc, stale_rule_labels};
use super::search::{cut, MlpSettings};
use super::stream::Stream;
use super::{Error, Result, RetrainOutcome, RetrainRequest, Retrained, Retrainer, Tracking};

/// A batch is one simulated hour.
pub const BATCH_SECONDS: f64 = 3_600.0;

/// Distinct card keys the requests are routed by (sticky assignment).
const USERS: u64 = 20_000;

/// The replay's promotion policy when the host gives none, in simulated seconds: shadow one
/// batch, then 10/25/50/75/100% with two batches each (200 requests a variant at least),
/// checking the error rate, the p99 latency (1.5x, a millisecond of slack: real engine
/// latency on a shared machine) and ROC AUC non-inferiority on the labels, under the
/// library's always-valid analysis; a step without evidence bakes again for up to 12
/// batches (a 10% canary of a 5,000-row batch holds about 18 frauds, fewer than a window
/// needs alone).
///
/// ```
/// let p = mlops::lifecycle::backtest::default_promotion()?;
/// assert_eq!(p.steps, vec![10.0, 25.0, 50.0, 75.0, 100.0]);
/// assert_eq!(p.shadow.as_ref().map(|s| s.bake_time_seconds), Some(3_600.0));
/// assert_eq!(p.sequential.as_ref().and_then(|s| s.max_step_seconds), Some(12.0 * 3_600.0));
/// # Ok::<(), mlops::lifecycle::Error>(())
/// ```
pub fn default_promotion() -> Result<Promotion> {
    let live_checks = vec![
        Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.95,
        },
        Check::LatencyP99 {
            factor: 1.5,
            slack_ms: 1.0,
        },
    ];
    let config = PromotionConfig {
        steps: vec![10.0, 25.0, 50.0, 75.0, 100.0],
        bake_time_seconds: 2.0 * BATCH_SECONDS,
        min_requests: 200,
        checks: live_checks
            .iter()
            .cloned()
            .chain([Check::RocAuc {
                max_decrease: 0.01,
                confidence: 0.95,
                min_labeled: 200,
            }])
            .collect(),
        shadow: Some(ShadowPhase {
            percent: 100.0,
            bake_time_seconds: BATCH_SECONDS,
            checks: live_checks,
        }),
        // The library's default, the rollout's windows pooled on a confidence sequence (the
        // report's chart), with longer steps for want of evidence than its six hours.
        sequential: Some(mlops_serve::policy::Sequential {
            max_step_seconds: Some(12.0 * BATCH_SECONDS),
            ..mlops_serve::policy::Sequential::default()
        }),
        ..PromotionConfig::default()
    };
    Ok(config.check()?)
}

/// The replay's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestConfig {
    /// Seed of the retrains (`seed + batch`) and of the oracle.
    pub seed: u64,
    /// Batches of history the first model trained on: serving starts after them.
    pub train_batches: usize,
    /// Labeled batches after an alarm that a retrain waits for and trains on (≥ 1).
    pub retrain_batches: usize,
    /// Share of drifted columns that is dataset drift, in (0, 1].
    pub drift_share: f64,
    /// Threshold of the distance tests (Wasserstein, Jensen–Shannon) on large references.
    pub distance_threshold: f64,
    /// Replace each retrain window's labels by a stale rule ([`stale_rule_labels`]).
    pub corrupt_retrain_labels: bool,
    /// The drift policy's rule on the performance estimated before labels (CBPE from the
    /// production model's calibrated scores); `None` acts on drift alone.
    pub performance: Option<PerformanceRule>,
}

/// The first model, registered and under `production`.
pub struct FirstModel {
    /// Its version.
    pub version: u64,
    /// Its artifact (served).
    pub artifact: ModelArtifact,
    /// The model (the champion until a candidate is promoted; scored in the summary).
    pub model: Arc<MlpModel>,
    /// Its reference profile (the monitor's first reference).
    pub profile: ReferenceProfile,
}

/// What a [`Backtest`] is made of.
pub struct BacktestParts<'t> {
    /// The stream.
    pub stream: &'t Stream,
    /// The registry the versions and the rollout state live in.
    pub registry: Arc<Registry>,
    /// The registered model's name.
    pub model: String,
    /// The first model.
    pub first: FirstModel,
    /// The retrainer of `model` in `registry` (it registers every retrain:
    /// `register_rejected`).
    pub retrainer: Retrainer,
    /// The settings every retrain fits with (the search's choice).
    pub settings: MlpSettings,
    /// Where the retrains and the loop's per-batch metrics are tracked (experiment `pipeline`).
    pub tracker: &'t dyn ExperimentTracker,
    /// Tags of the tracking runs.
    pub tags: BTreeMap<String, String>,
    /// The rollout policy ([`default_promotion`] for the replay's default).
    pub promotion: Promotion,
    /// The replay's settings.
    pub config: BacktestConfig,
}

/// The first check that found the new world: what the report's feature chart and the linked
/// drift report show.
pub struct Alarm {
    /// The batch.
    pub batch: usize,
    /// The monitor's report.
    pub report: DriftReport,
    /// The reference it was checked against.
    pub profile: ReferenceProfile,
    /// The batch's columns.
    pub current: Vec<(String, Vec<f64>)>,
}

/// What [`Backtest::finish`] returns.
pub struct Finished {
    /// The summary (`seconds`: from the `started` given to `finish`).
    pub summary: Summary,
    /// The first alarm after the change, if any.
    pub alarm: Option<Alarm>,
    /// The run's Prometheus exposition (text format).
    pub exposition: String,
    /// The lines for a person, in order.
    pub lines: Vec<String>,
}

/// A served row waiting for its label.
struct Served {
    id: String,
    score: f32,
    label: f32,
}

/// The replay's state: see the [module](self).
pub struct Backtest<'t> {
    p: BacktestParts<'t>,
    clock: Arc<ManualClock>,
    prometheus: mlops_core::prometheus_client::registry::Registry,
    router: Router,
    controller: Controller,
    monitor: DriftMonitor,
    requests: RetrainRequests,
    loop_run: Option<Run<'t>>,
    rules: LoopRules,
    timeline: Vec<BatchRow>,
    decisions: Vec<DecisionRow>,
    /// The pooled ROC AUC / accuracy analyses of the rollouts (the report's confidence
    /// sequence).
    sequence: Vec<SequencePoint>,
    waiting: Vec<Served>,
    first_alarm: Option<Alarm>,
    candidate: Option<Box<Retrained>>,
    first_retrain: Option<(u64, Arc<MlpModel>, usize)>,
    outcome: String,
    production: u64,
    champion: Arc<MlpModel>,
    tick: Duration,
    next_tick: SystemTime,
    failed_requests: u64,
    points: Vec<MetricPoint>,
}

impl<'t> Backtest<'t> {
    /// Serving's parts over the first model: the router (sticky by card, labels joined for
    /// three batches), the controller on the registry's rollout state, the drift monitor (a
    /// window a batch) and its policy (a day's cooldown), the retrainer, the tracking run
    /// `closed-loop`; one metrics registry. The clock starts at 2026-01-01.
    pub async fn new(p: BacktestParts<'t>) -> Result<Self> {
        let batch_rows = p.stream.batches.first().map_or(0, Dataset::n_rows);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let clock = Arc::new(ManualClock::new(start));
        let mut prometheus = mlops_core::prometheus_client::registry::Registry::default();
        let serve_metrics = ServeMetrics::register(&mut prometheus);
        let drift_metrics = DriftMetrics::register(&mut prometheus);
        serve_metrics.init_model(&p.model);
        let router = Router::new(
            &p.model,
            Routes::single(Variant::new(
                "stable",
                Some(p.first.version),
                Arc::new(CompiledModel::compile(
                    &p.first.artifact,
                    NonFinitePolicy::Reject,
                )?),
            )),
            RouterOptions {
                config: RouterConfig {
                    stats: StatsConfig {
                        label_ttl_seconds: 3.0 * BATCH_SECONDS,
                        label_join_capacity: (4 * batch_rows).max(1_000),
                        ..StatsConfig::default()
                    },
                    shadow_queue: 4_096,
                }
                .check()?,
                metrics: serve_metrics.clone(),
                clock: clock.clone(),
                ..RouterOptions::default()
            },
        )?;
        let controller = Controller::new(ControllerParts {
            model: p.model.clone(),
            config: p.promotion.clone(),
            store: p.registry.clone() as Arc<dyn RolloutStore>,
            source: p.registry.clone() as Arc<dyn ModelSource>,
            clock: clock.clone(),
            metrics: serve_metrics.clone(),
            loader: compiling(NonFinitePolicy::Reject),
        })?;
        let policy = DriftPolicy::new(
            DriftPolicyConfig {
                min_samples: (batch_rows / 2).min(500),
                cooldown_seconds: 24.0 * BATCH_SECONDS,
                performance: p.config.performance,
            },
            clock.clone(),
        )
        .with_metrics(drift_metrics);
        let drift_config = DriftConfig {
            drift_share: p.config.drift_share,
            thresholds: [
                (DriftTest::Wasserstein, p.config.distance_threshold),
                (DriftTest::Js, p.config.distance_threshold),
            ]
            .into(),
            ..DriftConfig::default()
        }
        .check()?;
        let monitor = DriftMonitor::new(
            &p.model,
            p.first.profile.clone(),
            drift_config,
            policy,
            MonitorConfig {
                window_rows: batch_rows,
                step_rows: batch_rows,
            },
        )?;
        let mut monitor = monitor;
        monitor.set_estimator(estimator(&p.first.artifact, &p.first.model));
        let loop_run = Run::start(p.tracker, "pipeline", "closed-loop", &p.tags).await?;
        let tick = seconds(
            "the controller's tick (a twelfth of a batch)",
            BATCH_SECONDS / 12.0,
            SecondsRange::new(1e-9, BATCH_SECONDS),
        )?;
        Ok(Backtest {
            rules: LoopRules::new(p.config.retrain_batches as u64)?,
            production: p.first.version,
            champion: p.first.model.clone(),
            next_tick: clock.now(),
            clock,
            prometheus,
            router,
            controller,
            monitor,
            requests: RetrainRequests::default(),
            loop_run: Some(loop_run),
            timeline: Vec::new(),
            decisions: Vec::new(),
            sequence: Vec::new(),
            waiting: Vec::new(),
            first_alarm: None,
            candidate: None,
            first_retrain: None,
            outcome: "no_retrain".into(),
            tick,
            failed_requests: 0,
            points: Vec::new(),
            p,
        })
    }

    /// Before the first request: a rollout an earlier run left unfinished (interrupted
    /// mid-way, or between its decision and the alias moves) would otherwise be served, and
    /// rolled back, on this replay's traffic: it is rolled back now and recorded
    /// (`stale_rollout_cleared`); then the router must follow the first model.
    pub async fn prepare(&mut self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let v1 = self.p.first.version;
        if let Some(stale) = self.controller.state().await? {
            let s = &stale.state;
            if !s.phase.is_terminal() || !s.aliases_settled {
                let reason = format!(
                    "an earlier run left the rollout of v{} over v{} unfinished ({} at {}%): rolled back before serving; production is this run's v{v1}",
                    s.candidate,
                    s.stable,
                    s.phase.as_str(),
                    s.canary_percent
                );
                lines.push(format!("[rollout]   {reason}"));
                self.decide(self.p.config.train_batches, "stale_rollout_cleared", reason);
            }
        }
        let mut serving = None;
        for _ in 0..4 {
            if let Tick::Idle { production } = self.controller.tick(&self.router).await? {
                serving = Some(production);
                break;
            }
        }
        if serving != Some(v1) {
            return Err(Error::invalid(
                format!("the rollout state of {:?}", self.p.model),
                format!("production {serving:?}"),
                format!("settled on production v{v1} before serving (another process may be rolling it out in the same registry)"),
            ));
        }
        Ok(lines)
    }

    fn decide(&mut self, batch: usize, kind: impl Into<String>, reason: String) {
        self.decisions.push(DecisionRow {
            batch,
            kind: kind.into(),
            reason,
        });
    }

    /// The waiting rows' labels arrive (fed back to the router); their ROC AUC.
    fn label_waiting(&mut self) -> Result<Option<f64>> {
        if self.waiting.is_empty() {
            return Ok(None);
        }
        let labels: Vec<f32> = self.waiting.iter().map(|s| s.label).collect();
        let scores: Vec<f32> = self.waiting.iter().map(|s| s.score).collect();
        for s in &self.waiting {
            self.router.feedback(&s.id, &[f64::from(s.label)])?;
        }
        self.waiting.clear();
        scored_auc(&labels, &scores)
    }

    /// Batch `b` of the stream (after the history, in order): the previous batch's labels,
    /// a retrain that fell due, the batch served, the drift check. Returns the lines for a
    /// person; the batch's [`BatchRow`] and the decisions are kept for the summary.
    pub async fn step(&mut self, b: usize) -> Result<Vec<String>> {
        let stream = self.p.stream;
        let Some(batch) = stream.batches.get(b) else {
            return Err(Error::invalid(
                "batch",
                b,
                format!(
                    "a batch of the stream (it has {})",
                    self.p.stream.batches.len()
                ),
            ));
        };
        let mut lines = Vec::new();
        let live_auc_prev = self.label_waiting()?;
        if let (Some(row), Some(_)) = (self.timeline.last_mut(), live_auc_prev) {
            row.live_auc = live_auc_prev;
        }
        if let Some(due) = self.rules.due(b as u64) {
            self.rules.start_retrain();
            self.retrain(b, due.start as usize, due.end as usize, &mut lines)
                .await?;
        }
        self.serve(b, batch, &mut lines).await?;
        let row = self.check(b, batch).await?;
        lines.push(format!(
            "[batch {b:>3}] {:<22} drift {} {:<8} est. AUC {}  live AUC (prev) {}  canary {:>5.1}%  production v{}",
            row.span,
            row.drift_share.map_or("  -  ".into(), |s| format!("{s:.2}")),
            if row.alarm { "ALARM" } else { "" },
            row.estimated_auc.map_or("  -   ".into(), |e| format!("{:.4}", e.value)),
            live_auc_prev.map_or("  -   ".into(), |v| format!("{v:.4}")),
            row.canary_percent,
            self.production,
        ));
        let timestamp_ms = self
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (key, value) in [
            ("drift_share", row.drift_share),
            ("estimated_auc", row.estimated_auc.map(|e| e.value)),
            ("live_auc", live_auc_prev),
            ("canary_percent", Some(row.canary_percent)),
        ] {
            if let Some(value) = value {
                self.points.push(MetricPoint {
                    key: key.into(),
                    value,
                    step: b as i64,
                    timestamp_ms,
                });
            }
        }
        self.timeline.push(row);
        Ok(lines)
    }

    /// Retrains on batches `a..z` (labeled by now) at batch `b`.
    async fn retrain(
        &mut self,
        b: usize,
        a: usize,
        z: usize,
        lines: &mut Vec<String>,
    ) -> Result<()> {
        let mut window = concat(&self.p.stream.batches[a..z])?;
        if self.p.config.corrupt_retrain_labels {
            let (broken, how) = stale_rule_labels(&window)?;
            lines.push(format!("[retrain]   --corrupt-retrain-labels: {how}"));
            window = broken;
        }
        let trainer = self
            .p
            .settings
            .trainer(self.p.config.seed.wrapping_add(b as u64))?;
        let run_name = format!("retrain-batch-{b}");
        let expected_canary = self
            .p
            .registry
            .alias(&self.p.model, "canary")
            .await?
            .and_then(|e| e.target);
        let production = self.production;
        let retrained = self
            .p
            .retrainer
            .retrain(RetrainRequest {
                window: &window,
                trainer: &trainer,
                champion: self.champion.as_ref(),
                champion_version: production,
                expected_canary,
                tracking: Some(Tracking {
                    tracker: self.p.tracker,
                    experiment: "pipeline",
                    run_name: &run_name,
                    tags: &self.p.tags,
                }),
                description: format!("retrained on batches {a}..{} after the drift alarm", z - 1),
                tags: vec![(
                    "corrupt_labels".into(),
                    self.p.config.corrupt_retrain_labels.to_string(),
                )],
                params: vec![("hyperparameters".into(), self.p.settings.describe())],
            })
            .await?;
        let c = match retrained {
            RetrainOutcome::Refused(report) => {
                self.decide(
                    b,
                    "retrain_refused",
                    format!("the window failed validation: {report}"),
                );
                lines.push(format!("[retrain]   batch {b}: the window of batches {a}..{} failed validation; not retraining", z - 1));
                return Ok(());
            }
            RetrainOutcome::GateFailed(c) | RetrainOutcome::Canary(c) => c,
        };
        if let Some(e) = &c.holdout_error {
            lines.push(format!(
                "[retrain]   batch {b}: the holdout cannot score the models: {e}"
            ));
        }
        let Some(version) = c.version else {
            return Err(Error::invalid(
                "RetrainConfig.register_rejected",
                false,
                "true: the replay registers every retrain",
            ));
        };
        let (why, passed) = (c.reasons(), c.decision.passed);
        lines.push(format!(
            "[retrain]   batch {b}: trained on batches {a}..{} ({} rows), registered v{version}; gate vs champion v{production} on the same holdout: {why}",
            z - 1,
            c.rows
        ));
        self.first_retrain
            .get_or_insert((version, c.model.clone(), b));
        let kind = if passed { "gate_passed" } else { "gate_failed" };
        self.decide(b, kind, format!("v{version}: {why}"));
        if passed {
            self.rules.on_candidate(version);
            self.candidate = Some(c);
            self.outcome = "in_progress".into();
        } else {
            self.outcome = "gate_failed".into();
        }
        Ok(())
    }

    /// Serves `batch`, one row a request (a request every hour / rows, a nanosecond at
    /// least, so simulated time always advances), the controller ticking on the way.
    async fn serve(&mut self, b: usize, batch: &Dataset, lines: &mut Vec<String>) -> Result<()> {
        let rows = batch.n_rows();
        let step = seconds(
            "the simulated gap between two requests (an hour over the batch's rows)",
            BATCH_SECONDS / rows.max(1) as f64,
            SecondsRange::new(1e-9, BATCH_SECONDS),
        )?;
        let x = batch.features();
        let Some(labels) = batch.labels() else {
            return Err(Error::invalid(
                format!("batch {b} labels"),
                "none",
                "labeled batches",
            ));
        };
        let mut x1 = [0.0f32];
        for i in 0..rows {
            let id = format!("{b}-{i}");
            let key = format!("card-{}", (b as u64 * rows as u64 + i as u64) % USERS);
            let request = Request {
                key: Some(&key),
                force: None,
                request_id: Some(&id),
                group: None,
            };
            let row = x.row(i).insert_axis(mlops_core::ndarray::Axis(0));
            match self.router.route(&request, row, &mut x1) {
                Ok(_) => self.waiting.push(Served {
                    id,
                    score: x1[0],
                    label: labels[i],
                }),
                Err(e) => {
                    self.failed_requests += 1;
                    tracing::warn!(error = %e, "request failed");
                }
            }
            self.clock.advance(step);
            while self.clock.now() >= self.next_tick {
                self.next_tick += self.tick;
                if let Tick::Acted(d) = self.controller.tick(&self.router).await? {
                    self.on_decision(b, &d, lines);
                }
            }
        }
        Ok(())
    }

    /// A controller's decision at batch `b`: recorded, and at a rollout's end the rules say
    /// whether the monitor rebases on the candidate.
    fn on_decision(
        &mut self,
        b: usize,
        d: &mlops_serve::rollout::Decision,
        lines: &mut Vec<String>,
    ) {
        let kind = format!("rollout_{}", d.kind.as_str());
        lines.push(format!(
            "[rollout]   batch {b}: {kind} {}% -> {}%: {}",
            d.from_percent, d.to_percent, d.reason
        ));
        for c in &d.checks {
            lines.push(format!(
                "            {:<16} {:?} statistic {} p {} (n {} / {})",
                c.check,
                c.outcome,
                c.statistic.map_or("-".into(), |v| format!("{v:.4}")),
                c.p_value.map_or("-".into(), |v| format!("{v:.2e}")),
                c.n_candidate,
                c.n_stable
            ));
        }
        for c in &d.checks {
            let margin = self
                .controller
                .config()
                .checks
                .iter()
                .find_map(|k| match k {
                    Check::RocAuc { max_decrease, .. } | Check::Accuracy { max_decrease, .. }
                        if k.name() == c.check =>
                    {
                        Some(*max_decrease)
                    }
                    _ => None,
                });
            if let (Some(margin), Some(estimate), Some((low, high))) =
                (margin, c.statistic, c.interval)
            {
                self.sequence.push(SequencePoint {
                    batch: b,
                    check: c.check.clone(),
                    candidate: d.candidate.as_ref().and_then(|v| v.version).unwrap_or(0),
                    percent: d.from_percent,
                    estimate,
                    low,
                    high,
                    margin,
                });
            }
        }
        self.decide(b, kind, d.reason.clone());
        if !ends_rollout(d.kind, d.to_percent) {
            return;
        }
        let end = self.rules.on_rollout_end(d.kind == DecisionKind::Promote);
        if let (Some(end), Some(c)) = (end, self.candidate.take()) {
            if let RolloutEnd::Promoted { version } = end {
                self.production = version;
                self.champion = c.model.clone();
                self.monitor.rebase(c.profile.clone());
                self.monitor.set_estimator(estimator(&c.artifact, &c.model));
                self.outcome = "promoted".into();
                lines.push(format!("[monitor]   reference profile -> v{version} (its training window, batches after the alarm)"));
            } else {
                self.outcome = "rolled_back".into();
            }
        }
    }

    /// The drift monitor's check of batch `b` and the rules' answer to a retrain request.
    async fn check(&mut self, b: usize, batch: &Dataset) -> Result<BatchRow> {
        let checks = self.monitor.observe(batch, &self.requests).await?;
        let mut row = BatchRow {
            batch: b,
            span: self.p.stream.spans.get(b).cloned().unwrap_or_default(),
            drift_share: None,
            drift_mean_effect: None,
            alarm: false,
            action: None,
            live_auc: None,
            estimated_auc: None,
            canary_percent: 0.0,
            production: self.production,
        };
        for c in &checks {
            // The last check's estimate, or none: never an earlier check's.
            row.estimated_auc = None;
            if let Some(e) = &c.performance {
                row.estimated_auc = e.roc_auc.value.map(|v| EstimatedAuc {
                    value: v,
                    lower: e.roc_auc.lower,
                    upper: e.roc_auc.upper,
                    reference: e.roc_auc.reference,
                });
            }
            let d = &c.report.dataset;
            row.drift_share = Some(d.share_rule.observed);
            row.drift_mean_effect = d.mean_effect_rule.as_ref().map(|r| r.observed);
            row.alarm |= d.drifted;
            row.action = Some(c.decision.action.as_str().to_string());
            if c.decision.action != DriftAction::None {
                let kind = format!("drift_{}", c.decision.action.as_str());
                self.decide(b, kind, c.decision.reason.clone());
            }
            let after_change = self.p.stream.shift_batch.is_none_or(|s| b >= s);
            if d.drifted && self.first_alarm.is_none() && after_change {
                self.first_alarm = Some(Alarm {
                    batch: b,
                    report: c.report.clone(),
                    profile: self.monitor.profile().clone(),
                    current: columns(batch),
                });
            }
        }
        if !self.requests.take().is_empty() {
            if let Ruling::Deferred { rolling_out } = self.rules.on_retrain_request(b as u64) {
                self.decide(
                    b,
                    "retrain_deferred",
                    format!("v{rolling_out} is still rolling out"),
                );
            }
        }
        if let Some(stored) = self.controller.state().await? {
            if !stored.state.phase.is_terminal() {
                row.canary_percent = stored.state.canary_percent;
            }
        }
        Ok(row)
    }

    /// The end of the stream: the last batch's labels, the tracking run ended, and the
    /// numbers — the first model before the change, and after it on rows nobody trained on
    /// (from the first retrain, or a retraining window after the change when there was none)
    /// the first model, the first retrained model and the oracle (the same settings trained
    /// directly on the new world: fresh rows of it for the synthetic stream, the rows between
    /// the change and the evaluation for a CSV). `started`: when the host's run began.
    pub async fn finish(mut self, started: Instant) -> Result<Finished> {
        let last_auc = self.label_waiting()?;
        if let (Some(row), Some(_)) = (self.timeline.last_mut(), last_auc) {
            row.live_auc = last_auc;
        }
        if let Some(run) = self.loop_run.take() {
            run.log_metrics(&self.points).await?;
            run.end(RunStatus::Finished).await?;
        }
        let mut lines = Vec::new();
        let summary = self.summary(started, &mut lines).await?;
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        lines.push(format!(
            "[summary]   change at batch {}, detected at batch {}, {} false alarm(s) in {} checks before it",
            summary.shift_batch.map_or("-".into(), |s| s.to_string()),
            summary.detected_batch.map_or("never".into(), |d| d.to_string()),
            summary.false_alarms_before_shift,
            summary.checks_before_shift
        ));
        lines.push(format!(
            "[summary]   estimated AUC moved at batch {}, the labels showed the drop at batch {}; {} drift checks acted on (warn or retrain), {} retrains",
            summary.estimate_moved_batch.map_or("never".into(), |b| b.to_string()),
            summary.labels_showed_batch.map_or("never".into(), |b| b.to_string()),
            summary.drift_actions,
            summary.retrains
        ));
        lines.push(format!(
            "[summary]   ROC AUC before the change {}; after it (batches {}): old model {}, retrained {}, oracle {}",
            num(summary.auc_before_shift),
            summary.evaluation_batches.map_or("-".into(), |(a, z)| format!("{a}..{z}")),
            num(summary.auc_after_shift_old_model),
            num(summary.auc_after_retrain),
            num(summary.auc_oracle)
        ));
        lines.push(format!(
            "[summary]   outcome: {}; production is v{}; {} failed requests; {:.1} s",
            summary.outcome, summary.production_version, self.failed_requests, summary.seconds
        ));
        Ok(Finished {
            summary,
            alarm: self.first_alarm.take(),
            exposition: mlops_core::exposition::classic_text(&self.prometheus)?,
            lines,
        })
    }

    async fn summary(&mut self, started: Instant, lines: &mut Vec<String>) -> Result<Summary> {
        let stream = self.p.stream;
        let n_batches = stream.batches.len();
        let (train_batches, retrain_batches) =
            (self.p.config.train_batches, self.p.config.retrain_batches);
        let shift = stream.shift_batch;
        let timeline = std::mem::take(&mut self.timeline);
        let detected = timeline
            .iter()
            .find(|r| r.alarm && shift.is_some_and(|s| r.batch >= s))
            .map(|r| r.batch);
        let before: Vec<&BatchRow> = timeline
            .iter()
            .filter(|r| shift.is_none_or(|s| r.batch < s) && r.drift_share.is_some())
            .collect();
        let first_model = self.p.first.model.clone();
        let pre_end = shift.unwrap_or(n_batches).min(n_batches);
        let auc_before = if train_batches < pre_end {
            auc(
                first_model.as_ref(),
                &concat(&stream.batches[train_batches..pre_end])?,
            )?
        } else {
            None
        };
        // A CSV's oracle trains on the rows between the change and the evaluation, so they
        // start a retraining window after the change at least.
        let eval_start = shift.map(|s| {
            let floor = if stream.synthetic.is_some() {
                s
            } else {
                s + retrain_batches
            };
            self.first_retrain
                .as_ref()
                .map_or(s + retrain_batches, |(_, _, at)| *at)
                .max(floor)
                .max(train_batches)
        });
        let eval = match eval_start {
            Some(e) if e < n_batches => Some((e, concat(&stream.batches[e..])?)),
            _ => None,
        };
        let (mut auc_old, mut auc_retrained, mut auc_oracle) = (None, None, None);
        if let (Some((e, rows)), Some(s)) = (&eval, shift) {
            auc_old = auc(first_model.as_ref(), rows)?;
            if let Some((_, m, _)) = &self.first_retrain {
                auc_retrained = auc(m.as_ref(), rows)?;
            }
            match self.oracle(s, *e, rows) {
                Ok(v) => auc_oracle = v,
                Err(e) => lines.push(format!("[summary]   no oracle: {e}")),
            }
        }
        let production_version = self
            .p
            .registry
            .alias(&self.p.model, "production")
            .await?
            .and_then(|e| e.target)
            .unwrap_or(0);
        let (estimate_moved_batch, labels_showed_batch) = moved(&timeline, shift);
        let drift_actions = timeline
            .iter()
            .filter(|r| matches!(r.action.as_deref(), Some("warn" | "retrain")))
            .count();
        let retrains = self
            .decisions
            .iter()
            .filter(|d| d.kind == "gate_passed" || d.kind == "gate_failed")
            .count();
        Ok(Summary {
            drift_actions,
            retrains,
            estimate_moved_batch,
            labels_showed_batch,
            data: stream.name.clone(),
            seed: self.p.config.seed,
            batches: n_batches,
            batch_rows: stream.batches.first().map_or(0, Dataset::n_rows),
            train_batches,
            shift_batch: shift,
            detected_batch: detected,
            detection_delay_batches: detected.zip(shift).map(|(d, s)| d - s),
            false_alarms_before_shift: before.iter().filter(|r| r.alarm).count(),
            checks_before_shift: before.len(),
            auc_before_shift: auc_before,
            auc_after_shift_old_model: auc_old,
            auc_after_retrain: auc_retrained,
            auc_oracle,
            evaluation_rows: eval.as_ref().map_or(0, |(_, d)| d.n_rows()),
            evaluation_batches: eval.as_ref().map(|(e, _)| (*e, n_batches - 1)),
            outcome: self.outcome.clone(),
            production_version,
            initial_version: self.p.first.version,
            candidate_version: self.first_retrain.as_ref().map(|(v, _, _)| *v),
            corrupt_retrain_labels: self.p.config.corrupt_retrain_labels,
            hyperparameters: serde_json::to_value(&self.p.settings)
                .map_err(|e| Error::invalid("hyperparameters", e, "settings JSON can hold"))?,
            seconds: started.elapsed().as_secs_f64(),
            decisions: std::mem::take(&mut self.decisions),
            timeline,
            sequence: std::mem::take(&mut self.sequence),
        })
    }

    /// The oracle's ROC AUC on `rows` (the evaluation, from batch `e`; the change at `s`).
    fn oracle(&self, s: usize, e: usize, rows: &Dataset) -> Result<Option<f64>> {
        let stream = self.p.stream;
        let batch_rows = stream.batches.first().map_or(0, Dataset::n_rows);
        let data = match &stream.synthetic {
            Some(synthetic) => synthetic.sample(
                self.p.config.retrain_batches * batch_rows,
                true,
                self.p.config.seed ^ 0x0AC1E,
            )?,
            None => concat(&stream.batches[s..e])?,
        };
        let order = data.order_column().map(|(n, _)| n.to_string());
        let Some(order) = order else {
            return Err(Error::invalid(
                "the stream's order column",
                "none",
                "batches that carry their order column",
            ));
        };
        let w = cut(&data, &order)?;
        let trained = self
            .p
            .settings
            .trainer(self.p.config.seed.wrapping_add(7))?
            .fit(&w.train, Some(&w.validation), &mut [])?;
        auc(&MlpModel::new(&trained.artifact)?, rows)
    }
}

/// `batch`'s feature columns by name.
fn columns(batch: &Dataset) -> Vec<(String, Vec<f64>)> {
    batch
        .feature_names()
        .enumerate()
        .map(|(j, n)| {
            let v = batch
                .features()
                .column(j)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            (n.to_string(), v)
        })
        .collect()
}

/// `batches` as one dataset, in order.
pub fn concat(batches: &[Dataset]) -> Result<Dataset> {
    let parts: Vec<&Dataset> = batches.iter().collect();
    Ok(Dataset::concat(&parts)?)
}

/// The monitor's estimator for a model: its stored [`Cbpe`](mlops_core::cbpe::Cbpe), if its
/// artifact has one (none: the estimated performance is unknown).
fn estimator(artifact: &ModelArtifact, model: &Arc<MlpModel>) -> Option<Estimator> {
    let cbpe = artifact.spec().cbpe.clone()?;
    match Estimator::new(model.clone() as Arc<dyn mlops_core::model::Predictor>, cbpe) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "the model's estimator cannot be used: its estimated performance is unknown");
            None
        }
    }
}

/// When the estimated AUC moved after the change (its whole band below the estimate on the
/// model's reference) and when the labels showed the drop (the batch after the first
/// realized AUC below every realized one before the change).
fn moved(timeline: &[BatchRow], shift: Option<usize>) -> (Option<usize>, Option<usize>) {
    let Some(shift) = shift else {
        return (None, None);
    };
    let before: Vec<&BatchRow> = timeline.iter().filter(|r| r.batch < shift).collect();
    let estimate = timeline
        .iter()
        .filter(|r| r.batch >= shift)
        .find(|r| {
            r.estimated_auc
                .is_some_and(|e| matches!((e.upper, e.reference), (Some(u), Some(r)) if u < r))
        })
        .map(|r| r.batch);
    let lowest = before
        .iter()
        .filter_map(|r| r.live_auc)
        .fold(f64::INFINITY, f64::min);
    let labels = lowest
        .is_finite()
        .then(|| {
            timeline
                .iter()
                .filter(|r| r.batch >= shift)
                .find(|r| r.live_auc.is_some_and(|v| v < lowest))
                .map(|r| r.batch + 1)
        })
        .flatten();
    (estimate, labels)
}
