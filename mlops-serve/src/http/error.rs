//! The server's error answer: one type, [`HttpError`], and its one [`IntoResponse`]: a status
//! and `{"error": "..."}` JSON (with `Retry-After` when the server is busy). Handlers return
//! it; the status of a library error is decided in one place, [`status_of`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::protocol::ProtocolError;
use crate::{Error, ErrorKind};

/// An error answer: its status and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpError {
    status: StatusCode,
    message: String,
    /// A header the answer carries: `Retry-After` when the server is busy,
    /// `WWW-Authenticate` when a token is missing.
    header: Option<(header::HeaderName, HeaderValue)>,
}

impl HttpError {
    /// The same answer with its message rewritten (an endpoint naming a library field in
    /// the request's words).
    pub(crate) fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.message = f(&self.message);
        self
    }

    /// Its status.
    #[cfg(feature = "grpc")]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message.
    #[cfg(feature = "grpc")]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// An answer with `status`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            header: None,
        }
    }

    /// The request is wrong (400).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// What the request names does not exist (404).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The server is at a bound: retry later (503, `Retry-After: 1`).
    pub(crate) fn busy(message: impl Into<String>) -> Self {
        HttpError {
            header: Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// The request has no accepted bearer token (401, `WWW-Authenticate: Bearer`); the
    /// message never says which part was wrong.
    pub(crate) fn unauthorized() -> Self {
        HttpError {
            header: Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized")
        }
    }

    /// The server failed (500).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The model (the router scoring a request) failed with `e`. Only the input refusals of
    /// the `Predictor` contract are the client's (400: a bad value, a wrong width or output
    /// length); anything else a model returns — a JSON, I/O or artifact error of a host's
    /// predictor, whatever its kind — is the server's (500, said as the model's failure), so
    /// a client is never blamed (or told "not found") for a broken model.
    pub(crate) fn of_model(e: Error) -> Self {
        let refused = matches!(
            &e,
            Error::InvalidValue(_)
                | Error::Core(
                    mlops_core::Error::InvalidValue(_) | mlops_core::Error::LengthMismatch { .. }
                )
        );
        if refused {
            Self::bad_request(e.to_string())
        } else if let Error::Source { kind, .. } = &e {
            // Not the model's: a bound of the server reached (the batch queue, 503: retry
            // later), or the batcher failing.
            if *kind == ErrorKind::Unavailable {
                Self::busy(e.to_string())
            } else {
                Self::internal(e.to_string())
            }
        } else {
            Self::internal(format!("the model failed: {e}"))
        }
    }
}

/// The status of a library error, by its kind: bad input is the client's (400), a missing
/// model or version 404, a lost compare-and-swap 409, a store or source that cannot answer
/// now 503; anything else (corrupt, internal) the server's (500). The one place this is
/// decided.
pub(crate) fn status_of(e: &Error) -> StatusCode {
    match e.kind() {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        Self::new(status_of(&e), e.to_string())
    }
}

impl From<ProtocolError> for HttpError {
    fn from(e: ProtocolError) -> Self {
        Self::bad_request(e.0)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_400_and_other_failures_500() {
        let e = Error::invalid("x", 1, "0");
        assert_eq!(status_of(&e), StatusCode::BAD_REQUEST);
        assert_eq!(
            HttpError::of_model(e).status,
            StatusCode::BAD_REQUEST,
            "a refused input is the client's"
        );
        let io = Error::Core(mlops_core::Error::Io {
            action: "reading",
            path: "m".into(),
            cause: std::io::Error::other("disk"),
        });
        let e = HttpError::of_model(io);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.starts_with("the model failed: "), "{}", e.message);
        for (e, status) in [
            (Error::not_found("version 9"), StatusCode::NOT_FOUND),
            (
                Error::unavailable("registry"),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (Error::corrupt("blob"), StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(status_of(&e), status, "{e}");
        }
        // A host predictor's other failures are the server's, never a 400 or a 404.
        for e in [
            Error::Core(mlops_core::Error::Json {
                what: "backend answer".into(),
                cause: serde_json::from_str::<u8>("x").unwrap_err(),
            }),
            Error::Core(mlops_core::Error::Io {
                action: "reading",
                path: "weights".into(),
                cause: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        ] {
            let answer = HttpError::of_model(e);
            assert_eq!(
                answer.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{answer:?}"
            );
            assert!(
                answer.message.starts_with("the model failed: "),
                "{answer:?}"
            );
        }
        let length = Error::Core(mlops_core::Error::LengthMismatch {
            left: "x",
            left_len: 1,
            right: "out",
            right_len: 2,
        });
        assert_eq!(HttpError::of_model(length).status, StatusCode::BAD_REQUEST);
        let r = HttpError::busy("full").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = HttpError::unauthorized().into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
