//! Experiments across many models: a control and up to [`MAX_CANDIDATES`] candidates on the
//! router's N-way split (sticky by key, as canaries are), each candidate compared with the
//! control on a primary metric (ROC AUC or accuracy) with always-valid evidence, corrected
//! for the number of candidates, a winner declared only when it beats the control and every
//! other candidate still in the running, and, optionally, traffic moved towards the arms
//! likely to be best (Thompson sampling's probability matching, with a floor per arm).
//!
//! Each analysis window (the router's statistics since the previous one) adds to each arm's
//! pooled estimate and to each pairwise difference ([`Evidence`], pooled by inverse variance
//! as a rollout's checks are). The differences are judged on the normal-mixture confidence
//! sequence of [`crate::sequential`], which holds at every look:
//!
//! - **against the control**, each candidate's always-valid p-value (`1/Λ`, capped at 1)
//!   goes through Holm's step-down at `alpha / 3` for "better" and again at `alpha / 3` for
//!   "worse": Holm needs only valid p-values, and an always-valid p-value read at any
//!   stopping time is one, so the family-wise error over the candidates holds however often
//!   the experiment is looked at;
//! - **between candidates**, a winner must also beat every other candidate not shown worse
//!   than the control, each pair on its band at `alpha / (3 (K − 1))` (`K` candidates).
//!
//! Naming an arm that is not the best takes one of three errors (a false "better than the
//! control", the true best falsely "worse", or a false win over the true best), each held
//! under `alpha / 3`: the chance of naming a wrong winner stays under `alpha`.
//!
//! An arm whose error rate is above `max_error_rate` (the 95% Wilson lower bound of its
//! errors over the experiment) is dropped and gets no more traffic; a control that errors
//! stops the experiment, recorded, with no winner: nothing can be judged against it.
//!
//! ```
//! use mlops_serve::experiment::{Arm, Experiment, ExperimentConfig};
//!
//! let arms = vec![Arm::new("control", 1, 50.0), Arm::new("b", 2, 25.0), Arm::new("c", 3, 25.0)];
//! let e = ExperimentConfig { arms, ..ExperimentConfig::default() }.check()?;
//! assert_eq!(e.control_index(), 0);
//! // One arm is not an experiment; weights must sum to 100; a version serves one arm.
//! let one = ExperimentConfig { arms: vec![Arm::new("control", 1, 100.0)], ..ExperimentConfig::default() };
//! assert!(one.check().unwrap_err().to_string().contains("arms"));
//! # Ok::<(), mlops_serve::Error>(())
//! ```

use std::time::SystemTime;

mod controller;
pub use controller::{
    experiment_document, ExperimentController, ExperimentParts, ExperimentRecord, ExperimentStore,
    ExperimentTick, MemoryExperimentStore, StoredExperiment, KEPT_DECISIONS,
};

use serde::{Deserialize, Serialize};
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use crate::router::BUCKETS;
use crate::sequential::{mixture_likelihood_ratio, Evidence};
use crate::step_stats::{StepSnapshot, VariantSnapshot};
use crate::{Error, Result};

/// The most candidates of one experiment (besides its control).
pub const MAX_CANDIDATES: usize = 16;

/// The longest experiment name (its state document is `experiment_NAME`, a registry name of
/// at most 128 characters).
pub const MAX_NAME: usize = 100;

/// Labeled rows of each class an arm needs in a window before the window's estimate joins
/// its evidence (as for a rollout's pooled checks).
pub const MIN_WINDOW_PER_CLASS: usize = crate::analysis::MIN_WINDOW_PER_CLASS;

/// One arm: a model version and its share of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// The arm's name, its variant in the router.
    pub name: String,
    /// The model version it serves (one arm per version).
    pub version: u64,
    /// Its percent of traffic at the start (all arms sum to 100, whole buckets of 0.01%).
    pub percent: f64,
}

impl Arm {
    /// An arm serving `version` with `percent` of traffic.
    pub fn new(name: &str, version: u64, percent: f64) -> Self {
        Arm {
            name: name.to_string(),
            version,
            percent,
        }
    }
}

/// The primary metric, higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// ROC AUC of the labeled rows, with DeLong's variance.
    #[default]
    RocAuc,
    /// Accuracy at each arm's own threshold, with Wald's variance.
    Accuracy,
}

/// How traffic is split while the experiment runs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Allocation {
    /// The arms' configured percents throughout (a dropped arm's share goes to the control).
    #[default]
    Fixed,
    /// The control keeps its configured share (every comparison is against it); each
    /// candidate's share of the rest follows the probability that it is the best arm on the
    /// primary metric (under a normal posterior of its pooled estimate), above
    /// `floor_percent` each, once every arm in the running has evidence. It sends most
    /// traffic to the leader: naming a winner, which needs the leader compared with the
    /// others, then takes longer than with fixed shares.
    Thompson {
        /// The least percent of traffic each candidate in the running keeps, so every arm
        /// keeps gathering evidence; whole buckets, and candidates × floor at most the
        /// candidates' share (100 minus the control's).
        floor_percent: f64,
    },
}

