//! LIST: one page of a bucket's keys under the signed prefix, from the index (LIST
//! never touches the bucket). The query is bounded by the prefix on both sides, so
//! its cost follows the page size, not the keys around the prefix.

use crate::error::ApiError;
use crate::http::pipeline::Authorized;
use crate::http::{Gatekeeper, json_response, now_ms};
use crate::ledger::ListedObject;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use countersign_core::names::percent_encode;
use countersign_core::signature::encode_list;
use countersign_core::text::{b64, hex};
use countersign_core::{ContentType, ErrorCode, Listing, ObjectKey};

/// A page read from the index.
#[derive(Debug)]
pub struct Page {
    prefix: String,
    after: Option<ObjectKey>,
    objects: Vec<ListedObject>,
    more: bool,
}

/// Reads the page the query asks for (`after`, `limit`).
pub async fn prepare(gk: &Gatekeeper, auth: &Authorized, parts: &Parts) -> Result<Page, ApiError> {
    let max = gk.config.limits.max_list_page;
    let mut limit = max;
    let mut after = String::new();
    let query = parts.uri.query().unwrap_or("");
    for (k, raw) in query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    {
        match k {
            "prefix" => {}
            "limit" => {
                limit = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::InvalidField, format!("limit must be 1 to {max}"))
                    })?;
            }
            "after" => {
                after = percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| {
                        ApiError::new(
                            ErrorCode::Malformed,
                            "`after` must be a percent-encoded UTF-8 key",
                        )
                    })?
                    .into_owned();
                if !after.is_empty() {
                    ObjectKey::parse(&after)?;
                }
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("unknown query parameter `{other}`"),
                ));
            }
        }
    }
    let prefix = auth.request().operation().key_text().to_owned();
    let mut objects = gk
        .ledger
        .list(
            auth.bucket().as_str(),
            &prefix,
            &after,
            limit.saturating_add(1),
        )
        .await
        .map_err(|e| {
            tracing::warn!("list failed: {e}");
            ApiError::audit_unavailable()
        })?;
    let more = objects.len() > limit as usize;
    objects.truncate(limit as usize);
    let after = if after.is_empty() {
        None
    } else {
        Some(ObjectKey::parse(&after)?)
    };
    Ok(Page {
        prefix,
        after,
        objects,
        more,
    })
}

/// An index row as a listed object (its key and type were validated at PUT).
fn listed(o: &ListedObject) -> Result<countersign_core::ListedObject, ApiError> {
    Ok(countersign_core::ListedObject {
        key: ObjectKey::parse(&o.key)?,
        size: o.size,
        sha256: o.sha256,
        content_type: ContentType::parse(&o.content_type)?,
        stored_at: o.stored_at,
    })
}

/// The page as JSON, with the signed listing (`listing`, `listing_signature`) that a
/// client verifies instead of trusting the convenience members.
pub fn respond(
    gk: &Gatekeeper,
    auth: &Authorized,
    page: Page,
    seq: u64,
) -> Result<Response, ApiError> {
    let objects = page
        .objects
        .iter()
        .map(listed)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tracing::warn!("an index row cannot be listed: {}", e.message);
            ApiError::new(
                ErrorCode::Internal,
                "the index holds a row that cannot be listed",
            )
        })?;
    let listing = Listing::for_request(
        auth.verified(),
        gk.config.gatekeeper_id.clone(),
        seq,
        now_ms() / 1000,
        page.after.clone(),
        objects,
        page.more,
    )?;
    let (bytes, signature) = listing.sign(&gk.key, gk.key_id.clone());
    let convenience: Vec<_> = page
        .objects
        .iter()
        .map(|o| serde_json::json!({"key": o.key, "size": o.size, "sha256": hex(&o.sha256), "content_type": o.content_type, "stored_at": o.stored_at}))
        .collect();
    let next_after = if page.more {
        page.objects.last().map(|o| percent_encode(&o.key))
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "bucket": auth.bucket().as_str(),
            "prefix": page.prefix,
            "objects": convenience,
            "next_after": next_after,
            "listing": b64(&bytes),
            "listing_signature": encode_list(&[signature]),
        }),
    ))
}
