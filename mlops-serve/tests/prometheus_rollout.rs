//! Promotion at scale: two server replicas on 127.0.0.1 scraped every second by a real
//! Prometheus (Debian's `prometheus`, started here with a generated config and stopped by its
//! PID), labeled traffic over HTTP at both, and one rollout in a shared store advanced by
//! exactly one of the two controllers from Prometheus's aggregated numbers, with both
//! replicas following its weights.

mod support;

#[cfg(feature = "http")]
mod at_scale {
    use std::net::TcpListener as StdListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mlops_core::clock::SystemClock;
    use mlops_serve::analysis::Check;
    use mlops_serve::http::{app, serve, ServerConfig};
    use mlops_serve::metrics::ServeMetrics;
    use mlops_serve::policy::PromotionConfig;
    use mlops_serve::rollout::{
        compiling, Controller, ControllerParts, DecisionKind, Phase, PrometheusSource, Tick,
    };
    use mlops_serve::router::{Router, RouterOptions, Routes, Variant};
    use mlops_serve::source::ModelSource;
    use mlops_serve::NonFinitePolicy;
    use serde_json::{json, Value};

    use super::support::{world, MODEL};

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
        };
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
                    ServerConfig::default(),
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
#[ignore = "left out: promotion across two replicas through a real Prometheus; run with --features http (the workspace test does)"]
fn one_rollout_two_replicas_one_controller_acts_from_prometheus() {}
