//! The authorization endpoint's rules (RFC 6749 §4.1.1, §4.2.1, RFC 7636,
//! RFC 9700 §2.1): the client and its exactly matching redirect URI are
//! checked first, and a failure there is shown to the user, never
//! redirected; every later failure goes back to the client with `state`.
//! Codes need PKCE S256 from public clients (and accept it from all);
//! `plain` is refused. After the user signs in, the code (or, implicit,
//! the token) goes to the redirect URI with `state` and `iss` (RFC 9207).

use super::codes::CodeGrant;
use super::{ErrorCode, OAuthClient, OAuthError, clients::ClientType, clients::GrantKind};
use super::{new_id, parse_scope};
use crate::identity::model::User;
use crate::identity::services::IdentityServices;

/// Longest `state` echoed back.
const MAX_STATE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Code,
    /// The implicit grant.
    Token,
}

impl ResponseType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Code => "code",
            ResponseType::Token => "token",
        }
    }
}

/// The parameters of an authorization request, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A request that passed every check: what the login form shows and
/// carries.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client: OAuthClient,
    pub response_type: ResponseType,
    pub redirect_uri: String,
    /// The request named `redirect_uri` (the token request must repeat it).
    pub redirect_given: bool,
    pub scope: String,
    pub state: Option<String>,
    pub challenge: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// Unknown client or redirect URI: told to the user only.
    #[error("{0}")]
    Page(String),
    /// Told to the client: the redirect location carrying the error.
    #[error("redirect to the client with an error")]
    Redirect(String),
}

/// `redirect_uri` with `params` in its query (code) or fragment (token).
fn location(redirect_uri: &str, fragment: bool, params: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
    if fragment {
        format!("{redirect_uri}#{encoded}")
    } else if redirect_uri.contains('?') {
        format!("{redirect_uri}&{encoded}")
    } else {
        format!("{redirect_uri}?{encoded}")
    }
}

/// RFC 7636 §4.2: 43 to 128 unreserved characters.
fn valid_challenge(challenge: &str) -> bool {
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether a requested redirect URI is the registered one: the same
/// text, except that on a loopback host over `http` the port may differ
/// (RFC 8252 §7.3: a native app listens on whichever port it gets).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    registered == requested
        || loopback_without_port(registered)
            .is_some_and(|r| loopback_without_port(requested).as_deref() == Some(r.as_str()))
}

/// `http://HOST/REST` for an `http` URI on a loopback host with or without
/// a port; `None` for anything else.
fn loopback_without_port(uri: &str) -> Option<String> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority.split(':').next()?,
    };
    let port = &authority[host.len()..];
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let loopback = matches!(host, "127.0.0.1" | "[::1]" | "localhost");
    (loopback && port_ok).then(|| format!("http://{host}{rest}"))
}

