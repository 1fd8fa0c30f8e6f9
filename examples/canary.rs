//! A canary rollout replayed on simulated time: a stable and a canary model, labeled traffic
//! through the router, the promotion policy deciding step by step, and the timeline printed
//! (each step's weights, each check's statistic, p-value, sample sizes and outcome, the final
//! decision and its reason).
//!
//! ```text
//! cargo run --release --example canary -- --scenario same|better|worse|slower|erroring|no-traffic
//!     [--seed N] [--json OUT] [--config promotion.toml]
//! cargo run --release --example canary -- --data creditcard_fraud_sample.csv --label-col Class
//! cargo run --release --example canary -- --experiment [--scenario same|better|worse|erroring]
//!     [--thompson-floor 1]
//! ```
//!
//! Built-in data: a seeded logistic world (8 features, about 20% positives); stable knows 60%
//! of the truth; the canary is stable's own model (`same`, an A/A test: the same weights
//! loaded twice), or knows all of it (`better`, and the canary of `slower`, `erroring` and
//! `no-traffic`) or 25% (`worse`). `slower` gives the canary 1.5× stable's service time,
//! `erroring` makes 2% of its calls fail, `no-traffic` sends no request at all. With `--data`,
//! the first 40% of the rows (in file order) train the models (stable on the first tenth of
//! them for 3 epochs, the canary on all of them for 15, or, `worse`, on shuffled labels) and
//! the rest are replayed. Every row is sent once (a row sent twice would be counted as new
//! evidence): the built-in world draws a fresh row for each request, and a replay whose rows
//! run out stops there, undecided, and says so. Labels come back 500 requests late; bake time and checks are the
//! policy's (the seed's 10, 25, 50, 75, 100 by default; `--config` for another); time is a
//! manual clock, so hours of traffic take seconds. Same seed, same output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use mlops::core::model::ModelArtifact;
use mlops::core::{CsvOptions, Dataset};
use mlops::serve::analysis::Outcome;
use mlops::serve::policy::Promotion;
use mlops::serve::replay::{ReplayOptions, ServiceProfile, Simulation, Synthetic, SIMULATED_MODEL};
use mlops::serve::rollout::{Decision, Phase, RolloutState};
use mlops::serve::source::ModelSource;
use mlops::serve::telemetry::ServeMetrics;
use mlops::train::{MlpConfig, TrainConfig, Trainer};
use serde::Serialize;

/// Replays labeled traffic through a stable and a canary model with the promotion policy on
/// simulated time, and prints the rollout timeline and its decision.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 the canary was promoted (--experiment: a winner was named), 3 it was rolled back (--experiment: no winner, at the latest when --max-hours end and the control stays, or the experiment stopped on an erring control), 4 no decision within --max-hours or before the rows ran out (--experiment: the rows ran out first), 2 bad input, an error or usage."
)]
struct Args {
    /// What the canary is like.
    #[arg(long, value_enum, default_value = "better")]
    scenario: Scenario,
    /// Seed of the data, the models and the simulated service times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A labeled CSV or Parquet file to replay instead of the built-in data.
    #[arg(long, requires = "label_col")]
    data: Option<PathBuf>,
    /// The label column (0/1) of --data.
    #[arg(long, requires = "data")]
    label_col: Option<String>,
    /// The promotion policy, TOML or JSON (the seed's by default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Writes {"decision", "reason", "steps": [...]} here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Requests per simulated second (1/3600 to 1,000,000; at most 50 million requests in
    /// all, --rps × --max-hours × 3600).
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
    /// Simulated hours before giving up on a decision, > 0. Bounded by the replay's request
    /// cap (--rps × --max-hours × 3600 at most 50 million: about 277 hours at the default
    /// --rps 50) and its tick cap (at most 1,000,000 controller ticks of 30 simulated seconds:
    /// about 8,333 hours), whichever is lower.
    #[arg(long, default_value_t = 12.0)]
    max_hours: f64,
    /// Runs an experiment of ten arms instead of a canary: a control (stable's model, v1,
    /// 28% of traffic) and nine candidates (v2 to v10, 8% each) that know from 30% to all of
    /// the truth (`better`), all the control's model (`same`), 10% of it (`worse`), or with a
    /// control that fails 2% of its calls (`erroring`). Every ten simulated minutes the
    /// experiment compares each candidate with the control (always valid, Holm across
    /// candidates) and names a winner only when it beats the control and the others.
    #[arg(long)]
    experiment: bool,
    /// With --experiment: moves the candidates' traffic towards those likely best (Thompson
    /// sampling; the control keeps its 28%), keeping this percent for each (0.01 to 8, whole
    /// hundredths). The leader gets most traffic, so naming a winner takes longer.
    #[arg(long, requires = "experiment")]
    thompson_floor: Option<f64>,
    /// With --experiment: writes the experiment's Prometheus series after its last analysis
    /// here (the text format `promtool check metrics` reads).
    #[arg(long, requires = "experiment")]
    metrics: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    /// The canary is stable's model itself (the same weights, loaded twice): an A/A test.
    Same,
    Better,
    Worse,
    Slower,
    Erroring,
    NoTraffic,
}

