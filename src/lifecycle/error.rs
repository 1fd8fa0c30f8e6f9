//! The lifecycle's `Error`: every crate's error kept whole (its kind survives), plus the
//! lifecycle's own bad input.

use mlops_core::InvalidValue;

/// A lifecycle call's failure. Each crate's error keeps its own variant, so a registry's
/// `Unavailable` stays matchable (a retrain's lost compare-and-swap on the canary alias is
/// [`Error::CanaryMoved`], which names the orphaned candidate and keeps the `AliasMoved`).
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
    /// mlops-registry's error (registering, reading aliases).
    #[error(transparent)]
    Registry(#[from] mlops_registry::Error),
    /// The candidate passed and is registered, but the canary alias moved before it could
    /// point at it (another retrain won the compare-and-swap, `cause` the registry's
    /// `AliasMoved`): version `candidate` stays registered, pointed at by nothing.
    // `cause` is in the message (what a tool prints), so it is not also the `source`: a
    // chain printed whole would say it twice.
    #[error("version {candidate} of {model} is registered, but `{alias}` moved before it could point at it (pointed at by nothing): {cause}")]
    CanaryMoved {
        /// The model.
        model: String,
        /// The alias (`RetrainConfig.canary_alias`).
        alias: String,
        /// The candidate's version number.
        candidate: u64,
        /// The registry's `AliasMoved` (boxed: the variant stays small).
        cause: Box<mlops_registry::Error>,
    },
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
