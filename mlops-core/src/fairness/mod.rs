//! Bias detection: metrics by sensitive group, disparities with Fairlearn's and AIF360's
//! definitions, bootstrap intervals, and a gate.
//!
//! The sensitive columns ([`SensitiveGroups`]) are passed beside the predictions and need not
//! be model features; several columns mean their intersections. Everything is weighted when
//! sample weights are given.
//!
//! | Fairlearn / AIF360 | here |
//! |---|---|
//! | `MetricFrame(...).by_group`, `.overall` | [`MetricFrame::new`] |
//! | `MetricFrame.difference(method=...)`, `.ratio(...)` | [`MetricFrame::difference`], [`MetricFrame::ratio`] |
//! | `demographic_parity_difference(..., method, agg)` and the other measures | [`measure`] with a [`DisparitySpec`] |
//! | `ClassificationMetric(...).disparate_impact()` (privileged group) | [`Disparity::DisparateImpact`] with a `reference`: every other group against it, one by one (`per_group`), the farthest from fair reported; AIF360 given several unprivileged groups at once pools them into one |
//!
//! Where the numbers differ on purpose: a rate whose denominator is empty (the true positive
//! rate of a group without positive labels) is undefined here, and a measure that needs it says
//! which group; Fairlearn reports 0 there. `zero_when_undefined` reproduces Fairlearn, for
//! comparison only. A ratio of equal zeros (nobody selected in any group) is 1, where
//! Fairlearn has NaN. A group whose rows all weigh 0 takes no part, and a measure needs two
//! groups that do. Checked against fairlearn
//! 0.15 and aif360 0.6 to 1e-12 (`tests/fairness_fixtures.rs`, fixtures written by
//! `scripts/fixtures/fairness_refs.py`).
//!
//! What a gate adds ([`assess`], [`FairnessGate`]): a minimum group size below which a result
//! is inconclusive (never a pass), and a bootstrap interval resampled within each group.
//!
//! ```
//! use mlops_core::fairness::{measure, Disparity, DisparitySpec, FairnessData, SensitiveGroups};
//!
//! let sex = ["F", "F", "F", "M", "M", "M"];
//! let groups = SensitiveGroups::new(&[("sex", &sex[..])])?;
//! let y_true = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
//! let y_pred = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
//! let data = FairnessData::from_predictions(&y_true, &y_pred, None, groups)?;
//! let dp = measure(&data, &DisparitySpec::new(Disparity::DemographicParityDifference), false)?;
//! assert!((dp.value - (1.0 - 1.0 / 3.0)).abs() < 1e-12);
//! assert_eq!((dp.worst.first.as_str(), dp.worst.second.as_str()), ("M", "F"));
//! # Ok::<(), mlops_core::Error>(())
//! ```

mod assess;
mod disparity;
mod frame;
mod gate;
mod groups;

pub use assess::{
    assess, compare, AssessmentStatus, DisparityAssessment, FairnessComparison, FairnessConfig,
    SmallGroup,
};
pub use disparity::{
    measure, Aggregate, Disparity, DisparitySpec, DisparityValue, GroupPair, Method,
};
pub use frame::{FairnessData, GroupMetric, GroupMetrics, MetricFrame};
pub use gate::{FairnessDecision, FairnessGate, FairnessOutcome, FairnessRule};
pub use groups::{SensitiveGroups, MAX_GROUPS, MAX_GROUP_VALUE_BYTES};
