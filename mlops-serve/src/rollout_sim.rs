//! Operating characteristics of a promotion policy: thousands of rollouts on simulated time
//! with a known truth (a candidate identical to stable, or better or worse by a stated amount
//! in ROC AUC, error rate or latency), at a given traffic, label delay and base rate, and how
//! often the policy promoted and rolled back each, with intervals.
//!
//! A rollout here runs the library's own decision path, [`RolloutState::advance`] and every
//! [`Check`](crate::analysis::Check)'s evaluation, on the statistics a router would have
//! gathered over each analysis window; only the traffic is drawn from a model instead of
//! served. What the router does to those statistics is modelled as it is built:
//!
//! - Every decision installs a new route table, so each analysis sees only the requests and
//!   labels since the previous decision (an extended step starts its statistics again).
//! - Labels come `label_delay_seconds` after their request and join it only while it waits in
//!   the label join: within its time-to-live, and in the join's sample. Every scored request
//!   waits (the labeled ones for the delay, the others for the time-to-live); when more wait
//!   than the join holds, it keeps a uniform share of requests, lowered by a quarter at a
//!   time until they fit, as the router's join does at steady state (its transient, the
//!   first fill, is not modelled).
//! - Statistics read through a `PrometheusSource` (labeled scores rebuilt from histogram
//!   buckets) are not modelled: this is the in-process source's view. A joined label counts in the
//!   statistics of the table in force when it comes, under the variant that scored it.
//! - Labeled rows past `labeled_capacity`, and predictions past `score_reservoir`, are not
//!   kept (the first are counted dropped), as in [`StatsConfig`].
//! - Scores are binormal: a row's logit is N(±μ/2, 1) for its class, so the model's ROC AUC
//!   is Φ(μ/√2) and its threshold 0.5 sits between the classes. Latencies are log-normal;
//!   a latency percentile is read, as the router reads it, from an HDR histogram of up to
//!   [`LATENCY_SAMPLE`] of the window's requests.
//! - The analysis runs when the step's bake time is over (a controller's tick granularity is
//!   not modelled).
//!
//! Each run draws from its own generator, seeded by the harness seed and the run's number:
//! a report is the same for a seed whatever the number of threads.
//!
//! ```
//! use mlops_serve::policy::Promotion;
//! use mlops_serve::rollout_sim::{operating_characteristics, Scenario};
//! use mlops_serve::step_stats::StatsConfig;
//!
//! // A candidate identical to stable at 50 requests/s, balanced classes, labels 10 s late.
//! let scenario = Scenario {
//!     requests_per_second: 50.0,
//!     positive_rate: 0.5,
//!     label_delay_seconds: 10.0,
//!     ..Scenario::default()
//! };
//! let report = operating_characteristics(
//!     &Promotion::default(),
//!     &StatsConfig::default(),
//!     &scenario,
//!     20,
//!     7,
//! )?;
//! assert_eq!(report.runs, 20);
//! assert_eq!(report.promoted + report.rolled_back + report.undecided, 20);
//! # Ok::<(), mlops_serve::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, LogNormal, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::analysis::Outcome;
use crate::policy::Promotion;
use crate::rollout::{Decision, DecisionKind, Phase, RolloutState, CANARY, STABLE};
use crate::step_stats::{
    join_holds, join_share, latency_histogram, latency_ms, record_latency, StatsConfig,
    StepSnapshot, VariantSnapshot,
};
use crate::{Error, Result};

/// Requests per window whose latencies are drawn to read its percentiles.
pub const LATENCY_SAMPLE: usize = 10_000;
/// The most analyses one simulated rollout may run (`max_seconds` over the bake time).
pub const MAX_ANALYSES: f64 = 10_000.0;
/// The most rollouts one report may run.
pub const MAX_RUNS: u64 = 1_000_000;
/// The longest simulated rollout: a year.
pub const MAX_SIM_SECONDS: f64 = 366.0 * 86_400.0;
/// The highest simulated traffic.
pub const MAX_SIM_REQUESTS_PER_SECOND: f64 = 1e6;
/// The largest `StatsConfig.labeled_capacity` and `score_reservoir` a simulation draws
/// (values drawn per window and variant: a router's bounds, not a host's memory).
pub const MAX_SIM_CAPACITY: usize = 10_000_000;

