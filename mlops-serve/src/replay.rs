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
use mlops_core::duration::{seconds, SecondsRange};
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

/// The longest median service time of a [`ServiceProfile`]: a minute.
pub const MAX_MEDIAN_MS: f64 = 60_000.0;
/// The longest simulated service time of one call: an hour (a draw beyond is cut to it).
pub const MAX_SERVICE_MS: f64 = 3_600_000.0;
/// The widest log-normal shape of a [`ServiceProfile`] (p99 = median × e^(2.326 σ): about
/// 10^5 times the median at 5).
pub const MAX_SIGMA: f64 = 5.0;

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
        if !(self.median_ms > 0.0 && self.median_ms <= MAX_MEDIAN_MS) {
            return Err(Error::invalid(
                "ServiceProfile.median_ms",
                self.median_ms,
                format!("milliseconds > 0 and at most {MAX_MEDIAN_MS}"),
            ));
        }
        if !(self.sigma >= 0.0 && self.sigma <= MAX_SIGMA) {
            return Err(Error::invalid(
                "ServiceProfile.sigma",
                self.sigma,
                format!("a shape from 0 to {MAX_SIGMA}"),
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

    fn background(&self) -> Option<&mlops_core::model::Background> {
        self.inner.background()
    }

    fn predict_proba_into(
        &self,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> mlops_core::Result<()> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let z = Normal::standard().inverse_cdf(self.uniform(call, 1));
        // At most an hour a call: e^(5 z) of a minute overflows a u64 of nanoseconds.
        let ms = (self.profile.median_ms * (self.profile.sigma * z).exp()).min(MAX_SERVICE_MS);
        if !self.ticker.advance_ns((ms * 1e6) as u64) {
            return Err(mlops_core::Error::Predictor {
                message: format!(
                    "simulated time ran out at call {call} (u64 nanoseconds): later latencies would read 0"
                ),
            });
        }
        if self.uniform(call, 2) < self.profile.error_rate {
            return Err(mlops_core::Error::Predictor {
                message: format!("simulated failure of call {call}"),
            });
        }
        self.inner.predict_proba_into(x, out)
    }
}

/// The highest rate of a replay, requests per simulated second: one request a simulated
/// microsecond, so simulated time always advances.
pub const MAX_REQUESTS_PER_SECOND: f64 = 1e6;
/// The lowest rate of a replay: one request a simulated hour.
pub const MIN_REQUESTS_PER_SECOND: f64 = 1.0 / 3600.0;
/// The most requests one replay may send (`requests_per_second` × `max_seconds`).
pub const MAX_REPLAY_REQUESTS: u64 = 50_000_000;
/// The most controller ticks one replay or [`Simulation::idle`] may take
/// (`max_seconds` / `tick_seconds`).
pub const MAX_REPLAY_TICKS: u64 = 1_000_000;
/// The longest simulated run: a year.
pub const MAX_REPLAY_SECONDS: f64 = 366.0 * 86_400.0;
/// The longest label delay, in requests: the replay keeps each request's id and label until
/// its label is due. Measured (Python `simulate_rollout`, 3 million requests): peak RSS 51 MB
/// with a delay of 10 requests, 213 MB with 2 million, about 81 bytes a waiting request, so
/// about 400 MB at this cap.
pub const MAX_LABEL_DELAY_REQUESTS: usize = 5_000_000;
/// The range of `tick_seconds`: a millisecond to a week.
const TICK_RANGE: SecondsRange = SecondsRange::positive();
/// The range of `max_seconds`: a millisecond to [`MAX_REPLAY_SECONDS`].
const RUN_RANGE: SecondsRange = SecondsRange::new(1e-3, MAX_REPLAY_SECONDS);
/// Mirrored requests the replay lets wait for the shadow worker before it waits for them to
/// be scored: below any shadow queue a host would configure (the [`Simulation`]'s is the
/// default 1,024), so no mirror is ever dropped for a full queue.
pub const REPLAY_SHADOW_SLACK: u64 = 256;

/// How traffic is replayed. Checked by [`ReplayOptions::validate`] (every replay checks it
/// first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayOptions {
    /// Requests per simulated second (one row each), from [`MIN_REQUESTS_PER_SECOND`] to
    /// [`MAX_REQUESTS_PER_SECOND`].
    pub requests_per_second: f64,
    /// Distinct sticky keys (users) the requests cycle through, ≥ 1.
    pub users: usize,
    /// Labels of a request are posted this many requests later (at most
    /// [`MAX_LABEL_DELAY_REQUESTS`]).
    pub label_delay_requests: usize,
    /// Simulated seconds between controller ticks, a millisecond to a week.
    pub tick_seconds: f64,
    /// The replay ends after this many simulated seconds even if the rollout has not: a
    /// millisecond to [`MAX_REPLAY_SECONDS`], and at most [`MAX_REPLAY_REQUESTS`] requests
    /// and [`MAX_REPLAY_TICKS`] ticks.
    pub max_seconds: f64,
    /// Whether the rows are sent again once every row was sent. The checks would then count
    /// each as new, independent evidence, which it is not (the same rows, to the same sticky
    /// users: their intervals shrink around a fixed difference between two sets of rows), so
    /// this is for exercising the mechanics only. `false` (the default): the replay stops
    /// when the rows run out and says so ([`ReplayReport::rows_ran_out`]).
    pub reuse_rows: bool,
}

impl ReplayOptions {
    /// Checks every field (a named error for each, never a panic or a replay that cannot end):
    ///
    /// ```
    /// use mlops_serve::replay::ReplayOptions;
    ///
    /// assert!(ReplayOptions::default().validate().is_ok());
    /// let slow = ReplayOptions { requests_per_second: 1e-20, ..ReplayOptions::default() };
    /// assert!(slow.validate().unwrap_err().to_string().contains("ReplayOptions.requests_per_second = 1e-20"));
    /// let endless = ReplayOptions { requests_per_second: 1e6, max_seconds: 3600.0, ..ReplayOptions::default() };
    /// assert!(endless.validate().unwrap_err().to_string().contains("ReplayOptions.max_seconds = 3600"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.gap().map(|_| ())
    }

    /// The simulated time between two requests, once every field is checked.
    fn gap(&self) -> Result<Duration> {
        let rps = self.requests_per_second;
        if !(MIN_REQUESTS_PER_SECOND..=MAX_REQUESTS_PER_SECOND).contains(&rps) {
            return Err(Error::invalid(
                "ReplayOptions.requests_per_second",
                format!("{rps:?}"),
                format!(
                    "a rate from {MIN_REQUESTS_PER_SECOND} (one request a simulated hour) to \
                     {MAX_REQUESTS_PER_SECOND} (one a simulated microsecond) requests per \
                     simulated second"
                ),
            ));
        }
        // In range, the gap is a microsecond to an hour: never zero, so time always advances.
        let gap = Duration::from_secs_f64(1.0 / rps).max(Duration::from_nanos(1));
        seconds("ReplayOptions.tick_seconds", self.tick_seconds, TICK_RANGE)?;
        seconds("ReplayOptions.max_seconds", self.max_seconds, RUN_RANGE)?;
        let limit = MAX_REPLAY_REQUESTS as f64 / rps;
        if self.max_seconds > limit {
            return Err(Error::invalid(
                "ReplayOptions.max_seconds",
                format!("{:?}", self.max_seconds),
                format!(
                    "at most {limit} simulated seconds at {rps} requests per second \
                     (a replay sends at most {MAX_REPLAY_REQUESTS} requests)"
                ),
            ));
        }
        check_ticks(
            "ReplayOptions.max_seconds",
            self.max_seconds,
            self.tick_seconds,
        )?;
        if self.users == 0 {
            return Err(Error::invalid("ReplayOptions.users", 0, "at least 1"));
        }
        if self.label_delay_requests > MAX_LABEL_DELAY_REQUESTS {
            return Err(Error::invalid(
                "ReplayOptions.label_delay_requests",
                self.label_delay_requests,
                format!("at most {MAX_LABEL_DELAY_REQUESTS} requests"),
            ));
        }
        Ok(gap)
    }
}

