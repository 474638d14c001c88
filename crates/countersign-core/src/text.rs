//! The line-oriented text form shared by every signed document (request, receipt,
//! manifest, audit entry, checkpoint): a header line `countersign/v1/<type>`, then
//! `name:value` lines in a fixed order, each ended by one LF. Values never contain
//! control characters, so no field can bleed into the next.

use crate::error::{Error, ErrorCode, Result};
use base64::Engine as _;

/// The protocol version every document of this crate writes.
pub const VERSION: u32 = 1;

/// Largest integer the protocol carries (2^53 - 1, exact in JavaScript numbers).
pub const MAX_INTEGER: u64 = (1 << 53) - 1;

/// Builds a document; the caller writes fields in the specified order.
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn new(kind: &str) -> Self {
        Self::versioned(1, kind)
    }

    /// A document of format version `version` (`countersign/v<version>/<kind>`).
    pub(crate) fn versioned(version: u32, kind: &str) -> Self {
        let mut out = String::with_capacity(512);
        out.push_str("countersign/v");
        out.push_str(&version.to_string());
        out.push('/');
        out.push_str(kind);
        out.push('\n');
        Self { out }
    }

    pub(crate) fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.push_str(name);
        self.out.push(':');
        self.out.push_str(value);
        self.out.push('\n');
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

/// Reads a document field by field, refusing anything but the exact canonical form.
pub(crate) struct Reader<'a> {
    lines: std::str::Split<'a, char>,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks size, UTF-8, the final LF and the header line (version 1 only).
    pub(crate) fn new(bytes: &'a [u8], kind: &'static str, max_len: usize) -> Result<Self> {
        Self::versioned(bytes, kind, max_len, &[1]).map(|(r, _)| r)
    }

    /// Like [`Reader::new`], accepting the header of each version in `versions`;
    /// returns the version found. Another valid version is `unsupported_version`.
    pub(crate) fn versioned(
        bytes: &'a [u8],
        kind: &'static str,
        max_len: usize,
        versions: &[u32],
    ) -> Result<(Self, u32)> {
        if bytes.len() > max_len {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!(
                    "a {kind} may be at most {max_len} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorCode::NonCanonical,
                format!("the {kind} is not valid UTF-8"),
            )
        })?;
        if text.contains('\r') {
            return Err(Error::new(
                ErrorCode::NonCanonical,
                format!("the {kind} contains a CR; lines end with a single LF"),
            ));
        }
        let body = text.strip_suffix('\n').ok_or_else(|| {
            Error::new(
                ErrorCode::NonCanonical,
                format!("the {kind} must end with a single LF"),
            )
        })?;
        let mut lines = body.split('\n');
        let header = lines.next().unwrap_or_default();
        let version = check_header(header, kind, versions)?;
        Ok((Self { lines, kind }, version))
    }

    /// Returns the value of the next line, which must be `name:value`.
    pub(crate) fn field(&mut self, name: &str) -> Result<&'a str> {
        let kind = self.kind;
        let line = self.lines.next().ok_or_else(|| {
            Error::new(
                ErrorCode::NonCanonical,
                format!("the {kind} ends before the field `{name}`"),
            )
        })?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NonCanonical,
                    format!(
                        "expected the field `{name}` in the {kind}, found `{}`",
                        preview(line)
                    ),
                )
            })
    }

    /// Fails if any line is left.
    pub(crate) fn end(mut self) -> Result<()> {
        match self.lines.next() {
            None => Ok(()),
            Some(line) => Err(Error::new(
                ErrorCode::NonCanonical,
                format!(
                    "unexpected data after the last field of the {}: `{}`",
                    self.kind,
                    preview(line)
                ),
            )),
        }
    }
}

