//! RFC 6962 (RFC 9162 §2.1) Merkle tree hashing of the audit log: leaf and node
//! hashes, a tree head built from the leaves in O(log n) memory, and inclusion and
//! consistency proofs (generation from any source of subtree hashes, and
//! verification).
//!
//! A leaf is one audit entry's exact canonical bytes (`countersign/v1/audit-entry`),
//! so a verifier hashes what it received and never re-encodes.
//!
//! ```
//! use countersign_core::merkle::{TreeBuilder, leaf_hash, verify_inclusion, MemoryTree};
//!
//! let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
//! let mut tree = TreeBuilder::new();
//! for e in &entries {
//!     tree.push(leaf_hash(e));
//! }
//! let all = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(e)).collect());
//! let proof = all.inclusion_proof(3, 5).unwrap();
//! verify_inclusion(3, 5, &leaf_hash(&entries[3]), &proof, &tree.root()).unwrap();
//! ```

use crate::error::{Error, ErrorCode, Result};
use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Prefix of a leaf hash (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;
/// The longest proof any tree of up to 2^64 - 1 leaves needs (consistency proofs
/// carry at most one hash per level, plus one).
pub const MAX_PROOF_HASHES: usize = 65;

/// `SHA-256(0x00 ‖ entry)`: the hash of one leaf, over the entry's exact bytes.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

fn broken(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::AuditChainBroken, message)
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a Merkle tree: the roots of the perfect subtrees that make up
/// the first `size` leaves, largest (leftmost) first — one per set bit of `size`,
/// so at most 64 hashes whatever the size. Enough to append leaves and compute the
/// root; this is how a verifier rebuilds a tree of any size in constant memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeBuilder {
    size: u64,
    edge: Vec<Hash>,
}

impl TreeBuilder {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes from a stored right edge (as returned by [`TreeBuilder::edge`]).
    /// Fails with `invalid_field` unless there is one hash per set bit of `size`.
    pub fn from_edge(size: u64, edge: Vec<Hash>) -> Result<Self> {
        if edge.len() != size.count_ones() as usize {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!(
                    "a tree of {size} leaves has a right edge of {} hashes, not {}",
                    size.count_ones(),
                    edge.len()
                ),
            ));
        }
        Ok(Self { size, edge })
    }

    /// Number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Appends one leaf hash. Fails with `too_large` only at 2^64 - 1 leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<()> {
        self.push_with(leaf, |_, _, _| {})
    }

    /// Appends one leaf hash and reports every node this completes, leaf first, as
    /// `(level, index, hash)`: the leaf itself at level 0, then each perfect subtree
    /// the leaf closes (level `l` covers leaves `index·2^l .. (index+1)·2^l`). A log
    /// stores the nodes at levels 0, 8, 16, … as its tiles.
    pub fn push_with(
        &mut self,
        leaf: Hash,
        mut completed: impl FnMut(u32, u64, &Hash),
    ) -> Result<()> {
        let index = self.size;
        let next = index.checked_add(1).ok_or_else(|| {
            Error::new(
                ErrorCode::TooLarge,
                "the log holds 2^64 - 1 entries already",
            )
        })?;
        completed(0, index, &leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old size is a subtree of the same height that
        // the new leaf's subtree now completes.
        while (index >> level) & 1 == 1 {
            let Some(left) = self.edge.pop() else {
                // The edge holds one hash per set bit (an invariant of this type).
                return Err(Error::new(
                    ErrorCode::Internal,
                    "the tree's right edge is short",
                ));
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(level, index >> level, &hash);
        }
        self.edge.push(hash);
        self.size = next;
        Ok(())
    }

    /// The tree head: the Merkle tree hash of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.edge.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// A source of the hashes of perfect subtrees: `node(level, index)` is the root of
/// leaves `index·2^level .. (index+1)·2^level`. Proof generation asks only for
/// subtrees that lie entirely within the tree it proves.
pub trait HashSource {
    /// The hash of one perfect subtree.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash>;
}

impl<T: HashSource + ?Sized> HashSource for &mut T {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        (**self).node(level, index)
    }
}

/// `MTH(D[lo:hi])` for a range whose start is aligned as RFC 6962's recursion
/// leaves it (a multiple of the largest power of two not above its length).
fn range_hash(src: &mut impl HashSource, lo: u64, hi: u64) -> Result<Hash> {
    let n = hi - lo;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return src.node(level, lo >> level);
    }
    let k = split_point(n);
    let left = range_hash(src, lo, lo + k)?;
    let right = range_hash(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves of `src`.
pub fn tree_root(src: &mut impl HashSource, size: u64) -> Result<Hash> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// RFC 6962 §2.1.1 `PATH(index, D[0:size])`, leaf side first. Fails with
/// `invalid_field` if `index` ≥ `size`.
pub fn inclusion_proof(src: &mut impl HashSource, index: u64, size: u64) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!("leaf {index} is not in a tree of {size} leaves"),
        ));
    }
    let mut proof = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    // Walk down from the root, collecting siblings; reversed at the end so the proof
    // starts next to the leaf.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 6962 §2.1.2 `PROOF(old_size, D[0:new_size])`. Empty when `old_size` is 0 or
