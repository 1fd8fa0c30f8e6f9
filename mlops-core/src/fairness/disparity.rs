//! The disparity measures: Fairlearn's differences and ratios, AIF360's signed measures against
//! a reference group.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::frame::{Cells, FairnessData, GroupMetric};
use super::groups::SensitiveGroups;
use crate::error::{Error, Result};

/// A disparity measure.
///
/// | measure | definition | fair at |
/// |---|---|---|
/// | `demographic_parity_difference` / `_ratio` | selection rate spread (Fairlearn) | 0 / 1 |
/// | `equalized_odds_difference` / `_ratio` | worst (or mean) of the TPR and FPR spreads (Fairlearn) | 0 / 1 |
/// | `equal_opportunity_difference` / `_ratio` | TPR spread (Fairlearn) | 0 / 1 |
/// | `statistical_parity_difference` | `SR(g) − SR(reference)` (AIF360) | 0 |
/// | `disparate_impact` | `SR(g) / SR(reference)` (AIF360; the four-fifths rule asks ≥ 0.8) | 1 |
/// | `average_odds_difference` | `((FPR(g) − FPR(ref)) + (TPR(g) − TPR(ref))) / 2` (AIF360) | 0 |
///
/// AIF360's measures compare every other group with the reference group (AIF360's
/// privileged group) and report the group farthest from fair, with its sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disparity {
    /// Selection rate difference.
    DemographicParityDifference,
    /// Selection rate ratio.
    DemographicParityRatio,
    /// TPR and FPR differences, aggregated.
    EqualizedOddsDifference,
    /// TPR and FPR ratios, aggregated.
    EqualizedOddsRatio,
    /// TPR difference.
    EqualOpportunityDifference,
    /// TPR ratio.
    EqualOpportunityRatio,
    /// AIF360's signed selection rate difference against the reference group.
    StatisticalParityDifference,
    /// AIF360's selection rate ratio against the reference group.
    DisparateImpact,
    /// AIF360's mean of the signed FPR and TPR differences against the reference group.
    AverageOddsDifference,
}

impl Disparity {
    /// Every measure.
    pub const ALL: [Disparity; 9] = [
        Disparity::DemographicParityDifference,
        Disparity::DemographicParityRatio,
        Disparity::EqualizedOddsDifference,
        Disparity::EqualizedOddsRatio,
        Disparity::EqualOpportunityDifference,
        Disparity::EqualOpportunityRatio,
        Disparity::StatisticalParityDifference,
        Disparity::DisparateImpact,
        Disparity::AverageOddsDifference,
    ];

    /// The snake_case name (Fairlearn's and AIF360's function names).
    pub fn name(self) -> &'static str {
        match self {
            Disparity::DemographicParityDifference => "demographic_parity_difference",
            Disparity::DemographicParityRatio => "demographic_parity_ratio",
            Disparity::EqualizedOddsDifference => "equalized_odds_difference",
            Disparity::EqualizedOddsRatio => "equalized_odds_ratio",
            Disparity::EqualOpportunityDifference => "equal_opportunity_difference",
            Disparity::EqualOpportunityRatio => "equal_opportunity_ratio",
            Disparity::StatisticalParityDifference => "statistical_parity_difference",
            Disparity::DisparateImpact => "disparate_impact",
            Disparity::AverageOddsDifference => "average_odds_difference",
        }
    }

    /// Whether the measure compares groups with a named reference group (AIF360's).
    pub fn needs_reference(self) -> bool {
        matches!(
            self,
            Disparity::StatisticalParityDifference
                | Disparity::DisparateImpact
                | Disparity::AverageOddsDifference
        )
    }

    /// The per-group metrics the measure reads.
    pub fn metrics(self) -> &'static [GroupMetric] {
        match self {
            Disparity::DemographicParityDifference
            | Disparity::DemographicParityRatio
            | Disparity::StatisticalParityDifference
            | Disparity::DisparateImpact => &[GroupMetric::SelectionRate],
            Disparity::EqualOpportunityDifference | Disparity::EqualOpportunityRatio => {
                &[GroupMetric::TruePositiveRate]
            }
            Disparity::EqualizedOddsDifference
            | Disparity::EqualizedOddsRatio
            | Disparity::AverageOddsDifference => &[
                GroupMetric::TruePositiveRate,
                GroupMetric::FalsePositiveRate,
            ],
        }
    }

    /// How far from fair a value is, on a scale where 0 is fair and larger is worse: the value
    /// of a difference, `|value|` of a signed difference, `1 − value` of a ratio, and
    /// `1 − min(v, 1/v)` of disparate impact (so 1.25 is as far as 0.8).
    pub fn unfairness(self, value: f64) -> f64 {
        match self {
            Disparity::DemographicParityDifference
            | Disparity::EqualizedOddsDifference
            | Disparity::EqualOpportunityDifference => value,
            Disparity::StatisticalParityDifference | Disparity::AverageOddsDifference => {
                value.abs()
            }
            Disparity::DemographicParityRatio
            | Disparity::EqualizedOddsRatio
            | Disparity::EqualOpportunityRatio => 1.0 - value,
            Disparity::DisparateImpact => {
                if value > 1.0 {
                    1.0 - 1.0 / value
                } else {
                    1.0 - value
                }
            }
        }
    }
}

