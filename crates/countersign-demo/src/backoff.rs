//! Failed-login backoff, per username and per client address.
//!
//! ## The policy
//!
//! Every login attempt that passes the size checks is counted as a failure **before**
//! its password is checked (so a burst of parallel guesses is counted one by one),
//! and a success takes its own count back. Counts live in two tables:
//!
//! * **Per client address** (IPv4 address, or IPv6 /64 — one host holds a whole /64):
//!   the first [`BackoffPolicy::ip_free_failures`] failures are free, then each one
//!   doubles a delay starting at 1 s, up to [`BackoffPolicy::ip_max_delay_secs`]
//!   (15 min). This is the strict one: it stops one machine guessing, whichever
//!   usernames it tries.
//! * **Per username**, from all addresses: the first
//!   [`BackoffPolicy::user_free_failures`] failures are free, then the delay doubles
//!   from 1 s up to a low cap, [`BackoffPolicy::user_max_delay_secs`] (15 s). It slows
//!   guessing spread over many addresses to a few tries a minute (and a guess must hit
//!   the password *and* the current TOTP code at once, since the answer never says
//!   which was wrong), while an attacker can never make the real user wait longer
//!   than the cap: the delay never grows past it, and attempts refused during a delay
//!   are not counted.
//! * A successful login clears the username's count and marks the address as
//!   **known** for that user for [`BackoffPolicy::known_client_secs`] (30 days, at
//!   most [`MAX_KNOWN_CLIENTS`] addresses per user). The per-username delay does not
//!   apply from a known address, so failures elsewhere do not slow the user down at
//!   all where they usually log in; from a fresh address they wait at most the cap.
//!
//! During a delay the app answers `429 rate_limited` with `Retry-After`, without
//! hashing anything. Counts are forgotten [`BackoffPolicy::forget_after_secs`] (1 h)
//! after their last failure; a sweep at most once a minute removes forgotten entries,
//! and each table holds at most [`BackoffPolicy::max_entries`] entries: when full,
//! forgotten entries go first, then the half that failed longest ago. Unknown
//! usernames are counted like real ones, so the answers do not tell which exist.
//!
//! Everything takes `now` from the caller, so tests drive the clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};

/// Addresses remembered per user as known (the most recent ones are kept).
pub const MAX_KNOWN_CLIENTS: usize = 4;

/// Seconds between sweeps of forgotten entries.
const SWEEP_EVERY_SECS: u64 = 60;

/// The numbers of the policy (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures per username before any delay.
    pub user_free_failures: u32,
    /// Longest delay for a username, in seconds (kept low: anyone can cause it).
    pub user_max_delay_secs: u64,
    /// Failures per client address before any delay.
    pub ip_free_failures: u32,
    /// Longest delay for a client address, in seconds.
    pub ip_max_delay_secs: u64,
    /// A count is forgotten this long after its last failure.
    pub forget_after_secs: u64,
    /// How long an address stays known for a user after a successful login.
    pub known_client_secs: u64,
    /// Most entries of each table (usernames, addresses).
    pub max_entries: usize,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            user_free_failures: 5,
            user_max_delay_secs: 15,
            ip_free_failures: 5,
            ip_max_delay_secs: 15 * 60,
            forget_after_secs: 60 * 60,
            known_client_secs: 30 * 24 * 60 * 60,
            max_entries: 50_000,
        }
    }
}

/// A client address as counted: IPv4 addresses (also IPv4-mapped IPv6) as they are,
/// IPv6 addresses by their /64 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

/// Failures of one username or address.
#[derive(Clone, Copy, Debug)]
struct Strikes {
    failures: u32,
    /// Unix seconds of the last failure.
    last: u64,
}

impl Strikes {
    fn forgotten(&self, now: u64, policy: &BackoffPolicy) -> bool {
        now >= self.last.saturating_add(policy.forget_after_secs)
    }

