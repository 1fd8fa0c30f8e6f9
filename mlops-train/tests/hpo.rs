//! Hyperparameter search: sampler quality on Branin, determinism with parallel workers,
//! resume after a crash, pruning, failure and goal budgets, grids and conditional spaces.

use std::sync::atomic::{AtomicUsize, Ordering};

use mlops_train::hpo::{
    Condition, Direction, Distribution, ObjectiveConfig, Param, ParamValue, PrunerConfig,
    SamplerConfig, SearchSpace, StopReason, Study, StudyConfig, TrialState,
};
use mlops_train::Error;

fn uniform(name: &str, low: f64, high: f64) -> Param {
    Param {
        name: name.into(),
        distribution: Distribution::Uniform { low, high },
        condition: None,
    }
}

fn branin_space() -> SearchSpace {
    SearchSpace::new(vec![uniform("x1", -5.0, 10.0), uniform("x2", 0.0, 15.0)]).unwrap()
}

/// Branin–Hoo; minimum 0.397887.
fn branin(x1: f64, x2: f64) -> f64 {
    use std::f64::consts::PI;
    let (a, b, c, r, s, t) = (
        1.0,
        5.1 / (4.0 * PI * PI),
        5.0 / PI,
        6.0,
        10.0,
        1.0 / (8.0 * PI),
    );
    a * (x2 - b * x1 * x1 + c * x1 - r).powi(2) + s * (1.0 - t) * x1.cos() + s
}

fn config(sampler: SamplerConfig, trials: usize, parallel: usize, seed: u64) -> StudyConfig {
    StudyConfig {
        name: "test-study".into(),
        objective: ObjectiveConfig {
            direction: Direction::Minimize,
            goal: None,
            objective_metric_name: "f".into(),
        },
        parallel_trial_count: parallel,
        max_trial_count: trials,
        max_failed_trial_count: 0,
        seed,
        sampler,
        pruner: PrunerConfig::None,
    }
}

