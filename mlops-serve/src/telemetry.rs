//! Serving's Prometheus metrics, registered in the host's `prometheus-client` registry beside
//! drift's (`mlops_core::exposition::classic_text` writes them all for a scrape).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mlops_serve_requests_total` | counter | model, version, variant |
//! | `mlops_serve_predictions_total` (rows scored) | counter | model, version, variant |
//! | `mlops_serve_errors_total` (the model failed) | counter | model, version, variant |
//! | `mlops_serve_rejected_total` (the model refused the input as invalid) | counter | model, version, variant |
//! | `mlops_serve_latency_seconds` | histogram | model, variant |
//! | `mlops_serve_labeled_score` (probability of labeled rows, 0.02 buckets) | histogram | model, variant, label |
//! | `mlops_serve_shadow_compared_total`, `mlops_serve_shadow_agreed_total` | counter | model, variant |
//! | `mlops_serve_traffic_weight` (percent of live traffic) | gauge | model, variant |
//! | `mlops_serve_shadow_fraction` (percent of requests mirrored) | gauge | model, variant |
//! | `mlops_serve_rollout_step` (index into the steps; -1 none, -2 shadow phase) | gauge | model |
//! | `mlops_serve_promotions_total` | counter | model |
//! | `mlops_serve_rollbacks_total` | counter | model |
//! | `mlops_serve_controller_errors_total` (failed controller ticks: source, store, metrics, model, routes, state) | counter | model, kind |
//! | `mlops_serve_shadow_dropped_total` (queue_full, error, panic) | counter | model, reason |
//! | `mlops_serve_label_join_dropped_total` (expired, evicted, sampled, duplicate, unknown, full, unscored) | counter | model, reason |
//! | `mlops_serve_live_accuracy`, `mlops_serve_live_roc_auc` (NaN: unknown) | gauge | model, variant |
//! | `mlops_serve_batch_rows` (rows per model call of the batcher, feature `batch`) | histogram | model |
//! | `mlops_serve_batch_fallbacks_total` (batches whose call failed, their requests scored alone) | counter | model |
//! | `mlops_serve_batch_queued_rows` (rows waiting for a batch) | gauge | model |
//!
//! The names are defined once, in [`names`]. The prediction log's counters (feature
//! `predlog`: `mlops_serve_log_dropped_total`, `mlops_serve_log_rows_total`,
//! `mlops_serve_log_files_total`) are its own, registered by `predlog::LogMetrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    model: String,
    version: String,
    variant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VariantLabels {
    model: String,
    variant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LabeledLabels {
    model: String,
    variant: String,
    label: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    model: String,
    kind: String,
}

/// What failed in a rollout controller's tick (the `kind` label of
/// `mlops_serve_controller_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerErrorKind {
    /// The model source: reading an alias, loading a version, moving an alias.
    Source,
    /// The rollout store: loading or writing the state.
    Store,
    /// The metrics source (Prometheus) the step's statistics come from.
    Metrics,
    /// Turning a loaded version into a predictor (the loader, the engine).
    Model,
    /// Installing routes in the router.
    Routes,
    /// A stored rollout state that cannot be used (another model's).
    State,
}

