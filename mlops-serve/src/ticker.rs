//! Where request latency comes from: a monotonic nanosecond counter, injected like the
//! [`Clock`](mlops_core::clock::Clock) of decisions, so a replay can give each model a
//! simulated service time and stay deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonic time source in nanoseconds.
pub trait Ticker: Send + Sync {
    /// Nanoseconds since an arbitrary, fixed origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// Real time: `std::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct InstantTicker {
    origin: Instant,
}

impl Default for InstantTicker {
    fn default() -> Self {
        InstantTicker {
            origin: Instant::now(),
        }
    }
}

impl Ticker for InstantTicker {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Time that moves only when told to: a replay advances it by each model's simulated service
/// time (see `examples/canary.rs`).
///
/// A [`ManualTicker::default`] is one clock shared by every thread. A
/// [`ManualTicker::per_thread`] gives each thread its own: what a replay needs when a shadow
/// model is scored on the router's shadow thread beside the request loop, so that neither
/// thread's simulated service time lands inside the other's measured latency (the router and
/// the shadow worker read the ticker before and after a call on the thread that makes it).
///
/// ```
/// use mlops_serve::ticker::{ManualTicker, Ticker};
///
/// let t = ManualTicker::default();
/// t.advance_ns(1_500);
/// assert_eq!(t.now_ns(), 1_500);
///
/// let own = std::sync::Arc::new(ManualTicker::per_thread());
/// let before = own.now_ns();
/// let other = own.clone();
/// std::thread::spawn(move || other.advance_ns(1_000_000)).join().unwrap();
/// assert_eq!(own.now_ns(), before); // another thread's time is its own
/// own.advance_ns(7);
/// assert_eq!(own.now_ns() - before, 7);
/// ```
#[derive(Debug, Default)]
pub struct ManualTicker {
    now: AtomicU64,
    per_thread: bool,
}

thread_local! {
    /// The simulated nanoseconds of this thread, shared by every per-thread [`ManualTicker`]
    /// (only differences between two readings on one thread are ever used).
    static THREAD_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl ManualTicker {
    /// A ticker whose time is kept per thread (see the type's docs).
    pub fn per_thread() -> Self {
        ManualTicker {
            now: AtomicU64::new(0),
            per_thread: true,
        }
    }

    /// Moves the time forward by `ns` (this thread's time, for a per-thread ticker).
    pub fn advance_ns(&self, ns: u64) {
        if self.per_thread {
            THREAD_NS.with(|t| t.set(t.get().saturating_add(ns)));
        } else {
            self.now.fetch_add(ns, Ordering::SeqCst);
        }
    }
}

impl Ticker for ManualTicker {
    fn now_ns(&self) -> u64 {
        if self.per_thread {
            THREAD_NS.with(std::cell::Cell::get)
        } else {
            self.now.load(Ordering::SeqCst)
        }
    }
}
