//! The training loop: mini-batch AdamW on the weighted, numerically stable BCE loss, per-epoch
//! validation metrics from mlops-core, early stopping and learning-rate reduction as Keras does
//! them, checkpoints, and export in mlops-core's model format.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use mlops_core::metrics::ScoredSamples;
use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
use mlops_core::{Dataset, SplitFractions};
use ndarray::{Array1, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::callbacks::{Callback, Control, EpochLog};
use crate::checkpoint::{Checkpoint, Watchers};
use crate::config::{candle_device, DeviceConfig, MlpConfig, Monitor, TrainConfig};
use crate::data::{fit_standardization, loss_coefficients, prepare, Prepared};
use crate::engine::device::CandleEngine;
use crate::engine::host::HostEngine;
use crate::engine::{glorot_init, layer_shapes, Engine};
use crate::error::{Error, Result};
use crate::optim::AdamW;

/// Mean training loss per unit of loss weight above which training has diverged (a logit of
/// about this size on the wrong side for the average row).
const LOSS_LIMIT: f64 = 1e3;

/// Rows per forward pass when scoring the validation split.
const EVAL_CHUNK: usize = 8192;

/// A checked pair of configs, ready to fit.
///
/// ```
/// use mlops_core::Dataset;
/// use mlops_train::{MlpConfig, TrainConfig, Trainer};
/// use ndarray::{Array1, Array2, ArrayView2};
///
/// // y = 1 when x0 + x1 > 1.
/// let x = Array2::from_shape_fn((400, 2), |(i, j)| ((i * (7 + 4 * j)) % 101) as f32 / 100.0);
/// let y = Array1::from_shape_fn(400, |i| f32::from(x[[i, 0]] + x[[i, 1]] > 1.0));
/// let data = Dataset::new(x, vec!["x0".into(), "x1".into()])?.with_labels(y, "y")?;
/// let trainer = Trainer::new(
///     MlpConfig { hidden: vec![8], dropout: 0.0, ..MlpConfig::default() },
///     TrainConfig { epochs: 40, batch_size: 32, learning_rate: 0.05, ..TrainConfig::default() },
/// )?;
/// let trained = trainer.fit(&data, None, &mut [])?;
/// assert!(trained.history.last().unwrap().val_roc_auc > 0.95);
/// let model = trained.predictor()?; // mlops-core's reference forward pass
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Trainer {
    mlp: MlpConfig,
    config: TrainConfig,
    checkpoints: Option<PathBuf>,
}

/// Training rows kept with every trained model as the background of its explanations
/// (evenly spaced through the training split; see [`mlops_core::model::Background`]).
pub const BACKGROUND_ROWS: usize = 100;

/// The outcome of [`Trainer::fit`].
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The model in mlops-core's format (standardization included), best weights when early
    /// stopping restores them.
    pub artifact: ModelArtifact,
    /// One log per epoch run (resumed epochs included).
    pub history: Vec<EpochLog>,
    /// The epoch whose weights were exported (the best one when early stopping restores).
    pub exported_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// sha256 fingerprints ([`Dataset::fingerprint`]) of the training and validation splits:
    /// the same strings the tracker logs and the registry's lineage records.
    pub data_sha256: DataFingerprints,
}

/// The sha256 fingerprints of the data a model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataFingerprints {
    /// The training split.
    pub train: String,
    /// The validation split.
    pub validation: String,
}

impl TrainedModel {
    /// The exported model as a [`mlops_core::model::Predictor`].
    pub fn predictor(&self) -> Result<MlpModel> {
        Ok(MlpModel::new(&self.artifact)?)
    }

