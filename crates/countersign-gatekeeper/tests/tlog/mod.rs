//! The audit log as a transparency log, on every backend: checkpoints and tiles over
//! HTTP, and `audit verify` against the published checkpoints catching each attack
//! of someone who can write the database (but not the published file).

use crate::common::*;
use axum::http::StatusCode;
use countersign_core::audit::{AuditEntry, CapturedHeader};
use countersign_core::merkle::{leaf_hash, tree_root, verify_inclusion};
use countersign_core::note::Checkpoint;
use countersign_core::tiles::{TileHashes, TilePath, tiles_of_tree};
use countersign_core::{Decision, ErrorCode};
use countersign_gatekeeper::checkpoint_bucket::{
    Answer, BUCKET_DEADLINE, BucketPublisher, CheckpointBucket, PublishBucketConfig,
};
use countersign_gatekeeper::http::AppState;
use countersign_gatekeeper::ledger::{AuditDraft, log_origin};
use countersign_gatekeeper::transparency::{
    Publisher, TreeReport, checkpoint_verifier, integrate_and_publish, verify_tree,
    verify_tree_against,
};
use reqwest::Method;
use std::collections::HashMap;

fn draft(i: u64, decision: Decision) -> AuditDraft {
    AuditDraft {
        time_ms: 1_800_000_000_000 + i,
        request_id: format!("req-{i}").into_bytes(),
        client_ip: "127.0.0.1".parse().unwrap(),
        operation: b"GET".to_vec(),
        bucket: BUCKET.as_bytes().to_vec(),
        key: format!("patient-{i}/report.pdf").into_bytes(),
        subject: b"user-1".to_vec(),
        decision,
        bytes: i,
        latency_us: 10,
        request: CapturedHeader::whole(b""),
        signatures: CapturedHeader::whole(b""),
    }
}

/// Appends `n` entries, every third a denial; no two entries of a test run are alike.
async fn append(state: &AppState, n: u64) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..n {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = if i.is_multiple_of(3) {
            Decision::Deny(ErrorCode::AccessDenied)
        } else {
            Decision::Allow
        };
        state.ledger.append(draft(i, d), None).await.unwrap();
    }
}

async fn integrate(h: &Harness) -> u64 {
    let mut p = Publisher::open(&h.config.published_checkpoints).unwrap();
    integrate_and_publish(&h.state.ledger, &mut p)
        .await
        .unwrap()
}

fn policy(h: &Harness) -> countersign_core::Policy {
    countersign_gatekeeper::http::gatekeeper_policy(&h.config.key_id, &h.state.public_key())
        .unwrap()
}

async fn verify(h: &Harness) -> Result<TreeReport, String> {
    let verifier = checkpoint_verifier(&h.config.gatekeeper_id, &h.state.public_key()).unwrap();
    let ledger = h.ledger().await;
    let r = verify_tree(
        &ledger,
        &h.config.published_checkpoints,
        &verifier,
        &log_origin(&h.config.gatekeeper_id),
        &policy(h),
    )
    .await;
    ledger.close().await;
    r
}

async fn verify_fails(h: &Harness, expect: &str) {
    let e = verify(h).await.unwrap_err();
    assert!(e.contains(expect), "`{e}` does not say `{expect}`");
}

