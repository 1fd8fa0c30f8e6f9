//! Mergeable sketches (order independence, size, KS error bound) and the ERT-calibrated online
//! detector (run length without drift, delay with drift).

use mlops_core::ColumnKind;
use mlops_core::Dataset;
use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
use mlops_drift::stream::{OnlineConfig, OnlineDetector};
use mlops_drift::{
    ColumnProfile, DriftConfig, DriftTest, ProfileConfig, ProfileSketch, QuantileSketch,
    ReferenceProfile,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal_like(rng: &mut ChaCha8Rng, n: usize, shift: f64, scale: f64) -> Vec<f64> {
    // Sum of 4 uniforms: bell-shaped, continuous.
    (0..n)
        .map(|_| ((0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0) * scale + shift)
        .collect()
}

#[test]
fn merging_partitions_in_any_order_gives_the_same_sketch() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let values = normal_like(&mut rng, 50_000, 0.0, 10.0);
    let parts: Vec<QuantileSketch> = values
        .chunks(7_000)
        .map(|c| QuantileSketch::from_values(c, 0.01, 1300).unwrap())
        .collect();
    let fold = |order: &[usize]| {
        let mut acc = QuantileSketch::new(0.01, 1300).unwrap();
        for &i in order {
            acc.merge(&parts[i]).unwrap();
        }
        acc
    };
    let forward = fold(&(0..parts.len()).collect::<Vec<_>>());
    let backward = fold(&(0..parts.len()).rev().collect::<Vec<_>>());
    // A tree: pairs first.
    let mut pairs: Vec<QuantileSketch> = parts
        .chunks(2)
        .map(|p| {
            let mut s = p[0].clone();
            if let Some(q) = p.get(1) {
                s.merge(q).unwrap();
            }
            s
        })
        .collect();
    let mut tree = pairs.pop().unwrap();
    for p in pairs.iter().rev() {
        tree.merge(p).unwrap();
    }
    assert_eq!(forward, backward);
    assert_eq!(forward, tree);
    assert_eq!(forward.count(), 50_000);
    assert!(
        forward.size_bytes() <= 16 * 1024,
        "{} bytes",
        forward.size_bytes()
    );
    let whole = QuantileSketch::from_values(&values, 0.01, 1300).unwrap();
    assert_eq!(whole.count(), forward.count());
    // Quantiles within relative alpha of the exact ones (away from zero).
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for q in [0.05, 0.25, 0.75, 0.95] {
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        let approx = forward.quantile(q).unwrap();
        assert!(
            (approx - exact).abs() <= 0.011 * exact.abs() + 1e-9,
            "q{q}: {approx} vs {exact}"
        );
    }
    let err = forward
        .clone()
        .merge(&QuantileSketch::new(0.02, 1300).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("alpha"), "{err}");
}

#[test]
fn sketched_ks_is_within_its_bound_of_the_exact_ks() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (shift, scale) in [(0.0, 1.0), (0.05, 1.0), (0.3, 1.2), (2.0, 1.0), (0.0, 3.0)] {
        let a = normal_like(&mut rng, 20_000, 0.0, 1.0);
        let b = normal_like(&mut rng, 15_000, shift, scale);
        let exact = ks_2samp(&a, &b, Alternative::TwoSided, KsMethod::Asymp)
            .unwrap()
            .statistic;
        let sa = QuantileSketch::from_values(&a, 0.01, 1300).unwrap();
        let sb = QuantileSketch::from_values(&b, 0.01, 1300).unwrap();
        let ks = sa.ks_statistic(&sb);
        assert!(
            (ks.statistic - exact).abs() <= ks.error_bound,
            "shift {shift}: {} vs {exact} (bound {})",
            ks.statistic,
            ks.error_bound
        );
        // The bound is about 2α·|x|·density at the densest bucket: a few percent at α = 1%.
        assert!(ks.error_bound < 0.05, "bound {}", ks.error_bound);
    }
    // A tight budget folds small magnitudes into the zero bucket: still within the bound.
    let a = normal_like(&mut rng, 5000, 0.0, 1.0);
    let b = normal_like(&mut rng, 5000, 0.1, 1.0);
    let (sa, sb) = (
        QuantileSketch::from_values(&a, 0.01, 64).unwrap(),
        QuantileSketch::from_values(&b, 0.01, 64).unwrap(),
    );
    let exact = ks_2samp(&a, &b, Alternative::TwoSided, KsMethod::Asymp)
        .unwrap()
        .statistic;
    let ks = sa.ks_statistic(&sb);
    assert!((ks.statistic - exact).abs() <= ks.error_bound);
}

#[test]
fn online_detector_run_length_matches_the_ert_without_drift() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let reference = normal_like(&mut rng, 5000, 0.0, 1.0);
    let profile =
        ColumnProfile::fit("x", ColumnKind::Numeric, reference.iter().copied(), 10).unwrap();
    let config = OnlineConfig {
        ert: 150.0,
        window: 40,
        n_bootstraps: 3000,
        calibrated_steps: 120,
        seed: 5,
    };
    let detector = OnlineDetector::calibrate(&profile, config).unwrap();
    assert!(detector
        .thresholds()
        .windows(2)
        .all(|w| w[0] > 0.0 && w[1] > 0.0));
    // Run lengths (steps after the window fills) on fresh no-drift streams.
    let mut lengths = Vec::new();
    for s in 0..300u64 {
        let mut d = detector.clone();
        let mut srng = ChaCha8Rng::seed_from_u64(1000 + s);
        let mut t = 0u64;
        loop {
            let v = reference[srng.random_range(0..reference.len())];
            if let Some(r) = d.update(v) {
                t += 1;
                if r.drifted || t > 3000 {
                    break;
                }
            }
        }
        lengths.push(t as f64);
    }
    let mean = lengths.iter().sum::<f64>() / lengths.len() as f64;
    assert!(
        (100.0..230.0).contains(&mean),
        "mean run length {mean} for ERT 150"
    );
    // With drift the alarm comes fast.
    let mut d = detector.clone();
    let shifted = normal_like(&mut rng, 2000, 1.0, 1.0);
    let delay = shifted
        .iter()
        .filter_map(|v| d.update(*v))
        .position(|r| r.drifted)
        .unwrap();
    assert!(delay < 30, "delay {delay}");
    assert!(OnlineDetector::calibrate(&profile, OnlineConfig { ert: 0.5, ..config }).is_err());
}

