//! A disparity as a gate judges it: a minimum group size, and a bootstrap interval stratified
//! within groups.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use serde::{Deserialize, Serialize};

use super::disparity::{reference_index, DisparitySpec, DisparityValue, Table};
use super::frame::{Cells, FairnessData};
use crate::error::{Error, Result};
use crate::metrics::{BootstrapConfig, ConfidenceInterval};

/// How disparities are judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessConfig {
    /// The fewest rows a group needs behind each rate a measure reads (its rows for a selection
    /// rate, its positive labels for a true positive rate, its negative labels for a false
    /// positive rate), counted as rows of positive weight (not the effective size of weighted
    /// rows). A smaller group makes the result inconclusive, never a pass. Default 30.
    pub min_group_size: usize,
    /// The bootstrap of the interval (resampled within each group, so every resample keeps
    /// the groups' sizes; resamples where the measure is undefined are left out, and with
    /// more than half left out there is no interval); `None` for no interval. Default: 1,000
    /// resamples, 95%. Weighted data costs a pass over the rows per resample.
    pub bootstrap: Option<BootstrapConfig>,
    /// Report an undefined rate (a group without positive labels has no true positive rate) as
    /// 0, as Fairlearn does. Default false: the measure is undefined and says which group.
    pub zero_when_undefined: bool,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        FairnessConfig {
            min_group_size: 30,
            bootstrap: Some(BootstrapConfig::default()),
            zero_when_undefined: false,
        }
    }
}

impl FairnessConfig {
    /// Checks the bootstrap settings and the group size (at least 1).
    pub fn validate(&self) -> Result<()> {
        if self.min_group_size == 0 {
            return Err(Error::invalid(
                "FairnessConfig.min_group_size",
                0,
                "at least 1 row",
            ));
        }
        if let Some(b) = &self.bootstrap {
            b.validate()?;
        }
        Ok(())
    }
}

/// Whether a disparity could be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentStatus {
    /// Every group is large enough and every rate defined.
    Measured,
    /// A group is below the minimum size: the value (if any) is shown but proves nothing.
    Inconclusive,
    /// A rate the measure needs is undefined (a group without positive labels, a reference
    /// group that selects nobody).
    Undefined,
}

/// A group below the minimum size for one of the measure's rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallGroup {
    /// The group.
    pub group: String,
    /// The rate it is too small for.
    pub metric: String,
    /// The rows behind that rate.
    pub rows: usize,
}

/// One disparity judged on data: value, worst pair, interval, and whether it proves anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisparityAssessment {
    /// The measure.
    pub spec: DisparitySpec,
    /// Whether it could be judged.
    pub status: AssessmentStatus,
    /// The value and the worst pair, when defined.
    pub value: Option<DisparityValue>,
    /// The bootstrap interval of the value, when asked for and defined on at least half the
    /// resamples.
    pub interval: Option<ConfidenceInterval>,
    /// Groups too small for a rate the measure reads.
    pub small_groups: Vec<SmallGroup>,
    /// A sentence: the value and pair, or why there is none.
    pub reason: String,
}

impl DisparityAssessment {
    /// The most unfair value the data allow at the interval's confidence: the interval end
    /// farther from fair (on [`super::Disparity::unfairness`]'s scale), never less than the
    /// estimate's unfairness (a percentile interval need not contain the estimate); the
    /// estimate's alone without an interval.
    pub fn pessimistic_unfairness(&self) -> Option<f64> {
        let m = self.spec.measure;
        let estimate = m.unfairness(self.value.as_ref()?.value);
        Some(match &self.interval {
            Some(ci) => estimate
                .max(m.unfairness(ci.lower))
                .max(m.unfairness(ci.upper)),
            None => estimate,
        })
    }
}

