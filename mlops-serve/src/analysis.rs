//! Canary checks: each compares the candidate with the stable variant measured over the same
//! step and says [`Outcome::Pass`], [`Outcome::Fail`] or [`Outcome::Inconclusive`], with its
//! statistic, p-value where there is one, sample sizes and a reason in words.
//!
//! | check | statistic | Pass | Fail |
//! |---|---|---|---|
//! | `error_rate` | one-sided pooled two-proportion z (statsmodels' `proportions_ztest`) that the candidate errs more | otherwise | p < 1 − confidence and the increase > `max_increase` |
//! | `latency_p99` | candidate p99 / stable p99 | p99 ≤ factor × stable + slack | otherwise |
//! | `roc_auc` | AUC difference, DeLong's variance (independent samples) | lower bound ≥ −δ | upper bound < −δ |
//! | `accuracy` | accuracy difference, Wald interval | lower bound ≥ −δ | upper bound < −δ |
//! | `prediction_drift` | two-sample KS on the predicted probabilities | otherwise | statistic > max and p < 1 − confidence |
//! | `shadow_agreement` | share of rows where the shadow's label equals the primary's | lower bound ≥ min | upper bound < min |
//! | `fairness` | a disparity's unfairness, candidate − stable, on labeled rows with their sensitive group (bootstrap within groups) | upper bound ≤ `max_increase` | lower bound > `max_increase` |
//!
//! Bounds are one-sided at `confidence`. A check without enough data (requests, labels, both
//! classes) is Inconclusive and says what it lacks: never Pass on no evidence.

use mlops_core::metrics::ScoredSamples;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::sequential::{
    mixture_half_width, mixture_likelihood_ratio, variance_to_reach, Evidence,
};
use crate::step_stats::VariantSnapshot;
use crate::{Error, Result};

fn default_confidence() -> f64 {
    0.95
}
fn default_factor() -> f64 {
    1.1
}
fn default_delta() -> f64 {
    0.01
}
fn default_min_labeled() -> usize {
    200
}
fn default_max_ks() -> f64 {
    0.2
}
fn default_min_agreement() -> f64 {
    0.9
}
fn default_max_unfairness_increase() -> f64 {
    0.02
}
fn default_min_group_size() -> usize {
    30
}
fn default_resamples() -> usize {
    500
}

/// One check of a canary analysis (serde: `{"kind": "error_rate", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The candidate's error rate is not higher than stable's.
    ErrorRate {
        /// An increase (absolute, in [0, 1)) tolerated even when significant.
        #[serde(default)]
        max_increase: f64,
        /// Confidence of the one-sided test, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
    },
    /// The candidate's p99 latency is at most `factor` × stable's + `slack_ms`.
    LatencyP99 {
        /// Allowed ratio, ≥ 1.
        #[serde(default = "default_factor")]
        factor: f64,
        /// Allowed absolute excess in milliseconds, ≥ 0.
        #[serde(default)]
        slack_ms: f64,
    },
    /// The candidate's ROC AUC on labeled feedback is not worse than stable's by more than
    /// `max_decrease`.
    RocAuc {
        /// δ, the tolerated decrease, ≥ 0.
        #[serde(default = "default_delta")]
        max_decrease: f64,
        /// Confidence of the one-sided bounds, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
        /// Labeled rows needed from each variant (and 2 of each class), ≥ 4.
        #[serde(default = "default_min_labeled")]
        min_labeled: usize,
    },
    /// The candidate's accuracy (at its own threshold) on labeled feedback is not worse than
    /// stable's by more than `max_decrease`.
    Accuracy {
        /// δ, the tolerated decrease, ≥ 0.
        #[serde(default = "default_delta")]
        max_decrease: f64,
        /// Confidence of the one-sided bounds, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
        /// Labeled rows needed from each variant, ≥ 4.
        #[serde(default = "default_min_labeled")]
        min_labeled: usize,
    },
    /// The candidate's predicted probabilities are not distributed far from stable's.
    PredictionDrift {
        /// The largest KS statistic tolerated, in (0, 1].
        #[serde(default = "default_max_ks")]
        max_statistic: f64,
        /// Confidence of the test, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
    },
    /// The candidate is not less fair than stable: a disparity (Fairlearn's or AIF360's,
    /// [`mlops_core::fairness::DisparitySpec`]) on each variant's labeled rows grouped by
    /// their sensitive group ([`StatsConfig::group_feature`](crate::step_stats::StatsConfig::group_feature)
    /// or the request's group), compared on the measure's unfairness scale. A group with
    /// fewer than `min_group_size` rows behind a rate, rows without groups, or an undefined
    /// rate make it inconclusive, never a pass.
    Fairness {
        /// The measure.
        disparity: mlops_core::fairness::DisparitySpec,
        /// How much less fair the candidate may be (unfairness scale), in [0, 1).
        #[serde(default = "default_max_unfairness_increase")]
        max_increase: f64,
        /// Confidence of the one-sided bounds, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
        /// Rows each group needs behind each rate the measure reads, ≥ 1.
        #[serde(default = "default_min_group_size")]
        min_group_size: usize,
        /// Bootstrap resamples per variant, from 100 to 10,000.
        #[serde(default = "default_resamples")]
        resamples: usize,
    },
    /// The shadow's labels agree with the primary's on at least `min_agreement` of rows
    /// (shadow phase).
    ShadowAgreement {
        /// Required share, in (0, 1].
        #[serde(default = "default_min_agreement")]
        min_agreement: f64,
        /// Confidence of the one-sided bounds, in (0.5, 1).
        #[serde(default = "default_confidence")]
        confidence: f64,
    },
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The candidate is shown to be good enough.
    Pass,
    /// The candidate is shown to be worse.
    Fail,
    /// Not enough evidence either way.
    Inconclusive,
}

