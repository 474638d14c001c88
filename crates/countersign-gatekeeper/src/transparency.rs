//! The audit log as a transparency log, around the database: the integrator task
//! that extends the Merkle tree and signs checkpoints every `checkpoint_interval`,
//! publishing each signed checkpoint to an append-only file outside the database,
//! and the check that `audit verify` runs of the database's entries against those
//! published checkpoints.
//!
//! The published file is a sequence of signed notes (`docs/PROTOCOL.md`,
//! "Checkpoints"), each followed by one empty line. Someone who can rewrite the
//! database but not that file (or its copies: ship it to a WORM store or a SIEM) can
//! no longer rewrite, delete or truncate the log, drop checkpoints, or restore an
//! older backup, without `audit verify` failing.

use crate::http::AppState;
use crate::ledger::{Ledger, TreeCheckpoint, log_origin};
use countersign_core::audit::Checkpoint as LegacyCheckpoint;
use countersign_core::merkle::{Hash, TreeBuilder, leaf_hash};
use countersign_core::note::{Checkpoint, NoteLines, NoteVerifier};
use countersign_core::signature::parse_list;
use countersign_core::{GatekeeperId, Policy, PublicKey};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Entries integrated per database transaction.
pub const INTEGRATE_BATCH: u32 = 4096;

/// The verifier of a gatekeeper's checkpoints: its origin and Ed25519 key.
pub fn checkpoint_verifier(
    gatekeeper: &GatekeeperId,
    public_key: &[u8; 32],
) -> Result<NoteVerifier, String> {
    PublicKey::from_bytes(public_key)
        .and_then(|k| NoteVerifier::ed25519(&log_origin(gatekeeper), k))
        .map_err(|e| e.to_string())
}

/// Appends signed checkpoints to the published file, each once, in order of size.
pub struct Publisher {
    path: PathBuf,
    last: u64,
}

impl Publisher {
    /// Opens the file (it need not exist yet) and finds the last size published.
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut last = 0;
        for note in PublishedNotes::open(path)? {
            let note = note?;
            let cp = Checkpoint::parse_body(note_text(&note))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            last = last.max(cp.size());
        }
        Ok(Self {
            path: path.to_owned(),
            last,
        })
    }

    /// The largest tree size published so far.
    pub fn last_size(&self) -> u64 {
        self.last
    }

    /// Publishes every stored checkpoint larger than the last published one (whichever
    /// instance signed it). Returns how many it appended.
    pub async fn publish_new(&mut self, ledger: &Ledger) -> Result<usize, String> {
        let mut appended = 0;
        loop {
            let batch = ledger
                .tree_checkpoints(self.last, 1000)
                .await
                .map_err(|e| format!("cannot read checkpoints: {e}"))?;
            let Some(last) = batch.last().map(|c| c.size) else {
                return Ok(appended);
            };
            let path = self.path.clone();
            let text: String = batch.iter().map(|c| format!("{}\n", c.note)).collect();
            // One write and an fsync per batch, off the async threads.
            tokio::task::spawn_blocking(move || append_synced(&path, text.as_bytes()))
                .await
                .map_err(|e| format!("the publishing task failed: {e}"))?
                .map_err(|e| format!("cannot append to {}: {e}", self.path.display()))?;
            appended += batch.len();
            self.last = last;
        }
    }
}

fn append_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// The note text of a signed note (up to and including the empty line's LF).
fn note_text(note: &str) -> &str {
    note.rfind("\n\n")
        .and_then(|i| note.get(..=i))
        .unwrap_or(note)
}

/// Reads the published file one signed note at a time (constant memory).
pub struct PublishedNotes {
    lines: Option<std::io::Lines<std::io::BufReader<std::fs::File>>>,
    notes: NoteLines,
    path: PathBuf,
}

