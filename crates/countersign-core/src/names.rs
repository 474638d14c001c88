//! Parsed names: each type can only hold a value that satisfies its rule in
//! `docs/PROTOCOL.md`, so code that holds one never re-checks it ("parse, don't
//! validate").

use crate::error::{Error, ErrorCode, Result};
use crate::text::preview;
use std::fmt;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn invalid(code: ErrorCode, what: &str, value: &str, rule: &str) -> Error {
    Error::new(code, format!("{what} `{}` {rule}", preview(value)))
}

/// Checks length and an ASCII alphabet with a distinct alphabet for the first byte.
fn check_ascii(
    value: &str,
    what: &str,
    max: usize,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
    rule: &str,
) -> Result<()> {
    let bytes = value.as_bytes();
    let ok = match bytes.split_first() {
        Some((&f, tail)) => bytes.len() <= max && first(f) && tail.iter().all(|&b| rest(b)),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(ErrorCode::InvalidField, what, value, rule))
    }
}

string_newtype!(
    /// A gatekeeper id, the request's audience: 1–64 bytes of `[a-z0-9.-]`, starting
    /// with a letter or digit.
    GatekeeperId
);

impl GatekeeperId {
    /// Parses a gatekeeper id.
    pub fn parse(s: &str) -> Result<Self> {
        check_ascii(
            s,
            "gatekeeper id",
            64,
            |b| b.is_ascii_lowercase() || b.is_ascii_digit(),
            |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-',
            "must be 1-64 characters of a-z, 0-9, `.` and `-`, starting with a letter or digit",
        )?;
        Ok(Self(s.to_owned()))
    }
}

string_newtype!(
    /// A key id: 1–64 bytes of `[A-Za-z0-9._-]`, starting with a letter or digit.
    KeyId
);

impl KeyId {
    /// Parses a key id.
    pub fn parse(s: &str) -> Result<Self> {
        check_ascii(
            s,
            "key id",
            64,
            |b| b.is_ascii_alphanumeric(),
            |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'),
            "must be 1-64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit",
        )?;
        Ok(Self(s.to_owned()))
    }
}

string_newtype!(
    /// A role name such as `vendor`, `gatekeeper` or `customer-admin`: 1–32 bytes of
    /// `[a-z0-9-]`, starting with a letter.
    Role
);

impl Role {
    /// The vendor backend that vouches for the logged-in, entitled user.
    pub const VENDOR: &'static str = "vendor";
    /// The customer's gatekeeper that applies the customer's policy.
    pub const GATEKEEPER: &'static str = "gatekeeper";
    /// The customer's administrators (audit search and export).
    pub const CUSTOMER_ADMIN: &'static str = "customer-admin";

    /// Parses a role name.
    pub fn parse(s: &str) -> Result<Self> {
        check_ascii(
            s,
            "role",
            32,
            |b| b.is_ascii_lowercase(),
            |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-',
            "must be 1-32 characters of a-z, 0-9 and `-`, starting with a letter",
        )?;
        Ok(Self(s.to_owned()))
    }

    /// The `vendor` role.
    pub fn vendor() -> Self {
        Self(Self::VENDOR.to_owned())
    }

    /// The `gatekeeper` role.
    pub fn gatekeeper() -> Self {
        Self(Self::GATEKEEPER.to_owned())
    }

    /// The `customer-admin` role.
    pub fn customer_admin() -> Self {
        Self(Self::CUSTOMER_ADMIN.to_owned())
    }
}

string_newtype!(
    /// The vendor's user id the request is made for: 1–128 bytes of printable ASCII
    /// (`!` to `~`, no space).
    Subject
);

impl Subject {
    /// Parses a subject.
    pub fn parse(s: &str) -> Result<Self> {
        check_ascii(
            s,
            "subject",
            128,
            |b| b.is_ascii_graphic(),
            |b| b.is_ascii_graphic(),
            "must be 1-128 printable ASCII characters without spaces",
        )?;
        Ok(Self(s.to_owned()))
    }
}

string_newtype!(
    /// A media type `type/subtype`: each part 1 or more of `a-z 0-9 ! # $ & - ^ _ . +`,
    /// at most 127 bytes in all, without parameters.
    ContentType
);

