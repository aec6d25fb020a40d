//! The command line against a running broker (the real binary, its admin
//! API, real MQTT clients): login and the stored token, users, roles,
//! clients, sessions, `--json`, exit codes, MFA at login, logout; and what
//! every command shares: `check-config`, a closed standard output, the
//! `[listeners]` section.

mod common;

use common::api::{Api, step_now, totp};
use common::*;
use gatehouse::protocol::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config with MQTT and the admin API on free loopback ports.
fn config(dir: &Path) -> (PathBuf, SocketAddr, SocketAddr) {
    let (mqtt, http) = (free_port(), free_port());
    let path = dir.join("broker.toml");
    let text = format!(
        "[listeners]\nmqtt = \"127.0.0.1:{mqtt}\"\nhttp = \"127.0.0.1:{http}\"\n\n[storage]\ndir = \"{}\"\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    (
        path,
        ([127, 0, 0, 1], mqtt).into(),
        ([127, 0, 0, 1], http).into(),
    )
}

fn json_of(out: &CliOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test]
async fn administers_a_running_broker_through_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mqtt, http) = config(dir.path());
    let _broker = Binary::start(&config, mqtt);
    wait_port(http);
    let run = |args: &[&str], stdin: Option<&str>| gatehouse_run(&config, args, stdin, &[]);

    // The store is in use: the CLI needs a login (exit 4).
    let out = run(&["user", "list"], None);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    let out = run(
        &["login", "--user", "admin", "--password-stdin"],
        Some("wrong\n"),
    );
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("invalid_credentials"), "{}", out.stderr);
    let out = run(
        &["login", "--user", "admin", "--password-stdin"],
        Some("admin\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // The token is kept 0600 in a 0700 directory, and no password with it.
    use std::os::unix::fs::PermissionsExt;
    let file = dir.path().join("xdg/gatehouse/login.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["server"], format!("http://{http}"));
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("\"admin\\n")
    );
    let token = stored["token"].as_str().unwrap().to_owned();

    // A user with a role, applied to MQTT at once.
    for args in [
        &["role", "add", "sensors"][..],
        &[
            "role",
            "grant",
            "sensors",
            "--context",
            "mqtt",
            "--resource",
            "sensors/%u/#",
            "--operation",
            "readWrite",
        ],
    ] {
        let out = run(args, None);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
    }
    let out = run(
        &[
            "user",
            "add",
            "dev-1",
            "--password-stdin",
            "--role",
            "sensors",
        ],
        Some("secret-1\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let users = json_of(&run(&["user", "list", "--json"], None));
    let dev = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "dev-1")
        .expect("dev-1 listed");
    assert_eq!(dev["roles"][0]["name"], "sensors");
    let table = run(&["user", "list"], None).stdout;
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    let auth = ["-V", "5", "-u", "dev-1", "-P", "secret-1"];
    let (status, out) = mosquitto_roundtrip(
        mqtt.port(),
        "sensors/dev-1/#",
        "sensors/dev-1/t",
        "hello",
        &auth,
        &auth,
    )
    .await;
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("hello"), "{out}");
    let port = mqtt.port().to_string();
    let (status, out) = run_cmd(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-u",
            "dev-1",
            "-P",
            "secret-1",
            "-t",
            "other/#",
            "-W",
            "2",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(
        out.contains("subscription requests were denied"),
        "subscription outside the ACL: {status:?} {out}"
    );

    // Exit codes: exists 7, not found 6.
    let out = run(
        &["user", "add", "dev-1", "--password-stdin"],
        Some("secret-1\n"),
    );
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    let out = run(&["user", "del", "ghost"], None);
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    let out = run(&["user", "add", "weak", "--password-stdin"], Some("abc\n"));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("at least 5"), "{}", out.stderr);

    // Connected clients and sessions: listed, kicked, removed.
    let (mut client, ack) =
        users::login(mqtt, ProtocolVersion::V5, "dev-1-a", "dev-1", "secret-1").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let clients = json_of(&run(&["clients", "list", "--json"], None));
    let entry = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "dev-1-a")
        .expect("listed");
    assert_eq!(entry["username"], "dev-1");
    assert_eq!(entry["listener"], "mqtt");
    // A client id is the client's text (MQTT allows control characters in
    // it): the table escapes them, so it cannot paint rows of its own.
    let evil = "evil\n\x1b[2Jfake-row  dev-9  mqtt\u{202e}";
    let (evil_client, ack) =
        users::login(mqtt, ProtocolVersion::V5, evil, "dev-1", "secret-1").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let out = run(&["clients", "list"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        !out.stdout.contains('\x1b') && !out.stdout.contains('\u{202e}'),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().all(|l| !l.starts_with("fake-row")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("evil\\n\\u{1b}[2Jfake-row  dev-9  mqtt\\u{202e}"),
        "{}",
        out.stdout
    );
    let listed = json_of(&run(&["clients", "list", "--json"], None));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["clientId"] == evil)
    );
    evil_client.disconnect().await;
    let out = run(&["clients", "kick", "dev-1-a"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    match client.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    drop(client);
    // Once the connection has let go, the client is no longer there (6).
    let mut code = None;
    for _ in 0..40 {
        code = run(&["clients", "kick", "dev-1-a"], None).code;
        if code == Some(6) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, Some(6));
    let mut c = RawClient::tcp(mqtt, ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "keeper", false);
    connect.properties.session_expiry_interval = Some(3600);
    connect.username = Some("dev-1".into());
    connect.password = Some(bytes::Bytes::from_static(b"secret-1"));
    assert_eq!(c.connect_with(connect).await.reason, ReasonCode::SUCCESS);
    c.disconnect().await;
    let out = run(&["sessions", "list"], None);
    assert!(out.stdout.contains("keeper"), "{}", out.stdout);
    let out = run(&["sessions", "rm", "keeper"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let sessions = json_of(&run(&["sessions", "list", "--json"], None));
    assert!(!sessions.to_string().contains("keeper"), "{sessions}");

    // A stored token goes only to the server it came from.
    let elsewhere = format!("http://127.0.0.1:{}", free_port());
    let out = run(&["--server", &elsewhere, "user", "list"], None);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    // GATEHOUSE_TOKEN wins, and a bad one is refused.
    let out = gatehouse_run(
        &config,
        &["user", "list"],
        None,
        &[("GATEHOUSE_TOKEN", "x.y.z")],
    );
    assert_eq!(out.code, Some(4), "{}", out.stderr);

    // Logout revokes the token.
    let out = run(&["logout"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!file.exists());
    let api = Api::new(http).with_token(&token);
    assert_eq!(api.get("/api/users/me").await.status, 401);
    let out = run(&["user", "list"], None);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
}

#[tokio::test]
async fn login_asks_for_the_mfa_code() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mqtt, http) = config(dir.path());
    let _broker = Binary::start(&config, mqtt);
    wait_port(http);
    let admin = Api::login(http, "admin", "admin").await;
    admin
        .create_user(json!({"username": "alice", "password": "alice-pass"}))
        .await;
    let alice = Api::login(http, "alice", "alice-pass").await;
    let enrolled = alice.post("/api/mfa/enroll", json!({})).await;
    let secret = common::api::base32_decode(enrolled.body["secret"].as_str().unwrap());
    let step = step_now();
    let confirmed = alice
        .post("/api/mfa/confirm", json!({"otp": totp(&secret, step)}))
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let run = |stdin: &str| {
        gatehouse_run(
            &config,
            &["login", "--user", "alice", "--password-stdin"],
            Some(stdin),
            &[],
        )
    };
    let out = run("alice-pass\n");
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("MFA code"), "{}", out.stderr);
    let out = run("alice-pass\n000000\n");
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    // A code of a later step (the confirmation used this one).
    let out = run(&format!("alice-pass\n{}\n", totp(&secret, step + 1)));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // On a terminal (a pseudo-terminal here) neither the password nor the
    // code is echoed (a backup code: a TOTP code of a later step would
    // depend on where in its 30 s the test runs).
    let code = confirmed.body["backupCodes"][0]
        .as_str()
        .expect("enrolment shows backup codes")
        .to_owned();
    let screen = on_a_terminal(
        &config,
        &["login", "--user", "alice"],
        &[("Password", "alice-pass"), ("MFA code", &code)],
    );
    assert!(screen.contains("MFA code"), "{screen}");
    assert!(
        !screen.contains("alice-pass") && !screen.contains(&code),
        "echoed: {screen}"
    );
    let out = gatehouse_run(&config, &["user", "list"], None, &[]);
    // alice may not list users: 403 is exit 5.
    assert_eq!(out.code, Some(5), "{}", out.stderr);
}

/// Runs `gatehouse ARGS --config CONFIG` on a pseudo-terminal (Python's
/// `pty`), answering each prompt that contains `needle` with `answer`;
/// returns everything the terminal showed.
fn on_a_terminal(config: &Path, args: &[&str], answers: &[(&str, &str)]) -> String {
    const SCRIPT: &str = r#"
import json, os, pty, sys
argv, answers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
screen = b""
def more():
    global screen
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return False
    screen += chunk
    return bool(chunk)
for needle, answer in answers:
    while needle.encode() not in screen:
        if not more():
            break
    os.write(fd, answer.encode() + b"\n")
while more():
    pass
os.waitpid(pid, 0)
sys.stdout.write(screen.decode(errors="replace"))
"#;
    let mut argv = vec![env!("CARGO_BIN_EXE_gatehouse").to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.extend(["--config".to_owned(), config.display().to_string()]);
    let answers: Vec<[&str; 2]> = answers.iter().map(|(n, a)| [*n, *a]).collect();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &serde_json::to_string(&argv).unwrap(),
            &serde_json::to_string(&answers).unwrap(),
        ])
        .env("XDG_CONFIG_HOME", config.parent().unwrap().join("xdg"))
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("GATEHOUSE_SERVER")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn check_config_prints_toml_and_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[listeners]\nmqtt = \"127.0.0.1:1883\"\n\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let out = gatehouse_run(&good, &["check-config"], None, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let effective = gatehouse::Config::parse(&out.stdout).expect("TOML that reads back");
    assert_eq!(effective.listeners.open().len(), 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("[listeners]\nmqtt = \"127.0.0.1:1883\"\n\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("format = \"json\""), "{}", out.stdout);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_packet_size = 3\nmax_inflight = 0\n").unwrap();
    let out = gatehouse_run(&bad, &["check-config"], None, &[]);
    assert_eq!(out.code, Some(2));
    for key in ["limits.max_packet_size", "limits.max_inflight"] {
        assert!(out.stderr.contains(key), "{key}: {}", out.stderr);
    }
}

#[test]
fn a_listeners_section_opens_only_what_it_names_in_the_parsed_config() {
    use gatehouse::Config;
    let c = Config::parse("[listeners]\nmqtt = \"127.0.0.1:1883\"\n").unwrap();
    assert_eq!(
        c.listeners.open(),
        vec![("mqtt", "127.0.0.1:1883".parse().unwrap())]
    );
    assert_eq!(Config::parse("").unwrap().listeners.open().len(), 6);
    let c = Config::parse("[listeners]\nmqtt = \"\"\nws = \"0.0.0.0:8083\"\n").unwrap();
    assert_eq!(
        c.listeners.open(),
        vec![("ws", "0.0.0.0:8083".parse().unwrap())]
    );
    // The admin API alone is not a broker.
    let err = Config::parse("[listeners]\nhttp = \"127.0.0.1:8080\"\n").unwrap_err();
    assert!(err.to_string().contains("`listeners`"), "{err}");
}

/// `gatehouse check-config | head`: the reader goes away; no panic, exit 0.
#[test]
fn a_closed_standard_output_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    for command in ["check-config", "user list", "role list --json"] {
        let script = format!(
            "set -o pipefail; for i in 1 2 3; do '{bin}' {command} --config '{}' | true || exit $?; done",
            config.display()
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{command}: {:?} {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
    }
    // The client registry lives in a running broker's memory.
    let out = gatehouse_run(&config, &["registry", "list"], None, &[]);
    assert_eq!(out.code, Some(8), "{}", out.stderr);
    assert!(
        out.stderr.contains("no broker is running"),
        "{}",
        out.stderr
    );
}

/// A `[listeners]` section opens only what it names, and the start-up log
/// lists every open port.
#[tokio::test]
async fn listeners_section_opens_only_what_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "periodic");
    let log = dir.path().join("broker.log");
    let file = std::fs::File::create(&log).unwrap();
    let broker = Binary::start_with(&config, ([127, 0, 0, 1], port).into(), &[], file.into());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("open ports") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = text
        .lines()
        .find(|l| l.contains("open ports"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.ends_with(&format!("open ports: mqtt 127.0.0.1:{port}")),
        "{line}"
    );
    drop(broker);
}

/// `--server https://...`: verified against the broker's own CA (found
/// through `[tls] dir`, or given with `--ca` / `GATEHOUSE_CA`); the stored
/// login remembers it; a certificate from another CA is refused.
#[tokio::test]
async fn the_cli_speaks_https_verified_by_the_brokers_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, https) = (free_port(), free_port());
    let certs = dir.path().join("certs");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[listeners]\nmqtt = \"127.0.0.1:{mqtt}\"\nhttps = \"127.0.0.1:{https}\"\n\n[storage]\ndir = \"{}\"\n\n[tls]\ndir = \"{}\"\n",
            dir.path().join("data").display(),
            certs.display()
        ),
    )
    .unwrap();
    let _broker = Binary::start(&config, ([127, 0, 0, 1], mqtt).into());
    wait_port(([127, 0, 0, 1], https).into());
    let server = format!("https://127.0.0.1:{https}");
    let run = |args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]| {
        gatehouse_run(&config, args, stdin, env)
    };

    // A CA that did not sign the broker's certificate: refused (exit 3).
    let other = dir.path().join("other-ca.crt");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=someone else"])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let login = [
        "login",
        "--server",
        &server,
        "--user",
        "admin",
        "--password-stdin",
    ];
    let out = run(
        &login,
        Some("admin\n"),
        &[("GATEHOUSE_CA", other.to_str().unwrap())],
    );
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    // Not a certificate at all.
    let out = run(
        &[&login[..], &["--ca", "/dev/null"]].concat(),
        Some("admin\n"),
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);

    // The broker's CA, from the configuration's `[tls] dir`.
    let out = run(&login, Some("admin\n"), &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let stored: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("xdg/gatehouse/login.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["server"], server.as_str());
    assert_eq!(stored["ca"], certs.join("ca.crt").to_str().unwrap());
    // Later commands use the stored server and CA.
    let out = run(&["user", "list", "--json"], None, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        json_of(&out).to_string().contains("\"admin\""),
        "{}",
        out.stdout
    );
    let out = run(&["logout"], None, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// The command line on a stopped broker goes through the same services as
/// the API: a password changed there ends the user's OAuth grants (their
/// refresh and access tokens are refused after the restart).
#[tokio::test]
async fn a_password_changed_offline_ends_oauth_grants() {
    use common::oauth::{confidential, curl};
    let dir = tempfile::tempdir().unwrap();
    let (config, mqtt, http) = config(dir.path());
    let run = |args: &[&str], stdin: Option<&str>| gatehouse_run(&config, args, stdin, &[]);
    let token_url = format!("http://{http}/oauth/token");
    let broker = Binary::start(&config, mqtt);
    wait_port(http);
    let admin = Api::login(http, "admin", "admin").await;
    admin
        .create_user(json!({"username": "olga", "password": "olga-pw-00001"}))
        .await;
    let app = confidential(
        &admin,
        "app",
        "http://127.0.0.1:9/cb",
        json!("global"),
        json!("unlimited"),
    )
    .await;
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        "grant_type=password&username=olga&password=olga-pw-00001",
        &token_url,
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    drop(broker);

    let out = run(
        &["user", "passwd", "olga", "--password-stdin"],
        Some("olga-pw-00002\nolga-pw-00002\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let _broker = Binary::start(&config, mqtt);
    wait_port(http);
    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let r = curl(&["-u", &app.basic(), "-d", &body, &token_url]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);
    let me = Api::new(http)
        .with_token(&access)
        .get("/api/users/me")
        .await;
    assert_eq!(me.status, 401, "{}", me.body);
}
