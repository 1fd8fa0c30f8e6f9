//! The [`Retrainer`]: a labeled window in, a gated candidate under `canary` (or the reasons it
//! is not) out.

use std::collections::BTreeMap;
use std::sync::Arc;

use mlops_core::cbpe::{CalibrationReport, Cbpe, CbpeCalibration};
use mlops_core::fairness::{FairnessData, FairnessDecision, FairnessGate, SensitiveGroups};
use mlops_core::gate::{GateDecision, GateRule, MetricGate, MetricValues};
use mlops_core::importance::{
    permutation_importance, ImportanceConfig, StabilityResult, TopKStability,
};
use mlops_core::metrics::{Metric, ScoredSamples, ThresholdCriterion};
use mlops_core::model::{Background, MlpModel, ModelArtifact, Predictor};
use mlops_core::validation::{ValidationReport, ValidationSuite};
use mlops_core::{Dataset, RunId, Schema, SplitFractions};
use mlops_drift::{ProfileConfig, ReferenceProfile};
use mlops_registry::{DatasetFingerprint, Lineage, NewVersion, Registry};
use mlops_train::tracking::{log_training, ExperimentTracker};
use mlops_train::Trainer;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// How a window is retrained, as written (serde; checked into [`RetrainSettings`]).
///
/// ```
/// use mlops::lifecycle::RetrainConfig;
///
/// let settings = RetrainConfig { min_auc: 0.8, ..RetrainConfig::default() }.check()?;
/// assert_eq!(settings.canary_alias, "canary");
/// assert!(RetrainConfig { min_auc: 1.5, ..RetrainConfig::default() }.check().is_err());
/// # Ok::<(), mlops::lifecycle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrainConfig {
    /// The column that orders the window in time (the split is by time: the earliest rows
    /// train, the next validate, the latest are the gate's holdout).
    pub order_column: String,
    /// Share of the window that trains (default 0.7).
    pub train_fraction: f64,
    /// Share that validates: early stopping and the threshold at the best F1 (default 0.15).
    pub validation_fraction: f64,
    /// Share that is the holdout both models are scored on (default 0.15); the three sum to 1.
    pub holdout_fraction: f64,
    /// The gate's smallest ROC AUC on the holdout, in [0.5, 1] (default 0.9).
    pub min_auc: f64,
    /// How much lower than the champion's ROC AUC the candidate's may be, in [0, 0.5]
    /// (default 0: no worse).
    pub champion_tolerance: f64,
    /// Fewest rows of each class (0 and 1) the holdout must hold for the gate to judge on it
    /// (default 5, at least 1): a ROC AUC of one or two rows is no evidence, and a smaller
    /// holdout fails the gate with the counts said.
    pub min_holdout_per_class: usize,
    /// The alias a candidate that passed is pointed at (default `canary`).
    pub canary_alias: String,
    /// Register a candidate that failed the gate too, tagged `gate=failed` (default false:
    /// nothing is registered).
    pub register_rejected: bool,
    /// A fairness gate on the holdout too, each row's group the value of one of the schema's
    /// features (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness: Option<RetrainFairness>,
    /// A top-k stability rule on permutation importance: the candidate's most important
    /// features on the holdout must overlap the champion's (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance: Option<RetrainImportance>,
}

/// The importance part of a retrain's gate: permutation importance (ROC AUC, scikit-learn's
/// definition) of the candidate and the champion on the same holdout rows and shuffles, and
/// [`TopKStability`] between them.
///
/// ```
/// use mlops::lifecycle::RetrainConfig;
///
/// let config: RetrainConfig = toml::from_str(r#"
///     [importance]
///     rule = { k = 3, min_overlap = 2 }
///     n_repeats = 5
/// "#)?;
/// assert_eq!(config.check()?.importance.unwrap().rule.k, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainImportance {
    /// `k` and the overlap required.
    pub rule: TopKStability,
    /// Shuffles per feature (default 5, 1 to 1,000).
    #[serde(default = "default_repeats")]
    pub n_repeats: usize,
    /// Holdout rows used, drawn once (default all).
    #[serde(default)]
    pub max_samples: Option<usize>,
}

fn default_repeats() -> usize {
    5
}

