//! Running an experiment on live traffic: [`ExperimentController`] makes a router serve the
//! experiment's arms (a variant per arm, sticky by key as a canary is), hands in the router's
//! statistics every [`analysis_seconds`](super::ExperimentConfig::analysis_seconds), and keeps
//! the experiment's evidence and decisions in a shared, conditionally written document
//! ([`ExperimentStore`]: the registry's state document `experiment_NAME`, or memory), so every
//! replica of a server runs one experiment.
//!
//! Each replica adds **its own** window to the shared evidence: it analyzes the stored state
//! plus its window and writes the result with a conditional write; a replica that loses the
//! write reads the winner's state and adds its window to that (up to eight tries, then at the
//! next tick). Every window is evidence from different requests, so windows of several replicas
//! pool as windows of one replica do. A replica that sees new weights from another replica
//! follows them with [`Router::reweight`], which keeps its window's statistics, and hands the
//! window in when it is due.
//!
//! **No request is counted twice.** The record names the last windows it holds (by replica
//! and number); a write whose answer never came (an error, a timeout after the store had
//! written, a tick dropped while it waited) is looked up at the next tick, and its window is
//! never added again: in the record, it is in the evidence; not there, its requests are dropped
//! (logged). Requests are also left out (never double counted) when they are answered between
//! a window's snapshot and the new routes (the time of one store write), and when another
//! replica's decision ends the experiment before this replica's window is handed in.
//!
//! A stored experiment whose configuration differs from this controller's is refused, naming
//! the first field that differs: a changed experiment is a new experiment, under a new name. A
//! stored record that is not whole (decisions of other arms, weights that do not sum to 100,
//! more window ids or decisions than are kept) is corrupt data, never followed. When the
//! experiment is over, its last weights stay (the winner, or the control, at 100%); moving an
//! alias to the winner is the operator's (or the host's) decision.
//!
//! ```
//! use std::sync::Arc;
//! use mlops_core::clock::ManualClock;
//! use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
//! use mlops_serve::experiment::{
//!     Arm, ExperimentConfig, ExperimentController, ExperimentParts, ExperimentTick,
//!     MemoryExperimentStore,
//! };
//! use mlops_serve::router::{Router, RouterOptions};
//! use mlops_serve::source::MemorySource;
//! use mlops_serve::{rollout::compiling, NonFinitePolicy};
//! use ndarray::array;
//!
//! # futures::executor::block_on(async {
//! let source = Arc::new(MemorySource::new());
//! for w in [1.0_f32, 2.0] {
//!     let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//!     source.add("fraud", ModelArtifact::new(spec, vec![(array![[w]], array![0.0_f32])])?);
//! }
//! let experiment = ExperimentConfig {
//!     arms: vec![Arm::new("control", 1, 50.0), Arm::new("b", 2, 50.0)],
//!     ..ExperimentConfig::default()
//! }
//! .check()?;
//! let controller = ExperimentController::new(ExperimentParts {
//!     model: "fraud".into(),
//!     experiment,
//!     store: Arc::new(MemoryExperimentStore::new()),
//!     source,
//!     clock: Arc::new(ManualClock::new(std::time::SystemTime::UNIX_EPOCH)),
//!     metrics: Default::default(),
//!     loader: compiling(NonFinitePolicy::Reject),
//! })?;
//! let router = Router::new("fraud", controller.routes().await?, RouterOptions::default())?;
//! assert_eq!(controller.tick(&router).await?, ExperimentTick::Started);
//! assert_eq!(router.routes().weights.len(), 2);
//! # Ok::<(), mlops_serve::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mlops_core::clock::Clock;
use mlops_core::model::Predictor;
use serde::{Deserialize, Serialize};

use super::{Experiment, ExperimentConfig, ExperimentDecision, ExperimentMetrics, ExperimentState};
use crate::rollout::{Loader, MemoryDocuments};
use crate::router::{Router, Routes, Variant};
use crate::source::ModelSource;
use crate::step_stats::lock;
use crate::{Error, ErrorKind, Result};

