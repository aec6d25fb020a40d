//! The identity model, after Connectware's user management: users, roles
//! and permissions, serialised in its JSON shape (camelCase).

use serde::{Deserialize, Serialize};

use crate::protocol::topic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Read,
    Write,
    ReadWrite,
}

impl Operation {
    pub fn reads(self) -> bool {
        matches!(self, Operation::Read | Operation::ReadWrite)
    }

    pub fn writes(self) -> bool {
        matches!(self, Operation::Write | Operation::ReadWrite)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Context {
    /// Broker topics.
    Mqtt,
    /// Admin API paths (leading `/`).
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Effect {
    #[default]
    Allow,
    /// Wins over any allow (beyond Connectware; mosquitto and EMQX users ask for it).
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permission {
    /// MQTT topic syntax with `+` and `#`; may contain `%u` (username) and
    /// `%c` (client id) placeholders.
    pub resource: String,
    pub operation: Operation,
    pub context: Context,
    #[serde(default, skip_serializing_if = "is_allow")]
    pub effect: Effect,
}

fn is_allow(effect: &Effect) -> bool {
    *effect == Effect::Allow
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GrantMethod {
    Password,
    Certificate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantType {
    pub method: GrantMethod,
    #[serde(default)]
    pub is_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub username: String,
    /// argon2id PHC string; never serialised to API clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Moves whenever the password changes, not when the same password is
    /// hashed again (a rehash): a login verified against an older
    /// generation is refused.
    #[serde(default)]
    pub password_generation: u64,
    pub grant_types: Vec<GrantType>,
    /// Role ids.
    pub roles: Vec<String>,
    /// Additional permissions beyond the roles'.
    pub permissions: Vec<Permission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_publish_prefix: Option<String>,
    pub enabled: bool,
    pub created_at: u64,
    pub updated_at: u64,
    /// Client certificates issued for this user's name (Connectware shape).
    #[serde(default)]
    pub certificates: Vec<UserCertificate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCertificate {
    pub fingerprint: String,
    pub created_at: u64,
    pub expires_at: u64,
}

/// A certificate issued by the built-in CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    /// Hex serial number.
    pub serial: String,
    pub common_name: String,
    /// SHA-256 of the DER encoding, hex.
    pub fingerprint: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    pub revoked: bool,
    pub created_at: u64,
}

impl User {
    pub fn has_grant(&self, method: GrantMethod) -> bool {
        self.grant_types.iter().any(|g| g.method == method)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("username must be 3 to 128 characters")]
    UsernameLength,
    #[error("username must not contain whitespace, control characters, '+', '#', '/' or '%'")]
    UsernameCharacters,
    #[error("permission resource `{0}` is not a valid topic pattern")]
    Resource(String),
    #[error("http permission resource `{0}` must start with '/'")]
    HttpResource(String),
    #[error("role name must be 1 to 128 characters without control characters")]
    RoleName,
    #[error("MQTT publish prefix must not contain '+', '#' or U+0000")]
    Prefix,
    #[error("MQTT publish prefix must be shorter than 65,535 bytes (a topic's limit)")]
    PrefixLength,
}

/// 3–128 characters; no whitespace, control characters, `+`, `#`, `/` or
/// `%` (a username is substituted into topic patterns as `%u`).
pub fn validate_username(name: &str) -> Result<(), ValidationError> {
    let count = name.chars().count();
    if !(3..=128).contains(&count) {
        return Err(ValidationError::UsernameLength);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '+' | '#' | '/' | '%'))
    {
        return Err(ValidationError::UsernameCharacters);
    }
    Ok(())
}

pub fn validate_permission(p: &Permission) -> Result<(), ValidationError> {
    if !topic::is_valid_filter(&p.resource) || p.resource.contains('\0') {
        return Err(ValidationError::Resource(p.resource.clone()));
    }
    if p.context == Context::Http && !p.resource.starts_with('/') {
        return Err(ValidationError::HttpResource(p.resource.clone()));
    }
    Ok(())
}

pub fn validate_role_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ValidationError::RoleName);
    }
    Ok(())
}

pub fn validate_prefix(prefix: &str) -> Result<(), ValidationError> {
    if prefix.contains(['+', '#', '\0']) {
        return Err(ValidationError::Prefix);
    }
    // A prefixed topic still needs one byte of its own.
    if prefix.len() >= usize::from(u16::MAX) {
        return Err(ValidationError::PrefixLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("admin").is_ok());
        assert!(validate_username("Jürgen").is_ok());
        assert_eq!(
            validate_username("ab"),
            Err(ValidationError::UsernameLength)
        );
        for bad in ["a b", "a/b", "a+b", "a#b", "a\u{7}b", "a%cb"] {
            assert_eq!(
                validate_username(bad),
                Err(ValidationError::UsernameCharacters),
                "{bad}"
            );
        }
    }

    #[test]
    fn permission_json_shape() {
        let p: Permission = serde_json::from_str(
            r#"{"resource":"a/+/c","operation":"readWrite","context":"mqtt"}"#,
        )
        .unwrap();
        assert_eq!(p.effect, Effect::Allow);
        assert!(p.operation.reads() && p.operation.writes());
        let deny: Permission = serde_json::from_str(
            r#"{"resource":"/api/#","operation":"read","context":"http","effect":"deny"}"#,
        )
        .unwrap();
        assert_eq!(deny.effect, Effect::Deny);
        assert!(validate_permission(&deny).is_ok());
    }
}
