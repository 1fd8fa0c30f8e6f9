//! Seeded synthetic streams with known concept drift (for tests and benches).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where and how the concept changes: before `position` the stream follows the old concept;
/// with `width = 0` it switches at once (abrupt), otherwise each row follows the new concept
/// with probability `1 / (1 + exp(-4 (t - position) / width))` (gradual, as river's
/// `ConceptDriftStream`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConceptShift {
    /// Row index of the change's centre.
    pub position: u64,
    /// Width of the transition (0 = abrupt).
    pub width: u64,
}

impl ConceptShift {
    fn new_concept(&self, t: u64, rng: &mut ChaCha8Rng) -> bool {
        if self.width == 0 {
            return t >= self.position;
        }
        let z = -4.0 * (t as f64 - self.position as f64) / self.width as f64;
        rng.random::<f64>() < 1.0 / (1.0 + z.exp())
    }
}

/// The SEA concepts stream (Street & Kim 2001): three features uniform on [0, 10]; the label
/// is `x0 + x1 <= θ`, with θ = 8, 9, 7 or 9.5 for concepts 0..3; labels flip with probability
/// `noise`.
///
/// ```
/// use mlops_drift::stream::{ConceptShift, SeaGenerator};
///
/// let mut sea = SeaGenerator::new(0, 1, Some(ConceptShift { position: 500, width: 0 }), 0.0, 7);
/// let (x, y) = sea.next_row();
/// assert!(x.iter().all(|v| (0.0..10.0).contains(v)));
/// assert_eq!(y, x[0] + x[1] <= 8.0);
/// ```
#[derive(Debug, Clone)]
pub struct SeaGenerator {
    theta: [f64; 2],
    shift: Option<ConceptShift>,
    noise: f64,
    t: u64,
    rng: ChaCha8Rng,
}

impl SeaGenerator {
    const THETAS: [f64; 4] = [8.0, 9.0, 7.0, 9.5];

    /// Concept `from` (0..=3) drifting to concept `to` at `shift` (never, without one).
    pub fn new(from: usize, to: usize, shift: Option<ConceptShift>, noise: f64, seed: u64) -> Self {
        SeaGenerator {
            theta: [Self::THETAS[from % 4], Self::THETAS[to % 4]],
            shift,
            noise,
            t: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next row: three features and the label.
    pub fn next_row(&mut self) -> ([f64; 3], bool) {
        let x = [
            self.rng.random_range(0.0..10.0),
            self.rng.random_range(0.0..10.0),
            self.rng.random_range(0.0..10.0),
        ];
        let new = self
            .shift
            .is_some_and(|s| s.new_concept(self.t, &mut self.rng));
        let theta = self.theta[usize::from(new)];
        let mut y = x[0] + x[1] <= theta;
        if self.noise > 0.0 && self.rng.random::<f64>() < self.noise {
            y = !y;
        }
        self.t += 1;
        (x, y)
    }
}

/// The rotating hyperplane stream (Hulten, Spencer & Domingos 2001): `d` features uniform on
/// [0, 1]; the label is `Σ wᵢ xᵢ >= ½ Σ wᵢ`; after every row the first `n_drift_features`
/// weights move by `magnitude`, reversing direction with probability `sigma` (gradual drift).
///
/// ```
/// use mlops_drift::stream::HyperplaneGenerator;
///
/// let mut h = HyperplaneGenerator::new(10, 2, 0.01, 0.1, 3);
/// let (x, _y) = h.next_row();
/// assert_eq!(x.len(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct HyperplaneGenerator {
    weights: Vec<f64>,
    directions: Vec<f64>,
    n_drift: usize,
    magnitude: f64,
    sigma: f64,
    rng: ChaCha8Rng,
}

impl HyperplaneGenerator {
    /// `d` features, `n_drift_features` of them drifting by `magnitude` per row.
    pub fn new(d: usize, n_drift_features: usize, magnitude: f64, sigma: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let weights = (0..d).map(|_| rng.random::<f64>()).collect();
        HyperplaneGenerator {
            weights,
            directions: vec![1.0; d],
            n_drift: n_drift_features.min(d),
            magnitude,
            sigma,
            rng,
        }
    }

    /// The label the current hyperplane gives `x`.
    pub fn label(&self, x: &[f64]) -> bool {
        let s: f64 = x.iter().zip(&self.weights).map(|(a, w)| a * w).sum();
        s >= 0.5 * self.weights.iter().sum::<f64>()
    }

    /// The next row and its label.
    pub fn next_row(&mut self) -> (Vec<f64>, bool) {
        let x: Vec<f64> = (0..self.weights.len())
            .map(|_| self.rng.random::<f64>())
            .collect();
        let y = self.label(&x);
        for i in 0..self.n_drift {
            self.weights[i] += self.directions[i] * self.magnitude;
            if self.rng.random::<f64>() < self.sigma {
                self.directions[i] = -self.directions[i];
            }
        }
        (x, y)
    }
}
