//! Fills a gatekeeper's audit log with generated entries, fast, for benchmarks of
//! the audit console at large sizes (`tests/bench/console-bench.mjs --fill ledger`,
//! `BENCHMARKS.md`, "Audit console in Chromium").
//!
//! ```text
//! cargo run --release -p countersign-gatekeeper --example fill_log -- CONFIG ENTRIES
//! ```
//!
//! Opens the gatekeeper of `CONFIG` (stopped: the log has one writer), appends
//! `ENTRIES` entries through the ledger from 64 tasks at once (so the group commit
//! batches them; each is a complete, hash-chained entry of a refused unsigned GET, as
//! the gatekeeper writes for one), integrates them into the Merkle tree, publishes the
//! checkpoints, and exits. The entries are real log entries: every verifier accepts the
//! log. Filling through HTTP instead costs a request each (~2,000/s on a debug build).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use countersign_core::audit::CapturedHeader;
use countersign_core::{Decision, ErrorCode};
use countersign_gatekeeper::config::Config;
use countersign_gatekeeper::ledger::AuditDraft;
use countersign_gatekeeper::server::build_state;
use countersign_gatekeeper::transparency::{Publisher, integrate_and_publish};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Tasks appending at once.
const WRITERS: usize = 64;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, entries] = &args[..] else {
        eprintln!("usage: fill_log CONFIG ENTRIES");
        std::process::exit(2);
    };
    let entries: u64 = entries.parse().expect("ENTRIES is a number");
    let text = std::fs::read_to_string(config).expect("CONFIG is readable");
    let config = Config::from_toml(&text, None).expect("CONFIG is valid");
    let (state, _) = build_state(config.clone())
        .await
        .expect("the gatekeeper opens");
    let start_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit u64")
        - entries;
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (state, next) = (state.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= entries {
                        return;
                    }
                    let draft = AuditDraft {
                        time_ms: start_ms + i,
                        request_id: format!("{i:032x}").into_bytes(),
                        client_ip: std::net::IpAddr::from([10, 0, (i % 200) as u8, 1]),
                        operation: b"GET".to_vec(),
                        bucket: b"reports".to_vec(),
                        key: format!("org-{}/patient-{i}.pdf", i % 97).into_bytes(),
                        subject: Vec::new(),
                        decision: Decision::Deny(ErrorCode::Malformed),
                        bytes: 0,
                        latency_us: 300,
                        request: CapturedHeader::whole(b""),
                        signatures: CapturedHeader::whole(b""),
                    };
                    state.ledger.append(draft, None).await.expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("a writer");
    }
    let filled = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut publisher = Publisher::open(&config.published_checkpoints).expect("publisher");
    let size = integrate_and_publish(&state.ledger, &mut publisher)
        .await
        .expect("integrate");
    println!(
        "appended {entries} entries in {filled:.1} s ({:.0}/s); integrated and published a checkpoint of {size} in {:.1} s",
        entries as f64 / filled,
        t.elapsed().as_secs_f64()
    );
    state.ledger.close().await;
}
