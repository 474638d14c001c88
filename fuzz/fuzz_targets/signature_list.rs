//! `signature::parse_list` never panics, and an accepted list re-encodes to exactly
//! its text (one spelling per list).
#![no_main]

use countersign_core::signature::{encode_list, parse_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = parse_list(text) {
        assert_eq!(encode_list(&list), text, "an accepted list is not canonical");
    }
});
