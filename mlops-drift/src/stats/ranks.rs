//! Rank tests: Mann–Whitney U (scipy's `mannwhitneyu`) and the Anderson–Darling k-sample test
//! (scipy's `anderson_ksamp`, midrank variant).

use statrs::distribution::{ContinuousCDF, Normal};

use super::{check_sample, Alternative, TestResult};
use crate::error::{Error, Result};

/// Average ranks (1-based) of `x` (scipy's `rankdata(method='average')`), and the sizes of the
/// tie groups.
pub(crate) fn average_ranks(x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        ties.push(end - start);
        start = end;
    }
    (ranks, ties)
}

/// How the Mann–Whitney p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MwuMethod {
    /// Exact when a sample has at most 8 values and there are no ties, else asymptotic
    /// (scipy's rule).
    #[default]
    Auto,
    /// The exact null distribution of U (ignores ties, as scipy), in exact integer
    /// arithmetic; an error beyond [`MWU_EXACT_MAX_WORK`].
    Exact,
    /// Normal approximation with tie correction.
    Asymptotic,
}

impl MwuMethod {
    /// Every variant, in declaration order.
    pub const ALL: [MwuMethod; 3] = [MwuMethod::Auto, MwuMethod::Exact, MwuMethod::Asymptotic];

    /// The serialized name (`auto`, `exact`, `asymptotic`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            MwuMethod::Auto => "auto",
            MwuMethod::Exact => "exact",
            MwuMethod::Asymptotic => "asymptotic",
        }
    }
}

/// The most word operations [`MwuMethod::Exact`] (and `Auto` when it picks the exact
/// distribution) may spend: `n_small × (min(k, n1·n2 − k) + 1) × words`, where `words` is the
/// number of 64-bit words that hold `C(n1 + n2, n1)`. About 500 × 500 values, or 8 against
/// forty million; beyond it the exact p-value is an error naming the sizes (ask for
/// `Asymptotic`) rather than minutes of work or an allocation the process cannot make.
pub const MWU_EXACT_MAX_WORK: u128 = 1 << 32;

/// `log2 C(n1 + n2, n1)`, rounded up, plus a word's margin for the rounding of the sum.
fn binomial_words(n1: usize, n2: usize) -> usize {
    let bits: f64 = (1..=n1).map(|j| ((n2 + j) as f64 / j as f64).log2()).sum();
    (bits.ceil() as usize + 2) / 64 + 1
}

/// `C(n1 + n2, n1)` exactly, in `words` little-endian 64-bit words.
fn binomial_exact(n1: usize, n2: usize, words: usize) -> Vec<u64> {
    let mut c = vec![0u64; words];
    c[0] = 1;
    for j in 1..=n1 {
        // c = c * (n2 + j) / j: C(n2 + j, j) from C(n2 + j - 1, j - 1), exact at every step.
        let mut carry: u128 = 0;
        for w in c.iter_mut() {
            let v = u128::from(*w) * (n2 + j) as u128 + carry;
            *w = v as u64;
            carry = v >> 64;
        }
        let mut rem: u128 = 0;
        for w in c.iter_mut().rev() {
            let v = (rem << 64) | u128::from(*w);
            *w = (v / j as u128) as u64;
            rem = v % j as u128;
        }
    }
    c
}

/// `a += b` on words, wrapping modulo `2^(64 · words)`.
fn add_words(a: &mut [u64], b: &[u64]) {
    let mut carry = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, c1) = x.overflowing_add(y);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *x = s;
        carry = c1 | c2;
    }
}

/// `a -= b` on words, wrapping modulo `2^(64 · words)`.
fn sub_words(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s, b1) = x.overflowing_sub(y);
        let (s, b2) = s.overflowing_sub(u64::from(borrow));
        *x = s;
        borrow = b1 | b2;
    }
}

