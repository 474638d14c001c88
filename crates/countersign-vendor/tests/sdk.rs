//! The vendor SDK: key files, signing limits, batches, rotation, receipts, manifests.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ContentType, Decision, ErrorCode, GatekeeperId, KeyId,
    Keyring, Manifest, ObjectKey, Operation, Policy, Receipt, Request, RequestVerifier, Role,
    Subject,
};
use countersign_vendor::keys::{load_public_keys, parse_public_keys, public_key_json};
use countersign_vendor::transport::{
    DownloadHeaders, request_headers, role_policy, verify_download_headers, verify_manifest,
    verify_receipt,
};
use countersign_vendor::{Error, MAX_BATCH, Signer, SigningLimits, VendorKey};
use rand_core::OsRng;

const NOW: u64 = 1_800_000_000;

fn key(id: &str, nb: Option<u64>, na: Option<u64>) -> VendorKey {
    VendorKey::generate(
        KeyId::parse(id).unwrap(),
        Role::vendor(),
        nb,
        na,
        &mut OsRng,
    )
    .unwrap()
}

fn get_request(issued: u64, lifetime: u64) -> Request {
    Request::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("reports").unwrap(),
        Operation::Get {
            key: ObjectKey::parse("org-1/a.pdf").unwrap(),
            range: None,
        },
        Subject::parse("user-1").unwrap(),
        issued,
        lifetime,
        &mut OsRng,
    )
    .unwrap()
}

fn verifier(keys: Vec<AuthorizedKey>) -> RequestVerifier {
    RequestVerifier::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Policy::new(Keyring::new(keys).unwrap(), [(Role::vendor(), 1)]).unwrap(),
        900,
        30,
    )
    .unwrap()
}

fn code(e: Error) -> String {
    e.code().to_owned()
}

#[test]
fn key_files_round_trip_and_insecure_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.key");
    let k = key("v1", Some(10), Some(20));
    k.write_secret_file(&path).unwrap();
    let loaded = VendorKey::load(&path).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].authorized_key(), k.authorized_key());
    // Never overwritten.
    assert_eq!(code(k.write_secret_file(&path).unwrap_err()), "io");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = VendorKey::load(&path).unwrap_err();
            assert_eq!(code(err), "insecure_key_file", "mode {mode:o}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(VendorKey::load(&path).is_ok());
    }

    // The public file round-trips into the gatekeeper's AuthorizedKey.
    let public = dir.path().join("v1.pub");
    std::fs::write(&public, k.to_public_json()).unwrap();
    assert_eq!(load_public_keys(&public).unwrap(), vec![k.authorized_key()]);
    assert!(!k.to_public_json().contains("secret"));
    assert!(!format!("{k:?}").contains(&k.to_secret_json()[..20]));
}

