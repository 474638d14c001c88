//! Keys, roles, thresholds, and the one function that counts approvals.

use crate::canonical::{MAX_LIFETIME_SECS, ParsedRequest, Request};
use crate::error::{Error, ErrorCode, Result};
use crate::names::{GatekeeperId, KeyId, Role};
use crate::signature::{MAX_SIGNATURES, PublicKey, SignatureEntry, signing_message};
use std::collections::{BTreeMap, BTreeSet};

/// A key that may sign for one role, optionally only within `[not_before, not_after)`
/// (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The key's id, unique in its keyring.
    pub key_id: KeyId,
    /// The only role this key may sign for.
    pub role: Role,
    /// The public key (never a small-order point).
    pub public_key: PublicKey,
    /// First second the key is valid, if limited.
    pub not_before: Option<u64>,
    /// First second the key is no longer valid, if limited.
    pub not_after: Option<u64>,
}

impl AuthorizedKey {
    /// Whether the key may sign at `t`.
    pub fn valid_at(&self, t: u64) -> bool {
        self.not_before.is_none_or(|nb| t >= nb) && self.not_after.is_none_or(|na| t < na)
    }
}

/// All keys a verifier knows, by key id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: BTreeMap<KeyId, AuthorizedKey>,
}

impl Keyring {
    /// Builds a keyring; key ids must be distinct (`invalid_field`), windows non-empty
    /// (`invalid_field`) and public keys distinct (`duplicate_key`): one Ed25519 key
    /// under two key ids would otherwise count twice towards a threshold, whatever
    /// roles the two entries name.
    pub fn new(keys: impl IntoIterator<Item = AuthorizedKey>) -> Result<Self> {
        let mut map: BTreeMap<KeyId, AuthorizedKey> = BTreeMap::new();
        for key in keys {
            if let (Some(nb), Some(na)) = (key.not_before, key.not_after)
                && na <= nb
            {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    format!("key `{}`: not_after must be after not_before", key.key_id),
                ));
            }
            let id = &key.key_id;
            if map.contains_key(id) {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    format!("key id `{id}` appears twice; key ids must be unique"),
                ));
            }
            // A linear scan: keyrings hold a handful of keys, and a second map type
            // would cost the browser client's .wasm its own copy of the B-tree code.
            if let Some(first) = map.values().find(|k| k.public_key == key.public_key) {
                return Err(Error::new(
                    ErrorCode::DuplicateKey,
                    format!(
                        "key ids `{}` and `{id}` have the same public key; one key may be listed only once, or it would count twice towards a threshold",
                        first.key_id
                    ),
                ));
            }
            map.insert(id.clone(), key);
        }
        Ok(Self { keys: map })
    }

    /// The key with this id.
    pub fn get(&self, key_id: &KeyId) -> Option<&AuthorizedKey> {
        self.keys.get(key_id)
    }

    /// All keys.
    pub fn iter(&self) -> impl Iterator<Item = &AuthorizedKey> {
        self.keys.values()
    }

    fn count_role(&self, role: &Role) -> usize {
        self.keys.values().filter(|k| &k.role == role).count()
    }
}

/// Which distinct key ids approved, by role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approvals {
    by_role: BTreeMap<Role, BTreeSet<KeyId>>,
}

impl Approvals {
    /// The key ids that approved for `role`.
    pub fn approvers(&self, role: &Role) -> impl Iterator<Item = &KeyId> {
        self.by_role.get(role).into_iter().flatten()
    }

    /// Every (role, key ids) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&Role, &BTreeSet<KeyId>)> {
        self.by_role.iter()
    }
}

/// A keyring plus, for each required role, how many distinct keys must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    keyring: Keyring,
    require: BTreeMap<Role, usize>,
}

