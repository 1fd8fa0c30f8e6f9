//! Metrics for binary classifiers, with optional sample weights, that agree with scikit-learn.
//!
//! Build a [`ScoredSamples`] once (labels, scores, optional weights; checked on construction),
//! then ask it for any metric. Definitions follow scikit-learn 1.9:
//!
//! | metric | scikit-learn |
//! |---|---|
//! | [`ScoredSamples::roc_auc`] | `roc_auc_score` (ties count half) |
//! | [`ScoredSamples::roc_auc_delong`] | the same AUC with DeLong's variance (no scikit-learn peer; checked against the pairwise definition) |
//! | [`ScoredSamples::average_precision`] | `average_precision_score` |
//! | [`ScoredSamples::log_loss`] | `log_loss` (probabilities clipped to `[eps, 1 - eps]`, eps = `f64::EPSILON`) |
//! | [`ScoredSamples::brier`] | `brier_score_loss` |
//! | [`ConfusionMatrix`] rates | `accuracy_score`, `precision_score`, `recall_score`, `f1_score` on `score >= threshold` |
//!
//! ```
//! use mlops_core::metrics::{Metric, ScoredSamples};
//!
//! let labels = [0.0, 0.0, 1.0, 1.0, 1.0];
//! let scores = [0.1, 0.6, 0.35, 0.8, 0.9];
//! let s = ScoredSamples::new(&labels, &scores, None)?;
//! let report = s.report(0.5)?;
//! assert!((report.roc_auc - 5.0 / 6.0).abs() < 1e-12);
//! assert_eq!(report.accuracy, 0.6);
//! assert_eq!(Metric::F1.compute(&s, 0.5)?, report.f1);
//! # Ok::<(), mlops_core::Error>(())
//! ```

mod bootstrap;
mod confusion;
mod curves;
mod delong;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub(crate) use bootstrap::quantile_sorted;
pub use bootstrap::{bootstrap_ci, BootstrapConfig, ConfidenceInterval, MAX_RESAMPLES};
pub use confusion::ConfusionMatrix;
pub use curves::{BestThreshold, RocCurve, ThresholdCriterion, ThresholdSweep};
pub use delong::AucWithVariance;

use crate::error::{Error, Result};

/// Labels, scores and optional sample weights of a binary classifier, checked once.
///
/// Invariants: equal lengths, at least one row, labels are 0 or 1, scores are finite, weights
/// are finite and `>= 0` with a positive sum.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSamples {
    labels: Vec<bool>,
    scores: Vec<f64>,
    weights: Option<Vec<f64>>,
}

