//! `countersign log verify`: follows a gatekeeper's transparency log over HTTP with no
//! database and no trust in the server — the signed checkpoint, every hash tile (in
//! constant memory) and, given an earlier checkpoint, the consistency of the two.

use crate::Failure;
use crate::remote::{bad_response, client, runtime, unreachable};
use clap::{Args, Subcommand};
use countersign_core::merkle::{Hash, TreeBuilder, consistency_proof, verify_consistency};
use countersign_core::note::{Checkpoint, MAX_NOTE_BYTES, NoteVerifier};
use countersign_core::tiles::{TILE_HEIGHT, TileHashes, TileKind, TilePath, tiles_of_tree};
use countersign_core::{Error, ErrorCode, Role};
use countersign_vendor::keys::load_public_keys;
use std::cell::RefCell;
use std::path::PathBuf;

/// `countersign log ...`.
#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Verify a gatekeeper's log from its checkpoint and hash tiles (no authentication).
    Verify(VerifyArgs),
}

/// Arguments of `log verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Gatekeeper base URL, such as `https://gk.example.com`
    #[arg(long, env = "COUNTERSIGN_GATEKEEPER_URL")]
    gatekeeper: String,
    /// Gatekeeper public key file(s): the checkpoint must be signed by one of them.
    #[arg(long = "gatekeeper-key", required = true)]
    gatekeeper_keys: Vec<PathBuf>,
    /// The log's origin, `<gatekeeper id>/audit`.
    #[arg(long)]
    origin: String,
    /// A checkpoint saved earlier: the log must extend it (no fork, no rollback).
    #[arg(long)]
    since: Option<PathBuf>,
    /// Write the verified checkpoint to this file (for a later `--since`).
    #[arg(long)]
    save: Option<PathBuf>,
}

/// Runs `log ...`.
pub fn run(a: LogArgs) -> Result<u8, Failure> {
    match a.command {
        LogCommand::Verify(v) => verify(v),
    }
}

/// GETs of the log's resources; the first transport failure is kept so that it is
/// reported as such rather than as the core error it aborted.
pub(crate) struct Fetcher {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    failure: Option<Failure>,
}

impl Fetcher {
    /// A client of the gatekeeper at `base`.
    pub(crate) fn connect(base: &str) -> Result<RefCell<Self>, Failure> {
        Ok(RefCell::new(Self {
            rt: runtime()?,
            client: client()?,
            base: base.trim_end_matches('/').to_owned(),
            failure: None,
        }))
    }

    /// The log's current checkpoint, as signed.
    pub(crate) fn checkpoint(&mut self) -> Result<Vec<u8>, Failure> {
        self.get("checkpoint", MAX_NOTE_BYTES)
    }

    /// GET `/v1/log/<path>`, at most `max` bytes.
    pub(crate) fn get(&mut self, path: &str, max: usize) -> Result<Vec<u8>, Failure> {
        self.fetch(&format!("log/{path}"), &[], max)
    }

    /// GET `/v1/<path>` with `headers`, at most `max` bytes. `404` is `not_found` (the
    /// log does not have the resource yet); another refusal keeps the code of its
    /// JSON error body.
    pub(crate) fn fetch(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        max: usize,
    ) -> Result<Vec<u8>, Failure> {
        let url = format!("{}/v1/{path}", self.base);
        self.rt.block_on(async {
            let mut request = self.client.get(&url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let mut r = request.send().await.map_err(|e| unreachable(&e))?;
            if r.status() == reqwest::StatusCode::NOT_FOUND {
                // The log does not have it yet (no checkpoint, or a tile not yet
                // integrated): a protocol answer, not a broken server.
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("GET /v1/{path}: the log has no such resource (yet)"),
                )
                .into());
            }
            let status = r.status();
            // An error body is a short JSON object, whatever the resource's size.
            let max = if status.is_success() { max } else { 4096 };
            let mut body = Vec::new();
            while let Some(chunk) = r.chunk().await.map_err(|e| unreachable(&e))? {
                if body.len() + chunk.len() > max {
                    return Err(bad_response(format!(
                        "GET /v1/{path} answered more than {max} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(match countersign_vendor::client::parse_error_body(&body) {
                    Some((code, message)) => {
                        Error::new(code, format!("GET /v1/{path}: {message}")).into()
                    }
                    None => bad_response(format!("GET /v1/{path} answered {status}")),
                });
            }
            Ok(body)
        })
    }

    /// Keeps the first transport failure and returns a core error standing for it.
    pub(crate) fn fail(&mut self, f: Failure) -> Error {
        let e = Error::new(ErrorCode::AuditUnavailable, f.message.clone());
        self.failure.get_or_insert(f);
        e
    }

    /// The first transport failure since the last call, if any.
    pub(crate) fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }
}