#[test]
fn bad_key_documents_have_stable_codes() {
    let k = key("v1", None, None);
    let good: serde_json::Value = serde_json::from_str(&k.to_secret_json()).unwrap();
    let parse = |v: serde_json::Value| VendorKey::parse_secret_json(&v.to_string(), "test");
    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[field] = value;
        v
    };
    assert_eq!(parse(good.clone()).unwrap().len(), 1);
    assert_eq!(
        parse(serde_json::json!([
            good.clone(),
            with("key_id", "v2".into())
        ]))
        .unwrap()
        .len(),
        2
    );
    let other = key("v1", None, None);
    let cases = [
        (serde_json::json!({"format": "x"}), "invalid_key_file"),
        (serde_json::json!([]), "invalid_key_file"),
        (
            with("format", "countersign-public-key/v1".into()),
            "invalid_key_file",
        ),
        (
            with(
                "public_key",
                serde_json::to_value(countersign_core::text::b64(&other.public_key().to_bytes()))
                    .unwrap(),
            ),
            "invalid_key_file",
        ),
        (with("secret_key", "AAAA".into()), "invalid_key_file"),
        (with("secret_key", "!!".into()), "malformed"),
        (with("key_id", "bad id".into()), "invalid_field"),
        (
            with("not_before", 20.into()).tap(|v| v["not_after"] = 10.into()),
            "invalid_field",
        ),
        (with("extra", 1.into()), "invalid_key_file"),
    ];
    for (doc, want) in cases {
        assert_eq!(code(parse(doc.clone()).unwrap_err()), want, "{doc}");
    }
    // A weak (small-order) public key is refused in public key files.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut doc: serde_json::Value =
        serde_json::from_str(&public_key_json(&k.authorized_key())).unwrap();
    doc["public_key"] = countersign_core::text::b64(&weak).into();
    assert_eq!(
        code(parse_public_keys(&doc.to_string(), "t").unwrap_err()),
        "weak_key"
    );
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl Tap for serde_json::Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn signer_enforces_its_limits() {
    let signer = Signer::new([key("v1", None, None)])
        .unwrap()
        .with_limits(SigningLimits {
            audience: Some(GatekeeperId::parse("gk.acme").unwrap()),
            max_lifetime_secs: 300,
            clock_skew_secs: 30,
        })
        .unwrap();
    let ok = get_request(NOW, 300);
    let sig = signer.sign(&ok.encode(), NOW).unwrap();
    assert!(
        verifier(signer.authorized_keys())
            .verify(&ok.encode(), &[sig], NOW)
            .is_ok()
    );

    let other_audience = Request::new(
        GatekeeperId::parse("gk.evil").unwrap(),
        ok.bucket().clone(),
        ok.operation().clone(),
        ok.subject().clone(),
        NOW,
        60,
        &mut OsRng,
    )
    .unwrap();
    let err = |r: &Request, now: u64| code(signer.sign_request(r, now).unwrap_err());
    assert_eq!(err(&other_audience, NOW), "wrong_audience");
    assert_eq!(err(&get_request(NOW, 301), NOW), "lifetime_too_long");
    assert_eq!(err(&get_request(NOW + 31, 60), NOW), "not_yet_valid");
    assert!(signer.sign_request(&get_request(NOW + 30, 60), NOW).is_ok());
    assert_eq!(err(&get_request(NOW - 60, 60), NOW), "expired");
    // Non-canonical bytes are refused before anything is signed.
    let mut bytes = ok.encode();
    bytes.push(b'\n');
    assert_eq!(code(signer.sign(&bytes, NOW).unwrap_err()), "non_canonical");
    // Bad limits and bad key sets.
    assert!(
        Signer::new([key("v1", None, None)])
            .unwrap()
            .with_limits(SigningLimits {
                max_lifetime_secs: 0,
                ..SigningLimits::default()
            })
            .is_err()
    );
    assert_eq!(
        code(Signer::new(Vec::<VendorKey>::new()).unwrap_err()),
        "invalid_field"
    );
    assert_eq!(
        code(Signer::new([key("v1", None, None), key("v1", None, None)]).unwrap_err()),
        "invalid_field"
    );
    let admin = VendorKey::generate(
        KeyId::parse("a1").unwrap(),
        Role::customer_admin(),
        None,
        None,
        &mut OsRng,
    )
    .unwrap();
    assert_eq!(
        code(Signer::new([key("v1", None, None), admin]).unwrap_err()),
        "invalid_field"
    );
}

#[test]
fn batch_signing_gives_one_result_per_request() {
    let signer = Signer::new([key("v1", None, None)]).unwrap();
    let mut batch: Vec<Vec<u8>> = (0..50).map(|_| get_request(NOW, 120).encode()).collect();
    batch[7] = b"garbage".to_vec();
    batch[9] = get_request(NOW - 500, 120).encode();
    let results = signer.sign_batch(&batch, NOW).unwrap();
    assert_eq!(results.len(), 50);
    let v = verifier(signer.authorized_keys());
    for (i, (doc, result)) in batch.iter().zip(results).enumerate() {
        match i {
            7 => assert_eq!(code(result.unwrap_err()), "non_canonical"),
            9 => assert_eq!(code(result.unwrap_err()), "expired"),
            _ => assert!(
                v.verify(doc, &[result.unwrap()], NOW).is_ok(),
                "request {i}"
            ),
        }
    }
    let too_many: Vec<Vec<u8>> = vec![batch[0].clone(); MAX_BATCH + 1];
    assert_eq!(
        code(signer.sign_batch(&too_many, NOW).unwrap_err()),
        "too_large"
    );
}

