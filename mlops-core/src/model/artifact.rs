//! A model artifact: a [`ModelSpec`] plus its checked body, read from and written to
//! `model.json` + the kind's body file (`model.safetensors` for an MLP, the library's own file
//! for a tree model).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::kind::{ModelKind, OnnxOptions};
use super::spec::ModelSpec;
use super::trees::TreeEnsemble;
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

/// A spec with its body: for an MLP, weights whose names, shapes and dtypes match it; for a
/// tree model, the library's file and the ensemble compiled from it, reading as many features
/// as the spec names. Every constructor checks; a value of this type is always consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifact {
    spec: ModelSpec,
    layers: Vec<DenseWeights>,
    trees: Option<TreeBody>,
    onnx: Option<OnnxBody>,
}

/// An ONNX model's file as it was exported, and the graph tract made of it (feature `onnx`).
#[derive(Clone)]
struct OnnxBody {
    source: Arc<[u8]>,
    #[cfg(feature = "onnx")]
    graph: Arc<super::onnx::OnnxGraph>,
}

impl PartialEq for OnnxBody {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl std::fmt::Debug for OnnxBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("OnnxBody");
        d.field("source_bytes", &self.source.len());
        #[cfg(feature = "onnx")]
        d.field("graph", &self.graph);
        d.finish()
    }
}

/// A tree model's file as its library wrote it, and the ensemble read from it.
#[derive(Clone, PartialEq)]
struct TreeBody {
    source: Arc<[u8]>,
    ensemble: Arc<TreeEnsemble>,
}

