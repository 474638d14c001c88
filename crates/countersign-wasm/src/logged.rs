//! `client.proveLogged(receipt)`: proves that a request's audit entry is in the
//! gatekeeper's log (`docs/PROTOCOL.md`, "Proving a receipt was logged"). One public
//! request, `GET /v1/log/proof/<index>`, answers the log's checkpoint and the entry's
//! inclusion proof; both are checked here, in wasm, against the gatekeeper key the
//! page configured (and the witnesses' cosignatures, if it asks for a quorum). The
//! audit console (admin flavor) computes its proofs from the hash tiles instead.

use crate::error::CountersignError;
use crate::http::{discard_body, network, protocol_error, read_body};
use crate::options::Config;
use countersign_core::logged::{
    LogProofAnswer, LogTrust, LoggedReceipt, MAX_PROOF_ANSWER_BYTES, verify_proof_answer,
};
use countersign_core::note::NoteVerifier;
use countersign_core::text::hex;
#[cfg(feature = "admin")]
use countersign_core::tiles::TilePath;
use countersign_core::{ErrorCode, Receipt};
use gloo_net::http::Request as HttpRequest;
use wasm_bindgen::prelude::*;

type Result<T> = std::result::Result<T, CountersignError>;

/// A gatekeeper receipt that verified (of an allowed or a refused request): what
/// `proveLogged` takes.
#[wasm_bindgen]
#[derive(Clone, Debug)]
pub struct LogReceipt {
    pub(crate) receipt: Receipt,
}

#[wasm_bindgen]
impl LogReceipt {
    /// The audit entry's sequence number: its leaf index in the log.
    #[wasm_bindgen(getter, js_name = auditSeq)]
    pub fn audit_seq(&self) -> f64 {
        self.receipt.audit_seq as f64
    }
    /// The entry's RFC 6962 leaf hash, lowercase hex; `undefined` for a receipt of
    /// format version 1, which cannot prove logging.
    #[wasm_bindgen(getter, js_name = leafSha256)]
    pub fn leaf_sha256(&self) -> Option<String> {
        self.receipt.leaf_sha256.as_ref().map(|h| hex(h))
    }
    /// `allow` or `deny`.
    #[wasm_bindgen(getter)]
    pub fn decision(&self) -> String {
        self.receipt.decision.as_str().to_owned()
    }
}

/// The proof that a receipt's entry is in the log.
#[wasm_bindgen]
pub struct LogProof {
    logged: LoggedReceipt,
}

#[wasm_bindgen]
impl LogProof {
    /// The entry's leaf index (its sequence number).
    #[wasm_bindgen(getter, js_name = leafIndex)]
    pub fn leaf_index(&self) -> f64 {
        self.logged.leaf_index as f64
    }
    /// The entry's leaf hash, lowercase hex.
    #[wasm_bindgen(getter, js_name = leafSha256)]
    pub fn leaf_sha256(&self) -> String {
        hex(&self.logged.leaf_sha256)
    }
    /// The size of the signed tree the inclusion was proven in.
    #[wasm_bindgen(getter, js_name = treeSize)]
    pub fn tree_size(&self) -> f64 {
        self.logged.checkpoint.size() as f64
    }
    /// Its root hash, lowercase hex.
    #[wasm_bindgen(getter, js_name = rootHash)]
    pub fn root_hash(&self) -> String {
        hex(self.logged.checkpoint.root())
    }
    /// The names of the witnesses whose cosignatures verified.
    #[wasm_bindgen(getter, js_name = cosignedBy)]
    pub fn cosigned_by(&self) -> Vec<String> {
        self.logged.cosigned_by.clone()
    }
}

/// GETs `/v1/log/<path>` of the gatekeeper at `base_url`, at most `max` bytes; 404 is
/// `not_found` (not there yet). Each fetch is a `performance.measure` entry `name`
/// (`countersign:proveLogged:proof`, …): the rest of a proof's time is spent in wasm.
pub(crate) async fn fetch(base_url: &str, name: &str, path: &str, max: u64) -> Result<Vec<u8>> {
    let start = performance_now();
    let body = fetch_body(base_url, path, max).await;
    measure(name, start);
    body
}

