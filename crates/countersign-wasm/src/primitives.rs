//! The protocol's primitives for pages that check other signed data themselves (and
//! for the browser benchmark): strict Ed25519 with the protocol's key rules, and the
//! SHA-256 the client hashes bodies with.

use crate::error::CountersignError;
use countersign_core::{BodyDigest, PublicKey};
use wasm_bindgen::prelude::*;

/// An Ed25519 public key that passed the protocol's key checks (canonical encoding,
/// not of small order, torsion-free). Parse once, verify many times.
#[wasm_bindgen]
pub struct Ed25519PublicKey(PublicKey);

#[wasm_bindgen]
impl Ed25519PublicKey {
    /// Parses 32 bytes; throws a `CountersignError` (`weak_key`) if unacceptable.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8]) -> Result<Ed25519PublicKey, CountersignError> {
        Ok(Self(PublicKey::from_slice(bytes)?))
    }

    /// Strict Ed25519 verification (`docs/PROTOCOL.md`, "Ed25519 verification");
    /// `false` for a signature that is not 64 bytes.
    #[wasm_bindgen(js_name = verifyStrict)]
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        <&[u8; 64]>::try_from(signature).is_ok_and(|sig| self.0.verify_strict(message, sig).is_ok())
    }
}

/// SHA-256 of `bytes` (32 bytes), computed in wasm.
#[wasm_bindgen]
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    BodyDigest::of(bytes).sha256.to_vec()
}

/// SHA-256 of `bytes` exactly as the client hashes bodies (the browser's native
/// digest where available, else wasm).
#[wasm_bindgen(js_name = bodySha256)]
pub async fn body_sha256(bytes: Vec<u8>) -> Vec<u8> {
    crate::client::digest(&bytes).await.sha256.to_vec()
}

/// One-shot strict verification: the key checks, then [`Ed25519PublicKey::verify_strict`].
/// `false` for any unacceptable key or signature. Prefer parsing a key once.
#[wasm_bindgen(js_name = verifyEd25519Strict)]
pub fn verify_ed25519_strict(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    Ed25519PublicKey::new(public_key).is_ok_and(|key| key.verify_strict(message, signature))
}
