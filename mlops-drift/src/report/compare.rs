//! [`ReferenceProfile::compare`]: each column's tests (in parallel), the multiple-testing
//! correction, the effect gate and the dataset rules.

use std::collections::BTreeMap;

use mlops_core::{ColumnKind, Dataset};
use rayon::prelude::*;

use super::config::{CheckedDriftConfig, DriftConfig, DriftTest};
use super::result::{
    ColumnDrift, ColumnStatus, DatasetDrift, DatasetRule, DriftReport, MissingDrift, TestOutcome,
    Verdict,
};
use crate::correction::Correction;
use crate::error::{Error, Result};
use crate::profile::{category_counts, ColumnProfile, ReferenceProfile};
use crate::stats::{
    anderson_ksamp, contingency_test, cramervonmises_2samp, hellinger, jensen_shannon,
    kl_divergence, mannwhitneyu, null_rate_test, proportions_ztest, psi, total_variation,
    Alternative, ContingencyStatistic, CvmMethod, MwuMethod, DEFAULT_EPS,
};

fn column_error(c: &ColumnProfile, current_values: usize, message: String) -> ColumnDrift {
    tracing::debug!(column = %c.name, %message, "column not tested");
    ColumnDrift {
        column: c.name.clone(),
        kind: c.kind,
        reference_values: c.present(),
        current_values,
        tests: Vec::new(),
        effect_size: None,
        missing: None,
        drifted: false,
        status: ColumnStatus::Untestable,
        error: Some(message),
        notes: Vec::new(),
        reference_ecdf_error: reference_ecdf_error(c),
    }
}

fn outcome(
    test: DriftTest,
    statistic: f64,
    p_value: Option<f64>,
    threshold: Option<f64>,
) -> TestOutcome {
    TestOutcome {
        test,
        statistic,
        p_value,
        adjusted_p_value: None,
        threshold,
        drifted: threshold.is_some_and(|t| statistic >= t),
    }
}

/// Aligns current category counts with the reference's categories (plus categories only the
/// current batch has).
fn aligned_counts(reference: &ColumnProfile, current_sorted: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (cur_cats, cur_counts) = category_counts(current_sorted);
    let mut all: Vec<i64> = reference
        .categories
        .iter()
        .chain(&cur_cats)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    let lookup = |cats: &[i64], counts: &[u64], c: i64| {
        cats.binary_search(&c).map_or(0.0, |i| counts[i] as f64)
    };
    (
        all.iter()
            .map(|&c| lookup(&reference.categories, &reference.counts, c))
            .collect(),
        all.iter()
            .map(|&c| lookup(&cur_cats, &cur_counts, c))
            .collect(),
    )
}

/// The current side of one column: its non-missing values (sorted when the tests need it),
/// or, for columns tested only by binned distances, just its bin shares.
struct Current<'a> {
    values: &'a [f64],
    present: usize,
    shares: Option<Vec<f64>>,
}

