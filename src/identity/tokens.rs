//! API tokens: ES256 JWTs signed with a key generated on first start,
//! recorded (fingerprint, label, times; never the token itself) so that a
//! user's tokens can be listed and revoked, and bound to the MQTT sessions
//! that logged in with them, which close when the token expires (v5 0xA0)
//! or is revoked (0x98).
//!
//! A token is valid only while its record exists: revoking deletes the
//! record, and every check (HTTP request or MQTT CONNECT) looks it up, so
//! a revoked token is refused at once everywhere. The claims carry who the
//! caller is, never what they may do: permissions are read from the
//! directory on each request.
//!
//! OAuth access tokens: `access_tokens.rs` (verified here too).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::access_tokens::AccessClaims;
pub use super::access_tokens::{
    AccessGrant, NEVER_EXPIRES, SCOPE_API, SCOPE_MQTT, TYP_ACCESS_TOKEN,
};
use super::model::User;
use super::token_sessions::{LiveTokens, RenewPolicy};
use crate::router::now_millis;
use crate::store::{IdentityTable, Store, StoreError};

/// The signing key's file in the data directory (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "jwt-es256.pem";
/// Scope of a token that may only enrol MFA (enforced enrolment pending).
pub const SCOPE_MFA_ENROLL: &str = "mfa-enroll";
/// Longer strings are not tokens of ours (and are not hashed or parsed).
const MAX_TOKEN_LEN: usize = 8192;
/// Verified tokens remembered, so a reconnecting device verifies once.
const CACHE_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a token")]
    Malformed,
    #[error("token signature or claims invalid")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenServiceError {
    #[error("signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("token `{0}` not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt token record: {0}")]
    Corrupt(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    username: String,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// What is kept of an issued token (Connectware lists `fingerprint,
/// createdAt, expiresAt, label` on the user object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub jti: String,
    pub user_id: String,
    pub username: String,
    /// SHA-256 of the token text, hex: the holder can compute it.
    pub fingerprint: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default)]
    pub scope: Option<String>,
    /// OAuth access tokens: the client they were issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth access tokens: the authorization they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// OAuth access tokens: the grant type they came from (a refresh
    /// counts as the grant that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
}

/// A token that verified: who it speaks for, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub jti: Box<str>,
    pub user_id: Box<str>,
    pub username: Box<str>,
    pub fingerprint: Box<str>,
    /// Unix seconds.
    pub expires_at: u64,
    pub scope: Option<Box<str>>,
    /// Set for OAuth access tokens.
    pub client_id: Option<Box<str>>,
}

impl TokenInfo {
    /// A token good only for enrolling MFA.
    pub fn enrol_only(&self) -> bool {
        self.scope.as_deref() == Some(SCOPE_MFA_ENROLL)
    }
}

/// The ES256 key pair and its id.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// base64url of the point's coordinates, for the JWKS.
    x: String,
    y: String,
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Loads `dir/KEY_FILE`, creating it (0600) on first start.
    fn load_or_create(dir: &Path) -> Result<SigningKey, TokenServiceError> {
        let path = dir.join(KEY_FILE);
        let err = |reason: String| TokenServiceError::Key {
            path: path.clone(),
            reason,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| err(e.to_string()))?;
                let pem = key.serialize_pem();
                crate::tls::write_new(&path, pem.as_bytes(), true)
                    .map_err(|e| err(e.to_string()))?;
                tracing::info!(path = %path.display(), "created the token signing key");
                pem
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| err(e.to_string()))?;
        if !pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(err("not a P-256 key".into()));
        }
        let point = pair.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err(err("unexpected public key encoding".into()));
        }
        let (x, y) = (b64url(&point[1..33]), b64url(&point[33..]));
        // RFC 7638 thumbprint: members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(&Sha256::digest(canonical.as_bytes()));
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| err(e.to_string()))?,
            decoding: DecodingKey::from_ec_components(&x, &y).map_err(|e| err(e.to_string()))?,
            x,
            y,
        })
    }
}

#[derive(Default)]
pub(super) struct Records {
    pub(super) by_jti: HashMap<Box<str>, TokenRecord>,
    /// User id → jtis.
    by_user: HashMap<String, Vec<Box<str>>>,
}

