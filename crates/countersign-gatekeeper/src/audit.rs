//! The audit log's JSON form (search results and JSONL export), its filters, and the
//! verifier that recomputes the hash chain and checks signed checkpoints, from the
//! database or from an exported file, without trusting the server.

use countersign_core::audit::{AuditEntry, Checkpoint, GENESIS, escape, verify_chain};
use countersign_core::text::{b64, hex};
use countersign_core::{ErrorCode, Policy, signature::parse_list};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::net::IpAddr;

/// Search filters; every field narrows the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries with `seq >= after_seq`.
    pub after_seq: u64,
    /// From this Unix millisecond (inclusive).
    pub from_ms: Option<u64>,
    /// Up to this Unix millisecond (exclusive).
    pub to_ms: Option<u64>,
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact client address.
    pub client_ip: Option<IpAddr>,
    /// Key or list prefix starts with this.
    pub key_prefix: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Error code.
    pub error: Option<ErrorCode>,
    /// Most entries returned.
    pub limit: u32,
}

/// One line of an export, or one search result: an entry or a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditLine {
    /// An audit entry.
    Entry(Box<AuditRecord>),
    /// A signed checkpoint.
    Checkpoint {
        /// Base64url of the canonical checkpoint bytes.
        checkpoint: String,
        /// The gatekeeper's signature list over them.
        signatures: String,
    },
}

/// The JSON form of an [`AuditEntry`]: its exact canonical bytes (`entry`, which a
/// verifier parses and hashes as they are, never re-encoding), and the same fields
/// readable for people and filters. Free-text fields are in the audit entry's escaped
/// form (`docs/PROTOCOL.md`, Escape), so any byte survives. [`AuditRecord::to_entry`]
/// refuses a record whose readable fields differ from its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: u64,
    /// Hex SHA-256 of the previous entry.
    pub prev_sha256: String,
    /// Hex SHA-256 of this entry's bytes.
    pub entry_sha256: String,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Gatekeeper id.
    pub gatekeeper: String,
    /// The request id (`X-Request-Id`), escaped; absent for an entry of format
    /// version 1, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Client address.
    pub client_ip: String,
    /// Operation (escaped).
    pub operation: String,
    /// Bucket (escaped).
    pub bucket: String,
    /// Key or prefix (escaped).
    pub key: String,
    /// Subject (escaped).
    pub subject: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Error code of a denial, else empty.
    pub error: String,
    /// Body bytes.
    pub bytes: u64,
    /// Microseconds to decision.
    pub latency_us: u64,
    /// Base64url of the `countersign-request` header value as stored (all of it, or
    /// its first bytes when the signatures did not verify).
    pub request: String,
    /// Length of the whole `countersign-request` value received.
    pub request_length: u64,
    /// Base64url of the `countersign-signature` header value as stored.
    pub signatures: String,
    /// Length of the whole `countersign-signature` value received.
    pub signatures_length: u64,
    /// Base64url of the entry's exact canonical bytes.
    pub entry: String,
}

impl AuditRecord {
    /// The JSON form of an entry.
    pub fn from_entry(e: &AuditEntry) -> Self {
        let bytes = e.encode();
        Self {
            seq: e.seq,
            prev_sha256: hex(&e.prev_sha256),
            entry_sha256: hex(&<[u8; 32]>::from(sha2::Sha256::digest(&bytes))),
            time_ms: e.time_ms,
            gatekeeper: e.gatekeeper.to_string(),
            request_id: e.request_id.as_deref().map(escape),
            client_ip: e.client_ip.to_string(),
            operation: escape(&e.operation),
            bucket: escape(&e.bucket),
            key: escape(&e.key),
            subject: escape(&e.subject),
            decision: e.decision.as_str().to_owned(),
            error: e.decision.error().map_or("", ErrorCode::as_str).to_owned(),
            bytes: e.bytes,
            latency_us: e.latency_us,
            request: b64(e.request.stored()),
            request_length: e.request.length(),
            signatures: b64(e.signatures.stored()),
            signatures_length: e.signatures.length(),
            entry: b64(&bytes),
        }
    }

    /// Parses the entry from its exact bytes; fails if they do not parse, or if a
    /// readable field says something else than the bytes.
    pub fn to_entry(&self) -> Result<AuditEntry, String> {
        let bytes = countersign_core::text::parse_b64(&self.entry, "entry")
            .map_err(|e| format!("entry {}: {e}", self.seq))?;
        let entry = AuditEntry::parse(&bytes).map_err(|e| format!("entry {}: {e}", self.seq))?;
        if &Self::from_entry(&entry) != self {
            return Err(format!(
                "entry {}: its readable fields differ from its bytes: the record was altered",
                self.seq
            ));
        }
        Ok(entry)
    }
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature and head matched.
    pub checkpoints: u64,
    /// Hex head hash.
    pub head: String,
}

/// Verifies a sequence of lines (entries in log order; checkpoints anywhere): the
/// entries must start at seq 0 with the genesis hash and chain without a gap or a swap; every
/// checkpoint must be signed by the `gatekeeper` policy and name the hash of the
/// entry at its seq; and no checkpoint may be beyond the last entry (the log was cut).
pub fn verify_lines(lines: &[AuditLine], gatekeeper: &Policy) -> Result<VerifyReport, String> {
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for line in lines {
        match line {
            AuditLine::Entry(r) => {
                let e = r.to_entry()?;
                if hex(&e.hash()) != r.entry_sha256 {
                    return Err(format!(
                        "entry {}: its recorded hash does not match its content: the entry was altered",
                        e.seq
                    ));
                }
                entries.push(e);
            }
            AuditLine::Checkpoint {
                checkpoint,
                signatures,
            } => {
                let bytes = countersign_core::text::parse_b64(checkpoint, "checkpoint")
                    .map_err(|e| e.to_string())?;
                let sigs = parse_list(signatures).map_err(|e| e.to_string())?;
                let c = Checkpoint::verify(&bytes, &sigs, gatekeeper)
                    .map_err(|e| format!("a checkpoint does not verify: {e}"))?;
                checkpoints.push(c);
            }
        }
    }
    let mut hashes = Vec::with_capacity(entries.len());
    let mut prev = GENESIS;
    for (expected, e) in (0u64..).zip(&entries) {
        verify_chain(std::iter::once(e), expected, prev).map_err(|err| err.message().to_owned())?;
        prev = e.hash();
        hashes.push(prev);
    }
    let count = entries.len() as u64;
    for c in &checkpoints {
        let at = usize::try_from(c.seq).ok().and_then(|i| hashes.get(i));
        match at {
            Some(h) if *h == c.head_sha256 => {}
            Some(_) => {
                return Err(format!(
                    "checkpoint at entry {} names another head hash: entries up to it were altered",
                    c.seq
                ));
            }
            None => {
                return Err(format!(
                    "checkpoint at entry {} is beyond the last entry ({count} entries): entries were removed",
                    c.seq
                ));
            }
        }
    }
    Ok(VerifyReport {
        entries: count,
        checkpoints: checkpoints.len() as u64,
        head: hex(&prev),
    })
}

/// Parses a JSONL export.
pub fn parse_jsonl(text: &str) -> Result<Vec<AuditLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}
