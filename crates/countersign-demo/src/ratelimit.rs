//! A token bucket per key (a signed-in user's subject for `POST /api/sign`).
//!
//! The table stays small: a bucket that has refilled is the same as no bucket, so
//! full buckets are swept out at most once a minute, and a new key never takes the
//! table past its cap ([`DEFAULT_MAX_KEYS`]): full buckets go first, then the half
//! used longest ago (those keys start again from a full bucket).

use std::collections::HashMap;
use std::sync::Mutex;

/// Most keys a limiter holds by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Seconds between sweeps of full buckets.
const SWEEP_EVERY_SECS: u64 = 60;

#[derive(Debug, Default)]
struct Buckets {
    /// Tokens left and the Unix second they were counted at, per key.
    by_key: HashMap<String, (f64, u64)>,
    next_sweep: u64,
}

/// Token buckets: `burst` tokens, refilled at `per_minute` per minute.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    max_keys: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// A limiter; both numbers must be positive.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            max_keys: DEFAULT_MAX_KEYS,
            buckets: Mutex::default(),
        }
    }

    /// The same limiter holding at most `max_keys` keys (at least 2).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(2);
        self
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.by_key.len())
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one token for `key` at `now`; `Err(seconds to wait)` if none is left.
    pub fn take(&self, key: &str, now: u64) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(1);
        };
        let (burst, per_sec) = (self.burst, self.per_sec);
        let refilled = |&(tokens, at): &(f64, u64)| {
            (tokens + now.saturating_sub(at) as f64 * per_sec).min(burst)
        };
        let full_sweep_due = now >= buckets.next_sweep;
        let new_key_at_cap =
            !buckets.by_key.contains_key(key) && buckets.by_key.len() >= self.max_keys;
        if full_sweep_due || new_key_at_cap {
            buckets.by_key.retain(|_, b| refilled(b) < burst);
            buckets.next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
        }
        if new_key_at_cap && buckets.by_key.len() >= self.max_keys {
            let mut times: Vec<u64> = buckets.by_key.values().map(|&(_, at)| at).collect();
            let middle = times.len() / 2;
            let (_, cutoff, _) = times.select_nth_unstable(middle);
            let cutoff = *cutoff;
            buckets.by_key.retain(|_, &mut (_, at)| at > cutoff);
        }
        let bucket = buckets.by_key.entry(key.to_owned()).or_insert((burst, now));
        bucket.0 = refilled(bucket);
        bucket.1 = now.max(bucket.1);
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.0) / per_sec).ceil().max(1.0) as u64)
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

    #[test]
    fn the_table_is_swept_and_capped() {
        let r = RateLimiter::new(2, 60).with_max_keys(1000);
        // Keys with tokens spent stay until they refill...
        for i in 0..10_000u32 {
            let _ = r.take(&format!("user-{i}"), 100 + u64::from(i / 100));
            assert!(r.len() <= 1000, "{} keys after {i}", r.len());
        }
        // ... and a sweep after they refilled empties the table.
        let _ = r.take("late", 10_000);
        assert_eq!(r.len(), 1);
        // An evicted key starts from a full bucket; a kept one keeps its count.
        assert!(r.take("late", 10_000).is_ok());
        assert_eq!(r.take("late", 10_000), Err(1));
    }
}
