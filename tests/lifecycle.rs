//! The loop's library parts in process (`mlops::lifecycle`): a drift alarm on the synthetic
//! stream's change → the rules schedule a retrain → the `Retrainer` fits the labeled window,
//! gates it against the champion re-scored on the same holdout, registers it and points
//! `canary` at it; and what it does with the worst windows and with a rival retrainer.

use std::sync::Arc;

use mlops::core::metrics::Metric;
use mlops::core::model::{MlpModel, Predictor};
use mlops::core::synthetic::{Shift, TransactionConfig, TransactionStream, TIME};
use mlops::core::validation::{ValidationConfig, ValidationSuite};
use mlops::core::{Dataset, Schema};
use mlops::drift::{DriftConfig, ProfileConfig, ReferenceProfile, RetrainTrigger};
use mlops::lifecycle::rules::{LoopRules, RetrainRequests, RolloutEnd, Ruling};
use mlops::lifecycle::{
    Error, RetrainConfig, RetrainOutcome, RetrainRequest, RetrainSettings, Retrainer,
};
use mlops::registry::{NewVersion, Registry, RegistryConfig};
use mlops::train::{MlpConfig, TrainConfig, Trainer};
use ndarray::Array1;

const MODEL: &str = "fraud";
const ROWS: usize = 2_000;
const SHIFT: usize = 3;

fn stream() -> TransactionStream {
    TransactionStream::new(TransactionConfig {
        batch_size: ROWS,
        shift: Some(Shift::abrupt(SHIFT)),
        seed: 7,
        ..TransactionConfig::default()
    })
    .unwrap()
}

fn batches(s: &TransactionStream, range: std::ops::Range<usize>) -> Dataset {
    let parts: Vec<Dataset> = range.map(|i| s.batch(i).unwrap()).collect();
    Dataset::concat(&parts.iter().collect::<Vec<_>>()).unwrap()
}

fn trainer(seed: u64) -> Trainer {
    Trainer::new(
        MlpConfig {
            hidden: vec![16],
            ..MlpConfig::default()
        },
        TrainConfig {
            epochs: 8,
            batch_size: 256,
            learning_rate: 3e-3,
            seed,
            ..TrainConfig::default()
        },
    )
    .unwrap()
}

fn settings(min_auc: f64) -> RetrainSettings {
    RetrainConfig {
        order_column: TIME.into(),
        min_auc,
        ..RetrainConfig::default()
    }
    .check()
    .unwrap()
}

/// The champion (trained on the old world, batches 0..SHIFT) registered as v1 under
/// `production` in a fresh in-memory registry; its schema and reference profile.
struct Setup {
    registry: Arc<Registry>,
    champion: MlpModel,
    schema: Schema,
    profile: ReferenceProfile,
    stream: TransactionStream,
}

async fn setup() -> Setup {
    let stream = stream();
    let history = batches(&stream, 0..SHIFT);
    let trained = trainer(1).fit(&history, None, &mut []).unwrap();
    let champion = MlpModel::new(&trained.artifact).unwrap();
    let profile = ReferenceProfile::fit(&history, &ProfileConfig::default()).unwrap();
    let registry = Arc::new(
        Registry::open("memory://", &RegistryConfig::default())
            .await
            .unwrap(),
    );
    let v1 = registry
        .register(
            MODEL,
            NewVersion::new()
                .artifact(&trained.artifact)
                .unwrap()
                .reference_profile(profile.to_json().unwrap()),
        )
        .await
        .unwrap()
        .version;
    registry
        .set_alias(MODEL, "production", v1, None, "the first model")
        .await
        .unwrap();
    Setup {
        registry,
        champion,
        schema: Schema::infer(&history),
        profile,
        stream,
    }
}

fn retrainer(s: &Setup, settings: RetrainSettings) -> Retrainer {
    let suite = ValidationSuite::from_config(&ValidationConfig {
        min_rows: 1_000,
        ..ValidationConfig::default()
    })
    .unwrap();
    Retrainer::new(s.registry.clone(), MODEL, s.schema.clone(), suite, settings).unwrap()
}

fn request<'a>(
    window: &'a Dataset,
    trainer: &'a Trainer,
    champion: &'a dyn Predictor,
) -> RetrainRequest<'a> {
    RetrainRequest {
        window,
        trainer,
        champion,
        champion_version: 1,
        expected_canary: None,
        tracking: None,
        description: "retrained after the drift alarm".into(),
        // A host tag named like the retrainer's own: the retrainer's says.
        tags: vec![
            ("window".into(), "test".into()),
            ("gate".into(), "host".into()),
        ],
        params: vec![("hidden".into(), "16".into())],
    }
}