/// The truth and the traffic of a simulated rollout: stable's model and the candidate's
/// difference from it, the traffic, and how labels come back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Requests per second (one row each), in (0, 1e6].
    pub requests_per_second: f64,
    /// Share of positive rows, in (0, 1).
    pub positive_rate: f64,
    /// Share of requests whose labels ever come back, in [0, 1].
    pub labeled_share: f64,
    /// Seconds from a request to its labels, ≥ 0.
    pub label_delay_seconds: f64,
    /// Stable's ROC AUC, in (0, 1).
    pub stable_auc: f64,
    /// The candidate's ROC AUC minus stable's (the candidate's stays in (0, 1)).
    pub auc_delta: f64,
    /// Share of stable's requests that fail, in [0, 1].
    pub stable_error_rate: f64,
    /// The candidate's error rate minus stable's (the candidate's stays in [0, 1]).
    pub error_rate_delta: f64,
    /// Stable's median latency in milliseconds, > 0.
    pub stable_latency_ms: f64,
    /// The log-normal shape of both latencies (σ of the log), in [0, 5].
    pub latency_sigma: f64,
    /// The candidate's median latency over stable's, > 0.
    pub latency_factor: f64,
    /// Share of mirrored rows where a shadow candidate's label equals stable's, in [0, 1].
    pub agreement: f64,
    /// Simulated seconds after which an unfinished rollout counts as undecided, in
    /// (0, [`MAX_SIM_SECONDS`]].
    pub max_seconds: f64,
}

impl Default for Scenario {
    /// An A/A candidate (identical to stable: AUC 0.85, no errors, 2 ms) at 547 requests/s,
    /// 1.5% positives, every label one hour late; six simulated hours.
    fn default() -> Self {
        Scenario {
            requests_per_second: 547.0,
            positive_rate: 0.015,
            labeled_share: 1.0,
            label_delay_seconds: 3_600.0,
            stable_auc: 0.85,
            auc_delta: 0.0,
            stable_error_rate: 0.0,
            error_rate_delta: 0.0,
            stable_latency_ms: 2.0,
            latency_sigma: 0.25,
            latency_factor: 1.0,
            agreement: 1.0,
            max_seconds: 6.0 * 3_600.0,
        }
    }
}

fn share_in(field: &str, v: f64, open_low: bool, open_high: bool) -> Result<()> {
    let low_ok = if open_low { v > 0.0 } else { v >= 0.0 };
    let high_ok = if open_high { v < 1.0 } else { v <= 1.0 };
    if v.is_finite() && low_ok && high_ok {
        return Ok(());
    }
    let (l, h) = (
        if open_low { "(" } else { "[" },
        if open_high { ")" } else { "]" },
    );
    Err(Error::invalid(field, v, format!("a share in {l}0, 1{h}")))
}