impl fmt::Display for Disparity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Fairlearn's `method`: the spread among groups, or each group against the whole data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `max − min`, `min / max`.
    #[default]
    BetweenGroups,
    /// The group farthest from the overall value.
    ToOverall,
}

/// Fairlearn's `agg` for equalized odds: the worse of the TPR and FPR parts, or their mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The larger difference, the smaller ratio.
    #[default]
    WorstCase,
    /// The mean of the two.
    Mean,
}

/// A disparity with its options, as written in a gate's configuration:
/// `{"measure": "equalized_odds_difference", "agg": "mean"}`,
/// `{"measure": "disparate_impact", "reference": ["M"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisparitySpec {
    /// The measure.
    pub measure: Disparity,
    /// Fairlearn's `method` (its measures only; default `between_groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Fairlearn's `agg` (equalized odds only; default `worst_case`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregate>,
    /// The reference group's values, one per sensitive column (AIF360's measures only, which
    /// need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<String>>,
}

impl DisparitySpec {
    /// `measure` with its defaults.
    pub fn new(measure: Disparity) -> Self {
        DisparitySpec {
            measure,
            method: None,
            agg: None,
            reference: None,
        }
    }

    /// With Fairlearn's `method`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// With Fairlearn's `agg`.
    pub fn agg(mut self, agg: Aggregate) -> Self {
        self.agg = Some(agg);
        self
    }

    /// With a reference group (one value per sensitive column).
    pub fn reference<S: Into<String>>(mut self, key: impl IntoIterator<Item = S>) -> Self {
        self.reference = Some(key.into_iter().map(Into::into).collect());
        self
    }

