//! The always-valid policy (`[sequential]`) in the rollout state machine: evidence pooled
//! over windows too small alone; "no evidence yet" bakes again without counting towards the
//! inconclusive limit, up to `max_step_seconds`, then rolls back; a clear increase in errors
//! over the rollout fails; the evidence survives the state's JSON (a restarted controller);
//! bad sections refused by field. And, through `rollout_sim`, the error rates the issue asks
//! for at 50 requests/s: an identical candidate promoted in at least 95% of 400 rollouts
//! within six simulated hours, one worse by the margin promoted in at most 5%.

use std::time::{Duration, SystemTime};

use mlops_serve::analysis::{Check, Outcome};
use mlops_serve::policy::{Promotion, PromotionConfig, Sequential};
use mlops_serve::rollout::{DecisionKind, Phase, RolloutState, CANARY, STABLE};
use mlops_serve::rollout_sim::{operating_characteristics, Scenario};
use mlops_serve::step_stats::{StatsConfig, StepSnapshot, VariantSnapshot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn sequential(checks: Vec<Check>, max_step_seconds: f64) -> Promotion {
    PromotionConfig {
        checks,
        sequential: Some(Sequential {
            alpha: 0.05,
            max_step_seconds: Some(max_step_seconds),
        }),
        ..PromotionConfig::default()
    }
    .check()
    .unwrap()
}

/// A rollout of `config` started at a fixed time, and a generator for its windows.
fn begin(config: &Promotion, seed: u64) -> (SystemTime, ChaCha8Rng, RolloutState) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let s = RolloutState::start("m", 1, 2, config, t0);
    (t0, ChaCha8Rng::seed_from_u64(seed), s)
}

/// An AUC-only sequential rollout after one pooled window of 60 labeled rows.
fn one_window(seed: u64) -> (Promotion, SystemTime, ChaCha8Rng, RolloutState) {
    let config = sequential(vec![auc_check()], 100_000.0);
    let (t0, mut rng, mut s) = begin(&config, seed);
    let d = s.advance(
        &config,
        &window(&mut rng, 60, 0),
        t0 + Duration::from_secs(600),
    );
    assert!(d.is_some());
    assert_eq!(s.evidence[0].windows, 1);
    (config, t0, rng, s)
}

fn auc_check() -> Check {
    Check::RocAuc {
        max_decrease: 0.05,
        confidence: 0.95,
        min_labeled: 200,
    }
}

/// A window: `labeled` rows each (half positive; scores that separate the classes with the
/// same AUC on both sides), 1,000 requests each, `canary_errors` errors.
fn window(rng: &mut ChaCha8Rng, labeled: usize, canary_errors: u64) -> StepSnapshot {
    let mut v = |name: &str, errors: u64| {
        let labels: Vec<bool> = (0..labeled).map(|i| i % 2 == 0).collect();
        let label_scores = labels
            .iter()
            .map(|&l| {
                let u: f64 = rng.random();
                if l {
                    0.3 + 0.7 * u
                } else {
                    0.7 * u
                }
            })
            .collect();
        VariantSnapshot {
            requests: 1_000,
            rows: 1_000,
            errors,
            latency_p50_ms: Some(1.0),
            latency_p99_ms: Some(2.0),
            labels,
            label_scores,
            ..VariantSnapshot::empty(name)
        }
    };
    StepSnapshot {
        variants: vec![v(CANARY, canary_errors), v(STABLE, 0)],
    }
}

