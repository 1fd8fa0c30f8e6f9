//! One study shared by many workers through a journal on a store: unique gap-free numbers
//! under concurrency, the seed policy of a single-process study, ask / tell / enqueue_trial,
//! a silent worker's trial failed and retried, and bad journals named.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlops_core::clock::ManualClock;
use mlops_train::hpo::{
    Ask, Direction, Distribution, JournalConfig, ObjectiveConfig, Outcome, Param, ParamValue,
    PrunerConfig, SamplerConfig, SearchSpace, StopReason, Study, StudyConfig, TrialState,
};
use mlops_train::Error;

fn space() -> SearchSpace {
    let u = |name: &str, low: f64, high: f64| Param {
        name: name.into(),
        distribution: Distribution::Uniform { low, high },
        condition: None,
    };
    SearchSpace::new(vec![
        u("x1", -5.0, 10.0),
        u("x2", 0.0, 15.0),
        Param {
            name: "kind".into(),
            distribution: Distribution::Categorical {
                choices: vec!["a".into(), "b".into()],
            },
            condition: None,
        },
        Param {
            name: "depth".into(),
            distribution: Distribution::Int {
                low: 1,
                high: 8,
                log: false,
            },
            condition: None,
        },
    ])
    .unwrap()
}

fn branin(x1: f64, x2: f64) -> f64 {
    mlops_train::hpo::benchmarks::branin(&[x1, x2])
}

fn config(sampler: SamplerConfig, trials: usize, parallel: usize) -> StudyConfig {
    StudyConfig {
        name: "shared".into(),
        objective: ObjectiveConfig {
            direction: Direction::Minimize,
            goal: None,
            objective_metric_name: "f".into(),
        },
        parallel_trial_count: parallel,
        max_trial_count: trials,
        max_failed_trial_count: 3,
        seed: 7,
        sampler,
        pruner: PrunerConfig::None,
    }
}

fn fast() -> JournalConfig {
    JournalConfig {
        heartbeat_seconds: 0.05,
        stale_after_seconds: 30.0,
        ..Default::default()
    }
}

fn objective(t: &mut mlops_train::hpo::Trial<'_>) -> mlops_train::Result<f64> {
    Ok(branin(t.float("x1")?, t.float("x2")?) + t.int("depth")? as f64 * 0.0)
}

#[test]
fn four_workers_share_forty_trial_numbers_once_each_and_draw_as_one_process_does() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("study").display().to_string();
    // Four workers (each its own handle on the journal, two threads each), 40 trials.
    std::thread::scope(|s| {
        for _ in 0..4 {
            let url = url.clone();
            s.spawn(move || {
                let mut study = Study::new(config(SamplerConfig::Random, 40, 2), space())
                    .unwrap()
                    .with_shared_journal(&url, &fast())
                    .unwrap();
                let stop = study.optimize(objective, &mut |_| {}).unwrap();
                assert_eq!(stop, StopReason::MaxTrials);
            });
        }
    });
    let mut shared = Study::new(config(SamplerConfig::Random, 40, 2), space())
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap();
    shared.refresh().unwrap();
    let numbers: Vec<u64> = shared.trials().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..40).collect::<Vec<_>>());
    assert!(shared
        .trials()
        .iter()
        .all(|t| t.state == TrialState::Complete));
    // The random sampler draws trial n from the seed's stream n, as one process does.
    let mut alone = Study::new(config(SamplerConfig::Random, 40, 1), space()).unwrap();
    alone.optimize(objective, &mut |_| {}).unwrap();
    for (a, b) in alone.trials().iter().zip(shared.trials()) {
        assert_eq!(a.params, b.params, "trial {}", a.number);
        assert_eq!(a.value, b.value, "trial {}", a.number);
    }
    assert_eq!(
        alone.best_trial().unwrap().value,
        shared.best_trial().unwrap().value
    );
    // Another study is refused on this journal, naming both.
    let mut other = config(SamplerConfig::Random, 40, 1);
    other.seed = 8;
    let e = Study::new(other, space())
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap_err()
        .to_string();
    assert!(e.contains("belongs to another study"), "{e}");
}

fn branin_space() -> SearchSpace {
    let u = |name: &str, low: f64, high: f64| Param {
        name: name.into(),
        distribution: Distribution::Uniform { low, high },
        condition: None,
    };
    SearchSpace::new(vec![u("x1", -5.0, 10.0), u("x2", 0.0, 15.0)]).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
}

