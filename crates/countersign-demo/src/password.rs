//! Password checks with a bounded cost: argon2 runs on the blocking pool, at most
//! [`PasswordLimits::permits`] at a time (each one takes the hash's memory, 19 MiB with
//! the default parameters), and a login waits for a slot at most
//! [`PasswordLimits::max_wait`] behind at most [`PasswordLimits::max_waiting`] others;
//! otherwise it is answered `503 overloaded` with `Retry-After`.
//!
//! The slot is held by the blocking task itself, not by the handler: a client that
//! disconnects drops the handler, but its hash keeps its slot until it has finished,
//! so cancelled logins cannot push the number of running hashes past the bound.

use crate::error::ApiError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Seconds a client is told to wait when every slot is busy.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// How many password checks run and wait at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordLimits {
    /// Checks running at once.
    pub permits: usize,
    /// Logins waiting for a slot at once; more are refused at once.
    pub max_waiting: usize,
    /// Longest wait for a slot.
    pub max_wait: Duration,
}

impl Default for PasswordLimits {
    /// The machine's parallelism, between 1 and 4 checks at once; 32 waiting, 5 s.
    fn default() -> Self {
        Self {
            permits: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
            max_waiting: 32,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// What the checker has done, for tests and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PasswordStats {
    /// Argon2 verifications started since start.
    pub hashed: u64,
    /// Verifications running now.
    pub running: usize,
    /// Most verifications that ever ran at once.
    pub peak_running: usize,
    /// Logins refused because every slot was busy.
    pub overloaded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hashed: AtomicU64,
    running: AtomicUsize,
    peak_running: AtomicUsize,
    overloaded: AtomicU64,
}

/// Verifies passwords against argon2 PHC strings under [`PasswordLimits`].
#[derive(Debug)]
pub struct PasswordChecker {
    limits: PasswordLimits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    counters: Arc<Counters>,
}

/// Decrements a counter when dropped (on every way out, a panic included).
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier as _;
    argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl PasswordChecker {
    /// A checker under `limits` (at least one permit).
    pub fn new(limits: PasswordLimits) -> Self {
        let limits = PasswordLimits {
            permits: limits.permits.max(1),
            ..limits
        };
        Self {
            slots: Arc::new(Semaphore::new(limits.permits)),
            limits,
            waiting: AtomicUsize::new(0),
            counters: Arc::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &PasswordLimits {
        &self.limits
    }

    /// The counters now.
    pub fn stats(&self) -> PasswordStats {
        let c = &self.counters;
        PasswordStats {
            hashed: c.hashed.load(Ordering::SeqCst),
            running: c.running.load(Ordering::SeqCst),
            peak_running: c.peak_running.load(Ordering::SeqCst),
            overloaded: c.overloaded.load(Ordering::SeqCst),
        }
    }

    fn overloaded(&self) -> ApiError {
        self.counters.overloaded.fetch_add(1, Ordering::SeqCst);
        ApiError::overloaded(OVERLOADED_RETRY_AFTER_SECS)
    }

    /// Whether `password` matches the PHC string `hash`; `503 overloaded` if no slot
    /// frees up in time.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(self.overloaded());
                }
                let _waiting = Decrement(&self.waiting);
                let acquire = Arc::clone(&self.slots).acquire_owned();
                match tokio::time::timeout(self.limits.max_wait, acquire).await {
                    Ok(Ok(permit)) => permit,
                    // Timed out (or closed, which never happens: no one closes it).
                    Ok(Err(_)) | Err(_) => return Err(self.overloaded()),
                }
            }
        };
        let counters = Arc::clone(&self.counters);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            counters.hashed.fetch_add(1, Ordering::SeqCst);
            let now = counters.running.fetch_add(1, Ordering::SeqCst) + 1;
            counters.peak_running.fetch_max(now, Ordering::SeqCst);
            let _running = Decrement(&counters.running);
            verify_password(&password, &hash)
        })
        .await
        .map_err(|e| ApiError::internal(&format!("password check task: {e}")))
    }
}
