//! The shared suite: every scenario runs once against SQLite + a local directory and
//! once against PostgreSQL + an S3 server (moto, started by scripts/services.sh).
//! Rejections are checked three ways: the error code, the audit entry, and the
//! bucket's contents read from the store directly.

// Tests may unwrap and index: a panic here is a failed test, not a denial of service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod metrics;
mod tlog;

use axum::http::StatusCode;
use common::*;
use countersign_core::signature::encode_list;
use countersign_core::text::b64;
use countersign_core::{
    BodyDigest, ByteRange, Decision, ErrorCode, Manifest, ObjectKey, Operation, Receipt, Role,
};
use countersign_gatekeeper::config::Config;
use countersign_gatekeeper::http::{AppState, gatekeeper_policy};
use metrics::*;
use object_store::ObjectStoreExt as _;
use tlog::*;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::SqliteLocal).await;
                }
            )*
        }
        mod postgres_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(b) = super::Backend::from_env() {
                        super::$name(&b).await;
                    }
                }
            )*
        }
    };
}

suite!(
    put_get_head_list_round_trip,
    range_get,
    never_overwrites,
    body_hash_mismatch_leaves_nothing,
    body_length_mismatch_leaves_nothing,
    large_body_mismatch_aborts_multipart,
    oversize_body_refused,
    transport_rejections,
    signature_and_policy_rejections,
    time_rejections,
    replay_rejected_across_instances,
    ip_and_acl_rejections,
    forwarded_for,
    key_rejections,
    request_mismatch,
    audit_unavailable_fails_closed,
    audit_api_and_chain,
    audit_search_by_group,
    list_pagination,
    forwarded_for_reads_every_line,
    repeated_headers_are_malformed,
    empty_object_round_trip,
    ip_rules_come_first,
    every_key_is_storable,
    audit_keeps_nul_bytes,
    preauth_failures_are_rate_limited,
    object_responses_cannot_run_script,
    one_key_per_key_id_across_instances,
    group_commit_replay_in_a_batch_fails_only_its_request,
    group_commit_failed_batch_fails_every_append_closed,
    group_commit_append_outlives_its_dropped_caller,
    two_ledgers_appending_concurrently_make_one_chain,
    tree_checkpoints_and_tiles,
    tree_proof_endpoint,
    tree_integrator_task_checkpoints_within_the_interval,
    tree_detects_a_rewritten_entry,
    tree_detects_a_deleted_entry,
    tree_detects_truncation,
    tree_checkpoints_in_an_object_locked_bucket,
    tree_bucket_detects_truncation_and_rollback,
    tree_bucket_without_object_lock_is_refused,
    tree_integrator_publishes_to_the_bucket_and_counts_failures,
    tree_detects_dropped_checkpoints,
    tree_detects_a_rollback_to_an_older_backup,
    tree_with_two_instances_appending_and_integrating,
    encrypted_round_trips_at_segment_edges,
    get_stops_reading_when_the_client_goes_away,
    tampered_ciphertext_is_refused,
    encrypted_get_across_pieces,
    small_damaged_objects_are_refused_before_any_byte,
    wrong_or_missing_kek,
    rotation_and_rewrap_keep_objects_readable,
    refused_uploads_leave_no_data_key,
    encrypt_existing_survives_interruptions,
    key_commands_survive_kill_9,
    metrics_count_decisions_and_pass_promtool,
    metrics_show_an_unreadable_log,
);

fn gk_policy(h: &Harness) -> countersign_core::Policy {
    gatekeeper_policy(h.state.key_id(), &h.state.public_key()).unwrap()
}

fn uploader_policy() -> countersign_core::Policy {
    let k = keys();
    let ring =
        countersign_core::Keyring::new(["v1", "v2"].iter().zip([&k.v1, &k.v2]).map(|(id, key)| {
            countersign_core::AuthorizedKey {
                key_id: countersign_core::KeyId::parse(id).unwrap(),
                role: Role::vendor(),
                public_key: countersign_core::PublicKey::from_bytes(
                    &key.verifying_key().to_bytes(),
                )
                .unwrap(),
                not_before: None,
                not_after: None,
            }
        }))
        .unwrap();
    countersign_core::Policy::new(ring, [(Role::vendor(), 2)]).unwrap()
}

/// Asserts a rejection: status, code, a signed deny receipt when the request parsed,
/// one new audit entry with the code, and an unchanged bucket.
async fn expect_denied(
    h: &Harness,
    req: axum::http::Request<axum::body::Body>,
    ip: &str,
    code: ErrorCode,
    receipt: bool,
) {
    let before_bucket = h.bucket_contents().await;
    let before = h.all_entries().await.len();
    let is_head = req.method() == axum::http::Method::HEAD;
    let r = h.send_from(req, ip).await;
    assert_eq!(
        r.status(),
        countersign_gatekeeper::error::status_of(code),
        "status for {code}"
    );
    assert_eq!(
        header(&r, "countersign-receipt").is_some(),
        receipt,
        "receipt presence for {code}"
    );
    if receipt {
        let bytes = decode_header(&r, "countersign-receipt");
        let parsed = Receipt::parse(&bytes).unwrap();
        assert_eq!(parsed.decision, Decision::Deny(code));
        gk_policy(h)
            .approve(
                &bytes,
                &header_sigs(&r, "countersign-receipt-signature"),
                parsed.decided_at,
            )
            .unwrap();
    }
    if !is_head {
        // A HEAD response carries no body on the wire; the audit entry has the code.
        assert_eq!(error_code(r).await, code.as_str());
    }
    let entries = h.all_entries().await;
    assert_eq!(entries.len(), before + 1, "one audit entry per request");
    assert_eq!(entries.last().unwrap().decision, Decision::Deny(code));
    assert_eq!(
        h.bucket_contents().await,
        before_bucket,
        "the bucket changed on {code}"
    );
}

async fn store(h: &Harness, key: &str, body: &[u8]) {
    let r = h
        .send(signed(&put(key, body).request(), body.to_vec()))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{:?}",
        String::from_utf8_lossy(&body_bytes(r).await)
    );
}

async fn put_get_head_list_round_trip(b: &Backend) {
    let h = Harness::new(b).await;
    let body = b"%PDF-1.7 a report".to_vec();
    let put_req = put("org-1/report 7.pdf", &body).request();
    let r = h.send(signed(&put_req, body.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The receipt and manifest verify under the gatekeeper's public key.
    let receipt = decode_header(&r, "countersign-receipt");
    let v = Receipt::verify(
        &receipt,
        &header_sigs(&r, "countersign-receipt-signature"),
        &h.state.config.gatekeeper_id,
        &gk_policy(&h),
        &put_req.encode(),
    )
    .unwrap();
    assert_eq!(v.receipt().decision, Decision::Allow);
    let contents = h.bucket_contents().await;
    assert_eq!(contents.len(), 2, "object and manifest: {contents:?}");

    let get_req = get("org-1/report 7.pdf").request();
    let r = h.send(signed(&get_req, vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type").unwrap(), "application/pdf");
    let manifest = decode_header(&r, "countersign-manifest");
    let m = Manifest::verify(
        &manifest,
        &header_sigs(&r, "countersign-manifest-signature"),
        &gk_policy(&h),
        &uploader_policy(),
    )
    .unwrap();
    let receipt = decode_header(&r, "countersign-receipt");
    Receipt::verify(
        &receipt,
        &header_sigs(&r, "countersign-receipt-signature"),
        &h.state.config.gatekeeper_id,
        &gk_policy(&h),
        &get_req.encode(),
    )
    .unwrap();
    let got = body_bytes(r).await;
    assert_eq!(got, body);
    m.check_object(
        &countersign_core::Bucket::parse(BUCKET).unwrap(),
        &ObjectKey::parse("org-1/report 7.pdf").unwrap(),
    )
    .unwrap();
    m.check_body(&BodyDigest::of(&got)).unwrap();

    let r = h
        .send(signed(&head("org-1/report 7.pdf").request(), vec![]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-length").unwrap(),
        body.len().to_string()
    );
    assert!(header(&r, "countersign-manifest").is_some());

    let r = h.send(signed(&list("org-1/").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "countersign-receipt").is_some());
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(v["objects"][0]["key"], "org-1/report 7.pdf");
    assert_eq!(v["objects"][0]["size"], body.len());

    let r = h
        .send(signed(&get("org-1/missing").request(), vec![]))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(&r, "countersign-receipt").is_some());
    assert_eq!(error_code(r).await, "not_found");

    // Every request above is in the audit log, allowed and denied.
    let entries = h.all_entries().await;
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].operation, b"PUT");
    assert_eq!(entries[0].bytes, body.len() as u64);
    assert_eq!(entries[0].subject, b"user-1");
    assert_eq!(entries[4].decision, Decision::Deny(ErrorCode::NotFound));

    // Metrics count them.
    let r = h
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(
        text.contains(
            "countersign_requests_total{operation=\"PUT\",bucket=\"reports\",decision=\"allow\",code=\"\"} 1"
        ),
        "{text}"
    );
}

async fn range_get(b: &Backend) {
    let h = Harness::new(b).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    store(&h, "r/bin", &body).await;
    let mut g = get("r/bin");
    g.op = Operation::Get {
        key: ObjectKey::parse("r/bin").unwrap(),
        range: Some(ByteRange::new(100, 199).unwrap()),
    };
    let mut req = signed(&g.request(), vec![]);
    req.headers_mut()
        .insert("range", "bytes=100-199".parse().unwrap());
    let r = h.send(req).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range").unwrap(), "bytes 100-199/5000");
    assert_eq!(body_bytes(r).await, body[100..200].to_vec());
    // A Range header that differs from the signed one is refused.
    let mut req = signed(&g.request(), vec![]);
    req.headers_mut()
        .insert("range", "bytes=0-4999".parse().unwrap());
    expect_denied(&h, req, "127.0.0.1", ErrorCode::RequestMismatch, true).await;
}

async fn never_overwrites(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/one", b"first").await;
    let before = h.bucket_contents().await;
    expect_denied(
        &h,
        signed(&put("a/one", b"second").request(), b"second".to_vec()),
        "127.0.0.1",
        ErrorCode::AlreadyExists,
        true,
    )
    .await;
    assert_eq!(h.bucket_contents().await, before);
    let r = h.send(signed(&get("a/one").request(), vec![])).await;
    assert_eq!(body_bytes(r).await, b"first");
}

async fn body_hash_mismatch_leaves_nothing(b: &Backend) {
    let h = Harness::new(b).await;
    let req = put("x/y", b"signed body").request();
    expect_denied(
        &h,
        signed(&req, b"other body!".to_vec()),
        "127.0.0.1",
        ErrorCode::BodyMismatch,
        true,
    )
    .await;
    assert!(h.bucket_contents().await.is_empty());
    // The key is free again: the refused upload reserved nothing.
    store(&h, "x/y", b"signed body").await;
}

async fn body_length_mismatch_leaves_nothing(b: &Backend) {
    let h = Harness::new(b).await;
    // Longer and shorter streamed bodies, without Content-Length.
    for body in [b"signed body plus".to_vec(), b"signed".to_vec()] {
        let req = put("x/len", b"signed body").request();
        let canonical = req.encode();
        let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(body))]);
        let http = axum::http::Request::put(url_of(&req))
            .header("countersign-request", b64(&canonical))
            .header("countersign-signature", vendor_sigs(&canonical, true))
            .body(axum::body::Body::from_stream(stream))
            .unwrap();
        expect_denied(&h, http, "127.0.0.1", ErrorCode::BodyMismatch, true).await;
    }
    // A Content-Length that differs from the signed length is refused before reading.
    let req = put("x/len", b"signed body").request();
    let mut http = signed(&req, b"signed body".to_vec());
    http.headers_mut()
        .insert("content-length", "3".parse().unwrap());
    expect_denied(&h, http, "127.0.0.1", ErrorCode::BodyMismatch, true).await;
    assert!(h.bucket_contents().await.is_empty());
}

async fn large_body_mismatch_aborts_multipart(b: &Backend) {
    let h = Harness::new(b).await;
    let body = vec![7u8; 12 * 1024 * 1024];
    let mut wrong = body.clone();
    *wrong.last_mut().unwrap() = 8;
    let req = put("big/file", &body).request();
    expect_denied(
        &h,
        signed(&req, wrong),
        "127.0.0.1",
        ErrorCode::BodyMismatch,
        true,
    )
    .await;
    assert!(h.bucket_contents().await.is_empty());
    // And the same size stores and reads back when it matches.
    store(&h, "big/file", &body).await;
    let r = h.send(signed(&get("big/file").request(), vec![])).await;
    assert_eq!(body_bytes(r).await.len(), body.len());
}

async fn oversize_body_refused(b: &Backend) {
    let h = Harness::new(b).await;
    let mut p = put("x/huge", b"");
    p.op = Operation::Put {
        key: ObjectKey::parse("x/huge").unwrap(),
        content_type: countersign_core::ContentType::parse("application/pdf").unwrap(),
        body: BodyDigest {
            sha256: [0; 32],
            length: 30_000_000,
        },
    };
    expect_denied(
        &h,
        signed(&p.request(), b"tiny".to_vec()),
        "127.0.0.1",
        ErrorCode::TooLarge,
        true,
    )
    .await;
}

