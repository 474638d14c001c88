//! GET and HEAD: look the object up in the index (never in the bucket), then, once
//! the entry is in the log, answer its manifest and stream its bytes.
//!
//! Every object response carries `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: sandbox`, so an uploaded `text/html` cannot run script
//! in whatever page opens it.

use crate::error::ApiError;
use crate::http::Gatekeeper;
use crate::http::pipeline::{Attempt, Authorized};
use crate::ledger::IndexedObject;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use countersign_core::ErrorCode;
use countersign_core::text::{b64, hex};
use countersign_core::transport::{MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER};
use futures::StreamExt as _;
use std::ops::Range;

/// An object found in the index, and the span asked for.
#[derive(Debug)]
pub struct Found {
    object: IndexedObject,
    span: Range<u64>,
    ranged: bool,
}

/// Looks the object up and checks the signed range against its size.
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
    let object = gk
        .ledger
        .object(auth.bucket().as_str(), key.as_str())
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
        span,
        ranged: range.is_some(),
    })
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
/// entry) and streams them, cut at the request's deadline.
pub async fn respond(
    gk: &Gatekeeper,
    auth: &Authorized,
    found: Found,
) -> Result<Response, ApiError> {
    let stream = gk
        .storage
        .get(
            auth.bucket(),
            &found.object.storage_name,
            found.span.clone(),
        )
        .await
        .map_err(|e| {
            tracing::warn!("get of a stored object failed: {e}");
            ApiError::storage_unavailable()
        })?;
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
