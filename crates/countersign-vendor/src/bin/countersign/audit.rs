//! `countersign audit prove RECEIPT-FILE`: proves that the request of a receipt saved
//! by `put`/`get --receipt` was logged — its leaf is in the tree the gatekeeper's
//! signed (and, with `--witness`/`--quorum`, witness-cosigned) checkpoint commits to —
//! from the log's public checkpoint and hash tiles. With `--entry`, a customer admin
//! who holds the entry's bytes also checks that it records the receipt's decision.
//!
//! `countersign audit verify EXPORT`: verifies an audit export (the JSONL of the
//! gatekeeper's `audit export`) without the gatekeeper or its database, reading it
//! once in constant memory: the hash chain and its signed checkpoints over the
//! entries' exact bytes, and the Merkle tree against the signed (optionally
//! witness-cosigned) tree checkpoint the export opens with.

use crate::Failure;
use crate::log::{Fetcher, fetch_tile, log_keys, write_atomically};
use clap::{Args, Subcommand};
use countersign_core::note::{MAX_NOTE_BYTES, NoteVerifier};
use countersign_core::text::hex;
use countersign_core::{AuthorizedKey, ErrorCode, GatekeeperId, Role, Subject};
use countersign_vendor::Signer;
use countersign_vendor::keys::load_public_keys;
use countersign_vendor::logged::{
    CHECKPOINT_PATH, LogTrust, SavedReceipt, check_entry, prove_logged,
};
use countersign_vendor::transport::role_policy;
use std::path::PathBuf;

/// `countersign audit ...`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Prove that the request of a saved receipt was logged (inclusion proof against
    /// the gatekeeper's signed checkpoint, computed from its public hash tiles).
    Prove(ProveArgs),
    /// Verify an audit export file (JSONL) without the gatekeeper: chain, checkpoints
    /// and Merkle tree, in one pass.
    Verify(VerifyArgs),
}

/// Whom the log's signatures must come from: the gatekeeper's keys and, optionally, a
/// quorum of witnesses.
#[derive(Args, Debug)]
pub struct LogKeys {
    /// Gatekeeper public key file(s): receipts and checkpoints must be signed by them.
    #[arg(long = "gatekeeper-key", required = true)]
    gatekeeper_keys: Vec<PathBuf>,
    /// A witness's verifier key (`name+keyid+base64`, type 0x04); repeatable.
    #[arg(long = "witness")]
    witnesses: Vec<String>,
    /// How many of the `--witness` keys must have cosigned the tree checkpoint.
    #[arg(long, default_value_t = 0)]
    quorum: usize,
}

impl LogKeys {
    /// The gatekeeper's keys and the witnesses' verifier keys; a quorum larger than
    /// the witnesses given is a usage error.
    fn load(&self) -> Result<(Vec<AuthorizedKey>, Vec<NoteVerifier>), Failure> {
        let mut keys: Vec<AuthorizedKey> = Vec::new();
        for p in &self.gatekeeper_keys {
            keys.extend(load_public_keys(p)?);
        }
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| NoteVerifier::parse(w))
            .collect::<Result<Vec<_>, _>>()?;
        if self.quorum > witnesses.len() {
            return Err(Failure::usage(format!(
                "--quorum {} needs at least as many --witness keys (got {})",
                self.quorum,
                witnesses.len()
            )));
        }
        Ok((keys, witnesses))
    }
}

/// Arguments of `audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The export (JSONL), or `-` for standard input; or `--url` instead.
    #[arg(required_unless_present = "url", conflicts_with = "url")]
    export: Option<String>,
    #[command(flatten)]
    log: LogKeys,
    /// Fail unless the export opens with a signed tree checkpoint.
    #[arg(long, conflicts_with = "url")]
    require_tree: bool,
    /// Verify the log of the gatekeeper at this base URL from its checkpoint, hash
    /// tiles and entry bundles, instead of an export.
    #[arg(long, requires = "admin_key")]
    url: Option<String>,
    /// A `customer-admin` secret key file: signs each entry-bundle request.
    #[arg(long = "admin-key", requires = "url")]
    admin_key: Option<PathBuf>,
    /// The subject the entry-bundle requests are signed as (recorded in the log).
    #[arg(long, default_value = "audit-verifier", requires = "url")]
    subject: String,
    /// A checkpoint (signed note) saved earlier: the log must extend it.
    #[arg(long, requires = "url")]
    since: Option<PathBuf>,
    /// A state file: the checkpoint of the last successful run, which the log must
    /// extend (no rollback, no fork between two runs); replaced by the newly verified
    /// checkpoint. A missing file starts the state.
    #[arg(long, requires = "url")]
    state: Option<PathBuf>,
    /// The checkpoints the gatekeeper published outside its database (its
    /// `audit.published_checkpoints` file, or a copy): the log must extend each.
    #[arg(long, requires = "url")]
    published: Option<PathBuf>,
}

