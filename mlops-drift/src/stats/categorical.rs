//! Tests on counts: chi-square and G-test of homogeneity on a reference-vs-current contingency
//! table (scipy's `chi2_contingency`), the two-proportion Z-test, and the null-rate test.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use super::TestResult;
use crate::error::{Error, Result};

/// Which statistic [`contingency_test`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContingencyStatistic {
    /// Pearson's chi-square (`lambda_=None`).
    Pearson,
    /// The G-test, log-likelihood ratio (`lambda_="log-likelihood"`).
    LogLikelihood,
}

impl ContingencyStatistic {
    /// Every variant, in declaration order.
    pub const ALL: [ContingencyStatistic; 2] = [
        ContingencyStatistic::Pearson,
        ContingencyStatistic::LogLikelihood,
    ];

    /// The serialized name (`pearson`, `log_likelihood`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContingencyStatistic::Pearson => "pearson",
            ContingencyStatistic::LogLikelihood => "log_likelihood",
        }
    }
}

fn check_counts(name: &str, c: &[f64]) -> Result<()> {
    if let Some(i) = c.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::invalid(
            format!("{name}[{i}]"),
            c[i],
            "a finite count >= 0",
        ));
    }
    if c.iter().sum::<f64>() <= 0.0 {
        return Err(Error::invalid(
            name,
            "all zero",
            "at least one positive count",
        ));
    }
    Ok(())
}

/// Homogeneity test of two rows of category counts (reference, current), scipy's
/// `chi2_contingency([reference, current], correction, lambda_)`. Categories with zero counts
/// in both rows are dropped first (scipy refuses a zero expected frequency); with one category
/// left the samples cannot differ and the result is statistic 0, p-value 1. Yates' correction
/// applies, as in scipy, only when the table has one degree of freedom.
///
/// ```
/// use mlops_drift::stats::{contingency_test, ContingencyStatistic};
///
/// let r = contingency_test(&[30.0, 70.0], &[50.0, 50.0], true, ContingencyStatistic::Pearson)?;
/// assert!((r.statistic - 7.520833333333333).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn contingency_test(
    reference: &[f64],
    current: &[f64],
    correction: bool,
    statistic: ContingencyStatistic,
) -> Result<TestResult> {
    if reference.len() != current.len() {
        return Err(Error::invalid(
            "current counts length",
            current.len(),
            format!("{} categories, as the reference", reference.len()),
        ));
    }
    check_counts("reference counts", reference)?;
    check_counts("current counts", current)?;
    let cols: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .filter(|(a, b)| **a + **b > 0.0)
        .map(|(a, b)| (*a, *b))
        .collect();
    if cols.len() < 2 {
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
        });
    }
    let (r0, r1) = (
        cols.iter().map(|c| c.0).sum::<f64>(),
        cols.iter().map(|c| c.1).sum::<f64>(),
    );
    let total = r0 + r1;
    let dof = (cols.len() - 1) as f64;
    let mut stat = 0.0;
    for &(a, b) in &cols {
        let col = a + b;
        for (obs, row) in [(a, r0), (b, r1)] {
            let expected = row * col / total;
            let mut o = obs;
            if correction && dof == 1.0 {
                // Yates: move each observed count 0.5 towards its expectation (at most to it).
                let diff = expected - o;
                o += diff.signum() * diff.abs().min(0.5);
            }
            stat += match statistic {
                ContingencyStatistic::Pearson => (o - expected).powi(2) / expected,
                ContingencyStatistic::LogLikelihood => {
                    if o > 0.0 {
                        2.0 * o * (o / expected).ln()
                    } else {
                        0.0
                    }
                }
            };
        }
    }
    let pvalue = ChiSquared::new(dof).map_or(f64::NAN, |d| d.sf(stat));
    Ok(TestResult {
        statistic: stat,
        p_value: pvalue.clamp(0.0, 1.0),
    })
}

