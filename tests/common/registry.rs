//! Client-registry helpers: devices made with openssl as
//! `docs/onboarding.md` tells their owners, shell commands run as written
//! there, and the admin side through the API. The shell commands block:
//! tests that talk to an in-process broker with them run on the
//! multi-threaded runtime.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestBroker;
use super::api::{Api, Reply};

pub const REGISTER: &str = "/api/client-registry/register";

/// Runs `sh -c SCRIPT` in `dir` with `vars` set; (success, stdout, stderr).
pub fn sh(dir: &Path, script: &str, vars: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .envs(vars.iter().copied())
        .output()
        .expect("sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Like [`sh`], asserting success; returns stdout.
pub fn sh_ok(dir: &Path, script: &str, vars: &[(&str, &str)]) -> String {
    let (ok, out, err) = sh(dir, script, vars);
    assert!(ok, "{script}\n{out}\n{err}");
    out
}

/// A device's key and CSR in `dir` (`NAME.key`, `NAME.csr`), made with
/// docs/onboarding.md's openssl command; `subject` e.g. `/CN=device1`,
/// `extra` further `openssl req` arguments.
pub fn make_csr(dir: &Path, name: &str, subject: &str, extra: &str) -> PathBuf {
    sh_ok(
        dir,
        &format!(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
             -keyout \"$NAME.key\" -out \"$NAME.csr\" -subj \"$SUBJECT\" {extra} 2>&1"
        ),
        &[("NAME", name), ("SUBJECT", subject)],
    );
    dir.join(format!("{name}.csr"))
}

/// The pairing code of a CSR, computed as docs/onboarding.md shows.
pub fn pairing_code_of(dir: &Path, name: &str) -> String {
    sh_ok(
        dir,
        "openssl req -in \"$NAME.csr\" -noout -pubkey | openssl pkey -pubin -outform DER \
         | openssl dgst -sha256 -binary | base32 | cut -c1-8",
        &[("NAME", name)],
    )
    .trim()
    .to_owned()
}

/// docs/onboarding.md's curl command for a CSR (sent as base64, as
/// Connectware's agents do): (status, body).
pub fn curl_register_csr(b: &TestBroker, dir: &Path, name: &str) -> (u16, Value) {
    let out = sh_ok(
        dir,
        "curl -s -w '\\n%{http_code}' -X POST \"$SERVER/api/client-registry/register\" \
         -H 'Content-Type: application/json' \
         -d \"{\\\"username\\\": \\\"$NAME\\\", \\\"csr\\\": \\\"$(base64 -w0 $NAME.csr)\\\", \\\"context\\\": \\\"line 3, cabinet 2\\\"}\"",
        &[("SERVER", &b.http_url("")), ("NAME", name)],
    );
    let (body, status) = out.trim_end().rsplit_once('\n').expect("status line");
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// An API client without a token (what a device is).
pub fn device_api(b: &TestBroker) -> Api {
    Api::new(b.http_addr())
}

pub async fn admin(b: &TestBroker) -> Api {
    Api::login(b.http_addr(), "admin", "admin").await
}

pub async fn unlock(admin: &Api, duration_ms: Option<u64>) -> Reply {
    let body = match duration_ms {
        Some(ms) => json!({ "duration": ms }),
        None => json!({}),
    };
    let reply = admin.post("/api/client-registry/unlock", body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// `GET /api/client-registry`'s request for `username`.
pub async fn listed(admin: &Api, username: &str) -> Option<Value> {
    let reply = admin.get("/api/client-registry").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["pendingRequests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["username"] == username)
        .cloned()
}

/// Waits (up to 5 s) until `username` is listed: the implicit flow
/// records on the blocking pool after the CONNACK went out.
pub async fn wait_listed(admin: &Api, username: &str) -> Value {
    for _ in 0..100 {
        if let Some(r) = listed(admin, username).await {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("`{username}` was never listed");
}

pub async fn register_password(api: &Api, username: &str, password: &str) -> Reply {
    api.post(
        REGISTER,
        json!({"username": username, "password": password}),
    )
    .await
}
