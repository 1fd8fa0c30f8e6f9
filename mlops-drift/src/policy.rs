//! Turning a drift report into an action: none, warn, or retrain, with a minimum sample size
//! and a cooldown, calling a host-provided [`RetrainTrigger`], and exporting Prometheus
//! metrics.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mlops_core::clock::{Clock, SystemClock};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{ColumnStatus, DriftReport, Verdict};
use mlops_core::cbpe::{Estimated, PerformanceEstimate};

/// What to do about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EncodeLabelValue)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    /// Nothing drifted (or too few samples to say).
    None,
    /// Some columns drifted, some could not be tested (an incomplete report), or the dataset
    /// drifted during the cooldown: tell a person.
    Warn,
    /// The dataset drifted: retrain.
    Retrain,
}

impl DriftAction {
    /// Every variant, in declaration order.
    pub const ALL: [DriftAction; 3] = [DriftAction::None, DriftAction::Warn, DriftAction::Retrain];

    /// The serialized name (`none`, `warn`, `retrain`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftAction::None => "none",
            DriftAction::Warn => "warn",
            DriftAction::Retrain => "retrain",
        }
    }
}

/// Policy parameters. serde with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftPolicyConfig {
    /// Fewest current values (in the smallest tested column) to act on (default 500).
    pub min_samples: usize,
    /// No second retrain within this many seconds of the last (default one day), from 0 to
    /// [`MAX_COOLDOWN_SECONDS`]. Stored configs that say `cooldown_secs` (a whole number of
    /// seconds, its name before issue 23) still load.
    #[serde(alias = "cooldown_secs")]
    pub cooldown_seconds: f64,
    /// A rule on the performance estimated before labels arrive (CBPE, from the model's
    /// calibrated scores on the window): `None` (default) acts on drift alone, as before.
    pub performance: Option<PerformanceRule>,
}

/// The estimated metric a [`PerformanceRule`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimatedMetric {
    /// Estimated ROC AUC (default).
    #[default]
    RocAuc,
    /// Estimated accuracy.
    Accuracy,
    /// Estimated precision.
    Precision,
    /// Estimated recall.
    Recall,
    /// Estimated F1.
    F1,
}

impl EstimatedMetric {
    /// The name, as serde writes it and the gates use.
    pub fn as_str(&self) -> &'static str {
        match self {
            EstimatedMetric::RocAuc => "roc_auc",
            EstimatedMetric::Accuracy => "accuracy",
            EstimatedMetric::Precision => "precision",
            EstimatedMetric::Recall => "recall",
            EstimatedMetric::F1 => "f1",
        }
    }

    /// This metric's estimate in `e`.
    pub fn of(self, e: &PerformanceEstimate) -> &Estimated {
        match self {
            EstimatedMetric::RocAuc => &e.roc_auc,
            EstimatedMetric::Accuracy => &e.accuracy,
            EstimatedMetric::Precision => &e.precision,
            EstimatedMetric::Recall => &e.recall,
            EstimatedMetric::F1 => &e.f1,
        }
    }
}

/// When drift leads to action, given the estimated performance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMode {
    /// Drift acts as it does without the rule; the rule adds "estimate below `min`" as a
    /// retrain reason of its own (default).
    #[default]
    Always,
    /// Drift acts only when the model is at risk: the estimate is below `min`, or has fallen
    /// from the estimate on the reference (its whole band, estimate ± 3 sampling errors,
    /// below it), or has no band, or is unknown. Drift while the estimate holds is recorded
    /// (gauges, the report) and not acted on: the day/night cycle that moves every column of
    /// a card stream is not a reason to page anyone. The estimate alone retrains only when
    /// its whole band is below `min`.
    WhenAtRisk,
}

/// A rule on the estimated performance (see [`DriftPolicyConfig::performance`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceRule {
    /// The metric read (default `roc_auc`).
    #[serde(default)]
    pub metric: EstimatedMetric,
    /// The gate's floor: an estimate below it is a retrain reason ("estimated AUC below the
    /// gate"), in [0, 1].
    pub min: f64,
    /// How drift acts given the estimate (default `always`).
    #[serde(default)]
    pub mode: DriftMode,
}

