//! A small hyperparameter search for the loop's MLP (mlops-train's `Study`, TPE, two trials at
//! a time) and the settings it picks, which a retrain reuses ([`MlpSettings::trainer`]).
//!
//! ```no_run
//! # fn f(history: &mlops::core::Dataset) -> mlops::lifecycle::Result<()> {
//! use mlops::lifecycle::search::{cut, params_of, search};
//!
//! let window = cut(history, "time")?; // 70% train, 15% validation, 15% holdout, in time order
//! let searched = search(&window, 6, 42)?;
//! for t in &searched.trials {
//!     println!("trial {}: {}", t.number, params_of(t));
//! }
//! let retrainer_settings = searched.settings.trainer(43)?; // the champion's settings, reseeded
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use mlops_core::metrics::ScoredSamples;
use mlops_core::model::MlpModel;
use mlops_core::{Dataset, SplitFractions};
use mlops_train::hpo::{
    Direction, Distribution, ObjectiveConfig, Param, ParamValue, PrunerConfig, SamplerConfig,
    SearchSpace, Study, StudyConfig, TrialRecord,
};
use mlops_train::{MlpConfig, TrainConfig, TrainedModel, Trainer};

use super::{Error, Result};

/// The settings a search picks and a retrain reuses: the MLP's hidden widths, learning rate
/// and dropout (30 epochs of 256 rows).
///
/// ```
/// use mlops::lifecycle::search::MlpSettings;
///
/// let s = MlpSettings { hidden: vec![32, 16], learning_rate: 1e-3, dropout: 0.1 };
/// assert_eq!(s.describe(), "hidden [32, 16], lr 1.00e-3, dropout 0.10");
/// let trainer = s.trainer(7)?;
/// # Ok::<(), mlops::lifecycle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MlpSettings {
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// Dropout after each hidden layer.
    pub dropout: f64,
}

impl MlpSettings {
    /// The settings in words, `hidden [..], lr .., dropout ..`.
    pub fn describe(&self) -> String {
        format!(
            "hidden {:?}, lr {:.2e}, dropout {:.2}",
            self.hidden, self.learning_rate, self.dropout
        )
    }

    /// The settings [`MlpSettings::describe`] wrote (what a version's `hyperparameters`
    /// param holds), read back; an error names the text and the form expected.
    ///
    /// ```
    /// use mlops::lifecycle::search::MlpSettings;
    ///
    /// let s = MlpSettings { hidden: vec![64, 32], learning_rate: 2.5e-3, dropout: 0.05 };
    /// let back = MlpSettings::from_description(&s.describe())?;
    /// assert_eq!(back.hidden, [64, 32]);
    /// assert!((back.learning_rate - 2.5e-3).abs() < 1e-12 && (back.dropout - 0.05).abs() < 1e-12);
    /// assert!(MlpSettings::from_description("hidden [], lr 1, dropout 0").is_err());
    /// # Ok::<(), mlops::lifecycle::Error>(())
    /// ```
    pub fn from_description(text: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "MLP settings",
                format!("{text:?}"),
                "`hidden [W, ...], lr R, dropout D` (MlpSettings::describe)",
            )
        };
        let (hidden, rest) = text
            .strip_prefix("hidden [")
            .and_then(|t| t.split_once("], lr "))
            .ok_or_else(bad)?;
        let (lr, dropout) = rest.split_once(", dropout ").ok_or_else(bad)?;
        let hidden = hidden
            .split(", ")
            .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let learning_rate: f64 = lr.trim().parse().map_err(|_| bad())?;
        let dropout: f64 = dropout.trim().parse().map_err(|_| bad())?;
        if hidden.is_empty()
            || !(learning_rate.is_finite() && learning_rate > 0.0)
            || !(0.0..1.0).contains(&dropout)
        {
            return Err(bad());
        }
        Ok(MlpSettings {
            hidden,
            learning_rate,
            dropout,
        })
    }

    /// The training config with `seed`.
    pub fn train_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            epochs: 30,
            batch_size: 256,
            learning_rate: self.learning_rate,
            seed,
            ..TrainConfig::default()
        }
    }

    /// A trainer with these settings and `seed`.
    pub fn trainer(&self, seed: u64) -> Result<Trainer> {
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
#[derive(Debug, Clone)]
pub struct Window {
    /// The earliest rows: training.
    pub train: Dataset,
    /// The next: early stopping and the threshold.
    pub validation: Dataset,
    /// The latest: the gate's holdout.
    pub holdout: Dataset,
}

/// `window` cut by its `order` column into a [`Window`] (70/15/15).
pub fn cut(window: &Dataset, order: &str) -> Result<Window> {
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

/// What a search returns: the best settings, their model, and every trial.
pub struct Searched {
    /// The best trial's settings.
    pub settings: MlpSettings,
    /// The best trial's model (not retrained).
    pub trained: TrainedModel,
    /// Every trial, in order.
    pub trials: Vec<TrialRecord>,
}

/// A small TPE study over the MLP's width, learning rate and dropout, maximizing validation
/// ROC AUC; two trials at a time. The best trial's model is kept (not retrained).
pub fn search(w: &Window, trials: usize, seed: u64) -> Result<Searched> {
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
    let models: Mutex<BTreeMap<u64, (MlpSettings, TrainedModel)>> = Mutex::new(BTreeMap::new());
    study.optimize(
        |trial| {
            let hyper = MlpSettings {
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
        return Err(Error::NoTrialCompleted { first_error: why });
    };
    let Some((settings, trained)) = models
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&best)
    else {
        return Err(Error::NoTrialCompleted {
            first_error: format!("the best trial {best} left no model"),
        });
    };
    Ok(Searched {
        settings,
        trained,
        trials: study.trials().to_vec(),
    })
}

/// A trial's parameters as `name=value` pairs (floats in scientific notation).
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
