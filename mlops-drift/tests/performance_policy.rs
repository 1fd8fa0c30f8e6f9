//! The drift policy's rule on estimated performance (CBPE): an estimate below the gate is a
//! retrain reason of its own; in `when_at_risk` mode drift acts only when the model is at risk
//! (the estimate below the gate, fallen from the reference, over too few rows, without a band,
//! or unknown), and a column the monitor cannot test still warns; the monitor estimates each
//! window from the model's scores and says why when it cannot; the gauges say NaN for
//! unknown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlops_core::cbpe::{Cbpe, CbpeCalibration, Estimated, PerformanceEstimate};
use mlops_core::clock::ManualClock;
use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
use mlops_core::Dataset;
use mlops_drift::{
    CheckedDriftConfig, DriftAction, DriftMetrics, DriftMode, DriftMonitor, DriftPolicy,
    DriftPolicyConfig, DriftReport, EstimatedMetric, Estimator, MonitorConfig, PerformanceRule,
    ProfileConfig, ReferenceProfile, RetrainTrigger, WindowEstimate,
};
use ndarray::{array, Array1, Array2};
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

fn estimate(rows: usize, auc: Option<f64>, se: f64) -> PerformanceEstimate {
    let e = Estimated {
        value: auc,
        sampling_error: Some(se),
        lower: auc.map(|v| v - 3.0 * se),
        upper: auc.map(|v| v + 3.0 * se),
        reference: Some(0.95),
    };
    PerformanceEstimate {
        rows,
        roc_auc: e,
        accuracy: e,
        precision: e,
        recall: e,
        f1: e,
        true_positive: Estimated::default(),
        false_positive: Estimated::default(),
        false_negative: Estimated::default(),
        true_negative: Estimated::default(),
    }
}

fn policy(mode: DriftMode) -> DriftPolicy {
    DriftPolicy::new(
        DriftPolicyConfig {
            min_samples: 500,
            cooldown_seconds: 3600.0,
            performance: Some(PerformanceRule {
                metric: EstimatedMetric::RocAuc,
                min: 0.9,
                mode,
            }),
        },
        Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )),
    )
}

struct Nothing;

