//! An online detector whose thresholds are calibrated to an expected run time (ERT), the way
//! alibi-detect's `CVMDriftOnline` calibrates: streams are simulated from the reference, and
//! the threshold at each time step is the quantile of the statistic, among simulated streams
//! that have not yet alarmed, that makes the chance of a first false alarm at that step
//! `1 / ERT`. Without drift the run length is then close to geometric with mean ERT.
//!
//! The statistic is the KS distance between the last `window` values and the reference. In
//! calibration the simulated values are reference values, whose ranks are known, so each
//! simulated window costs `O(window)`.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profile::ColumnProfile;

/// Calibration parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineConfig {
    /// Expected run time without drift, in values (default 500).
    pub ert: f64,
    /// Window of recent values compared with the reference (default 100).
    pub window: usize,
    /// Simulated streams (default 2000).
    pub n_bootstraps: usize,
    /// Steps after the window fills that get their own threshold; later steps reuse the
    /// last (default 1,500 = 3 × the default ERT). Keep it at about 3 × `ert`: a run that
    /// outlives the calibrated steps meets a held threshold, and runs then last longer than
    /// the ERT (at 0.8 × ERT the mean run length was 16% over it).
    pub calibrated_steps: usize,
    /// Seed of the simulation.
    pub seed: u64,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            ert: 500.0,
            window: 100,
            n_bootstraps: 2000,
            calibrated_steps: 1500,
            seed: 0,
        }
    }
}

/// The result of one update once the window is full.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OnlineResult {
    /// Values seen since the start (or the last reset).
    pub time: u64,
    /// KS distance of the window to the reference.
    pub statistic: f64,
    /// The threshold at this time.
    pub threshold: f64,
    /// `statistic > threshold`, or `statistic == threshold` with the step's tie probability
    /// (the KS statistic of a window is discrete: without the randomized tie the hazard would
    /// fall below 1 / ERT and runs would last longer than calibrated).
    pub drifted: bool,
}

/// KS statistic of a window given as sorted reference positions: `lo[i]`/`hi[i]` are the
/// counts of reference values `< v` and `<= v` for the i-th smallest window value `v`.
fn ks_from_ranks(sorted: &[(u32, u32)], n_ref: f64) -> f64 {
    let m = sorted.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let (lo, hi) = sorted[i];
        d = d
            .max((lo as f64 / n_ref - i as f64 / m).abs())
            .max((hi as f64 / n_ref - j as f64 / m).abs());
        i = j;
    }
    d
}

/// An online KS detector calibrated to an expected run time.
///
/// ```
/// use mlops_core::ColumnKind;
/// use mlops_drift::stream::{OnlineConfig, OnlineDetector};
/// use mlops_drift::ColumnProfile;
///
/// let reference = ColumnProfile::fit("x", ColumnKind::Numeric, (0..2000).map(|i| ((i * 37) % 101) as f64), 10)?;
/// let config = OnlineConfig { ert: 200.0, window: 50, n_bootstraps: 500, calibrated_steps: 100, seed: 1 };
/// let mut detector = OnlineDetector::calibrate(&reference, config)?;
/// let mut alarm = None;
/// for t in 0..2000u64 {
///     let v = ((t * 53) % 101) as f64 + if t >= 1000 { 40.0 } else { 0.0 };
///     if let Some(r) = detector.update(v) {
///         if r.drifted && t >= 1000 { alarm = Some(t); break; }
///     }
/// }
/// assert!(alarm.unwrap() < 1100);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OnlineDetector {
    reference: Vec<f64>,
    thresholds: Vec<f64>,
    /// Per step: the probability of an alarm when the statistic equals the threshold.
    tie_alarm: Vec<f64>,
    /// Draws the tie decisions (seeded from the config: a run is reproducible).
    rng: ChaCha8Rng,
    config: OnlineConfig,
    arrivals: VecDeque<(u32, u32)>,
    sorted: Vec<(u32, u32)>,
    time: u64,
}

