//! # mlops-registry
//!
//! The model registry of the mlops loop, kept entirely in object storage (`object_store`:
//! memory and local disk always; S3, GCS and Azure behind the `aws`, `gcp`, `azure`
//! features), so any number of trainers and servers on any number of machines share one
//! registry with no database, and it stays correct under concurrency:
//!
//! - version numbers are claimed by creating the version record with `PutMode::Create` (the
//!   one conditional write every backend supports): no gaps, no duplicates, whatever the
//!   number of writers; where each numbered log ends comes from a verified hint document
//!   and a few probes, so registering, resolving an alias or `@latest` and loading cost the
//!   same few store calls at 10 versions or 100,000 (listing is paginated:
//!   [`Registry::list_versions_page`]);
//! - files are content-addressed blobs (sha256 computed while reading them for upload),
//!   written before the record, so a crash never leaves a half version visible; every load
//!   checks each blob's sha256 and size;
//! - aliases (`production`, `canary`, ...) are append-only logs whose entries are created
//!   with `PutMode::Create`: [`Registry::set_alias`] is a real compare-and-swap, with history
//!   and rollback;
//! - delete is a tombstone; [`Registry::gc`] removes unreferenced blobs after a grace period;
//!   every change writes an [`AuditEvent`];
//! - opening a registry checks that the store enforces conditional creates, and refuses one
//!   that does not.

mod blobs;
pub mod blocking;
mod config;
mod download;
mod error;
pub mod names;
mod new_version;
mod query;
mod records;
mod registry;
mod store;

pub use blobs::{sha256_hex, FileSource};
/// The `bytes::Bytes` file contents come back as.
pub use bytes::Bytes;
/// The `chrono` of the records' timestamps.
pub use chrono;
pub use config::RegistryConfig;
pub use download::{DownloadMarker, DOWNLOAD_MARKER};
pub use error::{Error, Result};
pub use new_version::{NewVersion, PREDICTION_PROFILE_FILE, REFERENCE_PROFILE_FILE};
/// The `object_store` of [`Registry::with_store`].
pub use object_store;
pub use query::{Comparison, MetricFilter, Query};
pub use records::{
    AliasEntry, AuditAction, AuditEvent, DatasetFingerprint, FileEntry, Lineage, StateEntry,
    Tombstone, VersionInfo, VersionRecord, VersionRef,
};
pub use registry::{GcReport, Registry, UnreadableRecord, VersionPage, LATEST, MAX_PAGE};

mlops_core::json_methods!(
    RegistryConfig => "registry config",
    VersionRecord => "version record",
);
