//! Training data as the trainer needs it: checked, standardized, row-major `f32`, with the
//! per-row loss coefficients folded from sample weights, class weights and `pos_weight`.

use mlops_core::model::Standardization;
use mlops_core::Dataset;

use crate::config::{ClassWeight, TrainConfig};
use crate::error::{Error, Result};

/// One split ready for tensors.
pub(crate) struct Prepared {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Standardized features, row-major.
    pub(crate) x: Vec<f32>,
    /// Labels as 0.0 / 1.0.
    pub(crate) y: Vec<f32>,
    /// Sample weights, if the dataset has them.
    pub(crate) weights: Option<Vec<f32>>,
}

/// Labels of `data`, refused when missing or not 0/1.
fn labels(data: &Dataset, role: &str) -> Result<Vec<f32>> {
    let y = data.labels().ok_or_else(|| {
        Error::invalid(
            format!("{role} labels"),
            "none",
            "a label column (0 = negative, 1 = positive)",
        )
    })?;
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
        return Err(Error::invalid(
            format!("{role} label at row {i}"),
            v,
            "0 or 1",
        ));
    }
    Ok(y.to_vec())
}

/// Refuses non-finite features, naming the column and row.
fn check_finite(data: &Dataset, role: &str) -> Result<()> {
    Ok(data.check_finite(
        role,
        "a finite number (impute missing values before training)",
    )?)
}

/// Per-feature mean and standard deviation (ddof 0) of the training split; a constant
/// feature gets std 1 so it passes through centred.
pub(crate) fn fit_standardization(data: &Dataset) -> Standardization {
    let x = data.features();
    let n = x.nrows().max(1) as f64;
    let mut mean = Vec::with_capacity(x.ncols());
    let mut std = Vec::with_capacity(x.ncols());
    for col in x.columns() {
        let m = col.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
        let var = col.iter().map(|v| (f64::from(*v) - m).powi(2)).sum::<f64>() / n;
        let s = var.sqrt();
        mean.push(m as f32);
        std.push(if s.is_finite() && s > 1e-12 {
            s as f32
        } else {
            1.0
        });
    }
    Standardization { mean, std }
}

/// Checks `data` (labels 0/1, finite features, `expected_features` in order) and standardizes.
pub(crate) fn prepare(
    data: &Dataset,
    role: &str,
    standardization: &Standardization,
    expected_features: &[String],
) -> Result<Prepared> {
    let names: Vec<String> = data.feature_names().map(str::to_string).collect();
    if names != expected_features {
        return Err(Error::invalid(
            format!("{role} feature columns"),
            format!("{names:?}"),
            format!("the training columns in order: {expected_features:?}"),
        ));
    }
    if data.n_rows() == 0 {
        return Err(Error::invalid(
            format!("{role} rows"),
            0,
            "at least one row",
        ));
    }
    let y = labels(data, role)?;
    check_finite(data, role)?;
    let (rows, cols) = (data.n_rows(), data.n_features());
    let mut x = Vec::with_capacity(rows * cols);
    for row in data.features().rows() {
        for (j, v) in row.iter().enumerate() {
            x.push((v - standardization.mean[j]) / standardization.std[j]);
        }
    }
    Ok(Prepared {
        rows,
        cols,
        x,
        y,
        weights: data.weights().map(|w| w.to_vec()),
    })
}

/// The loss coefficients `(c1, c2)` of every row (see `network::weighted_bce`).
pub(crate) fn loss_coefficients(data: &Prepared, config: &TrainConfig) -> (Vec<f32>, Vec<f32>) {
    let positives = data.y.iter().filter(|v| **v == 1.0).count();
    let n = data.rows as f64;
    let (neg_w, pos_w) = match config.class_weight {
        None => (1.0, 1.0),
        Some(ClassWeight::Weights { negative, positive }) => (negative, positive),
        Some(ClassWeight::Balanced) => (
            n / (2.0 * (data.rows - positives).max(1) as f64),
            n / (2.0 * positives.max(1) as f64),
        ),
    };
    let pw = config.pos_weight.unwrap_or(1.0) as f32;
    let mut c1 = Vec::with_capacity(data.rows);
    let mut c2 = Vec::with_capacity(data.rows);
    for (i, &y) in data.y.iter().enumerate() {
        let sample = match (&data.weights, config.use_sample_weights) {
            (Some(w), true) => w[i],
            _ => 1.0,
        };
        let w = sample * if y == 1.0 { pos_w as f32 } else { neg_w as f32 };
        c1.push(w * (pw * y + 1.0 - y));
        c2.push(w * pw * y);
    }
    (c1, c2)
}
