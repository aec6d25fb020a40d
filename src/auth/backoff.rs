//! Slows repeated authentication failures, per username and per source
//! address: each failure doubles the delay before the next attempt is
//! answered, up to a maximum; a success or a quiet period resets it.

use dashmap::DashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

pub struct Backoff {
    base: Duration,
    max: Duration,
    by_user: DashMap<String, Failures>,
    by_addr: DashMap<IpAddr, Failures>,
}

/// Entries beyond this are pruned of stale ones, bounding memory under a
/// flood of distinct usernames.
const MAX_TRACKED: usize = 100_000;

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            by_user: DashMap::new(),
            by_addr: DashMap::new(),
        }
    }

    fn delay_for(&self, f: Option<Failures>) -> Duration {
        let Some(f) = f else { return Duration::ZERO };
        if f.count == 0 || f.last.elapsed() > self.max * 4 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (f.count - 1).min(16);
        (self.base * factor).min(self.max)
    }

    /// How long to wait before answering this attempt.
    pub fn delay(&self, username: &str, addr: IpAddr) -> Duration {
        let user = self.by_user.get(username).map(|f| *f);
        let addr = self.by_addr.get(&addr).map(|f| *f);
        self.delay_for(user).max(self.delay_for(addr))
    }

    pub fn failed(&self, username: &str, addr: IpAddr) {
        if self.by_user.len() > MAX_TRACKED || self.by_addr.len() > MAX_TRACKED {
            let stale = self.max * 4;
            self.by_user.retain(|_, f| f.last.elapsed() < stale);
            self.by_addr.retain(|_, f| f.last.elapsed() < stale);
        }
        let bump = |f: &mut Failures| {
            if f.last.elapsed() > self.max * 4 {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = Instant::now();
        };
        let fresh = Failures {
            count: 0,
            last: Instant::now(),
        };
        bump(&mut self.by_user.entry(username.to_owned()).or_insert(fresh));
        bump(&mut self.by_addr.entry(addr).or_insert(fresh));
    }

    pub fn succeeded(&self, username: &str) {
        self.by_user.remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets_on_success() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(b.delay("u", ip), Duration::ZERO);
        b.failed("u", ip);
        assert_eq!(b.delay("u", ip), Duration::from_millis(100));
        b.failed("u", ip);
        assert_eq!(b.delay("u", ip), Duration::from_millis(200));
        b.failed("u", ip);
        assert_eq!(b.delay("u", ip), Duration::from_millis(350));
        // Another username from the same address is slowed too.
        assert_eq!(b.delay("v", ip), Duration::from_millis(350));
        b.succeeded("u");
        assert_eq!(b.delay("u", [10, 0, 0, 1].into()), Duration::ZERO);
    }
}
