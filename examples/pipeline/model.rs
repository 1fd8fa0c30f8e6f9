//! Scoring in the loop (ROC AUC where it is defined), and the deliberately broken labels of
//! `--corrupt-retrain-labels`. The search and its settings are `mlops::lifecycle::search`.

use anyhow::Context;
use mlops::core::metrics::ScoredSamples;
use mlops::core::model::Predictor;
use mlops::core::Dataset;

/// ROC AUC of `model` on `data`; `None` when it is undefined there (no rows, one class).
pub fn auc(model: &dyn Predictor, data: &Dataset) -> anyhow::Result<Option<f64>> {
    if data.n_rows() == 0 {
        return Ok(None);
    }
    defined_auc(&scored(model, data)?)
}

/// ROC AUC of scores already taken (the served answers' `labels` and `scores`); `None` when it
/// is undefined there (no rows, one class).
pub fn scored_auc(labels: &[f32], scores: &[f32]) -> anyhow::Result<Option<f64>> {
    if labels.is_empty() {
        return Ok(None);
    }
    defined_auc(&ScoredSamples::from_f32(labels, scores, None)?)
}

fn defined_auc(s: &ScoredSamples) -> anyhow::Result<Option<f64>> {
    match s.roc_auc() {
        Ok(v) => Ok(Some(v)),
        Err(mlops::core::Error::UndefinedMetric { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `model`'s scores of `data` with its labels ([`ScoredSamples::of`]: a row the model cannot
/// score is an error naming it).
pub fn scored(model: &dyn Predictor, data: &Dataset) -> anyhow::Result<ScoredSamples> {
    Ok(ScoredSamples::of(model, data)?)
}

/// The labels a broken labeling job would produce: instead of confirmed fraud, a rules
/// engine's flag "the top `rate` share of feature F", with `rate` the window's true positive
/// rate (so the base rate looks right) and F the feature that ranks the window's true labels
/// worst (its correlation with them the most negative): a stale rule (in the built-in world,
/// "the oldest accounts", where the new fraud comes from new ones). A model learns the rule perfectly
/// and passes a gate scored on the same labels; only the true labels from production, in the
/// canary, show that it is worse.
pub fn corrupt_labels(window: &Dataset) -> anyhow::Result<(Dataset, String)> {
    let y = window.labels().context("labels to corrupt")?;
    let label = window.label_name().context("a label name")?.to_string();
    let n = window.n_rows();
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
        .context("a feature")?;
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
