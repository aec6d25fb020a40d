//! `gatehouse backup` of a running broker (through `GET /api/backup`) and
//! `gatehouse restore` into a fresh data directory: users log in, ACLs
//! hold, a revoked token stays revoked while the others work, MFA is still
//! asked, a retained message is delivered, a stored session gets what was
//! queued for it, the certificate records and the CA come back, an OAuth
//! client's secret still gets it tokens. Damaged
//! files and occupied directories are refused.

mod common;

use common::api::{Api, base32_decode, step_now, totp};
use common::oauth::{confidential, curl};
use common::*;
use gatehouse::protocol::*;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn config(dir: &Path) -> (PathBuf, SocketAddr, SocketAddr) {
    let (mqtt, http) = (free_port(), free_port());
    let path = dir.join("broker.toml");
    let text = format!(
        "[listeners]\nmqtt = \"127.0.0.1:{mqtt}\"\nhttp = \"127.0.0.1:{http}\"\n\n[storage]\ndir = \"{}\"\n\n[tls]\ndir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("certs").display()
    );
    std::fs::write(&path, text).unwrap();
    (
        path,
        ([127, 0, 0, 1], mqtt).into(),
        ([127, 0, 0, 1], http).into(),
    )
}

fn persistent(client_id: &str) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, false);
    c.properties.session_expiry_interval = Some(3600);
    c.username = Some("dev-1".into());
    c.password = Some(bytes::Bytes::from_static(b"secret-1"));
    c
}

