//! Threshold sweeps: the cumulative counts behind ROC and precision-recall curves, with ties
//! grouped the way scikit-learn's `_binary_clf_curve` groups them.

use serde::{Deserialize, Serialize};

use super::ScoredSamples;
use crate::error::{Error, Result};

/// Cumulative weighted counts at each distinct score, highest score first: at `thresholds[k]`,
/// predicting positive for every score `>= thresholds[k]` gives `tps[k]` true and `fps[k]`
/// false positives.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdSweep {
    /// Distinct scores, decreasing.
    pub thresholds: Vec<f64>,
    /// Weighted true positives at each threshold.
    pub tps: Vec<f64>,
    /// Weighted false positives at each threshold.
    pub fps: Vec<f64>,
}

impl ThresholdSweep {
    pub(crate) fn new(s: &ScoredSamples) -> Self {
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_unstable_by(|&a, &b| s.scores[b].total_cmp(&s.scores[a]));
        let mut sweep = ThresholdSweep {
            thresholds: Vec::new(),
            tps: Vec::new(),
            fps: Vec::new(),
        };
        let (mut tp, mut fp) = (0.0_f64, 0.0_f64);
        for (pos, &i) in order.iter().enumerate() {
            let w = s.weight(i);
            if s.labels[i] {
                tp += w;
            } else {
                fp += w;
            }
            let last_of_group = order
                .get(pos + 1)
                .is_none_or(|&next| s.scores[next] != s.scores[i]);
            if last_of_group {
                sweep.thresholds.push(s.scores[i]);
                sweep.tps.push(tp);
                sweep.fps.push(fp);
            }
        }
        sweep
    }

    /// Total weight of positives.
    pub fn positives(&self) -> f64 {
        self.tps.last().copied().unwrap_or(0.0)
    }

    /// Total weight of negatives.
    pub fn negatives(&self) -> f64 {
        self.fps.last().copied().unwrap_or(0.0)
    }

    fn require_both_classes(&self, metric: &str) -> Result<()> {
        if self.positives() <= 0.0 || self.negatives() <= 0.0 {
            return Err(Error::UndefinedMetric {
                metric: metric.to_string(),
                reason: format!(
                    "needs both classes with positive weight, got positive weight {} and negative weight {}",
                    self.positives(),
                    self.negatives()
                ),
            });
        }
        Ok(())
    }

    /// The ROC curve, starting at (0, 0).
    pub fn roc_curve(&self) -> Result<RocCurve> {
        self.require_both_classes("ROC curve")?;
        let (p, n) = (self.positives(), self.negatives());
        let mut curve = RocCurve {
            fpr: Vec::with_capacity(self.tps.len() + 1),
            tpr: Vec::with_capacity(self.tps.len() + 1),
            thresholds: Vec::with_capacity(self.tps.len() + 1),
        };
        curve.fpr.push(0.0);
        curve.tpr.push(0.0);
        curve.thresholds.push(f64::INFINITY);
        for k in 0..self.tps.len() {
            curve.fpr.push(self.fps[k] / n);
            curve.tpr.push(self.tps[k] / p);
            curve.thresholds.push(self.thresholds[k]);
        }
        Ok(curve)
    }

    /// Area under the ROC curve by the trapezoidal rule over the tie groups (ties count half),
    /// as scikit-learn's `roc_auc_score`.
    pub fn roc_auc(&self) -> Result<f64> {
        let c = self.roc_curve()?;
        let mut area = 0.0;
        for k in 1..c.fpr.len() {
            area += (c.fpr[k] - c.fpr[k - 1]) * (c.tpr[k] + c.tpr[k - 1]) / 2.0;
        }
        Ok(area)
    }

    /// Average precision, scikit-learn's definition: Σ (Rₖ − Rₖ₋₁) Pₖ over thresholds from
    /// highest to lowest score, with no interpolation.
    pub fn average_precision(&self) -> Result<f64> {
        let p = self.positives();
        if p <= 0.0 {
            return Err(Error::UndefinedMetric {
                metric: "average_precision".into(),
                reason: "there are no positive labels with positive weight".into(),
            });
        }
        let mut ap = 0.0;
        let mut prev_recall = 0.0;
        for k in 0..self.tps.len() {
            let predicted = self.tps[k] + self.fps[k];
            let precision = if predicted != 0.0 {
                self.tps[k] / predicted
            } else {
                0.0
            };
            let recall = self.tps[k] / p;
            ap += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
        Ok(ap)
    }

    /// The threshold that maximises `criterion`. Candidates are the distinct scores (a row is
    /// positive when its score is `>=` the threshold); among equal values the highest threshold
    /// wins.
    pub fn best_threshold(&self, criterion: ThresholdCriterion) -> Result<BestThreshold> {
        self.require_both_classes("best threshold")?;
        if let ThresholdCriterion::FBeta { beta } = criterion {
            if !(beta.is_finite() && beta > 0.0) {
                return Err(Error::invalid(
                    "ThresholdCriterion::FBeta.beta",
                    beta,
                    "a finite number > 0",
                ));
            }
        }
        let (p, n) = (self.positives(), self.negatives());
        let mut best = BestThreshold {
            threshold: f64::NAN,
            value: f64::NEG_INFINITY,
            criterion,
        };
        for k in 0..self.tps.len() {
            let (tp, fp) = (self.tps[k], self.fps[k]);
            let value = match criterion {
                ThresholdCriterion::FBeta { beta } => {
                    let b2 = beta * beta;
                    let den = (1.0 + b2) * tp + b2 * (p - tp) + fp;
                    if den > 0.0 {
                        (1.0 + b2) * tp / den
                    } else {
                        0.0
                    }
                }
                ThresholdCriterion::YoudenJ => tp / p - fp / n,
            };
            if value > best.value {
                best.value = value;
                best.threshold = self.thresholds[k];
            }
        }
        Ok(best)
    }
}

/// Receiver operating characteristic curve: false and true positive rates at each threshold,
/// starting from (0, 0) at an infinite threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False positive rates, increasing.
    pub fpr: Vec<f64>,
    /// True positive rates, increasing.
    pub tpr: Vec<f64>,
    /// The threshold of each point (`inf` for the first).
    pub thresholds: Vec<f64>,
}

/// What [`ThresholdSweep::best_threshold`] maximises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "criterion")]
pub enum ThresholdCriterion {
    /// The F-beta score (beta > 1 favours recall, < 1 precision).
    FBeta {
        /// The beta of F-beta, > 0.
        beta: f64,
    },
    /// Youden's J statistic, TPR − FPR.
    YoudenJ,
}

/// The result of a threshold search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestThreshold {
    /// The best threshold (positive when score `>=` it).
    pub threshold: f64,
    /// The criterion's value there.
    pub value: f64,
    /// The criterion maximised.
    pub criterion: ThresholdCriterion,
}
