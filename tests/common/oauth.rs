//! OAuth test helpers: `curl` as the HTTP client (status, headers and
//! JSON of its answer), client registration, PKCE pairs, and the login
//! form driven like a browser (cookie jar, hidden fields, `Location`).

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

use super::api::Api;
use super::run_cmd;

/// One `curl -i` answer.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    /// Header lines, lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Curl {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The RFC 6749 error code of an error answer.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

/// Runs `curl -sS -i ARGS` and parses its answer.
pub async fn curl(args: &[&str]) -> Curl {
    let mut all = vec!["-sS", "-i", "--max-time", "10"];
    all.extend_from_slice(args);
    let (status, out) = run_cmd("curl", &all, Duration::from_secs(15)).await;
    assert_eq!(status, Some(0), "curl {args:?}: {out}");
    let (head, text) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(text).unwrap_or(Value::Null);
    assert!(status < 500, "curl {args:?}: {status} {text}");
    Curl {
        status,
        headers,
        body,
        text: text.to_owned(),
    }
}

/// A registered client: its id and (confidential) secret.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: String,
    pub secret: Option<String>,
    pub user_id: Option<String>,
}

impl Registered {
    /// `-u id:secret` for curl's Basic authentication.
    pub fn basic(&self) -> String {
        format!("{}:{}", self.id, self.secret.as_deref().unwrap_or_default())
    }
}

/// Registers a client (201 expected).
pub async fn register(admin: &Api, body: Value) -> Registered {
    let reply = admin.post("/api/oauth/clients", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    Registered {
        id: reply.body["clientId"].as_str().unwrap().to_owned(),
        secret: reply.body["clientSecret"].as_str().map(str::to_owned),
        user_id: reply.body["userId"].as_str().map(str::to_owned),
    }
}

/// A confidential client with every grant but implicit, `redirect`
/// registered, and the given token expiration and refresh count.
pub async fn confidential(
    admin: &Api,
    name: &str,
    redirect: &str,
    expiration: Value,
    refresh: Value,
) -> Registered {
    register(
        admin,
        json!({"name": name, "version": "1.0", "type": "confidential",
            "redirectUris": [redirect],
            "allowedGrants": ["authorization_code", "client_credentials", "password"],
            "tokenExpiration": expiration, "refreshCount": refresh}),
    )
    .await
}

/// A PKCE verifier (43 characters) and its S256 challenge.
pub fn pkce() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The claims of a JWT (not verified: the server's tests do that).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of the login form.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split("name=\"").nth(1)?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

/// A query or fragment parameter of a redirect location.
pub fn param(location: &str, name: &str) -> Option<String> {
    let tail = location.split_once(['?', '#'])?.1;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(tail).ok()?;
    pairs.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Drives the login form like a browser: GET `authorize_query` (cookie
/// saved in `jar`), then POST the hidden fields with the credentials and
/// `extra` fields. Returns the POST's answer (a 303 on success).
pub async fn sign_in(
    base: &str,
    jar: &Path,
    authorize_query: &str,
    username: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Curl {
    let jar = jar.to_str().unwrap();
    let url = format!("{base}/oauth/authorize?{authorize_query}");
    let page = curl(&["-c", jar, &url]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut fields = hidden_fields(&page.text);
    fields.push(("username".into(), username.into()));
    fields.push(("password".into(), password.into()));
    for (n, v) in extra {
        fields.push(((*n).into(), (*v).into()));
    }
    let encoded: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut args = vec!["-b", jar, "-X", "POST"];
    for pair in &encoded {
        args.push("--data-urlencode");
        args.push(pair);
    }
    let post = format!("{base}/oauth/authorize");
    args.push(&post);
    curl(&args).await
}
