//! A sliding window over one column's stream, tested against the column's reference profile.

use std::collections::VecDeque;

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
    pub pvalue: f64,
    /// `pvalue < alpha`.
    pub drifted: bool,
}

/// A sliding window over one column, KS-tested against the reference profile every `step`
/// values. Arriving values go into a ring buffer (constant time); at each test the window is
/// copied and sorted, and its values are ranked in the reference's sorted values by a forward
/// gallop, so the reference is never re-sorted or re-scanned. Per value this costs
/// `O((w / step) log w)`: a few nanoseconds for tumbling windows (`step == window`).
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
    config: WindowConfig,
    arrivals: VecDeque<f64>,
    scratch: Vec<f64>,
    seen: u64,
    since_test: usize,
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
        Ok(WindowedDetector {
            reference: reference.sorted.clone(),
            config,
            arrivals: VecDeque::with_capacity(config.window),
            scratch: Vec::with_capacity(config.window),
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
        if self.arrivals.len() == self.config.window {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(value);
        self.since_test += 1;
        if self.arrivals.len() < self.config.window || self.since_test < self.config.step {
            return None;
        }
        self.since_test = 0;
        self.scratch.clear();
        self.scratch.extend(self.arrivals.iter().copied());
        self.scratch.sort_unstable_by(f64::total_cmp);
        let d = self.statistic();
        let r = crate::stats::ks_pvalue(
            d,
            self.reference.len() as u64,
            self.scratch.len() as u64,
            crate::stats::Alternative::TwoSided,
            self.config.ks_method,
        );
        Some(WindowResult {
            position: self.seen,
            statistic: r.statistic,
            pvalue: r.pvalue,
            drifted: r.pvalue < self.config.alpha,
        })
    }

    /// Two-sided KS statistic of the window against the reference: the supremum of
    /// `|F_ref - F_win|` is reached at a window value or just before one, and between two
    /// window values `F_win` is constant while `F_ref` grows.
    fn statistic(&self) -> f64 {
        let (n, m) = (self.reference.len() as f64, self.scratch.len() as f64);
        let mut d: f64 = 0.0;
        let mut i = 0;
        // The window is sorted, so reference positions only move forward: gallop from the
        // last one (O(w log(n/w)) and cache-friendly) instead of a fresh binary search.
        let mut pos = 0usize;
        while i < self.scratch.len() {
            let v = self.scratch[i];
            let mut j = i + 1;
            while j < self.scratch.len() && self.scratch[j] == v {
                j += 1;
            }
            pos = gallop(&self.reference, pos, |r| r < v);
            let below = pos as f64 / n; // F_ref(v-)
            pos = gallop(&self.reference, pos, |r| r <= v);
            let upto = pos as f64 / n; // F_ref(v)
            d = d
                .max((below - i as f64 / m).abs())
                .max((upto - j as f64 / m).abs());
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
