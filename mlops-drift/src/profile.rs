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
    /// What a profile keeps of each column's values (default: compact).
    pub storage: ProfileStorage,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            bins: 10,
            storage: ProfileStorage::default(),
        }
    }
}

/// What a [`ReferenceProfile`] keeps of each column's values.
///
/// A profile is stored beside every registered model, so by default it is **compact**: a
/// column with more than `max_values` non-missing values keeps `max_values` of them at evenly
/// spaced ranks (a quantile summary), not the training data. Counts, missing counts, category
/// counts, mean, std and the bin shares stay exact (computed from every value at fit time). The
/// summary's ECDF is within [`ColumnProfile::ecdf_error`] of the true one (measured at fit
/// time, at most `1 / max_values`), so every KS statistic against the profile is within that of
/// the exact one, and reports state the bound; KS p-values use the true reference count.
/// Tests that read the reference sample itself (Cramér–von Mises, Anderson–Darling,
/// Mann–Whitney, energy) see the summary: a reference of `max_values` values, conservative.
/// `Exact` keeps every value (a copy of the training column: large, and the data itself).
///
/// ```
/// use mlops_drift::{ProfileConfig, ProfileStorage};
///
/// let c: ProfileConfig = serde_json::from_str(r#"{"storage": "exact"}"#)?;
/// assert_eq!(c.storage, ProfileStorage::Exact);
/// assert_eq!(ProfileConfig::default().storage, ProfileStorage::Compact { max_values: 8192 });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileStorage {
    /// Every non-missing value of every column.
    Exact,
    /// At most `max_values` values per column (at least 2): all of them when there are that
    /// few, else a quantile summary.
    Compact {
        /// Values kept per column (default 8192: about 44 KB a column, ECDF error ≤ 1/8192).
        max_values: usize,
    },
}

impl Default for ProfileStorage {
    fn default() -> Self {
        ProfileStorage::Compact { max_values: 8192 }
    }
}

impl ProfileConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(2..=crate::stats::MAX_BINS).contains(&self.bins) {
            return Err(Error::invalid(
                "ProfileConfig.bins",
                self.bins,
                format!("from 2 to {} bins", crate::stats::MAX_BINS),
            ));
        }
        if let ProfileStorage::Compact { max_values } = self.storage {
            if max_values < 2 {
                return Err(Error::invalid(
                    "ProfileConfig.storage.max_values",
                    max_values,
                    "at least 2",
                ));
            }
        }
        Ok(())
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
    /// The non-missing values, sorted ascending: every one, or a quantile summary of them
    /// when the profile is compact (see [`ProfileStorage`]). Stored as base64 of little-endian
    /// `f64`s when long (a JSON array still reads).
    #[serde(with = "values_codec")]
    pub sorted: Vec<f64>,
    /// The largest gap between the ECDF of `sorted` and that of every reference value: 0 when
    /// `sorted` holds them all. A KS statistic against this profile is within this of the
    /// exact one.
    #[serde(default)]
    pub ecdf_error: f64,
    /// The Wasserstein-1 distance between `sorted` and every reference value (raw units): a
    /// Wasserstein distance against this profile is within this of the exact one.
    #[serde(default)]
    pub wasserstein_error: f64,
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
            ecdf_error: 0.0,
            wasserstein_error: 0.0,
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

    /// Keeps at most `max_values` (≥ 2) of the values: the value at rank
    /// `⌊(2k + 1) n / (2 max_values)⌋` for each `k`, with the ECDF and Wasserstein gaps to the
    /// full column measured and recorded. Everything else stays as fitted.
    pub fn compacted(mut self, max_values: usize) -> Self {
        let n = self.sorted.len();
        if max_values < 2 || n <= max_values {
            return self;
        }
        let summary: Vec<f64> = (0..max_values as u128)
            .map(|k| self.sorted[((2 * k + 1) * n as u128 / (2 * max_values as u128)) as usize])
            .collect();
        let (dplus, dminus) = crate::stats::ks_statistics_sorted(&summary, &self.sorted);
        self.ecdf_error = dplus.max(dminus);
        self.wasserstein_error = crate::stats::cdf_distance_sorted(&summary, &self.sorted, 1);
        self.sorted = summary;
        self
    }

    /// Whether `sorted` holds every non-missing reference value.
    pub fn is_exact(&self) -> bool {
        self.sorted.len() == self.present() && self.ecdf_error == 0.0
    }
}

/// serde for a column's values: a JSON array when short, else base64 of the little-endian
/// bytes after a tag — `"f32le:"` when every value is an `f32` (a `Dataset`'s always are:
/// exact, 4 bytes a value), else `"f64le:"`. Either form, and an array, reads.
mod values_codec {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const F32: &str = "f32le:";
    const F64: &str = "f64le:";
    const ARRAY_UP_TO: usize = 64;

