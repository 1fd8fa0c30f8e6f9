//! Distances between two empirical distributions on the real line: Wasserstein-1 and the energy
//! distance, as scipy computes them (the integral of the CDF difference between consecutive
//! pooled values).

use super::check_sample;
use crate::error::Result;

/// `(∫ |F_a - F_b|^p dx)` over the pooled sorted values of two sorted samples, by one merge
/// walk: the CDFs are right-continuous step functions, constant between consecutive pooled
/// values. `p` is 1 or 2.
pub(crate) fn cdf_distance_sorted(a: &[f64], b: &[f64], p: i32) -> f64 {
    if p == 1 {
        cdf_distance_walk(a, b, |d| d)
    } else {
        cdf_distance_walk(a, b, |d| d * d)
    }
}

/// The merge walk, without data-dependent branches in the joint part: each step takes the
/// smaller head (both on a tie), so ties inside one sample add zero-width steps.
fn cdf_distance_walk(a: &[f64], b: &[f64], power: impl Fn(f64) -> f64) -> f64 {
    let (Some(&a0), Some(&b0)) = (a.first(), b.first()) else {
        return 0.0;
    };
    let (inv_a, inv_b) = (1.0 / a.len() as f64, 1.0 / b.len() as f64);
    // Right after a pooled value, the CDFs are the counts of values <= it.
    let width = |v: f64, prev: f64| if v == prev { 0.0 } else { v - prev };
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev = a0.min(b0);
    let mut total = 0.0;
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let v = x.min(y);
        total += power((i as f64 * inv_a - j as f64 * inv_b).abs()) * width(v, prev);
        prev = v;
        i += usize::from(x <= v);
        j += usize::from(y <= v);
    }
    // One sample is used up: its CDF is 1 from here on.
    for (k, &v) in a.iter().enumerate().skip(i) {
        total += power((k as f64 * inv_a - 1.0).abs()) * width(v, prev);
        prev = v;
    }
    for (k, &v) in b.iter().enumerate().skip(j) {
        total += power((1.0 - k as f64 * inv_b).abs()) * width(v, prev);
        prev = v;
    }
    total
}

/// Wasserstein-1 (earth mover's) distance between two samples, scipy's
/// `wasserstein_distance(a, b)`.
///
/// ```
/// use mlops_drift::stats::wasserstein_distance;
///
/// let d = wasserstein_distance(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0])?;
/// assert!((d - 5.0).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn wasserstein_distance(a: &[f64], b: &[f64]) -> Result<f64> {
    check_sample("a", a)?;
    check_sample("b", b)?;
    let (a, b) = crate::stats::sorted_pair(a, b);
    Ok(cdf_distance_sorted(&a, &b, 1))
}

/// The energy distance between two samples, scipy's `energy_distance(a, b)`:
/// `sqrt(2) * sqrt(∫ (F_a - F_b)² dx)`.
///
/// ```
/// use mlops_drift::stats::energy_distance;
///
/// let d = energy_distance(&[0.0], &[2.0])?;
/// assert!((d - 2.0).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn energy_distance(a: &[f64], b: &[f64]) -> Result<f64> {
    check_sample("a", a)?;
    check_sample("b", b)?;
    let (a, b) = crate::stats::sorted_pair(a, b);
    Ok(std::f64::consts::SQRT_2 * cdf_distance_sorted(&a, &b, 2).sqrt())
}

/// Population standard deviation (numpy's `std`, ddof = 0), two-pass.
pub(crate) fn std_dev(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Wasserstein-1 divided by the reference's standard deviation (ddof 0), Evidently's
/// normalized Wasserstein distance: unit-free, so one threshold (Evidently's 0.1) serves every
/// column. When the reference is constant the distance is 0 if the current sample is the same
/// constant and +∞ otherwise.
pub fn wasserstein_normalized(reference: &[f64], current: &[f64]) -> Result<f64> {
    let d = wasserstein_distance(reference, current)?;
    let s = std_dev(reference);
    Ok(if s > 0.0 {
        d / s
    } else if d == 0.0 {
        0.0
    } else {
        f64::INFINITY
    })
}