/// Decisions a stored experiment keeps (the registry's log keeps every entry, each with the
/// decision's reason).
pub const KEPT_DECISIONS: usize = 20;

/// Window ids a stored experiment remembers, so a replica whose write got no answer can tell
/// whether its window landed (it is never added again either way).
const KEPT_WINDOWS: usize = 64;

/// Tries to add one window before waiting for the next tick.
const WRITE_TRIES: usize = 8;

/// The document of experiment `name`: `experiment_NAME`.
///
/// ```
/// assert_eq!(mlops_serve::experiment::experiment_document("ranker-q3"), "experiment_ranker-q3");
/// ```
pub fn experiment_document(name: &str) -> String {
    format!("experiment_{name}")
}

/// The SHA-256, in hex, of a configuration's JSON: two replicas that read the same file agree.
fn digest(config: &ExperimentConfig) -> Result<String> {
    use sha2::Digest;
    let bytes = serde_json::to_vec(config)
        .map_err(|e| Error::invalid("experiment", e.to_string(), "a config that serializes"))?;
    let d = sha2::Sha256::digest(&bytes);
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}

/// What an experiment's document holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRecord {
    /// The model whose versions the arms serve.
    pub model: String,
    /// The SHA-256 of the configuration's JSON.
    pub config_digest: String,
    /// The configuration it runs.
    pub config: ExperimentConfig,
    /// The evidence and the last [`KEPT_DECISIONS`] decisions.
    pub state: ExperimentState,
    /// The ids of the last windows added (`replica-window`), oldest first.
    pub windows: Vec<String>,
}

/// A stored experiment and its write sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExperiment {
    /// The sequence number of the write (1 for the first); the next write must name it.
    pub seq: u64,
    /// The record.
    pub record: ExperimentRecord,
}

/// Shared, conditional storage of experiments: one document per model and experiment
/// ([`experiment_document`]).
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// The experiment stored as `document` of `model`, if any was ever written.
    async fn load(&self, model: &str, document: &str) -> Result<Option<StoredExperiment>>;

    /// Writes `record` as write `expected_seq + 1` if the stored one is still `expected_seq`
    /// (0: none yet). `Ok(false)` when another writer got there first; nothing changed.
    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        record: &ExperimentRecord,
        why: &str,
    ) -> Result<bool>;
}

/// Experiments kept in memory (one process; tests).
pub type MemoryExperimentStore = MemoryDocuments<ExperimentRecord>;

#[async_trait]
impl ExperimentStore for MemoryExperimentStore {
    async fn load(&self, model: &str, document: &str) -> Result<Option<StoredExperiment>> {
        Ok(self
            .get(model, document)
            .map(|(seq, record)| StoredExperiment { seq, record }))
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        record: &ExperimentRecord,
        _why: &str,
    ) -> Result<bool> {
        self.put(model, document, expected_seq, record)
    }
}

#[cfg(feature = "registry")]
#[async_trait]
impl ExperimentStore for mlops_registry::Registry {
    async fn load(&self, model: &str, document: &str) -> Result<Option<StoredExperiment>> {
        Ok(
            crate::rollout::store::load_document(self, model, document, "experiment record")
                .await?
                .map(|(seq, record)| StoredExperiment { seq, record }),
        )
    }

    async fn save(
        &self,
        model: &str,
        document: &str,
        expected_seq: u64,
        record: &ExperimentRecord,
        why: &str,
    ) -> Result<bool> {
        crate::rollout::store::save_document(
            self,
            model,
            document,
            expected_seq,
            record,
            "experiment record",
            why,
        )
        .await
    }
}

