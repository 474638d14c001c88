//! `tlog-tiles` (c2sp.org/tlog-tiles) with tile height 8: where each hash of the
//! tree is served, the tile paths `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`
//! (the index `N` in 3-digit path elements, all but the last prefixed with `x`), and
//! entry bundles (each entry a big-endian `u16` length then its bytes).
//!
//! A level-`L` tile holds 256 consecutive hashes of tree level `8·L`: the `i`-th hash
//! of tile `N` is `node(8·L, N·256 + i)`. Any other node is the Merkle root of a run
//! of hashes in one tile, so a client computes every proof from tiles
//! ([`TileHashes`]).
//!
//! ```
//! use countersign_core::tiles::{TilePath, TileKind};
//! let p = TilePath::parse("tile/0/x001/x234/067.p/8").unwrap();
//! assert_eq!((p.kind(), p.index(), p.width()), (TileKind::Hashes { level: 0 }, 1_234_067, 8));
//! assert_eq!(p.to_string(), "tile/0/x001/x234/067.p/8");
//! ```

use crate::error::{Error, ErrorCode, Result};
use crate::merkle::{Hash, HashSource, node_hash};
use crate::text::preview;
use std::fmt;

/// Tree levels per tile.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The largest entry an entry bundle can carry.
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;
/// The highest tile level (`8·L` < 64).
pub const MAX_TILE_LEVEL: u8 = 7;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileKind {
    /// Hashes of tree level `8·level`.
    Hashes {
        /// The tile level `L`.
        level: u8,
    },
    /// An entry bundle: the entries of the leaves of the level-0 tile of the same index.
    Entries,
}

/// A tile resource: kind, index and width (1–256; 256 is a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TilePath {
    kind: TileKind,
    index: u64,
    width: u16,
}

fn bad_path(path: &str) -> Error {
    Error::new(
        ErrorCode::Malformed,
        format!(
            "`{}` is not a tile path `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`",
            preview(path)
        ),
    )
}

impl TilePath {
    /// A tile; fails with `invalid_field` for a width outside 1–256, a level above
    /// [`MAX_TILE_LEVEL`], or an index past the end of any tree.
    pub fn new(kind: TileKind, index: u64, width: u16) -> Result<Self> {
        let level = match kind {
            TileKind::Hashes { level } => u32::from(level),
            TileKind::Entries => 0,
        };
        let max_index = u64::MAX.checked_shr(TILE_HEIGHT * (level + 1)).unwrap_or(0);
        if width == 0
            || u64::from(width) > TILE_WIDTH
            || level > u32::from(MAX_TILE_LEVEL)
            || index > max_index
        {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("no tile {kind:?} {index} of width {width}"),
            ));
        }
        Ok(Self { kind, index, width })
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }
    /// The tile's index within its level.
    pub fn index(&self) -> u64 {
        self.index
    }
    /// How many hashes or entries it holds.
    pub fn width(&self) -> u16 {
        self.width
    }
    /// Whether it is partial (fewer than 256).
    pub fn is_partial(&self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// Parses a path strictly: no leading zeros in `L` or `W`, 3-digit elements with
    /// `x` on all but the last, no zero-width or full-width `.p/`. `malformed` else.
    pub fn parse(path: &str) -> Result<Self> {
        let bad = || bad_path(path);
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (first, rest) = rest.split_once('/').ok_or_else(bad)?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            TileKind::Hashes {
                level: small_decimal(first)
                    .and_then(|l| u8::try_from(l).ok())
                    .ok_or_else(bad)?,
            }
        };
        let (n, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let w = small_decimal(w)
                    .and_then(|w| u16::try_from(w).ok())
                    .filter(|&w| u64::from(w) < TILE_WIDTH && w > 0)
                    .ok_or_else(bad)?;
                (n, w)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let mut index = 0u64;
        let mut elements = n.split('/').peekable();
        while let Some(e) = elements.next() {
            let digits = if elements.peek().is_some() {
                e.strip_prefix('x').ok_or_else(bad)?
            } else {
                e
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let v: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(v))
                .ok_or_else(bad)?;
        }
        // One encoding: no leading `x000/` element.
        if n.starts_with("x000/") {
            return Err(bad());
        }
        Self::new(kind, index, width).map_err(|_| bad())
    }
}

