//! Signed checkpoints in the C2SP formats, so that existing transparency-log tools
//! and witnesses can check the audit log:
//!
//! - `signed-note` (c2sp.org/signed-note): a text, a blank line, then signature lines
//!   `— <key name> base64(key id ‖ signature)`, with Ed25519 signatures (type `0x01`,
//!   key id = the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`);
//! - `tlog-checkpoint` (c2sp.org/tlog-checkpoint): the note text is the origin line,
//!   the tree size, the base64 root hash and optional extension lines;
//! - `tlog-cosignature/v1` (c2sp.org/tlog-cosignature): a witness's timestamped
//!   Ed25519 cosignature (type `0x04`) over `cosignature/v1\ntime T\n` followed by
//!   the checkpoint text.
//!
//! Parsing is strict: one encoding per checkpoint, and verification is Ed25519
//! `verify_strict` against keys configured by the caller.
//!
//! ```
//! use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
//! use ed25519_dalek::SigningKey;
//!
//! # fn main() -> Result<(), countersign_core::Error> {
//! let key = SigningKey::from_bytes(&[9; 32]);
//! let signer = NoteSigner::ed25519("gk.example/audit", key)?;
//! let cp = Checkpoint::new("gk.example/audit", 3, [7; 32], Vec::new())?;
//! let note = SignedNote::sign(cp.body(), &[&signer])?;
//! let text = note.encode();
//!
//! let verifier = NoteVerifier::parse(&signer.verifier_key())?;
//! let (checkpoint, _) = Checkpoint::open(text.as_bytes(), "gk.example/audit", &verifier)?;
//! assert_eq!(checkpoint.size(), 3);
//! # Ok(()) }
//! ```

use crate::error::{Error, ErrorCode, Result};
use crate::merkle::Hash;
use crate::signature::PublicKey;
use crate::text::preview;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// Signature type of plain Ed25519 note signatures.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of `tlog-cosignature/v1` timestamped Ed25519 cosignatures.
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// The most signature lines a note may carry (the specification asks for at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 64;
/// The longest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The header line of the message a `cosignature/v1` signs.
pub const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

const DASH: &str = "\u{2014} ";

fn malformed(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Malformed, message)
}

/// A note key name: non-empty, printable, without Unicode spaces or `+`.
fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 256
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!(
                "a note key name must be 1 to 256 bytes without spaces, `+` or control characters: `{}`",
                preview(name)
            ),
        ));
    }
    Ok(())
}

/// `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]`, the key id of signed-note.
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public_key);
    let d = h.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    id
}

/// The message a `cosignature/v1` signs: the header, `time T`, then the note text.
pub fn cosignature_message(time: u64, note_text: &str) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}time {time}\n{note_text}").into_bytes()
}

/// A key that signs notes: a log's Ed25519 key (type `0x01`) or a witness's
/// cosigning key (type `0x04`).
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    sig_type: u8,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("type", &self.sig_type)
            .field("id", &crate::text::hex(&self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A log signer with plain Ed25519 note signatures.
    pub fn ed25519(name: &str, key: SigningKey) -> Result<Self> {
        Self::new(name, key, TYPE_ED25519)
    }

    /// A witness signer with `tlog-cosignature/v1` signatures.
    pub fn cosigner(name: &str, key: SigningKey) -> Result<Self> {
        Self::new(name, key, TYPE_COSIGNATURE_V1)
    }

    fn new(name: &str, key: SigningKey, sig_type: u8) -> Result<Self> {
        check_key_name(name)?;
        let id = key_id(name, sig_type, &key.verifying_key().to_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            sig_type,
            id,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key in the signed-note text form
    /// `name+hex(key id)+base64(type ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let mut material = vec![self.sig_type];
        material.extend_from_slice(&self.key.verifying_key().to_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            crate::text::hex(&self.id),
            STANDARD.encode(material)
        )
    }

    /// Signs `text` (a note text) as a plain Ed25519 note signature. Fails with
    /// `invalid_field` for a cosigner, whose signatures need a time.
    pub fn sign_text(&self, text: &str) -> Result<NoteSignature> {
        if self.sig_type != TYPE_ED25519 {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a cosigner signs with a time: use `cosign`",
            ));
        }
        let mut bytes = self.id.to_vec();
        bytes.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            bytes,
        })
    }

    /// A `cosignature/v1` over a note text at `time` (POSIX seconds, < 2^63).
    pub fn cosign(&self, text: &str, time: u64) -> Result<NoteSignature> {
        if self.sig_type != TYPE_COSIGNATURE_V1 || time > i64::MAX as u64 {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "only a cosigner cosigns, at a time below 2^63",
            ));
        }
        let sig = self.key.sign(&cosignature_message(time, text));
        let mut bytes = self.id.to_vec();
        bytes.extend_from_slice(&time.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            bytes,
        })
    }
}

