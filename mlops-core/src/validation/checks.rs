//! The built-in validators.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use ndarray::ArrayView1;
use serde_json::json;

use super::{Finding, Severity, Validator};
use crate::dataset::Dataset;
use crate::schema::{ColumnKind, Schema};

fn finding(
    check: &str,
    column: Option<&str>,
    severity: Severity,
    observed: serde_json::Value,
    expected: serde_json::Value,
    message: String,
) -> Finding {
    Finding {
        check: check.to_string(),
        column: column.map(str::to_string),
        severity,
        observed,
        expected,
        message,
    }
}

/// Fewer than `min` rows is an error.
#[derive(Debug, Clone)]
pub struct MinRows {
    /// The minimum row count.
    pub min: usize,
}

impl Validator for MinRows {
    fn name(&self) -> &str {
        "min_rows"
    }

    fn check(&self, data: &Dataset, _schema: Option<&Schema>, out: &mut Vec<Finding>) {
        if data.n_rows() < self.min {
            out.push(finding(
                self.name(),
                None,
                Severity::Error,
                json!(data.n_rows()),
                json!(format!(">= {}", self.min)),
                format!("{} rows, expected at least {}", data.n_rows(), self.min),
            ));
        }
    }
}

/// Missing values (NaN) and infinities per column, the label and the weights included.
/// Infinities are always an error; a share of missing values above `max_fraction` is an error
/// unless the schema marks the column nullable.
#[derive(Debug, Clone)]
pub struct MissingValues {
    /// Largest acceptable share of missing values in a non-nullable column.
    pub max_fraction: f64,
}

impl MissingValues {
    fn column(
        &self,
        name: &str,
        values: ArrayView1<'_, f32>,
        nullable: bool,
        out: &mut Vec<Finding>,
    ) {
        let n = values.len();
        let nan = values.iter().filter(|v| v.is_nan()).count();
        let inf = values.iter().filter(|v| v.is_infinite()).count();
        if inf > 0 {
            out.push(finding(
                self.name(),
                Some(name),
                Severity::Error,
                json!({ "infinite": inf }),
                json!("finite values"),
                format!("{inf} infinite values in `{name}`"),
            ));
        }
        if nan == 0 || nullable || n == 0 {
            return;
        }
        let fraction = nan as f64 / n as f64;
        if fraction > self.max_fraction {
            out.push(finding(
                self.name(),
                Some(name),
                Severity::Error,
                json!({ "missing": nan, "fraction": fraction }),
                json!(format!("missing fraction <= {}", self.max_fraction)),
                if nan == n {
                    format!("every value of `{name}` is missing")
                } else {
                    format!(
                        "{nan} of {n} values of `{name}` are missing ({:.4}%)",
                        100.0 * fraction
                    )
                },
            ));
        }
    }
}

impl Validator for MissingValues {
    fn name(&self) -> &str {
        "missing_values"
    }

    fn check(&self, data: &Dataset, schema: Option<&Schema>, out: &mut Vec<Finding>) {
        let nullable = |name: &str| {
            schema
                .and_then(|s| s.column(name))
                .is_some_and(|c| c.nullable)
        };
        for (j, name) in data.feature_names().enumerate() {
            self.column(name, data.feature_column(j), nullable(name), out);
        }
        if let (Some(labels), Some(name)) = (data.labels(), data.label_name()) {
            // A row without a label cannot be trained or evaluated on: never nullable.
            self.column(name, labels.view(), false, out);
        }
        if let Some(w) = data.weights() {
            self.column("sample_weight", w.view(), false, out);
        }
    }
}

/// Labels must be 0 or 1, with at least `min_positives` positives; `|mean - 0.5|` above
/// `max_imbalance` is a warning (the seed's balance rule). Skipped when the data has no label
/// (the schema check reports a label the schema expects).
#[derive(Debug, Clone)]
pub struct LabelCheck {
    /// Largest acceptable `|mean(label) - 0.5|`, `None` for no balance check.
    pub max_imbalance: Option<f64>,
    /// Fewest acceptable positive labels.
    pub min_positives: usize,
}

impl Validator for LabelCheck {
    fn name(&self) -> &str {
        "labels"
    }

