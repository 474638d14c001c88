//! Verifying an audit log from its entries' exact bytes, in one pass and in constant
//! memory, by anyone holding the gatekeeper's public key — the vendor CLI, the
//! browser, an auditor's own program — never by trusting the server that sent it
//! (`docs/PROTOCOL.md`, "Verifying an export").
//!
//! Fed in log order, a [`LogVerifier`] checks:
//! - the hash chain: entries numbered from 0 without a gap, each naming the SHA-256
//!   of the entry before it (the first, [`GENESIS`]);
//! - every signed chain checkpoint, placed right after the entry it names: its
//!   gatekeeper signature, and that it names that entry's hash;
//! - the Merkle tree (RFC 6962 leaves of the exact entry bytes) against the signed,
//!   optionally witness-cosigned, tree checkpoint given first: the tree of the first
//!   `size` entries must have the checkpoint's root, and the log must not end before
//!   `size` entries.
//!
//! Entries after the tree checkpoint's size are checked by the chain (and any chain
//! checkpoint) only; the report says how many.
//!
//! ```
//! use countersign_core::log_verify::LogVerifier;
//! use countersign_core::signature::PublicKey;
//! use countersign_core::{AuthorizedKey, KeyId, Keyring, Policy, Role};
//! let key = countersign_core::ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let gatekeeper = Policy::new(
//!     Keyring::new([AuthorizedKey {
//!         key_id: KeyId::parse("gatekeeper-1")?,
//!         role: Role::gatekeeper(),
//!         public_key: PublicKey::from_bytes(&key.verifying_key().to_bytes())?,
//!         not_before: None,
//!         not_after: None,
//!     }])?,
//!     [(Role::gatekeeper(), 1)],
//! )?;
//! // An empty log without a tree checkpoint verifies, and says so.
//! let report = LogVerifier::new(&gatekeeper).finish()?;
//! assert_eq!((report.entries, report.tree_size), (0, None));
//! # Ok::<(), countersign_core::Error>(())
//! ```

use crate::audit::{AuditEntry, Checkpoint as ChainCheckpoint, GENESIS};
use crate::error::{Error, ErrorCode, Result};
use crate::logged::{LogTrust, log_origin, open_checkpoint};
use crate::merkle::{Hash, TreeBuilder, leaf_hash};
use crate::note::{Checkpoint as TreeCheckpoint, NoteVerifier, SignedNote};
use crate::policy::Policy;
use crate::signature::{PublicKey, SignatureEntry};
use sha2::{Digest, Sha256};

/// The trust in a log whose checkpoints `key` signs, the log named by the note
/// itself (its origin, `<gatekeeper id>/audit`): whoever holds only the gatekeeper's
/// public key verifies an export with it. `witnesses` and `quorum` as in [`LogTrust`].
pub fn trust_for_note(
    note: &[u8],
    key: PublicKey,
    witnesses: Vec<NoteVerifier>,
    quorum: usize,
) -> Result<LogTrust> {
    let parsed = SignedNote::parse(note)?;
    let body = TreeCheckpoint::parse_body(parsed.text())?;
    Ok(LogTrust {
        log_key: NoteVerifier::ed25519(body.origin(), key)?,
        witnesses,
        quorum,
    })
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReport {
    /// Entries checked (the chain).
    pub entries: u64,
    /// Chain checkpoints whose signature and head matched.
    pub chain_checkpoints: u64,
    /// The hash of the last entry (the chain's head).
    pub head: [u8; 32],
    /// The size of the tree checkpoint the entries matched, if one was given.
    pub tree_size: Option<u64>,
    /// Witnesses whose cosignatures on the tree checkpoint verified.
    pub cosigned_by: Vec<String>,
}

/// The one-pass verifier; see the module documentation.
#[derive(Debug)]
pub struct LogVerifier<'a> {
    gatekeeper: &'a Policy,
    next_seq: u64,
    head: [u8; 32],
    tree: TreeBuilder,
    chain_checkpoints: u64,
    /// The tree checkpoint, until the tree reached its size.
    tree_checkpoint: Option<TreeCheckpoint>,
    /// The log's origin, once a tree checkpoint named it.
    origin: Option<String>,
    tree_size: Option<u64>,
    cosigned_by: Vec<String>,
}

