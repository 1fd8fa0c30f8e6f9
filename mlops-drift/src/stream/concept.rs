//! Concept-drift detectors on a stream of errors or losses.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a detector says after a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftSignal {
    /// Nothing to report.
    Stable,
    /// The error is rising (DDM's warning level): start collecting data for a new model.
    Warning,
    /// Drift detected; the detector has reset (or shrunk its window) and goes on.
    Drift,
}

impl DriftSignal {
    /// Every variant, in declaration order.
    pub const ALL: [DriftSignal; 3] = [
        DriftSignal::Stable,
        DriftSignal::Warning,
        DriftSignal::Drift,
    ];

    /// The serialized name (`stable`, `warning`, `drift`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftSignal::Stable => "stable",
            DriftSignal::Warning => "warning",
            DriftSignal::Drift => "drift",
        }
    }
}

/// A detector fed one value at a time (for example 1.0 when the model was wrong, 0.0 when it
/// was right).
pub trait ConceptDriftDetector: Send {
    /// Feeds one value and says whether drift is detected.
    fn update(&mut self, value: f64) -> DriftSignal;
    /// Forgets everything seen.
    fn reset(&mut self);
}

/// One bucket of ADWIN's exponential histogram: `2^row` values summarized.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    total: f64,
    variance: f64, // sum of squared deviations from the bucket mean
}

/// ADWIN (Bifet & Gavaldà 2007, ADWIN2 with exponential histograms): keeps a window whose
/// length adapts, and drops its older part whenever the means of two sub-windows differ by
/// more than the Hoeffding-style bound `ε = sqrt(2 r σ² L) + 2 r L / 3` with
/// `r = 1/(n0 - 4) + 1/(n1 - 4)` (sub-window sizes less the minimum length 5, plus 1) and
/// `L = ln(2 ln(n) / δ)`, river's (and the Cython ADWIN's) bound. Cuts are checked every
/// `clock` values; after a drift the detector starts over, as river's does. Drift indices
/// equal river 0.26's on the fixed streams of `tests/river.rs`.
///
/// ```
/// use mlops_drift::stream::{Adwin, ConceptDriftDetector, DriftSignal};
///
/// let mut adwin = Adwin::new(0.002)?;
/// let mut detected_at = None;
/// for t in 0..4000u64 {
///     let error = if t < 2000 { (t % 10 == 0) as u8 } else { (t % 2 == 0) as u8 }; // 10% -> 50%
///     if adwin.update(f64::from(error)) == DriftSignal::Drift && detected_at.is_none() {
///         detected_at = Some(t);
///     }
/// }
/// let t = detected_at.expect("drift found");
/// assert!(t >= 2000 && t < 2200, "{t}");
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Adwin {
    delta: f64,
    clock: u64,
    max_buckets: usize,
    min_window: u64,
    rows: Vec<VecDeque<Bucket>>, // rows[i]: buckets of 2^i values, newest at the front
    total: f64,
    variance: f64, // sum of squared deviations of the window
    width: u64,
    seen: u64,
}

