//! What the tests of models from other tools (tree_models.rs, onnx_models.rs) share: a seeded
//! uniform stream, a canary judged by the ROC AUC check on joined labels, and a call into the
//! V2 application.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use mlops_core::model::Predictor;
use mlops_serve::analysis::{Check, Outcome};
use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
use ndarray::Array2;
use serde_json::Value;
use tower::ServiceExt;

/// A seeded xorshift: uniform numbers in [0, 1).
pub fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Labels drawn from `truth`'s probabilities of `x`.
pub fn labels(truth: &dyn Predictor, x: &Array2<f32>, next: &mut dyn FnMut() -> f64) -> Vec<f64> {
    truth
        .predict_proba(x.view())
        .unwrap()
        .iter()
        .map(|&p| f64::from(u8::from(next() < f64::from(p))))
        .collect()
}

/// Routes every row of `x` through a 50/50 stable/canary router, joins its label, and
/// returns the ROC AUC non-inferiority check's outcome for the canary.
pub fn judge(
    stable: Arc<dyn Predictor>,
    canary: Arc<dyn Predictor>,
    x: &Array2<f32>,
    labels: &[f64],
) -> Outcome {
    let routes = Routes {
        variants: vec![
            Variant::new("stable", Some(1), stable),
            Variant::new("canary", Some(2), canary),
        ],
        weights: vec![("stable".into(), 50.0), ("canary".into(), 50.0)],
        shadow: None,
    };
    let router = Router::new("fraud", routes, RouterOptions::default()).unwrap();
    let mut out = [0.0_f32; 1];
    for i in 0..x.nrows() {
        let id = format!("r{i}");
        let row = x.slice_axis(ndarray::Axis(0), (i..i + 1).into());
        router
            .route(
                &Request {
                    request_id: Some(&id),
                    ..Request::default()
                },
                row,
                &mut out,
            )
            .unwrap();
        assert!(router.feedback(&id, &labels[i..i + 1]).unwrap());
    }
    let snapshot = router.snapshot();
    let check = Check::RocAuc {
        max_decrease: 0.01,
        confidence: 0.95,
        min_labeled: 200,
    };
    let result = check.evaluate(
        snapshot.get("canary").unwrap(),
        snapshot.get("stable").unwrap(),
        100,
    );
    eprintln!("{:?}: {}", result.outcome, result.reason);
    result.outcome
}

/// One request to the V2 application: the status and the JSON body.
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = HttpRequest::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}
