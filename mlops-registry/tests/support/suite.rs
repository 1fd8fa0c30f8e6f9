//! The conformance suite: every backend runs every case.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlops_core::clock::ManualClock;
use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
use mlops_registry::{
    sha256_hex, AuditAction, DatasetFingerprint, Error, Lineage, NewVersion, Query, Registry,
    RegistryConfig, VersionRef,
};
use ndarray::{Array1, Array2};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::faulty::FaultyStore;
use super::Backend;

/// Runs every case against `backend`.
pub async fn run(backend: &Backend) {
    register_list_show(backend).await;
    bad_input_is_refused_before_any_write(backend).await;
    aliases_compare_and_swap_history_rollback(backend).await;
    downloads_are_verified_and_cached(backend).await;
    artifacts_round_trip(backend).await;
    tree_models_round_trip(backend).await;
    search_by_tag_metric_latest(backend).await;
    delete_is_a_tombstone_and_gc_collects(backend).await;
    audit_records_who_what_why(backend).await;
    concurrent_registrations_get_1_to_16(backend).await;
    concurrent_alias_moves_one_wins(backend).await;
    concurrent_state_writes_one_wins(backend).await;
    failed_upload_leaves_no_version(backend).await;
    store_ignoring_conditional_creates_is_refused(backend).await;
    download_replaces_a_folder_whole_or_not_at_all(backend).await;
    read_only_store_serves_reads(backend).await;
    gc_with_no_grace_during_a_registration_keeps_its_blobs(backend).await;
    one_unreadable_record_does_not_hide_the_others(backend).await;
    latest_and_alias_messages(backend).await;
    loading_production_takes_few_store_calls(backend).await;
    a_fault_between_blobs_and_record_leaves_nothing_half_visible(backend).await;
    long_logs_cost_the_same_few_store_calls(backend).await;
    hints_that_lie_or_lag_cost_probes_never_numbers(backend).await;
    // Many rounds of many writers where the store is fast; fewer where each call is an HTTP
    // round trip to a local emulator.
    let rounds = match backend.name {
        "memory" => 50,
        "local" => 10,
        _ => 3,
    };
    many_rounds_of_racing_writers_give_no_gap_and_one_alias_winner(backend, rounds, 32).await;
}

fn model_files(seed: u8) -> NewVersion {
    NewVersion::new()
        .bytes("model.bin", vec![seed; 1000])
        .bytes("extra/notes.txt", format!("model {seed}"))
}

async fn register_list_show(b: &Backend) {
    let (r, _) = b.registry("register").await;
    assert!(
        r.list_versions("fraud").await.unwrap().is_empty(),
        "{}",
        b.name
    );
    let lineage = Lineage {
        run_id: Some("run-42".into()),
        dataset: Some(DatasetFingerprint {
            sha256: sha256_hex(b"training data"),
            rows: 1000,
        }),
        code_version: Some("abc123".into()),
        parent_version: None,
    };
    let v1 = r
        .register(
            "fraud",
            model_files(1)
                .metric("roc_auc", 0.95)
                .param("lr", "0.001")
                .tag("team", "risk")
                .lineage(lineage.clone())
                .description("first"),
        )
        .await
        .unwrap();
    assert_eq!(v1.version, 1, "{}", b.name);
    let v2 = r
        .register(
            "fraud",
            model_files(2).lineage(Lineage {
                parent_version: Some(1),
                ..lineage.clone()
            }),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2, "{}", b.name);
    let listed = r.list_versions("fraud").await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.record.version).collect::<Vec<_>>(),
        [1, 2],
        "{}",
        b.name
    );
    assert_eq!(listed[0].record, v1, "{}: stored record differs", b.name);
    let shown = r.version("fraud", &VersionRef::Number(1)).await.unwrap();
    assert_eq!(shown.record.metrics["roc_auc"], 0.95);
    assert_eq!(shown.record.lineage, lineage);
    assert_eq!(shown.record.created_by, "conformance");
    assert_eq!(
        shown.record.file("model.bin").unwrap().sha256,
        sha256_hex(&[1u8; 1000])
    );
    assert_eq!(r.latest("fraud").await.unwrap().unwrap().record.version, 2);
    assert_eq!(r.list_models().await.unwrap(), ["fraud"], "{}", b.name);
    // Identical content is stored once.
    let v3 = r.register("fraud", model_files(1)).await.unwrap();
    assert_eq!(v3.files, v1.files);
    match r.version("fraud", &VersionRef::Number(9)).await {
        Err(Error::NotFound { what }) => assert!(what.contains("version 9"), "{what}"),
        other => panic!("{}: {other:?}", b.name),
    }
    match r
        .register(
            "fraud",
            model_files(5).lineage(Lineage {
                parent_version: Some(77),
                ..Lineage::default()
            }),
        )
        .await
    {
        Err(Error::InvalidValue(v)) => assert_eq!(v.field, "lineage.parent_version"),
        other => panic!("{}: {other:?}", b.name),
    }
}

async fn bad_input_is_refused_before_any_write(b: &Backend) {
    let (r, prefix) = b.registry("bad-input").await;
    for bad in [
        "",
        "../etc",
        "a/b",
        "nul\0",
        ".hidden",
        "x".repeat(129).as_str(),
    ] {
        let e = r.register(bad, model_files(1)).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue(_)),
            "{}: {bad:?}: {e}",
            b.name
        );
        assert!(e.to_string().contains("model name"), "{e}");
    }
    let cases: Vec<(NewVersion, &str)> = vec![
        (NewVersion::new(), "version files"),
        (NewVersion::new().bytes("../escape", vec![1u8]), "file name"),
        (NewVersion::new().bytes("/abs", vec![1u8]), "file name"),
        (model_files(1).metric("auc", f64::NAN), "metric `auc`"),
        (model_files(1).tag("bad\nkey", "v"), "tag key"),
    ];
    for (new, field) in cases {
        let e = r.register("fraud", new).await.unwrap_err();
        assert!(e.to_string().contains(field), "{}: {e}", b.name);
    }
    for bad in ["", "pro/duction", "..", "a b"] {
        let e = r
            .set_alias("fraud", bad, 1, None, "test")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("alias"), "{}: {e}", b.name);
    }
    // Nothing reached the store (the self-test probe is deleted).
    let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        b.store.list(Some(&Path::from(prefix.as_str()))),
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{}: {left:?}", b.name);
}

