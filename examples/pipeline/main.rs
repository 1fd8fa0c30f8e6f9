//! The main job: the closed loop, replayed end to end with no human in it.
//!
//! A fraud model is trained before the world changes (validated data, a small hyperparameter
//! search, the metric gate, registered with its drift reference profile, `production`); then
//! the rest of the stream is served through the engine and the router in batches, labels
//! arriving one batch late. A drift monitor checks every batch against the reference and
//! feeds the drift policy (cooldown on the simulated clock). On a retrain action the job
//! waits for a labeled window after the alarm, retrains on it, gates the candidate against
//! the champion re-scored on the same window, registers it and points `canary` at it; the
//! rollout controller runs a shadow phase, then the canary steps with statistical checks on
//! live traffic, and promotes it or rolls it back. The stream goes on to the end.
//!
//! ```text
//! cargo run --release --example pipeline [-- --summary out.json --metrics out.prom]
//! cargo run --release --example pipeline -- --corrupt-retrain-labels
//! cargo run --release --example pipeline -- --data ../shared/data/nebraska_weather.csv \
//!     --label-col rain --order-col day --shift-at 12000 --batch-size 365 --train-batches 10 \
//!     --distance-threshold 0.2 --min-auc 0.7 --policy examples/pipeline/low_traffic.toml
//! ```
//!
//! Every step goes through the library crates: data and validation, metrics and the gate
//! (mlops-core), the search and training and tracking (mlops-train), the registry
//! (mlops-registry), the engine, router and rollout controller (mlops-serve), the monitor
//! and policy (mlops-drift). Time is a `ManualClock`: a batch is one simulated hour.
//!
//! A run holds an exclusive lock on its --workdir; the lock does not protect a `--registry`
//! shared by runs from different workdirs (they would roll out each other's candidates).

mod model;
mod world;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Parser;
use mlops::core::clock::{Clock, ManualClock};
use mlops::core::duration::{seconds, SecondsRange};
use mlops::core::gate::MetricValues;
use mlops::core::model::MlpModel;
use mlops::core::validation::{ValidationConfig, ValidationSuite};
use mlops::core::{Dataset, Schema};
use mlops::drift::{
    DriftAction, DriftConfig, DriftMetrics, DriftMonitor, DriftPolicy, DriftPolicyConfig,
    DriftReport, DriftTest, MonitorConfig, ProfileConfig, ReferenceProfile,
};
use mlops::registry::{DatasetFingerprint, Lineage, NewVersion, Registry, RegistryConfig};
use mlops::serve::analysis::Check;
use mlops::serve::policy::{Promotion, PromotionConfig, ShadowPhase};
use mlops::serve::rollout::{
    compiling, Controller, ControllerParts, DecisionKind, RolloutStore, Tick,
};
use mlops::serve::router::{Request, Router, RouterConfig, RouterOptions, Routes, Variant};
use mlops::serve::source::ModelSource;
use mlops::serve::step_stats::StatsConfig;
use mlops::serve::telemetry::ServeMetrics;
use mlops::serve::{CompiledModel, NonFinitePolicy};
use mlops::train::tracking::{
    log_training, ExperimentTracker, MetricPoint, ObjectStoreTracker, Run,
};

use mlops::lifecycle::report::{self, BatchRow, DecisionRow, Summary};
use mlops::lifecycle::rules::{ends_rollout, LoopRules, RetrainRequests, RolloutEnd, Ruling};
use mlops::lifecycle::search::{cut, params_of, search, MlpSettings};
use mlops::lifecycle::{
    metric_values, threshold_at_best_f1, RetrainConfig, RetrainOutcome, RetrainRequest, Retrained,
    Retrainer, Tracking,
};

const HELP_AFTER: &str = "Exit codes: 0 the loop ran to the end of the stream (whatever it decided: see the timeline and --summary); 2 an error (bad arguments or data, a registry or tracking failure); 3 the first model failed the gate, so there was nothing to serve; 4 another run holds --workdir.

Outputs in --workdir: registry/ (unless --registry), mlruns/ (unless --tracking), report.html, drift_at_alarm.html, schema.json, validation.json. A run holds WORKDIR/.lock (an exclusive lock, with its pid) from start to end: a second run on the same --workdir is refused (exit 4). The lock covers the workdir only: two runs on different workdirs that share one --registry are not kept apart, and would roll out each other's candidates; give each run its own registry (or run them one at a time). A rollout an earlier, interrupted run left in the registry is rolled back before the first request, recorded as `stale_rollout_cleared`.";

/// The lock file of a run in its --workdir.
const LOCK_FILE: &str = ".lock";

