//! Reference profiles: what a drift check needs to know about the reference data, fitted
//! once and stored beside a model version, so that scoring a current batch never re-reads or
//! re-sorts the reference.

use mlops_core::{ColumnKind, Dataset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stats::{bin_shares, quantile_edges_sorted};

/// How a profile is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Number of reference-quantile bins for PSI, JS, Hellinger, TV and KL (default 10).
    pub bins: usize,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig { bins: 10 }
    }
}

/// The fitted reference of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Numeric or categorical (codes).
    pub kind: ColumnKind,
    /// Rows in the reference, missing values included.
    pub rows: usize,
    /// Missing (NaN) values in the reference.
    pub missing: usize,
    /// The non-missing values, sorted ascending (numeric columns).
    pub sorted: Vec<f64>,
    /// Mean of the non-missing values (`None` when all are missing).
    pub mean: Option<f64>,
    /// Standard deviation (ddof 0) of the non-missing values (`None` when all are missing).
    pub std: Option<f64>,
    /// Interior edges of the reference-quantile bins.
    pub edges: Vec<f64>,
    /// The reference's share in each bin (`edges.len() + 1`).
    pub shares: Vec<f64>,
    /// Category codes (categorical columns), sorted.
    pub categories: Vec<i64>,
    /// Count of each category.
    pub counts: Vec<u64>,
}

impl ColumnProfile {
    /// Fits one column from its values (NaN = missing).
    pub fn fit(
        name: &str,
        kind: ColumnKind,
        values: impl Iterator<Item = f64>,
        bins: usize,
    ) -> Result<Self> {
        let mut rows = 0;
        let mut sorted = Vec::new();
        for v in values {
            rows += 1;
            if !v.is_nan() {
                sorted.push(v);
            }
        }
        crate::stats::sort_values(&mut sorted);
        let n = sorted.len();
        let (mean, std) = if n > 0 {
            let mean = sorted.iter().sum::<f64>() / n as f64;
            let var = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            (Some(mean), Some(var.sqrt()))
        } else {
            (None, None)
        };
        let (edges, shares) = if n > 0 && kind == ColumnKind::Numeric {
            let edges = quantile_edges_sorted(&sorted, bins)?;
            let shares = bin_shares(&sorted, &edges);
            (edges, shares)
        } else {
            (Vec::new(), Vec::new())
        };
        let (categories, counts) = if kind == ColumnKind::Categorical {
            category_counts(&sorted)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(ColumnProfile {
            name: name.to_string(),
            kind,
            rows,
            missing: rows - n,
            sorted,
            mean,
            std,
            edges,
            shares,
            categories,
            counts,
        })
    }

    /// Non-missing reference values.
    pub fn present(&self) -> usize {
        self.rows - self.missing
    }
}

/// The non-missing values of every feature column as `f64`, read in one pass over the rows
/// (the feature matrix is row-major: reading it column by column would touch a cache line per
/// value).
/// Only the columns with `wanted[j]` are read (the others come back empty).
pub(crate) fn non_missing_columns(data: &Dataset, wanted: &[bool]) -> Vec<Vec<f64>> {
    let mut cols: Vec<Vec<f64>> = wanted
        .iter()
        .map(|&w| {
            if w {
                Vec::with_capacity(data.n_rows())
            } else {
                Vec::new()
            }
        })
        .collect();
    let picked: Vec<usize> = (0..wanted.len()).filter(|&j| wanted[j]).collect();
    if picked.is_empty() {
        return cols;
    }
    for row in data.features().rows() {
        for &j in &picked {
            let v = row[j];
            if !v.is_nan() {
                cols[j].push(f64::from(v));
            }
        }
    }
    cols
}

/// Bin shares of several columns (`(column, interior edges)`) and their non-missing counts,
/// counted in one parallel pass over the rows, without copying any column.
pub(crate) fn bin_rows(data: &Dataset, columns: &[(usize, &[f64])]) -> Vec<(Vec<f64>, usize)> {
    use rayon::prelude::*;
    if columns.is_empty() {
        return Vec::new();
    }
    let x = data.features();
    let n = data.n_rows();
    // Each column's edges padded to 16 with +inf: a fixed-width, branch-free comparison.
    let padded: Vec<Option<[f64; 16]>> = columns
        .iter()
        .map(|(_, e)| {
            (e.len() < 16).then(|| {
                let mut p = [f64::INFINITY; 16];
                p[..e.len()].copy_from_slice(e);
                p
            })
        })
        .collect();
    const CHUNK: usize = 1 << 16;
    let zero = || -> Vec<Vec<u64>> {
        columns
            .iter()
            .map(|(_, e)| vec![0u64; e.len() + 2])
            .collect()
    };
    let counts = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut counts = zero();
            for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                let row = x.row(i);
                for (k, (j, edges)) in columns.iter().enumerate() {
                    let v = row[*j];
                    let bin = if v.is_nan() {
                        edges.len() + 1 // the missing slot
                    } else {
                        let v = f64::from(v);
                        match &padded[k] {
                            Some(p) => p.iter().map(|e| usize::from(*e <= v)).sum(),
                            None => edges.partition_point(|e| *e <= v),
                        }
                    };
                    counts[k][bin] += 1;
                }
            }
            counts
        })
        .reduce(zero, |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                for (u, v) in x.iter_mut().zip(y) {
                    *u += v;
                }
            }
            a
        });
    counts
        .into_iter()
        .map(|mut c| {
            let missing = c.pop().unwrap_or(0) as usize;
            let present = n - missing;
            let denom = present.max(1) as f64;
            (c.into_iter().map(|v| v as f64 / denom).collect(), present)
        })
        .collect()
}

