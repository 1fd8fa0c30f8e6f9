//! Distances between binned distributions: PSI, Jensen–Shannon, Hellinger, total variation
//! and KL, on shares from reference-quantile bins (numeric columns) or category frequencies.
//!
//! Binning, stated once: the interior edges are the reference's quantiles at `k / n_bins`
//! (`k = 1..n_bins-1`, numpy's linear interpolation), duplicates removed; the outer bins are
//! open (`-∞`, `+∞`). A value `v` falls in bin `#{edges <= v}` (numpy's `searchsorted(edges, v,
//! side="right")`). PSI and KL floor every share at `eps` (default 1e-4, as Evidently) so that
//! an empty bin gives a finite value. Where an interpolated edge would be NaN (numpy: an
//! infinite reference value at a quantile), it is the nearer of the two order statistics.

use super::{check_sample, interpolate};
use crate::error::{Error, Result};

/// Default share floor of PSI and KL.
pub const DEFAULT_EPS: f64 = 1e-4;

/// The most reference-quantile bins a binned distance takes (PSI, JS, Hellinger, TV, KL, and
/// `ProfileConfig.bins`): more is an error naming the value, checked before anything is
/// allocated.
pub const MAX_BINS: usize = 100_000;

/// `n_bins` when it is from 2 to [`MAX_BINS`], else an error naming it.
///
/// ```
/// use mlops_drift::stats::{check_bins, MAX_BINS};
///
/// assert!(check_bins(10).is_ok());
/// let e = check_bins(1 << 40).unwrap_err();
/// assert!(e.to_string().starts_with("invalid n_bins = 1099511627776: expected from 2 to 100000"), "{e}");
/// assert!(check_bins(MAX_BINS + 1).is_err() && check_bins(1).is_err());
/// ```
pub fn check_bins(n_bins: usize) -> Result<usize> {
    if (2..=MAX_BINS).contains(&n_bins) {
        Ok(n_bins)
    } else {
        Err(Error::invalid(
            "n_bins",
            n_bins,
            format!("from 2 to {MAX_BINS} bins"),
        ))
    }
}

/// Linear-interpolated quantile of sorted data (numpy's default).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    interpolate(sorted[lo], sorted[pos.ceil() as usize], pos - lo as f64)
}

/// Interior bin edges at the reference's quantiles `k / n_bins`, deduplicated, from a sorted
/// reference.
pub fn quantile_edges_sorted(reference_sorted: &[f64], n_bins: usize) -> Result<Vec<f64>> {
    check_sample("reference", reference_sorted)?;
    check_bins(n_bins)?;
    let mut edges: Vec<f64> = (1..n_bins)
        .map(|k| quantile_sorted(reference_sorted, k as f64 / n_bins as f64))
        .collect();
    edges.dedup();
    Ok(edges)
}

/// Share of `x` in each bin defined by `edges` (`edges.len() + 1` shares).
pub fn bin_shares(x: &[f64], edges: &[f64]) -> Vec<f64> {
    let (counts, _) = bin_counts(x, edges);
    let n = x.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// [`bin_shares`] of a sample that must be NaN-free (checked in the same pass).
pub(crate) fn bin_shares_checked(name: &str, x: &[f64], edges: &[f64]) -> Result<Vec<f64>> {
    let (counts, nan) = bin_counts(x, edges);
    if nan > 0 || x.is_empty() {
        check_sample(name, x)?;
    }
    let n = x.len() as f64;
    Ok(counts.into_iter().map(|c| c as f64 / n).collect())
}

/// Count of `x` in each bin (NaN counted in bin 0), and the number of NaN; long samples are
/// counted in parallel parts.
fn bin_counts(x: &[f64], edges: &[f64]) -> (Vec<u64>, u64) {
    super::select::parallel_passes(
        x,
        |part| bin_counts_serial(part, edges),
        |(mut a, na), (b, nb)| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            (a, na + nb)
        },
    )
}

fn bin_counts_serial(x: &[f64], edges: &[f64]) -> (Vec<u64>, u64) {
    let mut counts = vec![0u64; edges.len() + 1];
    let mut nan = 0u64;
    if edges.len() <= 32 {
        // The usual case (9 edges): blocks of 64 values, edges in the outer loop, so the inner
        // loop is one vectorized compare-and-add over the block; then the block's bins are
        // counted into four interleaved rows (runs of values in one bin do not wait on each
        // other's increments).
        const BLOCK: usize = 64;
        let width = edges.len() + 1;
        let mut rows = vec![0u64; 4 * width];
        for block in x.chunks(BLOCK) {
            let mut bins = [0u64; BLOCK];
            for &e in edges {
                for (b, &v) in bins.iter_mut().zip(block) {
                    *b += u64::from(e <= v);
                }
            }
            nan += block.iter().map(|v| u64::from(v.is_nan())).sum::<u64>();
            for (i, &b) in bins[..block.len()].iter().enumerate() {
                rows[(i & 3) * width + b as usize] += 1;
            }
        }
        for (b, count) in counts.iter_mut().enumerate() {
            *count = (0..4).map(|r| rows[r * width + b]).sum();
        }
    } else {
        for v in x {
            nan += u64::from(v.is_nan());
            counts[edges.partition_point(|e| e <= v)] += 1;
        }
    }
    (counts, nan)
}

