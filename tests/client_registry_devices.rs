//! Devices onboarding themselves with real tools, as docs/onboarding.md
//! shows: an openssl CSR sent with curl (423 → unlock → 202 with the
//! pairing code the device computes too → confirm → 201 with a certificate
//! `openssl verify` accepts) and then `mosquitto_pub --cert/--key` over
//! mutual TLS; a CSR asking for CA rights still yields a leaf; the implicit
//! flow with `mosquitto_pub`; and `gatehouse registry` driving it all.

mod common;

use common::api::Api;
use common::registry::*;
use common::users::login;
use common::*;
use gatehouse::protocol::{ProtocolVersion, ReasonCode};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_device_onboards_and_publishes_over_mutual_tls() {
    let b = TestBroker::start_with(|c| {
        c.listeners.mqtts = Some("127.0.0.1:0".parse().unwrap());
        c.tls.mutual_tls = true;
    })
    .await;
    let mqtts = b.broker.as_ref().unwrap().mqtts_addr.unwrap().port();
    let admin = admin(&b).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_csr(d, "device1", "/CN=device1", "");

    let (status, body) = curl_register_csr(&b, d, "device1");
    assert_eq!(
        (status, body["error"].as_str()),
        (423, Some("registry_locked"))
    );
    unlock(&admin, None).await;
    let (status, body) = curl_register_csr(&b, d, "device1");
    assert_eq!(status, 202, "{body}");
    let code = body["pairingCode"].as_str().unwrap();
    assert_eq!(
        code,
        pairing_code_of(d, "device1"),
        "the device computes the same code"
    );
    let entry = listed(&admin, "device1").await.unwrap();
    assert_eq!(
        (
            entry["method"].as_str(),
            entry["pairingCode"].as_str(),
            entry["context"].as_str()
        ),
        (Some("csr"), Some(code), Some("line 3, cabinet 2"))
    );
    let (status, _) = curl_register_csr(&b, d, "device1");
    assert_eq!(status, 202, "polling");

    let confirmed = admin
        .post(
            "/api/client-registry/confirm",
            json!({"username": "device1", "permissions": [
                {"resource": "devices/device1/#", "operation": "readWrite", "context": "mqtt"}]}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(
        confirmed.body["grantTypes"],
        json!([{"method": "certificate", "isRequired": false}])
    );
    assert_eq!(confirmed.body["certificates"].as_array().unwrap().len(), 1);

    let (status, granted) = curl_register_csr(&b, d, "device1");
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["username"], "device1");
    let cert = write(d, "device1.crt", granted["certificate"].as_str().unwrap());
    let ca_file = b.config.tls.dir.join("ca.crt");
    assert_eq!(
        granted["caCertificate"].as_str().unwrap(),
        std::fs::read_to_string(&ca_file).unwrap()
    );
    let ca = ca_file.display().to_string();
    let verified = sh_ok(
        d,
        "openssl verify -CAfile \"$CA\" device1.crt",
        &[("CA", &ca)],
    );
    assert!(verified.contains("device1.crt: OK"), "{verified}");
    let subject = sh_ok(d, "openssl x509 -in device1.crt -noout -subject", &[]);
    assert!(
        subject.contains("CN=device1") || subject.contains("CN = device1"),
        "{subject}"
    );
    let (status, again) = curl_register_csr(&b, d, "device1");
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("already_exists"))
    );

    // The device publishes with its key and the new certificate.
    let key = d.join("device1.key").display().to_string();
    let tls = [
        "--cafile",
        ca.as_str(),
        "--cert",
        &cert,
        "--key",
        &key,
        "-V",
        "5",
    ];
    let topic = "devices/device1/state";
    let (status, out) = mosquitto_roundtrip(mqtts, topic, topic, "onboarded", &tls, &tls).await;
    assert_eq!((status, out.trim()), (Some(0), "onboarded"));
    // Held to the permissions it was confirmed with.
    let port = mqtts.to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        port.as_str(),
        "-t",
        "elsewhere",
        "-C",
        "1",
        "-W",
        "2",
    ];
    args.extend(tls);
    let (status, out) = run_cmd("mosquitto_sub", &args, Duration::from_secs(6)).await;
    assert!(status != Some(0) || out.contains("denied"), "{out}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_asking_for_ca_rights_yields_a_leaf() {
    // No TLS listener: the CA is made on the first CSR confirmed.
    let b = TestBroker::start().await;
    let admin = admin(&b).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_csr(
        d,
        "rogue",
        "/CN=rogue",
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
         -addext extendedKeyUsage=serverAuth -addext subjectAltName=DNS:example.com",
    );
    let asked = sh_ok(d, "openssl req -in rogue.csr -noout -text", &[]);
    assert!(asked.contains("CA:TRUE"), "{asked}");
    unlock(&admin, None).await;
    // The PEM text itself is accepted too.
    let body =
        json!({"username": "rogue", "csr": std::fs::read_to_string(d.join("rogue.csr")).unwrap()});
    let device = device_api(&b);
    assert_eq!(device.post(REGISTER, body.clone()).await.status, 202);
    let confirmed = admin
        .post("/api/client-registry/confirm", json!({"username": "rogue"}))
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.body["roles"], json!([]));
    assert_eq!(confirmed.body["permissions"], json!([]));
    let granted = device.post(REGISTER, body).await;
    assert_eq!(granted.status, 201, "{}", granted.body);
    write(
        d,
        "rogue.crt",
        granted.body["certificate"].as_str().unwrap(),
    );
    let text = sh_ok(d, "openssl x509 -in rogue.crt -noout -text", &[]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert!(!text.contains("example.com"), "{text}");
    let ca = b.config.tls.dir.join("ca.crt").display().to_string();
    let verified = sh_ok(
        d,
        "openssl verify -CAfile \"$CA\" rogue.crt",
        &[("CA", &ca)],
    );
    assert!(verified.contains("OK"), "{verified}");
    b.stop().await;
}