impl IdentityServices {
    /// Checks an authorization request (before and after the login form).
    pub fn check_authorization(
        &self,
        request: &AuthorizeRequest,
    ) -> Result<Authorization, AuthorizeError> {
        let page = |m: &str| AuthorizeError::Page(m.into());
        let client_id = request
            .client_id
            .as_deref()
            .ok_or_else(|| page("The request names no client (client_id is missing)."))?;
        let client = self
            .oauth
            .client(client_id)
            .ok_or_else(|| page("The request names an unknown client."))?;
        let redirect_uri = match &request.redirect_uri {
            Some(uri)
                if client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_matches(r, uri)) =>
            {
                uri.clone()
            }
            Some(_) => return Err(page("The redirect URI is not registered for this client.")),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(page(
                    "The request names no redirect URI and the client has several.",
                ));
            }
        };
        let fragment = request.response_type.as_deref() == Some("token");
        let state = request.state.clone();
        let fail = |code: ErrorCode, description: &str| {
            let mut params = vec![("error", code.as_str()), ("error_description", description)];
            if let Some(state) = &state {
                params.push(("state", state.as_str()));
            }
            params.push(("iss", self.tokens.issuer()));
            AuthorizeError::Redirect(location(&redirect_uri, fragment, &params))
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Err(fail(ErrorCode::InvalidRequest, "state is too long"));
        }
        let response_type = match request.response_type.as_deref() {
            None => return Err(fail(ErrorCode::InvalidRequest, "response_type is missing")),
            Some("code") => ResponseType::Code,
            Some("token") => ResponseType::Token,
            Some(_) => {
                return Err(fail(
                    ErrorCode::UnsupportedResponseType,
                    "response_type must be code or token",
                ));
            }
        };
        let grant = match response_type {
            ResponseType::Code => GrantKind::AuthorizationCode,
            ResponseType::Token => GrantKind::Implicit,
        };
        if !client.allows(grant) {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                &format!("this client may not use the {} grant", grant.as_str()),
            ));
        }
        let scope = parse_scope(request.scope.as_deref())
            .map_err(|e: OAuthError| fail(e.code, &e.description))?;
        let challenge = match response_type {
            ResponseType::Token => None,
            ResponseType::Code => self
                .check_pkce(&client, request)
                .map_err(|m| fail(ErrorCode::InvalidRequest, m))?,
        };
        Ok(Authorization {
            client,
            response_type,
            redirect_uri,
            redirect_given: request.redirect_uri.is_some(),
            scope,
            state,
            challenge,
        })
    }

    /// The user cancelled the form: back to the client with
    /// `access_denied`.
    pub fn deny_authorization(&self, a: &Authorization) -> String {
        let e = OAuthError::new(ErrorCode::AccessDenied, "the user did not allow it");
        self.error_location(a, &e)
    }

    /// The redirect location carrying `e`, `state` and `iss`.
    fn error_location(&self, a: &Authorization, e: &OAuthError) -> String {
        let mut params = vec![
            ("error", e.code.as_str()),
            ("error_description", e.description.as_str()),
        ];
        if let Some(state) = &a.state {
            params.push(("state", state.as_str()));
        }
        params.push(("iss", self.tokens.issuer()));
        let fragment = a.response_type == ResponseType::Token;
        location(&a.redirect_uri, fragment, &params)
    }

    /// PKCE: S256 only; required from public clients.
    fn check_pkce(
        &self,
        client: &OAuthClient,
        request: &AuthorizeRequest,
    ) -> Result<Option<String>, &'static str> {
        match (
            &request.code_challenge,
            request.code_challenge_method.as_deref(),
        ) {
            (None, None) if client.client_type == ClientType::Public => {
                Err("public clients must use PKCE (code_challenge with code_challenge_method S256)")
            }
            (None, None) => Ok(None),
            (None, Some(_)) => Err("code_challenge_method without code_challenge"),
            (Some(_), None | Some("plain")) => {
                Err("code_challenge_method must be S256 (plain is not accepted)")
            }
            (Some(c), Some("S256")) if valid_challenge(c) => Ok(Some(c.clone())),
            (Some(_), Some("S256")) => {
                Err("code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
            }
            (Some(_), Some(_)) => Err("code_challenge_method must be S256"),
        }
    }

    /// The user signed in and so agreed: the redirect location with a
    /// code, or (implicit) with an access token in the fragment.
    pub fn grant_authorization(
        &self,
        authorization: &Authorization,
        user: &User,
    ) -> Result<String, AuthorizeError> {
        let a = authorization;
        let ticket = self.oauth.revocations.ticket();
        let issuer = self.tokens.issuer();
        let fail = |e: OAuthError| AuthorizeError::Redirect(self.error_location(a, &e));
        // Still the user who signed in: not disabled, deleted or given a
        // new password since (whose revocation came before `ticket`).
        // The client, unchanged since the request was checked.
        let denied = |why: &str| fail(OAuthError::new(ErrorCode::AccessDenied, why));
        let current = self
            .live_user(&user.id)
            .map_err(|_| denied("the user no longer exists or is disabled"))?;
        if current.password_hash != user.password_hash {
            return Err(denied("the user's password changed; sign in again"));
        }
        let client = self.oauth.client(&a.client.client_id);
        if client.is_none_or(|c| c.updated_at != a.client.updated_at) {
            return Err(denied("the client changed; start again"));
        }
        let account = self.mfa.account(&user.id);
        if account.enforce_mfa_enrollment && !account.mfa_enrolled() {
            return Err(fail(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user must enrol MFA first",
            )));
        }
        match a.response_type {
            ResponseType::Code => {
                let code = self
                    .oauth
                    .codes
                    .issue(CodeGrant {
                        client_id: a.client.client_id.clone(),
                        user_id: user.id.clone(),
                        redirect_uri: a.redirect_given.then(|| a.redirect_uri.clone()),
                        scope: a.scope.clone(),
                        challenge: a.challenge.clone(),
                        grant: new_id(),
                        ticket,
                    })
                    .ok_or_else(|| {
                        fail(OAuthError::new(
                            ErrorCode::TemporarilyUnavailable,
                            "too many pending authorization codes",
                        ))
                    })?;
                tracing::info!(
                    client_id = a.client.client_id,
                    username = user.username,
                    "OAuth authorization code issued"
                );
                let mut params = vec![("code", code.as_str())];
                if let Some(state) = &a.state {
                    params.push(("state", state.as_str()));
                }
                params.push(("iss", issuer));
                Ok(location(&a.redirect_uri, false, &params))
            }
            ResponseType::Token => {
                let issued = self
                    .issue_tokens(&a.client, user, &a.scope, None, ticket, GrantKind::Implicit)
                    .map_err(fail)?;
                let expires_in = issued.expires_in.map(|s| s.to_string());
                let mut params = vec![
                    ("access_token", issued.access_token.as_str()),
                    ("token_type", "Bearer"),
                ];
                if let Some(expires_in) = &expires_in {
                    params.push(("expires_in", expires_in.as_str()));
                }
                params.push(("scope", issued.scope.as_str()));
                if let Some(state) = &a.state {
                    params.push(("state", state.as_str()));
                }
                params.push(("iss", issuer));
                Ok(location(&a.redirect_uri, true, &params))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_redirect_uri_query() {
        assert_eq!(
            location("https://a/cb", false, &[("code", "x y"), ("state", "s&")]),
            "https://a/cb?code=x+y&state=s%26"
        );
        assert_eq!(
            location("https://a/cb?k=1", false, &[("code", "c")]),
            "https://a/cb?k=1&code=c"
        );
        assert_eq!(
            location("https://a/cb", true, &[("access_token", "t")]),
            "https://a/cb#access_token=t"
        );
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb"
        ));
        assert!(redirect_matches(
            "http://[::1]:8000/cb",
            "http://[::1]:9/cb"
        ));
        assert!(redirect_matches("https://a/cb", "https://a/cb"));
        assert!(!redirect_matches("https://a/cb", "https://a:444/cb"));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1/other"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1@evil/cb"
        ));
        assert!(valid_challenge(&"a".repeat(43)));
        assert!(!valid_challenge(&"a".repeat(42)));
        assert!(!valid_challenge(&format!("{}+", "a".repeat(43))));
    }
}
