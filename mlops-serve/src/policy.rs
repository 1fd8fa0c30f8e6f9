//! The promotion policy: a canary analysis shaped like Flagger's and Argo Rollouts' (steps,
//! bake time, minimum samples, checks, failure and inconclusive limits, a no-data policy, a
//! rollback mode, an optional shadow phase), read from TOML or JSON and checked before use.
//!
//! ```
//! use mlops_serve::policy::{NoData, Promotion, PromotionConfig};
//!
//! let policy = Promotion::from_toml_str(r#"
//!     steps = [10, 25, 50, 75, 100]
//!     bake_time_seconds = 600
//!     min_requests = 200
//!     failure_limit = 1
//!
//!     [[checks]]
//!     kind = "error_rate"
//!     [[checks]]
//!     kind = "latency_p99"
//!     factor = 1.1
//!     [[checks]]
//!     kind = "roc_auc"
//!     max_decrease = 0.01
//! "#)?;
//! assert_eq!(policy.no_data, NoData::Extend); // never promote on no evidence by default
//! let err = Promotion::from_toml_str("steps = [10, 5, 100]").unwrap_err();
//! assert!(err.to_string().contains("steps[1]"), "{err}");
//!
//! // A config built in code is checked before anything can use it.
//! let empty = PromotionConfig { steps: vec![], ..PromotionConfig::default() };
//! assert!(empty.check().unwrap_err().to_string().contains("steps"));
//! # Ok::<(), mlops_serve::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::analysis::Check;
use crate::router::routes_percent_check;
use crate::{Error, Result};

/// What a step without enough requests (either variant below `min_requests`) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Bake another period; counts toward `inconclusive_limit`, after which the candidate is
    /// rolled back ("no evidence").
    #[default]
    Extend,
    /// Count it as a failed analysis.
    Fail,
    /// Advance anyway (an explicit opt-in to promote without evidence).
    Pass,
}

impl NoData {
    /// Every variant, in declaration order.
    pub const ALL: [NoData; 3] = [NoData::Extend, NoData::Fail, NoData::Pass];

    /// The serialized name (`extend`, `fail`, `pass`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            NoData::Extend => "extend",
            NoData::Fail => "fail",
            NoData::Pass => "pass",
        }
    }
}

/// How a failed rollout returns traffic to stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// All traffic to stable at once.
    #[default]
    Immediate,
    /// Down through the steps already taken, one per bake time (no checks on the way).
    Gradual,
}

impl RollbackMode {
    /// Every variant, in declaration order.
    pub const ALL: [RollbackMode; 2] = [RollbackMode::Immediate, RollbackMode::Gradual];

    /// The serialized name (`immediate`, `gradual`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RollbackMode::Immediate => "immediate",
            RollbackMode::Gradual => "gradual",
        }
    }
}

/// An optional shadow phase before live traffic: the candidate scores a share of requests
/// off the request path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPhase {
    /// Percent of requests mirrored, in (0, 100], whole buckets (multiples of 0.01).
    pub percent: f64,
    /// Seconds the phase lasts before it is analyzed, > 0.
    pub bake_time_seconds: f64,
    /// Checks of the phase; checks that need labels are refused (a shadow's predictions are
    /// never served, so no label joins to them).
    pub checks: Vec<Check>,
}

/// Always-valid analysis of a rollout (see [`crate::sequential`]): the error rates a policy
/// targets, not only its thresholds.
///
/// The statistical checks (`roc_auc`, `accuracy`, `error_rate`) pool their evidence over every
/// analysis window of the rollout (the candidate is the same model at every step) and decide
/// on a normal-mixture confidence sequence, which holds at every look at once: `roc_auc` and
/// `accuracy` pass when the band's lower end is above `-max_decrease`, fail when its upper
/// end is below, and otherwise have no evidence yet; `error_rate` fails when the lower end of
/// the error-rate increase is above `max_increase`. A step with no evidence yet bakes again,
/// never counted as a failure, until `max_step_seconds` after it began; then the candidate is
/// rolled back (never promoted on no evidence).
///
/// ```
/// use mlops_serve::policy::Promotion;
///
/// let p = Promotion::from_toml_str(r#"
///     [sequential]
///     alpha = 0.05
///     max_step_seconds = 21600
/// "#)?;
/// assert_eq!(p.sequential.as_ref().unwrap().alpha, 0.05);
/// let e = Promotion::from_toml_str("[sequential]\nalpha = 0.7").unwrap_err();
/// assert!(e.to_string().contains("sequential.alpha"), "{e}");
/// # Ok::<(), mlops_serve::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sequential {
    /// Over a whole rollout, the chance that the statistical checks roll back a candidate no
    /// worse than stable, and the chance that `roc_auc` or `accuracy` passes a candidate
    /// worse by its margin; split evenly across the policy's statistical checks. In (0, 0.5].
    pub alpha: f64,
    /// Seconds a step may bake again for want of evidence, from when it began; at least the
    /// bake time. `None` (not written): [`Sequential::max_step_for`] of the bake time, six
    /// hours or three bake times, whichever is longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_step_seconds: Option<f64>,
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential {
            alpha: 0.05,
            max_step_seconds: None,
        }
    }
}

