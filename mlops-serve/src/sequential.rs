//! Evidence that stays valid however often it is looked at: the normal-mixture confidence
//! sequence (Robbins 1970; the mixture SPRT of Johari, Pekelis and Walsh, "Always valid
//! inference", 2017), over an estimate pooled across a rollout's analysis windows.
//!
//! A fixed-level interval looked at after every window is wrong more often than its level
//! says: at 95% and four looks, an identical candidate fails a one-sided test in about one
//! rollout in five. A confidence sequence is a band around the running estimate that holds at
//! every look at once: with an estimate `θ̂` of variance `V`, mixing variance `τ²` and level
//! `α`, the true difference lies in `θ̂ ± w` at every look, except with probability at most
//! `α` over all of them, where
//!
//! ```text
//! w² = V (1 + V/τ²) (2 ln(1/α) + ln(1 + τ²/V))
//! ```
//!
//! (the set of `θ₀` whose mixture likelihood ratio `sqrt(V/(V+τ²)) exp(τ² (θ̂−θ₀)² / (2V(V+τ²)))`
//! stays under `1/α`). `τ` is where the band is tightest relative to a fixed interval: the
//! effect size a check cares about (its margin). The guarantee is exact for Gaussian
//! increments of known variance, asymptotic for estimates like DeLong's.
//!
//! Windows are pooled by inverse variance: each window's estimate `d_k` with variance `v_k`
//! adds `1/v_k` of information, and the pooled estimate `Σ(d_k/v_k) / Σ(1/v_k)` has variance
//! `1/Σ(1/v_k)`. Its weighted sum is a martingale in information time, which is what the
//! mixture bound needs.
//!
//! ```
//! use mlops_serve::sequential::{mixture_half_width, Evidence};
//!
//! let mut e = Evidence::default();
//! assert_eq!(e.interval(1e-4, 0.05), None); // nothing yet: no interval, never "fine"
//! e.add(0.004, 4e-5);
//! e.add(-0.001, 4e-5);
//! let (low, high) = e.interval(1e-4, 0.05).unwrap();
//! assert!((e.estimate().unwrap() - 0.0015).abs() < 1e-12);
//! // Wider than the fixed 95% interval of the same data (±1.96 × sqrt(2e-5) = ±0.0088).
//! assert!(high - low > 2.0 * 0.0088);
//! assert!((high - low - 2.0 * mixture_half_width(2e-5, 1e-4, 0.05)).abs() < 1e-12);
//! ```

use serde::{Deserialize, Serialize};

/// The half-width `w` of the two-sided normal-mixture confidence sequence at an estimate of
/// variance `variance`, with mixing variance `mixing_variance` (τ²) and level `alpha`
/// (see the module's formula). `f64::INFINITY` when the variance is not a positive finite
/// number, or the level is not in (0, 1): no evidence, no band.
pub fn mixture_half_width(variance: f64, mixing_variance: f64, alpha: f64) -> f64 {
    let ok = |x: f64| x.is_finite() && x > 0.0;
    if !(ok(variance) && ok(mixing_variance) && alpha > 0.0 && alpha < 1.0) {
        return f64::INFINITY;
    }
    let v = variance;
    let t2 = mixing_variance;
    (v * (1.0 + v / t2) * (2.0 * (1.0 / alpha).ln() + (1.0 + t2 / v).ln())).sqrt()
}

/// The largest variance whose band is at most `half_width` wide on each side (the variance
/// an estimate must reach to decide when it stands `half_width` from a margin), found by
/// bisection on the logarithm of the variance; `None` when `half_width` is not a positive
/// finite number or the level is not in (0, 1).
///
/// ```
/// use mlops_serve::sequential::{mixture_half_width, variance_to_reach};
///
/// let v = variance_to_reach(0.004, 1e-4, 0.025).unwrap();
/// assert!((mixture_half_width(v, 1e-4, 0.025) - 0.004).abs() < 1e-9);
/// ```
pub fn variance_to_reach(half_width: f64, mixing_variance: f64, alpha: f64) -> Option<f64> {
    if !(half_width.is_finite() && half_width > 0.0 && alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    // The half-width grows with the variance: from below 1e-300 up to a bracket above.
    let (mut low, mut high) = (-700.0_f64, (half_width * half_width).ln());
    if mixture_half_width(high.exp(), mixing_variance, alpha) <= half_width {
        return Some(high.exp());
    }
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if mixture_half_width(mid.exp(), mixing_variance, alpha) <= half_width {
            low = mid;
        } else {
            high = mid;
        }
    }
    Some(low.exp())
}

/// The mixture likelihood ratio `Λ` of the estimate `estimate` (variance `variance`)
/// against `θ₀ = null` (see the module's formula); `1/Λ`, capped at 1, is an always-valid
/// p-value for `θ = null` at this look. `None` without a positive finite variance.
pub fn mixture_likelihood_ratio(
    estimate: f64,
    variance: f64,
    mixing_variance: f64,
    null: f64,
) -> Option<f64> {
    let ok = |x: f64| x.is_finite() && x > 0.0;
    if !(ok(variance) && ok(mixing_variance) && estimate.is_finite() && null.is_finite()) {
        return None;
    }
    let (v, t2) = (variance, mixing_variance);
    let d = estimate - null;
    Some((v / (v + t2)).sqrt() * (t2 * d * d / (2.0 * v * (v + t2))).exp())
}

