//! A promotion policy's operating characteristics (`rollout_sim`): the library's own decision
//! path on simulated statistics with a known truth. An identical candidate with ample labels
//! is mostly promoted and a much worse one always rolled back; labels an hour late never reach
//! today's per-window checks ("inconclusive: roc_auc"), and a join too small for what waits
//! samples (fewer labels, later decisions); error and latency regressions fail their checks; a shadow phase runs on mirrored
//! traffic; a report is the same for a seed; every bad scenario is refused by field.

use mlops_serve::analysis::Check;
use mlops_serve::policy::{Promotion, PromotionConfig, Sequential, ShadowPhase};
use mlops_serve::rollout_sim::{operating_characteristics, simulate_one, Scenario, SimOutcome};
use mlops_serve::step_stats::StatsConfig;

/// 50 requests/s, balanced classes, labels 10 s late: the low-traffic case.
fn low_traffic() -> Scenario {
    Scenario {
        requests_per_second: 50.0,
        positive_rate: 0.5,
        label_delay_seconds: 10.0,
        ..Scenario::default()
    }
}

/// The per-window analysis (`sequential = false`), the default before issue 25: these tests
/// measure its characteristics, the baseline (the always-valid default's are in
/// tests/rollout_sequential.rs).
fn per_window_config() -> PromotionConfig {
    PromotionConfig {
        sequential: None,
        ..PromotionConfig::default()
    }
}

fn per_window() -> Promotion {
    per_window_config().check().unwrap()
}

fn policy(checks: Vec<Check>) -> Promotion {
    PromotionConfig {
        checks,
        ..per_window_config()
    }
    .check()
    .unwrap()
}

#[test]
fn an_identical_candidate_is_mostly_promoted_and_a_much_worse_one_always_rolled_back() {
    let stats = StatsConfig::default();
    let same = operating_characteristics(&per_window(), &stats, &low_traffic(), 200, 1).unwrap();
    assert_eq!(same.promoted + same.rolled_back + same.undecided, 200);
    // About three in four (the default policy's inconclusive limit costs the rest).
    assert!(same.promoted_share.share > 0.5, "{same:?}");
    assert!(same.promoted_share.low < same.promoted_share.share);
    assert!(same.promoted_share.share < same.promoted_share.high);
    let median = same.median_seconds_to_decision.unwrap();
    // Five steps of ten minutes at least, unless rolled back first.
    assert!(median >= 600.0, "{median}");
    let worse = Scenario {
        auc_delta: -0.08,
        ..low_traffic()
    };
    let r = operating_characteristics(&per_window(), &stats, &worse, 200, 1).unwrap();
    assert_eq!(r.rolled_back, 200, "{r:?}");
    assert!(
        r.why.get("failed: roc_auc").copied().unwrap_or(0) > 150,
        "{:?}",
        r.why
    );
}

#[test]
fn labels_an_hour_late_miss_per_window_checks_and_a_small_join_samples() {
    // 547 requests/s with labels an hour late, today's per-window policy: no label comes
    // within its first three analyses; the third inconclusive one rolls back at 30 min.
    let stats = StatsConfig::default();
    let one = simulate_one(&per_window(), &stats, &Scenario::default(), 3).unwrap();
    assert_eq!(one.outcome, SimOutcome::RolledBack);
    assert_eq!(one.why, "inconclusive: roc_auc");
    assert_eq!(one.analyses, 3);
    assert!((one.seconds - 1_800.0).abs() < 1.0, "{}", one.seconds);
    assert!(
        one.reason.contains("inconclusive_limit 3"),
        "{}",
        one.reason
    );
    // The same labels, 10 s late, do join: the candidate is judged on them.
    let prompt = Scenario {
        label_delay_seconds: 10.0,
        positive_rate: 0.3,
        ..Scenario::default()
    };
    let r = simulate_one(&per_window(), &stats, &prompt, 3).unwrap();
    assert_ne!(r.why, "inconclusive: roc_auc", "{r:?}");
    // A join that holds a fraction of what waits keeps a uniform sample of requests: labels
    // still join, fewer of them, and the always-valid policy needs longer to decide. 50/s with
    // labels 10 s late is 500 waiting; a join of 40 keeps 0.75^9 = 7.5% of them.
    let sequential = PromotionConfig {
        sequential: Some(Sequential::default()),
        ..per_window_config()
    }
    .check()
    .unwrap();
    let small = StatsConfig {
        label_join_capacity: 40,
        ..StatsConfig::default()
    };
    let whole = operating_characteristics(&sequential, &stats, &low_traffic(), 60, 5).unwrap();
    let sampled = operating_characteristics(&sequential, &small, &low_traffic(), 60, 5).unwrap();
    assert!(whole.promoted >= 55, "{whole:?}");
    assert!(sampled.promoted < whole.promoted, "{sampled:?}");
    let (w, s) = (
        whole.median_seconds_to_decision.unwrap(),
        sampled.median_seconds_to_decision.unwrap(),
    );
    assert!(s > 2.0 * w, "sampled {s} s, whole {w} s");
    // The same bound in bytes: 40 requests' worth.
    let small_bytes = StatsConfig {
        label_join_bytes: 40 * 240,
        ..StatsConfig::default()
    };
    let by_bytes =
        operating_characteristics(&sequential, &small_bytes, &low_traffic(), 60, 5).unwrap();
    assert_eq!(by_bytes.promoted, sampled.promoted, "{by_bytes:?}");
    // Labels past their time-to-live never join either.
    let short = StatsConfig {
        label_ttl_seconds: 5.0,
        ..StatsConfig::default()
    };
    let r = simulate_one(&per_window(), &short, &prompt, 3).unwrap();
    assert_eq!(r.why, "inconclusive: roc_auc", "{r:?}");
    // Without a check that needs labels, the identical candidate goes through.
    let label_free = policy(vec![
        Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.95,
        },
        Check::LatencyP99 {
            factor: 1.1,
            slack_ms: 0.0,
        },
    ]);
    let r = operating_characteristics(&label_free, &stats, &Scenario::default(), 50, 3).unwrap();
    assert_eq!(r.promoted, 50, "{r:?}");
    // Four analyses of 600 s (10, 25, 50 and 75%; passing 75% promotes).
    assert_eq!(r.median_seconds_to_decision.map(f64::round), Some(2_400.0));
}

