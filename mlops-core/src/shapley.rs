//! Shapley values of a model's output for one row against a background set (interventional:
//! a feature "absent" takes a background row's value), shap's definition.
//!
//! - [`ShapleyMethod::Exact`]: every coalition (up to [`MAX_EXACT_FEATURES`] features),
//!   `2^d × background` rows scored through the predictor in blocks;
//! - [`ShapleyMethod::Permutation`]: antithetic permutation sampling (each sampled order and
//!   its reverse), every order walked from each background row to the row, with a running
//!   standard error per feature; it stops when every standard error is below `tolerance` or
//!   the evaluation budget is spent.
//!
//! Both are additive exactly: the values sum to `g(f(x)) − mean g(f(background))`, where `g`
//! is the identity ([`OutputScale::Probability`]) or the logit ([`OutputScale::Logit`]). Rows
//! are built in one reused buffer and scored in blocks of at most `block_rows`.
//!
//! ```
//! use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
//! use mlops_core::shapley::{shapley, OutputScale, ShapleyConfig, ShapleyMethod};
//! use ndarray::array;
//!
//! // A one-layer model is linear on the logit: its Shapley values there are w·(x − mean b).
//! let spec = ModelSpec::new(vec!["a".into(), "b".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//! let model = MlpModel::new(&ModelArtifact::new(spec, vec![(array![[0.8_f32, -0.5]], array![0.1_f32])])?)?;
//! let background = array![[0.0_f32, 0.0], [1.0, 2.0]];
//! let config = ShapleyConfig { method: ShapleyMethod::Exact, scale: OutputScale::Logit, ..ShapleyConfig::default() };
//! let e = shapley(&model, &[1.0, 1.0], background.view(), &config)?;
//! assert!((e.values[0] - 0.8 * (1.0 - 0.5)).abs() < 1e-5);
//! assert!((e.values[1] + 0.5 * (1.0 - 1.0)).abs() < 1e-5);
//! assert!((e.values.iter().sum::<f64>() - (e.output - e.base_value)).abs() < 1e-9);
//! # Ok::<(), mlops_core::Error>(())
//! ```

use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Predictor;

/// The most features [`ShapleyMethod::Exact`] takes (`2^16` coalitions).
pub const MAX_EXACT_FEATURES: usize = 16;

/// The fewest antithetic pairs sampling takes before it may stop at its tolerance.
pub const MIN_PAIRS: usize = 10;

/// The most background rows (a request controls the background it sends).
pub const MAX_BACKGROUND_ROWS: usize = 10_000;

/// How the values are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShapleyMethod {
    /// Exact for up to [`MAX_EXACT_FEATURES`] features, permutation sampling above.
    Auto,
    /// Every coalition.
    Exact,
    /// Antithetic permutation sampling.
    Permutation,
}

/// The scale the values explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputScale {
    /// The probability.
    Probability,
    /// The log-odds `ln(p / (1 − p))` of each scored row (probabilities clamped to
    /// `[1e-7, 1 − 1e-7]`, so it saturates near ±16.1), averaged over the background: the
    /// values add up to the row's log-odds. (shap's `link=logit` takes the logit of the
    /// averaged probability instead, which does not.)
    Logit,
}

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShapleyConfig {
    /// The method (default `auto`: exact when `2^d × background` rows fit `max_evaluations`,
    /// sampling otherwise).
    pub method: ShapleyMethod,
    /// The scale (default the probability).
    pub scale: OutputScale,
    /// Sampling stops when every value's standard error is below this (default 1e-3).
    pub tolerance: f64,
    /// The most rows one explanation may score (default 2,000,000): exact needs
    /// `2^d × background` of them, sampling stops before passing it.
    pub max_evaluations: usize,
    /// Rows scored per call of the predictor, 1 to 1,048,576 (default 8,192).
    pub block_rows: usize,
    /// The sampling seed.
    pub seed: u64,
}

impl Default for ShapleyConfig {
    fn default() -> Self {
        ShapleyConfig {
            method: ShapleyMethod::Auto,
            scale: OutputScale::Probability,
            tolerance: 1e-3,
            max_evaluations: 2_000_000,
            block_rows: 8192,
            seed: 0,
        }
    }
}