impl Scenario {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let rps = self.requests_per_second;
        if !(rps.is_finite() && rps > 0.0 && rps <= MAX_SIM_REQUESTS_PER_SECOND) {
            return Err(Error::invalid(
                "Scenario.requests_per_second",
                rps,
                format!("a rate in (0, {MAX_SIM_REQUESTS_PER_SECOND}]"),
            ));
        }
        share_in("Scenario.positive_rate", self.positive_rate, true, true)?;
        share_in("Scenario.labeled_share", self.labeled_share, false, false)?;
        let d = self.label_delay_seconds;
        if !(d.is_finite() && (0.0..=MAX_SIM_SECONDS).contains(&d)) {
            return Err(Error::invalid(
                "Scenario.label_delay_seconds",
                d,
                format!("seconds in [0, {MAX_SIM_SECONDS}]"),
            ));
        }
        share_in("Scenario.stable_auc", self.stable_auc, true, true)?;
        share_in(
            "Scenario.auc_delta (the candidate's AUC, stable_auc + auc_delta)",
            self.stable_auc + self.auc_delta,
            true,
            true,
        )?;
        share_in(
            "Scenario.stable_error_rate",
            self.stable_error_rate,
            false,
            false,
        )?;
        share_in(
            "Scenario.error_rate_delta (the candidate's error rate, stable_error_rate + error_rate_delta)",
            self.stable_error_rate + self.error_rate_delta,
            false,
            false,
        )?;
        let m = self.stable_latency_ms;
        if !(m.is_finite() && m > 0.0 && m <= crate::replay::MAX_MEDIAN_MS) {
            return Err(Error::invalid(
                "Scenario.stable_latency_ms",
                m,
                format!("milliseconds in (0, {}]", crate::replay::MAX_MEDIAN_MS),
            ));
        }
        let s = self.latency_sigma;
        if !(s.is_finite() && (0.0..=crate::replay::MAX_SIGMA).contains(&s)) {
            return Err(Error::invalid(
                "Scenario.latency_sigma",
                s,
                format!("a shape in [0, {}]", crate::replay::MAX_SIGMA),
            ));
        }
        let f = self.latency_factor;
        if !(f.is_finite() && f > 0.0 && f * m <= crate::replay::MAX_MEDIAN_MS) {
            return Err(Error::invalid(
                "Scenario.latency_factor",
                f,
                format!(
                    "a factor > 0 that keeps the candidate's median within {} ms",
                    crate::replay::MAX_MEDIAN_MS
                ),
            ));
        }
        share_in("Scenario.agreement", self.agreement, false, false)?;
        let t = self.max_seconds;
        if !(t.is_finite() && t > 0.0 && t <= MAX_SIM_SECONDS) {
            return Err(Error::invalid(
                "Scenario.max_seconds",
                t,
                format!("seconds in (0, {MAX_SIM_SECONDS}]"),
            ));
        }
        Ok(())
    }
}

/// How a simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimOutcome {
    /// The candidate reached 100%.
    Promoted,
    /// The policy rolled the candidate back (immediately, or the first step of a gradual
    /// rollback).
    RolledBack,
    /// Neither within `max_seconds`.
    Undecided,
}

impl SimOutcome {
    /// The serialized name (`promoted`, `rolled_back`, `undecided`).
    pub fn as_str(&self) -> &'static str {
        match self {
            SimOutcome::Promoted => "promoted",
            SimOutcome::RolledBack => "rolled_back",
            SimOutcome::Undecided => "undecided",
        }
    }
}

/// One simulated rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedRollout {
    /// How it ended.
    pub outcome: SimOutcome,
    /// Simulated seconds from the start to the decision that ended it (or `max_seconds`).
    pub seconds: f64,
    /// Analyses run.
    pub analyses: u32,
    /// Why it ended, in a few words: the checks that failed or were inconclusive at a
    /// rollback (`failed: roc_auc`, `inconclusive: roc_auc`, `no data`), `promoted`, or
    /// `undecided`.
    pub why: String,
    /// The reason the policy gave for its last decision.
    pub reason: String,
}

fn why_rolled_back(d: &Decision) -> String {
    let names = |o: Outcome| -> Vec<&str> {
        d.checks
            .iter()
            .filter(|c| c.outcome == o)
            .map(|c| c.check.as_str())
            .collect()
    };
    let failed = names(Outcome::Fail);
    if !failed.is_empty() {
        return format!("failed: {}", failed.join(", "));
    }
    let inconclusive = names(Outcome::Inconclusive);
    if !inconclusive.is_empty() {
        return format!("inconclusive: {}", inconclusive.join(", "));
    }
    "no data".to_string()
}

/// A share of runs with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Runs counted over all runs.
    pub share: f64,
    /// The interval's lower end.
    pub low: f64,
    /// The interval's upper end.
    pub high: f64,
}

impl Share {
    fn of(count: u64, runs: u64) -> Result<Share> {
        let (low, high) =
            mlops_drift::stats::proportion_confint_wilson(count as f64, runs as f64, 0.95)
                .map_err(|e| Error::invalid("runs", runs, e.to_string()))?;
        Ok(Share {
            share: count as f64 / runs as f64,
            low,
            high,
        })
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}% [{:.1}, {:.1}]",
            100.0 * self.share,
            100.0 * self.low,
            100.0 * self.high
        )
    }
}