/// A difference (candidate − stable) measured window by window over a rollout, pooled by
/// inverse variance. Kept in the rollout's state, so a restarted controller goes on from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Σ 1/v over the windows added.
    pub information: f64,
    /// Σ d/v over the windows added.
    pub weighted_sum: f64,
    /// Windows added.
    pub windows: u32,
    /// Rows (or requests) behind the candidate's estimates, over every window.
    pub n_candidate: u64,
    /// Rows (or requests) behind stable's.
    pub n_stable: u64,
    /// Events counted over the candidate's requests (errors, for `error_rate`).
    #[serde(default)]
    pub events_candidate: u64,
    /// Events counted over stable's requests.
    #[serde(default)]
    pub events_stable: u64,
    /// The candidate's labeled rows of windows too small to judge alone (fewer than the
    /// per-class minimum), carried into the next window: at a low base rate or a small
    /// canary share, windows add up instead of being thrown away. Each row counts once:
    /// the carry is cleared when the rows join an estimate.
    #[serde(default, skip_serializing_if = "CarriedRows::is_empty")]
    pub carried_candidate: CarriedRows,
    /// Stable's, over the same windows.
    #[serde(default, skip_serializing_if = "CarriedRows::is_empty")]
    pub carried_stable: CarriedRows,
}

/// The most rows of each class a [`CarriedRows`] keeps; past it that class is thinned (see
/// [`CarriedRows::add`]), so a state written at every analysis stays small.
pub const MAX_CARRIED_PER_CLASS: usize = 2_000;

/// Labeled rows (score and label) kept from windows too small to judge alone: a uniform
/// sample of every row added, per class. Each class keeps one row in `stride` (1 at first) of
/// those added; when a class holds more than [`MAX_CARRIED_PER_CLASS`], its stride doubles
/// and every other row it kept goes. So each row of a class has the same chance to be kept
/// whichever window it came from (windows are not weighted by age), and the rare class is
/// kept whole until it alone has more than the cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CarriedRows {
    /// The kept rows' scores.
    pub scores: Vec<f32>,
    /// Their labels.
    pub labels: Vec<bool>,
    /// One row in `stride[c]` of class `c` (negative, positive) is kept; 0 reads as 1.
    pub stride: [u64; 2],
    /// Rows of each class added so far (which of the next rows are kept).
    pub seen: [u64; 2],
}

impl CarriedRows {
    /// Rows kept.
    pub fn len(&self) -> usize {
        self.labels.len().min(self.scores.len())
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positive rows kept.
    pub fn positives(&self) -> usize {
        self.labels[..self.len()].iter().filter(|&&l| l).count()
    }

    /// Adds the rows `scores`/`labels` (paired, the shorter length; a row with a NaN or
    /// infinite score is left out: no metric can rank it), each class sampled at its stride.
    ///
    /// ```
    /// use mlops_serve::sequential::{CarriedRows, MAX_CARRIED_PER_CLASS};
    ///
    /// let mut c = CarriedRows::default();
    /// // Two windows: 3,000 negatives and 15 positives each.
    /// for _ in 0..2 {
    ///     let labels: Vec<bool> = (0..3_015).map(|i| i < 15).collect();
    ///     let scores: Vec<f64> = (0..3_015).map(|i| i as f64 / 3_015.0).collect();
    ///     c.add(&scores, &labels);
    /// }
    /// assert_eq!(c.positives(), 30); // the rare class whole
    /// assert_eq!(c.len() - 30, 1_500); // 6,000 negatives, one in four kept
    /// assert!(c.len() - c.positives() <= MAX_CARRIED_PER_CLASS);
    /// ```
    pub fn add(&mut self, scores: &[f64], labels: &[bool]) {
        let n = self.len();
        self.scores.truncate(n);
        self.labels.truncate(n);
        for (&score, &label) in scores.iter().zip(labels) {
            if !score.is_finite() {
                continue;
            }
            let c = usize::from(label);
            let stride = self.stride[c].max(1);
            if self.seen[c].is_multiple_of(stride) {
                self.scores.push(score as f32);
                self.labels.push(label);
            }
            self.seen[c] = self.seen[c].saturating_add(1);
        }
        for c in 0..2 {
            let class = c == 1;
            while self.labels.iter().filter(|&&l| l == class).count() > MAX_CARRIED_PER_CLASS {
                // Keep every other row of the class (those at an even rank among its kept
                // rows: the rows added at multiples of the doubled stride).
                self.stride[c] = self.stride[c].max(1).saturating_mul(2);
                let mut rank = 0_u64;
                let (mut scores, mut labels) = (Vec::new(), Vec::new());
                for (&s, &l) in self.scores.iter().zip(&self.labels) {
                    if l == class {
                        rank += 1;
                        if rank.is_multiple_of(2) {
                            continue;
                        }
                    }
                    scores.push(s);
                    labels.push(l);
                }
                self.scores = scores;
                self.labels = labels;
            }
        }
    }

    /// The kept rows as `f64` scores and labels.
    pub fn rows(&self) -> (Vec<f64>, Vec<bool>) {
        let n = self.len();
        (
            self.scores[..n].iter().map(|&s| f64::from(s)).collect(),
            self.labels[..n].to_vec(),
        )
    }

    /// Forgets every row and starts sampling afresh.
    pub fn clear(&mut self) {
        *self = CarriedRows::default();
    }
}

impl Evidence {
    /// Adds one window's estimate and its variance; a window without a positive finite
    /// variance, or with a non-finite estimate, adds nothing (`false`).
    pub fn add(&mut self, estimate: f64, variance: f64) -> bool {
        if !(estimate.is_finite() && variance.is_finite() && variance > 0.0) {
            return false;
        }
        self.information += 1.0 / variance;
        self.weighted_sum += estimate / variance;
        self.windows = self.windows.saturating_add(1);
        true
    }

