//! The first page (100 entries) of `GET /v1/audit/search` on a SQLite log of
//! `COUNTERSIGN_BENCH_SEARCH_ENTRIES` entries (default 1,000,000), for the filters the
//! audit console uses (a group filter as the members it expands to), with the search indexes (migration 5, on `audit_search` since
//! migration 6) and side by side without them (the baseline).
//!
//! ```text
//! cargo bench -p countersign-gatekeeper --bench audit_search
//! ```
//!
//! The log is filled by one `INSERT … SELECT` over a generated series (the entries'
//! hashes and signatures are not valid: the search does not check them; the headers
//! are stored as the first bytes of longer values, so no SHA-256 must match); the time is
//! that of `Ledger::search`, the median of 5 runs after one warm-up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::ErrorCode;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::{GatekeeperId, KeyId};
use countersign_gatekeeper::audit::{AuditFilter, GroupMembers};
use countersign_gatekeeper::ledger::{CheckpointSigner, Ledger};
use std::time::{Duration, Instant};

/// Fills `audit_log` with `n` entries: 1,000 subjects, 200 client addresses, two
/// buckets, GET/PUT/LIST, one key per entry under 100 prefixes, 1% denied.
const FILL: &str = "
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)
INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper, client_ip,
  operation, bucket, object_key, subject, decision, error_code, bytes, latency_us,
  request, request_sha256, request_length, signatures, signatures_sha256,
  signatures_length)
SELECT i, zeroblob(32), zeroblob(32), 1700000000000 + i * 10, 'gk.bench',
  '10.0.' || (i % 200) || '.' || (i % 7),
  CAST(CASE i % 3 WHEN 0 THEN 'GET' WHEN 1 THEN 'PUT' ELSE 'LIST' END AS BLOB),
  CAST(CASE i % 4 WHEN 0 THEN 'archive' ELSE 'reports' END AS BLOB),
  CAST('org-' || (i % 100) || '/visit-' || i || '.pdf' AS BLOB),
  CAST('user-' || (i % 1000) AS BLOB),
  CASE WHEN i % 100 = 7 THEN 'deny' ELSE 'allow' END,
  CASE WHEN i % 100 = 7 THEN (CASE i % 300 WHEN 7 THEN 'ip_denied' ELSE 'bad_signature' END)
       ELSE '' END,
  1024, 500, zeroblob(200), zeroblob(32), 5000, zeroblob(150), zeroblob(32), 5000
FROM s";

/// Makes the filled entries searchable through `audit_search` as the integrator
/// would (migration 6): their search columns, and a tree size covering them (the
/// search reads no other tree state).
const INDEX: &str = "
INSERT INTO audit_search (seq, time_ms, client_ip, operation, bucket, object_key, subject,
  decision, error_code)
SELECT seq, time_ms, client_ip, operation, bucket, object_key, subject, decision, error_code
FROM audit_log;
INSERT INTO tlog_state (id, size, edge) SELECT 1, COUNT(*), x'' FROM audit_log;";

/// The search indexes (those of migration 5, on `audit_search` since migration 6),
/// dropped for the baseline (with version 1's subject index put back).
const DROP_INDEXES: &str = "
DROP INDEX audit_search_subject; DROP INDEX audit_search_client_ip; DROP INDEX audit_search_bucket;
DROP INDEX audit_search_key; DROP INDEX audit_search_bucket_key; DROP INDEX audit_search_operation;
DROP INDEX audit_search_decision; DROP INDEX audit_search_error;
CREATE INDEX audit_subject ON audit_search (subject);";

fn filter(f: impl FnOnce(&mut AuditFilter)) -> AuditFilter {
    let mut out = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    f(&mut out);
    out
}

/// A group filter over `count` subjects `{prefix}0`, `{prefix}1`, …
fn group(prefix: &str, count: usize) -> Option<GroupMembers> {
    Some(GroupMembers {
        name: format!("{prefix}{count}"),
        members: (0..count).map(|i| format!("{prefix}{i}")).collect(),
    })
}

