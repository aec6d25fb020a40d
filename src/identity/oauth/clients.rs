//! OAuth client registration, after Software AG Integration Server: name
//! and version (the pair unique), confidential or public, redirect URIs,
//! allowed grants (authorization code by default), token expiration and
//! refresh count. A confidential client gets a 36-character secret, shown
//! once and kept only as a keyed hash, and a user account named by its
//! client id with the secret as password, so that roles and permissions
//! can be given to it (what `client_credentials` tokens may do).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::OAuthOpenError;
pub use super::model::{ClientType, Expiration, GrantKind, MAX_SECONDS, RefreshCount};
use crate::identity::audit::Actor;
use crate::identity::directory::IdentityError;
use crate::identity::model::User;
use crate::identity::password;
use crate::identity::services::{AdminError, CreateUser, IdentityServices};
use crate::router::now_millis;
use crate::store::{IdentityTable, Store};

/// Characters Integration Server forbids in a client's name and version.
const FORBIDDEN: &[char] = &['&', '(', ')', '\\', ';', ',', '/', '"', ':', '\'', '<', '>'];
const MAX_REDIRECT_URIS: usize = 32;
const MAX_URI_LEN: usize = 2048;
/// URL-safe alphabet of generated secrets (64 symbols: a random byte's
/// low six bits pick one uniformly).
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const SECRET_LEN: usize = 36;

/// A registered client as stored (and, without the hash, as shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClient {
    pub client_id: String,
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    #[serde(default)]
    pub description: Option<String>,
    pub redirect_uris: Vec<String>,
    pub allowed_grants: Vec<GrantKind>,
    pub token_expiration: Expiration,
    pub refresh_count: RefreshCount,
    /// Keyed hash of the secret (confidential clients); never shown.
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// The client's user account (confidential clients).
    #[serde(default)]
    pub user_id: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl OAuthClient {
    pub fn allows(&self, grant: GrantKind) -> bool {
        self.allowed_grants.contains(&grant)
    }

    /// Whether a token recorded with `grant_type` (its wire name; `None`
    /// for records older than the field) may still be used: the client
    /// must allow that grant today.
    pub fn still_allows(&self, grant_type: Option<&str>) -> bool {
        grant_type.is_none_or(|g| self.allowed_grants.iter().any(|a| a.as_str() == g))
    }
}

/// A registration or a change: `None` keeps a field (or, when creating,
/// takes its default).
#[derive(Debug, Clone, Default)]
pub struct ClientInput {
    pub name: Option<String>,
    pub version: Option<String>,
    pub client_type: Option<ClientType>,
    /// `Some(None)` removes it.
    pub description: Option<Option<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub allowed_grants: Option<Vec<GrantKind>>,
    pub token_expiration: Option<Expiration>,
    pub refresh_count: Option<RefreshCount>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 422 naming the field.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("OAuth client `{0}` not found")]
    NotFound(String),
    #[error("a client named `{0}` with this version already exists")]
    Exists(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ClientError {
    ClientError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Every stored client, by id.
pub(super) fn load(store: &Store) -> Result<HashMap<String, OAuthClient>, OAuthOpenError> {
    let mut clients = HashMap::new();
    for raw in store.load_identity(IdentityTable::OAuthClients)? {
        let client: OAuthClient =
            serde_json::from_slice(&raw).map_err(|e| OAuthOpenError::Corrupt(e.to_string()))?;
        clients.insert(client.client_id.clone(), client);
    }
    Ok(clients)
}

fn check_label(field: &'static str, text: &str) -> Result<(), ClientError> {
    if text.is_empty() || text.chars().count() > 128 {
        return Err(invalid(field, "must be 1 to 128 characters"));
    }
    if text
        .chars()
        .any(|c| FORBIDDEN.contains(&c) || c.is_control())
    {
        return Err(invalid(
            field,
            "must not contain & ( ) \\ ; , / \" : ' < > or control characters",
        ));
    }
    Ok(())
}

/// Why a redirect URI is refused, if it is. Matched exactly at the
/// authorization endpoint, and only these (RFC 6749 §3.1.2, RFC 9700
/// §2.1, RFC 8252 §7): an absolute URI in printable ASCII (it becomes a
/// `Location` header) without fragment or wildcard; `https`, `http` only
/// on a loopback host (`localhost`, `127.0.0.1`, `[::1]`, any port), or a
/// private-use scheme in reverse-domain form (`com.example.app:/cb`).
pub fn redirect_uri_problem(uri: &str) -> Option<&'static str> {
    if uri.len() > MAX_URI_LEN
        || !uri.is_ascii()
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Some("must be at most 2048 printable ASCII characters");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Some("must be an absolute URI");
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return Some("must be an absolute URI");
    }
    if uri.contains('#') {
        return Some("must not have a fragment");
    }
    if uri.contains('*') {
        return Some("must not contain wildcards");
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        if !scheme.contains('.') {
            return Some(
                "must be https, http on a loopback host, or a private-use scheme in reverse-domain form (com.example.app:/callback)",
            );
        }
        return None;
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Some("must be an absolute URI with a host");
    };
    let authority = after.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("must not carry user information");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, port)) => (&authority[..addr.len() + 2], port),
            None => return Some("must be an absolute URI with a host"),
        },
        None => match authority.split_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    if host.is_empty() || !port_ok {
        return Some("must be an absolute URI with a host");
    }
    let loopback = matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    );
    if scheme == "http" && !loopback {
        return Some("http only on a loopback host (localhost, 127.0.0.1, [::1]); use https");
    }
    None
}

