//! Shared rollout state: two replicas (router + controller each) on one store follow one
//! rollout and exactly one controller acts at each step; a controller restarted mid-rollout
//! resumes at its step; a new candidate mid-rollout restarts the analysis; clearing the
//! canary alias aborts it; a shadow phase comes first when configured. The public
//! `RolloutStore` and `MetricsSource` suites on the memory store and `InProcess`, and each
//! failing a broken implementation.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mlops_core::model::Predictor;
use mlops_serve::analysis::Check;
use mlops_serve::policy::{PromotionConfig, ShadowPhase};
use mlops_serve::rollout::{
    Controller, DecisionKind, InProcess, MemoryRolloutStore, MetricsSource, Phase, RolloutState,
    RolloutStore, Stored, Tick,
};
use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
use mlops_serve::source::ModelSource;
use mlops_serve::step_stats::StepSnapshot;
use mlops_serve::testing::{self, MetricsStep};
use mlops_serve::{CompiledModel, NonFinitePolicy, Result};
use support::{world, FailingSource, SourceFailure, World, MODEL};

/// A store whose writes wait one scheduler turn first, so two controllers polled together
/// both read the same state before either writes: a real race on the conditional write.
struct Yielding(Arc<dyn RolloutStore>);

#[async_trait]
impl RolloutStore for Yielding {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        self.0.load(model, document).await
    }
    async fn save(
        &self,
        model: &str,
        document: &str,
        seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool> {
        tokio::task::yield_now().await;
        self.0.save(model, document, seq, state, why).await
    }
}

/// Sends `n` labeled requests to each router (labels 200 requests late), one simulated
/// 20 ms apart.
fn traffic(w: &World, routers: &[&Router], n: usize, offset: &mut usize) {
    let data = w.traffic(4096);
    let labels = data.labels().unwrap().clone();
    let mut waiting = std::collections::VecDeque::new();
    let mut out = [0.0_f32];
    for _ in 0..n {
        for (r, router) in routers.iter().enumerate() {
            let i = *offset;
            *offset += 1;
            let row = i % data.n_rows();
            let id = format!("{r}-{i}");
            let key = format!("user-{}", i % 3000);
            let request = Request {
                key: Some(&key),
                force: None,
                request_id: Some(&id),
                group: None,
            };
            if router
                .route(
                    &request,
                    data.features().slice(ndarray::s![row..row + 1, ..]),
                    &mut out,
                )
                .is_ok()
            {
                waiting.push_back((r, id, f64::from(labels[row])));
            }
            if waiting.len() > 200 {
                let (r, id, label) = waiting.pop_front().unwrap();
                routers[r].feedback(&id, &[label]).unwrap();
            }
        }
        w.clock.advance(Duration::from_millis(20));
    }
}

fn state(c: &Controller) -> RolloutState {
    futures::executor::block_on(c.state())
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn two_replicas_follow_one_rollout_and_one_controller_acts_each_step() {
    let mut w = world(0.5, 1.0);
    w.store = Arc::new(Yielding(w.store.clone()));
    let (ra, rb) = (w.router(), w.router());
    let (ca, cb) = (
        w.controller(PromotionConfig::default()),
        w.controller(PromotionConfig::default()),
    );
    w.start_canary(2);
    let mut offset = 0;
    let (mut acted, mut lost) = ([0; 2], 0);
    for _ in 0..200 {
        let (ta, tb) = tokio::join!(ca.tick(&ra), cb.tick(&rb));
        for (i, t) in [ta.unwrap(), tb.unwrap()].into_iter().enumerate() {
            match t {
                Tick::Acted(_) => acted[i] += 1,
                Tick::Lost => lost += 1,
                _ => {}
            }
        }
        // Both replicas route by the stored state's weights after every round.
        assert_eq!(ra.routes().weights, rb.routes().weights);
        if state(&ca).phase.is_terminal() && state(&ca).aliases_settled {
            break;
        }
        traffic(&w, &[&ra, &rb], 1500, &mut offset);
    }
    let s = state(&ca);
    assert_eq!(s.phase, Phase::Promoted, "{:#?}", s.decisions);
    // One decision per step, no duplicates from the losing controller.
    let kinds: Vec<_> = s.decisions.iter().map(|d| (d.kind, d.to_percent)).collect();
    assert_eq!(
        kinds,
        [
            (DecisionKind::Start, 10.0),
            (DecisionKind::Advance, 25.0),
            (DecisionKind::Advance, 50.0),
            (DecisionKind::Advance, 75.0),
            (DecisionKind::Promote, 100.0)
        ]
    );
    assert_eq!(acted[0] + acted[1], 5, "acted {acted:?}");
    assert!(
        lost >= 4,
        "the controllers raced on every step: lost {lost}"
    );
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(2));
    assert_eq!(ra.routes().weights, vec![("stable".to_string(), 100.0)]);
    assert_eq!(ra.routes().variants[0].version, Some(2));
}