/// A trusted key that verifies notes, parsed from its text form
/// `name+hex(key id)+base64(type ‖ public key)` (type `0x01` or `0x04`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    sig_type: u8,
    key: PublicKey,
}

impl NoteVerifier {
    /// Parses a verifier key. Fails with `malformed` for another shape,
    /// `unsupported_version` for another signature type, `weak_key` for an unusable
    /// public key and `invalid_field` for a key id that does not match the key.
    pub fn parse(text: &str) -> Result<Self> {
        // The base64 material may itself hold `+`: split off the name and id only.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "a verifier key is `name+keyid+base64(type || public key)`",
            ));
        };
        check_key_name(name)?;
        let id: [u8; 4] = crate::text::parse_hex(id_hex, "verifier key id")?;
        let material = STANDARD
            .decode(material)
            .map_err(|_| malformed("the verifier key's material is not canonical base64"))?;
        let (sig_type, key) = match material.split_first() {
            Some((&t, key)) if t == TYPE_ED25519 || t == TYPE_COSIGNATURE_V1 => (t, key),
            _ => {
                return Err(Error::new(
                    ErrorCode::UnsupportedVersion,
                    "only Ed25519 (0x01) and cosignature/v1 (0x04) verifier keys are supported",
                ));
            }
        };
        let key = PublicKey::from_slice(key)?;
        if key_id(name, sig_type, &key.to_bytes()) != id {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "the verifier key's id is not the hash of its name and public key",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            sig_type,
            key,
        })
    }

    /// The verifier of a log's plain Ed25519 note signatures (type `0x01`).
    pub fn ed25519(name: &str, key: PublicKey) -> Result<Self> {
        Self::with_type(name, TYPE_ED25519, key)
    }

    /// The verifier of a witness's `cosignature/v1` signatures (type `0x04`).
    pub fn cosigner(name: &str, key: PublicKey) -> Result<Self> {
        Self::with_type(name, TYPE_COSIGNATURE_V1, key)
    }

    fn with_type(name: &str, sig_type: u8, key: PublicKey) -> Result<Self> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, sig_type, &key.to_bytes()),
            sig_type,
            key,
        })
    }

    /// The verifier key in its text form (what [`NoteVerifier::parse`] reads).
    pub fn to_text(&self) -> String {
        let mut material = vec![self.sig_type];
        material.extend_from_slice(&self.key.to_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            crate::text::hex(&self.id),
            STANDARD.encode(material)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this verifies `cosignature/v1` cosignatures (type `0x04`).
    pub fn is_cosigner(&self) -> bool {
        self.sig_type == TYPE_COSIGNATURE_V1
    }

    fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.bytes.get(..4) == Some(&self.id[..])
    }

    /// Verifies one signature of this key over `text`; returns the cosignature's
    /// time (0 for a plain Ed25519 signature). `bad_signature` if it does not verify.
    fn verify(&self, text: &str, sig: &NoteSignature) -> Result<u64> {
        let bad = || {
            Error::new(
                ErrorCode::BadSignature,
                format!("the note signature of `{}` does not verify", self.name),
            )
        };
        let body = sig.bytes.get(4..).ok_or_else(bad)?;
        if self.sig_type == TYPE_ED25519 {
            let s: &[u8; 64] = body.try_into().map_err(|_| bad())?;
            self.key
                .verify_strict(text.as_bytes(), s)
                .map_err(|_| bad())?;
            return Ok(0);
        }
        let (time, s) = body.split_at_checked(8).ok_or_else(bad)?;
        let time = u64::from_be_bytes(time.try_into().map_err(|_| bad())?);
        let s: &[u8; 64] = s.try_into().map_err(|_| bad())?;
        if time > i64::MAX as u64 {
            return Err(bad());
        }
        self.key
            .verify_strict(&cosignature_message(time, text), s)
            .map_err(|_| bad())?;
        Ok(time)
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// Key id (4 bytes) then the signature (and, for a cosignature, its time).
    pub bytes: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, with its final newline.
    pub fn line(&self) -> String {
        format!("{DASH}{} {}\n", self.name, STANDARD.encode(&self.bytes))
    }
}

/// A signed note: its text (ending in a newline) and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A signature that verified: the key's name and, for a cosignature, its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// Name of the key that signed.
    pub name: String,
    /// Time of a cosignature (POSIX seconds); 0 for a plain signature.
    pub time: u64,
}