impl Sequential {
    /// The seconds a step of a policy baking `bake_time_seconds` may bake again for want of
    /// evidence: `max_step_seconds` as written, or six hours or three bake times (the
    /// per-window analysis's default inconclusive limit), whichever is longer.
    ///
    /// ```
    /// use mlops_serve::policy::Sequential;
    ///
    /// assert_eq!(Sequential::default().max_step_for(600.0), 21_600.0);
    /// assert_eq!(Sequential::default().max_step_for(86_400.0), 259_200.0);
    /// let written = Sequential { max_step_seconds: Some(7_200.0), ..Sequential::default() };
    /// assert_eq!(written.max_step_for(600.0), 7_200.0);
    /// ```
    pub fn max_step_for(&self, bake_time_seconds: f64) -> f64 {
        self.max_step_seconds
            .unwrap_or_else(|| (6.0 * 3_600.0_f64).max(3.0 * bake_time_seconds))
    }
}

/// `sequential` as written: a table ([`Sequential`]'s fields, each defaulted), `true` (every
/// field defaulted), or `false` or null (per-window analysis); `None` is written as `false`.
mod sequential_serde {
    use super::Sequential;
    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Sequential>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match v {
            Some(seq) => seq.serialize(s),
            None => s.serialize_bool(false),
        }
    }

    struct Written;

    impl<'de> Visitor<'de> for Written {
        type Value = Option<Sequential>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true, false or a table of alpha and max_step_seconds")
        }

        fn visit_bool<E: de::Error>(self, on: bool) -> std::result::Result<Self::Value, E> {
            Ok(on.then(Sequential::default))
        }

        fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            // The table's own errors (an unknown field, a wrong type) come through named.
            Sequential::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Sequential>, D::Error> {
        d.deserialize_any(Written)
    }
}

/// The promotion policy as written (see the module docs): [`PromotionConfig::check`] turns it
/// into the [`Promotion`] that rollouts, controllers and replays take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromotionConfig {
    /// Canary traffic percent at each step, strictly increasing, whole buckets, the last 100
    /// (reaching it is the promotion). The seed's: 10, 25, 50, 75, 100.
    pub steps: Vec<f64>,
    /// Seconds each step bakes before it is analyzed, > 0.
    pub bake_time_seconds: f64,
    /// Requests each variant needs in a step before the step is analyzed; below it the step
    /// has no data and [`PromotionConfig::no_data`] decides.
    pub min_requests: u64,
    /// The checks run at the end of each step.
    pub checks: Vec<Check>,
    /// Failed analyses tolerated before the rollback (Flagger's `threshold`); ≥ 1.
    pub failure_limit: u32,
    /// Inconclusive analyses (and no-data extensions) tolerated in one step before the
    /// rollback; ≥ 1.
    pub inconclusive_limit: u32,
    /// What a step without data does.
    pub no_data: NoData,
    /// How a rollback returns traffic.
    pub rollback: RollbackMode,
    /// An optional shadow phase first.
    pub shadow: Option<ShadowPhase>,
    /// Always-valid analysis ([`Sequential`], the default): the statistical checks pool
    /// every window of the rollout and decide on a confidence sequence, and a step without
    /// evidence bakes again up to a maximum time. `None` (`sequential = false` in TOML):
    /// each analysis tests its own window at each check's confidence, and inconclusive
    /// analyses count towards `inconclusive_limit` (the analysis of Flagger and Argo
    /// Rollouts, whose error rates grow with every look). Checks other than `roc_auc`,
    /// `accuracy` and `error_rate` test each window either way.
    #[serde(with = "sequential_serde")]
    pub sequential: Option<Sequential>,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            steps: vec![10.0, 25.0, 50.0, 75.0, 100.0],
            bake_time_seconds: 600.0,
            min_requests: 100,
            checks: vec![
                Check::ErrorRate {
                    max_increase: 0.0,
                    confidence: 0.95,
                },
                Check::LatencyP99 {
                    factor: 1.1,
                    slack_ms: 0.0,
                },
                Check::RocAuc {
                    max_decrease: 0.01,
                    confidence: 0.95,
                    min_labeled: 200,
                },
            ],
            failure_limit: 1,
            inconclusive_limit: 3,
            no_data: NoData::Extend,
            rollback: RollbackMode::Immediate,
            shadow: None,
            sequential: Some(Sequential::default()),
        }
    }
}