async fn aliases_compare_and_swap_history_rollback(b: &Backend) {
    let (r, _) = b.registry("aliases").await;
    for i in 1..=3 {
        r.register("fraud", model_files(i)).await.unwrap();
    }
    assert!(r.alias("fraud", "production").await.unwrap().is_none());
    let e1 = r
        .set_alias("fraud", "production", 1, None, "first")
        .await
        .unwrap();
    assert_eq!((e1.seq, e1.target, e1.previous), (1, Some(1), None));
    // A stale expectation fails and names both sides.
    match r.set_alias("fraud", "production", 2, None, "stale").await {
        Err(Error::AliasMoved {
            expected, actual, ..
        }) => {
            assert_eq!(
                (expected.as_str(), actual.as_str()),
                ("nothing", "version 1")
            );
        }
        other => panic!("{}: {other:?}", b.name),
    }
    r.set_alias("fraud", "production", 2, Some(1), "better auc")
        .await
        .unwrap();
    r.set_alias("fraud", "canary", 3, None, "try 3")
        .await
        .unwrap();
    let aliases = r.aliases("fraud").await.unwrap();
    assert_eq!(aliases.get("production"), Some(&2), "{}", b.name);
    assert_eq!(aliases.get("canary"), Some(&3));
    let prod = r
        .version("fraud", &"@production".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(prod.record.version, 2);
    assert_eq!(prod.aliases, ["production"]);
    // Rollback goes to the previous target, as a compare-and-swap.
    let back = r
        .rollback_alias("fraud", "production", "2 regressed")
        .await
        .unwrap();
    assert_eq!((back.target, back.previous), (Some(1), Some(2)));
    let history = r.alias_history("fraud", "production").await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.target).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(1)],
        "{}",
        b.name
    );
    assert_eq!(history[1].why, "better auc");
    // Clearing, then an alias to a missing version.
    r.clear_alias("fraud", "canary", Some(3), "done")
        .await
        .unwrap();
    assert!(!r.aliases("fraud").await.unwrap().contains_key("canary"));
    assert!(matches!(
        r.version("fraud", &"@canary".parse().unwrap()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        r.set_alias("fraud", "canary", 99, None, "x").await,
        Err(Error::NotFound { .. })
    ));
}

/// Overwrites the blob of `sha256` with one byte flipped.
/// The bytes of the object at `path`.
async fn read_object(b: &Backend, path: &Path) -> Vec<u8> {
    b.store
        .get(path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn corrupt_blob(b: &Backend, prefix: &str, sha256: &str) {
    let path = Path::from(format!("{prefix}/blobs/sha256/{}/{sha256}", &sha256[..2]));
    let mut bytes = read_object(b, &path).await;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    b.store.put(&path, PutPayload::from(bytes)).await.unwrap();
}

async fn downloads_are_verified_and_cached(b: &Backend) {
    let (r, prefix) = b.registry("download").await;
    let v = r.register("fraud", model_files(7)).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    r.download("fraud", &VersionRef::Number(1), out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.path().join("model.bin")).unwrap(),
        [7u8; 1000]
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("extra/notes.txt")).unwrap(),
        "model 7"
    );
    // A flipped byte in any blob is caught, naming the file.
    for file in &v.files {
        let (r2, prefix2) = b.registry("flip").await;
        r2.register("fraud", model_files(7)).await.unwrap();
        corrupt_blob(b, &prefix2, &file.sha256).await;
        match r2
            .download("fraud", &VersionRef::Number(1), out.path())
            .await
        {
            Err(Error::Checksum {
                file: named,
                expected_sha256,
                actual_sha256,
                ..
            }) => {
                assert_eq!(named, file.name, "{}", b.name);
                assert_ne!(expected_sha256, actual_sha256);
            }
            other => panic!(
                "{}: flipped byte in {} not caught: {other:?}",
                b.name, file.name
            ),
        }
    }
    // The cache serves verified blobs without the store, and a corrupt cache entry is
    // replaced from the store.
    let cache = tempfile::tempdir().unwrap();
    let config = RegistryConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RegistryConfig::default()
    };
    let cached = Registry::with_store(b.store.clone(), &prefix, &config)
        .await
        .unwrap();
    let one = VersionRef::Number(1);
    assert_eq!(
        cached
            .read_file("fraud", &one, "model.bin")
            .await
            .unwrap()
            .len(),
        1000
    );
    let digest = &v.file("model.bin").unwrap().sha256;
    let cache_file = cache.path().join("sha256").join(digest);
    assert!(cache_file.exists(), "{}", b.name);
    corrupt_blob(b, &prefix, digest).await;
    assert_eq!(
        cached
            .read_file("fraud", &one, "model.bin")
            .await
            .unwrap()
            .as_ref(),
        [7u8; 1000],
        "{}: a cached blob is used before the store",
        b.name
    );
    std::fs::write(&cache_file, b"garbage").unwrap();
    assert!(matches!(
        cached.read_file("fraud", &one, "model.bin").await,
        Err(Error::Checksum { .. })
    ));
}

fn tiny_artifact() -> ModelArtifact {
    let spec = ModelSpec::new(
        vec!["a".into(), "b".into()],
        vec![
            LayerSpec::new(3, Activation::Relu),
            LayerSpec::new(1, Activation::Sigmoid),
        ],
    );
    ModelArtifact::new(
        spec,
        vec![
            (
                Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32 * 0.1),
                Array1::from(vec![0.1, 0.0, -0.1]),
            ),
            (Array2::from_elem((1, 3), 0.5), Array1::from(vec![0.2])),
        ],
    )
    .unwrap()
}