async fn canary(r: &Registry) -> Option<u64> {
    r.alias(MODEL, "canary")
        .await
        .unwrap()
        .and_then(|e| e.target)
}

async fn versions(r: &Registry) -> usize {
    r.list_versions(MODEL).await.unwrap().len()
}

#[tokio::test]
async fn an_alarm_leads_to_a_gated_candidate_under_canary() {
    let s = setup().await;
    let drift = DriftConfig::default().check().unwrap();
    let mut rules = LoopRules::new(3).unwrap();
    let requests = RetrainRequests::default();
    // Served batches: the old world checks clean, the change raises the alarm.
    let mut alarm = None;
    for b in SHIFT - 1..SHIFT + 3 {
        let report = s
            .profile
            .compare(&s.stream.batch(b).unwrap(), &drift)
            .unwrap();
        assert_eq!(report.dataset.drifted, b >= SHIFT, "batch {b}: {report:?}");
        if report.dataset.drifted {
            // The drift policy's trigger keeps the request; the host takes it to the rules.
            RetrainTrigger::retrain(&requests, MODEL, &report, "dataset drift")
                .await
                .unwrap();
            let taken = requests.take();
            assert_eq!(taken, ["dataset drift"]);
            assert!(requests.take().is_empty());
            let r = rules.on_retrain_request(b as u64);
            alarm.get_or_insert(b);
            if b == SHIFT {
                assert_eq!(r, Ruling::Scheduled { alarm_at: b as u64 });
            } else {
                assert_eq!(
                    r,
                    Ruling::AlreadyScheduled {
                        alarm_at: SHIFT as u64
                    }
                );
            }
        }
    }
    assert_eq!(alarm, Some(SHIFT));
    assert_eq!(rules.due(SHIFT as u64 + 2), None);
    let window = rules.due(SHIFT as u64 + 3).unwrap();
    rules.start_retrain();
    assert_eq!(rules.due(SHIFT as u64 + 3), None);
    let window = batches(&s.stream, window.start as usize..window.end as usize);
    let t = trainer(2);
    let outcome = retrainer(&s, settings(0.7))
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let RetrainOutcome::Canary(c) = outcome else {
        panic!("expected a candidate: {outcome:?}");
    };
    let version = c.version.unwrap();
    assert_eq!(version, 2);
    assert!(c.decision.passed, "{}", c.reasons());
    let (auc, champion_auc) = (
        c.metrics.values[&Metric::RocAuc],
        c.champion_metrics.values[&Metric::RocAuc],
    );
    assert!(auc >= 0.7 && auc >= champion_auc, "{auc} vs {champion_auc}");
    assert_eq!(canary(&s.registry).await, Some(version));
    let record = s
        .registry
        .list_versions(MODEL)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.record.version == version)
        .unwrap()
        .record;
    assert_eq!(record.lineage.parent_version, Some(1));
    assert_eq!(
        record.lineage.dataset.as_ref().unwrap().rows,
        window.n_rows() as u64
    );
    assert_eq!(record.tags["gate"], "passed");
    assert_eq!(record.tags["role"], "retrain");
    assert_eq!(record.params["hidden"], "16");
    assert!((record.metrics["roc_auc"] - auc).abs() < 1e-12);
    assert!(record
        .files
        .iter()
        .any(|f| f.name == mlops::registry::REFERENCE_PROFILE_FILE));
    // Calibrated on the validation rows, checked on the holdout, and the estimator stored
    // with the registered model (read back from the registry).
    let calibration = c.calibration.as_ref().expect("an estimator");
    assert!(calibration.rows > 0 && calibration.calibrated_ece.is_finite());
    let (_, stored) = s
        .registry
        .load_artifact(MODEL, &mlops::core::VersionRef::Number(version))
        .await
        .unwrap();
    let cbpe = stored.spec().cbpe.clone().expect("stored with the model");
    assert_eq!(cbpe.threshold, f64::from(stored.threshold()));
    assert_eq!(Some(&cbpe), c.artifact.spec().cbpe.as_ref());
    // The candidate rolls out: a new alarm is deferred; its promotion rebases the reference,
    // and the new profile finds no drift in the new world.
    rules.on_candidate(version);
    assert_eq!(
        rules.on_retrain_request(SHIFT as u64 + 4),
        Ruling::Deferred {
            rolling_out: version
        }
    );
    let end = rules.on_rollout_end(true).unwrap();
    assert_eq!(end, RolloutEnd::Promoted { version });
    assert!(end.rebases());
    let later = c
        .profile
        .compare(&s.stream.batch(SHIFT + 4).unwrap(), &drift)
        .unwrap();
    assert!(!later.dataset.drifted, "{later:?}");
}

