//! Receipts prove logging (`docs/PROTOCOL.md`, "Proving a receipt was logged"): a
//! version-2 receipt names its audit entry's leaf index and RFC 6962 leaf hash, so
//! its holder checks, against a signed (and optionally witness-cosigned) checkpoint,
//! that the gatekeeper's public log holds that leaf — without seeing any entry.
//! Whoever may read the entry itself (a customer admin) also checks that it records
//! the receipt's request and decision ([`check_entry`]).
//!
//! The inclusion proof comes either from the gatekeeper's proof endpoint in one
//! round trip ([`LogProofAnswer`]: the served checkpoint and the audit path to its
//! size, checked by [`verify_proof_answer`]; the wasm client), or is computed by the
//! client from the log's public hash tiles ([`inclusion_from_tiles`]), one tile at a
//! time as the computation asks for it, so the same code serves blocking and
//! asynchronous fetchers (native SDK, CLI, the audit console).
//!
//! ```
//! use countersign_core::logged::{Step, inclusion_from_tiles};
//! // A tree of 3 leaves: the only tile is the partial level-0 tile of width 3.
//! let leaves: Vec<[u8; 32]> = (0..3u8).map(|i| countersign_core::merkle::leaf_hash(&[i])).collect();
//! let mut have = Vec::new();
//! let proof = loop {
//!     match inclusion_from_tiles(1, 3, &have).unwrap() {
//!         Step::Need(path) => have.push((path, leaves.concat())),
//!         Step::Proof(proof) => break proof,
//!     }
//! };
//! assert_eq!(proof.len(), 2);
//! ```

use crate::audit::AuditEntry;
use crate::error::{Error, ErrorCode, Result};
use crate::merkle::{
    Hash, HashSource, consistency_proof, inclusion_proof, leaf_hash, verify_inclusion,
};
use crate::note::{Checkpoint, NoteVerifier, SignedNote};
use crate::receipt::Receipt;
use crate::text::{Reader, Writer, b64, parse_b64, parse_decimal};
use crate::tiles::{TileHashes, TilePath};
use sha2::{Digest, Sha256};
use std::cell::Cell;

/// The log origin of a gatekeeper's audit log: `<gatekeeper id>/audit`.
pub fn log_origin(gatekeeper: &crate::GatekeeperId) -> String {
    format!("{gatekeeper}/audit")
}

/// What [`inclusion_from_tiles`] needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Fetch this hash tile (`GET /v1/log/<path>`) and call again with it added.
    Need(TilePath),
    /// The proof.
    Proof(Vec<Hash>),
}

/// Computes the inclusion proof of leaf `index` in the tree of `size` leaves from the
/// hash tiles fetched so far (`tiles`: path and body). Returns the next tile to
/// fetch, or the proof. Only tiles on the leaf's path and the tree's right edge are
/// needed: at most two per tile level (6 for a log of up to 16.7 million entries),
/// each asked for once. The tiles need not be trusted: the proof is
/// checked against a signed root. Errors: `invalid_field` for `index` ≥ `size`,
/// `malformed` for a tile of the wrong length.
pub fn inclusion_from_tiles(index: u64, size: u64, tiles: &[(TilePath, Vec<u8>)]) -> Result<Step> {
    from_tiles(size, tiles, |mut src| {
        inclusion_proof(&mut src, index, size)
    })
}

/// Computes the consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size` from the hash tiles fetched so far, like [`inclusion_from_tiles`] (the
/// gatekeeper sends it to its witnesses). `invalid_field` for `old_size` >
/// `new_size`.
pub fn consistency_from_tiles(
    old_size: u64,
    new_size: u64,
    tiles: &[(TilePath, Vec<u8>)],
) -> Result<Step> {
    from_tiles(new_size, tiles, |mut src| {
        consistency_proof(&mut src, old_size, new_size)
    })
}

fn from_tiles(
    size: u64,
    tiles: &[(TilePath, Vec<u8>)],
    proof: impl FnOnce(&mut dyn HashSource) -> Result<Vec<Hash>>,
) -> Result<Step> {
    let missing: Cell<Option<TilePath>> = Cell::new(None);
    let mut source = TileHashes::new(size, |path: &TilePath| {
        match tiles.iter().find(|(p, _)| p == path) {
            Some((_, body)) => Ok(body.clone()),
            None => {
                missing.set(Some(*path));
                Err(Error::new(
                    ErrorCode::NotFound,
                    format!("tile {path} not fetched yet"),
                ))
            }
        }
    });
    match proof(&mut source) {
        Ok(proof) => Ok(Step::Proof(proof)),
        Err(e) => match missing.take() {
            Some(path) => Ok(Step::Need(path)),
            None => Err(e),
        },
    }
}

