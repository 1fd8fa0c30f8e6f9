//! Metric gates: the go/no-go decision before a model is registered or promoted.
//!
//! A [`MetricGate`] is a list of rules, each either absolute (`min`/`max` on a metric) or
//! relative to the current champion (candidate no worse than champion minus a tolerance,
//! optionally judged on the candidate's pessimistic bootstrap bound). Evaluating a gate never
//! fails: a missing metric or champion is a failed (or skipped) rule with a reason.
//!
//! ```
//! use mlops_core::gate::{MetricGate, MetricValues};
//! use mlops_core::metrics::Metric;
//!
//! let gate = MetricGate::default(); // accuracy >= 0.85, roc_auc >= 0.90
//! let candidate = MetricValues::new()
//!     .with(Metric::Accuracy, 0.91)
//!     .with(Metric::RocAuc, 0.88);
//! let decision = gate.evaluate(&candidate, None);
//! assert!(!decision.passed);
//! assert!(decision.results[1].reason.contains("roc_auc"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{ConfidenceInterval, Metric, MetricReport};

/// One rule of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GateRule {
    /// `metric >= value`.
    Min {
        /// The metric.
        metric: Metric,
        /// The smallest acceptable value.
        value: f64,
    },
    /// `metric <= value`.
    Max {
        /// The metric.
        metric: Metric,
        /// The largest acceptable value.
        value: f64,
    },
    /// No worse than the champion: `candidate >= champion - tolerance` for metrics where higher
    /// is better, `candidate <= champion + tolerance` for losses. With `use_confidence_bound`,
    /// the candidate's pessimistic bootstrap bound (lower, or upper for losses) is compared
    /// instead of its point estimate.
    Champion {
        /// The metric.
        metric: Metric,
        /// How much worse than the champion is still acceptable, `>= 0`.
        #[serde(default)]
        tolerance: f64,
        /// Compare the candidate's bootstrap bound rather than its estimate.
        #[serde(default)]
        use_confidence_bound: bool,
    },
}

impl GateRule {
    /// The metric the rule reads.
    pub fn metric(&self) -> Metric {
        match *self {
            GateRule::Min { metric, .. }
            | GateRule::Max { metric, .. }
            | GateRule::Champion { metric, .. } => metric,
        }
    }
}

/// A gate: every rule must pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricGate {
    /// The rules, all of which must pass.
    pub rules: Vec<GateRule>,
    /// Whether champion rules pass when there is no champion yet (the first model). Default
    /// true.
    pub pass_without_champion: bool,
}

impl Default for MetricGate {
    /// The seed's gate: accuracy >= 0.85 and ROC AUC >= 0.90.
    fn default() -> Self {
        MetricGate {
            rules: vec![
                GateRule::Min {
                    metric: Metric::Accuracy,
                    value: 0.85,
                },
                GateRule::Min {
                    metric: Metric::RocAuc,
                    value: 0.90,
                },
            ],
            pass_without_champion: true,
        }
    }
}

/// Metric values (and optional bootstrap intervals) of one model on one dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    /// Point estimates.
    pub values: BTreeMap<Metric, f64>,
    /// Bootstrap intervals, where computed.
    #[serde(default)]
    pub intervals: BTreeMap<Metric, ConfidenceInterval>,
}

impl MetricValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a point estimate.
    pub fn with(mut self, metric: Metric, value: f64) -> Self {
        self.values.insert(metric, value);
        self
    }

    /// From `name → value` pairs, such as a registry record's or a tracked run's metrics: the
    /// pairs whose name is a [`Metric`] name (`roc_auc`, `log_loss`, ...); other names (a
    /// custom score, `val_loss`) are not gate metrics and are left out.
    ///
    /// ```
    /// use mlops_core::gate::MetricValues;
    /// use mlops_core::metrics::Metric;
    ///
    /// let recorded = [("roc_auc", 0.97), ("latency_ms", 3.0)];
    /// let v = MetricValues::from_named(recorded);
    /// assert_eq!(v.values[&Metric::RocAuc], 0.97);
    /// assert_eq!(v.values.len(), 1);
    /// assert_eq!(v.to_named()["roc_auc"], 0.97);
    /// ```
    pub fn from_named<N: AsRef<str>>(pairs: impl IntoIterator<Item = (N, f64)>) -> Self {
        let mut out = MetricValues::new();
        for (name, value) in pairs {
            if let Ok(metric) = name.as_ref().parse::<Metric>() {
                out.values.insert(metric, value);
            }
        }
        out
    }

    /// The point estimates as `name → value` (what a registry record or a tracker stores).
    pub fn to_named(&self) -> BTreeMap<String, f64> {
        self.values
            .iter()
            .map(|(m, v)| (m.name().to_string(), *v))
            .collect()
    }

    /// Adds a bootstrap interval (and its estimate as the point value).
    pub fn with_interval(mut self, metric: Metric, ci: ConfidenceInterval) -> Self {
        self.values.insert(metric, ci.estimate);
        self.intervals.insert(metric, ci);
        self
    }
}

impl From<&MetricReport> for MetricValues {
    fn from(report: &MetricReport) -> Self {
        MetricValues {
            values: report.to_values(),
            intervals: BTreeMap::new(),
        }
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    /// The rule.
    pub rule: GateRule,
    /// Whether it passed.
    pub passed: bool,
    /// The candidate value compared (estimate or bound), if there was one.
    pub observed: Option<f64>,
    /// The bound it was compared against, if there was one.
    pub required: Option<f64>,
    /// A sentence saying why it passed or failed.
    pub reason: String,
}

/// The decision of a gate, with a reason per rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    /// True when every rule passed.
    pub passed: bool,
    /// One outcome per rule, in rule order.
    pub results: Vec<RuleOutcome>,
}