#[tokio::test]
async fn a_controller_restarted_mid_rollout_resumes_at_its_step() {
    let w = world(0.5, 1.0);
    w.start_canary(2);
    let mut offset = 0;
    {
        let (router, controller) = (w.router(), w.controller(PromotionConfig::default()));
        while state_or_none(&controller)
            .await
            .is_none_or(|s| s.canary_percent < 50.0)
        {
            controller.tick(&router).await.unwrap();
            traffic(&w, &[&router], 1500, &mut offset);
        }
    } // the process "dies" here
    let (router, controller) = (w.router(), w.controller(PromotionConfig::default()));
    assert_eq!(controller.tick(&router).await.unwrap(), Tick::Followed);
    assert_eq!(
        router.routes().weights,
        vec![("canary".to_string(), 50.0), ("stable".to_string(), 50.0)]
    );
    for _ in 0..200 {
        if matches!(controller.tick(&router).await.unwrap(), Tick::Idle { .. }) {
            break;
        }
        traffic(&w, &[&router], 1500, &mut offset);
    }
    let s = state(&controller);
    assert_eq!(s.phase, Phase::Promoted);
    assert_eq!(
        s.decisions
            .iter()
            .filter(|d| d.kind == DecisionKind::Start)
            .count(),
        1
    );
    assert_eq!(
        s.decisions
            .iter()
            .filter(|d| d.kind == DecisionKind::Restart)
            .count(),
        0
    );
}

async fn state_or_none(c: &Controller) -> Option<RolloutState> {
    c.state().await.unwrap().map(|s| s.state)
}

#[tokio::test]
async fn a_new_candidate_restarts_the_analysis_and_a_cleared_canary_aborts() {
    let w = world(0.5, 1.0);
    let v3 = w.source.add(MODEL, w.truth.model(0.9, 3).unwrap());
    let (router, controller) = (w.router(), w.controller(PromotionConfig::default()));
    w.start_canary(2);
    let mut offset = 0;
    while state_or_none(&controller)
        .await
        .is_none_or(|s| s.canary_percent < 25.0)
    {
        controller.tick(&router).await.unwrap();
        traffic(&w, &[&router], 1500, &mut offset);
    }
    w.source
        .move_alias(MODEL, "canary", Some(v3), Some(2), "a better one")
        .await
        .unwrap();
    let Tick::Acted(d) = controller.tick(&router).await.unwrap() else {
        panic!("restart expected")
    };
    assert_eq!(
        (d.kind, d.from_percent, d.to_percent),
        (DecisionKind::Restart, 25.0, 10.0),
        "{}",
        d.reason
    );
    let s = state(&controller);
    assert_eq!((s.candidate, s.step, s.failures), (v3, 0, 0));
    assert_eq!(router.routes().variants[0].version, Some(v3));
    // Withdrawn: the rollout ends now, production untouched.
    w.source
        .move_alias(MODEL, "canary", None, Some(v3), "withdrawn")
        .await
        .unwrap();
    let Tick::Acted(d) = controller.tick(&router).await.unwrap() else {
        panic!("abort expected")
    };
    assert_eq!(d.kind, DecisionKind::Rollback);
    assert!(
        d.reason.contains("canary alias was cleared"),
        "{}",
        d.reason
    );
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(1));
    assert_eq!(router.routes().weights, vec![("stable".to_string(), 100.0)]);
}

