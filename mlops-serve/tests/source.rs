//! The `ModelSource` contract: the public suite (`mlops_serve::testing::model_source`) run on
//! the in-memory source and (feature `registry`) on a registry — versions loaded, aliases
//! moved only by a winning compare-and-swap, missing versions and models errors —; and the
//! suite failing a source that moves aliases blindly. (A malformed reference never reaches a
//! source: it is refused where it is parsed, as a `VersionRef`.)

use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec};
use mlops_serve::source::{MemorySource, ModelSource};
use mlops_serve::testing;
use ndarray::array;

fn artifact(weight: f32) -> ModelArtifact {
    let spec = ModelSpec::new(
        vec!["x".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    ModelArtifact::new(spec, vec![(array![[weight]], array![0.0_f32])]).unwrap()
}

/// The public suite, on a source holding versions 1 and 2 of `fraud` and no aliases; then
/// what the suite's moves left (`production` on 2, `canary` unset).
async fn conformance(name: &str, s: &dyn ModelSource) {
    let (a, b) = (artifact(1.0), artifact(2.0));
    testing::model_source(s, "fraud", &[(1, &a), (2, &b)]).await;
    assert_eq!(
        s.alias("fraud", "production").await.unwrap(),
        Some(2),
        "{name}"
    );
    assert_eq!(s.alias("fraud", "canary").await.unwrap(), None, "{name}");
}

#[tokio::test]
async fn the_memory_source_conforms() {
    let s = MemorySource::new();
    assert_eq!(s.add("fraud", artifact(1.0)), 1);
    assert_eq!(s.add("fraud", artifact(2.0)), 2);
    conformance("memory", &s).await;
}

/// A source whose alias moves ignore the expectation (a blind write, not a compare-and-swap).
struct IgnoresExpected(MemorySource);

#[async_trait::async_trait]
impl ModelSource for IgnoresExpected {
    async fn alias(&self, model: &str, alias: &str) -> mlops_serve::Result<Option<u64>> {
        self.0.alias(model, alias).await
    }
    async fn load(&self, model: &str, version: u64) -> mlops_serve::Result<ModelArtifact> {
        self.0.load(model, version).await
    }
    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        to: Option<u64>,
        _expected: Option<u64>,
        why: &str,
    ) -> mlops_serve::Result<bool> {
        let now = self.0.alias(model, alias).await?;
        self.0.move_alias(model, alias, to, now, why).await
    }
}

#[tokio::test]
#[should_panic(expected = "expected false and Some(1) (a stale expectation moves nothing)")]
async fn the_suite_fails_a_source_whose_moves_ignore_the_expectation() {
    let s = IgnoresExpected(MemorySource::new());
    let (a, b) = (artifact(1.0), artifact(2.0));
    s.0.add("fraud", a.clone());
    s.0.add("fraud", b.clone());
    testing::model_source(&s, "fraud", &[(1, &a), (2, &b)]).await;
}

#[cfg(feature = "registry")]
#[tokio::test]
async fn the_registry_conforms() {
    use mlops_registry::{NewVersion, Registry, RegistryConfig};
    let r = Registry::open("memory:///", &RegistryConfig::default())
        .await
        .unwrap();
    for w in [1.0, 2.0] {
        r.register("fraud", NewVersion::new().artifact(&artifact(w)).unwrap())
            .await
            .unwrap();
    }
    conformance("registry", &r).await;
}

// What a plain `cargo test -p mlops-serve` leaves out, said in its output.
#[cfg(not(feature = "registry"))]
#[test]
#[ignore = "left out: the ModelSource suite on mlops-registry; run with --features registry (the workspace test does)"]
fn the_registry_conforms() {}
