//! The live monitor's settings as written, and their check.

use std::time::Duration;

use mlops_core::duration::{seconds, SecondsRange};
use mlops_drift::{CheckedDriftConfig, DriftConfig, DriftPolicyConfig};

use crate::{Error, Result};

/// Most rows a drift window (or a label window) may hold: 1 Mi rows.
pub const MAX_WINDOW_ROWS: usize = 1 << 20;

/// Most rows queued for the monitor's thread at once.
pub const MAX_QUEUE_ROWS: usize = 1 << 24;

/// Most versions of one model watched at once (the least recently scored is forgotten first).
pub const MAX_VERSIONS: usize = 64;

/// Most attempts to deliver one retrain request through a hook.
pub const MAX_HOOK_ATTEMPTS: u32 = 20;

/// Most arguments of a hook command, and most bytes of each argument and of the webhook URL.
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;

/// The live monitor's settings as written (TOML or JSON, or in code);
/// [`LiveMonitorConfig::check`] turns them into the [`CheckedLiveMonitorConfig`] a
/// [`LiveMonitor`](super::LiveMonitor) starts with.
///
/// ```
/// use mlops_serve::monitor::LiveMonitorConfig;
///
/// let config: LiveMonitorConfig = toml::from_str(r#"
///     window_rows = 2000
///     [policy]
///     cooldown_seconds = 600
///     performance = { min = 0.9, mode = "when_at_risk" }
///     [hook]
///     command = ["retrain.sh"]
/// "#)?;
/// assert_eq!(config.window_rows, 2000);
/// assert_eq!(config.policy.performance.unwrap().min, 0.9);
/// assert!(toml::from_str::<LiveMonitorConfig>("window = 5").is_err());
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveMonitorConfig {
    /// Rows of each version's drift window: the most recent rows it scored, compared with the
    /// version's reference profile. 1 to [`MAX_WINDOW_ROWS`] (default 5,000).
    pub window_rows: usize,
    /// Rows between two checks of a version at least, once its window is full, 1 to
    /// `window_rows` (default: `window_rows`, tumbling windows; 0 means the default).
    pub step_rows: usize,
    /// Seconds between two checks of a version at least, 0 to 86,400 (default 1): a window
    /// that fills sooner waits, while rows keep coming into it, and the check then compares
    /// the latest `window_rows` rows. At 64,000 requests/s, 5,000-row windows would otherwise
    /// be compared 13 times a second (each a burst on every core); 0 checks every
    /// `step_rows` rows as they come.
    pub min_check_seconds: f64,
    /// Labeled rows kept per version for the live metrics (the most recent), 1 to
    /// [`MAX_WINDOW_ROWS`] (default 5,000).
    pub label_window_rows: usize,
    /// Labeled rows between two computations of the live metrics, 1 to `label_window_rows`
    /// (default 500).
    pub label_step_rows: usize,
    /// Rows each sensitive group needs behind each rate of a live disparity
    /// (`mlops_monitor_fairness`, NaN below it), 1 to `label_window_rows` (default 30).
    pub fairness_min_group_size: usize,
    /// Rows queued for the monitor's thread, at most: past it, rows are dropped and counted
    /// (`mlops_monitor_dropped_total`), never waited for. 1 to [`MAX_QUEUE_ROWS`] (default
    /// 65,536).
    pub queue_rows: usize,
    /// Versions of one model watched at once, 1 to [`MAX_VERSIONS`] (default 4).
    pub max_versions: usize,
    /// Seconds between two attempts to load a version's reference profiles after a failure
    /// (0.01 to 86,400; default 30).
    pub profile_retry_seconds: f64,
    /// The comparison of a window with the reference (tests, thresholds, correction, dataset
    /// rules): `mlops_drift`'s [`DriftConfig`].
    pub drift: DriftConfig,
    /// The policy: `min_samples` (fewest values to act on), `cooldown_seconds` (no second
    /// retrain request for a model within it, across every replica: the cooldown is kept in
    /// the [`RetrainLedger`](super::RetrainLedger), not in this process), and `performance`
    /// (a rule on the performance estimated from the window's scores with the estimator
    /// stored in the version's model spec: an estimate below `min` requests a retrain, and
    /// `mode = "when_at_risk"` acts on drift only when the estimate is at risk).
    pub policy: DriftPolicyConfig,
    /// Where a retrain request goes.
    pub hook: HookConfig,
}

impl Default for LiveMonitorConfig {
    fn default() -> Self {
        LiveMonitorConfig {
            window_rows: 5_000,
            step_rows: 0,
            min_check_seconds: 1.0,
            label_window_rows: 5_000,
            label_step_rows: 500,
            fairness_min_group_size: 30,
            queue_rows: 1 << 16,
            max_versions: 4,
            profile_retry_seconds: 30.0,
            drift: DriftConfig::default(),
            policy: DriftPolicyConfig::default(),
            hook: HookConfig::default(),
        }
    }
}

