//! Properties every metric must have, on random data (proptest).

use mlops_core::metrics::{Metric, ScoredSamples};
use proptest::prelude::*;

/// Labels with both classes, probability-like scores with ties, and positive weights.
fn cases() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<f64>)> {
    (2usize..60).prop_flat_map(|n| {
        (
            prop::collection::vec(0u8..2, n),
            prop::collection::vec(0u32..=20, n),
            prop::collection::vec(1u32..5, n),
        )
            .prop_filter("both classes", |(y, _, _)| y.contains(&0) && y.contains(&1))
            .prop_map(|(y, s, w)| {
                (
                    y.into_iter().map(f64::from).collect(),
                    s.into_iter().map(|v| f64::from(v) / 20.0).collect(),
                    w.into_iter().map(f64::from).collect(),
                )
            })
    })
}

fn all_metrics(s: &ScoredSamples) -> Vec<f64> {
    Metric::ALL
        .iter()
        .map(|m| m.compute(s, 0.5).unwrap())
        .collect()
}

fn assert_close(a: &[f64], b: &[f64]) {
    for (m, (x, y)) in Metric::ALL.iter().zip(a.iter().zip(b)) {
        assert!((x - y).abs() <= 1e-9, "{m}: {x} vs {y}");
    }
}

proptest! {
    #[test]
    fn auc_of_negated_scores_is_one_minus_auc((y, s, w) in cases()) {
        let neg: Vec<f64> = s.iter().map(|v| -v).collect();
        for weights in [None, Some(w.as_slice())] {
            let a = ScoredSamples::new(&y, &s, weights).unwrap().roc_auc().unwrap();
            let b = ScoredSamples::new(&y, &neg, weights).unwrap().roc_auc().unwrap();
            prop_assert!((a + b - 1.0).abs() < 1e-12, "{} + {} != 1", a, b);
        }
    }

    #[test]
    fn metrics_do_not_depend_on_row_order((y, s, w) in cases(), seed in any::<u64>()) {
        let n = y.len();
        let mut order: Vec<usize> = (0..n).collect();
        // A seeded Fisher-Yates shuffle driven by a simple LCG (the permutation is the input).
        let mut state = seed | 1;
        for i in (1..n).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let p = |v: &[f64]| order.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let a = all_metrics(&ScoredSamples::new(&y, &s, Some(&w)).unwrap());
        let b = all_metrics(&ScoredSamples::new(&p(&y), &p(&s), Some(&p(&w))).unwrap());
        assert_close(&a, &b);
    }

    #[test]
    fn a_weight_of_two_equals_a_duplicated_row((y, s, _w) in cases(), pick in any::<prop::sample::Index>()) {
        let k = pick.index(y.len());
        let mut weights = vec![1.0; y.len()];
        weights[k] = 2.0;
        let weighted = all_metrics(&ScoredSamples::new(&y, &s, Some(&weights)).unwrap());
        let (mut y2, mut s2) = (y.clone(), s.clone());
        y2.push(y[k]);
        s2.push(s[k]);
        let duplicated = all_metrics(&ScoredSamples::new(&y2, &s2, None).unwrap());
        assert_close(&weighted, &duplicated);
    }

    #[test]
    fn unit_weights_equal_no_weights((y, s, _w) in cases()) {
        let ones = vec![1.0; y.len()];
        let a = all_metrics(&ScoredSamples::new(&y, &s, Some(&ones)).unwrap());
        let b = all_metrics(&ScoredSamples::new(&y, &s, None).unwrap());
        assert_close(&a, &b);
    }
}
