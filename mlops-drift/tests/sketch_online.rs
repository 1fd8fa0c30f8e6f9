//! Mergeable sketches (order independence, size, KS error bound) and the ERT-calibrated online
//! detector (run length without drift, delay with drift).

use mlops_core::ColumnKind;
use mlops_core::Dataset;
use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
use mlops_drift::stream::{OnlineConfig, OnlineDetector};
use mlops_drift::{
    CheckedDriftConfig, ColumnProfile, DriftConfig, DriftTest, ProfileConfig, ProfileSketch,
    QuantileSketch, ReferenceProfile,
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

/// The exact ECDF of sorted `values` at `x` (share `<= x`).
fn ecdf(sorted: &[f64], x: f64) -> f64 {
    sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64
}

/// The largest gap between the sketch's ECDF and the exact one, over every sample value.
fn max_rank_gap(sketch: &QuantileSketch, values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup();
    distinct
        .iter()
        .map(|&x| (sketch.cdf(x) - ecdf(&sorted, x)).abs())
        .fold(0.0, f64::max)
}

/// KLL's stated error is the 99th percentile of its largest rank error: a test that checks
/// many sketches allows 1.5× that, so it fails on a real regression (a bucketed sketch was off
/// by 0.4 to 2.0 on the adversarial data below) and not on the 1-in-100 sketch at the edge.
const SLACK: f64 = 1.5;

/// Adversarial columns (name, reference, current shifted by 0.05 of the spread): data far
/// from zero, point masses, heavy tails, values on power-of-two edges.
fn adversarial(rng: &mut ChaCha8Rng, n: usize) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    let bell = |rng: &mut ChaCha8Rng, shift: f64, scale: f64| normal_like(rng, n, shift, scale);
    let cauchy = |rng: &mut ChaCha8Rng, shift: f64| -> Vec<f64> {
        (0..n)
            .map(|_| (std::f64::consts::PI * (rng.random::<f64>() - 0.5)).tan() + shift)
            .collect()
    };
    let mass = |rng: &mut ChaCha8Rng, shift: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                if rng.random::<f64>() < 0.9 {
                    42.0
                } else {
                    42.0 + rng.random::<f64>() + shift
                }
            })
            .collect()
    };
    let edges = |rng: &mut ChaCha8Rng, shift: usize| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let e = rng.random_range(0..8) + shift;
                let p = f64::powi(2.0, e as i32);
                match rng.random_range(0..3) {
                    0 => p,
                    1 => p.next_up(),
                    _ => p.next_down(),
                }
            })
            .collect()
    };
    let years = |rng: &mut ChaCha8Rng, shift: f64| -> Vec<f64> {
        (0..n)
            .map(|_| {
                (2015 + rng.random_range(0..4)) as f64
                    + if rng.random::<f64>() < shift {
                        1.0
                    } else {
                        0.0
                    }
            })
            .collect()
    };
    vec![
        (
            "unix_times",
            bell(rng, 1.7e9, 1e5),
            bell(rng, 1.7e9 + 0.05 * 1e5, 1e5),
        ),
        ("kelvin", bell(rng, 290.0, 5.0), bell(rng, 290.25, 5.0)),
        ("years", years(rng, 0.0), years(rng, 0.1)),
        ("point_mass", mass(rng, 0.0), mass(rng, 0.3)),
        ("cauchy", cauchy(rng, 0.0), cauchy(rng, 0.1)),
        ("power_of_two_edges", edges(rng, 0), edges(rng, 1)),
        ("standard", bell(rng, 0.0, 1.0), bell(rng, 0.05, 1.0)),
    ]
}