async fn artifacts_round_trip(b: &Backend) {
    let (r, _) = b.registry("artifact").await;
    let artifact = tiny_artifact();
    let v = r
        .register(
            "fraud",
            NewVersion::new()
                .artifact(&artifact)
                .unwrap()
                .reference_profile("{\"columns\": []}"),
        )
        .await
        .unwrap();
    let (record, loaded) = r
        .load_artifact("fraud", &VersionRef::Number(v.version))
        .await
        .unwrap();
    assert_eq!(record.files.len(), 3);
    assert_eq!(loaded.spec(), artifact.spec(), "{}", b.name);
    assert_eq!(loaded.layers(), artifact.layers());
    let profile = r
        .read_file("fraud", &VersionRef::Number(1), "reference_profile.json")
        .await
        .unwrap();
    assert_eq!(profile.as_ref(), b"{\"columns\": []}");
    // The decision threshold travels with the model: a `Box<dyn Predictor>` loaded back
    // labels rows with it, not with 0.5.
    let strict = artifact.clone().with_threshold(0.99).unwrap();
    let v = r
        .register("fraud", NewVersion::new().artifact(&strict).unwrap())
        .await
        .unwrap();
    let (_, predictor) = r
        .load_predictor("fraud", &VersionRef::Number(v.version))
        .await
        .unwrap();
    assert_eq!(predictor.threshold(), 0.99, "{}", b.name);
    let rows = Array2::from_shape_fn((4, 2), |(i, j)| (i as f32 - 1.5) * (j as f32 + 1.0));
    let p = predictor.predict_proba(rows.view()).unwrap();
    let labels = predictor.predict_labels(rows.view()).unwrap();
    assert!(p.iter().any(|p| (0.5..0.99).contains(p)), "{p:?}");
    for (p, l) in p.iter().zip(&labels) {
        assert_eq!(*l, u8::from(*p >= 0.99), "{}: p = {p}", b.name);
    }
}

/// An XGBoost and a LightGBM model (the core crate's fixtures) stored as their libraries wrote
/// them, checksummed like any file, and loaded back as predictors of their kind; a version
/// whose spec and body disagree is refused at loading.
async fn tree_models_round_trip(b: &Backend) {
    use mlops_core::model::{ModelArtifact, ModelKind};
    let (r, _) = b.registry("trees").await;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlops-core/tests/fixtures/trees");
    for (kind, file, body) in [
        (ModelKind::Xgboost, "xgb_numeric.json", "model.xgboost.json"),
        (ModelKind::Lightgbm, "lgb_numeric.txt", "model.lightgbm.txt"),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let artifact = ModelArtifact::from_model_file(kind, &bytes)
            .unwrap()
            .with_threshold(0.3)
            .unwrap();
        let v = r
            .register(
                kind.as_str(),
                NewVersion::new().artifact(&artifact).unwrap(),
            )
            .await
            .unwrap();
        let entry = v
            .file(body)
            .unwrap_or_else(|| panic!("{}: no {body}", b.name));
        assert_eq!(entry.size, bytes.len() as u64);
        let (_, loaded) = r
            .load_artifact(kind.as_str(), &VersionRef::Number(v.version))
            .await
            .unwrap();
        assert_eq!(loaded, artifact, "{}", b.name);
        let (_, predictor) = r
            .load_predictor(kind.as_str(), &VersionRef::Number(v.version))
            .await
            .unwrap();
        assert_eq!(predictor.threshold(), 0.3);
        let rows = Array2::from_shape_fn((3, predictor.n_features()), |(i, j)| {
            (i as f32 - 1.0) * (j as f32 * 0.1)
        });
        assert_eq!(
            predictor.predict_proba(rows.view()).unwrap(),
            mlops_core::model::predictor(&artifact)
                .unwrap()
                .predict_proba(rows.view())
                .unwrap()
        );
    }
    // model.json of an MLP beside a LightGBM body: refused when loaded, naming both.
    let lgb = std::fs::read(dir.join("lgb_numeric.txt")).unwrap();
    let mlp = tiny_artifact();
    r.register(
        "mixed",
        NewVersion::new()
            .bytes("model.json", mlp.spec_json().unwrap())
            .bytes("model.lightgbm.txt", lgb),
    )
    .await
    .unwrap();
    let e = r
        .load_artifact("mixed", &VersionRef::Number(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.lightgbm.txt"), "{}: {e}", b.name);
}

async fn search_by_tag_metric_latest(b: &Backend) {
    let (r, _) = b.registry("search").await;
    for (i, (auc, team)) in [
        (0.91, "risk"),
        (0.96, "risk"),
        (0.97, "growth"),
        (0.93, "risk"),
    ]
    .into_iter()
    .enumerate()
    {
        r.register(
            "fraud",
            model_files(i as u8)
                .metric("roc_auc", auc)
                .tag("team", team),
        )
        .await
        .unwrap();
    }
    let versions = |q: Query| {
        let r = r.clone();
        async move {
            r.search("fraud", &q)
                .await
                .unwrap()
                .iter()
                .map(|v| v.record.version)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        versions(Query::default().tag("team", "risk")).await,
        [1, 2, 4]
    );
    assert_eq!(
        versions(Query::default().metric("roc_auc>=0.95").unwrap()).await,
        [2, 3],
        "{}",
        b.name
    );
    assert_eq!(
        versions(
            Query::default()
                .tag("team", "risk")
                .metric("roc_auc>0.92")
                .unwrap()
                .latest()
        )
        .await,
        [4]
    );
    assert!(versions(Query::default().metric("f1>0").unwrap())
        .await
        .is_empty());
    r.delete_version("fraud", 4, "bad data").await.unwrap();
    assert_eq!(versions(Query::default().tag("team", "risk")).await, [1, 2]);
    let with_deleted = Query {
        include_deleted: true,
        ..Query::default().tag("team", "risk")
    };
    assert_eq!(versions(with_deleted).await, [1, 2, 4]);
}

async fn delete_is_a_tombstone_and_gc_collects(b: &Backend) {
    let (r, prefix) = b.registry("delete").await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let r = r.with_clock(clock.clone());
    let v1 = r.register("fraud", model_files(11)).await.unwrap();
    r.register("fraud", model_files(12)).await.unwrap();
    r.set_alias("fraud", "production", 1, None, "x")
        .await
        .unwrap();
    // Refused while aliased.
    match r.delete_version("fraud", 1, "no").await {
        Err(Error::Conflict { reason, .. }) => assert!(reason.contains("production"), "{reason}"),
        other => panic!("{}: {other:?}", b.name),
    }
    r.set_alias("fraud", "production", 2, Some(1), "move")
        .await
        .unwrap();
    let t = r.delete_version("fraud", 1, "leaked labels").await.unwrap();
    assert_eq!(t.why, "leaked labels");
    assert!(matches!(
        r.delete_version("fraud", 1, "again").await,
        Err(Error::Conflict { .. })
    ));
    let info = r.version("fraud", &VersionRef::Number(1)).await.unwrap();
    assert!(info.deleted.is_some());
    assert!(matches!(
        r.download(
            "fraud",
            &VersionRef::Number(1),
            tempfile::tempdir().unwrap().path()
        )
        .await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        r.set_alias("fraud", "canary", 1, None, "x").await,
        Err(Error::Conflict { .. })
    ));
    // Numbers are never reused.
    assert_eq!(
        r.register("fraud", model_files(13)).await.unwrap().version,
        3
    );
    // Within the grace period nothing goes; after it, exactly the deleted version's blobs.
    let grace = Duration::from_secs(3600);
    let early = r.gc(grace, "nightly").await.unwrap();
    assert_eq!(early.deleted, 0, "{}", b.name);
    assert_eq!(early.kept_recent, 2, "{}: {early:?}", b.name);
    clock.advance(Duration::from_secs(7200));
    let report = r.gc(grace, "nightly").await.unwrap();
    assert_eq!(report.deleted, 2, "{}: {report:?}", b.name);
    assert_eq!(report.bytes_deleted, v1.total_size());
    for f in &v1.files {
        let path = Path::from(format!(
            "{prefix}/blobs/sha256/{}/{}",
            &f.sha256[..2],
            f.sha256
        ));
        assert!(
            b.store.head(&path).await.is_err(),
            "{}: {} survived",
            b.name,
            f.name
        );
    }
    let out = tempfile::tempdir().unwrap();
    r.download("fraud", &VersionRef::Number(2), out.path())
        .await
        .unwrap();
    r.download("fraud", &VersionRef::Number(3), out.path())
        .await
        .unwrap();
}

async fn audit_records_who_what_why(b: &Backend) {
    let (r, _) = b.registry("audit").await;
    r.register("fraud", model_files(1).description("weekly retrain"))
        .await
        .unwrap();
    r.register("other", model_files(2)).await.unwrap();
    r.set_alias("fraud", "production", 1, None, "passed the gate")
        .await
        .unwrap();
    let events = r.audit_events(Some("fraud")).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.action, e.version, e.alias.clone(), e.why.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (AuditAction::Register, Some(1), None, "weekly retrain"),
            (
                AuditAction::SetAlias,
                Some(1),
                Some("production".to_string()),
                "passed the gate"
            ),
        ],
        "{}",
        b.name
    );
    assert!(events.iter().all(|e| e.actor == "conformance"));
    assert_eq!(r.audit_events(None).await.unwrap().len(), 3);
}

async fn concurrent_registrations_get_1_to_16(b: &Backend) {
    let (r, prefix) = b.registry("race-register").await;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        // Separate registry handles: nothing shared but the store.
        let store = b.store.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let r = Registry::with_store(store, &prefix, &RegistryConfig::default())
                .await
                .unwrap();
            r.register("fraud", model_files(i)).await.unwrap().version
        }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(
            got.insert(t.await.unwrap()),
            "{}: duplicate version",
            b.name
        );
    }
    assert_eq!(got, (1..=16).collect(), "{}", b.name);
    assert_eq!(r.list_versions("fraud").await.unwrap().len(), 16);
}

