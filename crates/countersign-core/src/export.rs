//! Verifying an audit export (`docs/PROTOCOL.md`, "Verifying an export"): the JSONL
//! of `GET /v1/audit/export`, read once in constant memory, line by line or in chunks
//! of any size (a browser `File`'s stream, standard input), fed to a [`LogVerifier`].
//! The vendor CLI (`countersign audit verify EXPORT`), the gatekeeper's
//! `audit verify --file` and the browser client all verify with this one type.
//!
//! Each line is one flat JSON object. Only its `type` and the members that type carries
//! are read (`entry`; `checkpoint` and `signatures`; `note`); an entry's readable
//! members are not what is verified and are skipped. Errors keep the code of the
//! check that failed and name the line: `line 7 of the export: …`.
//!
//! The members are read by a small scanner for flat objects rather than serde_json:
//! the shape is fixed, and serde's error formatting alone was ~20 KB of the browser
//! client's `.wasm` (`BENCHMARKS.md`, "Size").
//!
//! ```
//! use countersign_core::export::ExportVerifier;
//! use countersign_core::signature::PublicKey;
//! use countersign_core::{AuthorizedKey, ErrorCode, KeyId, Keyring, Policy, Role};
//! let key = countersign_core::ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let public = PublicKey::from_bytes(&key.verifying_key().to_bytes())?;
//! let gatekeeper = Policy::new(
//!     Keyring::new([AuthorizedKey {
//!         key_id: KeyId::parse("gatekeeper-1")?,
//!         role: Role::gatekeeper(),
//!         public_key: public,
//!         not_before: None,
//!         not_after: None,
//!     }])?,
//!     [(Role::gatekeeper(), 1)],
//! )?;
//! let mut v = ExportVerifier::new(&gatekeeper, vec![public], Vec::new(), 0);
//! // Chunks split lines anywhere; an unknown line type is refused, naming its line.
//! v.chunk(b"\n{\"type\":\"comm")?;
//! let e = v.chunk(b"ent\"}\n").unwrap_err();
//! assert_eq!(e.code(), ErrorCode::Malformed);
//! assert!(e.message().starts_with("line 2 of the export: "));
//! # Ok::<(), countersign_core::Error>(())
//! ```

use crate::audit::AuditEntry;
use crate::error::{Error, ErrorCode, Result};
use crate::log_verify::{LogReport, LogVerifier, trust_for_note};
use crate::note::NoteVerifier;
use crate::policy::Policy;
use crate::signature::{PublicKey, parse_list};
use crate::text::{parse_b64, preview};

/// The longest export line accepted, in bytes: an entry (at most 64 KiB, base64url)
/// with its readable members fits many times over; the bound keeps memory constant.
pub const MAX_EXPORT_LINE: usize = 1 << 20;

/// The one-pass verifier of an export; see the module documentation.
#[derive(Debug)]
pub struct ExportVerifier<'a> {
    log: LogVerifier<'a>,
    /// The keys that may have signed the tree checkpoint, tried in turn.
    log_keys: Vec<PublicKey>,
    witnesses: Vec<NoteVerifier>,
    quorum: usize,
    /// Lines read (whole ones).
    lines: u64,
    bytes: u64,
    /// The start of a line whose end has not come yet (at most [`MAX_EXPORT_LINE`]).
    partial: Vec<u8>,
    /// The first failure: every later call returns it again.
    failed: Option<Error>,
}

impl<'a> ExportVerifier<'a> {
    /// A verifier whose chain checkpoints `gatekeeper` must have signed and whose tree
    /// checkpoint one of `log_keys` (the gatekeeper's public keys) signed, cosigned by
    /// `quorum` of `witnesses`.
    pub fn new(
        gatekeeper: &'a Policy,
        log_keys: Vec<PublicKey>,
        witnesses: Vec<NoteVerifier>,
        quorum: usize,
    ) -> Self {
        Self::with(LogVerifier::new(gatekeeper), log_keys, witnesses, quorum)
    }

