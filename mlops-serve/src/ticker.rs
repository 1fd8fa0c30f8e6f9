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
/// ```
/// use mlops_serve::ticker::{ManualTicker, Ticker};
///
/// let t = ManualTicker::default();
/// t.advance_ns(1_500);
/// assert_eq!(t.now_ns(), 1_500);
/// ```
#[derive(Debug, Default)]
pub struct ManualTicker {
    now: AtomicU64,
}

impl ManualTicker {
    /// Moves the time forward by `ns`.
    pub fn advance_ns(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Ticker for ManualTicker {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
