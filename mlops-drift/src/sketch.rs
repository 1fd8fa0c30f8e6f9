//! A mergeable quantile sketch for building drift profiles over partitions (a Spark,
//! DataFusion or Flink job sketches each partition, then merges): Apache DataSketches' KLL
//! sketch (the `datasketches` crate), whose rank error does not depend on where the data sit.
//!
//! **Why KLL.** A sketch that buckets by relative magnitude (DDSketch's mapping) has a rank
//! error that depends on the data's location: Unix times, years or temperatures in kelvin fall
//! into a handful of buckets and a real shift sketches as none. KLL's error is stated in rank
//! space, for any distribution: the sketched ECDF is within [`QuantileSketch::rank_error`] of
//! the exact one (DataSketches' normalized rank error for the sketch's `k`, at 99% confidence;
//! exact, error 0, while the sketch still holds every value).
//!
//! **Interchange.** [`QuantileSketch::to_bytes`] writes DataSketches' compact KLL image of
//! doubles, the format the Java, C++ and Python libraries read and write
//! (`datasketches.kll_doubles_sketch.deserialize` in Python), so sketches made by a Spark or
//! Python job merge with ours. Missing values are counted beside the KLL image.
//!
//! **KS error bound.** A KS statistic computed from two sketches is within
//! `rank_error(a) + rank_error(b)` (plus `2 / GRID`, the resolution of the comparison) of the
//! exact statistic of the underlying samples. [`QuantileSketch::ks_statistic`] returns that
//! bound with the statistic.
//!
//! KLL is randomized (its compactions keep odd or even items by a coin flip): two sketches of
//! the same data, or two merge orders, may differ, each within the bound.

use base64::Engine as _;
use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default `k`: a normalized rank error of about 0.8% and under 12 KB serialized.
pub const DEFAULT_K: u16 = 400;

/// Rank points per sketch at which [`QuantileSketch::ks_statistic`] compares two sketches.
const GRID: usize = 4096;

/// A mergeable quantile sketch of one column (KLL over `f64`, plus a missing-value count).
///
/// ```
/// use mlops_drift::QuantileSketch;
///
/// let values: Vec<f64> = (0..100_000).map(|i| 1.7e9 + (i as f64 * 0.7).sin() * 1e5).collect();
/// let mut left = QuantileSketch::new(400)?;
/// let mut right = QuantileSketch::new(400)?;
/// values[..40_000].iter().for_each(|v| left.insert(*v));
/// values[40_000..].iter().for_each(|v| right.insert(*v));
/// left.merge(&right)?;
/// assert_eq!(left.count(), 100_000);
/// assert!(left.to_bytes().len() < 12 * 1024);
/// let whole = QuantileSketch::from_values(&values, 400)?;
/// let ks = left.ks_statistic(&whole);
/// assert!(ks.statistic <= ks.error_bound);
/// // The bytes are DataSketches' own KLL image.
/// let again = QuantileSketch::from_bytes(&left.to_bytes(), left.missing())?;
/// assert_eq!(again.count(), 100_000);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileSketch {
    kll: KllSketch<KllFloat<f64>>,
    missing: u64,
}

/// A KS statistic between two sketches, with its error bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SketchKs {
    /// The KS statistic of the two sketched distributions.
    pub statistic: f64,
    /// `|statistic - exact KS| <= error_bound` (with the sketches' 99% confidence).
    pub error_bound: f64,
}

fn sketch_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(what, e, "a valid DataSketches KLL sketch of doubles")
}

impl QuantileSketch {
    /// An empty sketch with accuracy parameter `k` (8 to 65,535; DataSketches' default is 200,
    /// ours [`DEFAULT_K`]); a larger `k` is more accurate and larger (see
    /// [`QuantileSketch::rank_error`] and [`QuantileSketch::size_bytes`]).
    pub fn new(k: u16) -> Result<Self> {
        let kll = KllSketch::new(k)
            .map_err(|e| Error::invalid("QuantileSketch k", k, format!("8 to 65535 ({e})")))?;
        Ok(QuantileSketch { kll, missing: 0 })
    }

    /// A sketch of `values` (NaN counted as missing).
    pub fn from_values(values: &[f64], k: u16) -> Result<Self> {
        let mut s = Self::new(k)?;
        values.iter().for_each(|v| s.insert(*v));
        Ok(s)
    }

    /// Adds one value (NaN counts as missing; ±∞ are values like any other).
    pub fn insert(&mut self, value: f64) {
        match KllFloat::<f64>::new(value) {
            Ok(v) => self.kll.update(v),
            Err(_) => self.missing += 1,
        }
    }

    /// Adds `other`'s values (sketches of any `k` merge; the result has the larger error).
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<()> {
        self.kll
            .merge(&other.kll)
            .map_err(|e| sketch_error("QuantileSketch::merge other", e))?;
        self.missing += other.missing;
        Ok(())
    }

