//! Token-bucket rate limits per key (a user name or an address), for
//! logins, MFA codes and failed token checks: a burst of `per_minute`
//! attempts, refilled evenly over a minute.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Keys tracked before full (idle) buckets are forgotten.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        bucket.last = now;
    }

    /// Takes one attempt for `key`; `Err(retry_after)` when none is left.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                b.tokens + elapsed * self.per_minute / 60.0 < self.per_minute
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.per_minute,
            last: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing * 60.0 / self.per_minute)
                .max(Duration::from_secs(1)))
        }
    }

    /// Whether `key` has an attempt left, without taking it.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        match buckets.get_mut(key) {
            None => Ok(()),
            Some(bucket) => {
                self.refill(bucket, now);
                if bucket.tokens >= 1.0 {
                    Ok(())
                } else {
                    let missing = 1.0 - bucket.tokens;
                    Err(Duration::from_secs_f64(missing * 60.0 / self.per_minute)
                        .max(Duration::from_secs(1)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_key() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            limiter.take("a").unwrap();
        }
        let retry = limiter.take("a").unwrap_err();
        assert!(retry >= Duration::from_secs(1) && retry <= Duration::from_secs(20));
        assert!(limiter.check("a").is_err());
        limiter.take("b").unwrap();
    }
}
