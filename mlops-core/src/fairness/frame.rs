//! Per-group metrics (Fairlearn's `MetricFrame`): the data, the counts, the rates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::groups::SensitiveGroups;
use crate::error::{Error, Result};
use crate::metrics::{ConfusionMatrix, ScoredSamples};

/// Labels, decisions, optional scores and weights of a binary classifier, with each row's
/// sensitive group: the input of every fairness measure. Checked once on construction.
///
/// ```
/// use mlops_core::fairness::{FairnessData, SensitiveGroups};
///
/// let groups = SensitiveGroups::new(&[("sex", &["F", "F", "M", "M"][..])])?;
/// let data = FairnessData::from_scores(&[1.0, 0.0, 1.0, 0.0], &[0.9, 0.7, 0.4, 0.1], 0.5, None, groups)?;
/// assert_eq!(data.predictions(), &[true, true, false, false]);
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FairnessData {
    labels: Vec<bool>,
    predictions: Vec<bool>,
    scores: Option<Vec<f64>>,
    weights: Option<Vec<f64>>,
    groups: SensitiveGroups,
}

impl FairnessData {
    /// From labels and decisions (both 0 or 1), as Fairlearn's `y_true` and `y_pred`.
    pub fn from_predictions(
        labels: &[f64],
        predictions: &[f64],
        weights: Option<&[f64]>,
        groups: SensitiveGroups,
    ) -> Result<Self> {
        let labels = binary("y_true", labels)?;
        let predictions = binary("y_pred", predictions)?;
        Self::build(labels, predictions, None, weights, groups)
    }

    /// From labels and scores: a row is predicted positive when `score >= threshold` (the
    /// convention of [`ScoredSamples::confusion`]); the scores also give each group's ROC AUC.
    pub fn from_scores(
        labels: &[f64],
        scores: &[f64],
        threshold: f64,
        weights: Option<&[f64]>,
        groups: SensitiveGroups,
    ) -> Result<Self> {
        if !threshold.is_finite() {
            return Err(Error::invalid("threshold", threshold, "a finite number"));
        }
        let labels = binary("y_true", labels)?;
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::invalid(
                format!("y_score[{i}]"),
                scores[i],
                "a finite score (a model fed a missing value says NaN: drop or impute the row first)",
            ));
        }
        let predictions = scores.iter().map(|&s| s >= threshold).collect();
        Self::build(labels, predictions, Some(scores.to_vec()), weights, groups)
    }

    fn build(
        labels: Vec<bool>,
        predictions: Vec<bool>,
        scores: Option<Vec<f64>>,
        weights: Option<&[f64]>,
        groups: SensitiveGroups,
    ) -> Result<Self> {
        let n = labels.len();
        for (name, len) in [
            ("y_pred", predictions.len()),
            ("sensitive_features", groups.len()),
        ] {
            if len != n {
                return Err(Error::LengthMismatch {
                    left: "y_true",
                    left_len: n,
                    right: name,
                    right_len: len,
                });
            }
        }
        if let Some(s) = &scores {
            if s.len() != n {
                return Err(Error::LengthMismatch {
                    left: "y_true",
                    left_len: n,
                    right: "y_score",
                    right_len: s.len(),
                });
            }
        }
        let weights = match weights {
            None => None,
            Some(w) => {
                if w.len() != n {
                    return Err(Error::LengthMismatch {
                        left: "y_true",
                        left_len: n,
                        right: "sample_weight",
                        right_len: w.len(),
                    });
                }
                if let Some(i) = w.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
                    return Err(Error::invalid(
                        format!("sample_weight[{i}]"),
                        w[i],
                        "a finite number >= 0",
                    ));
                }
                let total = w.iter().sum::<f64>();
                if !(total > 0.0 && total.is_finite()) {
                    return Err(Error::invalid(
                        "sample_weight",
                        format!("a total of {total}"),
                        "a positive, finite total weight (rescale weights near f64::MAX)",
                    ));
                }
                Some(w.to_vec())
            }
        };
        Ok(FairnessData {
            labels,
            predictions,
            scores,
            weights,
            groups,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: construction refuses empty input.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels.
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// The decisions.
    pub fn predictions(&self) -> &[bool] {
        &self.predictions
    }

    /// The scores, when built from scores.
    pub fn scores(&self) -> Option<&[f64]> {
        self.scores.as_deref()
    }

    /// The sample weights, if any.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }

    /// The groups.
    pub fn groups(&self) -> &SensitiveGroups {
        &self.groups
    }

    pub(crate) fn weight(&self, i: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }

    /// The counts of every group, in group order.
    pub(crate) fn cells(&self) -> Vec<Cells> {
        let mut cells = vec![Cells::default(); self.groups.group_count()];
        for i in 0..self.len() {
            cells[self.groups.group_of(i)].add(self.labels[i], self.predictions[i], self.weight(i));
        }
        cells
    }
}

fn binary(name: &str, values: &[f64]) -> Result<Vec<bool>> {
    if values.is_empty() {
        return Err(Error::invalid(name, "[]", "at least one row"));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| match v {
            0.0 => Ok(false),
            1.0 => Ok(true),
            _ => Err(Error::invalid(format!("{name}[{i}]"), v, "0 or 1")),
        })
        .collect()
}

/// One group's weighted confusion counts and its rows (rows of weight zero are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Cells {
    pub cm: Counts,
    pub rows: usize,
    pub positives: usize,
    pub negatives: usize,
}

