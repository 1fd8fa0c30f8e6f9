//! The inference engine: a [`Predictor`] compiled from a [`ModelArtifact`].
//!
//! Compiling packs every layer's weights once, transposed to `[inputs, units]` row-major, with
//! the standardization's scale folded into the first layer (`W · diag(1/std)`; the mean is
//! subtracted while the batch is copied in, which keeps the f32 rounding of the reference
//! [`MlpModel`](mlops_core::model::MlpModel)). A call copies the batch (any strides) into a
//! per-thread scratch buffer, applying the [`NonFinitePolicy`], then runs each layer as one
//! product (the `gemm` crate: SIMD micro-kernels chosen at run time, one thread) with the
//! bias and the activation fused into one pass over each output row.
//! The scratch buffers are per thread and sized to a block of rows, never to the batch: after
//! the first call on a thread, a call of up to 8 rows allocates nothing, and a larger one only
//! the `gemm` crate's two small bookkeeping buffers per block (tests/engine_alloc.rs counts
//! both). A call made while the thread's scratch is in use (a predictor scoring inside
//! another's call) takes fresh buffers rather than panicking.
//!
//! ```
//! use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor};
//! use mlops_serve::{CompiledModel, NonFinitePolicy};
//! use ndarray::array;
//!
//! let spec = ModelSpec::new(
//!     vec!["x".into(), "y".into()],
//!     vec![LayerSpec::new(3, Activation::Relu), LayerSpec::new(1, Activation::Sigmoid)],
//! );
//! let artifact = ModelArtifact::new(spec, vec![
//!     (array![[1.0_f32, -1.0], [0.5, 0.25], [-2.0, 1.0]], array![0.1_f32, 0.0, -0.1]),
//!     (array![[1.0_f32, -0.5, 0.25]], array![0.2_f32]),
//! ])?;
//! let engine = CompiledModel::compile(&artifact, NonFinitePolicy::Nan)?;
//! let reference = MlpModel::new(&artifact)?;
//! let x = array![[0.3_f32, -1.2], [2.0, 0.5]];
//! let (a, b) = (engine.predict_proba(x.view())?, reference.predict_proba(x.view())?);
//! assert!((a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod kernel;

use std::cell::RefCell;

use std::sync::Arc;

use mlops_core::model::{check_batch, Activation, ModelArtifact, ModelKind, ModelSpec, Predictor};
use ndarray::{ArrayView2, Axis, Slice};
use serde::{Deserialize, Serialize};

use mlops_core::{Error, Result};

/// What the engine does with a row that has a NaN or infinite feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// The row's probability is NaN (the [`Predictor`] contract): never a confident-looking
    /// number; the other rows are scored. A model whose input language has missing values (an
    /// XGBoost or LightGBM model, an ONNX graph of tree ensembles;
    /// [`ModelArtifact::reads_missing_values`]) gets the value as it is and routes it as its
    /// library does.
    #[default]
    Nan,
    /// The call fails, naming the first such row and its feature.
    Reject,
    /// The feature is replaced by the value the model stores for it (`ModelSpec::impute`, the
    /// training mean for models from mlops-train); compiling fails if the model has none.
    Impute,
}

impl NonFinitePolicy {
    /// Every variant, in declaration order.
    pub const ALL: [NonFinitePolicy; 3] = [
        NonFinitePolicy::Nan,
        NonFinitePolicy::Reject,
        NonFinitePolicy::Impute,
    ];

    /// The serialized name (`nan`, `reject`, `impute`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            NonFinitePolicy::Nan => "nan",
            NonFinitePolicy::Reject => "reject",
            NonFinitePolicy::Impute => "impute",
        }
    }
}

