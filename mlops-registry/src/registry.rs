//! The registry: versions claimed with `PutMode::Create`, aliases as append-only logs (a real
//! compare-and-swap), tombstones, garbage collection and the audit log, all as objects under
//! one prefix:
//!
//! ```text
//! blobs/sha256/ab/abcd...                     file contents, by sha256
//! models/NAME/versions/0000000001.json        version records (written once, last)
//! models/NAME/deleted/0000000001.json         tombstones
//! models/NAME/aliases/ALIAS/0000000001.json   alias logs, one entry per move
//! models/NAME/state/DOC/0000000001.json       state logs (a rollout's state), one entry per write
//! audit/<unix ns>-<seq>-<random>.json         audit events
//! pending/<random>.json                       blobs of a registration in flight (gc keeps them)
//! ```
//!
//! Reads never write: the conditional-create probe runs before a handle's first write, so a
//! read-only mount or read-only credentials serve `list`, `show` and `download`.

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

use crate::blobs::{blob_digest, fetch, put_blob, read_source};
use crate::config::RegistryConfig;
use crate::download::{install, DownloadMarker};
use crate::error::{Error, Result};
use crate::names::{check_file_name, check_key, check_name};
use crate::new_version::NewVersion;
use crate::query::Query;
use crate::records::{
    target_text, AliasEntry, AuditAction, AuditEvent, StateEntry, Tombstone, VersionInfo,
    VersionRecord, VersionRef,
};
use crate::store::{self, Store};

/// `@latest`: the highest live version; no alias may take this name.
pub use mlops_core::version_ref::LATEST;

/// Attempts at claiming a version number before giving up.
const MAX_CLAIMS: u32 = 200;
/// Records fetched at once when listing.
const CONCURRENT_READS: usize = 64;
/// A registration's pending-blobs note older than this is stale (its writer died): gc removes
/// it and stops protecting its blobs.
const PENDING_STALE: Duration = Duration::from_secs(24 * 3600);

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
fn state_dir(model: &str, name: &str) -> String {
    format!("models/{model}/state/{name}")
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

/// The blobs of a registration in flight (`pending/<random>.json`), written before its first
/// blob and removed after its record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingNote {
    at: DateTime<Utc>,
    model: String,
    blobs: Vec<String>,
}

/// Every 64-hex-digit run in `bytes`: the digests an unreadable record may name.
fn hex_digests(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|b| !b.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
}