#[test]
fn error_and_latency_regressions_fail_their_checks() {
    let stats = StatsConfig::default();
    let erring = Scenario {
        stable_error_rate: 0.01,
        error_rate_delta: 0.02,
        ..low_traffic()
    };
    let r = operating_characteristics(&per_window(), &stats, &erring, 100, 2).unwrap();
    assert_eq!(r.rolled_back, 100, "{r:?}");
    assert_eq!(r.why.get("failed: error_rate"), Some(&100), "{:?}", r.why);
    let slow = Scenario {
        latency_factor: 1.5,
        ..low_traffic()
    };
    let r = operating_characteristics(&per_window(), &stats, &slow, 100, 2).unwrap();
    assert_eq!(r.why.get("failed: latency_p99"), Some(&100), "{:?}", r.why);
    // Equal error rates on both sides (1%): today's check tests again at 5% at every
    // analysis, so an identical candidate fails it in about one run in five over the four
    // looks (1 − 0.95⁴ ≈ 19%). The baseline the always-valid checks are to beat.
    let both = Scenario {
        stable_error_rate: 0.01,
        ..low_traffic()
    };
    let r = operating_characteristics(&per_window(), &stats, &both, 400, 2).unwrap();
    let false_failures = r.why.get("failed: error_rate").copied().unwrap_or(0);
    assert!((20..=160).contains(&false_failures), "{:?}", r.why);
}

#[test]
fn a_shadow_phase_runs_on_mirrored_traffic() {
    let with_shadow = |min: f64| {
        PromotionConfig {
            shadow: Some(ShadowPhase {
                percent: 50.0,
                bake_time_seconds: 300.0,
                checks: vec![Check::ShadowAgreement {
                    min_agreement: min,
                    confidence: 0.95,
                }],
            }),
            ..per_window_config()
        }
        .check()
        .unwrap()
    };
    let stats = StatsConfig::default();
    let disagreeing = Scenario {
        agreement: 0.6,
        ..low_traffic()
    };
    let r = simulate_one(&with_shadow(0.9), &stats, &disagreeing, 4).unwrap();
    assert_eq!(r.outcome, SimOutcome::RolledBack, "{r:?}");
    assert_eq!(r.why, "failed: shadow_agreement");
    assert!((r.seconds - 300.0).abs() < 1.0, "{}", r.seconds);
    // Agreeing, it leaves the shadow phase and goes on to the steps: 300 s + 4 × 600 s.
    let label_free = PromotionConfig {
        checks: vec![Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.95,
        }],
        ..with_shadow(0.9).into_config()
    }
    .check()
    .unwrap();
    let r = simulate_one(&label_free, &stats, &low_traffic(), 4).unwrap();
    assert_eq!(r.outcome, SimOutcome::Promoted, "{r:?}");
    assert_eq!(r.analyses, 5);
    assert!((r.seconds - 2_700.0).abs() < 1.0, "{}", r.seconds);
}

#[test]
fn a_report_is_the_same_for_a_seed_and_not_across_seeds() {
    let stats = StatsConfig::default();
    let p = per_window();
    let a = operating_characteristics(&p, &stats, &low_traffic(), 60, 11).unwrap();
    let b = operating_characteristics(&p, &stats, &low_traffic(), 60, 11).unwrap();
    assert_eq!(a, b);
    let runs: Vec<_> = (0..8)
        .map(|seed| {
            simulate_one(&p, &stats, &low_traffic(), seed)
                .unwrap()
                .seconds
        })
        .collect();
    assert!(runs.iter().any(|&s| s != runs[0]), "{runs:?}");
}

