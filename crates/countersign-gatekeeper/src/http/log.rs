//! The audit log's Merkle tree over HTTP, per `tlog-tiles` (`docs/API.md`, "Log"):
//! the newest signed checkpoint, the hash tiles, and the inclusion proof of one leaf
//! with the checkpoint it leads to (one round trip for a client proving a receipt).
//! They reveal only hashes, so they need no authentication: witnesses and auditors
//! follow the log without seeing what it records.

use super::AppState;
use crate::error::ApiError;
use crate::ledger::CosignedCheckpoint;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::ErrorCode;
use countersign_core::logged::{LogProofAnswer, Step, inclusion_from_tiles};
use countersign_core::text::parse_decimal;
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

/// The checkpoint the log serves (size and signed note): with witnesses configured,
/// the newest checkpoint that the quorum cosigned, with every configured witness's
/// cosignature of it; else (no witnesses, or no checkpoint has the quorum yet) the
/// newest signed checkpoint, as the gatekeeper signed it. `None` before the first.
async fn served_checkpoint(
    gk: &AppState,
) -> Result<Option<(u64, String)>, crate::ledger::LedgerError> {
    if let Some(c) = newest_cosigned(gk).await? {
        return Ok(Some((c.checkpoint.size, c.note())));
    }
    Ok(gk
        .ledger
        .latest_tree_checkpoint()
        .await?
        .map(|c| (c.size, c.note)))
}

/// `GET /v1/log/checkpoint`: the served checkpoint (`served_checkpoint`), a C2SP
/// signed note.
pub async fn checkpoint(State(gk): State<AppState>) -> Response {
    match served_checkpoint(&gk).await {
        Ok(Some((_, note))) => with_headers(note, "text/plain; charset=utf-8", "no-store"),
        Ok(None) => {
            ApiError::new(ErrorCode::NotFound, "the log has no checkpoint yet").into_response()
        }
        Err(e) => {
            tracing::warn!("log checkpoint: {e}");
            ApiError::audit_unavailable().into_response()
        }
    }
}

/// `GET /v1/log/proof/<index>`: the served checkpoint and the RFC 6962 audit path of
/// leaf `index` to its size, computed from the stored hash tiles (which never change
/// below a signed size, so the two are one snapshot), as a `countersign/v1/log-proof`
/// answer. An index the checkpoint does not cover yet is `not_found`.
pub async fn proof(State(gk): State<AppState>, Path(index): Path<String>) -> Response {
    let index = match parse_decimal(&index, "the leaf index") {
        Ok(i) => i,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (size, note) = match served_checkpoint(&gk).await {
        Ok(Some((size, note))) if index < size => (size, note),
        Ok(Some((size, _))) => {
            return ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "the newest checkpoint covers {size} entries, not yet entry {index}; retry after the log's checkpoint interval"
                ),
            )
            .into_response();
        }
        Ok(None) => {
            return ApiError::new(ErrorCode::NotFound, "the log has no checkpoint yet")
                .into_response();
        }
        Err(e) => {
            tracing::warn!("log proof: {e}");
            return ApiError::audit_unavailable().into_response();
        }
    };
    match audit_path(&gk, index, size).await {
        Ok(path) => with_headers(
            LogProofAnswer {
                index,
                size,
                path,
                note: note.into_bytes(),
            }
            .encode(),
            "text/plain; charset=utf-8",
            "no-store",
        ),
        Err(e) => {
            tracing::warn!("log proof of leaf {index} at size {size}: {e}");
            ApiError::audit_unavailable().into_response()
        }
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves, from the stored hash
/// tiles (at most two per tile level), each cut to its width at `size`.
async fn audit_path(
    gk: &AppState,
    index: u64,
    size: u64,
) -> Result<Vec<countersign_core::merkle::Hash>, String> {
    let mut tiles = Vec::new();
    loop {
        match inclusion_from_tiles(index, size, &tiles).map_err(|e| e.to_string())? {
            Step::Proof(path) => return Ok(path),
            Step::Need(path) => match hash_tile(gk, &path).await.map_err(|e| e.to_string())? {
                Some(hashes) => tiles.push((path, hashes)),
                None => return Err(format!("the signed tree has no tile {path}")),
            },
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
    if !matches!(path.kind(), TileKind::Hashes { .. }) {
        return ApiError::new(
            ErrorCode::AccessDenied,
            "entry bundles need a customer-admin signed request: GET /v1/audit/tile/entries/...",
        )
        .into_response();
    }
    match hash_tile(&gk, &path).await {
        Ok(Some(hashes)) => with_headers(
            hashes,
            "application/octet-stream",
            "public, max-age=31536000, immutable",
        ),
        Ok(None) => ApiError::new(
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

/// Hash tile `path` as served: the stored hashes of its level and index cut to its
/// width, or `None` while the tree has fewer (or for an entry bundle's path).
async fn hash_tile(
    gk: &AppState,
    path: &TilePath,
) -> Result<Option<Vec<u8>>, crate::ledger::LedgerError> {
    let TileKind::Hashes { level } = path.kind() else {
        return Ok(None);
    };
    let want = usize::from(path.width()) * 32;
    Ok(gk
        .ledger
        .tile(level, path.index())
        .await?
        .filter(|hashes| hashes.len() >= want)
        .map(|mut hashes| {
            hashes.truncate(want);
            hashes
        }))
}
