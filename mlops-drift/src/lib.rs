//! # mlops-drift
//!
//! Drift detection for the mlops loop. This crate is empty today; it will own:
//!
//! - two-sample statistics whose names, semantics and values follow scipy (Kolmogorov–Smirnov,
//!   Cramér–von Mises, Anderson–Darling, Mann–Whitney U, Wasserstein, energy distance,
//!   chi-square, G-test, two-proportion Z), distances (PSI, Jensen–Shannon, Hellinger, total
//!   variation, KL) and MMD;
//! - `ReferenceProfile`: reference statistics fitted once, stored beside a model version;
//! - windowed, online (expected-run-time calibrated) and concept-drift (ADWIN, Page–Hinkley,
//!   DDM) detectors, multiple-testing correction, and the `DriftPolicy` that turns a report into
//!   an action (none, warn, retrain).
//!
//! It depends only on `mlops-core`, so a host that wants drift statistics pulls in nothing else.
