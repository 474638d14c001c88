//! The HTTP transport of signed documents, and verification of what a gatekeeper
//! returns: its receipt (countersignature), on GET/HEAD the object's manifest, and on
//! LIST the signed listing. Header names and URL paths are the core's
//! [`countersign_core::transport`], re-exported here.

use crate::error::Result;
use countersign_core::download::{Download, VerifiedDownload, verify_download};
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, parse_b64};
use countersign_core::{
    AuthorizedKey, BodyDigest, Error as CoreError, ErrorCode, GatekeeperId, Keyring, Listing,
    Manifest, ObjectKey, Policy, Receipt, Role, SignatureEntry, VerifiedListing, VerifiedManifest,
    VerifiedReceipt,
};

pub use countersign_core::transport::{
    MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER, RECEIPT_HEADER, RECEIPT_SIGNATURE_HEADER,
    REQUEST_HEADER, SIGNATURE_HEADER, list_path, object_path,
};

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

/// Verifies a receipt from its header values: the `gatekeeper` policy (the keys of
/// `gatekeeper_id`) must approve it, it must name `gatekeeper_id`, the gatekeeper the
/// request was sent to (normally the request's audience), and it must name `request`
/// (the canonical bytes that were sent). A receipt of either decision verifies (see
/// [`Receipt::verify`]); the caller acts on [`VerifiedReceipt::decision`].
pub fn verify_receipt(
    receipt_header: &str,
    signature_header: &str,
    gatekeeper_id: &GatekeeperId,
    gatekeeper: &Policy,
    request: &[u8],
) -> Result<VerifiedReceipt> {
    let bytes = parse_b64(receipt_header.trim(), "the receipt header")?;
    let signatures = parse_list(signature_header.trim())?;
    Ok(Receipt::verify(
        &bytes,
        &signatures,
        gatekeeper_id,
        gatekeeper,
        request,
    )?)
}

/// Verifies the signed page of a LIST answer from the two members of its JSON body,
/// `listing` (base64url of the listing) and `listing_signature` (a signature list):
/// the `gatekeeper` policy approves it, it answers `request` (the canonical LIST
/// request that was sent) and starts after `sent_after`, the cursor sent as `after`
/// (`None` for the first page, else the previous page's
/// [`Listing::next_after`]). Only the verified listing's objects and `next-after`
/// are to be used, never the body's unsigned convenience members.
pub fn verify_listing(
    listing: &str,
    listing_signature: &str,
    gatekeeper: &Policy,
    request: &[u8],
    sent_after: Option<&ObjectKey>,
) -> Result<VerifiedListing> {
    let bytes = parse_b64(listing.trim(), "the listing")?;
    let signatures = parse_list(listing_signature.trim())?;
    let verified = Listing::verify(&bytes, &signatures, gatekeeper, request)?;
    verified.check_after(sent_after)?;
    Ok(verified)
}

/// [`verify_listing`] on a whole LIST response body (JSON). A body that is not a JSON
/// object with the string members `listing` and `listing_signature` is `malformed`.
pub fn verify_list_response(
    body: &[u8],
    gatekeeper: &Policy,
    request: &[u8],
    sent_after: Option<&ObjectKey>,
) -> Result<VerifiedListing> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        CoreError::new(
            ErrorCode::Malformed,
            format!("the LIST answer is not JSON: {e}"),
        )
    })?;
    let member = |name: &str| {
        json.get(name).and_then(|v| v.as_str()).ok_or_else(|| {
            CoreError::new(
                ErrorCode::Malformed,
                format!("the LIST answer has no string member `{name}`"),
            )
        })
    };
    verify_listing(
        member("listing")?,
        member("listing_signature")?,
        gatekeeper,
        request,
        sent_after,
    )
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
