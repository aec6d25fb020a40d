//! Compiled permissions of live connections, swapped atomically when the
//! directory changes so that a revoke reaches connected clients at once.
//!
//! One `LiveAcl` serves every connection of a user whose rules do not
//! depend on the client id (no `%c`) and who did not log in with a
//! certificate; others get one each. Either way each connection registers
//! something to wake (its mailbox) and learns of a revocation from it.

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;
use slab::Slab;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::acl::Acl;
use super::directory::Directory;
use super::tokens::TokenService;
use crate::protocol::{MqttStr, ReasonCode};

/// The MQTT 5 authentication method of Gatehouse tokens: CONNECT carries
/// the token (authentication data, or the password), and AUTH 0x19 with a
/// fresh token renews the session in place (a Gatehouse extension).
pub const TOKEN_AUTH_METHOD: &str = "gatehouse-token";

/// The token a connection that logged in with one is bound to now. Boxed
/// in the `LiveAcl` (which such a connection has to itself), so no
/// per-connection struct grows for it.
pub(super) struct BoundToken {
    pub(super) jti: Box<str>,
    pub(super) user_id: Box<str>,
    /// CONNECT named [`TOKEN_AUTH_METHOD`]: AUTH may renew the token.
    pub(super) renewable: bool,
    pub(super) tokens: Weak<TokenService>,
}

/// What a revocation wakes: the connection's own wake-up (its mailbox),
/// so that no connection keeps a waiter in the `LiveAcl` itself.
pub trait Wakeup: Send + Sync {
    fn wake(&self);
}

/// How a connection proved who it is: removing the matching grant from
/// its user closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// No credentials (`allow_anonymous`), or the core without identities.
    Anonymous,
    Password,
    Certificate,
    /// A Gatehouse token as the password (it needs the password grant).
    Token,
}

/// An ACL snapshot of one connection, or of all of one user's connections.
pub struct LiveAcl {
    /// `None` for connections the core admits without identities.
    pub username: Option<Box<str>>,
    /// The client id the ACL was compiled for (shares the session's
    /// bytes); empty when the ACL does not depend on it.
    pub client_id: MqttStr,
    /// Serial of the client certificate the connection logged in with.
    pub certificate_serial: Option<Box<str>>,
    pub method: LoginMethod,
    acl: ArcSwap<Acl>,
    version: AtomicU64,
    revoked: AtomicBool,
    /// Set with `revoked` when the token the connection logged in with
    /// expired: it closes with 0xA0 (maximum connect time) instead of 0x98.
    expired: AtomicBool,
    /// Woken on revocation.
    watchers: Mutex<Slab<Weak<dyn Wakeup>>>,
    /// Token logins: the token this connection is bound to (its expiry is
    /// the session's deadline, kept by `TokenService`).
    pub(super) token: Mutex<Option<Box<BoundToken>>>,
}

impl LiveAcl {
    pub fn new(
        username: Option<&str>,
        client_id: MqttStr,
        method: LoginMethod,
        certificate_serial: Option<&str>,
        acl: Arc<Acl>,
    ) -> Arc<LiveAcl> {
        Arc::new(LiveAcl {
            username: username.map(Box::from),
            client_id,
            certificate_serial: certificate_serial.map(Box::from),
            method,
            acl: ArcSwap::new(acl),
            version: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            watchers: Mutex::new(Slab::new()),
            token: Mutex::new(None),
        })
    }

    /// Everything allowed (the broker core without identities).
    pub fn allow_all() -> Arc<LiveAcl> {
        LiveAcl::new(
            None,
            MqttStr::default(),
            LoginMethod::Anonymous,
            None,
            Arc::new(Acl::allow_all()),
        )
    }

    /// The current snapshot; cheap, lock-free.
    pub fn load(&self) -> Guard<Arc<Acl>> {
        self.acl.load()
    }

    /// The current snapshot as an owned `Arc` (one reference count).
    pub fn load_full(&self) -> Arc<Acl> {
        self.acl.load_full()
    }

    /// Moves on every update, so holders know to re-check subscriptions.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// A new snapshot. It applies to the next check at once; connections
    /// are not woken for it (a directory change would otherwise wake every
    /// hibernating connection): they prune their subscriptions on their
    /// next turn, and every delivery is checked in any case.
    pub fn update(&self, acl: Arc<Acl>) {
        self.acl.store(acl);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The user was disabled or deleted: its connections must close.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        let watchers: Vec<Weak<dyn Wakeup>> = self
            .watchers
            .lock()
            .iter()
            .map(|(_, w)| w.clone())
            .collect();
        for watcher in watchers.iter().filter_map(Weak::upgrade) {
            watcher.wake();
        }
    }

