//! `countersign witness`: cosigns a gatekeeper's checkpoints (`cosignature/v1`) only
//! if each is consistent with the last one it cosigned; on a fork or a rollback it
//! halts for that log until an operator runs `witness reset`. `witness cosign`
//! follows the log (pull); `witness serve` answers the C2SP `tlog-witness`
//! `add-checkpoint` requests the gatekeeper sends (push). Both take the decision in
//! [`Witness::step`].

use crate::Failure;
use crate::log::{Fetcher, log_keys as log_keys_of, open, write_atomically};
use clap::{Args, Subcommand};
use countersign_core::merkle::{Hash, consistency_proof};
use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use countersign_core::tiles::{TileHashes, TilePath};
use countersign_core::witness::{
    AddCheckpoint, MAX_ADD_CHECKPOINT_BYTES, Refusal, SIZE_CONTENT_TYPE, decide,
};
use countersign_core::{Error, ErrorCode, Role};
use countersign_vendor::{VendorKey, unix_now};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `format` of a witness state file.
const STATE_FORMAT: &str = "countersign-witness-state/v1";

/// `countersign witness ...`.
#[derive(Args, Debug)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Subcommand, Debug)]
enum WitnessCommand {
    /// Cosign the log's current checkpoint if it extends the last one cosigned.
    Cosign(CosignArgs),
    /// Serve the C2SP `tlog-witness` API (`POST /add-checkpoint`) for one log.
    Serve(ServeArgs),
    /// Operator's command: clear a halted state (and the last checkpoint) for the log.
    Reset(ResetArgs),
}

/// Arguments of `witness cosign`.
#[derive(Args, Debug)]
pub struct CosignArgs {
    /// Gatekeeper base URL, such as `https://gk.example.com`
    #[arg(long)]
    log: String,
    /// Gatekeeper public key file(s): the checkpoint must be signed by one of them.
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<PathBuf>,
    /// The log's origin, `<gatekeeper id>/audit`.
    #[arg(long)]
    origin: String,
    /// The witness's state file for this log (created on first use).
    #[arg(long)]
    state: PathBuf,
    /// The witness's secret key file (from `countersign keygen --role witness`).
    #[arg(long)]
    key: PathBuf,
    /// The witness's name in its note signatures, such as `witness.example.com`.
    #[arg(long)]
    name: String,
    /// Write the cosignature line here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `witness serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, such as `127.0.0.1:7380` (port 0: any free port). The
    /// one line printed on standard output names the address and the witness's vkey.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Gatekeeper public key file(s): a checkpoint must be signed by one of them.
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<PathBuf>,
    /// The log's origin, `<gatekeeper id>/audit`.
    #[arg(long)]
    origin: String,
    /// The witness's state file for this log (created on first use; shared with
    /// `witness cosign`).
    #[arg(long)]
    state: PathBuf,
    /// The witness's secret key file (from `countersign keygen --role witness`).
    #[arg(long)]
    key: PathBuf,
    /// The witness's name in its note signatures, such as `witness.example.com`.
    #[arg(long)]
    name: String,
}

/// Arguments of `witness reset`.
#[derive(Args, Debug)]
pub struct ResetArgs {
    /// The witness's state file for the log.
    #[arg(long)]
    state: PathBuf,
}

/// What a witness remembers of one log.
#[derive(Serialize, Deserialize, Debug)]
struct State {
    format: String,
    origin: String,
    /// The last checkpoint cosigned (the signed note), if any.
    checkpoint: Option<String>,
    /// Why the witness halted for this log (a fork or a rollback), if it did.
    halted: Option<String>,
}

/// Runs `witness ...`.
pub fn run(a: WitnessArgs) -> Result<u8, Failure> {
    match a.command {
        WitnessCommand::Cosign(c) => cosign(c),
        WitnessCommand::Serve(s) => serve(s),
        WitnessCommand::Reset(r) => reset(r),
    }
}

fn bad_state(path: &Path, why: &str) -> Failure {
    Failure {
        exit: 3,
        code: "invalid_state_file".to_owned(),
        message: format!("{}: {why}", path.display()),
    }
}

fn load(path: &Path) -> Result<Option<State>, Failure> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::io(&path.display().to_string(), &e)),
    };
    let state: State = serde_json::from_slice(&text)
        .map_err(|e| bad_state(path, &format!("not a witness state file: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(bad_state(path, &format!("format is not `{STATE_FORMAT}`")));
    }
    Ok(Some(state))
}

/// Holds an exclusive lock on `<state>.lock` while a command reads and rewrites the
/// state, so that two runs cannot interleave (and a halt is never overwritten).
fn lock(state: &Path) -> Result<std::fs::File, Failure> {
    let mut p = state.as_os_str().to_owned();
    p.push(".lock");
    let p = PathBuf::from(p);
    let what = p.display().to_string();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| Failure::io(&what, &e))?;
    f.lock().map_err(|e| Failure::io(&what, &e))?;
    Ok(f)
}

fn save(path: &Path, state: &State) -> Result<(), Failure> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| bad_state(path, &format!("cannot encode: {e}")))?;
    write_atomically(path, &json)
}

