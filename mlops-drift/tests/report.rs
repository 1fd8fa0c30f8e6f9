//! Reference profiles and drift reports: bad columns, test choice, corrections, effect gating,
//! dataset rules, serialization.

use mlops_core::Dataset;
use mlops_drift::{
    CheckedDriftConfig, ColumnStatus, Correction, DriftConfig, DriftReport, DriftTest,
    ProfileConfig, ProfileStorage, ReferenceProfile, Verdict,
};
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
        .compare(&data(600, 20.0), &CheckedDriftConfig::default())
        .unwrap();
    let by = |name: &str| report.columns.iter().find(|c| c.column == name).unwrap();
    // A reference column with no values is insufficient data, not "no drift".
    assert_eq!(by("all_nan").status, ColumnStatus::InsufficientData);
    assert!(
        by("all_nan")
            .error
            .as_deref()
            .unwrap()
            .contains("every reference value of `all_nan` is missing"),
        "{:?}",
        by("all_nan")
    );
    // A constant reference that stays constant is tested (and did not drift).
    assert_eq!(by("constant").status, ColumnStatus::Tested);
    assert!(!by("constant").drifted);
    assert_eq!(by("constant").tests[0].statistic, 0.0);
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
    assert_eq!(report.dataset.columns_tested, 4);
    assert_eq!(
        report.dataset.columns_not_tested,
        vec!["all_nan".to_string()]
    );
    // A column missing from the current data, or of another kind, is an error entry too.
    let other = Dataset::new(Array2::zeros((10, 1)), vec!["cat".into()]).unwrap();
    let report = profile
        .compare(&other, &CheckedDriftConfig::default())
        .unwrap();
    let cat = report.columns.iter().find(|c| c.column == "cat").unwrap();
    assert!(cat.error.as_deref().unwrap().contains("Numeric"), "{cat:?}");
    assert_eq!(cat.status, ColumnStatus::Untestable);
    assert!(report
        .columns
        .iter()
        .find(|c| c.column == "ok")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("not in the current data"));
    assert_eq!(report.dataset.verdict, Verdict::Incomplete);
    assert!(!report.dataset.drifted);
}

/// One numeric column `x` of `rows` values from `f`.
fn one_column(rows: usize, f: impl Fn(usize) -> f32) -> Dataset {
    Dataset::new(
        Array2::from_shape_fn((rows, 1), |(i, _)| f(i)),
        vec!["x".into()],
    )
    .unwrap()
}

#[test]
fn a_constant_reference_that_changes_is_drift_at_every_size() {
    // scipy: ks_2samp([3]*n, [4]*n) has statistic 1 and a tiny p-value; a stuck feature that
    // starts moving is the classic upstream bug.
    for rows in [40, 600, 5000] {
        let profile =
            ReferenceProfile::fit(&one_column(rows, |_| 3.0), &ProfileConfig::default()).unwrap();
        // (current, its exact KS statistic against the constant 3: all of it moved, or the
        // 4 of 7 values above 3 with 3 itself tying)
        for (what, current, statistic) in [
            ("another constant", one_column(rows, |_| 4.0), 1.0),
            ("varying", one_column(rows, |i| (i % 7) as f32), 0.45),
        ] {
            let report = profile
                .compare(&current, &CheckedDriftConfig::default())
                .unwrap();
            let c = &report.columns[0];
            assert_eq!(c.status, ColumnStatus::Tested, "{rows} rows, {what}: {c:?}");
            assert!(c.drifted, "{rows} rows, {what}: {c:?}");
            assert_eq!(
                report.dataset.verdict,
                Verdict::Drift,
                "{rows} rows, {what}"
            );
            assert!(
                (c.tests[0].statistic - statistic).abs() < 0.03,
                "{rows} rows, {what}: {c:?}"
            );
            if rows > 1000 {
                // The preset's normalized Wasserstein divides by the reference spread (0): KS
                // decides instead, and the report says so.
                assert_eq!(c.tests[0].test, DriftTest::Ks);
                assert!(c.notes[0].contains("constant"), "{:?}", c.notes);
            }
        }
        // The same constant is no drift.
        let same = profile
            .compare(&one_column(rows, |_| 3.0), &CheckedDriftConfig::default())
            .unwrap();
        assert_eq!(same.dataset.verdict, Verdict::NoDrift, "{rows} rows");
        assert!(!same.columns[0].drifted);
    }
}