impl ScoredSamples {
    /// Checks and stores labels (0.0 or 1.0), scores and optional weights.
    ///
    /// ```
    /// use mlops_core::metrics::ScoredSamples;
    ///
    /// let s = ScoredSamples::new(&[1.0, 0.0], &[0.9, 0.2], Some(&[2.0, 1.0]))?;
    /// assert_eq!(s.len(), 2);
    /// assert!(ScoredSamples::new(&[1.0], &[f64::NAN], None).is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn new(labels: &[f64], scores: &[f64], weights: Option<&[f64]>) -> Result<Self> {
        Self::from_iters(
            labels.iter().copied(),
            scores.iter().copied(),
            weights.map(|w| w.iter().copied()),
        )
    }

    /// As [`ScoredSamples::new`] from `f32` slices, the type a [`crate::Dataset`] and a
    /// [`crate::model::Predictor`] use.
    ///
    /// ```
    /// use mlops_core::metrics::ScoredSamples;
    ///
    /// let s = ScoredSamples::from_f32(&[1.0, 0.0], &[0.75, 0.25], None)?;
    /// assert_eq!(s.roc_auc()?, 1.0);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn from_f32(labels: &[f32], scores: &[f32], weights: Option<&[f32]>) -> Result<Self> {
        Self::from_iters(
            labels.iter().map(|&v| f64::from(v)),
            scores.iter().map(|&v| f64::from(v)),
            weights.map(|w| w.iter().map(|&v| f64::from(v))),
        )
    }

    /// `predictor`'s probabilities on `data`, with `data`'s labels and sample weights: what a
    /// model's evaluation on a split starts from. A dataset without labels, or a row the
    /// predictor cannot score (a missing feature gives NaN), is an error naming it.
    ///
    /// ```
    /// use mlops_core::metrics::ScoredSamples;
    /// use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
    /// use mlops_core::Dataset;
    /// use ndarray::{array, Array2};
    ///
    /// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
    /// let model = MlpModel::new(&ModelArtifact::new(spec, vec![(array![[4.0_f32]], array![-2.0_f32])])?)?;
    /// let data = Dataset::new(Array2::from_shape_vec((4, 1), vec![0.0, 0.2, 0.8, 1.0]).unwrap(), vec!["x".into()])?
    ///     .with_labels(array![0.0, 0.0, 1.0, 1.0], "y")?;
    /// assert_eq!(ScoredSamples::of(&model, &data)?.roc_auc()?, 1.0);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn of(predictor: &dyn crate::model::Predictor, data: &crate::Dataset) -> Result<Self> {
        let labels = data.labels().ok_or_else(|| {
            Error::invalid(
                "labels",
                "none",
                "a labelled dataset to evaluate a model on",
            )
        })?;
        let scores = predictor.predict_proba(data.features())?;
        crate::model::check_scored(scores.iter().copied())?;
        Self::from_iters(
            labels.iter().map(|&v| f64::from(v)),
            scores.iter().map(|&v| f64::from(v)),
            data.weights().map(|w| w.iter().map(|&v| f64::from(v))),
        )
    }

    fn from_iters(
        labels: impl ExactSizeIterator<Item = f64>,
        scores: impl ExactSizeIterator<Item = f64>,
        weights: Option<impl ExactSizeIterator<Item = f64>>,
    ) -> Result<Self> {
        if labels.len() != scores.len() {
            return Err(Error::LengthMismatch {
                left: "labels",
                left_len: labels.len(),
                right: "scores",
                right_len: scores.len(),
            });
        }
        if labels.len() == 0 {
            return Err(Error::invalid("labels", "[]", "at least one row"));
        }
        let labels = labels
            .enumerate()
            .map(|(i, y)| match y {
                0.0 => Ok(false),
                1.0 => Ok(true),
                _ => Err(Error::invalid(format!("labels[{i}]"), y, "0 or 1")),
            })
            .collect::<Result<Vec<bool>>>()?;
        let scores = scores
            .enumerate()
            .map(|(i, s)| {
                if s.is_finite() {
                    Ok(s)
                } else {
                    Err(Error::invalid(format!("scores[{i}]"), s, "a finite number"))
                }
            })
            .collect::<Result<Vec<f64>>>()?;
        let weights = match weights {
            None => None,
            Some(w) => {
                if w.len() != labels.len() {
                    return Err(Error::LengthMismatch {
                        left: "labels",
                        left_len: labels.len(),
                        right: "sample_weight",
                        right_len: w.len(),
                    });
                }
                let w = w
                    .enumerate()
                    .map(|(i, w)| {
                        if w.is_finite() && w >= 0.0 {
                            Ok(w)
                        } else {
                            Err(Error::invalid(
                                format!("sample_weight[{i}]"),
                                w,
                                "a finite number >= 0",
                            ))
                        }
                    })
                    .collect::<Result<Vec<f64>>>()?;
                let total: f64 = w.iter().sum();
                if total <= 0.0 {
                    return Err(Error::invalid(
                        "sample_weight",
                        format!("sum {total}"),
                        "a positive total weight",
                    ));
                }
                Some(w)
            }
        };
        Ok(ScoredSamples {
            labels,
            scores,
            weights,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: construction refuses empty input. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels, `true` for the positive class.
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// The scores.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// The sample weights, if any.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }

    fn weight(&self, i: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }

    fn total_weight(&self) -> f64 {
        self.weights
            .as_ref()
            .map_or(self.labels.len() as f64, |w| w.iter().sum())
    }

    /// Weighted count of positive labels.
    pub fn positive_weight(&self) -> f64 {
        (0..self.len())
            .filter(|&i| self.labels[i])
            .map(|i| self.weight(i))
            .sum()
    }

    /// Replaces the contents with rows `indices` of `source` (used by the bootstrap to reuse
    /// allocations). Indices must be in range; they come from the bootstrap's own sampler.
    fn fill_from(&mut self, source: &ScoredSamples, indices: &[usize]) {
        self.labels.clear();
        self.scores.clear();
        self.labels
            .extend(indices.iter().map(|&i| source.labels[i]));
        self.scores
            .extend(indices.iter().map(|&i| source.scores[i]));
        match (&mut self.weights, &source.weights) {
            (Some(dst), Some(src)) => {
                dst.clear();
                dst.extend(indices.iter().map(|&i| src[i]));
            }
            _ => self.weights = None,
        }
    }

    /// The confusion matrix when rows with `score >= threshold` are predicted positive.
    pub fn confusion(&self, threshold: f64) -> ConfusionMatrix {
        let mut cm = ConfusionMatrix {
            tp: 0.0,
            fp: 0.0,
            tn: 0.0,
            fn_: 0.0,
        };
        for i in 0..self.len() {
            let w = self.weight(i);
            match (self.labels[i], self.scores[i] >= threshold) {
                (true, true) => cm.tp += w,
                (false, true) => cm.fp += w,
                (false, false) => cm.tn += w,
                (true, false) => cm.fn_ += w,
            }
        }
        cm
    }

    /// Cumulative counts at every distinct score, the basis of ROC and PR curves.
    pub fn sweep(&self) -> ThresholdSweep {
        ThresholdSweep::new(self)
    }

    /// Area under the ROC curve; an error when only one class has positive weight.
    pub fn roc_auc(&self) -> Result<f64> {
        self.sweep().roc_auc()
    }

    /// Average precision (scikit-learn's step-wise definition); an error without positives.
    pub fn average_precision(&self) -> Result<f64> {
        self.sweep().average_precision()
    }

    fn require_probabilities(&self, metric: &str) -> Result<()> {
        match self.scores.iter().position(|s| !(0.0..=1.0).contains(s)) {
            Some(i) => Err(Error::UndefinedMetric {
                metric: metric.to_string(),
                reason: format!(
                    "scores[{i}] = {} is not a probability; expected a value in [0, 1]",
                    self.scores[i]
                ),
            }),
            None => Ok(()),
        }
    }

    /// Binary cross-entropy of the scores as probabilities, averaged with the weights;
    /// probabilities are clipped to `[eps, 1 - eps]` with `eps = f64::EPSILON` as scikit-learn
    /// does. An error when a score lies outside `[0, 1]`.
    pub fn log_loss(&self) -> Result<f64> {
        self.require_probabilities("log_loss")?;
        let eps = f64::EPSILON;
        let mut sum = 0.0;
        for i in 0..self.len() {
            let p = if self.labels[i] {
                self.scores[i]
            } else {
                1.0 - self.scores[i]
            };
            sum += self.weight(i) * -p.clamp(eps, 1.0 - eps).ln();
        }
        Ok(sum / self.total_weight())
    }

    /// Weighted mean of `(y - p)²`; an error when a score lies outside `[0, 1]`.
    pub fn brier(&self) -> Result<f64> {
        self.require_probabilities("brier")?;
        let mut sum = 0.0;
        for i in 0..self.len() {
            let y = if self.labels[i] { 1.0 } else { 0.0 };
            sum += self.weight(i) * (y - self.scores[i]).powi(2);
        }
        Ok(sum / self.total_weight())
    }

    /// The threshold that maximises F-beta or Youden's J over the distinct scores.
    ///
    /// ```
    /// use mlops_core::metrics::{ScoredSamples, ThresholdCriterion};
    ///
    /// let s = ScoredSamples::new(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.3, 0.2, 0.9], None)?;
    /// let best = s.best_threshold(ThresholdCriterion::YoudenJ)?;
    /// assert_eq!(best.threshold, 0.9);
    /// assert_eq!(best.value, 0.5);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn best_threshold(&self, criterion: ThresholdCriterion) -> Result<BestThreshold> {
        self.sweep().best_threshold(criterion)
    }

    /// Every metric at once, at `threshold` for the threshold-dependent ones. ROC AUC and
    /// average precision need both classes; `log_loss` and `brier` are `None` when the scores
    /// are not probabilities.
    pub fn report(&self, threshold: f64) -> Result<MetricReport> {
        if !threshold.is_finite() {
            return Err(Error::invalid("threshold", threshold, "a finite number"));
        }
        let sweep = self.sweep();
        let cm = self.confusion(threshold);
        let mut undefined = std::collections::BTreeMap::new();
        let log_loss = self
            .log_loss()
            .map_err(|e| undefined.insert("log_loss".to_string(), e.to_string()))
            .ok();
        let brier = self
            .brier()
            .map_err(|e| undefined.insert("brier".to_string(), e.to_string()))
            .ok();
        Ok(MetricReport {
            rows: self.len(),
            positive_weight: sweep.positives(),
            negative_weight: sweep.negatives(),
            threshold,
            roc_auc: sweep.roc_auc()?,
            average_precision: sweep.average_precision()?,
            log_loss,
            brier,
            accuracy: cm.accuracy(),
            precision: cm.precision(),
            recall: cm.recall(),
            f1: cm.f1(),
            specificity: cm.specificity(),
            confusion: cm,
            undefined,
        })
    }
}

/// A named metric, as used in configurations (gates, early stopping): serde names are the
/// snake_case names scikit-learn users know (`roc_auc`, `average_precision`, `log_loss`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Area under the ROC curve.
    RocAuc,
    /// Average precision.
    AveragePrecision,
    /// Log loss (lower is better).
    LogLoss,
    /// Brier score (lower is better).
    Brier,
    /// Accuracy at the threshold.
    Accuracy,
    /// Precision at the threshold.
    Precision,
    /// Recall at the threshold.
    Recall,
    /// F1 at the threshold.
    F1,
    /// Specificity at the threshold.
    Specificity,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 9] = [
        Metric::RocAuc,
        Metric::AveragePrecision,
        Metric::LogLoss,
        Metric::Brier,
        Metric::Accuracy,
        Metric::Precision,
        Metric::Recall,
        Metric::F1,
        Metric::Specificity,
    ];

    /// The snake_case name. The serialized name, as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::RocAuc => "roc_auc",
            Metric::AveragePrecision => "average_precision",
            Metric::LogLoss => "log_loss",
            Metric::Brier => "brier",
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Specificity => "specificity",
        }
    }

    /// The same as [`as_str`](Self::as_str).
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    /// Whether larger values are better (false for the losses).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::LogLoss | Metric::Brier)
    }

    /// The metric on `samples`; `threshold` matters for the confusion-matrix rates only.
    pub fn compute(self, samples: &ScoredSamples, threshold: f64) -> Result<f64> {
        match self {
            Metric::RocAuc => samples.roc_auc(),
            Metric::AveragePrecision => samples.average_precision(),
            Metric::LogLoss => samples.log_loss(),
            Metric::Brier => samples.brier(),
            Metric::Accuracy => Ok(samples.confusion(threshold).accuracy()),
            Metric::Precision => Ok(samples.confusion(threshold).precision()),
            Metric::Recall => Ok(samples.confusion(threshold).recall()),
            Metric::F1 => Ok(samples.confusion(threshold).f1()),
            Metric::Specificity => Ok(samples.confusion(threshold).specificity()),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        by_name(s, &Metric::ALL, |m| m.name())
    }
}

