//! Log heads: the last number of a numbered log (a model's version records, an alias's moves,
//! a state document's writes) in a few store calls, however long the log.
//!
//! Each log `DIR/0000000001.json, DIR/0000000002.json, ...` has a hint, `DIR/head.json`
//! (`{"last": N}`), advanced after every append with a conditional update (a compare-and-swap
//! on the hint's ETag or version where the backend has one, an atomic overwrite on local disk).
//! The hint is only ever a starting point:
//!
//! - it is verified: entry N is read, so a hint naming a missing entry (edited by hand, or
//!   left by a broken writer) is logged and ignored, never trusted into a gap, and the next
//!   append rewrites it;
//! - the head is found from it by probing N+1, N+2, N+4, ... until an entry is absent, then
//!   bisecting: a current hint costs one probe, a stale one about 2·log2(staleness), none at
//!   all (a registry written before hints) about 2·log2(length);
//! - entries are created gap-free (each at head + 1, with `PutMode::Create`) and never
//!   removed, so "entry k exists" holds exactly for k ≤ head: what the bisection needs.
//!
//! Numbers stay unique under any concurrency because the entry itself is created with
//! `PutMode::Create`; the hint only replaces the listing of every key.

use bytes::Bytes;
use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::error::{Error, Result};
use crate::store::Replaced;

/// The hint's name in its log's folder (not a number, so listings of entries skip it).
pub(super) const HEAD_FILE: &str = "head.json";

/// Conditional updates of a hint before giving up on it (it is only a hint).
const HINT_TRIES: usize = 4;

/// The key of entry `n` of the log under `dir`.
pub(super) fn entry_key(dir: &str, n: u64) -> String {
    format!("{dir}/{n:010}.json")
}

fn head_key(dir: &str) -> String {
    format!("{dir}/{HEAD_FILE}")
}

#[derive(Serialize, Deserialize)]
struct HintDoc {
    last: u64,
}

/// A log's hint as read: what it said, and what a conditional update of it names.
#[derive(Debug, Clone, Default)]
pub(super) struct Hint {
    last: u64,
    /// `None`: there was no hint.
    version: Option<UpdateVersion>,
    /// It named a missing entry (or could not be parsed): rewrite it whatever it says.
    bogus: bool,
}

/// Where a log ends.
#[derive(Debug)]
pub(super) struct LogHead {
    /// The last entry's number (0: the log is empty).
    pub(super) last: u64,
    /// The hint as read, for [`Registry::advance_hint`] after an append.
    pub(super) hint: Hint,
    /// The last entry's bytes, when they were read on the way.
    pub(super) entry: Option<Bytes>,
}

impl Registry {
    async fn read_hint(&self, dir: &str) -> Result<Hint> {
        let key = head_key(dir);
        Ok(match self.store.get_versioned(&key).await? {
            None => Hint::default(),
            Some((bytes, version)) => match serde_json::from_slice::<HintDoc>(&bytes) {
                Ok(doc) => Hint {
                    last: doc.last,
                    version: Some(version),
                    bogus: false,
                },
                Err(e) => {
                    tracing::warn!(%key, error = %e, "unreadable log hint ignored (the next append rewrites it)");
                    Hint {
                        last: 0,
                        version: Some(version),
                        bogus: true,
                    }
                }
            },
        })
    }

    /// The highest entry of the log under `dir` known to exist without probing past it (this
    /// handle's memory, or the hint once verified; 0 when neither), the hint, and the
    /// entry's bytes when the hint's entry was read to verify it.
    pub(super) async fn log_start(&self, dir: &str) -> Result<(u64, Hint, Option<Bytes>)> {
        let mut seen = self.seen_in(dir);
        let mut hint = self.read_hint(dir).await?;
        // The hint behind what this handle saw (or gone): the store may have been emptied or
        // restored under it, or another writer's hint lagged; what it remembers is checked
        // before it is trusted (a hint at `seen` was written after that entry).
        if seen > 0 && hint.last < seen && !self.entry_exists(dir, seen).await? {
            self.forget(dir);
            seen = 0;
        }
        if hint.last <= seen {
            return Ok((seen, hint, None));
        }
        match self.store.get(&entry_key(dir, hint.last)).await? {
            Some(bytes) => Ok((hint.last, hint, Some(bytes))),
            None => {
                tracing::warn!(
                    key = %head_key(dir),
                    last = hint.last,
                    "the log's hint names a missing entry: ignored (the next append rewrites it)"
                );
                hint.bogus = true;
                Ok((seen, hint, None))
            }
        }
    }

