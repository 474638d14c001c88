//! The signed object manifest (`countersign/v1/manifest`), stored with every object at
//! PUT: it carries the vendor-signed PUT request (hash, size, type, uploader) and is
//! itself signed by the gatekeeper, so any later reader can check that the bytes came
//! from an authorized upload and were not changed in the bucket.

use crate::canonical::{BodyDigest, MAX_REQUEST_BYTES, Operation, Request};
use crate::error::{Error, ErrorCode, Result};
use crate::names::{Bucket, ContentType, GatekeeperId, KeyId, ObjectKey, Role, Subject};
use crate::policy::{Approvals, Policy, VerifiedRequest};
use crate::signature::{MAX_SIGNATURES, SignatureEntry, encode_list, parse_list};
use crate::text::{Reader, Writer, b64, parse_b64, parse_decimal};
use ed25519_dalek::SigningKey;

/// Largest manifest in bytes.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;

/// A manifest, parsed but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    gatekeeper: GatekeeperId,
    stored_at: u64,
    audit_seq: u64,
    request: Request,
    request_canonical: Vec<u8>,
    request_signatures: Vec<SignatureEntry>,
}

impl Manifest {
    /// The manifest of a verified PUT, stored at `stored_at` and audited as
    /// `audit_seq`. Signatures are kept sorted by (role, key id), duplicates dropped.
    pub fn for_put(
        put: &VerifiedRequest,
        gatekeeper: GatekeeperId,
        stored_at: u64,
        audit_seq: u64,
    ) -> Result<Self> {
        if put.request().method() != crate::canonical::Method::Put {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a manifest describes a PUT request",
            ));
        }
        let mut sigs = put.signatures().to_vec();
        sigs.sort_by(|a, b| (&a.role, &a.key_id).cmp(&(&b.role, &b.key_id)));
        sigs.dedup_by(|a, b| a.role == b.role && a.key_id == b.key_id);
        Ok(Self {
            gatekeeper,
            stored_at,
            audit_seq,
            request: put.request().clone(),
            request_canonical: put.canonical().to_vec(),
            request_signatures: sigs,
        })
    }

    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new("manifest");
        w.field("gatekeeper", self.gatekeeper.as_str())
            .field("stored-at", &self.stored_at.to_string())
            .field("audit-seq", &self.audit_seq.to_string())
            .field("request", &b64(&self.request_canonical))
            .field("request-signatures", &encode_list(&self.request_signatures));
        w.finish()
    }

    /// Parses canonical bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "manifest", MAX_MANIFEST_BYTES)?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let stored_at = parse_decimal(r.field("stored-at")?, "stored-at")?;
        let audit_seq = parse_decimal(r.field("audit-seq")?, "audit-seq")?;
        let request_canonical = parse_b64(r.field("request")?, "the manifest's request")?;
        let request_signatures = parse_list(r.field("request-signatures")?)?;
        r.end()?;
        if request_canonical.len() > MAX_REQUEST_BYTES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                "the manifest's request is too large",
            ));
        }
        let request = Request::parse(&request_canonical)?;
        if request.method() != crate::canonical::Method::Put {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a manifest's request must be a PUT",
            ));
        }
        let sorted = request_signatures
            .windows(2)
            .all(|w| matches!(w, [a, b] if (&a.role, &a.key_id) < (&b.role, &b.key_id)));
        if !sorted || request_signatures.len() > MAX_SIGNATURES {
            return Err(Error::new(
                ErrorCode::NonCanonical,
                "request-signatures must be sorted by role, then key id, without repeats",
            ));
        }
        Ok(Self {
            gatekeeper,
            stored_at,
            audit_seq,
            request,
            request_canonical,
            request_signatures,
        })
    }

    /// Encodes and signs as the `gatekeeper` role.
    pub fn sign(&self, key: &SigningKey, key_id: KeyId) -> (Vec<u8>, SignatureEntry) {
        let bytes = self.encode();
        let sig = SignatureEntry::sign(key, Role::gatekeeper(), key_id, &bytes);
        (bytes, sig)
    }

    /// Verifies a manifest: the `gatekeeper` policy must approve its bytes at
    /// `stored-at`, the `uploader` policy must approve the embedded PUT request at its
    /// `issued-at` (the key may have been retired since; the upload was authorized
    /// then), the request must be addressed to the gatekeeper that stored it, and
    /// `stored-at` must lie in the request's window (see [`Request::in_window`]).
    pub fn verify(
        bytes: &[u8],
        signatures: &[SignatureEntry],
        gatekeeper: &Policy,
        uploader: &Policy,
    ) -> Result<VerifiedManifest> {
        let manifest = Self::parse(bytes)?;
        let gatekeeper_approvals = gatekeeper.approve(bytes, signatures, manifest.stored_at)?;
        let uploader_approvals = uploader.approve(
            &manifest.request_canonical,
            &manifest.request_signatures,
            manifest.request.issued_at(),
        )?;
        if manifest.request.audience() != &manifest.gatekeeper {
            return Err(Error::new(
                ErrorCode::ManifestMismatch,
                "the manifest's PUT was addressed to another gatekeeper",
            ));
        }
        if !manifest.request.in_window(manifest.stored_at) {
            return Err(Error::new(
                ErrorCode::ManifestMismatch,
                "the manifest's stored-at lies outside its PUT request's validity window",
            ));
        }
        Ok(VerifiedManifest {
            manifest,
            gatekeeper_approvals,
            uploader_approvals,
        })
    }

    /// The gatekeeper that stored the object.
    pub fn gatekeeper(&self) -> &GatekeeperId {
        &self.gatekeeper
    }
    /// Unix seconds of the store.
    pub fn stored_at(&self) -> u64 {
        self.stored_at
    }
    /// Audit sequence number of the PUT.
    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }
    /// The PUT request.
    pub fn request(&self) -> &Request {
        &self.request
    }
    /// The PUT request's signatures.
    pub fn request_signatures(&self) -> &[SignatureEntry] {
        &self.request_signatures
    }
}