impl ControllerErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ControllerErrorKind; 6] = [
        ControllerErrorKind::Source,
        ControllerErrorKind::Store,
        ControllerErrorKind::Metrics,
        ControllerErrorKind::Model,
        ControllerErrorKind::Routes,
        ControllerErrorKind::State,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerErrorKind::Source => "source",
            ControllerErrorKind::Store => "store",
            ControllerErrorKind::Metrics => "metrics",
            ControllerErrorKind::Model => "model",
            ControllerErrorKind::Routes => "routes",
            ControllerErrorKind::State => "state",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    model: String,
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Buckets of a labeled row's predicted probability: 0.02 wide, so the step's ROC AUC and
/// accuracy can be recomputed from Prometheus across replicas (to about a bucket's width).
pub const LABELED_SCORE_BUCKETS: u16 = 50;

fn score_histogram() -> Histogram {
    Histogram::new(
        (1..=LABELED_SCORE_BUCKETS).map(|i| f64::from(i) / f64::from(LABELED_SCORE_BUCKETS)),
    )
}

fn batch_rows_histogram() -> Histogram {
    // 1 to 65,536 rows, doubling.
    Histogram::new(exponential_buckets(1.0, 2.0, 17))
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 3.3 s, doubling.
    Histogram::new(exponential_buckets(50e-6, 2.0, 17))
}

/// Every metric's name, as registered: the one spelling the families, the Prometheus source's
/// PromQL (`rollout::PrometheusSource`) and anything else that reads them use. A counter is
/// exposed with `_total` appended (`mlops_serve_requests_total`), a histogram as its `_bucket`,
/// `_sum` and `_count` series; the alert rules and dashboard under `deploy/` are checked
/// against the exposition by `tests/deploy.rs`.
///
/// ```
/// use mlops_serve::telemetry::{names, ServeMetrics};
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// ServeMetrics::register(&mut registry).record_promotion("fraud");
/// let text = mlops_core::exposition::classic_text(&registry)?;
/// assert!(text.contains(&format!("{}_total{{model=\"fraud\"}} 1", names::PROMOTIONS)));
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub mod names {
    /// Requests answered or failed (counter: model, version, variant).
    pub const REQUESTS: &str = "mlops_serve_requests";
    /// Rows scored (counter: model, version, variant).
    pub const PREDICTIONS: &str = "mlops_serve_predictions";
    /// Requests the model failed (counter: model, version, variant).
    pub const ERRORS: &str = "mlops_serve_errors";
    /// Requests the model refused as invalid input (counter: model, version, variant).
    pub const REJECTED: &str = "mlops_serve_rejected";
    /// Request latency in the model (histogram: model, variant).
    pub const LATENCY_SECONDS: &str = "mlops_serve_latency_seconds";
    /// Probability of rows whose labels came back, 0.02 buckets (histogram: model, variant,
    /// label).
    pub const LABELED_SCORE: &str = "mlops_serve_labeled_score";
    /// Rows a shadow scored beside the primary (counter: model, variant).
    pub const SHADOW_COMPARED: &str = "mlops_serve_shadow_compared";
    /// Rows where the shadow's label equalled the primary's (counter: model, variant).
    pub const SHADOW_AGREED: &str = "mlops_serve_shadow_agreed";
    /// Percent of live traffic routed to a variant (gauge: model, variant).
    pub const TRAFFIC_WEIGHT: &str = "mlops_serve_traffic_weight";
    /// Percent of requests mirrored to a shadow (gauge: model, variant).
    pub const SHADOW_FRACTION: &str = "mlops_serve_shadow_fraction";
    /// Index of the rollout's current step, -1 none, -2 shadow phase (gauge: model).
    pub const ROLLOUT_STEP: &str = "mlops_serve_rollout_step";
    /// Rollouts that promoted their candidate (counter: model).
    pub const PROMOTIONS: &str = "mlops_serve_promotions";
    /// Rollouts that rolled their candidate back (counter: model).
    pub const ROLLBACKS: &str = "mlops_serve_rollbacks";
    /// Failed controller ticks, by what failed (counter: model, kind).
    pub const CONTROLLER_ERRORS: &str = "mlops_serve_controller_errors";
    /// Shadow requests not completed (counter: model, reason).
    pub const SHADOW_DROPPED: &str = "mlops_serve_shadow_dropped";
    /// Label feedback not joined (counter: model, reason).
    pub const LABEL_JOIN_DROPPED: &str = "mlops_serve_label_join_dropped";
    /// Accuracy on the current step's labeled feedback, NaN unknown (gauge: model, variant).
    pub const LIVE_ACCURACY: &str = "mlops_serve_live_accuracy";
    /// ROC AUC on the current step's labeled feedback, NaN unknown (gauge: model, variant).
    pub const LIVE_ROC_AUC: &str = "mlops_serve_live_roc_auc";
    /// Rows per model call of the batcher (histogram: model).
    pub const BATCH_ROWS: &str = "mlops_serve_batch_rows";
    /// Batches whose model call failed, their requests scored again alone (counter: model).
    pub const BATCH_FALLBACKS: &str = "mlops_serve_batch_fallbacks";
    /// Rows waiting for a batch (gauge: model).
    pub const BATCH_QUEUED_ROWS: &str = "mlops_serve_batch_queued_rows";

    /// Every name above, in registration order.
    pub const ALL: [&str; 21] = [
        REQUESTS,
        PREDICTIONS,
        ERRORS,
        REJECTED,
        LATENCY_SECONDS,
        LABELED_SCORE,
        SHADOW_COMPARED,
        SHADOW_AGREED,
        TRAFFIC_WEIGHT,
        SHADOW_FRACTION,
        ROLLOUT_STEP,
        PROMOTIONS,
        ROLLBACKS,
        CONTROLLER_ERRORS,
        SHADOW_DROPPED,
        LABEL_JOIN_DROPPED,
        LIVE_ACCURACY,
        LIVE_ROC_AUC,
        BATCH_ROWS,
        BATCH_FALLBACKS,
        BATCH_QUEUED_ROWS,
    ];
}

/// Serving's metric families (see the module docs). Cloning shares them.
///
/// ```
/// use mlops_serve::telemetry::ServeMetrics;
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let metrics = ServeMetrics::register(&mut registry);
/// metrics.record_promotion("fraud");
/// let text = mlops_core::exposition::classic_text(&registry)?;
/// assert!(text.contains("mlops_serve_promotions_total{model=\"fraud\"} 1"));
/// # Ok::<(), mlops_serve::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServeMetrics {
    requests: Family<VersionLabels, Counter>,
    predictions: Family<VersionLabels, Counter>,
    errors: Family<VersionLabels, Counter>,
    rejected: Family<VersionLabels, Counter>,
    latency: Family<VariantLabels, Histogram, fn() -> Histogram>,
    labeled_score: Family<LabeledLabels, Histogram, fn() -> Histogram>,
    shadow_compared: Family<VariantLabels, Counter>,
    shadow_agreed: Family<VariantLabels, Counter>,
    weight: Family<VariantLabels, FloatGauge>,
    shadow_fraction: Family<VariantLabels, FloatGauge>,
    rollout_step: Family<ModelLabels, Gauge>,
    promotions: Family<ModelLabels, Counter>,
    rollbacks: Family<ModelLabels, Counter>,
    controller_errors: Family<KindLabels, Counter>,
    shadow_dropped: Family<ReasonLabels, Counter>,
    label_dropped: Family<ReasonLabels, Counter>,
    live_accuracy: Family<VariantLabels, FloatGauge>,
    live_auc: Family<VariantLabels, FloatGauge>,
    batch_rows: Family<ModelLabels, Histogram, fn() -> Histogram>,
    batch_fallbacks: Family<ModelLabels, Counter>,
    batch_queued: Family<ModelLabels, Gauge>,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        ServeMetrics {
            requests: Family::default(),
            predictions: Family::default(),
            errors: Family::default(),
            rejected: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            labeled_score: Family::new_with_constructor(score_histogram),
            shadow_compared: Family::default(),
            shadow_agreed: Family::default(),
            weight: Family::default(),
            shadow_fraction: Family::default(),
            rollout_step: Family::default(),
            promotions: Family::default(),
            rollbacks: Family::default(),
            controller_errors: Family::default(),
            shadow_dropped: Family::default(),
            label_dropped: Family::default(),
            live_accuracy: Family::default(),
            live_auc: Family::default(),
            batch_rows: Family::new_with_constructor(batch_rows_histogram),
            batch_fallbacks: Family::default(),
            batch_queued: Family::default(),
        }
    }
}

