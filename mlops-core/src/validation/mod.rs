//! Data validation: checks a [`Dataset`] (optionally against a [`Schema`]) before any work is
//! done with it, and reports every problem found.
//!
//! A [`ValidationSuite`] runs a list of [`Validator`]s; each appends [`Finding`]s to the
//! report, so one bad column never stops the rest of the report. [`ValidationConfig`] builds
//! the built-in suite (its defaults are the seed's checks); a host adds its own validators with
//! [`ValidationSuite::with`].
//!
//! ```
//! use mlops_core::validation::{ValidationConfig, ValidationSuite};
//! use mlops_core::{Dataset, Schema};
//! use ndarray::array;
//!
//! let reference = Dataset::new(array![[0.0_f32, 1.0], [1.0, 2.0], [0.5, 3.0]], vec!["a".into(), "b".into()])?
//!     .with_labels(array![0.0, 1.0, 1.0], "y")?;
//! let schema = Schema::infer(&reference);
//! let current = Dataset::new(array![[f32::NAN, 9.0], [1.0, 9.0]], vec!["a".into(), "b".into()])?
//!     .with_labels(array![0.0, 1.0], "y")?;
//! let config = ValidationConfig { min_rows: 2, min_positives: 1, ..Default::default() };
//! let report = ValidationSuite::from_config(&config)?.run(&current, Some(&schema));
//! assert!(!report.passed());
//! assert!(report.errors().any(|f| f.check == "missing_values" && f.column.as_deref() == Some("a")));
//! assert!(report.findings.iter().any(|f| f.check == "value_range" && f.column.as_deref() == Some("b")));
//! # Ok::<(), mlops_core::Error>(())
//! ```

mod checks;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use checks::{
    ConstantColumns, DuplicateRows, LabelCheck, MinRows, MissingValues, SchemaColumns, ValueRange,
};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::schema::Schema;

/// How serious a finding is: errors fail the report, warnings are reported only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; does not fail validation.
    Warning,
    /// Fails validation.
    Error,
}

impl Severity {
    /// Every variant, in declaration order.
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Error];

    /// The serialized name (`warning`, `error`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The check's name (`min_rows`, `missing_values`, ...).
    pub check: String,
    /// The column concerned, if the check is per column.
    pub column: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// What was observed (numbers stay numbers in JSON).
    pub observed: Value,
    /// What was expected.
    pub expected: Value,
    /// One readable sentence.
    pub message: String,
}

/// Everything a validation run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Rows in the validated dataset.
    pub rows: usize,
    /// Feature columns in the validated dataset.
    pub columns: usize,
    /// Names of the checks that ran.
    pub checks: Vec<String>,
    /// Every finding, in check order.
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    /// True when no finding has error severity.
    pub fn passed(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The error findings.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The warning findings.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }
}

