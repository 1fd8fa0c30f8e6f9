//! Replays the main job's card transactions (`mlops::core::synthetic::TransactionStream`)
//! against running V2 servers, as production traffic would come: each batch's rows in
//! requests with ids, spread over the servers, and each batch's labels posted one batch late
//! to the server that scored them. The world changes at `--shift-batch`.
//!
//! ```text
//! cargo run --features http --example traffic -- --server 127.0.0.1:8080 --server 127.0.0.1:8081 \
//!     --model fraud --seed 7 --batch-size 2000 --shift-batch 20 --from-batch 16 --summary traffic.json
//! ```
//!
//! With `--corrupt-labels`, every new-world label is posted a second time, made by a stale
//! rule (`mlops::lifecycle::scoring::stale_rule_labels`: a threshold on the feature that ranks
//! the batch's true labels worst): the server joins the first (true) post and logs both, so the
//! prediction log's last word on those rows is a broken label feed that a model learns well —
//! a retrain on it passes a gate scored on the same labels, and only the canary's live (true)
//! labels show it is worse. SIGINT or SIGTERM stops
//! it after the batch in flight; it then writes `--summary` and says what it sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Parser;
use mlops::core::synthetic::{Shift, TransactionConfig, TransactionStream};
use mlops::lifecycle::scoring::stale_rule_labels;
use mlops::serve::http::shutdown;
use serde_json::json;

/// Replays the synthetic card transactions against V2 servers, labels one batch late.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 every request answered (finished, or stopped by SIGINT/SIGTERM), 1 some requests failed (the summary counts them), 2 bad input or usage."
)]
struct Args {
    /// A server's `host:port` (repeat for replicas; requests go round-robin).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// The model served.
    #[arg(long, default_value = "fraud")]
    model: String,
    /// The stream's seed (the main job's `--seed`).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Transactions per batch (the main job's `--batch-size`).
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
    /// The first batch of the new world.
    #[arg(long)]
    shift_batch: usize,
    /// The first batch sent.
    #[arg(long, default_value_t = 0)]
    from_batch: usize,
    /// Batches sent (default: until stopped).
    #[arg(long)]
    batches: Option<usize>,
    /// Rows per request (1 to 1,000).
    #[arg(long, default_value_t = 20)]
    request_rows: usize,
    /// Requests in flight at once (1 to 256).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests sent per second at most, paced evenly (0: as fast as `--concurrency` allows;
    /// at most 1,000,000).
    #[arg(long, default_value_t = 0.0)]
    requests_per_second: f64,
    /// Seconds to wait after each batch (0 to 60).
    #[arg(long, default_value_t = 0.0)]
    pause_seconds: f64,
    /// Post every new-world label twice, the second time by a stale rule (logged, not joined).
    #[arg(long)]
    corrupt_labels: bool,
    /// A bearer token for the servers.
    #[arg(long, env = "MLOPS_TOKEN")]
    token: Option<String>,
    /// Where to write the summary (JSON).
    #[arg(long)]
    summary: Option<PathBuf>,
}

/// One request sent: where, its id, its labels (and with `--corrupt-labels`, the stale
/// rule's labels for the same rows, posted after them).
struct Sent {
    server: usize,
    id: String,
    labels: Vec<f64>,
    corrupt: Option<Vec<f64>>,
}

#[derive(Default, serde::Serialize)]
struct Summary {
    batches: usize,
    requests: u64,
    rows: u64,
    failed: u64,
    label_posts: u64,
    labels_failed: u64,
    /// Requests answered by each version, by batch.
    versions_by_batch: BTreeMap<usize, BTreeMap<String, u64>>,
    /// Unix seconds when the first new-world batch started (absent: not reached).
    shift_started_unix: Option<f64>,
    /// Unix seconds when each batch started.
    batch_started_unix: BTreeMap<usize, f64>,
    first_errors: Vec<String>,
}

struct Client {
    http: reqwest::Client,
    servers: Vec<String>,
    model: String,
    token: Option<String>,
}

impl Client {
    async fn post(
        &self,
        server: usize,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let url = format!(
            "http://{}/v2/models/{}/{path}",
            self.servers[server], self.model
        );
        let mut request = self.http.post(&url).json(&body);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST {url}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("POST {url}: {e}: {text}"))
    }
}

fn check(args: &Args) -> anyhow::Result<()> {
    if !(1..=1_000).contains(&args.request_rows) {
        bail!(
            "invalid --request-rows = {}: expected 1 to 1000",
            args.request_rows
        );
    }
    if !(1..=256).contains(&args.concurrency) {
        bail!(
            "invalid --concurrency = {}: expected 1 to 256",
            args.concurrency
        );
    }
    if !(0.0..=1e6).contains(&args.requests_per_second) {
        bail!(
            "invalid --requests-per-second = {}: expected 0 to 1000000",
            args.requests_per_second
        );
    }
    if !(0.0..=60.0).contains(&args.pause_seconds) {
        bail!(
            "invalid --pause-seconds = {}: expected 0 to 60",
            args.pause_seconds
        );
    }
    Ok(())
}