/// One variant's request-path handles, resolved once per route table (no label lookup per
/// request).
#[derive(Debug, Clone)]
pub(crate) struct VariantHandles {
    pub(crate) requests: Counter,
    pub(crate) predictions: Counter,
    pub(crate) errors: Counter,
    pub(crate) rejected: Counter,
    pub(crate) latency: Histogram,
    /// Probabilities of labeled rows, by label (0, 1).
    pub(crate) labeled: [Histogram; 2],
    pub(crate) shadow_compared: Counter,
    pub(crate) shadow_agreed: Counter,
}

impl ServeMetrics {
    /// Families not registered anywhere (the router counts; nothing is exported).
    pub fn unregistered() -> Self {
        Self::default()
    }

    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            names::REQUESTS,
            "Requests answered or failed, per model version and variant",
            m.requests.clone(),
        );
        registry.register(
            names::PREDICTIONS,
            "Rows scored, per model version and variant",
            m.predictions.clone(),
        );
        registry.register(
            names::ERRORS,
            "Requests that failed, per model version and variant",
            m.errors.clone(),
        );
        registry.register(
            names::REJECTED,
            "Requests the model refused as invalid input, per model version and variant",
            m.rejected.clone(),
        );
        registry.register(
            names::LATENCY_SECONDS,
            "Request latency in the model, per variant",
            m.latency.clone(),
        );
        registry.register(
            names::LABELED_SCORE,
            "Predicted probability of rows whose labels came back, per variant and label",
            m.labeled_score.clone(),
        );
        registry.register(
            names::SHADOW_COMPARED,
            "Rows a shadow scored beside the primary",
            m.shadow_compared.clone(),
        );
        registry.register(
            names::SHADOW_AGREED,
            "Rows where the shadow's label equalled the primary's",
            m.shadow_agreed.clone(),
        );
        registry.register(
            names::TRAFFIC_WEIGHT,
            "Percent of live traffic routed to a variant",
            m.weight.clone(),
        );
        registry.register(
            names::SHADOW_FRACTION,
            "Percent of requests mirrored to a shadow variant",
            m.shadow_fraction.clone(),
        );
        registry.register(
            names::ROLLOUT_STEP,
            "Index of the rollout's current step (-1 no rollout, -2 shadow phase)",
            m.rollout_step.clone(),
        );
        registry.register(
            names::PROMOTIONS,
            "Rollouts that promoted their candidate",
            m.promotions.clone(),
        );
        registry.register(
            names::ROLLBACKS,
            "Rollouts that rolled their candidate back",
            m.rollbacks.clone(),
        );
        registry.register(
            names::CONTROLLER_ERRORS,
            "Rollout controller ticks that failed, by what failed (source, store, metrics, model, routes, state)",
            m.controller_errors.clone(),
        );
        registry.register(
            names::SHADOW_DROPPED,
            "Shadow requests not completed (queue_full, error, panic); the primary was unaffected",
            m.shadow_dropped.clone(),
        );
        registry.register(
            names::LABEL_JOIN_DROPPED,
            "Label feedback not joined (expired, evicted, sampled, duplicate, unknown, full, unscored)",
            m.label_dropped.clone(),
        );
        registry.register(
            names::LIVE_ACCURACY,
            "Accuracy on the current step's labeled feedback (NaN: unknown)",
            m.live_accuracy.clone(),
        );
        registry.register(
            names::LIVE_ROC_AUC,
            "ROC AUC on the current step's labeled feedback (NaN: unknown)",
            m.live_auc.clone(),
        );
        registry.register(
            names::BATCH_ROWS,
            "Rows per model call of the batcher",
            m.batch_rows.clone(),
        );
        registry.register(
            names::BATCH_FALLBACKS,
            "Batches whose model call failed, their requests scored again alone",
            m.batch_fallbacks.clone(),
        );
        registry.register(
            names::BATCH_QUEUED_ROWS,
            "Rows waiting for a batch",
            m.batch_queued.clone(),
        );
        m
    }

    /// The batcher's queued-rows gauge of `model`.
    #[cfg_attr(not(feature = "batch"), allow(dead_code))]
    pub(crate) fn batch_queued(&self, model: &str) -> Gauge {
        self.batch_queued
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .clone()
    }

    /// The batcher's rows-per-call histogram of `model`.
    #[cfg_attr(not(feature = "batch"), allow(dead_code))]
    pub(crate) fn batch_rows(&self, model: &str) -> Histogram {
        self.batch_rows
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .clone()
    }

    /// The batcher's fallback counter of `model`.
    #[cfg_attr(not(feature = "batch"), allow(dead_code))]
    pub(crate) fn batch_fallbacks(&self, model: &str) -> Counter {
        self.batch_fallbacks
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .clone()
    }

    pub(crate) fn variant_handles(
        &self,
        model: &str,
        version: Option<u64>,
        variant: &str,
    ) -> VariantHandles {
        let labels = VersionLabels {
            model: model.to_string(),
            version: version.map_or_else(|| "unknown".to_string(), |v| v.to_string()),
            variant: variant.to_string(),
        };
        VariantHandles {
            requests: self.requests.get_or_create(&labels).clone(),
            predictions: self.predictions.get_or_create(&labels).clone(),
            errors: self.errors.get_or_create(&labels).clone(),
            rejected: self.rejected.get_or_create(&labels).clone(),
            latency: self
                .latency
                .get_or_create(&VariantLabels {
                    model: model.to_string(),
                    variant: variant.to_string(),
                })
                .clone(),
            labeled: ["0", "1"].map(|label| {
                self.labeled_score
                    .get_or_create(&LabeledLabels {
                        model: model.to_string(),
                        variant: variant.to_string(),
                        label: label.to_string(),
                    })
                    .clone()
            }),
            shadow_compared: self
                .shadow_compared
                .get_or_create(&Self::variant(model, variant))
                .clone(),
            shadow_agreed: self
                .shadow_agreed
                .get_or_create(&Self::variant(model, variant))
                .clone(),
        }
    }

    fn variant(model: &str, variant: &str) -> VariantLabels {
        VariantLabels {
            model: model.to_string(),
            variant: variant.to_string(),
        }
    }

    fn reason(model: &str, reason: &str) -> ReasonLabels {
        ReasonLabels {
            model: model.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn set_weight(&self, model: &str, variant: &str, percent: f64) {
        self.weight
            .get_or_create(&Self::variant(model, variant))
            .set(percent);
    }

    pub(crate) fn set_shadow_fraction(&self, model: &str, variant: &str, percent: f64) {
        self.shadow_fraction
            .get_or_create(&Self::variant(model, variant))
            .set(percent);
    }

    pub(crate) fn shadow_dropped(&self, model: &str, reason: &str) -> Counter {
        self.shadow_dropped
            .get_or_create(&Self::reason(model, reason))
            .clone()
    }

    pub(crate) fn label_dropped(&self, model: &str, reason: &str) -> Counter {
        self.label_dropped
            .get_or_create(&Self::reason(model, reason))
            .clone()
    }

    pub(crate) fn set_live(&self, model: &str, variant: &str, accuracy: f64, auc: f64) {
        let labels = Self::variant(model, variant);
        self.live_accuracy.get_or_create(&labels).set(accuracy);
        self.live_auc.get_or_create(&labels).set(auc);
    }

    /// Creates `model`'s rollout series at zero (promotions, rollbacks, controller errors of
    /// every kind; step -1), so rules and dashboards see them before the first event.
    pub fn init_model(&self, model: &str) {
        let labels = ModelLabels {
            model: model.to_string(),
        };
        self.promotions.get_or_create(&labels).inc_by(0);
        self.rollbacks.get_or_create(&labels).inc_by(0);
        self.rollout_step.get_or_create(&labels).set(-1);
        for kind in ControllerErrorKind::ALL {
            self.controller_errors
                .get_or_create(&Self::kind(model, kind))
                .inc_by(0);
        }
    }

    fn kind(model: &str, kind: ControllerErrorKind) -> KindLabels {
        KindLabels {
            model: model.to_string(),
            kind: kind.as_str().to_string(),
        }
    }

    /// Counts a failed controller tick of `model` by what failed.
    pub fn record_controller_error(&self, model: &str, kind: ControllerErrorKind) {
        self.controller_errors
            .get_or_create(&Self::kind(model, kind))
            .inc();
    }

    /// Sets the rollout-step gauge of `model` (-1: no rollout; -2: the shadow phase).
    pub fn set_rollout_step(&self, model: &str, step: i64) {
        self.rollout_step
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .set(step);
    }

    /// Counts a promotion of `model`'s candidate.
    pub fn record_promotion(&self, model: &str) {
        self.promotions
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .inc();
    }

    /// Counts a rollback of `model`'s candidate.
    pub fn record_rollback(&self, model: &str) {
        self.rollbacks
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_under_a_name_from_names() {
        let mut registry = Registry::default();
        let m = ServeMetrics::register(&mut registry);
        // One series in every family (an empty family is not exposed).
        m.variant_handles("fraud", Some(1), "stable");
        m.set_weight("fraud", "stable", 100.0);
        m.set_shadow_fraction("fraud", "stable", 0.0);
        m.shadow_dropped("fraud", "queue_full");
        m.label_dropped("fraud", "expired");
        m.set_live("fraud", "stable", 0.5, 0.5);
        m.init_model("fraud");
        m.batch_rows("fraud");
        m.batch_fallbacks("fraud");
        m.batch_queued("fraud");
        // OpenMetrics types a family by its registered name (no `_total`).
        let text = mlops_core::exposition::openmetrics_text(&registry).unwrap();
        let registered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(registered, names::ALL, "{text}");
    }
}
