//! Per-user rate limiting of `POST /api/sign`: `governor`'s GCRA (a token bucket kept
//! as one timestamp per key) keyed by the signed-in subject.
//!
//! The table holds only keys that spent tokens lately: a key whose bucket has refilled
//! is the same as no key, and such keys are swept out whenever the table reaches
//! [`SWEEP_AT_KEYS`]. Keys are signed-in subjects, so what stays is bounded by the
//! users who signed within the refill time.

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};
use std::num::NonZeroU32;
use std::time::Duration;

/// The table is swept of refilled keys whenever it holds this many.
pub const SWEEP_AT_KEYS: usize = 10_000;

/// The app's clock (Unix seconds) as a `governor` clock, so the limiter and every
/// other time-dependent rule of the app see the same time (tests move it).
#[derive(Clone)]
struct AppClock(crate::Clock);

impl Clock for AppClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Duration::from_secs((self.0)()).into()
    }
}

/// Token buckets: `burst` tokens, refilled at `per_minute` per minute, per key.
pub struct RateLimiter {
    gcra: Gcra<String, HashMapStateStore<String>, AppClock, NoOpMiddleware<Nanos>>,
    clock: AppClock,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter on `clock`; numbers below 1 count as 1.
    pub fn new(burst: u32, per_minute: u32, clock: crate::Clock) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(at_least_one(per_minute)).allow_burst(at_least_one(burst));
        let clock = AppClock(clock);
        Self {
            gcra: Gcra::hashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.gcra.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.gcra.is_empty()
    }

    /// Takes one token for `key`; `Err(whole seconds to wait)` if none is left.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        if self.gcra.len() >= SWEEP_AT_KEYS {
            self.gcra.retain_recent();
        }
        self.gcra.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn limiter(burst: u32, per_minute: u32) -> (RateLimiter, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_700_000_000));
        let read = Arc::clone(&now);
        let clock: crate::Clock = Arc::new(move || read.load(Ordering::SeqCst));
        (RateLimiter::new(burst, per_minute, clock), now)
    }

    #[test]
    fn burst_then_refill() {
        let (r, now) = limiter(2, 60);
        assert!(r.take("a").is_ok());
        assert!(r.take("a").is_ok());
        assert_eq!(r.take("a"), Err(1));
        assert!(r.take("b").is_ok(), "keys are independent");
        now.fetch_add(1, Ordering::SeqCst);
        assert!(r.take("a").is_ok(), "one token per second refills");
        assert!(r.take("a").is_err());
    }

    #[test]
    fn refilled_keys_are_swept_out() {
        let (r, now) = limiter(2, 60);
        for i in 0..SWEEP_AT_KEYS {
            assert!(r.take(&format!("user-{i}")).is_ok());
        }
        assert_eq!(r.len(), SWEEP_AT_KEYS);
        // Once they refilled, the next key sweeps them out ...
        now.fetch_add(2, Ordering::SeqCst);
        assert!(r.take("late").is_ok());
        assert_eq!(r.len(), 1);
        // ... and a key that still owes tokens is kept with its count.
        assert!(r.take("late").is_ok());
        assert_eq!(r.take("late"), Err(1));
    }
}
