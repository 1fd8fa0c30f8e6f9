//! Where a controller reads a step's statistics: [`MetricsSource`], with [`InProcess`] (this
//! replica's router: exact samples) and, feature `http`, [`PrometheusSource`] (PromQL over
//! Prometheus's HTTP API, which aggregates every replica it scrapes — how Flagger and Argo
//! Rollouts decide).
//!
//! From Prometheus a step is the counters' increase over the step's window: requests, errors
//! and rejections per variant, p50 and p99 from the latency histogram, labeled rows from the
//! labeled-score histogram (each row at its 0.02-wide bucket's middle: ROC AUC and accuracy
//! to about a bucket), shadow agreement from its counters. Raw predictions are not exported,
//! so a `prediction_drift` check has no sample there and says inconclusive, never pass.

use async_trait::async_trait;

use crate::router::Router;
use crate::step_stats::StepSnapshot;
use crate::Result;

/// A source of the current step's per-variant statistics.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// The statistics of `model`'s variants over `[step_start_unix, now_unix]`, as `router`
    /// (this replica's) names them.
    async fn snapshot(
        &self,
        model: &str,
        router: &Router,
        step_start_unix: f64,
        now_unix: f64,
    ) -> Result<StepSnapshot>;
}

/// This replica's router: exact samples of its own requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

#[async_trait]
impl MetricsSource for InProcess {
    async fn snapshot(
        &self,
        _model: &str,
        router: &Router,
        _start: f64,
        _now: f64,
    ) -> Result<StepSnapshot> {
        Ok(router.snapshot())
    }
}

#[cfg(feature = "prometheus")]
pub use prometheus::{PrometheusSource, MAX_LABELED_ROWS};

#[cfg(feature = "prometheus")]
mod prometheus {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::Value;

    use super::MetricsSource;
    use crate::router::Router;
    use crate::step_stats::{StepSnapshot, VariantSnapshot};
    use crate::telemetry::{names, LABELED_SCORE_BUCKETS};
    use crate::{Error, ErrorKind, Result};

    /// Labeled rows a snapshot rebuilds per variant from the labeled-score histogram; a step
    /// with more keeps this many, every bucket in proportion, and counts the rest in
    /// `labeled_dropped`.
    pub const MAX_LABELED_ROWS: usize = 100_000;

