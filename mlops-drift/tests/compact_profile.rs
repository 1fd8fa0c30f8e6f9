//! The default (compact) reference profile on the shared real datasets: small, not a copy of
//! the training data, and the same drift decisions as the exact profile, with the KS error
//! bound it implies stated in every report.
//!
//! Data from `$MLOPS_DATA_DIR` (default `../shared/data`): the credit-card sample (41,103
//! rows; the full table is 284,807) and the Nebraska weather stream (18,159 rows).

use mlops_core::{CsvOptions, Dataset};
use mlops_drift::stream::{WindowConfig, WindowedDetector};
use mlops_drift::{
    CheckedDriftConfig, DriftConfig, DriftTest, ProfileConfig, ProfileStorage, ReferenceProfile,
};

fn shared(file: &str, options: &CsvOptions) -> Dataset {
    let dir = std::env::var("MLOPS_DATA_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data").to_string());
    let path = format!("{dir}/{file}");
    Dataset::from_csv_path(&path, options).unwrap_or_else(|e| {
        panic!("{path}: {e} (set MLOPS_DATA_DIR to the folder holding the shared data)")
    })
}

fn creditcard() -> Dataset {
    shared(
        "creditcard_fraud_sample.csv",
        &CsvOptions::with_label("Class"),
    )
}

fn weather() -> Dataset {
    shared(
        "nebraska_weather.csv",
        &CsvOptions::with_label("rain").ignore(["day"]),
    )
}

fn rows(data: &Dataset, range: std::ops::Range<usize>) -> Dataset {
    data.select_rows(&range.collect::<Vec<_>>()).unwrap()
}

fn exact() -> ProfileConfig {
    ProfileConfig {
        storage: ProfileStorage::Exact,
        ..ProfileConfig::default()
    }
}

/// The full credit-card table's size from the sample: the sample keeps every 7th legitimate
/// row, so each legitimate row appears 7 times (frauds once), then the first rows again up to
/// 284,807.
fn full_size_creditcard(sample: &Dataset) -> Dataset {
    let labels = sample.labels().unwrap();
    let mut index: Vec<usize> = Vec::with_capacity(284_807);
    for (i, y) in labels.iter().enumerate() {
        let copies = if *y == 1.0 { 1 } else { 7 };
        index.extend(std::iter::repeat_n(i, copies));
    }
    index.extend(0..284_807 - index.len());
    sample.select_rows(&index).unwrap()
}

#[test]
fn the_default_profile_of_the_full_credit_card_table_is_under_2_mb_and_not_the_data() {
    let full = full_size_creditcard(&creditcard());
    assert_eq!((full.n_rows(), full.n_features()), (284_807, 30));
    let compact = ReferenceProfile::fit(&full, &ProfileConfig::default()).unwrap();
    let json = compact.to_json().unwrap();
    eprintln!("default profile: {} bytes", json.len());
    assert!(json.len() < 2_000_000, "{} bytes", json.len());
    // Every column keeps at most 8192 values, the counts stay exact, and the bound is stated.
    for c in &compact.columns {
        assert!(c.sorted.len() <= 8192, "{}: {}", c.name, c.sorted.len());
        assert_eq!(c.present(), 284_807, "{}", c.name);
        assert!(
            c.ecdf_error > 0.0 && c.ecdf_error <= 1.0 / 8192.0,
            "{}: {}",
            c.name,
            c.ecdf_error
        );
    }
    assert!(compact.ks_error_bound() <= 1.0 / 8192.0);
    // The exact profile is the data itself: many times larger.
    let exact = ReferenceProfile::fit(&full, &exact()).unwrap();
    let exact_bytes = exact.to_json().unwrap().len();
    eprintln!("exact profile: {exact_bytes} bytes");
    assert!(
        exact_bytes > 20 * json.len(),
        "{exact_bytes} vs {}",
        json.len()
    );
    assert_eq!(exact.ks_error_bound(), 0.0);
    // And it reads back as it was written (the binary value encoding included).
    let back = ReferenceProfile::from_json(&json).unwrap();
    assert_eq!(back, compact);
}

