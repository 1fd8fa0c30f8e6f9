#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the serving engine against the reference forward pass, on the seed's
//! network. For onnxruntime on the same weights in the same run, see
//! `engine_vs_onnxruntime.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mlops::core::model::{MlpModel, Predictor};
use mlops::serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array2, Axis, Slice};

#[path = "support/seed_network.rs"]
mod seed_network;

fn engine(c: &mut Criterion) {
    let artifact = seed_network::seed_network().expect("a valid network");
    let compiled = CompiledModel::compile(&artifact, NonFinitePolicy::Nan).expect("compiles");
    let reference = MlpModel::new(&artifact).expect("loads");
    let x = Array2::from_shape_fn((1024, 30), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let mut group = c.benchmark_group("engine");
    for rows in [1usize, 1024] {
        let batch = x.slice_axis(Axis(0), Slice::from(0..rows));
        let mut out = vec![0.0f32; rows];
        group.throughput(Throughput::Elements(rows as u64));
        for (name, p) in [
            ("compiled", &compiled as &dyn Predictor),
            ("mlp_model", &reference),
        ] {
            group.bench_with_input(BenchmarkId::new(name, rows), &rows, |b, _| {
                b.iter(|| p.predict_proba_into(batch, &mut out).expect("scores"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