/// The rules a client must satisfy as a whole.
fn check(client: &OAuthClient) -> Result<(), ClientError> {
    check_label("name", &client.name)?;
    check_label("version", &client.version)?;
    if client
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(invalid("description", "must be at most 1024 characters"));
    }
    if client.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("redirectUris", "at most 32 redirect URIs"));
    }
    for uri in &client.redirect_uris {
        if let Some(problem) = redirect_uri_problem(uri) {
            let shown: String = uri.chars().take(80).collect();
            return Err(invalid("redirectUris", format!("`{shown}` {problem}")));
        }
    }
    if client.allowed_grants.is_empty() {
        return Err(invalid("allowedGrants", "at least one grant is needed"));
    }
    let browser = client.allows(GrantKind::AuthorizationCode) || client.allows(GrantKind::Implicit);
    if browser && client.redirect_uris.is_empty() {
        return Err(invalid(
            "redirectUris",
            "a redirect URI is needed for authorization_code and implicit",
        ));
    }
    let confidential_only =
        client.allows(GrantKind::ClientCredentials) || client.allows(GrantKind::Password);
    if client.client_type == ClientType::Public && confidential_only {
        return Err(invalid(
            "allowedGrants",
            "public clients cannot use client_credentials or password",
        ));
    }
    Ok(())
}

/// 36 characters from the URL-safe alphabet (216 bits).
fn new_secret() -> String {
    let bytes: [u8; SECRET_LEN] = rand::random();
    bytes
        .iter()
        .map(|b| SECRET_ALPHABET[usize::from(b & 63)] as char)
        .collect()
}

/// A UUID (version 4) as the client id, like Integration Server's.
fn new_client_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = super::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Applies `input` to `client`.
fn apply(client: &mut OAuthClient, input: ClientInput) {
    if let Some(v) = input.name {
        client.name = v;
    }
    if let Some(v) = input.version {
        client.version = v;
    }
    if let Some(v) = input.client_type {
        client.client_type = v;
    }
    if let Some(v) = input.description {
        client.description = v.filter(|d| !d.is_empty());
    }
    if let Some(v) = input.redirect_uris {
        let mut unique: Vec<String> = Vec::new();
        for uri in v {
            if !unique.contains(&uri) {
                unique.push(uri);
            }
        }
        client.redirect_uris = unique;
    }
    if let Some(mut v) = input.allowed_grants {
        v.sort();
        v.dedup();
        client.allowed_grants = v;
    }
    if let Some(v) = input.token_expiration {
        client.token_expiration = v;
    }
    if let Some(v) = input.refresh_count {
        client.refresh_count = v;
    }
}

impl IdentityServices {
    /// Every registered client, oldest first.
    pub fn oauth_clients(&self) -> Vec<OAuthClient> {
        let mut all: Vec<OAuthClient> = self.oauth.clients.read().values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        all
    }

    pub fn oauth_client(&self, client_id: &str) -> Result<OAuthClient, ClientError> {
        self.oauth
            .client(client_id)
            .ok_or_else(|| ClientError::NotFound(client_id.into()))
    }

