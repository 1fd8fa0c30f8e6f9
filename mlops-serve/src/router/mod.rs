//! The traffic router: stable, canary, N-way A/B arms and a shadow, each a model with a
//! weight.
//!
//! - **Sticky**: a request with a key goes to the arm owning `xxh3(key) mod 10,000`; arms own
//!   consecutive bucket ranges in the order listed ([`Routes::weights`]), the canary first, so
//!   ramping the canary up never moves a user back to stable and a rollback returns users in
//!   the reverse order. Requests without a key are spread by weight.
//! - **Forced**: [`Request::force`] names a variant (a header or tag override).
//! - **Shadow**: a share of requests is also scored by the shadow model on a background
//!   thread through a bounded queue; full queue, errors and panics are counted and never touch
//!   the primary response.
//! - **Atomic switches**: [`Router::install`] swaps the whole table; a request reads one table
//!   from start to end, so no request is lost or served by two variants during a switch.
//! - **Statistics**: each table carries its own per-variant statistics, so the current step's
//!   numbers ([`Router::snapshot`]) were all measured at the step's weights; labels posted
//!   with [`Router::feedback`] join by request id.
//!
//! ```
//! use std::sync::Arc;
//! use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
//! use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
//! use mlops_serve::{CompiledModel, NonFinitePolicy};
//! use ndarray::array;
//!
//! let model = |w: f32| -> Result<Arc<CompiledModel>, mlops_core::Error> {
//!     let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
//!     let a = ModelArtifact::new(spec, vec![(array![[w]], array![0.0_f32])])?;
//!     Ok(Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject)?))
//! };
//! let routes = Routes {
//!     variants: vec![Variant::new("canary", Some(2), model(2.0)?), Variant::new("stable", Some(1), model(1.0)?)],
//!     weights: vec![("canary".into(), 10.0), ("stable".into(), 90.0)],
//!     shadow: None,
//! };
//! let router = Router::new("fraud", routes, RouterOptions::default())?;
//! let mut p = [0.0_f32];
//! let first = router.route(&Request::keyed("user-42"), array![[0.5_f32]].view(), &mut p)?;
//! let again = router.route(&Request::keyed("user-42"), array![[0.5_f32]].view(), &mut p)?;
//! assert_eq!(first.variant, again.variant); // sticky
//! let forced = router.route(&Request { force: Some("canary"), ..Request::default() }, array![[0.5_f32]].view(), &mut p)?;
//! assert_eq!(&*forced.variant, "canary");
//! # Ok::<(), mlops_serve::Error>(())
//! ```

mod routes;
mod shadow;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mlops_core::clock::{Clock, SystemClock};
use mlops_core::metrics::ScoredSamples;
use mlops_core::model::Predictor;
use ndarray::ArrayView2;
use xxhash_rust::xxh3::xxh3_64;

pub(crate) use routes::buckets_of as routes_percent_check;
pub use routes::{Routes, ShadowRoute, Variant, BUCKETS};

use crate::step_stats::{
    Answer, GroupNames, JoinDrop, LabelJoin, RawGroups, StatsConfig, StepSnapshot, VariantStats,
};
use crate::telemetry::{ServeMetrics, VariantHandles};
use crate::ticker::{InstantTicker, Ticker};
use crate::{Error, Result};

/// One request's routing inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The sticky key (a user or session id): the same key goes to the same arm while the
    /// weights do not move it.
    pub key: Option<&'a str>,
    /// A variant to use whatever the weights (a header or tag override).
    pub force: Option<&'a str>,
    /// The id labels will be posted back under ([`Router::feedback`]).
    pub request_id: Option<&'a str>,
    /// The request's sensitive group, kept with its labeled rows for the `fairness` canary
    /// check (the V2 server takes it from a request parameter). A
    /// [`StatsConfig::group_feature`](crate::step_stats::StatsConfig::group_feature), when
    /// named, gives each row's group instead.
    pub group: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with a sticky key.
    pub fn keyed(key: &'a str) -> Self {
        Request {
            key: Some(key),
            ..Request::default()
        }
    }
}