/// What the policy knows of a window's performance.
#[derive(Debug, Clone, Copy)]
pub enum WindowEstimate<'a> {
    /// The window's estimate.
    Known(&'a PerformanceEstimate),
    /// No estimate from the window's estimator, and why (its error).
    Unknown(&'a str),
    /// No estimator: nothing estimates this window's performance.
    NoEstimator,
}

impl<'a> From<Option<&'a PerformanceEstimate>> for WindowEstimate<'a> {
    fn from(e: Option<&'a PerformanceEstimate>) -> Self {
        match e {
            Some(e) => WindowEstimate::Known(e),
            None => WindowEstimate::NoEstimator,
        }
    }
}

/// How an estimate stands against a [`PerformanceRule`].
#[derive(Debug, Clone, PartialEq)]
struct Standing {
    /// Known, over at least `min_samples` rows: the estimate may act alone.
    enough: bool,
    /// The estimate is below the floor.
    below: bool,
    /// The whole band is below the floor.
    surely_below: bool,
    /// The model is at risk: unknown, too few rows, below the floor, without a band, or
    /// fallen from the reference (the whole band below the estimate on the reference).
    at_risk: bool,
    /// The estimate in words.
    said: String,
}

impl PerformanceRule {
    fn standing(&self, estimate: WindowEstimate<'_>, min_samples: usize) -> Standing {
        let name = self.metric.as_str();
        let unknown = |said: String| Standing {
            enough: false,
            below: false,
            surely_below: false,
            at_risk: true,
            said,
        };
        if !(0.0..=1.0).contains(&self.min) {
            return unknown(format!(
                "the performance rule's floor {} is not in [0, 1]: estimated {name} not judged",
                self.min
            ));
        }
        let e = match estimate {
            WindowEstimate::Known(e) => e,
            WindowEstimate::Unknown(why) => {
                return unknown(format!("estimated {name} unknown ({why})"))
            }
            WindowEstimate::NoEstimator => {
                return unknown(format!("estimated {name} unknown (no estimator)"))
            }
        };
        let m = self.metric.of(e);
        let Some(value) = m.value else {
            return unknown(format!("estimated {name} unknown over {} rows", e.rows));
        };
        let band = match (m.lower, m.upper) {
            (Some(l), Some(u)) => format!("band {l:.4}..{u:.4}"),
            _ => "no band".to_string(),
        };
        let reference = m
            .reference
            .map_or(String::new(), |r| format!("; {r:.4} on the reference"));
        let enough = e.rows >= min_samples;
        let below = value < self.min;
        let surely_below = m.upper.is_some_and(|u| u < self.min);
        let fallen = match (m.upper, m.reference) {
            (Some(u), Some(r)) => u < r,
            _ => false,
        };
        // Without a reference to compare with, "not fallen" cannot be said: at risk.
        let at_risk = !enough || below || fallen || m.upper.is_none() || m.reference.is_none();
        let verdict = if !enough {
            format!("is over fewer rows than min_samples {min_samples}: at risk")
        } else if surely_below {
            format!("is below the gate's {} (its whole band)", self.min)
        } else if below {
            format!("is below the gate's {}", self.min)
        } else if fallen {
            "fell from the reference (its whole band below it)".to_string()
        } else if m.upper.is_none() {
            "has no band: at risk".to_string()
        } else if m.reference.is_none() {
            "has no reference to compare with: at risk".to_string()
        } else {
            format!(
                "holds: above the gate's {}, its band reaching the reference",
                self.min
            )
        };
        Standing {
            enough,
            below,
            surely_below,
            at_risk,
            said: format!(
                "estimated {name} {value:.4} ({band}{reference}) over {} rows {verdict}",
                e.rows
            ),
        }
    }
}

/// Columns the report could not test at all (absent, another kind): the monitor is blind
/// there.
fn blind_columns(report: &DriftReport) -> Vec<&str> {
    report
        .columns
        .iter()
        .filter(|c| c.status == ColumnStatus::Untestable && !c.drifted)
        .map(|c| c.column.as_str())
        .collect()
}

/// Current values in the smallest tested column (0 when none was tested).
fn tested_samples(report: &DriftReport) -> usize {
    report
        .columns
        .iter()
        .filter(|c| c.status == ColumnStatus::Tested)
        .map(|c| c.current_values)
        .min()
        .unwrap_or(0)
}

