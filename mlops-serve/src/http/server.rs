//! The HTTP server: the KServe V2 REST endpoints on axum, the [`Router`] in the request path,
//! delayed labels, `/metrics`, a body limit, a timeout, and optional bearer-token auth.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ndarray::Array2;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::protocol::{
    decode_request, encode_response, DataType, Output, OutputData, RequestedOutput, TensorData,
};
use crate::router::{Request, Router};
use crate::{Error, Result};

/// The input tensor's name in the model metadata.
pub const INPUT: &str = "input";
/// The probability output (`FP32`, `[batch]`).
pub const PROBABILITY: &str = "probability";
/// The label output (`INT64`, `[batch]`: 1 when the probability is at least the model's
/// threshold, 0 below it, -1 for a row the model could not score).
pub const LABEL: &str = "label";

/// The server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Largest request body in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take, in seconds; slower ones get 408.
    pub timeout_seconds: f64,
    /// The header carrying the sticky routing key.
    pub key_header: String,
    /// The header forcing a variant.
    pub variant_header: String,
    /// Bearer tokens accepted (empty: no authentication). Health endpoints stay open.
    pub tokens: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit_bytes: 16 << 20,
            timeout_seconds: 30.0,
            key_header: "mlops-request-key".into(),
            variant_header: "mlops-variant".into(),
            tokens: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.body_limit_bytes < 1024 {
            return Err(Error::invalid(
                "ServerConfig.body_limit_bytes",
                self.body_limit_bytes,
                "at least 1024 bytes",
            ));
        }
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return Err(Error::invalid(
                "ServerConfig.timeout_seconds",
                self.timeout_seconds,
                "seconds > 0",
            ));
        }
        for (field, name) in [
            ("ServerConfig.key_header", &self.key_header),
            ("ServerConfig.variant_header", &self.variant_header),
        ] {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::invalid(
                    field,
                    format!("{name:?}"),
                    "a valid HTTP header name",
                ));
            }
        }
        if let Some(i) = self
            .tokens
            .iter()
            .position(|t| t.len() < 16 || t.chars().any(char::is_whitespace))
        {
            return Err(Error::invalid(
                format!("ServerConfig.tokens[{i}]"),
                "(not shown)",
                "a token of at least 16 characters without whitespace",
            ));
        }
        Ok(())
    }
}

/// What the handlers share.
struct Shared {
    model: String,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: ServerConfig,
    /// SHA-256 of each accepted token (compared in constant time).
    tokens: Vec<[u8; 32]>,
}

/// An error answer: a status and `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The axum application serving `model` through `router`. `metrics`, when given, is what
/// `/metrics` exposes (the registry the router's and the drift monitor's families live in).
pub fn app(
    model: &str,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: ServerConfig,
) -> Result<axum::Router> {
    config.validate()?;
    let tokens = config
        .tokens
        .iter()
        .map(|t| Sha256::digest(t.as_bytes()).into())
        .collect();
    let timeout = Duration::from_secs_f64(config.timeout_seconds);
    let limit = config.body_limit_bytes;
    let shared = Arc::new(Shared {
        model: model.to_string(),
        router,
        metrics,
        config,
        tokens,
    });
    let v2 = axum::Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_version),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/v2/models/{model}/labels", post(labels))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    Ok(axum::Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .merge(v2)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(shared))
}

/// Bearer-token authentication: a 401 that does not say which part was wrong.
async fn authenticate(State(s): State<Arc<Shared>>, request: HttpRequest, next: Next) -> Response {
    if s.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() });
    let ok = presented.is_some_and(|p| {
        s.tokens
            .iter()
            .fold(subtle::Choice::from(0), |any, t| any | t.ct_eq(&p))
            .into()
    });
    if ok {
        next.run(request).await
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "mlops",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

/// The variant a version reference names: a number among the loaded versions, or an alias
/// (`production` / `stable`, `canary`, or a variant's name).
fn variant_for(s: &Shared, version: &str) -> Option<(String, Option<u64>)> {
    let routes = s.router.routes();
    let by_name = |name: &str| {
        routes
            .variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| (v.name.clone(), v.version))
    };
    match version.parse::<u64>() {
        Ok(n) => routes
            .variants
            .iter()
            .find(|v| v.version == Some(n))
            .map(|v| (v.name.clone(), v.version)),
        Err(_) => match version {
            "production" => by_name("stable"),
            other => by_name(other),
        },
    }
}

