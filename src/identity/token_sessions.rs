//! The MQTT sessions that logged in with a token: bound to its jti and
//! expiry, closed when it is revoked (0x98) or expires (0xA0, by one
//! sweeper task). Kept beside the token records, not in the per-connection
//! state: each such connection has a `LiveAcl` of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::live::LiveAcl;
use super::tokens::{TokenInfo, TokenService, now_secs};
use crate::store::IdentityTable;

/// MQTT connections that logged in with a token, by jti and by expiry.
#[derive(Default)]
pub(super) struct LiveTokens {
    by_jti: HashMap<Box<str>, Vec<Weak<LiveAcl>>>,
    by_exp: BTreeSet<(u64, Box<str>)>,
}

impl TokenService {
    /// Closes the MQTT sessions of `jti`: 0xA0 when it expired, else 0x98.
    pub(super) fn close_sessions(&self, jti: &str, expired: bool) {
        let sessions = self.live.lock().by_jti.remove(jti).unwrap_or_default();
        for acl in sessions.iter().filter_map(Weak::upgrade) {
            if expired {
                acl.expire();
            } else {
                acl.revoke();
            }
        }
    }

    /// Ties an MQTT connection's ACL to its token, so that it closes when
    /// the token expires or is revoked.
    pub fn bind(&self, info: &TokenInfo, acl: &Arc<LiveAcl>) {
        let mut live = self.live.lock();
        let sooner = live
            .by_exp
            .first()
            .is_none_or(|(exp, _)| info.expires_at < *exp);
        let sessions = live.by_jti.entry(info.jti.clone()).or_default();
        sessions.retain(|w| w.strong_count() > 0);
        sessions.push(Arc::downgrade(acl));
        live.by_exp.insert((info.expires_at, info.jti.clone()));
        drop(live);
        if sooner {
            self.sooner.notify_one();
        }
        // Revoked between the check and now: close at once.
        if !self.records.read().by_jti.contains_key(&info.jti) {
            self.close_sessions(&info.jti, false);
        }
    }

    /// Closes sessions whose token expired and forgets expired records;
    /// returns the next expiry of a bound token (unix seconds).
    pub(super) fn sweep_once(&self) -> Option<u64> {
        let now = now_secs();
        let due: Vec<Box<str>> = {
            let mut live = self.live.lock();
            let mut due = Vec::new();
            while live.by_exp.first().is_some_and(|(exp, _)| *exp <= now) {
                if let Some((_, jti)) = live.by_exp.pop_first() {
                    due.push(jti);
                }
            }
            due
        };
        for jti in &due {
            self.close_sessions(jti, true);
        }
        let expired: Vec<Box<str>> = self
            .records
            .read()
            .by_jti
            .values()
            .filter(|r| r.expires_at <= now * 1000)
            .map(|r| r.jti.as_str().into())
            .collect();
        if !expired.is_empty() {
            let deletes: Vec<_> = expired
                .iter()
                .map(|jti| (IdentityTable::Tokens, &**jti, None))
                .collect();
            match self.store.put_identity_batch(&deletes) {
                Ok(()) => {
                    let mut records = self.records.write();
                    for jti in &expired {
                        records.remove(jti);
                    }
                }
                Err(e) => tracing::warn!("cannot delete expired token records: {e}"),
            }
        }
        self.live.lock().by_exp.first().map(|(exp, _)| *exp)
    }

    /// Runs until `shutdown`: closes sessions at their token's expiry.
    /// Sleeps until the next expiry but at most an hour, so a token valid
    /// for years arms no far-future timer.
    pub async fn run_sweeper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let next = self.sweep_once();
            let wait = next
                .map(|exp| Duration::from_secs(exp.saturating_sub(now_secs())))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_secs(3600))
                // Expiry is in whole seconds: sleep past the boundary.
                .max(Duration::from_millis(50));
            tokio::select! {
                _ = self.sooner.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
