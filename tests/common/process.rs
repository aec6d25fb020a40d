//! The `gatehouse` binary as a child process: started on a given config,
//! waited for until it listens, signalled, and killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 10 s) until `addr` accepts connections.
pub fn wait_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    /// Runs `gatehouse serve --config CONFIG` and waits until `addr`
    /// accepts connections. `GATEHOUSE_TEST_LOGS=1` shows its log.
    pub fn start(config: &Path, addr: SocketAddr) -> Binary {
        let logs = std::env::var_os("GATEHOUSE_TEST_LOGS").is_some();
        let stderr = if logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Binary::start_with(config, addr, &[], stderr)
    }

    /// [`Binary::start`] with extra environment and its log (standard
    /// error) sent where the caller says.
    pub fn start_with(
        config: &Path,
        addr: SocketAddr,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Binary {
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("CYBUS_BROKER_USE_MUTUAL_TLS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let binary = Binary { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        binary
    }

    /// Sends a signal, e.g. `"-TERM"` or `"-HUP"`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `broker.toml` in `dir` with MQTT on `port` only (a `[listeners]`
/// section opens only what it names), data in `dir/data`, anonymous
/// clients allowed everywhere.
pub fn write_config(dir: &std::path::Path, port: u16, durability: &str) -> std::path::PathBuf {
    let path = dir.join("broker.toml");
    let text = format!(
        "[listeners]\nmqtt = \"127.0.0.1:{port}\"\n\n[storage]\ndir = \"{}\"\ndurability = \"{durability}\"\n\n[auth]\nallow_anonymous = true\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    // Anonymous test clients may publish and subscribe anywhere.
    let (ok, out) = gatehouse_cli(
        &path,
        &[
            "user",
            "grant",
            "anonymous",
            "--context",
            "mqtt",
            "--resource",
            "#",
            "--operation",
            "readWrite",
        ],
        None,
        &[],
    );
    assert!(ok, "{out}");
    path
}

/// What a command printed and how it exited.
pub struct CliOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `gatehouse ARGS --config CONFIG` with optional stdin and extra env;
/// returns (success, stdout + stderr).
pub fn gatehouse_cli(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (bool, String) {
    let out = gatehouse_run(config, args, stdin, env);
    (out.code == Some(0), out.stdout + &out.stderr)
}

/// Runs `gatehouse ARGS --config CONFIG` in an environment of its own: no
/// settings of the caller's, and the stored login (`gatehouse login`) in
/// `xdg/` beside CONFIG, unless `env` says otherwise.
pub fn gatehouse_run(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> CliOutput {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command.args(args).arg("--config").arg(config);
    for var in [
        "CYBUS_AUTH_PASSWORD_POLICY_RULES",
        "GATEHOUSE_INITIAL_ADMIN_PASSWORD",
        "CYBUS_INITIAL_ADMIN_USER_PASSWORD",
        "CYBUS_ADMIN_USER_ENABLED",
        "GATEHOUSE_SERVER",
        "GATEHOUSE_TOKEN",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    let xdg = config.parent().unwrap().join("xdg");
    command.env("XDG_CONFIG_HOME", &xdg);
    command.envs(env.iter().copied());
    let mut child = command
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
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
