//! The drift statistics (mlops-drift's `stats`, checked against scipy there). Each takes the
//! already-normalized arrays of the Python wrapper and returns plain numbers; the wrapper
//! builds scipy's result objects.

use mlops_drift::stats::{self, Alternative, ContingencyStatistic, CvmMethod, KsMethod, MwuMethod};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{record_inputs, value_error, values};

/// `s` as one of `options` (scipy's spelling, the value), or a `ValueError` listing them.
fn choice<T: Copy>(field: &str, s: &str, options: &[(&str, T)]) -> PyResult<T> {
    options
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("'{n}'")).collect();
            PyValueError::new_err(format!(
                "{field}: expected one of {}, got {s:?}",
                names.join(", ")
            ))
        })
}

fn alternative(s: &str) -> PyResult<Alternative> {
    choice(
        "alternative",
        s,
        &[
            ("two-sided", Alternative::TwoSided),
            ("less", Alternative::Less),
            ("greater", Alternative::Greater),
        ],
    )
}

/// `f` on two samples (as f64, in place when they are contiguous float64) with the GIL
/// released; its error a `ValueError`.
fn two_samples<R: Send>(
    py: Python<'_>,
    (name1, obj1): (&str, &Bound<'_, PyAny>),
    (name2, obj2): (&str, &Bound<'_, PyAny>),
    f: impl FnOnce(&[f64], &[f64]) -> mlops_drift::Result<R> + Send,
) -> PyResult<R> {
    let (a, b) = (values(name1, obj1)?, values(name2, obj2)?);
    let (a, b) = (a.f64(), b.f64());
    py.detach(|| {
        record_inputs(&[a.as_ptr() as usize, b.as_ptr() as usize]);
        f(&a, &b)
    })
    .map_err(value_error)
}

/// Two-sample Kolmogorov–Smirnov: (statistic, pvalue).
#[pyfunction]
fn ks_2samp(
    py: Python<'_>,
    data1: &Bound<'_, PyAny>,
    data2: &Bound<'_, PyAny>,
    alternative: &str,
    method: &str,
) -> PyResult<(f64, f64)> {
    let alt = self::alternative(alternative)?;
    let method = choice(
        "method",
        method,
        &[
            ("auto", KsMethod::Auto),
            ("exact", KsMethod::Exact),
            ("asymp", KsMethod::Asymp),
        ],
    )?;
    let r = two_samples(py, ("data1", data1), ("data2", data2), |a, b| {
        stats::ks_2samp(a, b, alt, method)
    })?;
    Ok((r.statistic, r.p_value))
}

/// Two-sample Cramér–von Mises: (statistic, pvalue).
#[pyfunction]
fn cramervonmises_2samp(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    method: &str,
) -> PyResult<(f64, f64)> {
    let method = choice(
        "method",
        method,
        &[
            ("auto", CvmMethod::Auto),
            ("exact", CvmMethod::Exact),
            ("asymptotic", CvmMethod::Asymptotic),
        ],
    )?;
    let r = two_samples(py, ("x", x), ("y", y), |a, b| {
        stats::cramervonmises_2samp(a, b, method)
    })?;
    Ok((r.statistic, r.p_value))
}

/// Mann–Whitney U: (statistic, pvalue).
#[pyfunction]
fn mannwhitneyu(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    use_continuity: bool,
    alternative: &str,
    method: &str,
) -> PyResult<(f64, f64)> {
    let alt = self::alternative(alternative)?;
    let method = choice(
        "method",
        method,
        &[
            ("auto", MwuMethod::Auto),
            ("exact", MwuMethod::Exact),
            ("asymptotic", MwuMethod::Asymptotic),
        ],
    )?;
    let r = two_samples(py, ("x", x), ("y", y), |a, b| {
        stats::mannwhitneyu(a, b, use_continuity, alt, method)
    })?;
    Ok((r.statistic, r.p_value))
}

/// Anderson–Darling k-sample (midrank): (statistic, pvalue clamped to [0.001, 0.25] as
/// scipy's, pvalue unclamped).
#[pyfunction]
fn anderson_ksamp(py: Python<'_>, samples: Vec<Bound<'_, PyAny>>) -> PyResult<(f64, f64, f64)> {
    let arrays = samples
        .iter()
        .enumerate()
        .map(|(i, s)| values(&format!("samples[{i}]"), s))
        .collect::<PyResult<Vec<_>>>()?;
    let owned: Vec<_> = arrays.iter().map(|a| a.f64()).collect();
    let r = py
        .detach(|| {
            let slices: Vec<&[f64]> = owned.iter().map(|c| c.as_ref()).collect();
            record_inputs(
                &slices
                    .iter()
                    .map(|s| s.as_ptr() as usize)
                    .collect::<Vec<_>>(),
            );
            stats::anderson_ksamp(&slices)
        })
        .map_err(value_error)?;
    Ok((r.statistic, r.p_value, r.p_value_unclamped))
}

/// Wasserstein-1 distance of two samples.
#[pyfunction]
fn wasserstein_distance(
    py: Python<'_>,
    u_values: &Bound<'_, PyAny>,
    v_values: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    two_samples(
        py,
        ("u_values", u_values),
        ("v_values", v_values),
        stats::wasserstein_distance,
    )
}

/// Energy distance of two samples.
#[pyfunction]
fn energy_distance(
    py: Python<'_>,
    u_values: &Bound<'_, PyAny>,
    v_values: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    two_samples(
        py,
        ("u_values", u_values),
        ("v_values", v_values),
        stats::energy_distance,
    )
}

/// Homogeneity test of a 2 × c table given as its two rows: (statistic, pvalue).
#[pyfunction]
fn chi2_two_rows(
    first: &Bound<'_, PyAny>,
    second: &Bound<'_, PyAny>,
    correction: bool,
    log_likelihood: bool,
) -> PyResult<(f64, f64)> {
    let (a, b) = (
        values("observed[0]", first)?,
        values("observed[1]", second)?,
    );
    let statistic = if log_likelihood {
        ContingencyStatistic::LogLikelihood
    } else {
        ContingencyStatistic::Pearson
    };
    let r =
        stats::contingency_test(&a.f64(), &b.f64(), correction, statistic).map_err(value_error)?;
    Ok((r.statistic, r.p_value))
}

/// Population stability index of two samples on `n_bins` reference-quantile bins.
#[pyfunction]
fn psi_samples(
    py: Python<'_>,
    reference: &Bound<'_, PyAny>,
    current: &Bound<'_, PyAny>,
    n_bins: usize,
) -> PyResult<f64> {
    two_samples(
        py,
        ("reference", reference),
        ("current", current),
        |a, b| stats::psi_samples(a, b, n_bins),
    )
}

/// Jensen–Shannon distance of two probability (or count) vectors, natural log.
#[pyfunction]
fn jensenshannon(p: &Bound<'_, PyAny>, q: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (a, b) = (values("p", p)?, values("q", q)?);
    stats::jensen_shannon(&a.f64(), &b.f64()).map_err(value_error)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ks_2samp, m)?)?;
    m.add_function(wrap_pyfunction!(cramervonmises_2samp, m)?)?;
    m.add_function(wrap_pyfunction!(mannwhitneyu, m)?)?;
    m.add_function(wrap_pyfunction!(anderson_ksamp, m)?)?;
    m.add_function(wrap_pyfunction!(wasserstein_distance, m)?)?;
    m.add_function(wrap_pyfunction!(energy_distance, m)?)?;
    m.add_function(wrap_pyfunction!(chi2_two_rows, m)?)?;
    m.add_function(wrap_pyfunction!(psi_samples, m)?)?;
    m.add_function(wrap_pyfunction!(jensenshannon, m)?)?;
    m.add("MAX_BINS", stats::MAX_BINS)?;
    m.add("MAX_REPRESENTATIVES", mlops_drift::MAX_REPRESENTATIVES)?;
    m.add("MWU_EXACT_MAX_WORK", stats::MWU_EXACT_MAX_WORK)?;
    Ok(())
}