    /// Checks that the options fit the measure, naming `field` in the error.
    pub fn check(&self, field: &str) -> Result<()> {
        let m = self.measure;
        if m.needs_reference() {
            if self.reference.as_ref().is_none_or(|r| r.is_empty()) {
                return Err(Error::invalid(
                    format!("{field}.reference"),
                    "none",
                    format!("the reference (privileged) group's values for {m}"),
                ));
            }
            if self.method.is_some() {
                return Err(Error::invalid(
                    format!("{field}.method"),
                    "set",
                    format!("no method for {m}, which compares every group with the reference"),
                ));
            }
        } else if self.reference.is_some() {
            return Err(Error::invalid(
                format!("{field}.reference"),
                "set",
                format!(
                    "no reference for {m} (Fairlearn's measures compare all groups; use method)"
                ),
            ));
        }
        if self.agg.is_some()
            && !matches!(
                m,
                Disparity::EqualizedOddsDifference | Disparity::EqualizedOddsRatio
            )
        {
            return Err(Error::invalid(
                format!("{field}.agg"),
                "set",
                format!("no agg for {m} (equalized odds only)"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for DisparitySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.measure)?;
        if let Some(Method::ToOverall) = self.method {
            write!(f, " (to_overall)")?;
        }
        if let Some(Aggregate::Mean) = self.agg {
            write!(f, " (mean)")?;
        }
        if let Some(r) = &self.reference {
            write!(f, " against {}", r.join(", "))?;
        }
        Ok(())
    }
}

/// The other side of a disparity's worst pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Group(usize),
    Overall,
}

/// A value and the pair of groups that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub value: f64,
    pub first: usize,
    pub second: Side,
}

pub(crate) fn difference(values: &[f64], overall: f64, method: Method) -> Spread {
    match method {
        Method::BetweenGroups => {
            let (hi, lo) = extremes(values);
            Spread {
                value: values[hi] - values[lo],
                first: hi,
                second: Side::Group(lo),
            }
        }
        Method::ToOverall => {
            let mut best = Spread {
                value: f64::NEG_INFINITY,
                first: 0,
                second: Side::Overall,
            };
            for (g, v) in values.iter().enumerate() {
                let d = (v - overall).abs();
                if d > best.value {
                    best.value = d;
                    best.first = g;
                }
            }
            best
        }
    }
}

/// A ratio whose every value is 0 (every group's rate is 0, so the overall one too): the groups
/// are equal, so the ratio is 1 — unless `fairlearn` is asked for, which has 0 / 0 (NaN), an
/// error here.
pub(crate) fn ratio(
    values: &[f64],
    overall: f64,
    method: Method,
    metric: GroupMetric,
    fairlearn: bool,
) -> Result<Spread> {
    let (hi, lo) = extremes(values);
    if values[hi] <= 0.0 {
        if fairlearn {
            return Err(Error::UndefinedMetric {
                metric: format!("{metric} ratio"),
                reason: format!("every group's {metric} is 0 (0 / 0; Fairlearn gives NaN)"),
            });
        }
        return Ok(Spread {
            value: 1.0,
            first: lo,
            second: match method {
                Method::BetweenGroups => Side::Group(hi),
                Method::ToOverall => Side::Overall,
            },
        });
    }
    match method {
        Method::BetweenGroups => Ok(Spread {
            value: values[lo] / values[hi],
            first: lo,
            second: Side::Group(hi),
        }),
        Method::ToOverall => {
            let mut best = Spread {
                value: f64::INFINITY,
                first: 0,
                second: Side::Overall,
            };
            for (g, v) in values.iter().enumerate() {
                let r = v / overall;
                let r = if r > 1.0 { 1.0 / r } else { r };
                if r < best.value {
                    best.value = r;
                    best.first = g;
                }
            }
            Ok(best)
        }
    }
}

/// Indices of the largest and the smallest value: the first of ties, and two different groups
/// when all are equal (there are at least two: [`Table::measure`] checks).
fn extremes(values: &[f64]) -> (usize, usize) {
    let (mut hi, mut lo) = (0, 0);
    for (i, &v) in values.iter().enumerate() {
        if v > values[hi] {
            hi = i;
        }
        if v < values[lo] {
            lo = i;
        }
    }
    if hi == lo && values.len() > 1 {
        lo = usize::from(hi == 0);
    }
    (hi, lo)
}

/// A measured disparity: its value and the pair of groups that gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisparityValue {
    /// The measure's value (signed for AIF360's differences).
    pub value: f64,
    /// The worst pair: the two groups (or a group and `overall`) whose comparison gave the
    /// value, with their sizes.
    pub worst: GroupPair,
    /// For AIF360's measures: each other group's value against the reference, in group order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_group: Vec<(String, f64)>,
}

/// Two groups (the second may be `overall`) and their rows (of positive weight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPair {
    /// The first group.
    pub first: String,
    /// Its rows.
    pub first_rows: usize,
    /// The second group, or `overall`.
    pub second: String,
    /// Its rows.
    pub second_rows: usize,
}

impl fmt::Display for GroupPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} rows) and {} ({} rows)",
            self.first, self.first_rows, self.second, self.second_rows
        )
    }
}

/// Everything a measure computes from counts: the groups' names for errors, the reference.
pub(crate) struct Table<'a> {
    pub groups: &'a SensitiveGroups,
    pub cells: &'a [Cells],
    pub overall: Cells,
    pub zero_when_undefined: bool,
}

impl<'a> Table<'a> {
    pub fn new(groups: &'a SensitiveGroups, cells: &'a [Cells], zero: bool) -> Self {
        let mut overall = Cells::default();
        for c in cells {
            overall.merge(c);
        }
        Table {
            groups,
            cells,
            overall,
            zero_when_undefined: zero,
        }
    }

    /// Groups of positive weight: a group whose every row weighs 0 takes no part (it has no
    /// rate of any kind), as it would not appear in weighted data.
    fn present(&self) -> Vec<usize> {
        (0..self.cells.len())
            .filter(|&g| self.cells[g].rows > 0)
            .collect()
    }

    fn rate(&self, g: Option<usize>, metric: GroupMetric) -> Result<f64> {
        let cells = g.map_or(&self.overall, |g| &self.cells[g]);
        cells
            .rate(metric, self.zero_when_undefined)
            .map_err(|why| Error::UndefinedMetric {
                metric: format!(
                    "{metric} of {}",
                    g.map_or("overall".to_string(), |g| format!(
                        "group {}",
                        self.groups.name(g)
                    ))
                ),
                reason: why.to_string(),
            })
    }

