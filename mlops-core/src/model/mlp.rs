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
        if artifact.kind() != super::ModelKind::Mlp {
            return Err(crate::Error::invalid(
                "model kind",
                artifact.kind(),
                "an MLP (model::predictor reads every kind)",
            ));
        }
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

/// The slope DeepLIFT's rescale rule gives an activation between two of its inputs:
/// `(f(z) − f(r)) / (z − r)`, or the derivative where they (nearly) meet.
fn rescale(act: Activation, z: f64, r: f64) -> f64 {
    let f = |v: f64| f64::from(act.apply(v as f32));
    if (z - r).abs() > 1e-6 {
        return (f(z) - f(r)) / (z - r);
    }
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    match act {
        Activation::Relu => f64::from(u8::from(z > 0.0)),
        Activation::Tanh => 1.0 - z.tanh().powi(2),
        Activation::Sigmoid => s(z) * (1.0 - s(z)),
        Activation::Silu => s(z) * (1.0 + z * (1.0 - s(z))),
        Activation::Identity => 1.0,
    }
}

impl MlpModel {
    /// The pre-activations of every layer for one input row, in f64.
    fn pre_activations(&self, x: &[f32]) -> Vec<Vec<f64>> {
        let mut h: Vec<f64> = match &self.scale {
            Some((mean, inv_std)) => x
                .iter()
                .zip(mean.iter().zip(inv_std))
                .map(|(v, (m, s))| (f64::from(*v) - f64::from(*m)) * f64::from(*s))
                .collect(),
            None => x.iter().map(|&v| f64::from(v)).collect(),
        };
        let mut out = Vec::with_capacity(self.layers.len());
        for (wt, bias, act) in &self.layers {
            let z: Vec<f64> = (0..wt.ncols())
                .map(|u| {
                    f64::from(bias[u])
                        + h.iter()
                            .enumerate()
                            .map(|(i, v)| v * f64::from(wt[[i, u]]))
                            .sum::<f64>()
                })
                .collect();
            h = z.iter().map(|&v| f64::from(act.apply(v as f32))).collect();
            out.push(z);
        }
        out
    }

    /// DeepSHAP values of `x` (DeepLIFT's rescale rule averaged over the background rows, as
    /// shap's `DeepExplainer`): one forward and one backward pass per background row, so it
    /// costs what scoring `background` rows twice does, whatever the number of features.
    /// **Approximate**: exact for a model linear on the explained scale (one layer, on the
    /// logit), otherwise an approximation of the interventional Shapley values; additive
    /// exactly (`base_value + Σ values = output`, on `scale`). Errors: a row or background
    /// with a missing (non-finite) value, an empty background, widths that do not match.
    ///
    /// ```
    /// use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
    /// use mlops_core::shapley::OutputScale;
    /// use ndarray::{array, Array2};
    ///
    /// let spec = ModelSpec::new(vec!["a".into(), "b".into()], vec![LayerSpec::new(3, Activation::Relu), LayerSpec::new(1, Activation::Sigmoid)]);
    /// let w = vec![(array![[1.0_f32, -1.0], [0.5, 2.0], [-1.0, 0.25]], array![0.0_f32, 0.1, -0.2]), (array![[1.0_f32, -0.5, 2.0]], array![0.3_f32])];
    /// let model = MlpModel::new(&ModelArtifact::new(spec, w)?)?;
    /// let background = Array2::from_shape_fn((10, 2), |(i, j)| (i * (j + 1)) as f32 / 5.0 - 1.0);
    /// let e = model.deep_shap(&[0.5, -1.0], background.view(), OutputScale::Probability)?;
    /// assert!((e.base_value + e.values.iter().sum::<f64>() - e.output).abs() < 1e-9);
    /// assert_eq!(e.method, "deep");
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn deep_shap(
        &self,
        x: &[f32],
        background: ArrayView2<'_, f32>,
        scale: crate::shapley::OutputScale,
    ) -> Result<crate::shapley::Explanation> {
        use crate::error::Error;
        use crate::shapley::OutputScale;
        let d = self.spec.input_features.len();
        if x.len() != d || background.ncols() != d {
            return Err(Error::invalid(
                "deep_shap widths",
                format!("row {} and background {}", x.len(), background.ncols()),
                format!("{d} features, the model's"),
            ));
        }
        if background.nrows() == 0 || background.nrows() > crate::shapley::MAX_BACKGROUND_ROWS {
            return Err(Error::invalid(
                "background rows",
                background.nrows(),
                format!("from 1 to {}", crate::shapley::MAX_BACKGROUND_ROWS),
            ));
        }
        if let Some(j) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("row feature {:?}", self.spec.input_features[j]),
                x[j],
                "a finite value (impute a missing one first)",
            ));
        }
        if let Some(((i, j), v)) = background.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                format!(
                    "background row {i} feature {:?}",
                    self.spec.input_features[j]
                ),
                v,
                "a finite value",
            ));
        }
        let last = self.layers.len() - 1;
        // On the logit the output layer's sigmoid is left out: the chain ends at its input.
        let output_of = |z: &[Vec<f64>]| {
            let logit = z[last][0];
            match scale {
                OutputScale::Logit => logit,
                OutputScale::Probability => f64::from(Activation::Sigmoid.apply(logit as f32)),
            }
        };
        let zx = self.pre_activations(x);
        let fx = output_of(&zx);
        let inv_std: Vec<f64> = match &self.scale {
            Some((_, s)) => s.iter().map(|&v| f64::from(v)).collect(),
            None => vec![1.0; d],
        };
        let mut values = vec![0.0f64; d];
        let mut base = 0.0f64;
        for b in background.rows() {
            let b: Vec<f32> = b.to_vec();
            let zb = self.pre_activations(&b);
            base += output_of(&zb);
            // Multipliers from the output back to the inputs.
            let mut m: Vec<f64> = vec![match scale {
                OutputScale::Logit => 1.0,
                OutputScale::Probability => rescale(Activation::Sigmoid, zx[last][0], zb[last][0]),
            }];
            for l in (0..=last).rev() {
                let (wt, _, act) = &self.layers[l];
                if l != last {
                    for (u, mu) in m.iter_mut().enumerate() {
                        *mu *= rescale(*act, zx[l][u], zb[l][u]);
                    }
                }
                // Through the dense map: m_in[i] = Σ_u W[u, i] m[u] (wt is Wᵀ).
                m = (0..wt.nrows())
                    .map(|i| (0..wt.ncols()).map(|u| f64::from(wt[[i, u]]) * m[u]).sum())
                    .collect();
            }
            for j in 0..d {
                values[j] += m[j] * inv_std[j] * (f64::from(x[j]) - f64::from(b[j]));
            }
        }
        let n = background.nrows() as f64;
        values.iter_mut().for_each(|v| *v /= n);
        base /= n;
        Ok(crate::shapley::Explanation {
            features: self.spec.input_features.clone(),
            values,
            base_value: base,
            output: fx,
            // Not a sampling estimate: its error is unknown, never 0 (which says exact).
            std_errors: vec![f64::NAN; d],
            method: "deep".into(),
            scale,
            evaluations: 2 * background.nrows(),
            permutations: 0,
        })
    }
}
