#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the serving engine against the reference forward pass, on the seed's
//! network. For onnxruntime on the same weights in the same run, see
//! `engine_vs_onnxruntime.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mlops::core::model::{MlpModel, Predictor};
use mlops::serve::router::{Request, Router, RouterOptions, Routes, Variant};
use mlops::serve::telemetry::ServeMetrics;
use mlops::serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array2, Axis, Slice};
use std::sync::Arc;

#[path = "support/seed_network.rs"]
mod seed_network;

fn engine(c: &mut Criterion) {
    let artifact = seed_network::seed_network().expect("a valid network");
    let compiled = CompiledModel::compile(&artifact, NonFinitePolicy::Nan).expect("compiles");
    let reference = MlpModel::new(&artifact).expect("loads");
    let x = Array2::from_shape_fn((1024, 30), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let mut group = c.benchmark_group("engine");
    for rows in [1usize, 1024] {
        let batch = x.slice_axis(Axis(0), Slice::from(0..rows));
        let mut out = vec![0.0f32; rows];
        group.throughput(Throughput::Elements(rows as u64));
        for (name, p) in [
            ("compiled", &compiled as &dyn Predictor),
            ("mlp_model", &reference),
        ] {
            group.bench_with_input(BenchmarkId::new(name, rows), &rows, |b, _| {
                b.iter(|| p.predict_proba_into(batch, &mut out).expect("scores"))
            });
        }
    }
    group.finish();
}

/// The router (90/10 sticky split, metrics registered, per-step statistics) in front of the
/// same engine: the difference from `engine/compiled/1` is the router's overhead a request.
fn router(c: &mut Criterion) {
    let artifact = seed_network::seed_network().expect("a valid network");
    let engine: Arc<dyn Predictor> =
        Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Nan).expect("compiles"));
    let mut registry = mlops::prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let routes = Routes {
        variants: vec![
            Variant::new("canary", Some(2), engine.clone()),
            Variant::new("stable", Some(1), engine.clone()),
        ],
        weights: vec![("canary".into(), 10.0), ("stable".into(), 90.0)],
        shadow: None,
    };
    let options = RouterOptions {
        metrics,
        ..RouterOptions::default()
    };
    let router = Router::new("bench", routes, options).expect("valid routes");
    let x = Array2::from_shape_fn((1, 30), |(_, j)| (j * 17 % 97) as f32 / 97.0);
    let keys: Vec<String> = (0..4096).map(|i| format!("user-{i}")).collect();
    let mut out = [0.0f32];
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine_direct/1", |b| {
        b.iter(|| {
            engine
                .predict_proba_into(x.view(), &mut out)
                .expect("scores")
        })
    });
    for (name, with_id) in [("routed/1", false), ("routed_with_request_id/1", true)] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let key = &keys[i % keys.len()];
                i += 1;
                let request = Request {
                    key: Some(key),
                    force: None,
                    request_id: with_id.then_some(key.as_str()),
                    group: None,
                };
                router.route(&request, x.view(), &mut out).expect("routes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, engine, router);
criterion_main!(benches);
