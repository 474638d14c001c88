//! The client in headless Chromium: option errors, and, when the test command has
//! started a real gatekeeper (`COUNTERSIGN_TEST_GATEKEEPER_URL` etc. at compile
//! time), PUT / GET / LIST / batch GET through it with every verification on, and
//! through a proxy that tampers with its answers (`COUNTERSIGN_TEST_PROXY_URL`,
//! `tests/browser/tamper-proxy.mjs`).
#![cfg(target_arch = "wasm32")]
// Test code: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::signature::encode_list;
use countersign_core::text::{b64, parse_b64};
use countersign_core::{KeyId, Role, SignatureEntry};
#[cfg(feature = "admin")]
use countersign_wasm::AuditRequest;
use countersign_wasm::GatekeeperClient;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Seed of the vendor key the test command lists in the gatekeeper's config.
const VENDOR_SEED: [u8; 32] = [11; 32];
const VENDOR_KEY_ID: &str = "test-vendor";

/// The gatekeeper the test command started: URL, id and `key_id:base64url public
/// key`. Without one a test is skipped, except under CI, where that fails it.
fn gatekeeper() -> Option<(&'static str, &'static str, &'static str)> {
    let found = (|| {
        Some((
            option_env!("COUNTERSIGN_TEST_GATEKEEPER_URL")?,
            option_env!("COUNTERSIGN_TEST_GATEKEEPER_ID")?,
            option_env!("COUNTERSIGN_TEST_GATEKEEPER_KEY")?,
        ))
    })();
    assert!(
        found.is_some() || option_env!("CI").is_none(),
        "CI must run the browser tests against a gatekeeper"
    );
    found
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    Reflect::set(o, &k.into(), &v.into()).unwrap();
}

fn get(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

/// One entry of `options.keys`, as a page would write it in JSON.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageKey<'a> {
    key_id: &'a str,
    role: &'a str,
    public_key: &'a str,
}

/// The options a page passes to `new GatekeeperClient`, but for `sign`, as JSON data.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageOptions<'a> {
    gatekeeper_url: &'a str,
    gatekeeper_id: &'a str,
    bucket: &'a str,
    subject: &'a str,
    keys: [PageKey<'a>; 2],
}

/// `value` as the plain JavaScript object a page would hold (through
/// serde-wasm-bindgen: structs become objects, fields camelCase).
fn js_object(value: &impl serde::Serialize) -> Object {
    serde_wasm_bindgen::to_value(value)
        .unwrap()
        .unchecked_into()
}

fn key_entry(key_id: &str, role: &str, public_key: &str) -> Object {
    js_object(&PageKey {
        key_id,
        role,
        public_key,
    })
}

/// A `sign` function that signs every request with `seed` as `key_id`.
fn signer(seed: [u8; 32], key_id: &'static str) -> JsValue {
    let key = SigningKey::from_bytes(&seed);
    Closure::<dyn FnMut(Array) -> JsValue>::new(move |requests: Array| {
        let lists: Array = requests
            .iter()
            .map(|r| {
                let bytes = parse_b64(&r.as_string().unwrap(), "request").unwrap();
                let sig = SignatureEntry::sign(
                    &key,
                    Role::vendor(),
                    KeyId::parse(key_id).unwrap(),
                    &bytes,
                );
                JsValue::from_str(&encode_list(&[sig]))
            })
            .collect();
        // Resolve asynchronously, as a real vendor endpoint would.
        Promise::resolve(&lists).into()
    })
    .into_js_value()
}

/// A client of the gatekeeper at `url` signing as the vendor for user-42.
fn vendor_client(url: &str, id: &str, gk_key: &str) -> GatekeeperClient {
    GatekeeperClient::new(
        options(
            url,
            id,
            gk_key,
            signer(VENDOR_SEED, VENDOR_KEY_ID),
            "user-42",
        )
        .into(),
    )
    .unwrap()
}

fn options(url: &str, id: &str, gk_key: &str, sign: JsValue, subject: &str) -> Object {
    let (gk_key_id, gk_public) = gk_key.split_once(':').unwrap();
    let vendor_public = b64(&SigningKey::from_bytes(&VENDOR_SEED)
        .verifying_key()
        .to_bytes());
    let o = js_object(&PageOptions {
        gatekeeper_url: url,
        gatekeeper_id: id,
        bucket: "reports",
        subject,
        keys: [
            PageKey {
                key_id: gk_key_id,
                role: "gatekeeper",
                public_key: gk_public,
            },
            PageKey {
                key_id: VENDOR_KEY_ID,
                role: "vendor",
                public_key: &vendor_public,
            },
        ],
    });
    set(&o, "sign", sign);
    o
}

