//! Power and sample size of the two-sample z-test, as statsmodels' `NormalIndPower` computes
//! them: what a fixed-sample test of a standardized effect can detect, and the rows it needs.

use statrs::distribution::{ContinuousCDF, Normal};

use super::Alternative;
use crate::error::{Error, Result};

fn check(effect_size: f64, alpha: f64, ratio: f64) -> Result<()> {
    if !effect_size.is_finite() {
        return Err(Error::invalid(
            "effect_size",
            effect_size,
            "a finite standardized effect",
        ));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::invalid("alpha", alpha, "a level in (0, 1)"));
    }
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(Error::invalid(
            "ratio",
            ratio,
            "the second sample's size over the first's, > 0",
        ));
    }
    Ok(())
}

/// The power of the two-sample z-test of a standardized effect `effect_size` with `nobs1`
/// rows in the first sample and `ratio × nobs1` in the second, at level `alpha`
/// (statsmodels' `NormalIndPower().power(effect_size, nobs1, alpha, ratio, alternative)`;
/// `Greater` is its `larger`, `Less` its `smaller`).
///
/// ```
/// use mlops_drift::stats::{normal_ind_power, Alternative};
///
/// // Half a standard deviation with 64 rows a side: about 80% power at 5%, two-sided.
/// let p = normal_ind_power(0.5, 64.0, 0.05, 1.0, Alternative::TwoSided)?;
/// assert!((p - 0.8074).abs() < 1e-3);
/// assert!(normal_ind_power(0.5, 0.0, 0.05, 1.0, Alternative::TwoSided).is_err());
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn normal_ind_power(
    effect_size: f64,
    nobs1: f64,
    alpha: f64,
    ratio: f64,
    alternative: Alternative,
) -> Result<f64> {
    check(effect_size, alpha, ratio)?;
    if !(nobs1.is_finite() && nobs1 > 0.0) {
        return Err(Error::invalid("nobs1", nobs1, "a number of rows > 0"));
    }
    let nobs = 1.0 / (1.0 / nobs1 + 1.0 / (ratio * nobs1));
    let shift = effect_size * nobs.sqrt();
    let n = Normal::standard();
    let a = match alternative {
        Alternative::TwoSided => alpha / 2.0,
        _ => alpha,
    };
    let mut power = 0.0;
    if matches!(alternative, Alternative::TwoSided | Alternative::Greater) {
        // -Φ⁻¹(a), not Φ⁻¹(1 − a): 1 − a rounds to 1 for a below 1e-16.
        power += n.sf(-n.inverse_cdf(a) - shift);
    }
    if matches!(alternative, Alternative::TwoSided | Alternative::Less) {
        power += n.cdf(n.inverse_cdf(a) - shift);
    }
    Ok(power)
}

/// The rows of the first sample (the second has `ratio` times as many) at which the
/// two-sample z-test of `effect_size` at level `alpha` reaches `power` (statsmodels'
/// `NormalIndPower().solve_power(effect_size, None, alpha, power, ratio, alternative)`),
/// found by bisection on the logarithm of the rows. An error when no sample size reaches
/// it (a zero effect, or an effect in the direction the one-sided test does not look).
///
/// ```
/// use mlops_drift::stats::{normal_ind_nobs1, Alternative};
///
/// let n = normal_ind_nobs1(0.5, 0.05, 0.8, 1.0, Alternative::TwoSided)?;
/// assert!((n - 62.79).abs() < 0.01);
/// assert!(normal_ind_nobs1(0.0, 0.05, 0.8, 1.0, Alternative::TwoSided).is_err());
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn normal_ind_nobs1(
    effect_size: f64,
    alpha: f64,
    power: f64,
    ratio: f64,
    alternative: Alternative,
) -> Result<f64> {
    check(effect_size, alpha, ratio)?;
    if !(power > alpha && power < 1.0) {
        return Err(Error::invalid(
            "power",
            power,
            "a power in (alpha, 1): a test has at least its level",
        ));
    }
    let at = |log_n: f64| normal_ind_power(effect_size, log_n.exp(), alpha, ratio, alternative);
    // From 1e-300 rows to 1e15; the power grows with the rows.
    let (mut low, mut high) = (1e-300_f64.ln(), 1e15_f64.ln());
    if at(high)? < power {
        return Err(Error::invalid(
            "effect_size",
            effect_size,
            "an effect the test can detect: none of up to 1e15 rows reaches the power",
        ));
    }
    if at(low)? >= power {
        return Err(Error::invalid(
            "effect_size",
            effect_size,
            "an effect small enough that some number of rows above 1e-300 is needed",
        ));
    }
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if at(mid)? < power {
            low = mid;
        } else {
            high = mid;
        }
        if high - low < 1e-13 * high.abs().max(1.0) {
            break;
        }
    }
    Ok((0.5 * (low + high)).exp())
}
