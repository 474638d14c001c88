//! Audit-log hashing: each entry's canonical bytes (`countersign/v2/audit-entry`,
//! which adds the request id to version 1; both are read) include the SHA-256 of the previous entry, so changing, removing or reordering an
//! entry breaks every later hash; signed checkpoints (`countersign/v1/checkpoint`) pin
//! the head of the chain.

use crate::error::{Error, ErrorCode, Result};
use crate::names::{GatekeeperId, KeyId, Role};
use crate::policy::Policy;
use crate::receipt::Decision;
use crate::signature::SignatureEntry;
use crate::text::{Reader, Writer, hex, parse_decimal, parse_hex, preview};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The `prev-sha256` of the first entry: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// How many bytes of the `Countersign-Request` and `Countersign-Signature` header
/// values a gatekeeper stores in the audit entry of a request whose signatures it did
/// not verify (audit-flood defence); the entry keeps the SHA-256 and length of the
/// whole value either way.
pub const UNVERIFIED_CAPTURE_BYTES: usize = 1024;

/// A header value as the gatekeeper received it: the stored bytes (all of it, or a
/// prefix), and the SHA-256 and length of the **complete** value. The stored bytes
/// are never longer than the value, and when they are as long they are the value:
/// the constructors ensure both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedHeader {
    stored: Vec<u8>,
    sha256: [u8; 32],
    length: u64,
}

impl CapturedHeader {
    /// The whole value (empty for a header that was not sent).
    pub fn whole(value: &[u8]) -> Self {
        Self {
            stored: value.to_vec(),
            sha256: Sha256::digest(value).into(),
            length: value.len() as u64,
        }
    }

    /// The first `max` bytes of the value (all of it if shorter), with the SHA-256
    /// and length of the whole value.
    pub fn prefix(value: &[u8], max: usize) -> Self {
        Self {
            stored: value.iter().take(max).copied().collect(),
            sha256: Sha256::digest(value).into(),
            length: value.len() as u64,
        }
    }

    /// Rebuilds a capture from its three parts; `field` names it for errors. Fails
    /// with `invalid_field` if `stored` is longer than `length`, or as long but with
    /// another SHA-256, or if `length` exceeds 2^53 - 1.
    pub fn from_parts(stored: Vec<u8>, sha256: [u8; 32], length: u64, field: &str) -> Result<Self> {
        let stored_len = stored.len() as u64;
        if length > crate::text::MAX_INTEGER || stored_len > length {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("`{field}` holds {stored_len} bytes of a value of {length} bytes"),
            ));
        }
        if stored_len == length && <[u8; 32]>::from(Sha256::digest(&stored)) != sha256 {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!(
                    "`{field}` holds the whole value, but its SHA-256 differs from `{field}-sha256`"
                ),
            ));
        }
        Ok(Self {
            stored,
            sha256,
            length,
        })
    }

    /// The stored bytes: the value, or its first bytes.
    pub fn stored(&self) -> &[u8] {
        &self.stored
    }
    /// SHA-256 of the complete value.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
    /// Length of the complete value in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }
    /// Whether the stored bytes are the complete value.
    pub fn is_complete(&self) -> bool {
        self.stored.len() as u64 == self.length
    }
}

/// One audit entry: a decision on one HTTP request, allowed or denied, well-formed or
/// not. Free-text fields hold the exact bytes the client sent, UTF-8 or not; they are
/// escaped in the canonical form, and [`AuditEntry::parse`] restores them exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of entry `seq - 1`, or [`GENESIS`].
    pub prev_sha256: [u8; 32],
    /// Unix milliseconds of the decision.
    pub time_ms: u64,
    /// The gatekeeper that decided.
    pub gatekeeper: GatekeeperId,
    /// The id the gatekeeper gave the HTTP request (its `X-Request-Id` answer header;
    /// empty for an entry of no HTTP request): `Some` writes entry version 2, `None`
    /// version 1, which has no such field.
    pub request_id: Option<Vec<u8>>,
    /// The client address the decision used.
    pub client_ip: IpAddr,
    /// The operation (`GET`, `PUT`, `HEAD`, `LIST`, `AUDIT`, or what the client sent).
    pub operation: Vec<u8>,
    /// Bucket, as requested.
    pub bucket: Vec<u8>,
    /// Object key or prefix, as requested.
    pub key: Vec<u8>,
    /// Subject of the request, if it could be parsed.
    pub subject: Vec<u8>,
    /// The decision.
    pub decision: Decision,
    /// Body bytes transferred.
    pub bytes: u64,
    /// Time from arrival to decision, microseconds.
    pub latency_us: u64,
    /// The `Countersign-Request` header value as received: the base64url text, not
    /// decoded (empty if the header was missing).
    pub request: CapturedHeader,
    /// The `Countersign-Signature` header value as received.
    pub signatures: CapturedHeader,
}