#[test]
fn tpe_workers_learn_from_each_others_results_as_one_process_does() {
    let tpe = SamplerConfig::Tpe {
        n_startup_trials: 10,
        n_ei_candidates: 24,
    };
    let cfg = |sampler: &SamplerConfig, seed: u64, parallel: usize| StudyConfig {
        seed,
        ..config(sampler.clone(), 40, parallel)
    };
    let f = |t: &mut mlops_train::hpo::Trial<'_>| Ok(branin(t.float("x1")?, t.float("x2")?));
    let (mut shared, mut alone, mut random) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..9 {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().display().to_string();
        std::thread::scope(|s| {
            for _ in 0..3 {
                let (url, c) = (url.clone(), cfg(&tpe, seed, 1));
                s.spawn(move || {
                    let mut study = Study::new(c, branin_space())
                        .unwrap()
                        .with_shared_journal(&url, &fast())
                        .unwrap();
                    study.optimize(f, &mut |_| {}).unwrap();
                });
            }
        });
        let mut study = Study::new(cfg(&tpe, seed, 1), branin_space())
            .unwrap()
            .with_shared_journal(&url, &fast())
            .unwrap();
        study.refresh().unwrap();
        assert_eq!(study.trials().len(), 40);
        shared.push(study.best_trial().unwrap().value.unwrap());
        for (sampler, parallel, out) in [
            (&tpe, 3, &mut alone),
            (&SamplerConfig::Random, 1, &mut random),
        ] {
            let mut s = Study::new(cfg(sampler, seed, parallel), branin_space()).unwrap();
            s.optimize(f, &mut |_| {}).unwrap();
            out.push(s.best_trial().unwrap().value.unwrap());
        }
    }
    let (m_shared, m_alone, m_random) = (
        median(shared.clone()),
        median(alone.clone()),
        median(random.clone()),
    );
    eprintln!("median best over 9 seeds: shared {m_shared:.3} {shared:?}; one process (3 parallel) {m_alone:.3} {alone:?}; random {m_random:.3}");
    assert!(
        m_shared < m_random,
        "shared TPE {m_shared} vs random {m_random}"
    );
    assert!(
        m_shared < 2.0 * m_alone,
        "shared TPE {m_shared} vs one process {m_alone}"
    );
}

#[test]
fn ask_tell_and_enqueue_drive_the_study_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let open = || {
        Study::new(config(SamplerConfig::Random, 3, 1), space())
            .unwrap()
            .with_shared_journal(&url, &fast())
            .unwrap()
    };
    let (mut a, mut b) = (open(), open());
    let good: mlops_train::hpo::Assignment = [
        ("x1".to_string(), ParamValue::Float(9.42478)),
        ("x2".to_string(), ParamValue::Float(2.475)),
        ("kind".to_string(), ParamValue::Choice("b".into())),
        ("depth".to_string(), ParamValue::Int(3)),
    ]
    .into();
    assert_eq!(a.enqueue_trial(good.clone()).unwrap(), 0);
    // Bad points are refused, naming the parameter.
    let mut bad = good.clone();
    bad.insert("x1".into(), ParamValue::Float(11.0));
    let e = a.enqueue_trial(bad).unwrap_err().to_string();
    assert!(e.contains("`x1`") && e.contains("11"), "{e}");
    let mut bad = good.clone();
    bad.remove("depth");
    assert!(a
        .enqueue_trial(bad)
        .unwrap_err()
        .to_string()
        .contains("`depth`"));
    let mut bad = good.clone();
    bad.insert("lr".into(), ParamValue::Float(0.1));
    assert!(a.enqueue_trial(bad).unwrap_err().to_string().contains("lr"));
    // The enqueued point goes first, to whichever worker asks.
    let Ask::Run(first) = b.ask().unwrap() else {
        panic!("expected a trial")
    };
    assert_eq!((first.number, &first.params), (0, &good));
    let Ask::Run(second) = a.ask().unwrap() else {
        panic!("expected a trial")
    };
    assert_eq!(second.number, 1);
    let Ask::Run(third) = a.ask().unwrap() else {
        panic!("expected a trial")
    };
    // Three running: the budget is taken, so a fourth waits.
    assert_eq!(b.ask().unwrap(), Ask::Wait);
    // Any worker may tell any trial, once.
    a.tell(0, Outcome::Complete(0.3979)).unwrap();
    let e = b.tell(0, Outcome::Complete(1.0)).unwrap_err();
    assert!(
        matches!(&e, Error::TrialNotRunning { number: 0, state, .. } if state == "complete"),
        "{e}"
    );
    let e = b.tell(9, Outcome::Pruned).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    b.tell(second.number, Outcome::Complete(f64::NAN)).unwrap();
    b.tell(third.number, Outcome::Failed("out of memory".into()))
        .unwrap();
    // Two failed slots free two more trials; then the budget of 3 is spent.
    a.refresh().unwrap();
    let failed: Vec<_> = a
        .trials()
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .map(|t| t.error.clone().unwrap())
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0].contains("returned NaN") && failed[1] == "out of memory",
        "{failed:?}"
    );
    for _ in 0..2 {
        let Ask::Run(t) = a.ask().unwrap() else {
            panic!("expected a trial")
        };
        a.tell(t.number, Outcome::Complete(5.0)).unwrap();
    }
    assert_eq!(a.ask().unwrap(), Ask::Stop(StopReason::MaxTrials));
    assert_eq!(a.best_trial().unwrap().number, 0);
    // The journal reads back as Optuna's file: one JSON operation a line.
    let mut out = Vec::new();
    let lines = a.export_optuna_journal(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count() as u64, lines);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["op_code"], 0);
    assert_eq!(first["directions"], serde_json::json!([1]));
}

