//! Probability calibration: isotonic regression (scikit-learn's `IsotonicRegression`, pool
//! adjacent violators, `out_of_bounds="clip"`) and Platt's sigmoid (scikit-learn's
//! `CalibratedClassifierCV(method="sigmoid")`), fitted on held-out scores; the reliability
//! curve (`sklearn.calibration.calibration_curve`) and the expected calibration error.
//!
//! A model trained on a weighted loss (our fraud MLP weights the rare class up) scores
//! probabilities that are off by design: rank metrics do not mind, but anything that reads
//! them as probabilities (expected counts, CBPE's estimated performance, a cost threshold)
//! needs them calibrated first.
//!
//! ```
//! use mlops_core::calibration::{Calibration, CalibrationMethod};
//!
//! // Scores twice too high: the calibrator learns the map back.
//! let scores: Vec<f64> = (0..1000).map(|i| (i as f64 / 1000.0).sqrt()).collect();
//! let labels: Vec<f64> = (0..1000).map(|i| f64::from(i % 10 < (i / 100))).collect();
//! let iso = Calibration::fit(CalibrationMethod::Isotonic, &scores, &labels, None)?;
//! assert!(iso.apply(0.0) <= iso.apply(0.5) && iso.apply(0.5) <= iso.apply(1.0));
//! assert_eq!(iso.apply(-3.0), iso.apply(0.0)); // clipped to the fitted range
//! let platt = Calibration::fit(CalibrationMethod::Platt, &scores, &labels, None)?;
//! assert!(platt.apply(0.9) > platt.apply(0.1));
//! # Ok::<(), mlops_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to calibrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// A non-decreasing step map with linear interpolation (scikit-learn's isotonic).
    Isotonic,
    /// `1 / (1 + exp(a s + b))` (Platt, with his prior-corrected targets).
    Platt,
}

/// A fitted calibration map from a model's score to a probability, stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Calibration {
    /// Isotonic: the fitted points (scores increasing, probabilities non-decreasing); a score
    /// between two points is interpolated linearly, one outside them clipped to the ends.
    Isotonic {
        /// Scores, strictly increasing.
        x: Vec<f64>,
        /// Their calibrated probabilities, non-decreasing.
        y: Vec<f64>,
    },
    /// Platt: `p = 1 / (1 + exp(a s + b))`.
    Platt {
        /// The slope (negative when higher scores mean more positives).
        a: f64,
        /// The intercept.
        b: f64,
    },
}

/// The most points an isotonic map may hold (a map read from a file sizes an allocation).
pub const MAX_ISOTONIC_POINTS: usize = 1 << 24;

impl Calibration {
    /// Fits `method` on held-out `scores` and their `labels` (0 or 1), with optional sample
    /// weights (a row of weight 0 takes no part). Errors name the bad value: a non-finite
    /// score, a label that is not 0 or 1, no rows of positive weight, one class only.
    pub fn fit(
        method: CalibrationMethod,
        scores: &[f64],
        labels: &[f64],
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        let rows = checked_rows(scores, labels, weights)?;
        let fitted = match method {
            CalibrationMethod::Isotonic => isotonic(rows),
            CalibrationMethod::Platt => platt(&rows)?,
        };
        // What is fitted loads back (a map of more points than a stored one may hold is
        // refused here, not when it is read).
        fitted.validate()?;
        Ok(fitted)
    }

    /// The calibrated probability of `score`; NaN for a NaN score (never a number for no
    /// input).
    pub fn apply(&self, score: f64) -> f64 {
        if score.is_nan() {
            return f64::NAN;
        }
        match self {
            Calibration::Isotonic { x, y } => interpolate(x, y, score),
            Calibration::Platt { a, b } => {
                let z = a * score + b;
                // 1 / (1 + e^z), stable on both sides.
                if z >= 0.0 {
                    let e = (-z).exp();
                    e / (1.0 + e)
                } else {
                    1.0 / (1.0 + z.exp())
                }
            }
        }
    }