/// Two-proportion Z-test with a pooled proportion (statsmodels' `proportions_ztest` on
/// `[successes_a, successes_b]`, `[n_a, n_b]`), two-sided. When the pooled proportion is 0 or
/// 1 the proportions are equal: statistic 0, p-value 1.
///
/// ```
/// use mlops_drift::stats::proportions_ztest;
///
/// let r = proportions_ztest(30.0, 100.0, 50.0, 100.0)?;
/// assert!((r.statistic + 2.886751345948129).abs() < 1e-12);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn proportions_ztest(
    successes_a: f64,
    n_a: f64,
    successes_b: f64,
    n_b: f64,
) -> Result<TestResult> {
    let z = two_proportion_z(successes_a, n_a, successes_b, n_b)?;
    Ok(TestResult {
        statistic: z,
        p_value: (2.0 * Normal::standard().sf(z.abs())).clamp(0.0, 1.0),
    })
}

fn two_proportion_z(sa: f64, na: f64, sb: f64, nb: f64) -> Result<f64> {
    for (name, s, n) in [("a", sa, na), ("b", sb, nb)] {
        if !(n.is_finite() && n > 0.0) {
            return Err(Error::invalid(format!("n_{name}"), n, "a count > 0"));
        }
        if !(s.is_finite() && (0.0..=n).contains(&s)) {
            return Err(Error::invalid(
                format!("successes_{name}"),
                s,
                format!("a count in [0, {n}]"),
            ));
        }
    }
    let p = (sa + sb) / (na + nb);
    let se = (p * (1.0 - p) * (1.0 / na + 1.0 / nb)).sqrt();
    Ok(if se > 0.0 {
        (sa / na - sb / nb) / se
    } else {
        0.0
    })
}

/// Null-rate drift: one-sided two-proportion Z-test that the current share of missing values
/// is larger than the reference's (a rising share of missing values is drift; a falling one is
/// not). Statistic `z = (p_cur - p_ref) / se` with the pooled proportion; p-value `sf(z)`.
///
/// ```
/// use mlops_drift::stats::null_rate_test;
///
/// let rising = null_rate_test(10.0, 1000.0, 60.0, 1000.0)?;
/// assert!(rising.p_value < 1e-6);
/// let falling = null_rate_test(60.0, 1000.0, 10.0, 1000.0)?;
/// assert!(falling.p_value > 0.99);
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn null_rate_test(
    ref_missing: f64,
    ref_n: f64,
    cur_missing: f64,
    cur_n: f64,
) -> Result<TestResult> {
    let z = two_proportion_z(cur_missing, cur_n, ref_missing, ref_n)?;
    Ok(TestResult {
        statistic: z,
        p_value: Normal::standard().sf(z).clamp(0.0, 1.0),
    })
}

/// The Wilson score interval of a proportion, `successes` of `n`, two-sided at `confidence`
/// (statsmodels' `proportion_confint(successes, n, alpha=1 - confidence, method="wilson")`):
/// it stays inside [0, 1] and is not empty at 0 or `n` successes, where the Wald interval
/// collapses to a point.
///
/// ```
/// use mlops_drift::stats::proportion_confint_wilson;
///
/// let (low, high) = proportion_confint_wilson(0.0, 20.0, 0.95)?;
/// assert!(low.abs() < 1e-12);
/// assert!((high - 0.16112515).abs() < 1e-6);
/// assert!(proportion_confint_wilson(3.0, 0.0, 0.95).is_err());
/// # Ok::<(), mlops_drift::Error>(())
/// ```
pub fn proportion_confint_wilson(successes: f64, n: f64, confidence: f64) -> Result<(f64, f64)> {
    if !(n.is_finite() && n > 0.0) {
        return Err(Error::invalid("n", n, "a count > 0"));
    }
    if !(successes.is_finite() && (0.0..=n).contains(&successes)) {
        return Err(Error::invalid(
            "successes",
            successes,
            format!("a count in [0, {n}]"),
        ));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::invalid(
            "confidence",
            confidence,
            "a level in (0, 1)",
        ));
    }
    let z = Normal::standard().inverse_cdf(0.5 + confidence / 2.0);
    let p = successes / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Ok(((center - half).max(0.0), (center + half).min(1.0)))
}
