//! Training, the compiled model, tuning with a Python objective, and validation.

use std::sync::Arc;

use mlops_core::model::{ModelArtifact, Predictor};
use mlops_core::validation::{ValidationConfig, ValidationSuite};
use mlops_core::{Dataset, Schema};
use mlops_serve::{CompiledModel, NonFinitePolicy};
use mlops_train::hpo::{ParamValue, SearchSpace, Study, StudyConfig};
use mlops_train::{MlpConfig, TrainConfig, Trainer};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{dataset, matrix, value_error, values};
use crate::profile::from_json;

/// The most units a hidden layer of a model trained from Python may have.
const MAX_HIDDEN_UNITS: usize = 1 << 16;
/// The most hidden layers.
const MAX_HIDDEN_LAYERS: usize = 64;
/// The most trials a study from Python may run, and the most at a time (threads).
const MAX_TRIALS: usize = 1_000_000;
const MAX_PARALLEL_TRIALS: usize = 1024;

/// The network's sizes, checked before anything is allocated: a `ValueError` naming the layer.
fn check_mlp(mlp: &MlpConfig) -> PyResult<()> {
    if mlp.hidden.len() > MAX_HIDDEN_LAYERS {
        return Err(PyValueError::new_err(format!(
            "invalid hidden = {} layers: expected at most {MAX_HIDDEN_LAYERS}",
            mlp.hidden.len()
        )));
    }
    if let Some((i, u)) = mlp
        .hidden
        .iter()
        .enumerate()
        .find(|&(_, &u)| !(1..=MAX_HIDDEN_UNITS).contains(&u))
    {
        return Err(PyValueError::new_err(format!(
            "invalid hidden[{i}] = {u}: expected from 1 to {MAX_HIDDEN_UNITS} units"
        )));
    }
    Ok(())
}

/// `data` with labels `y` (0/1).
fn labeled(
    data: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    columns: Vec<String>,
    categorical: &[String],
) -> PyResult<Dataset> {
    let d = dataset(data, columns, categorical)?;
    let labels = values("y", y)?;
    let labels: Vec<f32> = labels.f64().iter().map(|&v| v as f32).collect();
    d.with_labels(labels.into(), "label").map_err(value_error)
}

fn policy(name: &str) -> PyResult<NonFinitePolicy> {
    match name {
        "nan" => Ok(NonFinitePolicy::Nan),
        "reject" => Ok(NonFinitePolicy::Reject),
        "impute" => Ok(NonFinitePolicy::Impute),
        other => Err(PyValueError::new_err(format!(
            "non_finite: expected 'nan', 'reject' or 'impute', got {other:?}"
        ))),
    }
}

/// A model: the artifact (spec + weights) and the inference engine compiled from it.
#[pyclass(module = "mlops._native", name = "Model", frozen)]
pub struct Model {
    pub(crate) artifact: ModelArtifact,
    engine: Arc<CompiledModel>,
}

impl Model {
    pub(crate) fn new(artifact: ModelArtifact, non_finite: &str) -> PyResult<Self> {
        let engine = CompiledModel::compile(&artifact, policy(non_finite)?).map_err(value_error)?;
        Ok(Model {
            artifact,
            engine: Arc::new(engine),
        })
    }
}

#[pymethods]
impl Model {
    /// A model from its spec JSON and safetensors weights.
    #[staticmethod]
    #[pyo3(signature = (spec_json, weights, non_finite="nan"))]
    fn from_parts(spec_json: &[u8], weights: &[u8], non_finite: &str) -> PyResult<Self> {
        Self::new(
            ModelArtifact::from_parts(spec_json, weights).map_err(value_error)?,
            non_finite,
        )
    }

    /// The spec JSON and the body (the safetensors weights of an MLP, the library's file of a
    /// tree model).
    fn to_parts(&self) -> PyResult<(Vec<u8>, Vec<u8>)> {
        Ok((
            self.artifact.spec_json().map_err(value_error)?.into_bytes(),
            self.artifact.body_bytes().map_err(value_error)?,
        ))
    }

