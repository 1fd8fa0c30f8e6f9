//! The model contract shared by training and serving.
//!
//! - [`Predictor`]: anything that turns a batch of feature rows into probabilities of the
//!   positive class.
//! - The artifact format: a JSON [`ModelSpec`] (format version, layers and activations, input
//!   feature names, standardization, decision threshold) beside safetensors weights, read and
//!   written by [`ModelArtifact`], which checks every name, shape and dtype on load.
//! - [`MlpModel`]: the reference CPU implementation of a [`ModelSpec`] network.
//!
//! ```
//! use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor};
//! use ndarray::array;
//!
//! let spec = ModelSpec::new(
//!     vec!["x".into(), "y".into()],
//!     vec![LayerSpec::new(1, Activation::Sigmoid)],
//! );
//! // One dense layer: logit = 2x - y.
//! let artifact = ModelArtifact::new(spec, vec![(array![[2.0_f32, -1.0]], array![0.0_f32])])?;
//! let bytes = artifact.weights_to_safetensors()?;
//! let back = ModelArtifact::from_parts(artifact.spec_json()?.as_bytes(), &bytes)?;
//! let model = MlpModel::new(&back)?;
//! let p = model.predict_proba(array![[1.0_f32, 2.0], [1.0, 0.0]].view())?;
//! assert_eq!(p[0], 0.5);
//! assert!((p[1] - 0.880_797).abs() < 1e-6);
//! // The decision threshold travels with the artifact, and a `dyn Predictor` keeps it.
//! let strict: Box<dyn Predictor> = Box::new(MlpModel::new(&back.with_threshold(0.9)?)?);
//! assert_eq!(strict.threshold(), 0.9);
//! assert_eq!(strict.predict_labels(array![[1.0_f32, 2.0], [3.0, 0.0]].view())?.to_vec(), [0, 1]);
//! # Ok::<(), mlops_core::Error>(())
//! ```

mod artifact;
mod kind;
mod mlp;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "onnx")]
mod onnx_checks;
mod spec;
pub mod trees;

use ndarray::{Array1, ArrayView2};

pub use artifact::{DenseWeights, ModelArtifact, SPEC_FILE, WEIGHTS_FILE};
pub use kind::{ModelKind, OnnxOptions, LIGHTGBM_FILE, ONNX_FILE, XGBOOST_FILE};
pub use mlp::MlpModel;
#[cfg(feature = "onnx")]
pub use onnx::OnnxModel;
pub use spec::{
    Activation, Background, LayerSpec, ModelSpec, Standardization, FORMAT_VERSION,
    MAX_STORED_BACKGROUND_ROWS,
};
pub use trees::TreeModel;

use crate::error::{Error, Result};

/// A binary classifier: probabilities of the positive class for a batch of rows.
///
/// Implementations check the batch's width and never panic on any input values.
///
/// Non-finite input policy: a row with a NaN or infinite feature gets a NaN probability (never
/// a confident-looking number); every other row is scored as usual. The exception is a model
/// whose input language has missing values: a tree model ([`TreeModel`]) routes a NaN as its
/// library does (default directions) and compares an infinite value as a number. A caller that must not see
/// NaN checks its batch first ([`crate::Dataset::check_finite`]) or filters the NaN outputs.
///
/// Scoring is computation, not waiting: a server may call it for a few rows on an async
/// runtime's worker thread (mlops-serve's HTTP server does for small bodies), where a call
/// that blocks on I/O or a lock holds that worker and the request timeout cannot answer for
/// it. A predictor that must wait (a remote model) bounds its own wait and returns an error.
pub trait Predictor: Send + Sync {
    /// The input features, in column order.
    fn feature_names(&self) -> &[String];

    /// Writes one probability per row of `x` into `out` (`out.len() == x.nrows()`).
    fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()>;

    /// Number of input features.
    fn n_features(&self) -> usize {
        self.feature_names().len()
    }

    /// One probability per row of `x`.
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        let mut out = vec![0.0; x.nrows()];
        self.predict_proba_into(x, &mut out)?;
        Ok(Array1::from(out))
    }

    /// The decision threshold on the probability: a row is predicted positive when its
    /// probability is `>= threshold`. The model's own (a [`ModelSpec`]'s `threshold`, which
    /// travels with the artifact); 0.5 for a predictor that has none.
    fn threshold(&self) -> f32 {
        0.5
    }

    /// The rows kept with the model as the background of its explanations (a
    /// [`ModelSpec`]'s `background`); `None` for a predictor that has none.
    fn background(&self) -> Option<&Background> {
        None
    }

    /// Class labels, 1 (positive) or 0, per row of `x` at [`Predictor::threshold`]. A row
    /// whose probability is NaN (a non-finite feature) has no label: the call fails naming
    /// the first such row, never guessing one.
    fn predict_labels(&self, x: ArrayView2<'_, f32>) -> Result<Array1<u8>> {
        let p = self.predict_proba(x)?;
        check_scored(p.iter().copied())?;
        let threshold = self.threshold();
        Ok(p.mapv(|v| u8::from(v >= threshold)))
    }
}

/// The reference predictor of any artifact: [`MlpModel`] for an MLP, [`TreeModel`] for an
/// XGBoost or LightGBM model, `OnnxModel` for an ONNX model (feature `onnx`). (mlops-serve's
/// engine compiles the same artifacts for serving.)
pub fn predictor(artifact: &ModelArtifact) -> Result<Box<dyn Predictor>> {
    Ok(match artifact.kind() {
        ModelKind::Mlp => Box::new(MlpModel::new(artifact)?),
        ModelKind::Xgboost | ModelKind::Lightgbm => Box::new(TreeModel::new(artifact)?),
        #[cfg(feature = "onnx")]
        ModelKind::Onnx => Box::new(OnnxModel::new(artifact)?),
        #[cfg(not(feature = "onnx"))]
        ModelKind::Onnx => {
            return Err(Error::invalid(
                "model kind",
                "onnx",
                "a kind this build reads (ONNX needs mlops-core's feature `onnx`)",
            ))
        }
    })
}

/// Refuses probabilities with a NaN (the [`Predictor`] contract's mark of a row with a
/// non-finite feature), naming the first such row: a label or a metric needs every row scored.
pub fn check_scored(probabilities: impl IntoIterator<Item = f32>) -> Result<()> {
    match probabilities.into_iter().position(|v| v.is_nan()) {
        Some(row) => Err(Error::invalid(
            format!("features of row {row}"),
            "a NaN or infinite value",
            "finite features (the model cannot score a row with a missing value; impute it first)",
        )),
        None => Ok(()),
    }
}

/// Checks that a batch and an output buffer fit a predictor with `n_features` inputs.
pub fn check_batch(n_features: usize, x: ArrayView2<'_, f32>, out: &[f32]) -> Result<()> {
    if x.ncols() != n_features {
        return Err(Error::invalid(
            "batch columns",
            x.ncols(),
            format!("{n_features} features, as the model was trained on"),
        ));
    }
    if out.len() != x.nrows() {
        return Err(Error::LengthMismatch {
            left: "batch rows",
            left_len: x.nrows(),
            right: "output buffer",
            right_len: out.len(),
        });
    }
    Ok(())
}
