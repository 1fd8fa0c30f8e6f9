#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the KServe V2 request path in process (no socket): the same
//! single-row FP32 `[1, 30]` JSON request through the server's application
//! (`mlops::serve::http::app`: its layers, extractors, decoding, the router, the engine and
//! the encoding) and through the HTTP floor's (an axum handler that only parses the body and
//! answers a fixed response, `benches/support/http_floor_app.rs`). Their ratio is the server's
//! own share of a request, without the connection's; `benches/server_vs_floor.py` measures both
//! over TCP with wrk.

use axum::body::{Body, Bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mlops::core::model::Predictor;
use mlops::serve::http::{app, ServerConfig};
use mlops::serve::router::{Router, RouterOptions, Routes, Variant};
use mlops::serve::telemetry::ServeMetrics;
use mlops::serve::{CompiledModel, NonFinitePolicy};
use std::sync::Arc;
use tower::ServiceExt;

#[path = "support/http_floor_app.rs"]
mod http_floor_app;
#[path = "support/seed_network.rs"]
mod seed_network;

/// The server as `examples/serve` builds it: one variant of the seed's network, metrics
/// registered, the default configuration.
fn server_app() -> axum::Router {
    let artifact = seed_network::seed_network().expect("a valid network");
    let engine: Arc<dyn Predictor> =
        Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Reject).expect("compiles"));
    let mut registry = mlops::prometheus_client::registry::Registry::default();
    let metrics = ServeMetrics::register(&mut registry);
    let router = Router::new(
        "fraud",
        Routes::single(Variant::new("stable", Some(1), engine)),
        RouterOptions {
            metrics,
            ..RouterOptions::default()
        },
    )
    .expect("valid routes");
    let config = ServerConfig::default()
        .check()
        .expect("the default is valid");
    app("fraud", Arc::new(router), Some(Arc::new(registry)), config).expect("an app")
}

fn request_path(c: &mut Criterion) {
    // The row of benches/server_vs_floor.py's shape: 30 numbers of six decimals.
    let row: Vec<String> = (0..30)
        .map(|j| format!("{:.6}", ((j * 37 % 61) as f64 - 30.0) / 17.0))
        .collect();
    let body = Bytes::from(format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,30],"datatype":"FP32","data":[{}]}}]}}"#,
        row.join(",")
    ));
    // A multi-thread runtime, as the server runs on: small bodies are worked on inline.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("http_path");
    group.throughput(Throughput::Elements(1));
    for (name, application) in [
        ("floor", http_floor_app::floor_app()),
        ("server", server_app()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = axum::http::Request::post("/v2/models/fraud/infer")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .expect("a request");
                runtime.block_on(async {
                    let response = application
                        .clone()
                        .oneshot(request)
                        .await
                        .expect("infallible");
                    assert_eq!(response.status(), 200);
                    axum::body::to_bytes(response.into_body(), 1 << 20)
                        .await
                        .expect("a body")
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
