//! The audit log of administrative changes: who, what, when, from which
//! address. Kept in the store (table `audit`, keyed by a zero-padded
//! sequence number so the keys sort in order) and in memory for paging,
//! bounded to the newest `max` entries.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use crate::router::now_millis;
use crate::store::{IdentityTable, Store, StoreError};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub username: String,
    pub user_id: Option<String>,
    pub address: Option<IpAddr>,
}

impl Actor {
    /// Changes made by the broker itself (start-up, sweeps).
    pub fn system() -> Actor {
        Actor {
            username: "system".into(),
            user_id: None,
            address: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    pub actor: String,
    #[serde(default)]
    pub actor_id: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// e.g. `user.create`, `role.permission.add`, `token.revoke`.
    pub action: String,
    /// The id (or name) of what was changed.
    pub target: String,
    /// What changed; never a secret.
    #[serde(default)]
    pub detail: serde_json::Value,
}

pub struct AuditLog {
    store: Arc<Store>,
    entries: RwLock<VecDeque<AuditEntry>>,
    max: usize,
}

fn key(seq: u64) -> String {
    format!("{seq:020}")
}

impl AuditLog {
    pub fn open(store: Arc<Store>, max: usize) -> Result<AuditLog, StoreError> {
        let mut entries: Vec<AuditEntry> = store
            .load_identity(IdentityTable::Audit)?
            .iter()
            .filter_map(|raw| serde_json::from_slice(raw).ok())
            .collect();
        entries.sort_by_key(|e| e.seq);
        Ok(AuditLog {
            store,
            entries: RwLock::new(entries.into()),
            max: max.max(1),
        })
    }

    /// Appends an entry (durably), dropping the oldest beyond the bound.
    pub fn record(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut entries = self.entries.write();
        let seq = entries.back().map_or(1, |e| e.seq + 1);
        let entry = AuditEntry {
            seq,
            at: now_millis(),
            actor: actor.username.clone(),
            actor_id: actor.user_id.clone(),
            address: actor.address.map(|a| a.to_string()),
            action: action.into(),
            target: target.into(),
            detail,
        };
        let json = serde_json::to_vec(&entry).expect("audit entry serialises");
        let new_key = key(seq);
        let excess = (entries.len() + 1).saturating_sub(self.max);
        let old_keys: Vec<String> = entries.iter().take(excess).map(|e| key(e.seq)).collect();
        let mut writes: Vec<(IdentityTable, &str, Option<&[u8]>)> =
            vec![(IdentityTable::Audit, &new_key, Some(&json))];
        writes.extend(
            old_keys
                .iter()
                .map(|k| (IdentityTable::Audit, k.as_str(), None)),
        );
        self.store.put_identity_batch(&writes)?;
        entries.drain(..excess);
        tracing::info!(
            actor = actor.username,
            address = ?actor.address,
            action,
            target,
            "audit"
        );
        entries.push_back(entry);
        Ok(())
    }

    /// Entries newest first: `(total, page)`.
    pub fn page(&self, offset: usize, limit: usize) -> (usize, Vec<AuditEntry>) {
        let entries = self.entries.read();
        let page = entries
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (entries.len(), page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_newest_first_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Arc::new(
                Store::open(
                    dir.path(),
                    crate::config::Durability::Sync,
                    std::time::Duration::from_millis(100),
                )
                .unwrap(),
            )
        };
        let store = open();
        let log = AuditLog::open(store.clone(), 3).unwrap();
        for i in 0..5 {
            log.record(
                &Actor::system(),
                "user.create",
                &format!("u{i}"),
                serde_json::json!({}),
            )
            .unwrap();
        }
        let (total, page) = log.page(0, 10);
        assert_eq!(total, 3);
        let targets: Vec<_> = page.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["u4", "u3", "u2"]);
        drop(log);
        store.close();
        drop(store);
        let log = AuditLog::open(open(), 3).unwrap();
        assert_eq!(log.page(1, 1).1[0].target, "u3");
    }
}
