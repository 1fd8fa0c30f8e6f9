//! Streaming detectors on seeded streams with known drift.

use mlops_core::ColumnKind;
use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
use mlops_drift::stream::{
    Adwin, ConceptDriftDetector, ConceptShift, Ddm, DriftSignal, HyperplaneGenerator, PageHinkley,
    SeaGenerator, WindowConfig, WindowedDetector,
};
use mlops_drift::ColumnProfile;

/// Error stream of a fixed classifier that learned SEA concept 0 (θ = 8), on a stream that
/// switches to concept 3 (θ = 9.5) at `position` (abruptly, or over `width` rows).
fn sea_errors(position: u64, width: u64, len: u64, seed: u64) -> Vec<f64> {
    let mut sea = SeaGenerator::new(0, 3, Some(ConceptShift { position, width }), 0.1, seed);
    (0..len)
        .map(|_| {
            let (x, y) = sea.next_row();
            f64::from(u8::from((x[0] + x[1] <= 8.0) != y))
        })
        .collect()
}

fn first_drift(detector: &mut dyn ConceptDriftDetector, stream: &[f64]) -> Option<usize> {
    stream
        .iter()
        .position(|&e| detector.update(e) == DriftSignal::Drift)
}

#[test]
fn concept_detectors_find_abrupt_sea_drift_and_stay_quiet_before() {
    for seed in 0..5 {
        let errors = sea_errors(5000, 0, 10_000, seed);
        let mut adwin = Adwin::new(0.002).unwrap();
        let mut ph = PageHinkley::default();
        // DDM's default warm start (30) is jumpy at a 10% error rate: its first minimum of
        // p + s comes from a handful of values. 1000 values settle it.
        let mut ddm = Ddm::new(1000, 2.0, 3.0);
        for (name, d) in [
            ("adwin", &mut adwin as &mut dyn ConceptDriftDetector),
            ("page-hinkley", &mut ph),
            ("ddm", &mut ddm),
        ] {
            let at = first_drift(d, &errors)
                .unwrap_or_else(|| panic!("{name} seed {seed}: no drift found"));
            assert!(
                (5000..7000).contains(&at),
                "{name} seed {seed}: first drift at {at}"
            );
        }
    }
}

#[test]
fn gradual_drift_is_found_later_than_its_centre_minus_width() {
    let errors = sea_errors(5000, 1000, 12_000, 11);
    let mut adwin = Adwin::new(0.002).unwrap();
    let at = first_drift(&mut adwin, &errors).unwrap();
    assert!((4000..8000).contains(&at), "{at}");
}

#[test]
fn adwin_false_alarms_are_rare_on_a_stationary_stream() {
    let mut alarms = 0;
    for seed in 0..10 {
        let errors = sea_errors(u64::MAX, 0, 20_000, 100 + seed);
        let mut adwin = Adwin::new(0.002).unwrap();
        alarms += errors
            .iter()
            .filter(|&&e| adwin.update(e) == DriftSignal::Drift)
            .count();
    }
    assert!(
        alarms <= 2,
        "{alarms} false alarms in 200,000 stationary values"
    );
}

#[test]
fn ddm_warns_before_it_drifts() {
    let errors = sea_errors(3000, 0, 8000, 5);
    let mut ddm = Ddm::new(1000, 2.0, 3.0);
    let signals: Vec<DriftSignal> = errors.iter().map(|&e| ddm.update(e)).collect();
    let warn = signals
        .iter()
        .position(|s| *s == DriftSignal::Warning)
        .unwrap();
    let drift = signals
        .iter()
        .position(|s| *s == DriftSignal::Drift)
        .unwrap();
    assert!(
        warn <= drift && drift >= 3000,
        "warning {warn}, drift {drift}"
    );
}

