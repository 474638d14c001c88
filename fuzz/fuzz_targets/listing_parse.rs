//! `Listing::parse` never panics, and an accepted listing re-encodes to exactly its
//! bytes.
#![no_main]

use countersign_core::Listing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(listing) = Listing::parse(data) {
        assert_eq!(listing.encode(), data, "an accepted listing is not canonical");
    }
});
