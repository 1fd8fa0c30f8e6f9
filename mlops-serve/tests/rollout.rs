//! Rollouts end to end on simulated time: a better candidate promoted through every step,
//! each rollback path, the no-data policy, restarts, aborts, two controllers racing on one
//! store, and a controller restarted mid-rollout.

use crate::support;

use mlops_serve::analysis::Check;
use mlops_serve::policy::{NoData, Promotion, PromotionConfig, RollbackMode};
use mlops_serve::replay::{replay, ReplayOptions, ServiceProfile};
use mlops_serve::rollout::{DecisionKind, Phase};
use mlops_serve::source::ModelSource;
use std::time::Duration;

use mlops_serve::rollout::{RolloutState, CANARY, STABLE};
use mlops_serve::step_stats::{StepSnapshot, VariantSnapshot};
use support::{world, MODEL};

fn run(
    w: &support::World,
    config: mlops_serve::policy::PromotionConfig,
) -> mlops_serve::replay::ReplayReport {
    let router = w.router();
    let controller = w.controller(config);
    w.start_canary(2);
    let data = w.traffic(200_000);
    futures::executor::block_on(replay(
        &router,
        &controller,
        &w.clock,
        &data,
        &ReplayOptions::default(),
    ))
    .unwrap()
}

fn kinds(r: &mlops_serve::replay::ReplayReport) -> Vec<(DecisionKind, f64)> {
    r.rollout
        .as_ref()
        .unwrap()
        .decisions
        .iter()
        .map(|d| (d.kind, d.to_percent))
        .collect()
}

fn alias(w: &support::World, a: &str) -> Option<u64> {
    futures::executor::block_on(w.source.alias(MODEL, a)).unwrap()
}

#[test]
fn a_better_candidate_is_promoted_through_every_step() {
    let w = world(0.5, 1.0);
    let r = run(&w, PromotionConfig::default());
    let s = r.rollout.as_ref().unwrap();
    assert_eq!(s.phase, Phase::Promoted, "{:#?}", s.decisions);
    assert_eq!(
        kinds(&r),
        vec![
            (DecisionKind::Start, 10.0),
            (DecisionKind::Advance, 25.0),
            (DecisionKind::Advance, 50.0),
            (DecisionKind::Advance, 75.0),
            (DecisionKind::Promote, 100.0),
        ],
        "{:#?}",
        s.decisions
    );
    assert_eq!(alias(&w, "production"), Some(2));
    assert_eq!(alias(&w, "canary"), None);
    let text = w.exposition();
    assert!(
        text.contains("mlops_serve_promotions_total{model=\"fraud\"} 1"),
        "{text}"
    );
}

fn last_reason(r: &mlops_serve::replay::ReplayReport) -> String {
    r.rollout
        .as_ref()
        .unwrap()
        .decisions
        .last()
        .unwrap()
        .reason
        .clone()
}

#[test]
fn a_worse_candidate_is_rolled_back_by_the_auc_check() {
    let w = world(1.0, 0.35);
    let r = run(&w, PromotionConfig::default());
    let s = r.rollout.as_ref().unwrap();
    assert_eq!(s.phase, Phase::RolledBack, "{:#?}", s.decisions);
    let last = s.decisions.last().unwrap();
    assert_eq!(last.kind, DecisionKind::Rollback);
    assert!(last.reason.contains("roc_auc"), "{}", last.reason);
    // Statistics travel with the decision: the failed check's statistic, p-value, sizes.
    let auc = last.checks.iter().find(|c| c.check == "roc_auc").unwrap();
    assert!(auc.statistic.unwrap() < 0.0 && auc.p_value.is_some() && auc.n_candidate >= 200);
    assert_eq!(alias(&w, "production"), Some(1));
    assert_eq!(alias(&w, "canary"), None);
    assert!(w
        .exposition()
        .contains("mlops_serve_rollbacks_total{model=\"fraud\"} 1"));
}