#[test]
fn a_column_entirely_missing_in_current_is_flagged_never_fine() {
    let profile = ReferenceProfile::fit(&data(600, 0.0), &ProfileConfig::default()).unwrap();
    let mut current = data(600, 0.0);
    let mut x = current.features().to_owned();
    x.column_mut(0).fill(f32::NAN);
    current = Dataset::new(x, current.feature_names().map(String::from).collect())
        .unwrap()
        .with_categorical(&["cat"])
        .unwrap();
    let report = profile
        .compare(&current, &CheckedDriftConfig::default())
        .unwrap();
    let ok = report.columns.iter().find(|c| c.column == "ok").unwrap();
    assert_eq!(ok.status, ColumnStatus::InsufficientData, "{ok:?}");
    assert!(ok.drifted, "100% missing must flag the column: {ok:?}");
    assert_eq!(ok.missing.as_ref().unwrap().current_share, 1.0);
    assert!(ok
        .error
        .as_deref()
        .unwrap()
        .contains("every current value of `ok` is missing"));
    // all_nan is untestable on both sides: the verdict cannot be "no drift".
    assert_ne!(report.dataset.verdict, Verdict::NoDrift);
}

#[test]
fn absent_columns_empty_and_tiny_batches_are_incomplete_not_fine() {
    let reference = one_column(500, |i| (i % 50) as f32);
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
    // A column absent from current.
    let other = Dataset::new(Array2::zeros((500, 1)), vec!["y".into()]).unwrap();
    let report = profile
        .compare(&other, &CheckedDriftConfig::default())
        .unwrap();
    assert_eq!(report.dataset.verdict, Verdict::Incomplete);
    assert_eq!(report.dataset.columns_not_tested, vec!["x".to_string()]);
    assert_eq!(report.columns[0].status, ColumnStatus::Untestable);
    // A header-only (0-row) current.
    let empty = one_column(0, |_| 0.0);
    let report = profile
        .compare(&empty, &CheckedDriftConfig::default())
        .unwrap();
    assert_eq!(report.dataset.verdict, Verdict::Incomplete);
    assert!(!report.dataset.drifted);
    assert!(
        report.columns[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no rows"),
        "{:?}",
        report.columns[0]
    );
    // One row: too few values to say anything (it used to flag every column as drifted).
    let report = profile
        .compare(&one_column(1, |_| 1e6), &CheckedDriftConfig::default())
        .unwrap();
    assert_eq!(report.columns[0].status, ColumnStatus::InsufficientData);
    assert!(!report.columns[0].drifted);
    assert_eq!(report.dataset.verdict, Verdict::Incomplete);
    // At min_samples it is tested.
    let config = DriftConfig {
        min_samples: 1,
        ..DriftConfig::default()
    }
    .check()
    .unwrap();
    let report = profile.compare(&one_column(1, |_| 1e6), &config).unwrap();
    assert_eq!(report.columns[0].status, ColumnStatus::Tested);
    assert!(DriftConfig {
        min_samples: 0,
        ..DriftConfig::default()
    }
    .check()
    .is_err());
}

#[test]
fn preset_switches_to_distances_above_1000_rows_and_overrides_apply() {
    let profile = ReferenceProfile::fit(&data(3000, 0.0), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&data(3000, 0.0), &CheckedDriftConfig::default())
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
    let report = profile
        .compare(&data(3000, 0.0), &config.check().unwrap())
        .unwrap();
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
    }
    .check()
    .unwrap();
    let report = profile.compare(&data(3000, 0.0), &config).unwrap();
    let cat = report.columns.iter().find(|c| c.column == "cat").unwrap();
    assert!(
        cat.error.as_deref().unwrap().contains("categorical"),
        "{cat:?}"
    );
}

/// 800 rows of 20 columns; `shift` added to column 0 only.
fn twenty_columns(shift: f32) -> Dataset {
    let x = Array2::from_shape_fn((800, 20), |(i, j)| {
        ((i * (7 + j)) % 101) as f32 + if j == 0 { shift } else { 0.0 }
    });
    Dataset::new(x, (0..20).map(|j| format!("c{j}")).collect()).unwrap()
}