async fn send_batch(
    client: &Arc<Client>,
    pace: &mut Option<tokio::time::Interval>,
    args: &Args,
    stream: &TransactionStream,
    b: usize,
    summary: &mut Summary,
) -> anyhow::Result<Vec<Sent>> {
    let batch = stream.batch(b)?;
    let x = batch.features();
    let y = batch.labels().context("the stream is labeled")?;
    let corrupt = if args.corrupt_labels && b >= args.shift_batch {
        let (broken, _) = stale_rule_labels(&batch)?;
        Some(
            broken
                .labels()
                .context("the rule labels every row")?
                .to_vec(),
        )
    } else {
        None
    };
    let width = x.ncols();
    let mut jobs = Vec::new();
    for (i, start) in (0..x.nrows()).step_by(args.request_rows).enumerate() {
        let end = (start + args.request_rows).min(x.nrows());
        let rows = x.slice_axis(ndarray::Axis(0), (start..end).into());
        let id = format!("s{}-b{b}-r{i}", args.seed);
        let server = (b * 7919 + i) % args.servers.len();
        let body = json!({
            "id": id,
            "inputs": [{"name": "input", "shape": [end - start, width], "datatype": "FP32",
                        "data": rows.iter().copied().collect::<Vec<f32>>()}],
        });
        let labels: Vec<f64> = y
            .iter()
            .skip(start)
            .take(end - start)
            .map(|&v| f64::from(v))
            .collect();
        let corrupt = corrupt
            .as_ref()
            .map(|c| c[start..end].iter().map(|&v| f64::from(v)).collect());
        jobs.push((server, id, body, (labels, corrupt), end - start));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (server, id, body, labels, rows) in jobs {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let permit = semaphore.clone().acquire_owned().await?;
        let client = client.clone();
        tasks.spawn(async move {
            let answer = client.post(server, "infer", body).await;
            drop(permit);
            (server, id, labels, rows, answer)
        });
    }
    let mut sent = Vec::new();
    let versions = summary.versions_by_batch.entry(b).or_default();
    while let Some(done) = tasks.join_next().await {
        let (server, id, labels, rows, answer) = done?;
        summary.requests += 1;
        summary.rows += rows as u64;
        match answer {
            Ok(v) => {
                let version = v["model_version"].as_str().unwrap_or("?").to_string();
                *versions.entry(version).or_default() += 1;
                let (labels, corrupt) = labels;
                sent.push(Sent {
                    server,
                    id,
                    labels,
                    corrupt,
                });
            }
            Err(e) => {
                summary.failed += 1;
                if summary.first_errors.len() < 10 {
                    summary.first_errors.push(e);
                }
            }
        }
    }
    Ok(sent)
}

/// Posts each request's labels, `concurrency` posts in flight at most (as many as the
/// requests had: the servers bound their connections).
async fn post_labels(
    client: &Arc<Client>,
    sent: Vec<Sent>,
    concurrency: usize,
    summary: &mut Summary,
) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for s in sent {
        let client = client.clone();
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break;
        };
        tasks.spawn(async move {
            let _permit = permit;
            let mut failures = Vec::new();
            let mut posts = 0;
            let mut bodies = vec![json!({"id": s.id, "labels": s.labels})];
            if let Some(corrupt) = s.corrupt {
                bodies.push(json!({"id": s.id, "labels": corrupt}));
            }
            for body in bodies {
                posts += 1;
                if let Err(e) = client.post(s.server, "labels", body).await {
                    failures.push(e);
                }
            }
            (posts, failures)
        });
    }
    while let Some(Ok((posts, failures))) = tasks.join_next().await {
        summary.label_posts += posts;
        summary.labels_failed += failures.len() as u64;
        for e in failures {
            if summary.first_errors.len() < 10 {
                summary.first_errors.push(e);
            }
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let stream = TransactionStream::new(TransactionConfig {
        batch_size: args.batch_size,
        shift: Some(Shift::abrupt(args.shift_batch)),
        seed: args.seed,
        ..TransactionConfig::default()
    })?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        servers: args.servers.clone(),
        model: args.model.clone(),
        token: args.token.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        shutdown().await;
        flag.store(true, Ordering::SeqCst);
    });
    let mut summary = Summary::default();
    let mut unlabeled: Option<Vec<Sent>> = None;
    let last = args
        .batches
        .map_or(usize::MAX, |n| args.from_batch.saturating_add(n));
    let mut pace = (args.requests_per_second > 0.0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / args.requests_per_second)));
    let mut b = args.from_batch;
    while b < last && !stop.load(Ordering::SeqCst) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
        summary.batch_started_unix.insert(b, now.as_secs_f64());
        if b == args.shift_batch {
            summary.shift_started_unix = Some(now.as_secs_f64());
            println!("traffic: the world changes now (batch {b})");
        }
        let started = Instant::now();
        let sent = send_batch(&client, &mut pace, &args, &stream, b, &mut summary).await?;
        // The batch before gets its labels now: one batch late.
        if let Some(earlier) = unlabeled.replace(sent) {
            post_labels(&client, earlier, args.concurrency, &mut summary).await;
        }
        summary.batches += 1;
        let versions = &summary.versions_by_batch[&b];
        println!(
            "traffic: batch {b}: {} requests in {:.2}s, versions {versions:?}, {} failed so far",
            versions.values().sum::<u64>(),
            started.elapsed().as_secs_f64(),
            summary.failed
        );
        tokio::time::sleep(Duration::from_secs_f64(args.pause_seconds)).await;
        b += 1;
    }
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing --summary {}", path.display()))?;
    }
    println!(
        "traffic: {} batches, {} requests ({} rows), {} failed; {} label posts, {} failed",
        summary.batches,
        summary.requests,
        summary.rows,
        summary.failed,
        summary.label_posts,
        summary.labels_failed
    );
    Ok(if summary.failed + summary.labels_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
