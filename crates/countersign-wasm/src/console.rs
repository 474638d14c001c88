//! What the audit console verifies in the browser (admin flavor, cargo feature
//! `admin`; `docs/API.md`, "Audit console"):
//!
//! - [`LogView`]: the log's signed (and optionally witness-cosigned) checkpoint, and
//!   inclusion proofs against it for the entries a page displays, each entry parsed
//!   from its exact bytes (never re-encoded): the hash tiles of all of a page's
//!   proofs are named first and fetched in one round, each once, and cached;
//! - [`verify_log`]: the whole log, bundle by bundle, through the core's
//!   [`TileLogVerifier`] — what `countersign audit verify --url` runs natively — with
//!   a few bundles fetched ahead and memory bounded by them.
//!
//! ```js
//! import init, { LogView, verifyLog } from "@countersign/client/admin";
//! await init();
//! const view = await LogView.open({ gatekeeperUrl: location.origin, gatekeeperId: "gk.acme", keys });
//! const checks = await view.proveEntries(page.records.map((r) => r.entry));
//! const report = await verifyLog({ gatekeeperUrl: location.origin, gatekeeperId: "gk.acme", keys,
//!   subject: "admin-ann", keyId: "admin-ann-1",
//!   sign: async (m) => new Uint8Array(await crypto.subtle.sign("Ed25519", key, m)),
//!   onProgress: (done, total) => bar.value = done / total });
//! ```

use crate::admin::{AuditAction, AuditRequest};
use crate::error::{CountersignError, describe, make_errors_extend_error};
use crate::http::{json_error, network, protocol_error, read_body};
use crate::logged::{TileCache, fetch, measure, open_under, performance_now};
use crate::options::Fields;
use countersign_core::audit::{AuditEntry, escape};
use countersign_core::log_verify::TileLogVerifier;
use countersign_core::logged::{Step, log_origin, open_checkpoint};
use countersign_core::merkle::{Hash, HashSource, inclusion_proof, leaf_hash, verify_inclusion};
use countersign_core::note::{Checkpoint, MAX_NOTE_BYTES, NoteVerifier};
use countersign_core::text::{hex, parse_b64};
use countersign_core::tiles::{
    MAX_BUNDLE_ENTRY, TILE_WIDTH, TileHashes, TileKind, TilePath, tile_for_node,
};
use countersign_core::transport::{REQUEST_HEADER, SIGNATURE_HEADER};
use countersign_core::{ErrorCode, GatekeeperId, KeyId, Keyring, Policy, Role, Subject};
use futures::StreamExt;
use gloo_net::http::Request as HttpRequest;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

type Result<T> = std::result::Result<T, CountersignError>;

#[wasm_bindgen(typescript_custom_section)]
const CONSOLE_TS: &str = r#"
/** Options of `LogView.open(options)`. */
export interface LogViewOptions {
  /** The gatekeeper's URL, e.g. `location.origin`. */
  gatekeeperUrl: string;
  /** The gatekeeper's id: the log is `<gatekeeperId>/audit`. */
  gatekeeperId: string;
  /** As `ClientOptions.keys`: the gatekeeper's key(s) (role `gatekeeper`) sign checkpoints. */
  keys: TrustedKey[];
  /** Witness verifier keys (`name+keyid+base64`, type 0x04), as `ClientOptions.logWitnesses`. */
  logWitnesses?: string[];
  /** How many of `logWitnesses` must have cosigned the checkpoint (default 0). */
  logQuorum?: number;
}

/**
 * What an entry's bytes say (`docs/PROTOCOL.md`, "Audit entries"). Byte fields that
 * are not UTF-8 are shown percent-escaped as in the entry's canonical form. Proven by
 * the log only when the `EntryCheck`'s status is `verified`.
 */
