//! Promotion at scale: two server replicas on 127.0.0.1 scraped every second by a real
//! Prometheus (Debian's `prometheus`, started here with a generated config and stopped by its
//! PID), labeled traffic over HTTP at both, and one rollout in a shared store advanced by
//! exactly one of the two controllers from Prometheus's aggregated numbers, with both
//! replicas following its weights.

#[cfg(feature = "http")]
#[cfg(feature = "prometheus")]
mod at_scale {
    use std::net::TcpListener as StdListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mlops_core::clock::SystemClock;
    use mlops_serve::analysis::Check;
    use mlops_serve::http::{app, serve, ServerConfig};
    use mlops_serve::policy::PromotionConfig;
    use mlops_serve::rollout::{
        compiling, Controller, ControllerParts, DecisionKind, Phase, PrometheusSource, Tick,
    };
    use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
    use mlops_serve::source::ModelSource;
    use mlops_serve::telemetry::ServeMetrics;
    use mlops_serve::NonFinitePolicy;
    use serde_json::{json, Value};

    use crate::support::{world, MODEL};

    /// The server, and its folder (kept until the server is stopped).
    struct Prometheus(Child, #[allow(dead_code)] tempfile::TempDir);

    impl Drop for Prometheus {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start_prometheus(targets: &[u16]) -> (Prometheus, String) {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mlops\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let program = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&program)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running `{program}` ({e}); scripts/test.sh installs Debian's prometheus, or set PROMETHEUS"));
        (Prometheus(child, dir), format!("http://127.0.0.1:{port}"))
    }

    struct Replica {
        router: Arc<Router>,
        controller: Controller,
        url: String,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_rollout_two_replicas_one_controller_acts_from_prometheus() {
        let w = world(0.4, 1.0);
        let config = PromotionConfig {
            steps: vec![50.0, 100.0],
            bake_time_seconds: 6.0,
            min_requests: 100,
            checks: vec![
                Check::ErrorRate {
                    max_increase: 0.0,
                    confidence: 0.95,
                },
                Check::RocAuc {
                    max_decrease: 0.02,
                    confidence: 0.95,
                    min_labeled: 100,
                },
            ],
            ..PromotionConfig::default()
        }
        .check()
        .unwrap();
        let mut replicas = Vec::new();
        let mut ports = Vec::new();
        let (prometheus, prom_url) = {
            // Bind the replicas first so the scrape config can name their ports.
            let mut listeners = Vec::new();
            for _ in 0..2 {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ports.push(l.local_addr().unwrap().port());
                listeners.push(l);
            }
            let (p, url) = start_prometheus(&ports);
            for listener in listeners {
                let mut registry = prometheus_client::registry::Registry::default();
                let metrics = ServeMetrics::register(&mut registry);
                let stable =
                    compiling(NonFinitePolicy::Reject)(1, &w.source.load(MODEL, 1).await.unwrap())
                        .unwrap();
                let router = Arc::new(
                    Router::new(
                        MODEL,
                        Routes::single(Variant::new("stable", Some(1), stable)),
                        RouterOptions {
                            metrics: metrics.clone(),
                            ..RouterOptions::default()
                        },
                    )
                    .unwrap(),
                );
                let controller = Controller::new(ControllerParts {
                    model: MODEL.into(),
                    config: config.clone(),
                    store: w.store.clone(),
                    source: w.source.clone(),
                    clock: Arc::new(SystemClock),
                    metrics,
                    loader: compiling(NonFinitePolicy::Reject),
                })
                .unwrap()
                .with_metrics_source(Arc::new(PrometheusSource::new(&url).unwrap()));
                let application = app(
                    MODEL,
                    router.clone(),
                    Some(Arc::new(registry)),
                    ServerConfig::default().check().unwrap(),
                )
                .unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                tokio::spawn(serve(listener, application, std::future::pending()));
                replicas.push(Replica {
                    router,
                    controller,
                    url,
                });
            }
            (p, url)
        };
        let client = reqwest::Client::new();
        // Prometheus up and scraping both targets.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up: Value = match client
                .get(format!("{prom_url}/api/v1/query?query=up"))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let targets_up = up["data"]["result"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|s| s["value"][1] == "1").count());
            if targets_up == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never scraped both replicas: {up}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        w.start_canary(2);
        let data = w.traffic(4096);
        let labels = data.labels().unwrap().clone();
        let (mut acted, mut lost, mut sent) = ([0usize; 2], 0usize, 0usize);
        let mut canary_answers = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (a, b) = tokio::join!(
                replicas[0].controller.tick(&replicas[0].router),
                replicas[1].controller.tick(&replicas[1].router)
            );
            for (i, t) in [a.unwrap(), b.unwrap()].into_iter().enumerate() {
                match t {
                    Tick::Acted(_) => acted[i] += 1,
                    Tick::Lost => lost += 1,
                    _ => {}
                }
            }
            // Both replicas route by the stored state's weights.
            assert_eq!(
                replicas[0].router.routes().weights,
                replicas[1].router.routes().weights
            );
            let state = replicas[0].controller.state().await.unwrap();
            if state
                .as_ref()
                .is_some_and(|s| s.state.phase.is_terminal() && s.state.aliases_settled)
            {
                break;
            }
            assert!(Instant::now() < deadline, "no decision: {state:#?}");
            // A second of labeled traffic at both replicas, over HTTP.
            for _ in 0..150 {
                for (r, replica) in replicas.iter().enumerate() {
                    let row = sent % data.n_rows();
                    let id = format!("{r}-{sent}");
                    sent += 1;
                    let x: Vec<f32> = data.features().row(row).to_vec();
                    let body = json!({"id": id, "inputs": [{"name": "input", "shape": [1, x.len()], "datatype": "FP32", "data": x}]});
                    let response: Value = client
                        .post(format!("{}/v2/models/{MODEL}/infer", replica.url))
                        .header("mlops-request-key", format!("user-{}", sent % 997))
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    if response["parameters"]["variant"] == "canary" {
                        canary_answers[r] += 1;
                    }
                    let labeled = json!({"id": id, "labels": [labels[row]]});
                    client
                        .post(format!("{}/v2/models/{MODEL}/labels", replica.url))
                        .json(&labeled)
                        .send()
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let s = replicas[0].controller.state().await.unwrap().unwrap().state;
        assert_eq!(s.phase, Phase::Promoted, "{:#?}", s.decisions);
        // Start at 50%, then the promotion; Prometheus's scrapes run on the wall clock, so a
        // step analyzed before enough samples were scraped may be extended first (never held
        // or rolled back: the candidate is better).
        let kinds: Vec<_> = s.decisions.iter().map(|d| (d.kind, d.to_percent)).collect();
        let (first, rest) = kinds.split_first().unwrap();
        let (last, middle) = rest.split_last().unwrap();
        assert_eq!(
            (*first, *last),
            ((DecisionKind::Start, 50.0), (DecisionKind::Promote, 100.0)),
            "{:#?}",
            s.decisions
        );
        assert!(
            middle.iter().all(|&k| k == (DecisionKind::Extend, 50.0)),
            "{:#?}",
            s.decisions
        );
        assert_eq!(
            acted[0] + acted[1],
            s.decisions.len(),
            "one act per decision: {acted:?}"
        );
        assert!(lost >= 1, "the controllers raced: lost {lost}");
        // The decision read both replicas' requests, not one replica's.
        let promote = s.decisions.last().unwrap();
        let n = promote.candidate.as_ref().unwrap().requests as usize;
        let most = *canary_answers.iter().max().unwrap();
        assert!(
            n > most,
            "aggregated canary requests {n} vs the busiest replica's {most} ({canary_answers:?})"
        );
        let auc = promote
            .checks
            .iter()
            .find(|c| c.check == "roc_auc")
            .unwrap();
        assert!(auc.n_candidate >= 100 && auc.n_stable >= 100, "{auc:?}");
        for r in &replicas {
            assert_eq!(r.router.routes().variants[0].version, Some(2));
        }
        assert_eq!(w.source.alias(MODEL, "production").await.unwrap(), Some(2));
        drop(prometheus);
    }
}

// What a plain `cargo test -p mlops-serve` leaves out, said in its output.
#[cfg(not(feature = "http"))]
#[test]
#[ignore = "left out: promotion across two replicas through a real Prometheus, and PrometheusSource against InProcess through a fake one; run with --features http (the workspace test does)"]
fn one_rollout_two_replicas_one_controller_acts_from_prometheus() {}

#[cfg(not(feature = "prometheus"))]
#[test]
#[ignore = "left out: the same two suites need PrometheusSource; run with --features prometheus (mlops/prometheus in the workspace test)"]
fn prometheus_source_suites_need_the_prometheus_client() {}

// `PrometheusSource` against `InProcess` on the same traffic, exactly: a fake Prometheus
// answers the source's PromQL from the router's own exposition (counter increases since the
// step began, Prometheus's `histogram_quantile` interpolation), so the two snapshots of one
// step must agree — counts exactly, quantiles and labeled scores within one histogram
// bucket. (A real Prometheus extrapolates `increase` to the window's edges, so its counts
// are not exact; `prometheus_rollout.rs` runs a rollout through a real one.)

#[cfg(feature = "http")]
#[cfg(feature = "prometheus")]
mod fake_prometheus {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use axum::extract::{Query, State};
    use axum::Json;
    use mlops_core::model::Predictor;
    use mlops_serve::replay::{ServiceProfile, SimulatedService, Synthetic};
    use mlops_serve::rollout::{InProcess, MetricsSource, PrometheusSource};
    use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
    use mlops_serve::step_stats::VariantSnapshot;
    use mlops_serve::telemetry::ServeMetrics;
    use mlops_serve::ticker::ManualTicker;
    use mlops_serve::{CompiledModel, NonFinitePolicy};
    use prometheus_client::registry::Registry;
    use serde_json::{json, Value};

    const MODEL: &str = "fraud";

    type Series = (String, BTreeMap<String, String>, f64);

    /// The samples of a classic text exposition: name, labels, value.
    fn parse(text: &str) -> Vec<Series> {
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap(),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let end = after.find('"').unwrap();
                map.insert(
                    key.trim_start_matches(',').to_string(),
                    after[..end].to_string(),
                );
                rest = &after[end + 1..];
            }
            out.push((name.to_string(), map, value));
        }
        out
    }

    /// Prometheus's `histogram_quantile` on one group's cumulative buckets.
    fn histogram_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.len() < 2 || buckets.last().unwrap().0 != f64::INFINITY {
            return f64::NAN;
        }
        let total = buckets.last().unwrap().1;
        let rank = q * total;
        let n = buckets.len();
        let b = buckets[..n - 1]
            .iter()
            .position(|&(_, c)| c >= rank)
            .unwrap_or(n - 1);
        if b == n - 1 {
            return buckets[n - 2].0;
        }
        let (end, mut count) = buckets[b];
        let (mut start, mut rank) = (0.0, rank);
        if b > 0 {
            start = buckets[b - 1].0;
            count -= buckets[b - 1].1;
            rank -= buckets[b - 1].1;
        }
        start + (end - start) * (rank / count)
    }

