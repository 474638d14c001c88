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
