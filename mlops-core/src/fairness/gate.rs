//! A fairness gate: rules on disparities, absolute or against the champion, judged on the
//! estimate or on the interval's pessimistic end. Inconclusive and undefined never pass.

use serde::{Deserialize, Serialize};

use super::assess::{assess, AssessmentStatus, DisparityAssessment, FairnessConfig};
use super::disparity::{Disparity, DisparitySpec, GroupPair};
use super::frame::FairnessData;
use crate::error::{Error, Result};

/// One rule: a limit on a disparity, a bound against the champion, or both.
///
/// `limit` reads the way the measure is written: a difference at most `limit` (`0.1`), a ratio
/// at least `limit` (`0.8`), a signed difference at most `limit` in size, disparate impact
/// within `[limit, 1/limit]` (`0.8`: the four-fifths rule, both ways).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessRule {
    /// The measure.
    pub disparity: DisparitySpec,
    /// The absolute limit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// No less fair than the champion on the same rows, give or take this much (on the
    /// measure's unfairness scale, [`Disparity::unfairness`]), if set. The champion's
    /// estimate is the bound, also when the candidate is judged on its pessimistic end (as
    /// [`crate::gate::GateRule::Champion`] does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_tolerance: Option<f64>,
    /// Judge the candidate's interval end farther from fair, not its estimate.
    #[serde(default)]
    pub use_confidence_bound: bool,
}

/// A gate of fairness rules, every one of which must pass.
///
/// ```
/// use mlops_core::fairness::{FairnessData, FairnessGate, SensitiveGroups};
///
/// let gate: FairnessGate = serde_json::from_str(r#"{
///     "rules": [{"disparity": {"measure": "demographic_parity_difference"}, "limit": 0.1}],
///     "config": {"min_group_size": 10, "bootstrap": null}
/// }"#)?;
/// let g: Vec<&str> = (0..100).map(|i| if i < 50 { "a" } else { "b" }).collect();
/// let y: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
/// let p: Vec<f64> = (0..100).map(|i| if i < 50 { (i % 2) as f64 } else { 1.0 }).collect();
/// let data = FairnessData::from_predictions(&y, &p, None, SensitiveGroups::new(&[("g", &g[..])])?)?;
/// let decision = gate.evaluate(&data, None);
/// assert!(!decision.passed);
/// assert!(decision.results[0].reason.contains("b (50 rows) and a (50 rows)"), "{}", decision.results[0].reason);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessGate {
    /// The rules.
    pub rules: Vec<FairnessRule>,
    /// Minimum group size, bootstrap, undefined rates.
    pub config: FairnessConfig,
    /// Whether champion bounds pass when there is no champion (the first model). Default true.
    pub pass_without_champion: bool,
}

