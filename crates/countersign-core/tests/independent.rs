//! The transparency-log formats checked against an independent implementation: the
//! `tlog_tiles` and `signed_note` crates (a port of Go's `golang.org/x/mod/sumdb/tlog`
//! and `note` packages). Each side verifies what the other produced.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use countersign_core::merkle::{
    MemoryTree, TreeBuilder, leaf_hash, verify_consistency, verify_inclusion,
};
use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote, key_id};
use countersign_core::tiles::{TileKind, TilePath, tiles_of_tree};
use ed25519_dalek::SigningKey;
use std::cell::RefCell;
use tlog_tiles::{Hash as TheirHash, HashReader};

/// Their hash storage: every stored hash, in their linear order.
struct Stored(RefCell<Vec<TheirHash>>);

impl HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TheirHash>, tlog_tiles::Error> {
        let v = self.0.borrow();
        Ok(indexes.iter().map(|&i| v[i as usize]).collect())
    }
}

fn entry(i: u64) -> Vec<u8> {
    format!("countersign entry {i}\n").into_bytes()
}

#[test]
fn merkle_tree_proofs_and_tiles_agree_with_tlog_tiles() {
    const N: u64 = 1100;
    let theirs = Stored(RefCell::new(Vec::new()));
    let mut ours = TreeBuilder::new();
    let mut leaves = Vec::new();
    for i in 0..N {
        let e = entry(i);
        let add = tlog_tiles::stored_hashes(i, &e, &theirs).unwrap();
        theirs.0.borrow_mut().extend(add);
        ours.push(leaf_hash(&e)).unwrap();
        leaves.push(leaf_hash(&e));
        assert_eq!(tlog_tiles::record_hash(&e).0, leaf_hash(&e));
        assert_eq!(
            tlog_tiles::tree_hash(i + 1, &theirs).unwrap().0,
            ours.root(),
            "size {}",
            i + 1
        );
    }
    let mem = MemoryTree::from_leaves(leaves.clone());
    for (t, n) in [
        (1u64, 0u64),
        (7, 3),
        (256, 255),
        (257, 256),
        (1000, 999),
        (1100, 517),
        (1100, 0),
    ] {
        let th = tlog_tiles::tree_hash(t, &theirs).unwrap();
        // Inclusion: each side checks the other's proof.
        let their_proof = tlog_tiles::prove_record(t, n, &theirs).unwrap();
        let our_proof = mem.inclusion_proof(n, t).unwrap();
        let ours_as_theirs: Vec<TheirHash> = our_proof.iter().map(|h| TheirHash(*h)).collect();
        tlog_tiles::check_record(&ours_as_theirs, t, th, n, TheirHash(leaves[n as usize])).unwrap();
        let theirs_as_ours: Vec<[u8; 32]> = their_proof.iter().map(|h| h.0).collect();
        verify_inclusion(n, t, &leaves[n as usize], &theirs_as_ours, &th.0).unwrap();
        // Consistency from size n (> 0) to t.
        if n > 0 {
            let nh = tlog_tiles::tree_hash(n, &theirs).unwrap();
            let their_proof = tlog_tiles::prove_tree(t, n, &theirs).unwrap();
            let our_proof = mem.consistency_proof(n, t).unwrap();
            let ours_as_theirs: Vec<TheirHash> = our_proof.iter().map(|h| TheirHash(*h)).collect();
            tlog_tiles::check_tree(&ours_as_theirs, t, th, n, nh).unwrap();
            let theirs_as_ours: Vec<[u8; 32]> = their_proof.iter().map(|h| h.0).collect();
            verify_consistency(n, t, &nh.0, &th.0, &theirs_as_ours).unwrap();
        }
    }
    // Tiles: the same paths (theirs carry the Go checksum database's height element,
    // `tile/8/…`, which C2SP dropped) and the same bytes.
    let tiles: Vec<TilePath> = tiles_of_tree(N).collect();
    assert!(tiles.iter().any(|t| t.is_partial()));
    for t in tiles {
        let TileKind::Hashes { level } = t.kind() else {
            unreachable!()
        };
        let their = tlog_tiles::Tile::new(8, level, t.index(), u32::from(t.width()), false);
        assert_eq!(their.path().replacen("tile/8/", "tile/", 1), t.to_string());
        let our_bytes: Vec<u8> = (0..u64::from(t.width()))
            .flat_map(|i| {
                let mut src = &mem;
                countersign_core::merkle::HashSource::node(
                    &mut src,
                    u32::from(level) * 8,
                    t.index() * 256 + i,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(their.read_data(&theirs).unwrap(), our_bytes, "{t}");
    }
    let data = TilePath::new(TileKind::Entries, 4, 76).unwrap();
    let their = tlog_tiles::Tile::new(8, 0, 4, 76, true);
    assert_eq!(
        their.path().replacen("tile/8/data/", "tile/entries/", 1),
        data.to_string()
    );
}

#[test]
fn checkpoints_and_notes_agree_with_signed_note() {
    let key = SigningKey::from_bytes(&[42; 32]);
    let name = "gk.example/audit";
    let signer = NoteSigner::ed25519(name, key.clone()).unwrap();
    let cp = Checkpoint::new(name, 1234, [9; 32], vec!["extension".into()]).unwrap();

    // Their checkpoint parser reads our body, and writes the same bytes.
    let theirs = tlog_tiles::Checkpoint::from_bytes(cp.body().as_bytes()).unwrap();
    assert_eq!(
        (theirs.origin(), theirs.size(), theirs.hash().0),
        (name, 1234, [9; 32])
    );
    assert_eq!(theirs.to_bytes(), cp.body().into_bytes());

    // Their verifier, from our verifier key, accepts our note.
    let ours = SignedNote::sign(cp.body(), &[&signer]).unwrap().encode();
    let their_verifier = signed_note::StandardVerifier::new(&signer.verifier_key()).unwrap();
    assert_eq!(
        signed_note::new_ed25519_verifier_key(name, &key.verifying_key()),
        signer.verifier_key()
    );
    let list = signed_note::VerifierList::new(vec![Box::new(their_verifier.clone())]);
    let (verified, _) = signed_note::Note::from_bytes(ours.as_bytes())
        .unwrap()
        .verify(&list)
        .unwrap();
    assert_eq!(verified.len(), 1);
    // ... and rejects a forged size.
    let forged = ours.replacen("1234", "1235", 1);
    assert!(
        signed_note::Note::from_bytes(forged.as_bytes())
            .unwrap()
            .verify(&list)
            .is_err()
    );

    // Our verifier accepts their note and its signature line, byte for byte.
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "witness.example/log");
    let their_signer = signed_note::StandardSigner::new(&skey).unwrap();
    let their_cp = Checkpoint::new("witness.example/log", 7, [3; 32], Vec::new()).unwrap();
    let mut note = signed_note::Note::new(their_cp.body().as_bytes(), &[]).unwrap();
    note.add_sigs(&[&their_signer]).unwrap();
    let their_text = note.to_bytes();
    let v = NoteVerifier::parse(&vkey).unwrap();
    let (parsed, signed) = Checkpoint::open(&their_text, "witness.example/log", &v).unwrap();
    assert_eq!(parsed, their_cp);
    assert_eq!(signed.encode().into_bytes(), their_text);

    // Key ids: the cosignature type byte 0x04, computed their way.
    let pk = key.verifying_key().to_bytes();
    let material = [&[0x04u8][..], &pk].concat();
    assert_eq!(
        signed_note::key_id(name, &material).to_be_bytes(),
        key_id(name, 0x04, &pk)
    );
}
