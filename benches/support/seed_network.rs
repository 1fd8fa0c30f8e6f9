//! The seed's network (30 → 128 → 64 → 32 → 1, ReLU, standardized inputs) with weights from a
//! fixed LCG, the same on every machine: shared by `benches/serve.rs` and
//! `examples/engine_bench.rs` (which writes it for `benches/engine_vs_onnxruntime.py`, and
//! writes wider networks of the same form for `benches/open_loop.py`'s batching runs).

use mlops::core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Standardization};
use ndarray::{Array1, Array2};

/// The network; an error only if the construction above is wrong.
#[allow(dead_code)] // engine_bench builds through `network`
pub fn seed_network() -> mlops::core::Result<ModelArtifact> {
    network(&[128, 64, 32])
}

/// A network of the seed's form (30 inputs, ReLU `hidden` layers, one sigmoid output,
/// standardized inputs) with LCG weights; an error if a width is 0.
pub fn network(hidden: &[usize]) -> mlops::core::Result<ModelArtifact> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let widths: Vec<usize> = std::iter::once(30)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(1))
        .collect();
    let mut spec = ModelSpec::new(
        (0..30).map(|i| format!("f{i}")).collect(),
        widths[1..]
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let activation = if i == hidden.len() {
                    Activation::Sigmoid
                } else {
                    Activation::Relu
                };
                LayerSpec::new(u, activation)
            })
            .collect(),
    );
    spec.standardization = Some(Standardization {
        mean: (0..30).map(|i| i as f32 * 0.1).collect(),
        std: (0..30).map(|i| 1.0 + i as f32 * 0.05).collect(),
    });
    let layers = widths
        .windows(2)
        .map(|w| {
            let limit = (6.0 / (w[0] + w[1]) as f32).sqrt();
            let weight = Array2::from_shape_fn((w[1], w[0]), |_| next() * limit);
            let bias = Array1::from_shape_fn(w[1], |_| next() * 0.1);
            (weight, bias)
        })
        .collect();
    ModelArtifact::new(spec, layers)
}
