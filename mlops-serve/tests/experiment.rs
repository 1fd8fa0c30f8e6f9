//! Experiments across many models (issue 25): bad configs refused by field; a control that
//! errs stops the experiment, recorded; an erring candidate is dropped; among ten arms the
//! one truly better wins and, when all ten are the same, a winner is named in at most about
//! `alpha` of experiments however often they are looked at; Thompson allocation keeps its
//! floor and moves traffic to the better arm; the probability of being best matches its
//! closed form for two arms.

use std::time::{Duration, SystemTime};

use mlops_serve::experiment::{
    probability_best, Allocation, Arm, ArmStatus, Experiment, ExperimentConfig, ExperimentOutcome,
    ExperimentState,
};
use mlops_serve::step_stats::{StepSnapshot, VariantSnapshot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn arms(n: usize) -> Vec<Arm> {
    // Control 28%, nine candidates 8% each.
    (0..n)
        .map(|i| {
            let name = if i == 0 {
                "control".to_string()
            } else {
                format!("arm{i}")
            };
            let pct = if i == 0 {
                100.0 - 8.0 * (n - 1) as f64
            } else {
                8.0
            };
            Arm::new(&name, i as u64 + 1, pct)
        })
        .collect()
}

fn experiment(allocation: Allocation) -> Experiment {
    ExperimentConfig {
        arms: arms(10),
        allocation,
        ..ExperimentConfig::default()
    }
    .check()
    .unwrap()
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u: f64 = rng.random::<f64>().max(1e-300);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// One arm's window: `n` labeled rows, half positive, binormal scores of AUC Φ(μ/√2).
fn arm_window(rng: &mut ChaCha8Rng, name: &str, n: usize, mu: f64, errors: u64) -> VariantSnapshot {
    let mut v = VariantSnapshot::empty(name);
    v.requests = n as u64 + errors;
    v.errors = errors;
    v.rows = n as u64;
    for _ in 0..n {
        let positive = rng.random::<bool>();
        let z = normal(rng) + if positive { mu / 2.0 } else { -mu / 2.0 };
        v.labels.push(positive);
        v.label_scores.push(1.0 / (1.0 + (-z).exp()));
    }
    v
}

fn window(
    rng: &mut ChaCha8Rng,
    e: &Experiment,
    weights: &[(String, f64)],
    per_window: f64,
    mu: &dyn Fn(usize) -> f64,
) -> StepSnapshot {
    StepSnapshot {
        variants: e
            .arms
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let pct = weights
                    .iter()
                    .find(|(n, _)| *n == a.name)
                    .map_or(0.0, |(_, p)| *p);
                arm_window(rng, &a.name, (per_window * pct / 100.0) as usize, mu(k), 0)
            })
            .collect(),
    }
}

/// Runs an experiment over up to `windows` windows of `per_window` labeled rows in all.
fn run(
    e: &Experiment,
    seed: u64,
    windows: usize,
    per_window: f64,
    mu: &dyn Fn(usize) -> f64,
) -> ExperimentState {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut s = ExperimentState::start(e, t0);
    let mut weights = e.initial_weights();
    for w in 1..=windows {
        let snap = window(&mut rng, e, &weights, per_window, mu);
        let d = s
            .analyze(e, &snap, t0 + Duration::from_secs(600 * w as u64))
            .unwrap()
            .unwrap();
        let total: f64 = d.arms.iter().map(|a| a.percent).sum();
        assert!((total - 100.0).abs() < 1e-9, "{total}: {:?}", d.weights());
        weights = d.weights();
        if d.outcome.is_terminal() {
            break;
        }
    }
    s
}