#[tokio::test]
async fn a_worse_candidate_fails_the_gate_registers_nothing_and_leaves_the_alias() {
    let s = setup().await;
    // The champion knows the new world; the candidate barely trains (one epoch at a learning
    // rate that moves nothing): it is worse on the same holdout.
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    let strong = MlpModel::new(&trainer(3).fit(&window, None, &mut []).unwrap().artifact).unwrap();
    let idle = Trainer::new(
        MlpConfig {
            hidden: vec![16],
            ..MlpConfig::default()
        },
        TrainConfig {
            epochs: 1,
            learning_rate: 1e-7,
            seed: 4,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let before = versions(&s.registry).await;
    let outcome = retrainer(&s, settings(0.5))
        .retrain(request(&window, &idle, &strong))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("expected the gate to fail: {outcome:?}");
    };
    assert!(!c.decision.passed);
    assert_eq!(c.version, None);
    let champion_rule = c
        .decision
        .results
        .iter()
        .find(|r| matches!(r.rule, mlops::core::gate::GateRule::Champion { .. }))
        .unwrap();
    assert!(!champion_rule.passed, "{}", c.reasons());
    assert!(c.reasons().contains("FAIL"), "{}", c.reasons());
    assert!(
        c.metrics.values[&Metric::RocAuc] < c.champion_metrics.values[&Metric::RocAuc],
        "{}",
        c.reasons()
    );
    assert_eq!(versions(&s.registry).await, before);
    assert_eq!(canary(&s.registry).await, None);
    // With `register_rejected` the failed candidate is kept for the record, alias unmoved.
    let keep = RetrainConfig {
        register_rejected: true,
        ..settings(0.5).into_config()
    }
    .check()
    .unwrap();
    let outcome = retrainer(&s, keep)
        .retrain(request(&window, &idle, &strong))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("expected the gate to fail: {outcome:?}");
    };
    assert_eq!(c.version, Some(before as u64 + 1));
    assert_eq!(canary(&s.registry).await, None);
}

#[tokio::test]
async fn bad_windows_are_refused_naming_what_is_wrong() {
    let s = setup().await;
    let r = retrainer(&s, settings(0.7));
    let t = trainer(5);
    let window = batches(&s.stream, SHIFT..SHIFT + 2);
    // Empty.
    let empty = window.select_rows(&[]).unwrap();
    let e = r
        .retrain(request(&empty, &t, &s.champion))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidValue(_)), "{e:?}");
    assert!(e.to_string().contains("invalid window = 0 rows"), "{e}");
    // One class: validation refuses it (too few positives); nothing is fit.
    let zeros = Array1::zeros(window.n_rows());
    let one_class = window.clone().with_labels(zeros, "is_fraud").unwrap();
    match r
        .retrain(request(&one_class, &t, &s.champion))
        .await
        .unwrap()
    {
        RetrainOutcome::Refused(report) => {
            assert!(!report.passed());
            assert!(
                report.errors().any(|f| f.check == "min_positives"),
                "{report}"
            );
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    // Another schema: a column the model needs is missing, named with its position.
    let first = window.feature_names().next().unwrap().to_string();
    let missing = window.drop_features(&[first.as_str()]).unwrap();
    let e = r
        .retrain(request(&missing, &t, &s.champion))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidValue(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("window feature column 0") && text.contains(&format!("{first:?}")),
        "{text}"
    );
    // Unlabeled.
    let unlabeled = Dataset::new(
        window.features().to_owned(),
        window.feature_names().map(String::from).collect(),
    )
    .unwrap();
    let e = r
        .retrain(request(&unlabeled, &t, &s.champion))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("window.labels"), "{e}");
    assert_eq!(versions(&s.registry).await, 1);
    assert_eq!(canary(&s.registry).await, None);
}