export interface AuditEntryFields {
  seq: number;
  timeMs: number;
  gatekeeper: string;
  /** The HTTP request's id (entry version 2); absent in version-1 entries. */
  requestId?: string;
  clientIp: string;
  operation: string;
  bucket: string;
  key: string;
  subject: string;
  decision: "allow" | "deny";
  /** For `deny`: the error code. */
  error?: string;
  bytes: number;
  latencyUs: number;
}

/** Options of `verifyLog(options)`. */
export interface VerifyLogOptions extends LogViewOptions {
  /** The admin's subject for the signed entry-bundle requests. */
  subject: string;
  /** The admin key's id in the gatekeeper's `[[keys]]` (role `customer-admin`). */
  keyId: string;
  /** Signs `AuditRequest.signingMessage` (WebCrypto Ed25519); resolves to the 64-byte signature. */
  sign: (message: Uint8Array<ArrayBuffer>) => Promise<Uint8Array> | Uint8Array;
  /** Called after each entry bundle: entries verified so far, of `total` (the checkpoint's size). */
  onProgress?: (verified: number, total: number) => void;
}

/** What `verifyLog` verified. */
export interface LogVerifyReport {
  /** Entries verified: the checkpoint's size. */
  entries: number;
  /** Entry bundles fetched. */
  bundles: number;
  treeSize: number;
  /** The checkpoint's root, lowercase hex. */
  rootHash: string;
  /** Wall time, ms. */
  millis: number;
}
"#;

/// The most hash tiles a [`LogView`] keeps between calls (each at most 8 KiB): the
/// oldest go first. One call keeps every tile its entries need until it returns.
const MAX_VIEW_TILES: usize = 256;
/// How many tiles `proveEntries` fetches at once.
const TILE_FETCHES: usize = 6;
/// How many entry bundles (with their hash tiles) `verifyLog` fetches ahead of the
/// one it verifies: the memory it holds is these bundles.
const BUNDLES_AHEAD: usize = 4;

fn bad(message: impl Into<String>) -> CountersignError {
    CountersignError::other("bad_options", message)
}

/// `LogViewOptions`, read.
struct LogOptions {
    base_url: String,
    audience: GatekeeperId,
    gatekeeper: Policy,
    log_keys: Vec<NoteVerifier>,
    witnesses: Vec<NoteVerifier>,
    quorum: usize,
}

/// The fields of `LogViewOptions`; `VerifyLogOptions` adds these.
const LOG_FIELDS: [&str; 5] = [
    "gatekeeperUrl",
    "gatekeeperId",
    "keys",
    "logWitnesses",
    "logQuorum",
];

impl LogOptions {
    fn read(o: &Fields<'_>) -> Result<Self> {
        let base_url = o.string("gatekeeperUrl")?.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(bad("options.gatekeeperUrl must be an http(s) URL"));
        }
        let audience = GatekeeperId::parse(&o.string("gatekeeperId")?)?;
        let keys = o.keys()?;
        let origin = log_origin(&audience);
        let log_keys = keys
            .iter()
            .filter(|k| k.role == Role::gatekeeper())
            .map(|k| NoteVerifier::ed25519(&origin, k.public_key))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if log_keys.is_empty() {
            return Err(bad(
                "options.keys must hold the gatekeeper's key (role gatekeeper)",
            ));
        }
        let (witnesses, quorum) = o.witnesses()?;
        let gatekeeper = Policy::new(Keyring::new(keys)?, [(Role::gatekeeper(), 1)])?;
        Ok(Self {
            base_url,
            audience,
            gatekeeper,
            log_keys,
            witnesses,
            quorum,
        })
    }

    /// Fetches the log's newest checkpoint note.
    async fn checkpoint_note(&self, measure: &str) -> Result<Vec<u8>> {
        fetch(&self.base_url, measure, "checkpoint", MAX_NOTE_BYTES as u64).await
    }
}

