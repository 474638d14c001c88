//! Collecting witnesses' cosignatures (`docs/PROTOCOL.md`, "Witnesses"): after the
//! integrator signs a checkpoint, a task of its own sends it to every witness of
//! `[log]` with the C2SP `tlog-witness` `add-checkpoint` request — a consistency
//! proof from the size the witness last cosigned, computed from the stored tiles —
//! checks each cosignature under the witness's key and stores it with the checkpoint.
//!
//! Nothing waits for a witness: integration hands the newest checkpoint over a watch
//! channel and goes on, each witness has a task of its own, every request has the
//! configured timeout, and a witness that fails is retried with a backoff (up to a
//! minute).

use crate::config::{WitnessConfig, WitnessPolicy};
use crate::ledger::{Ledger, TreeCheckpoint};
use countersign_core::logged::{Step, consistency_from_tiles};
use countersign_core::merkle::Hash;
use countersign_core::note::SignedNote;
use countersign_core::tiles::TileKind;
use countersign_core::witness::{AddCheckpoint, SIZE_CONTENT_TYPE};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A witness's cosignature of the newest checkpoint is asked for again when it is
/// this old, so that an idle log keeps fresh cosignatures (and the metric
/// `countersign_witness_cosignature_age_seconds` measures the witnesses, not the
/// traffic).
pub const COSIGNATURE_REFRESH: Duration = Duration::from_secs(600);

/// Longest wait before retrying a witness that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Largest answer read from a witness.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What the gatekeeper knows of one witness.
struct Follower {
    config: WitnessConfig,
    /// The size the witness last cosigned, as far as the gatekeeper knows (0 at
    /// start: a `409` answer corrects it).
    size: u64,
    /// The size and the time (POSIX seconds) of the last cosignature stored.
    cosigned: Option<(u64, u64)>,
    /// Failures in a row, and when to try again.
    failures: u32,
    next_try: Instant,
}

/// Starts the collector and returns the channel the integrator sends each new
/// checkpoint on. Without witnesses, nothing is started and `None` is returned.
pub fn spawn_collector(
    ledger: Ledger,
    policy: &WitnessPolicy,
    tick: Duration,
) -> Option<watch::Sender<Option<TreeCheckpoint>>> {
    if policy.witnesses.is_empty() {
        return None;
    }
    let client = match reqwest::Client::builder()
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("witnesses: cannot build an HTTP client: {e}");
            return None;
        }
    };
    let (tx, _) = watch::channel::<Option<TreeCheckpoint>>(None);
    // One task per witness: a slow or dead witness delays no other.
    for w in &policy.witnesses {
        let mut f = Follower {
            config: w.clone(),
            size: 0,
            cosigned: None,
            failures: 0,
            next_try: Instant::now(),
        };
        let (client, ledger, mut rx) = (client.clone(), ledger.clone(), tx.subscribe());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(tick) => {}
                }
                let Some(cp) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let fresh = f.cosigned.is_some_and(|(size, time)| {
                    size == cp.size
                        && unix_secs().saturating_sub(time) < COSIGNATURE_REFRESH.as_secs()
                });
                if fresh || f.next_try > Instant::now() {
                    continue;
                }
                match collect(&client, &ledger, &mut f, &cp).await {
                    Ok(()) => f.failures = 0,
                    Err(e) => {
                        f.failures = f.failures.saturating_add(1);
                        let wait = Duration::from_secs(1u64 << f.failures.min(6)).min(MAX_BACKOFF);
                        f.next_try = Instant::now() + wait;
                        tracing::warn!(
                            "witness {} ({}): no cosignature of the checkpoint of size {} (retrying in {}s): {e}",
                            f.config.verifier.name(),
                            f.config.url,
                            cp.size,
                            wait.as_secs()
                        );
                    }
                }
            }
        });
    }
    Some(tx)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends `cp` to the witness (again from the size it names after a `409`) and
