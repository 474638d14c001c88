//! Audit-log hashing: each entry's canonical bytes (`countersign/v1/audit-entry`)
//! include the SHA-256 of the previous entry, so changing, removing or reordering an
//! entry breaks every later hash; signed checkpoints (`countersign/v1/checkpoint`) pin
//! the head of the chain.

use crate::error::{Error, ErrorCode, Result};
use crate::names::{GatekeeperId, KeyId, Role};
use crate::policy::Policy;
use crate::receipt::Decision;
use crate::signature::SignatureEntry;
use crate::text::{Reader, Writer, b64, hex, parse_decimal, parse_hex};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The `prev-sha256` of the first entry: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// One audit entry: a decision on one HTTP request, allowed or denied, well-formed or
/// not. Free-text fields hold what the client sent and may be anything; they are
/// escaped in the canonical form.
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
    /// The client address the decision used.
    pub client_ip: IpAddr,
    /// The operation (`GET`, `PUT`, `HEAD`, `LIST`, `AUDIT`, or what the client sent).
    pub operation: String,
    /// Bucket, as requested.
    pub bucket: String,
    /// Object key or prefix, as requested.
    pub key: String,
    /// Subject of the request, if it could be parsed.
    pub subject: String,
    /// The decision.
    pub decision: Decision,
    /// Body bytes transferred.
    pub bytes: u64,
    /// Time from arrival to decision, microseconds.
    pub latency_us: u64,
    /// The canonical request bytes as received (may be empty or garbage).
    pub request: Vec<u8>,
    /// The signature header as received.
    pub signatures: String,
}

/// Percent-escapes every byte outside `!`..`~` and `%` itself, so free text from a
/// client can never carry a line break or look like another field.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AuditEntry {
    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new("audit-entry");
        w.field("seq", &self.seq.to_string())
            .field("prev-sha256", &hex(&self.prev_sha256))
            .field("time-ms", &self.time_ms.to_string())
            .field("gatekeeper", self.gatekeeper.as_str())
            .field("client-ip", &self.client_ip.to_string())
            .field("operation", &escape(&self.operation))
            .field("bucket", &escape(&self.bucket))
            .field("key", &escape(&self.key))
            .field("subject", &escape(&self.subject))
            .field("decision", self.decision.as_str())
            .field("error", self.decision.error().map_or("", ErrorCode::as_str))
            .field("bytes", &self.bytes.to_string())
            .field("latency-us", &self.latency_us.to_string())
            .field("request", &b64(&self.request))
            .field("signatures", &escape(&self.signatures));
        w.finish()
    }

    /// SHA-256 of the canonical bytes; the next entry's `prev-sha256`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
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
                    client_ip: "127.0.0.2".parse().unwrap(),
                    operation: "GET".into(),
                    bucket: "patient-reports".into(),
                    key: format!("org-1/{seq}\nsubject:forged"),
                    subject: "user-42".into(),
                    decision: if seq % 2 == 0 {
                        Decision::Allow
                    } else {
                        Decision::Deny(ErrorCode::Expired)
                    },
                    bytes: seq * 10,
                    latency_us: 120,
                    request: vec![0xff, 0],
                    signatures: "vendor:k:sig".into(),
                };
                prev = entry.hash();
                entry
            })
            .collect()
    }

    #[test]
    fn free_text_cannot_forge_fields() {
        let bytes = chain(1)[0].encode();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("key:org-1/0%0Asubject:forged\n"));
        assert_eq!(text.matches("\nsubject:").count(), 1);
        assert_eq!(escape("a%b c"), "a%25b%20c");
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
