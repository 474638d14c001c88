//! Versioned schema migrations: a database created before migrations existed is
//! adopted with its rows; a database migrated by a newer gatekeeper, or whose
//! applied migration was altered, is refused with a sentence saying why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::{GatekeeperId, KeyId};
use countersign_gatekeeper::ledger::{CheckpointSigner, Dialect, Ledger, LedgerError};

/// A fresh, empty database of `backend` (a SQLite file in `dir`, or a new
/// PostgreSQL database), with its dialect.
async fn fresh_database(backend: &Backend, dir: &std::path::Path) -> (String, Dialect) {
    match backend {
        Backend::SqliteLocal => (
            format!("sqlite://{}?mode=rwc", dir.join("old.db").display()),
            Dialect::Sqlite,
        ),
        Backend::PostgresS3 { pg_url, .. } => (create_pg_database(pg_url).await, Dialect::Postgres),
    }
}

async fn connect(url: &str) -> Result<Ledger, LedgerError> {
    let signer = CheckpointSigner {
        gatekeeper: GatekeeperId::parse(GK).unwrap(),
        key: SigningKey::from_bytes(&[7; 32]),
        key_id: KeyId::parse("gatekeeper-1").unwrap(),
    };
    Ledger::connect(url, signer, 1000, std::time::Duration::from_secs(5)).await
}

async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

async fn execute(pool: &sqlx::AnyPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

/// The schema as the gatekeeper created it before versioned migrations (version 1
/// is exactly that schema), with a stored object in its index.
async fn create_pre_migration_database(url: &str, dialect: Dialect) {
    let pool = raw_pool(url).await;
    let schema = match dialect {
        Dialect::Sqlite => include_str!("../migrations/sqlite/0001_initial.sql"),
        Dialect::Postgres => include_str!("../migrations/postgres/0001_initial.sql"),
    };
    execute(&pool, schema).await;
    let blob = |hex: &str| match dialect {
        Dialect::Sqlite => format!("X'{hex}'"),
        Dialect::Postgres => format!("'\\x{hex}'::bytea"),
    };
    execute(
        &pool,
        &format!(
            "INSERT INTO objects (bucket, object_key, state, storage_name, upload_id, deadline,
             size, sha256, content_type, stored_at, manifest, manifest_signatures)
             VALUES ('reports', 'org-1/old.pdf', 'stored', 'o/old', '', 0, 3, {}, 'application/pdf',
             1700000000, {}, 'sig')",
            blob(&"ab".repeat(32)),
            blob("6d")
        ),
    )
    .await;
    pool.close().await;
}

async fn applied_versions(url: &str) -> Vec<i64> {
    use sqlx::Row as _;
    let pool = raw_pool(url).await;
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter().map(|r| r.get::<i64, _>(0)).collect()
}

async fn upgrades_a_database_created_before_migrations(backend: &Backend) {
    let dir = temp_dir();
    let (url, dialect) = fresh_database(backend, dir.path()).await;
    create_pre_migration_database(&url, dialect).await;

    let ledger = connect(&url).await.unwrap();
    let kept = ledger.object("reports", "org-1/old.pdf").await.unwrap();
    let kept = kept.expect("the object indexed before the upgrade is still indexed");
    assert_eq!((kept.size, kept.sha256), (3, [0xab; 32]));
    ledger.close().await;
    let every: Vec<i64> = countersign_gatekeeper::ledger::migrations(dialect)
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied_versions(&url).await, every);

    // Starting again changes nothing.
    connect(&url).await.unwrap().close().await;
    assert_eq!(applied_versions(&url).await, every);
}

async fn refuses_a_newer_or_altered_schema(backend: &Backend) {
    let dir = temp_dir();
    let (url, _) = fresh_database(backend, dir.path()).await;
    connect(&url).await.unwrap().close().await;
    let pool = raw_pool(&url).await;

    // A migration this version does not know: a newer gatekeeper ran here.
    execute(
        &pool,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         SELECT 999, 'from the future', success, checksum, execution_time
         FROM _sqlx_migrations WHERE version = 1",
    )
    .await;
    let e = connect(&url)
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(
        matches!(&e, LedgerError::Schema(m) if m.contains("migration 999") && m.contains("newer gatekeeper")),
        "{e}"
    );

    // Version 1 as applied differs from this version's.
    execute(&pool, "DELETE FROM _sqlx_migrations WHERE version = 999").await;
    execute(
        &pool,
        "UPDATE _sqlx_migrations SET checksum = substr(checksum, 2) WHERE version = 1",
    )
    .await;
    let e = connect(&url)
        .await
        .err()
        .expect("an altered migration is refused");
    assert!(
        matches!(&e, LedgerError::Schema(m) if m.contains("migration 1 applied to the database differs")),
        "{e}"
    );
    pool.close().await;
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::Backend::SqliteLocal).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(b) = super::Backend::from_env() {
                        super::$name(&b).await;
                    }
                }
            )*
        }
    };
}