impl std::fmt::Debug for TreeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeBody")
            .field("source_bytes", &self.source.len())
            .field("trees", &self.ensemble.n_trees())
            .field("splits", &self.ensemble.n_splits())
            .finish()
    }
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
        if spec.kind != ModelKind::Mlp {
            return Err(artifact_err(
                "weights",
                format!(
                    "dense layers for a {} model: read it with ModelArtifact::from_model_file",
                    spec.kind
                ),
            ));
        }
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
            trees: None,
            onnx: None,
        })
    }

    /// Reads a model file of `kind` as its library wrote it (XGBoost's JSON, LightGBM's
    /// text), checks it, and pairs it with a spec: the file's feature names (or the library's
    /// defaults), threshold 0.5. Every problem (a truncated file, another objective, a split on
    /// a feature the model lacks, an unreadable part) is an error here, never at scoring. An
    /// MLP is not one file: use [`ModelArtifact::load`] on its folder.
    ///
    /// ```
    /// use mlops_core::model::{ModelArtifact, ModelKind, Predictor};
    /// let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
    ///     max_feature_idx=0\nobjective=binary sigmoid:1\nfeature_names=amount\n\n\
    ///     Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=100\n\
    ///     decision_type=10\nleft_child=-1\nright_child=-2\nleaf_value=-2 3\nshrinkage=1\n\n\
    ///     end of trees\n";
    /// let a = ModelArtifact::from_model_file(ModelKind::Lightgbm, text.as_bytes())?;
    /// assert_eq!(a.spec().input_features, ["amount"]);
    /// let model = mlops_core::model::predictor(&a)?;
    /// let p = model.predict_proba(ndarray::array![[50.0_f32], [500.0], [f32::NAN]].view())?;
    /// assert!(p[0] < 0.5 && p[1] > 0.5);
    /// assert_eq!(p[2], p[0]); // missing type NaN, default left
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn from_model_file(kind: ModelKind, bytes: &[u8]) -> Result<Self> {
        let ensemble = match kind {
            ModelKind::Xgboost => TreeEnsemble::from_xgboost_json(bytes)?,
            ModelKind::Lightgbm => TreeEnsemble::from_lightgbm_text(bytes)?,
            ModelKind::Onnx => return Self::from_onnx(bytes, &Default::default()),
            ModelKind::Mlp => {
                return Err(Error::invalid(
                    "model kind",
                    kind,
                    "xgboost, lightgbm or onnx (an MLP is a folder: ModelArtifact::load)",
                ))
            }
        };
        let mut spec = ModelSpec {
            kind,
            ..ModelSpec::new(ensemble.feature_names().to_vec(), Vec::new())
        };
        if let Some(best) = ensemble.best_iteration() {
            // Visible wherever the spec is (registry, model.json): scoring uses every tree.
            tracing::warn!(
                best_iteration = best,
                trees = ensemble.n_trees(),
                "an early-stopped XGBoost model: every tree is scored, as Booster.predict does"
            );
            spec.metadata
                .insert("xgboost.best_iteration".into(), best.to_string());
        }
        spec.validate()?;
        Ok(ModelArtifact {
            spec,
            layers: Vec::new(),
            trees: Some(TreeBody {
                source: Arc::from(bytes),
                ensemble: Arc::new(ensemble),
            }),
            onnx: None,
        })
    }

    /// Reads an ONNX model (a binary classifier: one float input `[batch, features]`, one
    /// probability output; see [`super::onnx`]) with tract, checks it, optimizes it, scores a
    /// row, and pairs it with a spec: features `f0`, `f1`, ... (an ONNX input has no column
    /// names; set them with [`ModelArtifact::with_input_features`]), threshold 0.5, and
    /// `options.output` as the output read. An op tract lacks, two outputs without a choice, a
    /// dynamic rank or feature count, external tensor data: each an error here, naming it.
    /// Without the `onnx` feature every ONNX file is an error saying so.
    pub fn from_onnx(bytes: &[u8], options: &OnnxOptions) -> Result<Self> {
        #[cfg(feature = "onnx")]
        {
            let graph = super::onnx::OnnxGraph::from_bytes(bytes, options)?;
            let names = (0..graph.n_features()).map(|i| format!("f{i}")).collect();
            let mut spec = ModelSpec {
                kind: ModelKind::Onnx,
                ..ModelSpec::new(names, Vec::new())
            };
            spec.output = options.output.clone();
            spec.validate()?;
            Ok(ModelArtifact {
                spec,
                layers: Vec::new(),
                trees: None,
                onnx: Some(OnnxBody {
                    source: Arc::from(bytes),
                    graph: Arc::new(graph),
                }),
            })
        }
        #[cfg(not(feature = "onnx"))]
        {
            let _ = (bytes, options);
            Err(artifact_err(
                super::ONNX_FILE,
                "an ONNX model, which this build does not read (mlops-core's feature `onnx`)",
            ))
        }
    }

    /// Whether missing values (NaN) are part of the model's input language: a tree model's
    /// (default directions), an ONNX graph of tree ensembles; not an MLP's, nor another ONNX
    /// graph's (a row with a NaN scores NaN without running).
    pub fn reads_missing_values(&self) -> bool {
        match self.spec.kind {
            ModelKind::Mlp => false,
            ModelKind::Xgboost | ModelKind::Lightgbm => true,
            #[cfg(feature = "onnx")]
            ModelKind::Onnx => self
                .onnx
                .as_ref()
                .is_some_and(|b| b.graph.reads_missing_values()),
            #[cfg(not(feature = "onnx"))]
            ModelKind::Onnx => false,
        }
    }

    /// The ONNX graph of an ONNX model (feature `onnx`); `None` for another kind.
    #[cfg(feature = "onnx")]
    pub fn onnx_graph(&self) -> Option<&Arc<super::onnx::OnnxGraph>> {
        self.onnx.as_ref().map(|b| &b.graph)
    }

    /// The kind of model (MLP, XGBoost, LightGBM).
    pub fn kind(&self) -> ModelKind {
        self.spec.kind
    }

    /// The compiled ensemble of a tree model; `None` for an MLP.
    pub fn trees(&self) -> Option<&Arc<TreeEnsemble>> {
        self.trees.as_ref().map(|t| &t.ensemble)
    }

    /// The same model reading its inputs under `names` (one per input, each used once): for a
    /// tree model saved without names, or to match a table's columns. Errors: the wrong count,
    /// an empty or repeated name.
    pub fn with_input_features(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.spec.input_features.len() {
            return Err(Error::invalid(
                "input feature names",
                format!("{} names", names.len()),
                format!(
                    "{}, one per input of the model",
                    self.spec.input_features.len()
                ),
            ));
        }
        self.spec.input_features = names;
        self.spec.validate()?;
        Ok(self)
    }

    /// The file beside `model.json` that holds the body ([`ModelKind::body_file`]).
    pub fn body_file(&self) -> &'static str {
        self.spec.kind.body_file()
    }

    /// The body's bytes: the safetensors weights of an MLP, the library's file of a tree or
    /// ONNX model.
    pub fn body_bytes(&self) -> Result<Vec<u8>> {
        match (&self.trees, &self.onnx) {
            (Some(t), _) => Ok(t.source.to_vec()),
            (None, Some(o)) => Ok(o.source.to_vec()),
            (None, None) => self.weights_to_safetensors(),
        }
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

    /// The weights as safetensors bytes (the content of `model.safetensors`). An error for a
    /// tree model, whose body is its own file ([`ModelArtifact::body_bytes`]).
    pub fn weights_to_safetensors(&self) -> Result<Vec<u8>> {
        if self.spec.kind != ModelKind::Mlp {
            return Err(artifact_err(
                WEIGHTS_FILE,
                format!(
                    "a {} model has no safetensors weights; its body is {}",
                    self.spec.kind,
                    self.body_file()
                ),
            ));
        }
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

    /// Reads an artifact from the bytes of `model.json` and of its body file
    /// ([`ModelKind::body_file`] of the spec's kind). For an MLP, every tensor the spec needs
    /// must be there with the right shape and dtype, and no other; a tree model's file is read
    /// and checked, and must read as many features as the spec names; an ONNX model is read
    /// with the spec's `output`.
    pub fn from_parts(spec_json: &[u8], weights: &[u8]) -> Result<Self> {
        let spec = ModelSpec::from_json_bytes(spec_json)?;
        spec.validate()?;
        if spec.kind != ModelKind::Mlp {
            let tree = if spec.kind == ModelKind::Onnx {
                Self::from_onnx(
                    weights,
                    &OnnxOptions {
                        output: spec.output.clone(),
                    },
                )?
            } else {
                Self::from_model_file(spec.kind, weights)?
            };
            let reads = tree.spec.input_features.len();
            if reads != spec.input_features.len() {
                return Err(artifact_err(
                    format!("{SPEC_FILE} field input_features"),
                    format!(
                        "{} features, but {} reads {reads}",
                        spec.input_features.len(),
                        spec.kind.body_file()
                    ),
                ));
            }
            return Ok(ModelArtifact {
                spec,
                layers: Vec::new(),
                trees: tree.trees,
                onnx: tree.onnx,
            });
        }
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

    /// Writes `model.json` and the body file into `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        for (file, bytes) in [
            (SPEC_FILE, self.spec_json()?.into_bytes()),
            (self.body_file(), self.body_bytes()?),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, bytes).map_err(|e| Error::io("writing", path, e))?;
        }
        tracing::debug!(dir = %dir.display(), "model artifact saved");
        Ok(())
    }

    /// Reads `model.json` and its body file from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|e| Error::io("reading", path, e))
        };
        let spec = read(SPEC_FILE)?;
        let kind = ModelSpec::from_json_bytes(&spec)?.kind;
        Self::from_parts(&spec, &read(kind.body_file())?)
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