/// `x / y` of two word numbers (`x <= y`, `y > 0`) as f64, from their top 192 bits.
fn ratio_words(x: &[u64], y: &[u64]) -> f64 {
    let top = y.iter().rposition(|&w| w != 0).unwrap_or(0);
    let scaled = |v: &[u64]| {
        (top.saturating_sub(2)..=top)
            .map(|i| v[i] as f64 * 2f64.powi(64 * (i as i32 - top as i32)))
            .sum::<f64>()
    };
    scaled(x) / scaled(y)
}

/// `P(U >= k)` under the null hypothesis for sizes `n1`, `n2` without ties: the counts of U
/// are the coefficients of the Gaussian binomial `[n1 + n2, n1]_q`, built by multiplying by
/// `(1 - q^(n2+i))` and dividing by `(1 - q^i)`. The arithmetic is on integers modulo
/// `2^(64 · words)`, which is exact: every count, and every sum of counts, is below
/// `C(n1 + n2, n1) < 2^(64 · words)` (floating point loses about 1e-6 relative to the
/// cancellations at 200 × 300 values). Only the counts up to `min(k − 1, n1·n2 − k)` are built
/// (the distribution is symmetric).
fn mwu_exact_sf(n1: usize, n2: usize, k: usize) -> Result<f64> {
    let (n1, n2) = (n1.min(n2), n1.max(n2));
    let max = n1 * n2;
    if k == 0 {
        return Ok(1.0);
    }
    if k > max {
        return Ok(0.0);
    }
    // sum_{u >= k} c[u] = sum_{u <= max - k} c[u] (symmetry), or total - sum_{u < k} c[u].
    let (limit, complement) = if max - k < k {
        (max - k, false)
    } else {
        (k - 1, true)
    };
    let words = binomial_words(n1, n2);
    let work = n1 as u128 * (limit as u128 + 1) * words as u128;
    if work > MWU_EXACT_MAX_WORK {
        return Err(Error::invalid(
            "mannwhitneyu method exact for sample sizes",
            format!("({n1}, {n2})"),
            format!(
                "sizes whose exact distribution takes at most {MWU_EXACT_MAX_WORK} word operations \
                 (this one: {work}); use the asymptotic method"
            ),
        ));
    }
    let len = limit + 1;
    let mut c = vec![0u64; len * words];
    c[0] = 1;
    for i in 1..=n1 {
        let up = n2 + i;
        for u in (up..len).rev() {
            let (lo, hi) = c.split_at_mut(u * words);
            sub_words(
                &mut hi[..words],
                &lo[(u - up) * words..(u - up + 1) * words],
            );
        }
        for u in i..len {
            let (lo, hi) = c.split_at_mut(u * words);
            add_words(&mut hi[..words], &lo[(u - i) * words..(u - i + 1) * words]);
        }
    }
    let mut sum = vec![0u64; words];
    for coefficient in c.chunks_exact(words) {
        add_words(&mut sum, coefficient);
    }
    let total = binomial_exact(n1, n2, words);
    if complement {
        let mut tail = total.clone();
        sub_words(&mut tail, &sum);
        sum = tail;
    }
    Ok(ratio_words(&sum, &total))
}

