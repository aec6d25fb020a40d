//! How a command reaches a running broker: the admin API's base URL and a
//! token, and a small blocking JSON client. The server is `--server`,
//! else `GATEHOUSE_SERVER`, else the one `gatehouse login` stored, else the
//! configuration's `[listeners] http`; the token is `GATEHOUSE_TOKEN`,
//! else the stored one, and a stored token is only ever sent to the server
//! it was issued by. Tokens never appear in process arguments. An
//! `https://` server is verified against `--ca`/`GATEHOUSE_CA`, else the CA
//! the login used, else this host's `[tls] dir/ca.crt` (the broker's own
//! CA), else the system's roots.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CliError, Ctx, Exit, Result};
use gatehouse::Config;

/// A non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What `gatehouse login` keeps (mode 0600): the token and where it works.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLogin {
    pub server: String,
    pub username: String,
    pub token: String,
    /// SHA-256 of the token, to revoke it at `gatehouse logout`.
    pub fingerprint: String,
    /// Unix milliseconds.
    pub expires_at: u64,
    /// The CA certificate an `https://` server was verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/gatehouse`, else `~/.config/gatehouse`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = env("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("gatehouse"));
    }
    match env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("gatehouse")),
        None => Err(CliError::failed(
            "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the login",
        )),
    }
}

impl StoredLogin {
    pub fn path() -> Result<PathBuf> {
        Ok(config_dir()?.join("login.json"))
    }

    /// The stored login, if any.
    pub fn load() -> Result<Option<StoredLogin>> {
        let Ok(path) = StoredLogin::path() else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::failed(format!(
                    "{} is not a login file ({e}); remove it and log in again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::failed(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Writes the file 0600 (its directory 0700), replacing it atomically.
    pub fn save(&self) -> Result<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = StoredLogin::path()?;
        let dir = path.parent().expect("a file in a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::failed(format!("creating {}: {e}", dir.display())))?;
        let temp = dir.join(format!(".login.json.{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            CliError::failed(format!("writing {}: {e}", path.display()))
        })?;
        Ok(path)
    }

    pub fn remove() -> Result<bool> {
        let path = StoredLogin::path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CliError::failed(format!(
                "removing {}: {e}",
                path.display()
            ))),
        }
    }
}

/// The configured `http` listener as a URL (an unspecified address means
/// this host's loopback).
pub fn configured_server(config: &Config) -> String {
    let mut addr = config
        .listeners
        .http
        .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// A base URL without its trailing slash.
pub fn normalise(server: &str) -> Result<String> {
    let base = server.trim().trim_end_matches('/').to_owned();
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"));
    if rest.is_none_or(|host| host.is_empty() || host.contains(['/', '?', '#'])) {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "`{server}` is not an http:// or https:// URL without a path (e.g. http://127.0.0.1:8080)"
            ),
        ));
    }
    Ok(base)
}

/// The CA certificate to verify an `https://` `server` with (see the
/// module); `None` for plain HTTP, or to use the system's roots.
pub fn trust_for(ctx: &Ctx, stored: Option<&StoredLogin>, server: &str) -> Option<PathBuf> {
    if !server.starts_with("https://") {
        return None;
    }
    if let Some(ca) = &ctx.ca {
        return Some(ca.clone());
    }
    if let Some(ca) = stored
        .filter(|l| l.server == server)
        .and_then(|l| l.ca.clone())
    {
        return Some(ca);
    }
    let own = ctx.config.tls.dir.join("ca.crt");
    own.is_file().then_some(own)
}

/// `%XX` for everything but unreserved characters: ids and client ids in
/// paths, names in queries.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The admin API with (usually) a caller's token.
pub struct ApiClient {
    pub base: String,
    http: reqwest::blocking::Client,
    token: Option<String>,
}

