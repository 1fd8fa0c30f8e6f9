//! Performance estimated before the labels arrive: confidence-based performance estimation
//! (CBPE), with NannyML's definitions.
//!
//! A calibrated probability `p` says a row is positive with chance `p`, so a window of
//! unlabeled predictions has an *expected* confusion matrix — `TP = Σ p` over predicted
//! positives, `FP = Σ (1 − p)` over them, `FN = Σ p` over predicted negatives, `TN = Σ (1 − p)`
//! over them — and from it an expected accuracy, precision, recall and F1; and an expected ROC
//! curve (NannyML's `estimate_roc_auc`: rows sorted by the model's own score, the calibrated
//! probabilities summed as true positives). Each estimate has NannyML's sampling error, fitted
//! on the labeled reference (at training time, the validation rows the model did not train
//! on) and scaled by the window's size;
//! the band is the estimate ± 3 sampling errors, clipped to the metric's range.
//!
//! The estimates hold while the relation between score and label stays as it was (no
//! concept drift): they follow covariate shift, which is what moves first in a fraud stream
//! whose labels (chargebacks) come weeks later.
//!
//! Where NannyML reports 0 for a metric with no defined value (a precision with no expected
//! predicted positive) this module says `None`: unknown, never a number.
//!
//! One difference by design: NannyML's ROC AUC sampling error ranks the reference's scores
//! with numpy's unstable sort, so how tied scores are ordered (and the error, by about 0.5 %
//! on NannyML's own two-decimal scores) depends on the machine's sorting; here ties keep
//! their row order. On distinct scores the two agree to 1e-9.
//!
//! ```
//! use mlops_core::cbpe::{Cbpe, CbpeCalibration};
//!
//! // A reference of 2,000 scored and labeled rows: the label is 1 with chance = the score.
//! let scores: Vec<f64> = (0..2000).map(|i| ((i * 7919) % 2000) as f64 / 2000.0).collect();
//! let labels: Vec<f64> = scores.iter().enumerate()
//!     .map(|(i, s)| f64::from(((i * 104_729) % 1000) as f64 / 1000.0 < *s)).collect();
//! let cbpe = Cbpe::fit(&scores, &labels, None, 0.5, CbpeCalibration::Isotonic)?;
//! // A window of unlabeled scores: estimated AUC with its band.
//! let window: Vec<f64> = scores[..500].to_vec();
//! let estimate = cbpe.estimate(&window, None)?;
//! let auc = estimate.roc_auc.value.unwrap();
//! assert!((0.7..0.9).contains(&auc), "{auc}");
//! let (lower, upper) = (estimate.roc_auc.lower.unwrap(), estimate.roc_auc.upper.unwrap());
//! assert!(lower < auc && auc < upper);
//! # Ok::<(), mlops_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::calibration::{BinStrategy, Calibration, CalibrationMethod, ReliabilityCurve};
use crate::error::{Error, Result};
use crate::model::Predictor;
use crate::Dataset;

/// How many sampling errors the band spans on each side (NannyML's `SAMPLING_ERROR_RANGE`).
pub const SAMPLING_ERROR_RANGE: f64 = 3.0;

/// The most rows a window or a reference may hold (a bound on one call's memory: two `f64`
/// and an index per row).
pub const MAX_ROWS: usize = 1 << 28;

/// How the estimator turns the model's scores into probabilities it can trust.
#[derive(Debug, Clone, PartialEq)]
pub enum CbpeCalibration {
    /// Fit isotonic regression on the reference (NannyML's calibrator, forced on).
    Isotonic,
    /// Fit Platt's sigmoid on the reference.
    Platt,
    /// Use a calibration fitted elsewhere (the one stored with the model).
    Given(Calibration),
    /// The scores are already calibrated probabilities.
    None,
}

/// What one metric's sampling error is made of, fitted on the reference: NannyML's
/// `(std, fraction)` pair, so that the error of a window of `n` rows is
/// `std / sqrt(n · fraction)`. `None` where the reference could not say (no positives, no
/// predicted positives).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorComponent {
    /// Standard deviation of the observation-level metric on the reference.
    pub std: f64,
    /// Share of reference rows the metric is an average over.
    pub fraction: f64,
}

