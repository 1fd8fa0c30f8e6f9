//! The retrain job: reads a window of the prediction log (the one a monitor's hook names, or
//! the last N hours) with its labels, fits a candidate with the champion's settings, gates it
//! against the champion (`production`) re-scored on the same holdout, registers it with its
//! lineage (the champion, the window's fingerprint, the log window in its tags) and points
//! `canary` at it by compare-and-swap. The servers' rollout controllers take it from there.
//!
//! ```text
//! cargo run --release --features predlog --example retrain -- \
//!     --registry s3://models/registry --log s3://models/predlog --request request.json [--json]
//! cargo run --release --features predlog --example retrain -- \
//!     --registry ./registry --log ./predlog --model fraud --hours 6
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use mlops::core::validation::{ValidationConfig, ValidationSuite};
use mlops::core::{ColumnKind, ColumnSchema};
use mlops::core::{Schema, VersionRef};
use mlops::lifecycle::search::{cut, search, MlpSettings};
use mlops::lifecycle::{
    rfc3339, JobWindow, RetrainConfig, RetrainJob, RetrainOutcome, RetrainRequest, Retrainer,
};
use mlops::registry::chrono::{DateTime, Utc};
use mlops::registry::{Registry, RegistryConfig};
use mlops::serve::predlog::{read_window, LoggedWindow, ReadOptions, LABEL_COLUMN};

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_GATE: u8 = 3;
const EXIT_CANARY_MOVED: u8 = 4;
/// Most trials of `--trials` (each a full fit on the window).
const MAX_TRIALS: usize = 1_000;

/// Retrains a registered model on a window of its prediction log and leaves the candidate
/// under `canary`, or says why not.
#[derive(Parser)]
#[command(
    version,
    about = "Retrains a model on a window of its prediction log: reads the window's scored rows joined to their labels, fits a candidate with the champion's settings (or a small search), gates it against the champion (alias `production`) on the same holdout, registers it with its lineage and points `canary` at it by compare-and-swap.",
    after_help = "Exit codes: 0 a candidate is registered and `canary` points at it, 1 a failure (a store, the registry, training), 2 bad input (arguments, the request file, an unknown model or one with no `production`, a window with no labeled rows, one class only, too many rows, or failing validation), 3 the gate refused the candidate (its reasons are printed), 4 `canary` moved while the job ran (another retrain won; the message names the candidate's version, registered and pointed at by nothing)."
)]
struct Args {
    /// The registry (a folder or a store URL).
    #[arg(long)]
    registry: String,
    /// The prediction log (a folder or a store URL; `serve --log-predictions`).
    #[arg(long)]
    log: String,
    /// A retrain request (the hook's JSON: model, version, sequence, replica, reason, at,
    /// window {from, to}, summary).
    #[arg(long, conflicts_with = "hours", required_unless_present = "hours")]
    request: Option<String>,
    /// Retrain on the last N hours instead of a request's window.
    #[arg(long)]
    hours: Option<f64>,
    /// The model (required with --hours; with --request, must match it when given).
    #[arg(long)]
    model: Option<String>,
    /// Most rows the window may hold (scored rows, and label rows read).
    #[arg(long, default_value_t = mlops::serve::predlog::DEFAULT_MAX_ROWS)]
    max_rows: usize,
    /// How long after the window's end labels are still read, in hours.
    #[arg(long, default_value_t = 24.0)]
    label_lag_hours: f64,
    /// Fewest labeled rows the window must hold (validation), at most --max-rows.
    #[arg(long, default_value_t = 1_000)]
    min_rows: usize,
    /// The gate's smallest ROC AUC on the holdout (besides: no worse than the champion).
    #[arg(long, default_value_t = 0.8)]
    min_auc: f64,
    /// Trials of the small search run when the champion recorded no settings (or with
    /// --search), 1 to 1,000.
    #[arg(long, default_value_t = 4)]
    trials: usize,
    /// Search new settings even when the champion recorded its own.
    #[arg(long)]
    search: bool,
    /// Seed of the fit (and the search).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one line of JSON (the outcome and its numbers) instead of the text lines.
    #[arg(long)]
    json: bool,
}

/// Why the job stops, and its exit code.
struct Stop {
    code: u8,
    outcome: &'static str,
    message: String,
}

fn bad(message: impl Into<String>) -> Stop {
    Stop {
        code: EXIT_BAD_INPUT,
        outcome: "bad_input",
        message: message.into(),
    }
}

fn failed(e: impl std::fmt::Display) -> Stop {
    Stop {
        code: EXIT_FAILED,
        outcome: "failed",
        message: format!("{e:#}"),
    }
}

