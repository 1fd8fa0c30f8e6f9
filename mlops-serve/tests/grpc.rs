//! The KServe V2 gRPC service in process, beside the REST application on one state: inference
//! equal to REST's, the router's metrics counting gRPC requests, tokens, errors as status
//! codes, and the connection bounds of `serve_grpc` (a silent connection is closed after the
//! header timeout; past `max_connections` a connection is closed at once).

#[cfg(not(feature = "grpc"))]
#[test]
#[ignore = "left out: cargo test -p mlops-serve --features grpc --test integration grpc::"]
fn grpc_service() {}

#[cfg(feature = "grpc")]
mod service {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
    use mlops_serve::http::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlops_serve::http::grpc::pb::{
        model_infer_request::InferInputTensor, InferTensorContents, ModelInferRequest,
        ModelMetadataRequest, ServerLiveRequest,
    };
    use mlops_serve::http::grpc::{serve_grpc, services};
    use mlops_serve::http::{Readiness, ServerConfig};
    use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
    use mlops_serve::telemetry::ServeMetrics;
    use mlops_serve::{CompiledModel, NonFinitePolicy};
    use ndarray::array;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret-token-0123456789";

    fn model() -> Arc<dyn Predictor> {
        let spec = ModelSpec::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![LayerSpec::new(1, Activation::Sigmoid)],
        );
        let a = ModelArtifact::new(spec, vec![(array![[1.0_f32, 0.5, -0.5]], array![0.1_f32])])
            .unwrap();
        Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap())
    }

    struct Running {
        rest: axum::Router,
        url: String,
        registry: Arc<prometheus_client::registry::Registry>,
        addr: std::net::SocketAddr,
    }

    async fn start(config: ServerConfig) -> Running {
        start_with(config, model()).await
    }

    async fn start_with(config: ServerConfig, model: Arc<dyn Predictor>) -> Running {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let routes = Routes {
            variants: vec![Variant::new("stable", Some(1), model)],
            weights: vec![("stable".into(), 100.0)],
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
        let registry = Arc::new(registry);
        let checked = config.check().unwrap();
        let (rest, grpc) = services(
            "fraud",
            router,
            Some(registry.clone()),
            checked.clone(),
            Readiness::new(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            serve_grpc(listener, grpc, &checked, std::future::pending())
                .await
                .unwrap()
        });
        Running {
            rest,
            url: format!("http://{addr}"),
            registry,
            addr,
        }
    }

    async fn connect(
        url: &str,
    ) -> Result<GrpcInferenceServiceClient<tonic::transport::Channel>, tonic::transport::Error>
    {
        let channel = tonic::transport::Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await?;
        Ok(GrpcInferenceServiceClient::new(channel))
    }

    fn infer_request(rows: &[[f32; 3]]) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "fraud".into(),
            id: "r-1".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![rows.len() as i64, 3],
                contents: Some(InferTensorContents {
                    fp32_contents: rows.iter().flatten().copied().collect(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    fn authorized<T>(message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        r
    }

    fn requests_counted(registry: &prometheus_client::registry::Registry) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with("mlops_serve_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_inference_equals_rest_and_is_counted_by_the_same_router() {
        let server = start(ServerConfig {
            tokens: vec![TOKEN.into()],
            ..ServerConfig::default()
        })
        .await;
        let mut client = connect(&server.url).await.unwrap();
        // Health is open; everything else asks for the token.
        assert!(
            client
                .server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        let e = client
            .model_infer(infer_request(&[[1.0, 2.0, 3.0]]))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::Unauthenticated, "unauthorized")
        );
        let meta = client
            .model_metadata(authorized(ModelMetadataRequest {
                name: "fraud".into(),
                version: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (meta.inputs[0].shape.clone(), meta.versions),
            (vec![-1, 3], vec!["1".to_string()])
        );
        let rows = [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]];
        let answer = client
            .model_infer(authorized(infer_request(&rows)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (answer.id.as_str(), answer.model_version.as_str()),
            ("r-1", "1")
        );
        let p: Vec<f32> = answer.raw_output_contents[0]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let labels: Vec<i64> = answer.raw_output_contents[1]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        // REST on the same state gives the same numbers.
        let body = serde_json::json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
        "data": rows.iter().flatten().collect::<Vec<_>>()}]});
        let response = server
            .rest
            .clone()
            .oneshot(
                axum::http::Request::post("/v2/models/fraud/infer")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let rest_p: Vec<f32> = json["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(p, rest_p);
        assert_eq!(
            labels,
            p.iter().map(|&p| i64::from(p >= 0.5)).collect::<Vec<_>>()
        );
        // One REST and one gRPC inference: the router counted both (the refused call, none).
        assert_eq!(requests_counted(&server.registry), 2.0);
        // A bad request is INVALID_ARGUMENT with the REST message; nothing is counted.
        let mut bad = infer_request(&rows);
        bad.inputs[0].shape = vec![3, 3];
        let e = client.model_infer(authorized(bad)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("6 values for shape [3, 3]"), "{e}");
        let mut raw = infer_request(&rows);
        raw.inputs[0].contents = None;
        raw.raw_input_contents = vec![vec![0_u8; 23]];
        let e = client.model_infer(authorized(raw)).await.unwrap_err();
        assert!(
            e.message()
                .contains("raw_input_contents of 23 bytes; expected 6 FP32 values (24 bytes)"),
            "{e}"
        );
        let mut huge = infer_request(&rows);
        huge.inputs[0].shape = vec![i64::MAX, i64::MAX];
        let e = client.model_infer(authorized(huge)).await.unwrap_err();
        assert!(e.message().contains("too many elements"), "{e}");
        let mut negative = infer_request(&rows);
        negative.inputs[0].shape = vec![-2, 3];
        let e = client.model_infer(authorized(negative)).await.unwrap_err();
        assert!(e.message().contains("dimensions ≥ 0"), "{e}");
        let mut other = infer_request(&rows);
        other.model_name = "other".into();
        let e = client.model_infer(authorized(other)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
        assert_eq!(requests_counted(&server.registry), 2.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_bound_are_closed_and_silent_ones_after_the_header_timeout() {
        // The bound: two silent connections hold both slots (a header timeout of 10 minutes
        // keeps them), and a third is closed.
        let bounded = start(ServerConfig {
            max_connections: 2,
            max_in_flight: 1,
            header_timeout_seconds: 600.0,
            ..ServerConfig::default()
        })
        .await;
        let _one = tokio::net::TcpStream::connect(bounded.addr).await.unwrap();
        let _two = tokio::net::TcpStream::connect(bounded.addr).await.unwrap();
        let mut third = tokio::net::TcpStream::connect(bounded.addr).await.unwrap();
        let mut buf = [0_u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(30), third.read(&mut buf))
            .await
            .expect("the connection past the bound is closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The header timeout: a connection that never speaks, or speaks something else than
        // HTTP/2, is closed (with no check it would stay open for good).
        let server = start(ServerConfig {
            max_connections: 4,
            max_in_flight: 1,
            header_timeout_seconds: 0.3,
            ..ServerConfig::default()
        })
        .await;
        let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut junk = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        for conn in [&mut silent, &mut junk] {
            let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
                .await
                .expect("closed")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        // A real client is served.
        let mut client = connect(&server.url).await.unwrap();
        let answer = client
            .model_infer(infer_request(&[[0.0, 0.0, 0.0]]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.outputs.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_door_refuses_before_decoding_and_amplifying_messages_are_refused_on_the_wire() {
        let server = start(ServerConfig {
            tokens: vec![TOKEN.into()],
            ..ServerConfig::default()
        })
        .await;
        let mut client = connect(&server.url).await.unwrap();
        // Without a token, a message that would not decode either is refused as
        // unauthenticated: the door answers before the message is read.
        let mut many = infer_request(&[[1.0, 2.0, 3.0]]);
        many.inputs = vec![InferInputTensor::default(); 10_000];
        let e = client.model_infer(many.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        // With one, the counts are checked on the bytes.
        let e = client.model_infer(authorized(many)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("exactly one input"), "{e}");
        let mut outputs = infer_request(&[[1.0, 2.0, 3.0]]);
        outputs.outputs = vec![Default::default(); 5_000];
        let e = client.model_infer(authorized(outputs)).await.unwrap_err();
        assert!(e.message().contains("more than 2 outputs"), "{e}");
        let mut shape = infer_request(&[[1.0, 2.0, 3.0]]);
        shape.inputs[0].shape = vec![1; 100_000];
        let e = client.model_infer(authorized(shape)).await.unwrap_err();
        assert!(e.message().contains("more than 8 dimensions"), "{e}");
        let mut params = infer_request(&[[1.0, 2.0, 3.0]]);
        params.parameters = (0..100)
            .map(|i| (format!("p{i}"), Default::default()))
            .collect();
        let e = client.model_infer(authorized(params)).await.unwrap_err();
        assert!(
            e.message().contains("more than 16 request parameters"),
            "{e}"
        );
        // A long name is refused without being echoed.
        let mut name = infer_request(&[[1.0, 2.0, 3.0]]);
        name.model_name = "m".repeat(100_000);
        let e = client.model_infer(authorized(name)).await.unwrap_err();
        assert!(
            e.message()
                .contains("model name of 100000 bytes; expected at most 256"),
            "{e}"
        );
        assert!(e.message().len() < 200);
        // The group parameter is read as REST reads it.
        let mut group = infer_request(&[[1.0, 2.0, 3.0]]);
        group.parameters.insert(
            "group".into(),
            mlops_serve::http::grpc::pb::InferParameter {
                parameter_choice: Some(
                    mlops_serve::http::grpc::pb::infer_parameter::ParameterChoice::Int64Param(3),
                ),
            },
        );
        let e = client.model_infer(authorized(group)).await.unwrap_err();
        assert!(e.message().contains("parameters.group"), "{e}");
        // Nothing of this reached the router.
        assert_eq!(requests_counted(&server.registry), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_served_without_the_door_still_asks_for_the_token() {
        use mlops_serve::http::grpc::pb::grpc_inference_service_server::GrpcInferenceServiceServer;
        let router = Arc::new(
            Router::new(
                "fraud",
                Routes {
                    variants: vec![Variant::new("stable", Some(1), model())],
                    weights: vec![("stable".into(), 100.0)],
                    shadow: None,
                },
                RouterOptions::default(),
            )
            .unwrap(),
        );
        let config = ServerConfig {
            tokens: vec![TOKEN.into()],
            ..ServerConfig::default()
        }
        .check()
        .unwrap();
        let (_, grpc) = services("fraud", router, None, config, Readiness::new()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(GrpcInferenceServiceServer::new(grpc))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = connect(&url).await.unwrap();
        let e = client
            .model_infer(infer_request(&[[1.0, 2.0, 3.0]]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let ok = client
            .model_infer(authorized(infer_request(&[[1.0, 2.0, 3.0]])))
            .await
            .unwrap();
        assert_eq!(ok.into_inner().outputs.len(), 2);
    }

    /// [`model`], whose first call says so and waits for the test's release, recording each
    /// call's rows.
    struct Gated {
        inner: Arc<dyn Predictor>,
        calls: std::sync::Mutex<Vec<usize>>,
        entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl Predictor for Gated {
        fn feature_names(&self) -> &[String] {
            self.inner.feature_names()
        }
        fn predict_proba_into(
            &self,
            x: ndarray::ArrayView2<'_, f32>,
            out: &mut [f32],
        ) -> mlops_core::Result<()> {
            self.calls.lock().unwrap().push(x.nrows());
            let entered = self.entered.lock().unwrap().take();
            let release = self.release.lock().unwrap().take();
            if let (Some(entered), Some(release)) = (entered, release) {
                entered.send(()).unwrap();
                let _ = release.recv_timeout(Duration::from_secs(30));
            }
            self.inner.predict_proba_into(x, out)
        }
    }

    fn scrape(registry: &prometheus_client::registry::Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batching_scores_concurrent_rest_and_grpc_requests_in_one_call_with_the_same_answers() {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let gated = Arc::new(Gated {
            inner: model(),
            calls: Default::default(),
            entered: std::sync::Mutex::new(Some(entered_tx)),
            release: std::sync::Mutex::new(Some(release_rx)),
        });
        let server = start_with(
            ServerConfig {
                batching: Some(mlops_serve::batch::BatchConfig {
                    max_delay_micros: 0,
                    ..Default::default()
                }),
                ..ServerConfig::default()
            },
            gated.clone(),
        )
        .await;
        let rows = |i: usize| {
            let v = i as f32 * 0.1;
            [[v, 0.3, -v], [1.7, v / 3.0, 2.2]]
        };
        let grpc = |i: usize| {
            let url = server.url.clone();
            tokio::spawn(async move {
                let mut client = connect(&url).await.unwrap();
                let answer = client
                    .model_infer(infer_request(&rows(i)))
                    .await
                    .unwrap()
                    .into_inner();
                answer.raw_output_contents[0]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect::<Vec<f32>>()
            })
        };
        let rest = |i: usize| {
            let app = server.rest.clone();
            tokio::spawn(async move {
                let body = serde_json::json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
                    "data": rows(i).iter().flatten().collect::<Vec<_>>()}]});
                let response = app
                    .oneshot(
                        axum::http::Request::post("/v2/models/fraud/infer")
                            .body(Body::from(body.to_string()))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                json["outputs"][0]["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect::<Vec<f32>>()
            })
        };
        // The first request holds the model; eight more, of both protocols, queue behind it.
        let first = grpc(0);
        tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
        let waiting: Vec<_> = (1..=8)
            .map(|i| (i, if i % 2 == 0 { grpc(i) } else { rest(i) }))
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !scrape(&server.registry)
            .contains("mlops_serve_batch_queued_rows{model=\"fraud\"} 16")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                scrape(&server.registry)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        first.await.unwrap();
        for (i, answer) in waiting {
            let got = answer.await.unwrap();
            let want = model()
                .predict_proba(ndarray::arr2(&rows(i)).view())
                .unwrap()
                .to_vec();
            // Equal up to float rounding: a batch of 16 rows sums in another order.
            assert_eq!(got.len(), want.len(), "request {i}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6, "request {i}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(*gated.calls.lock().unwrap(), vec![2, 16]);
        let text = scrape(&server.registry);
        assert!(
            text.contains("mlops_serve_batch_rows_count{model=\"fraud\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mlops_serve_batch_queued_rows{model=\"fraud\"} 0"),
            "{text}"
        );
        assert_eq!(requests_counted(&server.registry), 9.0);
    }

    /// A REST request's status and body.
    async fn answer_of(app: &axum::Router, request: axum::http::Request<Body>) -> (u16, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_and_unbatched_servers_answer_every_request_alike() {
        let plain = start(ServerConfig::default()).await;
        let batched = start(ServerConfig {
            batching: Some(mlops_serve::batch::BatchConfig::default()),
            ..ServerConfig::default()
        })
        .await;
        let json = |body: serde_json::Value| {
            move || {
                axum::http::Request::post("/v2/models/fraud/infer")
                    .body(Body::from(body.to_string()))
                    .unwrap()
            }
        };
        let nan_binary = || {
            let header = br#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#;
            let mut body = header.to_vec();
            for v in [1.0_f32, f32::NAN, 2.0] {
                body.extend(v.to_le_bytes());
            }
            axum::http::Request::post("/v2/models/fraud/infer")
                .header("inference-header-content-length", header.len())
                .body(Body::from(body))
                .unwrap()
        };
        let forced = || {
            axum::http::Request::post("/v2/models/fraud/infer")
                .header("mlops-variant", "canary")
                .body(Body::from(
                    r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#,
                ))
                .unwrap()
        };
        type Builds = Box<dyn Fn() -> axum::http::Request<Body>>;
        let cases: Vec<(&str, Builds)> = vec![
            (
                "two rows",
                Box::new(json(
                    serde_json::json!({"id": "x", "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, -1, 0.5, 4]}]}),
                )),
            ),
            (
                "no rows",
                Box::new(json(
                    serde_json::json!({"inputs": [{"name": "input", "shape": [0, 3], "datatype": "FP32", "data": []}]}),
                )),
            ),
            (
                "wrong width",
                Box::new(json(
                    serde_json::json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}),
                )),
            ),
            (
                "one output",
                Box::new(json(
                    serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "outputs": [{"name": "label"}]}),
                )),
            ),
            ("NaN refused", Box::new(nan_binary)),
            ("unknown forced variant", Box::new(forced)),
        ];
        for (what, request) in cases {
            let a = answer_of(&plain.rest, request()).await;
            let b = answer_of(&batched.rest, request()).await;
            assert_eq!(a, b, "{what}");
            assert!(
                what != "NaN refused" || (a.0 == 400 && a.1.contains("NaN")),
                "{what}: {a:?}"
            );
            assert!(what != "two rows" || a.0 == 200, "{what}: {a:?}");
        }
    }
}