impl ErrorComponent {
    fn rate_error(self, n: usize) -> Option<f64> {
        let se = self.std / (n as f64 * self.fraction).sqrt();
        se.is_finite().then_some(se)
    }
}

/// The sampling-error components of every estimated metric, fitted on the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingErrors {
    /// ROC AUC (the Mann-Whitney rank deviations of the positives).
    pub roc_auc: Option<ErrorComponent>,
    /// Accuracy (std of "correct"; the fraction is 1).
    pub accuracy: Option<ErrorComponent>,
    /// Precision.
    pub precision: Option<ErrorComponent>,
    /// Recall.
    pub recall: Option<ErrorComponent>,
    /// F1.
    pub f1: Option<ErrorComponent>,
    /// True positives (std of the row-level indicator; a count's error is `std · sqrt(n)`).
    pub true_positive: Option<f64>,
    /// False positives.
    pub false_positive: Option<f64>,
    /// False negatives.
    pub false_negative: Option<f64>,
    /// True negatives.
    pub true_negative: Option<f64>,
}

/// A fitted estimator: the calibration and the sampling-error components, small enough to
/// store with a model (serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cbpe {
    /// The map from the model's score to a probability; `None` when the scores are used as
    /// they are.
    pub calibration: Option<Calibration>,
    /// The decision threshold: a row is predicted positive when its score is `>=` it (the
    /// model's own threshold, on its uncalibrated score).
    pub threshold: f64,
    /// Reference rows the estimator was fitted on.
    pub reference_rows: usize,
    /// Sampling-error components from the reference.
    pub sampling_errors: SamplingErrors,
    /// Each rate estimated on the reference itself: the performance expected when nothing
    /// has changed, which a window's estimate is compared with.
    pub reference: ReferenceRates,
}

/// The rates estimated on the reference (`None` where undefined).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRates {
    /// Estimated ROC AUC.
    pub roc_auc: Option<f64>,
    /// Estimated accuracy.
    pub accuracy: Option<f64>,
    /// Estimated precision.
    pub precision: Option<f64>,
    /// Estimated recall.
    pub recall: Option<f64>,
    /// Estimated F1.
    pub f1: Option<f64>,
}

/// One estimated metric with its sampling error and band. Each part is `None` when it has no
/// value (an empty class, a reference that could not fit the error).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimated {
    /// The estimate.
    pub value: Option<f64>,
    /// Its sampling error (one standard error).
    pub sampling_error: Option<f64>,
    /// `value − 3 · sampling_error`, clipped to the metric's range.
    pub lower: Option<f64>,
    /// `value + 3 · sampling_error`, clipped to the metric's range.
    pub upper: Option<f64>,
    /// The same metric estimated on the reference (the rows the estimator was fitted on),
    /// for the rates: what the window is compared with.
    #[serde(default)]
    pub reference: Option<f64>,
}

impl Estimated {
    fn with_reference(mut self, reference: Option<f64>) -> Self {
        self.reference = reference;
        self
    }

    fn new(value: Option<f64>, sampling_error: Option<f64>, range: (f64, f64)) -> Self {
        let value = value.filter(|v| v.is_finite());
        let sampling_error = sampling_error.filter(|e| e.is_finite());
        let (lower, upper) = match (value, sampling_error) {
            (Some(v), Some(e)) => (
                Some((v - SAMPLING_ERROR_RANGE * e).max(range.0)),
                Some((v + SAMPLING_ERROR_RANGE * e).min(range.1)),
            ),
            _ => (None, None),
        };
        Estimated {
            value,
            sampling_error,
            lower,
            upper,
            reference: None,
        }
    }
}