fn error_code(result: Result<GatekeeperClient, countersign_wasm::CountersignError>) -> String {
    result.err().map(|e| e.code()).unwrap_or_default()
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

#[wasm_bindgen_test]
fn options_are_validated_with_codes() {
    let gatekeeper_public = b64(&SigningKey::from_bytes(&[12; 32]).verifying_key().to_bytes());
    let vendor_public = b64(&SigningKey::from_bytes(&VENDOR_SEED)
        .verifying_key()
        .to_bytes());
    let good = || {
        options(
            "http://127.0.0.1:9",
            "gk.test",
            &format!("gk-1:{gatekeeper_public}"),
            signer(VENDOR_SEED, VENDOR_KEY_ID),
            "user-1",
        )
    };
    assert!(GatekeeperClient::new(good().into()).is_ok());

    let o = good();
    Reflect::delete_property(&o, &"sign".into()).unwrap();
    assert_eq!(error_code(GatekeeperClient::new(o.into())), "bad_options");

    let o = good();
    set(&o, "bucket", "Not A Bucket");
    assert_eq!(
        error_code(GatekeeperClient::new(o.into())),
        "invalid_bucket"
    );

    let o = good();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let keys = Array::of1(&key_entry("weak", "gatekeeper", &b64(&identity)));
    set(&o, "keys", keys);
    assert_eq!(error_code(GatekeeperClient::new(o.into())), "weak_key");

    // One public key under two key ids (here the vendor's, also as a gatekeeper key)
    // would count twice towards a threshold.
    let o = good();
    let keys = Array::of2(
        &key_entry("gk-1", "gatekeeper", &vendor_public),
        &key_entry(VENDOR_KEY_ID, "vendor", &vendor_public),
    );
    set(&o, "keys", keys);
    assert_eq!(error_code(GatekeeperClient::new(o.into())), "duplicate_key");

    for bad in [0, 65] {
        let o = good();
        set(&o, "concurrency", bad);
        assert_eq!(error_code(GatekeeperClient::new(o.into())), "bad_options");
    }

    let o = good();
    set(&o, "subject", "has space");
    assert_eq!(error_code(GatekeeperClient::new(o.into())), "invalid_field");

    // Shapes: each wrong field is `bad_options`, named in the message.
    let message = |o: Object| {
        let e = GatekeeperClient::new(o.into()).err().unwrap();
        assert_eq!(e.code(), "bad_options");
        e.message()
    };
    assert_eq!(
        message(Array::new().unchecked_into::<Object>()),
        "options must be an object"
    );
    let o = good();
    set(&o, "gatekeeperURL", "http://127.0.0.1:9");
    assert_eq!(message(o), "options.gatekeeperURL is not a known option");
    let o = good();
    set(&o, "bucket", 7);
    assert_eq!(message(o), "options.bucket must be a string");
    let o = good();
    Reflect::delete_property(&o, &"gatekeeperId".into()).unwrap();
    assert_eq!(message(o), "options.gatekeeperId must be a string");
    for bad in [
        JsValue::from(1.5),
        JsValue::from(-1),
        JsValue::from("60"),
        JsValue::from(2f64.powi(53)),
    ] {
        let o = good();
        set(&o, "lifetimeSecs", bad);
        assert_eq!(
            message(o),
            "options.lifetimeSecs must be a whole number from 0 to 2^53 - 1"
        );
    }
    let o = good();
    set(&o, "keys", "gk-1");
    assert_eq!(message(o), "options.keys must be an array");
    let o = good();
    let key = key_entry("gk-1", "gatekeeper", &gatekeeper_public);
    set(&key, "notAfter", 10);
    set(&key, "expires", 10);
    set(&o, "keys", Array::of1(&key));
    assert_eq!(message(o), "options.keys[0].expires is not a known option");
    let o = good();
    set(&o, "keys", Array::of1(&JsValue::NULL));
    assert_eq!(message(o), "options.keys[0] must be an object");
    let o = good();
    set(&o, "logWitnesses", Array::of1(&JsValue::from(4)));
    assert!(message(o).starts_with("options.logWitnesses[0] must be a witness verifier key"));
    // `undefined` and `null` are as if the option were missing.
    let o = good();
    set(&o, "lifetimeSecs", JsValue::UNDEFINED);
    set(&o, "logWitnesses", JsValue::NULL);
    assert!(GatekeeperClient::new(o.into()).is_ok());
}

#[wasm_bindgen_test]
async fn bad_keys_and_unreachable_gatekeepers_reject_with_codes() {
    let gatekeeper_public = b64(&SigningKey::from_bytes(&[12; 32]).verifying_key().to_bytes());
    let client = GatekeeperClient::new(
        options(
            "http://127.0.0.1:9",
            "gk.test",
            &format!("gk-1:{gatekeeper_public}"),
            signer(VENDOR_SEED, VENDOR_KEY_ID),
            "user-1",
        )
        .into(),
    )
    .unwrap();
    let err = settle(client.get_object("../etc/passwd".into()))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "invalid_key_path");
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "a CountersignError is an Error"
    );
    assert_eq!(get(&err, "name").as_string().unwrap(), "CountersignError");
    assert!(get(&err, "message").as_string().unwrap().contains(".."));
    // Port 9 (discard) is closed on 127.0.0.1: the fetch itself fails.
    let err = settle(client.get_object("org-1/a.txt".into()))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "network");
}

#[wasm_bindgen_test]
async fn put_get_list_through_a_real_gatekeeper() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    wasm_bindgen_test::console_log!("testing against the gatekeeper at {url}");
    let run = format!("{:x}", js_sys::Date::now() as u64);
    let client = vendor_client(url, id, gk_key);

    let body = format!("screenshot bytes {run}").into_bytes();
    let key = format!("org-1/{run}/scan 1+ü.png");
    let put = settle(client.put_object(key.clone(), body.clone(), "image/png".into()))
        .await
        .unwrap();
    assert_eq!(get(&put, "size").as_f64().unwrap() as usize, body.len());

    let object = settle(client.get_object(key.clone())).await.unwrap();
    assert_eq!(Uint8Array::new(&get(&object, "bytes")).to_vec(), body);
    assert_eq!(
        get(&object, "contentType").as_string().unwrap(),
        "image/png"
    );
    assert_eq!(get(&object, "uploader").as_string().unwrap(), "user-42");

    // Objects are never overwritten.
    let err = settle(client.put_object(key.clone(), b"other".to_vec(), "image/png".into()))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "already_exists");

    // A batch: one signing call, one result per key, errors in place.
    let missing = format!("org-1/{run}/missing.png");
    let both = settle(client.get_objects(vec![key.clone(), missing]))
        .await
        .unwrap();
    let both = Array::from(&both);
    assert_eq!(Uint8Array::new(&get(&both.get(0), "bytes")).to_vec(), body);
    assert_eq!(get(&both.get(1), "code").as_string().unwrap(), "not_found");

    // A larger batch, fetched two at a time: every result in the caller's order.
    let narrow_options = options(
        url,
        id,
        gk_key,
        signer(VENDOR_SEED, VENDOR_KEY_ID),
        "user-42",
    );
    set(&narrow_options, "concurrency", 2);
    let narrow = GatekeeperClient::new(narrow_options.into()).unwrap();
    let mut keys = Vec::new();
    for i in 0..5 {
        let k = format!("org-1/{run}-batch/{i}.txt");
        settle(narrow.put_object(k.clone(), k.clone().into_bytes(), "text/plain".into()))
            .await
            .unwrap();
        keys.push(k);
    }
    keys.insert(2, format!("org-1/{run}-batch/missing.txt"));
    keys.insert(4, "../bad".into());
    let results = Array::from(&settle(narrow.get_objects(keys.clone())).await.unwrap());
    assert_eq!(results.length() as usize, keys.len());
    for (i, k) in keys.iter().enumerate() {
        let r = results.get(i as u32);
        match i {
            2 => assert_eq!(get(&r, "code").as_string().unwrap(), "not_found"),
            4 => assert_eq!(get(&r, "code").as_string().unwrap(), "invalid_key_path"),
            _ => assert_eq!(&Uint8Array::new(&get(&r, "bytes")).to_vec(), k.as_bytes()),
        }
    }

    let page = settle(client.list_objects(format!("org-1/{run}/"), None, None))
        .await
        .unwrap();
    let objects = Array::from(&get(&page, "objects"));
    assert_eq!(objects.length(), 1);
    assert_eq!(get(&objects.get(0), "key").as_string().unwrap(), key);

    // A signature by a key the gatekeeper does not know is refused with its code.
    let stranger = GatekeeperClient::new(
        options(url, id, gk_key, signer([99; 32], "stranger"), "user-42").into(),
    )
    .unwrap();
    let err = settle(stranger.get_object(key.clone())).await.unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "unknown_key");
}

fn code_of(err: &JsValue) -> String {
    get(err, "code").as_string().unwrap_or_default()
}

fn listed_keys(page: &JsValue) -> Vec<String> {
    Array::from(&get(page, "objects"))
        .iter()
        .map(|o| get(&o, "key").as_string().unwrap())
        .collect()
}