/// Compact and exact profiles of `reference` judge `current` the same way, column by column,
/// for the default report and a KS report; KS statistics agree within the stated bound.
fn same_decisions(reference: &Dataset, current: &Dataset, what: &str) {
    let compact = ReferenceProfile::fit(reference, &ProfileConfig::default()).unwrap();
    let exact = ReferenceProfile::fit(reference, &exact()).unwrap();
    for config in [
        CheckedDriftConfig::default(),
        DriftConfig {
            tests: vec![DriftTest::Ks],
            ..DriftConfig::default()
        }
        .check()
        .unwrap(),
    ] {
        let a = compact.compare(current, &config).unwrap();
        let b = exact.compare(current, &config).unwrap();
        let tests = format!("{what}, tests {:?}", config.tests);
        assert_eq!(a.dataset.verdict, b.dataset.verdict, "{tests}");
        assert_eq!(b.dataset.ks_error_bound, 0.0);
        // The bound is stated, and is 0 exactly when the reference fits whole.
        let summarized = reference.n_rows() > 8192;
        assert_eq!(a.dataset.ks_error_bound > 0.0, summarized, "{tests}");
        assert!(a.dataset.ks_error_bound <= 1.0 / 8192.0, "{tests}");
        for (x, y) in a.columns.iter().zip(&b.columns) {
            let col = format!("{tests}, column {}", x.column);
            assert_eq!(
                x.drifted, y.drifted,
                "{col}: {:?} vs {:?}",
                x.tests, y.tests
            );
            assert_eq!(x.reference_values, y.reference_values, "{col}");
            if let (Some(e), Some(f)) = (x.effect_size, y.effect_size) {
                assert!(
                    (e - f).abs() <= x.reference_ecdf_error + 1e-12,
                    "{col}: KS {e} vs {f}, bound {}",
                    x.reference_ecdf_error
                );
            }
            let (s, t) = (&x.tests[0], &y.tests[0]);
            if s.test == DriftTest::Ks {
                assert!((s.statistic - t.statistic).abs() <= x.reference_ecdf_error + 1e-12);
                // The p-value takes the true reference count: close to the exact one.
                let (p, q) = (s.p_value.unwrap(), t.p_value.unwrap());
                assert!(
                    (p < config.alpha) == (q < config.alpha),
                    "{col}: p {p} vs {q}"
                );
            }
        }
    }
}

#[test]
fn credit_card_day_0_against_day_1_and_its_own_halves_decides_as_the_exact_profile() {
    let data = creditcard();
    // Time order: day 0 is the first 20,920 rows.
    let (day0, day1) = (rows(&data, 0..20_920), rows(&data, 20_920..data.n_rows()));
    same_decisions(&day0, &day1, "day 0 vs day 1");
    same_decisions(
        &day0,
        &rows(&data, 20_920..22_920),
        "day 0 vs 2,000 rows of day 1",
    );
    same_decisions(
        &rows(&data, 0..10_000),
        &rows(&data, 10_000..20_920),
        "day 0 halves",
    );
}

#[test]
fn nebraska_weather_drift_and_no_drift_are_decided_as_with_the_exact_profile() {
    let data = weather();
    // References larger than the compact cap (8192 values), so the summary is what is tested:
    // the 32 years before the drift against the last 5,000 rows, and 24 whole years against
    // the next 8 (season-matched, both before row 12,000).
    same_decisions(
        &rows(&data, 0..11_688),
        &rows(&data, 13_159..18_159),
        "late rows",
    );
    same_decisions(
        &rows(&data, 0..8766),
        &rows(&data, 8766..11_688),
        "season-matched",
    );
    // The verdicts themselves: drift late, none between the season-matched stretches.
    let verdict = |reference: std::ops::Range<usize>, current: std::ops::Range<usize>| {
        ReferenceProfile::fit(&rows(&data, reference), &ProfileConfig::default())
            .unwrap()
            .compare(&rows(&data, current), &CheckedDriftConfig::default())
            .unwrap()
            .dataset
            .drifted
    };
    assert!(verdict(0..11_688, 13_159..18_159));
    assert!(!verdict(0..8766, 8766..11_688));
}