impl Policy {
    /// A policy requiring, for each `(role, threshold)`, `threshold` distinct keys of
    /// that role. Thresholds are 1 to the number of keys the role has.
    pub fn new(keyring: Keyring, require: impl IntoIterator<Item = (Role, usize)>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (role, threshold) in require {
            let available = keyring.count_role(&role);
            if threshold == 0 || threshold > available {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    format!(
                        "threshold {threshold} for role `{role}` must be between 1 and its {available} key(s)"
                    ),
                ));
            }
            if map.insert(role.clone(), threshold).is_some() {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    format!("role `{role}` has two thresholds"),
                ));
            }
        }
        if map.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a policy must require at least one role",
            ));
        }
        Ok(Self {
            keyring,
            require: map,
        })
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The required roles and thresholds.
    pub fn requirements(&self) -> impl Iterator<Item = (&Role, usize)> {
        self.require.iter().map(|(r, t)| (r, *t))
    }

    /// The one multisig function. Every presented signature must be valid: its key id
    /// known, of the claimed role, valid at `at`, and verifying strictly over
    /// [`signing_message`]. Then each required role needs `threshold` **distinct** key
    /// ids; a key that signs twice counts once. Errors name the first failure.
    pub fn approve(
        &self,
        document: &[u8],
        signatures: &[SignatureEntry],
        at: u64,
    ) -> Result<Approvals> {
        if signatures.len() > MAX_SIGNATURES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_SIGNATURES} signatures are accepted"),
            ));
        }
        let mut approvals = Approvals::default();
        for sig in signatures {
            let key = self.keyring.get(&sig.key_id).ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownKey,
                    format!("key id `{}` is not in the policy", sig.key_id),
                )
            })?;
            if key.role != sig.role {
                return Err(Error::new(
                    ErrorCode::WrongRole,
                    format!(
                        "key `{}` signs for role `{}`, not `{}`",
                        sig.key_id, key.role, sig.role
                    ),
                ));
            }
            if !key.valid_at(at) {
                return Err(Error::new(
                    ErrorCode::KeyOutsideWindow,
                    format!("key `{}` is not valid at {at}", sig.key_id),
                ));
            }
            key.public_key
                .verify_strict(
                    &signing_message(&sig.role, &sig.key_id, document),
                    &sig.signature,
                )
                .map_err(|e| {
                    Error::new(
                        e.code(),
                        format!("signature by key `{}` does not verify", sig.key_id),
                    )
                })?;
            approvals
                .by_role
                .entry(sig.role.clone())
                .or_default()
                .insert(sig.key_id.clone());
        }
        for (role, &threshold) in &self.require {
            let have = approvals.approvers(role).count();
            if have < threshold {
                return Err(Error::new(
                    ErrorCode::ThresholdNotMet,
                    format!("role `{role}` needs {threshold} distinct signing key(s), got {have}"),
                ));
            }
        }
        Ok(approvals)
    }
}

/// Checks requests addressed to one gatekeeper against a policy and a time window.
#[derive(Clone, Debug)]
pub struct RequestVerifier {
    audience: GatekeeperId,
    policy: Policy,
    max_lifetime_secs: u64,
    clock_skew_secs: u64,
}

