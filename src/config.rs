//! Typed configuration (`broker.toml`) with defaults and validation.
//!
//! Every key has a default, so an empty file (or none) is a working
//! configuration. Unknown keys and out-of-range values refuse start-up with
//! a message that names the key. A `[listeners]` section opens only the
//! listeners it names (as mosquitto does); the built-in set applies only
//! when the section is absent. `Serialize` prints the effective
//! configuration (`gatehouse check-config`).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::identity::PasswordPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// Every value that failed its check, each naming its key.
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct Problem {
    pub key: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listeners: Listeners,
    pub storage: Storage,
    pub auth: Auth,
    pub limits: Limits,
    pub mqtt: Mqtt,
    pub tls: Tls,
    pub http: Http,
    pub log: Log,
    pub oauth: OAuth,
    pub registry: Registry,
}

/// `[log]`: what the broker writes to standard error.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` (one human line per event) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `gatehouse::net=debug,info`...
    /// `RUST_LOG`, when set, wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The OAuth 2.0 authorization server (`[oauth]`, `docs/oauth.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth {
    /// Access-token lifetime of clients registered with `tokenExpiration:
    /// "global"` (seconds, Integration Server's default 3600).
    pub token_expiration_secs: u32,
    /// Public URL of the admin API (`https://broker.example:8443`): the
    /// issuer (`iss` of every token) and the base of the endpoints in the
    /// server metadata. Empty: the issuer is `[http] issuer` and the
    /// endpoints use the address of the listener a request came in on
    /// (never its `Host` header); a warning at start says so.
    pub base_url: String,
    /// A refresh token's grant ends this long after the user signed in,
    /// however often it was refreshed (seconds; 90 days).
    pub refresh_absolute_lifetime_secs: u32,
    /// ... and when it was not used for this long (seconds; 14 days).
    pub refresh_idle_lifetime_secs: u32,
    /// Refresh-token grants one user may hold; a new one ends the user's
    /// least recently used.
    pub max_grants_per_user: u32,
    /// Refresh-token grants of one client; a new one ends the client's
    /// least recently used.
    pub max_grants_per_client: u32,
    /// The admin API is served over HTTPS by a TLS-terminating proxy in
    /// front of a plain `http` listener: cookies are `Secure` (and the
    /// login form's is `__Host-`), and metadata URLs say `https`.
    pub behind_tls_proxy: bool,
}

impl Default for OAuth {
    fn default() -> OAuth {
        OAuth {
            token_expiration_secs: 3600,
            base_url: String::new(),
            refresh_absolute_lifetime_secs: 90 * 24 * 3600,
            refresh_idle_lifetime_secs: 14 * 24 * 3600,
            max_grants_per_user: 100,
            max_grants_per_client: 100_000,
            behind_tls_proxy: false,
        }
    }
}

impl OAuth {
    /// `iss` of every token: `base_url` when set, else `http_issuer`.
    pub fn issuer<'a>(&'a self, http_issuer: &'a str) -> &'a str {
        if self.base_url.is_empty() {
            http_issuer
        } else {
            &self.base_url
        }
    }
}

/// The client registry (`[registry]`): devices ask for an identity, an
/// administrator grants it (`docs/onboarding.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    /// How long an unlock without a duration keeps the registry open.
    pub default_unlock_minutes: u64,
    /// Longest unlock; longer requests are cut to this.
    pub max_unlock_minutes: u64,
    /// Requests held at once (pending, or granted and not yet fetched).
    pub max_pending: usize,
    /// A request is forgotten this long after it was first seen (a
    /// granted one, this long after it was granted).
    pub pending_max_age_secs: u64,
    /// Registration attempts per minute per address (HTTP and MQTT each).
    pub rate_per_address_per_minute: u32,
    /// Record refused CONNECTs of unknown users while unlocked.
    pub implicit_flow: bool,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            default_unlock_minutes: 5,
            max_unlock_minutes: 60,
            max_pending: 100,
            pending_max_age_secs: 1800,
            rate_per_address_per_minute: 60,
            implicit_flow: true,
        }
    }
}

