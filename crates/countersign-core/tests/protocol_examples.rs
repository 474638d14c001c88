//! The audit-log example of `docs/PROTOCOL.md`, rebuilt from code: the document must
//! show exactly these bytes, hashes and signature, so code and spec stay in step.
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use countersign_core::audit::{AuditEntry, CapturedHeader, Checkpoint, GENESIS, verify_chain};
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::text::hex;
use countersign_core::{Decision, ErrorCode, GatekeeperId, KeyId};

const PROTOCOL: &str = include_str!("../../../docs/PROTOCOL.md");

/// The example PUT's `Countersign-Request` and `Countersign-Signature` values, as sent.
const PUT_REQUEST_HEADER: &str = "Y291bnRlcnNpZ24vdjEvcmVxdWVzdAphdWRpZW5jZTpnay5hY21lCm1ldGhvZDpQVVQKYnVja2V0OnBhdGllbnQtcmVwb3J0cwprZXk6b3JnLTEvbm90ZXMvQmVmdW5kIDcgTcO8bGxlci50eHQKcmFuZ2U6CmNvbnRlbnQtdHlwZTp0ZXh0L3BsYWluCmJvZHktc2hhMjU2OmFkZWU1NGRkMzIwNzFhZDU5NjU2ZDFmN2ViZTJmZjNiMDVkMjU1Mjg2ZTFiMDVhNzZkNzNjMDYxYzRhNTdiODIKYm9keS1sZW5ndGg6MjMKc3ViamVjdDp1c2VyLTQyCmlzc3VlZC1hdDoxODAwMDAwMDAwCmV4cGlyZXMtYXQ6MTgwMDAwMDMwMApub25jZTowMDAxMDIwMzA0MDUwNjA3MDgwOTBhMGIwYzBkMGUwZgo";
const PUT_SIGNATURE_HEADER: &str = "vendor:vendor-2026:JeURcSLOrcRhxdlsVvBHzQbAjeR0vYc5139vIX6jCTs23P9sBMiVKC6xqRqT5181DKI0awlJ_D719Y8V446mBg";

fn entries() -> [AuditEntry; 2] {
    let put = AuditEntry {
        seq: 0,
        prev_sha256: GENESIS,
        time_ms: 1_800_000_001_250,
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        // Entry 0 was written by a gatekeeper of entry version 1, entry 1 by one of
        // version 2: one log holds both.
        request_id: None,
        client_ip: "203.0.113.7".parse().unwrap(),
        operation: b"PUT".to_vec(),
        bucket: b"patient-reports".to_vec(),
        key: "org-1/notes/Befund 7 Müller.txt".as_bytes().to_vec(),
        subject: b"user-42".to_vec(),
        decision: Decision::Allow,
        bytes: 23,
        latency_us: 5120,
        request: CapturedHeader::whole(PUT_REQUEST_HEADER.as_bytes()),
        signatures: CapturedHeader::whole(PUT_SIGNATURE_HEADER.as_bytes()),
    };
    let get = AuditEntry {
        seq: 1,
        prev_sha256: put.hash(),
        time_ms: 1_800_000_002_000,
        request_id: Some(b"5b1f0c9e2d7a4c8e9f3a6b2d1e0c7f48".to_vec()),
        client_ip: "2001:db8::42".parse().unwrap(),
        operation: b"GET".to_vec(),
        key: b"reports/100% done.pdf".to_vec(),
        subject: Vec::new(),
        decision: Decision::Deny(ErrorCode::Malformed),
        bytes: 0,
        latency_us: 310,
        request: CapturedHeader::whole(b""),
        signatures: CapturedHeader::whole(b""),
        ..put.clone()
    };
    [put, get]
}

/// Every example block: `(what, text, hash or signature)`.
fn examples() -> Vec<(String, String, String)> {
    let entries = entries();
    let mut out: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            let bytes = e.encode();
            (
                format!("entry {} ({} bytes)", e.seq, bytes.len()),
                String::from_utf8(bytes).unwrap(),
                hex(&e.hash()),
            )
        })
        .collect();
    let (head, count) = verify_chain(&entries, 0, GENESIS).unwrap();
    assert_eq!(count, 2);
    let checkpoint = Checkpoint {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        seq: 1,
        head_sha256: head,
        created_at: 1_800_000_060,
    };
    let (bytes, sig) = checkpoint.sign(
        &SigningKey::from_bytes(&[2; 32]),
        KeyId::parse("gk-2026").unwrap(),
    );
    out.push((
        "checkpoint".into(),
        String::from_utf8(bytes).unwrap(),
        sig.encode(),
    ));
    out
}

#[test]
fn the_audit_example_is_what_the_code_writes() {
    let examples = examples();
    for (what, text, pin) in &examples {
        println!("{what}: {pin}\n{text}");
    }
    for (what, text, pin) in &examples {
        assert!(
            PROTOCOL.contains(&format!("```\n{text}```")),
            "{what} differs from PROTOCOL.md"
        );
        assert!(PROTOCOL.contains(pin.as_str()), "{what}: {pin}");
    }
    for entry in entries() {
        assert_eq!(AuditEntry::parse(&entry.encode()).unwrap(), entry);
    }
}

/// The proof endpoint's example answer in `docs/PROTOCOL.md` ("The proof endpoint"):
/// leaf 3 of a tree of the five leaves `leaf_hash([i])`, its checkpoint signed by the
/// note key `gk.acme/audit` of seed `[5; 32]`. The document shows exactly these bytes,
/// and they verify.
#[test]
fn the_log_proof_example_is_what_the_code_writes() {
    use countersign_core::logged::{LogProofAnswer, LogTrust, verify_proof_answer};
    use countersign_core::merkle::{MemoryTree, leaf_hash};
    use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
    let tree = MemoryTree::from_leaves((0..5u8).map(|i| leaf_hash(&[i])).collect());
    let signer = NoteSigner::ed25519("gk.acme/audit", SigningKey::from_bytes(&[5; 32])).unwrap();
    let checkpoint =
        Checkpoint::new("gk.acme/audit", 5, tree.root(5).unwrap(), Vec::new()).unwrap();
    let answer = LogProofAnswer {
        index: 3,
        size: 5,
        path: tree.inclusion_proof(3, 5).unwrap(),
        note: SignedNote::sign(checkpoint.body(), &[&signer])
            .unwrap()
            .encode()
            .into_bytes(),
    };
    let text = String::from_utf8(answer.encode()).unwrap();
    assert!(
        PROTOCOL.contains(&format!("```\n{text}```\n")),
        "docs/PROTOCOL.md must show this answer:\n{text}"
    );
    let receipt = countersign_core::Receipt {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        request_sha256: [0; 32],
        decision: Decision::Allow,
        decided_at: 1_800_000_000,
        audit_seq: 3,
        leaf_sha256: Some(leaf_hash(&[3])),
    };
    let trust = LogTrust {
        log_key: NoteVerifier::parse(&signer.verifier_key()).unwrap(),
        witnesses: Vec::new(),
        quorum: 0,
    };
    let parsed = LogProofAnswer::parse(text.as_bytes()).unwrap();
    verify_proof_answer(&receipt, &parsed, &trust).unwrap();
}