    /// The exported model's probabilities for the rows of `x`, computed by the trainer's own
    /// candle forward pass on the CPU: the standardization as training applies it
    /// (`(x - mean) / std`), candle's products and activations (`Tensor::silu`, `tanh`, ...)
    /// over the exported weights, and the logistic of the logit as the trainer's validation
    /// metrics take it. An implementation independent of mlops-core's `Activation::apply`
    /// (which the reference [`MlpModel`] and the serving engine share), for checking that what
    /// is served scores what was trained. A row with a NaN or infinite feature gets NaN (the
    /// [`Predictor`](mlops_core::model::Predictor) contract).
    pub fn candle_predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        let spec = self.artifact.spec();
        let n = spec.input_features.len();
        if x.ncols() != n {
            return Err(Error::invalid(
                "batch columns",
                x.ncols(),
                format!("{n} features, as the model was trained on"),
            ));
        }
        let hidden = &spec.layers[..spec.layers.len().saturating_sub(1)];
        let activation = hidden
            .first()
            .map_or(Activation::Identity, |l| l.activation);
        if let Some(other) = hidden.iter().find(|l| l.activation != activation) {
            return Err(Error::invalid(
                "hidden activations",
                format!("{:?} and {:?}", activation, other.activation),
                "one activation in every hidden layer, as mlops-train trains them",
            ));
        }
        let rows = x.nrows();
        if rows == 0 {
            return Ok(Array1::zeros(0));
        }
        let shapes: Vec<(usize, usize)> = self
            .artifact
            .layers()
            .iter()
            .map(|l| l.weight.dim())
            .collect();
        let params: Vec<Vec<f32>> = self
            .artifact
            .layers()
            .iter()
            .flat_map(|l| [l.weight.iter().copied().collect(), l.bias.to_vec()])
            .collect();
        let mut engine = CandleEngine::new(shapes, activation, 0.0, &Device::Cpu)?;
        let mut standardized = Vec::with_capacity(rows * n);
        let mut finite = Vec::with_capacity(rows);
        for row in x.rows() {
            finite.push(row.iter().all(|v| v.is_finite()));
            for (j, &v) in row.iter().enumerate() {
                let v = if v.is_finite() { v } else { 0.0 };
                standardized.push(match &spec.standardization {
                    Some(s) => (v - s.mean[j]) / s.std[j],
                    None => v,
                });
            }
        }
        let mut probs = Vec::with_capacity(rows);
        for start in (0..rows).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(rows);
            let logits = engine.logits(&params, &standardized[start * n..end * n], end - start)?;
            probs.extend(logits.iter().map(|&z| logistic(f64::from(z)) as f32));
        }
        for (p, ok) in probs.iter_mut().zip(finite) {
            if !ok {
                *p = f32::NAN;
            }
        }
        Ok(Array1::from(probs))
    }

    /// The same model with decision threshold `threshold` (in [0, 1]), stored in its
    /// artifact so that it travels into the registry and every predictor loaded from it (see
    /// [`mlops_core::model::ModelArtifact::with_threshold`]).
    pub fn with_threshold(mut self, threshold: f32) -> Result<Self> {
        self.artifact = self.artifact.with_threshold(threshold)?;
        Ok(self)
    }
}

/// Whether `value` improves on `best` by more than `min_delta` in `monitor`'s direction.
fn improves(monitor: Monitor, value: f64, best: Option<f64>, min_delta: f64) -> bool {
    match best {
        None => value.is_finite(),
        Some(b) if monitor.higher_is_better() => value > b + min_delta,
        Some(b) => value < b - min_delta,
    }
}

impl Trainer {
    /// Checks both configs.
    pub fn new(mlp: MlpConfig, config: TrainConfig) -> Result<Self> {
        mlp.validate()?;
        config.validate()?;
        Ok(Trainer {
            mlp,
            config,
            checkpoints: None,
        })
    }

    /// Writes a checkpoint to `dir` after every epoch, and resumes from the one found there
    /// (it must come from the same configs, apart from `epochs` and `threads`, and the same
    /// data). A resumed run ends with the same weights as an uninterrupted one.
    pub fn with_checkpoints(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoints = Some(dir.into());
        self
    }

    /// The network config.
    pub fn mlp_config(&self) -> &MlpConfig {
        &self.mlp
    }

