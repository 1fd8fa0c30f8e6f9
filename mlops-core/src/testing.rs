//! Conformance suites (feature `testing`, off by default), as object_store's `integration`
//! module: a host that implements one of the workspace's traits runs the same suite on its
//! implementation that the workspace runs on its own.
//!
//! Here: [`predictor`], the [`Predictor`] contract. The serving traits' suites are in
//! `mlops_serve::testing`, the experiment tracker's in `mlops_train::testing`.
//!
//! A suite returns when the implementation conforms and **panics** on the first violation,
//! with a message that starts with the suite's name (`Predictor suite:`) and names the
//! property and the values seen — so it is called from a `#[test]` and reads as a test
//! failure. It is test-support code: unlike the rest of the library it panics by design.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::{Array2, ArrayView2, Axis, Slice};

use crate::model::Predictor;

/// Runs `f`, turning a panic inside the implementation into the suite's own panic, which
/// names the call.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("Predictor suite: {what} panicked ({message}); a predictor returns an error, never panics")
        }
    }
}

/// `got` equals `want` row for row within `tolerance` (NaN only where `want` is NaN).
fn same(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "Predictor suite: {what}: {} probabilities for {} rows",
        got.len(),
        want.len()
    );
    for (row, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance || (g.is_nan() && w.is_nan()),
            "Predictor suite: {what}: row {row} is {g}, expected {w} (within {tolerance})"
        );
    }
}

/// Scores `x`, failing the suite on an error or a wrong number of outputs.
fn score(p: &dyn Predictor, what: &str, x: ArrayView2<'_, f32>) -> Vec<f32> {
    let out = no_panic(what, || p.predict_proba(x))
        .unwrap_or_else(|e| panic!("Predictor suite: {what}: refused a valid batch: {e}"));
    assert_eq!(
        out.len(),
        x.nrows(),
        "Predictor suite: {what}: {} probabilities for {} rows",
        out.len(),
        x.nrows()
    );
    out.to_vec()
}

