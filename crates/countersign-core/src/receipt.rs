//! The gatekeeper's receipt (`countersign/v1/receipt`): its countersignature on one
//! request, with the decision it took and where the audit log recorded it.

use crate::canonical::Request;
use crate::error::{Error, ErrorCode, Result};
use crate::names::{GatekeeperId, KeyId, Role};
use crate::policy::{Approvals, Policy};
use crate::signature::SignatureEntry;
use crate::text::{Reader, Writer, hex, parse_decimal, parse_hex, preview};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

/// Largest receipt in bytes.
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// What the gatekeeper decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request was carried out.
    Allow,
    /// The request was refused with an error code.
    Deny(ErrorCode),
}

impl Decision {
    /// `allow` or `deny`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny(_) => "deny",
        }
    }

    /// The error code of a denial.
    pub fn error(&self) -> Option<ErrorCode> {
        match self {
            Self::Allow => None,
            Self::Deny(code) => Some(*code),
        }
    }

    pub(crate) fn parse(decision: &str, error: &str) -> Result<Self> {
        match (decision, error) {
            ("allow", "") => Ok(Self::Allow),
            ("deny", code) => ErrorCode::from_str_code(code)
                .map(Self::Deny)
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidField,
                        format!("`{}` is not a known error code", preview(code)),
                    )
                }),
            _ => Err(Error::new(
                ErrorCode::InvalidField,
                "decision must be `allow` with an empty error, or `deny` with an error code",
            )),
        }
    }
}

/// A receipt, parsed but not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The gatekeeper that decided.
    pub gatekeeper: GatekeeperId,
    /// SHA-256 of the canonical request decided on.
    pub request_sha256: [u8; 32],
    /// The decision.
    pub decision: Decision,
    /// Unix seconds of the decision.
    pub decided_at: u64,
    /// Sequence number of the audit entry that recorded the decision.
    pub audit_seq: u64,
}

impl Receipt {
    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new("receipt");
        w.field("gatekeeper", self.gatekeeper.as_str())
            .field("request-sha256", &hex(&self.request_sha256))
            .field("decision", self.decision.as_str())
            .field("error", self.decision.error().map_or("", ErrorCode::as_str))
            .field("decided-at", &self.decided_at.to_string())
            .field("audit-seq", &self.audit_seq.to_string());
        w.finish()
    }

    /// Parses canonical bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "receipt", MAX_RECEIPT_BYTES)?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let request_sha256 = parse_hex::<32>(r.field("request-sha256")?, "request-sha256")?;
        let decision = r.field("decision")?;
        let error = r.field("error")?;
        let decision = Decision::parse(decision, error)?;
        let decided_at = parse_decimal(r.field("decided-at")?, "decided-at")?;
        let audit_seq = parse_decimal(r.field("audit-seq")?, "audit-seq")?;
        r.end()?;
        Ok(Self {
            gatekeeper,
            request_sha256,
            decision,
            decided_at,
            audit_seq,
        })
    }

    /// Encodes and signs as the `gatekeeper` role.
    pub fn sign(&self, key: &SigningKey, key_id: KeyId) -> (Vec<u8>, SignatureEntry) {
        let bytes = self.encode();
        let sig = SignatureEntry::sign(key, Role::gatekeeper(), key_id, &bytes);
        (bytes, sig)
    }

    /// Verifies a receipt for the request whose canonical bytes are `request`:
    /// the gatekeeper `policy` must approve at `decided-at`; the receipt must name this
    /// request's SHA-256, come from the request's audience, and be decided within the
    /// request's validity window widened by [`crate::canonical::MAX_CLOCK_SKEW_SECS`].
    pub fn verify(
        bytes: &[u8],
        signatures: &[SignatureEntry],
        policy: &Policy,
        request: &[u8],
    ) -> Result<VerifiedReceipt> {
        let receipt = Self::parse(bytes)?;
        let approvals = policy.approve(bytes, signatures, receipt.decided_at)?;
        let expected: [u8; 32] = Sha256::digest(request).into();
        if receipt.request_sha256 != expected {
            return Err(Error::new(
                ErrorCode::ReceiptMismatch,
                "the receipt is for another request",
            ));
        }
        let request = Request::parse(request)?;
        if request.audience() != &receipt.gatekeeper {
            return Err(Error::new(
                ErrorCode::ReceiptMismatch,
                "the receipt comes from another gatekeeper than the request's audience",
            ));
        }
        if !request.in_window(receipt.decided_at) {
            return Err(Error::new(
                ErrorCode::ReceiptMismatch,
                "the receipt's decided-at lies outside the request's validity window",
            ));
        }
        Ok(VerifiedReceipt { receipt, approvals })
    }
}

/// A receipt whose gatekeeper signatures met the policy and which names the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceipt {
    receipt: Receipt,
    approvals: Approvals,
}

impl VerifiedReceipt {
    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
    /// Which gatekeeper keys signed.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }
}
