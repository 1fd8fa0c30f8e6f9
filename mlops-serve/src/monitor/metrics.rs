//! The live monitor's Prometheus families.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The monitor's metric names, as registered (a counter is exposed with `_total` appended).
///
/// ```
/// assert_eq!(mlops_serve::monitor::names::VERDICT, "mlops_monitor_verdict");
/// ```
pub mod names {
    /// The deciding test's statistic of a feature at the last check, NaN when it could not
    /// be tested (gauge: model, version, feature).
    pub const DRIFT_SCORE: &str = "mlops_monitor_drift_score";
    /// Its p-value (after the correction), NaN when untested or a test without one (gauge:
    /// model, version, feature).
    pub const DRIFT_PVALUE: &str = "mlops_monitor_drift_pvalue";
    /// 1 when the last check tested the feature, 0 when it could not (gauge: model,
    /// version, feature).
    pub const FEATURE_TESTED: &str = "mlops_monitor_feature_tested";
    /// The prediction profile's test statistic against the window's scores, NaN when the
    /// version has no prediction profile (gauge: model, version).
    pub const PREDICTION_DRIFT_SCORE: &str = "mlops_monitor_prediction_drift_score";
    /// Its p-value, NaN when unknown (gauge: model, version).
    pub const PREDICTION_DRIFT_PVALUE: &str = "mlops_monitor_prediction_drift_pvalue";
    /// 1 for the last check's verdict, 0 for the others: `no_drift`, `drift`, `incomplete`,
    /// or `unknown` (no check yet, or no reference profile) (gauge: model, version,
    /// verdict).
    pub const VERDICT: &str = "mlops_monitor_verdict";
    /// Share of tested features that drifted at the last check (gauge: model, version).
    pub const DRIFTED_SHARE: &str = "mlops_monitor_drifted_share";
    /// Rows in the version's drift window now (gauge: model, version).
    pub const WINDOW_ROWS: &str = "mlops_monitor_window_rows";
    /// Checks, by the policy's action: `none`, `warn`, `retrain` (counter: model, version,
    /// action).
    pub const CHECKS: &str = "mlops_monitor_checks";
    /// Retrain alarms, by outcome: `requested` (this replica claimed the request),
    /// `cooldown`, `lost_race` (another replica claimed it), `deferred` (a rollout runs),
    /// `ledger_failed` (counter: model, outcome).
    pub const RETRAIN_ALARMS: &str = "mlops_monitor_retrain_alarms";
    /// Hook deliveries, by hook (`webhook`, `command`, `any`) and outcome (`delivered`,
    /// `attempt_failed`, `failed`, `dropped`) (counter: model, hook, outcome).
    pub const HOOK_DELIVERIES: &str = "mlops_monitor_hook_deliveries";
    /// A live metric (`roc_auc`, `accuracy`, ... at the variant's threshold) over the
    /// version's last labeled rows, NaN when undefined there (one class) (gauge: model,
    /// version, metric).
    pub const LIVE_METRIC: &str = "mlops_monitor_live_metric";
    /// Labeled rows behind the live metrics (gauge: model, version).
    pub const LIVE_SAMPLES: &str = "mlops_monitor_live_samples";
    /// Positive rows among them (gauge: model, version).
    pub const LIVE_POSITIVES: &str = "mlops_monitor_live_positives";
    /// Gauge `{model, version, group, metric}`: selection rate, true and false positive rates
    /// of each sensitive group over the version's last labeled rows (NaN: undefined).
    pub const GROUP_METRIC: &str = "mlops_monitor_group_metric";
    /// Gauge `{model, version, group}`: labeled rows of each sensitive group in the window.
    pub const GROUP_ROWS: &str = "mlops_monitor_group_rows";
    /// Gauge `{model, version, metric}`: a disparity (`demographic_parity_difference`,
    /// `equalized_odds_difference`) over the version's last labeled rows (NaN: undefined,
    /// or a group below the minimum size).
    pub const FAIRNESS: &str = "mlops_monitor_fairness";
    /// Gauge `{model, version, metric, bound}`: a rate (`roc_auc`, `accuracy`, `precision`,
    /// `recall`, `f1`) estimated from the window's calibrated scores before labels arrive
    /// (CBPE), `bound` `value`, `lower` or `upper` (estimate ∓ 3 sampling errors), and
    /// `reference` (the same estimate on the rows the estimator was fitted on); NaN when unknown (no
    /// estimator stored with the version, no value in the window).
    pub const ESTIMATED_PERFORMANCE: &str = "mlops_monitor_estimated_performance";
    /// Rows the monitor took (counter: model).
    pub const ROWS: &str = "mlops_monitor_rows";
    /// Rows (scored or labeled) not monitored, by reason: `queue_full`, `closed`,
    /// `unknown_version` (labels of a version this monitor never saw score, or forgot)
    /// (counter: model, reason).
    pub const DROPPED: &str = "mlops_monitor_dropped";
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FeatureLabels {
    pub(crate) model: String,
    pub(crate) version: String,
    pub(crate) feature: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabels {
    pub(crate) model: String,
    pub(crate) version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    model: String,
    version: String,
    verdict: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    model: String,
    version: String,
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    model: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    model: String,
    hook: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    model: String,
    version: String,
    metric: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    model: String,
    version: String,
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupMetricLabels {
    model: String,
    version: String,
    group: String,
    metric: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EstimateLabels {
    model: String,
    version: String,
    metric: String,
    bound: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    model: String,
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The per-group rates the monitor shows.
pub(crate) const GROUP_RATES: [mlops_core::fairness::GroupMetric; 3] = [
    mlops_core::fairness::GroupMetric::SelectionRate,
    mlops_core::fairness::GroupMetric::TruePositiveRate,
    mlops_core::fairness::GroupMetric::FalsePositiveRate,
];

/// The disparities the monitor shows.
pub(crate) const LIVE_DISPARITIES: [mlops_core::fairness::Disparity; 2] = [
    mlops_core::fairness::Disparity::DemographicParityDifference,
    mlops_core::fairness::Disparity::EqualizedOddsDifference,
];

/// The verdicts a version can be in.
pub(crate) const VERDICTS: [&str; 4] = ["no_drift", "drift", "incomplete", "unknown"];

/// The live monitor's Prometheus families: registered in the host's registry, or
/// unregistered. A series appears with the first row of its model or version.
///
/// ```
/// use std::sync::Arc;
/// use mlops_serve::monitor::*;
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let mut parts = MonitorParts::new(Arc::new(MemoryProfiles::new()), Arc::new(MemoryRetrainLedger::new()));
/// parts.metrics = MonitorMetrics::register(&mut registry);
/// let monitor = LiveMonitor::start(LiveMonitorConfig::default().check()?, parts)?;
/// let (model, features): (Arc<str>, Arc<[String]>) = ("fraud".into(), vec!["amount".to_string()].into());
/// let x = ndarray::array![[1.0_f32], [2.0], [3.0]];
/// monitor.record_scored(&Observed { model: &model, features: &features, version: Some(1), x: x.view(), predictions: &[0.1, 0.2, 0.3] });
/// monitor.sync(std::time::Duration::from_secs(60))?;
/// let text = mlops_core::exposition::classic_text(&registry)?;
/// assert!(text.contains(r#"mlops_monitor_rows_total{model="fraud"} 3"#), "{text}");
/// assert!(text.contains(r#"mlops_monitor_verdict{model="fraud",version="1",verdict="unknown"} 1"#), "{text}");
/// monitor.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MonitorMetrics {
    score: Family<FeatureLabels, FloatGauge>,
    p_value: Family<FeatureLabels, FloatGauge>,
    tested: Family<FeatureLabels, Gauge>,
    prediction_score: Family<VersionLabels, FloatGauge>,
    prediction_p_value: Family<VersionLabels, FloatGauge>,
    verdict: Family<VerdictLabels, Gauge>,
    share: Family<VersionLabels, FloatGauge>,
    window: Family<VersionLabels, Gauge>,
    checks: Family<ActionLabels, Counter>,
    alarms: Family<OutcomeLabels, Counter>,
    hooks: Family<HookLabels, Counter>,
    live: Family<MetricLabels, FloatGauge>,
    estimated: Family<EstimateLabels, FloatGauge>,
    samples: Family<VersionLabels, Gauge>,
    positives: Family<VersionLabels, Gauge>,
    group_metric: Family<GroupMetricLabels, FloatGauge>,
    group_rows: Family<GroupLabels, Gauge>,
    fairness: Family<MetricLabels, FloatGauge>,
    rows: Family<ModelLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
}

impl MonitorMetrics {
    /// Families registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = MonitorMetrics::default();
        use names::*;
        registry.register(
            DRIFT_SCORE,
            "Drift statistic of a feature at the last check (NaN: untested)",
            m.score.clone(),
        );
        registry.register(
            DRIFT_PVALUE,
            "Drift p-value of a feature at the last check (NaN: untested)",
            m.p_value.clone(),
        );
        registry.register(
            FEATURE_TESTED,
            "1 when the last check tested the feature",
            m.tested.clone(),
        );
        registry.register(
            PREDICTION_DRIFT_SCORE,
            "Prediction drift statistic at the last check (NaN: unknown)",
            m.prediction_score.clone(),
        );
        registry.register(
            PREDICTION_DRIFT_PVALUE,
            "Prediction drift p-value at the last check (NaN: unknown)",
            m.prediction_p_value.clone(),
        );
        registry.register(
            VERDICT,
            "1 for the version's verdict at the last check",
            m.verdict.clone(),
        );
        registry.register(
            DRIFTED_SHARE,
            "Share of tested features that drifted at the last check",
            m.share.clone(),
        );
        registry.register(
            WINDOW_ROWS,
            "Rows in the version's drift window",
            m.window.clone(),
        );
        registry.register(
            CHECKS,
            "Drift checks by the policy's action",
            m.checks.clone(),
        );
        registry.register(
            RETRAIN_ALARMS,
            "Retrain alarms by outcome",
            m.alarms.clone(),
        );
        registry.register(
            HOOK_DELIVERIES,
            "Retrain hook deliveries by hook and outcome",
            m.hooks.clone(),
        );
        registry.register(
            LIVE_METRIC,
            "Live metric over the version's last labeled rows (NaN: undefined)",
            m.live.clone(),
        );
        registry.register(
            ESTIMATED_PERFORMANCE,
            "A rate estimated before labels from the window's calibrated scores (CBPE): bound value, lower, upper (-+ 3 sampling errors) or reference (on the rows the estimator was fitted on); NaN: unknown",
            m.estimated.clone(),
        );
        registry.register(
            LIVE_SAMPLES,
            "Labeled rows behind the live metrics",
            m.samples.clone(),
        );
        registry.register(
            LIVE_POSITIVES,
            "Positive rows behind the live metrics",
            m.positives.clone(),
        );
        registry.register(
            GROUP_METRIC,
            "Live rate of a sensitive group over the version's last labeled rows (NaN: undefined)",
            m.group_metric.clone(),
        );
        registry.register(
            GROUP_ROWS,
            "Labeled rows of a sensitive group behind the live group metrics",
            m.group_rows.clone(),
        );
        registry.register(
            FAIRNESS,
            "Live disparity over the version's last labeled rows (NaN: undefined or a group too small)",
            m.fairness.clone(),
        );
        registry.register(ROWS, "Rows the monitor took", m.rows.clone());
        registry.register(DROPPED, "Rows not monitored, by reason", m.dropped.clone());
        m
    }

    /// Families in no registry (counted, never exposed).
    pub fn unregistered() -> Self {
        MonitorMetrics::default()
    }

    pub(crate) fn rows(&self, model: &str, n: u64) {
        self.rows
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .inc_by(n);
    }

    pub(crate) fn dropped(&self, model: &str, reason: &str, n: u64) {
        self.dropped
            .get_or_create(&ReasonLabels {
                model: model.into(),
                reason: reason.into(),
            })
            .inc_by(n);
    }

    pub(crate) fn hook(&self, model: &str, hook: &str, outcome: &str) {
        self.hooks
            .get_or_create(&HookLabels {
                model: model.into(),
                hook: hook.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn alarm(&self, model: &str, outcome: &str) {
        self.alarms
            .get_or_create(&OutcomeLabels {
                model: model.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn check(&self, v: &VersionLabels, action: &str) {
        self.checks
            .get_or_create(&ActionLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                action: action.into(),
            })
            .inc();
    }

    pub(crate) fn window(&self, v: &VersionLabels, rows: usize) {
        self.window.get_or_create(v).set(rows as i64);
    }

    pub(crate) fn verdict(&self, v: &VersionLabels, verdict: &str) {
        for name in VERDICTS {
            let labels = VerdictLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                verdict: name.into(),
            };
            self.verdict
                .get_or_create(&labels)
                .set(i64::from(name == verdict));
        }
    }

    pub(crate) fn share(&self, v: &VersionLabels, share: f64) {
        self.share.get_or_create(v).set(share);
    }

    /// A feature's last check: `None` when it could not be tested (NaN, tested 0).
    pub(crate) fn feature(
        &self,
        v: &VersionLabels,
        feature: &str,
        outcome: Option<(f64, Option<f64>)>,
    ) {
        let labels = FeatureLabels {
            model: v.model.clone(),
            version: v.version.clone(),
            feature: feature.into(),
        };
        let (score, p) = match outcome {
            Some((s, p)) => (s, p.unwrap_or(f64::NAN)),
            None => (f64::NAN, f64::NAN),
        };
        self.tested
            .get_or_create(&labels)
            .set(i64::from(outcome.is_some()));
        self.score.get_or_create(&labels).set(score);
        self.p_value.get_or_create(&labels).set(p);
    }

    pub(crate) fn prediction(&self, v: &VersionLabels, outcome: Option<(f64, Option<f64>)>) {
        let (score, p) = match outcome {
            Some((s, p)) => (s, p.unwrap_or(f64::NAN)),
            None => (f64::NAN, f64::NAN),
        };
        self.prediction_score.get_or_create(v).set(score);
        self.prediction_p_value.get_or_create(v).set(p);
    }

    pub(crate) fn live(&self, v: &VersionLabels, metric: &str, value: f64) {
        self.live
            .get_or_create(&MetricLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                metric: metric.into(),
            })
            .set(value);
    }

    pub(crate) fn estimated(
        &self,
        v: &VersionLabels,
        estimate: Option<&mlops_core::cbpe::PerformanceEstimate>,
    ) {
        for (i, metric) in mlops_core::cbpe::PerformanceEstimate::RATES
            .iter()
            .enumerate()
        {
            let e = estimate.map(|e| *e.rates()[i].1).unwrap_or_default();
            for (bound, value) in [
                ("value", e.value),
                ("lower", e.lower),
                ("upper", e.upper),
                ("reference", e.reference),
            ] {
                self.estimated
                    .get_or_create(&EstimateLabels {
                        model: v.model.clone(),
                        version: v.version.clone(),
                        metric: (*metric).into(),
                        bound: bound.into(),
                    })
                    .set(value.unwrap_or(f64::NAN));
            }
        }
    }

    pub(crate) fn samples(&self, v: &VersionLabels, samples: usize, positives: usize) {
        self.samples.get_or_create(v).set(samples as i64);
        self.positives.get_or_create(v).set(positives as i64);
    }

    pub(crate) fn group(&self, v: &VersionLabels, group: &str, rows: usize, rates: &[(&str, f64)]) {
        self.group_rows
            .get_or_create(&GroupLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                group: group.into(),
            })
            .set(rows as i64);
        for (metric, value) in rates {
            self.group_metric
                .get_or_create(&GroupMetricLabels {
                    model: v.model.clone(),
                    version: v.version.clone(),
                    group: group.into(),
                    metric: (*metric).into(),
                })
                .set(*value);
        }
    }

    pub(crate) fn fairness(&self, v: &VersionLabels, measure: &str, value: f64) {
        self.fairness
            .get_or_create(&MetricLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                metric: measure.into(),
            })
            .set(value);
    }

    /// Removes the group series of a version (its groups left the window, or it was
    /// forgotten).
    pub(crate) fn forget_groups(&self, v: &VersionLabels, groups: &[Arc<str>]) {
        for g in groups {
            self.group_rows.remove(&GroupLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                group: g.to_string(),
            });
            for metric in GROUP_RATES {
                self.group_metric.remove(&GroupMetricLabels {
                    model: v.model.clone(),
                    version: v.version.clone(),
                    group: g.to_string(),
                    metric: metric.name().into(),
                });
            }
        }
        for measure in LIVE_DISPARITIES {
            self.fairness.remove(&MetricLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                metric: measure.name().into(),
            });
        }
    }

    /// Removes every series of a version the monitor forgot.
    pub(crate) fn forget(&self, v: &VersionLabels, features: &[String]) {
        for f in features {
            let labels = FeatureLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                feature: f.clone(),
            };
            self.score.remove(&labels);
            self.p_value.remove(&labels);
            self.tested.remove(&labels);
        }
        for name in VERDICTS {
            self.verdict.remove(&VerdictLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                verdict: name.into(),
            });
        }
        for m in mlops_core::metrics::Metric::ALL {
            self.live.remove(&MetricLabels {
                model: v.model.clone(),
                version: v.version.clone(),
                metric: m.as_str().into(),
            });
        }
        self.prediction_score.remove(v);
        self.prediction_p_value.remove(v);
        self.share.remove(v);
        self.window.remove(v);
        self.samples.remove(v);
        self.positives.remove(v);
    }
}
