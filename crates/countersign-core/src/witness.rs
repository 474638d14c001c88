//! The witness side of the log (`docs/PROTOCOL.md`, "Witnesses"): the C2SP
//! `tlog-witness` `add-checkpoint` request, and the one decision every witness of
//! this project takes before it cosigns — whether a checkpoint extends the last one
//! it cosigned for that log. `countersign witness cosign` (which computes the proof
//! from the log's tiles) and `countersign witness serve` (which is sent the proof)
//! both call [`decide`].

use crate::error::{Error, ErrorCode, Result};
use crate::merkle::{Hash, verify_consistency};
use crate::note::{Checkpoint, MAX_NOTE_BYTES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The largest `add-checkpoint` body: the proof lines and a note.
pub const MAX_ADD_CHECKPOINT_BYTES: usize = MAX_NOTE_BYTES + 16 * 1024;

/// Most consistency proof lines in a request (the `tlog-witness` limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Content type of a witness's `409 Conflict` answer: its latest size, in decimal.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A `POST /add-checkpoint` request body (C2SP `tlog-witness`): the size of the
/// checkpoint the submitter believes the witness last cosigned, a consistency proof
/// from it to the new checkpoint, and the new checkpoint as a signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// `old`: the size the proof starts from.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: Vec<u8>,
}

fn malformed(what: impl Into<String>) -> Error {
    Error::new(ErrorCode::Malformed, what.into())
}

impl AddCheckpoint {
    /// The request body: `old N`, one standard-base64 hash per line, an empty line,
    /// the note.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(STANDARD.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }

    /// Parses a request body; anything else is `malformed` with what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self> {
        if body.len() > MAX_ADD_CHECKPOINT_BYTES {
            return Err(malformed(format!(
                "the request body is over {MAX_ADD_CHECKPOINT_BYTES} bytes"
            )));
        }
        let mut rest = body;
        let mut line = || -> Result<&[u8]> {
            let i = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| malformed("the request ends before the empty line"))?;
            let (l, r) = rest.split_at(i);
            rest = r.get(1..).unwrap_or_default();
            Ok(l)
        };
        let first =
            std::str::from_utf8(line()?).map_err(|_| malformed("the first line is not UTF-8"))?;
        let old = first
            .strip_prefix("old ")
            .ok_or_else(|| malformed("the first line must be `old <size>`"))?;
        let old = crate::text::parse_decimal(old, "old").map_err(|e| malformed(e.message()))?;
        let mut proof = Vec::new();
        loop {
            let l = line()?;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(malformed(format!(
                    "the consistency proof has more than {MAX_PROOF_LINES} hashes"
                )));
            }
            let h = STANDARD
                .decode(l)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    malformed("a consistency proof line is not a base64-encoded 32-byte hash")
                })?;
            proof.push(h);
        }
        Ok(Self {
            old,
            proof,
            note: rest.to_vec(),
        })
    }
}

/// Why a witness does not cosign a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `old` is not the size of the checkpoint the witness last cosigned, which it
    /// names (`409 Conflict`, body: that size); the submitter retries from it.
    Conflict(u64),
    /// `old` is larger than the checkpoint's size (`400`).
    OldTooLarge,
    /// The consistency proof does not prove that the checkpoint extends the one of
    /// size `old` (`422`).
    BadProof,
    /// A checkpoint of the size the witness cosigned but with another root, both
    /// signed by the log: the log showed two views (a fork). The witness halts for
    /// the log (`409 Conflict`, body: the size it cosigned).
    Fork,
}

impl Refusal {
    /// A sentence for the submitter or the operator.
    pub fn message(&self, size: u64) -> String {
        match self {
            Self::Conflict(latest) => format!(
                "the witness last cosigned a checkpoint of size {latest}: send a proof from that size"
            ),
            Self::OldTooLarge => format!("`old` is larger than the checkpoint's size {size}"),
            Self::BadProof => format!(
                "the consistency proof does not show that the checkpoint of size {size} extends the one the witness cosigned"
            ),
            Self::Fork => format!(
                "fork: two checkpoints of {size} entries with different roots, both signed by the log"
            ),
        }
    }
}