/// The fairness part of a retrain's gate: [`FairnessGate`]'s rules judged on the holdout for
/// the candidate (and the champion, on the same rows, where a rule compares), each row's
/// sensitive group the value of `group_feature`.
///
/// ```
/// use mlops::lifecycle::RetrainConfig;
///
/// let config: RetrainConfig = toml::from_str(r#"
///     [fairness]
///     group_feature = "region"
///     [fairness.gate]
///     rules = [{ disparity = { measure = "equalized_odds_difference" }, champion_tolerance = 0.02 }]
/// "#)?;
/// let settings = config.check()?;
/// assert_eq!(settings.fairness.as_ref().unwrap().group_feature, "region");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainFairness {
    /// The feature whose value is each row's sensitive group (a categorical code, say).
    pub group_feature: String,
    /// The rules, the minimum group size and the bootstrap.
    pub gate: FairnessGate,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        RetrainConfig {
            order_column: "time".into(),
            train_fraction: 0.7,
            validation_fraction: 0.15,
            holdout_fraction: 0.15,
            min_auc: 0.9,
            champion_tolerance: 0.0,
            min_holdout_per_class: 5,
            canary_alias: "canary".into(),
            register_rejected: false,
            fairness: None,
            importance: None,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`RetrainConfig`]: what a [`Retrainer`] works with.
    #[derive(Debug, Clone, PartialEq)]
    pub struct RetrainSettings(RetrainConfig);
}

impl RetrainConfig {
    /// Checks every field, naming the first bad one.
    pub fn check(self) -> Result<RetrainSettings> {
        if self.order_column.is_empty() {
            return Err(Error::invalid(
                "RetrainConfig.order_column",
                "\"\"",
                "the name of the window's time column",
            ));
        }
        self.fractions()?;
        if !(0.5..=1.0).contains(&self.min_auc) {
            return Err(Error::invalid(
                "RetrainConfig.min_auc",
                self.min_auc,
                "a ROC AUC in [0.5, 1]",
            ));
        }
        if !(0.0..=0.5).contains(&self.champion_tolerance) {
            return Err(Error::invalid(
                "RetrainConfig.champion_tolerance",
                self.champion_tolerance,
                "a ROC AUC difference in [0, 0.5]",
            ));
        }
        if self.min_holdout_per_class == 0 {
            return Err(Error::invalid(
                "RetrainConfig.min_holdout_per_class",
                0,
                "at least 1 row of each class",
            ));
        }
        if !mlops_core::version_ref::is_plain_name(&self.canary_alias)
            || self.canary_alias == mlops_core::version_ref::LATEST
        {
            return Err(Error::invalid(
                "RetrainConfig.canary_alias",
                format!("{:?}", self.canary_alias),
                format!(
                    "an alias name: {}, not `latest`",
                    mlops_core::version_ref::PLAIN_NAME
                ),
            ));
        }
        self.gate()?;
        if let Some(f) = &self.fairness {
            if f.group_feature.is_empty() {
                return Err(Error::invalid(
                    "RetrainConfig.fairness.group_feature",
                    "\"\"",
                    "the name of the feature that holds each row's sensitive group",
                ));
            }
            f.gate.validate()?;
        }
        if let Some(i) = &self.importance {
            if i.rule.k == 0 || i.rule.min_overlap > i.rule.k {
                return Err(Error::invalid(
                    "RetrainConfig.importance.rule",
                    format!("k {} min_overlap {}", i.rule.k, i.rule.min_overlap),
                    "k at least 1 and min_overlap at most k",
                ));
            }
            if i.max_samples.is_some_and(|m| m < 2) {
                return Err(Error::invalid(
                    "RetrainConfig.importance.max_samples",
                    format!("{:?}", i.max_samples),
                    "at least 2 rows, or none for the whole holdout",
                ));
            }
            if !(1..=1000).contains(&i.n_repeats) {
                return Err(Error::invalid(
                    "RetrainConfig.importance.n_repeats",
                    i.n_repeats,
                    "from 1 to 1000",
                ));
            }
        }
        Ok(RetrainSettings { config: self })
    }

    fn fractions(&self) -> Result<SplitFractions> {
        let f = SplitFractions {
            train: self.train_fraction,
            validation: self.validation_fraction,
            test: self.holdout_fraction,
        };
        if !(f.validation > 0.0 && f.test > 0.0) {
            return Err(Error::invalid(
                "RetrainConfig.validation_fraction, RetrainConfig.holdout_fraction",
                format!("{}, {}", f.validation, f.test),
                "two positive shares (early stopping and the gate need rows)",
            ));
        }
        f.validate()?;
        Ok(f)
    }