    /// The token this connection logged in with expired: like
    /// [`revoke`](Self::revoke), but the connection says why (0xA0).
    pub fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.revoke();
    }

    /// Revoked because its token expired (see [`expire`](Self::expire)).
    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }

    /// Registers what to wake on revocation; returns the key to give back
    /// to [`unwatch`](Self::unwatch) when the connection ends.
    pub fn watch(&self, watcher: Weak<dyn Wakeup>) -> usize {
        self.watchers.lock().insert(watcher)
    }

    pub fn unwatch(&self, key: usize) {
        self.watchers.lock().try_remove(key);
    }

    /// CONNECT named [`TOKEN_AUTH_METHOD`]: lets this connection renew its
    /// token with AUTH. `false` when it did not log in with a token.
    pub fn allow_renewal(&self) -> bool {
        match self.token.lock().as_mut() {
            Some(bound) => {
                bound.renewable = true;
                true
            }
            None => false,
        }
    }

    /// MQTT 5 re-authentication (AUTH 0x19): `token` must be a valid token
    /// of the same user that opens MQTT; the connection is then bound to
    /// it, so its deadline becomes the new token's expiry. Errors are the
    /// DISCONNECT reason: 0x82 when the connection did not connect with
    /// [`TOKEN_AUTH_METHOD`] or names another method, 0x87 for a token
    /// that is refused.
    pub fn reauthenticate(
        self: &Arc<Self>,
        method: Option<&str>,
        token: Option<&[u8]>,
    ) -> Result<(), ReasonCode> {
        let tokens = {
            let bound = self.token.lock();
            match bound.as_deref() {
                Some(b) if b.renewable && method == Some(TOKEN_AUTH_METHOD) => b.tokens.upgrade(),
                _ => return Err(ReasonCode::PROTOCOL_ERROR),
            }
        };
        let tokens = tokens.ok_or(ReasonCode::NOT_AUTHORIZED)?;
        let token = token
            .and_then(|t| std::str::from_utf8(t).ok())
            .ok_or(ReasonCode::NOT_AUTHORIZED)?;
        tokens.renew(self, token).map_err(|e| {
            tracing::warn!(
                username = self.username.as_deref(),
                "re-authentication refused: {e}"
            );
            ReasonCode::NOT_AUTHORIZED
        })
    }
}

/// Whether `user` still has the grant a connection logged in with.
pub fn still_granted(user: &super::User, method: LoginMethod) -> bool {
    match method {
        LoginMethod::Anonymous => true,
        LoginMethod::Password | LoginMethod::Token => user.has_grant(super::GrantMethod::Password),
        LoginMethod::Certificate => user.has_grant(super::GrantMethod::Certificate),
    }
}

/// Every live connection's ACL, refreshed on directory changes.
#[derive(Default)]
pub struct LiveSet {
    entries: Mutex<Vec<Weak<LiveAcl>>>,
    /// The shared snapshot of each user whose ACL does not depend on the
    /// client id.
    by_user: Mutex<HashMap<Box<str>, Weak<LiveAcl>>>,
}

impl LiveSet {
    /// The snapshot every connection of `username` without a certificate
    /// shares (its ACL must not depend on the client id): the live one, or
    /// a new one from `acl`.
    pub fn shared(&self, username: &str, method: LoginMethod, acl: Arc<Acl>) -> Arc<LiveAcl> {
        let mut by_user = self.by_user.lock();
        if let Some(live) = by_user
            .get(username)
            .and_then(Weak::upgrade)
            .filter(|live| !live.is_revoked() && live.method == method)
        {
            return live;
        }
        if by_user.len() > 64 && by_user.len().is_power_of_two() {
            by_user.retain(|_, w| w.strong_count() > 0);
        }
        let live = LiveAcl::new(Some(username), MqttStr::default(), method, None, acl);
        by_user.insert(username.into(), Arc::downgrade(&live));
        drop(by_user);
        self.register(&live);
        live
    }

    pub fn register(&self, live: &Arc<LiveAcl>) {
        let mut entries = self.entries.lock();
        if entries.len() > 64 && entries.len().is_power_of_two() {
            entries.retain(|w| w.strong_count() > 0);
        }
        entries.push(Arc::downgrade(live));
    }

    /// Recompiles every live connection's ACL against the directory;
    /// revokes connections whose user is gone, disabled, or lost the
    /// grant they logged in with.
    pub fn refresh(&self, directory: &Directory) {
        let live: Vec<Arc<LiveAcl>> = {
            let mut entries = self.entries.lock();
            entries.retain(|w| w.strong_count() > 0);
            entries.iter().filter_map(Weak::upgrade).collect()
        };
        for conn in live {
            let Some(username) = &conn.username else {
                continue;
            };
            if conn
                .certificate_serial
                .as_deref()
                .is_some_and(|serial| directory.is_revoked(serial))
            {
                conn.revoke();
                continue;
            }
            match directory.user(username) {
                Some(user) if user.enabled && still_granted(&user, conn.method) => {
                    conn.update(directory.compile_acl(&user, &conn.client_id))
                }
                _ => conn.revoke(),
            }
        }
    }

    /// Runs until the directory is dropped: refresh on every change.
    pub async fn follow(self: Arc<Self>, directory: Weak<Directory>) {
        let Some(mut changes) = directory.upgrade().map(|d| d.changes()) else {
            return;
        };
        while changes.changed().await.is_ok() {
            match directory.upgrade() {
                Some(directory) => self.refresh(&directory),
                None => return,
            }
        }
    }
}