async fn concurrent_alias_moves_one_wins(b: &Backend) {
    let (r, prefix) = b.registry("race-alias").await;
    for i in 0..9 {
        r.register("fraud", model_files(i)).await.unwrap();
    }
    r.set_alias("fraud", "production", 1, None, "start")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for target in 2..=9u64 {
        let store = b.store.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let r = Registry::with_store(store, &prefix, &RegistryConfig::default())
                .await
                .unwrap();
            r.set_alias("fraud", "production", target, Some(1), "race")
                .await
                .map(|e| e.target)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(target) => winners.push(target),
            Err(Error::AliasMoved { .. }) => {}
            Err(e) => panic!("{}: {e}", b.name),
        }
    }
    assert_eq!(winners.len(), 1, "{}: winners {winners:?}", b.name);
    let now = r.alias("fraud", "production").await.unwrap().unwrap();
    assert_eq!(now.target, winners[0]);
    assert_eq!(now.seq, 2, "{}: one entry after the first", b.name);
}

/// State documents (a rollout's state) take the alias logs' conditional create: eight writers
/// from the same `seq`, one wins; the loser's value is nowhere; the log reads back in order.
async fn concurrent_state_writes_one_wins(b: &Backend) {
    let (r, prefix) = b.registry("race-state").await;
    assert_eq!(r.state("fraud", "rollout").await.unwrap(), None);
    let first = r
        .put_state(
            "fraud",
            "rollout",
            0,
            serde_json::json!({"step": 0}),
            "start",
        )
        .await
        .unwrap()
        .expect("the first write of a new log");
    assert_eq!(first.seq, 1);
    // A writer still at 0 after the first write loses and writes nothing.
    let stale = r
        .put_state(
            "fraud",
            "rollout",
            0,
            serde_json::json!({"step": 9}),
            "stale",
        )
        .await
        .unwrap();
    assert_eq!(stale, None, "{}", b.name);
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let store = b.store.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let r = Registry::with_store(store, &prefix, &RegistryConfig::default())
                .await
                .unwrap();
            r.put_state(
                "fraud",
                "rollout",
                1,
                serde_json::json!({"step": 1, "by": writer}),
                "race",
            )
            .await
            .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(entry) = t.await.unwrap() {
            winners.push(entry);
        }
    }
    assert_eq!(winners.len(), 1, "{}: winners {winners:?}", b.name);
    let now = r.state("fraud", "rollout").await.unwrap().unwrap();
    assert_eq!(now, winners[0], "{}", b.name);
    assert_eq!(now.seq, 2);
    let e = r
        .put_state("fraud", "../x", 0, serde_json::json!(null), "bad")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("state name"), "{}: {e}", b.name);
}

/// Registers `model_files(seed)` through `faulty`, which must fail it with `message`; a
/// healthy handle on the same prefix then sees no version and no model. Returns both handles.
async fn failed_registration_is_invisible(
    b: &Backend,
    faulty: FaultyStore,
    prefix: &str,
    seed: u8,
    message: &str,
) -> (Registry, Registry) {
    let r = Registry::with_store(Arc::new(faulty), prefix, &RegistryConfig::default())
        .await
        .unwrap();
    let e = r.register("fraud", model_files(seed)).await.unwrap_err();
    assert!(e.to_string().contains(message), "{}: {e}", b.name);
    let healthy = Registry::with_store(b.store.clone(), prefix, &RegistryConfig::default())
        .await
        .unwrap();
    assert!(
        healthy.list_versions("fraud").await.unwrap().is_empty(),
        "{}",
        b.name
    );
    assert!(
        healthy.list_models().await.unwrap().is_empty(),
        "{}",
        b.name
    );
    (r, healthy)
}