fn run_test(
    test: DriftTest,
    c: &ColumnProfile,
    current: &Current<'_>,
    config: &DriftConfig,
) -> Result<TestOutcome> {
    let numeric = c.kind != ColumnKind::Categorical;
    if test.needs_numeric() && !numeric {
        return Err(Error::invalid(
            format!("test {test} on column `{}`", c.name),
            "a categorical column",
            "a numeric column",
        ));
    }
    if test.needs_categorical() && numeric {
        return Err(Error::invalid(
            format!("test {test} on column `{}`", c.name),
            "a numeric column",
            "a categorical column",
        ));
    }
    let r = &c.sorted;
    let cur = current.values;
    let th = Some(config.threshold(test));
    let binned = || -> (Vec<f64>, Vec<f64>) {
        if numeric {
            let shares = current.shares.clone();
            (
                c.shares.clone(),
                shares.unwrap_or_else(|| crate::stats::bin_shares(cur, &c.edges)),
            )
        } else {
            aligned_counts(c, cur)
        }
    };
    Ok(match test {
        DriftTest::Ks => {
            // The reference was checked when fitted; `cur` is sorted and NaN-free here. The
            // p-value takes the true reference count: a compact profile's summary stands for
            // all of it (its ECDF within `ecdf_error`, reported). It is taken at the smallest
            // statistic the exact reference could give, `d - ecdf_error`, so a summary's
            // error cannot make an unchanged column drift.
            check_ecdf_error(c)?;
            let (dplus, dminus) = crate::stats::ks_statistics_sorted(r, cur);
            let d = dplus.max(dminus);
            let t = crate::stats::ks_pvalue(
                (d - c.ecdf_error).max(0.0),
                c.present() as u64,
                cur.len() as u64,
                Alternative::TwoSided,
                config.ks_method,
            );
            // scipy reports the statistic on the lattice of the two sizes; a summary's
            // statistic is not on the true sizes' lattice, so it is reported as computed.
            let statistic = if c.is_exact() { t.statistic } else { d };
            outcome(test, statistic, Some(t.p_value), None)
        }
        DriftTest::Cvm => {
            let t = cramervonmises_2samp(r, cur, CvmMethod::Auto)?;
            outcome(test, t.statistic, Some(t.p_value), None)
        }
        DriftTest::Ad => {
            let t = anderson_ksamp(&[r, cur])?;
            outcome(test, t.statistic, Some(t.p_value), None)
        }
        DriftTest::Mwu => {
            let t = mannwhitneyu(r, cur, true, Alternative::TwoSided, MwuMethod::Auto)?;
            outcome(test, t.statistic, Some(t.p_value), None)
        }
        DriftTest::Wasserstein | DriftTest::Energy => {
            let raw = if test == DriftTest::Wasserstein {
                crate::stats::cdf_distance_sorted(r, cur, 1)
            } else {
                std::f64::consts::SQRT_2 * crate::stats::cdf_distance_sorted(r, cur, 2).sqrt()
            };
            // compare_column sends a zero-spread reference to KS instead.
            let std = c.std.filter(|s| *s > 0.0).ok_or_else(|| {
                Error::invalid(
                    format!("test {test} on column `{}`", c.name),
                    "a reference with zero spread",
                    "a reference that varies (normalized distances divide by its std)",
                )
            })?;
            outcome(test, raw / std, None, th)
        }
        DriftTest::Psi | DriftTest::Js | DriftTest::Hellinger | DriftTest::Tv | DriftTest::Kl => {
            let (p, q) = binned();
            let d = match test {
                DriftTest::Psi => psi(&p, &q, DEFAULT_EPS)?,
                DriftTest::Js => jensen_shannon(&p, &q)?,
                DriftTest::Hellinger => hellinger(&p, &q)?,
                DriftTest::Tv => total_variation(&p, &q)?,
                _ => kl_divergence(&p, &q, DEFAULT_EPS)?,
            };
            outcome(test, d, None, th)
        }
        DriftTest::Chi2 | DriftTest::GTest => {
            let (p, q) = aligned_counts(c, cur);
            let stat = if test == DriftTest::Chi2 {
                ContingencyStatistic::Pearson
            } else {
                ContingencyStatistic::LogLikelihood
            };
            let t = contingency_test(&p, &q, true, stat)?;
            outcome(test, t.statistic, Some(t.p_value), None)
        }
        DriftTest::Z => {
            let (p, q) = aligned_counts(c, cur);
            if p.len() > 2 {
                return Err(Error::invalid(
                    format!("test z on column `{}`", c.name),
                    format!("{} categories", p.len()),
                    "a binary column (use chi2 for more categories)",
                ));
            }
            let (rn, cn) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
            let (rs, cs) = (
                p.last().copied().unwrap_or(0.0),
                q.last().copied().unwrap_or(0.0),
            );
            let t = proportions_ztest(cs, cn, rs, rn)?;
            outcome(test, t.statistic, Some(t.p_value), None)
        }
    })
}