async fn fetch_body(base_url: &str, path: &str, max: u64) -> Result<Vec<u8>> {
    let url = format!("{base_url}/v1/log/{path}");
    let response = HttpRequest::get(&url)
        .send()
        .await
        .map_err(|e| network("fetching the log", e))?;
    if response.status() == 404 {
        discard_body(&response).await;
        return Err(protocol_error(
            ErrorCode::NotFound,
            format!("the log has no {path} (yet)"),
        ));
    }
    if !response.ok() {
        discard_body(&response).await;
        return Err(network(
            "fetching the log",
            format!("GET /v1/log/{path} answered HTTP {}", response.status()),
        ));
    }
    read_body(&response, max, || {
        protocol_error(
            ErrorCode::TooLarge,
            format!("/v1/log/{path} is larger than {max} bytes"),
        )
    })
    .await
}

/// Hash tiles fetched from one log, which are immutable (`tlog-tiles`): what
/// `LogView.proveEntries` keeps between proofs. A proof adds the tiles it fetches;
/// [`TileCache::trim`] then keeps the newest `max`.
#[cfg(feature = "admin")]
#[derive(Default)]
pub(crate) struct TileCache {
    tiles: Vec<(TilePath, Vec<u8>)>,
}

#[cfg(feature = "admin")]
impl TileCache {
    /// Adds a fetched tile.
    pub(crate) fn insert(&mut self, path: TilePath, body: Vec<u8>) {
        self.tiles.push((path, body));
    }

    /// The tile at `path`, if fetched.
    pub(crate) fn get(&self, path: &TilePath) -> Option<&[u8]> {
        self.tiles
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, body)| body.as_slice())
    }

    /// Drops the oldest tiles beyond `max`.
    pub(crate) fn trim(&mut self, max: usize) {
        let excess = self.tiles.len().saturating_sub(max);
        self.tiles.drain(..excess);
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub(crate) fn performance_now() -> f64;
    #[wasm_bindgen(js_namespace = performance, js_name = measure, catch)]
    fn performance_measure(
        name: &str,
        options: &js_sys::Object,
    ) -> std::result::Result<JsValue, JsValue>;
}

/// Records `performance.measure(name, {start, end: now})` for the page's profiler (and
/// the browser test, which splits a proof's time with it).
pub(crate) fn measure(name: &str, start: f64) {
    let end = performance_now();
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"start".into(), &start.into());
    let _ = js_sys::Reflect::set(&options, &"end".into(), &end.into());
    // Only a diagnostic: a browser without User Timing still proves.
    let _ = performance_measure(name, &options);
}

/// Opens a checkpoint with `open` under each of the log keys in turn (any of the
/// gatekeeper's keys may sign it: key rotation), with the witnesses and quorum.
pub(crate) fn open_under<T>(
    log_keys: &[NoteVerifier],
    witnesses: &[NoteVerifier],
    quorum: usize,
    open: impl Fn(&LogTrust) -> countersign_core::Result<T>,
) -> Result<T> {
    let mut opened = Err(protocol_error(
        ErrorCode::UnknownKey,
        "no gatekeeper key is configured",
    ));
    for log_key in log_keys {
        let trust = LogTrust {
            log_key: log_key.clone(),
            witnesses: witnesses.to_vec(),
            quorum,
        };
        match open(&trust) {
            Err(e) if e.code() == ErrorCode::UnknownKey => opened = Err(e.into()),
            other => return other.map_err(Into::into),
        }
    }
    opened
}

/// Proves `receipt`'s entry is in the log, under the configured log keys: one
/// request (`GET /v1/log/proof/<index>`), whose answer is trusted for nothing.
pub(crate) async fn prove(config: &Config, receipt: &Receipt) -> Result<LogProof> {
    let body = fetch(
        &config.base_url,
        "countersign:proveLogged:proof",
        &format!("proof/{}", receipt.audit_seq),
        MAX_PROOF_ANSWER_BYTES as u64,
    )
    .await?;
    let answer = LogProofAnswer::parse(&body)?;
    let logged = open_under(
        &config.log_keys,
        &config.witnesses,
        config.quorum,
        |trust| verify_proof_answer(receipt, &answer, trust),
    )?;
    Ok(LogProof { logged })
}