/// A witness of one log: its state file, the log's keys and its own signer.
struct Witness {
    state: PathBuf,
    origin: String,
    log_keys: Vec<NoteVerifier>,
    signer: NoteSigner,
}

impl Witness {
    fn new(
        state: PathBuf,
        origin: String,
        log_keys: &[PathBuf],
        key: &Path,
        name: &str,
    ) -> Result<Self, Failure> {
        let log_keys = log_keys_of(log_keys, &origin)?;
        let key = VendorKey::load(key)?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::usage("the witness key file holds no key"))?;
        if *key.role() != Role::parse("witness")? {
            return Err(Failure::usage("the witness key's role must be `witness`"));
        }
        let signer = NoteSigner::cosigner(name, key.signing_key().clone())?;
        Ok(Self {
            state,
            origin,
            log_keys,
            signer,
        })
    }

    /// The one decision of `cosign` and `serve`, under the state file's lock: opens
    /// `note` under the log's keys, asks `proof` for the `old` size and consistency
    /// proof given the last checkpoint cosigned, and cosigns (recording the note
    /// before the cosignature leaves) only if [`decide`] agrees. A refusal for which
    /// `halts` holds is recorded: the witness cosigns nothing for the log afterwards
    /// until `witness reset`.
    fn step(
        &self,
        note: &[u8],
        proof: impl FnOnce(Option<&Checkpoint>, &Checkpoint) -> Result<(u64, Vec<Hash>), Failure>,
        halts: impl Fn(&Refusal) -> bool,
    ) -> Result<String, NotCosigned> {
        let _lock = lock(&self.state)?;
        let state = load(&self.state)?;
        if let Some(s) = &state {
            if s.origin != self.origin {
                return Err(bad_state(
                    &self.state,
                    &format!(
                        "it is the state of log `{}`, not `{}`",
                        s.origin, self.origin
                    ),
                )
                .into());
            }
            if let Some(why) = &s.halted {
                return Err(NotCosigned::Halted(format!(
                    "the witness halted for log `{}` ({why}) and cosigns nothing until an operator runs `countersign witness reset`",
                    self.origin
                )));
            }
        }
        let last = match state.as_ref().and_then(|s| s.checkpoint.as_deref()) {
            Some(n) => Some(open(n.as_bytes(), &self.origin, &self.log_keys)?),
            None => None,
        };
        let new = open(note, &self.origin, &self.log_keys)?;
        let (old, proof) = proof(last.as_ref(), &new)?;
        if let Err(r) = decide(last.as_ref(), old, &proof, &new) {
            let why = refusal_message(&r, last.as_ref(), &new);
            if halts(&r) {
                save(
                    &self.state,
                    &State {
                        format: STATE_FORMAT.to_owned(),
                        origin: self.origin.clone(),
                        checkpoint: state.and_then(|s| s.checkpoint),
                        halted: Some(why.clone()),
                    },
                )?;
            }
            return Err(NotCosigned::Refused(r, last.map_or(0, |c| c.size()), why));
        }
        let text = std::str::from_utf8(note).map_err(|_| {
            Failure::from(Error::new(ErrorCode::Malformed, "the note is not UTF-8"))
        })?;
        let signature = self
            .signer
            .cosign(
                SignedNote::parse(note).map_err(Failure::from)?.text(),
                unix_now(),
            )
            .map_err(Failure::from)?;
        save(
            &self.state,
            &State {
                format: STATE_FORMAT.to_owned(),
                origin: self.origin.clone(),
                checkpoint: Some(text.to_owned()),
                halted: None,
            },
        )?;
        Ok(signature.line())
    }
}

/// Why a witness did not cosign.
enum NotCosigned {
    /// The decision refused: the refusal, the size last cosigned, and why.
    Refused(Refusal, u64, String),
    /// The witness halted for the log earlier.
    Halted(String),
    /// The state could not be read or written, or the checkpoint did not open.
    Failed(Failure),
}

impl From<Failure> for NotCosigned {
    fn from(f: Failure) -> Self {
        Self::Failed(f)
    }
}

/// What a refusal means to the operator of a witness that follows the log.
fn refusal_message(r: &Refusal, last: Option<&Checkpoint>, new: &Checkpoint) -> String {
    let old = last.map_or(0, Checkpoint::size);
    match r {
        Refusal::OldTooLarge => format!(
            "rollback: the log has {} entries, fewer than the {old} of the earlier checkpoint",
            new.size()
        ),
        Refusal::BadProof if old != new.size() => format!(
            "fork: the log of {} entries does not extend the earlier checkpoint of {old}",
            new.size()
        ),
        other => other.message(new.size()),
    }
}