#[test]
fn merged_partitions_keep_exact_counts_and_the_rank_error_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut values = normal_like(&mut rng, 200_000, 1.7e9, 1e5);
    values[17] = f64::NAN;
    values[99_999] = f64::NAN;
    let parts: Vec<QuantileSketch> = values
        .chunks(7_000)
        .map(|c| QuantileSketch::from_values(c, 400).unwrap())
        .collect();
    let fold = |order: &[usize]| {
        let mut acc = QuantileSketch::new(400).unwrap();
        for &i in order {
            acc.merge(&parts[i]).unwrap();
        }
        acc
    };
    let forward = fold(&(0..parts.len()).collect::<Vec<_>>());
    let backward = fold(&(0..parts.len()).rev().collect::<Vec<_>>());
    let whole = QuantileSketch::from_values(&values, 400).unwrap();
    for (what, s) in [
        ("forward", &forward),
        ("backward", &backward),
        ("one pass", &whole),
    ] {
        assert_eq!((s.count(), s.missing()), (199_998, 2), "{what}");
        let gap = max_rank_gap(s, &values);
        assert!(
            gap <= SLACK * s.rank_error(),
            "{what}: rank gap {gap} > {SLACK} x {}",
            s.rank_error()
        );
        assert!(
            s.size_bytes() < 12 * 1024,
            "{what}: {} bytes",
            s.size_bytes()
        );
    }
    assert!(
        (0.005..0.012).contains(&whole.rank_error()),
        "{}",
        whole.rank_error()
    );
    // A sketch holding every value is exact.
    let small = QuantileSketch::from_values(&values[..100], 400).unwrap();
    assert!(small.is_exact() && small.rank_error() == 0.0);
    assert_eq!(max_rank_gap(&small, &values[..100]), 0.0);
    // Other k merge (the result has the larger error); a bad image is an error.
    let mut coarse = QuantileSketch::from_values(&values[..50_000], 100).unwrap();
    coarse.merge(&forward).unwrap();
    assert!(coarse.rank_error() > forward.rank_error());
    assert!(QuantileSketch::from_bytes(&[1, 2, 3], 0).is_err());
    assert!(QuantileSketch::new(4).is_err());
}