async fn sql(h: &Harness, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(h.config.database_url.expose())
        .await
        .unwrap();
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

/// What an attacker with write access to the database does after changing entries:
/// recompute the hash chain from entry `from` on, and drop the Merkle tree and its
/// checkpoints so that the running gatekeeper re-integrates (and signs) the forgery.
async fn relink_and_rebuild(h: &Harness, from: u64) {
    let entries = h.all_entries().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(h.config.database_url.expose())
        .await
        .unwrap();
    let pg = h.config.database_url.expose().starts_with("postgres");
    let q = |s: &str| {
        if pg {
            let mut n = 0;
            s.chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            s.to_owned()
        }
    };
    let mut prev = if from == 0 {
        countersign_core::audit::GENESIS
    } else {
        entries[from as usize - 1].hash()
    };
    for e in entries.into_iter().skip(from as usize) {
        let e = AuditEntry {
            prev_sha256: prev,
            ..e
        };
        prev = e.hash();
        sqlx::query(sqlx::AssertSqlSafe(q(
            "UPDATE audit_log SET prev_sha256 = ?, entry_sha256 = ? WHERE seq = ?",
        )))
        .bind(e.prev_sha256.to_vec())
        .bind(prev.to_vec())
        .bind(e.seq as i64)
        .execute(&pool)
        .await
        .unwrap();
    }
    for t in [
        "tlog_state",
        "tlog_tiles",
        "tlog_checkpoints",
        "audit_checkpoints",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    integrate(h).await;
}

async fn get(h: &Harness, path: &str) -> axum::http::Response<axum::body::Body> {
    h.send(
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
}

pub async fn tree_checkpoints_and_tiles(b: &Backend) {
    let h = Harness::new(b).await;
    let r = get(&h, "/v1/log/checkpoint").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    crate::store(&h, "a/b", b"x").await;
    append(&h.state, 300).await;
    assert_eq!(integrate(&h).await, 301);
    // A second round with nothing new signs nothing.
    assert_eq!(integrate(&h).await, 301);

    let r = get(&h, "/v1/log/checkpoint").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    let note = body_bytes(r).await;
    let verifier = checkpoint_verifier(&h.config.gatekeeper_id, &h.state.public_key()).unwrap();
    let (cp, _) = Checkpoint::open(&note, &format!("{GK}/audit"), &verifier).unwrap();
    assert_eq!(cp.size(), 301);

    // Every tile over HTTP, without authentication; the root they give is the
    // checkpoint's, and every entry's inclusion proof from them verifies.
    let mut tiles = HashMap::new();
    for t in tiles_of_tree(301) {
        let r = get(&h, &format!("/v1/log/{t}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
        tiles.insert(t, body_bytes(r).await);
    }
    assert_eq!(tiles.len(), 3); // tile/0/000, tile/0/001.p/45, tile/1/000.p/1
    let mut src = TileHashes::new(301, |t: &TilePath| {
        tiles
            .get(t)
            .cloned()
            .ok_or_else(|| countersign_core::Error::new(ErrorCode::NotFound, t.to_string()))
    });
    assert_eq!(tree_root(&mut src, 301).unwrap(), *cp.root());
    for e in h.all_entries().await.iter().step_by(37) {
        let proof = countersign_core::merkle::inclusion_proof(&mut src, e.seq, 301).unwrap();
        verify_inclusion(e.seq, 301, &leaf_hash(&e.encode()), &proof, cp.root()).unwrap();
    }
    // A narrower partial tile is a prefix of the stored one; a wider one, or a full
    // tile that is not complete yet, does not exist.
    let r = get(&h, "/v1/log/tile/0/001.p/3").await;
    assert_eq!(
        body_bytes(r).await,
        tiles[&TilePath::parse("tile/0/001.p/45").unwrap()][..96]
    );
    for (path, status, code) in [
        (
            "/v1/log/tile/0/001.p/46",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/v1/log/tile/0/001", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/log/tile/0/1", StatusCode::BAD_REQUEST, "malformed"),
        (
            "/v1/log/tile/entries/000",
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
    ] {
        let r = get(&h, path).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(error_code(r).await, code, "{path}");
    }
    let report = verify(&h).await.unwrap();
    assert_eq!(
        (report.entries, report.published, report.stored),
        (301, 1, 1)
    );
    assert_eq!(report.root, *cp.root());

    // Entry bundles: for customer-admin keys only; their entries hash to the leaves of
    // the level-0 tile of the same index.
    let r = h
        .send(crate::admin_request(
            &h,
            "/v1/audit/tile/entries/000",
            "admin",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bundle = body_bytes(r).await;
    let leaves: Vec<u8> = countersign_core::tiles::parse_bundle(&bundle)
        .unwrap()
        .iter()
        .flat_map(|e| leaf_hash(e))
        .collect();
    assert_eq!(leaves, tiles[&TilePath::parse("tile/0/000").unwrap()]);
    let r = h
        .send(crate::admin_request(
            &h,
            "/v1/audit/tile/entries/001.p/45",
            "admin",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        countersign_core::tiles::parse_bundle(&body_bytes(r).await)
            .unwrap()
            .len(),
        45
    );
    for (path, signer, code) in [
        ("/v1/audit/tile/entries/001.p/46", "admin", "not_found"),
        ("/v1/audit/tile/entries/000", "vendor", "threshold_not_met"),
    ] {
        let r = h.send(crate::admin_request(&h, path, signer)).await;
        assert_eq!(error_code(r).await, code, "{path}");
    }
}

/// `GET /v1/log/proof/<index>`: the served checkpoint and the audit path to exactly
/// its size, which the core verifies; an index the checkpoint does not cover yet is
/// `not_found`, an index that is not a canonical decimal a 400.
pub async fn tree_proof_endpoint(b: &Backend) {
    use countersign_core::logged::{LogProofAnswer, LogTrust, verify_proof_answer};
    let h = Harness::new(b).await;
    let r = get(&h, "/v1/log/proof/0").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
    append(&h.state, 300).await;
    assert_eq!(integrate(&h).await, 300);
    append(&h.state, 5).await;

    let trust = LogTrust {
        log_key: checkpoint_verifier(&h.config.gatekeeper_id, &h.state.public_key()).unwrap(),
        witnesses: Vec::new(),
        quorum: 0,
    };
    let served = body_bytes(get(&h, "/v1/log/checkpoint").await).await;
    let entries = h.all_entries().await;
    let prove = |e: &AuditEntry| countersign_core::Receipt {
        gatekeeper: e.gatekeeper.clone(),
        request_sha256: [0; 32],
        decision: e.decision,
        decided_at: 1_800_000_000,
        audit_seq: e.seq,
        leaf_sha256: Some(leaf_hash(&e.encode())),
    };
    for e in entries.iter().filter(|e| e.seq < 300).step_by(41) {
        let r = get(&h, &format!("/v1/log/proof/{}", e.seq)).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", e.seq);
        assert_eq!(
            header(&r, "content-type").unwrap(),
            "text/plain; charset=utf-8"
        );
        let answer = LogProofAnswer::parse(&body_bytes(r).await).unwrap();
        // Exactly the served checkpoint, and a path to its size.
        assert_eq!(answer.note, served);
        assert_eq!((answer.index, answer.size), (e.seq, 300));
        let logged = verify_proof_answer(&prove(e), &answer, &trust).unwrap();
        assert_eq!(logged.checkpoint.size(), 300);
        // The path is for this entry only.
        let mut other = prove(e);
        other.leaf_sha256 = Some(leaf_hash(b"another entry"));
        assert_eq!(
            verify_proof_answer(&other, &answer, &trust)
                .unwrap_err()
                .code(),
            ErrorCode::AuditChainBroken
        );
    }
    for (path, status, code) in [
        ("/v1/log/proof/300", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/log/proof/304", StatusCode::NOT_FOUND, "not_found"),
        (
            "/v1/log/proof/007",
            StatusCode::BAD_REQUEST,
            "non_canonical",
        ),
        ("/v1/log/proof/-1", StatusCode::BAD_REQUEST, "non_canonical"),
        (
            "/v1/log/proof/1e3",
            StatusCode::BAD_REQUEST,
            "non_canonical",
        ),
        (
            "/v1/log/proof/9007199254740992",
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ] {
        let r = get(&h, path).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(error_code(r).await, code, "{path}");
    }
    // Once integrated, the new entries prove at the new size.
    assert_eq!(integrate(&h).await, 305);
    let r = get(&h, "/v1/log/proof/304").await;
    let answer = LogProofAnswer::parse(&body_bytes(r).await).unwrap();
    assert_eq!(answer.size, 305);
    let last = entries.iter().find(|e| e.seq == 304).unwrap();
    verify_proof_answer(&prove(last), &answer, &trust).unwrap();
}

pub async fn tree_integrator_task_checkpoints_within_the_interval(b: &Backend) {
    let h = Harness::new(b).await;
    countersign_gatekeeper::transparency::spawn_integrator(h.state.clone());
    append(&h.state, 3).await;
    let started = std::time::Instant::now();
    // Within the interval (1 s), plus slack for a loaded machine.
    loop {
        let r = get(&h, "/v1/log/checkpoint").await;
        if r.status() == StatusCode::OK {
            let text = String::from_utf8(body_bytes(r).await).unwrap();
            if text.contains("\n3\n") {
                break;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "no checkpoint of 3 entries"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The task published it outside the database too.
    let published = std::fs::read_to_string(&h.config.published_checkpoints).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut published = published;
    while !published.contains("\n3\n") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        published = std::fs::read_to_string(&h.config.published_checkpoints).unwrap_or_default();
    }
    assert!(published.contains("\n3\n"), "{published}");
}

pub async fn tree_detects_a_rewritten_entry(b: &Backend) {
    let h = Harness::new(b).await;
    append(&h.state, 20).await;
    integrate(&h).await;
    verify(&h).await.unwrap();
    // The attacker turns a denial into an allow.
    let victim = h
        .all_entries()
        .await
        .into_iter()
        // (Not the last entry of a hash-chain checkpoint, which would fail that first.)
        .find(|e| e.seq < 19 && e.seq % 5 != 4 && matches!(e.decision, Decision::Deny(_)))
        .unwrap()
        .seq;
    sql(
        &h,
        &[&format!(
            "UPDATE audit_log SET decision = 'allow', error_code = '' WHERE seq = {victim}"
        )],
    )
    .await;
    verify_fails(&h, &format!("entry {} does not link", victim + 1)).await;
    relink_and_rebuild(&h, victim).await;
    verify_fails(&h, "the published checkpoint of size 20 does not match").await;
}

pub async fn tree_detects_a_deleted_entry(b: &Backend) {
    let h = Harness::new(b).await;
    append(&h.state, 20).await;
    integrate(&h).await;
    sql(&h, &["DELETE FROM audit_log WHERE seq = 9"]).await;
    verify_fails(&h, "entry 9 is missing").await;
    // Renumber the rest and relink the chain, as a careful attacker would.
    sql(
        &h,
        &[
            "UPDATE audit_log SET seq = -seq WHERE seq > 9",
            "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0",
        ],
    )
    .await;
    relink_and_rebuild(&h, 9).await;
    verify_fails(
        &h,
        "a checkpoint of size 20 was published, but the database holds 19 entries",
    )
    .await;
    // Even once the log has grown past the published size again.
    append(&h.state, 5).await;
    integrate(&h).await;
    verify_fails(&h, "the published checkpoint of size 20 does not match").await;
}

pub async fn tree_detects_truncation(b: &Backend) {
    let h = Harness::new(b).await;
    append(&h.state, 12).await;
    integrate(&h).await;
    sql(&h, &["DELETE FROM audit_log WHERE seq >= 10"]).await;
    verify_fails(
        &h,
        "a checkpoint of size 12 was published, but the database holds 10 entries",
    )
    .await;
    relink_and_rebuild(&h, 10).await;
    verify_fails(&h, "deleted from its end (truncation)").await;
}

pub async fn tree_detects_dropped_checkpoints(b: &Backend) {
    let h = Harness::new(b).await;
    append(&h.state, 7).await;
    integrate(&h).await;
    append(&h.state, 7).await;
    integrate(&h).await;
    assert_eq!(verify(&h).await.unwrap().published, 2);
    sql(&h, &["DELETE FROM tlog_checkpoints WHERE size = 7"]).await;
    verify_fails(
        &h,
        "the published checkpoint of size 7 is missing from the database",
    )
    .await;
}

pub async fn tree_detects_a_rollback_to_an_older_backup(b: &Backend) {
    let h = Harness::new(b).await;
    append(&h.state, 10).await;
    integrate(&h).await;
    append(&h.state, 10).await;
    integrate(&h).await;
    // Restore the state of the first checkpoint: its entries and its tree only.
    sql(
        &h,
        &[
            "DELETE FROM audit_log WHERE seq >= 10",
            "DELETE FROM audit_checkpoints WHERE seq >= 10",
            "DELETE FROM tlog_state",
            "DELETE FROM tlog_tiles",
            "DELETE FROM tlog_checkpoints",
        ],
    )
    .await;
    let mut p = Publisher::open(&h.config.published_checkpoints).unwrap();
    assert_eq!(p.last_size(), 20);
    h.state.ledger.integrate(4096).await.unwrap();
    verify_fails(&h, "restored from an older backup (rollback)").await;
    // New traffic after the restore grows the log past the published size: the
    // published checkpoint of size 20 no longer matches.
    append(&h.state, 15).await;
    integrate_and_publish(&h.state.ledger, &mut p)
        .await
        .unwrap();
    verify_fails(&h, "the published checkpoint of size 20 does not match").await;
}

pub async fn tree_with_two_instances_appending_and_integrating(b: &Backend) {
    let h = Harness::new(b).await;
    let other = h.second_instance().await;
    let mut other_config = h.config.clone();
    other_config.published_checkpoints = h.dir.join("other-checkpoints.log");
    let mut mine = Publisher::open(&h.config.published_checkpoints).unwrap();
    let mut theirs = Publisher::open(&other_config.published_checkpoints).unwrap();
    for _ in 0..4 {
        let (a, b2, _, _) = tokio::join!(
            append(&h.state, 25),
            append(&other, 25),
            integrate_and_publish(&h.state.ledger, &mut mine),
            integrate_and_publish(&other.ledger, &mut theirs),
        );
        let _ = (a, b2);
    }
    integrate_and_publish(&h.state.ledger, &mut mine)
        .await
        .unwrap();
    integrate_and_publish(&other.ledger, &mut theirs)
        .await
        .unwrap();
    // One total order of 200 entries, one tree, and both published files agree with it.
    let report = verify(&h).await.unwrap();
    assert_eq!(report.entries, 200);
    let verifier = checkpoint_verifier(&h.config.gatekeeper_id, &h.state.public_key()).unwrap();
    let theirs_report = verify_tree(
        &other.ledger,
        &other_config.published_checkpoints,
        &verifier,
        &log_origin(&h.config.gatekeeper_id),
        &policy(&h),
    )
    .await
    .unwrap();
    assert_eq!(theirs_report.root, report.root);
    assert!(report.published >= 1 && theirs_report.published >= 1);

    if h.config.database_url.expose().starts_with("postgres") {
        // While one instance integrates (holds the integration lock), another skips
        // its turn; once the first is gone (its transaction ends, as when its process
        // is killed), the other takes over.
        let pool = sqlx::AnyPool::connect(h.config.database_url.expose())
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(727470002)")
            .execute(&mut *tx)
            .await
            .unwrap();
        append(&other, 3).await;
        assert_eq!(other.ledger.integrate(4096).await.unwrap(), None);
        tx.rollback().await.unwrap();
        let cp = other.ledger.integrate(4096).await.unwrap().unwrap();
        assert_eq!(cp.size, 203);
        pool.close().await;
    }
}

/// The S3 server of `scripts/services.sh`, or `None` (the test is skipped, or fails
/// where the services are required).
fn s3_endpoint() -> Option<String> {
    match Backend::from_env()? {
        Backend::PostgresS3 { s3_endpoint, .. } => Some(s3_endpoint),
        Backend::SqliteLocal => None,
    }
}

/// Creates a bucket on the S3 server (moto does not check signatures), with object
/// lock enabled if `lock`.
async fn create_checkpoint_bucket(endpoint: &str, lock: bool) -> String {
    let name = format!("checkpoints-{}", random_hex(6));
    let mut req = reqwest::Client::new().put(format!("{endpoint}/{name}"));
    if lock {
        req = req.header("x-amz-bucket-object-lock-enabled", "true");
    }
    let status = req.send().await.unwrap().status();
    assert!(status.is_success(), "creating bucket {name}: {status}");
    name
}

fn bucket_config(endpoint: &str, bucket: &str, lock_days: Option<u32>) -> PublishBucketConfig {
    PublishBucketConfig {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".into(),
        bucket: bucket.to_owned(),
        prefix: "gk-1/audit".into(),
        access_key_id: "test".into(),
        secret_access_key: countersign_gatekeeper::config::Secret::new("test"),
        object_lock_days: lock_days,
    }
}

async fn verify_bucket(h: &Harness, bucket: &CheckpointBucket) -> Result<TreeReport, String> {
    let verifier = checkpoint_verifier(&h.config.gatekeeper_id, &h.state.public_key()).unwrap();
    let notes = bucket.notes().await?;
    let ledger = h.ledger().await;
    let r = verify_tree_against(
        &ledger,
        notes.into_iter().map(Ok),
        &verifier,
        &log_origin(&h.config.gatekeeper_id),
        &policy(h),
    )
    .await;
    ledger.close().await;
    r
}

/// Integrates and publishes to the bucket; returns the newest size in it.
async fn integrate_to_bucket(h: &Harness, bucket: &CheckpointBucket) -> u64 {
    integrate(h).await;
    let mut p = BucketPublisher::open(bucket.clone()).await.unwrap();
    p.publish_new(&h.state.ledger).await.unwrap();
    p.last_size()
}

pub async fn tree_checkpoints_in_an_object_locked_bucket(b: &Backend) {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let h = Harness::new(b).await;
    let name = create_checkpoint_bucket(&endpoint, true).await;
    let bucket =
        CheckpointBucket::new(bucket_config(&endpoint, &name, Some(1)), BUCKET_DEADLINE).unwrap();
    bucket.check().await.unwrap();
    append(&h.state, 7).await;
    assert_eq!(integrate_to_bucket(&h, &bucket).await, 7);
    append(&h.state, 7).await;
    assert_eq!(integrate_to_bucket(&h, &bucket).await, 14);
    assert_eq!(bucket.sizes().await.unwrap(), vec![7, 14]);
    assert_eq!(verify_bucket(&h, &bucket).await.unwrap().published, 2);

    // Each checkpoint is locked in COMPLIANCE mode: its version cannot be deleted.
    let key = bucket.key(7);
    let text = |a: &Answer| String::from_utf8_lossy(&a.body).into_owned();
    let object = bucket
        .send(Method::HEAD, Some(&key), &[], &[], Vec::new())
        .await
        .unwrap();
    let header = |name: &str| {
        object
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("x-amz-object-lock-mode"), "COMPLIANCE", "{object:?}");
    assert!(
        !header("x-amz-object-lock-retain-until-date").is_empty(),
        "{object:?}"
    );
    let versions = bucket
        .send(
            Method::GET,
            None,
            &[("versions", ""), ("prefix", &key)],
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let versions = text(&versions);
    let version = versions
        .split("<VersionId>")
        .nth(1)
        .and_then(|v| v.split("</VersionId>").next())
        .unwrap();
    let deleted = bucket
        .send(
            Method::DELETE,
            Some(&key),
            &[("versionId", version)],
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        deleted.status,
        reqwest::StatusCode::FORBIDDEN,
        "{deleted:?}"
    );
    assert!(text(&deleted).contains("AccessDenied"), "{deleted:?}");
    assert_eq!(
        bucket.get(7).await.unwrap(),
        h.state.ledger.tree_checkpoints(0, 10).await.unwrap()[0].note
    );
    // The gatekeeper never overwrites one.
    let e = bucket.put(7, "another checkpoint\n").await.unwrap_err();
    assert!(e.contains("already holds another checkpoint"), "{e}");

    // The attacker rewrites a denial into an allow and recomputes everything the
    // database holds: the bucket's checkpoints no longer match.
    let victim = h
        .all_entries()
        .await
        .into_iter()
        .find(|e| e.seq < 6 && e.seq % 5 != 4 && matches!(e.decision, Decision::Deny(_)))
        .unwrap()
        .seq;
    sql(
        &h,
        &[&format!(
            "UPDATE audit_log SET decision = 'allow', error_code = '' WHERE seq = {victim}"
        )],
    )
    .await;
    relink_and_rebuild(&h, victim).await;
    // (The gatekeeper signs checkpoints over the forgery.)
    integrate(&h).await;
    let e = verify_bucket(&h, &bucket).await.unwrap_err();
    assert!(
        e.contains("the published checkpoint of size 7 does not match"),
        "{e}"
    );
}

pub async fn tree_bucket_detects_truncation_and_rollback(b: &Backend) {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let h = Harness::new(b).await;
    let name = create_checkpoint_bucket(&endpoint, true).await;
    let bucket =
        CheckpointBucket::new(bucket_config(&endpoint, &name, Some(1)), BUCKET_DEADLINE).unwrap();
    append(&h.state, 10).await;
    integrate_to_bucket(&h, &bucket).await;
    append(&h.state, 10).await;
    integrate_to_bucket(&h, &bucket).await;
    // Restore the state of the first checkpoint: its entries and its tree only.
    sql(
        &h,
        &[
            "DELETE FROM audit_log WHERE seq >= 10",
            "DELETE FROM audit_checkpoints WHERE seq >= 10",
            "DELETE FROM tlog_state",
            "DELETE FROM tlog_tiles",
            "DELETE FROM tlog_checkpoints",
        ],
    )
    .await;
    h.state.ledger.integrate(4096).await.unwrap();
    let e = verify_bucket(&h, &bucket).await.unwrap_err();
    assert!(
        e.contains("a checkpoint of size 20 was published, but the database holds 10 entries"),
        "{e}"
    );
    // Publishing the restored log's checkpoints does not replace the bucket's.
    append(&h.state, 10).await;
    integrate(&h).await;
    let mut p = BucketPublisher::open(bucket.clone()).await.unwrap();
    assert_eq!(p.last_size(), 20);
    // Nothing past 20 is new; the restored log's own checkpoint of size 20 is
    // refused as another one.
    assert_eq!(p.publish_new(&h.state.ledger).await.unwrap(), 0);
    let restored = h.state.ledger.tree_checkpoints(19, 1).await.unwrap();
    assert_eq!(restored[0].size, 20);
    let e = bucket.put(20, &restored[0].note).await.unwrap_err();
    assert!(e.contains("already holds another checkpoint"), "{e}");
    let e = verify_bucket(&h, &bucket).await.unwrap_err();
    assert!(
        e.contains("the published checkpoint of size 20 does not match"),
        "{e}"
    );
}

pub async fn tree_bucket_without_object_lock_is_refused(_b: &Backend) {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let name = create_checkpoint_bucket(&endpoint, false).await;
    let locked =
        CheckpointBucket::new(bucket_config(&endpoint, &name, Some(1)), BUCKET_DEADLINE).unwrap();
    let e = locked.check().await.unwrap_err();
    assert!(e.contains("does not have object lock enabled"), "{e}");
    // Without a lock configured, the same bucket is fine.
    CheckpointBucket::new(bucket_config(&endpoint, &name, None), BUCKET_DEADLINE)
        .unwrap()
        .check()
        .await
        .unwrap();
    // A bucket that does not exist is not reachable.
    let e = CheckpointBucket::new(
        bucket_config(&endpoint, "no-such-bucket", None),
        BUCKET_DEADLINE,
    )
    .unwrap()
    .check()
    .await
    .unwrap_err();
    assert!(e.contains("is not reachable"), "{e}");
}

pub async fn tree_integrator_publishes_to_the_bucket_and_counts_failures(b: &Backend) {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let name = create_checkpoint_bucket(&endpoint, true).await;
    let section = |bucket: &str| {
        format!(
            "checkpoint_interval_ms = 50\n\n[log.publish_bucket]\nendpoint = \"{endpoint}\"\n\
             bucket = \"{bucket}\"\nprefix = \"gk-1/audit\"\naccess_key_id = \"test\"\n\
             secret_access_key = \"test\"\nobject_lock_days = 1\n"
        )
    };
    let h = Harness::with_extra(b, &section(&name)).await;
    let bucket =
        CheckpointBucket::new(h.config.publish_bucket.clone().unwrap(), BUCKET_DEADLINE).unwrap();
    countersign_gatekeeper::transparency::spawn_integrator(h.state.clone());
    append(&h.state, 9).await;
    let metric = |state: &AppState, name: &str| {
        let text = state.metrics.render(None, 0);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(&h.state, "countersign_checkpoint_published_size") != "9" {
        assert!(std::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(bucket.sizes().await.unwrap().last(), Some(&9));
    assert_eq!(verify_bucket(&h, &bucket).await.unwrap().entries, 9);
    assert_eq!(
        metric(&h.state, "countersign_checkpoint_publish_failures_total"),
        "0"
    );

    // A bucket that is gone: requests still succeed, the failures are counted.
    let broken = Harness::with_extra(b, &section("no-such-bucket")).await;
    countersign_gatekeeper::transparency::spawn_integrator(broken.state.clone());
    append(&broken.state, 3).await;
    while metric(
        &broken.state,
        "countersign_checkpoint_publish_failures_total",
    ) == "0"
    {
        assert!(std::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The file publication beside it is not held up.
    while !std::fs::read_to_string(&broken.config.published_checkpoints)
        .unwrap_or_default()
        .contains("\n3\n")
    {
        assert!(std::time::Instant::now() < deadline, "the file is held up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&broken.state, "countersign_checkpoint_published_size"),
        "0"
    );
}
