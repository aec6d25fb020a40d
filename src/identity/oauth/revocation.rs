//! What was revoked while a request may still be issuing tokens for it:
//! a grant (a reused code or refresh token, a revoked refresh token, a
//! grant ended by its user) is remembered as a tombstone, and "everything
//! of this user" (revoke all, password change, disabling, deleting) or
//! "everything of this client" (a change of type or grants, deleting) as
//! a cut-off.
//!
//! Each request takes a [`Ticket`] before it reads the client or checks
//! the user, and its grant is refused while a later cut-off or a
//! tombstone stands against it: before it signs anything, when it starts
//! the refresh-token family (under the families' lock, so a revocation
//! either removes the family or is seen by `start`), and once more after
//! its access token is recorded. A revoker marks first and removes
//! second; a request records first and checks second: one of the two
//! always sees the other, so no token outlives a revocation that raced
//! with its issuance. Marks are kept in memory for `KEEP` (longer than a
//! code lives and a request takes); a restart ends every request and code.
//!
//! Below: the services that end a user's or a client's grants, the sweeper
//! of expired codes and grants, and the rules of an MQTT 5 renewal.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{ClientType, OAuthClient, OAuthError};
use crate::identity::services::{AdminError, IdentityServices};
use crate::identity::token_sessions::RenewPolicy;
use crate::identity::tokens::TokenInfo;

/// How often expired codes and grants past their lifetime are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long tombstones and cut-offs are kept: longer than a code lives
/// (600 s) plus any request.
const KEEP: Duration = Duration::from_secs(15 * 60);

/// When a request started, in revocation order (not time: no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Default)]
struct Marks {
    /// Grant id → kept until.
    grants: HashMap<String, Instant>,
    /// User id → (cut-off, kept until): tickets before it are refused.
    users: HashMap<String, (u64, Instant)>,
    clients: HashMap<String, (u64, Instant)>,
}

impl Marks {
    fn prune(&mut self, now: Instant) {
        self.grants.retain(|_, until| *until > now);
        self.users.retain(|_, (_, until)| *until > now);
        self.clients.retain(|_, (_, until)| *until > now);
    }
}

#[derive(Default)]
pub struct Revocations {
    seq: AtomicU64,
    marks: Mutex<Marks>,
}

impl Revocations {
    /// Taken when a request starts, before it reads the client or user.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.seq.load(Ordering::SeqCst))
    }

    /// The grant `id` is ended: requests issuing for it are refused.
    pub fn revoke_grant(&self, id: &str) {
        let now = Instant::now();
        let mut marks = self.marks.lock();
        marks.prune(now);
        marks.grants.insert(id.to_owned(), now + KEEP);
    }

    /// Everything of user `id` issued under an earlier ticket is ended.
    pub fn cut_user(&self, id: &str) {
        let cut = self.next();
        let now = Instant::now();
        let mut marks = self.marks.lock();
        marks.prune(now);
        marks.users.insert(id.to_owned(), (cut, now + KEEP));
    }

    /// Everything of client `id` issued under an earlier ticket is ended.
    pub fn cut_client(&self, id: &str) {
        let cut = self.next();
        let now = Instant::now();
        let mut marks = self.marks.lock();
        marks.prune(now);
        marks.clients.insert(id.to_owned(), (cut, now + KEEP));
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// `Err` when the grant `id` (of `client_id` for `user_id`, begun
    /// under `ticket`) was revoked since.
    pub fn check(
        &self,
        ticket: Ticket,
        id: Option<&str>,
        client_id: &str,
        user_id: &str,
    ) -> Result<(), OAuthError> {
        let marks = self.marks.lock();
        let cut = |map: &HashMap<String, (u64, Instant)>, key: &str| {
            map.get(key).is_some_and(|(cut, _)| ticket.0 < *cut)
        };
        if id.is_some_and(|id| marks.grants.contains_key(id)) {
            return Err(OAuthError::grant("the grant was revoked"));
        }
        if cut(&marks.users, user_id) || cut(&marks.clients, client_id) {
            return Err(OAuthError::grant(
                "the user's or the client's tokens were revoked meanwhile; start again",
            ));
        }
        Ok(())
    }
}

impl IdentityServices {
    /// Ends everything OAuth holds for a user: pending codes, refresh-token
    /// grants and OAuth access tokens (their MQTT sessions close with
    /// 0x98), and any request still issuing for them. For "revoke all
    /// tokens", a password change, disabling and deleting the user.
    /// Returns how many access tokens were revoked.
    pub fn end_user_grants(&self, user_id: &str, why: &str) -> Result<usize, AdminError> {
        self.oauth.revocations.cut_user(user_id);
        let codes = self.oauth.codes.remove_where(|g| g.user_id == user_id);
        let grants = self.oauth.families.remove_where(|f| f.user_id == user_id)?;
        let tokens = self
            .tokens
            .revoke_where(|r| r.user_id == user_id && r.client_id.is_some())?;
        if codes + grants.len() + tokens.len() > 0 {
            tracing::info!(
                user_id,
                codes,
                grants = grants.len(),
                access_tokens = tokens.len(),
                "OAuth grants of a user ended: {why}"
            );
        }
        Ok(tokens.len())
    }