#[test]
fn windows_too_small_alone_are_pooled_and_no_evidence_never_counts_as_inconclusive() {
    let config = sequential(vec![auc_check()], 100_000.0);
    let (t0, mut rng, mut s) = begin(&config, 5);
    let mut now = t0;
    let mut extends = 0;
    let mut powers = Vec::new();
    // 60 labeled rows a window: min_labeled (200) is reached only by pooling windows.
    for _ in 0..50 {
        now += Duration::from_secs(600);
        let d = s.advance(&config, &window(&mut rng, 60, 0), now).unwrap();
        match d.kind {
            DecisionKind::Extend => {
                extends += 1;
                assert!(d.reason.contains("no evidence yet"), "{}", d.reason);
                // More than the inconclusive limit (3), and never counted towards it.
                assert_eq!(s.inconclusive, 0);
            }
            DecisionKind::Advance => break,
            other => panic!("{other:?}: {}", d.reason),
        }
        // Each decision states the power its evidence had (issue 25, reporting).
        if let Some(p) = d.checks[0]
            .reason
            .split("power at no difference ")
            .nth(1)
            .and_then(|t| t.get(..4))
            .and_then(|t| t.parse::<f64>().ok())
        {
            powers.push(p);
        }
    }
    assert!(extends >= 4, "{extends}");
    // Power grows as windows pool, and the passing decision had most of it.
    assert!(powers.len() >= 2, "{powers:?}");
    assert!(powers.windows(2).all(|w| w[1] >= w[0] - 0.05), "{powers:?}");
    assert!(
        powers.last().unwrap() > powers.first().unwrap(),
        "{powers:?}"
    );
    assert_eq!(s.canary_percent, 25.0, "{:?}", s.last_decision());
    let d = s.last_decision().unwrap();
    let c = &d.checks[0];
    assert_eq!(c.outcome, Outcome::Pass);
    assert!(
        c.n_candidate >= 200 && c.reason.contains("always-valid band"),
        "{c:?}"
    );
    // The evidence goes on from where it was after a round trip through the stored JSON.
    let json = serde_json::to_string(&s).unwrap();
    let back: RolloutState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.evidence, s.evidence);
    assert!(back.evidence[0].windows >= 4);
}

#[test]
fn a_step_without_evidence_rolls_back_at_max_step_seconds() {
    let config = sequential(vec![auc_check()], 1_800.0);
    let (t0, mut rng, mut s) = begin(&config, 6);
    let mut kinds = Vec::new();
    for k in 1..=3 {
        let now = t0 + Duration::from_secs(600 * k);
        // No labels at all.
        kinds.push(
            s.advance(&config, &window(&mut rng, 0, 0), now)
                .unwrap()
                .kind,
        );
    }
    assert_eq!(
        kinds,
        [
            DecisionKind::Extend,
            DecisionKind::Extend,
            DecisionKind::Rollback
        ]
    );
    assert_eq!(s.phase, Phase::RolledBack);
    let reason = &s.last_decision().unwrap().reason;
    assert!(reason.contains("max_step_seconds 1800"), "{reason}");
}

#[test]
fn errors_clearly_higher_over_the_rollout_fail_and_equal_ones_pass() {
    let errors = Check::ErrorRate {
        max_increase: 0.0,
        confidence: 0.95,
    };
    let config = sequential(vec![errors], 100_000.0);
    let (t0, mut rng, mut s) = begin(&config, 7);
    // 5% errors against none: fails at the first look.
    let d = s
        .advance(
            &config,
            &window(&mut rng, 0, 50),
            t0 + Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Rollback, "{}", d.reason);
    assert!(d.reason.contains("lower bound"), "{}", d.reason);
    let mut s = RolloutState::start("m", 1, 2, &config, t0);
    let d = s
        .advance(
            &config,
            &window(&mut rng, 0, 0),
            t0 + Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Advance, "{}", d.reason);
}

#[test]
fn bad_sequential_sections_are_refused_by_field() {
    for (toml, field) in [
        ("[sequential]\nalpha = 0", "sequential.alpha"),
        ("[sequential]\nalpha = 0.6", "sequential.alpha"),
        ("[sequential]\nalpha = nan", "sequential.alpha"),
        (
            "[sequential]\nmax_step_seconds = 60",
            "sequential.max_step_seconds",
        ),
        (
            "[sequential]\nmax_step_seconds = inf",
            "sequential.max_step_seconds",
        ),
        ("[sequential]\nbeta = 0.1", "unknown field `beta`"),
        (
            "[sequential]\nalpha = \"high\"",
            "invalid type: string \"high\", expected f64",
        ),
        ("sequential = 3", "true, false or a table"),
    ] {
        let e = Promotion::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(field), "{toml}: {e}");
    }
}

