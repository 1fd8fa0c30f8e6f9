//! # mlops-core
//!
//! The ground every other mlops crate stands on:
//!
//! - [`Dataset`] (features, labels, sample weights, [`Schema`]) with CSV loading
//!   ([`CsvOptions`]) and seeded stratified or ordered splits ([`SplitFractions`]);
//! - [`validation`]: a [`validation::Validator`] trait, the built-in checks and a report that
//!   lists every problem;
//! - [`metrics`]: binary-classification metrics with sample weights that agree with
//!   scikit-learn, threshold search and bootstrap intervals;
//! - [`gate`]: metric gates with absolute and champion-relative rules;
//! - [`exposition`]: a `prometheus-client` registry as the classic Prometheus text
//!   (`promtool check metrics` clean);
//! - [`clock`]: injected time for every time-dependent decision;
//! - [`model`]: the [`model::Predictor`] trait and the artifact format (JSON spec +
//!   safetensors) shared by training and serving;
//! - [`version_ref`]: [`VersionRef`], the one grammar of a version reference (`3`,
//!   `@production`, `@latest`);
//! - `runtime` (feature `object-store`): the library's own I/O runtime, on which the registry
//!   and the tracker run every store call, request and timer, so their async APIs work on any
//!   executor (any tokio flavor, with or without drivers, or none) and never panic on a host's
//!   setup.
//! - `store_url` (feature `object-store`): the one way object stores are opened from URLs
//!   (credentials from the environment, unknown options refused, secrets never shown),
//!   shared by the registry and the tracker.
//! - `arrow_io` (feature `parquet`): [`Dataset`] from Arrow record batches and Parquet
//!   files, local or on an object store, whole or streamed by row group.
//! - `testing` (feature `testing`, off by default): the public conformance suite a host runs
//!   on its own [`model::Predictor`].
//!
//! Library code never panics on user input and never prints: it returns [`Error`] and logs
//! with `tracing`.
//!
//! ```
//! use mlops_core::{CsvOptions, Dataset, Schema};
//! use mlops_core::validation::{ValidationConfig, ValidationSuite};
//!
//! let csv = "x,label\n0.1,0\n0.7,1\n0.4,0\n0.9,1\n";
//! let data = Dataset::from_csv_reader(csv.as_bytes(), &CsvOptions::with_label("label"))?;
//! let schema = Schema::infer(&data);
//! let config = ValidationConfig { min_rows: 4, min_positives: 2, ..Default::default() };
//! let report = ValidationSuite::from_config(&config)?.run(&data, Some(&schema));
//! assert!(report.passed(), "{report}");
//! # Ok::<(), mlops_core::Error>(())
//! ```

#[cfg(feature = "parquet")]
pub mod arrow_io;
pub mod calibration;
pub mod cbpe;
pub mod checked;
pub mod clock;
mod csv_io;
mod dataset;
pub mod duration;
mod error;
pub mod exposition;
pub mod fairness;
pub mod gate;
pub mod importance;
pub mod json;
pub mod metrics;
pub mod model;
mod run_id;
#[cfg(feature = "object-store")]
pub mod runtime;
mod schema;
pub mod shapley;
mod split;
#[cfg(feature = "object-store")]
pub mod store_url;
#[cfg(feature = "sim")]
pub mod synthetic;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validation;
pub mod version_ref;

pub use csv_io::{read_csv_columns, read_csv_columns_path, CsvOptions};
pub use dataset::Dataset;
pub use error::{Error, InvalidValue, Result};
/// The `ndarray` this crate's API uses (0.17): a host on another version names these types
/// through this re-export (`mlops::ndarray` in the facade).
pub use ndarray;
/// The `object_store` the stores are opened with (feature `object-store`).
#[cfg(feature = "object-store")]
pub use object_store;
/// The Arrow and Parquet crates (59) a host builds record batches and writes Parquet with
/// (feature `parquet`): `arrow::array` (`arrow-array`), `arrow::schema` (`arrow-schema`),
/// `arrow::parquet`.
#[cfg(feature = "parquet")]
pub mod arrow {
    pub use arrow_array as array;
    pub use arrow_schema as schema;
    pub use parquet;
}
/// The `prometheus-client` (0.24) whose `Registry` every crate's metrics register into.
pub use prometheus_client;
pub use run_id::RunId;
pub use schema::{ColumnKind, ColumnSchema, Schema};
pub use split::{Split, SplitFractions};
pub use version_ref::VersionRef;

crate::json_methods!(
    Schema => "schema",
    model::ModelSpec => "model spec",
    metrics::MetricReport => "metric report",
    gate::MetricValues => "metric values",
    gate::MetricGate => "metric gate",
    gate::GateDecision => "gate decision",
    validation::ValidationReport => "validation report",
    validation::ValidationConfig => "validation config",
);
