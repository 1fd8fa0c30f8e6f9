//! The HTTP server: the KServe V2 REST endpoints on axum, the [`Router`] in the request path,
//! delayed labels, `/metrics`, and the bounds of a door: a body limit, limits on the request
//! id and on requests and body bytes in flight (503), readiness that turns false when a
//! background task dies ([`supervise`]). The layer in front of the routes (`door.rs`) adds
//! the request timeout, the limits on the headers and the URI, optional bearer-token auth and
//! every error as `{"error": ...}` JSON; the connection loop ([`serve_with`]) the header
//! timeout and the bound on open connections (the oldest idle one is shed).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{
    FromRequest, FromRequestParts, Path, RawPathParams, Request as HttpRequest, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlops_core::duration::{seconds, SecondsRange};
use mlops_core::VersionRef;
use ndarray::Array2;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

#[cfg(doc)]
use super::connection::serve_with;
use super::door::{DoorLayer, Rules};
use super::error::HttpError;
use super::protocol::{
    decode_request, encode_response, DataType, Output, OutputData, ProtocolError, TensorData,
};
use crate::router::{OwnedRequest, Routed, Router};
use crate::{Error, Result};

/// The input tensor's name in the model metadata.
pub const INPUT: &str = "input";
/// The probability output (`FP32`, `[batch]`).
pub const PROBABILITY: &str = "probability";
/// The label output (`INT64`, `[batch]`: 1 when the probability is at least the model's
/// threshold, 0 below it, -1 for a row the model could not score).
pub const LABEL: &str = "label";

/// How long, past [`ServerConfig::timeout_seconds`], a shutting-down server waits for its
/// connections to finish their answers (a client that never reads its answer would hold the
/// shutdown for ever); the connections left are closed.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// The range of [`ServerConfig::timeout_seconds`]: 50 ms to an hour.
pub const TIMEOUT_RANGE: SecondsRange = SecondsRange::new(0.05, 3600.0);
/// The range of [`ServerConfig::header_timeout_seconds`]: 50 ms to ten minutes.
pub const HEADER_TIMEOUT_RANGE: SecondsRange = SecondsRange::new(0.05, 600.0);

/// The server's settings as written (TOML or JSON, or in code). Every size, count and time a
/// client controls is bounded here; [`ServerConfig::check`] checks each against its own range
/// and returns the [`CheckedServerConfig`] that [`app`], [`app_with`] and [`serve_with`] take.
///
/// ```
/// use mlops_serve::http::ServerConfig;
///
/// let config: ServerConfig = serde_json::from_str(r#"{"timeout_seconds": 5}"#)?;
/// assert_eq!(config.max_in_flight, ServerConfig::default().max_in_flight);
/// let checked = config.check()?;
/// assert_eq!(checked.timeout_seconds, 5.0);
/// assert!(serde_json::from_str::<ServerConfig>(r#"{"timeout": 5}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body in bytes (1 KiB to 1 GiB); larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take, body upload included, in seconds ([`TIMEOUT_RANGE`]);
    /// slower ones get 408.
    pub timeout_seconds: f64,
    /// The header carrying the sticky routing key.
    pub key_header: String,
    /// The header forcing a variant.
    pub variant_header: String,
    /// Bearer tokens accepted (empty: no authentication). Health endpoints stay open.
    pub tokens: Vec<String>,
    /// Longest request id in bytes (1 to 64 KiB), in an inference request or a labels post;
    /// longer ones get 400 (each id waiting for labels is kept in memory).
    pub max_id_bytes: usize,
    /// Most bytes of request headers (names and values, 1 KiB to 256 KiB); more get 431.
    pub max_header_bytes: usize,
    /// Longest request target (path and query) in bytes (64 to 32 KiB); longer ones get 414.
    pub max_uri_bytes: usize,
    /// Most inference and labels requests worked on at once (1 to 65,536), counted from
    /// when the request is authenticated and its body read; more get 503 at once (each holds
    /// its body and its decoded tensors).
    pub max_in_flight: usize,
    /// Most connections open at once (2 to 1,000,000, and more than `max_in_flight`; keep it
    /// under the process's file limit): a new one past it sheds the oldest connection with no request being handled
    /// (idle, or still sending its headers), and gets a 503 when every one is busy.
    pub max_connections: usize,
    /// Most request-body bytes worked on at once, over every request being decoded and
    /// scored (1 KiB to 1 TiB; at least `body_limit_bytes` in effect, so one largest body
    /// always fits): decoding takes several times its body, so this bounds the memory of
    /// `max_in_flight` large requests. A read body that does not fit gets 503 at once.
    pub max_body_bytes_in_flight: usize,
    /// Seconds a client has to send a request's headers ([`HEADER_TIMEOUT_RANGE`]): a
    /// connection with no request being handled for this long — sending its headers slowly,
    /// or idle between keep-alive requests — is closed (slow-header clients cannot hold
    /// connections). A request being handled is bounded by `timeout_seconds` instead.
    pub header_timeout_seconds: f64,
    /// Adaptive batching of small inference requests, both protocols (`None`, the default:
    /// each request is scored by its own model call). See [`crate::batch`]: concurrent
    /// requests of one variant whose bodies are at most [`INLINE_BODY_BYTES`] share a model
    /// call; a batch waits at most `max_delay_micros` and only for requests already being
    /// decoded. Served from a multi-thread tokio runtime only (on a current-thread runtime
    /// every request is scored alone, in the blocking pool).
    pub batching: Option<crate::batch::BatchConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit_bytes: 16 << 20,
            timeout_seconds: 30.0,
            key_header: "mlops-request-key".into(),
            variant_header: "mlops-variant".into(),
            tokens: Vec::new(),
            max_id_bytes: 256,
            max_header_bytes: 16 << 10,
            max_uri_bytes: 4096,
            max_in_flight: 64,
            max_connections: 512,
            max_body_bytes_in_flight: 128 << 20,
            header_timeout_seconds: 10.0,
            batching: None,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`ServerConfig`] (see [`ServerConfig::check`]): what the server is built
    /// with. Read its fields through `Deref`.
    ///
    /// ```
    /// use mlops_serve::http::{CheckedServerConfig, ServerConfig};
    ///
    /// let config = ServerConfig { max_in_flight: 8, ..ServerConfig::default() }.check()?;
    /// assert_eq!(config.max_in_flight, 8);
    /// assert_eq!(CheckedServerConfig::default().config(), &ServerConfig::default());
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct CheckedServerConfig(ServerConfig);
}

