//! The audit log's JSON form (search results and JSONL export), its filters, and the
//! verifier that recomputes the hash chain and checks signed checkpoints, from the
//! database or from an exported file, without trusting the server.

use countersign_core::audit::{AuditEntry, escape};
use countersign_core::export::{ExportVerifier, MAX_EXPORT_LINE};
use countersign_core::signature::PublicKey;
use countersign_core::text::{b64, hex};
use countersign_core::{ErrorCode, Policy, Subject};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::io::BufRead as _;
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
    /// A group, as its members were in the policy the filter was resolved against:
    /// the subject is one of them.
    pub group: Option<GroupMembers>,
    /// Exact client address.
    pub client_ip: Option<IpAddr>,
    /// Exact bucket.
    pub bucket: Option<String>,
    /// Exact operation as recorded: `GET`, `HEAD`, `PUT`, `LIST`, `AUDIT` (an audit
    /// request), or the HTTP method of a request that did not parse.
    pub operation: Option<String>,
    /// Exact key (or list prefix): one object's history.
    pub key: Option<String>,
    /// Key or list prefix starts with this.
    pub key_prefix: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Error code.
    pub error: Option<ErrorCode>,
    /// Most entries returned.
    pub limit: u32,
}

/// A group filter resolved against a policy's `[groups]`: the group's name and the
/// subjects it had then. Entries record subjects, not groups, so this is what a group
/// filter selects by (`docs/API.md`, "Audit search").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupMembers {
    /// The group's name, as `[groups]` spells it.
    pub name: String,
    /// Its members, sorted (`[groups]` holds each group as a set).
    pub members: Vec<String>,
}

impl GroupMembers {
    /// `name` with `members`.
    pub fn new<'a>(name: &str, members: impl IntoIterator<Item = &'a Subject>) -> Self {
        Self {
            name: name.to_owned(),
            members: members.into_iter().map(|s| s.as_str().to_owned()).collect(),
        }
    }
}

/// One line of an export, or one search result: an entry or a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditLine {
    /// An audit entry.
    Entry(Box<AuditRecord>),
    /// A signed checkpoint of the hash chain, right after the entry it names.
    Checkpoint {
        /// Base64url of the canonical checkpoint bytes.
        checkpoint: String,
        /// The gatekeeper's signature list over them.
        signatures: String,
    },
    /// The signed (C2SP note) checkpoint of the Merkle tree, first in an export.
    TreeCheckpoint {
        /// The signed note, as text.
        note: String,
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
    /// Chain checkpoints whose signature and head matched.
    pub checkpoints: u64,
    /// The size of the signed tree checkpoint the entries matched, if the export had one.
    pub tree_size: Option<u64>,
    /// Hex head hash.
    pub head: String,
}

/// Verifies an export read from `export`, in constant memory (`docs/PROTOCOL.md`,
/// "Verifying an export"), with the core's [`ExportVerifier`]: the tree checkpoint
/// signed with `log_key`, the chain checkpoints under the `gatekeeper` policy, the
/// entries as their exact bytes. Stricter than the protocol asks, the readable members
/// of each entry line must be an [`AuditRecord`] saying what its bytes say. The error
/// is `<code>: line N of the export: <sentence>`.
pub fn verify_export(
    mut export: impl std::io::BufRead,
    gatekeeper: &Policy,
    log_key: PublicKey,
) -> Result<VerifyReport, String> {
    let mut verifier = ExportVerifier::new(gatekeeper, vec![log_key], Vec::new(), 0);
    let mut line = Vec::new();
    for n in 1u64.. {
        line.clear();
        // At most one byte past the longest line: the verifier refuses a longer one.
        if std::io::Read::take(&mut export, MAX_EXPORT_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read the export: {e}"))?
            == 0
        {
            break;
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(entry) = verifier.line(bytes).map_err(|e| e.to_string())? {
            let readable = match serde_json::from_slice::<AuditLine>(bytes) {
                Ok(AuditLine::Entry(r)) => Some(r),
                _ => None,
            };
            if readable.is_none_or(|r| *r != AuditRecord::from_entry(&entry)) {
                return Err(format!(
                    "{}: line {n} of the export: the readable members of entry {} differ from its bytes: the record was altered",
                    ErrorCode::AuditChainBroken,
                    entry.seq
                ));
            }
        }
    }
    let report = verifier.finish().map_err(|e| e.to_string())?;
    Ok(VerifyReport {
        entries: report.entries,
        checkpoints: report.chain_checkpoints,
        tree_size: report.tree_size,
        head: hex(&report.head),
    })
}