impl fmt::Display for ValidationReport {
    /// A readable table: one line per finding, then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 5]> = self
            .findings
            .iter()
            .map(|x| {
                [
                    x.severity.to_string(),
                    x.check.clone(),
                    x.column.clone().unwrap_or_else(|| "-".into()),
                    compact(&x.observed),
                    compact(&x.expected),
                ]
            })
            .collect();
        let head = ["severity", "check", "column", "observed", "expected"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| {
            let text: Vec<String> = cells
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "{}", text.join("  ").trim_end())
        };
        line(f, head)?;
        line(
            f,
            width.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
        )?;
        for r in &rows {
            line(f, r.each_ref().map(String::as_str))?;
        }
        write!(
            f,
            "{} rows x {} columns, {} checks: {} errors, {} warnings -> {}",
            self.rows,
            self.columns,
            self.checks.len(),
            self.errors().count(),
            self.warnings().count(),
            if self.passed() { "PASSED" } else { "FAILED" }
        )
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One check of a dataset. Implementations append findings and never panic on any data.
///
/// ```
/// use mlops_core::validation::{Finding, Severity, ValidationSuite, Validator};
/// use mlops_core::{Dataset, Schema};
/// use ndarray::array;
///
/// /// Fraud amounts must not be negative.
/// struct NonNegative(&'static str);
///
/// impl Validator for NonNegative {
///     fn name(&self) -> &str { "non_negative" }
///     fn check(&self, data: &Dataset, _schema: Option<&Schema>, out: &mut Vec<Finding>) {
///         let Ok(col) = data.column(self.0) else { return };
///         let bad = col.iter().filter(|v| **v < 0.0).count();
///         if bad > 0 {
///             out.push(Finding {
///                 check: self.name().into(),
///                 column: Some(self.0.into()),
///                 severity: Severity::Error,
///                 observed: bad.into(),
///                 expected: "no negative values".into(),
///                 message: format!("{bad} negative values"),
///             });
///         }
///     }
/// }
///
/// let data = Dataset::new(array![[1.0_f32], [-2.0]], vec!["amount".into()])?;
/// let report = ValidationSuite::empty().with(NonNegative("amount")).run(&data, None);
/// assert!(!report.passed());
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub trait Validator: Send + Sync {
    /// A short snake_case name, used as [`Finding::check`].
    fn name(&self) -> &str;
    /// Appends a finding per problem in `data` (compared with `schema` when given).
    fn check(&self, data: &Dataset, schema: Option<&Schema>, out: &mut Vec<Finding>);
}

/// Parameters of the built-in suite; defaults are the seed's checks. serde with defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Fewer rows is an error (seed: 10,000).
    pub min_rows: usize,
    /// Share of missing values above which a column that the schema does not mark nullable is
    /// an error (default 0: any missing value). Infinities are always an error.
    pub max_missing_fraction: f64,
    /// Label balance: `|mean(label) - 0.5|` above this is a warning (seed's rule; default
    /// 0.4). `None` turns it off.
    pub max_label_imbalance: Option<f64>,
    /// Fewer positive labels is an error (default 10).
    pub min_positives: usize,
    /// Severity of values outside the schema's range or categories (default warning).
    pub out_of_range: Severity,
    /// Severity of constant columns (default warning).
    pub constant_columns: Severity,
    /// Severity of duplicate rows (default warning).
    pub duplicate_rows: Severity,
    /// Severity of columns the schema does not know (default warning). Columns the schema
    /// expects and the data lacks are always an error.
    pub unknown_columns: Severity,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            min_rows: 10_000,
            max_missing_fraction: 0.0,
            max_label_imbalance: Some(0.4),
            min_positives: 10,
            out_of_range: Severity::Warning,
            constant_columns: Severity::Warning,
            duplicate_rows: Severity::Warning,
            unknown_columns: Severity::Warning,
        }
    }
}

impl ValidationConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.max_missing_fraction) {
            return Err(Error::invalid(
                "ValidationConfig.max_missing_fraction",
                self.max_missing_fraction,
                "a number in [0, 1]",
            ));
        }
        if let Some(m) = self.max_label_imbalance {
            if !(0.0..=0.5).contains(&m) {
                return Err(Error::invalid(
                    "ValidationConfig.max_label_imbalance",
                    m,
                    "a number in [0, 0.5] (|mean - 0.5|)",
                ));
            }
        }
        Ok(())
    }
}

/// An ordered list of validators.
pub struct ValidationSuite {
    validators: Vec<Box<dyn Validator>>,
}

impl fmt::Debug for ValidationSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.validators.iter().map(|v| v.name()))
            .finish()
    }
}

impl ValidationSuite {
    /// A suite with no checks.
    pub fn empty() -> Self {
        ValidationSuite {
            validators: Vec::new(),
        }
    }

    /// The built-in checks with `config`'s parameters: row count, missing values, labels,
    /// schema columns, value ranges, constant columns, duplicate rows.
    pub fn from_config(config: &ValidationConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::empty()
            .with(MinRows {
                min: config.min_rows,
            })
            .with(MissingValues {
                max_fraction: config.max_missing_fraction,
            })
            .with(LabelCheck {
                max_imbalance: config.max_label_imbalance,
                min_positives: config.min_positives,
            })
            .with(SchemaColumns {
                unknown: config.unknown_columns,
            })
            .with(ValueRange {
                severity: config.out_of_range,
            })
            .with(ConstantColumns {
                severity: config.constant_columns,
            })
            .with(DuplicateRows {
                severity: config.duplicate_rows,
            }))
    }

    /// Appends a validator.
    pub fn with(mut self, validator: impl Validator + 'static) -> Self {
        self.validators.push(Box::new(validator));
        self
    }

    /// Runs every validator on `data` (against `schema` when given, else the dataset's own
    /// schema is not used for range checks) and collects all findings.
    pub fn run(&self, data: &Dataset, schema: Option<&Schema>) -> ValidationReport {
        let mut findings = Vec::new();
        for v in &self.validators {
            v.check(data, schema, &mut findings);
        }
        let report = ValidationReport {
            rows: data.n_rows(),
            columns: data.n_features(),
            checks: self
                .validators
                .iter()
                .map(|v| v.name().to_string())
                .collect(),
            findings,
        };
        tracing::debug!(
            rows = report.rows,
            errors = report.errors().count(),
            warnings = report.warnings().count(),
            "dataset validated"
        );
        report
    }
}