/// Rotation: `old` retires at T, `new` starts at T - 600 (an overlap). The signer
/// switches to `new` as soon as it is valid; a request signed by the retired key is
/// refused by the gatekeeper (window error while the key is still listed,
/// `unknown_key` once it is removed).
#[test]
fn key_rotation() {
    let t = NOW + 3600;
    let old = key("vendor-2026", None, Some(t));
    let new = key("vendor-2027", Some(t - 600), None);
    let signer = Signer::new([old.clone(), new.clone()]).unwrap();

    // Before the overlap only the old key is valid.
    let early = get_request(NOW, 120);
    assert_eq!(
        signer.key_for(&early, NOW).unwrap().key_id().as_str(),
        "vendor-2026"
    );
    // In the overlap the newest key signs.
    let later = get_request(t - 300, 120);
    assert_eq!(
        signer.key_for(&later, t - 300).unwrap().key_id().as_str(),
        "vendor-2027"
    );

    // A signer that only has the old key refuses requests that would outlive it.
    let only_old = Signer::new([old.clone()]).unwrap();
    let crossing = get_request(t - 60, 120);
    assert_eq!(
        code(only_old.sign_request(&crossing, t - 60).unwrap_err()),
        "key_outside_window"
    );
    assert_eq!(
        code(only_old.sign_request(&get_request(t, 60), t).unwrap_err()),
        "key_outside_window"
    );

    // The gatekeeper: a signature by the old key, presented after it retired.
    let old_sig = only_old.sign_request(&early, NOW).unwrap();
    let both = verifier(vec![old.authorized_key(), new.authorized_key()]);
    assert!(
        both.verify(&early.encode(), std::slice::from_ref(&old_sig), NOW)
            .is_ok()
    );
    let replayed_late = get_request(t + 10, 120);
    let late_old_sig = old.sign_document(&replayed_late.encode());
    assert_eq!(
        both.verify(
            &replayed_late.encode(),
            std::slice::from_ref(&late_old_sig),
            t + 10
        )
        .unwrap_err()
        .code(),
        ErrorCode::KeyOutsideWindow
    );
    let new_only = verifier(vec![new.authorized_key()]);
    assert_eq!(
        new_only
            .verify(&replayed_late.encode(), &[late_old_sig], t + 10)
            .unwrap_err()
            .code(),
        ErrorCode::UnknownKey
    );
    // ... while the new key's signature passes.
    let new_sig = signer.sign_request(&replayed_late, t + 10).unwrap();
    assert_eq!(new_sig.key_id.as_str(), "vendor-2027");
    assert!(
        new_only
            .verify(&replayed_late.encode(), &[new_sig], t + 10)
            .is_ok()
    );
}

fn gatekeeper_key(id: &str) -> VendorKey {
    VendorKey::generate(
        KeyId::parse(id).unwrap(),
        Role::gatekeeper(),
        None,
        None,
        &mut OsRng,
    )
    .unwrap()
}