impl PublishedNotes {
    /// Opens the file; a missing file has no notes.
    pub fn open(path: &Path) -> Result<Self, String> {
        let lines = match std::fs::File::open(path) {
            Ok(f) => Some(std::io::BufReader::new(f).lines()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            lines,
            notes: NoteLines::default(),
            path: path.to_owned(),
        })
    }
}

impl Iterator for PublishedNotes {
    type Item = Result<String, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let lines = self.lines.as_mut()?;
        let path = self.path.display();
        for line in lines.by_ref() {
            let pushed = match line {
                Ok(l) => self.notes.push(&l).map_err(|e| format!("{path}: {e}")),
                Err(e) => Err(format!("cannot read {path}: {e}")),
            };
            match pushed {
                Ok(None) => {}
                Ok(Some(note)) => return Some(Ok(note)),
                Err(e) => return Some(Err(e)),
            }
        }
        self.lines = None;
        self.notes
            .finish()
            .err()
            .map(|e| Err(format!("{path}: {e}")))
    }
}

/// Extends the tree over every new entry and publishes the new checkpoints. Returns
/// the largest published size.
pub async fn integrate_and_publish(
    ledger: &Ledger,
    publisher: &mut Publisher,
) -> Result<u64, String> {
    integrate_all(ledger).await?;
    publisher.publish_new(ledger).await?;
    Ok(publisher.last_size())
}

/// Extends the tree over every new entry; returns the last checkpoint this instance
/// signed, if it signed one.
async fn integrate_all(ledger: &Ledger) -> Result<Option<TreeCheckpoint>, String> {
    let mut last = None;
    while let Some(cp) = ledger
        .integrate(INTEGRATE_BATCH)
        .await
        .map_err(|e| format!("cannot integrate the audit log: {e}"))?
    {
        // A full batch may have left more entries behind.
        let full = cp.size % u64::from(INTEGRATE_BATCH) == 0;
        last = Some(cp);
        if !full {
            break;
        }
    }
    Ok(last)
}

/// Runs [`integrate_and_publish`] every `checkpoint_interval`, for as long as the
/// process lives; failures are logged and retried at the next tick. Each checkpoint
/// this instance signs (and, after a start, the newest stored one) is handed to the
/// witness collector ([`crate::witnesses::spawn_collector`]), which never holds
/// integration up; neither does publishing to the checkpoint bucket
/// ([`crate::checkpoint_bucket::spawn_publisher`]).
pub fn spawn_integrator(state: AppState) {
    let witnesses = crate::witnesses::spawn_collector(
        state.ledger.clone(),
        &state.config.witnesses,
        state.config.checkpoint_interval,
    );
    crate::checkpoint_bucket::spawn_publisher(state.clone());
    tokio::spawn(async move {
        let mut publisher: Option<Publisher> = None;
        let mut tick = tokio::time::interval(state.config.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if publisher.is_none() {
                match Publisher::open(&state.config.published_checkpoints) {
                    Ok(p) => publisher = Some(p),
                    Err(e) => {
                        tracing::warn!("audit tree: cannot open the published checkpoints: {e}")
                    }
                }
            }
            let result = match integrate_all(&state.ledger).await {
                Ok(signed) => {
                    if let Some(tx) = &witnesses {
                        // After a start, the newest stored checkpoint until this
                        // instance signs one: an idle log's cosignatures stay fresh.
                        let cp = match signed {
                            None if tx.borrow().is_none() => {
                                state.ledger.latest_tree_checkpoint().await.ok().flatten()
                            }
                            signed => signed,
                        };
                        if let Some(cp) = cp {
                            tx.send_replace(Some(cp));
                        }
                    }
                    // Publishing catches up once the file opens.
                    match publisher.as_mut() {
                        Some(p) => p.publish_new(&state.ledger).await.map(|_| ()),
                        None => Ok(()),
                    }
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!("audit tree (retrying at the next tick): {e}");
            }
        }
    });
}

/// What [`verify_tree`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeReport {
    /// Entries read from the database.
    pub entries: u64,
    /// Published checkpoints checked.
    pub published: u64,
    /// Checkpoints stored in the database checked.
    pub stored: u64,
    /// The root of the database's tree.
    pub root: Hash,
    /// Signed `countersign/v1/checkpoint`s (of the hash chain) checked.
    pub chain_checkpoints: u64,
    /// The hash of the last entry (the head of the hash chain).
    pub head: Hash,
}

