//! OAuth access tokens (RFC 9068) on the API tokens' key, table and
//! verifier (`tokens.rs`): issued for a client and a user, listed on the
//! user (label `oauth:<client id>`), revoked by grant or by client. Only
//! their `typ` (`at+jwt`) and claims differ from API tokens'; `tokens.rs`
//! verifies both.

use serde::{Deserialize, Serialize};

use super::model::User;
use super::tokens::{TokenInfo, TokenRecord, TokenService, TokenServiceError, fingerprint};
use crate::router::now_millis;

/// `typ` of OAuth access tokens (RFC 9068 §2.1).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
/// `exp` of a token that "never expires": 9999-12-31T23:59:59Z. Still a
/// real expiry (64-bit seconds, milliseconds fit too); nothing arms a timer
/// for it (the sweeper sleeps at most an hour).
pub const NEVER_EXPIRES: u64 = 253_402_300_799;
/// Scope words of OAuth access tokens: `api` opens the admin API, `mqtt`
/// the broker. API tokens (from `/api/login`) have both.
pub const SCOPE_API: &str = "api";
pub const SCOPE_MQTT: &str = "mqtt";

/// RFC 9068 access-token claims. Who the user is comes from the record.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AccessClaims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) aud: String,
    pub(super) client_id: String,
    pub(super) iat: u64,
    pub(super) exp: u64,
    pub(super) jti: String,
    pub(super) scope: String,
}

/// An OAuth access token to issue.
#[derive(Debug, Clone, Copy)]
pub struct AccessGrant<'a> {
    /// The resource owner (the client's own account for `client_credentials`).
    pub user: &'a User,
    pub client_id: &'a str,
    /// Space-separated words of [`SCOPE_API`] and [`SCOPE_MQTT`].
    pub scope: &'a str,
    /// Seconds; `None`: never expires ([`NEVER_EXPIRES`]).
    pub lifetime: Option<u64>,
    /// The authorization (code or password grant) it belongs to, so that
    /// a reused code or refresh token revokes it.
    pub grant: Option<&'a str>,
    /// The grant type it comes from (`authorization_code`, ...).
    pub grant_type: &'a str,
}

impl TokenInfo {
    /// Whether the token opens `what` ([`SCOPE_API`] or [`SCOPE_MQTT`]):
    /// an API token opens both (unless enrol-only), an access token what
    /// its scope names.
    pub fn allows(&self, what: &str) -> bool {
        match (&self.client_id, &self.scope) {
            (None, _) => !self.enrol_only(),
            (Some(_), Some(scope)) => scope.split(' ').any(|w| w == what),
            (Some(_), None) => false,
        }
    }
}

impl TokenService {
    /// Signs and records an OAuth access token (RFC 9068). Its record's
    /// label names the client, so the user's token list shows it.
    pub fn issue_access(
        &self,
        grant: AccessGrant<'_>,
    ) -> Result<(String, TokenRecord), TokenServiceError> {
        let now = now_millis();
        let iat = now / 1000;
        let exp = match grant.lifetime {
            Some(secs) => iat.saturating_add(secs.max(1)).min(NEVER_EXPIRES),
            None => NEVER_EXPIRES,
        };
        let claims = AccessClaims {
            iss: self.issuer().to_owned(),
            sub: grant.user.id.clone(),
            aud: self.issuer().to_owned(),
            client_id: grant.client_id.into(),
            iat,
            exp,
            jti: format!("{:032x}", rand::random::<u128>()),
            scope: grant.scope.into(),
        };
        let token = self.sign(TYP_ACCESS_TOKEN, &claims)?;
        let record = TokenRecord {
            jti: claims.jti,
            user_id: grant.user.id.clone(),
            username: grant.user.username.clone(),
            fingerprint: fingerprint(&token),
            label: Some(format!("oauth:{}", grant.client_id)),
            created_at: now,
            expires_at: exp * 1000,
            scope: Some(claims.scope),
            client_id: Some(claims.client_id),
            grant: grant.grant.map(str::to_owned),
            grant_type: Some(grant.grant_type.to_owned()),
        };
        self.record(record.clone())?;
        Ok((token, record))
    }

    /// The record of a live token, by jti.
    pub fn record_of(&self, jti: &str) -> Option<TokenRecord> {
        self.records.read().by_jti.get(jti).cloned()
    }

    /// Revokes every token `select` picks (an OAuth grant's, a client's).
    pub fn revoke_where(
        &self,
        select: impl Fn(&TokenRecord) -> bool,
    ) -> Result<Vec<TokenRecord>, TokenServiceError> {
        let jtis: Vec<Box<str>> = self
            .records
            .read()
            .by_jti
            .values()
            .filter(|r| select(r))
            .map(|r| r.jti.as_str().into())
            .collect();
        self.remove(&jtis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tokens::TokenError;
    use crate::identity::tokens::tests::{service, user};
    use std::time::Duration;

    #[test]
    fn access_tokens_are_rfc9068_and_checked_by_typ() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let grant = AccessGrant {
            user: &user(),
            client_id: "c1",
            scope: "mqtt",
            lifetime: None,
            grant: Some("g1"),
            grant_type: "password",
        };
        let (token, record) = tokens.issue_access(grant).unwrap();
        assert_eq!(record.expires_at, NEVER_EXPIRES * 1000);
        assert_eq!(record.label.as_deref(), Some("oauth:c1"));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(TYP_ACCESS_TOKEN));
        let info = tokens.verify(&token).unwrap();
        assert_eq!(info.expires_at, NEVER_EXPIRES);
        assert_eq!(info.client_id.as_deref(), Some("c1"));
        assert_eq!(&*info.username, "alice");
        assert!(info.allows(SCOPE_MQTT) && !info.allows(SCOPE_API));
        // The same claims under the API tokens' `typ` are not accepted.
        let claims: serde_json::Value = {
            use base64::Engine;
            let part = token.split('.').nth(1).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let relabelled = tokens.sign("JWT", &claims).unwrap();
        assert_eq!(tokens.verify(&relabelled), Err(TokenError::Invalid));
        // Revoked with its grant.
        tokens
            .revoke_where(|r| r.grant.as_deref() == Some("g1"))
            .unwrap();
        assert_eq!(tokens.verify(&token), Err(TokenError::Revoked));
        // API tokens open both, unless enrol-only.
        let (api, _) = tokens
            .issue(&user(), Duration::from_secs(60), None, None)
            .unwrap();
        let info = tokens.verify(&api).unwrap();
        assert!(info.allows(SCOPE_API) && info.allows(SCOPE_MQTT));
    }
}
