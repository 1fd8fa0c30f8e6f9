//! Conformance suites (feature `testing`, off by default) for the serving traits, as
//! object_store's `integration` module: a host that implements [`ModelSource`],
//! [`RolloutStore`] or [`MetricsSource`] on its own storage runs the suite the workspace runs
//! on its own implementations (the in-memory ones, the registry, [`InProcess`](crate::rollout::InProcess)
//! and `PrometheusSource`). The `Predictor` suite is `mlops_core::testing::predictor`
//! (re-exported here as [`predictor`]).
//!
//! A suite cannot register models or send a scrape through the trait it checks, so each takes
//! what the caller prepared — the names of what it registered, the versions and artifacts,
//! a router and a hook — and says in its documentation what it expects to find.
//!
//! Every suite returns when the implementation conforms and **panics** on the first
//! violation, with a message that starts with the suite's name (`ModelSource suite:`, …) and
//! names the property and the values seen; call it from a `#[test]`. It is test-support
//! code: unlike the rest of the library it panics by design.

use std::future::Future;
use std::time::{Duration, SystemTime};

use mlops_core::model::ModelArtifact;
use ndarray::{ArrayView2, Axis, Slice};

pub use mlops_core::testing::predictor;

use crate::policy::Promotion;
use crate::rollout::{rollout_document, MetricsSource, RolloutState, RolloutStore, Stored};
use crate::router::{Request, Router};
use crate::source::ModelSource;
use crate::{ErrorKind, Result};

/// The value of `result`, or the suite's panic naming the call and the error.
fn ok<T>(suite: &str, what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{suite} suite: {what}: unexpected error: {e}"))
}

