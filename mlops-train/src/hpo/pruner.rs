//! Early stopping of trials on their intermediate reports: the median rule (Optuna's
//! `MedianPruner`, Katib's median stopping), asynchronous successive halving (ASHA) and
//! Hyperband (ASHA brackets with different minimum resources).

use serde::{Deserialize, Serialize};

/// Which pruner a study uses. Reports are "lower is better" inside the study (a maximized
/// metric is negated before it gets here).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrunerConfig {
    /// Never prune.
    #[default]
    None,
    /// Prune when the trial's best value so far is worse than the median of other trials'
    /// values at the same step.
    Median {
        /// Trials that must have finished before pruning starts (default 5).
        #[serde(default = "five")]
        n_startup_trials: usize,
        /// Steps before which a trial is never pruned (default 0).
        #[serde(default)]
        n_warmup_steps: i64,
    },
    /// ASHA: at rungs `min_resource * reduction_factor^k`, keep a trial only if it is in the
    /// top `1 / reduction_factor` of the trials that reached that rung.
    Asha {
        /// Step of the first rung (default 1).
        #[serde(default = "one")]
        min_resource: i64,
        /// η (default 3).
        #[serde(default = "three")]
        reduction_factor: f64,
    },
    /// Hyperband: trials are spread over `floor(log_η(max/min)) + 1` ASHA brackets whose
    /// first rungs are `min_resource * η^b`; trials compete within their bracket.
    Hyperband {
        /// Smallest first rung (default 1).
        #[serde(default = "one")]
        min_resource: i64,
        /// The most steps a trial runs (default 81).
        #[serde(default = "eighty_one")]
        max_resource: i64,
        /// η (default 3).
        #[serde(default = "three")]
        reduction_factor: f64,
    },
}

fn five() -> usize {
    5
}
fn one() -> i64 {
    1
}
fn three() -> f64 {
    3.0
}
fn eighty_one() -> i64 {
    81
}

/// A trial's intermediate reports, `(step, loss)` in report order.
pub(crate) type Reports = [(i64, f64)];

/// Number of Hyperband brackets.
fn brackets(min: i64, max: i64, eta: f64) -> u64 {
    let ratio = (max as f64 / min.max(1) as f64).max(1.0);
    (ratio.ln() / eta.ln()).floor() as u64 + 1
}

/// Whether the trial `number` with `reports` should stop, given the reports of the trials it
/// competes with (`others`: number and reports).
pub(crate) fn should_prune(
    config: &PrunerConfig,
    number: u64,
    reports: &Reports,
    others: &[(u64, &Reports)],
    finished_others: usize,
) -> bool {
    let Some(&(step, _)) = reports.last() else {
        return false;
    };
    match config {
        PrunerConfig::None => false,
        PrunerConfig::Median {
            n_startup_trials,
            n_warmup_steps,
        } => {
            if finished_others < *n_startup_trials || step < *n_warmup_steps {
                return false;
            }
            let best = reports.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            let mut at_step: Vec<f64> = others
                .iter()
                .filter_map(|(_, r)| r.iter().find(|x| x.0 == step).map(|x| x.1))
                .collect();
            if at_step.is_empty() {
                return false;
            }
            at_step.sort_by(f64::total_cmp);
            let m = at_step.len();
            let median = if m % 2 == 1 {
                at_step[m / 2]
            } else {
                0.5 * (at_step[m / 2 - 1] + at_step[m / 2])
            };
            best > median
        }
        PrunerConfig::Asha {
            min_resource,
            reduction_factor,
        } => asha(
            *min_resource,
            *reduction_factor,
            reports,
            others.iter().map(|o| o.1),
        ),
        PrunerConfig::Hyperband {
            min_resource,
            max_resource,
            reduction_factor,
        } => {
            let n = brackets(*min_resource, *max_resource, *reduction_factor);
            let bracket = number % n;
            let first =
                (*min_resource as f64 * reduction_factor.powi(bracket as i32)).round() as i64;
            asha(
                first,
                *reduction_factor,
                reports,
                others.iter().filter(|o| o.0 % n == bracket).map(|o| o.1),
            )
        }
    }
}

