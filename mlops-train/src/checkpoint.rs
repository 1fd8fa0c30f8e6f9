//! Checkpoints: everything needed to resume a run bit-identically (optimizer state with the
//! parameters, callback states, history), written atomically after every epoch as one JSON
//! file tied to the configs and the data it belongs to.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::callbacks::EpochLog;
use crate::engine::HostParams;
use crate::error::{Error, Result};
use crate::optim::AdamW;

/// The checkpoint file inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Early stopping and learning-rate reduction counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Watchers {
    pub(crate) best: Option<f64>,
    pub(crate) best_epoch: Option<usize>,
    pub(crate) best_params: Option<HostParams>,
    pub(crate) wait: usize,
    pub(crate) lr_best: Option<f64>,
    pub(crate) lr_wait: usize,
    pub(crate) lr_cooldown: usize,
    pub(crate) stopped_early: bool,
}

/// A run's state after `epochs_done` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Configs (with `epochs` and `threads` blanked) and data fingerprint.
    pub(crate) key: String,
    pub(crate) epochs_done: usize,
    pub(crate) optimizer: AdamW,
    pub(crate) watchers: Watchers,
    pub(crate) history: Vec<EpochLog>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

fn io_err(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: p.display().to_string(),
        message: e.to_string(),
    }
}

impl Checkpoint {
    /// The checkpoint in `dir`, if there is one; refused if it belongs to another run.
    pub(crate) fn load(dir: &Path, key: &str) -> Result<Option<Checkpoint>> {
        let p = path(dir);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&p, e)),
        };
        let c: Checkpoint = serde_json::from_str(&text).map_err(|e| io_err(&p, e))?;
        if c.key != key {
            return Err(io_err(
                &p,
                "was written by a run with other configs or other data; \
                 use another checkpoint directory or delete this one",
            ));
        }
        Ok(Some(c))
    }

    /// Writes to a temporary file and renames it over the checkpoint, so a crash leaves the
    /// previous checkpoint intact.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let p = path(dir);
        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let text = serde_json::to_vec(self).map_err(|e| io_err(&p, e))?;
        std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err(&p, e))?;
        Ok(())
    }
}
