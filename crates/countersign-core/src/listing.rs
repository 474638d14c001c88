//! The signed LIST page (`countersign/v1/listing`): the gatekeeper's signed answer to
//! one LIST request, so nobody between the gatekeeper and the client can hide, add or
//! alter objects, and the gatekeeper itself is accountable for what it listed. See
//! `docs/PROTOCOL.md`, "Listings".

use crate::canonical::{Operation, Request};
use crate::error::{Error, ErrorCode, Result};
use crate::names::{
    Bucket, ContentType, GatekeeperId, KeyId, ListPrefix, ObjectKey, Role, percent_decode,
    percent_encode,
};
use crate::policy::{Approvals, Policy, VerifiedRequest};
use crate::signature::SignatureEntry;
use crate::text::{Reader, Writer, hex, parse_decimal, parse_hex, preview};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

/// Most objects one listing carries.
pub const MAX_LISTING_OBJECTS: usize = 1000;

/// Largest listing in bytes (4 MiB). Every listing of at most
/// [`MAX_LISTING_OBJECTS`] valid objects fits: an object line is at most 3307 bytes.
pub const MAX_LISTING_BYTES: usize = 4 * 1024 * 1024;

/// One object of a listing, as the gatekeeper's index records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// The object key.
    pub key: ObjectKey,
    /// Size in bytes (at most 2^53 - 1).
    pub size: u64,
    /// SHA-256 of the object's bytes, as signed at PUT.
    pub sha256: [u8; 32],
    /// The media type signed at PUT.
    pub content_type: ContentType,
    /// Unix seconds the object was stored.
    pub stored_at: u64,
}

impl ListedObject {
    /// `key size sha256 content-type stored-at`, the key percent-encoded.
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            percent_encode(self.key.as_str()),
            self.size,
            hex(&self.sha256),
            self.content_type,
            self.stored_at
        )
    }

    fn parse(value: &str) -> Result<Self> {
        let mut parts = value.split(' ');
        let (Some(key), Some(size), Some(sha256), Some(content_type), Some(stored_at), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Error::new(
                ErrorCode::NonCanonical,
                format!(
                    "a listed object is five values separated by single spaces, found `{}`",
                    preview(value)
                ),
            ));
        };
        Ok(Self {
            key: ObjectKey::parse(&percent_decode(key, "a listed key")?)?,
            size: parse_decimal(size, "size")?,
            sha256: parse_hex::<32>(sha256, "sha256")?,
            content_type: ContentType::parse(content_type)?,
            stored_at: parse_decimal(stored_at, "stored-at")?,
        })
    }
}

/// A listing, parsed but not verified. Its objects are in strictly increasing byte
/// order of key, at most [`MAX_LISTING_OBJECTS`], and `next-after` is empty or the
/// last object's key: [`Listing::for_request`] and [`Listing::parse`] both ensure it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    gatekeeper: GatekeeperId,
    request_sha256: [u8; 32],
    audit_seq: u64,
    listed_at: u64,
    bucket: Bucket,
    prefix: ListPrefix,
    after: Option<ObjectKey>,
    objects: Vec<ListedObject>,
    next_after: Option<ObjectKey>,
}

fn mismatch(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::ListingMismatch, message)
}

/// Checks what every listing satisfies on its own: size, order, `next-after`.
fn check_page(objects: &[ListedObject], next_after: Option<&ObjectKey>) -> Result<()> {
    if objects.len() > MAX_LISTING_OBJECTS {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!(
                "a listing carries at most {MAX_LISTING_OBJECTS} objects, got {}",
                objects.len()
            ),
        ));
    }
    for pair in objects.windows(2) {
        if let [a, b] = pair
            && a.key >= b.key
        {
            return Err(Error::new(
                ErrorCode::NonCanonical,
                format!(
                    "listed keys must strictly increase in byte order; `{}` is out of place",
                    preview(b.key.as_str())
                ),
            ));
        }
    }
    match (next_after, objects.last()) {
        (None, _) => Ok(()),
        (Some(next), Some(last)) if *next == last.key => Ok(()),
        (Some(next), _) => Err(Error::new(
            ErrorCode::InvalidField,
            format!(
                "next-after `{}` must be empty or the key of the page's last object",
                preview(next.as_str())
            ),
        )),
    }
}