/// An experiment as written; [`ExperimentConfig::check`] turns it into an [`Experiment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The experiment's name: its `experiment` label in the Prometheus series and, with
    /// [`ExperimentController`], its state document (`experiment_NAME`) in the registry.
    /// 1 to 100 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    pub name: String,
    /// The control arm's name (default: the first arm).
    pub control: Option<String>,
    /// The arms, the control among them: 2 to `MAX_CANDIDATES + 1`.
    pub arms: Vec<Arm>,
    /// The primary metric.
    pub metric: Metric,
    /// The family-wise error of the whole experiment, over every look: the chance of naming
    /// a winner that is not better than the control and every other arm. In (0, 0.5].
    pub alpha: f64,
    /// How much a winner must beat the control by on the metric, ≥ 0.
    pub min_improvement: f64,
    /// The error rate above which an arm is dropped (the control: the experiment stops), in
    /// [0, 1).
    pub max_error_rate: f64,
    /// How traffic is split.
    pub allocation: Allocation,
    /// Seconds the experiment may run before it ends without a winner, > 0.
    pub max_seconds: f64,
    /// Seconds between two analyses of live traffic by an [`ExperimentController`] (each
    /// replica hands in its window this often), at least 1: long enough for every arm to
    /// collect [`MIN_WINDOW_PER_CLASS`] labeled rows of each class, or its windows add no
    /// evidence. Each analysis is one entry in the registry's state log. A replay analyzes at
    /// its own `tick_seconds`.
    pub analysis_seconds: f64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            name: "experiment".to_string(),
            control: None,
            arms: Vec::new(),
            metric: Metric::RocAuc,
            alpha: 0.05,
            min_improvement: 0.0,
            max_error_rate: 0.01,
            allocation: Allocation::Fixed,
            max_seconds: 7.0 * 86_400.0,
            analysis_seconds: 300.0,
        }
    }
}

fn whole_buckets(p: f64) -> bool {
    let b = p * f64::from(BUCKETS) / 100.0;
    (b - b.round()).abs() < 1e-6
}

/// Whether two numbers read from configuration files are the same (a number written to JSON
/// and read back may move in its last bit).
fn same_number(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

impl ExperimentConfig {
    /// The first field in which `other` is another experiment (`None`: the same one), numbers
    /// compared to 1e-12 relative (a stored copy may move in its last bit).
    ///
    /// ```
    /// use mlops_serve::experiment::{Arm, ExperimentConfig};
    ///
    /// let a = ExperimentConfig { arms: vec![Arm::new("a", 1, 50.0), Arm::new("b", 2, 50.0)], ..Default::default() };
    /// assert_eq!(a.differs_from(&a.clone()), None);
    /// let b = ExperimentConfig { alpha: 0.1, ..a.clone() };
    /// assert_eq!(a.differs_from(&b).as_deref(), Some("alpha"));
    /// ```
    pub fn differs_from(&self, other: &ExperimentConfig) -> Option<String> {
        let numbers = [
            ("alpha", self.alpha, other.alpha),
            (
                "min_improvement",
                self.min_improvement,
                other.min_improvement,
            ),
            ("max_error_rate", self.max_error_rate, other.max_error_rate),
            ("max_seconds", self.max_seconds, other.max_seconds),
            (
                "analysis_seconds",
                self.analysis_seconds,
                other.analysis_seconds,
            ),
        ];
        if self.name != other.name {
            return Some("name".into());
        }
        if self.control != other.control {
            return Some("control".into());
        }
        if self.arms.len() != other.arms.len() {
            return Some("arms".into());
        }
        for (i, (a, b)) in self.arms.iter().zip(&other.arms).enumerate() {
            if a.name != b.name || a.version != b.version || !same_number(a.percent, b.percent) {
                return Some(format!("arms[{i}]"));
            }
        }
        if self.metric != other.metric {
            return Some("metric".into());
        }
        if let Some((field, _, _)) = numbers.iter().find(|(_, a, b)| !same_number(*a, *b)) {
            return Some((*field).into());
        }
        let same_allocation = match (self.allocation, other.allocation) {
            (Allocation::Fixed, Allocation::Fixed) => true,
            (
                Allocation::Thompson { floor_percent: a },
                Allocation::Thompson { floor_percent: b },
            ) => same_number(a, b),
            _ => false,
        };
        (!same_allocation).then(|| "allocation".into())
    }

    /// Checks every field, naming the field, the value and what was expected.
    pub fn check(self) -> Result<Experiment> {
        if !(mlops_core::version_ref::is_plain_name(&self.name) && self.name.len() <= MAX_NAME) {
            return Err(Error::invalid(
                "name",
                format!("{:?}", self.name),
                format!("1 to {MAX_NAME} characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, without \"..\""),
            ));
        }
        let n = self.arms.len();
        if !(2..=MAX_CANDIDATES + 1).contains(&n) {
            let names: Vec<&str> = self.arms.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::invalid(
                "arms",
                format!("{n} arms {names:?}"),
                format!("a control and 1 to {MAX_CANDIDATES} candidates"),
            ));
        }
        let mut sum = 0.0;
        for (i, a) in self.arms.iter().enumerate() {
            if a.name.is_empty() || a.name.len() > 128 || a.name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    format!("arms[{i}].name"),
                    format!("{:?}", a.name),
                    "a name of 1 to 128 bytes without control characters",
                ));
            }
            if let Some(j) = self.arms[..i].iter().position(|b| b.name == a.name) {
                return Err(Error::invalid(
                    format!("arms[{i}].name"),
                    format!("{:?}", a.name),
                    format!("a name no other arm has (arms[{j}] has it)"),
                ));
            }
            if let Some(j) = self.arms[..i].iter().position(|b| b.version == a.version) {
                return Err(Error::invalid(
                    format!("arms[{i}].version"),
                    a.version,
                    format!(
                        "a version no other arm serves (arms[{j}] {:?} serves it: two arms of one model compare nothing)",
                        self.arms[j].name
                    ),
                ));
            }
            if !(a.percent.is_finite()
                && (0.01..=100.0).contains(&a.percent)
                && whole_buckets(a.percent))
            {
                return Err(Error::invalid(
                    format!("arms[{i}].percent"),
                    a.percent,
                    "a percent in [0.01, 100] of whole buckets (0.01): an arm without traffic is never measured, and a winner must beat every arm",
                ));
            }
            sum += a.percent;
        }
        if (sum - 100.0).abs() > 1e-6 {
            return Err(Error::invalid(
                "arms[].percent",
                format!("a sum of {sum}"),
                "percents summing to 100",
            ));
        }
        let control = match &self.control {
            None => 0,
            Some(name) => self
                .arms
                .iter()
                .position(|a| &a.name == name)
                .ok_or_else(|| {
                    Error::invalid(
                        "control",
                        format!("{name:?}"),
                        "the name of one of the arms",
                    )
                })?,
        };
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(Error::invalid("alpha", self.alpha, "a rate in (0, 0.5]"));
        }
        if !(self.min_improvement.is_finite() && (0.0..1.0).contains(&self.min_improvement)) {
            return Err(Error::invalid(
                "min_improvement",
                self.min_improvement,
                "a difference in [0, 1)",
            ));
        }
        if !(0.0..1.0).contains(&self.max_error_rate) {
            return Err(Error::invalid(
                "max_error_rate",
                self.max_error_rate,
                "a rate in [0, 1)",
            ));
        }
        if let Allocation::Thompson { floor_percent } = self.allocation {
            let spare = 100.0 - self.arms[control].percent;
            if !(floor_percent.is_finite()
                && floor_percent >= 0.01
                && floor_percent * (n - 1) as f64 <= spare + 1e-9
                && whole_buckets(floor_percent))
            {
                return Err(Error::invalid(
                    "allocation.floor_percent",
                    floor_percent,
                    format!(
                        "a percent of whole buckets, at least 0.01 (every arm keeps being measured) and at most the candidates' {spare} / {} candidates (the control keeps its {})",
                        n - 1,
                        self.arms[control].percent
                    ),
                ));
            }
        }
        crate::policy::check_seconds("max_seconds", self.max_seconds)?;
        if !(self.analysis_seconds.is_finite() && self.analysis_seconds >= 1.0) {
            return Err(Error::invalid(
                "analysis_seconds",
                self.analysis_seconds,
                "a number of seconds >= 1 (each analysis writes one entry of the state log)",
            ));
        }
        Ok(Experiment {
            config: self,
            control,
        })
    }
}