/// Weighted tp, fp, tn, fn.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub tp: f64,
    pub fp: f64,
    pub tn: f64,
    pub fn_: f64,
}

impl Cells {
    pub fn add(&mut self, label: bool, predicted: bool, w: f64) {
        match (label, predicted) {
            (true, true) => self.cm.tp += w,
            (false, true) => self.cm.fp += w,
            (false, false) => self.cm.tn += w,
            (true, false) => self.cm.fn_ += w,
        }
        if w > 0.0 {
            self.rows += 1;
            if label {
                self.positives += 1;
            } else {
                self.negatives += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &Cells) {
        self.cm.tp += other.cm.tp;
        self.cm.fp += other.cm.fp;
        self.cm.tn += other.cm.tn;
        self.cm.fn_ += other.cm.fn_;
        self.rows += other.rows;
        self.positives += other.positives;
        self.negatives += other.negatives;
    }

    pub fn confusion(&self) -> ConfusionMatrix {
        ConfusionMatrix {
            tp: self.cm.tp,
            fp: self.cm.fp,
            tn: self.cm.tn,
            fn_: self.cm.fn_,
        }
    }

    /// The rows a rate's denominator counts (the sample size that makes it trustworthy).
    pub fn support(&self, metric: GroupMetric) -> usize {
        match metric {
            GroupMetric::TruePositiveRate => self.positives,
            GroupMetric::FalsePositiveRate => self.negatives,
            _ => self.rows,
        }
    }

    /// `metric` from the counts, or why it is undefined. ROC AUC is not a count rate.
    pub fn rate(
        &self,
        metric: GroupMetric,
        zero_when_undefined: bool,
    ) -> std::result::Result<f64, &'static str> {
        let c = &self.cm;
        let (num, den, why) = match metric {
            GroupMetric::SelectionRate => (
                c.tp + c.fp,
                c.tp + c.fp + c.tn + c.fn_,
                "no rows of positive weight",
            ),
            GroupMetric::TruePositiveRate => (c.tp, c.tp + c.fn_, "no positive labels"),
            GroupMetric::FalsePositiveRate => (c.fp, c.fp + c.tn, "no negative labels"),
            GroupMetric::Precision => (c.tp, c.tp + c.fp, "no predicted positives"),
            GroupMetric::Accuracy => (
                c.tp + c.tn,
                c.tp + c.fp + c.tn + c.fn_,
                "no rows of positive weight",
            ),
            GroupMetric::RocAuc => return Err("ROC AUC needs scores"),
        };
        if den > 0.0 {
            Ok(num / den)
        } else if zero_when_undefined {
            Ok(0.0)
        } else {
            Err(why)
        }
    }
}

/// A metric computed per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMetric {
    /// Weighted share of rows predicted positive (Fairlearn's `selection_rate`).
    SelectionRate,
    /// tp / (tp + fn), undefined for a group without positive labels.
    TruePositiveRate,
    /// fp / (fp + tn), undefined for a group without negative labels.
    FalsePositiveRate,
    /// tp / (tp + fp), undefined for a group without predicted positives.
    Precision,
    /// (tp + tn) / total.
    Accuracy,
    /// ROC AUC of the scores, undefined with one class in the group or without scores.
    RocAuc,
}

impl GroupMetric {
    /// Every metric, in the order of [`MetricFrame`]'s columns.
    pub const ALL: [GroupMetric; 6] = [
        GroupMetric::SelectionRate,
        GroupMetric::TruePositiveRate,
        GroupMetric::FalsePositiveRate,
        GroupMetric::Precision,
        GroupMetric::Accuracy,
        GroupMetric::RocAuc,
    ];

    /// The snake_case name (Fairlearn's and scikit-learn's function names without `_score`).
    pub fn name(self) -> &'static str {
        match self {
            GroupMetric::SelectionRate => "selection_rate",
            GroupMetric::TruePositiveRate => "true_positive_rate",
            GroupMetric::FalsePositiveRate => "false_positive_rate",
            GroupMetric::Precision => "precision",
            GroupMetric::Accuracy => "accuracy",
            GroupMetric::RocAuc => "roc_auc",
        }
    }
}

