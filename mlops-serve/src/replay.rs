//! Replaying labeled traffic through a [`Router`] and its rollout [`Controller`] on simulated
//! time: the wall clock is a [`ManualClock`] (bake times pass in microseconds), latency a
//! [`ManualTicker`] advanced by each model's simulated service time
//! ([`SimulatedService`]), and labels come back a fixed number of requests late. Used by
//! `examples/canary.rs`, the tests, and any host that wants to try a promotion policy on its
//! own data before trusting it with traffic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mlops_core::clock::{Clock, ManualClock};
use mlops_core::model::Predictor;
use mlops_core::Dataset;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::rollout::{Controller, RolloutState, Tick};
use crate::router::{Request, Router};
use crate::ticker::ManualTicker;
use crate::{Error, Result};

/// A simulated service time and failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProfile {
    /// Median latency in milliseconds, > 0.
    pub median_ms: f64,
    /// Log-normal shape (σ of the log), ≥ 0: p99 = median × e^(2.326 σ).
    pub sigma: f64,
    /// Share of calls that fail, in [0, 1].
    pub error_rate: f64,
    /// Seed of the draws (a call's draw depends on the seed and the call's number only).
    pub seed: u64,
}

impl Default for ServiceProfile {
    fn default() -> Self {
        ServiceProfile {
            median_ms: 2.0,
            sigma: 0.25,
            error_rate: 0.0,
            seed: 0,
        }
    }
}

impl ServiceProfile {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.median_ms.is_finite() && self.median_ms > 0.0) {
            return Err(Error::invalid(
                "ServiceProfile.median_ms",
                self.median_ms,
                "milliseconds > 0",
            ));
        }
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(Error::invalid(
                "ServiceProfile.sigma",
                self.sigma,
                "a shape >= 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(Error::invalid(
                "ServiceProfile.error_rate",
                self.error_rate,
                "a share in [0, 1]",
            ));
        }
        Ok(())
    }
}

/// A predictor that takes simulated time: each call advances the shared [`ManualTicker`] by a
/// log-normal service time and fails with the profile's error rate, deterministically for a
/// seed.
pub struct SimulatedService {
    inner: Arc<dyn Predictor>,
    ticker: Arc<ManualTicker>,
    profile: ServiceProfile,
    calls: AtomicU64,
}

impl std::fmt::Debug for SimulatedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedService")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SimulatedService {
    /// `inner` with `profile`'s service times on `ticker`.
    pub fn new(
        inner: Arc<dyn Predictor>,
        ticker: Arc<ManualTicker>,
        profile: ServiceProfile,
    ) -> Result<Self> {
        profile.validate()?;
        Ok(SimulatedService {
            inner,
            ticker,
            profile,
            calls: AtomicU64::new(0),
        })
    }

    fn uniform(&self, call: u64, stream: u64) -> f64 {
        let h = xxh3_64_with_seed(
            &call.to_le_bytes(),
            self.profile.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        // 53 bits into (0, 1).
        ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

impl Predictor for SimulatedService {
    fn feature_names(&self) -> &[String] {
        self.inner.feature_names()
    }

    fn threshold(&self) -> f32 {
        self.inner.threshold()
    }

    fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let z = Normal::standard().inverse_cdf(self.uniform(call, 1));
        let ms = self.profile.median_ms * (self.profile.sigma * z).exp();
        self.ticker.advance_ns((ms * 1e6) as u64);
        if self.uniform(call, 2) < self.profile.error_rate {
            return Err(Error::Source {
                message: format!("simulated failure of call {call}"),
            });
        }
        self.inner.predict_proba_into(x, out)
    }
}

/// How traffic is replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayOptions {
    /// Requests per simulated second (one row each), > 0.
    pub requests_per_second: f64,
    /// Distinct sticky keys (users) the requests cycle through, ≥ 1.
    pub users: usize,
    /// Labels of a request are posted this many requests later.
    pub label_delay_requests: usize,
    /// Simulated seconds between controller ticks, > 0.
    pub tick_seconds: f64,
    /// The replay ends after this many simulated seconds even if the rollout has not, > 0.
    pub max_seconds: f64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            requests_per_second: 50.0,
            users: 5_000,
            label_delay_requests: 500,
            tick_seconds: 30.0,
            max_seconds: 6.0 * 3600.0,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Simulated seconds elapsed.
    pub simulated_seconds: f64,
    /// The rollout at the end (`None`: none ever started).
    pub rollout: Option<RolloutState>,
}

