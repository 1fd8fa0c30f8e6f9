//! The batcher in process: concurrent requests of one variant share a model call and each is
//! answered and accounted as if scored alone; a failed batch is retried request by request;
//! the queue is bounded; a batch waits for announced requests but never past its delay;
//! variants and route tables are never mixed in one call.

#[cfg(not(feature = "batch"))]
#[test]
#[ignore = "left out: the batcher needs the `batch` feature (on with `http`; the workspace test runs it, scripts/test.sh); run: cargo test -p mlops-serve --features batch --test integration batch::"]
fn batcher() {}

#[cfg(feature = "batch")]
mod batched {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    use mlops_core::model::Predictor;
    use mlops_serve::batch::{BatchConfig, Batcher, CheckedBatchConfig};
    use mlops_serve::router::{Request, Router, RouterOptions, Routes, Variant};
    use mlops_serve::telemetry::ServeMetrics;
    use mlops_serve::ErrorKind;
    use ndarray::{array, Array2, ArrayView2};
    use prometheus_client::registry::Registry;

    /// A model scoring row `r` as `x[r, 0] / 1000` that records each call's rows; with a gate,
    /// its first call says so and waits for the test's release. A NaN is refused (as the
    /// `reject` policy does), 666 panics, 777 fails as a backend that is down would.
    struct Gated {
        names: Vec<String>,
        calls: Mutex<Vec<usize>>,
        entered: Mutex<Option<mpsc::Sender<()>>>,
        release: Mutex<Option<mpsc::Receiver<()>>>,
        gated: AtomicBool,
    }