fn best_branin(sampler: SamplerConfig, seed: u64, parallel: usize) -> f64 {
    let mut study = Study::new(config(sampler, 50, parallel, seed), branin_space()).unwrap();
    study
        .optimize(|t| Ok(branin(t.float("x1")?, t.float("x2")?)), &mut |_| {})
        .unwrap();
    study.best_trial().unwrap().value.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[test]
fn tpe_beats_random_search_on_branin() {
    let tpe = median(
        (0..20)
            .map(|s| best_branin(SamplerConfig::default(), s, 1))
            .collect(),
    );
    let random = median(
        (0..20)
            .map(|s| best_branin(SamplerConfig::Random, s, 1))
            .collect(),
    );
    let parallel = median(
        (0..20)
            .map(|s| best_branin(SamplerConfig::default(), s, 4))
            .collect(),
    );
    println!("Branin, 50 trials, median best over 20 seeds: TPE {tpe:.4}, TPE x4 workers {parallel:.4}, random {random:.4}");
    assert!(tpe < random, "TPE {tpe} vs random {random}");
    assert!(
        parallel < random,
        "parallel TPE {parallel} vs random {random}"
    );
    // What these fixed seeds give (README quotes 0.4956; Optuna 5's median at the same budget
    // is 0.5074), with a margin for libm differences between machines only: a regression of
    // the estimator moves these by far more.
    let near = |what: &str, got: f64, want: f64| {
        assert!(
            (got - want).abs() <= 0.01,
            "{what}: median best {got}, these seeds give {want}"
        );
    };
    near("TPE", tpe, 0.4956);
    near("TPE with 4 workers", parallel, 0.6319);
    near("random search", random, 1.0474);
}

/// Gaussian-process BO: the bar is a median best <= 0.40 on Branin (optimum 0.397887).
#[test]
fn gp_bayesian_optimization_finds_the_branin_optimum() {
    let gp = SamplerConfig::Gp {
        n_startup_trials: 10,
    };
    let bests: Vec<f64> = (0..7).map(|s| best_branin(gp.clone(), s, 1)).collect();
    let m = median(bests.clone());
    println!("Branin, 50 trials, GP-BO best per seed {bests:?}, median {m:.4}");
    // These seeds reach within 3e-5 of the optimum 0.397887 (median 0.39794).
    assert!(
        (m - 0.397887).abs() < 1e-4,
        "GP-BO median best {m} ({bests:?})"
    );
    // With two workers (constant liar at the mean) it still converges.
    let parallel = best_branin(gp, 0, 2);
    assert!((parallel - 0.397887).abs() < 0.01, "{parallel}");
}

#[test]
fn a_study_resumes_from_its_journal_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("study.jsonl");
    let objective =
        |t: &mut mlops_train::hpo::Trial<'_>| Ok(branin(t.float("x1")?, t.float("x2")?));
    let mut whole = Study::new(config(SamplerConfig::default(), 20, 2, 5), branin_space()).unwrap();
    whole.optimize(objective, &mut |_| {}).unwrap();

    // The first run dies at trial 13 (a panic in the objective, as a crash would).
    let mut first = Study::new(config(SamplerConfig::default(), 20, 2, 5), branin_space())
        .unwrap()
        .with_journal(&journal)
        .unwrap();
    let crash = first.optimize(
        |t| {
            if t.number() == 13 {
                panic!("simulated crash");
            }
            objective(t)
        },
        &mut |_| {},
    );
    assert!(crash.is_err());
    // The first line is the study's header, then one line per finished trial.
    let saved = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
    assert!((12..20).contains(&saved), "{saved} trials in the journal");

    let mut resumed = Study::new(config(SamplerConfig::default(), 20, 2, 5), branin_space())
        .unwrap()
        .with_journal(&journal)
        .unwrap();
    let ran = AtomicUsize::new(0);
    resumed
        .optimize(
            |t| {
                ran.fetch_add(1, Ordering::SeqCst);
                objective(t)
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 20 - saved);
    let key = |s: &Study| {
        s.trials()
            .iter()
            .map(|t| (t.number, t.params.clone(), t.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&resumed), key(&whole));
}

#[test]
fn a_journal_is_resumed_only_by_the_same_study() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("study.jsonl");
    let objective =
        |t: &mut mlops_train::hpo::Trial<'_>| Ok(branin(t.float("x1")?, t.float("x2")?));
    let study = |identity: &str, trials: usize| {
        Study::new(
            config(SamplerConfig::default(), trials, 1, 5),
            branin_space(),
        )
        .unwrap()
        .with_identity(identity)
    };
    let mut first = study("branin on data sha256:aaaa", 4)
        .with_journal(&journal)
        .unwrap();
    first.optimize(objective, &mut |_| {}).unwrap();
    // Other data: refused, naming both identities; the journal is left as it was.
    let before = std::fs::read_to_string(&journal).unwrap();
    let e = study("branin on data sha256:bbbb", 4)
        .with_journal(&journal)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sha256:aaaa") && e.contains("sha256:bbbb"),
        "{e}"
    );
    assert!(e.contains("another study"), "{e}");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), before);
    // Another search space: refused too.
    let other_space =
        SearchSpace::new(vec![uniform("x1", -5.0, 10.0), uniform("x2", 0.0, 16.0)]).unwrap();
    let e = Study::new(config(SamplerConfig::default(), 4, 1, 5), other_space)
        .unwrap()
        .with_identity("branin on data sha256:aaaa")
        .with_journal(&journal)
        .unwrap_err();
    assert!(e.to_string().contains("another study"), "{e}");
    // The same study with a larger budget resumes and runs only the new trials.
    let mut more = study("branin on data sha256:aaaa", 6)
        .with_journal(&journal)
        .unwrap();
    assert_eq!(more.trials().len(), 4);
    more.optimize(objective, &mut |_| {}).unwrap();
    assert_eq!(more.trials().len(), 6);
    // A journal without a header (another file) is refused, not mixed in.
    let stray = dir.path().join("stray.jsonl");
    std::fs::write(&stray, "{\"number\": 0}\n").unwrap();
    assert!(study("x", 4).with_journal(&stray).is_err());
}