/// Arguments of `audit prove`.
#[derive(Args, Debug)]
pub struct ProveArgs {
    /// The receipt file written by `put`/`get --receipt FILE`.
    receipt: PathBuf,
    /// Gatekeeper base URL, such as `https://gk.example.com`
    #[arg(long, env = "COUNTERSIGN_GATEKEEPER_URL")]
    gatekeeper: String,
    #[command(flatten)]
    log: LogKeys,
    /// The entry's exact bytes (a customer admin's copy, from the audit API): also
    /// check that it records the receipt's request and decision.
    #[arg(long)]
    entry: Option<PathBuf>,
}

/// Runs `audit ...`.
pub fn run(a: AuditArgs) -> Result<u8, Failure> {
    match a.command {
        AuditCommand::Prove(p) => prove(p),
        AuditCommand::Verify(v) if v.url.is_some() => verify_url(v),
        AuditCommand::Verify(v) => verify(v),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::io(&path.display().to_string(), &e))
}

fn prove(a: ProveArgs) -> Result<u8, Failure> {
    let saved = SavedReceipt::parse(&read(&a.receipt)?)?;
    let (keys, witnesses) = a.log.load()?;
    let verified = saved.verify(&role_policy(keys, &Role::gatekeeper(), 1)?)?;
    let origin = countersign_core::logged::log_origin(&GatekeeperId::parse(&saved.gatekeeper)?);
    let http = Fetcher::connect(&a.gatekeeper)?;
    // The gatekeeper's keys in turn (a rotated log key signs under one of them).
    let mut last = None;
    for log_key in log_keys(&a.log.gatekeeper_keys, &origin)? {
        let trust = LogTrust {
            log_key,
            witnesses: witnesses.clone(),
            quorum: a.log.quorum,
        };
        let result = prove_logged(&verified, &trust, |path| {
            let mut h = http.borrow_mut();
            let max = if path == CHECKPOINT_PATH {
                MAX_NOTE_BYTES
            } else {
                8192
            };
            h.get(path, max).map_err(|f| h.fail(f).into())
        });
        if let Some(f) = http.borrow_mut().take_failure() {
            return Err(f);
        }
        match result {
            Ok(logged) => {
                let entry_text = match &a.entry {
                    Some(p) => {
                        let entry =
                            check_entry(verified.receipt(), &read(p)?, &saved.request_bytes()?)?;
                        format!(
                            "; the entry records `{}` at {} ms",
                            entry.decision, entry.time_ms
                        )
                    }
                    None => String::new(),
                };
                let witnesses = if logged.cosigned_by.is_empty() {
                    String::new()
                } else {
                    format!(", cosigned by {}", logged.cosigned_by.join(", "))
                };
                println!(
                    "logged: entry {} (leaf {}) of {}, in the signed checkpoint of {} entries{witnesses}{entry_text}",
                    logged.leaf_index,
                    hex(&logged.leaf_sha256),
                    origin,
                    logged.checkpoint.size()
                );
                return Ok(0);
            }
            // Another of the gatekeeper's keys may have signed the checkpoint.
            Err(countersign_vendor::Error::Protocol(e))
                if e.code() == countersign_core::ErrorCode::UnknownKey =>
            {
                last = Some(countersign_vendor::Error::Protocol(e));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(
        || Failure::usage("the gatekeeper key files hold no key of role `gatekeeper`"),
        Failure::from,
    ))
}

/// `audit verify EXPORT`: the export read in chunks and verified by the core's
/// [`ExportVerifier`](countersign_core::export::ExportVerifier).
fn verify(a: VerifyArgs) -> Result<u8, Failure> {
    use countersign_core::export::ExportVerifier;
    use std::io::Read as _;
    let (keys, witnesses) = a.log.load()?;
    let policy = role_policy(keys.clone(), &Role::gatekeeper(), 1)?;
    let export = a.export.as_deref().unwrap_or("-");
    let mut input: Box<dyn std::io::Read> = if export == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(export).map_err(|e| Failure::io(export, &e))?)
    };
    let log_keys = keys.iter().map(|k| k.public_key).collect();
    let mut verifier = ExportVerifier::new(&policy, log_keys, witnesses, a.log.quorum);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::io(export, &e)),
        };
        verifier.chunk(buf.get(..n).unwrap_or_default())?;
    }
    let report = verifier.finish()?;
    let tree = match report.tree_size {
        Some(size) => {
            let cosigned = if report.cosigned_by.is_empty() {
                String::new()
            } else {
                format!(", cosigned by {}", report.cosigned_by.join(", "))
            };
            format!("the first {size} entries match the signed tree checkpoint{cosigned}")
        }
        None if a.require_tree => {
            return Err(countersign_core::Error::new(
                countersign_core::ErrorCode::AuditChainBroken,
                "the export has no signed tree checkpoint (--require-tree)",
            )
            .into());
        }
        None => "no tree checkpoint in the export".to_owned(),
    };
    println!(
        "audit log OK: {} entries chained, {} signed checkpoints verified, {tree}; head {}",
        report.entries,
        report.chain_checkpoints,
        hex(&report.head)
    );
    Ok(0)
}