#[async_trait::async_trait]
impl RetrainTrigger for Nothing {
    async fn retrain(
        &self,
        _: &str,
        _: &DriftReport,
        _: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

#[test]
fn an_estimate_below_the_gate_retrains_without_drift() {
    let quiet = report(1000, 0.0);
    assert!(!quiet.dataset.drifted);
    for mode in [DriftMode::Always, DriftMode::WhenAtRisk] {
        let p = policy(mode);
        let d = p.decide_with(&quiet, Some(&estimate(1000, Some(0.82), 0.01)));
        assert_eq!(d.action, DriftAction::Retrain, "{mode:?}: {}", d.reason);
        assert!(
            d.reason.starts_with(
                "estimated roc_auc 0.8200 (band 0.7900..0.8500; 0.9500 on the reference) over 1000 rows is below the gate's 0.9 (its whole band)"
            ),
            "{}",
            d.reason
        );
        // Too few rows to act on alone: watched (a warning), not retrained on.
        let d = p.decide_with(&quiet, Some(&estimate(100, Some(0.82), 0.01)));
        assert_eq!(d.action, DriftAction::Warn, "{}", d.reason);
        assert!(
            d.reason.contains("fewer rows than min_samples 500"),
            "{}",
            d.reason
        );
        // Above the gate, no drift: nothing.
        let d = p.decide_with(&quiet, Some(&estimate(1000, Some(0.97), 0.01)));
        assert_eq!(d.action, DriftAction::None, "{}", d.reason);
    }
    // Below the gate with a band reaching above it: `always` retrains on the estimate,
    // `when_at_risk` warns and waits for its whole band (or for drift).
    let wide = estimate(1000, Some(0.85), 0.03);
    let d = policy(DriftMode::Always).decide_with(&quiet, Some(&wide));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    let d = policy(DriftMode::WhenAtRisk).decide_with(&quiet, Some(&wide));
    assert_eq!(d.action, DriftAction::Warn, "{}", d.reason);
    assert!(
        d.reason.ends_with("is below the gate's 0.9: watching"),
        "{}",
        d.reason
    );
    let d = policy(DriftMode::WhenAtRisk).decide_with(&report(1000, 40.0), Some(&wide));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
}

#[tokio::test]
async fn the_cooldown_holds_for_the_estimate_too() {
    let p = policy(DriftMode::Always);
    let quiet = report(1000, 0.0);
    let low = estimate(1000, Some(0.82), 0.01);
    let first = p
        .apply_with("fraud", &quiet, WindowEstimate::Known(&low), &Nothing)
        .await
        .unwrap();
    assert_eq!(first.action, DriftAction::Retrain);
    let second = p.decide_with(&quiet, Some(&low));
    assert_eq!(second.action, DriftAction::Warn, "{}", second.reason);
    assert!(second.reason.contains("cooldown"), "{}", second.reason);
}

#[test]
fn when_at_risk_drift_acts_only_when_the_model_is_at_risk() {
    let p = policy(DriftMode::WhenAtRisk);
    let drifted = report(1000, 40.0);
    assert!(drifted.dataset.drifted);
    // Above the gate and within reach of the reference (0.95): drift is recorded, not acted
    // on; a wide band that reaches below the gate is no reason either.
    for holds in [
        estimate(1000, Some(0.97), 0.01),
        estimate(1000, Some(0.91), 0.03),
    ] {
        let d = p.decide_with(&drifted, Some(&holds));
        assert_eq!(d.action, DriftAction::None, "{}", d.reason);
        assert!(
            d.reason
                .starts_with("dataset drifted: 3/3 columns, but estimated roc_auc"),
            "{}",
            d.reason
        );
        assert!(
            d.reason
                .ends_with("its band reaching the reference: not acting"),
            "{}",
            d.reason
        );
    }
    // Fallen from the reference (whole band below 0.95) while above the gate: at risk.
    let d = p.decide_with(&drifted, Some(&estimate(1000, Some(0.92), 0.005)));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    assert!(d.reason.contains("fell from the reference"), "{}", d.reason);
    // Unknown is never "fine": no estimator, or no value, and drift acts.
    for unknown in [None, Some(estimate(1000, None, 0.01))] {
        let d = p.decide_with(&drifted, unknown.as_ref());
        assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
        assert!(d.reason.contains("unknown"), "{}", d.reason);
    }
    // An estimate with no band (no sampling error) is at risk, not safe.
    let mut no_band = estimate(1000, Some(0.97), 0.01);
    no_band.roc_auc.lower = None;
    no_band.roc_auc.upper = None;
    let d = p.decide_with(&drifted, Some(&no_band));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    assert!(d.reason.contains("no band"), "{}", d.reason);
    // `always` keeps acting on drift with the same safe estimate.
    let always = policy(DriftMode::Always);
    let d = always.decide_with(&drifted, Some(&estimate(1000, Some(0.97), 0.01)));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    // A column the monitor cannot test stays a warning whatever the estimate says, with
    // drift or without.
    let profile = ReferenceProfile::fit(&data(2000, 0.0), &ProfileConfig::default()).unwrap();
    for shift in [0.0, 40.0] {
        let blind = profile
            .compare(
                &data(1000, shift).drop_features(&["c"]).unwrap(),
                &CheckedDriftConfig::default(),
            )
            .unwrap();
        let d = p.decide_with(&blind, Some(&estimate(1000, Some(0.97), 0.01)));
        assert_eq!(d.action, DriftAction::Warn, "shift {shift}: {}", d.reason);
        assert!(d.reason.contains("cannot be tested: c"), "{}", d.reason);
    }
    // Without a reference to compare with, "not fallen" cannot be said: drift acts.
    let mut no_reference = estimate(1000, Some(0.97), 0.01);
    no_reference.roc_auc.reference = None;
    let d = p.decide_with(&drifted, Some(&no_reference));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    assert!(d.reason.contains("no reference"), "{}", d.reason);
    // An estimate over a handful of rows (the rest scored NaN) cannot veto drift.
    let d = p.decide_with(&drifted, Some(&estimate(3, Some(0.93), 0.01)));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    assert!(
        d.reason.contains("fewer rows than min_samples"),
        "{}",
        d.reason
    );
    // An estimator that failed says why, and with enough rows and no drift is a warning.
    let d = p.decide_estimated(
        &report(1000, 0.0),
        WindowEstimate::Unknown("column `a` not found"),
    );
    assert_eq!(d.action, DriftAction::Warn, "{}", d.reason);
    assert!(
        d.reason
            .contains("estimated roc_auc unknown (column `a` not found)"),
        "{}",
        d.reason
    );
    // A floor that is not a number judges nothing and vetoes nothing.
    let nan_floor = DriftPolicy::new(
        DriftPolicyConfig {
            performance: Some(PerformanceRule {
                metric: EstimatedMetric::RocAuc,
                min: f64::NAN,
                mode: DriftMode::WhenAtRisk,
            }),
            ..DriftPolicyConfig::default()
        },
        Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)),
    );
    let d = nan_floor.decide_with(&drifted, Some(&estimate(1000, Some(0.97), 0.01)));
    assert_eq!(d.action, DriftAction::Retrain, "{}", d.reason);
    assert!(d.reason.contains("not in [0, 1]"), "{}", d.reason);
}