/// The log as of one verified checkpoint, with the hash tiles fetched so far.
struct View {
    log: LogOptions,
    checkpoint: Checkpoint,
    note: String,
    cosigned_by: Vec<String>,
    tiles: RefCell<TileCache>,
    /// Tree nodes computed from the tiles, by level and index: fixed for the
    /// checkpoint's tree size, so rows of a page (and later pages) share them.
    nodes: RefCell<HashMap<(u32, u64), Hash>>,
}

/// The most tree nodes a [`LogView`] remembers (44 bytes each); past it, it starts over.
const MAX_VIEW_NODES: usize = 1 << 16;

/// A [`HashSource`] that remembers every node it computed.
struct Remembered<'a, S> {
    source: S,
    nodes: &'a mut HashMap<(u32, u64), Hash>,
}

impl<S: HashSource> HashSource for Remembered<'_, S> {
    fn node(&mut self, level: u32, index: u64) -> countersign_core::Result<Hash> {
        if let Some(hash) = self.nodes.get(&(level, index)) {
            return Ok(*hash);
        }
        let hash = self.source.node(level, index)?;
        self.nodes.insert((level, index), hash);
        Ok(hash)
    }
}

impl View {
    /// The hash tiles the inclusion proofs of leaves `seqs` need that are not cached,
    /// each named once: what a page's proofs fetch, all at once.
    fn tiles_to_fetch(&self, seqs: impl Iterator<Item = u64>) -> Vec<TilePath> {
        let size = self.checkpoint.size();
        let tiles = self.tiles.borrow();
        let nodes = self.nodes.borrow();
        let mut plan = TilePlan {
            size,
            tiles: &tiles,
            nodes: &nodes,
            cached: Vec::new(),
            need: Vec::new(),
        };
        for seq in seqs {
            // A proof that cannot be planned fails the same way when it is computed.
            let _ = inclusion_proof(&mut plan, seq, size);
        }
        plan.need
    }

    /// The inclusion proof of leaf `index` from the tiles fetched so far, or the next
    /// tile it needs (as [`countersign_core::logged::inclusion_from_tiles`], with the
    /// nodes remembered across proofs).
    fn step(&self, index: u64) -> countersign_core::Result<Step> {
        let size = self.checkpoint.size();
        let tiles = self.tiles.borrow();
        let mut nodes = self.nodes.borrow_mut();
        if nodes.len() > MAX_VIEW_NODES {
            nodes.clear();
        }
        let missing = std::cell::Cell::new(None);
        let source = TileHashes::new(size, |path: &TilePath| match tiles.get(path) {
            Some(body) => Ok(body.to_vec()),
            None => {
                missing.set(Some(*path));
                Err(countersign_core::Error::new(
                    ErrorCode::NotFound,
                    format!("tile {path} not fetched yet"),
                ))
            }
        });
        let proof = inclusion_proof(
            &mut Remembered {
                source,
                nodes: &mut nodes,
            },
            index,
            size,
        );
        match (proof, missing.take()) {
            (Ok(proof), _) => Ok(Step::Proof(proof)),
            (Err(_), Some(path)) => Ok(Step::Need(path)),
            (Err(e), None) => Err(e),
        }
    }
}

/// A [`HashSource`] that hashes nothing: a dry run of proofs, noting each hash tile
/// they read that is neither cached nor behind a node the view remembers. Which nodes
/// an inclusion proof reads depends only on the leaf's index and the tree size, never
/// on the hashes, so the dry run names every tile before any is fetched.
struct TilePlan<'a> {
    size: u64,
    tiles: &'a TileCache,
    nodes: &'a HashMap<(u32, u64), Hash>,
    /// Tiles found in the cache (a short list: spares the cache's lookups).
    cached: Vec<TilePath>,
    need: Vec<TilePath>,
}

impl HashSource for TilePlan<'_> {
    fn node(&mut self, level: u32, index: u64) -> countersign_core::Result<Hash> {
        if !self.nodes.contains_key(&(level, index)) {
            let (tile, _, _) = tile_for_node(level, index, self.size)?;
            if !self.cached.contains(&tile) && !self.need.contains(&tile) {
                if self.tiles.get(&tile).is_some() {
                    self.cached.push(tile);
                } else {
                    self.need.push(tile);
                }
            }
        }
        Ok([0; 32])
    }
}

