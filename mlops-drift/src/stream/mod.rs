//! Drift on streams.
//!
//! - [`WindowedDetector`]: a sliding window over one column's stream, tested against the
//!   column's [`crate::ColumnProfile`] every `step` values (KS, reference never re-sorted).
//! - [`OnlineDetector`]: a sliding-window KS detector whose thresholds are calibrated by
//!   simulation to an expected run time, as alibi-detect's online detectors.
//! - Concept-drift detectors on a model's error stream (1 = wrong, 0 = right, or any bounded
//!   loss): [`Adwin`], [`PageHinkley`], [`Ddm`], behind one [`ConceptDriftDetector`] trait.
//! - Seeded stream generators for tests and benches: [`SeaGenerator`] and
//!   [`HyperplaneGenerator`], with abrupt or gradual concept drift.

mod concept;
mod generators;
mod online;
mod window;

pub use concept::{Adwin, ConceptDriftDetector, Ddm, DriftSignal, PageHinkley};
pub use generators::{ConceptShift, HyperplaneGenerator, SeaGenerator};
pub use online::{OnlineConfig, OnlineDetector, OnlineResult};
pub use window::{WindowConfig, WindowResult, WindowedDetector};
