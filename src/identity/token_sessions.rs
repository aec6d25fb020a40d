//! The MQTT sessions that logged in with a token: bound to its jti and
//! expiry, closed when it is revoked (0x98) or expires (0xA0, by one
//! sweeper task). Kept beside the token records, not in the per-connection
//! state: each such connection has a `LiveAcl` of its own, which also
//! remembers which token it is bound to, so MQTT 5 re-authentication can
//! move it to a fresh token (and so a later deadline) in place.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::live::{BoundToken, LiveAcl};
use super::tokens::{SCOPE_MQTT, TokenError, TokenInfo, TokenService, now_secs};
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

    /// Sets the rules a renewal must also satisfy (once).
    pub(crate) fn set_policy(&self, policy: Weak<dyn RenewPolicy>) {
        let _ = self.policy.set(policy);
    }

    /// Ties an MQTT connection's ACL to its token, so that it closes when
    /// the token expires or is revoked.
    pub fn bind(self: &Arc<Self>, info: &TokenInfo, acl: &Arc<LiveAcl>) {
        *acl.token.lock() = Some(Box::new(BoundToken {
            jti: info.jti.clone(),
            user_id: info.user_id.clone(),
            renewable: false,
            tokens: Arc::downgrade(self),
        }));
        self.attach(info, acl);
    }

    /// Moves a connection from its token to `token`, a fresh token of the
    /// same user that opens MQTT (MQTT 5 re-authentication, AUTH 0x19):
    /// from now on the new token's expiry or revocation closes it, the old
    /// one's no longer does.
    pub(super) fn renew(&self, acl: &Arc<LiveAcl>, token: &str) -> Result<(), RenewError> {
        let info = self.verify(token)?;
        if info.enrol_only() || !info.allows(SCOPE_MQTT) {
            return Err(RenewError::Scope);
        }
        if let Some(policy) = self.policy.get().and_then(Weak::upgrade) {
            policy.admits(&info).map_err(RenewError::Refused)?;
        }
        let old = match acl.token.lock().as_deref() {
            Some(bound) if *bound.user_id == *info.user_id => bound.jti.clone(),
            Some(_) => return Err(RenewError::OtherUser),
            None => return Err(RenewError::Closed),
        };
        {
            let mut live = self.live.lock();
            let list = live.by_jti.get_mut(&old).ok_or(RenewError::Closed)?;
            let before = list.len();
            list.retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(acl)));
            let was_bound = list.len() < before;
            if list.is_empty() {
                live.by_jti.remove(&old);
            }
            // Not bound any more: the old token's expiry or revocation has
            // just closed this connection.
            if !was_bound || acl.is_revoked() {
                return Err(RenewError::Closed);
            }
        }
        if let Some(bound) = acl.token.lock().as_mut() {
            bound.jti = info.jti.clone();
        }
        self.attach(&info, acl);
        Ok(())
    }

    /// Registers `acl` under its token's jti and expiry.
    fn attach(&self, info: &TokenInfo, acl: &Arc<LiveAcl>) {
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

/// Why an in-session renewal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token belongs to another user")]
    OtherUser,
    #[error("the token does not open MQTT")]
    Scope,
    #[error("the session's token already expired or was revoked")]
    Closed,
    #[error("{0}")]
    Refused(&'static str),
}

/// What else a renewal must satisfy: the user still enabled, an access
/// token's client still there and allowed its grant (`identity::oauth`).
pub trait RenewPolicy: Send + Sync {
    fn admits(&self, info: &TokenInfo) -> Result<(), &'static str>;
}