    /// The fake: the registry's samples when the step began, and the registry itself.
    struct Fake {
        registry: Registry,
        baseline: Vec<Series>,
    }

    impl Fake {
        fn now(&self) -> Vec<Series> {
            parse(&mlops_core::exposition::classic_text(&self.registry).unwrap())
        }

        /// `sum by (LABELS) (increase(NAME{model="M"}[W]))`, every group's increase since the
        /// step began.
        fn grouped(&self, inner: &str) -> BTreeMap<Vec<String>, f64> {
            let by = inner
                .strip_prefix("sum by (")
                .and_then(|s| s.split_once(')'))
                .unwrap()
                .0;
            let by: Vec<&str> = by.split(',').map(str::trim).collect();
            let name = inner.split_once("increase(").unwrap().1;
            let (name, rest) = name.split_once('{').unwrap();
            let model = rest
                .strip_prefix("model=\"")
                .and_then(|s| s.split_once('"'))
                .unwrap()
                .0;
            let before: HashMap<(String, BTreeMap<String, String>), f64> = self
                .baseline
                .iter()
                .map(|(n, l, v)| ((n.clone(), l.clone()), *v))
                .collect();
            let mut groups = BTreeMap::new();
            for (n, labels, v) in self.now() {
                if n != name || labels.get("model").map(String::as_str) != Some(model) {
                    continue;
                }
                let was = before
                    .get(&(n.clone(), labels.clone()))
                    .copied()
                    .unwrap_or(0.0);
                let key = by
                    .iter()
                    .map(|l| labels.get(*l).cloned().unwrap_or_default())
                    .collect();
                *groups.entry(key).or_insert(0.0) += v - was;
            }
            groups
        }