/// A [`Request`] kept past its borrow (the batcher and the servers hold it while the request
/// waits for its batch).
#[cfg(feature = "batch")]
#[derive(Debug, Default)]
pub(crate) struct OwnedRequest {
    pub(crate) key: Option<String>,
    pub(crate) force: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) group: Option<String>,
}

#[cfg(feature = "batch")]
impl OwnedRequest {
    pub(crate) fn of(r: &Request<'_>) -> Self {
        OwnedRequest {
            key: r.key.map(str::to_owned),
            force: r.force.map(str::to_owned),
            request_id: r.request_id.map(str::to_owned),
            group: r.group.map(str::to_owned),
        }
    }

    pub(crate) fn request(&self) -> Request<'_> {
        Request {
            key: self.key.as_deref(),
            force: self.force.as_deref(),
            request_id: self.request_id.as_deref(),
            group: self.group.as_deref(),
        }
    }
}

/// Where a request went.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The variant that answered.
    pub variant: Arc<str>,
    /// Its model version, when known.
    pub version: Option<u64>,
    /// Its decision threshold (a row is positive when its probability is `>=` it).
    pub threshold: f32,
}

/// The router's settings as written (TOML or JSON, or in code); [`RouterConfig::check`] turns
/// them into the [`CheckedRouterConfig`] a [`Router`] is built with.
///
/// ```
/// use mlops_serve::router::RouterConfig;
///
/// let config: RouterConfig = serde_json::from_str(r#"{"shadow_queue": 64, "stats": {"score_reservoir": 500}}"#)?;
/// assert_eq!((config.shadow_queue, config.stats.score_reservoir), (64, 500));
/// assert!(serde_json::from_str::<RouterConfig>(r#"{"queue": 64}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Memory bounds of the statistics and the label join.
    pub stats: StatsConfig,
    /// Mirrored requests waiting for the shadow model; more are dropped and counted.
    pub shadow_queue: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            stats: StatsConfig::default(),
            shadow_queue: 1024,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`RouterConfig`] (see [`RouterConfig::check`]): what [`RouterOptions`]
    /// carries. Read its fields through `Deref`.
    ///
    /// ```
    /// use mlops_serve::router::{CheckedRouterConfig, RouterConfig};
    ///
    /// let config = RouterConfig { shadow_queue: 16, ..RouterConfig::default() }.check()?;
    /// assert_eq!(config.shadow_queue, 16);
    /// assert_eq!(CheckedRouterConfig::default().config(), &RouterConfig::default());
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct CheckedRouterConfig(RouterConfig);
}

impl Default for CheckedRouterConfig {
    /// [`RouterConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedRouterConfig {
            config: RouterConfig::default(),
        }
    }
}

impl RouterConfig {
    /// Checks every field (the statistics' bounds, the shadow queue) and returns the checked
    /// config; an error names the field, its value and what was expected.
    ///
    /// ```
    /// use mlops_serve::router::RouterConfig;
    ///
    /// let e = RouterConfig { shadow_queue: 0, ..RouterConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().contains("RouterConfig.shadow_queue = 0"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedRouterConfig> {
        self.stats.validate()?;
        if self.shadow_queue == 0 {
            return Err(Error::invalid("RouterConfig.shadow_queue", 0, "at least 1"));
        }
        Ok(CheckedRouterConfig { config: self })
    }
}

