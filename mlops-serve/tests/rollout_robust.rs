//! A controller never panics on what it reads, and keeps to its own rollout: a stored state
//! written under another policy is reconciled with the policy in force (and the
//! reconciliation recorded), two alias pairs of one model run separate rollouts on one store,
//! a state of another model is an error, and every failed tick is counted by kind.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mlops_core::clock::Clock;
use mlops_serve::analysis::Check;
use mlops_serve::policy::{Promotion, PromotionConfig, RollbackMode, ShadowPhase};
use mlops_serve::rollout::{
    rollout_document, Controller, DecisionKind, Phase, RolloutState, RolloutStore, Stored, Tick,
    CANARY, STABLE,
};
use mlops_serve::router::{Request, Router};
use mlops_serve::source::ModelSource;
use mlops_serve::step_stats::{StepSnapshot, VariantSnapshot};
use mlops_serve::telemetry::ControllerErrorKind;
use mlops_serve::{ErrorKind, Result};
use support::{world, FailingSource, SourceFailure, World, MODEL};

/// Sends `n` requests to each router, one simulated 20 ms apart.
fn traffic(w: &World, routers: &[&Router], n: usize, offset: &mut usize) {
    let data = w.traffic(4096);
    let mut out = [0.0_f32];
    for _ in 0..n {
        for router in routers {
            let i = *offset;
            *offset += 1;
            let row = i % data.n_rows();
            let key = format!("user-{}", i % 3000);
            let _ = router.route(
                &Request::keyed(&key),
                data.features().slice(ndarray::s![row..row + 1, ..]),
                &mut out,
            );
        }
        w.clock.advance(Duration::from_millis(20));
    }
}

/// A policy of `steps` that bakes a minute and checks the error rate only (requests, no
/// labels: every step is decided on the traffic of one minute).
fn policy(steps: &[f64]) -> PromotionConfig {
    PromotionConfig {
        steps: steps.to_vec(),
        bake_time_seconds: 60.0,
        min_requests: 50,
        checks: vec![Check::ErrorRate {
            max_increase: 0.0,
            confidence: 0.95,
        }],
        ..PromotionConfig::default()
    }
}

/// [`policy`], checked: what the state machine takes.
fn checked(steps: &[f64]) -> Promotion {
    policy(steps).check().unwrap()
}

async fn state_of(c: &Controller) -> Option<RolloutState> {
    c.state().await.unwrap().map(|s| s.state)
}

const TEN_STEPS: [f64; 10] = [5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0];