        fn answer(&self, query: &str) -> Value {
            let vector: Vec<(BTreeMap<String, String>, f64)> =
                if let Some(rest) = query.strip_prefix("histogram_quantile(") {
                    let (q, inner) = rest.split_once(", ").unwrap();
                    let q: f64 = q.parse().unwrap();
                    // Grouped by (variant, le): one histogram per variant.
                    let mut per: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
                    for (key, v) in self.grouped(inner) {
                        let le = if key[1] == "+Inf" {
                            f64::INFINITY
                        } else {
                            key[1].parse().unwrap()
                        };
                        per.entry(key[0].clone()).or_default().push((le, v));
                    }
                    per.into_iter()
                        .map(|(variant, b)| {
                            (
                                BTreeMap::from([("variant".to_string(), variant)]),
                                histogram_quantile(q, b),
                            )
                        })
                        .collect()
                } else {
                    let by = query
                        .strip_prefix("sum by (")
                        .and_then(|s| s.split_once(')'))
                        .unwrap()
                        .0;
                    let by: Vec<String> = by.split(',').map(|s| s.trim().to_string()).collect();
                    self.grouped(query)
                        .into_iter()
                        .map(|(key, v)| (by.iter().cloned().zip(key).collect(), v))
                        .collect()
                };
            let result: Vec<Value> = vector
                .into_iter()
                .map(|(labels, v)| json!({"metric": labels, "value": [0.0, v.to_string()]}))
                .collect();
            json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        }
    }

