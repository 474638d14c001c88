//! Vectors of the transparency-log formats (`tests/vectors/tlog.json`): tree heads
//! over exact entry bytes, inclusion and consistency proofs, signed checkpoints and
//! cosignatures, tile paths and entry bundles, answers of the proof endpoint. Each
//! case pins its inputs and, when it expects `ok`, its outputs; [`tlog_outcome`]
//! replays one.

use countersign_core::merkle::{
    Hash, TreeBuilder, leaf_hash, verify_consistency, verify_inclusion,
};
use countersign_core::note::{Checkpoint, NoteVerifier, SignedNote};
use countersign_core::tiles::{TileKind, TilePath, parse_bundle};
use serde::{Deserialize, Serialize};

use crate::from_hex;

/// One file of transparency-log vectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TlogVectorFile {
    /// What the file covers.
    pub description: String,
    /// The cases.
    pub cases: Vec<TlogCase>,
}

/// What a case checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlogKind {
    #[default]
    /// `entries_hex` hash (leaf = SHA-256(0x00 ‖ bytes)) to the tree head `root_hex`.
    TreeHead,
    /// `proof_hex` proves leaf `index` (hash `leaf_hex`) in the tree of `size` with
    /// root `root_hex`.
    Inclusion,
    /// `proof_hex` proves the tree of `size` (`root_hex`) extends the tree of
    /// `old_size` (`old_root_hex`).
    Consistency,
    /// `note` is a checkpoint of log `origin` signed by `verifier_keys[0]`; further
    /// verifier keys are witnesses whose cosignatures must verify. On `ok`, `size`,
    /// `root_hex` and `cosignature_times` are what the note holds.
    Checkpoint,
    /// `path` is a tile path; on `ok`, `tile` is what it names.
    TilePath,
    /// `bundle_hex` is an entry bundle; on `ok`, `entries_hex` are its entries.
    EntryBundle,
    /// `answer` is a `GET /v1/log/proof/<index>` answer for a receipt of the log
    /// `origin` (`<gatekeeper id>/audit`) naming leaf `index` with hash `leaf_hex`,
    /// verified under the log key `verifier_keys[0]`; on `ok`, `size` and `root_hex`
    /// are its checkpoint's.
    LogProof,
}

/// One case; the fields used depend on the kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TlogCase {
    /// Unique name.
    pub name: String,
    /// What the case checks.
    pub description: String,
    /// What it checks.
    pub kind: TlogKind,
    /// Entries, hex (tree heads, bundles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries_hex: Vec<String>,
    /// A leaf index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// A tree size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// An older tree size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// A leaf hash, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hex: Option<String>,
    /// A root hash, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hex: Option<String>,
    /// An older root hash, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_root_hex: Option<String>,
    /// Proof hashes, hex, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof_hex: Vec<String>,
    /// A signed note, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The log's origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Verifier keys `name+keyid+base64(type ‖ key)`: the log's, then witnesses'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifier_keys: Vec<String>,
    /// The witnesses' cosignature times, in the order of `verifier_keys[1..]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosignature_times: Vec<u64>,
    /// A tile path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What a tile path names: `[level or -1 for entries, index, width]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<[i64; 3]>,
    /// An entry bundle, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_hex: Option<String>,
    /// A proof endpoint's answer, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// `"ok"` or the expected error code.
    pub expect: String,
}

fn hash(s: &Option<String>, what: &str) -> Result<Hash, String> {
    from_hex(s.as_deref().ok_or(format!("no {what}"))?)?
        .try_into()
        .map_err(|_| format!("{what} is not 32 bytes"))
}

fn hashes(v: &[String]) -> Result<Vec<Hash>, String> {
    v.iter()
        .map(|h| hash(&Some(h.clone()), "proof hash"))
        .collect()
}