    fn rates(&self, present: &[usize], metric: GroupMetric) -> Result<Vec<f64>> {
        present
            .iter()
            .map(|&g| self.rate(Some(g), metric))
            .collect()
    }

    /// The measure on these counts.
    pub fn measure(&self, spec: &DisparitySpec, reference: Option<usize>) -> Result<Computed> {
        let present = self.present();
        if present.len() < 2 {
            return Err(Error::UndefinedMetric {
                metric: spec.measure.to_string(),
                reason: match present.first() {
                    None => "no group has rows of positive weight".into(),
                    Some(&g) => format!(
                        "only group {} has rows of positive weight: there is nothing to compare it with",
                        self.groups.name(g)
                    ),
                },
            });
        }
        let method = spec.method.unwrap_or_default();
        let agg = spec.agg.unwrap_or_default();
        let spread_of = |metric: GroupMetric, is_ratio: bool| -> Result<Spread> {
            let values = self.rates(&present, metric)?;
            let overall = match method {
                Method::ToOverall => self.rate(None, metric)?,
                Method::BetweenGroups => f64::NAN,
            };
            let mut s = if is_ratio {
                ratio(&values, overall, method, metric, self.zero_when_undefined)?
            } else {
                difference(&values, overall, method)
            };
            s.first = present[s.first];
            if let Side::Group(g) = s.second {
                s.second = Side::Group(present[g]);
            }
            Ok(s)
        };
        let one = |s: Spread| Computed {
            value: s.value,
            first: s.first,
            second: s.second,
            per_group: Vec::new(),
        };
        use Disparity as D;
        Ok(match spec.measure {
            D::DemographicParityDifference => one(spread_of(GroupMetric::SelectionRate, false)?),
            D::DemographicParityRatio => one(spread_of(GroupMetric::SelectionRate, true)?),
            D::EqualOpportunityDifference => one(spread_of(GroupMetric::TruePositiveRate, false)?),
            D::EqualOpportunityRatio => one(spread_of(GroupMetric::TruePositiveRate, true)?),
            D::EqualizedOddsDifference | D::EqualizedOddsRatio => {
                let is_ratio = spec.measure == D::EqualizedOddsRatio;
                let tpr = spread_of(GroupMetric::TruePositiveRate, is_ratio);
                let fpr = spread_of(GroupMetric::FalsePositiveRate, is_ratio);
                // Fairlearn leaves out a part whose ratio is 0 / 0 (NaN): `min` and `mean`
                // over the other. Only in its compatibility mode can a part be 0 / 0.
                let (tpr, fpr) = match (tpr, fpr) {
                    (Ok(t), Ok(f)) => (t, f),
                    (Ok(t), Err(_)) if is_ratio && self.zero_when_undefined => (t, t),
                    (Err(_), Ok(f)) if is_ratio && self.zero_when_undefined => (f, f),
                    (Err(e), _) | (_, Err(e)) => return Err(e),
                };
                // The pair shown is the worse part's, for either aggregate.
                let worse = if is_ratio == (tpr.value <= fpr.value) {
                    tpr
                } else {
                    fpr
                };
                let value = match agg {
                    Aggregate::WorstCase => worse.value,
                    Aggregate::Mean => (tpr.value + fpr.value) / 2.0,
                };
                Computed {
                    value,
                    ..one(worse)
                }
            }
            D::StatisticalParityDifference | D::DisparateImpact | D::AverageOddsDifference => {
                let Some(r) = reference else {
                    return Err(Error::invalid(
                        "reference",
                        "none",
                        format!("a reference group for {}", spec.measure),
                    ));
                };
                if self.cells[r].rows == 0 {
                    return Err(Error::UndefinedMetric {
                        metric: spec.measure.to_string(),
                        reason: format!(
                            "the reference group {} has no rows of positive weight",
                            self.groups.name(r)
                        ),
                    });
                }
                let others: Vec<usize> = present.iter().copied().filter(|&g| g != r).collect();
                if others.is_empty() {
                    return Err(Error::UndefinedMetric {
                        metric: spec.measure.to_string(),
                        reason: format!(
                            "no group besides the reference {} has rows",
                            self.groups.name(r)
                        ),
                    });
                }
                let mut per_group = Vec::with_capacity(others.len());
                for &g in &others {
                    let v = match spec.measure {
                        D::StatisticalParityDifference => {
                            self.rate(Some(g), GroupMetric::SelectionRate)?
                                - self.rate(Some(r), GroupMetric::SelectionRate)?
                        }
                        D::DisparateImpact => {
                            let base = self.rate(Some(r), GroupMetric::SelectionRate)?;
                            if base <= 0.0 {
                                return Err(Error::UndefinedMetric {
                                    metric: spec.measure.to_string(),
                                    reason: format!(
                                        "the reference group {}'s selection rate is 0",
                                        self.groups.name(r)
                                    ),
                                });
                            }
                            self.rate(Some(g), GroupMetric::SelectionRate)? / base
                        }
                        _ => {
                            let fpr = self.rate(Some(g), GroupMetric::FalsePositiveRate)?
                                - self.rate(Some(r), GroupMetric::FalsePositiveRate)?;
                            let tpr = self.rate(Some(g), GroupMetric::TruePositiveRate)?
                                - self.rate(Some(r), GroupMetric::TruePositiveRate)?;
                            0.5 * (fpr + tpr)
                        }
                    };
                    per_group.push((g, v));
                }
                let &(worst, value) = per_group
                    .iter()
                    .fold(None, |best: Option<&(usize, f64)>, item| match best {
                        Some(b)
                            if spec.measure.unfairness(b.1) >= spec.measure.unfairness(item.1) =>
                        {
                            Some(b)
                        }
                        _ => Some(item),
                    })
                    .expect("others is not empty");
                Computed {
                    value,
                    first: worst,
                    second: Side::Group(r),
                    per_group,
                }
            }
        })
    }

