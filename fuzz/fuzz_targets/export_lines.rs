//! `ExportVerifier` never panics on any export, and how the bytes are cut into chunks
//! does not change its answer: the export fed whole and fed in two pieces (cut where
//! the first byte says) end with the same report or the same error.
#![no_main]

use countersign_core::export::ExportVerifier;
use countersign_core::signature::PublicKey;
use countersign_core::{AuthorizedKey, KeyId, Keyring, Policy, Role};
use libfuzzer_sys::fuzz_target;

fn verify(policy: &Policy, key: PublicKey, pieces: &[&[u8]]) -> String {
    let mut v = ExportVerifier::new(policy, vec![key], Vec::new(), 0);
    for p in pieces {
        if let Err(e) = v.chunk(p) {
            return e.to_string();
        }
    }
    format!("{:?}", v.finish())
}

fuzz_target!(|data: &[u8]| {
    let signing = countersign_core::ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let key = PublicKey::from_bytes(&signing.verifying_key().to_bytes()).unwrap();
    let policy = Policy::new(
        Keyring::new([AuthorizedKey {
            key_id: KeyId::parse("gk-1").unwrap(),
            role: Role::gatekeeper(),
            public_key: key,
            not_before: None,
            not_after: None,
        }])
        .unwrap(),
        [(Role::gatekeeper(), 1)],
    )
    .unwrap();
    let cut = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    assert_eq!(
        verify(&policy, key, &[data]),
        verify(&policy, key, &[a, b]),
        "the answer depends on where the export was cut"
    );
});