impl Default for CheckedServerConfig {
    /// [`ServerConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedServerConfig {
            config: ServerConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks every field against its range and returns the checked config; an error names
    /// the field (`ServerConfig.max_in_flight`), its value and what was expected.
    ///
    /// ```
    /// use mlops_serve::http::ServerConfig;
    ///
    /// let e = ServerConfig { max_in_flight: 0, ..ServerConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().contains("ServerConfig.max_in_flight = 0"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedServerConfig> {
        for (field, value, lo, hi) in [
            (
                "ServerConfig.body_limit_bytes",
                self.body_limit_bytes,
                1024,
                1 << 30,
            ),
            ("ServerConfig.max_id_bytes", self.max_id_bytes, 1, 64 << 10),
            (
                "ServerConfig.max_header_bytes",
                self.max_header_bytes,
                1024,
                256 << 10,
            ),
            (
                "ServerConfig.max_uri_bytes",
                self.max_uri_bytes,
                64,
                32 << 10,
            ),
            ("ServerConfig.max_in_flight", self.max_in_flight, 1, 65_536),
            (
                "ServerConfig.max_body_bytes_in_flight",
                self.max_body_bytes_in_flight,
                1024,
                1 << 40,
            ),
            (
                "ServerConfig.max_connections",
                self.max_connections,
                2,
                1_000_000,
            ),
        ] {
            if !(lo..=hi).contains(&value) {
                return Err(Error::invalid(field, value, format!("from {lo} to {hi}")));
            }
        }
        if self.max_connections <= self.max_in_flight {
            return Err(Error::invalid(
                "ServerConfig.max_connections",
                self.max_connections,
                format!(
                    "more than ServerConfig.max_in_flight = {} (a connection must stay free for health checks while every permit is taken)",
                    self.max_in_flight
                ),
            ));
        }
        seconds(
            "ServerConfig.timeout_seconds",
            self.timeout_seconds,
            TIMEOUT_RANGE,
        )?;
        seconds(
            "ServerConfig.header_timeout_seconds",
            self.header_timeout_seconds,
            HEADER_TIMEOUT_RANGE,
        )?;
        if let Some(batching) = &self.batching {
            batching.clone().check().map_err(|e| match e {
                Error::InvalidValue(v) => Error::InvalidValue(mlops_core::InvalidValue {
                    field: v
                        .field
                        .replacen("BatchConfig.", "ServerConfig.batching.", 1),
                    ..v
                }),
                other => other,
            })?;
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
        Ok(CheckedServerConfig { config: self })
    }
}

/// The bearer tokens in `text`, one per line (blank lines and surrounding spaces ignored).
/// `source` names where they came from (`--tokens-file /etc/tokens`, `MLOPS_TOKENS`). A
/// source that holds no token is an error, never a server without authentication: leave the
/// setting out to serve without tokens.
///
/// ```
/// use mlops_serve::http::server::parse_tokens;
/// assert_eq!(parse_tokens("MLOPS_TOKENS", " a\n\nb ")?, ["a", "b"]);
/// let e = parse_tokens("MLOPS_TOKENS", "\n \n").unwrap_err().to_string();
/// assert!(e.contains("invalid MLOPS_TOKENS"), "{e}");
/// # Ok::<(), mlops_serve::Error>(())
/// ```
pub fn parse_tokens(source: &str, text: &str) -> Result<Vec<String>> {
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if tokens.is_empty() {
        return Err(Error::invalid(
            source,
            "no token",
            "at least one bearer token (an empty token list would leave the server open; \
             leave the setting out to serve without authentication)",
        ));
    }
    Ok(tokens)
}

/// Whether the server is ready: shared by the readiness endpoints and whoever watches the
/// background tasks ([`supervise`]). Ready until [`Readiness::fail`] is called; not ready for
/// good after.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    /// A ready state.
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Marks the server not ready, for `reason` (the first reason is kept).
    pub fn fail(&self, reason: impl Into<String>) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(reason.into());
        }
    }

    /// Why the server is not ready; `None` while it is.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the server is ready.
    pub fn is_ready(&self) -> bool {
        self.reason().is_none()
    }
}

/// Runs `task` (a background task meant to run as long as the server: the rollout
/// controller, an alias follower) on the tokio runtime. When it stops — a panic, an error, or
/// an end — `readiness` fails with the reason, logged, so the server never looks healthy
/// without it; the returned handle completes with that reason (a host exits on it).
pub fn supervise<F>(readiness: &Readiness, name: &str, task: F) -> tokio::task::JoinHandle<String>
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let (readiness, name) = (readiness.clone(), name.to_string());
    let running = tokio::spawn(task);
    tokio::spawn(async move {
        let reason = match running.await {
            Ok(Ok(())) => format!("{name} ended"),
            Ok(Err(e)) => format!("{name} failed: {e}"),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".into());
                format!("{name} panicked: {message}")
            }
            Err(_) => format!("{name} was cancelled"),
        };
        tracing::error!(task = %name, %reason, "background task stopped: not ready");
        readiness.fail(reason.clone());
        reason
    })
}

/// What the handlers share.
pub(super) struct Shared {
    pub(super) model: String,
    pub(super) router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    pub(super) config: ServerConfig,
    pub(super) readiness: Readiness,
    in_flight: Arc<Semaphore>,
    /// One permit per body byte being worked on ([`ServerConfig::max_body_bytes_in_flight`]).
    body_bytes: Arc<Semaphore>,
    /// The permits of `body_bytes`.
    body_budget: usize,
    /// One permit per explanation being computed ([`MAX_EXPLAINS_IN_FLIGHT`]).
    explains: Arc<Semaphore>,
    /// The batcher of [`ServerConfig::batching`], when on.
    pub(super) batcher: Option<crate::batch::Batcher>,
}

/// An error answer: a status and `{"error": "..."}` ([`HttpError`]'s one `IntoResponse`).
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    HttpError::new(status, message).into_response()
}