fn broken(message: String) -> Error {
    Error::new(ErrorCode::AuditChainBroken, message)
}

impl<'a> LogVerifier<'a> {
    /// A verifier of a log whose chain checkpoints `gatekeeper` must have signed.
    pub fn new(gatekeeper: &'a Policy) -> Self {
        Self {
            gatekeeper,
            next_seq: 0,
            head: GENESIS,
            tree: TreeBuilder::new(),
            chain_checkpoints: 0,
            tree_checkpoint: None,
            origin: None,
            tree_size: None,
            cosigned_by: Vec::new(),
        }
    }

    /// Opens the signed tree checkpoint under `trust` (see [`open_checkpoint`]); the
    /// log is the one `trust.log_key` names (`<gatekeeper id>/audit`), and every entry
    /// must then be that gatekeeper's. It must come before any entry.
    pub fn tree_checkpoint(&mut self, note: &[u8], trust: &LogTrust) -> Result<()> {
        if self.next_seq > 0 || self.origin.is_some() {
            return Err(Error::new(
                ErrorCode::Malformed,
                "the tree checkpoint must come first, and once",
            ));
        }
        let (checkpoint, _, cosigned_by) = open_checkpoint(note, trust.log_key.name(), trust)?;
        self.cosigned_by = cosigned_by;
        self.origin = Some(checkpoint.origin().to_owned());
        self.tree_checkpoint = Some(checkpoint);
        self.check_tree()
    }

    /// The next entry, as its exact bytes; returns it parsed.
    pub fn entry(&mut self, bytes: &[u8]) -> Result<AuditEntry> {
        let entry = AuditEntry::parse(bytes)?;
        if entry.seq != self.next_seq {
            return Err(broken(format!(
                "audit entry {} is missing or out of order (found {})",
                self.next_seq, entry.seq
            )));
        }
        if let Some(origin) = &self.origin
            && *origin != log_origin(&entry.gatekeeper)
        {
            return Err(broken(format!(
                "audit entry {} is gatekeeper `{}`'s, not of the log `{origin}`",
                entry.seq, entry.gatekeeper
            )));
        }
        if entry.prev_sha256 != self.head {
            return Err(broken(format!(
                "audit entry {} does not chain to the entry before it: an entry was altered, removed or reordered",
                entry.seq
            )));
        }
        self.head = Sha256::digest(bytes).into();
        self.next_seq += 1;
        self.tree.push(leaf_hash(bytes))?;
        self.check_tree()?;
        Ok(entry)
    }

    /// A signed chain checkpoint; it must name the entry just given.
    pub fn chain_checkpoint(&mut self, bytes: &[u8], signatures: &[SignatureEntry]) -> Result<()> {
        let c = ChainCheckpoint::verify(bytes, signatures, self.gatekeeper)?;
        if self.next_seq == 0 || c.seq != self.next_seq - 1 {
            return Err(broken(format!(
                "the checkpoint of entry {} is not placed right after that entry (after entry {} of {})",
                c.seq,
                self.next_seq.saturating_sub(1),
                self.next_seq
            )));
        }
        if c.head_sha256 != self.head {
            return Err(broken(format!(
                "the checkpoint at entry {} names another head hash: entries up to it were altered",
                c.seq
            )));
        }
        self.chain_checkpoints += 1;
        Ok(())
    }

    /// Compares the tree with the checkpoint once it reached the checkpoint's size.
    fn check_tree(&mut self) -> Result<()> {
        let Some(checkpoint) = &self.tree_checkpoint else {
            return Ok(());
        };
        if self.tree.size() < checkpoint.size() {
            return Ok(());
        }
        let root: Hash = self.tree.root();
        if &root != checkpoint.root() {
            return Err(broken(format!(
                "the first {} entries do not hash to the signed tree checkpoint's root: entries were altered, removed or inserted",
                checkpoint.size()
            )));
        }
        self.tree_size = Some(checkpoint.size());
        self.tree_checkpoint = None;
        Ok(())
    }