/// Where a retrain request goes: a webhook (an HTTP `POST` of the request as JSON) and/or a
/// command (run with the request as JSON on its standard input and, up to
/// [`MAX_REQUEST_ENV_BYTES`](super::MAX_REQUEST_ENV_BYTES), in `MLOPS_RETRAIN_REQUEST`).
/// Each delivery is retried with doubling backoff, off the request path. With neither set the
/// request is still claimed in the ledger (and counted), which a host may poll instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookConfig {
    /// `http://` URL the request is posted to; a 2xx answer is a delivery, a redirect is not
    /// followed (a failure). (No TLS in the
    /// client: reach an `https` endpoint through a local proxy or sidecar.)
    pub webhook: Option<String>,
    /// Program and arguments; exit status 0 is a delivery. It inherits the server's
    /// environment (store credentials included) except `MLOPS_TOKENS`.
    pub command: Option<Vec<String>>,
    /// Seconds one attempt may take (0.01 to 3,600; default 30); a command past it is killed
    /// with everything it started (it runs in its own process group on Unix).
    pub timeout_seconds: f64,
    /// Attempts per delivery, 1 to [`MAX_HOOK_ATTEMPTS`] (default 5).
    pub attempts: u32,
    /// Seconds before the second attempt, doubled for each next one (0.001 to 3,600;
    /// default 1).
    pub backoff_seconds: f64,
    /// Requests waiting for delivery, at most (1 to 1,024; default 16): past it a request is
    /// dropped and counted.
    pub queue: usize,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            webhook: None,
            command: None,
            timeout_seconds: 30.0,
            attempts: 5,
            backoff_seconds: 1.0,
            queue: 16,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`LiveMonitorConfig`] (see [`LiveMonitorConfig::check`]). Read its fields
    /// through `Deref`.
    ///
    /// ```
    /// use mlops_serve::monitor::{CheckedLiveMonitorConfig, LiveMonitorConfig};
    ///
    /// let config = LiveMonitorConfig { window_rows: 100, ..LiveMonitorConfig::default() }.check()?;
    /// assert_eq!((config.window_rows, config.step()), (100, 100));
    /// assert_eq!(CheckedLiveMonitorConfig::default().config(), &LiveMonitorConfig::default());
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone)]
    pub struct CheckedLiveMonitorConfig(LiveMonitorConfig);
}

impl Default for CheckedLiveMonitorConfig {
    /// [`LiveMonitorConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedLiveMonitorConfig {
            config: LiveMonitorConfig::default(),
        }
    }
}

impl CheckedLiveMonitorConfig {
    /// Rows between checks (`step_rows`, or `window_rows` when it is 0).
    pub fn step(&self) -> usize {
        if self.step_rows == 0 {
            self.window_rows
        } else {
            self.step_rows
        }
    }

    pub(crate) fn drift(&self) -> Result<CheckedDriftConfig> {
        Ok(self.drift.clone().check()?)
    }

    pub(crate) fn min_check_interval(&self) -> Duration {
        Duration::from_secs_f64(self.min_check_seconds)
    }

    pub(crate) fn profile_retry(&self) -> Duration {
        Duration::from_secs_f64(self.profile_retry_seconds)
    }

    pub(crate) fn cooldown(&self) -> Duration {
        Duration::try_from_secs_f64(self.policy.cooldown_seconds).unwrap_or(Duration::MAX)
    }
}

/// The durations of a checked hook config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookTiming {
    pub(crate) timeout: Duration,
    pub(crate) backoff: Duration,
}

impl HookConfig {
    pub(crate) fn timing(&self) -> Result<HookTiming> {
        Ok(HookTiming {
            timeout: seconds(
                "LiveMonitorConfig.hook.timeout_seconds",
                self.timeout_seconds,
                SecondsRange::new(0.01, 3_600.0),
            )?,
            backoff: seconds(
                "LiveMonitorConfig.hook.backoff_seconds",
                self.backoff_seconds,
                SecondsRange::new(0.001, 3_600.0),
            )?,
        })
    }

    fn check(&self) -> Result<()> {
        self.timing()?;
        if !(1..=MAX_HOOK_ATTEMPTS).contains(&self.attempts) {
            return Err(Error::invalid(
                "LiveMonitorConfig.hook.attempts",
                self.attempts,
                format!("1 to {MAX_HOOK_ATTEMPTS}"),
            ));
        }
        if !(1..=1024).contains(&self.queue) {
            return Err(Error::invalid(
                "LiveMonitorConfig.hook.queue",
                self.queue,
                "1 to 1024",
            ));
        }
        if let Some(url) = &self.webhook {
            if !url.starts_with("http://")
                || url.len() > MAX_ARG_BYTES
                || url.parse::<reqwest::Url>().is_err()
            {
                return Err(Error::invalid(
                    "LiveMonitorConfig.hook.webhook",
                    format!("{url:?}"),
                    format!("an http:// URL of at most {MAX_ARG_BYTES} bytes"),
                ));
            }
        }
        if let Some(command) = &self.command {
            if command.is_empty() || command.len() > MAX_ARGS {
                return Err(Error::invalid(
                    "LiveMonitorConfig.hook.command",
                    format!("{} arguments", command.len()),
                    format!("a program and up to {} arguments", MAX_ARGS - 1),
                ));
            }
            if let Some((i, a)) = command
                .iter()
                .enumerate()
                .find(|(_, a)| a.is_empty() || a.len() > MAX_ARG_BYTES || a.contains('\0'))
            {
                return Err(Error::invalid(
                    format!("LiveMonitorConfig.hook.command[{i}]"),
                    format!("{a:?}"),
                    format!("a non-empty argument of at most {MAX_ARG_BYTES} bytes without NUL"),
                ));
            }
        }
        Ok(())
    }
}

