//! Encryption at rest, format `v1`: a streaming AEAD in 64 KiB segments (the STREAM
//! construction as Tink's AES-GCM-HKDF streaming keysets use it), specified byte for
//! byte in `docs/PROTOCOL.md`, "Encryption at rest".
//!
//! A stored object is a 24-byte [`Header`] followed by the segments. Segment `i` holds
//! plaintext bytes `[i·65536, (i+1)·65536)`, sealed with AES-256-GCM (or
//! ChaCha20-Poly1305) under a key derived from the object's data key; its nonce carries
//! `i` and a flag saying whether it is the last segment, and its associated data binds
//! the header and the object's [`Binding`] (bucket, storage name, object key, and the
//! SHA-256 and length of the plaintext that the manifest signs). So no segment can be
//! altered, swapped, reordered, dropped, appended or moved to another object without
//! failing authentication.
//!
//! Pure computation over bytes the caller brings (the data key, the header's salt): no
//! I/O and no randomness. Behind the `at-rest` feature, which the wasm client does not
//! enable, so the browser build does not grow.
//!
//! ```
//! use countersign_core::at_rest::{Aead, Binding, DataKey, Header, Opener, Sealer};
//! use countersign_core::{BodyDigest, Bucket, ObjectKey};
//!
//! # fn main() -> Result<(), countersign_core::Error> {
//! let plain = b"a report".to_vec();
//! let binding = Binding::new(
//!     &Bucket::parse("reports")?,
//!     "00112233445566778899aabbccddeeff",
//!     &ObjectKey::parse("org-1/r.pdf")?,
//!     &BodyDigest::of(&plain),
//! );
//! let key = DataKey::from_bytes([7; 32]); // fresh random bytes in production
//! let header = Header { aead: Aead::Aes256Gcm, salt: [9; 16] };
//!
//! let mut sealer = Sealer::new(&key, header, &binding)?;
//! let mut stored = Vec::new();
//! sealer.update(&plain, &mut stored)?;
//! sealer.finish(&mut stored)?;
//!
//! let mut opener = Opener::new(&key, header, &binding, 0..plain.len() as u64)?;
//! let mut out = Vec::new();
//! opener.update(&stored, &mut out)?;
//! opener.finish()?;
//! assert_eq!(out, plain);
//! # Ok(()) }
//! ```

use crate::canonical::BodyDigest;
use crate::error::{Error, ErrorCode, Result};
use crate::names::{Bucket, ObjectKey};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use sha2::{Digest as _, Sha256};
use std::ops::Range;
use zeroize::Zeroize as _;

/// Plaintext bytes per segment (every segment but the last holds exactly this many).
pub const SEGMENT_BYTES: usize = 64 * 1024;
/// Authentication tag bytes after each segment's ciphertext.
pub const TAG_BYTES: usize = 16;
/// Stored bytes of a full segment.
pub const STORED_SEGMENT_BYTES: usize = SEGMENT_BYTES + TAG_BYTES;
/// Bytes of the header at the start of a stored object.
pub const HEADER_BYTES: usize = 24;
/// Bytes of a data key.
pub const DATA_KEY_BYTES: usize = 32;
/// The header's first bytes: `CSAR` (Countersign at rest) and format version 1.
pub const MAGIC: [u8; 5] = *b"CSAR\x01";
/// The HKDF `info` that derives a segment key and nonce prefix from a data key.
const KDF_INFO: &[u8] = b"countersign/v1/at-rest/segment-key";
/// The domain-separation prefix of a [`Binding`] digest.
const BINDING_LABEL: &[u8] = b"countersign/v1/at-rest/binding\n";
const NONCE_PREFIX_BYTES: usize = 7;
/// The largest number of segments one object may have (the index is a `u32`).
const MAX_SEGMENTS: u64 = 1 << 32;

/// The AEAD that seals segments; its id is byte 5 of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AES-256-GCM (id 1), the default: fastest on CPUs with AES instructions.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (id 2).
    ChaCha20Poly1305,
}

impl Aead {
    /// The header byte of this AEAD.
    pub fn id(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::ChaCha20Poly1305 => 2,
        }
    }

    /// The AEAD with header byte `id`.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            1 => Ok(Self::Aes256Gcm),
            2 => Ok(Self::ChaCha20Poly1305),
            _ => Err(Error::new(
                ErrorCode::UnsupportedVersion,
                format!("encrypted object: unknown AEAD id {id}"),
            )),
        }
    }

    /// The name used in configuration and docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// An object's data key: 32 random bytes, wiped from memory when dropped.
