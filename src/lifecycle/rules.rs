//! The rules that join a drift decision to a retrain and a rollout's end to the monitor, as a
//! small state type with pure transitions (no I/O, no clock: the host passes its own step, a
//! batch or an hour). The cooldown between alarms is the drift policy's
//! (`mlops::drift::DriftPolicy`, `cooldown_seconds`); these rules decide what an alarm it lets
//! through does:
//!
//! - a retrain request while a candidate rolls out is deferred (never a second candidate over
//!   the first);
//! - otherwise the first request schedules a retrain, due once `window` steps after the alarm
//!   are labeled (later requests before it is due change nothing);
//! - a rollout that ends promoted rebases the monitor's reference on the candidate's profile;
//!   one that ends rolled back leaves it.
//!
//! ```
//! use mlops::lifecycle::rules::{LoopRules, RolloutEnd, Ruling};
//!
//! let mut rules = LoopRules::new(3)?;
//! assert_eq!(rules.on_retrain_request(15), Ruling::Scheduled { alarm_at: 15 });
//! assert_eq!(rules.due(17), None);
//! assert_eq!(rules.due(18), Some(15..18)); // the window: steps 15, 16, 17
//! rules.start_retrain();
//! rules.on_candidate(2);
//! assert_eq!(rules.on_retrain_request(20), Ruling::Deferred { rolling_out: 2 });
//! assert_eq!(rules.on_rollout_end(true), Some(RolloutEnd::Promoted { version: 2 }));
//! # Ok::<(), mlops::lifecycle::Error>(())
//! ```

use std::ops::Range;

use mlops_serve::rollout::DecisionKind;

use super::{Error, Result};

/// What a retrain request led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruling {
    /// A retrain is scheduled on the window from `alarm_at`.
    Scheduled {
        /// The step of the alarm.
        alarm_at: u64,
    },
    /// One is scheduled already (from an earlier alarm): nothing changes.
    AlreadyScheduled {
        /// The step of the earlier alarm.
        alarm_at: u64,
    },
    /// A candidate is rolling out: no retrain over it.
    Deferred {
        /// The version rolling out.
        rolling_out: u64,
    },
    /// The alarm's window would end past the last step (`u64::MAX`): it could never be due,
    /// and is not scheduled.
    Unschedulable {
        /// The step of the alarm.
        alarm_at: u64,
    },
}

/// How a rollout ended, and what the monitor does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutEnd {
    /// The candidate is production: rebase the monitor's reference on its profile.
    Promoted {
        /// The new production version.
        version: u64,
    },
    /// The candidate was rolled back: the reference stays.
    RolledBack {
        /// The candidate that was rolled back.
        version: u64,
    },
}

impl RolloutEnd {
    /// Whether the monitor's reference moves to the candidate's profile.
    pub fn rebases(&self) -> bool {
        matches!(self, RolloutEnd::Promoted { .. })
    }
}

/// The loop's state between a drift alarm, a retrain and a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopRules {
    window: u64,
    alarm_at: Option<u64>,
    rolling_out: Option<u64>,
}

impl LoopRules {
    /// Rules whose retrains wait for `window` labeled steps after the alarm (≥ 1).
    pub fn new(window: u64) -> Result<Self> {
        if window == 0 {
            return Err(Error::invalid(
                "window",
                0,
                "at least 1 labeled step after the alarm to retrain on",
            ));
        }
        Ok(LoopRules {
            window,
            alarm_at: None,
            rolling_out: None,
        })
    }

    /// A retrain request (the drift policy's action) at step `at`. An alarm whose window
    /// would end past `u64::MAX` could never be due and would block every later one: it is
    /// [`Ruling::Unschedulable`].
    pub fn on_retrain_request(&mut self, at: u64) -> Ruling {
        if at.checked_add(self.window).is_none() {
            Ruling::Unschedulable { alarm_at: at }
        } else if let Some(v) = self.rolling_out {
            Ruling::Deferred { rolling_out: v }
        } else if let Some(a) = self.alarm_at {
            Ruling::AlreadyScheduled { alarm_at: a }
        } else {
            self.alarm_at = Some(at);
            Ruling::Scheduled { alarm_at: at }
        }
    }

    /// At step `now`, the window of a retrain that is due (`alarm_at..alarm_at + window`, all
    /// labeled), or `None`.
    pub fn due(&self, now: u64) -> Option<Range<u64>> {
        match (self.alarm_at, self.rolling_out) {
            (Some(a), None) => {
                let end = a.checked_add(self.window)?;
                (now >= end).then_some(a..end)
            }
            _ => None,
        }
    }

    /// The due retrain is taken (whatever its outcome): the schedule clears.
    pub fn start_retrain(&mut self) {
        self.alarm_at = None;
    }

    /// A retrain left `version` under the canary alias: it rolls out.
    pub fn on_candidate(&mut self, version: u64) {
        self.rolling_out = Some(version);
    }

    /// The version rolling out, if one is.
    pub fn rolling_out(&self) -> Option<u64> {
        self.rolling_out
    }

