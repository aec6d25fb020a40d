//! What was revoked while a request may still be issuing tokens for it:
//! a grant (a reused code or refresh token, a revoked refresh token, a
//! grant ended by its user) is remembered as a tombstone, and "everything
//! of this user" (password change, disabling, revoke all, MFA reset) or
//! "everything of this client" (a change of type or grants) as a cut-off.
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

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::OAuthError;

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
        id: &str,
        client_id: &str,
        user_id: &str,
    ) -> Result<(), OAuthError> {
        let marks = self.marks.lock();
        let cut = |map: &HashMap<String, (u64, Instant)>, key: &str| {
            map.get(key).is_some_and(|(cut, _)| ticket.0 < *cut)
        };
        if marks.grants.contains_key(id) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_and_cut_offs() {
        let r = Revocations::default();
        let early = r.ticket();
        assert!(r.check(early, "g", "c", "u").is_ok());
        r.revoke_grant("g");
        assert!(r.check(early, "g", "c", "u").is_err());
        r.cut_user("u");
        let late = r.ticket();
        assert!(r.check(early, "h", "c", "u").is_err());
        assert!(r.check(late, "h", "c", "u").is_ok());
        assert!(r.check(early, "h", "c", "someone else").is_ok());
        r.cut_client("c");
        assert!(r.check(late, "h", "c", "v").is_err());
        assert!(r.check(r.ticket(), "h", "c", "v").is_ok());
    }
}