impl Records {
    fn insert(&mut self, record: TokenRecord) {
        self.by_user
            .entry(record.user_id.clone())
            .or_default()
            .push(record.jti.as_str().into());
        self.by_jti.insert(record.jti.as_str().into(), record);
    }

    pub(super) fn remove(&mut self, jti: &str) -> Option<TokenRecord> {
        let record = self.by_jti.remove(jti)?;
        if let Some(list) = self.by_user.get_mut(&record.user_id) {
            list.retain(|j| &**j != jti);
            if list.is_empty() {
                self.by_user.remove(&record.user_id);
            }
        }
        Some(record)
    }
}

pub struct TokenService {
    key: SigningKey,
    issuer: String,
    pub(super) store: Arc<Store>,
    pub(super) records: RwLock<Records>,
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], Arc<TokenInfo>>>,
    pub(super) live: Mutex<LiveTokens>,
    /// Wakes the sweeper when a token bound to a session expires sooner
    /// than the one it sleeps for.
    pub(super) sooner: tokio::sync::Notify,
    /// What else an MQTT re-authentication must satisfy (the OAuth
    /// server's rules), set once the identity services exist.
    pub(super) policy: std::sync::OnceLock<std::sync::Weak<dyn RenewPolicy>>,
}

pub(super) fn now_secs() -> u64 {
    now_millis() / 1000
}