/// A checkpoint fetched from `GET /v1/log/checkpoint` and verified (the gatekeeper's
/// signature and the witness quorum), with a cache of the hash tiles that proofs
/// against it fetched.
#[wasm_bindgen]
pub struct LogView {
    view: Rc<View>,
}

#[wasm_bindgen]
impl LogView {
    /// Fetches the log's checkpoint and verifies it under `options.keys` (any
    /// gatekeeper key) and the witness quorum. Rejects with a `CountersignError`:
    /// `bad_options`, `bad_signature`/`unknown_key` (not the gatekeeper's signature),
    /// `threshold_not_met` (too few trusted witnesses cosigned), `wrong_audience`,
    /// `not_found` (no checkpoint yet), `network`.
    #[wasm_bindgen(unchecked_return_type = "Promise<LogView>")]
    pub fn open(
        #[wasm_bindgen(unchecked_param_type = "LogViewOptions")] options: JsValue,
    ) -> Promise {
        make_errors_extend_error();
        into_promise(async move {
            let log = LogOptions::read(&Fields::new(&options, "options".to_owned(), &LOG_FIELDS)?)?;
            let note = log
                .checkpoint_note("countersign:logView:checkpoint")
                .await?;
            let origin = log_origin(&log.audience);
            let (checkpoint, _, cosigned_by) =
                open_under(&log.log_keys, &log.witnesses, log.quorum, |trust| {
                    open_checkpoint(&note, &origin, trust)
                })?;
            Ok(LogView {
                view: Rc::new(View {
                    log,
                    checkpoint,
                    note: String::from_utf8_lossy(&note).into_owned(),
                    cosigned_by,
                    tiles: RefCell::new(TileCache::default()),
                    nodes: RefCell::new(HashMap::new()),
                }),
            })
        })
    }

    /// The checkpoint's tree size: entries `0..treeSize` are covered.
    #[wasm_bindgen(getter, js_name = treeSize)]
    pub fn tree_size(&self) -> f64 {
        self.view.checkpoint.size() as f64
    }

    /// The checkpoint's root hash, lowercase hex.
    #[wasm_bindgen(getter, js_name = rootHash)]
    pub fn root_hash(&self) -> String {
        hex(self.view.checkpoint.root())
    }

    /// The witnesses whose cosignatures verified, by name.
    #[wasm_bindgen(getter, js_name = cosignedBy)]
    pub fn cosigned_by(&self) -> Vec<String> {
        self.view.cosigned_by.clone()
    }

    /// The checkpoint note as served (text and signature lines).
    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.view.note.clone()
    }

    /// Checks `entries` (`AuditRecord.entry` values: base64url of each entry's exact
    /// bytes, e.g. one search page): each is parsed (never re-encoded) and proven
    /// included at leaf index = its `seq` against this checkpoint, fetching the hash
    /// tiles the proofs need that are not cached (all at once, each once). Resolves
    /// with one `EntryCheck` per input, in order; a bad entry is a `failed` row, never
    /// a rejection. Rejects
    /// only when a tile cannot be fetched (`network`, `not_found`).
    #[wasm_bindgen(js_name = proveEntries, unchecked_return_type = "Promise<EntryCheck[]>")]
    pub fn prove_entries(&self, entries: Vec<String>) -> Promise {
        let view = self.view.clone();
        into_promise(async move {
            let checks = prove_entries(&view, &entries).await?;
            Ok(checks.into_iter().map(JsValue::from).collect::<Array>())
        })
    }
}

/// The outcome of one entry of `proveEntries`.
#[wasm_bindgen]
pub struct EntryCheck {
    entry: Option<AuditEntry>,
    /// `None`: verified or pending (by `seq` against the tree size); else the failure.
    failure: Option<CountersignError>,
    pending: bool,
}