    /// Registers a client; a confidential one's secret is returned (the
    /// only time it is shown) and its user account created.
    pub fn create_oauth_client(
        &self,
        actor: &Actor,
        input: ClientInput,
    ) -> Result<(OAuthClient, Option<String>), ClientError> {
        let required = |field| move || invalid(field, "required");
        let name = input.name.clone().ok_or_else(required("name"))?;
        let version = input.version.clone().ok_or_else(required("version"))?;
        let client_type = input.client_type.ok_or_else(required("type"))?;
        let now = now_millis();
        let mut client = OAuthClient {
            client_id: new_client_id(),
            name,
            version,
            client_type,
            description: None,
            redirect_uris: Vec::new(),
            allowed_grants: vec![GrantKind::AuthorizationCode],
            token_expiration: Expiration::Global,
            refresh_count: RefreshCount::Limit(0),
            secret_hash: None,
            user_id: None,
            created_at: now,
            updated_at: now,
        };
        apply(&mut client, input);
        check(&client)?;
        let _serial = self.oauth.writes.lock();
        self.unique(&client)?;
        let secret = match client.client_type {
            ClientType::Confidential => Some(self.give_account(actor, &mut client)?),
            ClientType::Public => None,
        };
        if let Err(e) = self.put_client(&client) {
            if let Err(undo) = self.take_account(actor, &mut client) {
                tracing::warn!(
                    client_id = client.client_id,
                    "cannot remove the account of a client not registered: {undo}"
                );
            }
            return Err(e);
        }
        self.audit_client(actor, "oauth.client.create", &client)?;
        Ok((client, secret))
    }

    /// Changes a client; a change of type creates (with a new secret,
    /// returned) or removes its account. A change of type or grants ends
    /// its pending codes and refresh-token grants (with their access
    /// tokens) and the access tokens of grant types it no longer allows; a
    /// change of redirect URIs ends its pending codes.
    pub fn update_oauth_client(
        &self,
        actor: &Actor,
        client_id: &str,
        input: ClientInput,
    ) -> Result<(OAuthClient, Option<String>), ClientError> {
        let _serial = self.oauth.writes.lock();
        let mut client = self.oauth_client(client_id)?;
        let before = client.clone();
        let was = client.client_type;
        apply(&mut client, input);
        check(&client)?;
        self.unique(&client)?;
        client.updated_at = now_millis().max(before.updated_at + 1);
        let secret = match (was, client.client_type) {
            (ClientType::Public, ClientType::Confidential) => {
                Some(self.give_account(actor, &mut client)?)
            }
            (ClientType::Confidential, ClientType::Public) => {
                self.take_account(actor, &mut client)?;
                None
            }
            _ => None,
        };
        // The new client first, then the cut-off and the sweeps: a token
        // request that takes its ticket after the cut-off reads the new
        // client; one with an older ticket is refused at its final check,
        // or had recorded its token before it, which the sweeps then find.
        self.put_client(&client)?;
        if client.client_type != before.client_type
            || client.allowed_grants != before.allowed_grants
        {
            self.end_client_grants(client_id, false)?;
            self.end_disallowed_tokens(&client)?;
        } else if client.redirect_uris != before.redirect_uris {
            self.oauth.codes.remove_where(|g| g.client_id == client_id);
        }
        self.audit_client(actor, "oauth.client.update", &client)?;
        Ok((client, secret))
    }

    /// Removes a client, its account, its pending codes, its refresh
    /// tokens and every access token issued to it (their MQTT sessions
    /// close with 0x98). The account goes first: if that fails, the
    /// client stays (and a retry finishes the job), so no account is left
    /// without its client.
    pub fn delete_oauth_client(&self, actor: &Actor, client_id: &str) -> Result<(), ClientError> {
        let _serial = self.oauth.writes.lock();
        let mut client = self.oauth_client(client_id)?;
        // Gone for token requests first (see `update_oauth_client`); back
        // in the map if the account or the store refuses, so a retry finds
        // it and finishes.
        self.oauth.clients.write().remove(client_id);
        let removed = self
            .end_client_grants(client_id, true)
            .map_err(ClientError::from)
            .and_then(|()| self.take_account(actor, &mut client))
            .and_then(|()| self.store_client(client_id, None));
        if let Err(e) = removed {
            // As far as it got: without its account if that went.
            self.oauth
                .clients
                .write()
                .insert(client_id.to_owned(), client);
            return Err(e);
        }
        self.audit_client(actor, "oauth.client.delete", &client)?;
        Ok(())
    }

