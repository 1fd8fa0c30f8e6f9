//! The rollout controller: reads the shared rollout state, makes the router follow it,
//! analyzes the step when it is due, writes the decision with a conditional write, and moves
//! the `production` and `canary` aliases by compare-and-swap.
//!
//! The state is kept per alias pair ([`rollout_document`](super::rollout_document)): a
//! controller on `eu-production`/`eu-canary` and one on `production`/`canary` of the same
//! model run separate rollouts. A stored state that does not fit the policy in force (the
//! policy changed mid-rollout) is reconciled ([`RolloutState::reconcile`]) and the
//! reconciliation recorded; a state of another model is an error, never a panic. Every
//! failed tick is counted in `mlops_serve_controller_errors_total` by
//! [`ControllerErrorKind`] (the part that failed), then handled by its
//! [`ErrorKind`](crate::ErrorKind): a retryable failure (a source, store or metrics source that
//! did not answer) keeps the current routes and is retried at the next tick
//! ([`Tick::Retrying`]); a permanent one (the model or a version gone, corrupt data) is the
//! tick's error.
//!
//! A rollout starts when the `canary` alias points at a version other than `production`'s,
//! restarts when `canary` moves mid-rollout, and is aborted (rolled back) when `canary` is
//! cleared. Every replica runs a controller on its own router: all of them follow the stored
//! state; when a step is due each analyzes and tries to write, and exactly one write wins
//! (the others get [`Tick::Lost`] and follow the winner's state).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlops_core::clock::Clock;
use mlops_core::model::{ModelArtifact, Predictor};

use super::metrics_source::{InProcess, MetricsSource};
use super::state::{Decision, DecisionKind, Phase, RolloutState, CANARY, STABLE};
use super::store::{rollout_document, RolloutStore, Stored};
use crate::engine::{CompiledModel, NonFinitePolicy};
use crate::policy::Promotion;
use crate::router::{Router, Routes, ShadowRoute, Variant};
use crate::source::ModelSource;
use crate::step_stats::lock;
use crate::telemetry::{ControllerErrorKind, ServeMetrics};
use crate::{Error, ErrorKind, Result};

/// The alias production traffic is served from.
pub const PRODUCTION_ALIAS: &str = "production";
/// The alias a candidate is rolled out from.
pub const CANARY_ALIAS: &str = "canary";

/// What one [`Controller::tick`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// No rollout: the router serves `production`.
    Idle {
        /// The production version.
        production: u64,
    },
    /// The router was switched to the stored state's routes (a new step began here).
    Followed,
    /// The step bakes until `due_unix`.
    Waiting {
        /// When the step will be analyzed (Unix seconds).
        due_unix: f64,
    },
    /// This controller decided and its write won.
    Acted(Box<Decision>),
    /// Another controller wrote first; this one now follows that state.
    Lost,
    /// A retryable failure ([`ErrorKind::is_retryable`]: a source, store or metrics source
    /// that did not answer): the router keeps serving its current routes, the failure is
    /// counted in `mlops_serve_controller_errors_total` and the next tick tries again. (A
    /// permanent failure is returned as the tick's error.) When the failure was the alias
    /// moves after a decision was written (a promotion or rollback committed to the store),
    /// that decision stands and is in the stored state's history: the next tick finishes
    /// the moves and answers `Followed`, so a caller that must see every decision reads the
    /// state's history, not only `Acted`.
    Retrying {
        /// The part of the tick that failed (the metric's `kind` label).
        part: ControllerErrorKind,
        /// The failure's kind.
        kind: ErrorKind,
        /// The failure's message.
        error: String,
    },
}

/// What a controller is built from.
pub struct ControllerParts {
    /// The model rolled out.
    pub model: String,
    /// The policy, checked ([`PromotionConfig::check`](crate::policy::PromotionConfig::check)).
    pub config: Promotion,
    /// Where the rollout state is shared.
    pub store: Arc<dyn RolloutStore>,
    /// Where models and aliases are.
    pub source: Arc<dyn ModelSource>,
    /// Decision time.
    pub clock: Arc<dyn Clock>,
    /// Promotions, rollbacks and the step gauge.
    pub metrics: ServeMetrics,
    /// How a loaded artifact becomes a predictor: [`compiling`] (the engine) unless a host
    /// wraps or replaces it (a replay's simulated service times, another engine).
    pub loader: Loader,
}