#[tokio::test]
async fn two_retrainers_racing_for_canary_exactly_one_wins() {
    let s = setup().await;
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    let (a, b) = (retrainer(&s, settings(0.7)), retrainer(&s, settings(0.7)));
    let (ta, tb) = (trainer(6), trainer(7));
    // Both decided to retrain while canary was unset.
    let (ra, rb) = tokio::join!(
        a.retrain(request(&window, &ta, &s.champion)),
        b.retrain(request(&window, &tb, &s.champion)),
    );
    let mut won = Vec::new();
    let mut lost = 0;
    let mut lost_candidate = None;
    for r in [ra, rb] {
        match r {
            Ok(RetrainOutcome::Canary(c)) => won.push(c.version.unwrap()),
            Err(Error::CanaryMoved {
                alias,
                candidate,
                cause,
                ..
            }) => {
                assert!(
                    matches!(*cause, mlops::registry::Error::AliasMoved { .. }),
                    "{cause:?}"
                );
                assert_eq!(alias, "canary");
                lost_candidate = Some(candidate);
                lost += 1;
            }
            other => panic!("expected a win or a lost compare-and-swap: {other:?}"),
        }
    }
    assert_eq!((won.len(), lost), (1, 1), "{won:?}");
    assert_eq!(canary(&s.registry).await, Some(won[0]));
    // Both candidates are registered (v2, v3); the alias names the winner only, and the
    // loser's error names the other one.
    assert_eq!(versions(&s.registry).await, 3);
    let mut both = vec![won[0], lost_candidate.unwrap()];
    both.sort_unstable();
    assert_eq!(both, vec![2, 3]);
}

#[test]
fn a_retrain_config_is_checked_when_read_naming_the_field() {
    let ok: RetrainSettings =
        serde_json::from_str(r#"{"order_column": "time", "min_auc": 0.8}"#).unwrap();
    assert_eq!((ok.min_auc, ok.canary_alias.as_str()), (0.8, "canary"));
    for (json, field) in [
        (r#"{"min_auc": 0.2}"#, "invalid RetrainConfig.min_auc = 0.2"),
        (
            r#"{"champion_tolerance": -0.1}"#,
            "invalid RetrainConfig.champion_tolerance = -0.1",
        ),
        (
            r#"{"holdout_fraction": 0.0}"#,
            "RetrainConfig.validation_fraction, RetrainConfig.holdout_fraction",
        ),
        (
            r#"{"train_fraction": 0.9}"#,
            "SplitFractions (train + validation + test)",
        ),
        (
            r#"{"min_holdout_per_class": 0}"#,
            "invalid RetrainConfig.min_holdout_per_class = 0",
        ),
        (
            r#"{"canary_alias": "latest"}"#,
            "invalid RetrainConfig.canary_alias",
        ),
        (
            r#"{"canary_alias": "a/b"}"#,
            "invalid RetrainConfig.canary_alias",
        ),
        (
            r#"{"order_column": ""}"#,
            "invalid RetrainConfig.order_column",
        ),
        (r#"{"min_acu": 0.8}"#, "unknown field `min_acu`"),
    ] {
        let e = serde_json::from_str::<RetrainSettings>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{json}: {e}");
    }
}

#[tokio::test]
async fn a_holdout_of_one_class_gives_the_gate_no_evidence_and_it_fails() {
    let s = setup().await;
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    // Positives only in the earliest 80% of the window (by time): the holdout, the latest
    // 15%, holds one class, so neither model has a ROC AUC there.
    let window = relabeled_from(&window, 0.8, |_| 0.0);
    let t = trainer(8);
    let outcome = retrainer(&s, settings(0.7))
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("expected the gate to fail: {outcome:?}");
    };
    let why = c.holdout_error.clone().unwrap();
    assert!(why.contains("roc_auc") || why.contains("class"), "{why}");
    assert!(c.metrics.values.is_empty() && c.champion_metrics.values.is_empty());
    assert!(!c.decision.passed, "{}", c.reasons());
    assert_eq!(c.version, None);
    assert_eq!(versions(&s.registry).await, 1);
    assert_eq!(canary(&s.registry).await, None);
}

/// `window` with the labels of its rows from the `share` quantile of time on mapped by `f`
/// (in time order), the earlier ones kept.
fn relabeled_from(window: &Dataset, share: f64, mut f: impl FnMut(f32) -> f32) -> Dataset {
    let (_, times) = window.order_column().unwrap();
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[a].total_cmp(&times[b]));
    let mut labels = window.labels().unwrap().clone();
    for &i in &order[(order.len() as f64 * share) as usize..] {
        labels[i] = f(labels[i]);
    }
    window.clone().with_labels(labels, "is_fraud").unwrap()
}

/// A holdout with a few rows of a class (three positives here) is no evidence: the gate fails
/// with the counts said, nothing is registered; with `min_holdout_per_class` at 3 the same
/// window is judged on its ROC AUC.
#[tokio::test]
async fn a_holdout_with_too_few_rows_of_a_class_fails_the_gate_with_the_counts() {
    let s = setup().await;
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    // The holdout is the latest 15% by time: keep three of its positives, drop the rest.
    let mut kept = 0;
    let window = relabeled_from(&window, 0.85, |y| {
        if y == 1.0 {
            kept += 1;
        }
        if y == 1.0 && kept <= 3 {
            1.0
        } else {
            0.0
        }
    });
    assert!(kept >= 3, "the fixture's holdout needs positives: {kept}");
    let t = trainer(8);
    let outcome = retrainer(&s, settings(0.5))
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("expected the gate to fail on a holdout of 3 positives: {outcome:?}");
    };
    let why = c.holdout_error.clone().unwrap();
    assert!(why.contains("3 positive"), "{why}");
    assert!(why.contains("min_holdout_per_class"), "{why}");
    assert_eq!(c.version, None);
    assert_eq!(canary(&s.registry).await, None);
    let lenient = RetrainConfig {
        order_column: TIME.into(),
        min_auc: 0.5,
        min_holdout_per_class: 3,
        ..RetrainConfig::default()
    }
    .check()
    .unwrap();
    let outcome = retrainer(&s, lenient)
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let judged = match &outcome {
        RetrainOutcome::GateFailed(c) | RetrainOutcome::Canary(c) => c,
        RetrainOutcome::Refused(r) => panic!("refused: {r:?}"),
    };
    assert_eq!(judged.holdout_error, None, "{outcome:?}");
    assert!(!judged.metrics.values.is_empty());
}