    /// The (name, version) pair is unique.
    fn unique(&self, client: &OAuthClient) -> Result<(), ClientError> {
        let taken = self.oauth.clients.read().values().any(|c| {
            c.client_id != client.client_id && c.name == client.name && c.version == client.version
        });
        if taken {
            return Err(ClientError::Exists(client.name.clone()));
        }
        Ok(())
    }

    /// A new secret and the account named by the client id, with the
    /// secret as its password (argon2, like every password; the password
    /// policy does not apply to generated secrets, as in Integration
    /// Server).
    fn give_account(&self, actor: &Actor, client: &mut OAuthClient) -> Result<String, ClientError> {
        let secret = new_secret();
        let user: User = self.create_user(
            actor,
            CreateUser {
                username: client.client_id.clone(),
                ..CreateUser::default()
            },
        )?;
        let hash = password::hash_password(&secret);
        let set = self.directory.update_user(&user.username, |u| {
            u.password_hash = Some(hash);
            Ok(())
        });
        if let Err(e) = set {
            if let Err(undo) = self.remove_account(actor, &user.id) {
                tracing::warn!(
                    client_id = client.client_id,
                    "cannot remove a half-made client account: {undo}"
                );
            }
            return Err(AdminError::from(e).into());
        }
        client.secret_hash = Some(self.oauth.secret_hash(&client.client_id, &secret));
        client.user_id = Some(user.id);
        Ok(secret)
    }

    /// Deletes the client's account (its tokens are revoked with it); one
    /// already gone is fine. Not the caller's own check: a client's token
    /// may delete its client, account included.
    fn take_account(&self, actor: &Actor, client: &mut OAuthClient) -> Result<(), ClientError> {
        if let Some(user_id) = &client.user_id {
            match self.remove_account(actor, user_id) {
                Ok(()) | Err(AdminError::Identity(IdentityError::NotFound(..))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        client.secret_hash = None;
        client.user_id = None;
        Ok(())
    }

    fn put_client(&self, client: &OAuthClient) -> Result<(), ClientError> {
        let json = serde_json::to_vec(client).expect("client serialises");
        self.store_client(&client.client_id, Some(&json))?;
        self.oauth
            .clients
            .write()
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    fn store_client(&self, client_id: &str, json: Option<&[u8]>) -> Result<(), ClientError> {
        self.oauth
            .store
            .put_identity(IdentityTable::OAuthClients, client_id, json)
            .map_err(|e| ClientError::Admin(e.into()))
    }

    fn audit_client(
        &self,
        actor: &Actor,
        action: &str,
        client: &OAuthClient,
    ) -> Result<(), ClientError> {
        let mut detail = serde_json::to_value(client).unwrap_or_default();
        if let Some(map) = detail.as_object_mut() {
            map.remove("secretHash");
        }
        self.audit
            .record(actor, action, &client.client_id, detail)
            .map_err(|e| ClientError::Admin(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_ids() {
        let s = new_secret();
        assert_eq!(s.len(), SECRET_LEN);
        assert!(s.bytes().all(|b| SECRET_ALPHABET.contains(&b)));
        let id = new_client_id();
        assert_eq!(id.len(), 36);
        assert!(crate::identity::model::validate_username(&id).is_ok());
    }

    #[test]
    fn redirect_uris() {
        let ok = |u: &str| redirect_uri_problem(u).is_none();
        assert!(ok("https://app.example/cb?x=1"));
        assert!(ok("https://app.example:8443"));
        assert!(ok("http://127.0.0.1:8765/callback"));
        assert!(ok("http://localhost/cb"));
        assert!(ok("http://[::1]:80/cb"));
        assert!(ok("com.example.app:/oauth"));
        assert!(!ok("/relative"));
        assert!(!ok("https://app.example/cb#frag"));
        assert!(!ok("https://app.example/a b"));
        assert!(!ok("1http://x"));
        assert!(!ok("http://app.example/cb"));
        assert!(!ok("http://127.0.0.1.evil.example/cb"));
        assert!(!ok("http://localhost@evil.example/cb"));
        assert!(!ok("https://*.example/cb"));
        assert!(!ok("https:/nohost"));
        assert!(!ok("https://:443/cb"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("myapp:/cb"));
    }
}
