//! The model registry at any URL (a folder, `memory://`, `s3://`, `gs://`, `az://`), through its
//! blocking API with the GIL released.

use std::collections::BTreeMap;

use mlops_registry::blocking::Registry;
use mlops_registry::{NewVersion, RegistryConfig, VersionRef, REFERENCE_PROFILE_FILE};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::value_error;
use crate::profile::Profile;
use crate::train::Model;

fn reference(s: &str) -> PyResult<VersionRef> {
    s.parse::<VersionRef>().map_err(|e| {
        PyValueError::new_err(format!(
            "reference: expected a version number or @alias, got {s:?} ({e})"
        ))
    })
}

/// A registry handle.
#[pyclass(module = "mlops._native", name = "Registry", frozen)]
pub struct PyRegistry {
    inner: Registry,
}

#[pymethods]
impl PyRegistry {
    /// Opens the registry at `url` (credentials from the environment, as object_store reads them).
    #[new]
    fn open(py: Python<'_>, url: &str) -> PyResult<Self> {
        let inner = py
            .detach(|| Registry::open(url, &RegistryConfig::default()))
            .map_err(value_error)?;
        Ok(PyRegistry { inner })
    }

    /// Registers `model` (and its reference `profile`) as the next version of `name`;
    /// returns the version number.
    #[pyo3(signature = (name, model, profile=None, metrics=BTreeMap::new(), params=BTreeMap::new(), tags=BTreeMap::new(), description=None))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        name: &str,
        model: &Model,
        profile: Option<&Profile>,
        metrics: BTreeMap<String, f64>,
        params: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
        description: Option<String>,
    ) -> PyResult<u64> {
        let mut new = NewVersion::new()
            .artifact(&model.artifact)
            .map_err(value_error)?;
        if let Some(p) = profile {
            new = new.reference_profile(p.inner.to_json().map_err(value_error)?);
        }
        for (k, v) in metrics {
            new = new.metric(k, v);
        }
        for (k, v) in params {
            new = new.param(k, v);
        }
        for (k, v) in tags {
            new = new.tag(k, v);
        }
        if let Some(d) = description {
            new = new.description(d);
        }
        let record = py
            .detach(|| self.inner.register(name, new))
            .map_err(value_error)?;
        Ok(record.version)
    }

    /// Points `alias` at `version` if it points at `expected` now (compare-and-swap).
    #[pyo3(signature = (name, alias, version, expected=None, why="set from Python"))]
    fn set_alias(
        &self,
        py: Python<'_>,
        name: &str,
        alias: &str,
        version: u64,
        expected: Option<u64>,
        why: &str,
    ) -> PyResult<()> {
        py.detach(|| self.inner.set_alias(name, alias, version, expected, why))
            .map(|_| ())
            .map_err(value_error)
    }

    /// The version `alias` points at (`None`: unset).
    fn alias(&self, py: Python<'_>, name: &str, alias: &str) -> PyResult<Option<u64>> {
        py.detach(|| self.inner.alias(name, alias))
            .map(|e| e.and_then(|e| e.target))
            .map_err(value_error)
    }

    /// Loads a version (`"3"` or `"@production"`) as a model.
    #[pyo3(signature = (name, reference, non_finite="nan"))]
    fn load(
        &self,
        py: Python<'_>,
        name: &str,
        reference: &str,
        non_finite: &str,
    ) -> PyResult<Model> {
        let r = self::reference(reference)?;
        let (_, artifact) = py
            .detach(|| self.inner.load_artifact(name, &r))
            .map_err(value_error)?;
        Model::new(artifact, non_finite)
    }

    /// The reference profile stored with a version (`None` when it has none).
    fn profile(&self, py: Python<'_>, name: &str, reference: &str) -> PyResult<Option<Profile>> {
        let r = self::reference(reference)?;
        let info = py
            .detach(|| self.inner.version(name, &r))
            .map_err(value_error)?;
        if !info
            .record
            .files
            .iter()
            .any(|f| f.name == REFERENCE_PROFILE_FILE)
        {
            return Ok(None);
        }
        let bytes = py
            .detach(|| self.inner.read_file(name, &r, REFERENCE_PROFILE_FILE))
            .map_err(value_error)?;
        let text = std::str::from_utf8(&bytes).map_err(value_error)?;
        Ok(Some(Profile {
            inner: mlops_drift::ReferenceProfile::from_json(text).map_err(value_error)?,
        }))
    }

    /// Every version of `name` (records, tombstones, aliases) as JSON.
    fn versions(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let v = py
            .detach(|| self.inner.list_versions(name))
            .map_err(value_error)?;
        serde_json::to_string(&v).map_err(value_error)
    }

    /// Up to `limit` versions of `name` numbered after `after`, and where the next page
    /// starts, as JSON (`Registry::list_versions_page`).
    fn versions_page(
        &self,
        py: Python<'_>,
        name: &str,
        after: u64,
        limit: usize,
    ) -> PyResult<String> {
        let page = py
            .detach(|| self.inner.list_versions_page(name, after, limit))
            .map_err(value_error)?;
        serde_json::to_string(&page).map_err(value_error)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRegistry>()
}
