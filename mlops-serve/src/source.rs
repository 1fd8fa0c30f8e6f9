//! Where serving gets its models and how it moves aliases: the small async trait
//! [`ModelSource`], an in-memory [`MemorySource`] for tests and embedded use, and (feature
//! `registry`) the implementation on `mlops_registry::Registry`.
//!
//! A source speaks in version numbers (from 1) and alias names (`"production"`, `"canary"`).
//! A written reference (`"3"`, `"@production"`, `"@latest"`) is a [`mlops_core::VersionRef`],
//! parsed once where it is read and resolved by the registry (`Registry::resolve`), not here.
//!
//! ```
//! use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
//! use mlops_serve::source::{MemorySource, ModelSource};
//! use ndarray::array;
//!
//! # futures::executor::block_on(async {
//! let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//! let artifact = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])])?;
//! let source = MemorySource::new();
//! let v = source.add("fraud", artifact);
//! assert!(source.move_alias("fraud", "production", Some(v), None, "first").await?);
//! // A compare-and-swap from a stale expectation does nothing and says so.
//! assert!(!source.move_alias("fraud", "production", None, Some(7), "stale").await?);
//! assert_eq!(source.alias("fraud", "production").await?, Some(v));
//! # Ok::<(), mlops_serve::Error>(())
//! # })?;
//! # Ok::<(), mlops_serve::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use mlops_core::model::ModelArtifact;
use mlops_core::version_ref::LATEST;

use crate::{Error, Result};

/// What serving needs from a model store: read an alias, load a version, and move an alias
/// by compare-and-swap (promotion and rollback). Implementations never block the
/// executor on I/O.
#[async_trait]
pub trait ModelSource: Send + Sync {
    /// The version `alias` points at now; `None` when it is not set (never set, or cleared).
    async fn alias(&self, model: &str, alias: &str) -> Result<Option<u64>>;

    /// The artifact of `version`.
    async fn load(&self, model: &str, version: u64) -> Result<ModelArtifact>;

    /// Points `alias` at `to` (`None` clears it) if it points at `expected` now (`None`:
    /// unset). `Ok(false)` when it does not — another controller moved it first — and nothing
    /// changed.
    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        to: Option<u64>,
        expected: Option<u64>,
        why: &str,
    ) -> Result<bool>;
}

#[derive(Default)]
struct Model {
    versions: Vec<ModelArtifact>,
    aliases: BTreeMap<String, u64>,
}

/// Models held in memory: versions numbered from 1 in the order added, aliases with
/// compare-and-swap. For tests, replays and hosts that build models in process.
#[derive(Default)]
pub struct MemorySource {
    models: Mutex<BTreeMap<String, Model>>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource").finish_non_exhaustive()
    }
}

impl MemorySource {
    /// No models.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `artifact` as the next version of `model`; its number.
    pub fn add(&self, model: &str, artifact: ModelArtifact) -> u64 {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let m = models.entry(model.to_string()).or_default();
        m.versions.push(artifact);
        m.versions.len() as u64
    }

    fn with_model<T>(&self, model: &str, f: impl FnOnce(&mut Model) -> Result<T>) -> Result<T> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        match models.get_mut(model) {
            Some(m) => f(m),
            None => Err(Error::not_found(format!(
                "model {model:?} (not in this source)"
            ))),
        }
    }
}

/// A version `model` does not hold (it holds 1 to `m.versions.len()`).
fn missing_version(model: &str, version: u64, m: &Model) -> Error {
    Error::not_found(format!(
        "version {version} of {model:?} (this source holds 1 to {})",
        m.versions.len()
    ))
}

#[async_trait]
impl ModelSource for MemorySource {
    async fn alias(&self, model: &str, alias: &str) -> Result<Option<u64>> {
        self.with_model(model, |m| Ok(m.aliases.get(alias).copied()))
    }