/// The median time of the first page of `f`, and the page's size.
async fn first_page(ledger: &Ledger, f: &AuditFilter) -> (Duration, usize) {
    let found = ledger.search(f).await.unwrap().len();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let page = ledger.search(f).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(page.len(), found);
    }
    times.sort();
    (times[2], found)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("COUNTERSIGN_BENCH_SEARCH_ENTRIES")
        .map_or(1_000_000, |s| s.trim().parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    );
    let signer = CheckpointSigner {
        gatekeeper: GatekeeperId::parse("gk.bench").unwrap(),
        key: SigningKey::from_bytes(&[7; 32]),
        key_id: KeyId::parse("gatekeeper-1").unwrap(),
    };
    let ledger = Ledger::connect(&url, signer, 1000, Duration::from_secs(60))
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&url).await.unwrap();
    let t = Instant::now();
    sqlx::query(FILL)
        .bind(i64::try_from(n).unwrap())
        .execute(&raw)
        .await
        .unwrap();
    sqlx::raw_sql(INDEX).execute(&raw).await.unwrap();
    println!("filled {n} entries in {:.1} s", t.elapsed().as_secs_f64());
    let mid = 1_700_000_000_000 + n * 5;
    let cases: Vec<(&str, AuditFilter)> = vec![
        ("no filter", filter(|_| {})),
        ("subject", filter(|f| f.subject = Some("user-7".into()))),
        (
            "client ip",
            filter(|f| f.client_ip = "10.0.7.0".parse().ok()),
        ),
        (
            "decision=deny",
            filter(|f| f.decision = Some("deny".into())),
        ),
        (
            "error=ip_denied",
            filter(|f| f.error = Some(ErrorCode::IpDenied)),
        ),
        (
            "bucket=archive operation=PUT",
            filter(|f| {
                f.bucket = Some("archive".into());
                f.operation = Some("PUT".into());
            }),
        ),
        (
            "one object (bucket + key)",
            filter(|f| {
                f.bucket = Some("reports".into());
                f.key = Some(format!("org-5/visit-{}.pdf", n / 2 + 5));
            }),
        ),
        (
            "key prefix org-42/",
            filter(|f| f.key_prefix = Some("org-42/".into())),
        ),
        (
            "deny in the 2nd half",
            filter(|f| {
                f.decision = Some("deny".into());
                f.from_ms = Some(mid);
            }),
        ),
        (
            "subject with no entry",
            filter(|f| f.subject = Some("nobody".into())),
        ),
        (
            "group of 10 subjects",
            filter(|f| f.group = group("user-", 10)),
        ),
        (
            "group of 300 subjects",
            filter(|f| f.group = group("user-", 300)),
        ),
        (
            "group of 10 + decision=deny",
            filter(|f| {
                f.group = group("user-", 10);
                f.decision = Some("deny".into());
            }),
        ),
        (
            "group of 10 in the 2nd half",
            filter(|f| {
                f.group = group("user-", 10);
                f.from_ms = Some(mid);
            }),
        ),
        (
            "group of 10 with no entry",
            filter(|f| f.group = group("nobody-", 10)),
        ),
    ];
    let mut indexed = Vec::new();
    for (_, f) in &cases {
        indexed.push(first_page(&ledger, f).await);
    }
    sqlx::raw_sql(DROP_INDEXES).execute(&raw).await.unwrap();
    println!("first page (limit 100) of {n} entries: search indexes vs none");
    println!(
        "{:<30} {:>6} {:>12} {:>12} {:>8}",
        "filter", "rows", "indexed ms", "baseline ms", "ratio"
    );
    for ((name, f), (t, rows)) in cases.iter().zip(indexed) {
        let (b, base_rows) = first_page(&ledger, f).await;
        assert_eq!(rows, base_rows, "{name}");
        println!(
            "{name:<30} {rows:>6} {:>12.2} {:>12.2} {:>7.1}x",
            t.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / t.as_secs_f64().max(1e-9)
        );
    }
}
