//! The registry: versions claimed with `PutMode::Create`, aliases as append-only logs (a real
//! compare-and-swap), tombstones, garbage collection and the audit log, all as objects under
//! one prefix:
//!
//! ```text
//! blobs/sha256/ab/abcd...                     file contents, by sha256
//! models/NAME/versions/0000000001.json        version records (written once, last)
//! models/NAME/deleted/0000000001.json         tombstones
//! models/NAME/aliases/ALIAS/0000000001.json   alias logs, one entry per move
//! audit/<unix ns>-<seq>-<random>.json         audit events
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mlops_core::clock::{Clock, SystemClock};
use mlops_core::model::{ModelArtifact, SPEC_FILE, WEIGHTS_FILE};
use object_store::ObjectStore;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::blobs::{blob_digest, fetch, upload, write_atomically};
use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::names::{check_file_name, check_key, check_name};
use crate::new_version::NewVersion;
use crate::query::Query;
use crate::records::{
    target_text, AliasEntry, AuditAction, AuditEvent, Tombstone, VersionInfo, VersionRecord,
    VersionRef,
};
use crate::store::{self, Store};

/// Attempts at claiming a version number before giving up.
const MAX_CLAIMS: u32 = 200;
/// Records fetched at once when listing.
const CONCURRENT_READS: usize = 64;

fn version_key(model: &str, version: u64) -> String {
    format!("models/{model}/versions/{version:010}.json")
}
fn tombstone_key(model: &str, version: u64) -> String {
    format!("models/{model}/deleted/{version:010}.json")
}
fn alias_dir(model: &str, alias: &str) -> String {
    format!("models/{model}/aliases/{alias}")
}
fn alias_key(model: &str, alias: &str, seq: u64) -> String {
    format!("{}/{seq:010}.json", alias_dir(model, alias))
}
/// The error for a version with no record.
fn missing_version(model: &str, version: u64) -> Error {
    Error::NotFound {
        what: format!("version {version} of model `{model}`"),
    }
}

/// The number in a `.../0000000042.json` key.
fn number_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

/// What [`Registry::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs in the store.
    pub blobs: usize,
    /// Blobs referenced by a live version.
    pub referenced: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_recent: usize,
    /// Blobs deleted.
    pub deleted: usize,
    /// Bytes deleted.
    pub bytes_deleted: u64,
}

/// A model registry on an object store. Cheap to clone; share it between tasks.
///
/// ```
/// use mlops_registry::{NewVersion, Registry, RegistryConfig, VersionRef};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let dir = tempfile::tempdir()?;
/// let url = format!("file://{}", dir.path().display());
/// let registry = Registry::open(&url, &RegistryConfig::default()).await?;
/// let v1 = registry
///     .register("fraud", NewVersion::new().bytes("model.bin", vec![1u8, 2, 3]).metric("auc", 0.97))
///     .await?;
/// assert_eq!(v1.version, 1);
/// registry.set_alias("fraud", "production", 1, None, "first model").await?;
/// let prod = registry.version("fraud", &VersionRef::Alias("production".into())).await?;
/// assert_eq!(prod.record.version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    store: Store,
    actor: String,
    cache: Option<std::path::PathBuf>,
    clock: Arc<dyn Clock>,
    /// The highest version number seen per model (a listing starts after it).
    seen: Arc<Mutex<HashMap<String, u64>>>,
    /// Orders this handle's audit events within one clock tick.
    audit_seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.name())
            .field("actor", &self.actor)
            .field("cache", &self.cache)
            .finish()
    }
}

impl Registry {
    /// Opens the registry at `url` (`file:///dir`, `memory://`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`) and checks that the store enforces
    /// conditional creates.
    pub async fn open(url: &str, config: &RegistryConfig) -> Result<Self> {
        config.validate()?;
        let store = store::open(url, &config.options, config.timeout())?;
        Self::start(store, config).await
    }