#[test]
fn the_rule_is_checked_and_loads_from_json() {
    let config: DriftPolicyConfig = serde_json::from_str(
        r#"{"min_samples": 100, "performance": {"min": 0.85, "mode": "when_at_risk"}}"#,
    )
    .unwrap();
    let rule = config.performance.unwrap();
    assert_eq!(rule.metric, EstimatedMetric::RocAuc);
    assert_eq!(rule.mode, DriftMode::WhenAtRisk);
    config.validate().unwrap();
    // Without the rule, old configs load as before.
    let old: DriftPolicyConfig = serde_json::from_str(r#"{"cooldown_secs": 60}"#).unwrap();
    assert_eq!(old.performance, None);
    for bad in [1.5, -0.1, f64::NAN] {
        let c = DriftPolicyConfig {
            performance: Some(PerformanceRule {
                metric: EstimatedMetric::F1,
                min: bad,
                mode: DriftMode::Always,
            }),
            ..DriftPolicyConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("DriftPolicyConfig.performance.min"), "{e}");
    }
    assert!(serde_json::from_str::<DriftPolicyConfig>(
        r#"{"performance": {"min": 0.9, "mode": "sometimes"}}"#
    )
    .is_err());
}

/// p = sigmoid(w · a) on column `a` of [`data`]: a model whose scores move with the data.
fn model(w: f32, bias: f32) -> Arc<MlpModel> {
    let mut spec = ModelSpec::new(
        vec!["a".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    spec.threshold = 0.5;
    let artifact = ModelArtifact::new(spec, vec![(array![[w]], array![bias])]).unwrap();
    Arc::new(MlpModel::new(&artifact).unwrap())
}

#[tokio::test]
async fn the_monitor_estimates_each_window_and_exports_it() {
    let m = model(0.1, -4.8);
    // The reference: labels drawn from the model's own probabilities (it is calibrated).
    let reference = data(4000, 0.0);
    let scores = m_scores(&m, &reference);
    let labels: Vec<f64> = scores
        .iter()
        .enumerate()
        .map(|(i, p)| f64::from((((i * 7919) % 1000) as f64 / 1000.0) < *p))
        .collect();
    let cbpe = Cbpe::fit(&scores, &labels, None, 0.5, CbpeCalibration::Isotonic).unwrap();
    let mut registry = Registry::default();
    let metrics = DriftMetrics::register(&mut registry);
    let p = policy(DriftMode::WhenAtRisk).with_metrics(metrics);
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
    let mut monitor = DriftMonitor::new(
        "fraud",
        profile,
        CheckedDriftConfig::default(),
        p,
        MonitorConfig {
            window_rows: 1000,
            step_rows: 1000,
        },
    )
    .unwrap()
    .with_estimator(Estimator::new(m.clone(), cbpe.clone()).unwrap());
    let checks = monitor.observe(&data(1000, 0.0), &Nothing).await.unwrap();
    let e = checks[0].performance.unwrap();
    assert_eq!(e.rows, 1000);
    let direct = cbpe
        .estimate(&m_scores(&m, &data(1000, 0.0)), None)
        .unwrap();
    assert_eq!(e, direct, "the monitor's estimate is the library's");
    assert_eq!(checks[0].unscored_rows, 0);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let auc = e.roc_auc.value.unwrap();
    let shown: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "mlops_drift_estimated_performance{model=\"fraud\",metric=\"roc_auc\",bound=\"value\"} ",
            )?
            .parse()
            .ok()
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!((shown - auc).abs() < 1e-12, "{shown} vs {auc}");
    // A window the model cannot score (its input column gone) has no estimate, says why,
    // and the gauges say NaN, not the last value.
    let mut blind = DriftMonitor::new(
        "fraud",
        ReferenceProfile::fit(
            &data(2000, 0.0).drop_features(&["a"]).unwrap(),
            &ProfileConfig::default(),
        )
        .unwrap(),
        CheckedDriftConfig::default(),
        policy(DriftMode::WhenAtRisk),
        MonitorConfig {
            window_rows: 1000,
            step_rows: 1000,
        },
    )
    .unwrap()
    .with_estimator(Estimator::new(m.clone(), cbpe.clone()).unwrap());
    let checks = blind
        .observe(&data(1000, 0.0).drop_features(&["a"]).unwrap(), &Nothing)
        .await
        .unwrap();
    assert_eq!(checks[0].performance, None);
    // The policy is told why: unknown with that reason, and a warning, never "fine".
    assert_eq!(checks[0].decision.action, DriftAction::Warn);
    assert!(
        checks[0].decision.reason.contains("unknown (")
            && checks[0].decision.reason.contains("`a`"),
        "{}",
        checks[0].decision.reason
    );
    assert!(
        checks[0]
            .performance_error
            .as_deref()
            .unwrap()
            .contains("`a`"),
        "{:?}",
        checks[0].performance_error
    );
    // A monitor with an estimator and no rule: a window whose every row scores NaN says so,
    // and its gauges turn NaN (never the last window's value).
    let mut r = Registry::default();
    let gauges = DriftMetrics::register(&mut r);
    let quiet = DriftPolicy::new(
        DriftPolicyConfig::default(),
        Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)),
    )
    .with_metrics(gauges);
    let mut nan_monitor = DriftMonitor::new(
        "fraud",
        ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap(),
        CheckedDriftConfig::default(),
        quiet,
        MonitorConfig {
            window_rows: 1000,
            step_rows: 1000,
        },
    )
    .unwrap()
    .with_estimator(Estimator::new(m.clone(), cbpe.clone()).unwrap());
    nan_monitor
        .observe(&data(1000, 0.0), &Nothing)
        .await
        .unwrap();
    let missing = Dataset::new(
        Array2::from_shape_fn(
            (1000, 3),
            |(i, j)| if j == 0 { f32::NAN } else { (i % 97) as f32 },
        ),
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap();
    let checks = nan_monitor.observe(&missing, &Nothing).await.unwrap();
    let why = checks[0].performance_error.as_deref().unwrap();
    assert!(why.contains("all 1000 rows scored NaN"), "{why}");
    let mut t = String::new();
    prometheus_client::encoding::text::encode(&mut t, &r).unwrap();
    assert!(
        t.contains("mlops_drift_estimated_performance{model=\"fraud\",metric=\"roc_auc\",bound=\"value\"} NaN"),
        "{t}"
    );
    let metrics2 = {
        let mut r = Registry::default();
        let m = DriftMetrics::register(&mut r);
        m.observe_estimate("fraud", None);
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &r).unwrap();
        t
    };
    assert!(
        metrics2.contains(
            "mlops_drift_estimated_performance{model=\"fraud\",metric=\"roc_auc\",bound=\"value\"} NaN"
        ),
        "{metrics2}"
    );
}

