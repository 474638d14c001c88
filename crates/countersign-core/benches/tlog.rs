//! What a client pays to check that its request was logged, natively: an inclusion
//! proof in a tree of 1,048,576 + 1,000 entries, a consistency proof from half that
//! tree, opening the signed checkpoint (parse + one strict Ed25519 verification), and
//! the whole client-side check of a receipt (`countersign_core::logged`: open the
//! checkpoint, compute the inclusion proof from the hash tiles, verify it; the tiles
//! already fetched), side by side with one bare `verify_strict` over the same
//! checkpoint text (the least any signed tree head costs).
//!
//! `cargo bench -p countersign-core --bench tlog`
//!
//! Rounds alternate between the four so that machine noise hits all alike; medians
//! and ratios to the bare verification are printed. Nothing is asserted: numbers go to
//! BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // a benchmark binary over its own fixed data

use countersign_core::PublicKey;
use countersign_core::ed25519_dalek::{Signer as _, SigningKey};
use countersign_core::logged::{
    LogTrust, Step, inclusion_from_tiles, open_checkpoint_for, verify_logged,
};
use countersign_core::merkle::HashSource as _;
use countersign_core::merkle::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use countersign_core::tiles::{TILE_WIDTH, TileKind};
use countersign_core::{Decision, GatekeeperId, Receipt};
use std::hint::black_box;
use std::time::Instant;

const SIZE: u64 = (1 << 20) + 1000;
const ITERS: u32 = 2_000;
const ROUNDS: usize = 15;

/// A named check, and its time per call in each round (µs).
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, Vec<f64>);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let leaves = (0..SIZE).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree = MemoryTree::from_leaves(leaves);
    let root = tree.root(SIZE).unwrap();
    let index: u64 = 777_777;
    let leaf = leaf_hash(&index.to_be_bytes());
    let inclusion = tree.inclusion_proof(index, SIZE).unwrap();
    let old = SIZE / 2 + 3;
    let old_root = tree.root(old).unwrap();
    let consistency = tree.consistency_proof(old, SIZE).unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let signer = NoteSigner::ed25519("gk.acme/audit", key.clone()).unwrap();
    let body = Checkpoint::new("gk.acme/audit", SIZE, root, Vec::new())
        .unwrap()
        .body();
    let note = SignedNote::sign(body.clone(), &[&signer]).unwrap().encode();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    let public = PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap();
    let bare_sig = key.sign(body.as_bytes()).to_bytes();
    // A receipt for entry `index`, and the tiles its proof needs, as a server serves them.
    let receipt = Receipt {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        request_sha256: [1; 32],
        decision: Decision::Allow,
        decided_at: 1_800_000_000,
        audit_seq: index,
        leaf_sha256: Some(leaf),
    };
    let trust = LogTrust {
        log_key: verifier.clone(),
        witnesses: Vec::new(),
        quorum: 0,
    };
    let mut tiles = Vec::new();
    while let Step::Need(path) = inclusion_from_tiles(index, SIZE, &tiles).unwrap() {
        let TileKind::Hashes { level } = path.kind() else {
            unreachable!("inclusion proofs need hash tiles only")
        };
        let mut src = &tree;
        let body: Vec<u8> = (0..u64::from(path.width()))
            .flat_map(|j| {
                src.node(u32::from(level) * 8, path.index() * TILE_WIDTH + j)
                    .unwrap()
            })
            .collect();
        tiles.push((path, body));
    }
    let prove = || {
        let (cp, _, cosigners) = open_checkpoint_for(&receipt, note.as_bytes(), &trust).unwrap();
        let Step::Proof(proof) = inclusion_from_tiles(index, cp.size(), &tiles).unwrap() else {
            unreachable!("every tile is there")
        };
        black_box(verify_logged(&receipt, cp, cosigners, &proof).unwrap());
    };

    let mut cases: Vec<Case> = vec![
        (
            "bare verify_strict of the checkpoint text",
            Box::new(|| {
                public
                    .verify_strict(black_box(body.as_bytes()), &bare_sig)
                    .unwrap()
            }),
            Vec::new(),
        ),
        (
            "open checkpoint (parse + verify)",
            Box::new(|| {
                black_box(
                    Checkpoint::open(black_box(note.as_bytes()), "gk.acme/audit", &verifier)
                        .unwrap(),
                );
            }),
            Vec::new(),
        ),
        (
            "inclusion proof",
            Box::new(|| {
                verify_inclusion(index, SIZE, black_box(&leaf), &inclusion, &root).unwrap()
            }),
            Vec::new(),
        ),
        (
            "receipt logged: checkpoint + proof from tiles",
            Box::new(prove),
            Vec::new(),
        ),
        (
            "consistency proof (half -> whole)",
            Box::new(|| {
                verify_consistency(old, SIZE, &old_root, &root, black_box(&consistency)).unwrap()
            }),
            Vec::new(),
        ),
    ];
    for _ in 0..ROUNDS {
        for (_, f, times) in cases.iter_mut() {
            let t = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            times.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS));
        }
    }
    let base = median(&mut cases[0].2.clone());
    println!(
        "tree of {SIZE} entries; inclusion proof {} hashes from {} tiles, consistency proof {} hashes",
        inclusion.len(),
        tiles.len(),
        consistency.len()
    );
    for (name, _, times) in cases.iter_mut() {
        let m = median(times);
        println!(
            "{name:<45} {m:>8.2} us  ({:.2}x the bare verification)",
            m / base
        );
    }
}