/// The estimated performance of one window of unlabeled predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerformanceEstimate {
    /// Rows in the window.
    pub rows: usize,
    /// Estimated ROC AUC.
    pub roc_auc: Estimated,
    /// Estimated accuracy.
    pub accuracy: Estimated,
    /// Estimated precision.
    pub precision: Estimated,
    /// Estimated recall.
    pub recall: Estimated,
    /// Estimated F1.
    pub f1: Estimated,
    /// Expected true positives.
    pub true_positive: Estimated,
    /// Expected false positives.
    pub false_positive: Estimated,
    /// Expected false negatives.
    pub false_negative: Estimated,
    /// Expected true negatives.
    pub true_negative: Estimated,
}

impl PerformanceEstimate {
    /// The rates' names, in the order of [`PerformanceEstimate::rates`].
    pub const RATES: [&'static str; 5] = ["roc_auc", "accuracy", "precision", "recall", "f1"];

    /// The estimated metrics by the names the gates use (`roc_auc`, `accuracy`, `precision`,
    /// `recall`, `f1`), for gauges and reports.
    pub fn rates(&self) -> [(&'static str, &Estimated); 5] {
        let [a, b, c, d, e] = Self::RATES;
        [
            (a, &self.roc_auc),
            (b, &self.accuracy),
            (c, &self.precision),
            (d, &self.recall),
            (e, &self.f1),
        ]
    }
}

fn check_len(what: &'static str, n: usize) -> Result<()> {
    if n == 0 || n > MAX_ROWS {
        return Err(Error::invalid(
            what,
            format!("{n} rows"),
            format!("from 1 to {MAX_ROWS} rows"),
        ));
    }
    Ok(())
}

fn check_same_len(
    left: &'static str,
    left_len: usize,
    right: &'static str,
    right_len: usize,
) -> Result<()> {
    if left_len != right_len {
        return Err(Error::LengthMismatch {
            left,
            left_len,
            right,
            right_len,
        });
    }
    Ok(())
}

fn check_scores(field: &str, scores: &[f64]) -> Result<()> {
    for (i, s) in scores.iter().enumerate() {
        if !(0.0..=1.0).contains(s) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                s,
                "a probability in [0, 1] (a model fed a missing value says NaN: such a row has \
                 no estimate; drop it and count it)",
            ));
        }
    }
    Ok(())
}

fn check_binary(field: &str, values: &[f64]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if *v != 0.0 && *v != 1.0 {
            return Err(Error::invalid(format!("{field}[{i}]"), v, "0 or 1"));
        }
    }
    Ok(())
}

/// The predicted labels: given, or `score >= threshold`.
fn predicted(scores: &[f64], predictions: Option<&[f64]>, threshold: f64) -> Vec<bool> {
    match predictions {
        Some(p) => p.iter().map(|v| *v == 1.0).collect(),
        None => scores.iter().map(|s| *s >= threshold).collect(),
    }
}

/// Population standard deviation of `k` copies of `high` among `n` values, the others 0.
fn two_point_std(k: usize, n: usize, high: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let mean = high * k as f64 / n as f64;
    let var = (k as f64 * (high - mean).powi(2) + (n - k) as f64 * mean * mean) / n as f64;
    Some(var.sqrt())
}

/// NannyML's `auroc_sampling_error_components`: sorted by score (ties in row order), the
/// number of negatives below each positive, over the negatives, has a standard deviation; the
/// fraction is the share of positives (the classes swapped first when positives are the
/// majority). Like NannyML, the positives are read from the ranks above 0.
fn auc_component(scores: &[f64], labels: &[f64]) -> Option<ErrorComponent> {
    let n = scores.len();
    let flip = labels.iter().sum::<f64>() / n as f64 > 0.5;
    let (s, y): (Vec<f64>, Vec<f64>) = if flip {
        (
            scores.iter().map(|s| 1.0 - s).collect(),
            labels.iter().map(|y| (y - 1.0).abs()).collect(),
        )
    } else {
        (scores.to_vec(), labels.to_vec())
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| s[*a].total_cmp(&s[*b]));
    let mut ser = Vec::new();
    for (rank, &row) in order.iter().enumerate() {
        if y[row] == 1.0 && rank > 0 {
            ser.push((rank - ser.len()) as f64);
        }
    }
    let n_pos = y.iter().sum::<f64>();
    let n_neg = n as f64 - n_pos;
    if ser.is_empty() || n_neg == 0.0 {
        return None;
    }
    let values: Vec<f64> = ser.iter().map(|v| v / n_neg).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    Some(ErrorComponent {
        std: var.sqrt(),
        fraction: n_pos / n as f64,
    })
}