/// What a router is built with besides its routes.
#[derive(Clone)]
pub struct RouterOptions {
    /// Settings, checked ([`RouterConfig::check`]).
    pub config: CheckedRouterConfig,
    /// Metric families (registered in the host's registry, or unregistered).
    pub metrics: ServeMetrics,
    /// Wall time, for the label join's time-to-live.
    pub clock: Arc<dyn Clock>,
    /// Latency time.
    pub ticker: Arc<dyn Ticker>,
    /// Where every scored row and every label post is logged (feature `predlog`; `None`, the
    /// default: nothing is logged). Recording copies the rows into the log's bounded buffer
    /// and never fails a request or waits for the writer.
    #[cfg(feature = "predlog")]
    pub prediction_log: Option<crate::predlog::PredictionLog>,
    /// The live monitor fed every scored request and every joined label post (feature
    /// `monitor`; `None`, the default: nothing is monitored). Recording copies the rows into
    /// the monitor's bounded buffer and never fails a request or waits for the monitor.
    #[cfg(feature = "monitor")]
    pub monitor: Option<crate::monitor::LiveMonitor>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            config: CheckedRouterConfig::default(),
            metrics: ServeMetrics::unregistered(),
            clock: Arc::new(SystemClock),
            ticker: Arc::new(InstantTicker::default()),
            #[cfg(feature = "predlog")]
            prediction_log: None,
            #[cfg(feature = "monitor")]
            monitor: None,
        }
    }
}

/// A variant in a table.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) name: Arc<str>,
    pub(crate) version: Option<u64>,
    pub(crate) predictor: Arc<dyn Predictor>,
    pub(crate) threshold: f32,
    /// Shared by the tables of one step ([`Router::reweight`] keeps it; [`Router::install`]
    /// starts new ones).
    pub(crate) stats: Arc<VariantStats>,
    pub(crate) handles: VariantHandles,
    /// The predictor's feature names, shared with every logged or monitored row.
    #[cfg(any(feature = "predlog", feature = "monitor"))]
    pub(crate) feature_names: Arc<[String]>,
}

impl Slot {
    /// One scoring call of this variant, recorded once: its metric handles (requests,
    /// latency, and rows, rejections or errors) and the step's statistics together. The one
    /// place a request is counted, for live traffic and the shadow alike.
    pub(crate) fn record(&self, elapsed_ns: u64, answer: Answer<'_>) {
        self.handles.requests.inc();
        self.handles.latency.observe(elapsed_ns as f64 / 1e9);
        match answer {
            Answer::Scored(out) => {
                self.handles.predictions.inc_by(out.len() as u64);
            }
            Answer::Rejected => {
                self.handles.rejected.inc();
            }
            Answer::Failed => {
                self.handles.errors.inc();
            }
        }
        self.stats.record(elapsed_ns, answer);
    }
}

/// A route table: what one step routes by, and its statistics.
pub(crate) struct Table {
    pub(crate) slots: Vec<Slot>,
    arm_variant: Vec<usize>,
    arm_upper: Vec<u32>,
    pub(crate) shadow: Option<(usize, u32)>,
    pub(crate) n_features: usize,
    /// The input whose value is each row's sensitive group ([`StatsConfig::group_feature`]).
    group_feature: Option<usize>,
    /// The step's sensitive group names (a new step, a new table: a group no longer seen
    /// gives its place back).
    groups: Arc<GroupNames>,
    routes: Routes,
    generation: u64,
}

impl Table {
    fn arm(&self, bucket: u32) -> usize {
        let i = self.arm_upper.partition_point(|&upper| upper <= bucket);
        self.arm_variant[i.min(self.arm_variant.len() - 1)]
    }
}

/// The router (see the module docs).
pub struct Router {
    model: Arc<str>,
    table: ArcSwap<Table>,
    /// Labeled rows refused a group (every step's table counts here).
    group_overflow: Arc<AtomicU64>,
    join: LabelJoin,
    shadow: shadow::Shadow,
    /// The prediction log and the live monitor of the options, fed each scored request.
    observers: shadow::Observers,
    options: RouterOptions,
    spread: AtomicU64,
    generation: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("model", &self.model)
            .field("routes", &self.table.load().routes)
            .finish_non_exhaustive()
    }
}

