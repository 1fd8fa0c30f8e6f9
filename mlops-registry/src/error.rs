//! The registry's error type: every message names the field or object, the value seen and
//! what was expected.

use std::time::Duration;

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, option or argument was refused before any I/O.
    #[error(transparent)]
    InvalidValue(#[from] mlops_core::InvalidValue),
    /// A model, version, alias or file does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// An alias was moved by someone else since the caller read it (compare-and-swap failed).
    #[error(
        "alias `{alias}` of model `{model}` points to {actual}, not {expected}{}",
        if actual == "nothing" { ": it is unset (pass no expected version to set it)" } else { ": someone moved it first (read it again and retry)" }
    )]
    AliasMoved {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
        /// What the caller expected (`version N` or `nothing`).
        expected: String,
        /// What it points to now.
        actual: String,
    },
    /// A version cannot take this change (deleted, still aliased, ...).
    #[error("version {version} of model `{model}`: {reason}")]
    Conflict {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// Why.
        reason: String,
    },
    /// A blob's bytes are not what the version record says.
    #[error(
        "file `{file}` of {model} v{version} is corrupt: expected sha256 {expected_sha256} \
         ({expected_size} bytes), found {actual_sha256} ({actual_size} bytes)"
    )]
    Checksum {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// The file's name in the version.
        file: String,
        /// Recorded digest.
        expected_sha256: String,
        /// Recorded size.
        expected_size: u64,
        /// Digest of the bytes read.
        actual_sha256: String,
        /// Size of the bytes read.
        actual_size: u64,
    },
    /// The store accepted a second conditional create of the same object: it does not enforce
    /// `PutMode::Create`, so versions and aliases could not be kept race-free on it.
    #[error(
        "store {store} does not enforce conditional creates (a second `PutMode::Create` of \
         {path} succeeded); refusing to run a registry on it"
    )]
    UnsafeStore {
        /// The store.
        store: String,
        /// The probe object.
        path: String,
    },
    /// An operation on the store did not finish in time.
    #[error("{op} {path} on {store} did not finish within {timeout:?} (is the store reachable?)")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The object or prefix.
        path: String,
        /// The store.
        store: String,
        /// The limit.
        timeout: Duration,
    },
    /// The store refused or failed an operation.
    #[error("{op} {path} on {store}: {cause}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The object or prefix.
        path: String,
        /// The store.
        store: String,
        /// The store's error (in the message, not repeated as `source()`).
        cause: Box<object_store::Error>,
    },
    /// A record in the store could not be read.
    #[error("record {path} is not valid: {reason}")]
    Record {
        /// The object.
        path: String,
        /// Why.
        reason: String,
    },
    /// Too many concurrent writers kept winning the race for the next version number.
    #[error("model `{model}`: no version number claimed after {attempts} attempts")]
    Contention {
        /// The model.
        model: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A local file could not be read or written.
    #[error("{op} {path}: {cause}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: String,
        /// The error (in the message, not repeated as `source()`).
        cause: std::io::Error,
    },
    /// The model files did not form an mlops-core artifact.
    #[error(transparent)]
    Core(mlops_core::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.display().to_string(),
            cause: source,
        }
    }
}

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

mlops_core::crate_error!(pub(crate) Error);