impl Outcome {
    /// Every variant, in declaration order.
    pub const ALL: [Outcome; 3] = [Outcome::Pass, Outcome::Fail, Outcome::Inconclusive];

    /// The serialized name (`pass`, `fail`, `inconclusive`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name (`error_rate`, `latency_p99`, ...).
    pub check: String,
    /// The verdict.
    pub outcome: Outcome,
    /// The test statistic (see the module docs), when computed.
    pub statistic: Option<f64>,
    /// The p-value, for checks with a test.
    pub p_value: Option<f64>,
    /// The candidate's value of the measured quantity (error rate, p99 ms, AUC, ...).
    pub candidate: Option<f64>,
    /// Stable's value of it.
    pub stable: Option<f64>,
    /// Candidate samples used (requests, labeled rows or compared rows).
    pub n_candidate: u64,
    /// Stable samples used.
    pub n_stable: u64,
    /// The always-valid band of the difference (candidate − stable) a pooled check judged
    /// on ([`Sequential`](crate::policy::Sequential) policies); `None` for a per-window check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<(f64, f64)>,
    /// Why, in words.
    pub reason: String,
}

const CONFIDENCE: &str = "a confidence strictly between 0.5 and 1";

fn confidence_ok(c: f64) -> bool {
    c > 0.5 && c < 1.0
}

fn z_of(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(confidence)
}

fn sf(z: f64) -> f64 {
    Normal::standard().sf(z)
}

