//! `gatehouse import mosquitto` with files written by Debian's mosquitto
//! tools: a password file from `mosquitto_passwd` (`$7$` PBKDF2 and `$6$`
//! SHA-512), an ACL file, and a dynamic-security JSON that a real
//! mosquitto broker saved after `mosquitto_ctrl dynsec` commands. Users
//! then log in with `mosquitto_pub` and their original passwords, their
//! ACLs hold, and the hash becomes argon2id after the first login.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test.sh installs mosquitto)"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// `mosquitto_pub -q 1` as `user`; true when the broker accepted it.
async fn publishes(port: u16, user: &str, password: &str, topic: &str) -> bool {
    let port = port.to_string();
    let (status, out) = run_cmd(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-q",
            "1",
            "-u",
            user,
            "-P",
            password,
            "-t",
            topic,
            "-m",
            "x",
        ],
        Duration::from_secs(5),
    )
    .await;
    status == Some(0) && !out.contains("not authorised") && !out.contains("Not authorized")
}

/// The dynamic-security plugin shipped with Debian's mosquitto.
fn dynsec_plugin() -> String {
    for dir in std::fs::read_dir("/usr/lib").unwrap().flatten() {
        let candidate = dir.path().join("mosquitto_dynamic_security.so");
        if candidate.exists() {
            return candidate.display().to_string();
        }
    }
    panic!("mosquitto_dynamic_security.so not found (install Debian's mosquitto)");
}

/// A dynamic-security file as a running mosquitto saves it.
fn write_dynsec(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("dynamic-security.json");
    sh(
        "mosquitto_ctrl",
        &[
            "dynsec",
            "init",
            file.to_str().unwrap(),
            "dsadmin",
            "dsadmin-pass",
        ],
    );
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\nplugin {}\nplugin_opt_config_file {}\n",
            dynsec_plugin(),
            file.display()
        ),
    )
    .unwrap();
    let mut mosquitto = Command::new("mosquitto")
        .args(["-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(([127, 0, 0, 1], port).into());
    let port = port.to_string();
    let ctrl = |args: &[&str]| {
        let mut all = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "dsadmin",
            "-P",
            "dsadmin-pass",
            "dynsec",
        ];
        all.extend_from_slice(args);
        sh("mosquitto_ctrl", &all);
    };
    ctrl(&["createRole", "plant-writer"]);
    ctrl(&[
        "addRoleACL",
        "plant-writer",
        "publishClientSend",
        "plant/#",
        "allow",
    ]);
    ctrl(&[
        "addRoleACL",
        "plant-writer",
        "subscribePattern",
        "plant/#",
        "allow",
    ]);
    ctrl(&[
        "addRoleACL",
        "plant-writer",
        "publishClientSend",
        "plant/secret",
        "deny",
    ]);
    ctrl(&["createClient", "sensor-7", "-p", "dyn-pass-7"]);
    ctrl(&["createGroup", "plant"]);
    ctrl(&["addGroupRole", "plant", "plant-writer"]);
    ctrl(&["addGroupClient", "plant", "sensor-7"]);
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("sensor-7") && text.contains("plant-writer"),
        "{text}"
    );
    file
}

#[tokio::test]
async fn mosquitto_users_log_in_with_their_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let p = passwd.to_str().unwrap();
    sh("mosquitto_passwd", &["-c", "-b", p, "alice", "alice-pw-1"]);
    sh(
        "mosquitto_passwd",
        &["-H", "sha512", "-b", p, "bob", "bob-pw-22"],
    );
    sh("mosquitto_passwd", &["-b", p, "zz", "too-short-name"]);
    let text = std::fs::read_to_string(&passwd).unwrap();
    assert!(
        text.contains("alice:$7$") && text.contains("bob:$6$"),
        "{text}"
    );
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic read public/#\n\nuser alice\ntopic readwrite alice/#\ntopic deny alice/secret\n\nuser bob\ntopic write bob/in\n\npattern read devices/%u/#\n",
    )
    .unwrap();
    let dynsec = write_dynsec(dir.path());

    let port = free_port();
    let config = write_config(dir.path(), port, "periodic");
    let out = gatehouse_run(
        &config,
        &[
            "import",
            "mosquitto",
            "--passwd",
            p,
            "--acl",
            acl.to_str().unwrap(),
            "--dynsec",
            dynsec.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for needle in [
        "alice",
        "bob",
        "sensor-7",
        "mosquitto-patterns",
        "plant-writer",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    // What could not be mapped is reported.
    for needle in ["`zz`", "flattened", "deny always wins"] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    // A second run changes nothing.
    let again = gatehouse_run(&config, &["import", "mosquitto", "--passwd", p], None, &[]);
    assert!(
        again.stdout.contains("created 0 user(s)"),
        "{}",
        again.stdout
    );

    let addr = ([127, 0, 0, 1], port).into();
    let _broker = Binary::start(&config, addr);
    // Original passwords, through mosquitto_pub; ACLs as in mosquitto.
    assert!(publishes(port, "alice", "alice-pw-1", "alice/x").await);
    assert!(!publishes(port, "alice", "alice-pw-2", "alice/x").await);
    assert!(!publishes(port, "alice", "alice-pw-1", "alice/secret").await);
    assert!(!publishes(port, "alice", "alice-pw-1", "bob/in").await);
    assert!(publishes(port, "bob", "bob-pw-22", "bob/in").await);
    assert!(publishes(port, "sensor-7", "dyn-pass-7", "plant/line-1").await);
    assert!(!publishes(port, "sensor-7", "dyn-pass-7", "plant/secret").await);
    assert!(!publishes(port, "sensor-7", "wrong", "plant/line-1").await);
    // pattern read devices/%u/#: alice may subscribe to her own devices only.
    let subscribe = |filter: &'static str| {
        let port = port.to_string();
        async move {
            let args = [
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "5",
                "-u",
                "alice",
                "-P",
                "alice-pw-1",
                "-t",
                filter,
                "-W",
                "1",
            ];
            run_cmd("mosquitto_sub", &args, Duration::from_secs(5))
                .await
                .1
        }
    };
    let own = subscribe("devices/alice/#").await;
    assert!(!own.contains("denied"), "{own}");
    let other = subscribe("devices/bob/#").await;
    assert!(other.contains("denied"), "{other}");

    // After a successful login the hash is argon2id (the login still works).
    drop(_broker);
    let deadline = Instant::now() + Duration::from_secs(5);
    let hash = loop {
        let cfg = gatehouse::Config::load(&config).unwrap();
        let store = gatehouse::broker::open_store(&cfg).unwrap();
        let directory = gatehouse::broker::open_directory(&cfg, store.clone()).unwrap();
        let hash = directory.user("alice").unwrap().password_hash.unwrap();
        store.close();
        if hash.starts_with("$argon2id$") || Instant::now() > deadline {
            break hash;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let _broker = Binary::start(&config, addr);
    assert!(publishes(port, "alice", "alice-pw-1", "alice/x").await);
}