/// The longest `cooldown_seconds`: 100 years (a longer one is a mistake, not a policy).
pub const MAX_COOLDOWN_SECONDS: f64 = 100.0 * 366.0 * 86_400.0;

/// The range of [`DriftPolicyConfig::cooldown_seconds`].
const COOLDOWN_RANGE: mlops_core::duration::SecondsRange =
    mlops_core::duration::SecondsRange::new(0.0, MAX_COOLDOWN_SECONDS);

impl DriftPolicyConfig {
    /// Checks `cooldown_seconds` (a number from 0 to [`MAX_COOLDOWN_SECONDS`]);
    /// [`DriftMonitor::new`](crate::DriftMonitor::new) calls it.
    ///
    /// ```
    /// use mlops_drift::DriftPolicyConfig;
    /// let forever = DriftPolicyConfig { cooldown_seconds: 1e300, ..Default::default() };
    /// assert!(forever.validate().unwrap_err().to_string().starts_with("invalid DriftPolicyConfig.cooldown_seconds = 1e300"));
    /// // The name before issue 23 still loads.
    /// let old: DriftPolicyConfig = serde_json::from_str(r#"{"cooldown_secs": 60}"#)?;
    /// assert_eq!(old.cooldown_seconds, 60.0);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        mlops_core::duration::seconds(
            "DriftPolicyConfig.cooldown_seconds",
            self.cooldown_seconds,
            COOLDOWN_RANGE,
        )?;
        if let Some(rule) = &self.performance {
            if !(0.0..=1.0).contains(&rule.min) {
                return Err(Error::invalid(
                    "DriftPolicyConfig.performance.min",
                    rule.min,
                    "a metric floor in [0, 1]",
                ));
            }
        }
        Ok(())
    }
}

impl Default for DriftPolicyConfig {
    fn default() -> Self {
        DriftPolicyConfig {
            min_samples: 500,
            cooldown_seconds: 86_400.0,
            performance: None,
        }
    }
}

/// The policy's decision, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// The action.
    pub action: DriftAction,
    /// Why, in one sentence.
    pub reason: String,
}

/// Called when the policy decides to retrain (start a pipeline run, enqueue a job, page
/// someone). Implemented by the host.
#[async_trait::async_trait]
pub trait RetrainTrigger: Send + Sync {
    /// Starts a retrain of `model` because of `report`.
    async fn retrain(
        &self,
        model: &str,
        report: &DriftReport,
        reason: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    model: String,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EstimateLabels {
    model: String,
    metric: String,
    bound: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    model: String,
    action: DriftAction,
}

/// Prometheus metrics of drift checks, registered into the host's registry:
/// `mlops_drift_score{model,feature}` (the deciding test's statistic),
/// `mlops_drift_pvalue{model,feature}`, `mlops_drift_feature_tested{model,feature}` (1 when
/// the last check tested the feature's values, 0 when it could not: its score and p-value are
/// then NaN, never a stale "fine"), `mlops_drift_dataset_share{model}` and
/// `mlops_drift_alerts_total{model,action}`.
#[derive(Debug, Clone, Default)]
pub struct DriftMetrics {
    score: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    tested: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    p_value: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    share: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    alerts: Family<AlertLabels, Counter>,
    estimated: Family<EstimateLabels, Gauge<f64, AtomicU64>>,
}

impl DriftMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = DriftMetrics::default();
        registry.register(
            "mlops_drift_score",
            "Statistic of the deciding drift test per feature",
            m.score.clone(),
        );
        registry.register(
            "mlops_drift_pvalue",
            "Adjusted p-value of the deciding drift test per feature, where it has one",
            m.p_value.clone(),
        );
        registry.register(
            "mlops_drift_feature_tested",
            "1 when the last check tested the feature's values, 0 when it could not",
            m.tested.clone(),
        );
        registry.register(
            "mlops_drift_dataset_share",
            "Share of features that drifted in the last check",
            m.share.clone(),
        );
        registry.register(
            "mlops_drift_alerts",
            "Drift checks that ended in a warning or a retrain",
            m.alerts.clone(),
        );
        registry.register(
            "mlops_drift_estimated_performance",
            "Performance estimated from calibrated scores before labels arrive (CBPE): bound value, lower or upper (estimate -+ 3 sampling errors), or reference (on the rows the estimator was fitted on); NaN when unknown",
            m.estimated.clone(),
        );
        m
    }

