//! # mlops-train
//!
//! Training for the mlops loop. This crate is empty today; it will own the Candle MLP trainer
//! (CPU by default, CUDA behind the `cuda` feature) that exports `mlops_core::model` artifacts,
//! training callbacks (early stopping, learning-rate schedules, checkpoints), experiment
//! tracking (local object storage and MLflow) and hyperparameter search (random, grid, TPE,
//! Gaussian-process Bayesian optimisation; median and ASHA early stopping).
