//! The Open Inference Protocol (KServe V2) over gRPC (feature `grpc`): the
//! `inference.GRPCInferenceService` calls `ServerLive`, `ServerReady`, `ModelReady`,
//! `ServerMetadata`, `ModelMetadata` and `ModelInfer`, served by tonic from the same state as
//! the REST application ([`services`]): one router (its metrics recorded once per request,
//! whichever protocol), one in-flight budget, the same bearer tokens, and every error as a gRPC
//! status whose code follows the REST answer's status (400 `INVALID_ARGUMENT`, 401
//! `UNAUTHENTICATED`, 404 `NOT_FOUND`, 503 `UNAVAILABLE`, 500 `INTERNAL`).
//!
//! [`serve_grpc`] bounds what a client controls as the REST server does: connections
//! ([`ServerConfig::max_connections`]; past it a connection is closed at once; one that has
//! not sent HTTP/2's preface within [`ServerConfig::header_timeout_seconds`] is closed), a
//! message
//! ([`ServerConfig::body_limit_bytes`], tonic's `OUT_OF_RANGE` past it, before decoding), headers
//! ([`ServerConfig::max_header_bytes`]), streams at once per connection
//! ([`ServerConfig::max_in_flight`]), the request id ([`ServerConfig::max_id_bytes`]) and
//! time ([`ServerConfig::timeout_seconds`], `CANCELLED` past it).
//!
//! ```no_run
//! # async fn run(router: std::sync::Arc<mlops_serve::router::Router>) -> mlops_serve::Result<()> {
//! use mlops_serve::http::{grpc, serve_with, CheckedServerConfig, Readiness};
//!
//! let config = CheckedServerConfig::default();
//! let (rest, grpc_service) = grpc::services("fraud", router, None, config.clone(), Readiness::new())?;
//! let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await.unwrap();
//! let (a, b) = tokio::join!(
//!     serve_with(rest_listener, rest, &config, std::future::pending()),
//!     grpc::serve_grpc(grpc_listener, grpc_service, &config, std::future::pending()),
//! );
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::door::Rules;
use super::error::HttpError;
pub use super::grpc_wire::{
    CheckedCodec, CheckedDecoder, WireCheck, MAX_PARAMETERS, MAX_SHAPE_DIMENSIONS,
};
use super::protocol::{DataType, Tensor, TensorData};
use super::server::{
    busy_in_flight, features, id_too_long, infer_with, state, try_in_flight, unknown_model_error,
    variant_for, CheckedServerConfig, InFlight, Readiness, Shared, DRAIN_MARGIN, INPUT, LABEL,
    PROBABILITY,
};
use crate::router::{OwnedRequest, Routed, Router};
use crate::Result;
use ndarray::Array2;

#[cfg(doc)]
use super::server::ServerConfig;

/// The messages and the service of `proto/grpc_predict_v2.proto` (package `inference`), as
/// tonic generates them: the server and a client (generic over its transport).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::model_infer_response::InferOutputTensor;
use pb::{infer_parameter::ParameterChoice, InferParameter, ModelInferRequest, ModelInferResponse};

/// The gRPC service over the REST application's state ([`services`]).
#[derive(Clone)]
pub struct Grpc {
    s: Arc<Shared>,
    rules: Arc<Rules>,
}

impl std::fmt::Debug for Grpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc")
            .field("model", &self.s.model)
            .finish()
    }
}

/// The REST application ([`super::app_with`]) and the gRPC service of `model` through
/// `router`, sharing one state: the same router, in-flight budget, tokens and readiness.
pub fn services(
    model: &str,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: CheckedServerConfig,
    readiness: Readiness,
) -> Result<(axum::Router, Grpc)> {
    let (shared, rules) = state(model, router, metrics, config, readiness)?;
    let rest = super::server::rest(shared.clone(), rules.clone());
    Ok((rest, Grpc { s: shared, rules }))
}