/// One row explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The features, in column order.
    pub features: Vec<String>,
    /// One value per feature.
    pub values: Vec<f64>,
    /// The mean output over the background (shap's `base_values`), on `scale`.
    pub base_value: f64,
    /// The row's output, on `scale`: `base_value + Σ values`.
    pub output: f64,
    /// The standard error of each value (sampling; zeros when exact; NaN when the budget
    /// allowed a single pair of orders, and for DeepSHAP, whose error is unknown).
    pub std_errors: Vec<f64>,
    /// `exact`, `permutation`, or `deep` ([`MlpModel::deep_shap`](crate::model::MlpModel::deep_shap)).
    pub method: String,
    /// The scale explained.
    pub scale: OutputScale,
    /// Rows scored.
    pub evaluations: usize,
    /// Orders walked (sampling; 0 when exact).
    pub permutations: usize,
}

/// Scores rows through the predictor in blocks, into a reused buffer.
struct Scorer<'a> {
    predictor: &'a dyn Predictor,
    scale: OutputScale,
    rows: Array2<f32>,
    filled: usize,
    out: Vec<f32>,
    evaluations: usize,
}

impl<'a> Scorer<'a> {
    fn new(predictor: &'a dyn Predictor, scale: OutputScale, block: usize, d: usize) -> Self {
        Scorer {
            predictor,
            scale,
            rows: Array2::zeros((block, d)),
            filled: 0,
            out: vec![0.0; block],
            evaluations: 0,
        }
    }

    /// The next free row of the block (the caller writes it, then `commit`s).
    fn full(&self) -> bool {
        self.filled == self.rows.nrows()
    }

    /// Scores the filled rows; their outputs on the scale, in order.
    fn flush(&mut self) -> Result<Vec<f64>> {
        let n = self.filled;
        if n == 0 {
            return Ok(Vec::new());
        }
        let view = self
            .rows
            .slice_axis(ndarray::Axis(0), ndarray::Slice::from(..n));
        self.predictor
            .predict_proba_into(view, &mut self.out[..n])?;
        self.filled = 0;
        self.evaluations += n;
        self.out[..n]
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                if !p.is_finite() {
                    return Err(Error::invalid(
                        format!("model output for masked row {i}"),
                        p,
                        "a probability (a NaN feature in the row or the background?)",
                    ));
                }
                Ok(match self.scale {
                    OutputScale::Probability => f64::from(p),
                    OutputScale::Logit => {
                        let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
                        (p / (1.0 - p)).ln()
                    }
                })
            })
            .collect()
    }
}

