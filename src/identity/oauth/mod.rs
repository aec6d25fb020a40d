//! The OAuth 2.0 authorization server, beside the identity services and
//! built on them: client registration as Software AG Integration Server
//! does it (`clients`), the authorization endpoint's rules (`authorize`),
//! one module per grant of the token endpoint (`grant`), authorization
//! codes (`codes`), refresh-token families with reuse detection
//! (`families`), introspection and revocation (`introspect`), and what
//! ends grants early: a user's or a client's revocation, sweeps, the
//! rules of an MQTT renewal (`revocation`).
//!
//! Access tokens are the token service's RFC 9068 JWTs, so they open the
//! admin API and MQTT like any Gatehouse token. Nothing here knows HTTP:
//! `src/http/oauth` turns requests into these calls and errors into
//! RFC 6749 bodies.

pub mod authorize;
pub mod clients;
mod codes;
mod families;
pub mod grant;
pub mod introspect;
pub mod model;
pub mod revocation;

use aws_lc_rs::constant_time;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::model::User;
use super::services::IdentityServices;
use super::tokens::{AccessGrant, SCOPE_API, SCOPE_MQTT, TokenServiceError};
use crate::config::OAuth as OAuthConfig;
use crate::store::{Store, StoreError};
pub use clients::OAuthClient;
use codes::Codes;
use families::{Families, Limits};
pub use model::{ClientType, Expiration, GrantKind, RefreshCount};
use revocation::{Revocations, Ticket};

/// The key file for client-secret hashes, refresh-token tags and CSRF
/// tokens (32 random bytes, mode 0600, beside the other keys).
pub const KEY_FILE: &str = "oauth.key";
/// Every scope word there is; no scope asked means all of them.
pub const SCOPES: [&str; 2] = [SCOPE_API, SCOPE_MQTT];

/// The error codes of RFC 6749 §4.1.2.1, §5.2 and RFC 7009 §2.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth protocol error: its RFC 6749 code and a description for the
/// developer (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// The client authenticated with HTTP Basic: `invalid_client` must be
    /// 401 with `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    pub basic: bool,
    /// Rate limited: retry after this long.
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
            basic: false,
            retry_after: None,
        }
    }

    pub fn request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    pub fn grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidGrant, description)
    }

    fn rate_limited(after: Duration) -> OAuthError {
        OAuthError {
            retry_after: Some(after),
            ..OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                format!("too many attempts; retry in {} s", after.as_secs().max(1)),
            )
        }
    }

    /// The store failed: nothing was issued.
    fn unavailable(e: impl std::fmt::Display) -> OAuthError {
        tracing::error!("OAuth: storage failure: {e}");
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the store failed; nothing was issued",
        )
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> OAuthError {
        OAuthError::unavailable(e)
    }
}

impl From<TokenServiceError> for OAuthError {
    fn from(e: TokenServiceError) -> OAuthError {
        OAuthError::unavailable(e)
    }
}

/// How a client authenticated (HTTP Basic, already URL-decoded per RFC
/// 6749 §2.3.1, or form fields), or only named itself (public clients).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
    pub basic: bool,
}

impl std::fmt::Debug for ClientCredentials {
    /// Without the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("basic", &self.basic)
            .finish_non_exhaustive()
    }
}