/// The [`ModelSource`] contract, checked on `source` for `model`, which the caller
/// registered with `versions` — at least two `(version number, artifact)` pairs — and whose
/// aliases `production` and `canary` are unset. The suite moves those two aliases (and leaves
/// `production` on the second version, `canary` unset). What it checks:
///
/// - `load` returns each artifact as registered; a version that was never registered (0,
///   one past the highest) and a model that was never registered are errors;
/// - `alias` of an unset alias is `None`, of a model the source does not hold an error (not
///   an unset alias);
/// - `move_alias` is a compare-and-swap: from the right expectation it moves (`true`) and
///   `alias` reads the new version; from a stale one it answers `false` and nothing changed;
///   `to: None` clears, by compare-and-swap too; a move to a version that does not exist is
///   an error and changes nothing; `latest` (the highest version, never a movable alias) is not
///   an alias one moves.
///
/// Panics, naming the property and the values, on the first violation.
///
/// A host runs it on its own source (here a toy one that keeps one model in a map):
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Mutex;
///
/// use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
/// use mlops_serve::source::ModelSource;
/// use mlops_serve::{testing, Error, Result};
/// use ndarray::array;
///
/// struct HostSource {
///     versions: BTreeMap<u64, ModelArtifact>,
///     aliases: Mutex<BTreeMap<String, u64>>,
/// }
///
/// // What the host does not hold is `NotFound` (a controller reports it, it does not retry).
/// fn missing(what: &str, value: impl std::fmt::Display) -> Error {
///     Error::not_found(format!("{what} {value} (the host does not hold it)"))
/// }
///
/// #[async_trait::async_trait]
/// impl ModelSource for HostSource {
///     async fn alias(&self, model: &str, alias: &str) -> Result<Option<u64>> {
///         if model != "fraud" {
///             return Err(missing("model", model));
///         }
///         Ok(self.aliases.lock().unwrap().get(alias).copied())
///     }
///     async fn load(&self, model: &str, version: u64) -> Result<ModelArtifact> {
///         match (model, self.versions.get(&version)) {
///             ("fraud", Some(a)) => Ok(a.clone()),
///             _ => Err(missing("version", version)),
///         }
///     }
///     async fn move_alias(
///         &self,
///         model: &str,
///         alias: &str,
///         to: Option<u64>,
///         expected: Option<u64>,
///         _why: &str,
///     ) -> Result<bool> {
///         if model != "fraud" || alias == "latest" {
///             return Err(missing("model and alias", format!("{model} @{alias}")));
///         }
///         if to.is_some_and(|v| !self.versions.contains_key(&v)) {
///             return Err(missing("version", format!("{to:?}")));
///         }
///         let mut aliases = self.aliases.lock().unwrap();
///         if aliases.get(alias).copied() != expected {
///             return Ok(false);
///         }
///         match to {
///             Some(v) => aliases.insert(alias.to_string(), v),
///             None => aliases.remove(alias),
///         };
///         Ok(true)
///     }
/// }
///
/// let artifact = |w: f32| {
///     let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
///     ModelArtifact::new(spec, vec![(array![[w]], array![0.0_f32])]).unwrap()
/// };
/// let (a, b) = (artifact(1.0), artifact(2.0));
/// let source = HostSource {
///     versions: BTreeMap::from([(1, a.clone()), (2, b.clone())]),
///     aliases: Mutex::default(),
/// };
/// futures::executor::block_on(testing::model_source(&source, "fraud", &[(1, &a), (2, &b)]));
/// ```
pub async fn model_source(
    source: &dyn ModelSource,
    model: &str,
    versions: &[(u64, &ModelArtifact)],
) {
    const S: &str = "ModelSource";
    assert!(
        versions.len() >= 2,
        "ModelSource suite: {} versions given; the suite needs at least two registered versions",
        versions.len()
    );
    let (first, second) = (versions[0].0, versions[1].0);
    let highest = versions.iter().map(|v| v.0).max().unwrap_or(0);
    let unknown_model = format!("{model}-never-registered");

    // Loading: each artifact as registered; versions and models never registered: errors.
    for &(version, artifact) in versions {
        let loaded = ok(
            S,
            &format!("load({model:?}, {version})"),
            source.load(model, version).await,
        );
        assert!(
            &loaded == artifact,
            "ModelSource suite: load({model:?}, {version}) returned another artifact than the one registered: {loaded:?}"
        );
    }
    let loaded = source.load(model, 0).await;
    assert!(
        loaded.is_err(),
        "ModelSource suite: load({model:?}, 0) answered {loaded:?}, expected an error (versions count from 1)"
    );
    // A version or a model that is not there is `NotFound`: a controller reports it rather
    // than retrying (it retries `Unavailable`).
    for (m, version) in [(model, highest + 1), (unknown_model.as_str(), first)] {
        let loaded = source.load(m, version).await;
        assert!(
            matches!(&loaded, Err(e) if e.kind() == ErrorKind::NotFound),
            "ModelSource suite: load({m:?}, {version}) of a version never registered answered {loaded:?}, expected an error of kind not_found"
        );
    }

    // Unset aliases read None; a model the source does not hold is an error.
    for alias in ["production", "canary"] {
        let now = ok(
            S,
            &format!("alias({model:?}, {alias:?})"),
            source.alias(model, alias).await,
        );
        assert_eq!(
            now, None,
            "ModelSource suite: alias({model:?}, {alias:?}) before any move: the suite needs it unset"
        );
    }
    let read = source.alias(&unknown_model, "production").await;
    assert!(
        read.is_err(),
        "ModelSource suite: alias({unknown_model:?}, \"production\") of a model never registered answered {read:?}, expected an error (not an unset alias)"
    );

    // Compare-and-swap moves.
    /// alias, to, expected, moved?, then reads
    type Move<'a> = (&'a str, Option<u64>, Option<u64>, bool, Option<u64>);
    let moves: [Move<'_>; 7] = [
        ("production", Some(first), None, true, Some(first)),
        ("production", Some(second), None, false, Some(first)),
        ("production", Some(second), Some(first), true, Some(second)),
        ("canary", Some(second), None, true, Some(second)),
        ("canary", None, Some(first), false, Some(second)),
        ("canary", None, Some(second), true, None),
        ("canary", None, Some(second), false, None),
    ];
    for (alias, to, expected, moves, reads) in moves {
        let what = format!("move_alias({model:?}, {alias:?}, to {to:?}, expected {expected:?})");
        let moved = ok(
            S,
            &what,
            source
                .move_alias(model, alias, to, expected, "conformance")
                .await,
        );
        let after = ok(
            S,
            &format!("alias({model:?}, {alias:?}) after {what}"),
            source.alias(model, alias).await,
        );
        assert!(
            moved == moves && after == reads,
            "ModelSource suite: {what} answered {moved} and the alias reads {after:?} after it; expected {moves} and {reads:?} (a stale expectation moves nothing)"
        );
    }
    // Errors that change nothing: a version never registered, the `latest` reference.
    for (alias, to) in [("production", highest + 1), ("latest", first)] {
        let what = format!("move_alias({model:?}, {alias:?}, to {to})");
        let moved = source
            .move_alias(model, alias, Some(to), Some(second), "conformance")
            .await;
        assert!(
            moved.is_err(),
            "ModelSource suite: {what} answered {moved:?}, expected an error"
        );
    }
    let after = ok(
        S,
        "alias(production) after the refused moves",
        source.alias(model, "production").await,
    );
    assert_eq!(
        after,
        Some(second),
        "ModelSource suite: a refused move changed `production`"
    );
}

