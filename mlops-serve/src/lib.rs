//! # mlops-serve
//!
//! Serving for the mlops loop. This crate is empty today; it will own the fast inference engine
//! for `mlops_core::model` artifacts, the traffic router (stable, canary, shadow, A/B),
//! per-variant statistics, canary analysis and the promotion policy, Prometheus metrics, and an
//! Open Inference Protocol (KServe V2) HTTP server.
