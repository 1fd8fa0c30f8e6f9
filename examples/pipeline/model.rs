//! Training in the loop: the small hyperparameter search (mlops-train's `Study`, TPE), fitting
//! with the chosen settings, scoring, and the deliberately broken labels of
//! `--corrupt-retrain-labels`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{bail, Context};
use mlops::core::metrics::ScoredSamples;
use mlops::core::model::{MlpModel, Predictor};
use mlops::core::{Dataset, SplitFractions};
use mlops::train::hpo::{
    Direction, Distribution, ObjectiveConfig, Param, ParamValue, PrunerConfig, SamplerConfig,
    SearchSpace, Study, StudyConfig, TrialRecord,
};
use mlops::train::{MlpConfig, TrainConfig, TrainedModel, Trainer};

/// The settings a search picks and a retrain reuses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hyper {
    pub hidden: Vec<usize>,
    pub learning_rate: f64,
    pub dropout: f64,
}

impl Hyper {
    pub fn describe(&self) -> String {
        format!(
            "hidden {:?}, lr {:.2e}, dropout {:.2}",
            self.hidden, self.learning_rate, self.dropout
        )
    }

    pub fn train_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs: 30,
            batch_size: 256,
            learning_rate: self.learning_rate,
            seed,
            ..TrainConfig::default()
        }
    }

    pub fn trainer(&self, seed: u64) -> anyhow::Result<Trainer> {
        Ok(Trainer::new(
            MlpConfig {
                hidden: self.hidden.clone(),
                dropout: self.dropout,
                ..MlpConfig::default()
            },
            self.train_config(seed),
        )?)
    }
}

/// A window cut in time order: the earliest 70% train, the next 15% validate (early stopping,
/// the threshold), the latest 15% are the gate's holdout.
pub struct Window {
    pub train: Dataset,
    pub validation: Dataset,
    pub holdout: Dataset,
}

pub fn cut(window: &Dataset, order: &str) -> anyhow::Result<Window> {
    let s = window.ordered_split(
        order,
        SplitFractions {
            train: 0.7,
            validation: 0.15,
            test: 0.15,
        },
    )?;
    Ok(Window {
        train: s.train,
        validation: s.validation,
        holdout: s.test,
    })
}

/// ROC AUC of `model` on `data`; `None` when it is undefined there (no rows, one class).
pub fn auc(model: &dyn Predictor, data: &Dataset) -> anyhow::Result<Option<f64>> {
    if data.n_rows() == 0 {
        return Ok(None);
    }
    defined_auc(&scored(model, data)?)
}

/// ROC AUC of scores already taken (the served answers' `labels` and `scores`); `None` when it
/// is undefined there (no rows, one class).
pub fn scored_auc(labels: &[f32], scores: &[f32]) -> anyhow::Result<Option<f64>> {
    if labels.is_empty() {
        return Ok(None);
    }
    defined_auc(&ScoredSamples::from_f32(labels, scores, None)?)
}