#[test]
fn a_windowed_detector_on_a_compact_profile_uses_the_true_reference_count() {
    let data = weather();
    let reference = rows(&data, 0..7305);
    let compact = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
    let exact = ReferenceProfile::fit(&reference, &exact()).unwrap();
    let config = WindowConfig {
        window: 500,
        step: 500,
        ..WindowConfig::default()
    };
    let mut a = WindowedDetector::new(&compact.columns[0], config).unwrap();
    let mut b = WindowedDetector::new(&exact.columns[0], config).unwrap();
    let column = data.features().column(0).to_owned();
    let mut compared = 0;
    for v in column.iter().skip(7305) {
        if let (Some(x), Some(y)) = (a.update(f64::from(*v)), b.update(f64::from(*v))) {
            assert!((x.statistic - y.statistic).abs() <= compact.columns[0].ecdf_error + 1e-12);
            assert_eq!(
                x.drifted, y.drifted,
                "at {}: p {} vs {}",
                x.position, x.p_value, y.p_value
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared}");
}

#[test]
fn profiles_written_before_compaction_still_load_and_bad_packed_values_are_named() {
    use mlops_core::ndarray::Array2;
    // 200 values: long enough to be packed; quarters are exact in f32, thirds are not.
    let make = |scale: f32| {
        let x = Array2::from_shape_fn((200, 2), |(i, j)| i as f32 * scale + j as f32);
        Dataset::new(x, vec!["a".into(), "b".into()]).unwrap()
    };
    for (scale, tag) in [(0.25f32, "f32le:"), (1.0 / 3.0, "f32le:")] {
        let profile = ReferenceProfile::fit(&make(scale), &exact()).unwrap();
        let json = profile.to_json().unwrap();
        assert!(json.contains(tag), "{json}");
        assert_eq!(ReferenceProfile::from_json(&json).unwrap(), profile);
    }
    // Values that are not f32 (a profile built by hand or by a sketch) pack as f64, exactly.
    let mut profile = ReferenceProfile::fit(&make(0.25), &exact()).unwrap();
    profile.columns[0].sorted[0] = 0.1;
    let json = profile.to_json().unwrap();
    assert!(json.contains("f64le:"));
    assert_eq!(ReferenceProfile::from_json(&json).unwrap(), profile);
    // The earlier format: values as arrays, no error fields, no storage setting.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old["config"].as_object_mut().unwrap().remove("storage");
    for (c, original) in old["columns"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&profile.columns)
    {
        let c = c.as_object_mut().unwrap();
        c.remove("ecdf_error");
        c.remove("wasserstein_error");
        c.insert("sorted".into(), serde_json::json!(original.sorted));
    }
    let back = ReferenceProfile::from_json(&old.to_string()).unwrap();
    assert_eq!(back.columns, profile.columns);
    assert!(back.columns.iter().all(|c| c.is_exact()));
    // A damaged value block is an error that says what is wrong, never a short column.
    let json = profile.to_json().unwrap();
    let start = json.find("f64le:").unwrap() + "f64le:".len();
    let mut cut = json.clone();
    cut.replace_range(start..start + 4, ""); // 3 bytes fewer: not whole f64s
    let e = ReferenceProfile::from_json(&cut).unwrap_err().to_string();
    assert!(e.contains("whole number"), "{e}");
    let bad = json.replacen("f64le:", "f16le:", 1);
    let e = ReferenceProfile::from_json(&bad).unwrap_err().to_string();
    assert!(e.contains("f32le:") && e.contains("f64le:"), "{e}");
}

#[test]
fn a_summarized_reference_never_drifts_by_its_own_error_and_a_bad_error_is_named() {
    use mlops_core::ndarray::Array2;
    let column = |values: Vec<f32>| {
        let n = values.len();
        Dataset::new(
            Array2::from_shape_vec((n, 1), values).unwrap(),
            vec!["x".into()],
        )
        .unwrap()
    };
    // 20,000 evenly spread reference values; 3,000 current values, 4% of them moved up: an
    // exact KS statistic of 0.04, over the 5% critical value (about 0.027) for these sizes.
    let reference = column((0..20_000).map(|i| i as f32 / 20_000.0).collect());
    let current = column(
        (0..3000)
            .map(|i| {
                let u = i as f32 / 3000.0;
                if u < 0.04 {
                    0.99 + u / 10.0
                } else {
                    u
                }
            })
            .collect(),
    );
    let config = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    }
    .check()
    .unwrap();
    let mut profile = ReferenceProfile::fit(&reference, &exact()).unwrap();
    let judged = |profile: &ReferenceProfile| {
        let report = profile.compare(&current, &config).unwrap();
        let c = report.columns[0].clone();
        (c.drifted, c.tests.first().and_then(|t| t.p_value), c.error)
    };
    let (drifted, p, _) = judged(&profile);
    assert!(drifted, "exact: p {p:?}");
    // The same values stated to be a summary within 0.005 of the true ECDF: the statistic
    // can be no smaller than 0.035, still drift.
    profile.columns[0].ecdf_error = 0.005;
    let (drifted, p, _) = judged(&profile);
    assert!(drifted, "error 0.005: p {p:?}");
    // Within 0.02: the true statistic may be 0.02, under the critical value, so no alarm.
    profile.columns[0].ecdf_error = 0.02;
    let (drifted, p, _) = judged(&profile);
    assert!(!drifted && p.unwrap() > 0.05, "error 0.02: p {p:?}");
    // The windowed detector judges the same way.
    let window = |profile: &ReferenceProfile| {
        let mut w = WindowedDetector::new(
            &profile.columns[0],
            WindowConfig {
                window: 3000,
                step: 3000,
                ..WindowConfig::default()
            },
        )?;
        let x = current.features().column(0).to_owned();
        Ok::<_, mlops_drift::Error>(x.iter().filter_map(|v| w.update(f64::from(*v))).last())
    };
    assert!(!window(&profile).unwrap().unwrap().drifted);
    profile.columns[0].ecdf_error = 0.0;
    assert!(window(&profile).unwrap().unwrap().drifted);
    // A damaged profile's error is named, never read as "no drift".
    for bad in [f64::NAN, -0.1, 1.0, f64::INFINITY] {
        profile.columns[0].ecdf_error = bad;
        let (drifted, _, error) = judged(&profile);
        let error = error.unwrap_or_default();
        assert!(
            !drifted && error.contains("ecdf_error") && error.contains("[0, 1)"),
            "{bad}: {error}"
        );
        let e = window(&profile).unwrap_err().to_string();
        assert!(e.contains("ecdf_error"), "{e}");
    }
}