/// Turns version `u64`'s artifact into the predictor the router serves.
pub type Loader = Arc<dyn Fn(u64, &ModelArtifact) -> Result<Arc<dyn Predictor>> + Send + Sync>;

/// The default loader: [`CompiledModel::compile`] with `policy`.
pub fn compiling(policy: NonFinitePolicy) -> Loader {
    Arc::new(move |_, artifact| {
        Ok(Arc::new(CompiledModel::compile(artifact, policy)?) as Arc<dyn Predictor>)
    })
}

/// [`CompiledModel::compile`] with `policy` for a model that cannot score a missing value (an
/// MLP), and with [`NonFinitePolicy::Nan`] for one whose input language has them (a tree model
/// routes NaN as its library does, as does an ONNX graph of tree ensembles:
/// [`ModelArtifact::reads_missing_values`](mlops_core::model::ModelArtifact::reads_missing_values)):
/// what a server that refuses missing values for its MLPs loads a tree model with.
pub fn compiling_by_kind(policy: NonFinitePolicy) -> Loader {
    Arc::new(move |_, artifact| {
        let policy = if artifact.reads_missing_values() {
            NonFinitePolicy::Nan
        } else {
            policy
        };
        Ok(Arc::new(CompiledModel::compile(artifact, policy)?) as Arc<dyn Predictor>)
    })
}

/// A failed step of a tick, with what failed (counted by kind).
struct Failed {
    kind: ControllerErrorKind,
    error: Error,
}

type Step<T> = std::result::Result<T, Failed>;

/// Tags an error with the part of the tick that failed.
trait Tagged<T> {
    fn tagged(self, kind: ControllerErrorKind) -> Step<T>;
}

