//! The client registry over HTTP (docs/onboarding.md): locked by default
//! and after its time, each 400 and 409 answer of `register`, the bounds
//! on pending requests, rate limits, the password flow from 202 to 201,
//! reject, HTTP permissions and the audit log. Devices and mutual TLS are
//! in tests/client_registry_devices.rs.

mod common;

use common::api::Api;
use common::registry::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_by_default_and_again_after_the_duration() {
    let b = TestBroker::start().await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    let reply = register_password(&device, "sensor-1", "secret-1").await;
    assert_eq!(
        (reply.status.as_u16(), reply.code()),
        (423, "registry_locked")
    );
    let status = admin.get("/api/client-registry").await;
    assert_eq!(status.body["locked"], true, "{}", status.body);
    assert_eq!(status.body["unlockedUntil"], Value::Null);
    assert!(listed(&admin, "sensor-1").await.is_none(), "not recorded");

    let opened = unlock(&admin, Some(1500)).await;
    assert_eq!(opened.body["locked"], false);
    let until = opened.body["unlockedUntil"].as_u64().unwrap();
    let reply = register_password(&device, "sensor-1", "secret-1").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            > until
    );
    let reply = register_password(&device, "sensor-2", "secret-2").await;
    assert_eq!(
        (reply.status.as_u16(), reply.code()),
        (423, "registry_locked")
    );
    // Even the pending one polls into a locked registry; it stays listed.
    let reply = register_password(&device, "sensor-1", "secret-1").await;
    assert_eq!(reply.status.as_u16(), 423);
    assert_eq!(admin.get("/api/client-registry").await.body["locked"], true);
    assert!(listed(&admin, "sensor-1").await.is_some());

    // Locking by hand; an empty body unlocks for the default 5 minutes.
    let raw = admin
        .client
        .post(b.http_url("/api/client-registry/unlock"))
        .bearer_auth(admin.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let body: Value = raw.json().await.unwrap();
    let left = body["unlockedUntil"].as_u64().unwrap() - until;
    assert!((290_000..=310_000).contains(&left), "{left}");
    let locked = admin.post("/api/client-registry/lock", json!({})).await;
    assert_eq!(locked.body["locked"], true);
    let reply = register_password(&device, "sensor-2", "secret-2").await;
    assert_eq!(reply.status.as_u16(), 423);
    // A zero duration is refused; a huge one is cut to max_unlock_minutes.
    let zero = admin
        .post("/api/client-registry/unlock", json!({"duration": 0}))
        .await;
    assert_eq!(zero.status, 422);
    let huge = unlock(&admin, Some(u64::MAX)).await;
    let left = huge.body["unlockedUntil"].as_u64().unwrap() - until;
    assert!(left <= 3_605_000, "{left}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_flow_pending_then_granted_once() {
    let b = TestBroker::start().await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    unlock(&admin, None).await;
    let body = json!({"username": "pump-7", "password": "pump-7-secret",
        "context": "hall B", "roles": ["gatehouse-admin"],
        "permissions": [{"resource": "pumps/7/#", "operation": "write", "context": "mqtt"}]});
    let first = device.post(REGISTER, body.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let code = first.body["pairingCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    assert!(
        code.chars().all(|c| matches!(c, 'A'..='Z' | '2'..='7')),
        "{code}"
    );
    let again = device.post(REGISTER, body.clone()).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(
        again.body["pairingCode"],
        code.as_str(),
        "same request, same code"
    );
    let entry = listed(&admin, "pump-7").await.unwrap();
    assert_eq!(entry["method"], "password");
    assert_eq!(entry["flow"], "explicit");
    assert_eq!(entry["status"], "pending");
    assert_eq!(entry["attempts"], 2);
    assert_eq!(entry["pairingCode"], code.as_str());
    assert_eq!(entry["context"], "hall B");
    assert_eq!(entry["roles"], json!(["gatehouse-admin"]));
    assert_eq!(entry["permissions"][0]["resource"], "pumps/7/#");
    assert_eq!(entry["address"], "127.0.0.1");
    assert!(entry["firstSeen"].as_u64() <= entry["lastSeen"].as_u64());
    assert!(!entry.to_string().contains("pump-7-secret"));

    // Confirmed with what the administrator names: the requested admin
    // role is not given.
    let viewer = admin.create_role(json!({"name": "pumps"})).await;
    let confirmed = admin
        .post(
            "/api/client-registry/confirm",
            json!({"username": "pump-7", "roles": ["pumps"],
                "permissions": [{"resource": "pumps/7/#", "operation": "write", "context": "mqtt"}]}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.body["roles"][0]["id"], viewer.as_str());
    assert_eq!(confirmed.body["roles"].as_array().unwrap().len(), 1);
    assert_eq!(confirmed.body["grantTypes"][0]["method"], "password");
    let twice = admin
        .post(
            "/api/client-registry/confirm",
            json!({"username": "pump-7"}),
        )
        .await;
    assert_eq!(
        (twice.status.as_u16(), twice.code()),
        (409, "already_confirmed")
    );
    assert_eq!(listed(&admin, "pump-7").await.unwrap()["status"], "granted");

    // A different password is a conflict, never an overwrite.
    let other = register_password(&device, "pump-7", "another-secret").await;
    assert_eq!(
        (other.status.as_u16(), other.code()),
        (409, "registration_conflict")
    );
    let granted = device.post(REGISTER, body.clone()).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.body);
    assert_eq!(granted.body, json!({"username": "pump-7"}));
    // Answered once; then the normal answer for an existing user.
    let after = device.post(REGISTER, body).await;
    assert_eq!(
        (after.status.as_u16(), after.code()),
        (409, "already_exists")
    );
    assert!(listed(&admin, "pump-7").await.is_none());
    // The user logs in with the registered password (HTTP and MQTT).
    Api::login(b.http_addr(), "pump-7", "pump-7-secret").await;
    users::login_ok(
        b.addr(),
        gatehouse::protocol::ProtocolVersion::V5,
        "p7",
        "pump-7",
        "pump-7-secret",
    )
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_the_audit_log() {
    let b = TestBroker::start().await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    unlock(&admin, None).await;
    let first = register_password(&device, "valve-3", "valve-secret").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let rejected = admin
        .post(
            "/api/client-registry/reject",
            json!({"username": "valve-3"}),
        )
        .await;
    assert_eq!(rejected.status, 204, "{}", rejected.body);
    assert!(listed(&admin, "valve-3").await.is_none());
    let unknown = admin
        .post(
            "/api/client-registry/reject",
            json!({"username": "valve-3"}),
        )
        .await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.code()),
        (404, "not_found")
    );
    let unknown = admin
        .post(
            "/api/client-registry/confirm",
            json!({"username": "nobody"}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    // A new request after a rejection starts afresh (new hash, new code).
    let second = register_password(&device, "valve-3", "valve-secret").await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_ne!(second.body["pairingCode"], first.body["pairingCode"]);
    admin.post("/api/client-registry/lock", json!({})).await;

    let audit = admin.get("/api/audit?rowsPerPage=100").await;
    let entries = audit.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "registry.unlock",
        "registry.request",
        "registry.reject",
        "registry.lock",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let request = entries
        .iter()
        .find(|e| e["action"] == "registry.request")
        .unwrap();
    assert_eq!(request["target"], "valve-3");
    assert_eq!(request["address"], "127.0.0.1");
    assert!(
        !audit.body.to_string().contains("valve-secret"),
        "no secret"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_with_the_reason() {
    let b = TestBroker::start_with(|c| c.http.body_limit_bytes = 8192).await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    unlock(&admin, None).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_csr(d, "cam-1", "/CN=cam-1", "");
    make_csr(d, "nocn", "/O=acme", "");
    make_csr(d, "other", "/CN=someone-else", "");
    let pem = |name: &str| std::fs::read_to_string(d.join(format!("{name}.csr"))).unwrap();
    // The signature no longer matches: the CN in the signed part now
    // reads `cbm-1`.
    let tampered = sh_ok(
        d,
        "openssl req -in cam-1.csr -outform DER > cam-1.der && \
         python3 -c \"import sys; b=bytearray(open('cam-1.der','rb').read()); i=b.find(b'cam-1'); b[i+1]^=2; sys.stdout.buffer.write(b)\" > bad.der && \
         openssl req -inform DER -in bad.der -out bad.csr && cat bad.csr",
        &[],
    );
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"username": "ab", "password": "secret-1"}),
            "invalid_username",
            "3 to 128",
        ),
        (
            json!({"username": "a b c", "password": "secret-1"}),
            "invalid_username",
            "whitespace",
        ),
        (
            json!({"username": "short-pw", "password": "abc"}),
            "password_policy",
            "password",
        ),
        (
            json!({"username": "cam-1", "password": "secret-1", "csr": pem("cam-1")}),
            "credentials",
            "not both",
        ),
        (json!({"username": "cam-1"}), "credentials", "required"),
        (
            json!({"username": "cam-1", "csr": tampered}),
            "invalid_csr",
            "signature",
        ),
        (
            json!({"username": "cam-1", "csr": "!!! not base64 !!!"}),
            "invalid_csr",
            "base64",
        ),
        (
            json!({"username": "cam-1", "csr": "aGVsbG8="}),
            "invalid_csr",
            "PEM",
        ),
        (
            json!({"username": "nocn", "csr": pem("nocn")}),
            "csr_common_name",
            "empty",
        ),
        (
            json!({"username": "cam-1", "csr": pem("other")}),
            "csr_common_name",
            "someone-else",
        ),
        (
            json!({"username": "cam-1", "password": "secret-1", "context": "x".repeat(1025)}),
            "invalid_request",
            "context",
        ),
        (
            json!({"username": "cam-1", "password": "secret-1",
            "permissions": [{"resource": "a/#/b", "operation": "read", "context": "mqtt"}]}),
            "invalid_request",
            "a/#/b",
        ),
    ];
    for (body, code, words) in cases {
        let reply = device.post(REGISTER, body.clone()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (400, code),
            "{body}: {}",
            reply.body
        );
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(words), "{code}: {message}");
    }
    // Malformed bodies get the API's usual answers, never a 500.
    let send = |bytes: Vec<u8>| {
        let (client, url) = (device.client.clone(), b.http_url(REGISTER));
        async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(bytes)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = send(b"{\"username\": ".to_vec()).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (400, "bad_json"));
    let (status, body) =
        send(br#"{"username":"cam-1","password":"secret-1","pin":1}"#.to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("pin"), "{body}");
    let (status, body) =
        send(format!(r#"{{"username":"cam-1","csr":"{}"}}"#, "A".repeat(9000)).into_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (413, "payload_too_large")
    );
    // Nothing of this was recorded.
    assert!(
        admin.get("/api/client-registry").await.body["pendingRequests"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_409() {
    let b = TestBroker::start().await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    unlock(&admin, None).await;
    let exists = register_password(&device, "admin", "whatever-1").await;
    assert_eq!(
        (exists.status.as_u16(), exists.code()),
        (409, "already_exists")
    );
    let dir = tempfile::tempdir().unwrap();
    make_csr(dir.path(), "cam-2", "/CN=cam-2", "");
    let (status, _) = curl_register_csr(&b, dir.path(), "cam-2");
    assert_eq!(status, 202);
    // Same name, another key (a second device with the same name).
    std::fs::rename(dir.path().join("cam-2.csr"), dir.path().join("first.csr")).unwrap();
    make_csr(dir.path(), "cam-2", "/CN=cam-2", "");
    let (status, body) = curl_register_csr(&b, dir.path(), "cam-2");
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (409, "registration_conflict")
    );
    // A password for a name with a pending CSR, and the other way round.
    let reply = register_password(&device, "cam-2", "secret-22").await;
    assert_eq!(reply.code(), "registration_conflict");
    assert_eq!(
        register_password(&device, "meter-1", "secret-1")
            .await
            .status,
        202
    );
    let csr = make_csr(dir.path(), "meter-1", "/CN=meter-1", "");
    let reply = device
        .post(
            REGISTER,
            json!({"username": "meter-1", "csr": std::fs::read_to_string(csr).unwrap()}),
        )
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.code()),
        (409, "registration_conflict")
    );
    let entry = listed(&admin, "cam-2").await.unwrap();
    assert_eq!(
        (entry["method"].as_str(), entry["attempts"].as_u64()),
        (Some("csr"), Some(1))
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_are_bounded_in_number_and_age() {
    let b = TestBroker::start_with(|c| {
        c.registry.max_pending = 2;
        c.registry.pending_max_age_secs = 2;
    })
    .await;
    let device = device_api(&b);
    let admin = admin(&b).await;
    unlock(&admin, None).await;
    assert_eq!(
        register_password(&device, "dev-a", "secret-a").await.status,
        202
    );
    assert_eq!(
        register_password(&device, "dev-b", "secret-b").await.status,
        202
    );
    let full = register_password(&device, "dev-c", "secret-c").await;
    assert_eq!(
        (full.status.as_u16(), full.code()),
        (429, "registry_full"),
        "{}",
        full.body
    );
    let retry: u64 = full.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Known requests still poll.
    assert_eq!(
        register_password(&device, "dev-a", "secret-a").await.status,
        202
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let status = admin.get("/api/client-registry").await;
    assert_eq!(status.body["pendingRequests"], json!([]), "aged out");
    assert_eq!(
        register_password(&device, "dev-c", "secret-c").await.status,
        202
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_rate_limited_per_address() {
    let b = TestBroker::start_with(|c| c.registry.rate_per_address_per_minute = 3).await;
    let device = device_api(&b);
    for _ in 0..3 {
        assert_eq!(
            register_password(&device, "dev-x", "secret-x").await.status,
            423
        );
    }
    let limited = register_password(&device, "dev-x", "secret-x").await;
    assert_eq!(
        (limited.status.as_u16(), limited.code()),
        (429, "rate_limited")
    );
    assert!(limited.headers.contains_key("retry-after"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_their_permission() {
    let b = TestBroker::start().await;
    let admin = admin(&b).await;
    let anonymous = device_api(&b);
    admin
        .create_user(json!({"username": "operator", "password": "operator-1",
            "initialPermissions": [{"resource": "/api/client-registry", "operation": "read", "context": "http"}]}))
        .await;
    let operator = Api::login(b.http_addr(), "operator", "operator-1").await;
    let routes = [
        ("GET", "/api/client-registry"),
        ("POST", "/api/client-registry/unlock"),
        ("POST", "/api/client-registry/lock"),
        ("POST", "/api/client-registry/confirm"),
        ("POST", "/api/client-registry/reject"),
    ];
    for (method, path) in routes {
        let body = (method == "POST").then(|| json!({"username": "x"}));
        let reply = anonymous.call(method, path, body.clone()).await;
        assert_eq!(reply.status, 401, "{method} {path}");
        let reply = operator.call(method, path, body).await;
        let expected = if method == "GET" { 200 } else { 403 };
        assert_eq!(
            reply.status.as_u16(),
            expected,
            "{method} {path}: {}",
            reply.body
        );
    }
    // Only register is open to anyone.
    let reply = register_password(&anonymous, "dev-y", "secret-y").await;
    assert_eq!(reply.status, 423);
    b.stop().await;
}
