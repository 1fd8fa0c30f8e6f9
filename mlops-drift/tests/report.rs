//! Reference profiles and drift reports: bad columns, test choice, corrections, effect gating,
//! dataset rules, serialization.

use mlops_core::Dataset;
use mlops_drift::{Correction, DriftConfig, DriftTest, ProfileConfig, ReferenceProfile};
use ndarray::Array2;

/// Columns: `ok` (cycles 0..50), `all_nan`, `constant`, `cat` (codes 0..3), `shifting`.
fn data(rows: usize, shift: f32) -> Dataset {
    let x = Array2::from_shape_fn((rows, 5), |(i, j)| match j {
        0 => (i % 50) as f32,
        1 => f32::NAN,
        2 => 7.0,
        3 => (i % 3) as f32,
        _ => (i % 40) as f32 + shift,
    });
    Dataset::new(
        x,
        ["ok", "all_nan", "constant", "cat", "shifting"]
            .map(String::from)
            .to_vec(),
    )
    .unwrap()
    .with_categorical(&["cat"])
    .unwrap()
}

#[test]
fn bad_columns_get_error_entries_and_the_rest_is_reported() {
    let profile = ReferenceProfile::fit(&data(600, 0.0), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&data(600, 20.0), &DriftConfig::default())
        .unwrap();
    let by = |name: &str| report.columns.iter().find(|c| c.column == name).unwrap();
    assert!(
        by("all_nan").error.as_deref().unwrap().contains("missing"),
        "{:?}",
        by("all_nan")
    );
    assert!(by("constant")
        .error
        .as_deref()
        .unwrap()
        .contains("constant"));
    assert!(by("ok").error.is_none() && !by("ok").drifted);
    assert!(by("shifting").drifted);
    assert_eq!(
        by("shifting").tests[0].test,
        DriftTest::Ks,
        "preset at <= 1000 rows is KS"
    );
    assert_eq!(
        by("cat").tests[0].test,
        DriftTest::Chi2,
        "preset for 3 categories"
    );
    assert_eq!(report.dataset.columns_tested, 3);
    // A column missing from the current data, or of another kind, is an error entry too.
    let other = Dataset::new(Array2::zeros((10, 1)), vec!["cat".into()]).unwrap();
    let report = profile.compare(&other, &DriftConfig::default()).unwrap();
    let cat = report.columns.iter().find(|c| c.column == "cat").unwrap();
    assert!(cat.error.as_deref().unwrap().contains("Numeric"), "{cat:?}");
    assert!(report
        .columns
        .iter()
        .find(|c| c.column == "ok")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("not in the current data"));
}

#[test]
fn preset_switches_to_distances_above_1000_rows_and_overrides_apply() {
    let profile = ReferenceProfile::fit(&data(3000, 0.0), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&data(3000, 0.0), &DriftConfig::default())
        .unwrap();
    let first = |name: &str| {
        report
            .columns
            .iter()
            .find(|c| c.column == name)
            .unwrap()
            .tests[0]
            .clone()
    };
    assert_eq!(first("ok").test, DriftTest::Wasserstein);
    assert_eq!(first("ok").threshold, Some(0.1));
    assert_eq!(first("cat").test, DriftTest::Js);
    let mut config = DriftConfig {
        tests: vec![DriftTest::Psi, DriftTest::Ks],
        ..DriftConfig::default()
    };
    config
        .column_tests
        .insert("cat".into(), vec![DriftTest::GTest, DriftTest::Tv]);
    let report = profile.compare(&data(3000, 0.0), &config).unwrap();
    let ok = report.columns.iter().find(|c| c.column == "ok").unwrap();
    assert_eq!(
        ok.tests.iter().map(|t| t.test).collect::<Vec<_>>(),
        [DriftTest::Psi, DriftTest::Ks]
    );
    let cat = report.columns.iter().find(|c| c.column == "cat").unwrap();
    assert_eq!(cat.tests[0].test, DriftTest::GTest);
    // A numeric-only test on a categorical column is an error entry for that column.
    let config = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    };
    let report = profile.compare(&data(3000, 0.0), &config).unwrap();
    let cat = report.columns.iter().find(|c| c.column == "cat").unwrap();
    assert!(
        cat.error.as_deref().unwrap().contains("categorical"),
        "{cat:?}"
    );
}

