//! Audit append throughput: 16 tasks appending entries (each with a nonce) to the
//! ledger for `COUNTERSIGN_BENCH_SECS` seconds (default 5), while an integrator task
//! extends the Merkle tree every second as the server's does (so its share of the
//! writes counts too), on SQLite and, when `COUNTERSIGN_TEST_PG_URL` is set (see
//! `scripts/services.sh`), on PostgreSQL.
//!
//! ```text
//! scripts/services.sh cargo bench -p countersign-gatekeeper --bench audit_append
//! ```
//!
//! `COUNTERSIGN_BENCH_CLIENTS` sets the number of appending tasks (default 16),
//! `COUNTERSIGN_BENCH_BACKENDS` the backends (`sqlite,postgres`), and
//! `COUNTERSIGN_BENCH_DIR` a directory where the SQLite database is kept after the run
//! (for counting its WAL frames per table, `scripts/wal-frames.py`). Run it under
//! `strace -c -f -e trace=pwrite64,fcntl,fdatasync` to count the system calls per
//! append.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use countersign_core::audit::CapturedHeader;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::{Decision, GatekeeperId, KeyId};
use countersign_gatekeeper::ledger::{AuditDraft, CheckpointSigner, Ledger, NonceUse};
use countersign_gatekeeper::transparency::INTEGRATE_BATCH;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn run(label: &str, url: &str, secs: u64, clients: u64) {
    let ledger = Ledger::connect(
        url,
        CheckpointSigner {
            gatekeeper: GatekeeperId::parse("gk.bench").unwrap(),
            key: SigningKey::from_bytes(&[9; 32]),
            key_id: KeyId::parse("gk").unwrap(),
        },
        1000,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let request = CapturedHeader::whole(&random_bytes(400));
    let signatures = CapturedHeader::whole(&random_bytes(180));
    let t = Instant::now();
    let integrator = {
        let (ledger, stop) = (ledger.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                while ledger.integrate(INTEGRATE_BATCH).await.unwrap().is_some() {}
            }
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (ledger, stop, done, failed) = (
                ledger.clone(),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failed),
            );
            let (request, signatures) = (request.clone(), signatures.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let draft = AuditDraft {
                        time_ms: now() * 1000,
                        request_id: b"bench".to_vec(),
                        client_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 8) as u8)),
                        operation: b"GET".to_vec(),
                        bucket: b"reports".to_vec(),
                        key: format!("org-{i}/visit-{}.pdf", n % 100).into_bytes(),
                        subject: format!("user-{}", n % 50).into_bytes(),
                        decision: Decision::Allow,
                        bytes: 1024,
                        latency_us: 100,
                        request: request.clone(),
                        signatures: signatures.clone(),
                    };
                    let nonce = NonceUse {
                        nonce: random_bytes(16).try_into().unwrap(),
                        until: now() + 900,
                    };
                    match ledger.append(draft, Some(nonce)).await {
                        Ok(e) if e.decision == Decision::Allow => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let took = t.elapsed().as_secs_f64();
    integrator.await.unwrap();
    while ledger.integrate(INTEGRATE_BATCH).await.unwrap().is_some() {}
    let n = done.load(Ordering::Relaxed);
    println!(
        "{label:<11} {clients:>7} {:>10.0} {:>8} {:>8}",
        n as f64 / took,
        n,
        failed.load(Ordering::Relaxed)
    );
    ledger.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let secs = env_num("COUNTERSIGN_BENCH_SECS", 5);
    let clients = env_num("COUNTERSIGN_BENCH_CLIENTS", 16);
    let backends =
        std::env::var("COUNTERSIGN_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    rt.block_on(async {
        println!("audit append throughput, {secs} s, every entry with its nonce");
        println!(
            "{:<11} {:>7} {:>10} {:>8} {:>8}",
            "backend", "clients", "entries/s", "entries", "failed"
        );
        if backends.contains("sqlite") {
            let tmp = tempfile::tempdir().unwrap();
            let dir = std::env::var("COUNTERSIGN_BENCH_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| tmp.path().to_owned());
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("append.sqlite");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            run(
                "SQLite",
                &format!("sqlite://{}?mode=rwc", path.display()),
                secs,
                clients,
            )
            .await;
        }
        if backends.contains("postgres") {
            match std::env::var("COUNTERSIGN_TEST_PG_URL") {
                Ok(url) => {
                    let url = common::create_pg_database(&url).await;
                    run("PostgreSQL", &url, secs, clients).await;
                }
                Err(_) => println!("PostgreSQL  (skipped: COUNTERSIGN_TEST_PG_URL is not set)"),
            }
        }
    });
}