impl Default for FairnessGate {
    fn default() -> Self {
        FairnessGate {
            rules: Vec::new(),
            config: FairnessConfig::default(),
            pass_without_champion: true,
        }
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessOutcome {
    /// The rule.
    pub rule: FairnessRule,
    /// Whether it passed.
    pub passed: bool,
    /// The candidate's unfairness compared (estimate or pessimistic bound), if there was one.
    pub observed: Option<f64>,
    /// The largest unfairness allowed, if there was a bound.
    pub required: Option<f64>,
    /// The worst pair of groups and their sizes, if the measure was defined.
    pub worst: Option<GroupPair>,
    /// The candidate's assessment.
    pub candidate: DisparityAssessment,
    /// The champion's, when the rule compares with it.
    pub champion: Option<DisparityAssessment>,
    /// A sentence saying why it passed or failed.
    pub reason: String,
}

/// The decision of a fairness gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessDecision {
    /// True when every rule passed.
    pub passed: bool,
    /// One outcome per rule, in rule order.
    pub results: Vec<FairnessOutcome>,
}

impl std::fmt::Display for FairnessDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed = self.results.iter().filter(|r| !r.passed).count();
        if self.passed {
            write!(f, "fairness gate PASSED ({} rules)", self.results.len())?;
        } else {
            write!(
                f,
                "fairness gate FAILED ({failed} of {} rules)",
                self.results.len()
            )?;
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

impl FairnessGate {
    /// Checks every rule: a bound of some kind, limits in the measure's range, tolerances
    /// `>= 0`, the options fitting the measure, and the config.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        if self.rules.is_empty() {
            return Err(Error::invalid(
                "FairnessGate.rules",
                "[]",
                "at least one rule (a gate without rules would pass anything)",
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let field = format!("FairnessGate.rules[{i}]");
            rule.disparity.check(&format!("{field}.disparity"))?;
            if rule.limit.is_none() && rule.champion_tolerance.is_none() {
                return Err(Error::invalid(
                    field,
                    "no bound",
                    "a limit, a champion_tolerance, or both",
                ));
            }
            if let Some(limit) = rule.limit {
                let m = rule.disparity.measure;
                let ok = limit.is_finite()
                    && match m {
                        Disparity::DisparateImpact => limit > 0.0,
                        Disparity::DemographicParityRatio
                        | Disparity::EqualizedOddsRatio
                        | Disparity::EqualOpportunityRatio => limit > 0.0 && limit <= 1.0,
                        _ => (0.0..=1.0).contains(&limit),
                    };
                if !ok {
                    return Err(Error::invalid(
                        format!("{field}.limit"),
                        limit,
                        format!(
                            "{} for {m}",
                            match m {
                                Disparity::DisparateImpact =>
                                    "a ratio > 0 (0.8: the four-fifths rule)",
                                Disparity::DemographicParityRatio
                                | Disparity::EqualizedOddsRatio
                                | Disparity::EqualOpportunityRatio => "a ratio in (0, 1]",
                                Disparity::StatisticalParityDifference
                                | Disparity::AverageOddsDifference =>
                                    "a size in [0, 1] (the difference's either sign is judged)",
                                _ => "a difference in [0, 1]",
                            }
                        ),
                    ));
                }
            }
            if let Some(t) = rule.champion_tolerance {
                if !(t.is_finite() && t >= 0.0) {
                    return Err(Error::invalid(
                        format!("{field}.champion_tolerance"),
                        t,
                        "a finite number >= 0",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every rule failed for `reason` (data that cannot be judged at all: a holdout its model
    /// cannot score, say), in the decision's shape.
    ///
    /// ```
    /// let gate: mlops_core::fairness::FairnessGate = serde_json::from_str(
    ///     r#"{"rules": [{"disparity": {"measure": "demographic_parity_ratio"}, "limit": 0.8}]}"#,
    /// )?;
    /// let d = gate.fail_all("no scores");
    /// assert!(!d.passed && d.results[0].reason.ends_with("no scores"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn fail_all(&self, reason: &str) -> FairnessDecision {
        FairnessDecision {
            passed: false,
            results: self
                .rules
                .iter()
                .map(|rule| failed(rule, format!("{}: {reason}", rule.disparity)))
                .collect(),
        }
    }

    /// Applies every rule to `candidate` (and `champion`, scored on the same rows, where a rule
    /// compares). Never fails: an invalid gate, an undefined measure and a group below the
    /// minimum size are failed rules that say why.
    pub fn evaluate(
        &self,
        candidate: &FairnessData,
        champion: Option<&FairnessData>,
    ) -> FairnessDecision {
        if let Err(e) = self.validate() {
            let results = self
                .rules
                .iter()
                .map(|rule| failed(rule, format!("the gate is invalid: {e}")))
                .collect();
            return FairnessDecision {
                passed: false,
                results,
            };
        }
        let results: Vec<FairnessOutcome> = self
            .rules
            .iter()
            .map(|rule| self.apply(rule, candidate, champion))
            .collect();
        let passed = results.iter().all(|r| r.passed);
        tracing::debug!(passed, rules = results.len(), "fairness gate evaluated");
        FairnessDecision { passed, results }
    }

    fn apply(
        &self,
        rule: &FairnessRule,
        candidate: &FairnessData,
        champion: Option<&FairnessData>,
    ) -> FairnessOutcome {
        let m = rule.disparity.measure;
        let cand = match assess(candidate, &rule.disparity, &self.config) {
            Ok(a) => a,
            Err(e) => return failed(rule, format!("{}: {e}", rule.disparity)),
        };
        let mut out = FairnessOutcome {
            rule: rule.clone(),
            passed: false,
            observed: None,
            required: None,
            worst: cand.value.as_ref().map(|v| v.worst.clone()),
            candidate: cand.clone(),
            champion: None,
            reason: cand.reason.clone(),
        };
        match cand.status {
            AssessmentStatus::Measured => {}
            AssessmentStatus::Undefined => return out,
            AssessmentStatus::Inconclusive => {
                out.reason = format!("{} (an inconclusive result never passes)", cand.reason);
                return out;
            }
        }
        let (observed, what) = if rule.use_confidence_bound {
            match (&cand.interval, cand.pessimistic_unfairness()) {
                (Some(_), Some(u)) => (u, "pessimistic bound"),
                _ => {
                    out.reason = format!(
                        "{}: the rule judges the interval but there is none (bootstrap off, or undefined on most resamples)",
                        cand.reason
                    );
                    return out;
                }
            }
        } else {
            let v = cand.value.as_ref().map_or(f64::NAN, |v| v.value);
            (m.unfairness(v), "estimate")
        };
        out.observed = Some(observed);
        let mut allowed = f64::INFINITY;
        let mut bounds = Vec::new();
        if let Some(limit) = rule.limit {
            let a = m.unfairness(limit);
            allowed = allowed.min(a);
            bounds.push(format!("limit {limit} (unfairness {a:.6})"));
        }
        if let Some(tol) = rule.champion_tolerance {
            match champion {
                None if self.pass_without_champion => {
                    bounds.push("no champion: champion bound skipped".into())
                }
                None => {
                    out.reason = format!("{}; no champion to compare with", cand.reason);
                    return out;
                }
                Some(ch) => {
                    if let Err(why) = same_rows(candidate, ch) {
                        out.reason = format!("{}; champion: {why}", cand.reason);
                        return out;
                    }
                    let champ = match assess(ch, &rule.disparity, &self.config) {
                        Ok(a) => a,
                        Err(e) => {
                            out.reason = format!("{}; champion: {e}", cand.reason);
                            return out;
                        }
                    };
                    let Some(cv) = champ
                        .value
                        .as_ref()
                        .filter(|_| champ.status == AssessmentStatus::Measured)
                    else {
                        out.reason = format!("{}; champion: {}", cand.reason, champ.reason);
                        out.champion = Some(champ);
                        return out;
                    };
                    let a = m.unfairness(cv.value) + tol;
                    if !a.is_finite() {
                        out.reason = format!(
                            "{}; champion's value {} is not a number",
                            cand.reason, cv.value
                        );
                        out.champion = Some(champ);
                        return out;
                    }
                    allowed = allowed.min(a);
                    bounds.push(format!(
                        "champion {:.6} plus tolerance {tol} (unfairness {a:.6})",
                        cv.value
                    ));
                    out.champion = Some(champ);
                }
            }
        }
        // Both finite here; a NaN would compare false and fail.
        let ok = observed.is_finite() && observed <= allowed;
        out.passed = ok;
        out.required = allowed.is_finite().then_some(allowed);
        out.reason = format!(
            "{}: unfairness ({what}) {observed:.6} {} {}",
            cand.reason,
            if ok { "is within" } else { "exceeds" },
            bounds.join(" and ")
        );
        out
    }
}

/// The champion must be judged on the candidate's rows: the same labels and groups.
fn same_rows(candidate: &FairnessData, champion: &FairnessData) -> std::result::Result<(), String> {
    if champion.len() != candidate.len() {
        return Err(format!(
            "scored on {} rows, the candidate on {}: expected the same rows",
            champion.len(),
            candidate.len()
        ));
    }
    if champion.labels() != candidate.labels()
        || champion.groups().codes() != candidate.groups().codes()
    {
        return Err(
            "its labels or groups differ from the candidate's: expected the same rows".into(),
        );
    }
    Ok(())
}

fn failed(rule: &FairnessRule, reason: String) -> FairnessOutcome {
    FairnessOutcome {
        rule: rule.clone(),
        passed: false,
        observed: None,
        required: None,
        worst: None,
        candidate: DisparityAssessment {
            spec: rule.disparity.clone(),
            status: AssessmentStatus::Undefined,
            value: None,
            interval: None,
            small_groups: Vec::new(),
            reason: reason.clone(),
        },
        champion: None,
        reason,
    }
}
