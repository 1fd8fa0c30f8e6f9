//! A promotion policy's operating characteristics: thousands of rollouts on simulated time
//! with a known truth (`mlops::serve::rollout_sim`), and how often the policy promoted and
//! rolled back each candidate, with 95% intervals and the median time to a decision.
//!
//! ```text
//! cargo run --release --features serve,sim --example rollout_oc -- \
//!     --truth same --rps 50 --positive-rate 0.5 --label-delay-seconds 10 --runs 2000
//! cargo run --release --features serve,sim --example rollout_oc -- --table --runs 2000
//! ```
//!
//! `--table` runs the grid the canary-statistics issue asks for: an identical candidate
//! (A/A; and A/A where both fail 1% of requests), one better by 0.01 AUC, and ones worse by the policy's AUC margin, by one point of
//! error rate and by 30% of latency, at 50 requests/s (balanced classes, labels 10 s late)
//! and at the seed's mean and peak traffic (547 and 3,200 requests/s, 1.5% positives, labels
//! an hour late), and prints it as a Markdown table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mlops::serve::policy::Promotion;
use mlops::serve::rollout_sim::{operating_characteristics, OperatingCharacteristics, Scenario};
use mlops::serve::step_stats::StatsConfig;

/// Simulates many rollouts of a candidate whose truth is known and reports how often the
/// promotion policy promoted and rolled it back.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 the report was printed, 2 bad input (a flag, a policy or stats file, a scenario out of range), 1 any other failure."
)]
struct Args {
    /// The promotion policy, TOML (the library's default policy otherwise).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The router's statistics bounds (`StatsConfig`), TOML (the defaults otherwise: a label
    /// join of 2,000,000 requests, a uniform sample past it, labels kept for an hour).
    #[arg(long)]
    stats: Option<PathBuf>,
    /// The candidate: `same` (identical to stable), `auc:D` (AUC differs by D, e.g.
    /// `auc:-0.01`), `error:D` (error rate differs by D), `latency:F` (median latency × F).
    #[arg(long, default_value = "same")]
    truth: String,
    /// Requests per simulated second.
    #[arg(long, default_value_t = 547.0)]
    rps: f64,
    /// Share of positive rows.
    #[arg(long, default_value_t = 0.015)]
    positive_rate: f64,
    /// Seconds from a request to its labels.
    #[arg(long, default_value_t = 3600.0)]
    label_delay_seconds: f64,
    /// Stable's ROC AUC.
    #[arg(long, default_value_t = 0.85)]
    stable_auc: f64,
    /// Share of stable's requests that fail (the candidate's too, unless `--truth error:D`).
    #[arg(long, default_value_t = 0.0)]
    stable_error_rate: f64,
    /// Simulated hours before a rollout counts as undecided.
    #[arg(long, default_value_t = 6.0)]
    max_hours: f64,
    /// Rollouts per scenario (1 to 1,000,000).
    #[arg(long, default_value_t = 1000)]
    runs: u64,
    /// Seed of the draws (the same report for a seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs the grid of truths and traffic levels and prints a Markdown table.
    #[arg(long, conflicts_with_all = ["truth", "rps", "positive_rate", "label_delay_seconds"])]
    table: bool,
    /// Writes every report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A bad flag, file or scenario: exit 2.
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn bad(message: String) -> anyhow::Error {
    BadInput(message).into()
}

fn truth(spec: &str, base: Scenario) -> anyhow::Result<Scenario> {
    let (kind, value) = spec.split_once(':').unwrap_or((spec, ""));
    let number = || -> anyhow::Result<f64> {
        value.parse::<f64>().map_err(|_| {
            bad(format!(
                "--truth {spec:?}: {value:?} is not a number (e.g. auc:-0.01, error:0.01, latency:1.3)"
            ))
        })
    };
    Ok(match kind {
        "same" if value.is_empty() => base,
        "auc" => Scenario {
            auc_delta: number()?,
            ..base
        },
        "error" => Scenario {
            error_rate_delta: number()?,
            ..base
        },
        "latency" => Scenario {
            latency_factor: number()?,
            ..base
        },
        _ => {
            return Err(bad(format!(
                "--truth {spec:?}: expected same, auc:D, error:D or latency:F"
            )))
        }
    })
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &PathBuf, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("reading {what} {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| bad(format!("{what} {}: {e}", path.display())))
}

/// The AUC margin of the policy's `roc_auc` check (0.01 without one).
fn auc_margin(policy: &Promotion) -> f64 {
    policy
        .checks
        .iter()
        .find_map(|c| match c {
            mlops::serve::analysis::Check::RocAuc { max_decrease, .. } => Some(*max_decrease),
            _ => None,
        })
        .unwrap_or(0.01)
}

fn row(label: &str, rps: f64, r: &OperatingCharacteristics) -> String {
    let median = r
        .median_seconds_to_decision
        .map_or("—".to_string(), |s| format!("{:.1} h", s / 3600.0));
    let why: Vec<String> = r
        .why
        .iter()
        .filter(|(k, _)| k.as_str() != "promoted")
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    format!(
        "| {label} | {rps} | {} | {} | {:.1}% | {median} | {} |",
        r.promoted_share,
        r.rolled_back_share,
        100.0 * r.undecided as f64 / r.runs as f64,
        why.join("; ")
    )
}

fn run(args: &Args) -> anyhow::Result<()> {
    let policy = match &args.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| bad(format!("reading the policy {}: {e}", p.display())))?;
            Promotion::from_toml_str(&text)
                .map_err(|e| bad(format!("the policy {}: {e}", p.display())))?
        }
        None => Promotion::default(),
    };
    let stats: StatsConfig = match &args.stats {
        Some(p) => read_toml(p, "the stats config")?,
        None => StatsConfig::default(),
    };
    let base = Scenario {
        stable_auc: args.stable_auc,
        stable_error_rate: args.stable_error_rate,
        max_seconds: args.max_hours * 3600.0,
        ..Scenario::default()
    };
    let mut reports = Vec::new();
    let simulate = |label: String,
                    rps: f64,
                    scenario: Scenario|
     -> anyhow::Result<(String, f64, OperatingCharacteristics)> {
        let r = operating_characteristics(&policy, &stats, &scenario, args.runs, args.seed)
            .map_err(|e| match e.kind() {
                mlops::serve::ErrorKind::InvalidInput => bad(e.to_string()),
                _ => anyhow::Error::new(e),
            })?;
        Ok((label, rps, r))
    };
    if args.table {
        let margin = auc_margin(&policy);
        let traffic = [
            (50.0, 0.5, 10.0),
            (547.0, 0.015, 3600.0),
            (3200.0, 0.015, 3600.0),
        ];
        let truths = [
            ("A/A (same)".to_string(), "same".to_string()),
            (
                "A/A, 1% errors on both".to_string(),
                "same-erring".to_string(),
            ),
            ("better: AUC +0.01".to_string(), "auc:0.01".to_string()),
            (format!("worse: AUC −{margin}"), format!("auc:{}", -margin)),
            ("worse: errors +1 pt".to_string(), "error:0.01".to_string()),
            ("worse: latency ×1.3".to_string(), "latency:1.3".to_string()),
        ];
        for (rps, positive_rate, delay) in traffic {
            let at = Scenario {
                requests_per_second: rps,
                positive_rate,
                label_delay_seconds: delay,
                ..base.clone()
            };
            for (label, spec) in &truths {
                let scenario = if spec == "same-erring" {
                    Scenario {
                        stable_error_rate: 0.01,
                        ..at.clone()
                    }
                } else {
                    truth(spec, at.clone())?
                };
                reports.push(simulate(label.clone(), rps, scenario)?);
            }
        }
    } else {
        let scenario = truth(
            &args.truth,
            Scenario {
                requests_per_second: args.rps,
                positive_rate: args.positive_rate,
                label_delay_seconds: args.label_delay_seconds,
                ..base
            },
        )?;
        reports.push(simulate(args.truth.clone(), args.rps, scenario)?);
    }
    println!(
        "{} runs per row, seed {}, at most {} simulated hours each",
        args.runs, args.seed, args.max_hours
    );
    println!();
    println!("| candidate | requests/s | promoted [95%] | rolled back [95%] | undecided | median time to decision | why not promoted |");
    println!("|---|---|---|---|---|---|---|");
    for (label, rps, r) in &reports {
        println!("{}", row(label, *rps, r));
    }
    if let Some(path) = &args.json {
        let all: Vec<serde_json::Value> = reports
            .iter()
            .map(|(label, rps, r)| {
                serde_json::json!({"candidate": label, "requests_per_second": rps, "report": r})
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