/// Mann–Whitney U test, scipy's `mannwhitneyu(x, y, use_continuity, alternative, method)`.
/// The statistic is U of `x`; `greater` means `x` tends to be larger.
///
/// ```
/// use mlops_drift::stats::{mannwhitneyu, Alternative, MwuMethod};
///
/// let r = mannwhitneyu(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0, 7.0], true, Alternative::TwoSided, MwuMethod::Auto)?;
/// assert_eq!(r.statistic, 0.0);
/// assert!((r.p_value - 2.0 / 35.0).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn mannwhitneyu(
    x: &[f64],
    y: &[f64],
    use_continuity: bool,
    alternative: Alternative,
    method: MwuMethod,
) -> Result<TestResult> {
    check_sample("x", x)?;
    check_sample("y", y)?;
    let (n1, n2) = (x.len(), y.len());
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, ties) = average_ranks(&pooled);
    let r1: f64 = ranks[..n1].iter().sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let (u, factor) = match alternative {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let has_ties = ties.iter().any(|&t| t > 1);
    let exact = match method {
        MwuMethod::Auto => !(has_ties || n1 > 8 && n2 > 8),
        MwuMethod::Exact => true,
        MwuMethod::Asymptotic => false,
    };
    let p = if exact {
        // scipy's `sf(U.astype(int))`: U of tied samples (a half) rounds down.
        mwu_exact_sf(n1, n2, u.max(0.0) as usize)?
    } else {
        let n = n1f + n2f;
        let tie_term: f64 = ties.iter().map(|&t| (t as f64).powi(3) - t as f64).sum();
        let s = (n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let mut num = u - n1f * n2f / 2.0;
        if use_continuity {
            num -= 0.5;
        }
        let z = num / s;
        if z.is_nan() {
            1.0
        } else {
            Normal::standard().sf(z)
        }
    };
    Ok(TestResult {
        statistic: u1,
        p_value: (p * factor).clamp(0.0, 1.0),
    })
}

/// The result of the Anderson–Darling k-sample test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AndersonKsampResult {
    /// The normalized statistic (scipy's `statistic`).
    pub statistic: f64,
    /// scipy's p-value: the interpolated significance level, clamped to [0.001, 0.25].
    #[serde(alias = "pvalue")]
    pub p_value: f64,
    /// The same interpolation without the clamp (an extrapolation outside [0.001, 0.25]).
    pub p_value_unclamped: f64,
}

/// Anderson–Darling k-sample test (Scholz & Stephens 1987), scipy's
/// `anderson_ksamp(samples, variant='midrank')`: the statistic, and the p-value interpolated
/// (quadratic fit of log significance on the critical values) as scipy does.
///
/// ```
/// use mlops_drift::stats::anderson_ksamp;
///
/// let a: Vec<f64> = (0..50).map(|i| i as f64).collect();
/// let b: Vec<f64> = (0..50).map(|i| i as f64 + 25.0).collect();
/// let r = anderson_ksamp(&[&a, &b])?;
/// assert!(r.statistic > 5.0 && r.p_value == 0.001 && r.p_value_unclamped < 0.001);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn anderson_ksamp(samples: &[&[f64]]) -> Result<AndersonKsampResult> {
    let k = samples.len();
    if k < 2 {
        return Err(Error::invalid(
            "anderson_ksamp samples",
            k,
            "at least two samples",
        ));
    }
    for (i, s) in samples.iter().enumerate() {
        check_sample(&format!("samples[{i}]"), s)?;
    }
    let mut z: Vec<f64> = samples.iter().flat_map(|s| s.iter().copied()).collect();
    z.sort_unstable_by(f64::total_cmp);
    let nn = z.len();
    let mut zstar = z.clone();
    zstar.dedup();
    if zstar.len() < 2 {
        return Err(Error::invalid(
            "anderson_ksamp samples",
            format!("{nn} values, all equal to {}", zstar[0]),
            "at least two distinct values",
        ));
    }
    if nn < 4 {
        return Err(Error::invalid(
            "anderson_ksamp total size",
            nn,
            "at least 4 values",
        ));
    }
    let n: Vec<f64> = samples.iter().map(|s| s.len() as f64).collect();
    let nf = nn as f64;
    let left = |s: &[f64], v: f64| s.partition_point(|x| *x < v) as f64;
    let right = |s: &[f64], v: f64| s.partition_point(|x| *x <= v) as f64;
    let lj: Vec<f64> = zstar.iter().map(|&v| right(&z, v) - left(&z, v)).collect();
    let bj: Vec<f64> = zstar
        .iter()
        .zip(&lj)
        .map(|(&v, l)| left(&z, v) + l / 2.0)
        .collect();
    let mut a2 = 0.0;
    for (i, s) in samples.iter().enumerate() {
        let mut s = s.to_vec();
        s.sort_unstable_by(f64::total_cmp);
        let mut inner_sum = 0.0;
        for (j, &v) in zstar.iter().enumerate() {
            let r = right(&s, v);
            let f = r - left(&s, v);
            let mij = r - f / 2.0;
            inner_sum += lj[j] / nf * (nf * mij - bj[j] * n[i]).powi(2)
                / (bj[j] * (nf - bj[j]) - nf * lj[j] / 4.0);
        }
        a2 += inner_sum / n[i];
    }
    a2 *= (nf - 1.0) / nf;

    let kf = k as f64;
    let hh: f64 = n.iter().map(|v| 1.0 / v).sum();
    // h = sum_{i=1}^{N-1} 1/i ; g = sum_{i=1}^{N-2} sum_{j=i+1}^{N-1} 1/((N-i) j)
    let mut hs_cs = Vec::with_capacity(nn.saturating_sub(2));
    let mut acc = 0.0;
    for d in (2..nn).rev() {
        acc += 1.0 / d as f64;
        hs_cs.push(acc);
    }
    let h = hs_cs.last().copied().unwrap_or(0.0) + 1.0;
    let g: f64 = hs_cs
        .iter()
        .enumerate()
        .map(|(i, v)| v / (i as f64 + 2.0))
        .sum();
    let a = (4.0 * g - 6.0) * (kf - 1.0) + (10.0 - 6.0 * g) * hh;
    let b = (2.0 * g - 4.0) * kf * kf + 8.0 * h * kf + (2.0 * g - 14.0 * h - 4.0) * hh - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * kf * kf
        + (4.0 * h - 4.0 * g + 6.0) * kf
        + (2.0 * h - 6.0) * hh
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * kf * kf - 4.0 * h * kf;
    let sigmasq =
        (a * nf.powi(3) + b * nf * nf + c * nf + d) / ((nf - 1.0) * (nf - 2.0) * (nf - 3.0));
    let m = kf - 1.0;
    let statistic = (a2 - m) / sigmasq.sqrt();

    const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
    const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
    const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];
    const SIG: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
    let critical: Vec<f64> = (0..7)
        .map(|i| B0[i] + B1[i] / m.sqrt() + B2[i] / m)
        .collect();
    let logsig: Vec<f64> = SIG.iter().map(|s| s.ln()).collect();
    let coef = polyfit2(&critical, &logsig);
    let unclamped = (coef[0] * statistic * statistic + coef[1] * statistic + coef[2]).exp();
    let cmin = critical.iter().cloned().fold(f64::INFINITY, f64::min);
    let cmax = critical.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let pvalue = if statistic < cmin {
        0.25
    } else if statistic > cmax {
        0.001
    } else {
        unclamped
    };
    Ok(AndersonKsampResult {
        statistic,
        p_value: pvalue,
        p_value_unclamped: unclamped,
    })
}

