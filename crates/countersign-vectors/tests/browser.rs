//! The same replays as `tests/native.rs`, compiled to wasm32 and run in headless
//! Chromium: native and browser must give identical answers on every case.
#![cfg(target_arch = "wasm32")]
// Test helpers unwrap and index freely: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use countersign_vectors::{SPECCHECK_DECISIONS, replay_file, replay_speccheck, replay_wycheproof};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const FILES: [(&str, &str); 4] = [
    (
        "requests",
        include_str!("../../../tests/vectors/requests.json"),
    ),
    (
        "signatures",
        include_str!("../../../tests/vectors/signatures.json"),
    ),
    (
        "receipts",
        include_str!("../../../tests/vectors/receipts.json"),
    ),
    (
        "manifests",
        include_str!("../../../tests/vectors/manifests.json"),
    ),
];

#[wasm_bindgen_test]
fn every_vector_gives_its_expected_result_in_the_browser() {
    let mut total = 0;
    for (name, json) in FILES {
        for (case, expected, got) in replay_file(json).unwrap() {
            assert_eq!(got, expected, "{name}.json case {case}");
            total += 1;
        }
    }
    assert!(total >= 40, "only {total} cases");
}

#[wasm_bindgen_test]
fn wycheproof_in_the_browser() {
    let json = include_str!("../../../tests/vectors/third_party/wycheproof/ed25519_test.json");
    let results = replay_wycheproof(json).unwrap();
    assert_eq!(results.len(), 151);
    for (id, valid, accepted) in results {
        assert_eq!(accepted, valid, "Wycheproof tcId {id}");
    }
}

#[wasm_bindgen_test]
fn speccheck_in_the_browser() {
    let json = include_str!("../../../tests/vectors/third_party/ed25519-speccheck/cases.json");
    assert_eq!(replay_speccheck(json).unwrap(), SPECCHECK_DECISIONS);
}
