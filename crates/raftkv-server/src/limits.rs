//! Per-connection request rate limit: a token bucket per client address and
//! port (one TCP connection). Buckets idle for a while are forgotten so the
//! table stays small.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FORGET_AFTER: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;

pub struct RateLimiter {
    rate_per_sec: f64,
    buckets: Mutex<HashMap<SocketAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32) -> RateLimiter {
        assert!(rate_per_sec > 0, "rate limit must be positive");
        RateLimiter {
            rate_per_sec: f64::from(rate_per_sec),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from this connection's bucket; false when empty.
    pub fn admit(&self, conn: SocketAddr) -> bool {
        self.admit_at(conn, Instant::now())
    }

    fn admit_at(&self, conn: SocketAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("poisoned");
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| now.duration_since(b.last) < FORGET_AFTER);
        }
        let bucket = buckets.entry(conn).or_insert(Bucket {
            tokens: self.rate_per_sec,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.rate_per_sec);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_bursts_and_refills() {
        let limiter = RateLimiter::new(10);
        let conn: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.admit_at(conn, t0));
        }
        assert!(
            !limiter.admit_at(conn, t0),
            "the 11th request in the same instant is refused"
        );
        assert!(
            limiter.admit_at(other, t0),
            "another connection has its own bucket"
        );
        assert!(
            limiter.admit_at(conn, t0 + Duration::from_millis(150)),
            "tokens refill over time"
        );
    }
}
