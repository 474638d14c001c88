//! Verifying a whole log from its entry bundles and level-0 hash tiles
//! (`log_verify::TileLogVerifier`, what `countersign audit verify --url` runs on each
//! fetched bundle), side by side with the export verifier over the same entries
//! (`log_verify::LogVerifier`, `countersign audit verify EXPORT`) as the baseline,
//! without the network: time per entry, and the process's peak RSS.
//!
//! `cargo bench -p countersign-core --bench tile_verify`
//! (`COUNTERSIGN_BENCH_TILE_ENTRIES=N`, default 1,000,000).
//!
//! The entries (~1.1 KB each, like an entry that captured a signed request) are
//! generated again for every pass, bundle by bundle, so that memory holds one bundle;
//! only the verifier calls are timed. Nothing is asserted: numbers go to
//! BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // a benchmark binary over its own generated data

use countersign_core::audit::{AuditEntry, CapturedHeader, GENESIS};
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::log_verify::{LogVerifier, TileLogVerifier};
use countersign_core::logged::LogTrust;
use countersign_core::merkle::{TreeBuilder, leaf_hash};
use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use countersign_core::tiles::{TILE_WIDTH, TileKind, TilePath, encode_bundle};
use countersign_core::{
    AuthorizedKey, Decision, GatekeeperId, KeyId, Keyring, Policy, PublicKey, Role,
};
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

/// Calls `f` with each bundle of the log of `n` entries: its entries' bytes, the
/// bundle and its level-0 tile.
fn bundles(n: u64, mut f: impl FnMut(&[Vec<u8>], &[u8], &[u8])) {
    let request = vec![b'r'; 800];
    let signatures = vec![b's'; 200];
    let mut prev = GENESIS;
    let mut seq = 0;
    while seq < n {
        let width = (n - seq).min(TILE_WIDTH);
        let entries: Vec<Vec<u8>> = (seq..seq + width)
            .map(|s| {
                let bytes = AuditEntry {
                    seq: s,
                    prev_sha256: prev,
                    time_ms: 1_800_000_000_000 + s,
                    gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
                    request_id: Some(format!("r{s}").into_bytes()),
                    client_ip: "127.0.0.2".parse().unwrap(),
                    operation: b"GET".to_vec(),
                    bucket: b"reports".to_vec(),
                    key: format!("org-1/{s}").into_bytes(),
                    subject: b"user-1".to_vec(),
                    decision: Decision::Allow,
                    bytes: s,
                    latency_us: 5,
                    request: CapturedHeader::whole(&request),
                    signatures: CapturedHeader::whole(&signatures),
                }
                .encode();
                prev = Sha256::digest(&bytes).into();
                bytes
            })
            .collect();
        let bundle = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
        let tile: Vec<u8> = entries.iter().flat_map(|e| leaf_hash(e)).collect();
        f(&entries, &bundle, &tile);
        seq += width;
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let n: u64 = std::env::var("COUNTERSIGN_BENCH_TILE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let key = SigningKey::from_bytes(&[3; 32]);
    let public = PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap();
    let policy = Policy::new(
        Keyring::new([AuthorizedKey {
            key_id: KeyId::parse("gk-1").unwrap(),
            role: Role::gatekeeper(),
            public_key: public,
            not_before: None,
            not_after: None,
        }])
        .unwrap(),
        [(Role::gatekeeper(), 1)],
    )
    .unwrap();
    let signer = NoteSigner::ed25519("gk.acme/audit", key).unwrap();
    let trust = LogTrust {
        log_key: NoteVerifier::parse(&signer.verifier_key()).unwrap(),
        witnesses: Vec::new(),
        quorum: 0,
    };
    let mut tree = TreeBuilder::new();
    let start = Instant::now();
    bundles(n, |entries, _, _| {
        for e in entries {
            tree.push(leaf_hash(e)).unwrap();
        }
    });
    let generate = start.elapsed();
    let note = SignedNote::sign(
        Checkpoint::new("gk.acme/audit", n, tree.root(), Vec::new())
            .unwrap()
            .body(),
        &[&signer],
    )
    .unwrap()
    .encode()
    .into_bytes();
    println!(
        "{n} entries generated and hashed in {:.2} s (not counted below); peak RSS {:.1} MiB",
        generate.as_secs_f64(),
        peak_rss_mib()
    );

    // Baseline first, then the tile verifier: each pass times only its verifier.
    let mut export = Duration::ZERO;
    let mut v = LogVerifier::new(&policy);
    let t = Instant::now();
    v.tree_checkpoint(&note, &trust).unwrap();
    export += t.elapsed();
    bundles(n, |entries, _, _| {
        let t = Instant::now();
        for e in entries {
            v.entry(e).unwrap();
        }
        export += t.elapsed();
    });
    let t = Instant::now();
    assert_eq!(v.finish().unwrap().tree_size, Some(n));
    export += t.elapsed();
    let export_rss = peak_rss_mib();

    let mut tiles = Duration::ZERO;
    let t = Instant::now();
    let mut v = TileLogVerifier::new(&policy, &note, &trust).unwrap();
    tiles += t.elapsed();
    bundles(n, |_, bundle, tile| {
        let t = Instant::now();
        let path: TilePath = v.next_bundle().unwrap();
        assert_eq!(path.kind(), TileKind::Entries);
        v.bundle(&path, bundle, tile).unwrap();
        tiles += t.elapsed();
    });
    let t = Instant::now();
    assert_eq!(v.finish().unwrap().entries, n);
    tiles += t.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "export verifier (baseline): {:.2} s, {:.2} µs/entry; peak RSS {export_rss:.1} MiB",
        export.as_secs_f64(),
        per(export)
    );
    println!(
        "tile verifier (bundles + level-0 tiles): {:.2} s, {:.2} µs/entry; peak RSS {:.1} MiB; ratio to baseline {:.2}",
        tiles.as_secs_f64(),
        per(tiles),
        peak_rss_mib(),
        tiles.as_secs_f64() / export.as_secs_f64()
    );
}