/// A checked experiment ([`ExperimentConfig::check`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    #[serde(flatten)]
    config: ExperimentConfig,
    #[serde(skip)]
    control: usize,
}

impl std::ops::Deref for Experiment {
    type Target = ExperimentConfig;
    fn deref(&self) -> &ExperimentConfig {
        &self.config
    }
}

impl Experiment {
    /// The control's index in [`ExperimentConfig::arms`].
    pub fn control_index(&self) -> usize {
        self.control
    }

    /// The candidates' count, `K`.
    pub fn candidates(&self) -> usize {
        self.config.arms.len() - 1
    }

    /// The configured weights, as the router takes them.
    pub fn initial_weights(&self) -> Vec<(String, f64)> {
        self.arms
            .iter()
            .map(|a| (a.name.clone(), a.percent))
            .collect()
    }

    /// The mixing variance of the bands: the improvement sought, or a point of the metric.
    fn mixing_variance(&self) -> f64 {
        let tau = if self.min_improvement > 0.0 {
            self.min_improvement
        } else {
            0.01
        };
        tau * tau
    }
}

/// Where an arm stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmStatus {
    /// The control.
    Control,
    /// Still in the running: not yet shown better or worse than the control.
    Running,
    /// Shown better than the control (Holm, always valid).
    BeatsControl,
    /// Shown worse than the control.
    WorseThanControl,
    /// Its band against the control lies below `min_improvement`: it cannot win.
    CannotWin,
    /// Its error rate is above `max_error_rate`: it gets no more traffic.
    Dropped,
}

impl ArmStatus {
    /// The serialized name (`control`, `running`, `beats_control`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ArmStatus::Control => "control",
            ArmStatus::Running => "running",
            ArmStatus::BeatsControl => "beats_control",
            ArmStatus::WorseThanControl => "worse_than_control",
            ArmStatus::CannotWin => "cannot_win",
            ArmStatus::Dropped => "dropped",
        }
    }
}

/// An arm's evidence over the experiment, kept in [`ExperimentState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEvidence {
    /// The arm's name.
    pub name: String,
    /// Its pooled metric.
    pub own: Evidence,
    /// Its pooled difference from the control (empty for the control).
    pub vs_control: Evidence,
    /// Requests over the experiment.
    pub requests: u64,
    /// Failed requests over the experiment.
    pub errors: u64,
    /// Labeled rows over the experiment.
    pub labeled: u64,
    /// Whether it was dropped for its errors.
    pub dropped: bool,
}