    async fn load(&self, model: &str, version: u64) -> Result<ModelArtifact> {
        self.with_model(model, |m| {
            version
                .checked_sub(1)
                .and_then(|i| m.versions.get(i as usize))
                .cloned()
                .ok_or_else(|| missing_version(model, version, m))
        })
    }

    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        to: Option<u64>,
        expected: Option<u64>,
        _why: &str,
    ) -> Result<bool> {
        if alias.is_empty() || alias == LATEST {
            return Err(Error::invalid(
                "alias",
                format!("{alias:?}"),
                "a name other than `latest`",
            ));
        }
        self.with_model(model, |m| {
            if let Some(v) = to {
                if v == 0 || v as usize > m.versions.len() {
                    return Err(Error::invalid(
                        format!("version of {model:?}"),
                        v,
                        format!("1 to {}", m.versions.len()),
                    ));
                }
            }
            if m.aliases.get(alias).copied() != expected {
                return Ok(false);
            }
            match to {
                Some(v) => m.aliases.insert(alias.to_string(), v),
                None => m.aliases.remove(alias),
            };
            Ok(true)
        })
    }
}

#[cfg(feature = "registry")]
mod registry {
    use async_trait::async_trait;
    use mlops_core::model::ModelArtifact;
    use mlops_registry::{Registry, VersionRef};

    use super::ModelSource;
    use crate::{Error, ErrorKind, Result};

    /// The registry's errors with their kind: bad input stays `InvalidValue` (same field,
    /// value and expectation) and mlops-core's errors stay theirs; a missing model, version,
    /// alias or object is [`ErrorKind::NotFound`]; a timeout or a failing store (network,
    /// 5xx) [`ErrorKind::Unavailable`]; a lost compare-and-swap or a state that forbids the
    /// change [`ErrorKind::Conflict`]; a checksum or record that does not hold
    /// [`ErrorKind::Corrupt`]; a store that cannot host a registry [`ErrorKind::InvalidInput`];
    /// the rest [`ErrorKind::Internal`]. The registry's error is kept as the cause.
    impl From<mlops_registry::Error> for Error {
        fn from(e: mlops_registry::Error) -> Self {
            match e {
                mlops_registry::Error::Core(e) => e.into(),
                mlops_registry::Error::InvalidValue(v) => v.into(),
                e => Error::with_cause(kind_of(&e), e.to_string(), e),
            }
        }
    }

    /// The kind of a registry error other than bad input and core's (see the `From` impl).
    fn kind_of(e: &mlops_registry::Error) -> ErrorKind {
        use mlops_registry::object_store::Error as Store;
        use mlops_registry::Error as R;
        match e {
            R::NotFound { .. } => ErrorKind::NotFound,
            R::Timeout { .. } => ErrorKind::Unavailable,
            R::Store { cause, .. } => match cause.as_ref() {
                Store::NotFound { .. } => ErrorKind::NotFound,
                Store::AlreadyExists { .. } | Store::Precondition { .. } => ErrorKind::Conflict,
                Store::Generic { .. } | Store::JoinError { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            R::AliasMoved { .. } | R::Conflict { .. } | R::Contention { .. } => ErrorKind::Conflict,
            R::Checksum { .. } | R::Record { .. } => ErrorKind::Corrupt,
            R::UnsafeStore { .. } | R::InvalidValue(_) => ErrorKind::InvalidInput,
            R::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Internal,
        }
    }

    #[async_trait]
    impl ModelSource for Registry {
        async fn alias(&self, model: &str, alias: &str) -> Result<Option<u64>> {
            let target = Registry::alias(self, model, alias)
                .await?
                .and_then(|e| e.target);
            // An alias that is not set is only "unset" in a registry that holds the model: a
            // deleted (or mistyped) registry reads as empty, and is said so.
            if target.is_none() && !self.list_models().await?.iter().any(|m| m == model) {
                return Err(Error::not_found(format!(
                    "model {model:?} not found in the registry at {} (deleted, moved, or never registered there)",
                    self.store_name()
                )));
            }
            Ok(target)
        }

        async fn load(&self, model: &str, version: u64) -> Result<ModelArtifact> {
            let (_, artifact) = self
                .load_artifact(model, &VersionRef::Number(version))
                .await?;
            Ok(artifact)
        }

        async fn move_alias(
            &self,
            model: &str,
            alias: &str,
            to: Option<u64>,
            expected: Option<u64>,
            why: &str,
        ) -> Result<bool> {
            let moved = match to {
                Some(v) => self.set_alias(model, alias, v, expected, why).await,
                None => self.clear_alias(model, alias, expected, why).await,
            };
            match moved {
                Ok(_) => Ok(true),
                Err(mlops_registry::Error::AliasMoved { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}