/// Issue 22 item 1: `serve --policy` with ten steps until the stored state reached step 4,
/// restarted with `steps = [50, 100]`, panicked ("index out of bounds: the len is 2") and
/// never followed an alias again. Now the first tick reconciles the state with the new steps,
/// records it, and the rollout goes on to the promotion.
#[tokio::test]
async fn a_policy_changed_mid_rollout_is_reconciled_and_the_rollout_goes_on() {
    let w = world(0.5, 1.0);
    w.start_canary(2);
    let mut offset = 0;
    {
        let (router, controller) = (w.router(), w.controller(policy(&TEN_STEPS)));
        for _ in 0..100 {
            if state_of(&controller).await.is_some_and(|s| s.step == 4) {
                break;
            }
            controller.tick(&router).await.unwrap();
            traffic(&w, &[&router], 1500, &mut offset);
        }
    } // the server stops here, and starts again with another policy
    let before = state_of(&w.controller(policy(&TEN_STEPS))).await.unwrap();
    assert_eq!(
        (before.phase, before.step, before.canary_percent),
        (Phase::Canary, 4, 30.0),
        "{:#?}",
        before.decisions
    );
    let (router, controller) = (w.router(), w.controller(policy(&[50.0, 100.0])));
    let Tick::Acted(d) = controller.tick(&router).await.unwrap() else {
        panic!("a reconciliation expected")
    };
    assert_eq!(
        (d.kind, d.phase, d.from_percent, d.to_percent),
        (DecisionKind::Reconcile, Phase::Canary, 30.0, 50.0),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("policy changed") && d.reason.contains("[50.0, 100.0]"),
        "{}",
        d.reason
    );
    let s = state_of(&controller).await.unwrap();
    assert_eq!((s.step, s.canary_percent, s.inconclusive), (0, 50.0, 0));
    assert_eq!(s.decisions.last(), Some(&*d), "recorded in the trail");
    assert_eq!(
        router.routes().weights,
        vec![(CANARY.to_string(), 50.0), (STABLE.to_string(), 50.0)]
    );
    // The rollout goes on under the new steps: one analysis at 50%, then the promotion.
    for _ in 0..100 {
        if state_of(&controller)
            .await
            .is_some_and(|s| s.phase.is_terminal() && s.aliases_settled)
        {
            break;
        }
        controller.tick(&router).await.unwrap();
        traffic(&w, &[&router], 1500, &mut offset);
    }
    let s = state_of(&controller).await.unwrap();
    assert_eq!(s.phase, Phase::Promoted, "{:#?}", s.decisions);
    let after: Vec<_> = s
        .decisions
        .iter()
        .skip(before.decisions.len())
        .map(|d| (d.kind, d.to_percent))
        .collect();
    assert_eq!(
        after,
        [
            (DecisionKind::Reconcile, 50.0),
            (DecisionKind::Promote, 100.0)
        ],
        "{:#?}",
        s.decisions
    );
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(2));
}

fn clean_step(requests: u64) -> StepSnapshot {
    let v = |name: &str| VariantSnapshot {
        requests,
        rows: requests,
        latency_p50_ms: Some(1.0),
        latency_p99_ms: Some(2.0),
        ..VariantSnapshot::empty(name)
    };
    StepSnapshot {
        variants: vec![v(CANARY), v(STABLE)],
    }
}