async fn failed_upload_leaves_no_version(b: &Backend) {
    let prefix = b.fresh_prefix("fault");
    let faulty = FaultyStore::failing_blob_puts_after(b.store.clone(), 1);
    let (_, healthy) = failed_registration_is_invisible(b, faulty, &prefix, 3, "injected").await;
    // The next registration gets version 1: no gap.
    assert_eq!(
        healthy
            .register("fraud", model_files(3))
            .await
            .unwrap()
            .version,
        1
    );
}

async fn store_ignoring_conditional_creates_is_refused(b: &Backend) {
    let faulty = Arc::new(FaultyStore::ignoring_create(b.store.clone()));
    // Opening writes nothing; the probe runs before the first write and refuses the store.
    let r = Registry::with_store(
        faulty,
        &b.fresh_prefix("unsafe"),
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert!(r.list_models().await.unwrap().is_empty());
    match r.register("fraud", model_files(1)).await {
        Err(Error::UnsafeStore { .. }) => {}
        other => panic!("{}: {other:?}", b.name),
    }
    assert!(matches!(
        r.set_alias("fraud", "production", 1, None, "x").await,
        Err(Error::UnsafeStore { .. }) | Err(Error::NotFound { .. })
    ));
}

/// Every entry of `dir` whose name starts with `.NAME.` (staging or moved-aside folders).
fn siblings_of(dir: &std::path::Path) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&format!(".{name}.")))
        .collect()
}

async fn download_replaces_a_folder_whole_or_not_at_all(b: &Backend) {
    let (r, prefix) = b.registry("swap").await;
    r.register("fraud", model_files(1)).await.unwrap();
    let v2 = r
        .register(
            "fraud",
            NewVersion::new()
                .bytes("model.bin", vec![2u8; 1000])
                .bytes("weights.bin", vec![22u8; 500]),
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("serving");
    r.download("fraud", &VersionRef::Number(1), &dir)
        .await
        .unwrap();
    let v1_files = |dir: &std::path::Path| {
        assert_eq!(
            std::fs::read(dir.join("model.bin")).unwrap(),
            [1u8; 1000],
            "{}",
            b.name
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("extra/notes.txt")).unwrap(),
            "model 1"
        );
        assert!(
            !dir.join("weights.bin").exists(),
            "{}: a v2 file beside v1's",
            b.name
        );
    };
    v1_files(&dir);
    // v2's second blob is corrupt: the download fails and the folder still holds v1, whole.
    corrupt_blob(b, &prefix, &v2.file("weights.bin").unwrap().sha256).await;
    let e = r
        .download("fraud", &VersionRef::Number(2), &dir)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{}: {e}", b.name);
    v1_files(&dir);
    assert!(
        siblings_of(&dir).is_empty(),
        "{}: {:?}",
        b.name,
        siblings_of(&dir)
    );
    // A good download replaces the folder as a whole: no file of the old version is left.
    let (r3, _) = b.registry("swap-next").await;
    r3.register("fraud", model_files(3)).await.unwrap();
    r3.download("fraud", &VersionRef::Number(1), &dir)
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), [3u8; 1000]);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(mlops_registry::DOWNLOAD_MARKER)).unwrap())
            .unwrap();
    assert_eq!(marker["version"], 1);
    assert!(siblings_of(&dir).is_empty(), "{}", b.name);
    // A folder with other files is never replaced.
    let other = root.path().join("mine");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let e = r
        .download("fraud", &VersionRef::Number(1), &other)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("download folder"), "{e}");
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
}

