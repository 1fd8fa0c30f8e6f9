#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! Registry speed on local disk: listing every version of a model with 10,000 versions (each
//! record read and parsed, tombstones and aliases resolved), and resolving `@production` there.
//!
//! ```text
//! cargo bench --bench registry
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use mlops::registry::{NewVersion, Registry, RegistryConfig};

const VERSIONS: u64 = 10_000;

fn registry_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let registry = runtime
        .block_on(Registry::open(&url, &RegistryConfig::default()))
        .expect("registry");
    runtime.block_on(async {
        // Eight writers at once, as several trainers would.
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let r = registry.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..VERSIONS / 8 {
                    r.register(
                        "fraud",
                        NewVersion::new()
                            .bytes("model.bin", format!("model {w} {i}"))
                            .metric("roc_auc", 0.9 + (i % 100) as f64 / 1000.0)
                            .tag("writer", w.to_string()),
                    )
                    .await
                    .expect("register");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        registry
            .set_alias("fraud", "production", VERSIONS, None, "bench")
            .await
            .expect("alias");
    });
    let mut group = c.benchmark_group("registry_local_disk");
    group.sample_size(10);
    group.bench_function("list_versions_10000", |b| {
        b.iter(|| {
            let listed = runtime
                .block_on(registry.list_versions("fraud"))
                .expect("list");
            assert_eq!(listed.len() as u64, VERSIONS);
        })
    });
    group.bench_function("resolve_production_of_10000", |b| {
        b.iter(|| {
            runtime
                .block_on(registry.version("fraud", &"@production".parse().expect("ref")))
                .expect("version")
        })
    });
    group.finish();
}

criterion_group!(benches, registry_benches);
criterion_main!(benches);