/// Percent-escapes every byte outside `!`..`~` and `%` itself (as `%XX`, uppercase),
/// so free text from a client can never carry a line break or look like another
/// field, whatever bytes it holds.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(upper_hex(b >> 4));
            out.push(upper_hex(b & 0x0f));
        }
    }
    out
}

fn upper_hex(nibble: u8) -> char {
    char::from(match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + (nibble & 0x0f).saturating_sub(10),
    })
}

/// The strict inverse of [`escape`]: accepts only the text `escape` writes.
/// `%` must be followed by two uppercase hex digits spelling a byte that `escape`
/// escapes (so `%41` for `A` and `%c3` are refused); any other byte must be `!`..`~`
/// except `%`. Anything else is `non_canonical`. `field` names the value for errors.
pub fn unescape(text: &str, field: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::new(
            ErrorCode::NonCanonical,
            format!(
                "`{field}` is not escaped in the one canonical way: `{}`",
                preview(text)
            ),
        )
    };
    let digit = |b: Option<&u8>| match b {
        Some(&d @ b'0'..=b'9') => Some(d - b'0'),
        Some(&d @ b'A'..=b'F') => Some(d - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.as_bytes().iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (digit(bytes.next()), digit(bytes.next())) else {
                return Err(bad());
            };
            let decoded = hi << 4 | lo;
            if decoded.is_ascii_graphic() && decoded != b'%' {
                return Err(bad());
            }
            out.push(decoded);
        } else if b.is_ascii_graphic() {
            out.push(b);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) if ip.to_string() == s => Ok(ip),
        Ok(_) => Err(Error::new(
            ErrorCode::NonCanonical,
            format!(
                "client-ip `{}` is not in its canonical text form",
                preview(s)
            ),
        )),
        Err(_) => Err(Error::new(
            ErrorCode::InvalidField,
            format!("client-ip `{}` is not an IP address", preview(s)),
        )),
    }
}

impl AuditEntry {
    /// The exact canonical bytes: version 2 with a request id, else version 1.
    pub fn encode(&self) -> Vec<u8> {
        let version = if self.request_id.is_some() { 2 } else { 1 };
        let mut w = Writer::versioned(version, "audit-entry");
        w.field("seq", &self.seq.to_string())
            .field("prev-sha256", &hex(&self.prev_sha256))
            .field("time-ms", &self.time_ms.to_string())
            .field("gatekeeper", self.gatekeeper.as_str());
        if let Some(id) = &self.request_id {
            w.field("request-id", &escape(id));
        }
        w.field("client-ip", &self.client_ip.to_string())
            .field("operation", &escape(&self.operation))
            .field("bucket", &escape(&self.bucket))
            .field("key", &escape(&self.key))
            .field("subject", &escape(&self.subject))
            .field("decision", self.decision.as_str())
            .field("error", self.decision.error().map_or("", ErrorCode::as_str))
            .field("bytes", &self.bytes.to_string())
            .field("latency-us", &self.latency_us.to_string())
            .field("request", &escape(self.request.stored()))
            .field("request-sha256", &hex(self.request.sha256()))
            .field("request-length", &self.request.length().to_string())
            .field("signatures", &escape(self.signatures.stored()))
            .field("signatures-sha256", &hex(self.signatures.sha256()))
            .field("signatures-length", &self.signatures.length().to_string());
        w.finish()
    }