/// How a policy did over many simulated rollouts of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingCharacteristics {
    /// Rollouts run.
    pub runs: u64,
    /// Rollouts that promoted the candidate.
    pub promoted: u64,
    /// Rollouts that rolled it back.
    pub rolled_back: u64,
    /// Rollouts undecided at `max_seconds`.
    pub undecided: u64,
    /// `promoted / runs`, with its interval.
    pub promoted_share: Share,
    /// `rolled_back / runs`, with its interval.
    pub rolled_back_share: Share,
    /// The median simulated seconds to a promotion or a rollback (`None` when no run
    /// decided).
    pub median_seconds_to_decision: Option<f64>,
    /// Runs by why they ended (see [`SimulatedRollout::why`]).
    pub why: BTreeMap<String, u64>,
}

/// A generator per run: the harness seed and the run's number, mixed (SplitMix64), so runs
/// never share a stream.
fn run_rng(seed: u64, run: u64) -> ChaCha8Rng {
    let mut z = seed ^ run.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// Runs `runs` rollouts of `scenario` under `policy` (on every core; the same report for a
/// seed whatever their number).
pub fn operating_characteristics(
    policy: &Promotion,
    stats: &StatsConfig,
    scenario: &Scenario,
    runs: u64,
    seed: u64,
) -> Result<OperatingCharacteristics> {
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(Error::invalid("runs", runs, format!("1 to {MAX_RUNS}")));
    }
    let sim = Simulation::new(policy, stats, scenario)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(runs as usize) as u64;
    let results: Vec<Result<Vec<SimulatedRollout>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let sim = &sim;
                scope.spawn(move || {
                    (t..runs)
                        .step_by(threads as usize)
                        .map(|run| sim.run(&mut run_rng(seed, run)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Core(mlops_core::Error::Runtime {
                        cause: "a simulation thread panicked".into(),
                    }))
                })
            })
            .collect()
    });
    let mut all = Vec::with_capacity(runs as usize);
    for r in results {
        all.extend(r?);
    }
    let count = |o: SimOutcome| all.iter().filter(|r| r.outcome == o).count() as u64;
    let (promoted, rolled_back, undecided) = (
        count(SimOutcome::Promoted),
        count(SimOutcome::RolledBack),
        count(SimOutcome::Undecided),
    );
    let mut decided: Vec<f64> = all
        .iter()
        .filter(|r| r.outcome != SimOutcome::Undecided)
        .map(|r| r.seconds)
        .collect();
    decided.sort_by(f64::total_cmp);
    let median = match decided.len() {
        0 => None,
        n if n % 2 == 1 => Some(decided[n / 2]),
        n => Some((decided[n / 2 - 1] + decided[n / 2]) / 2.0),
    };
    let mut why = BTreeMap::new();
    for r in &all {
        *why.entry(r.why.clone()).or_insert(0) += 1;
    }
    Ok(OperatingCharacteristics {
        runs,
        promoted,
        rolled_back,
        undecided,
        promoted_share: Share::of(promoted, runs)?,
        rolled_back_share: Share::of(rolled_back, runs)?,
        median_seconds_to_decision: median,
        why,
    })
}

/// Runs one rollout of `scenario` under `policy`, drawing from a generator seeded by `seed`.
///
/// ```
/// use mlops_serve::policy::Promotion;
/// use mlops_serve::rollout_sim::{simulate_one, Scenario, SimOutcome};
/// use mlops_serve::step_stats::StatsConfig;
///
/// // An identical candidate at the seed's traffic (547 requests/s, 1.5% positives, labels an
/// // hour late): the default policy pools the rollout's windows and promotes it once the
/// // confidence sequence of the AUC difference clears the margin.
/// let r = simulate_one(&Promotion::default(), &StatsConfig::default(), &Scenario::default(), 1)?;
/// assert_eq!(r.outcome, SimOutcome::Promoted, "{}", r.reason);
/// assert!(r.seconds > 3_600.0, "no label comes in the first hour");
/// # Ok::<(), mlops_serve::Error>(())
/// ```
pub fn simulate_one(
    policy: &Promotion,
    stats: &StatsConfig,
    scenario: &Scenario,
    seed: u64,
) -> Result<SimulatedRollout> {
    Simulation::new(policy, stats, scenario)?.run(&mut run_rng(seed, 0))
}

