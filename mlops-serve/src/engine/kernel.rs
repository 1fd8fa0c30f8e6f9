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
use mlops_core::model::Activation;
use mlops_core::{Error, Result};

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
        ("input", x.len(), size("input", rows, inputs)?),
        (
            "weights",
            layer.weight_t.len(),
            size("weights", inputs, units)?,
        ),
        ("bias", layer.bias.len(), units),
        ("output", out.len(), size("output", rows, units)?),
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
        product(x, &layer.weight_t, out, rows, inputs, units)?;
        arch().dispatch(BiasActivate { out, layer });
    }
    Ok(())
}

/// `a × b`, or an error naming `what` where it overflows `usize` (no buffer that large can
/// exist, so no length can match it).
fn size(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| {
        Error::invalid(
            format!("engine buffer size for the {what}"),
            format!("{a} × {b}"),
            "a product that fits in memory",
        )
    })
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
/// (`rows × units`), by the `gemm` crate (SIMD micro-kernels picked at run time, one thread).
///
/// Checks its own preconditions, whatever the caller checked: a length that is not its
/// dimensions' product (or a product that overflows) is an error, never a read or write
/// outside a slice.
#[allow(unsafe_code)]
fn product(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    rows: usize,
    inputs: usize,
    units: usize,
) -> Result<()> {
    for (what, len, want) in [
        ("input", x.len(), size("input", rows, inputs)?),
        ("weights", w.len(), size("weights", inputs, units)?),
        ("output", out.len(), size("output", rows, units)?),
    ] {
        if len != want {
            return Err(Error::invalid(
                format!("engine product's {what} length"),
                len,
                format!("{want} values ({rows} rows, {inputs} inputs, {units} units)"),
            ));
        }
    }
    if rows == 0 || units == 0 {
        // Nothing to write.
        return Ok(());
    }
    if inputs == 0 {
        // An empty sum.
        out.fill(0.0);
        return Ok(());
    }
    // Every dimension is now at most the length of a slice it indexes (each is a factor of a
    // nonzero product equal to that length), so at most `isize::MAX`: the `as isize` strides
    // below are exact.
    //
    // SAFETY: checked above on every call: the three slices hold exactly rows×inputs,
    // inputs×units and rows×units `f32`s, each row-major with the strides passed (column
    // stride 1, row stride = its width), so every element gemm reads or writes is inside its
    // slice; `out` is a unique borrow and cannot alias `x` or `w`; `read_dst = false`, so
    // `out`'s old values are never read; `Parallelism::None` runs on this thread only.
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
    Ok(())
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

    /// The `unsafe` call's preconditions are checked by the function itself, in every build:
    /// any length that is not the product of the dimensions, or dimensions whose product
    /// overflows, is an error (with `debug_assert!` only, a release build read and wrote out
    /// of bounds).
    #[test]
    fn product_refuses_lengths_that_do_not_match_its_dimensions() {
        let (rows, inputs, units) = (20, 3, 5);
        let x = vec![1.0f32; rows * inputs];
        let w = vec![1.0f32; inputs * units];
        let mut out = vec![0.0f32; rows * units];
        product(&x, &w, &mut out, rows, inputs, units).unwrap();
        assert!(out.iter().all(|&v| v == 3.0));
        let short = |e: Error| e.to_string();
        for (what, result) in [
            (
                "weights",
                product(&x, &w[..2], &mut out, rows, inputs, units),
            ),
            ("input", product(&x[1..], &w, &mut out, rows, inputs, units)),
            (
                "output",
                product(&x, &w, &mut [0.0; 3], rows, inputs, units),
            ),
            // More rows than the input holds.
            ("input", product(&x, &w, &mut out, rows + 1, inputs, units)),
            // Dimensions whose products overflow.
            ("input", product(&x, &w, &mut out, usize::MAX, 2, units)),
            (
                "weights",
                product(&x, &w, &mut out, rows, inputs, usize::MAX),
            ),
        ] {
            let message = short(result.unwrap_err());
            assert!(message.contains(what), "{what}: {message}");
        }
        // Empty dimensions: nothing read, the empty sum written.
        product(&[], &[], &mut [], 0, 0, usize::MAX).unwrap();
        let mut zeros = vec![7.0f32; 4];
        product(&[], &[], &mut zeros, 2, 0, 2).unwrap();
        assert_eq!(zeros, [0.0; 4]);
    }

    /// `dense`, the crate-visible entry, refuses mismatched buffers too.
    #[test]
    fn dense_refuses_mismatched_buffers() {
        let layer = Layer {
            inputs: 3,
            units: 2,
            weight_t: vec![0.5; 6],
            bias: vec![0.0; 2],
            activation: Activation::Identity,
        };
        for rows in [1, SMALL_BATCH + 4] {
            let x = vec![1.0f32; rows * 3];
            assert!(dense(&x[1..], rows, &layer, &mut vec![0.0; rows * 2]).is_err());
            assert!(dense(&x, rows, &layer, &mut vec![0.0; rows * 2 + 1]).is_err());
            assert!(dense(&x, usize::MAX, &layer, &mut vec![0.0; rows * 2]).is_err());
            let mut out = vec![0.0; rows * 2];
            dense(&x, rows, &layer, &mut out).unwrap();
            assert!(out.iter().all(|&v| (v - 1.5).abs() < 1e-6));
        }
    }
}