/// The tests of column `c`: its override, else the config's list, else the preset.
fn column_tests(c: &ColumnProfile, config: &DriftConfig) -> Vec<DriftTest> {
    match config.column_tests.get(&c.name) {
        Some(t) if !t.is_empty() => t.clone(),
        _ if !config.tests.is_empty() => config.tests.clone(),
        _ => vec![config.preset(c.kind, c.present(), c.categories.len())],
    }
}

/// Whether comparing column `c` needs the current values sorted: merge-based tests, category
/// counts, and the KS effect size (for effect gating and the mean-statistic rule) do; binned
/// distances alone do not.
fn needs_sorted(c: &ColumnProfile, tests: &[DriftTest], config: &DriftConfig) -> bool {
    c.kind == ColumnKind::Categorical
        || config.min_effect.is_some()
        || config.mean_effect_threshold.is_some()
        || tests.iter().any(|t| {
            matches!(
                t,
                DriftTest::Ks | DriftTest::Wasserstein | DriftTest::Energy
            )
        })
}

/// Whether column `c` is tested by binned distances alone (no raw values needed: its shares
/// can be counted in one pass over the rows).
fn binned_only(c: &ColumnProfile, tests: &[DriftTest], config: &DriftConfig) -> bool {
    c.kind != ColumnKind::Categorical
        && !needs_sorted(c, tests, config)
        && tests.iter().all(|t| {
            matches!(
                t,
                DriftTest::Psi
                    | DriftTest::Js
                    | DriftTest::Hellinger
                    | DriftTest::Tv
                    | DriftTest::Kl
            )
        })
}

/// The null-rate test of column `c` against a batch of `rows` rows, when either side has
/// missing values and both sides have at least `min_samples` rows.
fn missing_drift(
    c: &ColumnProfile,
    present: usize,
    rows: usize,
    config: &DriftConfig,
) -> Option<MissingDrift> {
    let current_missing = rows - present;
    if (c.missing == 0 && current_missing == 0)
        || c.rows < config.min_samples
        || rows < config.min_samples
    {
        return None;
    }
    let t = null_rate_test(
        c.missing as f64,
        c.rows as f64,
        current_missing as f64,
        rows as f64,
    )
    .ok()?;
    Some(MissingDrift {
        reference_share: c.missing as f64 / c.rows as f64,
        current_share: current_missing as f64 / rows as f64,
        outcome: TestOutcome {
            test: DriftTest::Z,
            statistic: t.statistic,
            p_value: Some(t.p_value),
            adjusted_p_value: None,
            threshold: None,
            drifted: false,
        },
    })
}

