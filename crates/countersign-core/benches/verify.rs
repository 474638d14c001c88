//! Full verification of a 2-of-2 request (parse + policy + two strict verifies) against
//! two bare `verify_strict` calls over the same messages, side by side in one run.
//!
//! `cargo bench -p countersign-core --bench verify`
//!
//! Rounds alternate between the two so that machine noise hits both alike; the
//! medians and their ratio are printed. Nothing is asserted: numbers go to
//! BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // a benchmark binary over its own fixed data

use countersign_core::ed25519_dalek::{Signature, SigningKey};
use countersign_core::signature::signing_message;
use countersign_core::{
    AuthorizedKey, Bucket, GatekeeperId, KeyId, Keyring, Nonce, ObjectKey, Operation, Policy,
    PublicKey, Request, RequestVerifier, Role, SignatureEntry, Subject,
};
use std::hint::black_box;
use std::time::Instant;

const NOW: u64 = 1_800_000_000;
const ITERS: u32 = 2_000;
const ROUNDS: usize = 15;

fn main() {
    let keys = [
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    ];
    let ids = [
        KeyId::parse("vendor-1").unwrap(),
        KeyId::parse("vendor-2").unwrap(),
    ];
    let keyring = Keyring::new(keys.iter().zip(&ids).map(|(k, id)| AuthorizedKey {
        key_id: id.clone(),
        role: Role::vendor(),
        public_key: PublicKey::from_bytes(&k.verifying_key().to_bytes()).unwrap(),
        not_before: None,
        not_after: None,
    }))
    .unwrap();
    let verifier = RequestVerifier::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Policy::new(keyring, [(Role::vendor(), 2)]).unwrap(),
        900,
        30,
    )
    .unwrap();
    let canonical = Request::from_parts(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("patient-reports").unwrap(),
        Operation::Get {
            key: ObjectKey::parse("org-17/reports/2026/visit-0001/screenshot 3.png").unwrap(),
            range: None,
        },
        Subject::parse("user-42@clinic.example").unwrap(),
        NOW,
        NOW + 300,
        Nonce([7; 16]),
    )
    .unwrap()
    .encode();
    let sigs: Vec<SignatureEntry> = keys
        .iter()
        .zip(&ids)
        .map(|(k, id)| SignatureEntry::sign(k, Role::vendor(), id.clone(), &canonical))
        .collect();
    let bare: Vec<_> = keys
        .iter()
        .zip(&sigs)
        .map(|(k, s)| {
            (
                k.verifying_key(),
                signing_message(&s.role, &s.key_id, &canonical),
                Signature::from_bytes(&s.signature),
            )
        })
        .collect();

    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..ITERS {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS)
    };
    let (mut full, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(time(&|| {
            for (vk, msg, sig) in &bare {
                vk.verify_strict(black_box(msg), black_box(sig)).unwrap();
            }
        }));
        full.push(time(&|| {
            verifier
                .verify(black_box(&canonical), black_box(&sigs), NOW)
                .unwrap();
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (full, base) = (median(&mut full), median(&mut base));
    println!(
        "canonical request: {} bytes, {ROUNDS} rounds x {ITERS} iterations, medians",
        canonical.len()
    );
    println!("two bare verify_strict calls            {base:8.2} us");
    println!("RequestVerifier::verify, 2-of-2 policy  {full:8.2} us");
    println!(
        "ratio full / bare                        {:8.3}",
        full / base
    );
}
