//! A mergeable quantile sketch for building drift profiles over partitions (a Spark,
//! DataFusion or Flink job sketches each partition, then merges).
//!
//! Values are counted in logarithmic buckets of relative width α (DDSketch's mapping: bucket
//! `k` holds magnitudes in `(γ^(k-1), γ^k]`, `γ = (1+α)/(1-α)`), one store per sign, plus a
//! bucket for zero. The sketch is a function of the multiset of values alone, so merging is
//! adding counts: exact, deterministic and independent of order and grouping. To stay under
//! `max_buckets` (default 1,300 buckets of 12 bytes: under 16 KB), the smallest magnitudes
//! are folded into the zero bucket below a floor that only rises; merged floors are the
//! maximum of the parts', so merge order still does not matter.
//!
//! **KS error bound.** Within a bucket, a sample's true ECDF rises by at most that bucket's
//! share of the sample, and the sketch places the whole share at one point inside the bucket.
//! So the sketched ECDF is within `max_share` of the true one everywhere, and a KS statistic
//! computed from two sketches is within `max_share(a) + max_share(b)` of the exact one.
//! [`QuantileSketch::ks_statistic`] returns that bound with the statistic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest magnitude with its own bucket; smaller values count as zero.
const MIN_MAGNITUDE: f64 = 1e-300;

/// A mergeable, deterministic quantile sketch of one column.
///
/// ```
/// use mlops_drift::QuantileSketch;
///
/// let values: Vec<f64> = (0..10_000).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
/// let mut left = QuantileSketch::new(0.01, 1300)?;
/// let mut right = QuantileSketch::new(0.01, 1300)?;
/// values[..4000].iter().for_each(|v| left.insert(*v));
/// values[4000..].iter().for_each(|v| right.insert(*v));
/// let mut merged = right.clone();
/// merged.merge(&left)?;
/// let mut other_order = left.clone();
/// other_order.merge(&right)?;
/// assert_eq!(merged, other_order);
/// assert_eq!(merged.count(), 10_000);
/// assert!(merged.size_bytes() <= 16 * 1024);
/// let whole = QuantileSketch::from_values(&values, 0.01, 1300)?;
/// let ks = merged.ks_statistic(&whole);
/// assert!(ks.statistic <= ks.error_bound);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    alpha: f64,
    max_buckets: usize,
    /// Magnitude buckets with keys below this are folded into `zero`.
    floor: i32,
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zero: u64,
    missing: u64,
}

/// A KS statistic between two sketches, with its guaranteed error bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SketchKs {
    /// The KS statistic of the two sketched distributions.
    pub statistic: f64,
    /// `|statistic - exact KS| <= error_bound`.
    pub error_bound: f64,
}

impl QuantileSketch {
    /// An empty sketch with relative accuracy `alpha` in (0, 0.5) and at most `max_buckets`
    /// buckets (at least 16).
    pub fn new(alpha: f64, max_buckets: usize) -> Result<Self> {
        if !(alpha > 0.0 && alpha < 0.5) {
            return Err(Error::invalid(
                "QuantileSketch.alpha",
                alpha,
                "a number in (0, 0.5)",
            ));
        }
        if max_buckets < 16 {
            return Err(Error::invalid(
                "QuantileSketch.max_buckets",
                max_buckets,
                "at least 16",
            ));
        }
        Ok(QuantileSketch {
            alpha,
            max_buckets,
            floor: i32::MIN,
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            zero: 0,
            missing: 0,
        })
    }

    /// A sketch of `values` (NaN counted as missing).
    pub fn from_values(values: &[f64], alpha: f64, max_buckets: usize) -> Result<Self> {
        let mut s = Self::new(alpha, max_buckets)?;
        values.iter().for_each(|v| s.insert(*v));
        Ok(s)
    }

    fn gamma(&self) -> f64 {
        (1.0 + self.alpha) / (1.0 - self.alpha)
    }

    fn key(&self, magnitude: f64) -> i32 {
        (magnitude.ln() / self.gamma().ln()).ceil() as i32
    }

    /// The value a bucket stands for: within relative α of every value in it.
    fn representative(&self, key: i32) -> f64 {
        let g = self.gamma();
        2.0 * g.powi(key) / (g + 1.0)
    }

