//! Hyperparameters: the network ([`MlpConfig`]) and the training run ([`TrainConfig`]), plain
//! serde data with the seed's Keras model as defaults, checked before any work starts.

use candle_core::Device;
use mlops_core::model::Activation;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The network: dense hidden layers with one activation and dropout after each, then one
/// logit. The input width comes from the data.
///
/// Defaults are the seed's Keras model: `Dense(128) - Dense(64) - Dense(32)`, ReLU, dropout 0.3.
///
/// ```
/// use mlops_train::MlpConfig;
///
/// let c: MlpConfig = serde_json::from_str(r#"{"hidden": [64, 16], "dropout": 0.1}"#).unwrap();
/// assert_eq!(c.hidden, vec![64, 16]);
/// assert!(c.validate().is_ok());
/// assert!(MlpConfig { dropout: 1.0, ..MlpConfig::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    /// Widths of the hidden layers, input side first (may be empty: logistic regression).
    pub hidden: Vec<usize>,
    /// Activation of every hidden layer (`relu`, `tanh`, `silu`, `sigmoid`, `identity`).
    pub activation: Activation,
    /// Dropout rate after each hidden layer during training, in `[0, 1)`.
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: vec![128, 64, 32],
            activation: Activation::Relu,
            dropout: 0.3,
        }
    }
}

impl MlpConfig {
    /// Most hidden layers a network may have.
    pub const MAX_HIDDEN_LAYERS: usize = 64;

    /// Parses hidden-layer widths written as one string, input side first: `"128,64,32"`
    /// (spaces around entries allowed). The one parse of this format: an empty entry, a
    /// non-number, a width of 0 or more than [`MAX_HIDDEN_LAYERS`](Self::MAX_HIDDEN_LAYERS)
    /// layers is an error naming the entry, its value and what was expected.
    ///
    /// ```
    /// use mlops_train::MlpConfig;
    ///
    /// assert_eq!(MlpConfig::parse_hidden_sizes("128, 64,32")?, vec![128, 64, 32]);
    /// let e = MlpConfig::parse_hidden_sizes("64,x,32").unwrap_err().to_string();
    /// assert!(e.contains("MlpConfig.hidden[1] = \"x\""), "{e}");
    /// for bad in ["", "64,", "64,,32", "0", "-1", "1.5"] {
    ///     assert!(MlpConfig::parse_hidden_sizes(bad).is_err(), "{bad:?}");
    /// }
    /// # Ok::<(), mlops_train::Error>(())
    /// ```
    pub fn parse_hidden_sizes(text: &str) -> Result<Vec<usize>> {
        let hidden = text
            .split(',')
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.trim();
                entry.parse::<usize>().map_err(|_| {
                    Error::invalid(
                        format!("MlpConfig.hidden[{i}]"),
                        format!("{entry:?}"),
                        "a layer width from 1 (widths comma-separated, e.g. 128,64,32)",
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        check_hidden(&hidden)?;
        Ok(hidden)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_hidden(&self.hidden)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                "MlpConfig.dropout",
                self.dropout,
                "a rate in [0, 1)",
            ));
        }
        Ok(())
    }
}

/// The widths' rule, for [`MlpConfig::validate`] and [`MlpConfig::parse_hidden_sizes`]: at
/// most [`MlpConfig::MAX_HIDDEN_LAYERS`] layers, each at least 1 unit wide.
fn check_hidden(hidden: &[usize]) -> Result<()> {
    if hidden.len() > MlpConfig::MAX_HIDDEN_LAYERS {
        return Err(Error::invalid(
            "MlpConfig.hidden",
            format!("{} layers", hidden.len()),
            format!("at most {} layers", MlpConfig::MAX_HIDDEN_LAYERS),
        ));
    }
    if let Some(i) = hidden.iter().position(|&u| u == 0) {
        return Err(Error::invalid(
            format!("MlpConfig.hidden[{i}]"),
            0,
            "at least 1 unit",
        ));
    }
    Ok(())
}

/// Where the tensors live. Written `"cpu"`, `"cuda"` (GPU 0), `"cuda:N"` or `{"cuda": N}`.
///
/// ```
/// use mlops_train::DeviceConfig;
///
/// assert_eq!("cuda:1".parse::<DeviceConfig>()?, DeviceConfig::Cuda(1));
/// let d: DeviceConfig = serde_json::from_str("\"cuda\"").unwrap();
/// assert_eq!(d, DeviceConfig::Cuda(0));
/// let e = serde_json::from_str::<DeviceConfig>("\"gpu\"").unwrap_err();
/// assert!(e.to_string().contains("\"cpu\", \"cuda\" or \"cuda:N\""), "{e}");
/// # Ok::<(), mlops_train::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceConfig {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal; needs the `cuda` cargo feature and a GPU.
    Cuda(usize),
}

