//! `Request::parse` never panics, and what it accepts is canonical: it re-encodes to
//! exactly the bytes it was parsed from.
#![no_main]

use countersign_core::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::parse(data) {
        assert_eq!(request.encode(), data, "an accepted request is not canonical");
    }
});
