//! Rollouts: the state machine ([`RolloutState`], decisions as audit records), where its state
//! is shared ([`RolloutStore`]), and the [`Controller`] that drives a [`Router`](crate::router::Router)
//! through it.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use mlops_serve::policy::Promotion;
//! use mlops_serve::rollout::{DecisionKind, Phase, RolloutState};
//! use mlops_serve::step_stats::StepSnapshot;
//!
//! let config = Promotion::default();
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
//! let mut state = RolloutState::start("fraud", 1, 2, &config, t0);
//! assert_eq!((state.phase, state.canary_percent), (Phase::Canary, 10.0));
//! // Before the bake time nothing is decided.
//! let empty = StepSnapshot { variants: vec![] };
//! assert!(state.advance(&config, &empty, t0 + Duration::from_secs(60)).is_none());
//! // After it, a step with no traffic is extended, never promoted.
//! let d = state.advance(&config, &empty, t0 + Duration::from_secs(600)).unwrap();
//! assert_eq!(d.kind, DecisionKind::Extend);
//! assert!(d.reason.contains("no data"), "{}", d.reason);
//! ```

mod controller;
mod metrics_source;
mod state;
pub(crate) mod store;

pub use controller::{
    compiling, compiling_by_kind, Controller, ControllerParts, Loader, Tick, CANARY_ALIAS,
    PRODUCTION_ALIAS,
};
pub use metrics_source::{InProcess, MetricsSource};
#[cfg(feature = "prometheus")]
pub use metrics_source::{PrometheusSource, MAX_LABELED_ROWS};
pub use state::{policy_digest, Decision, DecisionKind, Phase, RolloutState, CANARY, STABLE};
pub use store::{
    rollout_document, MemoryDocuments, MemoryRolloutStore, RolloutStore, Stored, ROLLOUT_DOCUMENT,
};
