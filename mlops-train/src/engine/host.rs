//! The CPU engine: a fused forward and backward pass of the MLP over buffers allocated once,
//! with the matrix products in ndarray's `matrixmultiply` kernels (single-threaded, so every
//! value is computed in the same order whatever the thread count).

use mlops_core::model::Activation;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rand_chacha::ChaCha8Rng;

use super::{draw_dropout_mask, row_loss_and_slope, Engine};
use crate::error::{Error, Result};

/// Buffers and shapes of one network; see the module docs.
pub(crate) struct HostEngine {
    /// `(out, in)` per layer; the last has one output.
    shapes: Vec<(usize, usize)>,
    activation: Activation,
    /// The probability of keeping a unit, when dropout is on.
    keep: Option<f32>,
    /// Rows the buffers hold.
    capacity: usize,
    /// Pre-activations per layer, `[rows, out]`.
    z: Vec<Vec<f32>>,
    /// Outputs of the hidden layers after activation and dropout, `[rows, out]`.
    a: Vec<Vec<f32>>,
    /// Dropout masks of the hidden layers.
    masks: Vec<Vec<f32>>,
    /// Gradients with respect to a layer's pre-activations, and the next one down.
    delta: Vec<f32>,
    delta_below: Vec<f32>,
    bits: Vec<u32>,
}

fn view<'a>(rows: usize, cols: usize, data: &'a [f32]) -> Result<ArrayView2<'a, f32>> {
    ArrayView2::from_shape((rows, cols), &data[..rows * cols])
        .map_err(|e| Error::invalid("engine buffer", e, format!("{rows} x {cols} values")))
}

fn view_mut<'a>(rows: usize, cols: usize, data: &'a mut [f32]) -> Result<ArrayViewMut2<'a, f32>> {
    ArrayViewMut2::from_shape((rows, cols), &mut data[..rows * cols])
        .map_err(|e| Error::invalid("engine buffer", e, format!("{rows} x {cols} values")))
}

/// Adds the bias to every row of `z` and writes `activation(z) * mask` (mask 1 without
/// dropout) to `a`; one pass, with the activation chosen outside the loop.
fn bias_activate(
    activation: Activation,
    b: &[f32],
    z: &mut [f32],
    mask: Option<&[f32]>,
    a: &mut [f32],
) {
    fn run(f: impl Fn(f32) -> f32, b: &[f32], z: &mut [f32], mask: Option<&[f32]>, a: &mut [f32]) {
        let out = b.len();
        match mask {
            Some(mask) => {
                for ((z, a), m) in z
                    .chunks_exact_mut(out)
                    .zip(a.chunks_exact_mut(out))
                    .zip(mask.chunks_exact(out))
                {
                    for (((z, a), &m), &b) in z.iter_mut().zip(a.iter_mut()).zip(m).zip(b) {
                        *z += b;
                        *a = f(*z) * m;
                    }
                }
            }
            None => {
                for (z, a) in z.chunks_exact_mut(out).zip(a.chunks_exact_mut(out)) {
                    for ((z, a), &b) in z.iter_mut().zip(a.iter_mut()).zip(b) {
                        *z += b;
                        *a = f(*z);
                    }
                }
            }
        }
    }
    match activation {
        Activation::Relu => run(|z| z.max(0.0), b, z, mask, a),
        Activation::Tanh => run(f32::tanh, b, z, mask, a),
        Activation::Sigmoid => run(sigmoid, b, z, mask, a),
        Activation::Silu => run(|z| z * sigmoid(z), b, z, mask, a),
        Activation::Identity => run(|z| z, b, z, mask, a),
    }
}

