//! Where rollout state lives: [`RolloutStore`], a small async trait with a conditional write,
//! [`MemoryRolloutStore`] for one process and tests, and (feature `registry`) the registry's
//! state documents (`models/NAME/state/rollout/`), written with the conditional create that
//! makes alias moves safe, so replicas share one rollout and racing controllers cannot both
//! act.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::RolloutState;
use crate::stats::lock;
use crate::Result;

/// A stored rollout and its write sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The sequence number of the write (1 for the first); the next write must name it.
    pub seq: u64,
    /// The state.
    pub state: RolloutState,
}

/// Shared, conditional storage of one rollout per model.
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// The current rollout of `model`, if any was ever written.
    async fn load(&self, model: &str) -> Result<Option<Stored>>;

    /// Writes `state` as write `expected_seq + 1` if the stored one is still `expected_seq`
    /// (0: none yet). `Ok(false)` when another writer got there first; nothing changed.
    async fn save(
        &self,
        model: &str,
        expected_seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool>;
}

/// Rollouts kept in memory (one process; tests).
#[derive(Debug, Default)]
pub struct MemoryRolloutStore {
    rollouts: Mutex<HashMap<String, Stored>>,
}

impl MemoryRolloutStore {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RolloutStore for MemoryRolloutStore {
    async fn load(&self, model: &str) -> Result<Option<Stored>> {
        Ok(lock(&self.rollouts).get(model).cloned())
    }

    async fn save(
        &self,
        model: &str,
        expected_seq: u64,
        state: &RolloutState,
        _why: &str,
    ) -> Result<bool> {
        let mut rollouts = lock(&self.rollouts);
        let current = rollouts.get(model).map_or(0, |s| s.seq);
        if current != expected_seq {
            return Ok(false);
        }
        rollouts.insert(
            model.to_string(),
            Stored {
                seq: expected_seq + 1,
                state: state.clone(),
            },
        );
        Ok(true)
    }
}

/// The state document's name in the registry.
#[cfg(feature = "registry")]
pub const ROLLOUT_DOCUMENT: &str = "rollout";

#[cfg(feature = "registry")]
#[async_trait]
impl RolloutStore for mlops_registry::Registry {
    async fn load(&self, model: &str) -> Result<Option<Stored>> {
        let entry = self
            .state(model, ROLLOUT_DOCUMENT)
            .await
            .map_err(crate::source::core_error)?;
        match entry {
            None => Ok(None),
            Some(e) => {
                let state = serde_json::from_value(e.value).map_err(|err| {
                    crate::Error::invalid(
                        format!("rollout state of {model:?} (entry {})", e.seq),
                        err.to_string(),
                        "a rollout state written by this version of mlops",
                    )
                })?;
                Ok(Some(Stored { seq: e.seq, state }))
            }
        }
    }

    async fn save(
        &self,
        model: &str,
        expected_seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool> {
        let value = serde_json::to_value(state).map_err(|e| {
            crate::Error::invalid("rollout state", e.to_string(), "a state that serializes")
        })?;
        Ok(self
            .put_state(model, ROLLOUT_DOCUMENT, expected_seq, value, why)
            .await
            .map_err(crate::source::core_error)?
            .is_some())
    }
}