#[test]
fn an_estimator_for_another_threshold_or_unchecked_is_refused() {
    let m = model(0.1, -4.8);
    let scores: Vec<f64> = (0..200).map(|i| (i as f64 + 0.5) / 200.0).collect();
    let labels: Vec<f64> = scores
        .iter()
        .enumerate()
        .map(|(i, p)| f64::from(((i * 7919) % 200) as f64 / 200.0 < *p))
        .collect();
    let other = Cbpe::fit(&scores, &labels, None, 0.7, CbpeCalibration::Isotonic).unwrap();
    let e = Estimator::new(m.clone(), other).unwrap_err().to_string();
    assert!(e.contains("cbpe.threshold") && e.contains("0.5"), "{e}");
    let mut broken = Cbpe::fit(&scores, &labels, None, 0.5, CbpeCalibration::Isotonic).unwrap();
    broken.sampling_errors.accuracy = None;
    broken.reference.roc_auc = Some(f64::NAN);
    let e = Estimator::new(m, broken).unwrap_err().to_string();
    assert!(e.contains("cbpe.reference.roc_auc"), "{e}");
}

fn m_scores(m: &MlpModel, d: &Dataset) -> Vec<f64> {
    use mlops_core::model::Predictor;
    let x = d
        .column("a")
        .unwrap()
        .to_owned()
        .insert_axis(ndarray::Axis(1));
    let p: Array1<f32> = m.predict_proba(x.view()).unwrap();
    p.iter().map(|v| f64::from(*v)).collect()
}