#[test]
fn receipts_and_manifests_verify_from_headers() {
    let vendor = key("v1", None, None);
    let gk = gatekeeper_key("gk-1");
    let gk_policy = role_policy(
        [gk.authorized_key(), vendor.authorized_key()],
        &Role::gatekeeper(),
        1,
    )
    .unwrap();
    let gk_id = GatekeeperId::parse("gk.acme").unwrap();
    let request = get_request(NOW, 120);
    let canonical = request.encode();
    let receipt = Receipt {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        request_sha256: request.digest(),
        decision: Decision::Allow,
        decided_at: NOW + 1,
        audit_seq: 7,
        leaf_sha256: Some([3; 32]),
    };
    let bytes = receipt.encode();
    let sig = gk.sign_document(&bytes);
    let (r_header, s_header) = request_headers(&bytes, std::slice::from_ref(&sig));
    let verified = verify_receipt(&r_header, &s_header, &gk_id, &gk_policy, &canonical).unwrap();
    assert_eq!(verified.receipt().audit_seq, 7);
    // For another request, signed by the vendor instead, or garbled.
    let other = get_request(NOW, 120).encode();
    assert_eq!(
        code(verify_receipt(&r_header, &s_header, &gk_id, &gk_policy, &other).unwrap_err()),
        "receipt_mismatch"
    );
    let (_, vendor_sig) = request_headers(&bytes, &[vendor.sign_document(&bytes)]);
    assert_eq!(
        code(verify_receipt(&r_header, &vendor_sig, &gk_id, &gk_policy, &canonical).unwrap_err()),
        "unknown_key"
    );
    assert_eq!(
        code(verify_receipt("%%", &s_header, &gk_id, &gk_policy, &canonical).unwrap_err()),
        "malformed"
    );

    // A manifest of a PUT: vendor-signed request inside, gatekeeper-signed outside.
    let body = b"hello";
    let put = Request::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("reports").unwrap(),
        Operation::Put {
            key: ObjectKey::parse("org-1/h.txt").unwrap(),
            content_type: ContentType::parse("text/plain").unwrap(),
            body: BodyDigest::of(body),
        },
        Subject::parse("user-1").unwrap(),
        NOW,
        60,
        &mut OsRng,
    )
    .unwrap();
    let put_sig = Signer::new([vendor.clone()])
        .unwrap()
        .sign_request(&put, NOW)
        .unwrap();
    let verified_put = verifier(vec![vendor.authorized_key()])
        .verify(&put.encode(), &[put_sig], NOW)
        .unwrap();
    let manifest = Manifest::for_put(
        &verified_put,
        GatekeeperId::parse("gk.acme").unwrap(),
        NOW + 1,
        8,
    )
    .unwrap();
    let m_bytes = manifest.encode();
    let (m_header, ms_header) = request_headers(&m_bytes, &[gk.sign_document(&m_bytes)]);
    let uploader = role_policy([vendor.authorized_key()], &Role::vendor(), 1).unwrap();
    let vm = verify_manifest(&m_header, &ms_header, &gk_policy, &uploader).unwrap();
    vm.check_object(
        &Bucket::parse("reports").unwrap(),
        &ObjectKey::parse("org-1/h.txt").unwrap(),
    )
    .unwrap();
    vm.check_body(&BodyDigest::of(body)).unwrap();
    assert_eq!(
        vm.check_body(&BodyDigest::of(b"hellO")).unwrap_err().code(),
        ErrorCode::BodyMismatch
    );
    // Swapping the policies (the gatekeeper key posing as uploader) fails.
    assert!(verify_manifest(&m_header, &ms_header, &uploader, &gk_policy).is_err());

    // The whole download check: a GET of that object, its receipt, the manifest, the body.
    let get = Request::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("reports").unwrap(),
        Operation::Get {
            key: ObjectKey::parse("org-1/h.txt").unwrap(),
            range: None,
        },
        Subject::parse("user-2").unwrap(),
        NOW + 5,
        60,
        &mut OsRng,
    )
    .unwrap();
    let get_receipt = Receipt {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        request_sha256: get.digest(),
        decision: Decision::Allow,
        decided_at: NOW + 6,
        audit_seq: 9,
        leaf_sha256: Some([3; 32]),
    }
    .encode();
    let (gr_header, grs_header) = request_headers(&get_receipt, &[gk.sign_document(&get_receipt)]);
    let headers = DownloadHeaders {
        receipt: &gr_header,
        receipt_signature: &grs_header,
        manifest: &m_header,
        manifest_signature: &ms_header,
    };
    let check = |body: Option<&BodyDigest>| {
        verify_download_headers(&get.encode(), &headers, body, &gk_policy, &uploader)
    };
    let ok = check(Some(&BodyDigest::of(body))).unwrap();
    assert_eq!(ok.receipt.receipt().audit_seq, 9);
    assert_eq!(
        code(check(Some(&BodyDigest::of(b"hellO"))).unwrap_err()),
        "body_mismatch"
    );
    assert_eq!(code(check(None).unwrap_err()), "invalid_field");
    // The PUT's receipt does not answer the GET.
    let wrong = DownloadHeaders {
        receipt: &r_header,
        receipt_signature: &s_header,
        ..headers
    };
    assert_eq!(
        code(
            verify_download_headers(
                &get.encode(),
                &wrong,
                Some(&BodyDigest::of(body)),
                &gk_policy,
                &uploader
            )
            .unwrap_err()
        ),
        "receipt_mismatch"
    );
}