/// Checks the listed keys against the listing's own prefix and cursor.
fn check_keys(
    prefix: &ListPrefix,
    after: Option<&ObjectKey>,
    objects: &[ListedObject],
) -> Result<()> {
    if let Some(o) = objects.iter().find(|o| !prefix.matches(&o.key)) {
        return Err(mismatch(format!(
            "the listed key `{}` does not start with the prefix `{}`",
            preview(o.key.as_str()),
            preview(prefix.as_str())
        )));
    }
    // Keys strictly increase, so the first one decides.
    if let (Some(after), Some(first)) = (after, objects.first())
        && first.key <= *after
    {
        return Err(mismatch(format!(
            "the listed key `{}` does not sort after the cursor `{}`",
            preview(first.key.as_str()),
            preview(after.as_str())
        )));
    }
    Ok(())
}

fn optional_key(value: &str, what: &str) -> Result<Option<ObjectKey>> {
    if value.is_empty() {
        Ok(None)
    } else {
        ObjectKey::parse(&percent_decode(value, what)?).map(Some)
    }
}

impl Listing {
    /// The listing a gatekeeper answers the verified LIST request `list` with: the
    /// page of `objects` that follows the cursor `after`, as `gatekeeper`, audited as
    /// `audit_seq` at `listed_at`. `more` says whether objects follow this page; then
    /// `next-after` is the last object's key. Fails if `list` is not a LIST request
    /// (`invalid_field`), on more than [`MAX_LISTING_OBJECTS`] objects (`too_large`),
    /// keys out of order (`non_canonical`), `more` without objects (`invalid_field`),
    /// or a key outside the prefix or not after `after` (`listing_mismatch`).
    pub fn for_request(
        list: &VerifiedRequest,
        gatekeeper: GatekeeperId,
        audit_seq: u64,
        listed_at: u64,
        after: Option<ObjectKey>,
        objects: Vec<ListedObject>,
        more: bool,
    ) -> Result<Self> {
        let Operation::List { prefix } = list.request().operation() else {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "a listing answers a LIST request",
            ));
        };
        let next_after = match (more, objects.last()) {
            (false, _) => None,
            (true, Some(last)) => Some(last.key.clone()),
            (true, None) => {
                return Err(Error::new(
                    ErrorCode::InvalidField,
                    "a page without objects cannot have a next page",
                ));
            }
        };
        check_page(&objects, next_after.as_ref())?;
        check_keys(prefix, after.as_ref(), &objects)?;
        Ok(Self {
            gatekeeper,
            request_sha256: Sha256::digest(list.canonical()).into(),
            audit_seq,
            listed_at,
            bucket: list.request().bucket().clone(),
            prefix: prefix.clone(),
            after,
            objects,
            next_after,
        })
    }

    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let key = |k: &Option<ObjectKey>| k.as_ref().map_or(String::new(), |k| k.to_url_path());
        let mut w = Writer::new("listing");
        w.field("gatekeeper", self.gatekeeper.as_str())
            .field("request-sha256", &hex(&self.request_sha256))
            .field("audit-seq", &self.audit_seq.to_string())
            .field("listed-at", &self.listed_at.to_string())
            .field("bucket", self.bucket.as_str())
            .field("prefix", &percent_encode(self.prefix.as_str()))
            .field("after", &key(&self.after))
            .field("count", &self.objects.len().to_string());
        for object in &self.objects {
            w.field("object", &object.encode());
        }
        w.field("next-after", &key(&self.next_after));
        w.finish()
    }

    /// Parses canonical bytes; anything but the exact canonical form is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "listing", MAX_LISTING_BYTES)?;
        let gatekeeper = GatekeeperId::parse(r.field("gatekeeper")?)?;
        let request_sha256 = parse_hex::<32>(r.field("request-sha256")?, "request-sha256")?;
        let audit_seq = parse_decimal(r.field("audit-seq")?, "audit-seq")?;
        let listed_at = parse_decimal(r.field("listed-at")?, "listed-at")?;
        let bucket = Bucket::parse(r.field("bucket")?)?;
        let prefix = ListPrefix::parse(&percent_decode(r.field("prefix")?, "the prefix")?)?;
        let after = optional_key(r.field("after")?, "after")?;
        let count = parse_decimal(r.field("count")?, "count")?;
        if count > MAX_LISTING_OBJECTS as u64 {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("a listing carries at most {MAX_LISTING_OBJECTS} objects, got {count}"),
            ));
        }
        let mut objects = Vec::new();
        for _ in 0..count {
            objects.push(ListedObject::parse(r.field("object")?)?);
        }
        let next_after = optional_key(r.field("next-after")?, "next-after")?;
        r.end()?;
        check_page(&objects, next_after.as_ref())?;
        Ok(Self {
            gatekeeper,
            request_sha256,
            audit_seq,
            listed_at,
            bucket,
            prefix,
            after,
            objects,
            next_after,
        })
    }

    /// Encodes and signs as the `gatekeeper` role.
    pub fn sign(&self, key: &SigningKey, key_id: KeyId) -> (Vec<u8>, SignatureEntry) {
        let bytes = self.encode();
        let sig = SignatureEntry::sign(key, Role::gatekeeper(), key_id, &bytes);
        (bytes, sig)
    }

    /// Verifies a listing as the answer to the LIST request whose canonical bytes are
    /// `request` (the client's own): the gatekeeper `policy` approves it at
    /// `listed-at`; it names the request's SHA-256; the request is a LIST, addressed
    /// to the listing's gatekeeper, valid (widened by
    /// [`crate::canonical::MAX_CLOCK_SKEW_SECS`]) at `listed-at`; bucket and prefix
    /// are the request's; every key starts with the prefix and sorts after `after`.
    /// Every mismatch is `listing_mismatch`. The caller then checks the cursor with
    /// [`VerifiedListing::check_after`].
    pub fn verify(
        bytes: &[u8],
        signatures: &[SignatureEntry],
        policy: &Policy,
        request: &[u8],
    ) -> Result<VerifiedListing> {
        let listing = Self::parse(bytes)?;
        let approvals = policy.approve(bytes, signatures, listing.listed_at)?;
        let expected: [u8; 32] = Sha256::digest(request).into();
        if listing.request_sha256 != expected {
            return Err(mismatch("the listing answers another request"));
        }
        let request = Request::parse(request)?;
        let Operation::List { prefix } = request.operation() else {
            return Err(mismatch(format!(
                "a listing answers a LIST request, not a {}",
                request.method()
            )));
        };
        if request.audience() != &listing.gatekeeper {
            return Err(mismatch(
                "the listing comes from another gatekeeper than the request's audience",
            ));
        }
        if !request.in_window(listing.listed_at) {
            return Err(mismatch(
                "the listing's listed-at lies outside the request's validity window",
            ));
        }
        if request.bucket() != &listing.bucket {
            return Err(mismatch(format!(
                "the listing is of bucket `{}`, the request asked for `{}`",
                listing.bucket,
                request.bucket()
            )));
        }
        if prefix != &listing.prefix {
            return Err(mismatch(format!(
                "the listing is of prefix `{}`, the request asked for `{}`",
                preview(listing.prefix.as_str()),
                preview(prefix.as_str())
            )));
        }
        check_keys(&listing.prefix, listing.after.as_ref(), &listing.objects)?;
        Ok(VerifiedListing { listing, approvals })
    }

    /// The gatekeeper that listed.
    pub fn gatekeeper(&self) -> &GatekeeperId {
        &self.gatekeeper
    }
    /// SHA-256 of the LIST request answered.
    pub fn request_sha256(&self) -> &[u8; 32] {
        &self.request_sha256
    }
    /// Sequence number of the audit entry of the LIST request.
    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }
    /// Unix seconds the page was read from the index.
    pub fn listed_at(&self) -> u64 {
        self.listed_at
    }
    /// The bucket listed.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }
    /// The prefix listed.
    pub fn prefix(&self) -> &ListPrefix {
        &self.prefix
    }
    /// The cursor this page starts after; `None` for the first page.
    pub fn after(&self) -> Option<&ObjectKey> {
        self.after.as_ref()
    }
    /// The page's objects, in strictly increasing byte order of key.
    pub fn objects(&self) -> &[ListedObject] {
        &self.objects
    }
    /// The cursor of the next page; `None` on the last page.
    pub fn next_after(&self) -> Option<&ObjectKey> {
        self.next_after.as_ref()
    }
}