impl LiveMonitorConfig {
    /// Checks every field (the drift comparison and the policy included) and returns the
    /// checked config; an error names the field, its value and what was expected.
    ///
    /// ```
    /// use mlops_serve::monitor::LiveMonitorConfig;
    ///
    /// let e = LiveMonitorConfig { step_rows: 9, window_rows: 4, ..LiveMonitorConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().contains("LiveMonitorConfig.step_rows = 9"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedLiveMonitorConfig> {
        let rows = |field: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("LiveMonitorConfig.{field}"),
                    value,
                    format!("1 to {max}"),
                ))
            }
        };
        rows("window_rows", self.window_rows, MAX_WINDOW_ROWS)?;
        if self.step_rows > self.window_rows {
            return Err(Error::invalid(
                "LiveMonitorConfig.step_rows",
                self.step_rows,
                format!("0 (the window) or 1 to window_rows ({})", self.window_rows),
            ));
        }
        rows("label_window_rows", self.label_window_rows, MAX_WINDOW_ROWS)?;
        rows(
            "label_step_rows",
            self.label_step_rows,
            self.label_window_rows,
        )?;
        rows(
            "fairness_min_group_size",
            self.fairness_min_group_size,
            self.label_window_rows,
        )?;
        rows("queue_rows", self.queue_rows, MAX_QUEUE_ROWS)?;
        rows("max_versions", self.max_versions, MAX_VERSIONS)?;
        // 0 is allowed (every window), which a `SecondsRange` is not.
        if !(0.0..=86_400.0).contains(&self.min_check_seconds) {
            return Err(Error::invalid(
                "LiveMonitorConfig.min_check_seconds",
                self.min_check_seconds,
                "0 to 86,400 seconds",
            ));
        }
        seconds(
            "LiveMonitorConfig.profile_retry_seconds",
            self.profile_retry_seconds,
            SecondsRange::new(0.01, 86_400.0),
        )?;
        self.drift.clone().check()?;
        self.policy.validate()?;
        self.hook.check()?;
        Ok(CheckedLiveMonitorConfig { config: self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_passes_its_check_and_bad_fields_are_named() {
        LiveMonitorConfig::default().check().unwrap();
        let bad = |c: LiveMonitorConfig, field: &str| {
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        };
        let d = LiveMonitorConfig::default;
        bad(
            LiveMonitorConfig {
                window_rows: 0,
                ..d()
            },
            "window_rows = 0",
        );
        bad(
            LiveMonitorConfig {
                label_step_rows: 0,
                ..d()
            },
            "label_step_rows = 0",
        );
        bad(
            LiveMonitorConfig {
                queue_rows: usize::MAX,
                ..d()
            },
            "queue_rows",
        );
        bad(
            LiveMonitorConfig {
                max_versions: 0,
                ..d()
            },
            "max_versions = 0",
        );
        for wrong in [-1.0, f64::NAN, 1e9] {
            bad(
                LiveMonitorConfig {
                    min_check_seconds: wrong,
                    ..d()
                },
                "min_check_seconds",
            );
        }
        bad(
            LiveMonitorConfig {
                profile_retry_seconds: f64::NAN,
                ..d()
            },
            "profile_retry_seconds",
        );
        let hook = |h: HookConfig| LiveMonitorConfig { hook: h, ..d() };
        let hd = HookConfig::default;
        bad(
            hook(HookConfig {
                webhook: Some("ftp://x".into()),
                ..hd()
            }),
            "hook.webhook",
        );
        bad(
            hook(HookConfig {
                webhook: Some("https://x".into()),
                ..hd()
            }),
            "hook.webhook",
        );
        bad(
            hook(HookConfig {
                webhook: Some("http://".into()),
                ..hd()
            }),
            "hook.webhook",
        );
        bad(
            hook(HookConfig {
                command: Some(vec![]),
                ..hd()
            }),
            "hook.command",
        );
        bad(
            hook(HookConfig {
                command: Some(vec!["a".into(), String::new()]),
                ..hd()
            }),
            "hook.command[1]",
        );
        bad(
            hook(HookConfig {
                attempts: 0,
                ..hd()
            }),
            "hook.attempts = 0",
        );
        bad(
            hook(HookConfig {
                timeout_seconds: 1e9,
                ..hd()
            }),
            "hook.timeout_seconds",
        );
        let policy = DriftPolicyConfig {
            cooldown_seconds: -1.0,
            ..Default::default()
        };
        bad(LiveMonitorConfig { policy, ..d() }, "cooldown_seconds");
    }
}
