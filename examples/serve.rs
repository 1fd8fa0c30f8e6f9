//! Serves a model from a registry over the Open Inference Protocol (KServe V2 REST): the
//! version under `--alias` (`production`), with a candidate under `--canary-alias` (`canary`)
//! rolled out by the promotion policy (shared rollout state in the registry), reloading when
//! an alias moves.
//!
//! ```text
//! cargo run --release --features http --example serve -- --registry /tmp/reg --model fraud \
//!     [--addr 127.0.0.1:8080] [--policy promotion.toml] [--tokens-file tokens.txt] [--poll-seconds 5] \
//!     [--router-config router.toml] \
//!     [--log-predictions s3://bucket/log [--log-config log.toml]]   # with --features predlog
//!     [--monitor [--monitor-config monitor.toml] [--replica NAME]]    # with --features monitor
//!     [--prometheus http://127.0.0.1:9090]                           # with --features prometheus
//!     [--experiment experiment.toml]                                 # instead of the rollout
//!     [--grpc-addr 127.0.0.1:8081]                                   # with --features grpc
//!     [--batch-max-rows 64 [--batch-max-delay-us 1000] [--batch-workers 1]]
//! curl localhost:8080/v2/models/fraud
//! ```
//!
//! Every `--poll-seconds` the rollout controller reads the aliases and the rollout state:
//! a moved `production` is loaded and swapped in atomically (no request fails during a
//! reload), a `canary` starts a rollout, a due step is analyzed. With read-only credentials
//! the server still serves and follows; only the controller's writes fail, and are logged.
//! Bearer tokens come from `--tokens-file` (one per line) or `MLOPS_TOKENS`
//! (comma-separated); health endpoints stay open. TLS is left to the proxy in front.
//! Headers: `mlops-request-key` (sticky routing), `mlops-variant` (force `stable` or
//! `canary`). Labels go back with `POST /v2/models/{model}/labels` `{"id", "labels"}`;
//! `/metrics` is the Prometheus exposition. Any model kind the registry holds is served (an
//! mlops MLP, an XGBoost or LightGBM model): an MLP answers a missing (NaN, binary tensors)
//! value with a 400 naming the row and feature; a tree model routes it as its library does.
//! SIGINT or SIGTERM stops it after the requests in
//! flight. If the rollout controller's task dies (a panic), `/v2/health/ready` turns 503 and
//! the server stops (exit 1) after the requests in flight.
//!
//! `--experiment FILE` (TOML or JSON, `mlops::serve::experiment::ExperimentConfig`) runs an
//! experiment instead of the rollout controller: every arm's version is loaded from the
//! registry before the server answers, requests are split between the arms (sticky by
//! `mlops-request-key`, forced by `mlops-variant: ARM`), each replica hands in its window every
//! `analysis_seconds` to the registry's state document `experiment_NAME` (shared by every
//! replica; so an experiment needs write access), and each decision is a line and the
//! `mlops_serve_experiment_*` series. When it ends, the winner (or the control) keeps all
//! traffic; the aliases are not moved. A stored experiment of that name with another
//! configuration is refused at start (exit 2); found later, or a corrupt record, it stops the
//! server (readiness false, exit 1).
//!
//! `--log-predictions URL` (feature `predlog`, off by default) logs every scored row and every
//! label post as Parquet under `URL` (`predictions/` and `labels/`, partitioned by model and
//! hour; `mlops::serve::predlog`); on stopping, the buffered rows are written and one line
//! says what was written and dropped.
//!
//! `--batch-max-rows ROWS` turns on adaptive batching (`mlops::serve::batch`): concurrent
//! small inference requests (REST and gRPC, bodies up to 8 KiB) routed to one variant share a
//! model call of at most ROWS rows; a forming batch waits only for requests already being
//! decoded, and at most `--batch-max-delay-us`. `mlops_serve_batch_rows` on `/metrics` shows
//! the batch sizes.
//!
//! `--monitor` (feature `monitor`, off by default) watches live traffic: each version's
//! scored rows are compared, every window (at most once a second by default), with its
//! reference profiles in the registry; labels
//! posted back make live metrics; a drift alarm is claimed once across every replica in the
//! registry's `retrain` state document and delivered to the webhook and/or command of
//! `--monitor-config` (`mlops::serve::monitor`); the metrics are `mlops_monitor_*` on
//! `/metrics`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mlops::core::duration::{seconds, SecondsRange};
use mlops::registry::{Registry, RegistryConfig};
use mlops::serve::batch::BatchConfig;
use mlops::serve::experiment::{
    ExperimentConfig, ExperimentController, ExperimentMetrics, ExperimentParts, ExperimentTick,
};
use mlops::serve::http::{parse_tokens, serve_with, shutdown, supervise, Readiness, ServerConfig};
use mlops::serve::policy::Promotion;
use mlops::serve::rollout::{compiling_by_kind, Controller, ControllerParts, Loader, Tick};
use mlops::serve::router::{Router, RouterConfig, RouterOptions, Routes, Variant};
use mlops::serve::source::ModelSource;
use mlops::serve::telemetry::ServeMetrics;
use mlops::serve::NonFinitePolicy;

