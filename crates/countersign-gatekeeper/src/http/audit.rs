//! Audit search, export and entry bundles over HTTP, for `customer-admin` keys: GETs
//! signed as LIST of bucket `countersign-audit` with an empty prefix; and the policy
//! reload, a POST signed as LIST of that bucket with the prefix `reload`.

use crate::audit::{AuditFilter, AuditLine, AuditRecord, GroupMembers};
use crate::error::ApiError;
use crate::http::{Gatekeeper, json_response, now_ms};
use crate::ledger::{Ledger, LedgerError};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use countersign_core::ErrorCode;
use countersign_core::Subject;
use countersign_core::text::{b64, hex as b16};
use countersign_core::tiles::{TILE_WIDTH, TileKind, TilePath, encode_bundle};
use futures::{Stream, TryStreamExt as _};
use std::collections::{BTreeMap, BTreeSet};

/// The audit endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/audit/search`: matching entries as JSON.
    Search,
    /// `/v1/audit/export`: the whole log and its checkpoints as JSONL.
    Export,
    /// `/v1/audit/groups`: the `[groups]` of the policy in force, for the group
    /// filter.
    Groups,
    /// `/v1/audit/reload` (POST): read the configuration file again and swap the
    /// policy in (see [`crate::reload`]).
    Reload,
    /// `/v1/audit/tile/entries/<N>[.p/<W>]`: a `tlog-tiles` entry bundle of the
    /// Merkle tree's leaves (the entries' exact bytes).
    Entries(TilePath),
}

impl Endpoint {
    /// Parses the path after `/v1/audit/`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "search" => Some(Self::Search),
            "export" => Some(Self::Export),
            "groups" => Some(Self::Groups),
            "reload" => Some(Self::Reload),
            _ => TilePath::parse(s)
                .ok()
                .filter(|t| t.kind() == TileKind::Entries)
                .map(Self::Entries),
        }
    }

    /// The HTTP method of the endpoint.
    pub fn method(self) -> axum::http::Method {
        match self {
            Self::Search | Self::Export | Self::Groups | Self::Entries(_) => {
                axum::http::Method::GET
            }
            Self::Reload => axum::http::Method::POST,
        }
    }

    /// The prefix the signed LIST request must carry: it binds the signature to the
    /// action, so a signature for reading the log cannot trigger a reload.
    pub fn signed_prefix(self) -> &'static str {
        match self {
            Self::Search | Self::Export | Self::Groups | Self::Entries(_) => "",
            Self::Reload => "reload",
        }
    }
}

/// A parsed audit request.
#[derive(Debug)]
pub struct Query {
    endpoint: Endpoint,
    filter: AuditFilter,
    subject: String,
    /// For [`Endpoint::Groups`]: every group and its members, from the request's
    /// policy snapshot.
    groups: Vec<GroupMembers>,
}

/// Parses the filter, resolving a `group` against `groups` (the `[groups]` of the
/// request's policy snapshot); `subject` is the signed request's.
pub fn prepare(
    endpoint: Endpoint,
    parts: &Parts,
    subject: &str,
    groups: &BTreeMap<String, BTreeSet<Subject>>,
) -> Result<Query, ApiError> {
    Ok(Query {
        endpoint,
        filter: parse_filter(parts.uri.query().unwrap_or(""), groups)?,
        subject: subject.to_owned(),
        groups: match endpoint {
            Endpoint::Groups => groups
                .iter()
                .map(|(name, members)| GroupMembers::new(name, members))
                .collect(),
            _ => Vec::new(),
        },
    })
}