/// `spec` judged on `data` under `config`: the value, its stratified bootstrap interval, and
/// the groups too small to trust. An error only for a bad `spec` or `config` (a reference group
/// that is not in the data is an error naming the groups there are).
///
/// ```
/// use mlops_core::fairness::{assess, AssessmentStatus, Disparity, DisparitySpec, FairnessConfig, FairnessData, SensitiveGroups};
///
/// let g: Vec<&str> = (0..400).map(|i| if i % 4 == 0 { "b" } else { "a" }).collect();
/// let y: Vec<f64> = (0..400).map(|i| ((i / 2) % 2) as f64).collect();
/// let p: Vec<f64> = (0..400).map(|i| ((i / 3) % 2) as f64).collect();
/// let data = FairnessData::from_predictions(&y, &p, None, SensitiveGroups::new(&[("g", &g[..])])?)?;
/// let spec = DisparitySpec::new(Disparity::DemographicParityDifference);
/// let a = assess(&data, &spec, &FairnessConfig::default())?;
/// assert_eq!(a.status, AssessmentStatus::Measured);
/// let ci = a.interval.unwrap();
/// assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
///
/// let strict = FairnessConfig { min_group_size: 200, ..FairnessConfig::default() };
/// let b = assess(&data, &spec, &strict)?;
/// assert_eq!(b.status, AssessmentStatus::Inconclusive); // group b has 100 rows
/// assert_eq!(b.small_groups[0].group, "b");
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn assess(
    data: &FairnessData,
    spec: &DisparitySpec,
    config: &FairnessConfig,
) -> Result<DisparityAssessment> {
    config.validate()?;
    spec.check("spec")?;
    let groups = data.groups();
    let reference = reference_index(spec, groups)?;
    let cells = data.cells();
    let table = Table::new(groups, &cells, config.zero_when_undefined);
    let mut small_groups = Vec::new();
    for (g, c) in cells.iter().enumerate() {
        if c.rows == 0 {
            continue;
        }
        for &metric in spec.measure.metrics() {
            let rows = c.support(metric);
            if rows < config.min_group_size {
                small_groups.push(SmallGroup {
                    group: groups.name(g),
                    metric: metric.name().to_string(),
                    rows,
                });
            }
        }
    }
    let computed = match table.measure(spec, reference).and_then(|c| {
        if c.value.is_finite() {
            Ok(c)
        } else {
            Err(Error::UndefinedMetric {
                metric: spec.to_string(),
                reason: format!("the value is {} (weights too large to sum?)", c.value),
            })
        }
    }) {
        Ok(c) => c,
        Err(e) => {
            return Ok(DisparityAssessment {
                spec: spec.clone(),
                status: AssessmentStatus::Undefined,
                value: None,
                interval: None,
                small_groups,
                reason: format!("{spec} is undefined: {e}"),
            })
        }
    };
    let value = table.value(&computed);
    let interval = match &config.bootstrap {
        Some(b) => {
            let values = resample_values(data, spec, reference, config, b, b.seed, None);
            percentile_interval(values.into_iter().flatten().collect(), b, value.value)
        }
        None => None,
    };
    let status = if small_groups.is_empty() {
        AssessmentStatus::Measured
    } else {
        AssessmentStatus::Inconclusive
    };
    let mut reason = format!("{spec} = {:.6} between {}", value.value, value.worst);
    if let Some(ci) = &interval {
        reason += &format!(
            ", {:.0}% interval [{:.6}, {:.6}]",
            ci.confidence * 100.0,
            ci.lower,
            ci.upper
        );
    }
    if !small_groups.is_empty() {
        let listed: Vec<String> = small_groups
            .iter()
            .take(5)
            .map(|s| format!("{} ({} rows for {})", s.group, s.rows, s.metric))
            .collect();
        reason += &format!(
            "; inconclusive: {} group(s) below the minimum of {} rows: {}{}",
            small_groups.len(),
            config.min_group_size,
            listed.join(", "),
            if small_groups.len() > 5 { ", ..." } else { "" }
        );
    }
    tracing::debug!(measure = %spec, value = value.value, ?status, "disparity assessed");
    Ok(DisparityAssessment {
        spec: spec.clone(),
        status,
        value: Some(value),
        interval,
        small_groups,
        reason,
    })
}

/// The interval of `stats` (the defined resample values), or `None` when fewer than half of
/// the resamples were defined.
fn percentile_interval(
    mut stats: Vec<f64>,
    b: &BootstrapConfig,
    estimate: f64,
) -> Option<ConfidenceInterval> {
    if stats.len() * 2 < b.n_resamples {
        tracing::debug!(
            defined = stats.len(),
            resamples = b.n_resamples,
            "disparity undefined on most resamples: no interval"
        );
        return None;
    }
    stats.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - b.confidence;
    Some(ConfidenceInterval {
        estimate,
        lower: crate::metrics::quantile_sorted(&stats, alpha / 2.0),
        upper: crate::metrics::quantile_sorted(&stats, 1.0 - alpha / 2.0),
        confidence: b.confidence,
        resamples_used: stats.len(),
    })
}