#[wasm_bindgen_test]
async fn listings_page_with_encoded_cursors_and_tampering_is_refused() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    let proxy = option_env!("COUNTERSIGN_TEST_PROXY_URL");
    assert!(
        proxy.is_some(),
        "the test command starts the tamper proxy with the gatekeeper"
    );
    let Some(proxy) = proxy else { return };
    let run = format!("{:x}", js_sys::Date::now() as u64);
    let client = |base: &str| vendor_client(base, id, gk_key);
    let direct = client(url);
    let via = |mode: &str| client(&format!("{proxy}/{mode}"));

    // Three objects; the first key needs encoding in a URL (`&`, space, `%`).
    let prefix = format!("org-1/{run}/");
    let keys = [
        format!("{prefix}a&b c%d.txt"),
        format!("{prefix}b.txt"),
        format!("{prefix}c.txt"),
    ];
    for key in &keys {
        settle(direct.put_object(key.clone(), key.as_bytes().to_vec(), "text/plain".into()))
            .await
            .unwrap();
    }

    // Page by page: each cursor is the previous page's last key, sent encoded.
    let page = settle(direct.list_objects(prefix.clone(), None, Some(1)))
        .await
        .unwrap();
    assert_eq!(listed_keys(&page), [keys[0].clone()]);
    let cursor = get(&page, "nextAfter").as_string().unwrap();
    assert_eq!(cursor, keys[0]);
    let page = settle(direct.list_objects(prefix.clone(), Some(cursor), Some(1)))
        .await
        .unwrap();
    assert_eq!(listed_keys(&page), [keys[1].clone()]);
    let page =
        settle(direct.list_objects(prefix.clone(), get(&page, "nextAfter").as_string(), None))
            .await
            .unwrap();
    assert_eq!(listed_keys(&page), [keys[2].clone()]);
    assert!(get(&page, "nextAfter").is_undefined());
    let object = get(&page, "objects");
    let last = Array::from(&object).get(0);
    assert_eq!(get(&last, "size").as_f64().unwrap() as usize, keys[2].len());
    assert_eq!(get(&last, "contentType").as_string().unwrap(), "text/plain");

    // The proxy itself breaks nothing.
    let page = settle(via("pass").list_objects(prefix.clone(), None, None))
        .await
        .unwrap();
    assert_eq!(listed_keys(&page), keys);
    let object = settle(via("pass").get_object(keys[1].clone()))
        .await
        .unwrap();
    assert_eq!(
        Uint8Array::new(&get(&object, "bytes")).to_vec(),
        keys[1].as_bytes()
    );

    // An object hidden from the signed listing: the signature no longer verifies.
    let err = settle(via("hide").list_objects(prefix.clone(), None, None))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "bad_signature", "{:?}", get(&err, "message"));

    // The first page (genuinely signed) passed off as the page after `keys[0]`.
    let err = settle(via("first-page").list_objects(prefix.clone(), Some(keys[0].clone()), None))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        "listing_mismatch",
        "{:?}",
        get(&err, "message")
    );

    // A body longer than the manifest signs: announced (refused before reading) or
    // streamed without a length (refused as soon as a byte too many arrives; the
    // proxy would send more forever).
    for mode in ["longer", "endless"] {
        let err = settle(via(mode).get_object(keys[1].clone()))
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&err),
            "body_mismatch",
            "{mode}: {:?}",
            get(&err, "message")
        );
    }

    // A cursor that is not an object key is refused before anything is signed.
    let err = settle(direct.list_objects(prefix.clone(), Some("../x".into()), None))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "invalid_key_path");
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let set_timeout: js_sys::Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
        .unwrap()
        .into();
    let p = Promise::new(&mut |resolve, _| {
        set_timeout
            .call2(&JsValue::NULL, &resolve, &ms.into())
            .unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// `performance.now()`, in milliseconds.
fn now_ms() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    let now: js_sys::Function = Reflect::get(&performance, &"now".into()).unwrap().into();
    now.call0(&performance).unwrap().as_f64().unwrap()
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = getEntriesByName)]
    fn performance_entries(name: &str) -> Array;
    #[wasm_bindgen(js_namespace = performance, js_name = clearMeasures)]
    fn clear_measures();
}

#[cfg(feature = "admin")]
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = clearResourceTimings)]
    fn clear_resource_timings();
}

/// The page's `performance.getEntriesByType("resource")`.
#[cfg(feature = "admin")]
fn resource_entries() -> Array {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    let by_type: js_sys::Function = Reflect::get(&performance, &"getEntriesByType".into())
        .unwrap()
        .into();
    by_type
        .call1(&performance, &"resource".into())
        .unwrap()
        .into()
}

/// How `runs` proofs that took `ms` each on average split, from `proveLogged`'s
/// `performance.measure` entries: fetches of proofs (`GET /v1/log/proof/<index>`), of
/// checkpoints and of tiles (which `proveLogged` no longer makes: 0 unless it
/// regresses), and the rest (in wasm); and how many fetches of each there were.
fn proof_split(runs: u32, ms: f64) -> (String, [u32; 3]) {
    let fetched = |what: &str| {
        let entries = performance_entries(&format!("countersign:proveLogged:{what}"));
        let total: f64 = entries
            .iter()
            .map(|e| get(&e, "duration").as_f64().unwrap())
            .fold(0.0, |a, b| a + b);
        (total / f64::from(runs), entries.length())
    };
    let (proof, proofs) = fetched("proof");
    let (checkpoint, checkpoints) = fetched("checkpoint");
    let (tiles, tile_fetches) = fetched("tile");
    let split = format!(
        "{ms:.3} ms per proof: proof fetch {proof:.3}, checkpoint fetch {checkpoint:.3}, tile fetches {tiles:.3}, wasm {:.3}; {proofs} proof, {checkpoints} checkpoint and {tile_fetches} tile fetches in {runs} proofs",
        ms - proof - checkpoint - tiles
    );
    (split, [proofs, checkpoints, tile_fetches])
}

/// The `LogReceipt` held by `value.receipt` (a `PutResult`, `VerifiedObject` or
/// `CountersignError`).
fn receipt_of(value: &JsValue) -> countersign_wasm::LogReceipt {
    use wasm_bindgen::convert::TryFromJsValue as _;
    countersign_wasm::LogReceipt::try_from_js_value(get(value, "receipt")).unwrap()
}

/// `proveLogged`, retried while the log has not integrated the entry yet.
async fn prove_when_integrated(
    client: &GatekeeperClient,
    receipt: &countersign_wasm::LogReceipt,
) -> Result<JsValue, JsValue> {
    for _ in 0..100 {
        match settle(client.prove_logged(receipt)).await {
            Err(e) if code_of(&e) == "not_found" => sleep(100).await,
            other => return other,
        }
    }
    panic!("the entry was not integrated within 10 s");
}

