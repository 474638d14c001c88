//! The HTTP transport, defined once for every party: header names, the URL layout,
//! the HTTP status of each error code and the JSON error body. Pure: it builds and
//! reads strings, it sends nothing. `docs/API.md` documents the same.

use crate::error::ErrorCode;
use crate::names::{Bucket, ObjectKey, percent_encode};

/// Request header: base64url (no padding) of the canonical request. Sent exactly once.
pub const REQUEST_HEADER: &str = "countersign-request";
/// Request header: the signature list over the canonical request. Sent exactly once.
pub const SIGNATURE_HEADER: &str = "countersign-signature";
/// Response header: base64url of the gatekeeper's receipt.
pub const RECEIPT_HEADER: &str = "countersign-receipt";
/// Response header: the gatekeeper's signature list over the receipt.
pub const RECEIPT_SIGNATURE_HEADER: &str = "countersign-receipt-signature";
/// Response header (GET, HEAD, PUT): base64url of the object's manifest.
pub const MANIFEST_HEADER: &str = "countersign-manifest";
/// Response header (GET, HEAD, PUT): the gatekeeper's signature list over the manifest.
pub const MANIFEST_SIGNATURE_HEADER: &str = "countersign-manifest-signature";
/// Response header: the id the gatekeeper gave this request (also in its log).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The path prefix of object URLs.
pub const OBJECTS_PREFIX: &str = "/v1/objects/";
/// The path prefix of audit URLs.
pub const AUDIT_PREFIX: &str = "/v1/audit/";

/// The path of an object: `/v1/objects/{bucket}/{key}`, the key percent-encoded
/// exactly as [`ObjectKey::to_url_path`] spells it (the gatekeeper compares bytes).
pub fn object_path(bucket: &Bucket, key: &ObjectKey) -> String {
    format!("{OBJECTS_PREFIX}{bucket}/{}", key.to_url_path())
}

/// The path and query of a listing page: `/v1/objects/{bucket}?prefix=…` with
/// `&after=…` and `&limit=…` when given. `prefix` and `after` are percent-encoded
/// like object keys.
pub fn list_path(bucket: &Bucket, prefix: &str, after: Option<&str>, limit: Option<u32>) -> String {
    let mut out = format!("{OBJECTS_PREFIX}{bucket}?prefix={}", percent_encode(prefix));
    if let Some(a) = after {
        out.push_str("&after=");
        out.push_str(&percent_encode(a));
    }
    if let Some(n) = limit {
        out.push_str(&format!("&limit={n}"));
    }
    out
}

/// The HTTP status the gatekeeper answers with for `code`.
pub fn http_status(code: ErrorCode) -> u16 {
    use ErrorCode as C;
    match code {
        C::Malformed
        | C::UnsupportedVersion
        | C::NonCanonical
        | C::InvalidField
        | C::InvalidBucket
        | C::InvalidKeyPath
        | C::LifetimeTooLong
        | C::BodyMismatch
        | C::RequestMismatch
        | C::ReceiptMismatch
        | C::ManifestMismatch
        | C::AuditChainBroken
        | C::DuplicateKey
        | C::ListingMismatch => 400,
        C::Expired
        | C::NotYetValid
        | C::BadSignature
        | C::WeakKey
        | C::UnknownKey
        | C::WrongRole
        | C::KeyOutsideWindow
        | C::ThresholdNotMet => 401,
        C::WrongAudience | C::IpDenied | C::AccessDenied => 403,
        C::NotFound => 404,
        C::Timeout => 408,
        C::AlreadyExists | C::Replayed => 409,
        C::TooLarge => 413,
        C::RateLimited => 429,
        C::AuditUnavailable | C::StorageUnavailable | C::Overloaded => 503,
        C::Internal => 500,
        C::StoredObjectTampered => 502,
        C::KeyUnavailable => 503,
    }
}

/// The JSON error body: `{"error":{"code":"…","message":"…"}}`.
pub fn error_body(code: ErrorCode, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 48);
    out.push_str("{\"error\":{\"code\":\"");
    out.push_str(code.as_str());
    out.push_str("\",\"message\":\"");
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push_str("\"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_json() {
        let body = error_body(ErrorCode::Malformed, "a \"quoted\"\nline \\ end");
        assert_eq!(
            body,
            "{\"error\":{\"code\":\"malformed\",\"message\":\"a \\\"quoted\\\"\\u000aline \\\\ end\"}}"
        );
    }

    #[test]
    fn paths() -> Result<(), crate::Error> {
        let b = Bucket::parse("reports")?;
        let k = ObjectKey::parse("a b/ü.pdf")?;
        assert_eq!(object_path(&b, &k), "/v1/objects/reports/a%20b/%C3%BC.pdf");
        assert_eq!(
            list_path(&b, "a b/", Some("a b/&x"), Some(10)),
            "/v1/objects/reports?prefix=a%20b/&after=a%20b/%26x&limit=10"
        );
        Ok(())
    }

    #[test]
    fn every_code_has_a_status() {
        for &c in ErrorCode::ALL {
            assert!((400..600).contains(&http_status(c)), "{c}");
        }
    }
}
