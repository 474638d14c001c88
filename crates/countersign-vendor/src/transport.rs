//! The HTTP transport of signed documents, and verification of what a gatekeeper
//! returns: its receipt (countersignature) and, on GET/HEAD, the object's manifest.

use crate::error::Result;
use countersign_core::download::{Download, VerifiedDownload, verify_download};
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, parse_b64};
use countersign_core::{
    AuthorizedKey, BodyDigest, Keyring, Manifest, Policy, Receipt, Role, SignatureEntry,
    VerifiedManifest, VerifiedReceipt,
};

/// Request header: base64url (no padding) of the canonical request.
pub const REQUEST_HEADER: &str = "Countersign-Request";
/// Request header: the signature list over the canonical request.
pub const SIGNATURE_HEADER: &str = "Countersign-Signature";
/// Response header: base64url of the gatekeeper's receipt.
pub const RECEIPT_HEADER: &str = "Countersign-Receipt";
/// Response header: the signature list over the receipt.
pub const RECEIPT_SIGNATURE_HEADER: &str = "Countersign-Receipt-Signature";
/// Response header (GET/HEAD): base64url of the object's manifest.
pub const MANIFEST_HEADER: &str = "Countersign-Manifest";
/// Response header (GET/HEAD): the signature list over the manifest.
pub const MANIFEST_SIGNATURE_HEADER: &str = "Countersign-Manifest-Signature";

/// The two request header values for a canonical request and its signatures.
pub fn request_headers(canonical: &[u8], signatures: &[SignatureEntry]) -> (String, String) {
    (b64(canonical), encode_list(signatures))
}

/// A policy that requires `threshold` distinct keys of `role` among `keys` (keys of
/// other roles are left out).
pub fn role_policy(
    keys: impl IntoIterator<Item = AuthorizedKey>,
    role: &Role,
    threshold: usize,
) -> Result<Policy> {
    let keyring = Keyring::new(keys.into_iter().filter(|k| &k.role == role))?;
    Ok(Policy::new(keyring, [(role.clone(), threshold)])?)
}

/// Verifies a receipt from its header values: the `gatekeeper` policy must approve
/// it and it must name `request` (the canonical bytes that were sent). The receipt's
/// decision (allow or deny) is the caller's to read.
pub fn verify_receipt(
    receipt_header: &str,
    signature_header: &str,
    gatekeeper: &Policy,
    request: &[u8],
) -> Result<VerifiedReceipt> {
    let bytes = parse_b64(receipt_header.trim(), "the receipt header")?;
    let signatures = parse_list(signature_header.trim())?;
    Ok(Receipt::verify(&bytes, &signatures, gatekeeper, request)?)
}

/// Verifies a manifest from its header values: signed by the `gatekeeper` policy, and
/// its PUT request signed under the `uploader` policy. Check the object and body with
/// [`VerifiedManifest::check_object`] and [`VerifiedManifest::check_body`].
pub fn verify_manifest(
    manifest_header: &str,
    signature_header: &str,
    gatekeeper: &Policy,
    uploader: &Policy,
) -> Result<VerifiedManifest> {
    let bytes = parse_b64(manifest_header.trim(), "the manifest header")?;
    let signatures = parse_list(signature_header.trim())?;
    Ok(Manifest::verify(&bytes, &signatures, gatekeeper, uploader)?)
}

/// The four response header values of a GET or HEAD, as received.
#[derive(Clone, Copy, Debug)]
pub struct DownloadHeaders<'a> {
    /// `Countersign-Receipt`.
    pub receipt: &'a str,
    /// `Countersign-Receipt-Signature`.
    pub receipt_signature: &'a str,
    /// `Countersign-Manifest`.
    pub manifest: &'a str,
    /// `Countersign-Manifest-Signature`.
    pub manifest_signature: &'a str,
}

/// The one check before trusting downloaded bytes, from header values: decodes them
/// and runs the core's [`verify_download`] (receipt for `request` that allows it,
/// manifest of this object under both policies, and `body`, the digest of the bytes
/// received, required for a whole-object GET and `None` for a HEAD).
pub fn verify_download_headers(
    request: &[u8],
    headers: &DownloadHeaders<'_>,
    body: Option<&BodyDigest>,
    gatekeeper: &Policy,
    uploader: &Policy,
) -> Result<VerifiedDownload> {
    let receipt = parse_b64(headers.receipt.trim(), "the receipt header")?;
    let receipt_signatures = parse_list(headers.receipt_signature.trim())?;
    let manifest = parse_b64(headers.manifest.trim(), "the manifest header")?;
    let manifest_signatures = parse_list(headers.manifest_signature.trim())?;
    let download = Download {
        request,
        receipt: &receipt,
        receipt_signatures: &receipt_signatures,
        manifest: &manifest,
        manifest_signatures: &manifest_signatures,
    };
    Ok(verify_download(&download, body, gatekeeper, uploader)?)
}
