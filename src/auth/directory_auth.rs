//! Authentication against the identity directory: argon2 on a bounded
//! blocking pool, a verified-credential cache, failure backoff, and a live
//! ACL per connection.

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

use super::backoff::Backoff;
use super::{AuthOutcome, Authenticator, Credentials, Identity};
use crate::config::Auth as AuthConfig;
use crate::identity::cache::CredentialCache;
use crate::identity::directory::ANONYMOUS_USER;
use crate::identity::registry::ImplicitRegistrations;
use crate::identity::services::{is_initial_admin, is_loopback};
use crate::identity::tokens::{SCOPE_MQTT, TokenError, TokenService};
use crate::identity::{
    Directory, GrantMethod, LiveAcl, LiveSet, LoginMethod, User, client_id_substitutable, password,
    still_granted,
};
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
    /// Verifies Gatehouse tokens sent as CONNECT passwords (once the
    /// admin API's services exist).
    tokens: OnceLock<Arc<TokenService>>,
    /// The client registry's implicit flow (once the services exist).
    registrations: OnceLock<ImplicitRegistrations>,
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
            tokens: OnceLock::new(),
            registrations: OnceLock::new(),
            failures: AtomicU64::new(0),
        })
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Accepts Gatehouse JWTs as CONNECT passwords from now on.
    pub fn accept_tokens(&self, tokens: Arc<TokenService>) {
        let _ = self.tokens.set(tokens);
    }

    /// Records refused CONNECTs of unknown users in the client registry
    /// (which ignores them while locked).
    pub fn record_unknown_users_in(&self, registrations: ImplicitRegistrations) {
        let _ = self.registrations.set(registrations);
    }

    /// A CONNECT whose password is one of our tokens: `None` when it is
    /// not a token of ours (then it is tried as a password). The session
    /// gets an ACL of its own, bound to the token, so that it closes when
    /// the token expires (0xA0) or is revoked (0x98).
    fn authenticate_token(&self, c: &Credentials<'_>, username: &str) -> Option<AuthOutcome> {
        let tokens = self.tokens.get()?;
        let revision = self.directory.revision();
        let text = std::str::from_utf8(c.password?).ok()?;
        let info = match tokens.verify(text) {
            Ok(info) => info,
            Err(TokenError::Malformed | TokenError::Invalid) => return None,
            Err(e) => {
                self.backoff.failed(username, c.peer.ip());
                tracing::debug!(peer = %c.peer, username, "token login refused: {e}");
                return Some(self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD));
            }
        };
        // The user name must be the token's user (for an OAuth
        // `client_credentials` token: the client id); an OAuth token must
        // have the `mqtt` scope.
        let user = self
            .directory
            .user(username)
            .filter(|u| *u.id == *info.user_id && info.allows(SCOPE_MQTT));
        let Some(user) = user else {
            self.backoff.failed(username, c.peer.ip());
            tracing::warn!(peer = %c.peer, username, "token login refused: token of another user, enrol-only, or without the mqtt scope");
            return Some(self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD));
        };
        if !user.enabled || !user.has_grant(GrantMethod::Password) {
            tracing::debug!(peer = %c.peer, username, "token login refused: user disabled or without password grant");
            return Some(self.refuse(ReasonCode::NOT_AUTHORIZED));
        }
        self.backoff.succeeded(username);
        let outcome = self.admit(&user, c.client_id, LoginMethod::Token, None, revision);
        if let AuthOutcome::Allowed(identity) = &outcome {
            tokens.bind(&info, &identity.acl);
        }
        Some(outcome)
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

    /// The connection's live permissions. Refused when a deny rule needs
    /// a client id that cannot stand in for `%c`, or when the publish
    /// prefix is no MQTT string.
    fn identity_for(
        &self,
        user: &User,
        client_id: &MqttStr,
        method: LoginMethod,
        serial: Option<&str>,
    ) -> Result<Identity, ReasonCode> {
        if !client_id_substitutable(client_id) && self.directory.denies_by_client_id(user) {
            tracing::warn!(username = user.username, %client_id, "connection refused: a deny rule needs %c, which this client id cannot stand for");
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        let publish_prefix = match &user.mqtt_publish_prefix {
            None => None,
            Some(prefix) => match MqttStr::from_bytes(prefix.clone().into()) {
                Some(prefix) => Some(Box::new(prefix)),
                None => {
                    tracing::warn!(
                        username = user.username,
                        "connection refused: the publish prefix is too long"
                    );
                    return Err(ReasonCode::NOT_AUTHORIZED);
                }
            },
        };
        let (compiled, per_client) = self.directory.compile_acl_for(user, client_id);
        // One snapshot for all of a user's connections, unless the rules
        // depend on the client id, or a certificate or token (revocable on
        // its own) is involved.
        let acl = if per_client || serial.is_some() || method == LoginMethod::Token {
            let acl = LiveAcl::new(
                Some(&user.username),
                client_id.clone(),
                method,
                serial,
                compiled,
            );
            self.live.register(&acl);
            acl
        } else {
            self.live.shared(&user.username, method, compiled)
        };
        Ok(Identity {
            publish_prefix,
            acl,
        })
    }

    /// The last step of every login: the connection's permissions are
    /// registered for live updates, then checked against the directory as
    /// it is now. A change that landed while this login was in flight
    /// (password changed, user disabled or deleted, grant removed) wins:
    /// the login is refused instead of left running on the old record.
    fn admit(
        &self,
        user: &User,
        client_id: &MqttStr,
        method: LoginMethod,
        serial: Option<&str>,
        revision: u64,
    ) -> AuthOutcome {
        let identity = match self.identity_for(user, client_id, method, serial) {
            Ok(identity) => identity,
            Err(reason) => return self.refuse(reason),
        };
        if self.directory.revision() == revision {
            return AuthOutcome::Allowed(identity);
        }
        let current = self.directory.user(&user.username);
        let unchanged = current.as_ref().is_some_and(|now| {
            now.enabled
                && still_granted(now, method)
                && now.password_hash == user.password_hash
                && serial.is_none_or(|s| !self.directory.is_revoked(s))
        });
        match current {
            Some(now) if unchanged => {
                // Permissions may have moved since they were compiled; the
                // refresh that followed may have run before registration.
                identity
                    .acl
                    .update(self.directory.compile_acl(&now, client_id));
                AuthOutcome::Allowed(identity)
            }
            _ => {
                tracing::warn!(username = user.username, %client_id, "login refused: the user changed while it was checked");
                self.refuse(ReasonCode::NOT_AUTHORIZED)
            }
        }
    }

    fn refuse(&self, reason: ReasonCode) -> AuthOutcome {
        self.failures.fetch_add(1, Ordering::Relaxed);
        AuthOutcome::Denied(reason)
    }

    /// Mutual TLS: the certificate (already verified against the CA, its
    /// validity and the CRL during the handshake) names the user.
    fn authenticate_certificate(&self, c: &Credentials<'_>, cert: &PeerCertificate) -> AuthOutcome {
        let revision = self.directory.revision();
        let cn = cert.common_name.as_str();
        if c.username.is_some_and(|u| u != cn) {
            tracing::debug!(peer = %c.peer, cn, username = c.username, "certificate refused: CONNECT username differs from the CN");
            return self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
        }
        if self.directory.is_revoked(&cert.serial) {
            tracing::debug!(peer = %c.peer, cn, serial = cert.serial, "certificate refused: revoked");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        match self.directory.user(cn) {
            None => {
                tracing::debug!(peer = %c.peer, cn, "certificate refused: no user with this CN");
                self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            }
            Some(user) if !user.enabled || !user.has_grant(GrantMethod::Certificate) => {
                tracing::debug!(peer = %c.peer, cn, "certificate refused: user disabled or without certificate grant");
                self.refuse(ReasonCode::NOT_AUTHORIZED)
            }
            Some(user) => self.admit(
                &user,
                c.client_id,
                LoginMethod::Certificate,
                Some(&cert.serial),
                revision,
            ),
        }
    }

    async fn authenticate_inner(&self, c: Credentials<'_>) -> AuthOutcome {
        if let Some(cert) = c.certificate {
            return self.authenticate_certificate(&c, cert);
        }
        let revision = self.directory.revision();
        let Some(username) = c.username else {
            if c.password.is_some() || !self.allow_anonymous {
                tracing::debug!(peer = %c.peer, client_id = %c.client_id, "anonymous connection refused");
                return self.refuse(ReasonCode::NOT_AUTHORIZED);
            }
            return match self.directory.user(ANONYMOUS_USER) {
                Some(user) if user.enabled => {
                    self.admit(&user, c.client_id, LoginMethod::Anonymous, None, revision)
                }
                _ => self.refuse(ReasonCode::NOT_AUTHORIZED),
            };
        };
        let delay = self.backoff.delay(username, c.peer.ip());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(outcome) = self.authenticate_token(&c, username) {
            return outcome;
        }
        let revision = self.directory.revision();
        let epoch = self.cache.epoch();
        let user = self.directory.user(username);
        let password = c.password.unwrap_or_default();
        let stored = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_default();
        let cached = user.is_some() && self.cache.contains(username, &stored, password);
        let verified = cached || self.verify(user.as_ref(), password).await;
        let unknown_user = user.is_none();
        let user = match user {
            Some(user) if verified => user,
            _ => {
                if let Some(registrations) = self.registrations.get().filter(|_| unknown_user) {
                    registrations.record_refused_unknown_user(username, c.password, c.peer.ip());
                }
                self.backoff.failed(username, c.peer.ip());
                tracing::debug!(peer = %c.peer, username, client_id = %c.client_id, "authentication failed: bad username or password");
                return self.refuse(ReasonCode::BAD_USERNAME_OR_PASSWORD);
            }
        };
        if !user.enabled || !user.has_grant(GrantMethod::Password) {
            self.backoff.failed(username, c.peer.ip());
            tracing::debug!(peer = %c.peer, username, "authentication refused: user disabled or without password grant");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        if is_initial_admin(username, password) && !is_loopback(c.peer.ip()) {
            tracing::warn!(peer = %c.peer, "`admin` with its initial password from a remote address refused");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        self.backoff.succeeded(username);
        if !cached {
            // Not if the user changed since it was read: the password just
            // verified may be the old one.
            self.cache
                .insert_unless_changed(username, &stored, password, Some(epoch));
            self.rehash_if_needed(&user, password);
        }
        self.admit(&user, c.client_id, LoginMethod::Password, None, revision)
    }

    /// Stores a fresh hash when the stored one uses old parameters (only
    /// while the stored hash is still the one just verified).
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
        let (directory, username, text, old) = (
            self.directory.clone(),
            user.username.clone(),
            text.to_owned(),
            hash.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let hash = password::hash_password(&text);
            if let Err(e) = directory.rehash(&username, &old, hash) {
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