/// The admin HTTP API (`[http]`): tokens, MFA, limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Lifetime of a token when the login asks none.
    pub token_default_hours: u64,
    /// Largest `expireTimeInHours` a login may ask (Connectware's example asks 99999).
    pub token_max_hours: u64,
    /// Invalid MFA codes before the user's MFA logins are refused for a while.
    pub mfa_max_failures: u32,
    pub mfa_lockout_minutes: u64,
    /// Login and MFA attempts per minute, per user name.
    pub rate_per_user_per_minute: u32,
    /// Login, MFA attempts and failed token checks per minute, per address.
    pub rate_per_address_per_minute: u32,
    /// Largest request body.
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// Concurrent HTTP connections per listener.
    pub max_connections: usize,
    /// Audit log entries kept (oldest dropped first).
    pub audit_max_entries: usize,
    /// `GET /metrics` without a token (for a Prometheus that cannot send one).
    pub metrics_public: bool,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            issuer: "gatehouse".into(),
            token_default_hours: 12,
            token_max_hours: 99_999,
            mfa_max_failures: 5,
            mfa_lockout_minutes: 15,
            rate_per_user_per_minute: 30,
            rate_per_address_per_minute: 300,
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            max_connections: 1024,
            audit_max_entries: 100_000,
            metrics_public: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// Holds `ca.crt`/`ca.key` and, unless `cert`/`key` are given,
    /// `server.crt`/`server.key` (all generated when absent).
    pub dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Extra SANs for the generated server certificate.
    pub server_names: Vec<String>,
    /// Require client certificates on `mqtts`/`wss` (env
    /// `CYBUS_BROKER_USE_MUTUAL_TLS=yes|no`).
    pub mutual_tls: bool,
    /// Further CAs whose client certificates are accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_bundle: Option<PathBuf>,
    pub handshake_timeout_secs: u64,
    /// Validity of certificates issued by `gatehouse cert`.
    pub device_cert_days: u32,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            dir: PathBuf::from("certs"),
            cert: None,
            key: None,
            server_names: Vec::new(),
            mutual_tls: false,
            client_ca_bundle: None,
            handshake_timeout_secs: 10,
            device_cert_days: 365,
        }
    }
}

impl Tls {
    /// `mutual_tls`, unless `CYBUS_BROKER_USE_MUTUAL_TLS` says otherwise.
    pub fn mutual_from_env(&self) -> bool {
        match std::env::var("CYBUS_BROKER_USE_MUTUAL_TLS").as_deref() {
            Ok("yes") => true,
            Ok("no") => false,
            _ => self.mutual_tls,
        }
    }
}

/// The sockets to open. A key that is absent from a present
/// `[listeners]` section stays closed (`Default` is the built-in set, used
/// only when the whole section is absent); `""` also closes one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Plain MQTT over TCP.
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub mqtt: Option<SocketAddr>,
    /// MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`).
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ws: Option<SocketAddr>,
    /// MQTT over TLS.
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub mqtts: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS.
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub wss: Option<SocketAddr>,
    /// The admin HTTP API, plain (loopback by default).
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub http: Option<SocketAddr>,
    /// The admin HTTP API over TLS (the broker's server certificate).
    #[serde(
        default,
        deserialize_with = "optional_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub https: Option<SocketAddr>,
}

impl Listeners {
    /// `(name, address)` of every listener that is switched on.
    pub fn open(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("mqtt", self.mqtt),
            ("ws", self.ws),
            ("mqtts", self.mqtts),
            ("wss", self.wss),
            ("http", self.http),
            ("https", self.https),
        ]
        .into_iter()
        .filter_map(|(name, addr)| addr.map(|a| (name, a)))
        .collect()
    }
}