impl GateDecision {
    /// The outcomes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &RuleOutcome> {
        self.results.iter().filter(|r| !r.passed)
    }
}

impl std::fmt::Display for GateDecision {
    /// `PASSED` or `FAILED`, then one line per rule with its reason.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed = self.failures().count();
        if self.passed {
            write!(f, "gate PASSED ({} rules)", self.results.len())?;
        } else {
            write!(f, "gate FAILED ({failed} of {} rules)", self.results.len())?;
        }
        for r in &self.results {
            write!(
                f,
                "\n  {} {}",
                if r.passed { "pass" } else { "FAIL" },
                r.reason
            )?;
        }
        Ok(())
    }
}

impl MetricGate {
    /// Checks the rules: finite bounds, tolerances `>= 0`, bounds of rate metrics in [0, 1].
    pub fn validate(&self) -> Result<()> {
        for (i, rule) in self.rules.iter().enumerate() {
            match *rule {
                GateRule::Min { metric, value } | GateRule::Max { metric, value } => {
                    let bounded = !matches!(metric, Metric::LogLoss);
                    if !value.is_finite() || (bounded && !(0.0..=1.0).contains(&value)) {
                        return Err(Error::invalid(
                            format!("MetricGate.rules[{i}].value"),
                            value,
                            if bounded {
                                format!("a number in [0, 1] for {metric}")
                            } else {
                                "a finite number".to_string()
                            },
                        ));
                    }
                }
                GateRule::Champion { tolerance, .. } => {
                    if !(tolerance.is_finite() && tolerance >= 0.0) {
                        return Err(Error::invalid(
                            format!("MetricGate.rules[{i}].tolerance"),
                            tolerance,
                            "a finite number >= 0",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies every rule to `candidate`, comparing with `champion` where a rule asks.
    pub fn evaluate(
        &self,
        candidate: &MetricValues,
        champion: Option<&MetricValues>,
    ) -> GateDecision {
        let results: Vec<RuleOutcome> = self
            .rules
            .iter()
            .map(|rule| self.apply(rule, candidate, champion))
            .collect();
        let passed = results.iter().all(|r| r.passed);
        tracing::debug!(passed, rules = results.len(), "metric gate evaluated");
        GateDecision { passed, results }
    }

    fn apply(
        &self,
        rule: &GateRule,
        candidate: &MetricValues,
        champion: Option<&MetricValues>,
    ) -> RuleOutcome {
        let metric = rule.metric();
        let outcome = |passed: bool, observed, required, reason: String| RuleOutcome {
            rule: *rule,
            passed,
            observed,
            required,
            reason,
        };
        let Some(&value) = candidate.values.get(&metric) else {
            return outcome(
                false,
                None,
                None,
                format!("{metric} was not provided for the candidate"),
            );
        };
        if !value.is_finite() {
            return outcome(
                false,
                Some(value),
                None,
                format!("{metric} = {value} is not a finite number"),
            );
        }
        match *rule {
            GateRule::Min { value: min, .. } => {
                let ok = value >= min;
                outcome(
                    ok,
                    Some(value),
                    Some(min),
                    format!(
                        "{metric} = {value:.6} {} minimum {min}",
                        if ok { ">=" } else { "<" }
                    ),
                )
            }
            GateRule::Max { value: max, .. } => {
                let ok = value <= max;
                outcome(
                    ok,
                    Some(value),
                    Some(max),
                    format!(
                        "{metric} = {value:.6} {} maximum {max}",
                        if ok { "<=" } else { ">" }
                    ),
                )
            }
            GateRule::Champion {
                tolerance,
                use_confidence_bound,
                ..
            } => {
                let Some(champ) = champion.and_then(|c| c.values.get(&metric).copied()) else {
                    let ok = self.pass_without_champion;
                    return outcome(
                        ok,
                        Some(value),
                        None,
                        format!(
                            "no champion value of {metric}: rule {}",
                            if ok {
                                "skipped (pass_without_champion)"
                            } else {
                                "fails"
                            }
                        ),
                    );
                };
                let higher = metric.higher_is_better();
                let (observed, what) = if use_confidence_bound {
                    match candidate.intervals.get(&metric) {
                        Some(ci) if higher => (ci.lower, "lower bound"),
                        Some(ci) => (ci.upper, "upper bound"),
                        None => {
                            return outcome(
                                false,
                                Some(value),
                                None,
                                format!("{metric}: the rule compares a bootstrap bound but the candidate has no interval"),
                            )
                        }
                    }
                } else {
                    (value, "estimate")
                };
                let (required, ok) = if higher {
                    let r = champ - tolerance;
                    (r, observed >= r)
                } else {
                    let r = champ + tolerance;
                    (r, observed <= r)
                };
                outcome(
                    ok,
                    Some(observed),
                    Some(required),
                    format!(
                        "{metric} {what} {observed:.6} {} champion {champ:.6} {} tolerance {tolerance}",
                        if ok { "is no worse than" } else { "is worse than" },
                        if higher { "minus" } else { "plus" },
                    ),
                )
            }
        }
    }
}
