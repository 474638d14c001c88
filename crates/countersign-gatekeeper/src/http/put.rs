//! PUT: reserve the key, receive the body into an invisible upload while hashing it
//! (cut at the request's deadline and below a minimum rate), and check it against the
//! signed SHA-256 and length. Only after the `allow` entry is durable is the object
//! published and indexed ([`complete`]).

use crate::error::ApiError;
use crate::http::pipeline::{Attempt, Authorized};
use crate::http::{Gatekeeper, get, json_response};
use crate::upload::{Received, Reserved};
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use countersign_core::text::hex;
use countersign_core::{BodyDigest, ErrorCode};
use futures::StreamExt as _;
use std::time::Duration;
use tokio::time::Instant;

/// The body's rate is checked over windows this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Receives the body of an authorized PUT.
pub async fn receive(
    gk: &Gatekeeper,
    auth: &Authorized,
    parts: &Parts,
    body: Body,
    attempt: &mut Attempt,
) -> Result<Received, ApiError> {
    let (key, expected) = match auth.request().operation() {
        countersign_core::Operation::Put { key, body, .. } => (key, *body),
        _ => return Err(ApiError::new(ErrorCode::Internal, "PUT expected")),
    };
    let max = gk.config.limits.max_object_bytes;
    if expected.length > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the object is {} bytes; this gatekeeper stores at most {max}",
                expected.length
            ),
        ));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    if declared.is_some_and(|d| d != Some(expected.length)) {
        return Err(ApiError::new(
            ErrorCode::BodyMismatch,
            format!(
                "Content-Length differs from the signed body length {}",
                expected.length
            ),
        ));
    }
    let mut upload = Reserved::begin(gk, auth, key, expected.length).await?;
    match read_body(gk, auth, body, &mut upload, attempt, expected).await {
        Ok(()) => Ok(upload.received()),
        Err(e) => {
            upload.abandon(gk).await;
            Err(e)
        }
    }
}

async fn read_body(
    gk: &Gatekeeper,
    auth: &Authorized,
    body: Body,
    upload: &mut Reserved,
    attempt: &mut Attempt,
    expected: BodyDigest,
) -> Result<(), ApiError> {
    let deadline = Instant::from_std(auth.deadline());
    let min_per_window = gk
        .config
        .limits
        .min_body_bytes_per_sec
        .saturating_mul(RATE_WINDOW.as_secs());
    let mut stream = body.into_data_stream();
    let mut window_end = Instant::now() + RATE_WINDOW;
    let mut window_bytes = 0u64;
    loop {
        let wait_until = deadline.min(window_end);
        let next = tokio::time::timeout_at(wait_until, stream.next()).await;
        let chunk = match next {
            Err(_) if Instant::now() >= deadline => {
                return Err(ApiError::new(
                    ErrorCode::Timeout,
                    "the body was still arriving at the request's expires-at",
                ));
            }
            Err(_) => None,
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(ApiError::new(
                    ErrorCode::BodyMismatch,
                    "the request body ended before the signed length was received",
                ));
            }
            Ok(Some(Ok(c))) => Some(c),
        };
        if let Some(chunk) = chunk {
            window_bytes += chunk.len() as u64;
            attempt.bytes += chunk.len() as u64;
            if attempt.bytes > expected.length {
                return Err(ApiError::new(
                    ErrorCode::BodyMismatch,
                    format!(
                        "the body is longer than the signed {} bytes",
                        expected.length
                    ),
                ));
            }
            upload.write(gk, chunk).await?;
        }
        if Instant::now() >= window_end {
            if window_bytes < min_per_window {
                return Err(ApiError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the body arrived slower than {} bytes per second",
                        gk.config.limits.min_body_bytes_per_sec
                    ),
                ));
            }
            window_end = Instant::now() + RATE_WINDOW;
            window_bytes = 0;
        }
    }
    let got = upload.digest();
    if got.length != expected.length {
        return Err(ApiError::new(
            ErrorCode::BodyMismatch,
            format!(
                "the body is {} bytes, the signed length is {}",
                got.length, expected.length
            ),
        ));
    }
    if got.sha256 != expected.sha256 {
        return Err(ApiError::new(
            ErrorCode::BodyMismatch,
            "the body's SHA-256 differs from the signed body-sha256",
        ));
    }
    Ok(())
}

/// Publishes and indexes the upload (its `allow` entry is durable) and answers 201.
pub async fn complete(
    gk: &Gatekeeper,
    auth: &Authorized,
    received: Received,
    seq: u64,
) -> Result<Response, ApiError> {
    let indexed = received.publish(gk, auth, seq).await?;
    gk.metrics.add_bytes_in(indexed.size);
    let mut r = json_response(
        StatusCode::CREATED,
        &serde_json::json!({"bucket": indexed.bucket, "key": indexed.key, "size": indexed.size, "sha256": hex(&indexed.sha256), "audit_seq": seq}),
    );
    get::object_headers(&indexed, r.headers_mut());
    // The JSON body describes the result; the stored type is in the manifest.
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
