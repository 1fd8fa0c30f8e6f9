//! Permutation importance with scikit-learn's definition (`sklearn.inspection.
//! permutation_importance`): how much a metric drops when one feature's column is shuffled,
//! over `n_repeats` shuffles, on the whole data or on `max_samples` rows of it.
//!
//! As scikit-learn does, every feature is shuffled with the same permutations of the same
//! rows (its `random_state` seeds each feature's shuffles alike), so features are compared on
//! equal draws. An importance is `baseline − permuted` for a metric where higher is better and
//! `permuted − baseline` for a loss: positive means the model needs the feature.
//!
//! One difference, on purpose: with `max_samples`, scikit-learn scores its baseline on every
//! row and the shuffles on the sample, which shifts every importance by the same amount (a
//! feature the model ignores gets a nonzero importance); here both are scored on the sample.
//! Checked against scikit-learn 1.9 fed the same rows and shuffles
//! (`tests/permutation_importance.rs`, fixture by `scripts/fixtures/permutation_refs.py`).
//!
//! ```
//! use mlops_core::importance::{permutation_importance, ImportanceConfig};
//! use mlops_core::metrics::Metric;
//! use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
//! use mlops_core::Dataset;
//! use ndarray::{array, Array2};
//!
//! // The model reads x and ignores noise.
//! let spec = ModelSpec::new(vec!["x".into(), "noise".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//! let model = MlpModel::new(&ModelArtifact::new(spec, vec![(array![[5.0_f32, 0.0]], array![0.0_f32])])?)?;
//! let x = Array2::from_shape_fn((200, 2), |(i, j)| if j == 0 { (i as f32 - 100.0) / 50.0 } else { (i % 7) as f32 });
//! let y = ndarray::Array1::from_iter((0..200).map(|i| f32::from(u8::from(i >= 100))));
//! let data = Dataset::new(x, vec!["x".into(), "noise".into()])?.with_labels(y, "y")?;
//! let imp = permutation_importance(&model, &data, &ImportanceConfig { metric: Metric::RocAuc, ..ImportanceConfig::default() })?;
//! assert!(imp.importances_mean[0] > 0.3);
//! assert_eq!(imp.importances_mean[1], 0.0);
//! # Ok::<(), mlops_core::Error>(())
//! ```

use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{Metric, ScoredSamples};
use crate::model::Predictor;
use crate::Dataset;

/// How permutation importance is computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportanceConfig {
    /// The metric (scikit-learn's `scoring`), at the model's own threshold for the
    /// threshold-dependent ones. Default ROC AUC.
    pub metric: Metric,
    /// Shuffles per feature, 1 to 1,000 (default 5, scikit-learn's).
    pub n_repeats: usize,
    /// Rows to use, drawn once without replacement (`None`: all; default). At least 2.
    pub max_samples: Option<usize>,
    /// Seed of the rows' draw and the shuffles.
    pub seed: u64,
}

impl Default for ImportanceConfig {
    fn default() -> Self {
        ImportanceConfig {
            metric: Metric::RocAuc,
            n_repeats: 5,
            max_samples: None,
            seed: 0,
        }
    }
}

/// Each feature's importance, as scikit-learn's `Bunch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermutationImportance {
    /// The features, in column order.
    pub features: Vec<String>,
    /// The metric on the unshuffled rows.
    pub baseline: f64,
    /// Mean importance per feature.
    pub importances_mean: Vec<f64>,
    /// Standard deviation (`ddof = 0`, numpy's) per feature.
    pub importances_std: Vec<f64>,
    /// Every repeat's importance, per feature.
    pub importances: Vec<Vec<f64>>,
}

impl PermutationImportance {
    /// The `k` most important features, most important first (ties in column order).
    pub fn top(&self, k: usize) -> Vec<&str> {
        let mut order: Vec<usize> = (0..self.features.len()).collect();
        order.sort_by(|&a, &b| {
            self.importances_mean[b]
                .total_cmp(&self.importances_mean[a])
                .then(a.cmp(&b))
        });
        order
            .into_iter()
            .take(k)
            .map(|i| self.features[i].as_str())
            .collect()
    }
}

