//! A sliding window over one column's stream, tested against the column's reference profile.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profile::ColumnProfile;
use crate::stats::KsMethod;

/// Window length and how often it is tested.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Values in the window (default 1000).
    pub window: usize,
    /// Test every `step` values once the window is full (default 1000: tumbling windows).
    pub step: usize,
    /// Significance level of the KS test (default 0.05).
    pub alpha: f64,
    /// How the KS p-value is computed.
    pub ks_method: KsMethod,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            window: 1000,
            step: 1000,
            alpha: 0.05,
            ks_method: KsMethod::Auto,
        }
    }
}

/// One test of the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// Values seen so far (the window ends here).
    pub position: u64,
    /// KS statistic of the window against the reference.
    pub statistic: f64,
    /// Its p-value.
    #[serde(alias = "pvalue")]
    pub p_value: f64,
    /// `pvalue < alpha`.
    pub drifted: bool,
}

/// Reference values per fence entry: the fence of a million values is 125 KB.
const FENCE_STRIDE: usize = 64;

/// A sliding window over one column, KS-tested against the reference profile every `step`
/// values.
///
/// Each arriving value is ranked in the reference's sorted values once (a binary search),
/// and the window is kept sorted with those ranks attached: at a test, the values that left
/// are dropped and the `step` new ones (sorted) are merged in, then one linear scan gives the
/// statistic. Per value this costs `O(log n + (w / step) + log step)`; neither the reference
/// nor the window is ever re-sorted.
///
/// ```
/// use mlops_core::ColumnKind;
/// use mlops_drift::stream::{WindowConfig, WindowedDetector};
/// use mlops_drift::ColumnProfile;
///
/// let reference = ColumnProfile::fit("x", ColumnKind::Numeric, (0..5000).map(|i| (i % 100) as f64), 10)?;
/// let mut w = WindowedDetector::new(&reference, WindowConfig { window: 500, step: 100, ..Default::default() })?;
/// let mut results = Vec::new();
/// for t in 0..3000u64 {
///     let v = (t % 100) as f64 + if t >= 1500 { 30.0 } else { 0.0 };
///     results.extend(w.update(v));
/// }
/// assert!(results.iter().filter(|r| r.position <= 1500).all(|r| !r.drifted));
/// assert!(results.iter().any(|r| r.position > 1500 && r.drifted));
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WindowedDetector {
    reference: Vec<f64>,
    /// The reference's true count (a compact profile's `reference` is a summary of it), for
    /// the p-value.
    reference_count: u64,
    /// The reference summary's ECDF error bound ([`ColumnProfile::ecdf_error`]): the p-value
    /// is taken at the statistic less it, so a summary's error cannot raise an alarm.
    reference_error: f64,
    /// Every `FENCE_STRIDE`-th reference value.
    fence: Vec<f64>,
    config: WindowConfig,
    /// The window's values before the last test, sorted by value.
    sorted: Vec<Ranked>,
    /// Values that arrived since the last test, in arrival order.
    pending: Vec<Ranked>,
    merged: Vec<Ranked>,
    seen: u64,
    since_test: usize,
}

/// A window value with its place in the reference, found once on arrival.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    value: f64,
    /// Arrival number (1-based), to tell when it leaves the window.
    seq: u64,
    /// Reference values `< value`.
    below: usize,
    /// Reference values `<= value`.
    upto: usize,
}

impl WindowedDetector {
    /// A detector for `reference`'s column.
    pub fn new(reference: &ColumnProfile, config: WindowConfig) -> Result<Self> {
        if config.window < 2 || config.step == 0 {
            return Err(Error::invalid(
                "WindowConfig (window, step)",
                format!("({}, {})", config.window, config.step),
                "window >= 2 and step >= 1",
            ));
        }
        if reference.sorted.is_empty() {
            return Err(Error::invalid(
                format!("reference column `{}`", reference.name),
                "no values",
                "at least one value",
            ));
        }
        crate::report::check_ecdf_error(reference)?;
        Ok(WindowedDetector {
            reference: reference.sorted.clone(),
            reference_count: reference.present() as u64,
            reference_error: reference.ecdf_error,
            fence: reference
                .sorted
                .iter()
                .step_by(FENCE_STRIDE)
                .copied()
                .collect(),
            config,
            sorted: Vec::with_capacity(config.window),
            pending: Vec::with_capacity(config.step.min(config.window)),
            merged: Vec::with_capacity(config.window),
            seen: 0,
            since_test: 0,
        })
    }