impl TokenService {
    /// Loads (or creates) the signing key in `dir` and the token records;
    /// records of expired tokens and of users that no longer exist
    /// (`user_exists` by id) are dropped.
    pub fn open(
        dir: &Path,
        issuer: &str,
        store: Arc<Store>,
        user_exists: impl Fn(&str) -> bool,
    ) -> Result<TokenService, TokenServiceError> {
        let key = SigningKey::load_or_create(dir)?;
        let mut records = Records::default();
        let mut stale = Vec::new();
        let now = now_millis();
        for raw in store.load_identity(IdentityTable::Tokens)? {
            let record: TokenRecord = serde_json::from_slice(&raw)
                .map_err(|e| TokenServiceError::Corrupt(e.to_string()))?;
            if record.expires_at <= now || !user_exists(&record.user_id) {
                stale.push(record.jti);
            } else {
                records.insert(record);
            }
        }
        let deletes: Vec<_> = stale
            .iter()
            .map(|jti| (IdentityTable::Tokens, jti.as_str(), None))
            .collect();
        if !deletes.is_empty() {
            store.put_identity_batch(&deletes)?;
        }
        Ok(TokenService {
            key,
            issuer: issuer.into(),
            store,
            records: RwLock::new(records),
            cache_key: rand::random(),
            cache: Mutex::new(HashMap::new()),
            live: Mutex::new(LiveTokens::default()),
            sooner: tokio::sync::Notify::new(),
            policy: std::sync::OnceLock::new(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// `iss` of every token (also `aud` of access tokens).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JWK Set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": self.key.x, "y": self.key.y,
            "kid": self.key.kid, "use": "sig", "alg": "ES256",
        }]})
    }

    /// Signs a token for `user` valid `lifetime` from now and records it.
    pub fn issue(
        &self,
        user: &User,
        lifetime: Duration,
        label: Option<String>,
        scope: Option<&str>,
    ) -> Result<(String, TokenRecord), TokenServiceError> {
        let now = now_millis();
        let iat = now / 1000;
        let exp = iat + lifetime.as_secs().max(1);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            username: user.username.clone(),
            iat,
            exp,
            jti: format!("{:032x}", rand::random::<u128>()),
            label: label.clone(),
            scope: scope.map(str::to_owned),
        };
        let token = self.sign("JWT", &claims)?;
        let record = TokenRecord {
            jti: claims.jti,
            user_id: user.id.clone(),
            username: user.username.clone(),
            fingerprint: fingerprint(&token),
            label,
            created_at: now,
            expires_at: exp * 1000,
            scope: claims.scope,
            client_id: None,
            grant: None,
            grant_type: None,
        };
        self.record(record.clone())?;
        Ok((token, record))
    }

    pub(super) fn sign(
        &self,
        typ: &str,
        claims: &impl Serialize,
    ) -> Result<String, TokenServiceError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key.encoding)
            .map_err(|e| TokenServiceError::Sign(e.to_string()))
    }

    /// Stores a record durably, then in memory.
    pub(super) fn record(&self, record: TokenRecord) -> Result<(), TokenServiceError> {
        let json = serde_json::to_vec(&record).expect("token record serialises");
        self.store
            .put_identity(IdentityTable::Tokens, &record.jti, Some(&json))?;
        self.records.write().insert(record);
        Ok(())
    }

    fn digest(&self, token: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.cache_key, token.as_bytes()).as_bytes()
    }

    /// Checks a token: signature (once; verified tokens are cached under a
    /// keyed hash), header (`typ` JWT or at+jwt, `alg` ES256, our `kid`),
    /// issuer (and audience of an access token), expiry, and that its
    /// record still exists (not revoked).
    pub fn verify(&self, token: &str) -> Result<Arc<TokenInfo>, TokenError> {
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(TokenError::Malformed);
        }
        let digest = self.digest(token);
        let cached = self.cache.lock().get(&digest).cloned();
        let info = match cached {
            Some(info) => info,
            None => {
                let info = Arc::new(self.verify_signed(token)?);
                let mut cache = self.cache.lock();
                if cache.len() >= CACHE_ENTRIES {
                    let now = now_secs();
                    cache.retain(|_, i| i.expires_at > now);
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                }
                cache.insert(digest, info.clone());
                info
            }
        };
        if info.expires_at <= now_secs() {
            return Err(TokenError::Expired);
        }
        if !self.records.read().by_jti.contains_key(&info.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(info)
    }

    fn verify_signed(&self, token: &str) -> Result<TokenInfo, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // jsonwebtoken does not check `typ`; a token of another type (or
        // signed by another key) is not ours. RFC 9068 §4: access tokens
        // must say `at+jwt` (media types compare case-insensitively).
        let access = match header.typ.as_deref() {
            Some("JWT") => false,
            Some(t)
                if t.eq_ignore_ascii_case(TYP_ACCESS_TOKEN)
                    || t.eq_ignore_ascii_case("application/at+jwt") =>
            {
                true
            }
            _ => return Err(TokenError::Invalid),
        };
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.key.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        if access {
            validation.set_audience(&[&self.issuer]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        } else {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        }
        let decode_err = |e: jsonwebtoken::errors::Error| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        };
        let (jti, sub, exp, scope, client_id) = if access {
            let c = jsonwebtoken::decode::<AccessClaims>(token, &self.key.decoding, &validation)
                .map_err(decode_err)?
                .claims;
            (c.jti, c.sub, c.exp, Some(c.scope), Some(c.client_id))
        } else {
            let c = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &validation)
                .map_err(decode_err)?
                .claims;
            (c.jti, c.sub, c.exp, c.scope, None)
        };
        let fingerprint = fingerprint(token);
        let records = self.records.read();
        let record = records
            .by_jti
            .get(jti.as_str())
            .ok_or(TokenError::Revoked)?;
        if record.user_id != sub
            || record.fingerprint != fingerprint
            || record.client_id != client_id
        {
            return Err(TokenError::Revoked);
        }
        Ok(TokenInfo {
            jti: jti.into(),
            user_id: sub.into(),
            username: record.username.as_str().into(),
            fingerprint: fingerprint.into(),
            expires_at: exp,
            scope: scope.map(Into::into),
            client_id: client_id.map(Into::into),
        })
    }

    /// A user's live tokens, oldest first.
    pub fn tokens_of(&self, user_id: &str) -> Vec<TokenRecord> {
        let records = self.records.read();
        let now = now_millis();
        let mut out: Vec<TokenRecord> = records
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|jti| records.by_jti.get(&**jti))
            .filter(|r| r.expires_at > now)
            .cloned()
            .collect();
        out.sort_by_key(|r| r.created_at);
        out
    }

    /// Revokes one of `user_id`'s tokens by fingerprint.
    pub fn revoke(
        &self,
        user_id: &str,
        fingerprint: &str,
    ) -> Result<TokenRecord, TokenServiceError> {
        let jti = {
            let records = self.records.read();
            records
                .by_user
                .get(user_id)
                .into_iter()
                .flatten()
                .find(|jti| {
                    records
                        .by_jti
                        .get(&***jti)
                        .is_some_and(|r| r.fingerprint.eq_ignore_ascii_case(fingerprint))
                })
                .cloned()
        };
        let jti = jti.ok_or_else(|| TokenServiceError::NotFound(fingerprint.into()))?;
        self.remove(&[jti])?
            .pop()
            .ok_or_else(|| TokenServiceError::NotFound(fingerprint.into()))
    }

    /// Revokes every token of `user_id` (also used when the user is deleted).
    pub fn revoke_all(&self, user_id: &str) -> Result<Vec<TokenRecord>, TokenServiceError> {
        let jtis: Vec<Box<str>> = self
            .records
            .read()
            .by_user
            .get(user_id)
            .cloned()
            .unwrap_or_default();
        self.remove(&jtis)
    }

    /// Deletes records (durably first), then closes their MQTT sessions.
    pub(super) fn remove(&self, jtis: &[Box<str>]) -> Result<Vec<TokenRecord>, TokenServiceError> {
        if jtis.is_empty() {
            return Ok(Vec::new());
        }
        let deletes: Vec<_> = jtis
            .iter()
            .map(|jti| (IdentityTable::Tokens, &**jti, None))
            .collect();
        self.store.put_identity_batch(&deletes)?;
        let removed: Vec<TokenRecord> = {
            let mut records = self.records.write();
            jtis.iter().filter_map(|jti| records.remove(jti)).collect()
        };
        for jti in jtis {
            self.close_sessions(jti, false);
        }
        Ok(removed)
    }
}

