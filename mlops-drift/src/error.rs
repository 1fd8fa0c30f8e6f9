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
    #[error(transparent)]
    InvalidValue(#[from] mlops_core::InvalidValue),
    /// An error from mlops-core (data loading, schema).
    #[error(transparent)]
    Core(mlops_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

mlops_core::crate_error!(pub(crate) Error);
