//! The HTTP floor's application: an axum handler that only parses a KServe V2 JSON request
//! body and returns a fixed V2 response. Served over TCP by `mlops-serve/examples/http_floor`
//! (for `benches/server_vs_floor.py`) and called in process by `benches/http_path.rs`.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The answer to every request: one row's probability and label, as the server answers.
const ANSWER: &str = r#"{"model_name":"fraud","model_version":"1","parameters":{"variant":"stable"},"outputs":[{"name":"probability","datatype":"FP32","shape":[1],"data":[0.5]},{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}"#;

/// Parses the body as JSON (a 400 when it is not) and answers [`ANSWER`].
async fn infer(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(request) if request.get("inputs").is_some() => {
            ([(header::CONTENT_TYPE, "application/json")], ANSWER).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "not a V2 request").into_response(),
    }
}

/// The floor's routes: `POST /v2/models/{model}/infer` and `GET /v2/health/ready`.
pub fn floor_app() -> axum::Router {
    axum::Router::new()
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
}