/// An arm in a decision: its numbers and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmReport {
    /// The arm's name.
    pub name: String,
    /// Its model version.
    pub version: u64,
    /// Its percent of traffic from this decision on.
    pub percent: f64,
    /// Where it stands.
    pub status: ArmStatus,
    /// Requests and failed requests over the experiment.
    pub requests: u64,
    /// Failed requests over the experiment.
    pub errors: u64,
    /// Labeled rows over the experiment.
    pub labeled: u64,
    /// Its pooled metric (`None`: no window had the labels yet).
    pub estimate: Option<f64>,
    /// Its difference from the control (candidates).
    pub difference: Option<f64>,
    /// The always-valid band of that difference at the pairwise level, `alpha / (3 (K − 1))`
    /// (`alpha` with one candidate); `status` comes from Holm's step-down, whose last steps
    /// reject at up to `alpha / 3`, so a `beats_control` arm's band may still touch the null.
    pub interval: Option<(f64, f64)>,
    /// Its always-valid p-value for "better than the control", Holm-adjusted over the
    /// candidates (compared with `alpha / 3`).
    pub p_value: Option<f64>,
    /// The probability that it is the best arm (normal posterior of its pooled metric).
    pub p_best: Option<f64>,
}

/// What an analysis decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentOutcome {
    /// Go on with the weights of the decision.
    Continue,
    /// A winner: better than the control and every other arm still in the running.
    Winner,
    /// No candidate can beat the control, or time ran out: the control stays.
    NoWinner,
    /// The control errs: nothing can be judged against it.
    Stopped,
}

impl ExperimentOutcome {
    /// The serialized name (`continue`, `winner`, `no_winner`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentOutcome::Continue => "continue",
            ExperimentOutcome::Winner => "winner",
            ExperimentOutcome::NoWinner => "no_winner",
            ExperimentOutcome::Stopped => "stopped",
        }
    }

    /// Whether the experiment is over.
    pub fn is_terminal(self) -> bool {
        self != ExperimentOutcome::Continue
    }
}

/// One analysis of an experiment: the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDecision {
    /// When, seconds since the Unix epoch.
    pub at_unix: f64,
    /// What it decided.
    pub outcome: ExperimentOutcome,
    /// The winner's name, with [`ExperimentOutcome::Winner`].
    pub winner: Option<String>,
    /// Why, in words: the numbers that decided.
    pub reason: String,
    /// Every arm, in the config's order.
    pub arms: Vec<ArmReport>,
}

impl ExperimentDecision {
    /// The weights of this decision, as the router takes them.
    pub fn weights(&self) -> Vec<(String, f64)> {
        self.arms
            .iter()
            .map(|a| (a.name.clone(), a.percent))
            .collect()
    }
}

/// An experiment's evidence and decisions so far; serializable, so a restarted host goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentState {
    /// When it started, seconds since the Unix epoch.
    pub started_unix: f64,
    /// Each arm's evidence, in the config's order.
    pub arms: Vec<ArmEvidence>,
    /// Pairwise differences between candidates `(i, j)`, `i < j` (config indexes), `i − j`.
    pub pairs: Vec<((usize, usize), Evidence)>,
    /// The decisions kept, the last one in force: every one unless a host keeps only the
    /// latest ([`ExperimentState::keep_last_decisions`]; the registry's state log keeps
    /// every entry).
    pub decisions: Vec<ExperimentDecision>,
    /// How many earlier decisions [`ExperimentState::keep_last_decisions`] let go.
    #[serde(default)]
    pub decisions_dropped: u64,
}

pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An arm's metric on one window and its variance, when it has the labels for it.
fn window_metric(metric: Metric, v: &VariantSnapshot) -> Option<(f64, f64)> {
    let positives = v.labels.iter().filter(|&&l| l).count();
    if positives < MIN_WINDOW_PER_CLASS || v.labels.len() - positives < MIN_WINDOW_PER_CLASS {
        return None;
    }
    crate::analysis::variant_metric(metric == Metric::RocAuc, v)
}

/// The probability that each arm is the best under independent normal posteriors
/// `N(mean, variance)`, by quadrature over a grid; `None` unless every arm has a positive
/// finite variance.
pub fn probability_best(posteriors: &[(f64, f64)]) -> Option<Vec<f64>> {
    if posteriors.is_empty()
        || posteriors
            .iter()
            .any(|&(m, v)| !(m.is_finite() && v.is_finite() && v > 0.0))
    {
        return None;
    }
    // A spread below what a grid of its own can resolve at its mean: no honest answer.
    if posteriors
        .iter()
        .any(|&(m, v)| 18.0 * v.sqrt() / 400.0 <= 1e-12 * m.abs().max(1e-300))
    {
        return None;
    }
    let normals: Vec<Normal> = posteriors
        .iter()
        .map(|&(m, v)| Normal::new(m, v.sqrt()).ok())
        .collect::<Option<_>>()?;
    // One grid, the union of each arm's own points over its mean ± 9σ: an arm far more
    // precise than another is not lost between the points of a coarse common grid (its
    // step in the others' integrands falls on its own points). Trapezoid rule; each point's
    // CDFs and densities computed once, the product of the others' CDFs from prefix and
    // suffix products.
    const POINTS: usize = 400;
    let mut grid: Vec<f64> = posteriors
        .iter()
        .flat_map(|&(m, v)| {
            let (low, sd) = (m - 9.0 * v.sqrt(), v.sqrt());
            (0..=POINTS).map(move |g| low + 18.0 * sd * g as f64 / POINTS as f64)
        })
        .collect();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let k = normals.len();
    let integrand = |x: f64| -> Vec<f64> {
        let cdf: Vec<f64> = normals.iter().map(|n| n.cdf(x)).collect();
        let mut prefix = vec![1.0; k + 1];
        for j in 0..k {
            prefix[j + 1] = prefix[j] * cdf[j];
        }
        let mut suffix = vec![1.0; k + 1];
        for j in (0..k).rev() {
            suffix[j] = suffix[j + 1] * cdf[j];
        }
        (0..k)
            .map(|j| normals[j].pdf(x) * prefix[j] * suffix[j + 1])
            .collect()
    };
    let mut p = vec![0.0; k];
    let mut last = integrand(grid[0]);
    for w in grid.windows(2) {
        let next = integrand(w[1]);
        let h = w[1] - w[0];
        for j in 0..k {
            p[j] += 0.5 * h * (last[j] + next[j]);
        }
        last = next;
    }
    let total: f64 = p.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    Some(p.into_iter().map(|x| x / total).collect())
}

