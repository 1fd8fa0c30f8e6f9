//! The confusion matrix at a decision threshold and the rates derived from it.

use serde::{Deserialize, Serialize};

/// Weighted counts of a binary classifier's decisions (each row counts its sample weight, 1 when
/// unweighted). A row is predicted positive when its score is `>=` the threshold.
///
/// Rates whose denominator is zero are 0.0, as scikit-learn's default `zero_division` gives.
///
/// ```
/// use mlops_core::metrics::ScoredSamples;
///
/// let s = ScoredSamples::new(&[0.0, 1.0, 1.0, 0.0], &[0.2, 0.9, 0.4, 0.6], None)?;
/// let cm = s.confusion(0.5);
/// assert_eq!((cm.tp, cm.fp, cm.tn, cm.fn_), (1.0, 1.0, 1.0, 1.0));
/// assert_eq!(cm.accuracy(), 0.5);
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// True positives.
    pub tp: f64,
    /// False positives.
    pub fp: f64,
    /// True negatives.
    pub tn: f64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: f64,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

impl ConfusionMatrix {
    /// Total weight.
    pub fn total(&self) -> f64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// (tp + tn) / total.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// tp / (tp + fp).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn), also called sensitivity or true positive rate.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// tn / (tn + fp), the true negative rate.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    /// F-beta: (1 + b²) tp / ((1 + b²) tp + b² fn + fp), scikit-learn's `fbeta_score`.
    pub fn f_beta(&self, beta: f64) -> f64 {
        let b2 = beta * beta;
        ratio(
            (1.0 + b2) * self.tp,
            (1.0 + b2) * self.tp + b2 * self.fn_ + self.fp,
        )
    }

    /// F1: 2 tp / (2 tp + fp + fn).
    pub fn f1(&self) -> f64 {
        self.f_beta(1.0)
    }
}