fn small_decimal(s: &str) -> Option<u64> {
    if s.is_empty()
        || s.len() > 3
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tile/")?;
        match self.kind {
            TileKind::Hashes { level } => write!(f, "{level}/")?,
            TileKind::Entries => f.write_str("entries/")?,
        }
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let last = groups.len() - 1;
        for (i, g) in groups.iter().rev().enumerate() {
            if i < last {
                write!(f, "x{g:03}/")?;
            } else {
                write!(f, "{g:03}")?;
            }
        }
        if self.is_partial() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

/// The hash tiles a tree of `size` leaves consists of, per level: every full tile
/// and the partial tile at the right edge (if any). Level `L`'s tiles hold
/// `floor(size / 256^L)` hashes in all.
pub fn tiles_of_tree(size: u64) -> impl Iterator<Item = TilePath> {
    (0..=MAX_TILE_LEVEL).flat_map(move |level| {
        let hashes = size >> (TILE_HEIGHT * u32::from(level));
        let full = hashes / TILE_WIDTH;
        let partial = (hashes % TILE_WIDTH) as u16;
        let kind = TileKind::Hashes { level };
        (0..full)
            .filter_map(move |n| TilePath::new(kind, n, TILE_WIDTH as u16).ok())
            .chain(
                (partial > 0)
                    .then(|| TilePath::new(kind, full, partial).ok())
                    .flatten(),
            )
    })
}

/// The hash tile (and the range of its hashes, `start..start+count`) whose hashes
/// combine to `node(level, index)` in a tree of `size` leaves: the tile of level
/// `level / 8`, as wide as the tree of `size` has it. `not_found` if the node is not
/// complete within `size`.
pub fn tile_for_node(level: u32, index: u64, size: u64) -> Result<(TilePath, u64, u64)> {
    let missing = || {
        Error::new(
            ErrorCode::NotFound,
            format!("node {level}/{index} is not in a tree of {size} leaves"),
        )
    };
    if level >= 64 {
        return Err(missing());
    }
    let end = index
        .checked_add(1)
        .and_then(|e| e.checked_mul(1u64 << level))
        .ok_or_else(missing)?;
    if end > size {
        return Err(missing());
    }
    let tile_level = level / TILE_HEIGHT;
    let r = level % TILE_HEIGHT;
    let first = index << r; // first hash of tree level 8·tile_level
    let tile_index = first / TILE_WIDTH;
    let hashes_at_level = size >> (TILE_HEIGHT * tile_level);
    let width = (hashes_at_level - tile_index * TILE_WIDTH).min(TILE_WIDTH) as u16;
    let tile = TilePath::new(
        TileKind::Hashes {
            level: tile_level as u8,
        },
        tile_index,
        width,
    )?;
    Ok((tile, first % TILE_WIDTH, 1 << r))
}

/// The Merkle root of a power-of-two run of hashes (all hashes of one subtree level).
fn perfect_root(hashes: &[Hash]) -> Option<Hash> {
    match hashes {
        [] => None,
        [one] => Some(*one),
        _ => {
            let (l, r) = hashes.split_at(hashes.len() / 2);
            Some(node_hash(&perfect_root(l)?, &perfect_root(r)?))
        }
    }
}

/// A [`HashSource`] over the hash tiles of a tree of `size` leaves, fetched by the
/// caller's function (from a database, files or HTTP). Each tile's length is checked
/// against its width; a client must check the tree's root against a signed
/// checkpoint, which makes every tile it used authentic.
pub struct TileHashes<F> {
    size: u64,
    fetch: F,
    cache: Option<(TilePath, Vec<u8>)>,
}

impl<F: FnMut(&TilePath) -> Result<Vec<u8>>> TileHashes<F> {
    /// Tiles of the tree of `size` leaves, from `fetch`.
    pub fn new(size: u64, fetch: F) -> Self {
        Self {
            size,
            fetch,
            cache: None,
        }
    }
}

impl<F: FnMut(&TilePath) -> Result<Vec<u8>>> HashSource for TileHashes<F> {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        let (tile, start, count) = tile_for_node(level, index, self.size)?;
        let data = match &self.cache {
            Some((p, d)) if *p == tile => d,
            _ => {
                let d = (self.fetch)(&tile)?;
                if d.len() != usize::from(tile.width()) * 32 {
                    return Err(Error::new(
                        ErrorCode::Malformed,
                        format!(
                            "tile {tile} holds {} bytes, not {}",
                            d.len(),
                            usize::from(tile.width()) * 32
                        ),
                    ));
                }
                &self.cache.insert((tile, d)).1
            }
        };
        let hashes: Vec<Hash> = data
            .chunks_exact(32)
            .skip(start as usize)
            .take(count as usize)
            .filter_map(|c| c.try_into().ok())
            .collect();
        if hashes.len() as u64 != count {
            return Err(Error::new(
                ErrorCode::Malformed,
                format!("tile {tile} is short"),
            ));
        }
        perfect_root(&hashes)
            .ok_or_else(|| Error::new(ErrorCode::Malformed, format!("tile {tile} is short")))
    }
}

