//! The registry and the tracker under whatever a host runs: tokio runtimes of both flavors
//! with and without their time and I/O drivers, a non-tokio executor, and the blocking APIs
//! with no runtime at all. Each does the same work (register, move an alias by
//! compare-and-swap, load the version back, gc; start a run, log, end, read back) and must
//! neither panic nor fail.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Builder;

use mlops::registry::{NewVersion, Registry, RegistryConfig, VersionRef};
use mlops::train::tracking::{ExperimentTracker, MetricPoint, ObjectStoreTracker, RunStatus};

/// The registry round trip, async: a folder given as a plain path.
async fn registry_round_trip(dir: std::path::PathBuf) {
    let registry = Registry::open(dir.to_str().unwrap(), &RegistryConfig::default())
        .await
        .unwrap();
    let v = registry
        .register(
            "fraud",
            NewVersion::new()
                .bytes("model.json", b"{\"v\": 1}".to_vec())
                .metric("roc_auc", 0.97),
        )
        .await
        .unwrap();
    registry
        .set_alias("fraud", "production", v.version, None, "first")
        .await
        .unwrap();
    let production = VersionRef::Alias("production".into());
    assert_eq!(registry.resolve("fraud", &production).await.unwrap(), 1);
    let bytes = registry
        .read_file("fraud", &production, "model.json")
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"{\"v\": 1}");
    // A compare-and-swap that lost says so.
    assert!(registry
        .set_alias("fraud", "production", 1, None, "stale")
        .await
        .is_err());
    registry.gc(Duration::ZERO, "test").await.unwrap();
    registry
        .download("fraud", &production, dir.join("out"))
        .await
        .unwrap();
    assert!(dir.join("out").join("model.json").exists());
}

/// The tracker round trip, async, on a local folder.
async fn tracker_round_trip(dir: std::path::PathBuf) {
    let url = format!("file://{}", dir.display());
    let tracker = ObjectStoreTracker::open(&url, &Default::default()).unwrap();
    let run = tracker
        .start_run("fraud", "baseline", &BTreeMap::new())
        .await
        .unwrap();
    tracker
        .log_metrics(&run, &[MetricPoint::now("roc_auc", 0.97, 0)])
        .await
        .unwrap();
    tracker.end_run(&run, RunStatus::Finished).await.unwrap();
    let record = tracker.get_run(&run).await.unwrap();
    assert_eq!(record.metrics["roc_auc"], 0.97);
    assert_eq!(tracker.list_runs("fraud").await.unwrap().len(), 1);
}

fn both(block_on: impl Fn(std::pin::Pin<Box<dyn Future<Output = ()>>>)) {
    let dir = tempfile::tempdir().unwrap();
    block_on(Box::pin(registry_round_trip(dir.path().join("registry"))));
    block_on(Box::pin(tracker_round_trip(dir.path().join("runs"))));
}

/// `both` on the runtime `configure` builds.
fn on(mut builder: Builder, configure: impl FnOnce(&mut Builder) -> &mut Builder) {
    let rt = configure(&mut builder).build().unwrap();
    both(|f| rt.block_on(f));
}

#[test]
fn a_current_thread_runtime_without_drivers() {
    on(Builder::new_current_thread(), |b| b);
}

#[test]
fn a_current_thread_runtime_with_io_but_no_timer() {
    on(Builder::new_current_thread(), Builder::enable_io);
}

#[test]
fn a_current_thread_runtime_with_every_driver() {
    on(Builder::new_current_thread(), Builder::enable_all);
}

#[test]
fn a_multi_thread_runtime_without_the_timer() {
    on(Builder::new_multi_thread(), |b| {
        b.worker_threads(2).enable_io()
    });
}

#[test]
fn a_multi_thread_runtime_with_every_driver() {
    on(Builder::new_multi_thread(), |b| {
        b.worker_threads(2).enable_all()
    });
}

#[test]
fn an_executor_that_is_not_tokio() {
    both(futures::executor::block_on);
}

#[test]
fn the_blocking_apis_with_no_runtime() {
    use mlops::registry::blocking::Registry;
    use mlops::train::tracking::blocking::Tracker;
    let dir = tempfile::tempdir().unwrap();
    // A relative path, as a user types it: up from the working directory to the root, then
    // down to the temporary folder.
    let target = dir.path().join("registry");
    let ups = std::env::current_dir().unwrap().components().count() - 1;
    let path = format!(
        "{}{}",
        "../".repeat(ups),
        target.strip_prefix("/").unwrap().display()
    );
    assert!(std::path::Path::new(&path).is_relative());
    let registry = Registry::open(&path, &RegistryConfig::default()).unwrap();
    let v = registry
        .register(
            "fraud",
            NewVersion::new().bytes("model.json", b"{}".to_vec()),
        )
        .unwrap();
    registry
        .set_alias("fraud", "production", v.version, None, "first")
        .unwrap();
    assert_eq!(
        registry
            .resolve("fraud", &VersionRef::Alias("production".into()))
            .unwrap(),
        1
    );
    assert!(
        target.join("models").is_dir(),
        "the registry is where the path points"
    );
    let url = format!("file://{}", dir.path().join("runs").display());
    let tracker = Tracker::new(ObjectStoreTracker::open(&url, &Default::default()).unwrap());
    let run = tracker
        .start_run("fraud", "baseline", &BTreeMap::new())
        .unwrap();
    tracker
        .log_metrics(&run, &[MetricPoint::now("roc_auc", 0.97, 0)])
        .unwrap();
    tracker.end_run(&run, RunStatus::Finished).unwrap();
    assert_eq!(tracker.get_run(&run).unwrap().status, RunStatus::Finished);
    // And from many threads at once, with no runtime anywhere but the library's.
    std::thread::scope(|s| {
        for i in 0..8 {
            let registry = registry.clone();
            s.spawn(move || {
                registry
                    .register(
                        "race",
                        NewVersion::new().bytes("model.json", format!("{i}").into_bytes()),
                    )
                    .unwrap();
            });
        }
    });
    let versions: Vec<u64> = registry
        .list_versions("race")
        .unwrap()
        .iter()
        .map(|v| v.record.version)
        .collect();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}