/// What an experiment controller is built from.
pub struct ExperimentParts {
    /// The model whose versions the arms serve.
    pub model: String,
    /// The experiment, checked ([`ExperimentConfig::check`]).
    pub experiment: Experiment,
    /// Where the experiment is shared.
    pub store: Arc<dyn ExperimentStore>,
    /// Where the arms' versions are.
    pub source: Arc<dyn ModelSource>,
    /// Decision time.
    pub clock: Arc<dyn Clock>,
    /// The experiment's series.
    pub metrics: ExperimentMetrics,
    /// How a loaded artifact becomes a predictor ([`compiling`](crate::rollout::compiling)).
    pub loader: Loader,
}

/// What one [`ExperimentController::tick`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentTick {
    /// This controller wrote the experiment's first state; the router serves the arms.
    Started,
    /// The router now serves the stored weights.
    Followed,
    /// This replica's window is handed in at `due_unix`.
    Waiting {
        /// When (Unix seconds).
        due_unix: f64,
    },
    /// This controller added its window and its decision was written.
    Acted(Box<ExperimentDecision>),
    /// Another tick of this controller was running; this one did nothing.
    Busy,
    /// Other replicas kept writing first; this window is handed in at the next tick.
    Lost,
    /// The experiment is over; the router serves its last weights.
    Over,
    /// A retryable failure (a source or store that did not answer): the router keeps its
    /// routes, this replica keeps its window, the next tick tries again. (A permanent failure
    /// is the tick's error.)
    Retrying {
        /// The failure's kind.
        kind: ErrorKind,
        /// The failure's message.
        error: String,
    },
}

/// What this replica follows.
#[derive(Debug, Default)]
struct Following {
    /// The stored write the router follows, once it follows one.
    seq: Option<u64>,
    /// The weights installed.
    weights: Vec<(String, f64)>,
    /// When this replica's window started (Unix seconds).
    window_started: f64,
    /// Windows handed in so far.
    windows: u64,
    /// A window whose write failed without an answer: added or not, the store says.
    unsure: Option<String>,
}

/// Runs an experiment on a router (see the module docs).
pub struct ExperimentController {
    parts: ExperimentParts,
    document: String,
    digest: String,
    replica: String,
    models: Mutex<HashMap<u64, Arc<dyn Predictor>>>,
    /// `None` while a tick has it (ticks of one controller run one at a time).
    following: Mutex<Option<Following>>,
}

/// This controller's [`Following`], taken for one tick and put back when the tick ends (or
/// is dropped half-way).
struct Checkout<'a> {
    slot: &'a Mutex<Option<Following>>,
    f: Following,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        *lock(self.slot) = Some(std::mem::take(&mut self.f));
    }
}

impl std::fmt::Debug for ExperimentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExperimentController")
            .field("model", &self.parts.model)
            .field("document", &self.document)
            .finish_non_exhaustive()
    }
}

/// A random id for this controller's windows.
fn replica_id() -> String {
    format!("{:016x}", crate::step_stats::random_seed())
}

impl ExperimentController {
    /// A controller of `parts.experiment` on `parts.model`; refused when the model name is
    /// not a registry name.
    pub fn new(parts: ExperimentParts) -> Result<Self> {
        if !mlops_core::version_ref::is_plain_name(&parts.model) {
            return Err(Error::invalid(
                "model",
                format!("{:?}", parts.model),
                mlops_core::version_ref::PLAIN_NAME,
            ));
        }
        let digest = digest(&parts.experiment)?;
        Ok(ExperimentController {
            document: experiment_document(&parts.experiment.name),
            digest,
            replica: replica_id(),
            models: Mutex::new(HashMap::new()),
            following: Mutex::new(Some(Following::default())),
            parts,
        })
    }

    /// The store document of the experiment ([`experiment_document`]).
    pub fn document(&self) -> &str {
        &self.document
    }

    /// The stored experiment, if any.
    pub async fn state(&self) -> Result<Option<StoredExperiment>> {
        self.parts
            .store
            .load(&self.parts.model, &self.document)
            .await
    }

