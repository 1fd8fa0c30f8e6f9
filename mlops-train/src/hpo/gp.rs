//! Gaussian-process Bayesian optimization (the seed's `bayesianoptimization`, Optuna's
//! `GPSampler`): a Matérn-5/2 ARD kernel on the unit cube, hyperparameters fitted by
//! maximizing the log marginal likelihood (with weak log-normal priors) by gradient ascent,
//! and the next point chosen by maximizing log expected improvement over random candidates
//! refined by a shrinking coordinate search.

use nalgebra::{Cholesky, DMatrix, DVector};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::sampler::random_assignment;
use super::space::{from_unit, to_unit, Assignment, Distribution, ParamValue, SearchSpace};

/// Kernel hyperparameters in log space: lengthscales, signal variance, noise variance.
#[derive(Debug, Clone)]
struct Hyper {
    log_ls: Vec<f64>,
    log_signal: f64,
    log_noise: f64,
}

/// A point's coordinates in the unit cube (inactive parameters at 0.5; categoricals by
/// index).
fn encode(space: &SearchSpace, a: &Assignment) -> Vec<f64> {
    space
        .params()
        .iter()
        .map(|p| match (a.get(&p.name), &p.distribution) {
            (Some(ParamValue::Choice(c)), Distribution::Categorical { choices }) => {
                let i = choices.iter().position(|x| x == c).unwrap_or(0);
                (i as f64 + 0.5) / choices.len() as f64
            }
            (Some(v), d) => to_unit(d, v).unwrap_or(0.5),
            (None, _) => 0.5,
        })
        .collect()
}

fn decode(space: &SearchSpace, x: &[f64]) -> Assignment {
    let mut a = Assignment::new();
    for (p, &u) in space.params().iter().zip(x) {
        if SearchSpace::is_active(p, &a) {
            a.insert(p.name.clone(), from_unit(&p.distribution, u));
        }
    }
    a
}

/// Matérn 5/2 of the scaled distance, and d k / d r² (for the gradients).
fn matern(r2: f64) -> (f64, f64) {
    let r = r2.max(0.0).sqrt();
    let s5 = 5f64.sqrt();
    let e = (-s5 * r).exp();
    let k = (1.0 + s5 * r + 5.0 / 3.0 * r2) * e;
    // dk/d(r²) = -(5/6)(1 + √5 r) e
    let dk = -(5.0 / 6.0) * (1.0 + s5 * r) * e;
    (k, dk)
}

struct Fitted {
    x: Vec<Vec<f64>>,
    chol: Cholesky<f64, nalgebra::Dyn>,
    alpha: DVector<f64>,
    h: Hyper,
}

fn scaled_r2(a: &[f64], b: &[f64], ls: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(ls)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum()
}