    fn check(&self, data: &Dataset, _schema: Option<&Schema>, out: &mut Vec<Finding>) {
        let (Some(labels), Some(name)) = (data.labels(), data.label_name()) else {
            return;
        };
        let present: Vec<f32> = labels.iter().copied().filter(|v| !v.is_nan()).collect();
        let invalid: Vec<f32> = present
            .iter()
            .copied()
            .filter(|&v| v != 0.0 && v != 1.0)
            .collect();
        if !invalid.is_empty() {
            let examples: BTreeSet<String> =
                invalid.iter().take(5).map(|v| v.to_string()).collect();
            out.push(finding(
                self.name(),
                Some(name),
                Severity::Error,
                json!({ "invalid": invalid.len(), "examples": examples }),
                json!("0 or 1"),
                format!(
                    "{} labels are neither 0 nor 1 (e.g. {})",
                    invalid.len(),
                    examples.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let positives = present.iter().filter(|&&v| v == 1.0).count();
        let negatives = present.iter().filter(|&&v| v == 0.0).count();
        if !present.is_empty() && (positives == 0 || negatives == 0) && invalid.is_empty() {
            let only = if positives == 0 { 0 } else { 1 };
            out.push(finding(
                "label_classes",
                Some(name),
                Severity::Error,
                json!({ "only_class": only, "rows": present.len() }),
                json!("both classes, 0 and 1"),
                format!(
                    "every one of {} labels is {only}: a binary classifier cannot be trained or evaluated on one class",
                    present.len()
                ),
            ));
        }
        if positives < self.min_positives {
            out.push(finding(
                "min_positives",
                Some(name),
                Severity::Error,
                json!(positives),
                json!(format!(">= {}", self.min_positives)),
                format!(
                    "{positives} positive labels, expected at least {}",
                    self.min_positives
                ),
            ));
        }
        if let Some(max) = self.max_imbalance {
            if !present.is_empty() {
                let mean = positives as f64 / present.len() as f64;
                let imbalance = (mean - 0.5).abs();
                if imbalance > max {
                    out.push(finding(
                        "label_balance",
                        Some(name),
                        Severity::Warning,
                        json!({ "positive_rate": mean, "imbalance": imbalance }),
                        json!(format!("|mean - 0.5| <= {max}")),
                        format!(
                            "positive rate {:.4}%: |mean - 0.5| = {imbalance:.4} > {max}",
                            100.0 * mean
                        ),
                    ));
                }
            }
        }
    }
}

/// Columns the schema expects but the data lacks (error), columns the data has but the schema
/// does not know (`unknown` severity), and columns whose kind differs (error).
#[derive(Debug, Clone)]
pub struct SchemaColumns {
    /// Severity of unknown columns.
    pub unknown: Severity,
}

impl Validator for SchemaColumns {
    fn name(&self) -> &str {
        "schema_columns"
    }

    fn check(&self, data: &Dataset, schema: Option<&Schema>, out: &mut Vec<Finding>) {
        let Some(schema) = schema else { return };
        for col in &schema.columns {
            let present_kind = if col.kind == ColumnKind::Label {
                data.label_name()
                    .filter(|n| *n == col.name)
                    .map(|_| ColumnKind::Label)
            } else {
                data.schema()
                    .features()
                    .find(|c| c.name == col.name)
                    .map(|c| c.kind)
            };
            match present_kind {
                None => out.push(finding(
                    "missing_column",
                    Some(&col.name),
                    Severity::Error,
                    json!(null),
                    json!(format!("a {:?} column", col.kind).to_lowercase()),
                    format!("column `{}` is in the schema but not in the data", col.name),
                )),
                Some(kind) if kind != col.kind => out.push(finding(
                    "column_kind",
                    Some(&col.name),
                    Severity::Error,
                    json!(kind),
                    json!(col.kind),
                    format!(
                        "column `{}` is {kind:?} in the data but {:?} in the schema",
                        col.name, col.kind
                    ),
                )),
                Some(_) => {}
            }
        }
        for name in data.feature_names() {
            if schema.column(name).is_none() {
                out.push(finding(
                    "unknown_column",
                    Some(name),
                    self.unknown,
                    json!(name),
                    json!("a column of the schema"),
                    format!("column `{name}` is not in the schema"),
                ));
            }
        }
    }
}

/// Numeric values outside the schema's `[min, max]` and categorical codes outside its
/// categories.
#[derive(Debug, Clone)]
pub struct ValueRange {
    /// Severity of a column with out-of-range values.
    pub severity: Severity,
}

impl Validator for ValueRange {
    fn name(&self) -> &str {
        "value_range"
    }

    fn check(&self, data: &Dataset, schema: Option<&Schema>, out: &mut Vec<Finding>) {
        let Some(schema) = schema else { return };
        for (j, name) in data.feature_names().enumerate() {
            let Some(col) = schema.column(name) else {
                continue;
            };
            let values = data.feature_column(j);
            match col.kind {
                ColumnKind::Categorical => {
                    let Some(allowed) = &col.categories else {
                        continue;
                    };
                    let unknown: Vec<f32> = values
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite() && allowed.binary_search(&(*v as i64)).is_err())
                        .collect();
                    if !unknown.is_empty() {
                        let examples: BTreeSet<i64> =
                            unknown.iter().map(|&v| v as i64).take(5).collect();
                        // Every value unseen is an error whatever the configured severity: the
                        // column no longer means what it meant.
                        let all = unknown.len() == values.iter().filter(|v| v.is_finite()).count();
                        out.push(finding(
                            self.name(),
                            Some(name),
                            if all { Severity::Error } else { self.severity },
                            json!({ "unknown": unknown.len(), "examples": examples }),
                            json!({ "categories": allowed }),
                            format!(
                                "{} values of `{name}` are categories the schema does not list",
                                unknown.len()
                            ),
                        ));
                    }
                }
                _ => {
                    let finite = values.iter().copied().filter(|v| v.is_finite());
                    let below = col
                        .min
                        .map_or(0, |m| finite.clone().filter(|&v| v < m as f32).count());
                    let above = col
                        .max
                        .map_or(0, |m| finite.clone().filter(|&v| v > m as f32).count());
                    if below + above > 0 {
                        // Every value out of range is an error whatever the configured severity.
                        let all = below + above == finite.clone().count();
                        let (lo, hi) = finite
                            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                                (a.min(v), b.max(v))
                            });
                        out.push(finding(
                            self.name(),
                            Some(name),
                            if all { Severity::Error } else { self.severity },
                            json!({ "below": below, "above": above, "min": lo, "max": hi }),
                            json!({ "min": col.min, "max": col.max }),
                            format!(
                                "{} values of `{name}` fall outside the schema's range [{}, {}] (seen [{lo}, {hi}])",
                                below + above,
                                col.min.map_or("-inf".into(), |v| v.to_string()),
                                col.max.map_or("inf".into(), |v| v.to_string()),
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// Feature columns with a single distinct (non-missing) value.
#[derive(Debug, Clone)]
pub struct ConstantColumns {
    /// Severity of a constant column.
    pub severity: Severity,
}

impl Validator for ConstantColumns {
    fn name(&self) -> &str {
        "constant_column"
    }

    fn check(&self, data: &Dataset, _schema: Option<&Schema>, out: &mut Vec<Finding>) {
        if data.n_rows() < 2 {
            return;
        }
        for (j, name) in data.feature_names().enumerate() {
            let mut present = data
                .feature_column(j)
                .into_iter()
                .copied()
                .filter(|v| !v.is_nan());
            let Some(first) = present.next() else {
                continue;
            };
            if present.all(|v| v == first) {
                out.push(finding(
                    self.name(),
                    Some(name),
                    self.severity,
                    json!(first),
                    json!("at least two distinct values"),
                    format!("every value of `{name}` is {first}"),
                ));
            }
        }
    }
}

/// Rows that repeat an earlier row exactly (features and label).
#[derive(Debug, Clone)]
pub struct DuplicateRows {
    /// Severity when duplicates exist.
    pub severity: Severity,
}

impl DuplicateRows {
    /// Number of rows equal (bit for bit, features and label) to an earlier row.
    pub fn count(data: &Dataset) -> usize {
        let x = data.features();
        let row_bits = |i: usize| {
            (0..x.ncols())
                .map(move |j| x[[i, j]].to_bits())
                .chain(data.labels().map(|l| l[i].to_bits()))
        };
        let mut keyed: Vec<(u64, usize)> = (0..data.n_rows())
            .map(|i| {
                let mut h = DefaultHasher::new();
                row_bits(i).for_each(|b| b.hash(&mut h));
                (h.finish(), i)
            })
            .collect();
        keyed.sort_unstable();
        let mut duplicates = 0;
        let mut start = 0;
        while start < keyed.len() {
            let mut end = start + 1;
            while end < keyed.len() && keyed[end].0 == keyed[start].0 {
                end += 1;
            }
            // Rows with equal hashes: count those equal to an earlier row of the group.
            for a in start + 1..end {
                if (start..a).any(|b| row_bits(keyed[a].1).eq(row_bits(keyed[b].1))) {
                    duplicates += 1;
                }
            }
            start = end;
        }
        duplicates
    }
}

impl Validator for DuplicateRows {
    fn name(&self) -> &str {
        "duplicate_rows"
    }

    fn check(&self, data: &Dataset, _schema: Option<&Schema>, out: &mut Vec<Finding>) {
        let duplicates = Self::count(data);
        if duplicates > 0 {
            out.push(finding(
                self.name(),
                None,
                self.severity,
                json!({ "duplicates": duplicates, "fraction": duplicates as f64 / data.n_rows() as f64 }),
                json!(0),
                format!("{duplicates} rows repeat an earlier row"),
            ));
        }
    }
}