#[test]
fn a_slower_candidate_is_rolled_back_by_latency() {
    let mut w = world(0.5, 1.0);
    w.profiles.insert(
        2,
        ServiceProfile {
            median_ms: 3.0,
            seed: 2,
            ..ServiceProfile::default()
        },
    );
    let r = run(&w, PromotionConfig::default());
    assert_eq!(r.rollout.as_ref().unwrap().phase, Phase::RolledBack);
    let reason = last_reason(&r);
    assert!(
        reason.contains("latency_p99") && !reason.contains("roc_auc:"),
        "{reason}"
    );
}

#[test]
fn an_erroring_candidate_is_rolled_back_by_its_error_rate() {
    let mut w = world(0.5, 1.0);
    w.profiles.insert(
        2,
        ServiceProfile {
            error_rate: 0.02,
            seed: 2,
            ..ServiceProfile::default()
        },
    );
    let r = run(&w, PromotionConfig::default());
    assert_eq!(r.rollout.as_ref().unwrap().phase, Phase::RolledBack);
    let reason = last_reason(&r);
    assert!(reason.contains("error_rate"), "{reason}");
    assert!(r.failed > 0);
}

/// A router that gets no traffic at all: the no-data policy decides.
fn no_traffic(no_data: NoData) -> (support::World, mlops_serve::rollout::RolloutState) {
    let w = world(0.5, 1.0);
    let router = w.router();
    // Per-window analysis: its no-data extensions count towards `inconclusive_limit`
    // (under the default `[sequential]`, a step without data bakes again up to
    // `max_step_seconds`; tests/rollout_sequential.rs).
    let config = PromotionConfig {
        no_data,
        sequential: None,
        ..PromotionConfig::default()
    };
    let controller = w.controller(config);
    w.start_canary(2);
    for _ in 0..200 {
        futures::executor::block_on(controller.tick(&router)).unwrap();
        w.clock.advance(std::time::Duration::from_secs(60));
    }
    let s = futures::executor::block_on(controller.state())
        .unwrap()
        .unwrap()
        .state;
    (w, s)
}

#[test]
fn no_traffic_is_never_promoted_by_default() {
    let (w, s) = no_traffic(NoData::Extend);
    assert_eq!(s.phase, Phase::RolledBack, "{:#?}", s.decisions);
    let kinds: Vec<_> = s.decisions.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        [
            DecisionKind::Start,
            DecisionKind::Extend,
            DecisionKind::Extend,
            DecisionKind::Rollback
        ]
    );
    assert!(
        s.decisions[3].reason.contains("no evidence"),
        "{}",
        s.decisions[3].reason
    );
    assert_eq!(alias(&w, "production"), Some(1));
    let (_, failing) = no_traffic(NoData::Fail);
    assert_eq!(failing.phase, Phase::RolledBack);
    assert!(failing.decisions.last().unwrap().reason.contains("no data"));
    // Only an explicit opt-in promotes without evidence, and the reason says so.
    let (w, passing) = no_traffic(NoData::Pass);
    assert_eq!(passing.phase, Phase::Promoted);
    assert!(passing
        .decisions
        .last()
        .unwrap()
        .reason
        .contains("no_data = pass"));
    assert_eq!(alias(&w, "production"), Some(2));
}

/// A step's statistics: `requests` each, the candidate with `canary_errors` errors.
fn snapshot(requests: u64, canary_errors: u64) -> StepSnapshot {
    let v = |name: &str, errors: u64| VariantSnapshot {
        requests,
        rows: requests,
        errors,
        latency_p50_ms: Some(1.0),
        latency_p99_ms: Some(2.0),
        ..VariantSnapshot::empty(name)
    };
    StepSnapshot {
        variants: vec![v(CANARY, canary_errors), v(STABLE, 0)],
    }
}