impl ApiClient {
    /// `ca`: the only CA an `https://` server's certificate may chain to
    /// (else the system's roots).
    pub fn new(base: String, token: Option<String>, ca: Option<&Path>) -> Result<ApiClient> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .https_only(base.starts_with("https://"));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| {
                CliError::new(
                    Exit::NotFound,
                    format!("reading the CA {}: {e}", ca.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| {
                    CliError::new(
                        Exit::Usage,
                        format!("{} holds no PEM certificate", ca.display()),
                    )
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::failed(format!("creating the HTTP client: {e}")))?;
        if base.starts_with("http://") && !base_is_loopback(&base) {
            eprintln!(
                "warning: {base} is plain HTTP to another host: passwords and tokens cross the network unencrypted"
            );
        }
        Ok(ApiClient { base, http, token })
    }

    /// The running broker's API with the caller's token (see the module).
    pub fn for_broker(ctx: &Ctx) -> Result<ApiClient> {
        let stored = StoredLogin::load()?;
        let server = match ctx.server.clone().or_else(|| env("GATEHOUSE_SERVER")) {
            Some(server) => normalise(&server)?,
            None => match &stored {
                Some(login) => login.server.clone(),
                None => configured_server(&ctx.config),
            },
        };
        let ca = trust_for(ctx, stored.as_ref(), &server);
        let token = env("GATEHOUSE_TOKEN").or_else(|| {
            stored
                .filter(|login| login.server == server)
                .map(|login| login.token)
        });
        if token.is_none() {
            return Err(CliError::new(
                Exit::Unauthenticated,
                format!(
                    "the broker is running: log in first with `gatehouse login --server {server}` (or set GATEHOUSE_TOKEN)"
                ),
            ));
        }
        ApiClient::new(server, token, ca.as_deref())
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::blocking::Response> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CliError::failed(e.to_string()))?;
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| {
            // The cause names what failed (refused, certificate, timeout).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            CliError::new(
                Exit::Unreachable,
                format!("cannot reach the admin API at {}: {text}", self.base),
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Err(api_error(status.as_u16(), &body))
    }

    /// One call; the answer's JSON (`null` when there is none).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let text = self
            .request(method, path, body)?
            .text()
            .map_err(|e| CliError::new(Exit::Unreachable, format!("reading the answer: {e}")))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| CliError::failed(format!("{path}: the answer is not JSON: {e}")))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)
    }

    /// Streams a GET's body into `out`; returns the bytes copied.
    pub fn download(&self, path: &str, out: &mut dyn Write) -> Result<u64> {
        let mut response = self.request("GET", path, None)?;
        response
            .copy_to(out)
            .map_err(|e| CliError::new(Exit::Unreachable, format!("{path}: {e}")))
    }

    /// Every item of a paged list answering `{KEY: [...], pagination}`.
    pub fn all_pages(&self, path: &str, key: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        for page in 1u64.. {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut answer = self.get(&format!("{path}{sep}pageNumber={page}&rowsPerPage=1000"))?;
            let Value::Array(batch) = answer[key].take() else {
                return Err(CliError::failed(format!(
                    "{path}: no `{key}` in the answer"
                )));
            };
            items.extend(batch);
            let pages = answer["pagination"]["totalPages"].as_u64().unwrap_or(0);
            if page >= pages {
                break;
            }
        }
        Ok(items)
    }
}

/// `<code>: <message>` from an error body, with the status's exit code.
pub fn api_error(status: u16, body: &Value) -> CliError {
    let message = match (body["error"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => format!("{message} ({status} {code})"),
        _ => format!("the admin API answered {status}: {body}"),
    };
    let message = if status == 401 && body["error"].as_str() != Some("mfa_required") {
        format!("{message}; log in again with `gatehouse login`")
    } else {
        message
    };
    CliError::from_status(status, message)
}

fn base_is_loopback(base: &str) -> bool {
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_encoding() {
        assert_eq!(
            normalise("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalise("https://x:8443/").unwrap(), "https://x:8443");
        assert!(normalise("127.0.0.1:8080").is_err());
        assert!(normalise("http://").is_err());
        assert!(normalise("http://h/api").is_err());
        assert_eq!(encode("a b/c%"), "a%20b%2Fc%25");
        assert!(base_is_loopback("http://127.0.0.1:8080"));
        assert!(base_is_loopback("http://[::1]:8080"));
        assert!(base_is_loopback("http://localhost"));
        assert!(!base_is_loopback("http://10.0.0.1:8080"));
    }
}