async fn read_only_store_serves_reads(b: &Backend) {
    let (r, prefix) = b.registry("readonly").await;
    r.register("fraud", model_files(5)).await.unwrap();
    r.set_alias("fraud", "production", 1, None, "first")
        .await
        .unwrap();
    let ro = Registry::with_store(
        Arc::new(FaultyStore::read_only(b.store.clone())),
        &prefix,
        &RegistryConfig::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: opening read-only: {e}", b.name));
    assert_eq!(ro.list_versions("fraud").await.unwrap().len(), 1);
    let prod = VersionRef::Alias("production".into());
    assert_eq!(ro.version("fraud", &prod).await.unwrap().record.version, 1);
    let out = tempfile::tempdir().unwrap();
    ro.download("fraud", &prod, out.path().join("m"))
        .await
        .unwrap();
    // A write is refused with the store's own reason.
    let e = ro.register("fraud", model_files(6)).await.unwrap_err();
    assert!(e.to_string().contains("read-only"), "{}: {e}", b.name);
}

async fn gc_with_no_grace_during_a_registration_keeps_its_blobs(b: &Backend) {
    let prefix = b.fresh_prefix("gcrace");
    let reached = Arc::new(tokio::sync::Notify::new());
    let resume = Arc::new(tokio::sync::Notify::new());
    let paused = Registry::with_store(
        Arc::new(FaultyStore::pausing_after_first_blob(
            b.store.clone(),
            reached.clone(),
            resume.clone(),
        )),
        &prefix,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    let healthy = Registry::with_store(b.store.clone(), &prefix, &RegistryConfig::default())
        .await
        .unwrap();
    let registering = tokio::spawn(async move {
        paused
            .register(
                "fraud",
                NewVersion::new().bytes("model.bin", vec![9u8; 100]),
            )
            .await
    });
    reached.notified().await;
    // The blob is written, the record is not: gc with no grace must keep the blob.
    let report = healthy.gc(Duration::ZERO, "race").await.unwrap();
    assert_eq!(report.deleted, 0, "{}: {report:?}", b.name);
    assert_eq!(report.kept_pending, 1, "{}: {report:?}", b.name);
    resume.notify_one();
    let v = registering.await.unwrap().unwrap();
    let bytes = healthy
        .read_file("fraud", &VersionRef::Number(v.version), "model.bin")
        .await
        .unwrap_or_else(|e| panic!("{}: registered but unreadable: {e}", b.name));
    assert_eq!(bytes.as_ref(), [9u8; 100]);
    // Once registered, the pending note is gone and the record protects the blob.
    let report = healthy.gc(Duration::ZERO, "after").await.unwrap();
    assert_eq!(
        (report.deleted, report.referenced, report.kept_pending),
        (0, 1, 0),
        "{}",
        b.name
    );
}

async fn one_unreadable_record_does_not_hide_the_others(b: &Backend) {
    let (r, prefix) = b.registry("unreadable").await;
    for seed in 1..=3 {
        r.register("fraud", model_files(seed)).await.unwrap();
    }
    let v2 = r.version("fraud", &VersionRef::Number(2)).await.unwrap();
    // Truncate v2's record: still names its blob digests, no longer parses.
    let path = Path::from(format!("{prefix}/models/fraud/versions/0000000002.json"));
    let text = String::from_utf8(read_object(b, &path).await).unwrap();
    let broken = &text[..text.len() - 20];
    b.store
        .put(&path, PutPayload::from(broken.as_bytes().to_vec()))
        .await
        .unwrap();
    let (versions, unreadable) = r.list_versions_checked("fraud").await.unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.record.version).collect();
    assert_eq!(numbers, [1, 3], "{}", b.name);
    assert_eq!(unreadable.len(), 1);
    assert!(
        unreadable[0].key.ends_with("0000000002.json"),
        "{unreadable:?}"
    );
    assert_eq!(r.list_versions("fraud").await.unwrap().len(), 2);
    // gc goes on, and keeps every blob the broken record mentions.
    let report = r.gc(Duration::ZERO, "with a broken record").await.unwrap();
    assert_eq!(report.unreadable_records.len(), 1, "{}", b.name);
    for f in &v2.record.files {
        assert!(broken.contains(&f.sha256) || !text.contains(&f.sha256));
    }
    assert_eq!(report.deleted, 0, "{}: {report:?}", b.name);
}

async fn latest_and_alias_messages(b: &Backend) {
    let (r, _) = b.registry("latest").await;
    let latest = VersionRef::Alias(mlops_registry::LATEST.into());
    assert!(matches!(
        r.resolve("fraud", &latest).await,
        Err(Error::NotFound { .. })
    ));
    for seed in 1..=3 {
        r.register("fraud", model_files(seed)).await.unwrap();
    }
    r.delete_version("fraud", 3, "bad").await.unwrap();
    assert_eq!(r.resolve("fraud", &latest).await.unwrap(), 2, "{}", b.name);
    assert!(r.set_alias("fraud", "latest", 1, None, "x").await.is_err());
    // An alias that was never set: the error says it is unset, not that someone moved it.
    let e = r
        .set_alias("fraud", "production", 1, Some(2), "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unset"), "{e}");
    assert!(!e.to_string().contains("someone moved"), "{e}");
}

async fn loading_production_takes_few_store_calls(b: &Backend) {
    let (r, prefix) = b.registry("calls").await;
    r.register(
        "fraud",
        NewVersion::new().artifact(&tiny_artifact()).unwrap(),
    )
    .await
    .unwrap();
    for extra in ["staging", "shadow", "canary"] {
        r.set_alias("fraud", extra, 1, None, "x").await.unwrap();
    }
    r.set_alias("fraud", "production", 1, None, "x")
        .await
        .unwrap();
    let counting = Arc::new(FaultyStore::failing_blob_puts_after(
        b.store.clone(),
        usize::MAX,
    ));
    let reader = Registry::with_store(counting.clone(), &prefix, &RegistryConfig::default())
        .await
        .unwrap();
    let before = counting.calls.load(std::sync::atomic::Ordering::SeqCst);
    let (record, _) = reader
        .load_artifact("fraud", &VersionRef::Alias("production".into()))
        .await
        .unwrap();
    let calls = counting.calls.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(record.version, 1);
    // The alias log's hint, its last entry and the probe past it, the record and the
    // tombstone, two blobs: seven, however many other aliases there are (it was about 30)
    // and however long the alias's log (see `long_logs_cost_the_same_few_store_calls`).
    assert!(calls <= 7, "{}: {calls} store calls", b.name);
}

async fn a_fault_between_blobs_and_record_leaves_nothing_half_visible(b: &Backend) {
    let prefix = b.fresh_prefix("record-fault");
    let faulty = FaultyStore::failing_record_creates(b.store.clone(), 1);
    let (r, healthy) =
        failed_registration_is_invisible(b, faulty, &prefix, 4, "version record (injected)").await;
    // Nothing visible; the blobs are garbage (after the grace).
    let report = healthy.gc(Duration::ZERO, "after the fault").await.unwrap();
    assert_eq!(
        (report.kept_pending, report.referenced),
        (0, 0),
        "{}: {report:?}",
        b.name
    );
    assert_eq!(
        report.deleted, 2,
        "{}: both blobs collected: {report:?}",
        b.name
    );
    // The same handle registers next: version 1, no gap.
    assert_eq!(
        r.register("fraud", model_files(4)).await.unwrap().version,
        1
    );
}

async fn many_rounds_of_racing_writers_give_no_gap_and_one_alias_winner(
    b: &Backend,
    rounds: usize,
    writers: u64,
) {
    let prefix = b.fresh_prefix("stress");
    // Every writer has its own handle on a store that delays each call by up to 300 µs, so
    // the interleaving differs from round to round.
    let store = Arc::new(FaultyStore::delaying(b.store.clone(), 300));
    let handle = |store: Arc<FaultyStore>, prefix: String| async move {
        Registry::with_store(store, &prefix, &RegistryConfig::default())
            .await
            .unwrap()
    };
    let setup = handle(store.clone(), prefix.clone()).await;
    for round in 0..rounds {
        let model = format!("m{round}");
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (store, prefix, model) = (store.clone(), prefix.clone(), model.clone());
                tokio::spawn(async move {
                    let r = handle(store, prefix).await;
                    r.register(
                        &model,
                        NewVersion::new().bytes("w", w.to_le_bytes().to_vec()),
                    )
                    .await
                    .map(|v| v.version)
                })
            })
            .collect();
        let mut got = BTreeSet::new();
        for t in tasks {
            let v = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert!(
                got.insert(v),
                "{}: round {round}: version {v} twice",
                b.name
            );
        }
        assert_eq!(got, (1..=writers).collect(), "{}: round {round}", b.name);
        // Every writer moves the alias from the same (unset) state: exactly one wins.
        let tasks: Vec<_> = (1..=writers)
            .map(|target| {
                let (store, prefix, model) = (store.clone(), prefix.clone(), model.clone());
                tokio::spawn(async move {
                    let r = handle(store, prefix).await;
                    r.set_alias(&model, "production", target, None, "race")
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => winners += 1,
                Err(Error::AliasMoved { .. }) => {}
                Err(e) => panic!("{}: {e}", b.name),
            }
        }
        assert_eq!(winners, 1, "{}: round {round}", b.name);
        let entry = setup.alias(&model, "production").await.unwrap().unwrap();
        assert_eq!(entry.seq, 1, "{}: round {round}: one log entry", b.name);
    }
    // The races really happened: conditional creates were refused and retried.
    let conflicts = store.conflicts.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{}: {rounds} rounds x {writers} writers, {conflicts} create conflicts",
        b.name
    );
    assert!(
        conflicts >= rounds,
        "{}: only {conflicts} conflicts in {rounds} rounds of {writers} writers",
        b.name
    );
}