    pub(super) fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        if values.len() <= ARRAY_UP_TO {
            return s.collect_seq(values);
        }
        let all_f32 = values.iter().all(|v| f64::from(*v as f32) == *v);
        let (tag, bytes): (&str, Vec<u8>) = if all_f32 {
            (
                F32,
                values
                    .iter()
                    .flat_map(|v| (*v as f32).to_le_bytes())
                    .collect(),
            )
        } else {
            (F64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        s.serialize_str(&format!("{tag}{}", STANDARD.encode(bytes)))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Array(Vec<f64>),
        Packed(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        use serde::de::Error;
        let text = match Form::deserialize(d)? {
            Form::Array(v) => return Ok(v),
            Form::Packed(text) => text,
        };
        let (width, packed) = match (text.strip_prefix(F32), text.strip_prefix(F64)) {
            (Some(p), _) => (4, p),
            (_, Some(p)) => (8, p),
            _ => {
                return Err(D::Error::custom(format!(
                    "values: expected an array, \"{F32}<base64>\" or \"{F64}<base64>\""
                )))
            }
        };
        let bytes = STANDARD
            .decode(packed)
            .map_err(|e| D::Error::custom(format!("values: bad base64 ({e})")))?;
        if bytes.len() % width != 0 {
            return Err(D::Error::custom(format!(
                "values: {} bytes is not a whole number of {width}-byte floats",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(width)
            .map(|c| match *c {
                [a, b, c, d] => f64::from(f32::from_le_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => f64::from_le_bytes([a, b, c, d, e, f, g, h]),
                _ => f64::NAN, // unreachable: chunks are `width` long
            })
            .collect())
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

/// The column name of a profile of a model's scores ([`ReferenceProfile::fit_predictions`]).
pub const PREDICTION_COLUMN: &str = "prediction";

/// A reference profile: one [`ColumnProfile`] per feature column. serde-serializable, so it is
/// stored beside the model version it belongs to and loaded by the serving process.
///
/// ```
/// use mlops_core::Dataset;
/// use mlops_drift::{CheckedDriftConfig, DriftConfig, ProfileConfig, ReferenceProfile};
/// use ndarray::Array2;
///
/// let reference = Dataset::new(Array2::from_shape_fn((500, 1), |(i, _)| (i % 97) as f32), vec!["x".into()])?;
/// let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
/// let shifted = Dataset::new(Array2::from_shape_fn((500, 1), |(i, _)| (i % 97) as f32 + 40.0), vec!["x".into()])?;
/// let report = profile.compare(&shifted, &CheckedDriftConfig::default())?;
/// assert!(report.dataset.drifted);
/// assert!(!profile.compare(&reference, &CheckedDriftConfig::default())?.dataset.drifted);
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
    /// The largest [`ColumnProfile::ecdf_error`] of its columns: every KS statistic against
    /// this profile is within this of the exact one (0 for an exact profile).
    pub fn ks_error_bound(&self) -> f64 {
        self.columns
            .iter()
            .map(|c| c.ecdf_error)
            .fold(0.0, f64::max)
    }

    /// Fits every feature column of `reference` (in parallel across columns), keeping what
    /// `config.storage` says of each column's values (compact by default: see
    /// [`ProfileStorage`]).
    pub fn fit(reference: &Dataset, config: &ProfileConfig) -> Result<Self> {
        use rayon::prelude::*;
        config.validate()?;
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
                let fitted = ColumnProfile::fit(names[j], kinds[j], column, config.bins)?;
                Ok(match config.storage {
                    ProfileStorage::Exact => fitted,
                    ProfileStorage::Compact { max_values } => fitted.compacted(max_values),
                })
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

    /// The profile of a model's scores (one column, [`PREDICTION_COLUMN`]): the reference a
    /// live monitor compares served scores with (prediction drift). Non-finite scores count as
    /// missing.
    ///
    /// ```
    /// use mlops_drift::{ProfileConfig, ReferenceProfile, PREDICTION_COLUMN};
    /// let p = ReferenceProfile::fit_predictions(&[0.1, 0.2, 0.9, f32::NAN], &ProfileConfig::default())?;
    /// assert_eq!(p.columns[0].name, PREDICTION_COLUMN);
    /// assert!(ReferenceProfile::fit_predictions(&[], &ProfileConfig::default()).is_err());
    /// # Ok::<(), mlops_drift::Error>(())
    /// ```
    pub fn fit_predictions(scores: &[f32], config: &ProfileConfig) -> Result<Self> {
        if scores.is_empty() {
            return Err(crate::Error::invalid("scores", 0, "at least one score"));
        }
        let column = ndarray::Array2::from_shape_vec(
            (scores.len(), 1),
            scores
                .iter()
                .map(|&s| if s.is_finite() { s } else { f32::NAN })
                .collect(),
        )
        .map_err(|e| crate::Error::invalid("scores", e, "one column"))?;
        Self::fit(
            &Dataset::new(column, vec![PREDICTION_COLUMN.to_string()])?,
            config,
        )
    }

    /// The profile of column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}