/// Runs the search or export (after the request's entry is in the log).
pub async fn respond(gk: &Gatekeeper, query: Query) -> Result<Response, ApiError> {
    match query.endpoint {
        Endpoint::Search => {
            let entries = gk.ledger.search(&query.filter).await.map_err(|e| {
                tracing::warn!("audit search failed: {e}");
                ApiError::audit_unavailable()
            })?;
            let next = if entries.len() >= query.filter.limit as usize {
                entries.last().map(|e| e.seq + 1)
            } else {
                None
            };
            let records: Vec<_> = entries.iter().map(AuditRecord::from_entry).collect();
            // A group filter's answer names the membership it used, so a saved
            // answer says what the group meant when it was searched.
            let answer = match &query.filter.group {
                Some(group) => serde_json::json!({
                    "entries": records, "next_after_seq": next, "group": group
                }),
                None => serde_json::json!({"entries": records, "next_after_seq": next}),
            };
            Ok(json_response(StatusCode::OK, &answer))
        }
        Endpoint::Groups => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "groups": query.groups }),
        )),
        Endpoint::Export => {
            let lines = export_jsonl(&gk.ledger, now_ms() / 1000, true)
                .await
                .map_err(|e| {
                    tracing::warn!("audit export failed: {e}");
                    ApiError::audit_unavailable()
                })?;
            // An error part-way cuts the body short (no final chunk): the client
            // sees an incomplete transfer, and a verifier a log that ends early.
            let body = axum::body::Body::from_stream(lines.inspect_err(|e| {
                tracing::warn!("audit export failed part-way: {e}");
            }));
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(r)
        }
        Endpoint::Reload => {
            let by = crate::reload::Requester::Admin(query.subject);
            match crate::reload::reload(gk, &by).await {
                Ok(done) => {
                    tracing::info!(
                        "policy reloaded (admin request): sha256 {}",
                        b16(&done.sha256)
                    );
                    Ok(json_response(
                        StatusCode::OK,
                        &serde_json::json!({"status": "reloaded", "policy_sha256": b16(&done.sha256), "seq": done.seq}),
                    ))
                }
                Err(e) => {
                    tracing::warn!("policy reload refused (admin request): {e}");
                    Err(ApiError::new(e.code(), e.to_string()))
                }
            }
        }
        Endpoint::Entries(tile) => entry_bundle(&gk.ledger, tile).await,
    }
}

/// The entry bundle `tile`, once the tree covers all of its entries (`not_found`
/// before): the entries' exact bytes, each after its big-endian `u16` length.
async fn entry_bundle(ledger: &Ledger, tile: TilePath) -> Result<Response, ApiError> {
    let unavailable = |e: crate::ledger::LedgerError| {
        tracing::warn!("audit entry bundle failed: {e}");
        ApiError::audit_unavailable()
    };
    let start = tile.index() * TILE_WIDTH;
    let end = start + u64::from(tile.width());
    let integrated = ledger
        .latest_tree_checkpoint()
        .await
        .map_err(unavailable)?
        .map_or(0, |c| c.size);
    if integrated < end {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("the tree has no entry bundle {tile} yet"),
        ));
    }
    let entries = ledger
        .entries(start, u32::from(tile.width()))
        .await
        .map_err(unavailable)?;
    if entries.len() != usize::from(tile.width()) {
        tracing::warn!("audit entry bundle {tile}: the tree covers entries the log lacks");
        return Err(ApiError::audit_unavailable());
    }
    let bytes: Vec<Vec<u8>> = entries.iter().map(|e| e.encode()).collect();
    let bundle = encode_bundle(bytes.iter().map(Vec::as_slice))?;
    let mut r = bundle.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// Most members a group may have to be a search filter: each is a bound value of the
/// search's statements, and SQLite takes at most 32,766 of those.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// Parses search/export query parameters; a `group` is resolved against `groups`
/// (`invalid_field` if it is not one of them).
pub fn parse_filter(
    query: &str,
    groups: &BTreeMap<String, BTreeSet<Subject>>,
) -> Result<AuditFilter, ApiError> {
    let mut f = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        // Query values are form-encoded: `+` is a space.
        let v = v.replace('+', " ");
        let v = percent_encoding::percent_decode_str(&v)
            .decode_utf8()
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Malformed,
                    format!("query parameter `{k}` is not percent-encoded UTF-8"),
                )
            })?
            .into_owned();
        let num = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    format!("`{k}` must be a non-negative integer"),
                )
            })
        };
        match k {
            "after_seq" | "from_seq" => f.after_seq = num(&v)?,
            "from_ms" => f.from_ms = Some(num(&v)?),
            "to_ms" => f.to_ms = Some(num(&v)?),
            "subject" => f.subject = Some(v),
            "group" if f.group.is_some() => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "`group` may be given once (a search selects one group's members)",
                ));
            }
            "group" => f.group = Some(resolve_group(&v, groups)?),
            "ip" => {
                f.client_ip = Some(v.parse().map_err(|_| {
                    ApiError::new(ErrorCode::InvalidField, "`ip` must be an IP address")
                })?)
            }
            "key" => f.key = Some(v),
            "key_prefix" => f.key_prefix = Some(v),
            "bucket" => f.bucket = Some(v),
            "operation"
                if (1..=16).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_uppercase()) =>
            {
                f.operation = Some(v)
            }
            "operation" => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "`operation` must be 1 to 16 capital letters (GET, HEAD, PUT, LIST, AUDIT)",
                ));
            }
            "decision" if v == "allow" || v == "deny" => f.decision = Some(v),
            "decision" => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "`decision` must be allow or deny",
                ));
            }
            "error" => {
                f.error = Some(ErrorCode::from_str_code(&v).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        format!("`{v}` is not an error code"),
                    )
                })?)
            }
            "limit" => {
                f.limit = u32::try_from(num(&v)?)
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::InvalidField, "`limit` must be 1 to 10000")
                    })?;
            }
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("unknown query parameter `{k}`"),
                ));
            }
        }
    }
    Ok(f)
}

