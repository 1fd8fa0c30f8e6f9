//! Where the monitor gets a version's references: [`ProfileSource`], [`MemoryProfiles`] for
//! tests and embedded use, and (feature `registry`) the registry's version files
//! `reference_profile.json` (the features) and `prediction_profile.json` (the model's scores
//! on its reference data).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use mlops_drift::ReferenceProfile;

use crate::step_stats::lock;
use crate::Result;

pub use mlops_drift::PREDICTION_COLUMN;

/// The version file holding the profile of a model's scores on its reference data (one
/// column, [`PREDICTION_COLUMN`]); the registry's `PREDICTION_PROFILE_FILE`.
pub const PREDICTION_PROFILE_FILE: &str = "prediction_profile.json";

/// A version's references.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    /// Of its features; `None`: the version has none (its feature drift is unknown).
    pub features: Option<ReferenceProfile>,
    /// Of its scores (one column, [`PREDICTION_COLUMN`]); `None`: its prediction drift is
    /// unknown.
    pub prediction: Option<ReferenceProfile>,
    /// Its performance estimator (the model spec's `cbpe`, fitted on rows it did not train on at
    /// training); `None`: its estimated performance is unknown.
    pub performance: Option<mlops_core::cbpe::Cbpe>,
}

/// Where a version's reference profiles come from.
#[async_trait]
pub trait ProfileSource: Send + Sync {
    /// The profiles of `version` of `model`. A version registered without one is `Ok` with
    /// `None` in its place; a store that fails is an error (retried later).
    async fn profiles(&self, model: &str, version: u64) -> Result<Profiles>;
}

/// Profiles held in memory, by model and version.
///
/// ```
/// use mlops_serve::monitor::{MemoryProfiles, ProfileSource, Profiles};
///
/// let profiles = MemoryProfiles::new();
/// profiles.insert("fraud", 1, Profiles::default());
/// # futures::executor::block_on(async {
/// assert!(profiles.profiles("fraud", 1).await?.features.is_none());
/// assert!(profiles.profiles("fraud", 2).await.is_err());
/// # Ok::<(), mlops_serve::Error>(())
/// # })?;
/// # Ok::<(), mlops_serve::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryProfiles {
    profiles: Mutex<HashMap<(String, u64), Profiles>>,
}

impl MemoryProfiles {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the profiles of `version` of `model`.
    pub fn insert(&self, model: &str, version: u64, profiles: Profiles) {
        lock(&self.profiles).insert((model.to_string(), version), profiles);
    }
}

#[async_trait]
impl ProfileSource for MemoryProfiles {
    async fn profiles(&self, model: &str, version: u64) -> Result<Profiles> {
        lock(&self.profiles)
            .get(&(model.to_string(), version))
            .cloned()
            .ok_or_else(|| {
                crate::Error::not_found(format!("no profiles of version {version} of {model:?}"))
            })
    }
}

#[cfg(feature = "registry")]
#[async_trait]
impl ProfileSource for mlops_registry::Registry {
    async fn profiles(&self, model: &str, version: u64) -> Result<Profiles> {
        let reference = mlops_core::VersionRef::Number(version);
        let info = self.version(model, &reference).await?;
        let has = |name: &str| info.record.files.iter().any(|f| f.name == name);
        let mut profiles = Profiles::default();
        for (name, slot) in [
            (
                mlops_registry::REFERENCE_PROFILE_FILE,
                &mut profiles.features,
            ),
            (
                mlops_registry::PREDICTION_PROFILE_FILE,
                &mut profiles.prediction,
            ),
        ] {
            if !has(name) {
                continue;
            }
            let bytes = self.read_file(model, &reference, name).await?;
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                crate::Error::corrupt(format!(
                    "{name} of version {version} of {model:?} is not UTF-8: {e}"
                ))
            })?;
            let profile = ReferenceProfile::from_json(text).map_err(|e| {
                crate::Error::corrupt(format!(
                    "{name} of version {version} of {model:?} is not a reference profile: {e}"
                ))
            })?;
            *slot = Some(profile);
        }
        if has(mlops_core::model::SPEC_FILE) {
            let bytes = self
                .read_file(model, &reference, mlops_core::model::SPEC_FILE)
                .await?;
            // The estimator is optional: a spec this build cannot read, or an estimator that
            // fails its checks (against the spec's threshold too), leaves the estimate unknown
            // and the drift profiles in use.
            let estimator = serde_json::from_slice::<mlops_core::model::ModelSpec>(&bytes)
                .map_err(|e| {
                    format!(
                        "{} is not a model spec this build reads: {e}",
                        mlops_core::model::SPEC_FILE
                    )
                })
                .and_then(|spec| {
                    spec.validate().map_err(|e| e.to_string())?;
                    Ok(spec.cbpe)
                });
            match estimator {
                Ok(cbpe) => profiles.performance = cbpe,
                Err(e) => tracing::warn!(
                    model,
                    version,
                    error = %e,
                    "no performance estimator for the version: its estimate is unknown"
                ),
            }
        }
        Ok(profiles)
    }
}

#[cfg(all(test, feature = "registry"))]
mod tests {
    #[test]
    fn the_file_name_is_the_registry_s() {
        assert_eq!(
            super::PREDICTION_PROFILE_FILE,
            mlops_registry::PREDICTION_PROFILE_FILE
        );
    }
}
