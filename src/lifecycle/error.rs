//! The lifecycle's `Error`: every crate's error kept whole (its kind survives), plus the
//! lifecycle's own bad input.

use mlops_core::InvalidValue;

/// A lifecycle call's failure. Each crate's error keeps its own variant, so a registry's
/// `AliasMoved` (a lost compare-and-swap) or `Unavailable` stays matchable.
///
/// ```
/// use mlops::lifecycle::Error;
///
/// let e = Error::invalid("window", "0 rows", "at least 1 labeled row");
/// assert_eq!(e.to_string(), "invalid window = 0 rows: expected at least 1 labeled row");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument or a window was refused before any work.
    #[error(transparent)]
    InvalidValue(#[from] InvalidValue),
    /// mlops-core's error other than bad input (an undefined metric, I/O).
    #[error(transparent)]
    Core(mlops_core::Error),
    /// mlops-drift's error (the reference profile).
    #[error(transparent)]
    Drift(#[from] mlops_drift::Error),
    /// mlops-train's error (fitting, tracking).
    #[error(transparent)]
    Train(#[from] mlops_train::Error),
    /// mlops-serve's error (the router, the rollout controller, a promotion policy).
    #[error(transparent)]
    Serve(#[from] mlops_serve::Error),
    /// mlops-registry's error (registering, the alias's compare-and-swap: `AliasMoved`).
    #[error(transparent)]
    Registry(#[from] mlops_registry::Error),
    /// No trial of a search completed (`first_error`: why the first one failed).
    #[error("no trial of the search completed: {first_error}")]
    NoTrialCompleted {
        /// The first failed trial's error.
        first_error: String,
    },
    /// Drawing the timeline report failed.
    #[error("drawing the timeline report: {0}")]
    Draw(String),
}

mlops_core::crate_error!(pub Error);

/// The lifecycle's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
