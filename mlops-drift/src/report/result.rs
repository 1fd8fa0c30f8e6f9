//! What a comparison returns: per-test outcomes, per-column drift with its
//! [`ColumnStatus`], and the dataset decision with its [`Verdict`].

use std::collections::BTreeMap;
use std::fmt;

use mlops_core::ColumnKind;
use serde::{Deserialize, Serialize};

use super::config::DriftTest;
use crate::correction::Correction;

/// One test on one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// The test.
    pub test: DriftTest,
    /// Its statistic (the distance, for distance tests).
    pub statistic: f64,
    /// Its p-value, for p-value tests.
    pub p_value: Option<f64>,
    /// The p-value after the report's correction.
    pub adjusted_p_value: Option<f64>,
    /// The distance threshold, for distance tests.
    pub threshold: Option<f64>,
    /// Whether this test flags drift (after correction and effect gating).
    pub drifted: bool,
}

/// Missing values of a column on both sides, with the null-rate test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingDrift {
    /// Share missing in the reference.
    pub reference_share: f64,
    /// Share missing in the current batch.
    pub current_share: f64,
    /// One-sided test that the current share is larger.
    pub outcome: TestOutcome,
}

/// Whether a column's values could be tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnStatus {
    /// Its tests ran.
    Tested,
    /// Fewer than [`DriftConfig::min_samples`](super::DriftConfig::min_samples) non-missing values on a side (a 0-row batch, a
    /// column all missing): its values say nothing yet. A rising share of missing values is
    /// still tested and can flag the column.
    InsufficientData,
    /// It cannot be tested at all (absent from the current data, another kind, a test that
    /// does not apply); `error` says why.
    Untestable,
}

impl ColumnStatus {
    /// Every variant, in declaration order.
    pub const ALL: [ColumnStatus; 3] = [
        ColumnStatus::Tested,
        ColumnStatus::InsufficientData,
        ColumnStatus::Untestable,
    ];

    /// The serialized name (`tested`, `insufficient_data`, `untestable`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ColumnStatus::Tested => "tested",
            ColumnStatus::InsufficientData => "insufficient_data",
            ColumnStatus::Untestable => "untestable",
        }
    }
}

/// The dataset verdict. A report never concludes [`Verdict::NoDrift`] from columns it could
/// not test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every selected column was tested and the dataset rules did not fire.
    NoDrift,
    /// The dataset rules fired on the columns that could be decided.
    Drift,
    /// No drift among the columns tested, but some columns could not be tested (listed in
    /// [`DatasetDrift::columns_not_tested`]): nothing is known about them.
    Incomplete,
}

impl Verdict {
    /// Every variant, in declaration order.
    pub const ALL: [Verdict; 3] = [Verdict::NoDrift, Verdict::Drift, Verdict::Incomplete];

    /// `no_drift`, `drift` or `incomplete`. The serialized name, as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::NoDrift => "no_drift",
            Verdict::Drift => "drift",
            Verdict::Incomplete => "incomplete",
        }
    }

    /// The same as [`as_str`](Self::as_str).
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The drift of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// Column name.
    pub column: String,
    /// Numeric or categorical.
    pub kind: ColumnKind,
    /// Non-missing values in the reference and in the current batch.
    pub reference_values: usize,
    /// Non-missing values in the current batch.
    pub current_values: usize,
    /// The tests run, the deciding one first.
    pub tests: Vec<TestOutcome>,
    /// Effect size: KS statistic (numeric) or total variation (categorical).
    pub effect_size: Option<f64>,
    /// Missing-value drift, when either side has missing values.
    pub missing: Option<MissingDrift>,
    /// Whether the column drifted (its deciding test, or a rising share of missing values).
    pub drifted: bool,
    /// Whether its values were tested.
    pub status: ColumnStatus,
    /// Why the column's values were not tested (too few values, absent, wrong kind); the rest
    /// of the report is still produced. `None` exactly when `status` is `Tested`.
    pub error: Option<String>,
    /// What the report did differently for this column (a fallback test, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The KS error bound of the reference: a compact profile keeps a summary of the column
    /// whose ECDF is within this of the full column's, so the KS statistic (the effect size)
    /// is within this of the exact one. 0 for an exact profile.
    #[serde(default)]
    pub reference_ecdf_error: f64,
}

