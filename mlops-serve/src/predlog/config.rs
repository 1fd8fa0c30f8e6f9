//! The prediction log's settings as written, and their check.

use std::time::Duration;

use mlops_core::duration::{seconds, SecondsRange};

use crate::{Error, Result};

/// Most rows the buffer may hold (and a file may take): 16 Mi rows.
pub const MAX_BUFFER_ROWS: usize = 1 << 24;

/// Most write attempts after the first one of a batch.
pub const MAX_RETRIES: u32 = 20;

/// The prediction log's settings as written (TOML or JSON, or in code);
/// [`PredictionLogConfig::check`] turns them into the [`CheckedPredictionLogConfig`] a
/// [`PredictionLog`](super::PredictionLog) is opened with.
///
/// ```
/// use mlops_serve::predlog::PredictionLogConfig;
///
/// let config: PredictionLogConfig = serde_json::from_str(r#"{"buffer_rows": 1024, "batch_rows": 256}"#)?;
/// assert_eq!((config.buffer_rows, config.batch_rows), (1024, 256));
/// assert!(serde_json::from_str::<PredictionLogConfig>(r#"{"buffer": 1024}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictionLogConfig {
    /// Rows recorded but not yet written (queued, batched or being written), at most; a row
    /// recorded past it is dropped and counted (`reason="buffer_full"`). 1 to
    /// [`MAX_BUFFER_ROWS`].
    pub buffer_rows: usize,
    /// Rows that make the writer write its batch now (one file per kind, model and hour).
    /// 1 to `buffer_rows`.
    pub batch_rows: usize,
    /// Seconds the oldest buffered row may wait before its batch is written (0.01 to 86,400).
    pub batch_age_seconds: f64,
    /// Attempts after a failed write of a file before its rows are dropped and counted
    /// (`reason="store_failed"`): 0 to [`MAX_RETRIES`].
    pub retries: u32,
    /// Seconds before the first retry, doubled for each next one (0.001 to 600).
    pub retry_backoff_seconds: f64,
    /// Seconds one write may take before it counts as failed (0.001 to 3,600).
    pub timeout_seconds: f64,
}

impl Default for PredictionLogConfig {
    fn default() -> Self {
        PredictionLogConfig {
            buffer_rows: 1 << 16,
            batch_rows: 1 << 13,
            batch_age_seconds: 60.0,
            retries: 3,
            retry_backoff_seconds: 0.5,
            timeout_seconds: 30.0,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`PredictionLogConfig`] (see [`PredictionLogConfig::check`]). Read its
    /// fields through `Deref`.
    ///
    /// ```
    /// use mlops_serve::predlog::{CheckedPredictionLogConfig, PredictionLogConfig};
    ///
    /// let config = PredictionLogConfig { buffer_rows: 64, batch_rows: 8, ..PredictionLogConfig::default() }.check()?;
    /// assert_eq!(config.buffer_rows, 64);
    /// assert_eq!(CheckedPredictionLogConfig::default().config(), &PredictionLogConfig::default());
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct CheckedPredictionLogConfig(PredictionLogConfig);
}

impl Default for CheckedPredictionLogConfig {
    /// [`PredictionLogConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedPredictionLogConfig {
            config: PredictionLogConfig::default(),
        }
    }
}

/// The durations of a checked config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) batch_age: Duration,
    pub(crate) backoff: Duration,
    pub(crate) timeout: Duration,
}

impl PredictionLogConfig {
    /// Checks every field and returns the checked config; an error names the field, its
    /// value and what was expected.
    ///
    /// ```
    /// use mlops_serve::predlog::PredictionLogConfig;
    ///
    /// let e = PredictionLogConfig { buffer_rows: 0, ..PredictionLogConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().contains("PredictionLogConfig.buffer_rows = 0"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedPredictionLogConfig> {
        if !(1..=MAX_BUFFER_ROWS).contains(&self.buffer_rows) {
            return Err(Error::invalid(
                "PredictionLogConfig.buffer_rows",
                self.buffer_rows,
                format!("1 to {MAX_BUFFER_ROWS}"),
            ));
        }
        if !(1..=self.buffer_rows).contains(&self.batch_rows) {
            return Err(Error::invalid(
                "PredictionLogConfig.batch_rows",
                self.batch_rows,
                format!("1 to buffer_rows ({})", self.buffer_rows),
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::invalid(
                "PredictionLogConfig.retries",
                self.retries,
                format!("0 to {MAX_RETRIES}"),
            ));
        }
        self.timing()?;
        Ok(CheckedPredictionLogConfig { config: self })
    }

    pub(crate) fn timing(&self) -> Result<Timing> {
        Ok(Timing {
            batch_age: seconds(
                "PredictionLogConfig.batch_age_seconds",
                self.batch_age_seconds,
                SecondsRange::new(0.01, 86_400.0),
            )?,
            backoff: seconds(
                "PredictionLogConfig.retry_backoff_seconds",
                self.retry_backoff_seconds,
                SecondsRange::new(0.001, 600.0),
            )?,
            timeout: seconds(
                "PredictionLogConfig.timeout_seconds",
                self.timeout_seconds,
                SecondsRange::new(0.001, 3_600.0),
            )?,
        })
    }
}