/// Decides whether a witness whose last cosigned checkpoint of this log is `last`
/// (`None`: it never cosigned one, size 0) cosigns `new`, sent with a consistency
/// `proof` from size `old`. `new` has been opened under the log's key already.
pub fn decide(
    last: Option<&Checkpoint>,
    old: u64,
    proof: &[Hash],
    new: &Checkpoint,
) -> std::result::Result<(), Refusal> {
    if old > new.size() {
        return Err(Refusal::OldTooLarge);
    }
    let latest = last.map_or(0, Checkpoint::size);
    if old != latest {
        return Err(Refusal::Conflict(latest));
    }
    let Some(last) = last else {
        // Size 0 is extended by every tree: the proof is empty.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::BadProof)
        };
    };
    if last.size() == new.size() {
        if last.root() != new.root() {
            return Err(Refusal::Fork);
        }
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::BadProof)
        };
    }
    verify_consistency(last.size(), new.size(), last.root(), new.root(), proof)
        .map_err(|_| Refusal::BadProof)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, leaf_hash};

    fn tree(n: u8, salt: u8) -> MemoryTree {
        MemoryTree::from_leaves((0..n).map(|i| leaf_hash(&[i, salt])).collect())
    }

    fn cp(t: &MemoryTree, size: u64) -> Checkpoint {
        Checkpoint::new("gk/audit", size, t.root(size).unwrap(), Vec::new()).unwrap()
    }

    #[test]
    fn request_round_trips_and_rejects_bad_bodies() {
        let t = tree(7, 0);
        let r = AddCheckpoint {
            old: 3,
            proof: t.consistency_proof(3, 7).unwrap(),
            note: b"gk/audit\n7\nAAAA\n\n\xe2\x80\x94 gk/audit x\n".to_vec(),
        };
        assert_eq!(AddCheckpoint::parse(&r.encode()).unwrap(), r);
        for bad in [
            &b"old 3\n"[..],
            b"new 3\n\nnote",
            b"old -1\n\nnote",
            b"old 03\n\nnote",
            b"old 3\nnot base64!\n\nnote",
            b"old 3\nAAAA\n\nnote",
        ] {
            assert_eq!(
                AddCheckpoint::parse(bad).unwrap_err().code(),
                ErrorCode::Malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn decisions() {
        let t = tree(9, 0);
        let (c4, c9) = (cp(&t, 4), cp(&t, 9));
        let proof = t.consistency_proof(4, 9).unwrap();
        assert_eq!(decide(None, 0, &[], &c4), Ok(()));
        assert_eq!(decide(None, 0, &proof, &c4), Err(Refusal::BadProof));
        assert_eq!(decide(None, 4, &proof, &c9), Err(Refusal::Conflict(0)));
        assert_eq!(decide(Some(&c4), 0, &[], &c9), Err(Refusal::Conflict(4)));
        assert_eq!(decide(Some(&c4), 4, &proof, &c9), Ok(()));
        assert_eq!(
            decide(Some(&c4), 4, &proof[1..], &c9),
            Err(Refusal::BadProof)
        );
        assert_eq!(decide(Some(&c9), 9, &[], &c4), Err(Refusal::OldTooLarge));
        assert_eq!(decide(Some(&c9), 9, &[], &c9), Ok(()));
        // Split view: another tree of the same size, signed by the same log.
        let other = cp(&tree(9, 1), 9);
        assert_eq!(decide(Some(&c9), 9, &[], &other), Err(Refusal::Fork));
        // A longer tree that does not extend the cosigned one.
        let fork = tree(12, 1);
        let p = fork.consistency_proof(9, 12).unwrap();
        assert_eq!(
            decide(Some(&c9), 9, &p, &cp(&fork, 12)),
            Err(Refusal::BadProof)
        );
    }
}