/// The members `name` has in `groups`: `invalid_field` naming the defined groups if
/// it has none such, or if it is too large to filter by.
fn resolve_group(
    name: &str,
    groups: &BTreeMap<String, BTreeSet<Subject>>,
) -> Result<GroupMembers, ApiError> {
    let Some(members) = groups.get(name) else {
        let defined: Vec<&str> = groups.keys().map(String::as_str).collect();
        let defined = if defined.is_empty() {
            "none is defined".to_owned()
        } else {
            format!("defined: {}", defined.join(", "))
        };
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("group `{name}` is not defined in [groups] of the policy in force ({defined})"),
        ));
    };
    if members.len() > MAX_GROUP_MEMBERS {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!(
                "group `{name}` has {} members; a group filter takes at most {MAX_GROUP_MEMBERS}",
                members.len()
            ),
        ));
    }
    Ok(GroupMembers::new(name, members))
}

/// The whole audit log as JSONL, streamed a page of entries at a time in constant
/// memory (`docs/PROTOCOL.md`, "Verifying an export"): the newest signed tree
/// checkpoint first (if the tree has one), then every entry in order, each chain
/// checkpoint right after the entry it names. With `fresh_checkpoint`, a chain
/// checkpoint over the current head is signed first, so the export is pinned up to
/// its last entry.
pub async fn export_jsonl(
    ledger: &Ledger,
    now_secs: u64,
    fresh_checkpoint: bool,
) -> Result<impl Stream<Item = Result<Bytes, LedgerError>> + Send + 'static, LedgerError> {
    if fresh_checkpoint {
        ledger.checkpoint_now(now_secs).await?;
    }
    let tree = ledger.latest_tree_checkpoint().await?;
    let mut checkpoints = Vec::new();
    for c in ledger.checkpoints().await? {
        let seq = countersign_core::audit::Checkpoint::parse(&c.body)
            .map_err(|e| LedgerError::Corrupt(format!("a stored checkpoint: {e}")))?
            .seq;
        let line = AuditLine::Checkpoint {
            checkpoint: b64(&c.body),
            signatures: c.signatures,
        };
        checkpoints.push((seq, line));
    }
    checkpoints.sort_by_key(|(seq, _)| *seq);
    let first = tree.map(|t| json_line(&AuditLine::TreeCheckpoint { note: t.note }));
    let state = Export {
        ledger: ledger.clone(),
        first,
        next: 0,
        checkpoints: checkpoints.into(),
        done: false,
    };
    Ok(futures::stream::try_unfold(state, Export::next_chunk))
}

/// Where an export stream is.
struct Export {
    ledger: Ledger,
    /// The tree checkpoint's line, until sent.
    first: Option<String>,
    /// The next entry's seq.
    next: u64,
    /// Chain checkpoints not sent yet, by seq.
    checkpoints: std::collections::VecDeque<(u64, AuditLine)>,
    done: bool,
}

impl Export {
    /// The next chunk: the tree checkpoint, then a page of entries with their
    /// checkpoints; `None` at the end.
    async fn next_chunk(mut self) -> Result<Option<(Bytes, Self)>, LedgerError> {
        if self.done {
            return Ok(None);
        }
        if let Some(first) = self.first.take() {
            return Ok(Some((Bytes::from(first), self)));
        }
        let page = self.ledger.entries(self.next, EXPORT_PAGE).await?;
        let mut out = String::new();
        for e in &page {
            out.push_str(&json_line(&AuditLine::Entry(Box::new(
                AuditRecord::from_entry(e),
            ))));
            while let Some((_, line)) = self.checkpoints.pop_front_if(|(seq, _)| *seq <= e.seq) {
                out.push_str(&json_line(&line));
            }
            self.next = e.seq + 1;
        }
        if page.len() < EXPORT_PAGE as usize {
            // The end: checkpoints beyond the last entry follow it (a verifier then
            // reports the log as cut short).
            for (_, line) in self.checkpoints.drain(..) {
                out.push_str(&json_line(&line));
            }
            self.done = true;
        }
        Ok(Some((Bytes::from(out), self)))
    }
}

/// Entries per page of an export.
const EXPORT_PAGE: u32 = 1000;

/// A JSONL line.
fn json_line(line: &AuditLine) -> String {
    let mut s = serde_json::to_string(line).unwrap_or_default();
    s.push('\n');
    s
}
