//! `audit verify` of the database against the log's size: wall time and peak RSS of
//! the `countersign-gatekeeper` process, for each size in
//! `COUNTERSIGN_BENCH_AUDIT_SIZES` (default `50000,200000` entries), side by side with
//! the baseline that holds the whole log in memory (`audit export` then
//! `audit verify --file`, the form `audit verify` had before it streamed).
//!
//! ```text
//! cargo bench -p countersign-gatekeeper --bench audit_verify
//! ```
//!
//! The log is filled through the ledger (one transaction per entry, as requests
//! do), integrated into the Merkle tree and published, then verified by the binary
//! under `/usr/bin/time -f "%e %M"`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::audit::CapturedHeader;
use countersign_core::{Decision, ErrorCode};
use countersign_gatekeeper::config::Config;
use countersign_gatekeeper::ledger::AuditDraft;
use countersign_gatekeeper::server::build_state;
use countersign_gatekeeper::transparency::{Publisher, integrate_and_publish};
use std::process::Command;
use std::time::Instant;

/// Runs the gatekeeper binary under `/usr/bin/time`; returns (seconds, peak RSS MiB).
fn timed(args: &[&str]) -> (f64, f64) {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("TIME %e %M")
        .arg(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .unwrap();
    let mut parts = line.split_whitespace().skip(1);
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    let kib: f64 = parts.next().unwrap().parse().unwrap();
    (secs, kib / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<u64> = std::env::var("COUNTERSIGN_BENCH_AUDIT_SIZES")
        .unwrap_or_else(|_| "50000,200000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!("audit verify of a SQLite log: wall time and peak RSS of the process");
    println!(
        "{:>9} | {:>22} | {:>30} | {:>12}",
        "entries", "streaming verify", "export + verify --file (base)", "ratio t / RSS"
    );
    for n in sizes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let config = Config::embedded(dir, Vec::new()).unwrap();
        let (state, _) = build_state(config.clone()).await.unwrap();
        let fill = Instant::now();
        for i in 0..n {
            let decision = if i % 3 == 0 {
                Decision::Deny(ErrorCode::AccessDenied)
            } else {
                Decision::Allow
            };
            let request = vec![b'r'; 700];
            let signatures = vec![b's'; 200];
            state
                .ledger
                .append(
                    AuditDraft {
                        time_ms: 1_800_000_000_000 + i,
                        request_id: format!("{i:032x}").into_bytes(),
                        client_ip: "10.1.2.3".parse().unwrap(),
                        operation: b"GET".to_vec(),
                        bucket: b"local".to_vec(),
                        key: format!("org-{}/patient-{i}/report.pdf", i % 97).into_bytes(),
                        subject: format!("user-{}", i % 300).into_bytes(),
                        decision,
                        bytes: 1024,
                        latency_us: 900,
                        request: CapturedHeader::whole(&request),
                        signatures: CapturedHeader::whole(&signatures),
                    },
                    None,
                )
                .await
                .unwrap();
        }
        let fill = fill.elapsed();
        let integrate = Instant::now();
        let mut publisher = Publisher::open(&config.published_checkpoints).unwrap();
        assert_eq!(
            integrate_and_publish(&state.ledger, &mut publisher)
                .await
                .unwrap(),
            n
        );
        let integrate = integrate.elapsed();
        state.ledger.close().await;
        drop(state);
        let d = dir.to_str().unwrap();
        let (t_new, m_new) = timed(&["audit", "verify", "--data-dir", d]);
        let export = dir.join("export.jsonl");
        let (t_exp, m_exp) = timed(&[
            "audit",
            "export",
            "--data-dir",
            d,
            "--out",
            export.to_str().unwrap(),
        ]);
        let (t_file, m_file) = timed(&[
            "audit",
            "verify",
            "--data-dir",
            d,
            "--file",
            export.to_str().unwrap(),
        ]);
        let (t_base, m_base) = (t_exp + t_file, m_exp.max(m_file));
        println!(
            "{n:>9} | {t_new:>7.2} s {m_new:>8.1} MiB | {t_base:>13.2} s {m_base:>10.1} MiB | {:>5.2} / {:>5.2}",
            t_new / t_base,
            m_new / m_base
        );
        println!(
            "          (fill {:.1} s = {:.0} appends/s; integrate {:.2} s = {:.0} entries/s)",
            fill.as_secs_f64(),
            n as f64 / fill.as_secs_f64(),
            integrate.as_secs_f64(),
            n as f64 / integrate.as_secs_f64()
        );
    }
}