/// A listing whose gatekeeper signatures met the policy and which answers the
/// client's LIST request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedListing {
    listing: Listing,
    approvals: Approvals,
}

impl VerifiedListing {
    /// The listing.
    pub fn listing(&self) -> &Listing {
        &self.listing
    }
    /// Which gatekeeper keys signed.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }
    /// Fails with `listing_mismatch` unless the page starts after `sent`, the cursor
    /// the client sent as `after` (`None` for the first page, else the previous
    /// page's `next-after`). The cursor is not part of the signed request, so only
    /// this check ties the page to the place the client asked for.
    pub fn check_after(&self, sent: Option<&ObjectKey>) -> Result<()> {
        if self.listing.after.as_ref() == sent {
            Ok(())
        } else {
            Err(mismatch(format!(
                "the listing starts after `{}`, the client asked for after `{}`",
                preview(self.listing.after.as_ref().map_or("", ObjectKey::as_str)),
                preview(sent.map_or("", ObjectKey::as_str))
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Nonce, Subject};
    use crate::policy::{AuthorizedKey, Keyring, RequestVerifier};
    use crate::signature::PublicKey;

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

    impl World {
        fn gk_policy(&self) -> Policy {
            Policy::new(self.keyring.clone(), [(Role::gatekeeper(), 1)]).unwrap()
        }

        fn list_request(&self, bucket: &str, prefix: &str) -> VerifiedRequest {
            let canonical = Request::from_parts(
                GatekeeperId::parse("gk.acme").unwrap(),
                Bucket::parse(bucket).unwrap(),
                Operation::List {
                    prefix: ListPrefix::parse(prefix).unwrap(),
                },
                Subject::parse("user-42").unwrap(),
                T,
                T + 60,
                Nonce([9; 16]),
            )
            .unwrap()
            .encode();
            let sig = SignatureEntry::sign(
                &self.vendor,
                Role::vendor(),
                KeyId::parse("v1").unwrap(),
                &canonical,
            );
            let policy = Policy::new(self.keyring.clone(), [(Role::vendor(), 1)]).unwrap();
            RequestVerifier::new(GatekeeperId::parse("gk.acme").unwrap(), policy, 900, 30)
                .unwrap()
                .verify(&canonical, &[sig], T + 1)
                .unwrap()
        }

        fn sign(&self, listing: &Listing) -> (Vec<u8>, SignatureEntry) {
            listing.sign(&self.gatekeeper, KeyId::parse("g1").unwrap())
        }
    }

    fn object(key: &str) -> ListedObject {
        ListedObject {
            key: ObjectKey::parse(key).unwrap(),
            size: 17,
            sha256: [0xab; 32],
            content_type: ContentType::parse("application/pdf").unwrap(),
            stored_at: T - 5,
        }
    }

    fn page(w: &World, after: Option<&str>, keys: &[&str], more: bool) -> Listing {
        Listing::for_request(
            &w.list_request("reports", "org 1/"),
            GatekeeperId::parse("gk.acme").unwrap(),
            12,
            T + 1,
            after.map(|a| ObjectKey::parse(a).unwrap()),
            keys.iter().map(|k| object(k)).collect(),
            more,
        )
        .unwrap()
    }

    fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn a_page_has_one_exact_form_and_verifies() {
        let w = world();
        let listing = page(&w, None, &["org 1/a b.pdf", "org 1/z", "org 1/ü"], true);
        let (bytes, sig) = w.sign(&listing);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let sha = hex(&[0xab; 32]);
        let expected = format!(
            "countersign/v1/listing\ngatekeeper:gk.acme\nrequest-sha256:{}\naudit-seq:12\nlisted-at:{}\nbucket:reports\nprefix:org%201/\nafter:\ncount:3\nobject:org%201/a%20b.pdf 17 {sha} application/pdf {}\nobject:org%201/z 17 {sha} application/pdf {}\nobject:org%201/%C3%BC 17 {sha} application/pdf {}\nnext-after:org%201/%C3%BC\n",
            hex(listing.request_sha256()),
            T + 1,
            T - 5,
            T - 5,
            T - 5
        );
        assert_eq!(text, expected);
        assert_eq!(Listing::parse(&bytes).unwrap(), listing);

        let request = w.list_request("reports", "org 1/");
        let verified =
            Listing::verify(&bytes, &[sig], &w.gk_policy(), request.canonical()).unwrap();
        assert_eq!(verified.listing().objects().len(), 3);
        assert_eq!(
            verified.listing().next_after().map(ObjectKey::as_str),
            Some("org 1/ü")
        );
        assert!(verified.check_after(None).is_ok());
        let elsewhere = ObjectKey::parse("org 1/a").unwrap();
        assert_eq!(
            code(verified.check_after(Some(&elsewhere))),
            ErrorCode::ListingMismatch
        );

        // The last page, after a cursor; and an empty page.
        let last = page(&w, Some("org 1/ü"), &["org 1/üz"], false);
        let (bytes, sig) = w.sign(&last);
        let verified =
            Listing::verify(&bytes, &[sig], &w.gk_policy(), request.canonical()).unwrap();
        assert!(
            verified
                .check_after(Some(&ObjectKey::parse("org 1/ü").unwrap()))
                .is_ok()
        );
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with("\nnext-after:\n")
        );
        let empty = page(&w, None, &[], false);
        let (bytes, sig) = w.sign(&empty);
        assert!(Listing::verify(&bytes, &[sig], &w.gk_policy(), request.canonical()).is_ok());
    }

    #[test]
    fn the_gatekeeper_cannot_build_a_lying_page() {
        let w = world();
        let list = w.list_request("reports", "org 1/");
        let build = |after: Option<&str>, keys: &[&str], more: bool| {
            Listing::for_request(
                &list,
                GatekeeperId::parse("gk.acme").unwrap(),
                1,
                T,
                after.map(|a| ObjectKey::parse(a).unwrap()),
                keys.iter().map(|k| object(k)).collect(),
                more,
            )
        };
        assert_eq!(
            code(build(None, &["org 1/b", "org 1/a"], false)),
            ErrorCode::NonCanonical
        );
        assert_eq!(
            code(build(None, &["org 1/a", "org 1/a"], false)),
            ErrorCode::NonCanonical
        );
        assert_eq!(
            code(build(None, &["org 2/a"], false)),
            ErrorCode::ListingMismatch
        );
        assert_eq!(
            code(build(Some("org 1/b"), &["org 1/b"], false)),
            ErrorCode::ListingMismatch
        );
        assert_eq!(code(build(None, &[], true)), ErrorCode::InvalidField);
        let many: Vec<String> = (0..=MAX_LISTING_OBJECTS)
            .map(|i| format!("org 1/{i:05}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(code(build(None, &many, false)), ErrorCode::TooLarge);
        assert!(build(None, &many[1..], false).is_ok());
        // Only a LIST request is listed.
        let get = {
            let canonical = Request::from_parts(
                GatekeeperId::parse("gk.acme").unwrap(),
                Bucket::parse("reports").unwrap(),
                Operation::Head {
                    key: ObjectKey::parse("a").unwrap(),
                },
                Subject::parse("user-42").unwrap(),
                T,
                T + 60,
                Nonce([9; 16]),
            )
            .unwrap()
            .encode();
            let sig = SignatureEntry::sign(
                &w.vendor,
                Role::vendor(),
                KeyId::parse("v1").unwrap(),
                &canonical,
            );
            let policy = Policy::new(w.keyring.clone(), [(Role::vendor(), 1)]).unwrap();
            RequestVerifier::new(GatekeeperId::parse("gk.acme").unwrap(), policy, 900, 30)
                .unwrap()
                .verify(&canonical, &[sig], T + 1)
                .unwrap()
        };
        assert_eq!(
            code(Listing::for_request(
                &get,
                GatekeeperId::parse("gk.acme").unwrap(),
                1,
                T,
                None,
                vec![],
                false
            )),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn the_largest_page_fits_the_byte_limit() {
        let w = world();
        // 1000 keys of 1024 bytes, nearly every byte percent-encoded (3 characters).
        let keys: Vec<String> = (0..MAX_LISTING_OBJECTS)
            .map(|i| format!("org 1/{i:04}{}", " ".repeat(1024 - 10)))
            .collect();
        let objects: Vec<ListedObject> = keys
            .iter()
            .map(|k| ListedObject {
                key: ObjectKey::parse(k).unwrap(),
                size: crate::text::MAX_INTEGER,
                sha256: [0; 32],
                content_type: ContentType::parse(&format!("a/{}", "b".repeat(125))).unwrap(),
                stored_at: crate::text::MAX_INTEGER,
            })
            .collect();
        let listing = Listing::for_request(
            &w.list_request("reports", "org 1/"),
            GatekeeperId::parse("gk.acme").unwrap(),
            crate::text::MAX_INTEGER,
            crate::text::MAX_INTEGER,
            Some(ObjectKey::parse("org 1").unwrap()),
            objects,
            true,
        )
        .unwrap();
        let bytes = listing.encode();
        assert!(bytes.len() > 3_000_000, "{}", bytes.len());
        assert!(bytes.len() <= MAX_LISTING_BYTES, "{}", bytes.len());
        assert_eq!(Listing::parse(&bytes).unwrap(), listing);
    }

    #[test]
    fn verification_refuses_every_mismatch() {
        let w = world();
        let request = w.list_request("reports", "org 1/");
        let listing = page(&w, None, &["org 1/a", "org 1/b"], false);
        let verify = |bytes: &[u8], sig: &SignatureEntry, request: &[u8]| {
            Listing::verify(bytes, std::slice::from_ref(sig), &w.gk_policy(), request)
        };
        let (bytes, sig) = w.sign(&listing);
        assert!(verify(&bytes, &sig, request.canonical()).is_ok());

        // Hiding an object after signing breaks the signature.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let hidden: String = text
            .replace("count:2", "count:1")
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("object:org%201/b "))
            .collect();
        assert!(hidden.contains("count:1\n"));
        assert_eq!(
            code(verify(hidden.as_bytes(), &sig, request.canonical())),
            ErrorCode::BadSignature
        );
        // A vendor key cannot sign listings.
        let vendor_sig = SignatureEntry::sign(
            &w.vendor,
            Role::vendor(),
            KeyId::parse("v1").unwrap(),
            &bytes,
        );
        assert_eq!(
            code(verify(&bytes, &vendor_sig, request.canonical())),
            ErrorCode::ThresholdNotMet
        );
        // Another request (other bucket, other prefix): another SHA-256.
        let other = w.list_request("reports", "org 2/");
        assert_eq!(
            code(verify(&bytes, &sig, other.canonical())),
            ErrorCode::ListingMismatch
        );

        // Signed listings that lie about the request they answer.
        let forge = |from: &str, to: &str| {
            let t = text.replacen(from, to, 1);
            assert_ne!(t, text, "{from}");
            let sig = SignatureEntry::sign(
                &w.gatekeeper,
                Role::gatekeeper(),
                KeyId::parse("g1").unwrap(),
                t.as_bytes(),
            );
            verify(t.as_bytes(), &sig, request.canonical()).map_err(|e| e.code())
        };
        let (now, late) = (
            format!("listed-at:{}", T + 1),
            format!("listed-at:{}", T + 660),
        );
        let cases = [
            ("bucket:reports", "bucket:other", ErrorCode::ListingMismatch),
            (
                "prefix:org%201/",
                "prefix:org%201",
                ErrorCode::ListingMismatch,
            ),
            (
                "gatekeeper:gk.acme",
                "gatekeeper:gk.other",
                ErrorCode::ListingMismatch,
            ),
            (now.as_str(), late.as_str(), ErrorCode::ListingMismatch),
            (
                "\nafter:\n",
                "\nafter:org%201/a\n",
                ErrorCode::ListingMismatch,
            ),
            // Out of the prefix, in order: a mismatch. Out of order: not canonical.
            (
                "object:org%201/b",
                "object:org%202/b",
                ErrorCode::ListingMismatch,
            ),
            (
                "object:org%201/a",
                "object:org%202/a",
                ErrorCode::NonCanonical,
            ),
            ("org%201/a", "org%2a1/a", ErrorCode::NonCanonical),
            ("org%201/a", "org%201/%61", ErrorCode::NonCanonical),
            (
                "next-after:\n",
                "next-after:org%201/a\n",
                ErrorCode::InvalidField,
            ),
        ];
        for (from, to, expected) in cases {
            assert_eq!(forge(from, to).map(|_| ()), Err(expected), "{from} -> {to}");
        }
    }

    #[test]
    fn parsing_is_strict() {
        let w = world();
        let (bytes, _) = w.sign(&page(&w, None, &["org 1/a", "org 1/b"], false));
        let text = String::from_utf8(bytes).unwrap();
        let parse = |t: String| Listing::parse(t.as_bytes()).map(|_| ());
        let p = |from: &str, to: &str| parse(text.replacen(from, to, 1)).map_err(|e| e.code());
        assert_eq!(p("count:2", "count:3"), Err(ErrorCode::NonCanonical));
        assert_eq!(p("count:2", "count:1"), Err(ErrorCode::NonCanonical));
        assert_eq!(p("count:2", "count:02"), Err(ErrorCode::NonCanonical));
        assert_eq!(p("count:2", "count:1001"), Err(ErrorCode::TooLarge));
        assert_eq!(p(" 17 ", "  17 "), Err(ErrorCode::NonCanonical));
        assert_eq!(p(" 17 ", " 17 x "), Err(ErrorCode::NonCanonical));
        assert_eq!(
            p("application/pdf", "application/PDF"),
            Err(ErrorCode::InvalidField)
        );
        assert_eq!(
            p("object:org%201/a", "object:org%201/.."),
            Err(ErrorCode::InvalidKeyPath)
        );
        assert_eq!(
            p("object:org%201/a", "object:org%201/%FF"),
            Err(ErrorCode::InvalidKeyPath)
        );
        assert_eq!(
            p("object:org%201/a", "object:org 1/a"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("object:org%201/a", "object:org%201/%"),
            Err(ErrorCode::NonCanonical)
        );
        assert_eq!(
            p("prefix:org%201/", "prefix:/org"),
            Err(ErrorCode::InvalidKeyPath)
        );
        assert_eq!(
            p("countersign/v1/listing", "countersign/v2/listing"),
            Err(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            parse(format!("{text}\n")).map_err(|e| e.code()),
            Err(ErrorCode::NonCanonical)
        );
        assert!(parse(text).is_ok());
    }
}
