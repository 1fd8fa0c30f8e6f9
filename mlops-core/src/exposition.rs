//! Prometheus exposition: one function that writes a `prometheus-client` registry (drift's and
//! serving's metrics, and the host's own) in the classic text format that Prometheus scrapes
//! as `text/plain; version=0.0.4` and `promtool check metrics` lints.
//!
//! `prometheus-client` writes OpenMetrics (counter family `x` with samples `x_total`, a final
//! `# EOF`); Prometheus reads that too, under the OpenMetrics content type
//! ([`OPENMETRICS_CONTENT_TYPE`]). The classic format names a counter's `# HELP` and `# TYPE`
//! lines by the sample name (`x_total`) and has no `# EOF`, which is all this conversion
//! changes.

use prometheus_client::registry::Registry;

use crate::error::{Error, Result};

/// The content type of [`classic_text`].
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of [`openmetrics_text`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in OpenMetrics text, as `prometheus-client` encodes it.
pub fn openmetrics_text(registry: &Registry) -> Result<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).map_err(|e| {
        Error::invalid(
            "metrics registry",
            e.to_string(),
            "metrics that encode as text",
        )
    })?;
    Ok(text)
}

/// The registry in the classic Prometheus text format (what `promtool check metrics` lints).
///
/// ```
/// use prometheus_client::metrics::counter::Counter;
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let served = Counter::<u64>::default();
/// registry.register("mlops_requests", "Requests served", served.clone());
/// served.inc();
/// let text = mlops_core::exposition::classic_text(&registry)?;
/// assert!(text.contains("# TYPE mlops_requests_total counter\n"));
/// assert!(text.contains("mlops_requests_total 1\n"));
/// assert!(!text.contains("# EOF"));
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn classic_text(registry: &Registry) -> Result<String> {
    let text = openmetrics_text(registry)?;
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.strip_suffix(" counter"))
        })
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines().filter(|l| *l != "# EOF") {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|kind| {
            let rest = line.strip_prefix(kind)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{kind}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}