/// Splits `total` buckets: `floor` buckets for each arm with a share, the rest in
/// proportion to `shares` (arms with share `None` get none), what rounding down leaves going
/// to the largest share.
fn allocate(shares: &[Option<f64>], floor: i64, total: i64) -> Vec<i64> {
    let live = shares.iter().filter(|s| s.is_some()).count() as i64;
    let spare = (total - floor * live).max(0);
    let sum: f64 = shares.iter().flatten().sum();
    let mut buckets: Vec<i64> = shares
        .iter()
        .map(|s| match s {
            Some(p) if sum > 0.0 => floor + (spare as f64 * p / sum).floor() as i64,
            Some(_) => floor + spare / live.max(1),
            None => 0,
        })
        .collect();
    let missing = total - buckets.iter().sum::<i64>();
    if let Some(k) = (0..shares.len())
        .filter(|&k| shares[k].is_some())
        .max_by(|&a, &b| {
            shares[a]
                .unwrap_or(0.0)
                .total_cmp(&shares[b].unwrap_or(0.0))
        })
    {
        buckets[k] += missing;
    }
    buckets
}

impl ExperimentState {
    /// A new experiment's state, started at `now`.
    pub fn start(experiment: &Experiment, now: SystemTime) -> Self {
        let k = experiment.arms.len();
        let mut pairs = Vec::new();
        for i in 0..k {
            for j in i + 1..k {
                if i != experiment.control && j != experiment.control {
                    pairs.push(((i, j), Evidence::default()));
                }
            }
        }
        ExperimentState {
            started_unix: unix(now),
            arms: experiment
                .arms
                .iter()
                .map(|a| ArmEvidence {
                    name: a.name.clone(),
                    ..ArmEvidence::default()
                })
                .collect(),
            pairs,
            decisions: Vec::new(),
            decisions_dropped: 0,
        }
    }

    /// Keeps the last `keep` decisions (at least one), counting the others in
    /// `decisions_dropped`: what keeps a state that is written at every analysis small.
    /// Nothing the analysis reads is lost: it needs only the evidence and the last decision.
    pub fn keep_last_decisions(&mut self, keep: usize) {
        let keep = keep.max(1);
        if self.decisions.len() > keep {
            let cut = self.decisions.len() - keep;
            self.decisions.drain(..cut);
            self.decisions_dropped = self.decisions_dropped.saturating_add(cut as u64);
        }
    }

    /// The decision in force (`None` before the first analysis).
    pub fn last(&self) -> Option<&ExperimentDecision> {
        self.decisions.last()
    }

    /// Whether the experiment is over.
    pub fn is_over(&self) -> bool {
        self.last().is_some_and(|d| d.outcome.is_terminal())
    }

