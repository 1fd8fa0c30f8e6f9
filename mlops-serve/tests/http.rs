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
    use mlops_serve::metrics::ServeMetrics;
    use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
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
            app("fraud", router.clone(), Some(Arc::new(registry)), config).unwrap(),
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
        let (_, router) = server(vec![]);
        app(
            "fraud",
            router,
            None,
            ServerConfig {
                tokens,
                ..ServerConfig::default()
            },
        )
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
}

// What a plain `cargo test -p mlops-serve` leaves out, said in its output.
#[cfg(not(feature = "http"))]
#[test]
#[ignore = "left out: the KServe V2 server suite; run with --features http (the workspace test does)"]
fn server() {}