#[wasm_bindgen_test]
async fn receipts_prove_their_requests_were_logged() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    let run = format!("{:x}", js_sys::Date::now() as u64);
    let client = vendor_client(url, id, gk_key);
    let key = format!("org-1/{run}/logged.txt");
    let put = settle(client.put_object(key.clone(), b"logged".to_vec(), "text/plain".into()))
        .await
        .unwrap();
    let put_receipt = receipt_of(&put);
    assert_eq!(put_receipt.decision(), "allow");
    assert_eq!(put_receipt.leaf_sha256().map(|h| h.len()), Some(64));
    let proof = prove_when_integrated(&client, &put_receipt).await.unwrap();
    assert_eq!(
        get(&proof, "leafIndex").as_f64(),
        Some(put_receipt.audit_seq())
    );
    assert!(get(&proof, "treeSize").as_f64().unwrap() > put_receipt.audit_seq());
    assert_eq!(
        get(&proof, "leafSha256").as_string(),
        put_receipt.leaf_sha256()
    );

    // A refusal's deny receipt proves its entry too.
    let err = settle(client.get_object(format!("org-1/{run}/missing")))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "not_found");
    let deny = receipt_of(&err);
    assert_eq!(deny.decision(), "deny");
    prove_when_integrated(&client, &deny).await.unwrap();

    // Proof fetch + verify time in a tree of more than one tile (300 more entries).
    for i in 0..300 {
        settle(client.put_object(
            format!("org-1/{run}/fill-{i}"),
            vec![1],
            "text/plain".into(),
        ))
        .await
        .unwrap();
    }
    let mut last = prove_when_integrated(&client, &put_receipt).await.unwrap();
    while get(&last, "treeSize").as_f64().unwrap() < 300.0 {
        sleep(100).await;
        last = settle(client.prove_logged(&put_receipt)).await.unwrap();
    }
    // Warm: one client proving again and again; cold: a new client per proof. Each
    // proof is one request either way (nothing is cached between proofs).
    let runs = 50;
    clear_measures();
    let start = now_ms();
    for _ in 0..runs {
        last = settle(client.prove_logged(&put_receipt)).await.unwrap();
    }
    let (warm, warm_fetches) = proof_split(runs, (now_ms() - start) / f64::from(runs));
    let cold_runs = 20;
    let fresh = (0..cold_runs)
        .map(|_| vendor_client(url, id, gk_key))
        .collect::<Vec<_>>();
    clear_measures();
    let start = now_ms();
    for c in &fresh {
        settle(c.prove_logged(&put_receipt)).await.unwrap();
    }
    let (cold, cold_fetches) = proof_split(cold_runs, (now_ms() - start) / f64::from(cold_runs));
    wasm_bindgen_test::console_log!(
        "proveLogged, tree of {} entries, from 127.0.0.1: warm {warm}; cold {cold}",
        get(&last, "treeSize").as_f64().unwrap()
    );
    assert_eq!(warm_fetches, [runs, 0, 0], "{warm}");
    assert_eq!(cold_fetches, [cold_runs, 0, 0], "{cold}");

    // A proxy that lies in the answer: a wrong path, a path for another size than
    // the checkpoint's, a checkpoint signed by another key, an answer cut short.
    if let Some(proxy) = option_env!("COUNTERSIGN_TEST_PROXY_URL") {
        let via = |mode: &str| vendor_client(&format!("{proxy}/{mode}"), id, gk_key);
        settle(via("pass").prove_logged(&put_receipt))
            .await
            .unwrap();
        for (mode, code) in [
            ("proof-path", "audit_chain_broken"),
            ("proof-size", "invalid_field"),
            ("proof-key", "unknown_key"),
            ("proof-cut", "malformed"),
        ] {
            let err = settle(via(mode).prove_logged(&put_receipt))
                .await
                .unwrap_err();
            assert_eq!(code_of(&err), code, "{mode}: {:?}", get(&err, "message"));
        }
    }

    // A witness quorum the gatekeeper's checkpoint does not carry.
    let witness = countersign_core::note::NoteSigner::cosigner(
        "w1.example",
        SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier_key();
    let strict_options = options(
        url,
        id,
        gk_key,
        signer(VENDOR_SEED, VENDOR_KEY_ID),
        "user-42",
    );
    set(&strict_options, "logWitnesses", Array::of1(&witness.into()));
    set(&strict_options, "logQuorum", 1);
    let strict = GatekeeperClient::new(strict_options.into()).unwrap();
    let err = settle(strict.prove_logged(&put_receipt)).await.unwrap_err();
    assert_eq!(code_of(&err), "threshold_not_met");
    // A quorum larger than the witnesses given is a configuration error.
    let bad_options = options(
        url,
        id,
        gk_key,
        signer(VENDOR_SEED, VENDOR_KEY_ID),
        "user-42",
    );
    set(&bad_options, "logQuorum", 1);
    assert_eq!(
        error_code(GatekeeperClient::new(bad_options.into())),
        "bad_options"
    );
}

#[cfg(feature = "admin")]
/// Seed of the customer-admin key the test command lists (`test-admin`).
const ADMIN_SEED: [u8; 32] = [13; 32];

#[cfg(feature = "admin")]
fn audit_request(gk_id: &str, key_id: &str, action: &str) -> Result<AuditRequest, String> {
    let o = Object::new();
    set(&o, "gatekeeperId", gk_id);
    set(&o, "subject", "console-admin");
    set(&o, "keyId", key_id);
    set(&o, "action", action);
    AuditRequest::new(o.into()).map_err(|e| e.code())
}

#[cfg(feature = "admin")]
/// `seed` as a non-extractable WebCrypto Ed25519 signing key (imported as PKCS#8,
/// the way the console imports a key file).
async fn webcrypto_key(seed: [u8; 32]) -> JsValue {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let subtle = get(&get(&js_sys::global(), "crypto"), "subtle");
    let import: js_sys::Function = get(&subtle, "importKey").into();
    let usages = Array::of1(&"sign".into());
    let p = import
        .apply(
            &subtle,
            &Array::of5(
                &"pkcs8".into(),
                &Uint8Array::from(der.as_slice()),
                &"Ed25519".into(),
                &false.into(),
                &usages,
            ),
        )
        .unwrap();
    settle(p.into()).await.unwrap()
}

#[cfg(feature = "admin")]
/// Signs the request's signing message with the WebCrypto key.
async fn webcrypto_sign(key: &JsValue, req: &AuditRequest) -> Vec<u8> {
    let subtle = get(&get(&js_sys::global(), "crypto"), "subtle");
    let sign: js_sys::Function = get(&subtle, "sign").into();
    let p = sign
        .call3(&subtle, &"Ed25519".into(), key, &req.signing_message())
        .unwrap();
    let sig = settle(p.into()).await.unwrap();
    Uint8Array::new(&sig).to_vec()
}

