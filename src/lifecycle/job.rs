//! The retrain job's request: what a monitor's hook (a webhook body, a command's input file)
//! hands the job that reads the prediction log and runs the [`Retrainer`](super::Retrainer)
//! (`examples/retrain`).
//!
//! ```json
//! {"model": "fraud", "version": 3, "reason": "dataset drift", "at": "2026-12-05T09:00:00Z",
//!  "window": {"from": "2026-12-05T08:00:00Z", "to": "2026-12-05T09:00:00Z"},
//!  "summary": {"drifted_features": ["amount"]}}
//! ```
//!
//! Times are RFC 3339 text or unix seconds (a number). Unknown fields are refused, so a
//! misspelled field is an error rather than a default: anything extra a monitor wants to pass
//! goes in `summary` (free JSON, kept as it is).

use mlops_registry::chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Error, Result};

/// A retrain request as a hook sends it (see the module docs).
///
/// ```
/// use mlops::lifecycle::RetrainJob;
///
/// let job = RetrainJob::from_json(r#"{"model": "fraud", "version": 3, "reason": "dataset drift",
///     "at": "2026-12-05T09:00:00Z",
///     "window": {"from": "2026-12-05T08:00:00Z", "to": 1796461200},
///     "summary": {"drifted_features": ["amount"]}}"#)?;
/// assert_eq!((job.model.as_str(), job.version), ("fraud", Some(3)));
/// assert_eq!(job.window.to.to_rfc3339(), "2026-12-05T09:00:00+00:00");
/// assert_eq!(job.window.seconds(), 3_600.0);
/// let again = RetrainJob::from_json(&serde_json::to_string(&job)?)?;
/// assert_eq!(again, job);
/// let e = RetrainJob::from_json(r#"{"model": "fraud", "window": {"from": 10, "to": 5}}"#).unwrap_err();
/// assert!(e.to_string().contains("window.to"), "{e}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainJob {
    /// The model to retrain.
    pub model: String,
    /// The version the monitor watched when it raised the request (`null`: not known).
    #[serde(default)]
    pub version: Option<u64>,
    /// The request's number in the model's retrain ledger (`null`: not from a monitor).
    #[serde(default)]
    pub sequence: Option<u64>,
    /// The replica whose monitor claimed the request (`null`: not from a monitor).
    #[serde(default)]
    pub replica: Option<String>,
    /// Why (the drift verdict, a live metric, an operator's words).
    #[serde(default)]
    pub reason: String,
    /// When the request was raised.
    #[serde(
        default,
        serialize_with = "time_opt_out",
        deserialize_with = "time_opt_in"
    )]
    pub at: Option<DateTime<Utc>>,
    /// The rows to retrain on: the prediction log's window.
    pub window: JobWindow,
    /// The monitor's report, as free JSON (kept, not read).
    #[serde(default)]
    pub summary: serde_json::Value,
}

/// A window of the prediction log, `[from, to)`.
///
/// ```
/// use mlops::lifecycle::JobWindow;
///
/// let w: JobWindow = serde_json::from_str(r#"{"from": 0, "to": "1970-01-01T01:00:00Z"}"#)?;
/// assert_eq!(w.seconds(), 3_600.0);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobWindow {
    /// The first instant in the window.
    #[serde(serialize_with = "time_out", deserialize_with = "time_in")]
    pub from: DateTime<Utc>,
    /// The first instant after it.
    #[serde(serialize_with = "time_out", deserialize_with = "time_in")]
    pub to: DateTime<Utc>,
}

impl JobWindow {
    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.to - self.from).num_milliseconds() as f64 / 1e3
    }

    /// `[from, to)` in RFC 3339 (UTC, seconds).
    ///
    /// ```
    /// let w: mlops::lifecycle::JobWindow = serde_json::from_str(r#"{"from": 0, "to": 60}"#)?;
    /// assert_eq!(w.describe(), "[1970-01-01T00:00:00Z, 1970-01-01T00:01:00Z)");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn describe(&self) -> String {
        format!("[{}, {})", rfc3339(&self.from), rfc3339(&self.to))
    }

    /// Checks that it starts before it ends.
    pub fn check(&self) -> Result<()> {
        if self.from >= self.to {
            return Err(Error::invalid(
                "window.to",
                rfc3339(&self.to),
                format!("a time after window.from ({})", rfc3339(&self.from)),
            ));
        }
        Ok(())
    }
}

