//! Vectors of encryption at rest (`tests/vectors/at-rest.json`): the stored bytes of
//! fixed plaintexts under fixed data keys and salts, and tampered stored bytes that
//! must be refused. Native only: the wasm client does not decrypt.
//!
//! A case's plaintext is `plaintext_length` bytes, byte `i` being `i mod 251`. Its
//! stored bytes are given in full as `stored_hex` when short, else by their SHA-256
//! (`stored_sha256`) together with the first 64 and last 64 bytes. A tampering case
//! names a `mutation` applied to the honest stored bytes before opening them.

use countersign_core::at_rest::{
    Aead, Binding, DataKey, HEADER_BYTES, Header, Opener, STORED_SEGMENT_BYTES, Sealer,
};
use countersign_core::text::{hex, parse_hex};
use countersign_core::{BodyDigest, Bucket, ObjectKey};
use serde::{Deserialize, Serialize};

/// The file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AtRestFile {
    /// What the file covers.
    pub description: String,
    /// The cases.
    pub cases: Vec<AtRestCase>,
}

/// How a tampering case alters the honest stored bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// XOR byte `at` with 0x01.
    Flip {
        /// Offset in the stored bytes.
        at: usize,
    },
    /// Exchange stored segments `a` and `b` (whole segments of 65,552 bytes).
    SwapSegments {
        /// First segment index.
        a: usize,
        /// Second segment index.
        b: usize,
    },
    /// Keep only the first `length` stored bytes.
    Truncate {
        /// Bytes kept.
        length: usize,
    },
    /// Append the bytes.
    Append {
        /// Lowercase hex.
        hex: String,
    },
    /// Open the honest bytes as if stored under another storage name.
    MoveTo {
        /// The other storage name.
        storage_name: String,
    },
}

/// One case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AtRestCase {
    /// Unique name.
    pub name: String,
    /// What the case checks.
    pub description: String,
    /// The object's data key, 32 bytes hex.
    pub data_key_hex: String,
    /// The header's salt, 16 bytes hex.
    pub salt_hex: String,
    /// `aes-256-gcm` or `chacha20-poly1305`.
    pub aead: String,
    /// The binding's bucket.
    pub bucket: String,
    /// The binding's storage name.
    pub storage_name: String,
    /// The binding's object key.
    pub key: String,
    /// Plaintext length (byte `i` is `i mod 251`).
    pub plaintext_length: u64,
    /// The binding digest, hex (SHA-256, see PROTOCOL.md).
    pub binding_sha256: String,
    /// The honest stored bytes in full (objects up to 200 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_hex: Option<String>,
    /// SHA-256 of the honest stored bytes.
    pub stored_sha256: String,
    /// Their length.
    pub stored_length: u64,
    /// First 64 stored bytes, hex.
    pub stored_head_hex: String,
    /// Last 64 stored bytes, hex.
    pub stored_tail_hex: String,
    /// A tampering to apply before opening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation: Option<Mutation>,
    /// `ok` or `stored_object_tampered`.
    pub expect: String,
}

/// The plaintext of a case.
pub fn plaintext(length: u64) -> Vec<u8> {
    (0..length).map(|i| (i % 251) as u8).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&BodyDigest::of(data).sha256)
}

struct Parsed {
    key: DataKey,
    header: Header,
    binding: Binding,
}

fn parse(c: &AtRestCase, storage_name: &str) -> Result<Parsed, String> {
    let aead = match c.aead.as_str() {
        "aes-256-gcm" => Aead::Aes256Gcm,
        "chacha20-poly1305" => Aead::ChaCha20Poly1305,
        other => return Err(format!("unknown aead {other}")),
    };
    let e = |e: countersign_core::Error| e.to_string();
    let plain = plaintext(c.plaintext_length);
    Ok(Parsed {
        key: DataKey::from_bytes(parse_hex::<32>(&c.data_key_hex, "data key").map_err(e)?),
        header: Header {
            aead,
            salt: parse_hex::<16>(&c.salt_hex, "salt").map_err(e)?,
        },
        binding: Binding::new(
            &Bucket::parse(&c.bucket).map_err(e)?,
            storage_name,
            &ObjectKey::parse(&c.key).map_err(e)?,
            &BodyDigest::of(&plain),
        ),
    })
}

