//! AdamW (Loshchilov & Hutter; weight decay 0 is Adam) with its state on the host, so that a
//! checkpoint holds everything needed to resume bit-identically. candle's own `AdamW` keeps
//! its moments private.

use serde::{Deserialize, Serialize};

use crate::engine::HostParams;

/// Optimizer state: step count and first/second moments per parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdamW {
    pub(crate) step: u64,
    pub(crate) lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: f64,
    /// Master copy of the parameters, then first and second moments, flattened per tensor.
    pub(crate) params: Vec<Vec<f32>>,
    pub(crate) m: Vec<Vec<f32>>,
    pub(crate) v: Vec<Vec<f32>>,
}

impl AdamW {
    pub(crate) fn new(
        params: &HostParams,
        lr: f64,
        betas: (f64, f64),
        epsilon: f64,
        weight_decay: f64,
    ) -> Self {
        let flat: Vec<Vec<f32>> = params
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        let zeros: Vec<Vec<f32>> = flat.iter().map(|p| vec![0.0; p.len()]).collect();
        AdamW {
            step: 0,
            lr,
            beta1: betas.0,
            beta2: betas.1,
            epsilon,
            weight_decay,
            params: flat,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// The parameters as `(weight, bias)` pairs.
    pub(crate) fn host_params(&self) -> HostParams {
        self.params
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect()
    }

    /// One update of the parameters from `grads` (same layout as `params`).
    pub(crate) fn apply(&mut self, grads: &[Vec<f32>]) {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        let lr = self.lr as f32;
        let step_size = (self.lr / c1) as f32;
        let inv_sqrt_c2 = (1.0 / c2.sqrt()) as f32;
        let eps = self.epsilon as f32;
        let decay = 1.0 - lr * self.weight_decay as f32;
        for (k, g) in grads.iter().enumerate() {
            let (p, m, v) = (&mut self.params[k], &mut self.m[k], &mut self.v[k]);
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() * inv_sqrt_c2 + eps;
                *p = *p * decay - step_size * *m / denom;
            }
        }
    }

    /// Zeroed buffers shaped like the parameters, for gradients.
    pub(crate) fn zeros_like_params(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }
}