#[cfg(feature = "admin")]
/// GETs `url` with the audit request's headers; the status and the JSON answer.
async fn audit_get(url: &str, req: &AuditRequest, signature: &[u8]) -> (u16, JsValue) {
    let headers = Object::new();
    set(&headers, "Countersign-Request", req.request_header());
    set(
        &headers,
        "Countersign-Signature",
        req.signature_header(signature).unwrap(),
    );
    let init = Object::new();
    set(&init, "headers", headers);
    let fetch: js_sys::Function = get(&js_sys::global(), "fetch").into();
    let response = settle(
        fetch
            .call2(&JsValue::NULL, &url.into(), &init)
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    let status = get(&response, "status").as_f64().unwrap() as u16;
    let json: js_sys::Function = get(&response, "json").into();
    let body = settle(json.call0(&response).unwrap().into()).await.unwrap();
    (status, body)
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn audit_requests_signed_with_a_webcrypto_admin_key() {
    // Options and signatures are checked with codes, gatekeeper or not.
    assert_eq!(
        audit_request("gk.test", "k", "delete").err().unwrap(),
        "bad_options"
    );
    assert_eq!(
        audit_request("gk.test", "k:1", "read").err().unwrap(),
        "invalid_field"
    );
    let req = audit_request("gk.test", "test-admin", "read").unwrap();
    assert_eq!(
        req.signature_header(&[0; 63]).err().unwrap().code(),
        "bad_options"
    );
    // The message is the core's: a WebCrypto signature over it verifies as the
    // customer-admin signature of the canonical request.
    let key = webcrypto_key(ADMIN_SEED).await;
    let sig = webcrypto_sign(&key, &req).await;
    let entry = SignatureEntry::sign(
        &SigningKey::from_bytes(&ADMIN_SEED),
        Role::customer_admin(),
        KeyId::parse("test-admin").unwrap(),
        &req.canonical().to_vec(),
    );
    assert_eq!(sig, entry.signature, "Ed25519 signatures are deterministic");
    assert_eq!(req.signature_header(&sig).unwrap(), encode_list(&[entry]));
    let Some((url, id, _)) = gatekeeper() else {
        return;
    };
    // A search signed in the browser: the answer holds this very request's entry.
    let search = format!("{url}/v1/audit/search?subject=console-admin&operation=AUDIT");
    let req = audit_request(id, "test-admin", "read").unwrap();
    let sig = webcrypto_sign(&key, &req).await;
    let (status, body) = audit_get(&search, &req, &sig).await;
    assert_eq!(status, 200, "{:?}", js_sys::JSON::stringify(&body));
    let entries = Array::from(&get(&body, "entries"));
    assert!(entries.length() >= 1);
    assert!(
        entries
            .iter()
            .all(|e| get(&e, "subject") == "console-admin" && get(&e, "decision") == "allow")
    );
    // Each request is single use.
    let (status, body) = audit_get(&search, &req, &sig).await;
    assert_eq!(status, 409);
    assert_eq!(get(&get(&body, "error"), "code"), "replayed");
    // A vendor key cannot read the log: its signature claiming customer-admin is
    // refused.
    let req = audit_request(id, VENDOR_KEY_ID, "read").unwrap();
    let sig = webcrypto_sign(&webcrypto_key(VENDOR_SEED).await, &req).await;
    let (status, body) = audit_get(&search, &req, &sig).await;
    assert!(status == 401 || status == 403, "{status}");
    assert_eq!(get(&get(&body, "error"), "code"), "wrong_role");
}

// ---- The audit console (admin flavor): LogView, proveEntries, verifyLog ----

#[cfg(feature = "admin")]
/// `LogViewOptions` for a gatekeeper (`key`: `key_id:public key`).
fn log_view_options(url: &str, id: &str, gk_key: &str) -> Object {
    let (key_id, public) = gk_key.split_once(':').unwrap();
    let o = Object::new();
    set(&o, "gatekeeperUrl", url);
    set(&o, "gatekeeperId", id);
    set(
        &o,
        "keys",
        Array::of1(&key_entry(key_id, "gatekeeper", public)),
    );
    o
}

#[cfg(feature = "admin")]
/// Calls `object.method(arg)` as a page would and awaits the promise it returns.
async fn call(object: &JsValue, method: &str, arg: &JsValue) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = get(object, method).into();
    settle(f.call1(object, arg).unwrap().into()).await
}

#[cfg(feature = "admin")]
async fn open_view(options: &Object) -> Result<JsValue, JsValue> {
    settle(countersign_wasm::LogView::open(options.into())).await
}

#[cfg(feature = "admin")]
/// The `entry` values of an admin-signed `GET /v1/audit/search?<query>`.
async fn search_entries(url: &str, id: &str, query: &str) -> Vec<String> {
    let req = audit_request(id, "test-admin", "read").unwrap();
    let sig = webcrypto_sign(&webcrypto_key(ADMIN_SEED).await, &req).await;
    let (status, body) = audit_get(&format!("{url}/v1/audit/search?{query}"), &req, &sig).await;
    assert_eq!(status, 200, "{body:?}");
    Array::from(&get(&body, "entries"))
        .iter()
        .map(|r| get(&r, "entry").as_string().unwrap())
        .collect()
}

#[cfg(feature = "admin")]
/// Stores `org-1/<time>/<name>.txt` (body `body`) as user-42 and waits until the
/// log's checkpoint covers its entry; returns the entry's sequence number.
async fn put_covered(url: &str, id: &str, gk_key: &str, name: &str, body: &[u8]) -> f64 {
    let client = vendor_client(url, id, gk_key);
    let put = settle(client.put_object(
        format!("org-1/{:x}/{name}.txt", js_sys::Date::now() as u64),
        body.to_vec(),
        "text/plain".into(),
    ))
    .await
    .unwrap();
    let seq = receipt_of(&put).audit_seq();
    view_covering(&log_view_options(url, id, gk_key), seq).await;
    seq
}

#[cfg(feature = "admin")]
/// A `LogView` whose checkpoint covers entry `seq`, retried while the log has not
/// integrated it yet.
async fn view_covering(options: &Object, seq: f64) -> JsValue {
    for _ in 0..100 {
        match open_view(options).await {
            Ok(view) if get(&view, "treeSize").as_f64().unwrap() > seq => return view,
            Err(e) if code_of(&e) != "not_found" => panic!("{e:?}"),
            _ => sleep(100).await,
        }
    }
    panic!("the log did not cover entry {seq} within 10 s");
}

#[cfg(feature = "admin")]
fn seq_of(entry: &str) -> u64 {
    countersign_core::audit::AuditEntry::parse(&parse_b64(entry, "entry").unwrap())
        .unwrap()
        .seq
}

#[cfg(feature = "admin")]
/// `options.sign` of `verifyLog`: signs the message with `seed` (as WebCrypto would).
fn message_signer(seed: [u8; 32]) -> JsValue {
    use countersign_core::ed25519_dalek::Signer as _;
    let key = SigningKey::from_bytes(&seed);
    Closure::<dyn FnMut(Uint8Array) -> JsValue>::new(move |message: Uint8Array| {
        let signature = key.sign(&message.to_vec()).to_bytes();
        Promise::resolve(&Uint8Array::from(signature.as_slice())).into()
    })
    .into_js_value()
}

#[cfg(feature = "admin")]
fn verify_log_options(url: &str, id: &str, gk_key: &str, key_id: &str, seed: [u8; 32]) -> Object {
    let o = log_view_options(url, id, gk_key);
    set(&o, "subject", "log-verifier");
    set(&o, "keyId", key_id);
    set(&o, "sign", message_signer(seed));
    o
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn log_view_marks_each_displayed_entry() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    // Entries of this run's subject (120 PUTs: a page of 100 rows).
    let run = format!("{:x}", js_sys::Date::now() as u64);
    let subject = format!("console-{run}");
    let client = GatekeeperClient::new(
        options(
            url,
            id,
            gk_key,
            signer(VENDOR_SEED, VENDOR_KEY_ID),
            &subject,
        )
        .into(),
    )
    .unwrap();
    for i in 0..120 {
        settle(client.put_object(format!("org-1/{run}/row-{i}"), vec![1], "text/plain".into()))
            .await
            .unwrap();
    }
    let entries = search_entries(url, id, &format!("subject={subject}&limit=100")).await;
    assert_eq!(entries.len(), 100);
    let last = seq_of(&entries[99]);
    let options = log_view_options(url, id, gk_key);
    let view = view_covering(&options, last as f64).await;
    assert_eq!(get(&view, "rootHash").as_string().unwrap().len(), 64);
    assert!(
        get(&view, "note")
            .as_string()
            .unwrap()
            .starts_with(&format!("{id}/audit\n"))
    );
    assert_eq!(Array::from(&get(&view, "cosignedBy")).length(), 0);

    // A page of 100 rows: cold (tiles fetched), then warm (tiles cached).
    let page: Array = entries.iter().map(|e| JsValue::from_str(e)).collect();
    clear_measures();
    clear_resource_timings();
    let start = now_ms();
    let checks = Array::from(&call(&view, "proveEntries", &page).await.unwrap());
    let cold = now_ms() - start;
    // The tiles of all 100 proofs: one round, each tile fetched once, all before the
    // proofs are computed (the plan named every tile the proofs read).
    let fetches = performance_entries("countersign:logView:tile");
    let proving = performance_entries("countersign:logView:prove").get(0);
    assert!(fetches.length() > 0, "a cold view fetches tiles");
    let proving_starts = get(&proving, "startTime").as_f64().unwrap();
    for fetch in fetches.iter() {
        let end =
            get(&fetch, "startTime").as_f64().unwrap() + get(&fetch, "duration").as_f64().unwrap();
        assert!(
            end <= proving_starts,
            "a tile fetched while proving: the plan missed it"
        );
    }
    let urls: Vec<String> = resource_entries()
        .iter()
        .filter_map(|e| get(&e, "name").as_string())
        .filter(|u| u.contains("/v1/log/tile/"))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = urls.iter().collect();
    assert_eq!(urls.len(), fetches.length() as usize);
    assert_eq!(distinct.len(), urls.len(), "a tile fetched twice: {urls:?}");
    let runs = 20;
    let start = now_ms();
    for _ in 0..runs {
        call(&view, "proveEntries", &page).await.unwrap();
    }
    let warm = (now_ms() - start) / f64::from(runs);
    wasm_bindgen_test::console_log!(
        "proveEntries, page of 100 rows, tree of {} entries: cold {cold:.1} ms, warm {warm:.1} ms",
        get(&view, "treeSize").as_f64().unwrap()
    );
    assert_eq!(checks.length(), 100);
    for (check, entry) in checks.iter().zip(&entries) {
        assert_eq!(
            get(&check, "status"),
            "verified",
            "{:?}",
            get(&check, "message")
        );
        let seq = seq_of(entry) as f64;
        assert_eq!(get(&check, "seq").as_f64(), Some(seq));
        assert!(get(&check, "code").is_undefined());
        let fields = get(&check, "fields");
        assert_eq!(get(&fields, "seq").as_f64(), Some(seq));
        assert_eq!(get(&fields, "subject"), subject.as_str());
        assert_eq!(get(&fields, "operation"), "PUT");
        assert_eq!(get(&fields, "decision"), "allow");
        assert!(get(&fields, "error").is_undefined());
    }

    // One byte changed (the subject's last letter), an entry beyond the checkpoint,
    // bytes that are no entry, and text that is no base64url: each its own row.
    let mut bytes = parse_b64(&entries[3], "entry").unwrap();
    let at = bytes
        .windows(subject.len())
        .position(|w| w == subject.as_bytes())
        .unwrap()
        + subject.len()
        - 1;
    bytes[at] ^= 1;
    let changed = b64(&bytes);
    let tree_size = get(&view, "treeSize").as_f64().unwrap() as u64;
    let mut ahead =
        countersign_core::audit::AuditEntry::parse(&parse_b64(&entries[0], "entry").unwrap())
            .unwrap();
    ahead.seq = tree_size + 5;
    let rows: Array = [
        entries[1].clone(),
        changed,
        b64(&ahead.encode()),
        b64(b"no entry at all"),
        "not base64url!".to_owned(),
    ]
    .iter()
    .map(|e| JsValue::from_str(e))
    .collect();
    let checks = Array::from(&call(&view, "proveEntries", &rows).await.unwrap());
    let row = |i: u32| checks.get(i);
    assert_eq!(get(&row(0), "status"), "verified");
    assert_eq!(get(&row(1), "status"), "failed");
    assert_eq!(get(&row(1), "code"), "audit_chain_broken");
    assert_eq!(
        get(&row(1), "seq").as_f64(),
        Some(seq_of(&entries[3]) as f64)
    );
    assert!(
        get(&row(1), "message")
            .as_string()
            .unwrap()
            .contains("is not the log's leaf")
    );
    assert_ne!(get(&get(&row(1), "fields"), "subject"), subject.as_str());
    assert_eq!(get(&row(2), "status"), "pending");
    assert_eq!(get(&row(2), "seq").as_f64(), Some((tree_size + 5) as f64));
    assert!(get(&row(2), "code").is_undefined());
    // The core's parse codes: bytes that are no canonical entry, text that is no
    // base64url.
    for (i, code) in [(3, "non_canonical"), (4, "malformed")] {
        assert_eq!(get(&row(i), "status"), "failed");
        assert_eq!(get(&row(i), "code"), code, "{:?}", get(&row(i), "message"));
        assert!(get(&row(i), "seq").is_undefined());
        assert!(get(&row(i), "fields").is_undefined());
    }
    // After a failed row the tiles are fetched again, and the good rows still verify.
    let again = Array::from(&call(&view, "proveEntries", &page).await.unwrap());
    assert!(again.iter().all(|c| get(&c, "status") == "verified"));

    // Options errors reject with codes; a key that did not sign the checkpoint too.
    let o = log_view_options(url, id, gk_key);
    set(&o, "bucket", "reports");
    assert_eq!(code_of(&open_view(&o).await.unwrap_err()), "bad_options");
    let other = b64(&SigningKey::from_bytes(&[21; 32]).verifying_key().to_bytes());
    let o = log_view_options(url, id, &format!("gk-other:{other}"));
    let code = code_of(&open_view(&o).await.unwrap_err());
    assert!(code == "unknown_key" || code == "bad_signature", "{code}");
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn verify_log_checks_the_whole_log() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    // At least one entry, covered by the checkpoint.
    put_covered(url, id, gk_key, "verified", b"v").await;
    let options = verify_log_options(url, id, gk_key, "test-admin", ADMIN_SEED);
    let progress = std::rc::Rc::new(std::cell::RefCell::new(Vec::<(f64, f64)>::new()));
    let seen = progress.clone();
    set(
        &options,
        "onProgress",
        Closure::<dyn FnMut(f64, f64)>::new(move |done, total| {
            seen.borrow_mut().push((done, total))
        })
        .into_js_value(),
    );
    let report = settle(countersign_wasm::verify_log(options.into()))
        .await
        .unwrap();
    let entries = get(&report, "entries").as_f64().unwrap();
    assert!(entries > 0.0);
    assert_eq!(get(&report, "treeSize").as_f64(), Some(entries));
    let bundles = (entries / 256.0).ceil();
    assert_eq!(get(&report, "bundles").as_f64(), Some(bundles));
    assert_eq!(get(&report, "rootHash").as_string().unwrap().len(), 64);
    assert!(get(&report, "millis").as_f64().unwrap() >= 0.0);
    let progress = progress.borrow().clone();
    assert_eq!(progress.len() as f64, bundles);
    assert_eq!(progress.last().copied(), Some((entries, entries)));
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0));

    // A vendor key is refused by the gatekeeper, with its code.
    let vendor = verify_log_options(url, id, gk_key, VENDOR_KEY_ID, VENDOR_SEED);
    let err = settle(countersign_wasm::verify_log(vendor.into()))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "wrong_role");
    // A missing signing function is an options error.
    let o = log_view_options(url, id, gk_key);
    set(&o, "subject", "log-verifier");
    set(&o, "keyId", "test-admin");
    let err = settle(countersign_wasm::verify_log(o.into()))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "bad_options");
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn a_rewritten_database_row_is_found_by_the_console() {
    let (Some(url), Some(gk_key), Some(seq)) = (
        option_env!("COUNTERSIGN_TEST_TAMPERED_URL"),
        option_env!("COUNTERSIGN_TEST_TAMPERED_KEY"),
        option_env!("COUNTERSIGN_TEST_TAMPERED_SEQ"),
    ) else {
        return;
    };
    let id = "gk.tampered";
    let options = verify_log_options(url, id, gk_key, "test-admin", ADMIN_SEED);
    let err = settle(countersign_wasm::verify_log(options.into()))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "audit_chain_broken");
    let message = get(&err, "message").as_string().unwrap();
    assert!(
        message.contains(&format!("audit entry {seq} ")),
        "{message}"
    );

    // The console's rows: the rewritten entry fails, its neighbours verify.
    let entries = search_entries(url, id, "limit=20").await;
    let view = open_view(&log_view_options(url, id, gk_key)).await.unwrap();
    let page: Array = entries.iter().map(|e| JsValue::from_str(e)).collect();
    let checks = Array::from(&call(&view, "proveEntries", &page).await.unwrap());
    let seq: f64 = seq.parse().unwrap();
    for check in checks.iter() {
        let status = get(&check, "status").as_string().unwrap();
        if get(&check, "seq").as_f64() == Some(seq) {
            assert_eq!(status, "failed");
            assert_eq!(get(&check, "code"), "audit_chain_broken");
            // What the rewritten bytes say, shown on the failed row.
            assert_eq!(get(&get(&check, "fields"), "decision"), "allow");
        } else {
            assert_eq!(status, "verified");
        }
    }
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn witness_quorum_of_real_witness_processes() {
    let (Some(url), Some(gk_key), Some(vkeys)) = (
        option_env!("COUNTERSIGN_TEST_WITNESSED_URL"),
        option_env!("COUNTERSIGN_TEST_WITNESSED_KEY"),
        option_env!("COUNTERSIGN_TEST_WITNESSES"),
    ) else {
        return;
    };
    let id = "gk.witnessed";
    let vkeys: Vec<&str> = vkeys.split(' ').collect();
    let stranger =
        countersign_core::note::NoteSigner::cosigner("w3.test", SigningKey::from_bytes(&[23; 32]))
            .unwrap()
            .verifier_key();
    let with_witnesses = |o: &Object, witnesses: &[&str], quorum: u32| {
        let list: Array = witnesses.iter().map(|w| JsValue::from_str(w)).collect();
        set(o, "logWitnesses", list);
        set(o, "logQuorum", quorum);
    };
    let client_with = |witnesses: &[&str], quorum: u32| {
        let o = options(
            url,
            id,
            gk_key,
            signer(VENDOR_SEED, VENDOR_KEY_ID),
            "user-42",
        );
        with_witnesses(&o, witnesses, quorum);
        GatekeeperClient::new(o.into()).unwrap()
    };
    let view_with = |witnesses: &[&str], quorum: u32| {
        let o = log_view_options(url, id, gk_key);
        with_witnesses(&o, witnesses, quorum);
        o
    };

    // Quorum met: both witnesses cosigned the checkpoint that proves the PUT.
    let client = client_with(&vkeys, 2);
    let put = settle(client.put_object(
        "org-1/witnessed.txt".into(),
        b"w".to_vec(),
        "text/plain".into(),
    ))
    .await
    .unwrap();
    let receipt = receipt_of(&put);
    let mut proof = Err(JsValue::UNDEFINED);
    for _ in 0..100 {
        proof = settle(client.prove_logged(&receipt)).await;
        match &proof {
            // Not yet integrated, or not yet cosigned: the gatekeeper serves the
            // newest checkpoint with the quorum, which may not cover the entry yet.
            Err(e) if code_of(e) == "not_found" || code_of(e) == "threshold_not_met" => {
                sleep(100).await
            }
            _ => break,
        }
    }
    let proof = proof.unwrap();
    let cosigned: Vec<String> = Array::from(&get(&proof, "cosignedBy"))
        .iter()
        .map(|n| n.as_string().unwrap())
        .collect();
    assert_eq!(cosigned.len(), 2, "{cosigned:?}");
    assert!(cosigned.contains(&"w1.test".to_owned()) && cosigned.contains(&"w2.test".to_owned()));
    let view = open_view(&view_with(&vkeys, 2)).await.unwrap();
    assert_eq!(Array::from(&get(&view, "cosignedBy")).length(), 2);
    assert!(
        get(&view, "note")
            .as_string()
            .unwrap()
            .contains("— w1.test ")
    );

    // A witness the page does not trust: nobody it trusts cosigned.
    let err = settle(client_with(&[&stranger], 1).prove_logged(&receipt))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "threshold_not_met");
    let err = open_view(&view_with(&[&stranger], 1)).await.unwrap_err();
    assert_eq!(code_of(&err), "threshold_not_met");
    // A quorum above the cosigners (three trusted, two cosigned).
    let three = [vkeys[0], vkeys[1], stranger.as_str()];
    let err = settle(client_with(&three, 3).prove_logged(&receipt))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "threshold_not_met");
    let err = open_view(&view_with(&three, 3)).await.unwrap_err();
    assert_eq!(code_of(&err), "threshold_not_met");
    assert!(
        get(&err, "message")
            .as_string()
            .unwrap()
            .contains("2 of the 3")
    );
}

