//! A bound on requests that fail before their signatures are verified, per client
//! network (an IPv4 address, or an IPv6 /64): each such failure takes a token from
//! the network's bucket (`burst` tokens, refilled at `per_sec`); with none left,
//! requests are answered `rate_limited` before any parsing. Requests with verified
//! signatures never take tokens. The table is bounded: when it is full, buckets that
//! have refilled completely are dropped, and if none has, the oldest are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most client networks tracked at once.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    tokens: f64,
    at: Instant,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// The network a client address is limited as.
fn network(ip: IpAddr) -> IpAddr {
    match crate::acl::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl FailureLimiter {
    /// A limiter allowing `burst` failures at once, refilled at `per_sec`.
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_sec.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: TokenBucket, now: Instant) -> TokenBucket {
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        TokenBucket {
            tokens: (b.tokens + secs * self.per_sec).min(self.burst),
            at: now,
        }
    }

    /// Whether `ip` may still fail (it has a token left).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(map) = self.buckets.lock() else {
            return true;
        };
        match map.get(&network(ip)) {
            None => true,
            Some(b) => self.refilled(*b, now).tokens >= 1.0,
        }
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED {
            let burst = self.burst;
            map.retain(|_, b| self.refilled(*b, now).tokens < burst);
            if map.len() >= MAX_TRACKED {
                let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
                ages.sort_unstable();
                if let Some(cut) = ages.get(ages.len() / 2).copied() {
                    map.retain(|_, b| b.at > cut);
                }
            }
        }
        let entry = map.entry(network(ip)).or_insert(TokenBucket {
            tokens: self.burst,
            at: now,
        });
        let mut b = self.refilled(*entry, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        *entry = b;
    }

    /// Networks tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_per_network() {
        let l = FailureLimiter::new(3, 1);
        let a: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(l.allows(a));
            l.failed(a);
        }
        assert!(!l.allows(a));
        assert!(l.allows([127, 0, 0, 3].into()));
        // Two addresses of one IPv6 /64 share a bucket.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap_or(a);
        let v6b: IpAddr = "2001:db8::2".parse().unwrap_or(a);
        for _ in 0..3 {
            l.failed(v6a);
        }
        assert!(!l.allows(v6b));
    }
}