/// Writes versions `numbers` of `model` straight into the store, each a copy of version 1's
/// record with its number changed (what a bulk import leaves: no hint moved past them).
async fn bulk_versions(
    b: &Backend,
    prefix: &str,
    model: &str,
    numbers: std::ops::RangeInclusive<u64>,
) {
    use futures::StreamExt;
    let dir = format!("{prefix}/models/{model}/versions");
    let first = read_object(b, &Path::from(format!("{dir}/0000000001.json"))).await;
    let record: serde_json::Value = serde_json::from_slice(&first).unwrap();
    futures::stream::iter(numbers)
        .map(|n| {
            let mut record = record.clone();
            record["version"] = n.into();
            let path = Path::from(format!("{dir}/{n:010}.json"));
            let store = b.store.clone();
            async move {
                let bytes = serde_json::to_vec(&record).unwrap();
                store.put(&path, PutPayload::from(bytes)).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// What `op` costs in store calls on a fresh handle over `b`'s store under `prefix` (and no
/// object listed: a listing grows with the log however few calls it takes).
async fn store_calls<T, F, Fut>(b: &Backend, prefix: &str, op: F) -> (T, usize)
where
    F: FnOnce(Registry) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let counting = Arc::new(FaultyStore::failing_blob_puts_after(
        b.store.clone(),
        usize::MAX,
    ));
    let reader = Registry::with_store(counting.clone(), prefix, &RegistryConfig::default())
        .await
        .unwrap();
    let out = op(reader).await;
    let listed = counting.listed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(listed, 0, "{}: objects listed", b.name);
    (
        out,
        counting.calls.load(std::sync::atomic::Ordering::SeqCst),
    )
}

/// Claiming a number, resolving `@latest` and an alias, loading `@production` and reading a
/// page cost the same store calls at 8 versions as at 400 (and an alias moved once or 40
/// times): the hint of each numbered log replaces the listing of every key.
async fn long_logs_cost_the_same_few_store_calls(b: &Backend) {
    let (r, prefix) = b.registry("heads").await;
    let mut costs = Vec::new();
    for (model, n, moves) in [("short", 8u64, 1u64), ("long", 400, 40)] {
        let artifact = || NewVersion::new().artifact(&tiny_artifact()).unwrap();
        r.register(model, artifact()).await.unwrap();
        bulk_versions(b, &prefix, model, 2..=n).await;
        let mut expected = None;
        for target in (n - moves + 1)..=n {
            r.set_alias(model, "production", target, expected, "move")
                .await
                .unwrap();
            expected = Some(target);
        }
        // A registration past the bulk-written versions gets the next number (its hint
        // still said 1) and moves the hint.
        assert_eq!(r.register(model, artifact()).await.unwrap().version, n + 1);
        let latest = VersionRef::Alias(mlops_registry::LATEST.into());
        let production = VersionRef::Alias("production".into());
        let (v, latest_calls) = store_calls(b, &prefix, |h| async move {
            h.resolve(model, &latest).await.unwrap()
        })
        .await;
        assert_eq!(v, n + 1, "{}", b.name);
        let (v, load_calls) = store_calls(b, &prefix, |h| async move {
            h.load_artifact(model, &production).await.unwrap().0.version
        })
        .await;
        assert_eq!(v, n, "{}", b.name);
        let (v, register_calls) = store_calls(b, &prefix, |h| async move {
            h.register(model, artifact()).await.unwrap().version
        })
        .await;
        assert_eq!(v, n + 2, "{}", b.name);
        let (page, page_calls) = store_calls(b, &prefix, |h| async move {
            h.list_versions_page(model, n - 4, 5).await.unwrap()
        })
        .await;
        let numbers: Vec<u64> = page.versions.iter().map(|v| v.record.version).collect();
        assert_eq!(
            numbers,
            ((n - 3)..=(n + 1)).collect::<Vec<_>>(),
            "{}",
            b.name
        );
        assert_eq!(
            (page.next_after, page.last_version),
            (Some(n + 1), n + 2),
            "{}",
            b.name
        );
        costs.push([latest_calls, load_calls, register_calls, page_calls]);
    }
    assert_eq!(
        costs[0], costs[1],
        "{}: store calls [@latest, load @production, register, a page of 5] at 8 and at 400 \
         versions",
        b.name
    );
    // The hint, the entry it names, the probe past it (and the tombstone for @latest).
    assert!(costs[0][0] <= 4, "{}: @latest took {:?}", b.name, costs[0]);
}

/// A hint that lags (a bulk import), names a missing entry, is not JSON or is gone costs
/// probes, never a duplicate or a gap; the next write repairs it. Pages list every version
/// once, deleted ones flagged and unreadable ones named, and bad page limits are refused.
async fn hints_that_lie_or_lag_cost_probes_never_numbers(b: &Backend) {
    let (r, prefix) = b.registry("hints").await;
    let hint = Path::from(format!("{prefix}/models/fraud/versions/head.json"));
    let read_hint = || async {
        let bytes = read_object(b, &hint).await;
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["last"].clone()
    };
    r.register("fraud", model_files(1)).await.unwrap();
    assert_eq!(read_hint().await, 1, "{}", b.name);
    bulk_versions(b, &prefix, "fraud", 2..=50).await;
    let fresh = || async {
        Registry::with_store(b.store.clone(), &prefix, &RegistryConfig::default())
            .await
            .unwrap()
    };
    let mut expected = 50;
    for lie in [
        &b"{\"last\": 5000}"[..],
        b"not json",
        b"{\"last\": -3}",
        b"{\"last\": 20}",
        b"",
    ] {
        b.store
            .put(&hint, PutPayload::from(lie.to_vec()))
            .await
            .unwrap();
        let h = fresh().await;
        let latest = VersionRef::Alias(mlops_registry::LATEST.into());
        assert_eq!(
            h.resolve("fraud", &latest).await.unwrap(),
            expected,
            "{}: hint {:?}",
            b.name,
            String::from_utf8_lossy(lie)
        );
        expected += 1;
        let v = h.register("fraud", model_files(2)).await.unwrap().version;
        assert_eq!(
            v,
            expected,
            "{}: hint {:?}",
            b.name,
            String::from_utf8_lossy(lie)
        );
        assert_eq!(read_hint().await, expected, "{}: repaired", b.name);
    }
    // No hint at all (a registry written before hints): found by probing.
    b.store.delete(&hint).await.unwrap();
    let h = fresh().await;
    expected += 1;
    assert_eq!(
        h.register("fraud", model_files(3)).await.unwrap().version,
        expected
    );
    // An alias whose hint lies still resolves to its last move.
    r.set_alias("fraud", "production", 7, None, "x")
        .await
        .unwrap();
    r.set_alias("fraud", "production", 9, Some(7), "x")
        .await
        .unwrap();
    let alias_hint = Path::from(format!(
        "{prefix}/models/fraud/aliases/production/head.json"
    ));
    b.store
        .put(&alias_hint, PutPayload::from(&b"{\"last\": 99}"[..]))
        .await
        .unwrap();
    let h = fresh().await;
    let entry = h.alias("fraud", "production").await.unwrap().unwrap();
    assert_eq!((entry.seq, entry.target), (2, Some(9)), "{}", b.name);
    h.set_alias("fraud", "production", 11, Some(9), "x")
        .await
        .unwrap();
    assert_eq!(
        h.alias_history("fraud", "production").await.unwrap().len(),
        3
    );
    // @latest passes over deleted versions from the top.
    let top = expected;
    r.delete_version("fraud", top, "bad").await.unwrap();
    r.delete_version("fraud", top - 1, "bad").await.unwrap();
    let latest = fresh().await.latest("fraud").await.unwrap().unwrap();
    assert_eq!(latest.record.version, top - 2, "{}", b.name);
    // Pages: every version once, as the full listing has them; an unreadable record named.
    let bad = Path::from(format!("{prefix}/models/fraud/versions/0000000003.json"));
    b.store
        .put(&bad, PutPayload::from(&b"{"[..]))
        .await
        .unwrap();
    let (all, unreadable) = r.list_versions_checked("fraud").await.unwrap();
    assert_eq!(unreadable.len(), 1, "{}: the hint is not a record", b.name);
    let (mut paged, mut named, mut after) = (Vec::new(), Vec::new(), Some(0));
    while let Some(a) = after {
        let page = r.list_versions_page("fraud", a, 7).await.unwrap();
        assert!(page.versions.len() + page.unreadable.len() <= 7);
        paged.extend(page.versions);
        named.extend(page.unreadable.into_iter().map(|u| u.key));
        after = page.next_after;
    }
    assert_eq!(paged, all, "{}", b.name);
    assert_eq!(
        named,
        ["models/fraud/versions/0000000003.json"],
        "{}",
        b.name
    );
    assert_eq!(paged.iter().filter(|v| v.deleted.is_some()).count(), 2);
    let past = r.list_versions_page("fraud", 10_000, 5).await.unwrap();
    assert!(past.versions.is_empty() && past.next_after.is_none());
    assert_eq!(past.last_version, top, "{}", b.name);
    for limit in [0, mlops_registry::MAX_PAGE + 1] {
        let e = r.list_versions_page("fraud", 0, limit).await.unwrap_err();
        assert!(e.to_string().contains("page limit"), "{e}");
    }
    // The store emptied under a handle that remembers what it saw: what it remembers is
    // checked, not trusted (the alias is unset, the next version is 1, not top + 1).
    let (r, prefix) = b.registry("emptied").await;
    for seed in 1..=3 {
        r.register("fraud", model_files(seed)).await.unwrap();
    }
    r.set_alias("fraud", "production", 3, None, "x")
        .await
        .unwrap();
    empty_store(b, &prefix).await;
    assert_eq!(
        r.alias("fraud", "production").await.unwrap(),
        None,
        "{}",
        b.name
    );
    assert_eq!(
        r.register("fraud", model_files(4)).await.unwrap().version,
        1,
        "{}",
        b.name
    );
    // Emptied again, and another handle registers first (its hint says 1): this handle,
    // which saw 3, goes on at 2, not 4.
    for seed in 5..=6 {
        r.register("fraud", model_files(seed)).await.unwrap();
    }
    empty_store(b, &prefix).await;
    let other = Registry::with_store(b.store.clone(), &prefix, &RegistryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        other
            .register("fraud", model_files(7))
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        r.register("fraud", model_files(8)).await.unwrap().version,
        2,
        "{}",
        b.name
    );
    // @latest past many deleted versions at the top (probed in concurrent batches).
    for seed in 0..40u8 {
        r.register("fraud", model_files(seed)).await.unwrap();
    }
    for v in 5..=42 {
        r.delete_version("fraud", v, "a bad batch").await.unwrap();
    }
    let latest = VersionRef::Alias(mlops_registry::LATEST.into());
    assert_eq!(r.resolve("fraud", &latest).await.unwrap(), 4, "{}", b.name);
    for v in 1..=4 {
        r.delete_version("fraud", v, "all of them").await.unwrap();
    }
    assert!(matches!(
        r.resolve("fraud", &latest).await,
        Err(Error::NotFound { .. })
    ));
}

/// Deletes every object under `prefix` behind the registry's back.
async fn empty_store(b: &Backend, prefix: &str) {
    use futures::TryStreamExt;
    let everything: Vec<_> = b
        .store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    for path in everything {
        b.store.delete(&path).await.unwrap();
    }
}