/// Whom a client trusts to sign the log: the log key (the gatekeeper's, as a plain
/// Ed25519 note key named `<gatekeeper id>/audit`) and, optionally, witnesses of
/// which at least `quorum` must have cosigned the checkpoint.
#[derive(Clone, Debug)]
pub struct LogTrust {
    /// The log's note verifier key.
    pub log_key: NoteVerifier,
    /// Witness cosigner keys (`cosignature/v1`, type `0x04`).
    pub witnesses: Vec<NoteVerifier>,
    /// How many distinct witnesses must have cosigned; 0 accepts a checkpoint the log
    /// alone signed.
    pub quorum: usize,
}

/// A receipt whose entry is proven to be in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedReceipt {
    /// The entry's leaf index (the receipt's `audit-seq`).
    pub leaf_index: u64,
    /// The entry's leaf hash (the receipt's `leaf-sha256`).
    pub leaf_sha256: Hash,
    /// The checkpoint the inclusion was proven against.
    pub checkpoint: Checkpoint,
    /// The witnesses whose cosignatures verified, by name.
    pub cosigned_by: Vec<String>,
}

/// Opens `note` as a checkpoint of the log named `origin` under `trust` (origin
/// `wrong_audience`, log signature `bad_signature` / `unknown_key`, fewer than
/// `quorum` witness cosignatures `threshold_not_met`). Returns the checkpoint, the
/// note, and the witnesses whose cosignatures verified, by name.
pub fn open_checkpoint(
    note: &[u8],
    origin: &str,
    trust: &LogTrust,
) -> Result<(Checkpoint, SignedNote, Vec<String>)> {
    let (checkpoint, note) = Checkpoint::open(note, origin, &trust.log_key)?;
    let mut cosigned_by = Vec::new();
    if !trust.witnesses.is_empty() {
        let witnesses: Vec<&NoteVerifier> =
            trust.witnesses.iter().filter(|w| w.is_cosigner()).collect();
        match note.verify(&witnesses) {
            Ok(verified) => {
                for v in verified {
                    if !cosigned_by.contains(&v.name) {
                        cosigned_by.push(v.name);
                    }
                }
            }
            Err(e) if e.code() == ErrorCode::UnknownKey => {}
            Err(e) => return Err(e),
        }
    }
    if cosigned_by.len() < trust.quorum {
        return Err(Error::new(
            ErrorCode::ThresholdNotMet,
            format!(
                "the checkpoint of size {} is cosigned by {} of the {} witnesses required",
                checkpoint.size(),
                cosigned_by.len(),
                trust.quorum
            ),
        ));
    }
    Ok((checkpoint, note, cosigned_by))
}

/// [`open_checkpoint`] for the log of the receipt's gatekeeper, and checks that the
/// checkpoint covers the receipt's entry: a checkpoint not yet covering it is
/// `not_found` (the log integrates entries within its checkpoint interval: retry). A
/// version-1 receipt carries no leaf hash and cannot prove anything
/// (`unsupported_version`).
pub fn open_checkpoint_for(
    receipt: &Receipt,
    note: &[u8],
    trust: &LogTrust,
) -> Result<(Checkpoint, SignedNote, Vec<String>)> {
    leaf_of(receipt)?;
    let (checkpoint, note, cosigned_by) =
        open_checkpoint(note, &log_origin(&receipt.gatekeeper), trust)?;
    if checkpoint.size() <= receipt.audit_seq {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!(
                "the newest checkpoint covers {} entries, not yet entry {}; retry after the log's checkpoint interval",
                checkpoint.size(),
                receipt.audit_seq
            ),
        ));
    }
    Ok((checkpoint, note, cosigned_by))
}

/// Checks that the receipt's leaf is leaf `audit-seq` of the tree that `checkpoint`
/// signs, with `proof` (from [`inclusion_from_tiles`]); `audit_chain_broken` if not.
pub fn verify_logged(
    receipt: &Receipt,
    checkpoint: Checkpoint,
    cosigned_by: Vec<String>,
    proof: &[Hash],
) -> Result<LoggedReceipt> {
    let leaf = leaf_of(receipt)?;
    verify_inclusion(
        receipt.audit_seq,
        checkpoint.size(),
        &leaf,
        proof,
        checkpoint.root(),
    )?;
    Ok(LoggedReceipt {
        leaf_index: receipt.audit_seq,
        leaf_sha256: leaf,
        checkpoint,
        cosigned_by,
    })
}