/// `audit verify --url`: the checkpoint (under the gatekeeper's keys and the witness
/// quorum), then each entry bundle (signed by the admin key) with its level-0 tile,
/// one at a time, through [`TileLogVerifier`](countersign_core::log_verify::TileLogVerifier); the saved, state and published
/// checkpoints must be the tree's roots at their sizes.
fn verify_url(a: VerifyArgs) -> Result<u8, Failure> {
    use countersign_core::log_verify::{TileLogVerifier, trust_for_note};
    use countersign_core::tiles::{MAX_BUNDLE_ENTRY, TILE_WIDTH, TileKind, TilePath};
    let (Some(url), Some(admin_key)) = (&a.url, &a.admin_key) else {
        return Err(Failure::usage("--url needs --admin-key"));
    };
    let (keys, witnesses) = a.log.load()?;
    let policy = role_policy(keys.clone(), &Role::gatekeeper(), 1)?;
    let signer = Signer::from_key_files([admin_key])?;
    let subject = Subject::parse(&a.subject)?;
    let http = Fetcher::connect(url)?;
    let note = http.borrow_mut().checkpoint()?;
    // The first of the gatekeeper's keys that signed the checkpoint.
    let mut opened = Err(countersign_core::Error::new(
        ErrorCode::UnknownKey,
        "none of the --gatekeeper-key keys signed the log's checkpoint",
    ));
    for k in keys.iter().filter(|k| k.role == Role::gatekeeper()) {
        let trust = trust_for_note(&note, k.public_key, witnesses.clone(), a.log.quorum)?;
        opened = TileLogVerifier::new(&policy, &note, &trust).map(|v| (v, trust));
        if !matches!(&opened, Err(e) if e.code() == ErrorCode::UnknownKey) {
            break;
        }
    }
    let (mut verifier, trust) = opened?;
    let origin = trust.log_key.name().to_owned();
    let audience = origin
        .strip_suffix("/audit")
        .map(GatekeeperId::parse)
        .transpose()?
        .ok_or_else(|| {
            countersign_core::Error::new(
                ErrorCode::Malformed,
                format!("the checkpoint's origin `{origin}` is not `<gatekeeper id>/audit`"),
            )
        })?;
    let open_earlier = |note: &[u8], what: &str| {
        countersign_core::note::Checkpoint::open(note, &origin, &trust.log_key)
            .map(|(cp, _)| cp)
            .map_err(|e| in_file(what, e))
    };
    if let Some(p) = &a.since {
        verifier.expect(
            open_earlier(&read(p)?, "the --since checkpoint")?,
            "the --since checkpoint",
        )?;
    }
    if let Some(p) = &a.state {
        match std::fs::read(p) {
            Ok(saved) => verifier.expect(
                open_earlier(&saved, "the state file's checkpoint")?,
                "the checkpoint of the last run (state file)",
            )?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::io(&p.display().to_string(), &e)),
        }
    }
    let mut published = match &a.published {
        Some(p) => Some(PublishedReader::open(p)?),
        None => None,
    };
    let audit_bucket = countersign_core::Bucket::parse("countersign-audit")?;
    let list = countersign_core::Operation::List {
        prefix: countersign_core::ListPrefix::parse("")?,
    };
    let mut bundles = 0u64;
    while let Some(path) = verifier.next_bundle() {
        // The published checkpoints up to this bundle's end, in order.
        if let Some(p) = published.as_mut() {
            let end = path.index() * TILE_WIDTH + u64::from(path.width());
            p.feed(&mut verifier, end, &open_earlier)?;
        }
        let now = countersign_vendor::unix_now();
        let request = countersign_core::Request::new(
            audience.clone(),
            audit_bucket.clone(),
            list.clone(),
            subject.clone(),
            now,
            60,
            &mut rand_core::OsRng,
        )?;
        let signature = signer.sign_request(&request, now)?;
        let (request_header, signature_header) = countersign_vendor::transport::request_headers(
            &request.encode(),
            std::slice::from_ref(&signature),
        );
        let bundle = http.borrow_mut().fetch(
            &format!("audit/{path}"),
            &[
                (countersign_core::transport::REQUEST_HEADER, &request_header),
                (
                    countersign_core::transport::SIGNATURE_HEADER,
                    &signature_header,
                ),
            ],
            usize::from(path.width()) * (MAX_BUNDLE_ENTRY + 2),
        )?;
        let tile_path = TilePath::new(TileKind::Hashes { level: 0 }, path.index(), path.width())?;
        let tile = fetch_tile(&http, &tile_path)?;
        verifier.bundle(&path, &bundle, &tile)?;
        bundles += 1;
    }
    // Published checkpoints past the last bundle (or of an empty log).
    if let Some(p) = published.as_mut() {
        p.feed(&mut verifier, u64::MAX, &open_earlier)?;
    }
    let report = verifier.finish()?;
    if let Some(p) = &a.state {
        write_atomically(p, &note)?;
    }
    let cosigned = if report.cosigned_by.is_empty() {
        String::new()
    } else {
        format!(", cosigned by {}", report.cosigned_by.join(", "))
    };
    println!(
        "audit log {origin} OK: {} entries from {bundles} entry bundles match the signed checkpoint{cosigned} \
         (root {}); {} earlier checkpoints matched; head {}",
        report.entries,
        hex(&report.root),
        report.earlier_checkpoints,
        hex(&report.head)
    );
    Ok(0)
}

