//! [`Signer`]: the vendor's half of the multisig.

use crate::error::{Error, Result};
use crate::keys::VendorKey;
use countersign_core::canonical::MAX_LIFETIME_SECS;
use countersign_core::{AuthorizedKey, ErrorCode, GatekeeperId, Request, Role, SignatureEntry};
use std::collections::BTreeSet;
use std::path::Path;

/// Most requests one [`Signer::sign_batch`] call accepts.
pub const MAX_BATCH: usize = 256;

fn refuse(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Protocol(countersign_core::Error::new(code, message))
}

/// What a [`Signer`] refuses to sign, whatever the caller asks. Entitlement (which
/// user may touch which bucket and prefix) is the application's decision and is not
/// here; these are the checks every vendor backend needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningLimits {
    /// If set, only requests addressed to this gatekeeper are signed (`wrong_audience`).
    pub audience: Option<GatekeeperId>,
    /// Longest lifetime (`expires-at - issued-at`) signed (`lifetime_too_long`).
    pub max_lifetime_secs: u64,
    /// How far `issued-at` may lie in the future (`not_yet_valid`).
    pub clock_skew_secs: u64,
}

impl Default for SigningLimits {
    /// No audience restriction, 15 minutes of lifetime, 30 seconds of clock skew.
    fn default() -> Self {
        Self {
            audience: None,
            max_lifetime_secs: 900,
            clock_skew_secs: 30,
        }
    }
}

/// Signs canonical requests with the right one of several keys.
///
/// Holds every key of a rotation (old, current, next), all of one role. For each
/// request it picks the **newest** key (largest `not_before`) that is valid from now
/// until the request expires, so a request never outlives the key that signed it, and
/// a new key takes over as soon as its window opens. `Signer` is `Send + Sync + Clone`:
/// keep one (or an `Arc` of one) in your server's state.
#[derive(Clone, Debug)]
pub struct Signer {
    keys: Vec<VendorKey>,
    role: Role,
    limits: SigningLimits,
}

impl Signer {
    /// A signer over `keys`: at least one, distinct key ids, one role.
    pub fn new(keys: impl IntoIterator<Item = VendorKey>) -> Result<Self> {
        let keys: Vec<VendorKey> = keys.into_iter().collect();
        let Some(first) = keys.first() else {
            return Err(refuse(
                ErrorCode::InvalidField,
                "a signer needs at least one key",
            ));
        };
        let role = first.role().clone();
        let mut ids = BTreeSet::new();
        for key in &keys {
            if !ids.insert(key.key_id().clone()) {
                return Err(refuse(
                    ErrorCode::InvalidField,
                    format!(
                        "key id `{}` appears twice; key ids must be unique",
                        key.key_id()
                    ),
                ));
            }
            if key.role() != &role {
                return Err(refuse(
                    ErrorCode::InvalidField,
                    format!(
                        "key `{}` signs for `{}` but key `{}` for `{role}`; a signer has one role",
                        key.key_id(),
                        key.role(),
                        first.key_id()
                    ),
                ));
            }
        }
        Ok(Self {
            keys,
            role,
            limits: SigningLimits::default(),
        })
    }