#[test]
fn failed_trials_do_not_use_up_the_trial_budget() {
    let mut c = config(SamplerConfig::default(), 6, 1, 3);
    c.max_failed_trial_count = 2;
    let mut study = Study::new(c, branin_space()).unwrap();
    let why = study
        .optimize(
            |t| {
                if t.number() == 1 || t.number() == 4 {
                    // A non-finite objective fails the trial.
                    return Ok(f64::NAN);
                }
                Ok(branin(t.float("x1")?, t.float("x2")?))
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(why, StopReason::MaxTrials);
    let failed = study
        .trials()
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .count();
    let completed = study
        .trials()
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .count();
    assert_eq!((failed, completed), (2, 6), "{:?}", study.trials());
}

/// A learning curve: the objective at step s approaches `quality` (bad trials stay bad).
#[test]
fn asha_and_median_prune_poor_learning_curves() {
    for pruner in [
        PrunerConfig::Asha {
            min_resource: 1,
            reduction_factor: 3.0,
        },
        PrunerConfig::Median {
            n_startup_trials: 4,
            n_warmup_steps: 2,
        },
        PrunerConfig::Hyperband {
            min_resource: 1,
            max_resource: 27,
            reduction_factor: 3.0,
        },
    ] {
        let steps = AtomicUsize::new(0);
        let mut cfg = config(SamplerConfig::Random, 30, 1, 3);
        cfg.objective.direction = Direction::Maximize;
        cfg.pruner = pruner.clone();
        let space = SearchSpace::new(vec![uniform("quality", 0.0, 1.0)]).unwrap();
        let mut study = Study::new(cfg, space).unwrap();
        study
            .optimize(
                |t| {
                    let q = t.float("quality")?;
                    let mut v = 0.0;
                    for s in 1..=27 {
                        steps.fetch_add(1, Ordering::SeqCst);
                        v = q * (1.0 - (-(s as f64) / 5.0).exp());
                        t.report(s, v)?;
                    }
                    Ok(v)
                },
                &mut |_| {},
            )
            .unwrap();
        let pruned = study
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Pruned)
            .count();
        let best = study.best_trial().unwrap();
        let best_quality = study
            .trials()
            .iter()
            .filter_map(|t| t.params["quality"].as_f64())
            .fold(0.0, f64::max);
        assert!(pruned >= 5, "{pruner:?}: {pruned} pruned");
        assert!(steps.load(Ordering::SeqCst) < 30 * 27 * 3 / 4, "{pruner:?}");
        // The best trial is never the one pruned away.
        assert!(
            (best.params["quality"].as_f64().unwrap() - best_quality).abs() < 1e-12,
            "{pruner:?}"
        );
    }
}

#[test]
fn failures_goal_grid_and_conditions() {
    // Failed trials: more than the budget stops the study.
    let mut cfg = config(SamplerConfig::Random, 20, 1, 1);
    cfg.max_failed_trial_count = 2;
    let mut study = Study::new(cfg, branin_space()).unwrap();
    let why = study
        .optimize(
            |t| {
                if t.float("x1")? > 0.0 {
                    Err(Error::Pruned { step: -1 }).or(Ok(f64::NAN))
                } else {
                    Ok(1.0)
                }
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(why, StopReason::TooManyFailures);
    assert_eq!(
        study
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Failed)
            .count(),
        3
    );

    // Goal: stop as soon as a trial reaches it.
    let mut cfg = config(SamplerConfig::Random, 200, 1, 2);
    cfg.objective.goal = Some(5.0);
    let mut study = Study::new(cfg, branin_space()).unwrap();
    assert_eq!(
        study
            .optimize(|t| Ok(branin(t.float("x1")?, t.float("x2")?)), &mut |_| {})
            .unwrap(),
        StopReason::GoalReached
    );
    assert!(study.trials().len() < 200);
    assert!(study.best_trial().unwrap().value.unwrap() <= 5.0);

    // Grid: adam x 3 layer counts + sgd x 3 layer counts x 3 momenta, then exhausted;
    // momentum only for sgd, and no point twice.
    let space = SearchSpace::new(vec![
        Param {
            name: "optimizer".into(),
            distribution: Distribution::Categorical {
                choices: vec!["adam".into(), "sgd".into()],
            },
            condition: None,
        },
        Param {
            name: "layers".into(),
            distribution: Distribution::Int {
                low: 1,
                high: 3,
                log: false,
            },
            condition: None,
        },
        Param {
            name: "momentum".into(),
            distribution: Distribution::Uniform {
                low: 0.5,
                high: 0.99,
            },
            condition: Some(Condition {
                parent: "optimizer".into(),
                values: vec!["sgd".into()],
            }),
        },
    ])
    .unwrap();
    let mut study = Study::new(
        config(SamplerConfig::Grid { points: 3 }, 100, 1, 0),
        space.clone(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let why = study
        .optimize(|t| Ok(t.int("layers")? as f64), &mut |r| {
            seen.push(r.params.clone())
        })
        .unwrap();
    assert_eq!(why, StopReason::GridExhausted);
    assert_eq!(seen.len(), 12);
    assert!(seen.iter().enumerate().all(|(i, a)| !seen[..i].contains(a)));
    for a in &seen {
        assert_eq!(
            a.contains_key("momentum"),
            a["optimizer"] == ParamValue::Choice("sgd".into()),
            "{a:?}"
        );
    }
    // TPE and random honour the condition too.
    for sampler in [SamplerConfig::Random, SamplerConfig::default()] {
        let mut study = Study::new(config(sampler, 30, 2, 4), space.clone()).unwrap();
        study
            .optimize(
                |t| Ok(t.int("layers")? as f64 + t.float("momentum").unwrap_or(0.0)),
                &mut |_| {},
            )
            .unwrap();
        for t in study.trials() {
            assert_eq!(
                t.params.contains_key("momentum"),
                t.params["optimizer"] == ParamValue::Choice("sgd".into())
            );
            assert_eq!(t.state, TrialState::Complete);
        }
    }

    // Bad configs and spaces are refused, naming the field.
    let mut cfg = config(SamplerConfig::Random, 10, 0, 0);
    assert!(Study::new(cfg.clone(), branin_space())
        .unwrap_err()
        .to_string()
        .contains("parallelTrialCount"));
    cfg.parallel_trial_count = 1;
    cfg.pruner = PrunerConfig::Asha {
        min_resource: 1,
        reduction_factor: 1.0,
    };
    assert!(Study::new(cfg, branin_space())
        .unwrap_err()
        .to_string()
        .contains("reduction_factor"));
    let e = SearchSpace::new(vec![Param {
        name: "m".into(),
        distribution: Distribution::Uniform {
            low: 0.0,
            high: 1.0,
        },
        condition: Some(Condition {
            parent: "nope".into(),
            values: vec!["x".into()],
        }),
    }])
    .unwrap_err()
    .to_string();
    assert!(e.contains("`m` condition"), "{e}");
    let e = SearchSpace::new(vec![Param {
        name: "lr".into(),
        distribution: Distribution::LogUniform {
            low: 0.0,
            high: 1.0,
        },
        condition: None,
    }])
    .unwrap_err()
    .to_string();
    assert!(e.contains("`lr` bounds"), "{e}");
}

#[test]
fn parallel_trials_give_the_same_study_whatever_the_thread_timing() {
    // 8 trials at a time on 8 threads, each sleeping a different, unseeded time, so they
    // finish in a different order on every run: the study (params, values, states) must be
    // the same bytes. (The wave size, parallelTrialCount, is part of the study's definition;
    // what must not matter is which thread finishes first.)
    let run = || {
        let mut study =
            Study::new(config(SamplerConfig::default(), 24, 8, 5), branin_space()).unwrap();
        study
            .optimize(
                |t| {
                    let jitter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos()
                        % 4;
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(jitter)));
                    Ok(branin(t.float("x1")?, t.float("x2")?))
                },
                &mut |_| {},
            )
            .unwrap();
        study
            .trials()
            .iter()
            .map(|t| serde_json::to_string(&(t.number, &t.params, t.value, t.state)).unwrap())
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first.len(), 24);
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
}
