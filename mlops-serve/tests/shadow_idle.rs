//! The shadow worker at rest: once no request has been mirrored for a while it blocks (no
//! wake-ups: an idle server, or one with no shadow, costs no CPU), and the next mirrored
//! request still wakes it and is scored. Its own test binary: the worker thread is found by
//! name, and no other test's router may run beside it.

#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use mlops_serve::router::{Request, Router, RouterOptions, Routes, ShadowRoute, Variant};
use ndarray::array;

use support::sigmoid_model as model;

/// The ids of this process's threads named `mlops-shadow`.
fn shadow_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{t}/comm")).ok()?;
            (comm.trim() == "mlops-shadow").then_some(t)
        })
        .collect()
}

/// How many times thread `tid` has gone to sleep (its voluntary context switches).
fn sleeps(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn an_idle_shadow_worker_blocks_and_wakes_for_the_next_mirrored_request() {
    let before = shadow_threads();
    let routes = Routes {
        variants: vec![
            Variant::new("stable", Some(1), model(1.0)),
            Variant::new("shadow", Some(2), model(2.0)),
        ],
        weights: vec![("stable".into(), 100.0)],
        shadow: Some(ShadowRoute {
            variant: "shadow".into(),
            percent: 100.0,
        }),
    };
    let router = Router::new("fraud", routes, RouterOptions::default()).unwrap();
    // A thread names itself once it runs: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let worker = loop {
        let new: Vec<String> = shadow_threads()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        match new.as_slice() {
            [worker] => break worker.clone(),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => panic!("expected one new shadow worker, found {new:?}"),
        }
    };
    let worker = worker.as_str();
    // A worker that polls for ever sleeps about once a millisecond; one at rest, never.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet = 0;
    while quiet < 3 {
        assert!(
            Instant::now() < deadline,
            "the idle shadow worker still wakes up after 20 s: {} sleeps",
            sleeps(worker)
        );
        let start = sleeps(worker);
        std::thread::sleep(Duration::from_millis(200));
        quiet = if sleeps(worker) - start <= 1 {
            quiet + 1
        } else {
            0
        };
    }
    // At rest, it still scores the next mirrored request.
    let mut out = [0.0_f32];
    for i in 0..3 {
        let x = array![[i as f32]];
        router
            .route(&Request::default(), x.view(), &mut out)
            .unwrap();
        assert_eq!(router.wait_shadow_below(1, Duration::from_secs(20)), 0);
        let compared = router.snapshot().get("shadow").unwrap().shadow_compared;
        assert_eq!(compared, i + 1);
        // Back at rest before the next one (past its ~100 empty polls).
        std::thread::sleep(Duration::from_millis(400));
    }
}
