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

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use mlops::core::gate::MetricValues;
use mlops::core::model::MlpModel;
use mlops::core::validation::{ValidationConfig, ValidationSuite};
use mlops::core::{Dataset, Schema};
use mlops::drift::{DriftMode, EstimatedMetric, PerformanceRule, ProfileConfig, ReferenceProfile};
use mlops::lifecycle::backtest::{
    concat, default_promotion, Backtest, BacktestConfig, BacktestParts, FirstModel,
};
use mlops::lifecycle::search::{cut, params_of, search, MlpSettings};
use mlops::lifecycle::stream::{self, Stream, SyntheticStream};
use mlops::lifecycle::{
    metric_values, prediction_profile, report, threshold_at_best_f1, with_performance_estimator,
    RetrainConfig, Retrainer,
};
use mlops::registry::{DatasetFingerprint, Lineage, NewVersion, Registry, RegistryConfig};
use mlops::serve::policy::Promotion;
use mlops::train::tracking::{log_training, ExperimentTracker, ObjectStoreTracker};

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
    #[arg(long, value_parser = clap::value_parser!(u64).range(stream::MIN_BATCH_SIZE as u64..=stream::MAX_BATCH_SIZE as u64))]
    batch_size: Option<u64>,
    /// The built-in stream's change: the first batch of the new world.
    #[arg(long, default_value_t = 15)]
    shift_batch: usize,
    /// Make the built-in change gradual over this many batches (0 or 1: abrupt).
    #[arg(long, default_value_t = 0)]
    gradual: usize,
    /// Batches of history the first model is trained on before serving starts.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=stream::MAX_TRAIN_BATCHES as u64))]
    train_batches: u64,
    /// Labeled batches after an alarm that a retrain waits for and trains on.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    retrain_batches: u64,
    /// Trials of the first model's hyperparameter search (TPE, two at a time).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=200))]
    trials: u64,
    /// A time-ordered labeled CSV or Parquet file (`.parquet`, or a store URL) to replay instead of the built-in stream.
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
    /// When drift acts: `always` (every dataset drift retrains; an estimated AUC below
    /// --min-auc retrains too), or `when-at-risk` (drift acts only when the ROC AUC estimated
    /// before labels (CBPE) is below --min-auc, has fallen from its estimate on the
    /// reference (its whole band below it), is over too few rows, or is unknown; the estimate
    /// alone retrains when its whole band is below --min-auc).
    #[arg(long, value_enum, default_value_t = DriftModeArg::Always)]
    drift_mode: DriftModeArg,
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

/// `--drift-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DriftModeArg {
    /// Every dataset drift retrains.
    Always,
    /// Drift retrains only when the estimated AUC is at risk.
    WhenAtRisk,
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

/// The library names its settings' fields (`batch_size`); the command line, its flags.
fn flagged(e: mlops::lifecycle::Error) -> anyhow::Error {
    const FLAGS: [&str; 6] = [
        "batch_size",
        "shift_batch",
        "data",
        "order_col",
        "label",
        "shift_at",
    ];
    match e {
        mlops::lifecycle::Error::InvalidValue(mut v) => {
            let (head, tail) = v.field.split_once(' ').unwrap_or((&v.field, ""));
            if let Some(flag) = FLAGS.iter().find(|f| **f == head) {
                let flag = if *flag == "label" { "label_col" } else { flag };
                v.field = format!("--{} {tail}", flag.replace('_', "-"))
                    .trim_end()
                    .to_string();
            }
            v.into()
        }
        e => e.into(),
    }
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
        (Some(path), Some(label), Some(order)) => {
            let size = args.batch_size.unwrap_or(500) as usize;
            Stream::csv(path, label, order, args.shift_at, size)
        }
        _ => Stream::synthetic(&SyntheticStream {
            batches: args.batches as usize,
            batch_size: args.batch_size.unwrap_or(5_000) as usize,
            shift_batch: args.shift_batch,
            gradual: args.gradual,
            seed: args.seed,
        }),
    }
    .map_err(flagged)?;
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
                    world.history_hint(train_batches, batch_rows, needed, ["--batch-size", "--train-batches"])
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
    let (artifact, calibration) =
        with_performance_estimator(&artifact, &window.validation, &window.holdout)?;
    match &calibration {
        Ok(c) => out.line(format!(
            "[calibrate] isotonic on the validation rows; on the holdout ({} rows) expected calibration error {:.4} raw, {:.4} calibrated: the estimated AUC reads these",
            c.rows, c.raw_ece, c.calibrated_ece
        )),
        Err(e) => out.line(format!(
            "[calibrate] no performance estimator ({e}): the estimated AUC will be unknown"
        )),
    }
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
                .prediction_profile(prediction_profile(first_model.as_ref(), &history)?.to_json()?)
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

    // 3. The stream, through the library's replay of the loop.
    let promotion = match &args.policy {
        Some(p) => Promotion::from_path(p)?,
        None => default_promotion()?,
    };
    let mut backtest = Backtest::new(BacktestParts {
        stream: &world,
        registry: registry.clone(),
        model: name.to_string(),
        first: FirstModel {
            version: v1,
            artifact,
            model: first_model,
            profile,
        },
        retrainer: Retrainer::new(registry.clone(), name, schema, suite, retrain_settings)?,
        settings: hyper,
        tracker: tracker.as_ref(),
        tags,
        promotion,
        config: BacktestConfig {
            seed: args.seed,
            train_batches,
            retrain_batches,
            drift_share: args.drift_share,
            distance_threshold: args.distance_threshold,
            corrupt_retrain_labels: args.corrupt_retrain_labels,
            performance: Some(PerformanceRule {
                metric: EstimatedMetric::RocAuc,
                min: args.min_auc,
                mode: match args.drift_mode {
                    DriftModeArg::Always => DriftMode::Always,
                    DriftModeArg::WhenAtRisk => DriftMode::WhenAtRisk,
                },
            }),
        },
    })
    .await?;
    for line in backtest.prepare().await? {
        out.line(line);
    }
    for b in train_batches..n_batches {
        for line in backtest.step(b).await? {
            out.line(line);
        }
        out.bar.inc(1);
    }
    out.bar.finish_and_clear();
    let done = backtest.finish(started).await?;
    for line in &done.lines {
        println!("{line}");
    }
    // 4. Outputs.
    let drift_link = match &done.alarm {
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
        &done.summary,
        done.alarm.as_ref().map(|a| (a.batch, &a.report)),
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
        save_json(path, &done.summary)?;
        println!("[summary]   {}", path.display());
    }
    if let Some(path) = &args.metrics {
        std::fs::write(path, &done.exposition)
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