/// Distinct codes of a sorted slice and their counts.
pub(crate) fn category_counts(sorted: &[f64]) -> (Vec<i64>, Vec<u64>) {
    let mut cats = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for &v in sorted {
        let c = v as i64;
        if cats.last() == Some(&c) {
            if let Some(last) = counts.last_mut() {
                *last += 1;
            }
        } else {
            cats.push(c);
            counts.push(1);
        }
    }
    (cats, counts)
}

/// A reference profile: one [`ColumnProfile`] per feature column. serde-serializable, so it is
/// stored beside the model version it belongs to and loaded by the serving process.
///
/// ```
/// use mlops_core::Dataset;
/// use mlops_drift::{DriftConfig, ProfileConfig, ReferenceProfile};
/// use ndarray::Array2;
///
/// let reference = Dataset::new(Array2::from_shape_fn((500, 1), |(i, _)| (i % 97) as f32), vec!["x".into()])?;
/// let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
/// let shifted = Dataset::new(Array2::from_shape_fn((500, 1), |(i, _)| (i % 97) as f32 + 40.0), vec!["x".into()])?;
/// let report = profile.compare(&shifted, &DriftConfig::default())?;
/// assert!(report.dataset.drifted);
/// assert!(!profile.compare(&reference, &DriftConfig::default())?.dataset.drifted);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    /// The profile config it was fitted with.
    pub config: ProfileConfig,
    /// One profile per feature column, in the reference's column order.
    pub columns: Vec<ColumnProfile>,
}

impl ReferenceProfile {
    /// Fits every feature column of `reference` (in parallel across columns).
    pub fn fit(reference: &Dataset, config: &ProfileConfig) -> Result<Self> {
        use rayon::prelude::*;
        if config.bins < 2 {
            return Err(Error::invalid(
                "ProfileConfig.bins",
                config.bins,
                "at least 2",
            ));
        }
        let names: Vec<&str> = reference.feature_names().collect();
        let kinds: Vec<ColumnKind> = reference.feature_kinds().collect();
        let values = non_missing_columns(reference, &vec![true; reference.n_features()]);
        let rows = reference.n_rows();
        let columns = (0..names.len())
            .into_par_iter()
            .map(|j| {
                // The present values, then one NaN per missing value (a profile does not
                // depend on row order).
                let missing = rows - values[j].len();
                let column = values[j]
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(f64::NAN, missing));
                ColumnProfile::fit(names[j], kinds[j], column, config.bins)
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(
            columns = columns.len(),
            rows = reference.n_rows(),
            "reference profile fitted"
        );
        Ok(ReferenceProfile {
            config: *config,
            columns,
        })
    }

    /// The profile of column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Serializes to JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::invalid("profile", e, "a serializable profile"))
    }

    /// Reads a profile written by [`ReferenceProfile::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid("profile JSON", e, "a ReferenceProfile"))
    }
}
