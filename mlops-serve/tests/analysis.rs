//! Canary checks on hand-built step statistics (each verdict and its boundary), and the
//! promotion config read from TOML and JSON with every bad field named.

use mlops_serve::analysis::{Check, Outcome};
use mlops_serve::policy::{NoData, Promotion, RollbackMode};
use mlops_serve::step_stats::VariantSnapshot;

fn variant(name: &str, requests: u64, errors: u64, p99: f64) -> VariantSnapshot {
    VariantSnapshot {
        requests,
        rows: requests,
        errors,
        latency_p50_ms: Some(p99 / 2.0),
        latency_p99_ms: Some(p99),
        ..VariantSnapshot::empty(name)
    }
}

/// `n` labeled rows whose scores separate the classes by `signal` (0: none), deterministic.
fn labeled(mut v: VariantSnapshot, n: usize, signal: f64) -> VariantSnapshot {
    for i in 0..n {
        let label = i % 3 == 0;
        let noise = ((i * 7919) % 1000) as f64 / 1000.0;
        let score = (0.5 * noise + if label { signal / 2.0 } else { 0.0 }).min(1.0);
        v.labels.push(label);
        v.label_scores.push(score);
    }
    v
}

#[test]
fn error_rate_is_a_one_sided_test_that_fails_only_a_higher_rate() {
    let check = Check::ErrorRate {
        max_increase: 0.0,
        confidence: 0.95,
    };
    let stable = variant("stable", 10_000, 20, 2.0);
    let worse = check.evaluate(&variant("canary", 1000, 20, 2.0), &stable, 100);
    assert_eq!(worse.outcome, Outcome::Fail, "{}", worse.reason);
    // One-sided p is half statsmodels' two-sided p for a positive z.
    let two = mlops_drift::stats::proportions_ztest(20.0, 1000.0, 20.0, 10_000.0).unwrap();
    assert!((worse.p_value.unwrap() - two.p_value / 2.0).abs() < 1e-12);
    assert_eq!(worse.statistic, Some(two.statistic));
    // Fewer errors is never a failure, however significant.
    let better = check.evaluate(
        &variant("canary", 1000, 0, 2.0),
        &variant("stable", 10_000, 200, 2.0),
        100,
    );
    assert_eq!(better.outcome, Outcome::Pass, "{}", better.reason);
    // A tolerated increase passes even when significant.
    let tolerant = Check::ErrorRate {
        max_increase: 0.02,
        confidence: 0.95,
    };
    assert_eq!(
        tolerant
            .evaluate(&variant("canary", 1000, 20, 2.0), &stable, 100)
            .outcome,
        Outcome::Pass
    );
    // Too few requests: inconclusive, saying so.
    let few = check.evaluate(&variant("canary", 50, 5, 2.0), &stable, 100);
    assert_eq!(few.outcome, Outcome::Inconclusive);
    assert!(few.reason.contains("too few requests"), "{}", few.reason);
}

#[test]
fn latency_compares_p99_with_factor_and_slack() {
    let check = Check::LatencyP99 {
        factor: 1.1,
        slack_ms: 0.5,
    };
    let stable = variant("stable", 1000, 0, 10.0);
    assert_eq!(
        check
            .evaluate(&variant("canary", 1000, 0, 11.5), &stable, 100)
            .outcome,
        Outcome::Pass
    );
    let slow = check.evaluate(&variant("canary", 1000, 0, 11.6), &stable, 100);
    assert_eq!(slow.outcome, Outcome::Fail);
    assert!(
        (slow.statistic.unwrap() - 1.16).abs() < 1e-12 && slow.reason.contains("11.600 ms"),
        "{}",
        slow.reason
    );
    let mut none = variant("canary", 0, 0, 1.0);
    none.latency_p99_ms = None;
    assert_eq!(
        check.evaluate(&none, &stable, 100).outcome,
        Outcome::Inconclusive
    );
}