fn unknown_model(s: &Shared, model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown model {model:?}: this server serves {:?}", s.model),
    )
}

fn metadata(s: &Shared, version: Option<u64>) -> Response {
    let routes = s.router.routes();
    let features = routes.variants[0].predictor.feature_names().to_vec();
    let versions: Vec<String> = routes
        .variants
        .iter()
        .filter_map(|v| v.version)
        .map(|v| v.to_string())
        .collect();
    let mut body = json!({
        "name": s.model,
        "versions": versions,
        "platform": "mlops",
        "inputs": [{ "name": INPUT, "datatype": "FP32", "shape": [-1, features.len()] }],
        "outputs": [
            { "name": PROBABILITY, "datatype": "FP32", "shape": [-1] },
            { "name": LABEL, "datatype": "INT64", "shape": [-1] },
        ],
        "parameters": { "features": features.join(",") },
    });
    if let Some(v) = version {
        body["versions"] = json!([v.to_string()]);
    }
    axum::Json(body).into_response()
}

async fn model_metadata(State(s): State<Arc<Shared>>, Path(model): Path<String>) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    metadata(&s, None)
}

async fn model_metadata_version(
    State(s): State<Arc<Shared>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    match variant_for(&s, &version) {
        Some((_, v)) => metadata(&s, v),
        None => error(
            StatusCode::NOT_FOUND,
            format!("unknown version {version:?} of model {model:?}"),
        ),
    }
}

async fn model_ready(State(s): State<Arc<Shared>>, Path(model): Path<String>) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    StatusCode::OK.into_response()
}

async fn model_ready_version(
    State(s): State<Arc<Shared>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    match variant_for(&s, &version) {
        Some(_) => StatusCode::OK.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("unknown version {version:?} of model {model:?}"),
        ),
    }
}

async fn infer(
    State(s): State<Arc<Shared>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    run_infer(&s, &model, None, &headers, body)
}

async fn infer_version(
    State(s): State<Arc<Shared>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    run_infer(&s, &model, Some(&version), &headers, body)
}

fn body_error(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let status = if status == StatusCode::PAYLOAD_TOO_LARGE || status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, format!("request body: {}", rejection.body_text()))
}

/// The `[batch, n]` feature matrix from the one input.
fn features(
    s: &Shared,
    inputs: &[super::protocol::Tensor],
) -> std::result::Result<Array2<f32>, String> {
    let n = s.router.routes().variants[0].predictor.n_features();
    let [input] = inputs else {
        return Err(format!(
            "expected exactly one input ({INPUT:?}), got {}",
            inputs.len()
        ));
    };
    if input.name != INPUT {
        return Err(format!(
            "unknown input {:?}: this model's input is {INPUT:?}",
            input.name
        ));
    }
    if !matches!(
        input.datatype,
        DataType::Fp32 | DataType::Fp64 | DataType::Fp16
    ) {
        return Err(format!(
            "input {INPUT:?}: datatype {} not accepted; expected FP32 (or FP64, FP16)",
            input.datatype.name()
        ));
    }
    let &[rows, cols] = input.shape.as_slice() else {
        return Err(format!(
            "input {INPUT:?}: shape {:?}; expected [batch, {n}]",
            input.shape
        ));
    };
    if cols != n {
        return Err(format!(
            "input {INPUT:?}: shape {:?}; expected [batch, {n}] ({n} features)",
            input.shape
        ));
    }
    let TensorData::Float(values) = &input.data else {
        return Err(format!("input {INPUT:?}: expected numbers"));
    };
    let mut converted = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        let f = v as f32;
        if v.is_finite() && !f.is_finite() {
            return Err(format!(
                "input {INPUT:?}: element {i} = {v} is beyond FP32's range"
            ));
        }
        converted.push(f);
    }
    Array2::from_shape_vec((rows, cols), converted).map_err(|e| format!("input {INPUT:?}: {e}"))
}

