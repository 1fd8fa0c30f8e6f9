//! The JSON half of a model artifact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::ModelKind;
use crate::error::{Error, Result};

fn is_mlp(kind: &ModelKind) -> bool {
    *kind == ModelKind::Mlp
}

/// The artifact format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Elementwise activation after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^-x); the output layer's activation.
    Sigmoid,
    /// x · sigmoid(x).
    Silu,
    /// x.
    Identity,
}

impl Activation {
    /// The serialized name (`relu`, `tanh`, `sigmoid`, `silu`, `identity`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
            Activation::Identity => "identity",
        }
    }
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Silu,
        Activation::Identity,
    ];

    /// Applies the activation to one value. NaN in, NaN out for every activation (`f32::max`
    /// would turn a NaN into 0 under ReLU).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Silu => x * sigmoid(x),
            Activation::Identity => x,
        }
    }
}

/// A numerically stable logistic function.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// One dense layer: `units` outputs, then `activation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Output width.
    pub units: usize,
    /// Activation after the affine map.
    pub activation: Activation,
}

impl LayerSpec {
    /// A layer of `units` outputs with `activation`.
    pub fn new(units: usize, activation: Activation) -> Self {
        LayerSpec { units, activation }
    }
}

/// Per-feature standardization `(x - mean) / std`, fitted on the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standardization {
    /// Per-feature mean.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation, finite and > 0.
    pub std: Vec<f32>,
}

/// The most rows a stored [`Background`] may hold: explanations score `rows` rows per
/// coalition, so the background bounds the work of every explanation.
pub const MAX_STORED_BACKGROUND_ROWS: usize = 1_000;

/// Rows kept with a model as the background of its explanations, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Background {
    /// Rows.
    pub rows: usize,
    /// `rows × features` values, row-major, finite.
    pub values: Vec<f32>,
}

impl Background {
    /// Up to `max_rows` (1 to [`MAX_STORED_BACKGROUND_ROWS`]) rows of `x`, evenly spaced through it
    /// (so a time-ordered table is sampled across its whole span), leaving out rows with a
    /// missing (non-finite) value. Errors: `max_rows` out of range, no complete row.
    ///
    /// ```
    /// use mlops_core::model::Background;
    /// let x = ndarray::Array2::from_shape_fn((1000, 2), |(i, j)| (i * 2 + j) as f32);
    /// let b = Background::sample(x.view(), 100)?;
    /// assert_eq!((b.rows, b.values.len()), (100, 200));
    /// assert_eq!(&b.values[..4], &[0.0, 1.0, 20.0, 21.0]);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn sample(x: ndarray::ArrayView2<'_, f32>, max_rows: usize) -> Result<Self> {
        if !(1..=MAX_STORED_BACKGROUND_ROWS).contains(&max_rows) {
            return Err(Error::invalid(
                "background max_rows",
                max_rows,
                format!("from 1 to {MAX_STORED_BACKGROUND_ROWS}"),
            ));
        }
        let complete: Vec<usize> = (0..x.nrows())
            .filter(|&i| x.row(i).iter().all(|v| v.is_finite()))
            .collect();
        if complete.is_empty() {
            return Err(Error::invalid(
                "background rows",
                format!("{} rows, none without a missing value", x.nrows()),
                "at least one complete row",
            ));
        }
        let take = max_rows.min(complete.len());
        let mut values = Vec::with_capacity(take * x.ncols());
        for k in 0..take {
            values.extend(x.row(complete[k * complete.len() / take]).iter().copied());
        }
        Ok(Background { rows: take, values })
    }

    /// The rows as a `[rows, features]` view (`features` is the model's input count).
    pub fn view(&self, features: usize) -> Result<ndarray::ArrayView2<'_, f32>> {
        self.check(features)?;
        ndarray::ArrayView2::from_shape((self.rows, features), &self.values)
            .map_err(|e| Error::invalid("background", e, "rows x features values"))
    }

    /// Checks the shape (1 to [`MAX_STORED_BACKGROUND_ROWS`] rows of `features` values) and that
    /// every value is finite.
    pub fn check(&self, features: usize) -> Result<()> {
        if !(1..=MAX_STORED_BACKGROUND_ROWS).contains(&self.rows)
            || Some(self.values.len()) != self.rows.checked_mul(features)
        {
            return Err(Error::invalid(
                "background",
                format!("{} rows and {} values", self.rows, self.values.len()),
                format!("1 to {MAX_STORED_BACKGROUND_ROWS} rows of {features} values each"),
            ));
        }
        if let Some(i) = self.values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("background row {} feature {}", i / features, i % features),
                self.values[i],
                "a finite value",
            ));
        }
        Ok(())
    }
}