    async fn query(
        State(fake): State<Arc<Fake>>,
        Query(params): Query<HashMap<String, String>>,
    ) -> Json<Value> {
        Json(fake.answer(&params["query"]))
    }

    /// The latency histogram's buckets (seconds), as `telemetry.rs` defines them: 50 µs
    /// doubling, 17 of them.
    fn latency_bucket(ms: f64) -> usize {
        (0..17)
            .position(|k| ms / 1e3 <= 50e-6 * 2f64.powi(k))
            .unwrap_or(17)
    }

    fn routes(w: &Synthetic, ticker: &Arc<ManualTicker>) -> Routes {
        let variant = |name: &str, version: u64, quality: f32, profile: ServiceProfile| {
            let compiled: Arc<dyn Predictor> = Arc::new(
                CompiledModel::compile(
                    &w.model(quality, version).unwrap(),
                    NonFinitePolicy::Reject,
                )
                .unwrap(),
            );
            let service = SimulatedService::new(compiled, ticker.clone(), profile).unwrap();
            Variant::new(name, Some(version), Arc::new(service) as Arc<dyn Predictor>)
        };
        Routes {
            variants: vec![
                // The canary: slower, sometimes failing.
                variant(
                    "canary",
                    2,
                    1.0,
                    ServiceProfile {
                        median_ms: 4.0,
                        sigma: 1.0,
                        error_rate: 0.05,
                        seed: 2,
                    },
                ),
                variant(
                    "stable",
                    1,
                    0.5,
                    ServiceProfile {
                        median_ms: 1.0,
                        sigma: 1.0,
                        error_rate: 0.0,
                        seed: 1,
                    },
                ),
            ],
            weights: vec![("canary".into(), 30.0), ("stable".into(), 70.0)],
            shadow: None,
        }
    }

    /// Sends `n` requests of 1 to 3 rows (every 17th with a NaN: rejected), labels posted for
    /// every other one.
    fn traffic(router: &Router, w: &Synthetic, n: usize, seed: u64) {
        let data = w.traffic(4096, seed).unwrap();
        let labels = data.labels().unwrap().clone();
        let mut out = [0.0_f32; 3];
        for i in 0..n {
            let rows = 1 + i % 3;
            let start = (i * 3) % (data.n_rows() - 3);
            let mut x = data
                .features()
                .slice(ndarray::s![start..start + rows, ..])
                .to_owned();
            if i % 17 == 0 {
                x[[0, 0]] = f32::NAN;
            }
            let id = format!("{seed}-{i}");
            let key = format!("user-{i}");
            let request = Request {
                key: Some(&key),
                force: None,
                request_id: Some(&id),
                group: None,
            };
            if router.route(&request, x.view(), &mut out[..rows]).is_ok() && i % 2 == 0 {
                let y: Vec<f64> = (start..start + rows)
                    .map(|r| f64::from(labels[r]))
                    .collect();
                router.feedback(&id, &y).unwrap();
            }
        }
    }

