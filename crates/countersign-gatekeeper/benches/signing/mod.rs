//! Requests signed the way the benchmarks send them: gatekeeper `gk.bench`, bucket
//! `bench`, two vendor keys (`v1`, `v2`) with fixed seeds, a fresh random nonce each.

use crate::common::now;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::signature::encode_list;
use countersign_core::text::b64;
use countersign_core::{
    Bucket, GatekeeperId, KeyId, Nonce, Operation, Request, Role, SignatureEntry, Subject,
};

/// The gatekeeper id the benchmarks' configurations name.
pub const GK_ID: &str = "gk.bench";
/// The bucket the benchmarks use.
pub const BUCKET: &str = "bench";

/// The two vendor keys (`v1`, `v2`) the benchmarks' configurations trust.
pub fn vendor_keys() -> [SigningKey; 2] {
    [
        SigningKey::from_bytes(&[21; 32]),
        SigningKey::from_bytes(&[22; 32]),
    ]
}

/// The canonical request for `op` and its two vendor signatures.
pub fn sign_raw(op: Operation) -> (Vec<u8>, Vec<SignatureEntry>) {
    let t = now();
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let request = Request::from_parts(
        GatekeeperId::parse(GK_ID).unwrap(),
        Bucket::parse(BUCKET).unwrap(),
        op,
        Subject::parse("bench-client").unwrap(),
        t - 5,
        t + 600,
        Nonce(nonce),
    )
    .unwrap();
    let canonical = request.encode();
    let sigs = vendor_keys()
        .iter()
        .zip(["v1", "v2"])
        .map(|(k, id)| {
            SignatureEntry::sign(k, Role::vendor(), KeyId::parse(id).unwrap(), &canonical)
        })
        .collect();
    (canonical, sigs)
}

/// The `Countersign-Request` and `Countersign-Signature` header values of `op`.
pub fn sign(op: Operation) -> (String, String) {
    let (canonical, sigs) = sign_raw(op);
    (b64(&canonical), encode_list(&sigs))
}