/// Serves a registry model over the KServe V2 protocol, with canary rollouts by the promotion
/// policy and reloads when an alias moves, or an experiment across several versions
/// (`--experiment`).
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 stopped by SIGINT or SIGTERM after finishing requests in flight, 1 stopped because the rollout (or experiment) controller died (readiness turned false first), 2 bad input, an error at start (no version under --alias, a registry folder that does not exist, an empty token list, a port in use, an --experiment or --router-config file that is refused (a stats.group_feature the model does not have), an arm whose version is missing, a stored experiment of that name with another configuration) or usage."
)]
struct Args {
    /// Registry location: a folder or a URL (read-only credentials suffice to serve).
    #[arg(long, env = "MLOPS_REGISTRY")]
    registry: String,
    /// The model to serve.
    #[arg(long)]
    model: String,
    /// The alias whose version is served.
    #[arg(long, default_value = "production")]
    alias: String,
    /// The alias a candidate is rolled out from.
    #[arg(long, default_value = "canary")]
    canary_alias: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Also serve the V2 gRPC service (tritonclient.grpc, KServe's gRPC clients) on this
    /// address: the same router, tokens (`authorization: Bearer` metadata), bounds and metrics.
    #[cfg(feature = "grpc")]
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Promotion policy, TOML or JSON (the seed's by default).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Router settings, TOML or JSON (`mlops::serve::router::RouterConfig`): the statistics'
    /// memory bounds, the shadow queue, and `stats.group_feature`, the input whose value is
    /// each row's sensitive group (for the `fairness` canary check and the monitor's group
    /// gauges; a request can give its group as `parameters.group` instead).
    #[arg(long)]
    router_config: Option<PathBuf>,
    /// A file of bearer tokens, one per line (or MLOPS_TOKENS, comma-separated).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Seconds between reads of the aliases and the rollout state, or of the experiment's
    /// record with --experiment (0.05 to 86,400).
    #[arg(long, default_value_t = 5.0)]
    poll_seconds: f64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    body_limit: usize,
    /// Seconds a client has to send a request's headers (0.05 to 600).
    #[arg(long, default_value_t = 10.0)]
    header_timeout_seconds: f64,
    /// Most connections open at once (more than the 64 requests worked on at once); past it
    /// (or out of file descriptors) the oldest idle one is shed.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Most inference and labels requests worked on at once (1 to 65,536, fewer than
    /// --max-connections); more get 503 at once.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Batch concurrent small inference requests (both protocols) into model calls of at
    /// most this many rows (1 to 65,536; off by default). A batch waits only for requests
    /// already being decoded, at most --batch-max-delay-us.
    #[arg(long, value_name = "ROWS")]
    batch_max_rows: Option<usize>,
    /// Longest wait of a forming batch, in microseconds (0 to 1,000,000).
    #[arg(long, default_value_t = 1000, requires = "batch_max_rows")]
    batch_max_delay_us: u64,
    /// Threads scoring batches (1 to 64).
    #[arg(long, default_value_t = 1, requires = "batch_max_rows")]
    batch_workers: usize,
    /// Log every scored row and label post as Parquet under this folder or store URL (off by
    /// default; needs the `predlog` feature).
    #[arg(long, value_name = "URL")]
    log_predictions: Option<String>,
    /// The prediction log's settings, TOML or JSON (`buffer_rows`, `batch_rows`,
    /// `batch_age_seconds`, `retries`, `retry_backoff_seconds`, `timeout_seconds`); the
    /// library's defaults without it.
    #[arg(long, value_name = "FILE", requires = "log_predictions")]
    log_config: Option<PathBuf>,
    /// Monitor live traffic: drift per version against its reference profiles, live metrics
    /// from labels, retrain requests through the hook (off by default; needs the `monitor`
    /// feature).
    #[arg(long)]
    monitor: bool,
    /// The monitor's settings, TOML or JSON (`window_rows`, `step_rows`, `[drift]`,
    /// `[policy]` with `cooldown_seconds`, `[hook]` with `webhook` and/or `command`, ...).
    #[arg(long, value_name = "FILE", requires = "monitor")]
    monitor_config: Option<PathBuf>,
    /// Judge the rollout from this Prometheus server (`http://host:port`), which scrapes every
    /// replica, instead of this replica's own counts (needs the `prometheus` feature).
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// This replica's name in the retrain requests it claims (default: host name and process
    /// id).
    #[arg(long, requires = "monitor")]
    replica: Option<String>,
    /// Run this experiment (TOML or JSON: `name`, `[[arms]]` with `name`, `version`,
    /// `percent`, `metric`, `alpha`, `allocation`, `analysis_seconds`, ...) instead of the
    /// rollout controller: the arms' versions serve, `--alias` and `--canary-alias` are not
    /// read.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policy", "prometheus", "alias", "canary_alias"])]
    experiment: Option<PathBuf>,
}

/// A settings file: JSON when it ends in `.json`, TOML otherwise.
fn read_settings<T: serde::de::DeserializeOwned>(
    flag: &str,
    path: &std::path::Path,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {flag} {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("{flag} {}", path.display()))
}

/// The live monitor of `--monitor` on `registry`, its metrics in `metrics`.
#[cfg(feature = "monitor")]
fn live_monitor(
    args: &Args,
    registry: &Arc<Registry>,
    metrics: &mut mlops::prometheus_client::registry::Registry,
) -> anyhow::Result<Option<mlops::serve::monitor::LiveMonitor>> {
    use mlops::serve::monitor::{LiveMonitor, LiveMonitorConfig, MonitorMetrics, MonitorParts};
    if !args.monitor {
        return Ok(None);
    }
    let config: LiveMonitorConfig = match &args.monitor_config {
        None => LiveMonitorConfig::default(),
        Some(path) => read_settings("--monitor-config", path)?,
    };
    let mut parts = MonitorParts::new(registry.clone(), registry.clone());
    parts.metrics = MonitorMetrics::register(metrics);
    if let Some(name) = &args.replica {
        parts.replica = name.clone();
    }
    Ok(Some(LiveMonitor::start(config.check()?, parts)?))
}

/// The prediction log of `--log-predictions`, its metrics in `registry`.
#[cfg(feature = "predlog")]
fn prediction_log(
    args: &Args,
    registry: &mut mlops::prometheus_client::registry::Registry,
) -> anyhow::Result<Option<mlops::serve::predlog::PredictionLog>> {
    use mlops::serve::predlog::{LogMetrics, LogParts, PredictionLog};
    let Some(url) = &args.log_predictions else {
        return Ok(None);
    };
    let config = match &args.log_config {
        None => Default::default(),
        Some(path) => read_settings("--log-config", path)?,
    };
    let parts = LogParts {
        config,
        metrics: LogMetrics::register(registry),
        ..LogParts::default()
    };
    Ok(Some(
        PredictionLog::open(url, parts).context("opening --log-predictions")?,
    ))
}

/// Writes what the log holds and says what was written and dropped.
#[cfg(feature = "predlog")]
async fn close_log(log: Option<mlops::serve::predlog::PredictionLog>) -> anyhow::Result<()> {
    if let Some(log) = log {
        let s = tokio::task::spawn_blocking(move || log.close()).await??;
        println!(
            "prediction log: {} rows written in {} files, {} dropped ({} buffer_full, {} store_failed, {} closed); labels: {} rows written, {} dropped",
            s.predictions.rows_written,
            s.predictions.files_written,
            s.predictions.dropped(),
            s.predictions.dropped_buffer_full,
            s.predictions.dropped_store_failed,
            s.predictions.dropped_closed,
            s.labels.rows_written,
            s.labels.dropped(),
        );
    }
    Ok(())
}

/// The bearer tokens: none without `--tokens-file` and `MLOPS_TOKENS`; an error when the one
/// given holds none (never an open server by mistake).
fn tokens(args: &Args) -> anyhow::Result<Vec<String>> {
    Ok(match &args.tokens_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --tokens-file {}", path.display()))?;
            parse_tokens(&format!("--tokens-file {}", path.display()), &text)?
        }
        None => match std::env::var("MLOPS_TOKENS") {
            Ok(text) => parse_tokens("MLOPS_TOKENS", &text.replace(',', "\n"))?,
            Err(std::env::VarError::NotPresent) => Vec::new(),
            Err(e) => anyhow::bail!("MLOPS_TOKENS: {e}"),
        },
    })
}