/// SHA-256 of the token text, lowercase hex.
pub fn fingerprint(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::identity) fn service(dir: &Path) -> TokenService {
        let store = Arc::new(
            Store::open(
                &dir.join("data"),
                crate::config::Durability::Sync,
                Duration::from_millis(100),
            )
            .unwrap(),
        );
        TokenService::open(dir, "gatehouse", store, |_| true).unwrap()
    }

    pub(in crate::identity) fn user() -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            password_hash: None,
            grant_types: Vec::new(),
            roles: Vec::new(),
            permissions: Vec::new(),
            mqtt_publish_prefix: None,
            enabled: true,
            created_at: 0,
            updated_at: 0,
            certificates: Vec::new(),
        }
    }

    #[test]
    fn issue_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let (token, record) = tokens
            .issue(&user(), Duration::from_secs(3600), Some("t".into()), None)
            .unwrap();
        let info = tokens.verify(&token).unwrap();
        assert_eq!(&*info.username, "alice");
        assert_eq!(record.fingerprint, fingerprint(&token));
        // The cached path gives the same answer.
        assert_eq!(tokens.verify(&token).unwrap(), info);
        assert_eq!(tokens.tokens_of("u1").len(), 1);
        tokens.revoke("u1", &record.fingerprint).unwrap();
        assert_eq!(tokens.verify(&token), Err(TokenError::Revoked));
        assert!(tokens.tokens_of("u1").is_empty());
    }

    #[test]
    fn key_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kid = service(dir.path()).kid().to_owned();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SigningKey::load_or_create(dir.path()).unwrap().kid, kid);
    }

    #[test]
    fn foreign_and_tampered_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let (token, _) = tokens
            .issue(&user(), Duration::from_secs(3600), None, None)
            .unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = service(other_dir.path());
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = b64url(
            br#"{"iss":"gatehouse","sub":"u1","username":"admin","iat":1,"exp":99999999999,"jti":"x"}"#,
        );
        assert_eq!(tokens.verify(&parts.join(".")), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("abc"), Err(TokenError::Malformed));
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(tokens.verify(&none).is_err());
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(tokens.kid().into());
        let claims = Claims {
            iss: "gatehouse".into(),
            sub: "u1".into(),
            username: "alice".into(),
            iat: 1,
            exp: now_secs() + 100,
            jti: "j".into(),
            label: None,
            scope: None,
        };
        let wrong_typ = jsonwebtoken::encode(&header, &claims, &tokens.key.encoding).unwrap();
        assert_eq!(tokens.verify(&wrong_typ), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let (token, _) = tokens
            .issue(&user(), Duration::from_secs(1), None, None)
            .unwrap();
        assert!(tokens.verify(&token).is_ok());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
        tokens.sweep_once();
        assert!(tokens.records.read().by_jti.is_empty());
    }
}
