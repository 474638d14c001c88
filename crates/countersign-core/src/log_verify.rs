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
use crate::text::preview;
use crate::tiles::{TILE_WIDTH, TileKind, TilePath, parse_bundle};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

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
    /// That checkpoint's root: the Merkle tree of the first `tree_size` entries.
    pub tree_root: Option<Hash>,
    /// Witnesses whose cosignatures on the tree checkpoint verified.
    pub cosigned_by: Vec<String>,
}

/// The one-pass verifier; see the module documentation.
#[derive(Debug)]
pub struct LogVerifier<'a> {
    gatekeeper: Cow<'a, Policy>,
    next_seq: u64,
    head: [u8; 32],
    tree: TreeBuilder,
    chain_checkpoints: u64,
    /// The tree checkpoint, until the tree reached its size.
    tree_checkpoint: Option<TreeCheckpoint>,
    /// The log's origin, once a tree checkpoint named it.
    origin: Option<String>,
    tree_size: Option<u64>,
    tree_root: Option<Hash>,
    cosigned_by: Vec<String>,
}

fn broken(message: String) -> Error {
    Error::new(ErrorCode::AuditChainBroken, message)
}

impl<'a> LogVerifier<'a> {
    /// A verifier of a log whose chain checkpoints `gatekeeper` must have signed.
    pub fn new(gatekeeper: &'a Policy) -> Self {
        Self::with(Cow::Borrowed(gatekeeper))
    }

    /// As [`Self::new`], holding the policy (for a verifier that outlives its caller's
    /// frame, such as the browser client's).
    pub fn owning(gatekeeper: Policy) -> LogVerifier<'static> {
        LogVerifier::with(Cow::Owned(gatekeeper))
    }

    fn with(gatekeeper: Cow<'a, Policy>) -> Self {
        Self {
            gatekeeper,
            next_seq: 0,
            head: GENESIS,
            tree: TreeBuilder::new(),
            chain_checkpoints: 0,
            tree_checkpoint: None,
            origin: None,
            tree_size: None,
            tree_root: None,
            cosigned_by: Vec::new(),
        }
    }

    /// Entries given so far.
    pub fn entries(&self) -> u64 {
        self.next_seq
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
        let c = ChainCheckpoint::verify(bytes, signatures, &self.gatekeeper)?;
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
        self.tree_root = Some(root);
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
            tree_root: self.tree_root,
            cosigned_by: self.cosigned_by,
        })
    }
}

/// Verifying a log from its tiles (`docs/PROTOCOL.md`, "Verifying the log from its
/// entry bundles"): the signed (optionally cosigned) checkpoint, then, bundle by bundle
/// in order, each entry bundle `tile/entries/<N>` with its level-0 hash tile
/// `tile/0/<N>`. Memory is one bundle, whatever the log's size.
///
/// Every entry is checked as by [`LogVerifier::entry`] (it parses, is numbered in
/// order, is the log's gatekeeper's, chains to the one before it); its RFC 6962 leaf
/// hash must be the tile's hash at its place; the tree of all the entries must have the
/// checkpoint's root. Earlier checkpoints given with [`TileLogVerifier::expect`] (one
/// saved by an earlier run, or published outside the gatekeeper's database) must be the
/// roots of the tree at their sizes: a rewritten, removed or inserted entry, a log cut
/// back (truncation, a restored backup) or a fork fails, naming which checkpoint.
#[derive(Debug)]
pub struct TileLogVerifier<'a> {
    log: LogVerifier<'a>,
    size: u64,
    origin: String,
    /// Earlier checkpoints not yet reached, by size, and what each is.
    expected: std::collections::VecDeque<(TreeCheckpoint, String)>,
    matched: u64,
}

/// What [`TileLogVerifier`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileLogReport {
    /// Entries checked: the checkpoint's size.
    pub entries: u64,
    /// The checkpoint's (and the entries') root.
    pub root: Hash,
    /// The hash of the last entry (the chain's head).
    pub head: [u8; 32],
    /// Earlier checkpoints that matched the tree at their sizes.
    pub earlier_checkpoints: u64,
    /// Witnesses whose cosignatures on the checkpoint verified.
    pub cosigned_by: Vec<String>,
}