/// The most rows of built-in traffic (32 bytes each with 8 features): a replay that needs more
/// stops when they run out and says so.
const BUILT_IN_ROWS: usize = 5_000_000;

/// Stable and canary artifacts, and the traffic to replay.
fn built_in(
    scenario: Scenario,
    seed: u64,
    rows: usize,
) -> anyhow::Result<(ModelArtifact, ModelArtifact, Dataset)> {
    let world = Synthetic::new(8, seed);
    let stable = world.model(0.6, seed.wrapping_add(1))?;
    let quality = if scenario == Scenario::Worse {
        0.25
    } else {
        1.0
    };
    let canary = if scenario == Scenario::Same {
        stable.clone()
    } else {
        world.model(quality, seed.wrapping_add(2))?
    };
    Ok((stable, canary, world.traffic(rows, seed.wrapping_add(3))?))
}

fn from_csv(
    path: &std::path::Path,
    label: &str,
    scenario: Scenario,
    seed: u64,
) -> anyhow::Result<(ModelArtifact, ModelArtifact, Dataset)> {
    let data = Dataset::from_path(path, &CsvOptions::with_label(label))
        .with_context(|| format!("reading {}", path.display()))?;
    let n = data.n_rows();
    if n < 1000 {
        bail!("{}: {n} rows; the replay needs at least 1000 (40% train the models, the rest is traffic)", path.display());
    }
    data.check_finite("--data", "finite features (impute missing values first)")?;
    let window = n * 2 / 5;
    let rows = |r: std::ops::Range<usize>| data.select_rows(&r.collect::<Vec<_>>());
    let train = |set: &Dataset, epochs: usize| -> anyhow::Result<ModelArtifact> {
        let config = TrainConfig {
            epochs,
            seed,
            early_stopping: None,
            reduce_lr: None,
            ..TrainConfig::default()
        };
        Ok(Trainer::new(MlpConfig::default(), config)?
            .fit(set, None, &mut [])?
            .artifact)
    };
    let stable = train(&rows(0..window / 10)?, 3)?;
    let mut canary_rows = rows(0..window)?;
    if scenario == Scenario::Worse {
        // Labels shuffled: a canary that learned nothing.
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut labels = canary_rows.labels().context("labels")?.to_vec();
        labels.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        canary_rows = canary_rows.with_labels(labels.into(), label)?;
    }
    let canary = if scenario == Scenario::Same {
        stable.clone()
    } else {
        train(&canary_rows, 15)?
    };
    Ok((stable, canary, rows(window..n)?))
}

/// The service profiles of stable (v1) and the canary (v2).
fn profiles(scenario: Scenario, seed: u64) -> [ServiceProfile; 2] {
    let stable = ServiceProfile {
        median_ms: 2.0,
        sigma: 0.25,
        error_rate: 0.0,
        seed: seed.wrapping_mul(31),
    };
    let mut canary = ServiceProfile {
        seed: seed.wrapping_mul(31).wrapping_add(1),
        ..stable
    };
    match scenario {
        Scenario::Slower => canary.median_ms *= 1.5,
        Scenario::Erroring => canary.error_rate = 0.02,
        _ => {}
    }
    [stable, canary]
}

