//! Durations from user-controlled seconds (flags, configuration files, request fields).
//!
//! `Duration::from_secs_f64` panics on values it cannot hold (about 1.8e19 seconds) and
//! silently rounds tiny values to zero. Every duration a user controls goes through
//! [`seconds`] with a [`SecondsRange`] that names the smallest and the largest value the
//! caller accepts, so a hostile or mistyped value is a named error, never a panic, a hang or
//! a busy loop.

use std::time::Duration;

use crate::{Error, Result};

/// The closed range of seconds a setting accepts.
///
/// ```
/// use mlops_core::duration::SecondsRange;
///
/// let poll = SecondsRange::new(0.01, 86_400.0);
/// assert_eq!(poll.min(), 0.01);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondsRange {
    min: f64,
    max: f64,
}

/// One week: the default upper bound of [`SecondsRange::positive`].
pub const WEEK_SECONDS: f64 = 7.0 * 86_400.0;

impl SecondsRange {
    /// The range `[min, max]`. A `min` below a nanosecond (or NaN) becomes `1e-9`, and a `max`
    /// above `1e12` seconds (about 31,700 years, or NaN) becomes `1e12`, so any range built here
    /// is one `Duration` can hold. A `min` above `max` (after that) is an empty range: it
    /// accepts nothing, and [`seconds`] says the range is empty.
    ///
    /// ```
    /// use mlops_core::duration::{seconds, SecondsRange};
    /// assert_eq!(SecondsRange::new(0.0, f64::INFINITY).max(), 1e12);
    /// let empty = SecondsRange::new(5.0, 1.0);
    /// assert!(empty.is_empty() && !empty.contains(3.0));
    /// assert!(seconds("f", 3.0, empty).unwrap_err().to_string().contains("empty range"));
    /// ```
    pub const fn new(min: f64, max: f64) -> Self {
        let min = if min.is_nan() || min < 1e-9 {
            1e-9
        } else {
            min
        };
        let max = if max.is_nan() || max > 1e12 {
            1e12
        } else {
            max
        };
        SecondsRange { min, max }
    }

    /// From a millisecond up to a week: what a timeout, a poll interval or a step accepts
    /// unless it says otherwise.
    ///
    /// ```
    /// use mlops_core::duration::SecondsRange;
    /// assert_eq!(SecondsRange::positive().max(), 604_800.0);
    /// ```
    pub const fn positive() -> Self {
        SecondsRange::new(1e-3, WEEK_SECONDS)
    }

    /// The smallest accepted value, in seconds.
    ///
    /// ```
    /// use mlops_core::duration::SecondsRange;
    /// assert_eq!(SecondsRange::new(2.0, 3.0).min(), 2.0);
    /// ```
    pub const fn min(&self) -> f64 {
        self.min
    }

    /// The largest accepted value, in seconds.
    ///
    /// ```
    /// use mlops_core::duration::SecondsRange;
    /// assert_eq!(SecondsRange::new(2.0, 3.0).max(), 3.0);
    /// ```
    pub const fn max(&self) -> f64 {
        self.max
    }

    /// `true` when the range accepts nothing (`min` > `max`).
    ///
    /// ```
    /// use mlops_core::duration::SecondsRange;
    /// assert!(!SecondsRange::positive().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// `true` when `seconds` is finite and inside the range.
    ///
    /// ```
    /// use mlops_core::duration::SecondsRange;
    /// assert!(!SecondsRange::positive().contains(f64::NAN));
    /// ```
    pub fn contains(&self, seconds: f64) -> bool {
        seconds.is_finite() && seconds >= self.min && seconds <= self.max
    }
}

/// `seconds` as a `Duration` when it is finite and inside `range`, else an error naming
/// `field`, the value and the range.
///
/// ```
/// use std::time::Duration;
/// use mlops_core::duration::{seconds, SecondsRange};
///
/// assert_eq!(seconds("--poll-seconds", 1.5, SecondsRange::positive())?, Duration::from_millis(1500));
/// let e = seconds("--poll-seconds", 1e20, SecondsRange::positive()).unwrap_err();
/// assert!(e.to_string().starts_with("invalid --poll-seconds = 1e20: expected a number of seconds from 0.001 to 604800"));
/// // The value as Rust's shortest round-trip form: never hundreds of digits.
/// let e = seconds("f", 1e-300, SecondsRange::positive()).unwrap_err();
/// assert!(e.to_string().starts_with("invalid f = 1e-300: "));
/// assert!(seconds("--rps gap", 1e-20, SecondsRange::positive()).is_err());
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn seconds(field: &str, seconds: f64, range: SecondsRange) -> Result<Duration> {
    if range.contains(seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else if range.is_empty() {
        Err(Error::invalid(
            field,
            format!("{seconds:?}"),
            format!(
                "a value in an empty range (from {} to {}: the caller's minimum is above its maximum)",
                range.min(),
                range.max()
            ),
        ))
    } else {
        Err(Error::invalid(
            field,
            format!("{seconds:?}"),
            format!(
                "a number of seconds from {} to {}",
                range.min(),
                range.max()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_outside_the_range_is_an_error_never_a_panic() {
        let r = SecondsRange::positive();
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            1e-20,
            1e-4,
            WEEK_SECONDS * 1.0001,
            1e20,
            1e300,
            f64::MAX,
        ] {
            let e = seconds("f", v, r).unwrap_err();
            assert!(e.to_string().starts_with("invalid f = "), "{e}");
        }
        assert_eq!(seconds("f", 1e-3, r).unwrap(), Duration::from_millis(1));
        assert_eq!(
            seconds("f", WEEK_SECONDS, r).unwrap(),
            Duration::from_secs(604_800)
        );
    }

    #[test]
    fn a_range_wider_than_a_duration_holds_is_clamped() {
        let r = SecondsRange::new(-5.0, f64::MAX);
        assert_eq!((r.min(), r.max()), (1e-9, 1e12));
        assert!(seconds("f", 1e13, r).is_err());
        assert!(seconds("f", 1e12, r).is_ok());
    }

    /// The value prints in Rust's shortest round-trip form (`{:?}`), never as hundreds of
    /// digits.
    #[test]
    fn an_error_prints_the_value_short() {
        let r = SecondsRange::positive();
        for (v, shown) in [
            (1e-300, "1e-300"),
            (1e300, "1e300"),
            (f64::NAN, "NaN"),
            (-1.5, "-1.5"),
        ] {
            let e = seconds("f", v, r).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid f = {shown}: ")), "{e}");
        }
    }
}
