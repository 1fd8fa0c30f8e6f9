//! [`RunId`]: the identifier of a tracked run, shared by the tracker (which issues it) and
//! the registry (whose lineage records it).

use serde::{Deserialize, Serialize};

/// A run's identifier, as the tracking backend issued it. Serialized as a plain string.
///
/// ```
/// use mlops_core::RunId;
///
/// let id = RunId::from("3f2a");
/// assert_eq!(serde_json::to_string(&id)?, "\"3f2a\"");
/// assert_eq!(id.to_string(), "3f2a");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RunId {
    fn from(id: &str) -> Self {
        RunId(id.to_string())
    }
}

impl From<String> for RunId {
    fn from(id: String) -> Self {
        RunId(id)
    }
}
