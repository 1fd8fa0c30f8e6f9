//! Hyperparameter search with mlops' samplers.
//!
//! ```text
//! # Sampler checks on the classic test functions: median best over seeds, sampler overhead.
//! cargo run --release --example hpo -- --objective branin --sampler tpe --trials 50 --seeds 20
//! cargo run --release --example hpo -- --objective hartmann6 --sampler random
//! # A Katib-shaped study of the MLP on WDBC (or --data CSV --label-col NAME), ASHA pruning on
//! # validation AUC per epoch, trials logged to a local tracker, resumable from its journal.
//! cargo run --release --example hpo -- --objective mlp --trials 12 --parallel 2 --out /tmp/hpo
//! ```
//!
//! For `branin` / `hartmann6` it prints one JSON line:
//! `{"objective", "sampler", "trials", "seeds", "median_best", "best_per_seed", "sampler_ms_per_trial"}`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use mlops::core::{CsvOptions, Dataset, SplitFractions};
use mlops::train::hpo::{
    Condition, Direction, Distribution, ObjectiveConfig, Param, PrunerConfig, SamplerConfig,
    SearchSpace, Study, StudyConfig, TrialRecord, TrialState,
};
use mlops::train::tracking::{log_trial, ObjectStoreTracker};
use mlops::train::{Callback, Control, EpochLog, MlpConfig, TrainConfig, Trainer};

/// Runs a hyperparameter study: sampler checks on Branin / Hartmann6 (median best over seeds,
/// as JSON), or a resumable Katib-shaped study of the MLP with a journal and a tracker.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 the study finished, 1 an error (a journal of another study, bad data), 2 usage."
)]
struct Args {
    /// `branin`, `hartmann6` (minimize; sampler checks) or `mlp` (train the MLP).
    #[arg(long, default_value = "branin")]
    objective: String,
    /// `tpe`, `gp`, `random` or `grid`.
    #[arg(long, default_value = "tpe")]
    sampler: String,
    /// Trials per study.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    trials: u64,
    /// Studies (seeds 0..N) for the test functions.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// Parallel trials.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    parallel: u64,
    /// CSV or Parquet file for `mlp` (default: the built-in WDBC table).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Label column of `--data`.
    #[arg(long, default_value = "target")]
    label_col: String,
    /// Output folder for `mlp` (journal, tracker).
    #[arg(long, default_value = ".mlops/hpo")]
    out: PathBuf,
}

fn uniform(name: &str, low: f64, high: f64) -> Param {
    Param {
        name: name.into(),
        distribution: Distribution::Uniform { low, high },
        condition: None,
    }
}

fn branin(x: &[f64]) -> f64 {
    mlops::train::hpo::benchmarks::branin(&[x[0], x[1]])
}

fn hartmann6(x: &[f64]) -> f64 {
    let mut p = [0.0; 6];
    p.copy_from_slice(&x[..6]);
    mlops::train::hpo::benchmarks::hartmann6(&p)
}

fn sampler(name: &str) -> anyhow::Result<SamplerConfig> {
    Ok(match name {
        "tpe" => SamplerConfig::default(),
        "random" => SamplerConfig::Random,
        "grid" => SamplerConfig::Grid { points: 7 },
        "gp" => SamplerConfig::Gp {
            n_startup_trials: 10,
        },
        other => anyhow::bail!("--sampler {other:?}: expected tpe, gp, random or grid"),
    })
}

fn config(args: &Args, name: &str, direction: Direction, seed: u64) -> anyhow::Result<StudyConfig> {
    Ok(StudyConfig {
        name: name.into(),
        objective: ObjectiveConfig {
            direction,
            goal: None,
            objective_metric_name: "value".into(),
        },
        parallel_trial_count: args.parallel as usize,
        max_trial_count: args.trials as usize,
        max_failed_trial_count: 3,
        seed,
        sampler: sampler(&args.sampler)?,
        pruner: PrunerConfig::None,
    })
}

fn test_function(args: &Args) -> anyhow::Result<()> {
    let (f, space): (fn(&[f64]) -> f64, SearchSpace) = match args.objective.as_str() {
        "branin" => (
            branin,
            SearchSpace::new(vec![uniform("x1", -5.0, 10.0), uniform("x2", 0.0, 15.0)])?,
        ),
        "hartmann6" => (
            hartmann6,
            SearchSpace::new(
                (0..6)
                    .map(|i| uniform(&format!("x{i}"), 0.0, 1.0))
                    .collect(),
            )?,
        ),
        other => anyhow::bail!("--objective {other:?}: expected branin, hartmann6 or mlp"),
    };
    let names: Vec<String> = space.params().iter().map(|p| p.name.clone()).collect();
    let mut bests = Vec::new();
    let mut total_secs = 0.0;
    let mut objective_secs = 0.0;
    for seed in 0..args.seeds {
        let mut study = Study::new(
            config(args, &args.objective, Direction::Minimize, seed)?,
            space.clone(),
        )?;
        let started = Instant::now();
        study.optimize(
            |t| {
                let x: Vec<f64> = names.iter().map(|n| t.float(n)).collect::<Result<_, _>>()?;
                Ok(f(&x))
            },
            &mut |_| {},
        )?;
        total_secs += started.elapsed().as_secs_f64();
        objective_secs += study.trials().iter().map(|t| t.seconds).sum::<f64>();
        bests.push(study.best_trial().and_then(|t| t.value).unwrap_or(f64::NAN));
    }
    let mut sorted = bests.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    };
    let trials = (args.seeds * args.trials) as f64;
    println!(
        "{}",
        serde_json::json!({
            "objective": args.objective, "sampler": args.sampler, "trials": args.trials, "seeds": args.seeds,
            "median_best": median, "best_per_seed": bests,
            // Everything but the objective itself: sampling, bookkeeping, threads.
            "sampler_ms_per_trial": (total_secs - objective_secs / args.parallel as f64) * 1e3 / trials,
        })
    );
    Ok(())
}