impl<'a> TileLogVerifier<'a> {
    /// Opens the signed checkpoint `note` under `trust` (as [`open_checkpoint`]);
    /// `gatekeeper` as in [`LogVerifier::new`].
    pub fn new(gatekeeper: &'a Policy, note: &[u8], trust: &LogTrust) -> Result<Self> {
        let (checkpoint, _, _) = open_checkpoint(note, trust.log_key.name(), trust)?;
        let mut log = LogVerifier::new(gatekeeper);
        log.tree_checkpoint(note, trust)?;
        Ok(Self {
            log,
            size: checkpoint.size(),
            origin: checkpoint.origin().to_owned(),
            expected: Default::default(),
            matched: 0,
        })
    }

    /// The checkpoint's tree size: the entries to verify.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The entry bundle to give next (its level-0 tile has the same index and width),
    /// or `None` once every entry of the checkpoint was given.
    pub fn next_bundle(&self) -> Option<TilePath> {
        let done = self.log.next_seq;
        if done >= self.size {
            return None;
        }
        let index = done / TILE_WIDTH;
        let width = (self.size - index * TILE_WIDTH).min(TILE_WIDTH);
        // `width` is 1..=256, so the path is valid.
        TilePath::new(TileKind::Entries, index, width as u16).ok()
    }

    /// An earlier checkpoint of the same log (already opened under its key), `what`
    /// naming it in errors ("the saved checkpoint"): the tree must have its root at its
    /// size. Give it before the entries reach that size (checkpoints of sizes already
    /// passed are `malformed`); one larger than the checkpoint being verified fails at
    /// once (`audit_chain_broken`): the log was cut back.
    pub fn expect(&mut self, checkpoint: TreeCheckpoint, what: &str) -> Result<()> {
        if checkpoint.origin() != self.origin {
            return Err(Error::new(
                ErrorCode::WrongAudience,
                format!(
                    "{what} is of the log `{}`, not `{}`",
                    preview(checkpoint.origin()),
                    self.origin
                ),
            ));
        }
        let done = self.log.tree.size();
        if checkpoint.size() < done {
            return Err(Error::new(
                ErrorCode::Malformed,
                format!(
                    "{what} (of {} entries) was given after the verifier passed {done} entries",
                    checkpoint.size()
                ),
            ));
        }
        if checkpoint.size() > self.size {
            return Err(broken(format!(
                "rollback: {what} covers {} entries, but the log's signed checkpoint only {}: \
                 entries were removed from its end (truncation) or the log was restored from an older backup",
                checkpoint.size(),
                self.size
            )));
        }
        let at = self
            .expected
            .partition_point(|(c, _)| c.size() <= checkpoint.size());
        self.expected.insert(at, (checkpoint, what.to_owned()));
        self.check_expected()
    }

    /// Matches the earlier checkpoints the tree reached.
    fn check_expected(&mut self) -> Result<()> {
        let size = self.log.tree.size();
        while let Some((cp, what)) = self.expected.front() {
            if cp.size() != size {
                break;
            }
            if *cp.root() != self.log.tree.root() {
                return Err(broken(format!(
                    "{what} of {size} entries does not match the log: an entry up to {size} was \
                     rewritten, removed or inserted since it was signed (or the log forked)"
                )));
            }
            self.expected.pop_front();
            self.matched += 1;
        }
        Ok(())
    }

    /// The next entry bundle (`path` must be [`Self::next_bundle`]) and the level-0
    /// hash tile of the same path.
    pub fn bundle(&mut self, path: &TilePath, bundle: &[u8], tile: &[u8]) -> Result<()> {
        if Some(*path) != self.next_bundle() {
            return Err(Error::new(
                ErrorCode::Malformed,
                format!(
                    "entry bundle {path} given out of order (expected {})",
                    self.next_bundle()
                        .map_or_else(|| "none".to_owned(), |p| p.to_string())
                ),
            ));
        }
        let width = usize::from(path.width());
        let entries = parse_bundle(bundle)
            .map_err(|e| broken(format!("entry bundle {path}: {}", e.message())))?;
        if entries.len() != width {
            return Err(broken(format!(
                "entry bundle {path} holds {} entries, not {width}",
                entries.len()
            )));
        }
        if tile.len() != width * 32 {
            return Err(broken(format!(
                "hash tile {} holds {} bytes, not {}",
                tile_of(path),
                tile.len(),
                width * 32
            )));
        }
        for (bytes, leaf) in entries.iter().zip(tile.chunks_exact(32)) {
            let seq = self.log.next_seq;
            self.log.entry(bytes)?;
            if leaf_hash(bytes)[..] != *leaf {
                return Err(broken(format!(
                    "audit entry {seq} does not hash to its leaf in tile {}: the entry or the tile was altered",
                    tile_of(path)
                )));
            }
            self.check_expected()?;
        }
        Ok(())
    }