#[tokio::test]
async fn a_restored_broker_has_everything_back() {
    let old = tempfile::tempdir().unwrap();
    let (config_a, mqtt, http) = config(old.path());
    let run_a = |args: &[&str], stdin: Option<&str>| gatehouse_run(&config_a, args, stdin, &[]);
    // A certificate record (and the CA) before the first start.
    let out = run_a(
        &[
            "cert",
            "issue",
            "--cn",
            "dev-1",
            "--out",
            old.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let serial = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "serial")
        .nth(1)
        .unwrap()
        .to_owned();

    let broker = Binary::start(&config_a, mqtt);
    wait_port(http);
    let admin = Api::login(http, "admin", "admin").await;
    admin
        .create_user(json!({"username": "dev-1", "password": "secret-1", "initialPermissions": [
            {"resource": "t/#", "operation": "readWrite", "context": "mqtt"},
            {"resource": "t/secret", "operation": "readWrite", "context": "mqtt", "effect": "deny"}]}))
        .await;
    admin
        .create_user(json!({"username": "alice", "password": "alice-pass"}))
        .await;
    let revoked = Api::login(http, "dev-1", "secret-1").await;
    let kept = Api::login(http, "dev-1", "secret-1").await;
    let fingerprint: String = {
        use sha2::Digest;
        sha2::Sha256::digest(revoked.token.as_ref().unwrap().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let gone = revoked
        .delete(&format!("/api/users/me/tokens/{fingerprint}"))
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let still_there = kept.get("/api/users/me").await;
    assert_eq!(still_there.status, 200);
    let alice = Api::login(http, "alice", "alice-pass").await;
    let secret = base32_decode(
        alice.post("/api/mfa/enroll", json!({})).await.body["secret"]
            .as_str()
            .unwrap(),
    );
    let confirmed = alice
        .post(
            "/api/mfa/confirm",
            json!({"otp": totp(&secret, step_now())}),
        )
        .await;
    assert_eq!(confirmed.status, 200);

    // A confidential OAuth client (client_credentials).
    let svc = confidential(
        &admin,
        "backup-svc",
        "http://127.0.0.1:9/cb",
        json!("global"),
        json!(0),
    )
    .await;

    // A retained message, and a stored session with a queued message.
    let mut keeper = RawClient::tcp(mqtt, ProtocolVersion::V5).await;
    assert_eq!(
        keeper.connect_with(persistent("keeper")).await.reason,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        keeper.subscribe("t/#", QoS::AtLeastOnce).await,
        ReasonCode::GRANTED_QOS_1
    );
    keeper.disconnect().await;
    let (mut p, _) = users::login(mqtt, ProtocolVersion::V5, "pub", "dev-1", "secret-1").await;
    p.publish("t/kept", b"kept-payload", QoS::AtLeastOnce, true)
        .await;
    p.publish("t/queued", b"queued-payload", QoS::AtLeastOnce, false)
        .await;
    p.disconnect().await;

    // The backup, through the running broker's API.
    let out = run_a(
        &["login", "--user", "admin", "--password-stdin"],
        Some("admin\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let file = old.path().join("gatehouse.backup");
    let out = run_a(&["backup", "--out", file.to_str().unwrap()], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for part in [
        "users",
        "tokens",
        "accounts",
        "certificates",
        "retained",
        "sessions",
        "queue",
        "oauth_clients",
        "jwt-es256.pem",
        "mfa.key",
        "tls/ca.key",
    ] {
        assert!(out.stdout.contains(part), "{part}: {}", out.stdout);
    }
    // Restoring needs a stopped broker.
    let out = run_a(&["restore", file.to_str().unwrap(), "--force"], None);
    assert_eq!(out.code, Some(8), "{}", out.stderr);
    drop(broker);

    // Into a fresh data directory.
    let new = tempfile::tempdir().unwrap();
    let (config_b, mqtt, http) = config(new.path());
    let run_b = |args: &[&str]| gatehouse_run(&config_b, args, None, &[]);
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let bad = new.path().join("damaged.backup");
    std::fs::write(&bad, &damaged).unwrap();
    let out = run_b(&["restore", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("checksum"), "{}", out.stderr);
    assert!(!new.path().join("data/gatehouse.redb").exists());
    let out = run_b(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = run_b(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(7), "refuses to overwrite: {}", out.stderr);
    let out = run_b(&["cert", "list"]);
    assert!(
        out.stdout.contains(&serial) && out.stdout.contains("dev-1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(new.path().join("certs/ca.crt")).unwrap(),
        std::fs::read(old.path().join("certs/ca.crt")).unwrap()
    );

    let _broker = Binary::start(&config_b, mqtt);
    wait_port(http);
    // The user logs in; its ACL holds; the retained message is delivered.
    let (mut c, ack) = users::login(mqtt, ProtocolVersion::V5, "back", "dev-1", "secret-1").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        c.subscribe("t/kept", QoS::AtLeastOnce).await,
        ReasonCode::GRANTED_QOS_1
    );
    let retained = c.recv_publish().await;
    assert_eq!(&retained.payload[..], b"kept-payload");
    assert_eq!(
        c.subscribe("t/secret", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        c.subscribe("other/#", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // The stored session gets what was queued for it.
    let mut keeper = RawClient::tcp(mqtt, ProtocolVersion::V5).await;
    let ack = keeper.connect_with(persistent("keeper")).await;
    assert!(ack.session_present);
    let first = keeper.recv_publish().await.payload;
    let second = keeper.recv_publish().await.payload;
    assert_eq!(
        (&first[..], &second[..]),
        (&b"kept-payload"[..], &b"queued-payload"[..])
    );
    // The revoked token stays revoked (HTTP and MQTT); the other works.
    let api = Api::new(http);
    let revoked_token = revoked.token.clone().unwrap();
    assert_eq!(
        api.with_token(&revoked_token)
            .get("/api/users/me")
            .await
            .status,
        401
    );
    let (_, ack) = users::login(mqtt, ProtocolVersion::V5, "tok", "dev-1", &revoked_token).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let kept_token = kept.token.clone().unwrap();
    assert_eq!(
        api.with_token(&kept_token)
            .get("/api/users/me")
            .await
            .status,
        200
    );
    // The OAuth client and its (hashed) secret came back.
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials",
        &format!("http://{http}/oauth/token"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // MFA is still asked.
    let reply = api
        .post(
            "/api/login",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!((reply.status.as_u16(), reply.code()), (401, "mfa_required"));
}

#[test]
fn a_stopped_broker_backs_up_from_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, _) = config(dir.path());
    let out = gatehouse_run(
        &config,
        &["user", "add", "offline", "--password-stdin"],
        Some("offline-pass\n"),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let file = dir.path().join("b.backup");
    let out = gatehouse_run(
        &config,
        &["backup", "--out", file.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = gatehouse_run(
        &config,
        &["backup", "--out", file.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    let other = tempfile::tempdir().unwrap();
    let (config_b, _, _) = self::config(other.path());
    let out = gatehouse_run(&config_b, &["restore", file.to_str().unwrap()], None, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = gatehouse_run(&config_b, &["user", "list"], None, &[]);
    assert!(out.stdout.contains("offline"), "{}", out.stdout);
    let out = gatehouse_run(&config_b, &["restore", "/nonexistent.backup"], None, &[]);
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    let junk = other.path().join("junk");
    std::fs::write(&junk, b"not a backup at all").unwrap();
    let out = gatehouse_run(
        &config_b,
        &["restore", junk.to_str().unwrap(), "--force"],
        None,
        &[],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("not a Gatehouse backup"),
        "{}",
        out.stderr
    );
}