impl fmt::Display for GroupMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GroupMetric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        crate::metrics::by_name(s, &GroupMetric::ALL, GroupMetric::name)
    }
}

/// One group's metrics (or the overall ones). An undefined metric is `None`, and `undefined`
/// says why, by metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// The group for a person (`F`, or `sex=F, age=old` with several columns); `overall` for
    /// the whole data.
    pub group: String,
    /// The group's values, one per sensitive column (empty for `overall`).
    pub key: Vec<String>,
    /// Rows of positive weight.
    pub rows: usize,
    /// Rows of positive weight with label 1.
    pub positives: usize,
    /// Rows of positive weight with label 0.
    pub negatives: usize,
    /// Weighted confusion counts.
    pub confusion: ConfusionMatrix,
    /// Selection rate.
    pub selection_rate: Option<f64>,
    /// True positive rate (recall).
    pub true_positive_rate: Option<f64>,
    /// False positive rate.
    pub false_positive_rate: Option<f64>,
    /// Precision.
    pub precision: Option<f64>,
    /// Accuracy.
    pub accuracy: Option<f64>,
    /// ROC AUC of the scores.
    pub roc_auc: Option<f64>,
    /// Why each `None` metric is undefined, by name.
    pub undefined: std::collections::BTreeMap<String, String>,
}

impl GroupMetrics {
    /// The value of `metric`, `None` when undefined.
    pub fn get(&self, metric: GroupMetric) -> Option<f64> {
        match metric {
            GroupMetric::SelectionRate => self.selection_rate,
            GroupMetric::TruePositiveRate => self.true_positive_rate,
            GroupMetric::FalsePositiveRate => self.false_positive_rate,
            GroupMetric::Precision => self.precision,
            GroupMetric::Accuracy => self.accuracy,
            GroupMetric::RocAuc => self.roc_auc,
        }
    }
}

/// Metrics by group and overall, Fairlearn's `MetricFrame` for the binary metrics.
///
/// By default a rate whose denominator is empty (the true positive rate of a group without
/// positive labels) is undefined, and every disparity that needs it says so. With
/// `zero_when_undefined` it is 0, which is what Fairlearn (through scikit-learn's
/// `confusion_matrix(normalize="true")`) reports: use it only to reproduce Fairlearn's numbers.
///
/// ```
/// use mlops_core::fairness::{FairnessData, GroupMetric, MetricFrame, SensitiveGroups};
///
/// let groups = SensitiveGroups::new(&[("g", &["a", "a", "b", "b"][..])])?;
/// let data = FairnessData::from_predictions(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 1.0, 0.0], None, groups)?;
/// let frame = MetricFrame::new(&data, false);
/// assert_eq!(frame.by_group[0].true_positive_rate, Some(1.0));
/// assert_eq!(frame.by_group[1].true_positive_rate, None); // group b has no positive label
/// assert_eq!(frame.by_group[1].undefined["true_positive_rate"], "no positive labels");
/// assert_eq!(frame.overall.get(GroupMetric::SelectionRate), Some(0.5));
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricFrame {
    /// One entry per group, in group order.
    pub by_group: Vec<GroupMetrics>,
    /// The whole data.
    pub overall: GroupMetrics,
    /// Built with `zero_when_undefined` (Fairlearn's numbers).
    #[serde(skip)]
    fairlearn: bool,
}

impl MetricFrame {
    /// Every metric for every group and overall.
    pub fn new(data: &FairnessData, zero_when_undefined: bool) -> Self {
        let cells = data.cells();
        let groups = data.groups();
        let mut overall_cells = Cells::default();
        for c in &cells {
            overall_cells.merge(c);
        }
        let aucs = group_aucs(data);
        let by_group = cells
            .iter()
            .enumerate()
            .map(|(g, c)| {
                metrics_of(
                    groups.name(g),
                    groups.key(g).to_vec(),
                    c,
                    aucs.as_ref().map(|a| a.per_group[g].clone()),
                    zero_when_undefined,
                )
            })
            .collect();
        let overall = metrics_of(
            "overall".into(),
            Vec::new(),
            &overall_cells,
            aucs.map(|a| a.overall),
            zero_when_undefined,
        );
        MetricFrame {
            by_group,
            overall,
            fairlearn: zero_when_undefined,
        }
    }

    /// `max − min` of `metric` over the groups with rows of positive weight (`between_groups`), or the largest `|group −
    /// overall|` (`to_overall`): Fairlearn's `MetricFrame.difference`.
    pub fn difference(&self, metric: GroupMetric, method: super::Method) -> Result<f64> {
        let values = self.values(metric)?;
        let overall = self.overall_value(metric)?;
        Ok(super::disparity::difference(&values, overall, method).value)
    }