/// The state machine on its own: every stored state, whatever policy wrote it, is mapped
/// onto the policy in force without an index past its steps.
#[test]
fn every_stored_state_is_mapped_onto_the_policy_in_force() {
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ten = checked(&TEN_STEPS);
    let two = checked(&[50.0, 100.0]);
    let at = |config: &Promotion, step: usize, percent: f64, phase: Phase| {
        let mut s = RolloutState::start(MODEL, 1, 2, config, t0);
        s.phase = phase;
        s.step = step;
        s.canary_percent = percent;
        s
    };
    let later = t0 + Duration::from_secs(1);
    // A state that fits is left alone, and waits for its bake time.
    let mut s = at(&ten, 4, 30.0, Phase::Canary);
    assert!(s.reconcile(&ten, later).is_none());
    assert!(s.advance(&ten, &clean_step(1000), later).is_none());
    // Canary past the new steps: the highest step at or under its percent (never more
    // candidate traffic than analyzed), else the first step.
    for (step, percent, to_step, to_percent) in [(8, 80.0, 0, 50.0), (1, 10.0, 0, 50.0)] {
        let mut s = at(&ten, step, percent, Phase::Canary);
        let d = s.advance(&two, &clean_step(1000), later).unwrap();
        assert_eq!(d.kind, DecisionKind::Reconcile, "{}", d.reason);
        assert_eq!(
            (s.phase, s.step, s.canary_percent),
            (Phase::Canary, to_step, to_percent)
        );
        // The step bakes again from the reconciliation.
        assert_eq!(s.step_started_unix, 1_000_001.0);
        // Then the analysis goes on: the clean step promotes.
        let d = s
            .advance(&two, &clean_step(1000), later + Duration::from_secs(60))
            .unwrap();
        assert_eq!(d.kind, DecisionKind::Promote, "{}", d.reason);
    }
    // A step index within the new steps but at another percent is moved too.
    let mut s = at(&ten, 0, 5.0, Phase::Canary);
    let d = s.reconcile(&two, later).unwrap();
    assert_eq!(
        (d.kind, s.step, s.canary_percent),
        (DecisionKind::Reconcile, 0, 50.0)
    );
    // Rolling back: down to the highest step at or under the percent, or done.
    let gradual = PromotionConfig {
        rollback: RollbackMode::Gradual,
        ..policy(&[20.0, 60.0, 100.0])
    }
    .check()
    .unwrap();
    // (a percent that is one of the new steps only re-points the step index: no decision)
    let mut s = at(&ten, 7, 60.0, Phase::RollingBack);
    assert!(s.reconcile(&gradual, later).is_none());
    assert_eq!(
        (s.phase, s.step, s.canary_percent),
        (Phase::RollingBack, 1, 60.0)
    );
    let mut s = at(&ten, 7, 70.0, Phase::RollingBack);
    let d = s.reconcile(&gradual, later).unwrap();
    assert_eq!(
        (d.kind, s.phase, s.step, s.canary_percent),
        (DecisionKind::Reconcile, Phase::RollingBack, 1, 60.0)
    );
    let mut s = at(&ten, 3, 15.0, Phase::RollingBack);
    let d = s.reconcile(&gradual, later).unwrap();
    assert_eq!(
        (d.kind, s.phase, s.canary_percent),
        (DecisionKind::RolledBack, Phase::RolledBack, 0.0)
    );
    // A shadow phase the policy no longer has: its first step.
    let shadowed = PromotionConfig {
        shadow: Some(ShadowPhase {
            percent: 10.0,
            bake_time_seconds: 60.0,
            checks: vec![Check::ErrorRate {
                max_increase: 0.0,
                confidence: 0.95,
            }],
        }),
        ..policy(&[100.0])
    }
    .check()
    .unwrap();
    let mut s = RolloutState::start(MODEL, 1, 2, &shadowed, t0);
    assert_eq!(s.phase, Phase::Shadow);
    let d = s.reconcile(&two, later).unwrap();
    assert_eq!(
        (d.kind, s.phase, s.step, s.canary_percent),
        (DecisionKind::Reconcile, Phase::Canary, 0, 50.0)
    );
    // A canary under a shadow-only policy: the analysis starts again in the shadow phase.
    let mut s = at(&ten, 4, 30.0, Phase::Canary);
    let d = s.reconcile(&shadowed, later).unwrap();
    assert_eq!(
        (d.kind, s.phase, s.canary_percent),
        (DecisionKind::Reconcile, Phase::Shadow, 0.0)
    );
    // Corrupt percents and steps: the analysis starts again, never an index or a panic.
    for (step, percent) in [
        (usize::MAX, 30.0),
        (2, f64::NAN),
        (2, f64::INFINITY),
        (2, -5.0),
        (2, 150.0),
    ] {
        let mut s = at(&ten, step, percent, Phase::Canary);
        let d = s.advance(&two, &clean_step(1000), later).unwrap();
        assert_eq!(d.kind, DecisionKind::Reconcile, "{}", d.reason);
        assert_eq!(
            (s.phase, s.step, s.canary_percent),
            (Phase::Canary, 0, 50.0)
        );
    }
    // Counters at their limits saturate: the failure limit rolls back, no overflow.
    let mut s = at(&two, 0, 50.0, Phase::Canary);
    s.failures = u32::MAX;
    s.inconclusive = u32::MAX;
    let mut failing = clean_step(1000);
    failing.variants[0].errors = 100;
    let d = s
        .advance(&two, &failing, t0 + Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        (d.kind, s.phase),
        (DecisionKind::Rollback, Phase::RolledBack)
    );
    assert_eq!(s.failures, u32::MAX);
    // An invalid policy never reaches a state (issue 23: the state machine takes only a
    // checked `Promotion`, and the check refuses an empty one, named).
    let e = PromotionConfig {
        steps: vec![],
        ..policy(&[50.0, 100.0])
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(e.contains("invalid steps = []"), "{e}");
}

/// Issue 22 item 8: a server on `eu-production`/`eu-canary` beside one on
/// `production`/`canary` of the same model shared one rollout state, rolled the other's
/// rollout back and cleared its `canary` alias. Each pair now has its own state.
#[tokio::test]
async fn two_alias_pairs_of_one_model_run_separate_rollouts_on_one_store() {
    let w = world(0.5, 1.0);
    let v3 = w.source.add(MODEL, w.truth.model(1.0, 3).unwrap());
    for (alias, version) in [("eu-production", 1), ("eu-canary", v3)] {
        w.source
            .move_alias(MODEL, alias, Some(version), None, "setup")
            .await
            .unwrap();
    }
    w.start_canary(2);
    let (ra, rb) = (w.router(), w.router());
    let ca = w.controller(policy(&[10.0, 50.0, 100.0]));
    let cb = w
        .controller(policy(&[10.0, 50.0, 100.0]))
        .with_aliases("eu-production", "eu-canary")
        .unwrap();
    assert_eq!(ca.document(), "rollout");
    assert_eq!(
        cb.document(),
        rollout_document("eu-production", "eu-canary")
    );
    let mut offset = 0;
    let done = |s: &Option<RolloutState>| {
        s.as_ref()
            .is_some_and(|s| s.phase.is_terminal() && s.aliases_settled)
    };
    for _ in 0..100 {
        if done(&state_of(&ca).await) && done(&state_of(&cb).await) {
            break;
        }
        let (ta, tb) = tokio::join!(ca.tick(&ra), cb.tick(&rb));
        ta.unwrap();
        tb.unwrap();
        traffic(&w, &[&ra, &rb], 1500, &mut offset);
    }
    for (c, candidate) in [(&ca, 2), (&cb, v3)] {
        let s = state_of(c).await.unwrap();
        let kinds: Vec<_> = s.decisions.iter().map(|d| (d.kind, d.to_percent)).collect();
        assert_eq!(
            (s.phase, s.candidate, s.stable),
            (Phase::Promoted, candidate, 1),
            "{:#?}",
            s.decisions
        );
        assert_eq!(
            kinds,
            [
                (DecisionKind::Start, 10.0),
                (DecisionKind::Advance, 50.0),
                (DecisionKind::Promote, 100.0)
            ],
            "neither restarted nor rolled back the other's rollout"
        );
    }
    for (alias, version) in [
        ("production", Some(2)),
        ("canary", None),
        ("eu-production", Some(v3)),
        ("eu-canary", None),
    ] {
        assert_eq!(
            w.source.alias(MODEL, alias).await.unwrap(),
            version,
            "{alias}"
        );
    }
    assert_eq!(ra.routes().variants[0].version, Some(2));
    assert_eq!(rb.routes().variants[0].version, Some(v3));
}

/// A pair's document is a valid registry name, never shared by two pairs.
#[test]
fn each_alias_pair_has_its_own_document_name() {
    let long = "a".repeat(128);
    let pairs = [
        ("production", "canary"),
        ("eu-production", "eu-canary"),
        ("a_b", "c"),
        ("a", "b_c"),
        ("production", "eu-canary"),
        (long.as_str(), "canary"),
        (long.as_str(), "canary2"),
        ("canary", "production"),
    ];
    let names: Vec<String> = pairs.iter().map(|(p, c)| rollout_document(p, c)).collect();
    assert_eq!(
        names[0], "rollout",
        "the default pair's state stays where it was"
    );
    for (i, n) in names.iter().enumerate() {
        mlops_registry::names::check_name("state name", n).unwrap();
        assert!(!names[..i].contains(n), "{n} shared by two pairs");
    }
}

/// A store that fails every call, as an unreachable store does (retryable).
struct Broken;

#[async_trait]
impl RolloutStore for Broken {
    async fn load(&self, _: &str, _: &str) -> Result<Option<Stored>> {
        Err(mlops_serve::Error::unavailable("store unreachable"))
    }
    async fn save(&self, _: &str, _: &str, _: u64, _: &RolloutState, _: &str) -> Result<bool> {
        Err(mlops_serve::Error::unavailable("store unreachable"))
    }
}

fn errors(w: &World, kind: &str) -> u64 {
    let text = w.exposition();
    let prefix =
        format!("mlops_serve_controller_errors_total{{model=\"{MODEL}\",kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
        .parse()
        .unwrap()
}

/// Controller failures are counted by kind (they were only logged): the store, the model
/// source, and a stored state of another model (an error, never a panic).
#[tokio::test]
async fn failed_ticks_are_counted_by_what_failed() {
    let w = world(0.5, 1.0);
    let router = w.router();
    let controller = w.controller_on(policy(&[10.0, 100.0]), w.source.clone(), Arc::new(Broken));
    for kind in ["source", "store", "metrics", "model", "routes", "state"] {
        assert_eq!(errors(&w, kind), 0, "{kind} exported at zero");
    }
    for _ in 0..2 {
        // Retryable: the tick keeps the routes and says it will retry, not an error.
        match controller.tick(&router).await.unwrap() {
            Tick::Retrying { part, kind, error } => {
                assert_eq!(
                    (part, kind),
                    (ControllerErrorKind::Store, ErrorKind::Unavailable)
                );
                assert!(error.contains("store unreachable"), "{error}");
            }
            other => panic!("a broken store gave {other:?}"),
        }
    }
    assert_eq!(errors(&w, "store"), 2);
    // A production alias that is not set: the source's.
    let other = w.controller(policy(&[10.0, 100.0]));
    w.source
        .move_alias(MODEL, "production", None, Some(1), "removed")
        .await
        .unwrap();
    assert!(other.tick(&router).await.is_err());
    assert_eq!(errors(&w, "source"), 1);
    w.source
        .move_alias(MODEL, "production", Some(1), None, "back")
        .await
        .unwrap();
    // A state of another model under this model's document.
    let foreign = RolloutState::start("other", 1, 2, &checked(&[10.0, 100.0]), w.clock.now());
    assert!(w
        .store
        .save(MODEL, "rollout", 0, &foreign, "misplaced")
        .await
        .unwrap());
    let e = other.tick(&router).await.unwrap_err().to_string();
    assert!(e.contains("\"other\"") && e.contains("\"fraud\""), "{e}");
    assert_eq!(errors(&w, "state"), 1);
    assert_eq!(errors(&w, "store"), 2);
}

/// A corrupt stored state (a step far past any policy's, a percent that is not one, counters
/// at their limits, another policy's bake start) is reconciled by the tick, never a panic.
#[tokio::test]
async fn a_corrupt_stored_state_is_reconciled_by_the_tick() {
    let w = world(0.5, 1.0);
    w.start_canary(2);
    let config = policy(&[10.0, 100.0]);
    let mut corrupt = RolloutState::start(MODEL, 1, 2, &checked(&[10.0, 100.0]), w.clock.now());
    corrupt.step = usize::MAX;
    corrupt.canary_percent = f64::NAN;
    corrupt.failures = u32::MAX;
    corrupt.inconclusive = u32::MAX;
    corrupt.step_started_unix = f64::NAN;
    assert!(w
        .store
        .save(MODEL, "rollout", 0, &corrupt, "corrupt")
        .await
        .unwrap());
    let (router, controller) = (w.router(), w.controller(config));
    let Tick::Acted(d) = controller.tick(&router).await.unwrap() else {
        panic!("a reconciliation expected")
    };
    assert_eq!(
        (d.kind, d.to_percent),
        (DecisionKind::Reconcile, 10.0),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("starts again"), "{}", d.reason);
    assert_eq!(
        router.routes().weights,
        vec![(CANARY.to_string(), 10.0), (STABLE.to_string(), 90.0)]
    );
    // Then it is an ordinary rollout: it waits for its bake time.
    assert!(matches!(
        controller.tick(&router).await.unwrap(),
        Tick::Waiting { .. }
    ));
}

/// Two replicas on different policies whose steps share the state's percent agree on it (the
/// step index is re-pointed, no decision, no new bake time); where they do not, a state is
/// reconciled at most once between the two policies, and the rollout still comes to an end.
#[test]
fn replicas_on_different_policies_reconcile_a_state_at_most_once() {
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let a = checked(&[50.0, 100.0]);
    let b = checked(&[10.0, 25.0, 50.0, 75.0, 100.0]);
    // A shared percent re-indexes without a decision.
    let mut s = RolloutState::start(MODEL, 1, 2, &a, t0);
    let started = s.step_started_unix;
    assert!(s.reconcile(&b, t0 + Duration::from_secs(30)).is_none());
    assert_eq!(
        (s.step, s.canary_percent, s.step_started_unix),
        (2, 50.0, started)
    );
    // Alternating ticks, 20 s apart, each replica writing what it decides.
    let mut shared = RolloutState::start(MODEL, 1, 2, &a, t0);
    let mut t = t0;
    for i in 0..400 {
        t += Duration::from_secs(20);
        let config = if i % 2 == 0 { &b } else { &a };
        let mut local = shared.clone();
        if local.policy_conflict(config).is_some() {
            continue;
        }
        if local.advance(config, &clean_step(1000), t).is_some() {
            shared = local;
        }
        if shared.phase.is_terminal() {
            break;
        }
    }
    assert_reconciled_at_most_once(&shared);
    assert_eq!(shared.phase, Phase::Promoted, "{:#?}", shared.decisions);
    assert!(
        shared.decisions.len() < 20,
        "{} decisions",
        shared.decisions.len()
    );
}

/// A long pair's document is named by the SHA-256 of the pair (its length as 8 little-endian
/// bytes, then both names; the value below is Python's `hashlib.sha256`), not by a
/// non-cryptographic hash that pairs could be chosen to collide on.
#[test]
fn a_long_alias_pair_is_named_by_its_sha256() {
    let long = "a".repeat(128);
    assert_eq!(
        rollout_document(&long, "canary"),
        "rollout_s0a826c8e995078b6973e1ab67b03906efd931af5f378db921c0c83d64f0713f1"
    );
    // Short pairs keep their readable names (existing documents are still found).
    assert_eq!(
        rollout_document("eu-production", "eu-canary"),
        "rollout_13_eu-production_eu-canary"
    );
}

/// Two controllers (replicas) on one store with different policies, ticking in turn with
/// traffic: the stored rollout is reconciled at most once between them (a refusal is a
/// counted state error, not another rewrite) and the rollout comes to an end.
#[tokio::test]
async fn two_controllers_on_different_policies_do_not_reconcile_each_other_for_ever() {
    let w = world(0.5, 1.0);
    w.start_canary(2);
    let (ra, rb) = (w.router(), w.router());
    let a = w.controller(policy(&[50.0, 100.0]));
    let b = w.controller(policy(&[10.0, 25.0, 50.0, 75.0, 100.0]));
    let mut offset = 0;
    for _ in 0..200 {
        if state_of(&a)
            .await
            .is_some_and(|s| s.phase.is_terminal() && s.aliases_settled)
        {
            break;
        }
        let _ = a.tick(&ra).await;
        traffic(&w, &[&ra, &rb], 750, &mut offset);
        let _ = b.tick(&rb).await;
        traffic(&w, &[&ra, &rb], 750, &mut offset);
    }
    let s = state_of(&a).await.unwrap();
    assert_reconciled_at_most_once(&s);
    assert!(s.phase.is_terminal(), "{:#?}", s.decisions);
}

/// The routes a router serves: each variant's name, version and weight.
fn served(router: &Router) -> Vec<(String, Option<u64>, f64)> {
    let routes = router.routes();
    routes
        .variants
        .iter()
        .map(|v| {
            let weight = routes
                .weights
                .iter()
                .find(|(n, _)| *n == v.name)
                .map_or(0.0, |w| w.1);
            (v.name.clone(), v.version, weight)
        })
        .collect()
}

/// Issue 23: the controller tells a retryable source failure from a permanent one. While the
/// source is unavailable (a step due, its traffic served) each tick keeps the routes, decides
/// nothing, moves no alias, is counted and says it will retry; when the source answers again
/// the due step is decided. A source whose model is gone is a `NotFound` error of the tick,
/// for the operator — counted the same way, the routes kept.
#[tokio::test]
async fn a_retryable_source_failure_is_retried_and_a_permanent_one_reported() {
    let w = world(0.5, 1.0);
    let source = Arc::new(FailingSource::new(w.source.clone()));
    let router = w.router();
    let controller = w.controller_on(policy(&[10.0, 100.0]), source.clone(), w.store.clone());
    w.start_canary(2);
    let Tick::Acted(start) = controller.tick(&router).await.unwrap() else {
        panic!("the rollout did not start")
    };
    assert_eq!(start.kind, DecisionKind::Start);
    let serving = served(&router);
    assert_eq!(serving.len(), 2, "{serving:?}");
    let stored = controller.state().await.unwrap().unwrap();
    // The step's minute of traffic: the step is due.
    let mut offset = 0;
    traffic(&w, &[&router], 3100, &mut offset);

    source.set(SourceFailure::Unavailable);
    for attempt in 1..=3 {
        match controller.tick(&router).await.unwrap() {
            Tick::Retrying { part, kind, error } => {
                assert_eq!(part, ControllerErrorKind::Source);
                assert_eq!(kind, ErrorKind::Unavailable);
                assert!(kind.is_retryable());
                assert!(error.contains("store unreachable"), "{error}");
            }
            other => panic!("an unavailable source gave {other:?}"),
        }
        assert_eq!(served(&router), serving, "the routes changed");
        let now = controller.state().await.unwrap().unwrap();
        assert_eq!(now.seq, stored.seq, "a decision was written");
        assert_eq!(now.state.decisions, stored.state.decisions);
        assert_eq!(errors(&w, "source"), attempt);
    }
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(1));
    assert_eq!(w.source.alias(MODEL, "canary").await.unwrap(), Some(2));

    // The source answers again: the due step is decided (the canary's error rate is no
    // worse), the next step served.
    source.set(SourceFailure::None);
    let Tick::Acted(d) = controller.tick(&router).await.unwrap() else {
        panic!("the due step was not decided once the source answered")
    };
    assert_eq!(
        (d.from_percent, d.to_percent),
        (10.0, 100.0),
        "{}",
        d.reason
    );
    let promoted = served(&router);
    assert_eq!(errors(&w, "source"), 3);

    // The model is gone: permanent, the tick's error, not a retry.
    source.set(SourceFailure::NotFound);
    for attempt in 1..=2 {
        let e = controller.tick(&router).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(!e.kind().is_retryable());
        assert!(e.to_string().contains("deleted from the registry"), "{e}");
        assert_eq!(served(&router), promoted, "the routes changed");
        assert_eq!(errors(&w, "source"), 3 + attempt);
    }
}

/// A rollout whose replicas disagree on the policy is reconciled at most once, whoever wins.
fn assert_reconciled_at_most_once(s: &RolloutState) {
    let reconciles = s
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Reconcile)
        .count();
    assert!(
        reconciles <= 1,
        "{reconciles} reconciliations: {:#?}",
        s.decisions
    );
}
