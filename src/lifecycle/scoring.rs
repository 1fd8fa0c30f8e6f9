//! Scoring in the loop (ROC AUC where it is defined: `None` on no rows or one class), and the
//! deliberately broken labels a replay injects to show the canary catching what the gate
//! cannot ([`stale_rule_labels`]).
//!
//! ```
//! use mlops::lifecycle::scoring::scored_auc;
//!
//! assert_eq!(scored_auc(&[0.0, 1.0], &[0.2, 0.8])?, Some(1.0));
//! assert_eq!(scored_auc(&[1.0, 1.0], &[0.2, 0.8])?, None); // one class
//! assert_eq!(scored_auc(&[], &[])?, None);
//! # Ok::<(), mlops::lifecycle::Error>(())
//! ```

use mlops_core::metrics::ScoredSamples;
use mlops_core::model::Predictor;
use mlops_core::Dataset;

use super::{Error, Result};

/// ROC AUC of `model` on `data`; `None` when it is undefined there (no rows, one class).
pub fn auc(model: &dyn Predictor, data: &Dataset) -> Result<Option<f64>> {
    if data.n_rows() == 0 {
        return Ok(None);
    }
    defined_auc(&ScoredSamples::of(model, data)?)
}

/// ROC AUC of scores already taken (the served answers' `labels` and `scores`); `None` when it
/// is undefined there (no rows, one class).
pub fn scored_auc(labels: &[f32], scores: &[f32]) -> Result<Option<f64>> {
    if labels.is_empty() {
        return Ok(None);
    }
    defined_auc(&ScoredSamples::from_f32(labels, scores, None)?)
}

fn defined_auc(s: &ScoredSamples) -> Result<Option<f64>> {
    match s.roc_auc() {
        Ok(v) => Ok(Some(v)),
        Err(mlops_core::Error::UndefinedMetric { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The labels a broken labeling job would produce: instead of confirmed fraud, a rules
/// engine's flag "the top `rate` share of feature F", with `rate` the window's true positive
/// rate (so the base rate looks right) and F the feature that ranks the window's true labels
/// worst (its correlation with them the most negative): a stale rule (in the built-in world,
/// "the oldest accounts", where the new fraud comes from new ones). A model learns the rule perfectly
/// and passes a gate scored on the same labels; only the true labels from production, in the
/// canary, show that it is worse. Returns the relabeled window and the rule in words.
///
/// ```
/// use mlops::core::Dataset;
/// use mlops::lifecycle::scoring::stale_rule_labels;
///
/// // `a` ranks the labels worst (it falls where they rise): the rule flags its top half.
/// let x = mlops::ndarray::array![[3.0f32, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 3.0]];
/// let w = Dataset::new(x, vec!["a".into(), "b".into()])?.with_labels(mlops::ndarray::array![0.0, 0.0, 1.0, 1.0], "y")?;
/// let (broken, how) = stale_rule_labels(&w)?;
/// assert_eq!(broken.labels().unwrap().to_vec(), vec![1.0, 1.0, 0.0, 0.0]);
/// assert!(how.contains("`a >= 2`"), "{how}");
/// # Ok::<(), mlops::lifecycle::Error>(())
/// ```
pub fn stale_rule_labels(window: &Dataset) -> Result<(Dataset, String)> {
    let n = window.n_rows();
    let (Some(y), Some(label)) = (window.labels(), window.label_name()) else {
        return Err(Error::invalid("window.labels", "none", "labels to replace"));
    };
    if n == 0 || window.n_features() == 0 {
        return Err(Error::invalid(
            "window",
            format!("{n} rows, {} features", window.n_features()),
            "rows and features to make a rule of",
        ));
    }
    let label = label.to_string();
    let rate = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let corr = |j: usize| -> f64 {
        let x: Vec<f64> = window
            .features()
            .column(j)
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let (mx, my) = (x.iter().sum::<f64>() / n as f64, rate);
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (xi, yi) in x.iter().zip(y.iter()) {
            let (dx, dy) = (xi - mx, f64::from(*yi) - my);
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if sxx == 0.0 || syy == 0.0 {
            f64::INFINITY // a constant column cannot make a rule
        } else {
            sxy / (sxx * syy).sqrt()
        }
    };
    let j = (0..window.n_features())
        .min_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .unwrap_or(0);
    let mut values: Vec<f32> = window.features().column(j).to_vec();
    values.sort_by(f32::total_cmp);
    let k = ((rate * n as f64).round() as usize).clamp(1, n);
    let cut = values[n - k];
    let column = window.features().column(j).to_owned();
    let flags = column.mapv(|v| f32::from(u8::from(v >= cut)));
    let name = window
        .feature_names()
        .nth(j)
        .unwrap_or_default()
        .to_string();
    Ok((
        window.clone().with_labels(flags, label)?,
        format!(
            "labels replaced by the rule `{name} >= {cut}` (top {:.2}% of the window)",
            rate * 100.0
        ),
    ))
}