/// Another run holds the workdir (exit code 4).
#[derive(Debug)]
struct Busy(String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Busy {}

/// Takes the exclusive lock of `workdir` (held until the returned file is dropped, or the
/// process ends) and writes this run's pid into it; another run holding it is a [`Busy`]
/// error naming its pid.
fn lock_workdir(workdir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = workdir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Busy(format!(
                "--workdir {} is in use by another pipeline run ({}; lock {}): two runs on one workdir would roll out each other's candidates; wait for it to end or pass another --workdir",
                workdir.display(),
                if holder.is_empty() { "pid unknown".to_string() } else { format!("pid {holder}") },
                path.display()
            ))
            .into());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// Runs the closed loop — validate, search, train, gate, register, serve, monitor, detect
/// drift, retrain, gate, shadow, canary, promote or roll back — over a stream that changes:
/// the built-in synthetic card transactions, or any time-ordered labeled CSV.
#[derive(Parser, Debug)]
#[command(version, after_help = HELP_AFTER)]
struct Args {
    /// Folder for everything the job writes (created if missing).
    #[arg(long, default_value = ".mlops")]
    workdir: PathBuf,
    /// Seed of the data, the search and the training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Batches in the built-in stream (one simulated hour each).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(6..=10_000))]
    batches: u64,
    /// Rows per batch (built-in default 5,000; --data default 500).
    #[arg(long, value_parser = clap::value_parser!(u64).range(world::MIN_BATCH_SIZE as u64..=world::MAX_BATCH_SIZE as u64))]
    batch_size: Option<u64>,
    /// The built-in stream's change: the first batch of the new world.
    #[arg(long, default_value_t = 15)]
    shift_batch: usize,
    /// Make the built-in change gradual over this many batches (0 or 1: abrupt).
    #[arg(long, default_value_t = 0)]
    gradual: usize,
    /// Batches of history the first model is trained on before serving starts.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=world::MAX_TRAIN_BATCHES as u64))]
    train_batches: u64,
    /// Labeled batches after an alarm that a retrain waits for and trains on.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    retrain_batches: u64,
    /// Trials of the first model's hyperparameter search (TPE, two at a time).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=200))]
    trials: u64,
    /// A time-ordered labeled CSV to replay instead of the built-in stream.
    #[arg(long, requires_all = ["label_col", "order_col"])]
    data: Option<PathBuf>,
    /// The 0/1 label column of --data.
    #[arg(long, requires = "data")]
    label_col: Option<String>,
    /// The column that orders --data in time (kept out of the features).
    #[arg(long, requires = "data")]
    order_col: Option<String>,
    /// Where --data's known change is, in --order-col units (for the summary's shift_batch).
    #[arg(long, requires = "data")]
    shift_at: Option<f64>,
    /// Registry URL (file://, s3://, ...; default: WORKDIR/registry). Not covered by the
    /// workdir's lock: runs from different workdirs must not share one.
    #[arg(long)]
    registry: Option<String>,
    /// Tracking: an MLflow server URL (http://…, needs the `mlflow` feature) or an object-store
    /// URL or folder (default: WORKDIR/mlruns).
    #[arg(long)]
    tracking: Option<String>,
    /// Registered model name.
    #[arg(long, default_value = "fraud")]
    model: String,
    /// Promotion policy, TOML or JSON (default: shadow one batch, then 10/25/50/75/100 with
    /// two batches each, checks error rate, p99 latency, ROC AUC non-inferiority).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Share of drifted columns that is dataset drift (Evidently's 0.5).
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// Threshold of the distance tests the preset uses on large references (normalized
    /// Wasserstein for numeric columns, Jensen–Shannon for categorical ones; Evidently's 0.1).
    #[arg(long, default_value_t = 0.1)]
    distance_threshold: f64,
    /// The gate's smallest ROC AUC on the holdout (besides: no worse than the champion).
    #[arg(long, default_value_t = 0.9)]
    min_auc: f64,
    /// Break the retraining labels on purpose (a rules-engine flag instead of confirmed fraud):
    /// the gate, scored on the same labels, passes it; the canary, on true labels, must not.
    #[arg(long)]
    corrupt_retrain_labels: bool,
    /// Write the summary JSON here.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Write the HTML report here (default: WORKDIR/report.html).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the run's Prometheus exposition (text format) here.
    #[arg(long)]
    metrics: Option<PathBuf>,
}

/// Prints above the progress bar when there is one.
struct Out {
    bar: indicatif::ProgressBar,
}

impl Out {
    fn line(&self, s: impl AsRef<str>) {
        if self.bar.is_hidden() {
            println!("{}", s.as_ref());
        } else {
            self.bar.println(s.as_ref());
        }
    }
}

fn save_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn folder_url(path: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(format!(
        "file://{}",
        std::fs::canonicalize(path)
            .with_context(|| format!("resolving {}", path.display()))?
            .display()
    ))
}

fn open_tracker(args: &Args) -> anyhow::Result<Box<dyn ExperimentTracker>> {
    match &args.tracking {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            #[cfg(feature = "mlflow")]
            {
                use mlops::train::tracking::{MlflowConfig, MlflowTracker};
                Ok(Box::new(MlflowTracker::new(MlflowConfig::new(
                    url.clone(),
                ))?))
            }
            #[cfg(not(feature = "mlflow"))]
            {
                bail!("invalid --tracking = {url}: an MLflow URL needs the `mlflow` feature (cargo run --release --features mlflow --example pipeline -- ...)")
            }
        }
        Some(location) => Ok(Box::new(ObjectStoreTracker::open(
            location,
            &Default::default(),
        )?)),
        None => Ok(Box::new(ObjectStoreTracker::open(
            &folder_url(&args.workdir.join("mlruns"))?,
            &Default::default(),
        )?)),
    }
}

