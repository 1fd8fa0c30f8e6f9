//! State documents: numbered logs per model (a rollout's state), written with a
//! conditional create.

use super::{state_dir, Registry};
use crate::error::{Error, Result};
use crate::names::check_name;
use crate::records::StateEntry;

impl Registry {
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
        let dir = state_dir(model, name);
        let (current, hint) = self.log_end::<StateEntry>(&dir).await?;
        if current.map_or(0, |e| e.seq) != expected_seq {
            return Ok(None);
        }
        let key = super::heads::entry_key(&dir, entry.seq);
        if !self.store.create(&key, Self::to_json(&entry)?).await? {
            return Ok(None);
        }
        self.advance_hint(&dir, hint, entry.seq).await;
        tracing::debug!(model, name, seq = entry.seq, "state written");
        Ok(Some(entry))
    }
}