/// A LIST request for `prefix` signed by `vendor` and verified as the gatekeeper would.
fn list_request(vendor: &VendorKey, prefix: &str) -> countersign_core::VerifiedRequest {
    let request = Request::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Bucket::parse("reports").unwrap(),
        Operation::List {
            prefix: countersign_core::ListPrefix::parse(prefix).unwrap(),
        },
        Subject::parse("user-1").unwrap(),
        NOW,
        60,
        &mut OsRng,
    )
    .unwrap();
    let sig = Signer::new([vendor.clone()])
        .unwrap()
        .sign_request(&request, NOW)
        .unwrap();
    verifier(vec![vendor.authorized_key()])
        .verify(&request.encode(), &[sig], NOW)
        .unwrap()
}

fn listed(key: &str) -> countersign_core::ListedObject {
    countersign_core::ListedObject {
        key: ObjectKey::parse(key).unwrap(),
        size: 5,
        sha256: BodyDigest::of(b"hello").sha256,
        content_type: ContentType::parse("text/plain").unwrap(),
        stored_at: NOW - 100,
    }
}

#[test]
fn listings_verify_from_the_list_body() {
    use countersign_core::Listing;
    use countersign_vendor::transport::{verify_list_response, verify_listing};
    let vendor = key("v1", None, None);
    let gk = gatekeeper_key("gk-1");
    let gk_policy = role_policy([gk.authorized_key()], &Role::gatekeeper(), 1).unwrap();
    let list = list_request(&vendor, "org-1/");
    let cursor = ObjectKey::parse("org-1/a&b c%d").unwrap();
    let page = Listing::for_request(
        &list,
        GatekeeperId::parse("gk.acme").unwrap(),
        9,
        NOW + 1,
        Some(cursor.clone()),
        vec![listed("org-1/b"), listed("org-1/c")],
        false,
    )
    .unwrap();
    let bytes = page.encode();
    let (listing, signature) = request_headers(&bytes, &[gk.sign_document(&bytes)]);
    let body = serde_json::json!({
        "bucket": "reports", "objects": [], "listing": listing, "listing_signature": signature,
    })
    .to_string();

    let verified =
        verify_list_response(body.as_bytes(), &gk_policy, list.canonical(), Some(&cursor)).unwrap();
    let keys: Vec<&str> = verified
        .listing()
        .objects()
        .iter()
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(keys, ["org-1/b", "org-1/c"]);
    assert_eq!(verified.listing().audit_seq(), 9);

    // The page of another cursor (here: the client asked for the first page).
    assert_eq!(
        code(verify_listing(&listing, &signature, &gk_policy, list.canonical(), None).unwrap_err()),
        "listing_mismatch"
    );
    // The page answers another request.
    let other = list_request(&vendor, "org-1/");
    assert_eq!(
        code(
            verify_listing(
                &listing,
                &signature,
                &gk_policy,
                other.canonical(),
                Some(&cursor)
            )
            .unwrap_err()
        ),
        "listing_mismatch"
    );
    // An object hidden after signing.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let hidden: String = text
        .replace("count:2", "count:1")
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("object:org-1/c "))
        .collect();
    let (hidden, _) = request_headers(hidden.as_bytes(), &[]);
    assert_eq!(
        code(
            verify_listing(
                &hidden,
                &signature,
                &gk_policy,
                list.canonical(),
                Some(&cursor)
            )
            .unwrap_err()
        ),
        "bad_signature"
    );
    // Signed by a vendor key: not the gatekeeper's.
    let (_, vendor_sig) = request_headers(&bytes, &[vendor.sign_document(&bytes)]);
    assert_eq!(
        code(
            verify_listing(
                &listing,
                &vendor_sig,
                &gk_policy,
                list.canonical(),
                Some(&cursor)
            )
            .unwrap_err()
        ),
        "unknown_key"
    );
    // Bodies without a signed listing.
    for body in [
        "not json".to_owned(),
        serde_json::json!({"objects": []}).to_string(),
        serde_json::json!({"listing": listing, "listing_signature": 7}).to_string(),
    ] {
        assert_eq!(
            code(
                verify_list_response(body.as_bytes(), &gk_policy, list.canonical(), None)
                    .unwrap_err()
            ),
            "malformed",
            "{body}"
        );
    }
}
