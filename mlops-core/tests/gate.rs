//! Metric gates: absolute rules, champion-relative rules, confidence bounds, bad configs.

use mlops_core::gate::{GateDecision, GateRule, MetricGate, MetricValues};
use mlops_core::metrics::{ConfidenceInterval, Metric};

fn ci(estimate: f64, lower: f64, upper: f64) -> ConfidenceInterval {
    ConfidenceInterval {
        estimate,
        lower,
        upper,
        confidence: 0.95,
        resamples_used: 1000,
    }
}

#[test]
fn seed_gate_passes_and_fails_with_a_reason_per_rule() {
    let gate = MetricGate::default();
    gate.validate().unwrap();
    let good = MetricValues::new()
        .with(Metric::Accuracy, 0.9)
        .with(Metric::RocAuc, 0.95);
    let d = gate.evaluate(&good, None);
    assert!(d.passed);
    assert_eq!(d.results.len(), 2);
    assert!(d.results.iter().all(|r| r.passed && !r.reason.is_empty()));
    let bad = MetricValues::new()
        .with(Metric::Accuracy, 0.84)
        .with(Metric::RocAuc, 0.95);
    let d = gate.evaluate(&bad, None);
    assert!(!d.passed);
    let failure = d.failures().next().unwrap();
    assert_eq!(failure.observed, Some(0.84));
    assert_eq!(failure.required, Some(0.85));
    assert!(
        failure.reason.contains("accuracy") && failure.reason.contains("0.85"),
        "{}",
        failure.reason
    );
    // Exactly at the boundary: the seed's rule is "accuracy >= 0.85", so 0.85 passes, and the
    // largest float below it fails.
    let at = MetricValues::new()
        .with(Metric::Accuracy, 0.85)
        .with(Metric::RocAuc, 0.90);
    assert!(gate.evaluate(&at, None).passed);
    let below = MetricValues::new()
        .with(Metric::Accuracy, f64::from_bits(0.85_f64.to_bits() - 1))
        .with(Metric::RocAuc, 0.90);
    assert!(!gate.evaluate(&below, None).passed);
}

#[test]
fn missing_or_nan_metrics_fail_without_panicking() {
    let gate = MetricGate::default();
    let d = gate.evaluate(&MetricValues::new().with(Metric::RocAuc, f64::NAN), None);
    assert!(!d.passed);
    assert!(d.results[0].reason.contains("not provided"));
    assert!(d.results[1].reason.contains("not a finite number"));
}

#[test]
fn max_rules_bound_losses() {
    let gate = MetricGate {
        rules: vec![GateRule::Max {
            metric: Metric::LogLoss,
            value: 0.3,
        }],
        ..MetricGate::default()
    };
    gate.validate().unwrap();
    assert!(
        gate.evaluate(&MetricValues::new().with(Metric::LogLoss, 0.2), None)
            .passed
    );
    assert!(
        !gate
            .evaluate(&MetricValues::new().with(Metric::LogLoss, 0.31), None)
            .passed
    );
}

#[test]
fn champion_rules_use_tolerance_direction_and_bounds() {
    let rule = |use_confidence_bound| MetricGate {
        rules: vec![
            GateRule::Champion {
                metric: Metric::RocAuc,
                tolerance: 0.01,
                use_confidence_bound,
            },
            GateRule::Champion {
                metric: Metric::Brier,
                tolerance: 0.005,
                use_confidence_bound,
            },
        ],
        pass_without_champion: true,
    };
    let champion = MetricValues::new()
        .with(Metric::RocAuc, 0.95)
        .with(Metric::Brier, 0.05);
    // Slightly worse but within tolerance: passes on the estimate.
    let cand = MetricValues::new()
        .with_interval(Metric::RocAuc, ci(0.945, 0.92, 0.96))
        .with_interval(Metric::Brier, ci(0.054, 0.05, 0.058));
    let d = rule(false).evaluate(&cand, Some(&champion));
    assert!(d.passed, "{d:#?}");
    assert_eq!(d.results[0].required, Some(0.95 - 0.01));
    assert_eq!(d.results[1].required, Some(0.05 + 0.005));
    // On the pessimistic bounds (lower AUC 0.92 < 0.94; upper Brier 0.058 > 0.055) it fails.
    let d = rule(true).evaluate(&cand, Some(&champion));
    assert!(!d.results[0].passed && !d.results[1].passed, "{d:#?}");
    assert_eq!(d.results[0].observed, Some(0.92));
    assert_eq!(d.results[1].observed, Some(0.058));
    // Without an interval a bound rule fails and says why.
    let plain = MetricValues::new()
        .with(Metric::RocAuc, 0.99)
        .with(Metric::Brier, 0.01);
    let d = rule(true).evaluate(&plain, Some(&champion));
    assert!(d.results[0].reason.contains("no interval"));
    // No champion yet: skipped (passes) by default, fails when asked.
    let d = rule(false).evaluate(&cand, None);
    assert!(d.passed && d.results[0].reason.contains("skipped"));
    let strict = MetricGate {
        pass_without_champion: false,
        ..rule(false)
    };
    assert!(!strict.evaluate(&cand, None).passed);
}

#[test]
fn gate_config_round_trips_and_bad_values_are_named() {
    let json = r#"{"rules": [
        {"kind": "min", "metric": "accuracy", "value": 0.85},
        {"kind": "champion", "metric": "roc_auc", "tolerance": 0.01, "use_confidence_bound": true}
    ]}"#;
    let gate: MetricGate = serde_json::from_str(json).unwrap();
    gate.validate().unwrap();
    assert!(gate.pass_without_champion);
    let back: MetricGate = serde_json::from_str(&serde_json::to_string(&gate).unwrap()).unwrap();
    assert_eq!(back, gate);
    let err = serde_json::from_str::<MetricGate>(
        r#"{"rules":[{"kind":"min","metric":"acuracy","value":1}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("acuracy"), "{err}");
    let bad = MetricGate {
        rules: vec![GateRule::Min {
            metric: Metric::RocAuc,
            value: 1.2,
        }],
        ..MetricGate::default()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(
        err.contains("rules[0].value") && err.contains("1.2"),
        "{err}"
    );
    let bad = MetricGate {
        rules: vec![GateRule::Champion {
            metric: Metric::RocAuc,
            tolerance: -0.1,
            use_confidence_bound: false,
        }],
        ..MetricGate::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("tolerance"));
}

#[test]
fn decisions_and_metric_reports_print_readably_and_round_trip_through_json() {
    use mlops_core::metrics::{MetricReport, ScoredSamples};
    let gate = MetricGate::default();
    let bad = MetricValues::new()
        .with(Metric::Accuracy, 0.84)
        .with(Metric::RocAuc, 0.95);
    let d = gate.evaluate(&bad, None);
    let text = d.to_string();
    assert!(text.starts_with("gate FAILED (1 of 2 rules)"), "{text}");
    assert!(text.contains("FAIL") && text.contains("0.85"), "{text}");
    assert_eq!(GateDecision::from_json(&d.to_json().unwrap()).unwrap(), d);
    assert_eq!(
        MetricGate::from_json(&gate.to_json().unwrap()).unwrap(),
        gate
    );
    let samples = ScoredSamples::new(&[0.0, 1.0, 1.0, 0.0], &[0.2, 0.9, 0.4, 0.6], None).unwrap();
    let report = samples.report(0.5).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("roc_auc") && text.contains("confusion"),
        "{text}"
    );
    assert_eq!(
        MetricReport::from_json(&report.to_json().unwrap()).unwrap(),
        report
    );
}