impl Check {
    /// The check's name.
    pub fn name(&self) -> &'static str {
        match self {
            Check::ErrorRate { .. } => "error_rate",
            Check::LatencyP99 { .. } => "latency_p99",
            Check::RocAuc { .. } => "roc_auc",
            Check::Accuracy { .. } => "accuracy",
            Check::PredictionDrift { .. } => "prediction_drift",
            Check::ShadowAgreement { .. } => "shadow_agreement",
            Check::Fairness { .. } => "fairness",
        }
    }

    /// An inconclusive result of this check with no statistic yet, on these sample sizes.
    fn inconclusive(&self, n_candidate: u64, n_stable: u64) -> CheckResult {
        CheckResult {
            check: self.name().to_string(),
            outcome: Outcome::Inconclusive,
            statistic: None,
            p_value: None,
            candidate: None,
            stable: None,
            n_candidate,
            n_stable,
            interval: None,
            reason: String::new(),
        }
    }

    /// Whether the check pools its evidence over a rollout under a
    /// [`Sequential`](crate::policy::Sequential) policy (`roc_auc`, `accuracy`, `error_rate`).
    pub fn is_sequential(&self) -> bool {
        matches!(
            self,
            Check::RocAuc { .. } | Check::Accuracy { .. } | Check::ErrorRate { .. }
        )
    }

    /// Whether the check needs labels (it cannot run in a shadow phase, where the candidate's
    /// predictions are never served).
    pub fn needs_labels(&self) -> bool {
        matches!(
            self,
            Check::RocAuc { .. } | Check::Accuracy { .. } | Check::Fairness { .. }
        )
    }

    /// Checks every field; `field` prefixes the names in errors (`checks[2]`).
    pub fn validate(&self, field: &str) -> Result<()> {
        // (name, value, whether it is allowed, what is expected)
        let rules: Vec<(&str, f64, bool, &str)> = match *self {
            Check::ErrorRate {
                max_increase,
                confidence,
            } => vec![
                (
                    "max_increase",
                    max_increase,
                    (0.0..1.0).contains(&max_increase),
                    "a rate in [0, 1)",
                ),
                (
                    "confidence",
                    confidence,
                    confidence_ok(confidence),
                    CONFIDENCE,
                ),
            ],
            Check::LatencyP99 { factor, slack_ms } => vec![
                (
                    "factor",
                    factor,
                    factor.is_finite() && factor >= 1.0,
                    "a ratio >= 1",
                ),
                (
                    "slack_ms",
                    slack_ms,
                    slack_ms.is_finite() && slack_ms >= 0.0,
                    "milliseconds >= 0",
                ),
            ],
            Check::RocAuc {
                max_decrease,
                confidence,
                min_labeled,
            }
            | Check::Accuracy {
                max_decrease,
                confidence,
                min_labeled,
            } => vec![
                (
                    "max_decrease",
                    max_decrease,
                    (0.0..1.0).contains(&max_decrease),
                    "a number in [0, 1)",
                ),
                (
                    "confidence",
                    confidence,
                    confidence_ok(confidence),
                    CONFIDENCE,
                ),
                (
                    "min_labeled",
                    min_labeled as f64,
                    min_labeled >= 4,
                    "at least 4",
                ),
            ],
            Check::PredictionDrift {
                max_statistic,
                confidence,
            } => vec![
                (
                    "max_statistic",
                    max_statistic,
                    max_statistic > 0.0 && max_statistic <= 1.0,
                    "a KS statistic in (0, 1]",
                ),
                (
                    "confidence",
                    confidence,
                    confidence_ok(confidence),
                    CONFIDENCE,
                ),
            ],
            Check::ShadowAgreement {
                min_agreement,
                confidence,
            } => vec![
                (
                    "min_agreement",
                    min_agreement,
                    min_agreement > 0.0 && min_agreement <= 1.0,
                    "a share in (0, 1]",
                ),
                (
                    "confidence",
                    confidence,
                    confidence_ok(confidence),
                    CONFIDENCE,
                ),
            ],
            Check::Fairness {
                ref disparity,
                max_increase,
                confidence,
                min_group_size,
                resamples,
            } => {
                disparity.check(&format!("{field}.disparity"))?;
                vec![
                    (
                        "max_increase",
                        max_increase,
                        (0.0..1.0).contains(&max_increase),
                        "an unfairness increase in [0, 1)",
                    ),
                    (
                        "confidence",
                        confidence,
                        confidence_ok(confidence),
                        CONFIDENCE,
                    ),
                    (
                        "min_group_size",
                        min_group_size as f64,
                        min_group_size >= 1,
                        "at least 1 row",
                    ),
                    (
                        "resamples",
                        resamples as f64,
                        (100..=10_000).contains(&resamples),
                        "from 100 to 10000",
                    ),
                ]
            }
        };
        match rules.into_iter().find(|(_, _, ok, _)| !ok) {
            Some((name, value, _, expected)) => {
                Err(Error::invalid(format!("{field}.{name}"), value, expected))
            }
            None => Ok(()),
        }
    }

    /// Compares `candidate` with `stable` (same step). `min_requests`: requests each variant
    /// needs before request-based checks say anything.
    pub fn evaluate(
        &self,
        candidate: &VariantSnapshot,
        stable: &VariantSnapshot,
        min_requests: u64,
    ) -> CheckResult {
        let mut r = self.inconclusive(candidate.requests, stable.requests);
        let too_few_requests = |r: &mut CheckResult| {
            r.reason = format!(
                "too few requests: candidate {}, stable {}; {min_requests} each needed",
                candidate.requests, stable.requests
            );
        };
        match *self {
            Check::Fairness { .. } => fairness(&mut r, self, candidate, stable),
            Check::ErrorRate {
                max_increase,
                confidence,
            } => {
                if candidate.requests < min_requests.max(1) || stable.requests < min_requests.max(1)
                {
                    too_few_requests(&mut r);
                    return r;
                }
                let (ec, nc) = (candidate.errors as f64, candidate.requests as f64);
                let (es, ns) = (stable.errors as f64, stable.requests as f64);
                let (pc, ps) = (ec / nc, es / ns);
                r.candidate = Some(pc);
                r.stable = Some(ps);
                let z = match mlops_drift::stats::proportions_ztest(ec, nc, es, ns) {
                    Ok(t) => t.statistic,
                    Err(e) => {
                        r.reason = format!("cannot test: {e}");
                        return r;
                    }
                };
                let p = sf(z);
                r.statistic = Some(z);
                r.p_value = Some(p);
                let significant = p < 1.0 - confidence;
                if significant && pc - ps > max_increase {
                    r.outcome = Outcome::Fail;
                    r.reason = format!(
                        "error rate {:.3}% vs stable {:.3}%: higher (one-sided p = {p:.2e} < {:.3})",
                        100.0 * pc,
                        100.0 * ps,
                        1.0 - confidence
                    );
                } else {
                    r.outcome = Outcome::Pass;
                    r.reason = format!(
                        "error rate {:.3}% vs stable {:.3}% (one-sided p = {p:.3})",
                        100.0 * pc,
                        100.0 * ps
                    );
                }
            }
            Check::LatencyP99 { factor, slack_ms } => {
                let (Some(c), Some(s)) = (candidate.latency_p99_ms, stable.latency_p99_ms) else {
                    too_few_requests(&mut r);
                    return r;
                };
                if candidate.requests < min_requests.max(1) || stable.requests < min_requests.max(1)
                {
                    too_few_requests(&mut r);
                    return r;
                }
                r.candidate = Some(c);
                r.stable = Some(s);
                r.statistic = Some(if s > 0.0 { c / s } else { f64::INFINITY });
                let limit = factor * s + slack_ms;
                if c <= limit {
                    r.outcome = Outcome::Pass;
                    r.reason =
                        format!("p99 {c:.3} ms <= {factor} x stable {s:.3} ms + {slack_ms} ms");
                } else {
                    r.outcome = Outcome::Fail;
                    r.reason = format!("p99 {c:.3} ms > {factor} x stable {s:.3} ms + {slack_ms} ms = {limit:.3} ms");
                }
            }
            Check::RocAuc {
                max_decrease,
                confidence,
                min_labeled,
            } => {
                r.n_candidate = candidate.labeled() as u64;
                r.n_stable = stable.labeled() as u64;
                let auc = |v: &VariantSnapshot| -> std::result::Result<(f64, f64), String> {
                    if v.labeled() < min_labeled {
                        return Err(format!(
                            "{} has {} labeled rows; {min_labeled} needed",
                            v.variant,
                            v.labeled()
                        ));
                    }
                    let labels: Vec<f64> =
                        v.labels.iter().map(|&l| f64::from(u8::from(l))).collect();
                    let s = ScoredSamples::new(&labels, &v.label_scores, None)
                        .map_err(|e| e.to_string())?;
                    let a = s
                        .roc_auc_delong()
                        .map_err(|e| format!("{}: {e}", v.variant))?;
                    Ok((a.auc, a.variance))
                };
                let ((ac, vc), (as_, vs)) = match (auc(candidate), auc(stable)) {
                    (Ok(c), Ok(s)) => (c, s),
                    (Err(e), _) | (_, Err(e)) => {
                        r.reason = format!("not enough labels: {e}");
                        return r;
                    }
                };
                r.candidate = Some(ac);
                r.stable = Some(as_);
                non_inferiority(
                    &mut r,
                    "ROC AUC",
                    ac,
                    as_,
                    (vc + vs).sqrt(),
                    max_decrease,
                    confidence,
                );
            }
            Check::Accuracy {
                max_decrease,
                confidence,
                min_labeled,
            } => {
                r.n_candidate = candidate.labeled() as u64;
                r.n_stable = stable.labeled() as u64;
                if candidate.labeled() < min_labeled || stable.labeled() < min_labeled {
                    r.reason = format!(
                        "not enough labels: candidate {}, stable {}; {min_labeled} each needed",
                        candidate.labeled(),
                        stable.labeled()
                    );
                    return r;
                }
                let ((pc, vc), (ps, vs)) = (accuracy(candidate), accuracy(stable));
                r.candidate = Some(pc);
                r.stable = Some(ps);
                non_inferiority(
                    &mut r,
                    "accuracy",
                    pc,
                    ps,
                    (vc + vs).sqrt(),
                    max_decrease,
                    confidence,
                );
            }
            Check::PredictionDrift {
                max_statistic,
                confidence,
            } => {
                if candidate.requests < min_requests.max(1) || stable.requests < min_requests.max(1)
                {
                    too_few_requests(&mut r);
                    return r;
                }
                r.n_candidate = candidate.scores.len() as u64;
                r.n_stable = stable.scores.len() as u64;
                let t = match mlops_drift::stats::ks_2samp(
                    &candidate.scores,
                    &stable.scores,
                    mlops_drift::stats::Alternative::TwoSided,
                    mlops_drift::stats::KsMethod::Auto,
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        r.reason = format!("cannot test: {e}");
                        return r;
                    }
                };
                r.statistic = Some(t.statistic);
                r.p_value = Some(t.p_value);
                if t.statistic > max_statistic && t.p_value < 1.0 - confidence {
                    r.outcome = Outcome::Fail;
                    r.reason = format!(
                        "predictions drifted from stable's: KS {:.3} > {max_statistic} (p = {:.2e})",
                        t.statistic, t.p_value
                    );
                } else {
                    r.outcome = Outcome::Pass;
                    r.reason = format!(
                        "KS {:.3} (p = {:.3}); at most {max_statistic} tolerated",
                        t.statistic, t.p_value
                    );
                }
            }
            Check::ShadowAgreement {
                min_agreement,
                confidence,
            } => {
                let n = candidate.shadow_compared;
                r.n_candidate = n;
                r.n_stable = stable.requests;
                if n < min_requests.max(1) {
                    r.reason = format!("too few shadow rows compared: {n}; {min_requests} needed");
                    return r;
                }
                let p = candidate.shadow_agreed as f64 / n as f64;
                let half = z_of(confidence) * (p * (1.0 - p) / n as f64).sqrt();
                r.candidate = Some(p);
                r.statistic = Some(p);
                let (lower, upper) = (p - half, p + half);
                if lower >= min_agreement {
                    r.outcome = Outcome::Pass;
                    r.reason = format!(
                        "agreement {:.2}% (lower bound {:.2}%) >= {:.2}%",
                        100.0 * p,
                        100.0 * lower,
                        100.0 * min_agreement
                    );
                } else if upper < min_agreement {
                    r.outcome = Outcome::Fail;
                    r.reason = format!(
                        "agreement {:.2}% (upper bound {:.2}%) < {:.2}%",
                        100.0 * p,
                        100.0 * upper,
                        100.0 * min_agreement
                    );
                } else {
                    r.reason = format!(
                        "agreement {:.2}% in [{:.2}%, {:.2}%], which straddles {:.2}%",
                        100.0 * p,
                        100.0 * lower,
                        100.0 * upper,
                        100.0 * min_agreement
                    );
                }
            }
        }
        r
    }
}

