//! The router: sticky buckets while ramping (100k keys, none ever moves back), spread and
//! A/B shares, forced variants, a shadow that errors, panics or stalls never changing a
//! primary response, weight switches under concurrent requests losing nothing, the label
//! join's bounds, and routes refused with the field named.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use mlops_core::clock::ManualClock;
use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
use mlops_serve::metrics::ServeMetrics;
use mlops_serve::router::{
    bucket_of, Request, Router, RouterConfig, RouterOptions, Routes, ShadowRoute, Variant,
};
use mlops_serve::stats::StatsConfig;
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::{array, Array2, ArrayView2};

/// `sigmoid(w * x)`: each variant's weight makes its outputs recognizable.
fn model(w: f32) -> Arc<dyn Predictor> {
    let spec = ModelSpec::new(
        vec!["x".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    let a = ModelArtifact::new(spec, vec![(array![[w]], array![0.0_f32])]).unwrap();
    Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap())
}

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
            "error" => Err(mlops_core::Error::Source {
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
            },
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
        },
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
    // The refused post left b waiting (a corrected one could still join): it is the oldest.
    assert_eq!(router.awaiting_labels(), 1);
    // Capacity 3: the oldest waiting requests (b, then d) are evicted by the fourth.
    for id in ["d", "e", "f", "g"] {
        send(id, &mut out);
    }
    assert_eq!(router.awaiting_labels(), 3);
    assert!(!router.feedback("d", &[1.0, 1.0]).unwrap(), "evicted");
    // Time-to-live: a minute later the rest expired.
    clock.advance(Duration::from_secs(61));
    assert!(!router.feedback("e", &[1.0, 1.0]).unwrap(), "expired");
    assert_eq!(router.awaiting_labels(), 0);
    let snapshot = router.snapshot();
    let stable = snapshot.get("stable").unwrap();
    assert_eq!(stable.labels, vec![true, false]);
    let text = mlops_core::exposition::classic_text(&registry).unwrap();
    for (reason, n) in [("expired", 3), ("evicted", 2), ("unknown", 4)] {
        let line = format!(
            "mlops_serve_label_join_dropped_total{{model=\"fraud\",reason=\"{reason}\"}} {n}"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
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
    let options = RouterOptions {
        config: RouterConfig {
            shadow_queue: 0,
            ..RouterConfig::default()
        },
        ..RouterOptions::default()
    };
    let e = Router::new("fraud", canary_routes(10.0), options)
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
