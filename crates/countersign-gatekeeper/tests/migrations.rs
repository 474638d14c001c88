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

both_backends!(
    upgrades_a_database_created_before_migrations,
    refuses_a_newer_or_altered_schema
);
