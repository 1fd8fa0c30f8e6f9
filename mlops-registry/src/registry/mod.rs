//! The registry: versions claimed with `PutMode::Create`, aliases as append-only logs (a real
//! compare-and-swap), tombstones, garbage collection and the audit log, all as objects under
//! one prefix:
//!
//! ```text
//! blobs/sha256/ab/abcd...                     file contents, by sha256
//! models/NAME/versions/0000000001.json        version records (written once, last)
//! models/NAME/versions/head.json              the versions' hint (`{"last": N}`; see heads.rs),
//!                                             as in every numbered log below
//! models/NAME/deleted/0000000001.json         tombstones
//! models/NAME/aliases/ALIAS/0000000001.json   alias logs, one entry per move
//! models/NAME/state/DOC/0000000001.json       state logs (a rollout's state), one entry per write
//! audit/<unix ns>-<seq>-<random>.json         audit events
//! pending/<random>.json                       blobs of a registration in flight (gc keeps them)
//! ```
//!
//! Reads never write: the conditional-create probe runs before a handle's first write, so a
//! read-only mount or read-only credentials serve `list`, `show` and `download`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mlops_core::clock::{Clock, SystemClock};
use object_store::ObjectStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::store::{self, Store};

mod aliases;
mod audit;
mod gc;
mod heads;
mod loading;
mod state;
mod versions;

pub use gc::GcReport;
pub use versions::{UnreadableRecord, VersionPage, MAX_PAGE};

/// `@latest`: the highest live version; no alias may take this name.
pub use mlops_core::version_ref::LATEST;

/// Records fetched at once when listing.
const CONCURRENT_READS: usize = 64;

/// The log of `model`'s version records.
fn versions_dir(model: &str) -> String {
    format!("models/{model}/versions")
}
fn version_key(model: &str, version: u64) -> String {
    heads::entry_key(&versions_dir(model), version)
}
fn tombstone_key(model: &str, version: u64) -> String {
    format!("models/{model}/deleted/{version:010}.json")
}
fn alias_dir(model: &str, alias: &str) -> String {
    format!("models/{model}/aliases/{alias}")
}
fn alias_key(model: &str, alias: &str, seq: u64) -> String {
    heads::entry_key(&alias_dir(model, alias), seq)
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
    /// The highest entry number seen per numbered log (version records, alias and state
    /// logs): a lower bound a later search for the log's end starts from.
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

    /// The highest entry number this handle saw in the log under `dir` (0: none).
    fn seen_in(&self, dir: &str) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(dir)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets what this handle saw of the log under `dir` (it was not there any more).
    fn forget(&self, dir: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(dir);
    }

    /// Notes that entry `n` of the log under `dir` exists.
    fn note_seen_in(&self, dir: &str, n: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(dir.to_string()).or_insert(0);
        *entry = (*entry).max(n);
    }
}