/// Interior quantile edges of an unsorted reference (the same edges as
/// [`quantile_edges_sorted`]), without sorting it.
///
/// ```
/// use mlops_drift::stats::{quantile_edges, quantile_edges_sorted};
///
/// let x = [5.0, 1.0, 4.0, 2.0, 3.0];
/// assert_eq!(quantile_edges(&x, 4)?, quantile_edges_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 4)?);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn quantile_edges(reference: &[f64], n_bins: usize) -> Result<Vec<f64>> {
    Ok(super::select::quantile_bins(reference, n_bins)?.0)
}

fn check_shares(p: &[f64], q: &[f64]) -> Result<()> {
    if p.len() != q.len() || p.is_empty() {
        return Err(Error::invalid(
            "current shares length",
            q.len(),
            format!("{} shares, as the reference (and at least one)", p.len()),
        ));
    }
    for (name, s) in [("reference shares", p), ("current shares", q)] {
        if let Some(i) = s.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::invalid(
                format!("{name}[{i}]"),
                s[i],
                "a finite share >= 0",
            ));
        }
        if s.iter().sum::<f64>() <= 0.0 {
            return Err(Error::invalid(name, "all zero", "a positive total"));
        }
    }
    Ok(())
}

fn normalized(p: &[f64]) -> Vec<f64> {
    let s: f64 = p.iter().sum();
    p.iter().map(|v| v / s).collect()
}

/// Population stability index `Σ (c - r) ln(c / r)` with shares floored at `eps`.
///
/// ```
/// use mlops_drift::stats::psi;
///
/// assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5], 1e-4)?, 0.0);
/// assert!((psi(&[0.5, 0.5], &[0.9, 0.1], 1e-4)? - 0.8788898309344878).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn psi(reference: &[f64], current: &[f64], eps: f64) -> Result<f64> {
    check_shares(reference, current)?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::invalid("eps", eps, "a number > 0"));
    }
    Ok(reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let (r, c) = (r.max(eps), c.max(eps));
            (c - r) * (c / r).ln()
        })
        .sum())
}

/// Kullback–Leibler divergence `KL(current ‖ reference)` (scipy's `entropy(current,
/// reference)`) on shares normalized to 1 after flooring at `eps`.
pub fn kl_divergence(reference: &[f64], current: &[f64], eps: f64) -> Result<f64> {
    check_shares(reference, current)?;
    let r = normalized(&reference.iter().map(|v| v.max(eps)).collect::<Vec<_>>());
    let c = normalized(&current.iter().map(|v| v.max(eps)).collect::<Vec<_>>());
    Ok(c.iter().zip(&r).map(|(c, r)| c * (c / r).ln()).sum())
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * (x / y).ln()
    }
}

/// Jensen–Shannon distance (scipy's `spatial.distance.jensenshannon`, natural log): the square
/// root of the JS divergence, in [0, √ln 2].
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> Result<f64> {
    check_shares(reference, current)?;
    let (p, q) = (normalized(reference), normalized(current));
    let js: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| {
            let m = (a + b) / 2.0;
            rel_entr(*a, m) + rel_entr(*b, m)
        })
        .sum();
    Ok((js / 2.0).max(0.0).sqrt())
}

/// Hellinger distance `‖√p − √q‖₂ / √2`, in [0, 1].
pub fn hellinger(reference: &[f64], current: &[f64]) -> Result<f64> {
    check_shares(reference, current)?;
    let (p, q) = (normalized(reference), normalized(current));
    let s: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
        .sum();
    Ok(s.sqrt() / std::f64::consts::SQRT_2)
}

/// Total variation distance `½ Σ |p − q|`, in [0, 1].
pub fn total_variation(reference: &[f64], current: &[f64]) -> Result<f64> {
    check_shares(reference, current)?;
    let (p, q) = (normalized(reference), normalized(current));
    Ok(0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>())
}

/// PSI of two raw samples with `n_bins` reference-quantile bins (the module's binning).
///
/// ```
/// use mlops_drift::stats::psi_samples;
///
/// let reference: Vec<f64> = (0..1000).map(|i| i as f64).collect();
/// let shifted: Vec<f64> = reference.iter().map(|v| v + 300.0).collect();
/// assert!(psi_samples(&reference, &reference, 10)? < 1e-12);
/// assert!(psi_samples(&reference, &shifted, 10)? > 0.25);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn psi_samples(reference: &[f64], current: &[f64], n_bins: usize) -> Result<f64> {
    // Both samples are checked for NaN inside the passes that read them anyway.
    let (edges, reference_shares) = super::select::quantile_bins(reference, n_bins)?;
    let current_shares = bin_shares_checked("current", current, &edges)?;
    psi(&reference_shares, &current_shares, DEFAULT_EPS)
}
