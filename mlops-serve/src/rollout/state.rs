//! The rollout state machine: pure transitions on a [`RolloutState`], driven by the time the
//! caller passes in (the controller reads an injected [`Clock`](mlops_core::clock::Clock)),
//! so a whole 10 → 100 rollout and every rollback path run in tests in milliseconds.

use serde::{Deserialize, Serialize};

use crate::analysis::{CheckResult, Outcome};
use crate::policy::{NoData, Promotion, RollbackMode};
use crate::sequential::Evidence;
use crate::step_stats::{StepSnapshot, VariantSnapshot};

/// The variant name of the version in production during a rollout.
pub const STABLE: &str = "stable";
/// The variant name of the candidate (live arm, or shadow in the shadow phase).
pub const CANARY: &str = "canary";

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The candidate scores mirrored requests; no live traffic.
    Shadow,
    /// The candidate takes `steps[step]` percent of live traffic.
    Canary,
    /// A gradual rollback: `steps[step]` percent, going down.
    RollingBack,
    /// Done: the candidate is production.
    Promoted,
    /// Done: the candidate was rolled back.
    RolledBack,
}

impl Phase {
    /// Every variant, in declaration order.
    pub const ALL: [Phase; 5] = [
        Phase::Shadow,
        Phase::Canary,
        Phase::RollingBack,
        Phase::Promoted,
        Phase::RolledBack,
    ];

    /// The serialized name (`shadow`, `canary`, `rolling_back`, `promoted`, `rolled_back`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Shadow => "shadow",
            Phase::Canary => "canary",
            Phase::RollingBack => "rolling_back",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
        }
    }
}

impl Phase {
    /// Whether the rollout is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Promoted | Phase::RolledBack)
    }
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// A rollout began.
    Start,
    /// A new candidate arrived mid-rollout: the analysis began again.
    Restart,
    /// Every check passed: on to the next step (or out of the shadow phase).
    Advance,
    /// The last step reached: the candidate is production.
    Promote,
    /// A check failed, under the failure limit: the step bakes again.
    Hold,
    /// Inconclusive or no data, under the limit: the step bakes again.
    Extend,
    /// The rollback began (or, immediate, happened).
    Rollback,
    /// One step down of a gradual rollback.
    RollbackStep,
    /// A gradual rollback reached 0 percent.
    RolledBack,
    /// The stored state did not fit the policy in force (the policy changed mid-rollout: a
    /// step index past its steps, a percent that is not one of them, a shadow phase it no
    /// longer has): the rollout was mapped onto the policy's steps and the step bakes again.
    Reconcile,
}

impl DecisionKind {
    /// Every variant, in declaration order.
    pub const ALL: [DecisionKind; 10] = [
        DecisionKind::Start,
        DecisionKind::Restart,
        DecisionKind::Advance,
        DecisionKind::Promote,
        DecisionKind::Hold,
        DecisionKind::Extend,
        DecisionKind::Rollback,
        DecisionKind::RollbackStep,
        DecisionKind::RolledBack,
        DecisionKind::Reconcile,
    ];

    /// The serialized name (`start`, `restart`, `advance`, `promote`, `hold`, `extend`, `rollback`, `rollback_step`, `rolled_back`, `reconcile`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionKind::Start => "start",
            DecisionKind::Restart => "restart",
            DecisionKind::Advance => "advance",
            DecisionKind::Promote => "promote",
            DecisionKind::Hold => "hold",
            DecisionKind::Extend => "extend",
            DecisionKind::Rollback => "rollback",
            DecisionKind::RollbackStep => "rollback_step",
            DecisionKind::RolledBack => "rolled_back",
            DecisionKind::Reconcile => "reconcile",
        }
    }
}

/// One decision, as recorded in the rollout's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When (Unix seconds of the injected clock).
    pub at_unix: f64,
    /// What was decided.
    pub kind: DecisionKind,
    /// The phase it was decided in.
    pub phase: Phase,
    /// Canary percent before.
    pub from_percent: f64,
    /// Canary percent after.
    pub to_percent: f64,
    /// Why, in words (the failed check's name and finding first).
    pub reason: String,
    /// Each check's finding (empty for time-driven decisions).
    pub checks: Vec<CheckResult>,
    /// The candidate's step statistics (counts, p50/p99; no raw samples).
    pub candidate: Option<VariantSnapshot>,
    /// Stable's step statistics.
    pub stable: Option<VariantSnapshot>,
}