/// A registry error: bad input where the registry says so (a model name it refuses, a bad
/// URL), else a failure.
fn registry_error(e: mlops::registry::Error) -> Stop {
    match e {
        mlops::registry::Error::InvalidValue(_) => bad(e.to_string()),
        e => failed(e),
    }
}

/// A library error: bad input where the library says so, else a failure.
fn lifecycle_error(e: mlops::lifecycle::Error) -> Stop {
    match e {
        mlops::lifecycle::Error::InvalidValue(_) => bad(e.to_string()),
        mlops::lifecycle::Error::CanaryMoved { .. } => Stop {
            code: EXIT_CANARY_MOVED,
            outcome: "canary_moved",
            message: e.to_string(),
        },
        e => failed(e),
    }
}

/// What the job prints at the end (as JSON with --json).
#[derive(serde::Serialize, Default)]
struct Summary {
    outcome: String,
    model: String,
    window: Option<JobWindow>,
    reason: String,
    champion: Option<u64>,
    candidate: Option<u64>,
    canary: Option<u64>,
    rows: u64,
    positives: usize,
    counts: Option<mlops::serve::predlog::WindowCounts>,
    skipped_files: usize,
    settings: Option<String>,
    metrics: serde_json::Value,
    champion_metrics: serde_json::Value,
    gate: Option<String>,
    message: Option<String>,
}

/// The window and model the job runs on.
fn job(args: &Args) -> Result<RetrainJob, Stop> {
    match (&args.request, args.hours) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("reading --request {path}: {e}")))?;
            let job =
                RetrainJob::from_json(&text).map_err(|e| bad(format!("--request {path}: {e}")))?;
            if let Some(m) = &args.model {
                if *m != job.model {
                    return Err(bad(format!(
                        "invalid --model = {m}: expected the request's model {:?} (or no --model)",
                        job.model
                    )));
                }
            }
            Ok(job)
        }
        (None, Some(hours)) => {
            let model = args
                .model
                .clone()
                .ok_or_else(|| bad("--hours needs --model (the model to retrain)"))?;
            if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
                return Err(bad(format!(
                    "invalid --hours = {hours}: expected a number of hours in (0, 8784]"
                )));
            }
            let to: DateTime<Utc> = Utc::now();
            let from = to - mlops::registry::chrono::Duration::milliseconds((hours * 3.6e6) as i64);
            Ok(RetrainJob {
                model,
                version: None,
                sequence: None,
                replica: None,
                reason: format!("the last {hours} hours (--hours)"),
                at: Some(to),
                window: JobWindow { from, to },
                summary: serde_json::Value::Null,
            })
        }
        (None, None) => Err(bad("give --request FILE or --hours N")),
    }
}

/// The window's refusal as bad input, or `None` when it can be retrained on.
fn check_window(w: &LoggedWindow, job: &RetrainJob, log: &str) -> Option<Stop> {
    let c = &w.counts;
    let where_ = format!(
        "model {:?}, window {} of {log}",
        job.model,
        job.window.describe()
    );
    let skipped = if w.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "; {} files skipped: {}",
            w.skipped.len(),
            w.skipped
                .iter()
                .map(|s| format!("{} ({})", s.path, s.reason))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if c.rows_read == 0 {
        return Some(bad(format!(
            "no scored rows of the model's features in the log ({where_}: {} files read, {} rows of other features{skipped})",
            c.files_read, c.rows_other_features
        )));
    }
    if c.labeled == 0 {
        return Some(bad(format!(
            "no labels: {} scored rows in the log and none labeled ({where_}: {} label rows read, {} matching no row{skipped})",
            c.rows_read, c.label_rows_read, c.labels_without_rows
        )));
    }
    let (negatives, positives) = w.class_counts();
    if negatives == 0 || positives == 0 {
        let class = if positives == 0 { 0 } else { 1 };
        return Some(bad(format!(
            "a window of one class: all {} labeled rows are {LABEL_COLUMN} {class} ({where_}); a model cannot be fit or gated on one class",
            c.labeled
        )));
    }
    None
}