impl ContentType {
    /// Parses a content type.
    pub fn parse(s: &str) -> Result<Self> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b)
                })
        };
        match s.split_once('/') {
            Some((ty, sub)) if s.len() <= 127 && token(ty) && token(sub) => Ok(Self(s.to_owned())),
            _ => Err(invalid(
                ErrorCode::InvalidField,
                "content type",
                s,
                "must be `type/subtype` in lowercase token characters, at most 127 bytes, without parameters",
            )),
        }
    }
}

string_newtype!(
    /// An S3-style bucket name: 3–63 bytes of `[a-z0-9.-]`, starting and ending with a
    /// letter or digit, no `..`, not shaped like an IPv4 address.
    Bucket
);

impl Bucket {
    /// Parses a bucket name.
    pub fn parse(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok = (3..=63).contains(&b.len())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && edge(b.first())
            && edge(b.last())
            && !s.contains("..")
            && !looks_like_ipv4(s);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                ErrorCode::InvalidBucket,
                "bucket",
                s,
                "must be 3-63 characters of a-z, 0-9, `.` and `-`, start and end with a letter or digit, contain no `..` and not look like an IPv4 address",
            ))
        }
    }
}

/// Four dot-separated all-digit labels (`192.168.01.1` included).
fn looks_like_ipv4(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() == 4
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// Maximum length of an object key or list prefix in UTF-8 bytes (as in S3).
pub const MAX_KEY_BYTES: usize = 1024;

/// Characters no key may contain: C0 and C1 controls, DEL, the backslash, and the
/// invisible or direction-changing format characters that make two keys look alike.
fn forbidden_key_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\\' | '\u{ad}' | '\u{61c}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}')
}

/// Shared checks of keys and prefixes: length, characters, NFC.
fn check_key_text(s: &str, what: &str) -> Result<()> {
    if s.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorCode::InvalidKeyPath,
            format!(
                "{what} is {} bytes; at most {MAX_KEY_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    if let Some(c) = s.chars().find(|&c| forbidden_key_char(c)) {
        return Err(Error::new(
            ErrorCode::InvalidKeyPath,
            format!(
                "{what} `{}` contains the forbidden character U+{:04X}",
                preview(s),
                u32::from(c)
            ),
        ));
    }
    if !is_nfc(s) {
        return Err(invalid(
            ErrorCode::InvalidKeyPath,
            what,
            s,
            "is not in Unicode Normalization Form C (NFC)",
        ));
    }
    Ok(())
}

/// Whether `s` is in Normalization Form C, asked of the JavaScript host
/// (`String.prototype.normalize`, built into every browser and Node.js): with the
/// `host-nfc` feature the browser client ships no Unicode tables (about 80 KB of its
/// wasm). ASCII is NFC without asking. The vectors crate's browser tests run every
/// vector and 200,000 generated strings through this path.
#[cfg(all(feature = "host-nfc", target_arch = "wasm32"))]
fn is_nfc(s: &str) -> bool {
    s.is_ascii() || js_sys::JsString::from(s).normalize("NFC") == s
}

/// Whether `s` is in Normalization Form C: the quick check, and where it answers
/// "maybe", NFC computed here (canonical decomposition, canonical ordering, canonical
/// composition; UAX #15) and compared. The crate's own `is_nfc` would do the same but
/// links the compatibility-decomposition tables too. The vectors crate's
/// `object_keys_are_exactly_the_nfc_strings` pins the equivalence, natively and (with
/// the host's `normalize`) in the browser.
#[cfg(not(all(feature = "host-nfc", target_arch = "wasm32")))]
fn is_nfc(s: &str) -> bool {
    use unicode_normalization::char::{canonical_combining_class, compose, decompose_canonical};
    use unicode_normalization::{IsNormalized, is_nfc_quick};
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => return true,
        IsNormalized::No => return false,
        IsNormalized::Maybe => {}
    }
    let mut nfd: Vec<(char, u8)> = Vec::with_capacity(s.len());
    for c in s.chars() {
        decompose_canonical(c, |d| nfd.push((d, canonical_combining_class(d))));
    }
    // Canonical ordering: a stable sort by class of every run of non-starters.
    for run in nfd.split_mut(|&(_, ccc)| ccc == 0) {
        run.sort_by_key(|&(_, ccc)| ccc);
    }
    // Canonical composition.
    let mut nfc: Vec<char> = Vec::with_capacity(nfd.len());
    let mut starter: Option<usize> = None;
    // Class of the last character kept since the starter; None while adjacent to it.
    let mut last: Option<u8> = None;
    for (c, ccc) in nfd {
        if let Some(at) = starter {
            let blocked = last.is_some_and(|l| l == 0 || l >= ccc);
            if let Some(composed) = nfc
                .get(at)
                .and_then(|&l| compose(l, c))
                .filter(|_| !blocked)
            {
                if let Some(slot) = nfc.get_mut(at) {
                    *slot = composed;
                }
                continue;
            }
        }
        if ccc == 0 {
            starter = Some(nfc.len());
            last = None;
        } else {
            last = Some(ccc);
        }
        nfc.push(c);
    }
    nfc.into_iter().eq(s.chars())
}

