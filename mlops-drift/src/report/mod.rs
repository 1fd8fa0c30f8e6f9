//! Comparing a current batch with a [`crate::ReferenceProfile`]: per-column tests (a preset by
//! type and size, or overrides), multiple-testing correction, effect-size gating, and the
//! dataset decision, all reported together.
//!
//! - `config.rs`: [`DriftTest`], [`DriftConfig`];
//! - `result.rs`: [`TestOutcome`], [`ColumnDrift`] and its [`ColumnStatus`], [`DatasetDrift`]
//!   and its [`Verdict`], [`DriftReport`];
//! - `compare.rs`: [`crate::ReferenceProfile::compare`], the entry point.

mod compare;
pub(crate) use compare::check_ecdf_error;
mod config;
mod result;

pub use config::{CheckedDriftConfig, DriftConfig, DriftTest};
pub use result::{
    ColumnDrift, ColumnStatus, DatasetDrift, DatasetRule, DriftReport, MissingDrift, TestOutcome,
    Verdict,
};
