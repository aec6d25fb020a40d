//! The settings of a registered client, in Integration Server's terms:
//! its type, its grants, its tokens' expiration and refresh count, with
//! the JSON forms the registration API takes (`"global"`, `"never"` or
//! seconds; `"unlimited"` or a count).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest expiration and refresh count Integration Server accepts.
pub const MAX_SECONDS: u32 = i32::MAX as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// Can keep a secret: authenticates with it; may use every grant.
    Confidential,
    /// Cannot keep a secret (browser or device apps): no client
    /// credentials or password grant, and PKCE for authorization codes.
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    AuthorizationCode,
    Implicit,
    ClientCredentials,
    Password,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::AuthorizationCode => "authorization_code",
            GrantKind::Implicit => "implicit",
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::Password => "password",
        }
    }
}

/// Lifetime of the client's access tokens: `"global"`, `"never"` or
/// seconds (1 to 2147483647).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    Global,
    Never,
    Seconds(u32),
}

impl Expiration {
    /// Seconds, `None` for never; `global` is the configured default.
    pub fn seconds(self, global: u32) -> Option<u64> {
        match self {
            Expiration::Global => Some(u64::from(global)),
            Expiration::Never => None,
            Expiration::Seconds(s) => Some(u64::from(s)),
        }
    }
}

/// How often an access token may be refreshed: `"unlimited"` or a limit
/// (0 or empty: no refresh token at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshCount {
    Unlimited,
    Limit(u32),
}

impl RefreshCount {
    pub fn allows_refresh(self) -> bool {
        self != RefreshCount::Limit(0)
    }

    /// `None`: unlimited.
    pub fn limit(self) -> Option<u32> {
        match self {
            RefreshCount::Unlimited => None,
            RefreshCount::Limit(n) => Some(n),
        }
    }
}

/// A number or a word, as the JSON of both settings allows.
#[derive(Deserialize)]
#[serde(untagged)]
enum WordOrNumber {
    Word(String),
    Number(i64),
}

impl Serialize for Expiration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expiration::Global => s.serialize_str("global"),
            Expiration::Never => s.serialize_str("never"),
            Expiration::Seconds(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Expiration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expiration, D::Error> {
        use serde::de::Error;
        let wrong = || D::Error::custom("must be \"global\", \"never\" or 1 to 2147483647 seconds");
        match WordOrNumber::deserialize(d).map_err(|_| wrong())? {
            WordOrNumber::Word(w) if w == "global" => Ok(Expiration::Global),
            WordOrNumber::Word(w) if w == "never" => Ok(Expiration::Never),
            WordOrNumber::Number(n) if (1..=i64::from(MAX_SECONDS)).contains(&n) => {
                Ok(Expiration::Seconds(n as u32))
            }
            _ => Err(wrong()),
        }
    }
}

impl Serialize for RefreshCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RefreshCount::Unlimited => s.serialize_str("unlimited"),
            RefreshCount::Limit(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for RefreshCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RefreshCount, D::Error> {
        use serde::de::Error;
        let wrong = || D::Error::custom("must be \"unlimited\" or 0 to 2147483647");
        match Option::<WordOrNumber>::deserialize(d).map_err(|_| wrong())? {
            None => Ok(RefreshCount::Limit(0)),
            Some(WordOrNumber::Word(w)) if w == "unlimited" => Ok(RefreshCount::Unlimited),
            Some(WordOrNumber::Word(w)) if w.is_empty() => Ok(RefreshCount::Limit(0)),
            Some(WordOrNumber::Number(n)) if (0..=i64::from(MAX_SECONDS)).contains(&n) => {
                Ok(RefreshCount::Limit(n as u32))
            }
            _ => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_like_integration_server() {
        let e: Expiration = serde_json::from_str("\"never\"").unwrap();
        assert_eq!(e, Expiration::Never);
        assert_eq!(e.seconds(3600), None);
        let e: Expiration = serde_json::from_str("2147483647").unwrap();
        assert_eq!(e, Expiration::Seconds(MAX_SECONDS));
        assert!(serde_json::from_str::<Expiration>("0").is_err());
        assert!(serde_json::from_str::<Expiration>("2147483648").is_err());
        assert!(serde_json::from_str::<Expiration>("\"soon\"").is_err());
        let r: RefreshCount = serde_json::from_str("\"\"").unwrap();
        assert!(!r.allows_refresh());
        let r: RefreshCount = serde_json::from_str("null").unwrap();
        assert_eq!(r, RefreshCount::Limit(0));
        let r: RefreshCount = serde_json::from_str("\"unlimited\"").unwrap();
        assert_eq!(r.limit(), None);
        assert!(serde_json::from_str::<RefreshCount>("-1").is_err());
    }
}