    async fn entry_exists(&self, dir: &str, n: u64) -> Result<bool> {
        Ok(self.store.head(&entry_key(dir, n)).await?.is_some())
    }

    /// Where the log under `dir` ends (see the module's notes: a few store calls at any
    /// length).
    pub(super) async fn log_head(&self, dir: &str) -> Result<LogHead> {
        let (known, hint, entry) = self.log_start(dir).await?;
        let last = self.gallop(dir, known).await?;
        Ok(LogHead {
            last,
            hint,
            entry: if last == known { entry } else { None },
        })
    }

    /// The last entry of the log under `dir`, from `known` (an entry that exists, or 0):
    /// probes `known + 1`, `+ 2`, `+ 4`, ... until one is absent, then bisects.
    pub(super) async fn gallop(&self, dir: &str, known: u64) -> Result<u64> {
        let exists = |n: u64| self.entry_exists(dir, n);
        let (mut lo, mut step) = (known, 1u64);
        let mut hi = loop {
            let probe = lo.checked_add(step).ok_or_else(|| {
                Error::invalid(
                    format!("the numbered log `{dir}`"),
                    lo,
                    "entry numbers below u64::MAX",
                )
            })?;
            if exists(probe).await? {
                lo = probe;
                step = step.saturating_mul(2);
            } else {
                break probe;
            }
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.note_seen_in(dir, lo);
        Ok(lo)
    }

    /// Moves the hint of the log under `dir` up to `last` (an entry this handle just
    /// created). Best effort: a hint that cannot be written only makes the next reader probe
    /// further, so failures are logged, not returned.
    pub(super) async fn advance_hint(&self, dir: &str, mut hint: Hint, last: u64) {
        let key = head_key(dir);
        let bytes = match Self::to_json(&HintDoc { last }) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%key, error = %e, "log hint not written");
                return;
            }
        };
        for _ in 0..HINT_TRIES {
            if !hint.bogus && hint.version.is_some() && hint.last >= last {
                return;
            }
            match self
                .store
                .replace(&key, bytes.clone(), hint.version.clone())
                .await
            {
                Ok(Replaced::Written) => return,
                Ok(Replaced::Conflict) => match self.read_hint(dir).await {
                    Ok(again) => hint = again,
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "log hint not written");
                        return;
                    }
                },
                Ok(Replaced::Unsupported) => {
                    // Local disk has no conditional update: an atomic overwrite. Two racing
                    // appenders may leave the lower number, which only costs a probe.
                    if let Err(e) = self.store.put(&key, bytes.into()).await {
                        tracing::warn!(%key, error = %e, "log hint not written");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "log hint not written");
                    return;
                }
            }
        }
        tracing::debug!(%key, last, "log hint left to the other writers");
    }

    /// The last entry of the log under `dir` (`None` when it is empty).
    pub(super) async fn last_in_log<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Result<Option<T>> {
        Ok(self.log_end(dir).await?.0)
    }

    /// The last entry of the log under `dir` (`None` when it is empty), and its hint as read
    /// (for [`Registry::advance_hint`] after appending).
    pub(super) async fn log_end<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Result<(Option<T>, Hint)> {
        let mut head = self.log_head(dir).await?;
        let mut retried = false;
        let (key, bytes) = loop {
            if head.last == 0 {
                return Ok((None, head.hint));
            }
            let key = entry_key(dir, head.last);
            let bytes = match head.entry.take() {
                Some(b) => Some(b),
                None => self.store.get(&key).await?,
            };
            match bytes {
                Some(b) => break (key, b),
                // What this handle remembered is gone (the store was emptied or edited under
                // it): look again from nothing, once.
                None if !retried => {
                    retried = true;
                    self.forget(dir);
                    head = self.log_head(dir).await?;
                }
                None => {
                    return Err(Error::Record {
                        path: key,
                        reason: "the log's last entry vanished while it was read (entries are \
                                 never removed: was the store edited?)"
                            .into(),
                    })
                }
            }
        };
        serde_json::from_slice(&bytes)
            .map(|entry| (Some(entry), head.hint))
            .map_err(|e| Error::Record {
                path: key,
                reason: e.to_string(),
            })
    }
}
