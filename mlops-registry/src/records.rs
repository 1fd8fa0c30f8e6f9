//! What the registry writes: version records, alias log entries, tombstones and audit
//! events, as JSON objects in the store. Records are written once and never changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One file of a version: its name in the version and its content's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path inside the version (`model.json`, `reference_profile.json`, ...).
    pub name: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The data a version was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFingerprint {
    /// Lower-case hex sha256 of the training data (as the host computes it).
    pub sha256: String,
    /// Rows.
    pub rows: u64,
}

/// Where a version came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// The tracking run that produced it.
    pub run_id: Option<mlops_core::RunId>,
    /// The training data.
    pub dataset: Option<DatasetFingerprint>,
    /// The code that trained it (a git commit, a package version).
    pub code_version: Option<String>,
    /// The version it was derived from (retrained or fine-tuned from).
    pub parent_version: Option<u64>,
}

/// A registered version, as stored (immutable once written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The model's name.
    pub model: String,
    /// The version number: 1, 2, ... with no gaps.
    pub version: u64,
    /// Every file, in name order.
    pub files: Vec<FileEntry>,
    /// Metrics (test ROC AUC, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Hyperparameters and settings.
    pub params: BTreeMap<String, String>,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// Where it came from.
    pub lineage: Lineage,
    /// A human description.
    pub description: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Who registered it.
    pub created_by: String,
}

impl VersionRecord {
    /// The recorded metrics that are gate metrics, typed: what
    /// [`MetricGate::evaluate`](mlops_core::gate::MetricGate::evaluate) takes for a champion.
    ///
    /// ```
    /// # use mlops_registry::{NewVersion, Registry, RegistryConfig, VersionRef};
    /// # use mlops_core::gate::{GateRule, MetricGate, MetricValues};
    /// # use mlops_core::metrics::Metric;
    /// # futures::executor::block_on(async {
    /// let registry = Registry::open("memory:///", &RegistryConfig::default()).await?;
    /// let scores = MetricValues::new().with(Metric::RocAuc, 0.95).with(Metric::Accuracy, 0.9);
    /// registry.register("fraud", NewVersion::new().bytes("m", vec![1]).metrics(&scores)).await?;
    /// let champion = registry.version("fraud", &VersionRef::Number(1)).await?.record;
    /// // A candidate against the champion: one call.
    /// let candidate = MetricValues::new().with(Metric::RocAuc, 0.96).with(Metric::Accuracy, 0.91);
    /// let gate = MetricGate {
    ///     rules: vec![GateRule::Champion { metric: Metric::RocAuc, tolerance: 0.0, use_confidence_bound: false }],
    ///     ..MetricGate::default()
    /// };
    /// assert!(gate.evaluate(&candidate, Some(&champion.metric_values())).passed);
    /// let worse = MetricValues::new().with(Metric::RocAuc, 0.94);
    /// assert!(!gate.evaluate(&worse, Some(&champion.metric_values())).passed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metric_values(&self) -> mlops_core::gate::MetricValues {
        mlops_core::gate::MetricValues::from_named(
            self.metrics.iter().map(|(k, v)| (k.as_str(), *v)),
        )
    }

    /// The entry of file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Total bytes of the version's files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A version together with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The record.
    #[serde(flatten)]
    pub record: VersionRecord,
    /// The tombstone, when the version was deleted.
    pub deleted: Option<Tombstone>,
    /// Aliases pointing at it now.
    pub aliases: Vec<String>,
}

/// Marks a version deleted (its number is never reused; its blobs become garbage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub why: String,
}

/// One move of an alias: entry `seq` of the alias's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEntry {
    /// Position in the alias's log, from 1.
    pub seq: u64,
    /// The alias.
    pub alias: String,
    /// The version it points to from now on (`None`: cleared).
    pub target: Option<u64>,
    /// The version it pointed to before.
    pub previous: Option<u64>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub why: String,
}

/// One write of a named state document of a model (a rollout's state, for serving): entry
/// `seq` of the document's log, claimed with a conditional create like an alias move, so two
/// writers from the same `seq` cannot both succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Position in the document's log, from 1.
    pub seq: u64,
    /// The document's name.
    pub name: String,
    /// Its value from now on.
    pub value: serde_json::Value,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub why: String,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A version was registered.
    Register,
    /// An alias moved (or was cleared).
    SetAlias,
    /// A version was deleted.
    Delete,
    /// Garbage collection removed blobs.
    GarbageCollect,
}

impl AuditAction {
    /// Every variant, in declaration order.
    pub const ALL: [AuditAction; 4] = [
        AuditAction::Register,
        AuditAction::SetAlias,
        AuditAction::Delete,
        AuditAction::GarbageCollect,
    ];

    /// The serialized name (`register`, `set_alias`, `delete`, `garbage_collect`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::Register => "register",
            AuditAction::SetAlias => "set_alias",
            AuditAction::Delete => "delete",
            AuditAction::GarbageCollect => "garbage_collect",
        }
    }
}

/// One change to the registry: who, when, what, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What kind of change.
    pub action: AuditAction,
    /// The model, when one is concerned.
    pub model: Option<String>,
    /// The version, when one is concerned.
    pub version: Option<u64>,
    /// The alias, for alias moves.
    pub alias: Option<String>,
    /// The alias's previous target, for alias moves.
    pub from: Option<u64>,
    /// Why (the caller's reason).
    pub why: String,
    /// Details (blob counts for garbage collection, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// A version by number or through an alias (`3`, `@production`, `@latest`): mlops-core's one
/// grammar, re-exported (also as `mlops_registry::VersionRef`).
pub use mlops_core::version_ref::VersionRef;

/// Renders an alias target for messages.
pub(crate) fn target_text(target: Option<u64>) -> String {
    target.map_or_else(|| "nothing".to_string(), |v| format!("version {v}"))
}
