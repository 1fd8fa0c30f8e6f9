//! Where rollout state lives: [`RolloutStore`], a small async trait with a conditional write,
//! [`MemoryRolloutStore`] for one process and tests, and (feature `registry`) the registry's
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

/// Rollouts kept in memory (one process; tests).
#[derive(Debug, Default)]
pub struct MemoryRolloutStore {
    rollouts: Mutex<HashMap<(String, String), Stored>>,
}

impl MemoryRolloutStore {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RolloutStore for MemoryRolloutStore {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        let key = (model.to_string(), document.to_string());
        Ok(lock(&self.rollouts).get(&key).cloned())
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        state: &RolloutState,
        _why: &str,
    ) -> Result<bool> {
        let key = (model.to_string(), document.to_string());
        let mut rollouts = lock(&self.rollouts);
        let current = rollouts.get(&key).map_or(0, |s| s.seq);
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
        rollouts.insert(
            key,
            Stored {
                seq,
                state: state.clone(),
            },
        );
        Ok(true)
    }
}

#[cfg(feature = "registry")]
#[async_trait]
impl RolloutStore for mlops_registry::Registry {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        let entry = self.state(model, document).await?;
        match entry {
            None => Ok(None),
            Some(e) => {
                // A stored document this version cannot read is corrupt data (permanent:
                // reported, not retried), not the caller's bad input.
                let state = serde_json::from_value(e.value).map_err(|err| {
                    crate::Error::corrupt(format!(
                        "rollout state {document:?} of {model:?} (entry {}) is not a rollout \
                         state written by this version of mlops: {err}",
                        e.seq
                    ))
                })?;
                Ok(Some(Stored { seq: e.seq, state }))
            }
        }
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool> {
        let value = serde_json::to_value(state).map_err(|e| {
            crate::Error::invalid("rollout state", e.to_string(), "a state that serializes")
        })?;
        Ok(self
            .put_state(model, document, expected_seq, value, why)
            .await?
            .is_some())
    }
}
