//! The AEAD candidates of encryption at rest on this CPU, single core, side by side:
//! AES-256-GCM and ChaCha20-Poly1305 (AWS-LC) sealing and opening
//! bare 64 KiB segments (over a 64 MiB object, and over one 1 MiB piece reused, which
//! stays in the cache as a GET's freshly read piece does), and the whole `at_rest`
//! format (AES-256-GCM) sealing and opening a 64 MiB object in 1 MiB chunks, copies
//! included, and opening it in place in 1 MiB batches (as the gatekeeper's GET does). Next to them, SHA-256 of the same bytes
//! with `sha2` (the manifest's hash) and with AWS-LC (what the S3 client signs a
//! payload with).
//!
//! `cargo bench -p countersign-core --features at-rest --bench at_rest`
//!
//! Rounds alternate between the candidates so that machine noise hits all alike; the
//! medians are printed in GB/s (10^9 bytes per second). Nothing is asserted: numbers
//! go to BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // a benchmark binary over its own fixed data

use aws_lc_rs::aead::{
    AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey,
};
use countersign_core::at_rest::{
    Aead, Binding, DataKey, Header, Opener, SEGMENT_BYTES, Sealer, TAG_BYTES,
};
use countersign_core::{BodyDigest, Bucket, ObjectKey};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 9;
const OBJECT_BYTES: usize = 64 << 20;

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One AES-256-GCM (or ChaCha20-Poly1305) implementation, sealing and opening one
/// segment in place (the tag appended).
trait SegmentAead {
    fn seal(&self, index: usize, segment: &mut Vec<u8>);
    fn open(&self, index: usize, segment: &mut [u8]);
}

fn nonce_bytes(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..8].copy_from_slice(&(i as u32).to_be_bytes());
    n
}

impl SegmentAead for LessSafeKey {
    fn seal(&self, i: usize, b: &mut Vec<u8>) {
        let n = Nonce::assume_unique_for_key(nonce_bytes(i));
        self.seal_in_place_append_tag(n, Aad::from([1u8; 56]), b)
            .unwrap();
    }
    fn open(&self, i: usize, b: &mut [u8]) {
        let n = Nonce::assume_unique_for_key(nonce_bytes(i));
        black_box(self.open_in_place(n, Aad::from([1u8; 56]), b).unwrap());
    }
}

fn aws_lc(alg: &'static Algorithm) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(alg, &[7; 32]).unwrap())
}

/// Seals then opens `OBJECT_BYTES` as bare 64 KiB segments, over a working set of
/// `working_set` bytes (the whole object: mostly memory; 1 MiB, reused: in the cache,
/// as a GET's piece is right after it was read); returns (seal, open) GB/s.
fn bare(key: &impl SegmentAead, working_set: usize) -> (f64, f64) {
    let segments = working_set / SEGMENT_BYTES;
    let mut bufs: Vec<Vec<u8>> = (0..segments)
        .map(|i| {
            let mut v = vec![i as u8; SEGMENT_BYTES];
            v.reserve(TAG_BYTES);
            v
        })
        .collect();
    let (mut seal, mut open) = (0.0, 0.0);
    for _ in 0..OBJECT_BYTES / working_set {
        let t = Instant::now();
        for (i, b) in bufs.iter_mut().enumerate() {
            key.seal(i, b);
        }
        seal += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for (i, b) in bufs.iter_mut().enumerate() {
            key.open(i, b);
        }
        open += t.elapsed().as_secs_f64();
        bufs.iter_mut().for_each(|b| b.truncate(SEGMENT_BYTES));
    }
    (gbps(OBJECT_BYTES, seal), gbps(OBJECT_BYTES, open))
}

