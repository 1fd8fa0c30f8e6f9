//! ROC AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988), computed from
//! midranks in O(n log n) (Sun & Xu 2014): the standard error online comparisons of two
//! models' AUCs need without resampling.

use serde::{Deserialize, Serialize};

use super::ScoredSamples;
use crate::error::{Error, Result};

/// An AUC with the variance of its estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucWithVariance {
    /// The ROC AUC (ties count half), equal to [`ScoredSamples::roc_auc`] on unweighted rows.
    pub auc: f64,
    /// DeLong's variance of the estimate: `S10 / m + S01 / n` with `m` positives, `n`
    /// negatives and the sample variances (denominators `m - 1`, `n - 1`) of the structural
    /// components.
    pub variance: f64,
    /// Positives.
    pub positives: usize,
    /// Negatives.
    pub negatives: usize,
}

/// Midranks (1-based, ties share their mean rank) of `values`.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn sample_variance(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
}

impl ScoredSamples {
    /// ROC AUC and DeLong's variance of it. Needs unweighted rows and at least two of each
    /// class (a variance needs two values); otherwise an error says which.
    ///
    /// ```
    /// use mlops_core::metrics::ScoredSamples;
    ///
    /// let s = ScoredSamples::new(&[0.0, 0.0, 1.0, 1.0, 1.0], &[0.1, 0.6, 0.35, 0.8, 0.9], None)?;
    /// let a = s.roc_auc_delong()?;
    /// assert!((a.auc - 5.0 / 6.0).abs() < 1e-12);
    /// assert!(a.variance > 0.0);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn roc_auc_delong(&self) -> Result<AucWithVariance> {
        if self.weights().is_some() {
            return Err(Error::invalid(
                "weights",
                "given",
                "unweighted rows for DeLong's variance",
            ));
        }
        let (pos, neg): (Vec<f64>, Vec<f64>) = {
            let mut pos = Vec::new();
            let mut neg = Vec::new();
            for (&l, &s) in self.labels().iter().zip(self.scores()) {
                if l {
                    pos.push(s)
                } else {
                    neg.push(s)
                }
            }
            (pos, neg)
        };
        let (m, n) = (pos.len(), neg.len());
        if m < 2 || n < 2 {
            return Err(Error::UndefinedMetric {
                metric: "roc_auc variance".into(),
                reason: format!(
                    "{m} positive and {n} negative rows; DeLong's variance needs at least 2 of each"
                ),
            });
        }
        let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
        let rank_all = midranks(&all);
        let rank_pos = midranks(&pos);
        let rank_neg = midranks(&neg);
        // V10(x_i): the share of negatives below positive i (ties half).
        let v10: Vec<f64> = (0..m)
            .map(|i| (rank_all[i] - rank_pos[i]) / n as f64)
            .collect();
        // V01(y_j): the share of positives above negative j (ties half).
        let v01: Vec<f64> = (0..n)
            .map(|j| 1.0 - (rank_all[m + j] - rank_neg[j]) / m as f64)
            .collect();
        let auc = v10.iter().sum::<f64>() / m as f64;
        let variance = sample_variance(&v10) / m as f64 + sample_variance(&v01) / n as f64;
        Ok(AucWithVariance {
            auc,
            variance,
            positives: m,
            negatives: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The definition, pair by pair: psi(x, y) = 1, 1/2, 0.
    fn delong_by_definition(pos: &[f64], neg: &[f64]) -> (f64, f64) {
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let (m, n) = (pos.len() as f64, neg.len() as f64);
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / n)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / m)
            .collect();
        let auc = v10.iter().sum::<f64>() / m;
        (auc, sample_variance(&v10) / m + sample_variance(&v01) / n)
    }

    #[test]
    fn matches_the_pairwise_definition_with_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..50 {
            let rows = 4 + case * 3;
            let labels: Vec<f64> = (0..rows)
                .map(|i| {
                    if i < 2 {
                        1.0
                    } else if i < 4 {
                        0.0
                    } else {
                        rng.random_range(0..2) as f64
                    }
                })
                .collect();
            // Coarse scores: many ties.
            let scores: Vec<f64> = labels
                .iter()
                .map(|&l| (rng.random_range(0..6) as f64 + l * 2.0) / 8.0)
                .collect();
            let s = ScoredSamples::new(&labels, &scores, None).unwrap();
            let got = s.roc_auc_delong().unwrap();
            let pos: Vec<f64> = (0..rows)
                .filter(|&i| labels[i] == 1.0)
                .map(|i| scores[i])
                .collect();
            let neg: Vec<f64> = (0..rows)
                .filter(|&i| labels[i] == 0.0)
                .map(|i| scores[i])
                .collect();
            let (auc, var) = delong_by_definition(&pos, &neg);
            assert!(
                (got.auc - auc).abs() < 1e-12,
                "case {case}: {} vs {auc}",
                got.auc
            );
            assert!(
                (got.auc - s.roc_auc().unwrap()).abs() < 1e-12,
                "case {case}"
            );
            assert!(
                (got.variance - var).abs() < 1e-12,
                "case {case}: {} vs {var}",
                got.variance
            );
        }
    }

    #[test]
    fn refuses_weights_and_too_few_rows_of_a_class() {
        let s = ScoredSamples::new(&[1.0, 0.0, 0.0], &[0.9, 0.2, 0.1], None).unwrap();
        assert!(matches!(
            s.roc_auc_delong(),
            Err(Error::UndefinedMetric { .. })
        ));
        let w = ScoredSamples::new(
            &[1.0, 1.0, 0.0, 0.0],
            &[0.9, 0.8, 0.2, 0.1],
            Some(&[1.0; 4]),
        )
        .unwrap();
        let e = w.roc_auc_delong().unwrap_err().to_string();
        assert!(e.contains("weights"), "{e}");
    }
}
