//! A token bucket per key (a user's subject, or `login:<username>`).

use std::collections::HashMap;
use std::sync::Mutex;

/// Token buckets: `burst` tokens, refilled at `per_minute` per minute.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, u64)>>,
}

impl RateLimiter {
    /// A limiter; both numbers must be positive.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; `Err(seconds to wait)` if none is left.
    pub fn take(&self, key: &str, now: u64) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(1);
        };
        if buckets.len() > 100_000 {
            // Forget full buckets so the map cannot grow without bound.
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + (now.saturating_sub(*at)) as f64 * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled = *tokens + now.saturating_sub(*at) as f64 * self.per_sec;
        *tokens = refilled.min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let r = RateLimiter::new(2, 60);
        assert!(r.take("a", 100).is_ok());
        assert!(r.take("a", 100).is_ok());
        assert_eq!(r.take("a", 100), Err(1));
        assert!(r.take("b", 100).is_ok(), "keys are independent");
        assert!(r.take("a", 101).is_ok(), "one token per second refills");
        assert!(r.take("a", 101).is_err());
    }
}