/// equals `new_size`; fails with `invalid_field` if `old_size` > `new_size`.
pub fn consistency_proof(
    src: &mut impl HashSource,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>> {
    if old_size > new_size {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!("a tree of {new_size} leaves cannot extend one of {old_size}"),
        ));
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    // SUBPROOF(m, D[lo:hi], whole), iteratively.
    let (mut m, mut lo, mut hi, mut whole) = (old_size, 0u64, new_size, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(src, lo, lo + k)?);
            m -= k;
            lo += k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is leaf `index` of the tree of `size`
/// leaves whose root is `root`. Any failure is `audit_chain_broken`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    if index >= size {
        return Err(broken(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(broken(
                "the inclusion proof is longer than the tree is deep",
            ));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(broken(
            "the inclusion proof is shorter than the tree is deep",
        ));
    }
    if r != *root {
        return Err(broken(format!(
            "the inclusion proof of leaf {index} does not lead to the root of the tree of {size} leaves"
        )));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `new_size` leaves with root `new_root`
/// extends the tree of `old_size` leaves with root `old_root`. Any failure (a fork,
/// a rewrite, a rollback: `old_size` > `new_size`) is `audit_chain_broken`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    if old_size > new_size {
        return Err(broken(format!(
            "the log shrank from {old_size} to {new_size} entries"
        )));
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(broken(
                "a consistency proof to the same or an empty tree must be empty",
            ));
        }
        if old_size == 0 && *old_root != empty_root() {
            return Err(broken(
                "the root of the empty tree is not SHA-256 of nothing",
            ));
        }
        if old_size == new_size && old_root != new_root {
            return Err(broken(format!(
                "two different trees of {old_size} entries: the log was rewritten (a fork)"
            )));
        }
        return Ok(());
    }
    let mut path = proof.iter();
    let (first, mut fn_, mut sn) = (
        if old_size.is_power_of_two() {
            Some(*old_root)
        } else {
            path.next().copied()
        },
        old_size - 1,
        new_size - 1,
    );
    let Some(first) = first else {
        return Err(broken("the consistency proof is empty"));
    };
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in path {
        if sn == 0 {
            return Err(broken("the consistency proof is too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(broken("the consistency proof is too short"));
    }
    if fr != *old_root || sr != *new_root {
        return Err(broken(format!(
            "the tree of {new_size} entries does not extend the tree of {old_size} entries: \
             the log was rewritten, truncated or forked"
        )));
    }
    Ok(())
}

/// Every node of a tree held in memory; for tests, tools and small trees. (A log
/// reads nodes from its tiles instead.)
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is `node(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Builds every perfect subtree over the leaf hashes.
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last() {
            if below.len() < 2 {
                break;
            }
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .filter_map(|pair| match pair {
                    [l, r] => Some(node_hash(l, r)),
                    _ => None,
                })
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.check(size)?;
        tree_root(&mut &*self, size)
    }

    /// [`inclusion_proof`] over this tree's first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check(size)?;
        inclusion_proof(&mut &*self, index, size)
    }

    /// [`consistency_proof`] between prefixes of this tree.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.check(new_size)?;
        consistency_proof(&mut &*self, old_size, new_size)
    }

    fn check(&self, size: u64) -> Result<()> {
        if size > self.size() {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("the tree has {} leaves, not {size}", self.size()),
            ));
        }
        Ok(())
    }
}

impl HashSource for &MemoryTree {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no node {level}/{index}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// The RFC 6962 definition, recursively, as the reference.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn known_hashes() {
        // SHA-256 of nothing, and the RFC 6962 leaf hash of the empty entry.
        assert_eq!(
            crate::text::hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            crate::text::hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn builder_matches_definition_and_reports_nodes() {
        let all = leaves(70);
        let mut b = TreeBuilder::new();
        let mut nodes = Vec::new();
        for (i, l) in all.iter().enumerate() {
            assert_eq!(b.root(), mth(&all[..i]));
            b.push_with(*l, |lv, ix, h| nodes.push((lv, ix, *h)))
                .unwrap();
            assert_eq!(b.edge().len(), b.size().count_ones() as usize);
        }
        assert_eq!(b.root(), mth(&all));
        let mem = MemoryTree::from_leaves(all.clone());
        assert_eq!(nodes.len(), mem.levels.iter().map(Vec::len).sum::<usize>());
        for (lv, ix, h) in nodes {
            assert_eq!((&mem).node(lv, ix).unwrap(), h);
        }
        let resumed = TreeBuilder::from_edge(b.size(), b.edge().to_vec()).unwrap();
        assert_eq!(resumed, b);
        assert_eq!(
            TreeBuilder::from_edge(70, vec![[0; 32]])
                .unwrap_err()
                .code(),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn edge_cases_are_refused() {
        let mem = MemoryTree::from_leaves(leaves(8));
        assert_eq!(
            mem.inclusion_proof(8, 8).unwrap_err().code(),
            ErrorCode::InvalidField
        );
        assert_eq!(
            mem.consistency_proof(5, 4).unwrap_err().code(),
            ErrorCode::InvalidField
        );
        assert_eq!(mem.root(9).unwrap_err().code(), ErrorCode::InvalidField);
        let r = mem.root(8).unwrap();
        let e = verify_inclusion(0, 0, &r, &[], &r).unwrap_err();
        assert_eq!(e.code(), ErrorCode::AuditChainBroken);
        // Rollback: a smaller tree after a larger one.
        let r4 = mem.root(4).unwrap();
        assert!(verify_consistency(8, 4, &r, &r4, &[]).is_err());
        // Same size, different root: a fork.
        assert!(verify_consistency(8, 8, &r, &r4, &[]).is_err());
        verify_consistency(8, 8, &r, &r, &[]).unwrap();
        verify_consistency(0, 8, &empty_root(), &r, &[]).unwrap();
        assert!(verify_consistency(0, 8, &r4, &r, &[]).is_err());
        // A proof with a stray hash.
        let mut p = mem.consistency_proof(4, 8).unwrap();
        verify_consistency(4, 8, &r4, &r, &p).unwrap();
        p.push([7; 32]);
        assert!(verify_consistency(4, 8, &r4, &r, &p).is_err());
        assert!(verify_consistency(4, 8, &r4, &r, &[]).is_err());
    }

    proptest! {
        #[test]
        fn inclusion_proofs_verify_and_tampering_fails(n in 1u64..300, seed in any::<u64>(), flip in any::<usize>()) {
            let all = leaves(n);
            let mem = MemoryTree::from_leaves(all.clone());
            let i = seed % n;
            let root = mem.root(n).unwrap();
            prop_assert_eq!(root, mth(&all));
            let proof = mem.inclusion_proof(i, n).unwrap();
            verify_inclusion(i, n, &all[i as usize], &proof, &root).unwrap();
            // Another leaf, another index, another size, a changed or truncated proof.
            let other = leaf_hash(b"forged");
            prop_assert!(verify_inclusion(i, n, &other, &proof, &root).is_err());
            if n > 1 {
                prop_assert!(verify_inclusion((i + 1) % n, n, &all[i as usize], &proof, &root).is_err());
            }
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let j = flip % bad.len();
                bad[j][0] ^= 1;
                prop_assert!(verify_inclusion(i, n, &all[i as usize], &bad, &root).is_err());
                prop_assert!(verify_inclusion(i, n, &all[i as usize], &proof[1..], &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_tampering_fails(n in 1u64..300, seed in any::<u64>(), flip in any::<usize>()) {
            let all = leaves(n);
            let mem = MemoryTree::from_leaves(all.clone());
            let m = seed % (n + 1);
            let (old, new) = (mem.root(m).unwrap(), mem.root(n).unwrap());
            let proof = mem.consistency_proof(m, n).unwrap();
            verify_consistency(m, n, &old, &new, &proof).unwrap();
            prop_assert!(proof.len() <= MAX_PROOF_HASHES);
            if m > 0 && m < n {
                // Rewriting a leaf the old tree covers cannot be proven consistent
                // with the old root (appending other leaves after it can).
                let j = flip % n as usize;
                let mut forged = all.clone();
                forged[j][0] ^= 1;
                let fm = MemoryTree::from_leaves(forged);
                let fnew = fm.root(n).unwrap();
                if (j as u64) < m {
                    prop_assert!(verify_consistency(m, n, &old, &fnew, &fm.consistency_proof(m, n).unwrap()).is_err());
                }
                prop_assert!(verify_consistency(m, n, &old, &fnew, &proof).is_err());
                let mut bad = proof.clone();
                let j = flip % bad.len();
                bad[j][31] ^= 0x80;
                prop_assert!(verify_consistency(m, n, &old, &new, &bad).is_err());
                prop_assert!(verify_consistency(m, n, &new, &old, &proof).is_err());
            }
        }
    }
}