pub struct DataKey([u8; DATA_KEY_BYTES]);

impl DataKey {
    /// Wraps key bytes (from a CSPRNG, or unwrapped by a key-encryption key).
    pub fn from_bytes(bytes: [u8; DATA_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The key bytes, to be wrapped by a key-encryption key.
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_BYTES] {
        &self.0
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The 24-byte header of a stored object: magic and version, AEAD id, segment size,
/// and a 16-byte random salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The segments' AEAD.
    pub aead: Aead,
    /// Random per object (the HKDF salt).
    pub salt: [u8; 16],
}

/// `log2(SEGMENT_BYTES)`, byte 6 of the header.
const SEGMENT_LOG2: u8 = 16;

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        let (fixed, salt) = out.split_at_mut(8);
        fixed.copy_from_slice(&[
            MAGIC[0],
            MAGIC[1],
            MAGIC[2],
            MAGIC[3],
            MAGIC[4],
            self.aead.id(),
            SEGMENT_LOG2,
            0,
        ]);
        salt.copy_from_slice(&self.salt);
        out
    }

    /// Parses a header; anything but exactly this format is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let tampered = |what: &str| {
            Error::new(
                ErrorCode::StoredObjectTampered,
                format!("encrypted object header: {what}"),
            )
        };
        let bytes: &[u8; HEADER_BYTES] = bytes
            .try_into()
            .map_err(|_| tampered("not 24 bytes long"))?;
        let (fixed, salt) = bytes.split_at(8);
        let [m0, m1, m2, m3, version, aead, log2, reserved] = fixed else {
            return Err(tampered("truncated"));
        };
        if [*m0, *m1, *m2, *m3] != [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3]] {
            return Err(tampered("bad magic"));
        }
        if *version != MAGIC[4] {
            return Err(Error::new(
                ErrorCode::UnsupportedVersion,
                format!("encrypted object: unknown format version {version}"),
            ));
        }
        if *log2 != SEGMENT_LOG2 || *reserved != 0 {
            return Err(tampered("unsupported segment size or reserved byte"));
        }
        let mut s = [0u8; 16];
        s.copy_from_slice(salt);
        Ok(Self {
            aead: Aead::from_id(*aead)?,
            salt: s,
        })
    }
}

/// What an object's ciphertext is bound to: the SHA-256 of the bucket, the storage
/// name, the object key and the plaintext's SHA-256 and length (the manifest's
/// `sha256` and `size`), each length-prefixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    digest: [u8; 32],
    length: u64,
}

impl Binding {
    /// The binding of one stored object.
    pub fn new(bucket: &Bucket, storage_name: &str, key: &ObjectKey, body: &BodyDigest) -> Self {
        let mut h = Sha256::new();
        h.update(BINDING_LABEL);
        for field in [
            bucket.as_str().as_bytes(),
            storage_name.as_bytes(),
            key.as_str().as_bytes(),
        ] {
            h.update((field.len() as u32).to_be_bytes());
            h.update(field);
        }
        h.update(body.sha256);
        h.update(body.length.to_be_bytes());
        Self {
            digest: h.finalize().into(),
            length: body.length,
        }
    }

    /// The 32-byte digest that every segment's associated data starts with.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The plaintext length the object must have.
    pub fn length(&self) -> u64 {
        self.length
    }
}

/// The number of segments of a `length`-byte plaintext (an empty one has one, empty,
/// segment).
pub fn segment_count(length: u64) -> u64 {
    length.div_ceil(SEGMENT_BYTES as u64).max(1)
}

/// The stored size of a `length`-byte plaintext: header, ciphertext, one tag per
/// segment.
pub fn stored_length(length: u64) -> u64 {
    HEADER_BYTES as u64 + length + segment_count(length) * TAG_BYTES as u64
}

/// The stored byte range that must be read to return plaintext `plain` of a
/// `length`-byte object: the segments it covers, plus the header when the first
/// segment is segment 0 (so a whole-object read also checks the stored header).
/// An empty range needs no stored bytes, except in an empty object, whose one
/// (empty) segment is read to check that it is the whole object.
pub fn stored_range(length: u64, plain: &Range<u64>) -> Range<u64> {
    if length == 0 {
        return 0..stored_length(0);
    }
    if plain.is_empty() {
        return 0..0;
    }
    let seg = SEGMENT_BYTES as u64;
    let first = plain.start / seg;
    let last = ((plain.end - 1) / seg).min(segment_count(length) - 1);
    let start = if first == 0 {
        0
    } else {
        HEADER_BYTES as u64 + first * STORED_SEGMENT_BYTES as u64
    };
    let end =
        (HEADER_BYTES as u64 + (last + 1) * STORED_SEGMENT_BYTES as u64).min(stored_length(length));
    start..end
}

