//! Logging a training run through any tracker.

use std::collections::BTreeMap;

use super::{ExperimentTracker, MetricPoint, RunId, RunStatus};
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

/// Logs a finished training as one run of `experiment`: the configs and the data's sha256
/// fingerprints (`data.train_sha256`, `data.validation_sha256`) as parameters, every
/// epoch's metrics at step = epoch, the exported model (`model/model.json`,
/// `model/model.safetensors`) and `history.json` as artifacts, then ends it `FINISHED`.
pub async fn log_training(
    tracker: &dyn ExperimentTracker,
    experiment: &str,
    run_name: &str,
    tags: &BTreeMap<String, String>,
    trainer: &Trainer,
    trained: &TrainedModel,
) -> Result<RunId> {
    let run = tracker.start_run(experiment, run_name, tags).await?;
    let result = async {
        let mut params = params_of(trainer)?;
        params.insert(
            "data.train_sha256".into(),
            trained.data_sha256.train.clone(),
        );
        params.insert(
            "data.validation_sha256".into(),
            trained.data_sha256.validation.clone(),
        );
        tracker.log_params(&run, &params).await?;
        let points: Vec<MetricPoint> = trained
            .history
            .iter()
            .flat_map(|log| {
                log.metrics()
                    .into_iter()
                    .map(move |(k, v)| MetricPoint::now(k, v, log.epoch as i64))
            })
            .collect();
        tracker.log_metrics(&run, &points).await?;
        tracker
            .log_artifact(
                &run,
                "model/model.json",
                trained.artifact.spec_json()?.into_bytes(),
            )
            .await?;
        tracker
            .log_artifact(
                &run,
                "model/model.safetensors",
                trained.artifact.weights_to_safetensors()?,
            )
            .await?;
        let history = serde_json::to_vec_pretty(&trained.history)
            .map_err(|e| Error::invalid("history", e, "serializable logs"))?;
        tracker.log_artifact(&run, "history.json", history).await?;
        Ok::<(), Error>(())
    }
    .await;
    match result {
        Ok(()) => {
            tracker.end_run(&run, RunStatus::Finished).await?;
            Ok(run)
        }
        Err(e) => {
            // Best effort: the run should not stay RUNNING; the original error is returned.
            if let Err(end) = tracker.end_run(&run, RunStatus::Failed).await {
                tracing::warn!(%run, error = %end, "could not mark the run failed");
            }
            Err(e)
        }
    }
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