/// A version record that could not be read or parsed (listed beside the readable ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableRecord {
    /// Its key in the store.
    pub key: String,
    /// Why.
    pub reason: String,
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
    /// Unreferenced blobs kept because a registration in flight names them.
    pub kept_pending: usize,
    /// Upload temporaries (`…#N` files of a killed write on local disk) removed.
    pub temporaries_deleted: usize,
    /// Stale pending notes (their registration died over a day ago) removed.
    pub stale_pending_deleted: usize,
    /// Version records that could not be parsed: every digest they mention is kept.
    pub unreadable_records: Vec<UnreadableRecord>,
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
///
/// **Runtimes.** Every store call, file operation and timer runs on the library's own I/O
/// runtime ([`mlops_core::runtime`]); the futures these methods return only wait for it. So
/// they work under any executor — a tokio runtime of either flavor, with or without its time
/// and I/O drivers, or another executor — and never panic on a host's setup. Synchronous
/// hosts use [`crate::blocking::Registry`].
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
    /// Set once the store passed the conditional-create probe (before the first write).
    probed: Arc<tokio::sync::OnceCell<()>>,
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
    /// Opens the registry at `url`: a folder path (relative or absolute) or `file:///dir`,
    /// `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    /// Opening writes nothing: the check that the store enforces conditional creates runs
    /// before this handle's first write ([`Error::UnsafeStore`] then), so a read-only store
    /// can be read.
    ///
    /// Needs no particular runtime: await it (and every method) on any executor — a tokio
    /// runtime of either flavor with or without drivers, or none (`futures::executor`); the
    /// I/O runs on the library's own runtime. Without async, use
    /// [`crate::blocking::Registry::open`].
    pub async fn open(url: &str, config: &RegistryConfig) -> Result<Self> {
        config.validate()?;
        let store = store::open(url, &config.options, config.timeout())?;
        Self::start(store, config).await
    }

    /// A registry under `prefix` of an existing store (probed like [`Registry::open`]).
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
            probed: Arc::new(tokio::sync::OnceCell::new()),
        };
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

    /// Runs the conditional-create probe once per handle, before its first write.
    async fn writable(&self) -> Result<()> {
        self.probed
            .get_or_try_init(|| self.self_test())
            .await
            .map(|_| ())
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
        self.writable().await?;
        let mut read = Vec::with_capacity(new.files.len());
        for (name, source) in &new.files {
            read.push(read_source(name, source).await?);
        }
        // The pending note names this registration's blobs before any is written, so a
        // concurrent gc keeps them until the record (which names them too) exists.
        let pending = format!(
            "pending/{:016x}{:016x}.json",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let note = PendingNote {
            at: self.now(),
            model: model.to_string(),
            blobs: read.iter().map(|(e, _)| e.sha256.clone()).collect(),
        };
        self.store.create(&pending, Self::to_json(&note)?).await?;
        let result = async {
            let mut files = Vec::with_capacity(read.len());
            for (entry, chunks) in read {
                put_blob(&self.store, &entry, chunks).await?;
                files.push(entry);
            }
            let record = VersionRecord {
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
            self.claim(model, record).await
        }
        .await;
        if let Err(e) = self.store.delete(&pending).await {
            tracing::warn!(key = %pending, error = %e, "could not remove the pending note (gc removes it after a day)");
        }
        result
    }

    /// Claims the next version number for `record` (its blobs are written): creates the
    /// record at max + 1 with `PutMode::Create`, retrying with jitter on conflict.
    async fn claim(&self, model: &str, mut record: VersionRecord) -> Result<VersionRecord> {
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
            mlops_core::runtime::sleep(Duration::from_millis(jitter)).await?;
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
            VersionRef::Alias(alias) if alias == LATEST => {
                let latest = self.latest(model).await?;
                latest
                    .map(|v| v.record.version)
                    .ok_or_else(|| Error::NotFound {
                        what: format!("a live version of model `{model}` (for @latest)"),
                    })
            }
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
    /// concurrently; one that cannot be parsed is logged and left out (see
    /// [`Registry::list_versions_checked`] to get it named). A model with no version has an
    /// empty list.
    pub async fn list_versions(&self, model: &str) -> Result<Vec<VersionInfo>> {
        let (versions, unreadable) = self.list_versions_checked(model).await?;
        for u in &unreadable {
            tracing::warn!(key = %u.key, reason = %u.reason, "unreadable version record left out");
        }
        Ok(versions)
    }

    /// Every readable version of `model`, ascending, and every record that could not be read
    /// or parsed (with the reason): one bad record does not hide the others.
    pub async fn list_versions_checked(
        &self,
        model: &str,
    ) -> Result<(Vec<VersionInfo>, Vec<UnreadableRecord>)> {
        check_name("model name", model)?;
        let keys = self
            .numbered_keys(&format!("models/{model}/versions/"))
            .await?;
        if let Some(&(max, _)) = keys.last() {
            self.note_seen(model, max);
        }
        let read: Vec<(String, Result<Option<VersionRecord>>)> =
            futures::stream::iter(keys.into_iter().map(|(_, key)| key))
                .map(|key| async move {
                    let r = self.read_json::<VersionRecord>(&key).await;
                    (key, r)
                })
                .buffered(CONCURRENT_READS)
                .collect()
                .await;
        let mut records = Vec::with_capacity(read.len());
        let mut unreadable = Vec::new();
        for (key, r) in read {
            match r {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e @ Error::Record { .. }) => unreadable.push(UnreadableRecord {
                    key,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        let tombstones = self.tombstones(model).await?;
        let mut by_version: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (alias, v) in self.aliases(model).await? {
            by_version.entry(v).or_default().push(alias);
        }
        let versions = records
            .into_iter()
            .map(|record| VersionInfo {
                deleted: tombstones.get(&record.version).cloned(),
                aliases: by_version.remove(&record.version).unwrap_or_default(),
                record,
            })
            .collect();
        Ok((versions, unreadable))
    }

    /// The versions of `model` matching `query`, ascending (only the highest with
    /// `latest_only`).
    pub async fn search(&self, model: &str, query: &Query) -> Result<Vec<VersionInfo>> {
        Ok(query.select(self.list_versions(model).await?))
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
        self.writable().await?;
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
        self.last_in_log(&alias_dir(model, alias)).await
    }

    /// The last entry of the numbered log under `dir` (`None` when empty).
    async fn last_in_log<T: DeserializeOwned>(&self, dir: &str) -> Result<Option<T>> {
        let last = self.numbered_keys(&format!("{dir}/")).await?.pop();
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
        if alias == LATEST {
            return Err(Error::invalid(
                "alias",
                alias,
                "a name other than `latest` (`@latest` always means the highest live version)",
            ));
        }
        self.writable().await?;
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

    /// The current entry of state document `name` of `model` (`None` when never written).
    pub async fn state(&self, model: &str, name: &str) -> Result<Option<StateEntry>> {
        check_name("model name", model)?;
        check_name("state name", name)?;
        self.last_in_log(&state_dir(model, name)).await
    }

    /// Writes state document `name` of `model` as entry `expected_seq + 1` of its log, with
    /// the conditional create that makes alias moves safe: `Ok(None)` when the log is no
    /// longer at `expected_seq` (0: never written) because another writer got there first,
    /// and nothing was written.
    pub async fn put_state(
        &self,
        model: &str,
        name: &str,
        expected_seq: u64,
        value: serde_json::Value,
        why: &str,
    ) -> Result<Option<StateEntry>> {
        check_name("model name", model)?;
        check_name("state name", name)?;
        self.writable().await?;
        let entry = StateEntry {
            seq: expected_seq.checked_add(1).ok_or_else(|| {
                Error::invalid(
                    "expected_seq",
                    expected_seq,
                    "a sequence number below u64::MAX",
                )
            })?,
            name: name.to_string(),
            value,
            at: self.now(),
            by: self.actor.clone(),
            why: why.to_string(),
        };
        let current = self.state(model, name).await?.map_or(0, |e| e.seq);
        if current != expected_seq {
            return Ok(None);
        }
        let key = format!("{}/{:010}.json", state_dir(model, name), entry.seq);
        if !self.store.create(&key, Self::to_json(&entry)?).await? {
            return Ok(None);
        }
        tracing::debug!(model, name, seq = entry.seq, "state written");
        Ok(Some(entry))
    }

    /// The record of a live version, refused when deleted: the reference is resolved once,
    /// the record and tombstone read concurrently (no alias listing).
    async fn live_record(&self, model: &str, reference: &VersionRef) -> Result<VersionRecord> {
        let version = self.resolve(model, reference).await?;
        let tombstone = tombstone_key(model, version);
        let (record, deleted) =
            futures::try_join!(self.read_record(model, version), self.store.get(&tombstone))?;
        let record = record.ok_or_else(|| missing_version(model, version))?;
        if deleted.is_some() {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: "deleted".into(),
            });
        }
        Ok(record)
    }

    /// The checked bytes of file `name` of `record`.
    async fn file_of(&self, record: &VersionRecord, name: &str) -> Result<Bytes> {
        let entry = record.file(name).ok_or_else(|| Error::NotFound {
            what: format!("file `{name}` of {} v{}", record.model, record.version),
        })?;
        fetch(
            &self.store,
            self.cache.as_deref(),
            &record.model,
            record.version,
            entry,
        )
        .await
    }

    /// The bytes of file `name` of a version, checked against its sha256 and size.
    pub async fn read_file(
        &self,
        model: &str,
        reference: &VersionRef,
        name: &str,
    ) -> Result<Bytes> {
        let record = self.live_record(model, reference).await?;
        self.file_of(&record, name).await
    }

    /// Installs every file of a version into `dir` as a whole: the files are fetched
    /// concurrently and checked against their sha256 and size (a mismatch is an error naming
    /// the file), written into a staging folder beside `dir`, and swapped in with renames. A
    /// failure, or a kill, leaves `dir` as it was. `dir` must be new, empty, or an earlier
    /// download (it holds [`crate::DOWNLOAD_MARKER`]): it is replaced as a whole.
    pub async fn download(
        &self,
        model: &str,
        reference: &VersionRef,
        dir: impl AsRef<Path>,
    ) -> Result<VersionRecord> {
        let record = self.live_record(model, reference).await?;
        for entry in &record.files {
            check_file_name(&entry.name)?;
        }
        let files: Vec<(String, Bytes)> = futures::stream::iter(&record.files)
            .map(|entry| async {
                let bytes = fetch(
                    &self.store,
                    self.cache.as_deref(),
                    model,
                    record.version,
                    entry,
                )
                .await?;
                Ok::<_, Error>((entry.name.clone(), bytes))
            })
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await?;
        let marker = DownloadMarker {
            model: model.to_string(),
            version: record.version,
            files: record
                .files
                .iter()
                .map(|f| (f.name.clone(), f.sha256.clone()))
                .collect(),
        };
        install(dir.as_ref(), &files, &marker).await?;
        Ok(record)
    }

    /// The mlops-core model of a version (`model.json` and `model.safetensors`, checked):
    /// the reference is resolved and the record read once, both blobs fetched concurrently.
    pub async fn load_artifact(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, ModelArtifact)> {
        let record = self.live_record(model, reference).await?;
        let (spec, weights) = futures::try_join!(
            self.file_of(&record, SPEC_FILE),
            self.file_of(&record, WEIGHTS_FILE)
        )?;
        let artifact = ModelArtifact::from_parts(&spec, &weights)?;
        Ok((record, artifact))
    }

    /// A version as a ready [`Predictor`](mlops_core::model::Predictor) (the reference
    /// implementation, [`MlpModel`](mlops_core::model::MlpModel)), with its decision threshold:
    /// `predict_labels` on the box uses the threshold the model was registered with.
    pub async fn load_predictor(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, Box<dyn mlops_core::model::Predictor>)> {
        let (record, artifact) = self.load_artifact(model, reference).await?;
        let predictor = mlops_core::model::MlpModel::new(&artifact)?;
        Ok((record, Box::new(predictor)))
    }

    /// Deletes blobs no live version references and older than `grace`, and the upload
    /// temporaries of killed writes (local disk) older than `grace`.
    ///
    /// Safe beside registrations in flight, whatever `grace`: the blobs are listed first, then
    /// the pending notes (a registration writes its note before its first blob and removes it
    /// after its record), then the records; a blob is deleted only when none of them names it
    /// and, re-checked just before, it was not rewritten since the listing. Digests mentioned
    /// by a record that cannot be parsed are kept (and the record reported).
    pub async fn gc(&self, grace: Duration, why: &str) -> Result<GcReport> {
        self.writable().await?;
        // A grace longer than the calendar holds keeps every blob (never an overflow panic).
        let cutoff = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|g| self.now().checked_sub_signed(g))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let mut report = GcReport::default();
        let blobs = self.store.list("blobs/sha256/", None).await?;
        let mut protected: BTreeSet<String> = BTreeSet::new();
        let stale =
            self.now() - chrono::Duration::from_std(PENDING_STALE).unwrap_or(chrono::Duration::MAX);
        for meta in self.store.list("pending/", None).await? {
            let key = self.store.key_of(&meta.location);
            // One read: the bytes are parsed, or scanned for digests when they do not parse.
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            match serde_json::from_slice::<PendingNote>(&bytes) {
                Ok(note) if note.at < stale && meta.last_modified < stale => {
                    self.store.delete(&key).await?;
                    report.stale_pending_deleted += 1;
                }
                Ok(note) => protected.extend(note.blobs),
                Err(e) => {
                    tracing::warn!(key, error = %e, "unreadable pending note: keeping what it names");
                    protected.extend(hex_digests(&bytes));
                }
            }
        }
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        for model in self.list_models().await? {
            let (versions, unreadable) = self.list_versions_checked(&model).await?;
            for v in versions {
                if v.deleted.is_none() {
                    referenced.extend(v.record.files.iter().map(|f| f.sha256.clone()));
                }
            }
            for u in unreadable {
                if let Some(bytes) = self.store.get(&u.key).await? {
                    referenced.extend(hex_digests(&bytes));
                }
                report.unreadable_records.push(u);
            }
        }
        for meta in blobs {
            let key = self.store.key_of(&meta.location);
            let Some(digest) = blob_digest(&key) else {
                continue;
            };
            report.blobs += 1;
            if referenced.contains(digest) {
                report.referenced += 1;
            } else if protected.contains(digest) {
                report.kept_pending += 1;
            } else if meta.last_modified > cutoff {
                report.kept_recent += 1;
            } else {
                // Rewritten since the listing (a registration reusing the content)? Keep it.
                // Compared in whole seconds: HEAD and LIST report times at other precisions.
                match self.store.head(&key).await? {
                    Some(now) if now.last_modified.timestamp() > meta.last_modified.timestamp() => {
                        report.kept_recent += 1;
                        continue;
                    }
                    None => continue,
                    Some(_) => {}
                }
                self.store.delete(&key).await?;
                report.deleted += 1;
                report.bytes_deleted += meta.size;
            }
        }
        report.temporaries_deleted = self.delete_temporaries(cutoff).await;
        tracing::info!(
            deleted = report.deleted,
            bytes = report.bytes_deleted,
            temporaries = report.temporaries_deleted,
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

    /// Removes the `…#N` upload temporaries under `blobs/` of a local store (object_store's
    /// listing hides them) modified before `cutoff`; returns how many.
    async fn delete_temporaries(&self, cutoff: DateTime<Utc>) -> usize {
        let Some(root) = self.store.local_path("blobs/sha256") else {
            return 0;
        };
        mlops_core::runtime::spawn(Self::delete_temporaries_under(root, cutoff))
            .await
            .unwrap_or(0)
    }

    async fn delete_temporaries_under(root: std::path::PathBuf, cutoff: DateTime<Utc>) -> usize {
        let mut deleted = 0;
        let Ok(mut shards) = tokio::fs::read_dir(&root).await else {
            return 0;
        };
        while let Ok(Some(shard)) = shards.next_entry().await {
            let Ok(mut files) = tokio::fs::read_dir(shard.path()).await else {
                continue;
            };
            while let Ok(Some(file)) = files.next_entry().await {
                let name = file.file_name();
                if !name.to_string_lossy().contains('#') {
                    continue;
                }
                let old = file
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .map(|t| DateTime::<Utc>::from(t) < cutoff)
                    .unwrap_or(false);
                if old && tokio::fs::remove_file(file.path()).await.is_ok() {
                    deleted += 1;
                }
            }
        }
        deleted
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
