//! The HTTP floor: an axum handler that only parses a KServe V2 JSON request body and
//! returns a fixed V2 response, on the same stack as the server (axum, hyper, tokio's
//! multi-thread runtime). What a request costs before any of the server's own work: the
//! ceiling `benches/server_vs_floor.py` measures `examples/serve` against.
//!
//! ```text
//! cargo run --release -p mlops-serve --features http --example http_floor -- --addr 127.0.0.1:8090
//! ```

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

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

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = String::from("127.0.0.1:8090");
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(a)) => addr = a,
            _ => {
                eprintln!("usage: http_floor [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    let app = axum::Router::new()
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/health/ready",
            axum::routing::get(|| async { StatusCode::OK }),
        );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            axum::serve(listener, app).await
        })
}