/// A checkpoint note, opened and checked against `verifier`.
fn open_checkpoint(
    note: &str,
    origin: &str,
    verifier: &NoteVerifier,
    what: &str,
) -> Result<Checkpoint, String> {
    Checkpoint::open(note.as_bytes(), origin, verifier)
        .map(|(cp, _)| cp)
        .map_err(|e| format!("{what} does not verify: {e}"))
}

/// Checks the database's audit log against the published checkpoints, reading the
/// entries, the stored checkpoints and the published file once each, in order, in
/// constant memory (but for the hash chain's own checkpoints, one per
/// `checkpoint_every` entries, verified with `gatekeeper` first). Fails on a
/// missing, rewritten or reordered entry, a broken hash chain or chain checkpoint, a
/// published or stored checkpoint whose root differs from the entries' (a rewrite or
/// a deletion), a published checkpoint past the end of the log (truncation, or a
/// rollback to an older backup), a published checkpoint missing from the database
/// (dropped checkpoints) or published sizes that go back.
pub async fn verify_tree(
    ledger: &Ledger,
    published: &Path,
    verifier: &NoteVerifier,
    origin: &str,
    gatekeeper: &Policy,
) -> Result<TreeReport, String> {
    let notes = PublishedNotes::open(published)?;
    verify_tree_against(ledger, notes, verifier, origin, gatekeeper).await
}