pub(crate) fn check_seconds(field: &str, s: f64) -> Result<()> {
    if !(s.is_finite() && s > 0.0) {
        return Err(Error::invalid(field, s, "a number of seconds > 0"));
    }
    Ok(())
}

impl PromotionConfig {
    /// Checks every field and returns the checked policy; errors name the field
    /// (`steps[1]`, `checks[2].confidence`), its value and what was expected.
    ///
    /// ```
    /// use mlops_serve::policy::PromotionConfig;
    ///
    /// let decreasing = PromotionConfig { steps: vec![50.0, 40.0, 100.0], ..PromotionConfig::default() };
    /// let err = decreasing.check().unwrap_err().to_string();
    /// assert!(err.contains("steps[1] = 40"), "{err}");
    /// let policy = PromotionConfig::default().check()?;
    /// assert_eq!(policy.steps.last(), Some(&100.0));
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    pub fn check(self) -> Result<Promotion> {
        if self.steps.is_empty() {
            return Err(Error::invalid(
                "steps",
                "[]",
                "at least one step, the last 100",
            ));
        }
        let mut previous = 0.0;
        let mut previous_buckets = 0;
        for (i, &s) in self.steps.iter().enumerate() {
            let field = format!("steps[{i}]");
            let buckets = routes_percent_check(&field, s)?;
            if s <= previous {
                return Err(Error::invalid(
                    field,
                    s,
                    format!("a percent above the previous step's ({previous}), up to 100"),
                ));
            }
            // The router routes whole buckets of 0.01%: a step must move at least one, or it
            // would route the same traffic as the one before (or, first, none at all).
            if buckets <= previous_buckets {
                return Err(Error::invalid(
                    field,
                    s,
                    if i == 0 {
                        "a percent of at least 0.01 (one of 10,000 routing buckets): this step routes no traffic".to_string()
                    } else {
                        format!(
                            "a percent at least 0.01 above the previous step's ({previous}): steps closer than one routing bucket route the same traffic"
                        )
                    },
                ));
            }
            previous = s;
            previous_buckets = buckets;
        }
        if previous != 100.0 {
            return Err(Error::invalid(
                format!("steps[{}]", self.steps.len() - 1),
                previous,
                "100 (the last step is the promotion)",
            ));
        }
        let first = self.steps.first().copied().unwrap_or(100.0);
        if first >= 100.0 && self.shadow.is_none() {
            return Err(Error::invalid(
                "steps[0]",
                first,
                "a first step below 100 (a first step of 100 would promote with no analysis; add a shadow phase to analyze before it)",
            ));
        }
        check_seconds("bake_time_seconds", self.bake_time_seconds)?;
        if self.checks.is_empty() && self.no_data != NoData::Pass {
            return Err(Error::invalid(
                "checks",
                "[]",
                "at least one check (an analysis with no checks would promote on no evidence)",
            ));
        }
        for (i, c) in self.checks.iter().enumerate() {
            c.validate(&format!("checks[{i}]"))?;
        }
        if self.failure_limit == 0 {
            return Err(Error::invalid("failure_limit", 0, "at least 1"));
        }
        if self.inconclusive_limit == 0 {
            return Err(Error::invalid("inconclusive_limit", 0, "at least 1"));
        }
        if let Some(shadow) = &self.shadow {
            if routes_percent_check("shadow.percent", shadow.percent)? == 0 {
                return Err(Error::invalid(
                    "shadow.percent",
                    shadow.percent,
                    "a percent in (0, 100] of at least 0.01 (one of 10,000 routing buckets)",
                ));
            }
            check_seconds("shadow.bake_time_seconds", shadow.bake_time_seconds)?;
            if shadow.checks.is_empty() {
                return Err(Error::invalid("shadow.checks", "[]", "at least one check"));
            }
            for (i, c) in shadow.checks.iter().enumerate() {
                let field = format!("shadow.checks[{i}]");
                c.validate(&field)?;
                if c.needs_labels() {
                    return Err(Error::invalid(
                        field,
                        c.name(),
                        "a check without labels (error_rate, latency_p99, prediction_drift, shadow_agreement): a shadow's predictions are never served",
                    ));
                }
            }
        }
        if let Some(seq) = &self.sequential {
            if !(seq.alpha > 0.0 && seq.alpha <= 0.5) {
                return Err(Error::invalid(
                    "sequential.alpha",
                    seq.alpha,
                    "a rate in (0, 0.5]",
                ));
            }
            let max_step = seq.max_step_for(self.bake_time_seconds);
            if !(max_step.is_finite() && max_step >= self.bake_time_seconds) {
                return Err(Error::invalid(
                    "sequential.max_step_seconds",
                    max_step,
                    format!(
                        "seconds, at least bake_time_seconds ({})",
                        self.bake_time_seconds
                    ),
                ));
            }
        }
        Ok(Promotion { config: self })
    }
}

