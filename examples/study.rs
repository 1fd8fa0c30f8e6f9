//! One hyperparameter study run by many workers through a journal on an object store (a
//! folder, `s3://bucket/prefix`, `gs://...`, `az://...`), in Optuna's JournalStorage format.
//!
//! ```text
//! # Four workers on one study, on four machines or in one shell:
//! for i in 1 2 3 4; do cargo run --example study -- worker --journal s3://hpo/branin --trials 40 & done; wait
//! # An external scheduler (a shell loop, Ray, Kubernetes jobs) asks, runs and tells:
//! cargo run --example study -- ask --journal /tmp/study            # {"number": 0, "params": {...}}
//! cargo run --example study -- tell --journal /tmp/study --number 0 --value 0.42
//! cargo run --example study -- enqueue --journal /tmp/study --params '{"x1": 3.14, "x2": 2.27}'
//! # Read it with Optuna (or optuna-dashboard):
//! cargo run --example study -- export --journal s3://hpo/branin --out branin.log
//! ```
//!
//! The objective of `worker` is a test function (Branin or Hartmann 6, minimized), so the
//! study itself can be checked; `--trial-seconds` makes each trial last that long, standing in
//! for training.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use mlops::train::hpo::{
    benchmarks, Ask, Assignment, Direction, Distribution, JournalConfig, ObjectiveConfig, Outcome,
    Param, ParamValue, PrunerConfig, SamplerConfig, SearchSpace, Study, StudyConfig,
};