/// Seals a case's plaintext: its honest stored bytes.
pub fn seal(c: &AtRestCase) -> Result<Vec<u8>, String> {
    let p = parse(c, &c.storage_name)?;
    let mut sealer = Sealer::new(&p.key, p.header, &p.binding).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    sealer
        .update(&plaintext(c.plaintext_length), &mut out)
        .map_err(|e| e.to_string())?;
    sealer.finish(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Applies a mutation; returns the bytes and the storage name to open them under.
fn mutate(c: &AtRestCase, mut stored: Vec<u8>) -> Result<(Vec<u8>, String), String> {
    let mut name = c.storage_name.clone();
    match &c.mutation {
        None => {}
        Some(Mutation::Flip { at }) => {
            *stored.get_mut(*at).ok_or("flip outside the object")? ^= 1;
        }
        Some(Mutation::SwapSegments { a, b }) => {
            let seg = |i: usize| HEADER_BYTES + i * STORED_SEGMENT_BYTES;
            let first = stored
                .get(seg(*a)..seg(*a + 1))
                .ok_or("segment outside the object")?
                .to_vec();
            let second = stored
                .get(seg(*b)..seg(*b + 1))
                .ok_or("segment outside the object")?
                .to_vec();
            stored.splice(seg(*a)..seg(*a + 1), second);
            stored.splice(seg(*b)..seg(*b + 1), first);
        }
        Some(Mutation::Truncate { length }) => stored.truncate(*length),
        Some(Mutation::Append { hex: h }) => {
            for i in (0..h.len()).step_by(2) {
                let byte = h.get(i..i + 2).ok_or("odd hex")?;
                stored.push(u8::from_str_radix(byte, 16).map_err(|e| e.to_string())?);
            }
        }
        Some(Mutation::MoveTo { storage_name }) => name = storage_name.clone(),
    }
    Ok((stored, name))
}

/// Replays one case: `ok` if its stored bytes open to its plaintext, else the code.
pub fn outcome(c: &AtRestCase) -> Result<String, String> {
    let honest = seal(c)?;
    if sha256_hex(&honest) != c.stored_sha256 || honest.len() as u64 != c.stored_length {
        return Err("the sealed bytes differ from the vector".into());
    }
    if c.stored_hex.as_deref().is_some_and(|h| h != hex(&honest)) {
        return Err("the sealed bytes differ from stored_hex".into());
    }
    let (stored, name) = mutate(c, honest)?;
    let p = parse(c, &name)?;
    if hex(p.binding.digest()) != c.binding_sha256 && c.mutation.is_none() {
        return Err("the binding digest differs from the vector".into());
    }
    let plain = plaintext(c.plaintext_length);
    let result =
        Opener::new(&p.key, p.header, &p.binding, 0..c.plaintext_length).and_then(|mut o| {
            let mut out = Vec::new();
            for chunk in stored.chunks(10_000) {
                o.update(chunk, &mut out)?;
            }
            o.finish()?;
            Ok(out)
        });
    Ok(match result {
        Ok(out) if out == plain => "ok".into(),
        Ok(_) => "wrong_plaintext".into(),
        Err(e) => e.code().as_str().into(),
    })
}

/// Replays a file: `(case, expected, got)` for each case.
pub fn replay(json: &str) -> Result<Vec<(String, String, String)>, String> {
    let file: AtRestFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    file.cases
        .iter()
        .map(|c| Ok((c.name.clone(), c.expect.clone(), outcome(c)?)))
        .collect()
}

/// Fills in a case's stored-byte fields from its inputs.
pub fn complete(mut c: AtRestCase) -> Result<AtRestCase, String> {
    let stored = seal(&c)?;
    let p = parse(&c, &c.storage_name)?;
    c.binding_sha256 = hex(p.binding.digest());
    c.stored_sha256 = sha256_hex(&stored);
    c.stored_length = stored.len() as u64;
    c.stored_head_hex = hex(stored.get(..64.min(stored.len())).unwrap_or_default());
    c.stored_tail_hex = hex(stored
        .get(stored.len().saturating_sub(64)..)
        .unwrap_or_default());
    c.stored_hex = (stored.len() <= 200).then(|| hex(&stored));
    Ok(c)
}
