//! Compiled permissions of live connections, swapped atomically when the
//! directory changes so that a revoke reaches connected clients at once.

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use super::acl::Acl;
use super::directory::Directory;
use crate::protocol::MqttStr;
use crate::signal::Signal;

/// One connection's ACL snapshot.
pub struct LiveAcl {
    /// `None` for connections the core admits without identities.
    pub username: Option<Box<str>>,
    /// The session's client id (shares its bytes; empty for `allow_all`).
    pub client_id: MqttStr,
    /// Serial of the client certificate the connection logged in with.
    pub certificate_serial: Option<Box<str>>,
    acl: ArcSwap<Acl>,
    version: AtomicU64,
    revoked: AtomicBool,
    /// Its one connection waits on it for revocation.
    revoked_signal: Signal,
}

impl LiveAcl {
    pub fn new(
        username: Option<&str>,
        client_id: MqttStr,
        certificate_serial: Option<&str>,
        acl: Arc<Acl>,
    ) -> Arc<LiveAcl> {
        Arc::new(LiveAcl {
            username: username.map(Box::from),
            client_id,
            certificate_serial: certificate_serial.map(Box::from),
            acl: ArcSwap::new(acl),
            version: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            revoked_signal: Signal::default(),
        })
    }

    /// Everything allowed (the broker core without identities).
    pub fn allow_all() -> Arc<LiveAcl> {
        LiveAcl::new(None, MqttStr::default(), None, Arc::new(Acl::allow_all()))
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

    /// A new snapshot. It applies to the next check at once; the
    /// connection is not woken for it (a directory change would otherwise
    /// wake every hibernating connection): it prunes its subscriptions on
    /// its next turn, and every delivery is checked in any case.
    pub fn update(&self, acl: Arc<Acl>) {
        self.acl.store(acl);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The user was disabled or deleted: the connection must close.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.revoked_signal.notify();
    }

    /// Ready after a revoke (since the last `Ready`).
    pub fn poll_revoked(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.revoked_signal.poll(cx)
    }
}

/// Every live connection's ACL, refreshed on directory changes.
#[derive(Default)]
pub struct LiveSet {
    entries: Mutex<Vec<Weak<LiveAcl>>>,
}

impl LiveSet {
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
                Some(user) if user.enabled => {
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
