//! The one error type of `mlops-core`.

use std::path::PathBuf;

/// A value outside what is allowed: the one bad-input shape of every mlops crate (each crate's
/// `Error::InvalidValue` wraps it), naming the field, the value seen and what was expected.
///
/// ```
/// use mlops_core::InvalidValue;
///
/// let e = InvalidValue::new("threshold", 1.5, "a probability in [0, 1]");
/// assert_eq!(e.field, "threshold");
/// assert_eq!(e.to_string(), "invalid threshold = 1.5: expected a probability in [0, 1]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} = {value}: expected {expected}")]
pub struct InvalidValue {
    /// The field or argument, for example `labels[3]` or `SplitFractions.test`.
    pub field: String,
    /// The value seen, rendered as text.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl InvalidValue {
    /// `field` had `value` (rendered with `Display`); `expected` says what would do.
    ///
    /// ```
    /// let e = mlops_core::InvalidValue::new("steps", "[]", "at least one step");
    /// assert_eq!(e.value, "[]");
    /// ```
    pub fn new(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        InvalidValue {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

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
    /// A columnar input (Parquet, Arrow record batches) could not be read as a dataset.
    #[error("{input}, {location}: {message}")]
    Data {
        /// The input: `Parquet <path or URL>` or `Arrow record batches`.
        input: String,
        /// Where: the column, with the row (0-based, counted from the start of the input)
        /// when known, or the part of the file (`footer`, `file`).
        location: String,
        /// What was wrong, with the value or type seen and what was expected.
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
    #[error(transparent)]
    InvalidValue(#[from] InvalidValue),
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
    /// A predictor failed to score (a host's model calling out, a simulated failure): what it
    /// said.
    #[error("predictor: {message}")]
    Predictor {
        /// What failed, with the value seen and what was expected where there is one.
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
    /// Shorthand for [`Error::InvalidValue`] of [`InvalidValue::new`] (every mlops crate's
    /// `Error::invalid` is this one constructor).
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
        InvalidValue::new(field, value, expected).into()
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

/// Gives an mlops crate's `Error` its bad-input constructor and its conversion from
/// [`Error`], written once for every crate: the enum needs an
/// `InvalidValue(mlops_core::InvalidValue)` variant and a `Core(mlops_core::Error)` variant.
///
/// - `Error::invalid(field, value, expected)`: [`InvalidValue::new`] in the crate's
///   `InvalidValue` variant (with the visibility given first: `pub`, `pub(crate)`);
/// - `From<mlops_core::Error>`: core's bad input lands in the crate's own `InvalidValue`
///   variant (a caller matches one variant for every bad input), anything else in `Core`, so
///   `?` on a core result needs no re-wrapping.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// enum Error {
///     #[error(transparent)]
///     InvalidValue(#[from] mlops_core::InvalidValue),
///     #[error(transparent)]
///     Core(mlops_core::Error),
/// }
/// mlops_core::crate_error!(pub(crate) Error);
///
/// let e = Error::invalid("k", 0, "at least 1");
/// assert_eq!(e.to_string(), "invalid k = 0: expected at least 1");
/// let from_core: Error = mlops_core::Error::invalid("p", 2, "at most 1").into();
/// assert!(matches!(from_core, Error::InvalidValue(v) if v.field == "p"));
/// ```
#[macro_export]
macro_rules! crate_error {
    ($vis:vis $error:ident) => {
        impl $error {
            /// Shorthand for the `InvalidValue` variant of
            /// [`InvalidValue::new`]($crate::InvalidValue::new): `field` had `value`,
            /// `expected` says what would do.
            #[allow(dead_code)]
            $vis fn invalid(
                field: impl ::std::convert::Into<::std::string::String>,
                value: impl ::std::fmt::Display,
                expected: impl ::std::convert::Into<::std::string::String>,
            ) -> Self {
                $error::InvalidValue($crate::InvalidValue::new(field, value, expected))
            }
        }

        /// mlops-core's errors: its bad input becomes this crate's `InvalidValue` variant,
        /// anything else its `Core` variant.
        impl ::std::convert::From<$crate::Error> for $error {
            fn from(e: $crate::Error) -> Self {
                match e {
                    $crate::Error::InvalidValue(v) => $error::InvalidValue(v),
                    other => $error::Core(other),
                }
            }
        }
    };
}