mlops_core::checked_config! {
    /// A checked promotion policy: the only form a rollout, a controller or a replay takes,
    /// so a policy that [`PromotionConfig::check`] refuses (no steps, steps that do not
    /// increase, a step above 100...) cannot reach them. Read its fields through `Deref`
    /// (`policy.steps`); it serializes as its [`PromotionConfig`] and deserializes through
    /// [`PromotionConfig::check`].
    ///
    /// ```
    /// use mlops_serve::policy::{Promotion, PromotionConfig};
    ///
    /// let policy = Promotion::default();
    /// assert_eq!(policy.steps, vec![10.0, 25.0, 50.0, 75.0, 100.0]);
    /// let json = serde_json::to_string(&policy)?;
    /// assert_eq!(serde_json::from_str::<Promotion>(&json)?, policy);
    /// assert!(serde_json::from_str::<Promotion>(r#"{"steps": []}"#).is_err());
    /// assert_eq!(policy.config(), &PromotionConfig::default());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct Promotion(PromotionConfig);
}

impl Default for Promotion {
    /// The default policy ([`PromotionConfig::default`], which passes the check: a test
    /// below runs it).
    fn default() -> Self {
        Promotion {
            config: PromotionConfig::default(),
        }
    }
}

impl Promotion {
    /// Parses TOML and checks the result.
    pub fn from_toml_str(text: &str) -> Result<Promotion> {
        let config: PromotionConfig = toml::from_str(text).map_err(|e| {
            Error::invalid(
                "promotion config (TOML)",
                e.message().to_string(),
                format!(
                    "a valid config{}",
                    e.span()
                        .map(|s| format!(" (at bytes {}..{})", s.start, s.end))
                        .unwrap_or_default()
                ),
            )
        })?;
        config.check()
    }

    /// Parses JSON and checks the result.
    pub fn from_json_str(text: &str) -> Result<Promotion> {
        let config: PromotionConfig = serde_json::from_str(text).map_err(|e| {
            Error::invalid("promotion config (JSON)", e.to_string(), "a valid config")
        })?;
        config.check()
    }

    /// Reads a `.toml` or `.json` file (by extension).
    pub fn from_path(path: &std::path::Path) -> Result<Promotion> {
        let text = std::fs::read_to_string(path).map_err(|cause| {
            Error::Core(mlops_core::Error::Io {
                action: "reading",
                path: path.to_path_buf(),
                cause,
            })
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text),
            Some("json") => Self::from_json_str(&text),
            _ => Err(Error::invalid(
                "promotion config path",
                path.display(),
                "a file ending in .toml or .json",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_passes_its_check() {
        assert_eq!(
            PromotionConfig::default().check().unwrap(),
            Promotion::default()
        );
    }
}
