//! The network in candle: dense layers whose parameters are candle `Var`s, a forward pass with
//! dropout masks drawn from our own seeded RNG, and the numerically stable weighted loss.

use candle_core::{DType, Device, Tensor, Var};
use mlops_core::model::Activation;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Host copies of every layer's weight (`[out, in]`, row-major) and bias.
pub(crate) type HostParams = Vec<(Vec<f32>, Vec<f32>)>;

/// Dense layers `inputs -> hidden... -> 1`.
pub(crate) struct Network {
    /// `(weight [out, in], bias [out])` per layer.
    pub(crate) layers: Vec<(Var, Var)>,
    /// `(out, in)` per layer.
    pub(crate) shapes: Vec<(usize, usize)>,
    activation: Activation,
    dropout: f32,
}

impl Network {
    /// Glorot-uniform weights (Keras' `Dense` default) and zero biases, drawn from `rng`.
    pub(crate) fn init(
        inputs: usize,
        hidden: &[usize],
        activation: Activation,
        dropout: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let mut shapes = Vec::with_capacity(hidden.len() + 1);
        let mut fan_in = inputs;
        for &units in hidden.iter().chain(std::iter::once(&1)) {
            shapes.push((units, fan_in));
            fan_in = units;
        }
        let params: HostParams = shapes
            .iter()
            .map(|&(out, inp)| {
                let limit = (6.0 / (inp + out) as f64).sqrt();
                let w = (0..out * inp)
                    .map(|_| rng.random_range(-limit..limit) as f32)
                    .collect();
                (w, vec![0.0; out])
            })
            .collect();
        let mut net = Network {
            layers: Vec::with_capacity(shapes.len()),
            shapes,
            activation,
            dropout: dropout as f32,
        };
        for (&(out, inp), (w, b)) in net.shapes.iter().zip(&params) {
            net.layers.push((
                Var::from_tensor(&Tensor::from_slice(w, (out, inp), device)?)?,
                Var::from_tensor(&Tensor::from_slice(b, out, device)?)?,
            ));
        }
        Ok(net)
    }

    /// Every parameter, layer by layer (weight then bias).
    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.layers.iter().flat_map(|(w, b)| [w, b])
    }

    /// Logits `[rows]` for `x` `[rows, inputs]`; with `rng`, inverted dropout after each
    /// hidden layer (masks drawn from `rng`).
    pub(crate) fn forward(&self, x: &Tensor, mut rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
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
            if let Some(rng) = rng.as_deref_mut() {
                if self.dropout > 0.0 {
                    let keep = 1.0 - self.dropout;
                    let scale = 1.0 / keep;
                    let mask: Vec<f32> = (0..h.elem_count())
                        .map(|_| {
                            if rng.random::<f32>() < keep {
                                scale
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let mask = Tensor::from_vec(mask, h.shape(), x.device())?;
                    h = (h * mask)?;
                }
            }
        }
        Ok(h.squeeze(1)?)
    }

    /// Host copies of the parameters.
    pub(crate) fn to_host(&self) -> Result<HostParams> {
        self.layers
            .iter()
            .map(|(w, b)| {
                Ok((
                    w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                    b.as_tensor().to_vec1::<f32>()?,
                ))
            })
            .collect()
    }

    /// Sets the parameters from host copies (same shapes).
    pub(crate) fn set_from_host(&self, params: &HostParams) -> Result<()> {
        for (((w, b), &(out, inp)), (hw, hb)) in self.layers.iter().zip(&self.shapes).zip(params) {
            let device = w.as_tensor().device();
            w.set(&Tensor::from_slice(hw, (out, inp), device)?)?;
            b.set(&Tensor::from_slice(hb, out, device)?)?;
        }
        Ok(())
    }
}

/// Mean over the batch of the weighted binary cross-entropy with logits, in the stable form
/// `softplus(z) = relu(z) + log(1 + exp(-|z|))`:
/// `l = c1 * softplus(z) - c2 * z`, with `c1 = w (pos_weight y + 1 - y)` and
/// `c2 = w pos_weight y` (so `l = w [pos_weight y softplus(-z) + (1 - y) softplus(z)]`).
pub(crate) fn weighted_bce(logits: &Tensor, c1: &Tensor, c2: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    let per_row = ((softplus * c1)? - (logits * c2)?)?;
    Ok(per_row.mean_all()?)
}

/// A `[rows]` f32 tensor.
pub(crate) fn vector(values: Vec<f32>, device: &Device) -> Result<Tensor> {
    let n = values.len();
    Ok(Tensor::from_vec(values, n, device)?.to_dtype(DType::F32)?)
}
