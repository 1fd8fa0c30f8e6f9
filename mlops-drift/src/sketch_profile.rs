//! Reference profiles built over partitions: each worker (a Spark, DataFusion or Flink task)
//! sketches its partition into a [`ProfileSketch`], the sketches are merged in any order, and
//! the merged sketch becomes an ordinary [`ReferenceProfile`] that every detector, report and
//! policy uses unchanged.
//!
//! **What is exact and what is not.** Row counts, missing counts and category counts are exact
//! (merging adds integers). Numeric columns keep a KLL [`QuantileSketch`] (DataSketches'
//! format; about 12 KB at the default `k`); the profile stands each numeric column for
//! `representatives` values at evenly spaced ranks of the sketched distribution. So the
//! reference ECDF a test sees is within `rank_error + 1 / representatives` of the true one
//! everywhere, wherever the data sit (offsets, point masses, heavy tails), and a KS statistic
//! against it is within that much of the exact one ([`ProfileSketch::ks_error_bound`]).
//! KS p-values take the true reference count; tests that read the reference sample itself
//! (Cramér–von Mises, Anderson–Darling, Mann–Whitney, energy) see `representatives` values, so
//! their p-values are those of a reference of that size: conservative.

use std::collections::BTreeMap;

use mlops_core::{ColumnKind, Dataset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profile::{ColumnProfile, ProfileConfig, ReferenceProfile};
use crate::sketch::QuantileSketch;

/// The most values [`ProfileSketch::to_profile`] stands a numeric column for by (its
/// `representatives`): more is an error naming the value, checked before anything is
/// allocated.
pub const MAX_REPRESENTATIVES: usize = 1_000_000;

/// The sketch of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSketch {
    /// Column name.
    pub name: String,
    /// Numeric or categorical (codes).
    pub kind: ColumnKind,
    /// The values (NaN counted as missing).
    pub sketch: QuantileSketch,
    /// Exact count of each category code (categorical columns).
    pub categories: BTreeMap<i64, u64>,
}

/// Mergeable sketches of every feature column of a reference dataset.
///
/// ```
/// use mlops_core::Dataset;
/// use mlops_drift::{CheckedDriftConfig, DriftConfig, ProfileConfig, ProfileSketch};
/// use ndarray::Array2;
///
/// let part = |from: usize, shift: f32| {
///     Dataset::new(
///         Array2::from_shape_fn((2000, 1), |(i, _)| ((from + i) % 97) as f32 + shift),
///         vec!["x".into()],
///     )
/// };
/// // Two workers sketch their partitions; the driver merges, in any order.
/// let mut merged = ProfileSketch::from_dataset(&part(0, 0.0)?, 400)?;
/// merged.merge(&ProfileSketch::from_dataset(&part(2000, 0.0)?, 400)?)?;
/// let profile = merged.to_profile(&ProfileConfig::default(), 10_000)?;
/// assert_eq!(profile.columns[0].rows, 4000);
/// assert!(profile.compare(&part(0, 40.0)?, &CheckedDriftConfig::default())?.dataset.drifted);
/// assert!(!profile.compare(&part(500, 0.0)?, &CheckedDriftConfig::default())?.dataset.drifted);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSketch {
    /// One sketch per feature column, in the dataset's column order.
    pub columns: Vec<ColumnSketch>,
}

impl ProfileSketch {
    /// Sketches every feature column of `data` (one partition) with KLL accuracy parameter
    /// `k` (see [`QuantileSketch::new`]; [`crate::DEFAULT_SKETCH_K`] is a good start).
    pub fn from_dataset(data: &Dataset, k: u16) -> Result<Self> {
        let empty = QuantileSketch::new(k)?;
        let mut columns: Vec<ColumnSketch> = data
            .feature_names()
            .zip(data.feature_kinds())
            .map(|(name, kind)| ColumnSketch {
                name: name.to_string(),
                kind,
                sketch: empty.clone(),
                categories: BTreeMap::new(),
            })
            .collect();
        for row in data.features().rows() {
            for (c, &v) in columns.iter_mut().zip(row) {
                let v = f64::from(v);
                c.sketch.insert(v);
                if c.kind == ColumnKind::Categorical && !v.is_nan() {
                    *c.categories.entry(v as i64).or_insert(0) += 1;
                }
            }
        }
        Ok(ProfileSketch { columns })
    }

    /// Sketches a dataset that arrives in chunks (a Parquet file read a row group at a time
    /// by `mlops_core::arrow_io::ParquetChunks`, a database cursor), one chunk in memory at a
    /// time: memory is one chunk plus the sketches, however many rows there are. The first
    /// error of the iterator is returned; no chunks is an error.
    ///
    /// ```
    /// use mlops_core::ndarray::Array2;
    /// use mlops_core::Dataset;
    /// use mlops_drift::ProfileSketch;
    ///
    /// let chunk = |start: usize| {
    ///     let x = Array2::from_shape_fn((500, 1), |(i, _)| (start + i) as f32);
    ///     Dataset::new(x, vec!["x".into()])
    /// };
    /// let sketch = ProfileSketch::from_chunks((0..8).map(|c| chunk(c * 500)), 200)?;
    /// assert_eq!(sketch.columns[0].sketch.count(), 4000);
    /// # Ok::<(), mlops_drift::Error>(())
    /// ```
    pub fn from_chunks(
        chunks: impl IntoIterator<Item = mlops_core::Result<Dataset>>,
        k: u16,
    ) -> Result<Self> {
        let mut merged: Option<ProfileSketch> = None;
        for chunk in chunks {
            let part = ProfileSketch::from_dataset(&chunk?, k)?;
            match &mut merged {
                None => merged = Some(part),
                Some(m) => m.merge(&part)?,
            }
        }
        merged.ok_or_else(|| {
            Error::invalid(
                "ProfileSketch::from_chunks chunks",
                "none",
                "at least one chunk of rows",
            )
        })
    }