/// The issue's low-traffic acceptance, on the simulator: 50 requests/s, balanced classes,
/// labels 10 s late, the default policy's checks and margins with `[sequential]` added.
#[test]
fn at_50_requests_a_second_an_identical_candidate_is_promoted_and_a_worse_one_is_not() {
    let policy = PromotionConfig {
        sequential: Some(Sequential::default()),
        ..PromotionConfig::default()
    }
    .check()
    .unwrap();
    let low = Scenario {
        requests_per_second: 50.0,
        positive_rate: 0.5,
        label_delay_seconds: 10.0,
        ..Scenario::default()
    };
    let stats = StatsConfig::default();
    let same = operating_characteristics(&policy, &stats, &low, 400, 21).unwrap();
    assert!(same.promoted_share.share >= 0.95, "{same:?}");
    assert!(same.median_seconds_to_decision.unwrap() < 6.0 * 3_600.0);
    let worse = Scenario {
        auc_delta: -0.01,
        ..low
    };
    let r = operating_characteristics(&policy, &stats, &worse, 400, 21).unwrap();
    assert!(r.promoted_share.share <= 0.05, "{r:?}");
}

#[test]
fn evidence_pooled_under_another_policy_is_dropped() {
    let (_, t0, mut rng, mut s) = one_window(8);
    // The same steps, another margin: the pooled windows start again.
    let other = sequential(
        vec![Check::RocAuc {
            max_decrease: 0.02,
            confidence: 0.95,
            min_labeled: 200,
        }],
        100_000.0,
    );
    s.advance(
        &other,
        &window(&mut rng, 60, 0),
        t0 + Duration::from_secs(1_200),
    )
    .unwrap();
    assert_eq!(s.evidence[0].windows, 1);
    s.advance(
        &other,
        &window(&mut rng, 60, 0),
        t0 + Duration::from_secs(1_800),
    )
    .unwrap();
    assert_eq!(s.evidence[0].windows, 2);
}

/// A state written before `step_entered_unix` was kept still rolls back at
/// `max_step_seconds` (its step began no later than its last analysis), and a step without
/// traffic decides nothing even when the evidence pooled so far passes.
#[test]
fn an_old_state_is_bounded_too_and_a_window_without_traffic_decides_nothing() {
    let config = sequential(vec![auc_check()], 1_800.0);
    let (t0, mut rng, mut s) = begin(&config, 9);
    s.step_entered_unix = None;
    let mut last = DecisionKind::Start;
    for k in 1..=6 {
        let now = t0 + Duration::from_secs(600 * k);
        last = s
            .advance(&config, &window(&mut rng, 0, 0), now)
            .unwrap()
            .kind;
        if last == DecisionKind::Rollback {
            break;
        }
    }
    assert_eq!(last, DecisionKind::Rollback, "{:?}", s.last_decision());

    let mut s = RolloutState::start("m", 1, 2, &config, t0);
    let d = s
        .advance(
            &config,
            &window(&mut rng, 400, 0),
            t0 + Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Advance, "{}", d.reason);
    let empty = StepSnapshot {
        variants: vec![
            VariantSnapshot::empty(CANARY),
            VariantSnapshot::empty(STABLE),
        ],
    };
    let d = s
        .advance(&config, &empty, t0 + Duration::from_secs(1_200))
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Extend, "{}", d.reason);
    assert!(d.reason.contains("no data"), "{}", d.reason);
    assert_eq!(s.canary_percent, 25.0);
}