impl RequestVerifier {
    /// A verifier for requests to `audience`. `max_lifetime_secs` (at most the
    /// protocol's 86400) bounds `expires-at - issued-at`; `clock_skew_secs` is the
    /// tolerance for clocks that disagree.
    pub fn new(
        audience: GatekeeperId,
        policy: Policy,
        max_lifetime_secs: u64,
        clock_skew_secs: u64,
    ) -> Result<Self> {
        if max_lifetime_secs == 0 || max_lifetime_secs > MAX_LIFETIME_SECS {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("max lifetime must be 1 to {MAX_LIFETIME_SECS} seconds"),
            ));
        }
        if clock_skew_secs > crate::canonical::MAX_CLOCK_SKEW_SECS {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!(
                    "clock skew must be at most {} seconds",
                    crate::canonical::MAX_CLOCK_SKEW_SECS
                ),
            ));
        }
        Ok(Self {
            audience,
            policy,
            max_lifetime_secs,
            clock_skew_secs,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The gatekeeper id requests must be addressed to.
    pub fn audience(&self) -> &GatekeeperId {
        &self.audience
    }

    /// Parses, checks audience, lifetime and time window at `now` (Unix seconds), then
    /// counts approvals. The checks run in the order of `docs/PROTOCOL.md`.
    pub fn verify(
        &self,
        canonical: &[u8],
        signatures: &[SignatureEntry],
        now: u64,
    ) -> Result<VerifiedRequest> {
        let parsed = ParsedRequest::parse(canonical.to_vec())?;
        self.verify_parsed(parsed, signatures.to_vec(), now)
    }

    /// [`RequestVerifier::verify`] for a caller that already parsed the canonical
    /// bytes (a server reads the request's fields before it verifies): the same
    /// checks in the same order, without parsing or copying the bytes again.
    pub fn verify_parsed(
        &self,
        parsed: ParsedRequest,
        signatures: Vec<SignatureEntry>,
        now: u64,
    ) -> Result<VerifiedRequest> {
        let ParsedRequest {
            request,
            bytes: canonical,
        } = parsed;
        if request.audience() != &self.audience {
            return Err(Error::new(
                ErrorCode::WrongAudience,
                format!(
                    "the request is addressed to `{}`, this is `{}`",
                    request.audience(),
                    self.audience
                ),
            ));
        }
        let lifetime = request.expires_at() - request.issued_at();
        if lifetime > self.max_lifetime_secs {
            return Err(Error::new(
                ErrorCode::LifetimeTooLong,
                format!(
                    "the request lives {lifetime} s; this gatekeeper allows at most {} s",
                    self.max_lifetime_secs
                ),
            ));
        }
        if request.issued_at() > now.saturating_add(self.clock_skew_secs) {
            return Err(Error::new(
                ErrorCode::NotYetValid,
                format!(
                    "the request is valid from {}, it is now {now}",
                    request.issued_at()
                ),
            ));
        }
        if now >= request.expires_at().saturating_add(self.clock_skew_secs) {
            return Err(Error::new(
                ErrorCode::Expired,
                format!(
                    "the request expired at {}, it is now {now}",
                    request.expires_at()
                ),
            ));
        }
        let approvals = self.policy.approve(&canonical, &signatures, now)?;
        let replay_until = request.expires_at().saturating_add(self.clock_skew_secs);
        Ok(VerifiedRequest {
            request,
            canonical,
            signatures,
            approvals,
            replay_until,
        })
    }
}

/// A request whose signatures met the policy at verification time. Only
/// [`RequestVerifier::verify`] makes one. The nonce still has to be checked against
/// the replay store, which lives outside this pure crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRequest {
    request: Request,
    canonical: Vec<u8>,
    signatures: Vec<SignatureEntry>,
    approvals: Approvals,
    replay_until: u64,
}