/// Reads of a stored experiment at start before giving up (a poll apart).
const START_TRIES: usize = 20;

/// Seconds between two polls: at least 50 ms (no busy loop), at most a day.
const POLL_RANGE: SecondsRange = SecondsRange::new(0.05, 86_400.0);

/// What moves the routes: the rollout controller, or an experiment.
enum Driver {
    Rollout(Controller),
    Experiment(ExperimentController),
}

/// The rollout controller on `--alias`/`--canary-alias`, and the routes it starts with.
async fn rollout(
    args: &Args,
    registry: &Arc<Registry>,
    metrics: ServeMetrics,
    loader: Loader,
) -> anyhow::Result<(Driver, Routes, String)> {
    let config = match &args.policy {
        Some(path) => Promotion::from_path(path)?,
        None => Promotion::default(),
    };
    let serving = ModelSource::alias(&**registry, &args.model, &args.alias)
        .await
        .with_context(|| format!("reading alias {:?} of {:?}", args.alias, args.model))?
        .with_context(|| {
            format!(
                "model {:?} has no {:?} alias in {}",
                args.model, args.alias, args.registry
            )
        })?;
    let first = loader(
        serving,
        &ModelSource::load(&**registry, &args.model, serving).await?,
    )?;
    let controller = Controller::new(ControllerParts {
        model: args.model.clone(),
        config,
        store: registry.clone(),
        source: registry.clone(),
        clock: Arc::new(mlops::core::clock::SystemClock),
        metrics,
        loader,
    })?
    .with_aliases(&args.alias, &args.canary_alias)?;
    #[cfg(feature = "prometheus")]
    let controller = match &args.prometheus {
        Some(url) => controller.with_metrics_source(Arc::new(
            mlops::serve::rollout::PrometheusSource::new(url).context("--prometheus")?,
        )),
        None => controller,
    };
    #[cfg(not(feature = "prometheus"))]
    if args.prometheus.is_some() {
        anyhow::bail!(
            "--prometheus needs the `prometheus` feature (build with --features prometheus)"
        );
    }
    Ok((
        Driver::Rollout(controller),
        Routes::single(Variant::new("stable", Some(serving), first)),
        format!("v{serving} ({})", args.alias),
    ))
}

