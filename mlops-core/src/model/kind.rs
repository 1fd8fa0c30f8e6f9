//! What kind of model an artifact holds, and which file carries its body.

use serde::{Deserialize, Serialize};

use super::artifact::WEIGHTS_FILE;
use crate::error::{Error, Result};

/// The kind of model an artifact holds. Serialized as `kind` in `model.json`; files without it
/// are [`ModelKind::Mlp`], so every earlier artifact loads unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// mlops-train's multilayer perceptron: layers in the spec, weights in `model.safetensors`.
    #[default]
    Mlp,
    /// An XGBoost model in its JSON format, kept as `model.xgboost.json`.
    Xgboost,
    /// A LightGBM model in its text format, kept as `model.lightgbm.txt`.
    Lightgbm,
    /// An ONNX model (a binary classifier's graph: one float input `[batch, features]`, one
    /// probability output), kept as `model.onnx`, run by tract (feature `onnx`).
    Onnx,
}

/// File name of an XGBoost model's body inside an artifact.
pub const XGBOOST_FILE: &str = "model.xgboost.json";
/// File name of a LightGBM model's body inside an artifact.
pub const LIGHTGBM_FILE: &str = "model.lightgbm.txt";
/// File name of an ONNX model's body inside an artifact.
pub const ONNX_FILE: &str = "model.onnx";

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Mlp,
        ModelKind::Xgboost,
        ModelKind::Lightgbm,
        ModelKind::Onnx,
    ];

    /// The serialized name (`mlp`, `xgboost`, `lightgbm`, `onnx`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Xgboost => "xgboost",
            ModelKind::Lightgbm => "lightgbm",
            ModelKind::Onnx => "onnx",
        }
    }

    /// The file beside `model.json` that holds the model's body (weights, or the tree model
    /// as its library wrote it).
    pub fn body_file(self) -> &'static str {
        match self {
            ModelKind::Mlp => WEIGHTS_FILE,
            ModelKind::Xgboost => XGBOOST_FILE,
            ModelKind::Lightgbm => LIGHTGBM_FILE,
            ModelKind::Onnx => ONNX_FILE,
        }
    }

    /// Whether missing values (NaN) are part of every such model's input language (tree
    /// models route them by their default directions), rather than a row it cannot score.
    /// For ONNX it depends on the graph: see
    /// [`ModelArtifact::reads_missing_values`](super::ModelArtifact::reads_missing_values).
    pub fn reads_missing_values(self) -> bool {
        matches!(self, ModelKind::Xgboost | ModelKind::Lightgbm)
    }

    /// The kind of a model file, from its contents (and its name, `file` in errors): XGBoost's
    /// JSON (an object with a `learner`) or UBJSON, LightGBM's text (starts with `tree` and a
    /// `version=` line), ONNX's protobuf (named `.onnx`, or starting with the `ir_version`
    /// field). An mlops MLP is a folder (`model.json` + `model.safetensors`), not one
    /// file. Anything else is an error naming the file and what was expected.
    ///
    /// ```
    /// use mlops_core::model::ModelKind;
    /// assert_eq!(ModelKind::guess("m.txt", b"tree\nversion=v4\n")?, ModelKind::Lightgbm);
    /// assert_eq!(ModelKind::guess("m.json", br#"{"learner": {}, "version": [3, 2, 0]}"#)?, ModelKind::Xgboost);
    /// assert_eq!(ModelKind::guess("m.onnx", b"\x08\x08\x12\x07skl2onnx")?, ModelKind::Onnx);
    /// assert!(ModelKind::guess("m.bin", b"\x00\x01").is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn guess(file: &str, bytes: &[u8]) -> Result<ModelKind> {
        let head = &bytes[..bytes.len().min(4096)];
        let text = String::from_utf8_lossy(head);
        if text.starts_with("tree\n") || text.starts_with("tree\r\n") {
            return Ok(ModelKind::Lightgbm);
        }
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') && trimmed.contains("\"learner\"") {
            return Ok(ModelKind::Xgboost);
        }
        // UBJSON: '{' then a length-prefixed key ('L' or 'i' type markers), "learner" inside.
        if head.first() == Some(&b'{') && text.contains("learner") {
            return Ok(ModelKind::Xgboost);
        }
        // ModelProto's first field is `ir_version` (field 1, varint: tag byte 0x08).
        if head.first() == Some(&0x08) || file.to_ascii_lowercase().ends_with(".onnx") {
            return Ok(ModelKind::Onnx);
        }
        Err(Error::invalid(
            format!("model file {file}"),
            format!("{} bytes of unknown content", bytes.len()),
            "an XGBoost JSON model (an object with a `learner`), a LightGBM text model (starting with `tree`), an ONNX model (.onnx), or an mlops model folder (model.json + model.safetensors); name the kind with --kind",
        ))
    }
}

/// How to read an ONNX graph ([`ModelArtifact::from_onnx`](super::ModelArtifact::from_onnx)):
/// which output holds the probability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// The graph output to read when the graph has several (skl2onnx's and onnxmltools'
    /// classifiers have `label` and `probabilities`). `None`: the graph's only output.
    pub output: Option<String>,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "model kind",
                    format!("{s:?}"),
                    "mlp, xgboost, lightgbm or onnx",
                )
            })
    }
}
