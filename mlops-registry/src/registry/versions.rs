//! Versions: registration (claiming a number), resolution, listing, search and deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use serde::Serialize;

use super::{
    missing_version, tombstone_key, version_key, versions_dir, PendingNote, Registry,
    CONCURRENT_READS, LATEST,
};
use crate::blobs::{put_blob, read_source};
use crate::error::{Error, Result};
use crate::names::{check_file_name, check_key, check_name};
use crate::new_version::NewVersion;
use crate::query::Query;
use crate::records::{AuditAction, Tombstone, VersionInfo, VersionRecord, VersionRef};

/// Attempts at claiming a version number before giving up.
const MAX_CLAIMS: u32 = 200;

/// Versions whose tombstones `@latest` probes at once, walking down from the head.
const LATEST_BATCH: u64 = 16;

/// The most versions [`Registry::list_versions_page`] returns at once.
pub const MAX_PAGE: usize = 1000;

/// A version of a page as read: its number, its record and its tombstone.
type PageRead = (
    u64,
    Result<Option<VersionRecord>>,
    Result<Option<Tombstone>>,
);

/// One page of a model's versions ([`Registry::list_versions_page`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionPage {
    /// The versions numbered after the page's `after`, ascending, at most its `limit`
    /// (deleted ones flagged).
    pub versions: Vec<VersionInfo>,
    /// Records in the page's range that could not be read or parsed (with the reason).
    pub unreadable: Vec<UnreadableRecord>,
    /// The `after` of the next page; `None` on the last one.
    pub next_after: Option<u64>,
    /// The model's highest version number when the page was read (0: none).
    pub last_version: u64,
}

