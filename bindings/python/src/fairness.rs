//! Fairness (mlops-core's `fairness`, checked against fairlearn and aif360 there): the Python
//! half encodes the sensitive columns into group codes and keys; this half builds the data and
//! answers in JSON.

use mlops_core::fairness::{
    assess, measure, DisparitySpec, FairnessConfig, FairnessData, GroupMetric, Method, MetricFrame,
    SensitiveGroups,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{value_error, values};

fn json(v: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(v).map_err(value_error)
}

/// Labels, decisions (or scores) and weights with their groups, checked once; each method
/// answers in JSON.
#[pyclass(module = "mlops._native", name = "FairnessInput", frozen)]
pub struct FairnessInput {
    data: FairnessData,
}

#[pymethods]
impl FairnessInput {
    /// With `scores`, `y_pred` holds scores (for ROC AUC; decisions are `score >= 0.5`).
    #[new]
    #[pyo3(signature = (y_true, y_pred, codes, columns, keys, sample_weight, scores))]
    fn new(
        y_true: &Bound<'_, PyAny>,
        y_pred: &Bound<'_, PyAny>,
        codes: &Bound<'_, PyAny>,
        columns: Vec<String>,
        keys: Vec<Vec<String>>,
        sample_weight: Option<&Bound<'_, PyAny>>,
        scores: bool,
    ) -> PyResult<Self> {
        let labels = values("y_true", y_true)?.f64().into_owned();
        let predicted = values("y_pred", y_pred)?.f64().into_owned();
        let codes = values("sensitive_features", codes)?.f64().into_owned();
        let codes = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if c >= 0.0 && c.fract() == 0.0 && c < keys.len() as f64 {
                    Ok(c as u32)
                } else {
                    Err(PyValueError::new_err(format!(
                        "sensitive_features codes[{i}] = {c}: expected a group index below {}",
                        keys.len()
                    )))
                }
            })
            .collect::<PyResult<Vec<u32>>>()?;
        let weights = sample_weight
            .map(|w| values("sample_weight", w).map(|v| v.f64().into_owned()))
            .transpose()?;
        let groups = SensitiveGroups::from_codes(columns, keys, codes).map_err(value_error)?;
        if scores {
            FairnessData::from_scores(&labels, &predicted, 0.5, weights.as_deref(), groups)
        } else {
            FairnessData::from_predictions(&labels, &predicted, weights.as_deref(), groups)
        }
        .map(|data| FairnessInput { data })
        .map_err(value_error)
    }

    /// Metrics by group and overall (`MetricFrame`).
    fn frame(&self, py: Python<'_>, zero_when_undefined: bool) -> PyResult<String> {
        json(&py.detach(|| MetricFrame::new(&self.data, zero_when_undefined)))
    }

    /// `MetricFrame.difference` (or `.ratio`) of one metric.
    fn spread(
        &self,
        py: Python<'_>,
        zero_when_undefined: bool,
        metric: &str,
        method: &str,
        ratio: bool,
    ) -> PyResult<f64> {
        let metric: GroupMetric = metric.parse().map_err(value_error)?;
        let method: Method = serde_json::from_value(serde_json::Value::String(method.into()))
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "method = {method:?}: expected 'between_groups' or 'to_overall'"
                ))
            })?;
        py.detach(|| {
            let frame = MetricFrame::new(&self.data, zero_when_undefined);
            if ratio {
                frame.ratio(metric, method)
            } else {
                frame.difference(metric, method)
            }
        })
        .map_err(value_error)
    }

    /// One disparity (`spec`: a `DisparitySpec` as JSON) as a `DisparityValue`.
    fn measure(&self, py: Python<'_>, spec: &str, zero_when_undefined: bool) -> PyResult<String> {
        let spec: DisparitySpec = serde_json::from_str(spec).map_err(value_error)?;
        json(
            &py.detach(|| measure(&self.data, &spec, zero_when_undefined))
                .map_err(value_error)?,
        )
    }

    /// A disparity judged (`spec` and `config` as JSON) as a `DisparityAssessment`.
    fn assess(&self, py: Python<'_>, spec: &str, config: &str) -> PyResult<String> {
        let spec: DisparitySpec = serde_json::from_str(spec).map_err(value_error)?;
        let config: FairnessConfig = serde_json::from_str(config).map_err(value_error)?;
        json(
            &py.detach(|| assess(&self.data, &spec, &config))
                .map_err(value_error)?,
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FairnessInput>()?;
    Ok(())
}