    /// A model from the bytes of a model file of another tool (`kind`: "xgboost",
    /// "lightgbm", or None to tell from the contents), with input names `features` (default:
    /// the file's) and decision `threshold` (default 0.5).
    #[staticmethod]
    #[pyo3(signature = (data, name, kind=None, features=None, threshold=None, non_finite="nan"))]
    fn from_model_file(
        data: &[u8],
        name: &str,
        kind: Option<&str>,
        features: Option<Vec<String>>,
        threshold: Option<f32>,
        non_finite: &str,
    ) -> PyResult<Self> {
        let kind: mlops_core::model::ModelKind = match kind {
            Some(k) => k.parse().map_err(value_error)?,
            None => mlops_core::model::ModelKind::guess(name, data).map_err(value_error)?,
        };
        let mut artifact = ModelArtifact::from_model_file(kind, data).map_err(value_error)?;
        if let Some(f) = features {
            artifact = artifact.with_input_features(f).map_err(value_error)?;
        }
        if let Some(t) = threshold {
            artifact = artifact.with_threshold(t).map_err(value_error)?;
        }
        Self::new(artifact, non_finite)
    }

    /// The non-finite policy the engine was compiled with: "nan", "reject" or "impute".
    fn non_finite(&self) -> &'static str {
        self.engine.policy().as_str()
    }

    /// The kind of model: "mlp", "xgboost" or "lightgbm".
    fn kind(&self) -> &'static str {
        self.artifact.kind().as_str()
    }

    /// A model saved in `directory` (`model.json` + `model.safetensors`).
    #[staticmethod]
    #[pyo3(signature = (directory, non_finite="nan"))]
    fn load(directory: &str, non_finite: &str) -> PyResult<Self> {
        Self::new(
            ModelArtifact::load(directory).map_err(value_error)?,
            non_finite,
        )
    }

    /// Saves the model into `directory`.
    fn save(&self, directory: &str) -> PyResult<()> {
        self.artifact.save(directory).map_err(value_error)
    }

    /// Probabilities of class 1, one per row of `x` (rows × features, any layout).
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let x = matrix(x)?;
        let engine = self.engine.clone();
        let p = py
            .detach(|| engine.predict_proba(x.view()))
            .map_err(value_error)?;
        Ok(p.into_pyarray(py))
    }

    /// The feature names, in order.
    fn feature_names(&self) -> Vec<String> {
        self.engine.feature_names().to_vec()
    }

    /// DeepSHAP values (DeepLIFT's rescale rule averaged over `background`, approximate) of
    /// each row of `x`, on `scale` ("probability" or "logit"): `(values rows × features,
    /// base values)`.
    #[allow(clippy::type_complexity)]
    fn explain_deep<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        background: &Bound<'py, PyAny>,
        scale: &str,
    ) -> PyResult<(Bound<'py, numpy::PyArray2<f64>>, Bound<'py, PyArray1<f64>>)> {
        let scale = match scale {
            "probability" => mlops_core::shapley::OutputScale::Probability,
            "logit" => mlops_core::shapley::OutputScale::Logit,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "output = {other:?}: expected 'probability' or 'logit'"
                )))
            }
        };
        let x = matrix(x)?;
        let background = matrix(background)?;
        let model = mlops_core::model::MlpModel::new(&self.artifact).map_err(value_error)?;
        let explained = py
            .detach(|| {
                x.rows()
                    .into_iter()
                    .map(|row| model.deep_shap(&row.to_vec(), background.view(), scale))
                    .collect::<mlops_core::Result<Vec<_>>>()
            })
            .map_err(value_error)?;
        let d = model.spec().input_features.len();
        let n = explained.len();
        let values = ndarray::Array2::from_shape_fn((n, d), |(i, j)| explained[i].values[j]);
        let base: Vec<f64> = explained.iter().map(|e| e.base_value).collect();
        Ok((values.into_pyarray(py), base.into_pyarray(py)))
    }

    /// Permutation importance (scikit-learn's definition) on `x` and 0/1 `y` (`config`: an
    /// `ImportanceConfig` as JSON): `(importances_mean, importances_std, importances
    /// features × repeats, baseline)`.
    #[allow(clippy::type_complexity)]
    fn permutation_importance<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        config: &str,
    ) -> PyResult<(
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, numpy::PyArray2<f64>>,
        f64,
    )> {
        let x = matrix(x)?;
        let y = crate::arrays::values("y", y)?.f64().into_owned();
        if y.len() != x.nrows() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "y: {} labels for {} rows of x",
                y.len(),
                x.nrows()
            )));
        }
        let config: mlops_core::importance::ImportanceConfig =
            serde_json::from_str(config).map_err(value_error)?;
        let names = self.engine.feature_names().to_vec();
        let labels = ndarray::Array1::from_iter(y.iter().map(|&v| v as f32));
        let data = mlops_core::Dataset::new(x, names)
            .and_then(|d| d.with_labels(labels, "y"))
            .map_err(value_error)?;
        let engine = self.engine.clone();
        let result = py
            .detach(|| {
                mlops_core::importance::permutation_importance(engine.as_ref(), &data, &config)
            })
            .map_err(value_error)?;
        let repeats = config.n_repeats;
        let all = ndarray::Array2::from_shape_fn((result.features.len(), repeats), |(j, r)| {
            result.importances[j][r]
        });
        Ok((
            result.importances_mean.into_pyarray(py),
            result.importances_std.into_pyarray(py),
            all.into_pyarray(py),
            result.baseline,
        ))
    }

    /// Shapley values of each row of `x` against `background` (`config`: a `ShapleyConfig` as
    /// JSON): `(values rows × features, base values, standard errors rows × features,
    /// method, rows scored)`.
    #[allow(clippy::type_complexity)]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        background: &Bound<'py, PyAny>,
        config: &str,
    ) -> PyResult<(
        Bound<'py, numpy::PyArray2<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, numpy::PyArray2<f64>>,
        String,
        usize,
    )> {
        let x = matrix(x)?;
        let background = matrix(background)?;
        let config: mlops_core::shapley::ShapleyConfig =
            serde_json::from_str(config).map_err(value_error)?;
        let engine = self.engine.clone();
        let d = engine.n_features();
        let explained = py
            .detach(|| {
                x.rows()
                    .into_iter()
                    .map(|row| {
                        let row: Vec<f32> = row.to_vec();
                        mlops_core::shapley::shapley(
                            engine.as_ref(),
                            &row,
                            background.view(),
                            &config,
                        )
                    })
                    .collect::<mlops_core::Result<Vec<_>>>()
            })
            .map_err(value_error)?;
        let n = explained.len();
        let values = ndarray::Array2::from_shape_fn((n, d), |(i, j)| explained[i].values[j]);
        let errors = ndarray::Array2::from_shape_fn((n, d), |(i, j)| explained[i].std_errors[j]);
        let base: Vec<f64> = explained.iter().map(|e| e.base_value).collect();
        let method = explained
            .first()
            .map_or_else(String::new, |e| e.method.clone());
        let evaluations = explained.iter().map(|e| e.evaluations).sum();
        Ok((
            values.into_pyarray(py),
            base.into_pyarray(py),
            errors.into_pyarray(py),
            method,
            evaluations,
        ))
    }

    /// The decision threshold.
    fn threshold(&self) -> f32 {
        self.engine.threshold()
    }
}