async fn run(args: &Args, summary: &mut Summary, say: &mut dyn FnMut(String)) -> Result<(), Stop> {
    let job = job(args)?;
    // The settings are checked before anything is read.
    let config = RetrainConfig {
        order_column: mlops::serve::predlog::ORDER_COLUMN.into(),
        min_auc: args.min_auc,
        ..RetrainConfig::default()
    }
    .check()
    .map_err(|e| bad(format!("--min-auc: {e}")))?;
    if !(1..=MAX_TRIALS).contains(&args.trials) {
        return Err(bad(format!(
            "invalid --trials = {}: expected 1 to {MAX_TRIALS}",
            args.trials
        )));
    }
    if args.max_rows == 0 {
        return Err(bad("invalid --max-rows = 0: expected at least 1 row"));
    }
    if args.min_rows > args.max_rows {
        return Err(bad(format!(
            "invalid --min-rows = {}: expected at most --max-rows ({})",
            args.min_rows, args.max_rows
        )));
    }
    let lag = Duration::try_from_secs_f64(args.label_lag_hours * 3_600.0).map_err(|_| {
        bad(format!(
            "invalid --label-lag-hours = {}: expected a number of hours from 0",
            args.label_lag_hours
        ))
    })?;
    summary.model = job.model.clone();
    summary.window = Some(job.window);
    summary.reason = job.reason.clone();
    mlops::core::store_url::require_existing("--registry", &args.registry)
        .map_err(|e| bad(e.to_string()))?;
    let registry = Arc::new(
        Registry::open(&args.registry, &RegistryConfig::default())
            .await
            .map_err(registry_error)?,
    );
    let model = job.model.as_str();
    let Some(champion_version) = registry
        .alias(model, "production")
        .await
        .map_err(registry_error)?
        .and_then(|e| e.target)
    else {
        let known = registry.list_models().await.map_err(registry_error)?;
        return Err(bad(if known.iter().any(|m| m == model) {
            format!("model {model:?} has no `production` version to retrain against (set the alias first)")
        } else {
            format!(
                "unknown model {model:?} in {} (models: {known:?})",
                registry.store_name()
            )
        }));
    };
    // `canary` as the job found it: a move by anyone else from here on is exit 4.
    let canary_alias = config.canary_alias.clone();
    let expected_canary = registry
        .alias(model, &canary_alias)
        .await
        .map_err(registry_error)?
        .and_then(|e| e.target);
    if let Some(v) = job.version.filter(|&v| v != champion_version) {
        say(format!(
            "[retrain]   the request was raised on v{v}; production is v{champion_version} now: the candidate is gated against v{champion_version}"
        ));
    }
    let (record, artifact) = registry
        .load_artifact(model, &VersionRef::Number(champion_version))
        .await
        .map_err(registry_error)?;
    let champion = mlops::core::model::MlpModel::new(&artifact).map_err(failed)?;
    summary.champion = Some(champion_version);
    let features = artifact.spec().input_features.clone();

    // The window, joined to its labels.
    let options = ReadOptions {
        features: Some(features.clone()),
        max_rows: args.max_rows,
        label_lag: lag,
    };
    let window = read_window(
        &args.log,
        model,
        SystemTime::from(job.window.from),
        SystemTime::from(job.window.to),
        &options,
    )
    .await
    .map_err(|e| match e.kind() {
        mlops::serve::ErrorKind::InvalidInput => bad(format!("--log {}: {e}", args.log)),
        _ => failed(format!("--log {}: {e}", args.log)),
    })?;
    summary.counts = Some(window.counts);
    summary.rows = window.counts.labeled;
    summary.positives = window.class_counts().1;
    summary.skipped_files = window.skipped.len();
    for s in &window.skipped {
        say(format!("[log]       skipped {}: {}", s.path, s.reason));
    }
    let c = &window.counts;
    say(format!(
        "[log]       {model} {}: {} files, {} scored rows ({} labeled, {} unlabeled, {} ambiguous, {} of other features), {} label rows ({} relabeled, {} matching no row); versions {:?}",
        job.window.describe(),
        c.files_read,
        c.rows_read,
        c.labeled,
        c.unlabeled,
        c.ambiguous,
        c.rows_other_features,
        c.label_rows_read,
        c.relabeled,
        c.labels_without_rows,
        window.versions
    ));
    if let Some(stop) = check_window(&window, &job, &args.log) {
        return Err(stop);
    }

    // The champion's settings, or a small search.
    let recorded = record.params.get("hyperparameters");
    let settings = match recorded.map(|t| MlpSettings::from_description(t)) {
        Some(Ok(s)) if !args.search => {
            say(format!(
                "[retrain]   the champion v{champion_version}'s settings: {}",
                s.describe()
            ));
            s
        }
        other => {
            if let Some(Err(e)) = other {
                say(format!(
                    "[retrain]   the champion's settings cannot be read ({e}): searching"
                ));
            }
            let w =
                cut(&window.data, mlops::serve::predlog::ORDER_COLUMN).map_err(lifecycle_error)?;
            let searched = search(&w, args.trials, args.seed).map_err(lifecycle_error)?;
            say(format!(
                "[retrain]   searched {} trials: {}",
                args.trials,
                searched.settings.describe()
            ));
            searched.settings
        }
    };
    summary.settings = Some(settings.describe());
    let trainer = settings.trainer(args.seed).map_err(lifecycle_error)?;

    let mut columns: Vec<ColumnSchema> = features
        .iter()
        .map(|f| ColumnSchema::new(f.as_str(), ColumnKind::Numeric))
        .collect();
    columns.push(ColumnSchema {
        categories: Some(vec![0, 1]),
        ..ColumnSchema::new(LABEL_COLUMN, ColumnKind::Label)
    });
    let suite = ValidationSuite::from_config(&ValidationConfig {
        min_rows: args.min_rows,
        ..ValidationConfig::default()
    })
    .map_err(|e| bad(e.to_string()))?;
    let retrainer = Retrainer::new(registry.clone(), model, Schema { columns }, suite, config)
        .map_err(lifecycle_error)?;
    let window_name = format!("{} {}", log_name(&args.log), job.window.describe());
    let mut tags = vec![
        ("window.log".to_string(), log_name(&args.log)),
        ("window.from".to_string(), rfc3339(&job.window.from)),
        ("window.to".to_string(), rfc3339(&job.window.to)),
        ("window.rows".to_string(), window.counts.labeled.to_string()),
        ("trigger.reason".to_string(), job.reason.clone()),
    ];
    if let Some(at) = &job.at {
        tags.push(("trigger.at".to_string(), rfc3339(at)));
    }
    let outcome = retrainer
        .retrain(RetrainRequest {
            window: &window.data,
            trainer: &trainer,
            champion: &champion,
            champion_version,
            expected_canary,
            tracking: None,
            description: format!(
                "retrained on the prediction log window {window_name}: {}",
                job.reason
            ),
            tags,
            params: vec![("hyperparameters".into(), settings.describe())],
        })
        .await
        .map_err(lifecycle_error)?;
    let retrained = match outcome {
        RetrainOutcome::Refused(report) => {
            return Err(bad(format!(
                "the window failed validation against the model's schema:\n{report}"
            )))
        }
        RetrainOutcome::GateFailed(c) | RetrainOutcome::Canary(c) => c,
    };
    summary.metrics = serde_json::to_value(&retrained.metrics.values).unwrap_or_default();
    summary.champion_metrics =
        serde_json::to_value(&retrained.champion_metrics.values).unwrap_or_default();
    summary.gate = Some(retrained.reasons());
    summary.candidate = retrained.version;
    if let Some(e) = &retrained.holdout_error {
        say(format!(
            "[retrain]   the holdout cannot score the models: {e}"
        ));
    }
    if !retrained.decision.passed {
        return Err(Stop {
            code: EXIT_GATE,
            outcome: "gate_failed",
            message: format!(
                "the gate refused the candidate (vs champion v{champion_version} on the same holdout): {}",
                retrained.reasons()
            ),
        });
    }
    summary.canary = retrained.version;
    say(format!(
        "[retrain]   {model} v{} registered from {} labeled rows of {window_name}; gate vs champion v{champion_version}: {}; {canary_alias} -> v{}",
        retrained.version.unwrap_or_default(),
        retrained.rows,
        retrained.reasons(),
        retrained.version.unwrap_or_default()
    ));
    Ok(())
}

/// The log's location without credentials (a URL's user, password and query dropped).
fn log_name(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.split('?').next().unwrap_or(rest);
            // User info is only in the authority (before the first `/`), never in the path.
            let host = |authority: &'_ str| -> String {
                authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, host)| host)
                    .to_string()
            };
            match rest.split_once('/') {
                Some((authority, path)) => format!("{scheme}://{}/{path}", host(authority)),
                None => format!("{scheme}://{}", host(rest)),
            }
        }
        None => location.to_string(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut summary = Summary::default();
    let json = args.json;
    let mut say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let result = runtime.block_on(run(&args, &mut summary, &mut say));
    let code = match result {
        Ok(()) => {
            summary.outcome = "canary".into();
            0
        }
        Err(stop) => {
            summary.outcome = stop.outcome.into();
            eprintln!("error: {}", stop.message);
            summary.message = Some(stop.message);
            stop.code
        }
    };
    if json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error: writing the summary: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    ExitCode::from(code)
}