#[derive(Serialize)]
struct Summary<'a> {
    decision: &'a str,
    reason: String,
    scenario: Scenario,
    seed: u64,
    production_version: Option<u64>,
    requests: u64,
    failed_requests: u64,
    simulated_hours: f64,
    /// Whether the replay stopped because every row had been sent once.
    rows_ran_out: bool,
    steps: &'a [Decision],
}

fn print_timeline(state: &RolloutState, start: f64) {
    for d in &state.decisions {
        let minutes = ((d.at_unix - start) / 60.0).round() as u64;
        println!(
            "[{:>2}:{:02}] {:<13} {:>5}% -> {:>3}%  {}",
            minutes / 60,
            minutes % 60,
            d.kind.as_str(),
            d.from_percent,
            d.to_percent,
            d.reason
        );
        for c in &d.checks {
            let outcome = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Inconclusive => "inconclusive",
            };
            let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
            println!(
                "          {:<17} {:<12} statistic {:>9}  p {:>9}  n canary {:>6}  n stable {:>6}",
                c.check,
                outcome,
                num(c.statistic),
                c.p_value
                    .map_or_else(|| "-".to_string(), |p| format!("{p:.2e}")),
                c.n_candidate,
                c.n_stable
            );
        }
    }
}

/// Qualities (shares of the truth each model knows) of the nine candidates of `better`.
const CANDIDATE_QUALITIES: [f32; 9] = [0.3, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 1.0];

#[derive(Serialize)]
struct ExperimentSummary<'a> {
    outcome: mlops::serve::experiment::ExperimentOutcome,
    winner: Option<&'a str>,
    reason: &'a str,
    scenario: Scenario,
    seed: u64,
    requests: u64,
    failed_requests: u64,
    simulated_hours: f64,
    rows_ran_out: bool,
    qualities: &'a [f32],
    decisions: &'a [mlops::serve::experiment::ExperimentDecision],
}