    async fn model(&self, version: u64) -> Result<Arc<dyn Predictor>> {
        if let Some(m) = lock(&self.models).get(&version) {
            return Ok(m.clone());
        }
        let artifact = self.parts.source.load(&self.parts.model, version).await?;
        let compiled = (self.parts.loader)(version, &artifact)?;
        lock(&self.models).insert(version, compiled.clone());
        Ok(compiled)
    }

    /// Routes serving every arm with `weights` (each arm's version loaded once).
    async fn routes_with(&self, weights: Vec<(String, f64)>) -> Result<Routes> {
        let mut variants = Vec::with_capacity(self.parts.experiment.arms.len());
        for a in &self.parts.experiment.arms {
            variants.push(Variant::new(
                &a.name,
                Some(a.version),
                self.model(a.version).await?,
            ));
        }
        Ok(Routes {
            variants,
            weights,
            shadow: None,
        })
    }

    /// The routes of the experiment's configured weights: what a server starts with (every
    /// arm's version loaded, so a missing version is an error before it serves).
    pub async fn routes(&self) -> Result<Routes> {
        self.routes_with(self.parts.experiment.initial_weights())
            .await
    }

    /// The stored experiment, checked to be this model's and this configuration's, and
    /// whole: a record another writer tampered with or cut is corrupt data, named with its
    /// document and write, never followed.
    async fn stored(&self) -> Result<Option<StoredExperiment>> {
        let stored = self.state().await?;
        if let Some(st) = &stored {
            let what = format!(
                "experiment {:?} of {:?} (write {})",
                self.document, self.parts.model, st.seq
            );
            let r = &st.record;
            if r.model != self.parts.model {
                return Err(Error::invalid(
                    what,
                    format!("a record of model {:?}", r.model),
                    format!("a record of model {:?}", self.parts.model),
                ));
            }
            if r.config_digest != self.digest {
                if let Some(field) = r.config.differs_from(&self.parts.experiment) {
                    return Err(Error::invalid(
                        what,
                        format!("an experiment started with another {field} (configuration digest {})", r.config_digest),
                        format!(
                            "this configuration (digest {}): a changed experiment is a new one; give it another name",
                            self.digest
                        ),
                    ));
                }
            }
            check_record(&self.parts.experiment, r).map_err(|why| {
                Error::corrupt(format!("{what} is not a whole experiment record: {why}"))
            })?;
        }
        Ok(stored)
    }

    async fn install(
        &self,
        router: &Router,
        f: &mut Following,
        seq: u64,
        weights: Vec<(String, f64)>,
        now: f64,
    ) -> Result<()> {
        router.install(self.routes_with(weights.clone()).await?)?;
        f.seq = Some(seq);
        f.weights = weights;
        f.window_started = now;
        Ok(())
    }

    fn weights_of(&self, record: &ExperimentRecord) -> Vec<(String, f64)> {
        record
            .state
            .last()
            .map_or_else(|| self.parts.experiment.initial_weights(), |d| d.weights())
    }

    /// One round: start the experiment when no one has, follow the stored weights, and hand
    /// in this replica's window when it is due or when another replica's decision changed the
    /// weights (see the module docs). A retryable failure is [`ExperimentTick::Retrying`]; a
    /// permanent one (a stored experiment of another configuration or model, a corrupt record,
    /// an arm's version not found when first loaded) is the error, and the router keeps its
    /// routes.
    pub async fn tick(&self, router: &Router) -> Result<ExperimentTick> {
        match self.try_tick(router).await {
            Ok(t) => Ok(t),
            Err(error) if error.kind().is_retryable() => {
                tracing::warn!(model = %self.parts.model, document = %self.document, error = %error, "experiment tick failed; serving the current routes, retrying at the next tick");
                Ok(ExperimentTick::Retrying {
                    kind: error.kind(),
                    error: error.to_string(),
                })
            }
            Err(error) => {
                tracing::error!(model = %self.parts.model, document = %self.document, error = %error, "experiment tick failed");
                Err(error)
            }
        }
    }