/// Log marginal likelihood + log prior, and its gradient in the log hyperparameters.
fn objective(x: &[Vec<f64>], y: &DVector<f64>, h: &Hyper) -> Option<(f64, Vec<f64>)> {
    let n = x.len();
    let d = h.log_ls.len();
    let ls: Vec<f64> = h.log_ls.iter().map(|v| v.exp()).collect();
    let (signal, noise) = (h.log_signal.exp(), h.log_noise.exp());
    let mut k = DMatrix::zeros(n, n);
    let mut dk_dr2 = DMatrix::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let (kv, dv) = matern(scaled_r2(&x[i], &x[j], &ls));
            k[(i, j)] = signal * kv;
            k[(j, i)] = signal * kv;
            dk_dr2[(i, j)] = signal * dv;
            dk_dr2[(j, i)] = signal * dv;
        }
        k[(i, i)] += noise + 1e-9;
    }
    let chol = Cholesky::new(k.clone())?;
    let alpha = chol.solve(y);
    let log_det: f64 = 2.0 * chol.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let mut value = -0.5 * y.dot(&alpha) - 0.5 * log_det;
    // W = αα^T - K^-1; d LML / dθ = ½ tr(W dK/dθ).
    let w = &alpha * alpha.transpose() - chol.inverse();
    let mut grad = vec![0.0; d + 2];
    for dim in 0..d {
        let mut g = 0.0;
        for i in 0..n {
            for j in 0..n {
                // d r² / d log ℓ = -2 (Δ/ℓ)²
                let delta = (x[i][dim] - x[j][dim]) / ls[dim];
                g += w[(i, j)] * dk_dr2[(i, j)] * (-2.0 * delta * delta);
            }
        }
        grad[dim] = 0.5 * g;
    }
    let mut g_signal = 0.0;
    let mut g_noise = 0.0;
    for i in 0..n {
        for j in 0..n {
            let kij = k[(i, j)] - if i == j { noise + 1e-9 } else { 0.0 };
            g_signal += w[(i, j)] * kij;
        }
        g_noise += w[(i, i)] * noise;
    }
    grad[d] = 0.5 * g_signal;
    grad[d + 1] = 0.5 * g_noise;
    // Weak priors: log ℓ ~ N(log 0.5, 1), log σ² ~ N(0, 1), log noise ~ N(log 1e-4, 2).
    let (m, s) = (0.5f64.ln(), 1.0);
    for (g, l) in grad.iter_mut().zip(&h.log_ls) {
        value -= 0.5 * ((l - m) / s).powi(2);
        *g -= (l - m) / (s * s);
    }
    value -= 0.5 * h.log_signal.powi(2);
    grad[d] -= h.log_signal;
    let (mn, sn) = (1e-4f64.ln(), 2.0);
    value -= 0.5 * ((h.log_noise - mn) / sn).powi(2);
    grad[d + 1] -= (h.log_noise - mn) / (sn * sn);
    Some((value, grad))
}

/// Fits the hyperparameters by Adam ascent on the penalized marginal likelihood.
fn fit(x: Vec<Vec<f64>>, y: &DVector<f64>, start: Hyper) -> Option<Fitted> {
    let d = start.log_ls.len();
    let mut h = start;
    let (mut m, mut v) = (vec![0.0; d + 2], vec![0.0; d + 2]);
    let (lr, b1, b2) = (0.05, 0.9, 0.999);
    let mut best = (f64::NEG_INFINITY, h.clone());
    for t in 1..=150 {
        let Some((value, grad)) = objective(&x, y, &h) else {
            h.log_noise += 1.0;
            continue;
        };
        if value > best.0 {
            best = (value, h.clone());
        }
        let params: Vec<&mut f64> = h
            .log_ls
            .iter_mut()
            .chain([&mut h.log_signal, &mut h.log_noise])
            .collect();
        for (i, p) in params.into_iter().enumerate() {
            m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
            v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
            let mh = m[i] / (1.0 - b1.powi(t));
            let vh = v[i] / (1.0 - b2.powi(t));
            *p += lr * mh / (vh.sqrt() + 1e-8);
        }
        for l in h.log_ls.iter_mut() {
            *l = l.clamp((1e-3f64).ln(), (20.0f64).ln());
        }
        h.log_noise = h.log_noise.clamp((1e-8f64).ln(), 0.0);
        h.log_signal = h.log_signal.clamp(-6.0, 4.0);
    }
    Fitted::with(x, y, best.1)
}

impl Fitted {
    /// The posterior for hyperparameters `h` (no fitting): Cholesky of K + noise + 1e-9.
    fn with(x: Vec<Vec<f64>>, y: &DVector<f64>, h: Hyper) -> Option<Fitted> {
        let n = x.len();
        let ls: Vec<f64> = h.log_ls.iter().map(|v| v.exp()).collect();
        let signal = h.log_signal.exp();
        let k = DMatrix::from_fn(n, n, |i, j| {
            signal * matern(scaled_r2(&x[i], &x[j], &ls)).0
                + if i == j {
                    h.log_noise.exp() + 1e-9
                } else {
                    0.0
                }
        });
        let chol = Cholesky::new(k)?;
        let alpha = chol.solve(y);
        Some(Fitted { x, chol, alpha, h })
    }