    /// Adds `window` (the router's statistics since the previous analysis, one variant per
    /// arm by name; an arm missing from it saw nothing) and decides. A finished experiment
    /// decides nothing more (`None`). An error when the state is not this experiment's.
    pub fn analyze(
        &mut self,
        experiment: &Experiment,
        window: &StepSnapshot,
        now: SystemTime,
    ) -> Result<Option<ExperimentDecision>> {
        if self.arms.len() != experiment.arms.len()
            || self
                .arms
                .iter()
                .zip(&experiment.arms)
                .any(|(s, a)| s.name != a.name)
        {
            return Err(Error::invalid(
                "ExperimentState.arms",
                format!(
                    "{:?}",
                    self.arms.iter().map(|a| &a.name).collect::<Vec<_>>()
                ),
                "the arms of the experiment it is analyzed with",
            ));
        }
        let n = experiment.arms.len();
        let c = experiment.control;
        let expected: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| i != c && j != c)
            .collect();
        let pairs: Vec<(usize, usize)> = self.pairs.iter().map(|(p, _)| *p).collect();
        if pairs != expected {
            return Err(Error::invalid(
                "ExperimentState.pairs",
                format!("{pairs:?}"),
                format!("every pair of candidates once, in order: {expected:?}"),
            ));
        }
        if let Some((i, d)) = self
            .decisions
            .iter()
            .enumerate()
            .find(|(_, d)| d.arms.len() != n)
        {
            return Err(Error::invalid(
                format!("ExperimentState.decisions[{i}].arms"),
                format!("{} arms", d.arms.len()),
                format!("the experiment's {n} arms"),
            ));
        }
        if !self.started_unix.is_finite() {
            return Err(Error::invalid(
                "ExperimentState.started_unix",
                self.started_unix,
                "a finite time in seconds since the Unix epoch",
            ));
        }
        if self.is_over() {
            return Ok(None);
        }
        let metric = experiment.metric;
        let empty: Vec<VariantSnapshot> = experiment
            .arms
            .iter()
            .map(|a| VariantSnapshot::empty(&a.name))
            .collect();
        for (k, a) in experiment.arms.iter().enumerate() {
            if let Some(served) = window.get(&a.name).and_then(|v| v.version) {
                if served != a.version {
                    return Err(Error::invalid(
                        format!("arms[{k}].version"),
                        a.version,
                        format!(
                            "the version the router serves as {:?} (v{served}): its statistics are another model's",
                            a.name
                        ),
                    ));
                }
            }
        }
        let views: Vec<&VariantSnapshot> = experiment
            .arms
            .iter()
            .zip(&empty)
            .map(|(a, e)| window.get(&a.name).unwrap_or(e))
            .collect();
        let estimates: Vec<Option<(f64, f64)>> =
            views.iter().map(|v| window_metric(metric, v)).collect();
        for (k, (arm, v)) in self.arms.iter_mut().zip(&views).enumerate() {
            arm.requests = arm.requests.saturating_add(v.requests);
            arm.errors = arm.errors.saturating_add(v.errors);
            arm.labeled = arm.labeled.saturating_add(v.labels.len() as u64);
            if let Some((m, var)) = estimates[k] {
                arm.own.add(m, var);
                arm.own.n_candidate = arm.own.n_candidate.saturating_add(v.labels.len() as u64);
            }
            if k != c {
                if let (Some((m, var)), Some((mc, vc))) = (estimates[k], estimates[c]) {
                    arm.vs_control.add(m - mc, var + vc);
                }
            }
        }
        for ((i, j), e) in &mut self.pairs {
            if let (Some((mi, vi)), Some((mj, vj))) = (estimates[*i], estimates[*j]) {
                e.add(mi - mj, vi + vj);
            }
        }
        // Errors: an arm whose error rate is above the bound, on its 95% Wilson lower end.
        let erring = |a: &ArmEvidence| -> Option<f64> {
            if a.requests == 0 || a.errors == 0 {
                return None;
            }
            let (low, _) = mlops_drift::stats::proportion_confint_wilson(
                a.errors as f64,
                a.requests as f64,
                0.95,
            )
            .ok()?;
            (low > experiment.max_error_rate).then_some(low)
        };
        let t = unix(now);
        if let Some(low) = erring(&self.arms[c]) {
            let a = &self.arms[c];
            let reason = format!(
                "stopped: the control {:?} errs, {} of {} requests failed (95% lower bound {low:.4} > max_error_rate {}): no arm can be judged against it",
                a.name, a.errors, a.requests, experiment.max_error_rate
            );
            let current = self.current_weights(experiment);
            let d = self.decision(
                experiment,
                t,
                ExperimentOutcome::Stopped,
                None,
                reason,
                &current,
            );
            self.decisions.push(d.clone());
            return Ok(Some(d));
        }
        for k in 0..self.arms.len() {
            if k != c && !self.arms[k].dropped && erring(&self.arms[k]).is_some() {
                self.arms[k].dropped = true;
            }
        }
        let kk = experiment.candidates();
        let tau2 = experiment.mixing_variance();
        let alpha = experiment.alpha;
        // Bands against the control and between candidates (reported and used for the
        // pairwise wins), and the Holm level of each family.
        // With one candidate there are no pairs: a wrong winner can only be a false "better".
        let family = if kk == 1 { alpha } else { alpha / 3.0 };
        let pair_alpha = family / (kk.saturating_sub(1).max(1)) as f64;
        let band = |e: &Evidence| -> Option<(f64, f64)> { e.interval(tau2, pair_alpha) };
        // Holm over the candidates' always-valid p-values, for "better" and for "worse".
        let p_of = |e: &Evidence, null: f64, better: bool| -> f64 {
            match (e.estimate(), e.variance()) {
                (Some(d), Some(v)) if (d > null) == better && d != null => {
                    mixture_likelihood_ratio(d, v, tau2, null).map_or(1.0, |lr| (1.0 / lr).min(1.0))
                }
                _ => 1.0,
            }
        };
        let candidates: Vec<usize> = (0..self.arms.len()).filter(|&k| k != c).collect();
        let p_better: Vec<f64> = candidates
            .iter()
            .map(|&k| p_of(&self.arms[k].vs_control, experiment.min_improvement, true))
            .collect();
        let p_worse: Vec<f64> = candidates
            .iter()
            .map(|&k| p_of(&self.arms[k].vs_control, 0.0, false))
            .collect();
        let adj_better = mlops_drift::Correction::Holm.adjust(&p_better);
        let adj_worse = mlops_drift::Correction::Holm.adjust(&p_worse);
        let mut status = vec![ArmStatus::Running; self.arms.len()];
        status[c] = ArmStatus::Control;
        for (i, &k) in candidates.iter().enumerate() {
            status[k] = if self.arms[k].dropped {
                ArmStatus::Dropped
            } else if adj_better[i] <= family {
                ArmStatus::BeatsControl
            } else if adj_worse[i] <= family {
                ArmStatus::WorseThanControl
            } else if band(&self.arms[k].vs_control)
                .is_some_and(|(_, high)| high < experiment.min_improvement)
            {
                ArmStatus::CannotWin
            } else {
                ArmStatus::Running
            };
        }
        // A winner beats the control and every other candidate not shown worse than it.
        let pair = |i: usize, j: usize| -> Option<(f64, f64)> {
            let (a, b, sign) = if i < j { (i, j, 1.0) } else { (j, i, -1.0) };
            let e = &self.pairs.iter().find(|((x, y), _)| (*x, *y) == (a, b))?.1;
            let (low, high) = band(e)?;
            Some(if sign > 0.0 {
                (low, high)
            } else {
                (-high, -low)
            })
        };
        let winner = candidates
            .iter()
            .copied()
            .filter(|&k| status[k] == ArmStatus::BeatsControl)
            .find(|&k| {
                candidates.iter().all(|&j| {
                    j == k
                        || matches!(status[j], ArmStatus::WorseThanControl | ArmStatus::Dropped)
                        || pair(k, j).is_some_and(|(low, _)| low > 0.0)
                })
            });
        let p_best = self.p_best(&status);
        let (outcome, reason, weights) = if let Some(w) = winner {
            let d = self.arms[w].vs_control.estimate().unwrap_or(f64::NAN);
            let (low, high) = band(&self.arms[w].vs_control).unwrap_or((f64::NAN, f64::NAN));
            let mut weights = vec![0.0; self.arms.len()];
            weights[w] = 100.0;
            (
                ExperimentOutcome::Winner,
                format!(
                    "winner {:?}: {} better than the control by {d:+.4} [{low:+.4}, {high:+.4}] and than every other arm in the running (always valid; alpha {alpha} over {kk} candidates: Holm at alpha/3 against the control, pairs at alpha/(3(K-1)))",
                    self.arms[w].name,
                    metric_name(metric)
                ),
                weights,
            )
        } else if candidates.iter().all(|&k| {
            matches!(
                status[k],
                ArmStatus::WorseThanControl | ArmStatus::CannotWin | ArmStatus::Dropped
            )
        }) {
            let mut weights = vec![0.0; self.arms.len()];
            weights[c] = 100.0;
            (
                ExperimentOutcome::NoWinner,
                format!(
                    "no winner: every candidate is worse than the control, cannot beat it by min_improvement {}, or was dropped for its errors",
                    experiment.min_improvement
                ),
                weights,
            )
        } else if t - self.started_unix >= experiment.max_seconds {
            let mut weights = vec![0.0; self.arms.len()];
            weights[c] = 100.0;
            let running = candidates
                .iter()
                .filter(|&&k| matches!(status[k], ArmStatus::Running | ArmStatus::BeatsControl))
                .count();
            (
                ExperimentOutcome::NoWinner,
                format!(
                    "no winner in max_seconds {}: {running} candidates still undecided; the control stays",
                    experiment.max_seconds
                ),
                weights,
            )
        } else {
            let weights = self.continue_weights(experiment, &status, p_best.as_deref());
            let labeled: u64 = self.arms.iter().map(|a| a.labeled).sum();
            (
                ExperimentOutcome::Continue,
                format!(
                    "no winner yet: {} of {kk} candidates beat the control, {labeled} labeled rows so far",
                    candidates
                        .iter()
                        .filter(|&&k| status[k] == ArmStatus::BeatsControl)
                        .count()
                ),
                weights,
            )
        };
        let mut d = self.decision(
            experiment,
            t,
            outcome,
            winner.map(|w| self.arms[w].name.clone()),
            reason,
            &weights,
        );
        for (k, a) in d.arms.iter_mut().enumerate() {
            a.status = status[k];
            a.p_best = p_best.as_ref().map(|p| p[k]);
            if let Some(i) = candidates.iter().position(|&x| x == k) {
                a.p_value = Some(adj_better[i]);
                a.interval = band(&self.arms[k].vs_control);
            }
        }
        self.decisions.push(d.clone());
        Ok(Some(d))
    }

    /// The probability each arm is the best, arms not in the running at 0; `None` until
    /// every arm in the running has evidence.
    fn p_best(&self, status: &[ArmStatus]) -> Option<Vec<f64>> {
        let live: Vec<usize> = (0..self.arms.len())
            .filter(|&k| {
                !matches!(
                    status[k],
                    ArmStatus::Dropped | ArmStatus::WorseThanControl | ArmStatus::CannotWin
                )
            })
            .collect();
        let posteriors: Vec<(f64, f64)> = live
            .iter()
            .map(|&k| Some((self.arms[k].own.estimate()?, self.arms[k].own.variance()?)))
            .collect::<Option<_>>()?;
        let p = probability_best(&posteriors)?;
        let mut all = vec![0.0; self.arms.len()];
        for (i, &k) in live.iter().enumerate() {
            all[k] = p[i];
        }
        Some(all)
    }

    fn current_weights(&self, experiment: &Experiment) -> Vec<f64> {
        match self.last() {
            Some(d) => d.arms.iter().map(|a| a.percent).collect(),
            None => experiment.arms.iter().map(|a| a.percent).collect(),
        }
    }

    /// Weights while the experiment goes on: dropped arms get none (their share goes to the
    /// control), Thompson sampling moves the rest by the probability of being best.
    fn continue_weights(
        &self,
        experiment: &Experiment,
        status: &[ArmStatus],
        p_best: Option<&[f64]>,
    ) -> Vec<f64> {
        let c = experiment.control;
        let out = |k: usize| matches!(status[k], ArmStatus::Dropped);
        match (experiment.allocation, p_best) {
            (Allocation::Thompson { floor_percent }, Some(p)) => {
                // The control keeps its configured share (every comparison is against it);
                // the candidates split the rest.
                let bucket = |pct: f64| (pct * 100.0).round() as i64;
                let control = bucket(experiment.arms[c].percent);
                let shares: Vec<Option<f64>> = (0..self.arms.len())
                    .map(|k| (k != c && !out(k)).then_some(p[k]))
                    .collect();
                let mut w = allocate(&shares, bucket(floor_percent), 10_000 - control);
                w[c] = control;
                w.into_iter().map(|b| b as f64 / 100.0).collect()
            }
            _ => {
                let mut w = self.current_weights(experiment);
                for k in 0..w.len() {
                    if k != c && out(k) && w[k] > 0.0 {
                        w[c] += w[k];
                        w[k] = 0.0;
                    }
                }
                // Kept in whole buckets.
                w.iter().map(|x| (x * 100.0).round() / 100.0).collect()
            }
        }
    }

    fn decision(
        &self,
        experiment: &Experiment,
        at_unix: f64,
        outcome: ExperimentOutcome,
        winner: Option<String>,
        reason: String,
        weights: &[f64],
    ) -> ExperimentDecision {
        let arms = experiment
            .arms
            .iter()
            .zip(&self.arms)
            .enumerate()
            .map(|(k, (a, e))| ArmReport {
                name: a.name.clone(),
                version: a.version,
                percent: weights.get(k).copied().unwrap_or(0.0),
                status: if k == experiment.control {
                    ArmStatus::Control
                } else if e.dropped {
                    ArmStatus::Dropped
                } else {
                    ArmStatus::Running
                },
                requests: e.requests,
                errors: e.errors,
                labeled: e.labeled,
                estimate: e.own.estimate(),
                difference: e.vs_control.estimate(),
                interval: None,
                p_value: None,
                p_best: None,
            })
            .collect();
        ExperimentDecision {
            at_unix,
            outcome,
            winner,
            reason,
            arms,
        }
    }
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::RocAuc => "roc_auc",
        Metric::Accuracy => "accuracy",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ArmLabels {
    experiment: String,
    arm: String,
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    experiment: String,
    outcome: String,
}