    async fn try_tick(&self, router: &Router) -> Result<ExperimentTick> {
        let (model, experiment) = (&self.parts.model, &self.parts.experiment);
        let now = self.parts.clock.now();
        let t = super::unix(now);
        let Some(taken) = lock(&self.following).take() else {
            return Ok(ExperimentTick::Busy);
        };
        let mut checkout = Checkout {
            slot: &self.following,
            f: taken,
        };
        let f = &mut checkout.f;
        let Some(mut current) = self.stored().await? else {
            let record = ExperimentRecord {
                model: model.clone(),
                config_digest: self.digest.clone(),
                config: (**experiment).clone(),
                state: ExperimentState::start(experiment, now),
                windows: Vec::new(),
            };
            if self
                .parts
                .store
                .save(model, &self.document, 0, &record, "experiment started")
                .await?
            {
                tracing::info!(model = %model, document = %self.document, "experiment started");
                let weights = self.weights_of(&record);
                self.install(router, f, 1, weights, t).await?;
                return Ok(ExperimentTick::Started);
            }
            // Another replica started it first: follow it at the next tick.
            return Ok(ExperimentTick::Lost);
        };
        if let Some(id) = f.unsure.take() {
            // A write that got no answer (an error, or a tick dropped while it waited): in the
            // record or not, its window is never added again. Landed, it is in the evidence;
            // lost, its requests are dropped, which costs evidence but never counts a request
            // twice.
            if current.record.windows.contains(&id) {
                f.windows += 1;
            } else {
                tracing::warn!(model = %model, document = %self.document, window = %id, "a window whose write got no answer is not in the record; its requests are dropped, never counted twice");
            }
            let weights = self.weights_of(&current.record);
            self.install(router, f, current.seq, weights, t).await?;
            return Ok(ExperimentTick::Followed);
        }
        let stored_weights = self.weights_of(&current.record);
        if f.seq.is_none() {
            if let Some(d) = current.record.state.last() {
                self.parts.metrics.show(&experiment.name, d);
            }
            self.install(router, f, current.seq, stored_weights, t)
                .await?;
            return Ok(ExperimentTick::Followed);
        }
        if current.record.state.is_over() {
            if f.weights != stored_weights {
                if let Some(d) = current.record.state.last() {
                    self.parts.metrics.show(&experiment.name, d);
                }
                self.install(router, f, current.seq, stored_weights, t)
                    .await?;
            }
            return Ok(ExperimentTick::Over);
        }
        let due_unix = f.window_started + experiment.analysis_seconds;
        if t < due_unix {
            if f.weights == stored_weights {
                f.seq = Some(current.seq);
                return Ok(ExperimentTick::Waiting { due_unix });
            }
            // Another replica's decision moved the weights: follow them, keeping this
            // replica's window (its statistics go on until it is due).
            if let Some(d) = current.record.state.last() {
                self.parts.metrics.show(&experiment.name, d);
            }
            router.reweight(stored_weights.clone())?;
            f.weights = stored_weights;
            f.seq = Some(current.seq);
            return Ok(ExperimentTick::Followed);
        }
        // Hand in this replica's window: on the stored state, and again on the winner's if
        // another replica writes first.
        let window = router.snapshot();
        let id = format!("{}-{}", self.replica, f.windows);
        for _ in 0..WRITE_TRIES {
            let mut record = current.record.clone();
            let Some(decision) = record.state.analyze(experiment, &window, now)? else {
                // Over: nothing more to add.
                let weights = self.weights_of(&current.record);
                self.install(router, f, current.seq, weights, t).await?;
                return Ok(ExperimentTick::Over);
            };
            record.state.keep_last_decisions(KEPT_DECISIONS);
            record.windows.push(id.clone());
            let excess = record.windows.len().saturating_sub(KEPT_WINDOWS);
            record.windows.drain(..excess);
            // Until the store answers, this window may be in the record: a tick dropped here
            // (or an error) leaves it unsure, and it is never added again.
            f.unsure = Some(id.clone());
            let saved = self
                .parts
                .store
                .save(
                    model,
                    &self.document,
                    current.seq,
                    &record,
                    &decision.reason,
                )
                .await?;
            f.unsure = None;
            if saved {
                tracing::info!(model = %model, document = %self.document, outcome = decision.outcome.as_str(), reason = %decision.reason, "experiment decision");
                self.parts.metrics.record(&experiment.name, &decision);
                f.windows += 1;
                // The window is in the record whatever happens next: if the new routes fail,
                // the next tick finds it there and starts a new window instead.
                f.unsure = Some(id.clone());
                self.install(
                    router,
                    f,
                    current.seq.saturating_add(1),
                    decision.weights(),
                    t,
                )
                .await?;
                f.unsure = None;
                return Ok(ExperimentTick::Acted(Box::new(decision)));
            }
            current = self.stored().await?.ok_or_else(|| {
                Error::corrupt(format!(
                    "experiment {:?} of {model:?} vanished after write {}",
                    self.document, current.seq
                ))
            })?;
            if current.record.windows.contains(&id) {
                // An earlier write of this window landed late: it is in the evidence.
                f.windows += 1;
                let weights = self.weights_of(&current.record);
                self.install(router, f, current.seq, weights, t).await?;
                return Ok(ExperimentTick::Followed);
            }
            if current.record.state.is_over() {
                let weights = self.weights_of(&current.record);
                self.install(router, f, current.seq, weights, t).await?;
                return Ok(ExperimentTick::Over);
            }
        }
        tracing::debug!(model = %model, document = %self.document, "other replicas kept writing first; the window waits for the next tick");
        Ok(ExperimentTick::Lost)
    }
}