/// The sticky bucket of `key`.
pub fn bucket_of(key: &str) -> u32 {
    (xxh3_64(key.as_bytes()) % u64::from(BUCKETS)) as u32
}

impl Router {
    /// A router for `model` with `routes` (checked: unique names, shared features, percents
    /// of whole buckets summing to 100, a shadow without live traffic).
    pub fn new(model: &str, routes: Routes, options: RouterOptions) -> Result<Self> {
        let metrics = &options.metrics;
        let join_drops = JoinDrop::ALL.map(|d| metrics.label_dropped(model, d.as_str()));
        let join = LabelJoin::new(&options.config.stats, options.clock.clone(), join_drops)?;
        let observers = shadow::Observers {
            #[cfg(any(feature = "predlog", feature = "monitor"))]
            model: model.into(),
            #[cfg(feature = "predlog")]
            log: options.prediction_log.clone(),
            #[cfg(feature = "monitor")]
            monitor: options.monitor.clone(),
        };
        let shadow = shadow::Shadow::start(
            options.config.shadow_queue,
            options.ticker.clone(),
            shadow::Drops {
                queue_full: metrics.shadow_dropped(model, "queue_full"),
                error: metrics.shadow_dropped(model, "error"),
                panic: metrics.shadow_dropped(model, "panic"),
            },
            observers.clone(),
        )
        .map_err(|cause| {
            Error::Core(mlops_core::Error::Io {
                action: "starting thread",
                path: "mlops-shadow".into(),
                cause,
            })
        })?;
        let group_overflow = Arc::new(AtomicU64::new(0));
        let table = Self::build(model, routes, &options, 1, &group_overflow)?;
        Ok(Router {
            model: model.into(),
            table: ArcSwap::from_pointee(table),
            group_overflow,
            join,
            shadow,
            observers,
            options,
            spread: AtomicU64::new(0),
            generation: AtomicU64::new(1),
        })
    }

    fn build(
        model: &str,
        routes: Routes,
        options: &RouterOptions,
        generation: u64,
        group_overflow: &Arc<AtomicU64>,
    ) -> Result<Table> {
        let checked = routes::check(&routes)?;
        let metrics = &options.metrics;
        let slots = routes
            .variants
            .iter()
            .map(|v| Slot {
                name: v.name.as_str().into(),
                version: v.version,
                threshold: v.predictor.threshold(),
                predictor: v.predictor.clone(),
                stats: Arc::new(VariantStats::new(&options.config.stats)),
                handles: metrics.variant_handles(model, v.version, &v.name),
                #[cfg(any(feature = "predlog", feature = "monitor"))]
                feature_names: v.predictor.feature_names().into(),
            })
            .collect::<Vec<_>>();
        for v in &routes.variants {
            let weight = routes
                .weights
                .iter()
                .find(|(n, _)| *n == v.name)
                .map_or(0.0, |(_, p)| *p);
            metrics.set_weight(model, &v.name, weight);
            let mirrored = routes
                .shadow
                .as_ref()
                .filter(|s| s.variant == v.name)
                .map_or(0.0, |s| s.percent);
            metrics.set_shadow_fraction(model, &v.name, mirrored);
        }
        let group_feature = match &options.config.stats.group_feature {
            None => None,
            Some(name) => {
                let names = routes.variants[0].predictor.feature_names();
                Some(names.iter().position(|n| n == name).ok_or_else(|| {
                    Error::invalid(
                        "StatsConfig.group_feature",
                        format!("{name:?}"),
                        format!("one of the model's inputs {names:?}"),
                    )
                })?)
            }
        };
        Ok(Table {
            group_feature,
            groups: Arc::new(GroupNames::new(
                options.config.stats.max_groups,
                group_overflow.clone(),
            )),
            n_features: routes.variants[0].predictor.n_features(),
            slots,
            arm_variant: checked.arm_variant,
            arm_upper: checked.arm_upper,
            shadow: checked.shadow,
            routes,
            generation,
        })
    }