fn cosign(a: CosignArgs) -> Result<u8, Failure> {
    let w = Witness::new(a.state, a.origin, &a.log_keys, &a.key, &a.name)?;
    let http = Fetcher::connect(&a.log)?;
    let note = http.borrow_mut().checkpoint()?;
    // Following the log, the witness computes the proof from the log's own tiles; any
    // refusal is the log's doing (a fork or a rollback) and halts the witness.
    let result = w.step(
        &note,
        |last, new| {
            let old = last.map_or(0, Checkpoint::size);
            if old == 0 || old >= new.size() {
                return Ok((old, Vec::new()));
            }
            let mut src = TileHashes::new(new.size(), |t: &TilePath| {
                let mut h = http.borrow_mut();
                let want = usize::from(t.width()) * 32;
                h.get(&t.to_string(), want).map_err(|f| h.fail(f))
            });
            let proof = consistency_proof(&mut src, old, new.size());
            if let Some(f) = http.borrow_mut().take_failure() {
                return Err(f);
            }
            Ok((old, proof?))
        },
        |_| true,
    );
    let line = match result {
        Ok(line) => line,
        Err(NotCosigned::Failed(f)) => return Err(f),
        Err(NotCosigned::Halted(message)) => {
            return Err(Failure {
                exit: 1,
                code: "witness_halted".to_owned(),
                message,
            });
        }
        Err(NotCosigned::Refused(_, _, why)) => {
            return Err(Error::new(
                ErrorCode::AuditChainBroken,
                format!("{why}; the witness halts for this log"),
            )
            .into());
        }
    };
    match &a.out {
        Some(p) => write_atomically(p, line.as_bytes())?,
        None => print!("{line}"),
    }
    Ok(0)
}

fn serve(a: ServeArgs) -> Result<u8, Failure> {
    let w = std::sync::Arc::new(Witness::new(
        a.state,
        a.origin,
        &a.log_keys,
        &a.key,
        &a.name,
    )?);
    let verifier_key = w.signer.verifier_key();
    let app = axum::Router::new()
        .route(
            "/add-checkpoint",
            axum::routing::post(move |body: axum::body::Bytes| add_checkpoint(w.clone(), body)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            MAX_ADD_CHECKPOINT_BYTES,
        ));
    let rt = crate::remote::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| Failure::io(&a.listen.to_string(), &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::io(&a.listen.to_string(), &e))?;
        // One line, for the operator (the vkey to put in the gatekeeper's `[log]`)
        // and for scripts (the address, when the port was 0).
        println!(
            "witness {} listening on {addr} vkey {}",
            a.name, verifier_key
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Failure::io(&addr.to_string(), &e))
    })?;
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM (a service manager's stop).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `POST /add-checkpoint`: the decision runs off the async threads, under the state
/// file's lock (so a dropped request either recorded its checkpoint or did not).
async fn add_checkpoint(
    w: std::sync::Arc<Witness>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    let text = |status: StatusCode, message: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{message}\n"),
        )
            .into_response()
    };
    let request = match AddCheckpoint::parse(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.message().to_owned()),
    };
    let decided = tokio::task::spawn_blocking(move || {
        let AddCheckpoint { old, proof, note } = request;
        // Sent by anyone: only a fork signed by the log is evidence enough to halt.
        w.step(&note, |_, _| Ok((old, proof)), |r| *r == Refusal::Fork)
    })
    .await;
    match decided {
        Ok(Ok(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        // A conflicting `old` and a fork both answer the size the witness cosigned.
        Ok(Err(NotCosigned::Refused(Refusal::Conflict(_) | Refusal::Fork, latest, _))) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
            format!("{latest}\n"),
        )
            .into_response(),
        Ok(Err(NotCosigned::Refused(Refusal::OldTooLarge, _, why))) => {
            text(StatusCode::BAD_REQUEST, why)
        }
        Ok(Err(NotCosigned::Refused(Refusal::BadProof, _, why))) => {
            text(StatusCode::UNPROCESSABLE_ENTITY, why)
        }
        Ok(Err(NotCosigned::Halted(why))) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        Ok(Err(NotCosigned::Failed(f))) => {
            let status = match f.code.as_str() {
                "wrong_audience" => StatusCode::NOT_FOUND,
                "bad_signature" | "unknown_key" | "wrong_role" => StatusCode::FORBIDDEN,
                _ if f.exit == 3 => {
                    eprintln!("countersign: witness: {}", f.message);
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the witness cannot read or write its state".to_owned(),
                    );
                }
                _ => StatusCode::BAD_REQUEST,
            };
            text(status, format!("{}: {}", f.code, f.message))
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the witness's decision task failed".to_owned(),
        ),
    }
}

fn reset(a: ResetArgs) -> Result<u8, Failure> {
    let _lock = lock(&a.state)?;
    let Some(state) = load(&a.state)? else {
        return Err(Failure::io(
            &a.state.display().to_string(),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let was = state.halted.clone();
    save(
        &a.state,
        &State {
            format: STATE_FORMAT.to_owned(),
            origin: state.origin.clone(),
            checkpoint: None,
            halted: None,
        },
    )?;
    match was {
        Some(why) => println!(
            "witness state of log `{}` reset (it had halted: {why}); the next cosign trusts the checkpoint it is shown",
            state.origin
        ),
        None => println!(
            "witness state of log `{}` reset; the next cosign trusts the checkpoint it is shown",
            state.origin
        ),
    }
    Ok(0)
}
