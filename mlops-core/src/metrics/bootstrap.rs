//! Seeded percentile-bootstrap confidence intervals for any metric.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ScoredSamples;
use crate::error::{Error, Result};

/// The most resamples a [`BootstrapConfig`] may ask for (a count from a file or a request
/// sizes an allocation).
pub const MAX_RESAMPLES: usize = 1_000_000;

/// How to bootstrap: resample rows with replacement `n_resamples` times from a ChaCha8 stream
/// seeded with `seed`, and take the percentile interval at `confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Number of resamples, from 10 to [`MAX_RESAMPLES`].
    pub n_resamples: usize,
    /// Two-sided confidence level, in (0, 1).
    pub confidence: f64,
    /// RNG seed: the same seed and data give the same interval.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            n_resamples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

impl BootstrapConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(10..=MAX_RESAMPLES).contains(&self.n_resamples) {
            return Err(Error::invalid(
                "BootstrapConfig.n_resamples",
                self.n_resamples,
                format!("from 10 to {MAX_RESAMPLES}"),
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(Error::invalid(
                "BootstrapConfig.confidence",
                self.confidence,
                "a number strictly between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// A point estimate with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// The metric on the full sample.
    pub estimate: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Confidence level.
    pub confidence: f64,
    /// Resamples on which the metric was defined (a resample with one class has no AUC).
    pub resamples_used: usize,
}

/// Linear-interpolated quantile of sorted data (numpy's default method).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Percentile bootstrap interval of `metric` on `samples`.
///
/// Resamples on which the metric is undefined (an error, such as a resample with one class for
/// ROC AUC) are skipped and counted out of `resamples_used`; when more than half are undefined
/// the result is an error.
///
/// ```
/// use mlops_core::metrics::{bootstrap_ci, BootstrapConfig, ScoredSamples};
///
/// let labels: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
/// let scores: Vec<f64> = (0..200).map(|i| (i % 2) as f64 * 0.3 + (i % 7) as f64 / 10.0).collect();
/// let s = ScoredSamples::new(&labels, &scores, None)?;
/// let ci = bootstrap_ci(&s, &BootstrapConfig::default(), |r| r.roc_auc())?;
/// assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn bootstrap_ci(
    samples: &ScoredSamples,
    config: &BootstrapConfig,
    metric: impl Fn(&ScoredSamples) -> Result<f64>,
) -> Result<ConfidenceInterval> {
    config.validate()?;
    let estimate = metric(samples)?;
    let n = samples.len();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut indices = vec![0usize; n];
    let mut resample = samples.clone();
    let mut stats = Vec::with_capacity(config.n_resamples);
    for _ in 0..config.n_resamples {
        for slot in indices.iter_mut() {
            *slot = rng.random_range(0..n);
        }
        resample.fill_from(samples, &indices);
        if let Ok(v) = metric(&resample) {
            if v.is_finite() {
                stats.push(v);
            }
        }
    }
    if stats.len() * 2 < config.n_resamples {
        return Err(Error::UndefinedMetric {
            metric: "bootstrap interval".into(),
            reason: format!(
                "the metric was defined on only {} of {} resamples; expected at least half (too few rows of one class?)",
                stats.len(),
                config.n_resamples
            ),
        });
    }
    stats.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - config.confidence;
    tracing::debug!(resamples = stats.len(), "bootstrap interval computed");
    Ok(ConfidenceInterval {
        estimate,
        lower: quantile_sorted(&stats, alpha / 2.0),
        upper: quantile_sorted(&stats, 1.0 - alpha / 2.0),
        confidence: config.confidence,
        resamples_used: stats.len(),
    })
}