impl VerifiedRequest {
    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }
    /// The canonical bytes that were verified.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }
    /// The signatures that were verified.
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }
    /// Which key ids of which roles approved.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }
    /// The nonce must be remembered until this Unix second (exclusive).
    pub fn replay_until(&self) -> u64 {
        self.replay_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::PublicKey;
    use ed25519_dalek::SigningKey;

    fn authorized(seed: u8, id: &str, role: Role) -> AuthorizedKey {
        AuthorizedKey {
            key_id: KeyId::parse(id).unwrap(),
            role,
            public_key: PublicKey::from_bytes(
                &SigningKey::from_bytes(&[seed; 32])
                    .verifying_key()
                    .to_bytes(),
            )
            .unwrap(),
            not_before: None,
            not_after: None,
        }
    }

    /// `verify_parsed` is `verify` without the second parse: the same result for a
    /// good request, the same refusal for a bad signature or an expired request.
    #[test]
    fn verify_parsed_decides_like_verify() {
        use crate::canonical::Operation;
        use crate::names::{Bucket, Nonce, ObjectKey, Subject};
        let t = 1_700_000_000;
        let canonical = Request::from_parts(
            GatekeeperId::parse("gk.acme").unwrap(),
            Bucket::parse("reports").unwrap(),
            Operation::Get {
                key: ObjectKey::parse("a.png").unwrap(),
                range: None,
            },
            Subject::parse("user-42").unwrap(),
            t,
            t + 60,
            Nonce([5; 16]),
        )
        .unwrap()
        .encode();
        let keyring = Keyring::new([authorized(1, "v1", Role::vendor())]).unwrap();
        let policy = Policy::new(keyring, [(Role::vendor(), 1)]).unwrap();
        let verifier =
            RequestVerifier::new(GatekeeperId::parse("gk.acme").unwrap(), policy, 900, 30).unwrap();
        let key = SigningKey::from_bytes(&[1; 32]);
        let good = SignatureEntry::sign(
            &key,
            Role::vendor(),
            KeyId::parse("v1").unwrap(),
            &canonical,
        );
        let mut bad = good.clone();
        bad.signature[0] ^= 1;
        for (signatures, now) in [
            (vec![good.clone()], t + 1),
            (vec![bad], t + 1),
            (vec![good], t + 500),
        ] {
            let parsed = ParsedRequest::parse(canonical.clone()).unwrap();
            assert_eq!(parsed.bytes(), &canonical[..]);
            let whole = verifier.verify(&canonical, &signatures, now);
            let split = verifier.verify_parsed(parsed, signatures, now);
            match (whole, split) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
                (a, b) => panic!("verify {a:?} but verify_parsed {b:?}"),
            }
        }
        assert!(ParsedRequest::parse(b"countersign/v1/request\n".to_vec()).is_err());
    }

    #[test]
    fn one_public_key_under_two_ids_is_refused() {
        let err = Keyring::new([
            authorized(1, "vendor-a", Role::vendor()),
            authorized(2, "vendor-b", Role::vendor()),
            authorized(1, "vendor-c", Role::vendor()),
        ])
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::DuplicateKey);
        assert!(err.message().contains("`vendor-a`"), "{err}");
        assert!(err.message().contains("`vendor-c`"), "{err}");
        // Also across roles: a vendor key may not double as a gatekeeper key.
        let err = Keyring::new([
            authorized(1, "vendor-a", Role::vendor()),
            authorized(1, "gk-a", Role::gatekeeper()),
        ])
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::DuplicateKey);
        // A repeated key id is still reported as such.
        let err = Keyring::new([
            authorized(1, "vendor-a", Role::vendor()),
            authorized(1, "vendor-a", Role::vendor()),
        ])
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidField);
    }

    #[test]
    fn one_key_cannot_meet_a_threshold_of_two() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let doc = b"document";
        // The attack: register the key twice and sign under both ids.
        assert_eq!(
            Keyring::new([
                authorized(1, "vendor-a", Role::vendor()),
                authorized(1, "vendor-b", Role::vendor()),
            ])
            .unwrap_err()
            .code(),
            ErrorCode::DuplicateKey
        );
        // With the key listed once, a threshold of two cannot even be configured ...
        let single = Keyring::new([authorized(1, "vendor-a", Role::vendor())]).unwrap();
        assert_eq!(
            Policy::new(single, [(Role::vendor(), 2)])
                .unwrap_err()
                .code(),
            ErrorCode::InvalidField
        );
        // ... and beside a second key, signing twice still counts once.
        let keyring = Keyring::new([
            authorized(1, "vendor-a", Role::vendor()),
            authorized(2, "vendor-b", Role::vendor()),
        ])
        .unwrap();
        let policy = Policy::new(keyring, [(Role::vendor(), 2)]).unwrap();
        let sig =
            SignatureEntry::sign(&key, Role::vendor(), KeyId::parse("vendor-a").unwrap(), doc);
        assert_eq!(
            policy
                .approve(doc, &[sig.clone(), sig], 0)
                .unwrap_err()
                .code(),
            ErrorCode::ThresholdNotMet
        );
        let other =
            SignatureEntry::sign(&key, Role::vendor(), KeyId::parse("vendor-b").unwrap(), doc);
        assert_eq!(
            policy.approve(doc, &[other], 0).unwrap_err().code(),
            ErrorCode::BadSignature
        );
    }
}
