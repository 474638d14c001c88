//! Ed25519 signatures over labelled messages, and their transport form.
//!
//! Every signature covers `countersign/v1/signature\nrole:<role>\nkey-id:<key id>\n`
//! followed by the signed document's canonical bytes, so a signature cannot be moved
//! to another key id, another role or another kind of document.

use crate::error::{Error, ErrorCode, Result};
use crate::names::{KeyId, Role};
use crate::text::{b64, parse_b64, preview};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// At most this many signatures travel with one document.
pub const MAX_SIGNATURES: usize = 16;

/// An Ed25519 public key that is a canonically encoded point of the prime-order
/// subgroup: not one of the eight small-order points (for which signatures can be
/// forged), and without a torsion component (which makes cofactored and cofactorless
/// verifiers disagree). Honest keys (`A = a·B`) always qualify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes; refuses (`weak_key`) encodings that are not points or not
    /// canonical, small-order points and points with a torsion component.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let weak = |why: &str| Error::new(ErrorCode::WeakKey, format!("the public key {why}"));
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| weak("is not a valid Ed25519 point encoding"))?;
        let point = key.to_edwards();
        if point.compress().to_bytes() != *bytes {
            return Err(weak("is not canonically encoded"));
        }
        if key.is_weak() {
            return Err(weak(
                "is a small-order point; signatures under it prove nothing",
            ));
        }
        if !point.is_torsion_free() {
            return Err(weak(
                "has a small-order (torsion) component; no honest key has one",
            ));
        }
        Ok(Self(key))
    }

    /// Parses a slice that must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::new(
                ErrorCode::WeakKey,
                format!("an Ed25519 public key is 32 bytes, got {}", bytes.len()),
            )
        })?;
        Self::from_bytes(&arr)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Strict Ed25519 verification of `message` (see `docs/PROTOCOL.md`, "Ed25519").
    pub fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).map_err(|_| {
            Error::new(
                ErrorCode::BadSignature,
                "the Ed25519 signature does not verify",
            )
        })
    }
}

/// The public key of a signing key.
pub fn public_key_of(key: &SigningKey) -> Result<PublicKey> {
    PublicKey::from_bytes(&key.verifying_key().to_bytes())
}

/// The exact bytes Ed25519 signs for `role` and `key_id` over a document. The
/// signing message carries the document's own format version: a document whose
/// header is `countersign/v2/...` is signed under `countersign/v2/signature`, every
/// other document (version 1, or bytes that are no document) under
/// `countersign/v1/signature`.
pub fn signing_message(role: &Role, key_id: &KeyId, document: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + document.len());
    if document.starts_with(b"countersign/v2/") {
        m.extend_from_slice(b"countersign/v2/signature\nrole:");
    } else {
        m.extend_from_slice(b"countersign/v1/signature\nrole:");
    }
    m.extend_from_slice(role.as_str().as_bytes());
    m.extend_from_slice(b"\nkey-id:");
    m.extend_from_slice(key_id.as_str().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(document);
    m
}

/// One signature with the role and key id it claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureEntry {
    /// Role the signer claims.
    pub role: Role,
    /// Key id the signer claims.
    pub key_id: KeyId,
    /// The 64-byte Ed25519 signature.
    pub signature: [u8; 64],
}

impl SignatureEntry {
    /// Signs `document` as `role` with the key known as `key_id`.
    pub fn sign(key: &SigningKey, role: Role, key_id: KeyId, document: &[u8]) -> Self {
        let signature = key
            .sign(&signing_message(&role, &key_id, document))
            .to_bytes();
        Self {
            role,
            key_id,
            signature,
        }
    }

    /// `role:key-id:base64url(signature)`.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.role, self.key_id, b64(&self.signature))
    }

    /// Parses `role:key-id:base64url(signature)`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.splitn(3, ':');
        let (Some(role), Some(key_id), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::new(
                ErrorCode::Malformed,
                format!("signature `{}` must be `role:key-id:signature`", preview(s)),
            ));
        };
        let role = Role::parse(role)?;
        let key_id = KeyId::parse(key_id)?;
        let raw = parse_b64(sig, "the signature")?;
        let signature: [u8; 64] = raw.as_slice().try_into().map_err(|_| {
            Error::new(
                ErrorCode::BadSignature,
                format!("an Ed25519 signature is 64 bytes, got {}", raw.len()),
            )
        })?;
        Ok(Self {
            role,
            key_id,
            signature,
        })
    }
}

/// Encodes signatures as a comma-separated list (no spaces), the value of the
/// `Countersign-Signature` header.
pub fn encode_list(entries: &[SignatureEntry]) -> String {
    entries
        .iter()
        .map(SignatureEntry::encode)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a signature list: 1 to [`MAX_SIGNATURES`] entries separated by `,`.
pub fn parse_list(s: &str) -> Result<Vec<SignatureEntry>> {
    if s.is_empty() {
        return Err(Error::new(
            ErrorCode::Malformed,
            "the signature list is empty",
        ));
    }
    let items: Vec<&str> = s.split(',').collect();
    if items.len() > MAX_SIGNATURES {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!(
                "at most {MAX_SIGNATURES} signatures may travel with a document, got {}",
                items.len()
            ),
        ));
    }
    items.into_iter().map(SignatureEntry::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip_and_errors() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let e = SignatureEntry::sign(&key, Role::vendor(), KeyId::parse("k1").unwrap(), b"doc");
        let list = encode_list(&[e.clone(), e.clone()]);
        assert_eq!(parse_list(&list).unwrap(), vec![e.clone(), e]);
        let code = |s: &str| parse_list(s).err().map(|e| e.code());
        assert_eq!(code(""), Some(ErrorCode::Malformed));
        assert_eq!(code("vendor:k1"), Some(ErrorCode::Malformed));
        assert_eq!(code("vendor:k1:AAAA"), Some(ErrorCode::BadSignature));
        assert_eq!(code("vendor:k1:!!"), Some(ErrorCode::Malformed));
        assert_eq!(code("Vendor:k1:AAAA"), Some(ErrorCode::InvalidField));
        let many = vec![list.split(',').next().unwrap(); 17].join(",");
        assert_eq!(code(&many), Some(ErrorCode::TooLarge));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn weak_keys_are_refused() {
        let weak = |bytes: [u8; 32]| PublicKey::from_bytes(&bytes).err().map(|e| e.code());
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(weak(identity), Some(ErrorCode::WeakKey), "small order");
        // The identity again, spelled y = p + 1 (non-canonical).
        let non_canonical =
            hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert_eq!(
            weak(non_canonical),
            Some(ErrorCode::WeakKey),
            "non-canonical"
        );
        // speccheck case 3's key: large order but with a torsion component.
        let mixed = hex32("cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d");
        assert_eq!(weak(mixed), Some(ErrorCode::WeakKey), "mixed order");
        let honest = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        assert!(PublicKey::from_bytes(&honest).is_ok());
    }
}