/// The Shapley values of `predictor` at row `x` against `background` (see the module docs).
/// Errors name the bad input: a row of the wrong width or with a non-finite value, an empty
/// or oversized background, exact asked for too many features, a budget too small for one
/// antithetic pair of orders.
pub fn shapley(
    predictor: &dyn Predictor,
    x: &[f32],
    background: ArrayView2<'_, f32>,
    config: &ShapleyConfig,
) -> Result<Explanation> {
    let d = predictor.n_features();
    if x.len() != d {
        return Err(Error::invalid(
            "row",
            format!("{} values", x.len()),
            format!("the model's {d} features"),
        ));
    }
    if let Some(j) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            format!("row[{j}]"),
            x[j],
            "a finite value to explain",
        ));
    }
    if background.ncols() != d {
        return Err(Error::invalid(
            "background",
            format!("{} columns", background.ncols()),
            format!("the model's {d} features"),
        ));
    }
    let nb = background.nrows();
    if !(1..=MAX_BACKGROUND_ROWS).contains(&nb) {
        return Err(Error::invalid(
            "background",
            format!("{nb} rows"),
            format!("1 to {MAX_BACKGROUND_ROWS} rows"),
        ));
    }
    if let Some(((i, j), v)) = background.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::invalid(
            format!("background[{i}][{j}]"),
            v,
            "finite values",
        ));
    }
    if !(1..=1 << 20).contains(&config.block_rows) {
        return Err(Error::invalid(
            "ShapleyConfig.block_rows",
            config.block_rows,
            "from 1 to 1048576",
        ));
    }
    if !(config.tolerance.is_finite() && config.tolerance > 0.0) {
        return Err(Error::invalid(
            "ShapleyConfig.tolerance",
            config.tolerance,
            "a positive number",
        ));
    }
    // Exact scores 2^d × background rows: within the budget only (a request chooses the
    // background, and 2^16 × 10,000 rows would take minutes).
    let exact_rows = (d <= MAX_EXACT_FEATURES).then(|| (1usize << d) * nb);
    let exact_fits = exact_rows.is_some_and(|r| r <= config.max_evaluations);
    let exact = match config.method {
        ShapleyMethod::Exact if d > MAX_EXACT_FEATURES => {
            return Err(Error::invalid(
                "ShapleyConfig.method",
                format!("exact for {d} features"),
                format!("at most {MAX_EXACT_FEATURES} features (2^d coalitions); use permutation"),
            ))
        }
        ShapleyMethod::Exact if !exact_fits => {
            return Err(Error::invalid(
                "ShapleyConfig.max_evaluations",
                config.max_evaluations,
                format!(
                    "at least the {} rows exact needs (2^{d} coalitions × {nb} background rows), or fewer background rows",
                    exact_rows.unwrap_or(usize::MAX)
                ),
            ))
        }
        ShapleyMethod::Exact => true,
        ShapleyMethod::Auto => exact_fits,
        ShapleyMethod::Permutation => false,
    };
    let mut scorer = Scorer::new(predictor, config.scale, config.block_rows, d);
    let features = predictor.feature_names().to_vec();
    let mut e = if exact {
        exact_values(&mut scorer, x, background)?
    } else {
        sampled_values(&mut scorer, x, background, config)?
    };
    e.features = features;
    e.evaluations = scorer.evaluations;
    tracing::debug!(method = %e.method, evaluations = e.evaluations, "shapley values computed");
    Ok(e)
}

