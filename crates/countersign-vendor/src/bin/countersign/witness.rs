//! `countersign witness`: cosigns a gatekeeper's checkpoints (`cosignature/v1`) only
//! if each is consistent with the last one it cosigned; on a fork or a rollback it
//! halts for that log until an operator runs `witness reset`.

use crate::Failure;
use crate::log::{Fetcher, check_extends, log_keys, open, write_atomically};
use clap::{Args, Subcommand};
use countersign_core::note::{NoteSigner, SignedNote};
use countersign_core::{ErrorCode, Role};
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

fn cosign(a: CosignArgs) -> Result<u8, Failure> {
    let keys = log_keys(&a.log_keys, &a.origin)?;
    let key = VendorKey::load(&a.key)?
        .into_iter()
        .next()
        .ok_or_else(|| Failure::usage("the witness key file holds no key"))?;
    if *key.role() != Role::parse("witness")? {
        return Err(Failure::usage("the witness key's role must be `witness`"));
    }
    let signer = NoteSigner::cosigner(&a.name, key.signing_key().clone())?;
    let _lock = lock(&a.state)?;
    let state = load(&a.state)?;
    if let Some(s) = &state {
        if s.origin != a.origin {
            return Err(bad_state(
                &a.state,
                &format!("it is the state of log `{}`, not `{}`", s.origin, a.origin),
            ));
        }
        if let Some(why) = &s.halted {
            return Err(Failure {
                exit: 1,
                code: "witness_halted".to_owned(),
                message: format!(
                    "the witness halted for log `{}` ({why}) and cosigns nothing until an operator runs `countersign witness reset`",
                    a.origin
                ),
            });
        }
    }
    let previous = match state.as_ref().and_then(|s| s.checkpoint.as_deref()) {
        Some(note) => Some(open(note.as_bytes(), &a.origin, &keys)?),
        None => None,
    };
    let http = Fetcher::connect(&a.log)?;
    let note = http.borrow_mut().checkpoint()?;
    let cp = open(&note, &a.origin, &keys)?;
    if let Some(old) = &previous
        && let Err(f) = check_extends(&http, old, &cp)
    {
        if f.code == ErrorCode::AuditChainBroken.as_str() {
            save(
                &a.state,
                &State {
                    format: STATE_FORMAT.to_owned(),
                    origin: a.origin.clone(),
                    checkpoint: state.and_then(|s| s.checkpoint),
                    halted: Some(f.message.clone()),
                },
            )?;
            return Err(Failure {
                message: format!("{}; the witness halts for this log", f.message),
                ..f
            });
        }
        return Err(f);
    }
    let signature = signer.cosign(SignedNote::parse(&note)?.text(), unix_now())?;
    let text = String::from_utf8(note)
        .map_err(|_| crate::remote::bad_response("the checkpoint is not UTF-8"))?;
    save(
        &a.state,
        &State {
            format: STATE_FORMAT.to_owned(),
            origin: a.origin.clone(),
            checkpoint: Some(text),
            halted: None,
        },
    )?;
    let line = signature.line();
    match &a.out {
        Some(p) => write_atomically(p, line.as_bytes())?,
        None => print!("{line}"),
    }
    Ok(0)
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