/// A rollout: what is being rolled out, where it stands, and every decision so far. This is
/// what the [`RolloutStore`](super::RolloutStore) keeps, so replicas follow one rollout and a
/// restarted controller resumes at its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The model.
    pub model: String,
    /// The production version the rollout started from.
    pub stable: u64,
    /// The candidate version.
    pub candidate: u64,
    /// Where it is.
    pub phase: Phase,
    /// Index into the steps (canary and rolling-back phases).
    pub step: usize,
    /// Percent of live traffic on the candidate now.
    pub canary_percent: f64,
    /// When the current step began (Unix seconds).
    pub step_started_unix: f64,
    /// Failed analyses so far (whole rollout).
    pub failures: u32,
    /// Inconclusive analyses and no-data extensions in the current step.
    pub inconclusive: u32,
    /// Whether the aliases were moved after the terminal decision (a controller that died
    /// between the state write and the alias moves leaves `false`; the next tick finishes).
    #[serde(default)]
    pub aliases_settled: bool,
    /// The digest ([`policy_digest`]) of the policy that last wrote the state (`None` in
    /// states written before digests were kept).
    #[serde(default)]
    pub policy: Option<String>,
    /// The last reconciliation: the digest of the policy it reconciled from, and of the one
    /// it reconciled to. Two replicas on different policies reconcile each other's state at
    /// most once (see [`RolloutState::policy_conflict`]).
    #[serde(default)]
    pub reconciled: Option<(String, String)>,
    /// When the current step began (Unix seconds): unlike `step_started_unix`, not moved when
    /// the step bakes again. `None` in states written before it was kept (then
    /// `step_started_unix` stands in).
    #[serde(default)]
    pub step_entered_unix: Option<f64>,
    /// Under a [`Sequential`](crate::policy::Sequential) policy, each check's evidence pooled
    /// over the rollout (by index in the policy's checks; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// Every decision, oldest first.
    pub decisions: Vec<Decision>,
}

/// Percent of `config`'s step `i`; 0 (nothing on the candidate) past its steps, which
/// [`RolloutState::reconcile`] never lets a state reach.
fn step_percent(config: &Promotion, i: usize) -> f64 {
    config.steps.get(i).copied().unwrap_or(0.0)
}

/// A digest of a policy (xxh3 of its JSON form): which policy last wrote a stored state.
pub fn policy_digest(config: &Promotion) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&json))
}

/// Whether two percents route the same buckets (one bucket is 0.01 percent).
fn same_buckets(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
}