/// The loop's default promotion policy, in simulated seconds of `batch_seconds` per batch.
fn default_policy(batch_seconds: f64) -> anyhow::Result<Promotion> {
    // Real engine latency (microseconds) on a shared machine: a millisecond of slack.
    let live_checks = vec![
        Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.95,
        },
        Check::LatencyP99 {
            factor: 1.5,
            slack_ms: 1.0,
        },
    ];
    let config = PromotionConfig {
        steps: vec![10.0, 25.0, 50.0, 75.0, 100.0],
        bake_time_seconds: 2.0 * batch_seconds,
        min_requests: 200,
        checks: live_checks
            .iter()
            .cloned()
            .chain([Check::RocAuc {
                max_decrease: 0.01,
                confidence: 0.95,
                min_labeled: 200,
            }])
            .collect(),
        shadow: Some(ShadowPhase {
            percent: 100.0,
            bake_time_seconds: batch_seconds,
            checks: live_checks,
        }),
        ..PromotionConfig::default()
    };
    Ok(config.check()?)
}

/// A version with what every one of the loop's versions carries: the model, its reference
/// profile, its holdout metrics, the search's settings, the gate's verdict.
fn version_of(
    artifact: &mlops::core::model::ModelArtifact,
    profile: &ReferenceProfile,
    values: &MetricValues,
    hyper: &MlpSettings,
    passed: bool,
) -> anyhow::Result<NewVersion> {
    Ok(NewVersion::new()
        .artifact(artifact)?
        .reference_profile(profile.to_json()?)
        .metrics(values)
        .param("hyperparameters", hyper.describe())
        .tag("gate", if passed { "passed" } else { "failed" }))
}

fn fingerprint(data: &Dataset) -> DatasetFingerprint {
    DatasetFingerprint {
        sha256: data.fingerprint(),
        rows: data.n_rows() as u64,
    }
}

fn concat(batches: &[Dataset]) -> anyhow::Result<Dataset> {
    let parts: Vec<&Dataset> = batches.iter().collect();
    Ok(Dataset::concat(&parts)?)
}

/// A served row waiting for its label.
struct Served {
    id: String,
    score: f32,
    label: f32,
}

/// The first check that found the new world: what the report's feature chart and the linked
/// drift report show.
struct Alarm {
    batch: usize,
    report: DriftReport,
    profile: ReferenceProfile,
    current: Vec<(String, Vec<f64>)>,
}

