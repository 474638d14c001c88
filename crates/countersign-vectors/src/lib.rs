//! # countersign-vectors
//!
//! Conformance vectors for the Countersign protocol: the JSON schema of
//! `tests/vectors/*.json`, the replayer every implementation's tests share (native,
//! wasm in a browser, the gatekeeper), and the replayers of the third-party Ed25519
//! vectors (Wycheproof, speccheck). The generator is the `generate-vectors` binary:
//!
//! ```text
//! cargo run -p countersign-vectors --bin generate-vectors -- tests/vectors
//! ```
//!
//! A case's `expect` is `"ok"` or a stable error code; [`outcome`] returns the same
//! string for the implementation under test, so comparing the two is the whole test.

#[cfg(not(target_arch = "wasm32"))]
pub mod at_rest;
pub mod tlog;

use countersign_core::audit::AuditEntry;
use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ErrorCode, GatekeeperId, KeyId, Keyring, Listing, Manifest,
    ObjectKey, Policy, PublicKey, Receipt, RequestVerifier, Role, SignatureEntry, signature,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One file of vectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VectorFile {
    /// What the file covers.
    pub description: String,
    /// The cases.
    pub cases: Vec<Case>,
}

/// What a case's signatures are over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A canonical request checked by a gatekeeper's `RequestVerifier` at `now`.
    Request,
    /// A gatekeeper receipt for the request in `request_hex`.
    Receipt,
    /// A signed object manifest, the object `target`, and its `body_hex`.
    Manifest,
    /// A signed LIST page answering the LIST request in `request_hex`, after the
    /// cursor `list_after`.
    Listing,
    /// An audit entry's exact bytes: they must parse, re-encode to the same bytes
    /// and hash to `entry_sha256`. No signatures, no policy.
    AuditEntry,
}

/// One conformance case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// What the case checks and why it expects what it does.
    pub description: String,
    /// What the signatures cover.
    pub kind: Kind,
    /// The request's fields as a reader would write them (informational; for
    /// non-canonical cases, the fields before the bytes were altered). Absent for
    /// audit entries.
    #[serde(default, skip_serializing_if = "RequestFields::is_absent")]
    pub request: RequestFields,
    /// The exact canonical bytes of the document (request, receipt or manifest).
    pub canonical_hex: String,
    /// The exact bytes Ed25519 signs for the first signature.
    pub message_hex: String,
    /// For receipts: the canonical request the receipt is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hex: Option<String>,
    /// For manifests: the object the reader asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// For manifests: the body bytes the reader received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
    /// For listings: the cursor the client sent as `after`, as the decoded key text
    /// (empty for the first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_after: Option<String>,
    /// For audit entries expected `ok`: the SHA-256 of the entry's bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_sha256: Option<String>,
    /// The verifier's configuration. Absent for audit entries.
    #[serde(default, skip_serializing_if = "PolicySpec::is_absent")]
    pub policy: PolicySpec,
    /// The signatures presented with the document, in order.
    pub signatures: Vec<SignatureSpec>,
    /// The verifier's clock, Unix seconds.
    pub now: u64,
    /// `"ok"` or the expected error code.
    pub expect: String,
}

/// Human-readable request fields.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestFields {
    /// Gatekeeper id.
    pub audience: String,
    /// GET, HEAD, PUT or LIST.
    pub method: String,
    /// Bucket.
    pub bucket: String,
    /// Object key or list prefix.
    pub key: String,
    /// `first-last` or empty.
    pub range: String,
    /// PUT only.
    pub content_type: String,
    /// PUT only, lowercase hex.
    pub body_sha256: String,
    /// PUT only, decimal.
    pub body_length: String,
    /// Vendor user id.
    pub subject: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Lowercase hex.
    pub nonce: String,
}

impl RequestFields {
    /// Whether no request goes with the case (audit entries).
    pub fn is_absent(&self) -> bool {
        self.audience.is_empty() && self.method.is_empty()
    }
}

/// The object a manifest reader asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

/// A verifier's configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PolicySpec {
    /// The gatekeeper id requests must be addressed to; for receipts (and listings),
    /// the gatekeeper the client sent its request to, whose keys the policy holds.
    pub audience: String,
    /// Longest allowed `expires-at - issued-at`.
    pub max_lifetime: u64,
    /// Clock skew tolerance, seconds.
    pub clock_skew: u64,
    /// Authorized keys.
    pub keys: Vec<KeySpec>,
    /// Required roles and their thresholds. For manifests, `gatekeeper` applies to the
    /// manifest and every other role to the embedded PUT request.
    pub require: BTreeMap<String, usize>,
}