/// The axum application serving `model` through `router`. `metrics`, when given, is what
/// `/metrics` exposes (the registry the router's and the drift monitor's families live in).
/// Always ready: see [`app_with`] for a readiness a background task can fail.
pub fn app(
    model: &str,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: CheckedServerConfig,
) -> Result<axum::Router> {
    app_with(model, router, metrics, config, Readiness::new())
}

/// [`app`] with its readiness: `/v2/health/ready` and the model's ready endpoints answer 503
/// (`{"error"}` with the reason) once `readiness` fails; `/v2/health/live` stays 200.
pub fn app_with(
    model: &str,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: CheckedServerConfig,
    readiness: Readiness,
) -> Result<axum::Router> {
    let (shared, rules) = state(model, router, metrics, config, readiness)?;
    Ok(rest(shared, rules))
}

/// The state both protocols serve from: one router, one in-flight budget, one door's rules.
pub(super) fn state(
    model: &str,
    router: Arc<Router>,
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
    config: CheckedServerConfig,
    readiness: Readiness,
) -> Result<(Arc<Shared>, Arc<Rules>)> {
    let config = config.into_config();
    let rules = Arc::new(Rules {
        max_uri_bytes: config.max_uri_bytes,
        max_header_bytes: config.max_header_bytes,
        tokens: config
            .tokens
            .iter()
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect(),
        timeout: seconds(
            "ServerConfig.timeout_seconds",
            config.timeout_seconds,
            TIMEOUT_RANGE,
        )?,
        timeout_seconds: config.timeout_seconds,
    });
    let body_budget = config
        .max_body_bytes_in_flight
        .max(config.body_limit_bytes)
        .min(Semaphore::MAX_PERMITS);
    let batcher = match &config.batching {
        Some(b) => Some(crate::batch::Batcher::start(
            router.clone(),
            b.clone().check()?,
        )?),
        None => None,
    };
    let shared = Arc::new(Shared {
        batcher,
        model: model.to_string(),
        router,
        metrics,
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        body_bytes: Arc::new(Semaphore::new(body_budget)),
        body_budget,
        explains: Arc::new(Semaphore::new(MAX_EXPLAINS_IN_FLIGHT)),
        config,
        readiness,
    });
    Ok((shared, rules))
}

/// The REST application over `shared`, behind the door.
pub(super) fn rest(shared: Arc<Shared>, rules: Arc<Rules>) -> axum::Router {
    let door = DoorLayer { rules };
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
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/v2/models/{model}/explain", post(explain))
        .route(
            "/v2/models/{model}/versions/{version}/explain",
            post(explain),
        )
        .route("/v2/models/{model}/labels", post(labels))
        .route("/metrics", get(metrics_text));
    axum::Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .merge(v2)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|request: HttpRequest| async move {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "method {} not allowed on {}",
                    request.method(),
                    request.uri().path()
                ),
            )
        })
        .layer(door)
        .with_state(shared)
}

/// The largest body decoded and scored on the runtime worker that read it (on a
/// multi-thread runtime): a few rows (a single-row V2 JSON request is well under 1 KiB), work
/// of microseconds, cheaper there than the hand-off to the blocking pool and back. A larger
/// body is worked on in the blocking pool ([`tokio::task::spawn_blocking`]), so the worker
/// stays free and the request timeout answers while the model computes. On a current-thread
/// runtime every body goes to the blocking pool: its one thread must never wait on a model.
/// The request timeout therefore bounds the compute of larger bodies only: a host predictor
/// that blocks (the `Predictor` contract says it must not) holds a worker for small ones.
pub const INLINE_BODY_BYTES: usize = 8 << 10;

/// Runs `work` (a request's decoding and scoring) while holding one of the
/// [`ServerConfig::max_in_flight`] permits and its body's bytes of
/// [`ServerConfig::max_body_bytes_in_flight`]: at most that many requests are worked on at
/// once, and more are answered 503 at once. A body over [`INLINE_BODY_BYTES`] (any body on a
/// current-thread runtime) is worked on in the blocking pool, so that it never holds up the
/// runtime's workers (health checks and other connections keep answering). Handlers call it
/// after authentication and after their body is read, so neither unauthenticated requests nor
/// uploads still in progress hold a permit.
async fn in_flight<F>(s: &Shared, body_len: usize, work: F) -> Response
where
    F: FnOnce() -> Response + Send + 'static,
{
    in_flight_as(s, body_len, false, work).await
}

/// [`in_flight`], and with `heavy` the work always goes to the blocking pool, whatever its
/// body's size (an explanation: a small body, seconds of model work).
async fn in_flight_as<F>(s: &Shared, body_len: usize, heavy: bool, work: F) -> Response
where
    F: FnOnce() -> Response + Send + 'static,
{
    with_permits(s, body_len, heavy, true, work)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// [`in_flight_as`] for any answer: `Err` when the server is at a bound (503) or the work
/// failed (500). Without `take_in_flight` the caller holds the request's in-flight permit
/// already (the gRPC door takes it before the message is read).
pub(super) async fn with_permits<F, T>(
    s: &Shared,
    body_len: usize,
    heavy: bool,
    take_in_flight: bool,
    work: F,
) -> std::result::Result<T, HttpError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let permits = take_permits(s, body_len, take_in_flight)?;
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "a request's work failed");
        HttpError::internal("the request's work failed (see the server log)")
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if body_len <= INLINE_BODY_BYTES && multi_thread && !heavy {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|_| failed(&"panicked"));
        drop(permits);
        return answer;
    }
    let task = tokio::task::spawn_blocking(move || {
        let response = work();
        drop(permits);
        response
    });
    task.await.map_err(|e| failed(&e))
}

