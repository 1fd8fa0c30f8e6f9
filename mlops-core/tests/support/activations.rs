//! The activation fixture written by `scripts/fixtures/activations.py` (numpy, float64): every
//! hidden activation's closed form on a grid of points, and a `7 -> 45 -> 13 -> 1` network
//! (standardized inputs) scored with each. Shared by mlops-core's test of `Activation::apply`
//! and `MlpModel` and mlops-serve's test of the compiled engine (`#[path]`-included there).

use std::collections::BTreeMap;

use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Standardization};
use ndarray::{Array1, Array2};
use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
pub struct Fixture {
    /// Which script and numpy wrote it.
    pub generator: String,
    /// `x` and one list per activation name (`relu`, `tanh`, ...).
    pub points: BTreeMap<String, Vec<f64>>,
    /// The network and its probabilities.
    pub network: Network,
}

/// The network case.
#[derive(Deserialize)]
pub struct Network {
    inputs: usize,
    hidden: Vec<usize>,
    rows: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    layers: Vec<Layer>,
    x: Vec<f32>,
    probabilities: BTreeMap<String, Vec<f64>>,
}

#[derive(Deserialize)]
struct Layer {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The activation's name in the artifact format (and the fixture's keys).
pub fn name(activation: Activation) -> String {
    serde_json::to_value(activation)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads the fixture.
pub fn load() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mlops-core/tests/fixtures/activations.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    assert!(fixture.generator.contains("numpy"), "{}", fixture.generator);
    for a in Activation::ALL {
        assert!(fixture.points.contains_key(&name(a)), "no points for {a:?}");
        assert!(
            fixture.network.probabilities.contains_key(&name(a)),
            "no network case for {a:?}"
        );
    }
    fixture
}

impl Fixture {
    /// The points every activation is evaluated at.
    pub fn xs(&self) -> &[f64] {
        &self.points["x"]
    }

    /// The closed form of `activation` at [`Fixture::xs`].
    pub fn values(&self, activation: Activation) -> &[f64] {
        &self.points[&name(activation)]
    }
}

impl Network {
    /// The network with `activation` in its hidden layers, as an artifact.
    pub fn artifact(&self, activation: Activation) -> ModelArtifact {
        let mut spec = ModelSpec::new(
            (0..self.inputs).map(|i| format!("f{i}")).collect(),
            self.hidden
                .iter()
                .map(|&u| LayerSpec::new(u, activation))
                .chain(std::iter::once(LayerSpec::new(1, Activation::Sigmoid)))
                .collect(),
        );
        spec.standardization = Some(Standardization {
            mean: self.mean.clone(),
            std: self.std.clone(),
        });
        let mut fan_in = self.inputs;
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let units = l.bias.len();
                let w = Array2::from_shape_vec((units, fan_in), l.weight.clone()).unwrap();
                fan_in = units;
                (w, Array1::from(l.bias.clone()))
            })
            .collect();
        ModelArtifact::new(spec, layers).unwrap()
    }

    /// The rows, `[rows, inputs]`.
    pub fn x(&self) -> Array2<f32> {
        Array2::from_shape_vec((self.rows, self.inputs), self.x.clone()).unwrap()
    }

    /// numpy's probability of every row with `activation` in the hidden layers.
    pub fn probabilities(&self, activation: Activation) -> &[f64] {
        &self.probabilities[&name(activation)]
    }
}
