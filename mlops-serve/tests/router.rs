//! The router: sticky buckets while ramping (100k keys, none ever moves back), spread and
//! A/B shares, forced variants, a shadow that errors, panics or stalls never changing a
//! primary response, weight switches under concurrent requests losing nothing, the label
//! join's bounds, and routes refused with the field named.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use crate::support;

use mlops_core::clock::ManualClock;
use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
use mlops_serve::router::{
    bucket_of, Request, Router, RouterConfig, RouterOptions, Routes, ShadowRoute, Variant,
};
use mlops_serve::step_stats::StatsConfig;
use mlops_serve::telemetry::ServeMetrics;
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::{array, Array2, ArrayView2};

/// `sigmoid(w * x)`: each variant's weight makes its outputs recognizable.
use support::sigmoid_model as model;

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn canary_routes(percent: f64) -> Routes {
    Routes {
        variants: vec![
            Variant::new("canary", Some(2), model(2.0)),
            Variant::new("stable", Some(1), model(1.0)),
        ],
        weights: vec![
            ("canary".into(), percent),
            ("stable".into(), 100.0 - percent),
        ],
        shadow: None,
    }
}

fn one_row() -> Array2<f32> {
    array![[0.7_f32]]
}

#[test]
fn no_key_ever_moves_back_while_ramping_up_and_rollback_reverses_the_order() {
    let router = Router::new("fraud", canary_routes(0.0), RouterOptions::default()).unwrap();
    let keys: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
    let mut on_canary = vec![false; keys.len()];
    let mut out = [0.0_f32];
    let mut history = Vec::new();
    for percent in [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 99.99, 100.0] {
        router.install(canary_routes(percent)).unwrap();
        let mut n = 0usize;
        for (i, key) in keys.iter().enumerate() {
            let routed = router
                .route(&Request::keyed(key), one_row().view(), &mut out)
                .unwrap();
            let canary = &*routed.variant == "canary";
            assert!(
                !on_canary[i] || canary,
                "{key} moved back to stable at {percent}%"
            );
            on_canary[i] = canary;
            n += usize::from(canary);
        }
        // Binomial spread of 100k keys: within 5 standard deviations of the weight.
        let expected = percent / 100.0 * keys.len() as f64;
        let sd = (keys.len() as f64 * percent / 100.0 * (1.0 - percent / 100.0)).sqrt();
        assert!(
            (n as f64 - expected).abs() <= 5.0 * sd + 1.0,
            "{percent}%: {n} keys on canary"
        );
        history.push(on_canary.clone());
    }
    // Rolling back from 75% to 25% returns exactly the keys that joined after 25%.
    router.install(canary_routes(25.0)).unwrap();
    for (i, key) in keys.iter().enumerate() {
        let canary = &*router
            .route(&Request::keyed(key), one_row().view(), &mut out)
            .unwrap()
            .variant
            == "canary";
        assert_eq!(canary, history[3][i], "{key}");
    }
    // The canary owns the lowest buckets.
    let canary_key = keys.iter().find(|k| bucket_of(k) < 2500).unwrap();
    assert_eq!(
        &*router
            .route(&Request::keyed(canary_key), one_row().view(), &mut out)
            .unwrap()
            .variant,
        "canary"
    );
}

#[test]
fn unkeyed_requests_spread_by_weight_and_ab_arms_get_their_shares() {
    let routes = Routes {
        variants: vec![
            Variant::new("a", None, model(1.0)),
            Variant::new("b", None, model(2.0)),
            Variant::new("c", None, model(3.0)),
        ],
        weights: vec![("a".into(), 20.0), ("b".into(), 30.0), ("c".into(), 50.0)],
        shadow: None,
    };
    let router = Router::new("ab", routes, RouterOptions::default()).unwrap();
    let mut out = [0.0_f32];
    let n = 60_000;
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let r = router
            .route(&Request::default(), one_row().view(), &mut out)
            .unwrap();
        *counts.entry(r.variant.to_string()).or_insert(0usize) += 1;
    }
    for (arm, share) in [("a", 0.2), ("b", 0.3), ("c", 0.5)] {
        let sd = (n as f64 * share * (1.0 - share)).sqrt();
        let got = counts[arm] as f64;
        assert!((got - n as f64 * share).abs() < 5.0 * sd, "{arm}: {got}");
    }
    let snapshot = router.snapshot();
    assert_eq!(
        snapshot.variants.iter().map(|v| v.requests).sum::<u64>(),
        n as u64
    );
}