/// Which share of traffic the canary served from `start` on (stable served the rest).
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    canary: f64,
}

/// The served share of `variant` over [a, b], integrated (seconds of full traffic).
fn served(history: &[Segment], a: f64, b: f64, canary: bool) -> f64 {
    let mut total = 0.0;
    for (i, s) in history.iter().enumerate() {
        let end = history.get(i + 1).map_or(f64::INFINITY, |n| n.start);
        let (lo, hi) = (a.max(s.start), b.min(end));
        if hi > lo {
            total += (hi - lo) * if canary { s.canary } else { 1.0 - s.canary };
        }
    }
    // Before the rollout, stable served everything.
    let first = history.first().map_or(f64::INFINITY, |s| s.start);
    if !canary && a < first {
        total += b.min(first) - a;
    }
    total
}

struct Model {
    /// Half the distance between the classes' mean logits.
    half_mu: f64,
    error_rate: f64,
    latency: LogNormal<f64>,
}

impl Model {
    fn new(auc: f64, error_rate: f64, median_ms: f64, sigma: f64) -> Result<Model> {
        let mu = std::f64::consts::SQRT_2 * Normal::standard().inverse_cdf(auc);
        let latency = LogNormal::new(median_ms.ln(), sigma)
            .map_err(|e| Error::invalid("Scenario.latency_sigma", sigma, e.to_string()))?;
        Ok(Model {
            half_mu: mu / 2.0,
            error_rate,
            latency,
        })
    }

    /// A probability for a row of class `positive`.
    fn score(&self, positive: bool, rng: &mut ChaCha8Rng) -> f64 {
        let z: f64 = rng.sample(StandardNormal);
        let logit = z + if positive {
            self.half_mu
        } else {
            -self.half_mu
        };
        1.0 / (1.0 + (-logit).exp())
    }
}

fn poisson(mean: f64, rng: &mut ChaCha8Rng) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    // Means here are at most 1e6 requests/s × a year: far below the distribution's limit.
    Poisson::new(mean).map_or(0, |p| p.sample(rng) as u64)
}

fn binomial(n: u64, p: f64, rng: &mut ChaCha8Rng) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p).map_or(0, |b| b.sample(rng))
}

struct Simulation<'a> {
    policy: &'a Promotion,
    stats: &'a StatsConfig,
    scenario: &'a Scenario,
    stable: Model,
    candidate: Model,
    /// Whether a request's labels can still join it when they come.
    /// The share of requests the label join keeps at steady state (0: labels never join).
    join_share: f64,
    /// Whether a check reads the prediction sample (only `prediction_drift` does).
    needs_scores: bool,
}

const T0_UNIX: u64 = 1_700_000_000;

impl<'a> Simulation<'a> {
    fn new(policy: &'a Promotion, stats: &'a StatsConfig, scenario: &'a Scenario) -> Result<Self> {
        scenario.validate()?;
        stats.validate()?;
        for (field, v) in [
            ("StatsConfig.labeled_capacity", stats.labeled_capacity),
            ("StatsConfig.score_reservoir", stats.score_reservoir),
        ] {
            if v > MAX_SIM_CAPACITY {
                return Err(Error::invalid(
                    field,
                    v,
                    format!("at most {MAX_SIM_CAPACITY} in a simulation"),
                ));
            }
        }
        let needs_scores = policy
            .checks
            .iter()
            .chain(policy.shadow.iter().flat_map(|s| s.checks.iter()))
            .any(|c| matches!(c, crate::analysis::Check::PredictionDrift { .. }));
        let analyses = scenario.max_seconds / policy.bake_time_seconds;
        if analyses > MAX_ANALYSES {
            return Err(Error::invalid(
                "Scenario.max_seconds",
                scenario.max_seconds,
                format!(
                    "at most {MAX_ANALYSES} bake times of {} s (the policy's bake_time_seconds)",
                    policy.bake_time_seconds
                ),
            ));
        }
        let s = scenario;
        let stable = Model::new(
            s.stable_auc,
            s.stable_error_rate,
            s.stable_latency_ms,
            s.latency_sigma,
        )?;
        let candidate = Model::new(
            s.stable_auc + s.auc_delta,
            s.stable_error_rate + s.error_rate_delta,
            s.stable_latency_ms * s.latency_factor,
            s.latency_sigma,
        )?;
        // Every scored request waits: the labeled ones until their labels come, the others
        // for the time-to-live.
        let join_share = if s.label_delay_seconds <= stats.label_ttl_seconds {
            let waiting = s.requests_per_second
                * (s.labeled_share * s.label_delay_seconds
                    + (1.0 - s.labeled_share) * stats.label_ttl_seconds);
            join_share(waiting, join_holds(stats))
        } else {
            0.0
        };
        Ok(Simulation {
            policy,
            stats,
            scenario,
            stable,
            candidate,
            join_share,
            needs_scores,
        })
    }

