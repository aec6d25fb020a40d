//! CPU and memory sampling from /proc, and latency percentiles.

use std::time::Instant;

/// Clock ticks per second for utime/stime in /proc/PID/stat.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 on every Linux configuration in practice.
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds (user + system) that process `pid` (or this process when
/// `None`) has used, all threads included.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; fields after its ')'
    // start at field 3 (state). utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Resident set size of `pid` in bytes (VmRSS in /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A point in time with both processes' CPU counters.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    tool_cpu: f64,
    broker_cpu: Option<f64>,
}

impl Sample {
    pub fn take(broker: Option<u32>) -> Sample {
        Sample {
            at: Instant::now(),
            tool_cpu: cpu_seconds(None).unwrap_or(0.0),
            broker_cpu: broker.and_then(|pid| cpu_seconds(Some(pid))),
        }
    }
}

/// What happened between two samples.
pub struct Interval {
    pub secs: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub tool_cpu: f64,
    pub broker_cpu: Option<f64>,
    /// Broker CPU seconds used in the interval.
    pub broker_cpu_secs: Option<f64>,
}

impl Interval {
    pub fn between(a: &Sample, b: &Sample) -> Interval {
        let secs = (b.at - a.at).as_secs_f64().max(1e-9);
        let broker_cpu_secs = match (a.broker_cpu, b.broker_cpu) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        };
        Interval {
            secs,
            tool_cpu: (b.tool_cpu - a.tool_cpu) / secs,
            broker_cpu: broker_cpu_secs.map(|c| c / secs),
            broker_cpu_secs,
        }
    }

    /// The common fields of a result line for `count` events.
    pub fn fields(&self, count: u64) -> String {
        let mut out = format!(
            "msgs={count} secs={:.3} rate={:.1}",
            self.secs,
            count as f64 / self.secs
        );
        match (self.broker_cpu, self.broker_cpu_secs) {
            (Some(share), Some(cpu)) => {
                let per = if cpu > 0.0 { count as f64 / cpu } else { 0.0 };
                out.push_str(&format!(" broker_cpu={share:.3}"));
                out.push_str(&format!(" tool_cpu={:.3}", self.tool_cpu));
                out.push_str(&format!(" per_broker_cpu_sec={per:.1}"));
            }
            _ => out.push_str(&format!(" tool_cpu={:.3}", self.tool_cpu)),
        }
        out
    }
}

/// p50/p99/max of latencies in microseconds (sorts `v`).
pub fn percentiles(v: &mut [u32]) -> (u32, u32, u32) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99), v[v.len() - 1])
}