/// A version record that could not be read or parsed (listed beside the readable ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableRecord {
    /// Its key in the store.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl Registry {
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
    /// record at head + 1 with `PutMode::Create` (the head from the versions' hint, verified:
    /// see `heads.rs`), and on conflict finds the new head and retries with jitter.
    async fn claim(&self, model: &str, mut record: VersionRecord) -> Result<VersionRecord> {
        let dir = versions_dir(model);
        let (mut head, hint, _) = self.log_start(&dir).await?;
        for attempt in 1..=MAX_CLAIMS {
            record.version = head.checked_add(1).ok_or_else(|| {
                Error::invalid(
                    format!("the versions of `{model}`"),
                    head,
                    "version numbers below u64::MAX",
                )
            })?;
            let key = version_key(model, record.version);
            if self.store.create(&key, Self::to_json(&record)?).await? {
                self.note_seen_in(&dir, record.version);
                self.advance_hint(&dir, hint, record.version).await;
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
            let backoff_ms = 2u64 << attempt.min(6);
            let jitter = rand::rng().random_range(0..=backoff_ms);
            tracing::debug!(
                model,
                version = record.version,
                attempt,
                "version taken; retrying"
            );
            mlops_core::runtime::sleep(Duration::from_millis(jitter)).await?;
            // Taken: the head is at least there; find where it is now.
            head = self.gallop(&dir, record.version).await?;
        }
        Err(Error::Contention {
            model: model.to_string(),
            attempts: MAX_CLAIMS,
        })
    }

    pub(super) async fn read_record(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<VersionRecord>> {
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
                let latest = self.latest_record(model).await?;
                latest.map(|r| r.version).ok_or_else(|| Error::NotFound {
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
        if let Some(&(last, _)) = keys.last() {
            self.note_seen_in(&versions_dir(model), last);
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

    /// The highest live version of `model`, with the aliases pointing at it: found from the
    /// versions' head downwards past deleted versions, in a few store calls at any number of
    /// versions (not a listing).
    pub async fn latest(&self, model: &str) -> Result<Option<VersionInfo>> {
        let Some(record) = self.latest_record(model).await? else {
            return Ok(None);
        };
        let aliases = self.aliases_to(model, record.version).await?;
        Ok(Some(VersionInfo {
            record,
            deleted: None,
            aliases,
        }))
    }

    /// The record of the highest live version of `model`. A record that cannot be parsed is
    /// logged and passed over, as [`Registry::list_versions`] leaves it out.
    async fn latest_record(&self, model: &str) -> Result<Option<VersionRecord>> {
        check_name("model name", model)?;
        let head = self.log_head(&versions_dir(model)).await?;
        let mut at_head = head.entry;
        // The head alone first (it is live nearly always), then downwards in batches whose
        // tombstones are probed concurrently: many deleted versions at the top cost round
        // trips by the batch, not one by one.
        let (mut top, mut size) = (head.last, 1);
        while top > 0 {
            let batch: Vec<u64> = (top.saturating_sub(size - 1).max(1)..=top).rev().collect();
            size = LATEST_BATCH;
            top = batch[batch.len() - 1] - 1;
            let deleted: Vec<bool> = futures::stream::iter(batch.iter().copied())
                .map(|v| async move {
                    self.store
                        .head(&tombstone_key(model, v))
                        .await
                        .map(|m| m.is_some())
                })
                .buffered(CONCURRENT_READS)
                .try_collect()
                .await?;
            for (version, deleted) in batch.into_iter().zip(deleted) {
                let bytes = if version == head.last {
                    at_head.take()
                } else {
                    None
                };
                if deleted {
                    continue;
                }
                let key = version_key(model, version);
                let bytes = match bytes {
                    Some(b) => b,
                    None => match self.store.get(&key).await? {
                        Some(b) => b,
                        None => continue,
                    },
                };
                match serde_json::from_slice::<VersionRecord>(&bytes) {
                    Ok(record) => return Ok(Some(record)),
                    Err(e) => {
                        tracing::warn!(%key, reason = %e, "unreadable version record passed over for @latest");
                    }
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` (1 to [`MAX_PAGE`]) versions of `model` numbered after `after`
    /// (0: from the first), ascending, deleted ones flagged, and where the next page starts:
    /// each page costs the same few store calls plus two reads per version on it, however
    /// many versions there are. Records that cannot be read are named in the page, beside
    /// the readable ones.
    ///
    /// ```
    /// use mlops_registry::{NewVersion, Registry, RegistryConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let registry = Registry::open(&dir.path().display().to_string(), &RegistryConfig::default()).await?;
    /// for i in 0..5u8 {
    ///     registry.register("fraud", NewVersion::new().bytes("model.bin", vec![i])).await?;
    /// }
    /// let (mut after, mut seen) = (Some(0), Vec::new());
    /// while let Some(a) = after {
    ///     let page = registry.list_versions_page("fraud", a, 2).await?;
    ///     seen.extend(page.versions.iter().map(|v| v.record.version));
    ///     after = page.next_after;
    /// }
    /// assert_eq!(seen, [1, 2, 3, 4, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn list_versions_page(
        &self,
        model: &str,
        after: u64,
        limit: usize,
    ) -> Result<VersionPage> {
        check_name("model name", model)?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(
                "page limit",
                limit,
                format!("1 to {MAX_PAGE} versions"),
            ));
        }
        let last = self.log_head(&versions_dir(model)).await?.last;
        let end = after.saturating_add(limit as u64).min(last);
        let mut page = VersionPage {
            versions: Vec::new(),
            unreadable: Vec::new(),
            next_after: (end < last).then_some(end.max(after)),
            last_version: last,
        };
        if after >= end {
            return Ok(page);
        }
        let read: Vec<PageRead> = futures::stream::iter(after + 1..=end)
            .map(|v| async move {
                let record = self.read_record(model, v).await;
                let tombstone = self.read_json(&tombstone_key(model, v)).await;
                (v, record, tombstone)
            })
            .buffered(CONCURRENT_READS)
            .collect()
            .await;
        let mut by_version: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (alias, v) in self.aliases(model).await? {
            by_version.entry(v).or_default().push(alias);
        }
        for (version, record, tombstone) in read {
            match record {
                Ok(Some(record)) => page.versions.push(VersionInfo {
                    deleted: tombstone?,
                    aliases: by_version.remove(&version).unwrap_or_default(),
                    record,
                }),
                Ok(None) => {}
                Err(e @ Error::Record { .. }) => page.unreadable.push(UnreadableRecord {
                    key: version_key(model, version),
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(page)
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
}