    impl Gated {
        fn new(gate: bool) -> (Arc<Self>, mpsc::Receiver<()>, mpsc::Sender<()>) {
            let (entered_tx, entered_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel();
            let model = Arc::new(Gated {
                names: vec!["a".into(), "b".into()],
                calls: Mutex::new(Vec::new()),
                entered: Mutex::new(Some(entered_tx)),
                release: Mutex::new(Some(release_rx)),
                gated: AtomicBool::new(gate),
            });
            (model, entered_rx, release_tx)
        }

        fn calls(&self) -> Vec<usize> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Predictor for Gated {
        fn feature_names(&self) -> &[String] {
            &self.names
        }
        fn predict_proba_into(
            &self,
            x: ArrayView2<'_, f32>,
            out: &mut [f32],
        ) -> mlops_core::Result<()> {
            self.calls.lock().unwrap().push(x.nrows());
            if self.gated.swap(false, Ordering::SeqCst) {
                let entered = self.entered.lock().unwrap().take();
                let release = self.release.lock().unwrap().take();
                if let (Some(entered), Some(release)) = (entered, release) {
                    entered.send(()).unwrap();
                    // A generous deadline: a broken batcher fails the test instead of hanging.
                    let _ = release.recv_timeout(Duration::from_secs(30));
                }
            }
            for (r, row) in x.rows().into_iter().enumerate() {
                if row[0].is_nan() {
                    return Err(mlops_core::Error::invalid(
                        format!("row {r}, feature \"a\""),
                        "NaN",
                        "a number",
                    ));
                }
                assert!(row[0] != 666.0, "the model does not take 666");
                if row[0] == 777.0 {
                    return Err(mlops_core::Error::Predictor {
                        message: "backend down".into(),
                    });
                }
                out[r] = row[0] / 1000.0;
            }
            Ok(())
        }
    }

    fn router_with(
        variants: Vec<(&str, Arc<dyn Predictor>)>,
        metrics: ServeMetrics,
    ) -> Arc<Router> {
        let share = 100.0 / variants.len() as f64;
        let routes = Routes {
            weights: variants
                .iter()
                .map(|(n, _)| (n.to_string(), share))
                .collect(),
            variants: variants
                .into_iter()
                .enumerate()
                .map(|(i, (n, p))| Variant::new(n, Some(i as u64 + 1), p))
                .collect(),
            shadow: None,
        };
        let options = RouterOptions {
            metrics,
            ..RouterOptions::default()
        };
        Arc::new(Router::new("fraud", routes, options).unwrap())
    }

    fn config(
        max_batch_rows: usize,
        max_delay_micros: u64,
        max_queue_rows: usize,
    ) -> CheckedBatchConfig {
        BatchConfig {
            max_batch_rows,
            max_delay_micros,
            max_queue_rows,
            workers: 1,
        }
        .check()
        .unwrap()
    }

    /// A batcher of `config` in front of one gated (or plain) [`Gated`] model, "stable".
    fn one_model(
        gate: bool,
        config: CheckedBatchConfig,
    ) -> (Arc<Gated>, Batcher, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (model, entered, release) = Gated::new(gate);
        let router = router_with(
            vec![("stable", model.clone())],
            ServeMetrics::unregistered(),
        );
        let batcher = Batcher::start(router, config).unwrap();
        (model, batcher, entered, release)
    }

    fn rows(values: &[f32]) -> Array2<f32> {
        Array2::from_shape_fn(
            (values.len(), 2),
            |(r, c)| if c == 0 { values[r] } else { 0.0 },
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn scrape(registry: &Registry) -> String {
        mlops_core::exposition::classic_text(registry).unwrap()
    }

    #[test]
    fn requests_queued_while_the_model_is_busy_share_one_call_and_are_each_accounted() {
        let mut registry = Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let (model, entered, release) = Gated::new(true);
        let router = router_with(vec![("stable", model.clone())], metrics);
        let batcher = Batcher::start(router.clone(), config(64, 0, 1024)).unwrap();
        let rt = runtime();
        rt.block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            // The model is busy with the first request: these queue.
            let ids: Vec<String> = (0..10).map(|i| format!("req-{i}")).collect();
            let tickets: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let values: Vec<f32> = (0..=i % 3).map(|k| (10 * i + k) as f32).collect();
                    let request = Request {
                        request_id: Some(id),
                        ..Request::default()
                    };
                    (
                        values.clone(),
                        batcher.submit(&request, rows(&values)).unwrap(),
                    )
                })
                .collect();
            release.send(()).unwrap();
            let scored = first.await.unwrap();
            assert_eq!(scored.probabilities, vec![0.001]);
            let mut total = 0;
            for (values, ticket) in tickets {
                let scored = ticket.await.unwrap();
                let expected: Vec<f32> = values.iter().map(|v| v / 1000.0).collect();
                assert_eq!(scored.probabilities, expected);
                assert_eq!(&*scored.routed.variant, "stable");
                assert_eq!(scored.routed.version, Some(1));
                total += values.len();
            }
            // One call for the first, one for the ten queued behind it.
            assert_eq!(model.calls(), vec![1, total]);
        });
        let stats = batcher.stats();
        assert_eq!((stats.requests, stats.batches, stats.fallbacks), (11, 2, 0));
        let text = scrape(&registry);
        // Each request counted once, as if scored alone; its rows too.
        assert!(
            text.contains(
                "mlops_serve_requests_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 11"
            ),
            "{text}"
        );
        assert!(
            text.contains("mlops_serve_batch_rows_count{model=\"fraud\"} 2"),
            "{text}"
        );
        // Each request's labels join under its own id, against its own rows.
        assert!(router.feedback("req-4", &[1.0, 0.0]).unwrap());
        assert!(!router.feedback("req-4", &[1.0, 0.0]).unwrap());
        assert!(router.feedback("req-3", &[1.0]).is_ok());
        assert!(
            router.feedback("req-9", &[1.0, 0.0]).is_err(),
            "req-9 has one row"
        );
    }