    /// Feeds one value (NaN is skipped: missing values are the null-rate test's business);
    /// returns a result when the window is full and `step` values arrived since the last test.
    pub fn update(&mut self, value: f64) -> Option<WindowResult> {
        if value.is_nan() {
            return None;
        }
        self.seen += 1;
        let (below, upto) = self.rank(value);
        if self.pending.len() == 2 * self.config.window {
            // step > window: only the newest `window` values can be tested.
            self.pending.drain(..self.config.window);
        }
        self.pending.push(Ranked {
            value,
            seq: self.seen,
            below,
            upto,
        });
        self.since_test += 1;
        if self.seen < self.config.window as u64 || self.since_test < self.config.step {
            return None;
        }
        self.since_test = 0;
        self.refresh_window();
        let d = self.statistic();
        let r = crate::stats::ks_pvalue(
            (d - self.reference_error).max(0.0),
            self.reference_count,
            self.sorted.len() as u64,
            crate::stats::Alternative::TwoSided,
            self.config.ks_method,
        );
        // On a compact profile's summary the statistic is not on the true sizes' lattice:
        // reported as computed.
        let summarized = self.reference_count != self.reference.len() as u64;
        Some(WindowResult {
            position: self.seen,
            statistic: if summarized { d } else { r.statistic },
            p_value: r.p_value,
            drifted: r.p_value < self.config.alpha,
        })
    }

    /// Reference values `< value` and `<= value`: a binary search in the fence (small enough
    /// to stay in cache), one in the block it points to, then a gallop over ties.
    fn rank(&self, value: f64) -> (usize, usize) {
        let p = self.fence.partition_point(|f| *f < value);
        let lo = if p == 0 {
            0
        } else {
            (p - 1) * FENCE_STRIDE + 1
        };
        let hi = (p * FENCE_STRIDE).min(self.reference.len());
        let below = lo + self.reference[lo..hi].partition_point(|r| *r < value);
        (below, gallop(&self.reference, below, |r| r <= value))
    }

    /// Drops the values that left the window and merges the new ones in, keeping it sorted.
    fn refresh_window(&mut self) {
        let first = self.seen + 1 - self.config.window as u64;
        self.pending.retain(|r| r.seq >= first);
        self.pending
            .sort_unstable_by(|a, b| a.value.total_cmp(&b.value));
        self.merged.clear();
        let mut new = self.pending.iter().peekable();
        for old in self.sorted.iter().filter(|r| r.seq >= first) {
            while let Some(n) = new.next_if(|n| n.value < old.value) {
                self.merged.push(*n);
            }
            self.merged.push(*old);
        }
        self.merged.extend(new);
        self.pending.clear();
        std::mem::swap(&mut self.sorted, &mut self.merged);
    }

    /// Two-sided KS statistic of the window against the reference: the supremum of
    /// `|F_ref - F_win|` is reached at a window value or just before one, and between two
    /// window values `F_win` is constant while `F_ref` grows.
    fn statistic(&self) -> f64 {
        let (n, m) = (self.reference.len() as f64, self.sorted.len() as f64);
        let mut d: f64 = 0.0;
        let mut i = 0;
        while i < self.sorted.len() {
            let first = self.sorted[i];
            let mut j = i + 1;
            while j < self.sorted.len() && self.sorted[j].value == first.value {
                j += 1;
            }
            d = d
                .max((first.below as f64 / n - i as f64 / m).abs())
                .max((first.upto as f64 / n - j as f64 / m).abs());
            i = j;
        }
        d
    }
}

/// The partition point of `pred` in `sorted`, searching forward from `start` (where `pred`
/// is known to hold for every earlier element) with exponentially growing steps.
fn gallop(sorted: &[f64], start: usize, pred: impl Fn(f64) -> bool) -> usize {
    let mut step = 1;
    let mut lo = start;
    let mut hi = start;
    while hi < sorted.len() && pred(sorted[hi]) {
        lo = hi + 1;
        hi = start + step;
        step *= 2;
    }
    let hi = hi.min(sorted.len());
    lo + sorted[lo..hi].partition_point(|r| pred(*r))
}