#[test]
fn a_forced_variant_wins_over_weights_and_an_unknown_one_is_refused() {
    let router = Router::new("fraud", canary_routes(0.0), RouterOptions::default()).unwrap();
    let mut out = [0.0_f32];
    let r = router
        .route(
            &Request {
                force: Some("canary"),
                ..Request::keyed("user-1")
            },
            one_row().view(),
            &mut out,
        )
        .unwrap();
    assert_eq!((&*r.variant, r.version), ("canary", Some(2)));
    assert!((out[0] - sigmoid(1.4)).abs() < 1e-6);
    let e = router
        .route(
            &Request {
                force: Some("canary2"),
                ..Request::default()
            },
            one_row().view(),
            &mut out,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("forced variant") && e.contains("canary2") && e.contains("stable"),
        "{e}"
    );
    // Bad input is the caller's: it counts against no variant.
    let wide = Array2::<f32>::zeros((1, 3));
    assert!(router
        .route(&Request::default(), wide.view(), &mut out)
        .is_err());
    assert!(router
        .snapshot()
        .variants
        .iter()
        .all(|v| v.requests == 1 || v.variant == "stable"));
    assert_eq!(router.snapshot().get("stable").unwrap().requests, 0);
}

/// A shadow model that misbehaves as told.
struct Misbehaving {
    names: Vec<String>,
    mode: &'static str,
    release: Arc<AtomicBool>,
}