    #[test]
    fn a_refused_row_fails_only_its_own_request() {
        let mut registry = Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let (model, entered, release) = Gated::new(true);
        let batcher = Batcher::start(
            router_with(vec![("stable", model.clone())], metrics),
            config(64, 0, 1024),
        )
        .unwrap();
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let good = batcher
                .submit(&Request::default(), rows(&[2.0, 3.0]))
                .unwrap();
            let bad = batcher
                .submit(&Request::default(), rows(&[4.0, f32::NAN]))
                .unwrap();
            let panics = batcher.submit(&Request::default(), rows(&[666.0])).unwrap();
            let also_good = batcher.submit(&Request::default(), rows(&[5.0])).unwrap();
            release.send(()).unwrap();
            first.await.unwrap();
            assert_eq!(good.await.unwrap().probabilities, vec![0.002, 0.003]);
            let e = bad.await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("row 1, feature \"a\""), "{e}");
            let e = panics.await.unwrap_err();
            assert!(e.to_string().contains("panicked"), "{e}");
            assert_eq!(also_good.await.unwrap().probabilities, vec![0.005]);
            // The worker lives on.
            let after = batcher
                .route(&Request::default(), rows(&[7.0]))
                .await
                .unwrap();
            assert_eq!(after.probabilities, vec![0.007]);
        });
        // The first alone, the batch of six rows (refused), then each request alone.
        assert_eq!(model.calls(), vec![1, 6, 2, 2, 1, 1, 1]);
        assert_eq!(batcher.stats().fallbacks, 1);
        let text = scrape(&registry);
        assert!(
            text.contains("mlops_serve_batch_fallbacks_total{model=\"fraud\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "mlops_serve_rejected_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mlops_serve_errors_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "mlops_serve_requests_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 6"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_loses_nothing_it_took() {
        let (model, batcher, entered, release) = one_model(true, config(2, 0, 4));
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let mut taken = Vec::new();
            for i in 0..4 {
                taken.push(
                    batcher
                        .submit(&Request::default(), rows(&[i as f32]))
                        .unwrap(),
                );
            }
            let e = batcher
                .submit(&Request::default(), rows(&[9.0]))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(
                e.to_string().contains("BatchConfig.max_queue_rows = 4"),
                "{e}"
            );
            release.send(()).unwrap();
            first.await.unwrap();
            for (i, ticket) in taken.into_iter().enumerate() {
                assert_eq!(ticket.await.unwrap().probabilities, vec![i as f32 / 1000.0]);
            }
            let big = batcher
                .route(&Request::default(), rows(&[1.0, 2.0, 3.0]))
                .await
                .unwrap();
            assert_eq!(big.probabilities.len(), 3);
            let none = batcher.route(&Request::default(), rows(&[])).await.unwrap();
            assert!(none.probabilities.is_empty());
        });
        assert_eq!(model.calls(), vec![1, 2, 2, 3, 0]);
        let stats = batcher.stats();
        assert_eq!((stats.refused, stats.alone, stats.requests), (1, 2, 5));
    }

    #[test]
    fn a_batch_waits_for_an_announced_request_and_goes_when_it_is_queued() {
        let (model, batcher, _entered, _release) = one_model(false, config(2, 1_000_000, 16));
        runtime().block_on(async {
            let coming = batcher.expect();
            let also = batcher.expect();
            let a = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            drop(coming);
            // Still one announced: the batch of one waits (up to a second). A batcher that
            // did not wait would take it alone meanwhile.
            std::thread::sleep(Duration::from_millis(50));
            let b = batcher.submit(&Request::default(), rows(&[2.0])).unwrap();
            // Two rows: the batch is full and goes at once, the announcement still held.
            assert_eq!(a.await.unwrap().probabilities, vec![0.001]);
            assert_eq!(b.await.unwrap().probabilities, vec![0.002]);
            drop(also);
        });
        assert_eq!(model.calls(), vec![2]);
    }

    #[test]
    fn a_batch_waits_no_longer_than_its_delay() {
        let (model, batcher, _entered, _release) = one_model(false, config(64, 20_000, 128));
        let rt = runtime();
        let held = batcher.expect();
        let answer = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                batcher.route(&Request::default(), rows(&[3.0])),
            )
            .await
        });
        assert_eq!(
            answer
                .expect("answered while the announcement is held")
                .unwrap()
                .probabilities,
            vec![0.003]
        );
        drop(held);
        let lone = rt
            .block_on(batcher.route(&Request::default(), rows(&[4.0])))
            .unwrap();
        assert_eq!(lone.probabilities, vec![0.004]);
        assert_eq!(model.calls(), vec![1, 1]);
    }

    #[test]
    fn variants_and_route_tables_are_never_mixed_in_one_call() {
        let (stable, entered, release) = Gated::new(true);
        let (canary, _e, _r) = Gated::new(false);
        let router = router_with(
            vec![("canary", canary.clone()), ("stable", stable.clone())],
            ServeMetrics::unregistered(),
        );
        let batcher = Batcher::start(router.clone(), config(64, 0, 1024)).unwrap();
        let (next, _e2, _r2) = Gated::new(false);
        runtime().block_on(async {
            let force = |name| Request {
                force: Some(name),
                ..Request::default()
            };
            let first = batcher.submit(&force("stable"), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let mut tickets = Vec::new();
            for i in 0..6 {
                let name = if i % 2 == 0 { "canary" } else { "stable" };
                tickets.push((
                    name,
                    batcher.submit(&force(name), rows(&[i as f32])).unwrap(),
                ));
            }
            // A new table while they wait: what was queued keeps its table and variant.
            router
                .install(Routes::single(Variant::new("next", Some(9), next.clone())))
                .unwrap();
            let after = batcher.submit(&Request::default(), rows(&[8.0])).unwrap();
            release.send(()).unwrap();
            assert_eq!(&*first.await.unwrap().routed.variant, "stable");
            for (name, ticket) in tickets {
                assert_eq!(&*ticket.await.unwrap().routed.variant, name);
            }
            assert_eq!(&*after.await.unwrap().routed.variant, "next");
            // Sticky keys go where the router sends them.
            let keyed = batcher
                .route(&Request::keyed("user-7"), rows(&[1.0]))
                .await
                .unwrap();
            assert_eq!(&*keyed.routed.variant, "next");
            let e = batcher
                .route(&force("stable"), rows(&[1.0]))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("forced variant"), "{e}");
        });
        assert_eq!(stable.calls(), vec![1, 3]);
        assert_eq!(canary.calls(), vec![3]);
        assert_eq!(next.calls(), vec![1, 1]);
    }

    #[test]
    fn dropping_the_batcher_answers_what_it_queued() {
        let (model, batcher, entered, release) = one_model(true, config(1, 0, 64));
        let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
        entered.recv_timeout(Duration::from_secs(30)).unwrap();
        let queued: Vec<_> = (0..5)
            .map(|i| {
                batcher
                    .submit(&Request::default(), rows(&[i as f32]))
                    .unwrap()
            })
            .collect();
        release.send(()).unwrap();
        drop(batcher);
        let rt = runtime();
        rt.block_on(first).unwrap();
        for (i, ticket) in queued.into_iter().enumerate() {
            assert_eq!(
                rt.block_on(ticket).unwrap().probabilities,
                vec![i as f32 / 1000.0]
            );
        }
        assert_eq!(model.calls(), vec![1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn a_wrong_width_is_refused_before_queueing() {
        let (model, batcher, _e, _r) = one_model(false, CheckedBatchConfig::default());
        let e = batcher
            .submit(&Request::default(), array![[1.0_f32, 2.0, 3.0]])
            .unwrap_err();
        assert!(e.to_string().contains("batch columns = 3"), "{e}");
        assert!(model.calls().is_empty());
        assert_eq!(batcher.stats().requests, 0);
    }

    #[test]
    fn the_config_is_checked_field_by_field() {
        assert!(BatchConfig::default().check().is_ok());
        for (config, field) in [
            (
                BatchConfig {
                    max_batch_rows: 0,
                    ..BatchConfig::default()
                },
                "BatchConfig.max_batch_rows = 0",
            ),
            (
                BatchConfig {
                    max_batch_rows: 65_537,
                    max_queue_rows: 1 << 20,
                    ..BatchConfig::default()
                },
                "BatchConfig.max_batch_rows = 65537",
            ),
            (
                BatchConfig {
                    max_delay_micros: 1_000_001,
                    ..BatchConfig::default()
                },
                "BatchConfig.max_delay_micros = 1000001",
            ),
            (
                BatchConfig {
                    max_queue_rows: 63,
                    ..BatchConfig::default()
                },
                "BatchConfig.max_queue_rows = 63",
            ),
            (
                BatchConfig {
                    max_queue_rows: (1 << 24) + 1,
                    ..BatchConfig::default()
                },
                "BatchConfig.max_queue_rows = 16777217",
            ),
            (
                BatchConfig {
                    workers: 0,
                    ..BatchConfig::default()
                },
                "BatchConfig.workers = 0",
            ),
            (
                BatchConfig {
                    workers: 65,
                    ..BatchConfig::default()
                },
                "BatchConfig.workers = 65",
            ),
        ] {
            let e = config.check().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let e = serde_json::from_str::<CheckedBatchConfig>(r#"{"workers": 0}"#).unwrap_err();
        assert!(e.to_string().contains("BatchConfig.workers = 0"), "{e}");
    }

    #[test]
    fn two_workers_score_two_variants_at_once() {
        let (a, a_entered, a_release) = Gated::new(true);
        let (b, b_entered, b_release) = Gated::new(true);
        let router = router_with(
            vec![("a", a.clone()), ("b", b.clone())],
            ServeMetrics::unregistered(),
        );
        let batcher = Batcher::start(
            router,
            BatchConfig {
                workers: 2,
                max_delay_micros: 0,
                ..BatchConfig::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap();
        let force = |name| Request {
            force: Some(name),
            ..Request::default()
        };
        let ta = batcher.submit(&force("a"), rows(&[1.0])).unwrap();
        a_entered.recv_timeout(Duration::from_secs(30)).unwrap();
        // One worker is held by "a": the other takes "b".
        let tb = batcher.submit(&force("b"), rows(&[2.0])).unwrap();
        b_entered.recv_timeout(Duration::from_secs(30)).unwrap();
        a_release.send(()).unwrap();
        b_release.send(()).unwrap();
        let rt = runtime();
        assert_eq!(rt.block_on(ta).unwrap().probabilities, vec![0.001]);
        assert_eq!(rt.block_on(tb).unwrap().probabilities, vec![0.002]);
    }

    #[test]
    fn a_failing_model_fails_every_request_of_the_batch_without_retrying_each() {
        let (model, batcher, entered, release) = one_model(true, config(64, 0, 1024));
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let tickets: Vec<_> = [[2.0], [777.0], [3.0]]
                .iter()
                .map(|v| batcher.submit(&Request::default(), rows(v)).unwrap())
                .collect();
            release.send(()).unwrap();
            first.await.unwrap();
            for ticket in tickets {
                let e = ticket.await.unwrap_err();
                assert!(e.to_string().contains("backend down"), "{e}");
            }
        });
        assert_eq!(model.calls(), vec![1, 3]);
        assert_eq!(batcher.stats().fallbacks, 0);
    }

    #[test]
    fn a_request_whose_caller_is_gone_is_not_scored_nor_counted() {
        let mut registry = Registry::default();
        let metrics = ServeMetrics::register(&mut registry);
        let (model, entered, release) = Gated::new(true);
        let batcher = Batcher::start(
            router_with(vec![("stable", model.clone())], metrics),
            config(64, 0, 1024),
        )
        .unwrap();
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let a = batcher.submit(&Request::default(), rows(&[2.0])).unwrap();
            let gone = batcher
                .submit(&Request::default(), rows(&[3.0, 4.0]))
                .unwrap();
            let b = batcher.submit(&Request::default(), rows(&[5.0])).unwrap();
            drop(gone);
            release.send(()).unwrap();
            first.await.unwrap();
            assert_eq!(a.await.unwrap().probabilities, vec![0.002]);
            assert_eq!(b.await.unwrap().probabilities, vec![0.005]);
        });
        assert_eq!(model.calls(), vec![1, 2]);
        assert_eq!(batcher.stats().cancelled, 1);
        let text = scrape(&registry);
        assert!(
            text.contains(
                "mlops_serve_requests_total{model=\"fraud\",version=\"1\",variant=\"stable\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("mlops_serve_batch_queued_rows{model=\"fraud\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_full_batch_of_one_variant_does_not_wait_behind_another_variants_forming_batch() {
        let (canary, _e1, _r1) = Gated::new(false);
        let (stable, _e2, _r2) = Gated::new(false);
        let router = router_with(
            vec![("canary", canary.clone()), ("stable", stable.clone())],
            ServeMetrics::unregistered(),
        );
        let batcher = Batcher::start(router, config(2, 1_000_000, 64)).unwrap();
        let force = |name| Request {
            force: Some(name),
            ..Request::default()
        };
        let rt = runtime();
        let held = batcher.expect();
        // The canary's batch of one waits for the announced request (up to a second)...
        let waiting = batcher.submit(&force("canary"), rows(&[1.0])).unwrap();
        // ...while the stable batch behind it is full: it goes.
        let full = batcher.submit(&force("stable"), rows(&[2.0, 3.0])).unwrap();
        let scored = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), full).await })
            .unwrap()
            .unwrap();
        assert_eq!(scored.probabilities, vec![0.002, 0.003]);
        assert!(canary.calls().is_empty(), "the canary's batch went first");
        drop(held);
        assert_eq!(rt.block_on(waiting).unwrap().probabilities, vec![0.001]);
        assert_eq!(canary.calls(), vec![1]);
    }

    #[test]
    fn what_a_request_holds_is_kept_until_it_is_answered_or_given_up() {
        let (model, batcher, entered, release) = one_model(true, config(64, 0, 1024));
        let permits = Arc::new(());
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let kept = batcher
                .submit_announced(
                    batcher.expect(),
                    &Request::default(),
                    rows(&[2.0]),
                    permits.clone(),
                )
                .unwrap();
            let gone = batcher
                .submit_announced(
                    batcher.expect(),
                    &Request::default(),
                    rows(&[3.0]),
                    permits.clone(),
                )
                .unwrap();
            // Refused: what it held is given back at once.
            let refused = batcher.submit_announced(
                batcher.expect(),
                &Request::default(),
                array![[1.0_f32]],
                permits.clone(),
            );
            assert!(refused.is_err());
            assert_eq!(
                Arc::strong_count(&permits),
                3,
                "two queued requests hold theirs"
            );
            drop(gone);
            assert_eq!(
                Arc::strong_count(&permits),
                3,
                "given up only when its batch forms"
            );
            release.send(()).unwrap();
            first.await.unwrap();
            assert_eq!(kept.await.unwrap().probabilities, vec![0.002]);
        });
        assert_eq!(Arc::strong_count(&permits), 1);
        assert_eq!(model.calls(), vec![1, 1]);
        assert_eq!(batcher.stats().cancelled, 1);
    }

    #[test]
    fn a_panic_in_a_batch_fails_only_the_request_that_caused_it() {
        let (model, batcher, entered, release) = one_model(true, config(64, 0, 1024));
        runtime().block_on(async {
            let first = batcher.submit(&Request::default(), rows(&[1.0])).unwrap();
            entered.recv_timeout(Duration::from_secs(30)).unwrap();
            let good = batcher.submit(&Request::default(), rows(&[2.0])).unwrap();
            let panics = batcher.submit(&Request::default(), rows(&[666.0])).unwrap();
            let also_good = batcher
                .submit(&Request::default(), rows(&[4.0, 5.0]))
                .unwrap();
            release.send(()).unwrap();
            first.await.unwrap();
            assert_eq!(good.await.unwrap().probabilities, vec![0.002]);
            let e = panics.await.unwrap_err();
            assert!(e.to_string().contains("panicked"), "{e}");
            assert_eq!(also_good.await.unwrap().probabilities, vec![0.004, 0.005]);
        });
        assert_eq!(model.calls(), vec![1, 4, 1, 1, 2]);
        assert_eq!(batcher.stats().fallbacks, 1);
    }
}
