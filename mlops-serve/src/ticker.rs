//! Where request latency comes from: a monotonic nanosecond counter, injected like the
//! [`Clock`](mlops_core::clock::Clock) of decisions, so a replay can give each model a
//! simulated service time and stay deterministic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;
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
///
/// Time saturates at `u64::MAX` rather than wrapping; [`ManualTicker::advance_ns`] says when it
/// did, so a caller can stop rather than measure zeros from then on.
#[derive(Debug, Default)]
pub struct ManualTicker {
    now: AtomicU64,
    per_thread: bool,
    /// Each thread's own time, for a per-thread ticker: this ticker's alone (another ticker on
    /// the same thread keeps its own).
    threads: Mutex<HashMap<ThreadId, u64>>,
}

impl ManualTicker {
    /// A ticker whose time is kept per thread (see the type's docs).
    pub fn per_thread() -> Self {
        ManualTicker {
            per_thread: true,
            ..ManualTicker::default()
        }
    }

    /// Moves the time forward by `ns` (this thread's time, for a per-thread ticker), stopping
    /// at `u64::MAX`: `false` when it got there (this call's time was cut short, and every
    /// later difference reads 0).
    pub fn advance_ns(&self, ns: u64) -> bool {
        if self.per_thread {
            let mut threads = self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let t = threads.entry(std::thread::current().id()).or_insert(0);
            let (sum, overflow) = t.overflowing_add(ns);
            *t = if overflow { u64::MAX } else { sum };
            !overflow
        } else {
            let mut overflow = false;
            // `fetch_update` with a closure that always returns `Some` never fails.
            let _ = self
                .now
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                    let (sum, o) = t.overflowing_add(ns);
                    overflow = o;
                    Some(if o { u64::MAX } else { sum })
                });
            !overflow
        }
    }
}

impl Ticker for ManualTicker {
    fn now_ns(&self) -> u64 {
        if self.per_thread {
            self.threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&std::thread::current().id())
                .copied()
                .unwrap_or(0)
        } else {
            self.now.load(Ordering::SeqCst)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two per-thread tickers on one thread keep their own time, and neither wraps.
    #[test]
    fn per_thread_tickers_are_their_own_and_saturate() {
        let a = ManualTicker::per_thread();
        let b = ManualTicker::per_thread();
        assert!(a.advance_ns(u64::MAX - 5));
        assert_eq!(b.now_ns(), 0, "another ticker on this thread moved");
        assert!(b.advance_ns(3));
        assert_eq!(b.now_ns(), 3);
        assert!(!a.advance_ns(10), "the overflow was not reported");
        assert_eq!(a.now_ns(), u64::MAX);
        let shared = ManualTicker::default();
        assert!(shared.advance_ns(u64::MAX - 1));
        assert!(!shared.advance_ns(2));
        assert_eq!(shared.now_ns(), u64::MAX, "the shared ticker wrapped");
    }
}
