//! Windowed drift monitoring of a whole table: batches of rows arrive, the last `window_rows`
//! rows are compared with the reference profile every `step_rows` rows (every column, with the
//! report's correction and dataset rules), and each report goes through the [`DriftPolicy`]
//! (minimum samples, cooldown on its clock, the host's [`RetrainTrigger`], metrics).
//!
//! The per-column stream detectors of [`crate::stream`] test one column at a time; the
//! monitor is what a served model needs: one decision about the table, the same one a batch
//! job would reach with [`ReferenceProfile::compare`] on the same rows.

use std::collections::VecDeque;
use std::sync::Arc;

use mlops_core::cbpe::{Cbpe, PerformanceEstimate};
use mlops_core::model::Predictor;
use mlops_core::Dataset;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{DriftPolicy, PolicyDecision, RetrainTrigger, WindowEstimate};
use crate::profile::ReferenceProfile;
use crate::report::{CheckedDriftConfig, DriftReport};

/// Window and step of a [`DriftMonitor`]. serde with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Rows compared at each check (the most recent ones), ≥ 1 (default 5,000).
    pub window_rows: usize,
    /// Rows between checks once the window is full, in 1..=`window_rows` (default 5,000:
    /// tumbling windows).
    pub step_rows: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            window_rows: 5_000,
            step_rows: 5_000,
        }
    }
}

impl MonitorConfig {
    /// Checks both fields.
    pub fn validate(&self) -> Result<()> {
        if self.window_rows == 0 {
            return Err(Error::invalid("MonitorConfig.window_rows", 0, "at least 1"));
        }
        if self.step_rows == 0 || self.step_rows > self.window_rows {
            return Err(Error::invalid(
                "MonitorConfig.step_rows",
                self.step_rows,
                format!("1..={} (window_rows)", self.window_rows),
            ));
        }
        Ok(())
    }
}

/// One check of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorCheck {
    /// Rows observed since the monitor started (or was rebased) when the window closed.
    pub rows_seen: u64,
    /// Rows in the window.
    pub window_rows: usize,
    /// The comparison of the window with the reference.
    pub report: DriftReport,
    /// The policy's decision on it.
    pub decision: PolicyDecision,
    /// The window's performance estimated before labels (CBPE), when the monitor has an
    /// estimator ([`DriftMonitor::with_estimator`]) and the window has scored rows.
    pub performance: Option<PerformanceEstimate>,
    /// Why there is no estimate although the monitor has an estimator (a model input the
    /// window lacks, every row scored NaN); rows the model scored NaN are left out of the
    /// estimate and counted in `unscored_rows`.
    pub performance_error: Option<String>,
    /// Window rows the model scored NaN (a missing feature), left out of the estimate.
    pub unscored_rows: usize,
}

/// The served model and its fitted [`Cbpe`]: what a monitor needs to estimate a window's
/// performance from its features.
#[derive(Clone)]
pub struct Estimator {
    model: Arc<dyn Predictor>,
    cbpe: Cbpe,
}

impl std::fmt::Debug for Estimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimator")
            .field("features", &self.model.feature_names())
            .field("cbpe", &self.cbpe)
            .finish()
    }
}

impl Estimator {
    /// `model` with its estimator (the one stored in its spec, fitted at training on rows it
    /// did not train on). Errors: an estimator that fails [`Cbpe::validate`], or one fitted at
    /// another threshold than the model's (its expected counts would be of other
    /// predictions).
    pub fn new(model: Arc<dyn Predictor>, cbpe: Cbpe) -> mlops_core::Result<Self> {
        cbpe.validate()?;
        if cbpe.threshold as f32 != model.threshold() {
            return Err(mlops_core::Error::invalid(
                "cbpe.threshold",
                format!("{:?}", cbpe.threshold),
                format!("the model's threshold {:?}", model.threshold()),
            ));
        }
        Ok(Estimator { model, cbpe })
    }

    /// The estimator.
    pub fn cbpe(&self) -> &Cbpe {
        &self.cbpe
    }