impl DeviceConfig {
    /// Whether this device can be used here: `Ok` for the CPU, and for a CUDA GPU that exists
    /// in a build with the `cuda` feature; otherwise an error that says why (no CUDA support
    /// in this build, no driver, no such GPU).
    ///
    /// ```
    /// use mlops_train::DeviceConfig;
    ///
    /// assert!(DeviceConfig::Cpu.check().is_ok());
    /// # #[cfg(not(feature = "cuda"))]
    /// assert!(DeviceConfig::Cuda(0).check().unwrap_err().to_string().contains("`cuda` feature"));
    /// ```
    pub fn check(self) -> Result<()> {
        candle_device(self).map(|_| ())
    }
}

impl std::str::FromStr for DeviceConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => return Ok(DeviceConfig::Cpu),
            "cuda" => return Ok(DeviceConfig::Cuda(0)),
            _ => {}
        }
        t.strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceConfig::Cuda)
            .ok_or_else(|| {
                Error::invalid(
                    "device",
                    format!("{s:?}"),
                    "\"cpu\", \"cuda\" or \"cuda:N\" (N the GPU ordinal), or {\"cuda\": N}",
                )
            })
    }
}

impl<'de> Deserialize<'de> for DeviceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Map { cuda: usize },
        }
        match Form::deserialize(d).map_err(|_| {
            D::Error::custom(
                "invalid device: expected \"cpu\", \"cuda\" or \"cuda:N\" (N the GPU ordinal), or {\"cuda\": N}",
            )
        })? {
            Form::Text(s) => s.parse().map_err(D::Error::custom),
            Form::Map { cuda } => Ok(DeviceConfig::Cuda(cuda)),
        }
    }
}

/// A validation metric to watch for early stopping and learning-rate reduction: `loss`,
/// `val_loss`, and `val_` + a [`Metric`](mlops_core::metrics::Metric) name (`val_roc_auc`;
/// `val_auc` still reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Training loss (lower is better).
    Loss,
    /// Validation log loss (lower is better).
    ValLoss,
    /// Validation ROC AUC (higher is better).
    #[serde(alias = "val_auc")]
    ValRocAuc,
    /// Validation average precision (higher is better).
    ValAveragePrecision,
    /// Validation accuracy at 0.5 (higher is better).
    ValAccuracy,
    /// Validation precision at 0.5 (higher is better).
    ValPrecision,
    /// Validation recall at 0.5 (higher is better).
    ValRecall,
}

impl Monitor {
    /// Every variant, in declaration order.
    pub const ALL: [Monitor; 7] = [
        Monitor::Loss,
        Monitor::ValLoss,
        Monitor::ValRocAuc,
        Monitor::ValAveragePrecision,
        Monitor::ValAccuracy,
        Monitor::ValPrecision,
        Monitor::ValRecall,
    ];

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Monitor::Loss | Monitor::ValLoss)
    }

    /// The name in logs (`val_roc_auc`, ...). The serialized name, as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Monitor::Loss => "loss",
            Monitor::ValLoss => "val_loss",
            Monitor::ValRocAuc => "val_roc_auc",
            Monitor::ValAveragePrecision => "val_average_precision",
            Monitor::ValAccuracy => "val_accuracy",
            Monitor::ValPrecision => "val_precision",
            Monitor::ValRecall => "val_recall",
        }
    }

    /// The same as [`as_str`](Self::as_str).
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Keras' `EarlyStopping`: stop when `monitor` has not improved by more than `min_delta` for
/// `patience` epochs; optionally restore the best epoch's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// The metric watched (default `val_loss`).
    pub monitor: Monitor,
    /// Epochs without improvement before stopping (default 5, the seed's).
    pub patience: usize,
    /// Smallest change that counts as an improvement (default 0).
    pub min_delta: f64,
    /// Put back the best epoch's weights at the end (default true).
    pub restore_best_weights: bool,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig {
            monitor: Monitor::ValLoss,
            patience: 5,
            min_delta: 0.0,
            restore_best_weights: true,
        }
    }
}

