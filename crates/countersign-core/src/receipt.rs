//! The gatekeeper's receipt (`countersign/v2/receipt`; version 1 still verifies): its
//! countersignature on one request, with the decision it took and where the audit log
//! recorded it: the entry's leaf index and, from version 2 on, its RFC 6962 leaf hash,
//! so the client can prove its request was logged ([`crate::logged`]).

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

impl std::fmt::Display for Decision {
    /// `allow`, or `deny` and the error code (`deny expired`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Deny(code) => write!(f, "deny {code}"),
        }
    }
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
    /// Sequence number of the audit entry that recorded the decision: its leaf index
    /// in the transparency log.
    pub audit_seq: u64,
    /// The RFC 6962 leaf hash of that entry's exact bytes (receipt version 2); `None`
    /// for a version-1 receipt, which does not carry it.
    pub leaf_sha256: Option<[u8; 32]>,
}

impl Receipt {
    /// The exact canonical bytes: version 2 with a leaf hash, else version 1.
    pub fn encode(&self) -> Vec<u8> {
        let version = if self.leaf_sha256.is_some() { 2 } else { 1 };
        let mut w = Writer::versioned(version, "receipt");
        w.field("gatekeeper", self.gatekeeper.as_str())
            .field("request-sha256", &hex(&self.request_sha256))
            .field("decision", self.decision.as_str())
            .field("error", self.decision.error().map_or("", ErrorCode::as_str))
            .field("decided-at", &self.decided_at.to_string())
            .field("audit-seq", &self.audit_seq.to_string());
        if let Some(leaf) = &self.leaf_sha256 {
            w.field("leaf-sha256", &hex(leaf));
        }
        w.finish()
    }

