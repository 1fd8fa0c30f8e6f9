//! A model artifact: a [`ModelSpec`] plus checked weights, read from and written to
//! `model.json` + `model.safetensors`.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::spec::ModelSpec;
use crate::error::{Error, Result};

/// File name of the spec inside an artifact directory.
pub const SPEC_FILE: &str = "model.json";
/// File name of the weights inside an artifact directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The weights of one dense layer: `weight` is `[units, inputs]`, `bias` is `[units]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseWeights {
    /// `[units, inputs]`, PyTorch's `nn.Linear` layout.
    pub weight: Array2<f32>,
    /// `[units]`.
    pub bias: Array1<f32>,
}

/// A spec with weights whose names, shapes and dtypes match it. Every constructor checks;
/// a value of this type is always consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifact {
    spec: ModelSpec,
    layers: Vec<DenseWeights>,
}

fn artifact_err(item: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Artifact {
        item: item.into(),
        message: message.into(),
    }
}

impl ModelArtifact {
    /// Pairs a spec with `(weight, bias)` per layer, checking shapes and that every weight is
    /// finite.
    pub fn new(spec: ModelSpec, layers: Vec<(Array2<f32>, Array1<f32>)>) -> Result<Self> {
        spec.validate()?;
        if layers.len() != spec.layers.len() {
            return Err(artifact_err(
                "weights",
                format!(
                    "{} layers of weights for a spec of {} layers",
                    layers.len(),
                    spec.layers.len()
                ),
            ));
        }
        let expected = spec.expected_tensors();
        let mut checked = Vec::with_capacity(layers.len());
        for (i, (weight, bias)) in layers.into_iter().enumerate() {
            let (wname, wshape) = &expected[2 * i];
            check_tensor(wname, weight.shape(), wshape, weight.iter())?;
            let (bname, bshape) = &expected[2 * i + 1];
            check_tensor(bname, bias.shape(), bshape, bias.iter())?;
            checked.push(DenseWeights { weight, bias });
        }
        Ok(ModelArtifact {
            spec,
            layers: checked,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The same model with decision threshold `threshold` (a probability in [0, 1]): it is
    /// stored in the spec, so it travels with the artifact into the registry and every
    /// predictor loaded from it.
    ///
    /// ```
    /// use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
    /// use ndarray::array;
    ///
    /// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
    /// let a = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])])?;
    /// assert_eq!(a.clone().with_threshold(0.3)?.threshold(), 0.3);
    /// assert!(a.with_threshold(1.5).is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn with_threshold(mut self, threshold: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::invalid(
                "threshold",
                threshold,
                "a probability in [0, 1]",
            ));
        }
        if self.spec.threshold != threshold && self.spec.cbpe.take().is_some() {
            // Its components were fitted at the old threshold: refit it (`with_cbpe`).
            tracing::debug!("threshold changed: the performance estimator is dropped");
        }
        self.spec.threshold = threshold;
        Ok(self)
    }

    /// The same model with `cbpe` stored as its performance estimator
    /// ([`crate::cbpe::Cbpe::fit_on`], on rows it did not train on). An estimator fitted at another
    /// threshold than the model's is an error (its components would be wrong). A later
    /// [`with_threshold`](Self::with_threshold) that moves the threshold drops it.
    pub fn with_cbpe(mut self, mut cbpe: crate::cbpe::Cbpe) -> Result<Self> {
        // The model's threshold is an f32: an estimator fitted at the same number written
        // as an f64 (0.3 for 0.3f32) is fitted at that threshold; it is stored exactly.
        if cbpe.threshold as f32 == self.spec.threshold {
            cbpe.threshold = f64::from(self.spec.threshold);
        }
        self.spec.cbpe = Some(cbpe);
        self.spec.validate()?;
        Ok(self)
    }

    /// The same model with `background` kept as the background of its explanations
    /// ([`Background::sample`](super::Background::sample) of its training rows), checked
    /// against its inputs.
    pub fn with_background(mut self, background: super::Background) -> Result<Self> {
        background.check(self.spec.input_features.len())?;
        self.spec.background = Some(background);
        Ok(self)
    }

    /// The same model with `key = value` in its spec's free-form metadata (lineage, a note).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.metadata.insert(key.into(), value.into());
        self
    }

    /// The decision threshold (predict positive when the probability is `>=` it).
    pub fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    /// The weights of each layer, input to output.
    pub fn layers(&self) -> &[DenseWeights] {
        &self.layers
    }

    /// The spec as pretty JSON (the content of `model.json`; [`ModelSpec::to_json`]).
    pub fn spec_json(&self) -> Result<String> {
        self.spec.to_json()
    }

    /// The weights as safetensors bytes (the content of `model.safetensors`).
    pub fn weights_to_safetensors(&self) -> Result<Vec<u8>> {
        let names = self.spec.expected_tensors();
        let bytes: Vec<Vec<u8>> = self
            .layers
            .iter()
            .flat_map(|l| [le_bytes(l.weight.iter()), le_bytes(l.bias.iter())])
            .collect();
        let views = names
            .iter()
            .zip(&bytes)
            .map(|((name, shape), data)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| artifact_err(name.clone(), e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let info = HashMap::from([("format".to_string(), "mlops-mlp".to_string())]);
        safetensors::serialize(views, Some(info))
            .map_err(|e| artifact_err(WEIGHTS_FILE, e.to_string()))
    }

    /// Reads an artifact from the bytes of `model.json` and `model.safetensors`, checking that
    /// every tensor the spec needs is there with the right shape and dtype, and no other.
    pub fn from_parts(spec_json: &[u8], weights: &[u8]) -> Result<Self> {
        let spec: ModelSpec = serde_json::from_slice(spec_json).map_err(|source| Error::Json {
            what: SPEC_FILE.into(),
            cause: source,
        })?;
        spec.validate()?;
        let tensors = SafeTensors::deserialize(weights)
            .map_err(|e| artifact_err(WEIGHTS_FILE, format!("not a safetensors file: {e}")))?;
        let expected = spec.expected_tensors();
        for name in tensors.names() {
            if !expected.iter().any(|(n, _)| n.as_str() == name) {
                return Err(artifact_err(
                    format!("{WEIGHTS_FILE} tensor `{name}`"),
                    format!(
                        "unexpected tensor; the spec needs exactly: {}",
                        expected
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let item = format!("{WEIGHTS_FILE} tensor `{name}`");
            let view = tensors
                .tensor(name)
                .map_err(|_| artifact_err(&item, "missing; the spec needs it"))?;
            if view.dtype() != Dtype::F32 {
                return Err(artifact_err(
                    &item,
                    format!("dtype {:?}, expected F32", view.dtype()),
                ));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            check_tensor(name, view.shape(), shape, values.iter())?;
            Ok(values)
        };
        let mut layers = Vec::with_capacity(spec.layers.len());
        for pair in expected.chunks_exact(2) {
            let (wn, ws) = &pair[0];
            let (bn, bs) = &pair[1];
            let w = read(wn, ws)?;
            let b = read(bn, bs)?;
            let weight = Array2::from_shape_vec((ws[0], ws[1]), w)
                .map_err(|e| artifact_err(wn.clone(), e.to_string()))?;
            layers.push((weight, Array1::from(b)));
        }
        Self::new(spec, layers)
    }

    /// Writes `model.json` and `model.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        for (file, bytes) in [
            (SPEC_FILE, self.spec_json()?.into_bytes()),
            (WEIGHTS_FILE, self.weights_to_safetensors()?),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, bytes).map_err(|e| Error::io("writing", path, e))?;
        }
        tracing::debug!(dir = %dir.display(), "model artifact saved");
        Ok(())
    }

    /// Reads `model.json` and `model.safetensors` from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|e| Error::io("reading", path, e))
        };
        Self::from_parts(&read(SPEC_FILE)?, &read(WEIGHTS_FILE)?)
    }
}

fn le_bytes<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

fn check_tensor<'a>(
    name: &str,
    shape: &[usize],
    expected: &[usize],
    mut values: impl Iterator<Item = &'a f32>,
) -> Result<()> {
    if shape != expected {
        return Err(artifact_err(
            format!("tensor `{name}`"),
            format!("shape {shape:?}, expected {expected:?}"),
        ));
    }
    if let Some((i, v)) = values.by_ref().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(artifact_err(
            format!("tensor `{name}`"),
            format!("element {i} is {v}, expected a finite number"),
        ));
    }
    Ok(())
}