/// Replays `data` (features and labels; rows cycled in order) through `router`, ticking
/// `controller` every `tick_seconds` of `clock`, until the rollout ends and its aliases are
/// moved, or `max_seconds` pass.
pub async fn replay(
    router: &Router,
    controller: &Controller,
    clock: &ManualClock,
    data: &Dataset,
    options: &ReplayOptions,
) -> Result<ReplayReport> {
    if !(options.requests_per_second.is_finite() && options.requests_per_second > 0.0) {
        return Err(Error::invalid(
            "ReplayOptions.requests_per_second",
            options.requests_per_second,
            "a rate > 0",
        ));
    }
    if !(options.tick_seconds.is_finite() && options.tick_seconds > 0.0) {
        return Err(Error::invalid(
            "ReplayOptions.tick_seconds",
            options.tick_seconds,
            "seconds > 0",
        ));
    }
    if !(options.max_seconds.is_finite() && options.max_seconds > 0.0) {
        return Err(Error::invalid(
            "ReplayOptions.max_seconds",
            options.max_seconds,
            "seconds > 0",
        ));
    }
    if options.users == 0 {
        return Err(Error::invalid("ReplayOptions.users", 0, "at least 1"));
    }
    let labels = data
        .labels()
        .ok_or_else(|| Error::invalid("replay data", "no label column", "labeled rows"))?;
    if data.n_rows() == 0 {
        return Err(Error::invalid("replay data", "0 rows", "at least one row"));
    }
    let gap = Duration::from_secs_f64(1.0 / options.requests_per_second);
    let start = clock.now();
    let elapsed = || {
        clock
            .now()
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let mut waiting: VecDeque<(String, f64)> = VecDeque::new();
    let mut out = [0.0_f32];
    let (mut requests, mut failed) = (0u64, 0u64);
    let mut next_tick = 0.0;
    let features = data.features();
    loop {
        let now = elapsed();
        if now >= next_tick {
            next_tick = now + options.tick_seconds;
            let tick = controller.tick(router).await?;
            if matches!(
                tick,
                Tick::Idle { .. } | Tick::Followed | Tick::Acted(_) | Tick::Lost
            ) {
                if let Some(s) = controller.state().await? {
                    if s.state.phase.is_terminal() && s.state.aliases_settled {
                        return Ok(ReplayReport {
                            requests,
                            failed,
                            simulated_seconds: now,
                            rollout: Some(s.state),
                        });
                    }
                }
            }
            if now >= options.max_seconds {
                return Ok(ReplayReport {
                    requests,
                    failed,
                    simulated_seconds: now,
                    rollout: controller.state().await?.map(|s| s.state),
                });
            }
        }
        let row = (requests % data.n_rows() as u64) as usize;
        let id = format!("r{requests}");
        let key = format!("user-{}", requests % options.users as u64);
        let request = Request {
            key: Some(&key),
            force: None,
            request_id: Some(&id),
        };
        let x = features.slice(ndarray::s![row..row + 1, ..]);
        match router.route(&request, x, &mut out) {
            Ok(_) => waiting.push_back((id, f64::from(labels[row]))),
            Err(_) => failed += 1,
        }
        requests += 1;
        while waiting.len() > options.label_delay_requests {
            if let Some((id, label)) = waiting.pop_front() {
                router.feedback(&id, &[label])?;
            }
        }
        clock.advance(gap);
    }
}

/// A stable and a candidate model behind a router, the rollout controller moving the candidate
/// through a promotion policy, all on simulated time: what `examples/canary.rs`, the Python
/// bindings' `simulate_rollout` and a host trying a policy on its own data build.
///
/// ```
/// use mlops_serve::metrics::ServeMetrics;
/// use mlops_serve::policy::PromotionConfig;
/// use mlops_serve::replay::{ReplayOptions, ServiceProfile, Simulation, Synthetic};
/// use mlops_serve::rollout::Phase;
///
/// let world = Synthetic::new(4, 1);
/// let sim = futures::executor::block_on(Simulation::new(
///     world.model(0.5, 2)?,
///     world.model(1.0, 3)?,
///     [ServiceProfile::default(), ServiceProfile { seed: 1, ..ServiceProfile::default() }],
///     PromotionConfig::default(),
///     ServeMetrics::unregistered(),
/// ))?;
/// let report = futures::executor::block_on(sim.replay(&world.traffic(30_000, 4)?, &ReplayOptions::default()))?;
/// assert_eq!(report.rollout.unwrap().phase, Phase::Promoted);
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub struct Simulation {
    /// The two versions (1 stable, 2 the candidate) and their aliases.
    pub source: Arc<crate::source::MemorySource>,
    /// The router, serving version 1 until the controller installs the rollout's routes.
    pub router: Router,
    /// The rollout controller.
    pub controller: Controller,
    /// Simulated wall time.
    pub clock: Arc<ManualClock>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation").finish_non_exhaustive()
    }
}