async fn transport_rejections(b: &Backend) {
    let h = Harness::new(b).await;
    let req = get("a/b").request();
    let canonical = req.encode();
    let sigs = vendor_sigs(&canonical, false);
    // Missing headers.
    let no_headers = axum::http::Request::get("/v1/objects/reports/a/b")
        .body(axum::body::Body::empty())
        .unwrap();
    expect_denied(&h, no_headers, "127.0.0.1", ErrorCode::Malformed, false).await;
    let no_sig = axum::http::Request::get("/v1/objects/reports/a/b")
        .header("countersign-request", b64(&canonical))
        .body(axum::body::Body::empty())
        .unwrap();
    // The request decodes, so even this denial gets a receipt naming it.
    expect_denied(&h, no_sig, "127.0.0.1", ErrorCode::Malformed, true).await;
    // Garbled base64, garbled canonical form, garbled signature list.
    expect_denied(
        &h,
        raw("GET", "/v1/objects/reports/a/b", "!!!", &sigs, vec![]),
        "127.0.0.1",
        ErrorCode::Malformed,
        false,
    )
    .await;
    let mut bad = canonical.clone();
    bad.extend_from_slice(b"extra:1\n");
    expect_denied(
        &h,
        raw("GET", "/v1/objects/reports/a/b", &b64(&bad), &sigs, vec![]),
        "127.0.0.1",
        ErrorCode::NonCanonical,
        true,
    )
    .await;
    let garbled = raw(
        "GET",
        "/v1/objects/reports/a/b",
        &b64(&canonical),
        "vendor:v1",
        vec![],
    );
    expect_denied(&h, garbled, "127.0.0.1", ErrorCode::Malformed, true).await;
    // Oversize header.
    let big = "A".repeat(9000);
    expect_denied(
        &h,
        raw("GET", "/v1/objects/reports/a/b", &big, &sigs, vec![]),
        "127.0.0.1",
        ErrorCode::TooLarge,
        false,
    )
    .await;
    // DELETE does not exist, and is audited like everything else.
    expect_denied(
        &h,
        raw(
            "DELETE",
            "/v1/objects/reports/a/b",
            &b64(&canonical),
            &sigs,
            vec![],
        ),
        "127.0.0.1",
        ErrorCode::Malformed,
        true,
    )
    .await;
}

async fn signature_and_policy_rejections(b: &Backend) {
    let h = Harness::new(b).await;
    let k = keys();
    let req = get("a/b").request();
    let canonical = req.encode();
    // A signature over other bytes.
    let wrong = encode_list(&[sign(&k.v1, Role::vendor(), "v1", b"other document")]);
    expect_denied(
        &h,
        raw("GET", &url_of(&req), &b64(&canonical), &wrong, vec![]),
        "127.0.0.1",
        ErrorCode::BadSignature,
        true,
    )
    .await;
    // A key id the policy does not know.
    let unknown = encode_list(&[sign(&k.stranger, Role::vendor(), "stranger", &canonical)]);
    expect_denied(
        &h,
        raw("GET", &url_of(&req), &b64(&canonical), &unknown, vec![]),
        "127.0.0.1",
        ErrorCode::UnknownKey,
        true,
    )
    .await;
    // PUT needs two distinct vendor keys; one key twice counts once.
    let body = b"doc".to_vec();
    let p = put("a/c", &body).request();
    let pc = p.encode();
    let one = encode_list(&[
        sign(&k.v1, Role::vendor(), "v1", &pc),
        sign(&k.v1, Role::vendor(), "v1", &pc),
    ]);
    expect_denied(
        &h,
        raw("PUT", &url_of(&p), &b64(&pc), &one, body),
        "127.0.0.1",
        ErrorCode::ThresholdNotMet,
        true,
    )
    .await;
    // A customer-admin key cannot stand in for the vendor.
    let g = get("a/b").request();
    let gc = g.encode();
    let admin = encode_list(&[sign(&k.admin, Role::customer_admin(), "admin1", &gc)]);
    expect_denied(
        &h,
        raw("GET", &url_of(&g), &b64(&gc), &admin, vec![]),
        "127.0.0.1",
        ErrorCode::ThresholdNotMet,
        true,
    )
    .await;
    // Addressed to another gatekeeper.
    let mut other = get("a/b");
    other.audience = "gk.elsewhere".into();
    expect_denied(
        &h,
        signed(&other.request(), vec![]),
        "127.0.0.1",
        ErrorCode::WrongAudience,
        true,
    )
    .await;
}

async fn time_rejections(b: &Backend) {
    let h = Harness::new(b).await;
    let t = now();
    let mut expired = get("a/b");
    expired.issued_at = t - 600;
    expired.expires_at = t - 300;
    expect_denied(
        &h,
        signed(&expired.request(), vec![]),
        "127.0.0.1",
        ErrorCode::Expired,
        true,
    )
    .await;
    let mut future = get("a/b");
    future.issued_at = t + 300;
    future.expires_at = t + 600;
    expect_denied(
        &h,
        signed(&future.request(), vec![]),
        "127.0.0.1",
        ErrorCode::NotYetValid,
        true,
    )
    .await;
    let mut long = get("a/b");
    long.expires_at = t + 3600;
    expect_denied(
        &h,
        signed(&long.request(), vec![]),
        "127.0.0.1",
        ErrorCode::LifetimeTooLong,
        true,
    )
    .await;
}

async fn key_rejections(b: &Backend) {
    let h = Harness::new(b).await;
    let k = keys();
    // Key outside its validity window.
    let req = get("a/b").request();
    let c = req.encode();
    let old = encode_list(&[sign(&k.old, Role::vendor(), "old", &c)]);
    expect_denied(
        &h,
        raw("GET", &url_of(&req), &b64(&c), &old, vec![]),
        "127.0.0.1",
        ErrorCode::KeyOutsideWindow,
        true,
    )
    .await;
    // Traversal and malformed keys in the signed request: they cannot even be built
    // with the core's types, so the canonical bytes are edited by hand.
    for evil in [
        "a/../b",
        "/etc/passwd",
        "a//b",
        "a/\u{202e}b",
        ".countersign/manifests/x",
    ] {
        let template = get("a/placeholder").request().encode();
        let text = String::from_utf8(template)
            .unwrap()
            .replace("key:a/placeholder", &format!("key:{evil}"));
        let sigs = vendor_sigs(text.as_bytes(), false);
        let url = format!(
            "/v1/objects/reports/{}",
            countersign_core::names::percent_encode(evil)
        );
        // Every one decodes from base64, so the denial's receipt names its bytes.
        expect_denied(
            &h,
            raw("GET", &url, &b64(text.as_bytes()), &sigs, vec![]),
            "127.0.0.1",
            ErrorCode::InvalidKeyPath,
            true,
        )
        .await;
    }
}

async fn replay_rejected_across_instances(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    let req = signed(&get("a/b").request(), vec![]);
    let (parts, _) = req.into_parts();
    let again = || {
        let mut r = axum::http::Request::get(parts.uri.clone())
            .body(axum::body::Body::empty())
            .unwrap();
        *r.headers_mut() = parts.headers.clone();
        r
    };
    assert_eq!(h.send(again()).await.status(), StatusCode::OK);
    expect_denied(&h, again(), "127.0.0.1", ErrorCode::Replayed, true).await;
    // A second instance sharing the database refuses it too.
    let other = h.second_instance().await;
    let r = send_to(&other, again(), "127.0.0.1").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(r).await, "replayed");

    // A PUT refused once (its body did not match) used its nonce: the same signed PUT
    // with the right body is refused before its body is read, in the call that would
    // reserve the key, with one entry and nothing stored or reserved.
    let put_req = put("p/replayed", b"right").request();
    expect_denied(
        &h,
        signed(&put_req, b"wrong".to_vec()),
        "127.0.0.1",
        ErrorCode::BodyMismatch,
        true,
    )
    .await;
    expect_denied(
        &h,
        signed(&put_req, b"right".to_vec()),
        "127.0.0.1",
        ErrorCode::Replayed,
        true,
    )
    .await;
    let r = send_to(&other, signed(&put_req, b"right".to_vec()), "127.0.0.1").await;
    assert_eq!(error_code(r).await, "replayed");
    // The key was not left reserved: a fresh request stores it.
    store(&h, "p/replayed", b"right").await;
}

