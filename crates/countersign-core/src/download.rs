//! What a reader checks before trusting bytes served by a gatekeeper: the receipt
//! (the gatekeeper allowed *this* request), the manifest (an authorized upload of
//! *this* object) and the body (the bytes of that upload). One function, shared by
//! the browser client and the CLI.

use crate::canonical::{BodyDigest, Method, Request};
use crate::error::{Error, ErrorCode, Result};
use crate::manifest::{Manifest, VerifiedManifest};
use crate::policy::Policy;
use crate::receipt::{Decision, Receipt, VerifiedReceipt};
use crate::signature::SignatureEntry;

/// The signed documents that came back with a GET or HEAD.
#[derive(Clone, Copy, Debug)]
pub struct Download<'a> {
    /// The canonical request the reader sent.
    pub request: &'a [u8],
    /// `Countersign-Receipt`, decoded.
    pub receipt: &'a [u8],
    /// `Countersign-Receipt-Signature`, parsed.
    pub receipt_signatures: &'a [SignatureEntry],
    /// `Countersign-Manifest`, decoded.
    pub manifest: &'a [u8],
    /// `Countersign-Manifest-Signature`, parsed.
    pub manifest_signatures: &'a [SignatureEntry],
}

/// A download whose receipt, manifest and (for a whole-object GET) body all verified.
#[derive(Clone, Debug)]
pub struct VerifiedDownload {
    /// The gatekeeper's receipt for the request.
    pub receipt: VerifiedReceipt,
    /// The object's manifest.
    pub manifest: VerifiedManifest,
}

