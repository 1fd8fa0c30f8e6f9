//! Reference profiles and their mergeable sketches on 2-d numpy arrays (rows × columns). The
//! Python half wraps them in `mlops.drift.ReferenceProfile` / `ProfileSketch` (pickling,
//! pandas, Dask).

use mlops_core::{ColumnKind, Dataset};

use crate::arrays::dataset;
use mlops_drift::{
    CheckedDriftConfig, DriftConfig, ProfileConfig, ProfileSketch, ReferenceProfile,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::value_error;

pub(crate) fn from_json<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    json: Option<&str>,
) -> PyResult<T> {
    match json {
        None => Ok(T::default()),
        Some(s) => {
            serde_json::from_str(s).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
        }
    }
}

/// A fitted reference profile.
#[pyclass(module = "mlops._native", name = "Profile", frozen)]
pub struct Profile {
    pub(crate) inner: ReferenceProfile,
}

impl Profile {
    /// The categorical columns of the profile, to mark the same ones in current data.
    fn categorical(&self) -> Vec<String> {
        self.inner
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Categorical)
            .map(|c| c.name.clone())
            .collect()
    }

    /// `data` with the profile's categorical columns marked, and the drift config.
    fn current(
        &self,
        data: &Bound<'_, PyAny>,
        columns: Vec<String>,
        config_json: Option<&str>,
    ) -> PyResult<(Dataset, CheckedDriftConfig)> {
        let config: DriftConfig = from_json("config", config_json)?;
        Ok((
            dataset(data, columns, &self.categorical())?,
            config.check().map_err(value_error)?,
        ))
    }
}

#[pymethods]
impl Profile {
    /// Fits a profile of `data` (rows × columns).
    #[staticmethod]
    #[pyo3(signature = (data, columns, categorical, config_json=None))]
    fn fit(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        columns: Vec<String>,
        categorical: Vec<String>,
        config_json: Option<&str>,
    ) -> PyResult<Self> {
        let d = dataset(data, columns, &categorical)?;
        let config: ProfileConfig = from_json("config", config_json)?;
        let inner = py
            .detach(|| ReferenceProfile::fit(&d, &config))
            .map_err(value_error)?;
        Ok(Profile { inner })
    }

    /// The drift report of `current` against the profile, as JSON.
    #[pyo3(signature = (current, columns, config_json=None))]
    fn compare(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        columns: Vec<String>,
        config_json: Option<&str>,
    ) -> PyResult<String> {
        let (d, config) = self.current(current, columns, config_json)?;
        let report = py
            .detach(|| self.inner.compare(&d, &config))
            .map_err(value_error)?;
        report.to_json().map_err(value_error)
    }

    /// The drift report of `current` as an HTML page with per-column ECDFs.
    #[pyo3(signature = (current, columns, config_json=None))]
    fn html(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        columns: Vec<String>,
        config_json: Option<&str>,
    ) -> PyResult<String> {
        let (d, config) = self.current(current, columns, config_json)?;
        py.detach(|| {
            let report = self.inner.compare(&d, &config)?;
            let values: Vec<(String, Vec<f64>)> = d
                .feature_names()
                .enumerate()
                .map(|(j, n)| {
                    let column = d
                        .features()
                        .column(j)
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    (n.to_string(), column)
                })
                .collect();
            mlops_drift::html_report(&self.inner, &report, &values)
        })
        .map_err(value_error)
    }

    /// The profile as JSON (what the registry stores beside a model).
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().map_err(value_error)
    }

    /// A profile from its JSON.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Profile {
            inner: ReferenceProfile::from_json(text).map_err(value_error)?,
        })
    }

    /// The column names, in order.
    fn columns(&self) -> Vec<String> {
        self.inner.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The largest ECDF error of a column's stored values: a KS statistic against this profile
    /// is within it of the exact one.
    fn ks_error_bound(&self) -> f64 {
        self.inner.ks_error_bound()
    }

    /// Rows of the reference.
    fn rows(&self) -> usize {
        self.inner.columns.first().map_or(0, |c| c.rows)
    }
}

/// A mergeable sketch of a partition.
#[pyclass(module = "mlops._native", name = "Sketch")]
pub struct Sketch {
    inner: ProfileSketch,
}

#[pymethods]
impl Sketch {
    /// Sketches `data` (rows × columns) with KLL accuracy `k`.
    #[staticmethod]
    fn from_array(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        columns: Vec<String>,
        categorical: Vec<String>,
        k: u16,
    ) -> PyResult<Self> {
        let d = dataset(data, columns, &categorical)?;
        let inner = py
            .detach(|| ProfileSketch::from_dataset(&d, k))
            .map_err(value_error)?;
        Ok(Sketch { inner })
    }

    /// Adds `other` (a sketch of another partition of the same columns).
    fn merge(&mut self, other: &Sketch) -> PyResult<()> {
        self.inner.merge(&other.inner).map_err(value_error)
    }

    /// The reference profile the merged partitions make.
    #[pyo3(signature = (representatives, config_json=None))]
    fn to_profile(&self, representatives: usize, config_json: Option<&str>) -> PyResult<Profile> {
        let config: ProfileConfig = from_json("config", config_json)?;
        Ok(Profile {
            inner: self
                .inner
                .to_profile(&config, representatives)
                .map_err(value_error)?,
        })
    }

    /// The bound on KS statistics against `to_profile(representatives)`.
    fn ks_error_bound(&self, representatives: usize) -> f64 {
        self.inner.ks_error_bound(representatives)
    }

    /// The sketch as JSON (the KLL sketches in DataSketches' binary format, base64).
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().map_err(value_error)
    }

    /// A sketch from its JSON.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Sketch {
            inner: ProfileSketch::from_json(text).map_err(value_error)?,
        })
    }

    /// Rows sketched so far.
    fn rows(&self) -> u64 {
        self.inner
            .columns
            .first()
            .map_or(0, |c| c.sketch.count() + c.sketch.missing())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Profile>()?;
    m.add_class::<Sketch>()?;
    m.add("DEFAULT_SKETCH_K", mlops_drift::DEFAULT_SKETCH_K)?;
    Ok(())
}