#[test]
fn gradual_rollback_goes_down_through_the_steps_taken() {
    let config = PromotionConfig {
        rollback: RollbackMode::Gradual,
        checks: vec![Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.99,
        }],
        ..PromotionConfig::default()
    }
    .check()
    .unwrap();
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let bake = Duration::from_secs(600);
    let mut s = RolloutState::start(MODEL, 1, 2, &config, t0);
    let mut now = t0;
    // 10 -> 25 -> 50 on clean steps, then errors at 50%.
    for (errors, kind, to) in [
        (0, DecisionKind::Advance, 25.0),
        (0, DecisionKind::Advance, 50.0),
        (40, DecisionKind::Rollback, 25.0),
    ] {
        now += bake;
        let d = s.advance(&config, &snapshot(1000, errors), now).unwrap();
        assert_eq!((d.kind, d.to_percent), (kind, to), "{}", d.reason);
    }
    assert_eq!(s.phase, Phase::RollingBack);
    assert!(s.decisions.last().unwrap().reason.contains("error_rate"));
    // Before a bake time passes, nothing; then one step down each bake time, no checks.
    assert!(s
        .advance(&config, &snapshot(1000, 40), now + Duration::from_secs(599))
        .is_none());
    for (kind, to) in [
        (DecisionKind::RollbackStep, 10.0),
        (DecisionKind::RolledBack, 0.0),
    ] {
        now += bake;
        let d = s.advance(&config, &snapshot(1000, 40), now).unwrap();
        assert_eq!((d.kind, d.to_percent), (kind, to), "{}", d.reason);
        assert!(d.checks.is_empty());
    }
    assert_eq!(s.phase, Phase::RolledBack);
    assert!(
        s.advance(&config, &snapshot(1000, 0), now + bake * 10)
            .is_none(),
        "terminal"
    );
}

#[test]
fn failures_under_the_limit_hold_and_inconclusive_steps_extend_to_their_limit() {
    // Per-window analysis (`sequential = false`): each window tested on its own.
    let config = PromotionConfig {
        sequential: None,
        failure_limit: 2,
        inconclusive_limit: 2,
        checks: vec![
            Check::ErrorRate {
                max_increase: 0.0,
                confidence: 0.99,
            },
            Check::RocAuc {
                max_decrease: 0.01,
                confidence: 0.95,
                min_labeled: 200,
            },
        ],
        ..PromotionConfig::default()
    }
    .check()
    .unwrap();
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let bake = Duration::from_secs(600);
    let mut s = RolloutState::start(MODEL, 1, 2, &config, t0);
    // Errors, first time: hold at 10%.
    let d = s.advance(&config, &snapshot(1000, 40), t0 + bake).unwrap();
    assert_eq!(
        (d.kind, d.to_percent, s.failures),
        (DecisionKind::Hold, 10.0, 1),
        "{}",
        d.reason
    );
    // No labels: the AUC check is inconclusive (never a pass), the step extends once, then
    // the inconclusive limit rolls back, naming the check.
    let d = s
        .advance(&config, &snapshot(1000, 0), t0 + bake * 2)
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Extend, "{}", d.reason);
    assert!(
        d.reason.contains("roc_auc") && d.reason.contains("not enough labels"),
        "{}",
        d.reason
    );
    let d = s
        .advance(&config, &snapshot(1000, 0), t0 + bake * 3)
        .unwrap();
    assert_eq!(d.kind, DecisionKind::Rollback, "{}", d.reason);
    assert!(
        d.reason.contains("inconclusive") && d.reason.contains("roc_auc"),
        "{}",
        d.reason
    );
    assert_eq!(s.phase, Phase::RolledBack);
}

#[test]
fn a_shadow_only_policy_promotes_after_the_shadow_phase_passes() {
    let config = Promotion::from_toml_str(
        "steps = [100]\n[shadow]\npercent = 10\nbake_time_seconds = 60\nchecks = [{ kind = \"error_rate\" }]",
    )
    .unwrap();
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut s = RolloutState::start(MODEL, 1, 2, &config, t0);
    assert_eq!((s.phase, s.canary_percent), (Phase::Shadow, 0.0));
    // A failing shadow never reaches live traffic.
    let mut failing = s.clone();
    let d = failing
        .advance(&config, &snapshot(1000, 50), t0 + Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        (d.kind, failing.phase, d.to_percent),
        (DecisionKind::Rollback, Phase::RolledBack, 0.0)
    );
    let d = s
        .advance(&config, &snapshot(1000, 0), t0 + Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        (d.kind, d.phase, s.phase, d.to_percent),
        (DecisionKind::Promote, Phase::Shadow, Phase::Promoted, 100.0)
    );
}