/// A variant's labeled rows that have a group, as fairness data (decisions at its threshold).
fn fairness_data(
    v: &VariantSnapshot,
) -> std::result::Result<mlops_core::fairness::FairnessData, String> {
    use mlops_core::fairness::{FairnessData, SensitiveGroups};
    if v.label_scores.len() != v.labels.len() {
        return Err(format!(
            "{}: {} labels but {} scores",
            v.variant,
            v.labels.len(),
            v.label_scores.len()
        ));
    }
    if v.label_groups.is_empty() && !v.labels.is_empty() {
        return Err(format!(
            "{}: no labeled row carries a sensitive group (name StatsConfig.group_feature or give requests a group; statistics read back from Prometheus carry none)",
            v.variant
        ));
    }
    if v.label_groups.len() != v.labels.len() {
        return Err(format!(
            "{}: {} labeled rows but {} groups",
            v.variant,
            v.labels.len(),
            v.label_groups.len()
        ));
    }
    // A row left out would be a silent wrong answer (its group is the one that may differ).
    let without = v
        .label_groups
        .iter()
        .filter(|&&g| usize::from(g) >= v.group_names.len())
        .count();
    if without > 0 {
        return Err(format!(
            "{}: {without} of {} labeled rows have no sensitive group (a missing group feature, or more groups than StatsConfig.max_groups): judged on the others, the check could pass an unfair candidate",
            v.variant,
            v.labels.len()
        ));
    }
    let rows: Vec<usize> = (0..v.labels.len()).collect();
    let keys = v.group_names.iter().map(|n| vec![n.clone()]).collect();
    let codes = rows.iter().map(|&i| u32::from(v.label_groups[i])).collect();
    let groups = SensitiveGroups::from_codes(vec!["group".into()], keys, codes)
        .map_err(|e| e.to_string())?;
    let labels: Vec<f64> = rows
        .iter()
        .map(|&i| f64::from(u8::from(v.labels[i])))
        .collect();
    let scores: Vec<f64> = rows.iter().map(|&i| v.label_scores[i]).collect();
    FairnessData::from_scores(&labels, &scores, f64::from(v.threshold), None, groups)
        .map_err(|e| e.to_string())
}