    /// `min / max` of `metric` over groups (`between_groups`), or the smallest group-to-overall
    /// ratio written below 1 (`to_overall`): Fairlearn's `MetricFrame.ratio`.
    pub fn ratio(&self, metric: GroupMetric, method: super::Method) -> Result<f64> {
        let values = self.values(metric)?;
        let overall = self.overall_value(metric)?;
        super::disparity::ratio(&values, overall, method, metric, self.fairlearn).map(|s| s.value)
    }

    /// The smallest value of `metric` over groups.
    pub fn group_min(&self, metric: GroupMetric) -> Result<f64> {
        Ok(self
            .values(metric)?
            .into_iter()
            .fold(f64::INFINITY, f64::min))
    }

    /// The largest value of `metric` over groups.
    pub fn group_max(&self, metric: GroupMetric) -> Result<f64> {
        Ok(self
            .values(metric)?
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max))
    }

    /// The values of the groups that take part (rows of positive weight), at least two.
    fn values(&self, metric: GroupMetric) -> Result<Vec<f64>> {
        let values = self
            .by_group
            .iter()
            .filter(|g| g.rows > 0)
            .map(|g| g.get(metric).ok_or_else(|| undefined(metric, g)))
            .collect::<Result<Vec<f64>>>()?;
        if values.len() < 2 {
            return Err(Error::UndefinedMetric {
                metric: format!("{metric} across groups"),
                reason: format!(
                    "{} group(s) with rows of positive weight: nothing to compare",
                    values.len()
                ),
            });
        }
        Ok(values)
    }

    fn overall_value(&self, metric: GroupMetric) -> Result<f64> {
        self.overall
            .get(metric)
            .ok_or_else(|| undefined(metric, &self.overall))
    }
}

fn undefined(metric: GroupMetric, g: &GroupMetrics) -> Error {
    Error::UndefinedMetric {
        metric: format!("{metric} of group {}", g.group),
        reason: g
            .undefined
            .get(metric.name())
            .cloned()
            .unwrap_or_else(|| "undefined".into()),
    }
}

struct GroupAucs {
    per_group: Vec<std::result::Result<f64, String>>,
    overall: std::result::Result<f64, String>,
}

fn group_aucs(data: &FairnessData) -> Option<GroupAucs> {
    let scores = data.scores()?;
    let groups = data.groups();
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); groups.group_count()];
    for i in 0..data.len() {
        rows[groups.group_of(i)].push(i);
    }
    let auc_of = |idx: &mut dyn Iterator<Item = usize>| -> std::result::Result<f64, String> {
        let mut labels = Vec::new();
        let mut s = Vec::new();
        let mut w = Vec::new();
        for i in idx {
            labels.push(if data.labels()[i] { 1.0 } else { 0.0 });
            s.push(scores[i]);
            w.push(data.weight(i));
        }
        let weights = data.weights().map(|_| w.as_slice());
        ScoredSamples::new(&labels, &s, weights)
            .and_then(|x| x.roc_auc())
            .map_err(|e| match e {
                Error::UndefinedMetric { reason, .. } => reason,
                other => other.to_string(),
            })
    };
    Some(GroupAucs {
        per_group: rows
            .iter()
            .map(|r| auc_of(&mut r.iter().copied()))
            .collect(),
        overall: auc_of(&mut (0..data.len())),
    })
}

fn metrics_of(
    group: String,
    key: Vec<String>,
    c: &Cells,
    auc: Option<std::result::Result<f64, String>>,
    zero: bool,
) -> GroupMetrics {
    let mut undefined = std::collections::BTreeMap::new();
    // A group without rows of positive weight has no rate of any kind, in either mode.
    let zero = zero && c.rows > 0;
    let mut rate = |m: GroupMetric| match c.rate(m, zero) {
        Ok(v) => Some(v),
        Err(why) => {
            undefined.insert(m.name().to_string(), why.to_string());
            None
        }
    };
    let selection_rate = rate(GroupMetric::SelectionRate);
    let true_positive_rate = rate(GroupMetric::TruePositiveRate);
    let false_positive_rate = rate(GroupMetric::FalsePositiveRate);
    let precision = rate(GroupMetric::Precision);
    let accuracy = rate(GroupMetric::Accuracy);
    let roc_auc = match auc {
        Some(Ok(v)) => Some(v),
        Some(Err(why)) => {
            undefined.insert("roc_auc".into(), why);
            None
        }
        None => {
            undefined.insert("roc_auc".into(), "no scores (built from decisions)".into());
            None
        }
    };
    GroupMetrics {
        group,
        key,
        rows: c.rows,
        positives: c.positives,
        negatives: c.negatives,
        confusion: c.confusion(),
        selection_rate,
        true_positive_rate,
        false_positive_rate,
        precision,
        accuracy,
        roc_auc,
        undefined,
    }
}
