//! One timer for every detached session: its will delay and its expiry.
//!
//! Each detached session has at most one entry, keyed by when it is due
//! (Unix ms, so a persisted disconnect time keeps counting across
//! restarts). Attaching removes the entry; one task sleeps until the
//! earliest. A wall-clock key lets a restored session fall due at once
//! when the broker was down past its expiry.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

use super::{Registry, Session};
use crate::router::now_millis;

/// The longest single sleep: a far deadline is reached in steps, so the
/// wall clock is re-read now and then and no timer is armed for days.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Key: (due, the session's address) — one entry per session and due time.
type Key = (u64, usize);

#[derive(Default)]
pub(super) struct Deadlines {
    entries: Mutex<BTreeMap<Key, Arc<Session>>>,
    changed: Notify,
}

fn key(due: u64, session: &Arc<Session>) -> Key {
    (due, Arc::as_ptr(session) as usize)
}

impl Deadlines {
    pub(super) fn arm(&self, due: u64, session: &Arc<Session>) {
        let earliest = {
            let mut entries = self.entries.lock();
            entries.insert(key(due, session), session.clone());
            entries.first_key_value().map(|(k, _)| k.0) == Some(due)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    pub(super) fn cancel(&self, due: u64, session: &Arc<Session>) {
        if due != 0 {
            self.entries.lock().remove(&key(due, session));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Entries due at or before `now`, removed.
    fn take_due(&self, now: u64) -> Vec<(u64, Arc<Session>)> {
        let mut entries = self.entries.lock();
        let later = entries.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut *entries, later);
        due.into_iter().map(|((at, _), s)| (at, s)).collect()
    }

    fn next_due(&self) -> Option<u64> {
        self.entries.lock().first_key_value().map(|(k, _)| k.0)
    }

    pub(super) fn stop(&self) {
        self.changed.notify_one();
    }
}

/// Runs the timer until the registry is dropped or stopped.
pub(super) async fn run(deadlines: Arc<Deadlines>, registry: Weak<Registry>) {
    loop {
        {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            if registry.is_stopping() {
                return;
            }
            for (due, session) in deadlines.take_due(now_millis()) {
                registry.deadline_reached(due, &session);
            }
        }
        let wait = match deadlines.next_due() {
            Some(due) => Duration::from_millis(due.saturating_sub(now_millis())).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = deadlines.changed.notified() => {}
        }
    }
}