    /// Unix seconds until which attempts are refused.
    fn blocked_until(&self, free: u32, max_delay: u64) -> u64 {
        let Some(over) = self.failures.checked_sub(free).filter(|&o| o > 0) else {
            return 0;
        };
        let delay = 1u64
            .checked_shl(over.saturating_sub(1))
            .unwrap_or(u64::MAX)
            .min(max_delay);
        self.last.saturating_add(delay)
    }
}

#[derive(Debug, Default)]
struct Tables {
    users: HashMap<String, Strikes>,
    clients: HashMap<ClientKey, Strikes>,
    known: HashMap<String, Vec<(ClientKey, u64)>>,
    next_sweep: u64,
}

/// One attempt, counted as a failure until [`LoginBackoff::succeeded`] or
/// [`LoginBackoff::cancel`] takes it back.
#[derive(Debug)]
#[must_use = "an attempt is a failure unless it is marked as succeeded or cancelled"]
pub struct Attempt {
    username: String,
    client: ClientKey,
}

/// The two tables of the policy, behind one lock.
#[derive(Debug, Default)]
pub struct LoginBackoff {
    policy: BackoffPolicy,
    tables: Mutex<Tables>,
}

/// Table sizes, for tests and operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffSizes {
    /// Usernames with a count.
    pub users: usize,
    /// Client addresses with a count.
    pub clients: usize,
    /// Users with known addresses.
    pub known: usize,
}

/// Counts one failure for `key` in `table`, making room first if it is new.
fn strike<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Strikes>,
    key: K,
    now: u64,
    policy: &BackoffPolicy,
) {
    if !table.contains_key(&key) && table.len() >= policy.max_entries {
        make_room(table, now, policy);
    }
    let entry = table.entry(key).or_insert(Strikes {
        failures: 0,
        last: now,
    });
    if entry.forgotten(now, policy) {
        entry.failures = 0;
    }
    entry.failures = entry.failures.saturating_add(1);
    entry.last = entry.last.max(now);
}

/// Removes forgotten entries; if that is not enough, the older half.
fn make_room<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Strikes>,
    now: u64,
    policy: &BackoffPolicy,
) {
    table.retain(|_, s| !s.forgotten(now, policy));
    if table.len() >= policy.max_entries {
        let mut times: Vec<u64> = table.values().map(|s| s.last).collect();
        let middle = times.len() / 2;
        let (_, cutoff, _) = times.select_nth_unstable(middle);
        let cutoff = *cutoff;
        table.retain(|_, s| s.last > cutoff);
    }
}

/// Takes one failure back (a success or a cancelled attempt).
fn refund<K: std::hash::Hash + Eq>(table: &mut HashMap<K, Strikes>, key: &K) {
    if let Some(s) = table.get_mut(key) {
        s.failures = s.failures.saturating_sub(1);
        if s.failures == 0 {
            table.remove(key);
        }
    }
}

impl LoginBackoff {
    /// Empty tables under `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            tables: Mutex::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent at every step, so a poisoned lock (a panic while
        // holding it) leaves usable data.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts an attempt for `username` from `client` at `now`, counting it as a
    /// failure; `Err(seconds to wait)` while the address or the username (from an
    /// address not known for it) is in a delay. A refused attempt is not counted.
    pub fn begin(&self, username: &str, client: IpAddr, now: u64) -> Result<Attempt, u64> {
        let client = ClientKey::from(client);
        let p = self.policy;
        let mut t = self.lock();
        if now >= t.next_sweep {
            t.users.retain(|_, s| !s.forgotten(now, &p));
            t.clients.retain(|_, s| !s.forgotten(now, &p));
            t.known.retain(|_, list| {
                list.retain(|&(_, until)| until > now);
                !list.is_empty()
            });
            t.next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
        }
        let known = t
            .known
            .get(username)
            .is_some_and(|list| list.iter().any(|&(c, until)| c == client && until > now));
        let client_until = t
            .clients
            .get(&client)
            .filter(|s| !s.forgotten(now, &p))
            .map_or(0, |s| {
                s.blocked_until(p.ip_free_failures, p.ip_max_delay_secs)
            });
        let user_until = if known {
            0
        } else {
            t.users
                .get(username)
                .filter(|s| !s.forgotten(now, &p))
                .map_or(0, |s| {
                    s.blocked_until(p.user_free_failures, p.user_max_delay_secs)
                })
        };
        let until = client_until.max(user_until);
        if now < until {
            return Err(until - now);
        }
        strike(&mut t.users, username.to_owned(), now, &p);
        strike(&mut t.clients, client, now, &p);
        Ok(Attempt {
            username: username.to_owned(),
            client,
        })
    }