#[test]
fn a_silent_workers_trial_is_failed_after_the_timeout_and_its_point_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let cfg = JournalConfig {
        heartbeat_seconds: 10.0,
        stale_after_seconds: 60.0,
        ..Default::default()
    };
    let open = || {
        Study::new(config(SamplerConfig::Random, 2, 1), space())
            .unwrap()
            .with_shared_journal_and_clock(&url, &cfg, clock.clone())
            .unwrap()
    };
    let (mut dead, mut live, mut third) = (open(), open(), open());
    let Ask::Run(lost) = dead.ask().unwrap() else {
        panic!("expected a trial")
    };
    let Ask::Run(other) = live.ask().unwrap() else {
        panic!("expected a trial")
    };
    // Heartbeats keep a trial alive past the timeout.
    clock.advance(Duration::from_secs(50));
    live.heartbeat(other.number).unwrap();
    clock.advance(Duration::from_secs(20));
    // 70 s since trial 0 started, 20 s since trial 1's heartbeat: only trial 0 is failed
    // (by a third worker), and its point comes back as trial 2.
    let Ask::Run(retry) = third.ask().unwrap() else {
        panic!("expected the retry")
    };
    live.refresh().unwrap();
    assert_eq!((retry.number, retry.retry_of), (2, Some(lost.number)));
    assert_eq!(retry.params, lost.params);
    let failed = &live.trials()[0];
    assert_eq!(failed.state, TrialState::Failed);
    let reason = failed.error.clone().unwrap();
    assert!(
        reason.contains("no heartbeat") && reason.contains("70.0 s"),
        "{reason}"
    );
    // The worker that was presumed dead learns its result was not recorded.
    let e = dead
        .tell(lost.number, Outcome::Complete(1.0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("trial 0 is failed") && e.contains("not recorded"),
        "{e}"
    );
    live.tell(other.number, Outcome::Complete(2.0)).unwrap();
    live.tell(retry.number, Outcome::Complete(1.0)).unwrap();
    assert_eq!(live.ask().unwrap(), Ask::Stop(StopReason::MaxTrials));
}

#[test]
fn a_point_that_keeps_killing_its_workers_is_retried_at_most_max_retries_times() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let cfg = JournalConfig {
        heartbeat_seconds: 10.0,
        stale_after_seconds: 60.0,
        max_retries: 1,
        ..Default::default()
    };
    let open = || {
        Study::new(config(SamplerConfig::Random, 5, 1), space())
            .unwrap()
            .with_shared_journal_and_clock(&url, &cfg, clock.clone())
            .unwrap()
    };
    let (mut a, mut b) = (open(), open());
    let Ask::Run(first) = a.ask().unwrap() else {
        panic!("expected a trial")
    };
    clock.advance(Duration::from_secs(61));
    // b fails trial 0 and runs its point again as trial 1; b dies too.
    let Ask::Run(retry) = b.ask().unwrap() else {
        panic!("expected the retry")
    };
    assert_eq!(
        (retry.number, retry.retry_of, &retry.params),
        (1, Some(0), &first.params)
    );
    clock.advance(Duration::from_secs(61));
    // a fails trial 1; its point has been tried twice (max_retries = 1): a new draw instead.
    let Ask::Run(fresh) = a.ask().unwrap() else {
        panic!("expected a trial")
    };
    assert_eq!((fresh.number, fresh.retry_of), (2, None));
    assert_ne!(fresh.params, first.params);
    let reason = a.trials()[1].error.clone().unwrap();
    assert!(
        reason.contains("not enqueued again: tried 2 times"),
        "{reason}"
    );
}