#[allow(clippy::too_many_lines)]
async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if !(args.drift_share > 0.0 && args.drift_share <= 1.0) {
        bail!(
            "invalid --drift-share = {}: expected a share in (0, 1]",
            args.drift_share
        );
    }
    if !(0.5..=1.0).contains(&args.min_auc) {
        bail!(
            "invalid --min-auc = {}: expected a ROC AUC in [0.5, 1]",
            args.min_auc
        );
    }
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("creating {}", args.workdir.display()))?;
    // Held to the end of the run: a second run on this workdir is refused, not interleaved.
    let _lock = lock_workdir(&args.workdir)?;
    let world = match (&args.data, &args.label_col, &args.order_col) {
        (Some(path), Some(label), Some(order)) => world::csv(
            path,
            label,
            order,
            args.shift_at,
            args.batch_size.unwrap_or(500) as usize,
        )?,
        _ => world::synthetic(&world::SyntheticSettings {
            batches: args.batches as usize,
            batch_size: args.batch_size.unwrap_or(5_000) as usize,
            shift_batch: args.shift_batch,
            gradual: args.gradual,
            seed: args.seed,
        })?,
    };
    let n_batches = world.batches.len();
    let train_batches = args.train_batches as usize;
    let retrain_batches = args.retrain_batches as usize;
    if train_batches + 2 > n_batches {
        bail!("invalid --train-batches = {train_batches}: expected at most {} (the stream has {n_batches} batches; serving needs two)", n_batches - 2);
    }
    let batch_rows = world.batches[0].n_rows();
    let order_name = world.batches[0]
        .order_column()
        .map(|(n, _)| n.to_string())
        .context("batches carry their order column")?;
    let batch_seconds = 3_600.0;
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = Arc::new(ManualClock::new(start));
    let interactive = std::io::stdout().is_terminal();
    let out = Out {
        bar: if interactive {
            let bar = indicatif::ProgressBar::new((n_batches - train_batches) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} batch {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        },
    };
    out.line(format!("[data]      {}", world.name));

    // 1. The history: validate against an inferred schema, search, train, gate.
    let history = concat(&world.batches[..train_batches])?;
    let schema = Schema::infer(&history);
    save_json(&args.workdir.join("schema.json"), &schema)?;
    let validation_config = ValidationConfig {
        min_rows: 1_000.min(history.n_rows()),
        ..ValidationConfig::default()
    };
    let suite = ValidationSuite::from_config(&validation_config)?;
    let validation = suite.run(&history, Some(&schema));
    save_json(&args.workdir.join("validation.json"), &validation)?;
    out.line(format!(
        "[validate]  history (batches 0..{}): {} rows, {} errors, {} warnings",
        train_batches - 1,
        validation.rows,
        validation.errors().count(),
        validation.warnings().count()
    ));
    if !validation.passed() {
        let hint = validation
            .errors()
            .find(|f| f.check == "min_positives")
            .map_or_else(String::new, |f| {
                let positives = f.observed.as_u64().unwrap_or(0);
                let needed = validation_config.min_positives;
                let rows = history.n_rows();
                format!(
                    "\nthe history (--train-batches {train_batches} batches of --batch-size {batch_rows} rows, {rows} rows) holds {positives} positive labels and the first model needs at least {needed}: {}",
                    world.history_hint(train_batches, batch_rows, needed)
                )
            });
        bail!("the training history failed validation:\n{validation}{hint}");
    }
    let window = cut(&history, &order_name)?;
    let searched = search(&window, args.trials as usize, args.seed)?;
    for t in &searched.trials {
        out.line(format!(
            "[search]    trial {}: {} -> val ROC AUC {}",
            t.number,
            params_of(t),
            t.value.map_or("failed".to_string(), |v| format!("{v:.4}"))
        ));
    }
    let hyper = searched.settings.clone();
    out.line(format!("[search]    best: {}", hyper.describe()));
    let tracker = open_tracker(args)?;
    let tags = [("data".to_string(), world.name.clone())].into();
    let first_run = log_training(
        tracker.as_ref(),
        "pipeline",
        "initial",
        &tags,
        &hyper.trainer(args.seed)?,
        &searched.trained,
    )
    .await?;
    let artifact = threshold_at_best_f1(
        &searched.trained.artifact,
        &window.validation,
        &[("tracking_run_id", first_run.0.clone())],
    )?;
    let first_model = Arc::new(MlpModel::new(&artifact)?);
    let values = metric_values(first_model.as_ref(), &window.holdout)?;
    let retrain_settings = RetrainConfig {
        order_column: order_name.clone(),
        min_auc: args.min_auc,
        register_rejected: true,
        ..RetrainConfig::default()
    }
    .check()?;
    let the_gate = retrain_settings.gate()?;
    let decision = the_gate.evaluate(&values, None);
    out.line(format!(
        "[gate]      first model on the history's holdout: {}",
        decision
            .results
            .iter()
            .map(|r| format!("{} {}", if r.passed { "pass" } else { "FAIL" }, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let profile = ReferenceProfile::fit(&history, &ProfileConfig::default())?;

    // 2. Register (with the reference profile), production.
    let registry_url = match &args.registry {
        Some(url) => url.clone(),
        None => folder_url(&args.workdir.join("registry"))?,
    };
    let registry = Arc::new(Registry::open(&registry_url, &RegistryConfig::default()).await?);
    let name = args.model.as_str();
    let production_before = registry
        .alias(name, "production")
        .await?
        .and_then(|e| e.target);
    let record = registry
        .register(
            name,
            version_of(&artifact, &profile, &values, &hyper, decision.passed)?
                .tag("role", "initial")
                .lineage(Lineage {
                    run_id: Some(first_run.clone()),
                    dataset: Some(fingerprint(&history)),
                    code_version: Some(format!("mlops {}", env!("CARGO_PKG_VERSION"))),
                    parent_version: production_before,
                })
                .description("the closed loop's first model"),
        )
        .await?;
    let v1 = record.version;
    if !decision.passed {
        out.line(format!(
            "[registry]  {name} v{v1} registered; it failed the gate, nothing to serve"
        ));
        return Ok(ExitCode::from(3));
    }
    registry
        .set_alias(
            name,
            "production",
            v1,
            production_before,
            "the closed loop's first model passed the gate",
        )
        .await?;
    if let Some(stale) = registry.alias(name, "canary").await?.and_then(|e| e.target) {
        registry
            .clear_alias(
                name,
                "canary",
                Some(stale),
                "a new loop starts from its own production (a candidate left by an earlier run)",
            )
            .await?;
    }
    out.line(format!(
        "[registry]  {name} v{v1} registered with its reference profile; production -> v{v1} ({registry_url})"
    ));

    // 3. Serving: engine, router, controller; drift monitor and policy; one metrics registry.
    let mut prometheus = mlops::prometheus_client::registry::Registry::default();
    let serve_metrics = ServeMetrics::register(&mut prometheus);
    let drift_metrics = DriftMetrics::register(&mut prometheus);
    serve_metrics.init_model(name);
    let router = Router::new(
        name,
        Routes::single(Variant::new(
            "stable",
            Some(v1),
            Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Reject)?),
        )),
        RouterOptions {
            config: RouterConfig {
                stats: StatsConfig {
                    label_ttl_seconds: 3.0 * batch_seconds,
                    label_join_capacity: (4 * batch_rows).max(1_000),
                    ..StatsConfig::default()
                },
                shadow_queue: 4_096,
            }
            .check()?,
            metrics: serve_metrics.clone(),
            clock: clock.clone(),
            ..RouterOptions::default()
        },
    )?;
    let promotion = match &args.policy {
        Some(p) => Promotion::from_path(p)?,
        None => default_policy(batch_seconds)?,
    };
    let controller = Controller::new(ControllerParts {
        model: name.to_string(),
        config: promotion,
        store: registry.clone() as Arc<dyn RolloutStore>,
        source: registry.clone() as Arc<dyn ModelSource>,
        clock: clock.clone(),
        metrics: serve_metrics.clone(),
        loader: compiling(NonFinitePolicy::Reject),
    })?;
    let policy = DriftPolicy::new(
        DriftPolicyConfig {
            min_samples: (batch_rows / 2).min(500),
            cooldown_seconds: 24.0 * batch_seconds,
        },
        clock.clone(),
    )
    .with_metrics(drift_metrics);
    let drift_config = DriftConfig {
        drift_share: args.drift_share,
        thresholds: [
            (DriftTest::Wasserstein, args.distance_threshold),
            (DriftTest::Js, args.distance_threshold),
        ]
        .into(),
        ..DriftConfig::default()
    }
    .check()?;
    let mut monitor = DriftMonitor::new(
        name,
        profile,
        drift_config,
        policy,
        MonitorConfig {
            window_rows: batch_rows,
            step_rows: batch_rows,
        },
    )?;
    let requests = RetrainRequests::default();
    let retrainer = Retrainer::new(registry.clone(), name, schema, suite, retrain_settings)?;
    let loop_run = Run::start(tracker.as_ref(), "pipeline", "closed-loop", &tags).await?;

    // 4. The stream.
    let mut timeline: Vec<BatchRow> = Vec::new();
    let mut decisions: Vec<DecisionRow> = Vec::new();
    let mut waiting: Vec<Served> = Vec::new();
    let mut rules = LoopRules::new(retrain_batches as u64)?;
    let mut first_alarm: Option<Alarm> = None;
    let mut candidate: Option<Box<Retrained>> = None;
    let mut first_retrain: Option<(u64, Arc<MlpModel>, usize)> = None;
    let mut outcome = "no_retrain".to_string();
    let mut production = v1;
    let mut champion: Arc<MlpModel> = first_model.clone();
    let tick = seconds(
        "the controller's tick (a twelfth of a batch)",
        batch_seconds / 12.0,
        SecondsRange::new(1e-9, batch_seconds),
    )?;
    let mut next_tick = clock.now();
    let mut failed_requests = 0u64;
    let users = 20_000u64;
    let mut x1 = [0.0f32];
    let mut points: Vec<MetricPoint> = Vec::new();
    // A rollout an earlier run left unfinished (interrupted mid-way, or between its decision
    // and the alias moves) would otherwise be served, and rolled back, on this run's traffic:
    // it is rolled back now, before the first request, and recorded. Then the router serves
    // this run's production.
    if let Some(stale) = controller.state().await? {
        let s = &stale.state;
        if !s.phase.is_terminal() || !s.aliases_settled {
            let reason = format!(
                "an earlier run left the rollout of v{} over v{} unfinished ({} at {}%): rolled back before serving; production is this run's v{v1}",
                s.candidate,
                s.stable,
                s.phase.as_str(),
                s.canary_percent
            );
            out.line(format!("[rollout]   {reason}"));
            decisions.push(DecisionRow {
                batch: train_batches,
                kind: "stale_rollout_cleared".into(),
                reason,
            });
        }
    }
    let mut serving = None;
    for _ in 0..4 {
        if let Tick::Idle { production } = controller.tick(&router).await? {
            serving = Some(production);
            break;
        }
    }
    if serving != Some(v1) {
        bail!(
            "the registry's rollout state of {name:?} did not settle on production v{v1} before serving (the router follows {serving:?}); another process may be rolling {name:?} out in {registry_url}"
        );
    }
    for b in train_batches..n_batches {
        // Labels of the previous batch arrive.
        let live_auc_prev = if waiting.is_empty() {
            None
        } else {
            let labels: Vec<f32> = waiting.iter().map(|s| s.label).collect();
            let scores: Vec<f32> = waiting.iter().map(|s| s.score).collect();
            for s in &waiting {
                router.feedback(&s.id, &[f64::from(s.label)])?;
            }
            model::scored_auc(&labels, &scores)?
        };
        if let (Some(row), Some(_)) = (timeline.last_mut(), live_auc_prev) {
            row.live_auc = live_auc_prev;
        }
        waiting.clear();

        // A retrain falls due once `retrain_batches` batches since the alarm are labeled.
        if let Some(due) = rules.due(b as u64) {
            rules.start_retrain();
            let (a, z) = (due.start as usize, due.end as usize);
            let mut window_data = concat(&world.batches[a..z])?;
            if args.corrupt_retrain_labels {
                let (d, how) = model::corrupt_labels(&window_data)?;
                out.line(format!("[retrain]   --corrupt-retrain-labels: {how}"));
                window_data = d;
            }
            let trainer = hyper.trainer(args.seed.wrapping_add(b as u64))?;
            let run_name = format!("retrain-batch-{b}");
            let retrained = retrainer
                .retrain(RetrainRequest {
                    window: &window_data,
                    trainer: &trainer,
                    champion: champion.as_ref(),
                    champion_version: production,
                    expected_canary: registry.alias(name, "canary").await?.and_then(|e| e.target),
                    tracking: Some(Tracking {
                        tracker: tracker.as_ref(),
                        experiment: "pipeline",
                        run_name: &run_name,
                        tags: &tags,
                    }),
                    description: format!(
                        "retrained on batches {a}..{} after the drift alarm",
                        z - 1
                    ),
                    tags: vec![(
                        "corrupt_labels".into(),
                        args.corrupt_retrain_labels.to_string(),
                    )],
                    params: vec![("hyperparameters".into(), hyper.describe())],
                })
                .await?;
            match retrained {
                RetrainOutcome::Refused(report) => {
                    decisions.push(DecisionRow {
                        batch: b,
                        kind: "retrain_refused".into(),
                        reason: format!("the window failed validation: {report}"),
                    });
                    out.line(format!("[retrain]   batch {b}: the window of batches {a}..{} failed validation; not retraining", z - 1));
                }
                RetrainOutcome::GateFailed(c) | RetrainOutcome::Canary(c) => {
                    if let Some(e) = &c.holdout_error {
                        out.line(format!(
                            "[retrain]   batch {b}: the holdout cannot score the models: {e}"
                        ));
                    }
                    let version = c.version.context("the loop registers every retrain")?;
                    let (why, passed) = (c.reasons(), c.decision.passed);
                    out.line(format!(
                        "[retrain]   batch {b}: trained on batches {a}..{} ({} rows), registered v{version}; gate vs champion v{production} on the same holdout: {why}",
                        z - 1,
                        c.rows
                    ));
                    first_retrain.get_or_insert((version, c.model.clone(), b));
                    let kind = if passed { "gate_passed" } else { "gate_failed" };
                    decisions.push(DecisionRow {
                        batch: b,
                        kind: kind.into(),
                        reason: format!("v{version}: {why}"),
                    });
                    if passed {
                        rules.on_candidate(version);
                        candidate = Some(c);
                        outcome = "in_progress".into();
                    } else {
                        outcome = "gate_failed".into();
                    }
                }
            }
        }

        // Serve the batch, one transaction a request, the controller ticking on the way.
        let batch = &world.batches[b];
        let rows = batch.n_rows();
        // A batch is an hour: a request every hour / rows (a nanosecond at least, so
        // simulated time always advances).
        let step = seconds(
            "the simulated gap between two requests (an hour over the batch's rows)",
            batch_seconds / rows.max(1) as f64,
            SecondsRange::new(1e-9, batch_seconds),
        )?;
        let x = batch.features();
        let labels = batch.labels().context("labeled batches")?;
        for i in 0..rows {
            let id = format!("{b}-{i}");
            let key = format!("card-{}", (b as u64 * rows as u64 + i as u64) % users);
            let request = Request {
                key: Some(&key),
                force: None,
                request_id: Some(&id),
            };
            match router.route(&request, x.row(i).insert_axis(ndarray::Axis(0)), &mut x1) {
                Ok(_) => waiting.push(Served {
                    id,
                    score: x1[0],
                    label: labels[i],
                }),
                Err(e) => {
                    failed_requests += 1;
                    tracing::warn!(error = %e, "request failed");
                }
            }
            clock.advance(step);
            while clock.now() >= next_tick {
                next_tick += tick;
                if let Tick::Acted(d) = controller.tick(&router).await? {
                    let kind = format!("rollout_{}", d.kind.as_str());
                    out.line(format!(
                        "[rollout]   batch {b}: {kind} {}% -> {}%: {}",
                        d.from_percent, d.to_percent, d.reason
                    ));
                    for c in &d.checks {
                        out.line(format!(
                            "            {:<16} {:?} statistic {} p {} (n {} / {})",
                            c.check,
                            c.outcome,
                            c.statistic.map_or("-".into(), |v| format!("{v:.4}")),
                            c.p_value.map_or("-".into(), |v| format!("{v:.2e}")),
                            c.n_candidate,
                            c.n_stable
                        ));
                    }
                    decisions.push(DecisionRow {
                        batch: b,
                        kind,
                        reason: d.reason.clone(),
                    });
                    if !ends_rollout(d.kind, d.to_percent) {
                        continue;
                    }
                    let end = rules.on_rollout_end(d.kind == DecisionKind::Promote);
                    if let (Some(end), Some(c)) = (end, candidate.take()) {
                        if let RolloutEnd::Promoted { version } = end {
                            production = version;
                            champion = c.model.clone();
                            monitor.rebase(c.profile.clone());
                            outcome = "promoted".into();
                            out.line(format!("[monitor]   reference profile -> v{version} (its training window, batches after the alarm)"));
                        } else {
                            outcome = "rolled_back".into();
                        }
                    }
                }
            }
        }

        // The drift monitor's check of the batch.
        let checks = monitor.observe(batch, &requests).await?;
        let mut row = BatchRow {
            batch: b,
            span: world.spans[b].clone(),
            drift_share: None,
            drift_mean_effect: None,
            alarm: false,
            action: None,
            live_auc: None,
            canary_percent: 0.0,
            production,
        };
        for c in &checks {
            let d = &c.report.dataset;
            row.drift_share = Some(d.share_rule.observed);
            row.drift_mean_effect = d.mean_effect_rule.as_ref().map(|r| r.observed);
            row.alarm |= d.drifted;
            row.action = Some(c.decision.action.as_str().to_string());
            if c.decision.action != DriftAction::None {
                decisions.push(DecisionRow {
                    batch: b,
                    kind: format!("drift_{}", row.action.clone().unwrap_or_default()),
                    reason: c.decision.reason.clone(),
                });
            }
            if d.drifted && first_alarm.is_none() && world.shift_batch.is_none_or(|s| b >= s) {
                let columns = batch
                    .feature_names()
                    .enumerate()
                    .map(|(j, n)| {
                        let v = batch
                            .features()
                            .column(j)
                            .iter()
                            .map(|&v| f64::from(v))
                            .collect();
                        (n.to_string(), v)
                    })
                    .collect();
                first_alarm = Some(Alarm {
                    batch: b,
                    report: c.report.clone(),
                    profile: monitor.profile().clone(),
                    current: columns,
                });
            }
        }
        let asked = requests.take();
        if !asked.is_empty() {
            if let Ruling::Deferred { rolling_out } = rules.on_retrain_request(b as u64) {
                decisions.push(DecisionRow {
                    batch: b,
                    kind: "retrain_deferred".into(),
                    reason: format!("v{rolling_out} is still rolling out"),
                });
            }
        }
        if let Some(stored) = controller.state().await? {
            if !stored.state.phase.is_terminal() {
                row.canary_percent = stored.state.canary_percent;
            }
        }
        out.line(format!(
            "[batch {b:>3}] {:<22} drift {} {:<8} live AUC (prev) {}  canary {:>5.1}%  production v{production}",
            row.span,
            row.drift_share.map_or("  -  ".into(), |s| format!("{s:.2}")),
            if row.alarm { "ALARM" } else { "" },
            live_auc_prev.map_or("  -   ".into(), |v| format!("{v:.4}")),
            row.canary_percent,
        ));
        for (key, value) in [
            ("drift_share", row.drift_share),
            ("live_auc", live_auc_prev),
            ("canary_percent", Some(row.canary_percent)),
        ] {
            if let Some(v) = value {
                points.push(MetricPoint {
                    key: key.into(),
                    value: v,
                    step: b as i64,
                    timestamp_ms: clock
                        .now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                });
            }
        }
        timeline.push(row);
        out.bar.inc(1);
    }
    out.bar.finish_and_clear();
    // The last batch's labels.
    if !waiting.is_empty() {
        let labels: Vec<f32> = waiting.iter().map(|s| s.label).collect();
        let scores: Vec<f32> = waiting.iter().map(|s| s.score).collect();
        for s in &waiting {
            router.feedback(&s.id, &[f64::from(s.label)])?;
        }
        if let Some(row) = timeline.last_mut() {
            row.live_auc = model::scored_auc(&labels, &scores)?;
        }
    }
    loop_run.log_metrics(&points).await?;
    loop_run
        .end(mlops::train::tracking::RunStatus::Finished)
        .await?;

    // 5. The numbers: before the change, and after it on rows nobody trained on.
    let shift = world.shift_batch;
    let detected = timeline
        .iter()
        .find(|r| r.alarm && shift.is_some_and(|s| r.batch >= s))
        .map(|r| r.batch);
    let before: Vec<&BatchRow> = timeline
        .iter()
        .filter(|r| shift.is_none_or(|s| r.batch < s) && r.drift_share.is_some())
        .collect();
    let false_alarms = before.iter().filter(|r| r.alarm).count();
    let checks_before = before.len();
    let pre_rows: Vec<Dataset> = (train_batches..shift.unwrap_or(n_batches).min(n_batches))
        .map(|b| world.batches[b].clone())
        .collect();
    let auc_before = if pre_rows.is_empty() {
        None
    } else {
        model::auc(first_model.as_ref(), &concat(&pre_rows)?)?
    };
    // Post-change rows nobody trained on: from the first retrain (or a retraining window after
    // the change when there was none) to the end. A CSV's oracle trains on the rows between
    // the change and there, so they start a retraining window after the change at least.
    let eval_start = shift.map(|s| {
        let floor = if world.synthetic.is_some() {
            s
        } else {
            s + retrain_batches
        };
        first_retrain
            .as_ref()
            .map_or(s + retrain_batches, |(_, _, at)| *at)
            .max(floor)
            .max(train_batches)
    });
    let eval = match eval_start {
        Some(e) if e < n_batches => Some((e, concat(&world.batches[e..])?)),
        _ => None,
    };
    let (mut auc_old, mut auc_retrained, mut auc_oracle) = (None, None, None);
    if let (Some((e, rows)), Some(s)) = (&eval, shift) {
        auc_old = model::auc(first_model.as_ref(), rows)?;
        if let Some((_, m, _)) = &first_retrain {
            auc_retrained = model::auc(m.as_ref(), rows)?;
        }
        // The oracle: the same settings trained directly on the new world, as many rows as a
        // retraining window — fresh rows of it for the built-in stream, the rows between the
        // change and the evaluation for a CSV. What it gains over the loop's model is what the
        // loop costs: detection delay and old-world rows in the window.
        let oracle = || -> anyhow::Result<Option<f64>> {
            let data = match &world.synthetic {
                Some(stream) => {
                    stream.sample(retrain_batches * batch_rows, true, args.seed ^ 0x0AC1E)?
                }
                None => concat(&world.batches[s..*e])?,
            };
            let w = cut(&data, &order_name)?;
            let trained = hyper.trainer(args.seed.wrapping_add(7))?.fit(
                &w.train,
                Some(&w.validation),
                &mut [],
            )?;
            model::auc(&MlpModel::new(&trained.artifact)?, rows)
        };
        match oracle() {
            Ok(v) => auc_oracle = v,
            Err(e) => println!("[summary]   no oracle: {e:#}"),
        }
    }
    let production_version = registry
        .alias(name, "production")
        .await?
        .and_then(|e| e.target)
        .unwrap_or(0);
    let summary = Summary {
        data: world.name.clone(),
        seed: args.seed,
        batches: n_batches,
        batch_rows,
        train_batches,
        shift_batch: shift,
        detected_batch: detected,
        detection_delay_batches: detected.zip(shift).map(|(d, s)| d - s),
        false_alarms_before_shift: false_alarms,
        checks_before_shift: checks_before,
        auc_before_shift: auc_before,
        auc_after_shift_old_model: auc_old,
        auc_after_retrain: auc_retrained,
        auc_oracle,
        evaluation_rows: eval.as_ref().map_or(0, |(_, d)| d.n_rows()),
        evaluation_batches: eval.as_ref().map(|(e, _)| (*e, n_batches - 1)),
        outcome: outcome.clone(),
        production_version,
        initial_version: v1,
        candidate_version: first_retrain.as_ref().map(|(v, _, _)| *v),
        corrupt_retrain_labels: args.corrupt_retrain_labels,
        hyperparameters: serde_json::to_value(&hyper)?,
        seconds: started.elapsed().as_secs_f64(),
        decisions,
        timeline,
    };
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "[summary]   change at batch {}, detected at batch {}, {} false alarm(s) in {} checks before it",
        shift.map_or("-".into(), |s| s.to_string()),
        detected.map_or("never".into(), |d| d.to_string()),
        false_alarms,
        checks_before
    );
    println!(
        "[summary]   ROC AUC before the change {}; after it (batches {}): old model {}, retrained {}, oracle {}",
        num(auc_before),
        summary.evaluation_batches.map_or("-".into(), |(a, z)| format!("{a}..{z}")),
        num(auc_old),
        num(auc_retrained),
        num(auc_oracle)
    );
    println!(
        "[summary]   outcome: {outcome}; production is v{production_version}; {failed_requests} failed requests; {:.1} s",
        summary.seconds
    );
    // 6. Outputs.
    let drift_link = match &first_alarm {
        Some(a) => {
            let path = args.workdir.join("drift_at_alarm.html");
            std::fs::write(
                &path,
                mlops::drift::html_report(&a.profile, &a.report, &a.current)?,
            )
            .with_context(|| format!("writing {}", path.display()))?;
            Some("drift_at_alarm.html")
        }
        None => None,
    };
    let html = report::html(
        &summary,
        first_alarm.as_ref().map(|a| (a.batch, &a.report)),
        drift_link,
        args.drift_share,
    )?;
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.workdir.join("report.html"));
    std::fs::write(&report_path, html)
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("[report]    {}", report_path.display());
    if let Some(path) = &args.summary {
        save_json(path, &summary)?;
        println!("[summary]   {}", path.display());
    }
    if let Some(path) = &args.metrics {
        std::fs::write(path, mlops::core::exposition::classic_text(&prometheus)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("[metrics]   {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<Busy>() {
                ExitCode::from(4)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