/// Compares one column. The current values are sorted when [`needs_sorted`] says so (the
/// effect size is `None` otherwise).
fn compare_column(
    c: &ColumnProfile,
    tests: &[DriftTest],
    current: &Current<'_>,
    sorted: bool,
    rows: usize,
    config: &DriftConfig,
) -> ColumnDrift {
    let cur = current.values;
    let present = current.present;
    let missing = missing_drift(c, present, rows, config);
    let (reference_present, min) = (c.present(), config.min_samples);
    if reference_present < min || present < min {
        let why = |side: &str, n: usize, total: usize| match (n, total) {
            (_, 0) => format!("the {side} data has no rows"),
            (0, _) => format!("every {side} value of `{}` is missing", c.name),
            _ => format!("{n} {side} values of `{}`", c.name),
        };
        let short: Vec<String> = [
            ("reference", reference_present, c.rows),
            ("current", present, rows),
        ]
        .into_iter()
        .filter(|(_, n, _)| *n < min)
        .map(|(side, n, total)| why(side, n, total))
        .collect();
        let message = format!(
            "insufficient data: {}; expected at least min_samples = {min} non-missing values on each side",
            short.join(" and ")
        );
        tracing::debug!(column = %c.name, %message, "column not tested");
        return ColumnDrift {
            column: c.name.clone(),
            kind: c.kind,
            reference_values: reference_present,
            current_values: present,
            tests: Vec::new(),
            effect_size: None,
            missing,
            drifted: false,
            status: ColumnStatus::InsufficientData,
            error: Some(message),
            notes: Vec::new(),
            reference_ecdf_error: reference_ecdf_error(c),
        };
    }
    // Zero spread (every value equal, or a std that is not positive): the normalized
    // distances, divided by the std, are undefined.
    // (A compact profile's summary may be all one value where the column is not: its exact
    // std decides then.)
    let constant = c.kind != ColumnKind::Categorical
        && ((c.is_exact() && c.sorted.first() == c.sorted.last())
            || !c.std.is_some_and(|s| s > 0.0));
    let mut notes = Vec::new();
    let mut outcomes = Vec::with_capacity(tests.len());
    for &t in tests {
        // The normalized distances divide by the reference spread, undefined for a constant
        // reference (a feature stuck at a default): KS decides there instead.
        let t = if constant && matches!(t, DriftTest::Wasserstein | DriftTest::Energy) {
            notes.push(format!(
                "the reference `{}` is constant ({}): normalized {t} is undefined, ks decides instead",
                c.name, c.sorted[0]
            ));
            DriftTest::Ks
        } else {
            t
        };
        match run_test(t, c, current, config) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                let mut entry = column_error(c, present, e.to_string());
                entry.missing = missing;
                return entry;
            }
        }
    }
    let effect_size = if c.kind == ColumnKind::Categorical {
        let (p, q) = aligned_counts(c, cur);
        total_variation(&p, &q).ok()
    } else if !sorted {
        None
    } else {
        match outcomes.first() {
            Some(o) if o.test == DriftTest::Ks => Some(o.statistic),
            _ => {
                let (dplus, dminus) = crate::stats::ks_statistics_sorted(&c.sorted, cur);
                Some(dplus.max(dminus))
            }
        }
    };
    ColumnDrift {
        column: c.name.clone(),
        kind: c.kind,
        reference_values: reference_present,
        current_values: present,
        tests: outcomes,
        effect_size,
        missing,
        drifted: false,
        status: ColumnStatus::Tested,
        error: None,
        notes,
        reference_ecdf_error: reference_ecdf_error(c),
    }
}

/// A profile read from a file states its summary's ECDF error: a KS test taken at the
/// statistic less a NaN or out-of-range error would say "no drift" for anything.
pub(crate) fn check_ecdf_error(c: &ColumnProfile) -> Result<()> {
    if (0.0..1.0).contains(&c.ecdf_error) {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("reference column `{}`: ecdf_error", c.name),
            c.ecdf_error,
            "a number in [0, 1) (the profile file was edited or damaged)",
        ))
    }
}

/// How far a KS statistic against `c` may be from the exact one: its summary's ECDF gap
/// (numeric columns of a compact profile); 0 for categorical columns (exact counts).
fn reference_ecdf_error(c: &ColumnProfile) -> f64 {
    if c.kind == ColumnKind::Categorical {
        0.0
    } else {
        c.ecdf_error
    }
}