type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;
type Family<L, M> = prometheus_client::metrics::family::Family<L, M>;

/// An experiment's Prometheus series, set from each decision ([`ExperimentMetrics::record`]):
///
/// | metric | type | labels |
/// |---|---|---|
/// | `mlops_serve_experiment_traffic_percent` | gauge | experiment, arm, version |
/// | `mlops_serve_experiment_probability_best` (NaN: not yet known) | gauge | experiment, arm, version |
/// | `mlops_serve_experiment_difference` (the arm's metric minus the control's; NaN: unknown) | gauge | experiment, arm, version |
/// | `mlops_serve_experiment_difference_low`, `_high` (its always-valid band) | gauge | experiment, arm, version |
/// | `mlops_serve_experiment_labeled_rows` | gauge | experiment, arm, version |
/// | `mlops_serve_experiment_decisions_total` | counter | experiment, outcome |
///
/// ```
/// use mlops_serve::experiment::ExperimentMetrics;
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let _metrics = ExperimentMetrics::register(&mut registry);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExperimentMetrics {
    percent: Family<ArmLabels, FloatGauge>,
    p_best: Family<ArmLabels, FloatGauge>,
    difference: Family<ArmLabels, FloatGauge>,
    low: Family<ArmLabels, FloatGauge>,
    high: Family<ArmLabels, FloatGauge>,
    labeled: Family<ArmLabels, FloatGauge>,
    decisions: Family<OutcomeLabels, prometheus_client::metrics::counter::Counter>,
}