/// The loop replayed in process over a synthetic stream whose world changes at batch 4:
/// `backtest` serves it through the router, the monitor alarms at the change, the rules
/// schedule the retrain two labeled batches later, the candidate rolls out and is promoted
/// (or, with broken retraining labels, passes the gate and is rolled back by the canary's
/// ROC AUC check on the true labels).
mod backtest {
    use super::*;
    use mlops::lifecycle::backtest::{Backtest, BacktestConfig, BacktestParts, FirstModel};
    use mlops::lifecycle::search::MlpSettings;
    use mlops::lifecycle::stream::{Stream, SyntheticStream};
    use mlops::serve::policy::Promotion;
    use mlops::train::tracking::ObjectStoreTracker;

    const POLICY: &str = r#"
# Per-window analysis: these replays count inconclusive windows.
sequential = false
steps = [50, 100]
bake_time_seconds = 7200
min_requests = 200
[[checks]]
kind = "error_rate"
[[checks]]
kind = "roc_auc"
max_decrease = 0.01
min_labeled = 200
[shadow]
percent = 100
bake_time_seconds = 3600
checks = [{ kind = "error_rate" }]
"#;

    async fn replay(corrupt: bool) -> (mlops::lifecycle::backtest::Finished, Arc<Registry>) {
        let stream = Stream::synthetic(&SyntheticStream {
            batches: 12,
            batch_size: ROWS,
            shift_batch: 4,
            gradual: 0,
            seed: 7,
        })
        .unwrap();
        let train = 3;
        let history = Dataset::concat(&stream.batches[..train].iter().collect::<Vec<_>>()).unwrap();
        let settings = MlpSettings {
            hidden: vec![16],
            learning_rate: 3e-3,
            dropout: 0.0,
        };
        let trained = settings
            .trainer(1)
            .unwrap()
            .fit(&history, None, &mut [])
            .unwrap();
        let profile = ReferenceProfile::fit(&history, &ProfileConfig::default()).unwrap();
        let registry = Arc::new(
            Registry::open("memory://", &RegistryConfig::default())
                .await
                .unwrap(),
        );
        let new = NewVersion::new()
            .artifact(&trained.artifact)
            .unwrap()
            .reference_profile(profile.to_json().unwrap());
        let v1 = registry.register(MODEL, new).await.unwrap().version;
        registry
            .set_alias(MODEL, "production", v1, None, "the first model")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let tracker = ObjectStoreTracker::open(&url, &Default::default()).unwrap();
        let suite = ValidationSuite::from_config(&ValidationConfig {
            min_rows: 1_000,
            ..ValidationConfig::default()
        })
        .unwrap();
        let retrain = RetrainConfig {
            order_column: TIME.into(),
            min_auc: 0.8,
            register_rejected: true,
            ..RetrainConfig::default()
        }
        .check()
        .unwrap();
        let schema = Schema::infer(&history);
        let retrainer = Retrainer::new(registry.clone(), MODEL, schema, suite, retrain).unwrap();
        let mut backtest = Backtest::new(BacktestParts {
            stream: &stream,
            registry: registry.clone(),
            model: MODEL.into(),
            first: FirstModel {
                version: v1,
                artifact: trained.artifact.clone(),
                model: Arc::new(MlpModel::new(&trained.artifact).unwrap()),
                profile,
            },
            retrainer,
            settings,
            tracker: &tracker,
            tags: Default::default(),
            promotion: Promotion::from_toml_str(POLICY).unwrap(),
            config: BacktestConfig {
                seed: 7,
                train_batches: train,
                retrain_batches: 2,
                drift_share: 0.5,
                distance_threshold: 0.1,
                corrupt_retrain_labels: corrupt,
                performance: None,
            },
        })
        .await
        .unwrap();
        assert!(
            backtest.prepare().await.unwrap().is_empty(),
            "nothing stale"
        );
        // A batch the stream does not have is refused, naming it.
        let e = backtest.step(12).await.unwrap_err().to_string();
        assert!(e.contains("invalid batch = 12"), "{e}");
        let mut lines = Vec::new();
        for b in train..stream.batches.len() {
            lines.extend(backtest.step(b).await.unwrap());
        }
        let done = backtest.finish(std::time::Instant::now()).await.unwrap();
        assert!(
            lines.iter().filter(|l| l.starts_with("[batch")).count() == 9,
            "{lines:#?}"
        );
        (done, registry)
    }

