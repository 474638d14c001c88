//! The vector files, embedded so the same tests run natively and in a browser (which
//! has no file system).

/// `(name, JSON)` of every Countersign vector file.
pub const FILES: [(&str, &str); 6] = [
    (
        "requests",
        include_str!("../../../../tests/vectors/requests.json"),
    ),
    (
        "signatures",
        include_str!("../../../../tests/vectors/signatures.json"),
    ),
    (
        "receipts",
        include_str!("../../../../tests/vectors/receipts.json"),
    ),
    (
        "manifests",
        include_str!("../../../../tests/vectors/manifests.json"),
    ),
    (
        "listings",
        include_str!("../../../../tests/vectors/listings.json"),
    ),
    (
        "audit-entries",
        include_str!("../../../../tests/vectors/audit-entries.json"),
    ),
];

/// Project Wycheproof's Ed25519 cases.
pub const WYCHEPROOF: &str =
    include_str!("../../../../tests/vectors/third_party/wycheproof/ed25519_test.json");

/// The ed25519-speccheck cases.
pub const SPECCHECK: &str =
    include_str!("../../../../tests/vectors/third_party/ed25519-speccheck/cases.json");

/// The transparency-log vectors (`countersign_vectors::tlog`).
pub const TLOG: &str = include_str!("../../../../tests/vectors/tlog.json");