/// The longest name (model, version, input, datatype, output) a request may carry: longer is
/// refused without echoing it.
pub const MAX_NAME_BYTES: usize = 256;

/// How long a gRPC connection lives: then the server sends GOAWAY and the client reconnects
/// (a connection kept open by pings alone frees its slot of
/// [`ServerConfig::max_connections`] at the latest then).
pub const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(300);

fn long_name(what: &str, name: &str) -> std::result::Result<(), Status> {
    if name.len() > MAX_NAME_BYTES {
        return Err(bad(format!(
            "{what} of {} bytes; expected at most {MAX_NAME_BYTES} bytes",
            name.len()
        )));
    }
    Ok(())
}

/// The door of the gRPC service, before a message is read: the bearer token (every call but
/// the health checks) and, for an inference, one of the in-flight permits the REST endpoints
/// share ([`ServerConfig::max_in_flight`]), held until the answer is made. A refusal costs no
/// decoding.
#[derive(Clone)]
struct GrpcDoor<S> {
    inner: S,
    s: Arc<Shared>,
    rules: Arc<Rules>,
}

/// Set on a request by [`GrpcDoor`] once it has checked the token and taken the in-flight
/// permit (for `ModelInfer`), which it hands over here: the handler takes it (so that a
/// request queued for its batch keeps it even when the call is cancelled) and checks neither
/// again. A [`Grpc`] served without the door (a host's own tonic server) checks both itself,
/// so auth never fails open.
#[derive(Clone)]
struct DoorPassed(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

#[derive(Clone)]
struct GrpcDoorLayer {
    s: Arc<Shared>,
    rules: Arc<Rules>,
}

impl<S> tower::Layer<S> for GrpcDoorLayer {
    type Service = GrpcDoor<S>;

    fn layer(&self, inner: S) -> GrpcDoor<S> {
        GrpcDoor {
            inner,
            s: self.s.clone(),
            rules: self.rules.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<axum::http::Request<B>> for GrpcDoor<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let health = path.ends_with("/ServerLive") || path.ends_with("/ServerReady");
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !health && !self.rules.accepts(presented) {
            let refusal = status(HttpError::unauthorized()).into_http();
            return Box::pin(async move { Ok(refusal) });
        }
        let permit = if path.ends_with("/ModelInfer") {
            match try_in_flight(&self.s) {
                Some(p) => Some(p),
                None => {
                    let refusal = status(busy_in_flight(&self.s)).into_http();
                    return Box::pin(async move { Ok(refusal) });
                }
            }
        } else {
            None
        };
        // Held here until the answer is made, unless the handler took it over.
        let held = Arc::new(std::sync::Mutex::new(permit));
        request.extensions_mut().insert(DoorPassed(held.clone()));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(held);
            answer
        })
    }
}

/// The gRPC status of an error answer: its code from the REST status, its message as is.
fn status(e: HttpError) -> Status {
    let code = match e.status() {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
        StatusCode::CONFLICT => tonic::Code::Aborted,
        _ => tonic::Code::Internal,
    };
    Status::new(code, e.message())
}

fn bad(message: impl Into<String>) -> Status {
    status(HttpError::bad_request(message))
}