    /// As [`Self::new`], holding the policy (see [`LogVerifier::owning`]).
    pub fn owning(
        gatekeeper: Policy,
        log_keys: Vec<PublicKey>,
        witnesses: Vec<NoteVerifier>,
        quorum: usize,
    ) -> ExportVerifier<'static> {
        ExportVerifier::with(LogVerifier::owning(gatekeeper), log_keys, witnesses, quorum)
    }

    fn with(
        log: LogVerifier<'a>,
        log_keys: Vec<PublicKey>,
        witnesses: Vec<NoteVerifier>,
        quorum: usize,
    ) -> Self {
        Self {
            log,
            log_keys,
            witnesses,
            quorum,
            lines: 0,
            bytes: 0,
            partial: Vec::new(),
            failed: None,
        }
    }

    /// Entries verified so far.
    pub fn entries(&self) -> u64 {
        self.log.entries()
    }

    /// Bytes given so far (to [`Self::chunk`] and [`Self::line`], newlines counted).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next piece of the export, split anywhere (inside a line, inside a UTF-8
    /// character): every line it completes is verified.
    pub fn chunk(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.check_failed()?;
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end);
            bytes = rest.get(1..).unwrap_or_default();
            if self.partial.is_empty() {
                self.line(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                self.bytes = self.bytes.saturating_sub(whole.len() as u64);
                whole.extend_from_slice(line);
                let result = self.line(&whole);
                // Keep the allocation for the next split line.
                whole.clear();
                self.partial = whole;
                result?;
            }
            self.bytes += 1;
        }
        if self.partial.len() + bytes.len() > MAX_EXPORT_LINE {
            return self.fail(too_long(self.lines + 1));
        }
        self.partial.extend_from_slice(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// One whole line, without its `\n` (a `\r` before it is JSON whitespace); a blank
    /// line is skipped. Returns the entry the line held, parsed and verified.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<AuditEntry>> {
        self.check_failed()?;
        self.lines += 1;
        self.bytes += line.len() as u64;
        if line.len() > MAX_EXPORT_LINE {
            return self.fail(too_long(self.lines));
        }
        match self.verify_line(line) {
            Ok(entry) => Ok(entry),
            Err(e) => {
                let message = format!("line {} of the export: {}", self.lines, e.message());
                self.fail(Error::new(e.code(), message))
            }
        }
    }

    /// Ends the export (verifying a last line without its `\n`): fails if the tree
    /// checkpoint covers more entries than there were.
    pub fn finish(mut self) -> Result<LogReport> {
        self.check_failed()?;
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.bytes = self.bytes.saturating_sub(last.len() as u64);
            self.line(&last)?;
        }
        self.log.finish()
    }

    fn check_failed(&self) -> Result<()> {
        self.failed.clone().map_or(Ok(()), Err)
    }

    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.failed = Some(e.clone());
        Err(e)
    }

    fn verify_line(&mut self, line: &[u8]) -> Result<Option<AuditEntry>> {
        if line.iter().all(|b| is_space(*b)) {
            return Ok(None);
        }
        let l = ExportLine::parse(line)?;
        match l.kind.as_str() {
            "entry" => {
                // An entry's readable members include `signatures` (of its request).
                let entry = l.required(&l.entry, "entry")?;
                self.log.entry(&parse_b64(entry, "entry")?).map(Some)
            }
            "checkpoint" => {
                l.only(&["checkpoint", "signatures"])?;
                let body = parse_b64(l.required(&l.checkpoint, "checkpoint")?, "checkpoint")?;
                let signatures = parse_list(l.required(&l.signatures, "signatures")?)?;
                self.log.chain_checkpoint(&body, &signatures)?;
                Ok(None)
            }
            "tree_checkpoint" => {
                l.only(&["note"])?;
                self.tree_checkpoint(l.required(&l.note, "note")?.as_bytes())?;
                Ok(None)
            }
            other => Err(Error::new(
                ErrorCode::Malformed,
                format!("unknown line type `{}`", preview(other)),
            )),
        }
    }

    /// Opens the tree checkpoint with the first of the log keys that signed it.
    fn tree_checkpoint(&mut self, note: &[u8]) -> Result<()> {
        let mut result = Err(Error::new(
            ErrorCode::UnknownKey,
            "none of the gatekeeper's keys signed the tree checkpoint",
        ));
        for key in &self.log_keys {
            let trust = trust_for_note(note, *key, self.witnesses.clone(), self.quorum)?;
            result = self.log.tree_checkpoint(note, &trust);
            if !matches!(&result, Err(e) if e.code() == ErrorCode::UnknownKey) {
                break;
            }
        }
        result
    }
}

