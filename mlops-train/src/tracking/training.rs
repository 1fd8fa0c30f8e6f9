//! Logging a training run through any tracker.

use std::collections::BTreeMap;

use super::{ExperimentTracker, MetricPoint, Run, RunId, RunStatus};
use crate::error::{Error, Result};
use crate::hpo::{TrialRecord, TrialState};
use crate::trainer::{TrainedModel, Trainer};

/// Flattens a JSON value into `prefix.key = value` strings (strings unquoted, `null` skipped).
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The trainer's configs as flat parameters (`mlp.hidden = [128,64,32]`,
/// `train.early_stopping.patience = 5`, ...).
pub(crate) fn params_of(trainer: &Trainer) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in [
        ("mlp", serde_json::to_value(trainer.mlp_config())),
        ("train", serde_json::to_value(trainer.train_config())),
    ] {
        let value = value.map_err(|e| Error::invalid("configs", e, "serializable configs"))?;
        flatten(name, &value, &mut out);
    }
    Ok(out)
}

/// Logs a finished training into an open run (which stays open: log the test metrics into it,
/// then end it): the configs and the data's sha256 fingerprints (`data.train_sha256`,
/// `data.validation_sha256`) as parameters, every epoch's metrics at step = epoch, the exported
/// model (`model/model.json`, `model/model.safetensors`) and `history.json` as artifacts.
pub async fn log_training_to(
    run: &Run<'_>,
    trainer: &Trainer,
    trained: &TrainedModel,
) -> Result<()> {
    let mut params = params_of(trainer)?;
    params.insert(
        "data.train_sha256".into(),
        trained.data_sha256.train.clone(),
    );
    params.insert(
        "data.validation_sha256".into(),
        trained.data_sha256.validation.clone(),
    );
    run.log_params(&params).await?;
    let points: Vec<MetricPoint> = trained
        .history
        .iter()
        .flat_map(|log| {
            log.metrics()
                .into_iter()
                .map(move |(k, v)| MetricPoint::now(k, v, log.epoch as i64))
        })
        .collect();
    run.log_metrics(&points).await?;
    run.log_artifact(
        "model/model.json",
        trained.artifact.spec_json()?.into_bytes(),
    )
    .await?;
    run.log_artifact(
        "model/model.safetensors",
        trained.artifact.weights_to_safetensors()?,
    )
    .await?;
    let history = serde_json::to_vec_pretty(&trained.history)
        .map_err(|e| Error::invalid("history", e, "serializable logs"))?;
    run.log_artifact("history.json", history).await
}

/// Logs a finished training as one run of `experiment` ([`log_training_to`]) and **ends it**
/// `FINISHED` (`FAILED` when logging fails). To add metrics computed afterwards (a test
/// split) to the same run, start a [`Run`] yourself, call [`log_training_to`], log, then
/// [`Run::end`].
pub async fn log_training(
    tracker: &dyn ExperimentTracker,
    experiment: &str,
    run_name: &str,
    tags: &BTreeMap<String, String>,
    trainer: &Trainer,
    trained: &TrainedModel,
) -> Result<RunId> {
    let run = Run::start(tracker, experiment, run_name, tags).await?;
    let logged = log_training_to(&run, trainer, trained).await;
    run.finish_with(logged).await
}

/// Logs one finished trial of a study as a run of experiment `study`, named `trial-N`: its
/// parameters, its intermediate reports as metric `metric` at their steps, its final value,
/// and a status (`FINISHED`, `KILLED` when pruned, `FAILED` with the error as a tag).
pub async fn log_trial(
    tracker: &dyn ExperimentTracker,
    study: &str,
    metric: &str,
    trial: &TrialRecord,
) -> Result<RunId> {
    let tags = [("trial_number".to_string(), trial.number.to_string())].into();
    let run = tracker
        .start_run(study, &format!("trial-{}", trial.number), &tags)
        .await?;
    let params = trial
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    tracker.log_params(&run, &params).await?;
    let mut points: Vec<MetricPoint> = trial
        .intermediate
        .iter()
        .filter(|r| r.1.is_finite())
        .map(|&(s, v)| MetricPoint::now(metric, v, s))
        .collect();
    if let Some(v) = trial.value {
        let step = trial.intermediate.last().map_or(0, |r| r.0 + 1);
        points.push(MetricPoint::now(metric, v, step));
    }
    tracker.log_metrics(&run, &points).await?;
    let status = match trial.state {
        TrialState::Complete => RunStatus::Finished,
        TrialState::Pruned => RunStatus::Killed,
        TrialState::Failed => {
            if let Some(e) = &trial.error {
                let tags = [("error".to_string(), e.chars().take(500).collect())].into();
                tracker.set_tags(&run, &tags).await?;
            }
            RunStatus::Failed
        }
    };
    tracker.end_run(&run, status).await?;
    Ok(run)
}