    /// The estimate for `window`: the model's inputs read by name, rows scored NaN left out
    /// and counted.
    pub fn estimate(&self, window: &Dataset) -> mlops_core::Result<(PerformanceEstimate, usize)> {
        let names = self.model.feature_names();
        let mut x = ndarray::Array2::<f32>::zeros((window.n_rows(), names.len()));
        for (j, name) in names.iter().enumerate() {
            x.column_mut(j).assign(&window.column(name)?);
        }
        let scores = self.model.predict_proba(x.view())?;
        let scored: Vec<f64> = scores
            .iter()
            .filter(|s| !s.is_nan())
            .map(|&s| f64::from(s))
            .collect();
        let unscored = scores.len() - scored.len();
        if scored.is_empty() {
            return Err(mlops_core::Error::invalid(
                "window scores",
                format!("all {unscored} rows scored NaN"),
                "at least one row the model scores (a missing feature scores NaN)",
            ));
        }
        Ok((self.cbpe.estimate(&scored, None)?, unscored))
    }
}

/// A table-level drift monitor (see the module docs).
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use mlops_core::clock::ManualClock;
/// use mlops_core::Dataset;
/// use mlops_drift::{async_trait, DriftAction, CheckedDriftConfig, DriftConfig, DriftMonitor, DriftPolicy, DriftPolicyConfig, DriftReport, MonitorConfig, ProfileConfig, ReferenceProfile, RetrainTrigger};
/// use ndarray::Array2;
///
/// struct Log;
/// #[async_trait]
/// impl RetrainTrigger for Log {
///     async fn retrain(&self, _: &str, _: &DriftReport, _: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> { Ok(()) }
/// }
///
/// let batch = |shift: f32| Dataset::new(Array2::from_shape_fn((600, 2), |(i, j)| ((i * 7 + j) % 97) as f32 + shift), vec!["a".into(), "b".into()]);
/// let profile = ReferenceProfile::fit(&batch(0.0)?, &ProfileConfig::default())?;
/// let policy = DriftPolicy::new(DriftPolicyConfig::default(), Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)));
/// let mut monitor = DriftMonitor::new("fraud", profile, CheckedDriftConfig::default(), policy, MonitorConfig { window_rows: 600, step_rows: 600 })?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let quiet = rt.block_on(monitor.observe(&batch(0.0)?, &Log))?;
/// assert_eq!(quiet[0].decision.action, DriftAction::None);
/// let alarm = rt.block_on(monitor.observe(&batch(40.0)?, &Log))?;
/// assert_eq!(alarm[0].decision.action, DriftAction::Retrain);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DriftMonitor {
    model: String,
    profile: ReferenceProfile,
    drift: CheckedDriftConfig,
    policy: DriftPolicy,
    config: MonitorConfig,
    /// Recent batches, oldest first, holding at least the last `window_rows` rows.
    recent: VecDeque<Dataset>,
    buffered: usize,
    rows_seen: u64,
    since_check: usize,
    estimator: Option<Estimator>,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor")
            .field("model", &self.model)
            .field("config", &self.config)
            .field("rows_seen", &self.rows_seen)
            .finish_non_exhaustive()
    }
}

impl DriftMonitor {
    /// A monitor of `model` against `profile` under a checked drift config (the monitor's and
    /// the policy's configs are checked here).
    pub fn new(
        model: impl Into<String>,
        profile: ReferenceProfile,
        drift: CheckedDriftConfig,
        policy: DriftPolicy,
        config: MonitorConfig,
    ) -> Result<Self> {
        config.validate()?;
        policy.config().validate()?;
        Ok(DriftMonitor {
            model: model.into(),
            profile,
            drift,
            policy,
            config,
            recent: VecDeque::new(),
            buffered: 0,
            rows_seen: 0,
            since_check: 0,
            estimator: None,
        })
    }

    /// Estimates each window's performance with `estimator` (CBPE on the model's scores) and
    /// hands the estimate, or why there is none, to the policy
    /// ([`DriftPolicy::decide_estimated`]).
    pub fn with_estimator(mut self, estimator: Estimator) -> Self {
        self.estimator = Some(estimator);
        self
    }

    /// Replaces (or with `None` removes) the estimator: a promoted model's, with its rebase.
    pub fn set_estimator(&mut self, estimator: Option<Estimator>) {
        self.estimator = estimator;
    }

    /// The reference profile compared against.
    pub fn profile(&self) -> &ReferenceProfile {
        &self.profile
    }

