//! The same replays as `tests/native.rs`, compiled to wasm32 and run in headless
//! Chromium: native and browser must give identical answers on every case.
#![cfg(target_arch = "wasm32")]
// Test helpers unwrap and index freely: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod data;

use countersign_vectors::{SPECCHECK_DECISIONS, replay_file, replay_speccheck, replay_wycheproof};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn every_vector_gives_its_expected_result_in_the_browser() {
    let mut total = 0;
    for (name, json) in data::FILES {
        for (case, expected, got) in replay_file(json).unwrap() {
            assert_eq!(got, expected, "{name}.json case {case}");
            total += 1;
        }
    }
    assert!(total >= 40, "only {total} cases");
}

#[wasm_bindgen_test]
fn wycheproof_in_the_browser() {
    let results = replay_wycheproof(data::WYCHEPROOF).unwrap();
    assert_eq!(results.len(), 151);
    for (id, valid, accepted) in results {
        assert_eq!(accepted, valid, "Wycheproof tcId {id}");
    }
}

#[wasm_bindgen_test]
fn speccheck_in_the_browser() {
    assert_eq!(
        replay_speccheck(data::SPECCHECK).unwrap(),
        SPECCHECK_DECISIONS
    );
}

#[wasm_bindgen_test]
fn object_keys_are_exactly_the_nfc_strings_in_the_browser() {
    data::assert_object_keys_are_exactly_the_nfc_strings();
}

#[wasm_bindgen_test]
fn transparency_log_vectors_in_the_browser() {
    for (case, expected, got) in countersign_vectors::tlog::replay_tlog_file(data::TLOG).unwrap() {
        assert_eq!(got, expected, "tlog.json case {case}");
    }
}