    fn compare(prom: &VariantSnapshot, exact: &VariantSnapshot) {
        let name = &exact.variant;
        // Counts: exact.
        assert_eq!(
            (prom.requests, prom.rows, prom.errors, prom.rejected),
            (exact.requests, exact.rows, exact.errors, exact.rejected),
            "{name}: requests, rows, errors, rejected"
        );
        assert!(
            exact.rows > exact.requests,
            "{name}: batches of several rows"
        );
        assert!(exact.errors > 0 || name == "stable", "{name}: {exact:?}");
        assert!(exact.rejected > 0, "{name}: {exact:?}");
        // Quantiles: in the histogram bucket of the exact value, or the next one.
        for (q, p, e) in [
            ("p50", prom.latency_p50_ms, exact.latency_p50_ms),
            ("p99", prom.latency_p99_ms, exact.latency_p99_ms),
        ] {
            let (p, e) = (p.unwrap(), e.unwrap());
            assert!(
                latency_bucket(p).abs_diff(latency_bucket(e)) <= 1,
                "{name} {q}: Prometheus {p} ms, in process {e} ms"
            );
        }
        // The p99 is not the p50: three buckets apart at sigma 1.
        assert!(
            latency_bucket(exact.latency_p99_ms.unwrap())
                >= latency_bucket(exact.latency_p50_ms.unwrap()) + 2
        );
        // Labeled rows: as many of each class, each score within one 0.02 bucket.
        for class in [false, true] {
            let scores = |v: &VariantSnapshot| {
                let mut s: Vec<f64> = v
                    .labels
                    .iter()
                    .zip(&v.label_scores)
                    .filter(|(l, _)| **l == class)
                    .map(|(_, s)| *s)
                    .collect();
                s.sort_by(f64::total_cmp);
                s
            };
            let (p, e) = (scores(prom), scores(exact));
            assert_eq!(p.len(), e.len(), "{name}: labeled rows of class {class}");
            assert!(!e.is_empty(), "{name}: labeled rows of class {class}");
            for (a, b) in p.iter().zip(&e) {
                assert!(
                    (a - b).abs() <= 0.02 + 1e-9,
                    "{name}: score {b} read as {a}"
                );
            }
        }
    }

    /// A router of `routes` whose metrics the fake answers for, served on 127.0.0.1: traffic
    /// before the step (in the counters, not in the step's increase), then the routes
    /// installed again (the step begins). The router, the synthetic world and the fake's URL.
    async fn router_beside_the_fake() -> (Router, Synthetic, String) {
        let w = Synthetic::new(6, 11);
        let ticker = Arc::new(ManualTicker::default());
        let mut registry = Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let router = Router::new(
            MODEL,
            routes(&w, &ticker),
            RouterOptions {
                metrics,
                ticker: ticker.clone(),
                ..RouterOptions::default()
            },
        )
        .unwrap();
        traffic(&router, &w, 600, 1);
        let baseline = parse(&mlops_core::exposition::classic_text(&registry).unwrap());
        router.install(routes(&w, &ticker)).unwrap();
        // The fake reads the registry when asked: the step's traffic may come after it.
        let fake = Arc::new(Fake { registry, baseline });
        let app = axum::Router::new()
            .route("/api/v1/query", axum::routing::get(query))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (router, w, url)
    }

