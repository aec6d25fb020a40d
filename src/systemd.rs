//! systemd's notify protocol (`Type=notify`), in the few lines it takes:
//! datagrams such as `READY=1` to the socket named by `$NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace), and `WATCHDOG=1` at
//! half of `$WATCHDOG_USEC` when the unit sets `WatchdogSec`. Without
//! those variables every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one state line (`READY=1`, `STOPPING=1`, `STATUS=...`); errors
/// are logged, never fatal: the broker runs the same without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("systemd notification `{state}` failed: {e}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// Ready: every listener bound, the store open.
pub fn notify_ready() {
    notify(&format!(
        "READY=1\nSTATUS=accepting connections\nMAINPID={}",
        std::process::id()
    ));
}

/// The watchdog interval asked of this process: half of `WATCHDOG_USEC`
/// (when `WATCHDOG_PID`, if set, is ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog from a runtime task, so a wedged runtime stops the
/// pings and systemd restarts the broker.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_interval()?;
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            notify("WATCHDOG=1");
        }
    }))
}
