//! Timing shared by the bench examples (included with `#[path]`).

use std::time::{Duration, Instant};

/// Median nanoseconds of one call, over rounds of `per_round` calls for `seconds` (at least 5
/// rounds).
pub fn p50_ns(seconds: Duration, per_round: usize, mut f: impl FnMut()) -> f64 {
    let mut rounds = Vec::new();
    let end = Instant::now() + seconds;
    while Instant::now() < end || rounds.len() < 5 {
        let t = Instant::now();
        for _ in 0..per_round {
            f();
        }
        rounds.push(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}
