//! Hyperparameter search: a [`SearchSpace`] (uniform, log-uniform, int, categorical,
//! conditional), samplers (random, grid, TPE with Optuna's defaults and the constant liar,
//! Gaussian-process Bayesian optimization with expected improvement),
//! pruners (median, ASHA, Hyperband) and a [`Study`] shaped like Katib's Experiment that runs
//! trials on threads, deterministically for a seed, and resumes from its journal; one study
//! can be shared by many workers through a journal on an object store, in Optuna's format,
//! with ask / tell / enqueue_trial ([`Study::with_shared_journal`]).
//!
//! ```
//! use mlops_train::hpo::{Direction, Distribution, ObjectiveConfig, Param, SearchSpace, Study, StudyConfig};
//!
//! let space = SearchSpace::new(vec![
//!     Param { name: "x".into(), distribution: Distribution::Uniform { low: -5.0, high: 5.0 }, condition: None },
//! ])?;
//! let config = StudyConfig {
//!     name: "quadratic".into(),
//!     objective: ObjectiveConfig { direction: Direction::Minimize, goal: None, objective_metric_name: "loss".into() },
//!     parallel_trial_count: 2,
//!     max_trial_count: 30,
//!     max_failed_trial_count: 0,
//!     seed: 1,
//!     sampler: Default::default(),
//!     pruner: Default::default(),
//! };
//! let mut study = Study::new(config, space)?;
//! study.optimize(|t| Ok((t.float("x")? - 1.0).powi(2)), &mut |_| {})?;
//! assert!(study.best_trial().unwrap().value.unwrap() < 0.5);
//! # Ok::<(), mlops_train::Error>(())
//! ```

pub mod benchmarks;
mod gp;
mod journal;
mod pruner;
mod sampler;
mod shared;
mod space;
mod study;

pub use journal::JournalConfig;
pub use pruner::PrunerConfig;
pub use sampler::SamplerConfig;
pub use shared::{Ask, AskedTrial, Outcome};
pub use space::{Assignment, Condition, Distribution, Param, ParamValue, SearchSpace};
pub use study::{
    Direction, ObjectiveConfig, StopReason, Study, StudyConfig, Trial, TrialRecord, TrialState,
};