#[tokio::test]
async fn a_shadow_phase_comes_first_and_its_agreement_is_checked() {
    let w = world(0.9, 1.0);
    let config = PromotionConfig {
        shadow: Some(ShadowPhase {
            percent: 50.0,
            bake_time_seconds: 300.0,
            checks: vec![
                Check::ShadowAgreement {
                    min_agreement: 0.8,
                    confidence: 0.95,
                },
                Check::ErrorRate {
                    max_increase: 0.0,
                    confidence: 0.95,
                },
            ],
        }),
        ..PromotionConfig::default()
    };
    let (router, controller) = (w.router(), w.controller(config));
    w.start_canary(2);
    let mut offset = 0;
    controller.tick(&router).await.unwrap();
    let s = state(&controller);
    assert_eq!((s.phase, s.canary_percent), (Phase::Shadow, 0.0));
    let routes = router.routes();
    assert_eq!(routes.weights, vec![("stable".to_string(), 100.0)]);
    assert_eq!(routes.shadow.as_ref().map(|s| s.percent), Some(50.0));
    for _ in 0..100 {
        traffic(&w, &[&router], 1500, &mut offset);
        // The shadow works off the request path: let its thread drain the queue.
        while router.shadow_backlog() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Tick::Acted(d) = controller.tick(&router).await.unwrap() {
            assert_eq!(
                (d.kind, d.phase, d.to_percent),
                (DecisionKind::Advance, Phase::Shadow, 10.0),
                "{}",
                d.reason
            );
            let agreement = d
                .checks
                .iter()
                .find(|c| c.check == "shadow_agreement")
                .unwrap();
            assert!(
                agreement.candidate.unwrap() > 0.8 && agreement.n_candidate > 100,
                "{agreement:?}"
            );
            return;
        }
    }
    panic!(
        "the shadow phase never ended: {:#?}",
        state(&controller).decisions
    );
}

/// Alias moves that fail (a source whose moves fail while set): a controller "killed" between
/// the state write and the alias moves.
#[tokio::test]
async fn aliases_left_unmoved_by_a_crash_are_moved_by_the_next_tick() {
    let w = world(0.5, 1.0);
    let flaky = Arc::new(FailingSource::moves_only(w.source.clone()));
    let config = PromotionConfig {
        steps: vec![50.0, 100.0],
        ..PromotionConfig::default()
    };
    let (router, controller) = (
        w.router(),
        w.controller_on(config, flaky.clone(), w.store.clone()),
    );
    w.start_canary(2);
    let mut offset = 0;
    controller.tick(&router).await.unwrap();
    traffic(&w, &[&router], 30_000, &mut offset);
    flaky.set(SourceFailure::Unavailable);
    // The promotion is written, then the alias moves fail (retryable: the tick says it will
    // retry), and the state says the aliases are not settled.
    match controller.tick(&router).await.unwrap() {
        Tick::Retrying { error, .. } => assert!(error.contains("store unreachable"), "{error}"),
        other => panic!("failed alias moves gave {other:?}"),
    }
    let s = state(&controller);
    assert_eq!((s.phase, s.aliases_settled), (Phase::Promoted, false));
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(1));
    flaky.set(SourceFailure::None);
    assert_eq!(controller.tick(&router).await.unwrap(), Tick::Followed);
    assert!(state(&controller).aliases_settled);
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(2));
    assert_eq!(w.source.alias(MODEL, "canary").await.unwrap(), None);
    assert_eq!(router.routes().variants[0].version, Some(2));
}