    /// A signer over the keys of several secret key files (see [`crate::keys`]).
    pub fn from_key_files<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        let mut keys = Vec::new();
        for path in paths {
            keys.extend(VendorKey::load(path)?);
        }
        Self::new(keys)
    }

    /// A signer over the keys in the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self> {
        Self::new(crate::keys::keys_from_env(name)?)
    }

    /// Replaces the signing limits.
    pub fn with_limits(mut self, limits: SigningLimits) -> Result<Self> {
        if limits.max_lifetime_secs == 0 || limits.max_lifetime_secs > MAX_LIFETIME_SECS {
            return Err(refuse(
                ErrorCode::InvalidField,
                format!("max lifetime must be 1 to {MAX_LIFETIME_SECS} seconds"),
            ));
        }
        if limits.clock_skew_secs > 600 {
            return Err(refuse(
                ErrorCode::InvalidField,
                "clock skew must be at most 600 seconds",
            ));
        }
        self.limits = limits;
        Ok(self)
    }

    /// The limits in force.
    pub fn limits(&self) -> &SigningLimits {
        &self.limits
    }

    /// The role every key signs for.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// All keys.
    pub fn keys(&self) -> &[VendorKey] {
        &self.keys
    }

    /// The public halves, to publish in the customer's gatekeeper policy.
    pub fn authorized_keys(&self) -> Vec<AuthorizedKey> {
        self.keys.iter().map(VendorKey::authorized_key).collect()
    }

    /// Checks `request` against the limits at `now` (Unix seconds).
    pub fn check(&self, request: &Request, now: u64) -> Result<()> {
        if let Some(audience) = &self.limits.audience
            && request.audience() != audience
        {
            return Err(refuse(
                ErrorCode::WrongAudience,
                format!(
                    "the request is addressed to `{}`; this signer signs only for `{audience}`",
                    request.audience()
                ),
            ));
        }
        let lifetime = request.expires_at() - request.issued_at();
        if lifetime > self.limits.max_lifetime_secs {
            return Err(refuse(
                ErrorCode::LifetimeTooLong,
                format!(
                    "the request lives {lifetime} s; this signer signs at most {} s",
                    self.limits.max_lifetime_secs
                ),
            ));
        }
        if request.issued_at() > now.saturating_add(self.limits.clock_skew_secs) {
            return Err(refuse(
                ErrorCode::NotYetValid,
                format!(
                    "the request is issued at {}, in the future (now {now})",
                    request.issued_at()
                ),
            ));
        }
        if now >= request.expires_at() {
            return Err(refuse(
                ErrorCode::Expired,
                format!(
                    "the request expired at {}, it is now {now}",
                    request.expires_at()
                ),
            ));
        }
        Ok(())
    }

    /// The key that signs `request` at `now`: the newest key valid from `now` until
    /// the request expires. `key_outside_window` if there is none.
    pub fn key_for(&self, request: &Request, now: u64) -> Result<&VendorKey> {
        let last_second = request.expires_at().saturating_sub(1).max(now);
        let newest = self
            .keys
            .iter()
            .filter(|k| k.valid_at(now) && k.valid_at(last_second))
            .max_by(|a, b| {
                (a.not_before().unwrap_or(0), a.key_id())
                    .cmp(&(b.not_before().unwrap_or(0), b.key_id()))
            });
        if let Some(key) = newest {
            return Ok(key);
        }
        let retiring = self.keys.iter().find(|k| k.valid_at(now));
        Err(refuse(
            ErrorCode::KeyOutsideWindow,
            match retiring.and_then(VendorKey::not_after) {
                Some(until) => format!(
                    "no signing key is valid until the request expires at {}; the current key retires at {until}",
                    request.expires_at()
                ),
                None => format!("no signing key is valid at {now}"),
            },
        ))
    }

    /// Checks and signs a parsed request at `now`.
    pub fn sign_request(&self, request: &Request, now: u64) -> Result<SignatureEntry> {
        self.check(request, now)?;
        let key = self.key_for(request, now)?;
        Ok(key.sign_document(&request.encode()))
    }

    /// Parses canonical request bytes (anything non-canonical is refused), checks and
    /// signs them at `now`.
    pub fn sign(&self, canonical: &[u8], now: u64) -> Result<SignatureEntry> {
        let request = Request::parse(canonical)?;
        self.sign_request(&request, now)
    }

    /// Signs many requests at once (a report page needs many objects). Each request
    /// gets its own result, in order, so one bad request does not sink the page. More
    /// than [`MAX_BATCH`] requests is `too_large` for the whole batch.
    pub fn sign_batch<D: AsRef<[u8]>>(
        &self,
        canonicals: &[D],
        now: u64,
    ) -> Result<Vec<Result<SignatureEntry>>> {
        if canonicals.len() > MAX_BATCH {
            return Err(refuse(
                ErrorCode::TooLarge,
                format!(
                    "a batch holds at most {MAX_BATCH} requests, got {}",
                    canonicals.len()
                ),
            ));
        }
        Ok(canonicals
            .iter()
            .map(|c| self.sign(c.as_ref(), now))
            .collect())
    }
}
