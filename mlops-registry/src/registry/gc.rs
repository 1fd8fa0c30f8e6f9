//! Garbage collection: unreferenced blobs, stale pending notes and upload temporaries.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{PendingNote, Registry, UnreadableRecord};
use crate::blobs::blob_digest;
use crate::error::Result;
use crate::records::AuditAction;

/// A registration's pending-blobs note older than this is stale (its writer died): gc removes
/// it and stops protecting its blobs.
const PENDING_STALE: Duration = Duration::from_secs(24 * 3600);

/// Every 64-hex-digit run in `bytes`: the digests an unreadable record may name.
fn hex_digests(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|b| !b.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
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

impl Registry {
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
}
