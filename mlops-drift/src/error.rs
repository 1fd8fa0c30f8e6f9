//! The one error type of `mlops-drift`.

/// Everything that can go wrong in `mlops-drift`. Messages name the field, the value seen and
/// what was expected.
///
/// ```
/// use mlops_drift::stats::{ks_2samp, Alternative, KsMethod};
///
/// let err = ks_2samp(&[], &[1.0], Alternative::TwoSided, KsMethod::Auto).unwrap_err();
/// assert!(err.to_string().contains("sample `a`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input or configuration value is outside what is allowed.
    #[error("invalid {field} = {value}: expected {expected}")]
    InvalidValue {
        /// The field or argument.
        field: String,
        /// The value seen.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// An error from mlops-core (data loading, schema).
    #[error(transparent)]
    Core(#[from] mlops_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(
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
}