/// Least-squares quadratic fit `y ≈ c0 x² + c1 x + c2` (numpy's `polyfit(x, y, 2)`), by the
/// normal equations on centred and scaled x for conditioning.
fn polyfit2(x: &[f64], y: &[f64]) -> [f64; 3] {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let scale = x
        .iter()
        .map(|v| (v - mean).abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let t: Vec<f64> = x.iter().map(|v| (v - mean) / scale).collect();
    // Normal equations for y = a t² + b t + c.
    let s = |p: i32| t.iter().map(|v| v.powi(p)).sum::<f64>();
    let sy = |p: i32| t.iter().zip(y).map(|(v, w)| v.powi(p) * w).sum::<f64>();
    let m = [[s(4), s(3), s(2)], [s(3), s(2), s(1)], [s(2), s(1), n]];
    let r = [sy(2), sy(1), sy(0)];
    let det3 = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let det = det3(m);
    let solve = |col: usize| {
        let mut mm = m;
        for row in 0..3 {
            mm[row][col] = r[row];
        }
        det3(mm) / det
    };
    let (a, b, c) = (solve(0), solve(1), solve(2));
    // Back to x: t = (x - mean)/scale.
    let a2 = a / (scale * scale);
    let b2 = b / scale - 2.0 * a * mean / (scale * scale);
    let c2 = c - b * mean / scale + a * mean * mean / (scale * scale);
    [a2, b2, c2]
}