impl Predictor for Misbehaving {
    fn feature_names(&self) -> &[String] {
        &self.names
    }
    fn predict_proba_into(
        &self,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> mlops_core::Result<()> {
        match self.mode {
            "error" => Err(mlops_core::Error::Predictor {
                message: "shadow broke".into(),
            }),
            "panic" => panic!("shadow panicked on purpose"),
            "stall" => {
                while !self.release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                out.fill(0.5);
                Ok(())
            }
            _ => {
                let _ = x;
                out.fill(0.999);
                Ok(())
            }
        }
    }
}

#[test]
fn a_shadow_that_errors_panics_or_stalls_never_changes_a_primary_response() {
    for mode in ["error", "panic", "stall", "disagree"] {
        let release = Arc::new(AtomicBool::new(false));
        let shadow = Arc::new(Misbehaving {
            names: vec!["x".into()],
            mode,
            release: release.clone(),
        });
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let routes = Routes {
            variants: vec![
                Variant::new("stable", Some(1), model(1.0)),
                Variant::new("shadow", Some(9), shadow),
            ],
            weights: vec![("stable".into(), 100.0)],
            shadow: Some(ShadowRoute {
                variant: "shadow".into(),
                percent: 100.0,
            }),
        };
        let options = RouterOptions {
            config: RouterConfig {
                shadow_queue: 8,
                ..RouterConfig::default()
            }
            .check()
            .unwrap(),
            metrics,
            ..RouterOptions::default()
        };
        let router = Router::new("fraud", routes, options).unwrap();
        let mut out = [0.0_f32];
        for i in 0..500 {
            let x = array![[i as f32 / 100.0 - 2.5]];
            let r = router
                .route(&Request::default(), x.view(), &mut out)
                .unwrap();
            assert_eq!(&*r.variant, "stable", "{mode}");
            assert!(
                (out[0] - sigmoid(x[[0, 0]])).abs() < 1e-6,
                "{mode}: row {i}"
            );
        }
        if mode != "stall" {
            while router.shadow_backlog() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let text = mlops_core::exposition::classic_text(&registry).unwrap();
        let count = |reason: &str| -> f64 {
            let key =
                format!("mlops_serve_shadow_dropped_total{{model=\"fraud\",reason=\"{reason}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap()
                .parse()
                .unwrap()
        };
        let shadow_stats = router.snapshot().get("shadow").unwrap().clone();
        match mode {
            "error" => assert_eq!(count("error") + count("queue_full"), 500.0, "{text}"),
            "panic" => assert_eq!(count("panic") + count("queue_full"), 500.0, "{text}"),
            // Stalled: at most the queue and the one being scored are held; the rest dropped.
            "stall" => {
                assert!(count("queue_full") >= 500.0 - 9.0, "{text}");
                release.store(true, Ordering::SeqCst);
            }
            _ => {
                // A shadow that says "positive" to everything agrees with the primary only on
                // the rows the primary calls positive (x >= 0: 250 of 500).
                assert_eq!(count("error") + count("panic"), 0.0);
                let compared = shadow_stats.shadow_compared;
                assert_eq!(compared + count("queue_full") as u64, 500);
                assert!(shadow_stats.shadow_agreed < compared, "{shadow_stats:?}");
            }
        }
    }
}

#[test]
fn weight_switches_under_concurrent_requests_lose_nothing() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let options = RouterOptions {
        metrics,
        ..RouterOptions::default()
    };
    let router = Arc::new(Router::new("fraud", canary_routes(0.0), options).unwrap());
    let threads = 4;
    let per_thread = 20_000;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (router, barrier, done) = (router.clone(), barrier.clone(), done.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = [0.0_f32];
                for i in 0..per_thread {
                    let x = array![[0.5_f32]];
                    let key = format!("{t}-{i}");
                    let r = router
                        .route(&Request::keyed(&key), x.view(), &mut out)
                        .unwrap();
                    // The answer is the answering variant's own: never a mix of two tables.
                    let w = if &*r.variant == "canary" { 2.0 } else { 1.0 };
                    assert!(
                        (out[0] - sigmoid(0.5 * w)).abs() < 1e-6,
                        "{} answered {}",
                        r.variant,
                        out[0]
                    );
                    assert_eq!(r.version, Some(if w == 2.0 { 2 } else { 1 }));
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    barrier.wait();
    let mut switches = 0;
    while done.load(Ordering::SeqCst) < threads as u64 {
        router
            .install(canary_routes([0.0, 10.0, 50.0, 100.0][switches % 4]))
            .unwrap();
        switches += 1;
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(switches > 10, "switches {switches}");
    // Every request counted once, by exactly one variant.
    let text = mlops_core::exposition::classic_text(&registry).unwrap();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("mlops_serve_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, (threads * per_thread) as f64, "{text}");
}

#[test]
fn labels_join_by_request_id_within_capacity_and_time_to_live() {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let options = RouterOptions {
        config: RouterConfig {
            stats: StatsConfig {
                label_join_capacity: 3,
                label_ttl_seconds: 60.0,
                ..StatsConfig::default()
            },
            ..RouterConfig::default()
        }
        .check()
        .unwrap(),
        metrics,
        clock: clock.clone(),
        ..RouterOptions::default()
    };
    let router = Router::new("fraud", canary_routes(0.0), options).unwrap();
    let mut out = [0.0_f32; 2];
    let batch = array![[1.0_f32], [-1.0]];
    let send = |id: &str, out: &mut [f32]| {
        router
            .route(
                &Request {
                    request_id: Some(id),
                    group: None,
                    ..Request::default()
                },
                batch.view(),
                out,
            )
            .unwrap();
    };
    send("a", &mut out);
    assert!(router.feedback("a", &[1.0, 0.0]).unwrap());
    assert!(!router.feedback("a", &[1.0, 0.0]).unwrap(), "labeled twice");
    assert!(!router.feedback("never", &[1.0]).unwrap());
    // Wrong labels: named, and nothing joined.
    send("b", &mut out);
    let e = router.feedback("c", &[0.5]).unwrap_err().to_string();
    assert!(e.contains("labels[0]") && e.contains("0.5"), "{e}");
    let e = router.feedback("b", &[1.0]).unwrap_err().to_string();
    assert!(e.contains("2 labels"), "{e}");
    // The refused post left b waiting (a corrected one could still join).
    assert_eq!(router.awaiting_labels(), 1);
    let snapshot = router.snapshot();
    let stable = snapshot.get("stable").unwrap();
    assert_eq!(stable.labels, vec![true, false]);
    // Capacity 3: past it the join keeps a uniform sample of requests (by a hash of their
    // ids), not the newest: what it drops is counted `evicted`, their labels `sampled`.
    for id in ["d", "e", "f", "g"] {
        send(id, &mut out);
        assert!(router.awaiting_labels() <= 3);
    }
    let kept = router.awaiting_labels();
    assert!(kept >= 1, "{kept}");
    assert!(router.label_sample_share() < 1.0);
    let joined = ["b", "d", "e", "f", "g"]
        .iter()
        .filter(|id| router.feedback(id, &[1.0, 1.0]).unwrap())
        .count();
    assert_eq!(joined, kept);
    assert_eq!(router.awaiting_labels(), 0);
    // Time-to-live: a request kept in the sample, labeled a minute later, has expired.
    let late = (0..1_000)
        .map(|i| format!("late{i}"))
        .find(|id| {
            send(id, &mut out);
            router.awaiting_labels() == 1
        })
        .unwrap();
    clock.advance(Duration::from_secs(61));
    assert!(!router.feedback(&late, &[1.0, 1.0]).unwrap(), "expired");
    assert_eq!(router.awaiting_labels(), 0);
    let text = mlops_core::exposition::classic_text(&registry).unwrap();
    let count = |reason: &str| {
        let prefix =
            format!("mlops_serve_label_join_dropped_total{{model=\"fraud\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{reason} not in {text}"))
    };
    // Unknown: a's second post, "never", and the expired request's labels.
    assert_eq!(count("unknown"), 3.0);
    assert_eq!(count("sampled"), (5 - joined) as f64);
    assert_eq!(count("expired"), 1.0);
    assert!(count("evicted") >= 1.0);
    // Live accuracy from the joined labels: sigmoid(1) >= 0.5 is 1 (right), sigmoid(-1) is 0
    // (right).
    assert!(
        text.contains("mlops_serve_live_accuracy{model=\"fraud\",variant=\"stable\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mlops_serve_live_roc_auc{model=\"fraud\",variant=\"canary\"} NaN"),
        "{text}"
    );
}

#[test]
fn routes_are_checked_with_the_field_named() {
    let bad = |routes: Routes, field: &str| {
        let e = Router::new("fraud", routes, RouterOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
    };
    let mut r = canary_routes(10.0);
    r.weights[1].1 = 80.0;
    bad(r, "Routes.weights (sum)");
    bad(canary_routes(10.005), "Routes.weights[0]");
    bad(canary_routes(f64::NAN), "Routes.weights[0]");
    let mut r = canary_routes(10.0);
    r.variants[1].name = "canary".into();
    bad(r, "Routes.variants[1].name");
    let mut r = canary_routes(10.0);
    r.weights[0].0 = "nope".into();
    bad(r, "Routes.weights[0]");
    let mut r = canary_routes(10.0);
    r.shadow = Some(ShadowRoute {
        variant: "canary".into(),
        percent: 5.0,
    });
    bad(r, "Routes.shadow.variant");
    let mut r = canary_routes(10.0);
    let spec = ModelSpec::new(
        vec!["y".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    let other = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])]).unwrap();
    r.variants[1].predictor =
        Arc::new(CompiledModel::compile(&other, NonFinitePolicy::Nan).unwrap());
    bad(r, "Routes.variants[1] (stable) features");
    // A router is built from a checked config only: the check names the field.
    let e = RouterConfig {
        shadow_queue: 0,
        ..RouterConfig::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(e.contains("shadow_queue"), "{e}");
}

#[test]
fn nan_input_neither_counts_as_a_model_error_nor_poisons_the_step() {
    let compile = |policy| -> Arc<dyn Predictor> {
        let spec = ModelSpec::new(
            vec!["x".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let a = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])]).unwrap();
        Arc::new(CompiledModel::compile(&a, policy).unwrap())
    };
    let routes = Routes {
        variants: vec![
            Variant::new("stable", Some(1), compile(NonFinitePolicy::Nan)),
            Variant::new("strict", Some(2), compile(NonFinitePolicy::Reject)),
        ],
        weights: vec![("stable".into(), 100.0)],
        shadow: None,
    };
    let router = Router::new("fraud", routes, RouterOptions::default()).unwrap();
    let mut out = [0.0_f32; 2];
    let with_nan = array![[f32::NAN], [2.0]];
    router
        .route(
            &Request {
                request_id: Some("a"),
                group: None,
                ..Request::default()
            },
            with_nan.view(),
            &mut out,
        )
        .unwrap();
    assert!(out[0].is_nan() && out[1] > 0.5, "{out:?}");
    assert!(router.feedback("a", &[1.0, 1.0]).unwrap());
    for i in 0..20 {
        let x = array![[i as f32 / 5.0 - 2.0], [0.0]];
        let id = format!("r{i}");
        router
            .route(
                &Request {
                    request_id: Some(&id),
                    group: None,
                    ..Request::default()
                },
                x.view(),
                &mut out,
            )
            .unwrap();
        router
            .feedback(&id, &[f64::from(u8::from(i >= 10)), 0.0])
            .unwrap();
    }
    // The model refusing the input is the caller's problem, not the variant's error.
    let forced = Request {
        force: Some("strict"),
        ..Request::default()
    };
    let e = router
        .route(&forced, with_nan.view(), &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 0"), "{e}");
    let snapshot = router.snapshot();
    let stable = snapshot.get("stable").unwrap();
    assert_eq!(
        (stable.requests, stable.errors, stable.unscored_rows),
        (21, 0, 1)
    );
    assert!(stable.scores.iter().all(|s| s.is_finite()) && stable.scores.len() == 41);
    // The unscored row's label was dropped; the rest make a defined AUC.
    assert_eq!(stable.labeled(), 41);
    assert!(stable.label_scores.iter().all(|s| s.is_finite()));
    let strict = snapshot.get("strict").unwrap();
    assert_eq!((strict.requests, strict.errors, strict.rejected), (1, 0, 1));
}

#[test]
fn labels_of_a_replaced_version_never_judge_its_successor() {
    let router = Router::new("fraud", canary_routes(100.0), RouterOptions::default()).unwrap();
    let mut out = [0.0_f32];
    router
        .route(
            &Request {
                request_id: Some("old"),
                group: None,
                ..Request::default()
            },
            one_row().view(),
            &mut out,
        )
        .unwrap();
    // A new candidate under the same variant name.
    let mut next = canary_routes(100.0);
    next.variants[0].version = Some(3);
    router.install(next).unwrap();
    assert!(
        router.feedback("old", &[1.0]).unwrap(),
        "the request was waiting"
    );
    assert_eq!(router.snapshot().get("canary").unwrap().labeled(), 0);
    // The same version in a new step keeps its labels.
    router
        .route(
            &Request {
                request_id: Some("new"),
                group: None,
                ..Request::default()
            },
            one_row().view(),
            &mut out,
        )
        .unwrap();
    router
        .install({
            let mut r = canary_routes(100.0);
            r.variants[0].version = Some(3);
            r
        })
        .unwrap();
    assert!(router.feedback("new", &[1.0]).unwrap());
    assert_eq!(router.snapshot().get("canary").unwrap().labeled(), 1);
}

/// Issue 22 item 24: the sticky hash's buckets are part of the contract (a change of the
/// hash or its seed would move every user silently). The buckets are `xxh3_64(key) mod
/// 10,000` as the reference C implementation computes them (Python's `xxhash` 3.x,
/// `xxhash.xxh3_64_intdigest(key.encode()) % 10000`).
#[test]
fn sticky_buckets_are_the_reference_xxh3_buckets() {
    for (key, bucket) in [
        ("user-42", 2621),
        ("user-0", 9328),
        ("user-9999", 6532),
        ("alice", 8080),
        ("", 3138),
        ("customer:918273", 762),
        ("ü-unicode", 6097),
    ] {
        assert_eq!(bucket_of(key), bucket, "{key:?}");
    }
    // And a request goes to the arm owning its bucket: "user-42" (2621) is on the canary at
    // 26.22% and on stable at 26.21%.
    let router = Router::new("fraud", canary_routes(26.22), RouterOptions::default()).unwrap();
    let mut out = [0.0_f32];
    let on = |router: &Router, out: &mut [f32]| {
        router
            .route(&Request::keyed("user-42"), one_row().view(), out)
            .unwrap()
            .variant
    };
    assert_eq!(&*on(&router, &mut out), "canary");
    router.install(canary_routes(26.21)).unwrap();
    assert_eq!(&*on(&router, &mut out), "stable");
}

/// A route table as the test knows it: each variant's name, version and weight `w` (it
/// answers `sigmoid(w x)`), and the arms in bucket order with their percents.
struct Table {
    variants: Vec<(&'static str, u64, f32)>,
    arms: Vec<(&'static str, f64)>,
}

impl Table {
    fn routes(&self) -> Routes {
        Routes {
            variants: self
                .variants
                .iter()
                .map(|&(name, version, w)| Variant::new(name, Some(version), model(w)))
                .collect(),
            weights: self.arms.iter().map(|&(n, p)| (n.to_string(), p)).collect(),
            shadow: None,
        }
    }

    /// Whether this table would have answered `key`'s request with `variant`, `version` and
    /// `out` for input `x`.
    fn answers(&self, key: &str, x: f32, variant: &str, version: Option<u64>, out: f32) -> bool {
        let bucket = f64::from(bucket_of(key));
        let mut upper = 0.0;
        let arm = self
            .arms
            .iter()
            .find(|(_, p)| {
                upper += p * 100.0;
                bucket < upper
            })
            .map(|(n, _)| *n);
        let Some(&(name, v, w)) = self.variants.iter().find(|(n, _, _)| Some(*n) == arm) else {
            return false;
        };
        name == variant && Some(v) == version && (out - sigmoid(w * x)).abs() < 1e-6
    }
}

/// Issue 22 item 16: the switch test above alternates tables with the same variants in the
/// same order, so a router that re-loaded the table between choosing the arm and scoring
/// passed it. Here the tables differ in names, versions, models and order, and each answer
/// must be wholly one table's: the arm its key's bucket owns there, that arm's version, and
/// that arm's model's output. The keys are long (256 KiB), so hashing one — between reading
/// the table and choosing the arm — takes longer than a switch: a router reading the table
/// twice would read two tables in most requests.
#[test]
fn each_answer_during_switches_between_different_tables_is_one_tables() {
    let tables = Arc::new([
        Table {
            variants: vec![("p", 11, 1.0), ("q", 12, 2.0)],
            arms: vec![("p", 50.0), ("q", 50.0)],
        },
        Table {
            variants: vec![("r", 21, -1.0), ("q", 22, 3.0), ("p", 23, 0.5)],
            arms: vec![("q", 30.0), ("r", 30.0), ("p", 40.0)],
        },
        Table {
            variants: vec![("s", 31, -2.0)],
            arms: vec![("s", 100.0)],
        },
    ]);
    let routes: Vec<Routes> = tables.iter().map(Table::routes).collect();
    let router =
        Arc::new(Router::new("fraud", routes[0].clone(), RouterOptions::default()).unwrap());
    let threads = 4;
    let per_thread = 1_000;
    let pad = Arc::new("k".repeat(256 * 1024));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let pad = pad.clone();
            let (router, barrier, tables) = (router.clone(), barrier.clone(), tables.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = [0.0_f32];
                for i in 0..per_thread {
                    let x = 0.25 + (i % 7) as f32 / 8.0;
                    let key = format!("{t}-{i}-{pad}");
                    let r = router
                        .route(&Request::keyed(&key), array![[x]].view(), &mut out)
                        .unwrap();
                    assert!(
                        tables
                            .iter()
                            .any(|table| table.answers(&key, x, &r.variant, r.version, out[0])),
                        "{t}-{i}: {} v{:?} answered {} for x = {x}: no table answers that",
                        r.variant,
                        r.version,
                        out[0]
                    );
                }
            })
        })
        .collect();
    barrier.wait();
    let mut switches = 0;
    // Until every worker ended, answered or failed (a failed one never counts as done).
    while !workers.iter().all(|w| w.is_finished()) {
        router
            .install(routes[switches % routes.len()].clone())
            .unwrap();
        switches += 1;
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(switches > 10, "switches {switches}");
}

/// A model that answers its input as the probability (`x` in [0, 1]).
struct Echo(Vec<String>);

impl Predictor for Echo {
    fn feature_names(&self) -> &[String] {
        &self.0
    }
    fn predict_proba_into(
        &self,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> mlops_core::Result<()> {
        for (o, v) in out.iter_mut().zip(x.column(0)) {
            *o = *v;
        }
        Ok(())
    }
}

fn echo_router(stats: StatsConfig, metrics: ServeMetrics) -> Router {
    let echo: Arc<dyn Predictor> = Arc::new(Echo(vec!["x".into()]));
    Router::new(
        "fraud",
        Routes::single(Variant::new("stable", Some(1), echo)),
        RouterOptions {
            config: RouterConfig {
                stats,
                ..RouterConfig::default()
            }
            .check()
            .unwrap(),
            metrics,
            ..RouterOptions::default()
        },
    )
    .unwrap()
}

/// Issue 22 item 21: the prediction sample a drift check reads is a uniform sample of the
/// whole step, not its latest (or first) predictions. 50,000 predictions, the i-th equal to
/// (i + 0.5) / 50,000, into a reservoir of 1,000: the sample's values fall evenly in ten
/// deciles (Pearson's chi-square, 9 degrees of freedom, below 27.88, its 0.1% critical value;
/// the sample is deterministic, so this never flakes). A reservoir keeping the latest 1,000
/// puts them all in the last decile (chi-square 9,000).
#[test]
fn the_prediction_sample_is_uniform_over_the_step() {
    let n = 50_000;
    let capacity = 1000;
    let router = echo_router(
        StatsConfig {
            score_reservoir: capacity,
            ..StatsConfig::default()
        },
        ServeMetrics::unregistered(),
    );
    let mut out = [0.0_f32];
    for i in 0..n {
        let x = (i as f32 + 0.5) / n as f32;
        router
            .route(&Request::default(), array![[x]].view(), &mut out)
            .unwrap();
    }
    let stable = router.snapshot().get("stable").unwrap().clone();
    assert_eq!((stable.requests, stable.rows), (n as u64, n as u64));
    assert_eq!(stable.scores.len(), capacity, "bounded at its capacity");
    let mut deciles = [0usize; 10];
    for &s in &stable.scores {
        deciles[((s * 10.0) as usize).min(9)] += 1;
    }
    let expected = capacity as f64 / 10.0;
    let chi2: f64 = deciles
        .iter()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum();
    assert!(
        chi2 < 27.88,
        "chi-square {chi2:.1} over deciles {deciles:?}"
    );
    // And no value twice: a sample of distinct predictions, not repeats of one.
    let mut values = stable.scores.clone();
    values.sort_by(f64::total_cmp);
    values.dedup();
    assert_eq!(values.len(), capacity);
}

fn exported(registry: &prometheus_client::registry::Registry, line: &str) -> f64 {
    let text = mlops_core::exposition::classic_text(registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Issue 22 item 21: the labeled rows a step keeps are bounded (`labeled_capacity`); the
/// rest are dropped and counted, in the step's snapshot and in Prometheus; the label join
/// waits for at most `label_join_capacity` requests, a uniform sample past it (issue 25),
/// what it drops counted.
#[test]
fn labeled_rows_and_waiting_requests_are_bounded_and_their_drops_counted() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let router = echo_router(
        StatsConfig {
            labeled_capacity: 2,
            label_join_capacity: 8,
            ..StatsConfig::default()
        },
        metrics,
    );
    let mut out = [0.0_f32; 2];
    let batch = array![[0.9_f32], [0.1]];
    // 20 requests of 2 rows: at most 8 wait.
    for i in 0..20 {
        let id = format!("r{i}");
        router
            .route(
                &Request {
                    request_id: Some(&id),
                    group: None,
                    ..Request::default()
                },
                batch.view(),
                &mut out,
            )
            .unwrap();
        assert!(router.awaiting_labels() <= 8);
    }
    // Three quarters of nine kept at the first shrink, then what the sample lets in.
    let kept = router.awaiting_labels();
    assert!(kept >= 2, "{kept}");
    let reason = |r: &str| {
        format!("mlops_serve_label_join_dropped_total{{model=\"fraud\",reason=\"{r}\"}} ")
    };
    assert!(exported(&registry, &reason("evicted")) >= 1.0);
    // Every request gets its labels: the kept ones join, 2 rows each, of which the step
    // keeps 2 (1 request); the others were outside the sample.
    let joined = (0..20)
        .filter(|i| router.feedback(&format!("r{i}"), &[1.0, 0.0]).unwrap())
        .count();
    assert_eq!(joined, kept);
    assert_eq!(exported(&registry, &reason("sampled")), (20 - kept) as f64);
    let stable = router.snapshot().get("stable").unwrap().clone();
    assert_eq!(stable.labeled(), 2, "bounded at labeled_capacity");
    assert_eq!(stable.label_scores.len(), 2);
    assert_eq!(stable.labeled_dropped, 2 * kept as u64 - 2);
    assert_eq!(exported(&registry, &reason("full")), (2 * kept - 2) as f64);
    assert_eq!(router.awaiting_labels(), 0);
}

/// Issue 25: past its capacity the label join samples requests uniformly, the same share for
/// every variant (its hash is not the router's), so labels an hour late at a traffic the join
/// cannot hold whole still reach both sides of a canary in proportion; and the share comes
/// back once the traffic falls.
#[test]
fn a_full_label_join_samples_every_variant_alike_and_recovers() {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
    ));
    let options = RouterOptions {
        config: RouterConfig {
            stats: StatsConfig {
                label_join_capacity: 2_000,
                labeled_capacity: 1_000_000,
                label_ttl_seconds: 3_600.0,
                ..StatsConfig::default()
            },
            ..RouterConfig::default()
        }
        .check()
        .unwrap(),
        clock: clock.clone(),
        ..RouterOptions::default()
    };
    let router = Router::new("fraud", canary_routes(50.0), options).unwrap();
    let mut out = [0.0_f32; 1];
    let row = array![[1.0_f32]];
    let mut served = std::collections::HashMap::<String, Vec<String>>::new();
    // 20,000 requests in 20 minutes, sticky by their own id.
    for i in 0..20_000 {
        let id = format!("req-{i}");
        let routed = router
            .route(
                &Request {
                    request_id: Some(&id),
                    group: None,
                    key: Some(&id),
                    ..Request::default()
                },
                row.view(),
                &mut out,
            )
            .unwrap();
        served
            .entry(routed.variant.to_string())
            .or_default()
            .push(id);
        clock.advance(Duration::from_millis(60));
    }
    let share = router.label_sample_share();
    let kept = router.awaiting_labels();
    assert!(kept <= 2_000 && kept > 1_000, "{kept}");
    // The join's seed is drawn per process, so the share varies from run to run; the
    // requests it keeps are those under its threshold, about share × 20,000 of them.
    assert!((0.03..0.15).contains(&share), "{share}");
    let expected = share * 20_000.0;
    assert!(
        (kept as f64 - expected).abs() < 5.0 * expected.sqrt() + 1.0,
        "{kept} kept at share {share}"
    );
    // Every label comes back: each variant joins about the share of what it served.
    for (variant, ids) in &served {
        let joined = ids
            .iter()
            .filter(|id| router.feedback(id, &[1.0]).unwrap())
            .count() as f64;
        let expected = share * ids.len() as f64;
        // Binomial: five standard deviations.
        let sd = (expected * (1.0 - share)).sqrt();
        assert!(
            (joined - expected).abs() < 5.0 * sd + 1.0,
            "{variant}: {joined} joined of {} served, share {share}",
            ids.len()
        );
    }
    // A quiet hour, then light traffic: the join, empty for a time-to-live, raises its share
    // towards three quarters full at once, which is every request here.
    clock.advance(Duration::from_secs(3_601));
    for i in 0..10 {
        let id = format!("quiet-{i}");
        router
            .route(
                &Request {
                    request_id: Some(&id),
                    group: None,
                    ..Request::default()
                },
                row.view(),
                &mut out,
            )
            .unwrap();
    }
    assert_eq!(router.label_sample_share(), 1.0, "after {share}");
    assert_eq!(router.awaiting_labels(), 10);
}

/// Hostile input (issue 25): one request larger than the join's whole byte bound is dropped
/// alone; it does not shrink the sample of every other request to nothing.
#[test]
fn a_request_larger_than_the_join_is_dropped_alone() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let router = echo_router(
        StatsConfig {
            label_join_bytes: 4_096,
            ..StatsConfig::default()
        },
        metrics,
    );
    // 2,000 rows: 8 KB of scores.
    let big = ndarray::Array2::<f32>::from_elem((2_000, 1), 0.5);
    let mut out = vec![0.0_f32; 2_000];
    let small = array![[0.9_f32], [0.1]];
    let mut two = [0.0_f32; 2];
    let send = |id: &str, x: ndarray::ArrayView2<'_, f32>, out: &mut [f32]| {
        router
            .route(
                &Request {
                    request_id: Some(id),
                    group: None,
                    ..Request::default()
                },
                x,
                out,
            )
            .unwrap();
    };
    send("small-1", small.view(), &mut two);
    send("big", big.view(), &mut out);
    send("small-2", small.view(), &mut two);
    assert_eq!(router.label_sample_share(), 1.0);
    assert_eq!(router.awaiting_labels(), 2);
    assert!(!router.feedback("big", &vec![1.0; 2_000]).unwrap());
    assert!(router.feedback("small-1", &[1.0, 0.0]).unwrap());
    assert!(router.feedback("small-2", &[1.0, 0.0]).unwrap());
    assert_eq!(
        exported(
            &registry,
            "mlops_serve_label_join_dropped_total{model=\"fraud\",reason=\"evicted\"} "
        ),
        1.0
    );
}

/// The label join's time-to-live is bounded: a value `Duration` cannot hold (it panicked in
/// `Duration::from_secs_f64`) or none at all is refused with the field named.
#[test]
fn a_label_ttl_out_of_range_is_refused_not_a_panic() {
    for ttl in [1e300, 1e10, f64::INFINITY, f64::NAN, 0.0, -1.0, 1e-6] {
        let e = RouterConfig {
            stats: StatsConfig {
                label_ttl_seconds: ttl,
                ..StatsConfig::default()
            },
            ..RouterConfig::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("StatsConfig.label_ttl_seconds"), "{ttl}: {e}");
    }
    // Ninety days (a chargeback's delay) is fine.
    let options = RouterOptions {
        config: RouterConfig {
            stats: StatsConfig {
                label_ttl_seconds: 90.0 * 86_400.0,
                ..StatsConfig::default()
            },
            ..RouterConfig::default()
        }
        .check()
        .unwrap(),
        ..RouterOptions::default()
    };
    assert!(Router::new("fraud", canary_routes(0.0), options).is_ok());
}

/// Issue 23: the router's config has serde like every other config (a JSON round trip, an
/// unknown field refused, a stored config checked on the way in) and its default passes
/// its check.
#[test]
fn the_router_config_round_trips_through_json_and_refuses_unknown_fields() {
    let config = RouterConfig {
        stats: StatsConfig {
            label_join_capacity: 7,
            label_ttl_seconds: 90.0,
            ..StatsConfig::default()
        },
        shadow_queue: 16,
    };
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<RouterConfig>(&json).unwrap(), config);
    let checked = config.clone().check().unwrap();
    assert_eq!(serde_json::to_string(&checked).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<mlops_serve::router::CheckedRouterConfig>(&json).unwrap(),
        checked
    );
    for unknown in [
        r#"{"shadow_queue": 16, "queue": 1}"#,
        r#"{"stats": {"label_ttl": 5}}"#,
    ] {
        let e = serde_json::from_str::<RouterConfig>(unknown)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{unknown}: {e}");
    }
    let e =
        serde_json::from_str::<mlops_serve::router::CheckedRouterConfig>(r#"{"shadow_queue": 0}"#)
            .unwrap_err()
            .to_string();
    assert!(e.contains("invalid RouterConfig.shadow_queue = 0"), "{e}");
    assert_eq!(
        RouterConfig::default().check().unwrap(),
        mlops_serve::router::CheckedRouterConfig::default()
    );
}