impl OnlineDetector {
    /// Simulates `n_bootstraps` streams from the reference and sets one threshold per step.
    pub fn calibrate(reference: &ColumnProfile, config: OnlineConfig) -> Result<Self> {
        if !(config.ert.is_finite() && config.ert > 1.0) {
            return Err(Error::invalid(
                "OnlineConfig.ert",
                config.ert,
                "a number > 1",
            ));
        }
        if config.window < 2 || config.n_bootstraps < 10 || config.calibrated_steps == 0 {
            return Err(Error::invalid(
                "OnlineConfig (window, n_bootstraps, calibrated_steps)",
                format!(
                    "({}, {}, {})",
                    config.window, config.n_bootstraps, config.calibrated_steps
                ),
                "window >= 2, n_bootstraps >= 10, calibrated_steps >= 1",
            ));
        }
        let r = &reference.sorted;
        if r.len() < 2 {
            return Err(Error::invalid(
                format!("reference column `{}`", reference.name),
                r.len(),
                "at least two values",
            ));
        }
        // Rank bounds of each reference value, for O(1) lookup when it is drawn.
        let ranks: Vec<(u32, u32)> = r
            .iter()
            .map(|v| {
                (
                    r.partition_point(|x| x < v) as u32,
                    r.partition_point(|x| x <= v) as u32,
                )
            })
            .collect();
        let n_ref = r.len() as f64;
        let (w, steps, b) = (config.window, config.calibrated_steps, config.n_bootstraps);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        // stats[s][t]: statistic of stream s at step t (window full from step 0).
        let mut stats = vec![vec![0.0f64; steps]; b];
        for stream in stats.iter_mut() {
            let mut arrivals = VecDeque::with_capacity(w);
            let mut sorted: Vec<(u32, u32)> = Vec::with_capacity(w);
            for t in 0..(w + steps - 1) {
                let x = ranks[rng.random_range(0..r.len())];
                if arrivals.len() == w {
                    if let Some(old) = arrivals.pop_front() {
                        let at = sorted.partition_point(|v| *v < old);
                        sorted.remove(at);
                    }
                }
                arrivals.push_back(x);
                let at = sorted.partition_point(|v| *v < x);
                sorted.insert(at, x);
                if t + 1 >= w {
                    stream[t + 1 - w] = ks_from_ranks(&sorted, n_ref);
                }
            }
        }
        // Conditional quantiles: at each step, among streams without an alarm so far, the
        // threshold exceeded with probability 1/ERT.
        // The statistic is discrete (a window of w values), so many streams tie at the
        // quantile: an alarm at a tie comes with the probability that makes the hazard
        // exactly 1 / ERT among the streams still alive.
        let q = 1.0 - 1.0 / config.ert;
        let mut alive: Vec<usize> = (0..b).collect();
        let mut thresholds = Vec::with_capacity(steps);
        let mut tie_alarm = Vec::with_capacity(steps);
        #[allow(clippy::needless_range_loop)] // `t` indexes a column of the stats matrix
        for t in 0..steps {
            let mut values: Vec<f64> = alive.iter().map(|&s| stats[s][t]).collect();
            if values.is_empty() {
                break;
            }
            values.sort_unstable_by(f64::total_cmp);
            let pos = ((values.len() - 1) as f64 * q).round() as usize;
            let th = values[pos];
            let above = values.iter().filter(|v| **v > th).count() as f64;
            let equal = values.iter().filter(|v| **v == th).count() as f64;
            let target = values.len() as f64 / config.ert;
            let gamma = ((target - above) / equal).clamp(0.0, 1.0);
            thresholds.push(th);
            tie_alarm.push(gamma);
            alive.retain(|&s| {
                let v = stats[s][t];
                v < th || (v == th && rng.random::<f64>() >= gamma)
            });
        }
        tracing::debug!(
            steps = thresholds.len(),
            last = thresholds.last().copied(),
            "online detector calibrated"
        );
        Ok(OnlineDetector {
            reference: r.clone(),
            thresholds,
            tie_alarm,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7469_6573),
            config,
            arrivals: VecDeque::with_capacity(w),
            sorted: Vec::with_capacity(w),
            time: 0,
        })
    }

    /// The calibrated thresholds, one per step after the window fills.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Per step, the probability of an alarm when the statistic equals the threshold.
    pub fn tie_alarm_probabilities(&self) -> &[f64] {
        &self.tie_alarm
    }

    /// Feeds one value (NaN is skipped); returns a result once the window is full.
    pub fn update(&mut self, value: f64) -> Option<OnlineResult> {
        if value.is_nan() {
            return None;
        }
        let r = &self.reference;
        let x = (
            r.partition_point(|v| *v < value) as u32,
            r.partition_point(|v| *v <= value) as u32,
        );
        if self.arrivals.len() == self.config.window {
            if let Some(old) = self.arrivals.pop_front() {
                let at = self.sorted.partition_point(|v| *v < old);
                self.sorted.remove(at);
            }
        }
        self.arrivals.push_back(x);
        let at = self.sorted.partition_point(|v| *v < x);
        self.sorted.insert(at, x);
        self.time += 1;
        if self.arrivals.len() < self.config.window {
            return None;
        }
        let step = (self.time as usize) - self.config.window;
        let at = step.min(self.thresholds.len() - 1);
        let threshold = self.thresholds[at];
        let statistic = ks_from_ranks(&self.sorted, r.len() as f64);
        let drifted = statistic > threshold
            || (statistic == threshold && self.rng.random::<f64>() < self.tie_alarm[at]);
        Some(OnlineResult {
            time: self.time,
            statistic,
            threshold,
            drifted,
        })
    }

    /// Starts over (after an alarm has been handled).
    pub fn reset(&mut self) {
        self.arrivals.clear();
        self.sorted.clear();
        self.time = 0;
    }
}