/// Trains the MLP on `x`, `y` (and an optional validation set); returns the model and the
/// per-epoch history as JSON.
#[pyfunction]
#[pyo3(signature = (x, y, columns, categorical, mlp_json=None, train_json=None, validation=None))]
#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    columns: Vec<String>,
    categorical: Vec<String>,
    mlp_json: Option<&str>,
    train_json: Option<&str>,
    validation: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
) -> PyResult<(Model, String)> {
    let train = labeled(x, y, columns.clone(), &categorical)?;
    let validation = validation
        .map(|(vx, vy)| labeled(&vx, &vy, columns, &categorical))
        .transpose()?;
    let mlp: MlpConfig = from_json("mlp", mlp_json)?;
    check_mlp(&mlp)?;
    let config: TrainConfig = from_json("train", train_json)?;
    let trainer = Trainer::new(mlp, config).map_err(value_error)?;
    let trained = py
        .detach(|| trainer.fit(&train, validation.as_ref(), &mut []))
        .map_err(value_error)?;
    let history = serde_json::to_string(&trained.history).map_err(value_error)?;
    Ok((Model::new(trained.artifact, "nan")?, history))
}

/// What the Python objective sees of a trial: its number and its parameters.
#[pyclass(module = "mlops._native", name = "Trial", frozen)]
struct PyTrial {
    #[pyo3(get)]
    number: u64,
    params: Vec<(String, ParamValue)>,
}