impl PolicySpec {
    /// Whether no policy goes with the case (audit entries).
    pub fn is_absent(&self) -> bool {
        self.audience.is_empty() && self.keys.is_empty() && self.require.is_empty()
    }
}

/// An authorized key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySpec {
    /// Key id.
    pub key_id: String,
    /// Role.
    pub role: String,
    /// 32-byte public key, hex.
    pub public_key_hex: String,
    /// First valid second, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// First invalid second, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// A presented signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignatureSpec {
    /// Claimed key id.
    pub key_id: String,
    /// Claimed role.
    pub role: String,
    /// Public key of the key that actually signed (informational).
    pub public_key_hex: String,
    /// The signature bytes (normally 64), hex.
    pub signature_hex: String,
    /// The exact bytes that were signed.
    pub message_hex: String,
}

/// Decodes hex of any length (vectors may hold deliberately odd data).
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd-length hex `{s}`"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex `{s}`"))
        })
        .collect()
}

/// The result of replaying a case with countersign-core: `"ok"` or an error code.
/// `Err` means the vector file itself is broken (bad hex, missing field).
pub fn outcome(case: &Case) -> Result<String, String> {
    Ok(match check(case)? {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.code().as_str().to_owned(),
    })
}

type Checked = Result<Result<(), countersign_core::Error>, String>;

fn check(case: &Case) -> Checked {
    let document = from_hex(&case.canonical_hex)?;
    if case.kind == Kind::AuditEntry {
        // No signatures and no policy to read.
        return check_audit_entry(case, &document);
    }
    // Signatures travel as `role:key-id:base64url`: replay that path too.
    let transport = case
        .signatures
        .iter()
        .map(|s| {
            Ok(format!(
                "{}:{}:{}",
                s.role,
                s.key_id,
                countersign_core::text::b64(&from_hex(&s.signature_hex)?)
            ))
        })
        .collect::<Result<Vec<_>, String>>()?
        .join(",");
    let signatures = match signature::parse_list(&transport) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let p = &case.policy;
    let keyring = match keyring(p) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    Ok(match case.kind {
        Kind::Request => verify_request(p, keyring, &document, &signatures, case.now),
        Kind::Receipt => {
            let request = from_hex(
                case.request_hex
                    .as_deref()
                    .ok_or("receipt without request_hex")?,
            )?;
            // The client sent the request to `policy.audience`, whose keys it holds.
            GatekeeperId::parse(&p.audience).and_then(|gatekeeper| {
                let policy = policy_for(p, keyring, |r| r == Role::GATEKEEPER)?;
                Receipt::verify(&document, &signatures, &gatekeeper, &policy, &request).map(|_| ())
            })
        }
        // Handled before the signatures are read (an entry has none).
        Kind::AuditEntry => return check_audit_entry(case, &document),
        Kind::Listing => {
            let request = from_hex(
                case.request_hex
                    .as_deref()
                    .ok_or("listing without request_hex")?,
            )?;
            let after = case
                .list_after
                .as_deref()
                .ok_or("listing without list_after")?;
            verify_listing(p, keyring, &document, &signatures, &request, after)
        }
        Kind::Manifest => {
            let target = case.target.as_ref().ok_or("manifest without target")?;
            let body = from_hex(
                case.body_hex
                    .as_deref()
                    .ok_or("manifest without body_hex")?,
            )?;
            verify_manifest(p, keyring, &document, &signatures, target, &body)
        }
    })
}

fn keyring(p: &PolicySpec) -> Result<Keyring, countersign_core::Error> {
    let mut keys = Vec::new();
    for k in &p.keys {
        let bytes = from_hex(&k.public_key_hex)
            .map_err(|e| countersign_core::Error::new(ErrorCode::Malformed, e))?;
        keys.push(AuthorizedKey {
            key_id: KeyId::parse(&k.key_id)?,
            role: Role::parse(&k.role)?,
            public_key: PublicKey::from_slice(&bytes)?,
            not_before: k.not_before,
            not_after: k.not_after,
        });
    }
    Keyring::new(keys)
}

fn policy_for(
    p: &PolicySpec,
    keyring: Keyring,
    include: impl Fn(&str) -> bool,
) -> Result<Policy, countersign_core::Error> {
    let mut require = Vec::new();
    for (role, &t) in p.require.iter().filter(|(r, _)| include(r)) {
        require.push((Role::parse(role)?, t));
    }
    Policy::new(keyring, require)
}