/// The members of one line that a verifier reads.
#[derive(Debug, Default)]
struct ExportLine {
    kind: String,
    entry: Option<String>,
    checkpoint: Option<String>,
    signatures: Option<String>,
    note: Option<String>,
}

const MEMBERS: [&str; 4] = ["entry", "checkpoint", "signatures", "note"];

fn too_long(line: u64) -> Error {
    malformed(format!(
        "line {line} of the export is longer than {MAX_EXPORT_LINE} bytes"
    ))
}

fn malformed(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Malformed, message)
}

impl ExportLine {
    /// Parses one flat JSON object (RFC 8259): string, number, `true`, `false` and
    /// `null` values; a nested value, a repeated read member or trailing bytes are
    /// `malformed`.
    fn parse(line: &[u8]) -> Result<Self> {
        let mut s = Scanner { b: line, i: 0 };
        let mut kind = None;
        let mut out = Self::default();
        s.expect(b'{')?;
        if s.peek() != Some(b'}') {
            loop {
                let name = s.string()?;
                s.expect(b':')?;
                let slot = match name.as_str() {
                    "type" => Some(&mut kind),
                    "entry" => Some(&mut out.entry),
                    "checkpoint" => Some(&mut out.checkpoint),
                    "signatures" => Some(&mut out.signatures),
                    "note" => Some(&mut out.note),
                    _ => None,
                };
                match slot {
                    Some(slot) => {
                        if slot.is_some() {
                            return Err(malformed(format!("the member `{name}` appears twice")));
                        }
                        if s.peek() != Some(b'"') {
                            return Err(malformed(format!("the member `{name}` is not a string")));
                        }
                        *slot = Some(s.string()?);
                    }
                    None => s.skip_scalar()?,
                }
                match s.next_token()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return Err(malformed("expected `,` or `}` in the JSON object")),
                }
            }
        } else {
            s.i += 1;
        }
        s.skip_space();
        if s.i != line.len() {
            return Err(malformed("bytes after the JSON object"));
        }
        out.kind = kind.ok_or_else(|| malformed("a line without its `type`"))?;
        Ok(out)
    }

    /// Fails if a checkpoint line carries one of the read members that its type does
    /// not have.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        let present = [&self.entry, &self.checkpoint, &self.signatures, &self.note];
        for (name, value) in MEMBERS.iter().zip(present) {
            if value.is_some() && !allowed.contains(name) {
                return Err(malformed(format!(
                    "the member `{name}` in a `{}` line",
                    self.kind
                )));
            }
        }
        Ok(())
    }

    fn required<'v>(&self, value: &'v Option<String>, name: &str) -> Result<&'v str> {
        value
            .as_deref()
            .ok_or_else(|| malformed(format!("a `{}` line without its `{name}`", self.kind)))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A cursor over one line's bytes.