/// Keras' `ReduceLROnPlateau`: multiply the learning rate by `factor` when `monitor` has not
/// improved by more than `min_delta` for `patience` epochs, then wait `cooldown` epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReduceLrConfig {
    /// The metric watched (default `val_loss`).
    pub monitor: Monitor,
    /// Multiplier in (0, 1) (default 0.1, Keras').
    pub factor: f64,
    /// Epochs without improvement before reducing (default 3, the seed's).
    pub patience: usize,
    /// Smallest change that counts as an improvement (default 1e-4, Keras').
    pub min_delta: f64,
    /// Epochs to wait after a reduction (default 0).
    pub cooldown: usize,
    /// The learning rate never goes below this (default 0).
    pub min_lr: f64,
}

impl Default for ReduceLrConfig {
    fn default() -> Self {
        ReduceLrConfig {
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 3,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

/// Class weights (Keras' `class_weight`): each row's loss is multiplied by its class's weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Explicit weights.
    Weights {
        /// Weight of label 0.
        negative: f64,
        /// Weight of label 1.
        positive: f64,
    },
    /// scikit-learn's `balanced`: `n / (2 * count(class))` on the training split.
    Balanced,
}

/// One training run.
///
/// Defaults: the seed's Keras setup (Adam 1e-3 — AdamW with `weight_decay` 0 —, binary
/// cross-entropy, early stopping on `val_loss` with patience 5 and best weights restored,
/// `ReduceLROnPlateau` patience 3), 100 epochs at most, batch 256, seed 42, one thread, CPU,
/// a 10% stratified validation split when no validation set is given.
///
/// ```
/// use mlops_train::TrainConfig;
///
/// let c: TrainConfig = serde_json::from_str(r#"{"epochs": 20, "batch_size": 512, "pos_weight": 3.0}"#).unwrap();
/// assert_eq!(c.learning_rate, 1e-3);
/// assert!(c.validate().is_ok());
/// assert!(TrainConfig { batch_size: 0, ..TrainConfig::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Most epochs (early stopping may end sooner).
    pub epochs: usize,
    /// Rows per optimizer step.
    pub batch_size: usize,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay of AdamW; 0 is Adam.
    pub weight_decay: f64,
    /// Adam's β₁.
    pub beta1: f64,
    /// Adam's β₂.
    pub beta2: f64,
    /// Adam's ε (Keras' default 1e-7).
    pub epsilon: f64,
    /// Weight of the positive term of the loss (PyTorch's `pos_weight`).
    pub pos_weight: Option<f64>,
    /// Per-class weights of the loss (Keras' `class_weight`).
    pub class_weight: Option<ClassWeight>,
    /// Use the dataset's sample weights in the training loss (default true).
    pub use_sample_weights: bool,
    /// Seeds weight initialization, shuffling, dropout and the validation split.
    pub seed: u64,
    /// Worker threads of the trainer's pool (candle's kernels on the candle engine). The CPU
    /// engine computes each training step on one thread, so its order of operations never
    /// changes; results do not depend on this setting.
    pub threads: usize,
    /// Where to train.
    pub device: DeviceConfig,
    /// Share of the training rows held out (stratified) for validation when no validation
    /// set is passed, in (0, 0.5].
    pub validation_fraction: f64,
    /// Early stopping (`None`: run every epoch).
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// Learning-rate reduction on plateaus (`None`: constant rate).
    pub reduce_lr: Option<ReduceLrConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 256,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            pos_weight: None,
            class_weight: None,
            use_sample_weights: true,
            seed: 42,
            threads: 1,
            device: DeviceConfig::Cpu,
            validation_fraction: 0.1,
            early_stopping: Some(EarlyStoppingConfig::default()),
            reduce_lr: Some(ReduceLrConfig::default()),
        }
    }
}