    /// Ends the verification: every bundle must have been given.
    pub fn finish(self) -> Result<TileLogReport> {
        if let Some(next) = self.next_bundle() {
            return Err(broken(format!(
                "the log ended before entry bundle {next}: the checkpoint covers {} entries",
                self.size
            )));
        }
        let matched = self.matched;
        let root = self.log.tree.root();
        let report = self.log.finish()?;
        Ok(TileLogReport {
            entries: report.entries,
            root,
            head: report.head,
            earlier_checkpoints: matched,
            cosigned_by: report.cosigned_by,
        })
    }
}

/// The level-0 hash tile holding the leaves of entry bundle `path`.
fn tile_of(path: &TilePath) -> String {
    TilePath::new(TileKind::Hashes { level: 0 }, path.index(), path.width())
        .map_or_else(|_| path.to_string(), |p| p.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
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
    pub(crate) fn log(n: u64) -> Vec<Vec<u8>> {
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

    pub(crate) struct Keys {
        pub(crate) chain: SigningKey,
        pub(crate) policy: Policy,
        pub(crate) note: NoteSigner,
        pub(crate) trust: LogTrust,
    }

    pub(crate) fn keys() -> Keys {
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

    pub(crate) fn tree_note(k: &Keys, entries: &[Vec<u8>], size: u64) -> Vec<u8> {
        let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
        let cp = TreeCheckpoint::new("gk.acme/audit", size, tree.root(size).unwrap(), Vec::new())
            .unwrap();
        SignedNote::sign(cp.body(), &[&k.note])
            .unwrap()
            .encode()
            .into_bytes()
    }

    pub(crate) fn chain_checkpoint(
        k: &Keys,
        entries: &[Vec<u8>],
        seq: u64,
    ) -> (Vec<u8>, SignatureEntry) {
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

    /// The bundles and level-0 tiles of the first `size` entries.
    fn tiles(entries: &[Vec<u8>], size: u64) -> Vec<(TilePath, Vec<u8>, Vec<u8>)> {
        entries[..size as usize]
            .chunks(TILE_WIDTH as usize)
            .enumerate()
            .map(|(i, chunk)| {
                let path = TilePath::new(TileKind::Entries, i as u64, chunk.len() as u16).unwrap();
                let bundle = crate::tiles::encode_bundle(chunk.iter().map(Vec::as_slice)).unwrap();
                let tile = chunk.iter().flat_map(|e| leaf_hash(e)).collect();
                (path, bundle, tile)
            })
            .collect()
    }

    /// Verifies the first `size` entries of `served` from tiles, against the earlier
    /// checkpoints `earlier` (sizes, notes signed over `signed`'s entries).
    fn run_tiles(
        k: &Keys,
        served: &[Vec<u8>],
        size: u64,
        earlier: &[(&[Vec<u8>], u64)],
    ) -> Result<TileLogReport> {
        let mut v = TileLogVerifier::new(&k.policy, &tree_note(k, served, size), &k.trust)?;
        for (signed, at) in earlier {
            let note = tree_note(k, signed, *at);
            let (cp, _) = TreeCheckpoint::open(&note, "gk.acme/audit", &k.trust.log_key)?;
            v.expect(cp, &format!("the checkpoint of {at}"))?;
        }
        for (path, bundle, tile) in tiles(served, size) {
            assert_eq!(v.next_bundle(), Some(path));
            v.bundle(&path, &bundle, &tile)?;
        }
        v.finish()
    }

    #[test]
    fn a_log_verifies_from_its_bundles_and_tiles_against_earlier_checkpoints() {
        let k = keys();
        let entries = log(600);
        let r = run_tiles(
            &k,
            &entries,
            600,
            &[(&entries, 0), (&entries, 256), (&entries, 301)],
        )
        .unwrap();
        assert_eq!((r.entries, r.earlier_checkpoints), (600, 3));
        assert_eq!(r.head, <[u8; 32]>::from(Sha256::digest(&entries[599])));
        let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
        assert_eq!(r.root, tree.root(600).unwrap());
        // The last bundle of a size that is not a multiple of 256 is partial.
        let v = TileLogVerifier::new(&k.policy, &tree_note(&k, &entries, 300), &k.trust).unwrap();
        assert_eq!(v.next_bundle().unwrap().to_string(), "tile/entries/000");
        assert_eq!(run_tiles(&k, &entries, 300, &[]).unwrap().entries, 300);
        // An empty log.
        assert_eq!(
            run_tiles(&k, &entries, 0, &[(&entries, 0)])
                .unwrap()
                .entries,
            0
        );
    }

    #[test]
    fn each_attack_on_a_tiled_log_is_detected_and_named() {
        let k = keys();
        let entries = log(300);
        let message = |r: Result<TileLogReport>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), ErrorCode::AuditChainBroken, "{e}");
            e.message().to_owned()
        };
        // A rewritten entry, chain recomputed and the log re-signed: the earlier
        // (published) checkpoint no longer matches.
        let mut forged = entries.clone();
        let mut prev = GENESIS;
        for (i, e) in forged.iter_mut().enumerate() {
            let mut parsed = AuditEntry::parse(e).unwrap();
            parsed.prev_sha256 = prev;
            if i == 3 {
                parsed.decision = Decision::Deny(ErrorCode::Expired);
            }
            *e = parsed.encode();
            prev = Sha256::digest(&*e).into();
        }
        let m = message(run_tiles(&k, &forged, 300, &[(&entries, 200)]));
        assert!(
            m.contains("the checkpoint of 200 of 200 entries does not match"),
            "{m}"
        );
        // A middle entry deleted and the rest renumbered and re-chained.
        let mut deleted: Vec<Vec<u8>> = entries.clone();
        deleted.remove(5);
        let mut prev = GENESIS;
        for (i, e) in deleted.iter_mut().enumerate() {
            let mut parsed = AuditEntry::parse(e).unwrap();
            parsed.seq = i as u64;
            parsed.prev_sha256 = prev;
            *e = parsed.encode();
            prev = Sha256::digest(&*e).into();
        }
        let m = message(run_tiles(&k, &deleted, 299, &[(&entries, 100)]));
        assert!(m.contains("of 100 entries does not match"), "{m}");
        // The tail truncated, or the log restored from an older state, and re-signed.
        let m = message(run_tiles(&k, &entries, 250, &[(&entries, 280)]));
        assert!(
            m.starts_with("rollback: the checkpoint of 280 covers 280 entries"),
            "{m}"
        );
        // A fork: another log of the same size.
        let m = message(run_tiles(&k, &forged, 300, &[(&entries, 300)]));
        assert!(m.contains("of 300 entries does not match"), "{m}");
        // A served entry that is not the one the tile (and root) commit to.
        let note = tree_note(&k, &entries, 300);
        let mut t = tiles(&entries, 300);
        let mut v = TileLogVerifier::new(&k.policy, &note, &k.trust).unwrap();
        let (path, _, tile) = &t[0];
        let swapped = tiles(&forged, 300).remove(0).1;
        let m = message(
            v.bundle(path, &swapped, tile)
                .map(|()| unreachable_tile_report()),
        );
        assert!(
            m.contains("audit entry 3 does not hash to its leaf in tile tile/0/000"),
            "{m}"
        );
        // A tile with a flipped hash, a short bundle, a bundle out of order, a log
        // that ends early.
        t[0].2[40] ^= 1;
        let mut v = TileLogVerifier::new(&k.policy, &note, &k.trust).unwrap();
        let m = message(
            v.bundle(&t[0].0, &t[0].1, &t[0].2)
                .map(|()| unreachable_tile_report()),
        );
        assert!(m.contains("audit entry 1 does not hash"), "{m}");
        let mut v = TileLogVerifier::new(&k.policy, &note, &k.trust).unwrap();
        let short = crate::tiles::encode_bundle(entries[..255].iter().map(Vec::as_slice)).unwrap();
        let m = message(
            v.bundle(&t[0].0, &short, &t[0].2)
                .map(|()| unreachable_tile_report()),
        );
        assert!(m.contains("holds 255 entries, not 256"), "{m}");
        let mut v = TileLogVerifier::new(&k.policy, &note, &k.trust).unwrap();
        let t = tiles(&entries, 300);
        assert_eq!(
            v.bundle(&t[1].0, &t[1].1, &t[1].2).unwrap_err().code(),
            ErrorCode::Malformed
        );
        v.bundle(&t[0].0, &t[0].1, &t[0].2).unwrap();
        let m = message(v.finish());
        assert!(
            m.contains("ended before entry bundle tile/entries/001.p/44"),
            "{m}"
        );
        // An earlier checkpoint of another log, or given too late.
        let mut v = TileLogVerifier::new(&k.policy, &note, &k.trust).unwrap();
        let other =
            NoteSigner::ed25519("gk.other/audit", SigningKey::from_bytes(&[3; 32])).unwrap();
        let cp = TreeCheckpoint::new("gk.other/audit", 1, leaf_hash(b"x"), Vec::new()).unwrap();
        let signed = SignedNote::sign(cp.body(), &[&other]).unwrap().encode();
        let ov = NoteVerifier::parse(&other.verifier_key()).unwrap();
        let (cp, _) = TreeCheckpoint::open(signed.as_bytes(), "gk.other/audit", &ov).unwrap();
        assert_eq!(
            v.expect(cp, "the saved checkpoint").unwrap_err().code(),
            ErrorCode::WrongAudience
        );
        v.bundle(&t[0].0, &t[0].1, &t[0].2).unwrap();
        let (cp, _) = TreeCheckpoint::open(
            &tree_note(&k, &entries, 10),
            "gk.acme/audit",
            &k.trust.log_key,
        )
        .unwrap();
        assert_eq!(
            v.expect(cp, "late").unwrap_err().code(),
            ErrorCode::Malformed
        );
    }

    fn unreachable_tile_report() -> TileLogReport {
        TileLogReport {
            entries: 0,
            root: [0; 32],
            head: GENESIS,
            earlier_checkpoints: 0,
            cosigned_by: Vec::new(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any log verifies against any earlier checkpoint of itself; changing any one
        /// entry (chain recomputed, log re-signed) fails against every earlier
        /// checkpoint past it, and a checkpoint past the end is a rollback.
        #[test]
        fn tiled_logs_verify_and_any_rewrite_fails(
            n in 1u64..600,
            earlier in 0u64..600,
            changed in 0u64..600,
        ) {
            let k = keys();
            let entries = log(n);
            let earlier = earlier % (n + 1);
            let r = run_tiles(&k, &entries, n, &[(&entries, earlier)]).unwrap();
            proptest::prop_assert_eq!((r.entries, r.earlier_checkpoints), (n, 1));
            let changed = changed % n;
            let mut forged = entries.clone();
            let mut prev = GENESIS;
            for (i, e) in forged.iter_mut().enumerate() {
                let mut parsed = AuditEntry::parse(e).unwrap();
                parsed.prev_sha256 = prev;
                if i as u64 == changed {
                    parsed.bytes += 1;
                }
                *e = parsed.encode();
                prev = Sha256::digest(&*e).into();
            }
            let result = run_tiles(&k, &forged, n, &[(&entries, earlier)]);
            if earlier > changed {
                proptest::prop_assert_eq!(result.unwrap_err().code(), ErrorCode::AuditChainBroken);
            } else {
                proptest::prop_assert!(result.is_ok());
            }
            if earlier < n {
                let cut = run_tiles(&k, &entries, earlier, &[(&entries, n)]);
                proptest::prop_assert_eq!(cut.unwrap_err().code(), ErrorCode::AuditChainBroken);
            }
        }
    }

    fn unreachable_report() -> LogReport {
        LogReport {
            entries: 0,
            chain_checkpoints: 0,
            head: GENESIS,
            tree_size: None,
            tree_root: None,
            cosigned_by: Vec::new(),
        }
    }
}