fn run_infer(
    s: &Shared,
    model: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    if model != s.model {
        return unknown_model(s, model);
    }
    let forced = match version {
        None => None,
        Some(v) => match variant_for(s, v) {
            Some((name, _)) => Some(name),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("unknown version {v:?} of model {model:?}"),
                )
            }
        },
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return body_error(rejection),
    };
    let header_length = match headers.get("inference-header-content-length") {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(n) => Some(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Inference-Header-Content-Length: expected a byte count",
                )
            }
        },
    };
    let request = match decode_request(&body, header_length) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let x = match features(s, &request.inputs) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let requested: Vec<RequestedOutput> = match &request.outputs {
        Some(outputs) => {
            if let Some((k, o)) = outputs
                .iter()
                .enumerate()
                .find(|(k, o)| outputs[..*k].iter().any(|p| p.name == o.name))
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("outputs[{k}]: {:?} is asked for twice", o.name),
                );
            }
            if let Some(o) = outputs
                .iter()
                .find(|o| o.name != PROBABILITY && o.name != LABEL)
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown output {:?}: expected {PROBABILITY:?} or {LABEL:?}",
                        o.name
                    ),
                );
            }
            outputs.clone()
        }
        None => [PROBABILITY, LABEL]
            .map(|name| RequestedOutput {
                name: name.into(),
                binary: request.binary_output,
            })
            .to_vec(),
    };
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let force = forced
        .as_deref()
        .or_else(|| header_text(&s.config.variant_header));
    let route = Request {
        key: header_text(&s.config.key_header),
        force,
        request_id: request.id.as_deref(),
    };
    let mut probabilities = vec![0.0_f32; x.nrows()];
    let routed = match s.router.route(&route, x.view(), &mut probabilities) {
        Ok(r) => r,
        Err(e @ (Error::InvalidValue { .. } | Error::LengthMismatch { .. })) => {
            return error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the model failed: {e}"),
            )
        }
    };
    // The labels first (from the probabilities), then the probabilities themselves are
    // moved into their output: no copy of the batch on the way out.
    let labels: Vec<i64> = probabilities
        .iter()
        .map(|&p| {
            if p.is_nan() {
                -1
            } else {
                i64::from(p >= routed.threshold)
            }
        })
        .collect();
    let (mut probabilities, mut labels) = (Some(probabilities), Some(labels));
    let outputs: Vec<Output> = requested
        .iter()
        .map(|o| Output {
            name: o.name.clone(),
            shape: vec![x.nrows()],
            binary: o.binary,
            data: if o.name == PROBABILITY {
                OutputData::Fp32(probabilities.take().unwrap_or_default())
            } else {
                OutputData::Int64(labels.take().unwrap_or_default())
            },
        })
        .collect();
    let encoded = encode_response(
        &s.model,
        routed.version.map(|v| v.to_string()),
        request.id.as_deref(),
        Some(json!({ "variant": &*routed.variant })),
        &outputs,
    );
    let mut response = Response::new(axum::body::Body::from(encoded.body));
    let h = response.headers_mut();
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert("inference-header-content-length", HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    response
}

/// `{"id": "...", "labels": [0, 1, ...]}`: the labels of an earlier request.
async fn labels(
    State(s): State<Arc<Shared>>,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return body_error(rejection),
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("labels body: not valid JSON: {e}"),
            )
        }
    };
    let Some(id) = parsed.get("id").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "labels body: missing string \"id\"",
        );
    };
    let Some(values) = parsed.get("labels").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "labels body: missing array \"labels\"",
        );
    };
    let Some(labels) = values
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<f64>>>()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "labels body: every label must be a number (0 or 1)",
        );
    };
    match s.router.feedback(id, &labels) {
        Ok(joined) => axum::Json(json!({ "id": id, "joined": joined })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn metrics_text(State(s): State<Arc<Shared>>) -> Response {
    let Some(registry) = &s.metrics else {
        return error(
            StatusCode::NOT_FOUND,
            "this server exposes no metrics registry",
        );
    };
    s.router.snapshot(); // refresh the live accuracy and AUC gauges
    match mlops_core::exposition::classic_text(registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                mlops_core::exposition::CLASSIC_CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves `app` on `listener` until `shutdown` completes; requests in flight then finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