impl ExperimentMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        for (name, help, family) in [
            (
                "mlops_serve_experiment_traffic_percent",
                "Percent of traffic an experiment's arm gets from its last decision on",
                &m.percent,
            ),
            (
                "mlops_serve_experiment_probability_best",
                "Probability that the arm is the best on the primary metric (NaN: not yet known)",
                &m.p_best,
            ),
            (
                "mlops_serve_experiment_difference",
                "The arm's primary metric minus the control's, pooled over the experiment (NaN: unknown)",
                &m.difference,
            ),
            (
                "mlops_serve_experiment_difference_low",
                "Low end of the always-valid band of the difference (NaN: unknown)",
                &m.low,
            ),
            (
                "mlops_serve_experiment_difference_high",
                "High end of the always-valid band of the difference (NaN: unknown)",
                &m.high,
            ),
            (
                "mlops_serve_experiment_labeled_rows",
                "Labeled rows of the arm over the experiment",
                &m.labeled,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "mlops_serve_experiment_decisions",
            "Analyses of an experiment, by what they decided",
            m.decisions.clone(),
        );
        m
    }

    /// Sets the series of experiment `name` from `decision`, a decision this host made:
    /// counted in `mlops_serve_experiment_decisions_total`.
    pub fn record(&self, name: &str, decision: &ExperimentDecision) {
        self.show(name, decision);
        self.decisions
            .get_or_create(&OutcomeLabels {
                experiment: name.to_string(),
                outcome: decision.outcome.as_str().to_string(),
            })
            .inc();
    }

    /// Sets the gauges of experiment `name` from `decision` without counting it (a decision
    /// another replica made, which that replica counts).
    pub fn show(&self, name: &str, decision: &ExperimentDecision) {
        for a in &decision.arms {
            let labels = ArmLabels {
                experiment: name.to_string(),
                arm: a.name.clone(),
                version: a.version.to_string(),
            };
            self.percent.get_or_create(&labels).set(a.percent);
            self.p_best
                .get_or_create(&labels)
                .set(a.p_best.unwrap_or(f64::NAN));
            self.difference
                .get_or_create(&labels)
                .set(a.difference.unwrap_or(f64::NAN));
            let (low, high) = a.interval.unwrap_or((f64::NAN, f64::NAN));
            self.low.get_or_create(&labels).set(low);
            self.high.get_or_create(&labels).set(high);
            self.labeled.get_or_create(&labels).set(a.labeled as f64);
        }
    }
}
