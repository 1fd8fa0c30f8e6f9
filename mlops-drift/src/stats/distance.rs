//! Distances between two empirical distributions on the real line: Wasserstein-1 and the energy
//! distance, as scipy computes them (the integral of the CDF difference between consecutive
//! pooled values).

use super::check_sample;
use crate::error::Result;

/// `(∫ |F_a - F_b|^p dx)` over the pooled sorted values of two sorted samples, by one merge
/// walk: the CDFs are right-continuous step functions, constant between consecutive pooled
/// values.
pub(crate) fn cdf_distance_sorted(a: &[f64], b: &[f64], p: i32) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    loop {
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        if let Some(pv) = prev {
            // Between pv and v both CDFs are constant: counts of values <= pv.
            let diff = (i as f64 / na - j as f64 / nb).abs();
            total += diff.powi(p) * (v - pv);
        }
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        prev = Some(v);
    }
    total
}

fn sorted(x: &[f64]) -> Vec<f64> {
    let mut v = x.to_vec();
    crate::stats::sort_values(&mut v);
    v
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
    Ok(cdf_distance_sorted(&sorted(a), &sorted(b), 1))
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
    Ok(std::f64::consts::SQRT_2 * cdf_distance_sorted(&sorted(a), &sorted(b), 2).sqrt())
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