/// A manifest whose gatekeeper and uploader signatures both verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest {
    manifest: Manifest,
    gatekeeper_approvals: Approvals,
    uploader_approvals: Approvals,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// Which gatekeeper keys signed the manifest.
    pub fn gatekeeper_approvals(&self) -> &Approvals {
        &self.gatekeeper_approvals
    }
    /// Which keys signed the PUT request.
    pub fn uploader_approvals(&self) -> &Approvals {
        &self.uploader_approvals
    }

    fn put(&self) -> Option<(&ObjectKey, &ContentType, &BodyDigest)> {
        match self.manifest.request.operation() {
            Operation::Put {
                key,
                content_type,
                body,
            } => Some((key, content_type, body)),
            _ => None,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        self.manifest.request.bucket()
    }
    /// The object key.
    pub fn key(&self) -> Option<&ObjectKey> {
        self.put().map(|p| p.0)
    }
    /// The content type.
    pub fn content_type(&self) -> Option<&ContentType> {
        self.put().map(|p| p.1)
    }
    /// The signed body hash and length.
    pub fn body(&self) -> Option<&BodyDigest> {
        self.put().map(|p| p.2)
    }
    /// The vendor user who uploaded.
    pub fn uploader(&self) -> &Subject {
        self.manifest.request.subject()
    }

    /// Fails with `manifest_mismatch` unless this manifest describes `bucket`/`key`.
    pub fn check_object(&self, bucket: &Bucket, key: &ObjectKey) -> Result<()> {
        if self.bucket() == bucket && self.key() == Some(key) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::ManifestMismatch,
                format!("the manifest describes another object, not {bucket}/{key}"),
            ))
        }
    }

    /// Fails with `body_mismatch` unless `body` has the signed hash and length.
    pub fn check_body(&self, body: &BodyDigest) -> Result<()> {
        match self.body() {
            Some(signed) if signed == body => Ok(()),
            Some(signed) if signed.length != body.length => Err(Error::new(
                ErrorCode::BodyMismatch,
                format!(
                    "the body is {} bytes, the manifest says {}",
                    body.length, signed.length
                ),
            )),
            _ => Err(Error::new(
                ErrorCode::BodyMismatch,
                "the body's SHA-256 differs from the manifest's",
            )),
        }
    }
}