#[test]
fn roc_auc_is_non_inferiority_with_delongs_variance() {
    let check = Check::RocAuc {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 200,
    };
    let stable = labeled(variant("stable", 5000, 0, 1.0), 3000, 0.6);
    let same = check.evaluate(
        &labeled(variant("canary", 5000, 0, 1.0), 3000, 0.6),
        &stable,
        100,
    );
    // Identical scores: difference 0, never a failure.
    assert_eq!(same.statistic, Some(0.0));
    assert_ne!(same.outcome, Outcome::Fail, "{}", same.reason);
    let worse = check.evaluate(
        &labeled(variant("canary", 5000, 0, 1.0), 3000, 0.2),
        &stable,
        100,
    );
    assert_eq!(worse.outcome, Outcome::Fail, "{}", worse.reason);
    assert!(worse.p_value.unwrap() > 0.5 && worse.candidate < worse.stable);
    let better = check.evaluate(
        &labeled(variant("canary", 5000, 0, 1.0), 3000, 0.9),
        &stable,
        100,
    );
    assert_eq!(better.outcome, Outcome::Pass, "{}", better.reason);
    assert!(better.p_value.unwrap() < 0.05);
    // Few labels: inconclusive, naming what is missing; one class: the same.
    let few = check.evaluate(
        &labeled(variant("canary", 5000, 0, 1.0), 50, 0.9),
        &stable,
        100,
    );
    assert_eq!(few.outcome, Outcome::Inconclusive);
    assert!(few.reason.contains("labeled rows"), "{}", few.reason);
    let mut one_class = variant("canary", 5000, 0, 1.0);
    one_class.labels = vec![false; 300];
    one_class.label_scores = vec![0.1; 300];
    let r = check.evaluate(&one_class, &stable, 100);
    assert_eq!(r.outcome, Outcome::Inconclusive);
    assert!(r.reason.contains("positive"), "{}", r.reason);
    // Near the margin with few rows: neither shown good nor shown bad.
    let close = Check::RocAuc {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 20,
    };
    let r = close.evaluate(
        &labeled(variant("canary", 5000, 0, 1.0), 60, 0.55),
        &labeled(variant("stable", 5000, 0, 1.0), 60, 0.6),
        100,
    );
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.reason);
    // Issue 25: the inconclusive window states the power it had against a candidate exactly
    // as good as stable, and the labeled rows a window needs for 80% of it: the closed form
    // n = n_c · se² · (z₀.₉₅ + z₀.₈)² / δ² at the window's split (60 and 60 rows here).
    let high = r.reason.clone();
    let rows: f64 = high
        .split("80% needs about ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{high}"));
    assert!(high.contains("power at no difference 0.0"), "{high}");
    // The window's standard error back from its 95% band: the band is diff ± 1.645 se.
    let band: Vec<f64> = high
        .split(" in [")
        .nth(1)
        .and_then(|t| t.split(']').next())
        .map(|t| t.split(", ").map(|x| x.parse().unwrap()).collect())
        .unwrap();
    let se = (band[1] - band[0]) / (2.0 * 1.6448536269514722);
    let expected = 60.0 * se * se * (1.6448536269514722_f64 + 0.8416212335729143).powi(2) / 1e-4;
    assert!(
        (rows - expected).abs() <= 0.01 * expected + 1.0,
        "{rows} rows, closed form {expected}: {high}"
    );
}

#[test]
fn accuracy_prediction_drift_and_shadow_agreement() {
    let acc = Check::Accuracy {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 200,
    };
    let stable = labeled(variant("stable", 5000, 0, 1.0), 3000, 0.6);
    assert_eq!(
        acc.evaluate(
            &labeled(variant("canary", 5000, 0, 1.0), 3000, 0.0),
            &stable,
            100
        )
        .outcome,
        Outcome::Fail
    );
    assert_eq!(
        acc.evaluate(
            &labeled(variant("canary", 5000, 0, 1.0), 3000, 1.0),
            &stable,
            100
        )
        .outcome,
        Outcome::Pass
    );

    let drift = Check::PredictionDrift {
        max_statistic: 0.2,
        confidence: 0.95,
    };
    let mut a = variant("canary", 2000, 0, 1.0);
    let mut b = variant("stable", 2000, 0, 1.0);
    a.scores = (0..2000).map(|i| i as f64 / 2000.0).collect();
    b.scores = (0..2000)
        .map(|i| (i as f64 / 2000.0 + 0.01).min(1.0))
        .collect();
    assert_eq!(drift.evaluate(&a, &b, 100).outcome, Outcome::Pass);
    b.scores = (0..2000).map(|i| i as f64 / 4000.0).collect();
    let r = drift.evaluate(&a, &b, 100);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.reason);
    assert!((r.statistic.unwrap() - 0.5).abs() < 1e-3);

    let agree = Check::ShadowAgreement {
        min_agreement: 0.9,
        confidence: 0.95,
    };
    let shadow = |compared: u64, agreed: u64| VariantSnapshot {
        shadow_compared: compared,
        shadow_agreed: agreed,
        ..variant("canary", compared, 0, 1.0)
    };
    let s = variant("stable", 5000, 0, 1.0);
    assert_eq!(
        agree.evaluate(&shadow(2000, 1960), &s, 100).outcome,
        Outcome::Pass
    );
    assert_eq!(
        agree.evaluate(&shadow(2000, 1600), &s, 100).outcome,
        Outcome::Fail
    );
    assert_eq!(
        agree.evaluate(&shadow(200, 180), &s, 100).outcome,
        Outcome::Inconclusive
    );
    assert_eq!(
        agree.evaluate(&shadow(10, 10), &s, 100).outcome,
        Outcome::Inconclusive
    );
}