#[wasm_bindgen]
impl EntryCheck {
    /// The entry's sequence number (its leaf index); `undefined` if the bytes do not
    /// parse.
    #[wasm_bindgen(getter)]
    pub fn seq(&self) -> Option<f64> {
        self.entry.as_ref().map(|e| e.seq as f64)
    }

    /// `verified`: the entry is leaf `seq` of the checkpoint's tree; `failed`: it is
    /// not, or its bytes are no entry (see `code`); `pending`: `seq` ≥ the
    /// checkpoint's tree size, not covered yet.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "\"verified\" | \"failed\" | \"pending\""
    )]
    pub fn status(&self) -> String {
        match (&self.failure, self.pending) {
            (Some(_), _) => "failed",
            (None, true) => "pending",
            (None, false) => "verified",
        }
        .to_owned()
    }

    /// For `failed`: the stable error code (`malformed` for bytes that are no entry,
    /// `audit_chain_broken` for an entry that is not the log's leaf at its `seq`,
    /// `wrong_audience` for another gatekeeper's entry).
    #[wasm_bindgen(getter, unchecked_return_type = "ErrorCode | undefined")]
    pub fn code(&self) -> Option<String> {
        self.failure.as_ref().map(CountersignError::code)
    }

    /// For `failed`: one sentence.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> Option<String> {
        self.failure.as_ref().map(CountersignError::message)
    }

    /// What the entry's bytes say (`undefined` if they do not parse); proven by the
    /// log only when `status` is `verified`.
    #[wasm_bindgen(getter, unchecked_return_type = "AuditEntryFields | undefined")]
    pub fn fields(&self) -> JsValue {
        self.entry.as_ref().map_or(JsValue::UNDEFINED, entry_fields)
    }
}

/// A byte field as text: itself when UTF-8, else percent-escaped.
fn text(bytes: &[u8]) -> JsValue {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => escape(bytes).into(),
    }
}

/// `AuditEntryFields` of `entry`.
fn entry_fields(entry: &AuditEntry) -> JsValue {
    let o = Object::new();
    let set = |k: &str, v: JsValue| {
        // Setting a data property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &k.into(), &v);
    };
    set("seq", (entry.seq as f64).into());
    set("timeMs", (entry.time_ms as f64).into());
    set("gatekeeper", entry.gatekeeper.to_string().into());
    if let Some(id) = &entry.request_id {
        set("requestId", text(id));
    }
    set("clientIp", entry.client_ip.to_string().into());
    set("operation", text(&entry.operation));
    set("bucket", text(&entry.bucket));
    set("key", text(&entry.key));
    set("subject", text(&entry.subject));
    set("decision", entry.decision.as_str().into());
    if let Some(code) = entry.decision.error() {
        set("error", code.as_str().into());
    }
    set("bytes", (entry.bytes as f64).into());
    set("latencyUs", (entry.latency_us as f64).into());
    o.into()
}

/// One input of `proveEntries` on its way.
enum Row {
    Done(EntryCheck),
    /// Parsed, covered by the checkpoint: to prove, with its leaf hash.
    Prove(AuditEntry, [u8; 32]),
}

fn failed(entry: Option<AuditEntry>, e: impl Into<CountersignError>) -> Row {
    Row::Done(EntryCheck {
        entry,
        failure: Some(e.into()),
        pending: false,
    })
}

