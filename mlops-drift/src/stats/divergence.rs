//! Distances between binned distributions: PSI, Jensen–Shannon, Hellinger, total variation
//! and KL, on shares from reference-quantile bins (numeric columns) or category frequencies.
//!
//! Binning, stated once: the interior edges are the reference's quantiles at `k / n_bins`
//! (`k = 1..n_bins-1`, numpy's linear interpolation), duplicates removed; the outer bins are
//! open (`-∞`, `+∞`). A value `v` falls in bin `#{edges <= v}` (numpy's `searchsorted(edges, v,
//! side="right")`). PSI and KL floor every share at `eps` (default 1e-4, as Evidently) so that
//! an empty bin gives a finite value.

use super::check_sample;
use crate::error::{Error, Result};

/// Default share floor of PSI and KL.
pub const DEFAULT_EPS: f64 = 1e-4;

/// Linear-interpolated quantile of sorted data (numpy's default).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Interior bin edges at the reference's quantiles `k / n_bins`, deduplicated, from a sorted
/// reference.
pub fn quantile_edges_sorted(reference_sorted: &[f64], n_bins: usize) -> Result<Vec<f64>> {
    check_sample("reference", reference_sorted)?;
    if n_bins < 2 {
        return Err(Error::invalid("n_bins", n_bins, "at least 2"));
    }
    let mut edges: Vec<f64> = (1..n_bins)
        .map(|k| quantile_sorted(reference_sorted, k as f64 / n_bins as f64))
        .collect();
    edges.dedup();
    Ok(edges)
}

/// Share of `x` in each bin defined by `edges` (`edges.len() + 1` shares).
pub fn bin_shares(x: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    if edges.len() < 16 {
        // The usual case (9 edges): a fixed-width row of 16 edges padded with +inf, compared
        // without branches (the compiler vectorizes the fixed-length loop).
        let mut padded = [f64::INFINITY; 16];
        padded[..edges.len()].copy_from_slice(edges);
        for v in x {
            let bin: usize = padded.iter().map(|e| usize::from(*e <= *v)).sum();
            counts[bin] += 1;
        }
    } else {
        for v in x {
            counts[edges.partition_point(|e| e <= v)] += 1;
        }
    }
    let n = x.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// The values at the given sorted positions of `x` (as if `x` were sorted), by recursive
/// selection: `O(n log k)` for `k` positions, no full sort (numpy's `partition` with several
/// `kth`).
fn order_statistics(
    x: &mut [f64],
    positions: &[usize],
    out: &mut Vec<(usize, f64)>,
    offset: usize,
) {
    if positions.is_empty() || x.is_empty() {
        return;
    }
    let mid = positions.len() / 2;
    let p = positions[mid] - offset;
    let (left, pivot, right) = x.select_nth_unstable_by(p, f64::total_cmp);
    out.push((positions[mid], *pivot));
    order_statistics(left, &positions[..mid], out, offset);
    order_statistics(right, &positions[mid + 1..], out, offset + p + 1);
}

/// Interior quantile edges of an unsorted reference (the same edges as
/// [`quantile_edges_sorted`]), by selection instead of sorting.
pub fn quantile_edges(reference: &[f64], n_bins: usize) -> Result<Vec<f64>> {
    check_sample("reference", reference)?;
    if n_bins < 2 {
        return Err(Error::invalid("n_bins", n_bins, "at least 2"));
    }
    let n = reference.len();
    let qs: Vec<(usize, usize, f64)> = (1..n_bins)
        .map(|k| {
            let pos = k as f64 / n_bins as f64 * (n - 1) as f64;
            (pos.floor() as usize, pos.ceil() as usize, pos - pos.floor())
        })
        .collect();
    let mut positions: Vec<usize> = qs.iter().flat_map(|q| [q.0, q.1]).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut work = reference.to_vec();
    let mut found = Vec::with_capacity(positions.len());
    order_statistics(&mut work, &positions, &mut found, 0);
    found.sort_unstable_by_key(|f| f.0);
    let at = |p: usize| found[found.binary_search_by_key(&p, |f| f.0).unwrap_or(0)].1;
    let mut edges: Vec<f64> = qs
        .iter()
        .map(|&(lo, hi, frac)| at(lo) + (at(hi) - at(lo)) * frac)
        .collect();
    edges.dedup();
    Ok(edges)
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
    check_sample("current", current)?;
    let edges = quantile_edges(reference, n_bins)?;
    psi(
        &bin_shares(reference, &edges),
        &bin_shares(current, &edges),
        DEFAULT_EPS,
    )
}