    /// Issue 22 item 20: reading p50 for `latency_p99`, or counting requests as rows, passed
    /// every test. Here the Prometheus source and the in-process statistics of one step of
    /// one router must agree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prometheus_source_reads_the_same_step_as_in_process() {
        let (router, w, url) = router_beside_the_fake().await;
        traffic(&router, &w, 6000, 2);
        let source = PrometheusSource::new(&url).unwrap();
        let prom = source
            .snapshot(MODEL, &router, 1000.0, 1600.0)
            .await
            .unwrap();
        let exact = InProcess
            .snapshot(MODEL, &router, 1000.0, 1600.0)
            .await
            .unwrap();
        assert_eq!(prom.variants.len(), 2);
        for e in &exact.variants {
            let p = prom.get(&e.variant).unwrap();
            assert_eq!((p.version, p.threshold), (e.version, e.threshold));
            compare(p, e);
        }
    }

    /// The public `MetricsSource` suite on `PrometheusSource`, through the fake (exact
    /// increases; a real Prometheus extrapolates them): the step's traffic is the suite's,
    /// sent after the baseline, read back within one 0.02 labeled-score bucket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prometheus_source_conforms_through_the_fake() {
        let (router, w, url) = router_beside_the_fake().await;
        let data = w.traffic(64, 3).unwrap();
        let step = mlops_serve::testing::MetricsStep {
            rows: data.features(),
            step_start_unix: 1000.0,
            now_unix: 1600.0,
            score_tolerance: 0.02 + 1e-9,
        };
        mlops_serve::testing::metrics_source(
            &PrometheusSource::new(&url).unwrap(),
            &router,
            step,
            std::future::ready(()),
        )
        .await;
    }

    async fn canned(Query(params): Query<HashMap<String, String>>) -> Json<Value> {
        let q = &params["query"];
        let result = if q.contains("mlops_serve_labeled_score_bucket") {
            // A step of 4e15 labeled rows (a wrong answer, or years of traffic): label 0 all
            // in the bucket up to 0.5, label 1 all in the bucket up to 1.
            let row = |label: &str, le: &str, v: &str| json!({"metric": {"variant": "stable", "label": label, "le": le}, "value": [0.0, v]});
            vec![
                row("0", "0.48", "0"),
                row("0", "0.5", "1e15"),
                row("0", "+Inf", "1e15"),
                row("1", "0.98", "0"),
                row("1", "1", "3e15"),
                row("1", "+Inf", "3e15"),
            ]
        } else {
            vec![]
        };
        Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
    }

    /// The labeled rows rebuilt from Prometheus are bounded (they were allocated one per row
    /// counted: 4e15 rows aborted the process), in proportion, the rest counted as dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn labeled_rows_from_prometheus_are_bounded_in_proportion() {
        use mlops_serve::rollout::MAX_LABELED_ROWS;
        let w = Synthetic::new(6, 11);
        let stable: Arc<dyn Predictor> = Arc::new(
            CompiledModel::compile(&w.model(0.5, 1).unwrap(), NonFinitePolicy::Reject).unwrap(),
        );
        let router = Router::new(
            MODEL,
            Routes::single(Variant::new("stable", Some(1), stable)),
            RouterOptions::default(),
        )
        .unwrap();
        let app = axum::Router::new().route("/api/v1/query", axum::routing::get(canned));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let snapshot = PrometheusSource::new(&url)
            .unwrap()
            .snapshot(MODEL, &router, 0.0, 600.0)
            .await
            .unwrap();
        let s = snapshot.get("stable").unwrap();
        assert!(s.labeled() <= MAX_LABELED_ROWS && s.labeled() > MAX_LABELED_ROWS - 10);
        assert_eq!(s.label_scores.len(), s.labeled());
        let positives = s.labels.iter().filter(|&&l| l).count() as f64;
        assert!(
            (positives / s.labeled() as f64 - 0.75).abs() < 1e-3,
            "{positives}"
        );
        assert!(s
            .labels
            .iter()
            .zip(&s.label_scores)
            .all(|(&l, &p)| (p - if l { 0.99 } else { 0.49 }).abs() < 1e-9));
        assert_eq!(
            s.labeled_dropped,
            4_000_000_000_000_000 - s.labeled() as u64
        );
    }

    /// The fake's `histogram_quantile` is Prometheus's (its documented example: buckets 0.1,
    /// 0.2, 0.4, +Inf holding 10, 20, 40, 40; the median's rank 20 is the top of the 0.2
    /// bucket).
    #[test]
    fn the_fake_interpolates_as_prometheus_does() {
        let b = vec![(0.1, 10.0), (0.2, 20.0), (0.4, 40.0), (f64::INFINITY, 40.0)];
        assert!((histogram_quantile(0.5, b.clone()) - 0.2).abs() < 1e-12);
        assert!((histogram_quantile(0.75, b.clone()) - 0.3).abs() < 1e-12);
        assert!((histogram_quantile(0.25, b.clone()) - 0.1).abs() < 1e-12);
        let tail = vec![(0.1, 10.0), (f64::INFINITY, 20.0)];
        assert_eq!(histogram_quantile(0.99, tail), 0.1);
    }
}