impl Cbpe {
    /// Fits the estimator on a labeled reference: the model's `scores` (probabilities in
    /// [0, 1]), the true `labels` (0 or 1), the predicted labels (`predictions`, or `None` for
    /// `score >= threshold`), and how to calibrate. Errors name the bad row: a score outside
    /// [0, 1] or NaN, a label or prediction that is not 0 or 1, lengths that differ, an empty
    /// reference; a calibration that cannot be fitted (one class only) says so.
    pub fn fit(
        scores: &[f64],
        labels: &[f64],
        predictions: Option<&[f64]>,
        threshold: f64,
        calibration: CbpeCalibration,
    ) -> Result<Cbpe> {
        check_len("reference", scores.len())?;
        check_same_len("scores", scores.len(), "labels", labels.len())?;
        if let Some(p) = predictions {
            check_same_len("scores", scores.len(), "predictions", p.len())?;
            check_binary("predictions", p)?;
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::invalid(
                "threshold",
                threshold,
                "a probability in [0, 1]",
            ));
        }
        check_scores("scores", scores)?;
        check_binary("labels", labels)?;
        let calibration = match calibration {
            CbpeCalibration::Isotonic => Some(Calibration::fit(
                CalibrationMethod::Isotonic,
                scores,
                labels,
                None,
            )?),
            CbpeCalibration::Platt => Some(Calibration::fit(
                CalibrationMethod::Platt,
                scores,
                labels,
                None,
            )?),
            CbpeCalibration::Given(c) => {
                c.validate()?;
                Some(c)
            }
            CbpeCalibration::None => None,
        };
        let pred = predicted(scores, predictions, threshold);
        let n = scores.len();
        let (mut tp, mut fp, mut fn_, mut tn) = (0usize, 0usize, 0usize, 0usize);
        for (p, y) in pred.iter().zip(labels) {
            match (*p, *y == 1.0) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        let component = |k: usize, of: usize, high: f64, fraction: f64| {
            two_point_std(k, of, high)
                .filter(|s| s.is_finite())
                .map(|std| ErrorComponent { std, fraction })
        };
        let relevant = tp + fp + fn_;
        let f1 = if relevant == 0 {
            None
        } else {
            let factor = relevant as f64 / ((fn_ + fp) as f64 * 0.5 + tp as f64);
            component(tp, relevant, factor, relevant as f64 / n as f64)
        };
        let sampling_errors = SamplingErrors {
            roc_auc: auc_component(scores, labels),
            accuracy: component(tp + tn, n, 1.0, 1.0),
            precision: component(tp, tp + fp, 1.0, (tp + fp) as f64 / n as f64),
            recall: component(tp, tp + fn_, 1.0, (tp + fn_) as f64 / n as f64),
            f1,
            true_positive: two_point_std(tp, n, 1.0),
            false_positive: two_point_std(fp, n, 1.0),
            false_negative: two_point_std(fn_, n, 1.0),
            true_negative: two_point_std(tn, n, 1.0),
        };
        let mut cbpe = Cbpe {
            calibration,
            threshold,
            reference_rows: n,
            sampling_errors,
            reference: ReferenceRates::default(),
        };
        let on_reference = cbpe.estimate(scores, predictions)?;
        cbpe.reference = ReferenceRates {
            roc_auc: on_reference.roc_auc.value,
            accuracy: on_reference.accuracy.value,
            precision: on_reference.precision.value,
            recall: on_reference.recall.value,
            f1: on_reference.f1.value,
        };
        Ok(cbpe)
    }