/// At most [`MAX_REPLAY_TICKS`] ticks of `tick_seconds` in `max_seconds`.
fn check_ticks(field: &str, max_seconds: f64, tick_seconds: f64) -> Result<()> {
    let most = tick_seconds * MAX_REPLAY_TICKS as f64;
    if max_seconds > most {
        return Err(Error::invalid(
            field,
            format!("{max_seconds:?}"),
            format!(
                "at most {most} simulated seconds with a tick every {tick_seconds} s \
                 (at most {MAX_REPLAY_TICKS} controller ticks)"
            ),
        ));
    }
    Ok(())
}

/// Waits until the router's shadow worker has scored every mirrored request: the replay's
/// statistics then do not depend on how fast that thread ran (the same seed gives the same
/// shadow counts and decisions). A worker that makes no progress for
/// [`SHADOW_STALL`] (it died, or its model hangs) is an error, never an endless wait. It blocks
/// the calling thread (on a condition variable the worker signals, not a sleep loop): the
/// replay is a simulation driven by one task, and the worker it waits for is its own thread,
/// so it finishes on any executor, a current-thread runtime included.
fn settle_shadow(router: &Router) -> Result<()> {
    let mut last = router.shadow_backlog();
    while last > 0 {
        // Woken by the worker at each request it finishes; no progress in SHADOW_STALL is an
        // error. The worker is its own thread, so this never waits on the replay's executor.
        let now = router.wait_shadow_below(last, SHADOW_STALL);
        if now >= last {
            return Err(Error::Core(mlops_core::Error::Runtime {
                cause: format!(
                    "the shadow worker scored none of its {now} waiting mirrored requests in {} s",
                    SHADOW_STALL.as_secs()
                ),
            }));
        }
        last = now;
    }
    Ok(())
}