impl ReferenceProfile {
    /// Compares `current` with the profile, column by column (in parallel), then decides for
    /// the dataset. Only a bad `config` is an error: a column that cannot be tested gets an
    /// error entry and the rest of the report is produced.
    pub fn compare(&self, current: &Dataset, config: &CheckedDriftConfig) -> Result<DriftReport> {
        let config: &DriftConfig = config;
        let selected: Vec<&ColumnProfile> = if config.columns.is_empty() {
            self.columns.iter().collect()
        } else {
            let by_name: std::collections::HashMap<&str, &ColumnProfile> =
                self.columns.iter().map(|c| (c.name.as_str(), c)).collect();
            config
                .columns
                .iter()
                .map(|n| {
                    by_name.get(n.as_str()).copied().ok_or_else(|| {
                        Error::invalid(
                            "DriftConfig.columns",
                            n,
                            format!(
                                "a column of the profile ({})",
                                self.columns
                                    .iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        // One plan per column: where it is in the current data, its tests, and whether binned
        // distances alone test it. Binned-only columns are counted in one pass over the rows;
        // the others get their non-missing values (sorted when needed).
        // Column lookups by name through one map (linear in the column count: a wide file of
        // a million columns must not take a million scans).
        let index: std::collections::HashMap<&str, usize> = current
            .feature_names()
            .enumerate()
            .map(|(j, n)| (n, j))
            .collect();
        let kinds: Vec<ColumnKind> = current.feature_kinds().collect();
        let plans: Vec<Option<(usize, Vec<DriftTest>, bool)>> = selected
            .iter()
            .map(|c| {
                index.get(c.name.as_str()).copied().map(|j| {
                    let tests = column_tests(c, config);
                    let binned = binned_only(c, &tests, config);
                    (j, tests, binned)
                })
            })
            .collect();
        let binned: Vec<(usize, &[f64])> = selected
            .iter()
            .zip(&plans)
            .filter_map(|(c, p)| {
                p.as_ref()
                    .filter(|p| p.2)
                    .map(|p| (p.0, c.edges.as_slice()))
            })
            .collect();
        let mut binned_shares = crate::profile::bin_rows(current, &binned).into_iter();
        let shares: Vec<Option<(Vec<f64>, usize)>> = plans
            .iter()
            .map(|p| {
                p.as_ref()
                    .filter(|p| p.2)
                    .and_then(|_| binned_shares.next())
            })
            .collect();
        let mut wanted = vec![false; current.n_features()];
        for (j, _, binned) in plans.iter().flatten() {
            wanted[*j] |= !binned;
        }
        let columns_f64 = crate::profile::non_missing_columns(current, &wanted);
        let mut columns: Vec<ColumnDrift> = selected
            .par_iter()
            .zip(plans.par_iter().zip(shares.par_iter()))
            .map(|(c, (plan, shares))| {
                let Some((j, tests, _)) = plan else {
                    return column_error(
                        c,
                        0,
                        format!("column `{}` is not in the current data", c.name),
                    );
                };
                let kind = kinds[*j];
                if kind != c.kind {
                    return column_error(
                        c,
                        0,
                        format!(
                            "column `{}` is {kind:?} in the current data but {:?} in the reference",
                            c.name, c.kind
                        ),
                    );
                }
                let rows = current.n_rows();
                if let Some((shares, present)) = shares {
                    let cur = Current {
                        values: &[],
                        present: *present,
                        shares: Some(shares.clone()),
                    };
                    compare_column(c, tests, &cur, false, rows, config)
                } else if needs_sorted(c, tests, config) {
                    let mut values = columns_f64[*j].clone();
                    crate::stats::sort_values(&mut values);
                    let cur = Current {
                        values: &values,
                        present: values.len(),
                        shares: None,
                    };
                    compare_column(c, tests, &cur, true, rows, config)
                } else {
                    let values = &columns_f64[*j];
                    let cur = Current {
                        values,
                        present: values.len(),
                        shares: None,
                    };
                    compare_column(c, tests, &cur, false, rows, config)
                }
            })
            .collect();
        Ok(decide(&mut columns, config))
    }
}

/// Applies the correction over every deciding p-value, the effect gate and the dataset rules.
fn decide(columns: &mut [ColumnDrift], config: &DriftConfig) -> DriftReport {
    // The family: each column's deciding p-value test, and each null-rate test.
    let mut family: Vec<(usize, bool)> = Vec::new(); // (column, is_missing_test)
    let mut pvalues = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if let Some(p) = c.tests.first().and_then(|t| t.p_value) {
            family.push((i, false));
            pvalues.push(p);
        }
        if let Some(p) = c.missing.as_ref().and_then(|m| m.outcome.p_value) {
            family.push((i, true));
            pvalues.push(p);
        }
    }
    let mut drifted_by_correction = BTreeMap::new();
    for method in Correction::ALL {
        let n = method
            .adjust(&pvalues)
            .iter()
            .filter(|p| **p < config.alpha)
            .count();
        drifted_by_correction.insert(method, n);
    }
    let adjusted = config.correction.adjust(&pvalues);
    for ((i, is_missing), adj) in family.into_iter().zip(adjusted) {
        let c = &mut columns[i];
        let effect_ok = config
            .min_effect
            .is_none_or(|d| c.effect_size.is_some_and(|e| e >= d));
        if is_missing {
            if let Some(m) = c.missing.as_mut() {
                m.outcome.adjusted_p_value = Some(adj);
                let grew = m.current_share - m.reference_share;
                m.outcome.drifted =
                    adj < config.alpha && config.min_effect.is_none_or(|d| grew >= d);
            }
        } else if let Some(t) = c.tests.first_mut() {
            t.adjusted_p_value = Some(adj);
            t.drifted = adj < config.alpha && effect_ok;
        }
    }
    // Secondary p-value tests are reported against alpha, unadjusted.
    for c in columns.iter_mut() {
        for t in c.tests.iter_mut().skip(1) {
            if let Some(p) = t.p_value {
                t.drifted = p < config.alpha;
            }
        }
        c.drifted = c.tests.first().is_some_and(|t| t.drifted)
            || c.missing.as_ref().is_some_and(|m| m.outcome.drifted);
    }
    // A column is decided when its values were tested or its missing values flagged it; the
    // rules look at decided columns only, and undecided ones make the verdict incomplete.
    let tested: Vec<&ColumnDrift> = columns
        .iter()
        .filter(|c| c.status == ColumnStatus::Tested || c.drifted)
        .collect();
    let columns_not_tested: Vec<String> = columns
        .iter()
        .filter(|c| c.status != ColumnStatus::Tested && !c.drifted)
        .map(|c| c.column.clone())
        .collect();
    let n_drifted = tested.iter().filter(|c| c.drifted).count();
    let share = if tested.is_empty() {
        0.0
    } else {
        n_drifted as f64 / tested.len() as f64
    };
    let share_rule = DatasetRule {
        observed: share,
        threshold: config.drift_share,
        fired: !tested.is_empty() && share >= config.drift_share,
    };
    let effects: Vec<f64> = tested.iter().filter_map(|c| c.effect_size).collect();
    let mean_effect_rule = config
        .mean_effect_threshold
        .filter(|_| !effects.is_empty())
        .map(|t| {
            let mean = effects.iter().sum::<f64>() / effects.len() as f64;
            DatasetRule {
                observed: mean,
                threshold: t,
                fired: mean > t,
            }
        });
    let drifted = share_rule.fired || mean_effect_rule.as_ref().is_some_and(|r| r.fired);
    let verdict = if drifted {
        Verdict::Drift
    } else if !columns_not_tested.is_empty() || columns.is_empty() {
        Verdict::Incomplete
    } else {
        Verdict::NoDrift
    };
    tracing::debug!(
        %verdict,
        drifted,
        columns = columns.len(),
        n_drifted,
        "drift report computed"
    );
    DriftReport {
        dataset: DatasetDrift {
            verdict,
            drifted,
            columns_tested: tested.len(),
            columns_not_tested,
            columns_drifted: n_drifted,
            share_rule,
            mean_effect_rule,
            correction: config.correction,
            drifted_by_correction,
            ks_error_bound: columns
                .iter()
                .map(|c| c.reference_ecdf_error)
                .fold(0.0, f64::max),
        },
        columns: columns.to_vec(),
    }
}