fn check_segment(seg: &str, what: &str, whole: &str) -> Result<()> {
    match seg {
        "" => Err(invalid(
            ErrorCode::InvalidKeyPath,
            what,
            whole,
            "has an empty segment (leading, trailing or doubled `/`)",
        )),
        "." | ".." => Err(invalid(
            ErrorCode::InvalidKeyPath,
            what,
            whole,
            "has a `.` or `..` segment",
        )),
        _ => Ok(()),
    }
}

string_newtype!(
    /// An object key: 1–1024 bytes of NFC UTF-8, `/`-separated segments that are
    /// neither empty nor `.` nor `..`, no control, backslash or invisible format
    /// characters. It cannot express path traversal.
    ObjectKey
);

impl ObjectKey {
    /// Parses an object key.
    pub fn parse(s: &str) -> Result<Self> {
        check_key_text(s, "object key")?;
        for seg in s.split('/') {
            check_segment(seg, "object key", s)?;
        }
        Ok(Self(s.to_owned()))
    }

    /// The key's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The key percent-encoded for a URL path: every byte except `A-Z a-z 0-9 - . _ ~`
    /// and `/` becomes `%XX` with uppercase hex. This is the only accepted spelling.
    pub fn to_url_path(&self) -> String {
        percent_encode(&self.0)
    }
}

string_newtype!(
    /// A LIST prefix: like an [`ObjectKey`] but it may be empty and its last segment
    /// may be empty (a trailing `/`) or partial (`.` and `..` included, since a prefix
    /// is only matched, never resolved as a path).
    ListPrefix
);

