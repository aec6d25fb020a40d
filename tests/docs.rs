//! The commands the documentation shows, run: the README's quick start as
//! written (on free ports), and every block of docs/operations.md in a
//! scratch root (`/etc`, `/usr/local/bin`, `/var/...` moved under it),
//! with `sudo` running the command itself and `systemctl`/`journalctl`
//! standing in for systemd: they start, stop and restart the installed
//! broker with the installed unit's command line, and show its log.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The ```sh block right after the line `marker`.
fn block_after(text: &str, marker: &str) -> String {
    let rest = &text[text.find(marker).unwrap_or_else(|| panic!("no {marker}"))..];
    let start = rest.find("```sh\n").expect("a block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("its end");
    rest[start..start + end].to_owned()
}

/// Runs `script` with bash in `dir` (own process group, killed after).
fn bash(dir: &Path, script: &str, env: &[(&str, String)]) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("gatehouse");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gatehouse"), &link).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env_remove("GATEHOUSE_SERVER")
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("RUST_LOG")
        .process_group(0);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let group = child.id();
    // Read while it runs; a background `gatehouse serve &` keeps the pipes
    // open after the script ends, so the group is killed at the script's
    // end, not at the pipes' (a failing script would otherwise hang).
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = child.wait().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status();
    let text = stdout.join().unwrap() + &stderr.join().unwrap();
    (status.success(), text)
}

#[test]
fn readme_quick_start_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = block_after(&readme, "<!-- quickstart -->");
    let install = "cargo install --path . --locked";
    assert!(block.starts_with(install), "{block}");
    let (mqtt, http) = (free_port().to_string(), free_port().to_string());
    // The binary under test is already on PATH.
    let script = format!(
        "set -eo pipefail\n:{}",
        &block[install.len()..]
            .replace("1883", &mqtt)
            .replace("8080", &http)
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = bash(dir.path(), &script, &[]);
    assert!(ok, "{out}");
    for needle in [
        "logged in to http://127.0.0.1:",
        "created user sensor-1",
        "sensors/sensor-1/temp 21.5",
        "Not authorized",
        "password of admin changed",
        "CLIENT ID",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

/// Stand-ins for a systemd host, over the scratch root `$ROOT`.
const HOST: &str = r#"
set -eo pipefail
sudo() { "$@"; }
cargo() { mkdir -p target/release && cp "$(command -v gatehouse)" target/release/gatehouse; }
start_broker() {
  # The installed unit's command line, in its working directory.
  local exec
  exec=$(sed -n 's/^ExecStart=//p' "$ROOT/etc/systemd/system/gatehouse.service")
  exec=${exec//\/usr\/local\/bin/$ROOT/usr/local/bin}
  exec=${exec//\/etc\//$ROOT/etc/}
  mkdir -p "$ROOT/var/lib/gatehouse"
  (cd "$ROOT/var/lib/gatehouse" && exec setsid $exec >>"$ROOT/gatehouse.log" 2>&1) &
  echo $! >"$ROOT/gatehouse.pid"
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/api/health" && return 0; sleep 0.1; done
  echo "the broker did not start"; cat "$ROOT/gatehouse.log"; return 1
}
stop_broker() {
  local pid; pid=$(cat "$ROOT/gatehouse.pid")
  kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
systemctl() {
  case "$1" in
    daemon-reload) ;;
    enable) shift; [ "$1" = --now ] && start_broker ;;
    start) start_broker ;;
    stop) stop_broker ;;
    restart) stop_broker; start_broker ;;
    reload) kill -HUP "$(cat "$ROOT/gatehouse.pid")" ;;
    *) echo "systemctl $*: not simulated"; return 1 ;;
  esac
}
journalctl() { cat "$ROOT/gatehouse.log"; }
"#;

#[test]
fn operations_guide_commands_run() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // What a Debian host has before the install.
    for existing in [
        "usr/local/bin",
        "etc/systemd/system",
        "var/lib",
        "var/backups",
    ] {
        std::fs::create_dir_all(root.join(existing)).unwrap();
    }
    // The repository's files the install block names.
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let (mqtt, mqtts, http) = (free_port(), free_port(), free_port());
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/broker.toml"))
        .unwrap()
        .replace(":1883", &format!(":{mqtt}"))
        .replace(":8883", &format!(":{mqtts}"))
        .replace(":8080", &format!(":{http}"))
        .replace(
            "/var/lib/gatehouse",
            &format!("{}/var/lib/gatehouse", root.display()),
        );
    std::fs::write(dist.join("broker.toml"), config).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/dist/gatehouse.service"),
        dist.join("gatehouse.service"),
    )
    .unwrap();
    let env = [
        ("ROOT", root.display().to_string()),
        ("HTTP", http.to_string()),
        // The installed configuration's API (its port is a free one here).
        ("GATEHOUSE_SERVER", format!("http://127.0.0.1:{http}")),
    ];
    let _cleanup = StopBroker(root.join("gatehouse.pid"));
    // Every block is marked; each runs in order, on the same host.
    let mut blocks = 0;
    let mut marker = "";
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if let Some(m) = line
            .strip_prefix("<!-- check: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            marker = m;
            continue;
        }
        if line != "```sh" {
            if !line.trim().is_empty() {
                marker = "";
            }
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let block = block.join("\n");
        assert!(
            !marker.is_empty(),
            "a block without a check marker:\n{block}"
        );
        let mut text = block
            .replace("/etc/", "$ROOT/etc/")
            .replace("/usr/local/bin", "$ROOT/usr/local/bin")
            .replace("/var/backups", "$ROOT/var/backups")
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"));
        if text.contains("$GATEHOUSE_TOKEN") {
            text = format!(
                "export GATEHOUSE_TOKEN=$(sed -n 's/.*\"token\": \"\\(.*\\)\".*/\\1/p' xdg/gatehouse/login.json)\n{text}"
            );
        }
        let script = format!("{HOST}\nmkdir -p \"$ROOT/var/backups\"\n{text}\n");
        let (ok, out) = bash(dir.path(), &script, &env);
        assert!(ok, "block `{marker}`:\n{block}\n{out}");
        blocks += 1;
        match marker {
            "install" => {
                assert!(root.join("usr/local/bin/gatehouse").exists());
                assert!(out.contains("open ports"), "the journal: {out}");
            }
            "run" | "upgrade" => {}
            other => panic!("unknown marker {other}"),
        }
        if block.contains("gatehouse_connections") {
            assert!(
                out.contains("gatehouse_connections{listener=\"mqtt\"}"),
                "{out}"
            );
        }
        if block.contains("gatehouse restore") {
            assert!(out.contains("restored"), "{out}");
        }
        marker = "";
    }
    assert!(blocks >= 6, "{blocks} blocks");
}

/// Stops the scratch host's broker, whatever happened.
struct StopBroker(std::path::PathBuf);

impl Drop for StopBroker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
    }
}

#[test]
fn the_unit_file_is_valid() {
    // scripts/test.sh runs `systemd-analyze verify` on it; here, what the
    // issue asks of it.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/gatehouse.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=gatehouse",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line}");
    }
}