async fn mosquitto_pub(
    port: u16,
    user: &str,
    password: &str,
    version: &str,
) -> (Option<i32>, String) {
    let port = port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        port.as_str(),
        "-u",
        user,
        "-P",
        password,
        "-V",
        version,
        "-i",
        "sensor7-client",
        "-t",
        "sensors/7",
        "-m",
        "21.5",
    ];
    run_cmd("mosquitto_pub", &args, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_flow_with_mosquitto_pub() {
    let b = TestBroker::start_with(|c| {
        c.auth.failure_delay_ms = 10;
        c.auth.failure_delay_max_ms = 20;
    })
    .await;
    let admin = admin(&b).await;
    // Locked: refused as usual, and not recorded.
    let (status, out) = mosquitto_pub(b.port(), "sensor7", "sensor7-secret", "5").await;
    assert_ne!(status, Some(0), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(listed(&admin, "sensor7").await.is_none());

    unlock(&admin, None).await;
    let (status, out) = mosquitto_pub(b.port(), "sensor7", "sensor7-secret", "311").await;
    assert_ne!(status, Some(0), "{out}");
    let entry = wait_listed(&admin, "sensor7").await;
    assert_eq!(
        (
            entry["method"].as_str(),
            entry["flow"].as_str(),
            entry["attempts"].as_u64()
        ),
        (Some("password"), Some("implicit"), Some(1))
    );
    // The refusals themselves, exactly: v5 0x86, 3.1.1 return code 4.
    let (_, ack) = login(
        b.addr(),
        ProtocolVersion::V5,
        "s7",
        "sensor7",
        "sensor7-secret",
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let (_, ack) = login(
        b.addr(),
        ProtocolVersion::V311,
        "s7",
        "sensor7",
        "sensor7-secret",
    )
    .await;
    // (return code 4 on the wire, decoded as its v5 equivalent)
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    // The same password counts as the same request; another one is ignored.
    for _ in 0..50 {
        if listed(&admin, "sensor7").await.unwrap()["attempts"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = login(
        b.addr(),
        ProtocolVersion::V5,
        "s7",
        "sensor7",
        "other-secret",
    )
    .await;
    // ... but counted as a conflict (someone else wants this name), and
    // audited.
    let mut entry = listed(&admin, "sensor7").await.unwrap();
    for _ in 0..50 {
        if entry["conflicts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        entry = listed(&admin, "sensor7").await.unwrap();
    }
    assert_eq!(
        (&entry["attempts"], &entry["conflicts"]),
        (&json!(3), &json!(1)),
        "{entry}"
    );
    let audit = admin.get("/api/audit?rowsPerPage=100").await;
    assert!(
        audit.body.to_string().contains("registry.conflict"),
        "{}",
        audit.body
    );
    // A password the policy refuses is never recorded.
    let _ = login(b.addr(), ProtocolVersion::V5, "s8", "sensor8", "abc").await;

    let confirmed = admin
        .post(
            "/api/client-registry/confirm",
            json!({"username": "sensor7"}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(confirmed.body["permissions"], json!([]));
    assert!(
        listed(&admin, "sensor7").await.is_none(),
        "nothing to fetch"
    );
    assert!(listed(&admin, "sensor8").await.is_none());
    for version in ["5", "311"] {
        let (status, out) = mosquitto_pub(b.port(), "sensor7", "sensor7-secret", version).await;
        assert_eq!(status, Some(0), "-V {version}: {out}");
    }
    let (status, _) = mosquitto_pub(b.port(), "sensor7", "other-secret", "5").await;
    assert_ne!(status, Some(0));
    b.stop().await;
}

/// `gatehouse ARGS` against the running broker, in a configuration
/// directory of this broker's own (no stored login of the machine's user);
/// (success, output).
fn cli(b: &TestBroker, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> (bool, String) {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command.args(args);
    if !args.contains(&"--server") {
        command.args(["--server", &b.http_url("")]);
    }
    let xdg = b.dir.path().join("xdg");
    let mut child = command
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("GATEHOUSE_SERVER")
        .env("XDG_CONFIG_HOME", &xdg)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_registry() {
    let b = TestBroker::start().await;
    let admin = admin(&b).await;
    let token = admin.token.clone().unwrap();
    let token = token.as_str();
    let (ok, out) = cli(&b, &["registry", "list"], None, &[]);
    assert!(!ok && out.contains("GATEHOUSE_TOKEN"), "{out}");
    let (ok, out) = cli(
        &b,
        &["registry", "list"],
        None,
        &[("GATEHOUSE_TOKEN", "not-a-token")],
    );
    assert!(!ok && out.contains("401"), "{out}");

    let (ok, out) = cli(
        &b,
        &["registry", "unlock", "--minutes", "2"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(ok && out.contains("unlocked for another"), "{out}");
    let until = admin.get("/api/client-registry").await.body["unlockedUntil"]
        .as_u64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (110_000..=121_000).contains(&(until - now)),
        "{}",
        until - now
    );

    let device = device_api(&b);
    let pending = register_password(&device, "gauge-1", "gauge-secret").await;
    let code = pending.body["pairingCode"].as_str().unwrap().to_owned();
    register_password(&device, "gauge-2", "gauge-secret").await;
    let (ok, out) = cli(
        &b,
        &["registry", "list"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("gauge-1 ")).expect(&out);
    assert!(line.contains("password") && line.contains(&code), "{line}");
    let (ok, out) = cli(
        &b,
        &["registry", "list", "--json"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    let json: Value = serde_json::from_str(&out).expect(&out);
    assert!(ok && json["pendingRequests"].as_array().unwrap().len() == 2);

    let (ok, out) = cli(
        &b,
        &["registry", "confirm", "gauge-1", "--code", "WRONG123"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(!ok && out.contains("pairing_code_mismatch"), "{out}");
    let (ok, out) = cli(
        &b,
        &[
            "registry",
            "confirm",
            "gauge-1",
            "--role",
            "minimum-access",
            "--code",
            &code.to_lowercase(),
        ],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(ok && out.contains("confirmed `gauge-1`"), "{out}");
    let fetched = register_password(&device, "gauge-1", "gauge-secret").await;
    assert_eq!(fetched.status, 201, "{}", fetched.body);
    let user = Api::login(b.http_addr(), "gauge-1", "gauge-secret").await;
    let me = user.get("/api/users/me").await;
    assert_eq!(me.body["roles"][0]["name"], "minimum-access");
    let (ok, out) = cli(
        &b,
        &["registry", "confirm", "nobody"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(!ok && out.contains("404"), "{out}");

    // After `gatehouse login`, the stored token.
    let (ok, out) = cli(
        &b,
        &["login", "--user", "admin", "--password-stdin"],
        Some("admin\n"),
        &[],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&b, &["registry", "reject", "gauge-2"], None, &[]);
    assert!(ok && out.contains("rejected `gauge-2`"), "{out}");
    let (ok, out) = cli(
        &b,
        &["registry", "lock"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(ok && out.contains("locked"), "{out}");
    let (ok, out) = cli(
        &b,
        &["registry", "list"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(
        ok && out.starts_with("locked") && out.contains("no requests"),
        "{out}"
    );
    let (ok, out) = cli(
        &b,
        &["registry", "list", "--server", "ftp://127.0.0.1:1"],
        None,
        &[("GATEHOUSE_TOKEN", token)],
    );
    assert!(
        !ok && out.contains("not an http:// or https:// URL"),
        "{out}"
    );
    b.stop().await;
}