    fn run(&self, rng: &mut ChaCha8Rng) -> Result<SimulatedRollout> {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(T0_UNIX);
        let at = |t: f64| t0 + Duration::from_secs_f64(t);
        let mut state = RolloutState::start("sim", 1, 2, self.policy, t0);
        let mut history = vec![self.segment(&state, 0.0)];
        let mut last = 0.0;
        let mut analyses = 0_u32;
        loop {
            let due = (state.step_due_unix(self.policy) - T0_UNIX as f64).max(last);
            if due > self.scenario.max_seconds {
                return Ok(SimulatedRollout {
                    outcome: SimOutcome::Undecided,
                    seconds: self.scenario.max_seconds,
                    analyses,
                    why: "undecided".into(),
                    reason: state
                        .last_decision()
                        .map(|d| d.reason.clone())
                        .unwrap_or_default(),
                });
            }
            let snapshot = self.window(&state, &history, last, due, rng);
            // The due time went through a float and back: a millisecond later at most.
            let mut now = due;
            let decision = loop {
                if let Some(d) = state.advance(self.policy, &snapshot, at(now)) {
                    break d;
                }
                if state.phase.is_terminal() || now > due + 0.5 {
                    return Err(Error::Core(mlops_core::Error::Runtime {
                        cause: format!(
                            "the simulated rollout made no decision at its due time ({due} s, phase {})",
                            state.phase.as_str()
                        ),
                    }));
                }
                now += 1e-3;
            };
            let due = now;
            analyses += 1;
            last = due;
            let (outcome, why) = match decision.kind {
                DecisionKind::Promote => (Some(SimOutcome::Promoted), "promoted".to_string()),
                DecisionKind::Rollback => {
                    (Some(SimOutcome::RolledBack), why_rolled_back(&decision))
                }
                _ => (None, String::new()),
            };
            if let Some(outcome) = outcome {
                return Ok(SimulatedRollout {
                    outcome,
                    seconds: due,
                    analyses,
                    why,
                    reason: decision.reason,
                });
            }
            history.push(self.segment(&state, due));
        }
    }

    /// The canary's served share from `start` on, in `state`'s phase.
    fn segment(&self, state: &RolloutState, start: f64) -> Segment {
        let canary = match state.phase {
            Phase::Canary | Phase::RollingBack => state.canary_percent / 100.0,
            Phase::Shadow | Phase::Promoted | Phase::RolledBack => 0.0,
        };
        Segment { start, canary }
    }

