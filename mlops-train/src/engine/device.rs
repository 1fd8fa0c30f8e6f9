//! The candle engine: the network as candle `Var`s on a candle device, the loss built from
//! tensor operations and differentiated by candle's autograd. The parameters live on the host
//! with the optimizer and are copied to the device before each pass.

use candle_core::{Device, Tensor, Var};
use mlops_core::model::Activation;
use rand_chacha::ChaCha8Rng;

use super::{draw_dropout_mask, Engine};
use crate::error::Error;

/// candle's results inside this module; they leave it as [`Error::Compute`], a message, so
/// candle stays out of the crate's public API.
type Result<T> = candle_core::Result<T>;

fn compute(e: candle_core::Error) -> Error {
    Error::Compute {
        message: e.to_string(),
    }
}

/// Dense layers `inputs -> hidden... -> 1` on a candle device.
pub(crate) struct CandleEngine {
    /// `(weight [out, in], bias [out])` per layer.
    layers: Vec<(Var, Var)>,
    shapes: Vec<(usize, usize)>,
    activation: Activation,
    keep: Option<f32>,
    device: Device,
    bits: Vec<u32>,
}

impl CandleEngine {
    /// Zero parameters of `shapes` (`(out, in)` per layer) on `device`.
    pub(crate) fn new(
        shapes: Vec<(usize, usize)>,
        activation: Activation,
        dropout: f64,
        device: &Device,
    ) -> crate::error::Result<Self> {
        Self::build(shapes, activation, dropout, device).map_err(compute)
    }

    fn build(
        shapes: Vec<(usize, usize)>,
        activation: Activation,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        let layers = shapes
            .iter()
            .map(|&(out, inp)| {
                Ok((
                    Var::zeros((out, inp), candle_core::DType::F32, device)?,
                    Var::zeros(out, candle_core::DType::F32, device)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CandleEngine {
            layers,
            shapes,
            activation,
            keep: (dropout > 0.0).then_some(1.0 - dropout as f32),
            device: device.clone(),
            bits: Vec::new(),
        })
    }

    fn load(&self, params: &[Vec<f32>]) -> Result<()> {
        for (l, ((w, b), &(out, inp))) in self.layers.iter().zip(&self.shapes).enumerate() {
            w.set(&Tensor::from_slice(
                &params[2 * l],
                (out, inp),
                &self.device,
            )?)?;
            b.set(&Tensor::from_slice(&params[2 * l + 1], out, &self.device)?)?;
        }
        Ok(())
    }

    /// Logits `[rows]`; with `rng`, inverted dropout after each hidden layer.
    fn forward(&mut self, x: &Tensor, mut rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
            if i == last {
                break;
            }
            h = match self.activation {
                Activation::Relu => h.relu()?,
                Activation::Tanh => h.tanh()?,
                Activation::Sigmoid => candle_nn::ops::sigmoid(&h)?,
                Activation::Silu => h.silu()?,
                Activation::Identity => h,
            };
            if let (Some(keep), Some(rng)) = (self.keep, rng.as_deref_mut()) {
                let mut mask = vec![0.0f32; h.elem_count()];
                draw_dropout_mask(rng, keep, &mut mask, &mut self.bits);
                let mask = Tensor::from_vec(mask, h.shape(), &self.device)?;
                h = (h * mask)?;
            }
        }
        h.squeeze(1)
    }
}

/// Mean over the batch of `c1 softplus(z) - c2 z`, with
/// `softplus(z) = relu(z) + log(1 + exp(-|z|))`.
fn weighted_bce(logits: &Tensor, c1: &Tensor, c2: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    let per_row = ((softplus * c1)? - (logits * c2)?)?;
    per_row.mean_all()
}

impl Engine for CandleEngine {
    fn loss_and_grads(
        &mut self,
        params: &[Vec<f32>],
        x: &[f32],
        c1: &[f32],
        c2: &[f32],
        rng: &mut ChaCha8Rng,
        grads: &mut [Vec<f32>],
    ) -> crate::error::Result<f64> {
        let mut pass = || -> Result<f64> {
            self.load(params)?;
            let rows = c1.len();
            let cols = self.shapes[0].1;
            let x = Tensor::from_slice(&x[..rows * cols], (rows, cols), &self.device)?;
            let a = Tensor::from_slice(c1, rows, &self.device)?;
            let b = Tensor::from_slice(c2, rows, &self.device)?;
            let logits = self.forward(&x, Some(rng))?;
            let loss = weighted_bce(&logits, &a, &b)?;
            let store = loss.backward()?;
            for (k, var) in self.layers.iter().flat_map(|(w, b)| [w, b]).enumerate() {
                match store.get(var) {
                    Some(g) => grads[k].copy_from_slice(&g.flatten_all()?.to_vec1::<f32>()?),
                    None => grads[k].iter_mut().for_each(|g| *g = 0.0),
                }
            }
            Ok(f64::from(loss.to_scalar::<f32>()?))
        };
        pass().map_err(compute)
    }

    fn logits(
        &mut self,
        params: &[Vec<f32>],
        x: &[f32],
        rows: usize,
    ) -> crate::error::Result<Vec<f32>> {
        let mut score = || -> Result<Vec<f32>> {
            self.load(params)?;
            let cols = self.shapes[0].1;
            let x = Tensor::from_slice(&x[..rows * cols], (rows, cols), &self.device)?;
            self.forward(&x, None)?.to_vec1::<f32>()
        };
        score().map_err(compute)
    }
}