/// A request's share of the server's bounds, given back when dropped: its body's bytes and
/// (unless the gRPC door holds it already) an in-flight permit.
pub(super) struct Permits {
    _bytes: tokio::sync::OwnedSemaphorePermit,
    _in_flight: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The permits of a request with a body of `body_len` bytes, or the 503 saying which bound
/// is reached.
pub(super) fn take_permits(
    s: &Shared,
    body_len: usize,
    take_in_flight: bool,
) -> std::result::Result<Permits, HttpError> {
    let want = u32::try_from(body_len.min(s.body_budget)).unwrap_or(u32::MAX);
    let Ok(bytes) = s.body_bytes.clone().try_acquire_many_owned(want) else {
        return Err(HttpError::busy(format!(
            "server busy: a body of {body_len} bytes does not fit in the {} body bytes worked on at once (ServerConfig.max_body_bytes_in_flight); retry later",
            s.body_budget
        )));
    };
    let in_flight = if take_in_flight {
        let Ok(permit) = s.in_flight.clone().try_acquire_owned() else {
            return Err(busy_in_flight(s));
        };
        Some(permit)
    } else {
        None
    };
    Ok(Permits {
        _bytes: bytes,
        _in_flight: in_flight,
    })
}

/// An inference of either protocol: `prepare` decodes and checks the request into what it
/// answers with, its routing inputs and its feature matrix; the rows are scored (through the
/// batcher when [`ServerConfig::batching`] is on and the body is at most
/// [`INLINE_BODY_BYTES`], else by the router in the same work as decoding, see
/// [`with_permits`]); `respond` encodes the answer. `lift` turns the server's own errors (a
/// bound reached, the model's refusal) into the protocol's.
pub(super) async fn infer_with<P, O, E>(
    s: &Arc<Shared>,
    body_len: usize,
    in_flight: InFlight,
    prepare: impl FnOnce(&Shared) -> std::result::Result<(P, OwnedRequest, Array2<f32>), E>
        + Send
        + 'static,
    respond: impl FnOnce(&Shared, P, Routed, Vec<f32>) -> std::result::Result<O, E> + Send + 'static,
    lift: fn(HttpError) -> E,
) -> std::result::Result<O, E>
where
    P: Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    let (take_in_flight, held) = match in_flight {
        InFlight::Take => (true, None),
        InFlight::Held(permit) => (false, permit),
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    // Batched: a small body decoded on this (multi-thread) runtime's worker, as
    // `with_permits` would, and its rows scored on a batch worker.
    let batcher = s
        .batcher
        .as_ref()
        .filter(|_| multi_thread && body_len <= INLINE_BODY_BYTES);
    let Some(batcher) = batcher else {
        let shared = s.clone();
        return with_permits(s, body_len, false, take_in_flight, move || {
            let _held = held;
            let (prepared, routing, x) = prepare(&shared)?;
            let mut probabilities = vec![0.0_f32; x.nrows()];
            let routed = shared
                .router
                .route(&routing.request(), x.view(), &mut probabilities)
                .map_err(|e| lift(HttpError::of_model(e)))?;
            respond(&shared, prepared, routed, probabilities)
        })
        .await
        .map_err(lift)?;
    };
    let mut permits = take_permits(s, body_len, take_in_flight).map_err(lift)?;
    if held.is_some() {
        permits._in_flight = held;
    }
    let panicked = || {
        tracing::error!("a request's work panicked");
        lift(HttpError::internal(
            "the request's work failed (see the server log)",
        ))
    };
    let expected = batcher.expect();
    let (prepared, routing, x) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(s)))
            .map_err(|_| panicked())??;
    // The permits go with the queued request: held until it is answered or given up, even
    // if this future is dropped (a timeout, a client gone).
    let ticket = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        batcher.submit_announced(expected, &routing.request(), x, permits)
    }))
    .map_err(|_| panicked())?
    .map_err(|e| lift(HttpError::of_model(e)))?;
    let scored = ticket.await.map_err(|e| lift(HttpError::of_model(e)))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        respond(s, prepared, scored.routed, scored.probabilities)
    }))
    .map_err(|_| panicked())?
}

/// Where an inference's in-flight permit comes from.
pub(super) enum InFlight {
    /// Taken by [`infer_with`] (503 when none is free).
    Take,
    /// Taken already (the gRPC door's), handed over to be held as long as the request.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    Held(Option<tokio::sync::OwnedSemaphorePermit>),
}

/// The 503 of a request past [`ServerConfig::max_in_flight`].
pub(super) fn busy_in_flight(s: &Shared) -> HttpError {
    HttpError::busy(format!(
        "server busy: {} requests in flight; retry later",
        s.config.max_in_flight
    ))
}

/// One of the [`ServerConfig::max_in_flight`] permits, if one is free.
#[cfg(feature = "grpc")]
pub(super) fn try_in_flight(s: &Shared) -> Option<tokio::sync::OwnedSemaphorePermit> {
    s.in_flight.clone().try_acquire_owned().ok()
}