#[pymethods]
impl PyTrial {
    /// The parameters as a dict.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.params {
            match v {
                ParamValue::Int(i) => d.set_item(k, i)?,
                ParamValue::Float(f) => d.set_item(k, f)?,
                ParamValue::Choice(c) => d.set_item(k, c)?,
            }
        }
        Ok(d)
    }
}

/// Runs a study (Katib's spec as JSON, the search space as JSON) with a Python objective
/// `objective(trial) -> float`; trials run `parallelTrialCount` at a time on threads, each
/// taking the GIL only to call the objective. An exception fails its trial (its message kept
/// in the record). Returns the stop reason and the trials as JSON.
#[pyfunction]
fn optimize(
    py: Python<'_>,
    config_json: &str,
    space_json: &str,
    objective: Py<PyAny>,
) -> PyResult<(String, String)> {
    let config: StudyConfig = serde_json::from_str(config_json)
        .map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
    let params = serde_json::from_str(space_json)
        .map_err(|e| PyValueError::new_err(format!("space: {e}")))?;
    if config.max_trial_count > MAX_TRIALS {
        return Err(PyValueError::new_err(format!(
            "invalid max_trials = {}: expected at most {MAX_TRIALS}",
            config.max_trial_count
        )));
    }
    if config.parallel_trial_count > MAX_PARALLEL_TRIALS {
        return Err(PyValueError::new_err(format!(
            "invalid parallel = {}: expected at most {MAX_PARALLEL_TRIALS} trials at a time",
            config.parallel_trial_count
        )));
    }
    let space = SearchSpace::new(params).map_err(value_error)?;
    let mut study = Study::new(config, space).map_err(value_error)?;
    let why = py
        .detach(|| {
            study.optimize(
                |trial| {
                    let t = PyTrial {
                        number: trial.number(),
                        params: trial
                            .params()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    };
                    Python::attach(|py| {
                        objective
                            .call1(py, (t,))
                            .and_then(|v| v.extract::<f64>(py))
                            .map_err(|e| {
                                mlops_train::Error::from(mlops_core::InvalidValue::new(
                                    format!("objective of trial {}", trial.number()),
                                    format!("an exception: {e}"),
                                    "a float",
                                ))
                            })
                    })
                },
                &mut |_| {},
            )
        })
        .map_err(value_error)?;
    Ok((
        serde_json::to_string(&why).map_err(value_error)?,
        serde_json::to_string(study.trials()).map_err(value_error)?,
    ))
}

/// The schema inferred from `data` (and labels `y`, if given), as JSON.
#[pyfunction]
#[pyo3(signature = (data, columns, categorical, y=None))]
fn infer_schema(
    data: &Bound<'_, PyAny>,
    columns: Vec<String>,
    categorical: Vec<String>,
    y: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let d = match y {
        Some(y) => labeled(data, y, columns, &categorical)?,
        None => dataset(data, columns, &categorical)?,
    };
    Schema::infer(&d).to_json().map_err(value_error)
}

/// The validation report of `data` (against `schema_json` if given) as JSON.
#[pyfunction]
#[pyo3(signature = (data, columns, categorical, y=None, schema_json=None, config_json=None))]
fn validate(
    data: &Bound<'_, PyAny>,
    columns: Vec<String>,
    categorical: Vec<String>,
    y: Option<&Bound<'_, PyAny>>,
    schema_json: Option<&str>,
    config_json: Option<&str>,
) -> PyResult<String> {
    let d = match y {
        Some(y) => labeled(data, y, columns, &categorical)?,
        None => dataset(data, columns, &categorical)?,
    };
    let schema = schema_json
        .map(Schema::from_json)
        .transpose()
        .map_err(value_error)?;
    let config: ValidationConfig = from_json("config", config_json)?;
    let suite = ValidationSuite::from_config(&config).map_err(value_error)?;
    suite
        .run(&d, schema.as_ref())
        .to_json()
        .map_err(value_error)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<PyTrial>()?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(optimize, m)?)?;
    m.add_function(wrap_pyfunction!(infer_schema, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    Ok(())
}