impl Adwin {
    /// ADWIN with confidence `delta` (river's default 0.002), clock 32, 5 buckets per row,
    /// sub-windows of at least 5 values.
    pub fn new(delta: f64) -> Result<Self> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(Error::invalid("Adwin.delta", delta, "a number in (0, 1)"));
        }
        Ok(Adwin {
            delta,
            clock: 32,
            max_buckets: 5,
            min_window: 5,
            rows: vec![VecDeque::new()],
            total: 0.0,
            variance: 0.0,
            width: 0,
            seen: 0,
        })
    }

    /// Values in the current window.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Mean of the current window.
    pub fn mean(&self) -> f64 {
        if self.width == 0 {
            0.0
        } else {
            self.total / self.width as f64
        }
    }

    fn insert(&mut self, value: f64) {
        if self.width > 0 {
            let mean = self.mean();
            let n = self.width as f64;
            self.variance += n * (value - mean).powi(2) / (n + 1.0);
        }
        self.width += 1;
        self.total += value;
        self.rows[0].push_front(Bucket {
            total: value,
            variance: 0.0,
        });
        // Compress: a row with too many buckets merges its two oldest into the next row.
        let mut i = 0;
        while i < self.rows.len() {
            if self.rows[i].len() <= self.max_buckets {
                break;
            }
            let size = (1u64 << i) as f64;
            let (Some(b1), Some(b2)) = (self.rows[i].pop_back(), self.rows[i].pop_back()) else {
                break;
            };
            let (m1, m2) = (b1.total / size, b2.total / size);
            let merged = Bucket {
                total: b1.total + b2.total,
                variance: b1.variance
                    + b2.variance
                    + size * size * (m1 - m2).powi(2) / (2.0 * size),
            };
            if i + 1 == self.rows.len() {
                self.rows.push(VecDeque::new());
            }
            self.rows[i + 1].push_front(merged);
            i += 1;
        }
    }

    /// Removes the oldest bucket.
    fn drop_oldest(&mut self) {
        let Some(i) = (0..self.rows.len())
            .rev()
            .find(|&i| !self.rows[i].is_empty())
        else {
            return;
        };
        let Some(b) = self.rows[i].pop_back() else {
            return;
        };
        let size = (1u64 << i) as f64;
        let n = self.width as f64;
        let mean_b = b.total / size;
        let mean_rest = (self.total - b.total) / (n - size).max(1.0);
        self.variance -= b.variance + size * (n - size) / n * (mean_b - mean_rest).powi(2);
        self.variance = self.variance.max(0.0);
        self.total -= b.total;
        self.width -= size as u64;
    }

    /// Whether some split of the window into old | new sub-windows has a significant
    /// difference of means.
    fn has_cut(&self) -> bool {
        let n = self.width as f64;
        if self.width < 2 * self.min_window {
            return false;
        }
        let var = self.variance / n;
        let ln_term = (2.0 * n.ln().max(1.0) / self.delta).ln();
        // Walk from the oldest bucket: old sub-window grows, new shrinks.
        let (mut n0, mut s0) = (0.0f64, 0.0f64);
        for i in (0..self.rows.len()).rev() {
            let size = (1u64 << i) as f64;
            for b in self.rows[i].iter().rev() {
                n0 += size;
                s0 += b.total;
                let n1 = n - n0;
                if n0 < self.min_window as f64 || n1 < self.min_window as f64 {
                    continue;
                }
                // river's (and the Cython ADWIN's) bound: harmonic sizes less the minimum
                // sub-window length.
                let min = self.min_window as f64;
                let m_recip = 1.0 / (n0 - min + 1.0) + 1.0 / (n1 - min + 1.0);
                let eps = (2.0 * m_recip * var * ln_term).sqrt() + 2.0 / 3.0 * ln_term * m_recip;
                let (mu0, mu1) = (s0 / n0, (self.total - s0) / n1);
                if (mu0 - mu1).abs() > eps {
                    return true;
                }
            }
        }
        false
    }
}

impl ConceptDriftDetector for Adwin {
    fn update(&mut self, value: f64) -> DriftSignal {
        self.insert(value);
        self.seen += 1;
        if !self.seen.is_multiple_of(self.clock) {
            return DriftSignal::Stable;
        }
        let mut drift = false;
        while self.has_cut() {
            self.drop_oldest();
            drift = true;
        }
        if drift {
            // As river does: after a drift the detector starts over on a fresh window.
            self.reset();
            DriftSignal::Drift
        } else {
            DriftSignal::Stable
        }
    }

    fn reset(&mut self) {
        self.rows = vec![VecDeque::new()];
        self.total = 0.0;
        self.variance = 0.0;
        self.width = 0;
        self.seen = 0;
    }
}

/// Page–Hinkley test for a rise in the mean (river's defaults: 30 warm-up values,
/// `delta` 0.005, `threshold` 50, forgetting `alpha` 0.9999): the cumulative sum of
/// `x - mean - delta` against its running minimum.
///
/// ```
/// use mlops_drift::stream::{ConceptDriftDetector, DriftSignal, PageHinkley};
///
/// let mut ph = PageHinkley::default();
/// let hits = (0..3000u64)
///     .map(|t| ph.update(if t < 1500 { 0.1 } else { 0.9 }))
///     .position(|s| s == DriftSignal::Drift);
/// assert!(hits.unwrap() > 1500);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PageHinkley {
    /// Values before any alarm.
    pub min_instances: u64,
    /// Magnitude of changes tolerated.
    pub delta: f64,
    /// Alarm threshold.
    pub threshold: f64,
    /// Forgetting factor of the cumulative sum.
    pub alpha: f64,
    n: u64,
    mean: f64,
    sum: f64,
    min: f64,
}