/// The per-object segment cipher: the derived key, the nonce prefix and the
/// associated data (`binding digest ‖ header`).
struct SegmentCipher {
    key: LessSafeKey,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
    aad: [u8; 32 + HEADER_BYTES],
    segments: u64,
}

/// The HKDF output length: a 32-byte key and a 7-byte nonce prefix.
struct OkmLen;
impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        DATA_KEY_BYTES + NONCE_PREFIX_BYTES
    }
}

impl SegmentCipher {
    fn new(key: &DataKey, header: Header, binding: &Binding) -> Result<Self> {
        let segments = segment_count(binding.length);
        if segments > MAX_SEGMENTS {
            return Err(Error::new(
                ErrorCode::TooLarge,
                "an encrypted object has at most 2^32 segments (256 TiB)",
            ));
        }
        let internal = |_| Error::new(ErrorCode::Internal, "segment key derivation failed");
        let mut okm = [0u8; DATA_KEY_BYTES + NONCE_PREFIX_BYTES];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &header.salt)
            .extract(key.as_bytes())
            .expand(&[KDF_INFO], OkmLen)
            .map_err(internal)?
            .fill(&mut okm)
            .map_err(internal)?;
        let (k, prefix) = okm.split_at(DATA_KEY_BYTES);
        let unbound = UnboundKey::new(header.aead.algorithm(), k).map_err(internal);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_BYTES];
        nonce_prefix.copy_from_slice(prefix);
        okm.zeroize();
        let mut aad = [0u8; 32 + HEADER_BYTES];
        let (d, h) = aad.split_at_mut(32);
        d.copy_from_slice(binding.digest());
        h.copy_from_slice(&header.encode());
        Ok(Self {
            key: LessSafeKey::new(unbound?),
            nonce_prefix,
            aad,
            segments,
        })
    }

    /// The nonce of segment `index`: prefix ‖ index (u32 BE) ‖ last flag.
    fn nonce(&self, index: u64) -> Nonce {
        let mut n = [0u8; 12];
        let (p, rest) = n.split_at_mut(NONCE_PREFIX_BYTES);
        p.copy_from_slice(&self.nonce_prefix);
        let (i, last) = rest.split_at_mut(4);
        i.copy_from_slice(&(index as u32).to_be_bytes());
        last.copy_from_slice(&[u8::from(index + 1 == self.segments)]);
        Nonce::assume_unique_for_key(n)
    }

    /// Plaintext bytes in segment `index`.
    fn plain_len(&self, length: u64, index: u64) -> usize {
        let start = index * SEGMENT_BYTES as u64;
        length.saturating_sub(start).min(SEGMENT_BYTES as u64) as usize
    }
}

/// Encrypts one object's plaintext as it streams in. The plaintext must have exactly
/// the binding's length.
pub struct Sealer {
    cipher: SegmentCipher,
    header: Option<[u8; HEADER_BYTES]>,
    length: u64,
    index: u64,
    seen: u64,
    /// The current segment's plaintext, sealed in place when full.
    segment: Vec<u8>,
}

impl Sealer {
    /// Starts sealing an object bound to `binding`.
    pub fn new(key: &DataKey, header: Header, binding: &Binding) -> Result<Self> {
        Ok(Self {
            cipher: SegmentCipher::new(key, header, binding)?,
            header: Some(header.encode()),
            length: binding.length,
            index: 0,
            seen: 0,
            segment: Vec::with_capacity(STORED_SEGMENT_BYTES),
        })
    }