/// How long the replay waits for a shadow worker that makes no progress.
const SHADOW_STALL: Duration = Duration::from_secs(60);

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            requests_per_second: 50.0,
            users: 5_000,
            label_delay_requests: 500,
            tick_seconds: 30.0,
            max_seconds: 6.0 * 3600.0,
            reuse_rows: false,
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
    /// Whether the replay stopped, with the rollout undecided, because every row had been sent
    /// (without [`ReplayOptions::reuse_rows`]): never decided on rows counted twice. A
    /// rollout decided on the last rows is reported decided, this `false`.
    #[serde(default)]
    pub rows_ran_out: bool,
    /// Requests over rows: above 1 only with `reuse_rows`, when the checks counted rows more
    /// than once.
    #[serde(default)]
    pub row_passes: f64,
}

/// The labels of replay data with at least one row.
fn replay_labels(data: &Dataset) -> Result<&ndarray::Array1<f32>> {
    let labels = data
        .labels()
        .ok_or_else(|| Error::invalid("replay data", "no label column", "labeled rows"))?;
    if data.n_rows() == 0 {
        return Err(Error::invalid("replay data", "0 rows", "at least one row"));
    }
    Ok(labels)
}

/// The traffic a replay has sent: requests, failures, and the labels not yet posted.
#[derive(Default)]
struct Sent {
    requests: u64,
    failed: u64,
    waiting: VecDeque<(String, f64)>,
}

impl Sent {
    /// Sends row `row` as the next request (sticky by its user), queues its label, posts the
    /// labels that are due, and counts it (failed when the router failed it).
    fn send(
        &mut self,
        router: &Router,
        features: &ndarray::ArrayView2<'_, f32>,
        labels: &ndarray::Array1<f32>,
        row: usize,
        options: &ReplayOptions,
    ) -> Result<()> {
        let request = self.requests;
        let id = format!("r{request}");
        let key = format!("user-{}", request % options.users as u64);
        let routed = Request {
            key: Some(&key),
            force: None,
            request_id: Some(&id),
            group: None,
        };
        let x = features.slice(ndarray::s![row..row + 1, ..]);
        let mut out = [0.0_f32];
        match router.route(&routed, x, &mut out) {
            Ok(_) => self.waiting.push_back((id, f64::from(labels[row]))),
            Err(_) => self.failed += 1,
        }
        self.requests += 1;
        while self.waiting.len() > options.label_delay_requests {
            if let Some((id, label)) = self.waiting.pop_front() {
                router.feedback(&id, &[label])?;
            }
        }
        Ok(())
    }
}

/// What [`replay_experiment`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReplay {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Simulated seconds elapsed.
    pub simulated_seconds: f64,
    /// Whether the replay stopped, the experiment undecided, because every row had been sent
    /// once.
    pub rows_ran_out: bool,
    /// The experiment's evidence and every decision (the audit record).
    pub state: crate::experiment::ExperimentState,
}

