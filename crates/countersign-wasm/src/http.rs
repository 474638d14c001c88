//! The client's side of the HTTP transport (`countersign_core::transport`): the
//! gatekeeper's receipt on every answer, its refusals, and bodies read as they stream
//! in, never further than the size they may have.

use crate::error::{CountersignError, describe};
use crate::options::Config;
use countersign_core::signature::parse_list;
use countersign_core::text::parse_b64;
use countersign_core::transport::{RECEIPT_HEADER, RECEIPT_SIGNATURE_HEADER};
use countersign_core::{Decision, ErrorCode, Receipt, VerifiedReceipt};
use gloo_net::http::Response;
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

type Result<T> = std::result::Result<T, CountersignError>;

/// Most bytes of an error answer read for its JSON error (the gatekeeper's are tiny).
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// Largest allocation made up front for a body of known size; a bigger body grows as
/// it arrives.
const PREALLOCATE_BYTES: u64 = 16 * 1024 * 1024;

/// A `network` error: the gatekeeper or the signing function could not be reached or
/// read.
pub(crate) fn network(what: &str, e: impl std::fmt::Display) -> CountersignError {
    CountersignError::other("network", format!("{what}: {e}"))
}

/// A protocol error with its stable code.
pub(crate) fn protocol_error(code: ErrorCode, message: impl Into<String>) -> CountersignError {
    countersign_core::Error::new(code, message).into()
}

/// A response header that must be present (`malformed` otherwise).
pub(crate) fn header(response: &Response, name: &str) -> Result<String> {
    response.headers().get(name).ok_or_else(|| {
        protocol_error(
            ErrorCode::Malformed,
            format!("the gatekeeper's answer lacks the {name} header"),
        )
    })
}

/// The `Content-Length` the answer announces, if it announces one (a chunked answer
/// does not). Browsers let every origin read it (a CORS-safelisted header).
pub(crate) fn content_length(response: &Response) -> Result<Option<u64>> {
    match response.headers().get("content-length") {
        None => Ok(None),
        Some(value) => value.trim().parse::<u64>().map(Some).map_err(|_| {
            protocol_error(
                ErrorCode::Malformed,
                "the gatekeeper's Content-Length is not a decimal number",
            )
        }),
    }
}

/// Stops the download of a body that will not be read.
pub(crate) async fn discard_body(response: &Response) {
    if let Some(stream) = response.body() {
        // The outcome does not matter: the answer is refused either way.
        let _ = JsFuture::from(stream.cancel()).await;
    }
}

/// Reads the body as it streams in. As soon as more than `max` bytes have arrived it
/// cancels the stream (the rest is never downloaded) and fails with `too_long()`.
pub(crate) async fn read_body(
    response: &Response,
    max: u64,
    too_long: impl Fn() -> CountersignError,
) -> Result<Vec<u8>> {
    let Some(stream) = response.body() else {
        return Ok(Vec::new());
    };
    let reader = web_sys::ReadableStreamDefaultReader::new(&stream)
        .map_err(|e| network("reading the gatekeeper's answer", describe(&e)))?;
    let mut bytes = Vec::with_capacity(usize::try_from(max.min(PREALLOCATE_BYTES)).unwrap_or(0));
    loop {
        let read = JsFuture::from(reader.read())
            .await
            .map_err(|e| network("reading the gatekeeper's answer", describe(&e)))?;
        let read: web_sys::ReadableStreamReadResult = read.unchecked_into();
        if read.get_done().unwrap_or(false) {
            return Ok(bytes);
        }
        let value = read.get_value();
        let Some(chunk) = value.dyn_ref::<Uint8Array>() else {
            let _ = JsFuture::from(reader.cancel()).await;
            return Err(network(
                "reading the gatekeeper's answer",
                "the body stream yielded something other than bytes",
            ));
        };
        let start = bytes.len();
        let received = start as u64 + u64::from(chunk.length());
        if received > max {
            // Nothing past the limit is read: cancelling stops the download.
            let _ = JsFuture::from(reader.cancel()).await;
            return Err(too_long());
        }
        bytes.resize(start + chunk.length() as usize, 0);
        if let Some(slot) = bytes.get_mut(start..) {
            chunk.copy_to(slot);
        }
    }
}

/// Verifies the receipt headers of an answer with the configured gatekeeper (the
/// request's audience) and its keys. A receipt of either decision verifies.
fn verify_receipt(config: &Config, request: &[u8], response: &Response) -> Result<VerifiedReceipt> {
    let receipt = parse_b64(&header(response, RECEIPT_HEADER)?, "the receipt")?;
    let signatures = parse_list(&header(response, RECEIPT_SIGNATURE_HEADER)?)?;
    Ok(Receipt::verify(
        &receipt,
        &signatures,
        &config.audience,
        &config.gatekeeper,
        request,
    )?)
}

/// For a success answer: its receipt must verify and allow the request. Any other
/// answer becomes the gatekeeper's refusal.
pub(crate) async fn check_response(
    config: &Config,
    request: &[u8],
    response: &Response,
) -> Result<VerifiedReceipt> {
    if !response.ok() {
        return Err(refusal(config, request, response).await);
    }
    let verified = verify_receipt(config, request, response)?;
    match verified.decision() {
        Decision::Allow => Ok(verified),
        Decision::Deny(code) => Err(protocol_error(
            code,
            "the gatekeeper answered with success, but its signed receipt records a refusal",
        )),
    }
}

/// The error of a refusal. The code of a verified deny receipt wins over the JSON
/// body's, which nobody signed; the body supplies the sentence.
async fn refusal(config: &Config, request: &[u8], response: &Response) -> CountersignError {
    let verified = verify_receipt(config, request, response)
        .ok()
        .filter(|r| r.decision().error().is_some());
    let signed = verified.as_ref().and_then(|r| r.decision().error());
    let receipt = verified.map(|r| r.receipt().clone());
    let body = read_body(response, MAX_ERROR_BODY_BYTES, || {
        CountersignError::other("network", "")
    })
    .await
    .ok();
    let stated = body.and_then(|b| json_error(&String::from_utf8_lossy(&b)));
    match (signed, stated) {
        (Some(code), Some((_, message))) => protocol_error(code, message).with_receipt(receipt),
        (Some(code), None) => {
            protocol_error(code, format!("the gatekeeper refused the request ({code})"))
                .with_receipt(receipt)
        }
        (None, Some((code, message))) => CountersignError::protocol(&code, message),
        (None, None) => network(
            "the gatekeeper answered",
            format!("HTTP {} {}", response.status(), response.status_text()),
        ),
    }
}

/// Reads `{"error": {"code": …, "message": …}}`.
pub(crate) fn json_error(text: &str) -> Option<(String, String)> {
    let value = js_sys::JSON::parse(text).ok()?;
    let error = js_sys::Reflect::get(&value, &JsValue::from_str("error")).ok()?;
    let code = js_sys::Reflect::get(&error, &JsValue::from_str("code"))
        .ok()?
        .as_string()?;
    let message = js_sys::Reflect::get(&error, &JsValue::from_str("message"))
        .ok()?
        .as_string()?;
    Some((code, message))
}
