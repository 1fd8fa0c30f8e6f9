//! The two-sample Cramér–von Mises test, as `scipy.stats.cramervonmises_2samp` computes it.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use statrs::function::gamma::ln_gamma;

use super::ranks::average_ranks;
use super::{check_sample, TestResult};
use crate::error::{Error, Result};

/// How the p-value is computed; `Auto` is exact when both samples have at most 20 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CvmMethod {
    /// Exact up to 20 values per sample, else asymptotic (scipy's rule).
    #[default]
    Auto,
    /// Exact distribution by Xiao, Gordon and Yakovlev's recursion.
    Exact,
    /// Anderson's normalization and the limiting distribution.
    Asymptotic,
}

impl CvmMethod {
    /// Every variant, in declaration order.
    pub const ALL: [CvmMethod; 3] = [CvmMethod::Auto, CvmMethod::Exact, CvmMethod::Asymptotic];

    /// The serialized name (`auto`, `exact`, `asymptotic`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CvmMethod::Auto => "auto",
            CvmMethod::Exact => "exact",
            CvmMethod::Asymptotic => "asymptotic",
        }
    }
}

/// `exp(q) K_{1/4}(q)` by the trapezoidal rule on `∫₀^∞ exp(-q (cosh t - 1)) cosh(t/4) dt`,
/// which converges geometrically for this analytic integrand.
fn bessel_k_quarter_scaled(q: f64) -> f64 {
    let h: f64 = 0.05;
    let mut sum = 0.5; // t = 0 term, halved
    let mut t = h;
    loop {
        let v = (-q * (t.cosh() - 1.0)).exp() * (t / 4.0).cosh();
        sum += v;
        if v < 1e-18 * sum || t > 50.0 {
            break;
        }
        t += h;
    }
    sum * h
}

/// CDF of the limiting one-sample Cramér–von Mises statistic (Csörgő & Faraway 1996, eq. 1.2),
/// summed until a term falls below 1e-7, as scipy does.
fn cdf_cvm_inf(x: f64) -> f64 {
    let mut total = 0.0;
    let mut k = 0.0;
    loop {
        let u = (ln_gamma(k + 0.5) - ln_gamma(k + 1.0)).exp() / (PI.powf(1.5) * x.sqrt());
        let y = 4.0 * k + 1.0;
        let q = y * y / (16.0 * x);
        // u * sqrt(y) * exp(-q) * K(q), with exp(-q) K(q) = exp(-2q) * (exp(q) K(q)).
        let z = u * y.sqrt() * (-2.0 * q).exp() * bessel_k_quarter_scaled(q);
        total += z;
        if z.abs() < 1e-7 {
            break;
        }
        k += 1.0;
    }
    total
}

/// Exact p-value `P(U >= u)` for sizes `m`, `n` (Xiao, Gordon & Yakovlev 2006): a recursion
/// over lattice paths keeping, for each partial path, the multiset of partial sums.
fn pval_exact(u: f64, m: usize, n: usize) -> f64 {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let lcm = m / gcd(m, n) * n;
    let (a, b) = ((lcm / m) as i64, (lcm / n) as i64);
    let mn = (m * n) as f64;
    let lcmf = lcm as f64;
    let zeta = (lcmf * lcmf * (m + n) as f64 * (6.0 * u - mn * (4.0 * mn - 1.0)) / (6.0 * mn * mn))
        .floor();
    let combinations: f64 = (1..=m).fold(1.0, |acc, i| acc * (n + i) as f64 / i as f64);
    let mut gs: Vec<BTreeMap<i64, f64>> = vec![BTreeMap::new(); m + 1];
    gs[0].insert(0, 1.0);
    for uu in 0..=n as i64 {
        let mut next = Vec::with_capacity(m + 1);
        let mut tmp: BTreeMap<i64, f64> = BTreeMap::new();
        for (v, g) in gs.iter().enumerate() {
            for (&value, &freq) in g {
                *tmp.entry(value).or_insert(0.0) += freq;
            }
            let res = (a * v as i64 - b * uu).pow(2);
            tmp = tmp
                .into_iter()
                .map(|(value, freq)| (value + res, freq))
                .collect();
            next.push(tmp.clone());
        }
        gs = next;
    }
    let tail: f64 = gs[m]
        .iter()
        .filter(|(&value, _)| value as f64 >= zeta)
        .map(|(_, &f)| f)
        .sum();
    tail / combinations
}

/// Two-sample Cramér–von Mises test (scipy's `cramervonmises_2samp`); each sample needs at
/// least two values.
///
/// ```
/// use mlops_drift::stats::{cramervonmises_2samp, CvmMethod};
///
/// let r = cramervonmises_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], CvmMethod::Auto)?;
/// assert!((r.statistic - 0.5277777777777778).abs() < 1e-12); // scipy 1.17.1
/// assert!((r.p_value - 0.1).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn cramervonmises_2samp(x: &[f64], y: &[f64], method: CvmMethod) -> Result<TestResult> {
    check_sample("x", x)?;
    check_sample("y", y)?;
    let (nx, ny) = (x.len(), y.len());
    if nx < 2 || ny < 2 {
        return Err(Error::invalid(
            "cramervonmises_2samp sample sizes",
            format!("({nx}, {ny})"),
            "at least two values in each sample",
        ));
    }
    let exact = match method {
        CvmMethod::Auto => nx.max(ny) <= 20,
        CvmMethod::Exact => true,
        CvmMethod::Asymptotic => false,
    };
    let mut xa = x.to_vec();
    let mut ya = y.to_vec();
    xa.sort_unstable_by(f64::total_cmp);
    ya.sort_unstable_by(f64::total_cmp);
    let z: Vec<f64> = xa.iter().chain(&ya).copied().collect();
    let (r, _) = average_ranks(&z);
    let (nxf, nyf) = (nx as f64, ny as f64);
    let u = nxf
        * (0..nx)
            .map(|i| (r[i] - (i + 1) as f64).powi(2))
            .sum::<f64>()
        + nyf
            * (0..ny)
                .map(|i| (r[nx + i] - (i + 1) as f64).powi(2))
                .sum::<f64>();
    let k = nxf * nyf;
    let nn = nxf + nyf;
    let t = u / (k * nn) - (4.0 * k - 1.0) / (6.0 * nn);
    let p = if exact {
        pval_exact(u, nx, ny)
    } else {
        let et = (1.0 + 1.0 / nn) / 6.0;
        let vt = (nn + 1.0) * (4.0 * k * nn - 3.0 * (nxf * nxf + nyf * nyf) - 2.0 * k)
            / (45.0 * nn * nn * 4.0 * k);
        let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
        if tn >= 0.003 {
            (1.0 - cdf_cvm_inf(tn)).max(0.0)
        } else {
            1.0
        }
    };
    Ok(TestResult {
        statistic: t,
        p_value: p.clamp(0.0, 1.0),
    })
}