/// The most hashes an answer's audit path holds: the depth of a tree of 2^64 leaves.
pub const MAX_PROOF_HASHES: usize = 64;
/// The most bytes of the `countersign/v1/log-proof` document that opens an answer.
pub const MAX_PROOF_DOCUMENT_BYTES: usize = 3072;
/// The most bytes of a `GET /v1/log/proof/<index>` answer: the document and a signed
/// note of at most [`crate::note::MAX_NOTE_BYTES`].
pub const MAX_PROOF_ANSWER_BYTES: usize = MAX_PROOF_DOCUMENT_BYTES + crate::note::MAX_NOTE_BYTES;

/// The answer of `GET /v1/log/proof/<index>` (`docs/PROTOCOL.md`, "The proof
/// endpoint"): the audit path of leaf `index` in the tree of `size` leaves, and the
/// signed checkpoint of that tree as the log serves it. Nothing in it is trusted
/// before [`verify_proof_answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogProofAnswer {
    /// The leaf index the path is for.
    pub index: u64,
    /// The tree size the path is for: the checkpoint's.
    pub size: u64,
    /// The RFC 6962 audit path `PATH(index, D[size])`, deepest hash first.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub note: Vec<u8>,
}

impl LogProofAnswer {
    /// The answer's bytes: the `countersign/v1/log-proof` document, then the note.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new("log-proof");
        w.field("index", &self.index.to_string())
            .field("size", &self.size.to_string())
            .field("path", &b64(&self.path.concat()));
        let mut out = w.finish();
        out.extend_from_slice(&self.note);
        out
    }

    /// Parses an answer strictly: `too_large` above [`MAX_PROOF_ANSWER_BYTES`] (or a
    /// document above [`MAX_PROOF_DOCUMENT_BYTES`]), `non_canonical` /
    /// `unsupported_version` for a document not in its one form, `invalid_field` for
    /// an index not below the size or a path that is not whole hashes (at most
    /// [`MAX_PROOF_HASHES`]), `malformed` for a missing note. The note itself is read
    /// when the checkpoint is opened.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_PROOF_ANSWER_BYTES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!(
                    "a log proof answer may be at most {MAX_PROOF_ANSWER_BYTES} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        // The document is the header and three fields: it ends at the fourth LF.
        let end = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(3)
            .map_or(bytes.len(), |(i, _)| i + 1);
        let (document, note) = bytes.split_at(end);
        let mut r = Reader::new(document, "log-proof", MAX_PROOF_DOCUMENT_BYTES)?;
        let index = parse_decimal(r.field("index")?, "index")?;
        let size = parse_decimal(r.field("size")?, "size")?;
        let path = parse_b64(r.field("path")?, "the path")?;
        r.end()?;
        if index >= size {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("a proof of leaf {index} in a tree of {size} leaves"),
            ));
        }
        if path.len() % 32 != 0 || path.len() > MAX_PROOF_HASHES * 32 {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!(
                    "the path is {} bytes, not at most {MAX_PROOF_HASHES} hashes of 32 bytes",
                    path.len()
                ),
            ));
        }
        if note.is_empty() {
            return Err(Error::new(
                ErrorCode::Malformed,
                "the log proof answer ends before its checkpoint",
            ));
        }
        Ok(Self {
            index,
            size,
            path: path
                .chunks_exact(32)
                .filter_map(|h| h.try_into().ok())
                .collect(),
            note: note.to_vec(),
        })
    }
}

/// Verifies a proof endpoint's answer for `receipt` under `trust`: the answer is
/// for the receipt's leaf index (else `invalid_field`); its checkpoint opens under
/// `trust` and covers the entry ([`open_checkpoint_for`]); the answer's size is the
/// checkpoint's (else `invalid_field`: a path to another tree); and the path leads
/// from the receipt's leaf to the checkpoint's root ([`verify_logged`]:
/// `audit_chain_broken`).
pub fn verify_proof_answer(
    receipt: &Receipt,
    answer: &LogProofAnswer,
    trust: &LogTrust,
) -> Result<LoggedReceipt> {
    if answer.index != receipt.audit_seq {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!(
                "the log answered a proof of entry {}, not of entry {}",
                answer.index, receipt.audit_seq
            ),
        ));
    }
    let (checkpoint, _, cosigned_by) = open_checkpoint_for(receipt, &answer.note, trust)?;
    if answer.size != checkpoint.size() {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!(
                "the proof is for a tree of {} entries, its checkpoint signs {}",
                answer.size,
                checkpoint.size()
            ),
        ));
    }
    verify_logged(receipt, checkpoint, cosigned_by, &answer.path)
}