/// Opens a checkpoint note of the log being verified; the `&str` names it in errors.
type OpenCheckpoint<'a> =
    dyn Fn(&[u8], &str) -> Result<countersign_core::note::Checkpoint, Failure> + 'a;

/// Reads a file of published checkpoints (signed notes, each followed by an empty
/// line, in order of size) one note at a time.
struct PublishedReader {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    notes: countersign_core::note::NoteLines,
    what: String,
    /// The next checkpoint read but not yet given to the verifier.
    pending: Option<countersign_core::note::Checkpoint>,
    /// The size of the last one given.
    last_size: u64,
}

impl PublishedReader {
    fn open(path: &std::path::Path) -> Result<Self, Failure> {
        let what = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Failure::io(&what, &e))?;
        Ok(Self {
            lines: std::io::BufRead::lines(std::io::BufReader::new(file)),
            notes: Default::default(),
            what,
            pending: None,
            last_size: 0,
        })
    }

    fn next_note(&mut self) -> Result<Option<String>, Failure> {
        for line in self.lines.by_ref() {
            let line = line.map_err(|e| Failure::io(&self.what, &e))?;
            if let Some(note) = self.notes.push(&line).map_err(|e| in_file(&self.what, e))? {
                return Ok(Some(note));
            }
        }
        self.notes.finish().map_err(|e| in_file(&self.what, e))?;
        Ok(None)
    }

    /// Gives `verifier` every published checkpoint of at most `end` entries (opened
    /// with `open`); sizes that go back are a rollback.
    fn feed(
        &mut self,
        verifier: &mut countersign_core::log_verify::TileLogVerifier<'_>,
        end: u64,
        open: &OpenCheckpoint<'_>,
    ) -> Result<(), Failure> {
        loop {
            let cp = match self.pending.take() {
                Some(cp) => cp,
                None => match self.next_note()? {
                    Some(note) => open(note.as_bytes(), "a published checkpoint")?,
                    None => return Ok(()),
                },
            };
            if cp.size() > end {
                self.pending = Some(cp);
                return Ok(());
            }
            if cp.size() < self.last_size {
                return Err(countersign_core::Error::new(
                    ErrorCode::AuditChainBroken,
                    format!(
                        "the published checkpoints go back from size {} to {}: the log was rolled back",
                        self.last_size,
                        cp.size()
                    ),
                )
                .into());
            }
            self.last_size = cp.size();
            verifier.expect(cp, "the published checkpoint")?;
        }
    }
}

fn in_file(what: &str, e: countersign_core::Error) -> Failure {
    countersign_core::Error::new(e.code(), format!("{what}: {}", e.message())).into()
}
