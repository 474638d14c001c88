//! `LogProofAnswer::parse` (the answer of `GET /v1/log/proof/<index>`) never panics,
//! and an accepted answer re-encodes to exactly its bytes.
#![no_main]

use countersign_core::logged::LogProofAnswer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = LogProofAnswer::parse(data) {
        assert_eq!(
            answer.encode(),
            data,
            "an accepted proof answer is not canonical"
        );
    }
});
