//! A simulated serving world for the rollout tests: a memory model source with stable (v1)
//! and candidate (v2) versions of a synthetic logistic truth, a shared memory rollout store,
//! a manual clock and ticker, and per-version simulated service profiles.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use mlops_core::clock::ManualClock;
use mlops_core::model::{ModelArtifact, Predictor};
use mlops_core::Dataset;
use mlops_serve::policy::PromotionConfig;
use mlops_serve::replay::{ServiceProfile, SimulatedService, Synthetic};
use mlops_serve::rollout::{
    compiling, Controller, ControllerParts, MemoryRolloutStore, RolloutStore,
};
use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
use mlops_serve::source::{MemorySource, ModelSource};
use mlops_serve::telemetry::ServeMetrics;
use mlops_serve::ticker::ManualTicker;
use mlops_serve::{NonFinitePolicy, Result};

pub const MODEL: &str = "fraud";

/// One feature `x` scored `sigmoid(w * x)`, compiled: each weight makes a model's outputs
/// recognizable.
pub fn sigmoid_model(w: f32) -> Arc<dyn Predictor> {
    use mlops_core::model::{Activation, LayerSpec, ModelSpec};
    let spec = ModelSpec::new(
        vec!["x".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    let a = ModelArtifact::new(spec, vec![(ndarray::array![[w]], ndarray::array![0.0_f32])])
        .expect("a valid one-weight network");
    Arc::new(
        mlops_serve::CompiledModel::compile(&a, NonFinitePolicy::Reject)
            .expect("a one-weight network compiles"),
    )
}

pub struct World {
    pub truth: Synthetic,
    pub source: Arc<MemorySource>,
    pub store: Arc<dyn RolloutStore>,
    pub clock: Arc<ManualClock>,
    pub ticker: Arc<ManualTicker>,
    pub metrics: ServeMetrics,
    pub registry: prometheus_client::registry::Registry,
    pub profiles: HashMap<u64, ServiceProfile>,
}

/// Stable v1 of `stable_quality`, candidate v2 of `canary_quality`; production → 1.
pub fn world(stable_quality: f32, canary_quality: f32) -> World {
    let truth = Synthetic::new(6, 11);
    let source = Arc::new(MemorySource::new());
    let v1 = source.add(MODEL, truth.model(stable_quality, 1).unwrap());
    let v2 = source.add(MODEL, truth.model(canary_quality, 2).unwrap());
    assert_eq!((v1, v2), (1, 2));
    futures::executor::block_on(source.move_alias(MODEL, "production", Some(1), None, "first"))
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    World {
        truth,
        source,
        store: Arc::new(MemoryRolloutStore::new()),
        clock: Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        )),
        ticker: Arc::new(ManualTicker::default()),
        metrics,
        registry,
        profiles: HashMap::new(),
    }
}

impl World {
    pub fn traffic(&self, rows: usize) -> Dataset {
        self.truth.traffic(rows, 99).unwrap()
    }

    pub fn start_canary(&self, version: u64) {
        futures::executor::block_on(self.source.move_alias(
            MODEL,
            "canary",
            Some(version),
            None,
            "candidate",
        ))
        .unwrap();
    }

    pub fn router(&self) -> Router {
        let stable: Arc<dyn Predictor> = Arc::new(
            mlops_serve::CompiledModel::compile(
                &futures::executor::block_on(self.source.load(MODEL, 1)).unwrap(),
                NonFinitePolicy::Reject,
            )
            .unwrap(),
        );
        Router::new(
            MODEL,
            Routes::single(Variant::new("stable", Some(1), stable)),
            RouterOptions {
                metrics: self.metrics.clone(),
                clock: self.clock.clone(),
                ticker: self.ticker.clone(),
                ..RouterOptions::default()
            },
        )
        .unwrap()
    }

    pub fn controller(&self, config: PromotionConfig) -> Controller {
        self.controller_on(config, self.source.clone(), self.store.clone())
    }

    /// A controller on another source and store (a registry), with this world's clock,
    /// ticker, metrics and service profiles.
    pub fn controller_on(
        &self,
        config: PromotionConfig,
        source: Arc<dyn ModelSource>,
        store: Arc<dyn RolloutStore>,
    ) -> Controller {
        let compile = compiling(NonFinitePolicy::Reject);
        let ticker = self.ticker.clone();
        let profiles = self.profiles.clone();
        Controller::new(ControllerParts {
            model: MODEL.into(),
            config: config.check().unwrap(),
            store,
            source,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            loader: Arc::new(move |version, artifact| {
                let inner = compile(version, artifact)?;
                let profile = profiles.get(&version).copied().unwrap_or(ServiceProfile {
                    seed: version,
                    ..ServiceProfile::default()
                });
                Ok(
                    Arc::new(SimulatedService::new(inner, ticker.clone(), profile)?)
                        as Arc<dyn Predictor>,
                )
            }),
        })
        .unwrap()
    }

    pub fn exposition(&self) -> String {
        mlops_core::exposition::classic_text(&self.registry).unwrap()
    }
}

/// Starts `app` through `serve_with` on a local port with `config`'s bounds (connections,
/// header timeout, drain); the sender stops it, the handle returns what `serve_with` did.
#[cfg(feature = "http")]
pub async fn start_server(
    app: axum::Router,
    config: mlops_serve::http::ServerConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        mlops_serve::http::serve_with(listener, app, &config.check().unwrap(), async {
            let _ = stopped.await;
        })
        .await
    });
    (addr, stop, server)
}

/// How a [`FailingSource`] fails while set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceFailure {
    /// It answers (the memory source).
    None,
    /// It does not answer, as an unreachable registry (retryable).
    Unavailable,
    /// The model is gone, as from a registry it was deleted from (permanent).
    NotFound,
}

/// A memory source that fails on demand: every call, or only alias moves.
pub struct FailingSource {
    pub inner: Arc<MemorySource>,
    failure: Mutex<SourceFailure>,
    moves_only: bool,
}

impl FailingSource {
    /// Fails every call while a failure is set.
    pub fn new(inner: Arc<MemorySource>) -> Self {
        FailingSource {
            inner,
            failure: Mutex::new(SourceFailure::None),
            moves_only: false,
        }
    }

    /// Fails only `move_alias` while a failure is set.
    pub fn moves_only(inner: Arc<MemorySource>) -> Self {
        FailingSource {
            moves_only: true,
            ..FailingSource::new(inner)
        }
    }

    pub fn set(&self, failure: SourceFailure) {
        *self.failure.lock().unwrap() = failure;
    }

    fn check(&self, model: &str, moving: bool) -> Result<()> {
        if self.moves_only && !moving {
            return Ok(());
        }
        match *self.failure.lock().unwrap() {
            SourceFailure::None => Ok(()),
            SourceFailure::Unavailable => Err(mlops_serve::Error::unavailable(
                "store unreachable: connection refused",
            )),
            SourceFailure::NotFound => Err(mlops_serve::Error::not_found(format!(
                "model {model:?} (deleted from the registry)"
            ))),
        }
    }
}

#[async_trait]
impl ModelSource for FailingSource {
    async fn alias(&self, model: &str, alias: &str) -> Result<Option<u64>> {
        self.check(model, false)?;
        self.inner.alias(model, alias).await
    }
    async fn load(&self, model: &str, version: u64) -> Result<ModelArtifact> {
        self.check(model, false)?;
        self.inner.load(model, version).await
    }
    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        to: Option<u64>,
        expected: Option<u64>,
        why: &str,
    ) -> Result<bool> {
        self.check(model, true)?;
        self.inner.move_alias(model, alias, to, expected, why).await
    }
}