    /// The model this router serves.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Installs new routes atomically and starts a new step: requests in flight finish on
    /// the table they started on; later ones see only the new one, with empty statistics.
    pub fn install(&self, routes: Routes) -> Result<()> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let table = Self::build(
            &self.model,
            routes,
            &self.options,
            generation,
            &self.group_overflow,
        )?;
        self.table.store(Arc::new(table));
        tracing::debug!(model = %self.model, generation, "routes installed");
        Ok(())
    }

    /// Moves traffic between the variants in force to `weights` (checked as
    /// [`Router::install`] checks them) **without** starting a new step: every variant keeps
    /// its statistics, so the current step's window goes on across the change (what an
    /// experiment replica needs when another replica's decision moves the weights before its
    /// own window is handed in). Requests in flight finish on the table they started on.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
    /// # use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
    /// # use mlops_serve::{CompiledModel, NonFinitePolicy};
    /// # use ndarray::array;
    /// # let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
    /// # let a = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])])?;
    /// # let m = Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject)?);
    /// let routes = Routes {
    ///     variants: vec![Variant::new("a", Some(1), m.clone()), Variant::new("b", Some(2), m)],
    ///     weights: vec![("a".into(), 50.0), ("b".into(), 50.0)],
    ///     shadow: None,
    /// };
    /// let router = Router::new("fraud", routes, RouterOptions::default())?;
    /// let mut p = [0.0_f32];
    /// router.route(&Request::keyed("user-1"), array![[0.5_f32]].view(), &mut p)?;
    /// router.reweight(vec![("a".into(), 10.0), ("b".into(), 90.0)])?;
    /// let requests: u64 = router.snapshot().variants.iter().map(|v| v.requests).sum();
    /// assert_eq!(requests, 1); // the step's statistics are kept
    /// assert_eq!(router.routes().weights[1].1, 90.0);
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    pub fn reweight(&self, weights: Vec<(String, f64)>) -> Result<()> {
        loop {
            let old = self.table.load_full();
            let routes = Routes {
                weights: weights.clone(),
                ..old.routes.clone()
            };
            let checked = routes::check(&routes)?;
            // The same slots, statistics included (`Slot::stats` is shared).
            let slots = old.slots.clone();
            let table = Arc::new(Table {
                slots,
                arm_variant: checked.arm_variant,
                arm_upper: checked.arm_upper,
                shadow: checked.shadow,
                n_features: old.n_features,
                group_feature: old.group_feature,
                groups: old.groups.clone(),
                routes,
                generation: old.generation,
            });
            // Only over the table it was built from: an install in between wins, and the
            // weights are applied to it on the next turn.
            let previous = self.table.compare_and_swap(&old, table.clone());
            if Arc::ptr_eq(&previous, &old) {
                for v in &table.routes.variants {
                    let weight = weights
                        .iter()
                        .find(|(n, _)| *n == v.name)
                        .map_or(0.0, |(_, p)| *p);
                    self.options
                        .metrics
                        .set_weight(&self.model, &v.name, weight);
                }
                tracing::debug!(model = %self.model, "routes reweighted");
                return Ok(());
            }
        }
    }

    /// The routes in force.
    pub fn routes(&self) -> Routes {
        self.table.load().routes.clone()
    }

    /// The number of features every variant takes (read without copying the routes: the
    /// request path asks it on every request).
    pub fn n_features(&self) -> usize {
        self.table.load().n_features
    }

    /// How many tables were installed (1 for the first); changes on every [`Router::install`].
    pub fn generation(&self) -> u64 {
        self.table.load().generation
    }

    /// Scores `x` with the variant the request is routed to, into `out` (one probability per
    /// row). Errors before routing (wrong width, wrong `out` length, an unknown forced
    /// variant) are the caller's and count against no variant. The model refusing the input
    /// (an `InvalidValue`: its non-finite policy `reject`) is counted as rejected, not as an
    /// error of the variant; any other error of the model counts against its variant. Both are
    /// returned.
    pub fn route(
        &self,
        request: &Request<'_>,
        x: ArrayView2<'_, f32>,
        out: &mut [f32],
    ) -> Result<Routed> {
        let table = self.table.load();
        mlops_core::model::check_batch(table.n_features, x, out)?;
        let index = self.pick(&table, request)?;
        let ticker = &self.options.ticker;
        let start = ticker.now_ns();
        let result = table.slots[index].predictor.predict_proba_into(x, out);
        let elapsed = ticker.now_ns().saturating_sub(start);
        self.finish(&table, index, request, x, out, elapsed, result)
    }

    /// The table requests are routed by now (held by a request from start to end).
    #[cfg(feature = "batch")]
    pub(crate) fn current(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// The metric families of the options.
    #[cfg(feature = "batch")]
    pub(crate) fn metrics(&self) -> &ServeMetrics {
        &self.options.metrics
    }

    /// The latency clock of the options.
    #[cfg(feature = "batch")]
    pub(crate) fn ticker(&self) -> &Arc<dyn Ticker> {
        &self.options.ticker
    }

    /// The slot of `table` that `request` goes to: the forced variant, else the arm owning the
    /// key's bucket, else one spread by weight.
    pub(crate) fn pick(&self, table: &Table, request: &Request<'_>) -> Result<usize> {
        Ok(match request.force {
            Some(name) => table
                .slots
                .iter()
                .position(|s| &*s.name == name)
                .ok_or_else(|| {
                    Error::invalid(
                        "forced variant",
                        format!("{name:?}"),
                        format!(
                            "one of {:?}",
                            table.slots.iter().map(|s| &*s.name).collect::<Vec<_>>()
                        ),
                    )
                })?,
            None => {
                let bucket = match request.key {
                    Some(key) => bucket_of(key),
                    None => {
                        let n = self.spread.fetch_add(1, Ordering::Relaxed);
                        (xxh3_64(&n.to_le_bytes()) % u64::from(BUCKETS)) as u32
                    }
                };
                table.arm(bucket)
            }
        })
    }

    /// Everything after the model scored (or refused) one request's rows `x` into `out` with
    /// slot `index` of `table`, in `elapsed_ns`: its variant's metrics and statistics, the
    /// prediction log and the live monitor, the label join and the shadow. The one place a
    /// request routed live is accounted, scored alone ([`Router::route`]) or in a batch
    /// ([`crate::batch::Batcher`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        &self,
        table: &Arc<Table>,
        index: usize,
        request: &Request<'_>,
        x: ArrayView2<'_, f32>,
        out: &[f32],
        elapsed: u64,
        result: mlops_core::Result<()>,
    ) -> Result<Routed> {
        let slot = &table.slots[index];
        if let Err(e) = result {
            let answer = match e {
                mlops_core::Error::InvalidValue(_) => Answer::Rejected,
                _ => Answer::Failed,
            };
            slot.record(elapsed, answer);
            return Err(e.into());
        }
        slot.record(elapsed, Answer::Scored(out));
        // To the prediction log and the live monitor (each counts what it drops); the
        // request is answered either way.
        self.observers
            .observe(slot, request.request_id, x, out, "request");
        if let Some(id) = request.request_id {
            // Kept as they came; interned into the step's table when labels join.
            let groups = match (table.group_feature, request.group) {
                (Some(j), _) => Some(RawGroups::Rows(x.column(j).iter().copied().collect())),
                (None, Some(g)) => Some(RawGroups::Request(g.into())),
                (None, None) => None,
            };
            self.join
                .insert(id, slot.name.clone(), slot.version, out.to_vec(), groups);
        }
        let routed = Routed {
            variant: slot.name.clone(),
            version: slot.version,
            threshold: slot.threshold,
        };
        if let Some((_, share)) = table.shadow {
            let n = self.spread.fetch_add(1, Ordering::Relaxed);
            let mirrored = request.force.is_none()
                && ((xxh3_64(&n.to_le_bytes()) >> 17) % u64::from(BUCKETS)) < u64::from(share);
            if mirrored {
                let primary = out.iter().map(|&p| p >= routed.threshold).collect();
                self.shadow.offer(shadow::Job {
                    table: table.clone(),
                    rows: x.nrows(),
                    x: x.iter().copied().collect(),
                    primary,
                });
            }
        }
        Ok(routed)
    }

    /// Posts the labels (0 or 1, one per row) of request `request_id`. `Ok(true)` when they
    /// joined its predictions; `Ok(false)` (counted) when nothing waits under that id: never
    /// seen, expired, outside the join's sample, or already labeled. Labels that are not 0 or 1, or whose count
    /// is not the request's row count, are an error and leave the request waiting.
    pub fn feedback(&self, request_id: &str, labels: &[f64]) -> Result<bool> {
        let parsed = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| match l {
                0.0 => Ok(false),
                1.0 => Ok(true),
                other => Err(Error::invalid(
                    format!("labels[{i}] of request {request_id:?}"),
                    other,
                    "0 or 1",
                )),
            })
            .collect::<Result<Vec<bool>>>()?;
        // Checked against the waiting request before it is taken: a rejected post (a wrong
        // count, `[]`) leaves the predictions waiting for the corrected one.
        let taken = self.join.take(request_id, parsed.len());
        // Logged whether or not they join here (the log is joined again by whoever reads it),
        // unless the count is wrong and the post is refused.
        #[cfg(feature = "predlog")]
        if let (Some(log), false) = (&self.options.prediction_log, taken.is_err()) {
            if let Err(e) = log.record_labels(&self.model, request_id, labels) {
                tracing::warn!(model = %self.model, error = %e, "prediction log: labels not recorded");
            }
        }
        let pending = match taken {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(false),
            Err(rows) => {
                return Err(Error::invalid(
                    format!("labels of request {request_id:?}"),
                    format!("{} labels", parsed.len()),
                    format!("{rows} labels, one per row it was scored on"),
                ))
            }
        };
        let table = self.table.load();
        match table
            .slots
            .iter()
            .find(|s| s.name == pending.variant && s.version == pending.version)
        {
            Some(slot) => {
                let groups = pending
                    .groups
                    .as_ref()
                    .map(|g| table.groups.indices(g, parsed.len()));
                match slot
                    .stats
                    .record_labels(&parsed, &pending.scores, groups.as_deref())
                {
                    None => self.join.count(JoinDrop::Full, parsed.len() as u64),
                    Some((_, unscored)) => self.join.count(JoinDrop::Unscored, unscored),
                }
                for (&label, &score) in parsed.iter().zip(&pending.scores) {
                    if score.is_finite() {
                        slot.handles.labeled[usize::from(label)].observe(f64::from(score));
                    }
                }
                #[cfg(feature = "monitor")]
                if let Some(monitor) = &self.options.monitor {
                    let groups = groups.as_ref().map(|g| table.groups.names_of(g));
                    monitor.record_labels(
                        &self.model,
                        slot.version,
                        slot.threshold,
                        &parsed,
                        &pending.scores,
                        groups.as_deref(),
                    );
                }
            }
            // The variant (or its version) left the table before its labels came: they would
            // judge another model.
            None => self.join.count(JoinDrop::Unknown, 1),
        }
        Ok(true)
    }

    /// Mirrored requests queued for the shadow or being scored by it (0 when idle).
    pub fn shadow_backlog(&self) -> u64 {
        self.shadow.backlog()
    }

    /// Blocks this thread until the shadow backlog is below `seen` or `timeout` passes, and
    /// returns the backlog then: woken by the shadow worker as it finishes each request (it
    /// runs on its own thread, so a caller on any executor is never waiting on itself).
    pub fn wait_shadow_below(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        self.shadow.wait_below(seen, timeout)
    }

    /// Labeled rows whose sensitive group was new when the step's table of groups was full
    /// ([`StatsConfig::max_groups`](crate::step_stats::StatsConfig::max_groups)), or no valid
    /// group name ([`group_name_problem`](crate::step_stats::group_name_problem)): labeled
    /// without a group.
    pub fn group_overflow(&self) -> u64 {
        self.group_overflow.load(Ordering::Relaxed)
    }

    /// Requests waiting for labels.
    pub fn awaiting_labels(&self) -> usize {
        self.join.waiting()
    }

    /// Bytes the requests waiting for labels are counted as (a fixed amount per request and
    /// its scores; ids are kept as hashes), bounded by
    /// [`StatsConfig::label_join_bytes`](crate::step_stats::StatsConfig).
    pub fn awaiting_label_bytes(&self) -> usize {
        self.join.waiting_bytes()
    }

    /// The share of requests the label join keeps: 1 until it has been full, then a uniform
    /// sample of requests by a hash of their ids, the same share for every variant (see
    /// [`StatsConfig::label_join_capacity`](crate::step_stats::StatsConfig)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
    /// use mlops_serve::router::{Request, Router, RouterConfig, RouterOptions, Routes, Variant};
    /// use mlops_serve::step_stats::StatsConfig;
    /// use mlops_serve::{CompiledModel, NonFinitePolicy};
    /// use ndarray::array;
    ///
    /// let spec = ModelSpec::new(vec!["x".into()], vec![LayerSpec::new(1, Activation::Sigmoid)]);
    /// let a = ModelArtifact::new(spec, vec![(array![[1.0_f32]], array![0.0_f32])])?;
    /// let model = Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject)?);
    /// let routes = Routes {
    ///     variants: vec![Variant::new("stable", Some(1), model)],
    ///     weights: vec![("stable".into(), 100.0)],
    ///     shadow: None,
    /// };
    /// let stats = StatsConfig { label_join_capacity: 100, ..StatsConfig::default() };
    /// let config = RouterConfig { stats, ..RouterConfig::default() }.check()?;
    /// let router = Router::new("fraud", routes, RouterOptions { config, ..RouterOptions::default() })?;
    /// let mut p = [0.0_f32];
    /// for i in 0..1_000 {
    ///     let id = format!("request-{i}");
    ///     let request = Request { request_id: Some(&id), ..Request::default() };
    ///     router.route(&request, array![[0.5_f32]].view(), &mut p)?;
    /// }
    /// assert!(router.awaiting_labels() <= 100);
    /// assert!(router.label_sample_share() < 0.2);
    /// # Ok::<(), mlops_serve::Error>(())
    /// ```
    pub fn label_sample_share(&self) -> f64 {
        self.join.share()
    }

    /// Every variant's statistics over the current step; also sets the live accuracy and
    /// ROC AUC gauges (NaN while unknown).
    pub fn snapshot(&self) -> StepSnapshot {
        let table = self.table.load();
        let mut variants: Vec<_> = table
            .slots
            .iter()
            .map(|s| s.stats.snapshot(&s.name, s.version, s.threshold))
            .collect();
        // Read after the rows: the table only grows, so every index the rows hold is named.
        let group_names = table.groups.names();
        for v in variants.iter_mut().filter(|v| !v.label_groups.is_empty()) {
            v.group_names = group_names.clone();
        }
        for v in &variants {
            let labels: Vec<f64> = v.labels.iter().map(|&l| f64::from(u8::from(l))).collect();
            let (accuracy, auc) = match ScoredSamples::new(&labels, &v.label_scores, None) {
                Ok(s) => (
                    s.confusion(f64::from(v.threshold)).accuracy(),
                    s.roc_auc().unwrap_or(f64::NAN),
                ),
                Err(_) => (f64::NAN, f64::NAN),
            };
            self.options
                .metrics
                .set_live(&self.model, &v.variant, accuracy, auc);
        }
        StepSnapshot { variants }
    }
}