#[test]
fn generators_are_seeded() {
    let a: Vec<_> = (0..50)
        .map({
            let mut g = SeaGenerator::new(0, 1, None, 0.1, 9);
            move |_| g.next_row()
        })
        .collect();
    let b: Vec<_> = (0..50)
        .map({
            let mut g = SeaGenerator::new(0, 1, None, 0.1, 9);
            move |_| g.next_row()
        })
        .collect();
    assert_eq!(a, b);
    let mut h1 = HyperplaneGenerator::new(5, 2, 0.001, 0.1, 4);
    let mut h2 = HyperplaneGenerator::new(5, 2, 0.001, 0.1, 4);
    for _ in 0..100 {
        assert_eq!(h1.next_row(), h2.next_row());
    }
    // The hyperplane concept drifts: the labelling of fixed probe points changes.
    let mut h = HyperplaneGenerator::new(4, 2, 0.01, 0.0, 8);
    let probes: Vec<Vec<f64>> = (0..500)
        .map(|i| {
            (0..4)
                .map(|j| ((i * (7 + j)) % 101) as f64 / 101.0)
                .collect()
        })
        .collect();
    let before: Vec<bool> = probes.iter().map(|x| h.label(x)).collect();
    for _ in 0..5000 {
        h.next_row();
    }
    let changed = probes
        .iter()
        .zip(&before)
        .filter(|(x, b)| h.label(x) != **b)
        .count();
    assert!(changed > 25, "{changed} of 500 probe labels changed");
}

#[test]
fn windowed_statistic_equals_ks_2samp_on_the_window() {
    let reference: Vec<f64> = (0..3000).map(|i| ((i * 37) % 211) as f64 / 7.0).collect();
    let profile =
        ColumnProfile::fit("x", ColumnKind::Numeric, reference.iter().copied(), 10).unwrap();
    let config = WindowConfig {
        window: 300,
        step: 50,
        ..WindowConfig::default()
    };
    let mut w = WindowedDetector::new(&profile, config).unwrap();
    let stream: Vec<f64> = (0..2000)
        .map(|i| ((i * 53) % 199) as f64 / 7.0 + if i > 1000 { 3.0 } else { 0.0 })
        .collect();
    let mut checked = 0;
    for (t, &v) in stream.iter().enumerate() {
        if let Some(r) = w.update(v) {
            let window = &stream[t + 1 - 300..=t];
            let want = ks_2samp(&reference, window, Alternative::TwoSided, KsMethod::Auto).unwrap();
            assert!(
                (r.statistic - want.statistic).abs() < 1e-12,
                "at {t}: {} vs {}",
                r.statistic,
                want.statistic
            );
            assert!(
                (r.p_value - want.p_value).abs() <= 1e-9 * want.p_value.max(1e-300),
                "at {t}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, (2000 - 300) / 50 + 1);
    assert!(WindowedDetector::new(
        &profile,
        WindowConfig {
            window: 1,
            ..config
        }
    )
    .is_err());
}

/// Every window shape (step below, equal to and above the window; step 1), with ties,
/// signed zeros and missing values in the stream: each test equals `ks_2samp` on the last
/// `window` non-missing values.
#[test]
fn windowed_detector_matches_ks_2samp_for_every_step_shape() {
    let reference: Vec<f64> = (0..2000)
        .map(|i| ((i * 41) % 97) as f64 / 4.0 - 12.0)
        .collect();
    let profile =
        ColumnProfile::fit("x", ColumnKind::Numeric, reference.iter().copied(), 10).unwrap();
    let stream: Vec<f64> = (0..1500)
        .map(|i| match i % 31 {
            0 => f64::NAN,
            1 => -0.0,
            2 => 0.0,
            _ => ((i * 29) % 101) as f64 / 4.0 - 12.0 + if i > 700 { 1.5 } else { 0.0 },
        })
        .collect();
    for (window, step) in [(50, 1), (64, 64), (40, 150), (200, 7)] {
        let config = WindowConfig {
            window,
            step,
            ..WindowConfig::default()
        };
        let mut w = WindowedDetector::new(&profile, config).unwrap();
        let mut present = Vec::new();
        let mut tests = 0;
        for &v in &stream {
            if !v.is_nan() {
                present.push(v);
            }
            if let Some(r) = w.update(v) {
                let window_values = &present[present.len() - window..];
                let want = ks_2samp(
                    &reference,
                    window_values,
                    Alternative::TwoSided,
                    KsMethod::Auto,
                )
                .unwrap();
                assert_eq!(r.position, present.len() as u64);
                assert!(
                    (r.statistic - want.statistic).abs() < 1e-12,
                    "window {window} step {step} at {}: {} vs {}",
                    present.len(),
                    r.statistic,
                    want.statistic
                );
                tests += 1;
            }
        }
        let first = window.max(step);
        assert_eq!(
            tests,
            (present.len() - first) / step + 1,
            "window {window} step {step}"
        );
    }
}