    /// Adds one value (NaN counts as missing; ±∞ go to the extreme buckets).
    pub fn insert(&mut self, value: f64) {
        if value.is_nan() {
            self.missing += 1;
            return;
        }
        let magnitude = value.abs().min(f64::MAX);
        if magnitude < MIN_MAGNITUDE {
            self.zero += 1;
            return;
        }
        let key = self.key(magnitude);
        if key < self.floor {
            self.zero += 1;
            return;
        }
        let store = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        *store.entry(key).or_insert(0) += 1;
        self.enforce_budget();
    }

    /// Adds `other`'s counts. Both must have the same α and bucket budget.
    pub fn merge(&mut self, other: &QuantileSketch) -> Result<()> {
        if self.alpha != other.alpha || self.max_buckets != other.max_buckets {
            return Err(Error::invalid(
                "QuantileSketch::merge other (alpha, max_buckets)",
                format!("({}, {})", other.alpha, other.max_buckets),
                format!("({}, {}) as this sketch", self.alpha, self.max_buckets),
            ));
        }
        self.zero += other.zero;
        self.missing += other.missing;
        for (k, c) in &other.positive {
            *self.positive.entry(*k).or_insert(0) += c;
        }
        for (k, c) in &other.negative {
            *self.negative.entry(*k).or_insert(0) += c;
        }
        self.raise_floor(self.floor.max(other.floor));
        self.enforce_budget();
        Ok(())
    }

    /// Folds every bucket below `floor` into the zero bucket.
    fn raise_floor(&mut self, floor: i32) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        for store in [&mut self.positive, &mut self.negative] {
            let keep = store.split_off(&floor);
            self.zero += store.values().sum::<u64>();
            *store = keep;
        }
    }

    fn enforce_budget(&mut self) {
        while self.positive.len() + self.negative.len() > self.max_buckets {
            let lowest = match (self.positive.keys().next(), self.negative.keys().next()) {
                (Some(&a), Some(&b)) => a.min(b),
                (Some(&a), None) => a,
                (None, Some(&b)) => b,
                (None, None) => return,
            };
            self.raise_floor(lowest + 1);
        }
    }

    /// Values counted (missing excluded).
    pub fn count(&self) -> u64 {
        self.zero + self.positive.values().sum::<u64>() + self.negative.values().sum::<u64>()
    }

    /// Missing values seen.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Approximate serialized size: 12 bytes per bucket plus a fixed header.
    pub fn size_bytes(&self) -> usize {
        64 + 12 * (self.positive.len() + self.negative.len())
    }

    /// The sketched distribution as (value, count) in increasing value order.
    pub(crate) fn atoms(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        for (k, c) in self.negative.iter().rev() {
            out.push((-self.representative(*k), *c));
        }
        if self.zero > 0 {
            out.push((0.0, self.zero));
        }
        for (k, c) in &self.positive {
            out.push((self.representative(*k), *c));
        }
        out
    }

    /// Largest share of the values held by one bucket (the zero bucket included).
    pub fn max_bucket_share(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        self.atoms().iter().map(|(_, c)| *c).max().unwrap_or(0) as f64 / n as f64
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), within relative α of a true sample quantile unless it
    /// falls in the folded zero bucket; `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (n - 1) as f64).floor() as u64;
        let mut seen = 0;
        for (v, c) in self.atoms() {
            seen += c;
            if seen > rank {
                return Some(v);
            }
        }
        None
    }

    /// Two-sided KS statistic between the two sketched distributions, with the bound on its
    /// distance from the exact statistic of the underlying samples.
    pub fn ks_statistic(&self, other: &QuantileSketch) -> SketchKs {
        let (a, b) = (self.atoms(), other.atoms());
        let (na, nb) = (self.count().max(1) as f64, other.count().max(1) as f64);
        let (mut i, mut j) = (0, 0);
        let (mut ca, mut cb) = (0u64, 0u64);
        let mut d: f64 = 0.0;
        while i < a.len() || j < b.len() {
            let v = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.0.min(y.0),
                (Some(x), None) => x.0,
                (None, Some(y)) => y.0,
                (None, None) => break,
            };
            while i < a.len() && a[i].0 <= v {
                ca += a[i].1;
                i += 1;
            }
            while j < b.len() && b[j].0 <= v {
                cb += b[j].1;
                j += 1;
            }
            d = d.max((ca as f64 / na - cb as f64 / nb).abs());
        }
        SketchKs {
            statistic: d,
            error_bound: self.max_bucket_share() + other.max_bucket_share(),
        }
    }
}
