//! A small CLI over the model registry, usable against any store URL.
//!
//! ```text
//! cargo run --example registry -- --registry /tmp/reg register fraud ./model --tag team=risk --metric roc_auc=0.97
//! cargo run --example registry -- --registry /tmp/reg register fraud ./xgb.json --features amount,hour
//! cargo run --example registry -- --registry /tmp/reg register fraud ./lgb.txt --reference train.parquet
//! cargo run --example registry -- --registry /tmp/reg register fraud ./pipe.onnx --onnx-output probabilities
//! cargo run --example registry -- --registry /tmp/reg list fraud
//! cargo run --example registry -- --registry /tmp/reg show fraud @production
//! cargo run --example registry -- --registry /tmp/reg alias fraud production 3 --expect 2
//! cargo run --example registry -- --registry /tmp/reg download fraud @production ./serving
//! cargo run --example registry -- --registry s3://bucket/models --option aws_region=eu-west-1 gc
//! ```
//!
//! `--registry` (or `MLOPS_REGISTRY`) is a directory or a URL (`file:///dir`, `memory://`,
//! `s3://`, `gs://`, `az://` with the facade's `aws`, `gcp`, `azure` features); cloud
//! credentials come from the environment as object_store's builders read them, and
//! `--option key=value` adds builder options. Output is a table, or JSON with `--json`.
//! Exit status: 0 on success, 1 on an error (printed to stderr), 2 on bad usage.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mlops::core::model::{ModelArtifact, ModelKind, OnnxOptions};
use mlops::core::{CsvOptions, Dataset};
use mlops::registry::{
    Lineage, NewVersion, Query, Registry, RegistryConfig, VersionInfo, VersionRef,
};