fn positive_finite(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(field, v, "a finite number > 0"))
    }
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("TrainConfig.epochs", 0, "at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("TrainConfig.batch_size", 0, "at least 1"));
        }
        if self.threads == 0 {
            return Err(Error::invalid("TrainConfig.threads", 0, "at least 1"));
        }
        positive_finite("TrainConfig.learning_rate", self.learning_rate)?;
        positive_finite("TrainConfig.epsilon", self.epsilon)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "TrainConfig.weight_decay",
                self.weight_decay,
                "a finite number >= 0",
            ));
        }
        for (field, b) in [
            ("TrainConfig.beta1", self.beta1),
            ("TrainConfig.beta2", self.beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(field, b, "a number in [0, 1)"));
            }
        }
        if let Some(w) = self.pos_weight {
            positive_finite("TrainConfig.pos_weight", w)?;
        }
        if let Some(ClassWeight::Weights { negative, positive }) = self.class_weight {
            positive_finite("TrainConfig.class_weight.negative", negative)?;
            positive_finite("TrainConfig.class_weight.positive", positive)?;
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return Err(Error::invalid(
                "TrainConfig.validation_fraction",
                self.validation_fraction,
                "a share in (0, 0.5]",
            ));
        }
        if let Some(r) = &self.reduce_lr {
            if !(r.factor > 0.0 && r.factor < 1.0) {
                return Err(Error::invalid(
                    "TrainConfig.reduce_lr.factor",
                    r.factor,
                    "a multiplier in (0, 1)",
                ));
            }
            if !(r.min_lr.is_finite() && r.min_lr >= 0.0) {
                return Err(Error::invalid(
                    "TrainConfig.reduce_lr.min_lr",
                    r.min_lr,
                    "a finite number >= 0",
                ));
            }
            if !(r.min_delta.is_finite() && r.min_delta >= 0.0) {
                return Err(Error::invalid(
                    "TrainConfig.reduce_lr.min_delta",
                    r.min_delta,
                    "a finite number >= 0",
                ));
            }
        }
        if let Some(e) = &self.early_stopping {
            if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
                return Err(Error::invalid(
                    "TrainConfig.early_stopping.min_delta",
                    e.min_delta,
                    "a finite number >= 0",
                ));
            }
        }
        Ok(())
    }
}

/// The candle device for a config; a clear error where it cannot exist (see
/// [`DeviceConfig::check`], the public face of this).
pub(crate) fn candle_device(config: DeviceConfig) -> Result<Device> {
    match config {
        DeviceConfig::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceConfig::Cuda(ordinal) => {
            // cudarc loads the driver library on first use and panics when it is missing (a
            // machine without a GPU): that becomes an error here too.
            match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
                Ok(Ok(device)) => Ok(device),
                Ok(Err(e)) => Err(Error::invalid(
                    "TrainConfig.device",
                    format!("cuda({ordinal})"),
                    format!("a CUDA device that exists ({e})"),
                )),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown failure".into());
                    Err(Error::invalid(
                        "TrainConfig.device",
                        format!("cuda({ordinal})"),
                        format!(
                            "a machine with a CUDA driver and GPU (loading CUDA failed: {why})"
                        ),
                    ))
                }
            }
        }
        #[cfg(not(feature = "cuda"))]
        DeviceConfig::Cuda(ordinal) => Err(Error::invalid(
            "TrainConfig.device",
            format!("cuda({ordinal})"),
            "cpu: this build has no CUDA support (build with the `cuda` feature)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_sizes_parse_once_and_bad_entries_name_field_value_and_expectation() {
        assert_eq!(
            MlpConfig::parse_hidden_sizes(" 128 ,64,32 ").unwrap(),
            vec![128, 64, 32]
        );
        assert_eq!(MlpConfig::parse_hidden_sizes("7").unwrap(), vec![7]);
        let widest = vec!["8"; MlpConfig::MAX_HIDDEN_LAYERS].join(",");
        assert_eq!(
            MlpConfig::parse_hidden_sizes(&widest).unwrap().len(),
            MlpConfig::MAX_HIDDEN_LAYERS
        );
        for (text, field, value, expected) in [
            ("", "MlpConfig.hidden[0]", "\"\"", "a layer width from 1"),
            (
                "64,,32",
                "MlpConfig.hidden[1]",
                "\"\"",
                "a layer width from 1",
            ),
            (
                "64,32,",
                "MlpConfig.hidden[2]",
                "\"\"",
                "a layer width from 1",
            ),
            (
                "64,x,32",
                "MlpConfig.hidden[1]",
                "\"x\"",
                "a layer width from 1",
            ),
            (
                "-3",
                "MlpConfig.hidden[0]",
                "\"-3\"",
                "a layer width from 1",
            ),
            ("64,0", "MlpConfig.hidden[1]", "0", "at least 1 unit"),
            (
                &format!("{widest},8"),
                "MlpConfig.hidden",
                "65 layers",
                "at most 64 layers",
            ),
        ] {
            let e = MlpConfig::parse_hidden_sizes(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid {field} = {value}: expected {expected}")),
                "{text:?}: {e}"
            );
        }
        // The same rule as a config built in code.
        let deep = MlpConfig {
            hidden: vec![1; MlpConfig::MAX_HIDDEN_LAYERS + 1],
            ..MlpConfig::default()
        };
        assert!(deep
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 64 layers"));
    }
}