struct Scanner<'b> {
    b: &'b [u8],
    i: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while self.b.get(self.i).copied().is_some_and(is_space) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.b.get(self.i).copied()
    }

    fn next_token(&mut self) -> Result<u8> {
        let b = self
            .peek()
            .ok_or_else(|| malformed("the JSON object ends early"))?;
        self.i += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        if self.next_token()? != want {
            return Err(malformed(format!(
                "expected `{}` in the JSON object",
                char::from(want)
            )));
        }
        Ok(())
    }

    /// A JSON string, unescaped; it must be valid UTF-8 and hold no lone surrogate.
    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let start = self.i;
            while self
                .b
                .get(self.i)
                .is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20)
            {
                self.i += 1;
            }
            out.extend_from_slice(self.b.get(start..self.i).unwrap_or_default());
            let b = self
                .b
                .get(self.i)
                .copied()
                .ok_or_else(|| malformed("a JSON string is not closed"))?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                _ => return Err(malformed("a control character inside a JSON string")),
            }
        }
        String::from_utf8(out).map_err(|_| malformed("a JSON string is not UTF-8"))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let b = self
            .b
            .get(self.i)
            .copied()
            .ok_or_else(|| malformed("a JSON string is not closed"))?;
        self.i += 1;
        let c = match b {
            b'"' | b'\\' | b'/' => char::from(b),
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    let low = match (self.b.get(self.i), self.b.get(self.i + 1)) {
                        (Some(b'\\'), Some(b'u')) => {
                            self.i += 2;
                            self.hex4()?
                        }
                        _ => 0,
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(malformed("a lone surrogate in a JSON string"));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                char::from_u32(code)
                    .ok_or_else(|| malformed("a lone surrogate in a JSON string"))?
            }
            _ => return Err(malformed("an unknown escape in a JSON string")),
        };
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| malformed("a short `\\u` escape in a JSON string"))?;
        self.i += 4;
        digits.iter().try_fold(0, |n, &d| {
            char::from(d)
                .to_digit(16)
                .map(|v| n * 16 + v)
                .ok_or_else(|| malformed("a bad `\\u` escape in a JSON string"))
        })
    }

    /// Skips a string, number, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => Err(malformed("a nested JSON value, which no export line has")),
            Some(b't' | b'f' | b'n') => {
                let rest = self.b.get(self.i..).unwrap_or_default();
                let word = [&b"true"[..], b"false", b"null"]
                    .into_iter()
                    .find(|w| rest.starts_with(w))
                    .ok_or_else(|| malformed("a bad literal in the JSON object"))?;
                self.i += word.len();
                Ok(())
            }
            _ => self.number(),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<()> {
        let bad = || malformed("a bad number in the JSON object");
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(bad()),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(bad());
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(bad());
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::log_verify::tests::{Keys, chain_checkpoint, keys, log, tree_note};
    use crate::signature::SignatureEntry;
    use crate::text::b64;

    fn pk(k: &Keys) -> PublicKey {
        PublicKey::from_bytes(&k.chain.verifying_key().to_bytes()).unwrap()
    }

    /// A JSON string literal, as serde_json writes one (non-ASCII as is).
    fn json(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn entry_line(e: &[u8]) -> String {
        let seq = AuditEntry::parse(e).unwrap().seq;
        format!(
            r#"{{"type":"entry","seq":{seq},"subject":"user-1","bytes":1.5e0,"x":null,"entry":"{}"}}"#,
            b64(e)
        )
    }

    fn checkpoint_line((body, sig): &(Vec<u8>, SignatureEntry)) -> String {
        format!(
            r#"{{"type":"checkpoint","checkpoint":"{}","signatures":"{}"}}"#,
            b64(body),
            crate::signature::encode_list(std::slice::from_ref(sig))
        )
    }

    /// The export of `entries` (as the gatekeeper writes it): the tree checkpoint of
    /// the first `tree` entries, and chain checkpoints after entries `at`.
    fn export(k: &Keys, entries: &[Vec<u8>], tree: u64, at: &[u64]) -> Vec<String> {
        let note = String::from_utf8(tree_note(k, entries, tree)).unwrap();
        let mut lines = vec![format!(
            r#"{{"type":"tree_checkpoint","note":{}}}"#,
            json(&note)
        )];
        for (seq, e) in entries.iter().enumerate() {
            lines.push(entry_line(e));
            if at.contains(&(seq as u64)) {
                lines.push(checkpoint_line(&chain_checkpoint(k, entries, seq as u64)));
            }
        }
        lines
    }

    fn verify(k: &Keys, lines: &[String], chunk: usize) -> Result<LogReport> {
        let text = lines.join("\n") + "\n";
        let mut v = ExportVerifier::new(&k.policy, vec![pk(k)], Vec::new(), 0);
        for c in text.as_bytes().chunks(chunk) {
            v.chunk(c)?;
        }
        v.finish()
    }

    fn message(r: Result<LogReport>) -> (ErrorCode, String) {
        let e = r.unwrap_err();
        (e.code(), e.message().to_owned())
    }

    #[test]
    fn a_good_export_verifies_in_chunks_of_any_size() {
        let k = keys();
        let entries = log(40);
        let lines = export(&k, &entries, 30, &[9, 39]);
        let whole = verify(&k, &lines, usize::MAX).unwrap();
        assert_eq!(
            (whole.entries, whole.tree_size, whole.chain_checkpoints),
            (40, Some(30), 2)
        );
        let tree = crate::merkle::MemoryTree::from_leaves(
            entries
                .iter()
                .map(|e| crate::merkle::leaf_hash(e))
                .collect(),
        );
        assert_eq!(whole.tree_root, Some(tree.root(30).unwrap()));
        // Lines split across chunks anywhere, even inside the note's `—` (UTF-8).
        for chunk in [1, 2, 3, 7, 64, 1000, 4096] {
            assert_eq!(verify(&k, &lines, chunk).unwrap(), whole, "chunk {chunk}");
        }
        // Without the final newline, with CRLF, blank lines and `\u` escapes.
        let text = lines.join("\r\n\r\n").replace("—", "\\u2014");
        let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
        v.chunk(text.as_bytes()).unwrap();
        // The last line (the final chain checkpoint) waits for its end.
        assert_eq!(v.entries(), 40);
        assert_eq!(v.bytes(), text.len() as u64);
        assert_eq!(v.finish().unwrap(), whole);
        // Line by line; the entry comes back parsed.
        let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
        assert!(v.line(lines[0].as_bytes()).unwrap().is_none());
        assert_eq!(v.line(lines[1].as_bytes()).unwrap().unwrap().seq, 0);
    }

    #[test]
    fn each_attack_on_an_export_fails_with_its_code_and_line() {
        let k = keys();
        let entries = log(20);
        let lines = export(&k, &entries, 20, &[9, 19]);
        let at = |seq: u64| {
            lines
                .iter()
                .position(|l| l.contains(&format!("\"seq\":{seq},")))
                .unwrap()
        };
        // A rewritten entry: its bytes changed (`bytes:3` → `bytes:4`), chain not redone.
        let mut rewritten = lines.clone();
        let mut e = AuditEntry::parse(&entries[3]).unwrap();
        e.bytes += 1;
        rewritten[at(3)] = entry_line(&e.encode());
        let (code, m) = message(verify(&k, &rewritten, 100));
        assert_eq!(code, ErrorCode::AuditChainBroken);
        assert!(
            m.starts_with(&format!(
                "line {} of the export: audit entry 4 does not chain",
                at(4) + 1
            )),
            "{m}"
        );
        // A middle entry deleted.
        let mut deleted = lines.clone();
        deleted.remove(at(5));
        let (code, m) = message(verify(&k, &deleted, 100));
        assert_eq!(code, ErrorCode::AuditChainBroken);
        assert!(m.contains("audit entry 5 is missing"), "{m}");
        // The tail cut after the last checkpoint was signed (every checkpoint of the
        // cut part dropped too): the tree checkpoint covers more.
        let cut = lines[..at(15)].to_vec();
        let (code, m) = message(verify(&k, &cut, 100));
        assert_eq!(code, ErrorCode::AuditChainBroken);
        assert!(
            m.contains("covers 20 entries, the log ends after 15"),
            "{m}"
        );
        // The tree checkpoint dropped and the last entries cut: the chain checkpoint of
        // entry 19 now follows entry 17.
        let mut tail = lines[1..].to_vec();
        tail.remove(at(18) - 1);
        tail.remove(at(18) - 1);
        let (code, m) = message(verify(&k, &tail, 100));
        assert_eq!(code, ErrorCode::AuditChainBroken);
        assert!(
            m.contains("the checkpoint of entry 19 is not placed"),
            "{m}"
        );
        // A chain checkpoint forged (signed by another key), one of another entry put
        // in its place, and a tree checkpoint signed by another key.
        let mut forged = lines.clone();
        let mut other = keys();
        other.chain = crate::ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        forged[at(9) + 1] = checkpoint_line(&chain_checkpoint(&other, &entries, 9));
        let (code, m) = message(verify(&k, &forged, 100));
        assert_eq!(code, ErrorCode::BadSignature, "{m}");
        assert!(
            m.starts_with(&format!("line {} of the export: ", at(9) + 2)),
            "{m}"
        );
        let mut moved = lines.clone();
        moved[at(9) + 1] = checkpoint_line(&chain_checkpoint(&k, &entries, 8));
        let (code, m) = message(verify(&k, &moved, 100));
        assert_eq!(code, ErrorCode::AuditChainBroken, "{m}");
        assert!(m.contains("the checkpoint of entry 8 is not placed"), "{m}");
        let mut unknown = lines.clone();
        other.note =
            crate::note::NoteSigner::ed25519("gk.acme/audit", other.chain.clone()).unwrap();
        let note = String::from_utf8(tree_note(&other, &entries, 20)).unwrap();
        unknown[0] = format!(r#"{{"type":"tree_checkpoint","note":{}}}"#, json(&note));
        let (code, m) = message(verify(&k, &unknown, 100));
        assert_eq!(code, ErrorCode::UnknownKey, "{m}");
        assert!(m.starts_with("line 1 of the export: "), "{m}");
        // The first failure sticks.
        let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
        assert!(v.chunk(format!("{}\n", unknown[0]).as_bytes()).is_err());
        assert_eq!(
            v.chunk(lines[1].as_bytes()).unwrap_err().code(),
            ErrorCode::UnknownKey
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_the_line_number() {
        let k = keys();
        let entries = log(1);
        let good = entry_line(&entries[0]);
        for (line, want) in [
            ("[]", "expected `{`"),
            ("{\"type\":\"entry\"", "ends early"),
            (
                "{\"type\":\"entry\",\"entry\":\"AA\",\"entry\":\"AA\"}",
                "appears twice",
            ),
            ("{\"type\":1}", "`type` is not a string"),
            ("{\"type\":\"entry\",\"x\":{}}", "nested"),
            ("{\"type\":\"entry\",\"x\":01}", "expected `,` or `}`"),
            ("{\"type\":\"entry\",\"x\":-}", "bad number"),
            ("{\"type\":\"entry\",\"x\":1.e5}", "bad number"),
            ("{\"type\":\"entry\",\"x\":tru}", "bad literal"),
            ("{\"type\":\"entry\"} x", "bytes after"),
            ("{\"type\":\"ent\\u00\"}", "bad `\\u` escape"),
            ("{\"type\":\"\\ud800\"}", "lone surrogate"),
            ("{\"type\":\"\\q\"}", "unknown escape"),
            ("{\"type\":\"a\tb\"}", "control character"),
            ("{\"seq\":1}", "without its `type`"),
            ("{\"type\":\"entry\"}", "without its `entry`"),
            (
                "{\"type\":\"checkpoint\",\"checkpoint\":\"AA\"}",
                "without its `signatures`",
            ),
            (
                "{\"type\":\"tree_checkpoint\",\"note\":\"n\",\"entry\":\"AA\"}",
                "the member `entry` in a `tree_checkpoint` line",
            ),
            ("{\"type\":\"witness\"}", "unknown line type `witness`"),
            ("{\"type\":\"entry\",\"entry\":\"%%\"}", "entry"),
        ] {
            let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
            v.chunk(format!("{good}\n\n").as_bytes()).unwrap();
            let e = v.chunk(format!("{line}\n").as_bytes()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Malformed, "{line}: {e}");
            assert!(
                e.message().starts_with("line 3 of the export: "),
                "{line}: {e}"
            );
            assert!(e.message().contains(want), "{line}: {e}");
        }
        // Invalid UTF-8, and a line past the bound, fed in pieces.
        let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
        assert!(
            v.chunk(b"{\"type\":\"\xff\"}\n")
                .unwrap_err()
                .message()
                .contains("not UTF-8")
        );
        let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
        let piece = vec![b' '; MAX_EXPORT_LINE / 2];
        v.chunk(&piece).unwrap();
        v.chunk(&piece).unwrap();
        let e = v.chunk(b" ").unwrap_err();
        assert!(
            e.message().contains("line 1 of the export is longer than"),
            "{e}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// No line, however broken, panics the verifier.
        #[test]
        fn any_bytes_are_an_answer_never_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let k = keys();
            let mut v = ExportVerifier::new(&k.policy, vec![pk(&k)], Vec::new(), 0);
            let _ = v.chunk(&bytes);
            let _ = v.finish();
            let mut with_type = b"{\"type\":\"entry\",".to_vec();
            with_type.extend_from_slice(&bytes);
            let _ = ExportLine::parse(&with_type);
        }
    }
}
