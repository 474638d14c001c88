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

/// Checks, over 200,000 generated short strings, that an object key is accepted exactly
/// when it is in NFC by the `unicode-normalization` crate's reference check: natively
/// (the core's own composition) and in the browser (the host's
/// `String.prototype.normalize`). Starters, precomposed letters, combining marks of
/// several classes, Hangul jamo and syllables, singletons and composition exclusions.
pub fn assert_object_keys_are_exactly_the_nfc_strings() {
    use countersign_core::ObjectKey;
    use unicode_normalization::{IsNormalized, is_nfc, is_nfc_quick};
    let pool: Vec<char> = ('\u{41}'..='\u{5a}')
        .chain('\u{c0}'..='\u{17f}')
        .chain('\u{300}'..='\u{36f}')
        .chain('\u{385}'..='\u{3ce}')
        .chain('\u{591}'..='\u{5c7}')
        .chain('\u{93c}'..='\u{94d}')
        .chain('\u{958}'..='\u{95f}')
        .chain('\u{1100}'..='\u{1112}')
        .chain('\u{1161}'..='\u{1175}')
        .chain('\u{11a8}'..='\u{11c2}')
        .chain('\u{1e00}'..='\u{1eff}')
        .chain('\u{1f00}'..='\u{1fff}')
        .chain([
            '\u{212b}',
            '\u{2126}',
            '\u{ac00}',
            '\u{ac01}',
            '\u{d7a3}',
            '\u{f900}',
            '\u{fb1d}',
            '\u{1d15e}',
            '\u{0cd5}',
            '\u{0cc6}',
            '\u{0cbf}',
            '\u{0b47}',
            '\u{0b3e}',
            '\u{0b57}',
        ])
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut maybe = 0;
    for _ in 0..200_000 {
        let len = 1 + (next() % 5) as usize;
        let s: String = (0..len)
            .map(|_| pool[(next() % pool.len() as u64) as usize])
            .collect();
        assert_eq!(ObjectKey::parse(&s).is_ok(), is_nfc(&s), "{s:?}");
        maybe += usize::from(is_nfc_quick(s.chars()) == IsNormalized::Maybe);
    }
    assert!(
        maybe > 10_000,
        "only {maybe} strings exercised the full check"
    );
    // The example a quick-check shortcut gets wrong: `à` + U+0323 reorders.
    assert!(ObjectKey::parse("\u{e0}\u{323}").is_err());
    assert!(ObjectKey::parse("\u{1ea1}\u{300}").is_ok());
}

/// The transparency-log vectors (`countersign_vectors::tlog`).
pub const TLOG: &str = include_str!("../../../../tests/vectors/tlog.json");