/// `/v2/health/ready`: 200 while ready, 503 with the reason after.
async fn server_ready(State(s): State<Arc<Shared>>) -> Response {
    match s.readiness.reason() {
        None => StatusCode::OK.into_response(),
        Some(reason) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
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

/// A URL's `{version}` as the [`VersionRef`] it writes: digits are a version number; anything
/// else is an alias, bare as V2 URLs write it (`production`) or with its `@`. `None` when it is
/// neither (`0`, a name that is not plain): no variant has it.
fn url_version(version: &str) -> Option<VersionRef> {
    let parsed = if version.starts_with('@') || version.bytes().all(|b| b.is_ascii_digit()) {
        version.parse()
    } else {
        format!("@{version}").parse()
    };
    parsed.ok()
}

/// The variant a URL version names ([`url_version`]): a number among the loaded versions, or
/// an alias (`production` / `stable`, `canary`, or a variant's name).
pub(super) fn variant_for(s: &Shared, version: &str) -> Option<(String, Option<u64>)> {
    let reference = url_version(version)?;
    let routes = s.router.routes();
    let found = routes.variants.iter().find(|v| match &reference {
        VersionRef::Number(n) => v.version == Some(*n),
        VersionRef::Alias(alias) if alias == "production" => v.name == "stable",
        VersionRef::Alias(alias) => v.name == *alias,
    });
    found.map(|v| (v.name.clone(), v.version))
}

fn unknown_model(s: &Shared, model: &str) -> Response {
    unknown_model_error(s, model).into_response()
}

pub(super) fn unknown_model_error(s: &Shared, model: &str) -> HttpError {
    HttpError::not_found(format!(
        "unknown model {model:?}: this server serves {:?}",
        s.model
    ))
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
    server_ready(State(s)).await
}

async fn model_ready_version(
    State(s): State<Arc<Shared>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    if model != s.model {
        return unknown_model(&s, &model);
    }
    match variant_for(&s, &version) {
        Some(_) => server_ready(State(s.clone())).await,
        None => error(
            StatusCode::NOT_FOUND,
            format!("unknown version {version:?} of model {model:?}"),
        ),
    }
}

/// What an inference request's path names: this server's model (else 404), and the
/// variant its version forces (`None` without a version; an unknown version is 404).
struct Target {
    forced: Option<String>,
}

impl FromRequestParts<Arc<Shared>> for Target {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &Arc<Shared>,
    ) -> std::result::Result<Self, HttpError> {
        let params = RawPathParams::from_request_parts(parts, s)
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?;
        let (mut model, mut version) = ("", None);
        for (name, value) in &params {
            match name {
                "model" => model = value,
                "version" => version = Some(value),
                _ => {}
            }
        }
        if model != s.model {
            return Err(unknown_model_error(s, model));
        }
        let forced = match version {
            None => None,
            Some(v) => Some(
                variant_for(s, v)
                    .ok_or_else(|| {
                        HttpError::not_found(format!("unknown version {v:?} of model {model:?}"))
                    })?
                    .0,
            ),
        };
        Ok(Target { forced })
    }
}

/// The headers an inference request's work reads (values only: no copy of the header map).
struct InferHeaders {
    header_length: Option<HeaderValue>,
    key: Option<HeaderValue>,
    variant: Option<HeaderValue>,
}

impl FromRequestParts<Arc<Shared>> for InferHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &Arc<Shared>,
    ) -> std::result::Result<Self, Self::Rejection> {
        let h = &parts.headers;
        Ok(InferHeaders {
            header_length: h.get("inference-header-content-length").cloned(),
            key: h.get(s.config.key_header.as_str()).cloned(),
            variant: h.get(s.config.variant_header.as_str()).cloned(),
        })
    }
}

/// `POST /v2/models/{model}[/versions/{version}]/infer`: the path and the headers from
/// their extractors, the body read; then [`prepare_infer`], the scoring and
/// [`respond_infer`] under an in-flight permit ([`infer_with`]). A body that could not be
/// read is answered here (no permit, no work).
async fn infer(
    State(s): State<Arc<Shared>>,
    target: Target,
    headers: InferHeaders,
    RequestBody(body): RequestBody,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let body_len = body.len();
    infer_with(
        &s,
        body_len,
        InFlight::Take,
        move |s| prepare_infer(s, target, &headers, &body),
        respond_infer,
        std::convert::identity,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// A request's body, read whole up to [`ServerConfig::body_limit_bytes`]: past it (or with a
/// `Content-Length` past it, before reading) 413; a body that could not be read (the client
/// went away) 400. Handlers take it last and answer its error without other work.
struct RequestBody(std::result::Result<Bytes, HttpError>);

impl FromRequest<Arc<Shared>> for RequestBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        request: HttpRequest,
        s: &Arc<Shared>,
    ) -> std::result::Result<Self, Self::Rejection> {
        use http_body_util::BodyExt;
        let limit = s.config.body_limit_bytes;
        let too_large = |size: String| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of {size} bytes; expected at most {limit} bytes (ServerConfig.body_limit_bytes)"),
            )
        };
        let body = request.into_body();
        if let Some(declared) = http_body::Body::size_hint(&body).upper() {
            if declared > limit as u64 {
                return Ok(RequestBody(Err(too_large(declared.to_string()))));
            }
        }
        Ok(RequestBody(
            match http_body_util::Limited::new(body, limit).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(too_large(format!("more than {limit}")))
                }
                Err(e) => Err(HttpError::bad_request(format!(
                    "request body: could not be read: {e}"
                ))),
            },
        ))
    }
}

/// The `[batch, n]` feature matrix from the one input.
pub(super) fn features(
    s: &Shared,
    inputs: &mut [super::protocol::Tensor],
) -> std::result::Result<Array2<f32>, String> {
    let n = s.router.n_features();
    let n_inputs = inputs.len();
    let [input] = inputs else {
        return Err(format!(
            "expected exactly one input ({INPUT:?}), got {n_inputs}"
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
    // FP32 and FP16 move into the matrix as they are (the decoder's one copy); FP64 is
    // rounded once, and refused where it is beyond FP32's range.
    let values = match std::mem::replace(&mut input.data, TensorData::Bool(Vec::new())) {
        TensorData::Fp32(v) | TensorData::Fp16(v) => v,
        TensorData::Fp64(values) => {
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
            converted
        }
        _ => return Err(format!("input {INPUT:?}: expected numbers")),
    };
    Array2::from_shape_vec((rows, cols), values).map_err(|e| format!("input {INPUT:?}: {e}"))
}

/// An inference request's work: decoding, scoring (the router records the metrics and the
/// step's statistics, once) and encoding.
/// The `Inference-Header-Content-Length` of a binary request, if it has one.
fn header_length(headers: &InferHeaders) -> std::result::Result<Option<usize>, HttpError> {
    match &headers.header_length {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    HttpError::bad_request("Inference-Header-Content-Length: expected a byte count")
                })?,
        )),
    }
}

/// What an inference answers with, kept from its decoded request.
struct RestAnswer {
    id: Option<String>,
    outputs: Option<Vec<super::protocol::RequestedOutput>>,
    binary_output: bool,
}

