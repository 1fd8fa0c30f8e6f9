//! Samplers: random, grid and TPE (Optuna's defaults: 10 startup trials, a multivariate
//! Parzen estimator, 24 candidates, the constant liar for trials still running; the startup
//! trials follow a shifted Halton design where Optuna draws them independently).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::space::{from_unit, to_unit, Assignment, Distribution, ParamValue, SearchSpace};

/// Which sampler a study uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerConfig {
    /// Independent uniform draws.
    Random,
    /// Every combination of `points` values per numeric parameter (all values of small
    /// integer ranges, every choice of categorical ones), in order; the study ends when the
    /// grid is exhausted.
    Grid {
        /// Values per numeric axis (default 5).
        #[serde(default = "default_points")]
        points: usize,
    },
    /// Gaussian-process Bayesian optimization (Matérn 5/2, log expected improvement).
    Gp {
        /// Random trials before the model is used (default 10).
        #[serde(default = "default_startup")]
        n_startup_trials: usize,
    },
    /// Tree-structured Parzen estimator.
    Tpe {
        /// Startup trials (a shifted Halton design) before the model is used (Optuna: 10).
        #[serde(default = "default_startup")]
        n_startup_trials: usize,
        /// Candidates drawn from l(x) per trial, the best l/g kept (Optuna: 24).
        #[serde(default = "default_candidates")]
        n_ei_candidates: usize,
    },
}

fn default_points() -> usize {
    5
}
fn default_startup() -> usize {
    10
}
fn default_candidates() -> usize {
    24
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig::Tpe {
            n_startup_trials: 10,
            n_ei_candidates: 24,
        }
    }
}

/// One uniform draw of every active parameter.
pub(crate) fn random_assignment(space: &SearchSpace, rng: &mut ChaCha8Rng) -> Assignment {
    let mut a = Assignment::new();
    for p in space.params() {
        if SearchSpace::is_active(p, &a) {
            a.insert(
                p.name.clone(),
                from_unit(&p.distribution, rng.random::<f64>()),
            );
        }
    }
    a
}

/// The first primes: the Halton bases of the first parameters.
const PRIMES: [u64; 24] = [
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
];

/// The radical inverse of `i` in base `b`: the `i`-th Halton coordinate.
fn radical_inverse(mut i: u64, b: u64) -> f64 {
    let (mut inv, mut f) = (0.0, 1.0 / b as f64);
    while i > 0 {
        inv += (i % b) as f64 * f;
        i /= b;
        f /= b as f64;
    }
    inv
}

/// A startup point: the `index`-th point (from 1) of a Halton sequence over the parameters,
/// shifted modulo 1 by `shift` (one uniform per parameter, drawn once per study: a randomized
/// quasi-Monte Carlo design that covers the space more evenly than independent draws).
/// Parameters past the 24th take `rng`'s uniform draws.
pub(crate) fn halton_assignment(
    space: &SearchSpace,
    index: u64,
    shift: &[f64],
    rng: &mut ChaCha8Rng,
) -> Assignment {
    let mut a = Assignment::new();
    for (k, p) in space.params().iter().enumerate() {
        if SearchSpace::is_active(p, &a) {
            let u = match (PRIMES.get(k), shift.get(k)) {
                (Some(&b), Some(&s)) => (radical_inverse(index, b) + s).fract(),
                _ => rng.random::<f64>(),
            };
            a.insert(p.name.clone(), from_unit(&p.distribution, u));
        }
    }
    a
}

/// The values of one grid axis.
fn axis(d: &Distribution, points: usize) -> Vec<ParamValue> {
    match d {
        Distribution::Categorical { choices } => {
            choices.iter().cloned().map(ParamValue::Choice).collect()
        }
        Distribution::Int {
            low,
            high,
            log: false,
        } if (high - low + 1) as usize <= points => (*low..=*high).map(ParamValue::Int).collect(),
        _ => {
            let mut v: Vec<ParamValue> = (0..points)
                .map(|i| {
                    let u = if points == 1 {
                        0.5
                    } else {
                        i as f64 / (points - 1) as f64
                    };
                    edge_value(d, u)
                })
                .collect();
            v.dedup();
            v
        }
    }
}

/// Grid values include the bounds themselves (the unit map of integers is cell-centred).
fn edge_value(d: &Distribution, u: f64) -> ParamValue {
    match d {
        Distribution::Uniform { low, high } => ParamValue::Float(low + u * (high - low)),
        Distribution::LogUniform { low, high } => {
            ParamValue::Float((low.ln() + u * (high.ln() - low.ln())).exp())
        }
        Distribution::Int { low, high, log } => {
            let x = if *log {
                ((*low as f64).ln() + u * ((*high as f64).ln() - (*low as f64).ln())).exp()
            } else {
                *low as f64 + u * (high - low) as f64
            };
            ParamValue::Int((x.round() as i64).clamp(*low, *high))
        }
        Distribution::Categorical { .. } => from_unit(d, u),
    }
}