/// The model registry from the shell: register, list, show, alias (compare-and-swap), history,
/// rollback, download, delete, audit and gc, on a folder or any object-store URL.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 done, 1 an error (not found, a moved alias, a refused write), 2 usage."
)]
struct Cli {
    /// Registry location: a directory or a URL (file://, memory://, s3://, gs://, az://).
    #[arg(long, env = "MLOPS_REGISTRY")]
    registry: String,
    /// Store builder option KEY=VALUE (repeatable), e.g. aws_endpoint=http://127.0.0.1:9000.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Deadline of every store call, in seconds (a millisecond to a week).
    #[arg(long, default_value_t = 30.0, value_parser = timeout_seconds)]
    timeout: f64,
    /// Local cache of verified blobs.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Who is acting (default: $MLOPS_ACTOR, else $USER).
    #[arg(long)]
    actor: Option<String>,
    /// JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Register the next version of NAME: every file under a folder (an mlops model folder,
    /// or any files), or one model file of another tool (XGBoost JSON, LightGBM text, ONNX),
    /// read and checked first: a file that does not read as its kind (an ONNX op tract does
    /// not run, two outputs without --onnx-output, a dynamic input rank) is refused here,
    /// naming the problem.
    Register {
        name: String,
        /// A folder, or a model file.
        #[arg(value_name = "DIR|FILE")]
        dir: PathBuf,
        /// The kind of a model file: xgboost, lightgbm or onnx (default: told from its
        /// contents and name).
        #[arg(long)]
        kind: Option<String>,
        /// Input feature names of a model file, comma-separated, in column order (default: the
        /// file's own, or f0, f1, ... / Column_0, ... as its library names unnamed features).
        #[arg(long, value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// The output of an ONNX graph that holds the probabilities, when it has several
        /// (skl2onnx and onnxmltools classifiers: `probabilities`, beside `label`).
        #[arg(long, value_name = "NAME")]
        onnx_output: Option<String>,
        /// Decision threshold of a model file's probabilities (default 0.5).
        #[arg(long)]
        threshold: Option<f32>,
        /// Reference data of a model file (CSV or Parquet, or a store URL; its other columns
        /// are left out): stores the input and score profiles live monitoring compares with
        /// (`serve --monitor`) and an explanation background.
        #[arg(long, value_name = "DATA")]
        reference: Option<String>,
        /// Columns of --reference holding integer category codes, comma-separated (a Parquet
        /// dictionary of numbers reads as its values; one of text needs --categories).
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// A text category column of --reference and its categories in code order
        /// (repeatable; pandas' cat.categories): codes by value, as the model was trained.
        #[arg(long = "categories", value_name = "COLUMN=a,b,c")]
        categories: Vec<String>,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Metric NAME=NUMBER (repeatable).
        #[arg(long = "metric", value_name = "NAME=NUMBER")]
        metrics: Vec<String>,
        /// Parameter NAME=VALUE (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Description (also the audit reason).
        #[arg(long)]
        description: Option<String>,
        /// Tracking run id.
        #[arg(long)]
        run_id: Option<String>,
        /// Code version (a commit).
        #[arg(long)]
        code_version: Option<String>,
        /// Version this one derives from.
        #[arg(long)]
        parent: Option<u64>,
    },
    /// List versions of NAME (filters: --tag, --metric 'roc_auc>=0.9', --latest, --deleted).
    List {
        name: String,
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        #[arg(long = "metric", value_name = "EXPR")]
        metrics: Vec<String>,
        /// Only the highest matching version.
        #[arg(long)]
        latest: bool,
        /// Include deleted versions.
        #[arg(long)]
        deleted: bool,
        /// One page: the versions numbered after N (the filters apply within the page; the
        /// next page's --after is printed on stderr). A page costs the same at any number of
        /// versions; without --after or --limit every version is listed.
        #[arg(long, value_name = "N", conflicts_with = "latest")]
        after: Option<u64>,
        /// Versions per page (1 to 1000; default 100 when --after is given).
        #[arg(long, value_name = "K", conflicts_with = "latest")]
        limit: Option<usize>,
    },
    /// Show one version (a number or @ALIAS).
    Show { name: String, version: String },
    /// Point ALIAS of NAME at VERSION; with --expect, only if it points at that now
    /// (`none`: unset).
    Alias {
        name: String,
        alias: String,
        version: u64,
        #[arg(long)]
        expect: Option<String>,
        /// Reason, for the audit log.
        #[arg(long, default_value = "moved from the registry CLI")]
        why: String,
    },
    /// The history of ALIAS.
    History { name: String, alias: String },
    /// Point ALIAS back at its previous version.
    Rollback {
        name: String,
        alias: String,
        #[arg(long, default_value = "rolled back from the registry CLI")]
        why: String,
    },
    /// Download a version's files (checked against their sha256) into DIR.
    Download {
        name: String,
        version: String,
        dir: PathBuf,
    },
    /// Delete a version (a tombstone; its number is never reused).
    Delete {
        name: String,
        version: u64,
        #[arg(long)]
        why: String,
    },
    /// Models in the registry.
    Models,
    /// Audit events (of NAME when given).
    Audit { name: Option<String> },
    /// Delete blobs no live version references, older than --grace-hours.
    Gc {
        /// Hours an unreferenced blob is kept (0 to 1,000,000).
        #[arg(long, default_value_t = 24.0, value_parser = grace_hours)]
        grace_hours: f64,
    },
}

/// The longest `gc --grace-hours`: about 114 years.
const MAX_GRACE_HOURS: f64 = 1e6;

/// `println!` for a tool whose output may be piped: when the reader is gone (`registry ... |
/// head`), the program ends quietly with exit 0 instead of panicking; any other write error
/// is exit 1.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }};
}

/// `--timeout`: seconds a store call may take, checked where the registry checks it.
fn timeout_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    mlops::core::store_url::deadline("--timeout", seconds).map_err(|e| e.to_string())?;
    Ok(seconds)
}

/// `--grace-hours`: 0 (every unreferenced blob) to [`MAX_GRACE_HOURS`].
fn grace_hours(text: &str) -> Result<f64, String> {
    let hours: f64 = text.parse().map_err(|e| format!("{e}"))?;
    grace(hours).map_err(|e| e.to_string())?;
    Ok(hours)
}

/// The grace of `hours`, a named error outside 0..=[`MAX_GRACE_HOURS`] (checked in hours, the
/// flag's unit: any value in range, however small, is a duration).
fn grace(hours: f64) -> mlops::core::Result<Duration> {
    if !(0.0..=MAX_GRACE_HOURS).contains(&hours) {
        return Err(mlops::core::Error::invalid(
            "--grace-hours",
            format!("{hours:?}"),
            "a number of hours from 0 to 1000000",
        ));
    }
    // In range, `hours` × 3,600 is a finite number of seconds below 4e9: it always fits.
    Duration::try_from_secs_f64(hours.max(0.0) * 3600.0).map_err(|_| {
        mlops::core::Error::invalid(
            "--grace-hours",
            format!("{hours:?}"),
            "a number of hours from 0 to 1000000",
        )
    })
}

