//! The trainer's loss, gradients and optimizer against PyTorch, on the fixture written by
//! `scripts/fixtures/torch_training.py` (`torch.nn.BCEWithLogitsLoss` with `weight` and
//! `pos_weight`, autograd, `torch.optim.Adam` / `AdamW`, all in float64 on inputs exact in f32).
//!
//! What is compared is what the trainer runs: the per-row coefficients folded by
//! [`crate::data::loss_coefficients`] from sample weights, class weights (scikit-learn's
//! `balanced` on the PyTorch side) and `pos_weight`; both engines' loss and gradients; and
//! [`crate::optim::AdamW`] driven by the host engine's gradients for eight steps. Tolerances
//! are those of f32 arithmetic against a float64 reference.

use candle_core::Device;
use mlops_core::model::Activation;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::config::{ClassWeight, TrainConfig};
use crate::data::{loss_coefficients, Prepared};
use crate::engine::device::CandleEngine;
use crate::engine::host::HostEngine;
use crate::engine::Engine;
use crate::optim::AdamW;

#[derive(Deserialize)]
struct Fixture {
    layers: Vec<(usize, usize)>,
    params: Vec<Vec<f64>>,
    x: Vec<f64>,
    y: Vec<f64>,
    sample_weights: Vec<f64>,
    losses: Vec<LossCase>,
    optimizers: Vec<OptimCase>,
}

#[derive(Deserialize)]
struct Weighting {
    name: String,
    #[serde(default)]
    pos_weight: Option<f64>,
    #[serde(default)]
    sample_weights: bool,
    #[serde(default = "yes")]
    use_sample_weights: bool,
    #[serde(default)]
    class_weight: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct LossCase {
    activation: String,
    weighting: Weighting,
    loss: f64,
    grads: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Optimizer {
    name: String,
    lr: f64,
    betas: (f64, f64),
    epsilon: f64,
    weight_decay: f64,
}

#[derive(Deserialize)]
struct Step {
    loss: f64,
    params: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct OptimCase {
    optimizer: Optimizer,
    activation: String,
    weighting: Weighting,
    steps: Vec<Step>,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../tests/fixtures/torch_training.json")).unwrap()
}

fn activation(name: &str) -> Activation {
    match name {
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "silu" => Activation::Silu,
        "identity" => Activation::Identity,
        other => panic!("fixture activation {other}"),
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// The split and the trainer's config for one weighting of the fixture.
fn setup(f: &Fixture, w: &Weighting) -> (Prepared, TrainConfig) {
    let data = Prepared {
        rows: f.y.len(),
        cols: f.layers[0].1,
        x: f32s(&f.x),
        y: f32s(&f.y),
        weights: w.sample_weights.then(|| f32s(&f.sample_weights)),
    };
    let class_weight = w.class_weight.as_ref().map(|cw| match cw {
        serde_json::Value::String(s) if s == "balanced" => ClassWeight::Balanced,
        other => ClassWeight::Weights {
            negative: other["negative"].as_f64().unwrap(),
            positive: other["positive"].as_f64().unwrap(),
        },
    });
    let config = TrainConfig {
        pos_weight: w.pos_weight,
        class_weight,
        use_sample_weights: w.use_sample_weights,
        ..TrainConfig::default()
    };
    (data, config)
}

fn close(what: &str, ours: f64, torch: f64, rel: f64, abs: f64) {
    assert!(
        (ours - torch).abs() <= abs + rel * torch.abs(),
        "{what}: ours {ours} vs torch {torch}"
    );
}

/// Loss and every gradient of both engines against `BCEWithLogitsLoss` + autograd, for each
/// activation and weighting (plain, `pos_weight`, sample weights used and ignored, explicit
/// and balanced class weights combined with sample weights and `pos_weight`).
#[test]
fn weighted_bce_and_its_gradients_match_pytorch() {
    let f = fixture();
    let params: Vec<Vec<f32>> = f.params.iter().map(|p| f32s(p)).collect();
    assert_eq!(f.losses.len(), 30, "5 activations x 6 weightings");
    for case in &f.losses {
        let what = format!("{} / {}", case.activation, case.weighting.name);
        let (data, config) = setup(&f, &case.weighting);
        let (c1, c2) = loss_coefficients(&data, &config);
        let act = activation(&case.activation);
        let mut host = HostEngine::new(f.layers.clone(), act, 0.0);
        let mut candle = CandleEngine::new(f.layers.clone(), act, 0.0, &Device::Cpu).unwrap();
        let engines: [(&str, &mut dyn Engine); 2] = [("host", &mut host), ("candle", &mut candle)];
        for (name, engine) in engines {
            let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let loss = engine
                .loss_and_grads(&params, &data.x, &c1, &c2, &mut rng, &mut grads)
                .unwrap();
            close(&format!("{what} {name} loss"), loss, case.loss, 1e-6, 1e-7);
            for (k, (ours, torch)) in grads.iter().zip(&case.grads).enumerate() {
                assert_eq!(ours.len(), torch.len(), "{what} {name} gradient {k}");
                let scale = torch.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
                    close(
                        &format!("{what} {name} gradient {k}[{i}]"),
                        f64::from(*a),
                        *b,
                        0.0,
                        1e-5 * scale,
                    );
                }
            }
        }
    }
}

/// Eight steps of `torch.optim.Adam` and `AdamW` (decoupled decay, non-default betas and
/// epsilon) on one batch, gradients recomputed after every step: our AdamW with the host
/// engine's gradients follows the same parameters and losses.
#[test]
fn adam_and_adamw_steps_match_torch_optim() {
    let f = fixture();
    assert_eq!(f.optimizers.len(), 2);
    for case in &f.optimizers {
        let o = &case.optimizer;
        let (data, config) = setup(&f, &case.weighting);
        let (c1, c2) = loss_coefficients(&data, &config);
        let start = f
            .params
            .chunks(2)
            .map(|p| (f32s(&p[0]), f32s(&p[1])))
            .collect();
        let mut opt = AdamW::new(&start, o.lr, o.betas, o.epsilon, o.weight_decay);
        let mut host = HostEngine::new(f.layers.clone(), activation(&case.activation), 0.0);
        let mut grads = opt.zeros_like_params();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for (s, step) in case.steps.iter().enumerate() {
            let what = format!("{} step {}", o.name, s + 1);
            let loss = host
                .loss_and_grads(&opt.params, &data.x, &c1, &c2, &mut rng, &mut grads)
                .unwrap();
            close(&format!("{what} loss"), loss, step.loss, 1e-5, 1e-6);
            opt.apply(&grads);
            for (k, (ours, torch)) in opt.params.iter().zip(&step.params).enumerate() {
                for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
                    close(
                        &format!("{what} param {k}[{i}]"),
                        f64::from(*a),
                        *b,
                        1e-5,
                        1e-5,
                    );
                }
            }
        }
        // The run really moved the parameters (a no-op optimizer would fail above, but say it).
        let moved = opt
            .params
            .iter()
            .flatten()
            .zip(f.params.iter().flatten())
            .filter(|(a, b)| (f64::from(**a) - **b).abs() > 1e-3)
            .count();
        assert!(moved > 10, "{}: only {moved} parameters moved", o.name);
    }
}
