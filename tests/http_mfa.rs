//! MFA through the API, codes computed here (RFC 6238 from HMAC-SHA1, not
//! the broker's code): enrol, login needing the code, replay refused, a
//! backup code working once, lockout, administrator disable, mandatory
//! enrolment.

mod common;

use common::api::{Api, base32_decode, step_now, totp};
use common::*;
use serde_json::json;

/// Enrols `api`'s user; returns (secret, backup codes).
async fn enrol(api: &Api) -> (Vec<u8>, Vec<String>) {
    let e = api.post("/api/mfa/enroll", json!({})).await;
    assert_eq!(e.status, 200, "{}", e.body);
    let uri = e.body["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("algorithm=SHA1&digits=6&period=30"), "{uri}");
    assert!(e.body["qrCodeSvg"].as_str().unwrap().contains("<svg"));
    let secret = base32_decode(e.body["secret"].as_str().unwrap());
    assert!(uri.contains(e.body["secret"].as_str().unwrap()));
    let wrong = api.post("/api/mfa/confirm", json!({"otp": "000000"})).await;
    if totp(&secret, step_now()) != "000000" {
        assert_eq!((wrong.status.as_u16(), wrong.code()), (401, "invalid_otp"));
    }
    let c = api
        .post(
            "/api/mfa/confirm",
            json!({"otp": totp(&secret, step_now())}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let codes: Vec<String> = c.body["backupCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

fn login_body(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"username": name, "password": format!("{name}-pw")});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn enrol_login_with_codes_backup_once_and_admin_disable() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let id = admin
        .create_user(json!({"username": "mia", "password": "mia-pw"}))
        .await;
    let mia = Api::login(b.http_addr(), "mia", "mia-pw").await;
    let (secret, codes) = enrol(&mia).await;
    assert_eq!(
        admin.get(&format!("/api/users/{id}")).await.body["mfa_is_enrolled"],
        true
    );
    let anon = Api::new(b.http_addr());
    // Password alone is no longer enough.
    let r = anon.post("/api/login", login_body("mia", json!({}))).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "mfa_required"));
    // The code of the step confirmation used is spent: the next step's works
    // (±1 step is accepted for clock skew), once.
    let next = totp(&secret, step_now() + 1);
    let r = anon
        .post("/api/login", login_body("mia", json!({"otp": next})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = anon
        .post("/api/login", login_body("mia", json!({"otp": next})))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (401, "invalid_otp"),
        "replayed code"
    );
    // A backup code works once.
    let r = anon
        .post(
            "/api/login",
            login_body("mia", json!({"backupCode": codes[0]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = anon
        .post(
            "/api/login",
            login_body("mia", json!({"backupCode": codes[0]})),
        )
        .await;
    assert_eq!(r.code(), "invalid_otp");
    // The wrong password with a valid code is still refused.
    let r = anon
        .post(
            "/api/login",
            json!({"username": "mia", "password": "x", "backupCode": codes[1]}),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");
    // Administrator disables it: the password is enough again.
    assert_eq!(
        admin.delete(&format!("/api/users/{id}/mfa")).await.status,
        204
    );
    let r = anon.post("/api/login", login_body("mia", json!({}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        admin.get(&format!("/api/users/{id}")).await.body["mfa_is_enrolled"],
        false
    );
    // Only the administrator: mia cannot do it for others.
    let admin_id = admin.get("/api/users/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        mia.delete(&format!("/api/users/{admin_id}/mfa"))
            .await
            .status,
        403
    );
    b.stop().await;
}

#[tokio::test]
async fn invalid_codes_lock_mfa_logins() {
    let b = TestBroker::start_with(|c| {
        c.http.mfa_max_failures = 3;
        c.http.rate_per_user_per_minute = 100;
    })
    .await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "leo", "password": "leo-pw"}))
        .await;
    let leo = Api::login(b.http_addr(), "leo", "leo-pw").await;
    let (secret, codes) = enrol(&leo).await;
    let anon = Api::new(b.http_addr());
    for bad in ["111111", "222222", "333333"] {
        let r = anon
            .post("/api/login", login_body("leo", json!({"otp": bad})))
            .await;
        assert_eq!(r.code(), "invalid_otp");
    }
    // Locked: even a right code or a backup code is refused for a while.
    let r = anon
        .post(
            "/api/login",
            login_body("leo", json!({"otp": totp(&secret, step_now() + 1)})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (429, "mfa_locked"),
        "{}",
        r.body
    );
    assert!(r.headers.contains_key("retry-after"));
    let r = anon
        .post(
            "/api/login",
            login_body("leo", json!({"backupCode": codes[2]})),
        )
        .await;
    assert_eq!(r.code(), "mfa_locked");
    b.stop().await;
}

#[tokio::test]
async fn disable_and_regenerate_backup_codes_need_a_code() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "ned", "password": "ned-pw"}))
        .await;
    let ned = Api::login(b.http_addr(), "ned", "ned-pw").await;
    let (secret, old) = enrol(&ned).await;
    let r = ned
        .post("/api/mfa/backup-codes", json!({"otp": "12"}))
        .await;
    assert_eq!(r.code(), "invalid_otp");
    let r = ned
        .post(
            "/api/mfa/backup-codes",
            json!({"otp": totp(&secret, step_now() + 1)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["backupCodes"][0].as_str().unwrap().to_owned();
    let anon = Api::new(b.http_addr());
    let r = anon
        .post(
            "/api/login",
            login_body("ned", json!({"backupCode": old[0]})),
        )
        .await;
    assert_eq!(r.code(), "invalid_otp", "old codes stop working");
    let r = anon
        .post("/api/login", login_body("ned", json!({"backupCode": new})))
        .await;
    assert_eq!(r.status, 200);
    let r = ned
        .post(
            "/api/mfa/disable",
            json!({"otp": totp(&secret, step_now() - 1)}),
        )
        .await;
    // The previous step is older than the last one used: refused.
    assert_eq!(r.code(), "invalid_otp");
    b.stop().await;
}

#[tokio::test]
async fn mandatory_enrolment_restricts_the_token_until_done() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let role = admin
        .create_role(json!({"name": "api-readers", "permissions": [
            {"resource": "/api/users", "operation": "read", "context": "http"}]}))
        .await;
    let id = admin
        .create_user(json!({"username": "eve", "password": "eve-pw", "roles": [role], "enforceMFAEnrollment": true}))
        .await;
    assert_eq!(
        admin.get(&format!("/api/users/{id}")).await.body["enforceMFAEnrollment"],
        true
    );
    let anon = Api::new(b.http_addr());
    let r = anon.post("/api/login", login_body("eve", json!({}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["mfaEnrollmentRequired"], true);
    let eve = anon.with_token(r.body["token"].as_str().unwrap());
    let r = eve.get("/api/users").await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (403, "mfa_enrollment_required")
    );
    assert_eq!(eve.get("/api/users/me").await.status, 200);
    // The enrol-only token is no MQTT password either.
    let (_, reason) = {
        let mut client = RawClient::tcp(b.addr(), gatehouse::protocol::ProtocolVersion::V5).await;
        let mut connect = connect_packet(gatehouse::protocol::ProtocolVersion::V5, "e", true);
        connect.username = Some("eve".into());
        connect.password = Some(bytes::Bytes::from(eve.token.clone().unwrap()));
        ((), client.connect_with(connect).await.reason)
    };
    assert_ne!(reason, gatehouse::protocol::ReasonCode::SUCCESS);
    let (secret, _) = enrol(&eve).await;
    let r = anon
        .post(
            "/api/login",
            login_body("eve", json!({"otp": totp(&secret, step_now() + 1)})),
        )
        .await;
    assert_eq!(r.body["mfaEnrollmentRequired"], false);
    let full = anon.with_token(r.body["token"].as_str().unwrap());
    assert_eq!(full.get("/api/users").await.status, 200);
    b.stop().await;
}