impl ListPrefix {
    /// Parses a list prefix.
    pub fn parse(s: &str) -> Result<Self> {
        check_key_text(s, "list prefix")?;
        if let Some((dirs, _last)) = s.rsplit_once('/') {
            for seg in dirs.split('/') {
                check_segment(seg, "list prefix", s)?;
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether `key` starts with this prefix.
    pub fn matches(&self, key: &ObjectKey) -> bool {
        key.as_str().starts_with(&self.0)
    }
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 - . _ ~ /` as `%XX` (uppercase).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if url_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(upper_hex_digit(b >> 4));
            out.push(upper_hex_digit(b & 0x0f));
        }
    }
    out
}

/// Whether [`percent_encode`] copies `b` as it is.
fn url_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}

/// The strict inverse of [`percent_encode`]: accepts only the text that
/// `percent_encode` writes. Every byte is `A-Z a-z 0-9 - . _ ~ /`, or `%` and two
/// uppercase hex digits spelling a byte outside that set; anything else (lowercase
/// hex, `%41` for `A`, a lone `%`, any other byte) is `non_canonical`. Decoded bytes
/// that are not UTF-8 are `invalid_key_path`. `what` names the value for errors.
pub fn percent_decode(s: &str, what: &str) -> Result<String> {
    let bad = || {
        Error::new(
            ErrorCode::NonCanonical,
            format!(
                "{what} `{}` is not percent-encoded in the one canonical way",
                preview(s)
            ),
        )
    };
    let upper_hex = |b: Option<&u8>| match b {
        Some(&d @ b'0'..=b'9') => Some(d - b'0'),
        Some(&d @ b'A'..=b'F') => Some(d - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.as_bytes().iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (upper_hex(bytes.next()), upper_hex(bytes.next())) else {
                return Err(bad());
            };
            let decoded = hi << 4 | lo;
            if url_unreserved(decoded) {
                return Err(bad());
            }
            out.push(decoded);
        } else if url_unreserved(b) {
            out.push(b);
        } else {
            return Err(bad());
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::new(
            ErrorCode::InvalidKeyPath,
            format!("{what} `{}` does not decode to UTF-8", preview(s)),
        )
    })
}

fn upper_hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

/// A nonce: 16 bytes, chosen at random by the request's builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; 16]);

/// An inclusive byte range `first-last` of a GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    first: u64,
    last: u64,
}

impl ByteRange {
    /// A range; `first <= last <= 2^53-1`.
    pub fn new(first: u64, last: u64) -> Result<Self> {
        if first > last || last > crate::text::MAX_INTEGER {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("byte range {first}-{last} must satisfy first <= last <= 2^53-1"),
            ));
        }
        Ok(Self { first, last })
    }

    /// First byte offset.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last byte offset, inclusive.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// A range is never empty; present for API completeness.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T>(r: Result<T>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn percent_decoding_accepts_only_what_encoding_writes() {
        for text in ["", "a b/ü.pdf", "100% done", "~-._/Az09", "a+b&c=d?e#f"] {
            let encoded = percent_encode(text);
            assert_eq!(percent_decode(&encoded, "x").unwrap(), text);
        }
        for bad in ["%41", "%c3%bc", "%2", "%", "a b", "%2f", "%2F", "%zz", "ü"] {
            assert_eq!(
                code(percent_decode(bad, "x")),
                Some(ErrorCode::NonCanonical),
                "{bad}"
            );
        }
        assert_eq!(
            code(percent_decode("%FF", "x")),
            Some(ErrorCode::InvalidKeyPath)
        );
    }

    #[test]
    fn object_keys() {
        for ok in [
            "a",
            "reports/2026/scan 1.png",
            "ü/日本語/файл.pdf",
            "a+b%2Fc",
            ".hidden/..x/x..",
            &"k".repeat(1024),
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "..",
            "a\\b",
            "a\nb",
            "a\u{7f}",
            "a\u{85}",
            "a\u{202e}b",
            "a\u{61c}b",
            "a\u{e0041}",
            "a\u{200b}",
            "u\u{308}",
            &"k".repeat(1025),
        ] {
            assert_eq!(
                code(ObjectKey::parse(bad)),
                Some(ErrorCode::InvalidKeyPath),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["", "a", "a/", "a/b", "a/.", "a/..", "a/.h"] {
            assert!(ListPrefix::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["/", "/a", "a//", "../a", "a/../", "a\u{0}"] {
            assert_eq!(
                code(ListPrefix::parse(bad)),
                Some(ErrorCode::InvalidKeyPath),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn url_encoding_is_done_once() {
        let key = ObjectKey::parse("a b+c/%2F/ü~").unwrap();
        assert_eq!(key.to_url_path(), "a%20b%2Bc/%252F/%C3%BC~");
    }

    #[test]
    fn buckets() {
        for ok in ["abc", "my.bucket-1", &"a".repeat(63)] {
            assert!(Bucket::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "192.168.01.1",
            &"a".repeat(64),
            "a_b",
        ] {
            assert_eq!(
                code(Bucket::parse(bad)),
                Some(ErrorCode::InvalidBucket),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn small_names() {
        assert!(KeyId::parse("vendor-2026.01_a").is_ok());
        assert_eq!(code(KeyId::parse("-x")), Some(ErrorCode::InvalidField));
        assert_eq!(code(KeyId::parse("a:b")), Some(ErrorCode::InvalidField));
        assert!(Role::parse("customer-admin").is_ok());
        assert_eq!(code(Role::parse("Vendor")), Some(ErrorCode::InvalidField));
        assert!(Subject::parse("auth0|user@example.com").is_ok());
        assert_eq!(code(Subject::parse("a b")), Some(ErrorCode::InvalidField));
        assert_eq!(
            code(Subject::parse(&"s".repeat(129))),
            Some(ErrorCode::InvalidField)
        );
        assert!(ContentType::parse("image/png").is_ok());
        assert!(ContentType::parse("application/vnd.ms-excel").is_ok());
        for bad in [
            "image/PNG",
            "text/plain; charset=utf-8",
            "image",
            "/png",
            "image/",
        ] {
            assert_eq!(
                code(ContentType::parse(bad)),
                Some(ErrorCode::InvalidField),
                "{bad:?}"
            );
        }
        assert!(GatekeeperId::parse("gk.acme-prod").is_ok());
        assert_eq!(
            code(GatekeeperId::parse("GK")),
            Some(ErrorCode::InvalidField)
        );
        assert_eq!(code(ByteRange::new(5, 4)), Some(ErrorCode::InvalidField));
    }
}