    /// Ends a client's codes, refresh-token grants and the access tokens
    /// issued under them (a change of type or grants). With `all`, every
    /// access token issued to it too (the client is deleted).
    pub(crate) fn end_client_grants(&self, client_id: &str, all: bool) -> Result<(), AdminError> {
        self.oauth.revocations.cut_client(client_id);
        self.oauth.codes.remove_where(|g| g.client_id == client_id);
        self.oauth
            .families
            .remove_where(|f| f.client_id == client_id)?;
        self.tokens.revoke_where(|r| {
            r.client_id.as_deref() == Some(client_id) && (all || r.grant.is_some())
        })?;
        Ok(())
    }

    /// Revokes the access tokens of `client` from grant types it no longer
    /// allows (e.g. `client_credentials`, which has no refresh-token grant
    /// to end with them).
    pub(crate) fn end_disallowed_tokens(&self, client: &OAuthClient) -> Result<usize, AdminError> {
        let ended = self.tokens.revoke_where(|r| {
            r.client_id.as_deref() == Some(client.client_id.as_str())
                && !client.still_allows(r.grant_type.as_deref())
        })?;
        Ok(ended.len())
    }

    /// A confidential client whose account was disabled (or is gone) is
    /// disabled too.
    pub(crate) fn client_enabled(&self, client: &OAuthClient) -> bool {
        match client.client_type {
            ClientType::Public => true,
            ClientType::Confidential => client
                .user_id
                .as_deref()
                .and_then(|id| self.directory.user_by_id(id))
                .is_some_and(|u| u.enabled),
        }
    }

    /// Forgets expired codes and ends grants past their lifetime or
    /// whose client or user is gone.
    pub fn sweep_oauth(&self) -> Result<usize, AdminError> {
        self.oauth.codes.sweep();
        let clients: HashMap<String, OAuthClient> = self.oauth.clients.read().clone();
        let ended = self.oauth.families.sweep(|f| {
            clients.contains_key(&f.client_id) && self.directory.user_by_id(&f.user_id).is_some()
        })?;
        if ended > 0 {
            tracing::info!(ended, "OAuth grants past their lifetime swept");
        }
        // What a client change or deletion could not finish (a failed
        // store write) is finished here: access tokens of clients that are
        // gone, or of grant types their client no longer allows.
        let orphaned = self.tokens.revoke_where(|r| {
            r.client_id
                .as_deref()
                .is_some_and(|id| match clients.get(id) {
                    None => true,
                    Some(client) => !client.still_allows(r.grant_type.as_deref()),
                })
        })?;
        if !orphaned.is_empty() {
            tracing::warn!(
                revoked = orphaned.len(),
                "OAuth access tokens of deleted clients or disallowed grant types revoked"
            );
        }
        Ok(ended + orphaned.len())
    }

    /// Runs [`sweep_oauth`](Self::sweep_oauth) every minute until `shutdown`.
    pub async fn run_oauth_sweeper(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.sweep_oauth()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("OAuth sweep failed: {e}"),
                Err(_) => return,
            }
        }
    }
}

/// MQTT 5 re-authentication with an access token (AUTH 0x19): its user
/// must still be enabled, and its client still exist, be enabled and
/// allow the grant the token came from.
impl RenewPolicy for IdentityServices {
    fn admits(&self, info: &TokenInfo) -> Result<(), &'static str> {
        if !self
            .directory
            .user_by_id(&info.user_id)
            .is_some_and(|u| u.enabled)
        {
            return Err("the user no longer exists or is disabled");
        }
        let Some(client_id) = info.client_id.as_deref() else {
            return Ok(());
        };
        let client = self
            .oauth
            .client(client_id)
            .ok_or("the token's OAuth client no longer exists")?;
        if !self.client_enabled(&client) {
            return Err("the token's OAuth client is disabled");
        }
        let kind = self.tokens.record_of(&info.jti).and_then(|r| r.grant_type);
        if !client.still_allows(kind.as_deref()) {
            return Err("the client may no longer use the grant the token came from");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_and_cut_offs() {
        let r = Revocations::default();
        let early = r.ticket();
        assert!(r.check(early, Some("g"), "c", "u").is_ok());
        r.revoke_grant("g");
        assert!(r.check(early, Some("g"), "c", "u").is_err());
        r.cut_user("u");
        let late = r.ticket();
        assert!(r.check(early, Some("h"), "c", "u").is_err());
        assert!(r.check(late, Some("h"), "c", "u").is_ok());
        assert!(r.check(early, None, "c", "someone else").is_ok());
        r.cut_client("c");
        assert!(r.check(late, Some("h"), "c", "v").is_err());
        assert!(r.check(r.ticket(), Some("h"), "c", "v").is_ok());
    }
}
