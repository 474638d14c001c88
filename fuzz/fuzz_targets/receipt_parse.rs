//! `Receipt::parse` never panics, and an accepted receipt re-encodes to exactly its
//! bytes.
#![no_main]

use countersign_core::Receipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(receipt) = Receipt::parse(data) {
        assert_eq!(receipt.encode(), data, "an accepted receipt is not canonical");
    }
});
