//! The dense layer: `out = activation(x · Wᵀ + bias)` over a contiguous batch.
//!
//! Two paths, each using the best instruction set the CPU has, chosen at run time:
//!
//! - up to [`SMALL_BATCH`] rows, register tiles on `pulp`'s portable SIMD vectors (AVX2 and
//!   FMA where present, plain code otherwise): each tile keeps its accumulators (started at
//!   the bias) in registers over every input, so a layer is one pass over its weights plus
//!   the activation (a `gemm` call costs more than the arithmetic at batch 1);
//! - above it, the `gemm` crate's micro-kernels (AVX-512 where present), then one pass that
//!   adds the bias and applies the activation.

use pulp::{Arch, Simd, WithSimd};

use super::Layer;
use crate::{Error, Result};
use mlops_core::model::Activation;

/// Batches up to this many rows take the register-tiled path; larger ones the `gemm` crate
/// (measured crossover on the seed's network: tiles win at 1–4 rows, `gemm` from about 16).
pub(super) const SMALL_BATCH: usize = 8;

/// The instruction set, detected once.
fn arch() -> Arch {
    static ARCH: std::sync::OnceLock<Arch> = std::sync::OnceLock::new();
    *ARCH.get_or_init(Arch::new)
}

/// One layer over `rows` rows of `x` (`rows × layer.inputs`, contiguous) into `out`
/// (`rows × layer.units`).
pub(super) fn dense(x: &[f32], rows: usize, layer: &Layer, out: &mut [f32]) -> Result<()> {
    let (inputs, units) = (layer.inputs, layer.units);
    for (what, len, want) in [
        ("input", x.len(), rows * inputs),
        ("weights", layer.weight_t.len(), inputs * units),
        ("bias", layer.bias.len(), units),
        ("output", out.len(), rows * units),
    ] {
        if len != want {
            return Err(Error::invalid(
                format!("engine buffer for the {what}"),
                len,
                format!("{want} values"),
            ));
        }
    }
    if rows <= SMALL_BATCH {
        arch().dispatch(Tiled { x, layer, out });
    } else {
        product(x, &layer.weight_t, out, rows, inputs, units);
        arch().dispatch(BiasActivate { out, layer });
    }
    Ok(())
}

/// The small-batch path as a `pulp` operation.
struct Tiled<'a> {
    x: &'a [f32],
    layer: &'a Layer,
    out: &'a mut [f32],
}

impl WithSimd for Tiled<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Tiled { x, layer, out } = self;
        let (inputs, units) = (layer.inputs, layer.units);
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        for (xr, or) in x.chunks_exact(inputs).zip(out.chunks_exact_mut(units)) {
            let mut j = 0;
            while j + 4 * lanes <= units {
                tile::<S, 4>(simd, xr, layer, or, j, 4 * lanes);
                j += 4 * lanes;
            }
            while j + lanes <= units {
                tile::<S, 1>(simd, xr, layer, or, j, lanes);
                j += lanes;
            }
            for (u, o) in or.iter_mut().enumerate().skip(j) {
                let column = layer.weight_t.iter().skip(u).step_by(units);
                *o = layer.bias[u] + xr.iter().zip(column).map(|(a, w)| a * w).sum::<f32>();
            }
            activate(or, layer.activation);
        }
    }
}

/// Units `j0..j0 + width` of one row (`width` = `T` vectors): the accumulators start at the
/// bias and stay in registers over every input.
#[inline(always)]
fn tile<S: Simd, const T: usize>(
    simd: S,
    x: &[f32],
    layer: &Layer,
    out: &mut [f32],
    j0: usize,
    width: usize,
) {
    let units = layer.units;
    let (bias, _) = S::as_simd_f32s(&layer.bias[j0..j0 + width]);
    let mut acc: [S::f32s; T] = std::array::from_fn(|t| bias[t]);
    for (&xi, row) in x.iter().zip(layer.weight_t.chunks_exact(units)) {
        let xv = simd.splat_f32s(xi);
        let (w, _) = S::as_simd_f32s(&row[j0..j0 + width]);
        for (a, &wt) in acc.iter_mut().zip(w) {
            *a = simd.mul_add_e_f32s(xv, wt, *a);
        }
    }
    let (dst, _) = S::as_mut_simd_f32s(&mut out[j0..j0 + width]);
    for (d, a) in dst.iter_mut().zip(acc) {
        *d = a;
    }
}

/// The activation over `row`, in place.
#[inline(always)]
fn activate(row: &mut [f32], activation: Activation) {
    match activation {
        Activation::Identity => {}
        Activation::Relu => row.iter_mut().for_each(|v| *v = relu(*v)),
        other => row.iter_mut().for_each(|v| *v = other.apply(*v)),
    }
}