fn key_value(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} {text:?}: expected KEY=VALUE"),
    }
}

/// A directory path becomes a file:// URL; URLs pass through.
fn location(text: &str) -> anyhow::Result<String> {
    if text.contains("://") {
        return Ok(text.to_string());
    }
    let path = PathBuf::from(text);
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    let abs = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    Ok(format!("file://{}", abs.display()))
}

fn print_versions(versions: &[VersionInfo]) {
    out!(
        "{:>7}  {:<24}  {:<12}  {:>10}  {:<22}  metrics / tags",
        "version",
        "created",
        "by",
        "bytes",
        "aliases"
    );
    for v in versions {
        let r = &v.record;
        let metrics: Vec<String> = r.metrics.iter().map(|(k, m)| format!("{k}={m}")).collect();
        let tags: Vec<String> = r.tags.iter().map(|(k, t)| format!("{k}={t}")).collect();
        let mut aliases = v.aliases.join(",");
        if v.deleted.is_some() {
            aliases = "(deleted)".into();
        }
        out!(
            "{:>7}  {:<24}  {:<12}  {:>10}  {:<22}  {} {}",
            r.version,
            r.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            r.created_by,
            r.total_size(),
            aliases,
            metrics.join(" "),
            tags.join(" ")
        );
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = RegistryConfig {
        timeout_seconds: cli.timeout,
        actor: cli.actor.clone(),
        cache_dir: cli.cache.clone(),
        ..RegistryConfig::default()
    };
    for o in &cli.options {
        let (k, v) = key_value(o, "--option")?;
        config.options.insert(k, v);
    }
    let registry = Registry::open(&location(&cli.registry)?, &config).await?;
    match cli.command {
        Command::Register {
            name,
            dir,
            kind,
            features,
            threshold,
            onnx_output,
            reference,
            categorical,
            categories,
            tags,
            metrics,
            params,
            description,
            run_id,
            code_version,
            parent,
        } => {
            let new = if dir.is_file() {
                let bytes = std::fs::read(&dir)
                    .with_context(|| format!("reading model file {}", dir.display()))?;
                let file = dir.display().to_string();
                let kind: ModelKind = match &kind {
                    Some(k) => k.parse()?,
                    None => ModelKind::guess(&file, &bytes)?,
                };
                if reference.is_none() && !(categorical.is_empty() && categories.is_empty()) {
                    bail!("--categorical and --categories describe columns of --reference; give --reference DATA");
                }
                if onnx_output.is_some() && kind != ModelKind::Onnx {
                    bail!(
                        "--onnx-output names an output of an ONNX graph; {file} is a {kind} model"
                    );
                }
                let mut artifact = if kind == ModelKind::Onnx {
                    let options = OnnxOptions {
                        output: onnx_output.clone(),
                    };
                    ModelArtifact::from_onnx(&bytes, &options)
                } else {
                    ModelArtifact::from_model_file(kind, &bytes)
                }
                .with_context(|| format!("reading {file} as kind {kind}"))?;
                if let Some(names) = features {
                    artifact = artifact.with_input_features(names)?;
                }
                if let Some(t) = threshold {
                    artifact = artifact.with_threshold(t)?;
                }
                let mut new = NewVersion::new();
                if let Some(data) = &reference {
                    let mut options = CsvOptions {
                        categorical: categorical.clone(),
                        ..CsvOptions::default()
                    };
                    for spec in &categories {
                        options.add_categories(spec)?;
                    }
                    let table = Dataset::from_path(data, &options)
                        .with_context(|| format!("loading --reference {data}"))?;
                    let r = mlops::lifecycle::reference_of(artifact, &table)
                        .with_context(|| format!("profiling {file} on --reference {data}"))?;
                    if !r.background {
                        eprintln!("note: no complete row in --reference {data}: no explanation background stored");
                    }
                    artifact = r.artifact;
                    new = new
                        .reference_profile(r.reference_profile.to_json()?)
                        .prediction_profile(r.prediction_profile.to_json()?);
                }
                new.artifact(&artifact)?.tag("kind", kind.as_str())
            } else {
                if kind.is_some()
                    || features.is_some()
                    || threshold.is_some()
                    || reference.is_some()
                    || onnx_output.is_some()
                    || !categorical.is_empty()
                    || !categories.is_empty()
                {
                    bail!("--kind, --features, --threshold, --onnx-output, --reference, --categorical and --categories describe a model file; {} is a folder, registered as it is", dir.display());
                }
                NewVersion::new().dir(&dir)?
            };
            let mut new = new.lineage(Lineage {
                run_id: run_id.map(mlops::core::RunId::from),
                dataset: None,
                code_version,
                parent_version: parent,
            });
            for t in &tags {
                let (k, v) = key_value(t, "--tag")?;
                new = new.tag(k, v);
            }
            for m in &metrics {
                let (k, v) = key_value(m, "--metric")?;
                let value: f64 = v
                    .parse()
                    .with_context(|| format!("--metric {m:?}: expected NAME=NUMBER"))?;
                new = new.metric(k, value);
            }
            for p in &params {
                let (k, v) = key_value(p, "--param")?;
                new = new.param(k, v);
            }
            if let Some(d) = description {
                new = new.description(d);
            }
            let record = registry.register(&name, new).await?;
            if cli.json {
                print_json(&record)?;
            } else {
                out!(
                    "registered {} version {} ({} files, {} bytes)",
                    record.model,
                    record.version,
                    record.files.len(),
                    record.total_size()
                );
            }
        }
        Command::List {
            name,
            tags,
            metrics,
            latest,
            deleted,
            after,
            limit,
        } => {
            let mut query = Query {
                include_deleted: deleted,
                latest_only: latest,
                ..Query::default()
            };
            for t in &tags {
                let (k, v) = key_value(t, "--tag")?;
                query = query.tag(k, v);
            }
            for m in &metrics {
                query = query.metric(m)?;
            }
            let (all, unreadable) = if after.is_some() || limit.is_some() {
                let page = registry
                    .list_versions_page(&name, after.unwrap_or(0), limit.unwrap_or(100))
                    .await?;
                if let Some(next) = page.next_after {
                    eprintln!(
                        "more versions (up to v{}): next page with --after {next}",
                        page.last_version
                    );
                }
                if page.last_version == 0 {
                    (Vec::new(), Vec::new())
                } else {
                    // A page past the last version is empty, not an unknown model.
                    let versions = query.select(page.versions);
                    for u in &page.unreadable {
                        eprintln!("warning: unreadable version record {}: {}", u.key, u.reason);
                    }
                    if cli.json {
                        print_json(&versions)?;
                    } else {
                        print_versions(&versions);
                    }
                    return Ok(());
                }
            } else if latest && !deleted && query.tags.is_empty() && query.metrics.is_empty() {
                // The highest live version, without listing the others (none live: the
                // listing says whether the model exists).
                match registry.latest(&name).await? {
                    Some(v) => (vec![v], Vec::new()),
                    None => registry.list_versions_checked(&name).await?,
                }
            } else {
                registry.list_versions_checked(&name).await?
            };
            if all.is_empty() && unreadable.is_empty() {
                let models = registry.list_models().await?;
                bail!(
                    "model `{name}` not found in {}; models there: {}",
                    registry.store_name(),
                    if models.is_empty() {
                        "none".to_string()
                    } else {
                        models.join(", ")
                    }
                );
            }
            let versions = query.select(all);
            for u in &unreadable {
                eprintln!("warning: unreadable version record {}: {}", u.key, u.reason);
            }
            if cli.json {
                print_json(&versions)?;
            } else {
                print_versions(&versions);
            }
        }
        Command::Show { name, version } => {
            let info = registry.version(&name, &version.parse()?).await?;
            if cli.json {
                print_json(&info)?;
            } else {
                print_versions(std::slice::from_ref(&info));
                let r = &info.record;
                out!("\nfiles:");
                for f in &r.files {
                    out!("  {:<32} {:>10}  sha256:{}", f.name, f.size, f.sha256);
                }
                if !r.params.is_empty() {
                    out!("params: {:?}", r.params);
                }
                let l = &r.lineage;
                out!("lineage:");
                out!(
                    "  run id:         {}",
                    l.run_id.as_ref().map_or("-", |r| r.0.as_str())
                );
                match &l.dataset {
                    Some(d) => out!("  dataset:        sha256:{} ({} rows)", d.sha256, d.rows),
                    None => out!("  dataset:        -"),
                }
                out!(
                    "  code version:   {}",
                    l.code_version.as_deref().unwrap_or("-")
                );
                out!(
                    "  parent version: {}",
                    l.parent_version.map_or("-".to_string(), |v| v.to_string())
                );
                if let Some(d) = &r.description {
                    out!("description: {d}");
                }
                if let Some(t) = &info.deleted {
                    out!("deleted at {} by {}: {}", t.at, t.by, t.why);
                }
            }
        }
        Command::Alias {
            name,
            alias,
            version,
            expect,
            why,
        } => {
            let expected = match expect.as_deref() {
                None => registry.alias(&name, &alias).await?.and_then(|e| e.target),
                Some("none") => None,
                Some(v) => Some(
                    v.parse::<u64>()
                        .with_context(|| format!("--expect {v:?}: expected a version or none"))?,
                ),
            };
            let entry = registry
                .set_alias(&name, &alias, version, expected, &why)
                .await?;
            if cli.json {
                print_json(&entry)?;
            } else {
                out!(
                    "{name}@{alias}: {} -> {version}",
                    entry
                        .previous
                        .map_or("(unset)".to_string(), |p| p.to_string())
                );
            }
        }
        Command::History { name, alias } => {
            let history = registry.alias_history(&name, &alias).await?;
            if cli.json {
                print_json(&history)?;
            } else {
                out!(
                    "{:>4}  {:<24}  {:<12}  {:>6}  why",
                    "seq",
                    "at",
                    "by",
                    "target"
                );
                for e in &history {
                    out!(
                        "{:>4}  {:<24}  {:<12}  {:>6}  {}",
                        e.seq,
                        e.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        e.by,
                        e.target.map_or("-".to_string(), |t| t.to_string()),
                        e.why
                    );
                }
            }
        }
        Command::Rollback { name, alias, why } => {
            let entry = registry.rollback_alias(&name, &alias, &why).await?;
            if cli.json {
                print_json(&entry)?;
            } else {
                out!(
                    "{name}@{alias}: rolled back to {}",
                    entry.target.map_or("-".to_string(), |t| t.to_string())
                );
            }
        }
        Command::Download { name, version, dir } => {
            let reference: VersionRef = version.parse()?;
            let record = registry.download(&name, &reference, &dir).await?;
            if cli.json {
                print_json(&record)?;
            } else {
                out!(
                    "downloaded {name} version {} ({} files, sha256 checked) to {}",
                    record.version,
                    record.files.len(),
                    dir.display()
                );
            }
        }
        Command::Delete { name, version, why } => {
            let t = registry.delete_version(&name, version, &why).await?;
            if cli.json {
                print_json(&t)?;
            } else {
                out!("deleted {name} version {version}");
            }
        }
        Command::Models => {
            let models = registry.list_models().await?;
            if cli.json {
                print_json(&models)?;
            } else {
                models.iter().for_each(|m| out!("{m}"));
            }
        }
        Command::Audit { name } => {
            let events = registry.audit_events(name.as_deref()).await?;
            if cli.json {
                print_json(&events)?;
            } else {
                for e in &events {
                    out!(
                        "{}  {:<12}  {:<16}  {} v{} {}  {}",
                        e.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        e.actor,
                        e.action.as_str(),
                        e.model.as_deref().unwrap_or("-"),
                        e.version.map_or("-".to_string(), |v| v.to_string()),
                        e.alias
                            .as_deref()
                            .map(|a| format!("@{a}"))
                            .unwrap_or_default(),
                        e.why
                    );
                }
            }
        }
        Command::Gc { grace_hours } => {
            let report = registry
                .gc(grace(grace_hours)?, "gc from the registry CLI")
                .await?;
            if cli.json {
                print_json(&report)?;
            } else {
                out!(
                    "{} blobs: {} referenced, {} kept (younger than {grace_hours} h), {} deleted ({} bytes)",
                    report.blobs, report.referenced, report.kept_recent, report.deleted, report.bytes_deleted
                );
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