/// Parses `b64` as an entry and sorts it: failed, pending, or to prove.
fn row(view: &View, b64: &str) -> Row {
    let bytes = match parse_b64(b64, "the entry") {
        Ok(bytes) => bytes,
        Err(e) => return failed(None, e),
    };
    let entry = match AuditEntry::parse(&bytes) {
        Ok(entry) => entry,
        Err(e) => return failed(None, e),
    };
    if entry.gatekeeper != view.log.audience {
        let message = format!(
            "entry {} is gatekeeper `{}`'s, not of this log (`{}`)",
            entry.seq, entry.gatekeeper, view.log.audience
        );
        return failed(
            Some(entry),
            protocol_error(ErrorCode::WrongAudience, message),
        );
    }
    if entry.seq >= view.checkpoint.size() {
        return Row::Done(EntryCheck {
            entry: Some(entry),
            failure: None,
            pending: true,
        });
    }
    Row::Prove(entry, leaf_hash(&bytes))
}

/// Keeps the page responsive through long computations: after [`BUSY_MS`] of work,
/// lets the browser run its event loop (a `setTimeout(0)` task) before going on.
struct Busy {
    since: f64,
}

/// How long proofs run before the browser gets a turn, in ms.
const BUSY_MS: f64 = 50.0;

impl Busy {
    fn new() -> Self {
        Self {
            since: performance_now(),
        }
    }

    async fn pause_if_long(&mut self) {
        if performance_now() - self.since < BUSY_MS {
            return;
        }
        let set_timeout = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        if let Some(set_timeout) = set_timeout {
            let task = Promise::new(&mut |resolve, _| {
                let _ = set_timeout.call2(&JsValue::NULL, &resolve, &0.into());
            });
            let _ = JsFuture::from(task).await;
        }
        self.since = performance_now();
    }
}

