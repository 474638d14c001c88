//! LIST pages: the gatekeeper signs each page as a listing (`docs/PROTOCOL.md`,
//! "Listings"); the client verifies it with the core and hands the page only the
//! listing's objects, never the answer's unsigned convenience members.

use crate::error::CountersignError;
use countersign_core::signature::parse_list;
use countersign_core::text::{hex, parse_b64};
use countersign_core::{ErrorCode, Listing, ObjectKey, Policy, VerifiedListing};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

/// Largest LIST answer read: a listing is at most 4 MiB, its base64url a third more,
/// and the unsigned convenience members repeat the objects once more.
pub(crate) const MAX_LIST_BODY_BYTES: u64 = 16 * 1024 * 1024;

#[wasm_bindgen(typescript_custom_section)]
const LISTED_OBJECT: &str = r#"
/** One object of a verified listing page, as the gatekeeper's signed index lists it. */
export interface ListedObject {
  key: string;
  /** Size in bytes. */
  size: number;
  /** SHA-256 of the bytes signed at upload, lowercase hex. */
  sha256: string;
  /** The media type signed at upload. */
  contentType: string;
  /** Unix seconds the object was stored. */
  storedAt: number;
}
"#;

/// One verified page of a listing.
#[wasm_bindgen]
pub struct ListPage {
    verified: VerifiedListing,
}

/// Verifies the signed page of a LIST answer: `listing` (base64url) and
/// `listing_signature` (a signature list) are the answer's members, `request` the
/// canonical LIST request sent, `sent_after` the cursor sent as `after`, and
/// `receipt_seq` the audit sequence number of the answer's verified receipt. The
/// gatekeeper `policy` must approve the listing, which must answer this request
/// (`Listing::verify`), start at this cursor (`check_after`) and name the receipt's
/// audit entry; every mismatch is `listing_mismatch`.
pub(crate) fn verify_page(
    policy: &Policy,
    request: &[u8],
    listing: &str,
    listing_signature: &str,
    sent_after: Option<&ObjectKey>,
    receipt_seq: u64,
) -> Result<ListPage, countersign_core::Error> {
    let bytes = parse_b64(listing, "the listing")?;
    let signatures = parse_list(listing_signature)?;
    let verified = Listing::verify(&bytes, &signatures, policy, request)?;
    verified.check_after(sent_after)?;
    if verified.listing().audit_seq() != receipt_seq {
        return Err(countersign_core::Error::new(
            ErrorCode::ListingMismatch,
            format!(
                "the listing names audit entry {}, its receipt {receipt_seq}",
                verified.listing().audit_seq()
            ),
        ));
    }
    Ok(ListPage { verified })
}

/// Reads the members `listing` and `listing_signature` of a LIST answer's JSON
/// (`malformed` if they are missing).
pub(crate) fn signed_members(body: &[u8]) -> Result<(String, String), CountersignError> {
    let malformed = |what: &str| -> CountersignError {
        countersign_core::Error::new(ErrorCode::Malformed, what.to_owned()).into()
    };
    let text = std::str::from_utf8(body).map_err(|_| malformed("the LIST answer is not UTF-8"))?;
    let json = js_sys::JSON::parse(text).map_err(|_| malformed("the LIST answer is not JSON"))?;
    if !json.is_object() {
        return Err(malformed("the LIST answer is not a JSON object"));
    }
    let member = |name: &str| {
        Reflect::get(&json, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| {
                malformed(&format!(
                    "the LIST answer has no signed `{name}` (a gatekeeper that does not sign its listings)"
                ))
            })
    };
    Ok((member("listing")?, member("listing_signature")?))
}

#[cfg(test)]
impl ListPage {
    /// The verified listing.
    pub(crate) fn verified(&self) -> &VerifiedListing {
        &self.verified
    }
}

#[wasm_bindgen]
impl ListPage {
    /// The page's objects, verified, in increasing byte order of key.
    #[wasm_bindgen(getter, unchecked_return_type = "ListedObject[]")]
    pub fn objects(&self) -> Array {
        self.verified
            .listing()
            .objects()
            .iter()
            .map(|o| {
                let out = Object::new();
                let set = |k: &str, v: JsValue| {
                    // Setting a property of a fresh plain object cannot fail.
                    let _ = Reflect::set(&out, &JsValue::from_str(k), &v);
                };
                set("key", o.key.as_str().into());
                set("size", (o.size as f64).into());
                set("sha256", hex(&o.sha256).into());
                set("contentType", o.content_type.to_string().into());
                set("storedAt", (o.stored_at as f64).into());
                JsValue::from(out)
            })
            .collect()
    }