impl<T> Tagged<T> for Result<T> {
    fn tagged(self, kind: ControllerErrorKind) -> Step<T> {
        self.map_err(|error| Failed { kind, error })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Following {
    Production(u64),
    Rollout(u64),
}

/// The rollout controller (see the module docs).
pub struct Controller {
    parts: ControllerParts,
    observed: Arc<dyn MetricsSource>,
    /// The aliases served and rolled out from: [`PRODUCTION_ALIAS`] and [`CANARY_ALIAS`]
    /// unless [`Controller::with_aliases`] names others.
    aliases: (String, String),
    /// The store document of the alias pair ([`rollout_document`]).
    document: String,
    models: Mutex<HashMap<u64, Arc<dyn Predictor>>>,
    following: Mutex<Option<Following>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("model", &self.parts.model)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller on a checked policy.
    pub fn new(parts: ControllerParts) -> Result<Self> {
        parts.metrics.init_model(&parts.model);
        Ok(Controller {
            parts,
            observed: Arc::new(InProcess),
            aliases: (PRODUCTION_ALIAS.to_string(), CANARY_ALIAS.to_string()),
            document: rollout_document(PRODUCTION_ALIAS, CANARY_ALIAS),
            models: Mutex::new(HashMap::new()),
            following: Mutex::new(None),
        })
    }

    /// Reads step statistics from `source` instead of this replica's router ([`InProcess`]):
    /// a [`PrometheusSource`](super::PrometheusSource) aggregates every replica.
    pub fn with_metrics_source(mut self, source: Arc<dyn MetricsSource>) -> Self {
        self.observed = source;
        self
    }

    /// Serves the version under `production` and rolls out the one under `canary` (for
    /// example `eu-production` and `eu-canary`), with the pair's own rollout state
    /// ([`rollout_document`]); refused when they are the same or empty.
    pub fn with_aliases(mut self, production: &str, canary: &str) -> Result<Self> {
        if production.is_empty() || canary.is_empty() || production == canary {
            return Err(Error::invalid(
                "aliases",
                format!("{production:?}, {canary:?}"),
                "two different, non-empty alias names",
            ));
        }
        self.aliases = (production.to_string(), canary.to_string());
        self.document = rollout_document(production, canary);
        Ok(self)
    }

    /// The policy.
    pub fn config(&self) -> &Promotion {
        &self.parts.config
    }

    /// The store document of this controller's alias pair ([`rollout_document`]).
    pub fn document(&self) -> &str {
        &self.document
    }

    /// The stored rollout of this controller's alias pair, if any.
    pub async fn state(&self) -> Result<Option<Stored>> {
        self.parts
            .store
            .load(&self.parts.model, &self.document)
            .await
    }

    /// The stored rollout, checked to be this model's.
    async fn stored(&self) -> Step<Option<Stored>> {
        let stored = self.state().await.tagged(ControllerErrorKind::Store)?;
        if let Some(st) = &stored {
            if st.state.model != self.parts.model {
                return Err(Failed {
                    kind: ControllerErrorKind::State,
                    error: Error::invalid(
                        format!(
                            "rollout state {:?} of {:?} (write {})",
                            self.document, self.parts.model, st.seq
                        ),
                        format!("a state of model {:?}", st.state.model),
                        format!("a state of model {:?}", self.parts.model),
                    ),
                });
            }
        }
        Ok(stored)
    }

    async fn save(&self, seq: u64, state: &RolloutState, why: &str) -> Step<bool> {
        self.parts
            .store
            .save(&self.parts.model, &self.document, seq, state, why)
            .await
            .tagged(ControllerErrorKind::Store)
    }

    async fn model(&self, version: u64) -> Step<Arc<dyn Predictor>> {
        if let Some(m) = lock(&self.models).get(&version) {
            return Ok(m.clone());
        }
        let artifact = self
            .parts
            .source
            .load(&self.parts.model, version)
            .await
            .tagged(ControllerErrorKind::Source)?;
        let compiled =
            (self.parts.loader)(version, &artifact).tagged(ControllerErrorKind::Model)?;
        lock(&self.models).insert(version, compiled.clone());
        Ok(compiled)
    }

    async fn routes_for(&self, state: &RolloutState) -> Step<Routes> {
        let stable = Variant::new(STABLE, Some(state.stable), self.model(state.stable).await?);
        let canary = || async {
            Ok::<_, Failed>(Variant::new(
                CANARY,
                Some(state.candidate),
                self.model(state.candidate).await?,
            ))
        };
        Ok(match state.phase {
            Phase::Promoted => Routes::single(Variant::new(
                STABLE,
                Some(state.candidate),
                self.model(state.candidate).await?,
            )),
            Phase::RolledBack => Routes::single(stable),
            Phase::Shadow => {
                let percent = self.parts.config.shadow.as_ref().map_or(0.0, |s| s.percent);
                Routes {
                    variants: vec![stable, canary().await?],
                    weights: vec![(STABLE.into(), 100.0)],
                    shadow: Some(ShadowRoute {
                        variant: CANARY.into(),
                        percent,
                    }),
                }
            }
            Phase::Canary | Phase::RollingBack => Routes {
                variants: vec![canary().await?, stable],
                weights: vec![
                    (CANARY.into(), state.canary_percent),
                    (STABLE.into(), 100.0 - state.canary_percent),
                ],
                shadow: None,
            },
        })
    }

    fn step_gauge(&self, state: Option<&RolloutState>) {
        let step = match state {
            None => -1,
            Some(s) => match s.phase {
                Phase::Shadow => -2,
                Phase::Canary | Phase::RollingBack => s.step as i64,
                Phase::Promoted | Phase::RolledBack => -1,
            },
        };
        self.parts.metrics.set_rollout_step(&self.parts.model, step);
    }

    async fn follow(&self, router: &Router, stored: &Stored) -> Step<()> {
        if *lock(&self.following) == Some(Following::Rollout(stored.seq)) {
            return Ok(());
        }
        router
            .install(self.routes_for(&stored.state).await?)
            .tagged(ControllerErrorKind::Routes)?;
        *lock(&self.following) = Some(Following::Rollout(stored.seq));
        self.step_gauge(Some(&stored.state));
        Ok(())
    }

    async fn follow_production(&self, router: &Router, production: u64) -> Step<()> {
        if *lock(&self.following) == Some(Following::Production(production)) {
            return Ok(());
        }
        router
            .install(Routes::single(Variant::new(
                STABLE,
                Some(production),
                self.model(production).await?,
            )))
            .tagged(ControllerErrorKind::Routes)?;
        *lock(&self.following) = Some(Following::Production(production));
        self.step_gauge(None);
        Ok(())
    }

    /// Moves the aliases a terminal state calls for, by compare-and-swap (a swap that loses
    /// because the alias is already where it should be, or was moved by someone else, is
    /// logged and left alone).
    async fn settle_aliases(&self, state: &RolloutState) -> Step<()> {
        let (model, source) = (&self.parts.model, &self.parts.source);
        let why = state
            .last_decision()
            .map_or_else(String::new, |d| d.reason.clone());
        if state.phase == Phase::Promoted
            && !source
                .move_alias(
                    model,
                    &self.aliases.0,
                    Some(state.candidate),
                    Some(state.stable),
                    &why,
                )
                .await
                .tagged(ControllerErrorKind::Source)?
        {
            tracing::warn!(
                model,
                candidate = state.candidate,
                "production alias had moved; left as it is"
            );
        }
        if !source
            .move_alias(model, &self.aliases.1, None, Some(state.candidate), &why)
            .await
            .tagged(ControllerErrorKind::Source)?
        {
            tracing::debug!(
                model,
                "canary alias no longer on the candidate; left as it is"
            );
        }
        Ok(())
    }

    /// Writes `state` after `seq`; on a win, counts, settles aliases of a terminal state and
    /// follows it.
    async fn commit(
        &self,
        router: &Router,
        seq: u64,
        mut state: RolloutState,
        decision: Decision,
    ) -> Step<Tick> {
        if !self.save(seq, &state, &decision.reason).await? {
            tracing::debug!(model = %self.parts.model, "another controller wrote first");
            if let Some(now) = self.stored().await? {
                self.follow(router, &now).await?;
            }
            return Ok(Tick::Lost);
        }
        tracing::info!(model = %self.parts.model, kind = ?decision.kind, reason = %decision.reason, "rollout decision");
        match decision.kind {
            DecisionKind::Promote => self.parts.metrics.record_promotion(&self.parts.model),
            DecisionKind::Rollback => self.parts.metrics.record_rollback(&self.parts.model),
            _ => {}
        }
        let mut seq = seq.saturating_add(1);
        if state.phase.is_terminal() {
            self.settle_aliases(&state).await?;
            state.aliases_settled = true;
            if self.save(seq, &state, "aliases moved").await? {
                seq = seq.saturating_add(1);
            }
        }
        self.follow(router, &Stored { seq, state }).await?;
        Ok(Tick::Acted(Box::new(decision)))
    }

    /// One round: follow the stored rollout, start, restart or abort one from the aliases,
    /// reconcile a stored state with a changed policy, or analyze a due step (see the module
    /// docs). A failure is logged and counted by the part that failed in
    /// `mlops_serve_controller_errors_total`, then branches on its [`ErrorKind`]: a retryable
    /// one ([`ErrorKind::Unavailable`]) is [`Tick::Retrying`] — the router keeps serving its
    /// current routes and the next tick tries again; a permanent one (the model or a version
    /// not found, corrupt data, bad input) is returned as the error, for the operator.
    pub async fn tick(&self, router: &Router) -> Result<Tick> {
        match self.try_tick(router).await {
            Ok(t) => Ok(t),
            Err(Failed { kind: part, error }) => {
                self.parts
                    .metrics
                    .record_controller_error(&self.parts.model, part);
                let kind = error.kind();
                if kind.is_retryable() {
                    tracing::warn!(model = %self.parts.model, part = part.as_str(), kind = kind.as_str(), error = %error, "rollout controller tick failed; serving the current routes, retrying at the next tick");
                    Ok(Tick::Retrying {
                        part,
                        kind,
                        error: error.to_string(),
                    })
                } else {
                    tracing::error!(model = %self.parts.model, part = part.as_str(), kind = kind.as_str(), error = %error, "rollout controller tick failed");
                    Err(error)
                }
            }
        }
    }

    async fn try_tick(&self, router: &Router) -> Step<Tick> {
        let (model, source, config) = (&self.parts.model, &self.parts.source, &self.parts.config);
        let now = self.parts.clock.now();
        let production = source
            .alias(model, &self.aliases.0)
            .await
            .tagged(ControllerErrorKind::Source)?
            .ok_or_else(|| {
                Error::invalid(
                    format!("alias {:?} of {model:?}", self.aliases.0),
                    "unset",
                    "a production version to serve (point the alias at one)",
                )
            })
            .tagged(ControllerErrorKind::Source)?;
        let canary = source
            .alias(model, &self.aliases.1)
            .await
            .tagged(ControllerErrorKind::Source)?;
        let stored = self.stored().await?;
        match stored {
            Some(st) if !st.state.phase.is_terminal() => {
                let mut next = st.state.clone();
                match canary {
                    Some(c) if c != next.candidate && c != production => {
                        let d = next.restart(c, config, now);
                        return self.commit(router, st.seq, next, d).await;
                    }
                    None => {
                        let d = next.abort("the canary alias was cleared", now);
                        return self.commit(router, st.seq, next, d).await;
                    }
                    _ => {}
                }
                if let Some(why) = next.policy_conflict(config) {
                    return Err(Failed {
                        kind: ControllerErrorKind::State,
                        error: Error::invalid(
                            format!("rollout state {:?} of {model:?}", self.document),
                            "a state another replica's policy reconciled from this one",
                            why,
                        ),
                    });
                }
                if let Some(d) = next.reconcile(config, now) {
                    tracing::warn!(model = %model, reason = %d.reason, "stored rollout reconciled with the policy in force");
                    return self.commit(router, st.seq, next, d).await;
                }
                if *lock(&self.following) != Some(Following::Rollout(st.seq)) {
                    self.follow(router, &st).await?;
                    return Ok(Tick::Followed);
                }
                let now_unix = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let snapshot = self
                    .observed
                    .snapshot(model, router, next.step_started_unix, now_unix)
                    .await
                    .tagged(ControllerErrorKind::Metrics)?;
                match next.advance(config, &snapshot, now) {
                    None => Ok(Tick::Waiting {
                        due_unix: next.step_due_unix(config),
                    }),
                    Some(d) => self.commit(router, st.seq, next, d).await,
                }
            }
            Some(st) if !st.state.aliases_settled => {
                self.settle_aliases(&st.state).await?;
                let mut settled = st.state.clone();
                settled.aliases_settled = true;
                let seq = if self.save(st.seq, &settled, "aliases moved").await? {
                    st.seq.saturating_add(1)
                } else {
                    return Ok(Tick::Lost);
                };
                self.follow(
                    router,
                    &Stored {
                        seq,
                        state: settled,
                    },
                )
                .await?;
                Ok(Tick::Followed)
            }
            other => {
                if let Some(c) = canary.filter(|&c| c != production) {
                    let state = RolloutState::start(model, production, c, config, now);
                    let d = state
                        .last_decision()
                        .cloned()
                        .ok_or_else(|| {
                            Error::invalid("new rollout state", "no decision", "its start decision")
                        })
                        .tagged(ControllerErrorKind::State)?;
                    return self
                        .commit(router, other.map_or(0, |s| s.seq), state, d)
                        .await;
                }
                self.follow_production(router, production).await?;
                Ok(Tick::Idle { production })
            }
        }
    }
}