/// Replays `data` (each row once, in order) through `router`, whose routes hold the
/// experiment's arms (a variant per arm, by name), analyzing the experiment every
/// `tick_seconds` of `clock` and installing each decision's weights (a new step: the next
/// window's statistics start empty), until the experiment ends, `max_seconds` pass, or the
/// rows run out. Requests are sticky by user (`users` keys), labels come
/// `label_delay_requests` requests late, as in [`replay`].
pub fn replay_experiment(
    router: &Router,
    clock: &ManualClock,
    experiment: &crate::experiment::Experiment,
    data: &Dataset,
    options: &ReplayOptions,
) -> Result<ExperimentReplay> {
    let gap = options.gap()?;
    let labels = replay_labels(data)?;
    let routes = router.routes();
    for arm in &experiment.arms {
        if !routes
            .variants
            .iter()
            .any(|v| v.name == arm.name && v.version.is_none_or(|n| n == arm.version))
        {
            return Err(Error::invalid(
                "experiment arms",
                format!("{:?} v{}", arm.name, arm.version),
                "an arm the router serves (a variant of that name and version)",
            ));
        }
    }
    let weights = |w: Vec<(String, f64)>| crate::router::Routes {
        weights: w,
        ..router.routes()
    };
    router.install(weights(experiment.initial_weights()))?;
    let start = clock.now();
    let elapsed = || {
        clock
            .now()
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let mut state = crate::experiment::ExperimentState::start(experiment, start);
    let mut sent = Sent::default();
    let mut next_tick = options.tick_seconds;
    let features = data.features();
    let n_rows = data.n_rows() as u64;
    loop {
        let now = elapsed();
        if now >= next_tick || now >= options.max_seconds {
            next_tick = now + options.tick_seconds;
            let window = router.snapshot();
            if let Some(d) = state.analyze(experiment, &window, clock.now())? {
                router.install(weights(d.weights()))?;
            }
            if state.is_over() || now >= options.max_seconds {
                return Ok(ExperimentReplay {
                    requests: sent.requests,
                    failed: sent.failed,
                    simulated_seconds: now,
                    rows_ran_out: false,
                    state,
                });
            }
        }
        if sent.requests >= n_rows {
            tracing::info!(
                rows = n_rows,
                "experiment replay: every row was sent once; stopping undecided"
            );
            return Ok(ExperimentReplay {
                requests: sent.requests,
                failed: sent.failed,
                simulated_seconds: now,
                rows_ran_out: true,
                state,
            });
        }
        let row = sent.requests as usize;
        sent.send(router, &features, labels, row, options)?;
        clock.advance(gap);
    }
}

/// Replays `data` (features and labels, each row once in order; again only with
/// [`ReplayOptions::reuse_rows`]) through `router`, ticking `controller` every `tick_seconds`
/// of `clock`, until the rollout ends and its aliases are moved, `max_seconds` pass, or the
/// rows run out.
pub async fn replay(
    router: &Router,
    controller: &Controller,
    clock: &ManualClock,
    data: &Dataset,
    options: &ReplayOptions,
) -> Result<ReplayReport> {
    let gap = options.gap()?;
    let labels = replay_labels(data)?;
    let start = clock.now();
    let elapsed = || {
        clock
            .now()
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let mut sent = Sent::default();
    let mut next_tick = 0.0;
    let features = data.features();
    let n_rows = data.n_rows() as u64;
    let report = |requests: u64, failed: u64, now: f64, rollout, ran_out| ReplayReport {
        requests,
        failed,
        simulated_seconds: now,
        rollout,
        rows_ran_out: ran_out,
        row_passes: requests as f64 / n_rows as f64,
    };
    loop {
        let now = elapsed();
        // The last tick falls at `max_seconds` (not up to a tick later): a replay never sends
        // more than `requests_per_second` × `max_seconds` requests.
        if now >= next_tick || now >= options.max_seconds {
            next_tick = now + options.tick_seconds;
            // The step's statistics are complete before the controller reads them.
            settle_shadow(router)?;
            let tick = controller.tick(router).await?;
            if matches!(
                tick,
                Tick::Idle { .. } | Tick::Followed | Tick::Acted(_) | Tick::Lost
            ) {
                if let Some(s) = controller.state().await? {
                    if s.state.phase.is_terminal() && s.state.aliases_settled {
                        return Ok(report(
                            sent.requests,
                            sent.failed,
                            now,
                            Some(s.state),
                            false,
                        ));
                    }
                }
            }
            if now >= options.max_seconds {
                let rollout = controller.state().await?.map(|s| s.state);
                return Ok(report(sent.requests, sent.failed, now, rollout, false));
            }
        }
        if sent.requests >= n_rows && !options.reuse_rows {
            let mut rollout = controller.state().await?.map(|s| s.state);
            if rollout
                .as_ref()
                .is_some_and(|s| s.phase.is_terminal() && !s.aliases_settled)
            {
                // Decided on rows already sent, its aliases still to move: one more tick.
                controller.tick(router).await?;
                rollout = controller.state().await?.map(|s| s.state);
            }
            let decided = rollout.as_ref().is_some_and(|s| s.phase.is_terminal());
            if !decided {
                tracing::info!(
                    rows = n_rows,
                    "replay: every row was sent once; stopping undecided (ReplayOptions.reuse_rows is off)"
                );
            }
            return Ok(report(sent.requests, sent.failed, now, rollout, !decided));
        }
        let row = (sent.requests % data.n_rows() as u64) as usize;
        if router.shadow_backlog() >= REPLAY_SHADOW_SLACK {
            settle_shadow(router)?;
        }
        sent.send(router, &features, labels, row, options)?;
        clock.advance(gap);
    }
}

/// A stable and a candidate model behind a router, the rollout controller moving the candidate
/// through a promotion policy, all on simulated time: what `examples/canary.rs`, the Python
/// bindings' `simulate_rollout` and a host trying a policy on its own data build.
///
/// ```
/// use mlops_serve::telemetry::ServeMetrics;
/// use mlops_serve::policy::Promotion;
/// use mlops_serve::replay::{ReplayOptions, ServiceProfile, Simulation, Synthetic};
/// use mlops_serve::rollout::Phase;
///
/// let world = Synthetic::new(4, 1);
/// let sim = futures::executor::block_on(Simulation::new(
///     world.model(0.5, 2)?,
///     world.model(1.0, 3)?,
///     [ServiceProfile::default(), ServiceProfile { seed: 1, ..ServiceProfile::default() }],
///     Promotion::default(),
///     ServeMetrics::unregistered(),
/// ))?;
/// let report = futures::executor::block_on(sim.replay(&world.traffic(200_000, 4)?, &ReplayOptions::default()))?;
/// assert_eq!(report.rollout.unwrap().phase, Phase::Promoted);
/// # Ok::<(), mlops_serve::Error>(())
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
        config: crate::policy::Promotion,
        metrics: crate::telemetry::ServeMetrics,
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
        // Per thread: the shadow worker's simulated service times stay out of the request
        // loop's latencies and the other way round, whatever the threads' timing.
        let ticker = Arc::new(ManualTicker::per_thread());
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
        let tick = seconds("tick_seconds", tick_seconds, TICK_RANGE)?;
        seconds("max_seconds", max_seconds, RUN_RANGE)?;
        check_ticks("max_seconds", max_seconds, tick_seconds)?;
        let mut elapsed = 0.0;
        while elapsed < max_seconds {
            self.controller.tick(&self.router).await?;
            if let Some(s) = self.controller.state().await? {
                if s.state.phase.is_terminal() && s.state.aliases_settled {
                    break;
                }
            }
            self.clock.advance(tick);
            elapsed += tick_seconds;
        }
        Ok(ReplayReport {
            requests: 0,
            failed: 0,
            simulated_seconds: elapsed,
            rollout: self.controller.state().await?.map(|s| s.state),
            rows_ran_out: false,
            row_passes: 0.0,
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
/// # Ok::<(), mlops_serve::Error>(())
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
        Ok(Dataset::new(x, (0..d).map(|i| format!("x{i}")).collect())?
            .with_labels(labels, "label")?)
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
        Ok(ModelArtifact::new(
            spec,
            vec![(w, ndarray::array![self.bias])],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Check;
    use crate::policy::{Promotion, PromotionConfig, ShadowPhase};
    use crate::telemetry::ServeMetrics;
    use futures::executor::block_on;

    fn simulation(config: Promotion, seed: u64) -> Simulation {
        let world = Synthetic::new(6, seed);
        block_on(Simulation::new(
            world.model(0.6, seed + 1).unwrap(),
            world.model(1.0, seed + 2).unwrap(),
            [
                ServiceProfile {
                    seed,
                    ..ServiceProfile::default()
                },
                ServiceProfile {
                    seed: seed + 1,
                    ..ServiceProfile::default()
                },
            ],
            config,
            ServeMetrics::unregistered(),
        ))
        .unwrap()
    }

    fn rejected(options: ReplayOptions, field: &str) {
        let e = options.validate().unwrap_err().to_string();
        assert!(e.starts_with(&format!("invalid {field} = ")), "{e}");
        let sim = simulation(Promotion::default(), 1);
        let data = Synthetic::new(6, 1).traffic(100, 2).unwrap();
        let e = block_on(sim.replay(&data, &options))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("invalid {field} = ")), "{e}");
    }

    #[test]
    fn every_duration_and_count_of_a_replay_is_bounded_by_a_named_error() {
        let base = ReplayOptions::default();
        base.validate().unwrap();
        for rps in [1e-20, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e7, 1e10, 1e300] {
            rejected(
                ReplayOptions {
                    requests_per_second: rps,
                    ..base.clone()
                },
                "ReplayOptions.requests_per_second",
            );
        }
        // In range, but more requests than a replay sends (1e6 a second for an hour).
        rejected(
            ReplayOptions {
                requests_per_second: 1e6,
                max_seconds: 3600.0,
                ..base.clone()
            },
            "ReplayOptions.max_seconds",
        );
        for max_seconds in [1e300, f64::INFINITY, 0.0, 1e-9] {
            rejected(
                ReplayOptions {
                    max_seconds,
                    ..base.clone()
                },
                "ReplayOptions.max_seconds",
            );
        }
        for tick_seconds in [1e300, 1e20, 0.0, 1e-9, f64::NAN] {
            rejected(
                ReplayOptions {
                    tick_seconds,
                    ..base.clone()
                },
                "ReplayOptions.tick_seconds",
            );
        }
        // More ticks than a replay takes.
        rejected(
            ReplayOptions {
                tick_seconds: 1e-3,
                max_seconds: 86_400.0,
                requests_per_second: 1.0,
                ..base.clone()
            },
            "ReplayOptions.max_seconds",
        );
        rejected(
            ReplayOptions {
                users: 0,
                ..base.clone()
            },
            "ReplayOptions.users",
        );
        rejected(
            ReplayOptions {
                label_delay_requests: usize::MAX,
                ..base.clone()
            },
            "ReplayOptions.label_delay_requests",
        );
        // The extremes in range run, and simulated time advances at the highest rate.
        let sim = simulation(Promotion::default(), 1);
        let data = Synthetic::new(6, 1).traffic(100, 2).unwrap();
        let fast = ReplayOptions {
            requests_per_second: MAX_REQUESTS_PER_SECOND,
            max_seconds: 0.01,
            // 10,000 requests of 100 rows: the timing is under test, not the evidence.
            reuse_rows: true,
            ..base.clone()
        };
        let report = block_on(sim.replay(&data, &fast)).unwrap();
        assert!(report.simulated_seconds >= 0.01, "{report:?}");
        // It ends at `max_seconds`, not at the next tick (30 simulated seconds later).
        assert!((10_000..=10_001).contains(&report.requests), "{report:?}");
        assert!(
            report.row_passes > 99.0 && !report.rows_ran_out,
            "{report:?}"
        );
        // Without reuse_rows, the 100 rows are sent once and the replay says it stopped.
        let once = ReplayOptions {
            reuse_rows: false,
            ..fast.clone()
        };
        let report = block_on(simulation(Promotion::default(), 1).replay(&data, &once)).unwrap();
        assert_eq!(report.requests, 100, "{report:?}");
        assert!(report.rows_ran_out, "{report:?}");
        assert_eq!(report.row_passes, 1.0);
        let phase = report.rollout.map(|s| s.phase);
        assert!(phase.is_none_or(|p| !p.is_terminal()), "{phase:?}");
        // The idle run's tick and length.
        for (tick, max, field) in [
            (1e300, 60.0, "tick_seconds"),
            (0.0, 60.0, "tick_seconds"),
            (30.0, 1e300, "max_seconds"),
            (1e-3, 1e12, "max_seconds"),
        ] {
            let e = block_on(sim.idle(tick, max)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {field} = ")), "{e}");
        }
        // A service profile's times.
        for (profile, field) in [
            (
                ServiceProfile {
                    median_ms: 1e300,
                    ..ServiceProfile::default()
                },
                "ServiceProfile.median_ms",
            ),
            (
                ServiceProfile {
                    sigma: 1e300,
                    ..ServiceProfile::default()
                },
                "ServiceProfile.sigma",
            ),
        ] {
            let e = profile.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {field} = ")), "{e}");
        }
        // The label join's time-to-live (the router's statistics config).
        for ttl in [1e300, 1e20, f64::INFINITY, 0.0, 1e-9] {
            let config = crate::step_stats::StatsConfig {
                label_ttl_seconds: ttl,
                ..crate::step_stats::StatsConfig::default()
            };
            let e = config.validate().unwrap_err().to_string();
            assert!(
                e.starts_with("invalid StatsConfig.label_ttl_seconds = "),
                "{e}"
            );
        }
    }

    /// The shadow phase's statistics come from the router's shadow thread: the replay waits
    /// for it before each controller tick, and keeps each thread's simulated service time to
    /// itself, so the same seed gives the same shadow counts and the same decisions.
    #[test]
    fn a_replay_with_a_shadow_phase_is_the_same_for_the_same_seed() {
        let config = PromotionConfig {
            shadow: Some(ShadowPhase {
                percent: 100.0,
                bake_time_seconds: 1_800.0,
                checks: vec![
                    Check::ErrorRate {
                        max_increase: 0.0,
                        confidence: 0.95,
                    },
                    Check::LatencyP99 {
                        factor: 1.1,
                        slack_ms: 0.0,
                    },
                ],
            }),
            ..PromotionConfig::default()
        }
        .check()
        .unwrap();
        let data = Synthetic::new(6, 5).traffic(200_000, 6).unwrap();
        let options = ReplayOptions::default();
        let run = || block_on(simulation(config.clone(), 5).replay(&data, &options)).unwrap();
        let first = run();
        let state = first.rollout.clone().unwrap();
        let shadow = state
            .decisions
            .iter()
            .find(|d| d.phase == crate::rollout::Phase::Shadow && !d.checks.is_empty())
            .unwrap_or_else(|| panic!("{:#?}", state.decisions));
        let n = shadow.checks[0].n_candidate;
        // The whole shadow phase: every request mirrored for 30 simulated minutes at 50 a
        // second, give or take the tick (30 s) the analysis falls on.
        assert!((88_000..=92_000).contains(&n), "shadow n {n}");
        for _ in 0..2 {
            let again = run();
            let shadow_again = again
                .rollout
                .as_ref()
                .unwrap()
                .decisions
                .iter()
                .find(|d| d.phase == crate::rollout::Phase::Shadow && !d.checks.is_empty())
                .unwrap()
                .checks[0]
                .n_candidate;
            assert_eq!(shadow_again, n);
            // As JSON: the same decisions, statistics and p-values (NaN included).
            assert_eq!(
                serde_json::to_string(&again).unwrap(),
                serde_json::to_string(&first).unwrap()
            );
        }
    }

    /// The widest profile in range (a minute's median, σ = 5): a draw with z > 3.9 is
    /// e^19.5 minutes, past u64 nanoseconds. Each call's time is cut to an hour, so time
    /// never saturates and every later call still measures its own time.
    #[test]
    fn the_widest_service_profile_never_stops_simulated_time() {
        struct Zero(Vec<String>);
        impl Predictor for Zero {
            fn feature_names(&self) -> &[String] {
                &self.0
            }
            fn predict_proba_into(
                &self,
                _: ArrayView2<'_, f32>,
                out: &mut [f32],
            ) -> mlops_core::Result<()> {
                out.fill(0.0);
                Ok(())
            }
        }
        use crate::ticker::Ticker;
        let ticker = Arc::new(ManualTicker::per_thread());
        let service = SimulatedService::new(
            Arc::new(Zero(vec!["x".into()])),
            ticker.clone(),
            ServiceProfile {
                median_ms: MAX_MEDIAN_MS,
                sigma: MAX_SIGMA,
                error_rate: 0.0,
                seed: 7,
            },
        )
        .unwrap();
        let x = ndarray::Array2::<f32>::zeros((1, 1));
        let mut out = [0.0];
        let (mut longest, mut last) = (0, 0);
        for _ in 0..200_000 {
            let before = ticker.now_ns();
            service.predict_proba_into(x.view(), &mut out).unwrap();
            last = ticker.now_ns() - before;
            longest = longest.max(last);
        }
        // Some draw was cut to the hour, none took longer, and time still moves at the end.
        assert_eq!(longest, (MAX_SERVICE_MS * 1e6) as u64);
        assert!(last > 0, "simulated time stopped");
    }
}