/// Encodes entries as an entry bundle. `too_large` for an entry over 65,535 bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| {
            Error::new(
                ErrorCode::TooLarge,
                format!(
                    "an entry bundle holds entries of at most {MAX_BUNDLE_ENTRY} bytes, not {}",
                    e.len()
                ),
            )
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries. `malformed` if it ends inside an entry.
pub fn parse_bundle(bundle: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(2).ok_or_else(|| {
            Error::new(
                ErrorCode::Malformed,
                "the entry bundle ends inside a length",
            )
        })?;
        let len = usize::from(u16::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        let (entry, tail) = tail.split_at_checked(len).ok_or_else(|| {
            Error::new(
                ErrorCode::Malformed,
                "the entry bundle ends inside an entry",
            )
        })?;
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash, tree_root};
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn paths_round_trip_and_are_strict() {
        for (s, kind, index, width) in [
            ("tile/0/000", TileKind::Hashes { level: 0 }, 0, 256),
            (
                "tile/3/x001/x234/067",
                TileKind::Hashes { level: 3 },
                1_234_067,
                256,
            ),
            ("tile/entries/x002/005.p/255", TileKind::Entries, 2005, 255),
            ("tile/1/999.p/1", TileKind::Hashes { level: 1 }, 999, 1),
        ] {
            let p = TilePath::parse(s).unwrap();
            assert_eq!((p.kind(), p.index(), p.width()), (kind, index, width));
            assert_eq!(p.to_string(), s);
        }
        for bad in [
            "tile/0/1",
            "tile/00/000",
            "tile/0/001/002",
            "tile/0/x000/001",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/8/000",
            "tile/0/x1/002",
            "tile/-1/000",
            "tile/0/000/",
            "tiles/0/000",
            "tile/entries/",
            "tile/0/000.p/",
            "tile/0/x018/x446/x744/x073/x709/x551/615",
        ] {
            assert_eq!(
                TilePath::parse(bad).unwrap_err().code(),
                ErrorCode::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn tree_tiles_follow_the_specification_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
        // partial level 0 tile of width 112, one full level 1 tile, one partial level 1
        // tile of width 17, and one partial level 2 tile of width 1."
        let tiles: Vec<TilePath> = tiles_of_tree(70_000).collect();
        assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
        let partial: Vec<String> = tiles
            .iter()
            .filter(|t| t.is_partial())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            partial,
            ["tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1"]
        );
        let t256: Vec<String> = tiles_of_tree(256).map(|t| t.to_string()).collect();
        assert_eq!(t256, ["tile/0/000", "tile/1/000.p/1"]);
    }

    #[test]
    fn bundles_round_trip_and_are_strict() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7; 300]];
        let b = encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(&b[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(parse_bundle(&b).unwrap(), entries);
        assert_eq!(
            parse_bundle(&b[..b.len() - 1]).unwrap_err().code(),
            ErrorCode::Malformed
        );
        assert_eq!(parse_bundle(&[0]).unwrap_err().code(), ErrorCode::Malformed);
        let big = vec![0u8; MAX_BUNDLE_ENTRY + 1];
        assert_eq!(
            encode_bundle([&big[..]]).unwrap_err().code(),
            ErrorCode::TooLarge
        );
    }

    /// Tiles of a tree held in memory, keyed by path, as a log would serve them.
    fn serve(mem: &MemoryTree, size: u64) -> HashMap<String, Vec<u8>> {
        let mut src = mem;
        tiles_of_tree(size)
            .map(|t| {
                let TileKind::Hashes { level } = t.kind() else {
                    unreachable!()
                };
                let lv = u32::from(level) * TILE_HEIGHT;
                let bytes = (0..u64::from(t.width()))
                    .flat_map(|i| src.node(lv, t.index() * TILE_WIDTH + i).unwrap())
                    .collect();
                (t.to_string(), bytes)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn proofs_from_tiles_equal_proofs_from_all_nodes(n in 1u64..70_000, seed in any::<u64>()) {
            let mem = MemoryTree::from_leaves((0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect());
            let tiles = serve(&mem, n);
            let mut fetched = 0;
            let mut src = TileHashes::new(n, |p: &TilePath| {
                fetched += 1;
                tiles.get(&p.to_string()).cloned().ok_or_else(|| Error::new(ErrorCode::NotFound, p.to_string()))
            });
            prop_assert_eq!(tree_root(&mut src, n).unwrap(), mem.root(n).unwrap());
            let i = seed % n;
            prop_assert_eq!(inclusion_proof(&mut src, i, n).unwrap(), mem.inclusion_proof(i, n).unwrap());
            let m = (seed >> 20) % (n + 1);
            prop_assert_eq!(consistency_proof(&mut src, m, n).unwrap(), mem.consistency_proof(m, n).unwrap());
        }
    }

    #[test]
    fn short_tiles_are_refused() {
        let mut src = TileHashes::new(300, |_: &TilePath| Ok(vec![0u8; 31]));
        assert_eq!(src.node(0, 0).unwrap_err().code(), ErrorCode::Malformed);
        assert_eq!(src.node(9, 0).unwrap_err().code(), ErrorCode::NotFound);
    }
}
