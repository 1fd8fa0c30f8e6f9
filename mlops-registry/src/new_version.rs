//! What a caller hands to [`crate::Registry::register`]: files and metadata of a new version.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use mlops_core::model::{ModelArtifact, SPEC_FILE};

use crate::blobs::FileSource;
use crate::error::{Error, Result};
use crate::records::Lineage;

/// The conventional name of a drift reference profile inside a version.
pub const REFERENCE_PROFILE_FILE: &str = "reference_profile.json";

/// The conventional name of the profile of a model's scores on its reference data inside a
/// version (what a live monitor compares served scores with).
pub const PREDICTION_PROFILE_FILE: &str = "prediction_profile.json";

/// A version to register: files (by name) and metadata.
///
/// ```
/// use mlops_registry::NewVersion;
///
/// let v = NewVersion::new()
///     .bytes("notes.txt", "trained on November data")
///     .metric("roc_auc", 0.97)
///     .param("learning_rate", "0.001")
///     .tag("team", "fraud")
///     .description("weekly retrain");
/// assert_eq!(v.files.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// Files by name (relative paths with `/`).
    pub files: BTreeMap<String, FileSource>,
    /// Metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Hyperparameters and settings.
    pub params: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Where it came from.
    pub lineage: Lineage,
    /// A human description (also the audit event's reason).
    pub description: Option<String>,
}

impl NewVersion {
    /// An empty version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file from memory.
    pub fn bytes(mut self, name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        self.files
            .insert(name.into(), FileSource::Bytes(bytes.into()));
        self
    }

    /// Adds a local file (read in chunks while uploading).
    pub fn file(mut self, name: impl Into<String>, path: impl AsRef<Path>) -> Self {
        self.files
            .insert(name.into(), FileSource::Path(path.as_ref().to_path_buf()));
        self
    }

    /// Adds every file under `dir` (recursively, following symbolic links; names relative to
    /// `dir`, `/`-separated).
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut stack = vec![dir.to_path_buf()];
        // Canonical directories already walked: a link back up the tree is not walked twice.
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = stack.pop() {
            let canonical = d
                .canonicalize()
                .map_err(|e| Error::io("resolving", &d, e))?;
            if !seen.insert(canonical) {
                continue;
            }
            let entries = std::fs::read_dir(&d).map_err(|e| Error::io("listing", &d, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("listing", &d, e))?;
                let path = entry.path();
                // Symbolic links are followed.
                let kind = std::fs::metadata(&path)
                    .map_err(|e| Error::io("inspecting", &path, e))?
                    .file_type();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    let rel = path.strip_prefix(dir).unwrap_or(&path);
                    let name = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    self.files.insert(name, FileSource::Path(path));
                }
            }
        }
        if self.files.is_empty() {
            return Err(Error::invalid(
                "model directory",
                dir.display(),
                "a directory with at least one file",
            ));
        }
        Ok(self)
    }

    /// Adds an mlops-core model of any kind: `model.json` and its body file
    /// (`model.safetensors` for an MLP, the library's own file for an XGBoost or LightGBM
    /// model; [`ModelArtifact::body_file`]).
    pub fn artifact(self, artifact: &ModelArtifact) -> Result<Self> {
        Ok(self
            .bytes(SPEC_FILE, artifact.spec_json()?.into_bytes())
            .bytes(artifact.body_file(), artifact.body_bytes()?))
    }

    /// Adds a drift reference profile (any serialized form) as `reference_profile.json`.
    pub fn reference_profile(self, json: impl Into<Bytes>) -> Self {
        self.bytes(REFERENCE_PROFILE_FILE, json)
    }

    /// Adds the profile of the model's scores on its reference data (any serialized form) as
    /// `prediction_profile.json`.
    pub fn prediction_profile(self, json: impl Into<Bytes>) -> Self {
        self.bytes(PREDICTION_PROFILE_FILE, json)
    }

    /// Sets a metric.
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// Records every point estimate of `values` under its metric name (`roc_auc`, ...), the
    /// names [`VersionRecord::metric_values`](crate::VersionRecord::metric_values) reads back.
    pub fn metrics(mut self, values: &mlops_core::gate::MetricValues) -> Self {
        self.metrics.extend(values.to_named());
        self
    }

    /// Sets a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the lineage.
    pub fn lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = lineage;
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn dir_collects_nested_files_follows_links_and_survives_loops() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.json"), "{}").unwrap();
        std::fs::create_dir_all(d.path().join("extra/deep")).unwrap();
        std::fs::write(d.path().join("extra/deep/notes.txt"), "x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("linked.bin"), "y").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("linked.bin"),
            d.path().join("linked.bin"),
        )
        .unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("extra/loop")).unwrap();
        let v = NewVersion::new().dir(d.path()).unwrap();
        let names: Vec<&str> = v.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["extra/deep/notes.txt", "linked.bin", "model.json"]);
        let empty = tempfile::tempdir().unwrap();
        let e = NewVersion::new().dir(empty.path()).unwrap_err().to_string();
        assert!(e.contains("model directory"), "{e}");
    }
}