    /// Adds `other`'s values (another partition of the same columns). Counts are exact in any
    /// order; the numeric sketches are within their rank error whatever the order or grouping
    /// of merges.
    pub fn merge(&mut self, other: &ProfileSketch) -> Result<()> {
        let names = |p: &ProfileSketch| -> Vec<(String, ColumnKind)> {
            p.columns.iter().map(|c| (c.name.clone(), c.kind)).collect()
        };
        if names(self) != names(other) {
            return Err(Error::invalid(
                "ProfileSketch::merge other columns",
                format!("{:?}", names(other)),
                format!(
                    "the same columns and kinds as this sketch: {:?}",
                    names(self)
                ),
            ));
        }
        for (mine, theirs) in self.columns.iter_mut().zip(&other.columns) {
            mine.sketch.merge(&theirs.sketch)?;
            for (code, count) in &theirs.categories {
                *mine.categories.entry(*code).or_insert(0) += count;
            }
        }
        Ok(())
    }

    /// The largest gap, over the numeric columns, between the ECDF of a profile made by
    /// [`ProfileSketch::to_profile`] with `representatives` values and the exact reference
    /// ECDF; a KS statistic against that profile is within this of the exact one.
    pub fn ks_error_bound(&self, representatives: usize) -> f64 {
        self.columns
            .iter()
            .filter(|c| c.kind != ColumnKind::Categorical)
            .map(|c| c.sketch.rank_error() + 1.0 / representatives.max(1) as f64)
            .fold(0.0, f64::max)
    }

    /// A reference profile: exact row, missing and category counts; each numeric column stood
    /// for by `representatives` values (from 2 to [`MAX_REPRESENTATIVES`]) at evenly spaced ranks of its sketch (all
    /// of its values when it has fewer).
    pub fn to_profile(
        &self,
        config: &ProfileConfig,
        representatives: usize,
    ) -> Result<ReferenceProfile> {
        if !(2..=MAX_REPRESENTATIVES).contains(&representatives) {
            return Err(Error::invalid(
                "ProfileSketch::to_profile representatives",
                representatives,
                format!("from 2 to {MAX_REPRESENTATIVES}"),
            ));
        }
        config.validate()?;
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let (values, present) = if c.kind == ColumnKind::Categorical {
                    let atoms: Vec<(f64, u64)> =
                        c.categories.iter().map(|(k, n)| (*k as f64, *n)).collect();
                    let present = atoms.iter().map(|a| a.1).sum::<u64>() as usize;
                    (spread(&atoms, representatives), present)
                } else {
                    // Every value while the sketch is exact and small, else `representatives`
                    // values at evenly spaced ranks.
                    let n = c.sketch.count() as usize;
                    let m = if c.sketch.is_exact() && n <= representatives {
                        n
                    } else {
                        representatives
                    };
                    (c.sketch.quantiles_at(m), n)
                };
                let mut profile =
                    ColumnProfile::fit(&c.name, c.kind, values.into_iter(), config.bins)?;
                profile.missing = c.sketch.missing() as usize;
                profile.rows = present + profile.missing;
                if c.kind != ColumnKind::Categorical && profile.sorted.len() < present {
                    // The stated bound on the representatives' ECDF, and the Wasserstein gap
                    // it implies over the sketch's exact range.
                    profile.ecdf_error =
                        c.sketch.rank_error() + 1.0 / representatives.max(1) as f64;
                    let range = match (c.sketch.quantile(0.0), c.sketch.quantile(1.0)) {
                        (Some(lo), Some(hi)) => hi - lo,
                        _ => 0.0,
                    };
                    profile.wasserstein_error = profile.ecdf_error * range;
                }
                if c.kind == ColumnKind::Categorical {
                    profile.categories = c.categories.keys().copied().collect();
                    profile.counts = c.categories.values().copied().collect();
                }
                Ok(profile)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ReferenceProfile {
            config: *config,
            columns,
        })
    }
}

/// `m` values at ranks `⌊(k + ½) n / m⌋` of the distribution given by sorted `(value, count)`
/// atoms (every value, repeated, when `n <= m`).
fn spread(atoms: &[(f64, u64)], m: usize) -> Vec<f64> {
    let n: u64 = atoms.iter().map(|a| a.1).sum();
    if n <= m as u64 {
        return atoms
            .iter()
            .flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize))
            .collect();
    }
    let mut out = Vec::with_capacity(m);
    let mut atom = atoms.iter();
    let mut current = atom.next();
    let mut seen = current.map_or(0, |a| a.1);
    for k in 0..m as u64 {
        let rank = ((2 * k + 1) as u128 * n as u128 / (2 * m as u128)) as u64;
        while seen <= rank {
            current = atom.next();
            seen += current.map_or(u64::MAX / 2, |a| a.1);
        }
        if let Some(&(v, _)) = current {
            out.push(v);
        }
    }
    out
}
