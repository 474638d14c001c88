//! The one error type of the protocol and its stable machine-readable codes.

use std::fmt;

/// Stable, machine-readable error codes shared by the core, the gatekeeper's HTTP API,
/// the wasm client and the test vectors. The string form (`as_str`) never changes once
/// published; new codes may be added.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// The transport is garbled: a missing header, bad base64, a bad signature list.
    Malformed,
    /// The document names a protocol version this implementation does not speak.
    UnsupportedVersion,
    /// The bytes are not the one canonical encoding (order, spelling, leading zeros, …).
    NonCanonical,
    /// A field's value is outside its domain (unknown method, bad nonce, …).
    InvalidField,
    /// The bucket name breaks the bucket naming rules.
    InvalidBucket,
    /// The object key or list prefix breaks the key rules (traversal, control characters, …).
    InvalidKeyPath,
    /// A document, header or body is larger than allowed.
    TooLarge,
    /// The request's `expires-at` has passed.
    Expired,
    /// The request's `issued-at` is in the future.
    NotYetValid,
    /// `expires-at - issued-at` exceeds what the policy allows.
    LifetimeTooLong,
    /// The request is addressed to another gatekeeper.
    WrongAudience,
    /// An Ed25519 signature does not verify strictly.
    BadSignature,
    /// A public key is of small order (or otherwise unusable).
    WeakKey,
    /// A signature names a key id the policy does not know.
    UnknownKey,
    /// A signature claims a role its key does not have.
    WrongRole,
    /// The key was used outside its validity window.
    KeyOutsideWindow,
    /// Fewer distinct authorized keys signed than a role's threshold requires.
    ThresholdNotMet,
    /// The nonce was already used within its validity window.
    Replayed,
    /// A receipt does not refer to this request.
    ReceiptMismatch,
    /// A manifest does not describe the object that was asked for.
    ManifestMismatch,
    /// Body bytes do not match the signed SHA-256 or length.
    BodyMismatch,
    /// The HTTP request does not match the signed request (method, bucket, key).
    RequestMismatch,
    /// The audit log's hash chain is broken: an entry was altered, removed, inserted
    /// or reordered, or a checkpoint does not match the log; or a Merkle inclusion or
    /// consistency proof fails (a rewrite, truncation, fork or rollback).
    AuditChainBroken,
    /// The client address is denied by the customer's IP rules.
    IpDenied,
    /// The customer's ACL does not allow this subject this operation.
    AccessDenied,
    /// The object key already exists; objects are never overwritten.
    AlreadyExists,
    /// No such object.
    NotFound,
    /// The audit log could not be written, so the request was not carried out.
    AuditUnavailable,
    /// The object store could not be reached.
    StorageUnavailable,
    /// An internal error; details are in the audit log, never in the response.
    Internal,
    /// Too many failed requests came from this client address recently; retry later.
    RateLimited,
    /// The request did not arrive in time: its headers or body came too slowly, or it
    /// was still running at its signed `expires-at`.
    Timeout,
    /// The gatekeeper is at a configured capacity limit (connections, upload memory);
    /// retry later.
    Overloaded,
    /// Two keys of a keyring share one public key, so one key could count twice
    /// towards a threshold.
    DuplicateKey,
    /// A signed listing does not answer this LIST request: another request, bucket,
    /// prefix or cursor, a key outside the prefix or before the cursor, or made by
    /// another gatekeeper or outside the request's window.
    ListingMismatch,
    /// An object's stored (encrypted) bytes failed authentication: a segment was
    /// altered, swapped, reordered, truncated or moved from another object.
    StoredObjectTampered,
    /// The key-encryption key an object needs is not in the gatekeeper's keyring, or
    /// does not unwrap the object's data key.
    KeyUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of `docs/PROTOCOL.md`.
    pub const ALL: &'static [ErrorCode] = &[
        Self::Malformed,
        Self::UnsupportedVersion,
        Self::NonCanonical,
        Self::InvalidField,
        Self::InvalidBucket,
        Self::InvalidKeyPath,
        Self::TooLarge,
        Self::Expired,
        Self::NotYetValid,
        Self::LifetimeTooLong,
        Self::WrongAudience,
        Self::BadSignature,
        Self::WeakKey,
        Self::UnknownKey,
        Self::WrongRole,
        Self::KeyOutsideWindow,
        Self::ThresholdNotMet,
        Self::Replayed,
        Self::ReceiptMismatch,
        Self::ManifestMismatch,
        Self::BodyMismatch,
        Self::RequestMismatch,
        Self::AuditChainBroken,
        Self::IpDenied,
        Self::AccessDenied,
        Self::AlreadyExists,
        Self::NotFound,
        Self::AuditUnavailable,
        Self::StorageUnavailable,
        Self::Internal,
        Self::RateLimited,
        Self::Timeout,
        Self::Overloaded,
        Self::DuplicateKey,
        Self::ListingMismatch,
        Self::StoredObjectTampered,
        Self::KeyUnavailable,
    ];

    /// The stable snake_case string of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::NonCanonical => "non_canonical",
            Self::InvalidField => "invalid_field",
            Self::InvalidBucket => "invalid_bucket",
            Self::InvalidKeyPath => "invalid_key_path",
            Self::TooLarge => "too_large",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::WrongAudience => "wrong_audience",
            Self::BadSignature => "bad_signature",
            Self::WeakKey => "weak_key",
            Self::UnknownKey => "unknown_key",
            Self::WrongRole => "wrong_role",
            Self::KeyOutsideWindow => "key_outside_window",
            Self::ThresholdNotMet => "threshold_not_met",
            Self::Replayed => "replayed",
            Self::ReceiptMismatch => "receipt_mismatch",
            Self::ManifestMismatch => "manifest_mismatch",
            Self::BodyMismatch => "body_mismatch",
            Self::RequestMismatch => "request_mismatch",
            Self::AuditChainBroken => "audit_chain_broken",
            Self::IpDenied => "ip_denied",
            Self::AccessDenied => "access_denied",
            Self::AlreadyExists => "already_exists",
            Self::NotFound => "not_found",
            Self::AuditUnavailable => "audit_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Internal => "internal",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::DuplicateKey => "duplicate_key",
            Self::ListingMismatch => "listing_mismatch",
            Self::StoredObjectTampered => "stored_object_tampered",
            Self::KeyUnavailable => "key_unavailable",
        }
    }

    /// Parses a code from its stable string.
    pub fn from_str_code(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: a stable [`ErrorCode`] plus a sentence that says what was wrong.
///
/// The sentence never contains secrets; it may quote the offending (already bounded)
/// field so that a developer can fix the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// Builds an error from a code and a sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {c}");
            assert_eq!(ErrorCode::from_str_code(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_str_code("nope"), None);
    }
}
