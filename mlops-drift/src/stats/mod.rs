//! Two-sample statistics whose names, semantics and values follow scipy 1.17, so a user can
//! check any number against scipy in one line. Every function takes plain `f64` slices (NaN
//! refused with the index named) and returns the statistic and, where defined, the p-value.
//!
//! | here | scipy |
//! |---|---|
//! | [`ks_2samp`] | `scipy.stats.ks_2samp` |
//! | [`cramervonmises_2samp`] | `scipy.stats.cramervonmises_2samp` |
//! | [`anderson_ksamp`] | `scipy.stats.anderson_ksamp` (midrank) |
//! | [`mannwhitneyu`] | `scipy.stats.mannwhitneyu` |
//! | [`wasserstein_distance`], [`energy_distance`] | `scipy.stats.wasserstein_distance`, `energy_distance` |
//! | [`contingency_test`] | `scipy.stats.chi2_contingency` (Pearson or G-test) |
//! | [`proportions_ztest`] | `statsmodels.stats.proportion.proportions_ztest` |
//! | [`proportion_confint_wilson`] | `statsmodels.stats.proportion.proportion_confint(method="wilson")` |
//! | [`jensen_shannon`] | `scipy.spatial.distance.jensenshannon` |
//! | [`kl_divergence`] | `scipy.stats.entropy(current, reference)` |
//! | [`psi`], [`hellinger`], [`total_variation`], [`null_rate_test`] | defined in their docs |
//! | [`mmd_rbf`] | alibi-detect's `MMDDrift` (RBF kernel, median heuristic, permutations) |

mod categorical;
mod cvm;
mod distance;
mod divergence;
mod kolmogorov;
mod ks;
mod mmd;
mod power;
mod ranks;
mod select;

use serde::{Deserialize, Serialize};

pub use categorical::{
    contingency_test, null_rate_test, proportion_confint_wilson, proportions_ztest,
    ContingencyStatistic,
};
pub use cvm::{cramervonmises_2samp, CvmMethod};
pub(crate) use distance::cdf_distance_sorted;
pub use distance::{energy_distance, wasserstein_distance, wasserstein_normalized};
pub use divergence::{
    bin_shares, check_bins, hellinger, jensen_shannon, kl_divergence, psi, psi_samples,
    quantile_edges, quantile_edges_sorted, total_variation, DEFAULT_EPS, MAX_BINS,
};
pub use kolmogorov::{kolmogorov_sf, kstwo_sf, smirnov_sf};
pub use ks::{ks_2samp, ks_2samp_sorted, KsMethod};
pub(crate) use ks::{ks_pvalue, ks_statistics_sorted};
pub use mmd::mmd_rbf;
pub use power::{normal_ind_nobs1, normal_ind_power};
pub use ranks::{anderson_ksamp, mannwhitneyu, AndersonKsampResult, MwuMethod, MWU_EXACT_MAX_WORK};

use crate::error::{Error, Result};

/// The alternative hypothesis, as scipy's `alternative=` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// The distributions differ.
    #[default]
    TwoSided,
    /// scipy's `less`.
    Less,
    /// scipy's `greater`.
    Greater,
}

impl Alternative {
    /// Every variant, in declaration order.
    pub const ALL: [Alternative; 3] = [
        Alternative::TwoSided,
        Alternative::Less,
        Alternative::Greater,
    ];

    /// The serialized name (`two-sided`, `less`, `greater`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Alternative::TwoSided => "two-sided",
            Alternative::Less => "less",
            Alternative::Greater => "greater",
        }
    }
}

/// A test's statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The statistic, as scipy reports it.
    pub statistic: f64,
    /// The p-value, in [0, 1] (scipy's `pvalue`; that name still reads).
    #[serde(alias = "pvalue")]
    pub p_value: f64,
}

/// `a + (b - a) * frac`, numpy's linear interpolation, made total for infinite ends (where
/// numpy gives NaN): equal ends give that value, and an end at infinity gives the nearer end.
pub(crate) fn interpolate(a: f64, b: f64, frac: f64) -> f64 {
    if a == b {
        return a;
    }
    let e = a + (b - a) * frac;
    if e.is_nan() {
        if frac < 0.5 {
            a
        } else {
            b
        }
    } else {
        e
    }
}

/// Sorts NaN-free values ascending (LSD radix sort: about twice as fast as a comparison sort
/// at a million values).
pub(crate) fn sort_values(x: &mut [f64]) {
    use voracious_radix_sort::RadixSort;
    x.voracious_sort();
}

/// Sorted copies of two samples, sorted concurrently (one rayon task each) when both are long
/// enough for a second thread to pay off.
pub(crate) fn sorted_pair(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let sorted = |x: &[f64]| {
        let mut v = x.to_vec();
        sort_values(&mut v);
        v
    };
    if a.len().min(b.len()) >= 1 << 15 {
        rayon::join(|| sorted(a), || sorted(b))
    } else {
        (sorted(a), sorted(b))
    }
}

/// Refuses empty samples and samples with NaN, naming the sample and the index.
pub(crate) fn check_sample(name: &str, x: &[f64]) -> Result<()> {
    if x.is_empty() {
        return Err(Error::invalid(
            format!("sample `{name}`"),
            "[]",
            "at least one value",
        ));
    }
    // Branch-free over chunks (vectorized); the index is looked up only on failure.
    let has_nan = x
        .chunks(256)
        .any(|c| c.iter().map(|v| u64::from(v.is_nan())).sum::<u64>() > 0);
    if !has_nan {
        return Ok(());
    }
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        return Err(Error::invalid(
            format!("sample `{name}`[{i}]"),
            "NaN",
            "a number (drop missing values first; the null-rate test measures them)",
        ));
    }
    Ok(())
}
