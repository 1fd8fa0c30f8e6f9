//! The reference CPU forward pass of a [`ModelSpec`] network.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::artifact::ModelArtifact;
use super::{check_batch, Predictor};
use crate::error::Result;
use crate::model::spec::{Activation, ModelSpec};

/// A loaded multilayer perceptron: standardization, dense layers, sigmoid output.
///
/// Built from a checked [`ModelArtifact`], so it cannot be inconsistent. A row with a NaN or
/// infinite feature gets a NaN probability (see [`Predictor`]).
#[derive(Debug, Clone)]
pub struct MlpModel {
    spec: ModelSpec,
    /// `(mean, 1/std)` per feature.
    scale: Option<(Array1<f32>, Array1<f32>)>,
    /// `(weightᵀ [inputs, units], bias, activation)` per layer.
    layers: Vec<(Array2<f32>, Array1<f32>, Activation)>,
}

impl MlpModel {
    /// Prepares the forward pass of `artifact`.
    pub fn new(artifact: &ModelArtifact) -> Result<Self> {
        let spec = artifact.spec().clone();
        let scale = spec.standardization.as_ref().map(|s| {
            (
                Array1::from(s.mean.clone()),
                s.std.iter().map(|v| 1.0 / v).collect::<Array1<f32>>(),
            )
        });
        let layers = artifact
            .layers()
            .iter()
            .zip(&spec.layers)
            .map(|(w, l)| (w.weight.t().to_owned(), w.bias.clone(), l.activation))
            .collect();
        Ok(MlpModel {
            spec,
            scale,
            layers,
        })
    }

    /// The spec the model was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
}

impl Predictor for MlpModel {
    fn feature_names(&self) -> &[String] {
        &self.spec.input_features
    }

    fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    fn background(&self) -> Option<&super::Background> {
        self.spec.background.as_ref()
    }

    fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        check_batch(self.n_features(), x, out)?;
        let mut h = match &self.scale {
            Some((mean, inv_std)) => (&x - &mean.view().insert_axis(Axis(0))) * inv_std,
            None => x.to_owned(),
        };
        for (wt, bias, act) in &self.layers {
            let mut z = h.dot(wt);
            z += bias;
            z.mapv_inplace(|v| act.apply(v));
            h = z;
        }
        // A non-finite feature makes the row's probability NaN, whatever the layers did with it
        // (an infinite input can saturate the sigmoid into a confident 0 or 1).
        for ((o, v), row) in out.iter_mut().zip(h.column(0)).zip(x.rows()) {
            *o = if row.iter().all(|f| f.is_finite()) {
                *v
            } else {
                f32::NAN
            };
        }
        Ok(())
    }
}