/// The value a trial brings to rung `r`: its first report at a step `>= r`.
fn rung_value(reports: &Reports, r: i64) -> Option<f64> {
    reports.iter().find(|x| x.0 >= r).map(|x| x.1)
}

fn asha<'a>(
    min_resource: i64,
    eta: f64,
    reports: &Reports,
    others: impl Iterator<Item = &'a Reports>,
) -> bool {
    let (step, value) = reports[reports.len() - 1];
    let previous = if reports.len() > 1 {
        reports[reports.len() - 2].0
    } else {
        i64::MIN
    };
    // The highest rung this report has just reached.
    let mut k = 0;
    let mut rung = None;
    loop {
        let r = (min_resource.max(1) as f64 * eta.powi(k)).round() as i64;
        if r > step {
            break;
        }
        if previous < r {
            rung = Some(r);
        }
        k += 1;
        if k > 60 {
            break;
        }
    }
    let Some(r) = rung else {
        return false;
    };
    let mut competitors: Vec<f64> = others.filter_map(|o| rung_value(o, r)).collect();
    competitors.push(value);
    let keep = ((competitors.len() as f64 / eta).floor() as usize).max(1);
    competitors.sort_by(f64::total_cmp);
    let rank = competitors.iter().position(|v| *v >= value).unwrap_or(0);
    rank >= keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_prunes_the_worse_half_after_startup() {
        let cfg = PrunerConfig::Median {
            n_startup_trials: 2,
            n_warmup_steps: 1,
        };
        let a: Vec<(i64, f64)> = vec![(0, 1.0), (1, 0.8), (2, 0.6)];
        let b: Vec<(i64, f64)> = vec![(0, 1.0), (1, 0.7), (2, 0.5)];
        let others = [(0, a.as_slice()), (1, b.as_slice())];
        assert!(should_prune(&cfg, 2, &[(0, 2.0), (1, 0.9)], &others, 2));
        assert!(!should_prune(&cfg, 2, &[(0, 2.0), (1, 0.7)], &others, 2));
        // Warm-up and startup.
        assert!(!should_prune(&cfg, 2, &[(0, 9.0)], &others, 2));
        assert!(!should_prune(&cfg, 2, &[(0, 2.0), (1, 0.9)], &others, 1));
    }

    #[test]
    fn asha_keeps_the_top_third_at_each_rung() {
        let cfg = PrunerConfig::Asha {
            min_resource: 1,
            reduction_factor: 3.0,
        };
        let runs: Vec<Vec<(i64, f64)>> = (0..5).map(|i| vec![(1, i as f64)]).collect();
        let others: Vec<(u64, &[(i64, f64)])> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64, r.as_slice()))
            .collect();
        // 6 at rung 1 keep 2: a value of 0.5 ranks second, 3.5 ranks fifth.
        assert!(!should_prune(&cfg, 9, &[(1, 0.5)], &others, 5));
        assert!(should_prune(&cfg, 9, &[(1, 3.5)], &others, 5));
        // Between rungs nothing is decided.
        assert!(!should_prune(&cfg, 9, &[(1, 0.5), (2, 9.0)], &others, 5));
        // The first trial at a rung is always kept.
        assert!(!should_prune(&cfg, 0, &[(1, 100.0)], &[], 0));
    }

    #[test]
    fn hyperband_spreads_trials_over_brackets() {
        assert_eq!(brackets(1, 81, 3.0), 5);
        let cfg = PrunerConfig::Hyperband {
            min_resource: 1,
            max_resource: 81,
            reduction_factor: 3.0,
        };
        // Trial 1 is in bracket 1, whose first rung is step 3: step 1 decides nothing.
        assert!(!should_prune(
            &cfg,
            1,
            &[(1, 100.0)],
            &[(6, &[(3, 0.0)]), (11, &[(3, 0.1)])],
            2
        ));
        assert!(should_prune(
            &cfg,
            1,
            &[(1, 100.0), (3, 100.0)],
            &[(6, &[(3, 0.0)]), (11, &[(3, 0.1)]), (16, &[(3, 0.2)])],
            3
        ));
    }
}
