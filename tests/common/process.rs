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

pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    /// Runs `gatehouse serve --config CONFIG` and waits until `addr`
    /// accepts connections. `GATEHOUSE_TEST_LOGS=1` shows its log.
    pub fn start(config: &Path, addr: SocketAddr) -> Binary {
        let logs = std::env::var_os("GATEHOUSE_TEST_LOGS").is_some();
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("CYBUS_BROKER_USE_MUTUAL_TLS")
            .stdout(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::null())
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