    /// Parses canonical bytes of version 2 or 1.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (mut r, version) = Reader::versioned(bytes, "receipt", MAX_RECEIPT_BYTES, &[2, 1])?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let request_sha256 = parse_hex::<32>(r.field("request-sha256")?, "request-sha256")?;
        let decision = r.field("decision")?;
        let error = r.field("error")?;
        let decision = Decision::parse(decision, error)?;
        let decided_at = parse_decimal(r.field("decided-at")?, "decided-at")?;
        let audit_seq = parse_decimal(r.field("audit-seq")?, "audit-seq")?;
        let leaf_sha256 = match version {
            1 => None,
            _ => Some(parse_hex::<32>(r.field("leaf-sha256")?, "leaf-sha256")?),
        };
        r.end()?;
        Ok(Self {
            gatekeeper,
            request_sha256,
            decision,
            decided_at,
            audit_seq,
            leaf_sha256,
        })
    }

    /// Encodes and signs as the `gatekeeper` role.
    pub fn sign(&self, key: &SigningKey, key_id: KeyId) -> (Vec<u8>, SignatureEntry) {
        let bytes = self.encode();
        let sig = SignatureEntry::sign(key, Role::gatekeeper(), key_id, &bytes);
        (bytes, sig)
    }

    /// Verifies a receipt of any decision for the request whose canonical bytes are
    /// `request`, sent to the gatekeeper `gatekeeper` whose keys `policy` holds
    /// (`docs/PROTOCOL.md`, "Receipts", "Verification"):
    ///
    /// 1. the receipt parses and `policy` approves it at its `decided-at`;
    /// 2. its `gatekeeper` is `gatekeeper` (`receipt_mismatch`);
    /// 3. its `request-sha256` is the SHA-256 of `request` (`receipt_mismatch`);
    /// 4. for `allow` only: `request` parses, is addressed to `gatekeeper` and
    ///    `decided-at` lies in its validity window widened by
    ///    [`crate::canonical::MAX_CLOCK_SKEW_SECS`] (`receipt_mismatch`).
    ///
    /// A `deny` receipt therefore verifies for every refusal, including a request that
    /// was refused because it was expired, not yet valid, addressed to another
    /// gatekeeper or did not even parse. The caller acts on
    /// [`VerifiedReceipt::decision`].
    pub fn verify(
        bytes: &[u8],
        signatures: &[SignatureEntry],
        gatekeeper: &GatekeeperId,
        policy: &Policy,
        request: &[u8],
    ) -> Result<VerifiedReceipt> {
        let receipt = Self::parse(bytes)?;
        let approvals = policy.approve(bytes, signatures, receipt.decided_at)?;
        if &receipt.gatekeeper != gatekeeper {
            return Err(Error::new(
                ErrorCode::ReceiptMismatch,
                format!(
                    "the receipt names the gatekeeper `{}`, not `{gatekeeper}` whose keys were used",
                    receipt.gatekeeper
                ),
            ));
        }
        let expected: [u8; 32] = Sha256::digest(request).into();
        if receipt.request_sha256 != expected {
            return Err(Error::new(
                ErrorCode::ReceiptMismatch,
                "the receipt is for another request",
            ));
        }
        if receipt.decision == Decision::Allow {
            let request = Request::parse(request)?;
            if request.audience() != &receipt.gatekeeper {
                return Err(Error::new(
                    ErrorCode::ReceiptMismatch,
                    "the receipt allows a request addressed to another gatekeeper",
                ));
            }
            if !request.in_window(receipt.decided_at) {
                return Err(Error::new(
                    ErrorCode::ReceiptMismatch,
                    "the receipt allows the request at a time outside its validity window",
                ));
            }
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
    /// What the gatekeeper decided.
    pub fn decision(&self) -> Decision {
        self.receipt.decision
    }
    /// Which gatekeeper keys signed.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::Operation;
    use crate::names::{Bucket, Nonce, ObjectKey, Subject};
    use crate::policy::{AuthorizedKey, Keyring};
    use crate::signature::PublicKey;

    const T: u64 = 1_800_000_000;

    fn gk(id: &str) -> GatekeeperId {
        GatekeeperId::parse(id).unwrap()
    }

    fn policy(key: &SigningKey) -> Policy {
        let keyring = Keyring::new([AuthorizedKey {
            key_id: KeyId::parse("g1").unwrap(),
            role: Role::gatekeeper(),
            public_key: PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap(),
            not_before: None,
            not_after: None,
        }])
        .unwrap();
        Policy::new(keyring, [(Role::gatekeeper(), 1)]).unwrap()
    }

    /// A GET addressed to `audience`, valid for `[T, T + 60)`.
    fn request(audience: &str) -> Vec<u8> {
        Request::from_parts(
            gk(audience),
            Bucket::parse("reports").unwrap(),
            Operation::Get {
                key: ObjectKey::parse("a.pdf").unwrap(),
                range: None,
            },
            Subject::parse("user-42").unwrap(),
            T,
            T + 60,
            Nonce([7; 16]),
        )
        .unwrap()
        .encode()
    }

    /// Signs a receipt by `from` on `request` and verifies it as the client of
    /// `trusted` would.
    fn check(
        from: &str,
        trusted: &str,
        request: &[u8],
        decision: Decision,
        decided_at: u64,
    ) -> Result<Decision> {
        let key = SigningKey::from_bytes(&[2; 32]);
        let receipt = Receipt {
            gatekeeper: gk(from),
            request_sha256: Sha256::digest(request).into(),
            decision,
            decided_at,
            audit_seq: 3,
            leaf_sha256: Some([4; 32]),
        };
        let (bytes, sig) = receipt.sign(&key, KeyId::parse("g1").unwrap());
        Receipt::verify(&bytes, &[sig], &gk(trusted), &policy(&key), request).map(|v| v.decision())
    }

    #[test]
    fn every_denial_has_a_verifiable_receipt() {
        let req = request("gk.acme");
        for (code, at) in [
            (ErrorCode::Expired, T + 60 + 30 + 10_000),
            (ErrorCode::NotYetValid, T - 10_000),
            (ErrorCode::AccessDenied, T + 1),
            (ErrorCode::Replayed, T + 2),
        ] {
            let deny = Decision::Deny(code);
            assert_eq!(check("gk.acme", "gk.acme", &req, deny, at), Ok(deny));
        }
        // A request addressed to another gatekeeper, refused by the one it reached.
        let away = request("gk.other");
        let deny = Decision::Deny(ErrorCode::WrongAudience);
        assert_eq!(check("gk.acme", "gk.acme", &away, deny, T + 1), Ok(deny));
        // Bytes that are no request at all can be refused with a receipt too.
        let deny = Decision::Deny(ErrorCode::NonCanonical);
        assert_eq!(check("gk.acme", "gk.acme", b"junk", deny, T), Ok(deny));
    }

    #[test]
    fn allow_receipts_stay_bound_to_audience_and_window() {
        let code = |r: Result<Decision>| r.unwrap_err().code();
        let req = request("gk.acme");
        assert_eq!(
            check("gk.acme", "gk.acme", &req, Decision::Allow, T + 1),
            Ok(Decision::Allow)
        );
        // Outside [issued-at - 600, expires-at + 600).
        for at in [T - 601, T + 60 + 600] {
            assert_eq!(
                code(check("gk.acme", "gk.acme", &req, Decision::Allow, at)),
                ErrorCode::ReceiptMismatch,
                "{at}"
            );
        }
        assert!(check("gk.acme", "gk.acme", &req, Decision::Allow, T - 600).is_ok());
        assert!(check("gk.acme", "gk.acme", &req, Decision::Allow, T + 659).is_ok());
        // An allow for a request addressed to another gatekeeper.
        let away = request("gk.other");
        assert_eq!(
            code(check("gk.acme", "gk.acme", &away, Decision::Allow, T + 1)),
            ErrorCode::ReceiptMismatch
        );
        // An allow for bytes that are not a request.
        assert_eq!(
            code(check("gk.acme", "gk.acme", b"junk", Decision::Allow, T)),
            ErrorCode::NonCanonical
        );
    }

    #[test]
    fn a_receipt_names_the_gatekeeper_whose_keys_signed_it() {
        let code = |r: Result<Decision>| r.unwrap_err().code();
        let req = request("gk.acme");
        let deny = Decision::Deny(ErrorCode::WrongAudience);
        // Same keys, another gatekeeper id: neither decision is accepted.
        assert_eq!(
            code(check("gk.other", "gk.acme", &req, deny, T + 1)),
            ErrorCode::ReceiptMismatch
        );
        assert_eq!(
            code(check("gk.other", "gk.acme", &req, Decision::Allow, T + 1)),
            ErrorCode::ReceiptMismatch
        );
        // A deny receipt cannot be moved to another request (another nonce).
        let key = SigningKey::from_bytes(&[2; 32]);
        let receipt = Receipt {
            gatekeeper: gk("gk.acme"),
            request_sha256: Sha256::digest(&req).into(),
            decision: Decision::Deny(ErrorCode::Expired),
            decided_at: T + 1000,
            audit_seq: 3,
            leaf_sha256: None,
        };
        let (bytes, sig) = receipt.sign(&key, KeyId::parse("g1").unwrap());
        let mut other = req.clone();
        let last = other.len() - 2;
        other[last] = b'8';
        assert_eq!(
            Receipt::verify(
                &bytes,
                std::slice::from_ref(&sig),
                &gk("gk.acme"),
                &policy(&key),
                &other
            )
            .unwrap_err()
            .code(),
            ErrorCode::ReceiptMismatch
        );
        // Turning the signed deny into an allow breaks the signature.
        let forged = String::from_utf8(bytes)
            .unwrap()
            .replace("decision:deny\nerror:expired", "decision:allow\nerror:");
        assert_eq!(
            Receipt::verify(
                forged.as_bytes(),
                &[sig],
                &gk("gk.acme"),
                &policy(&key),
                &req
            )
            .unwrap_err()
            .code(),
            ErrorCode::BadSignature
        );
    }

    #[test]
    fn version_one_receipts_keep_verifying_and_versions_do_not_mix() {
        let key = SigningKey::from_bytes(&[2; 32]);
        let req = request("gk.acme");
        let mut receipt = Receipt {
            gatekeeper: gk("gk.acme"),
            request_sha256: Sha256::digest(&req).into(),
            decision: Decision::Allow,
            decided_at: T + 1,
            audit_seq: 12,
            leaf_sha256: None,
        };
        let (v1, v1_sig) = receipt.sign(&key, KeyId::parse("g1").unwrap());
        assert!(v1.starts_with(b"countersign/v1/receipt\n"));
        let verified = Receipt::verify(
            &v1,
            std::slice::from_ref(&v1_sig),
            &gk("gk.acme"),
            &policy(&key),
            &req,
        )
        .unwrap();
        assert_eq!(verified.receipt(), &receipt);

        receipt.leaf_sha256 = Some([0xab; 32]);
        let (v2, v2_sig) = receipt.sign(&key, KeyId::parse("g1").unwrap());
        let text = String::from_utf8(v2.clone()).unwrap();
        assert!(text.starts_with("countersign/v2/receipt\n"), "{text}");
        assert!(text.ends_with(&format!("audit-seq:12\nleaf-sha256:{}\n", "ab".repeat(32))));
        let verified = Receipt::verify(
            &v2,
            std::slice::from_ref(&v2_sig),
            &gk("gk.acme"),
            &policy(&key),
            &req,
        )
        .unwrap();
        assert_eq!(verified.receipt().leaf_sha256, Some([0xab; 32]));
        // Version 2 signs under its own signing-message prefix: a version-1 signature
        // does not verify a version-2 receipt of the same fields, nor the reverse.
        let code = |bytes: &[u8], sig: &SignatureEntry| {
            Receipt::verify(
                bytes,
                std::slice::from_ref(sig),
                &gk("gk.acme"),
                &policy(&key),
                &req,
            )
            .unwrap_err()
            .code()
        };
        assert_eq!(code(&v2, &v1_sig), ErrorCode::BadSignature);
        assert_eq!(code(&v1, &v2_sig), ErrorCode::BadSignature);
        // A version-2 header without the leaf hash, or a version-1 header with it.
        let cut = text.replace(&format!("leaf-sha256:{}\n", "ab".repeat(32)), "");
        assert_eq!(
            Receipt::parse(cut.as_bytes()).unwrap_err().code(),
            ErrorCode::NonCanonical
        );
        let extra = text.replace("countersign/v2/", "countersign/v1/");
        assert_eq!(
            Receipt::parse(extra.as_bytes()).unwrap_err().code(),
            ErrorCode::NonCanonical
        );
        let v3 = text.replace("countersign/v2/", "countersign/v3/");
        assert_eq!(
            Receipt::parse(v3.as_bytes()).unwrap_err().code(),
            ErrorCode::UnsupportedVersion
        );
    }
}