    /// A registry under `prefix` of an existing store (checked like [`Registry::open`]).
    pub async fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        config: &RegistryConfig,
    ) -> Result<Self> {
        config.validate()?;
        let name = format!("{store}/{prefix}");
        Self::start(Store::new(store, prefix, config.timeout(), name), config).await
    }

    async fn start(store: Store, config: &RegistryConfig) -> Result<Self> {
        let registry = Registry {
            store,
            actor: config.actor(),
            cache: config.cache_dir.clone(),
            clock: Arc::new(SystemClock),
            seen: Arc::new(Mutex::new(HashMap::new())),
            audit_seq: Arc::new(AtomicU64::new(0)),
        };
        registry.self_test().await?;
        tracing::debug!(store = registry.store.name(), "registry opened");
        Ok(registry)
    }

    /// Uses `clock` for record timestamps and garbage-collection ages.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store, as it may be shown (no credentials).
    pub fn store_name(&self) -> &str {
        self.store.name()
    }

    /// Who this registry records as acting.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.clock.now())
    }

    /// Refuses a store on which a second conditional create of the same object succeeds.
    async fn self_test(&self) -> Result<()> {
        let key = format!("_selftest/{:016x}", rand::random::<u64>());
        let first = self.store.create(&key, Bytes::from_static(b"1")).await?;
        let second = self.store.create(&key, Bytes::from_static(b"2")).await?;
        self.store.delete(&key).await?;
        if first && !second {
            Ok(())
        } else {
            Err(Error::UnsafeStore {
                store: self.store.name().to_string(),
                path: key,
            })
        }
    }

    async fn read_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Record {
                    path: key.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    fn to_json<T: Serialize>(value: &T) -> Result<Bytes> {
        serde_json::to_vec_pretty(value)
            .map(Bytes::from)
            .map_err(|e| Error::invalid("record", e, "serializable JSON"))
    }

    async fn audit(&self, event: AuditEvent) {
        // Ordered by time, then by this handle's sequence (events in the same clock tick), then
        // a random part (other writers).
        let key = format!(
            "audit/{:020}-{:010}-{:016x}.json",
            event.at.timestamp_nanos_opt().unwrap_or(i64::MAX).max(0),
            self.audit_seq.fetch_add(1, Ordering::SeqCst),
            rand::random::<u64>()
        );
        let result = match Self::to_json(&event) {
            Ok(bytes) => self.store.create(&key, bytes).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // The change itself is committed; report the missing event loudly.
            tracing::error!(error = %e, action = ?event.action, "writing the audit event failed");
        }
    }

    fn event(&self, action: AuditAction, model: Option<&str>, why: &str) -> AuditEvent {
        AuditEvent {
            at: self.now(),
            actor: self.actor.clone(),
            action,
            model: model.map(str::to_string),
            version: None,
            alias: None,
            from: None,
            why: why.to_string(),
            details: BTreeMap::new(),
        }
    }

    /// Every numbered record (`.../0000000042.json`) under `prefix`, by number.
    async fn numbered_keys(&self, prefix: &str) -> Result<Vec<(u64, String)>> {
        let mut keys: Vec<(u64, String)> = self
            .store
            .list(prefix, None)
            .await?
            .iter()
            .filter_map(|m| {
                let key = self.store.key_of(&m.location);
                number_of(&key).map(|n| (n, key))
            })
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// The records at `keys`, read concurrently, in order (missing ones skipped).
    async fn read_all<T: DeserializeOwned>(&self, keys: Vec<String>) -> Result<Vec<T>> {
        let records: Vec<Option<T>> = futures::stream::iter(keys)
            .map(|key| async move { self.read_json::<T>(&key).await })
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await?;
        Ok(records.into_iter().flatten().collect())
    }

    /// The highest version number of `model` (0 when none), listing only past the highest
    /// one this registry has seen.
    async fn max_version(&self, model: &str) -> Result<u64> {
        let seen = self.seen_max(model);
        let prefix = format!("models/{model}/versions/");
        let offset = (seen > 0).then(|| version_key(model, seen));
        let max = self
            .store
            .list(&prefix, offset.as_deref())
            .await?
            .iter()
            .filter_map(|m| number_of(&self.store.key_of(&m.location)))
            .fold(seen, u64::max);
        self.note_seen(model, max);
        Ok(max)
    }

    fn seen_max(&self, model: &str) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .copied()
            .unwrap_or(0)
    }

    fn note_seen(&self, model: &str, version: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(model.to_string()).or_insert(0);
        *entry = (*entry).max(version);
    }

    /// Registers a new version of `model`: uploads every file (content-addressed, digest
    /// computed while reading), then claims the next version number by creating its record
    /// with `PutMode::Create`, retrying with jitter when another writer got there first. A
    /// failure before the record is written leaves no visible version.
    pub async fn register(&self, model: &str, new: NewVersion) -> Result<VersionRecord> {
        check_name("model name", model)?;
        if new.files.is_empty() {
            return Err(Error::invalid("version files", "none", "at least one file"));
        }
        for name in new.files.keys() {
            check_file_name(name)?;
        }
        for (k, v) in &new.metrics {
            check_key("metric name", k)?;
            if !v.is_finite() {
                return Err(Error::invalid(
                    format!("metric `{k}`"),
                    v,
                    "a finite number",
                ));
            }
        }
        for k in new.params.keys() {
            check_key("parameter name", k)?;
        }
        for k in new.tags.keys() {
            check_key("tag key", k)?;
        }
        if let Some(parent) = new.lineage.parent_version {
            if self.read_record(model, parent).await?.is_none() {
                return Err(Error::invalid(
                    "lineage.parent_version",
                    parent,
                    format!("an existing version of `{model}`"),
                ));
            }
        }
        let mut files = Vec::with_capacity(new.files.len());
        for (name, source) in &new.files {
            files.push(upload(&self.store, name, source).await?);
        }
        let mut record = VersionRecord {
            model: model.to_string(),
            version: 0,
            files,
            metrics: new.metrics,
            params: new.params,
            tags: new.tags,
            lineage: new.lineage,
            description: new.description,
            created_at: self.now(),
            created_by: self.actor.clone(),
        };
        for attempt in 1..=MAX_CLAIMS {
            record.version = self.max_version(model).await? + 1;
            let key = version_key(model, record.version);
            if self.store.create(&key, Self::to_json(&record)?).await? {
                self.note_seen(model, record.version);
                tracing::info!(model, version = record.version, "registered");
                let mut event = self.event(
                    AuditAction::Register,
                    Some(model),
                    record.description.as_deref().unwrap_or("register"),
                );
                event.version = Some(record.version);
                self.audit(event).await;
                return Ok(record);
            }
            self.note_seen(model, record.version);
            let backoff_ms = 2u64 << attempt.min(6);
            let jitter = rand::rng().random_range(0..=backoff_ms);
            tracing::debug!(
                model,
                version = record.version,
                attempt,
                "version taken; retrying"
            );
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        Err(Error::Contention {
            model: model.to_string(),
            attempts: MAX_CLAIMS,
        })
    }

    async fn read_record(&self, model: &str, version: u64) -> Result<Option<VersionRecord>> {
        self.read_json(&version_key(model, version)).await
    }

    async fn tombstones(&self, model: &str) -> Result<BTreeMap<u64, Tombstone>> {
        let keys = self
            .numbered_keys(&format!("models/{model}/deleted/"))
            .await?;
        let mut out = BTreeMap::new();
        for (n, key) in keys {
            if let Some(t) = self.read_json::<Tombstone>(&key).await? {
                out.insert(n, t);
            }
        }
        Ok(out)
    }

    /// Resolves `reference` to a version number (an alias to its current target).
    pub async fn resolve(&self, model: &str, reference: &VersionRef) -> Result<u64> {
        check_name("model name", model)?;
        match reference {
            VersionRef::Number(n) => Ok(*n),
            VersionRef::Alias(alias) => {
                check_name("alias", alias)?;
                self.alias(model, alias)
                    .await?
                    .and_then(|e| e.target)
                    .ok_or_else(|| Error::NotFound {
                        what: format!("alias `{alias}` of model `{model}`"),
                    })
            }
        }
    }

    /// One version, with its state (deleted or not) and the aliases pointing at it.
    pub async fn version(&self, model: &str, reference: &VersionRef) -> Result<VersionInfo> {
        let version = self.resolve(model, reference).await?;
        let record = self
            .read_record(model, version)
            .await?
            .ok_or_else(|| missing_version(model, version))?;
        let deleted = self.read_json(&tombstone_key(model, version)).await?;
        let aliases = self.aliases_to(model, version).await?;
        Ok(VersionInfo {
            record,
            deleted,
            aliases,
        })
    }

    /// Every version of `model` (deleted ones flagged), ascending. Records are read
    /// concurrently.
    pub async fn list_versions(&self, model: &str) -> Result<Vec<VersionInfo>> {
        check_name("model name", model)?;
        let keys = self
            .numbered_keys(&format!("models/{model}/versions/"))
            .await?;
        if let Some(&(max, _)) = keys.last() {
            self.note_seen(model, max);
        }
        let records: Vec<VersionRecord> = self
            .read_all(keys.into_iter().map(|(_, key)| key).collect())
            .await?;
        let tombstones = self.tombstones(model).await?;
        let mut by_version: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (alias, v) in self.aliases(model).await? {
            by_version.entry(v).or_default().push(alias);
        }
        Ok(records
            .into_iter()
            .map(|record| VersionInfo {
                deleted: tombstones.get(&record.version).cloned(),
                aliases: by_version.remove(&record.version).unwrap_or_default(),
                record,
            })
            .collect())
    }

    /// The versions of `model` matching `query`, ascending (only the highest with
    /// `latest_only`).
    pub async fn search(&self, model: &str, query: &Query) -> Result<Vec<VersionInfo>> {
        let mut found: Vec<VersionInfo> = self
            .list_versions(model)
            .await?
            .into_iter()
            .filter(|v| query.matches(v))
            .collect();
        if query.latest_only && found.len() > 1 {
            found = found.split_off(found.len() - 1);
        }
        Ok(found)
    }

    /// The highest live version of `model`.
    pub async fn latest(&self, model: &str) -> Result<Option<VersionInfo>> {
        Ok(self.search(model, &Query::default().latest()).await?.pop())
    }

    /// Every model with at least one version record.
    pub async fn list_models(&self) -> Result<Vec<String>> {
        let mut models = self.store.list_dirs("models").await?;
        models.sort();
        Ok(models)
    }

    /// Deletes a version: writes a tombstone (its number is never reused; its blobs become
    /// garbage for [`Registry::gc`]). Refused while an alias points at it.
    pub async fn delete_version(&self, model: &str, version: u64, why: &str) -> Result<Tombstone> {
        check_name("model name", model)?;
        if self.read_record(model, version).await?.is_none() {
            return Err(missing_version(model, version));
        }
        let pointing = self.aliases_to(model, version).await?;
        if !pointing.is_empty() {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: format!(
                    "alias(es) {} point at it; move them first",
                    pointing.join(", ")
                ),
            });
        }
        let tombstone = Tombstone {
            at: self.now(),
            by: self.actor.clone(),
            why: why.to_string(),
        };
        if !self
            .store
            .create(&tombstone_key(model, version), Self::to_json(&tombstone)?)
            .await?
        {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: "already deleted".into(),
            });
        }
        tracing::info!(model, version, "deleted");
        let mut event = self.event(AuditAction::Delete, Some(model), why);
        event.version = Some(version);
        self.audit(event).await;
        Ok(tombstone)
    }

    /// The log of `alias`, oldest first.
    pub async fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasEntry>> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        let keys = self
            .numbered_keys(&format!("{}/", alias_dir(model, alias)))
            .await?;
        self.read_all(keys.into_iter().map(|(_, key)| key).collect())
            .await
    }

    /// The current entry of `alias` (`None` when it was never set).
    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasEntry>> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        let last = self
            .numbered_keys(&format!("{}/", alias_dir(model, alias)))
            .await?
            .pop();
        match last {
            None => Ok(None),
            Some((_, key)) => self.read_json(&key).await,
        }
    }

    /// Every set alias of `model` and the version it points to.
    pub async fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>> {
        check_name("model name", model)?;
        let names = self
            .store
            .list_dirs(&format!("models/{model}/aliases"))
            .await?;
        let mut out = BTreeMap::new();
        for name in names {
            if let Some(target) = self.alias(model, &name).await?.and_then(|e| e.target) {
                out.insert(name, target);
            }
        }
        Ok(out)
    }

    /// The aliases of `model` whose current target is `version`, in name order.
    async fn aliases_to(&self, model: &str, version: u64) -> Result<Vec<String>> {
        Ok(self
            .aliases(model)
            .await?
            .into_iter()
            .filter(|(_, v)| *v == version)
            .map(|(a, _)| a)
            .collect())
    }

    /// Points `alias` at `version` if it points at `expected` now (`None`: unset): a
    /// compare-and-swap. Fails with [`Error::AliasMoved`] when someone moved it first.
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        if self.read_record(model, version).await?.is_none() {
            return Err(missing_version(model, version));
        }
        if self
            .store
            .get(&tombstone_key(model, version))
            .await?
            .is_some()
        {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: format!("deleted; alias `{alias}` cannot point at it"),
            });
        }
        self.move_alias(model, alias, Some(version), expected, why)
            .await
    }

    /// Clears `alias` if it points at `expected` now (compare-and-swap like
    /// [`Registry::set_alias`]).
    pub async fn clear_alias(
        &self,
        model: &str,
        alias: &str,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        self.move_alias(model, alias, None, expected, why).await
    }

    /// Points `alias` back at the version it pointed to before its last move, if nobody
    /// moved it since it was read.
    pub async fn rollback_alias(&self, model: &str, alias: &str, why: &str) -> Result<AliasEntry> {
        let current = self
            .alias(model, alias)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("alias `{alias}` of model `{model}`"),
            })?;
        let previous = current.previous.ok_or_else(|| {
            Error::invalid(
                format!("rollback of alias `{alias}`"),
                target_text(current.target),
                "an alias that pointed at a version before its last move",
            )
        })?;
        self.set_alias(model, alias, previous, current.target, why)
            .await
    }

    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        target: Option<u64>,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        let current = self.alias(model, alias).await?;
        let (seq, actual) = current.as_ref().map_or((0, None), |e| (e.seq, e.target));
        let moved = |actual: Option<u64>| Error::AliasMoved {
            model: model.to_string(),
            alias: alias.to_string(),
            expected: target_text(expected),
            actual: target_text(actual),
        };
        if actual != expected {
            return Err(moved(actual));
        }
        let entry = AliasEntry {
            seq: seq + 1,
            alias: alias.to_string(),
            target,
            previous: actual,
            at: self.now(),
            by: self.actor.clone(),
            why: why.to_string(),
        };
        if !self
            .store
            .create(&alias_key(model, alias, entry.seq), Self::to_json(&entry)?)
            .await?
        {
            let now = self.alias(model, alias).await?.and_then(|e| e.target);
            return Err(moved(now));
        }
        tracing::info!(model, alias, from = ?actual, to = ?target, "alias moved");
        let mut event = self.event(AuditAction::SetAlias, Some(model), why);
        event.version = target;
        event.alias = Some(alias.to_string());
        event.from = actual;
        self.audit(event).await;
        Ok(entry)
    }

    /// The record of a live version, refused when deleted.
    async fn live_record(&self, model: &str, reference: &VersionRef) -> Result<VersionRecord> {
        let info = self.version(model, reference).await?;
        if info.deleted.is_some() {
            return Err(Error::Conflict {
                model: model.to_string(),
                version: info.record.version,
                reason: "deleted".into(),
            });
        }
        Ok(info.record)
    }

    /// The bytes of file `name` of a version, checked against its sha256 and size.
    pub async fn read_file(
        &self,
        model: &str,
        reference: &VersionRef,
        name: &str,
    ) -> Result<Bytes> {
        let record = self.live_record(model, reference).await?;
        let entry = record.file(name).ok_or_else(|| Error::NotFound {
            what: format!("file `{name}` of {model} v{}", record.version),
        })?;
        fetch(
            &self.store,
            self.cache.as_deref(),
            model,
            record.version,
            entry,
        )
        .await
    }

    /// Writes every file of a version into `dir`, each checked against its sha256 and size
    /// (a mismatch is an error naming the file); the record is returned.
    pub async fn download(
        &self,
        model: &str,
        reference: &VersionRef,
        dir: impl AsRef<Path>,
    ) -> Result<VersionRecord> {
        let record = self.live_record(model, reference).await?;
        let dir = dir.as_ref();
        for entry in &record.files {
            check_file_name(&entry.name)?;
            let bytes = fetch(
                &self.store,
                self.cache.as_deref(),
                model,
                record.version,
                entry,
            )
            .await?;
            write_atomically(&dir.join(&entry.name), &bytes).await?;
        }
        Ok(record)
    }

    /// The mlops-core model of a version (`model.json` and `model.safetensors`, checked).
    pub async fn load_artifact(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, ModelArtifact)> {
        let record = self.live_record(model, reference).await?;
        let number = VersionRef::Number(record.version);
        let spec = self.read_file(model, &number, SPEC_FILE).await?;
        let weights = self.read_file(model, &number, WEIGHTS_FILE).await?;
        Ok((record, ModelArtifact::from_parts(&spec, &weights)?))
    }

    /// Deletes blobs no live version references and older than `grace` (a registration in
    /// flight uploads its blobs before its record: keep `grace` longer than any
    /// registration takes).
    pub async fn gc(&self, grace: Duration, why: &str) -> Result<GcReport> {
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        for model in self.list_models().await? {
            for v in self.list_versions(&model).await? {
                if v.deleted.is_none() {
                    referenced.extend(v.record.files.iter().map(|f| f.sha256.clone()));
                }
            }
        }
        let cutoff =
            self.now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut report = GcReport::default();
        for meta in self.store.list("blobs/sha256/", None).await? {
            let key = self.store.key_of(&meta.location);
            let Some(digest) = blob_digest(&key) else {
                continue;
            };
            report.blobs += 1;
            if referenced.contains(digest) {
                report.referenced += 1;
            } else if meta.last_modified > cutoff {
                report.kept_recent += 1;
            } else {
                self.store.delete(&key).await?;
                report.deleted += 1;
                report.bytes_deleted += meta.size;
            }
        }
        tracing::info!(
            deleted = report.deleted,
            bytes = report.bytes_deleted,
            "garbage collected"
        );
        let mut event = self.event(AuditAction::GarbageCollect, None, why);
        event
            .details
            .insert("deleted".into(), report.deleted.to_string());
        event
            .details
            .insert("bytes_deleted".into(), report.bytes_deleted.to_string());
        event
            .details
            .insert("kept_recent".into(), report.kept_recent.to_string());
        self.audit(event).await;
        Ok(report)
    }

    /// Audit events, oldest first; only those about `model` when given.
    pub async fn audit_events(&self, model: Option<&str>) -> Result<Vec<AuditEvent>> {
        if let Some(m) = model {
            check_name("model name", m)?;
        }
        let mut keys: Vec<String> = self
            .store
            .list("audit/", None)
            .await?
            .iter()
            .map(|m| self.store.key_of(&m.location))
            .collect();
        keys.sort();
        let events: Vec<AuditEvent> = self.read_all(keys).await?;
        Ok(events
            .into_iter()
            .filter(|e| model.is_none() || e.model.as_deref() == model)
            .collect())
    }
}