/// One dense layer, packed.
#[derive(Debug, Clone)]
struct Layer {
    inputs: usize,
    units: usize,
    /// `[inputs, units]` row-major: row `i` holds input `i`'s weight for every unit.
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

/// A [`Predictor`] compiled from a [`ModelArtifact`] for fast scoring (see the module docs).
/// Outputs equal the reference [`MlpModel`](mlops_core::model::MlpModel)'s to 1e-5. A tree
/// model's artifact already holds its compiled ensemble
/// ([`TreeEnsemble`](mlops_core::model::trees::TreeEnsemble)), and an ONNX model's its
/// optimized graph; they score here under the same non-finite policies.
#[derive(Clone)]
pub struct CompiledModel {
    spec: ModelSpec,
    /// A tree or ONNX model's own predictor ([`mlops_core::model::predictor`]; then `layers`
    /// is empty).
    native: Option<Arc<dyn Predictor>>,
    policy: NonFinitePolicy,
    /// The standardization mean, subtracted on the way in (zeros without standardization).
    mean: Vec<f32>,
    /// Raw-space replacement values under [`NonFinitePolicy::Impute`].
    impute: Vec<f32>,
    layers: Vec<Layer>,
    widest: usize,
}

impl std::fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModel")
            .field("kind", &self.spec.kind)
            .field("features", &self.spec.input_features.len())
            .field("policy", &self.policy)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// Rows scored per block (see `predict_proba_into`).
const CHUNK: usize = 1024;

/// Per-thread buffers: the batch copied in, then two ping-pong activations.
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    flagged: Vec<usize>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl CompiledModel {
    /// Compiles `artifact` (already checked: names, shapes, finite weights) with `policy`.
    pub fn compile(artifact: &ModelArtifact, policy: NonFinitePolicy) -> Result<Self> {
        let spec = artifact.spec().clone();
        let n = spec.input_features.len();
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = match &spec.standardization {
            Some(s) => (s.mean.clone(), s.std.iter().map(|v| 1.0 / v).collect()),
            None => (vec![0.0; n], vec![1.0; n]),
        };
        let impute = match (policy, &spec.impute) {
            (NonFinitePolicy::Impute, Some(values)) => values.clone(),
            (NonFinitePolicy::Impute, None) => {
                return Err(Error::invalid(
                    "NonFinitePolicy",
                    "impute",
                    "a model that stores imputation values (ModelSpec.impute; mlops-train writes the training means), or the nan / reject policy",
                ))
            }
            _ => Vec::new(),
        };
        let native: Option<Arc<dyn Predictor>> = match artifact.kind() {
            ModelKind::Mlp => None,
            _ => Some(Arc::from(mlops_core::model::predictor(artifact)?)),
        };
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (l, (w, s)) in artifact.layers().iter().zip(&spec.layers).enumerate() {
            let (units, inputs) = w.weight.dim();
            let mut weight_t = vec![0.0f32; inputs * units];
            for ((j, i), v) in w.weight.indexed_iter() {
                // The first layer reads centred inputs: fold in the 1/std scale.
                let scale = if l == 0 { inv_std[i] } else { 1.0 };
                weight_t[i * units + j] = v * scale;
            }
            layers.push(Layer {
                inputs,
                units,
                weight_t,
                bias: w.bias.to_vec(),
                activation: s.activation,
            });
        }
        let widest = layers
            .iter()
            .map(|l| l.units.max(l.inputs))
            .max()
            .unwrap_or(n);
        Ok(CompiledModel {
            spec,
            native,
            policy,
            mean,
            impute,
            layers,
            widest,
        })
    }

    /// The policy for non-finite features.
    pub fn policy(&self) -> NonFinitePolicy {
        self.policy
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Copies `x` into `input` (contiguous, centred), applying the policy; rows scored as NaN
    /// are listed in `flagged`.
    fn load(
        &self,
        x: ArrayView2<'_, f32>,
        offset: usize,
        input: &mut Vec<f32>,
        flagged: &mut Vec<usize>,
    ) -> Result<()> {
        let n = x.ncols();
        input.clear();
        input.reserve(x.nrows() * self.widest);
        flagged.clear();
        for (r, row) in x.rows().into_iter().enumerate() {
            // The common case, all finite: one vectorizable pass (a contiguous row is read as
            // a slice).
            let all_finite = match row.as_slice() {
                Some(values) => values.iter().all(|v| v.is_finite()),
                None => row.iter().all(|v| v.is_finite()),
            };
            if all_finite {
                match row.as_slice() {
                    Some(values) => input.extend(values.iter().zip(&self.mean).map(|(v, m)| v - m)),
                    None => input.extend(row.iter().zip(&self.mean).map(|(v, m)| v - m)),
                }
                continue;
            }
            let mut bad = false;
            for (i, &v) in row.iter().enumerate() {
                let v = if v.is_finite() {
                    v
                } else {
                    match self.policy {
                        NonFinitePolicy::Nan => {
                            bad = true;
                            0.0
                        }
                        NonFinitePolicy::Reject => {
                            return Err(Error::invalid(
                                format!(
                                    "feature `{}` of row {}",
                                    self.spec.input_features[i],
                                    offset + r
                                ),
                                v,
                                "a finite number (this server's policy rejects missing values)",
                            ))
                        }
                        NonFinitePolicy::Impute => self.impute[i],
                    }
                };
                input.push(v - self.mean[i]);
            }
            if bad {
                flagged.push(r);
            }
            debug_assert_eq!(input.len(), (r + 1) * n);
        }
        Ok(())
    }

    /// Scores one block of rows; `offset` is its first row's number in the caller's batch.
    fn run(
        &self,
        x: ArrayView2<'_, f32>,
        offset: usize,
        out: &mut [f32],
        s: &mut Scratch,
    ) -> Result<()> {
        let rows = x.nrows();
        let Scratch {
            input,
            a,
            b,
            flagged,
        } = s;
        self.load(x, offset, input, flagged)?;
        let need = rows * self.widest;
        if a.len() < need {
            a.resize(need, 0.0);
        }
        if b.len() < need {
            b.resize(need, 0.0);
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            // Layer 0 reads the batch; then the activations ping-pong between `a` and `b`.
            let (src, dst): (&[f32], &mut [f32]) = match l {
                0 => (&input[..], &mut a[..]),
                l if l % 2 == 1 => (&a[..], &mut b[..]),
                _ => (&b[..], &mut a[..]),
            };
            let dst = &mut dst[..rows * layer.units];
            kernel::dense(&src[..rows * layer.inputs], rows, layer, dst)?;
            if l == last {
                out.copy_from_slice(dst);
            }
        }
        for &r in flagged.iter() {
            out[r] = f32::NAN;
        }
        Ok(())
    }
}

impl CompiledModel {
    /// A tree or ONNX model: missing values go to its predictor under
    /// [`NonFinitePolicy::Nan`] (a tree routes them, an ONNX graph without trees scores the
    /// row NaN); under `Reject` and `Impute` a batch with a non-finite value is copied through
    /// the policy.
    fn predict_native(
        &self,
        native: &dyn Predictor,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> Result<()> {
        if self.policy == NonFinitePolicy::Nan || x.iter().all(|v| v.is_finite()) {
            return native.predict_proba_into(x, out);
        }
        let (mut input, mut flagged) = (Vec::new(), Vec::new());
        for start in (0..x.nrows()).step_by(CHUNK) {
            let end = (start + CHUNK).min(x.nrows());
            let block = x.slice_axis(Axis(0), Slice::from(start..end));
            self.load(block, start, &mut input, &mut flagged)?;
            let view = ArrayView2::from_shape((end - start, x.ncols()), &input[..])
                .map_err(|e| Error::invalid("batch", e, "rows x features"))?;
            native.predict_proba_into(view, &mut out[start..end])?;
        }
        Ok(())
    }
}

impl Predictor for CompiledModel {
    fn feature_names(&self) -> &[String] {
        &self.spec.input_features
    }

    fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    fn background(&self) -> Option<&mlops_core::model::Background> {
        self.spec.background.as_ref()
    }

    fn predict_proba_into(
        &self,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> mlops_core::Result<()> {
        check_batch(self.n_features(), x, out)?;
        if x.nrows() == 0 {
            return Ok(());
        }
        if let Some(native) = &self.native {
            return self.predict_native(native.as_ref(), x, out);
        }
        // Blocks of at most CHUNK rows: the scratch a thread keeps stays small (a one-off
        // huge batch does not pin gigabytes in a thread-local), and a block's activations stay
        // in cache.
        SCRATCH.with(|cell| {
            let (mut borrowed, mut owned);
            let scratch: &mut Scratch = match cell.try_borrow_mut() {
                Ok(b) => {
                    borrowed = b;
                    &mut borrowed
                }
                // Re-entered on this thread (a predictor called from inside another's call):
                // fresh buffers rather than a panic.
                Err(_) => {
                    owned = Scratch::default();
                    &mut owned
                }
            };
            for start in (0..x.nrows()).step_by(CHUNK) {
                let end = (start + CHUNK).min(x.nrows());
                let block = x.slice_axis(Axis(0), Slice::from(start..end));
                self.run(block, start, &mut out[start..end], scratch)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use mlops_core::model::{LayerSpec, MlpModel};
    use ndarray::Array2;

    use super::*;

    fn artifact(inputs: usize, hidden: usize) -> ModelArtifact {
        let spec = ModelSpec::new(
            (0..inputs).map(|i| format!("f{i}")).collect(),
            vec![
                LayerSpec::new(hidden, Activation::Tanh),
                LayerSpec::new(1, Activation::Sigmoid),
            ],
        );
        let w0 = Array2::from_shape_fn((hidden, inputs), |(u, i)| {
            ((u * 7 + i * 3) % 11) as f32 / 11.0 - 0.5
        });
        let w1 = Array2::from_shape_fn((1, hidden), |(_, u)| (u % 5) as f32 / 5.0 - 0.4);
        ModelArtifact::new(
            spec,
            vec![
                (w0, ndarray::Array1::from_elem(hidden, 0.1)),
                (w1, ndarray::Array1::from_elem(1, -0.2)),
            ],
        )
        .unwrap()
    }

    /// A call made while this thread's scratch is in use (a predictor called from inside
    /// another's call: a host's callback, a nested rayon task run by a waiting thread) scores
    /// with fresh buffers, correctly, rather than panicking on the borrowed `RefCell`.
    #[test]
    fn a_call_while_this_threads_scratch_is_in_use_scores_correctly() {
        let a = artifact(6, 20);
        let engine = CompiledModel::compile(&a, NonFinitePolicy::Nan).unwrap();
        let reference = MlpModel::new(&a).unwrap();
        for rows in [1, 3, 40] {
            let x = Array2::from_shape_fn((rows, 6), |(r, i)| (r as f32 - i as f32) / 4.0);
            let want = reference.predict_proba(x.view()).unwrap();
            let got = SCRATCH.with(|cell| {
                let _outer_call = cell.borrow_mut();
                engine.predict_proba(x.view()).unwrap()
            });
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5, "{rows} rows: {g} vs {w}");
            }
            // And the thread's own buffers still work after.
            let again = engine.predict_proba(x.view()).unwrap();
            for (g, w) in again.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5, "{rows} rows: {g} vs {w}");
            }
        }
    }
}