fn check_header(header: &str, kind: &str, versions: &[u32]) -> Result<u32> {
    let Some(rest) = header.strip_prefix("countersign/v") else {
        return Err(Error::new(
            ErrorCode::NonCanonical,
            format!("a {kind} must start with `countersign/v1/{kind}`"),
        ));
    };
    let (version, found_kind) = rest.split_once('/').unwrap_or((rest, ""));
    let number = parse_decimal(version, "version").ok();
    if found_kind == kind
        && let Some(v) = number.and_then(|n| versions.iter().find(|&&v| u64::from(v) == n))
    {
        return Ok(*v);
    }
    if number.is_some() && found_kind == kind {
        return Err(Error::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "{kind} version {version} is not supported; this implementation speaks version {VERSION}"
            ),
        ));
    }
    Err(Error::new(
        ErrorCode::NonCanonical,
        format!(
            "expected the header `countersign/v1/{kind}`, found `{}`",
            preview(header)
        ),
    ))
}

/// At most 40 characters of untrusted text, control characters escaped, for messages.
pub(crate) fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// Parses a canonical decimal: `0` or no leading zero, at most [`MAX_INTEGER`].
pub fn parse_decimal(s: &str, field: &str) -> Result<u64> {
    let digits_ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok || (s.len() > 1 && s.starts_with('0')) {
        return Err(Error::new(
            ErrorCode::NonCanonical,
            format!(
                "`{field}` must be a decimal integer without sign or leading zeros, found `{}`",
                preview(s)
            ),
        ));
    }
    match s.parse::<u64>() {
        Ok(v) if v <= MAX_INTEGER => Ok(v),
        _ => Err(Error::new(
            ErrorCode::InvalidField,
            format!("`{field}` must be at most {MAX_INTEGER}"),
        )),
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

/// Parses exactly `N` bytes of lowercase hex.
pub fn parse_hex<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * N {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!("`{field}` must be {} lowercase hex digits", 2 * N),
        ));
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (
            pair.first().copied().and_then(hex_value),
            pair.get(1).copied().and_then(hex_value),
        ) else {
            return Err(Error::new(
                ErrorCode::NonCanonical,
                format!("`{field}` must be lowercase hex, found `{}`", preview(s)),
            ));
        };
        *slot = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Base64url without padding (RFC 4648 §5), the transport encoding of the protocol.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical base64url without padding; `what` names the value for errors.
pub fn parse_b64(s: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| {
            Error::new(
                ErrorCode::Malformed,
                format!("{what} is not canonical unpadded base64url"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_canonical() {
        assert_eq!(parse_decimal("0", "n"), Ok(0));
        assert_eq!(parse_decimal("9007199254740991", "n"), Ok(MAX_INTEGER));
        for bad in ["", "01", "+1", "-1", " 1", "1 ", "1e3", "０"] {
            assert_eq!(
                parse_decimal(bad, "n").map_err(|e| e.code()),
                Err(ErrorCode::NonCanonical),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_decimal("9007199254740992", "n").map_err(|e| e.code()),
            Err(ErrorCode::InvalidField)
        );
    }

    #[test]
    fn hex_is_lowercase_and_exact() {
        assert_eq!(parse_hex::<2>("0aff", "h"), Ok([0x0a, 0xff]));
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        assert_eq!(
            parse_hex::<2>("0AFF", "h").map_err(|e| e.code()),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            parse_hex::<2>("0af", "h").map_err(|e| e.code()),
            Err(ErrorCode::InvalidField)
        );
    }

    #[test]
    fn base64_rejects_padding_and_trailing_bits() {
        assert_eq!(parse_b64("AQI", "x"), Ok(vec![1, 2]));
        assert!(parse_b64("AQI=", "x").is_err());
        assert!(parse_b64("AQJ", "x").is_err());
        assert!(parse_b64("AQ+", "x").is_err());
    }

    #[test]
    fn header_versions() {
        assert!(Reader::new(b"countersign/v1/request\n", "request", 100).is_ok());
        let code = |b: &[u8]| {
            Reader::new(b, "request", 100)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(
            code(b"countersign/v2/request\n"),
            Err(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            code(b"countersign/v1/receipt\n"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            code(b"countersign/v01/request\n"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            code(b"countersign/v1/request"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(code(&[0xff, b'\n']), Err(ErrorCode::NonCanonical));
        assert_eq!(code(&[b'a'; 101]), Err(ErrorCode::TooLarge));
    }
}