#[test]
fn bad_experiments_are_refused_by_field() {
    let refused = |config: ExperimentConfig| config.check().unwrap_err().to_string();
    // One arm.
    let e = refused(ExperimentConfig {
        arms: vec![Arm::new("control", 1, 100.0)],
        ..ExperimentConfig::default()
    });
    assert!(
        e.contains("arms") && e.contains("a control and 1 to 16 candidates"),
        "{e}"
    );
    // Seventeen candidates.
    let e = refused(ExperimentConfig {
        arms: (0..18)
            .map(|i| Arm::new(&format!("a{i}"), i, if i == 0 { 100.0 } else { 0.0 }))
            .collect(),
        ..ExperimentConfig::default()
    });
    assert!(e.contains("18 arms"), "{e}");
    // Weights that do not sum to 100.
    let e = refused(ExperimentConfig {
        arms: vec![Arm::new("control", 1, 50.0), Arm::new("b", 2, 40.0)],
        ..ExperimentConfig::default()
    });
    assert!(e.contains("arms[].percent") && e.contains("90"), "{e}");
    // Two arms of one version.
    let e = refused(ExperimentConfig {
        arms: vec![
            Arm::new("control", 1, 50.0),
            Arm::new("b", 2, 25.0),
            Arm::new("c", 2, 25.0),
        ],
        ..ExperimentConfig::default()
    });
    assert!(
        e.contains("arms[2].version = 2") && e.contains("arms[1] \"b\""),
        "{e}"
    );
    // The same name twice; a control that is not an arm; a percent off the buckets.
    let e = refused(ExperimentConfig {
        arms: vec![Arm::new("a", 1, 50.0), Arm::new("a", 2, 50.0)],
        ..ExperimentConfig::default()
    });
    assert!(e.contains("arms[1].name"), "{e}");
    let e = refused(ExperimentConfig {
        control: Some("nobody".into()),
        arms: arms(3),
        ..ExperimentConfig::default()
    });
    assert!(e.contains("control") && e.contains("nobody"), "{e}");
    let e = refused(ExperimentConfig {
        arms: vec![Arm::new("a", 1, 50.005), Arm::new("b", 2, 49.995)],
        ..ExperimentConfig::default()
    });
    assert!(e.contains("arms[0].percent"), "{e}");
    // An arm without traffic would never be measured, and a winner must beat it.
    let e = refused(ExperimentConfig {
        arms: vec![
            Arm::new("a", 1, 100.0),
            Arm::new("b", 2, 0.0),
            Arm::new("c", 3, 0.0),
        ],
        ..ExperimentConfig::default()
    });
    assert!(e.contains("arms[1].percent = 0"), "{e}");
    for (config, field) in [
        (
            ExperimentConfig {
                alpha: 0.0,
                ..ExperimentConfig::default()
            },
            "alpha",
        ),
        (
            ExperimentConfig {
                max_error_rate: 1.0,
                ..ExperimentConfig::default()
            },
            "max_error_rate",
        ),
        (
            ExperimentConfig {
                allocation: Allocation::Thompson {
                    floor_percent: 20.0,
                },
                ..ExperimentConfig::default()
            },
            "allocation.floor_percent",
        ),
        (
            ExperimentConfig {
                max_seconds: f64::NAN,
                ..ExperimentConfig::default()
            },
            "max_seconds",
        ),
        (
            ExperimentConfig {
                min_improvement: -0.1,
                ..ExperimentConfig::default()
            },
            "min_improvement",
        ),
    ] {
        let e = refused(ExperimentConfig {
            arms: arms(10),
            ..config
        });
        assert!(e.contains(field), "{field}: {e}");
    }
    // From JSON: unknown fields are refused.
    let e = serde_json::from_str::<ExperimentConfig>(r#"{"arms": [], "arm": 1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn a_control_that_errs_stops_the_experiment_and_an_erring_candidate_is_dropped() {
    let e = experiment(Allocation::Fixed);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // arm3 fails 10% of its requests: dropped, its 8% goes to the control.
    let mut s = ExperimentState::start(&e, t0);
    let mut snap = window(&mut rng, &e, &e.initial_weights(), 5_000.0, &|_| 1.0);
    snap.variants[3].errors = 40;
    snap.variants[3].requests += 40;
    let d = s
        .analyze(&e, &snap, t0 + Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert_eq!(d.outcome, ExperimentOutcome::Continue, "{}", d.reason);
    assert_eq!(d.arms[3].status, ArmStatus::Dropped);
    assert_eq!(d.arms[3].percent, 0.0);
    assert_eq!(d.arms[0].percent, 36.0);
    // The control failing: stopped, recorded, nothing more decided.
    let mut s = ExperimentState::start(&e, t0);
    let mut snap = window(&mut rng, &e, &e.initial_weights(), 5_000.0, &|_| 1.0);
    snap.variants[0].errors = 100;
    snap.variants[0].requests += 100;
    let d = s
        .analyze(&e, &snap, t0 + Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert_eq!(d.outcome, ExperimentOutcome::Stopped);
    assert!(
        d.reason.contains("the control \"control\" errs") && d.reason.contains("100 of"),
        "{}",
        d.reason
    );
    assert_eq!(d.winner, None);
    assert!(s.is_over());
    assert!(s
        .analyze(&e, &snap, t0 + Duration::from_secs(1_200))
        .unwrap()
        .is_none());
    // The audit record and the state round-trip through JSON.
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<ExperimentState>(&json).unwrap(), s);
    // A state of another experiment is refused.
    let other = ExperimentConfig {
        arms: arms(3),
        ..ExperimentConfig::default()
    }
    .check()
    .unwrap();
    let e2 = s.analyze(&other, &snap, t0).unwrap_err().to_string();
    assert!(e2.contains("ExperimentState.arms"), "{e2}");
    // A stored state tampered with (a pair past the arms, a decision of other arms) is
    // refused, never a panic.
    let mut tampered = ExperimentState::start(&e, t0);
    tampered.pairs[0].0 = (3, 42);
    let e3 = tampered.analyze(&e, &snap, t0).unwrap_err().to_string();
    assert!(e3.contains("ExperimentState"), "{e3}");
    let mut tampered = s.clone();
    tampered.decisions[0].arms.pop();
    assert!(tampered.analyze(&e, &snap, t0).is_err());
    let mut tampered = ExperimentState::start(&e, t0);
    tampered.started_unix = f64::NAN;
    assert!(tampered.analyze(&e, &snap, t0).is_err());
}

#[test]
fn a_variant_of_another_version_is_not_taken_for_the_arm() {
    let e = experiment(Allocation::Fixed);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut s = ExperimentState::start(&e, t0);
    let mut snap = window(&mut rng, &e, &e.initial_weights(), 5_000.0, &|_| 1.0);
    for (k, v) in snap.variants.iter_mut().enumerate() {
        v.version = Some(k as u64 + 1);
    }
    // arm2's statistics come from version 99: not arm2's model (v3). Refused, named.
    snap.variants[2].version = Some(99);
    let e2 = s
        .analyze(&e, &snap, t0 + Duration::from_secs(600))
        .unwrap_err()
        .to_string();
    assert!(
        e2.contains("arms[2].version = 3") && e2.contains("v99"),
        "{e2}"
    );
    assert!(s.decisions.is_empty());
    snap.variants[2].version = Some(3);
    let d = s
        .analyze(&e, &snap, t0 + Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert!(d.arms[2].requests > 0);
}

/// A plain A/B test (one candidate) has no pairs: it spends its whole alpha on "better than
/// the control", and names the better model.
#[test]
fn an_ab_test_of_two_arms_spends_its_whole_alpha_on_the_one_comparison() {
    let e = ExperimentConfig {
        arms: vec![Arm::new("control", 1, 50.0), Arm::new("b", 2, 50.0)],
        ..ExperimentConfig::default()
    }
    .check()
    .unwrap();
    let s = run(&e, 11, 100, 2_000.0, &|k| if k == 1 { 1.35 } else { 1.2 });
    let d = s.last().unwrap();
    assert_eq!(d.winner.as_deref(), Some("b"), "{}", d.reason);
    assert!(
        d.reason.contains("alpha 0.05 over 1 candidates"),
        "{}",
        d.reason
    );
}

#[test]
fn among_ten_arms_the_better_one_wins() {
    let e = experiment(Allocation::Fixed);
    // μ 1.2 is AUC 0.80; arm7's 1.45 is AUC 0.85.
    let mu = |k: usize| if k == 7 { 1.45 } else { 1.2 };
    let mut winners = 0;
    for seed in 0..20 {
        let s = run(&e, seed, 200, 4_000.0, &mu);
        let d = s.last().unwrap();
        if d.outcome == ExperimentOutcome::Winner {
            assert_eq!(d.winner.as_deref(), Some("arm7"), "{}", d.reason);
            winners += 1;
            let w = &d.arms[7];
            assert_eq!(w.percent, 100.0);
            let (low, _) = w.interval.unwrap();
            assert!(low > 0.0, "{w:?}");
            assert!(w.p_value.unwrap() <= 0.05);
        }
    }
    assert!(winners >= 18, "{winners} of 20 found the better arm");
}

#[test]
fn ten_identical_arms_name_a_winner_rarely_however_often_looked_at() {
    let e = experiment(Allocation::Fixed);
    let runs = 200;
    let mut false_winners = 0;
    let mut no_winner = 0;
    for seed in 0..runs {
        // 60 looks of 2,000 labeled rows each.
        let s = run(&e, 1_000 + seed, 60, 2_000.0, &|_| 1.2);
        match s.last().unwrap().outcome {
            ExperimentOutcome::Winner => false_winners += 1,
            ExperimentOutcome::NoWinner => no_winner += 1,
            _ => {}
        }
    }
    // At alpha 0.05: at most 10 of 200 expected; 18 is past the 99.9% binomial quantile.
    assert!(false_winners <= 18, "{false_winners} of {runs}");
    // Identical arms with min_improvement 0 never end as "cannot win" quickly: most run on.
    assert!(no_winner < runs, "{no_winner}");
}

#[test]
fn thompson_allocation_keeps_its_floor_and_moves_traffic_to_the_better_arm() {
    let e = experiment(Allocation::Thompson { floor_percent: 2.0 });
    let mu = |k: usize| if k == 4 { 1.45 } else { 1.2 };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut s = ExperimentState::start(&e, t0);
    let mut weights = e.initial_weights();
    let mut arm4 = Vec::new();
    for w in 1..=30 {
        let snap = window(&mut rng, &e, &weights, 3_000.0, &mu);
        let d = s
            .analyze(&e, &snap, t0 + Duration::from_secs(600 * w))
            .unwrap()
            .unwrap();
        if d.outcome.is_terminal() {
            assert_eq!(d.winner.as_deref(), Some("arm4"), "{}", d.reason);
            break;
        }
        for a in &d.arms {
            let buckets = a.percent * 100.0;
            assert!((buckets - buckets.round()).abs() < 1e-6, "{a:?}");
            if a.status == ArmStatus::Running || a.status == ArmStatus::Control {
                assert!(a.percent >= 2.0 - 1e-9, "{a:?}");
            }
        }
        arm4.push(d.arms[4].percent);
        weights = d.weights();
    }
    assert!(arm4.len() >= 2, "{arm4:?}");
    // The better arm gets far more than its configured 8% before it wins.
    assert!(arm4.iter().any(|&p| p > 30.0), "{arm4:?}");
}

#[test]
fn the_probability_of_being_best_matches_the_closed_form_for_two_arms() {
    let normal = statrs::distribution::Normal::standard();
    use statrs::distribution::ContinuousCDF;
    for (m1, v1, m2, v2) in [
        (0.80, 1e-4, 0.81, 2e-4),
        (0.5, 1.0, 0.0, 0.5),
        (0.7, 1e-6, 0.7, 1e-6),
        // One arm far more precise than the other (a million labeled rows against a few).
        (0.80, 1e-10, 0.79, 1e-2),
        (0.80, 1e-2, 0.81, 1e-10),
    ] {
        let p = probability_best(&[(m1, v1), (m2, v2)]).unwrap();
        let exact = normal.cdf((m1 - m2) / (v1 + v2).sqrt());
        // Trapezoid on the union of the arms' grids: to 1e-5 even when one arm is 1e4 times
        // more precise (a probability that sets traffic shares, not a p-value).
        assert!((p[0] - exact).abs() < 1e-5, "{p:?} vs {exact}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
    }
    // Three identical arms: a third each.
    let p = probability_best(&[(0.8, 1e-4); 3]).unwrap();
    for x in p {
        assert!((x - 1.0 / 3.0).abs() < 1e-6, "{x}");
    }
    // No evidence: no probability, never a guess.
    assert!(probability_best(&[(0.8, 0.0), (0.8, 1e-4)]).is_none());
    assert!(probability_best(&[(f64::NAN, 1e-4)]).is_none());
    // A spread no grid resolves at its mean: no answer rather than a wrong one.
    assert!(probability_best(&[(0.5, 1e-320), (0.9, 0.01)]).is_none());
    assert!(probability_best(&[]).is_none());
}
