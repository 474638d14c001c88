//! Property tests of the canonical form and of verification.
// Test helpers unwrap and index freely: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ByteRange, ContentType, GatekeeperId, KeyId, Keyring,
    ListPrefix, Manifest, Nonce, ObjectKey, Operation, Policy, PublicKey, Receipt, Request,
    RequestVerifier, Role, SignatureEntry, Subject,
};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn segment() -> impl Strategy<Value = String> {
    // Letters, digits, punctuation, spaces, `%`, `+`, and non-ASCII (NFC-stable) text.
    "[a-zA-Z0-9 ._~%+!()'-]{1,12}|[äöüß日本語фай]{1,4}"
        .prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn object_key() -> impl Strategy<Value = ObjectKey> {
    prop::collection::vec(segment(), 1..6)
        .prop_filter_map("valid key", |segs| ObjectKey::parse(&segs.join("/")).ok())
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (
            object_key(),
            prop::option::of((0u64..1 << 40, 0u64..1 << 20))
        )
            .prop_map(|(key, r)| {
                Operation::Get {
                    key,
                    range: r.and_then(|(a, len)| ByteRange::new(a, a + len).ok()),
                }
            }),
        object_key().prop_map(|key| Operation::Head { key }),
        (object_key(), any::<[u8; 32]>(), 0u64..1 << 53).prop_map(|(key, sha256, length)| {
            Operation::Put {
                key,
                content_type: ContentType::parse("image/png").unwrap(),
                body: BodyDigest { sha256, length },
            }
        }),
        (object_key(), any::<bool>()).prop_map(|(k, slash)| Operation::List {
            prefix: ListPrefix::parse(&if slash {
                format!("{k}/")
            } else {
                k.to_string()
            })
            .unwrap()
        }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        operation(),
        "[!-~]{1,128}",
        0u64..(1 << 53) - 100_000,
        1u64..=900,
        any::<[u8; 16]>(),
    )
        .prop_map(|(op, subject, issued, life, nonce)| {
            Request::from_parts(
                GatekeeperId::parse("gk.acme").unwrap(),
                Bucket::parse("patient-reports").unwrap(),
                op,
                Subject::parse(&subject).unwrap(),
                issued,
                issued + life,
                Nonce(nonce),
            )
            .unwrap()
        })
}

fn setup() -> (SigningKey, KeyId, RequestVerifier) {
    let key = SigningKey::from_bytes(&[5; 32]);
    let id = KeyId::parse("vendor-1").unwrap();
    let keyring = Keyring::new([AuthorizedKey {
        key_id: id.clone(),
        role: Role::vendor(),
        public_key: PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap(),
        not_before: None,
        not_after: None,
    }])
    .unwrap();
    let policy = Policy::new(keyring, [(Role::vendor(), 1)]).unwrap();
    let verifier =
        RequestVerifier::new(GatekeeperId::parse("gk.acme").unwrap(), policy, 900, 30).unwrap();
    (key, id, verifier)
}

fn signed_get() -> (Vec<u8>, SignatureEntry, RequestVerifier) {
    let (key, id, verifier) = setup();
    let request = Request::from_parts(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("patient-reports").unwrap(),
        Operation::Get {
            key: ObjectKey::parse("org-1/scan 1.png").unwrap(),
            range: None,
        },
        Subject::parse("user-42").unwrap(),
        NOW,
        NOW + 300,
        Nonce([9; 16]),
    )
    .unwrap();
    let canonical = request.encode();
    let sig = SignatureEntry::sign(&key, Role::vendor(), id, &canonical);
    (canonical, sig, verifier)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_parse_round_trip(req in request()) {
        let bytes = req.encode();
        let parsed = Request::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &req);
        prop_assert_eq!(parsed.encode(), bytes);
    }

    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Request::parse(&bytes);
        let _ = Receipt::parse(&bytes);
        let _ = Manifest::parse(&bytes);
        let _ = countersign_core::signature::parse_list(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parse_of_mutated_canonical_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (mut canonical, _, _) = signed_get();
        let i = pos.index(canonical.len());
        canonical[i] = byte;
        let _ = Request::parse(&canonical);
    }

    #[test]
    fn flipping_any_bit_of_the_canonical_bytes_fails(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut canonical, sig, verifier) = signed_get();
        prop_assert!(verifier.verify(&canonical, std::slice::from_ref(&sig), NOW).is_ok());
        let i = pos.index(canonical.len());
        canonical[i] ^= 1 << bit;
        prop_assert!(verifier.verify(&canonical, &[sig], NOW).is_err());
    }

    #[test]
    fn flipping_any_bit_of_the_signature_fails(pos in 0usize..64, bit in 0u8..8) {
        let (canonical, mut sig, verifier) = signed_get();
        sig.signature[pos] ^= 1 << bit;
        let err = verifier.verify(&canonical, &[sig], NOW).unwrap_err();
        prop_assert_eq!(err.code(), countersign_core::ErrorCode::BadSignature);
    }

    #[test]
    fn object_keys_never_contain_traversal(s in "[a-z./\\\\]{0,12}") {
        if let Ok(key) = ObjectKey::parse(&s) {
            prop_assert!(key.segments().all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
            prop_assert!(!s.contains('\\'));
        }
    }
}

proptest! {
    /// A proof endpoint's answer reads back as written, and no bytes make the reader
    /// panic.
    #[test]
    fn log_proof_answers_round_trip_and_never_panic(
        size in 1u64..1 << 53,
        at in any::<prop::sample::Index>(),
        path in prop::collection::vec(any::<[u8; 32]>(), 0..=64),
        note in prop::collection::vec(any::<u8>(), 1..300),
        noise in prop::collection::vec(any::<u8>(), 0..400),
        cut in any::<prop::sample::Index>(),
    ) {
        use countersign_core::logged::LogProofAnswer;
        let answer = LogProofAnswer { index: at.index(size as usize) as u64, size, path, note };
        let bytes = answer.encode();
        prop_assert_eq!(LogProofAnswer::parse(&bytes).unwrap(), answer);
        let _ = LogProofAnswer::parse(&bytes[..cut.index(bytes.len())]);
        let _ = LogProofAnswer::parse(&noise);
    }
}