/// The model name a [`Simulation`] registers its versions under.
pub const SIMULATED_MODEL: &str = "model";

impl Simulation {
    /// `stable` (version 1, `production`) and `candidate` (version 2, `canary`), each taking
    /// its [`ServiceProfile`]'s simulated time, under `config`; the clock starts at
    /// 2026-01-01T00:00:00Z.
    pub async fn new(
        stable: mlops_core::model::ModelArtifact,
        candidate: mlops_core::model::ModelArtifact,
        profiles: [ServiceProfile; 2],
        config: crate::policy::PromotionConfig,
        metrics: crate::metrics::ServeMetrics,
    ) -> Result<Self> {
        use crate::source::ModelSource;
        for p in &profiles {
            p.validate()?;
        }
        let source = Arc::new(crate::source::MemorySource::new());
        source.add(SIMULATED_MODEL, stable);
        source.add(SIMULATED_MODEL, candidate);
        let clock = Arc::new(ManualClock::new(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        ));
        let ticker = Arc::new(ManualTicker::default());
        let compile = crate::rollout::compiling(crate::NonFinitePolicy::Reject);
        let simulated = {
            let ticker = ticker.clone();
            move |version: u64,
                  artifact: &mlops_core::model::ModelArtifact|
                  -> Result<Arc<dyn Predictor>> {
                let profile = profiles[usize::from(version != 1)];
                Ok(Arc::new(SimulatedService::new(
                    compile(version, artifact)?,
                    ticker.clone(),
                    profile,
                )?))
            }
        };
        let first = simulated(1, &source.load(SIMULATED_MODEL, 1).await?)?;
        let router = Router::new(
            SIMULATED_MODEL,
            crate::router::Routes::single(crate::router::Variant::new("stable", Some(1), first)),
            crate::router::RouterOptions {
                metrics: metrics.clone(),
                clock: clock.clone(),
                ticker,
                ..crate::router::RouterOptions::default()
            },
        )?;
        let controller = Controller::new(crate::rollout::ControllerParts {
            model: SIMULATED_MODEL.into(),
            config,
            store: Arc::new(crate::rollout::MemoryRolloutStore::new()),
            source: source.clone(),
            clock: clock.clone(),
            metrics,
            loader: Arc::new(simulated),
        })?;
        source
            .move_alias(SIMULATED_MODEL, "production", Some(1), None, "stable")
            .await?;
        source
            .move_alias(SIMULATED_MODEL, "canary", Some(2), None, "the candidate")
            .await?;
        Ok(Simulation {
            source,
            router,
            controller,
            clock,
        })
    }