impl SignedNote {
    /// Signs `text` with each plain Ed25519 signer.
    pub fn sign(text: String, signers: &[&NoteSigner]) -> Result<Self> {
        check_text(&text)?;
        let signatures = signers
            .iter()
            .map(|s| s.sign_text(&text))
            .collect::<Result<_>>()?;
        Ok(Self { text, signatures })
    }

    /// Parses a signed note strictly: UTF-8 without control characters other than
    /// newline, at most [`MAX_NOTE_BYTES`], a text ending in a newline, a blank line,
    /// then 1 to [`MAX_NOTE_SIGNATURES`] lines `— name base64`. Errors are `malformed`
    /// or `too_large`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("a note is at most {MAX_NOTE_BYTES} bytes"),
            ));
        }
        let all = std::str::from_utf8(bytes).map_err(|_| malformed("a note must be UTF-8"))?;
        if all.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed(
                "a note holds no control characters other than newline",
            ));
        }
        let split = all
            .rfind("\n\n")
            .ok_or_else(|| malformed("a note has no blank line before its signatures"))?;
        let (text, sigs) = (
            all.get(..=split).unwrap_or(""),
            all.get(split + 2..).unwrap_or(""),
        );
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(malformed(
                "a note's signature lines each end in a newline, and there is at least one",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs.split_terminator('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(Error::new(
                    ErrorCode::TooLarge,
                    format!("a note carries at most {MAX_NOTE_SIGNATURES} signatures"),
                ));
            }
            let rest = line.strip_prefix(DASH).ok_or_else(|| {
                malformed(format!(
                    "a signature line starts with an em dash and a space: `{}`",
                    preview(line)
                ))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("a signature line is `— name base64`"))?;
            check_key_name(name).map_err(|e| malformed(e.message().to_owned()))?;
            let bytes = STANDARD.decode(b64).map_err(|_| {
                malformed(format!(
                    "the signature of `{}` is not canonical base64",
                    preview(name)
                ))
            })?;
            if bytes.len() < 5 {
                return Err(malformed(
                    "a note signature holds a 4-byte key id and a signature",
                ));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                bytes,
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text, with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line (for example a witness's cosignature).
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<()> {
        check_key_name(&sig.name)?;
        if self.signatures.len() == MAX_NOTE_SIGNATURES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("a note carries at most {MAX_NOTE_SIGNATURES} signatures"),
            ));
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn encode(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Verifies the signatures of the known keys. Signatures of unknown keys (another
    /// name or key id) are ignored, as the specification requires; a known key whose
    /// signature fails rejects the whole note (`bad_signature`); no verified signature
    /// from a known key is `unknown_key`. Returns the verified signatures.
    pub fn verify(&self, known: &[&NoteVerifier]) -> Result<Vec<VerifiedSignature>> {
        let mut verified = Vec::new();
        for sig in &self.signatures {
            for key in known.iter().filter(|k| k.matches(sig)) {
                let time = key.verify(&self.text, sig)?;
                verified.push(VerifiedSignature {
                    name: key.name.clone(),
                    time,
                });
            }
        }
        if verified.is_empty() {
            return Err(Error::new(
                ErrorCode::UnknownKey,
                "no signature on the note is from a known key",
            ));
        }
        Ok(verified)
    }
}

fn check_text(text: &str) -> Result<()> {
    if !text.ends_with('\n') {
        return Err(malformed("a note text ends in a newline"));
    }
    Ok(())
}

/// A checkpoint (c2sp.org/tlog-checkpoint): origin, tree size, root hash and optional
/// extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// Builds a checkpoint; fails with `invalid_field` for an empty origin or
    /// extension line, or one holding a newline or a control character.
    pub fn new(origin: &str, size: u64, root: Hash, extensions: Vec<String>) -> Result<Self> {
        for line in std::iter::once(origin).chain(extensions.iter().map(String::as_str)) {
            if line.is_empty() || line.chars().any(char::is_control) {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    format!(
                        "a checkpoint line is non-empty and has no control characters: `{}`",
                        preview(line)
                    ),
                ));
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The origin line (the log's identity).
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// Number of entries in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The Merkle tree hash.
    pub fn root(&self) -> &Hash {
        &self.root
    }
    /// Extension lines, in order.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `origin\nsize\nbase64(root)\n` then each extension line.
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses a note text strictly (the only encoding [`Checkpoint::body`] writes):
    /// `malformed` for a missing line, `non_canonical` for a size with a sign or
    /// leading zero or a root that is not 32 bytes of padded standard base64.
    pub fn parse_body(text: &str) -> Result<Self> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("a checkpoint ends in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(malformed(
                "a checkpoint has an origin, a size and a root hash line",
            ));
        };
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NonCanonical,
                    format!(
                        "a checkpoint's size is a decimal without leading zeros: `{}`",
                        preview(size)
                    ),
                )
            })?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NonCanonical,
                    "a checkpoint's root is 32 bytes of padded base64",
                )
            })?;
        Self::new(origin, size, root, lines.map(str::to_owned).collect())
            .map_err(|e| malformed(e.message().to_owned()))
    }

    /// Parses a signed checkpoint, checks that its origin is `origin` (else
    /// `wrong_audience`) and that `log_key` signed it (see [`SignedNote::verify`]).
    /// Returns the checkpoint and the note (to verify cosignatures on it).
    pub fn open(note: &[u8], origin: &str, log_key: &NoteVerifier) -> Result<(Self, SignedNote)> {
        let note = SignedNote::parse(note)?;
        let cp = Self::parse_body(note.text())?;
        if cp.origin != origin {
            return Err(Error::new(
                ErrorCode::WrongAudience,
                format!(
                    "the checkpoint is of log `{}`, not `{}`",
                    preview(&cp.origin),
                    preview(origin)
                ),
            ));
        }
        if log_key.is_cosigner() {
            return Err(Error::new(
                ErrorCode::WrongRole,
                "a log signs its checkpoints with a plain Ed25519 key",
            ));
        }
        note.verify(&[log_key])?;
        Ok((cp, note))
    }
}