/// Reports validation AUC each epoch to the trial (ASHA prunes on it).
struct Report<'a, 'b> {
    trial: &'a mut mlops::train::hpo::Trial<'b>,
    pruned: bool,
}

impl Callback for Report<'_, '_> {
    fn on_epoch_end(&mut self, log: &EpochLog) -> Control {
        match self.trial.report(log.epoch as i64, log.val_roc_auc) {
            Ok(()) => Control::Continue,
            Err(_) => {
                self.pruned = true;
                Control::Stop
            }
        }
    }
}

fn mlp_study(args: &Args) -> anyhow::Result<()> {
    let data = match &args.data {
        Some(p) => Dataset::from_path(p, &CsvOptions::with_label(&args.label_col))
            .with_context(|| format!("loading {}", p.display()))?,
        None => Dataset::from_csv_reader(
            include_str!("../data/breast_cancer_wdbc.csv").as_bytes(),
            &CsvOptions::with_label("target"),
        )?,
    };
    let split = data.stratified_split(
        SplitFractions {
            train: 0.7,
            validation: 0.3,
            test: 0.0,
        },
        0,
    )?;
    let space = SearchSpace::new(vec![
        Param {
            name: "lr".into(),
            distribution: Distribution::LogUniform {
                low: 1e-4,
                high: 3e-2,
            },
            condition: None,
        },
        Param {
            name: "dropout".into(),
            distribution: Distribution::Uniform {
                low: 0.0,
                high: 0.5,
            },
            condition: None,
        },
        Param {
            name: "hidden".into(),
            distribution: Distribution::Categorical {
                choices: vec!["32".into(), "64,32".into(), "128,64,32".into()],
            },
            condition: None,
        },
        Param {
            name: "batch_size".into(),
            distribution: Distribution::Int {
                low: 16,
                high: 256,
                log: true,
            },
            condition: None,
        },
        Param {
            name: "weight_decay".into(),
            distribution: Distribution::LogUniform {
                low: 1e-5,
                high: 1e-1,
            },
            condition: Some(Condition {
                parent: "hidden".into(),
                values: vec!["128,64,32".into()],
            }),
        },
    ])?;
    let mut config = config(args, "mlp-wdbc", Direction::Maximize, 0)?;
    config.objective.objective_metric_name = "val_roc_auc".into();
    config.pruner = PrunerConfig::Asha {
        min_resource: 3,
        reduction_factor: 3.0,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let data_id = format!(
        "objective mlp (val_roc_auc), data {} sha256:{}",
        args.data
            .as_ref()
            .map_or("built-in WDBC".to_string(), |p| p.display().to_string()),
        data.fingerprint()
    );
    let mut study = Study::new(config, space)?
        .with_identity(data_id)
        .with_journal(out.join("study.jsonl"))?;
    let tracker = ObjectStoreTracker::open(
        &format!("file://{}", out.join("mlruns").display()),
        &Default::default(),
    )?;
    std::fs::create_dir_all(out.join("mlruns"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut log_trial = |t: &TrialRecord| {
        println!(
            "trial {:>2} {:?} val_roc_auc {} {}",
            t.number,
            t.state,
            t.value.map_or("-".into(), |v| format!("{v:.4}")),
            t.params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let logged = runtime.block_on(log_trial(&tracker, "mlp-wdbc", "val_roc_auc", t));
        if let Err(e) = logged {
            eprintln!("tracking trial {}: {e}", t.number);
        }
    };
    let why = study.optimize(
        |trial| {
            let hidden = MlpConfig::parse_hidden_sizes(trial.choice("hidden")?)?;
            let trainer = Trainer::new(
                MlpConfig {
                    hidden,
                    dropout: trial.float("dropout")?,
                    ..MlpConfig::default()
                },
                TrainConfig {
                    learning_rate: trial.float("lr")?,
                    batch_size: trial.int("batch_size")? as usize,
                    weight_decay: trial.float("weight_decay").unwrap_or(0.0),
                    epochs: 27,
                    seed: trial.number(),
                    ..TrainConfig::default()
                },
            )?;
            let mut report = Report {
                trial,
                pruned: false,
            };
            let trained = trainer.fit(&split.train, Some(&split.validation), &mut [&mut report])?;
            if report.pruned {
                return Err(mlops::train::Error::Pruned {
                    step: trained.history.len() as i64,
                });
            }
            let best = trained
                .history
                .iter()
                .map(|l| l.val_roc_auc)
                .fold(f64::MIN, f64::max);
            Ok(best)
        },
        &mut log_trial,
    )?;
    let failed: Vec<&TrialRecord> = study
        .trials()
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .collect();
    if !failed.is_empty() {
        println!("failed trials ({}, not counted in --trials):", failed.len());
        for t in &failed {
            println!(
                "  trial {}: {}",
                t.number,
                t.error.as_deref().unwrap_or("(no message)")
            );
        }
    }
    let best = study.best_trial().context("no trial completed")?;
    println!(
        "stopped: {why:?}; best trial {} val_roc_auc {:.4}",
        best.number,
        best.value.unwrap_or(f64::NAN)
    );
    println!(
        "journal {}, runs in {}",
        out.join("study.jsonl").display(),
        out.join("mlruns/mlp-wdbc").display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = if args.objective == "mlp" {
        mlp_study(&args)
    } else {
        test_function(&args)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
