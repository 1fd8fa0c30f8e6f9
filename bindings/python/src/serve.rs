//! Trying a promotion policy on labeled data before trusting it with traffic: the router and
//! the rollout controller replayed on simulated time (mlops-serve's `replay`).

use mlops_core::duration::{seconds, SecondsRange};
use mlops_serve::policy::PromotionConfig;
use mlops_serve::replay::{ReplayOptions, ServiceProfile, Simulation};
use mlops_serve::rollout_sim::{self, Scenario};
use mlops_serve::step_stats::StatsConfig;
use mlops_serve::telemetry::ServeMetrics;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{dataset, value_error, values};
use crate::profile::from_json;
use crate::train::Model;

/// The request rates a simulated rollout takes, per second: one a day to 100,000.
const REQUESTS_PER_SECOND: (f64, f64) = (1.0 / 86_400.0, 1e5);
/// The most requests one replay may simulate: `requests_per_second` × the longer of
/// `max_hours` and the controller's tick (the replay checks its end at ticks).
const MAX_REQUESTS: f64 = 1e8;
/// The longest simulated rollout, in hours (ten years).
const MAX_HOURS: f64 = 87_600.0;
/// The most requests a label may wait for.
const MAX_LABEL_DELAY: usize = 10_000_000;
/// The most distinct sticky keys (users) a replay cycles through.
const MAX_USERS: usize = 1 << 32;

/// The replay's options from the Python arguments, every one checked before the simulation
/// builds a `Duration` from it (`Duration::from_secs_f64` panics on what it cannot hold, and a
/// gap that rounds to 0 ns never advances simulated time): a `ValueError` naming the argument.
fn replay_options(
    requests_per_second: f64,
    max_hours: f64,
    label_delay: usize,
    users: usize,
    reuse_rows: bool,
) -> PyResult<ReplayOptions> {
    let (low, high) = REQUESTS_PER_SECOND;
    if !(requests_per_second.is_finite() && (low..=high).contains(&requests_per_second)) {
        return Err(PyValueError::new_err(format!(
            "invalid requests_per_second = {requests_per_second}: expected a rate from {low:e} \
             (one a day) to {high:e} requests a second"
        )));
    }
    // The gap between requests, as the replay builds it.
    seconds(
        "1 / requests_per_second",
        1.0 / requests_per_second,
        SecondsRange::new(1.0 / high, 1.0 / low),
    )
    .map_err(value_error)?;
    if !(max_hours.is_finite() && max_hours > 0.0 && max_hours <= MAX_HOURS) {
        return Err(PyValueError::new_err(format!(
            "invalid max_hours = {max_hours}: expected a number of hours > 0 and at most {MAX_HOURS}"
        )));
    }
    seconds(
        "max_hours (as seconds)",
        max_hours * 3600.0,
        SecondsRange::new(0.0, MAX_HOURS * 3600.0),
    )
    .map_err(value_error)?;
    let span = (max_hours * 3600.0).max(ReplayOptions::default().tick_seconds);
    if requests_per_second * span > MAX_REQUESTS {
        return Err(PyValueError::new_err(format!(
            "invalid requests_per_second = {requests_per_second} for max_hours = {max_hours}: \
             expected at most {MAX_REQUESTS:e} simulated requests (rate x the longer of \
             max_hours and the controller's {}-second tick)",
            ReplayOptions::default().tick_seconds
        )));
    }
    if label_delay > MAX_LABEL_DELAY {
        return Err(PyValueError::new_err(format!(
            "invalid label_delay = {label_delay}: expected at most {MAX_LABEL_DELAY} requests"
        )));
    }
    if !(1..=MAX_USERS).contains(&users) {
        return Err(PyValueError::new_err(format!(
            "invalid users = {users}: expected from 1 to {MAX_USERS}"
        )));
    }
    Ok(ReplayOptions {
        requests_per_second,
        max_seconds: max_hours * 3600.0,
        label_delay_requests: label_delay,
        users,
        reuse_rows,
        ..ReplayOptions::default()
    })
}

/// Replays `x`, `y` (each row once; cycled only with `reuse_rows`) through a router serving
/// `stable` while the controller rolls `candidate` out under the policy (JSON; default the
/// seed's), labels posted `label_delay` requests late, both models taking the same simulated
/// service time. Returns the rollout (every decision with its checks) and the replay's
/// counts, as JSON.
#[pyfunction]
#[pyo3(signature = (stable, candidate, x, y, policy_json=None, requests_per_second=50.0, max_hours=12.0, label_delay=500, users=5000, reuse_rows=false))]
#[allow(clippy::too_many_arguments)]
fn simulate_rollout(
    py: Python<'_>,
    stable: &Model,
    candidate: &Model,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    policy_json: Option<&str>,
    requests_per_second: f64,
    max_hours: f64,
    label_delay: usize,
    users: usize,
    reuse_rows: bool,
) -> PyResult<String> {
    let options = replay_options(
        requests_per_second,
        max_hours,
        label_delay,
        users,
        reuse_rows,
    )?;
    let columns: Vec<String> = stable.artifact.spec().input_features.clone();
    let labels = values("y", y)?;
    let labels: Vec<f32> = labels.f64().iter().map(|&v| v as f32).collect();
    let data = dataset(x, columns, &[])?
        .with_labels(labels.into(), "label")
        .map_err(value_error)?;
    let config: PromotionConfig = from_json("policy", policy_json)?;
    let config = config.check().map_err(value_error)?;
    let (a, b) = (stable.artifact.clone(), candidate.artifact.clone());
    let json = py.detach(move || -> mlops_serve::Result<String> {
        // Both models take the same simulated service time: the checks see their predictions.
        let profiles = [
            ServiceProfile::default(),
            ServiceProfile {
                seed: 1,
                ..ServiceProfile::default()
            },
        ];
        let report = mlops_core::runtime::block_on(async {
            let sim = Simulation::new(a, b, profiles, config, ServeMetrics::unregistered()).await?;
            sim.replay(&data, &options).await
        })?;
        serde_json::to_string(&report)
            .map_err(|e| mlops_serve::Error::invalid("replay report", e, "JSON"))
    });
    json.map_err(value_error)
}

/// A promotion policy's operating characteristics (mlops-serve's `rollout_sim`): `runs`
/// rollouts of the scenario (JSON; default an identical candidate at 547 requests/s, labels an
/// hour late) under the policy (JSON; default the seed's) with the router's statistics bounds
/// (JSON; default its defaults), each decided by the rollout state machine. The report, as
/// JSON. The GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (scenario_json=None, policy_json=None, stats_json=None, runs=1000, seed=1))]
fn operating_characteristics(
    py: Python<'_>,
    scenario_json: Option<&str>,
    policy_json: Option<&str>,
    stats_json: Option<&str>,
    runs: u64,
    seed: u64,
) -> PyResult<String> {
    let scenario: Scenario = from_json("scenario", scenario_json)?;
    let config: PromotionConfig = from_json("policy", policy_json)?;
    let policy = config.check().map_err(value_error)?;
    let stats: StatsConfig = from_json("stats", stats_json)?;
    let report = py
        .detach(move || {
            rollout_sim::operating_characteristics(&policy, &stats, &scenario, runs, seed)
        })
        .map_err(value_error)?;
    serde_json::to_string(&report)
        .map_err(|e| PyValueError::new_err(format!("the report as JSON: {e}")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(simulate_rollout, m)?)?;
    m.add_function(wrap_pyfunction!(operating_characteristics, m)?)
}
