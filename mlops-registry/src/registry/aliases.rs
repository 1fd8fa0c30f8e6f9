//! Aliases: append-only logs per alias, moved with a conditional create.

use std::collections::BTreeMap;

use super::{alias_dir, alias_key, missing_version, tombstone_key, Registry, LATEST};
use crate::error::{Error, Result};
use crate::names::check_name;
use crate::records::{target_text, AliasEntry, AuditAction};

impl Registry {
    /// The log of `alias`, oldest first.
    pub async fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasEntry>> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        let keys = self
            .numbered_keys(&format!("{}/", alias_dir(model, alias)))
            .await?;
        self.read_all(keys.into_iter().map(|(_, key)| key).collect())
            .await
    }

    /// The current entry of `alias` (`None` when it was never set).
    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasEntry>> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        self.last_in_log(&alias_dir(model, alias)).await
    }

    /// Every set alias of `model` and the version it points to.
    pub async fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>> {
        check_name("model name", model)?;
        let names = self
            .store
            .list_dirs(&format!("models/{model}/aliases"))
            .await?;
        let mut out = BTreeMap::new();
        for name in names {
            if let Some(target) = self.alias(model, &name).await?.and_then(|e| e.target) {
                out.insert(name, target);
            }
        }
        Ok(out)
    }

    /// The aliases of `model` whose current target is `version`, in name order.
    pub(super) async fn aliases_to(&self, model: &str, version: u64) -> Result<Vec<String>> {
        Ok(self
            .aliases(model)
            .await?
            .into_iter()
            .filter(|(_, v)| *v == version)
            .map(|(a, _)| a)
            .collect())
    }

    /// Points `alias` at `version` if it points at `expected` now (`None`: unset): a
    /// compare-and-swap. Fails with [`Error::AliasMoved`] when someone moved it first.
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        if self.read_record(model, version).await?.is_none() {
            return Err(missing_version(model, version));
        }
        if self
            .store
            .get(&tombstone_key(model, version))
            .await?
            .is_some()
        {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: format!("deleted; alias `{alias}` cannot point at it"),
            });
        }
        self.move_alias(model, alias, Some(version), expected, why)
            .await
    }

    /// Clears `alias` if it points at `expected` now (compare-and-swap like
    /// [`Registry::set_alias`]).
    pub async fn clear_alias(
        &self,
        model: &str,
        alias: &str,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        self.move_alias(model, alias, None, expected, why).await
    }

    /// Points `alias` back at the version it pointed to before its last move, if nobody
    /// moved it since it was read.
    pub async fn rollback_alias(&self, model: &str, alias: &str, why: &str) -> Result<AliasEntry> {
        let current = self
            .alias(model, alias)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("alias `{alias}` of model `{model}`"),
            })?;
        let previous = current.previous.ok_or_else(|| {
            Error::invalid(
                format!("rollback of alias `{alias}`"),
                target_text(current.target),
                "an alias that pointed at a version before its last move",
            )
        })?;
        self.set_alias(model, alias, previous, current.target, why)
            .await
    }

    async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        target: Option<u64>,
        expected: Option<u64>,
        why: &str,
    ) -> Result<AliasEntry> {
        check_name("model name", model)?;
        check_name("alias", alias)?;
        if alias == LATEST {
            return Err(Error::invalid(
                "alias",
                alias,
                "a name other than `latest` (`@latest` always means the highest live version)",
            ));
        }
        self.writable().await?;
        let dir = alias_dir(model, alias);
        let (current, hint) = self.log_end::<AliasEntry>(&dir).await?;
        let (seq, actual) = current.as_ref().map_or((0, None), |e| (e.seq, e.target));
        let moved = |actual: Option<u64>| Error::AliasMoved {
            model: model.to_string(),
            alias: alias.to_string(),
            expected: target_text(expected),
            actual: target_text(actual),
        };
        if actual != expected {
            return Err(moved(actual));
        }
        let entry = AliasEntry {
            seq: seq + 1,
            alias: alias.to_string(),
            target,
            previous: actual,
            at: self.now(),
            by: self.actor.clone(),
            why: why.to_string(),
        };
        if !self
            .store
            .create(&alias_key(model, alias, entry.seq), Self::to_json(&entry)?)
            .await?
        {
            let now = self.alias(model, alias).await?.and_then(|e| e.target);
            return Err(moved(now));
        }
        self.advance_hint(&dir, hint, entry.seq).await;
        tracing::info!(model, alias, from = ?actual, to = ?target, "alias moved");
        let mut event = self.event(AuditAction::SetAlias, Some(model), why);
        event.version = target;
        event.alias = Some(alias.to_string());
        event.from = actual;
        self.audit(event).await;
        Ok(entry)
    }
}