impl Default for PageHinkley {
    fn default() -> Self {
        PageHinkley {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 0.9999,
            n: 0,
            mean: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
        }
    }
}

impl PageHinkley {
    /// A detector with its parameters (see the fields).
    pub fn new(min_instances: u64, delta: f64, threshold: f64, alpha: f64) -> Self {
        PageHinkley {
            min_instances,
            delta,
            threshold,
            alpha,
            ..PageHinkley::default()
        }
    }
}

impl ConceptDriftDetector for PageHinkley {
    fn update(&mut self, value: f64) -> DriftSignal {
        self.n += 1;
        self.mean += (value - self.mean) / self.n as f64;
        self.sum = self.alpha * self.sum + (value - self.mean - self.delta);
        self.min = self.min.min(self.sum);
        if self.n >= self.min_instances && self.sum - self.min > self.threshold {
            self.reset();
            return DriftSignal::Drift;
        }
        DriftSignal::Stable
    }

    fn reset(&mut self) {
        *self = PageHinkley {
            n: 0,
            mean: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            ..*self
        };
    }
}

/// DDM, the drift detection method (Gama et al. 2004) on a 0/1 error stream: with `p` the error
/// rate and `s = sqrt(p (1-p) / n)`, warning when `p + s >= p_min + 2 s_min`, drift (and reset)
/// when `p + s >= p_min + 3 s_min`, after `warm_start` values.
///
/// ```
/// use mlops_drift::stream::{ConceptDriftDetector, Ddm, DriftSignal};
///
/// let mut ddm = Ddm::default();
/// let first = (0..4000u64)
///     .map(|t| ddm.update(if t < 2000 { (t % 10 == 0) as u8 as f64 } else { (t % 3 == 0) as u8 as f64 }))
///     .position(|s| s == DriftSignal::Drift);
/// assert!(first.unwrap() > 2000);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Ddm {
    /// Values before any signal.
    pub warm_start: u64,
    /// Warning level in standard deviations.
    pub warning_level: f64,
    /// Drift level in standard deviations.
    pub drift_level: f64,
    n: u64,
    p: f64,
    p_min: f64,
    s_min: f64,
}

impl Default for Ddm {
    fn default() -> Self {
        Ddm {
            warm_start: 30,
            warning_level: 2.0,
            drift_level: 3.0,
            n: 0,
            p: 0.0,
            p_min: f64::INFINITY,
            s_min: f64::INFINITY,
        }
    }
}

impl Ddm {
    /// A detector with its parameters (see the fields).
    pub fn new(warm_start: u64, warning_level: f64, drift_level: f64) -> Self {
        Ddm {
            warm_start,
            warning_level,
            drift_level,
            ..Ddm::default()
        }
    }
}

impl ConceptDriftDetector for Ddm {
    fn update(&mut self, value: f64) -> DriftSignal {
        self.n += 1;
        self.p += (value - self.p) / self.n as f64;
        let s = (self.p * (1.0 - self.p) / self.n as f64).sqrt();
        if self.n < self.warm_start {
            return DriftSignal::Stable;
        }
        if self.p + s <= self.p_min + self.s_min {
            self.p_min = self.p;
            self.s_min = s;
        }
        if self.p + s >= self.p_min + self.drift_level * self.s_min {
            self.reset();
            DriftSignal::Drift
        } else if self.p + s >= self.p_min + self.warning_level * self.s_min {
            DriftSignal::Warning
        } else {
            DriftSignal::Stable
        }
    }

    fn reset(&mut self) {
        *self = Ddm {
            n: 0,
            p: 0.0,
            p_min: f64::INFINITY,
            s_min: f64::INFINITY,
            ..*self
        };
    }
}