/// A REST inference's request decoded and checked: what it answers with, its routing inputs
/// and its feature matrix.
fn prepare_infer(
    s: &Shared,
    target: Target,
    headers: &InferHeaders,
    body: &[u8],
) -> std::result::Result<(RestAnswer, OwnedRequest, Array2<f32>), HttpError> {
    let header_length = header_length(headers)?;
    let mut request = decode_request(body, header_length)?;
    if let Some(id) = request.id.as_deref() {
        id_too_long(s, id)?;
    }
    let x = features(s, &mut request.inputs).map_err(HttpError::bad_request)?;
    if let Some(outputs) = &request.outputs {
        asked_once(outputs)?;
        if let Some(o) = outputs
            .iter()
            .find(|o| o.name != PROBABILITY && o.name != LABEL)
        {
            return Err(HttpError::bad_request(format!(
                "unknown output {:?}: expected {PROBABILITY:?} or {LABEL:?}",
                o.name
            )));
        }
    }
    fn text(v: &Option<HeaderValue>) -> Option<String> {
        v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
    let routing = OwnedRequest {
        key: text(&headers.key),
        force: target.forced.or_else(|| text(&headers.variant)),
        request_id: request.id.clone(),
        group: request.group,
    };
    let answer = RestAnswer {
        id: request.id,
        outputs: request.outputs,
        binary_output: request.binary_output,
    };
    Ok((answer, routing, x))
}

/// A REST inference's response: the probabilities scored by `routed`'s variant and their
/// labels, as asked.
fn respond_infer(
    s: &Shared,
    request: RestAnswer,
    routed: Routed,
    probabilities: Vec<f32>,
) -> std::result::Result<Response, HttpError> {
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
    let shape = [probabilities.len()];
    let (mut probabilities, mut labels) = (Some(probabilities), Some(labels));
    let mut output = |name: &str, binary: bool| Output {
        name: if name == PROBABILITY {
            PROBABILITY
        } else {
            LABEL
        },
        shape: &shape,
        binary,
        data: if name == PROBABILITY {
            OutputData::Fp32(probabilities.take().unwrap_or_default())
        } else {
            OutputData::Int64(labels.take().unwrap_or_default())
        },
    };
    let outputs: Vec<Output<'_>> = match &request.outputs {
        Some(asked) => asked.iter().map(|o| output(&o.name, o.binary)).collect(),
        None => vec![
            output(PROBABILITY, request.binary_output),
            output(LABEL, request.binary_output),
        ],
    };
    /// The response's parameters: the variant that answered.
    #[derive(serde::Serialize)]
    struct Answered<'a> {
        variant: &'a str,
    }
    let version = routed.version.map(|v| v.to_string());
    let encoded = encode_response(
        &s.model,
        version.as_deref(),
        request.id.as_deref(),
        Some(&Answered {
            variant: &routed.variant,
        }),
        &outputs,
    )
    .map_err(|e| HttpError::internal(format!("encoding the response: {e}")))?;
    Ok(v2_response(encoded))
}

/// An encoded V2 response with its content type (and the JSON header's length when binary
/// outputs follow it).
fn v2_response(encoded: super::protocol::EncodedResponse) -> Response {
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

/// Most rows one `explain` request may ask for.
pub const MAX_EXPLAIN_ROWS: usize = 32;

/// Most model evaluations one `explain` request may cost, its rows together (exact values
/// need `2^features × background` each; sampling stops at its share).
pub const MAX_EXPLAIN_EVALUATIONS: usize = 4_000_000;

/// Most explanations computed at once by one server: each is worked on in the blocking pool
/// (never on a runtime worker), and more are answered 503 at once.
pub const MAX_EXPLAINS_IN_FLIGHT: usize = 2;

/// The keys an explain request's `parameters` may hold.
const EXPLAIN_PARAMETERS: [&str; 6] = [
    "method",
    "output",
    "tolerance",
    "max_evaluations",
    "binary_data_output",
    "group",
];

/// The explain outputs.
const SHAP_VALUES: &str = "shap_values";
const BASE_VALUES: &str = "base_values";
const STD_ERRORS: &str = "std_errors";

async fn explain(
    State(s): State<Arc<Shared>>,
    target: Target,
    headers: InferHeaders,
    RequestBody(body): RequestBody,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // A few explanations at a time: each may cost MAX_EXPLAIN_EVALUATIONS model rows, which
    // neither its body size nor the request timeout bounds (work in the blocking pool runs
    // to its end after a 408).
    let Ok(explaining) = s.explains.clone().try_acquire_owned() else {
        return HttpError::busy(format!(
            "server busy: {MAX_EXPLAINS_IN_FLIGHT} explanations in progress; retry later"
        ))
        .into_response();
    };
    let shared = s.clone();
    in_flight_as(&s, body.len(), true, move || {
        let response = run_explain(&shared, target, &headers, &body)
            .unwrap_or_else(IntoResponse::into_response);
        drop(explaining);
        response
    })
    .await
}

/// The explain settings from a request's `parameters`: `method` (`auto`, `exact`,
/// `permutation`), `output` (`probability`, `logit`), `tolerance` (in (0, 1]),
/// `max_evaluations` (1 to [`MAX_EXPLAIN_EVALUATIONS`]); others are the V2 request's own.
fn explain_config(
    parameters: Option<&serde_json::Map<String, Value>>,
    rows: usize,
) -> std::result::Result<mlops_core::shapley::ShapleyConfig, String> {
    use mlops_core::shapley::{OutputScale, ShapleyConfig, ShapleyMethod};
    let mut config = ShapleyConfig {
        max_evaluations: 200_000,
        ..ShapleyConfig::default()
    };
    if let Some(key) =
        parameters.and_then(|p| p.keys().find(|k| !EXPLAIN_PARAMETERS.contains(&k.as_str())))
    {
        return Err(format!(
            "parameters.{key}: not an explain parameter; expected {}",
            EXPLAIN_PARAMETERS.join(", ")
        ));
    }
    // `null` is "not set": the default.
    let get = |key: &str| parameters.and_then(|p| p.get(key)).filter(|v| !v.is_null());
    if let Some(v) = get("method") {
        config.method = match v.as_str() {
            Some("auto") => ShapleyMethod::Auto,
            Some("exact") => ShapleyMethod::Exact,
            Some("permutation") => ShapleyMethod::Permutation,
            _ => {
                return Err(format!(
                    "parameters.method: {v}; expected \"auto\", \"exact\" or \"permutation\""
                ))
            }
        };
    }
    if let Some(v) = get("output") {
        config.scale = match v.as_str() {
            Some("probability") => OutputScale::Probability,
            Some("logit") => OutputScale::Logit,
            _ => {
                return Err(format!(
                    "parameters.output: {v}; expected \"probability\" or \"logit\""
                ))
            }
        };
    }
    if let Some(v) = get("tolerance") {
        match v.as_f64() {
            Some(t) if t > 0.0 && t <= 1.0 => config.tolerance = t,
            _ => {
                return Err(format!(
                    "parameters.tolerance: {v}; expected a number in (0, 1]"
                ))
            }
        }
    }
    if let Some(v) = get("max_evaluations") {
        // A whole number, written as an integer or not (`1e6`, `1000000.0`).
        let whole = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=1e18).contains(f))
                .map(|f| f as u64)
        });
        match whole {
            Some(n) if n >= 1 && n <= MAX_EXPLAIN_EVALUATIONS as u64 => {
                config.max_evaluations = n as usize
            }
            _ => {
                return Err(format!(
                    "parameters.max_evaluations: {v}; expected a whole number from 1 to {MAX_EXPLAIN_EVALUATIONS}"
                ))
            }
        }
    }
    // The request's rows share the server's budget.
    config.max_evaluations = config
        .max_evaluations
        .min(MAX_EXPLAIN_EVALUATIONS / rows.max(1));
    Ok(config)
}