#[test]
fn sketched_ks_stays_within_its_bound_wherever_the_data_sit() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (name, a, b) in adversarial(&mut rng, 200_000) {
        let exact = ks_2samp(&a, &b, Alternative::TwoSided, KsMethod::Asymp)
            .unwrap()
            .statistic;
        let sa = QuantileSketch::from_values(&a, 400).unwrap();
        let sb = QuantileSketch::from_values(&b, 400).unwrap();
        let ks = sa.ks_statistic(&sb);
        assert!(
            (ks.statistic - exact).abs() <= ks.error_bound,
            "{name}: sketched KS {} vs exact {exact} (bound {})",
            ks.statistic,
            ks.error_bound
        );
        assert!(ks.error_bound < 0.02, "{name}: bound {}", ks.error_bound);
        // The pointwise ECDF bound, on each side.
        for (side, s, v) in [("reference", &sa, &a), ("current", &sb, &b)] {
            let gap = max_rank_gap(s, v);
            assert!(gap <= SLACK * s.rank_error(), "{name} {side}: gap {gap}");
        }
        // A shift the exact test sees is not made invisible.
        if exact > 2.0 * ks.error_bound {
            assert!(
                ks.statistic > 0.5 * exact,
                "{name}: {} vs {exact}",
                ks.statistic
            );
        }
        // Worst-case size, measured on the serialized image.
        assert!(
            sa.size_bytes() < 12 * 1024,
            "{name}: {} bytes",
            sa.size_bytes()
        );
    }
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
        // 3 × ERT: with 120 (0.8 × ERT) the held last threshold made runs 16% too long.
        calibrated_steps: 450,
        seed: 5,
    };
    let detector = OnlineDetector::calibrate(&profile, config).unwrap();
    assert!(detector
        .thresholds()
        .windows(2)
        .all(|w| w[0] > 0.0 && w[1] > 0.0));
    // Run lengths (steps after the window fills) on fresh no-drift streams.
    let mut lengths = Vec::new();
    // Run lengths are about geometric (sd ≈ mean), so 1,000 streams put the mean within
    // about 5 standard errors when it is within 15% of the target.
    for s in 0..1000u64 {
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
    eprintln!(
        "mean run length {mean} for ERT 150 over {} streams",
        lengths.len()
    );
    assert!(
        (mean - 150.0).abs() <= 0.15 * 150.0,
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
            ProfileSketch::from_dataset(&reference.select_rows(&rows).unwrap(), 400).unwrap()
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
    let backward = merge((0..7).rev().collect());
    let whole = ProfileSketch::from_dataset(&reference, 400).unwrap();
    for (f, (b, w)) in forward
        .columns
        .iter()
        .zip(backward.columns.iter().zip(&whole.columns))
    {
        // Counts are exact in any order; the sketches agree within their bounds.
        assert_eq!(f.categories, w.categories, "{}", f.name);
        assert_eq!(
            (f.sketch.count(), f.sketch.missing()),
            (w.sketch.count(), w.sketch.missing())
        );
        assert_eq!(
            (b.sketch.count(), b.sketch.missing()),
            (w.sketch.count(), w.sketch.missing())
        );
        let ks = f.sketch.ks_statistic(&w.sketch);
        assert!(ks.statistic <= ks.error_bound, "{}: {ks:?}", f.name);
        assert!(f.sketch.size_bytes() < 12 * 1024, "{}", f.name);
    }
    let text = serde_json::to_string(&forward).unwrap();
    let back = serde_json::from_str::<ProfileSketch>(&text).unwrap();
    for (a, b) in back.columns.iter().zip(&forward.columns) {
        assert_eq!(a.sketch.to_bytes(), b.sketch.to_bytes(), "{}", a.name);
        assert_eq!(a.sketch.missing(), b.sketch.missing());
    }

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
    }
    .check()
    .unwrap();
    // (shift, tilt, dataset drifted, category column drifted)
    for (shift, tilt, drifted, c_drifted) in [
        (0.0, 1.0, false, false),
        (1.5, 1.0, true, false),
        (0.0, 2.0, false, true),
    ] {
        let current = table(&mut rng, 5_000, shift, tilt);
        let by_sketch = sketched
            .compare(&current, &CheckedDriftConfig::default())
            .unwrap();
        let by_exact = exact
            .compare(&current, &CheckedDriftConfig::default())
            .unwrap();
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
    let other =
        ProfileSketch::from_dataset(&reference.drop_features(&["b"]).unwrap(), 400).unwrap();
    assert!(forward.clone().merge(&other).is_err());
    assert!(forward.to_profile(&config, 1).is_err());
}

mod property {
    //! A seeded property test: wherever the data sit and whatever their shape, the sketch's
    //! ECDF stays within its stated rank error of the exact one, and its image stays small.

    use super::{max_rank_gap, SLACK};
    use mlops_drift::QuantileSketch;
    use proptest::prelude::{any, prop_assert, prop_oneof, proptest, Just, ProptestConfig};
    use proptest::test_runner::RngSeed;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` values of `family` (0 bell, 1 Cauchy, 2 a point mass plus a bell, 3 integers) at
    /// `offset` with spread 10^`log_scale`.
    fn draw(seed: u64, family: u8, offset: f64, log_scale: f64, mass: f64, n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let scale = 10f64.powf(log_scale);
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let bell = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
                offset
                    + scale
                        * match family {
                            0 => bell,
                            1 => (std::f64::consts::PI * (u - 0.5)).tan(),
                            2 if u < mass => 0.0,
                            2 => bell,
                            _ => (u * 7.0).floor(),
                        }
            })
            .collect()
    }

    proptest! {
        // Seeded: the same 24 adversarial cases on every run and machine (the sketch's own
        // coin is the only randomness left, which the bound covers).
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: RngSeed::Fixed(20_261_130),
            ..ProptestConfig::default()
        })]
        #[test]
        fn the_rank_error_bound_holds_on_adversarial_data(
            seed in any::<u64>(),
            family in 0u8..4,
            offset in prop_oneof![Just(0.0), Just(1e3), Just(1.7e9), Just(-1e12)],
            log_scale in -3.0f64..6.0,
            mass in 0.0f64..0.95,
            n in 2_000usize..40_000,
        ) {
            let values = draw(seed, family, offset, log_scale, mass, n);
            let s = QuantileSketch::from_values(&values, 400).unwrap();
            let gap = max_rank_gap(&s, &values);
            prop_assert!(gap <= SLACK * s.rank_error(), "gap {gap}, bound {}", s.rank_error());
            prop_assert!(s.size_bytes() < 12 * 1024, "{} bytes", s.size_bytes());
        }
    }
}

#[test]
fn a_sketch_profile_refuses_more_representatives_than_its_documented_maximum() {
    use mlops_drift::{ProfileConfig, ProfileSketch, MAX_REPRESENTATIVES};
    let data = mlops_core::Dataset::new(
        ndarray::Array2::from_shape_fn((50, 1), |(i, _)| i as f32),
        vec!["x".into()],
    )
    .unwrap();
    let sketch = ProfileSketch::from_dataset(&data, 200).unwrap();
    for r in [MAX_REPRESENTATIVES + 1, 1 << 40, usize::MAX] {
        let e = sketch
            .to_profile(&ProfileConfig::default(), r)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "invalid ProfileSketch::to_profile representatives = {r}"
            )),
            "{e}"
        );
    }
    assert!(sketch.to_profile(&ProfileConfig::default(), 1000).is_ok());
}
