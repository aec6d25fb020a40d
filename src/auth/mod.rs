//! Authentication at CONNECT: the [`Authenticator`] trait, the core's
//! anonymous-only policy, and the directory-backed implementation.

mod backoff;
mod directory_auth;

pub use directory_auth::DirectoryAuthenticator;

use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::identity::LiveAcl;
use crate::protocol::{MqttStr, ReasonCode};
use crate::tls::PeerCertificate;

/// What a client presented in CONNECT.
pub struct Credentials<'a> {
    pub client_id: &'a MqttStr,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub peer: SocketAddr,
    /// The verified client certificate on a mutual-TLS listener.
    pub certificate: Option<&'a PeerCertificate>,
}

/// Who a connection is, once authenticated.
#[derive(Clone)]
pub struct Identity {
    /// Prepended verbatim to every topic this client publishes (boxed:
    /// rare, and every connection carries the field).
    pub publish_prefix: Option<Box<MqttStr>>,
    /// What this connection may do, kept current as the directory changes.
    pub acl: Arc<LiveAcl>,
}

impl Identity {
    /// Everything allowed: the core's anonymous client.
    pub fn unrestricted() -> Identity {
        Identity {
            publish_prefix: None,
            acl: LiveAcl::allow_all(),
        }
    }

    /// `None` when the core admits a client without identities.
    pub fn username(&self) -> Option<&str> {
        self.acl.username.as_deref()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("username", &self.username())
            .finish()
    }
}

/// The outcome of an authentication attempt.
#[derive(Debug)]
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
            AuthOutcome::Allowed(Identity::unrestricted())
        } else {
            AuthOutcome::Denied(ReasonCode::NOT_AUTHORIZED)
        };
        Box::pin(std::future::ready(outcome))
    }
}
