//! # mlops-registry
//!
//! The model registry of the mlops loop. This crate is empty today; it will own a registry on
//! `object_store` (memory, local disk, S3, GCS, Azure) with race-free version numbers
//! (`PutMode::Create`), compare-and-swap aliases (`production`, `canary`, ...), lineage,
//! content-addressed blobs checked by sha256 on every load, tombstones, garbage collection and
//! an audit log. Models are stored in the artifact format of `mlops_core::model`.
