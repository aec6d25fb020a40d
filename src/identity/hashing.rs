//! The one limit on password hashing shared by every login path (MQTT
//! CONNECT, `POST /api/login`, OAuth, registry requests): at most one
//! argon2 run per core at a time, on the blocking pool; and rehashing of
//! old-format hashes (other argon2 parameters, imported from mosquitto)
//! under that same limit, at most one rehash per user at a time.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Semaphore;

use super::directory::{Directory, IdentityError};
use super::model::User;
use super::password;

pub struct Hashing {
    permits: Arc<Semaphore>,
    /// Users whose rehash is queued or running.
    rehashing: Mutex<HashSet<String>>,
}

impl Default for Hashing {
    fn default() -> Hashing {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hashing::new(parallel)
    }
}

/// Takes a user out of the rehashing set when its rehash ends (or panics).
struct Rehashing {
    hashing: Arc<Hashing>,
    username: String,
}

impl Drop for Rehashing {
    fn drop(&mut self) {
        self.hashing.rehashing.lock().remove(&self.username);
    }
}

impl Hashing {
    pub fn new(parallel: usize) -> Hashing {
        Hashing {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            rehashing: Mutex::new(HashSet::new()),
        }
    }

    /// The permits every argon2 run takes (one per core).
    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Verifies `password` against `hash` on the blocking pool under the
    /// limit; without a hash (unknown user) it spends the time of a real
    /// check and answers false.
    pub async fn verify(&self, hash: Option<String>, password: &[u8]) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || match hash {
            Some(hash) => password::verify_password(&password, &hash),
            None => {
                password::dummy_verify(&password);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    /// After `password` verified against `user`'s stored hash: when that
    /// hash is old, stores a fresh argon2id hash in the background, under
    /// the hashing limit, unless a rehash of this user is already queued
    /// or running, and only while the stored hash is still the verified
    /// one. A rehash keeps the user's password generation, so logins in
    /// flight are not taken for victims of a password change. Returns
    /// whether a rehash was started.
    pub fn rehash_if_needed(
        self: &Arc<Self>,
        directory: &Arc<Directory>,
        user: &User,
        password: &[u8],
    ) -> bool {
        let Some(old) = user
            .password_hash
            .clone()
            .filter(|h| password::needs_rehash(h) && h != password::LOCKED)
        else {
            return false;
        };
        let Ok(text) = std::str::from_utf8(password) else {
            return false;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if !self.rehashing.lock().insert(user.username.clone()) {
            return false;
        }
        let guard = Rehashing {
            hashing: self.clone(),
            username: user.username.clone(),
        };
        let (directory, text) = (directory.clone(), text.to_owned());
        runtime.spawn(async move {
            let permits = guard.hashing.permits.clone();
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let name = guard.username.clone();
            let still_old = |d: &Directory| {
                d.user(&name)
                    .is_some_and(|u| u.password_hash.as_deref() == Some(old.as_str()))
            };
            if !still_old(&directory) {
                return;
            }
            let _ = tokio::task::spawn_blocking(move || match password::try_hash_password(&text) {
                Ok(hash) => {
                    if let Err(e) = directory.rehash(&name, &old, hash) {
                        tracing::warn!(username = name.as_str(), "rehash failed: {e}");
                    }
                }
                Err(e) => tracing::warn!(username = name.as_str(), "rehash failed: {e}"),
            })
            .await;
            drop(guard);
        });
        true
    }

    /// Whether a rehash of `username` is queued or running.
    pub fn is_rehashing(&self, username: &str) -> bool {
        self.rehashing.lock().contains(username)
    }
}

impl Directory {
    /// Stores a new hash for the same password (parameters changed),
    /// unless the password changed meanwhile (`old` is no longer stored):
    /// a login verified against the old password must not bring it back.
    pub fn rehash(&self, username: &str, old: &str, hash: String) -> Result<(), IdentityError> {
        // The same password: its generation stays, so logins verified
        // against the old hash are not taken for a password change.
        let result = self.modify_user(
            username,
            |u| {
                if u.password_hash.as_deref() != Some(old) {
                    return Err(IdentityError::Changed("user", username.into()));
                }
                u.password_hash = Some(hash);
                Ok(())
            },
            false,
        );
        match result {
            Ok(_) | Err(IdentityError::Changed(..)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user imported with a mosquitto hash, in a fresh directory.
    fn imported(dir: &std::path::Path) -> Arc<Directory> {
        let store = Arc::new(
            crate::store::Store::open(
                dir,
                crate::config::Durability::Sync,
                std::time::Duration::from_millis(100),
            )
            .unwrap(),
        );
        let directory = Directory::open(store, Default::default(), "admin", true).unwrap();
        // `mosquitto_passwd -H sha512` of `b0b-secret`.
        let hash = "$6$YkAIJYUWQiI6w8Q2$WD1yyi/G+f0Oa9gcVQLqWsGC0qDjvf9vRqQabsqTzwy9ZPU5YixwF7IYw8QAPDlppHuedcCZnZ3skb+0+ZL8bQ==";
        directory
            .add_user(crate::identity::NewUser {
                username: "bob".into(),
                password_hash: Some(hash.into()),
                ..Default::default()
            })
            .unwrap();
        Arc::new(directory)
    }

    #[tokio::test]
    async fn one_rehash_per_user_at_a_time_keeping_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let directory = imported(dir.path());
        let hashing = directory.hashing().clone();
        let user = directory.user("bob").unwrap();
        // Every permit taken: the rehash waits for one, like a login.
        let n = hashing.permits().available_permits() as u32;
        let all = hashing.permits().clone().acquire_many_owned(n).await;
        let started: Vec<bool> = (0..20)
            .map(|_| hashing.rehash_if_needed(&directory, &user, b"b0b-secret"))
            .collect();
        assert_eq!(started.iter().filter(|s| **s).count(), 1, "{started:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let waiting = directory.user("bob").unwrap();
        assert_eq!(
            waiting.password_hash, user.password_hash,
            "hashed outside the limit"
        );
        drop(all);
        for _ in 0..500 {
            if !hashing.is_rehashing("bob") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let after = directory.user("bob").unwrap();
        assert!(
            after
                .password_hash
                .as_deref()
                .unwrap()
                .starts_with("$argon2id$")
        );
        assert_eq!(after.password_generation, user.password_generation);
        assert!(password::verify_password(
            b"b0b-secret",
            after.password_hash.as_deref().unwrap()
        ));
        // A password change moves the generation.
        let changed = directory.set_password("bob", "new-secret-1").unwrap();
        assert_eq!(changed.password_generation, user.password_generation + 1);
    }

    #[test]
    fn at_least_one_permit() {
        assert_eq!(Hashing::new(0).permits().available_permits(), 1);
        assert_eq!(Hashing::new(3).permits().available_permits(), 3);
    }
}