fn defined_auc(s: &ScoredSamples) -> anyhow::Result<Option<f64>> {
    match s.roc_auc() {
        Ok(v) => Ok(Some(v)),
        Err(mlops::core::Error::UndefinedMetric { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `model`'s scores of `data` with its labels ([`ScoredSamples::of`]: a row the model cannot
/// score is an error naming it).
pub fn scored(model: &dyn Predictor, data: &Dataset) -> anyhow::Result<ScoredSamples> {
    Ok(ScoredSamples::of(model, data)?)
}

/// What a search returns: the best settings, their model, and every trial.
pub struct Searched {
    pub hyper: Hyper,
    pub trained: TrainedModel,
    pub trials: Vec<TrialRecord>,
}

/// A small TPE study over the MLP's width, learning rate and dropout, maximizing validation
/// ROC AUC; two trials at a time. The best trial's model is kept (not retrained).
pub fn search(w: &Window, trials: usize, seed: u64) -> anyhow::Result<Searched> {
    let space = SearchSpace::new(vec![
        Param {
            name: "hidden".into(),
            distribution: Distribution::Categorical {
                choices: vec!["32,16".into(), "64,32".into(), "128,64,32".into()],
            },
            condition: None,
        },
        Param {
            name: "lr".into(),
            distribution: Distribution::LogUniform {
                low: 3e-4,
                high: 1e-2,
            },
            condition: None,
        },
        Param {
            name: "dropout".into(),
            distribution: Distribution::Uniform {
                low: 0.0,
                high: 0.3,
            },
            condition: None,
        },
    ])?;
    let mut study = Study::new(
        StudyConfig {
            name: "pipeline-hpo".into(),
            objective: ObjectiveConfig {
                direction: Direction::Maximize,
                goal: None,
                objective_metric_name: "val_roc_auc".into(),
            },
            parallel_trial_count: 2,
            max_trial_count: trials,
            max_failed_trial_count: 1,
            seed,
            sampler: SamplerConfig::Tpe {
                n_startup_trials: trials.div_ceil(2),
                n_ei_candidates: 24,
            },
            pruner: PrunerConfig::None,
        },
        space,
    )?;
    let models: Mutex<BTreeMap<u64, (Hyper, TrainedModel)>> = Mutex::new(BTreeMap::new());
    study.optimize(
        |trial| {
            let hyper = Hyper {
                hidden: MlpConfig::parse_hidden_sizes(trial.choice("hidden")?)?,
                learning_rate: trial.float("lr")?,
                dropout: trial.float("dropout")?,
            };
            let trainer = Trainer::new(
                MlpConfig {
                    hidden: hyper.hidden.clone(),
                    dropout: hyper.dropout,
                    ..MlpConfig::default()
                },
                hyper.train_config(seed.wrapping_add(trial.number())),
            )?;
            let trained = trainer.fit(&w.train, Some(&w.validation), &mut [])?;
            let model = MlpModel::new(&trained.artifact)?;
            let value = ScoredSamples::of(&model, &w.validation)?.roc_auc()?;
            models
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(trial.number(), (hyper, trained));
            Ok(value)
        },
        &mut |_| {},
    )?;
    let Some(best) = study.best_trial().map(|t| t.number) else {
        // Every trial failed: say why (the first failure's error), not only that they did.
        let why = study
            .trials()
            .iter()
            .find_map(|t| t.error.clone())
            .unwrap_or_else(|| "no trial ran".into());
        bail!("no trial of the search completed: {why}");
    };
    let (hyper, trained) = models
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&best)
        .context("the best trial's model")?;
    Ok(Searched {
        hyper,
        trained,
        trials: study.trials().to_vec(),
    })
}

pub fn params_of(trial: &TrialRecord) -> String {
    trial
        .params
        .iter()
        .map(|(k, v)| match v {
            ParamValue::Float(f) => format!("{k}={f:.3e}"),
            ParamValue::Int(i) => format!("{k}={i}"),
            ParamValue::Choice(c) => format!("{k}={c}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The labels a broken labeling job would produce: instead of confirmed fraud, a rules
/// engine's flag "the top `rate` share of feature F", with `rate` the window's true positive
/// rate (so the base rate looks right) and F the feature that ranks the window's true labels
/// worst (its correlation with them the most negative): a stale rule (in the built-in world,
/// "the oldest accounts", where the new fraud comes from new ones). A model learns the rule perfectly
/// and passes a gate scored on the same labels; only the true labels from production, in the
/// canary, show that it is worse.
pub fn corrupt_labels(window: &Dataset) -> anyhow::Result<(Dataset, String)> {
    let y = window.labels().context("labels to corrupt")?;
    let label = window.label_name().context("a label name")?.to_string();
    let n = window.n_rows();
    let rate = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let corr = |j: usize| -> f64 {
        let x: Vec<f64> = window
            .features()
            .column(j)
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let (mx, my) = (x.iter().sum::<f64>() / n as f64, rate);
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (xi, yi) in x.iter().zip(y.iter()) {
            let (dx, dy) = (xi - mx, f64::from(*yi) - my);
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if sxx == 0.0 || syy == 0.0 {
            f64::INFINITY // a constant column cannot make a rule
        } else {
            sxy / (sxx * syy).sqrt()
        }
    };
    let j = (0..window.n_features())
        .min_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .context("a feature")?;
    let mut values: Vec<f32> = window.features().column(j).to_vec();
    values.sort_by(f32::total_cmp);
    let k = ((rate * n as f64).round() as usize).clamp(1, n);
    let cut = values[n - k];
    let column = window.features().column(j).to_owned();
    let flags = column.mapv(|v| f32::from(u8::from(v >= cut)));
    let name = window
        .feature_names()
        .nth(j)
        .unwrap_or_default()
        .to_string();
    Ok((
        window.clone().with_labels(flags, label)?,
        format!(
            "labels replaced by the rule `{name} >= {cut}` (top {:.2}% of the window)",
            rate * 100.0
        ),
    ))
}