fn broken(message: String) -> Failure {
    Error::new(ErrorCode::AuditChainBroken, message).into()
}

/// Opens a checkpoint under the first of the gatekeeper's keys that signed it.
pub(crate) fn open(
    note: &[u8],
    origin: &str,
    keys: &[NoteVerifier],
) -> Result<Checkpoint, Failure> {
    let mut last = Error::new(ErrorCode::Malformed, "no gatekeeper key was given");
    for k in keys {
        match Checkpoint::open(note, origin, k) {
            Ok((cp, _)) => return Ok(cp),
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

/// Streams the level-0 tiles into a tree builder: the leaves give the root, and each
/// node of level 8, 16, … they complete must equal its hash in the tile above. Every
/// tile is fetched once and every hash of it is checked; memory is one tile per level.
fn verify_tiles(http: &RefCell<Fetcher>, size: u64, root: &Hash) -> Result<u64, Failure> {
    let mut tree = TreeBuilder::new();
    let mut above: Vec<Option<(TilePath, Vec<u8>)>> = vec![None; 8];
    let mut tiles = 0u64;
    let mut first_error: Option<Failure> = None;
    for t in tiles_of_tree(size).filter(|t| t.kind() == (TileKind::Hashes { level: 0 })) {
        let data = fetch_tile(http, &t)?;
        tiles += 1;
        for leaf in data
            .chunks_exact(32)
            .filter_map(|c| <Hash>::try_from(c).ok())
        {
            tree.push_with(leaf, |level, index, hash| {
                if first_error.is_some() || level == 0 || level % TILE_HEIGHT != 0 {
                    return;
                }
                let tile_level = (level / TILE_HEIGHT) as usize;
                let n = index / 256;
                // Levels stop at 63, so a slot per tile level 1–7 always exists.
                let Some(slot) = above.get_mut(tile_level) else {
                    return;
                };
                if slot.as_ref().is_none_or(|(p, _)| p.index() != n) {
                    let width = ((size >> level) - n * 256).min(256) as u16;
                    let fetched = TilePath::new(
                        TileKind::Hashes {
                            level: tile_level as u8,
                        },
                        n,
                        width,
                    )
                    .map_err(Failure::from)
                    .and_then(|p| Ok((p, fetch_tile(http, &p)?)));
                    match fetched {
                        Ok(v) => {
                            tiles += 1;
                            *slot = Some(v);
                        }
                        Err(f) => {
                            first_error = Some(f);
                            return;
                        }
                    }
                }
                if let Some((p, d)) = slot {
                    let i = (index % 256) as usize * 32;
                    if d.get(i..i + 32) != Some(&hash[..]) {
                        first_error = Some(broken(format!(
                            "hash {} of tile {p} is not the hash of the {} entries below it",
                            index % 256,
                            1u64 << level
                        )));
                    }
                }
            })?;
        }
        if let Some(f) = first_error.take() {
            return Err(f);
        }
    }
    if tree.size() != size {
        return Err(broken(format!(
            "the tiles hold {} entries, the checkpoint {size}",
            tree.size()
        )));
    }
    if tree.root() != *root {
        return Err(broken(format!(
            "the tiles do not hash to the root of the checkpoint of {size} entries"
        )));
    }
    Ok(tiles)
}

pub(crate) fn fetch_tile(http: &RefCell<Fetcher>, t: &TilePath) -> Result<Vec<u8>, Failure> {
    let want = usize::from(t.width()) * 32;
    let data = http.borrow_mut().get(&t.to_string(), want)?;
    if data.len() != want {
        return Err(broken(format!(
            "tile {t} holds {} bytes, not {want}",
            data.len()
        )));
    }
    Ok(data)
}

/// The verifiers of the log `origin` under the gatekeeper keys in `files`.
pub(crate) fn log_keys(files: &[PathBuf], origin: &str) -> Result<Vec<NoteVerifier>, Failure> {
    let mut keys = Vec::new();
    for p in files {
        for k in load_public_keys(p)? {
            if k.role == Role::gatekeeper() {
                keys.push(NoteVerifier::ed25519(origin, k.public_key)?);
            }
        }
    }
    if keys.is_empty() {
        return Err(Failure::usage(
            "the gatekeeper key files hold no key of role `gatekeeper`",
        ));
    }
    Ok(keys)
}

fn verify(a: VerifyArgs) -> Result<u8, Failure> {
    let keys = log_keys(&a.gatekeeper_keys, &a.origin)?;
    let since = match &a.since {
        Some(p) => {
            let note = std::fs::read(p).map_err(|e| Failure::io(&p.display().to_string(), &e))?;
            Some(open(&note, &a.origin, &keys)?)
        }
        None => None,
    };
    let http = Fetcher::connect(&a.gatekeeper)?;
    let note = http.borrow_mut().checkpoint()?;
    let cp = open(&note, &a.origin, &keys)?;
    let tiles = verify_tiles(&http, cp.size(), cp.root())?;
    if let Some(old) = &since {
        check_extends(&http, old, &cp)?;
    }
    if let Some(p) = &a.save {
        write_atomically(p, &note)?;
    }
    let since_text = since
        .map(|old| {
            format!(
                ", consistent with the saved checkpoint of {} entries",
                old.size()
            )
        })
        .unwrap_or_default();
    println!(
        "log {} verified: {} entries, root {}, {tiles} tiles{since_text}",
        a.origin,
        cp.size(),
        countersign_core::text::hex(cp.root()),
    );
    Ok(0)
}

/// Checks that `new` extends `old`: a consistency proof computed from the tiles (any
/// tile that lies makes the proof fail against the signed roots).
pub(crate) fn check_extends(
    http: &RefCell<Fetcher>,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<(), Failure> {
    if old.size() > new.size() {
        return Err(broken(format!(
            "rollback: the log has {} entries, fewer than the {} of the earlier checkpoint",
            new.size(),
            old.size()
        )));
    }
    if old.size() == new.size() {
        if old.root() != new.root() {
            return Err(broken(format!(
                "fork: two checkpoints of {} entries with different roots",
                new.size()
            )));
        }
        return Ok(());
    }
    let mut src = TileHashes::new(new.size(), |t: &TilePath| {
        let mut h = http.borrow_mut();
        let want = usize::from(t.width()) * 32;
        h.get(&t.to_string(), want).map_err(|f| h.fail(f))
    });
    let proof = consistency_proof(&mut src, old.size(), new.size());
    if let Some(f) = http.borrow_mut().take_failure() {
        return Err(f);
    }
    verify_consistency(old.size(), new.size(), old.root(), new.root(), &proof?).map_err(|_| {
        broken(format!(
            "fork: the log of {} entries does not extend the earlier checkpoint of {}",
            new.size(),
            old.size()
        ))
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, an
/// fsync and a rename (then an fsync of the directory, so the rename survives a
/// power loss): `path` holds the old or the new content, never a part.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let what = path.display().to_string();
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::io(&what, &e)
    })
}
