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

    /// Length-prefixed so that ("ab", "c") and ("a", "bc") differ. The
    /// stored hash the password was verified against is part of the key:
    /// once the password changes, entries of the old one match nothing,
    /// whatever a login in flight does meanwhile.
    fn digest(&self, username: &str, stored: &str, password: &[u8]) -> Key {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in [username.as_bytes(), stored.as_bytes(), password] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.inserted) >= self.ttl
    }

    /// Whether this pair was verified less than `ttl` ago (and not
    /// invalidated since). An expired entry is dropped on the way.
    pub fn contains(&self, username: &str, stored: &str, password: &[u8]) -> bool {
        let key = self.digest(username, stored, password);
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
    pub fn insert(&self, username: &str, stored: &str, password: &[u8]) {
        self.insert_unless_changed(username, stored, password, None);
    }

    /// [`insert`](Self::insert), unless a user was invalidated since
    /// `epoch` was read (the verified password may be an old one).
    pub fn insert_unless_changed(
        &self,
        username: &str,
        stored: &str,
        password: &[u8],
        epoch: Option<u64>,
    ) {
        if self.max_entries == 0 || self.ttl.is_zero() {
            return;
        }
        let key = self.digest(username, stored, password);
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

    /// An entry verified against an old stored hash matches nothing once
    /// the hash changed.
    #[test]
    fn a_changed_hash_misses() {
        let cache = CredentialCache::new(10, Duration::from_secs(60));
        cache.insert("alice", "old-hash", b"pw");
        assert!(cache.contains("alice", "old-hash", b"pw"));
        assert!(!cache.contains("alice", "new-hash", b"pw"));
    }
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn hit_and_miss() {
        let cache = CredentialCache::new(10, HOUR);
        assert!(!cache.contains("alice", "h", b"pw"));
        cache.insert("alice", "h", b"pw");
        assert!(cache.contains("alice", "h", b"pw"));
        assert!(!cache.contains("alice", "h", b"pw2"));
        assert!(!cache.contains("bob", "h", b"pw"));
    }

    #[test]
    fn length_prefix_separates_fields() {
        let cache = CredentialCache::new(10, HOUR);
        cache.insert("ab", "h", b"c");
        assert!(!cache.contains("a", "h", b"bc"));
        assert!(cache.contains("ab", "h", b"c"));
    }

    #[test]
    fn keys_differ_per_cache() {
        let a = CredentialCache::new(1, HOUR);
        let b = CredentialCache::new(1, HOUR);
        assert_ne!(a.digest("u", "h", b"p"), b.digest("u", "h", b"p"));
    }

    #[test]
    fn ttl_expiry() {
        let cache = CredentialCache::new(10, Duration::from_millis(200));
        cache.insert("alice", "h", b"pw");
        assert!(cache.contains("alice", "h", b"pw"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!cache.contains("alice", "h", b"pw"));
        assert!(cache.is_empty());
        let off = CredentialCache::new(10, Duration::ZERO);
        off.insert("alice", "h", b"pw");
        assert!(!off.contains("alice", "h", b"pw"));
    }

    #[test]
    fn invalidate_user_and_clear() {
        let cache = CredentialCache::new(10, HOUR);
        cache.insert("alice", "h", b"old");
        cache.insert("alice", "h", b"new");
        cache.insert("bob", "h", b"pw");
        cache.invalidate_user("alice");
        assert!(!cache.contains("alice", "h", b"old"));
        assert!(!cache.contains("alice", "h", b"new"));
        assert!(cache.contains("bob", "h", b"pw"));
        cache.clear();
        assert!(!cache.contains("bob", "h", b"pw"));
    }

    #[test]
    fn bound_respected_oldest_evicted() {
        let cache = CredentialCache::new(3, HOUR);
        for i in 0..3 {
            cache.insert(&format!("u{i}"), "h", b"pw");
            std::thread::sleep(Duration::from_millis(2));
        }
        cache.insert("u0", "h", b"pw"); // refresh, no eviction
        assert_eq!(cache.len(), 3);
        cache.insert("u3", "h", b"pw");
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains("u1", "h", b"pw"), "oldest goes first");
        assert!(
            cache.contains("u0", "h", b"pw")
                && cache.contains("u2", "h", b"pw")
                && cache.contains("u3", "h", b"pw")
        );
        for i in 0..1000 {
            cache.insert(&format!("x{i}"), "h", b"pw");
        }
        assert_eq!(cache.len(), 3);
        let none = CredentialCache::new(0, HOUR);
        none.insert("a", "h", b"b");
        assert!(none.is_empty());
    }

    #[test]
    fn full_cache_sweeps_all_expired_entries() {
        let cache = CredentialCache::new(3, Duration::from_millis(200));
        cache.insert("old1", "h", b"pw");
        cache.insert("old2", "h", b"pw");
        std::thread::sleep(Duration::from_millis(300));
        cache.insert("a", "h", b"pw");
        assert_eq!(cache.len(), 3);
        cache.insert("b", "h", b"pw");
        assert_eq!(cache.len(), 2);
        assert!(cache.contains("a", "h", b"pw") && cache.contains("b", "h", b"pw"));
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
                        cache.insert(&user, "h", b"pw");
                        cache.contains(&user, "h", b"pw");
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