    /// Parses an entry's exact bytes, the strict inverse of [`AuditEntry::encode`]:
    /// `encode(parse(b)) == b` for every `b` it accepts, so an entry travels, is
    /// hashed and is verified as the bytes the gatekeeper wrote.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // The protocol sets no size limit for audit entries: the caller bounds what
        // it reads.
        let (mut r, version) = Reader::versioned(bytes, "audit-entry", usize::MAX, &[2, 1])?;
        let seq = parse_decimal(r.field("seq")?, "seq")?;
        let prev_sha256 = parse_hex::<32>(r.field("prev-sha256")?, "prev-sha256")?;
        let time_ms = parse_decimal(r.field("time-ms")?, "time-ms")?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let request_id = match version {
            1 => None,
            _ => Some(unescape(r.field("request-id")?, "request-id")?),
        };
        let client_ip = parse_ip(r.field("client-ip")?)?;
        let operation = unescape(r.field("operation")?, "operation")?;
        let bucket = unescape(r.field("bucket")?, "bucket")?;
        let key = unescape(r.field("key")?, "key")?;
        let subject = unescape(r.field("subject")?, "subject")?;
        let decision = r.field("decision")?;
        let error = r.field("error")?;
        let decision = Decision::parse(decision, error)?;
        let bytes_moved = parse_decimal(r.field("bytes")?, "bytes")?;
        let latency_us = parse_decimal(r.field("latency-us")?, "latency-us")?;
        let request = captured(&mut r, "request")?;
        let signatures = captured(&mut r, "signatures")?;
        r.end()?;
        Ok(Self {
            seq,
            prev_sha256,
            time_ms,
            gatekeeper,
            request_id,
            client_ip,
            operation,
            bucket,
            key,
            subject,
            decision,
            bytes: bytes_moved,
            latency_us,
            request,
            signatures,
        })
    }

    /// SHA-256 of the canonical bytes; the next entry's `prev-sha256`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// The RFC 6962 leaf hash of the canonical bytes: this entry's leaf in the
    /// transparency log, which receipts carry.
    pub fn leaf_hash(&self) -> [u8; 32] {
        crate::merkle::leaf_hash(&self.encode())
    }
}

/// Reads `<name>`, `<name>-sha256`, `<name>-length` and checks they agree.
fn captured(r: &mut Reader<'_>, name: &str) -> Result<CapturedHeader> {
    let stored = unescape(r.field(name)?, name)?;
    let sha_name = format!("{name}-sha256");
    let sha256 = parse_hex::<32>(r.field(&sha_name)?, &sha_name)?;
    let len_name = format!("{name}-length");
    let length = parse_decimal(r.field(&len_name)?, &len_name)?;
    CapturedHeader::from_parts(stored, sha256, length, name)
}

/// Checks that `entries` form an unbroken chain starting at `first_seq` whose first
/// `prev-sha256` is `prev`; returns the head hash and the number of entries. Any
/// altered, removed, inserted or reordered entry is reported by sequence number.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    first_seq: u64,
    mut prev: [u8; 32],
) -> Result<([u8; 32], u64)> {
    let mut count = 0u64;
    for (expected_seq, entry) in (first_seq..).zip(entries) {
        if entry.seq != expected_seq {
            return Err(Error::new(
                ErrorCode::AuditChainBroken,
                format!(
                    "audit entry {expected_seq} is missing or out of order (found {})",
                    entry.seq
                ),
            ));
        }
        if entry.prev_sha256 != prev {
            return Err(Error::new(
                ErrorCode::AuditChainBroken,
                format!(
                    "audit entry {} does not chain to the entry before it: an entry was altered, removed or reordered",
                    entry.seq
                ),
            ));
        }
        prev = entry.hash();
        count += 1;
    }
    Ok((prev, count))
}

/// A checkpoint: the gatekeeper's signed statement that entry `seq` has hash `head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The gatekeeper whose log this is.
    pub gatekeeper: GatekeeperId,
    /// Sequence number of the last entry covered.
    pub seq: u64,
    /// Hash of that entry.
    pub head_sha256: [u8; 32],
    /// Unix seconds the checkpoint was made.
    pub created_at: u64,
}