/// The `fairness` check: the bootstrap interval of the unfairness difference, one-sided at
/// `confidence` on each end.
fn fairness(
    r: &mut CheckResult,
    check: &Check,
    candidate: &VariantSnapshot,
    stable: &VariantSnapshot,
) {
    use mlops_core::fairness::{compare, AssessmentStatus, FairnessConfig};
    use mlops_core::metrics::BootstrapConfig;
    let Check::Fairness {
        ref disparity,
        max_increase,
        confidence,
        min_group_size,
        resamples,
    } = *check
    else {
        return;
    };
    r.n_candidate = candidate.labeled() as u64;
    r.n_stable = stable.labeled() as u64;
    let (c, s) = match (fairness_data(candidate), fairness_data(stable)) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(why), _) | (_, Err(why)) => {
            r.reason = why;
            return;
        }
    };
    let config = FairnessConfig {
        min_group_size,
        bootstrap: Some(BootstrapConfig {
            n_resamples: resamples,
            // Two-sided at 2c − 1 puts each end at one-sided `confidence`.
            confidence: 2.0 * confidence - 1.0,
            seed: 0,
        }),
        zero_when_undefined: false,
    };
    let cmp = match compare(&c, &s, disparity, &config) {
        Ok(cmp) => cmp,
        Err(e) => {
            r.reason = format!("{disparity}: {e}");
            return;
        }
    };
    let m = disparity.measure;
    r.candidate = cmp.candidate.value.as_ref().map(|v| m.unfairness(v.value));
    r.stable = cmp.baseline.value.as_ref().map(|v| m.unfairness(v.value));
    for (who, a) in [("candidate", &cmp.candidate), ("stable", &cmp.baseline)] {
        if a.status != AssessmentStatus::Measured {
            r.reason = format!("{who}: {}", a.reason);
            return;
        }
    }
    let Some(d) = cmp.difference else {
        r.reason = format!(
            "{disparity}: the unfairness difference is undefined on most resamples (candidate: {}; stable: {})",
            cmp.candidate.reason, cmp.baseline.reason
        );
        return;
    };
    r.statistic = Some(d.estimate);
    r.interval = Some((d.lower, d.upper));
    let worst = cmp.candidate.value.as_ref().map_or(String::new(), |v| {
        format!(" (candidate's worst pair: {})", v.worst)
    });
    let head = format!(
        "{disparity}: candidate unfairness {:.4}, stable {:.4}, difference {:+.4} in [{:+.4}, {:+.4}]{worst}",
        r.candidate.unwrap_or(f64::NAN),
        r.stable.unwrap_or(f64::NAN),
        d.estimate,
        d.lower,
        d.upper
    );
    if d.upper <= max_increase {
        r.outcome = Outcome::Pass;
        r.reason = format!("{head}: upper bound <= allowed increase {max_increase}");
    } else if d.lower > max_increase {
        r.outcome = Outcome::Fail;
        r.reason = format!("{head}: lower bound > allowed increase {max_increase}");
    } else {
        r.reason = format!("{head}: straddles the allowed increase {max_increase}");
    }
}