#[tokio::test]
async fn other_alias_names_serve_and_roll_out_the_same_way() {
    let w = world(0.5, 1.0);
    w.source
        .move_alias(MODEL, "eu-prod", Some(1), None, "first")
        .await
        .unwrap();
    w.source
        .move_alias(MODEL, "eu-canary", Some(2), None, "candidate")
        .await
        .unwrap();
    let router = w.router();
    let controller = w
        .controller(PromotionConfig::default())
        .with_aliases("eu-prod", "eu-canary")
        .unwrap();
    assert!(w
        .controller(PromotionConfig::default())
        .with_aliases("x", "x")
        .is_err());
    let mut offset = 0;
    for _ in 0..200 {
        if matches!(controller.tick(&router).await.unwrap(), Tick::Idle { .. })
            && state_or_none(&controller).await.is_some()
        {
            break;
        }
        traffic(&w, &[&router], 1500, &mut offset);
    }
    assert_eq!(state(&controller).phase, Phase::Promoted);
    assert_eq!(w.source.alias(MODEL, "eu-prod").await.unwrap(), Some(2));
    assert_eq!(w.source.alias(MODEL, "eu-canary").await.unwrap(), None);
    // The default names were never touched.
    assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(1));
}

// The public suites on this crate's in-process implementations, and each failing a broken one.

#[tokio::test]
async fn the_memory_store_conforms() {
    testing::rollout_store(&MemoryRolloutStore::new(), MODEL, "churn").await;
}

/// A store whose saves ignore the expected sequence number (last writer wins).
#[derive(Default)]
struct LastWriterWins(MemoryRolloutStore);

#[async_trait]
impl RolloutStore for LastWriterWins {
    async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
        self.0.load(model, document).await
    }
    async fn save(
        &self,
        model: &str,
        document: &str,
        _seq: u64,
        state: &RolloutState,
        why: &str,
    ) -> Result<bool> {
        let now = self.0.load(model, document).await?.map_or(0, |s| s.seq);
        self.0.save(model, document, now, state, why).await
    }
}

#[tokio::test]
#[should_panic(
    expected = "answered true, expected false (a save from a stale or future number never wins)"
)]
async fn the_suite_fails_a_store_whose_saves_ignore_the_sequence_number() {
    testing::rollout_store(&LastWriterWins::default(), MODEL, "churn").await;
}

/// A router with a stable (v1) and a canary (v2) variant, both refusing non-finite input.
fn two_variants(w: &World) -> Router {
    let variant = |name: &str, version: u64| {
        let artifact = futures::executor::block_on(w.source.load(MODEL, version)).unwrap();
        let compiled = CompiledModel::compile(&artifact, NonFinitePolicy::Reject).unwrap();
        Variant::new(
            name,
            Some(version),
            Arc::new(compiled) as Arc<dyn Predictor>,
        )
    };
    let routes = Routes {
        variants: vec![variant("canary", 2), variant("stable", 1)],
        weights: vec![("canary".into(), 30.0), ("stable".into(), 70.0)],
        shadow: None,
    };
    Router::new(MODEL, routes, RouterOptions::default()).unwrap()
}

/// The public suite on `source` reading a fresh two-variant router of the world.
async fn metrics_suite(source: &dyn MetricsSource) {
    let w = world(0.5, 1.0);
    let router = two_variants(&w);
    let data = w.traffic(64);
    let step = MetricsStep {
        rows: data.features(),
        step_start_unix: 1_700_000_000.0,
        now_unix: 1_700_000_600.0,
        score_tolerance: 0.0,
    };
    testing::metrics_source(source, &router, step, std::future::ready(())).await;
}

#[tokio::test]
async fn the_in_process_metrics_source_conforms() {
    metrics_suite(&InProcess).await;
}

/// A source that reports each variant's requests as its rows (issue 22 item 20's bug).
struct RowsAreRequests;

#[async_trait]
impl MetricsSource for RowsAreRequests {
    async fn snapshot(
        &self,
        model: &str,
        router: &Router,
        start: f64,
        now: f64,
    ) -> Result<StepSnapshot> {
        let mut s = InProcess.snapshot(model, router, start, now).await?;
        for v in &mut s.variants {
            v.rows = v.requests;
        }
        Ok(s)
    }
}

#[tokio::test]
#[should_panic(expected = "canary: rows read as")]
async fn the_suite_fails_a_metrics_source_that_counts_requests_as_rows() {
    metrics_suite(&RowsAreRequests).await;
}