    fn kinds(s: &mlops::lifecycle::report::Summary) -> Vec<(usize, &str)> {
        s.decisions
            .iter()
            .map(|d| (d.batch, d.kind.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn the_change_is_detected_retrained_on_and_promoted() {
        let (done, registry) = replay(false).await;
        let s = &done.summary;
        let k = kinds(s);
        assert_eq!(
            (s.shift_batch, s.detected_batch, s.false_alarms_before_shift),
            (Some(4), Some(4), 0),
            "{k:?}"
        );
        assert!(
            k.contains(&(4, "drift_retrain")) && k.contains(&(6, "gate_passed")),
            "{k:?}"
        );
        assert_eq!(
            (s.outcome.as_str(), s.production_version),
            ("promoted", 2),
            "{k:?}"
        );
        assert_eq!(s.timeline.len(), 9);
        assert_eq!(s.timeline.last().unwrap().production, 2);
        let alias = registry.alias(MODEL, "production").await.unwrap();
        assert_eq!(alias.and_then(|e| e.target), Some(2));
        let (old, new) = (
            s.auc_after_shift_old_model.unwrap(),
            s.auc_after_retrain.unwrap(),
        );
        assert!(new > old + 0.1, "retrained {new} vs old {old}");
        assert_eq!(done.alarm.as_ref().map(|a| a.batch), Some(4));
        assert!(done.exposition.contains("mlops_serve_promotions_total"));
    }

    #[tokio::test]
    async fn broken_retraining_labels_pass_the_gate_and_the_canary_rolls_them_back() {
        let (done, registry) = replay(true).await;
        let s = &done.summary;
        let k = kinds(s);
        assert!(k.contains(&(6, "gate_passed")), "{k:?}");
        assert!(
            s.decisions
                .iter()
                .any(|d| d.kind == "rollout_rollback" && d.reason.contains("roc_auc")),
            "{k:?}"
        );
        assert_eq!(
            (s.outcome.as_str(), s.production_version),
            ("rolled_back", 1)
        );
        let alias = registry.alias(MODEL, "production").await.unwrap();
        assert_eq!(alias.and_then(|e| e.target), Some(1));
    }

    #[test]
    fn a_stream_is_refused_naming_the_setting() {
        let synthetic = |batches, batch_size, shift_batch| {
            Stream::synthetic(&SyntheticStream {
                batches,
                batch_size,
                shift_batch,
                gradual: 0,
                seed: 1,
            })
        };
        let e = synthetic(40, 10_000_000, 15).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid batch_size = 10000000: expected at most 125000"),
            "{e}"
        );
        let e = synthetic(6, 100, 6).unwrap_err().to_string();
        assert!(e.starts_with("invalid shift_batch = 6"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("d.csv");
        let mut text = String::from("t,a,y\n");
        for i in 0..300 {
            text.push_str(&format!("{i},{},{}\n", i % 7, i % 2));
        }
        std::fs::write(&csv, &text).unwrap();
        let e = Stream::csv(&csv, "y", "t", None, 100)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid batch_size = 100") && e.contains("at least 4"),
            "{e}"
        );
        let e = Stream::csv(&csv, "y", "t", Some(1e9), 50)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid shift_at = 1000000000"), "{e}");
        let s = Stream::csv(&csv, "y", "t", Some(120.0), 50).unwrap();
        assert_eq!((s.batches.len(), s.shift_batch), (6, Some(2)));
        assert_eq!(s.spans[1], "t 50..99");
        // The same table as Parquet (the pipeline's --data x.parquet): the same batches.
        {
            use mlops::core::arrow::array::{ArrayRef, Int64Array, RecordBatch};
            let column = |f: fn(i64) -> i64| {
                std::sync::Arc::new(Int64Array::from_iter_values((0..300).map(f))) as ArrayRef
            };
            let batch = RecordBatch::try_from_iter([
                ("t", column(|i| i)),
                ("a", column(|i| i % 7)),
                ("y", column(|i| i % 2)),
            ])
            .unwrap();
            let path = dir.path().join("d.parquet");
            let mut w = parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(&path).unwrap(),
                batch.schema(),
                None,
            )
            .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            let p = Stream::csv(&path, "y", "t", Some(120.0), 50).unwrap();
            assert_eq!(
                (p.batches.len(), p.shift_batch, &p.spans),
                (6, Some(2), &s.spans)
            );
            for (a, b) in p.batches.iter().zip(&s.batches) {
                assert_eq!(a.fingerprint(), b.fingerprint());
            }
        }
        // Too few positives: the hint names values that give the history enough.
        let hint = s.history_hint(1, 50, 60, ["size", "train"]);
        assert!(
            hint.contains("first 120 rows hold 60") && hint.contains("train 3 with size 50"),
            "{hint}"
        );
    }
}

#[tokio::test]
async fn a_fairness_gate_on_the_holdout_names_the_worst_groups_and_fails_the_retrain() {
    let s = setup().await;
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    let with = |rule: &str| {
        let config: RetrainConfig = toml::from_str(&format!(
            "order_column = \"{TIME}\"\nmin_auc = 0.5\n[fairness]\ngroup_feature = \"foreign\"\n[fairness.gate]\nrules = [{rule}]\n"
        ))
        .unwrap();
        config.check().unwrap()
    };
    // Loose: the candidate is no less fair than the champion on the same holdout, by far.
    let loose = with(
        r#"{ disparity = { measure = "demographic_parity_difference" }, champion_tolerance = 0.5 }"#,
    );
    let outcome = retrainer(&s, loose)
        .retrain(request(&window, &trainer(3), &s.champion))
        .await
        .unwrap();
    let RetrainOutcome::Canary(c) = outcome else {
        panic!("expected a canary: {outcome:?}");
    };
    let f = c.fairness.as_ref().unwrap();
    assert!(f.passed, "{}", c.reasons());
    assert!(f.results[0].champion.is_some());
    // Impossible: no disparity at all. The gate fails, naming the two groups and their rows.
    let strict =
        with(r#"{ disparity = { measure = "demographic_parity_difference" }, limit = 0.0 }"#);
    let outcome = retrainer(&s, strict)
        .retrain(request(&window, &trainer(3), &s.champion))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("expected the fairness gate to fail: {outcome:?}");
    };
    assert!(c.decision.passed && !c.passed(), "{}", c.reasons());
    let worst = c.fairness.as_ref().unwrap().results[0]
        .worst
        .clone()
        .unwrap();
    assert_eq!(
        {
            let mut g = [worst.first.as_str(), worst.second.as_str()];
            g.sort_unstable();
            g
        },
        ["0", "1"]
    );
    assert!(
        c.reasons().contains("FAIL demographic_parity_difference"),
        "{}",
        c.reasons()
    );
    // A group feature the model does not have is refused before any work.
    let bad = RetrainConfig {
        fairness: Some(mlops::lifecycle::RetrainFairness {
            group_feature: "zip".into(),
            gate: serde_json::from_str(r#"{"rules": [{"disparity": {"measure": "demographic_parity_ratio"}, "limit": 0.8}]}"#).unwrap(),
        }),
        ..settings(0.5).into_config()
    }
    .check()
    .unwrap();
    let suite = ValidationSuite::from_config(&ValidationConfig::default()).unwrap();
    let Err(e) = Retrainer::new(s.registry.clone(), MODEL, s.schema.clone(), suite, bad) else {
        panic!("a group feature the schema lacks was accepted");
    };
    assert!(
        e.to_string().contains("group_feature") && e.to_string().contains("zip"),
        "{e}"
    );
}

/// The importance rule: permutation importance of both models on the same holdout, the top-k
/// compared. Every feature in the top (k = all) always overlaps; a champion that reads only
/// the candidate's second feature shares nothing with its top 1, and fails it; a holdout the
/// rule cannot measure fails it, saying why.
#[tokio::test]
async fn the_importance_rule_compares_the_top_features_with_the_champion() {
    use mlops::core::importance::TopKStability;
    use mlops::core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
    use mlops::lifecycle::RetrainImportance;
    let s = setup().await;
    let window = batches(&s.stream, SHIFT..SHIFT + 3);
    let t = trainer(2);
    let d = s.champion.n_features();
    let with = |rule: TopKStability, max_samples: Option<usize>| {
        RetrainConfig {
            order_column: TIME.into(),
            min_auc: 0.5,
            champion_tolerance: 0.5,
            register_rejected: true,
            importance: Some(RetrainImportance {
                rule,
                n_repeats: 2,
                max_samples,
            }),
            ..RetrainConfig::default()
        }
        .check()
        .unwrap()
    };
    let all = TopKStability {
        k: d,
        min_overlap: d,
    };
    let outcome = retrainer(&s, with(all, None))
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let c = match outcome {
        RetrainOutcome::Canary(c) | RetrainOutcome::GateFailed(c) => c,
        other => panic!("{other:?}"),
    };
    let verdict = c.importance.clone().expect("judged");
    assert!(verdict.passed, "{}", verdict.reason);
    assert_eq!(verdict.overlap, d);
    assert!(
        c.reasons().contains(&format!("{d} in common")),
        "{}",
        c.reasons()
    );
    // A champion reading only the candidate's second most important feature, with the sign
    // that makes it informative: its top 1 is that feature, not the candidate's first.
    let second = verdict.candidate_top[1].clone();
    let names: Vec<String> = s.champion.feature_names().to_vec();
    let j = names.iter().position(|n| *n == second).unwrap();
    let labels: Vec<f64> = window
        .labels()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let column: Vec<f64> = window
        .column(&second)
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let alone = mlops::core::metrics::ScoredSamples::new(&labels, &column, None)
        .unwrap()
        .roc_auc()
        .unwrap();
    let sign = if alone >= 0.5 { 1.0 } else { -1.0 };
    let weights = ndarray::Array2::from_shape_fn((1, d), |(_, k)| if k == j { sign } else { 0.0 });
    let spec = ModelSpec::new(names, vec![LayerSpec::new(1, Activation::Sigmoid)]);
    let odd =
        MlpModel::new(&ModelArtifact::new(spec, vec![(weights, ndarray::array![0.0])]).unwrap())
            .unwrap();
    let one = TopKStability {
        k: 1,
        min_overlap: 1,
    };
    let outcome = retrainer(&s, with(one, None))
        .retrain(request(&window, &t, &odd))
        .await
        .unwrap();
    let RetrainOutcome::GateFailed(c) = outcome else {
        panic!("the importance rule must fail: {outcome:?}");
    };
    let verdict = c.importance.clone().unwrap();
    assert!(!verdict.passed);
    assert_eq!(verdict.champion_top, vec![second]);
    assert!(
        c.reasons().contains("FAIL top 1 features"),
        "{}",
        c.reasons()
    );
    // No evidence, no pass: a sample larger than the holdout cannot be drawn.
    let outcome = retrainer(&s, with(all, Some(1_000_000)))
        .retrain(request(&window, &t, &s.champion))
        .await
        .unwrap();
    let c = match outcome {
        RetrainOutcome::Canary(c) | RetrainOutcome::GateFailed(c) => c,
        other => panic!("{other:?}"),
    };
    let verdict = c.importance.clone().unwrap();
    assert!(!verdict.passed);
    assert!(
        verdict.reason.contains("cannot be judged") && verdict.reason.contains("max_samples"),
        "{}",
        verdict.reason
    );
    assert!(!c.passed());
    // The rule is checked with the config.
    let bad = RetrainConfig {
        importance: Some(RetrainImportance {
            rule: TopKStability {
                k: 2,
                min_overlap: 3,
            },
            n_repeats: 5,
            max_samples: None,
        }),
        ..RetrainConfig::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(bad.contains("RetrainConfig.importance.rule"), "{bad}");
    let one_row = RetrainConfig {
        importance: Some(RetrainImportance {
            rule: TopKStability {
                k: 1,
                min_overlap: 1,
            },
            n_repeats: 5,
            max_samples: Some(1),
        }),
        ..RetrainConfig::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(
        one_row.contains("RetrainConfig.importance.max_samples"),
        "{one_row}"
    );
}