impl Grpc {
    /// Refuses a call without an accepted bearer token (`authorization` metadata), as the REST
    /// door does; the health calls are open.
    fn authorize<T>(&self, request: &GrpcRequest<T>) -> std::result::Result<(), Status> {
        if request.extensions().get::<DoorPassed>().is_some() {
            return Ok(());
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.rules.accepts(presented) {
            Ok(())
        } else {
            Err(status(HttpError::unauthorized()))
        }
    }

    /// The variant a request's model and version name (`None`: routed as usual).
    fn target(&self, model: &str, version: &str) -> std::result::Result<Option<String>, Status> {
        long_name("model name", model)?;
        long_name("model version", version)?;
        if model != self.s.model {
            return Err(status(unknown_model_error(&self.s, model)));
        }
        if version.is_empty() {
            return Ok(None);
        }
        variant_for(&self.s, version)
            .map(|(name, _)| Some(name))
            .ok_or_else(|| {
                status(HttpError::not_found(format!(
                    "unknown version {version:?} of model {model:?}"
                )))
            })
    }

    fn metadata_header(
        &self,
        request: &GrpcRequest<ModelInferRequest>,
        name: &str,
    ) -> Option<String> {
        request
            .metadata()
            .get(name.to_ascii_lowercase().as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _request: GrpcRequest<pb::ServerLiveRequest>,
    ) -> std::result::Result<GrpcResponse<pb::ServerLiveResponse>, Status> {
        Ok(GrpcResponse::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: GrpcRequest<pb::ServerReadyRequest>,
    ) -> std::result::Result<GrpcResponse<pb::ServerReadyResponse>, Status> {
        Ok(GrpcResponse::new(pb::ServerReadyResponse {
            ready: self.s.readiness.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: GrpcRequest<pb::ModelReadyRequest>,
    ) -> std::result::Result<GrpcResponse<pb::ModelReadyResponse>, Status> {
        self.authorize(&request)?;
        let r = request.get_ref();
        self.target(&r.name, &r.version)?;
        Ok(GrpcResponse::new(pb::ModelReadyResponse {
            ready: self.s.readiness.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        request: GrpcRequest<pb::ServerMetadataRequest>,
    ) -> std::result::Result<GrpcResponse<pb::ServerMetadataResponse>, Status> {
        self.authorize(&request)?;
        Ok(GrpcResponse::new(pb::ServerMetadataResponse {
            name: "mlops".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: GrpcRequest<pb::ModelMetadataRequest>,
    ) -> std::result::Result<GrpcResponse<pb::ModelMetadataResponse>, Status> {
        self.authorize(&request)?;
        let r = request.get_ref();
        self.target(&r.name, &r.version)?;
        let routes = self.s.router.routes();
        // As REST: the version asked for, or every loaded version (also for a variant
        // without a version number).
        let versions: Vec<String> = match variant_for(&self.s, &r.version).and_then(|(_, v)| v) {
            Some(v) if !r.version.is_empty() => vec![v.to_string()],
            _ => routes
                .variants
                .iter()
                .filter_map(|v| v.version)
                .map(|v| v.to_string())
                .collect(),
        };
        let n = self.s.router.n_features() as i64;
        let tensor = |name: &str, datatype: &str, shape: Vec<i64>| {
            pb::model_metadata_response::TensorMetadata {
                name: name.into(),
                datatype: datatype.into(),
                shape,
            }
        };
        Ok(GrpcResponse::new(pb::ModelMetadataResponse {
            name: self.s.model.clone(),
            versions,
            platform: "mlops".into(),
            inputs: vec![tensor(INPUT, "FP32", vec![-1, n])],
            outputs: vec![
                tensor(PROBABILITY, "FP32", vec![-1]),
                tensor(LABEL, "INT64", vec![-1]),
            ],
        }))
    }

    async fn model_infer(
        &self,
        request: GrpcRequest<ModelInferRequest>,
    ) -> std::result::Result<GrpcResponse<ModelInferResponse>, Status> {
        self.authorize(&request)?;
        let key = self.metadata_header(&request, &self.s.config.key_header);
        let variant = self.metadata_header(&request, &self.s.config.variant_header);
        let body_len = request.get_ref().encoded_len();
        // Through the door, this request's in-flight permit is taken over from it; the body
        // bytes are taken here.
        let in_flight = match request.extensions().get::<DoorPassed>() {
            Some(DoorPassed(held)) => InFlight::Held(
                held.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
            ),
            None => InFlight::Take,
        };
        let r = request.into_inner();
        let forced = self.target(&r.model_name, &r.model_version)?;
        infer_with(
            &self.s,
            body_len,
            in_flight,
            move |s| prepare_infer(s, r, forced.or(variant), key),
            respond_infer,
            status,
        )
        .await
        .map(GrpcResponse::new)
    }
}

/// The element count of `shape` (each dimension ≥ 0), or why not.
fn elements(shape: &[i64]) -> std::result::Result<(Vec<usize>, usize), Status> {
    let mut dims = Vec::with_capacity(shape.len());
    let mut count: usize = 1;
    for &d in shape {
        let d = usize::try_from(d).map_err(|_| {
            bad(format!(
                "input {INPUT:?}: shape {shape:?}; expected dimensions ≥ 0"
            ))
        })?;
        count = count.checked_mul(d).ok_or_else(|| {
            bad(format!(
                "input {INPUT:?}: shape {shape:?} has too many elements"
            ))
        })?;
        dims.push(d);
    }
    Ok((dims, count))
}

/// Reads `raw` as `count` little-endian values of `width` bytes.
fn raw_values<T>(
    raw: &[u8],
    count: usize,
    datatype: &str,
    width: usize,
    read: impl Fn(&[u8]) -> T,
) -> std::result::Result<Vec<T>, Status> {
    if Some(raw.len()) != count.checked_mul(width) {
        return Err(bad(format!(
            "input {INPUT:?}: raw_input_contents of {} bytes; expected {count} {datatype} values ({} bytes)",
            raw.len(),
            count.saturating_mul(width)
        )));
    }
    Ok(raw.chunks_exact(width).map(read).collect())
}

/// The request's one input as a [`Tensor`] ([`features`] checks its name, type and shape).
fn input_tensor(r: &mut ModelInferRequest) -> std::result::Result<Tensor, Status> {
    let n_inputs = r.inputs.len();
    let [input] = r.inputs.as_mut_slice() else {
        return Err(bad(format!(
            "expected exactly one input ({INPUT:?}), got {n_inputs}"
        )));
    };
    long_name("input name", &input.name)?;
    long_name("input datatype", &input.datatype)?;
    let (shape, count) = elements(&input.shape)?;
    let datatype = match input.datatype.as_str() {
        "FP32" => DataType::Fp32,
        "FP64" => DataType::Fp64,
        "FP16" => DataType::Fp16,
        other => {
            return Err(bad(format!(
                "input {INPUT:?}: datatype {other:?} not accepted; expected FP32 (or FP64, FP16)"
            )))
        }
    };
    let data = match (r.raw_input_contents.as_slice(), input.contents.take()) {
        ([], Some(contents)) => match datatype {
            DataType::Fp32 => TensorData::Fp32(contents.fp32_contents),
            DataType::Fp64 => TensorData::Fp64(contents.fp64_contents),
            _ => {
                return Err(bad(format!(
                    "input {INPUT:?}: FP16 travels in raw_input_contents only"
                )))
            }
        },
        ([raw], None) => match datatype {
            DataType::Fp32 => TensorData::Fp32(raw_values(raw, count, "FP32", 4, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            })?),
            DataType::Fp64 => TensorData::Fp64(raw_values(raw, count, "FP64", 8, |b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })?),
            _ => TensorData::Fp16(raw_values(raw, count, "FP16", 2, |b| {
                half::f16::from_le_bytes([b[0], b[1]]).to_f32()
            })?),
        },
        ([], None) => {
            return Err(bad(format!(
                "input {INPUT:?}: no values (neither contents nor raw_input_contents)"
            )))
        }
        (raw, contents) => {
            return Err(bad(format!(
                "input {INPUT:?}: {} raw_input_contents and {} contents; expected one of them, for the one input",
                raw.len(),
                usize::from(contents.is_some())
            )))
        }
    };
    let got = match &data {
        TensorData::Fp32(v) | TensorData::Fp16(v) => v.len(),
        TensorData::Fp64(v) => v.len(),
        _ => 0,
    };
    if got != count {
        return Err(bad(format!(
            "input {INPUT:?}: {got} values for shape {:?} ({count} elements)",
            input.shape
        )));
    }
    Ok(Tensor {
        name: std::mem::take(&mut input.name),
        shape,
        datatype,
        data,
    })
}

/// A request's group parameter (a string the fairness check accepts).
fn group(r: &ModelInferRequest) -> std::result::Result<Option<String>, Status> {
    match r
        .parameters
        .get("group")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => Ok(None),
        Some(ParameterChoice::StringParam(g)) => match crate::step_stats::group_name_problem(g) {
            None => Ok(Some(g.clone())),
            Some(problem) => Err(bad(format!("request parameters.group: {problem}"))),
        },
        Some(_) => Err(bad(
            "request parameters.group: expected a string_param (the sensitive group)",
        )),
    }
}

/// What a gRPC inference answers with, kept from its request.
struct GrpcAnswer {
    id: String,
    /// The outputs asked for (empty: both).
    outputs: Vec<String>,
}

/// A gRPC inference's request checked (the REST endpoint's checks): what it answers with,
/// its routing inputs and its feature matrix.
fn prepare_infer(
    s: &Shared,
    mut r: ModelInferRequest,
    force: Option<String>,
    key: Option<String>,
) -> std::result::Result<(GrpcAnswer, OwnedRequest, Array2<f32>), Status> {
    if !r.id.is_empty() {
        id_too_long(s, &r.id).map_err(status)?;
    }
    let group = group(&r)?;
    let tensor = input_tensor(&mut r)?;
    let x = features(s, &mut [tensor]).map_err(bad)?;
    for (k, o) in r.outputs.iter().enumerate() {
        long_name("output name", &o.name)?;
        if o.name != PROBABILITY && o.name != LABEL {
            return Err(bad(format!(
                "unknown output {:?}: expected {PROBABILITY:?} or {LABEL:?}",
                o.name
            )));
        }
        if r.outputs[..k].iter().any(|p| p.name == o.name) {
            return Err(bad(format!(
                "outputs[{k}]: {:?} is asked for twice",
                o.name
            )));
        }
    }
    let routing = OwnedRequest {
        key,
        force,
        request_id: (!r.id.is_empty()).then(|| r.id.clone()),
        group,
    };
    let answer = GrpcAnswer {
        id: r.id,
        outputs: r.outputs.into_iter().map(|o| o.name).collect(),
    };
    Ok((answer, routing, x))
}

/// A gRPC inference's response: the probabilities scored by `routed`'s variant and their
/// labels, as asked, in raw contents.
fn respond_infer(
    s: &Shared,
    request: GrpcAnswer,
    routed: Routed,
    probabilities: Vec<f32>,
) -> std::result::Result<ModelInferResponse, Status> {
    let rows = probabilities.len();
    let names: Vec<&str> = if request.outputs.is_empty() {
        vec![PROBABILITY, LABEL]
    } else {
        request.outputs.iter().map(String::as_str).collect()
    };
    let mut outputs = Vec::with_capacity(names.len());
    let mut raw = Vec::with_capacity(names.len());
    for name in names {
        let (datatype, bytes) = if name == PROBABILITY {
            (
                "FP32",
                probabilities.iter().flat_map(|p| p.to_le_bytes()).collect(),
            )
        } else {
            let labels = probabilities.iter().map(|&p| {
                if p.is_nan() {
                    -1_i64
                } else {
                    i64::from(p >= routed.threshold)
                }
            });
            ("INT64", labels.flat_map(i64::to_le_bytes).collect())
        };
        outputs.push(InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![rows as i64],
            parameters: Default::default(),
            contents: None,
        });
        raw.push(bytes);
    }
    Ok(ModelInferResponse {
        model_name: s.model.clone(),
        model_version: routed.version.map(|v| v.to_string()).unwrap_or_default(),
        id: request.id,
        parameters: [(
            "variant".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::StringParam(routed.variant.to_string())),
            },
        )]
        .into(),
        outputs,
        raw_output_contents: raw,
    })
}

pin_project_lite::pin_project! {
    /// An accepted connection holding one of [`ServerConfig::max_connections`] permits while
    /// open.
    struct Counted {
        #[pin]
        io: tokio::net::TcpStream,
        _permit: OwnedSemaphorePermit,
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Serves `grpc` on `listener` (HTTP/2, plain text: TLS is the proxy's) until `shutdown`
/// completes, with `config`'s bounds (see the module docs).
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    grpc: Grpc,
    config: &CheckedServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let c = config.config();
    let timeout = std::time::Duration::from_secs_f64(c.timeout_seconds);
    let connections = Arc::new(Semaphore::new(c.max_connections));
    let handshake = std::time::Duration::from_secs_f64(c.header_timeout_seconds);
    let incoming = accepted(listener, connections, handshake);
    let door = GrpcDoorLayer {
        s: grpc.s.clone(),
        rules: grpc.rules.clone(),
    };
    let service = GrpcInferenceServiceServer::new(grpc)
        .max_decoding_message_size(c.body_limit_bytes)
        .max_encoding_message_size(usize::MAX);
    let streams = u32::try_from(c.max_in_flight).unwrap_or(u32::MAX);
    // Once `shutdown` fires, the calls in flight have the request timeout and a margin to
    // finish (a client that stops reading its answer cannot hold the process).
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .timeout(timeout)
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(timeout + DRAIN_MARGIN)
        .max_concurrent_streams(Some(streams))
        .concurrency_limit_per_connection(c.max_in_flight)
        .http2_max_header_list_size(Some(u32::try_from(c.max_header_bytes).unwrap_or(u32::MAX)))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs_f64(
            c.header_timeout_seconds,
        )))
        .layer(door)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let deadline = async {
        if fired_rx.await.is_ok() {
            tokio::time::sleep(timeout + DRAIN_MARGIN).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = &mut server => served.map_err(std::io::Error::other),
        () = deadline => {
            tracing::warn!("gRPC: calls still open after the drain deadline were dropped");
            Ok(())
        }
    }
}

/// HTTP/2's connection preface: a client that has not sent it within the header timeout is
/// dropped.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The accepted connections, each holding one of `max_connections` permits (a connection past
/// the bound is closed at once: its client sees the call unavailable and retries), handed to
/// tonic once its HTTP/2 preface has arrived within `handshake` (a connection that sends
/// nothing, or something else, is closed then and frees its permit). Accepting never waits on
/// a client: each new connection is checked on a task of its own.
fn accepted(
    listener: tokio::net::TcpListener,
    connections: Arc<Semaphore>,
    handshake: std::time::Duration,
) -> impl tokio_stream::Stream<Item = std::io::Result<Counted>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Counted>>(64);
    tokio::spawn(async move {
        loop {
            let (io, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // A transient accept error (too many open files) must not end the
                        // server.
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "gRPC connection closed: ServerConfig.max_connections are open");
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = [0_u8; 24];
                let greeted = tokio::time::timeout(handshake, async {
                    loop {
                        match io.peek(&mut head).await {
                            Ok(n) if n >= PREFACE.len() => return head == *PREFACE,
                            Ok(n) if n > 0 && head[..n] != PREFACE[..n] => return false,
                            Ok(0) | Err(_) => return false,
                            // Part of the preface so far: wait for the rest.
                            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                        }
                    }
                })
                .await;
                if greeted == Ok(true) {
                    let _ = io.set_nodelay(true);
                    let _ = tx
                        .send(Ok(Counted {
                            io,
                            _permit: permit,
                        }))
                        .await;
                } else {
                    tracing::debug!(%peer, "gRPC connection closed: no HTTP/2 preface within the header timeout");
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
