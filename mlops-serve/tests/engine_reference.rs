//! The compiled engine against values computed independently of mlops' `Activation::apply`
//! (numpy float64, `scripts/fixtures/activations.py`), and under concurrency: many threads
//! at once, rayon pools, nested calls, every answer checked against the single-threaded one.

#[allow(dead_code)] // the points are mlops-core's test
#[path = "../../mlops-core/tests/support/activations.rs"]
mod fixture;

use std::sync::Arc;

use mlops_core::model::{Activation, Predictor};
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array2, Axis, Slice};

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (row, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5,
            "{what}, row {row}: engine {g}, numpy float64 {w}"
        );
    }
}

/// Every hidden activation, on both kernel paths (one call for all 40 rows takes the
/// large-batch path; one row at a time and blocks of 3 the register tiles), against numpy.
#[test]
fn compiled_engine_matches_numpy_forward_pass_for_every_hidden_activation() {
    let f = fixture::load();
    let x = f.network.x();
    for activation in Activation::ALL {
        let want = f.network.probabilities(activation);
        let engine =
            CompiledModel::compile(&f.network.artifact(activation), NonFinitePolicy::Nan).unwrap();
        let whole = engine.predict_proba(x.view()).unwrap();
        assert_close(
            whole.as_slice().unwrap(),
            want,
            &format!("{activation:?}, one call"),
        );
        for block in [1, 3] {
            let mut got = Vec::new();
            for start in (0..x.nrows()).step_by(block) {
                let end = (start + block).min(x.nrows());
                let rows = x.slice_axis(Axis(0), Slice::from(start..end));
                got.extend(engine.predict_proba(rows).unwrap());
            }
            assert_close(&got, want, &format!("{activation:?}, blocks of {block}"));
        }
    }
}

/// Two models of different widths (so a thread's scratch is resized between calls), the
/// fixture's rows stacked into batches of several sizes, and their single-threaded answers.
struct Case {
    models: Vec<Arc<CompiledModel>>,
    batches: Vec<Array2<f32>>,
    /// `answers[model][batch]`.
    answers: Vec<Vec<Vec<f32>>>,
}

fn case() -> Case {
    let f = fixture::load();
    let x = f.network.x();
    let models: Vec<Arc<CompiledModel>> = [Activation::Silu, Activation::Tanh]
        .into_iter()
        .map(|a| {
            Arc::new(CompiledModel::compile(&f.network.artifact(a), NonFinitePolicy::Nan).unwrap())
        })
        .collect();
    let batches: Vec<Array2<f32>> = [1, 5, 9, 40, 1500, 3000]
        .into_iter()
        .map(|rows| Array2::from_shape_fn((rows, x.ncols()), |(r, c)| x[[r % x.nrows(), c]]))
        .collect();
    let answers = models
        .iter()
        .map(|m| {
            batches
                .iter()
                .map(|b| m.predict_proba(b.view()).unwrap().to_vec())
                .collect()
        })
        .collect();
    Case {
        models,
        batches,
        answers,
    }
}

impl Case {
    /// Scores `(model, batch)` and checks the answer against the single-threaded one.
    fn check(&self, model: usize, batch: usize) {
        let got = self.models[model]
            .predict_proba(self.batches[batch].view())
            .unwrap();
        for (row, (g, w)) in got.iter().zip(&self.answers[model][batch]).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6,
                "model {model}, batch {batch}, row {row}: {g} vs {w} single-threaded"
            );
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.models.len()).flat_map(move |m| (0..self.batches.len()).map(move |b| (m, b)))
    }
}

#[test]
fn many_threads_at_once_get_the_single_threaded_answers() {
    let c = case();
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = &c;
            s.spawn(move || {
                for round in 0..4 {
                    // Each thread walks the pairs in its own order: sizes and models alternate.
                    let mut pairs: Vec<_> = c.pairs().collect();
                    let turn = (t * 3 + round) % pairs.len();
                    pairs.rotate_left(turn);
                    for (m, b) in pairs {
                        c.check(m, b);
                    }
                }
            });
        }
    });
}

/// Calls from the workers of a rayon pool, nested inside `rayon::join`: a worker that waits
/// in a join runs other tasks on its own thread, so one thread interleaves many calls. Each
/// call runs to its end before its worker takes another task, so none is made while another
/// call on the same thread holds that thread's scratch: this checks interleaved calls on pool
/// threads, not a re-entrant call (only the unit test
/// `a_call_while_this_threads_scratch_is_in_use_scores_correctly` in `engine/mod.rs` guards
/// that borrow; the public API offers no way inside a call).
#[test]
fn calls_from_a_rayon_pool_and_nested_joins_get_the_single_threaded_answers() {
    use rayon::prelude::*;
    let c = case();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    pool.install(|| {
        let pairs: Vec<_> = c.pairs().collect();
        (0..64).into_par_iter().for_each(|k| {
            let (m, b) = pairs[k % pairs.len()];
            let (m2, b2) = pairs[(k * 7 + 3) % pairs.len()];
            rayon::join(
                || c.check(m, b),
                || {
                    rayon::join(|| c.check(m2, b2), || c.check(1 - m, b));
                },
            );
        });
    });
}

/// A predictor that scores with other models within its own call (an ensemble, a shadow
/// comparison), on the caller's thread: every answer is right. The engine's call has
/// returned (and released the thread's scratch) before the inner calls are made, so this is
/// not a re-entrant call into the engine: a custom `Predictor` cannot get inside the engine's
/// call through the public API. Only the unit test
/// `a_call_while_this_threads_scratch_is_in_use_scores_correctly` in `engine/mod.rs` guards
/// a call made while the thread's scratch is borrowed.
#[test]
fn a_predictor_calling_another_inside_its_call_gets_the_right_answers() {
    struct Nested<'a> {
        case: &'a Case,
    }
    impl Predictor for Nested<'_> {
        fn feature_names(&self) -> &[String] {
            self.case.models[0].feature_names()
        }
        fn predict_proba_into(
            &self,
            x: ndarray::ArrayView2<'_, f32>,
            out: &mut [f32],
        ) -> mlops_core::Result<()> {
            self.case.models[0].predict_proba_into(x, out)?;
            for (m, b) in self.case.pairs() {
                self.case.check(m, b);
            }
            Ok(())
        }
    }
    let c = case();
    let nested = Nested { case: &c };
    for (b, batch) in c.batches.iter().enumerate() {
        let got = nested.predict_proba(batch.view()).unwrap();
        for (g, w) in got.iter().zip(&c.answers[0][b]) {
            assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
        }
    }
}