/// ReLU as a bit mask (`x < 0` → +0, anything else, NaN included, unchanged), so a pass in
/// place stores every lane rather than a masked store of the negative ones (slow on AMD).
#[inline(always)]
fn relu(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & if x < 0.0 { 0 } else { u32::MAX })
}

/// The bias and the activation over a whole output, in place, as a `pulp` operation (one
/// pass, vectorized by the compiler under the dispatched instruction set).
struct BiasActivate<'a> {
    out: &'a mut [f32],
    layer: &'a Layer,
}

impl WithSimd for BiasActivate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let BiasActivate { out, layer } = self;
        for row in out.chunks_exact_mut(layer.units) {
            match layer.activation {
                Activation::Identity => row.iter_mut().zip(&layer.bias).for_each(|(v, b)| *v += b),
                Activation::Relu => row
                    .iter_mut()
                    .zip(&layer.bias)
                    .for_each(|(v, b)| *v = relu(*v + b)),
                other => row
                    .iter_mut()
                    .zip(&layer.bias)
                    .for_each(|(v, b)| *v = other.apply(*v + b)),
            }
        }
    }
}

/// `out = x · w` for row-major `x` (`rows × inputs`), `w` (`inputs × units`) and `out`
/// (`rows × units`; lengths checked by the caller), by the `gemm` crate (SIMD micro-kernels
/// picked at run time, one thread).
#[allow(unsafe_code)]
fn product(x: &[f32], w: &[f32], out: &mut [f32], rows: usize, inputs: usize, units: usize) {
    debug_assert!(
        x.len() == rows * inputs && w.len() == inputs * units && out.len() == rows * units
    );
    // SAFETY: the three slices hold exactly rows×inputs, inputs×units and rows×units `f32`s
    // (checked by `dense`), each row-major with the strides passed (column stride 1, row
    // stride = its width), so every element gemm reads or writes is inside its slice; `out`
    // is a unique borrow and cannot alias `x` or `w`; `read_dst = false`, so `out`'s old
    // values are never read; `Parallelism::None` runs on this thread only.
    unsafe {
        gemm::gemm(
            rows,
            units,
            inputs,
            out.as_mut_ptr(),
            1,
            units as isize,
            false,
            x.as_ptr(),
            1,
            inputs as isize,
            w.as_ptr(),
            1,
            units as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive definition, in f64.
    fn reference(x: &[f32], rows: usize, layer: &Layer) -> Vec<f32> {
        let mut out = Vec::new();
        for r in 0..rows {
            for u in 0..layer.units {
                let mut z = f64::from(layer.bias[u]);
                for i in 0..layer.inputs {
                    z += f64::from(x[r * layer.inputs + i])
                        * f64::from(layer.weight_t[i * layer.units + u]);
                }
                out.push(layer.activation.apply(z as f32));
            }
        }
        out
    }

    /// Every path on every instruction set this machine can run, the portable scalar one
    /// included (the one a CPU without AVX2 takes): 45 units exercise the four-vector tile, the
    /// one-vector tile and the scalar tail at 8 lanes, and every tile size at 1 lane.
    #[test]
    fn every_path_and_instruction_set_agrees_with_the_definition() {
        for activation in Activation::ALL {
            let (inputs, units) = (13, 45);
            let layer = Layer {
                inputs,
                units,
                weight_t: (0..inputs * units)
                    .map(|k| ((k * 37 % 23) as f32 - 11.0) / 17.0)
                    .collect(),
                bias: (0..units).map(|u| (u as f32 - 20.0) / 30.0).collect(),
                activation,
            };
            for rows in [1, 3, SMALL_BATCH, SMALL_BATCH + 1, 40] {
                let x: Vec<f32> = (0..rows * inputs)
                    .map(|k| ((k * 29 % 31) as f32 - 15.0) / 9.0)
                    .collect();
                let want = reference(&x, rows, &layer);
                let mut dispatched = vec![0.0; rows * units];
                dense(&x, rows, &layer, &mut dispatched).unwrap();
                let mut portable = vec![0.0; rows * units];
                if rows <= SMALL_BATCH {
                    Tiled {
                        x: &x,
                        layer: &layer,
                        out: &mut portable,
                    }
                    .with_simd(pulp::Scalar);
                } else {
                    portable.copy_from_slice(&dispatched);
                }
                for (k, w) in want.iter().enumerate() {
                    for (what, got) in [("dispatched", dispatched[k]), ("portable", portable[k])] {
                        assert!(
                            (got - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "{activation:?}, {rows} rows, {what} [{k}]: {got} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
