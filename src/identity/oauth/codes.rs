//! Authorization codes: random, valid 600 s, single-use, kept in memory
//! only under a keyed hash (a restart voids pending codes; the client
//! starts the flow again). A redeemed code is remembered until it would
//! have expired, so that presenting it again revokes what it granted.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::revocation::Ticket;

/// RFC 6749 §4.1.2 recommends at most ten minutes.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Pending codes at most (each needs a signed-in user; this only bounds
/// memory).
const MAX_CODES: usize = 65_536;

/// What a code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub client_id: String,
    pub user_id: String,
    /// The `redirect_uri` the authorization request named, if it did.
    pub redirect_uri: Option<String>,
    pub scope: String,
    /// PKCE S256 challenge.
    pub challenge: Option<String>,
    /// The authorization the tokens belong to (their `grant`).
    pub grant: String,
    /// When the user signed in: a later revocation of the user's or the
    /// client's tokens voids the code.
    pub ticket: Ticket,
}

struct Entry {
    grant: CodeGrant,
    expires: Instant,
    used: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// First use: the code's grant.
    Fresh(CodeGrant),
    /// Used before: the authorization to revoke.
    Reused(String),
    Unknown,
}

pub struct Codes {
    key: [u8; 32],
    pending: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Codes {
    pub fn new(key: [u8; 32]) -> Codes {
        Codes {
            key,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, code: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, code.as_bytes()).as_bytes()
    }

    /// A new code for `grant`; `None` when too many are pending.
    pub fn issue(&self, grant: CodeGrant) -> Option<String> {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_CODES {
            pending.retain(|_, e| e.expires > now);
            if pending.len() >= MAX_CODES {
                return None;
            }
        }
        pending.insert(
            self.digest(&code),
            Entry {
                grant,
                expires: now + CODE_LIFETIME,
                used: false,
            },
        );
        Some(code)
    }

    /// Forgets the codes `select` picks (a user's or a client's tokens
    /// were revoked, the client changed).
    pub fn remove_where(&self, select: impl Fn(&CodeGrant) -> bool) -> usize {
        let mut pending = self.pending.lock();
        let before = pending.len();
        pending.retain(|_, e| !select(&e.grant));
        before - pending.len()
    }

    /// Forgets expired codes (used ones are kept until then, for reuse
    /// detection); returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut pending = self.pending.lock();
        pending.retain(|_, e| e.expires > now);
        pending.len()
    }

    /// Takes a code: any presentation uses it up, so a wrong PKCE
    /// verifier or redirect URI cannot be retried against it.
    pub fn redeem(&self, code: &str) -> Redeemed {
        if code.len() > 256 {
            return Redeemed::Unknown;
        }
        let digest = self.digest(code);
        let now = Instant::now();
        let mut pending = self.pending.lock();
        match pending.get_mut(&digest) {
            Some(entry) if entry.expires <= now => {
                pending.remove(&digest);
                Redeemed::Unknown
            }
            Some(entry) if entry.used => Redeemed::Reused(entry.grant.grant.clone()),
            Some(entry) => {
                entry.used = true;
                Redeemed::Fresh(entry.grant.clone())
            }
            None => Redeemed::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_then_reuse_is_reported() {
        let codes = Codes::new([7; 32]);
        let grant = CodeGrant {
            client_id: "c".into(),
            user_id: "u".into(),
            redirect_uri: None,
            scope: "api".into(),
            challenge: None,
            grant: "g".into(),
            ticket: super::super::revocation::Revocations::default().ticket(),
        };
        let code = codes.issue(grant.clone()).unwrap();
        assert_eq!(code.len(), 43);
        assert_eq!(codes.redeem(&code), Redeemed::Fresh(grant));
        assert_eq!(codes.redeem(&code), Redeemed::Reused("g".into()));
        assert_eq!(codes.redeem("nope"), Redeemed::Unknown);
        assert_eq!(codes.sweep(), 1);
        assert_eq!(codes.remove_where(|g| g.user_id == "u"), 1);
        assert_eq!(codes.redeem(&code), Redeemed::Unknown);
    }
}