/// A rollout state of `model` rolling `candidate` out over version 1, at a fixed time.
fn rollout_state(model: &str, candidate: u64) -> RolloutState {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    RolloutState::start(model, 1, candidate, &Promotion::default(), t0)
}

/// `store.load`, failing the suite on an error.
async fn load(store: &dyn RolloutStore, model: &str, document: &str) -> Option<Stored> {
    ok(
        "RolloutStore",
        &format!("load({model:?}, {document:?})"),
        store.load(model, document).await,
    )
}

/// The [`RolloutStore`] contract, checked on `store` with two distinct model names under
/// which it holds no rollout documents yet (a store that needs models registered first gets
/// them registered by the caller). The suite writes the documents `rollout` and
/// `rollout_13_eu-production_eu-canary` of `model` and `rollout` of `other_model`. What it
/// checks:
///
/// - a document never written loads as `None`;
/// - a save from the stored sequence number (0 for none) wins (`true`) and loads back as
///   written, with the next sequence number; a save from a stale number, or from one ahead,
///   answers `false` and changes nothing;
/// - of eight savers racing from the same sequence number, exactly one wins, and the stored
///   state is the winner's;
/// - documents of different names, and of different models, are independent.
///
/// Panics, naming the property and the values, on the first violation.
///
/// A host runs it on its own store (here a toy one keyed by model and document):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// use mlops_serve::rollout::{RolloutState, RolloutStore, Stored};
/// use mlops_serve::{testing, Result};
///
/// #[derive(Default)]
/// struct HostStore(Mutex<HashMap<(String, String), Stored>>);
///
/// #[async_trait::async_trait]
/// impl RolloutStore for HostStore {
///     async fn load(&self, model: &str, document: &str) -> Result<Option<Stored>> {
///         Ok(self.0.lock().unwrap().get(&(model.into(), document.into())).cloned())
///     }
///     async fn save(
///         &self,
///         model: &str,
///         document: &str,
///         expected_seq: u64,
///         state: &RolloutState,
///         _why: &str,
///     ) -> Result<bool> {
///         let mut all = self.0.lock().unwrap();
///         let key = (model.to_string(), document.to_string());
///         if all.get(&key).map_or(0, |s| s.seq) != expected_seq {
///             return Ok(false);
///         }
///         all.insert(key, Stored { seq: expected_seq + 1, state: state.clone() });
///         Ok(true)
///     }
/// }
///
/// futures::executor::block_on(testing::rollout_store(&HostStore::default(), "fraud", "churn"));
/// ```
pub async fn rollout_store(store: &dyn RolloutStore, model: &str, other_model: &str) {
    const S: &str = "RolloutStore";
    assert_ne!(
        model, other_model,
        "RolloutStore suite: the two model names must differ"
    );
    let (main, other) = (
        rollout_document("production", "canary"),
        rollout_document("eu-production", "eu-canary"),
    );
    for (m, d) in [(model, &main), (model, &other), (other_model, &main)] {
        let stored = load(store, m, d).await;
        assert!(
            stored.is_none(),
            "RolloutStore suite: load({m:?}, {d:?}) of a document never written answered {stored:?}, expected None (the suite needs fresh names)"
        );
    }
    // Conditional writes: (expected seq, candidate, wins?) in order, on `model`/`main`.
    let mut current: Option<Stored> = None;
    for (expected_seq, candidate, wins) in [
        (0, 2, true),
        (0, 3, false),
        (2, 3, false),
        (1, 4, true),
        (1, 5, false),
        (3, 5, false),
    ] {
        let state = rollout_state(model, candidate);
        let what = format!("save({model:?}, {main:?}, expected_seq {expected_seq})");
        let won = ok(
            S,
            &what,
            store
                .save(model, &main, expected_seq, &state, "conformance")
                .await,
        );
        if wins {
            current = Some(Stored {
                seq: expected_seq + 1,
                state,
            });
        }
        let stored = load(store, model, &main).await;
        let stored_seq = stored.as_ref().map(|s| s.seq);
        assert!(
            won == wins,
            "RolloutStore suite: {what} with the stored sequence number at {:?} answered {won}, expected {wins} (a save from a stale or future number never wins)",
            current.as_ref().map(|s| s.seq)
        );
        assert!(
            stored == current,
            "RolloutStore suite: after {what} ({won}), the document is at seq {stored_seq:?} with candidate {:?}; expected seq {:?} with candidate {:?}",
            stored.as_ref().map(|s| s.state.candidate),
            current.as_ref().map(|s| s.seq),
            current.as_ref().map(|s| s.state.candidate)
        );
    }
    let seq = current.as_ref().map_or(0, |s| s.seq);

    // Eight savers race from the same number: exactly one wins, and its state is stored.
    let states: Vec<RolloutState> = (0..8).map(|i| rollout_state(model, 10 + i)).collect();
    let results = futures::future::join_all(
        states
            .iter()
            .map(|state| store.save(model, &main, seq, state, "conformance race")),
    )
    .await;
    let won: Vec<usize> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| ok(S, "a racing save", r).then_some(i))
        .collect();
    assert!(
        won.len() == 1,
        "RolloutStore suite: eight savers from seq {seq}: savers {won:?} won, expected exactly one"
    );
    let stored = load(store, model, &main).await;
    let expected = Stored {
        seq: seq + 1,
        state: states[won[0]].clone(),
    };
    assert!(
        stored.as_ref() == Some(&expected),
        "RolloutStore suite: after the race the document is at seq {:?} with candidate {:?}; expected the winner's: seq {} with candidate {}",
        stored.as_ref().map(|s| s.seq),
        stored.as_ref().map(|s| s.state.candidate),
        expected.seq,
        expected.state.candidate
    );

    // Other documents and other models are independent.
    for (m, d) in [(model, &other), (other_model, &main)] {
        let what = format!("load({m:?}, {d:?})");
        let before = load(store, m, d).await;
        assert!(
            before.is_none(),
            "RolloutStore suite: {what} after writes to {model:?}/{main:?} answered {before:?}, expected None (documents are independent)"
        );
        let state = rollout_state(m, 7);
        let won = ok(
            S,
            &format!("save({m:?}, {d:?}, expected_seq 0)"),
            store.save(m, d, 0, &state, "conformance").await,
        );
        let after = load(store, m, d).await;
        assert!(
            won && after == Some(Stored { seq: 1, state }),
            "RolloutStore suite: the first save of {m:?}/{d:?} answered {won} and loads as seq {:?}; expected true and seq 1 (its own sequence, whatever other documents hold)",
            after.as_ref().map(|s| s.seq)
        );
    }
    let still = load(store, model, &main).await;
    assert!(
        still.as_ref() == Some(&expected),
        "RolloutStore suite: writing other documents changed {model:?}/{main:?}: seq {:?}",
        still.as_ref().map(|s| s.seq)
    );
}