/// `"host:port"`, or `""` for a listener that is switched off.
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a socket address: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A QoS 1/2 PUBLISH is acknowledged only after its commit (group commit).
    Sync,
    /// Changes are committed every `commit_interval_ms`.
    Periodic,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    pub dir: PathBuf,
    pub durability: Durability,
    pub commit_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Let clients without credentials in as user `anonymous` (development only).
    pub allow_anonymous: bool,
    /// `false` disables the built-in `admin` user (env `CYBUS_ADMIN_USER_ENABLED`).
    pub admin_user_enabled: bool,
    /// What a PUBLISH without write permission gets.
    pub on_publish_denied: OnPublishDenied,
    /// Applied to every password set anywhere (env `CYBUS_AUTH_PASSWORD_POLICY_RULES`).
    pub password_policy: PasswordPolicy,
    /// First delay after a failed login; doubles per failure.
    pub failure_delay_ms: u64,
    pub failure_delay_max_ms: u64,
    pub credential_cache_size: usize,
    pub credential_cache_ttl_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPublishDenied {
    /// Drop the message (v5: PUBACK/PUBREC 0x87).
    Drop,
    /// Drop it and close the connection (v5: DISCONNECT 0x87).
    Disconnect,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    pub max_packet_size: u32,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub receive_maximum: u16,
    pub max_inflight: u16,
    pub topic_alias_maximum: u16,
    pub connect_timeout_secs: u64,
    pub max_keep_alive_secs: u16,
    pub max_session_expiry_secs: u32,
    /// A plain-TCP connection quiet for this long leaves its task and
    /// waits in the parker (it also does right after CONNECT); 0: never.
    pub hibernate_after_ms: u64,
    /// A client that does not take what is written to it within this
    /// long is disconnected.
    pub write_timeout_secs: u64,
    /// Connections admitted at once (handshake and CONNECT); more wait in
    /// the listen queue. 0: no limit.
    pub max_pending_connects: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mqtt {
    pub retain_available: bool,
    pub sys_interval_secs: u64,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            mqtt: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            ws: Some(SocketAddr::from(([0, 0, 0, 0], 8083))),
            mqtts: Some(SocketAddr::from(([0, 0, 0, 0], 8883))),
            wss: Some(SocketAddr::from(([0, 0, 0, 0], 8084))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            https: Some(SocketAddr::from(([0, 0, 0, 0], 8443))),
        }
    }
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            dir: PathBuf::from("data"),
            durability: Durability::Sync,
            commit_interval_ms: 100,
        }
    }
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            allow_anonymous: false,
            admin_user_enabled: true,
            on_publish_denied: OnPublishDenied::Drop,
            password_policy: PasswordPolicy::default(),
            failure_delay_ms: 200,
            failure_delay_max_ms: 5000,
            credential_cache_size: 10_000,
            credential_cache_ttl_secs: 300,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 100_000,
            max_packet_size: 1_048_576,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            receive_maximum: 128,
            max_inflight: 128,
            topic_alias_maximum: 64,
            connect_timeout_secs: 10,
            max_keep_alive_secs: 3600,
            max_session_expiry_secs: 7 * 24 * 3600,
            hibernate_after_ms: 1000,
            write_timeout_secs: 30,
            max_pending_connects: 1024,
        }
    }
}

impl Limits {
    /// The write deadline (at least a second).
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_secs.max(1))
    }

    /// `None` when hibernation is off.
    pub fn hibernate_after(&self) -> Option<std::time::Duration> {
        (self.hibernate_after_ms > 0)
            .then(|| std::time::Duration::from_millis(self.hibernate_after_ms))
    }
}