#[test]
fn a_grid_shared_with_an_enqueued_point_still_runs_every_grid_point() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let grid = SamplerConfig::Grid { points: 3 };
    let mut shared = Study::new(config(grid.clone(), 100, 1), branin_space())
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap();
    let point: mlops_train::hpo::Assignment = [
        ("x1".to_string(), ParamValue::Float(3.0)),
        ("x2".to_string(), ParamValue::Float(2.0)),
    ]
    .into();
    shared.enqueue_trial(point).unwrap();
    let f = |t: &mut mlops_train::hpo::Trial<'_>| Ok(branin(t.float("x1")?, t.float("x2")?));
    assert_eq!(
        shared.optimize(f, &mut |_| {}).unwrap(),
        StopReason::GridExhausted
    );
    let mut alone = Study::new(config(grid, 100, 1), branin_space()).unwrap();
    alone.optimize(f, &mut |_| {}).unwrap();
    let grid_points: Vec<_> = alone.trials().iter().map(|t| t.params.clone()).collect();
    assert_eq!(grid_points.len(), 9);
    assert_eq!(shared.trials().len(), 10);
    for (i, p) in grid_points.iter().enumerate() {
        assert_eq!(&shared.trials()[i + 1].params, p, "grid point {i}");
    }
}

#[test]
fn reports_are_shared_and_prune_against_other_workers_trials() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let mut cfg = config(SamplerConfig::Random, 6, 1);
    cfg.pruner = PrunerConfig::Median {
        n_startup_trials: 2,
        n_warmup_steps: 0,
    };
    let open = || {
        Study::new(cfg.clone(), space())
            .unwrap()
            .with_shared_journal(&url, &fast())
            .unwrap()
    };
    // Two workers in turn: trial k reports 10 - k at steps 0..3, except that trial 4 reports
    // 100 and must be pruned by the other worker's trials.
    let mut pruned = Vec::new();
    for round in 0..6 {
        // Each worker runs one trial: trial 4 is pruned by the trials of other workers.
        let mut study = Study::new(
            StudyConfig {
                max_trial_count: round + 1,
                ..cfg.clone()
            },
            space(),
        )
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap();
        study
            .optimize(
                |t| {
                    let v = if t.number() == 4 {
                        100.0
                    } else {
                        10.0 - t.number() as f64
                    };
                    for step in 0..3 {
                        t.report(step, v)?;
                    }
                    Ok(v)
                },
                &mut |r| {
                    if r.state == TrialState::Pruned {
                        pruned.push(r.number)
                    }
                },
            )
            .unwrap();
        assert_eq!(study.trials().len(), round + 1);
    }
    assert_eq!(pruned, vec![4]);
    let mut study = open();
    study.refresh().unwrap();
    assert_eq!(study.trials()[4].intermediate, vec![(0, 100.0)]);
}

#[test]
fn a_corrupt_entry_is_named_and_nothing_is_decided_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let mut study = Study::new(config(SamplerConfig::Random, 3, 1), space())
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap();
    let Ask::Run(_) = study.ask().unwrap() else {
        panic!("expected a trial")
    };
    let entries = dir.path().join("journal");
    std::fs::write(
        entries.join(format!("{:020}.jsonl", 3)),
        b"{\"op_code\": 6, \"trial_id\": 0, \"state\": 99}\n",
    )
    .unwrap();
    let e = study.ask().unwrap_err().to_string();
    assert!(e.contains("entry 3, line 1") && e.contains("99"), "{e}");
    // Every later call says the same: the replay stopped half-way.
    let e = study.refresh().unwrap_err().to_string();
    assert!(e.contains("entry 3"), "{e}");
    std::fs::write(
        entries.join(format!("{:020}.jsonl", 3)),
        b"{\"op_code\": 6, \"tri",
    )
    .unwrap();
    let e = Study::new(config(SamplerConfig::Random, 3, 1), space())
        .unwrap()
        .with_shared_journal(&url, &fast())
        .unwrap_err()
        .to_string();
    assert!(e.contains("entry 3 does not end with a newline"), "{e}");
}

#[test]
fn bad_journal_configs_are_refused_before_any_io() {
    for (cfg, field) in [
        (
            JournalConfig {
                heartbeat_seconds: 0.0,
                ..Default::default()
            },
            "heartbeat_seconds",
        ),
        (
            JournalConfig {
                stale_after_seconds: f64::NAN,
                ..Default::default()
            },
            "stale_after_seconds",
        ),
        (
            JournalConfig {
                timeout_seconds: -1.0,
                ..Default::default()
            },
            "timeout_seconds",
        ),
    ] {
        let e = Study::new(config(SamplerConfig::Random, 3, 1), space())
            .unwrap()
            .with_shared_journal("/nonexistent/never/created", &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    assert!(!std::path::Path::new("/nonexistent/never/created").exists());
    // ask without a shared journal is a named error, not a panic.
    let mut local = Study::new(config(SamplerConfig::Random, 3, 1), space()).unwrap();
    assert!(local
        .ask()
        .unwrap_err()
        .to_string()
        .contains("with_shared_journal"));
}