/// The measure on each of `b.n_resamples` resamples drawn within each group (`None` where it
/// is undefined). Unweighted data draws each group's four confusion counts from their
/// multinomial, which is the exact distribution of a row resample's counts; weighted data
/// resamples rows.
fn resample_values(
    data: &FairnessData,
    spec: &DisparitySpec,
    reference: Option<usize>,
    config: &FairnessConfig,
    b: &BootstrapConfig,
    seed: u64,
    sizes: Option<&[usize]>,
) -> Vec<Option<f64>> {
    let cells = &data.cells();
    let groups = data.groups();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Weighted: each group's rows as (label, predicted, weight).
    let rows: Option<Vec<Vec<(bool, bool, f64)>>> = data.weights().map(|_| {
        let mut rows = vec![Vec::new(); cells.len()];
        // Rows of weight 0 are left out, so every resample keeps each group's rows of
        // positive weight (the sizes the minimum group size judged).
        for i in (0..data.len()).filter(|&i| data.weight(i) > 0.0) {
            rows[groups.group_of(i)].push((
                data.labels()[i],
                data.predictions()[i],
                data.weight(i),
            ));
        }
        rows
    });
    let mut resampled = vec![Cells::default(); cells.len()];
    let mut values = Vec::with_capacity(b.n_resamples);
    for _ in 0..b.n_resamples {
        match &rows {
            Some(rows) => {
                for (g, out) in resampled.iter_mut().enumerate() {
                    *out = Cells::default();
                    let n = rows[g].len();
                    if n == 0 {
                        continue;
                    }
                    for _ in 0..sizes.map_or(n, |s| s[g]) {
                        let (y, p, w) = rows[g][rng.random_range(0..n)];
                        out.add(y, p, w);
                    }
                }
            }
            None => {
                for (g, out) in resampled.iter_mut().enumerate() {
                    let n = sizes.map_or(cells[g].rows, |s| s[g]);
                    *out = multinomial(&cells[g], n, &mut rng);
                }
            }
        }
        let table = Table::new(groups, &resampled, config.zero_when_undefined);
        values.push(
            table
                .measure(spec, reference)
                .ok()
                .map(|c| c.value)
                .filter(|v| v.is_finite()),
        );
    }
    values
}

/// Two models' fairness on their own rows (a canary and its stable variant, each judged on
/// the traffic it served): each one's assessment (without an interval), and the difference of
/// their unfairness (candidate minus baseline, on [`super::Disparity::unfairness`]'s scale;
/// positive is less fair) with a bootstrap interval.
///
/// A disparity is a spread over groups, so sampling noise alone makes it positive, and more
/// so on fewer rows: a canary on a tenth of the traffic would look less fair than its stable
/// variant with the very same model. So both sides are resampled at the same size, group by
/// group (the smaller side's rows of each group; the larger side subsampled with
/// replacement), and the difference's estimate is the median of the paired resample
/// differences: its bias cancels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessComparison {
    /// The candidate's assessment.
    pub candidate: DisparityAssessment,
    /// The baseline's assessment.
    pub baseline: DisparityAssessment,
    /// Candidate unfairness minus baseline unfairness at equal group sizes, with its interval
    /// (none when either side is not measured, or the difference is undefined on most
    /// resamples).
    pub difference: Option<ConfidenceInterval>,
}