/// The [`Predictor`] contract, checked on `p` with `rows`: feature rows (finite values, at
/// least two rows, `p.n_features()` columns) that `p` scores. What it checks:
///
/// - `n_features()` is `feature_names().len()`; `threshold()` is in `[0, 1]`;
/// - a batch of the wrong width, and an output buffer of the wrong length, are refused with
///   an error (not a panic, not an answer); the empty batch gives no probabilities;
/// - every probability of `rows` is in `[0, 1]`; `predict_proba_into` writes what
///   `predict_proba` returns; `predict_labels` is `probability >= threshold()`;
/// - any layout gives the contiguous answer: a column-major copy, every other row, the rows
///   reversed, a view into a wider array; row by row gives the batched answer; four threads
///   scoring at once give it too;
/// - a row with a NaN, `+inf` or `-inf` feature is NaN — never a finite number — and every
///   other row is scored as usual, or the whole call is an error (a `reject` policy);
///   `predict_labels` on such a batch is an error;
/// - with `reference`, every probability equals the reference's.
///
/// Answers are compared within `tolerance` (a compiled engine and its reference differ in
/// the last bits; `1e-5` suits `f32` networks). Panics, naming the property and the values,
/// on the first violation; also when `rows` breaks the contract above (the caller's mistake).
///
/// A host runs it on its own predictor:
///
/// ```
/// use mlops_core::model::{check_batch, Predictor};
/// use mlops_core::testing;
/// use ndarray::{array, ArrayView2};
///
/// /// The host's model: the logistic of the sum of two features.
/// struct Sum2 {
///     names: Vec<String>,
/// }
///
/// impl Predictor for Sum2 {
///     fn feature_names(&self) -> &[String] {
///         &self.names
///     }
///     fn predict_proba_into(
///         &self,
///         x: ArrayView2<'_, f32>,
///         out: &mut [f32],
///     ) -> mlops_core::Result<()> {
///         check_batch(2, x, out)?;
///         for (o, row) in out.iter_mut().zip(x.rows()) {
///             // NaN in, NaN out: the sum of a NaN or an infinity is never rescued.
///             let z = row[0] + row[1];
///             *o = if z.is_finite() { 1.0 / (1.0 + (-z).exp()) } else { f32::NAN };
///         }
///         Ok(())
///     }
/// }
///
/// let model = Sum2 { names: vec!["a".into(), "b".into()] };
/// let rows = array![[0.0_f32, 1.0], [-2.0, 0.5], [3.0, -1.0]];
/// testing::predictor(&model, rows.view(), 1e-6, None);
/// ```
pub fn predictor(
    p: &dyn Predictor,
    rows: ArrayView2<'_, f32>,
    tolerance: f32,
    reference: Option<&dyn Predictor>,
) {
    let n = p.n_features();
    assert_eq!(
        n,
        p.feature_names().len(),
        "Predictor suite: n_features() is {n} but feature_names() has {} names",
        p.feature_names().len()
    );
    assert!(
        rows.ncols() == n && rows.nrows() >= 2 && rows.iter().all(|v| v.is_finite()),
        "Predictor suite: the rows given are {}x{} (finite: {}); the suite needs at least 2 finite rows of {n} features",
        rows.nrows(),
        rows.ncols(),
        rows.iter().all(|v| v.is_finite())
    );
    let threshold = p.threshold();
    assert!(
        (0.0..=1.0).contains(&threshold),
        "Predictor suite: threshold() is {threshold}, expected a probability in [0, 1]"
    );

    // Wrong width (one more, one fewer) and wrong output length: errors, not answers.
    for width in [n + 1, n.saturating_sub(1)] {
        if width == n {
            continue;
        }
        let wrong = Array2::<f32>::zeros((2, width));
        let what = format!("a batch of {width} columns (the model has {n})");
        let result = no_panic(&what, || p.predict_proba(wrong.view()));
        assert!(
            result.is_err(),
            "Predictor suite: {what} was answered ({result:?}), expected an error"
        );
    }
    for len in [rows.nrows() + 1, rows.nrows() - 1] {
        let mut out = vec![0.0; len];
        let what = format!("an output buffer of {len} for {} rows", rows.nrows());
        let result = no_panic(&what, || p.predict_proba_into(rows, &mut out));
        assert!(
            result.is_err(),
            "Predictor suite: {what} was filled, expected an error"
        );
    }
    let empty = score(p, "the empty batch", Array2::<f32>::zeros((0, n)).view());
    assert!(
        empty.is_empty(),
        "Predictor suite: the empty batch: {empty:?}"
    );

    // The contiguous answer, in [0, 1], the same through every entry point.
    let contiguous = rows.as_standard_layout().into_owned();
    let want = score(p, "the rows", contiguous.view());
    for (row, &v) in want.iter().enumerate() {
        assert!(
            (0.0..=1.0).contains(&v),
            "Predictor suite: row {row} is {v}, expected a probability in [0, 1] (its features are finite)"
        );
    }
    let mut into = vec![f32::NAN; rows.nrows()];
    no_panic("predict_proba_into", || {
        p.predict_proba_into(contiguous.view(), &mut into)
    })
    .unwrap_or_else(|e| panic!("Predictor suite: predict_proba_into refused the rows: {e}"));
    same("predict_proba_into", &into, &want, tolerance);
    let labels = no_panic("predict_labels", || p.predict_labels(contiguous.view()))
        .unwrap_or_else(|e| panic!("Predictor suite: predict_labels refused the rows: {e}"));
    for (row, (&label, &v)) in labels.iter().zip(&want).enumerate() {
        assert_eq!(
            label,
            u8::from(v >= threshold),
            "Predictor suite: predict_labels row {row}: label {label} for probability {v} at threshold {threshold}"
        );
    }
    if let Some(reference) = reference {
        let expected = score(reference, "the reference on the rows", contiguous.view());
        same("against the reference", &want, &expected, tolerance);
    }

    // Any layout gives the contiguous answer.
    let column_major = contiguous.t().to_owned().reversed_axes();
    let got = score(p, "a column-major batch", column_major.view());
    same("a column-major batch", &got, &want, tolerance);
    let every_other = contiguous.slice_axis(Axis(0), Slice::new(0, None, 2));
    let got = score(p, "every other row", every_other);
    let want_other: Vec<f32> = want.iter().step_by(2).copied().collect();
    same("every other row", &got, &want_other, tolerance);
    let reversed = contiguous.slice_axis(Axis(0), Slice::new(0, None, -1));
    let got = score(p, "the rows reversed", reversed);
    let want_reversed: Vec<f32> = want.iter().rev().copied().collect();
    same("the rows reversed", &got, &want_reversed, tolerance);
    let mut wider = Array2::<f32>::from_elem((rows.nrows(), n + 3), f32::NAN);
    wider
        .slice_axis_mut(Axis(1), Slice::from(1..n + 1))
        .assign(&contiguous);
    let inner = wider.slice_axis(Axis(1), Slice::from(1..n + 1));
    let got = score(p, "a view into a wider array", inner);
    same("a view into a wider array", &got, &want, tolerance);
    let one_by_one: Vec<f32> = (0..rows.nrows())
        .flat_map(|r| {
            score(
                p,
                "one row",
                contiguous.slice_axis(Axis(0), Slice::from(r..r + 1)),
            )
        })
        .collect();
    same("row by row", &one_by_one, &want, tolerance);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| score(p, "the rows from one of four threads", contiguous.view())))
            .collect();
        for h in handles {
            match h.join() {
                Ok(got) => same("four threads at once", &got, &want, tolerance),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });

    // A non-finite feature: that row is NaN and the rest as usual, or the call is an error.
    for (k, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
        .into_iter()
        .enumerate()
    {
        let row = k % rows.nrows();
        let feature = (k * 7) % n;
        let mut x = contiguous.clone();
        x[[row, feature]] = bad;
        let what = format!("feature {feature} of row {row} set to {bad}");
        match no_panic(&what, || p.predict_proba(x.view())) {
            Err(_) => {}
            Ok(got) => {
                assert_eq!(
                    got.len(),
                    x.nrows(),
                    "Predictor suite: {what}: {} probabilities for {} rows",
                    got.len(),
                    x.nrows()
                );
                assert!(
                    got[row].is_nan(),
                    "Predictor suite: {what}: that row scored {}, expected NaN (or an error): a non-finite feature never gets a confident-looking number",
                    got[row]
                );
                let (mut others, mut expected) = (got.to_vec(), want.clone());
                others.remove(row);
                expected.remove(row);
                same(
                    &format!("{what}: the other rows"),
                    &others,
                    &expected,
                    tolerance,
                );
            }
        }
        let labeled = no_panic(&format!("predict_labels, {what}"), || {
            p.predict_labels(x.view())
        });
        assert!(
            labeled.is_err(),
            "Predictor suite: predict_labels, {what}: answered {labeled:?}, expected an error (a row without a probability has no label)"
        );
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{array, ArrayView2};

    use super::predictor;
    use crate::model::Predictor;
    use crate::model::{check_batch, Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};

    fn model() -> MlpModel {
        let spec = ModelSpec::new(
            vec!["x".into(), "y".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let artifact =
            ModelArtifact::new(spec, vec![(array![[2.0_f32, -1.0]], array![0.1_f32])]).unwrap();
        MlpModel::new(&artifact).unwrap()
    }

    fn rows() -> ndarray::Array2<f32> {
        array![[0.0_f32, 1.0], [1.0, 0.0], [-0.5, 2.0], [0.3, 0.3]]
    }

    /// What a broken predictor gets wrong, over a conforming one.
    enum Fault {
        /// Half a chance for a row it cannot read.
        HalfForNaN,
        /// Answers any width, reading the first columns.
        AnyWidth,
        /// The logit, not the probability.
        Logit,
        /// A different answer for a row alone than in a batch.
        AloneDiffers,
    }

    struct Broken(MlpModel, Fault);

    impl Predictor for Broken {
        fn feature_names(&self) -> &[String] {
            self.0.feature_names()
        }
        fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> crate::Result<()> {
            if let Fault::AnyWidth = self.1 {
                out.fill(0.5);
                return check_batch(x.ncols(), x, out);
            }
            self.0.predict_proba_into(x, out)?;
            for (o, row) in out.iter_mut().zip(x.rows()) {
                match self.1 {
                    Fault::HalfForNaN if row.iter().any(|v| !v.is_finite()) => *o = 0.5,
                    Fault::Logit => *o = (*o / (1.0 - *o)).ln(),
                    Fault::AloneDiffers if x.nrows() == 1 => *o *= 0.9,
                    _ => {}
                }
            }
            Ok(())
        }
    }

    #[test]
    fn a_conforming_predictor_passes_alone_and_against_itself() {
        let m = model();
        predictor(&m, rows().view(), 0.0, Some(&m));
    }

    #[test]
    #[should_panic(expected = "expected NaN (or an error)")]
    fn half_a_chance_for_a_nan_row_fails() {
        predictor(
            &Broken(model(), Fault::HalfForNaN),
            rows().view(),
            1e-6,
            None,
        );
    }

    #[test]
    #[should_panic(expected = "a batch of 3 columns (the model has 2) was answered")]
    fn answering_any_width_fails() {
        predictor(&Broken(model(), Fault::AnyWidth), rows().view(), 1e-6, None);
    }

    #[test]
    #[should_panic(expected = "expected a probability in [0, 1]")]
    fn a_logit_is_not_a_probability() {
        predictor(&Broken(model(), Fault::Logit), rows().view(), 1e-6, None);
    }

    #[test]
    #[should_panic(expected = "row by row: row 0")]
    fn a_row_alone_must_score_as_in_a_batch() {
        predictor(
            &Broken(model(), Fault::AloneDiffers),
            rows().view(),
            1e-6,
            None,
        );
    }

    #[test]
    #[should_panic(expected = "against the reference: row 0")]
    fn another_model_is_not_the_reference() {
        let spec = ModelSpec::new(
            vec!["x".into(), "y".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let other =
            ModelArtifact::new(spec, vec![(array![[2.0_f32, -1.0]], array![0.3_f32])]).unwrap();
        let other = MlpModel::new(&other).unwrap();
        predictor(&model(), rows().view(), 1e-6, Some(&other));
    }
}
