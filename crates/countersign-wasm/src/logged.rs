//! `client.proveLogged(receipt)`: proves that a request's audit entry is in the
//! gatekeeper's log (`docs/PROTOCOL.md`, "Proving a receipt was logged"). The
//! checkpoint and the hash tiles are public (`/v1/log/...`); the proof is computed and
//! checked here, in wasm, against the checkpoint signed by the gatekeeper key the page
//! configured (and the witnesses' cosignatures, if it asks for a quorum).

use crate::error::CountersignError;
use crate::http::{discard_body, network, protocol_error, read_body};
use crate::options::Config;
use countersign_core::logged::{
    LogTrust, LoggedReceipt, Step, inclusion_from_tiles, open_checkpoint_for, verify_logged,
};
use countersign_core::note::MAX_NOTE_BYTES;
use countersign_core::text::hex;
use countersign_core::tiles::TILE_WIDTH;
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

/// GETs `/v1/log/<path>`, at most `max` bytes; 404 is `not_found` (not there yet).
async fn fetch(config: &Config, path: &str, max: u64) -> Result<Vec<u8>> {
    let url = config.url(&format!("/v1/log/{path}"));
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

/// Proves `receipt`'s entry is in the log, under the configured log keys.
pub(crate) async fn prove(config: &Config, receipt: &Receipt) -> Result<LogProof> {
    let note = fetch(config, "checkpoint", MAX_NOTE_BYTES as u64).await?;
    // Any of the gatekeeper's keys may sign the checkpoint (key rotation).
    let mut opened = Err(protocol_error(
        ErrorCode::UnknownKey,
        "no gatekeeper key is configured",
    ));
    for log_key in &config.log_keys {
        let trust = LogTrust {
            log_key: log_key.clone(),
            witnesses: config.witnesses.clone(),
            quorum: config.quorum,
        };
        match open_checkpoint_for(receipt, &note, &trust) {
            Err(e) if e.code() == ErrorCode::UnknownKey => opened = Err(e.into()),
            other => {
                opened = other.map_err(Into::into);
                break;
            }
        }
    }
    let (checkpoint, _, cosigned_by) = opened?;
    let mut tiles = Vec::new();
    let proof = loop {
        match inclusion_from_tiles(receipt.audit_seq, checkpoint.size(), &tiles)? {
            Step::Need(path) => {
                let body = fetch(config, &path.to_string(), TILE_WIDTH * 32).await?;
                tiles.push((path, body));
            }
            Step::Proof(proof) => break proof,
        }
    };
    Ok(LogProof {
        logged: verify_logged(receipt, checkpoint, cosigned_by, &proof)?,
    })
}