/// The experiment of `--experiment FILE`, and its routes (every arm loaded).
async fn experiment(
    path: &std::path::Path,
    args: &Args,
    registry: &Arc<Registry>,
    metrics: &mut mlops::prometheus_client::registry::Registry,
    loader: Loader,
) -> anyhow::Result<(Driver, Routes, String)> {
    let config: ExperimentConfig = read_settings("--experiment", path)?;
    let experiment = config
        .check()
        .with_context(|| format!("--experiment {}", path.display()))?;
    let what = format!(
        "experiment {:?} ({} arms: {})",
        experiment.name,
        experiment.arms.len(),
        experiment
            .arms
            .iter()
            .map(|a| format!("{} v{} {}%", a.name, a.version, a.percent))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let controller = ExperimentController::new(ExperimentParts {
        model: args.model.clone(),
        experiment,
        store: registry.clone(),
        source: registry.clone(),
        clock: Arc::new(mlops::core::clock::SystemClock),
        metrics: ExperimentMetrics::register(metrics),
        loader,
    })?;
    let routes = controller
        .routes()
        .await
        .with_context(|| format!("loading the arms of --experiment {}", path.display()))?;
    Ok((Driver::Experiment(controller), routes, what))
}

/// Ticks the driver every `poll`, saying what it did. A permanent failure of an experiment
/// (a stored record of another configuration, corrupt data) ends it: this replica no longer
/// knows the split it should serve.
async fn drive(
    driver: Driver,
    router: Arc<Router>,
    poll: std::time::Duration,
) -> mlops::serve::Result<()> {
    loop {
        match &driver {
            Driver::Rollout(controller) => match controller.tick(&router).await {
                Ok(Tick::Acted(d)) => println!(
                    "rollout: {} {}% -> {}%: {}",
                    d.kind.as_str(),
                    d.from_percent,
                    d.to_percent,
                    d.reason
                ),
                // A source, store or Prometheus that did not answer: still serving, retried at
                // the next poll — said on every poll so an outage is never silent.
                Ok(Tick::Retrying { part, kind, error }) => eprintln!(
                    "rollout controller: {} failed ({}), retrying: {error}",
                    part.as_str(),
                    kind.as_str()
                ),
                Ok(_) => {}
                Err(e) => eprintln!("rollout controller: {e}"),
            },
            Driver::Experiment(controller) => match controller.tick(&router).await {
                Ok(ExperimentTick::Started) => println!("experiment: started"),
                Ok(ExperimentTick::Acted(d)) => println!(
                    "experiment: {} [{}]: {}",
                    d.outcome.as_str(),
                    d.arms
                        .iter()
                        .map(|a| format!("{} {}%", a.name, a.percent))
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.reason
                ),
                Ok(ExperimentTick::Retrying { kind, error }) => {
                    eprintln!("experiment: failed ({}), retrying: {error}", kind.as_str())
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("experiment: {e}");
                    return Err(e);
                }
            },
        }
        tokio::time::sleep(poll).await;
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let poll = seconds("--poll-seconds", args.poll_seconds, POLL_RANGE)?;
    let tokens = tokens(&args)?;
    // Serving only reads: a mistyped folder is refused, not created.
    mlops::core::store_url::require_existing("--registry", &args.registry)?;
    let registry = Arc::new(Registry::open(&args.registry, &RegistryConfig::default()).await?);
    let mut metrics_registry = mlops::prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut metrics_registry);
    #[cfg(feature = "predlog")]
    let log = prediction_log(&args, &mut metrics_registry)?;
    #[cfg(not(feature = "predlog"))]
    if args.log_predictions.is_some() || args.log_config.is_some() {
        anyhow::bail!(
            "--log-predictions needs the `predlog` feature (build with --features predlog)"
        );
    }
    #[cfg(feature = "monitor")]
    let monitor = live_monitor(&args, &registry, &mut metrics_registry)?;
    #[cfg(not(feature = "monitor"))]
    if args.monitor {
        anyhow::bail!("--monitor needs the `monitor` feature (build with --features monitor)");
    }
    // An MLP refuses a missing value (400 naming it); a tree model routes it as its library does.
    let loader = compiling_by_kind(NonFinitePolicy::Reject);
    let (driver, routes, serving) = match &args.experiment {
        Some(path) => experiment(path, &args, &registry, &mut metrics_registry, loader).await?,
        None => rollout(&args, &registry, metrics.clone(), loader).await?,
    };
    let router_config: RouterConfig = match &args.router_config {
        Some(path) => read_settings("--router-config", path)?,
        None => RouterConfig::default(),
    };
    let router = Arc::new(Router::new(
        &args.model,
        routes,
        RouterOptions {
            config: router_config.check()?,
            metrics,
            #[cfg(feature = "predlog")]
            prediction_log: log.clone(),
            #[cfg(feature = "monitor")]
            monitor: monitor.clone(),
            ..RouterOptions::default()
        },
    )?);
    let mut serving = serving;
    if let Driver::Experiment(controller) = &driver {
        // The stored experiment is read (or started) before serving: a replica must not split
        // traffic by a file whose experiment no one records, or that another configuration
        // already holds (refused: exit 2).
        let mut tries = 0;
        loop {
            match controller
                .tick(&router)
                .await
                .context("--experiment: the stored experiment")?
            {
                ExperimentTick::Started => println!("experiment: started"),
                ExperimentTick::Retrying { kind, error } if tries < START_TRIES => {
                    eprintln!("experiment: failed ({}), retrying: {error}", kind.as_str());
                    tries += 1;
                    tokio::time::sleep(poll).await;
                    continue;
                }
                ExperimentTick::Lost | ExperimentTick::Busy if tries < START_TRIES => {
                    tries += 1;
                    continue;
                }
                ExperimentTick::Retrying { error, .. } => {
                    anyhow::bail!(
                        "--experiment: the registry did not answer in {START_TRIES} tries: {error}"
                    )
                }
                ExperimentTick::Lost | ExperimentTick::Busy => {
                    anyhow::bail!(
                        "--experiment: other replicas kept writing first in {START_TRIES} tries"
                    )
                }
                _ => {}
            }
            break;
        }
        serving = format!(
            "{serving}, now [{}]",
            router
                .routes()
                .weights
                .iter()
                .map(|(n, p)| format!("{n} {p}%"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let server_config = ServerConfig {
        tokens,
        body_limit_bytes: args.body_limit,
        header_timeout_seconds: args.header_timeout_seconds,
        max_connections: args.max_connections,
        max_in_flight: args.max_in_flight,
        batching: args.batch_max_rows.map(|rows| BatchConfig {
            max_batch_rows: rows,
            max_delay_micros: args.batch_max_delay_us,
            workers: args.batch_workers,
            max_queue_rows: BatchConfig::default().max_queue_rows.max(rows),
        }),
        ..ServerConfig::default()
    }
    .check()?;
    let readiness = Readiness::new();
    #[cfg(feature = "grpc")]
    let (application, grpc_service) = mlops::serve::http::grpc::services(
        &args.model,
        router.clone(),
        Some(Arc::new(metrics_registry)),
        server_config.clone(),
        readiness.clone(),
    )?;
    #[cfg(not(feature = "grpc"))]
    let application = mlops::serve::http::app_with(
        &args.model,
        router.clone(),
        Some(Arc::new(metrics_registry)),
        server_config.clone(),
        readiness.clone(),
    )?;
    #[cfg(feature = "grpc")]
    let grpc_listener = match &args.grpc_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (--grpc-addr)"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!(
        "serving {} {serving} on http://{}",
        args.model,
        listener.local_addr()?
    );
    #[cfg(feature = "grpc")]
    if let Some(l) = &grpc_listener {
        println!("serving {} over gRPC on {}", args.model, l.local_addr()?);
    }
    let task = match driver {
        Driver::Rollout(_) => "rollout controller",
        Driver::Experiment(_) => "experiment controller",
    };
    let died = supervise(&readiness, task, drive(driver, router, poll));
    // Stops on SIGINT/SIGTERM, or when the controller dies (readiness is already false then):
    // the requests in flight are answered either way.
    let stop = async move {
        tokio::select! {
            () = shutdown() => {}
            _ = died => {}
        }
    };
    #[cfg(feature = "grpc")]
    let served = match grpc_listener {
        None => serve_with(listener, application, &server_config, stop).await,
        Some(grpc_listener) => {
            // One stop for both servers: the signal, the controller's death, or either
            // server ending (an error) stops the other.
            let (tx, rx) = tokio::sync::watch::channel(false);
            let tx = Arc::new(tx);
            let on_signal = tx.clone();
            tokio::spawn(async move {
                stop.await;
                let _ = on_signal.send(true);
            });
            let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            };
            let (rest, grpc) = tokio::join!(
                async {
                    let served =
                        serve_with(listener, application, &server_config, until(rx.clone())).await;
                    let _ = tx.send(true);
                    served
                },
                async {
                    let served = mlops::serve::http::grpc::serve_grpc(
                        grpc_listener,
                        grpc_service,
                        &server_config,
                        until(rx.clone()),
                    )
                    .await;
                    let _ = tx.send(true);
                    served
                },
            );
            rest.and(grpc)
        }
    };
    #[cfg(not(feature = "grpc"))]
    let served = serve_with(listener, application, &server_config, stop).await;
    // The requests in flight are answered: every row they recorded is in the buffer.
    #[cfg(feature = "predlog")]
    close_log(log).await?;
    #[cfg(feature = "monitor")]
    if let Some(m) = monitor {
        tokio::task::spawn_blocking(move || m.close()).await?;
    }
    served?;
    if let Some(reason) = readiness.reason() {
        eprintln!("error: {reason}");
        return Ok(ExitCode::from(1));
    }
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