fn verify_request(
    p: &PolicySpec,
    keyring: Keyring,
    document: &[u8],
    signatures: &[SignatureEntry],
    now: u64,
) -> Result<(), countersign_core::Error> {
    let verifier = RequestVerifier::new(
        GatekeeperId::parse(&p.audience)?,
        policy_for(p, keyring, |_| true)?,
        p.max_lifetime,
        p.clock_skew,
    )?;
    verifier.verify(document, signatures, now).map(|_| ())
}

fn verify_manifest(
    p: &PolicySpec,
    keyring: Keyring,
    document: &[u8],
    signatures: &[SignatureEntry],
    target: &Target,
    body: &[u8],
) -> Result<(), countersign_core::Error> {
    let gatekeeper = policy_for(p, keyring.clone(), |r| r == Role::GATEKEEPER)?;
    let uploader = policy_for(p, keyring, |r| r != Role::GATEKEEPER)?;
    let verified = Manifest::verify(document, signatures, &gatekeeper, &uploader)?;
    verified.check_object(
        &Bucket::parse(&target.bucket)?,
        &ObjectKey::parse(&target.key)?,
    )?;
    verified.check_body(&BodyDigest::of(body))
}

/// An audit entry must parse, re-encode to exactly its bytes and hash as pinned.
fn check_audit_entry(case: &Case, document: &[u8]) -> Checked {
    let entry = match AuditEntry::parse(document) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e)),
    };
    if entry.encode() != document {
        return Err(format!(
            "{}: parsed, but re-encodes to other bytes",
            case.name
        ));
    }
    let hash = countersign_core::text::hex(&entry.hash());
    match &case.entry_sha256 {
        Some(pinned) if *pinned != hash => {
            Err(format!("{}: hashes to {hash}, not {pinned}", case.name))
        }
        _ => Ok(Ok(())),
    }
}

fn verify_listing(
    p: &PolicySpec,
    keyring: Keyring,
    document: &[u8],
    signatures: &[SignatureEntry],
    request: &[u8],
    after: &str,
) -> Result<(), countersign_core::Error> {
    let policy = policy_for(p, keyring, |r| r == Role::GATEKEEPER)?;
    let verified = Listing::verify(document, signatures, &policy, request)?;
    let sent = if after.is_empty() {
        None
    } else {
        Some(ObjectKey::parse(after)?)
    };
    verified.check_after(sent.as_ref())
}

/// Replays every case of a vector file; returns `(name, expected, got)` for each.
pub fn replay_file(json: &str) -> Result<Vec<(String, String, String)>, String> {
    let file: VectorFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    file.cases
        .iter()
        .map(|c| Ok((c.name.clone(), c.expect.clone(), outcome(c)?)))
        .collect()
}

/// Strict Ed25519 as the protocol uses it: the key must load (32 bytes, a point, not
/// of small order) and the 64-byte signature must verify strictly.
pub fn ed25519_accepts(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = PublicKey::from_slice(public_key) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[derive(Deserialize)]
struct Wycheproof {
    #[serde(rename = "testGroups")]
    groups: Vec<WycheproofGroup>,
}

#[derive(Deserialize)]
struct WycheproofGroup {
    #[serde(rename = "publicKey")]
    public_key: WycheproofKey,
    tests: Vec<WycheproofTest>,
}

#[derive(Deserialize)]
struct WycheproofKey {
    pk: String,
}

#[derive(Deserialize)]
struct WycheproofTest {
    #[serde(rename = "tcId")]
    id: u32,
    msg: String,
    sig: String,
    result: String,
}

/// Replays Wycheproof `ed25519_test.json`: `(tcId, expected_valid, accepted)`.
pub fn replay_wycheproof(json: &str) -> Result<Vec<(u32, bool, bool)>, String> {
    let w: Wycheproof = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for g in &w.groups {
        let pk = from_hex(&g.public_key.pk)?;
        for t in &g.tests {
            let accepted = ed25519_accepts(&pk, &from_hex(&t.msg)?, &from_hex(&t.sig)?);
            out.push((t.id, t.result == "valid", accepted));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct SpeccheckCase {
    message: String,
    pub_key: String,
    signature: String,
}

/// Replays speccheck `cases.json`: whether each case is accepted, in file order.
pub fn replay_speccheck(json: &str) -> Result<Vec<bool>, String> {
    let cases: Vec<SpeccheckCase> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    cases
        .iter()
        .map(|c| {
            Ok(ed25519_accepts(
                &from_hex(&c.pub_key)?,
                &from_hex(&c.message)?,
                &from_hex(&c.signature)?,
            ))
        })
        .collect()
}

/// Countersign's decision for each of the ten speccheck cases, in file order
/// (documented case by case in `docs/PROTOCOL.md`): every one is refused.
pub const SPECCHECK_DECISIONS: [bool; 10] = [false; 10];
