//! The classic test functions of hyperparameter search, to check a sampler or a shared study
//! against known optima: Branin–Hoo (2-D) and Hartmann 6-D, both minimized.

/// Branin–Hoo on `x1 ∈ [-5, 10]`, `x2 ∈ [0, 15]` (see [`BRANIN_BOUNDS`]); minimum 0.397887 at
/// three points, one of them (π, 2.275).
///
/// ```
/// use mlops_train::hpo::benchmarks::branin;
/// assert!((branin(&[std::f64::consts::PI, 2.275]) - 0.397887).abs() < 1e-6);
/// ```
pub fn branin(x: &[f64; 2]) -> f64 {
    use std::f64::consts::PI;
    let [x1, x2] = *x;
    let (b, c, t) = (5.1 / (4.0 * PI * PI), 5.0 / PI, 1.0 / (8.0 * PI));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Branin's parameters and their bounds.
pub const BRANIN_BOUNDS: [(&str, f64, f64); 2] = [("x1", -5.0, 10.0), ("x2", 0.0, 15.0)];

/// Hartmann 6-D on `[0, 1]^6`; minimum -3.32237.
///
/// ```
/// use mlops_train::hpo::benchmarks::hartmann6;
/// let best = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
/// assert!((hartmann6(&best) + 3.32237).abs() < 1e-4);
/// ```
pub fn hartmann6(x: &[f64; 6]) -> f64 {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}