/// The non-inferiority decision on `candidate - stable` with standard error `se`.
fn non_inferiority(
    r: &mut CheckResult,
    what: &str,
    candidate: f64,
    stable: f64,
    se: f64,
    delta: f64,
    confidence: f64,
) {
    let diff = candidate - stable;
    let half = z_of(confidence) * se;
    let (lower, upper) = (diff - half, diff + half);
    r.statistic = Some(diff);
    // H0: the candidate is worse by delta or more.
    r.p_value = Some(if se > 0.0 {
        sf((diff + delta) / se)
    } else if diff + delta > 0.0 {
        0.0
    } else {
        1.0
    });
    if lower >= -delta {
        r.outcome = Outcome::Pass;
        r.reason = format!("{what} {candidate:.4} vs stable {stable:.4}: difference {diff:+.4}, lower bound {lower:+.4} >= -{delta}");
    } else if upper < -delta {
        r.outcome = Outcome::Fail;
        r.reason = format!("{what} {candidate:.4} vs stable {stable:.4}: worse by {:.4}, upper bound {upper:+.4} < -{delta}", -diff);
    } else {
        r.outcome = Outcome::Inconclusive;
        r.reason = format!("{what} {candidate:.4} vs stable {stable:.4}: difference {diff:+.4} in [{lower:+.4}, {upper:+.4}], which straddles -{delta}{}", planned_rows(se, r.n_candidate, r.n_stable, delta, confidence));
    }
}

/// The power this window's test had against a candidate exactly as good as stable, and the
/// labeled rows a window needs for 80% of it, at this window's variance and split
/// (statsmodels' `NormalIndPower`, one-sided at `1 − confidence`); empty when the variance
/// or the sample says nothing.
fn planned_rows(se: f64, n_candidate: u64, n_stable: u64, delta: f64, confidence: f64) -> String {
    use mlops_drift::stats::{normal_ind_nobs1, normal_ind_power, Alternative};
    if !(se.is_finite() && se > 0.0 && delta > 0.0) || n_candidate == 0 || n_stable == 0 {
        return String::new();
    }
    let (nc, ns) = (n_candidate as f64, n_stable as f64);
    let ratio = ns / nc;
    // The per-row deviation that makes this window's variance se² at nc and ns rows.
    let sd = se / (1.0 / nc + 1.0 / ns).sqrt();
    let effect = delta / sd;
    let alpha = 1.0 - confidence;
    let had = normal_ind_power(effect, nc, alpha, ratio, Alternative::Greater);
    let needs = normal_ind_nobs1(effect, alpha, 0.8, ratio, Alternative::Greater);
    match (had, needs) {
        (Ok(p), Ok(n)) if n.is_finite() => format!(
            "; power at no difference {p:.2}: 80% needs about {:.0} labeled candidate rows and {:.0} stable in a window",
            n.ceil(),
            (n * ratio).ceil()
        ),
        _ => String::new(),
    }
}

/// Labeled rows of each class each variant needs in a window before the window's AUC or
/// accuracy joins the pooled evidence. Windows are pooled by their estimated variances, and
/// DeLong's and Wald's are unreliable on a few rows of a class: a window whose few positives
/// happen to be ranked perfectly would look nearly certain and outweigh the rest.
pub const MIN_WINDOW_PER_CLASS: usize = 25;

/// A variant's accuracy at its own threshold on its labeled rows, and the Wald variance of
/// it (the caller checked there are labeled rows).
fn accuracy(v: &VariantSnapshot) -> (f64, f64) {
    let t = f64::from(v.threshold);
    let correct = v
        .labels
        .iter()
        .zip(&v.label_scores)
        .filter(|(&l, &s)| (s >= t) == l)
        .count();
    let n = v.labeled() as f64;
    let p = correct as f64 / n;
    (p, p * (1.0 - p) / n)
}

/// The power the pooled evidence has now: the chance that the band's lower end clears
/// `-margin` at this information if the candidate were exactly as good as stable,
/// `Φ((margin − w) / σ)` with `w` the band's half-width and `σ²` the estimate's variance.
///
/// ```
/// use mlops_serve::analysis::power_at_no_difference;
///
/// // A band far narrower than the margin clears it almost surely; a wide one rarely.
/// assert!(power_at_no_difference(1e-6, 1e-4, 0.05, 0.01) > 0.99);
/// assert!(power_at_no_difference(1e-4, 1e-4, 0.05, 0.01) < 0.05);
/// // No information, no power.
/// assert_eq!(power_at_no_difference(f64::INFINITY, 1e-4, 0.05, 0.01), 0.0);
/// ```
pub fn power_at_no_difference(variance: f64, mixing_variance: f64, alpha: f64, margin: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    let w = mixture_half_width(variance, mixing_variance, alpha);
    if !(w.is_finite() && variance > 0.0) {
        return 0.0;
    }
    Normal::standard().cdf((margin - w) / variance.sqrt())
}

fn power_note(variance: f64, mixing_variance: f64, alpha: f64, margin: f64) -> String {
    format!(
        "power at no difference {:.2}",
        power_at_no_difference(variance, mixing_variance, alpha, margin)
    )
}