    /// The gate: ROC AUC at least `min_auc`, and no lower than the champion's by more than
    /// `champion_tolerance` on the same holdout.
    pub fn gate(&self) -> Result<MetricGate> {
        let gate = MetricGate {
            rules: vec![
                GateRule::Min {
                    metric: Metric::RocAuc,
                    value: self.min_auc,
                },
                GateRule::Champion {
                    metric: Metric::RocAuc,
                    tolerance: self.champion_tolerance,
                    use_confidence_bound: false,
                },
            ],
            ..MetricGate::default()
        };
        gate.validate()?;
        Ok(gate)
    }
}

/// Where a retrain's training is tracked.
pub struct Tracking<'a> {
    /// The tracker.
    pub tracker: &'a dyn ExperimentTracker,
    /// The experiment.
    pub experiment: &'a str,
    /// The run's name.
    pub run_name: &'a str,
    /// The run's tags.
    pub tags: &'a BTreeMap<String, String>,
}

/// One retrain: the window, the settings to fit with, the champion to beat.
pub struct RetrainRequest<'a> {
    /// The labeled window (features in the model's schema, its order column, labels).
    pub window: &'a Dataset,
    /// The champion's settings (its `Trainer`, seeded by the host).
    pub trainer: &'a Trainer,
    /// The champion, re-scored on the candidate's holdout.
    pub champion: &'a dyn Predictor,
    /// The champion's version (the candidate's lineage parent).
    pub champion_version: u64,
    /// What the canary alias pointed at when the host decided to retrain: the
    /// compare-and-swap moves it only from there (of two retrainers, one wins).
    pub expected_canary: Option<u64>,
    /// Tracking of the fit (`None`: not tracked).
    pub tracking: Option<Tracking<'a>>,
    /// The version's description.
    pub description: String,
    /// Extra tags and params of the version (`role=retrain` and `gate` are set here).
    pub tags: Vec<(String, String)>,
    /// Params of the version (the settings, say).
    pub params: Vec<(String, String)>,
}

/// What a retrain made: the candidate, its metrics and the champion's on the same holdout,
/// the gate's decision.
#[derive(Debug, Clone)]
pub struct Retrained {
    /// The registered version (`None`: the gate failed and rejected ones are not registered).
    pub version: Option<u64>,
    /// The candidate's artifact (threshold at the best F1 on the validation rows).
    pub artifact: ModelArtifact,
    /// The candidate.
    pub model: Arc<MlpModel>,
    /// The reference profile of the window (the monitor's reference once it is promoted).
    pub profile: ReferenceProfile,
    /// The profile of the candidate's scores on the window (prediction drift's reference).
    pub prediction_profile: ReferenceProfile,
    /// The candidate's metrics on the holdout (empty when the holdout could not score).
    pub metrics: MetricValues,
    /// The champion's metrics on the same holdout.
    pub champion_metrics: MetricValues,
    /// Why the holdout could not score the models (one class, say), if it could not.
    pub holdout_error: Option<String>,
    /// The gate's decision.
    pub decision: GateDecision,
    /// The fairness gate's decision, when one is configured.
    pub fairness: Option<FairnessDecision>,
    /// The importance stability verdict, when one is configured.
    pub importance: Option<StabilityResult>,
    /// The candidate's calibration (fitted on the validation rows) checked on the holdout:
    /// reliability curves and ECE before and after; `Err` says why no estimator was fitted.
    pub calibration: std::result::Result<CalibrationReport, String>,
    /// The tracking run of the fit.
    pub run_id: Option<RunId>,
    /// Rows of the window.
    pub rows: usize,
}