    /// The attempt logged in: the username's count is cleared, the address gets its
    /// one failure back and becomes known for the user.
    pub fn succeeded(&self, attempt: Attempt, now: u64) {
        let p = self.policy;
        let mut t = self.lock();
        t.users.remove(&attempt.username);
        refund(&mut t.clients, &attempt.client);
        let list = t.known.entry(attempt.username).or_default();
        list.retain(|&(c, until)| c != attempt.client && until > now);
        list.push((attempt.client, now.saturating_add(p.known_client_secs)));
        if list.len() > MAX_KNOWN_CLIENTS {
            list.remove(0);
        }
    }

    /// The attempt was not judged (the app was too busy): both counts get it back.
    pub fn cancel(&self, attempt: Attempt) {
        let mut t = self.lock();
        refund(&mut t.users, &attempt.username);
        refund(&mut t.clients, &attempt.client);
    }

    /// How many entries each table holds.
    pub fn sizes(&self) -> BackoffSizes {
        let t = self.lock();
        BackoffSizes {
            users: t.users.len(),
            clients: t.clients.len(),
            known: t.known.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn delays_double_from_the_free_failures_up_to_the_cap() {
        let s = |failures| Strikes {
            failures,
            last: 100,
        };
        let until = |f| s(f).blocked_until(5, 15);
        assert_eq!(
            (0..=12).map(until).collect::<Vec<_>>(),
            [0, 0, 0, 0, 0, 0, 101, 102, 104, 108, 115, 115, 115]
        );
        assert_eq!(s(u32::MAX).blocked_until(0, 900), 1000, "no overflow");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::from(mapped), ClientKey::from(ip(7)));
    }

    #[test]
    fn one_address_is_stopped_and_the_user_waits_at_most_the_cap() {
        let b = LoginBackoff::default();
        let mut now = 1000;
        // The attacker fails as fast as it is allowed to, for a long time.
        let mut guesses = 0;
        while now < 1000 + 3600 {
            if b.begin("alice", ip(66), now).is_ok() {
                guesses += 1;
            }
            now += 1;
        }
        assert!(
            guesses < 20,
            "{guesses} guesses in an hour from one address"
        );
        // The address is blocked for a long time, for every username.
        let wait = b.begin("bob", ip(66), now).unwrap_err();
        assert!(wait > 60, "{wait}");
        // The real user, from another address, waits at most the user cap.
        match b.begin("alice", ip(1), now) {
            Ok(a) => b.succeeded(a, now),
            Err(wait) => {
                assert!(wait <= 15, "{wait}");
                let a = b.begin("alice", ip(1), now + wait).unwrap();
                b.succeeded(a, now + wait);
            }
        }
    }

    #[test]
    fn cancel_and_success_take_the_count_back() {
        let b = LoginBackoff::default();
        for _ in 0..20 {
            let a = b.begin("alice", ip(1), 10).unwrap();
            b.cancel(a);
        }
        assert_eq!(b.sizes().users, 0);
        assert_eq!(b.sizes().clients, 0);
        let a = b.begin("alice", ip(1), 10).unwrap();
        b.succeeded(a, 10);
        assert_eq!(
            b.sizes(),
            BackoffSizes {
                users: 0,
                clients: 0,
                known: 1
            }
        );
    }
}
