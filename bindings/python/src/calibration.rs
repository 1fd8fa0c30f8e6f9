//! Probability calibration (mlops-core's `calibration`, checked against scikit-learn there).

use mlops_core::calibration::{BinStrategy, Calibration, CalibrationMethod, ReliabilityCurve};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{value_error, values};

/// A fitted calibration map (isotonic or Platt).
#[pyclass(module = "mlops._native", name = "Calibration", frozen)]
pub struct PyCalibration {
    inner: Calibration,
}

#[pymethods]
impl PyCalibration {
    /// Fits `method` ("isotonic" or "platt") on held-out scores and 0/1 labels.
    #[staticmethod]
    #[pyo3(signature = (method, scores, labels, sample_weight=None))]
    fn fit(
        py: Python<'_>,
        method: &str,
        scores: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let method = match method {
            "isotonic" => CalibrationMethod::Isotonic,
            "platt" | "sigmoid" => CalibrationMethod::Platt,
            other => {
                return Err(PyValueError::new_err(format!(
                    "method = {other:?}: expected 'isotonic' or 'platt' (scikit-learn's 'sigmoid')"
                )))
            }
        };
        let s = values("scores", scores)?.f64().into_owned();
        let y = values("labels", labels)?.f64().into_owned();
        let w = sample_weight
            .map(|w| values("sample_weight", w).map(|v| v.f64().into_owned()))
            .transpose()?;
        let inner = py
            .detach(|| Calibration::fit(method, &s, &y, w.as_deref()))
            .map_err(value_error)?;
        Ok(PyCalibration { inner })
    }

    /// The calibrated probabilities of `scores` (NaN stays NaN).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        scores: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let s = values("scores", scores)?.f64().into_owned();
        let out: Vec<f64> = py.detach(|| s.iter().map(|&v| self.inner.apply(v)).collect());
        Ok(out.into_pyarray(py))
    }

    /// The map as JSON (what a model stores).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(value_error)
    }

    /// A map from JSON, checked.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        let inner: Calibration = serde_json::from_str(text).map_err(value_error)?;
        inner.validate().map_err(value_error)?;
        Ok(PyCalibration { inner })
    }
}

/// `(prob_true, prob_pred, counts)` of the reliability curve.
#[pyfunction]
#[pyo3(signature = (y_true, y_prob, n_bins, strategy))]
#[allow(clippy::type_complexity)]
fn calibration_curve(
    y_true: &Bound<'_, PyAny>,
    y_prob: &Bound<'_, PyAny>,
    n_bins: usize,
    strategy: &str,
) -> PyResult<(Vec<f64>, Vec<f64>, Vec<usize>)> {
    let strategy = match strategy {
        "uniform" => BinStrategy::Uniform,
        "quantile" => BinStrategy::Quantile,
        other => {
            return Err(PyValueError::new_err(format!(
                "strategy = {other:?}: expected 'uniform' or 'quantile'"
            )))
        }
    };
    let y = values("y_true", y_true)?.f64().into_owned();
    let p = values("y_prob", y_prob)?.f64().into_owned();
    let c = ReliabilityCurve::new(&p, &y, n_bins, strategy).map_err(value_error)?;
    Ok((c.prob_true, c.prob_pred, c.counts))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCalibration>()?;
    m.add_function(wrap_pyfunction!(calibration_curve, m)?)?;
    Ok(())
}
