//! The Open Inference Protocol (KServe V2) over HTTP (feature `http`): [`protocol`] decodes
//! and encodes the messages (JSON and the binary tensor data extension), [`server`] serves a
//! [`Router`](crate::router::Router) with them on axum.
//!
//! TLS is left to the proxy in front (a load balancer, an ingress, a sidecar): the server
//! speaks plain HTTP/1.1 and listens where it is told.

mod connection;
mod door;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "grpc")]
mod grpc_wire;
pub mod protocol;
pub mod server;
mod signal;

pub use connection::{serve, serve_with};
pub use server::{
    app, app_with, parse_tokens, supervise, CheckedServerConfig, Readiness, ServerConfig,
    INLINE_BODY_BYTES, INPUT, LABEL, MAX_EXPLAINS_IN_FLIGHT, MAX_EXPLAIN_EVALUATIONS,
    MAX_EXPLAIN_ROWS, PROBABILITY,
};
pub use signal::shutdown;
