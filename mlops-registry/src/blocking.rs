//! A blocking registry for synchronous hosts (batch jobs, CLIs, notebooks' worker threads), in
//! the spirit of `reqwest::blocking`: the same operations as [`crate::Registry`], each waiting
//! for its result. No async runtime is needed: the work runs on the library's own I/O runtime
//! ([`mlops_core::runtime`]) and the calling thread blocks until it is done.
//!
//! Call it from plain threads, not from inside async code (it would block that executor's
//! thread); async hosts use [`crate::Registry`] directly, on any executor.
//!
//! ```
//! use mlops_registry::blocking::Registry;
//! use mlops_registry::{NewVersion, RegistryConfig, VersionRef};
//!
//! let dir = tempfile::tempdir()?;
//! let registry = Registry::open(dir.path().to_str().unwrap(), &RegistryConfig::default())?;
//! let v = registry.register("fraud", NewVersion::new().bytes("model.json", b"{}".to_vec()))?;
//! registry.set_alias("fraud", "production", v.version, None, "first model")?;
//! assert_eq!(registry.resolve("fraud", &VersionRef::Alias("production".into()))?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mlops_core::model::ModelArtifact;
use mlops_core::runtime::block_on;
use object_store::ObjectStore;

use crate::error::Result;
use crate::{
    AliasEntry, AuditEvent, GcReport, NewVersion, Query, RegistryConfig, Tombstone,
    UnreadableRecord, VersionInfo, VersionPage, VersionRecord, VersionRef,
};

/// [`crate::Registry`], blocking. Cheap to clone; clones share the registry.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: crate::Registry,
}

impl Registry {
    /// [`crate::Registry::open`]: a registry at a URL or a local path.
    pub fn open(url: &str, config: &RegistryConfig) -> Result<Self> {
        block_on(crate::Registry::open(url, config)).map(Self::from)
    }

    /// [`crate::Registry::with_store`]: a registry on an `object_store` under `prefix`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        config: &RegistryConfig,
    ) -> Result<Self> {
        block_on(crate::Registry::with_store(store, prefix, config)).map(Self::from)
    }

    /// The async registry behind this one (for hosts that mix both).
    pub fn as_async(&self) -> &crate::Registry {
        &self.inner
    }

    /// [`crate::Registry::store_name`].
    pub fn store_name(&self) -> &str {
        self.inner.store_name()
    }

    /// [`crate::Registry::register`].
    pub fn register(&self, model: &str, new: NewVersion) -> Result<VersionRecord> {
        block_on(self.inner.register(model, new))
    }

    /// [`crate::Registry::resolve`].
    pub fn resolve(&self, model: &str, reference: &VersionRef) -> Result<u64> {
        block_on(self.inner.resolve(model, reference))
    }

    /// [`crate::Registry::version`].
    pub fn version(&self, model: &str, reference: &VersionRef) -> Result<VersionInfo> {
        block_on(self.inner.version(model, reference))
    }

    /// [`crate::Registry::list_versions`].
    pub fn list_versions(&self, model: &str) -> Result<Vec<VersionInfo>> {
        block_on(self.inner.list_versions(model))
    }

    /// [`crate::Registry::list_versions_checked`].
    pub fn list_versions_checked(
        &self,
        model: &str,
    ) -> Result<(Vec<VersionInfo>, Vec<UnreadableRecord>)> {
        block_on(self.inner.list_versions_checked(model))
    }

    /// [`crate::Registry::list_versions_page`].
    pub fn list_versions_page(&self, model: &str, after: u64, limit: usize) -> Result<VersionPage> {
        block_on(self.inner.list_versions_page(model, after, limit))
    }

    /// [`crate::Registry::search`].
    pub fn search(&self, model: &str, query: &Query) -> Result<Vec<VersionInfo>> {
        block_on(self.inner.search(model, query))
    }

    /// [`crate::Registry::latest`].
    pub fn latest(&self, model: &str) -> Result<Option<VersionInfo>> {
        block_on(self.inner.latest(model))
    }

    /// [`crate::Registry::list_models`].
    pub fn list_models(&self) -> Result<Vec<String>> {
        block_on(self.inner.list_models())
    }

    /// [`crate::Registry::delete_version`].
    pub fn delete_version(&self, model: &str, version: u64, why: &str) -> Result<Tombstone> {
        block_on(self.inner.delete_version(model, version, why))
    }

    /// [`crate::Registry::alias_history`].
    pub fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasEntry>> {
        block_on(self.inner.alias_history(model, alias))
    }

    /// [`crate::Registry::alias`].
    pub fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasEntry>> {
        block_on(self.inner.alias(model, alias))
    }

    /// [`crate::Registry::aliases`].
    pub fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>> {
        block_on(self.inner.aliases(model))
    }

    /// [`crate::Registry::set_alias`]: compare-and-swap of `alias` from `expected` to
    /// `version`.
    pub fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        block_on(self.inner.set_alias(model, alias, version, expected, why))
    }

    /// [`crate::Registry::clear_alias`].
    pub fn clear_alias(
        &self,
        model: &str,
        alias: &str,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        block_on(self.inner.clear_alias(model, alias, expected, why))
    }

    /// [`crate::Registry::rollback_alias`].
    pub fn rollback_alias(&self, model: &str, alias: &str, why: &str) -> Result<AliasEntry> {
        block_on(self.inner.rollback_alias(model, alias, why))
    }

    /// [`crate::Registry::read_file`].
    pub fn read_file(&self, model: &str, reference: &VersionRef, name: &str) -> Result<Bytes> {
        block_on(self.inner.read_file(model, reference, name))
    }

    /// [`crate::Registry::download`].
    pub fn download(
        &self,
        model: &str,
        reference: &VersionRef,
        dir: impl AsRef<Path>,
    ) -> Result<VersionRecord> {
        block_on(self.inner.download(model, reference, dir))
    }

    /// [`crate::Registry::load_artifact`].
    pub fn load_artifact(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, ModelArtifact)> {
        block_on(self.inner.load_artifact(model, reference))
    }

    /// [`crate::Registry::load_predictor`].
    pub fn load_predictor(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, Box<dyn mlops_core::model::Predictor>)> {
        block_on(self.inner.load_predictor(model, reference))
    }

    /// [`crate::Registry::gc`].
    pub fn gc(&self, grace: Duration, why: &str) -> Result<GcReport> {
        block_on(self.inner.gc(grace, why))
    }

    /// [`crate::Registry::audit_events`].
    pub fn audit_events(&self, model: Option<&str>) -> Result<Vec<AuditEvent>> {
        block_on(self.inner.audit_events(model))
    }
}

impl From<crate::Registry> for Registry {
    fn from(inner: crate::Registry) -> Self {
        Registry { inner }
    }
}
