//! The KServe V2 server in process (`tower::ServiceExt::oneshot` on the axum app): every
//! endpoint, JSON and binary tensors, errors as 4xx with `{"error"}`, the body limit, auth,
//! delayed labels, and arbitrary bodies that never cause a 5xx or a panic.

#[cfg(feature = "http")]
mod server {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
    use mlops_serve::http::{app, ServerConfig};
    use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
    use mlops_serve::telemetry::ServeMetrics;
    use mlops_serve::{CompiledModel, NonFinitePolicy};
    use ndarray::{array, Array2};
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret-token-0123456789";

    fn model(w: [f32; 3]) -> Arc<dyn Predictor> {
        let spec = ModelSpec::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let a =
            ModelArtifact::new(spec, vec![(array![[w[0], w[1], w[2]]], array![0.1_f32])]).unwrap();
        Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap())
    }

    fn server(tokens: Vec<String>) -> (axum::Router, Arc<Router>) {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let routes = Routes {
            variants: vec![
                Variant::new("canary", Some(2), model([2.0, -1.0, 0.5])),
                Variant::new("stable", Some(1), model([1.0, 0.5, -0.5])),
            ],
            weights: vec![("canary".into(), 0.0), ("stable".into(), 100.0)],
            shadow: None,
        };
        let router = Arc::new(
            Router::new(
                "fraud",
                routes,
                RouterOptions {
                    metrics,
                    ..RouterOptions::default()
                },
            )
            .unwrap(),
        );
        let config = ServerConfig {
            body_limit_bytes: 64 * 1024,
            tokens,
            ..ServerConfig::default()
        };
        (
            app(
                "fraud",
                router.clone(),
                Some(Arc::new(registry)),
                config.check().unwrap(),
            )
            .unwrap(),
            router,
        )
    }

    async fn call(
        app: &axum::Router,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    fn post_json(path: &str, body: &Value) -> Request<Body> {
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn json_of(body: &[u8]) -> Value {
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
    }

    fn sigmoid(z: f32) -> f32 {
        1.0 / (1.0 + (-z).exp())
    }

    #[tokio::test]
    async fn health_metadata_and_unknown_names() {
        let (app, _) = server(vec![]);
        for path in [
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/fraud/ready",
            "/v2/models/fraud/versions/1/ready",
            // A URL version is a `VersionRef`: a number, or an alias bare or with its `@`.
            "/v2/models/fraud/versions/canary/ready",
            "/v2/models/fraud/versions/@production/ready",
        ] {
            assert_eq!(call(&app, get(path)).await.0, StatusCode::OK, "{path}");
        }
        let (status, _, body) = call(&app, get("/v2")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body)["extensions"], json!(["binary_tensor_data"]));
        let meta = json_of(&call(&app, get("/v2/models/fraud")).await.2);
        assert_eq!(meta["name"], "fraud");
        assert_eq!(
            meta["inputs"][0],
            json!({"name": "input", "datatype": "FP32", "shape": [-1, 3]})
        );
        assert_eq!(meta["outputs"][1]["datatype"], "INT64");
        assert_eq!(
            json_of(
                &call(&app, get("/v2/models/fraud/versions/production"))
                    .await
                    .2
            )["versions"],
            json!(["1"])
        );
        for path in [
            "/v2/models/nope",
            "/v2/models/fraud/versions/7",
            "/v2/models/fraud/versions/7/ready",
            "/v2/models/fraud/versions/0",
            "/v2/models/fraud/versions/@latest",
            "/v2/models/fraud/versions/with%20space/ready",
            "/v2/nothing",
        ] {
            let (status, _, body) = call(&app, get(path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(json_of(&body)["error"].is_string(), "{path}");
        }
        let (status, _, body) = call(&app, post_json("/v2/models/nope/infer", &json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(json_of(&body)["error"].as_str().unwrap().contains("nope"));
    }

    #[tokio::test]
    async fn json_inference_flat_nested_versions_and_ids() {
        let (app, _) = server(vec![]);
        let x = [
            [0.5_f32, -1.0, 2.0],
            [1.5, 0.25, -0.75],
            [0.0, 0.0, 0.0],
            [-2.0, 1.0, 1.0],
        ];
        let expected: Vec<f32> = x
            .iter()
            .map(|r| sigmoid(r[0] + 0.5 * r[1] - 0.5 * r[2] + 0.1))
            .collect();
        for data in [json!(x), json!(x.concat())] {
            let request = json!({"id": "r-1", "inputs": [{"name": "input", "shape": [4, 3], "datatype": "FP32", "data": data}]});
            let (status, headers, body) =
                call(&app, post_json("/v2/models/fraud/infer", &request)).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            assert_eq!(headers["content-type"], "application/json");
            let r = json_of(&body);
            assert_eq!(
                (
                    r["model_name"].as_str(),
                    r["model_version"].as_str(),
                    r["id"].as_str()
                ),
                (Some("fraud"), Some("1"), Some("r-1"))
            );
            let p: Vec<f32> = r["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(r["outputs"][0]["shape"], json!([4]));
            for (a, b) in p.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-6, "{p:?} vs {expected:?}");
            }
            let labels: Vec<i64> = r["outputs"][1]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(
                labels,
                expected
                    .iter()
                    .map(|&p| i64::from(p >= 0.5))
                    .collect::<Vec<_>>()
            );
        }
        // No id given: none echoed. A version by number or alias routes to that variant; one
        // output asked for, one given.
        let request = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 1.0, 1.0]}], "outputs": [{"name": "probability"}]});
        let r = json_of(
            &call(
                &app,
                post_json("/v2/models/fraud/versions/canary/infer", &request),
            )
            .await
            .2,
        );
        assert!(r.get("id").is_none(), "{r}");
        assert_eq!(
            (
                r["model_version"].as_str(),
                r["outputs"].as_array().unwrap().len()
            ),
            (Some("2"), 1)
        );
        assert!(
            (r["outputs"][0]["data"][0].as_f64().unwrap() as f32 - sigmoid(2.0 - 1.0 + 0.5 + 0.1))
                .abs()
                < 1e-6
        );
        let r = json_of(
            &call(
                &app,
                post_json("/v2/models/fraud/versions/2/infer", &request),
            )
            .await
            .2,
        );
        assert_eq!(r["parameters"]["variant"], "canary");
        // The variant header forces too.
        let forced = Request::post("/v2/models/fraud/infer")
            .header("mlops-variant", "canary")
            .body(Body::from(request.to_string()))
            .unwrap();
        assert_eq!(json_of(&call(&app, forced).await.2)["model_version"], "2");
    }

    /// A binary request as tritonclient sends it: JSON header, then raw little-endian bytes.
    fn binary_request(
        datatype: &str,
        raw: Vec<u8>,
        rows: usize,
        outputs_binary: bool,
    ) -> Request<Body> {
        let mut header = json!({"inputs": [{"name": "input", "shape": [rows, 3], "datatype": datatype, "parameters": {"binary_data_size": raw.len()}}]});
        if outputs_binary {
            header["parameters"] = json!({"binary_data_output": true});
        }
        let header = header.to_string();
        let mut body = header.clone().into_bytes();
        body.extend(raw);
        Request::post("/v2/models/fraud/infer")
            .header("inference-header-content-length", header.len())
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn binary_tensors_in_and_out() {
        let (app, _) = server(vec![]);
        let x: Vec<f32> = vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
        let expected: Vec<f32> = x
            .chunks(3)
            .map(|r| sigmoid(r[0] + 0.5 * r[1] - 0.5 * r[2] + 0.1))
            .collect();
        let raws = [
            (
                "FP32",
                x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
            ),
            (
                "FP64",
                x.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect(),
            ),
            (
                "FP16",
                x.iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
        ];
        for (datatype, raw) in raws {
            let (status, headers, body) = call(&app, binary_request(datatype, raw, 2, true)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{datatype}: {}",
                String::from_utf8_lossy(&body)
            );
            let n: usize = headers["inference-header-content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let header = json_of(&body[..n]);
            let sizes: Vec<u64> = header["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["parameters"]["binary_data_size"].as_u64().unwrap())
                .collect();
            assert_eq!(sizes, [8, 16], "{header}");
            let p: Vec<f32> = body[n..n + 8]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let l: Vec<i64> = body[n + 8..]
                .chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let tol = if datatype == "FP16" { 2e-3 } else { 1e-6 };
            for (a, b) in p.iter().zip(&expected) {
                assert!((a - b).abs() < tol, "{datatype}: {p:?} vs {expected:?}");
            }
            assert_eq!(l, [0, 1], "{datatype}");
        }
    }

    #[tokio::test]
    async fn bad_requests_are_400_with_an_error_never_a_5xx() {
        let (app, _) = server(vec![]);
        let ok_input =
            json!({"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]});
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
                "holds 6",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
                "[batch, 3]",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}),
                "[batch, 3]",
            ),
            (
                json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
                "unknown input",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]}),
                "INT32",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP8", "data": [1, 2, 3]}]}),
                "FP8",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, "2", 3]}]}),
                "data[1]",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP16", "data": [1, 2, 3]}]}),
                "FP16",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, -3], "datatype": "FP32", "data": [1, 2, 3]}]}),
                "shape",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1e300, 2, 3]}]}),
                "FP32's range",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [null, 2, 3]}]}),
                "data[0]",
            ),
            (json!({"inputs": []}), "at least one"),
            (
                json!({"inputs": [ok_input.clone(), ok_input.clone()]}),
                "exactly one",
            ),
            (
                json!({"inputs": [ok_input.clone()], "outputs": [{"name": "logits"}]}),
                "logits",
            ),
            (
                json!({"inputs": [ok_input.clone()], "outputs": [{"name": "label"}, {"name": "label"}]}),
                "twice",
            ),
            (json!({"inputs": [ok_input.clone()], "extra": 1}), "extra"),
            (json!({"id": 5, "inputs": [ok_input.clone()]}), "id"),
            (json!([1, 2]), "object"),
        ];
        for (body, needle) in cases {
            let (status, _, out) = call(&app, post_json("/v2/models/fraud/infer", &body)).await;
            let text = String::from_utf8_lossy(&out).to_string();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
            assert!(
                json_of(&out)["error"].as_str().unwrap().contains(needle),
                "{needle}: {text}"
            );
        }
        // Malformed JSON, a lying header length, bytes left over, a NaN under the reject policy.
        let raw = Request::post("/v2/models/fraud/infer")
            .body(Body::from("{\"inputs\": ["))
            .unwrap();
        assert_eq!(call(&app, raw).await.0, StatusCode::BAD_REQUEST);
        let lying = Request::post("/v2/models/fraud/infer")
            .header("inference-header-content-length", "99999")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(call(&app, lying).await.0, StatusCode::BAD_REQUEST);
        let mut extra = binary_request("FP32", vec![0; 12], 1, false);
        let body = std::mem::take(extra.body_mut())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let mut longer = body.to_vec();
        longer.extend([1, 2, 3]);
        *extra.body_mut() = Body::from(longer);
        let (status, _, out) = call(&app, extra).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&out).contains("after the last input"));
        let nan = binary_request(
            "FP32",
            [f32::NAN, 0.0, 0.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            1,
            false,
        );
        let (status, _, out) = call(&app, nan).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(String::from_utf8_lossy(&out).contains("row 0"));
        // Over the body limit: 413 with an error.
        let huge = json!({"inputs": [{"name": "input", "shape": [30000, 3], "datatype": "FP32", "data": vec![0.5; 90000]}]});
        let (status, _, out) = call(&app, post_json("/v2/models/fraud/infer", &huge)).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(json_of(&out)["error"].is_string());
    }

    #[tokio::test]
    async fn tokens_guard_everything_but_health() {
        let (app, _) = server(vec![TOKEN.to_string()]);
        let request = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
        let with = |auth: Option<&str>| {
            let mut r = Request::post("/v2/models/fraud/infer");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.body(Body::from(request.to_string())).unwrap()
        };
        let almost = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        let longer = format!("Bearer {TOKEN}x");
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789"),
            Some(almost.as_str()),
            Some(longer.as_str()),
            Some(TOKEN),
            Some("Basic abc"),
        ] {
            let (status, headers, body) = call(&app, with(auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(
                json_of(&body),
                json!({"error": "unauthorized"}),
                "the same answer whatever was wrong"
            );
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
        let right = format!("Bearer {TOKEN}");
        assert_eq!(call(&app, with(Some(&right))).await.0, StatusCode::OK);
        for path in ["/v2/health/live", "/v2/health/ready"] {
            assert_eq!(call(&app, get(path)).await.0, StatusCode::OK, "{path}");
        }
        assert_eq!(
            call(&app, get("/v2/models/fraud")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, get("/metrics")).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Short tokens are refused at configuration.
        let e = app_error(vec!["short".into()]);
        assert!(e.contains("tokens[0]") && !e.contains("short"), "{e}");
    }

    fn app_error(tokens: Vec<String>) -> String {
        ServerConfig {
            tokens,
            ..ServerConfig::default()
        }
        .check()
        .unwrap_err()
        .to_string()
    }

    #[tokio::test]
    async fn labels_posted_back_join_and_metrics_show_them() {
        let (app, router) = server(vec![]);
        for (i, x) in [[2.0_f32, 0.0, 0.0], [-2.0, 0.0, 0.0]].iter().enumerate() {
            let request = json!({"id": format!("q{i}"), "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": x}]});
            assert_eq!(
                call(&app, post_json("/v2/models/fraud/infer", &request))
                    .await
                    .0,
                StatusCode::OK
            );
        }
        for (id, label, joined) in [("q0", 1, true), ("q1", 0, true), ("q1", 0, false)] {
            let (status, _, body) = call(
                &app,
                post_json(
                    "/v2/models/fraud/labels",
                    &json!({"id": id, "labels": [label]}),
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(json_of(&body)["joined"], joined);
        }
        let (status, _, body) = call(
            &app,
            post_json(
                "/v2/models/fraud/labels",
                &json!({"id": "q9", "labels": [2]}),
            ),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            router.snapshot().get("stable").unwrap().labels,
            vec![true, false]
        );
        let (status, headers, body) = call(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(
                "mlops_serve_requests_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("mlops_serve_live_accuracy{model=\"fraud\",variant=\"stable\"} 1"),
            "{text}"
        );
    }

    /// Issue 23: one request is counted once: +1 in the variant's request counter, its
    /// latency histogram and its row counter, and +1 in the step's statistics.
    #[tokio::test]
    async fn one_request_is_counted_once_in_the_metrics_and_the_step_statistics() {
        let (app, router) = server(vec![]);
        let body = json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]});
        let (status, _, body) = call(&app, post_json("/v2/models/fraud/infer", &body)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let stable = router.snapshot().get("stable").unwrap().clone();
        assert_eq!((stable.requests, stable.rows), (1, 2));
        let (_, _, text) = call(&app, get("/metrics")).await;
        let text = String::from_utf8(text).unwrap();
        for line in [
            "mlops_serve_requests_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 1",
            "mlops_serve_predictions_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 2",
            "mlops_serve_latency_seconds_count{model=\"fraud\",variant=\"stable\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    /// A request still being uploaded when shutdown starts is answered; then the server stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_the_request_in_flight_finish() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (app, _) = server(vec![]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mlops_serve::http::serve(listener, app, async {
            let _ = stopped.await;
        }));
        let body = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..10]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stream.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"probability\""), "{response}");
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // Stopped: no new connection is accepted.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Any bytes with any header length: a decoded request or a ProtocolError, never a panic.
        #[test]
        fn the_decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), header in proptest::option::of(0usize..600)) {
            let _ = mlops_serve::http::protocol::decode_request(&body, header);
        }

        /// Nested rows of any lengths: decoded only when every row has the shape's width (the
        /// total alone is not enough: ragged rows would be re-cut across rows).
        #[test]
        fn nested_rows_decode_only_when_every_row_fits_the_shape(lengths in proptest::collection::vec(0usize..6, 1..6)) {
            let data: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![0.5; n]).collect();
            let body = json!({"inputs": [{"name": "input", "shape": [lengths.len(), 3], "datatype": "FP32", "data": data}]}).to_string();
            let decoded = mlops_serve::http::protocol::decode_request(body.as_bytes(), None);
            prop_assert_eq!(decoded.is_ok(), lengths.iter().all(|&n| n == 3), "{:?}", lengths);
        }

        /// Bodies that look like requests, mutated: never a 5xx.
        #[test]
        fn mutated_requests_never_get_a_5xx(cut in 0usize..200, flip in 0usize..200, byte in any::<u8>(), rows in 0usize..4, datatype in prop::sample::select(vec!["FP32", "FP64", "FP16", "INT64", "BOOL", "BYTES", "UINT8"])) {
            let request = json!({"id": "p", "inputs": [{"name": "input", "shape": [rows, 3], "datatype": datatype, "data": vec![0.5; rows * 3]}]}).to_string();
            let mut body = request.into_bytes();
            if flip < body.len() { body[flip] = byte; }
            body.truncate(cut.max(1).min(body.len()));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (app, _) = server(vec![]);
            let status = runtime.block_on(async {
                call(&app, Request::post("/v2/models/fraud/infer").body(Body::from(body)).unwrap()).await.0
            });
            prop_assert!(!status.is_server_error(), "{status}");
        }
    }

    #[test]
    fn shapes_too_large_are_refused_before_any_work() {
        let body = json!({"inputs": [{"name": "input", "shape": [1u64 << 40, 1u64 << 40], "datatype": "FP32", "data": []}]}).to_string();
        let e = mlops_serve::http::protocol::decode_request(body.as_bytes(), None).unwrap_err();
        assert!(e.0.contains("more than"), "{e}");
        let _ = Array2::<f32>::zeros((0, 3));
    }

    // ---- issue 22: the bounds of a door, readiness, labels, shapes, shutdown, threshold ----

    /// The test model (3 features) served with `config`.
    fn server_with(config: ServerConfig) -> (axum::Router, Arc<Router>) {
        let (_, router) = server(vec![]);
        (
            app("fraud", router.clone(), None, config.check().unwrap()).unwrap(),
            router,
        )
    }

    fn ok_request(id: Option<&str>) -> Value {
        let mut r = json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
        if let Some(id) = id {
            r["id"] = json!(id);
        }
        r
    }

    fn error_of(body: &[u8]) -> String {
        json_of(body)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string: {}", String::from_utf8_lossy(body)))
            .to_string()
    }

    use crate::support::start_server as start;

    /// Sends `request` (raw HTTP/1.1) on a new connection and reads until the server closes
    /// it, within a generous deadline (a panic past it).
    async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_end(&mut out),
        )
        .await
        .expect("no answer before the deadline")
        .unwrap();
        String::from_utf8_lossy(&out).to_string()
    }

    /// The JSON body of a raw response.
    fn raw_body(response: &str) -> Value {
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        json_of(body.as_bytes())
    }

    /// Item 4: ids, headers and request targets past their bounds are refused, named, in JSON
    /// — over a real connection, so the answer is the server's and not only the app's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_ids_headers_and_targets_are_refused_with_json_errors() {
        let (app, router) = server(vec![]);
        let long = "i".repeat(ServerConfig::default().max_id_bytes + 1);
        let (status, _, body) = call(
            &app,
            post_json("/v2/models/fraud/infer", &ok_request(Some(&long))),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            error_of(&body).contains("request id of 257 bytes"),
            "{}",
            error_of(&body)
        );
        assert_eq!(router.awaiting_labels(), 0, "a refused id is not kept");
        let (status, _, body) = call(
            &app,
            post_json(
                "/v2/models/fraud/labels",
                &json!({"id": long, "labels": [1]}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).contains("request id"));
        // An id at the bound is fine.
        let at = "i".repeat(ServerConfig::default().max_id_bytes);
        let (status, _, _) = call(
            &app,
            post_json("/v2/models/fraud/infer", &ok_request(Some(&at))),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        let config = ServerConfig::default();
        let (addr, stop, _server) = start(server(vec![]).0, config.clone()).await;
        let big = format!(
            "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(config.max_header_bytes)
        );
        let r = raw(addr, big.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        assert!(
            raw_body(&r)["error"]
                .as_str()
                .unwrap()
                .contains("request headers"),
            "{r}"
        );
        let long_target = format!(
            "GET /v2/models/{}/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "m".repeat(config.max_uri_bytes)
        );
        let r = raw(addr, long_target.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 414"), "{r}");
        assert!(
            raw_body(&r)["error"]
                .as_str()
                .unwrap()
                .contains("request target"),
            "{r}"
        );
        stop.send(()).unwrap();
    }

    /// Item 4: the label join holds at most `label_join_bytes`, whatever the ids' length
    /// (issue 25: it keeps ids as hashes, and samples past its bound); what it drops is
    /// counted as evicted, the labels of requests outside its sample as sampled.
    #[test]
    fn the_label_join_is_bounded_in_bytes_and_counts_what_it_drops() {
        use mlops_serve::router::{Request as Routing, RouterConfig};
        use mlops_serve::step_stats::StatsConfig;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let bound = 16 << 10;
        let router = Router::new(
            "fraud",
            Routes::single(Variant::new("stable", Some(1), model([1.0, 0.5, -0.5]))),
            RouterOptions {
                config: RouterConfig {
                    stats: StatsConfig {
                        label_join_bytes: bound,
                        ..StatsConfig::default()
                    },
                    ..RouterConfig::default()
                }
                .check()
                .unwrap(),
                metrics,
                ..RouterOptions::default()
            },
        )
        .unwrap();
        let x = array![[1.0_f32, 2.0, 3.0]];
        let mut p = [0.0_f32];
        for i in 0..200 {
            let id = format!("{i:04}{}", "x".repeat(4 << 10));
            router
                .route(
                    &Routing {
                        request_id: Some(&id),
                        ..Routing::default()
                    },
                    x.view(),
                    &mut p,
                )
                .unwrap();
            assert!(
                router.awaiting_label_bytes() <= bound,
                "{} bytes waiting after {i}",
                router.awaiting_label_bytes()
            );
        }
        let waiting = router.awaiting_labels();
        // 240 bytes a request, whatever its id: 68 fit in 16 KiB.
        assert!((30..=68).contains(&waiting), "{waiting} waiting");
        assert_eq!(router.awaiting_label_bytes(), 240 * waiting);
        let count = |reason: &str| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let prefix = format!(
                "mlops_serve_label_join_dropped_total{{model=\"fraud\",reason=\"{reason}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        assert!(count("evicted") >= 1.0);
        // Labels for every request: those in the sample join, the others are counted.
        let joined = (0..200)
            .filter(|i| {
                let id = format!("{i:04}{}", "x".repeat(4 << 10));
                router.feedback(&id, &[1.0]).unwrap()
            })
            .count();
        assert_eq!(joined, waiting);
        assert_eq!(count("sampled"), (200 - waiting) as f64);
        // A zero bound is refused; so is a time-to-live no `Duration` holds (a panic before).
        let refused = |stats: StatsConfig| {
            RouterConfig {
                stats,
                ..RouterConfig::default()
            }
            .check()
            .unwrap_err()
        };
        for bytes in [0, 239] {
            // Below one waiting request's worth, every request would be dropped.
            let e = refused(StatsConfig {
                label_join_bytes: bytes,
                ..StatsConfig::default()
            });
            assert!(
                e.to_string()
                    .contains(&format!("StatsConfig.label_join_bytes = {bytes}"))
                    && e.to_string().contains("at least 240"),
                "{e}"
            );
        }
        let e = refused(StatsConfig {
            label_ttl_seconds: 1e20,
            ..StatsConfig::default()
        });
        assert!(
            e.to_string()
                .contains("invalid StatsConfig.label_ttl_seconds = 1e20"),
            "{e}"
        );
    }

    // Item 4's in-flight bound (503 JSON past it) is tested in tests/http_door.rs, with a
    // model that blocks: an upload still in progress holds no permit.

    /// Item 5: with the connection bound full of clients sending their headers slowly, a
    /// health check still answers (the oldest idle connections are shed) and the shed ones
    /// are closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_header_flood_is_shed_and_health_still_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = ServerConfig {
            max_connections: 4,
            max_in_flight: 2,
            header_timeout_seconds: 600.0,
            ..ServerConfig::default()
        };
        let (addr, stop, _server) = start(server(vec![]).0, config).await;
        let mut slow = Vec::new();
        for _ in 0..10 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHo")
                .await
                .unwrap();
            slow.push(s);
        }
        let r = raw(
            addr,
            b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // 11 connections for 4 places: at least the 7 oldest slow ones were closed.
        for (i, s) in slow.iter_mut().take(7).enumerate() {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("slow connection {i} still open"));
            assert!(matches!(read, Ok(0) | Err(_)), "{i}: {read:?}");
        }
        stop.send(()).unwrap();
    }

    /// Item 5: a client that dribbles its headers a byte at a time is cut off after the
    /// header timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_headers_are_cut_off_by_the_header_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = ServerConfig {
            header_timeout_seconds: 1.0,
            ..ServerConfig::default()
        };
        let (addr, stop, _server) = start(server(vec![]).0, config).await;
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..5 {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (r, mut w) = s.into_split();
            readers.push(r);
            writers.push(tokio::spawn(async move {
                // The head's start, then one more byte of a header value every 100 ms,
                // for as long as the connection takes it.
                let head = b"GET /v2/health/live HTTP/1.1\r\nX-Slow: ";
                for b in head.iter().chain(std::iter::repeat(&b'a')) {
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }));
        }
        for (i, r) in readers.iter_mut().enumerate() {
            let mut out = Vec::new();
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(20), r.read_to_end(&mut out))
                    .await
                    .unwrap_or_else(|_| panic!("slow connection {i} still open after 20 s"));
            let _ = read;
        }
        for w in writers {
            w.abort();
        }
        stop.send(()).unwrap();
    }

    /// Item 6: an empty token set is refused (named), and the scheme is case-insensitive.
    #[tokio::test]
    async fn empty_token_sets_are_refused_and_the_bearer_scheme_is_case_insensitive() {
        use mlops_serve::http::parse_tokens;
        for (source, text) in [
            ("--tokens-file /etc/t", ""),
            ("--tokens-file /etc/t", "\n  \n"),
            ("MLOPS_TOKENS", &",".replace(',', "\n")),
        ] {
            let e = parse_tokens(source, text).unwrap_err().to_string();
            assert!(e.contains(&format!("invalid {source}")), "{e}");
            assert!(e.contains("at least one bearer token"), "{e}");
        }
        assert_eq!(
            parse_tokens("MLOPS_TOKENS", &format!("{TOKEN}\n")).unwrap(),
            [TOKEN]
        );
        let (app, _) = server(vec![TOKEN.to_string()]);
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let r = Request::post("/v2/models/fraud/infer")
                .header("authorization", format!("{scheme} {TOKEN}"))
                .body(Body::from(ok_request(None).to_string()))
                .unwrap();
            assert_eq!(call(&app, r).await.0, StatusCode::OK, "{scheme}");
        }
        for wrong in [format!("Bearer{TOKEN}"), format!("Basic {TOKEN}")] {
            let r = Request::get("/v2/models/fraud")
                .header("authorization", wrong.clone())
                .body(Body::empty())
                .unwrap();
            assert_eq!(call(&app, r).await.0, StatusCode::UNAUTHORIZED, "{wrong}");
        }
    }

    /// Item 1: a background task that panics turns readiness false (server and model), with
    /// the reason; liveness stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_background_task_turns_readiness_false() {
        use mlops_serve::http::{app_with, supervise, Readiness};
        let (_, router) = server(vec![]);
        let readiness = Readiness::new();
        let app = app_with(
            "fraud",
            router,
            None,
            ServerConfig::default().check().unwrap(),
            readiness.clone(),
        )
        .unwrap();
        assert_eq!(call(&app, get("/v2/health/ready")).await.0, StatusCode::OK);
        let died = supervise(&readiness, "rollout controller", async {
            let steps = [50.0_f64, 100.0];
            let i = steps.len() + 1;
            let _ = steps[std::hint::black_box(i)];
            Ok(())
        });
        let reason = tokio::time::timeout(std::time::Duration::from_secs(30), died)
            .await
            .unwrap()
            .unwrap();
        assert!(
            reason.contains("rollout controller panicked")
                && reason.contains("index out of bounds"),
            "{reason}"
        );
        for path in [
            "/v2/health/ready",
            "/v2/models/fraud/ready",
            "/v2/models/fraud/versions/1/ready",
        ] {
            let (status, _, body) = call(&app, get(path)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert!(
                error_of(&body).contains("not ready: rollout controller panicked"),
                "{path}"
            );
        }
        assert_eq!(call(&app, get("/v2/health/live")).await.0, StatusCode::OK);
        // A task that returns an error, or ends, is as fatal as a panic.
        let other = Readiness::new();
        let ended = supervise(&other, "alias follower", async {
            Err(mlops_serve::Error::invalid(
                "alias",
                "\"../prod\"",
                "a name",
            ))
        })
        .await
        .unwrap();
        assert!(ended.contains("alias follower failed"), "{ended}");
        assert!(!other.is_ready());
    }

    /// Item 10: a refused labels post (a wrong count, `[]`) leaves the predictions waiting;
    /// the corrected post joins.
    #[tokio::test]
    async fn a_refused_labels_post_does_not_consume_the_predictions() {
        let (app, router) = server(vec![]);
        let request = json!({"id": "two-rows", "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]});
        assert_eq!(
            call(&app, post_json("/v2/models/fraud/infer", &request))
                .await
                .0,
            StatusCode::OK
        );
        for wrong in [json!([1]), json!([]), json!([1, 0, 1])] {
            let (status, _, body) = call(
                &app,
                post_json(
                    "/v2/models/fraud/labels",
                    &json!({"id": "two-rows", "labels": wrong}),
                ),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
            assert!(
                error_of(&body).contains("2 labels, one per row"),
                "{}",
                error_of(&body)
            );
            assert_eq!(router.awaiting_labels(), 1, "{wrong}");
        }
        let (status, _, body) = call(
            &app,
            post_json(
                "/v2/models/fraud/labels",
                &json!({"id": "two-rows", "labels": [1, 0]}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body)["joined"], true);
        assert_eq!(
            router.snapshot().get("stable").unwrap().labels,
            [true, false]
        );
    }

    /// Item 11: nested data must follow the shape; ragged rows are a 400 naming the input.
    #[tokio::test]
    async fn ragged_nested_data_is_refused() {
        let (app, _) = server(vec![]);
        let cases = [
            (json!([[1, 2], [3, 4, 5, 6]]), "data[0] has 2 elements"),
            (json!([[1, 2, 3, 4], [5, 6]]), "data[0] has 4 elements"),
            (json!([[1, 2, 3], 4, 5, 6]), "shape [2, 3]"),
            (json!([[[1], [2], [3]], [[4], [5], [6]]]), "nested deeper"),
            (json!([[1, 2, 3]]), "data has 1 elements"),
        ];
        for (data, needle) in cases {
            let request = json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": data}]});
            let (status, _, body) = call(&app, post_json("/v2/models/fraud/infer", &request)).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{data}: {}",
                String::from_utf8_lossy(&body)
            );
            let e = error_of(&body);
            assert!(
                e.contains("input \"input\"") && e.contains(needle),
                "{data}: {e}"
            );
        }
        // The issue's case: [[9 values], [11 values]] for [2, 10].
        let e = mlops_serve::http::protocol::decode_request(
            json!({"inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP32", "data": [vec![0.5; 9], vec![0.5; 11]]}]})
                .to_string()
                .as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(
            e.0.contains("input \"x\": data[0] has 9 elements but shape [2, 10] expects 10"),
            "{e}"
        );
        // Well-nested and flat data still decode alike.
        for data in [json!([[1, 2, 3], [4, 5, 6]]), json!([1, 2, 3, 4, 5, 6])] {
            let request = json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": data}]});
            assert_eq!(
                call(&app, post_json("/v2/models/fraud/infer", &request))
                    .await
                    .0,
                StatusCode::OK
            );
        }
    }

    /// Item 17: `serve` does not return while a request is in flight after shutdown starts;
    /// the request is answered, then `serve` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_returns_only_after_the_request_in_flight_is_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, stop, mut server) = start(server(vec![]).0, ServerConfig::default()).await;
        let body = ok_request(None).to_string();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..10]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        stop.send(()).unwrap();
        // The upload is unfinished: serve must still be running (it cannot finish first).
        let early = tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await;
        assert!(
            early.is_err(),
            "serve returned with a request in flight: {early:?}"
        );
        stream.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::timeout(std::time::Duration::from_secs(30), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// Item 17 and the JSON errors: an upload that stalls gets 408 `{"error"}` after the
    /// configured request timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_upload_gets_408_json_after_the_request_timeout() {
        let config = ServerConfig {
            timeout_seconds: 0.5,
            ..ServerConfig::default()
        };
        let (app, _) = server_with(config.clone());
        let (addr, stop, _server) = start(app, config).await;
        let r = raw(
            addr,
            b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"inputs\"",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 408"), "{r}");
        let e = raw_body(&r)["error"].as_str().unwrap().to_string();
        assert!(e.contains("request timeout") && e.contains("0.5 s"), "{e}");
        stop.send(()).unwrap();
    }

    /// The JSON errors: 405, a bad path encoding (400), and the 404 fallback are JSON.
    #[tokio::test]
    async fn every_error_answer_is_json() {
        let (app, _) = server(vec![]);
        let (status, _, body) = call(&app, get("/v2/models/fraud/infer")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            error_of(&body).contains("GET not allowed"),
            "{}",
            error_of(&body)
        );
        let (status, headers, body) = call(&app, get("/v2/models/%FF/ready")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["content-type"], "application/json");
        assert!(!error_of(&body).is_empty());
        let (status, headers, body) = call(
            &app,
            Request::delete("/v2/health/live")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["content-type"], "application/json");
        assert!(!error_of(&body).is_empty());
    }

    /// Item 18: a model whose threshold is 0.99, end to end: the engine reports it, the
    /// server's labels use it, and the live accuracy is measured at it.
    #[tokio::test]
    async fn a_model_with_threshold_0_99_is_served_at_its_threshold() {
        let spec = ModelSpec::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let artifact =
            ModelArtifact::new(spec, vec![(array![[1.0_f32, 0.0, 0.0]], array![0.0_f32])])
                .unwrap()
                .with_threshold(0.99)
                .unwrap();
        let compiled: Arc<dyn Predictor> =
            Arc::new(CompiledModel::compile(&artifact, NonFinitePolicy::Reject).unwrap());
        assert!((compiled.threshold() - 0.99).abs() < 1e-6);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let router = Arc::new(
            Router::new(
                "fraud",
                Routes::single(Variant::new("stable", Some(1), compiled)),
                RouterOptions {
                    metrics,
                    ..RouterOptions::default()
                },
            )
            .unwrap(),
        );
        let app = app(
            "fraud",
            router.clone(),
            Some(Arc::new(registry)),
            ServerConfig::default().check().unwrap(),
        )
        .unwrap();
        // sigmoid(3) = 0.953 (below 0.99, above 0.5), sigmoid(6) = 0.9975.
        let request = json!({"id": "t", "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [3, 0, 0, 6, 0, 0]}]});
        let (status, _, body) = call(&app, post_json("/v2/models/fraud/infer", &request)).await;
        assert_eq!(status, StatusCode::OK);
        let r = json_of(&body);
        assert_eq!(r["outputs"][1]["name"], "label");
        assert_eq!(r["outputs"][1]["data"], json!([0, 1]));
        // The truth agrees with the 0.99 cut: accuracy 1 there (0.5 at a 0.5 cut).
        let (status, _, _) = call(
            &app,
            post_json(
                "/v2/models/fraud/labels",
                &json!({"id": "t", "labels": [0, 1]}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let snapshot = router.snapshot();
        let stable = snapshot.get("stable").unwrap();
        assert!((stable.threshold - 0.99).abs() < 1e-6);
        let text = String::from_utf8(call(&app, get("/metrics")).await.2).unwrap();
        let accuracy: f64 = text
            .lines()
            .find(|l| {
                l.starts_with("mlops_serve_live_accuracy{model=\"fraud\",variant=\"stable\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no live accuracy in {text}"));
        assert!((accuracy - 1.0).abs() < 1e-9, "{accuracy}");
    }

    /// Item 24: binary FP16 and integer tensors decode to known values (little-endian, as
    /// the extension says): a byte-order swap changes every one of them.
    #[test]
    fn binary_fp16_and_integers_decode_to_known_values() {
        use mlops_serve::http::protocol::{decode_request, TensorData};
        let decode = |datatype: &str, count: usize, raw: &[u8]| -> TensorData {
            let header = json!({"inputs": [{"name": "x", "shape": [count], "datatype": datatype, "parameters": {"binary_data_size": raw.len()}}]}).to_string();
            let mut body = header.clone().into_bytes();
            body.extend_from_slice(raw);
            decode_request(&body, Some(header.len()))
                .unwrap_or_else(|e| panic!("{datatype}: {e}"))
                .inputs
                .remove(0)
                .data
        };
        // FP16: 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 = 0.333251953125, 0x7BFF = 65504.
        assert_eq!(
            decode("FP16", 4, &[0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35, 0xFF, 0x7B]),
            // 0.333251953125 is exact in f32 (as every half is).
            TensorData::Fp16(vec![1.0, -2.0, 0.333251953125_f64 as f32, 65504.0])
        );
        // Each datatype at its own width: FP32 stays f32.
        assert_eq!(
            decode("FP32", 1, &[0x00, 0x00, 0x80, 0x3F]),
            TensorData::Fp32(vec![1.0])
        );
        assert_eq!(
            decode("FP64", 1, &[0, 0, 0, 0, 0, 0, 0xF0, 0x3F]),
            TensorData::Fp64(vec![1.0])
        );
        let ints: [(&str, usize, Vec<u8>, TensorData); 8] = [
            ("INT8", 2, vec![0xFF, 0x7F], TensorData::Int8(vec![-1, 127])),
            (
                "UINT8",
                2,
                vec![0xFF, 0x01],
                TensorData::Uint8(vec![255, 1]),
            ),
            (
                "INT16",
                2,
                vec![0x01, 0x80, 0x34, 0x12],
                TensorData::Int16(vec![-32767, 0x1234]),
            ),
            (
                "UINT16",
                1,
                vec![0x01, 0x80],
                TensorData::Uint16(vec![32769]),
            ),
            (
                "INT32",
                2,
                vec![0x78, 0x56, 0x34, 0x12, 0xFE, 0xFF, 0xFF, 0xFF],
                TensorData::Int32(vec![0x1234_5678, -2]),
            ),
            (
                "UINT32",
                1,
                vec![0x01, 0x00, 0x00, 0x80],
                TensorData::Uint32(vec![0x8000_0001]),
            ),
            (
                "INT64",
                1,
                vec![0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                TensorData::Int64(vec![-2]),
            ),
            (
                "UINT64",
                1,
                vec![0x01, 0, 0, 0, 0, 0, 0, 0x80],
                TensorData::Uint64(vec![(1u64 << 63) + 1]),
            ),
        ];
        for (datatype, count, raw, expected) in ints {
            assert_eq!(decode(datatype, count, &raw), expected, "{datatype}");
        }
    }

    /// JSON `data` decodes at its datatype's width, flat or nested, on the fast path (raw
    /// text) and through the tree (a duplicate key sends the body there) alike; a value out
    /// of range is refused by name either way.
    #[test]
    fn json_data_decodes_at_its_own_width_on_both_paths() {
        use mlops_serve::http::protocol::{decode_request, TensorData};
        let decode = |datatype: &str, shape: &str, data: &str, twice: bool| {
            let dup = if twice {
                r#""id": "a", "id": "b", "#
            } else {
                ""
            };
            let body = format!(
                r#"{{{dup}"inputs": [{{"name": "x", "shape": {shape}, "datatype": "{datatype}", "data": {data}}}]}}"#
            );
            decode_request(body.as_bytes(), None).map(|mut r| r.inputs.remove(0).data)
        };
        for twice in [false, true] {
            assert_eq!(
                decode("FP32", "[2, 2]", "[[0.1, 2], [3e0, -4]]", twice),
                Ok(TensorData::Fp32(vec![0.1, 2.0, 3.0, -4.0]))
            );
            assert_eq!(
                decode("FP32", "[2, 2]", "[0.1, 2, 3e0, -4]", twice),
                Ok(TensorData::Fp32(vec![0.1, 2.0, 3.0, -4.0]))
            );
            assert_eq!(
                decode("FP64", "[1]", "0.1", twice),
                Ok(TensorData::Fp64(vec![0.1]))
            );
            assert_eq!(
                decode("INT8", "[3]", "[-128, 0, 127]", twice),
                Ok(TensorData::Int8(vec![-128, 0, 127]))
            );
            assert_eq!(
                decode("UINT64", "[1]", "[18446744073709551615]", twice),
                Ok(TensorData::Uint64(vec![u64::MAX]))
            );
            let e = decode("INT8", "[1]", "[128]", twice).unwrap_err().0;
            assert!(
                e.contains("expected an integer in [-128, 127] for INT8"),
                "{e}"
            );
            let e = decode("INT8", "[1]", "[1.5]", twice).unwrap_err().0;
            assert!(e.contains("expected an integer for INT8"), "{e}");
            let e = decode("FP32", "[1]", "[1e300]", twice).unwrap_err().0;
            assert!(
                e.contains("element 0 = 1000") && e.ends_with("is beyond FP32's range"),
                "{e}"
            );
            let e = decode("FP32", "[2, 2]", "[[1, 2], [3]]", twice)
                .unwrap_err()
                .0;
            assert!(e.contains("data[1] has 1 elements"), "{e}");
            let e = decode("FP32", "[3]", "[1, 2]", twice).unwrap_err().0;
            assert!(
                e.contains("data has 2 elements but its shape holds 3"),
                "{e}"
            );
        }
    }

    /// Item 2: every seconds setting of the server is bounded: a named error, never a panic
    /// (1e20 s) or a zero wait (1e-9 s).
    #[test]
    fn server_seconds_settings_are_bounded() {
        for (field, config) in [
            (
                "ServerConfig.timeout_seconds",
                ServerConfig {
                    timeout_seconds: 1e20,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.timeout_seconds",
                ServerConfig {
                    timeout_seconds: 1e-9,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.header_timeout_seconds",
                ServerConfig {
                    header_timeout_seconds: 1e300,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.header_timeout_seconds",
                ServerConfig {
                    header_timeout_seconds: 0.0,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.max_in_flight",
                ServerConfig {
                    max_in_flight: 0,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.max_connections",
                ServerConfig {
                    max_connections: 1,
                    ..ServerConfig::default()
                },
            ),
            (
                "ServerConfig.max_id_bytes",
                ServerConfig {
                    max_id_bytes: 1 << 30,
                    ..ServerConfig::default()
                },
            ),
        ] {
            let e = config.check().unwrap_err().to_string();
            assert!(e.contains(&format!("invalid {field}")), "{e}");
        }
        ServerConfig::default().check().unwrap();
    }

    /// Issue 23: the server's config has serde like every other config: a JSON round trip,
    /// an unknown field refused, a stored config checked on the way in, and the default
    /// passes its check.
    #[test]
    fn the_server_config_round_trips_through_json_and_refuses_unknown_fields() {
        use mlops_serve::http::CheckedServerConfig;
        let config = ServerConfig {
            timeout_seconds: 2.5,
            tokens: vec!["a-token-of-16-chars".into()],
            max_in_flight: 8,
            ..ServerConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<ServerConfig>(&json).unwrap(), config);
        let checked = config.clone().check().unwrap();
        assert_eq!(serde_json::to_string(&checked).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<CheckedServerConfig>(&json).unwrap(),
            checked
        );
        let partial: ServerConfig = serde_json::from_str(r#"{"max_in_flight": 8}"#).unwrap();
        assert_eq!(
            partial.timeout_seconds,
            ServerConfig::default().timeout_seconds
        );
        let e = serde_json::from_str::<ServerConfig>(r#"{"timeout": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `timeout`"), "{e}");
        let e = serde_json::from_str::<CheckedServerConfig>(r#"{"max_in_flight": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid ServerConfig.max_in_flight = 0"), "{e}");
        assert_eq!(
            ServerConfig::default().check().unwrap(),
            CheckedServerConfig::default()
        );
    }
}

// What a plain `cargo test -p mlops-serve` leaves out, said in its output.
#[cfg(not(feature = "http"))]
#[test]
#[ignore = "left out: the KServe V2 server suite; run with --features http (the workspace test does)"]
fn server() {}