    /// Replays `data` (see [`replay`]).
    pub async fn replay(&self, data: &Dataset, options: &ReplayOptions) -> Result<ReplayReport> {
        replay(&self.router, &self.controller, &self.clock, data, options).await
    }

    /// No traffic at all: the controller ticks every `tick_seconds` until the rollout ends or
    /// `max_seconds` pass (what a policy does on no evidence).
    pub async fn idle(&self, tick_seconds: f64, max_seconds: f64) -> Result<ReplayReport> {
        if !(tick_seconds.is_finite() && tick_seconds > 0.0) {
            return Err(Error::invalid("tick_seconds", tick_seconds, "seconds > 0"));
        }
        let mut seconds = 0.0;
        while seconds < max_seconds {
            self.controller.tick(&self.router).await?;
            if let Some(s) = self.controller.state().await? {
                if s.state.phase.is_terminal() && s.state.aliases_settled {
                    break;
                }
            }
            self.clock.advance(Duration::from_secs_f64(tick_seconds));
            seconds += tick_seconds;
        }
        Ok(ReplayReport {
            requests: 0,
            failed: 0,
            simulated_seconds: seconds,
            rollout: self.controller.state().await?.map(|s| s.state),
        })
    }
}

/// Labeled traffic from a known logistic truth, and models of a chosen quality: the built-in
/// data of `examples/canary.rs` and the tests.
///
/// ```
/// use mlops_serve::replay::Synthetic;
///
/// let world = Synthetic::new(6, 7);
/// let data = world.traffic(1_000, 1)?;
/// assert_eq!((data.n_rows(), data.n_features()), (1_000, 6));
/// let good = world.model(1.0, 2)?; // the truth itself
/// let poor = world.model(0.3, 2)?; // mostly noise
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// The true coefficients.
    pub weights: Vec<f32>,
    /// The true intercept (about 20% positives).
    pub bias: f32,
}

impl Synthetic {
    /// A world of `n_features` standard-normal features with seeded coefficients.
    pub fn new(n_features: usize, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let weights = (0..n_features)
            .map(|_| {
                let w: f32 = rng.random_range(0.4..1.2);
                if rng.random_bool(0.5) {
                    w
                } else {
                    -w
                }
            })
            .collect();
        Synthetic {
            weights,
            bias: -1.8,
        }
    }

    /// `rows` labeled rows (features `x0..`, label `label`), seeded.
    pub fn traffic(&self, rows: usize, seed: u64) -> Result<Dataset> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let d = self.weights.len();
        let normal = Normal::standard();
        let x = ndarray::Array2::from_shape_fn((rows, d), |_| {
            normal.inverse_cdf(rng.random_range(1e-12..1.0 - 1e-12)) as f32
        });
        let labels = ndarray::Array1::from_shape_fn(rows, |i| {
            let logit: f32 = self.bias
                + x.row(i)
                    .iter()
                    .zip(&self.weights)
                    .map(|(a, w)| a * w)
                    .sum::<f32>();
            let p = 1.0 / (1.0 + (-logit).exp());
            f32::from(u8::from(rng.random::<f32>() < p))
        });
        Dataset::new(x, (0..d).map(|i| format!("x{i}")).collect())?.with_labels(labels, "label")
    }

    /// A logistic model whose coefficients are `quality` × the truth + (1 − quality) × seeded
    /// noise of the same scale: 1 is the truth, 0 knows nothing.
    pub fn model(&self, quality: f32, seed: u64) -> Result<mlops_core::model::ModelArtifact> {
        use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
        use rand::{Rng, SeedableRng};
        if !(0.0..=1.0).contains(&quality) {
            return Err(Error::invalid("quality", quality, "a share in [0, 1]"));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let d = self.weights.len();
        let w = ndarray::Array2::from_shape_fn((1, d), |(_, j)| {
            quality * self.weights[j] + (1.0 - quality) * rng.random_range(-1.0..1.0)
        });
        let spec = ModelSpec::new(
            (0..d).map(|i| format!("x{i}")).collect(),
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        ModelArtifact::new(spec, vec![(w, ndarray::array![self.bias])])
    }
}
