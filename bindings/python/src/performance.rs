//! Performance estimated before labels (mlops-core's `cbpe`, checked against nannyml there).

use mlops_core::cbpe::{Cbpe, CbpeCalibration};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{value_error, values};

/// A fitted CBPE estimator.
#[pyclass(module = "mlops._native", name = "Cbpe", frozen)]
pub struct PyCbpe {
    inner: Cbpe,
}

#[pymethods]
impl PyCbpe {
    /// Fits on a labeled reference: scores (probabilities), 0/1 labels, optional 0/1
    /// predictions (else `score >= threshold`), and `calibration` ("isotonic", "platt" or
    /// "none").
    #[staticmethod]
    #[pyo3(signature = (scores, labels, predictions, threshold, calibration))]
    fn fit(
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        predictions: Option<&Bound<'_, PyAny>>,
        threshold: f64,
        calibration: &str,
    ) -> PyResult<Self> {
        let calibration = match calibration {
            "isotonic" => CbpeCalibration::Isotonic,
            "platt" => CbpeCalibration::Platt,
            "none" => CbpeCalibration::None,
            other => {
                return Err(PyValueError::new_err(format!(
                    "calibration = {other:?}: expected 'isotonic', 'platt' or 'none'"
                )))
            }
        };
        let s = values("y_pred_proba", scores)?.f64().into_owned();
        let y = values("y_true", labels)?.f64().into_owned();
        let p = predictions
            .map(|p| values("y_pred", p).map(|v| v.f64().into_owned()))
            .transpose()?;
        let inner = py
            .detach(|| Cbpe::fit(&s, &y, p.as_deref(), threshold, calibration))
            .map_err(value_error)?;
        Ok(PyCbpe { inner })
    }

    /// The estimate of a window of scores (optional 0/1 predictions), as JSON.
    #[pyo3(signature = (scores, predictions=None))]
    fn estimate(
        &self,
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        predictions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let s = values("y_pred_proba", scores)?.f64().into_owned();
        let p = predictions
            .map(|p| values("y_pred", p).map(|v| v.f64().into_owned()))
            .transpose()?;
        let e = py
            .detach(|| self.inner.estimate(&s, p.as_deref()))
            .map_err(value_error)?;
        serde_json::to_string(&e).map_err(value_error)
    }

    /// The estimator as JSON (what a model stores as `cbpe`).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(value_error)
    }

    /// An estimator from JSON, checked.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        let inner: Cbpe = serde_json::from_str(text).map_err(value_error)?;
        inner.validate().map_err(value_error)?;
        Ok(PyCbpe { inner })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCbpe>()?;
    Ok(())
}
