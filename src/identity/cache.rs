//! Cache of recently verified credentials, so a reconnecting device does
//! not pay ~20 ms of argon2 on every CONNECT.
//!
//! Entries are keyed by a keyed BLAKE3 hash of (username, password) under a
//! random per-cache key: no plaintext password is kept, and a memory dump
//! does not allow offline guessing without also knowing the key (which never
//! leaves the process). Bounded and time-limited; invalidated per user when
//! that user's password, roles or status change.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

type Key = [u8; 32];

struct Entry {
    username: Box<str>,
    inserted: Instant,
}

/// Thread-safe, bounded cache of verified (username, password) pairs.
pub struct CredentialCache {
    key: Key,
    max_entries: usize,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Moves on every invalidation (under the entries' lock): a login
    /// verified against a record that changed meanwhile is not cached.
    epoch: AtomicU64,
}

impl fmt::Debug for CredentialCache {
    /// Leaves out the key and the entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// `max_entries == 0` or a zero `ttl` disables caching.
    pub fn new(max_entries: usize, ttl: Duration) -> CredentialCache {
        CredentialCache {
            key: rand::random(),
            max_entries,
            ttl,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Read before reading the user record a verification runs against;
    /// see [`insert_unless_changed`](Self::insert_unless_changed).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
    fn digest(&self, username: &str, password: &[u8]) -> Key {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&(username.len() as u64).to_le_bytes());
        hasher.update(username.as_bytes());
        hasher.update(&(password.len() as u64).to_le_bytes());
        hasher.update(password);
        *hasher.finalize().as_bytes()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.inserted) >= self.ttl
    }

    /// Whether this pair was verified less than `ttl` ago (and not
    /// invalidated since). An expired entry is dropped on the way.
    pub fn contains(&self, username: &str, password: &[u8]) -> bool {
        let key = self.digest(username, password);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        match entries.get(&key) {
            Some(entry) if self.expired(entry, now) => {
                entries.remove(&key);
                false
            }
            Some(entry) => &*entry.username == username,
            None => false,
        }
    }

    /// Records a successful verification. When full, expired entries go
    /// first, then the oldest one; the O(n) scan only happens when full and
    /// is small next to the argon2 run that precedes an insert.
    pub fn insert(&self, username: &str, password: &[u8]) {
        self.insert_unless_changed(username, password, None);
    }

    /// [`insert`](Self::insert), unless a user was invalidated since
    /// `epoch` was read (the verified password may be an old one).
    pub fn insert_unless_changed(&self, username: &str, password: &[u8], epoch: Option<u64>) {
        if self.max_entries == 0 || self.ttl.is_zero() {
            return;
        }
        let key = self.digest(username, password);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if epoch.is_some_and(|seen| seen != self.epoch.load(Ordering::Acquire)) {
            return;
        }
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            entries.retain(|_, e| !self.expired(e, now));
            while entries.len() >= self.max_entries {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(k) => entries.remove(&k),
                    None => break,
                };
            }
        }
        entries.insert(
            key,
            Entry {
                username: username.into(),
                inserted: now,
            },
        );
    }

    /// Drops every entry of `username` (password or roles changed, user
    /// disabled or deleted), so the next CONNECT verifies again.
    pub fn invalidate_user(&self, username: &str) {
        let mut entries = self.entries.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| &*e.username != username);
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn hit_and_miss() {
        let cache = CredentialCache::new(10, HOUR);
        assert!(!cache.contains("alice", b"pw"));
        cache.insert("alice", b"pw");
        assert!(cache.contains("alice", b"pw"));
        assert!(!cache.contains("alice", b"pw2"));
        assert!(!cache.contains("bob", b"pw"));
    }

    #[test]
    fn length_prefix_separates_fields() {
        let cache = CredentialCache::new(10, HOUR);
        cache.insert("ab", b"c");
        assert!(!cache.contains("a", b"bc"));
        assert!(cache.contains("ab", b"c"));
    }

    #[test]
    fn keys_differ_per_cache() {
        let a = CredentialCache::new(1, HOUR);
        let b = CredentialCache::new(1, HOUR);
        assert_ne!(a.digest("u", b"p"), b.digest("u", b"p"));
    }

    #[test]
    fn ttl_expiry() {
        let cache = CredentialCache::new(10, Duration::from_millis(200));
        cache.insert("alice", b"pw");
        assert!(cache.contains("alice", b"pw"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!cache.contains("alice", b"pw"));
        assert!(cache.is_empty());
        let off = CredentialCache::new(10, Duration::ZERO);
        off.insert("alice", b"pw");
        assert!(!off.contains("alice", b"pw"));
    }

    #[test]
    fn invalidate_user_and_clear() {
        let cache = CredentialCache::new(10, HOUR);
        cache.insert("alice", b"old");
        cache.insert("alice", b"new");
        cache.insert("bob", b"pw");
        cache.invalidate_user("alice");
        assert!(!cache.contains("alice", b"old"));
        assert!(!cache.contains("alice", b"new"));
        assert!(cache.contains("bob", b"pw"));
        cache.clear();
        assert!(!cache.contains("bob", b"pw"));
    }

    #[test]
    fn bound_respected_oldest_evicted() {
        let cache = CredentialCache::new(3, HOUR);
        for i in 0..3 {
            cache.insert(&format!("u{i}"), b"pw");
            std::thread::sleep(Duration::from_millis(2));
        }
        cache.insert("u0", b"pw"); // refresh, no eviction
        assert_eq!(cache.len(), 3);
        cache.insert("u3", b"pw");
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains("u1", b"pw"), "oldest goes first");
        assert!(
            cache.contains("u0", b"pw")
                && cache.contains("u2", b"pw")
                && cache.contains("u3", b"pw")
        );
        for i in 0..1000 {
            cache.insert(&format!("x{i}"), b"pw");
        }
        assert_eq!(cache.len(), 3);
        let none = CredentialCache::new(0, HOUR);
        none.insert("a", b"b");
        assert!(none.is_empty());
    }

    #[test]
    fn full_cache_sweeps_all_expired_entries() {
        let cache = CredentialCache::new(3, Duration::from_millis(200));
        cache.insert("old1", b"pw");
        cache.insert("old2", b"pw");
        std::thread::sleep(Duration::from_millis(300));
        cache.insert("a", b"pw");
        assert_eq!(cache.len(), 3);
        cache.insert("b", b"pw");
        assert_eq!(cache.len(), 2);
        assert!(cache.contains("a", b"pw") && cache.contains("b", b"pw"));
    }

    #[test]
    fn concurrent_use() {
        let cache = Arc::new(CredentialCache::new(64, HOUR));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let user = format!("t{t}u{i}");
                        cache.insert(&user, b"pw");
                        cache.contains(&user, b"pw");
                        if i % 7 == 0 {
                            cache.invalidate_user(&user);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(cache.len() <= 64);
    }

    #[test]
    fn debug_hides_key() {
        let cache = CredentialCache::new(1, HOUR);
        let text = format!("{cache:?}");
        assert!(!text.contains("key"), "{text}");
    }
}