    /// The cursor of the next page (the last object's key): pass it to
    /// `listObjects(prefix, nextAfter)`. `undefined` on the last page.
    #[wasm_bindgen(getter, js_name = nextAfter)]
    pub fn next_after(&self) -> Option<String> {
        self.verified
            .listing()
            .next_after()
            .map(|k| k.as_str().to_owned())
    }

    /// The audit-log sequence number of the listing.
    #[wasm_bindgen(getter, js_name = auditSeq)]
    pub fn audit_seq(&self) -> f64 {
        self.verified.listing().audit_seq() as f64
    }

    /// Unix seconds at which the gatekeeper read the page from its index.
    #[wasm_bindgen(getter, js_name = listedAt)]
    pub fn listed_at(&self) -> f64 {
        self.verified.listing().listed_at() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::ed25519_dalek::SigningKey;
    use countersign_core::signature::encode_list;
    use countersign_core::text::b64;
    use countersign_core::{
        AuthorizedKey, BodyDigest, Bucket, ContentType, GatekeeperId, KeyId, Keyring, ListPrefix,
        ListedObject, Operation, PublicKey, Request, RequestVerifier, Role, SignatureEntry,
        Subject, VerifiedRequest,
    };
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    const T: u64 = 1_800_000_000;

    struct World {
        vendor: SigningKey,
        gatekeeper: SigningKey,
        keyring: Keyring,
    }

    fn world() -> World {
        let vendor = SigningKey::from_bytes(&[1; 32]);
        let gatekeeper = SigningKey::from_bytes(&[2; 32]);
        let key = |id: &str, role: Role, k: &SigningKey| AuthorizedKey {
            key_id: KeyId::parse(id).unwrap(),
            role,
            public_key: PublicKey::from_slice(&k.verifying_key().to_bytes()).unwrap(),
            not_before: None,
            not_after: None,
        };
        let keyring = Keyring::new([
            key("v1", Role::vendor(), &vendor),
            key("g1", Role::gatekeeper(), &gatekeeper),
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

        fn list(&self, prefix: &str) -> VerifiedRequest {
            let request = Request::new(
                GatekeeperId::parse("gk.acme").unwrap(),
                Bucket::parse("reports").unwrap(),
                Operation::List {
                    prefix: ListPrefix::parse(prefix).unwrap(),
                },
                Subject::parse("user-1").unwrap(),
                T,
                60,
                &mut rand_core::OsRng,
            )
            .unwrap()
            .encode();
            let sig = SignatureEntry::sign(
                &self.vendor,
                Role::vendor(),
                KeyId::parse("v1").unwrap(),
                &request,
            );
            let policy = Policy::new(self.keyring.clone(), [(Role::vendor(), 1)]).unwrap();
            RequestVerifier::new(GatekeeperId::parse("gk.acme").unwrap(), policy, 900, 30)
                .unwrap()
                .verify(&request, &[sig], T + 1)
                .unwrap()
        }

        /// `(listing, listing_signature)` members of a signed page.
        fn page(
            &self,
            list: &VerifiedRequest,
            after: Option<&str>,
            keys: &[&str],
            more: bool,
        ) -> (String, String, Vec<u8>) {
            let objects = keys
                .iter()
                .map(|k| ListedObject {
                    key: ObjectKey::parse(k).unwrap(),
                    size: 5,
                    sha256: BodyDigest::of(b"hello").sha256,
                    content_type: ContentType::parse("text/plain").unwrap(),
                    stored_at: T - 10,
                })
                .collect();
            let listing = Listing::for_request(
                list,
                GatekeeperId::parse("gk.acme").unwrap(),
                7,
                T + 1,
                after.map(|a| ObjectKey::parse(a).unwrap()),
                objects,
                more,
            )
            .unwrap();
            let (bytes, sig) = listing.sign(&self.gatekeeper, KeyId::parse("g1").unwrap());
            (b64(&bytes), encode_list(&[sig]), bytes)
        }
    }

    fn code<T>(r: Result<T, countersign_core::Error>) -> &'static str {
        r.err().map(|e| e.code().as_str()).unwrap_or("ok")
    }

    fn keys(page: &ListPage) -> Vec<&str> {
        page.verified()
            .listing()
            .objects()
            .iter()
            .map(|o| o.key.as_str())
            .collect()
    }

    #[test]
    fn a_signed_page_verifies_for_its_request_and_cursor() {
        let w = world();
        let list = w.list("org-1/");
        let (listing, sig, _) = w.page(&list, None, &["org-1/a", "org-1/b"], true);
        let page = verify_page(&w.gk_policy(), list.canonical(), &listing, &sig, None, 7).unwrap();
        assert_eq!(keys(&page), ["org-1/a", "org-1/b"]);
        assert_eq!(
            page.verified()
                .listing()
                .next_after()
                .map(ObjectKey::as_str),
            Some("org-1/b")
        );

        // The next page, after a cursor that needs encoding in a URL.
        let cursor = ObjectKey::parse("org-1/a&b c%d").unwrap();
        let (listing, sig, _) = w.page(&list, Some(cursor.as_str()), &["org-1/z"], false);
        let page = verify_page(
            &w.gk_policy(),
            list.canonical(),
            &listing,
            &sig,
            Some(&cursor),
            7,
        )
        .unwrap();
        assert_eq!(keys(&page), ["org-1/z"]);
        assert!(page.verified().listing().next_after().is_none());
    }

    #[test]
    fn a_hidden_object_breaks_the_signature() {
        let w = world();
        let list = w.list("org-1/");
        let (_, sig, bytes) = w.page(&list, None, &["org-1/a", "org-1/b", "org-1/c"], false);
        let text = String::from_utf8(bytes).unwrap();
        let hidden: String = text
            .replace("count:3", "count:2")
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("object:org-1/b "))
            .collect();
        assert!(hidden.contains("count:2\n") && !hidden.contains("org-1/b "));
        assert_eq!(
            code(verify_page(
                &w.gk_policy(),
                list.canonical(),
                &b64(hidden.as_bytes()),
                &sig,
                None,
                7
            )),
            "bad_signature"
        );
    }

    #[test]
    fn a_page_for_another_cursor_request_or_entry_is_refused() {
        let w = world();
        let list = w.list("org-1/");
        let policy = w.gk_policy();
        // The gatekeeper (or anyone in between) answers the first page when the client
        // asked for the page after `org-1/b`, or the other way round.
        let (first, first_sig, _) = w.page(&list, None, &["org-1/a"], false);
        let b = ObjectKey::parse("org-1/b").unwrap();
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &first,
                &first_sig,
                Some(&b),
                7
            )),
            "listing_mismatch"
        );
        let (later, later_sig, _) = w.page(&list, Some("org-1/a"), &["org-1/c"], false);
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &later,
                &later_sig,
                None,
                7
            )),
            "listing_mismatch"
        );
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &later,
                &later_sig,
                Some(&b),
                7
            )),
            "listing_mismatch"
        );
        // A page signed for another LIST request (same prefix, another nonce).
        let other = w.list("org-1/");
        assert_eq!(
            code(verify_page(
                &policy,
                other.canonical(),
                &first,
                &first_sig,
                None,
                7
            )),
            "listing_mismatch"
        );
        // A page naming another audit entry than the answer's receipt.
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &first,
                &first_sig,
                None,
                8
            )),
            "listing_mismatch"
        );
    }

    #[test]
    fn unsigned_or_garbled_pages_are_refused() {
        let w = world();
        let list = w.list("org-1/");
        let (listing, sig, bytes) = w.page(&list, None, &["org-1/a"], false);
        let policy = w.gk_policy();
        // Signed by the vendor, not the gatekeeper.
        let vendor = encode_list(&[SignatureEntry::sign(
            &w.vendor,
            Role::vendor(),
            KeyId::parse("v1").unwrap(),
            &bytes,
        )]);
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &listing,
                &vendor,
                None,
                7
            )),
            "threshold_not_met"
        );
        assert_eq!(
            code(verify_page(&policy, list.canonical(), "%%", &sig, None, 7)),
            "malformed"
        );
        assert_eq!(
            code(verify_page(
                &policy,
                list.canonical(),
                &listing,
                "",
                None,
                7
            )),
            "malformed"
        );
    }
}
