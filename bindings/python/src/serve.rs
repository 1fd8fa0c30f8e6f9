//! Trying a promotion policy on labeled data before trusting it with traffic: the router and
//! the rollout controller replayed on simulated time (mlops-serve's `replay`).

use mlops_serve::metrics::ServeMetrics;
use mlops_serve::policy::PromotionConfig;
use mlops_serve::replay::{ReplayOptions, ServiceProfile, Simulation};
use pyo3::prelude::*;

use crate::arrays::{dataset, value_error, values};
use crate::profile::from_json;
use crate::train::Model;

/// Replays `x`, `y` (rows cycled) through a router serving `stable` while the controller rolls
/// `candidate` out under the policy (JSON; default the seed's), labels posted
/// `label_delay` requests late, both models taking the same simulated service time. Returns
/// the rollout (every decision with its checks) and the replay's counts, as JSON.
#[pyfunction]
#[pyo3(signature = (stable, candidate, x, y, policy_json=None, requests_per_second=50.0, max_hours=12.0, label_delay=500, users=5000))]
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
) -> PyResult<String> {
    let columns: Vec<String> = stable.artifact.spec().input_features.clone();
    let labels = values("y", y)?;
    let labels: Vec<f32> = labels.f64().iter().map(|&v| v as f32).collect();
    let data = dataset(x, columns, &[])?
        .with_labels(labels.into(), "label")
        .map_err(value_error)?;
    let config: PromotionConfig = from_json("policy", policy_json)?;
    config.validate().map_err(value_error)?;
    let options = ReplayOptions {
        requests_per_second,
        max_seconds: max_hours * 3600.0,
        label_delay_requests: label_delay,
        users,
        ..ReplayOptions::default()
    };
    let (a, b) = (stable.artifact.clone(), candidate.artifact.clone());
    let json = py.detach(move || -> mlops_core::Result<String> {
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
        serde_json::to_string(&report).map_err(|e| mlops_core::Error::InvalidValue {
            field: "replay report".into(),
            value: e.to_string(),
            expected: "JSON".into(),
        })
    });
    json.map_err(value_error)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(simulate_rollout, m)?)
}