/// The whole format: streams `plain` through `Sealer` and `Opener` in 1 MiB chunks
/// (or, `in_place`, opens 16-segment batches where they lie); returns (seal, open)
/// GB/s of plaintext. `stored` and `out` are reused across rounds, so page faults of
/// fresh buffers are not counted.
fn format(
    plain: &[u8],
    binding: &Binding,
    stored: &mut Vec<u8>,
    out: &mut Vec<u8>,
    in_place: bool,
) -> (f64, f64) {
    let key = DataKey::from_bytes([7; 32]);
    let header = Header {
        aead: Aead::Aes256Gcm,
        salt: [5; 16],
    };
    stored.clear();
    let t = Instant::now();
    let mut sealer = Sealer::new(&key, header, binding).unwrap();
    for chunk in plain.chunks(1 << 20) {
        sealer.update(chunk, stored).unwrap();
    }
    sealer.finish(stored).unwrap();
    let seal = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut opener = Opener::new(&key, header, binding, 0..plain.len() as u64).unwrap();
    if in_place {
        // Opening in place overwrites the batch: work on a copy made beforehand.
        out.clear();
        out.extend_from_slice(stored);
        let mut rest = &mut out[..];
        let mut released = Vec::new();
        let t = Instant::now();
        while !rest.is_empty() {
            let n = opener.next_batch_len(16).min(rest.len());
            let (batch, tail) = rest.split_at_mut(n);
            released.clear();
            opener.open_in_place(batch, &mut released).unwrap();
            for r in &released {
                black_box(&batch[r.clone()]);
            }
            rest = tail;
        }
        opener.finish().unwrap();
        let open = t.elapsed().as_secs_f64();
        return (gbps(plain.len(), seal), gbps(plain.len(), open));
    }
    for chunk in stored.chunks(1 << 20) {
        out.clear();
        opener.update(chunk, out).unwrap();
        black_box(&out);
    }
    opener.finish().unwrap();
    let open = t.elapsed().as_secs_f64();
    (gbps(plain.len(), seal), gbps(plain.len(), open))
}

fn main() {
    let plain: Vec<u8> = (0..OBJECT_BYTES).map(|i| (i % 251) as u8).collect();
    let binding = Binding::new(
        &Bucket::parse("bench").unwrap(),
        "00112233445566778899aabbccddeeff",
        &ObjectKey::parse("bench/object").unwrap(),
        &BodyDigest::of(&plain),
    );
    let mut stored = vec![0u8; plain.len() + plain.len() / 1000 + 64];
    let mut out = vec![0u8; stored.len()];
    let mut rows: [(&str, Vec<f64>, Vec<f64>); 5] = [
        ("AES-256-GCM, bare 64 KiB segments", vec![], vec![]),
        ("AES-256-GCM, bare, 1 MiB reused (cached)", vec![], vec![]),
        ("ChaCha20-Poly1305, bare 64 KiB segments", vec![], vec![]),
        ("at_rest v1 (AES-256-GCM), 1 MiB chunks", vec![], vec![]),
        ("at_rest v1, opened in place, 1 MiB batches", vec![], vec![]),
    ];
    let mut hashes: [(&str, Vec<f64>); 2] = [
        ("SHA-256, sha2 (manifest)", vec![]),
        ("SHA-256, AWS-LC (S3 payload signing)", vec![]),
    ];
    for _ in 0..ROUNDS {
        for (i, row) in rows.iter_mut().enumerate() {
            let (s, o) = match i {
                0 => bare(&aws_lc(&AES_256_GCM), OBJECT_BYTES),
                1 => bare(&aws_lc(&AES_256_GCM), 1 << 20),
                2 => bare(&aws_lc(&CHACHA20_POLY1305), OBJECT_BYTES),
                3 => format(&plain, &binding, &mut stored, &mut out, false),
                _ => format(&plain, &binding, &mut stored, &mut out, true),
            };
            row.1.push(s);
            row.2.push(o);
        }
        let t = Instant::now();
        black_box(<sha2::Sha256 as sha2::Digest>::digest(&plain));
        hashes[0]
            .1
            .push(gbps(plain.len(), t.elapsed().as_secs_f64()));
        let t = Instant::now();
        black_box(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &plain,
        ));
        hashes[1]
            .1
            .push(gbps(plain.len(), t.elapsed().as_secs_f64()));
    }
    println!(
        "single core, {} MiB per run, median of {ROUNDS} rounds",
        OBJECT_BYTES >> 20
    );
    println!("{:<44} {:>10} {:>10}", "", "seal GB/s", "open GB/s");
    for (name, s, o) in rows {
        println!("{name:<44} {:>10.2} {:>10.2}", median(s), median(o));
    }
    println!("{:<44} {:>10}", "", "hash GB/s");
    for (name, h) in hashes {
        println!("{name:<44} {:>10.2}", median(h));
    }
}
