//! The door every request passes before the routes: one tower layer, [`DoorLayer`], that
//! refuses a request target over [`ServerConfig::max_uri_bytes`] (414) and headers over
//! [`ServerConfig::max_header_bytes`] (431), asks for a bearer token on every endpoint but the
//! two health checks (401, never saying which part was wrong), answers 408 when a request is
//! not done within [`ServerConfig::timeout_seconds`], and turns every error answer of the
//! stack below (axum's rejections, which come as text or empty bodies) into
//! `{"error": ...}` JSON.
//!
//! Architecture Invariant: one layer, no allocation on a request's way through it. A request
//! answered at once (a single-row inference, a health check) starts no timer: the request
//! timeout's timer is made the first time the work below is not ready, so it bounds exactly
//! the requests that wait (a slow upload, work on the blocking pool).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request as HttpRequest;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::HttpError;
#[cfg(doc)]
use super::server::ServerConfig;

/// The largest error body (axum's rejection text) read to become the JSON message.
const ERROR_TEXT_BYTES: usize = 16 << 10;

/// What the door checks, from the server's configuration.
#[derive(Debug)]
pub(super) struct Rules {
    pub(super) max_uri_bytes: usize,
    pub(super) max_header_bytes: usize,
    /// SHA-256 of each accepted token (compared in constant time); empty: no auth.
    pub(super) tokens: Vec<[u8; 32]>,
    pub(super) timeout: Duration,
    /// The configured timeout, as the 408 message says it.
    pub(super) timeout_seconds: f64,
}

impl Rules {
    /// The refusal of a request that may not pass, before any work on it.
    fn refusal(&self, request: &HttpRequest) -> Option<HttpError> {
        let uri = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if uri > self.max_uri_bytes {
            return Some(HttpError::new(
                StatusCode::URI_TOO_LONG,
                format!(
                    "request target of {uri} bytes; expected at most {} bytes",
                    self.max_uri_bytes
                ),
            ));
        }
        let headers: usize = request
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if headers > self.max_header_bytes {
            return Some(HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request headers of {headers} bytes; expected at most {} bytes",
                    self.max_header_bytes
                ),
            ));
        }
        if self.tokens.is_empty() || is_health_check(request.uri().path()) {
            return None;
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        (!self.accepts(presented)).then(HttpError::unauthorized)
    }

    /// Whether an `Authorization` value carries an accepted bearer token (always, when no
    /// token is configured); the tokens are compared in constant time.
    pub(super) fn accepts(&self, authorization: Option<&str>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let presented = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start())
            .map(|t| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() });
        presented.is_some_and(|p| {
            self.tokens
                .iter()
                .fold(subtle::Choice::from(0), |any, t| any | t.ct_eq(&p))
                .into()
        })
    }

    /// `response` with `{"error": ...}` JSON when it is an error answer that is not JSON;
    /// `Err` with the future that reads its text when the body is not in memory.
    fn json_error(self: &Arc<Self>, response: Response) -> Result<Response, RewriteFuture> {
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return Ok(response);
        }
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return Ok(response);
        }
        let rules = self.clone();
        Err(Box::pin(async move {
            let (parts, body) = response.into_parts();
            let text = axum::body::to_bytes(body, ERROR_TEXT_BYTES)
                .await
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default();
            let message = if status == StatusCode::REQUEST_TIMEOUT {
                rules.timeout_message()
            } else if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase()
            } else {
                text
            };
            let mut r = HttpError::new(status, message).into_response();
            for (name, value) in &parts.headers {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    r.headers_mut().insert(name.clone(), value.clone());
                }
            }
            r
        }))
    }

    fn timeout_message(&self) -> String {
        format!(
            "request timeout: not completed within {} s",
            self.timeout_seconds
        )
    }
}

/// The endpoints open without a token: load balancers and orchestrators probe them.
fn is_health_check(path: &str) -> bool {
    matches!(path, "/v2/health/live" | "/v2/health/ready")
}

/// The layer of [`Door`].
#[derive(Clone)]
pub(super) struct DoorLayer {
    pub(super) rules: Arc<Rules>,
}

impl<S> tower::Layer<S> for DoorLayer {
    type Service = Door<S>;

    fn layer(&self, inner: S) -> Door<S> {
        Door {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The door in front of `S` (the routes): see the module's documentation.
#[derive(Clone)]
pub(super) struct Door<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S> tower::Service<HttpRequest> for Door<S>
where
    S: tower::Service<HttpRequest, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DoorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> DoorFuture<S::Future> {
        match self.rules.refusal(&request) {
            Some(refusal) => DoorFuture::Answered {
                response: Some(refusal.into_response()),
            },
            None => DoorFuture::Running {
                inner: self.inner.call(request),
                timer: None,
                rewrite: None,
                rules: self.rules.clone(),
            },
        }
    }
}

/// Reads an error answer's text into `{"error": ...}` (the rare error body not in memory).
type RewriteFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project_lite::pin_project! {
    /// A request's way through the [`Door`].
    #[project = DoorProjection]
    pub(super) enum DoorFuture<F> {
        /// Refused at the door.
        Answered { response: Option<Response> },
        /// Passed: the routes' answer, under the request timeout.
        Running {
            #[pin]
            inner: F,
            // Made the first time `inner` is not ready.
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
            // An error answer being turned into JSON.
            rewrite: Option<RewriteFuture>,
            rules: Arc<Rules>,
        },
    }
}

impl<F, E> Future for DoorFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DoorProjection::Answered { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    HttpError::internal("a request's answer was asked for twice").into_response()
                })))
            }
            DoorProjection::Running {
                inner,
                timer,
                rewrite,
                rules,
            } => {
                if let Some(future) = rewrite {
                    return future.as_mut().poll(cx).map(Ok);
                }
                if let Poll::Ready(answer) = inner.poll(cx) {
                    let response = answer?;
                    return match rules.json_error(response) {
                        Ok(response) => Poll::Ready(Ok(response)),
                        Err(mut future) => {
                            let polled = future.as_mut().poll(cx).map(Ok);
                            *rewrite = Some(future);
                            polled
                        }
                    };
                }
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(rules.timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!(seconds = rules.timeout_seconds, "request timed out");
                        let message = rules.timeout_message();
                        Poll::Ready(Ok(
                            HttpError::new(StatusCode::REQUEST_TIMEOUT, message).into_response()
                        ))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