/// The inclusion proof of leaf `seq` from the cached tiles, fetching any that a
/// concurrent call dropped from the cache meanwhile. The outer error is a failed
/// fetch; the inner one, a proof that cannot be computed from the tiles.
async fn proof_of(view: &View, seq: u64) -> Result<countersign_core::Result<Vec<Hash>>> {
    loop {
        match view.step(seq) {
            Ok(Step::Need(path)) => {
                let body = fetch_tile(view, &path).await?;
                view.tiles.borrow_mut().insert(path, body);
            }
            Ok(Step::Proof(proof)) => return Ok(Ok(proof)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// One hash tile of the view's log.
async fn fetch_tile(view: &View, path: &TilePath) -> Result<Vec<u8>> {
    fetch(
        &view.log.base_url,
        "countersign:logView:tile",
        &path.to_string(),
        TILE_WIDTH * 32,
    )
    .await
}

/// Fetches the hash tiles `paths` into the view's cache, [`TILE_FETCHES`] at a time.
async fn fetch_tiles(view: &View, paths: Vec<TilePath>) -> Result<()> {
    let mut fetched = futures::stream::iter(paths)
        .map(
            |path| async move { Ok::<_, CountersignError>((path, fetch_tile(view, &path).await?)) },
        )
        .buffer_unordered(TILE_FETCHES);
    while let Some(next) = fetched.next().await {
        let (path, body) = next?;
        view.tiles.borrow_mut().insert(path, body);
    }
    Ok(())
}

async fn prove_entries(view: &View, entries: &[String]) -> Result<Vec<EntryCheck>> {
    let size = view.checkpoint.size();
    let start = performance_now();
    let rows: Vec<Row> = entries.iter().map(|e| row(view, e)).collect();
    let need = view.tiles_to_fetch(rows.iter().filter_map(|row| match row {
        Row::Prove(entry, _) => Some(entry.seq),
        Row::Done(_) => None,
    }));
    measure("countersign:logView:plan", start);
    // One round: every tile the page's proofs need, each fetched once.
    fetch_tiles(view, need).await?;
    let start = performance_now();
    let mut busy = Busy::new();
    let mut any_failed = false;
    let mut checks = Vec::with_capacity(rows.len());
    for row in rows {
        checks.push(match row {
            Row::Done(check) => check,
            Row::Prove(entry, leaf) => {
                busy.pause_if_long().await;
                let proven = proof_of(view, entry.seq).await?.and_then(|proof| {
                    verify_inclusion(entry.seq, size, &leaf, &proof, view.checkpoint.root())
                });
                match proven {
                    Ok(()) => EntryCheck {
                        entry: Some(entry),
                        failure: None,
                        pending: false,
                    },
                    Err(e) => {
                        any_failed = true;
                        let message = format!(
                            "entry {} is not the log's leaf {} in the checkpoint of {size} entries: {}",
                            entry.seq,
                            entry.seq,
                            e.message()
                        );
                        EntryCheck {
                            entry: Some(entry),
                            failure: Some(protocol_error(e.code(), message)),
                            pending: false,
                        }
                    }
                }
            }
        });
    }
    measure("countersign:logView:prove", start);
    // A gatekeeper may serve a wrong tile: after a failed proof no tile is kept.
    let mut tiles = view.tiles.borrow_mut();
    if any_failed {
        *tiles = TileCache::default();
        view.nodes.borrow_mut().clear();
    } else {
        tiles.trim(MAX_VIEW_TILES);
    }
    Ok(checks)
}

/// Verifies the whole log (`docs/API.md`, "Audit console"): the signed checkpoint,
/// then every entry bundle `GET /v1/audit/tile/entries/<N>` (each request a fresh
/// `AuditRequest` signed by `options.sign`) with its level-0 hash tile, through the
/// core's `TileLogVerifier`, as `countersign audit verify --url` does; a few bundles
/// are fetched ahead, and memory is bounded by them. Rejects with a
/// `CountersignError`: `audit_chain_broken` naming the entry or checkpoint that does
/// not match, the gatekeeper's refusal of a bundle request (`forbidden`,
/// `unknown_key`, …), the checkpoint's errors as `LogView.open`, `network`.
#[wasm_bindgen(js_name = verifyLog, unchecked_return_type = "Promise<LogVerifyReport>")]
pub fn verify_log(
    #[wasm_bindgen(unchecked_param_type = "VerifyLogOptions")] options: JsValue,
) -> Promise {
    make_errors_extend_error();
    into_promise(async move { verify(&options).await })
}

/// The signer of `verifyLog`'s bundle requests.
struct Admin {
    subject: Subject,
    key_id: KeyId,
    sign: Function,
}

async fn verify(options: &JsValue) -> Result<JsValue> {
    let start = performance_now();
    let mut known = LOG_FIELDS.to_vec();
    known.extend(["subject", "keyId", "sign", "onProgress"]);
    let o = Fields::new(options, "options".to_owned(), &known)?;
    let log = LogOptions::read(&o)?;
    let function = |name: &str| {
        Reflect::get(options, &name.into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
    };
    let admin = Admin {
        subject: Subject::parse(&o.string("subject")?)?,
        key_id: KeyId::parse(&o.string("keyId")?)?,
        sign: function("sign").ok_or_else(|| {
            bad("options.sign must be an async function (message: Uint8Array) => signature")
        })?,
    };
    let on_progress = match Reflect::get(options, &"onProgress".into()) {
        Ok(v) if v.is_undefined() || v.is_null() => None,
        _ => Some(
            function("onProgress").ok_or_else(|| bad("options.onProgress must be a function"))?,
        ),
    };
    let note = log
        .checkpoint_note("countersign:verifyLog:checkpoint")
        .await?;
    let mut verifier = open_under(&log.log_keys, &log.witnesses, log.quorum, |trust| {
        TileLogVerifier::new(&log.gatekeeper, &note, trust)
    })?;
    let total = verifier.size();
    let paths = (0..total.div_ceil(TILE_WIDTH)).map(|index| {
        let width = (total - index * TILE_WIDTH).min(TILE_WIDTH);
        // `width` is 1..=256: a valid entry bundle path.
        TilePath::new(TileKind::Entries, index, width as u16)
    });
    let mut bundles = futures::stream::iter(paths)
        .map(|path| {
            let (log, admin) = (&log, &admin);
            async move {
                let path = path?;
                let (bundle, tile) = futures::future::try_join(
                    fetch_bundle(log, admin, &path),
                    fetch_tile_of(log, &path),
                )
                .await?;
                Ok::<_, CountersignError>((path, bundle, tile))
            }
        })
        .buffered(BUNDLES_AHEAD);
    let mut count = 0u64;
    let mut verified = 0u64;
    while let Some(next) = bundles.next().await {
        let (path, bundle, tile) = next?;
        verifier.bundle(&path, &bundle, &tile)?;
        count += 1;
        verified += u64::from(path.width());
        if let Some(f) = &on_progress {
            // The page's callback only displays progress: its failure is its own.
            let _ = f.call2(
                &JsValue::NULL,
                &(verified as f64).into(),
                &(total as f64).into(),
            );
        }
    }
    drop(bundles);
    let report = verifier.finish()?;
    let out = Object::new();
    for (k, v) in [
        ("entries", JsValue::from(report.entries as f64)),
        ("bundles", (count as f64).into()),
        ("treeSize", (total as f64).into()),
        ("rootHash", hex(&report.root).into()),
        ("millis", (performance_now() - start).into()),
    ] {
        let _ = Reflect::set(&out, &k.into(), &v);
    }
    Ok(out.into())
}

/// The level-0 hash tile of entry bundle `path`.
async fn fetch_tile_of(log: &LogOptions, path: &TilePath) -> Result<Vec<u8>> {
    let tile = TilePath::new(TileKind::Hashes { level: 0 }, path.index(), path.width())?;
    fetch(
        &log.base_url,
        "countersign:verifyLog:tile",
        &tile.to_string(),
        TILE_WIDTH * 32,
    )
    .await
}

/// `GET /v1/audit/<path>`, signed with a fresh audit request by the admin.
async fn fetch_bundle(log: &LogOptions, admin: &Admin, path: &TilePath) -> Result<Vec<u8>> {
    let request = AuditRequest::build(
        log.audience.clone(),
        admin.subject.clone(),
        admin.key_id.clone(),
        AuditAction::Read,
        60,
    )?;
    let signed = admin
        .sign
        .call1(&JsValue::NULL, &request.signing_message().into())
        .map_err(|e| network("the sign function threw", describe(&e)))?;
    let signature = JsFuture::from(Promise::resolve(&signed))
        .await
        .map_err(|e| network("the sign function rejected", describe(&e)))?;
    let signature = signature
        .dyn_into::<Uint8Array>()
        .map_err(|_| bad("options.sign must resolve to a Uint8Array of 64 bytes"))?
        .to_vec();
    let url = format!("{}/v1/audit/{path}", log.base_url);
    let response = HttpRequest::get(&url)
        .header(REQUEST_HEADER, &request.request_header())
        .header(SIGNATURE_HEADER, &request.signature_header(&signature)?)
        .send()
        .await
        .map_err(|e| network("fetching an entry bundle", e))?;
    if !response.ok() {
        let body = read_body(&response, 64 * 1024, || {
            network("reading the gatekeeper's refusal", "too long")
        })
        .await;
        return Err(
            match body
                .ok()
                .and_then(|b| json_error(&String::from_utf8_lossy(&b)))
            {
                Some((code, message)) => CountersignError::protocol(&code, message),
                None => network(
                    "fetching an entry bundle",
                    format!("GET /v1/audit/{path} answered HTTP {}", response.status()),
                ),
            },
        );
    }
    let max = u64::from(path.width()) * (MAX_BUNDLE_ENTRY as u64 + 2);
    read_body(&response, max, || {
        protocol_error(
            ErrorCode::TooLarge,
            format!("entry bundle {path} is larger than {max} bytes"),
        )
    })
    .await
}

fn into_promise<T: Into<JsValue>>(
    f: impl std::future::Future<Output = Result<T>> + 'static,
) -> Promise {
    future_to_promise(async move { f.await.map(Into::into).map_err(Into::into) })
}