#[test]
fn corrections_effect_gate_and_dataset_rules() {
    // 20 columns; a tiny shift in column 0 only.
    let profile = ReferenceProfile::fit(&twenty_columns(0.0), &ProfileConfig::default()).unwrap();
    let current = twenty_columns(15.0);
    let report = profile
        .compare(
            &current,
            &DriftConfig {
                correction: Correction::None,
                ..DriftConfig::default()
            }
            .check()
            .unwrap(),
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
    // Effect gating: the KS statistic of the shift is 0.15 (scipy.stats.ks_2samp on the same
    // columns); a gate of 0.2 silences it, a gate of exactly 0.15 does not.
    let gated = profile
        .compare(
            &current,
            &DriftConfig {
                min_effect: Some(0.2),
                correction: Correction::None,
                ..DriftConfig::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap();
    assert!(!gated.columns[0].drifted);
    assert!((gated.columns[0].effect_size.unwrap() - 0.15).abs() < 1e-12);
    let at_the_gate = profile
        .compare(
            &current,
            &DriftConfig {
                min_effect: Some(0.15),
                correction: Correction::None,
                ..DriftConfig::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap();
    assert!(at_the_gate.columns[0].drifted, "effect >= min_effect flags");
    // The share rule fires with a low enough share.
    let strict = profile
        .compare(
            &current,
            &DriftConfig {
                drift_share: 0.05,
                correction: Correction::None,
                ..DriftConfig::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap();
    assert!(strict.dataset.drifted);
}

/// The rules at their exact boundaries: a p-value equal to alpha is not significant (`p <
/// alpha`), and the seed's mean-effect rule fires strictly above its threshold (`mean KS >
/// 0.3`); one float either side flips each.
#[test]
fn the_alpha_and_mean_effect_boundaries_are_exact() {
    let profile = ReferenceProfile::fit(&twenty_columns(0.0), &ProfileConfig::default()).unwrap();
    let current = twenty_columns(15.0);
    let base = DriftConfig {
        correction: Correction::None,
        ..DriftConfig::default()
    }
    .check()
    .unwrap();
    let report = profile.compare(&current, &base).unwrap();
    let pvalues: Vec<f64> = report
        .columns
        .iter()
        .filter_map(|c| c.tests[0].p_value)
        .collect();
    assert_eq!(pvalues.len(), 20);
    let p = report.columns[0].tests[0].p_value.unwrap();
    let below = |alpha: f64| pvalues.iter().filter(|q| **q < alpha).count();
    let at_alpha = |alpha: f64| {
        profile
            .compare(
                &current,
                &DriftConfig {
                    alpha,
                    ..base.config().clone()
                }
                .check()
                .unwrap(),
            )
            .unwrap()
    };
    let at = at_alpha(p);
    assert!(!at.columns[0].drifted, "p = alpha = {p} is not significant");
    assert_eq!(
        at.dataset.drifted_by_correction[&Correction::None],
        below(p)
    );
    let above = at_alpha(p.next_up());
    assert!(above.columns[0].drifted);
    assert_eq!(
        above.dataset.drifted_by_correction[&Correction::None],
        below(p.next_up())
    );
    assert!(below(p.next_up()) > below(p));

    let mean = report.dataset.mean_effect_rule.as_ref().unwrap().observed;
    let with_threshold = |t: f64| {
        profile
            .compare(
                &current,
                &DriftConfig {
                    mean_effect_threshold: Some(t),
                    drift_share: 1.0,
                    ..base.config().clone()
                }
                .check()
                .unwrap(),
            )
            .unwrap()
    };
    let at = with_threshold(mean);
    assert!(
        !at.dataset.mean_effect_rule.unwrap().fired,
        "mean = threshold"
    );
    assert!(!at.dataset.drifted);
    let just_below = with_threshold(mean.next_down());
    assert!(just_below.dataset.mean_effect_rule.unwrap().fired);
    assert!(just_below.dataset.drifted);
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
    let rising = profile
        .compare(&make(5), &CheckedDriftConfig::default())
        .unwrap();
    let m = rising.columns[0].missing.as_ref().unwrap();
    assert!(
        m.current_share > m.reference_share && m.outcome.drifted,
        "{m:?}"
    );
    assert!(rising.columns[0].drifted);
    let falling = profile
        .compare(&make(0), &CheckedDriftConfig::default())
        .unwrap();
    assert!(!falling.columns[0].missing.as_ref().unwrap().outcome.drifted);
}

#[test]
fn profiles_round_trip_through_json_and_bad_configs_are_named() {
    let profile = ReferenceProfile::fit(&data(300, 0.0), &ProfileConfig::default()).unwrap();
    let back = ReferenceProfile::from_json(&profile.to_json().unwrap()).unwrap();
    assert_eq!(back, profile);
    let a = profile
        .compare(&data(300, 3.0), &CheckedDriftConfig::default())
        .unwrap();
    let b = back
        .compare(&data(300, 3.0), &CheckedDriftConfig::default())
        .unwrap();
    assert_eq!(a, b);
    // A bad config never reaches `compare`: its check names the field.
    let err = DriftConfig {
        alpha: 1.5,
        ..DriftConfig::default()
    }
    .check()
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
            }
            .check()
            .unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = serde_json::from_str::<DriftConfig>(r#"{"tests": ["kss"]}"#).unwrap_err();
    assert!(err.to_string().contains("kss"), "{err}");
    let bad_bins = ProfileConfig {
        bins: 1,
        ..ProfileConfig::default()
    };
    assert!(ReferenceProfile::fit(&data(10, 0.0), &bad_bins).is_err());
    let bad_cap = ProfileConfig {
        storage: ProfileStorage::Compact { max_values: 1 },
        ..ProfileConfig::default()
    };
    let e = ReferenceProfile::fit(&data(10, 0.0), &bad_cap).unwrap_err();
    assert!(e.to_string().contains("max_values = 1"), "{e}");
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
    }
    .check()
    .unwrap();
    let slow = DriftConfig {
        tests,
        ..DriftConfig::default()
    }
    .check()
    .unwrap();
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

#[test]
fn reports_and_profiles_are_byte_identical_at_1_3_and_8_threads() {
    // compare() tests columns in parallel and fit() builds columns in parallel: the bytes must
    // not depend on how many threads do it or in which order they finish.
    let columns = 40;
    let make = |rows: usize, shift: f32| {
        let x = Array2::from_shape_fn((rows, columns), |(i, j)| {
            (((i * (13 + 2 * j) + 7 * j) % 211) as f32) * 0.37
                + if j % 3 == 0 { shift } else { 0.0 }
        });
        Dataset::new(x, (0..columns).map(|j| format!("c{j}")).collect()).unwrap()
    };
    let (reference, current) = (make(5000, 0.0), make(3000, 4.0));
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
                let mixed = DriftConfig {
                    tests: vec![DriftTest::Ks, DriftTest::Psi, DriftTest::Wasserstein],
                    ..DriftConfig::default()
                }
                .check()
                .unwrap();
                (
                    profile.to_json().unwrap(),
                    serde_json::to_string(
                        &profile
                            .compare(&current, &CheckedDriftConfig::default())
                            .unwrap(),
                    )
                    .unwrap(),
                    serde_json::to_string(&profile.compare(&current, &mixed).unwrap()).unwrap(),
                )
            })
    };
    let one = run(1);
    assert!(one.1.contains("\"drifted\":true"), "the shift is seen");
    for threads in [3, 8] {
        let other = run(threads);
        assert!(one.0 == other.0, "profile differs at {threads} threads");
        assert!(
            one.1 == other.1,
            "default report differs at {threads} threads"
        );
        assert!(
            one.2 == other.2,
            "mixed report differs at {threads} threads"
        );
    }
}

#[test]
fn reports_print_readably_and_round_trip_through_json() {
    let profile = ReferenceProfile::fit(&data(600, 0.0), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&data(600, 20.0), &CheckedDriftConfig::default())
        .unwrap();
    let text = report.to_string();
    assert!(
        text.starts_with("drift report: incomplete (1 of 4 columns drifted"),
        "{text}"
    );
    assert!(
        text.contains("shifting") && text.contains("DRIFT"),
        "{text}"
    );
    assert!(
        text.contains("all_nan") && text.contains("not tested"),
        "{text}"
    );
    assert_eq!(
        DriftReport::from_json(&report.to_json().unwrap()).unwrap(),
        report
    );
    let config = DriftConfig::from_json(r#"{"alpha": 0.01}"#).unwrap();
    assert_eq!(config.alpha, 0.01);
    let e = DriftConfig::from_json(r#"{"alpah": 0.01}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("drift config") && e.contains("alpah"), "{e}");
}
