//! Injected time: every decision that depends on time (cooldowns, bake times, windows,
//! retention) reads a [`Clock`], so tests run a whole rollout in milliseconds without sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Microseconds of `t` since the Unix epoch, negative before it (saturating at `i64`'s
/// bounds): the time of a logged or monitored row.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mlops_core::clock::{from_unix_micros, unix_micros};
///
/// assert_eq!(unix_micros(UNIX_EPOCH + Duration::from_micros(5)), 5);
/// assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_micros(5)), -5);
/// assert_eq!(from_unix_micros(-5), UNIX_EPOCH - Duration::from_micros(5));
/// assert_eq!(from_unix_micros(unix_micros(UNIX_EPOCH + Duration::from_secs(9))), UNIX_EPOCH + Duration::from_secs(9));
/// ```
pub fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
    }
}

/// The time `us` microseconds after the Unix epoch (before it when negative): the inverse of
/// [`unix_micros`]. A time the platform cannot hold is the nearest one it can (the epoch
/// moved by as much as fits).
pub fn from_unix_micros(us: i64) -> SystemTime {
    let d = Duration::from_micros(us.unsigned_abs());
    let moved = if us >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    };
    moved.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (for tests and replays).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use mlops_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(60));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