/// Grid point `index`, or `None` past the end: the combinations of the axes in mixed-radix
/// order (last parameter fastest), where a parameter inactive under its condition takes only
/// its first value (and is left out), so no point repeats.
pub(crate) fn grid_assignment(
    space: &SearchSpace,
    points: usize,
    index: u64,
) -> Option<Assignment> {
    let axes: Vec<Vec<ParamValue>> = space
        .params()
        .iter()
        .map(|p| axis(&p.distribution, points))
        .collect();
    let total = axes
        .iter()
        .try_fold(1u64, |acc, a| acc.checked_mul(a.len() as u64))?;
    let mut seen = 0u64;
    for raw in 0..total {
        let mut rest = raw;
        let mut picks = vec![0usize; axes.len()];
        for (k, a) in axes.iter().enumerate().rev() {
            picks[k] = (rest % a.len() as u64) as usize;
            rest /= a.len() as u64;
        }
        let mut out = Assignment::new();
        let mut valid = true;
        for (k, p) in space.params().iter().enumerate() {
            if SearchSpace::is_active(p, &out) {
                out.insert(p.name.clone(), axes[k][picks[k]].clone());
            } else if picks[k] != 0 {
                valid = false;
                break;
            }
        }
        if valid {
            if seen == index {
                return Some(out);
            }
            seen += 1;
        }
    }
    None
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn std_normal_cdf(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

/// One kernel of a Parzen estimator on one parameter.
#[derive(Debug, Clone)]
enum Kernel {
    /// A normal truncated to [0, 1] in unit space; `log_norm` = log(σ √(2π) · mass in [0, 1]).
    Numeric { mu: f64, sigma: f64, log_norm: f64 },
    /// A distribution over choice indices.
    Categorical { probs: Vec<f64> },
}

impl Kernel {
    fn numeric(mu: f64, sigma: f64) -> Kernel {
        let mass = std_normal_cdf((1.0 - mu) / sigma) - std_normal_cdf(-mu / sigma);
        let log_norm = (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln() + mass.max(1e-300).ln();
        Kernel::Numeric {
            mu,
            sigma,
            log_norm,
        }
    }

    fn log_pdf(&self, x: &KernelPoint) -> f64 {
        match (self, x) {
            (
                Kernel::Numeric {
                    mu,
                    sigma,
                    log_norm,
                },
                KernelPoint::Unit(u),
            ) => {
                let z = (u - mu) / sigma;
                -0.5 * z * z - log_norm
            }
            (Kernel::Categorical { probs }, KernelPoint::Index(i)) => probs[*i].max(1e-300).ln(),
            _ => f64::NEG_INFINITY,
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> KernelPoint {
        match self {
            Kernel::Numeric { mu, sigma, .. } => {
                for _ in 0..100 {
                    let x = mu + sigma * normal(rng);
                    if (0.0..=1.0).contains(&x) {
                        return KernelPoint::Unit(x);
                    }
                }
                KernelPoint::Unit(mu.clamp(0.0, 1.0))
            }
            Kernel::Categorical { probs } => {
                let mut u: f64 = rng.random();
                for (i, p) in probs.iter().enumerate() {
                    if u < *p {
                        return KernelPoint::Index(i);
                    }
                    u -= p;
                }
                KernelPoint::Index(probs.len() - 1)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum KernelPoint {
    Unit(f64),
    Index(usize),
}

fn point_of(d: &Distribution, v: &ParamValue) -> Option<KernelPoint> {
    match (d, v) {
        (Distribution::Categorical { choices }, ParamValue::Choice(c)) => {
            choices.iter().position(|x| x == c).map(KernelPoint::Index)
        }
        _ => to_unit(d, v).map(KernelPoint::Unit),
    }
}

fn value_of(d: &Distribution, x: &KernelPoint) -> ParamValue {
    match (d, x) {
        (Distribution::Categorical { choices }, KernelPoint::Index(i)) => {
            ParamValue::Choice(choices[*i].clone())
        }
        (_, KernelPoint::Unit(u)) => from_unit(d, *u),
        (_, KernelPoint::Index(_)) => from_unit(d, 0.5),
    }
}

/// A multivariate Parzen estimator as Optuna 5 builds it: one component per observation plus
/// the prior, each a product of per-parameter kernels (the prior's kernel where an observation
/// lacks the parameter), mixed with Optuna's default weights (1 each below 25 observations,
/// then a ramp from 1/n up for the oldest) and prior weight 1.
///
/// Numeric kernels: truncated normals in unit space; bandwidth = the larger gap to a sorted
/// neighbour (the bounds 0 and 1 as outer neighbours, except that the first and last
/// observations use their inner gap), clipped to `[1 / min(100, n + 2), 1]`; prior: centre
/// 0.5, width 1. Categorical kernels: `1 / (n + 1)` on every choice plus 1 on the observed
/// one, normalized.
struct Parzen {
    /// components[k][p]; the prior last.
    components: Vec<Vec<Kernel>>,
    /// Mixture weights, summing to 1.
    weights: Vec<f64>,
    /// Their logarithms.
    log_weights: Vec<f64>,
}

/// Optuna's `default_weights(n)`.
fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Parzen {
    /// `observations` in trial-number order.
    fn new(space: &SearchSpace, observations: &[&Assignment]) -> Self {
        let n = observations.len();
        let params = space.params();
        let prior: Vec<Kernel> = params
            .iter()
            .map(|p| match &p.distribution {
                Distribution::Categorical { choices } => Kernel::Categorical {
                    probs: vec![1.0 / choices.len() as f64; choices.len()],
                },
                _ => Kernel::numeric(0.5, 1.0),
            })
            .collect();
        let mut sigmas: Vec<Vec<f64>> = vec![vec![1.0; n]; params.len()];
        for (pi, p) in params.iter().enumerate() {
            if matches!(p.distribution, Distribution::Categorical { .. }) {
                continue;
            }
            let mut mus: Vec<(f64, usize)> = observations
                .iter()
                .enumerate()
                .filter_map(|(k, a)| {
                    a.get(&p.name)
                        .and_then(|v| to_unit(&p.distribution, v))
                        .map(|u| (u, k))
                })
                .collect();
            mus.sort_by(|a, b| a.0.total_cmp(&b.0));
            let m = mus.len();
            let min_sigma = 1.0 / (100f64).min(2.0 + m as f64);
            let at = |j: isize| -> f64 {
                if j < 0 {
                    0.0
                } else if j as usize >= m {
                    1.0
                } else {
                    mus[j as usize].0
                }
            };
            for j in 0..m {
                let ji = j as isize;
                let mut s = (at(ji) - at(ji - 1)).max(at(ji + 1) - at(ji));
                if m >= 2 && j == 0 {
                    s = at(1) - at(0);
                } else if m >= 2 && j == m - 1 {
                    s = at(ji) - at(ji - 1);
                }
                sigmas[pi][mus[j].1] = s.clamp(min_sigma, 1.0);
            }
        }
        let mut components = Vec::with_capacity(n + 1);
        for (k, a) in observations.iter().enumerate() {
            components.push(
                params
                    .iter()
                    .enumerate()
                    .map(|(pi, p)| {
                        match a.get(&p.name).and_then(|v| point_of(&p.distribution, v)) {
                            Some(KernelPoint::Unit(mu)) => Kernel::numeric(mu, sigmas[pi][k]),
                            Some(KernelPoint::Index(i)) => {
                                let c = match &p.distribution {
                                    Distribution::Categorical { choices } => choices.len(),
                                    _ => 1,
                                };
                                let mut probs = vec![1.0 / (n + 1) as f64; c];
                                probs[i] += 1.0;
                                let total: f64 = probs.iter().sum();
                                probs.iter_mut().for_each(|q| *q /= total);
                                Kernel::Categorical { probs }
                            }
                            None => prior[pi].clone(),
                        }
                    })
                    .collect(),
            );
        }
        components.push(prior);
        let mut weights = default_weights(n);
        weights.push(1.0);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        Parzen {
            components,
            weights,
            log_weights,
        }
    }

    /// A component index drawn by weight.
    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let mut u: f64 = rng.random();
        for (k, w) in self.weights.iter().enumerate() {
            if u < *w {
                return k;
            }
            u -= w;
        }
        self.weights.len() - 1
    }

    /// Log density of a point whose coordinates are `Some` for active parameters.
    fn log_pdf(&self, x: &[Option<KernelPoint>]) -> f64 {
        let logs: Vec<f64> = self
            .components
            .iter()
            .zip(&self.log_weights)
            .map(|(c, lw)| {
                lw + c
                    .iter()
                    .zip(x)
                    .filter_map(|(k, xi)| xi.as_ref().map(|xi| k.log_pdf(xi)))
                    .sum::<f64>()
            })
            .collect();
        let m = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            return m;
        }
        m + logs.iter().map(|l| (l - m).exp()).sum::<f64>().ln()
    }
}

/// TPE: observations are `(assignment, loss)` in trial-number order (lower is better);
/// `pending` trials join the "above" group (Optuna's constant liar), so parallel workers
/// spread out.
pub(crate) fn tpe_assignment(
    space: &SearchSpace,
    observations: &[(Assignment, f64)],
    pending: &[Assignment],
    n_startup: usize,
    n_candidates: usize,
    rng: &mut ChaCha8Rng,
) -> Assignment {
    if observations.len() < n_startup {
        return random_assignment(space, rng);
    }
    // Optuna's split: the best `min(ceil(0.1 n), 25)` complete observations below, the rest
    // and every running trial above (the constant liar); both kept in trial-number order.
    let n_below = ((0.1 * observations.len() as f64).ceil() as usize).min(25);
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by(|&i, &j| {
        observations[i]
            .1
            .total_cmp(&observations[j].1)
            .then(i.cmp(&j))
    });
    let mut is_below = vec![false; observations.len()];
    for &i in &order[..n_below] {
        is_below[i] = true;
    }
    let below: Vec<&Assignment> = (0..observations.len())
        .filter(|&i| is_below[i])
        .map(|i| &observations[i].0)
        .collect();
    let above: Vec<&Assignment> = (0..observations.len())
        .filter(|&i| !is_below[i])
        .map(|i| &observations[i].0)
        .chain(pending.iter())
        .collect();
    let l = Parzen::new(space, &below);
    let g = Parzen::new(space, &above);
    let params = space.params();
    let mut best: Option<(f64, Assignment)> = None;
    for _ in 0..n_candidates.max(1) {
        let comp = &l.components[l.pick(rng)];
        let mut a = Assignment::new();
        let mut x: Vec<Option<KernelPoint>> = vec![None; params.len()];
        for (pi, p) in params.iter().enumerate() {
            if !SearchSpace::is_active(p, &a) {
                continue;
            }
            let xi = comp[pi].sample(rng);
            a.insert(p.name.clone(), value_of(&p.distribution, &xi));
            x[pi] = Some(xi);
        }
        let score = l.log_pdf(&x) - g.log_pdf(&x);
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, a));
        }
    }
    best.map(|b| b.1)
        .unwrap_or_else(|| random_assignment(space, rng))
}

#[cfg(test)]
mod optuna_parzen {
    //! The Parzen estimator against Optuna 5's `_ParzenEstimator` (TPESampler's defaults) on
    //! the fixture written by `scripts/fixtures/optuna_parzen.py`: the log density at fixed
    //! points for fixed histories (1 to 60 observations: the weight ramp starts at 25; a tie;
    //! points on the bounds), which checks the kernels' centres, bandwidths (magic clip, no
    //! endpoints), truncation, the categorical kernels and the mixture weights together.

    use super::*;
    use crate::hpo::space::{Distribution, Param};

    fn space() -> SearchSpace {
        let p = |name: &str, distribution| Param {
            name: name.into(),
            distribution,
            condition: None,
        };
        SearchSpace::new(vec![
            p(
                "x1",
                Distribution::Uniform {
                    low: -5.0,
                    high: 10.0,
                },
            ),
            p(
                "x2",
                Distribution::Uniform {
                    low: 0.0,
                    high: 15.0,
                },
            ),
            p(
                "c",
                Distribution::Categorical {
                    choices: vec!["a".into(), "b".into(), "c".into()],
                },
            ),
        ])
        .unwrap()
    }

    fn assignment(v: &serde_json::Value) -> Assignment {
        let mut a = Assignment::new();
        a.insert("x1".into(), ParamValue::Float(v["x1"].as_f64().unwrap()));
        a.insert("x2".into(), ParamValue::Float(v["x2"].as_f64().unwrap()));
        a.insert(
            "c".into(),
            ParamValue::Choice(v["c"].as_str().unwrap().into()),
        );
        a
    }

    #[test]
    fn log_density_matches_optunas_parzen_estimator() {
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/optuna_parzen.json")).unwrap();
        let space = space();
        // Optuna's density is over the original floats; ours over the unit cube.
        let jacobian = 15f64.ln() + 15f64.ln();
        let cases = fx["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 7);
        for (k, case) in cases.iter().enumerate() {
            let obs: Vec<Assignment> = case["observations"]
                .as_array()
                .unwrap()
                .iter()
                .map(assignment)
                .collect();
            let refs: Vec<&Assignment> = obs.iter().collect();
            let parzen = Parzen::new(&space, &refs);
            for (i, (pt, want)) in case["points"]
                .as_array()
                .unwrap()
                .iter()
                .zip(case["log_pdf"].as_array().unwrap())
                .enumerate()
            {
                let a = assignment(pt);
                let x: Vec<Option<KernelPoint>> = space
                    .params()
                    .iter()
                    .map(|p| a.get(&p.name).and_then(|v| point_of(&p.distribution, v)))
                    .collect();
                let ours = parzen.log_pdf(&x) - jacobian;
                let want = want.as_f64().unwrap();
                assert!(
                    (ours - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "case {k} ({} observations), point {i}: ours {ours}, Optuna {want}",
                    obs.len()
                );
            }
        }
    }
}
