//! The crate's error type.

/// Everything that can go wrong while configuring or running training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value the caller passed (a config field, a dataset, an argument) is unusable.
    #[error(transparent)]
    InvalidValue(#[from] mlops_core::InvalidValue),
    /// An error from mlops-core (dataset, metrics, model artifact).
    #[error(transparent)]
    Core(mlops_core::Error),
    /// The compute backend failed (a GPU out of memory, a driver error): candle's message.
    #[error("compute: {message}")]
    Compute {
        /// What the backend said.
        message: String,
    },
    /// Reading or writing a checkpoint.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A tracking backend failed (storage, HTTP, or an error the server returned).
    #[error("tracking ({backend}): {message}")]
    Tracking {
        /// `object_store` or `mlflow`.
        backend: String,
        /// What went wrong, with the server's error code where it gave one.
        message: String,
    },
    /// A trial was stopped by the study's pruner (return it from the objective with `?`).
    #[error("trial pruned at step {step}")]
    Pruned {
        /// The step of the report that pruned it.
        step: i64,
    },
    /// The training loss exploded without becoming infinite (a learning rate far too high):
    /// stopped instead of training on.
    #[error(
        "training diverged at epoch {epoch}: mean loss {loss:.3e} is {per_weight:.3e} per unit \
         of sample weight (above {limit}, a logit of about {limit} on the wrong side for the \
         average row); lower the learning rate (it is {learning_rate})"
    )]
    LossExploded {
        /// Epoch (1-based).
        epoch: usize,
        /// The epoch's mean training loss.
        loss: f64,
        /// The loss divided by the mean loss coefficient (sample and class weights).
        per_weight: f64,
        /// The limit on `per_weight`.
        limit: f64,
        /// The learning rate of the epoch.
        learning_rate: f64,
    },
    /// A shared study journal (on an object store) could not be read or appended to, or
    /// holds something this study cannot use.
    #[error("study journal {location}: {message}")]
    Journal {
        /// The journal's URL (no secrets).
        location: String,
        /// What went wrong, naming the entry where there is one.
        message: String,
    },
    /// `tell` (or a report) on a trial that is not running: finished already, failed by
    /// another worker after it showed no sign of life, or never created.
    #[error("trial {number} is {state}, not running: {detail}")]
    TrialNotRunning {
        /// The trial number.
        number: u64,
        /// Its state in the journal (`complete`, `failed`, `waiting`, `missing`, ...).
        state: String,
        /// Why, and what was not recorded.
        detail: String,
    },
    /// Training diverged (a non-finite loss).
    #[error("training diverged at epoch {epoch}, batch {batch}: loss is {loss}")]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The loss seen.
        loss: f32,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

mlops_core::crate_error!(pub(crate) Error);