fn leaf_of(receipt: &Receipt) -> Result<Hash> {
    receipt.leaf_sha256.ok_or_else(|| {
        Error::new(
            ErrorCode::UnsupportedVersion,
            "a version-1 receipt carries no leaf hash, so it cannot prove that its request was logged",
        )
    })
}

/// For whoever may read the entry (entry bundles and audit search need a
/// customer-admin signature): checks that `entry` — the exact bytes of the logged
/// entry — is the receipt's leaf and records the receipt's decision on `request`
/// (the canonical request bytes the client sent, base64url-encoded as its
/// `Countersign-Request` header). Every difference is `receipt_mismatch`.
pub fn check_entry(receipt: &Receipt, entry: &[u8], request: &[u8]) -> Result<AuditEntry> {
    let mismatch = |what: &str| {
        Error::new(
            ErrorCode::ReceiptMismatch,
            format!("the logged entry {what}"),
        )
    };
    if Some(leaf_hash(entry)) != receipt.leaf_sha256 {
        return Err(mismatch("is not the leaf the receipt names"));
    }
    let parsed = AuditEntry::parse(entry)?;
    if parsed.seq != receipt.audit_seq {
        return Err(mismatch("has another sequence number than the receipt"));
    }
    if parsed.gatekeeper != receipt.gatekeeper {
        return Err(mismatch("is of another gatekeeper"));
    }
    if parsed.decision != receipt.decision {
        return Err(mismatch(&format!(
            "records `{}`, the receipt `{}`",
            parsed.decision, receipt.decision
        )));
    }
    let request_digest: Hash = Sha256::digest(request).into();
    let header_digest: Hash = Sha256::digest(b64(request).as_bytes()).into();
    if request_digest != receipt.request_sha256 || *parsed.request.sha256() != header_digest {
        return Err(mismatch("records another request"));
    }
    Ok(parsed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::GatekeeperId;
    use crate::audit::{CapturedHeader, GENESIS};
    use crate::merkle::MemoryTree;
    use crate::note::{NoteSigner, SignedNote};
    use crate::receipt::Decision;
    use crate::tiles::{TILE_WIDTH, tiles_of_tree};
    use ed25519_dalek::SigningKey;

    fn entry(seq: u64, decision: Decision, request: &[u8]) -> AuditEntry {
        AuditEntry {
            seq,
            prev_sha256: GENESIS,
            time_ms: 1_800_000_000_000,
            gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
            request_id: Some(b"r1".to_vec()),
            client_ip: "127.0.0.1".parse().unwrap(),
            operation: b"GET".to_vec(),
            bucket: b"b".to_vec(),
            key: b"k".to_vec(),
            subject: b"u".to_vec(),
            decision,
            bytes: 0,
            latency_us: 1,
            request: CapturedHeader::whole(b64(request).as_bytes()),
            signatures: CapturedHeader::whole(b""),
        }
    }

    fn receipt_for(e: &AuditEntry, request: &[u8]) -> Receipt {
        Receipt {
            gatekeeper: e.gatekeeper.clone(),
            request_sha256: Sha256::digest(request).into(),
            decision: e.decision,
            decided_at: 1_800_000_000,
            audit_seq: e.seq,
            leaf_sha256: Some(e.leaf_hash()),
        }
    }

    /// The tiles of a tree of `leaves`, as a server would serve them at `size`.
    fn tiles(tree: &MemoryTree, size: u64) -> Vec<(TilePath, Vec<u8>)> {
        use crate::merkle::HashSource as _;
        let mut src = tree;
        tiles_of_tree(size)
            .map(|p| {
                let crate::tiles::TileKind::Hashes { level } = p.kind() else {
                    panic!()
                };
                let level = u32::from(level) * 8;
                let body = (0..u64::from(p.width()))
                    .flat_map(|j| src.node(level, p.index() * TILE_WIDTH + j).unwrap())
                    .collect();
                (p, body)
            })
            .collect()
    }

    #[test]
    fn proofs_from_tiles_match_the_tree_and_ask_few_tiles() {
        for size in [1u64, 2, 255, 256, 257, 1000, 65_536 + 300] {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let tree = MemoryTree::from_leaves(leaves.clone());
            let served = tiles(&tree, size);
            for index in [0, size / 2, size - 1] {
                let mut have = Vec::new();
                let proof = loop {
                    match inclusion_from_tiles(index, size, &have).unwrap() {
                        Step::Need(p) => {
                            assert!(!have.iter().any(|(h, _)| *h == p), "asked twice for {p}");
                            let body = served.iter().find(|(s, _)| *s == p).unwrap().1.clone();
                            have.push((p, body));
                        }
                        Step::Proof(proof) => break proof,
                    }
                };
                assert!(have.len() <= 6, "{size} {index}: {}", have.len());
                assert_eq!(proof, tree.inclusion_proof(index, size).unwrap());
                verify_inclusion(
                    index,
                    size,
                    &leaves[index as usize],
                    &proof,
                    &tree.root(size).unwrap(),
                )
                .unwrap();
            }
        }
        assert_eq!(
            inclusion_from_tiles(5, 5, &[]).unwrap_err().code(),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn consistency_proofs_from_tiles_match_the_tree() {
        for size in [1u64, 2, 255, 256, 257, 1000, 65_536 + 300] {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let tree = MemoryTree::from_leaves(leaves);
            let served = tiles(&tree, size);
            for old in [0, 1, size / 3, size - 1, size] {
                let mut have = Vec::new();
                let proof = loop {
                    match consistency_from_tiles(old, size, &have).unwrap() {
                        Step::Need(p) => {
                            assert!(!have.iter().any(|(h, _)| *h == p), "asked twice for {p}");
                            let body = served.iter().find(|(s, _)| *s == p).unwrap().1.clone();
                            have.push((p, body));
                        }
                        Step::Proof(proof) => break proof,
                    }
                };
                assert_eq!(proof, tree.consistency_proof(old, size).unwrap());
                crate::merkle::verify_consistency(
                    old,
                    size,
                    &tree.root(old).unwrap(),
                    &tree.root(size).unwrap(),
                    &proof,
                )
                .unwrap();
            }
        }
        assert_eq!(
            consistency_from_tiles(6, 5, &[]).unwrap_err().code(),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn a_receipt_proves_its_entry_was_logged_and_nothing_else() {
        let request = b"countersign/v1/request\n...".to_vec();
        let entries: Vec<AuditEntry> = (0..5)
            .map(|i| {
                entry(
                    i,
                    if i == 3 {
                        Decision::Deny(ErrorCode::Expired)
                    } else {
                        Decision::Allow
                    },
                    &request,
                )
            })
            .collect();
        let leaves: Vec<Hash> = entries.iter().map(AuditEntry::leaf_hash).collect();
        let tree = MemoryTree::from_leaves(leaves);
        let key = SigningKey::from_bytes(&[5; 32]);
        let signer = NoteSigner::ed25519("gk.acme/audit", key).unwrap();
        let w1 = NoteSigner::cosigner("w1", SigningKey::from_bytes(&[6; 32])).unwrap();
        let w2 = NoteSigner::cosigner("w2", SigningKey::from_bytes(&[7; 32])).unwrap();
        let cp = Checkpoint::new("gk.acme/audit", 5, tree.root(5).unwrap(), Vec::new()).unwrap();
        let mut note = SignedNote::sign(cp.body(), &[&signer]).unwrap();
        note.add_signature(w1.cosign(note.text(), 1_800_000_100).unwrap())
            .unwrap();
        let note = note.encode();
        let trust = |quorum| LogTrust {
            log_key: NoteVerifier::parse(&signer.verifier_key()).unwrap(),
            witnesses: vec![
                NoteVerifier::parse(&w1.verifier_key()).unwrap(),
                NoteVerifier::parse(&w2.verifier_key()).unwrap(),
            ],
            quorum,
        };
        let receipt = receipt_for(&entries[3], &request);
        let (opened, _, cosigners) =
            open_checkpoint_for(&receipt, note.as_bytes(), &trust(1)).unwrap();
        assert_eq!(cosigners, vec!["w1".to_owned()]);
        let proof = tree.inclusion_proof(3, 5).unwrap();
        let logged = verify_logged(&receipt, opened.clone(), cosigners, &proof).unwrap();
        assert_eq!((logged.leaf_index, logged.checkpoint.size()), (3, 5));
        assert_eq!(
            check_entry(&receipt, &entries[3].encode(), &request).unwrap(),
            entries[3]
        );

        // Two witnesses required, one signed.
        assert_eq!(
            open_checkpoint_for(&receipt, note.as_bytes(), &trust(2))
                .unwrap_err()
                .code(),
            ErrorCode::ThresholdNotMet
        );
        // Another log's key, and a checkpoint that does not reach the entry yet.
        let other = NoteSigner::ed25519("gk.acme/audit", SigningKey::from_bytes(&[8; 32])).unwrap();
        let mut t = trust(0);
        t.log_key = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert_eq!(
            open_checkpoint_for(&receipt, note.as_bytes(), &t)
                .unwrap_err()
                .code(),
            ErrorCode::UnknownKey
        );
        let small = Checkpoint::new("gk.acme/audit", 3, tree.root(3).unwrap(), Vec::new()).unwrap();
        let small = SignedNote::sign(small.body(), &[&signer]).unwrap().encode();
        assert_eq!(
            open_checkpoint_for(&receipt, small.as_bytes(), &trust(0))
                .unwrap_err()
                .code(),
            ErrorCode::NotFound
        );
        // A receipt whose leaf hash is not the logged one (the log holds another
        // entry at that index), a wrong index, a version-1 receipt.
        let mut forged = receipt.clone();
        forged.leaf_sha256 = Some(entries[2].leaf_hash());
        assert_eq!(
            verify_logged(&forged, opened.clone(), Vec::new(), &proof)
                .unwrap_err()
                .code(),
            ErrorCode::AuditChainBroken
        );
        let mut moved = receipt.clone();
        moved.audit_seq = 2;
        assert_eq!(
            verify_logged(&moved, opened.clone(), Vec::new(), &proof)
                .unwrap_err()
                .code(),
            ErrorCode::AuditChainBroken
        );
        let mut v1 = receipt.clone();
        v1.leaf_sha256 = None;
        assert_eq!(
            verify_logged(&v1, opened, Vec::new(), &proof)
                .unwrap_err()
                .code(),
            ErrorCode::UnsupportedVersion
        );
        // The entry check: another entry, another decision, another request.
        let code = |r: &Receipt, e: &AuditEntry, req: &[u8]| {
            check_entry(r, &e.encode(), req).unwrap_err().code()
        };
        assert_eq!(
            code(&receipt, &entries[2], &request),
            ErrorCode::ReceiptMismatch
        );
        let mut allow = receipt.clone();
        allow.decision = Decision::Allow;
        assert_eq!(
            code(&allow, &entries[3], &request),
            ErrorCode::ReceiptMismatch
        );
        assert_eq!(
            code(&receipt, &entries[3], b"another request"),
            ErrorCode::ReceiptMismatch
        );
    }

    #[test]
    fn a_proof_answer_proves_in_one_piece_and_every_lie_is_refused() {
        let request = b"countersign/v1/request\n...".to_vec();
        let entries: Vec<AuditEntry> = (0..5)
            .map(|i| entry(i, Decision::Allow, &request))
            .collect();
        let tree = MemoryTree::from_leaves(entries.iter().map(AuditEntry::leaf_hash).collect());
        let signer =
            NoteSigner::ed25519("gk.acme/audit", SigningKey::from_bytes(&[5; 32])).unwrap();
        let sign = |size: u64, by: &NoteSigner| {
            let cp = Checkpoint::new("gk.acme/audit", size, tree.root(size).unwrap(), Vec::new())
                .unwrap();
            SignedNote::sign(cp.body(), &[by])
                .unwrap()
                .encode()
                .into_bytes()
        };
        let trust = LogTrust {
            log_key: NoteVerifier::parse(&signer.verifier_key()).unwrap(),
            witnesses: Vec::new(),
            quorum: 0,
        };
        let receipt = receipt_for(&entries[3], &request);
        let answer = LogProofAnswer {
            index: 3,
            size: 5,
            path: tree.inclusion_proof(3, 5).unwrap(),
            note: sign(5, &signer),
        };
        let bytes = answer.encode();
        assert!(bytes.starts_with(b"countersign/v1/log-proof\nindex:3\nsize:5\npath:"));
        assert_eq!(LogProofAnswer::parse(&bytes).unwrap(), answer);
        let logged = verify_proof_answer(&receipt, &answer, &trust).unwrap();
        assert_eq!((logged.leaf_index, logged.checkpoint.size()), (3, 5));

        let refused =
            |a: &LogProofAnswer| verify_proof_answer(&receipt, a, &trust).unwrap_err().code();
        // A proof of another entry, a path to another size than the checkpoint's, a
        // path for another tree under a size that matches, a truncated or a longer path.
        let mut other = answer.clone();
        other.index = 2;
        other.path = tree.inclusion_proof(2, 5).unwrap();
        assert_eq!(refused(&other), ErrorCode::InvalidField);
        let mut resized = answer.clone();
        resized.size = 4;
        resized.path = tree.inclusion_proof(3, 4).unwrap();
        assert_eq!(refused(&resized), ErrorCode::InvalidField);
        let mut stale = answer.clone();
        stale.path = tree.inclusion_proof(3, 4).unwrap();
        assert_eq!(refused(&stale), ErrorCode::AuditChainBroken);
        let mut short = answer.clone();
        short.path.pop();
        assert_eq!(refused(&short), ErrorCode::AuditChainBroken);
        let mut long = answer.clone();
        long.path.push([0; 32]);
        assert_eq!(refused(&long), ErrorCode::AuditChainBroken);
        let mut wrong = answer.clone();
        wrong.path[0][0] ^= 1;
        assert_eq!(refused(&wrong), ErrorCode::AuditChainBroken);
        // A checkpoint signed by another key, one that does not cover the entry yet,
        // one with no signature at all.
        let other_key =
            NoteSigner::ed25519("gk.acme/audit", SigningKey::from_bytes(&[8; 32])).unwrap();
        let mut forged = answer.clone();
        forged.note = sign(5, &other_key);
        assert_eq!(refused(&forged), ErrorCode::UnknownKey);
        let mut early = LogProofAnswer {
            index: 3,
            size: 3,
            path: Vec::new(),
            note: sign(3, &signer),
        };
        assert_eq!(
            LogProofAnswer::parse(&early.encode()).unwrap_err().code(),
            ErrorCode::InvalidField
        );
        early.size = 4;
        assert_eq!(refused(&early), ErrorCode::NotFound);
        let mut unsigned = answer.clone();
        unsigned.note = tree_body(&tree, 5).into_bytes();
        assert_eq!(refused(&unsigned), ErrorCode::Malformed);

        // The bytes: each way of not being the one form.
        let parse = |b: &[u8]| LogProofAnswer::parse(b).unwrap_err().code();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let doc_end = text.match_indices('\n').nth(3).unwrap().0 + 1;
        assert_eq!(parse(&bytes[..doc_end]), ErrorCode::Malformed);
        assert_eq!(parse(&bytes[..doc_end - 1]), ErrorCode::NonCanonical);
        assert_eq!(parse(&bytes[..20]), ErrorCode::NonCanonical);
        assert_eq!(parse(b""), ErrorCode::NonCanonical);
        assert_eq!(
            parse(text.replacen("/v1/", "/v2/", 1).as_bytes()),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            parse(text.replacen("index:3", "index:03", 1).as_bytes()),
            ErrorCode::NonCanonical
        );
        assert_eq!(
            parse(text.replacen("size:5\n", "", 1).as_bytes()),
            ErrorCode::NonCanonical
        );
        let odd = format!(
            "countersign/v1/log-proof\nindex:3\nsize:5\npath:{}\n",
            b64(&[1; 33])
        );
        assert_eq!(parse(format!("{odd}x").as_bytes()), ErrorCode::InvalidField);
        let deep = format!(
            "countersign/v1/log-proof\nindex:3\nsize:5\npath:{}\n",
            b64(&[1; 65 * 32])
        );
        assert_eq!(
            parse(format!("{deep}x").as_bytes()),
            ErrorCode::InvalidField
        );
        let mut huge = bytes.clone();
        huge.resize(MAX_PROOF_ANSWER_BYTES + 1, b'a');
        assert_eq!(parse(&huge), ErrorCode::TooLarge);
    }

    fn tree_body(tree: &MemoryTree, size: u64) -> String {
        Checkpoint::new("gk.acme/audit", size, tree.root(size).unwrap(), Vec::new())
            .unwrap()
            .body()
    }
}