/// The mixing scale of a check's confidence sequence: its margin, or one point when the
/// margin is 0.
fn mixing_variance(margin: f64) -> f64 {
    let tau = if margin > 0.0 { margin } else { 0.01 };
    tau * tau
}

/// `v` with `rows` as its labeled rows (the carried sample a window joined).
fn with_rows(v: &VariantSnapshot, rows: &crate::sequential::CarriedRows) -> VariantSnapshot {
    let (label_scores, labels) = rows.rows();
    VariantSnapshot {
        labels,
        label_scores,
        ..v.clone()
    }
}

/// The difference of the metric (candidate − stable) on one window and its variance, when
/// each variant has [`MIN_WINDOW_PER_CLASS`] labeled rows of each class.
fn window_difference(
    check: &Check,
    candidate: &VariantSnapshot,
    stable: &VariantSnapshot,
) -> Option<(f64, f64)> {
    let enough = |v: &VariantSnapshot| {
        let positives = v.labels.iter().filter(|&&l| l).count();
        positives >= MIN_WINDOW_PER_CLASS && v.labeled() - positives >= MIN_WINDOW_PER_CLASS
    };
    if !(enough(candidate) && enough(stable)) {
        return None;
    }
    let auc = matches!(check, Check::RocAuc { .. });
    let ((c, vc), (s, vs)) = (
        variant_metric(auc, candidate)?,
        variant_metric(auc, stable)?,
    );
    Some((c - s, vc + vs))
}

/// A variant's ROC AUC with DeLong's variance (`auc`), or its accuracy with Wald's, on its
/// labeled rows; `None` when DeLong's cannot be computed (fewer than two of a class).
pub(crate) fn variant_metric(auc: bool, v: &VariantSnapshot) -> Option<(f64, f64)> {
    if auc {
        let labels: Vec<f64> = v.labels.iter().map(|&l| f64::from(u8::from(l))).collect();
        let a = ScoredSamples::new(&labels, &v.label_scores, None)
            .ok()?
            .roc_auc_delong()
            .ok()?;
        Some((a.auc, a.variance))
    } else if v.labeled() == 0 {
        None
    } else {
        Some(accuracy(v))
    }
}

