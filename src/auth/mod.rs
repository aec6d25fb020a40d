//! Authentication at CONNECT. The broker core only knows this trait; the
//! identity module supplies the real implementation.

use futures_util::future::BoxFuture;
use std::net::SocketAddr;

use crate::protocol::ReasonCode;

/// What a client presented in CONNECT.
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub peer: SocketAddr,
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `None` for anonymous clients.
    pub username: Option<String>,
}

/// The outcome of an authentication attempt.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    Allowed(Identity),
    /// Refused: CONNACK carries this reason (0x86 bad credentials, 0x87 not
    /// authorized, ...).
    Denied(ReasonCode),
}

pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, AuthOutcome>;
}

/// The broker core's own policy until identities exist: clients without a
/// username are let in when `allow_anonymous` is set; anyone presenting
/// credentials is refused, since nothing could verify them.
pub struct AnonymousOnly {
    pub allow_anonymous: bool,
}

impl Authenticator for AnonymousOnly {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, AuthOutcome> {
        let outcome = if credentials.username.is_some() || credentials.password.is_some() {
            AuthOutcome::Denied(ReasonCode::BAD_USERNAME_OR_PASSWORD)
        } else if self.allow_anonymous {
            AuthOutcome::Allowed(Identity::default())
        } else {
            AuthOutcome::Denied(ReasonCode::NOT_AUTHORIZED)
        };
        Box::pin(std::future::ready(outcome))
    }
}