/// Why `record` is not a whole record of `experiment`, if it is not.
fn check_record(
    experiment: &Experiment,
    record: &ExperimentRecord,
) -> std::result::Result<(), String> {
    if record.windows.len() > KEPT_WINDOWS {
        return Err(format!(
            "{} window ids, at most {KEPT_WINDOWS} kept",
            record.windows.len()
        ));
    }
    let names: Vec<&str> = record.state.arms.iter().map(|a| a.name.as_str()).collect();
    let arm_names: Vec<&str> = experiment.arms.iter().map(|a| a.name.as_str()).collect();
    if names != arm_names {
        return Err(format!(
            "evidence of the arms {names:?}, not the experiment's {arm_names:?}"
        ));
    }
    if record.state.decisions.len() > KEPT_DECISIONS {
        return Err(format!(
            "{} decisions, at most {KEPT_DECISIONS} kept",
            record.state.decisions.len()
        ));
    }
    let expected: Vec<(&str, u64)> = experiment
        .arms
        .iter()
        .map(|a| (a.name.as_str(), a.version))
        .collect();
    for (i, d) in record.state.decisions.iter().enumerate() {
        let arms: Vec<(&str, u64)> = d
            .arms
            .iter()
            .map(|a| (a.name.as_str(), a.version))
            .collect();
        if arms != expected {
            return Err(format!(
                "decisions[{i}] has the arms {arms:?}, not the experiment's {expected:?}"
            ));
        }
        let sum: f64 = d.arms.iter().map(|a| a.percent).sum();
        if d.arms
            .iter()
            .any(|a| !(a.percent.is_finite() && (0.0..=100.0).contains(&a.percent)))
            || (sum - 100.0).abs() > 1e-6
        {
            return Err(format!(
                "decisions[{i}] splits traffic as {:?}, not percents in [0, 100] summing to 100",
                d.weights()
            ));
        }
    }
    Ok(())
}
