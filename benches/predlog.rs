#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion bench of the prediction log's write rate: scored rows of the seed's 30 features
//! recorded as the server records them (one request at a time, with an id, a version and its
//! scores) into a folder, then `close` (every row written as whole Parquet files). Time is from
//! the first record to the end of `close`, so it is the writer's rows/s with its Parquet
//! encoding and file writes, not only the request path's copy into the buffer. The buffer and
//! the queue hold every row: a dropped row fails the bench.
//!
//! ```text
//! cargo bench --bench predlog --features predlog
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mlops::serve::predlog::{LogParts, PredictionLog, PredictionLogConfig, ScoredBatch};
use ndarray::{Array2, Axis, Slice};

/// Rows logged per measured run: fewer single-row requests than the log's queue holds
/// (`MAX_QUEUED`), so the recorder never outruns it and the time is the writer's.
const ROWS: usize = 60_000;

fn write(c: &mut Criterion) {
    let x = Array2::from_shape_fn((ROWS, 30), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let scores: Vec<f32> = (0..ROWS).map(|i| (i % 101) as f32 / 101.0).collect();
    let features: Arc<[String]> = (0..30).map(|j| format!("f{j}")).collect();
    let (model, variant) = (Arc::<str>::from("fraud"), Arc::<str>::from("stable"));
    let ids: Vec<String> = (0..ROWS).map(|i| format!("req-{i:08}")).collect();
    let mut group = c.benchmark_group("predlog");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(ROWS as u64));
    for rows_per_request in [1usize, 20] {
        group.bench_with_input(
            BenchmarkId::new("write_rows", rows_per_request),
            &rows_per_request,
            |b, &per| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().expect("a temporary folder");
                        let config = PredictionLogConfig {
                            buffer_rows: 1 << 20,
                            ..PredictionLogConfig::default()
                        }
                        .check()
                        .expect("a valid config");
                        let log = PredictionLog::open(
                            dir.path().to_str().expect("a UTF-8 path"),
                            LogParts {
                                config,
                                ..LogParts::default()
                            },
                        )
                        .expect("the log opens");
                        let started = Instant::now();
                        for (k, start) in (0..ROWS).step_by(per).enumerate() {
                            let end = (start + per).min(ROWS);
                            log.record_scored(&ScoredBatch {
                                model: &model,
                                features: &features,
                                request_id: Some(&ids[k]),
                                variant: &variant,
                                version: Some(1),
                                x: x.slice_axis(Axis(0), Slice::from(start..end)),
                                predictions: &scores[start..end],
                            })
                            .expect("a row the log takes");
                        }
                        let summary = log.close().expect("the log closes");
                        total += started.elapsed();
                        assert_eq!(
                            summary.predictions.rows_written, ROWS as u64,
                            "every row written, none dropped: {summary:?}"
                        );
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
