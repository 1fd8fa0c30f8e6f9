//! Multiple-testing correction of a family of p-values (statsmodels' `multipletests`
//! definitions), so that testing 30 columns at α = 0.05 does not flag one by chance.

use serde::{Deserialize, Serialize};

/// A correction method.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// No correction: each p-value against α.
    None,
    /// Bonferroni: `min(1, m p)` (family-wise error).
    Bonferroni,
    /// Holm's step-down (family-wise error, uniformly more powerful than Bonferroni).
    #[default]
    Holm,
    /// Benjamini–Hochberg (false discovery rate, independent or positively dependent tests).
    BenjaminiHochberg,
    /// Benjamini–Yekutieli (false discovery rate under any dependence).
    BenjaminiYekutieli,
}

impl Correction {
    /// The serialized name (`none`, `bonferroni`, `holm`, `benjamini_hochberg`, `benjamini_yekutieli`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Correction::None => "none",
            Correction::Bonferroni => "bonferroni",
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "benjamini_hochberg",
            Correction::BenjaminiYekutieli => "benjamini_yekutieli",
        }
    }
}

impl Correction {
    /// Every method, in a fixed order.
    pub const ALL: [Correction; 5] = [
        Correction::None,
        Correction::Bonferroni,
        Correction::Holm,
        Correction::BenjaminiHochberg,
        Correction::BenjaminiYekutieli,
    ];

    /// Adjusted p-values, in the input order.
    ///
    /// ```
    /// use mlops_drift::Correction;
    ///
    /// let close = |a: Vec<f64>, b: [f64; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    /// let p = [0.01, 0.04, 0.03, 0.2];
    /// assert!(close(Correction::Bonferroni.adjust(&p), [0.04, 0.16, 0.12, 0.8]));
    /// assert!(close(Correction::Holm.adjust(&p), [0.04, 0.09, 0.09, 0.2]));
    /// assert!(close(Correction::BenjaminiHochberg.adjust(&p), [0.04, 0.0533333333333333, 0.0533333333333333, 0.2]));
    /// ```
    pub fn adjust(self, pvalues: &[f64]) -> Vec<f64> {
        let m = pvalues.len();
        if m == 0 {
            return Vec::new();
        }
        let mf = m as f64;
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| pvalues[a].total_cmp(&pvalues[b]));
        let mut adjusted = vec![0.0; m];
        match self {
            Correction::None => adjusted.copy_from_slice(pvalues),
            Correction::Bonferroni => {
                for (a, p) in adjusted.iter_mut().zip(pvalues) {
                    *a = (p * mf).min(1.0);
                }
            }
            Correction::Holm => {
                let mut running: f64 = 0.0;
                for (rank, &i) in order.iter().enumerate() {
                    running = running.max(((mf - rank as f64) * pvalues[i]).min(1.0));
                    adjusted[i] = running;
                }
            }
            Correction::BenjaminiHochberg | Correction::BenjaminiYekutieli => {
                let c = if self == Correction::BenjaminiYekutieli {
                    (1..=m).map(|i| 1.0 / i as f64).sum()
                } else {
                    1.0
                };
                let mut running: f64 = 1.0;
                for (rank, &i) in order.iter().enumerate().rev() {
                    running = running.min((c * mf / (rank + 1) as f64 * pvalues[i]).min(1.0));
                    adjusted[i] = running;
                }
            }
        }
        adjusted
    }
}
