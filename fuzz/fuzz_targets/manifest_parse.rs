//! `Manifest::parse` never panics, and an accepted manifest re-encodes to exactly its
//! bytes.
#![no_main]

use countersign_core::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse(data) {
        assert_eq!(manifest.encode(), data, "an accepted manifest is not canonical");
    }
});