/// Three columns (bell-shaped with 1% missing, heavy-tailed positive, categorical codes) of
/// `n` rows, shifted by `shift` (numeric) and with category 3 `tilt` times more common.
fn table(rng: &mut ChaCha8Rng, n: usize, shift: f64, tilt: f64) -> Dataset {
    let a = normal_like(rng, n, 50.0 + shift, 10.0);
    let b: Vec<f64> = normal_like(rng, n, 0.0, 1.0)
        .iter()
        .map(|v| (v + shift / 10.0).exp())
        .collect();
    let x = Array2::from_shape_fn((n, 3), |(i, j)| match j {
        0 if i % 100 == 7 => f32::NAN,
        0 => a[i] as f32,
        1 => b[i] as f32,
        _ => {
            let u: f64 = rng.random::<f64>() * (3.0 + tilt);
            u.floor().min(3.0) as f32
        }
    });
    Dataset::new(x, vec!["a".into(), "b".into(), "c".into()])
        .unwrap()
        .with_categorical(&["c"])
        .unwrap()
}

#[test]
fn profile_from_merged_partition_sketches_agrees_with_the_exact_profile() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let reference = table(&mut rng, 60_000, 0.0, 1.0);
    // Seven partitions, sketched separately, merged forwards and backwards.
    let bounds: Vec<usize> = (0..=7).map(|k| k * 60_000 / 7).collect();
    let parts: Vec<ProfileSketch> = bounds
        .windows(2)
        .map(|w| {
            let rows: Vec<usize> = (w[0]..w[1]).collect();
            ProfileSketch::from_dataset(&reference.select_rows(&rows).unwrap(), 0.002, 1300)
                .unwrap()
        })
        .collect();
    let merge = |order: Vec<usize>| {
        let mut acc = parts[order[0]].clone();
        for &i in &order[1..] {
            acc.merge(&parts[i]).unwrap();
        }
        acc
    };
    let forward = merge((0..7).collect());
    assert_eq!(forward, merge((0..7).rev().collect()));
    let whole = ProfileSketch::from_dataset(&reference, 0.002, 1300).unwrap();
    assert_eq!(forward, whole, "partitioned = one pass");
    for c in &forward.columns {
        assert!(c.sketch.size_bytes() <= 16 * 1024, "{}", c.name);
    }
    let text = serde_json::to_string(&forward).unwrap();
    assert_eq!(
        serde_json::from_str::<ProfileSketch>(&text).unwrap(),
        forward
    );

    let config = ProfileConfig::default();
    let sketched = forward.to_profile(&config, 20_000).unwrap();
    let exact = ReferenceProfile::fit(&reference, &config).unwrap();
    for (s, e) in sketched.columns.iter().zip(&exact.columns) {
        assert_eq!((s.rows, s.missing), (e.rows, e.missing), "{}", s.name);
        assert_eq!(
            (&s.categories, &s.counts),
            (&e.categories, &e.counts),
            "{}",
            s.name
        );
    }
    let bound = forward.ks_error_bound(20_000);
    assert!(bound < 0.03, "bound {bound}");

    let ks_and_chi2 = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    };
    // (shift, tilt, dataset drifted, category column drifted)
    for (shift, tilt, drifted, c_drifted) in [
        (0.0, 1.0, false, false),
        (1.5, 1.0, true, false),
        (0.0, 2.0, false, true),
    ] {
        let current = table(&mut rng, 5_000, shift, tilt);
        let by_sketch = sketched.compare(&current, &DriftConfig::default()).unwrap();
        let by_exact = exact.compare(&current, &DriftConfig::default()).unwrap();
        for (s, e) in by_sketch.columns.iter().zip(&by_exact.columns) {
            assert_eq!(
                s.drifted, e.drifted,
                "shift {shift} tilt {tilt} column {}",
                s.column
            );
            assert_eq!(s.reference_values, e.reference_values);
        }
        assert_eq!(
            by_sketch.dataset.drifted, drifted,
            "shift {shift} tilt {tilt}"
        );
        assert_eq!(
            by_exact.dataset.drifted, drifted,
            "shift {shift} tilt {tilt}"
        );
        assert_eq!(by_sketch.columns[2].drifted, c_drifted, "tilt {tilt}");
        // KS statistics on the numeric columns: within the documented bound of exact.
        let ks = |p: &ReferenceProfile| {
            p.compare(&current, &ks_and_chi2).unwrap().columns[..2]
                .iter()
                .map(|c| c.tests[0].statistic)
                .collect::<Vec<f64>>()
        };
        for (s, e) in ks(&sketched).iter().zip(ks(&exact)) {
            assert!((s - e).abs() <= bound, "{s} vs {e} (bound {bound})");
        }
    }
    let other = ProfileSketch::from_dataset(&reference.drop_features(&["b"]).unwrap(), 0.002, 1300)
        .unwrap();
    assert!(forward.clone().merge(&other).is_err());
    assert!(forward.to_profile(&config, 1).is_err());
}