    /// Records the window's estimated performance: every rate's value and band; NaN for each
    /// when there is no estimate (unknown, never the last window's value).
    pub fn observe_estimate(&self, model: &str, estimate: Option<&PerformanceEstimate>) {
        for (i, metric) in PerformanceEstimate::RATES.iter().enumerate() {
            let e: Estimated = estimate.map(|e| *e.rates()[i].1).unwrap_or_default();
            for (bound, v) in [
                ("value", e.value),
                ("lower", e.lower),
                ("upper", e.upper),
                ("reference", e.reference),
            ] {
                self.estimated
                    .get_or_create(&EstimateLabels {
                        model: model.to_string(),
                        metric: (*metric).to_string(),
                        bound: bound.to_string(),
                    })
                    .set(v.unwrap_or(f64::NAN));
            }
        }
    }

    /// Records a report and its decision.
    pub fn observe(&self, model: &str, report: &DriftReport, decision: &PolicyDecision) {
        for c in &report.columns {
            let labels = FeatureLabels {
                model: model.to_string(),
                feature: c.column.clone(),
            };
            let tested = c.status == ColumnStatus::Tested;
            self.tested
                .get_or_create(&labels)
                .set(if tested { 1.0 } else { 0.0 });
            match c.tests.first() {
                Some(t) if tested => {
                    self.score.get_or_create(&labels).set(t.statistic);
                    self.p_value
                        .get_or_create(&labels)
                        .set(t.adjusted_p_value.or(t.p_value).unwrap_or(f64::NAN));
                }
                // Unknown, not the last check's value.
                _ => {
                    self.score.get_or_create(&labels).set(f64::NAN);
                    self.p_value.get_or_create(&labels).set(f64::NAN);
                }
            }
        }
        self.share
            .get_or_create(&vec![("model".to_string(), model.to_string())])
            .set(report.dataset.share_rule.observed);
        if decision.action != DriftAction::None {
            self.alerts
                .get_or_create(&AlertLabels {
                    model: model.to_string(),
                    action: decision.action,
                })
                .inc();
        }
    }
}

/// The policy: decides, respects the cooldown, calls the trigger, records metrics.
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use mlops_core::clock::ManualClock;
/// use mlops_core::Dataset;
/// use mlops_drift::{DriftAction, CheckedDriftConfig, DriftConfig, DriftPolicy, DriftPolicyConfig, ProfileConfig, ReferenceProfile};
/// use ndarray::Array2;
///
/// let data = |shift: f32| Dataset::new(Array2::from_shape_fn((800, 2), |(i, _)| (i % 90) as f32 + shift), vec!["a".into(), "b".into()]);
/// let profile = ReferenceProfile::fit(&data(0.0)?, &ProfileConfig::default())?;
/// let report = profile.compare(&data(30.0)?, &CheckedDriftConfig::default())?;
/// let policy = DriftPolicy::new(DriftPolicyConfig::default(), Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)));
/// assert_eq!(policy.decide(&report).action, DriftAction::Retrain);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub struct DriftPolicy {
    config: DriftPolicyConfig,
    clock: Arc<dyn Clock>,
    last_retrain: Mutex<Option<SystemTime>>,
    metrics: Option<DriftMetrics>,
}

impl std::fmt::Debug for DriftPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftPolicy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DriftPolicy {
    /// A policy reading time from `clock`.
    pub fn new(config: DriftPolicyConfig, clock: Arc<dyn Clock>) -> Self {
        DriftPolicy {
            config,
            clock,
            last_retrain: Mutex::new(None),
            metrics: None,
        }
    }

    /// The policy's parameters.
    pub fn config(&self) -> &DriftPolicyConfig {
        &self.config
    }

    /// A policy on the system clock.
    pub fn with_system_clock(config: DriftPolicyConfig) -> Self {
        Self::new(config, Arc::new(SystemClock))
    }

