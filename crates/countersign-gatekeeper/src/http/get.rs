//! GET and HEAD: look the object up in the index (never in the bucket), then, once
//! the entry is in the log, answer its manifest and stream its bytes.
//!
//! Every object response carries `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: sandbox`, so an uploaded `text/html` cannot run script
//! in whatever page opens it.

use crate::encryption::{ObjectCipher, WrappedKey};
use crate::error::ApiError;
use crate::http::Gatekeeper;
use crate::http::pipeline::{Attempt, Authorized};
use crate::ledger::{AuditDraft, IndexedObject};
use crate::storage::StorageError;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use countersign_core::at_rest::Binding;
use countersign_core::text::{b64, hex};
use countersign_core::transport::{MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER};
use countersign_core::{BodyDigest, Decision, ErrorCode, ObjectKey};
use futures::StreamExt as _;
use std::ops::Range;

/// An object found in the index, and the span asked for.
#[derive(Debug)]
pub struct Found {
    object: IndexedObject,
    /// The wrapped data key, read with the row (`None`: stored in plaintext).
    data_key: Option<WrappedKey>,
    span: Range<u64>,
    ranged: bool,
}

/// Looks the object up (with its wrapped data key, in the same database call) and
/// checks the signed range against its size.
pub async fn prepare(
    gk: &Gatekeeper,
    auth: &Authorized,
    _parts: &Parts,
    attempt: &mut Attempt,
) -> Result<Found, ApiError> {
    let (key, range) = match auth.request().operation() {
        countersign_core::Operation::Get { key, range } => (key, *range),
        countersign_core::Operation::Head { key } => (key, None),
        _ => return Err(ApiError::new(ErrorCode::Internal, "GET or HEAD expected")),
    };
    let (object, data_key) = gk
        .ledger
        .object_to_read(auth.bucket().as_str(), key.as_str())
        .await
        .map_err(|e| {
            tracing::warn!("index lookup failed: {e}");
            ApiError::audit_unavailable()
        })?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such object"))?;
    let span = match range {
        None => 0..object.size,
        Some(r) if r.first() < object.size => {
            r.first()..r.last().saturating_add(1).min(object.size)
        }
        Some(r) => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "the range starts at {} but the object has {} bytes",
                    r.first(),
                    object.size
                ),
            ));
        }
    };
    if auth.operation() == crate::http::pipeline::Operation::Get {
        attempt.bytes = span.end - span.start;
    }
    Ok(Found {
        object,
        data_key,
        span,
        ranged: range.is_some(),
    })
}

/// The cipher that opens `object`, if it is stored encrypted (`wrapped` is its data
/// key as the index records it): the data key is unwrapped by the bucket's keyring
/// (`key_unavailable` if the KEK is missing or wrong, never garbage).
async fn object_cipher(
    gk: &Gatekeeper,
    auth: &Authorized,
    object: &IndexedObject,
    wrapped: Option<&WrappedKey>,
) -> Result<Option<ObjectCipher>, ApiError> {
    let Some(wrapped) = wrapped else {
        return Ok(None);
    };
    let ring = gk.storage.keyring(auth.bucket()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::KeyUnavailable,
            "the object is encrypted but its bucket has no keyring configured",
        )
    })?;
    let (key, header) = ring
        .open(wrapped, auth.bucket(), &object.storage_name)
        .await?;
    let object_key = ObjectKey::parse(&object.key)?;
    let body = BodyDigest {
        sha256: object.sha256,
        length: object.size,
    };
    Ok(Some(ObjectCipher {
        key,
        header,
        binding: Binding::new(auth.bucket(), &object.storage_name, &object_key, &body),
    }))
}

/// A storage failure as the client sees it: tampering keeps its own code, anything
/// else is `storage_unavailable` (details in the server log).
fn storage_error(e: StorageError) -> ApiError {
    tracing::warn!("get of a stored object failed: {e}");
    match e {
        StorageError::Sealing(e) => e.into(),
        _ => ApiError::storage_unavailable(),
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// The manifest, type and safety headers of an object response.
pub fn object_headers(o: &IndexedObject, headers: &mut HeaderMap) {
    set(headers, MANIFEST_HEADER, &b64(&o.manifest));
    set(headers, MANIFEST_SIGNATURE_HEADER, &o.manifest_signatures);
    if let Ok(v) = HeaderValue::from_str(&o.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    set(headers, "etag", &format!("\"{}\"", hex(&o.sha256)));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
}

/// HEAD: the manifest and the size, no body.
pub fn head_response(found: &Found) -> Response {
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    object_headers(&found.object, h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(found.object.size));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

/// GET: opens the stored bytes (a failure here is recorded by the caller as a second
/// entry) and streams them, cut at the request's deadline. A failure after the
/// answer started (a later segment that fails authentication, the store gone) is
/// recorded as a second entry too, from `late`: denying, with its code and the
/// bytes released before it.
pub async fn respond(
    gk: &Gatekeeper,
    auth: &Authorized,
    found: Found,
    late: AuditDraft,
) -> Result<Response, ApiError> {
    let cipher = object_cipher(gk, auth, &found.object, found.data_key.as_ref()).await?;
    let mut stream = gk
        .storage
        .get(
            auth.bucket(),
            &found.object.storage_name,
            found.span.clone(),
            cipher,
        )
        .await
        .map_err(storage_error)?
        // Polled once more after its end by the chain below.
        .fuse();
    // The first piece is read before the answer starts, so an object whose first
    // segment (or header) fails authentication is refused with its own code and the
    // caller's second audit entry. A later segment that fails cuts the body short
    // before any of its bytes and is audited here, in a task of its own so a client
    // that goes away cannot stop it; the client's `body_mismatch` check is the
    // second line.
    let first = match stream.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(storage_error(e)),
        None => None,
    };
    let where_ = format!("{}/{}", auth.bucket(), found.object.storage_name);
    let ledger = gk.ledger.clone();
    let mut late = Some(late);
    let mut sent = 0u64;
    let stream = futures::stream::iter(first.map(Ok))
        .chain(stream)
        .inspect(move |r| match r {
            Ok(b) => sent += b.len() as u64,
            Err(e) => {
                tracing::warn!("GET of {where_} cut short after {sent} bytes: {e}");
                let code = match e {
                    StorageError::Sealing(e) => e.code(),
                    _ => ErrorCode::StorageUnavailable,
                };
                if let Some(mut draft) = late.take() {
                    draft.decision = Decision::Deny(code);
                    draft.bytes = sent;
                    draft.latency_us = draft
                        .latency_us
                        .saturating_add(crate::http::now_ms().saturating_sub(draft.time_ms) * 1000);
                    draft.time_ms = crate::http::now_ms();
                    let ledger = ledger.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ledger.append(draft, None).await {
                            tracing::warn!("recording a GET cut short failed: {e}");
                        }
                    });
                }
            }
        });
    let length = found.span.end - found.span.start;
    gk.metrics.add_bytes_out(length);
    let deadline = tokio::time::Instant::from_std(auth.deadline());
    let stream = stream
        .take_until(tokio::time::sleep_until(deadline))
        .map(|r| r.map_err(std::io::Error::other));
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    object_headers(&found.object, h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if found.ranged {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(
            r.headers_mut(),
            "content-range",
            &format!(
                "bytes {}-{}/{}",
                found.span.start,
                found.span.end.saturating_sub(1),
                found.object.size
            ),
        );
    }
    Ok(r)
}
