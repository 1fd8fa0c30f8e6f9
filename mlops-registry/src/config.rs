//! How to open a registry: store options, the deadline on store calls, who is acting, and
//! the local blob cache. Plain data (serde), checked before any I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default deadline of a store call, in seconds.
const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// Registry settings.
///
/// ```
/// use mlops_registry::RegistryConfig;
///
/// let config: RegistryConfig = serde_json::from_str(
///     r#"{"timeout_seconds": 10, "actor": "ci", "options": {"aws_region": "eu-west-1"}}"#,
/// )?;
/// config.validate()?;
/// assert_eq!(config.actor(), "ci");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Options of the store's builder (object_store config keys such as `aws_endpoint`,
    /// `aws_allow_http`, `azure_storage_account_name`), over those read from the environment.
    /// Never logged or written into a record.
    pub options: BTreeMap<String, String>,
    /// Deadline of every store call, retries included (default 30 s; a millisecond to a
    /// week): an unreachable store is an error, not a hang.
    pub timeout_seconds: f64,
    /// Who is acting, recorded in versions, alias moves and audit events (default:
    /// `$MLOPS_ACTOR`, else `$USER`, else `unknown`).
    pub actor: Option<String>,
    /// A local directory caching verified blobs by sha256.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            options: BTreeMap::new(),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS as f64,
            actor: None,
            cache_dir: None,
        }
    }
}

impl RegistryConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.checked_timeout()?;
        if let Some(actor) = &self.actor {
            if actor.is_empty() || actor.len() > 256 || actor.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "RegistryConfig.actor",
                    format!("{actor:?}"),
                    "1 to 256 printable characters",
                ));
            }
        }
        Ok(())
    }

    /// The deadline of a store call (the default 30 s when `timeout_seconds` is out of range:
    /// [`RegistryConfig::validate`], which every opener calls first, refuses it).
    pub fn timeout(&self) -> Duration {
        self.checked_timeout()
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECONDS))
    }

    fn checked_timeout(&self) -> Result<Duration> {
        Ok(mlops_core::store_url::deadline(
            "RegistryConfig.timeout_seconds",
            self.timeout_seconds,
        )?)
    }

    /// Who is acting.
    pub fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("MLOPS_ACTOR").ok().filter(|s| !s.is_empty()))
            .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_out_of_range_is_a_named_error_never_a_panic() {
        for bad in [1e300, 1e20, f64::INFINITY, f64::NAN, 0.0, -5.0] {
            let config = RegistryConfig {
                timeout_seconds: bad,
                ..RegistryConfig::default()
            };
            let e = config.validate().unwrap_err().to_string();
            assert!(
                e.contains("invalid RegistryConfig.timeout_seconds = "),
                "{bad}: {e}"
            );
            assert_eq!(config.timeout(), Duration::from_secs(30));
        }
        let config = RegistryConfig {
            timeout_seconds: 2.5,
            ..RegistryConfig::default()
        };
        config.validate().unwrap();
        assert_eq!(config.timeout(), Duration::from_millis(2500));
    }
}