fn run_experiment(args: &Args, options: &ReplayOptions) -> anyhow::Result<ExitCode> {
    use mlops::serve::experiment::{Allocation, Arm, ExperimentConfig, ExperimentOutcome};
    use mlops::serve::router::{Router, RouterOptions, Routes, Variant};
    use mlops::serve::{CompiledModel, NonFinitePolicy};
    use std::sync::Arc;
    if args.data.is_some() {
        bail!("--experiment runs on the built-in data (--data is for the canary)");
    }
    if !matches!(
        args.scenario,
        Scenario::Same | Scenario::Better | Scenario::Worse | Scenario::Erroring
    ) {
        bail!(
            "invalid --scenario {:?} with --experiment: expected same, better, worse or erroring",
            args.scenario
        );
    }
    let allocation = match args.thompson_floor {
        None => Allocation::Fixed,
        Some(f) if (0.01..=8.0).contains(&f) => Allocation::Thompson { floor_percent: f },
        Some(f) => bail!("invalid --thompson-floor = {f:?}: expected a percent from 0.01 to 8"),
    };
    let world = Synthetic::new(8, args.seed);
    let control = world.model(0.6, args.seed.wrapping_add(1))?;
    let qualities: Vec<f32> = match args.scenario {
        Scenario::Same => vec![0.6; 9],
        Scenario::Worse => vec![0.1; 9],
        _ => CANDIDATE_QUALITIES.to_vec(),
    };
    let clock = Arc::new(mlops::core::clock::ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
    ));
    let ticker = Arc::new(mlops::serve::ticker::ManualTicker::per_thread());
    let mut variants = Vec::new();
    let mut arms = Vec::new();
    for k in 0..10_u64 {
        let artifact = match k {
            0 => control.clone(),
            _ if args.scenario == Scenario::Same => control.clone(),
            _ => world.model(qualities[k as usize - 1], args.seed.wrapping_add(10 + k))?,
        };
        let compiled = Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Reject)?);
        let profile = ServiceProfile {
            error_rate: if k == 0 && args.scenario == Scenario::Erroring {
                0.02
            } else {
                0.0
            },
            seed: args.seed.wrapping_mul(31).wrapping_add(k),
            ..ServiceProfile::default()
        };
        let service =
            mlops::serve::replay::SimulatedService::new(compiled, ticker.clone(), profile)?;
        let name = if k == 0 {
            "control".to_string()
        } else {
            format!("arm{k}")
        };
        variants.push(Variant::new(&name, Some(k + 1), Arc::new(service)));
        arms.push(Arm::new(&name, k + 1, if k == 0 { 28.0 } else { 8.0 }));
    }
    let experiment = ExperimentConfig {
        arms,
        allocation,
        max_seconds: options.max_seconds,
        ..ExperimentConfig::default()
    }
    .check()?;
    let router = Router::new(
        SIMULATED_MODEL,
        Routes {
            variants,
            weights: experiment.initial_weights(),
            shadow: None,
        },
        RouterOptions {
            clock: clock.clone(),
            ticker,
            ..RouterOptions::default()
        },
    )?;
    let rows = (args.rps * options.max_seconds)
        .ceil()
        .clamp(1.0, BUILT_IN_ROWS as f64);
    let traffic = world.traffic(rows as usize, args.seed.wrapping_add(3))?;
    println!(
        "experiment, scenario {}, seed {}: control v1 and nine candidates (v2 to v10), {} rows of traffic at {} requests per simulated second",
        args.scenario.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
        args.seed,
        traffic.n_rows(),
        args.rps
    );
    let options = ReplayOptions {
        tick_seconds: 600.0,
        ..options.clone()
    };
    let replay =
        mlops::serve::replay::replay_experiment(&router, &clock, &experiment, &traffic, &options)?;
    let start = replay.state.started_unix;
    for d in &replay.state.decisions {
        let leader = d
            .arms
            .iter()
            .filter(|a| a.p_best.is_some())
            .max_by(|a, b| a.p_best.unwrap_or(0.0).total_cmp(&b.p_best.unwrap_or(0.0)));
        println!(
            "  {:>6} min  {:<10} {}{}",
            ((d.at_unix - start) / 60.0).round(),
            d.outcome.as_str(),
            leader.map_or_else(String::new, |a| format!(
                "leader {} (P(best) {:.2}); ",
                a.name,
                a.p_best.unwrap_or(0.0)
            )),
            d.reason
        );
    }
    let last = replay.state.last().context("no analysis ran")?;
    if let Some(path) = &args.metrics {
        let mut registry = mlops::prometheus_client::registry::Registry::default();
        let metrics = mlops::serve::experiment::ExperimentMetrics::register(&mut registry);
        for d in &replay.state.decisions {
            metrics.record("canary-experiment", d);
        }
        let text = mlops::core::exposition::classic_text(&registry)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\n| arm | version | knows | percent | status | requests | labeled | roc_auc | vs control [always-valid band] | Holm p (better) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (k, a) in last.arms.iter().enumerate() {
        let quality = if k == 0 { 0.6 } else { qualities[k - 1] };
        let fmt = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.4}"));
        println!(
            "| {} | v{} | {:.0}% | {:.2} | {} | {} | {} | {} | {} {} | {} |",
            a.name,
            a.version,
            quality * 100.0,
            a.percent,
            a.status.as_str(),
            a.requests,
            a.labeled,
            fmt(a.estimate),
            a.difference.map_or("–".to_string(), |v| format!("{v:+.4}")),
            a.interval
                .map_or(String::new(), |(l, h)| format!("[{l:+.4}, {h:+.4}]")),
            fmt(a.p_value),
        );
    }
    let undecided = last.outcome == ExperimentOutcome::Continue;
    if replay.rows_ran_out {
        println!(
            "the {} rows ran out after {:.1} simulated hours: each row is sent once",
            traffic.n_rows(),
            replay.simulated_seconds / 3600.0
        );
    }
    println!(
        "outcome: {} after {:.1} simulated hours, {} requests ({} failed)\nreason: {}",
        if undecided {
            "undecided"
        } else {
            last.outcome.as_str()
        },
        replay.simulated_seconds / 3600.0,
        replay.requests,
        replay.failed,
        last.reason
    );
    if let Some(path) = &args.json {
        let summary = ExperimentSummary {
            outcome: last.outcome,
            winner: last.winner.as_deref(),
            reason: &last.reason,
            scenario: args.scenario,
            seed: args.seed,
            requests: replay.requests,
            failed_requests: replay.failed,
            simulated_hours: replay.simulated_seconds / 3600.0,
            rows_ran_out: replay.rows_ran_out,
            qualities: &qualities,
            decisions: &replay.state.decisions,
        };
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(match last.outcome {
        ExperimentOutcome::Winner => ExitCode::SUCCESS,
        ExperimentOutcome::NoWinner | ExperimentOutcome::Stopped => ExitCode::from(3),
        ExperimentOutcome::Continue => ExitCode::from(4),
    })
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Promotion::from_path(path)?,
        None => Promotion::default(),
    };
    if !(args.max_hours.is_finite() && args.max_hours > 0.0) {
        bail!(
            "invalid --max-hours = {:?}: expected hours > 0",
            args.max_hours
        );
    }
    let options = ReplayOptions {
        requests_per_second: args.rps,
        max_seconds: args.max_hours * 3600.0,
        ..ReplayOptions::default()
    };
    // Checked before anything is built: the replay's own check, with the flag that set it.
    if let Err(e) = options.validate() {
        let flag = match &e {
            mlops::serve::Error::InvalidValue(v) if v.field.ends_with("max_seconds") => {
                format!("--max-hours {:?} at --rps {:?}", args.max_hours, args.rps)
            }
            _ => format!("--rps {:?}", args.rps),
        };
        return Err(anyhow::Error::new(e).context(flag));
    }
    if args.experiment {
        return run_experiment(args, &options);
    }
    let (stable, canary, traffic) = match (&args.data, &args.label_col) {
        (Some(path), Some(label)) => from_csv(path, label, args.scenario, args.seed)?,
        // A fresh row for every request the replay can send (each row is sent once: see
        // ReplayOptions::reuse_rows), up to BUILT_IN_ROWS.
        _ => {
            let rows = (args.rps * options.max_seconds)
                .ceil()
                .clamp(1.0, BUILT_IN_ROWS as f64);
            built_in(args.scenario, args.seed, rows as usize)?
        }
    };
    let sim = futures::executor::block_on(Simulation::new(
        stable,
        canary,
        profiles(args.scenario, args.seed),
        config,
        ServeMetrics::unregistered(),
    ))?;
    println!(
        "scenario {}, seed {}: stable v1, canary v2, {} rows of traffic at {} requests per simulated second",
        args.scenario.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
        args.seed,
        traffic.n_rows(),
        args.rps
    );
    let report = futures::executor::block_on(if args.scenario == Scenario::NoTraffic {
        // Nothing reaches the router: the controller ticks on an idle clock.
        futures::future::Either::Left(sim.idle(options.tick_seconds, options.max_seconds))
    } else {
        futures::future::Either::Right(sim.replay(&traffic, &options))
    })?;
    let (requests, failed, seconds) = (report.requests, report.failed, report.simulated_seconds);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // the simulation's
    let state = report.rollout.context("no rollout was started")?;
    let start_unix = start.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64();
    print_timeline(&state, start_unix);
    if report.rows_ran_out {
        println!(
            "the {} rows ran out after {:.1} simulated hours: each row is sent once (a row sent twice is not new evidence)",
            traffic.n_rows(),
            seconds / 3600.0
        );
    }
    let (decision, code) = match state.phase {
        Phase::Promoted => ("promoted", ExitCode::SUCCESS),
        Phase::RolledBack => ("rolled_back", ExitCode::from(3)),
        _ => ("undecided", ExitCode::from(4)),
    };
    let reason = state
        .last_decision()
        .map_or_else(String::new, |d| d.reason.clone());
    let production = futures::executor::block_on(sim.source.alias(SIMULATED_MODEL, "production"))?;
    println!(
        "decision: {decision} after {:.1} simulated hours, {requests} requests ({failed} failed); production is v{}\nreason: {reason}",
        seconds / 3600.0,
        production.unwrap_or(0)
    );
    if let Some(path) = &args.json {
        let summary = Summary {
            decision,
            reason,
            scenario: args.scenario,
            seed: args.seed,
            production_version: production,
            requests,
            failed_requests: failed,
            simulated_hours: seconds / 3600.0,
            rows_ran_out: report.rows_ran_out,
            steps: &state.decisions,
        };
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(code)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