impl Default for Mqtt {
    fn default() -> Mqtt {
        Mqtt {
            retain_available: true,
            sys_interval_secs: 10,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the error lists each one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &'static str, reason: &str| -> Result<(), ConfigError> {
            if !ok {
                problems.push(Problem {
                    key,
                    reason: reason.into(),
                });
            }
            Ok(())
        };
        let l = &self.limits;
        check(
            l.max_connections > 0,
            "limits.max_connections",
            "must be at least 1",
        )?;
        check(
            (64..=268_435_460).contains(&l.max_packet_size),
            "limits.max_packet_size",
            "must be between 64 and 268435460 bytes",
        )?;
        check(
            l.max_queued_messages > 0,
            "limits.max_queued_messages",
            "must be at least 1",
        )?;
        check(
            l.max_queued_bytes >= l.max_packet_size as usize,
            "limits.max_queued_bytes",
            "must be at least limits.max_packet_size",
        )?;
        check(
            l.receive_maximum > 0,
            "limits.receive_maximum",
            "must be at least 1",
        )?;
        check(
            l.max_inflight > 0,
            "limits.max_inflight",
            "must be at least 1",
        )?;
        check(
            l.connect_timeout_secs > 0,
            "limits.connect_timeout_secs",
            "must be at least 1",
        )?;
        check(
            self.storage.commit_interval_ms > 0,
            "storage.commit_interval_ms",
            "must be at least 1",
        )?;
        check(
            !self.storage.dir.as_os_str().is_empty(),
            "storage.dir",
            "must not be empty",
        )?;
        check(
            self.auth.failure_delay_max_ms >= self.auth.failure_delay_ms,
            "auth.failure_delay_max_ms",
            "must be at least auth.failure_delay_ms",
        )?;
        check(
            self.auth.credential_cache_size > 0,
            "auth.credential_cache_size",
            "must be at least 1",
        )?;
        check(
            self.mqtt.sys_interval_secs > 0,
            "mqtt.sys_interval_secs",
            "must be at least 1",
        )?;
        let h = &self.http;
        check(
            h.token_default_hours >= 1 && h.token_default_hours <= h.token_max_hours,
            "http.token_default_hours",
            "must be at least 1 and at most http.token_max_hours",
        )?;
        check(
            h.token_max_hours <= 1_000_000,
            "http.token_max_hours",
            "must be at most 1000000",
        )?;
        check(
            h.mfa_max_failures > 0,
            "http.mfa_max_failures",
            "must be at least 1",
        )?;
        check(
            h.rate_per_user_per_minute > 0 && h.rate_per_address_per_minute > 0,
            "http.rate_per_user_per_minute",
            "rates must be at least 1",
        )?;
        check(
            h.body_limit_bytes >= 1024,
            "http.body_limit_bytes",
            "must be at least 1024",
        )?;
        check(
            h.request_timeout_secs > 0,
            "http.request_timeout_secs",
            "must be at least 1",
        )?;
        check(
            h.max_connections > 0,
            "http.max_connections",
            "must be at least 1",
        )?;
        check(!h.issuer.is_empty(), "http.issuer", "must not be empty")?;
        check(
            (1..=i32::MAX as u32).contains(&self.oauth.token_expiration_secs),
            "oauth.token_expiration_secs",
            "must be between 1 and 2147483647",
        )?;
        let base = &self.oauth.base_url;
        check(
            base.is_empty()
                || ((base.starts_with("http://") || base.starts_with("https://"))
                    && !base.ends_with('/')
                    && !base.contains(['?', '#', ' '])),
            "oauth.base_url",
            "must be empty or an http(s) URL without a trailing slash, query or fragment",
        )?;
        let o = &self.oauth;
        for (value, key) in [
            (
                o.refresh_absolute_lifetime_secs,
                "oauth.refresh_absolute_lifetime_secs",
            ),
            (
                o.refresh_idle_lifetime_secs,
                "oauth.refresh_idle_lifetime_secs",
            ),
            (o.max_grants_per_user, "oauth.max_grants_per_user"),
            (o.max_grants_per_client, "oauth.max_grants_per_client"),
        ] {
            check(
                (1..=i32::MAX as u32).contains(&value),
                key,
                "must be between 1 and 2147483647",
            )?;
        }
        let r = &self.registry;
        check(
            (1..=10_080).contains(&r.max_unlock_minutes),
            "registry.max_unlock_minutes",
            "must be between 1 and 10080 (a week)",
        )?;
        check(
            r.default_unlock_minutes >= 1 && r.default_unlock_minutes <= r.max_unlock_minutes,
            "registry.default_unlock_minutes",
            "must be at least 1 and at most registry.max_unlock_minutes",
        )?;
        check(
            (1..=100_000).contains(&r.max_pending),
            "registry.max_pending",
            "must be between 1 and 100000",
        )?;
        check(
            r.pending_max_age_secs >= 1,
            "registry.pending_max_age_secs",
            "must be at least 1",
        )?;
        check(
            r.rate_per_address_per_minute >= 1,
            "registry.rate_per_address_per_minute",
            "must be at least 1",
        )?;
        let l = &self.listeners;
        check(
            l.mqtt.is_some() || l.ws.is_some() || l.mqtts.is_some() || l.wss.is_some(),
            "listeners",
            "at least one listener must be configured",
        )?;
        check(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "tls.cert",
            "tls.cert and tls.key must be given together",
        )?;
        check(
            self.tls.handshake_timeout_secs > 0,
            "tls.handshake_timeout_secs",
            "must be at least 1",
        )?;
        check(
            self.tls.device_cert_days > 0,
            "tls.device_cert_days",
            "must be at least 1",
        )?;
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            "not a log filter (e.g. `info`, `debug`, `gatehouse::net=debug,info`)",
        )?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.max_packet_size, 1_048_576);
        assert_eq!(c.storage.durability, Durability::Sync);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[limits]\nmax_conections = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[limits]\nmax_packet_size = 3\n").unwrap_err();
        assert!(err.to_string().contains("limits.max_packet_size"), "{err}");
        let err = Config::parse("[storage]\ndurability = \"often\"\n").unwrap_err();
        assert!(err.to_string().contains("durability"), "{err}");
        let err = Config::parse("[oauth]\ntoken_expiration_secs = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("oauth.token_expiration_secs"),
            "{err}"
        );
        let err = Config::parse("[oauth]\nbase_url = \"ftp://x/\"\n").unwrap_err();
        assert!(err.to_string().contains("oauth.base_url"), "{err}");
        let err = Config::parse("[oauth]\nrefresh_idle_lifetime_secs = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("oauth.refresh_idle_lifetime_secs"),
            "{err}"
        );
        let c = Config::parse("[oauth]\nbase_url = \"https://b.example\"\n").unwrap();
        assert_eq!(c.oauth.issuer("gatehouse"), "https://b.example");
        assert_eq!(
            Config::parse("").unwrap().oauth.issuer("gatehouse"),
            "gatehouse"
        );
        assert_eq!(Config::parse("").unwrap().oauth.token_expiration_secs, 3600);
    }
}