/// Splits a sequence of signed notes, each followed by one empty line (a file of
/// published checkpoints), fed a line at a time without its line end: a note is its
/// text, the empty line and its signature lines, and ends at the next empty line.
#[derive(Debug, Default)]
pub struct NoteLines {
    note: String,
    in_signatures: bool,
}

impl NoteLines {
    /// The next line; returns the note it completes (without the empty line that
    /// follows it). A note over [`MAX_NOTE_BYTES`] or an empty one is `malformed`.
    pub fn push(&mut self, line: &str) -> Result<Option<String>> {
        if line.is_empty() {
            if self.in_signatures {
                self.in_signatures = false;
                return Ok(Some(std::mem::take(&mut self.note)));
            }
            if self.note.is_empty() {
                return Err(Error::new(ErrorCode::Malformed, "an empty note"));
            }
            self.in_signatures = true;
        }
        self.note.push_str(line);
        self.note.push('\n');
        if self.note.len() > MAX_NOTE_BYTES {
            return Err(Error::new(
                ErrorCode::Malformed,
                format!("a note longer than {MAX_NOTE_BYTES} bytes"),
            ));
        }
        Ok(None)
    }

    /// Ends the sequence: `malformed` if it ends inside a note (a write was cut off).
    pub fn finish(&self) -> Result<()> {
        if self.note.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::Malformed,
                "the notes end inside a note (a write was cut off)",
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::ed25519("gk.example/audit", SigningKey::from_bytes(&[3; 32])).unwrap()
    }

    fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn checkpoint_round_trips_and_verifies() {
        let s = signer();
        let v = NoteVerifier::parse(&s.verifier_key()).unwrap();
        let cp = Checkpoint::new(
            "gk.example/audit",
            20852163,
            [5; 32],
            vec!["ext one".into()],
        )
        .unwrap();
        let text = SignedNote::sign(cp.body(), &[&s]).unwrap().encode();
        assert!(text.starts_with("gk.example/audit\n20852163\nBQUF"));
        assert!(text.contains("\n\n\u{2014} gk.example/audit "));
        let (back, note) = Checkpoint::open(text.as_bytes(), "gk.example/audit", &v).unwrap();
        assert_eq!(back, cp);
        assert_eq!(note.encode(), text);
        assert_eq!(
            code(Checkpoint::open(text.as_bytes(), "other", &v)),
            ErrorCode::WrongAudience
        );
        // A changed size no longer verifies.
        let forged = text.replacen("20852163", "20852162", 1);
        assert_eq!(
            code(Checkpoint::open(forged.as_bytes(), "gk.example/audit", &v)),
            ErrorCode::BadSignature
        );
        // Another key with the same name is unknown (another key id).
        let other =
            NoteSigner::ed25519("gk.example/audit", SigningKey::from_bytes(&[4; 32])).unwrap();
        let ov = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert_eq!(
            code(Checkpoint::open(text.as_bytes(), "gk.example/audit", &ov)),
            ErrorCode::UnknownKey
        );
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        let root = STANDARD.encode([1u8; 32]);
        for (bad, want) in [
            (format!("o\n01\n{root}\n"), ErrorCode::NonCanonical),
            (format!("o\n+1\n{root}\n"), ErrorCode::NonCanonical),
            (
                format!("o\n1\n{}\n", STANDARD.encode([1u8; 31])),
                ErrorCode::NonCanonical,
            ),
            (
                format!("o\n1\n{}\n", root.trim_end_matches('=')),
                ErrorCode::NonCanonical,
            ),
            (format!("o\n1\n{root}"), ErrorCode::Malformed),
            ("o\n1\n".to_owned(), ErrorCode::Malformed),
            (format!("\n1\n{root}\n"), ErrorCode::Malformed),
            (format!("o\n1\n{root}\n\n"), ErrorCode::Malformed),
        ] {
            assert_eq!(code(Checkpoint::parse_body(&bad)), want, "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n0\n{root}\n"))
                .unwrap()
                .size(),
            0
        );
    }

    #[test]
    fn notes_are_strict() {
        let s = signer();
        let good = SignedNote::sign("hello\n".into(), &[&s]).unwrap().encode();
        SignedNote::parse(good.as_bytes()).unwrap();
        for bad in [
            good.replace('\u{2014}', "-"),
            good.replacen("\n\n", "\n", 1),
            good.trim_end().to_owned(),
            good.replacen("hello", "he\tllo", 1),
            format!("{good}\u{2014} x\n"),
            good.replacen(" gk.example/audit ", " gk.example/audit  ", 1),
        ] {
            assert!(SignedNote::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            code(SignedNote::parse(&[0xff, b'\n', b'\n'])),
            ErrorCode::Malformed
        );
        let many = format!(
            "t\n\n{}",
            s.sign_text("t\n")
                .unwrap()
                .line()
                .repeat(MAX_NOTE_SIGNATURES + 1)
        );
        assert_eq!(
            code(SignedNote::parse(many.as_bytes())),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn cosignatures_verify_with_their_time() {
        let w =
            NoteSigner::cosigner("witness.example/w1", SigningKey::from_bytes(&[8; 32])).unwrap();
        let wv = NoteVerifier::parse(&w.verifier_key()).unwrap();
        assert!(wv.is_cosigner());
        let s = signer();
        let cp = Checkpoint::new("gk.example/audit", 2, [1; 32], Vec::new()).unwrap();
        let mut note = SignedNote::sign(cp.body(), &[&s]).unwrap();
        note.add_signature(w.cosign(note.text(), 1_679_315_147).unwrap())
            .unwrap();
        let parsed = SignedNote::parse(note.encode().as_bytes()).unwrap();
        let got = parsed.verify(&[&wv]).unwrap();
        assert_eq!(
            got,
            vec![VerifiedSignature {
                name: "witness.example/w1".into(),
                time: 1_679_315_147
            }]
        );
        assert_eq!(parsed.signatures()[1].bytes.len(), 4 + 8 + 64);
        // The time is signed.
        let mut forged = parsed.clone();
        forged.signatures[1].bytes[11] ^= 1;
        assert_eq!(code(forged.verify(&[&wv])), ErrorCode::BadSignature);
        assert_eq!(code(w.sign_text("x\n")), ErrorCode::InvalidField);
        assert_eq!(code(s.cosign("x\n", 1)), ErrorCode::InvalidField);
        // A witness key is not a log key.
        assert_eq!(
            code(Checkpoint::open(
                note.encode().as_bytes(),
                "gk.example/audit",
                &wv
            )),
            ErrorCode::WrongRole
        );
    }

    #[test]
    fn verifier_keys_are_checked() {
        let good = signer().verifier_key();
        NoteVerifier::parse(&good).unwrap();
        let mut parts: Vec<String> = good.split('+').map(str::to_owned).collect();
        parts[1] = "00000000".into();
        assert_eq!(
            code(NoteVerifier::parse(&parts.join("+"))),
            ErrorCode::InvalidField
        );
        assert_eq!(code(NoteVerifier::parse("a+b")), ErrorCode::Malformed);
        let small_order = format!(
            "n+{}+{}",
            crate::text::hex(&key_id("n", 1, &[0; 32])),
            STANDARD.encode([&[1u8][..], &[0; 32]].concat())
        );
        assert_eq!(code(NoteVerifier::parse(&small_order)), ErrorCode::WeakKey);
        let ecdsa = format!("n+00000000+{}", STANDARD.encode([2u8; 33]));
        assert_eq!(
            code(NoteVerifier::parse(&ecdsa)),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            code(NoteSigner::ed25519("a b", SigningKey::from_bytes(&[1; 32]))),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(NoteSigner::ed25519("a+b", SigningKey::from_bytes(&[1; 32]))),
            ErrorCode::InvalidField
        );
    }
    #[test]
    fn note_lines_split_a_file_of_notes() {
        let mut n = NoteLines::default();
        let text = "o\n1\nAA=\n\n— k sig\n\no\n2\nBB=\n\n— k sig2\n\no\n3\n";
        let mut notes = Vec::new();
        for line in text.lines() {
            if let Some(note) = n.push(line).unwrap() {
                notes.push(note);
            }
        }
        assert_eq!(notes, ["o\n1\nAA=\n\n— k sig\n", "o\n2\nBB=\n\n— k sig2\n"]);
        assert_eq!(n.finish().unwrap_err().code(), ErrorCode::Malformed);
        assert_eq!(
            NoteLines::default().push("").unwrap_err().code(),
            ErrorCode::Malformed
        );
        let mut long = NoteLines::default();
        assert!(long.push(&"x".repeat(MAX_NOTE_BYTES)).is_err());
    }
}
