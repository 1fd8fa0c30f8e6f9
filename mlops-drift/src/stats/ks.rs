//! The two-sample Kolmogorov–Smirnov test, as `scipy.stats.ks_2samp` computes it.

use serde::{Deserialize, Serialize};

use statrs::function::gamma::ln_gamma;

use super::kolmogorov::kstwo_sf;
use super::{check_sample, Alternative, TestResult};
use crate::error::{Error, Result};

/// How the KS p-value is computed; `Auto` chooses as scipy 1.17 does (exact when both samples
/// have at most 10,000 values, else asymptotic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact for sizes up to 10,000, asymptotic above.
    #[default]
    Auto,
    /// Exact lattice-path counting (falls back to asymptotic when it cannot be computed, as
    /// scipy does).
    Exact,
    /// Smirnov's asymptotic distribution (two-sided: `kstwo` at the effective size; one-sided:
    /// Hodges' approximation).
    Asymp,
}

impl KsMethod {
    /// Every variant, in declaration order.
    pub const ALL: [KsMethod; 3] = [KsMethod::Auto, KsMethod::Exact, KsMethod::Asymp];

    /// The serialized name (`auto`, `exact`, `asymp`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            KsMethod::Auto => "auto",
            KsMethod::Exact => "exact",
            KsMethod::Asymp => "asymp",
        }
    }
}

/// The KS statistic of two sorted samples: `(D, D+, D-)` where `D+ = max(F1 - F2)` and
/// `D- = max(F2 - F1)`, both clipped at 0, computed by one merge walk.
pub(crate) fn ks_statistics_sorted(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut dplus, mut dminus) = (0.0f64, 0.0f64);
    while i < a.len() || j < b.len() {
        // The next distinct value, and every copy of it in both samples.
        let v = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
        dplus = dplus.max(diff);
        dminus = dminus.max(-diff);
    }
    (dplus, dminus)
}

/// Two-sample KS test on samples that are already sorted ascending (NaN-free); an unsorted
/// sample is an error naming the first index out of order. Sorting once and testing many
/// times is what a fitted reference profile does.
pub fn ks_2samp_sorted(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    method: KsMethod,
) -> Result<TestResult> {
    for (name, x) in [("a", a), ("b", b)] {
        check_sample(name, x)?;
        if let Some(i) = x.windows(2).position(|w| w[1] < w[0]) {
            return Err(Error::invalid(
                format!("sample `{name}`[{}]", i + 1),
                x[i + 1],
                format!(
                    "a value >= the previous one ({}): ks_2samp_sorted needs sorted samples",
                    x[i]
                ),
            ));
        }
    }
    Ok(ks_sorted_unchecked(a, b, alternative, method))
}

/// The KS test of sorted, NaN-free, non-empty samples, without re-checking them.
pub(crate) fn ks_sorted_unchecked(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    method: KsMethod,
) -> TestResult {
    let (dplus, dminus) = ks_statistics_sorted(a, b);
    let d = match alternative {
        Alternative::Less => dminus,
        Alternative::Greater => dplus,
        Alternative::TwoSided => dplus.max(dminus),
    };
    ks_pvalue(d, a.len() as u64, b.len() as u64, alternative, method)
}

/// Two-sample Kolmogorov–Smirnov test (scipy's `ks_2samp`): `greater` tests whether the CDF of
/// `a` lies above that of `b` somewhere (statistic `max(F_a - F_b)`), `less` the reverse.
///
/// ```
/// use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
///
/// let a = [0.1, 0.4, 0.7, 1.1, 1.3];
/// let b = [0.9, 1.2, 1.6, 2.0, 2.4, 2.5];
/// let r = ks_2samp(&a, &b, Alternative::TwoSided, KsMethod::Auto)?;
/// assert!((r.statistic - 0.6666666666666666).abs() < 1e-12);
/// assert!((r.p_value - 0.10822510822510821).abs() < 1e-9); // scipy 1.17.1
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn ks_2samp(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
    method: KsMethod,
) -> Result<TestResult> {
    check_sample("a", a)?;
    check_sample("b", b)?;
    let (a, b) = crate::stats::sorted_pair(a, b);
    Ok(ks_sorted_unchecked(&a, &b, alternative, method))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The p-value of statistic `d` for sizes `n1`, `n2`, following scipy's choices and fallbacks.
pub(crate) fn ks_pvalue(
    d: f64,
    n1: u64,
    n2: u64,
    alternative: Alternative,
    method: KsMethod,
) -> TestResult {
    const MAX_AUTO_N: u64 = 10_000;
    let g = gcd(n1, n2);
    let (n1g, n2g) = (n1 / g, n2 / g);
    let mut exact = match method {
        KsMethod::Auto => n1.max(n2) <= MAX_AUTO_N,
        KsMethod::Exact => (n1g as f64) < f64::from(i32::MAX) / n2g as f64,
        KsMethod::Asymp => false,
    };
    let mut d = d;
    if exact {
        match exact_pvalue(n1, n2, g, d, alternative) {
            Some((d_exact, p)) => {
                return TestResult {
                    statistic: d_exact,
                    p_value: p.clamp(0.0, 1.0),
                }
            }
            None => {
                tracing::debug!(n1, n2, "exact KS p-value not computable, using asymptotic");
                exact = false;
                d = {
                    let lcm = (n1 / g) as f64 * n2 as f64;
                    (d * lcm).round_ties_even() / lcm
                };
            }
        }
    }
    debug_assert!(!exact);
    let (m, n) = if n1 >= n2 {
        (n1 as f64, n2 as f64)
    } else {
        (n2 as f64, n1 as f64)
    };
    let en = m * n / (m + n);
    let p = match alternative {
        // scipy rounds the effective size; when it rounds to 0 (n1 = n2 = 1) the asymptotic
        // p-value is undefined: NaN, as scipy's, never a number that reads as an answer (the
        // exact p-value of `Auto` or `Exact` is defined there).
        Alternative::TwoSided => kstwo_sf(en.round_ties_even() as u64, d),
        _ => {
            let z = en.sqrt() * d;
            let expt = -2.0 * z * z - 2.0 * z * (m + 2.0 * n) / (m * n * (m + n)).sqrt() / 3.0;
            expt.exp()
        }
    };
    TestResult {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
    }
}

/// `C(n, k)` in floating point (infinite when it overflows): a product for small `k`,
/// log-gamma beyond.
fn binom(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    if k <= 30 {
        return (1..=k).fold(1.0, |acc, i| acc * (n - k + i) as f64 / i as f64);
    }
    let (nf, kf) = (n as f64, k as f64);
    (ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0)).exp()
}