/// Replays one case: `"ok"` or the error code. `Err` means the vector is broken or an
/// `ok` result differs from the pinned output.
pub fn tlog_outcome(case: &TlogCase) -> Result<String, String> {
    let need = |v: Option<u64>, what: &str| v.ok_or(format!("{}: no {what}", case.name));
    let result = match case.kind {
        TlogKind::TreeHead => {
            let mut tree = TreeBuilder::new();
            for e in &case.entries_hex {
                tree.push(leaf_hash(&from_hex(e)?))
                    .map_err(|e| e.to_string())?;
            }
            if tree.root() != hash(&case.root_hex, "root_hex")? {
                return Err(format!("{}: another tree head", case.name));
            }
            Ok(())
        }
        TlogKind::Inclusion => verify_inclusion(
            need(case.index, "index")?,
            need(case.size, "size")?,
            &hash(&case.leaf_hex, "leaf_hex")?,
            &hashes(&case.proof_hex)?,
            &hash(&case.root_hex, "root_hex")?,
        ),
        TlogKind::Consistency => verify_consistency(
            need(case.old_size, "old_size")?,
            need(case.size, "size")?,
            &hash(&case.old_root_hex, "old_root_hex")?,
            &hash(&case.root_hex, "root_hex")?,
            &hashes(&case.proof_hex)?,
        ),
        TlogKind::Checkpoint => check_checkpoint(case)?,
        TlogKind::LogProof => check_log_proof(case)?,
        TlogKind::TilePath => {
            let path = case.path.as_deref().ok_or("no path")?;
            match TilePath::parse(path) {
                Ok(t) => {
                    let level = match t.kind() {
                        TileKind::Hashes { level } => i64::from(level),
                        TileKind::Entries => -1,
                    };
                    let index = i64::try_from(t.index()).map_err(|e| e.to_string())?;
                    if Some([level, index, i64::from(t.width())]) != case.tile
                        || t.to_string() != path
                    {
                        return Err(format!("{}: the path names another tile", case.name));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        TlogKind::EntryBundle => {
            let bundle = from_hex(case.bundle_hex.as_deref().ok_or("no bundle_hex")?)?;
            match parse_bundle(&bundle) {
                Ok(entries) => {
                    let got: Vec<String> = entries
                        .iter()
                        .map(|e| countersign_core::text::hex(e))
                        .collect();
                    if got != case.entries_hex {
                        return Err(format!("{}: other entries", case.name));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    Ok(match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.code().as_str().to_owned(),
    })
}

fn check_checkpoint(case: &TlogCase) -> Result<Result<(), countersign_core::Error>, String> {
    let note = case.note.as_deref().ok_or("no note")?;
    let origin = case.origin.as_deref().ok_or("no origin")?;
    let keys = case
        .verifier_keys
        .iter()
        .map(|k| NoteVerifier::parse(k))
        .collect::<Result<Vec<_>, _>>();
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let (log, witnesses) = keys.split_first().ok_or("no verifier keys")?;
    let (cp, signed): (Checkpoint, SignedNote) =
        match Checkpoint::open(note.as_bytes(), origin, log) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
    let mut times = Vec::new();
    for w in witnesses {
        match signed.verify(&[w]) {
            Ok(v) => times.extend(v.iter().map(|s| s.time)),
            Err(e) => return Ok(Err(e)),
        }
    }
    if Some(cp.size()) != case.size
        || Some(countersign_core::text::hex(cp.root())) != case.root_hex
        || times != case.cosignature_times
    {
        return Err(format!("{}: the checkpoint holds other values", case.name));
    }
    Ok(Ok(()))
}

fn check_log_proof(case: &TlogCase) -> Result<Result<(), countersign_core::Error>, String> {
    use countersign_core::logged::{LogProofAnswer, LogTrust, verify_proof_answer};
    let answer = case.answer.as_deref().ok_or("no answer")?;
    let gatekeeper = case
        .origin
        .as_deref()
        .and_then(|o| o.strip_suffix("/audit"))
        .ok_or("no origin `<gatekeeper id>/audit`")?;
    let receipt = countersign_core::Receipt {
        gatekeeper: countersign_core::GatekeeperId::parse(gatekeeper).map_err(|e| e.to_string())?,
        request_sha256: [0; 32],
        decision: countersign_core::Decision::Allow,
        decided_at: 0,
        audit_seq: case.index.ok_or("no index")?,
        leaf_sha256: Some(hash(&case.leaf_hex, "leaf_hex")?),
    };
    let log_key = NoteVerifier::parse(case.verifier_keys.first().ok_or("no verifier key")?)
        .map_err(|e| e.to_string())?;
    let trust = LogTrust {
        log_key,
        witnesses: Vec::new(),
        quorum: 0,
    };
    let logged = match LogProofAnswer::parse(answer.as_bytes())
        .and_then(|a| verify_proof_answer(&receipt, &a, &trust))
    {
        Ok(logged) => logged,
        Err(e) => return Ok(Err(e)),
    };
    if Some(logged.checkpoint.size()) != case.size
        || Some(countersign_core::text::hex(logged.checkpoint.root())) != case.root_hex
    {
        return Err(format!("{}: the proof is to another tree", case.name));
    }
    Ok(Ok(()))
}

/// Replays every case of `tlog.json`; returns `(name, expected, got)` for each.
pub fn replay_tlog_file(json: &str) -> Result<Vec<(String, String, String)>, String> {
    let file: TlogVectorFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    file.cases
        .iter()
        .map(|c| Ok((c.name.clone(), c.expect.clone(), tlog_outcome(c)?)))
        .collect()
}