    /// Values counted (missing excluded).
    pub fn count(&self) -> u64 {
        self.kll.n()
    }

    /// Missing values seen.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The accuracy parameter.
    pub fn k(&self) -> u16 {
        self.kll.k()
    }

    /// Whether the sketch still holds every value (then its ranks are exact).
    pub fn is_exact(&self) -> bool {
        !self.kll.is_estimation_mode()
    }

    /// The bound on `|sketched rank - exact rank|` of any value: 0 while the sketch is exact,
    /// else DataSketches' normalized rank error for this sketch (99% confidence).
    pub fn rank_error(&self) -> f64 {
        if self.is_exact() {
            0.0
        } else {
            self.kll.normalized_rank_error()
        }
    }

    /// DataSketches' compact KLL image of the values (what `kll_doubles_sketch.serialize()`
    /// writes in Python); the missing count is not part of it.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.kll.serialize()
    }

    /// A sketch from a DataSketches KLL image of doubles (written by any DataSketches
    /// library) and a count of missing values.
    pub fn from_bytes(bytes: &[u8], missing: u64) -> Result<Self> {
        let kll =
            KllSketch::deserialize(bytes).map_err(|e| sketch_error("QuantileSketch bytes", e))?;
        Ok(QuantileSketch { kll, missing })
    }

    /// Serialized size in bytes (the KLL image).
    pub fn size_bytes(&self) -> usize {
        self.to_bytes().len()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1; `None` for an empty sketch or a `q` outside).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.kll
            .quantile(q, SearchCriteria::Inclusive)
            .ok()
            .flatten()
            .map(KllFloat::into_inner)
    }

    /// `m` values at the evenly spaced ranks `(i + ½) / m` of the sketched distribution, in
    /// increasing order (empty for an empty sketch).
    pub fn quantiles_at(&self, m: usize) -> Vec<f64> {
        let ranks: Vec<f64> = (0..m).map(|i| (i as f64 + 0.5) / m as f64).collect();
        self.kll
            .sorted_view()
            .quantiles(&ranks, SearchCriteria::Inclusive)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(KllFloat::into_inner)
            .collect()
    }

    /// The sketched ECDF at `x`: the share of values `<= x` (0 for an empty sketch).
    pub fn cdf(&self, x: f64) -> f64 {
        KllFloat::<f64>::new(x)
            .ok()
            .and_then(|x| self.kll.rank(&x, SearchCriteria::Inclusive))
            .unwrap_or(0.0)
    }

    /// Two-sided KS statistic between the two sketched distributions, with the bound on its
    /// distance from the exact statistic of the underlying samples.
    pub fn ks_statistic(&self, other: &QuantileSketch) -> SketchKs {
        let (va, vb) = (self.kll.sorted_view(), other.kll.sorted_view());
        let exact = self.is_exact() && other.is_exact();
        // Exact sketches: every value is a comparison point. Else the quantiles of both on a
        // fine rank grid (a retained item missed moves its CDF by under 1/GRID).
        let mut points: Vec<f64> = if exact {
            let (na, nb) = (self.count() as usize, other.count() as usize);
            let mut p = self.quantiles_at(na);
            p.extend(other.quantiles_at(nb));
            p
        } else {
            let mut p = self.quantiles_at(GRID);
            p.extend(other.quantiles_at(GRID));
            p
        };
        points.sort_by(f64::total_cmp);
        points.dedup();
        let mut d: f64 = 0.0;
        for x in points
            .into_iter()
            .filter_map(|x| KllFloat::<f64>::new(x).ok())
        {
            let a = va.rank(&x, SearchCriteria::Inclusive).unwrap_or(0.0);
            let b = vb.rank(&x, SearchCriteria::Inclusive).unwrap_or(0.0);
            d = d.max((a - b).abs());
        }
        let grid = if exact { 0.0 } else { 2.0 / GRID as f64 };
        SketchKs {
            statistic: d,
            error_bound: self.rank_error() + other.rank_error() + grid,
        }
    }
}

/// The serde form: `k`, the missing count and the DataSketches image in base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SketchForm {
    format: String,
    missing: u64,
    kll_base64: String,
}

const FORMAT: &str = "datasketches-kll-doubles";

impl Serialize for QuantileSketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SketchForm {
            format: FORMAT.to_string(),
            missing: self.missing,
            kll_base64: base64::engine::general_purpose::STANDARD.encode(self.to_bytes()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for QuantileSketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let form = SketchForm::deserialize(d)?;
        if form.format != FORMAT {
            return Err(D::Error::custom(format!(
                "sketch format `{}`: expected `{FORMAT}`",
                form.format
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&form.kll_base64)
            .map_err(|e| D::Error::custom(format!("sketch kll_base64: {e}")))?;
        QuantileSketch::from_bytes(&bytes, form.missing).map_err(D::Error::custom)
    }
}