/// The exact p-value, or `None` where it cannot be computed in floating point (scipy then
/// falls back to the asymptotic one). Returns the statistic rounded to the lattice `h / lcm`.
fn exact_pvalue(n1: u64, n2: u64, g: u64, d: f64, alternative: Alternative) -> Option<(f64, f64)> {
    let lcm = (n1 / g) as f64 * n2 as f64;
    let h = (d * lcm).round_ties_even();
    let d = h / lcm;
    if h == 0.0 {
        return Some((d, 1.0));
    }
    let h = h as u64;
    let p = match alternative {
        Alternative::TwoSided => {
            if n1 == n2 {
                prob_outside_square(n1, h)
            } else {
                outer_prob_inside_method(n1, n2, g, h)
            }
        }
        _ => {
            if n1 == n2 {
                (0..h).fold(1.0, |acc, j| {
                    acc * ((n1 - j) as f64 / (n1 as f64 + j as f64 + 1.0))
                })
            } else {
                let total = binom(n1 + n2, n1);
                if !total.is_finite() {
                    return None;
                }
                let paths = count_paths_outside(n1, n2, g, h)?;
                if !paths.is_finite() || paths > total {
                    return None;
                }
                paths / total
            }
        }
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// `P(D_{n,n} >= h/n)`: alternating sum of binomial ratios in Horner form.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = (n / h) as i64;
    while k >= 0 {
        let ku = k as u64;
        let mut p1 = 1.0;
        for j in 0..h {
            let num = n as f64 - (ku * h) as f64 - j as f64;
            p1 = num * p1 / (n as f64 + (ku * h) as f64 + j as f64 + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// `1 - P(paths stay strictly inside |x/m - y/n| < h/lcm)`, by Viehmann's recursion for
/// `1 - p` on Hodges' inside method (a sliding window over one column of the lattice).
fn outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (m, n, h) = (m as i64, n as i64, h as i64);
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let floor_div = |a: i64, b: i64| (a as f64 / b as f64).floor() as i64;
    let mut minj = 0i64;
    let mut maxj = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = ((2 * maxj + 2).min(n + 1)) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let src = (jj + minj - lastminj) as usize;
            let prev = a.get(src).copied().unwrap_or(1.0);
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = ((maxj - minj + (lastlen - curlen)) as usize).min(a.len());
            for v in a.iter_mut().take(to).skip(from) {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Number of lattice paths from (0,0) to (m,n) that touch `m y <= n x - h g` (Hodges'
/// treatment of Drion, Gnedenko and Korolyuk); `None` on overflow.
fn count_paths_outside(m: u64, n: u64, g: u64, h: u64) -> Option<f64> {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let lxj = n as i64 + (mg as i64 - h as i64).div_euclid(mg as i64);
    if lxj <= 0 {
        return Some(binom(m + n, n));
    }
    let lxj = lxj as usize;
    let xj: Vec<u64> = (0..lxj as u64).map(|j| (h + mg * j).div_ceil(ng)).collect();
    let mut b = vec![0.0f64; lxj];
    b[0] = 1.0;
    for j in 1..lxj {
        let mut bj = binom(xj[j] + j as u64, j as u64);
        for i in 0..j {
            bj -= binom(xj[j] - xj[i] + (j - i) as u64, (j - i) as u64) * b[i];
        }
        b[j] = bj;
    }
    let mut paths = 0.0;
    for j in 0..lxj {
        if xj[j] > m {
            continue;
        }
        paths += b[j] * binom((m - xj[j]) + (n - j as u64), n - j as u64);
    }
    paths.is_finite().then_some(paths)
}