#[test]
fn the_config_reads_toml_and_json_and_names_bad_fields() {
    let toml = r#"
        steps = [10, 25, 50, 75, 100]
        bake_time_seconds = 600
        min_requests = 200
        failure_limit = 2
        inconclusive_limit = 4
        no_data = "fail"
        rollback = "gradual"

        [[checks]]
        kind = "error_rate"
        confidence = 0.99

        [[checks]]
        kind = "roc_auc"
        max_decrease = 0.005

        [shadow]
        percent = 20
        bake_time_seconds = 300
        checks = [{ kind = "shadow_agreement", min_agreement = 0.95 }]
    "#;
    let c = Promotion::from_toml_str(toml).unwrap();
    assert_eq!(
        (c.no_data, c.rollback, c.failure_limit),
        (NoData::Fail, RollbackMode::Gradual, 2)
    );
    assert_eq!(
        c.checks[1],
        Check::RocAuc {
            max_decrease: 0.005,
            confidence: 0.95,
            min_labeled: 200
        }
    );
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(Promotion::from_json_str(&json).unwrap(), c);

    let bad = |text: &str, field: &str| {
        let e = Promotion::from_toml_str(text).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    };
    bad("steps = [10, 5, 100]", "steps[1]");
    bad("steps = [10, 50]", "steps[1]");
    bad("steps = [10.005, 100]", "steps[0]");
    bad("steps = []", "steps");
    // Straight to 100% would promote with no analysis; with a shadow phase it is analyzed.
    bad("steps = [100]", "steps[0]");
    let shadow_only = "steps = [100]\n[shadow]\npercent = 10\nbake_time_seconds = 60\nchecks = [{ kind = \"error_rate\" }]";
    assert!(Promotion::from_toml_str(shadow_only).is_ok());
    bad("bake_time_seconds = -1", "bake_time_seconds");
    bad("checks = []", "checks");
    bad("failure_limit = 0", "failure_limit");
    bad("inconclusive_limit = 0", "inconclusive_limit");
    bad(
        "[[checks]]\nkind = \"error_rate\"\nconfidence = 1.5",
        "checks[0].confidence",
    );
    bad(
        "[[checks]]\nkind = \"latency_p99\"\nfactor = 0.9",
        "checks[0].factor",
    );
    bad(
        "[[checks]]\nkind = \"roc_auc\"\nmin_labeled = 2",
        "checks[0].min_labeled",
    );
    bad("[[checks]]\nkind = \"nope\"", "nope");
    bad("stepz = [100]", "stepz");
    bad(
        "[shadow]\npercent = 10\nbake_time_seconds = 60\nchecks = [{ kind = \"roc_auc\" }]",
        "shadow.checks[0]",
    );
    bad(
        "[shadow]\npercent = 0\nbake_time_seconds = 60\nchecks = [{ kind = \"error_rate\" }]",
        "shadow.percent",
    );
    let e = Promotion::from_json_str("{\"steps\": [50, 40, 100]}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("steps[1]"), "{e}");
}

/// Issue 23: a policy built in code is checked before anything can use it. Rollouts,
/// controllers and replays take only the checked `Promotion`, so an empty, decreasing or
/// out-of-range list of steps is a named error from `PromotionConfig::check` (the field, its
/// value and what was expected), never an index into `steps`.
#[test]
fn a_policy_built_in_code_with_bad_steps_is_a_named_error_from_check() {
    use mlops_serve::policy::PromotionConfig;
    let with = |steps: Vec<f64>| PromotionConfig {
        steps,
        ..PromotionConfig::default()
    };
    for (steps, error) in [
        (
            vec![],
            "invalid steps = []: expected at least one step, the last 100",
        ),
        (
            vec![50.0, 40.0, 100.0],
            "invalid steps[1] = 40: expected a percent above the previous step's (50)",
        ),
        (vec![10.0, 150.0], "invalid steps[1] = 150: expected "),
        (
            vec![10.0, 50.0],
            "invalid steps[1] = 50: expected 100 (the last step is the promotion)",
        ),
    ] {
        let e = with(steps.clone()).check().unwrap_err();
        assert!(e.to_string().starts_with(error), "{steps:?}: {e}");
    }
    // A checked policy reads as its config and is what a rollout starts from.
    let ok = with(vec![20.0, 100.0]).check().unwrap();
    assert_eq!(
        (ok.steps.clone(), ok.config().steps.len()),
        (vec![20.0, 100.0], 2)
    );
    let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let state = mlops_serve::rollout::RolloutState::start("fraud", 1, 2, &ok, t0);
    assert_eq!(state.canary_percent, 20.0);
    // Stored JSON is checked on the way in too.
    let e = serde_json::from_str::<Promotion>(r#"{"steps": [10, 150]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid steps[1] = 150"), "{e}");
}

/// Issue 22 item 15: the error-rate check's significance boundary. Every failing case above
/// has p ≈ 0, so `p < 1 - confidence` could become `p < 1` unnoticed. Canary 3 errors in
/// 1,000 requests against stable 20 in 10,000: statsmodels'
/// `proportions_ztest([3, 20], [1000, 10000], alternative="larger")` gives
/// z = 0.6600709086257114 and one-sided p = 0.25460416319237456 (by hand: pooled rate
/// 23/11,000, standard error sqrt(p(1-p)(1/1,000 + 1/10,000)) = 0.0015150, z = 0.001/0.0015150,
/// p = 1 - Φ(z)). So it passes at confidence 0.95 (p > 0.05) and fails at 0.7 (p < 0.3).
#[test]
fn error_rate_fails_exactly_when_p_is_below_one_minus_confidence() {
    const Z: f64 = 0.660_070_908_625_711_4;
    const P: f64 = 0.254_604_163_192_374_56;
    let (canary, stable) = (
        variant("canary", 1000, 3, 2.0),
        variant("stable", 10_000, 20, 2.0),
    );
    let at = |confidence: f64| {
        Check::ErrorRate {
            max_increase: 0.0,
            confidence,
        }
        .evaluate(&canary, &stable, 100)
    };
    let default = at(0.95);
    assert!((default.statistic.unwrap() - Z).abs() < 1e-9, "{default:?}");
    assert!((default.p_value.unwrap() - P).abs() < 1e-9, "{default:?}");
    assert_eq!(default.outcome, Outcome::Pass, "{}", default.reason);
    let strict = at(0.7);
    assert!((strict.p_value.unwrap() - P).abs() < 1e-9);
    assert_eq!(strict.outcome, Outcome::Fail, "{}", strict.reason);
    assert!(strict.reason.contains("higher"), "{}", strict.reason);
    // Either side of p: 1 - confidence = 0.26 fails, 0.25 passes.
    assert_eq!(at(0.74).outcome, Outcome::Fail);
    assert_eq!(at(0.75).outcome, Outcome::Pass);
}

/// Steps the router cannot tell apart are refused by name: a first step of no bucket at all
/// (1e-300 % rounds to 0 of 10,000 buckets) and two steps in one bucket.
#[test]
fn steps_finer_than_one_routing_bucket_are_refused() {
    for (steps, field, says) in [
        ("[1e-300, 100]", "steps[0]", "routes no traffic"),
        (
            "[10, 10.000000001, 100]",
            "steps[1]",
            "closer than one routing bucket",
        ),
        (
            "[10, 99.999999999, 100]",
            "steps[2]",
            "closer than one routing bucket",
        ),
    ] {
        let e = Promotion::from_toml_str(&format!("steps = {steps}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(says), "{steps}: {e}");
    }
    assert!(Promotion::from_toml_str("steps = [0.01, 0.02, 100]").is_ok());
    let e = Promotion::from_toml_str(
        "steps = [100]\n[shadow]\npercent = 1e-300\nbake_time_seconds = 60\nchecks = [{ kind = \"error_rate\" }]",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("shadow.percent"), "{e}");
}