/// A rule of the dataset decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRule {
    /// The observed value (share of drifted columns, mean effect).
    pub observed: f64,
    /// The threshold.
    pub threshold: f64,
    /// Whether the rule fires.
    pub fired: bool,
}

/// The dataset-level decision, with every rule reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDrift {
    /// Drift, no drift, or incomplete (some columns could not be tested and nothing drifted).
    pub verdict: Verdict,
    /// True when the share rule or the mean-effect rule fires (`verdict == Drift`).
    pub drifted: bool,
    /// Columns whose drift was decided: tested, or flagged by their missing values.
    pub columns_tested: usize,
    /// Columns that could not be decided, by name (their entries say why).
    pub columns_not_tested: Vec<String>,
    /// Columns that drifted.
    pub columns_drifted: usize,
    /// Share of drifted columns against `drift_share`.
    pub share_rule: DatasetRule,
    /// The seed's mean-statistic rule, when configured.
    pub mean_effect_rule: Option<DatasetRule>,
    /// The correction applied.
    pub correction: Correction,
    /// How many p-value tests flag drift under each correction, for comparison.
    pub drifted_by_correction: BTreeMap<Correction, usize>,
    /// The largest [`ColumnDrift::reference_ecdf_error`]: every KS statistic (effect size) of
    /// the report is within this of what the full reference would give. 0 for an exact
    /// profile.
    #[serde(default)]
    pub ks_error_bound: f64,
}

/// A drift report: every column, and the dataset decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// One entry per compared column.
    pub columns: Vec<ColumnDrift>,
    /// The decision.
    pub dataset: DatasetDrift,
}

impl DriftReport {
    /// The drifted columns.
    pub fn drifted_columns(&self) -> impl Iterator<Item = &ColumnDrift> {
        self.columns.iter().filter(|c| c.drifted)
    }
}

impl fmt::Display for DriftReport {
    /// The verdict and the rules, then one line per column: its deciding test, statistic,
    /// p-value (adjusted), effect and whether it drifted, or why it was not tested.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.dataset;
        write!(
            f,
            "drift report: {} ({} of {} columns drifted, share {:.2} against {}",
            d.verdict,
            d.columns_drifted,
            d.columns_tested,
            d.share_rule.observed,
            d.share_rule.threshold
        )?;
        if let Some(r) = &d.mean_effect_rule {
            write!(f, "; mean effect {:.4} against {}", r.observed, r.threshold)?;
        }
        write!(f, "; correction {:?})", d.correction)?;
        if !d.columns_not_tested.is_empty() {
            write!(f, "\nnot tested: {}", d.columns_not_tested.join(", "))?;
        }
        if d.ks_error_bound > 0.0 {
            write!(
                f,
                "\nKS statistics within {:.2e} of the full reference's",
                d.ks_error_bound
            )?;
        }
        for c in &self.columns {
            match (c.tests.first(), &c.error) {
                (Some(t), _) => write!(
                    f,
                    "\n  {:<24} {:<12} {:>10.6} p {:>10} effect {:>8} {}",
                    c.column,
                    t.test.to_string(),
                    t.statistic,
                    t.adjusted_p_value
                        .or(t.p_value)
                        .map_or("-".into(), |p| format!("{p:.3e}")),
                    c.effect_size.map_or("-".into(), |e| format!("{e:.4}")),
                    if c.drifted { "DRIFT" } else { "" }
                )?,
                (None, Some(why)) if c.drifted => write!(
                    f,
                    "\n  {:<24} DRIFT (its share of missing values rose); values not tested: {why}",
                    c.column
                )?,
                (None, Some(why)) => write!(f, "\n  {:<24} not tested: {why}", c.column)?,
                (None, None) => write!(f, "\n  {:<24} -", c.column)?,
            }
        }
        Ok(())
    }
}