/// Runs one hyperparameter study from many processes through a shared journal on a folder or
/// an object store: `worker` runs trials until the study stops; `ask`, `tell`, `heartbeat` and
/// `enqueue` let an external scheduler drive it; `export` writes the journal as one Optuna
/// `JournalFileBackend` file; `show` prints every trial.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 done, 1 an error (a journal of another study, a trial that is not running, a store that cannot be reached), 2 usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(ClapArgs, Clone)]
struct StudyArgs {
    /// The journal: a folder path, file:///dir, s3://bucket/prefix, gs://... or az://...
    /// (credentials from the environment, as for the registry).
    #[arg(long)]
    journal: String,
    /// The objective: `branin` (2 parameters) or `hartmann6` (6), minimized.
    #[arg(long, default_value = "branin")]
    objective: String,
    /// `tpe`, `gp`, `random` or `grid`.
    #[arg(long, default_value = "tpe")]
    sampler: String,
    /// The study's seed (trial n draws from stream n of it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Trials in all (complete or pruned; failed ones do not count).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    trials: u64,
    /// Failed trials the study tolerates.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    max_failed: u64,
    /// Seconds between heartbeats of a running trial.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_seconds: f64,
    /// A running trial silent this long is failed and its point retried (at least twice
    /// --heartbeat-seconds).
    #[arg(long, default_value_t = 60.0)]
    stale_after_seconds: f64,
    /// Deadline of each store call.
    #[arg(long, default_value_t = 30.0)]
    timeout_seconds: f64,
    /// Times the point of a trial presumed dead is enqueued again.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1000))]
    max_retries: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Runs trials (ask, run, tell, with heartbeats) until the study stops; prints one JSON
    /// line: the stop reason, the trials this worker told and the study's best.
    Worker {
        #[command(flatten)]
        study: StudyArgs,
        /// Trials this process runs at once (threads).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        parallel: u64,
        /// Each trial also sleeps this long (standing in for training).
        #[arg(long, default_value_t = 0.0)]
        trial_seconds: f64,
    },
    /// Prints the next trial to run (`{"number", "params", "retry_of"}`), `{"wait": true}`
    /// when running trials hold the budget, or `{"stop": reason}`.
    Ask {
        #[command(flatten)]
        study: StudyArgs,
    },
    /// Records how a trial ended: `--value V`, `--pruned`, or `--failed REASON`.
    Tell {
        #[command(flatten)]
        study: StudyArgs,
        /// The trial number.
        #[arg(long)]
        number: u64,
        /// Its objective value.
        #[arg(long, conflicts_with_all = ["pruned", "failed"], required_unless_present_any = ["pruned", "failed"])]
        value: Option<f64>,
        /// It was pruned.
        #[arg(long)]
        pruned: bool,
        /// It failed, and why.
        #[arg(long)]
        failed: Option<String>,
    },
    /// Says a trial run outside `worker` is still running.
    Heartbeat {
        #[command(flatten)]
        study: StudyArgs,
        /// The trial number.
        #[arg(long)]
        number: u64,
    },
    /// Enqueues a known-good point (JSON object of parameter values), run before new draws;
    /// prints its trial number.
    Enqueue {
        #[command(flatten)]
        study: StudyArgs,
        /// `{"x1": 3.14, "x2": 2.27}`
        #[arg(long)]
        params: String,
    },
    /// Writes the journal as one Optuna JournalFileBackend file.
    Export {
        #[command(flatten)]
        study: StudyArgs,
        /// The file to write (replaced whole once complete).
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints every finished trial as JSON, and the running ones on stderr.
    Show {
        #[command(flatten)]
        study: StudyArgs,
    },
}

fn branin(x: &[f64]) -> f64 {
    benchmarks::branin(&[x[0], x[1]])
}

fn hartmann6(x: &[f64]) -> f64 {
    let mut p = [0.0; 6];
    p.copy_from_slice(&x[..6]);
    benchmarks::hartmann6(&p)
}

type Objective = fn(&[f64]) -> f64;
/// A parameter's name and bounds.
type Bounds = (String, f64, f64);

fn objective(name: &str) -> anyhow::Result<(Objective, Vec<Bounds>)> {
    Ok(match name {
        "branin" => (
            branin,
            benchmarks::BRANIN_BOUNDS
                .iter()
                .map(|(n, low, high)| (n.to_string(), *low, *high))
                .collect(),
        ),
        "hartmann6" => (
            hartmann6,
            (1..=6).map(|i| (format!("x{i}"), 0.0, 1.0)).collect(),
        ),
        other => anyhow::bail!("--objective {other:?}: expected branin or hartmann6"),
    })
}

fn open(args: &StudyArgs, parallel: u64) -> anyhow::Result<(Study, Objective, Vec<String>)> {
    let (f, bounds) = objective(&args.objective)?;
    let names = bounds.iter().map(|b| b.0.clone()).collect();
    let space = SearchSpace::new(
        bounds
            .into_iter()
            .map(|(name, low, high)| Param {
                name,
                distribution: Distribution::Uniform { low, high },
                condition: None,
            })
            .collect(),
    )?;
    let sampler = match args.sampler.as_str() {
        "tpe" => SamplerConfig::default(),
        "random" => SamplerConfig::Random,
        "grid" => SamplerConfig::Grid { points: 7 },
        "gp" => SamplerConfig::Gp {
            n_startup_trials: 10,
        },
        other => anyhow::bail!("--sampler {other:?}: expected tpe, gp, random or grid"),
    };
    let config = StudyConfig {
        name: args.objective.clone(),
        objective: ObjectiveConfig {
            direction: Direction::Minimize,
            goal: None,
            objective_metric_name: "value".into(),
        },
        parallel_trial_count: parallel as usize,
        max_trial_count: args.trials as usize,
        max_failed_trial_count: args.max_failed as usize,
        seed: args.seed,
        sampler,
        pruner: PrunerConfig::None,
    };
    let journal = JournalConfig {
        options: BTreeMap::new(),
        timeout_seconds: args.timeout_seconds,
        heartbeat_seconds: args.heartbeat_seconds,
        stale_after_seconds: args.stale_after_seconds,
        max_retries: args.max_retries as usize,
    };
    let study = Study::new(config, space)?
        .with_identity(format!("{} (examples/study)", args.objective))
        .with_shared_journal(&args.journal, &journal)?;
    Ok((study, f, names))
}

fn params_json(params: &Assignment) -> serde_json::Value {
    serde_json::to_value(params).unwrap_or_default()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Worker {
            study,
            parallel,
            trial_seconds,
        } => {
            if !(trial_seconds.is_finite() && (0.0..=86_400.0).contains(&trial_seconds)) {
                anyhow::bail!("--trial-seconds {trial_seconds}: expected 0 to 86400");
            }
            let (mut s, f, names) = open(&study, parallel)?;
            let mut told = Vec::new();
            let stop = s.optimize(
                |t| {
                    let x = names
                        .iter()
                        .map(|n| t.float(n))
                        .collect::<mlops::train::Result<Vec<f64>>>()?;
                    std::thread::sleep(Duration::from_secs_f64(trial_seconds));
                    Ok(f(&x))
                },
                &mut |r| told.push(r.number),
            )?;
            let best = s.best_trial();
            println!(
                "{}",
                serde_json::json!({
                    "stop": stop.as_str(),
                    "told": told,
                    "trials": s.trials().len(),
                    "best_value": best.and_then(|b| b.value),
                    "best_params": best.map(|b| params_json(&b.params)),
                })
            );
        }
        Command::Ask { study } => {
            let (mut s, _, _) = open(&study, 1)?;
            let out = match s.ask()? {
                Ask::Run(t) => {
                    serde_json::json!({"number": t.number, "params": params_json(&t.params), "retry_of": t.retry_of})
                }
                Ask::Wait => serde_json::json!({"wait": true}),
                Ask::Stop(r) => serde_json::json!({"stop": r.as_str()}),
            };
            println!("{out}");
        }
        Command::Tell {
            study,
            number,
            value,
            pruned,
            failed,
        } => {
            let (mut s, _, _) = open(&study, 1)?;
            let outcome = match (value, pruned, failed) {
                (Some(v), _, _) => Outcome::Complete(v),
                (None, true, _) => Outcome::Pruned,
                (None, false, Some(why)) => Outcome::Failed(why),
                (None, false, None) => anyhow::bail!("one of --value, --pruned, --failed"),
            };
            let record = s.tell(number, outcome)?;
            println!("{}", serde_json::to_string(&record)?);
        }
        Command::Heartbeat { study, number } => {
            let (s, _, _) = open(&study, 1)?;
            s.heartbeat(number)?;
        }
        Command::Enqueue { study, params } => {
            let (mut s, _, _) = open(&study, 1)?;
            let given: BTreeMap<String, serde_json::Value> = serde_json::from_str(&params)
                .with_context(|| format!("--params {params:?}: expected a JSON object"))?;
            let mut assignment = Assignment::new();
            for (k, v) in given {
                let x = v
                    .as_f64()
                    .with_context(|| format!("--params: `{k}` = {v} is not a number"))?;
                assignment.insert(k, ParamValue::Float(x));
            }
            println!("{}", s.enqueue_trial(assignment)?);
        }
        Command::Export { study, out } => {
            let (s, _, _) = open(&study, 1)?;
            let dir = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("--out {}: its folder", out.display()))?;
            let lines = s.export_optuna_journal(&mut tmp)?;
            tmp.persist(&out)
                .with_context(|| format!("--out {}", out.display()))?;
            eprintln!("{lines} operations written to {}", out.display());
        }
        Command::Show { study } => {
            let (mut s, _, _) = open(&study, 1)?;
            s.refresh()?;
            println!("{}", serde_json::to_string(s.trials())?);
            for (n, worker) in s.running_trials()? {
                eprintln!("running: trial {n} (worker {worker})");
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