/// What the token endpoint answers (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    /// `None`: never expires.
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl std::fmt::Debug for IssuedTokens {
    /// Without the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .field("refresh", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The authorization server's state: registered clients, pending codes,
/// refresh-token families, and the key behind secrets' hashes and tags.
pub struct OAuthState {
    pub config: OAuthConfig,
    store: Arc<Store>,
    key: [u8; 32],
    clients: RwLock<HashMap<String, OAuthClient>>,
    codes: Codes,
    families: Families,
    /// Revocations that requests still issuing tokens must see.
    revocations: Revocations,
    /// Serialises registry changes (check, write, account, audit).
    writes: Mutex<()>,
}

/// Why the authorization server could not start.
#[derive(Debug, thiserror::Error)]
pub enum OAuthOpenError {
    #[error("OAuth key {0}")]
    Key(String),
    #[error("corrupt OAuth record: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn load_or_create_key(dir: &Path) -> Result<[u8; 32], OAuthOpenError> {
    let path = dir.join(KEY_FILE);
    let err = |e: String| OAuthOpenError::Key(format!("{}: {e}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| err("not 32 bytes".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            crate::tls::write_new(&path, &key, true).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl OAuthState {
    /// Loads the key (created 0600 on first start), the clients and the
    /// refresh-token families; families of gone users or clients are
    /// dropped.
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        config: &OAuthConfig,
        user_exists: impl Fn(&str) -> bool,
    ) -> Result<OAuthState, OAuthOpenError> {
        let key = load_or_create_key(dir)?;
        let clients = clients::load(&store)?;
        let families = Families::open(
            store.clone(),
            blake3::derive_key("gatehouse oauth refresh token v1", &key),
            Limits::of(config),
            |f| clients.contains_key(&f.client_id) && user_exists(&f.user_id),
        )?;
        Ok(OAuthState {
            config: config.clone(),
            store,
            codes: Codes::new(blake3::derive_key("gatehouse oauth code v1", &key)),
            key,
            clients: RwLock::new(clients),
            families,
            revocations: Revocations::default(),
            writes: Mutex::new(()),
        })
    }

    pub fn client(&self, client_id: &str) -> Option<OAuthClient> {
        self.clients.read().get(client_id).cloned()
    }

    /// A keyed hash for `purpose` (CSRF tokens, secrets): BLAKE3 under a
    /// key derived from the OAuth key.
    pub fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        let key = blake3::derive_key(purpose, &self.key);
        let mut hasher = blake3::Hasher::new_keyed(&key);
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }

    /// The stored form of a client secret (see `docs/decisions.md`).
    fn secret_hash(&self, client_id: &str, secret: &str) -> String {
        hex(&self.mac(
            "gatehouse oauth client secret v1",
            &[client_id.as_bytes(), secret.as_bytes()],
        ))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two strings.
pub(crate) fn same(a: &str, b: &str) -> bool {
    constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// A requested scope checked and put in canonical order; none asked
/// means every scope (`api mqtt`). Unknown words are `invalid_scope`.
pub fn parse_scope(requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(text) = requested.filter(|t| !t.trim().is_empty()) else {
        return Ok(SCOPES.join(" "));
    };
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    if let Some(bad) = words.iter().find(|w| !SCOPES.contains(*w)) {
        let shown: String = bad.chars().take(64).collect();
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("unknown scope `{shown}` (known: api, mqtt)"),
        ));
    }
    Ok(SCOPES
        .iter()
        .filter(|s| words.contains(*s))
        .copied()
        .collect::<Vec<_>>()
        .join(" "))
}

/// A fresh random id (lowercase hex, 128 bits).
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl IdentityServices {
    /// Authenticates the client of a token, introspection or revocation
    /// request: a confidential client by its secret (a keyed hash,
    /// compared in constant time), a public one by its id alone. Failures
    /// are `invalid_client` and count against the caller's address.
    pub fn authenticate_client(
        &self,
        credentials: Option<&ClientCredentials>,
        peer: IpAddr,
    ) -> Result<OAuthClient, OAuthError> {
        let limit_key = format!("oauth-client:{peer}");
        self.per_address
            .check(&limit_key)
            .map_err(OAuthError::rate_limited)?;
        let basic = credentials.is_some_and(|c| c.basic);
        let refuse = |description: &str| {
            let _ = self.per_address.take(&limit_key);
            OAuthError {
                basic,
                ..OAuthError::new(ErrorCode::InvalidClient, description)
            }
        };
        let Some(credentials) = credentials else {
            return Err(refuse("client authentication required"));
        };
        let client = self.oauth.client(&credentials.client_id);
        let secret = credentials.secret.as_deref();
        match (client, secret) {
            (Some(client), Some(secret)) if client.client_type == ClientType::Confidential => {
                let presented = self.oauth.secret_hash(&client.client_id, secret);
                let stored = client.secret_hash.as_deref().unwrap_or_default();
                if same(&presented, stored) && self.client_enabled(&client) {
                    Ok(client)
                } else {
                    tracing::warn!(%peer, client_id = client.client_id, "OAuth client authentication failed");
                    Err(refuse("client authentication failed"))
                }
            }
            (Some(client), None) if client.client_type == ClientType::Public => Ok(client),
            (Some(client), None) => {
                tracing::warn!(%peer, client_id = client.client_id, "OAuth client authentication failed: no secret");
                Err(refuse("client authentication failed"))
            }
            (Some(_), Some(_)) => Err(refuse(
                "client authentication failed (a public client has no secret)",
            )),
            (None, _) => {
                // Same work as a real check: no client enumeration by timing.
                let _ = self.oauth.secret_hash(&credentials.client_id, "");
                Err(refuse("client authentication failed"))
            }
        }
    }

    /// Signs an access token for `user` through `client`, and with
    /// `grant` (code and password grants) a refresh token while the
    /// client's refresh count allows one. Nothing is issued, or what was
    /// is revoked again, when the user's or the client's tokens (or the
    /// grant) were revoked after `ticket` was taken.
    pub(crate) fn issue_tokens(
        &self,
        client: &OAuthClient,
        user: &User,
        scope: &str,
        grant: Option<&str>,
        ticket: Ticket,
        kind: GrantKind,
    ) -> Result<IssuedTokens, OAuthError> {
        let check = || {
            self.oauth
                .revocations
                .check(ticket, grant, &client.client_id, &user.id)
        };
        check()?;
        let (access_token, expires_in, jti) =
            self.issue_access_token(client, user, scope, grant, kind)?;
        let undo = |e: OAuthError| {
            let undone = match grant {
                Some(id) => self.revoke_grant(id).map(drop),
                None => self
                    .tokens
                    .revoke_where(|r| r.jti == jti)
                    .map(drop)
                    .map_err(Into::into),
            };
            if let Err(u) = undone {
                tracing::warn!("cannot revoke a token issued during a revocation: {u}");
            }
            e
        };
        let refresh_token = match grant {
            Some(id) if client.refresh_count.allows_refresh() => {
                let family = Families::new_family(
                    id,
                    &client.client_id,
                    &user.id,
                    scope,
                    client.refresh_count.limit(),
                    kind,
                );
                let (token, ended) = self.oauth.families.start(family, check).map_err(undo)?;
                for id in ended {
                    if let Err(e) = self.revoke_grant(&id) {
                        tracing::warn!("cannot end an OAuth grant beyond the cap: {e}");
                    }
                }
                Some(token)
            }
            _ => None,
        };
        check().map_err(undo)?;
        tracing::info!(
            client_id = client.client_id,
            username = user.username,
            scope,
            refresh = refresh_token.is_some(),
            "OAuth access token issued"
        );
        Ok(IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
            scope: scope.into(),
        })
    }

    /// Signs an access token with the client's lifetime; returns it, its
    /// `expires_in` (`None`: never expires) and its jti.
    pub(crate) fn issue_access_token(
        &self,
        client: &OAuthClient,
        user: &User,
        scope: &str,
        grant: Option<&str>,
        kind: GrantKind,
    ) -> Result<(String, Option<u64>, String), OAuthError> {
        let lifetime = self.lifetime(client);
        let (token, record) = self.tokens.issue_access(AccessGrant {
            user,
            client_id: &client.client_id,
            scope,
            lifetime,
            grant,
            grant_type: kind.as_str(),
        })?;
        let expires_in =
            lifetime.map(|_| (record.expires_at / 1000).saturating_sub(record.created_at / 1000));
        Ok((token, expires_in, record.jti))
    }

    /// The client's access-token lifetime in seconds (`None`: never).
    pub(crate) fn lifetime(&self, client: &OAuthClient) -> Option<u64> {
        client
            .token_expiration
            .seconds(self.oauth.config.token_expiration_secs)
    }

    /// Ends an authorization: its refresh tokens and every access token
    /// issued under it (a reused code or refresh token, a revoked refresh
    /// token).
    pub(crate) fn revoke_grant(&self, grant: &str) -> Result<usize, OAuthError> {
        self.oauth.revocations.revoke_grant(grant);
        self.oauth.families.remove(grant)?;
        let revoked = self
            .tokens
            .revoke_where(|r| r.grant.as_deref() == Some(grant))?;
        Ok(revoked.len())
    }

    /// The user a token is for, if it may still get one.
    fn live_user(&self, user_id: &str) -> Result<User, OAuthError> {
        self.directory
            .user_by_id(user_id)
            .filter(|u| u.enabled)
            .ok_or_else(|| OAuthError::grant("the user no longer exists or is disabled"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_canonical() {
        assert_eq!(parse_scope(None).unwrap(), "api mqtt");
        assert_eq!(parse_scope(Some(" ")).unwrap(), "api mqtt");
        assert_eq!(parse_scope(Some("mqtt api mqtt")).unwrap(), "api mqtt");
        assert_eq!(parse_scope(Some("mqtt")).unwrap(), "mqtt");
        let e = parse_scope(Some("mqtt admin")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("admin"));
    }
}
