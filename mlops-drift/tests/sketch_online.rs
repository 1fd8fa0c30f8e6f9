//! Mergeable sketches (order independence, size, KS error bound) and the ERT-calibrated online
//! detector (run length without drift, delay with drift).

use mlops_core::ColumnKind;
use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
use mlops_drift::stream::{OnlineConfig, OnlineDetector};
use mlops_drift::{ColumnProfile, QuantileSketch};
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