    /// Checks a calibration read from a file: finite numbers, an isotonic map's scores
    /// strictly increasing and probabilities non-decreasing in [0, 1], at least one point and
    /// at most [`MAX_ISOTONIC_POINTS`].
    ///
    /// ```
    /// use mlops_core::calibration::Calibration;
    ///
    /// let bad = Calibration::Isotonic { x: vec![0.0, 0.5], y: vec![0.6, 0.2] };
    /// assert!(bad.validate().unwrap_err().to_string().contains("calibration.y[1]"));
    /// assert!(Calibration::Platt { a: -3.0, b: 1.0 }.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            Calibration::Platt { a, b } => {
                for (name, v) in [("a", a), ("b", b)] {
                    if !v.is_finite() {
                        return Err(Error::invalid(
                            format!("calibration.{name}"),
                            v,
                            "a finite number",
                        ));
                    }
                }
            }
            Calibration::Isotonic { x, y } => {
                if x.is_empty() || x.len() != y.len() || x.len() > MAX_ISOTONIC_POINTS {
                    return Err(Error::invalid(
                        "calibration.x",
                        format!("{} scores and {} probabilities", x.len(), y.len()),
                        format!("as many of each, from 1 to {MAX_ISOTONIC_POINTS}"),
                    ));
                }
                for i in 0..x.len() {
                    if !x[i].is_finite() || (i > 0 && x[i] <= x[i - 1]) {
                        return Err(Error::invalid(
                            format!("calibration.x[{i}]"),
                            x[i],
                            "finite scores, strictly increasing",
                        ));
                    }
                    if !(0.0..=1.0).contains(&y[i]) || (i > 0 && y[i] < y[i - 1]) {
                        return Err(Error::invalid(
                            format!("calibration.y[{i}]"),
                            y[i],
                            "probabilities in [0, 1], non-decreasing",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// One held-out row: score, label, weight.
type Row = (f64, f64, f64);

fn checked_rows(scores: &[f64], labels: &[f64], weights: Option<&[f64]>) -> Result<Vec<Row>> {
    if scores.len() != labels.len() {
        return Err(Error::LengthMismatch {
            left: "scores",
            left_len: scores.len(),
            right: "labels",
            right_len: labels.len(),
        });
    }
    if let Some(w) = weights {
        if w.len() != scores.len() {
            return Err(Error::LengthMismatch {
                left: "scores",
                left_len: scores.len(),
                right: "sample_weight",
                right_len: w.len(),
            });
        }
    }
    let mut rows = Vec::with_capacity(scores.len());
    let (mut pos, mut neg) = (0.0, 0.0);
    for i in 0..scores.len() {
        let (s, y) = (scores[i], labels[i]);
        let w = weights.map_or(1.0, |w| w[i]);
        if !s.is_finite() {
            return Err(Error::invalid(
                format!("scores[{i}]"),
                s,
                "a finite score (a model fed a missing value says NaN: drop or impute the row first)",
            ));
        }
        if y != 0.0 && y != 1.0 {
            return Err(Error::invalid(format!("labels[{i}]"), y, "0 or 1"));
        }
        if !(w.is_finite() && w >= 0.0) {
            return Err(Error::invalid(
                format!("sample_weight[{i}]"),
                w,
                "a finite number >= 0",
            ));
        }
        if w > 0.0 {
            if y == 1.0 {
                pos += w;
            } else {
                neg += w;
            }
            rows.push((s, y, w));
        }
    }
    if !(pos > 0.0 && neg > 0.0 && (pos + neg).is_finite()) {
        return Err(Error::invalid(
            "labels",
            format!("positive weight {pos}, negative weight {neg}"),
            "both classes with a positive, finite weight to calibrate on",
        ));
    }
    Ok(rows)
}

/// scikit-learn's `IsotonicRegression(increasing=True, out_of_bounds="clip")`: rows sorted
/// by (score, label), scores closer than `f64` resolution (1e-15) merged into their weighted
/// mean label, pool adjacent violators, then the points equal to both neighbours dropped.
fn isotonic(mut rows: Vec<Row>) -> Calibration {
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    const RESOLUTION: f64 = 1e-15;
    let (mut x, mut y, mut w) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cx, mut cy, mut cw) = (rows[0].0, 0.0, 0.0);
    for &(s, label, weight) in &rows {
        if s - cx >= RESOLUTION {
            x.push(cx);
            y.push(cy / cw);
            w.push(cw);
            cx = s;
            cy = label * weight;
            cw = weight;
        } else {
            cy += label * weight;
            cw += weight;
        }
    }
    x.push(cx);
    y.push(cy / cw);
    w.push(cw);
    pool_adjacent_violators(&mut y, &mut w);
    let n = y.len();
    let keep: Vec<usize> = (0..n)
        .filter(|&i| i == 0 || i == n - 1 || y[i] != y[i - 1] || y[i] != y[i + 1])
        .collect();
    Calibration::Isotonic {
        x: keep.iter().map(|&i| x[i]).collect(),
        y: keep.iter().map(|&i| y[i]).collect(),
    }
}

/// scikit-learn's `_inplace_contiguous_isotonic_regression`: blocks pooled left to right,
/// each violating block merged with the one before until the sequence is non-decreasing.
fn pool_adjacent_violators(y: &mut [f64], w: &mut [f64]) {
    let n = y.len();
    let mut target: Vec<usize> = (0..n).collect();
    let mut i = 0;
    while i < n {
        let mut k = target[i] + 1;
        if k == n {
            break;
        }
        if y[i] < y[k] {
            i = k;
            continue;
        }
        let mut sum_wy = w[i] * y[i];
        let mut sum_w = w[i];
        loop {
            let prev_y = y[k];
            sum_wy += w[k] * y[k];
            sum_w += w[k];
            k = target[k] + 1;
            if k == n || prev_y < y[k] {
                y[i] = sum_wy / sum_w;
                w[i] = sum_w;
                target[i] = k - 1;
                target[k - 1] = i;
                if i > 0 {
                    i = target[i - 1];
                }
                break;
            }
        }
    }
    let mut i = 0;
    while i < n {
        let k = target[i] + 1;
        let v = y[i];
        y[i + 1..k].iter_mut().for_each(|t| *t = v);
        i = k;
    }
}

/// `np.interp` after clipping to the ends (what scikit-learn's `interp1d` gives there).
fn interpolate(x: &[f64], y: &[f64], s: f64) -> f64 {
    let n = x.len();
    // A map no check passed (built by hand, read without `validate`) has no answer: NaN,
    // never a panic.
    if n == 0 || y.len() != n {
        return f64::NAN;
    }
    if s <= x[0] {
        return y[0];
    }
    if s >= x[n - 1] {
        return y[n - 1];
    }
    // The first point above s.
    let j = x.partition_point(|&v| v <= s);
    let (x0, x1, y0, y1) = (x[j - 1], x[j], y[j - 1], y[j]);
    y0 + (y1 - y0) * (s - x0) / (x1 - x0)
}

/// Platt's sigmoid as scikit-learn fits it: targets `(N+ + 1) / (N+ + 2)` and `1 / (N- + 2)`
/// (weighted counts), the weighted cross-entropy minimized, here by Newton's method with a
/// backtracking line search to a gradient of 1e-12 per row (scikit-learn's L-BFGS stops
/// earlier: the two agree to its tolerance, about 1e-6); an error if it does not get there.
fn platt(rows: &[Row]) -> Result<Calibration> {
    let (mut prior1, mut prior0) = (0.0, 0.0);
    for &(_, y, w) in rows {
        if y > 0.0 {
            prior1 += w;
        } else {
            prior0 += w;
        }
    }
    let hi = (prior1 + 1.0) / (prior1 + 2.0);
    let lo = 1.0 / (prior0 + 2.0);
    // The optimum is fitted on standardized scores with weights of mean 1 (the same optimum:
    // an affine map of the score and a uniform scale of the loss), then mapped back, so a
    // tiny spread of scores or huge weights cannot stall Newton's steps (scikit-learn's own
    // rescaling past 30 is one such affine map).
    let total: f64 = rows.iter().map(|r| r.2).sum();
    let (mean, sd) = if rows.iter().all(|r| r.0 == rows[0].0) {
        // One score: only a·s + b is determined; every standardized score is exactly 0.
        (rows[0].0, 1.0)
    } else {
        let mean = rows.iter().map(|r| r.2 * r.0).sum::<f64>() / total;
        let var = rows.iter().map(|r| r.2 * (r.0 - mean).powi(2)).sum::<f64>() / total;
        (mean, var.sqrt())
    };
    let norm = rows.len() as f64 / total;
    let data: Vec<(f64, f64, f64)> = rows
        .iter()
        .map(|&(s, y, w)| ((s - mean) / sd, if y > 0.0 { hi } else { lo }, w * norm))
        .collect();
    if data.iter().any(|d| !(d.0.is_finite() && d.2.is_finite())) {
        return Err(Error::invalid(
            "scores",
            format!("mean {mean}, spread {sd}"),
            "scores and weights whose standardized values are finite",
        ));
    }
    // Loss of p = σ(-(a f + b)) against targets t: Σ w [log(1 + e^z) - (1 - t) z], z = a f + b
    // (the binomial loss with raw prediction -z).
    let loss = |a: f64, b: f64| -> f64 {
        data.iter()
            .map(|&(f, t, w)| {
                let z = a * f + b;
                let softplus = if z > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                };
                w * (softplus - (1.0 - t) * z)
            })
            .sum()
    };
    let (mut a, mut b) = (0.0, ((prior0 + 1.0) / (prior1 + 1.0)).ln());
    let mut current = loss(a, b);
    let n = data.len() as f64;
    let mut converged = false;
    for _ in 0..200 {
        // Gradient and Hessian in (a, b).
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(f, t, w) in &data {
            let z = a * f + b;
            let q = if z >= 0.0 {
                1.0 / (1.0 + (-z).exp())
            } else {
                let e = z.exp();
                e / (1.0 + e)
            }; // σ(z) = 1 - p
            let d = w * (q - (1.0 - t));
            ga += d * f;
            gb += d;
            let h = w * q * (1.0 - q);
            haa += h * f * f;
            hab += h * f;
            hbb += h;
        }
        // A gradient of 1e-12 per row (weights have mean 1 here).
        if ga.abs().max(gb.abs()) < 1e-12 * n {
            converged = true;
            break;
        }
        // Newton's step, with a ridge when the Hessian is (nearly) singular.
        let ridge = 1e-12 * (haa + hbb).max(1e-300);
        let (haa, hbb) = (haa + ridge, hbb + ridge);
        let det = haa * hbb - hab * hab;
        let (da, db) = if det > 0.0 {
            (-(hbb * ga - hab * gb) / det, -(haa * gb - hab * ga) / det)
        } else {
            (-ga, -gb)
        };
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-10 {
            let (na, nb) = (a + step * da, b + step * db);
            let next = loss(na, nb);
            // Armijo's decrease, or no change beyond the loss's rounding (near the optimum the
            // decrease of a Newton step is below what the sum can show).
            let armijo = next <= current + 1e-4 * step * (ga * da + gb * db);
            let flat = (next - current).abs() <= 1e-12 * current.abs().max(1.0);
            if armijo || flat {
                a = na;
                b = nb;
                current = next;
                moved = true;
                break;
            }
            step /= 2.0;
        }
        if !moved {
            break;
        }
    }
    if !(converged && a.is_finite() && b.is_finite()) {
        return Err(Error::UndefinedMetric {
            metric: "Platt calibration".into(),
            reason: format!(
                "Newton's method did not reach the optimum (a = {a}, b = {b} on standardized scores): are the classes separated perfectly?"
            ),
        });
    }
    // z = a (s − mean) / sd + b.
    Ok(Calibration::Platt {
        a: a / sd,
        b: b - a * mean / sd,
    })
}

/// `np.percentile(sorted, q * 100)` with the default (linear) method, step for step: the
/// virtual index `(n − 1) q`, and numpy's `_lerp` (`b − (b − a)(1 − t)` when `t ≥ 0.5`).
fn numpy_percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let lo = virtual_index.floor();
    let t = virtual_index - lo;
    let (a, b) = (sorted[lo as usize], sorted[lo as usize + 1]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// How the reliability curve bins the predicted probabilities (scikit-learn's `strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinStrategy {
    /// Equal-width bins over [0, 1].
    #[default]
    Uniform,
    /// Bins holding equal numbers of predictions (edges at their quantiles).
    Quantile,
}

/// The reliability curve: for each non-empty bin, the share of positives (`prob_true`) and
/// the mean predicted probability (`prob_pred`), as `sklearn.calibration.calibration_curve`,
/// with the rows of each bin (`counts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityCurve {
    /// Share of positives per non-empty bin.
    pub prob_true: Vec<f64>,
    /// Mean predicted probability per non-empty bin.
    pub prob_pred: Vec<f64>,
    /// Rows per non-empty bin.
    pub counts: Vec<usize>,
}

impl ReliabilityCurve {
    /// The curve of `probabilities` (in [0, 1]) against `labels` (0 or 1) over `n_bins` bins
    /// (1 to 1,000).
    ///
    /// ```
    /// use mlops_core::calibration::{BinStrategy, ReliabilityCurve};
    ///
    /// let c = ReliabilityCurve::new(&[0.1, 0.2, 0.8, 0.9], &[0.0, 1.0, 1.0, 1.0], 2, BinStrategy::Uniform)?;
    /// assert_eq!(c.prob_true, vec![0.5, 1.0]);
    /// assert!((c.prob_pred[0] - 0.15).abs() < 1e-12);
    /// assert!((c.expected_calibration_error() - 0.25).abs() < 1e-12); // (2·0.35 + 2·0.15) / 4
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn new(
        probabilities: &[f64],
        labels: &[f64],
        n_bins: usize,
        strategy: BinStrategy,
    ) -> Result<Self> {
        if !(1..=1000).contains(&n_bins) {
            return Err(Error::invalid("n_bins", n_bins, "from 1 to 1000"));
        }
        if probabilities.len() != labels.len() {
            return Err(Error::LengthMismatch {
                left: "probabilities",
                left_len: probabilities.len(),
                right: "labels",
                right_len: labels.len(),
            });
        }
        if probabilities.is_empty() {
            return Err(Error::invalid("probabilities", "[]", "at least one row"));
        }
        for (i, (&p, &y)) in probabilities.iter().zip(labels).enumerate() {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::invalid(
                    format!("probabilities[{i}]"),
                    p,
                    "a probability in [0, 1]",
                ));
            }
            if y != 0.0 && y != 1.0 {
                return Err(Error::invalid(format!("labels[{i}]"), y, "0 or 1"));
            }
        }
        // numpy's own arithmetic, so a probability on an edge falls in scikit-learn's bin:
        // `np.linspace(0, 1, n + 1)` is `k * (1 / n)` with the last edge exactly 1, and
        // `np.percentile(p, q * 100)` divides `q * 100` by 100 and interpolates numpy's way.
        let step = 1.0 / n_bins as f64;
        let grid: Vec<f64> = (0..=n_bins)
            .map(|k| if k == n_bins { 1.0 } else { k as f64 * step })
            .collect();
        let edges: Vec<f64> = match strategy {
            BinStrategy::Uniform => grid,
            BinStrategy::Quantile => {
                let mut sorted = probabilities.to_vec();
                sorted.sort_unstable_by(f64::total_cmp);
                grid.iter()
                    .map(|&q| numpy_percentile_linear(&sorted, q * 100.0 / 100.0))
                    .collect()
            }
        };
        // np.searchsorted(edges[1:-1], p, side="left"): the first inner edge >= p.
        let inner = &edges[1..n_bins];
        let mut sum_true = vec![0.0; n_bins];
        let mut sum_pred = vec![0.0; n_bins];
        let mut count = vec![0usize; n_bins];
        for (&p, &y) in probabilities.iter().zip(labels) {
            let bin = inner.partition_point(|&e| e < p);
            sum_true[bin] += y;
            sum_pred[bin] += p;
            count[bin] += 1;
        }
        let mut curve = ReliabilityCurve {
            prob_true: Vec::new(),
            prob_pred: Vec::new(),
            counts: Vec::new(),
        };
        for k in (0..n_bins).filter(|&k| count[k] > 0) {
            curve.prob_true.push(sum_true[k] / count[k] as f64);
            curve.prob_pred.push(sum_pred[k] / count[k] as f64);
            curve.counts.push(count[k]);
        }
        Ok(curve)
    }

    /// Expected calibration error: the row-weighted mean over bins of
    /// `|prob_true − prob_pred|`.
    pub fn expected_calibration_error(&self) -> f64 {
        let total: usize = self.counts.iter().sum();
        self.counts
            .iter()
            .zip(self.prob_true.iter().zip(&self.prob_pred))
            .map(|(&n, (t, p))| n as f64 * (t - p).abs())
            .sum::<f64>()
            / total as f64
    }
}