    /// Fits the estimator for `predictor` on labeled rows it did not train on (`holdout`: the
    /// trainer passes its validation rows), at the predictor's own threshold. Errors as [`Cbpe::fit`], and an unlabeled
    /// holdout or a row the model scores NaN (a missing feature) names the row.
    pub fn fit_on(
        predictor: &dyn Predictor,
        holdout: &Dataset,
        calibration: CbpeCalibration,
    ) -> Result<Cbpe> {
        let (scores, labels) = scored(predictor, holdout)?;
        Cbpe::fit(
            &scores,
            &labels,
            None,
            f64::from(predictor.threshold()),
            calibration,
        )
    }

    /// Checks an estimator read from a file: its calibration, a threshold in [0, 1], finite
    /// non-negative components, at least one reference row.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.calibration {
            c.validate()?;
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::invalid(
                "cbpe.threshold",
                self.threshold,
                "a probability in [0, 1]",
            ));
        }
        check_len("cbpe.reference_rows", self.reference_rows)?;
        let e = &self.sampling_errors;
        let components = [
            ("roc_auc", e.roc_auc),
            ("accuracy", e.accuracy),
            ("precision", e.precision),
            ("recall", e.recall),
            ("f1", e.f1),
        ];
        // A 0/1 indicator (and the ROC AUC's ranks over the negatives, in [0, 1]) has a
        // standard deviation of at most 1/2; F1's row values are 0 or a factor of at most 2.
        for (name, c) in components {
            if let Some(c) = c {
                let most = if name == "f1" { 1.0 } else { 0.5 };
                let fraction_ok = if name == "accuracy" {
                    c.fraction == 1.0
                } else {
                    c.fraction > 0.0 && c.fraction <= 1.0
                };
                if !(c.std >= 0.0 && c.std <= most && fraction_ok) {
                    return Err(Error::invalid(
                        format!("cbpe.sampling_errors.{name}"),
                        format!("std {} fraction {}", c.std, c.fraction),
                        format!(
                            "a std in [0, {most}] and a fraction {}",
                            if name == "accuracy" {
                                "of 1"
                            } else {
                                "in (0, 1]"
                            }
                        ),
                    ));
                }
            }
        }
        let r = &self.reference;
        for (name, v) in [
            ("roc_auc", r.roc_auc),
            ("accuracy", r.accuracy),
            ("precision", r.precision),
            ("recall", r.recall),
            ("f1", r.f1),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::invalid(
                        format!("cbpe.reference.{name}"),
                        v,
                        "a rate in [0, 1]",
                    ));
                }
            }
        }
        let counts = [
            ("true_positive", e.true_positive),
            ("false_positive", e.false_positive),
            ("false_negative", e.false_negative),
            ("true_negative", e.true_negative),
        ];
        for (name, s) in counts {
            if let Some(s) = s {
                if !(0.0..=0.5).contains(&s) {
                    return Err(Error::invalid(
                        format!("cbpe.sampling_errors.{name}"),
                        s,
                        "the std of a 0/1 indicator, in [0, 0.5]",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The calibrated probability of one score (NaN for a NaN score, or from a calibration
    /// map no check passed).
    pub fn probability(&self, score: f64) -> f64 {
        match &self.calibration {
            Some(c) => c.apply(score),
            None => score,
        }
    }

    /// Estimates the performance of a window of unlabeled `scores` (with their predicted labels,
    /// or `None` for `score >= threshold`). Errors: an estimator that fails [`Cbpe::validate`],
    /// an empty window, a score outside [0, 1] or NaN (named by row), a prediction that is not
    /// 0 or 1, lengths that differ.
    pub fn estimate(
        &self,
        scores: &[f64],
        predictions: Option<&[f64]>,
    ) -> Result<PerformanceEstimate> {
        // Its fields are public and serde reads them: an estimator no check passed (a map
        // of mismatched lengths, a NaN threshold) is an error here, never a panic or a number.
        self.validate()?;
        check_len("window", scores.len())?;
        if let Some(p) = predictions {
            check_same_len("scores", scores.len(), "predictions", p.len())?;
            check_binary("predictions", p)?;
        }
        check_scores("scores", scores)?;
        let n = scores.len();
        let pred = predicted(scores, predictions, self.threshold);
        let probs: Vec<f64> = scores.iter().map(|s| self.probability(*s)).collect();
        let (mut tp, mut fp, mut fn_, mut tn) = (0.0, 0.0, 0.0, 0.0);
        for (p, positive) in probs.iter().zip(&pred) {
            if *positive {
                tp += p;
                fp += 1.0 - p;
            } else {
                fn_ += p;
                tn += 1.0 - p;
            }
        }
        let ratio = |num: f64, den: f64| (den != 0.0).then(|| num / den);
        let e = &self.sampling_errors;
        let rate_error = |c: Option<ErrorComponent>| c.and_then(|c| c.rate_error(n));
        let count_error = |s: Option<f64>| s.map(|s| s / (n as f64).sqrt() * n as f64);
        let unit = (0.0, 1.0);
        let count = (0.0, f64::INFINITY);
        let r = &self.reference;
        Ok(PerformanceEstimate {
            rows: n,
            roc_auc: Estimated::new(roc_auc_of(scores, &probs), rate_error(e.roc_auc), unit)
                .with_reference(r.roc_auc),
            accuracy: Estimated::new(Some((tp + tn) / n as f64), rate_error(e.accuracy), unit)
                .with_reference(r.accuracy),
            precision: Estimated::new(ratio(tp, tp + fp), rate_error(e.precision), unit)
                .with_reference(r.precision),
            recall: Estimated::new(ratio(tp, tp + fn_), rate_error(e.recall), unit)
                .with_reference(r.recall),
            f1: Estimated::new(ratio(tp, tp + 0.5 * (fp + fn_)), rate_error(e.f1), unit)
                .with_reference(r.f1),
            true_positive: Estimated::new(Some(tp), count_error(e.true_positive), count),
            false_positive: Estimated::new(Some(fp), count_error(e.false_positive), count),
            false_negative: Estimated::new(Some(fn_), count_error(e.false_negative), count),
            true_negative: Estimated::new(Some(tn), count_error(e.true_negative), count),
        })
    }
}

/// numpy's `round(x, 5)`: `rint(x · 1e5) / 1e5`, ties to even.
fn round5(x: f64) -> f64 {
    (x * 1e5).round_ties_even() / 1e5
}

/// NannyML's `estimate_roc_auc`: rows by the model's score, highest first; the calibrated
/// probabilities summed are the expected true positives, the rest the false positives; both
/// rounded to 5 decimals; the area by the trapezoid rule. `None` when the expected positives
/// or negatives are 0. Errors: lengths that differ, a NaN score, a probability outside
/// [0, 1] or NaN (named by row).
///
/// ```
/// use mlops_core::cbpe::estimate_roc_auc;
/// // Calibrated probabilities that rank like the scores: an expected AUC near the truth.
/// let p = [0.1, 0.2, 0.8, 0.9];
/// let auc = estimate_roc_auc(&p, &p)?.unwrap();
/// assert!((auc - 0.875).abs() < 1e-12, "{auc}");
/// assert!(estimate_roc_auc(&[0.9, 0.1], &[2.0, -1.0]).is_err());
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn estimate_roc_auc(scores: &[f64], probabilities: &[f64]) -> Result<Option<f64>> {
    check_same_len("scores", scores.len(), "probabilities", probabilities.len())?;
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::invalid(
            format!("scores[{i}]"),
            scores[i],
            "a score, not NaN",
        ));
    }
    check_scores("probabilities", probabilities)?;
    Ok(roc_auc_of(scores, probabilities))
}

/// [`estimate_roc_auc`] on checked input.
fn roc_auc_of(scores: &[f64], probabilities: &[f64]) -> Option<f64> {
    let n = scores.len();
    if n == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let mut tps = Vec::with_capacity(n + 1);
    let mut fps = Vec::with_capacity(n + 1);
    tps.push(0.0);
    fps.push(0.0);
    let mut cum = 0.0;
    for (i, &row) in order.iter().enumerate() {
        cum += probabilities[row];
        tps.push(round5(cum));
        fps.push(round5(1.0 + i as f64 - cum));
    }
    let (tp_total, fp_total) = (tps[n], fps[n]);
    if tp_total == 0.0 || fp_total == 0.0 || !tp_total.is_finite() || !fp_total.is_finite() {
        return None;
    }
    // scikit-learn's `auc(fpr, tpr)`: numpy's trapezoid over the normalized curve.
    let tpr: Vec<f64> = tps.iter().map(|t| t / tp_total).collect();
    let fpr: Vec<f64> = fps.iter().map(|f| f / fp_total).collect();
    let mut area = 0.0;
    for i in 0..n {
        area += (fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2.0;
    }
    // The trapezoids of rounded sums can pass 1 by an ulp: an AUC is in [0, 1].
    area.is_finite().then_some(area.clamp(0.0, 1.0))
}

/// The model's scores and the labels of `data`, as `f64`.
fn scored(predictor: &dyn Predictor, data: &Dataset) -> Result<(Vec<f64>, Vec<f64>)> {
    let labels = data.labels().ok_or_else(|| {
        Error::invalid(
            "labels",
            "none",
            "labeled rows the model did not train on, to fit or check the calibration",
        )
    })?;
    let scores = predictor.predict_proba(data.features())?;
    Ok((
        scores.iter().map(|&v| f64::from(v)).collect(),
        labels.iter().map(|&v| f64::from(v)).collect(),
    ))
}

/// How well a model's scores read as probabilities, before and after its calibration, on a
/// labeled set it was not calibrated on: the training report's calibration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Rows the calibration was checked on.
    pub rows: usize,
    /// The reliability curve of the raw scores (10 uniform bins).
    pub raw: ReliabilityCurve,
    /// Expected calibration error of the raw scores.
    pub raw_ece: f64,
    /// The reliability curve of the calibrated probabilities.
    pub calibrated: ReliabilityCurve,
    /// Expected calibration error of the calibrated probabilities.
    pub calibrated_ece: f64,
}

impl CalibrationReport {
    /// Scores `data` with `predictor`, calibrates with `cbpe`'s map and measures both
    /// reliability curves (10 uniform bins) and their expected calibration errors.
    ///
    /// ```
    /// use mlops_core::cbpe::{CalibrationReport, Cbpe, CbpeCalibration};
    /// use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, MlpModel};
    /// use mlops_core::Dataset;
    /// use ndarray::{array, Array1, Array2};
    ///
    /// // p = sigmoid(4x): too confident for labels drawn at sigmoid(x).
    /// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
    /// let model = MlpModel::new(&ModelArtifact::new(spec, vec![(array![[4.0_f32]], array![0.0_f32])])?)?;
    /// let x = Array2::from_shape_fn((4000, 1), |(i, _)| (i as f32 / 4000.0) * 8.0 - 4.0);
    /// let y = Array1::from_shape_fn(4000, |i| {
    ///     let p = 1.0 / (1.0 + (-x[[i, 0]]).exp());
    ///     f32::from(((i * 7919) % 1000) as f32 / 1000.0 < p)
    /// });
    /// let data = Dataset::new(x, vec!["x".into()])?.with_labels(y, "y")?;
    /// let cbpe = Cbpe::fit_on(&model, &data, CbpeCalibration::Isotonic)?;
    /// let report = CalibrationReport::measure(&model, &cbpe, &data)?;
    /// assert!(report.calibrated_ece < report.raw_ece);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn measure(predictor: &dyn Predictor, cbpe: &Cbpe, data: &Dataset) -> Result<Self> {
        let (scores, labels) = scored(predictor, data)?;
        check_len("calibration check rows", scores.len())?;
        check_scores("scores", &scores)?;
        let probabilities: Vec<f64> = scores.iter().map(|s| cbpe.probability(*s)).collect();
        let raw = ReliabilityCurve::new(&scores, &labels, 10, BinStrategy::Uniform)?;
        let calibrated = ReliabilityCurve::new(&probabilities, &labels, 10, BinStrategy::Uniform)?;
        Ok(CalibrationReport {
            rows: scores.len(),
            raw_ece: raw.expected_calibration_error(),
            calibrated_ece: calibrated.expected_calibration_error(),
            raw,
            calibrated,
        })
    }
}
