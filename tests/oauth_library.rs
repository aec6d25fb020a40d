//! Every grant, the errors, refresh exhaustion and reuse, PKCE, the form
//! with MFA, introspection and revocation, driven by a real third-party
//! OAuth client library: `tests/oauth_client.py` with authlib (PyPI,
//! pinned, installed by `scripts/oauth_venv.sh`, which `scripts/test.sh`
//! runs).

mod common;

use common::api::{Api, base32_decode, step_now, totp};
use common::oauth::*;
use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const CB: &str = "http://127.0.0.1:9/cb";

fn python() -> PathBuf {
    let venv = std::env::var_os("GATEHOUSE_OAUTH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/oauth-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/oauth_venv.sh` (scripts/test.sh does)",
        python.display()
    );
    python
}

#[tokio::test]
async fn authlib_drives_every_flow() {
    let python = python();
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "olga", "password": "olga-pw"}))
        .await;
    admin
        .create_user(json!({"username": "pat", "password": "pat-pw"}))
        .await;
    let pat = Api::login(b.http_addr(), "pat", "pat-pw").await;
    let enrolment = pat.post("/api/mfa/enroll", json!({})).await;
    let mfa_secret = enrolment.body["secret"].as_str().unwrap().to_owned();
    let code = totp(&base32_decode(&mfa_secret), step_now());
    assert_eq!(
        pat.post("/api/mfa/confirm", json!({"otp": code}))
            .await
            .status,
        200
    );

    let conf = confidential(&admin, "lib", CB, json!(60), json!(2)).await;
    let web = register(
        &admin,
        json!({"name": "web", "version": "1", "type": "confidential", "redirectUris": [CB]}),
    )
    .await;
    let public = register(
        &admin,
        json!({"name": "spa", "version": "1", "type": "public", "redirectUris": [CB],
            "refreshCount": "unlimited"}),
    )
    .await;
    let implicit = register(
        &admin,
        json!({"name": "legacy", "version": "1", "type": "public", "redirectUris": [CB],
            "allowedGrants": ["implicit"], "tokenExpiration": "never"}),
    )
    .await;
    let setup = json!({
        "redirect": CB, "user": "olga", "password": "olga-pw",
        "mfa_user": "pat", "mfa_password": "pat-pw", "mfa_secret": mfa_secret,
        "confidential": {"id": conf.id, "secret": conf.secret},
        "web": {"id": web.id, "secret": web.secret},
        "public": {"id": public.id},
        "implicit": {"id": implicit.id},
    })
    .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client.py");
    let base = format!("http://{}", b.http_addr());
    let (status, out) = run_cmd(
        python.to_str().unwrap(),
        &[script, &base, &setup],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(status, Some(0), "authlib client failed:\n{out}");
    for step in [
        "ok client_credentials",
        "ok password refresh exhaustion reuse",
        "ok errors",
        "ok authorization_code pkce mfa refresh",
        "ok pkce required",
        "ok implicit never expires",
        "ok introspect revoke",
        "ok metadata",
        "authlib all ok",
    ] {
        assert!(out.contains(step), "missing `{step}`:\n{out}");
    }
    b.stop().await;
}