// ---- Verifying an export file (admin flavor): ExportVerifier ----

#[cfg(feature = "admin")]
/// The admin-signed `GET /v1/audit/export` of a gatekeeper, as bytes.
async fn audit_export(url: &str, id: &str) -> Vec<u8> {
    let req = audit_request(id, "test-admin", "read").unwrap();
    let sig = webcrypto_sign(&webcrypto_key(ADMIN_SEED).await, &req).await;
    let headers = Object::new();
    set(&headers, "Countersign-Request", req.request_header());
    set(
        &headers,
        "Countersign-Signature",
        req.signature_header(&sig).unwrap(),
    );
    let init = Object::new();
    set(&init, "headers", headers);
    let fetch: js_sys::Function = get(&js_sys::global(), "fetch").into();
    let response = settle(
        fetch
            .call2(
                &JsValue::NULL,
                &format!("{url}/v1/audit/export").into(),
                &init,
            )
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    assert_eq!(get(&response, "status").as_f64(), Some(200.0));
    let body: js_sys::Function = get(&response, "arrayBuffer").into();
    let buffer = settle(body.call0(&response).unwrap().into()).await.unwrap();
    Uint8Array::new(&buffer).to_vec()
}

#[cfg(feature = "admin")]
/// `new ExportVerifier({ keys: [gatekeeper key] })` fed `export` in `chunk`-byte
/// pieces (as `file.stream()` would give them), then `finish()`.
fn verify_export(export: &[u8], gk_key: &str, chunk: usize) -> Result<JsValue, JsValue> {
    let (key_id, public) = gk_key.split_once(':').unwrap();
    let o = Object::new();
    set(
        &o,
        "keys",
        Array::of1(&key_entry(key_id, "gatekeeper", public)),
    );
    let mut v = countersign_wasm::ExportVerifier::new(o.into()).map_err(JsValue::from)?;
    for piece in export.chunks(chunk) {
        v.push(piece).map_err(JsValue::from)?;
        assert!(v.bytes() <= export.len() as f64);
    }
    assert_eq!(v.bytes(), export.len() as f64);
    v.finish().map_err(JsValue::from)
}

#[cfg(feature = "admin")]
#[wasm_bindgen_test]
async fn an_export_file_verifies_in_chunks_and_a_tampered_one_is_refused() {
    let Some((url, id, gk_key)) = gatekeeper() else {
        return;
    };
    // An entry covered by the tree checkpoint, so that the export opens with one.
    let seq = put_covered(url, id, gk_key, "exported", b"e").await;
    let export = audit_export(url, id).await;
    let text = String::from_utf8(export.clone()).unwrap();
    let entries = text
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"entry\""))
        .count() as f64;
    let report = verify_export(&export, gk_key, export.len()).unwrap();
    assert_eq!(get(&report, "entries").as_f64(), Some(entries));
    let tree = get(&report, "treeSize").as_f64().unwrap();
    assert!(tree > seq && tree <= entries);
    assert_eq!(get(&report, "rootHash").as_string().unwrap().len(), 64);
    assert!(get(&report, "chainCheckpoints").as_f64().unwrap() >= 1.0);
    assert_eq!(get(&report, "bytes").as_f64(), Some(export.len() as f64));
    // Any chunking gives the same report.
    let whole = js_sys::JSON::stringify(&report).unwrap();
    for chunk in [1, 7, 1000, 65536] {
        let r = verify_export(&export, gk_key, chunk).unwrap();
        assert_eq!(js_sys::JSON::stringify(&r).unwrap(), whole, "chunk {chunk}");
    }

    // The export with one middle entry line removed: refused, naming the line.
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines
        .iter()
        .position(|l| l.contains("\"type\":\"entry\",\"seq\":1,"))
        .unwrap();
    let mut removed = lines.clone();
    removed.remove(middle);
    let err = verify_export(removed.join("\n").as_bytes(), gk_key, 4096).unwrap_err();
    assert_eq!(code_of(&err), "audit_chain_broken");
    let message = get(&err, "message").as_string().unwrap();
    assert!(
        message.starts_with(&format!("line {} of the export: ", middle + 1)),
        "{message}"
    );
    // Another gatekeeper's key: the tree checkpoint is refused on line 1.
    let other = format!(
        "other-key:{}",
        b64(&SigningKey::from_bytes(&[5; 32]).verifying_key().to_bytes())
    );
    let err = verify_export(&export, &other, 4096).unwrap_err();
    assert!(
        get(&err, "message")
            .as_string()
            .unwrap()
            .starts_with("line 1 of the export: "),
        "{err:?}"
    );
    // Not an export at all, and options without a gatekeeper key.
    let err = verify_export(b"<html>\n", gk_key, 4096).unwrap_err();
    assert_eq!(code_of(&err), "malformed");
    let err = countersign_wasm::ExportVerifier::new(Object::new().into()).err();
    assert_eq!(err.map(|e| e.code()).as_deref(), Some("bad_options"));

    // The log of the gatekeeper whose SQLite row was rewritten, exported: the entry
    // after the rewritten one no longer chains to it.
    let (Some(t_url), Some(t_key), Some(seq)) = (
        option_env!("COUNTERSIGN_TEST_TAMPERED_URL"),
        option_env!("COUNTERSIGN_TEST_TAMPERED_KEY"),
        option_env!("COUNTERSIGN_TEST_TAMPERED_SEQ"),
    ) else {
        return;
    };
    let tampered = audit_export(t_url, "gk.tampered").await;
    let err = verify_export(&tampered, t_key, 65536).unwrap_err();
    assert_eq!(code_of(&err), "audit_chain_broken");
    let message = get(&err, "message").as_string().unwrap();
    let next: u64 = seq.parse::<u64>().unwrap() + 1;
    assert!(
        message.contains(&format!("audit entry {next} does not chain")),
        "{message}"
    );
}