/// Compares `candidate` with `baseline` on `spec` (see [`FairnessComparison`]); `config`'s
/// bootstrap is required. Groups are matched by their values.
///
/// ```
/// use mlops_core::fairness::{compare, Disparity, DisparitySpec, FairnessConfig, FairnessData, SensitiveGroups};
///
/// let rows = |rate_b: f64| {
///     let g: Vec<&str> = (0..2000).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
///     let y: Vec<f64> = (0..2000).map(|i| ((i / 2) % 2) as f64).collect();
///     let p: Vec<f64> = (0..2000).map(|i| if i % 2 == 0 { ((i / 4) % 2) as f64 } else { f64::from((i / 2) % 100 < (rate_b * 100.0) as usize) }).collect();
///     FairnessData::from_predictions(&y, &p, None, SensitiveGroups::new(&[("g", &g[..])]).unwrap()).unwrap()
/// };
/// let spec = DisparitySpec::new(Disparity::DemographicParityDifference);
/// let c = compare(&rows(0.8), &rows(0.5), &spec, &FairnessConfig::default())?;
/// let d = c.difference.unwrap();
/// assert!((d.estimate - 0.3).abs() < 0.02 && d.lower > 0.2, "{d:?}"); // the candidate is less fair
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn compare(
    candidate: &FairnessData,
    baseline: &FairnessData,
    spec: &DisparitySpec,
    config: &FairnessConfig,
) -> Result<FairnessComparison> {
    let Some(b) = &config.bootstrap else {
        return Err(Error::invalid(
            "FairnessConfig.bootstrap",
            "none",
            "a bootstrap to compare two models with",
        ));
    };
    b.validate()?;
    let point = FairnessConfig {
        bootstrap: None,
        ..*config
    };
    let cand = assess(candidate, spec, &point)?;
    let base = assess(baseline, spec, &point)?;
    let m = spec.measure;
    let measured =
        cand.status == AssessmentStatus::Measured && base.status == AssessmentStatus::Measured;
    let difference = measured.then(|| {
        let (cc, bc) = (candidate.cells(), baseline.cells());
        let (cg, bg) = (candidate.groups(), baseline.groups());
        // Each group's size on both sides: the smaller side's rows (of positive weight).
        let mut c_sizes: Vec<usize> = cc.iter().map(|c| c.rows).collect();
        let mut b_sizes: Vec<usize> = bc.iter().map(|c| c.rows).collect();
        for (g, size) in c_sizes.iter_mut().enumerate() {
            if let Some(h) = bg.find(cg.key(g)) {
                let n = (*size).min(b_sizes[h]);
                *size = n;
                b_sizes[h] = n;
            }
        }
        let side = |data: &FairnessData, sizes: &[usize], seed: u64| {
            let reference = reference_index(spec, data.groups()).ok().flatten();
            resample_values(data, spec, reference, &point, b, seed, Some(sizes))
        };
        let cv = side(candidate, &c_sizes, b.seed);
        let sv = side(baseline, &b_sizes, b.seed ^ 0x5eed_ba5e);
        let mut diffs: Vec<f64> = cv
            .into_iter()
            .zip(sv)
            .filter_map(|(c, s)| Some(m.unfairness(c?) - m.unfairness(s?)))
            .collect();
        diffs.sort_unstable_by(f64::total_cmp);
        let median = if diffs.is_empty() {
            f64::NAN
        } else {
            crate::metrics::quantile_sorted(&diffs, 0.5)
        };
        percentile_interval(diffs, b, median)
    });
    Ok(FairnessComparison {
        candidate: cand,
        baseline: base,
        difference: difference.flatten(),
    })
}

/// An unweighted group's counts redrawn: `n` draws over (tp, fp, tn, fn) with the group's
/// own proportions, by conditional binomials.
fn multinomial(c: &Cells, n: usize, rng: &mut ChaCha8Rng) -> Cells {
    let counts = [c.cm.tp, c.cm.fp, c.cm.tn, c.cm.fn_];
    let mut drawn = [0u64; 4];
    if c.rows == 0 {
        return Cells::default();
    }
    let mut left = n as u64;
    let mut mass = c.rows as f64;
    for k in 0..3 {
        if left == 0 || mass <= 0.0 {
            break;
        }
        let p = (counts[k] / mass).clamp(0.0, 1.0);
        drawn[k] = Binomial::new(left, p).map_or(0, |d| d.sample(rng));
        left -= drawn[k];
        mass -= counts[k];
    }
    drawn[3] = left;
    let f = |k: usize| drawn[k] as f64;
    Cells {
        cm: super::frame::Counts {
            tp: f(0),
            fp: f(1),
            tn: f(2),
            fn_: f(3),
        },
        rows: n,
        positives: (drawn[0] + drawn[3]) as usize,
        negatives: (drawn[1] + drawn[2]) as usize,
    }
}