    /// Seals the next plaintext bytes, appending stored bytes to `out` (the header
    /// first, then each segment once it is complete).
    pub fn update(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let Some(h) = self.header.take() {
            out.extend_from_slice(&h);
        }
        if self.seen + plain.len() as u64 > self.length {
            return Err(Error::new(
                ErrorCode::BodyMismatch,
                "the body is longer than its signed length",
            ));
        }
        self.seen += plain.len() as u64;
        while !plain.is_empty() {
            let full = self.cipher.plain_len(self.length, self.index);
            if self.segment.is_empty() && plain.len() >= full {
                // A whole segment at hand: seal it where it lands in `out` (one copy).
                let (take, rest) = plain.split_at(full);
                let start = out.len();
                out.extend_from_slice(take);
                let tag = self
                    .cipher
                    .key
                    .seal_in_place_separate_tag(
                        self.cipher.nonce(self.index),
                        Aad::from(self.cipher.aad),
                        out.get_mut(start..).unwrap_or_default(),
                    )
                    .map_err(|_| Error::new(ErrorCode::Internal, "segment encryption failed"))?;
                out.extend_from_slice(tag.as_ref());
                self.index += 1;
                plain = rest;
                continue;
            }
            let want = full - self.segment.len();
            let (take, rest) = plain.split_at(want.min(plain.len()));
            self.segment.extend_from_slice(take);
            plain = rest;
            if self.segment.len() == self.cipher.plain_len(self.length, self.index) {
                self.seal_segment(out)?;
            }
        }
        Ok(())
    }

    fn seal_segment(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let nonce = self.cipher.nonce(self.index);
        self.cipher
            .key
            .seal_in_place_append_tag(nonce, Aad::from(self.cipher.aad), &mut self.segment)
            .map_err(|_| Error::new(ErrorCode::Internal, "segment encryption failed"))?;
        out.extend_from_slice(&self.segment);
        self.segment.clear();
        self.index += 1;
        Ok(())
    }

    /// Ends the object, appending the last stored bytes (the header and the one empty
    /// segment of an empty object). Fails if fewer bytes than the signed length came.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(h) = self.header.take() {
            out.extend_from_slice(&h);
        }
        if self.seen != self.length {
            return Err(Error::new(
                ErrorCode::BodyMismatch,
                "the body is shorter than its signed length",
            ));
        }
        if self.length == 0 && self.index == 0 {
            self.seal_segment(out)?;
        }
        Ok(())
    }
}

/// Decrypts a byte range of one stored object, segment by segment: a segment's
/// plaintext is released only after its tag verified.
pub struct Opener {
    cipher: SegmentCipher,
    header: [u8; HEADER_BYTES],
    length: u64,
    plain: Range<u64>,
    /// The stored bytes this read needs.
    stored: Range<u64>,
    /// Stored bytes still expected; `finish` fails if any are missing.
    remaining: u64,
    /// Header bytes still to check (a read from segment 0 starts with the header).
    header_left: usize,
    index: u64,
    segment: Vec<u8>,
}