impl Check {
    /// Adds this window (the statistics since the previous analysis) to the check's pooled
    /// `evidence` and decides on everything so far with a confidence sequence at level
    /// `alpha` (see [`Sequential`](crate::policy::Sequential)). `None` for a check without
    /// a sequential form ([`Check::is_sequential`]): evaluate it with [`Check::evaluate`].
    pub fn evaluate_sequential(
        &self,
        evidence: &mut Evidence,
        candidate: &VariantSnapshot,
        stable: &VariantSnapshot,
        min_requests: u64,
        alpha: f64,
    ) -> Option<CheckResult> {
        let mut r = self.inconclusive(0, 0);
        match *self {
            Check::ErrorRate { max_increase, .. } => {
                // Counts over the whole rollout: errors are rare, and a window without any
                // still says something.
                evidence.n_candidate = evidence.n_candidate.saturating_add(candidate.requests);
                evidence.n_stable = evidence.n_stable.saturating_add(stable.requests);
                evidence.events_candidate =
                    evidence.events_candidate.saturating_add(candidate.errors);
                evidence.events_stable = evidence.events_stable.saturating_add(stable.errors);
                evidence.windows = evidence.windows.saturating_add(1);
                let (nc, ns) = (evidence.n_candidate, evidence.n_stable);
                r.n_candidate = nc;
                r.n_stable = ns;
                let min = min_requests.max(1);
                if nc < min || ns < min {
                    r.reason = format!(
                        "too few requests over the rollout: candidate {nc}, stable {ns}; {min} each needed"
                    );
                    return Some(r);
                }
                let (ec, es) = (
                    evidence.events_candidate as f64,
                    evidence.events_stable as f64,
                );
                let (pc, ps) = (ec / nc as f64, es / ns as f64);
                r.candidate = Some(pc);
                r.stable = Some(ps);
                let diff = pc - ps;
                r.statistic = Some(diff);
                // Unpooled: the band is around the difference, not under equality.
                let v = pc * (1.0 - pc) / nc as f64 + ps * (1.0 - ps) / ns as f64;
                let w = mixture_half_width(v, mixing_variance(max_increase), alpha);
                r.interval = w.is_finite().then_some((diff - w, diff + w));
                r.p_value = Some(
                    mixture_likelihood_ratio(diff, v, mixing_variance(max_increase), max_increase)
                        .map_or(1.0, |l| {
                            if diff > max_increase {
                                (1.0 / l).min(1.0)
                            } else {
                                1.0
                            }
                        }),
                );
                if diff - w > max_increase {
                    r.outcome = Outcome::Fail;
                    r.reason = format!(
                        "error rate {:.3}% vs stable {:.3}% over the rollout: higher by {:.3} points, lower bound {:+.4} > {max_increase} (always valid, alpha {alpha:.4})",
                        100.0 * pc,
                        100.0 * ps,
                        100.0 * diff,
                        diff - w
                    );
                } else {
                    r.outcome = Outcome::Pass;
                    r.reason = format!(
                        "error rate {:.3}% vs stable {:.3}% over the rollout ({nc} and {ns} requests): no increase above {max_increase} shown (always valid, alpha {alpha:.4})",
                        100.0 * pc,
                        100.0 * ps
                    );
                }
                Some(r)
            }
            Check::RocAuc {
                max_decrease,
                min_labeled,
                ..
            }
            | Check::Accuracy {
                max_decrease,
                min_labeled,
                ..
            } => {
                let what = if matches!(self, Check::RocAuc { .. }) {
                    "ROC AUC"
                } else {
                    "accuracy"
                };
                // A window judged alone unless rows of earlier windows too small to judge
                // alone wait: then it joins them (sampled as they were) and they are judged
                // together once they are enough.
                let carrying =
                    !(evidence.carried_candidate.is_empty() && evidence.carried_stable.is_empty());
                let alone = if carrying {
                    None
                } else {
                    window_difference(self, candidate, stable)
                };
                match alone {
                    Some((d, v)) if evidence.add(d, v) => {
                        evidence.n_candidate = evidence
                            .n_candidate
                            .saturating_add(candidate.labeled() as u64);
                        evidence.n_stable =
                            evidence.n_stable.saturating_add(stable.labeled() as u64);
                    }
                    _ => {
                        evidence
                            .carried_candidate
                            .add(&candidate.label_scores, &candidate.labels);
                        evidence
                            .carried_stable
                            .add(&stable.label_scores, &stable.labels);
                        let c = with_rows(candidate, &evidence.carried_candidate);
                        let s = with_rows(stable, &evidence.carried_stable);
                        if let Some((d, v)) = window_difference(self, &c, &s) {
                            if evidence.add(d, v) {
                                evidence.n_candidate =
                                    evidence.n_candidate.saturating_add(c.labeled() as u64);
                                evidence.n_stable =
                                    evidence.n_stable.saturating_add(s.labeled() as u64);
                                evidence.carried_candidate.clear();
                                evidence.carried_stable.clear();
                            }
                        }
                    }
                }
                r.n_candidate = evidence.n_candidate;
                r.n_stable = evidence.n_stable;
                let tau2 = mixing_variance(max_decrease);
                let (Some(diff), Some(v), Some((low, high))) = (
                    evidence.estimate(),
                    evidence.variance(),
                    evidence.interval(tau2, alpha),
                ) else {
                    let (cc, cs) = (&evidence.carried_candidate, &evidence.carried_stable);
                    r.reason = format!(
                        "no evidence yet: a window needs {MIN_WINDOW_PER_CLASS} labeled rows of each class from each variant (and a metric with a positive variance); the rows waiting for the next window: candidate {} ({} positive), stable {} ({} positive)",
                        cc.len(),
                        cc.positives(),
                        cs.len(),
                        cs.positives()
                    );
                    return Some(r);
                };
                r.statistic = Some(diff);
                r.interval = Some((low, high));
                r.p_value = mixture_likelihood_ratio(diff, v, tau2, -max_decrease).map(|l| {
                    if diff > -max_decrease {
                        (1.0 / l).min(1.0)
                    } else {
                        1.0
                    }
                });
                let (nc, ns) = (evidence.n_candidate, evidence.n_stable);
                let windows = evidence.windows;
                if nc < min_labeled as u64 || ns < min_labeled as u64 {
                    r.reason = format!(
                        "no evidence yet: {nc} and {ns} labeled rows over the rollout; {min_labeled} each needed"
                    );
                } else if low >= -max_decrease {
                    r.outcome = Outcome::Pass;
                    r.reason = format!("{what} difference {diff:+.4} over {windows} windows ({nc} and {ns} labeled rows), always-valid band [{low:+.4}, {high:+.4}] above -{max_decrease} (alpha {alpha:.4}; {})", power_note(v, tau2, alpha, max_decrease));
                } else if high < -max_decrease {
                    r.outcome = Outcome::Fail;
                    r.reason = format!("{what} worse by {:.4} over {windows} windows ({nc} and {ns} labeled rows), always-valid band [{low:+.4}, {high:+.4}] below -{max_decrease} (alpha {alpha:.4}; {})", -diff, power_note(v, tau2, alpha, max_decrease));
                } else {
                    // How far the band must narrow to decide, with the estimate where it is,
                    // and the labeled rows that takes if information keeps growing with them.
                    let to_go = variance_to_reach((diff + max_decrease).abs(), tau2, alpha)
                        .filter(|&target| target > 0.0)
                        .map(|target| (nc as f64 * (v / target - 1.0)).max(0.0).ceil());
                    let projection = match to_go {
                        Some(rows) if rows.is_finite() && rows < 1e15 => format!(
                            "; at this estimate, about {rows:.0} more labeled candidate rows to decide"
                        ),
                        _ => "; the estimate sits on the margin: no sample decides it".to_string(),
                    };
                    r.reason = format!("no evidence yet: {what} difference {diff:+.4} over {windows} windows ({nc} and {ns} labeled rows), always-valid band [{low:+.4}, {high:+.4}] straddles -{max_decrease} (alpha {alpha:.4}; {}){projection}", power_note(v, tau2, alpha, max_decrease));
                }
                Some(r)
            }
            _ => None,
        }
    }
}