    /// The pooled estimate (`None` before the first window).
    pub fn estimate(&self) -> Option<f64> {
        (self.information > 0.0).then(|| self.weighted_sum / self.information)
    }

    /// The pooled estimate's variance (`None` before the first window).
    pub fn variance(&self) -> Option<f64> {
        (self.information > 0.0).then(|| 1.0 / self.information)
    }

    /// The confidence sequence's band at this look, `(low, high)` (`None` before the first
    /// window).
    pub fn interval(&self, mixing_variance: f64, alpha: f64) -> Option<(f64, f64)> {
        let (e, v) = (self.estimate()?, self.variance()?);
        let w = mixture_half_width(v, mixing_variance, alpha);
        w.is_finite().then_some((e - w, e + w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use statrs::distribution::{ContinuousCDF, Normal};

    #[test]
    fn the_band_is_where_the_likelihood_ratio_reaches_one_over_alpha() {
        for (v, t2, alpha) in [(1e-4, 1e-4, 0.05), (2.5e-6, 1e-4, 0.025), (0.3, 0.01, 0.1)] {
            let w = mixture_half_width(v, t2, alpha);
            let l = mixture_likelihood_ratio(w, v, t2, 0.0).unwrap();
            assert!((l * alpha - 1.0).abs() < 1e-9, "{v} {t2} {alpha}: {l}");
        }
        assert_eq!(mixture_half_width(0.0, 1e-4, 0.05), f64::INFINITY);
        assert_eq!(mixture_half_width(1e-4, 1e-4, 1.0), f64::INFINITY);
        assert_eq!(mixture_likelihood_ratio(0.1, f64::NAN, 1e-4, 0.0), None);
        for h in [1e-4, 0.003, 0.05, 2.0] {
            let v = variance_to_reach(h, 1e-4, 0.05).unwrap();
            let w = mixture_half_width(v, 1e-4, 0.05);
            assert!((w - h).abs() <= 1e-9 * h, "{h}: {w}");
        }
        assert_eq!(variance_to_reach(0.0, 1e-4, 0.05), None);
        assert_eq!(variance_to_reach(f64::NAN, 1e-4, 0.05), None);
    }

    /// The guarantee itself, on Gaussian windows of unequal variance: over 2,000 rollouts of
    /// 60 looks each, the true difference leaves the band in at most α of them (a fixed 95%
    /// interval leaves it in far more).
    #[test]
    fn the_truth_leaves_the_band_in_at_most_alpha_of_the_rollouts() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let normal = Normal::standard();
        let (alpha, truth, runs) = (0.05, -0.01, 2_000);
        let (mut band_misses, mut fixed_misses) = (0, 0);
        for _ in 0..runs {
            let mut e = Evidence::default();
            let (mut band_missed, mut fixed_missed) = (false, false);
            for k in 0..60 {
                let v = 1e-4 * (1.0 + (k % 3) as f64);
                let u: f64 = rng.random_range(1e-12..1.0);
                e.add(truth + v.sqrt() * normal.inverse_cdf(u), v);
                let (low, high) = e.interval(1e-4, alpha).unwrap();
                band_missed |= !(low..=high).contains(&truth);
                let (est, var) = (e.estimate().unwrap(), e.variance().unwrap());
                fixed_missed |= (est - truth).abs() > 1.96 * var.sqrt();
            }
            band_misses += usize::from(band_missed);
            fixed_misses += usize::from(fixed_missed);
        }
        let share = band_misses as f64 / runs as f64;
        // α = 5%: the binomial's upper 99.9% point at 2,000 runs is about 6.6%.
        assert!(share <= 0.066, "band missed the truth in {share}");
        assert!(
            fixed_misses > 3 * band_misses,
            "{fixed_misses} vs {band_misses}"
        );
    }
}
