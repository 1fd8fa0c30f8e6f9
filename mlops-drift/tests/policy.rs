//! The drift policy: minimum samples, cooldown on an injected clock, the retrain trigger, and
//! Prometheus metrics checked by promtool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlops_core::clock::ManualClock;
use mlops_core::Dataset;
use mlops_drift::{
    CheckedDriftConfig, DriftAction, DriftConfig, DriftMetrics, DriftPolicy, DriftPolicyConfig,
    DriftReport, DriftTest, ProfileConfig, ReferenceProfile, RetrainTrigger,
};
use ndarray::Array2;
use prometheus_client::registry::Registry;

fn data(rows: usize, shift: f32) -> Dataset {
    Dataset::new(
        Array2::from_shape_fn((rows, 3), |(i, j)| ((i * (3 + j)) % 97) as f32 + shift),
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap()
}

fn report(rows: usize, shift: f32) -> DriftReport {
    let profile = ReferenceProfile::fit(&data(2000, 0.0), &ProfileConfig::default()).unwrap();
    profile
        .compare(&data(rows, shift), &CheckedDriftConfig::default())
        .unwrap()
}

#[derive(Default)]
struct CountingTrigger {
    calls: AtomicUsize,
    fail: bool,
}

#[async_trait::async_trait]
impl RetrainTrigger for CountingTrigger {
    async fn retrain(
        &self,
        _model: &str,
        _report: &DriftReport,
        _reason: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err("pipeline service unavailable".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn retrain_then_cooldown_then_retrain_again() {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let policy = DriftPolicy::new(
        DriftPolicyConfig {
            min_samples: 500,
            cooldown_seconds: 3600.0,
            performance: None,
        },
        clock.clone(),
    );
    let trigger = CountingTrigger::default();
    let drifted = report(1000, 40.0);
    assert!(drifted.dataset.drifted);
    let d = policy.apply("fraud", &drifted, &trigger).await.unwrap();
    assert_eq!(d.action, DriftAction::Retrain);
    assert_eq!(trigger.calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1800));
    let d = policy.apply("fraud", &drifted, &trigger).await.unwrap();
    assert_eq!(d.action, DriftAction::Warn, "{}", d.reason);
    assert!(d.reason.contains("cooldown"));
    assert_eq!(trigger.calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1801));
    assert_eq!(
        policy
            .apply("fraud", &drifted, &trigger)
            .await
            .unwrap()
            .action,
        DriftAction::Retrain
    );
    assert_eq!(trigger.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn too_few_samples_and_no_drift_do_nothing_and_failing_triggers_are_errors() {
    let policy = DriftPolicy::with_system_clock(DriftPolicyConfig::default());
    let trigger = CountingTrigger::default();
    let small = report(100, 40.0);
    let d = policy.apply("fraud", &small, &trigger).await.unwrap();
    assert_eq!(d.action, DriftAction::None);
    assert!(d.reason.contains("min_samples"));
    assert_eq!(policy.decide(&report(1000, 0.0)).action, DriftAction::None);
    let failing = CountingTrigger {
        fail: true,
        ..CountingTrigger::default()
    };
    let err = policy
        .apply("fraud", &report(1000, 40.0), &failing)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("pipeline service unavailable"),
        "{err}"
    );
    // No cooldown started: the next check retries.
    assert_eq!(
        policy.decide(&report(1000, 40.0)).action,
        DriftAction::Retrain
    );
}

#[test]
fn a_column_the_monitor_cannot_test_is_a_warning_not_silence() {
    let policy = DriftPolicy::with_system_clock(DriftPolicyConfig::default());
    let profile = ReferenceProfile::fit(&data(2000, 0.0), &ProfileConfig::default()).unwrap();
    // Column `c` is gone from the live data: whatever the batch size, say so.
    for rows in [10, 1000] {
        let current = data(rows, 0.0).drop_features(&["c"]).unwrap();
        let report = profile
            .compare(&current, &CheckedDriftConfig::default())
            .unwrap();
        let d = policy.decide(&report);
        assert_eq!(d.action, DriftAction::Warn, "{rows} rows: {}", d.reason);
        assert!(d.reason.contains("cannot be tested: c"), "{}", d.reason);
    }
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let mut registry = Registry::default();
    let metrics = DriftMetrics::register(&mut registry);
    let policy = DriftPolicy::with_system_clock(DriftPolicyConfig::default()).with_metrics(metrics);
    policy
        .apply("fraud", &report(1000, 40.0), &CountingTrigger::default())
        .await
        .unwrap();
    policy
        .apply("fraud", &report(1000, 0.0), &CountingTrigger::default())
        .await
        .unwrap();
    // Then `c` goes missing from the live data: its score is unknown (NaN), not the last one.
    // A shift of the rest small enough that Holm's adjusted p-values differ from the raw ones
    // and the gauges must show the adjusted.
    // A fourth column `d`, so that two p-values make Holm's family.
    let with_d = |rows: usize, shift: f32| {
        Dataset::new(
            Array2::from_shape_fn((rows, 4), |(i, j)| ((i * (3 + j)) % 97) as f32 + shift),
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
        )
        .unwrap()
    };
    let profile = ReferenceProfile::fit(&with_d(2000, 0.0), &ProfileConfig::default()).unwrap();
    let without_c = profile
        .compare(
            &with_d(500, 6.0).drop_features(&["c"]).unwrap(),
            &DriftConfig {
                tests: vec![DriftTest::Ks],
                // `b` decided by a distance: no p-value, so its gauge must say NaN.
                column_tests: [("b".to_string(), vec![DriftTest::Wasserstein])].into(),
                ..DriftConfig::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap();
    policy
        .apply("fraud", &without_c, &CountingTrigger::default())
        .await
        .unwrap();
    let text = mlops_core::exposition::classic_text(&registry).unwrap();
    assert!(
        text.contains(r#"mlops_drift_score{model="fraud",feature="a"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mlops_drift_alerts_total{model="fraud",action="Retrain"} 1"#),
        "{text}"
    );
    // The values are the last report's: each tested feature's statistic and adjusted p-value,
    // and the dataset share.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
    };
    let adjusted_differs = without_c.columns.iter().any(|c| {
        c.tests.first().is_some_and(|t| {
            t.adjusted_p_value
                .is_some_and(|a| t.p_value.is_some_and(|p| a != p && a < 1.0))
        })
    });
    let distance_only = without_c
        .columns
        .iter()
        .any(|c| c.tests.first().is_some_and(|t| t.p_value.is_none()));
    assert!(adjusted_differs && distance_only, "{without_c:#?}");
    for c in without_c.columns.iter().filter(|c| c.column != "c") {
        let t = &c.tests[0];
        let labels = format!(r#"{{model="fraud",feature="{}"}}"#, c.column);
        assert_eq!(value(&format!("mlops_drift_score{labels}")), t.statistic);
        // A distance test has no p-value: the gauge says NaN (unknown), not 0 or 1.
        let p = value(&format!("mlops_drift_pvalue{labels}"));
        match t.adjusted_p_value.or(t.p_value) {
            Some(expected) => assert_eq!(p, expected),
            None => assert!(p.is_nan(), "{labels}: {p}"),
        }
    }
    assert_eq!(
        value(r#"mlops_drift_dataset_share{model="fraud"}"#),
        without_c.dataset.share_rule.observed
    );
    assert!(
        text.contains(r#"mlops_drift_score{model="fraud",feature="c"} NaN"#)
            && text.contains(r#"mlops_drift_feature_tested{model="fraud",feature="c"} 0"#)
            && text.contains(r#"mlops_drift_feature_tested{model="fraud",feature="a"} 1"#),
        "{text}"
    );
    // The library's classic exposition (counters' HELP/TYPE under `_total`, no `# EOF`).
    assert!(
        text.contains("# TYPE mlops_drift_alerts_total counter"),
        "{text}"
    );
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running `{promtool} check metrics` ({e}); scripts/test.sh installs Debian's prometheus, or set PROMTOOL"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cooldown past what `SystemTime` holds: the policy keeps warning (the cooldown never
/// ends) instead of panicking on `SystemTime + Duration`, and a monitor refuses the config by
/// name.
#[tokio::test]
async fn a_cooldown_longer_than_time_holds_is_an_error_never_a_panic() {
    let config = DriftPolicyConfig {
        min_samples: 500,
        cooldown_seconds: u64::MAX as f64,
        performance: None,
    };
    let e = config.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("invalid DriftPolicyConfig.cooldown_seconds = 1.8446744073709552e19"),
        "{e}"
    );
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    ));
    let policy = DriftPolicy::new(config, clock.clone());
    let trigger = CountingTrigger::default();
    let drifted = report(1000, 40.0);
    let d = policy.apply("fraud", &drifted, &trigger).await.unwrap();
    assert_eq!(d.action, DriftAction::Retrain);
    let d = policy.apply("fraud", &drifted, &trigger).await.unwrap();
    assert_eq!(d.action, DriftAction::Warn, "{}", d.reason);
    assert_eq!(trigger.calls.load(Ordering::SeqCst), 1);
    let profile = ReferenceProfile::fit(&data(2000, 0.0), &ProfileConfig::default()).unwrap();
    let e = mlops_drift::DriftMonitor::new(
        "fraud",
        profile,
        CheckedDriftConfig::default(),
        policy,
        mlops_drift::MonitorConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("DriftPolicyConfig.cooldown_seconds"), "{e}");
}
