//! Authentication against the identity directory: argon2 on a bounded
//! blocking pool, a verified-credential cache, failure backoff, and a live
//! ACL per connection.

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

use super::backoff::Backoff;
use super::{AuthOutcome, Authenticator, Credentials, Identity};
use crate::config::Auth as AuthConfig;
use crate::identity::cache::CredentialCache;
use crate::identity::directory::ANONYMOUS_USER;
use crate::identity::{Directory, GrantMethod, LiveAcl, LiveSet, User, password};
use crate::protocol::{MqttStr, ReasonCode};
use crate::session::WillCheck;
use crate::tls::PeerCertificate;

pub struct DirectoryAuthenticator {
    directory: Arc<Directory>,
    live: Arc<LiveSet>,
    cache: Arc<CredentialCache>,
    hashing: Arc<Semaphore>,
    backoff: Backoff,
    allow_anonymous: bool,
    /// Refused attempts (bad credentials or not authorized).
    pub failures: AtomicU64,
}

impl DirectoryAuthenticator {
    pub fn new(directory: Arc<Directory>, config: &AuthConfig) -> Arc<DirectoryAuthenticator> {
        let cache = Arc::new(CredentialCache::new(
            config.credential_cache_size,
            Duration::from_secs(config.credential_cache_ttl_secs),
        ));
        let invalidate = cache.clone();
        directory.on_user_change(move |username| invalidate.invalidate_user(username));
        let live = Arc::new(LiveSet::default());
        tokio::spawn(live.clone().follow(Arc::downgrade(&directory)));
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(DirectoryAuthenticator {
            directory,
            live,
            cache,
            hashing: Arc::new(Semaphore::new(parallel)),
            backoff: Backoff::new(
                Duration::from_millis(config.failure_delay_ms),
                Duration::from_millis(config.failure_delay_max_ms),
            ),
            allow_anonymous: config.allow_anonymous,
            failures: AtomicU64::new(0),
        })
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Verifies on the blocking pool, at most one hash per core at a time,
    /// so CONNECT floods cannot starve the async workers.
    async fn verify(&self, user: Option<&User>, password: &[u8]) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let hash = user.and_then(|u| u.password_hash.clone());
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || match hash {
            Some(hash) => password::verify_password(&password, &hash),
            None => {
                // Unknown user: spend the same time as a real check.
                password::dummy_verify(&password);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    fn identity_for(&self, user: &User, client_id: &MqttStr, serial: Option<&str>) -> Identity {
        let (compiled, per_client) = self.directory.compile_acl_for(user, client_id);
        // One snapshot for all of a user's connections, unless the rules
        // depend on the client id or a certificate (revocable on its own)
        // is involved.
        let acl = if per_client || serial.is_some() {
            let acl = LiveAcl::new(Some(&user.username), client_id.clone(), serial, compiled);
            self.live.register(&acl);
            acl
        } else {
            self.live.shared(&user.username, compiled)
        };
        Identity {
            publish_prefix: user
                .mqtt_publish_prefix
                .clone()
                .map(|prefix| Box::new(MqttStr::from(prefix))),
            acl,
        }
    }

    fn refuse(&self, reason: ReasonCode) -> AuthOutcome {
        self.failures.fetch_add(1, Ordering::Relaxed);
        AuthOutcome::Denied(reason)
    }

    /// Mutual TLS: the certificate (already verified against the CA, its
    /// validity and the CRL during the handshake) names the user.
    fn authenticate_certificate(&self, c: &Credentials<'_>, cert: &PeerCertificate) -> AuthOutcome {
        let cn = cert.common_name.as_str();
        if c.username.is_some_and(|u| u != cn) {
            tracing::warn!(peer = %c.peer, cn, username = c.username, "certificate refused: CONNECT username differs from the CN");
            return self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
        }
        if self.directory.is_revoked(&cert.serial) {
            tracing::warn!(peer = %c.peer, cn, serial = cert.serial, "certificate refused: revoked");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        match self.directory.user(cn) {
            None => {
                tracing::warn!(peer = %c.peer, cn, "certificate refused: no user with this CN");
                self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            }
            Some(user) if !user.enabled || !user.has_grant(GrantMethod::Certificate) => {
                tracing::warn!(peer = %c.peer, cn, "certificate refused: user disabled or without certificate grant");
                self.refuse(ReasonCode::NOT_AUTHORIZED)
            }
            Some(user) => {
                AuthOutcome::Allowed(self.identity_for(&user, c.client_id, Some(&cert.serial)))
            }
        }
    }

    async fn authenticate_inner(&self, c: Credentials<'_>) -> AuthOutcome {
        if let Some(cert) = c.certificate {
            return self.authenticate_certificate(&c, cert);
        }
        let Some(username) = c.username else {
            if c.password.is_some() || !self.allow_anonymous {
                tracing::info!(peer = %c.peer, client_id = %c.client_id, "anonymous connection refused");
                return self.refuse(ReasonCode::NOT_AUTHORIZED);
            }
            return match self.directory.user(ANONYMOUS_USER) {
                Some(user) if user.enabled => {
                    AuthOutcome::Allowed(self.identity_for(&user, c.client_id, None))
                }
                _ => self.refuse(ReasonCode::NOT_AUTHORIZED),
            };
        };
        let delay = self.backoff.delay(username, c.peer.ip());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let user = self.directory.user(username);
        let password = c.password.unwrap_or_default();
        let cached = user.is_some() && self.cache.contains(username, password);
        let verified = cached || self.verify(user.as_ref(), password).await;
        let user = match user {
            Some(user) if verified => user,
            _ => {
                self.backoff.failed(username, c.peer.ip());
                tracing::warn!(peer = %c.peer, username, client_id = %c.client_id, "authentication failed: bad username or password");
                return self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
            }
        };
        if !user.enabled || !user.has_grant(GrantMethod::Password) {
            self.backoff.failed(username, c.peer.ip());
            tracing::warn!(peer = %c.peer, username, "authentication refused: user disabled or without password grant");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        self.backoff.succeeded(username);
        if !cached {
            self.cache.insert(username, password);
            self.rehash_if_needed(&user, password);
        }
        AuthOutcome::Allowed(self.identity_for(&user, c.client_id, None))
    }

    /// Stores a fresh hash when the stored one uses old parameters.
    fn rehash_if_needed(&self, user: &User, password: &[u8]) {
        let Some(hash) = &user.password_hash else {
            return;
        };
        if !password::needs_rehash(hash) {
            return;
        }
        let Ok(text) = std::str::from_utf8(password) else {
            return;
        };
        let (directory, username, text) = (
            self.directory.clone(),
            user.username.clone(),
            text.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let hash = password::hash_password(&text);
            if let Err(e) = directory.rehash(&username, hash) {
                tracing::warn!(username, "rehash failed: {e}");
            }
        });
    }
}

impl WillCheck for DirectoryAuthenticator {
    /// A will goes out only while its owner exists, is enabled and may
    /// still write the topic.
    fn may_publish_will(&self, owner: &str, client_id: &MqttStr, topic: &MqttStr) -> bool {
        match self.directory.user(owner) {
            Some(user) if user.enabled => {
                let (acl, _) = self.directory.compile_acl_for(&user, client_id);
                acl.can_publish(topic)
            }
            _ => false,
        }
    }
}

impl Authenticator for DirectoryAuthenticator {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, AuthOutcome> {
        Box::pin(self.authenticate_inner(credentials))
    }
}