/// Permutation importance of `predictor` on labeled `data`, with rows and shuffles drawn
/// from `config.seed` (see the module docs).
pub fn permutation_importance(
    predictor: &dyn Predictor,
    data: &Dataset,
    config: &ImportanceConfig,
) -> Result<PermutationImportance> {
    if !(1..=1000).contains(&config.n_repeats) {
        return Err(Error::invalid(
            "ImportanceConfig.n_repeats",
            config.n_repeats,
            "from 1 to 1000",
        ));
    }
    let n = data.n_rows();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let rows: Option<Vec<usize>> = match config.max_samples {
        None => None,
        Some(m) if (2..=n).contains(&m) => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut rng);
            all.truncate(m);
            Some(all)
        }
        Some(m) => {
            return Err(Error::invalid(
                "ImportanceConfig.max_samples",
                m,
                format!("from 2 to the {n} rows"),
            ))
        }
    };
    let m = rows.as_ref().map_or(n, Vec::len);
    let permutations: Vec<Vec<usize>> = (0..config.n_repeats)
        .map(|_| {
            let mut p: Vec<usize> = (0..m).collect();
            p.shuffle(&mut rng);
            p
        })
        .collect();
    permutation_importance_with(
        predictor,
        data,
        config.metric,
        rows.as_deref(),
        &permutations,
    )
}