    /// Ends the log: fails if the tree checkpoint covers more entries than there were.
    pub fn finish(self) -> Result<LogReport> {
        if let Some(checkpoint) = &self.tree_checkpoint {
            return Err(broken(format!(
                "the signed tree checkpoint covers {} entries, the log ends after {}: entries were removed",
                checkpoint.size(),
                self.next_seq
            )));
        }
        Ok(LogReport {
            entries: self.next_seq,
            chain_checkpoints: self.chain_checkpoints,
            head: self.head,
            tree_size: self.tree_size,
            cosigned_by: self.cosigned_by,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::audit::CapturedHeader;
    use crate::ed25519_dalek::SigningKey;
    use crate::merkle::MemoryTree;
    use crate::names::KeyId;
    use crate::note::NoteSigner;
    use crate::policy::{AuthorizedKey, Keyring};
    use crate::receipt::Decision;
    use crate::{GatekeeperId, Role};

    /// A log of `n` entries as bytes, chained.
    fn log(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        (0..n)
            .map(|seq| {
                let entry = AuditEntry {
                    seq,
                    prev_sha256: prev,
                    time_ms: 1_800_000_000_000 + seq,
                    gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
                    request_id: Some(format!("r{seq}").into_bytes()),
                    client_ip: "127.0.0.2".parse().unwrap(),
                    operation: b"GET".to_vec(),
                    bucket: b"reports".to_vec(),
                    key: format!("org-1/{seq}").into_bytes(),
                    subject: b"user-1".to_vec(),
                    decision: Decision::Allow,
                    bytes: seq,
                    latency_us: 5,
                    request: CapturedHeader::whole(b"req"),
                    signatures: CapturedHeader::whole(b"sig"),
                };
                let bytes = entry.encode();
                prev = Sha256::digest(&bytes).into();
                bytes
            })
            .collect()
    }

    struct Keys {
        chain: SigningKey,
        policy: Policy,
        note: NoteSigner,
        trust: LogTrust,
    }

    fn keys() -> Keys {
        let chain = SigningKey::from_bytes(&[3; 32]);
        let keyring = Keyring::new([AuthorizedKey {
            key_id: KeyId::parse("gk-1").unwrap(),
            role: Role::gatekeeper(),
            public_key: PublicKey::from_bytes(&chain.verifying_key().to_bytes()).unwrap(),
            not_before: None,
            not_after: None,
        }])
        .unwrap();
        let policy = Policy::new(keyring, [(Role::gatekeeper(), 1)]).unwrap();
        let note = NoteSigner::ed25519("gk.acme/audit", chain.clone()).unwrap();
        let trust = LogTrust {
            log_key: NoteVerifier::parse(&note.verifier_key()).unwrap(),
            witnesses: Vec::new(),
            quorum: 0,
        };
        Keys {
            chain,
            policy,
            note,
            trust,
        }
    }

    fn tree_note(k: &Keys, entries: &[Vec<u8>], size: u64) -> Vec<u8> {
        let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
        let cp = TreeCheckpoint::new("gk.acme/audit", size, tree.root(size).unwrap(), Vec::new())
            .unwrap();
        SignedNote::sign(cp.body(), &[&k.note])
            .unwrap()
            .encode()
            .into_bytes()
    }

    fn chain_checkpoint(k: &Keys, entries: &[Vec<u8>], seq: u64) -> (Vec<u8>, SignatureEntry) {
        ChainCheckpoint {
            gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
            seq,
            head_sha256: Sha256::digest(&entries[seq as usize]).into(),
            created_at: 1_800_000_001,
        }
        .sign(&k.chain, KeyId::parse("gk-1").unwrap())
    }

    /// Feeds a tree checkpoint, the entries, and a chain checkpoint after `cp_at`.
    fn run(k: &Keys, note: &[u8], entries: &[Vec<u8>], cp_at: u64) -> Result<LogReport> {
        let (cp, sig) = chain_checkpoint(k, entries, cp_at.min(entries.len() as u64 - 1));
        let mut v = LogVerifier::new(&k.policy);
        v.tree_checkpoint(note, &k.trust)?;
        for e in entries {
            let parsed = v.entry(e)?;
            if parsed.seq == cp_at {
                v.chain_checkpoint(&cp, std::slice::from_ref(&sig))?;
            }
        }
        v.finish()
    }

    #[test]
    fn a_whole_log_verifies_and_entries_past_the_tree_are_counted() {
        let k = keys();
        let entries = log(10);
        let r = run(&k, &tree_note(&k, &entries, 7), &entries, 4).unwrap();
        assert_eq!(
            (r.entries, r.tree_size, r.chain_checkpoints),
            (10, Some(7), 1)
        );
        assert_eq!(r.head, <[u8; 32]>::from(Sha256::digest(&entries[9])));
    }

    #[test]
    fn every_rewrite_of_the_log_is_detected() {
        let k = keys();
        let entries = log(10);
        let note = tree_note(&k, &entries, 10);
        let code = |r: Result<LogReport>| r.unwrap_err().code();
        // A middle entry removed.
        let mut removed = entries.clone();
        removed.remove(5);
        assert_eq!(
            code(run(&k, &note, &removed, 2)),
            ErrorCode::AuditChainBroken
        );
        // The tail cut after the tree checkpoint's size was signed.
        assert_eq!(
            code(run(&k, &note, &entries[..8], 2)),
            ErrorCode::AuditChainBroken
        );
        // A rewritten log, chain rebuilt from the altered entry on: the tree's root
        // (signed before) and the chain checkpoint no longer match.
        let mut forged = log(10);
        let text = String::from_utf8(forged[3].clone()).unwrap();
        forged[3] = text
            .replace("decision:allow\nerror:\n", "decision:deny\nerror:expired\n")
            .into_bytes();
        assert_ne!(forged[3], entries[3], "the entry really changed");
        let mut prev: [u8; 32] = Sha256::digest(&forged[3]).into();
        for e in forged.iter_mut().skip(4) {
            let mut parsed = AuditEntry::parse(e).unwrap();
            parsed.prev_sha256 = prev;
            *e = parsed.encode();
            prev = Sha256::digest(&*e).into();
        }
        assert_eq!(
            code(run(&k, &note, &forged, 9)),
            ErrorCode::AuditChainBroken
        );
        // A chain checkpoint placed away from its entry, or signed by someone else.
        let (cp, sig) = chain_checkpoint(&k, &entries, 2);
        let mut v = LogVerifier::new(&k.policy);
        for e in &entries[..4] {
            v.entry(e).unwrap();
        }
        assert_eq!(
            code(
                v.chain_checkpoint(&cp, &[sig])
                    .map(|()| unreachable_report())
            ),
            ErrorCode::AuditChainBroken
        );
        // A tree checkpoint signed by another key, or given after entries.
        let mut other = keys();
        other.trust.log_key = NoteVerifier::parse(
            &NoteSigner::ed25519("gk.acme/audit", SigningKey::from_bytes(&[9; 32]))
                .unwrap()
                .verifier_key(),
        )
        .unwrap();
        assert_eq!(code(run(&other, &note, &entries, 2)), ErrorCode::UnknownKey);
        let mut late = LogVerifier::new(&k.policy);
        late.entry(&entries[0]).unwrap();
        assert_eq!(
            late.tree_checkpoint(&note, &k.trust).unwrap_err().code(),
            ErrorCode::Malformed
        );
    }

    fn unreachable_report() -> LogReport {
        LogReport {
            entries: 0,
            chain_checkpoints: 0,
            head: GENESIS,
            tree_size: None,
            cosigned_by: Vec::new(),
        }
    }
}