    /// PromQL over a Prometheus server's HTTP API (`/api/v1/query`). A snapshot holds at
    /// most [`MAX_LABELED_ROWS`] labeled rows per variant.
    ///
    /// ```
    /// use mlops_serve::rollout::PrometheusSource;
    /// let source = PrometheusSource::new("http://127.0.0.1:9090")?;
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone)]
    pub struct PrometheusSource {
        base: String,
        client: reqwest::Client,
    }

    fn source_error(kind: ErrorKind, what: &str, e: impl std::fmt::Display) -> Error {
        Error::with_kind(kind, format!("Prometheus {what}: {e}"))
    }

    /// A failed request's kind: a URL reqwest cannot build is bad input; a connection refused
    /// or reset, a timeout, a body cut short is [`ErrorKind::Unavailable`] (retryable).
    fn send_kind(e: &reqwest::Error) -> ErrorKind {
        if e.is_builder() {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Unavailable
        }
    }

    /// An answer's kind by its status: 5xx, 408 and 429 are [`ErrorKind::Unavailable`]
    /// (Prometheus overloaded, restarting, or a query it timed out); another 4xx is a query
    /// Prometheus rejects (bad PromQL, `bad_data`), [`ErrorKind::InvalidInput`], not
    /// retryable; a success whose body is not Prometheus's is [`ErrorKind::Corrupt`].
    fn status_kind(status: reqwest::StatusCode) -> ErrorKind {
        use reqwest::StatusCode;
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            ErrorKind::Unavailable
        } else if status.is_client_error() {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Corrupt
        }
    }

    /// A PromQL string literal.
    fn quoted(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    impl PrometheusSource {
        /// A source querying the Prometheus at `base_url` (`http://host:9090`), with a
        /// 10-second deadline per query.
        pub fn new(base_url: &str) -> Result<Self> {
            let base = base_url.trim_end_matches('/').to_string();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(Error::invalid(
                    "Prometheus URL",
                    format!("{base_url:?}"),
                    "an http:// or https:// URL",
                ));
            }
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| source_error(ErrorKind::Internal, "client", e))?;
            Ok(PrometheusSource { base, client })
        }

        /// An instant query's vector: each series' labels and value.
        async fn query(
            &self,
            promql: &str,
            at_unix: f64,
        ) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
            let url = format!("{}/api/v1/query", self.base);
            let response = self
                .client
                .get(&url)
                .query(&[
                    ("query", promql.to_string()),
                    ("time", format!("{at_unix:.3}")),
                ])
                .send()
                .await
                .map_err(|e| source_error(send_kind(&e), &format!("query {promql:?}"), e))?;
            let status = response.status();
            let body: Value = response.json().await.map_err(|e| {
                let kind = if e.is_decode() {
                    status_kind(status)
                } else {
                    ErrorKind::Unavailable
                };
                source_error(kind, &format!("response ({status})"), e)
            })?;
            if !status.is_success() || body["status"] != "success" {
                return Err(source_error(
                    status_kind(status),
                    &format!("query {promql:?}"),
                    format!("{status}: {}", body["error"]),
                ));
            }
            let result = body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(result
                .iter()
                .filter_map(|series| {
                    let labels = series["metric"]
                        .as_object()?
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect();
                    let value: f64 = series["value"].get(1)?.as_str()?.parse().ok()?;
                    Some((labels, value))
                })
                .collect())
        }

        /// `sum by (variant) (increase(COUNTER_total{model=M}[W]))` as variant → count, for a
        /// counter named in [`names`].
        async fn per_variant(
            &self,
            counter: &str,
            model: &str,
            window: &str,
            at: f64,
        ) -> Result<BTreeMap<String, f64>> {
            let q = format!(
                "sum by (variant) (increase({counter}_total{{model={}}}[{window}]))",
                quoted(model)
            );
            Ok(self
                .query(&q, at)
                .await?
                .into_iter()
                .filter_map(|(labels, v)| Some((labels.get("variant")?.clone(), v)))
                .collect())
        }
    }

    #[async_trait]
    impl MetricsSource for PrometheusSource {
        async fn snapshot(
            &self,
            model: &str,
            router: &Router,
            start: f64,
            now: f64,
        ) -> Result<StepSnapshot> {
            let window = format!("{}s", ((now - start).ceil() as i64).max(1));
            let count = |m: &BTreeMap<String, f64>, v: &str| {
                m.get(v).map_or(0, |x| x.max(0.0).round() as u64)
            };
            let requests = self
                .per_variant(names::REQUESTS, model, &window, now)
                .await?;
            let predictions = self
                .per_variant(names::PREDICTIONS, model, &window, now)
                .await?;
            let errors = self.per_variant(names::ERRORS, model, &window, now).await?;
            let rejected = self
                .per_variant(names::REJECTED, model, &window, now)
                .await?;
            let compared = self
                .per_variant(names::SHADOW_COMPARED, model, &window, now)
                .await?;
            let agreed = self
                .per_variant(names::SHADOW_AGREED, model, &window, now)
                .await?;
            let mut quantiles = BTreeMap::new();
            for q in [0.5f64, 0.99] {
                let promql = format!(
                    "histogram_quantile({q}, sum by (variant, le) (increase({}_bucket{{model={}}}[{window}])))",
                    names::LATENCY_SECONDS,
                    quoted(model)
                );
                for (labels, v) in self.query(&promql, now).await? {
                    if let (Some(variant), true) = (labels.get("variant"), v.is_finite()) {
                        quantiles.insert((variant.clone(), q.to_bits()), v * 1e3);
                    }
                }
            }
            // Labeled rows: per variant, label and bucket, the step's count.
            let promql = format!(
                "sum by (variant, label, le) (increase({}_bucket{{model={}}}[{window}]))",
                names::LABELED_SCORE,
                quoted(model)
            );
            let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
            for (labels, v) in self.query(&promql, now).await? {
                let (Some(variant), Some(label), Some(le)) =
                    (labels.get("variant"), labels.get("label"), labels.get("le"))
                else {
                    continue;
                };
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                buckets
                    .entry((variant.clone(), label.clone()))
                    .or_default()
                    .push((le, v.max(0.0)));
            }
            let width = 1.0 / f64::from(LABELED_SCORE_BUCKETS);
            let variants = router
                .routes()
                .variants
                .iter()
                .map(|v| {
                    let name = v.name.as_str();
                    let mut s = VariantSnapshot::empty(name);
                    s.version = v.version;
                    s.threshold = v.predictor.threshold();
                    s.requests = count(&requests, name);
                    s.errors = count(&errors, name);
                    s.rejected = count(&rejected, name);
                    s.rows = count(&predictions, name);
                    s.shadow_compared = count(&compared, name);
                    s.shadow_agreed = count(&agreed, name);
                    s.latency_p50_ms = quantiles
                        .get(&(name.to_string(), 0.5f64.to_bits()))
                        .copied();
                    s.latency_p99_ms = quantiles
                        .get(&(name.to_string(), 0.99f64.to_bits()))
                        .copied();
                    // Per label and bucket, the step's rows; bounded, in proportion, so a
                    // long step (or a wrong answer) cannot allocate without limit.
                    let mut rows: Vec<(bool, f64, f64)> = Vec::new();
                    for label in ["0", "1"] {
                        let Some(cumulative) =
                            buckets.get_mut(&(name.to_string(), label.to_string()))
                        else {
                            continue;
                        };
                        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let mut below = 0.0;
                        for &(le, c) in cumulative.iter() {
                            let n = if c.is_finite() {
                                (c - below).max(0.0)
                            } else {
                                0.0
                            };
                            if c.is_finite() {
                                below = f64::max(below, c);
                            }
                            let middle = if le.is_finite() {
                                (le - width / 2.0).clamp(0.0, 1.0)
                            } else {
                                1.0
                            };
                            rows.push((label == "1", middle, n.round()));
                        }
                    }
                    let total: f64 = rows.iter().map(|r| r.2).sum();
                    let keep = if total > MAX_LABELED_ROWS as f64 {
                        MAX_LABELED_ROWS as f64 / total
                    } else {
                        1.0
                    };
                    let mut kept = 0u64;
                    for (label, middle, n) in rows {
                        let n = (n * keep).floor() as usize;
                        kept += n as u64;
                        s.labels.extend(std::iter::repeat_n(label, n));
                        s.label_scores.extend(std::iter::repeat_n(middle, n));
                    }
                    s.labeled_dropped = (total as u64).saturating_sub(kept);
                    s
                })
                .collect();
            Ok(StepSnapshot { variants })
        }
    }
}