/// An audit entry written before entries had a request id (format version 1) reads
/// back as the same bytes after the upgrade, and the next entry (version 2) chains
/// to it and joins the same tree.
async fn entries_written_before_the_request_id_keep_verifying(backend: &Backend) {
    use countersign_core::audit::{AuditEntry, CapturedHeader, GENESIS, verify_chain};
    use countersign_core::merkle::{MemoryTree, leaf_hash};
    use countersign_core::{Decision, ErrorCode};
    let dir = temp_dir();
    let (url, dialect) = fresh_database(backend, dir.path()).await;
    create_pre_migration_database(&url, dialect).await;
    let old = AuditEntry {
        seq: 0,
        prev_sha256: GENESIS,
        time_ms: 1_700_000_000_000,
        gatekeeper: GatekeeperId::parse(GK).unwrap(),
        request_id: None,
        client_ip: "192.0.2.1".parse().unwrap(),
        operation: b"GET".to_vec(),
        bucket: b"reports".to_vec(),
        key: b"org-1/old.pdf".to_vec(),
        subject: b"user-1".to_vec(),
        decision: Decision::Deny(ErrorCode::Expired),
        bytes: 0,
        latency_us: 9,
        request: CapturedHeader::whole(b"cmVx"),
        signatures: CapturedHeader::whole(b""),
    };
    let pool = raw_pool(&url).await;
    let q = "INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper,
         client_ip, operation, bucket, object_key, subject, decision, error_code, bytes,
         latency_us, request, request_sha256, request_length, signatures, signatures_sha256,
         signatures_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let q = match dialect {
        Dialect::Sqlite => q.to_owned(),
        Dialect::Postgres => {
            (1..=20).fold(q.to_owned(), |q, n| q.replacen('?', &format!("${n}"), 1))
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(0i64)
        .bind(GENESIS.to_vec())
        .bind(old.hash().to_vec())
        .bind(1_700_000_000_000i64)
        .bind(GK.to_owned())
        .bind("192.0.2.1".to_owned())
        .bind(old.operation.clone())
        .bind(old.bucket.clone())
        .bind(old.key.clone())
        .bind(old.subject.clone())
        .bind("deny".to_owned())
        .bind("expired".to_owned())
        .bind(0i64)
        .bind(9i64)
        .bind(old.request.stored().to_vec())
        .bind(old.request.sha256().to_vec())
        .bind(4i64)
        .bind(Vec::<u8>::new())
        .bind(old.signatures.sha256().to_vec())
        .bind(0i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let ledger = connect(&url).await.unwrap();
    let mut draft = ledger_draft();
    draft.request_id = b"0123456789abcdef0123456789abcdef".to_vec();
    let new = ledger.append(draft, None).await.unwrap();
    let entries = ledger.entries(0, 10).await.unwrap();
    assert_eq!(entries, vec![old.clone(), new.clone()]);
    assert!(
        entries[0]
            .encode()
            .starts_with(b"countersign/v1/audit-entry\n")
    );
    assert!(
        entries[1]
            .encode()
            .starts_with(b"countersign/v2/audit-entry\n")
    );
    assert_eq!(new.prev_sha256, old.hash());
    assert_eq!(verify_chain(&entries, 0, GENESIS).unwrap().1, 2);
    // The JSON record (search, export) names the request id of version-2 entries only,
    // and reads back to the same entries.
    use countersign_gatekeeper::audit::AuditRecord;
    let records: Vec<AuditRecord> = entries.iter().map(AuditRecord::from_entry).collect();
    assert_eq!(records[0].request_id, None);
    assert_eq!(
        records[1].request_id.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    for (record, entry) in records.iter().zip(&entries) {
        let json = serde_json::to_string(record).unwrap();
        assert_eq!(json.contains("request_id"), entry.request_id.is_some());
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(&back.to_entry().unwrap(), entry);
    }
    let cp = ledger.integrate(100).await.unwrap().unwrap();
    let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(&e.encode())).collect());
    let root = tree.root(2).unwrap();
    assert_eq!(cp.size, 2);
    let text = countersign_core::note::SignedNote::parse(cp.note.as_bytes()).unwrap();
    let body = countersign_core::note::Checkpoint::parse_body(text.text()).unwrap();
    assert_eq!(body.root(), &root);
    ledger.close().await;
}

fn ledger_draft() -> countersign_gatekeeper::ledger::AuditDraft {
    countersign_gatekeeper::ledger::AuditDraft {
        time_ms: 1_700_000_001_000,
        request_id: Vec::new(),
        client_ip: "192.0.2.2".parse().unwrap(),
        operation: b"GET".to_vec(),
        bucket: b"reports".to_vec(),
        key: b"org-1/old.pdf".to_vec(),
        subject: b"user-1".to_vec(),
        decision: countersign_core::Decision::Allow,
        bytes: 3,
        latency_us: 10,
        request: countersign_core::audit::CapturedHeader::whole(b""),
        signatures: countersign_core::audit::CapturedHeader::whole(b""),
    }
}

/// Binds `?` placeholders as `$n` on PostgreSQL.
fn placeholders(dialect: Dialect, q: &str) -> String {
    match dialect {
        Dialect::Sqlite => q.to_owned(),
        Dialect::Postgres => {
            let n = q.matches('?').count();
            (1..=n).fold(q.to_owned(), |q, n| q.replacen('?', &format!("${n}"), 1))
        }
    }
}

/// A database at schema version 5 (the search indexes on `audit_log`) holding
/// `entries`, of which the first `integrated` are in its Merkle tree (state and tiles
/// as the integrator of version 5 stored them).
async fn create_version_5_database(
    url: &str,
    dialect: Dialect,
    entries: &[countersign_core::audit::AuditEntry],
    integrated: usize,
) {
    use countersign_core::merkle::{TreeBuilder, leaf_hash};
    use countersign_core::tiles::{TILE_HEIGHT, TILE_WIDTH};
    let pool = raw_pool(url).await;
    let five: Vec<_> = countersign_gatekeeper::ledger::migrations(dialect)
        .iter()
        .filter(|m| m.version <= 5)
        .cloned()
        .collect();
    sqlx::migrate::Migrator::with_migrations(five)
        .run(&pool)
        .await
        .unwrap();
    let q = placeholders(
        dialect,
        "INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper,
         client_ip, operation, bucket, object_key, subject, decision, error_code, bytes,
         latency_us, request, request_sha256, request_length, signatures, signatures_sha256,
         signatures_length, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    for e in entries {
        sqlx::query(sqlx::AssertSqlSafe(q.clone()))
            .bind(i64::try_from(e.seq).unwrap())
            .bind(e.prev_sha256.to_vec())
            .bind(e.hash().to_vec())
            .bind(i64::try_from(e.time_ms).unwrap())
            .bind(e.gatekeeper.as_str().to_owned())
            .bind(e.client_ip.to_string())
            .bind(e.operation.clone())
            .bind(e.bucket.clone())
            .bind(e.key.clone())
            .bind(e.subject.clone())
            .bind(e.decision.as_str().to_owned())
            .bind(e.decision.error().map_or("", |c| c.as_str()).to_owned())
            .bind(i64::try_from(e.bytes).unwrap())
            .bind(i64::try_from(e.latency_us).unwrap())
            .bind(e.request.stored().to_vec())
            .bind(e.request.sha256().to_vec())
            .bind(i64::try_from(e.request.length()).unwrap())
            .bind(e.signatures.stored().to_vec())
            .bind(e.signatures.sha256().to_vec())
            .bind(i64::try_from(e.signatures.length()).unwrap())
            .bind(e.request_id.clone())
            .execute(&pool)
            .await
            .unwrap();
    }
    let mut tree = TreeBuilder::new();
    let mut tiles = std::collections::BTreeMap::<(u32, u64), Vec<u8>>::new();
    for e in &entries[..integrated] {
        tree.push_with(leaf_hash(&e.encode()), |level, index, hash| {
            if level % TILE_HEIGHT == 0 {
                tiles
                    .entry((level / TILE_HEIGHT, index / TILE_WIDTH))
                    .or_default()
                    .extend_from_slice(hash);
            }
        })
        .unwrap();
    }
    for ((level, index), hashes) in tiles {
        sqlx::query(sqlx::AssertSqlSafe(placeholders(
            dialect,
            "INSERT INTO tlog_tiles (level, idx, hashes) VALUES (?, ?, ?)",
        )))
        .bind(i64::from(level))
        .bind(i64::try_from(index).unwrap())
        .bind(hashes)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(placeholders(
        dialect,
        "INSERT INTO tlog_state (id, size, edge) VALUES (1, ?, ?)",
    )))
    .bind(i64::try_from(tree.size()).unwrap())
    .bind(tree.edge().concat())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

async fn count(url: &str, table: &str) -> i64 {
    use sqlx::Row as _;
    let pool = raw_pool(url).await;
    let n = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>(0);
    pool.close().await;
    n
}

/// Migration 6 moves the search columns of the integrated entries of a version-5
/// database into `audit_search`; the search finds every old entry (integrated ones
/// through the new table, the rest in the log's tail), the integrator goes on from
/// the old tree and fills the table for the rest, and the tree verifies.
async fn a_version_5_log_migrates_and_stays_searchable(backend: &Backend) {
    use countersign_core::audit::{AuditEntry, CapturedHeader, GENESIS, verify_chain};
    use countersign_core::merkle::{MemoryTree, leaf_hash};
    use countersign_core::{Decision, ErrorCode};
    use countersign_gatekeeper::audit::AuditFilter;
    let dir = temp_dir();
    let (url, dialect) = fresh_database(backend, dir.path()).await;
    let mut entries: Vec<AuditEntry> = Vec::new();
    for i in 0..5u64 {
        let entry = AuditEntry {
            seq: i,
            prev_sha256: entries.last().map_or(GENESIS, AuditEntry::hash),
            time_ms: 1_700_000_000_000 + i,
            gatekeeper: GatekeeperId::parse(GK).unwrap(),
            request_id: Some(format!("{i:032x}").into_bytes()),
            client_ip: format!("192.0.2.{}", i % 2).parse().unwrap(),
            operation: b"GET".to_vec(),
            bucket: b"reports".to_vec(),
            key: format!("org-1/{i}.pdf").into_bytes(),
            subject: b"user-1".to_vec(),
            decision: if i % 2 == 1 {
                Decision::Deny(ErrorCode::Expired)
            } else {
                Decision::Allow
            },
            bytes: i,
            latency_us: 9,
            request: CapturedHeader::whole(b"cmVx"),
            signatures: CapturedHeader::whole(b"c2ln"),
        };
        entries.push(entry);
    }
    create_version_5_database(&url, dialect, &entries, 3).await;

    let ledger = connect(&url).await.unwrap();
    assert_eq!(
        count(&url, "audit_search").await,
        3,
        "the integrated entries"
    );
    let search = |f: fn(&mut AuditFilter)| {
        let mut filter = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        f(&mut filter);
        let ledger = ledger.clone();
        async move { ledger.search(&filter).await.unwrap() }
    };
    assert_eq!(search(|f| f.subject = Some("user-1".into())).await, entries);
    let denied: Vec<_> = entries.iter().filter(|e| e.seq % 2 == 1).cloned().collect();
    assert_eq!(search(|f| f.decision = Some("deny".into())).await, denied);
    assert_eq!(
        search(|f| f.key_prefix = Some("org-1/4".into())).await,
        entries[4..]
    );
    // A page that ends in the tree, then one that starts there.
    let page = search(|f| f.limit = 2).await;
    assert_eq!(page, entries[..2]);
    let page = search(|f| {
        f.after_seq = 2;
        f.client_ip = "192.0.2.0".parse().ok();
    })
    .await;
    assert_eq!(page, vec![entries[2].clone(), entries[4].clone()]);

    // The next entry chains to the old ones; the integrator extends the old tree.
    let next = ledger.append(ledger_draft(), None).await.unwrap();
    entries.push(next);
    assert_eq!(
        verify_chain(&ledger.entries(0, 100).await.unwrap(), 0, GENESIS)
            .unwrap()
            .1,
        6
    );
    let cp = ledger.integrate(100).await.unwrap().unwrap();
    assert_eq!(cp.size, 6);
    let tree = MemoryTree::from_leaves(entries.iter().map(|e| leaf_hash(&e.encode())).collect());
    let text = countersign_core::note::SignedNote::parse(cp.note.as_bytes()).unwrap();
    let body = countersign_core::note::Checkpoint::parse_body(text.text()).unwrap();
    assert_eq!(body.root(), &tree.root(6).unwrap());
    assert_eq!(count(&url, "audit_search").await, 6);
    assert_eq!(search(|f| f.subject = Some("user-1".into())).await, entries);
    assert_eq!(search(|f| f.subject = Some("user-2".into())).await, vec![]);
    ledger.close().await;
}

both_backends!(
    upgrades_a_database_created_before_migrations,
    refuses_a_newer_or_altered_schema,
    entries_written_before_the_request_id_keep_verifying,
    a_version_5_log_migrates_and_stays_searchable
);