#[test]
fn corrections_effect_gate_and_dataset_rules() {
    // 20 columns; a tiny shift in column 0 only.
    let make = |shift: f32| {
        let x = Array2::from_shape_fn((800, 20), |(i, j)| {
            ((i * (7 + j)) % 101) as f32 + if j == 0 { shift } else { 0.0 }
        });
        Dataset::new(x, (0..20).map(|j| format!("c{j}")).collect()).unwrap()
    };
    let profile = ReferenceProfile::fit(&make(0.0), &ProfileConfig::default()).unwrap();
    let current = make(15.0);
    let report = profile
        .compare(
            &current,
            &DriftConfig {
                correction: Correction::None,
                ..DriftConfig::default()
            },
        )
        .unwrap();
    assert!(report.columns[0].drifted);
    let counts = &report.dataset.drifted_by_correction;
    assert!(counts[&Correction::None] >= counts[&Correction::BenjaminiHochberg]);
    assert!(counts[&Correction::BenjaminiHochberg] >= counts[&Correction::Holm]);
    assert!(counts[&Correction::Holm] >= counts[&Correction::Bonferroni]);
    assert!(
        !report.dataset.drifted,
        "one column in twenty is not dataset drift"
    );
    assert!((report.dataset.share_rule.observed - 0.05).abs() < 1e-12);
    // The adjusted p-value is reported beside the raw one.
    let t = &report.columns[0].tests[0];
    assert!(t.adjusted_p_value.unwrap() >= t.p_value.unwrap());
    // Effect gating: the KS statistic of the shift is ~0.15; a gate of 0.2 silences it.
    let gated = profile
        .compare(
            &current,
            &DriftConfig {
                min_effect: Some(0.2),
                correction: Correction::None,
                ..DriftConfig::default()
            },
        )
        .unwrap();
    assert!(!gated.columns[0].drifted);
    assert!(gated.columns[0].effect_size.unwrap() < 0.2);
    // The share rule fires with a low enough share.
    let strict = profile
        .compare(
            &current,
            &DriftConfig {
                drift_share: 0.05,
                correction: Correction::None,
                ..DriftConfig::default()
            },
        )
        .unwrap();
    assert!(strict.dataset.drifted);
}

#[test]
fn rising_missing_share_is_drift_and_falling_is_not() {
    let make = |missing_every: usize| {
        let x = Array2::from_shape_fn((2000, 1), |(i, _)| {
            if missing_every > 0 && i % missing_every == 0 {
                f32::NAN
            } else {
                (i % 50) as f32
            }
        });
        Dataset::new(x, vec!["x".into()]).unwrap()
    };
    let profile = ReferenceProfile::fit(&make(50), &ProfileConfig::default()).unwrap();
    let rising = profile.compare(&make(5), &DriftConfig::default()).unwrap();
    let m = rising.columns[0].missing.as_ref().unwrap();
    assert!(
        m.current_share > m.reference_share && m.outcome.drifted,
        "{m:?}"
    );
    assert!(rising.columns[0].drifted);
    let falling = profile.compare(&make(0), &DriftConfig::default()).unwrap();
    assert!(!falling.columns[0].missing.as_ref().unwrap().outcome.drifted);
}

#[test]
fn profiles_round_trip_through_json_and_bad_configs_are_named() {
    let profile = ReferenceProfile::fit(&data(300, 0.0), &ProfileConfig::default()).unwrap();
    let back = ReferenceProfile::from_json(&profile.to_json().unwrap()).unwrap();
    assert_eq!(back, profile);
    let a = profile
        .compare(&data(300, 3.0), &DriftConfig::default())
        .unwrap();
    let b = back
        .compare(&data(300, 3.0), &DriftConfig::default())
        .unwrap();
    assert_eq!(a, b);
    let err = profile
        .compare(
            &data(10, 0.0),
            &DriftConfig {
                alpha: 1.5,
                ..DriftConfig::default()
            },
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("DriftConfig.alpha") && err.to_string().contains("1.5"),
        "{err}"
    );
    let err = profile
        .compare(
            &data(10, 0.0),
            &DriftConfig {
                columns: vec!["nope".into()],
                ..DriftConfig::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = serde_json::from_str::<DriftConfig>(r#"{"tests": ["kss"]}"#).unwrap_err();
    assert!(err.to_string().contains("kss"), "{err}");
    assert!(ReferenceProfile::fit(&data(10, 0.0), &ProfileConfig { bins: 1 }).is_err());
}

#[test]
fn binned_fast_path_matches_the_value_path() {
    // With binned tests only and no effect-size rule, shares are counted in one pass over the
    // rows; with the mean-statistic rule on, the values are extracted and sorted. Same numbers.
    let make = |shift: f32| {
        let x = Array2::from_shape_fn((3000, 4), |(i, j)| {
            if (i + j) % 17 == 0 {
                f32::NAN
            } else {
                ((i * (5 + j)) % 211) as f32 + if j == 1 { shift } else { 0.0 }
            }
        });
        Dataset::new(x, (0..4).map(|j| format!("c{j}")).collect()).unwrap()
    };
    let profile = ReferenceProfile::fit(&make(0.0), &ProfileConfig::default()).unwrap();
    let tests = vec![
        DriftTest::Psi,
        DriftTest::Js,
        DriftTest::Hellinger,
        DriftTest::Tv,
        DriftTest::Kl,
    ];
    let fast = DriftConfig {
        tests: tests.clone(),
        mean_effect_threshold: None,
        ..DriftConfig::default()
    };
    let slow = DriftConfig {
        tests,
        ..DriftConfig::default()
    };
    let (a, b) = (
        profile.compare(&make(30.0), &fast).unwrap(),
        profile.compare(&make(30.0), &slow).unwrap(),
    );
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(x.current_values, y.current_values);
        assert_eq!(x.missing, y.missing);
        for (s, t) in x.tests.iter().zip(&y.tests) {
            assert!(
                (s.statistic - t.statistic).abs() < 1e-12,
                "{} {}: {} vs {}",
                x.column,
                s.test,
                s.statistic,
                t.statistic
            );
        }
        assert!(x.effect_size.is_none() && y.effect_size.is_some());
    }
    assert!(a.columns[1].drifted && !a.columns[0].drifted);
}
