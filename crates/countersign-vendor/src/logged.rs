//! Proving that a request was logged (`docs/PROTOCOL.md`, "Proving a receipt was
//! logged"): a version-2 receipt names its audit entry's leaf index and leaf hash;
//! [`prove_logged`] fetches the gatekeeper's signed checkpoint and the hash tiles the
//! inclusion proof needs (public, unauthenticated resources under `/v1/log/`),
//! verifies the checkpoint under the gatekeeper's log key (and witness quorum), and
//! the inclusion of the receipt's leaf. The SDK does no I/O itself: the caller passes
//! the function that GETs a log resource.
//!
//! Whoever may read the entry (a customer admin, through `GET /v1/audit/...`) also
//! checks that it records the receipt's request and decision with
//! [`check_entry`].

use crate::error::{Error, Result};
use countersign_core::logged::{Step, inclusion_from_tiles, open_checkpoint_for, verify_logged};
use countersign_core::text::parse_b64;
use countersign_core::{ErrorCode, GatekeeperId, Policy, Receipt, VerifiedReceipt};
use serde::{Deserialize, Serialize};

pub use countersign_core::logged::{LogTrust, LoggedReceipt, check_entry};

/// Path (under `/v1/log/`) of the newest signed checkpoint.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// A receipt as the `countersign` CLI saves it (`put`/`get --receipt FILE`) and
/// `countersign audit prove` reads it: JSON with the gatekeeper the request was sent
/// to, the canonical request and the two receipt header values, as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedReceipt {
    /// Gatekeeper id the request was sent to.
    pub gatekeeper: String,
    /// The canonical request, base64url (the `Countersign-Request` value sent).
    pub request: String,
    /// The `Countersign-Receipt` value received.
    pub receipt: String,
    /// The `Countersign-Receipt-Signature` value received.
    pub receipt_signature: String,
}

impl SavedReceipt {
    /// Reads the JSON form; anything else is `malformed`.
    pub fn parse(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).map_err(|e| {
            Error::from(countersign_core::Error::new(
                ErrorCode::Malformed,
                format!("not a saved receipt (JSON with gatekeeper, request, receipt, receipt_signature): {e}"),
            ))
        })
    }

    /// The canonical request bytes.
    pub fn request_bytes(&self) -> Result<Vec<u8>> {
        Ok(parse_b64(&self.request, "the saved request")?)
    }

    /// Verifies the receipt under `gatekeeper` (the policy of the gatekeeper's keys) as
    /// [`crate::transport::verify_receipt`] does.
    pub fn verify(&self, gatekeeper: &Policy) -> Result<VerifiedReceipt> {
        let id = GatekeeperId::parse(&self.gatekeeper)?;
        crate::transport::verify_receipt(
            &self.receipt,
            &self.receipt_signature,
            &id,
            gatekeeper,
            &self.request_bytes()?,
        )
    }
}

/// Proves that the verified `receipt`'s entry is in the gatekeeper's log: `fetch`
/// GETs a resource under `/v1/log/` ([`CHECKPOINT_PATH`], then hash tiles such as
/// `tile/0/x001/234.p/7`) and returns its body; its errors are passed through.
/// Errors: as [`countersign_core::logged::open_checkpoint_for`] (among them
/// `not_found` while the log has not yet integrated the entry: retry after its
/// checkpoint interval), `audit_chain_broken` if the leaf is not in the signed tree.
pub fn prove_logged(
    receipt: &VerifiedReceipt,
    trust: &LogTrust,
    mut fetch: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<LoggedReceipt> {
    let receipt: &Receipt = receipt.receipt();
    let note = fetch(CHECKPOINT_PATH)?;
    let (checkpoint, _, cosigned_by) = open_checkpoint_for(receipt, &note, trust)?;
    let mut tiles = Vec::new();
    let proof = loop {
        match inclusion_from_tiles(receipt.audit_seq, checkpoint.size(), &tiles)? {
            Step::Need(path) => {
                let body = fetch(&path.to_string())?;
                tiles.push((path, body));
            }
            Step::Proof(proof) => break proof,
        }
    };
    Ok(verify_logged(receipt, checkpoint, cosigned_by, &proof)?)
}
