//! The compiled engine's memory, observed by a counting global allocator. A binary of its
//! own: the allocator serves the whole process, so it counts per thread (each test scores on
//! its own thread and reads only that thread's counters; the harness's threads do not
//! disturb it).
//!
//! - After a warm-up call, scoring allocates nothing on the small-batch path (up to 8 rows),
//!   and on the large-batch one only the `gemm` crate's few small bookkeeping buffers per
//!   block of rows: a count proportional to the batch, bytes that are not.
//! - The scratch a thread keeps, and the peak memory a call adds, are bounded by the engine's
//!   block size, not by the batch: a 65,536-row batch is scored in blocks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array1, Array2};

struct Counting;

thread_local! {
    /// Allocations (and growing reallocations) made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// The most `LIVE` has been since the last `reset_peak`.
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(bytes: i64, counts: bool) {
    // `try_with`: the counters are plain `Cell`s (no destructor), but never panic in the
    // allocator, even while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + u64::from(counts)));
    let _ = LIVE.try_with(|l| {
        let now = l.get() + bytes;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only thread-local `Cell`s, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, true);
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, true);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64), false);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64, true);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// Restarts the peak at the current live bytes; returns them.
fn reset_peak() -> i64 {
    let now = live();
    PEAK.with(|p| p.set(now));
    now
}

fn peak() -> i64 {
    PEAK.with(Cell::get)
}

const FEATURES: usize = 30;
/// The widest layer: the engine's scratch per row is a few times this many `f32`s.
const WIDEST: usize = 64;

/// A `30 -> 64 -> 32 -> 1` SiLU network (the seed model's shape, give or take).
fn engine() -> CompiledModel {
    let spec = ModelSpec::new(
        (0..FEATURES).map(|i| format!("f{i}")).collect(),
        vec![
            LayerSpec::new(WIDEST, Activation::Silu),
            LayerSpec::new(32, Activation::Silu),
            LayerSpec::new(1, Activation::Sigmoid),
        ],
    );
    let mut fan_in = FEATURES;
    let layers = [WIDEST, 32, 1]
        .iter()
        .map(|&units| {
            let w = Array2::from_shape_fn((units, fan_in), |(u, i)| {
                ((u * 13 + i * 7) % 17) as f32 / 17.0 - 0.5
            });
            fan_in = units;
            (w, Array1::from_elem(units, 0.05))
        })
        .collect();
    let artifact = ModelArtifact::new(spec, layers).unwrap();
    CompiledModel::compile(&artifact, NonFinitePolicy::Nan).unwrap()
}

fn batch(rows: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, FEATURES), |(r, c)| {
        ((r * 31 + c * 11) % 23) as f32 / 7.0 - 1.5
    })
}

/// Runs `f` on a fresh thread (fresh counters, no scratch yet).
fn on_a_fresh_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn small_batches_allocate_nothing_after_the_first_call() {
    let model = engine();
    on_a_fresh_thread(|| {
        let batches: Vec<_> = (1..=8).map(batch).collect();
        let mut out = [0.0f32; 8];
        for x in &batches {
            model
                .predict_proba_into(x.view(), &mut out[..x.nrows()])
                .unwrap();
        }
        let before = allocations();
        for _ in 0..50 {
            for x in &batches {
                model
                    .predict_proba_into(x.view(), &mut out[..x.nrows()])
                    .unwrap();
            }
        }
        assert_eq!(
            allocations() - before,
            0,
            "400 small-batch calls after a warm-up allocated"
        );
    });
}

#[test]
fn large_batches_allocate_a_bounded_handful_per_block_after_warm_up() {
    let model = engine();
    on_a_fresh_thread(|| {
        let sizes = [9, 100, 1000, 4096, 65_536];
        let batches: Vec<_> = sizes.iter().map(|&r| batch(r)).collect();
        let mut out = vec![0.0f32; 65_536];
        // Warm-up: one call of every size.
        for x in &batches {
            model
                .predict_proba_into(x.view(), &mut out[..x.nrows()])
                .unwrap();
        }
        for x in &batches {
            let (count, base) = (allocations(), reset_peak());
            model
                .predict_proba_into(x.view(), &mut out[..x.nrows()])
                .unwrap();
            let (n, grew) = (allocations() - count, peak() - base);
            // The gemm crate allocates a few bookkeeping and packing buffers per product
            // (measured on AVX2: 2 allocations and at most 136 bytes a block of 1,024 rows;
            // which buffers it packs depends on the CPU's caches): a fixed number per block,
            // bytes bounded by the block, never by the batch.
            let blocks = x.nrows().div_ceil(256) as u64;
            assert!(
                n <= 4 * blocks,
                "{} rows: {n} allocations in one call after warm-up",
                x.nrows()
            );
            assert!(
                grew <= 1 << 20,
                "{} rows: one call after warm-up took {grew} bytes more at its peak",
                x.nrows()
            );
            assert_eq!(live(), base, "{} rows: the call kept memory", x.nrows());
        }
    });
}

/// The scratch is per block: scoring 65,536 rows from a cold thread adds at its peak, and
/// keeps afterwards, a few MiB (the block's activations and gemm's packing buffers) where
/// buffers sized to the batch would take 3 × 65,536 × 64 × 4 bytes = 48 MiB.
#[test]
fn a_huge_batch_is_scored_in_bounded_memory() {
    let model = engine();
    let rows = 65_536;
    let x = batch(rows);
    let mut out = vec![0.0f32; rows];
    let (grew, kept) = on_a_fresh_thread(|| {
        let base = reset_peak();
        model.predict_proba_into(x.view(), &mut out).unwrap();
        (peak() - base, live() - base)
    });
    let batch_sized = 3 * rows * WIDEST * std::mem::size_of::<f32>();
    let bound = 8 << 20;
    assert!(
        grew <= bound,
        "scoring {rows} rows took {grew} bytes at its peak (bound {bound}; scratch sized to the batch would be {batch_sized})"
    );
    assert!(
        kept <= bound,
        "the thread kept {kept} bytes of scratch after {rows} rows (bound {bound})"
    );
}