fn unix(now: std::time::SystemTime) -> f64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a decision is taken from: when, in which phase, from which percent, and (for an
/// analysis) the checks and both variants' statistics.
struct Basis {
    now: std::time::SystemTime,
    phase: Phase,
    from: f64,
    checks: Vec<CheckResult>,
    variants: Option<(VariantSnapshot, VariantSnapshot)>,
}

impl Basis {
    fn at(now: std::time::SystemTime, state: &RolloutState) -> Self {
        Basis {
            now,
            phase: state.phase,
            from: state.canary_percent,
            checks: Vec::new(),
            variants: None,
        }
    }
}

impl RolloutState {
    /// A new rollout of `candidate` over `stable`: the shadow phase if the config has one,
    /// otherwise the first step.
    pub fn start(
        model: &str,
        stable: u64,
        candidate: u64,
        config: &Promotion,
        now: std::time::SystemTime,
    ) -> Self {
        let mut s = RolloutState {
            model: model.to_string(),
            stable,
            candidate,
            phase: Phase::Canary,
            step: 0,
            canary_percent: 0.0,
            step_started_unix: unix(now),
            failures: 0,
            inconclusive: 0,
            aliases_settled: false,
            policy: Some(policy_digest(config)),
            reconciled: None,
            step_entered_unix: Some(unix(now)),
            evidence: Vec::new(),
            decisions: Vec::new(),
        };
        let basis = Basis::at(now, &s);
        s.begin(config);
        let reason = format!("rolling out v{candidate} over v{stable}");
        s.record(basis, DecisionKind::Start, reason);
        s
    }

    /// A new candidate mid-rollout: the analysis starts again from the beginning.
    pub fn restart(
        &mut self,
        candidate: u64,
        config: &Promotion,
        now: std::time::SystemTime,
    ) -> Decision {
        let basis = Basis::at(now, self);
        let old = self.candidate;
        self.candidate = candidate;
        self.failures = 0;
        self.aliases_settled = false;
        self.begin(config);
        self.step_started_unix = unix(now);
        self.step_entered_unix = Some(unix(now));
        self.policy = Some(policy_digest(config));
        let reason =
            format!("new candidate v{candidate} replaced v{old}: the analysis starts again");
        self.record(basis, DecisionKind::Restart, reason)
    }

    /// Ends the rollout now, whatever the config's rollback mode (the candidate was withdrawn).
    pub fn abort(&mut self, why: &str, now: std::time::SystemTime) -> Decision {
        let basis = Basis::at(now, self);
        self.end(Phase::RolledBack, 0.0);
        let reason = format!("rolled back v{}: {why}", self.candidate);
        self.record(basis, DecisionKind::Rollback, reason)
    }

    fn begin(&mut self, config: &Promotion) {
        self.inconclusive = 0;
        self.step = 0;
        self.evidence.clear();
        if config.shadow.is_some() {
            self.phase = Phase::Shadow;
            self.canary_percent = 0.0;
        } else {
            self.phase = Phase::Canary;
            // A checked policy has a first step.
            self.canary_percent = config.steps.first().copied().unwrap_or(0.0);
        }
    }

    /// Enters a terminal phase at `percent`; the aliases are still to be moved.
    fn end(&mut self, phase: Phase, percent: f64) {
        self.phase = phase;
        self.canary_percent = percent;
        self.inconclusive = 0;
        self.aliases_settled = false;
    }

    fn record(&mut self, basis: Basis, kind: DecisionKind, reason: String) -> Decision {
        let (candidate, stable) = match basis.variants {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        let d = Decision {
            at_unix: unix(basis.now),
            kind,
            phase: basis.phase,
            from_percent: basis.from,
            to_percent: self.canary_percent,
            reason,
            checks: basis.checks,
            candidate,
            stable,
        };
        self.decisions.push(d.clone());
        d
    }

    /// Fits a stored state to the policy in force, recorded as a decision; `None` when it
    /// already fits. A state fits when its phase exists in the policy and, in the canary and
    /// rolling-back phases, its step is one of the policy's steps below the last with the
    /// state's percent. A state written under another policy (the steps changed while the
    /// rollout ran, or the shadow phase was removed) is mapped onto the new steps:
    ///
    /// - canary: the highest step below 100 at or under the current percent (never more
    ///   candidate traffic than the analysis has seen), else the first step; with no step
    ///   below 100 (a shadow-only policy) the analysis starts again from the shadow phase;
    /// - rolling back: the highest step below 100 at or under the current percent, else the
    ///   rollback is complete (all traffic on stable);
    /// - a shadow phase the policy no longer has: its first step.
    ///
    /// A percent that is not a number in [0, 100] (a corrupt state) restarts the analysis (or,
    /// rolling back, completes the rollback). The policy is a checked [`Promotion`], so it has
    /// steps, the last 100. The step bakes again from `now`: its routes, and so its
    /// statistics, are new.
    pub fn reconcile(
        &mut self,
        config: &Promotion,
        now: std::time::SystemTime,
    ) -> Option<Decision> {
        if self.phase.is_terminal() {
            return None;
        }
        let basis = Basis::at(now, self);
        let steps = &config.steps;
        // The steps a live canary can stand at (the last, 100, is the promotion).
        let below_last = steps.split_last().map_or(&[][..], |(_, rest)| rest);
        let percent = self.canary_percent;
        let valid = percent.is_finite() && (0.0..=100.0).contains(&percent);
        let was = match self.phase {
            Phase::Shadow => "the shadow phase".to_string(),
            _ => format!("step {} at {percent}%", self.step),
        };
        if self.fits(config) || self.policy_conflict(config).is_some() {
            return None;
        }
        let ours = policy_digest(config);
        self.reconciled = Some((self.policy.clone().unwrap_or_default(), ours.clone()));
        self.policy = Some(ours);
        // The highest step at or under the current percent, and the first step.
        let at_or_under = below_last
            .iter()
            .copied()
            .enumerate()
            .rev()
            .find(|&(_, s)| valid && (s <= percent || same_buckets(s, percent)));
        let first = below_last.first().copied().filter(|_| valid);
        self.inconclusive = 0;
        self.step_started_unix = unix(now);
        // The step starts again under the new policy, and evidence pooled under the old one is
        // not evidence under this one.
        self.step_entered_unix = Some(unix(now));
        self.evidence.clear();
        let policy = format!("the policy's steps are now {steps:?}");
        let (kind, what) = match (self.phase, at_or_under.or(first.map(|s| (0, s)))) {
            (Phase::RollingBack, Some((i, s))) if at_or_under.is_some() => {
                self.step = i;
                self.canary_percent = s;
                (
                    DecisionKind::Reconcile,
                    format!("the gradual rollback goes on from step {i} at {s}%"),
                )
            }
            (Phase::RollingBack, _) => {
                self.end(Phase::RolledBack, 0.0);
                (
                    DecisionKind::RolledBack,
                    "gradual rollback complete: all traffic on stable".to_string(),
                )
            }
            (Phase::Canary, Some((i, s))) => {
                self.step = i;
                self.canary_percent = s;
                (
                    DecisionKind::Reconcile,
                    format!("the canary goes on at step {i} ({s}%)"),
                )
            }
            (Phase::Shadow, Some(_)) => {
                let s = below_last.first().copied().unwrap_or(0.0);
                self.phase = Phase::Canary;
                self.step = 0;
                self.canary_percent = s;
                (
                    DecisionKind::Reconcile,
                    format!(
                        "the policy has no shadow phase now: the canary starts at step 0 ({s}%)"
                    ),
                )
            }
            _ => {
                self.begin(config);
                (
                    DecisionKind::Reconcile,
                    "the analysis starts again from the beginning".to_string(),
                )
            }
        };
        let reason = format!(
            "the stored rollout of v{} does not fit the policy in force (the policy changed mid-rollout, or the state is corrupt): it was at {was}, but {policy}; {what}",
            self.candidate
        );
        Some(self.record(basis, kind, reason))
    }

    /// Whether the state fits `config` (see [`RolloutState::reconcile`]). A canary or
    /// rolling-back percent that is one of the policy's steps below the last fits whatever
    /// the stored step index: the index is re-pointed at that step here, without a decision
    /// and without restarting the bake time (only the index is local to a policy, so
    /// replicas whose policies share the percent agree on the rollout).
    fn fits(&mut self, config: &Promotion) -> bool {
        let steps = &config.steps;
        let below_last = steps.split_last().map_or(&[][..], |(_, rest)| rest);
        let percent = self.canary_percent;
        let valid = percent.is_finite() && (0.0..=100.0).contains(&percent);
        match self.phase {
            Phase::Shadow => config.shadow.is_some(),
            Phase::Canary | Phase::RollingBack => {
                match below_last
                    .iter()
                    .position(|&s| valid && same_buckets(s, percent))
                {
                    Some(i) => {
                        self.step = i;
                        true
                    }
                    None => false,
                }
            }
            Phase::Promoted | Phase::RolledBack => true,
        }
    }

    /// Why `config` must not reconcile this state, if it must not: the state does not fit
    /// `config`, was last written under another policy, and the last reconciliation was
    /// between that policy and `config`'s (in either direction). Two replicas running
    /// different policies would otherwise reconcile each other's writes for ever, each
    /// restarting the bake time so that no analysis ever comes due. `None` when the state
    /// fits or may be reconciled. The controller counts a refusal as a state error.
    pub fn policy_conflict(&mut self, config: &Promotion) -> Option<String> {
        if self.phase.is_terminal() || self.fits(config) {
            return None;
        }
        let ours = policy_digest(config);
        let writer = self.policy.as_deref()?;
        let (from, to) = self.reconciled.as_ref()?;
        let pair = |a: &str, b: &str| (from == a && to == b) || (from == b && to == a);
        if writer != ours && pair(writer, &ours) {
            Some(format!(
                "the stored rollout of v{} was written under policy {writer}, which already reconciled it from policy {ours} (the one in force here): replicas run different policies; not reconciled again (give every replica one policy)",
                self.candidate
            ))
        } else {
            None
        }
    }

    /// The moment the current step's bake time is over.
    pub fn step_due_unix(&self, config: &Promotion) -> f64 {
        let bake = match (self.phase, &config.shadow) {
            (Phase::Shadow, Some(s)) => s.bake_time_seconds,
            _ => config.bake_time_seconds,
        };
        self.step_started_unix + bake
    }

    /// The next decision, if one is due at `now`: nothing while the step bakes or after the
    /// end; otherwise the step's analysis on `snapshot` (the step's statistics, variants
    /// [`STABLE`] and [`CANARY`]) or the next step of a gradual rollback. The decision is
    /// applied to `self` and appended to its trail.
    pub fn advance(
        &mut self,
        config: &Promotion,
        snapshot: &StepSnapshot,
        now: std::time::SystemTime,
    ) -> Option<Decision> {
        if self.phase.is_terminal() || self.policy_conflict(config).is_some() {
            return None;
        }
        if let Some(d) = self.reconcile(config, now) {
            return Some(d);
        }
        // Evidence pooled under another policy (other checks, margins or levels) is not
        // evidence under this one.
        let digest = policy_digest(config);
        if self.policy.as_deref() != Some(digest.as_str()) {
            self.evidence.clear();
        }
        let d = self.analyze(config, snapshot, now)?;
        self.policy = Some(digest);
        Some(d)
    }

    fn analyze(
        &mut self,
        config: &Promotion,
        snapshot: &StepSnapshot,
        now: std::time::SystemTime,
    ) -> Option<Decision> {
        if unix(now) < self.step_due_unix(config) {
            return None;
        }
        let mut basis = Basis::at(now, self);
        // A state from before `step_entered_unix` was kept: its step began no later than its
        // last analysis.
        if self.step_entered_unix.is_none() {
            self.step_entered_unix = Some(self.step_started_unix);
        }
        self.step_started_unix = unix(now);
        if basis.phase == Phase::RollingBack {
            return Some(if self.step == 0 {
                self.end(Phase::RolledBack, 0.0);
                let reason = "gradual rollback complete: all traffic on stable".to_string();
                self.record(basis, DecisionKind::RolledBack, reason)
            } else {
                self.step -= 1;
                self.canary_percent = step_percent(config, self.step);
                let reason = format!(
                    "gradual rollback: {}% -> {}%",
                    basis.from, self.canary_percent
                );
                self.record(basis, DecisionKind::RollbackStep, reason)
            });
        }
        let variant = |name: &str| {
            snapshot
                .get(name)
                .cloned()
                .unwrap_or_else(|| VariantSnapshot::empty(name))
        };
        let (candidate, stable) = (variant(CANARY), variant(STABLE));
        let checks = match (basis.phase, &config.shadow) {
            (Phase::Shadow, Some(s)) => &s.checks,
            _ => &config.checks,
        };
        let min = config.min_requests.max(1);
        let at = if basis.phase == Phase::Shadow {
            "shadow phase".to_string()
        } else {
            format!("step {}%", basis.from)
        };
        // Pooled over the rollout's canary windows (a shadow phase's checks are its own).
        let sequential = match (&config.sequential, basis.phase) {
            (Some(seq), Phase::Canary) => Some(seq),
            _ => None,
        };
        // Every step is looked at on its own traffic, pooled evidence or not: a window without
        // it decides nothing (under `[sequential]`, bakes again up to `max_step_seconds`).
        if candidate.requests < min || stable.requests < min {
            let what = format!(
                "no data at {at}: candidate {} and stable {} requests, {min} each needed",
                candidate.requests, stable.requests
            );
            basis.variants = Some((candidate, stable));
            return Some(match config.no_data {
                NoData::Pass => self.pass(
                    config,
                    basis,
                    format!("{what}; passed because no_data = pass"),
                ),
                NoData::Fail => self.fail(config, basis, what),
                NoData::Extend if sequential.is_some() => {
                    self.extend_sequential(config, basis, format!("no evidence: {what}"))
                }
                NoData::Extend => self.extend(config, basis, format!("no evidence: {what}")),
            });
        }
        basis.checks = match sequential {
            None => checks
                .iter()
                .map(|c| c.evaluate(&candidate, &stable, min))
                .collect(),
            Some(seq) => {
                if self.evidence.len() != checks.len() {
                    self.evidence = vec![Evidence::default(); checks.len()];
                }
                let pooled = checks.iter().filter(|c| c.is_sequential()).count().max(1);
                let alpha = seq.alpha / pooled as f64;
                checks
                    .iter()
                    .zip(self.evidence.iter_mut())
                    .map(|(c, e)| {
                        c.evaluate_sequential(e, &candidate, &stable, min, alpha)
                            .unwrap_or_else(|| c.evaluate(&candidate, &stable, min))
                    })
                    .collect()
            }
        };
        basis.variants = Some((candidate, stable));
        let summary = |outcome: Outcome| -> String {
            basis
                .checks
                .iter()
                .filter(|r| r.outcome == outcome)
                .map(|r| format!("{}: {}", r.check, r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (failed, inconclusive) = (summary(Outcome::Fail), summary(Outcome::Inconclusive));
        Some(if !failed.is_empty() {
            self.fail(config, basis, format!("failed at {at}: {failed}"))
        } else if !inconclusive.is_empty() {
            let what = format!("inconclusive at {at}: {inconclusive}");
            match sequential {
                Some(_) => self.extend_sequential(config, basis, what),
                None => self.extend(config, basis, what),
            }
        } else {
            let passed = summary(Outcome::Pass);
            self.pass(config, basis, format!("passed at {at}: {passed}"))
        })
    }

    /// A step without evidence yet under a sequential policy: bake again, never counted as a
    /// failure, until `max_step_seconds` after the step began; then roll back.
    fn extend_sequential(&mut self, config: &Promotion, basis: Basis, what: String) -> Decision {
        let max_step_seconds = config
            .sequential
            .as_ref()
            .map_or(f64::INFINITY, |s| s.max_step_for(config.bake_time_seconds));
        let entered = self.step_entered_unix.unwrap_or(self.step_started_unix);
        let waited = unix(basis.now) - entered;
        if waited >= max_step_seconds {
            let reason = format!(
                "{what} (no decision in {waited:.0} s, max_step_seconds {max_step_seconds})"
            );
            return self.rollback(config, basis, reason);
        }
        self.record(
            basis,
            DecisionKind::Extend,
            format!("{what} (the step bakes again: {waited:.0} of max_step_seconds {max_step_seconds} s)"),
        )
    }

    /// An inconclusive step (or one without data): bake again, or roll back at the limit.
    fn extend(&mut self, config: &Promotion, basis: Basis, what: String) -> Decision {
        self.inconclusive = self.inconclusive.saturating_add(1);
        let (n, limit) = (self.inconclusive, config.inconclusive_limit);
        if n >= limit {
            let reason = format!("{what} ({n} times, inconclusive_limit {limit})");
            self.rollback(config, basis, reason)
        } else {
            self.record(
                basis,
                DecisionKind::Extend,
                format!("{what} (extended, {n} of {limit})"),
            )
        }
    }

    fn pass(&mut self, config: &Promotion, basis: Basis, reason: String) -> Decision {
        self.inconclusive = 0;
        self.step_entered_unix = Some(unix(basis.now));
        let next = if basis.phase == Phase::Shadow {
            0
        } else {
            self.step + 1
        };
        let next = next.min(config.steps.len().saturating_sub(1));
        self.phase = Phase::Canary;
        self.step = next;
        self.canary_percent = step_percent(config, next);
        if self.canary_percent >= 100.0 {
            self.end(Phase::Promoted, 100.0);
            let reason = format!("promoted v{}: {reason}", self.candidate);
            self.record(basis, DecisionKind::Promote, reason)
        } else {
            self.record(basis, DecisionKind::Advance, reason)
        }
    }

    fn fail(&mut self, config: &Promotion, basis: Basis, reason: String) -> Decision {
        self.failures = self.failures.saturating_add(1);
        let (n, limit) = (self.failures, config.failure_limit);
        if n >= limit {
            self.rollback(
                config,
                basis,
                format!("{reason} (failure {n} of failure_limit {limit})"),
            )
        } else {
            let reason = format!("{reason} (failure {n} of {limit}: the step bakes again)");
            self.record(basis, DecisionKind::Hold, reason)
        }
    }

    fn rollback(&mut self, config: &Promotion, basis: Basis, reason: String) -> Decision {
        self.inconclusive = 0;
        if config.rollback == RollbackMode::Gradual && basis.phase == Phase::Canary && self.step > 0
        {
            self.phase = Phase::RollingBack;
            self.step -= 1;
            self.canary_percent = step_percent(config, self.step);
        } else {
            self.end(Phase::RolledBack, 0.0);
        }
        let reason = format!("rolled back v{}: {reason}", self.candidate);
        self.record(basis, DecisionKind::Rollback, reason)
    }

    /// The last decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last()
    }
}