    /// The training config.
    pub fn train_config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains on `train`, validating each epoch on `validation` (or on a stratified
    /// `validation_fraction` of `train`, seeded), and exports the model.
    pub fn fit(
        &self,
        train: &Dataset,
        validation: Option<&Dataset>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<TrainedModel> {
        let split;
        let (train, validation) = match validation {
            Some(v) => (train, v),
            None => {
                let f = self.config.validation_fraction;
                split = train.stratified_split(
                    SplitFractions {
                        train: 1.0 - f,
                        validation: f,
                        test: 0.0,
                    },
                    self.config.seed,
                )?;
                (&split.train, &split.validation)
            }
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.config.threads)
            .build()
            .map_err(|e| {
                Error::invalid("TrainConfig.threads", self.config.threads, e.to_string())
            })?;
        pool.install(|| self.fit_split(train, validation, callbacks))
    }

    fn fit_split(
        &self,
        train: &Dataset,
        validation: &Dataset,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<TrainedModel> {
        let features: Vec<String> = train.feature_names().map(str::to_string).collect();
        let standardization = fit_standardization(train);
        let tr = prepare(train, "training", &standardization, &features)?;
        let va = prepare(validation, "validation", &standardization, &features)?;
        for (role, p) in [("training", &tr), ("validation", &va)] {
            let positives = p.y.iter().filter(|v| **v == 1.0).count();
            if positives == 0 || positives == p.rows {
                return Err(Error::invalid(
                    format!("{role} labels"),
                    format!("{positives} positives in {} rows", p.rows),
                    "both classes present",
                ));
            }
        }
        let (c1, c2) = loss_coefficients(&tr, &self.config);
        let cfg = &self.config;
        let shapes = layer_shapes(tr.cols, &self.mlp.hidden);
        let (activation, dropout) = (self.mlp.activation, self.mlp.dropout);
        let mut engine: Box<dyn Engine> = match cfg.device {
            DeviceConfig::Cpu => Box::new(HostEngine::new(shapes.clone(), activation, dropout)),
            DeviceConfig::Cuda(_) => Box::new(CandleEngine::new(
                shapes.clone(),
                activation,
                dropout,
                &candle_device(cfg.device)?,
            )?),
        };
        let mut init_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut opt = AdamW::new(
            &glorot_init(&shapes, &mut init_rng),
            cfg.learning_rate,
            (cfg.beta1, cfg.beta2),
            cfg.epsilon,
            cfg.weight_decay,
        );
        let data_sha256 = DataFingerprints {
            train: train.fingerprint(),
            validation: validation.fingerprint(),
        };
        let key = self.run_key(&data_sha256)?;
        let mut watchers = Watchers::default();
        let mut history = Vec::new();
        let mut first_epoch = 1;
        if let Some(dir) = &self.checkpoints {
            if let Some(c) = Checkpoint::load(dir, &key)? {
                tracing::info!(epochs_done = c.epochs_done, dir = %dir.display(), "resuming from checkpoint");
                opt = c.optimizer;
                watchers = c.watchers;
                history = c.history;
                first_epoch = c.epochs_done + 1;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_begin(first_epoch, cfg.epochs);
        }
        // The mean loss coefficient: the loss of an untrained model is about ln 2 times it.
        let weight_scale = (c1.iter().map(|&v| f64::from(v)).sum::<f64>() / c1.len().max(1) as f64)
            .max(f64::MIN_POSITIVE);
        let mut stop = watchers.stopped_early;
        let mut epoch = first_epoch;
        while !stop && epoch <= cfg.epochs {
            let started = Instant::now();
            let lr = opt.lr;
            let loss = self.train_epoch(epoch, engine.as_mut(), &mut opt, &tr, &c1, &c2)?;
            // A finite loss can still have exploded: per unit of weight, the binary
            // cross-entropy of a row is about |logit| when it is wrong, so a mean above
            // LOSS_LIMIT means the model is confidently wrong everywhere.
            let per_weight = loss / weight_scale;
            if per_weight > LOSS_LIMIT {
                return Err(Error::LossExploded {
                    epoch,
                    loss,
                    per_weight,
                    limit: LOSS_LIMIT,
                    learning_rate: lr,
                });
            }
            let first_loss = history.first().map_or(loss, |l: &EpochLog| l.loss);
            if first_loss > 0.0 && loss > 10.0 * first_loss {
                tracing::warn!(
                    epoch,
                    loss,
                    first_loss,
                    "training loss is 10x its first epoch's: the learning rate may be too high"
                );
            }
            let mut log = evaluate(engine.as_mut(), &opt.params, &va)?;
            log.epoch = epoch;
            log.learning_rate = lr;
            log.loss = loss;
            log.seconds = started.elapsed().as_secs_f64();
            tracing::debug!(
                epoch,
                loss,
                val_loss = log.val_loss,
                val_roc_auc = log.val_roc_auc,
                "epoch"
            );
            for cb in callbacks.iter_mut() {
                if cb.on_epoch_end(&log) == Control::Stop {
                    stop = true;
                }
            }
            if self.watch(&log, &mut watchers, &mut opt) {
                stop = true;
            }
            history.push(log);
            if let Some(dir) = &self.checkpoints {
                Checkpoint {
                    key: key.clone(),
                    epochs_done: epoch,
                    optimizer: opt.clone(),
                    watchers: watchers.clone(),
                    history: history.clone(),
                }
                .save(dir)?;
            }
            epoch += 1;
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(&history);
        }
        let restore = cfg.early_stopping.is_some_and(|e| e.restore_best_weights);
        let (params, exported_epoch) = match (&watchers.best_params, watchers.best_epoch) {
            (Some(p), Some(e)) if restore => (p.clone(), e),
            _ => (opt.host_params(), history.last().map_or(0, |l| l.epoch)),
        };
        let mut spec = ModelSpec::new(
            features,
            self.mlp
                .hidden
                .iter()
                .map(|&u| LayerSpec::new(u, self.mlp.activation))
                .chain(std::iter::once(LayerSpec::new(1, Activation::Sigmoid)))
                .collect(),
        );
        // A missing feature imputed with its training mean (0 once standardized).
        spec.impute = Some(standardization.mean.clone());
        spec.standardization = Some(standardization);
        // A sample of the training rows kept as the background of the model's explanations.
        spec.background = Some(mlops_core::model::Background::sample(
            train.features(),
            BACKGROUND_ROWS,
        )?);
        spec.metadata.insert("trainer".into(), "mlops-train".into());
        spec.metadata
            .insert("epoch".into(), exported_epoch.to_string());
        spec.metadata.insert("seed".into(), cfg.seed.to_string());
        let layers = shapes
            .iter()
            .zip(params)
            .map(|(&(out, inp), (w, b))| {
                Ok((
                    Array2::from_shape_vec((out, inp), w).map_err(|e| {
                        Error::invalid("exported weight", e, "a matrix of the layer's shape")
                    })?,
                    Array1::from(b),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainedModel {
            artifact: ModelArtifact::new(spec, layers)?,
            history,
            exported_epoch,
            stopped_early: watchers.stopped_early,
            data_sha256,
        })
    }

    /// The checkpoint key: both configs (epochs and threads blanked) and the sha256
    /// fingerprints of the two splits ([`Dataset::fingerprint`], the one the registry's
    /// lineage records).
    fn run_key(&self, data: &DataFingerprints) -> Result<String> {
        let config = TrainConfig {
            epochs: 0,
            threads: 0,
            ..self.config.clone()
        };
        let text = serde_json::to_string(&(&self.mlp, &config, data))
            .map_err(|e| Error::invalid("configs", e, "serializable configs"))?;
        Ok(text)
    }

    /// One pass over the shuffled training rows; the mean loss per row.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &self,
        epoch: usize,
        engine: &mut dyn Engine,
        opt: &mut AdamW,
        tr: &Prepared,
        c1: &[f32],
        c2: &[f32],
    ) -> Result<f64> {
        // Each epoch has its own stream of the seed: shuffling and dropout do not depend on
        // earlier epochs, so a resumed run draws what an uninterrupted one would.
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(epoch as u64);
        let mut order: Vec<usize> = (0..tr.rows).collect();
        order.shuffle(&mut rng);
        let mut total = 0.0f64;
        let batch_size = self.config.batch_size;
        let mut xb = Vec::with_capacity(batch_size * tr.cols);
        let (mut a, mut b) = (
            Vec::with_capacity(batch_size),
            Vec::with_capacity(batch_size),
        );
        let mut grads = opt.zeros_like_params();
        for (batch, rows) in order.chunks(batch_size).enumerate() {
            xb.clear();
            a.clear();
            b.clear();
            for &i in rows {
                xb.extend_from_slice(&tr.x[i * tr.cols..(i + 1) * tr.cols]);
                a.push(c1[i]);
                b.push(c2[i]);
            }
            let value = engine.loss_and_grads(&opt.params, &xb, &a, &b, &mut rng, &mut grads)?;
            if !value.is_finite() || grads.iter().flatten().any(|g| !g.is_finite()) {
                return Err(Error::Diverged {
                    epoch,
                    batch,
                    loss: value as f32,
                });
            }
            opt.apply(&grads);
            total += value * rows.len() as f64;
        }
        Ok(total / tr.rows as f64)
    }

    /// Early stopping and learning-rate reduction after an epoch; true to stop.
    fn watch(&self, log: &EpochLog, w: &mut Watchers, opt: &mut AdamW) -> bool {
        let mut stop = false;
        if let Some(es) = &self.config.early_stopping {
            let value = log.get(es.monitor);
            if improves(es.monitor, value, w.best, es.min_delta) {
                w.best = Some(value);
                w.best_epoch = Some(log.epoch);
                w.wait = 0;
                if es.restore_best_weights {
                    w.best_params = Some(opt.host_params());
                }
            } else {
                w.wait += 1;
                if w.wait >= es.patience {
                    tracing::info!(
                        epoch = log.epoch,
                        monitor = es.monitor.name(),
                        "early stopping"
                    );
                    w.stopped_early = true;
                    stop = true;
                }
            }
        }
        if let Some(rl) = &self.config.reduce_lr {
            let value = log.get(rl.monitor);
            let cooling = w.lr_cooldown > 0;
            if cooling {
                w.lr_cooldown -= 1;
                w.lr_wait = 0;
            }
            if improves(rl.monitor, value, w.lr_best, rl.min_delta) {
                w.lr_best = Some(value);
                w.lr_wait = 0;
            } else if !cooling {
                w.lr_wait += 1;
                if w.lr_wait >= rl.patience && opt.lr > rl.min_lr {
                    let new_lr = (opt.lr * rl.factor).max(rl.min_lr);
                    tracing::info!(
                        epoch = log.epoch,
                        from = opt.lr,
                        to = new_lr,
                        "reducing learning rate"
                    );
                    opt.lr = new_lr;
                    w.lr_cooldown = rl.cooldown;
                    w.lr_wait = 0;
                }
            }
        }
        stop
    }
}

/// The logistic function, in its stable form on either side of 0.
fn logistic(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}

/// Validation metrics of `params` (no dropout).
fn evaluate(engine: &mut dyn Engine, params: &[Vec<f32>], va: &Prepared) -> Result<EpochLog> {
    let mut probs = Vec::with_capacity(va.rows);
    for start in (0..va.rows).step_by(EVAL_CHUNK) {
        let end = (start + EVAL_CHUNK).min(va.rows);
        let logits = engine.logits(params, &va.x[start * va.cols..end * va.cols], end - start)?;
        probs.extend(logits.iter().map(|&z| logistic(f64::from(z))));
    }
    let labels: Vec<f64> = va.y.iter().map(|&v| f64::from(v)).collect();
    let weights: Option<Vec<f64>> = va
        .weights
        .as_ref()
        .map(|w| w.iter().map(|&v| f64::from(v)).collect());
    let s = ScoredSamples::new(&labels, &probs, weights.as_deref())?;
    let confusion = s.confusion(0.5);
    Ok(EpochLog {
        epoch: 0,
        learning_rate: 0.0,
        loss: 0.0,
        val_loss: s.log_loss()?,
        val_roc_auc: s.roc_auc()?,
        val_average_precision: s.average_precision()?,
        val_accuracy: confusion.accuracy(),
        val_precision: confusion.precision(),
        val_recall: confusion.recall(),
        seconds: 0.0,
    })
}
