//! Searching versions: by tags, by metric thresholds, the latest only, deleted or not.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::records::VersionInfo;

/// A comparison of a metric with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `<=`
    AtMost,
    /// `<`
    Below,
    /// `==`
    Equal,
}

/// `metric <op> value`, parsed from text such as `roc_auc>=0.95`.
///
/// ```
/// use mlops_registry::MetricFilter;
///
/// let f: MetricFilter = "roc_auc>=0.95".parse()?;
/// assert!(f.accepts(0.97) && !f.accepts(0.9));
/// assert!("roc_auc~0.9".parse::<MetricFilter>().is_err());
/// assert!("roc_auc=>0.5".parse::<MetricFilter>().is_err(), "`=>` is not `>=`");
/// # Ok::<(), mlops_registry::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilter {
    /// The metric.
    pub metric: String,
    /// How to compare.
    pub comparison: Comparison,
    /// The threshold.
    pub value: f64,
}

impl MetricFilter {
    /// Whether `v` passes.
    pub fn accepts(&self, v: f64) -> bool {
        match self.comparison {
            Comparison::AtLeast => v >= self.value,
            Comparison::Above => v > self.value,
            Comparison::AtMost => v <= self.value,
            Comparison::Below => v < self.value,
            Comparison::Equal => v == self.value,
        }
    }
}

impl FromStr for MetricFilter {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let expected = "METRIC>=V, METRIC>V, METRIC<=V, METRIC<V or METRIC==V";
        for (op, comparison) in [
            (">=", Comparison::AtLeast),
            ("<=", Comparison::AtMost),
            ("==", Comparison::Equal),
            (">", Comparison::Above),
            ("<", Comparison::Below),
        ] {
            if let Some((metric, value)) = s.split_once(op) {
                let value: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid("metric filter", s, expected))?;
                let metric = metric.trim();
                if !value.is_finite() || crate::names::check_key("metric", metric).is_err() {
                    return Err(Error::invalid("metric filter", s, expected));
                }
                return Ok(MetricFilter {
                    metric: metric.to_string(),
                    comparison,
                    value,
                });
            }
        }
        Err(Error::invalid("metric filter", s, expected))
    }
}

/// Which versions [`crate::Registry::search`] returns (in version order).
///
/// ```
/// use mlops_registry::Query;
///
/// let q = Query::default().tag("team", "fraud").metric("roc_auc>=0.95")?.latest();
/// assert!(q.latest_only && !q.include_deleted);
/// # Ok::<(), mlops_registry::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Tags every match has, with these values.
    pub tags: BTreeMap<String, String>,
    /// Metric thresholds every match passes (a version without the metric fails).
    pub metrics: Vec<MetricFilter>,
    /// Include deleted versions.
    pub include_deleted: bool,
    /// Only the highest matching version.
    pub latest_only: bool,
}

impl Query {
    /// Requires tag `key` = `value`.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Requires a metric threshold (`roc_auc>=0.95`).
    pub fn metric(mut self, filter: &str) -> Result<Self> {
        self.metrics.push(filter.parse()?);
        Ok(self)
    }

    /// Only the highest matching version.
    pub fn latest(mut self) -> Self {
        self.latest_only = true;
        self
    }

    /// The versions of `versions` (ascending) that match, only the highest with `latest_only`.
    pub fn select(&self, versions: Vec<VersionInfo>) -> Vec<VersionInfo> {
        let mut found: Vec<VersionInfo> =
            versions.into_iter().filter(|v| self.matches(v)).collect();
        if self.latest_only && found.len() > 1 {
            found = found.split_off(found.len() - 1);
        }
        found
    }

    /// Whether `v` matches (ignoring `latest_only`).
    pub fn matches(&self, v: &VersionInfo) -> bool {
        (self.include_deleted || v.deleted.is_none())
            && self
                .tags
                .iter()
                .all(|(k, val)| v.record.tags.get(k) == Some(val))
            && self.metrics.iter().all(|f| {
                v.record
                    .metrics
                    .get(&f.metric)
                    .is_some_and(|m| f.accepts(*m))
            })
    }
}
