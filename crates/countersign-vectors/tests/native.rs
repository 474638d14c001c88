//! Replays every conformance vector and the third-party Ed25519 vectors natively.
//! `tests/browser.rs` replays the same files in headless Chromium and must agree.
#![cfg(not(target_arch = "wasm32"))]
// Test helpers unwrap and index freely: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod data;

use countersign_vectors::{SPECCHECK_DECISIONS, replay_file, replay_speccheck, replay_wycheproof};

#[test]
fn every_vector_gives_its_expected_result() {
    let mut total = 0;
    let mut codes = std::collections::BTreeSet::new();
    for (name, json) in data::FILES {
        for (case, expected, got) in replay_file(json).unwrap() {
            assert_eq!(got, expected, "{name}.json case {case}");
            codes.insert(expected);
            total += 1;
        }
    }
    assert!(total >= 40, "only {total} cases");
    assert!(codes.len() > 10, "only {} distinct results", codes.len());
    for code in ["duplicate_key", "listing_mismatch", "receipt_mismatch"] {
        assert!(codes.contains(code), "no vector expects {code}");
    }
}

#[test]
fn every_kind_of_document_has_vectors() {
    use countersign_vectors::{Kind, VectorFile};
    let mut kinds = Vec::new();
    for (_, json) in data::FILES {
        let file: VectorFile = serde_json::from_str(json).unwrap();
        kinds.extend(file.cases.iter().map(|c| c.kind));
    }
    for kind in [
        Kind::Request,
        Kind::Receipt,
        Kind::Manifest,
        Kind::Listing,
        Kind::AuditEntry,
    ] {
        let ok = kinds.iter().filter(|&&k| k == kind).count();
        assert!(ok >= 3, "{kind:?}: only {ok} cases");
    }
}

#[test]
fn wycheproof_cases_give_their_labelled_result() {
    let results = replay_wycheproof(data::WYCHEPROOF).unwrap();
    assert_eq!(results.len(), 151);
    for (id, valid, accepted) in results {
        assert_eq!(accepted, valid, "Wycheproof tcId {id}");
    }
}

#[test]
fn speccheck_decisions_are_pinned() {
    assert_eq!(
        replay_speccheck(data::SPECCHECK).unwrap(),
        SPECCHECK_DECISIONS
    );
}

#[test]
fn object_keys_are_exactly_the_nfc_strings() {
    data::assert_object_keys_are_exactly_the_nfc_strings();
}

#[test]
fn transparency_log_vectors_give_their_expected_result() {
    let results = countersign_vectors::tlog::replay_tlog_file(data::TLOG).unwrap();
    assert!(results.len() >= 40, "only {} cases", results.len());
    let mut codes = std::collections::BTreeSet::new();
    for (case, expected, got) in results {
        assert_eq!(got, expected, "tlog.json case {case}");
        codes.insert(expected);
    }
    for code in [
        "ok",
        "audit_chain_broken",
        "bad_signature",
        "unknown_key",
        "wrong_audience",
        "malformed",
        "non_canonical",
    ] {
        assert!(codes.contains(code), "no tlog vector expects {code}");
    }
}
