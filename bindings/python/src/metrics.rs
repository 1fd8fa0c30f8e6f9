//! The binary-classification metrics (mlops-core's `ScoredSamples`, checked against
//! scikit-learn there).

use mlops_core::metrics::ScoredSamples;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{record_inputs, value_error, values, Values};

/// Labels, scores and optional weights checked into `ScoredSamples` (float32 inputs read as
/// float32, the rest as float64).
fn scored(
    y_true: &Bound<'_, PyAny>,
    y_score: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<ScoredSamples> {
    let labels = values("y_true", y_true)?;
    let scores = values("y_score", y_score)?;
    let weights = sample_weight
        .map(|w| values("sample_weight", w))
        .transpose()?;
    if labels.len() != scores.len() {
        return Err(PyValueError::new_err(format!(
            "y_score: expected {} values (one per y_true), got {}",
            labels.len(),
            scores.len()
        )));
    }
    if let Some(w) = &weights {
        if w.len() != labels.len() {
            return Err(PyValueError::new_err(format!(
                "sample_weight: expected {} values (one per y_true), got {}",
                labels.len(),
                w.len()
            )));
        }
    }
    let result = match (
        labels.f32(),
        scores.f32(),
        weights.as_ref().map(Values::f32),
    ) {
        (Some(l), Some(s), None) => {
            record_inputs(&[l.as_ptr() as usize, s.as_ptr() as usize]);
            ScoredSamples::from_f32(&l, &s, None)
        }
        (Some(l), Some(s), Some(Some(w))) => {
            record_inputs(&[
                l.as_ptr() as usize,
                s.as_ptr() as usize,
                w.as_ptr() as usize,
            ]);
            ScoredSamples::from_f32(&l, &s, Some(&w))
        }
        _ => {
            let w = weights.as_ref().map(Values::f64);
            let (l, s) = (labels.f64(), scores.f64());
            let mut addresses = vec![l.as_ptr() as usize, s.as_ptr() as usize];
            addresses.extend(w.as_deref().map(|w| w.as_ptr() as usize));
            record_inputs(&addresses);
            ScoredSamples::new(&l, &s, w.as_deref())
        }
    };
    result.map_err(value_error)
}

macro_rules! score_metric {
    ($name:ident, $method:ident, $doc:literal) => {
        #[doc = $doc]
        #[pyfunction]
        #[pyo3(signature = (y_true, y_score, sample_weight=None))]
        fn $name(
            py: Python<'_>,
            y_true: &Bound<'_, PyAny>,
            y_score: &Bound<'_, PyAny>,
            sample_weight: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<f64> {
            let s = scored(y_true, y_score, sample_weight)?;
            py.detach(|| s.$method()).map_err(value_error)
        }
    };
}

score_metric!(roc_auc_score, roc_auc, "ROC AUC of scores.");
score_metric!(
    average_precision_score,
    average_precision,
    "Average precision of scores."
);
score_metric!(log_loss, log_loss, "Log loss of probabilities.");
score_metric!(brier_score_loss, brier, "Brier score of probabilities.");

/// Confusion-matrix metrics of predicted labels (0/1): accuracy, precision, recall, F1.
#[pyfunction]
#[pyo3(signature = (y_true, y_pred, sample_weight=None))]
fn label_metrics(
    y_true: &Bound<'_, PyAny>,
    y_pred: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<(f64, f64, f64, f64)> {
    let predicted = values("y_pred", y_pred)?;
    if let Some(i) = predicted.f64().iter().position(|&v| v != 0.0 && v != 1.0) {
        return Err(PyValueError::new_err(format!(
            "y_pred[{i}] = {}: expected a label, 0 or 1",
            predicted.f64()[i]
        )));
    }
    let s = scored(y_true, y_pred, sample_weight)?;
    let cm = s.confusion(0.5);
    Ok((cm.accuracy(), cm.precision(), cm.recall(), cm.f1()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(roc_auc_score, m)?)?;
    m.add_function(wrap_pyfunction!(average_precision_score, m)?)?;
    m.add_function(wrap_pyfunction!(log_loss, m)?)?;
    m.add_function(wrap_pyfunction!(brier_score_loss, m)?)?;
    m.add_function(wrap_pyfunction!(label_metrics, m)?)?;
    Ok(())
}