/// A policy whose steps no longer fit the state reconciles it: the step starts again and the
/// evidence pooled under the old policy is dropped.
#[test]
fn a_reconciled_rollout_starts_its_step_and_its_evidence_again() {
    let (config, t0, mut rng, mut s) = one_window(10);
    let other = PromotionConfig {
        steps: vec![5.0, 100.0],
        ..config.clone().into_config()
    }
    .check()
    .unwrap();
    let now = t0 + Duration::from_secs(700);
    let d = s.advance(&other, &window(&mut rng, 60, 0), now).unwrap();
    assert_eq!(d.kind, DecisionKind::Reconcile, "{}", d.reason);
    assert!(s.evidence.is_empty(), "{:?}", s.evidence);
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(s.step_entered_unix, Some(unix));
}

/// An undecided check says how many more labeled rows it needs at its current estimate, and
/// that many do decide it.
#[test]
fn an_undecided_check_says_how_many_more_rows_it_needs() {
    use mlops_serve::sequential::{variance_to_reach, Evidence};
    let check = Check::RocAuc {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 200,
    };
    let (canary, stable) = (
        VariantSnapshot::empty(CANARY),
        VariantSnapshot::empty(STABLE),
    );
    let mut e = Evidence {
        n_candidate: 1_000,
        n_stable: 9_000,
        ..Evidence::default()
    };
    e.add(-0.008, 1e-5);
    let r = check
        .evaluate_sequential(&mut e, &canary, &stable, 100, 0.05)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.reason);
    let said: f64 = r
        .reason
        .split("about ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.reason));
    let target = variance_to_reach(0.002, 1e-4, 0.05).unwrap();
    let expected = (1_000.0 * (1e-5 / target - 1.0)).ceil();
    assert_eq!(said, expected, "{}", r.reason);
    // The same estimate on that many more rows (information grows with them) passes.
    let rows = 1_000.0 + said;
    let mut more = Evidence {
        n_candidate: rows as u64,
        n_stable: 9 * rows as u64,
        ..Evidence::default()
    };
    more.add(-0.008, 1e-5 * 1_000.0 / rows * 0.999);
    let r = check
        .evaluate_sequential(&mut more, &canary, &stable, 100, 0.05)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
}