/// Every coalition's mean output over the background, then the Shapley weights.
fn exact_values(
    scorer: &mut Scorer<'_>,
    x: &[f32],
    background: ArrayView2<'_, f32>,
) -> Result<Explanation> {
    let d = x.len();
    let nb = background.nrows();
    let coalitions = 1usize << d;
    let mut v = vec![0.0_f64; coalitions];
    // Rows in coalition-major order: (mask, background row).
    let mut pending: Vec<usize> = Vec::with_capacity(scorer.rows.nrows());
    let drain = |scorer: &mut Scorer<'_>, pending: &mut Vec<usize>, v: &mut [f64]| -> Result<()> {
        for (mask, out) in pending.drain(..).zip(scorer.flush()?) {
            v[mask] += out;
        }
        Ok(())
    };
    for mask in 0..coalitions {
        for b in 0..nb {
            let i = scorer.filled;
            for j in 0..d {
                scorer.rows[[i, j]] = if mask >> j & 1 == 1 {
                    x[j]
                } else {
                    background[[b, j]]
                };
            }
            scorer.filled += 1;
            pending.push(mask);
            if scorer.full() {
                drain(scorer, &mut pending, &mut v)?;
            }
        }
    }
    drain(scorer, &mut pending, &mut v)?;
    v.iter_mut().for_each(|t| *t /= nb as f64);
    // w(s) = s! (d − s − 1)! / d!
    let mut weight = vec![0.0_f64; d];
    for (s, w) in weight.iter_mut().enumerate() {
        *w = 1.0 / (d as f64 * binomial(d - 1, s));
    }
    let mut values = vec![0.0_f64; d];
    for (mask, &v_mask) in v.iter().enumerate() {
        let size = mask.count_ones() as usize;
        for (j, value) in values.iter_mut().enumerate() {
            if mask >> j & 1 == 0 {
                *value += weight[size] * (v[mask | 1 << j] - v_mask);
            }
        }
    }
    Ok(Explanation {
        features: Vec::new(),
        values,
        base_value: v[0],
        output: v[coalitions - 1],
        std_errors: vec![0.0; d],
        method: "exact".into(),
        scale: scorer.scale,
        evaluations: 0,
        permutations: 0,
    })
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Antithetic pairs of orders, each walked from every background row to `x`.
fn sampled_values(
    scorer: &mut Scorer<'_>,
    x: &[f32],
    background: ArrayView2<'_, f32>,
    config: &ShapleyConfig,
) -> Result<Explanation> {
    let d = x.len();
    let nb = background.nrows();
    let per_order = (d + 1) * nb;
    if config.max_evaluations < 2 * per_order {
        return Err(Error::invalid(
            "ShapleyConfig.max_evaluations",
            config.max_evaluations,
            format!(
                "at least {} (one pair of orders: 2 × (features + 1) × background rows)",
                2 * per_order
            ),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..d).collect();
    // Per pair: its estimate of every value; running sums for the mean and variance.
    let (mut sum, mut sum_sq) = (vec![0.0_f64; d], vec![0.0_f64; d]);
    let mut pairs = 0usize;
    let mut base = 0.0;
    let mut output = 0.0;
    let mut std_errors = vec![f64::INFINITY; d];
    while scorer.evaluations + 2 * per_order <= config.max_evaluations {
        order.shuffle(&mut rng);
        let mut pair = vec![0.0_f64; d];
        for reversed in [false, true] {
            let walk: Vec<usize> = if reversed {
                order.iter().rev().copied().collect()
            } else {
                order.clone()
            };
            let outs = walk_order(scorer, x, background, &walk)?;
            // outs: for each background row, d + 1 outputs along the walk.
            for b in 0..nb {
                let o = &outs[b * (d + 1)..(b + 1) * (d + 1)];
                for (k, &j) in walk.iter().enumerate() {
                    pair[j] += (o[k + 1] - o[k]) / (2 * nb) as f64;
                }
                if pairs == 0 && !reversed {
                    base += o[0] / nb as f64;
                    output = o[d];
                }
            }
        }
        pairs += 1;
        for j in 0..d {
            sum[j] += pair[j];
            sum_sq[j] += pair[j] * pair[j];
        }
        // Judged from MIN_PAIRS on: with few features two draws can be the same pair, and a
        // standard error of 0 from them would stop on a wrong estimate.
        if pairs >= 2 {
            let n = pairs as f64;
            for j in 0..d {
                let mean = sum[j] / n;
                let var = ((sum_sq[j] / n - mean * mean) * n / (n - 1.0)).max(0.0);
                std_errors[j] = (var / n).sqrt();
            }
            if pairs >= MIN_PAIRS && std_errors.iter().all(|&s| s < config.tolerance) {
                break;
            }
        }
    }
    let values: Vec<f64> = sum.iter().map(|s| s / pairs as f64).collect();
    if pairs < 2 {
        std_errors = vec![f64::NAN; d];
    }
    Ok(Explanation {
        features: Vec::new(),
        values,
        base_value: base,
        output,
        std_errors,
        method: "permutation".into(),
        scale: scorer.scale,
        evaluations: 0,
        permutations: 2 * pairs,
    })
}

/// For each background row, the outputs along `walk`: the background row, then with each
/// feature of `walk` set to `x`'s in turn.
fn walk_order(
    scorer: &mut Scorer<'_>,
    x: &[f32],
    background: ArrayView2<'_, f32>,
    walk: &[usize],
) -> Result<Vec<f64>> {
    let d = x.len();
    let mut outs = Vec::with_capacity((d + 1) * background.nrows());
    for b in 0..background.nrows() {
        let mut row: Vec<f32> = background.row(b).to_vec();
        for step in 0..=d {
            if step > 0 {
                let j = walk[step - 1];
                row[j] = x[j];
            }
            let i = scorer.filled;
            scorer
                .rows
                .row_mut(i)
                .iter_mut()
                .zip(&row)
                .for_each(|(t, &v)| *t = v);
            scorer.filled += 1;
            if scorer.full() {
                outs.extend(scorer.flush()?);
            }
        }
    }
    outs.extend(scorer.flush()?);
    Ok(outs)
}
