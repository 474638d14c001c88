//! The audit log's Merkle tree over HTTP, per `tlog-tiles` (`docs/API.md`, "Log"):
//! the newest signed checkpoint and the hash tiles. They reveal only hashes, so they
//! need no authentication: witnesses and auditors follow the log without seeing
//! what it records.

use super::AppState;
use crate::error::ApiError;
use crate::ledger::CosignedCheckpoint;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::ErrorCode;
use countersign_core::tiles::{TileKind, TilePath};

fn with_headers(
    body: impl IntoResponse,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// The newest checkpoint the quorum of the configured witnesses cosigned (`None`
/// without witnesses, or before any checkpoint reached the quorum).
pub(crate) async fn newest_cosigned(
    gk: &AppState,
) -> Result<Option<CosignedCheckpoint>, crate::ledger::LedgerError> {
    let policy = &gk.config.witnesses;
    let vkeys: Vec<String> = policy
        .witnesses
        .iter()
        .map(|w| w.verifier.to_text())
        .collect();
    gk.ledger
        .newest_cosigned_checkpoint(&vkeys, policy.quorum)
        .await
}

/// `GET /v1/log/checkpoint`: with witnesses configured, the newest checkpoint that
/// the quorum cosigned, with every configured witness's cosignature of it; else (no
/// witnesses, or no checkpoint has the quorum yet) the newest signed checkpoint, as
/// the gatekeeper signed it. A C2SP signed note either way.
pub async fn checkpoint(State(gk): State<AppState>) -> Response {
    match newest_cosigned(&gk).await {
        Ok(Some(c)) => return with_headers(c.note(), "text/plain; charset=utf-8", "no-store"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!("log checkpoint: {e}");
            return ApiError::audit_unavailable().into_response();
        }
    }
    match gk.ledger.latest_tree_checkpoint().await {
        Ok(Some(c)) => with_headers(c.note, "text/plain; charset=utf-8", "no-store"),
        Ok(None) => {
            ApiError::new(ErrorCode::NotFound, "the log has no checkpoint yet").into_response()
        }
        Err(e) => {
            tracing::warn!("log checkpoint: {e}");
            ApiError::audit_unavailable().into_response()
        }
    }
}

/// `GET /v1/log/tile/<L>/<N>[.p/<W>]`: a hash tile. A partial tile of width `W` is
/// served once the tree has at least `W` hashes in that tile (they never change);
/// a full tile once it is complete.
pub async fn tile(State(gk): State<AppState>, Path(rest): Path<String>) -> Response {
    let path = match TilePath::parse(&format!("tile/{rest}")) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let TileKind::Hashes { level } = path.kind() else {
        return ApiError::new(
            ErrorCode::AccessDenied,
            "entry bundles need a customer-admin signed request: GET /v1/audit/tile/entries/...",
        )
        .into_response();
    };
    let want = usize::from(path.width()) * 32;
    match gk.ledger.tile(level, path.index()).await {
        Ok(Some(mut hashes)) if hashes.len() >= want => {
            hashes.truncate(want);
            with_headers(
                hashes,
                "application/octet-stream",
                "public, max-age=31536000, immutable",
            )
        }
        Ok(_) => ApiError::new(
            ErrorCode::NotFound,
            format!("the tree has no tile {path} yet"),
        )
        .into_response(),
        Err(e) => {
            tracing::warn!("log tile: {e}");
            ApiError::audit_unavailable().into_response()
        }
    }
}