#[test]
fn an_unfinished_rollout_is_undecided_not_promoted() {
    let short = Scenario {
        max_seconds: 1_000.0,
        ..low_traffic()
    };
    let r =
        operating_characteristics(&per_window(), &StatsConfig::default(), &short, 20, 5).unwrap();
    // Four analyses of 600 s cannot finish in 1,000 s.
    assert_eq!(r.promoted, 0, "{r:?}");
    assert_eq!(r.undecided + r.rolled_back, 20);
    assert!(r.undecided > 0, "{r:?}");
}

#[test]
fn bad_scenarios_and_run_counts_are_refused_by_field() {
    let p = per_window();
    let stats = StatsConfig::default();
    let cases: Vec<(Scenario, &str)> = vec![
        (
            Scenario {
                requests_per_second: 0.0,
                ..Scenario::default()
            },
            "requests_per_second",
        ),
        (
            Scenario {
                requests_per_second: f64::NAN,
                ..Scenario::default()
            },
            "requests_per_second",
        ),
        (
            Scenario {
                requests_per_second: 2e6,
                ..Scenario::default()
            },
            "requests_per_second",
        ),
        (
            Scenario {
                positive_rate: 0.0,
                ..Scenario::default()
            },
            "positive_rate",
        ),
        (
            Scenario {
                positive_rate: 1.0,
                ..Scenario::default()
            },
            "positive_rate",
        ),
        (
            Scenario {
                labeled_share: 1.5,
                ..Scenario::default()
            },
            "labeled_share",
        ),
        (
            Scenario {
                label_delay_seconds: -1.0,
                ..Scenario::default()
            },
            "label_delay_seconds",
        ),
        (
            Scenario {
                label_delay_seconds: f64::INFINITY,
                ..Scenario::default()
            },
            "label_delay_seconds",
        ),
        (
            Scenario {
                stable_auc: 1.0,
                ..Scenario::default()
            },
            "stable_auc",
        ),
        (
            Scenario {
                auc_delta: 0.2,
                ..Scenario::default()
            },
            "auc_delta",
        ),
        (
            Scenario {
                stable_error_rate: -0.1,
                ..Scenario::default()
            },
            "stable_error_rate",
        ),
        (
            Scenario {
                error_rate_delta: 1.0,
                stable_error_rate: 0.5,
                ..Scenario::default()
            },
            "error_rate_delta",
        ),
        (
            Scenario {
                stable_latency_ms: 0.0,
                ..Scenario::default()
            },
            "stable_latency_ms",
        ),
        (
            Scenario {
                latency_sigma: 9.0,
                ..Scenario::default()
            },
            "latency_sigma",
        ),
        (
            Scenario {
                latency_factor: 0.0,
                ..Scenario::default()
            },
            "latency_factor",
        ),
        (
            Scenario {
                agreement: -0.5,
                ..Scenario::default()
            },
            "agreement",
        ),
        (
            Scenario {
                max_seconds: 0.0,
                ..Scenario::default()
            },
            "max_seconds",
        ),
        // 10,000 bake times of 600 s at most: about 69 days.
        (
            Scenario {
                max_seconds: 300.0 * 86_400.0,
                ..Scenario::default()
            },
            "max_seconds",
        ),
    ];
    for (scenario, field) in cases {
        let e = simulate_one(&p, &stats, &scenario, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
        let e = operating_characteristics(&p, &stats, &scenario, 3, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    let e = operating_characteristics(&p, &stats, &Scenario::default(), 0, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs"), "{e}");
    let e = operating_characteristics(&p, &stats, &Scenario::default(), 2_000_000, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs"), "{e}");
    let bad_stats = StatsConfig {
        labeled_capacity: 0,
        ..StatsConfig::default()
    };
    let e = simulate_one(&p, &bad_stats, &Scenario::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("labeled_capacity"), "{e}");
    // A router's bounds, not a host's memory: a reservoir of 10^12 is refused, not allocated.
    for stats in [
        StatsConfig {
            score_reservoir: 1_000_000_000_000,
            ..StatsConfig::default()
        },
        StatsConfig {
            labeled_capacity: usize::MAX,
            ..StatsConfig::default()
        },
    ] {
        let e = simulate_one(&p, &stats, &Scenario::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 10000000 in a simulation"), "{e}");
    }
}

/// The prediction sample is drawn when a check reads it: identical score distributions pass
/// a prediction-drift check, a candidate whose scores separate the classes far better fails it.
#[test]
fn a_prediction_drift_check_reads_the_drawn_scores() {
    let drift = policy(vec![Check::PredictionDrift {
        max_statistic: 0.1,
        confidence: 0.95,
    }]);
    let stats = StatsConfig::default();
    let same = operating_characteristics(&drift, &stats, &low_traffic(), 20, 4).unwrap();
    assert!(same.promoted >= 18, "{same:?}");
    let sharper = Scenario {
        auc_delta: 0.14,
        ..low_traffic()
    };
    let r = operating_characteristics(&drift, &stats, &sharper, 20, 4).unwrap();
    assert_eq!(r.why.get("failed: prediction_drift"), Some(&20), "{r:?}");
}