/// `d *= activation'(z) * mask` (mask 1 without dropout), with the activation chosen outside
/// the loop.
fn back_through(activation: Activation, z: &[f32], mask: Option<&[f32]>, d: &mut [f32]) {
    fn run(f: impl Fn(f32) -> f32, z: &[f32], mask: Option<&[f32]>, d: &mut [f32]) {
        match mask {
            Some(mask) => {
                for ((d, &z), &m) in d.iter_mut().zip(z).zip(mask) {
                    *d *= m * f(z);
                }
            }
            None => {
                for (d, &z) in d.iter_mut().zip(z) {
                    *d *= f(z);
                }
            }
        }
    }
    match activation {
        Activation::Relu => run(|z| if z > 0.0 { 1.0 } else { 0.0 }, z, mask, d),
        Activation::Tanh => run(
            |z| {
                let t = z.tanh();
                1.0 - t * t
            },
            z,
            mask,
            d,
        ),
        Activation::Sigmoid => run(
            |z| {
                let s = sigmoid(z);
                s * (1.0 - s)
            },
            z,
            mask,
            d,
        ),
        Activation::Silu => run(
            |z| {
                let s = sigmoid(z);
                s * (1.0 + z * (1.0 - s))
            },
            z,
            mask,
            d,
        ),
        Activation::Identity => {
            if let Some(mask) = mask {
                for (d, &m) in d.iter_mut().zip(mask) {
                    *d *= m;
                }
            }
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl HostEngine {
    /// An engine for layers of `shapes` (`(out, in)`, the last with one output).
    pub(crate) fn new(shapes: Vec<(usize, usize)>, activation: Activation, dropout: f64) -> Self {
        let hidden = shapes.len() - 1;
        HostEngine {
            keep: (dropout > 0.0).then_some(1.0 - dropout as f32),
            z: vec![Vec::new(); shapes.len()],
            a: vec![Vec::new(); hidden],
            masks: vec![Vec::new(); hidden],
            shapes,
            activation,
            capacity: 0,
            delta: Vec::new(),
            delta_below: Vec::new(),
            bits: Vec::new(),
        }
    }

    fn reserve(&mut self, rows: usize) {
        if rows <= self.capacity {
            return;
        }
        let widest = self.shapes.iter().map(|s| s.0.max(s.1)).max().unwrap_or(1);
        for (l, &(out, _)) in self.shapes.iter().enumerate() {
            self.z[l].resize(rows * out, 0.0);
            if l < self.a.len() {
                self.a[l].resize(rows * out, 0.0);
                self.masks[l].resize(rows * out, 0.0);
            }
        }
        self.delta.resize(rows * widest, 0.0);
        self.delta_below.resize(rows * widest, 0.0);
        self.capacity = rows;
    }

    /// Fills `z` (and `a` of the hidden layers) for `rows` rows of `x`, with dropout masks
    /// from `rng` when given.
    fn forward(
        &mut self,
        params: &[Vec<f32>],
        x: &[f32],
        rows: usize,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<()> {
        self.reserve(rows);
        let last = self.shapes.len() - 1;
        for (l, &(out, inp)) in self.shapes.iter().enumerate() {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            let input = if l == 0 {
                view(rows, inp, x)?
            } else {
                view(rows, inp, &self.a[l - 1])?
            };
            let z = &mut self.z[l][..rows * out];
            general_mat_mul(
                1.0,
                &input,
                &view(out, inp, w)?.t(),
                0.0,
                &mut view_mut(rows, out, z)?,
            );
            if l == last {
                for (z, &b) in z.iter_mut().zip(b.iter().cycle()) {
                    *z += b;
                }
                break;
            }
            let mask = match (self.keep, rng.as_deref_mut()) {
                (Some(keep), Some(rng)) => {
                    let mask = &mut self.masks[l][..rows * out];
                    draw_dropout_mask(rng, keep, mask, &mut self.bits);
                    Some(&*mask)
                }
                _ => None,
            };
            bias_activate(self.activation, b, z, mask, &mut self.a[l][..rows * out]);
        }
        Ok(())
    }
}

impl Engine for HostEngine {
    fn loss_and_grads(
        &mut self,
        params: &[Vec<f32>],
        x: &[f32],
        c1: &[f32],
        c2: &[f32],
        rng: &mut ChaCha8Rng,
        grads: &mut [Vec<f32>],
    ) -> Result<f64> {
        let rows = c1.len();
        let dropout = self.keep.is_some();
        self.forward(params, x, rows, Some(rng))?;
        let last = self.shapes.len() - 1;
        // The loss and its slope with respect to the logits, averaged over the batch.
        let inv_rows = 1.0 / rows as f32;
        let mut total = 0.0f64;
        for i in 0..rows {
            let (loss, s) = row_loss_and_slope(self.z[last][i], c1[i], c2[i]);
            total += loss;
            self.delta[i] = s * inv_rows;
        }
        for l in (0..=last).rev() {
            let (out, inp) = self.shapes[l];
            let delta = view(rows, out, &self.delta)?;
            let input = if l == 0 {
                view(rows, inp, x)?
            } else {
                view(rows, inp, &self.a[l - 1])?
            };
            let (gw, gb) = match grads.get_mut(2 * l..2 * l + 2) {
                Some([gw, gb]) => (gw, gb),
                _ => {
                    return Err(Error::invalid(
                        "gradient buffers",
                        grads.len(),
                        "two per layer",
                    ))
                }
            };
            general_mat_mul(1.0, &delta.t(), &input, 0.0, &mut view_mut(out, inp, gw)?);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for row in self.delta[..rows * out].chunks_exact(out) {
                for (g, d) in gb.iter_mut().zip(row) {
                    *g += d;
                }
            }
            if l == 0 {
                break;
            }
            // Down one layer: through the weights, the dropout mask and the activation.
            let mut below = view_mut(rows, inp, &mut self.delta_below)?;
            general_mat_mul(
                1.0,
                &delta,
                &view(out, inp, &params[2 * l])?,
                0.0,
                &mut below,
            );
            let below = &mut self.delta_below[..rows * inp];
            let mask = dropout.then(|| &self.masks[l - 1][..rows * inp]);
            back_through(self.activation, &self.z[l - 1][..rows * inp], mask, below);
            std::mem::swap(&mut self.delta, &mut self.delta_below);
        }
        Ok(total / rows as f64)
    }

    fn logits(&mut self, params: &[Vec<f32>], x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.forward(params, x, rows, None)?;
        Ok(self.z[self.shapes.len() - 1][..rows].to_vec())
    }
}
