//! # mlops-train
//!
//! Training for the mlops loop: an MLP trainer that exports `mlops_core::model` artifacts. On
//! CPU (the default) each step is one fused forward and backward pass over buffers allocated
//! once, with ndarray's `matrixmultiply` kernels for the products (its gradients are tested
//! against candle's autograd); on a GPU (the `cuda` feature) the network runs on candle's
//! CUDA backend.
//!
//! - [`MlpConfig`] and [`TrainConfig`]: serde hyperparameters whose defaults are the seed's
//!   Keras model (Dense 128-64-32, dropout 0.3, Adam 1e-3, binary cross-entropy, early
//!   stopping patience 5 with best weights restored, `ReduceLROnPlateau` patience 3), checked
//!   before training starts;
//! - [`Trainer`]: standardization fitted on the training split and stored in the model spec;
//!   mini-batch AdamW (weight decay 0 = Adam) on a numerically stable weighted BCE (sample
//!   weights, class weights, `pos_weight`); per-epoch validation metrics from mlops-core;
//!   [`Callback`]s (and an indicatif [`ProgressBar`] on terminals); checkpoints that resume
//!   bit-identically; weights, shuffling and dropout seeded from our own RNG, so the same seed
//!   and data give bit-identical weights at any thread count;
//! - [`training_curves_svg`]: the history as an SVG plot;
//! - [`tracking`]: the [`tracking::ExperimentTracker`] trait, an object-store backend and
//!   (feature `mlflow`) an MLflow REST backend, and [`tracking::log_training`];
//! - [`hpo`]: search spaces, random / grid / TPE samplers, median / ASHA / Hyperband pruning,
//!   and a Katib-shaped [`hpo::Study`];
//! - `testing` (feature `testing`, off by default): the public conformance suite a host runs
//!   on its own [`tracking::ExperimentTracker`].
//!
//! ```
//! use mlops_train::{MlpConfig, TrainConfig};
//!
//! let mlp = MlpConfig::default();
//! assert_eq!(mlp.hidden, vec![128, 64, 32]);
//! assert_eq!(TrainConfig::default().early_stopping.unwrap().patience, 5);
//! ```

mod callbacks;
mod checkpoint;
mod config;
mod curves;
mod data;
mod engine;
mod error;
pub mod hpo;
mod names;
mod optim;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(test)]
mod torch_parity;
pub mod tracking;
mod trainer;

/// The `async_trait` macro, for implementing [`tracking::ExperimentTracker`] or an HPO
/// objective.
pub use async_trait::async_trait;
pub use callbacks::{Callback, Control, EpochLog, ProgressBar};
pub use checkpoint::CHECKPOINT_FILE;
pub use config::{
    ClassWeight, DeviceConfig, EarlyStoppingConfig, MlpConfig, Monitor, ReduceLrConfig, TrainConfig,
};
pub use curves::training_curves_svg;
pub use error::{Error, Result};
pub use trainer::{DataFingerprints, TrainedModel, Trainer};

mlops_core::json_methods!(
    MlpConfig => "MLP config",
    TrainConfig => "training config",
    EpochLog => "epoch log",
    hpo::StudyConfig => "study config",
);