/// What a model is: its inputs, its layers and how to read its output. Serialized as
/// `model.json` beside the weights.
///
/// Weights are named `layers.{i}.weight` (shape `[units, inputs]`, PyTorch's layout) and
/// `layers.{i}.bias` (shape `[units]`), all `f32`. The last layer has one unit and a sigmoid:
/// the network outputs the probability of the positive class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// What kind of model this is ([`ModelKind`]; absent = an MLP, as every file before
    /// kinds). A tree model has no `layers`: its body is the library's own file
    /// ([`ModelKind::body_file`]).
    #[serde(default, skip_serializing_if = "is_mlp")]
    pub kind: ModelKind,
    /// Input feature names, in column order.
    pub input_features: Vec<String>,
    /// Dense layers from input to output.
    pub layers: Vec<LayerSpec>,
    /// Input standardization, if the model was trained on standardized inputs.
    #[serde(default)]
    pub standardization: Option<Standardization>,
    /// Decision threshold on the probability (predict positive when `>=`).
    pub threshold: f32,
    /// Per-feature values to put in place of a missing (NaN or infinite) feature, for
    /// servers whose policy is to impute (the trainer stores the training means). Optional:
    /// files without it (format 1 as first written) still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<Vec<f32>>,
    /// The performance estimator fitted at training time on rows the model did not train on
    /// (the trainer's validation rows): the calibration of
    /// this model's scores and the sampling-error components of its estimated metrics
    /// ([`crate::cbpe`]). Served probabilities stay the model's own scores (the threshold
    /// applies to them); the calibration is for reading them as probabilities. Optional:
    /// files without it still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cbpe: Option<crate::cbpe::Cbpe>,
    /// Rows of the training data kept with the model for explanations: the background
    /// Shapley values are taken against (a server's `explain` endpoint reads it). Optional:
    /// files without it still load. (A file with it, or with `cbpe`, is refused by builds
    /// older than these fields, which reject unknown fields: upgrade readers first.) The rows
    /// are training data: whoever can read the artifact can read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// The graph output read as the probability, for an ONNX model whose graph has several
    /// (a classifier's `label` and `probabilities`); absent for every other model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Free-form facts (trainer, version of the code, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl ModelSpec {
    /// A spec with the current format version, no standardization, threshold 0.5.
    pub fn new(input_features: Vec<String>, layers: Vec<LayerSpec>) -> Self {
        ModelSpec {
            format_version: FORMAT_VERSION,
            kind: ModelKind::Mlp,
            input_features,
            layers,
            standardization: None,
            threshold: 0.5,
            impute: None,
            cbpe: None,
            background: None,
            output: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Checks the spec: known format version, unique non-empty features, non-empty layers with
    /// units > 0, a one-unit sigmoid output, standardization of the right length with finite
    /// means and positive finite stds, threshold in [0, 1].
    pub fn validate(&self) -> Result<()> {
        let bad = |field: String, value: String, expected: &str| {
            Err(Error::Artifact {
                item: format!("{} field {field}", super::SPEC_FILE),
                message: format!("found {value}, expected {expected}"),
            })
        };
        if self.format_version != FORMAT_VERSION {
            return bad(
                "format_version".into(),
                self.format_version.to_string(),
                &format!("{FORMAT_VERSION} (the version this build reads)"),
            );
        }
        if self.input_features.is_empty() {
            return bad("input_features".into(), "[]".into(), "at least one feature");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in self.input_features.iter().enumerate() {
            if f.is_empty() || !seen.insert(f) {
                return bad(
                    format!("input_features[{i}]"),
                    format!("{f:?}"),
                    "a non-empty name used once",
                );
            }
        }
        if let (Some(output), false) = (&self.output, self.kind == ModelKind::Onnx) {
            return bad(
                "output".into(),
                format!("{output:?} for a {} model", self.kind),
                "no output name: only an ONNX graph names the output it is read from",
            );
        }
        if self.kind != ModelKind::Mlp {
            if !self.layers.is_empty() || self.standardization.is_some() {
                return bad(
                    "layers".into(),
                    format!(
                        "{} layers{} for a {} model",
                        self.layers.len(),
                        if self.standardization.is_some() {
                            " and a standardization"
                        } else {
                            ""
                        },
                        self.kind
                    ),
                    "none: a tree or ONNX model's body is its own file",
                );
            }
            return self.validate_common();
        }
        let Some(last) = self.layers.last() else {
            return bad("layers".into(), "[]".into(), "at least the output layer");
        };
        for (i, l) in self.layers.iter().enumerate() {
            if l.units == 0 {
                return bad(format!("layers[{i}].units"), "0".into(), "at least 1");
            }
        }
        if last.units != 1 || last.activation != Activation::Sigmoid {
            return bad(
                format!("layers[{}]", self.layers.len() - 1),
                format!("{} units with {:?}", last.units, last.activation),
                "an output layer of 1 unit with a sigmoid activation",
            );
        }
        if let Some(s) = &self.standardization {
            let n = self.input_features.len();
            if s.mean.len() != n || s.std.len() != n {
                return bad(
                    "standardization".into(),
                    format!("{} means and {} stds", s.mean.len(), s.std.len()),
                    &format!("{n} of each, one per input feature"),
                );
            }
            if let Some(i) = s.mean.iter().position(|m| !m.is_finite()) {
                return bad(
                    format!("standardization.mean[{i}]"),
                    s.mean[i].to_string(),
                    "a finite number",
                );
            }
            if let Some(i) = s.std.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(
                    format!("standardization.std[{i}]"),
                    s.std[i].to_string(),
                    "a finite number > 0",
                );
            }
        }
        self.validate_common()
    }

    /// The checks every kind shares: imputation values, threshold, background, estimator.
    fn validate_common(&self) -> Result<()> {
        let bad = |field: String, value: String, expected: &str| {
            Err(Error::Artifact {
                item: format!("{} field {field}", super::SPEC_FILE),
                message: format!("found {value}, expected {expected}"),
            })
        };
        if let Some(values) = &self.impute {
            let n = self.input_features.len();
            if values.len() != n {
                return bad(
                    "impute".into(),
                    format!("{} values", values.len()),
                    &format!("{n}, one per input feature"),
                );
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return bad(
                    format!("impute[{i}]"),
                    values[i].to_string(),
                    "a finite number",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(
                "threshold".into(),
                self.threshold.to_string(),
                "a probability in [0, 1]",
            );
        }
        if let Some(b) = &self.background {
            b.check(self.input_features.len())
                .map_err(|e| Error::Artifact {
                    item: format!("{} field background", super::SPEC_FILE),
                    message: e.to_string(),
                })?;
        }
        if let Some(c) = &self.cbpe {
            c.validate().map_err(|e| Error::Artifact {
                item: format!("{} field cbpe", super::SPEC_FILE),
                message: e.to_string(),
            })?;
            if c.threshold != f64::from(self.threshold) {
                return bad(
                    "cbpe.threshold".into(),
                    format!("{:?}", c.threshold),
                    &format!(
                        "the model's threshold {:?} (f32 {:?}): the estimator was fitted at another one",
                        f64::from(self.threshold),
                        self.threshold
                    ),
                );
            }
        }
        Ok(())
    }

    /// Reads a spec from the bytes of `model.json` (not yet validated: see
    /// [`ModelSpec::validate`]).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|cause| Error::Json {
            what: super::SPEC_FILE.into(),
            cause,
        })
    }

    /// The expected weight tensors: `(name, shape)` for each layer's weight and bias.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut inputs = self.input_features.len();
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("layers.{i}.weight"), vec![l.units, inputs]));
            out.push((format!("layers.{i}.bias"), vec![l.units]));
            inputs = l.units;
        }
        out
    }
}