    /// Rows observed since the start or the last [`DriftMonitor::rebase`].
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// Takes `batch` (features only are read; its columns must include the profile's) and runs
    /// every check that falls due within it: none until the first `window_rows` rows, then one
    /// per `step_rows`. A batch whose columns do not match is an error and is not kept.
    pub async fn observe(
        &mut self,
        batch: &Dataset,
        trigger: &dyn RetrainTrigger,
    ) -> Result<Vec<MonitorCheck>> {
        if let Some(first) = self.recent.front() {
            if first.schema() != batch.schema() {
                return Err(Error::invalid(
                    "monitored batch columns",
                    batch.feature_names().collect::<Vec<_>>().join(","),
                    format!(
                        "the columns of the batches before: {}",
                        first.feature_names().collect::<Vec<_>>().join(",")
                    ),
                ));
            }
        }
        let mut checks = Vec::new();
        let mut offset = 0;
        while offset < batch.n_rows() {
            // Rows up to the next check (or the end of the batch).
            let due = if self.buffered_total_seen() < self.config.window_rows {
                self.config.window_rows - self.buffered_total_seen()
            } else {
                self.config.step_rows - self.since_check
            };
            let take = due.min(batch.n_rows() - offset);
            let part = if offset == 0 && take == batch.n_rows() {
                batch.clone()
            } else {
                batch.select_rows(&(offset..offset + take).collect::<Vec<_>>())?
            };
            self.push(part);
            offset += take;
            self.since_check += take;
            let full = self.buffered >= self.config.window_rows;
            if full && (take == due) {
                checks.push(self.check(trigger).await?);
                self.since_check = 0;
            }
        }
        Ok(checks)
    }

    fn buffered_total_seen(&self) -> usize {
        self.buffered.min(self.config.window_rows)
    }

