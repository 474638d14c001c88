//! `AuditEntry::parse` never panics and is the strict inverse of `encode`: an accepted
//! entry re-encodes to exactly its bytes, and the re-encoding parses to the same entry.
#![no_main]

use countersign_core::audit::AuditEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = AuditEntry::parse(data) {
        let bytes = entry.encode();
        assert_eq!(bytes, data, "an accepted entry does not re-encode to its bytes");
        assert_eq!(AuditEntry::parse(&bytes).ok(), Some(entry));
    }
});