/// Issue 25: the always-valid analysis is the default; `sequential = false` is the
/// per-window analysis of Flagger and Argo Rollouts, and round-trips as `false`.
#[test]
fn the_default_policy_is_sequential_and_false_turns_it_off() {
    let default = Promotion::default();
    assert_eq!(default.sequential, Some(Sequential::default()));
    assert_eq!(
        Promotion::from_toml_str("").unwrap().sequential,
        Some(Sequential::default())
    );
    assert_eq!(
        Promotion::from_toml_str("sequential = true")
            .unwrap()
            .sequential,
        Some(Sequential::default())
    );
    let off = Promotion::from_toml_str("sequential = false").unwrap();
    assert_eq!(off.sequential, None);
    let json = serde_json::to_string(&off).unwrap();
    assert!(json.contains("\"sequential\":false"), "{json}");
    assert_eq!(serde_json::from_str::<Promotion>(&json).unwrap(), off);
    // JSON null (Python's None) is the per-window analysis too.
    let null = serde_json::from_str::<Promotion>(r#"{"sequential": null}"#).unwrap();
    assert_eq!(null.sequential, None);
    let on = serde_json::to_string(&default).unwrap();
    assert_eq!(serde_json::from_str::<Promotion>(&on).unwrap(), default);
    // A policy whose checks need no pooling is fine under the default: they test each
    // window as before.
    let label_free =
        Promotion::from_toml_str("[[checks]]\nkind = \"latency_p99\"\nfactor = 1.1").unwrap();
    assert!(label_free.sequential.is_some());
}

/// A variant's window of `positives` and `negatives` labeled rows, positives scored higher
/// on average.
fn small_window(
    rng: &mut ChaCha8Rng,
    name: &str,
    positives: usize,
    negatives: usize,
) -> VariantSnapshot {
    let mut v = VariantSnapshot::empty(name);
    v.requests = (positives + negatives) as u64;
    v.rows = v.requests;
    for i in 0..positives + negatives {
        let positive = i < positives;
        let shift = if positive { 0.3 } else { 0.0 };
        v.labels.push(positive);
        v.label_scores
            .push((rng.random::<f64>() * 0.7 + shift).min(1.0));
    }
    v
}

/// Issue 25, low base rate: a canary window with fewer positives than a window needs alone is
/// carried into the next one instead of being thrown away, so two small windows make one
/// estimate; every row counts once; the carry keeps the rare class whole, samples every window
/// alike, leaves out non-finite scores and stays bounded.
#[test]
fn windows_too_small_alone_add_up_instead_of_being_thrown_away() {
    use mlops_serve::sequential::{CarriedRows, Evidence, MAX_CARRIED_PER_CLASS};
    let check = Check::RocAuc {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 200,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut e = Evidence::default();
    // 15 positives in each variant's window: under the 25 a window needs.
    let (c1, mut s1) = (
        small_window(&mut rng, CANARY, 15, 985),
        small_window(&mut rng, STABLE, 15, 8_985),
    );
    // A score no metric can rank is left out of the carry (and of its JSON).
    s1.labels.push(false);
    s1.label_scores.push(f64::NAN);
    let r = check
        .evaluate_sequential(&mut e, &c1, &s1, 100, 0.05)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.reason);
    assert_eq!(e.windows, 0);
    assert_eq!(e.carried_candidate.len(), 1_000);
    assert_eq!(e.carried_candidate.positives(), 15);
    // Stable's 8,985 negatives are sampled one in 8 (1,124 kept); its 15 positives whole.
    assert_eq!(e.carried_stable.positives(), 15);
    assert_eq!(e.carried_stable.len() - 15, 1_124);
    assert!(
        r.reason.contains("waiting for the next window"),
        "{}",
        r.reason
    );
    // The carry survives the state's JSON.
    let e2: Evidence = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(e2, e);
    let (c2, s2) = (
        small_window(&mut rng, CANARY, 15, 985),
        small_window(&mut rng, STABLE, 600, 8_400),
    );
    let r = check
        .evaluate_sequential(&mut e, &c2, &s2, 100, 0.05)
        .unwrap();
    // Together the two windows have 30 positives: one estimate, on the carried sample once.
    assert_eq!(e.windows, 1, "{}", r.reason);
    assert_eq!(e.n_candidate, 2_000);
    assert!(
        e.n_stable > 615 && e.n_stable <= 615 + MAX_CARRIED_PER_CLASS as u64,
        "{}",
        e.n_stable
    );
    assert!(e.carried_candidate.is_empty() && e.carried_stable.is_empty());
    assert!(
        r.statistic.is_some() && r.interval.is_some(),
        "{}",
        r.reason
    );
    // A third small window waits alone; the rows already used are not carried again.
    let (c3, s3) = (
        small_window(&mut rng, CANARY, 10, 490),
        small_window(&mut rng, STABLE, 10, 490),
    );
    check
        .evaluate_sequential(&mut e, &c3, &s3, 100, 0.05)
        .unwrap();
    assert_eq!(e.windows, 1);
    assert_eq!(e.carried_candidate.len(), 500);

    // Every window is sampled alike: two windows of 3,000 negatives keep as many each.
    let mut c = CarriedRows::default();
    for w in 0..2 {
        let scores: Vec<f64> = (0..3_000)
            .map(|_| f64::from(w) + rng.random::<f64>() * 0.5)
            .collect();
        c.add(&scores, &vec![false; 3_000]);
    }
    let (scores, _) = c.rows();
    let first = scores.iter().filter(|&&s| s < 1.0).count();
    assert_eq!((first, scores.len() - first), (750, 750));
}