impl RetrainJob {
    /// Parses and checks a request (a model name, a window that starts before it ends); an
    /// error names the field.
    pub fn from_json(text: &str) -> Result<Self> {
        let job: RetrainJob = serde_json::from_str(text).map_err(|e| {
            Error::invalid(
                "retrain request",
                e.to_string(),
                "a JSON object {model, version, sequence, replica, reason, at, window: {from, to}, summary}",
            )
        })?;
        if job.model.is_empty() {
            return Err(Error::invalid("model", "\"\"", "a model name"));
        }
        job.window.check()?;
        Ok(job)
    }
}

/// `t` as RFC 3339 text, UTC, whole seconds unless it has a fraction.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeText {
    Text(String),
    Seconds(f64),
}

fn parse_time<E: serde::de::Error>(t: TimeText) -> std::result::Result<DateTime<Utc>, E> {
    match t {
        TimeText::Text(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| E::custom(format!("{s:?} is not an RFC 3339 time ({e})"))),
        TimeText::Seconds(s) => {
            let whole = s.floor();
            let nanos = ((s - whole) * 1e9).round() as u32;
            (s.is_finite() && whole.abs() < 1e15)
                .then(|| {
                    Utc.timestamp_opt(whole as i64, nanos.min(999_999_999))
                        .single()
                })
                .flatten()
                .ok_or_else(|| E::custom(format!("{s} is not a time in unix seconds")))
        }
    }
}

fn time_in<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
    parse_time(TimeText::deserialize(d)?)
}

fn time_opt_in<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    Option::<TimeText>::deserialize(d)?
        .map(parse_time)
        .transpose()
}

fn time_out<S: Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(t))
}

fn time_opt_out<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_text_or_seconds_and_bad_ones_are_named() {
        let w: JobWindow =
            serde_json::from_str(r#"{"from": "2026-12-05T10:00:00+02:00", "to": 1796457600.5}"#)
                .unwrap();
        assert_eq!(rfc3339(&w.from), "2026-12-05T08:00:00Z");
        assert_eq!(rfc3339(&w.to), "2026-12-05T08:00:00.500Z");
        for (bad, says) in [
            (
                r#"{"from": "yesterday", "to": 1}"#,
                "\"yesterday\" is not an RFC 3339 time",
            ),
            (r#"{"from": 1e300, "to": 1}"#, "not a time in unix seconds"),
            (
                r#"{"from": 0, "to": 1, "extra": 2}"#,
                "unknown field `extra`",
            ),
            (r#"{"from": 0}"#, "missing field `to`"),
        ] {
            let e = serde_json::from_str::<JobWindow>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_request_names_what_is_wrong() {
        let ok = r#"{"model": "m", "window": {"from": 0, "to": 60}}"#;
        let job = RetrainJob::from_json(ok).unwrap();
        assert_eq!((job.version, job.at, job.reason.as_str()), (None, None, ""));
        assert_eq!(job.summary, serde_json::Value::Null);
        for (bad, says) in [
            (
                r#"{"model": "", "window": {"from": 0, "to": 60}}"#,
                "invalid model",
            ),
            (
                r#"{"model": "m", "window": {"from": 60, "to": 60}}"#,
                "window.to",
            ),
            (
                r#"{"model": "m", "windw": {"from": 0, "to": 60}}"#,
                "unknown field `windw`",
            ),
            (
                r#"{"window": {"from": 0, "to": 60}}"#,
                "missing field `model`",
            ),
            ("[]", "retrain request"),
        ] {
            let e = RetrainJob::from_json(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// What a live monitor's hook sends (`mlops_serve::monitor::RetrainRequest`) is a job.
    #[cfg(feature = "monitor")]
    #[test]
    fn a_monitors_request_is_a_job() {
        use mlops_serve::monitor::{LogWindow, RetrainRequest};
        use std::time::{Duration, UNIX_EPOCH};
        let from = UNIX_EPOCH + Duration::from_secs(1_796_457_600);
        let request = RetrainRequest {
            model: "fraud".into(),
            version: Some(3),
            sequence: 2,
            at: from + Duration::from_secs(120),
            replica: "a".into(),
            reason: "dataset drift".into(),
            window: LogWindow {
                from,
                to: from + Duration::from_micros(60_000_001),
            },
            summary: Default::default(),
        };
        let job = RetrainJob::from_json(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(
            (job.model.as_str(), job.version, job.sequence),
            ("fraud", Some(3), Some(2))
        );
        assert_eq!(job.replica.as_deref(), Some("a"));
        assert_eq!(rfc3339(&job.window.from), "2026-12-05T08:00:00Z");
        assert_eq!(rfc3339(&job.window.to), "2026-12-05T08:01:00.000001Z");
        assert_eq!(job.summary["verdict"], "");
    }
}
