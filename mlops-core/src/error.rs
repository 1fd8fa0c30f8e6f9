//! The one error type of `mlops-core`.

use std::path::PathBuf;

/// Everything that can go wrong in `mlops-core`.
///
/// Every variant names the field (column, file, tensor, parameter), the value that was seen and
/// what was expected, so that a message alone tells a user what to fix.
///
/// ```
/// use mlops_core::metrics::ScoredSamples;
///
/// let err = ScoredSamples::new(&[0.0, 2.0], &[0.1, 0.2], None).unwrap_err();
/// assert!(err.to_string().contains("labels[1]"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("reading", "writing", "creating directory").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not repeated as `source()`, so an error
        /// chain prints it once).
        cause: std::io::Error,
    },
    /// A CSV input could not be parsed.
    #[error("CSV {location}: {message}")]
    Csv {
        /// Where: line number (1-based, the header is line 1) and column name when known.
        location: String,
        /// What was wrong, with the text seen and what was expected.
        message: String,
    },
    /// A named column does not exist.
    #[error("column `{name}` not found; available columns: {available}")]
    MissingColumn {
        /// The column asked for.
        name: String,
        /// The columns there are, comma-separated.
        available: String,
    },
    /// An argument or a field of a configuration has a value outside what is allowed.
    #[error("invalid {field} = {value}: expected {expected}")]
    InvalidValue {
        /// The field or argument, for example `labels[3]` or `SplitFractions.test`.
        field: String,
        /// The value seen, rendered as text.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {left} has {left_len} entries but {right} has {right_len}")]
    LengthMismatch {
        /// The first input.
        left: &'static str,
        /// Its length.
        left_len: usize,
        /// The second input.
        right: &'static str,
        /// Its length.
        right_len: usize,
    },
    /// A metric is not defined for the given data (for example ROC AUC with one class).
    #[error("{metric} is undefined: {reason}")]
    UndefinedMetric {
        /// The metric.
        metric: String,
        /// Why.
        reason: String,
    },
    /// A model source (a registry serving models) failed; its message.
    #[error("model source: {message}")]
    Source {
        /// What the source said.
        message: String,
    },
    /// The library's own I/O runtime (see `runtime`) could not start or run a task.
    #[error("runtime: {cause}")]
    Runtime {
        /// What failed.
        cause: String,
    },
    /// A model artifact is malformed or does not match its spec.
    #[error("model artifact {item}: {message}")]
    Artifact {
        /// The file, tensor or spec field at fault.
        item: String,
        /// What was wrong, with what was found and what was expected.
        message: String,
    },
    /// JSON could not be read or written.
    #[error("JSON {what}: {cause}")]
    Json {
        /// What was being (de)serialized.
        what: String,
        /// The underlying error (in the message, not repeated as `source()`, so an error
        /// chain prints it once).
        cause: serde_json::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidValue`] (for crates built on this one, such as
    /// mlops-serve, whose errors are these).
    ///
    /// ```
    /// let e = mlops_core::Error::invalid("threshold", 1.5, "a probability in [0, 1]");
    /// assert_eq!(e.to_string(), "invalid threshold = 1.5: expected a probability in [0, 1]");
    /// ```
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidValue {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}