/// [`verify_tree`] against published checkpoint notes from any source (the file, or
/// the checkpoint bucket's objects, [`crate::checkpoint_bucket`]), in order of size.
pub async fn verify_tree_against(
    ledger: &Ledger,
    mut notes: impl Iterator<Item = Result<String, String>> + Send,
    verifier: &NoteVerifier,
    origin: &str,
    gatekeeper: &Policy,
) -> Result<TreeReport, String> {
    // The hash chain's own checkpoints (one per `checkpoint_every` entries).
    let mut chain_checkpoints = std::collections::VecDeque::new();
    for c in ledger
        .checkpoints()
        .await
        .map_err(|e| format!("cannot read checkpoints: {e}"))?
    {
        let sigs =
            parse_list(&c.signatures).map_err(|e| format!("a checkpoint's signatures: {e}"))?;
        let cp = LegacyCheckpoint::verify(&c.body, &sigs, gatekeeper)
            .map_err(|e| format!("a checkpoint does not verify: {e}"))?;
        chain_checkpoints.push_back((cp.seq, cp.head_sha256));
    }
    chain_checkpoints.make_contiguous().sort_unstable();
    let mut tree = TreeBuilder::new();
    let mut prev = countersign_core::audit::GENESIS;
    let mut next_published = read_published(&mut notes, origin, verifier, 0)?;
    let mut stored: std::collections::VecDeque<TreeCheckpoint> = Default::default();
    let mut last_stored = 0u64;
    let mut stored_exhausted = false;
    let mut report = TreeReport {
        entries: 0,
        published: 0,
        stored: 0,
        root: tree.root(),
        chain_checkpoints: 0,
        head: prev,
    };
    loop {
        let page = ledger
            .entries(tree.size(), 4096)
            .await
            .map_err(|e| format!("an entry cannot be read: {e}"))?;
        let done = page.len() < 4096;
        for entry in page {
            if entry.seq != tree.size() {
                return Err(format!(
                    "entry {} is missing (the next stored entry is {}): entries were deleted",
                    tree.size(),
                    entry.seq
                ));
            }
            if entry.prev_sha256 != prev {
                return Err(format!(
                    "entry {} does not link to the entry before it: an entry was rewritten",
                    entry.seq
                ));
            }
            let bytes = entry.encode();
            prev = Sha256::digest(&bytes).into();
            while let Some(&(seq, head)) = chain_checkpoints.front().filter(|c| c.0 == entry.seq) {
                if head != prev {
                    return Err(format!(
                        "checkpoint at entry {seq} names another head hash: entries up to it were altered"
                    ));
                }
                report.chain_checkpoints += 1;
                chain_checkpoints.pop_front();
            }
            tree.push(leaf_hash(&bytes)).map_err(|e| e.to_string())?;
            let size = tree.size();
            // Stored checkpoints of this size: each must be the gatekeeper's and match.
            if stored.is_empty() && !stored_exhausted {
                stored.extend(
                    ledger
                        .tree_checkpoints(last_stored, 1000)
                        .await
                        .map_err(|e| format!("cannot read checkpoints: {e}"))?,
                );
                // A short page was the last one (checkpoints signed while this runs
                // are left to the next run).
                stored_exhausted = stored.len() < 1000;
                if let Some(c) = stored.back() {
                    last_stored = c.size;
                }
            }
            let mut stored_at_size = false;
            while stored.front().is_some_and(|c| c.size == size) {
                if let Some(c) = stored.pop_front() {
                    let cp = open_checkpoint(
                        &c.note,
                        origin,
                        verifier,
                        &format!("the stored checkpoint of size {size}"),
                    )?;
                    if cp.size() != size || *cp.root() != tree.root() {
                        return Err(format!(
                            "the stored checkpoint of size {size} does not match the entries: an entry was rewritten or deleted"
                        ));
                    }
                    report.stored += 1;
                    stored_at_size = true;
                }
            }
            while let Some(cp) = next_published.as_ref().filter(|c| c.size() == size) {
                if *cp.root() != tree.root() {
                    return Err(format!(
                        "the published checkpoint of size {size} does not match the database's entries: \
                         an entry up to {size} was rewritten or deleted"
                    ));
                }
                if !stored_at_size {
                    return Err(format!(
                        "the published checkpoint of size {size} is missing from the database: checkpoints were dropped"
                    ));
                }
                report.published += 1;
                next_published = read_published(&mut notes, origin, verifier, size)?;
            }
        }
        if done {
            break;
        }
    }
    report.entries = tree.size();
    report.root = tree.root();
    report.head = prev;
    if let Some((seq, _)) = chain_checkpoints.front() {
        return Err(format!(
            "checkpoint at entry {seq} is beyond the last entry ({} entries): entries were removed",
            tree.size()
        ));
    }
    if let Some(last) = tree.size().checked_sub(1) {
        let recorded = ledger
            .recorded_entry_hash(last)
            .await
            .map_err(|e| format!("an entry cannot be read: {e}"))?;
        if recorded != Some(prev) {
            return Err(format!(
                "entry {last}: its recorded hash does not match its content: the entry was altered"
            ));
        }
    }
    if let Some(cp) = next_published {
        return Err(format!(
            "a checkpoint of size {} was published, but the database holds {} entries: entries were \
             deleted from its end (truncation) or the database was restored from an older backup (rollback)",
            cp.size(),
            tree.size()
        ));
    }
    if let Some(c) = stored.front() {
        return Err(format!(
            "the database stores a checkpoint of size {} but holds {} entries: entries were deleted",
            c.size,
            tree.size()
        ));
    }
    Ok(report)
}

fn read_published(
    notes: &mut impl Iterator<Item = Result<String, String>>,
    origin: &str,
    verifier: &NoteVerifier,
    after: u64,
) -> Result<Option<Checkpoint>, String> {
    match notes.next() {
        None => Ok(None),
        Some(note) => {
            let cp = open_checkpoint(&note?, origin, verifier, "a published checkpoint")?;
            if cp.size() < after {
                return Err(format!(
                    "the published checkpoints go back from size {after} to {}: the log was rolled back",
                    cp.size()
                ));
            }
            Ok(Some(cp))
        }
    }
}