/// stores the cosignature it answers.
async fn collect(
    client: &reqwest::Client,
    ledger: &Ledger,
    f: &mut Follower,
    cp: &TreeCheckpoint,
) -> Result<(), String> {
    for _ in 0..2 {
        if f.size > cp.size {
            return Err(format!(
                "the witness cosigned a checkpoint of size {}, larger than this one",
                f.size
            ));
        }
        let proof = consistency_proof(ledger, f.size, cp.size).await?;
        let body = AddCheckpoint {
            old: f.size,
            proof,
            note: cp.note.clone().into_bytes(),
        }
        .encode();
        let url = format!("{}/add-checkpoint", f.config.url);
        let mut r = client
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = r.status();
        let is_size = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == SIZE_CONTENT_TYPE.as_bytes());
        let mut answer = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| format!("POST {url}: {e}"))? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "POST {url}: the answer is over {MAX_ANSWER_BYTES} bytes"
                ));
            }
            answer.extend_from_slice(&chunk);
        }
        let answer = String::from_utf8_lossy(&answer);
        if status == reqwest::StatusCode::CONFLICT && is_size {
            let size: u64 = answer
                .trim_end_matches('\n')
                .parse()
                .map_err(|_| format!("POST {url}: 409 with a size that is not a number"))?;
            if size == f.size {
                // The witness is where we thought and still refuses: it saw another
                // checkpoint of this size (a fork) and will not cosign this one.
                return Err(format!(
                    "the witness refuses the checkpoint (409 at the size {size} it was sent)"
                ));
            }
            f.size = size;
            continue;
        }
        if !status.is_success() {
            let first = answer.lines().next().unwrap_or_default();
            return Err(format!(
                "POST {url} answered {status}: {}",
                first.chars().take(200).collect::<String>()
            ));
        }
        let (time, line) = check_cosignature(f, cp, &answer)?;
        ledger
            .store_cosignature(cp.size, &f.config.verifier.to_text(), time, &line)
            .await
            .map_err(|e| format!("cannot store the cosignature: {e}"))?;
        f.size = cp.size;
        f.cosigned = Some((cp.size, time));
        return Ok(());
    }
    Err("the witness named a new size twice".to_owned())
}

/// The answer's signature line that is this witness's valid cosignature of `cp`.
fn check_cosignature(
    f: &Follower,
    cp: &TreeCheckpoint,
    answer: &str,
) -> Result<(u64, String), String> {
    for line in answer.lines().filter(|l| !l.is_empty()) {
        let line = format!("{line}\n");
        let mut note = cp.note.clone();
        note.push_str(&line);
        let Ok(parsed) = SignedNote::parse(note.as_bytes()) else {
            continue;
        };
        if let Ok(verified) = parsed.verify(&[&f.config.verifier])
            && let Some(v) = verified
                .into_iter()
                .find(|v| v.name == f.config.verifier.name())
        {
            return Ok((v.time, line));
        }
    }
    Err("the answer holds no valid cosignature by this witness's key".to_owned())
}

/// The consistency proof from `old` to `new` leaves, from the stored tiles.
async fn consistency_proof(ledger: &Ledger, old: u64, new: u64) -> Result<Vec<Hash>, String> {
    let mut tiles = Vec::new();
    loop {
        match consistency_from_tiles(old, new, &tiles).map_err(|e| e.to_string())? {
            Step::Proof(p) => return Ok(p),
            Step::Need(path) => {
                let TileKind::Hashes { level } = path.kind() else {
                    return Err(format!("the proof asked for the non-hash tile {path}"));
                };
                let want = usize::from(path.width()) * 32;
                let mut hashes = ledger
                    .tile(level, path.index())
                    .await
                    .map_err(|e| format!("cannot read tile {path}: {e}"))?
                    .unwrap_or_default();
                if hashes.len() < want {
                    return Err(format!("the tree has no tile {path}"));
                }
                hashes.truncate(want);
                tiles.push((path, hashes));
            }
        }
    }
}
