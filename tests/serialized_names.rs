//! `as_str()` of every enum the workspace serializes as a string is the name serde writes, for
//! every variant (one place for all crates: the check is written once).

use serde::Serialize;

/// Fails unless every value of `all` serializes (serde_json) as the string `as_str` gives.
fn check<T: Serialize + std::fmt::Debug>(all: &[T], as_str: fn(&T) -> &'static str) {
    for v in all {
        assert_eq!(serde_json::to_value(v).unwrap(), as_str(v), "{v:?}");
    }
}

#[test]
fn core_enums() {
    use mlops::core::metrics::Metric;
    use mlops::core::model::Activation;
    use mlops::core::validation::Severity;
    use mlops::core::ColumnKind;
    check(&Metric::ALL, Metric::as_str);
    check(&Activation::ALL, Activation::as_str);
    check(&ColumnKind::ALL, ColumnKind::as_str);
    check(&Severity::ALL, Severity::as_str);
}

#[cfg(feature = "drift")]
#[test]
fn drift_enums() {
    use mlops::drift::stats::{Alternative, ContingencyStatistic, CvmMethod, KsMethod, MwuMethod};
    use mlops::drift::stream::DriftSignal;
    use mlops::drift::{ColumnStatus, Correction, DriftAction, DriftTest, Verdict};
    check(&Correction::ALL, Correction::as_str);
    check(&DriftAction::ALL, DriftAction::as_str);
    check(&DriftTest::ALL, DriftTest::as_str);
    check(&ColumnStatus::ALL, ColumnStatus::as_str);
    check(&Verdict::ALL, Verdict::as_str);
    check(&ContingencyStatistic::ALL, ContingencyStatistic::as_str);
    check(&CvmMethod::ALL, CvmMethod::as_str);
    check(&KsMethod::ALL, KsMethod::as_str);
    check(&Alternative::ALL, Alternative::as_str);
    check(&MwuMethod::ALL, MwuMethod::as_str);
    check(&DriftSignal::ALL, DriftSignal::as_str);
}

#[cfg(not(feature = "drift"))]
#[test]
#[ignore = "left out: drift's enums; run with --features drift (default)"]
fn drift_enums() {}

#[cfg(feature = "registry")]
#[test]
fn registry_enums() {
    use mlops::registry::AuditAction;
    check(&AuditAction::ALL, AuditAction::as_str);
}

#[cfg(not(feature = "registry"))]
#[test]
#[ignore = "left out: the registry's enums; run with --features registry (default)"]
fn registry_enums() {}

#[cfg(feature = "serve")]
#[test]
fn serve_enums() {
    use mlops::serve::analysis::Outcome;
    use mlops::serve::policy::{NoData, RollbackMode};
    use mlops::serve::rollout::{DecisionKind, Phase};
    use mlops::serve::NonFinitePolicy;
    check(&Outcome::ALL, Outcome::as_str);
    check(&NonFinitePolicy::ALL, NonFinitePolicy::as_str);
    check(&NoData::ALL, NoData::as_str);
    check(&RollbackMode::ALL, RollbackMode::as_str);
    check(&Phase::ALL, Phase::as_str);
    check(&DecisionKind::ALL, DecisionKind::as_str);
}

#[cfg(not(feature = "serve"))]
#[test]
#[ignore = "left out: serve's enums; run with --features serve (default)"]
fn serve_enums() {}

#[cfg(feature = "train")]
#[test]
fn train_enums() {
    use mlops::train::hpo::{Direction, StopReason, TrialState};
    use mlops::train::tracking::RunStatus;
    use mlops::train::Monitor;
    check(&Monitor::ALL, Monitor::as_str);
    check(&Direction::ALL, Direction::as_str);
    check(&TrialState::ALL, TrialState::as_str);
    check(&StopReason::ALL, StopReason::as_str);
    check(&RunStatus::ALL, RunStatus::as_str);
}

#[cfg(not(feature = "train"))]
#[test]
#[ignore = "left out: train's enums; run with --features train (default)"]
fn train_enums() {}