async fn ip_and_acl_rejections(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "public/a", b"x").await;
    // Global deny list, then the bucket's own deny list.
    expect_denied(
        &h,
        signed(&get("public/a").request(), vec![]),
        "127.0.0.2",
        ErrorCode::IpDenied,
        true,
    )
    .await;
    expect_denied(
        &h,
        signed(&get("public/a").request(), vec![]),
        "127.0.0.3",
        ErrorCode::IpDenied,
        true,
    )
    .await;
    // Uploads go through the IP rules too.
    expect_denied(
        &h,
        signed(&put("public/b", b"y").request(), b"y".to_vec()),
        "127.0.0.2",
        ErrorCode::IpDenied,
        true,
    )
    .await;
    // Group members may GET/LIST under public/ only.
    let mut staff = get("public/a");
    staff.subject = "user-staff".into();
    assert_eq!(
        h.send(signed(&staff.request(), vec![])).await.status(),
        StatusCode::OK
    );
    let mut staff_put = put("public/c", b"z");
    staff_put.subject = "user-staff".into();
    expect_denied(
        &h,
        signed(&staff_put.request(), b"z".to_vec()),
        "127.0.0.1",
        ErrorCode::AccessDenied,
        true,
    )
    .await;
    let mut staff_other = get("private/a");
    staff_other.subject = "user-staff".into();
    expect_denied(
        &h,
        signed(&staff_other.request(), vec![]),
        "127.0.0.1",
        ErrorCode::AccessDenied,
        true,
    )
    .await;
    let mut nobody = get("public/a");
    nobody.subject = "user-unknown".into();
    expect_denied(
        &h,
        signed(&nobody.request(), vec![]),
        "127.0.0.1",
        ErrorCode::AccessDenied,
        true,
    )
    .await;
    // Deny wins over allow, and a LIST that would reveal denied keys is denied.
    expect_denied(
        &h,
        signed(&put("secret/a", b"s").request(), b"s".to_vec()),
        "127.0.0.1",
        ErrorCode::AccessDenied,
        true,
    )
    .await;
    expect_denied(
        &h,
        signed(&list("").request(), vec![]),
        "127.0.0.1",
        ErrorCode::AccessDenied,
        true,
    )
    .await;
    let r = h.send(signed(&list("public/").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn forwarded_for(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    // From an untrusted peer, X-Forwarded-For is refused.
    let mut req = signed(&get("a/b").request(), vec![]);
    req.headers_mut()
        .insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
    expect_denied(&h, req, "127.0.0.5", ErrorCode::IpDenied, true).await;
    assert_eq!(h.last_entry().await.client_ip.to_string(), "127.0.0.5");
    // From the trusted proxy it names the client, whose IP rules then apply.
    let mut req = signed(&get("a/b").request(), vec![]);
    req.headers_mut()
        .insert("x-forwarded-for", "127.0.0.2".parse().unwrap());
    expect_denied(&h, req, "127.0.0.9", ErrorCode::IpDenied, true).await;
    assert_eq!(h.last_entry().await.client_ip.to_string(), "127.0.0.2");
    let mut req = signed(&get("a/b").request(), vec![]);
    req.headers_mut()
        .insert("x-forwarded-for", "127.0.0.7".parse().unwrap());
    assert_eq!(h.send_from(req, "127.0.0.9").await.status(), StatusCode::OK);
    assert_eq!(h.last_entry().await.client_ip.to_string(), "127.0.0.7");
}

async fn request_mismatch(b: &Backend) {
    let h = Harness::new(b).await;
    let req = get("a/b").request();
    let c = req.encode();
    let s = vendor_sigs(&c, false);
    for (method, url) in [
        ("GET", "/v1/objects/reports/a/c"),
        ("GET", "/v1/objects/reports/a%2Fb"),
        ("GET", "/v1/objects/other-bucket/a/b"),
        ("HEAD", "/v1/objects/reports/a/b"),
        ("PUT", "/v1/objects/reports/a/b"),
    ] {
        expect_denied(
            &h,
            raw(method, url, &b64(&c), &s, vec![]),
            "127.0.0.1",
            ErrorCode::RequestMismatch,
            true,
        )
        .await;
    }
    // A key must be spelled exactly as to_url_path: an unescaped space is refused.
    let sp = get("a/b c").request();
    let spc = sp.encode();
    let raw_req = axum::http::Request::get("/v1/objects/reports/a/b%20c")
        .header("countersign-request", b64(&spc))
        .header("countersign-signature", vendor_sigs(&spc, false))
        .body(axum::body::Body::empty())
        .unwrap();
    // "%20" is the one spelling of a space, so this reaches the index (not found).
    expect_denied(&h, raw_req, "127.0.0.1", ErrorCode::NotFound, true).await;
    let lower = axum::http::Request::get("/v1/objects/reports/a/b%2fc")
        .header("countersign-request", b64(&spc))
        .header("countersign-signature", vendor_sigs(&spc, false))
        .body(axum::body::Body::empty())
        .unwrap();
    expect_denied(&h, lower, "127.0.0.1", ErrorCode::RequestMismatch, true).await;
}

async fn audit_unavailable_fails_closed(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    let before_entries = h.all_entries().await.len();
    let before_bucket = h.bucket_contents().await;
    h.state.ledger.close().await;
    for req in [
        signed(&get("a/b").request(), vec![]),
        signed(&put("a/new", b"n").request(), b"n".to_vec()),
        raw("GET", "/v1/objects/reports/a/b", "!!", "x", vec![]),
    ] {
        let r = h.send(req).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(header(&r, "countersign-receipt").is_none());
        assert_eq!(error_code(r).await, "audit_unavailable");
    }
    let r = h
        .send(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Liveness is not readiness: the process itself is fine.
    let r = h
        .send(
            axum::http::Request::get("/healthz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.all_entries().await.len(), before_entries);
    assert_eq!(h.bucket_contents().await, before_bucket);
}

fn admin_request(h: &Harness, path: &str, signer: &str) -> axum::http::Request<axum::body::Body> {
    let mut r = list("");
    r.bucket = "countersign-audit".into();
    r.subject = "admin-1".into();
    let req = r.request();
    let c = req.encode();
    let sigs = match signer {
        "admin" => encode_list(&[sign(&h.keys.admin, Role::customer_admin(), "admin1", &c)]),
        _ => vendor_sigs(&c, false),
    };
    raw("GET", path, &b64(&c), &sigs, vec![])
}

/// `group=` selects the entries whose subject is one of the group's members in the
/// policy in force, with the other filters and paging, in both parts of the search
/// (the indexed entries and the tail the tree does not cover yet).
async fn audit_search_by_group(b: &Backend) {
    let h = Harness::new(b).await;
    let as_subject = |key: &str, subject: &str| {
        let mut r = get(key);
        r.subject = subject.into();
        signed(&r.request(), vec![])
    };
    store(&h, "a/b", b"x").await; // user-1
    for (key, subject) in [
        ("a/b", "user-1"),          // allowed
        ("public/x", "user-staff"), // allowed by the staff rule, not found
        ("a/b", "user-staff"),      // access_denied
        ("a/b", "user-2"),          // access_denied, not a member
        ("secret/s", "user-1"),     // access_denied
    ] {
        h.send(as_subject(key, subject)).await;
    }
    // Refused before the signed request is read: no subject, so in no group.
    h.send_from(as_subject("a/b", "user-1"), "127.0.0.2").await;
    let search = |q: &str| {
        let h = &h;
        let q = format!("/v1/audit/search?{q}");
        async move {
            let r = h.send(admin_request(h, &q, "admin")).await;
            assert_eq!(r.status(), StatusCode::OK, "{q}");
            serde_json::from_slice::<serde_json::Value>(&body_bytes(r).await).unwrap()
        }
    };
    let seqs = |v: &serde_json::Value| -> Vec<u64> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    let expected = |deny_only: bool| {
        let h = &h;
        async move {
            h.all_entries()
                .await
                .iter()
                .filter(|e| e.subject == b"user-1" || e.subject == b"user-staff")
                .filter(|e| !deny_only || e.decision != countersign_core::Decision::Allow)
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    // Twice: first from the un-integrated tail, then from the indexes.
    for integrated in [false, true] {
        if integrated {
            h.state.ledger.integrate(10_000).await.unwrap();
        }
        let members = expected(false).await;
        assert_eq!(members.len(), 5, "{integrated}");
        let v = search("group=radiology").await;
        assert_eq!(seqs(&v), members, "{integrated}");
        assert_eq!(
            v["group"],
            serde_json::json!({"name": "radiology", "members": ["user-1", "user-staff"]})
        );
        assert!(search("subject=user-1").await.get("group").is_none());
        // With another filter (AND), and with a subject outside the group.
        let v = search("group=radiology&decision=deny").await;
        assert_eq!(seqs(&v), expected(true).await);
        assert!(seqs(&v).len() >= 2, "{v}");
        let v = search("group=radiology&subject=user-staff").await;
        assert_eq!(v["entries"].as_array().unwrap().len(), 2, "{v}");
        assert!(seqs(&search("group=radiology&subject=user-2").await).is_empty());
        assert!(seqs(&search("group=staff&subject=user-1").await).is_empty());
        // Paging: a page at a time gives the same entries.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let v = search(&format!("group=radiology&limit=2&after_seq={after}")).await;
            paged.extend(seqs(&v));
            match v["next_after_seq"].as_u64() {
                Some(n) => after = n,
                None => break,
            }
        }
        assert_eq!(paged, members);
        // A group without members selects nothing and says so.
        let v = search("group=on-leave").await;
        assert!(seqs(&v).is_empty());
        assert_eq!(v["group"]["members"], serde_json::json!([]));
    }
    // An unknown group, or two groups, is an error, not an empty answer.
    for q in ["group=radiologie", "group=", "group=staff&group=radiology"] {
        expect_denied(
            &h,
            admin_request(&h, &format!("/v1/audit/search?{q}"), "admin"),
            "127.0.0.1",
            ErrorCode::InvalidField,
            true,
        )
        .await;
    }
    let r = h
        .send(admin_request(
            &h,
            "/v1/audit/search?group=radiologie",
            "admin",
        ))
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("group `radiologie` is not defined")
            && message.contains("on-leave, radiology, staff"),
        "{message}"
    );
    // The groups a console can offer, and their members.
    let r = h.send(admin_request(&h, "/v1/audit/groups", "admin")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"groups": [
            {"name": "on-leave", "members": []},
            {"name": "radiology", "members": ["user-1", "user-staff"]},
            {"name": "staff", "members": ["user-staff"]},
        ]})
    );
    // Group membership is policy: a vendor key can neither read it nor filter by it.
    for path in ["/v1/audit/search?group=radiology", "/v1/audit/groups"] {
        expect_denied(
            &h,
            admin_request(&h, path, "vendor"),
            "127.0.0.1",
            ErrorCode::ThresholdNotMet,
            true,
        )
        .await;
    }
}

async fn audit_api_and_chain(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    let _ = h
        .send_from(signed(&get("a/b").request(), vec![]), "127.0.0.2")
        .await;
    // Vendor keys cannot read the audit log.
    expect_denied(
        &h,
        admin_request(&h, "/v1/audit/search", "vendor"),
        "127.0.0.1",
        ErrorCode::ThresholdNotMet,
        true,
    )
    .await;
    // Customer-admin search with filters.
    let r = h
        .send(admin_request(
            &h,
            "/v1/audit/search?decision=deny&error=ip_denied&ip=127.0.0.2&key_prefix=a%2F",
            "admin",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "countersign-receipt").is_some());
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    let found = v["entries"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{v}");
    assert_eq!(found[0]["error"], "ip_denied");
    let r = h
        .send(admin_request(
            &h,
            "/v1/audit/search?subject=user-1&decision=allow",
            "admin",
        ))
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let r = h
        .send(admin_request(
            &h,
            "/v1/audit/search?from_ms=1&to_ms=2",
            "admin",
        ))
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert!(v["entries"].as_array().unwrap().is_empty());
    // Bucket, operation and key prefix: a prefix is a byte range that ends before
    // the next prefix ("a0/x" is past every key under "a/").
    store(&h, "a0/x", b"y").await;
    let search = |q: String| {
        let h = &h;
        async move {
            let r = h.send(admin_request(h, &q, "admin")).await;
            assert_eq!(r.status(), StatusCode::OK, "{q}");
            let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
            v["entries"].as_array().unwrap().clone()
        }
    };
    let keys = |found: &[serde_json::Value]| -> Vec<String> {
        found
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = search(format!("/v1/audit/search?bucket={BUCKET}&operation=PUT")).await;
    assert_eq!(keys(&found), ["a/b", "a0/x"]);
    let found = search("/v1/audit/search?operation=PUT&key_prefix=a%2F".into()).await;
    assert_eq!(keys(&found), ["a/b"]);
    let found = search(format!("/v1/audit/search?bucket={BUCKET}&key=a%2Fb")).await;
    assert_eq!(keys(&found), ["a/b", "a/b"]);
    assert!(search("/v1/audit/search?key=a%2F".into()).await.is_empty());
    let found = search(format!("/v1/audit/search?bucket={BUCKET}&key_prefix=a")).await;
    assert_eq!(keys(&found), ["a/b", "a/b", "a0/x"]);
    let found = search("/v1/audit/search?bucket=countersign-audit&operation=AUDIT".into()).await;
    assert!(found.len() >= 4, "{found:?}");
    assert!(
        found
            .iter()
            .all(|e| e["bucket"] == "countersign-audit" && e["operation"] == "AUDIT")
    );
    assert!(
        search("/v1/audit/search?bucket=nope".into())
            .await
            .is_empty()
    );
    assert!(
        search(format!("/v1/audit/search?operation=HEAD&bucket={BUCKET}"))
            .await
            .is_empty()
    );
    expect_denied(
        &h,
        admin_request(&h, "/v1/audit/search?operation=get", "admin"),
        "127.0.0.1",
        ErrorCode::InvalidField,
        true,
    )
    .await;
    expect_denied(
        &h,
        admin_request(&h, "/v1/audit/search?decision=maybe", "admin"),
        "127.0.0.1",
        ErrorCode::InvalidField,
        true,
    )
    .await;

    // Export verifies; any edit, removal or reordering is caught. The tree is
    // integrated first, so the export opens with a signed tree checkpoint.
    h.state.ledger.integrate(10_000).await.unwrap();
    let r = h.send(admin_request(&h, "/v1/audit/export", "admin")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    let policy = gk_policy(&h);
    let log_key =
        countersign_core::signature::PublicKey::from_bytes(&h.state.public_key()).unwrap();
    let check = |ls: &[String]| {
        let text = ls.join("\n");
        countersign_gatekeeper::audit::verify_export(text.as_bytes(), &policy, log_key)
    };
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let report = check(&lines).unwrap();
    assert!(report.entries >= 7 && report.checkpoints >= 2, "{report:?}");
    assert!(
        lines[0].contains("\"type\":\"tree_checkpoint\""),
        "{}",
        lines[0]
    );
    assert!(report.tree_size.is_some_and(|n| n >= 7), "{report:?}");
    let entry_at = |seq: u64| {
        lines
            .iter()
            .position(|l| {
                l.contains("\"type\":\"entry\"") && l.contains(&format!("\"seq\":{seq},"))
            })
            .unwrap()
    };
    // A readable field edited.
    let mut altered = lines.clone();
    altered[entry_at(0)] = altered[entry_at(0)].replace("\"bytes\":1,", "\"bytes\":9,");
    assert_ne!(altered, lines);
    assert!(check(&altered).is_err());
    // An entry removed, two swapped, the tree checkpoint dropped and the last entry
    // cut (the final chain checkpoint then points past the end).
    let mut removed = lines.clone();
    removed.remove(entry_at(1));
    assert!(check(&removed).is_err());
    let mut reordered = lines.clone();
    reordered.swap(entry_at(1), entry_at(2));
    assert!(check(&reordered).is_err());
    let truncated: Vec<String> = lines[1..]
        .iter()
        .filter(|l| !l.contains(&format!("\"seq\":{},", report.entries - 1)))
        .cloned()
        .collect();
    assert!(
        check(&truncated).is_err(),
        "removing the last entry is caught by the final checkpoint"
    );
    // The tree checkpoint alone catches a cut tail, even with every chain checkpoint
    // dropped.
    let tree_size = report.tree_size.unwrap();
    let cut: Vec<String> = lines[..entry_at(tree_size - 1)]
        .iter()
        .filter(|l| !l.contains("\"type\":\"checkpoint\""))
        .cloned()
        .collect();
    assert!(check(&cut).unwrap_err().contains("entries were removed"));
}

async fn list_pagination(b: &Backend) {
    let h = Harness::new(b).await;
    for i in 0..5 {
        store(&h, &format!("p/{i}"), b"x").await;
    }
    store(&h, "q/0", b"x").await;
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let req = list("p/").request();
        let mut url = url_of(&req);
        url.push_str("&limit=2");
        if !after.is_empty() {
            url.push_str(&format!("&after={after}"));
        }
        let mut http = signed(&req, vec![]);
        *http.uri_mut() = url.parse().unwrap();
        let r = h.send(http).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
        // The signed listing says exactly what the convenience members say.
        let listing =
            countersign_core::text::parse_b64(v["listing"].as_str().unwrap(), "l").unwrap();
        let sigs =
            countersign_core::signature::parse_list(v["listing_signature"].as_str().unwrap())
                .unwrap();
        let verified =
            countersign_core::Listing::verify(&listing, &sigs, &gk_policy(&h), &req.encode())
                .unwrap();
        let sent_after = (!after.is_empty()).then(|| {
            ObjectKey::parse(&countersign_core::names::percent_decode(&after, "after").unwrap())
                .unwrap()
        });
        verified.check_after(sent_after.as_ref()).unwrap();
        let signed_keys: Vec<&str> = verified
            .listing()
            .objects()
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        let plain_keys: Vec<&str> = v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["key"].as_str().unwrap())
            .collect();
        assert_eq!(signed_keys, plain_keys);
        for o in v["objects"].as_array().unwrap() {
            seen.push(o["key"].as_str().unwrap().to_owned());
        }
        match v["next_after"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["p/0", "p/1", "p/2", "p/3", "p/4"]);
    let req = list("p/").request();
    let mut http = signed(&req, vec![]);
    *http.uri_mut() = format!("{}&limit=0", url_of(&req)).parse().unwrap();
    expect_denied(&h, http, "127.0.0.1", ErrorCode::InvalidField, true).await;
}

/// A proxy that adds its own `X-Forwarded-For` line (HAProxy does) must not let the
/// client's forged first line decide: every line counts, walked from the right.
async fn forwarded_for_reads_every_line(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    let mut req = signed(&get("a/b").request(), vec![]);
    // The client forged 127.0.0.1; the trusted proxy saw 127.0.0.2 (denied).
    req.headers_mut()
        .append("x-forwarded-for", "127.0.0.1".parse().unwrap());
    req.headers_mut()
        .append("x-forwarded-for", "127.0.0.2".parse().unwrap());
    expect_denied(&h, req, "127.0.0.9", ErrorCode::IpDenied, true).await;
    assert_eq!(h.last_entry().await.client_ip.to_string(), "127.0.0.2");
}

async fn repeated_headers_are_malformed(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    // Two request headers name no one request (no receipt); two signature headers
    // still leave the request known.
    for (name, receipt) in [
        ("countersign-request", false),
        ("countersign-signature", true),
    ] {
        let mut req = signed(&get("a/b").request(), vec![]);
        let first = req.headers().get(name).unwrap().clone();
        req.headers_mut().append(name, first);
        expect_denied(&h, req, "127.0.0.1", ErrorCode::Malformed, receipt).await;
    }
}

async fn empty_object_round_trip(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "empty/file", b"").await;
    let r = h.send(signed(&get("empty/file").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    assert!(body_bytes(r).await.is_empty());
    let r = h.send(signed(&head("empty/file").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// IP rules are checked before anything is parsed or verified: a denied address
/// learns nothing about its signature and burns no nonce.
async fn ip_rules_come_first(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/b", b"x").await;
    let req = get("a/b").request();
    let canonical = req.encode();
    let k = keys();
    let forged = encode_list(&[sign(&k.stranger, Role::vendor(), "v1", &canonical)]);
    // Bad signature and denied address: the address decides.
    expect_denied(
        &h,
        raw("GET", &url_of(&req), &b64(&canonical), &forged, vec![]),
        "127.0.0.2",
        ErrorCode::IpDenied,
        true,
    )
    .await;
    // The same, correctly signed request from a denied address does not burn its
    // nonce: from an allowed address it then succeeds.
    expect_denied(
        &h,
        signed(&req, vec![]),
        "127.0.0.2",
        ErrorCode::IpDenied,
        true,
    )
    .await;
    let r = h.send(signed(&req, vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Every key the protocol allows is storable on every backend: a key and a key
/// below it, and long segments.
async fn every_key_is_storable(b: &Backend) {
    let h = Harness::new(b).await;
    let long = "s".repeat(300);
    let keys_ = ["p/x", "p/x/y", &format!("p/{long}"), "p/x/y/z"];
    for k in keys_ {
        store(&h, k, k.as_bytes()).await;
    }
    for k in keys_ {
        let r = h.send(signed(&get(k).request(), vec![])).await;
        assert_eq!(r.status(), StatusCode::OK, "{k}");
        assert_eq!(body_bytes(r).await, k.as_bytes());
    }
    // Storage holds opaque names only: no key appears in it.
    for path in h.bucket_contents().await {
        assert!(!path.contains("p/x"), "{path}");
    }
}

/// A NUL in the URL is recorded (PostgreSQL's TEXT refuses NUL; the log stores
/// bytes), so the request is refused *with* its audit entry.
async fn audit_keeps_nul_bytes(b: &Backend) {
    let h = Harness::new(b).await;
    let req = get("a/b").request();
    let canonical = req.encode();
    expect_denied(
        &h,
        raw(
            "GET",
            "/v1/objects/reports/a%00b",
            &b64(&canonical),
            &vendor_sigs(&canonical, false),
            vec![],
        ),
        "127.0.0.1",
        ErrorCode::RequestMismatch,
        true,
    )
    .await;
}

/// Failures before verified signatures are limited per client address (429, still
/// recorded); other addresses are not affected.
async fn preauth_failures_are_rate_limited(b: &Backend) {
    let h = Harness::new(b).await;
    let burst = h.config.limits.preauth_failure_burst;
    let garbage = || raw("GET", "/v1/objects/reports/a/b", "!!!", "x", vec![]);
    for _ in 0..burst {
        let r = h.send_from(garbage(), "127.0.0.7").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    // The allowance refills over time, so keep failing until it runs out.
    let mut tries = 0;
    let r = loop {
        let before = h.all_entries().await.len();
        let r = h.send_from(garbage(), "127.0.0.7").await;
        assert_eq!(
            h.all_entries().await.len(),
            before + 1,
            "every request is logged"
        );
        if r.status() != StatusCode::BAD_REQUEST || tries > 500 {
            break r;
        }
        tries += 1;
    };
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(r).await, "rate_limited");
    assert_eq!(
        h.last_entry().await.decision,
        Decision::Deny(ErrorCode::RateLimited)
    );
    // Another address, and good requests, are unaffected.
    store(&h, "a/b", b"x").await;
}

async fn object_responses_cannot_run_script(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "a/page.html", b"<script>alert(1)</script>").await;
    let r = h.send(signed(&get("a/page.html").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        header(&r, "content-security-policy").as_deref(),
        Some("sandbox")
    );
}

/// Instances sharing a database must sign the log with one key per key id: a second
/// key under the same id is refused at start-up, naming the problem.
async fn one_key_per_key_id_across_instances(b: &Backend) {
    let h = Harness::new(b).await;
    let mut config = h.config.clone();
    config.key_path = h.dir.join("another.key");
    let e = countersign_gatekeeper::server::build_state(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("another public key"), "{e}");
}

// --- the append sequencer (group commit) ----------------------------------------------

/// Takes the audit log's write lock from outside the gatekeeper (SQLite: a write
/// transaction; PostgreSQL: the append advisory lock), so that the sequencer's next
/// batch waits and the appends made meanwhile queue up into one batch.
async fn hold_append_lock(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let sql = if url.starts_with("sqlite:") {
        "BEGIN IMMEDIATE"
    } else {
        "SELECT pg_advisory_lock(727470001)"
    };
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c
}

async fn release_append_lock(url: &str, mut c: sqlx::AnyConnection) {
    let sql = if url.starts_with("sqlite:") {
        "COMMIT"
    } else {
        "SELECT pg_advisory_unlock(727470001)"
    };
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

fn ledger_draft(key: &str) -> countersign_gatekeeper::ledger::AuditDraft {
    countersign_gatekeeper::ledger::AuditDraft {
        time_ms: now() * 1000,
        request_id: b"suite".to_vec(),
        client_ip: "127.0.0.1".parse().unwrap(),
        operation: b"GET".to_vec(),
        bucket: b"reports".to_vec(),
        key: key.as_bytes().to_vec(),
        subject: b"user-1".to_vec(),
        decision: Decision::Allow,
        bytes: 0,
        latency_us: 1,
        request: countersign_core::audit::CapturedHeader::whole(b"r"),
        signatures: countersign_core::audit::CapturedHeader::whole(b"s"),
    }
}

fn nonce_use(byte: u8) -> Option<countersign_gatekeeper::ledger::NonceUse> {
    Some(countersign_gatekeeper::ledger::NonceUse {
        nonce: [byte; 16],
        until: now() + 600,
    })
}

/// Starts an append that opens a batch stuck behind the held lock; the appends made
/// after it queue up into the next batch.
async fn stuck_batch(
    h: &Harness,
) -> (
    countersign_gatekeeper::ledger::Ledger,
    sqlx::AnyConnection,
    tokio::task::JoinHandle<countersign_core::audit::AuditEntry>,
) {
    let ledger = h.ledger().await;
    let lock = hold_append_lock(h.config.database_url.expose()).await;
    let first = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .append(ledger_draft("first"), nonce_use(1))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    (ledger, lock, first)
}

async fn group_commit_replay_in_a_batch_fails_only_its_request(b: &Backend) {
    let h = Harness::new(b).await;
    let (ledger, lock, first) = stuck_batch(&h).await;
    let url = h.config.database_url.expose().to_owned();
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        release_append_lock(&url, lock).await;
    };
    // Queued in this order while the first batch waits: one batch of four, the third
    // reusing the second's nonce and the fourth reusing the stuck batch's.
    let ((b2, b3, b4, b5), ()) = tokio::join!(
        async {
            tokio::join!(
                ledger.append(ledger_draft("b"), nonce_use(2)),
                ledger.append(ledger_draft("c"), nonce_use(2)),
                ledger.append(ledger_draft("d"), nonce_use(1)),
                ledger.append(ledger_draft("e"), nonce_use(3)),
            )
        },
        release
    );
    let first = first.await.unwrap();
    let (b2, b3, b4, b5) = (b2.unwrap(), b3.unwrap(), b4.unwrap(), b5.unwrap());
    assert_eq!(first.decision, Decision::Allow);
    assert_eq!(b2.decision, Decision::Allow);
    assert_eq!(b3.decision, Decision::Deny(ErrorCode::Replayed));
    assert_eq!(b4.decision, Decision::Deny(ErrorCode::Replayed));
    assert_eq!(b5.decision, Decision::Allow);
    let seqs = [first.seq, b2.seq, b3.seq, b4.seq, b5.seq];
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // The stored log is one chain, and holds each entry as returned.
    let entries = h.all_entries().await;
    countersign_core::audit::verify_chain(&entries, 0, countersign_core::audit::GENESIS).unwrap();
    for e in [&first, &b2, &b3, &b4, &b5] {
        assert_eq!(&entries[usize::try_from(e.seq).unwrap()], e);
    }
    ledger.close().await;
}

async fn group_commit_failed_batch_fails_every_append_closed(b: &Backend) {
    let h = Harness::new(b).await;
    // An entry for key `poison` fails its batch: on PostgreSQL at COMMIT (a deferred
    // constraint trigger), on SQLite at the INSERT (SQLite has no deferred triggers).
    let poison: &[&'static str] = if h.config.database_url.expose().starts_with("sqlite:") {
        &[
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN NEW.object_key = X'706F69736F6E'
           BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        ]
    } else {
        &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             IF NEW.object_key = '\\x706f69736f6e'::bytea THEN RAISE EXCEPTION 'poisoned'; END IF;
             RETURN NULL; END $$",
            "CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON audit_log DEFERRABLE INITIALLY
             DEFERRED FOR EACH ROW EXECUTE FUNCTION poison()",
        ]
    };
    {
        use sqlx::Connection as _;
        let mut c = sqlx::AnyConnection::connect(h.config.database_url.expose())
            .await
            .unwrap();
        for sql in poison {
            sqlx::raw_sql(*sql).execute(&mut c).await.unwrap();
        }
    }
    let (ledger, lock, first) = stuck_batch(&h).await;
    let url = h.config.database_url.expose().to_owned();
    let ((b2, b3, b4), ()) = tokio::join!(
        async {
            tokio::join!(
                ledger.append(ledger_draft("b"), nonce_use(2)),
                ledger.append(ledger_draft("poison"), nonce_use(3)),
                ledger.append(ledger_draft("d"), nonce_use(4)),
            )
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            release_append_lock(&url, lock).await;
        }
    );
    let first = first.await.unwrap();
    assert!(
        b2.is_err() && b3.is_err() && b4.is_err(),
        "{b2:?} {b3:?} {b4:?}"
    );
    // Nothing of the failed batch was written: not its entries, not its nonces.
    let entries = h.all_entries().await;
    assert_eq!(entries.last(), Some(&first));
    let again = ledger
        .append(ledger_draft("b"), nonce_use(2))
        .await
        .unwrap();
    assert_eq!(again.decision, Decision::Allow);
    assert_eq!(again.seq, first.seq + 1);
    ledger.close().await;
}

async fn group_commit_append_outlives_its_dropped_caller(b: &Backend) {
    let h = Harness::new(b).await;
    let (ledger, lock, first) = stuck_batch(&h).await;
    // The caller gives up while its append waits for the stuck batch.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        ledger.append(ledger_draft("dropped"), nonce_use(2)),
    )
    .await;
    assert!(gave_up.is_err(), "the append should still be waiting");
    release_append_lock(h.config.database_url.expose(), lock).await;
    first.await.unwrap();
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = h.all_entries().await;
        if entries.iter().any(|e| e.key == b"dropped") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let dropped = entries
        .iter()
        .find(|e| e.key == b"dropped")
        .expect("the entry was not written");
    assert_eq!(dropped.decision, Decision::Allow);
    // Its nonce was recorded with it.
    let replay = ledger
        .append(ledger_draft("again"), nonce_use(2))
        .await
        .unwrap();
    assert_eq!(replay.decision, Decision::Deny(ErrorCode::Replayed));
    ledger.close().await;
}

/// Two ledgers on one database (two pools and two sequencers, as two gatekeeper
/// instances) append concurrently for a few seconds, each also racing the other for
/// some nonces: the log is one gap-free chain that verifies, holds every acknowledged
/// entry as returned, and lets each contested nonce through exactly once.
async fn two_ledgers_appending_concurrently_make_one_chain(b: &Backend) {
    let h = Harness::new(b).await;
    let (one, two) = (h.ledger().await, h.ledger().await);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut tasks = Vec::new();
    for (l, ledger) in [&one, &two].into_iter().enumerate() {
        for t in 0..8u32 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0u32;
                while tokio::time::Instant::now() < until {
                    // Every fourth append reuses a nonce the other ledger's task of the
                    // same number also uses; the others are this task's own.
                    let mut nonce = [0u8; 16];
                    if i.is_multiple_of(4) {
                        nonce[..4].copy_from_slice(&t.to_be_bytes());
                        nonce[4..8].copy_from_slice(&i.to_be_bytes());
                        nonce[15] = 0xcc;
                    } else {
                        nonce[..4].copy_from_slice(&t.to_be_bytes());
                        nonce[4..8].copy_from_slice(&i.to_be_bytes());
                        nonce[8] = u8::try_from(l + 1).unwrap();
                    }
                    let nonce = countersign_gatekeeper::ledger::NonceUse {
                        nonce,
                        until: now() + 600,
                    };
                    let entry = ledger
                        .append(ledger_draft(&format!("k{l}-{t}-{i}")), Some(nonce))
                        .await
                        .unwrap();
                    acked.push((nonce.nonce, entry));
                    i += 1;
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let entries = h.all_entries().await;
    countersign_core::audit::verify_chain(&entries, 0, countersign_core::audit::GENESIS).unwrap();
    assert_eq!(
        entries.len(),
        acked.len(),
        "every acknowledged append, no other"
    );
    for (_, e) in &acked {
        assert_eq!(&entries[usize::try_from(e.seq).unwrap()], e);
    }
    for l in 0..2 {
        let prefix = format!("k{l}-");
        assert!(
            entries
                .iter()
                .filter(|e| e.key.starts_with(prefix.as_bytes()))
                .count()
                > 16,
            "ledger {l} made too little progress"
        );
    }
    let mut uses = std::collections::HashMap::<[u8; 16], (u32, u32)>::new();
    for (nonce, e) in &acked {
        let u = uses.entry(*nonce).or_default();
        match e.decision {
            Decision::Allow => u.0 += 1,
            Decision::Deny(ErrorCode::Replayed) => u.1 += 1,
            other => panic!("unexpected decision {other:?}"),
        }
    }
    assert!(
        uses.values().all(|&(allowed, _)| allowed == 1),
        "a nonce allowed twice or never"
    );
    assert!(
        uses.values().any(|&(_, replayed)| replayed > 0),
        "no contested nonce was refused"
    );
    one.close().await;
    two.close().await;
}

/// The PostgreSQL sequencer's head re-read and its recovery from a connection killed
/// mid-batch: two ledgers on one database append concurrently (each batch of one
/// finds the head moved by the other), while every database connection but the
/// killer's is terminated three times (a batch in flight is cut: its statement rolls
/// back, its callers are told it failed). The log stays one gap-free chain that holds
/// every acknowledged entry as returned, and both ledgers append again after each cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sequencer_survives_connections_killed_mid_batch() {
    use std::sync::{Arc, Mutex};
    let Some(b) = Backend::from_env() else {
        return;
    };
    let h = Harness::new(&b).await;
    let (one, two) = (h.ledger().await, h.ledger().await);
    let start = tokio::time::Instant::now();
    let until = start + std::time::Duration::from_secs(4);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (l, ledger) in [&one, &two].into_iter().enumerate() {
        for t in 0..8u32 {
            let (ledger, acked) = (ledger.clone(), Arc::clone(&acked));
            tasks.push(tokio::spawn(async move {
                let mut i = 0u32;
                while tokio::time::Instant::now() < until {
                    let mut nonce = [0u8; 16];
                    nonce[..4].copy_from_slice(&t.to_be_bytes());
                    nonce[4..8].copy_from_slice(&i.to_be_bytes());
                    nonce[8] = u8::try_from(l + 1).unwrap();
                    let nonce = countersign_gatekeeper::ledger::NonceUse {
                        nonce,
                        until: now() + 600,
                    };
                    let draft = ledger_draft(&format!("k{l}-{t}-{i}"));
                    if let Ok(entry) = ledger.append(draft, Some(nonce)).await {
                        assert_eq!(entry.decision, Decision::Allow);
                        acked
                            .lock()
                            .unwrap()
                            .push((tokio::time::Instant::now(), l, entry));
                    }
                    i += 1;
                }
            }));
        }
    }
    sqlx::any::install_default_drivers();
    let killer = sqlx::AnyPool::connect(h.config.database_url.expose())
        .await
        .unwrap();
    let mut kills = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let killed = sqlx::query(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&killer)
        .await
        .unwrap();
        assert!(sqlx::Row::get::<i64, _>(&killed, 0) > 0, "nothing to kill");
        kills.push(tokio::time::Instant::now());
    }
    killer.close().await;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let entries = h.all_entries().await;
    countersign_core::audit::verify_chain(&entries, 0, countersign_core::audit::GENESIS).unwrap();
    for (_, _, e) in &acked {
        assert_eq!(
            entries.get(usize::try_from(e.seq).unwrap()),
            Some(e),
            "an acknowledged entry is lost or changed"
        );
    }
    for kill in &kills {
        for l in 0..2 {
            assert!(
                acked.iter().any(|(at, who, _)| at > kill && *who == l),
                "ledger {l} appended nothing after a cut"
            );
        }
    }
    one.close().await;
    two.close().await;
}

/// Sequential and index scans PostgreSQL counted on `tables`, once every connection
/// to the database but `pool`'s one has ended (a backend publishes its counts when it
/// exits; while it lives, up to 10 s late).
async fn pg_scans(pool: &sqlx::AnyPool, tables: [&str; 2]) -> [(i64, i64); 2] {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let open: Vec<(String, String)> = sqlx::query_as(
            "SELECT COALESCE(backend_type, ''), COALESCE(query, '') FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if open.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "connections left open: {open:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut counts = [(0, 0); 2];
    for (count, table) in counts.iter_mut().zip(tables) {
        let row = sqlx::query(
            "SELECT COALESCE(seq_scan, 0), COALESCE(idx_scan, 0) FROM pg_stat_user_tables
             WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        *count = (sqlx::Row::get(&row, 0), sqlx::Row::get(&row, 1));
    }
    counts
}

/// The PostgreSQL sequencer's appends never read the `nonces` table but for the
/// first batch (written in the locked transaction, whose `ON CONFLICT` probes the
/// primary key once): a used nonce is found by that key on insertion, so the cost
/// does not grow with the recorded nonces, whatever plan PostgreSQL caches. They read
/// `audit_log` only through its index, and a used nonce still makes its entry a
/// `replayed` denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_do_not_scan_the_nonces() {
    let Some(b) = Backend::from_env() else {
        return;
    };
    let h = Harness::new(&b).await;
    // Only the ledgers below use the database.
    h.state.ledger.close().await;
    sqlx::any::install_default_drivers();
    let stats = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(h.config.database_url.expose())
        .await
        .unwrap();
    let tables = ["nonces", "audit_log"];
    h.ledger().await.close().await;
    let before = pg_scans(&stats, tables).await;
    let ledger = h.ledger().await;
    let first = ledger
        .append(ledger_draft("first"), nonce_use(0))
        .await
        .unwrap();
    assert_eq!(first.decision, Decision::Allow);
    // 16 concurrent appenders, 25 appends each: batches of many entries, well below
    // the 1,024 appends after which the expired nonces are swept.
    let tasks: Vec<_> = (0..16u8)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..25u8 {
                    let mut nonce = [t; 16];
                    nonce[0] = 0xa0;
                    nonce[15] = i;
                    let fresh = countersign_gatekeeper::ledger::NonceUse {
                        nonce,
                        until: now() + 600,
                    };
                    let entry = ledger
                        .append(ledger_draft(&format!("k{t}-{i}")), Some(fresh))
                        .await
                        .unwrap();
                    assert_eq!(entry.decision, Decision::Allow);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    ledger.close().await;
    drop(ledger);
    let [nonces, log] = pg_scans(&stats, tables).await;
    assert_eq!(nonces.0, before[0].0, "appends scanned the nonces table");
    assert!(
        nonces.1 - before[0].1 <= 1,
        "appends read the nonces table through an index {} times",
        nonces.1 - before[0].1
    );
    assert_eq!(log.0, before[1].0, "appends scanned audit_log sequentially");
    let ledger = h.ledger().await;
    let replay = ledger
        .append(ledger_draft("again"), nonce_use(0))
        .await
        .unwrap();
    assert_eq!(replay.decision, Decision::Deny(ErrorCode::Replayed));
    ledger.close().await;
    let entries = h.all_entries().await;
    assert_eq!(entries.len(), 402);
    countersign_core::audit::verify_chain(&entries, 0, countersign_core::audit::GENESIS).unwrap();
    stats.close().await;
}

// --- encryption at rest -------------------------------------------------------------

const SEG: usize = countersign_core::at_rest::SEGMENT_BYTES;
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";
const SECRET_NAME: &str = "Jane-Doe-Patient-Name";

/// A body of `n` bytes that repeats the plaintext marker.
fn marked(n: usize) -> Vec<u8> {
    MARKER.iter().copied().cycle().take(n).collect()
}

/// The bytes of one stored file, read from the store itself.
async fn read_stored(h: &Harness, path: &str) -> Vec<u8> {
    match &h.bucket {
        BucketView::Dir(d) => std::fs::read(d.join(path)).unwrap(),
        BucketView::S3(store) => store
            .get(&object_store::path::Path::from(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    }
}

/// Replaces one stored file behind the gatekeeper's back (an attacker with the
/// bucket's credentials).
async fn write_stored(h: &Harness, path: &str, bytes: Vec<u8>) {
    match &h.bucket {
        BucketView::Dir(d) => std::fs::write(d.join(path), bytes).unwrap(),
        BucketView::S3(store) => {
            store
                .put(&object_store::path::Path::from(path), bytes.into())
                .await
                .unwrap();
        }
    }
}

/// The stored object file of `key` (through the index).
async fn object_file(h: &Harness, key: &str) -> String {
    let l = h.ledger().await;
    let o = l.object(BUCKET, key).await.unwrap().unwrap();
    l.close().await;
    format!("objects/{}", o.storage_name)
}

async fn get_range(
    h: &Harness,
    key: &str,
    first: u64,
    last: u64,
) -> axum::http::Response<axum::body::Body> {
    let mut g = get(key);
    g.op = Operation::Get {
        key: ObjectKey::parse(key).unwrap(),
        range: Some(ByteRange::new(first, last).unwrap()),
    };
    let mut req = signed(&g.request(), vec![]);
    req.headers_mut()
        .insert("range", format!("bytes={first}-{last}").parse().unwrap());
    h.send(req).await
}

/// Round trips at the segment edges and a multipart-sized object, ranged reads
/// across segment edges, and a scan of every stored byte for plaintext and key names.
async fn encrypted_round_trips_at_segment_edges(b: &Backend) {
    let h = Harness::new(b).await;
    let sizes = [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 9 << 20];
    for n in sizes {
        let key = format!("{SECRET_NAME}/{n}");
        let body = marked(n);
        store(&h, &key, &body).await;
        let r = h.send(signed(&get(&key).request(), vec![])).await;
        assert_eq!(r.status(), StatusCode::OK, "{n}");
        assert_eq!(body_bytes(r).await, body, "size {n}");
        // Stored: header + body + one tag per segment, nothing more.
        let stored = read_stored(&h, &object_file(&h, &key).await).await;
        assert_eq!(
            stored.len() as u64,
            countersign_core::at_rest::stored_length(n as u64),
            "{n}"
        );
    }
    let key = format!("{SECRET_NAME}/{}", 3 * SEG);
    let body = marked(3 * SEG);
    let s = SEG as u64;
    for (first, last) in [
        (0, 0),
        (s - 1, s),
        (s, 2 * s - 1),
        (s - 10, 2 * s + 10),
        (3 * s - 1, 3 * s - 1),
    ] {
        let r = get_range(&h, &key, first, last).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            body_bytes(r).await,
            body[first as usize..=last as usize].to_vec(),
            "{first}-{last}"
        );
    }
    // Every byte the store holds: no plaintext marker, no key name, no KEK id.
    let contents = h.bucket_contents().await;
    assert!(contents.len() >= 2 * sizes.len(), "{contents:?}");
    for path in contents {
        assert!(!path.contains(SECRET_NAME), "{path}");
        let bytes = read_stored(&h, &path).await;
        for needle in [MARKER, &MARKER[..12], b"reports-1"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{path} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Open files of this process under the bucket's `objects/` folder (a local store).
fn open_object_files(h: &Harness) -> usize {
    let BucketView::Dir(dir) = &h.bucket else {
        return 0;
    };
    let objects = dir.join("objects");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&objects))
        .count()
}

/// Sends a GET over a real socket, reads its head and the first bytes of its body,
/// then stops reading (the server blocks on a full socket) and returns the socket.
async fn start_get(
    port: u16,
    request: &countersign_core::Request,
    range: Option<(u64, u64)>,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let c = request.encode();
    let range = range.map_or(String::new(), |(a, b)| format!("range: bytes={a}-{b}\r\n"));
    let text = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n{range}countersign-request: {}\r\ncountersign-signature: {}\r\n\r\n",
        url_of(request),
        b64(&c),
        vendor_sigs(&c, false)
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(text.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    while got.len() < 256 * 1024 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let status = if range.is_empty() { "200" } else { "206" };
    assert!(
        got.starts_with(format!("HTTP/1.1 {status}").as_bytes()),
        "{}",
        String::from_utf8_lossy(&got[..200])
    );
    s
}

/// A client that goes away mid-body (whole or ranged GET, encrypted or not) stops
/// the GET's read-ahead task: no task, no open object file, and so no store
/// response body (the task owns it) is left behind.
async fn get_stops_reading_when_the_client_goes_away(b: &Backend) {
    use countersign_gatekeeper::server::serve;
    let h = Harness::new(b).await;
    let (plain_state, _) =
        countersign_gatekeeper::server::build_state(encryption_config(&h, "enabled = false"))
            .await
            .unwrap();
    // Far more than the read-ahead plus both sockets' buffers can hold.
    let body = marked(19 << 20);
    store(&h, "gone/encrypted", &body).await;
    let r = send_to(
        &plain_state,
        signed(&put("gone/plain", &body).request(), body.clone()),
        "127.0.0.1",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for (state, key) in [(&h.state, "gone/encrypted"), (&plain_state, "gone/plain")] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(state.clone(), listener));
        for range in [None, Some((3_000_000, 18_000_000))] {
            let mut g = get(key);
            g.op = Operation::Get {
                key: ObjectKey::parse(key).unwrap(),
                range: range.map(|(a, b)| ByteRange::new(a, b).unwrap()),
            };
            let socket = start_get(port, &g.request(), range).await;
            // The client stalls: the task waits with its piece ready, holding the file.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert_eq!(state.storage.gets_in_flight(), 1, "{key} {range:?}");
            if matches!(h.bucket, BucketView::Dir(_)) {
                assert_eq!(open_object_files(&h), 1, "{key} {range:?}");
            }
            drop(socket);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while state.storage.gets_in_flight() > 0 || open_object_files(&h) > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{key} {range:?}: {} read-ahead tasks and {} object files left",
                    state.storage.gets_in_flight(),
                    open_object_files(&h)
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        server.abort();
    }
}

/// A flipped byte, a truncated object, or another object's bytes under this name:
/// refused with `stored_object_tampered` and audited, no byte of the bad segment out.
async fn tampered_ciphertext_is_refused(b: &Backend) {
    let h = Harness::new(b).await;
    let body = marked(3 * SEG);
    store(&h, "t/a", &body).await;
    store(&h, "t/b", &body).await;
    let file = object_file(&h, "t/a").await;
    let honest = read_stored(&h, &file).await;
    let tampered_code = |r: axum::http::Response<axum::body::Body>| async move {
        let status = r.status();
        let code = error_code(r).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{code}");
        code
    };
    // A flipped byte in segment 0: the GET is refused before any byte, and audited.
    let mut t = honest.clone();
    t[24 + 100] ^= 1;
    write_stored(&h, &file, t).await;
    let r = h.send(signed(&get("t/a").request(), vec![])).await;
    assert_eq!(tampered_code(r).await, "stored_object_tampered");
    assert_eq!(
        h.last_entry().await.decision,
        Decision::Deny(ErrorCode::StoredObjectTampered)
    );
    // Segment 1 is intact: a range inside it still reads.
    let r = get_range(&h, "t/a", s64(SEG), s64(SEG) + 9).await;
    assert_eq!(body_bytes(r).await, body[SEG..SEG + 10].to_vec());
    // A flipped byte in the last segment: a range there is refused; a whole GET
    // stops before it (two good segments, then the body is cut).
    let mut t = honest.clone();
    let at = t.len() - 5;
    t[at] ^= 1;
    write_stored(&h, &file, t).await;
    let r = get_range(&h, "t/a", s64(2 * SEG), s64(2 * SEG)).await;
    assert_eq!(tampered_code(r).await, "stored_object_tampered");
    let r = h.send(signed(&get("t/a").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = axum::body::to_bytes(r.into_body(), usize::MAX).await;
    assert!(got.is_err(), "a tampered body must not complete");
    // ... and audited: the allow entry, then a second, denying one with the bytes
    // released before the bad segment.
    assert_cut_short_audited(&h, "t/a", s64(2 * SEG)).await;
    // Truncated after segment 1.
    write_stored(&h, &file, honest[..24 + 2 * (SEG + 16)].to_vec()).await;
    let r = get_range(&h, "t/a", s64(2 * SEG), s64(3 * SEG) - 1).await;
    assert_eq!(tampered_code(r).await, "stored_object_tampered");
    // Another object's honest bytes under this name (same body, same size).
    let other = read_stored(&h, &object_file(&h, "t/b").await).await;
    write_stored(&h, &file, other).await;
    let r = h.send(signed(&get("t/a").request(), vec![])).await;
    assert_eq!(tampered_code(r).await, "stored_object_tampered");
    // The honest bytes back: readable again.
    write_stored(&h, &file, honest).await;
    let r = h.send(signed(&get("t/a").request(), vec![])).await;
    assert_eq!(body_bytes(r).await, body);
    // An empty object is verified too (its one empty segment's tag).
    store(&h, "t/empty", b"").await;
    let file = object_file(&h, "t/empty").await;
    let mut t = read_stored(&h, &file).await;
    t[30] ^= 1;
    write_stored(&h, &file, t).await;
    let r = h.send(signed(&get("t/empty").request(), vec![])).await;
    assert_eq!(tampered_code(r).await, "stored_object_tampered");
}

/// A GET whose body was cut by a tampered segment is audited twice: the allow entry,
/// then a denying one (written by a task of its own) with `sent`, the bytes released
/// before the bad segment.
async fn assert_cut_short_audited(h: &Harness, key: &str, sent: u64) {
    let mut tail = Vec::new();
    for _ in 0..100 {
        let entries = h.all_entries().await;
        tail = entries[entries.len() - 2..].to_vec();
        if tail[1].decision != Decision::Allow {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(tail[0].decision, Decision::Allow);
    assert_eq!(
        tail[1].decision,
        Decision::Deny(ErrorCode::StoredObjectTampered)
    );
    assert_eq!(
        (tail[1].key.as_slice(), tail[1].bytes),
        (key.as_bytes(), sent)
    );
    assert_eq!(tail[1].operation, tail[0].operation);
}

/// An encrypted GET is read and opened in 1 MiB pieces (16 segments each): objects
/// that end exactly at a piece's end or one byte past it round-trip, ranges across a
/// piece boundary read, and a segment tampered in the middle of the second piece
/// cuts the body right before its bytes (every byte of the segments before it out,
/// none of its own), audited with that count, while a range after it still reads.
async fn encrypted_get_across_pieces(b: &Backend) {
    const PIECE: usize = 16 * SEG;
    // Content that differs from segment to segment (251 is prime, SEG is not a
    // multiple of it), so a segment out of place cannot compare equal.
    let content = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
    let h = Harness::new(b).await;
    for n in [PIECE, 2 * PIECE, 2 * PIECE + 1] {
        let body = content(n);
        store(&h, &format!("p/{n}"), &body).await;
        let r = h
            .send(signed(&get(&format!("p/{n}")).request(), vec![]))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{n}");
        assert!(body_bytes(r).await == body, "size {n}");
    }
    let key = format!("p/{}", 2 * PIECE + 1);
    let body = content(2 * PIECE + 1);
    let p = s64(PIECE);
    for (first, last) in [
        (p - 1, p),
        (p - 10, 2 * p),
        (p, 2 * p - 1),
        (2 * p - 1, 2 * p),
    ] {
        let r = get_range(&h, &key, first, last).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{first}-{last}");
        assert!(
            body_bytes(r).await == body[first as usize..=last as usize],
            "{first}-{last}"
        );
    }
    let bad = 21;
    let file = object_file(&h, &key).await;
    let mut t = read_stored(&h, &file).await;
    t[24 + bad * (SEG + 16) + SEG / 2] ^= 1;
    write_stored(&h, &file, t).await;
    let r = h.send(signed(&get(&key).request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut frames = r.into_body().into_data_stream();
    let (mut got, mut failed) = (Vec::new(), false);
    while let Some(frame) = futures::StreamExt::next(&mut frames).await {
        match frame {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a tampered body must not complete");
    assert_eq!(got.len(), bad * SEG);
    assert!(got == body[..bad * SEG]);
    assert_cut_short_audited(&h, &key, s64(bad * SEG)).await;
    let r = get_range(&h, &key, s64(bad * SEG + 5), s64(bad * SEG + 5)).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(r).await, "stored_object_tampered");
    let r = get_range(&h, &key, s64((bad + 1) * SEG), 2 * p).await;
    assert!(body_bytes(r).await == body[(bad + 1) * SEG..]);
}

/// Objects small enough to be read in one piece (on a local bucket, on the request's
/// worker thread: `storage.rs`, `read_small_local`) are refused as the streamed path
/// refuses large ones, before any byte and audited: a flipped byte, a truncated
/// file or another object's bytes are `stored_object_tampered`, a missing file and
/// a truncated plaintext file `storage_unavailable`; the honest bytes read again.
async fn small_damaged_objects_are_refused_before_any_byte(b: &Backend) {
    let h = Harness::new(b).await;
    // Built before any encrypted object exists (the bucket's KEK is then not needed).
    let (plain, _) =
        countersign_gatekeeper::server::build_state(encryption_config(&h, "enabled = false"))
            .await
            .unwrap();
    let body = marked(1000);
    store(&h, "s/a", &body).await;
    store(&h, "s/b", &marked(1000)).await;
    let file = object_file(&h, "s/a").await;
    let honest = read_stored(&h, &file).await;
    let refused = |r: axum::http::Response<axum::body::Body>, status: StatusCode, code| async move {
        assert_eq!(r.status(), status);
        assert_eq!(error_code(r).await, code);
    };
    let mut flipped = honest.clone();
    flipped[24 + 500] ^= 1;
    let other = read_stored(&h, &object_file(&h, "s/b").await).await;
    for damaged in [flipped, honest[..honest.len() - 10].to_vec(), other] {
        write_stored(&h, &file, damaged).await;
        let r = h.send(signed(&get("s/a").request(), vec![])).await;
        refused(r, StatusCode::BAD_GATEWAY, "stored_object_tampered").await;
        assert_eq!(
            h.last_entry().await.decision,
            Decision::Deny(ErrorCode::StoredObjectTampered)
        );
    }
    write_stored(&h, &file, honest).await;
    let r = h.send(signed(&get("s/a").request(), vec![])).await;
    assert_eq!(body_bytes(r).await, body);
    let BucketView::Dir(dir) = &h.bucket else {
        return;
    };
    std::fs::remove_file(dir.join(&file)).unwrap();
    let r = h.send(signed(&get("s/a").request(), vec![])).await;
    refused(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    assert_eq!(
        h.last_entry().await.decision,
        Decision::Deny(ErrorCode::StorageUnavailable)
    );
    // A plaintext object cut short: refused, not answered with the bytes left.
    let put_plain = signed(&put("s/plain", &body).request(), body.clone());
    let r = send_to(&plain, put_plain, "127.0.0.1").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let plain_file = dir.join(object_file(&h, "s/plain").await);
    std::fs::write(&plain_file, &body[..900]).unwrap();
    let r = send_to(
        &plain,
        signed(&get("s/plain").request(), vec![]),
        "127.0.0.1",
    )
    .await;
    refused(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    std::fs::write(&plain_file, &body).unwrap();
    let r = send_to(
        &plain,
        signed(&get("s/plain").request(), vec![]),
        "127.0.0.1",
    )
    .await;
    assert_eq!(body_bytes(r).await, body);
}

fn s64(n: usize) -> u64 {
    n as u64
}

/// A KEK that is missing, or a different key under its id, stops the start with a
/// message naming it; a data key that does not unwrap gives `key_unavailable` per
/// request, never garbage.
async fn wrong_or_missing_kek(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "k/a", b"secret report").await;
    store(&h, "k/b", b"another report").await;
    // A wrapped data key that does not unwrap (altered in the index).
    let ledger = h.ledger().await;
    let o = ledger.object(BUCKET, "k/b").await.unwrap().unwrap();
    let mut w = ledger
        .object_key(BUCKET, &o.storage_name)
        .await
        .unwrap()
        .unwrap();
    let mut altered = w.clone();
    altered.wrapped[20] ^= 1;
    assert!(
        ledger
            .rewrap_object_key(BUCKET, &o.storage_name, &w, &altered)
            .await
            .unwrap()
    );
    let r = h.send(signed(&get("k/b").request(), vec![])).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(r).await, "key_unavailable");
    assert_eq!(
        h.last_entry().await.decision,
        Decision::Deny(ErrorCode::KeyUnavailable)
    );
    std::mem::swap(&mut w, &mut altered);
    assert!(
        ledger
            .rewrap_object_key(BUCKET, &o.storage_name, &w, &altered)
            .await
            .unwrap()
    );
    ledger.close().await;
    // Another key under the same id: its data keys do not unwrap; refused at start.
    let kek = h.dir.join("keys").join(format!("{BUCKET}-1.kek"));
    assert!(kek.exists());
    std::fs::remove_file(&kek).unwrap();
    let err = countersign_gatekeeper::server::build_state(h.config.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("KEK `{BUCKET}-1` does not unwrap")),
        "{err}"
    );
    // A configured key file that does not exist: refused at start, naming it.
    let missing = h.dir.join("nope.kek");
    let bucket = format!(
        "[buckets.{BUCKET}]\n{}\n[buckets.{BUCKET}.encryption]\ncurrent = \"k1\"\nkeys = [{{ id = \"k1\", file = \"{}\" }}]\n",
        bucket_storage_lines(&h.config),
        missing.display()
    );
    let config = Config::from_toml(
        &config_text(&bucket, &database_lines(&h.config), ""),
        Some(&h.dir),
    )
    .unwrap();
    let err = countersign_gatekeeper::server::build_state(config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope.kek"), "{err}");
}

/// A gatekeeper on the harness's database and bucket with the KEKs `ids` (key files
/// in the harness dir, created if missing) and `current`.
async fn with_keks(h: &Harness, ids: &[&str], current: &str) -> (Config, AppState) {
    let mut keys = Vec::new();
    for id in ids {
        let path = h.dir.join(format!("{id}.kek"));
        if !path.exists() {
            countersign_gatekeeper::encryption::create_kek_file(&path).unwrap();
        }
        keys.push(format!(
            "{{ id = \"{id}\", file = \"{}\" }}",
            path.display()
        ));
    }
    with_kek_tables(h, &keys, current).await.unwrap()
}

/// A gatekeeper on the harness's database and bucket with the KEKs given as TOML
/// inline tables and `current`, or its start-up error.
async fn with_kek_tables(
    h: &Harness,
    keys: &[String],
    current: &str,
) -> Result<(Config, AppState), String> {
    let config = kek_config(h, keys, current);
    let (state, _) = countersign_gatekeeper::server::build_state(config.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok((config, state))
}

/// The harness's configuration with the KEKs given as TOML inline tables.
fn kek_config(h: &Harness, keys: &[String], current: &str) -> Config {
    encryption_config(
        h,
        &format!("current = \"{current}\"\nkeys = [{}]", keys.join(", ")),
    )
}

/// The harness's configuration with this `[buckets.NAME.encryption]` body.
fn encryption_config(h: &Harness, encryption: &str) -> Config {
    let database = database_lines(&h.config);
    let mut config = h.config.clone();
    let section = format!(
        "[buckets.{BUCKET}]\n{}\n[buckets.{BUCKET}.encryption]\n{encryption}\n",
        bucket_storage_lines(&h.config),
    );
    let parsed = Config::from_toml(&config_text(&section, &database, ""), Some(&h.dir)).unwrap();
    config.buckets = parsed.buckets;
    config
}

/// The database section of the harness's configuration, as TOML.
fn database_lines(config: &Config) -> String {
    if config.database_url.expose().starts_with("postgres") {
        format!("[database]\nurl = \"{}\"\n", config.database_url.expose())
    } else {
        String::new()
    }
}

/// The storage lines of the harness's bucket, as TOML.
fn bucket_storage_lines(config: &Config) -> String {
    use countersign_gatekeeper::config::StorageConfig;
    let b = &config.buckets[&countersign_core::Bucket::parse(BUCKET).unwrap()];
    match &b.storage {
        StorageConfig::Local { path } => {
            format!("store = \"local\"\npath = \"{}\"", path.display())
        }
        StorageConfig::S3 {
            endpoint,
            s3_bucket,
            ..
        } => format!(
            "store = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\ns3_bucket = \"{s3_bucket}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\nallow_http = true"
        ),
    }
}

async fn read_all(state: &AppState, keys: &[(&str, &[u8])]) {
    for (key, body) in keys {
        let r = send_to(state, signed(&get(key).request(), vec![]), "127.0.0.1").await;
        assert_eq!(r.status(), StatusCode::OK, "{key}");
        assert_eq!(body_bytes(r).await, body.to_vec(), "{key}");
    }
}

/// A new KEK becomes current: old objects stay readable, new ones use it; `rewrap`
/// moves every data key to it (object bytes untouched), after which the old KEK wraps
/// nothing, may be retired, and a gatekeeper without it reads everything.
async fn rotation_and_rewrap_keep_objects_readable(b: &Backend) {
    use countersign_gatekeeper::encryption;
    let h = Harness::new(b).await;
    let (_, one) = with_keks(&h, &["k1"], "k1").await;
    let old = marked(2 * SEG + 3);
    let r = send_to(
        &one,
        signed(&put("rot/old", &old).request(), old.clone()),
        "127.0.0.1",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let file = object_file(&h, "rot/old").await;
    let stored_before = read_stored(&h, &file).await;

    let (config, two) = with_keks(&h, &["k1", "k2"], "k2").await;
    let new = marked(5000);
    let r = send_to(
        &two,
        signed(&put("rot/new", &new).request(), new.clone()),
        "127.0.0.1",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    read_all(&two, &[("rot/old", &old), ("rot/new", &new)]).await;
    // k1 still wraps a data key: a configuration without it is refused, naming it.
    let k2_only = [format!(
        "{{ id = \"k2\", file = \"{}\" }}",
        h.dir.join("k2.kek").display()
    )];
    let err = with_kek_tables(&h, &k2_only, "k2").await.unwrap_err();
    assert!(
        err.contains("KEK `k1` still wraps 1 data keys and is not in its configuration"),
        "{err}"
    );

    let ledger = h.ledger().await;
    let open_storage = |config: &Config| {
        countersign_gatekeeper::storage::Storage::from_config(
            &config.buckets,
            std::time::Duration::from_secs(10),
        )
        .unwrap()
    };
    // Without k1 the run stops at its first data key, audited as such.
    let without_k1 = open_storage(&kek_config(&h, &k2_only, "k2"));
    let err = encryption::rewrap(&ledger, &without_k1, |_| {})
        .await
        .unwrap_err();
    assert!(err.contains("stopped after 0 data keys"), "{err}");
    let last = h.last_entry().await;
    assert_eq!(last.operation, b"REWRAP");
    assert_eq!(last.decision, Decision::Deny(ErrorCode::KeyUnavailable));
    assert!(
        String::from_utf8_lossy(&last.key).starts_with("failed after 0 data keys: "),
        "{:?}",
        String::from_utf8_lossy(&last.key)
    );
    let storage = open_storage(&config);
    let before = encryption::status(&ledger, &storage).await.unwrap();
    let k1 = before.iter().find(|s| s.kek_id == "k1").unwrap();
    assert_eq!((k1.objects, k1.retirable), (1, false));
    let mut moved = Vec::new();
    let n = encryption::rewrap(&ledger, &storage, |r| moved.push(r.clone()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!((moved[0].from.as_str(), moved[0].to.as_str()), ("k1", "k2"));
    // Audited: a start and a finish entry with the count.
    let entries = h.all_entries().await;
    let told: Vec<(String, Decision)> = entries[entries.len() - 2..]
        .iter()
        .map(|e| {
            assert_eq!(
                (e.operation.as_slice(), e.bucket.as_slice()),
                (&b"REWRAP"[..], BUCKET.as_bytes())
            );
            (String::from_utf8_lossy(&e.key).into_owned(), e.decision)
        })
        .collect();
    assert_eq!(
        told,
        [
            ("start: to KEK k2".to_owned(), Decision::Allow),
            ("finish: 1 data keys to KEK k2".to_owned(), Decision::Allow)
        ]
    );
    // Objects stay readable through the same running gatekeeper, bytes untouched.
    read_all(&two, &[("rot/old", &old), ("rot/new", &new)]).await;
    assert_eq!(read_stored(&h, &file).await, stored_before);
    // Resumable: a second run finds nothing left.
    assert_eq!(
        encryption::rewrap(&ledger, &storage, |_| {}).await.unwrap(),
        0
    );
    let after = encryption::status(&ledger, &storage).await.unwrap();
    let k1 = after.iter().find(|s| s.kek_id == "k1").unwrap();
    assert_eq!((k1.objects, k1.retirable), (0, true));
    ledger.close().await;
    // k1 retired: a gatekeeper with k2 alone reads both.
    let (_, only_new) = with_keks(&h, &["k2"], "k2").await;
    read_all(&only_new, &[("rot/old", &old), ("rot/new", &new)]).await;
}

/// An upload refused after its data key was recorded leaves a key row without an
/// object; recovery removes it and keeps the stored object's key.
async fn refused_uploads_leave_no_data_key(b: &Backend) {
    let h = Harness::new(b).await;
    store(&h, "kept", b"kept body").await;
    let req = put("x/y", b"signed body").request();
    let r = h.send(signed(&req, b"other body!".to_vec())).await;
    assert_eq!(error_code(r).await, "body_mismatch");
    let ledger = h.ledger().await;
    let count = |uses: Vec<countersign_gatekeeper::ledger::KeyUse>| {
        uses.iter().map(|u| u.objects).sum::<u64>()
    };
    assert_eq!(count(ledger.key_uses(BUCKET).await.unwrap()), 2);
    countersign_gatekeeper::reconcile::reconcile(&ledger, &h.state.storage, now(), false)
        .await
        .unwrap();
    assert_eq!(count(ledger.key_uses(BUCKET).await.unwrap()), 1);
    ledger.close().await;
    let r = h.send(signed(&get("kept").request(), vec![])).await;
    assert_eq!(body_bytes(r).await, b"kept body");
}

// --- encryption at rest with a KMS (moto's KMS over the AWS KMS API) -----------------

/// Creates a symmetric KMS key (moto does not check signatures) and returns its id.
async fn create_kms_key(endpoint: &str) -> String {
    let r = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "TrentService.CreateKey")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(r#"{"Description":"countersign test"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// A TCP forwarder to `target` that can be switched off: then it closes every open
/// connection and drops every new one at once (a KMS that becomes unreachable).
struct Switch {
    url: String,
    on: tokio::sync::watch::Sender<bool>,
}

impl Switch {
    async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (on, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue; // dropped: connection reset
                }
                let target = target.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = watch.wait_for(|on| !on) => {}
                        }
                    }
                });
            }
        });
        Self { url, on }
    }

    fn set(&self, on: bool) {
        self.on.send_replace(on);
    }
}

/// The `kms1` KEK as a TOML inline table.
fn kms_kek(key_id: &str, endpoint: &str) -> String {
    format!(
        "{{ id = \"kms1\", kms = {{ key_id = \"{key_id}\", region = \"us-east-1\", endpoint = \"{endpoint}\", access_key_id = \"testing\", secret_access_key_file = \"kms.secret\", allow_http = true }} }}"
    )
}

async fn readyz(state: &AppState) -> (StatusCode, String) {
    let req = axum::http::Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = send_to(state, req, "127.0.0.1").await;
    let status = r.status();
    (
        status,
        String::from_utf8_lossy(&body_bytes(r).await).into_owned(),
    )
}

/// A bucket whose KEK is a KMS key: objects round-trip and the index holds only the
/// KMS's ciphertext of each data key; with the KMS unreachable a PUT and a GET of an
/// object not read before are refused with `key_unavailable` and audited (an object
/// read before is served from the bounded cache), `/readyz` fails, and a start is
/// refused; a KEK id pointing at another KMS key, or at no key, is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_kek_round_trip_outage_and_wrong_key() {
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let h = Harness::new(&Backend::SqliteLocal).await;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(h.dir.join("kms.secret"))
            .unwrap();
        f.write_all(b"testing\n").unwrap();
    }
    let key1 = create_kms_key(&s3_endpoint).await;
    let key2 = create_kms_key(&s3_endpoint).await;
    let kms = Switch::start(&s3_endpoint).await;
    let kek = [kms_kek(&key1, &kms.url)];
    let (_, gk) = with_kek_tables(&h, &kek, "kms1").await.unwrap();
    assert_eq!(readyz(&gk).await.0, StatusCode::OK);

    let body = marked(2 * SEG + 5);
    for key in ["kms/a", "kms/b"] {
        let r = send_to(
            &gk,
            signed(&put(key, &body).request(), body.clone()),
            "127.0.0.1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    read_all(&gk, &[("kms/a", &body)]).await;
    let ledger = h.ledger().await;
    let o = ledger.object(BUCKET, "kms/a").await.unwrap().unwrap();
    let wrapped = ledger
        .object_key(BUCKET, &o.storage_name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wrapped.kek_id, "kms1");
    assert_ne!(
        wrapped.wrapped.len(),
        countersign_gatekeeper::encryption::WRAPPED_BYTES
    );
    let stored = read_stored(&h, &format!("objects/{}", o.storage_name)).await;
    assert!(!stored.windows(MARKER.len()).any(|w| w == MARKER));

    // A second instance, started while the KMS answers, has cached only the data key
    // its start-up check unwrapped (the first by storage name).
    let (_, cold) = with_kek_tables(&h, &kek, "kms1").await.unwrap();
    let b_name = ledger
        .object(BUCKET, "kms/b")
        .await
        .unwrap()
        .unwrap()
        .storage_name;
    let unread = if b_name > o.storage_name {
        "kms/b"
    } else {
        "kms/a"
    };
    kms.set(false);
    // Read before through `gk`: its data key is cached.
    read_all(&gk, &[("kms/a", &body)]).await;
    let r = send_to(&cold, signed(&get(unread).request(), vec![]), "127.0.0.1").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(r).await, "key_unavailable");
    assert_eq!(
        h.last_entry().await.decision,
        Decision::Deny(ErrorCode::KeyUnavailable)
    );
    let before = h.bucket_contents().await;
    let r = send_to(
        &gk,
        signed(&put("kms/c", &body).request(), body.clone()),
        "127.0.0.1",
    )
    .await;
    assert_eq!(error_code(r).await, "key_unavailable");
    let last = h.last_entry().await;
    assert_eq!(last.decision, Decision::Deny(ErrorCode::KeyUnavailable));
    assert_eq!(last.key, b"kms/c");
    assert_eq!(h.bucket_contents().await, before);
    assert!(ledger.object(BUCKET, "kms/c").await.unwrap().is_none());
    let (status, text) = readyz(&gk).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("key_unavailable"), "{text}");
    let err = with_kek_tables(&h, &kek, "kms1").await.unwrap_err();
    assert!(
        err.contains("`kms1`") && err.contains("cannot be reached"),
        "{err}"
    );
    // Back: everything reads again.
    kms.set(true);
    read_all(&cold, &[("kms/a", &body), ("kms/b", &body)]).await;
    assert_eq!(readyz(&gk).await.0, StatusCode::OK);

    // `kms1` pointing at another KMS key: its data keys do not unwrap; refused at
    // start, naming the KEK.
    let err = with_kek_tables(&h, &[kms_kek(&key2, &s3_endpoint)], "kms1")
        .await
        .unwrap_err();
    assert!(
        err.contains("`kms1`") && err.contains("does not unwrap"),
        "{err}"
    );
    // A key the KMS does not have: refused at start with the KMS's reason.
    let err = with_kek_tables(
        &h,
        &[kms_kek(
            "0b0b0b0b-0000-4000-8000-000000000000",
            &s3_endpoint,
        )],
        "kms1",
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("`kms1`") && err.contains("NotFoundException"),
        "{err}"
    );
    ledger.close().await;
}

/// Plaintext objects stored before encryption was turned on stay readable; `keys
/// encrypt-existing` moves them to the encrypted form under new names. Killed at
/// several points (and with a half-written copy left by a killed run), every object
/// stays readable throughout, and a final run finishes: the store then holds no
/// plaintext and no key name, every move is audited, and a second run finds nothing.
async fn encrypt_existing_survives_interruptions(b: &Backend) {
    use countersign_gatekeeper::encrypt_existing::encrypt_existing;
    use countersign_gatekeeper::ledger::Encryption;
    let h = Harness::new(b).await;
    let plain = encryption_config(&h, "enabled = false");
    let (off, _) = countersign_gatekeeper::server::build_state(plain)
        .await
        .unwrap();
    let objects: Vec<(String, Vec<u8>)> = [0, 5, SEG + 1, 3 * SEG, 6 << 20]
        .iter()
        .map(|&n| (format!("{SECRET_NAME}/old-{n}"), marked(n)))
        .collect();
    for (key, body) in &objects {
        let r = send_to(
            &off,
            signed(&put(key, body).request(), body.clone()),
            "127.0.0.1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let want: Vec<(&str, &[u8])> = objects
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_slice()))
        .collect();
    // Encryption on: the plaintext objects read as before.
    let (config, on) = with_keks(&h, &["k1"], "k1").await;
    read_all(&on, &want).await;
    let ledger = h.ledger().await;
    let storage = countersign_gatekeeper::storage::Storage::from_config(
        &config.buckets,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let bucket = countersign_core::Bucket::parse(BUCKET).unwrap();

    // A run killed while writing a copy: its row, its data key, part of its bytes.
    let first = ledger.object(BUCKET, &objects[2].0).await.unwrap().unwrap();
    let left = Encryption {
        key: first.key.clone(),
        old_name: first.storage_name.clone(),
        new_name: countersign_gatekeeper::storage::new_storage_name(),
    };
    assert!(ledger.begin_encryption(BUCKET, &left).await.unwrap());
    let ring = storage.keyring(&bucket).unwrap();
    let (_, _, wrapped) = ring.new_object(&bucket, &left.new_name).await.unwrap();
    ledger
        .put_object_key(BUCKET, &left.new_name, &wrapped)
        .await
        .unwrap();
    write_stored(&h, &format!("objects/{}", left.new_name), vec![7; 1000]).await;
    read_all(&on, &want).await;

    // Killed at several points: every object stays readable.
    for delay_ms in [0, 2, 5, 15, 40] {
        let (l, st) = (ledger.clone(), storage.clone());
        let run = tokio::spawn(async move { encrypt_existing(&l, &st, |_| {}).await });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        run.abort();
        let _ = run.await;
        read_all(&on, &want).await;
    }
    // The last run finishes.
    let mut moved = Vec::new();
    encrypt_existing(&ledger, &storage, |e| moved.push(e.clone()))
        .await
        .unwrap();
    read_all(&on, &want).await;
    let (_, fresh) = with_keks(&h, &["k1"], "k1").await;
    read_all(&fresh, &want).await;
    assert!(
        ledger
            .unencrypted_objects(BUCKET, "", 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(ledger.encryptions(BUCKET).await.unwrap().is_empty());
    for (key, _) in &objects {
        let o = ledger.object(BUCKET, key).await.unwrap().unwrap();
        let w = ledger.object_key(BUCKET, &o.storage_name).await.unwrap();
        assert_eq!(w.unwrap().kek_id, "k1", "{key}");
    }
    // Every move audited (the interrupted runs' included), none refused.
    let encrypts: Vec<_> = h
        .all_entries()
        .await
        .into_iter()
        .filter(|e| e.operation == b"ENCRYPT")
        .collect();
    for (key, body) in &objects {
        let e = encrypts
            .iter()
            .rev()
            .find(|e| e.key == key.as_bytes())
            .unwrap_or_else(|| panic!("no ENCRYPT entry for {key}"));
        assert_eq!((e.decision, e.bytes), (Decision::Allow, body.len() as u64));
    }
    for e in &moved {
        assert!(encrypts.iter().any(|a| a.key == e.key.as_bytes()));
    }
    // Nothing left to do.
    assert_eq!(
        encrypt_existing(&ledger, &storage, |_| {}).await.unwrap(),
        0
    );
    // After recovery (files of interrupted moves are orphans), no plaintext and no
    // key name anywhere in the store.
    countersign_gatekeeper::reconcile::reconcile(&ledger, &storage, now(), false)
        .await
        .unwrap();
    ledger.close().await;
    for path in h.bucket_contents().await {
        assert!(!path.contains(SECRET_NAME), "{path}");
        let bytes = read_stored(&h, &path).await;
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{path} holds plaintext"
        );
    }
    read_all(&on, &want).await;
}

/// When a `keys` command run as its own process is killed.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after it started.
    Time(u64),
    /// Once it printed this many result lines (objects done).
    Lines(usize),
}

/// Runs `countersign-gatekeeper keys COMMAND` on the configuration file and SIGKILLs
/// it at `kill` (or lets it finish when `None`, asserting that it succeeds). Returns
/// the result lines it printed and whether the kill hit a running process.
async fn run_keys_command(
    h: &Harness,
    config: &std::path::Path,
    command: &str,
    kill: Option<KillAt>,
) -> (Vec<String>, bool) {
    use std::io::BufRead as _;
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args(["keys", command, "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(&h.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let command = command.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        match kill {
            Some(KillAt::Time(ms)) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let _ = child.kill(); // SIGKILL
            }
            Some(KillAt::Lines(n)) => {
                while lines.len() < n {
                    match rx.recv() {
                        Ok(line) => lines.push(line),
                        Err(_) => break,
                    }
                }
                let _ = child.kill(); // SIGKILL
            }
            None => {}
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let killed = status.signal() == Some(9);
        if !killed {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(status.success(), "keys {command}: {stderr}");
        }
        (lines, killed)
    })
    .await
    .unwrap()
}

/// The harness's configuration with these KEKs (key files in the harness directory),
/// written to a file for the command line.
fn kek_config_file(h: &Harness, ids: &[&str], current: &str) -> std::path::PathBuf {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| {
            let path = h.dir.join(format!("{id}.kek"));
            if !path.exists() {
                countersign_gatekeeper::encryption::create_kek_file(&path).unwrap();
            }
            format!("{{ id = \"{id}\", file = \"{}\" }}", path.display())
        })
        .collect();
    let section = format!(
        "[buckets.{BUCKET}]\n{}\n[buckets.{BUCKET}.encryption]\ncurrent = \"{current}\"\nkeys = [{}]\n",
        bucket_storage_lines(&h.config),
        keys.join(", ")
    );
    let text = config_text(&section, &database_lines(&h.config), "");
    let path = h.dir.join(format!("keys-{current}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `keys encrypt-existing` and then `keys rewrap`, each run as the real process and
/// killed with SIGKILL at several points (at start, mid-object, after N objects):
/// after every kill each object reads through the gatekeeper with its bytes, and a
/// final run completes the job (no plaintext object left, every data key wrapped by
/// the new KEK) and a run after it finds nothing to do.
async fn key_commands_survive_kill_9(b: &Backend) {
    let h = Harness::new(b).await;
    let (off, _) =
        countersign_gatekeeper::server::build_state(encryption_config(&h, "enabled = false"))
            .await
            .unwrap();
    // Large objects (copies killed midway) and many small ones (so that a rewrap,
    // which moves no bytes, is still running when its kill arrives).
    let sizes = [0, 5, SEG + 1, 3 * SEG, 4 << 20, 6 << 20, 1 << 20, 4 << 20];
    let objects: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .chain(&[100; 32])
        .enumerate()
        .map(|(i, &n)| (format!("{SECRET_NAME}/kill-{i}"), marked(n)))
        .collect();
    for (key, body) in &objects {
        let r = send_to(
            &off,
            signed(&put(key, body).request(), body.clone()),
            "127.0.0.1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let want: Vec<(&str, &[u8])> = objects
        .iter()
        .map(|(k, b)| (k.as_str(), b.as_slice()))
        .collect();
    let ledger = h.ledger().await;
    // A rewrap moves no bytes and is over in milliseconds: kill it by lines.
    let copying = [
        KillAt::Time(0),
        KillAt::Time(40),
        KillAt::Lines(1),
        KillAt::Time(120),
        KillAt::Lines(2),
        KillAt::Time(250),
        KillAt::Lines(1),
    ];
    let rewrapping = [
        KillAt::Time(0),
        KillAt::Lines(1),
        KillAt::Lines(5),
        KillAt::Lines(1),
        KillAt::Lines(10),
    ];
    for (command, config, kek, kills) in [
        (
            "encrypt-existing",
            kek_config_file(&h, &["k1"], "k1"),
            "k1",
            &copying[..],
        ),
        (
            "rewrap",
            kek_config_file(&h, &["k1", "k2"], "k2"),
            "k2",
            &rewrapping[..],
        ),
    ] {
        let (_, on) = with_keks(&h, &["k1", "k2"], kek).await;
        read_all(&on, &want).await;
        let mut killed = 0;
        for &kill in kills {
            let (_, hit) = run_keys_command(&h, &config, command, Some(kill)).await;
            killed += usize::from(hit);
            read_all(&on, &want).await;
            let (_, fresh) = with_keks(&h, &["k1", "k2"], kek).await;
            read_all(&fresh, &want).await;
        }
        eprintln!(
            "{command}: {killed} of {} kills hit a running process",
            kills.len()
        );
        assert!(
            killed >= 3,
            "{command}: only {killed} kills hit a running process"
        );
        // The run after the kills completes; the next one has nothing to do.
        run_keys_command(&h, &config, command, None).await;
        let (lines, _) = run_keys_command(&h, &config, command, None).await;
        assert!(lines.is_empty(), "{command} again: {lines:?}");
        read_all(&on, &want).await;
        assert!(
            ledger
                .unencrypted_objects(BUCKET, "", 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(ledger.encryptions(BUCKET).await.unwrap().is_empty());
        for (key, _) in &objects {
            let o = ledger.object(BUCKET, key).await.unwrap().unwrap();
            let w = ledger.object_key(BUCKET, &o.storage_name).await.unwrap();
            assert_eq!(w.unwrap().kek_id, kek, "{command}: {key}");
        }
    }
    // After recovery (files of killed moves are orphans), no plaintext anywhere.
    countersign_gatekeeper::reconcile::reconcile(
        &ledger,
        &countersign_gatekeeper::storage::Storage::from_config(
            &encryption_config(&h, "enabled = false").buckets,
            std::time::Duration::from_secs(10),
        )
        .unwrap(),
        now(),
        false,
    )
    .await
    .unwrap();
    ledger.close().await;
    for path in h.bucket_contents().await {
        assert!(!path.contains(SECRET_NAME), "{path}");
        let bytes = read_stored(&h, &path).await;
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{path} holds plaintext"
        );
    }
}

/// A TCP forwarder to `target` that keeps every byte the client sent.
async fn recording_forwarder(target: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let target = target.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, sent)
}

/// A recorded request: its lower-cased headers and its body.
type Recorded = (Vec<(String, String)>, Vec<u8>);

/// The requests in a recorded HTTP/1.1 stream.
fn recorded_requests(mut stream: &[u8]) -> Vec<Recorded> {
    let mut requests = Vec::new();
    while let Some(end) = stream.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = std::str::from_utf8(&stream[..end]).unwrap();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body = stream[end + 4..end + 4 + length].to_vec();
        stream = &stream[end + 4 + length..];
        requests.push((headers, body));
    }
    requests
}

/// Over plain HTTP the S3 client signs the SHA-256 of every body it stores
/// (`x-amz-content-sha256`, the store's only check that the body arrived unaltered);
/// `UNSIGNED-PAYLOAD`, which leaves that second hash of every stored byte out, is
/// sent only over HTTPS, where TLS protects the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bodies_are_hashed_and_signed_over_plain_http() {
    use countersign_gatekeeper::config::{Secret, StorageConfig};
    use sha2::Digest as _;
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let bucket = format!("signed-{}", random_hex(6));
    create_s3_bucket(&s3_endpoint, &bucket).await;
    let (url, sent) = recording_forwarder(&s3_endpoint).await;
    let store = countersign_gatekeeper::storage::build_object_store(
        &StorageConfig::S3 {
            endpoint: url,
            region: "us-east-1".into(),
            s3_bucket: bucket,
            access_key_id: "testing".into(),
            secret_access_key: Secret::new("testing"),
            allow_http: true,
        },
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    let body = b"a report, hashed by the S3 client".to_vec();
    store
        .put(&"objects/a".into(), body.clone().into())
        .await
        .unwrap();
    let stream = sent.lock().unwrap().clone();
    let requests = recorded_requests(&stream);
    assert_eq!(requests.len(), 1, "{}", String::from_utf8_lossy(&stream));
    let (headers, sent_body) = &requests[0];
    assert_eq!(sent_body, &body);
    let hash = headers
        .iter()
        .find(|(n, _)| n == "x-amz-content-sha256")
        .map(|(_, v)| v.clone());
    assert_eq!(
        hash,
        Some(countersign_core::text::hex(&<[u8; 32]>::from(
            sha2::Sha256::digest(&body)
        )))
    );
}

/// Temporary KMS credentials: with a session token every KMS call carries it as
/// `X-Amz-Security-Token`, among the SigV4 signed headers (the signature, recomputed
/// from the request as it went over the wire, matches only with that token), and
/// moto's KMS answers the calls; without one no such header is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_session_token_is_sent_and_signed() {
    use countersign_gatekeeper::config::Secret;
    use countersign_gatekeeper::kms::{Kms, KmsConfig};
    use sha2::Digest as _;
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let key_id = create_kms_key(&s3_endpoint).await;
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH+session/token=";
    for token in [Some(TOKEN), None] {
        let (url, sent) = recording_forwarder(&s3_endpoint).await;
        let kms = Kms::new(
            KmsConfig {
                key_id: key_id.clone(),
                region: "us-east-1".into(),
                endpoint: url,
                access_key_id: "ASIATESTING".into(),
                secret_access_key: Secret::new("testing"),
                session_token: token.map(Secret::new),
            },
            std::time::Duration::from_secs(20),
        )
        .unwrap();
        kms.check().await.unwrap(); // GenerateDataKey, then Decrypt
        let stream = sent.lock().unwrap().clone();
        let requests = recorded_requests(&stream);
        assert_eq!(requests.len(), 2, "{}", String::from_utf8_lossy(&stream));
        for (headers, body) in requests {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(header("x-amz-security-token").as_deref(), token);
            let authorization = header("authorization").unwrap();
            let (_, signed) = authorization.split_once("SignedHeaders=").unwrap();
            let (signed, signature) = signed.split_once(", Signature=").unwrap();
            assert_eq!(
                signed.split(';').any(|h| h == "x-amz-security-token"),
                token.is_some()
            );
            let date = header("x-amz-date").unwrap();
            let body_hash =
                countersign_core::text::hex(&<[u8; 32]>::from(sha2::Sha256::digest(&body)));
            let sign = |token: Option<&str>| {
                let canonical_headers: String = signed
                    .split(';')
                    .map(|n| {
                        let v = match (n, token) {
                            ("x-amz-security-token", Some(t)) => t.to_owned(),
                            _ => header(n).unwrap(),
                        };
                        format!("{n}:{v}\n")
                    })
                    .collect();
                countersign_gatekeeper::s3_uploads::service_signature(
                    "testing",
                    "us-east-1",
                    "kms",
                    &date,
                    &format!("POST\n/\n\n{canonical_headers}\n{signed}\n{body_hash}"),
                )
            };
            assert_eq!(sign(None), signature);
            if token.is_some() {
                assert_ne!(sign(Some("another-token")), signature);
            }
        }
    }
}