/// Verifies a download. `body` is the digest of the bytes received: required for a GET
/// of the whole object, `None` for a HEAD. A ranged GET is refused (`invalid_field`):
/// its bytes cannot be checked against the manifest. `gatekeeper` holds the keys of
/// the request's audience, the gatekeeper the reader sent it to. A verified `deny`
/// receipt (for any code, `expired` included) is returned as an error with the
/// receipt's own code; an `allow` receipt must be bound to the request's window.
pub fn verify_download(
    download: &Download<'_>,
    body: Option<&BodyDigest>,
    gatekeeper: &Policy,
    uploader: &Policy,
) -> Result<VerifiedDownload> {
    let request = Request::parse(download.request)?;
    let key = request.operation().object_key().ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidField,
            "a download is a GET or HEAD of one object",
        )
    })?;
    match (request.operation(), body) {
        (crate::Operation::Get { range: Some(_), .. }, _) => {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a ranged GET cannot be verified against the whole object's manifest",
            ));
        }
        (crate::Operation::Get { .. }, None) => {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a GET download must be verified with its body",
            ));
        }
        _ if request.method() == Method::Head && body.is_some() => {
            return Err(Error::new(ErrorCode::InvalidField, "a HEAD has no body"));
        }
        _ => {}
    }
    // The reader sent its request to the request's audience, whose keys `gatekeeper`
    // holds: that is the gatekeeper the receipt must name, whatever it decided.
    let receipt = Receipt::verify(
        download.receipt,
        download.receipt_signatures,
        request.audience(),
        gatekeeper,
        download.request,
    )?;
    if let Decision::Deny(code) = receipt.receipt().decision {
        return Err(Error::new(
            code,
            format!("the gatekeeper refused the request ({code})"),
        ));
    }
    let manifest = Manifest::verify(
        download.manifest,
        download.manifest_signatures,
        gatekeeper,
        uploader,
    )?;
    manifest.check_object(request.bucket(), key)?;
    if let Some(body) = body {
        manifest.check_body(body)?;
    }
    Ok(VerifiedDownload { receipt, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Bucket, ContentType, GatekeeperId, KeyId, Nonce, ObjectKey, Role, Subject};
    use crate::policy::{AuthorizedKey, Keyring, RequestVerifier};
    use crate::signature::PublicKey;
    use crate::{Operation, Request};
    use ed25519_dalek::SigningKey;

    const T: u64 = 1_800_000_000;

    struct World {
        vendor: SigningKey,
        gatekeeper: SigningKey,
        keyring: Keyring,
    }

    fn world() -> World {
        let vendor = SigningKey::from_bytes(&[1; 32]);
        let gatekeeper = SigningKey::from_bytes(&[2; 32]);
        let key = |k: &SigningKey, id: &str, role: Role| AuthorizedKey {
            key_id: KeyId::parse(id).unwrap(),
            role,
            public_key: PublicKey::from_bytes(&k.verifying_key().to_bytes()).unwrap(),
            not_before: None,
            not_after: None,
        };
        let keyring = Keyring::new([
            key(&vendor, "v1", Role::vendor()),
            key(&gatekeeper, "g1", Role::gatekeeper()),
        ])
        .unwrap();
        World {
            vendor,
            gatekeeper,
            keyring,
        }
    }

    fn request(op: Operation, nonce: u8) -> Vec<u8> {
        Request::from_parts(
            GatekeeperId::parse("gk.acme").unwrap(),
            Bucket::parse("reports").unwrap(),
            op,
            Subject::parse("user-42").unwrap(),
            T,
            T + 60,
            Nonce([nonce; 16]),
        )
        .unwrap()
        .encode()
    }

    /// Stores `body` under `key` as a gatekeeper would, then serves a GET of `get_key`;
    /// returns everything the reader receives.
    fn serve(w: &World, body: &[u8], get: Operation, decision: Decision) -> [Vec<u8>; 5] {
        serve_at(w, body, get, decision, T + 2)
    }

    /// Like [`serve`], with the receipt decided at `decided_at`.
    fn serve_at(
        w: &World,
        body: &[u8],
        get: Operation,
        decision: Decision,
        decided_at: u64,
    ) -> [Vec<u8>; 5] {
        let put = request(
            Operation::Put {
                key: ObjectKey::parse("org/a.png").unwrap(),
                content_type: ContentType::parse("image/png").unwrap(),
                body: BodyDigest::of(body),
            },
            1,
        );
        let vendor_policy = Policy::new(w.keyring.clone(), [(Role::vendor(), 1)]).unwrap();
        let verifier = RequestVerifier::new(
            GatekeeperId::parse("gk.acme").unwrap(),
            vendor_policy,
            900,
            30,
        )
        .unwrap();
        let sig = crate::SignatureEntry::sign(
            &w.vendor,
            Role::vendor(),
            KeyId::parse("v1").unwrap(),
            &put,
        );
        let verified = verifier.verify(&put, &[sig], T + 1).unwrap();
        let manifest =
            Manifest::for_put(&verified, GatekeeperId::parse("gk.acme").unwrap(), T + 1, 3)
                .unwrap();
        let (manifest, manifest_sig) = manifest.sign(&w.gatekeeper, KeyId::parse("g1").unwrap());
        let get = request(get, 2);
        let receipt = Receipt {
            gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
            request_sha256: sha2::Sha256::digest(&get).into(),
            decision,
            decided_at,
            audit_seq: 4,
            leaf_sha256: Some([9; 32]),
        };
        let (receipt, receipt_sig) = receipt.sign(&w.gatekeeper, KeyId::parse("g1").unwrap());
        let enc = |s: crate::SignatureEntry| s.encode().into_bytes();
        [get, receipt, enc(receipt_sig), manifest, enc(manifest_sig)]
    }

    fn check(w: &World, parts: &[Vec<u8>; 5], body: Option<&[u8]>) -> Result<VerifiedDownload> {
        let [request, receipt, rs, manifest, ms] = parts;
        let rs = crate::signature::parse_list(std::str::from_utf8(rs).unwrap()).unwrap();
        let ms = crate::signature::parse_list(std::str::from_utf8(ms).unwrap()).unwrap();
        let gk = Policy::new(w.keyring.clone(), [(Role::gatekeeper(), 1)]).unwrap();
        let up = Policy::new(w.keyring.clone(), [(Role::vendor(), 1)]).unwrap();
        let download = Download {
            request,
            receipt,
            receipt_signatures: &rs,
            manifest,
            manifest_signatures: &ms,
        };
        verify_download(&download, body.map(BodyDigest::of).as_ref(), &gk, &up)
    }

    use sha2::Digest as _;

    fn get(key: &str) -> Operation {
        Operation::Get {
            key: ObjectKey::parse(key).unwrap(),
            range: None,
        }
    }

    #[test]
    fn a_served_object_verifies_and_tampering_does_not() {
        let w = world();
        let body = b"\x89PNG screenshot";
        let parts = serve(&w, body, get("org/a.png"), Decision::Allow);
        let ok = check(&w, &parts, Some(body)).unwrap();
        assert_eq!(ok.manifest.uploader().as_str(), "user-42");
        assert_eq!(ok.receipt.receipt().audit_seq, 4);

        let code = |r: Result<VerifiedDownload>| r.unwrap_err().code();
        assert_eq!(
            code(check(&w, &parts, Some(b"\x89PNG screenshoT"))),
            ErrorCode::BodyMismatch
        );
        assert_eq!(code(check(&w, &parts, None)), ErrorCode::InvalidField);

        // The right manifest served for another key.
        let other = serve(&w, body, get("org/b.png"), Decision::Allow);
        assert_eq!(
            code(check(&w, &other, Some(body))),
            ErrorCode::ManifestMismatch
        );

        // A receipt for another request.
        let mut swapped = parts.clone();
        swapped[1] = other[1].clone();
        swapped[2] = other[2].clone();
        assert_eq!(
            code(check(&w, &swapped, Some(body))),
            ErrorCode::ReceiptMismatch
        );

        // A denial receipt carries its code.
        let denied = serve(
            &w,
            body,
            get("org/a.png"),
            Decision::Deny(ErrorCode::IpDenied),
        );
        assert_eq!(code(check(&w, &denied, Some(body))), ErrorCode::IpDenied);

        // A denial decided after the request's window (it had expired) verifies and
        // reports its code; an allow decided then is refused.
        let late = T + 60 + 600;
        let expired = serve_at(
            &w,
            body,
            get("org/a.png"),
            Decision::Deny(ErrorCode::Expired),
            late,
        );
        assert_eq!(code(check(&w, &expired, Some(body))), ErrorCode::Expired);
        let late_allow = serve_at(&w, body, get("org/a.png"), Decision::Allow, late);
        assert_eq!(
            code(check(&w, &late_allow, Some(body))),
            ErrorCode::ReceiptMismatch
        );

        // HEAD verifies without a body; a ranged GET cannot be verified.
        let head = serve(
            &w,
            body,
            Operation::Head {
                key: ObjectKey::parse("org/a.png").unwrap(),
            },
            Decision::Allow,
        );
        assert!(check(&w, &head, None).is_ok());
        let ranged = serve(
            &w,
            body,
            Operation::Get {
                key: ObjectKey::parse("org/a.png").unwrap(),
                range: Some(crate::ByteRange::new(0, 1).unwrap()),
            },
            Decision::Allow,
        );
        assert_eq!(
            code(check(&w, &ranged, Some(body))),
            ErrorCode::InvalidField
        );
    }
}
