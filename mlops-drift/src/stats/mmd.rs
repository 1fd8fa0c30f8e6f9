//! Maximum mean discrepancy with an RBF kernel: a multivariate two-sample test (as
//! alibi-detect's `MMDDrift`), with the bandwidth set by the median heuristic and a seeded
//! permutation p-value.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::TestResult;
use crate::error::{Error, Result};

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Unbiased MMD² of the first `m` rows of `k` (a pooled kernel matrix, `n × n`) against the
/// rest, under the row order `idx`.
fn mmd2_unbiased(k: &[f64], n: usize, idx: &[usize], m: usize) -> f64 {
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for a in 0..n {
        let ia = idx[a];
        let row = &k[ia * n..(ia + 1) * n];
        for (b, &ib) in idx.iter().enumerate() {
            if a == b {
                continue;
            }
            let v = row[ib];
            match (a < m, b < m) {
                (true, true) => xx += v,
                (false, false) => yy += v,
                _ => xy += v,
            }
        }
    }
    let (mf, nf) = (m as f64, (n - m) as f64);
    xx / (mf * (mf - 1.0)) + yy / (nf * (nf - 1.0)) - xy / (mf * nf)
}

/// MMD² between row sets `x` and `y` (each row a slice of the same width) with the RBF kernel
/// `exp(-‖a−b‖² / (2σ²))`, σ the median pairwise distance of the pooled rows (the median
/// heuristic). The p-value is the share of `permutations` seeded relabellings whose MMD² is at
/// least the observed one (with the observed counted, so never 0).
///
/// ```
/// use mlops_drift::stats::mmd_rbf;
///
/// let x: Vec<Vec<f64>> = (0..60).map(|i| vec![(i % 10) as f64, (i % 7) as f64]).collect();
/// let y: Vec<Vec<f64>> = x.iter().map(|r| vec![r[0] + 4.0, r[1]]).collect();
/// let same = mmd_rbf(&x, &x, 200, 1)?;
/// let shifted = mmd_rbf(&x, &y, 200, 1)?;
/// assert!(same.p_value > 0.5 && shifted.p_value < 0.01);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn mmd_rbf(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    permutations: usize,
    seed: u64,
) -> Result<TestResult> {
    if x.len() < 2 || y.len() < 2 {
        return Err(Error::invalid(
            "mmd sample sizes",
            format!("({}, {})", x.len(), y.len()),
            "at least two rows each",
        ));
    }
    let width = x[0].len();
    for (name, set) in [("x", x), ("y", y)] {
        if let Some(i) = set
            .iter()
            .position(|r| r.len() != width || r.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::invalid(
                format!("{name}[{i}]"),
                format!("{:?}", set[i]),
                format!("{width} finite values"),
            ));
        }
    }
    let pooled: Vec<&[f64]> = x.iter().chain(y).map(Vec::as_slice).collect();
    let n = pooled.len();
    let mut d2 = vec![0.0; n * n];
    let mut upper = Vec::with_capacity(n * (n - 1) / 2);
    for a in 0..n {
        for b in (a + 1)..n {
            let v = sq_dist(pooled[a], pooled[b]);
            d2[a * n + b] = v;
            d2[b * n + a] = v;
            upper.push(v.sqrt());
        }
    }
    upper.sort_unstable_by(f64::total_cmp);
    let median = upper[upper.len() / 2];
    let sigma = if median > 0.0 { median } else { 1.0 };
    let k: Vec<f64> = d2
        .iter()
        .map(|v| (-v / (2.0 * sigma * sigma)).exp())
        .collect();
    let mut idx: Vec<usize> = (0..n).collect();
    let observed = mmd2_unbiased(&k, n, &idx, x.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut at_least = 1usize;
    for _ in 0..permutations {
        idx.shuffle(&mut rng);
        if mmd2_unbiased(&k, n, &idx, x.len()) >= observed {
            at_least += 1;
        }
    }
    Ok(TestResult {
        statistic: observed,
        p_value: at_least as f64 / (permutations + 1) as f64,
    })
}
