//! Conformance suite (feature `testing`, off by default) for experiment trackers, as
//! object_store's `integration` module: a host that implements [`ExperimentTracker`] on its
//! own backend runs [`tracker`], the suite the workspace runs on its object-store tracker
//! (memory, local disk) and on its MLflow client against a real `mlflow server`.
//!
//! The suite returns when the tracker conforms and **panics** on the first violation, with a
//! message that starts with `ExperimentTracker suite:` and names the property and the values
//! seen; call it from a `#[test]`. It is test-support code: unlike the rest of the library it
//! panics by design.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};

use crate::hpo::{ParamValue, TrialRecord, TrialState};
use crate::tracking::{
    compare_runs, log_training, log_training_to, log_trial, ExperimentTracker, MetricPoint, Run,
    RunStatus,
};
use crate::{MlpConfig, Result, TrainConfig, Trainer};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of `result`, or the suite's panic naming the call and the error.
fn ok<T>(what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("ExperimentTracker suite: {what}: unexpected error: {e}"))
}

/// The error of `result`, as text, or the suite's panic naming the call it expected refused.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T>) -> String {
    match result {
        Ok(v) => panic!("ExperimentTracker suite: {what} answered {v:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

/// The [`ExperimentTracker`] contract, checked on `t` in `experiment` (a name that holds no
/// runs yet; the suite also logs two trials to the experiment `study-x`). What it checks:
///
/// - runs start with distinct ids; params log, and log again with the same value, but a
///   changed value is refused naming the key; tags set;
/// - metrics keep every step: the history comes back in step order whatever order the points
///   were logged in, and the record shows the last step's value;
/// - artifacts round-trip, nested paths included;
/// - an ended run reads back with its name, experiment, status, end time, params, tags and
///   metrics; `list_runs` lists the experiment's runs (none for an unknown experiment), and
///   [`compare_runs`] ranks them;
/// - bad names are refused before any I/O, naming the field: experiments (`""`, `../up`,
///   `/abs`, a NUL, `;`), artifact paths (`../escape`), metric keys, non-finite values;
/// - a whole training run through [`log_training`] (params, the data's sha256, per-epoch
///   metrics, the weights as an artifact); a [`Run`] kept open across training and later
///   metrics, ended once, still taking a late metric; a failed logging ends the run `FAILED`
///   with the error as a tag;
/// - study trials through [`log_trial`]: a pruned one `KILLED` with its reports, a failed one
///   with its error.
///
/// Panics, naming the property and the values, on the first violation; the suite trains a
/// small network (a second or two).
///
/// A host runs it on its own tracker; here the in-memory object-store tracker stands in for
/// it (for a tracker that needs a server, the call is the same):
///
/// ```no_run
/// use mlops_train::testing;
/// use mlops_train::tracking::ObjectStoreTracker;
///
/// # async fn host() -> mlops_train::Result<()> {
/// let tracker = ObjectStoreTracker::open("memory:///", &Default::default())?;
/// testing::tracker(&tracker, "conformance").await;
/// # Ok(())
/// # }
/// ```
pub async fn tracker(t: &dyn ExperimentTracker, experiment: &str) {
    // Runs, params, tags.
    let a = ok(
        "start_run run-a",
        t.start_run(experiment, "run-a", &map(&[("team", "fraud")]))
            .await,
    );
    let b = ok(
        "start_run run-b",
        t.start_run(experiment, "run-b", &BTreeMap::new()).await,
    );
    assert_ne!(a, b, "ExperimentTracker suite: two runs got one id");
    ok(
        "log_params",
        t.log_params(&a, &map(&[("lr", "0.001"), ("hidden", "[128, 64, 32]")]))
            .await,
    );
    // Logging the same value again is fine; changing it is refused.
    ok(
        "log_params with the same value again",
        t.log_params(&a, &map(&[("lr", "0.001")])).await,
    );
    let e = refused(
        "log_params changing lr from 0.001 to 0.1",
        t.log_params(&a, &map(&[("lr", "0.1")])).await,
    );
    assert!(
        e.contains("lr"),
        "ExperimentTracker suite: changing a param: the error does not name it: {e}"
    );
    ok(
        "set_tags",
        t.set_tags(&a, &map(&[("stage", "candidate")])).await,
    );

    // Metrics with steps: history in step order, the record shows the last step's value.
    let points: Vec<MetricPoint> = (1..=5)
        .map(|s| MetricPoint {
            key: "val_roc_auc".into(),
            value: 0.8 + 0.03 * s as f64,
            step: s,
            timestamp_ms: 1_700_000_000_000 + s,
        })
        .collect();
    ok(
        "log_metrics steps 3-5",
        t.log_metrics(&a, &points[2..]).await,
    );
    ok(
        "log_metrics steps 1-2",
        t.log_metrics(&a, &points[..2]).await,
    );
    ok(
        "log_metrics on run-b",
        t.log_metrics(&b, &[MetricPoint::now("val_roc_auc", 0.99, 1)])
            .await,
    );
    let history = ok("metric_history", t.metric_history(&a, "val_roc_auc").await);
    let steps: Vec<i64> = history.iter().map(|p| p.step).collect();
    assert_eq!(
        steps,
        vec![1, 2, 3, 4, 5],
        "ExperimentTracker suite: the history of a metric logged at steps 3-5 then 1-2"
    );
    assert!(
        (history[4].value - 0.95).abs() < 1e-12,
        "ExperimentTracker suite: step 5's value read as {}, logged 0.95",
        history[4].value
    );

    // Artifacts round-trip, nested paths included.
    ok(
        "log_artifact model/model.json",
        t.log_artifact(&a, "model/model.json", b"{\"x\": 1}".to_vec())
            .await,
    );
    ok(
        "log_artifact notes.txt",
        t.log_artifact(&a, "notes.txt", b"hello".to_vec()).await,
    );
    for (path, bytes) in [
        ("model/model.json", &b"{\"x\": 1}"[..]),
        ("notes.txt", &b"hello"[..]),
    ] {
        let got = ok(
            &format!("get_artifact {path}"),
            t.get_artifact(&a, path).await,
        );
        assert_eq!(
            got, bytes,
            "ExperimentTracker suite: artifact {path} read back other bytes"
        );
    }

    // End and read back.
    ok("end_run run-a", t.end_run(&a, RunStatus::Finished).await);
    ok("end_run run-b", t.end_run(&b, RunStatus::Killed).await);
    let ra = ok("get_run run-a", t.get_run(&a).await);
    assert!(
        ra.name == "run-a"
            && ra.experiment == experiment
            && ra.status == RunStatus::Finished
            && ra.end_time_ms.is_some(),
        "ExperimentTracker suite: run-a ended FINISHED in {experiment:?} reads back as {ra:?}"
    );
    for (what, read, expected) in [
        ("param lr", ra.params.get("lr"), "0.001"),
        ("param hidden", ra.params.get("hidden"), "[128, 64, 32]"),
        ("tag team", ra.tags.get("team"), "fraud"),
        ("tag stage", ra.tags.get("stage"), "candidate"),
    ] {
        assert_eq!(
            read.map(String::as_str),
            Some(expected),
            "ExperimentTracker suite: run-a's {what} (params {:?}, tags {:?})",
            ra.params,
            ra.tags
        );
    }
    let last = ra.metrics.get("val_roc_auc").copied();
    assert!(
        last.is_some_and(|v| (v - 0.95).abs() < 1e-12),
        "ExperimentTracker suite: run-a's val_roc_auc reads {last:?}, expected the last step's 0.95"
    );

    // List and compare.
    let runs = ok("list_runs", t.list_runs(experiment).await);
    assert_eq!(
        runs.len(),
        2,
        "ExperimentTracker suite: list_runs({experiment:?}) after two runs: {runs:?}"
    );
    let ranked = compare_runs(runs, "val_roc_auc", true);
    assert!(
        ranked[0].run_id == b && ranked[0].status == RunStatus::Killed,
        "ExperimentTracker suite: ranked by val_roc_auc, run-b (0.99, KILLED) is not first: {ranked:?}"
    );
    let none = ok(
        "list_runs of an unknown experiment",
        t.list_runs("no-such-experiment").await,
    );
    assert!(
        none.is_empty(),
        "ExperimentTracker suite: list_runs(\"no-such-experiment\"): {none:?}"
    );

    // Bad names are refused before any I/O, naming the field.
    for bad in ["", "../up", "/abs", "a\0b", "semi;colon"] {
        let e = refused(
            &format!("start_run in experiment {bad:?}"),
            t.start_run(bad, "x", &BTreeMap::new()).await,
        );
        assert!(
            e.contains("experiment"),
            "ExperimentTracker suite: experiment {bad:?}: the error does not name the experiment: {e}"
        );
    }
    for (what, e, needle) in [
        (
            "log_artifact ../escape",
            refused(
                "log_artifact ../escape",
                t.log_artifact(&a, "../escape", vec![]).await,
            ),
            "artifact path",
        ),
        (
            "a metric key `bad key!`",
            refused(
                "log_metrics with the key `bad key!`",
                t.log_metrics(&a, &[MetricPoint::now("bad key!", 1.0, 0)])
                    .await,
            ),
            "metric key",
        ),
        (
            "a NaN metric",
            refused(
                "log_metrics of NaN",
                t.log_metrics(&a, &[MetricPoint::now("loss", f64::NAN, 7)])
                    .await,
            ),
            "metric `loss` at step 7",
        ),
    ] {
        assert!(
            e.contains(needle),
            "ExperimentTracker suite: {what}: the error does not say {needle:?}: {e}"
        );
    }

    // A whole training run.
    let data = {
        let x = Array2::from_shape_fn((300, 2), |(i, j)| ((i * (7 + 4 * j)) % 101) as f32 / 100.0);
        let y = Array1::from_shape_fn(300, |i| f32::from(x[[i, 0]] + x[[i, 1]] > 1.0));
        mlops_core::Dataset::new(x, vec!["x0".into(), "x1".into()])
            .and_then(|d| d.with_labels(y, "y"))
            .unwrap_or_else(|e| panic!("ExperimentTracker suite: its training data: {e}"))
    };
    let trainer = ok(
        "the trainer",
        Trainer::new(
            MlpConfig {
                hidden: vec![8],
                ..MlpConfig::default()
            },
            TrainConfig {
                epochs: 3,
                early_stopping: None,
                ..TrainConfig::default()
            },
        ),
    );
    let trained = ok("training", trainer.fit(&data, None, &mut []));
    let run = ok(
        "log_training",
        log_training(
            t,
            experiment,
            "mlp",
            &map(&[("kind", "mlp")]),
            &trainer,
            &trained,
        )
        .await,
    );
    let r = ok("get_run of the training run", t.get_run(&run).await);
    let param = |k: &str| r.params.get(k).map(String::as_str);
    assert!(
        r.status == RunStatus::Finished
            && param("mlp.hidden") == Some("[8]")
            // The data's sha256, the same fingerprint the registry's lineage records.
            && param("data.train_sha256") == Some(trained.data_sha256.train.as_str())
            && trained.data_sha256.train.len() == 64
            && param("train.early_stopping").is_none()
            && param("train.reduce_lr.patience") == Some("3")
            && param("train.device") == Some("cpu"),
        "ExperimentTracker suite: the training run reads back as {:?} with params {:?}",
        r.status,
        r.params
    );
    let epochs = ok(
        "metric_history of the training run",
        t.metric_history(&run, "val_roc_auc").await,
    );
    assert_eq!(
        epochs.len(),
        3,
        "ExperimentTracker suite: val_roc_auc of 3 epochs: {epochs:?}"
    );
    let weights = ok(
        "get_artifact model/model.safetensors",
        t.get_artifact(&run, "model/model.safetensors").await,
    );
    let expected = ok(
        "the trained weights",
        trained
            .artifact
            .weights_to_safetensors()
            .map_err(Into::into),
    );
    assert!(
        weights == expected,
        "ExperimentTracker suite: the training run's weights read back as other bytes ({} vs {})",
        weights.len(),
        expected.len()
    );

    // A run that stays open: training, then test metrics computed afterwards, in one run,
    // ended once (as `with mlflow.start_run():`).
    let open = ok(
        "Run::start",
        Run::start(t, experiment, "mlp-open", &BTreeMap::new()).await,
    );
    ok(
        "log_training_to",
        log_training_to(&open, &trainer, &trained).await,
    );
    let status = ok("get_run of the open run", t.get_run(open.id()).await).status;
    assert_eq!(
        status,
        RunStatus::Running,
        "ExperimentTracker suite: a run not ended yet"
    );
    ok(
        "log_metric test_roc_auc",
        open.log_metric("test_roc_auc", 0.93, 0).await,
    );
    let id = ok("Run::end", open.end(RunStatus::Finished).await);
    let r = ok("get_run of the ended run", t.get_run(&id).await);
    assert!(
        r.status == RunStatus::Finished
            && r.metrics.get("test_roc_auc") == Some(&0.93)
            && r.params.get("mlp.hidden").map(String::as_str) == Some("[8]"),
        "ExperimentTracker suite: the run kept open reads back as {r:?}"
    );
    let epochs = ok(
        "metric_history of the run kept open",
        t.metric_history(&id, "val_roc_auc").await,
    );
    assert_eq!(
        epochs.len(),
        3,
        "ExperimentTracker suite: the run kept open: val_roc_auc of 3 epochs: {epochs:?}"
    );
    // After the end, a late metric still lands in the run on every backend (MLflow's rule),
    // and the status stays as ended.
    ok(
        "log_metrics after the end",
        t.log_metrics(&id, &[MetricPoint::now("late", 1.0, 0)])
            .await,
    );
    let r = ok("get_run after a late metric", t.get_run(&id).await);
    assert_eq!(
        (r.metrics.get("late").copied(), r.status),
        (Some(1.0), RunStatus::Finished),
        "ExperimentTracker suite: a metric logged after the end, and the status"
    );
    // A failed logging ends the run FAILED with the error as a tag.
    let failing = ok(
        "Run::start mlp-failing",
        Run::start(t, experiment, "mlp-failing", &BTreeMap::new()).await,
    );
    let id = failing.id().clone();
    let e = refused(
        "finish_with an error",
        failing
            .finish_with(Err(crate::Error::Tracking {
                backend: "test".into(),
                message: "disk full".into(),
            }))
            .await,
    );
    assert!(
        e.contains("disk full"),
        "ExperimentTracker suite: finish_with lost the error: {e}"
    );
    let r = ok("get_run of the failed run", t.get_run(&id).await);
    assert!(
        r.status == RunStatus::Failed
            && r.tags.get("error").is_some_and(|e| e.contains("disk full")),
        "ExperimentTracker suite: a run whose logging failed reads back as {:?} with tags {:?}",
        r.status,
        r.tags
    );

    // Study trials: a pruned one is KILLED with its reports; a failed one keeps its error.
    let pruned = TrialRecord {
        number: 3,
        params: [("lr".to_string(), ParamValue::Float(0.01))].into(),
        state: TrialState::Pruned,
        value: None,
        intermediate: vec![(1, 0.7), (3, 0.72)],
        error: None,
        seconds: 0.5,
    };
    let run = ok(
        "log_trial of a pruned trial",
        log_trial(t, "study-x", "val_roc_auc", &pruned).await,
    );
    let r = ok("get_run of the pruned trial", t.get_run(&run).await);
    let reports = ok(
        "metric_history of the pruned trial",
        t.metric_history(&run, "val_roc_auc").await,
    );
    assert!(
        r.name == "trial-3"
            && r.status == RunStatus::Killed
            && r.params.get("lr").map(String::as_str) == Some("0.01")
            && reports.len() == 2,
        "ExperimentTracker suite: a pruned trial reads back as {r:?} with reports {reports:?}"
    );
    let failed = TrialRecord {
        number: 4,
        state: TrialState::Failed,
        error: Some("diverged".into()),
        intermediate: vec![],
        ..pruned
    };
    let run = ok(
        "log_trial of a failed trial",
        log_trial(t, "study-x", "val_roc_auc", &failed).await,
    );
    let r = ok("get_run of the failed trial", t.get_run(&run).await);
    assert_eq!(
        (r.status, r.tags.get("error").map(String::as_str)),
        (RunStatus::Failed, Some("diverged")),
        "ExperimentTracker suite: a failed trial"
    );
}