    pub fn value(&self, c: &Computed) -> DisparityValue {
        let name_rows = |s: Side| match s {
            Side::Group(g) => (self.groups.name(g), self.cells[g].rows),
            Side::Overall => ("overall".to_string(), self.overall.rows),
        };
        let (first, first_rows) = name_rows(Side::Group(c.first));
        let (second, second_rows) = name_rows(c.second);
        DisparityValue {
            value: c.value,
            worst: GroupPair {
                first,
                first_rows,
                second,
                second_rows,
            },
            per_group: c
                .per_group
                .iter()
                .map(|&(g, v)| (self.groups.name(g), v))
                .collect(),
        }
    }
}

/// A measure's value on some counts (group indices, not names: the bootstrap makes many).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Computed {
    pub value: f64,
    pub first: usize,
    pub second: Side,
    pub per_group: Vec<(usize, f64)>,
}

/// The reference group's index, or an error naming the groups there are.
pub(crate) fn reference_index(
    spec: &DisparitySpec,
    groups: &SensitiveGroups,
) -> Result<Option<usize>> {
    let Some(key) = &spec.reference else {
        return Ok(None);
    };
    groups.find(key).map(Some).ok_or_else(|| {
        let known: Vec<String> = (0..groups.group_count().min(20))
            .map(|g| format!("[{}]", groups.key(g).join(", ")))
            .collect();
        Error::invalid(
            "reference",
            format!("[{}]", key.join(", ")),
            format!(
                "a group that occurs in the data, one value per column ({}): {}{}",
                groups.columns().join(", "),
                known.join(" "),
                if groups.group_count() > 20 {
                    " ..."
                } else {
                    ""
                }
            ),
        )
    })
}

/// The value of `spec` on `data`, with the worst pair of groups: a point estimate with no
/// minimum group size (see [`super::assess`] for the one a gate uses).
///
/// ```
/// use mlops_core::fairness::{measure, Disparity, DisparitySpec, FairnessData, SensitiveGroups};
///
/// let groups = SensitiveGroups::new(&[("g", &["a", "a", "b", "b"][..])])?;
/// let data = FairnessData::from_predictions(&[1.0, 0.0, 1.0, 0.0], &[1.0, 1.0, 1.0, 0.0], None, groups)?;
/// let dp = measure(&data, &DisparitySpec::new(Disparity::DemographicParityDifference), false)?;
/// assert_eq!(dp.value, 0.5);
/// assert_eq!(dp.worst.to_string(), "a (2 rows) and b (2 rows)");
/// let di = measure(&data, &DisparitySpec::new(Disparity::DisparateImpact).reference(["a"]), false)?;
/// assert_eq!(di.value, 0.5);
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn measure(
    data: &FairnessData,
    spec: &DisparitySpec,
    zero_when_undefined: bool,
) -> Result<DisparityValue> {
    spec.check("spec")?;
    let reference = reference_index(spec, data.groups())?;
    let cells = data.cells();
    let table = Table::new(data.groups(), &cells, zero_when_undefined);
    let computed = table.measure(spec, reference)?;
    Ok(table.value(&computed))
}