/// Permutation importance with the rows and shuffles given: `rows` (`None`: every row) are
/// scored, and for each feature and each permutation `p` of `0..rows`, row `i` takes the
/// feature's value of row `p[i]` (numpy's `X[:, j] = X[p, j]`, what scikit-learn does). What
/// a test feeds scikit-learn's own draws to.
pub fn permutation_importance_with(
    predictor: &dyn Predictor,
    data: &Dataset,
    metric: Metric,
    rows: Option<&[usize]>,
    permutations: &[Vec<usize>],
) -> Result<PermutationImportance> {
    let labels = data.labels().ok_or_else(|| {
        Error::invalid(
            "labels",
            "none",
            "a labelled dataset to measure importance on",
        )
    })?;
    if data.n_features() != predictor.n_features() {
        return Err(Error::invalid(
            "data",
            format!("{} features", data.n_features()),
            format!("the model's {}", predictor.n_features()),
        ));
    }
    let all: Vec<usize>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = (0..data.n_rows()).collect();
            &all
        }
    };
    if let Some(&bad) = rows.iter().find(|&&r| r >= data.n_rows()) {
        return Err(Error::invalid(
            "rows",
            bad,
            format!("row indices below {}", data.n_rows()),
        ));
    }
    let m = rows.len();
    if m < 2 {
        return Err(Error::invalid("rows", m, "at least 2 rows"));
    }
    if permutations.is_empty() {
        return Err(Error::invalid("permutations", "[]", "at least one"));
    }
    for (k, p) in permutations.iter().enumerate() {
        let mut seen = vec![false; m];
        for &i in p {
            if i >= m || std::mem::replace(&mut seen[i], true) {
                return Err(Error::invalid(
                    format!("permutations[{k}]"),
                    format!("index {i}"),
                    format!("a permutation of 0..{m}"),
                ));
            }
        }
        if p.len() != m {
            return Err(Error::invalid(
                format!("permutations[{k}]"),
                format!("{} indices", p.len()),
                format!("a permutation of 0..{m}"),
            ));
        }
    }
    let x = data.features();
    let mut buffer = Array2::from_shape_fn((m, x.ncols()), |(i, j)| x[[rows[i], j]]);
    let y: Vec<f64> = rows.iter().map(|&r| f64::from(labels[r])).collect();
    let w: Option<Vec<f64>> = data
        .weights()
        .map(|w| rows.iter().map(|&r| f64::from(w[r])).collect());
    let threshold = f64::from(predictor.threshold());
    let mut scores = vec![0.0_f32; m];
    let score = |buffer: &Array2<f32>, scores: &mut [f32]| -> Result<f64> {
        predictor.predict_proba_into(buffer.view(), scores)?;
        crate::model::check_scored(scores.iter().copied())?;
        let s: Vec<f64> = scores.iter().map(|&v| f64::from(v)).collect();
        metric.compute(&ScoredSamples::new(&y, &s, w.as_deref())?, threshold)
    };
    let baseline = score(&buffer, &mut scores)?;
    let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
    let mut importances = Vec::with_capacity(x.ncols());
    let mut column = vec![0.0_f32; m];
    for j in 0..x.ncols() {
        column
            .iter_mut()
            .zip(buffer.column(j))
            .for_each(|(c, &v)| *c = v);
        let mut per_repeat = Vec::with_capacity(permutations.len());
        for p in permutations {
            for (i, &src) in p.iter().enumerate() {
                buffer[[i, j]] = column[src];
            }
            per_repeat.push(sign * (baseline - score(&buffer, &mut scores)?));
        }
        for (i, &v) in column.iter().enumerate() {
            buffer[[i, j]] = v;
        }
        importances.push(per_repeat);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let importances_mean: Vec<f64> = importances.iter().map(|v| mean(v)).collect();
    let importances_std = importances
        .iter()
        .zip(&importances_mean)
        .map(|(v, &mu)| (v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
        .collect();
    Ok(PermutationImportance {
        features: data.feature_names().map(str::to_string).collect(),
        baseline,
        importances_mean,
        importances_std,
        importances,
    })
}

/// A gate input from permutation importance: the candidate's `k` most important features
/// must share at least `min_overlap` with the champion's (a model that suddenly leans on other
/// features is a model to look at before it serves).
///
/// ```
/// use mlops_core::importance::{PermutationImportance, TopKStability};
///
/// let of = |means: [f64; 4]| PermutationImportance {
///     features: ["a", "b", "c", "d"].map(String::from).to_vec(),
///     baseline: 0.9,
///     importances_mean: means.to_vec(),
///     importances_std: vec![0.0; 4],
///     importances: vec![vec![]; 4],
/// };
/// let rule = TopKStability { k: 2, min_overlap: 2 };
/// let same = rule.judge(&of([0.3, 0.2, 0.0, 0.0]), &of([0.25, 0.3, 0.01, 0.0]))?;
/// assert!(same.passed);
/// let moved = rule.judge(&of([0.0, 0.0, 0.3, 0.2]), &of([0.25, 0.3, 0.01, 0.0]))?;
/// assert!(!moved.passed);
/// assert!(moved.reason.contains("0 in common"), "{}", moved.reason);
/// // Importances that do not match their features are an error, never a panic.
/// let mut short = of([0.3, 0.2, 0.0, 0.0]);
/// short.importances_mean.pop();
/// assert!(rule.judge(&short, &of([0.0; 4])).is_err());
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKStability {
    /// How many of the most important features are compared (at least 1, at most the
    /// features).
    pub k: usize,
    /// The fewest of them the two must share (at most `k`).
    pub min_overlap: usize,
}

/// A [`TopKStability`] verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StabilityResult {
    /// Whether the overlap is enough.
    pub passed: bool,
    /// The candidate's top features, most important first.
    pub candidate_top: Vec<String>,
    /// The champion's.
    pub champion_top: Vec<String>,
    /// Features in both.
    pub overlap: usize,
    /// One sentence.
    pub reason: String,
}

impl TopKStability {
    /// Compares the two models' top `k` features. Errors: `k` of 0 or more than the
    /// features, `min_overlap` above `k`, importances of different features.
    pub fn judge(
        &self,
        candidate: &PermutationImportance,
        champion: &PermutationImportance,
    ) -> Result<StabilityResult> {
        if candidate.features != champion.features {
            return Err(Error::invalid(
                "importance features",
                format!("{:?}", candidate.features),
                format!("the champion's {:?}", champion.features),
            ));
        }
        let d = candidate.features.len();
        for (who, p) in [("candidate", candidate), ("champion", champion)] {
            if p.importances_mean.len() != d {
                return Err(Error::invalid(
                    format!("{who} importances_mean"),
                    format!("{} values", p.importances_mean.len()),
                    format!("one per feature ({d})"),
                ));
            }
        }
        if self.k == 0 || self.k > d {
            return Err(Error::invalid(
                "TopKStability.k",
                self.k,
                format!("from 1 to the {d} features"),
            ));
        }
        if self.min_overlap > self.k {
            return Err(Error::invalid(
                "TopKStability.min_overlap",
                self.min_overlap,
                format!("at most k = {}", self.k),
            ));
        }
        let (c, p) = (candidate.top(self.k), champion.top(self.k));
        let overlap = c.iter().filter(|f| p.contains(f)).count();
        let passed = overlap >= self.min_overlap;
        Ok(StabilityResult {
            passed,
            reason: format!(
                "top {} features by permutation importance: candidate [{}], champion [{}]: {overlap} in common, at least {} required",
                self.k,
                c.join(", "),
                p.join(", "),
                self.min_overlap
            ),
            candidate_top: c.iter().map(|s| s.to_string()).collect(),
            champion_top: p.iter().map(|s| s.to_string()).collect(),
            overlap,
        })
    }
}