/// The step a [`metrics_source`] suite sends and reads.
#[derive(Debug, Clone, Copy)]
pub struct MetricsStep<'a> {
    /// Feature rows every variant of the router scores (finite, at least three rows, the
    /// model's width): the suite sends requests of one to three of them.
    pub rows: ArrayView2<'a, f32>,
    /// The step's start, as the controller would pass it.
    pub step_start_unix: f64,
    /// The step's end ("now"), as the controller would pass it.
    pub now_unix: f64,
    /// How far a labeled row's score may be read from the score the router gave it (0 for a
    /// source of exact samples; a histogram source, its bucket width).
    pub score_tolerance: f64,
}

/// The [`MetricsSource`] contract, checked on `source` reading `router`'s traffic. The
/// caller installs `router`'s routes just before (a fresh step: no request yet, as a
/// controller starts one) and wires `source` to see what `router` serves (its own exact
/// samples, or a metrics backend scraping the registry the router's metrics are in). The
/// suite sends known traffic: to each variant of the routes, forced by name, a few dozen
/// requests of one to three rows, labels posted for every other answered one; then awaits
/// `settle` (for a source that sees traffic late, e.g. after a scrape; `std::future::ready(())`
/// otherwise) and takes one snapshot of the step. What it checks, per variant of the routes:
///
/// - the snapshot has one entry per variant, with the route's version and threshold;
/// - requests, rows scored, errors and rejections are exactly those sent (errors and
///   rejections as the router itself counted them: the model decides which a failure is);
/// - the labeled rows are those posted: as many of each class, each score within
///   `score_tolerance` of the score the router answered;
/// - with requests, a p50 and a p99 latency, finite, `0 <= p50 <= p99`.
///
/// Counts are checked exactly, so a source whose counts are estimates (a real Prometheus
/// extrapolates `increase()` to the window's edges) does not run this suite as is; the
/// workspace runs it on `InProcess` and on `PrometheusSource` against a Prometheus that
/// answers exact increases. Panics, naming the variant, the property and the values, on the
/// first violation.
///
/// A host runs it on its own source (here one that reads the router, as `InProcess` does):
///
/// ```
/// use std::sync::Arc;
///
/// use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor};
/// use mlops_serve::rollout::MetricsSource;
/// use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
/// use mlops_serve::step_stats::StepSnapshot;
/// use mlops_serve::testing::{self, MetricsStep};
/// use ndarray::array;
///
/// struct HostMetrics;
///
/// #[async_trait::async_trait]
/// impl MetricsSource for HostMetrics {
///     async fn snapshot(
///         &self,
///         _model: &str,
///         router: &Router,
///         _start: f64,
///         _now: f64,
///     ) -> mlops_serve::Result<StepSnapshot> {
///         Ok(router.snapshot())
///     }
/// }
///
/// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
/// let artifact = ModelArtifact::new(spec, vec![(array![[1.5_f32]], array![0.0_f32])]).unwrap();
/// let model: Arc<dyn Predictor> = Arc::new(MlpModel::new(&artifact).unwrap());
/// let routes = Routes::single(Variant::new("stable", Some(1), model));
/// let router = Router::new("fraud", routes, RouterOptions::default()).unwrap();
/// let rows = array![[-1.0_f32], [0.0], [0.5], [2.0]];
/// let step = MetricsStep {
///     rows: rows.view(),
///     step_start_unix: 0.0,
///     now_unix: 60.0,
///     score_tolerance: 0.0,
/// };
/// futures::executor::block_on(testing::metrics_source(
///     &HostMetrics,
///     &router,
///     step,
///     std::future::ready(()),
/// ));
/// ```
pub async fn metrics_source(
    source: &dyn MetricsSource,
    router: &Router,
    step: MetricsStep<'_>,
    settle: impl Future<Output = ()>,
) {
    const S: &str = "MetricsSource";
    let rows = step.rows;
    assert!(
        rows.nrows() >= 3 && rows.iter().all(|v| v.is_finite()),
        "MetricsSource suite: {} rows given (finite: {}); the suite needs at least three finite rows",
        rows.nrows(),
        rows.iter().all(|v| v.is_finite())
    );
    let fresh = router.snapshot();
    assert!(
        fresh
            .variants
            .iter()
            .all(|v| v.requests == 0 && v.labeled() == 0),
        "MetricsSource suite: the router already has traffic in this step; install its routes just before the suite"
    );
    let routes = router.routes();

    /// What the suite sent one variant.
    #[derive(Default)]
    struct Sent {
        requests: u64,
        rows: u64,
        failed: u64,
        labeled: [Vec<f64>; 2],
    }
    let mut sent: Vec<Sent> = Vec::new();
    for (k, variant) in routes.variants.iter().enumerate() {
        let mut s = Sent::default();
        for i in 0..(24 + 5 * k) {
            let n = (1 + i % 3).min(rows.nrows());
            let start = (i * 2) % (rows.nrows() - n + 1);
            let x = rows.slice_axis(Axis(0), Slice::from(start..start + n));
            let id = format!("conformance-{k}-{i}");
            let request = Request {
                key: None,
                force: Some(&variant.name),
                request_id: Some(&id),
                group: None,
            };
            let mut out = vec![0.0_f32; n];
            s.requests += 1;
            if router.route(&request, x, &mut out).is_err() {
                s.failed += 1;
                continue;
            }
            s.rows += n as u64;
            if i % 2 == 0 && out.iter().all(|p| p.is_finite()) {
                let labels: Vec<f64> = (0..n).map(|r| ((i + r) % 2) as f64).collect();
                let joined = ok(S, "posting labels", router.feedback(&id, &labels));
                assert!(
                    joined,
                    "MetricsSource suite: the router did not join the labels of {id:?} (its label join is too small for the suite)"
                );
                for (&label, &p) in labels.iter().zip(&out) {
                    s.labeled[usize::from(label == 1.0)].push(f64::from(p));
                }
            }
        }
        sent.push(s);
    }
    settle.await;
    let snapshot = ok(
        S,
        "snapshot",
        source
            .snapshot(router.model(), router, step.step_start_unix, step.now_unix)
            .await,
    );
    let counted = router.snapshot();
    assert_eq!(
        snapshot.variants.len(),
        routes.variants.len(),
        "MetricsSource suite: the snapshot has {} variants ({:?}); the routes have {}",
        snapshot.variants.len(),
        snapshot
            .variants
            .iter()
            .map(|v| &v.variant)
            .collect::<Vec<_>>(),
        routes.variants.len()
    );
    for (variant, s) in routes.variants.iter().zip(&sent) {
        let name = &variant.name;
        let got = snapshot.get(name).unwrap_or_else(|| {
            panic!("MetricsSource suite: the snapshot has no entry for variant {name:?}")
        });
        let own = counted.get(name).unwrap_or_else(|| {
            panic!("MetricsSource suite: the router's own snapshot has no variant {name:?}")
        });
        let threshold = variant.predictor.threshold();
        assert!(
            got.version == variant.version && got.threshold == threshold,
            "MetricsSource suite: {name}: version {:?} and threshold {}, expected the route's {:?} and {threshold}",
            got.version,
            got.threshold,
            variant.version
        );
        for (what, value, expected) in [
            ("requests", got.requests, s.requests),
            ("rows", got.rows, s.rows),
            ("errors + rejected", got.errors + got.rejected, s.failed),
            ("errors", got.errors, own.errors),
            ("rejected", got.rejected, own.rejected),
        ] {
            assert_eq!(
                value, expected,
                "MetricsSource suite: {name}: {what} read as {value}, the suite sent {expected}"
            );
        }
        assert_eq!(
            got.labels.len(),
            got.label_scores.len(),
            "MetricsSource suite: {name}: {} labels beside {} label scores",
            got.labels.len(),
            got.label_scores.len()
        );
        for class in [false, true] {
            let mut read: Vec<f64> = got
                .labels
                .iter()
                .zip(&got.label_scores)
                .filter(|(l, _)| **l == class)
                .map(|(_, p)| *p)
                .collect();
            let mut posted = s.labeled[usize::from(class)].clone();
            read.sort_by(f64::total_cmp);
            posted.sort_by(f64::total_cmp);
            assert_eq!(
                read.len(),
                posted.len(),
                "MetricsSource suite: {name}: {} labeled rows of class {class} read, {} posted",
                read.len(),
                posted.len()
            );
            for (r, p) in read.iter().zip(&posted) {
                assert!(
                    (r - p).abs() <= step.score_tolerance,
                    "MetricsSource suite: {name}: a labeled row of class {class} scored {p} was read as {r} (tolerance {})",
                    step.score_tolerance
                );
            }
        }
        if s.requests > 0 {
            let (p50, p99) = (got.latency_p50_ms, got.latency_p99_ms);
            assert!(
                matches!((p50, p99), (Some(a), Some(b)) if a.is_finite() && b.is_finite() && 0.0 <= a && a <= b),
                "MetricsSource suite: {name}: latency p50 {p50:?} ms and p99 {p99:?} ms after {} requests; expected 0 <= p50 <= p99",
                s.requests
            );
        }
    }
}
