//! The compute behind the trainer. An [`Engine`] turns the optimizer's host parameters and a
//! batch into the loss and its gradients, and scores rows without dropout:
//!
//! - [`host::HostEngine`], the CPU engine: one fused forward and backward pass over buffers
//!   allocated once, with ndarray's `matrixmultiply` kernels for the products. At the seed's
//!   sizes (a 512-row batch through 128-64-32 units) a tensor per operation and a graph walk
//!   per step cost more than the arithmetic, which is what candle's CPU backend does.
//! - [`device::CandleEngine`], candle's autograd on a candle device (CUDA behind the `cuda`
//!   feature). On CPU it is the oracle the host engine's gradients are tested against.
//!
//! Both engines draw dropout masks from the same seeded stream in the same order, so a run
//! does not depend on which thread or engine computed a mask.

pub(crate) mod device;
pub(crate) mod host;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Every layer's weight (`[out, in]`, row-major) and bias, as host vectors.
pub(crate) type HostParams = Vec<(Vec<f32>, Vec<f32>)>;

/// What a trainer needs from the compute.
///
/// `params` and `grads` are flat, per tensor, layer by layer: weight (`[out, in]`, row-major),
/// then bias, as [`crate::optim::AdamW`] keeps them.
pub(crate) trait Engine {
    /// The mean weighted loss of a batch (`x` row-major, `rows = c1.len()`) with dropout masks
    /// drawn from `rng`, and its gradient with respect to every parameter, written to `grads`.
    fn loss_and_grads(
        &mut self,
        params: &[Vec<f32>],
        x: &[f32],
        c1: &[f32],
        c2: &[f32],
        rng: &mut ChaCha8Rng,
        grads: &mut [Vec<f32>],
    ) -> Result<f64>;

    /// Logits of `rows` rows of `x` (row-major), without dropout.
    fn logits(&mut self, params: &[Vec<f32>], x: &[f32], rows: usize) -> Result<Vec<f32>>;
}

/// `(out, in)` of every layer of `inputs -> hidden... -> 1`.
pub(crate) fn layer_shapes(inputs: usize, hidden: &[usize]) -> Vec<(usize, usize)> {
    let mut shapes = Vec::with_capacity(hidden.len() + 1);
    let mut fan_in = inputs;
    for &units in hidden.iter().chain(std::iter::once(&1)) {
        shapes.push((units, fan_in));
        fan_in = units;
    }
    shapes
}

/// Glorot-uniform weights (Keras' `Dense` default) and zero biases, drawn from `rng`.
pub(crate) fn glorot_init(shapes: &[(usize, usize)], rng: &mut ChaCha8Rng) -> HostParams {
    shapes
        .iter()
        .map(|&(out, inp)| {
            let limit = (6.0 / (inp + out) as f64).sqrt();
            let w = (0..out * inp)
                .map(|_| rng.random_range(-limit..limit) as f32)
                .collect();
            (w, vec![0.0; out])
        })
        .collect()
}

/// Inverted dropout masks: each entry is `1 / keep` with probability `keep`, else 0, one
/// 32-bit draw from `rng` per entry (`bits` is scratch space).
pub(crate) fn draw_dropout_mask(
    rng: &mut ChaCha8Rng,
    keep: f32,
    mask: &mut [f32],
    bits: &mut Vec<u32>,
) {
    let threshold = (f64::from(keep) * 4_294_967_296.0).round() as u64;
    let scale = 1.0 / keep;
    bits.resize(mask.len(), 0);
    rng.fill(&mut bits[..]);
    for (m, &b) in mask.iter_mut().zip(bits.iter()) {
        *m = if u64::from(b) < threshold { scale } else { 0.0 };
    }
}

/// The per-row loss `c1 softplus(z) - c2 z` in its stable form
/// (`softplus(z) = max(z, 0) + ln(1 + exp(-|z|))`), and its derivative `c1 sigmoid(z) - c2`.
pub(crate) fn row_loss_and_slope(z: f32, c1: f32, c2: f32) -> (f64, f32) {
    let e = (-z.abs()).exp();
    let softplus = z.max(0.0) + e.ln_1p();
    let sigmoid = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (
        f64::from(c1) * f64::from(softplus) - f64::from(c2) * f64::from(z),
        c1 * sigmoid - c2,
    )
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use mlops_core::model::Activation;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::device::CandleEngine;
    use super::host::HostEngine;
    use super::{glorot_init, layer_shapes, Engine};

    /// The fused host pass against candle's autograd: same parameters, batch and dropout
    /// stream give the same loss, gradients and logits, for every activation.
    #[test]
    fn host_gradients_match_candle_autograd() {
        let (rows, cols) = (37, 5);
        let shapes = layer_shapes(cols, &[16, 8, 4]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let params: Vec<Vec<f32>> = glorot_init(&shapes, &mut rng)
            .into_iter()
            .flat_map(|(w, b)| {
                let b = b.iter().map(|_| rng.random_range(-0.2..0.2)).collect();
                [w, b]
            })
            .collect();
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let c1: Vec<f32> = (0..rows).map(|i| [1.0, 2.5, 0.7][i % 3]).collect();
        let c2: Vec<f32> = (0..rows)
            .map(|i| if i % 4 == 0 { c1[i] * 0.8 } else { 0.0 })
            .collect();
        for activation in Activation::ALL {
            for dropout in [0.0, 0.3] {
                let mut host = HostEngine::new(shapes.clone(), activation, dropout);
                let mut candle =
                    CandleEngine::new(shapes.clone(), activation, dropout, &Device::Cpu).unwrap();
                let zeros = || {
                    params
                        .iter()
                        .map(|p| vec![0.0; p.len()])
                        .collect::<Vec<_>>()
                };
                let (mut gh, mut gc) = (zeros(), zeros());
                let mut rh = ChaCha8Rng::seed_from_u64(9);
                let mut rc = ChaCha8Rng::seed_from_u64(9);
                let lh = host
                    .loss_and_grads(&params, &x, &c1, &c2, &mut rh, &mut gh)
                    .unwrap();
                let lc = candle
                    .loss_and_grads(&params, &x, &c1, &c2, &mut rc, &mut gc)
                    .unwrap();
                let what = format!("{activation:?}, dropout {dropout}");
                assert!(
                    (lh - lc).abs() < 1e-5 * lc.abs().max(1.0),
                    "{what}: {lh} vs {lc}"
                );
                for (k, (h, c)) in gh.iter().zip(&gc).enumerate() {
                    let scale = c.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                    for (i, (a, b)) in h.iter().zip(c).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-4 * scale,
                            "{what}: gradient {k}[{i}] {a} vs {b}"
                        );
                    }
                }
                assert!(gh.iter().flatten().any(|g| *g != 0.0), "{what}");
                let zh = host.logits(&params, &x, rows).unwrap();
                let zc = candle.logits(&params, &x, rows).unwrap();
                for (a, b) in zh.iter().zip(&zc) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{what}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
