//! LIST: one page of a bucket's keys under the signed prefix, from the index (LIST
//! never touches the bucket). The query is bounded by the prefix on both sides, so
//! its cost follows the page size, not the keys around the prefix.

use crate::error::ApiError;
use crate::http::pipeline::Authorized;
use crate::http::{Gatekeeper, json_response};
use crate::ledger::ListedObject;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use countersign_core::ErrorCode;
use countersign_core::names::percent_encode;
use countersign_core::text::hex;

/// A page read from the index.
#[derive(Debug)]
pub struct Page {
    prefix: String,
    after: String,
    objects: Vec<ListedObject>,
    next_after: Option<String>,
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
            eprintln!("list failed: {e}");
            ApiError::audit_unavailable()
        })?;
    let more = objects.len() > limit as usize;
    objects.truncate(limit as usize);
    let next_after = if more {
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    Ok(Page {
        prefix,
        after,
        objects,
        next_after,
    })
}

/// The page as JSON.
pub fn respond(
    _gk: &Gatekeeper,
    auth: &Authorized,
    page: Page,
    _seq: u64,
) -> Result<Response, ApiError> {
    let objects: Vec<_> = page
        .objects
        .iter()
        .map(|o| serde_json::json!({"key": o.key, "size": o.size, "sha256": hex(&o.sha256), "content_type": o.content_type, "stored_at": o.stored_at}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "bucket": auth.bucket().as_str(),
            "prefix": page.prefix,
            "after": page.after,
            "objects": objects,
            "next_after": page.next_after.as_deref().map(percent_encode),
        }),
    ))
}