/// Checks the explain settings against the model and its background, in the request's words:
/// exact needs at most [`MAX_EXACT_FEATURES`](mlops_core::shapley::MAX_EXACT_FEATURES)
/// features and `2^features × background` evaluations a row within its share.
fn explain_fits(
    config: &mlops_core::shapley::ShapleyConfig,
    features: usize,
    background: usize,
    rows: usize,
) -> std::result::Result<(), String> {
    use mlops_core::shapley::{ShapleyMethod, MAX_EXACT_FEATURES};
    if config.method != ShapleyMethod::Exact {
        return Ok(());
    }
    if features > MAX_EXACT_FEATURES {
        return Err(format!(
            "parameters.method: \"exact\" takes at most {MAX_EXACT_FEATURES} features, this model has {features}; use \"permutation\" or \"auto\""
        ));
    }
    let needed = (1usize << features).saturating_mul(background);
    if needed > config.max_evaluations {
        return Err(format!(
            "parameters.max_evaluations: exact values need {needed} evaluations a row (2^{features} coalitions x {background} background rows); this request's {rows} row(s) get {} each (the server's {MAX_EXPLAIN_EVALUATIONS} a request, or the asked max_evaluations, shared); ask fewer rows or use \"permutation\"",
            config.max_evaluations
        ));
    }
    Ok(())
}

/// `POST /v2/models/{m}[/versions/{v}]/explain`: Shapley values of each row of a V2 request's
/// input against the background stored with the answering version (its model spec's
/// `background`), as three outputs — `shap_values` `[rows, features]` FP64,
/// `base_values` `[rows]` FP64 (the mean output over the background), `std_errors`
/// `[rows, features]` FP64 (0 when exact) — and the response's parameters (variant, method,
/// output, evaluations, feature names). A standard error is NaN (`null` in JSON) when the
/// budget allowed a single pair of orders. A version without a background is 422; rows with
/// a missing value, more rows than [`MAX_EXPLAIN_ROWS`], bad or unknown parameters, an
/// output asked twice are 400, naming the problem; more than [`MAX_EXPLAINS_IN_FLIGHT`]
/// explanations at once are 503. The work runs in the blocking pool and runs to its end even
/// after the request's timeout answered 408: [`MAX_EXPLAIN_EVALUATIONS`] bounds it.
fn run_explain(
    s: &Shared,
    target: Target,
    headers: &InferHeaders,
    body: &[u8],
) -> std::result::Result<Response, HttpError> {
    let mut request = decode_request(body, header_length(headers)?)?;
    if let Some(id) = request.id.as_deref() {
        id_too_long(s, id)?;
    }
    let x = features(s, &mut request.inputs).map_err(HttpError::bad_request)?;
    if x.nrows() == 0 || x.nrows() > MAX_EXPLAIN_ROWS {
        return Err(HttpError::bad_request(format!(
            "explain: {} rows; expected 1 to {MAX_EXPLAIN_ROWS} a request",
            x.nrows()
        )));
    }
    let routes = s.router.routes();
    let names = routes.variants[0].predictor.feature_names().to_vec();
    for (i, row) in x.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(HttpError::bad_request(format!(
                "explain: row {i} feature {:?} is {}; Shapley values need every feature of the row (impute it first)",
                names[j], row[j]
            )));
        }
    }
    if let Some(outputs) = &request.outputs {
        asked_once(outputs)?;
        if let Some(o) = outputs
            .iter()
            .find(|o| ![SHAP_VALUES, BASE_VALUES, STD_ERRORS].contains(&o.name.as_str()))
        {
            return Err(HttpError::bad_request(format!(
                "unknown output {:?}: expected {SHAP_VALUES:?}, {BASE_VALUES:?} or {STD_ERRORS:?}",
                o.name
            )));
        }
    }
    let config =
        explain_config(request.parameters.as_ref(), x.nrows()).map_err(HttpError::bad_request)?;
    // The forced version's variant (the URL's, or the variant header as infer takes it);
    // else the stable one (production), else the first arm.
    let forced = target
        .forced
        .as_deref()
        .or_else(|| headers.variant.as_ref().and_then(|v| v.to_str().ok()));
    if let Some(name) = forced {
        if !routes.variants.iter().any(|v| v.name == name) {
            return Err(HttpError::bad_request(format!(
                "invalid forced variant = {name:?}: expected one of {:?}",
                routes.variants.iter().map(|v| &v.name).collect::<Vec<_>>()
            )));
        }
    }
    let variant = match forced {
        Some(name) => routes.variants.iter().find(|v| v.name == name),
        None => routes
            .variants
            .iter()
            .find(|v| v.name == "stable")
            .or_else(|| {
                let first = routes.weights.first().map(|(n, _)| n.as_str());
                routes
                    .variants
                    .iter()
                    .find(|v| Some(v.name.as_str()) == first)
            }),
    }
    .ok_or_else(|| HttpError::not_found("no variant answers this model now"))?;
    let version = variant
        .version
        .map_or("(unversioned)".to_string(), |v| format!("version {v}"));
    let background = variant.predictor.background().ok_or_else(|| {
        HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{version} of {:?} ({}) has no explanation background: models trained by mlops-train keep one; add one with ModelArtifact::with_background",
                s.model, variant.name
            ),
        )
    })?;
    let background = background
        .view(names.len())
        .map_err(|e| HttpError::internal(format!("the stored background: {e}")))?;
    explain_fits(&config, names.len(), background.nrows(), x.nrows())
        .map_err(HttpError::bad_request)?;
    let mut explained = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let row: Vec<f32> = row.to_vec();
        explained.push(
            mlops_core::shapley::shapley(variant.predictor.as_ref(), &row, background, &config)
                .map_err(|e| {
                    // In the request's words: its parameters, and its share of the budget.
                    HttpError::of_model(crate::Error::from(e)).map_message(|m| {
                        m.replace(
                            "ShapleyConfig.max_evaluations",
                            &format!(
                                "parameters.max_evaluations (each of the {} row(s) gets {} of the request's budget)",
                                x.nrows(),
                                config.max_evaluations
                            ),
                        )
                        .replace("ShapleyConfig.", "parameters.")
                    })
                })?,
        );
    }
    let (rows, d) = (explained.len(), names.len());
    let values: Vec<f64> = explained.iter().flat_map(|e| e.values.clone()).collect();
    let errors: Vec<f64> = explained
        .iter()
        .flat_map(|e| e.std_errors.clone())
        .collect();
    let base: Vec<f64> = explained.iter().map(|e| e.base_value).collect();
    let (matrix, vector) = ([rows, d], [rows]);
    let (mut values, mut errors, mut base) = (Some(values), Some(errors), Some(base));
    let mut output = |name: &str, binary: bool| match name {
        SHAP_VALUES => Output {
            name: SHAP_VALUES,
            shape: &matrix,
            binary,
            data: OutputData::Fp64(values.take().unwrap_or_default()),
        },
        STD_ERRORS => Output {
            name: STD_ERRORS,
            shape: &matrix,
            binary,
            data: OutputData::Fp64(errors.take().unwrap_or_default()),
        },
        _ => Output {
            name: BASE_VALUES,
            shape: &vector,
            binary,
            data: OutputData::Fp64(base.take().unwrap_or_default()),
        },
    };
    let outputs: Vec<Output<'_>> = match &request.outputs {
        Some(asked) => asked.iter().map(|o| output(&o.name, o.binary)).collect(),
        None => [SHAP_VALUES, BASE_VALUES, STD_ERRORS]
            .into_iter()
            .map(|n| output(n, request.binary_output))
            .collect(),
    };
    /// The response's parameters.
    #[derive(serde::Serialize)]
    struct Explained<'a> {
        variant: &'a str,
        method: &'a str,
        output: mlops_core::shapley::OutputScale,
        evaluations: usize,
        background_rows: usize,
        feature_names: &'a [String],
    }
    let version = variant.version.map(|v| v.to_string());
    let encoded = encode_response(
        &s.model,
        version.as_deref(),
        request.id.as_deref(),
        Some(&Explained {
            variant: &variant.name,
            method: explained.first().map_or("exact", |e| e.method.as_str()),
            output: config.scale,
            evaluations: explained.iter().map(|e| e.evaluations).sum(),
            background_rows: background.nrows(),
            feature_names: &names,
        }),
        &outputs,
    )
    .map_err(|e| HttpError::internal(format!("encoding the response: {e}")))?;
    Ok(v2_response(encoded))
}