/// The one of `all` named `s` (by `name`), or an error listing the names: the parse of every
/// metric enum read from a configuration.
pub(crate) fn by_name<T: Copy>(s: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Result<T> {
    all.iter().copied().find(|&m| name(m) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&m| name(m)).collect();
        Error::invalid("metric", s, format!("one of {}", names.join(", ")))
    })
}

/// All metrics of one evaluation, serializable as one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    /// Number of rows.
    pub rows: usize,
    /// Weighted count of positives.
    pub positive_weight: f64,
    /// Weighted count of negatives.
    pub negative_weight: f64,
    /// The decision threshold of the confusion-matrix rates.
    pub threshold: f64,
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Average precision.
    pub average_precision: f64,
    /// Log loss, `None` when scores are not probabilities.
    pub log_loss: Option<f64>,
    /// Brier score, `None` when scores are not probabilities.
    pub brier: Option<f64>,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// Specificity at the threshold.
    pub specificity: f64,
    /// The confusion matrix at the threshold.
    pub confusion: ConfusionMatrix,
    /// Why each `None` metric is undefined (`log_loss`: `"scores[3] = 1.7 ..."`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub undefined: std::collections::BTreeMap<String, String>,
}

impl MetricReport {
    /// The value of `metric`, `None` for a loss that was undefined.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::RocAuc => Some(self.roc_auc),
            Metric::AveragePrecision => Some(self.average_precision),
            Metric::LogLoss => self.log_loss,
            Metric::Brier => self.brier,
            Metric::Accuracy => Some(self.accuracy),
            Metric::Precision => Some(self.precision),
            Metric::Recall => Some(self.recall),
            Metric::F1 => Some(self.f1),
            Metric::Specificity => Some(self.specificity),
        }
    }

    /// The defined metrics as a map, the form a [`crate::gate::MetricGate`] reads.
    pub fn to_values(&self) -> BTreeMap<Metric, f64> {
        Metric::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|v| (m, v)))
            .collect()
    }
}

impl fmt::Display for MetricReport {
    /// One line per metric (an undefined one says why), then the confusion matrix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} rows (positive weight {}, negative weight {}), threshold {}",
            self.rows, self.positive_weight, self.negative_weight, self.threshold
        )?;
        for m in Metric::ALL {
            match self.get(m) {
                Some(v) => writeln!(f, "  {:<18} {v:.6}", m.name())?,
                None => writeln!(
                    f,
                    "  {:<18} undefined: {}",
                    m.name(),
                    self.undefined.get(m.name()).map_or("-", String::as_str)
                )?,
            }
        }
        let c = &self.confusion;
        write!(
            f,
            "  confusion          tp {} fp {} tn {} fn {}",
            c.tp, c.fp, c.tn, c.fn_
        )
    }
}