impl Opener {
    /// Opens plaintext range `plain` (within the binding's length) from the stored
    /// bytes [`stored_range`] gives.
    pub fn new(
        key: &DataKey,
        header: Header,
        binding: &Binding,
        plain: Range<u64>,
    ) -> Result<Self> {
        let length = binding.length;
        if plain.start > plain.end || plain.end > length {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "the range is outside the object",
            ));
        }
        let stored = stored_range(length, &plain);
        let index = plain.start / SEGMENT_BYTES as u64;
        let header_left = if stored.start == 0 && !stored.is_empty() {
            HEADER_BYTES
        } else {
            0
        };
        Ok(Self {
            cipher: SegmentCipher::new(key, header, binding)?,
            header: header.encode(),
            length,
            plain,
            remaining: stored.end - stored.start,
            stored,
            header_left,
            index,
            segment: Vec::with_capacity(STORED_SEGMENT_BYTES),
        })
    }

    fn tampered(&self, what: &str) -> Error {
        tampered_segment(self.index, what)
    }

    /// The stored bytes to feed, as [`stored_range`] gives them.
    pub fn stored_range(&self) -> Range<u64> {
        self.stored.clone()
    }

    /// Feeds the next stored bytes, appending released plaintext to `out`. A segment
    /// is decrypted straight into `out` (one pass, no copy of its plaintext): from
    /// `stored` if it lies there whole, else once its ciphertext has been gathered
    /// across calls. Only the first and last segment of a range, whose plaintext is
    /// released in part, are opened in place and that part copied out.
    pub fn update(&mut self, mut stored: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if stored.len() as u64 > self.remaining {
            return Err(self.tampered("more stored bytes than the object has"));
        }
        self.remaining -= stored.len() as u64;
        if self.header_left > 0 {
            let (h, rest) = stored.split_at(self.header_left.min(stored.len()));
            let at = HEADER_BYTES - self.header_left;
            if self.header.get(at..at + h.len()) != Some(h) {
                return Err(self.tampered("the header differs from the index"));
            }
            self.header_left -= h.len();
            stored = rest;
        }
        while !stored.is_empty() {
            let plain_len = self.cipher.plain_len(self.length, self.index);
            let full = plain_len + TAG_BYTES;
            if self.segment.is_empty()
                && stored.len() >= full
                && self.releases_whole_segment(plain_len)
            {
                let (segment, rest) = stored.split_at(full);
                self.open_whole_segment(segment, out)?;
                stored = rest;
                continue;
            }
            let want = full - self.segment.len();
            let (take, rest) = stored.split_at(want.min(stored.len()));
            self.segment.extend_from_slice(take);
            stored = rest;
            if self.segment.len() == full {
                self.open_segment(out)?;
            }
        }
        Ok(())
    }

    /// Whether this read releases all `plain_len` plaintext bytes of the current
    /// segment (not only part of it, as the first or last segment of a range may).
    fn releases_whole_segment(&self, plain_len: usize) -> bool {
        let seg_start = self.index * SEGMENT_BYTES as u64;
        self.plain.start <= seg_start && seg_start + plain_len as u64 <= self.plain.end
    }

    /// Opens a segment whose plaintext this read releases whole, decrypting it from
    /// `segment` (ciphertext and tag) straight into `out`.
    fn open_whole_segment(&mut self, segment: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let (ciphertext, tag) = segment.split_at(segment.len().saturating_sub(TAG_BYTES));
        let at = out.len();
        // The decryption writes into an initialised slice (no `unsafe` for spare
        // capacity), so the segment's share of `out` is zeroed first.
        out.resize(at + ciphertext.len(), 0);
        let opened = self.cipher.key.open_separate_gather(
            self.cipher.nonce(self.index),
            Aad::from(self.cipher.aad),
            ciphertext,
            tag,
            out.get_mut(at..).unwrap_or_default(),
        );
        if opened.is_err() {
            // Nothing of a segment that failed is released.
            out.truncate(at);
            return Err(self.tampered("authentication failed"));
        }
        self.index += 1;
        Ok(())
    }

    /// Opens the segment gathered in `self.segment`.
    fn open_segment(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let plain_len = self.segment.len().saturating_sub(TAG_BYTES);
        if self.releases_whole_segment(plain_len) {
            let segment = std::mem::take(&mut self.segment);
            let opened = self.open_whole_segment(&segment, out);
            self.segment = segment;
            self.segment.clear();
            return opened;
        }
        // The first or last segment of a range: only part of its plaintext is
        // released, so it is opened in place and that part copied out.
        let nonce = self.cipher.nonce(self.index);
        let plain = self
            .cipher
            .key
            .open_in_place(nonce, Aad::from(self.cipher.aad), &mut self.segment)
            .map_err(|_| tampered_segment(self.index, "authentication failed"))?;
        let seg_start = self.index * SEGMENT_BYTES as u64;
        let from = self.plain.start.saturating_sub(seg_start) as usize;
        let to = (self.plain.end - seg_start).min(plain.len() as u64) as usize;
        if let Some(part) = plain.get(from..to) {
            out.extend_from_slice(part);
        }
        self.segment.clear();
        self.index += 1;
        Ok(())
    }

    /// The length of the next batch for [`Opener::open_in_place`]: the stored bytes of
    /// the next `segments` whole segments (at least one), preceded by the header if
    /// the read starts at the object's start, and no more than this read still needs.
    pub fn next_batch_len(&self, segments: usize) -> usize {
        let whole = (segments.max(1) as u64).saturating_mul(STORED_SEGMENT_BYTES as u64);
        let want = (self.header_left as u64).saturating_add(whole);
        usize::try_from(want.min(self.remaining)).unwrap_or(usize::MAX)
    }

    /// Opens a batch of stored bytes where they lie, without moving them: `batch`
    /// holds the next stored bytes of this read, cut at a segment boundary as
    /// [`Opener::next_batch_len`] gives them. Each segment is decrypted in place, and
    /// the range of `batch` holding the plaintext it releases is appended to
    /// `released` (one range per segment, the tags between them left out): the caller
    /// chooses between handing the ranges on as they lie and moving them together.
    ///
    /// On a failure, `released` holds only the segments that verified before it (none
    /// of the failing segment's bytes), and the read is over.
    pub fn open_in_place(
        &mut self,
        batch: &mut [u8],
        released: &mut Vec<Range<usize>>,
    ) -> Result<()> {
        if !self.segment.is_empty() {
            return Err(Error::new(
                ErrorCode::Internal,
                "open_in_place after a partial segment was fed to update",
            ));
        }
        if batch.len() as u64 > self.remaining {
            return Err(self.tampered("more stored bytes than the object has"));
        }
        self.remaining -= batch.len() as u64;
        let mut read = 0;
        if self.header_left > 0 {
            let at = HEADER_BYTES - self.header_left;
            let n = self.header_left.min(batch.len());
            if self.header.get(at..at + n) != batch.get(..n) {
                return Err(self.tampered("the header differs from the index"));
            }
            self.header_left -= n;
            read = n;
        }
        while read < batch.len() {
            let end = read + self.cipher.plain_len(self.length, self.index) + TAG_BYTES;
            let nonce = self.cipher.nonce(self.index);
            let plain_len = match batch.get_mut(read..end) {
                Some(in_out) => self
                    .cipher
                    .key
                    .open_in_place(nonce, Aad::from(self.cipher.aad), in_out)
                    .map(|p| p.len())
                    .map_err(|_| tampered_segment(self.index, "authentication failed"))?,
                // A batch not cut at a segment boundary: the segment is incomplete.
                None => {
                    return Err(tampered_segment(
                        self.index,
                        "the stored object is truncated",
                    ));
                }
            };
            let seg_start = self.index * SEGMENT_BYTES as u64;
            let from = self.plain.start.saturating_sub(seg_start) as usize;
            let to = (self.plain.end - seg_start).min(plain_len as u64) as usize;
            if from < to {
                released.push(read + from..read + to);
            }
            read = end;
            self.index += 1;
        }
        Ok(())
    }

    /// Ends the read: fails if the stored bytes stopped short (a truncated object).
    pub fn finish(&mut self) -> Result<()> {
        if self.remaining > 0 || self.header_left > 0 || !self.segment.is_empty() {
            return Err(self.tampered("the stored object is truncated"));
        }
        Ok(())
    }
}

