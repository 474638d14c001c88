//! Replays `tests/vectors/at-rest.json`: every honest object seals to its stored bytes
//! and opens to its plaintext; every tampering is refused with its code.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

#[test]
fn every_at_rest_vector_gives_its_expected_result() {
    let json = include_str!("../../../tests/vectors/at-rest.json");
    let results = countersign_vectors::at_rest::replay(json).unwrap();
    assert!(results.len() >= 15, "only {} cases", results.len());
    let mut tampered = 0;
    for (case, expected, got) in results {
        assert_eq!(got, expected, "case {case}");
        tampered += usize::from(expected == "stored_object_tampered");
    }
    assert!(tampered >= 8);
}
