//! Serving's error type: bad input, mlops-core's errors (a model, a dataset), and the failures
//! of what serving reads from (a model source, a rollout store, a metrics source) with their
//! [`ErrorKind`], so a caller (the rollout controller, the HTTP layer) can tell a retryable
//! failure from a permanent one.

use mlops_core::InvalidValue;

/// What kind of failure an [`Error`] is: what a caller branches on (retry, report, a status).
///
/// ```
/// use mlops_serve::{Error, ErrorKind};
///
/// let e = Error::unavailable("Prometheus query: connection refused");
/// assert_eq!(e.kind(), ErrorKind::Unavailable);
/// assert!(e.kind().is_retryable());
/// assert_eq!(ErrorKind::NotFound.as_str(), "not_found");
/// assert!(!ErrorKind::NotFound.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input (an argument, a request, a configuration, a query) is not valid.
    InvalidInput,
    /// A model, version, alias or record does not exist.
    NotFound,
    /// A store or service did not answer, timed out or failed on its side: trying again
    /// later can succeed.
    Unavailable,
    /// A change lost to a concurrent one, or the target's state forbids it.
    Conflict,
    /// Stored data is not what it should be (a checksum, a record, an artifact).
    Corrupt,
    /// Anything else (a model failing to score, a local I/O error, a runtime failure).
    Internal,
}

impl ErrorKind {
    /// The kind's name in logs and labels: `invalid_input`, `not_found`, `unavailable`,
    /// `conflict`, `corrupt`, `internal`.
    ///
    /// ```
    /// assert_eq!(mlops_serve::ErrorKind::Unavailable.as_str(), "unavailable");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether the same call can succeed later with nothing changed: only
    /// [`ErrorKind::Unavailable`].
    ///
    /// ```
    /// use mlops_serve::ErrorKind;
    /// assert!(ErrorKind::Unavailable.is_retryable());
    /// assert!(!ErrorKind::Corrupt.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure's underlying error, kept for a caller that downcasts it.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in mlops-serve. Messages name the field or object, the value
/// seen and what was expected; [`Error::kind`] says what kind of failure it is.
///
/// ```
/// use mlops_serve::{Error, ErrorKind};
///
/// let e = Error::invalid("weight", -1, "a percentage from 0 to 100");
/// assert_eq!(e.kind(), ErrorKind::InvalidInput);
/// assert_eq!(e.to_string(), "invalid weight = -1: expected a percentage from 0 to 100");
/// let gone = Error::not_found("version 3 of \"fraud\"");
/// assert_eq!(gone.to_string(), "not_found: version 3 of \"fraud\"");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument, a request or a configuration field has a value outside what is allowed.
    #[error(transparent)]
    InvalidValue(#[from] InvalidValue),
    /// An error from mlops-core: a model failing to score (the `Predictor` trait), a model
    /// artifact, a file, a dataset.
    #[error(transparent)]
    Core(mlops_core::Error),
    /// What serving reads from (a model source, a rollout store, a metrics source) failed.
    #[error("{kind}: {message}")]
    Source {
        /// The kind of failure (retryable or not).
        kind: ErrorKind,
        /// What failed, with the object and what was seen.
        message: String,
        /// The underlying error, when there is one (its text is in the message, not repeated
        /// as `source()`, so an error chain prints it once; downcast it to branch on it).
        cause: Option<Cause>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

mlops_core::crate_error!(pub Error);

impl Error {
    /// A failure of `kind` with `message`, no underlying error.
    ///
    /// ```
    /// use mlops_serve::{Error, ErrorKind};
    /// let e = Error::with_kind(ErrorKind::Conflict, "alias moved");
    /// assert_eq!(e.kind(), ErrorKind::Conflict);
    /// ```
    pub fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Source {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// A failure of `kind` with `message` (which should include `cause`'s text) caused by
    /// `cause`.
    ///
    /// ```
    /// use mlops_serve::{Error, ErrorKind};
    /// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    /// let e = Error::with_cause(ErrorKind::Unavailable, format!("store: {io}"), io);
    /// assert!(e.kind().is_retryable());
    /// ```
    pub fn with_cause(
        kind: ErrorKind,
        message: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Self {
        Error::Source {
            kind,
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// [`ErrorKind::NotFound`]: `what` (a model, a version, an alias) does not exist.
    ///
    /// ```
    /// let e = mlops_serve::Error::not_found("model \"fraud\"");
    /// assert_eq!(e.kind(), mlops_serve::ErrorKind::NotFound);
    /// ```
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::with_kind(ErrorKind::NotFound, what)
    }

    /// [`ErrorKind::Unavailable`]: a store or service did not answer; retrying can succeed.
    ///
    /// ```
    /// let e = mlops_serve::Error::unavailable("store unreachable");
    /// assert!(e.kind().is_retryable());
    /// ```
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::with_kind(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Corrupt`]: stored data is not what it should be.
    ///
    /// ```
    /// let e = mlops_serve::Error::corrupt("record models/fraud/aliases/canary: not JSON");
    /// assert!(!e.kind().is_retryable());
    /// ```
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::with_kind(ErrorKind::Corrupt, message)
    }

    /// The kind of failure: [`ErrorKind::InvalidInput`] for bad input (and core's input
    /// errors: a CSV, JSON, a missing column, lengths that differ), the source's kind for a source
    /// failure, [`ErrorKind::Corrupt`] for a malformed artifact,
    /// [`ErrorKind::NotFound`] for a file that is not there, [`ErrorKind::Internal`] for the
    /// rest (a model failing to score).
    ///
    /// ```
    /// use mlops_serve::{Error, ErrorKind};
    /// let core = mlops_core::Error::Predictor { message: "remote model down".into() };
    /// assert_eq!(Error::from(core).kind(), ErrorKind::Internal);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidValue(_) => ErrorKind::InvalidInput,
            Error::Source { kind, .. } => *kind,
            Error::Core(e) => match e {
                mlops_core::Error::InvalidValue(_)
                | mlops_core::Error::Csv { .. }
                | mlops_core::Error::Data { .. }
                | mlops_core::Error::MissingColumn { .. }
                | mlops_core::Error::LengthMismatch { .. }
                | mlops_core::Error::UndefinedMetric { .. }
                | mlops_core::Error::Json { .. } => ErrorKind::InvalidInput,
                mlops_core::Error::Artifact { .. } => ErrorKind::Corrupt,
                mlops_core::Error::Io { cause, .. }
                    if cause.kind() == std::io::ErrorKind::NotFound =>
                {
                    ErrorKind::NotFound
                }
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// mlops-drift's errors are bad input or core's: each lands in the same variant here, so its
/// kind is kept.
impl From<mlops_drift::Error> for Error {
    fn from(e: mlops_drift::Error) -> Self {
        match e {
            mlops_drift::Error::InvalidValue(v) => Error::InvalidValue(v),
            mlops_drift::Error::Core(c) => Error::from(c),
            other => Error::with_kind(ErrorKind::Internal, other.to_string()),
        }
    }
}