    /// Posterior mean and standard deviation at `z`.
    fn predict(&self, z: &[f64]) -> (f64, f64) {
        let ls: Vec<f64> = self.h.log_ls.iter().map(|v| v.exp()).collect();
        let signal = self.h.log_signal.exp();
        let kz = DVector::from_iterator(
            self.x.len(),
            self.x
                .iter()
                .map(|xi| signal * matern(scaled_r2(xi, z, &ls)).0),
        );
        let mean = kz.dot(&self.alpha);
        let v = self
            .chol
            .l()
            .solve_lower_triangular(&kz)
            .unwrap_or_else(|| kz.clone());
        let var = (signal - v.dot(&v)).max(1e-12);
        (mean, var.sqrt())
    }

    /// log EI for minimization below `best`.
    fn log_ei(&self, z: &[f64], best: f64) -> f64 {
        let (mu, sigma) = self.predict(z);
        let u = (best - mu) / sigma;
        let pdf = (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let cdf = 0.5 * statrs::function::erf::erfc(-u / std::f64::consts::SQRT_2);
        let ei = sigma * (u * cdf + pdf);
        if ei > 1e-300 {
            ei.ln()
        } else {
            // Asymptotic tail: log(σ φ(u) / u²) for very negative u.
            sigma.ln()
                - 0.5 * u * u
                - 0.5 * (2.0 * std::f64::consts::PI).ln()
                - 2.0 * u.abs().max(1.0).ln()
        }
    }
}

/// The next point: random during startup, then the maximizer of log EI under a GP fitted to
/// the standardized losses.
pub(crate) fn gp_assignment(
    space: &SearchSpace,
    observations: &[(Assignment, f64)],
    pending: &[Assignment],
    n_startup: usize,
    rng: &mut ChaCha8Rng,
) -> Assignment {
    if observations.len() < n_startup {
        return random_assignment(space, rng);
    }
    let d = space.params().len();
    let mut x: Vec<Vec<f64>> = observations.iter().map(|(a, _)| encode(space, a)).collect();
    let mut losses: Vec<f64> = observations.iter().map(|o| o.1).collect();
    // Running trials: the constant liar at the mean loss, so parallel workers spread out.
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    for a in pending {
        x.push(encode(space, a));
        losses.push(mean);
    }
    let sd = (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / losses.len() as f64)
        .sqrt()
        .max(1e-12);
    let y = DVector::from_iterator(losses.len(), losses.iter().map(|l| (l - mean) / sd));
    let start = Hyper {
        log_ls: vec![0.5f64.ln(); d],
        log_signal: 0.0,
        log_noise: 1e-4f64.ln(),
    };
    let Some(gp) = fit(x.clone(), &y, start) else {
        return random_assignment(space, rng);
    };
    let best = y
        .iter()
        .take(observations.len())
        .copied()
        .fold(f64::INFINITY, f64::min);
    // Candidates: uniform points, and points near the best observations.
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by(|&i, &j| y[i].total_cmp(&y[j]));
    let mut candidates: Vec<Vec<f64>> = (0..1024)
        .map(|_| (0..d).map(|_| rng.random::<f64>()).collect())
        .collect();
    for &i in order.iter().take(5) {
        for _ in 0..40 {
            candidates.push(
                x[i].iter()
                    .map(|v| (v + 0.05 * (rng.random::<f64>() - 0.5)).clamp(0.0, 1.0))
                    .collect(),
            );
        }
    }
    let mut scored: Vec<(f64, Vec<f64>)> = candidates
        .into_iter()
        .map(|c| (gp.log_ei(&c, best), c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Refine the best few by a shrinking coordinate search.
    let mut winner = scored[0].clone();
    for (mut score, mut z) in scored.into_iter().take(5) {
        let mut step = 0.05;
        while step > 1e-4 {
            let mut improved = false;
            for dim in 0..d {
                for dir in [-1.0, 1.0] {
                    let mut t = z.clone();
                    t[dim] = (t[dim] + dir * step).clamp(0.0, 1.0);
                    let s = gp.log_ei(&t, best);
                    if s > score {
                        score = s;
                        z = t;
                        improved = true;
                    }
                }
            }
            if !improved {
                step *= 0.5;
            }
        }
        if score > winner.0 {
            winner = (score, z);
        }
    }
    decode(space, &winner.1)
}

#[cfg(test)]
mod sklearn_reference {
    //! The GP model against scikit-learn's GaussianProcessRegressor (Matérn 5/2 at fixed
    //! hyperparameters) on `tests/fixtures/sklearn_gp.json` (written by
    //! `scripts/fixtures/sklearn_gp.py`): posterior mean and standard deviation, expected
    //! improvement, log marginal likelihood; and the likelihood's gradient against finite
    //! differences.

    use super::*;

    fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
        v.as_array().unwrap().iter().map(floats).collect()
    }

    /// Training inputs, targets, hyperparameters and the case's expected values.
    type Case = (Vec<Vec<f64>>, DVector<f64>, Hyper, serde_json::Value);

    fn cases() -> Vec<Case> {
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/sklearn_gp.json")).unwrap();
        fx["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let h = Hyper {
                    log_ls: floats(&c["length_scales"]).iter().map(|v| v.ln()).collect(),
                    log_signal: c["signal"].as_f64().unwrap().ln(),
                    log_noise: c["noise"].as_f64().unwrap().ln(),
                };
                (
                    rows(&c["x"]),
                    DVector::from_vec(floats(&c["y"])),
                    h,
                    c.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn posterior_ei_and_likelihood_match_scikit_learn() {
        for (k, (x, y, h, c)) in cases().into_iter().enumerate() {
            let n = x.len();
            let fitted = Fitted::with(x, &y, h).unwrap();
            let best = c["best"].as_f64().unwrap();
            for (i, ((z, mean), (std, ei))) in rows(&c["z"])
                .iter()
                .zip(floats(&c["mean"]))
                .zip(floats(&c["std"]).into_iter().zip(floats(&c["ei"])))
                .enumerate()
            {
                let (mu, sigma) = fitted.predict(z);
                assert!(
                    (mu - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                    "case {k} z{i}: mean {mu} vs {mean}"
                );
                assert!(
                    (sigma - std).abs() <= 1e-6 * std.max(1e-3),
                    "case {k} z{i}: std {sigma} vs {std}"
                );
                if ei > 1e-200 {
                    let ours = fitted.log_ei(z, best);
                    assert!(
                        (ours - ei.ln()).abs() <= 1e-5,
                        "case {k} z{i}: log EI {ours} vs {}",
                        ei.ln()
                    );
                }
            }
            // log p(y) = -½ yᵀα - Σ log L_ii - n/2 log 2π.
            let lml = -0.5 * y.dot(&fitted.alpha)
                - fitted
                    .chol
                    .l()
                    .diagonal()
                    .iter()
                    .map(|v| v.ln())
                    .sum::<f64>()
                - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
            let theirs = c["log_marginal_likelihood"].as_f64().unwrap();
            assert!(
                (lml - theirs).abs() <= 1e-8 * theirs.abs().max(1.0),
                "case {k}: {lml} vs {theirs}"
            );
        }
    }

    #[test]
    fn likelihood_gradient_matches_finite_differences() {
        for (k, (x, y, h, _)) in cases().into_iter().enumerate() {
            let (_, grad) = objective(&x, &y, &h).unwrap();
            let d = h.log_ls.len();
            for (i, analytic) in grad.iter().enumerate() {
                let at = |delta: f64| {
                    let mut g = h.clone();
                    match i {
                        i if i < d => g.log_ls[i] += delta,
                        i if i == d => g.log_signal += delta,
                        _ => g.log_noise += delta,
                    }
                    objective(&x, &y, &g).unwrap().0
                };
                let eps = 1e-5;
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (analytic - numeric).abs() <= 1e-4 * numeric.abs().max(1.0),
                    "case {k} parameter {i}: gradient {analytic} vs finite difference {numeric}"
                );
            }
        }
    }
}