    /// The rollout ended (`promoted` or not); `None` when nothing was rolling out. A
    /// promotion also clears an alarm scheduled before it: the reference it was measured
    /// against is replaced (the monitor rebases), so it no longer says anything.
    pub fn on_rollout_end(&mut self, promoted: bool) -> Option<RolloutEnd> {
        self.rolling_out.take().map(|version| {
            if promoted {
                self.alarm_at = None;
                RolloutEnd::Promoted { version }
            } else {
                RolloutEnd::RolledBack { version }
            }
        })
    }
}

/// Whether a controller's decision ends a rollout: a promotion, a finished rollback, or a
/// rollback to 0%.
///
/// ```
/// use mlops::lifecycle::rules::ends_rollout;
/// use mlops::serve::rollout::DecisionKind;
///
/// assert!(ends_rollout(DecisionKind::Promote, 100.0));
/// assert!(ends_rollout(DecisionKind::Rollback, 0.0));
/// assert!(!ends_rollout(DecisionKind::Rollback, 10.0));
/// ```
pub fn ends_rollout(kind: DecisionKind, to_percent: f64) -> bool {
    matches!(kind, DecisionKind::Promote | DecisionKind::RolledBack)
        || (kind == DecisionKind::Rollback && to_percent == 0.0)
}

/// A [`RetrainTrigger`](mlops_drift::RetrainTrigger) that keeps the drift policy's retrain
/// requests (their reasons) for the host to [`take`](RetrainRequests::take) and pass to
/// [`LoopRules::on_retrain_request`].
///
/// ```
/// use mlops::lifecycle::rules::RetrainRequests;
///
/// let requests = RetrainRequests::default();
/// // monitor.observe(batch, &requests).await? ... then:
/// assert!(requests.take().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct RetrainRequests(std::sync::Mutex<Vec<String>>);

impl RetrainRequests {
    /// The requests since the last call, in order (the reasons the policy gave).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait::async_trait]
impl mlops_drift::RetrainTrigger for RetrainRequests {
    async fn retrain(
        &self,
        _model: &str,
        _report: &mlops_drift::DriftReport,
        reason: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reason.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_window_is_refused_naming_it() {
        let e = LoopRules::new(0).unwrap_err().to_string();
        assert!(e.contains("invalid window = 0"), "{e}");
    }

    #[test]
    fn an_alarm_during_a_rollout_is_deferred_and_leaves_no_schedule() {
        let mut r = LoopRules::new(2).unwrap();
        r.on_candidate(5);
        assert_eq!(
            r.on_retrain_request(10),
            Ruling::Deferred { rolling_out: 5 }
        );
        assert_eq!(r.due(u64::MAX), None);
        // Rolled back: the reference stays, and the next alarm schedules afresh.
        let end = r.on_rollout_end(false).unwrap();
        assert_eq!(end, RolloutEnd::RolledBack { version: 5 });
        assert!(!end.rebases());
        assert_eq!(r.on_rollout_end(true), None);
        assert_eq!(r.on_retrain_request(11), Ruling::Scheduled { alarm_at: 11 });
        assert_eq!(r.due(12), None);
        assert_eq!(r.due(13), Some(11..13));
    }

    #[test]
    fn a_due_retrain_waits_while_a_candidate_rolls_out_and_the_window_never_overflows() {
        let mut r = LoopRules::new(3).unwrap();
        // A window past u64::MAX could never be due: refused, and it blocks nothing.
        assert_eq!(
            r.on_retrain_request(u64::MAX - 1),
            Ruling::Unschedulable {
                alarm_at: u64::MAX - 1
            }
        );
        assert_eq!(r.due(u64::MAX), None);
        assert_eq!(r.on_retrain_request(5), Ruling::Scheduled { alarm_at: 5 });
        let mut r = LoopRules::new(1).unwrap();
        r.on_retrain_request(0);
        r.on_candidate(2);
        assert_eq!(r.due(100), None);
        // Rolled back: the alarm (measured against the reference that stays) is still due.
        r.on_rollout_end(false);
        assert_eq!(r.due(100), Some(0..1));
        r.start_retrain();
        assert_eq!(r.due(100), None);
        assert_eq!(r.rolling_out(), None);
        // Promoted: the reference is rebased, and an alarm from before it is dropped.
        r.on_retrain_request(7);
        r.on_candidate(3);
        assert_eq!(
            r.on_rollout_end(true),
            Some(RolloutEnd::Promoted { version: 3 })
        );
        assert_eq!(r.due(u64::MAX), None);
        assert_eq!(r.on_retrain_request(9), Ruling::Scheduled { alarm_at: 9 });
    }

    #[test]
    fn only_a_promotion_or_a_finished_rollback_ends_a_rollout() {
        for (kind, to, ends) in [
            (DecisionKind::Start, 10.0, false),
            (DecisionKind::Promote, 100.0, true),
            (DecisionKind::RolledBack, 0.0, true),
            (DecisionKind::Rollback, 0.0, true),
            (DecisionKind::Rollback, 25.0, false),
        ] {
            assert_eq!(ends_rollout(kind, to), ends, "{kind:?} to {to}");
        }
    }
}