    /// The statistics a router gathers over [a, b] (one table: no decision inside).
    fn window(
        &self,
        state: &RolloutState,
        history: &[Segment],
        a: f64,
        b: f64,
        rng: &mut ChaCha8Rng,
    ) -> StepSnapshot {
        let s = self.scenario;
        let shadow = state.phase == Phase::Shadow;
        let mirrored = match (&self.policy.shadow, shadow) {
            (Some(p), true) => p.percent / 100.0,
            _ => 0.0,
        };
        let d = s.label_delay_seconds;
        let mut variants = Vec::with_capacity(2);
        for (name, model, is_canary) in [
            (STABLE, &self.stable, false),
            (CANARY, &self.candidate, true),
        ] {
            let share = if is_canary && shadow {
                mirrored
            } else {
                served(history, a, b, is_canary) / (b - a).max(f64::MIN_POSITIVE)
            };
            let requests = poisson(s.requests_per_second * share * (b - a), rng);
            let errors = binomial(requests, model.error_rate, rng);
            let mut v = VariantSnapshot::empty(name);
            v.version = Some(if is_canary { 2 } else { 1 });
            v.requests = requests;
            v.rows = requests - errors;
            v.errors = errors;
            if requests > 0 {
                // Read as the router reads it: from its own histogram of the step's latencies.
                let mut latency = latency_histogram();
                for _ in 0..requests.min(LATENCY_SAMPLE as u64) {
                    let ms: f64 = model.latency.sample(rng);
                    record_latency(&mut latency, (ms * 1e6) as u64);
                }
                v.latency_p50_ms = latency_ms(&latency, 0.5);
                v.latency_p99_ms = latency_ms(&latency, 0.99);
            }
            let scored = requests - errors;
            let kept = if self.needs_scores {
                scored.min(self.stats.score_reservoir as u64)
            } else {
                0
            };
            v.scores = (0..kept)
                .map(|_| {
                    let positive = rng.random::<f64>() < s.positive_rate;
                    model.score(positive, rng)
                })
                .collect();
            if is_canary && shadow {
                v.shadow_compared = scored;
                v.shadow_agreed = binomial(scored, s.agreement, rng);
            } else if self.join_share > 0.0 && s.labeled_share > 0.0 {
                let mean = s.requests_per_second
                    * s.labeled_share
                    * self.join_share
                    * (1.0 - model.error_rate)
                    * served(history, a - d, b - d, is_canary);
                let labeled = poisson(mean, rng);
                let kept = labeled.min(self.stats.labeled_capacity as u64);
                v.labeled_dropped = labeled - kept;
                let positives = binomial(kept, s.positive_rate, rng);
                v.labels = (0..kept).map(|i| i < positives).collect();
                v.label_scores = v.labels.iter().map(|&p| model.score(p, rng)).collect();
            }
            variants.push(v);
        }
        StepSnapshot { variants }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_shares_integrate_across_segments_and_before_the_start() {
        let h = [
            Segment {
                start: 0.0,
                canary: 0.1,
            },
            Segment {
                start: 100.0,
                canary: 0.5,
            },
        ];
        assert!((served(&h, 50.0, 150.0, true) - (5.0 + 25.0)).abs() < 1e-9);
        assert!((served(&h, 50.0, 150.0, false) - (45.0 + 25.0)).abs() < 1e-9);
        // Before the rollout: stable only.
        assert!((served(&h, -100.0, 0.0, false) - 100.0).abs() < 1e-9);
        assert_eq!(served(&h, -100.0, 0.0, true), 0.0);
        assert!((served(&h, -10.0, 10.0, false) - (10.0 + 9.0)).abs() < 1e-9);
    }

    #[test]
    fn the_binormal_model_has_the_auc_it_was_given() {
        let mut rng = run_rng(3, 0);
        for auc in [0.6, 0.85, 0.97] {
            let m = Model::new(auc, 0.0, 1.0, 0.0).unwrap();
            let (pos, neg): (Vec<f64>, Vec<f64>) = (
                (0..4_000).map(|_| m.score(true, &mut rng)).collect(),
                (0..4_000).map(|_| m.score(false, &mut rng)).collect(),
            );
            let labels: Vec<f64> = (0..8_000).map(|i| f64::from(u8::from(i < 4_000))).collect();
            let scores: Vec<f64> = pos.into_iter().chain(neg).collect();
            let s = mlops_core::metrics::ScoredSamples::new(&labels, &scores, None).unwrap();
            let got = s.roc_auc().unwrap();
            // The AUC of 4,000 per class has a standard error under 0.005.
            assert!((got - auc).abs() < 0.02, "AUC {auc}: measured {got}");
        }
    }
}