fn tampered_segment(index: u64, what: &str) -> Error {
    Error::new(
        ErrorCode::StoredObjectTampered,
        format!("encrypted object: {what} (segment {index})"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn binding(plain: &[u8], name: &str) -> Binding {
        Binding::new(
            &Bucket::parse("reports").unwrap(),
            name,
            &ObjectKey::parse("a/b.pdf").unwrap(),
            &BodyDigest::of(plain),
        )
    }

    const NAME: &str = "00112233445566778899aabbccddeeff";
    const HEADER: Header = Header {
        aead: Aead::Aes256Gcm,
        salt: [3; 16],
    };

    fn seal(plain: &[u8], chunk: usize) -> Vec<u8> {
        let mut s =
            Sealer::new(&DataKey::from_bytes([1; 32]), HEADER, &binding(plain, NAME)).unwrap();
        let mut out = Vec::new();
        for c in plain.chunks(chunk.max(1)) {
            s.update(c, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        out
    }

    /// Opens `range` by feeding `chunk`-sized pieces to `update`, and again in place
    /// in batches of one and of three segments: all three must agree.
    fn open(plain: &[u8], stored: &[u8], range: Range<u64>, chunk: usize) -> Result<Vec<u8>> {
        let b = binding(plain, NAME);
        let r = stored_range(plain.len() as u64, &range);
        let end = (r.end as usize).min(stored.len());
        let stored = &stored[r.start as usize..end];
        let feed = |chunk: usize| -> Result<Vec<u8>> {
            let mut o = Opener::new(&DataKey::from_bytes([1; 32]), HEADER, &b, range.clone())?;
            let mut out = Vec::new();
            for c in stored.chunks(chunk.max(1)) {
                o.update(c, &mut out)?;
            }
            o.finish()?;
            Ok(out)
        };
        let fed = feed(chunk);
        // Chunks holding whole segments take the one-pass path, others gather.
        for other in [
            stored.len(),
            STORED_SEGMENT_BYTES + 5,
            3 * STORED_SEGMENT_BYTES,
        ] {
            match (&fed, feed(other)) {
                (Ok(a), Ok(b)) => assert_eq!(a, &b, "{range:?} in chunks of {other}"),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{range:?}"),
                (a, b) => panic!("{range:?}: chunks of {chunk}: {a:?}, of {other}: {b:?}"),
            }
        }
        for segments in [1, 3] {
            let in_place = open_in_batches(&b, stored, range.clone(), segments);
            match (&fed, in_place) {
                (Ok(a), Ok(b)) => assert_eq!(a, &b, "{range:?} in batches of {segments}"),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{range:?}"),
                (a, b) => panic!("{range:?}: fed {a:?}, in place {b:?}"),
            }
        }
        fed
    }

    /// Opens `stored` in place, `segments` per batch, the way the gatekeeper does.
    fn open_in_batches(
        b: &Binding,
        mut stored: &[u8],
        range: Range<u64>,
        segments: usize,
    ) -> Result<Vec<u8>> {
        let mut o = Opener::new(&DataKey::from_bytes([1; 32]), HEADER, b, range)?;
        let mut out = Vec::new();
        loop {
            let n = o.next_batch_len(segments).min(stored.len());
            if n == 0 {
                break;
            }
            let mut batch = stored[..n].to_vec();
            stored = &stored[n..];
            let mut released = Vec::new();
            let result = o.open_in_place(&mut batch, &mut released);
            for r in released {
                out.extend_from_slice(&batch[r]);
            }
            result?;
        }
        o.finish()?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_segment_edges_in_any_chunking() {
        let s = SEGMENT_BYTES;
        for n in [0, 1, s - 1, s, s + 1, 3 * s, 3 * s + 17] {
            let plain = data(n);
            for chunk in [1000, 8192, s + 3] {
                let stored = seal(&plain, chunk);
                assert_eq!(stored.len() as u64, stored_length(n as u64), "{n}");
                assert_eq!(open(&plain, &stored, 0..n as u64, 7777).unwrap(), plain);
            }
        }
    }

    #[test]
    fn ranges_across_segment_edges_read_only_their_segments() {
        let s = SEGMENT_BYTES as u64;
        let plain = data(3 * SEGMENT_BYTES + 100);
        let stored = seal(&plain, 4096);
        let len = plain.len() as u64;
        for r in [
            0..1,
            s - 1..s + 1,
            s..2 * s,
            2 * s - 5..len,
            len - 1..len,
            5..5,
        ] {
            let got = open(&plain, &stored, r.clone(), 1000).unwrap();
            assert_eq!(got, plain[r.start as usize..r.end as usize], "{r:?}");
        }
        assert_eq!(stored_range(len, &(s..s + 1)).start, 24 + (s + 16));
    }

    #[test]
    fn tampering_of_any_kind_is_refused() {
        let plain = data(3 * SEGMENT_BYTES);
        let stored = seal(&plain, 65536);
        let len = plain.len() as u64;
        let seg = STORED_SEGMENT_BYTES;
        let code = |r: Result<Vec<u8>>| r.unwrap_err().code();
        // One flipped bit anywhere: header, ciphertext, tag.
        for at in [0, 10, 24, 24 + 100, 24 + seg - 1, stored.len() - 1] {
            let mut t = stored.clone();
            t[at] ^= 1;
            assert_eq!(
                code(open(&plain, &t, 0..len, 5000)),
                ErrorCode::StoredObjectTampered
            );
        }
        // Two segments swapped.
        let mut t = stored.clone();
        let (a, b) = (24..24 + seg, 24 + seg..24 + 2 * seg);
        let first = t[a.clone()].to_vec();
        t.copy_within(b.clone(), a.start);
        t[b].copy_from_slice(&first);
        assert_eq!(
            code(open(&plain, &t, 0..len, 5000)),
            ErrorCode::StoredObjectTampered
        );
        // Truncated after a segment.
        assert_eq!(
            code(open(&plain, &stored[..24 + 2 * seg], 0..len, 5000)),
            ErrorCode::StoredObjectTampered
        );
        // A truncated object claimed as a shorter one: the last flag and the
        // binding's length refuse it.
        let short = &plain[..2 * SEGMENT_BYTES];
        assert_eq!(
            code(open(
                short,
                &stored[..24 + 2 * seg],
                0..short.len() as u64,
                5000
            )),
            ErrorCode::StoredObjectTampered
        );
        // Extended by a byte.
        let mut t = stored.clone();
        t.push(0);
        let b = binding(&plain, NAME);
        let mut o = Opener::new(&DataKey::from_bytes([1; 32]), HEADER, &b, 0..len).unwrap();
        assert_eq!(
            o.update(&t, &mut Vec::new()).unwrap_err().code(),
            ErrorCode::StoredObjectTampered
        );
        // Moved to another object (another storage name, same key and bytes).
        let other = binding(&plain, "ffeeddccbbaa99887766554433221100");
        let mut o = Opener::new(&DataKey::from_bytes([1; 32]), HEADER, &other, 0..len).unwrap();
        assert_eq!(
            o.update(&stored, &mut Vec::new()).unwrap_err().code(),
            ErrorCode::StoredObjectTampered
        );
        // The wrong data key.
        let mut o = Opener::new(&DataKey::from_bytes([2; 32]), HEADER, &b, 0..len).unwrap();
        assert_eq!(
            o.update(&stored, &mut Vec::new()).unwrap_err().code(),
            ErrorCode::StoredObjectTampered
        );
    }

    #[test]
    fn no_plaintext_of_a_failing_segment_is_released() {
        let plain = data(2 * SEGMENT_BYTES);
        let mut stored = seal(&plain, 65536);
        let last = stored.len() - 1;
        stored[last] ^= 1;
        let b = binding(&plain, NAME);
        let mut o = Opener::new(
            &DataKey::from_bytes([1; 32]),
            HEADER,
            &b,
            0..plain.len() as u64,
        )
        .unwrap();
        let mut out = Vec::new();
        assert!(o.update(&stored, &mut out).is_err());
        assert_eq!(out, plain[..SEGMENT_BYTES]);
        // In place: the released range stops before the failing segment.
        let mut o = Opener::new(
            &DataKey::from_bytes([1; 32]),
            HEADER,
            &b,
            0..plain.len() as u64,
        )
        .unwrap();
        assert_eq!(o.next_batch_len(2), stored.len());
        let mut released = Vec::new();
        let result = o.open_in_place(&mut stored, &mut released);
        assert_eq!(result.unwrap_err().code(), ErrorCode::StoredObjectTampered);
        let first = HEADER_BYTES..HEADER_BYTES + SEGMENT_BYTES;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0], first);
        assert_eq!(stored[first], plain[..SEGMENT_BYTES]);
    }

    #[test]
    fn a_batch_not_cut_at_a_segment_boundary_is_refused() {
        let plain = data(2 * SEGMENT_BYTES);
        let stored = seal(&plain, 65536);
        let b = binding(&plain, NAME);
        let k = DataKey::from_bytes([1; 32]);
        let mut o = Opener::new(&k, HEADER, &b, 0..plain.len() as u64).unwrap();
        let mut batch = stored[..HEADER_BYTES + STORED_SEGMENT_BYTES + 10].to_vec();
        let mut released = Vec::new();
        let result = o.open_in_place(&mut batch, &mut released);
        assert_eq!(result.unwrap_err().code(), ErrorCode::StoredObjectTampered);
        assert_eq!(released.len(), 1);
        assert_eq!(released[0], HEADER_BYTES..HEADER_BYTES + SEGMENT_BYTES);
        assert_eq!(
            batch[HEADER_BYTES..][..SEGMENT_BYTES],
            plain[..SEGMENT_BYTES]
        );
        // After a partial update, open_in_place refuses rather than guess.
        let mut o = Opener::new(&k, HEADER, &b, 0..plain.len() as u64).unwrap();
        o.update(&stored[..100], &mut Vec::new()).unwrap();
        let mut rest = stored[100..].to_vec();
        let mut released = Vec::new();
        let result = o.open_in_place(&mut rest, &mut released);
        assert!(released.is_empty());
        assert_eq!(result.unwrap_err().code(), ErrorCode::Internal);
    }

    #[test]
    fn the_sealer_refuses_a_body_of_another_length() {
        let plain = data(10);
        let b = binding(&plain, NAME);
        let k = DataKey::from_bytes([1; 32]);
        let mut s = Sealer::new(&k, HEADER, &b).unwrap();
        assert_eq!(
            s.update(&data(11), &mut Vec::new()).unwrap_err().code(),
            ErrorCode::BodyMismatch
        );
        let mut s = Sealer::new(&k, HEADER, &b).unwrap();
        s.update(&data(9), &mut Vec::new()).unwrap();
        assert_eq!(
            s.finish(&mut Vec::new()).unwrap_err().code(),
            ErrorCode::BodyMismatch
        );
    }

    #[test]
    fn headers_parse_only_in_their_one_form() {
        let h = HEADER.encode();
        assert_eq!(Header::parse(&h).unwrap(), HEADER);
        let mut bad = h;
        bad[4] = 2;
        assert_eq!(
            Header::parse(&bad).unwrap_err().code(),
            ErrorCode::UnsupportedVersion
        );
        for at in [0, 5, 6, 7] {
            let mut bad = h;
            bad[at] = 0xee;
            assert!(Header::parse(&bad).is_err(), "{at}");
        }
        assert!(Header::parse(&h[..23]).is_err());
    }

    #[test]
    fn overhead_is_under_half_a_permille_from_one_mebibyte() {
        let n = 1 << 20;
        let over = stored_length(n) - n;
        assert_eq!(over, 24 + 16 * 16);
        assert!((over as f64) / (n as f64) < 0.0005);
    }
}