impl Checkpoint {
    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new("checkpoint");
        w.field("gatekeeper", self.gatekeeper.as_str())
            .field("seq", &self.seq.to_string())
            .field("head-sha256", &hex(&self.head_sha256))
            .field("created-at", &self.created_at.to_string());
        w.finish()
    }

    /// Parses canonical bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "checkpoint", 512)?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let seq = parse_decimal(r.field("seq")?, "seq")?;
        let head_sha256 = parse_hex::<32>(r.field("head-sha256")?, "head-sha256")?;
        let created_at = parse_decimal(r.field("created-at")?, "created-at")?;
        r.end()?;
        Ok(Self {
            gatekeeper,
            seq,
            head_sha256,
            created_at,
        })
    }

    /// Encodes and signs as the `gatekeeper` role.
    pub fn sign(&self, key: &SigningKey, key_id: KeyId) -> (Vec<u8>, SignatureEntry) {
        let bytes = self.encode();
        let sig = SignatureEntry::sign(key, Role::gatekeeper(), key_id, &bytes);
        (bytes, sig)
    }

    /// Parses and checks the gatekeeper signatures at `created-at`.
    pub fn verify(bytes: &[u8], signatures: &[SignatureEntry], policy: &Policy) -> Result<Self> {
        let checkpoint = Self::parse(bytes)?;
        policy.approve(bytes, signatures, checkpoint.created_at)?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::KeyId;
    use crate::policy::{AuthorizedKey, Keyring};
    use crate::signature::PublicKey;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (0..n)
            .map(|seq| {
                let entry = AuditEntry {
                    seq,
                    prev_sha256: prev,
                    time_ms: 1_800_000_000_000 + seq,
                    gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
                    request_id: (seq != 1).then(|| format!("req-{seq}").into_bytes()),
                    client_ip: "127.0.0.2".parse().unwrap(),
                    operation: b"GET".to_vec(),
                    bucket: b"patient-reports".to_vec(),
                    key: format!("org-1/{seq}\nsubject:forged").into_bytes(),
                    subject: b"user-42".to_vec(),
                    decision: if seq % 2 == 0 {
                        Decision::Allow
                    } else {
                        Decision::Deny(ErrorCode::Expired)
                    },
                    bytes: seq * 10,
                    latency_us: 120,
                    request: CapturedHeader::whole(&[0xff, 0]),
                    signatures: CapturedHeader::whole(b"vendor:k:sig"),
                };
                prev = entry.hash();
                entry
            })
            .collect()
    }

    #[test]
    fn version_one_entries_still_read_and_chain() {
        let entries = chain(3);
        let v1 = String::from_utf8(entries[1].encode()).unwrap();
        assert!(
            v1.starts_with("countersign/v1/audit-entry\nseq:1\n"),
            "{v1}"
        );
        assert!(!v1.contains("request-id"));
        let v2 = String::from_utf8(entries[2].encode()).unwrap();
        assert!(
            v2.starts_with("countersign/v2/audit-entry\nseq:2\n")
                && v2.contains("\ngatekeeper:gk.acme\nrequest-id:req-2\nclient-ip:"),
            "{v2}"
        );
        for e in &entries {
            assert_eq!(&AuditEntry::parse(&e.encode()).unwrap(), e);
        }
        assert!(verify_chain(&entries, 0, GENESIS).is_ok());
        // The field belongs to version 2 only, and version 2 requires it.
        let code = |t: String| AuditEntry::parse(t.as_bytes()).unwrap_err().code();
        assert_eq!(
            code(v1.replace("countersign/v1/", "countersign/v2/")),
            ErrorCode::NonCanonical
        );
        assert_eq!(
            code(v2.replace("countersign/v2/", "countersign/v1/")),
            ErrorCode::NonCanonical
        );
        assert_eq!(
            code(v2.replace("request-id:req-2", "request-id:req%0a2")),
            ErrorCode::NonCanonical
        );
        let empty = v2.replace("request-id:req-2", "request-id:");
        assert_eq!(
            AuditEntry::parse(empty.as_bytes()).unwrap().request_id,
            Some(Vec::new())
        );
        assert_eq!(
            entries[2].leaf_hash(),
            crate::merkle::leaf_hash(v2.as_bytes())
        );
    }

    #[test]
    fn free_text_cannot_forge_fields() {
        let bytes = chain(1)[0].encode();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("key:org-1/0%0Asubject:forged\n"));
        assert_eq!(text.matches("\nsubject:").count(), 1);
        assert_eq!(escape(b"a%b c"), "a%25b%20c");
    }

    #[test]
    fn entries_round_trip_exactly_whatever_the_bytes() {
        let mut entry = chain(1).remove(0);
        entry.operation = b"G\0ET".to_vec();
        entry.bucket = vec![0xff, 0xfe, b'%', b'4', b'1'];
        entry.key = "M\u{fc}ller 100%/\u{7f}".as_bytes().to_vec();
        entry.subject = Vec::new();
        entry.request = CapturedHeader::prefix(&[b'Y'; 3000], UNVERIFIED_CAPTURE_BYTES);
        entry.signatures = CapturedHeader::whole(&[0x80, b'\n', b' ']);
        let bytes = entry.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\noperation:G%00ET\n"), "{text}");
        assert!(text.contains("\nbucket:%FF%FE%2541\n"), "{text}");
        assert!(text.contains("\nkey:M%C3%BCller%20100%25/%7F\n"), "{text}");
        assert!(text.contains("\nsubject:\n"), "{text}");
        assert!(text.contains("\nrequest-length:3000\n"), "{text}");
        assert!(text.contains("\nsignatures:%80%0A%20\n"), "{text}");
        let parsed = AuditEntry::parse(&bytes).unwrap();
        assert_eq!(parsed, entry);
        assert_eq!(parsed.encode(), bytes);
        assert_eq!(parsed.request.stored().len(), UNVERIFIED_CAPTURE_BYTES);
        assert!(!parsed.request.is_complete());
        assert!(parsed.signatures.is_complete());
        // UTF-8 text escapes as it always did.
        assert_eq!(escape("Müller".as_bytes()), "M%C3%BCller");
    }

    #[test]
    fn parsing_refuses_every_other_spelling() {
        let entry = chain(1).remove(0);
        let text = String::from_utf8(entry.encode()).unwrap();
        let p = |from: &str, to: &str| {
            let t = text.replacen(from, to, 1);
            assert_ne!(t, text, "{from}");
            AuditEntry::parse(t.as_bytes())
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(
            p("operation:GET", "operation:%47ET"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("key:org-1/0%0A", "key:org-1/0%0a"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("key:org-1/0%0A", "key:org-1/0%0"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("operation:GET", "operation:G T"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("operation:GET", "operation:GÉT"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("client-ip:127.0.0.2", "client-ip:127.0.0.02"),
            Err(ErrorCode::InvalidField)
        );
        assert_eq!(
            p("client-ip:127.0.0.2", "client-ip:::FFFF:7f00:2"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("client-ip:127.0.0.2", "client-ip:2001:DB8::1"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("request-length:2", "request-length:1"),
            Err(ErrorCode::InvalidField)
        );
        assert_eq!(p("request-length:2", "request-length:3"), Ok(()));
        assert_eq!(
            p("signatures-length:12", "signatures-length:012"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("request:%FF%00", "request:%FF%01"),
            Err(ErrorCode::InvalidField)
        );
        assert_eq!(
            p("error:\n", "error:expired\n"),
            Err(ErrorCode::InvalidField)
        );
        assert_eq!(
            p("\nbytes:0\n", "\nbytes:0\nbytes:0\n"),
            Err(ErrorCode::NonCanonical)
        );
        assert!(AuditEntry::parse(text.as_bytes()).is_ok());
    }

    #[test]
    fn captures_keep_their_invariant() {
        let whole = CapturedHeader::whole(b"abc");
        assert!(whole.is_complete());
        let cut = CapturedHeader::prefix(b"abcdef", 2);
        assert_eq!((cut.stored(), cut.length()), (&b"ab"[..], 6));
        assert_eq!(cut.sha256(), whole_sha(b"abcdef").as_ref());
        let short = CapturedHeader::prefix(b"ab", 1024);
        assert!(short.is_complete());
        assert!(CapturedHeader::from_parts(b"ab".to_vec(), whole_sha(b"abcdef"), 6, "x").is_ok());
        let code = |r: Result<CapturedHeader>| r.unwrap_err().code();
        assert_eq!(
            code(CapturedHeader::from_parts(
                b"abc".to_vec(),
                whole_sha(b"abc"),
                2,
                "x"
            )),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(CapturedHeader::from_parts(
                b"abc".to_vec(),
                whole_sha(b"abd"),
                3,
                "x"
            )),
            ErrorCode::InvalidField
        );
    }

    fn whole_sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    #[test]
    fn chain_detects_alteration_removal_and_reordering() {
        let entries = chain(5);
        let (head, count) = verify_chain(&entries, 0, GENESIS).unwrap();
        assert_eq!((head, count), (entries[4].hash(), 5));

        let mut altered = entries.clone();
        altered[2].bytes += 1;
        let err = verify_chain(&altered, 0, GENESIS).unwrap_err();
        assert!(err.message().contains("entry 3"), "{err}");

        let mut removed = entries.clone();
        removed.remove(2);
        assert!(verify_chain(&removed, 0, GENESIS).is_err());

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        assert!(verify_chain(&reordered, 0, GENESIS).is_err());

        // A suffix verifies from the hash of the entry before it.
        assert!(verify_chain(&entries[2..], 2, entries[1].hash()).is_ok());
        assert!(verify_chain(&entries[2..], 2, GENESIS).is_err());
    }

    #[test]
    fn checkpoints_are_signed() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let id = KeyId::parse("gatekeeper-1").unwrap();
        let keyring = Keyring::new([AuthorizedKey {
            key_id: id.clone(),
            role: Role::gatekeeper(),
            public_key: PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap(),
            not_before: None,
            not_after: None,
        }])
        .unwrap();
        let policy = Policy::new(keyring, [(Role::gatekeeper(), 1)]).unwrap();
        let entries = chain(3);
        let cp = Checkpoint {
            gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
            seq: 2,
            head_sha256: entries[2].hash(),
            created_at: 1_800_000_001,
        };
        let (bytes, sig) = cp.sign(&key, id);
        assert_eq!(
            Checkpoint::verify(&bytes, std::slice::from_ref(&sig), &policy).unwrap(),
            cp
        );
        let mut forged = bytes.clone();
        forged[40] ^= 1;
        assert!(Checkpoint::verify(&forged, &[sig], &policy).is_err());
    }
}
