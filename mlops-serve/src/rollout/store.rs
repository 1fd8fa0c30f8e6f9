//! Where rollout state lives: [`RolloutStore`], a small async trait with a conditional write,
//! [`MemoryRolloutStore`] ([`MemoryDocuments`]) for one process and tests, and (feature `registry`) the registry's
//! state documents (`models/NAME/state/DOCUMENT/`), written with the conditional create that
//! makes alias moves safe, so replicas share one rollout and racing controllers cannot both
//! act.
//!
//! A model has one rollout per alias pair (the alias served, the alias rolled out from):
//! [`rollout_document`] names the pair's document, `rollout` for `production`/`canary` (where
//! it always was), so controllers on `eu-production`/`eu-canary` and on
//! `production`/`canary` of one model never see each other's rollout.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::RolloutState;
use crate::step_stats::lock;
use crate::Result;

/// A stored rollout and its write sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The sequence number of the write (1 for the first); the next write must name it.
    pub seq: u64,
    /// The state.
    pub state: RolloutState,
}

/// The document name of the default pair's rollout (`production`/`canary`).
pub const ROLLOUT_DOCUMENT: &str = "rollout";

/// The longest document name (the registry's limit on a name).
const MAX_DOCUMENT: usize = 128;

/// The name of the rollout document of the alias pair `production`/`canary` (the alias served,
/// the alias rolled out from): [`ROLLOUT_DOCUMENT`] for the default pair, so its state stays
/// where it always was; otherwise `rollout_{len}_{production}_{canary}`, the length making the
/// split unambiguous (`a_b`/`c` and `a`/`b_c` differ), or, past 128 characters,
/// `rollout_s` and the SHA-256 of the pair in hex (collision-resistant: two pairs never share a
/// document, even pairs chosen to collide). Every name is a valid registry name when both
/// aliases are.
///
/// ```
/// use mlops_serve::rollout::rollout_document;
/// assert_eq!(rollout_document("production", "canary"), "rollout");
/// assert_eq!(rollout_document("eu-production", "eu-canary"), "rollout_13_eu-production_eu-canary");
/// assert_ne!(rollout_document("a_b", "c"), rollout_document("a", "b_c"));
/// ```
pub fn rollout_document(production: &str, canary: &str) -> String {
    if production == super::PRODUCTION_ALIAS && canary == super::CANARY_ALIAS {
        return ROLLOUT_DOCUMENT.to_string();
    }
    let readable = format!(
        "{ROLLOUT_DOCUMENT}_{}_{production}_{canary}",
        production.len()
    );
    if readable.len() <= MAX_DOCUMENT {
        return readable;
    }
    let mut pair = Vec::with_capacity(production.len() + canary.len() + 9);
    pair.extend_from_slice(&(production.len() as u64).to_le_bytes());
    pair.extend_from_slice(production.as_bytes());
    pair.extend_from_slice(canary.as_bytes());
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&pair);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{ROLLOUT_DOCUMENT}_s{hex}")
}

/// Shared, conditional storage of rollouts: one per model and document (one document per
/// alias pair, [`rollout_document`]).
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// The current rollout of `model` under `document`, if any was ever written.
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>>;

    /// Writes `state` as `model`'s `document` write `expected_seq + 1` if the stored one is
    /// still `expected_seq` (0: none yet). `Ok(false)` when another writer got there first;
    /// nothing changed.
    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool>;
}

/// Documents kept in memory with the conditional write of a store (one process; tests): the
/// in-memory [`RolloutStore`] ([`MemoryRolloutStore`]) and
/// [`ExperimentStore`](crate::experiment::ExperimentStore).
#[derive(Debug)]
pub struct MemoryDocuments<T> {
    documents: Mutex<HashMap<(String, String), (u64, T)>>,
}

/// Rollouts kept in memory (one process; tests).
pub type MemoryRolloutStore = MemoryDocuments<RolloutState>;

impl<T> Default for MemoryDocuments<T> {
    fn default() -> Self {
        MemoryDocuments {
            documents: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> MemoryDocuments<T> {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// `model`'s `document` and its write sequence number, if it was ever written.
    pub fn get(&self, model: &str, document: &str) -> Option<(u64, T)> {
        let key = (model.to_string(), document.to_string());
        lock(&self.documents).get(&key).cloned()
    }

    /// Writes `value` as write `expected_seq + 1` if the stored one is still `expected_seq`
    /// (0: none yet); `Ok(false)`, nothing changed, when another writer got there first.
    pub fn put(&self, model: &str, document: &str, expected_seq: u64, value: &T) -> Result<bool> {
        let key = (model.to_string(), document.to_string());
        let mut documents = lock(&self.documents);
        let current = documents.get(&key).map_or(0, |s| s.0);
        if current != expected_seq {
            return Ok(false);
        }
        let Some(seq) = expected_seq.checked_add(1) else {
            return Err(crate::Error::invalid(
                "expected_seq",
                expected_seq,
                "a sequence number below u64::MAX",
            ));
        };
        documents.insert(key, (seq, value.clone()));
        Ok(true)
    }
}

#[async_trait]
impl RolloutStore for MemoryRolloutStore {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        Ok(self
            .get(model, document)
            .map(|(seq, state)| Stored { seq, state }))
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        state: &RolloutState,
        _why: &str,
    ) -> Result<bool> {
        self.put(model, document, expected_seq, state)
    }
}

/// Reads registry state document `document` of `model` as a `T` (`what` names it in the
/// error when a stored value is not one).
#[cfg(feature = "registry")]
pub(crate) async fn load_document<T: serde::de::DeserializeOwned>(
    registry: &mlops_registry::Registry,
    model: &str,
    document: &str,
    what: &str,
) -> Result<Option<(u64, T)>> {
    match registry.state(model, document).await? {
        None => Ok(None),
        Some(e) => {
            // A stored document this version cannot read is corrupt data (permanent:
            // reported, not retried), not the caller's bad input.
            let value = serde_json::from_value(e.value).map_err(|err| {
                crate::Error::corrupt(format!(
                    "{what} {document:?} of {model:?} (entry {}) is not a {what} written by \
                     this version of mlops: {err}",
                    e.seq
                ))
            })?;
            Ok(Some((e.seq, value)))
        }
    }
}

/// Writes `value` as registry state document `document` of `model`, entry `expected_seq + 1`,
/// with the registry's conditional create; `Ok(false)` when another writer got there first.
#[cfg(feature = "registry")]
pub(crate) async fn save_document<T: serde::Serialize>(
    registry: &mlops_registry::Registry,
    model: &str,
    document: &str,
    expected_seq: u64,
    value: &T,
    what: &str,
    why: &str,
) -> Result<bool> {
    let value = serde_json::to_value(value)
        .map_err(|e| crate::Error::invalid(what, e.to_string(), "a value that serializes"))?;
    Ok(registry
        .put_state(model, document, expected_seq, value, why)
        .await?
        .is_some())
}

#[cfg(feature = "registry")]
#[async_trait]
impl RolloutStore for mlops_registry::Registry {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        Ok(load_document(self, model, document, "rollout state")
            .await?
            .map(|(seq, state)| Stored { seq, state }))
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool> {
        save_document(
            self,
            model,
            document,
            expected_seq,
            state,
            "rollout state",
            why,
        )
        .await
    }
}