/// The 400 for an output a request asks for twice.
fn asked_once(outputs: &[super::protocol::RequestedOutput]) -> std::result::Result<(), HttpError> {
    match outputs
        .iter()
        .enumerate()
        .find(|(k, o)| outputs[..*k].iter().any(|p| p.name == o.name))
    {
        Some((k, o)) => Err(HttpError::bad_request(format!(
            "outputs[{k}]: {:?} is asked for twice",
            o.name
        ))),
        None => Ok(()),
    }
}

/// The 400 for a request id longer than [`ServerConfig::max_id_bytes`].
pub(super) fn id_too_long(s: &Shared, id: &str) -> std::result::Result<(), HttpError> {
    if id.len() > s.config.max_id_bytes {
        return Err(HttpError::bad_request(format!(
            "request id of {} bytes; expected at most {} bytes",
            id.len(),
            s.config.max_id_bytes
        )));
    }
    Ok(())
}

/// `{"id": "...", "labels": [0, 1, ...]}`: the labels of an earlier request.
async fn labels(
    State(s): State<Arc<Shared>>,
    Path(model): Path<String>,
    RequestBody(body): RequestBody,
) -> Response {
    if body.is_err() {
        return run_labels(&s, &model, body);
    }
    let shared = s.clone();
    let len = body.as_ref().map_or(0, Bytes::len);
    in_flight(&s, len, move || run_labels(&shared, &model, body)).await
}

/// The labels post's work ([`labels`]).
fn run_labels(s: &Shared, model: &str, body: std::result::Result<Bytes, HttpError>) -> Response {
    if model != s.model {
        return unknown_model(s, model);
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return HttpError::from(ProtocolError(format!("labels body: not valid JSON: {e}")))
                .into_response()
        }
    };
    let Some(id) = parsed.get("id").and_then(Value::as_str) else {
        return HttpError::from(ProtocolError("labels body: missing string \"id\"".into()))
            .into_response();
    };
    if let Err(e) = id_too_long(s, id) {
        return e.into_response();
    }
    let Some(values) = parsed.get("labels").and_then(Value::as_array) else {
        return HttpError::from(ProtocolError(
            "labels body: missing array \"labels\"".into(),
        ))
        .into_response();
    };
    let Some(labels) = values
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<f64>>>()
    else {
        return HttpError::from(ProtocolError(
            "labels body: every label must be a number (0 or 1)".into(),
        ))
        .into_response();
    };
    match s.router.feedback(id, &labels) {
        Ok(joined) => axum::Json(json!({ "id": id, "joined": joined })).into_response(),
        // The router refuses a labels post as bad input (400, by `status_of`).
        Err(e) => HttpError::from(e).into_response(),
    }
}

async fn metrics_text(State(s): State<Arc<Shared>>) -> Response {
    let Some(registry) = &s.metrics else {
        return HttpError::not_found("this server exposes no metrics registry").into_response();
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
        Err(e) => HttpError::internal(e.to_string()).into_response(),
    }
}
