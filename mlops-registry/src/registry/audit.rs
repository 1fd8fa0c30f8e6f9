//! The audit log: one object per event, ordered by time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Registry;
use crate::error::Result;
use crate::names::check_name;
use crate::records::{AuditAction, AuditEvent};

impl Registry {
    pub(super) async fn audit(&self, event: AuditEvent) {
        // Ordered by time, then by this handle's sequence (events in the same clock tick), then
        // a random part (other writers).
        let key = format!(
            "audit/{:020}-{:010}-{:016x}.json",
            event.at.timestamp_nanos_opt().unwrap_or(i64::MAX).max(0),
            self.audit_seq.fetch_add(1, Ordering::SeqCst),
            rand::random::<u64>()
        );
        let result = match Self::to_json(&event) {
            Ok(bytes) => self.store.create(&key, bytes).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // The change itself is committed; report the missing event loudly.
            tracing::error!(error = %e, action = ?event.action, "writing the audit event failed");
        }
    }

    pub(super) fn event(&self, action: AuditAction, model: Option<&str>, why: &str) -> AuditEvent {
        AuditEvent {
            at: self.now(),
            actor: self.actor.clone(),
            action,
            model: model.map(str::to_string),
            version: None,
            alias: None,
            from: None,
            why: why.to_string(),
            details: BTreeMap::new(),
        }
    }

    /// Audit events, oldest first; only those about `model` when given.
    pub async fn audit_events(&self, model: Option<&str>) -> Result<Vec<AuditEvent>> {
        if let Some(m) = model {
            check_name("model name", m)?;
        }
        let mut keys: Vec<String> = self
            .store
            .list("audit/", None)
            .await?
            .iter()
            .map(|m| self.store.key_of(&m.location))
            .collect();
        keys.sort();
        let events: Vec<AuditEvent> = self.read_all(keys).await?;
        Ok(events
            .into_iter()
            .filter(|e| model.is_none() || e.model.as_deref() == model)
            .collect())
    }
}