    /// Records every decision into `metrics`.
    pub fn with_metrics(mut self, metrics: DriftMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn cooldown_left(&self) -> Option<Duration> {
        let last = (*self.last_retrain.lock().unwrap_or_else(|e| e.into_inner()))?;
        // A cooldown no `Duration` holds (past `u64::MAX` seconds, or not a number: only
        // when `validate` was skipped) never ends: all of it is left.
        let Ok(cooldown) = Duration::try_from_secs_f64(self.config.cooldown_seconds) else {
            return Some(Duration::MAX);
        };
        // A cooldown past what `SystemTime` holds never ends either.
        let Some(until) = last.checked_add(cooldown) else {
            return Some(cooldown);
        };
        until
            .duration_since(self.clock.now())
            .ok()
            .filter(|d| !d.is_zero())
    }

    /// The action for `report`, without side effects (no estimated performance: a
    /// [`PerformanceRule`], if configured, reads it as unknown).
    pub fn decide(&self, report: &DriftReport) -> PolicyDecision {
        self.decide_with(report, None)
    }

    /// The action for `report` and the window's estimated performance, without side
    /// effects ([`decide_estimated`](Self::decide_estimated) with `None` read as "no
    /// estimator").
    pub fn decide_with(
        &self,
        report: &DriftReport,
        estimate: Option<&PerformanceEstimate>,
    ) -> PolicyDecision {
        self.decide_estimated(report, estimate.into())
    }

    /// The action for `report` and what is known of the window's performance, without side
    /// effects. Without a [`PerformanceRule`] drift alone decides. With one:
    /// - an estimate over at least `min_samples` rows below the rule's floor retrains, drift or
    ///   not (outside the cooldown); in [`DriftMode::WhenAtRisk`] its whole band must be below;
    /// - in `WhenAtRisk` drift acts only when the model is at risk: the estimate is unknown,
    ///   over too few rows, below the floor, without a band, or fallen from the reference (its
    ///   whole band below the estimate on the reference); drift while it holds is not acted
    ///   on, but a column the monitor cannot test still warns, naming it;
    /// - an unknown estimate on a window large enough to judge is at least a warning (unknown
    ///   is never "fine"), and so is an estimate below the floor that `WhenAtRisk` does not
    ///   yet act on.
    pub fn decide_estimated(
        &self,
        report: &DriftReport,
        estimate: WindowEstimate<'_>,
    ) -> PolicyDecision {
        let drift = self.decide_drift(report);
        let Some(rule) = &self.config.performance else {
            return drift;
        };
        let st = rule.standing(estimate, self.config.min_samples);
        // `always` retrains on an estimate below the floor; `when_at_risk` on one whose whole
        // band is below it (a window of few positives has a wide band: not an alarm alone).
        let retrain = match rule.mode {
            DriftMode::Always => st.below,
            DriftMode::WhenAtRisk => st.surely_below,
        };
        if retrain && st.enough {
            if let Some(left) = self.cooldown_left() {
                return PolicyDecision {
                    action: DriftAction::Warn,
                    reason: format!(
                        "{}, but the last retrain was recent: {}s of cooldown left",
                        st.said,
                        left.as_secs()
                    ),
                };
            }
            return PolicyDecision {
                action: DriftAction::Retrain,
                reason: format!("{}; {}", st.said, drift.reason),
            };
        }
        let blind = blind_columns(report);
        let from_drift = report.dataset.drifted || report.dataset.columns_drifted > 0;
        if rule.mode == DriftMode::WhenAtRisk
            && !st.at_risk
            && from_drift
            && drift.action != DriftAction::None
        {
            if !blind.is_empty() {
                return PolicyDecision {
                    action: DriftAction::Warn,
                    reason: format!(
                        "{}, and {}; but {} column(s) cannot be tested: {}",
                        drift.reason,
                        st.said,
                        blind.len(),
                        blind.join(", ")
                    ),
                };
            }
            return PolicyDecision {
                action: DriftAction::None,
                reason: format!("{}, but {}: not acting", drift.reason, st.said),
            };
        }
        let judged = tested_samples(report) >= self.config.min_samples;
        if drift.action == DriftAction::None && judged && (!st.enough || st.below) {
            return PolicyDecision {
                action: DriftAction::Warn,
                reason: format!("{}; {}: watching", drift.reason, st.said),
            };
        }
        PolicyDecision {
            action: drift.action,
            reason: format!("{}; {}", drift.reason, st.said),
        }
    }

    fn decide_drift(&self, report: &DriftReport) -> PolicyDecision {
        // Columns that cannot be tested at all (absent, another kind) are a problem to report
        // whatever the batch size: the monitor is blind there, which is not "no drift".
        let blind = blind_columns(report);
        if !blind.is_empty() && !report.dataset.drifted {
            return PolicyDecision {
                action: DriftAction::Warn,
                reason: format!(
                    "incomplete: {} column(s) cannot be tested: {}",
                    blind.len(),
                    blind.join(", ")
                ),
            };
        }
        let samples = tested_samples(report);
        if samples < self.config.min_samples {
            return PolicyDecision {
                action: DriftAction::None,
                reason: format!(
                    "{samples} current values, fewer than min_samples {}: not acting",
                    self.config.min_samples
                ),
            };
        }
        let d = &report.dataset;
        if d.drifted {
            if let Some(left) = self.cooldown_left() {
                return PolicyDecision {
                    action: DriftAction::Warn,
                    reason: format!("dataset drifted ({}/{} columns) but the last retrain was recent: {}s of cooldown left", d.columns_drifted, d.columns_tested, left.as_secs()),
                };
            }
            return PolicyDecision {
                action: DriftAction::Retrain,
                reason: format!(
                    "dataset drifted: {}/{} columns",
                    d.columns_drifted, d.columns_tested
                ),
            };
        }
        if d.columns_drifted > 0 {
            let names: Vec<&str> = report
                .drifted_columns()
                .map(|c| c.column.as_str())
                .collect();
            return PolicyDecision {
                action: DriftAction::Warn,
                reason: format!(
                    "columns drifted without dataset drift: {}",
                    names.join(", ")
                ),
            };
        }
        if d.verdict == Verdict::Incomplete {
            return PolicyDecision {
                action: DriftAction::Warn,
                reason: format!(
                    "incomplete: no drift among {} tested columns, but {} could not be tested: {}",
                    d.columns_tested,
                    d.columns_not_tested.len(),
                    d.columns_not_tested.join(", ")
                ),
            };
        }
        PolicyDecision {
            action: DriftAction::None,
            reason: "no drift".into(),
        }
    }

    /// Decides, records metrics, and on `Retrain` calls `trigger` and starts the cooldown.
    /// A failing trigger is an error (and no cooldown starts, so the next check retries).
    pub async fn apply(
        &self,
        model: &str,
        report: &DriftReport,
        trigger: &dyn RetrainTrigger,
    ) -> Result<PolicyDecision> {
        self.apply_with(model, report, WindowEstimate::NoEstimator, trigger)
            .await
    }

    /// [`apply`](Self::apply) with what is known of the window's performance
    /// ([`decide_estimated`](Self::decide_estimated)); the metrics record the estimate too
    /// when the policy has a performance rule or the window an estimate.
    pub async fn apply_with(
        &self,
        model: &str,
        report: &DriftReport,
        estimate: WindowEstimate<'_>,
        trigger: &dyn RetrainTrigger,
    ) -> Result<PolicyDecision> {
        let decision = self.decide_estimated(report, estimate);
        if let Some(m) = &self.metrics {
            m.observe(model, report, &decision);
            // Written whenever something estimates (NaN when it could not: never the last
            // window's value) or a rule reads the estimate.
            match estimate {
                WindowEstimate::Known(e) => m.observe_estimate(model, Some(e)),
                WindowEstimate::Unknown(_) => m.observe_estimate(model, None),
                WindowEstimate::NoEstimator if self.config.performance.is_some() => {
                    m.observe_estimate(model, None)
                }
                WindowEstimate::NoEstimator => {}
            }
        }
        tracing::info!(model, action = ?decision.action, reason = %decision.reason, "drift policy decided");
        if decision.action == DriftAction::Retrain {
            trigger
                .retrain(model, report, &decision.reason)
                .await
                .map_err(|e| {
                    Error::invalid(
                        format!("retrain trigger for model `{model}`"),
                        e,
                        "a trigger that succeeds",
                    )
                })?;
            *self.last_retrain.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.clock.now());
        }
        Ok(decision)
    }
}