impl Retrained {
    /// Every rule's verdict and reason, `pass ...; FAIL ...` (the fairness rules' and the
    /// importance rule's after the metric rules').
    pub fn reasons(&self) -> String {
        let fairness = self.fairness.iter().flat_map(|f| &f.results);
        self.decision
            .results
            .iter()
            .map(|r| (r.passed, &r.reason))
            .chain(fairness.map(|r| (r.passed, &r.reason)))
            .chain(self.importance.iter().map(|r| (r.passed, &r.reason)))
            .map(|(passed, reason)| format!("{} {reason}", if passed { "pass" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether every rule passed, the fairness and importance rules included.
    pub fn passed(&self) -> bool {
        self.decision.passed
            && self.fairness.as_ref().is_none_or(|f| f.passed)
            && self.importance.as_ref().is_none_or(|r| r.passed)
    }
}

/// A retrain's outcome.
#[derive(Debug, Clone)]
pub enum RetrainOutcome {
    /// The window failed validation against the model's schema: nothing was fit.
    Refused(ValidationReport),
    /// The candidate failed the gate (its reasons in `decision`); the alias did not move.
    GateFailed(Box<Retrained>),
    /// The candidate passed, is registered, and the canary alias points at it.
    Canary(Box<Retrained>),
}

/// Retrains one registered model: holds the registry, the model's name and schema, the
/// validation suite and the checked settings. Every call is independent (no state between
/// calls); the host decides when.
///
/// ```no_run
/// # async fn f(registry: std::sync::Arc<mlops::registry::Registry>, schema: mlops::core::Schema,
/// #     window: mlops::core::Dataset, champion: mlops::core::model::MlpModel,
/// #     trainer: mlops::train::Trainer) -> Result<(), mlops::lifecycle::Error> {
/// use mlops::core::validation::{ValidationConfig, ValidationSuite};
/// use mlops::lifecycle::{RetrainConfig, RetrainOutcome, RetrainRequest, Retrainer};
///
/// let suite = ValidationSuite::from_config(&ValidationConfig::default())?;
/// let retrainer = Retrainer::new(registry, "fraud", schema, suite, RetrainConfig::default().check()?)?;
/// match retrainer.retrain(RetrainRequest {
///     window: &window, trainer: &trainer, champion: &champion, champion_version: 1,
///     expected_canary: None, tracking: None, description: "after the alarm".into(),
///     tags: vec![], params: vec![],
/// }).await? {
///     RetrainOutcome::Canary(c) => println!("canary -> v{:?}", c.version),
///     RetrainOutcome::GateFailed(c) => println!("gate: {}", c.reasons()),
///     RetrainOutcome::Refused(report) => println!("window: {report}"),
/// }
/// # Ok(()) }
/// ```
pub struct Retrainer {
    registry: Arc<Registry>,
    model: String,
    schema: Schema,
    suite: ValidationSuite,
    settings: RetrainSettings,
    gate: MetricGate,
}

impl Retrainer {
    /// A retrainer of `model` in `registry`, validating windows against `schema` with `suite`.
    pub fn new(
        registry: Arc<Registry>,
        model: impl Into<String>,
        schema: Schema,
        suite: ValidationSuite,
        settings: RetrainSettings,
    ) -> Result<Self> {
        let gate = settings.gate()?;
        if let Some(f) = &settings.fairness {
            if !schema.features().any(|c| c.name == f.group_feature) {
                return Err(Error::invalid(
                    "RetrainConfig.fairness.group_feature",
                    format!("{:?}", f.group_feature),
                    format!(
                        "one of the model's features: {:?}",
                        schema
                            .features()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                    ),
                ));
            }
        }
        Ok(Retrainer {
            registry,
            model: model.into(),
            schema,
            suite,
            settings,
            gate,
        })
    }

    /// The gate every candidate passes (also the first model's, with no champion).
    pub fn gate(&self) -> &MetricGate {
        &self.gate
    }

    /// Checks that `window` holds the schema's feature columns in order, and labels.
    fn check_window(&self, window: &Dataset) -> Result<()> {
        if window.n_rows() == 0 {
            return Err(Error::invalid(
                "window",
                "0 rows",
                "at least one labeled row to retrain on",
            ));
        }
        if window.labels().is_none() {
            return Err(Error::invalid(
                "window.labels",
                "none",
                "a labeled window (the label column of the model's schema)",
            ));
        }
        let want: Vec<&str> = self.schema.features().map(|c| c.name.as_str()).collect();
        let have: Vec<&str> = window.feature_names().collect();
        for i in 0..want.len().max(have.len()) {
            let (w, h) = (want.get(i), have.get(i));
            if w != h {
                return Err(Error::invalid(
                    format!("window feature column {i}"),
                    h.map_or("missing".to_string(), |h| format!("{h:?}")),
                    format!(
                        "{} (the model's schema: {want:?})",
                        w.map_or("no column".to_string(), |w| format!("{w:?}"))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Retrains on `request.window`: validate, fit, gate, register, move the canary alias.
    /// A window that is empty, unlabeled or in another schema is an `InvalidValue` naming the
    /// column; one that fails validation is [`RetrainOutcome::Refused`]; a lost
    /// compare-and-swap on the alias is [`Error::CanaryMoved`] naming the candidate (it stays
    /// registered, pointed at by nothing). The validation, the fit and the profile are CPU
    /// work done in this future: a host that serves on its runtime calls it from a task of
    /// its own runtime or thread (a retrain job, `spawn_blocking` with a handle), not from a
    /// serving worker.
    pub async fn retrain(&self, request: RetrainRequest<'_>) -> Result<RetrainOutcome> {
        let window = request.window;
        self.check_window(window)?;
        let validation = self.suite.run(window, Some(&self.schema));
        if !validation.passed() {
            return Ok(RetrainOutcome::Refused(validation));
        }
        let split =
            window.ordered_split(&self.settings.order_column, self.settings.fractions()?)?;
        let trained = request
            .trainer
            .fit(&split.train, Some(&split.validation), &mut [])?;
        let run_id = match &request.tracking {
            Some(t) => Some(
                log_training(
                    t.tracker,
                    t.experiment,
                    t.run_name,
                    t.tags,
                    request.trainer,
                    &trained,
                )
                .await?,
            ),
            None => None,
        };
        let metadata: Vec<(&str, String)> = run_id
            .iter()
            .map(|r| ("tracking_run_id", r.0.clone()))
            .collect();
        let artifact = threshold_at_best_f1(&trained.artifact, &split.validation, &metadata)?;
        let (artifact, calibration) =
            with_performance_estimator(&artifact, &split.validation, &split.test)?;
        let model = Arc::new(MlpModel::new(&artifact)?);
        // A holdout that cannot score the models (one class, say) gives the gate no values,
        // and it fails: no candidate on no evidence.
        let scored = holdout_classes(&split.test, self.settings.min_holdout_per_class)
            .and_then(|()| metric_values(model.as_ref(), &split.test))
            .and_then(|c| Ok((c, metric_values(request.champion, &split.test)?)));
        let (metrics, champion_metrics, holdout_error) = match scored {
            Ok((c, p)) => (c, p, None),
            Err(e) => {
                tracing::warn!(model = %self.model, error = %e, "the holdout cannot score the models");
                (
                    MetricValues::default(),
                    MetricValues::default(),
                    Some(e.to_string()),
                )
            }
        };
        let decision = self.gate.evaluate(&metrics, Some(&champion_metrics));
        let fairness = match &self.settings.fairness {
            None => None,
            Some(f) => Some(fairness_on(
                f,
                model.as_ref(),
                request.champion,
                &split.test,
            )?),
        };
        let importance = match &self.settings.importance {
            None => None,
            Some(i) => Some(importance_on(
                i,
                model.as_ref(),
                request.champion,
                &split.test,
            )),
        };
        let profile = ReferenceProfile::fit(window, &ProfileConfig::default())?;
        let prediction_profile = prediction_profile(model.as_ref(), window)?;
        let mut retrained = Retrained {
            version: None,
            artifact,
            model,
            profile,
            prediction_profile,
            metrics,
            champion_metrics,
            holdout_error,
            decision,
            fairness,
            importance,
            calibration,
            run_id,
            rows: window.n_rows(),
        };
        let passed = retrained.passed();
        if passed || self.settings.register_rejected {
            retrained.version = Some(self.register(&retrained, &request).await?);
        }
        if !passed {
            tracing::info!(model = %self.model, reasons = %retrained.reasons(), "the candidate failed the gate");
            return Ok(RetrainOutcome::GateFailed(Box::new(retrained)));
        }
        let version = retrained.version.unwrap_or_default();
        self.registry
            .set_alias(
                &self.model,
                &self.settings.canary_alias,
                version,
                request.expected_canary,
                "passed the gate after a drift alarm",
            )
            .await
            .map_err(|e| match e {
                cause @ mlops_registry::Error::AliasMoved { .. } => {
                    tracing::warn!(model = %self.model, version, alias = %self.settings.canary_alias, "the canary alias moved: the candidate is pointed at by nothing");
                    Error::CanaryMoved {
                        model: self.model.clone(),
                        alias: self.settings.canary_alias.clone(),
                        candidate: version,
                        cause: Box::new(cause),
                    }
                }
                other => Error::Registry(other),
            })?;
        tracing::info!(model = %self.model, version, alias = %self.settings.canary_alias, "candidate registered");
        Ok(RetrainOutcome::Canary(Box::new(retrained)))
    }

    async fn register(&self, r: &Retrained, request: &RetrainRequest<'_>) -> Result<u64> {
        let mut new = NewVersion::new()
            .artifact(&r.artifact)?
            .reference_profile(r.profile.to_json()?)
            .prediction_profile(r.prediction_profile.to_json()?)
            .metrics(&r.metrics);
        for (k, v) in &request.params {
            new = new.param(k.as_str(), v.as_str());
        }
        // The host's tags first: `gate` and `role` are the retrainer's to say.
        for (k, v) in &request.tags {
            new = new.tag(k.as_str(), v.as_str());
        }
        new = new
            .tag(
                "gate",
                if r.decision.passed {
                    "passed"
                } else {
                    "failed"
                },
            )
            .tag("role", "retrain");
        let new = new
            .lineage(Lineage {
                run_id: r.run_id.clone(),
                dataset: Some(DatasetFingerprint {
                    sha256: request.window.fingerprint(),
                    rows: request.window.n_rows() as u64,
                }),
                code_version: Some(format!("mlops {}", env!("CARGO_PKG_VERSION"))),
                parent_version: Some(request.champion_version),
            })
            .description(request.description.clone());
        Ok(self.registry.register(&self.model, new).await?.version)
    }
}

/// The profile of `model`'s scores on `data` (one column, `prediction`): what a live monitor
/// compares served scores with (prediction drift). Rows the model scores NaN count as missing.
///
/// ```
/// use mlops::core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
/// use mlops::core::Dataset;
/// use mlops::lifecycle::prediction_profile;
///
/// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
/// let model = MlpModel::new(&ModelArtifact::new(spec, vec![(ndarray::array![[1.0_f32]], ndarray::array![0.0_f32])])?)?;
/// let data = Dataset::new(ndarray::Array2::from_shape_fn((100, 1), |(i, _)| i as f32 / 50.0 - 1.0), vec!["x".into()])?;
/// let profile = prediction_profile(&model, &data)?;
/// assert_eq!(profile.columns[0].name, mlops::drift::PREDICTION_COLUMN);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn prediction_profile(model: &dyn Predictor, data: &Dataset) -> Result<ReferenceProfile> {
    let mut scores = vec![0.0_f32; data.n_rows()];
    model.predict_proba_into(data.features(), &mut scores)?;
    Ok(ReferenceProfile::fit_predictions(
        &scores,
        &ProfileConfig::default(),
    )?)
}

/// What live monitoring and explanations need of a model registered from a file (an
/// XGBoost or LightGBM model, a model trained elsewhere), made from its reference data.
#[derive(Debug, Clone)]
pub struct ReferenceOf {
    /// The artifact with up to [`REFERENCE_BACKGROUND_ROWS`] complete reference rows as its
    /// explanation background (unchanged when no row is complete: `background` says).
    pub artifact: ModelArtifact,
    /// The profile of the model's input features on the reference (compact storage): what
    /// the serving monitor compares live inputs with.
    pub reference_profile: ReferenceProfile,
    /// The profile of the model's scores on the reference.
    pub prediction_profile: ReferenceProfile,
    /// Whether a background was stored.
    pub background: bool,
}

/// Background rows [`reference_of`] stores for explanations (as the trainer does).
pub const REFERENCE_BACKGROUND_ROWS: usize = 100;

/// The reference profiles and explanation background of `artifact` (any kind) from `data`,
/// a table holding at least the model's input features by name (other columns, a label, are
/// left out); the model scores the reference rows in its own input order.
///
/// ```
/// use mlops::core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
/// use mlops::core::Dataset;
///
/// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
/// let artifact = ModelArtifact::new(spec, vec![(ndarray::array![[1.0_f32]], ndarray::array![0.0_f32])])?;
/// let x = ndarray::Array2::from_shape_fn((200, 2), |(i, j)| (i * (j + 1)) as f32 / 100.0);
/// let data = Dataset::new(x, vec!["id".into(), "x".into()])?;
/// let r = mlops::lifecycle::reference_of(artifact, &data)?;
/// assert_eq!(r.reference_profile.columns.len(), 1); // x only: the model's inputs
/// assert!(r.background);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reference_of(artifact: ModelArtifact, data: &Dataset) -> Result<ReferenceOf> {
    let names: Vec<&str> = artifact
        .spec()
        .input_features
        .iter()
        .map(String::as_str)
        .collect();
    let inputs = data.select_features(&names)?;
    let model = mlops_core::model::predictor(&artifact)?;
    let prediction_profile = prediction_profile(model.as_ref(), &inputs)?;
    let reference_profile = ReferenceProfile::fit(&inputs, &ProfileConfig::default())?;
    let (artifact, background) =
        match Background::sample(inputs.features(), REFERENCE_BACKGROUND_ROWS) {
            Ok(b) => (artifact.with_background(b)?, true),
            Err(e) => {
                tracing::warn!(error = %e, "no explanation background from the reference");
                (artifact, false)
            }
        };
    Ok(ReferenceOf {
        artifact,
        reference_profile,
        prediction_profile,
        background,
    })
}

/// `model`'s metric report on `data` (at its threshold) as gate values: what the gate judges.
///
/// ```
/// # fn f(model: &mlops::core::model::MlpModel, holdout: &mlops::core::Dataset) -> mlops::lifecycle::Result<()> {
/// let values = mlops::lifecycle::metric_values(model, holdout)?;
/// println!("{:?}", values.values);
/// # Ok(()) }
/// ```
pub fn metric_values(model: &dyn Predictor, data: &Dataset) -> Result<MetricValues> {
    let s = ScoredSamples::of(model, data)?;
    Ok(MetricValues::from(&s.report(f64::from(model.threshold()))?))
}

/// The fairness gate on `holdout`: the candidate's decisions (and the champion's, on the same
/// rows) with each row's group the value of `f.group_feature`. A holdout the models cannot
/// score (a missing feature's NaN, say) fails every rule, naming why.
fn fairness_on(
    f: &RetrainFairness,
    candidate: &dyn Predictor,
    champion: &dyn Predictor,
    holdout: &Dataset,
) -> Result<FairnessDecision> {
    let column = holdout
        .feature_names()
        .position(|n| n == f.group_feature)
        .ok_or_else(|| {
            Error::invalid(
                "RetrainConfig.fairness.group_feature",
                format!("{:?}", f.group_feature),
                format!(
                    "one of the window's features: {:?}",
                    holdout.feature_names().collect::<Vec<_>>()
                ),
            )
        })?;
    let groups: Vec<String> = holdout
        .features()
        .column(column)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let data = |model: &dyn Predictor| -> mlops_core::Result<FairnessData> {
        let s = ScoredSamples::of(model, holdout)?;
        let labels: Vec<f64> = s.labels().iter().map(|&y| f64::from(u8::from(y))).collect();
        let groups = SensitiveGroups::new(&[(f.group_feature.as_str(), &groups[..])])?;
        FairnessData::from_scores(
            &labels,
            s.scores(),
            f64::from(model.threshold()),
            s.weights(),
            groups,
        )
    };
    Ok(match (data(candidate), data(champion)) {
        (Ok(c), Ok(p)) => f.gate.evaluate(&c, Some(&p)),
        (Err(e), _) | (_, Err(e)) => f
            .gate
            .fail_all(&format!("the holdout cannot be judged: {e}")),
    })
}

/// The importance rule judged on the holdout: both models' permutation importance (ROC AUC)
/// on the same rows and shuffles (seed 0), then the top-k comparison. A holdout that cannot
/// measure it (one class, a NaN score) fails the rule, saying why: no pass on no evidence.
fn importance_on(
    i: &RetrainImportance,
    candidate: &dyn Predictor,
    champion: &dyn Predictor,
    holdout: &Dataset,
) -> StabilityResult {
    let config = ImportanceConfig {
        metric: Metric::RocAuc,
        n_repeats: i.n_repeats,
        max_samples: i.max_samples,
        seed: 0,
    };
    let judged = permutation_importance(candidate, holdout, &config).and_then(|c| {
        let p = permutation_importance(champion, holdout, &config)?;
        i.rule.judge(&c, &p)
    });
    judged.unwrap_or_else(|e| StabilityResult {
        passed: false,
        candidate_top: vec![],
        champion_top: vec![],
        overlap: 0,
        reason: format!(
            "top-{} importance stability cannot be judged on the holdout: {e}",
            i.rule.k
        ),
    })
}

/// `artifact` with its performance estimator ([`Cbpe`], isotonic calibration and the
/// sampling-error components) fitted on `validation` at the artifact's threshold, and the
/// calibration checked on `holdout` (rows it was not fitted on): the training report's
/// reliability curves and expected calibration errors before and after. When the estimator
/// cannot be fitted (one class in `validation`, a NaN score) the artifact comes back without
/// one and the reason is the `Err` of the second item: its estimated performance is then
/// unknown, never a number. When only the check fails, the estimator is kept and the `Err`
/// says why there is no report. (`validation` is also where the threshold was chosen: the
/// reference rates are those of the chosen threshold on those rows.)
///
/// ```
/// # fn f(artifact: &mlops::core::model::ModelArtifact, validation: &mlops::core::Dataset, holdout: &mlops::core::Dataset) -> mlops::lifecycle::Result<()> {
/// let (artifact, report) = mlops::lifecycle::with_performance_estimator(artifact, validation, holdout)?;
/// if let Ok(r) = report {
///     println!("ECE {:.4} raw, {:.4} calibrated", r.raw_ece, r.calibrated_ece);
/// }
/// # Ok(()) }
/// ```
pub fn with_performance_estimator(
    artifact: &ModelArtifact,
    validation: &Dataset,
    holdout: &Dataset,
) -> Result<(
    ModelArtifact,
    std::result::Result<CalibrationReport, String>,
)> {
    let model = MlpModel::new(artifact)?;
    let cbpe = match Cbpe::fit_on(&model, validation, CbpeCalibration::Isotonic) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no performance estimator: estimated performance will be unknown");
            return Ok((artifact.clone(), Err(e.to_string())));
        }
    };
    // A holdout that cannot check the calibration (one class, a NaN score) leaves the
    // estimator fitted and says why there is no report.
    let report = CalibrationReport::measure(&model, &cbpe, holdout).map_err(|e| {
        tracing::warn!(error = %e, "the calibration cannot be checked on the holdout");
        format!("the calibration cannot be checked on the holdout: {e}")
    });
    Ok((artifact.clone().with_cbpe(cbpe)?, report))
}

/// `artifact` with its threshold at the best F1 on `validation` (kept when undefined there,
/// one class say), and `metadata`.
///
/// ```
/// # fn f(trained: &mlops::train::TrainedModel, validation: &mlops::core::Dataset) -> mlops::lifecycle::Result<()> {
/// let artifact = mlops::lifecycle::threshold_at_best_f1(
///     &trained.artifact,
///     validation,
///     &[("tracking_run_id", "r1".to_string())],
/// )?;
/// # Ok(()) }
/// ```
pub fn threshold_at_best_f1(
    artifact: &ModelArtifact,
    validation: &Dataset,
    metadata: &[(&str, String)],
) -> Result<ModelArtifact> {
    let s = ScoredSamples::of(&MlpModel::new(artifact)?, validation)?;
    let mut artifact = match s.best_threshold(ThresholdCriterion::FBeta { beta: 1.0 }) {
        Ok(best) => artifact.clone().with_threshold(best.threshold as f32)?,
        Err(_) => artifact.clone(),
    };
    for (k, v) in metadata {
        artifact = artifact.with_metadata(*k, v.as_str());
    }
    Ok(artifact)
}

/// `Ok` when `holdout` holds at least `min` rows of each class; else the counts, as the
/// reason the gate has no evidence.
fn holdout_classes(holdout: &Dataset, min: usize) -> Result<()> {
    let labels = holdout
        .labels()
        .ok_or_else(|| Error::invalid("holdout labels", "none", "a labeled holdout"))?;
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    let negatives = labels.iter().filter(|&&y| y == 0.0).count();
    if positives < min || negatives < min {
        return Err(Error::invalid(
            "holdout rows per class",
            format!("{positives} positive, {negatives} negative"),
            format!("at least {min} of each (RetrainConfig.min_holdout_per_class)"),
        ));
    }
    Ok(())
}