    fn push(&mut self, part: Dataset) {
        self.rows_seen += part.n_rows() as u64;
        self.buffered += part.n_rows();
        self.recent.push_back(part);
        // Drop whole batches the window no longer reaches.
        while let Some(front) = self.recent.front() {
            if self.buffered - front.n_rows() >= self.config.window_rows {
                self.buffered -= front.n_rows();
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }

    async fn check(&mut self, trigger: &dyn RetrainTrigger) -> Result<MonitorCheck> {
        let parts: Vec<&Dataset> = self.recent.iter().collect();
        let mut window = Dataset::concat(&parts)?;
        let extra = window.n_rows() - self.config.window_rows;
        if extra > 0 {
            window = window.select_rows(&(extra..window.n_rows()).collect::<Vec<_>>())?;
        }
        let report = self.profile.compare(&window, &self.drift)?;
        let (performance, performance_error, unscored_rows) = match &self.estimator {
            None => (None, None, 0),
            Some(e) => match e.estimate(&window) {
                Ok((p, unscored)) => (Some(p), None, unscored),
                Err(err) => {
                    tracing::warn!(model = %self.model, error = %err, "no performance estimate for the window");
                    (None, Some(err.to_string()), 0)
                }
            },
        };
        let estimate = match (&performance, &performance_error) {
            (Some(p), _) => WindowEstimate::Known(p),
            (None, Some(e)) => WindowEstimate::Unknown(e),
            (None, None) => WindowEstimate::NoEstimator,
        };
        let decision = self
            .policy
            .apply_with(&self.model, &report, estimate, trigger)
            .await?;
        Ok(MonitorCheck {
            rows_seen: self.rows_seen,
            window_rows: window.n_rows(),
            report,
            decision,
            performance,
            performance_error,
            unscored_rows,
        })
    }

    /// Compares against `profile` from now on (the reference of a newly promoted model) and
    /// forgets the window: the next check comes after `window_rows` new rows. The policy (its
    /// cooldown) carries over.
    pub fn rebase(&mut self, profile: ReferenceProfile) {
        self.profile = profile;
        self.recent.clear();
        self.buffered = 0;
        self.rows_seen = 0;
        self.since_check = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use mlops_core::clock::ManualClock;
    use ndarray::Array2;

    use super::*;
    use crate::policy::{DriftAction, DriftPolicyConfig};
    use crate::ProfileConfig;

    #[derive(Default)]
    struct Count(AtomicUsize);

    #[async_trait::async_trait]
    impl RetrainTrigger for Count {
        async fn retrain(
            &self,
            _: &str,
            _: &DriftReport,
            _: &str,
        ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn rows(n: usize, shift: f32, seed: usize) -> Dataset {
        Dataset::new(
            Array2::from_shape_fn((n, 3), |(i, j)| {
                (((i + seed) * 7919 + j * 104_729) % 1000) as f32 / 10.0 + shift
            }),
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap()
    }

    fn monitor(window: usize, step: usize, clock: Arc<ManualClock>) -> DriftMonitor {
        let profile =
            ReferenceProfile::fit(&rows(3_000, 0.0, 1), &ProfileConfig::default()).unwrap();
        let policy = DriftPolicy::new(
            DriftPolicyConfig {
                min_samples: 100,
                cooldown_seconds: 3_600.0,
                performance: None,
            },
            clock,
        );
        DriftMonitor::new(
            "m",
            profile,
            CheckedDriftConfig::default(),
            policy,
            MonitorConfig {
                window_rows: window,
                step_rows: step,
            },
        )
        .unwrap()
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn checks_fall_every_step_once_the_window_is_full_whatever_the_batch_sizes() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let mut m = monitor(1_000, 250, clock);
        let trigger = Count::default();
        let mut positions = Vec::new();
        for (i, size) in [300, 300, 300, 700, 1, 449, 1_000].into_iter().enumerate() {
            for c in block(m.observe(&rows(size, 0.0, i * 5_000), &trigger)).unwrap() {
                assert_eq!(c.window_rows, 1_000);
                assert_eq!(c.decision.action, DriftAction::None, "{}", c.report);
                positions.push(c.rows_seen);
            }
        }
        assert_eq!(
            positions,
            [1_000, 1_250, 1_500, 1_750, 2_000, 2_250, 2_500, 2_750, 3_000]
        );
        assert_eq!(m.rows_seen(), 3_050);
    }

    #[test]
    fn drift_triggers_one_retrain_then_warns_during_the_cooldown_and_rebase_quiets_it() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let mut m = monitor(500, 500, clock.clone());
        let trigger = Count::default();
        let actions = |m: &mut DriftMonitor, shift: f32, seed: usize| -> Vec<DriftAction> {
            block(m.observe(&rows(500, shift, seed), &trigger))
                .unwrap()
                .into_iter()
                .map(|c| c.decision.action)
                .collect()
        };
        assert_eq!(actions(&mut m, 0.0, 10), [DriftAction::None]);
        assert_eq!(actions(&mut m, 30.0, 11), [DriftAction::Retrain]);
        clock.advance(Duration::from_secs(600));
        assert_eq!(actions(&mut m, 30.0, 12), [DriftAction::Warn]);
        assert_eq!(trigger.0.load(Ordering::SeqCst), 1);
        // The new world becomes the reference.
        m.rebase(ReferenceProfile::fit(&rows(3_000, 30.0, 2), &ProfileConfig::default()).unwrap());
        assert_eq!(m.rows_seen(), 0);
        assert_eq!(actions(&mut m, 30.0, 13), [DriftAction::None]);
        // Past the cooldown, a new drift retrains again.
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(actions(&mut m, 0.0, 14), [DriftAction::Retrain]);
        assert_eq!(trigger.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn bad_settings_and_other_columns_are_refused_and_nothing_is_kept() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let profile = ReferenceProfile::fit(&rows(100, 0.0, 1), &ProfileConfig::default()).unwrap();
        for (config, field) in [
            (
                MonitorConfig {
                    window_rows: 0,
                    step_rows: 1,
                },
                "window_rows",
            ),
            (
                MonitorConfig {
                    window_rows: 10,
                    step_rows: 11,
                },
                "step_rows",
            ),
            (
                MonitorConfig {
                    window_rows: 10,
                    step_rows: 0,
                },
                "step_rows",
            ),
        ] {
            let policy = DriftPolicy::new(DriftPolicyConfig::default(), clock.clone());
            let err = DriftMonitor::new(
                "m",
                profile.clone(),
                CheckedDriftConfig::default(),
                policy,
                config,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(field), "{err}");
        }
        let mut m = monitor(1_000, 1_000, clock);
        let trigger = Count::default();
        block(m.observe(&rows(10, 0.0, 0), &trigger)).unwrap();
        let other = Dataset::new(Array2::zeros((10, 2)), vec!["a".into(), "x".into()]).unwrap();
        let err = block(m.observe(&other, &trigger)).unwrap_err().to_string();
        assert!(
            err.contains("monitored batch columns") && err.contains("a,x"),
            "{err}"
        );
        assert_eq!(m.rows_seen(), 10);
        // An empty batch is no check and no error.
        assert!(block(m.observe(&rows(0, 0.0, 0), &trigger))
            .unwrap()
            .is_empty());
    }
}
