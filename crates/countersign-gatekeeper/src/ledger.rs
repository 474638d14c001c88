//! The database: the hash-chained audit log with signed checkpoints, the nonce table
//! that stops replays across every instance sharing the database, and the object
//! index that answers LIST and HEAD without asking S3.
//!
//! One implementation speaks both SQLite (the embedded default) and PostgreSQL (for
//! several instances) through sqlx's `Any` driver; the few differences are in
//! [`Dialect`]. The same test suite runs against both.

mod encryptions;
mod object_keys;
mod pg_sequencer;
mod progress;
mod sqlite_thread;
pub use encryptions::Encryption;
pub use object_keys::KeyUse;

use crate::audit::AuditFilter;
use crate::encryption::WrappedKey;
use countersign_core::audit::{AuditEntry, CapturedHeader, Checkpoint, GENESIS};
use countersign_core::{Decision, ErrorCode, GatekeeperId, KeyId, ed25519_dalek::SigningKey};
use rusqlite::OptionalExtension as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row as _};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};

mod tlog;
pub use tlog::{CosignedCheckpoint, TreeCheckpoint, log_origin};

/// A database failure. Callers answer `audit_unavailable` (fail closed); the detail
/// goes to the server log only.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite refused or could not be reached on the writer thread's connection.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row cannot be read back (tampering or a bug).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database did not answer within its deadline.
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The transaction that carried this append and others failed (detail: why).
    #[error("the append batch failed: {0}")]
    Batch(String),
    /// The sequencer is gone (the ledger is shutting down).
    #[error("the audit sequencer has stopped")]
    Sequencer,
    /// The database's schema cannot be brought to this version's (detail: why).
    #[error("database schema: {0}")]
    Schema(String),
}

/// The schema migrations of `dialect`, embedded in the binary: version N is
/// `migrations/<dialect>/000N_*.sql`. Applied ones are recorded in the table
/// `_sqlx_migrations` with their checksum.
pub fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let files: &[(i64, &str, &'static str)] = match dialect {
        Dialect::Sqlite => &[
            (
                1,
                "initial",
                include_str!("../migrations/sqlite/0001_initial.sql"),
            ),
            (
                2,
                "audit request id",
                include_str!("../migrations/sqlite/0002_audit_request_id.sql"),
            ),
            (
                3,
                "encryptions",
                include_str!("../migrations/sqlite/0003_encryptions.sql"),
            ),
            (
                4,
                "witness cosignatures",
                include_str!("../migrations/sqlite/0004_witness_cosignatures.sql"),
            ),
            (
                5,
                "audit search indexes",
                include_str!("../migrations/sqlite/0005_audit_search_indexes.sql"),
            ),
            (
                6,
                "audit search table",
                include_str!("../migrations/sqlite/0006_audit_search_table.sql"),
            ),
        ],
        Dialect::Postgres => &[
            (
                1,
                "initial",
                include_str!("../migrations/postgres/0001_initial.sql"),
            ),
            (
                2,
                "audit request id",
                include_str!("../migrations/postgres/0002_audit_request_id.sql"),
            ),
            (
                3,
                "encryptions",
                include_str!("../migrations/postgres/0003_encryptions.sql"),
            ),
            (
                4,
                "witness cosignatures",
                include_str!("../migrations/postgres/0004_witness_cosignatures.sql"),
            ),
            (
                5,
                "audit search indexes",
                include_str!("../migrations/postgres/0005_audit_search_indexes.sql"),
            ),
            (
                6,
                "audit search table",
                include_str!("../migrations/postgres/0006_audit_search_table.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Brings the schema to this version's: the embedded migrations of the dialect
/// ([`migrations`]) not yet applied run in order, each in a transaction, under the
/// database's migration lock (on PostgreSQL an advisory lock, so instances starting
/// together migrate once). A database migrated by a newer gatekeeper, or whose applied
/// migration differs from this version's, is refused.
async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Sqlite {
        sqlx::query("PRAGMA journal_mode=WAL").execute(pool).await?;
    }
    migrations(dialect)
        .run(pool)
        .await
        .map_err(|e| LedgerError::Schema(schema_error(&e)))
}

/// A sentence for an operator out of a migration failure.
fn schema_error(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::VersionMissing(v) => format!(
            "the database has migration {v}, which this gatekeeper does not know: it was \
             upgraded by a newer gatekeeper; run that version (or restore a backup taken \
             before the upgrade)"
        ),
        MigrateError::VersionMismatch(v) => format!(
            "migration {v} applied to the database differs from this gatekeeper's migration \
             {v}; the schema was changed by something else"
        ),
        MigrateError::Dirty(v) => {
            format!("migration {v} was left half-applied; restore the database from a backup")
        }
        other => other.to_string(),
    }
}

type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// The SQL flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, one file, one writer.
    Sqlite,
    /// PostgreSQL, shared by several gatekeeper instances.
    Postgres,
}

/// What the gatekeeper signs checkpoints with.
#[derive(Clone)]
pub struct CheckpointSigner {
    /// The gatekeeper's id.
    pub gatekeeper: GatekeeperId,
    /// Its signing key.
    pub key: SigningKey,
    /// The key's id.
    pub key_id: KeyId,
}

/// An audit entry before it has a place in the chain.
#[derive(Clone, Debug)]
pub struct AuditDraft {
    /// Unix milliseconds of the decision.
    pub time_ms: u64,
    /// The request id (`X-Request-Id`); empty for an entry of no HTTP request.
    pub request_id: Vec<u8>,
    /// Client address.
    pub client_ip: IpAddr,
    /// Operation, as received or learned.
    pub operation: Vec<u8>,
    /// Bucket as requested (bytes as received).
    pub bucket: Vec<u8>,
    /// Key or prefix as requested (bytes as received).
    pub key: Vec<u8>,
    /// Subject, if parsed.
    pub subject: Vec<u8>,
    /// Decision.
    pub decision: Decision,
    /// Body bytes.
    pub bytes: u64,
    /// Microseconds from arrival to decision.
    pub latency_us: u64,
    /// The `countersign-request` header value as received (or its prefix).
    pub request: CapturedHeader,
    /// The `countersign-signature` header value as received (or its prefix).
    pub signatures: CapturedHeader,
}

/// A row of the object index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedObject {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The opaque name the bytes are stored under (see `storage`).
    pub storage_name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
    /// Media type.
    pub content_type: String,
    /// Unix seconds of the store.
    pub stored_at: u64,
    /// Signed manifest bytes.
    pub manifest: Vec<u8>,
    /// The gatekeeper's signature list over the manifest.
    pub manifest_signatures: String,
}

/// One object of a listing page (LIST reads no manifest blobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
    /// Media type.
    pub content_type: String,
    /// Unix seconds of the store.
    pub stored_at: u64,
}

/// A reservation of a key by an upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The opaque storage name chosen for the upload.
    pub storage_name: String,
    /// The storage's multipart upload id, once one was started (else empty).
    pub upload_id: String,
    /// Unix seconds after which the upload is dead for certain: its request was cut at
    /// its signed `expires-at`, before this.
    pub deadline: u64,
}

/// A connection whose transaction failed (or timed out) may still be inside it: a
/// failed COMMIT on SQLite leaves the transaction open, and every later statement on
/// that connection would run inside it and never commit. Such a connection is closed
/// instead of going back to the pool.
fn discard_on_error<T>(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    r: Result<T>,
) -> Result<T> {
    if r.is_err() {
        conn.close_on_drop();
    }
    r
}

/// What [`Ledger::reserve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// The key is reserved for this upload.
    Reserved,
    /// The key is stored or being uploaded; nothing was reserved.
    Taken,
    /// The request's nonce is already recorded; nothing was reserved.
    Replayed,
}

/// A nonce to record with an audit entry, until `until` (Unix seconds).
#[derive(Clone, Copy, Debug)]
pub struct NonceUse {
    /// The request's nonce.
    pub nonce: [u8; 16],
    /// When it may be forgotten: the end of the request's replay window.
    pub until: u64,
}

/// The smallest string greater than every string that starts with `prefix`, in byte
/// (= code point) order: the prefix with its last character incremented (carrying
/// past U+10FFFF, skipping surrogates). `None` if there is no such bound (an empty
/// prefix, or one of only U+10FFFF).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Canonical checkpoint bytes.
    pub body: Vec<u8>,
    /// The gatekeeper's signature list over them.
    pub signatures: String,
}

/// The database handle; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
    dialect: Dialect,
    signer: Arc<CheckpointSigner>,
    append_lock: Arc<Mutex<()>>,
    writer: Writer,
    deadline: std::time::Duration,
}

/// Who writes the audit log's appends in this process.
#[derive(Clone)]
enum Writer {
    /// SQLite: a thread with its own connection, which also runs the request path's
    /// other database work (one hop per request instead of one per statement).
    Sqlite(sqlite_thread::SqliteThread),
    /// PostgreSQL: the sequencer task (`pg_sequencer`), on a connection of its own.
    Postgres(mpsc::Sender<AppendJob>),
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{what} {v} does not fit a BIGINT")))
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{what} is negative")))
}

fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| LedgerError::Corrupt(format!("{what} is not 32 bytes")))
}

impl IndexedObject {
    /// The object of `bucket` and `key` from an `objects` row holding the stored
    /// object's columns.
    fn from_row(bucket: &str, key: String, row: &AnyRow) -> Result<Self> {
        Ok(Self {
            bucket: bucket.to_owned(),
            key,
            storage_name: row.try_get("storage_name")?,
            size: to_u64(row.try_get("size")?, "size")?,
            sha256: hash32(row.try_get("sha256")?, "sha256")?,
            content_type: row.try_get("content_type")?,
            stored_at: to_u64(row.try_get("stored_at")?, "stored_at")?,
            manifest: row.try_get("manifest")?,
            manifest_signatures: row.try_get("manifest_signatures")?,
        })
    }
}

impl Ledger {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and creates the tables if
    /// they are missing.
    /// Every call fails with [`LedgerError::Timeout`] after `deadline` (waiting for a
    /// connection included), so a frozen database fails requests fast.
    pub async fn connect(
        url: &str,
        signer: CheckpointSigner,
        checkpoint_every: u64,
        deadline: std::time::Duration,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let options = AnyPoolOptions::new().acquire_timeout(deadline);
        let busy = deadline;
        // SQLite has one writer; one connection avoids SQLITE_BUSY on lock upgrades,
        // and its statements take microseconds. Per-connection settings are applied to
        // every new connection, since a connection that failed is discarded (below).
        // A SQLite connection is a file handle that no server can drop, so it is not
        // pinged before each use (a ping is a round trip to its worker thread). A
        // PostgreSQL connection is pinged only if it sat idle for `IDLE_PING` or more:
        // sqlx pings every connection when it goes back to the pool, so one used
        // within the last second answered then; a ping per checkout would add a round
        // trip to every call. A server restart or a cut TCP connection within that
        // second fails the call that finds it (fail closed: `audit_unavailable`), and
        // the broken connection is dropped by the ping on its return.
        let options = match dialect {
            Dialect::Sqlite => options
                .max_connections(1)
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        // Wait for another writer (a second process) up to the deadline.
                        sqlx::query(AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {}",
                            busy.as_millis()
                        )))
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                }),
            Dialect::Postgres => options
                .max_connections(16)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= IDLE_PING {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                }),
        };
        let pool = tokio::time::timeout(deadline, options.connect(url))
            .await
            .map_err(|_| LedgerError::Timeout(deadline))??;
        migrate(&pool, dialect).await?;
        let signer = Arc::new(signer);
        let checkpoint_every = checkpoint_every.max(1);
        let append_lock = Arc::new(Mutex::new(()));
        let writer = match dialect {
            Dialect::Sqlite => {
                use std::str::FromStr as _;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
                Writer::Sqlite(sqlite_thread::SqliteThread::start(
                    options.get_filename().to_owned(),
                    Arc::clone(&signer),
                    checkpoint_every,
                    deadline,
                )?)
            }
            Dialect::Postgres => {
                let (appends, queue) = mpsc::channel(QUEUE);
                let sequencer = pg_sequencer::Sequencer {
                    options: url.parse()?,
                    pool: pool.clone(),
                    signer: Arc::clone(&signer),
                    checkpoint_every,
                    append_lock: Arc::clone(&append_lock),
                    deadline,
                    appended: 0,
                    conn: None,
                    head: None,
                };
                tokio::spawn(sequencer.run(queue));
                Writer::Postgres(appends)
            }
        };
        Ok(Self {
            pool,
            dialect,
            signer,
            append_lock,
            writer,
            deadline,
        })
    }

    /// The SQL flavour in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection; later calls fail (used at shutdown, and by tests to
    /// simulate a database outage).
    pub async fn close(&self) {
        if let Writer::Sqlite(thread) = &self.writer {
            thread.close().await;
        }
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.within(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// [`sql`] in this ledger's dialect.
    fn sql(&self, q: &str) -> AssertSqlSafe<String> {
        sql(self.dialect, q)
    }

    /// Runs `f` within the deadline. A write that failed or timed out may leave its
    /// connection inside a transaction, so callers of [`Ledger::write`] never reuse
    /// such a connection.
    async fn within<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.deadline, f)
            .await
            .map_err(|_| LedgerError::Timeout(self.deadline))?
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// SQLITE_BUSY at once, without waiting, when another process (`reconcile`, a
    /// second instance) wrote in between.
    async fn begin_write<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await?,
            Dialect::Postgres => sqlx::Connection::begin(&mut **conn).await?,
        })
    }

    /// Takes a connection for a transaction (see [`discard_on_error`]).
    async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.within(async { Ok(self.pool.acquire().await?) }).await
    }

    /// Appends an entry to the chain and returns it with its sequence number.
    ///
    /// With `nonce`, the nonce is recorded in the same transaction, so a nonce is
    /// used if and only if its request's entry exists. If the nonce was already used
    /// (also by an earlier append of the same batch), the entry is written as a
    /// `replayed` denial instead (the caller reads the returned entry's decision).
    ///
    /// The append is handed to this ledger's sequencer (a thread of its own on
    /// SQLite, a task on PostgreSQL), which writes concurrent appends in one
    /// transaction (group commit) and answers each only once that transaction
    /// committed; if it failed, every append of the batch fails. Once handed over,
    /// the append is written (or fails) even if the caller is dropped.
    pub async fn append(&self, draft: AuditDraft, nonce: Option<NonceUse>) -> Result<AuditEntry> {
        let draft = Pending::new(draft, nonce, self.deadline)?;
        match &self.writer {
            Writer::Sqlite(thread) => thread.append(draft).await,
            Writer::Postgres(appends) => {
                let (reply, answer) = oneshot::channel();
                appends
                    .send(AppendJob { draft, reply })
                    .await
                    .map_err(|_| LedgerError::Sequencer)?;
                answer.await.map_err(|_| LedgerError::Sequencer)?
            }
        }
    }

    /// Signs a checkpoint over the current head now (used by `audit export` so an
    /// export always ends with a checkpoint). Returns `None` for an empty log.
    pub async fn checkpoint_now(&self, now_secs: u64) -> Result<Option<StoredCheckpoint>> {
        let _guard = self.append_lock.lock().await;
        let mut conn = self.write_conn().await?;
        let result = self
            .within(async {
                let mut tx = self.begin_write(&mut conn).await?;
                if self.dialect == Dialect::Postgres {
                    sqlx::query(self.sql("SELECT pg_advisory_xact_lock(?)"))
                        .bind(APPEND_LOCK_KEY)
                        .execute(&mut *tx)
                        .await?;
                }
                let Some(row) = sqlx::query(
                    "SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(None);
                };
                let seq = to_u64(row.try_get::<i64, _>(0)?, "seq")?;
                let head = hash32(row.try_get::<Vec<u8>, _>(1)?, "entry_sha256")?;
                let checkpoint = Checkpoint {
                    gatekeeper: self.signer.gatekeeper.clone(),
                    seq,
                    head_sha256: head,
                    created_at: now_secs,
                };
                let (body, sig) = checkpoint.sign(&self.signer.key, self.signer.key_id.clone());
                let signatures = countersign_core::signature::encode_list(&[sig]);
                sqlx::query(self.sql("DELETE FROM audit_checkpoints WHERE seq = ?"))
                    .bind(to_i64(seq, "seq")?)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    self.sql(
                        "INSERT INTO audit_checkpoints (seq, body, signatures) VALUES (?, ?, ?)",
                    ),
                )
                .bind(to_i64(seq, "seq")?)
                .bind(body.clone())
                .bind(signatures.clone())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(StoredCheckpoint { body, signatures }))
            })
            .await;
        discard_on_error(&mut conn, result)
    }

    /// Records which public key signs checkpoints under `key_id`, and refuses a
    /// second key under the same id: instances sharing a database must not sign the
    /// same log with different keys under one id (the log could not be verified).
    pub async fn register_key(&self, key_id: &KeyId, public_key: &[u8; 32]) -> Result<()> {
        self.within(async {
            sqlx::query(self.sql(
                "INSERT INTO gatekeeper_keys (key_id, public_key) VALUES (?, ?)
                 ON CONFLICT (key_id) DO NOTHING",
            ))
            .bind(key_id.as_str().to_owned())
            .bind(public_key.to_vec())
            .execute(&self.pool)
            .await?;
            let row = sqlx::query(self.sql("SELECT public_key FROM gatekeeper_keys WHERE key_id = ?"))
                .bind(key_id.as_str().to_owned())
                .fetch_one(&self.pool)
                .await?;
            let stored: Vec<u8> = row.try_get(0)?;
            if stored.as_slice() == public_key.as_slice() {
                Ok(())
            } else {
                Err(LedgerError::Corrupt(format!(
                    "the database's log is signed under key id `{key_id}` with another public key; \
                     give this gatekeeper's key its own key_id (every instance sharing the database \
                     must use the same key for one key id)"
                )))
            }
        })
        .await
    }

    /// Reserves `bucket/key` for an upload that will store its bytes under
    /// `storage_name` and is dead for certain after `deadline`, unless the request's
    /// `nonce` is already recorded (a replay: nothing is reserved) or the key is
    /// stored or being uploaded (objects are never overwritten). One call before a PUT
    /// receives its body: on PostgreSQL one statement, on SQLite one hand-over to the
    /// writer thread. The nonce itself is recorded with the request's audit entry
    /// ([`Ledger::append`]), which also decides a race between two uses.
    pub async fn reserve(&self, r: &Reservation, nonce: &[u8; 16]) -> Result<Reserve> {
        let deadline = to_i64(r.deadline, "deadline")?;
        if let Writer::Sqlite(thread) = &self.writer {
            let (r, nonce) = (r.clone(), *nonce);
            return thread
                .call(move |c| {
                    if c.prepare_cached(NONCE_USED)?.exists([nonce.as_slice()])? {
                        return Ok(Reserve::Replayed);
                    }
                    let empty: &[u8] = &[];
                    let n = c.prepare_cached(RESERVE)?.execute(rusqlite::params![
                        r.bucket,
                        r.key,
                        r.storage_name,
                        r.upload_id,
                        deadline,
                        empty,
                        empty
                    ])?;
                    Ok(if n == 1 {
                        Reserve::Reserved
                    } else {
                        Reserve::Taken
                    })
                })
                .await;
        }
        self.within(async {
            let row = sqlx::query(self.sql(RESERVE_UNUSED))
                .bind(nonce.to_vec())
                .bind(r.bucket.clone())
                .bind(r.key.clone())
                .bind(r.storage_name.clone())
                .bind(r.upload_id.clone())
                .bind(deadline)
                .bind(Vec::<u8>::new())
                .bind(Vec::<u8>::new())
                .fetch_one(&self.pool)
                .await?;
            Ok(
                match (row.try_get::<bool, _>(0)?, row.try_get::<bool, _>(1)?) {
                    (true, _) => Reserve::Replayed,
                    (false, true) => Reserve::Reserved,
                    (false, false) => Reserve::Taken,
                },
            )
        })
        .await
    }

    /// Records the multipart upload id of a reservation, so that recovery can abort
    /// the upload if the process dies.
    pub async fn set_upload_id(&self, r: &Reservation) -> Result<()> {
        if let Writer::Sqlite(thread) = &self.writer {
            let r = r.clone();
            return thread
                .call(move |c| {
                    c.prepare_cached(SET_UPLOAD_ID)?.execute(rusqlite::params![
                        r.upload_id,
                        r.bucket,
                        r.key,
                        r.storage_name
                    ])?;
                    Ok(())
                })
                .await;
        }
        self.within(async {
            sqlx::query(self.sql(SET_UPLOAD_ID))
                .bind(r.upload_id.clone())
                .bind(r.bucket.clone())
                .bind(r.key.clone())
                .bind(r.storage_name.clone())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Drops a reservation whose upload was abandoned (only that upload's: a newer
    /// reservation of the same key is left alone). Returns whether it was there.
    pub async fn release(&self, r: &Reservation) -> Result<bool> {
        if let Writer::Sqlite(thread) = &self.writer {
            let r = r.clone();
            return thread
                .call(move |c| {
                    let n = c.prepare_cached(RELEASE)?.execute(rusqlite::params![
                        r.bucket,
                        r.key,
                        r.storage_name
                    ])?;
                    Ok(n == 1)
                })
                .await;
        }
        self.within(async {
            let done = sqlx::query(self.sql(RELEASE))
                .bind(r.bucket.clone())
                .bind(r.key.clone())
                .bind(r.storage_name.clone())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Marks a reserved key as stored, with its manifest. Fails if the reservation is
    /// gone (recovery released it because its deadline passed).
    pub async fn commit(&self, o: &IndexedObject) -> Result<()> {
        let (size, stored_at) = (to_i64(o.size, "size")?, to_i64(o.stored_at, "stored_at")?);
        let changed = if let Writer::Sqlite(thread) = &self.writer {
            let o = o.clone();
            thread
                .call(move |c| {
                    Ok(c.prepare_cached(COMMIT)?.execute(rusqlite::params![
                        size,
                        o.sha256.as_slice(),
                        o.content_type,
                        stored_at,
                        o.manifest,
                        o.manifest_signatures,
                        o.bucket,
                        o.key,
                        o.storage_name
                    ])? as u64)
                })
                .await?
        } else {
            self.within(async {
                Ok(sqlx::query(self.sql(COMMIT))
                    .bind(size)
                    .bind(o.sha256.to_vec())
                    .bind(o.content_type.clone())
                    .bind(stored_at)
                    .bind(o.manifest.clone())
                    .bind(o.manifest_signatures.clone())
                    .bind(o.bucket.clone())
                    .bind(o.key.clone())
                    .bind(o.storage_name.clone())
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            })
            .await?
        };
        if changed == 1 {
            Ok(())
        } else {
            Err(LedgerError::Corrupt(format!(
                "the reservation of {}/{} was released before its upload finished",
                o.bucket, o.key
            )))
        }
    }

    /// Reservations whose deadline is before `now`: their uploads are dead.
    pub async fn expired_reservations(&self, now: u64) -> Result<Vec<Reservation>> {
        self.within(async {
            let rows = sqlx::query(self.sql(
                "SELECT bucket, object_key, storage_name, upload_id, deadline FROM objects
                 WHERE state = 'pending' AND deadline < ? ORDER BY deadline LIMIT 1000",
            ))
            .bind(to_i64(now, "now")?)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Reservation {
                        bucket: r.try_get("bucket")?,
                        key: r.try_get("object_key")?,
                        storage_name: r.try_get("storage_name")?,
                        upload_id: r.try_get("upload_id")?,
                        deadline: to_u64(r.try_get("deadline")?, "deadline")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Whether `storage_name` in `bucket` belongs to an upload in progress (or to an
    /// object being encrypted by `keys encrypt-existing`).
    pub async fn storage_name_pending(&self, bucket: &str, storage_name: &str) -> Result<bool> {
        self.within(async {
            let row = sqlx::query(self.sql(
                "SELECT 1 FROM objects WHERE bucket = ? AND storage_name = ? AND state = 'pending'
                 UNION ALL SELECT 1 FROM encryptions WHERE bucket = ? AND new_name = ?",
            ))
            .bind(bucket.to_owned())
            .bind(storage_name.to_owned())
            .bind(bucket.to_owned())
            .bind(storage_name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.is_some())
        })
        .await
    }

    /// Whether `storage_name` in `bucket` belongs to a row (stored, an upload in
    /// progress, or the new name of an object being encrypted).
    pub async fn storage_name_known(&self, bucket: &str, storage_name: &str) -> Result<bool> {
        self.within(async {
            let row = sqlx::query(self.sql(
                "SELECT 1 FROM objects WHERE bucket = ? AND storage_name = ?
                 UNION ALL SELECT 1 FROM encryptions WHERE bucket = ? AND new_name = ?",
            ))
            .bind(bucket.to_owned())
            .bind(storage_name.to_owned())
            .bind(bucket.to_owned())
            .bind(storage_name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.is_some())
        })
        .await
    }

    /// A stored object's index row.
    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<IndexedObject>> {
        Ok(self.object_to_read(bucket, key).await?.map(|(o, _)| o))
    }

    /// A stored object's index row with the wrapped data key it is encrypted under
    /// (`None` for an object stored in plaintext), read together: one database call
    /// (one hand-over to the SQLite thread) and one snapshot, so the key is the one
    /// of the storage name the row names.
    pub async fn object_to_read(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(IndexedObject, Option<WrappedKey>)>> {
        if let Writer::Sqlite(thread) = &self.writer {
            let (bucket, key) = (bucket.to_owned(), key.to_owned());
            return thread
                .call(move |c| {
                    let row = c
                        .prepare_cached(OBJECT)?
                        .query_row(rusqlite::params![bucket, key], |r| {
                            Ok((
                                (
                                    r.get::<_, String>(0)?,
                                    r.get::<_, i64>(1)?,
                                    r.get::<_, Vec<u8>>(2)?,
                                    r.get::<_, String>(3)?,
                                    r.get::<_, i64>(4)?,
                                    r.get::<_, Vec<u8>>(5)?,
                                    r.get::<_, String>(6)?,
                                ),
                                wrapped_key(r.get(7)?, r.get(8)?, r.get(9)?),
                            ))
                        })
                        .optional()?;
                    row.map(
                        |(
                            (storage_name, size, sha256, content_type, stored_at, manifest, sigs),
                            data_key,
                        )| {
                            let object = IndexedObject {
                                bucket,
                                key,
                                storage_name,
                                size: to_u64(size, "size")?,
                                sha256: hash32(sha256, "sha256")?,
                                content_type,
                                stored_at: to_u64(stored_at, "stored_at")?,
                                manifest,
                                manifest_signatures: sigs,
                            };
                            Ok((object, data_key))
                        },
                    )
                    .transpose()
                })
                .await;
        }
        self.within(async {
            let row = sqlx::query(self.sql(OBJECT))
                .bind(bucket.to_owned())
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
                .await?;
            row.map(|row| {
                let object = IndexedObject::from_row(bucket, key.to_owned(), &row)?;
                let data_key = wrapped_key(
                    row.try_get("kek_id")?,
                    row.try_get("wrapped")?,
                    row.try_get("header")?,
                );
                Ok((object, data_key))
            })
            .transpose()
        })
        .await
    }

    /// Up to `limit` stored objects of `bucket` whose key starts with `prefix` and
    /// sorts after `after`, in byte order. The key range is bounded on both sides by
    /// the prefix, so the cost follows the page, not the keys around it.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ListedObject>> {
        let (start, op) = if after > prefix {
            (after, ">")
        } else {
            (prefix, ">=")
        };
        let upper = prefix_upper_bound(prefix);
        let bound = if upper.is_some() {
            " AND object_key < ?"
        } else {
            ""
        };
        let sql = self.sql(&format!(
            "SELECT object_key, size, sha256, content_type, stored_at FROM objects
             WHERE bucket = ? AND state = 'stored' AND object_key {op} ?{bound}
             ORDER BY object_key LIMIT ?"
        ));
        self.within(async {
            let mut q = sqlx::query(sql)
                .bind(bucket.to_owned())
                .bind(start.to_owned());
            if let Some(u) = upper {
                q = q.bind(u);
            }
            let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(ListedObject {
                        key: row.try_get("object_key")?,
                        size: to_u64(row.try_get("size")?, "size")?,
                        sha256: hash32(row.try_get("sha256")?, "sha256")?,
                        content_type: row.try_get("content_type")?,
                        stored_at: to_u64(row.try_get("stored_at")?, "stored_at")?,
                    })
                })
                .collect()
        })
        .await
    }

    fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
        // Free text is stored as the bytes received (NUL included, which PostgreSQL's
        // TEXT refuses).
        fn captured(row: &AnyRow, col: &str) -> Result<CapturedHeader> {
            let stored: Vec<u8> = row.try_get(col)?;
            let sha = hash32(row.try_get(format!("{col}_sha256").as_str())?, col)?;
            let length = to_u64(row.try_get(format!("{col}_length").as_str())?, col)?;
            CapturedHeader::from_parts(stored, sha, length, col)
                .map_err(|e| LedgerError::Corrupt(e.to_string()))
        }
        let decision: String = row.try_get("decision")?;
        let code: String = row.try_get("error_code")?;
        let decision = match (decision.as_str(), code.as_str()) {
            ("allow", "") => Decision::Allow,
            ("deny", c) => Decision::Deny(
                ErrorCode::from_str_code(c)
                    .ok_or_else(|| LedgerError::Corrupt(format!("unknown error code `{c}`")))?,
            ),
            _ => return Err(LedgerError::Corrupt("bad decision".into())),
        };
        let ip: String = row.try_get("client_ip")?;
        let gk: String = row.try_get("gatekeeper")?;
        Ok(AuditEntry {
            seq: to_u64(row.try_get("seq")?, "seq")?,
            prev_sha256: hash32(row.try_get("prev_sha256")?, "prev_sha256")?,
            time_ms: to_u64(row.try_get("time_ms")?, "time_ms")?,
            gatekeeper: GatekeeperId::parse(&gk)
                .map_err(|e| LedgerError::Corrupt(e.to_string()))?,
            // NULL: an entry written as version 1, before entries had a request id.
            request_id: row.try_get("request_id")?,
            client_ip: ip
                .parse()
                .map_err(|_| LedgerError::Corrupt(format!("bad client ip `{ip}`")))?,
            operation: row.try_get("operation")?,
            bucket: row.try_get("bucket")?,
            key: row.try_get("object_key")?,
            subject: row.try_get("subject")?,
            decision,
            bytes: to_u64(row.try_get("bytes")?, "bytes")?,
            latency_us: to_u64(row.try_get("latency_us")?, "latency_us")?,
            request: captured(row, "request")?,
            signatures: captured(row, "signatures")?,
        })
    }

    /// The columns [`Ledger::entry_from_row`] reads, of `audit_log` aliased `a`.
    const ENTRY_COLUMNS: &'static str =
        "a.seq, a.prev_sha256, a.time_ms, a.gatekeeper, a.request_id, a.client_ip, a.operation,
        a.bucket, a.object_key, a.subject, a.decision, a.error_code, a.bytes, a.latency_us,
        a.request, a.request_sha256, a.request_length, a.signatures, a.signatures_sha256,
        a.signatures_length";

    /// Up to `limit` entries with `seq >= from`, in order.
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let q = sqlx::query(self.sql(&format!(
            "SELECT {} FROM audit_log a WHERE a.seq >= ? ORDER BY a.seq LIMIT ?",
            Self::ENTRY_COLUMNS
        )))
        .bind(to_i64(from, "seq")?)
        .bind(i64::from(limit));
        self.fetch_entries(q).await
    }

    /// The entries of the rows `q` selects ([`Ledger::ENTRY_COLUMNS`]).
    async fn fetch_entries(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<AuditEntry>> {
        let rows = self
            .within(async { Ok(q.fetch_all(&self.pool).await?) })
            .await?;
        rows.iter().map(Self::entry_from_row).collect()
    }

    /// Entries matching `filter`, in order, at most `filter.limit`.
    ///
    /// The entries the tree covers are found through `audit_search` and its indexes
    /// (filled by [`Ledger::integrate`], see migration 6); the entries appended since,
    /// at most one integration interval of them, are read from `audit_log` above the
    /// tree size. The tree size is read first: `audit_search` only gains rows below a
    /// later size and `audit_log` only gains rows, so no entry is missed or repeated
    /// when the integrator runs in between.
    pub async fn search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        if filter.group.as_ref().is_some_and(|g| g.members.is_empty()) {
            // A group without members selects nothing (and `IN ()` is not SQL).
            return Ok(Vec::new());
        }
        let limit = i64::from(filter.limit);
        let after = to_i64(filter.after_seq, "seq")?;
        let indexed = self
            .within(async {
                Ok(sqlx::query("SELECT size FROM tlog_state WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?)
            })
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0);
        let mut out = Vec::new();
        if after < indexed {
            // A group's `subject IN (…)` reads each member's (subject, seq) index
            // range and sorts the matches by seq: the page's seqs are chosen from the
            // covering index first, so only the page's rows are read from `audit_log`
            // (joined before the sort, every match's row would be).
            let page = format!(
                "s.seq >= ? AND s.seq < ?{} ORDER BY s.seq LIMIT ?",
                search_clauses(filter, "s")
            );
            let sql = if filter.group.is_some() {
                format!(
                    "SELECT {} FROM audit_log a WHERE a.seq IN
                     (SELECT s.seq FROM audit_search s WHERE {page}) ORDER BY a.seq",
                    Self::ENTRY_COLUMNS
                )
            } else {
                format!(
                    "SELECT {} FROM audit_search s JOIN audit_log a ON a.seq = s.seq WHERE {page}",
                    Self::ENTRY_COLUMNS
                )
            };
            let q = sqlx::query(self.sql(&sql)).bind(after).bind(indexed);
            out = self
                .fetch_entries(bind_search(q, filter).bind(limit))
                .await?;
        }
        let left = limit - i64::try_from(out.len()).unwrap_or(limit);
        if left > 0 {
            let sql = format!(
                "SELECT {} FROM audit_log a WHERE a.seq >= ?{} ORDER BY a.seq LIMIT ?",
                Self::ENTRY_COLUMNS,
                search_clauses(filter, "a")
            );
            let q = sqlx::query(self.sql(&sql)).bind(after.max(indexed));
            out.extend(
                self.fetch_entries(bind_search(q, filter).bind(left))
                    .await?,
            );
        }
        Ok(out)
    }

    /// Every stored checkpoint, in order.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = self
            .within(async {
                Ok(
                    sqlx::query("SELECT body, signatures FROM audit_checkpoints ORDER BY seq")
                        .fetch_all(&self.pool)
                        .await?,
                )
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    body: r.try_get("body")?,
                    signatures: r.try_get("signatures")?,
                })
            })
            .collect()
    }
}

/// The request path's statements, shared by the SQLite thread and the pool.
const NONCE_USED: &str = "SELECT 1 FROM nonces WHERE nonce = ?";
const RESERVE: &str = "INSERT INTO objects (bucket, object_key, state, storage_name, upload_id,
     deadline, size, sha256, content_type, stored_at, manifest, manifest_signatures)
     VALUES (?, ?, 'pending', ?, ?, ?, 0, ?, '', 0, ?, '')
     ON CONFLICT (bucket, object_key) DO NOTHING";
/// [`RESERVE`] unless the nonce (the first value) is recorded, in one statement
/// (PostgreSQL): answers whether the nonce was used and whether the key was reserved.
const RESERVE_UNUSED: &str = "WITH used AS (SELECT 1 FROM nonces WHERE nonce = ?),
     reserved AS (INSERT INTO objects (bucket, object_key, state, storage_name, upload_id,
         deadline, size, sha256, content_type, stored_at, manifest, manifest_signatures)
         SELECT ?, ?, 'pending', ?, ?, ?, 0, ?, '', 0, ?, '' WHERE NOT EXISTS (SELECT 1 FROM used)
         ON CONFLICT (bucket, object_key) DO NOTHING RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM used), EXISTS (SELECT 1 FROM reserved)";
const SET_UPLOAD_ID: &str = "UPDATE objects SET upload_id = ?
     WHERE bucket = ? AND object_key = ? AND storage_name = ? AND state = 'pending'";
const RELEASE: &str = "DELETE FROM objects
     WHERE bucket = ? AND object_key = ? AND storage_name = ? AND state = 'pending'";
const COMMIT: &str = "UPDATE objects SET state = 'stored', size = ?, sha256 = ?, content_type = ?,
     stored_at = ?, manifest = ?, manifest_signatures = ?, upload_id = ''
     WHERE bucket = ? AND object_key = ? AND storage_name = ? AND state = 'pending'";
/// A stored object's row and its wrapped data key, if any (`object_keys` is keyed by
/// bucket and storage name).
const OBJECT: &str = "SELECT o.storage_name, o.size, o.sha256, o.content_type, o.stored_at,
     o.manifest, o.manifest_signatures, k.kek_id, k.wrapped, k.header
     FROM objects o LEFT JOIN object_keys k
       ON k.bucket = o.bucket AND k.storage_name = o.storage_name
     WHERE o.bucket = ? AND o.object_key = ? AND o.state = 'stored'";

/// The wrapped data key of an [`OBJECT`] row: all three columns, or none (no
/// `object_keys` row: stored in plaintext).
fn wrapped_key(
    kek_id: Option<String>,
    wrapped: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
) -> Option<WrappedKey> {
    Some(WrappedKey {
        kek_id: kek_id?,
        wrapped: wrapped?,
        header: header?,
    })
}

/// A pooled PostgreSQL connection idle this long is pinged before it is used.
const IDLE_PING: Duration = Duration::from_secs(1);

/// Most appends one transaction carries (SQLite binds each entry in a statement of
/// its own; PostgreSQL binds one array per column).
const MAX_BATCH: usize = 256;

/// Appends waiting for the sequencer; a caller waits for room when it is full.
const QUEUE: usize = 4 * MAX_BATCH;

/// Expired nonces are deleted after this many appends, in the append transaction.
const SWEEP_EVERY: u64 = 1024;

/// The key of the PostgreSQL advisory lock that orders appends across instances.
const APPEND_LOCK_KEY: i64 = 727_470_001;

/// An append checked and converted before it is queued, so one bad value can fail
/// only its own request, never the batch.
struct Pending {
    draft: AuditDraft,
    nonce: Option<([u8; 16], i64)>,
    columns: Columns,
    /// An append still queued past this instant fails with [`LedgerError::Timeout`]
    /// unwritten (its caller has answered, or is about to answer, that the log is
    /// unavailable).
    expires: tokio::time::Instant,
}

impl Pending {
    fn new(draft: AuditDraft, nonce: Option<NonceUse>, deadline: Duration) -> Result<Self> {
        Ok(Self {
            nonce: nonce
                .map(|n| Ok::<_, LedgerError>((n.nonce, to_i64(n.until, "expiry")?)))
                .transpose()?,
            columns: Columns {
                time_ms: to_i64(draft.time_ms, "time")?,
                bytes: to_i64(draft.bytes, "bytes")?,
                latency_us: to_i64(draft.latency_us, "latency")?,
                request_length: to_i64(draft.request.length(), "request length")?,
                signatures_length: to_i64(draft.signatures.length(), "signatures length")?,
            },
            expires: tokio::time::Instant::now() + deadline,
            draft,
        })
    }
}

/// A draft's numbers as the database stores them.
#[derive(Clone, Copy)]
struct Columns {
    time_ms: i64,
    bytes: i64,
    latency_us: i64,
    request_length: i64,
    signatures_length: i64,
}

/// An entry of a batch with its place in the chain.
struct Row {
    seq: i64,
    hash: [u8; 32],
    columns: Columns,
    entry: AuditEntry,
}

struct AppendJob {
    draft: Pending,
    reply: oneshot::Sender<Result<AuditEntry>>,
}

/// Whether the batch of `n` appends after `appended` ones sweeps expired nonces.
fn sweep_due(appended: u64, n: usize) -> bool {
    appended / SWEEP_EVERY != (appended + n as u64) / SWEEP_EVERY
}

/// The batch's nonces to record: the first draft of each distinct nonce, with its
/// index. Of two drafts of one batch with the same nonce, only the first can be new.
fn batch_nonces(drafts: &[Pending]) -> Vec<(usize, [u8; 16], i64)> {
    let mut first = std::collections::HashSet::new();
    drafts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.nonce.map(|(n, until)| (i, n, until)))
        .filter(|(_, n, _)| first.insert(*n))
        .collect()
}

/// Gives each draft its place in the chain after `head` (the last entry's sequence
/// number and hash; `None` for an empty log). A draft whose nonce was not fresh is
/// written as a `replayed` denial.
fn chain(
    gatekeeper: &GatekeeperId,
    drafts: Vec<Pending>,
    fresh: Vec<bool>,
    head: Option<(u64, [u8; 32])>,
) -> Result<Vec<Row>> {
    let (mut seq, mut prev) = match head {
        Some((last, hash)) => (last + 1, hash),
        None => (0, GENESIS),
    };
    let mut rows = Vec::with_capacity(drafts.len());
    for (p, fresh) in drafts.into_iter().zip(fresh) {
        let decision = if fresh {
            p.draft.decision
        } else {
            Decision::Deny(ErrorCode::Replayed)
        };
        let entry = AuditEntry {
            seq,
            prev_sha256: prev,
            time_ms: p.draft.time_ms,
            gatekeeper: gatekeeper.clone(),
            request_id: Some(p.draft.request_id),
            client_ip: p.draft.client_ip,
            operation: p.draft.operation,
            bucket: p.draft.bucket,
            key: p.draft.key,
            subject: p.draft.subject,
            decision,
            bytes: p.draft.bytes,
            latency_us: p.draft.latency_us,
            request: p.draft.request,
            signatures: p.draft.signatures,
        };
        let hash = entry.hash();
        rows.push(Row {
            seq: to_i64(seq, "seq")?,
            hash,
            columns: p.columns,
            entry,
        });
        prev = hash;
        seq += 1;
    }
    Ok(rows)
}

/// The hash-chain checkpoints due in `rows` (one every `every` entries), signed:
/// `(seq, body, signatures)`.
fn due_checkpoints(
    signer: &CheckpointSigner,
    every: u64,
    rows: &[Row],
) -> Vec<(i64, Vec<u8>, String)> {
    rows.iter()
        .filter(|r| (r.entry.seq + 1) % every == 0)
        .map(|r| {
            let checkpoint = Checkpoint {
                gatekeeper: signer.gatekeeper.clone(),
                seq: r.entry.seq,
                head_sha256: r.hash,
                created_at: r.entry.time_ms / 1000,
            };
            let (body, sig) = checkpoint.sign(&signer.key, signer.key_id.clone());
            (
                r.seq,
                body,
                countersign_core::signature::encode_list(&[sig]),
            )
        })
        .collect()
}

/// Adapts placeholders to the dialect. Every query text is built from constants in
/// this module; values are always bound, never spliced in.
fn sql(dialect: Dialect, q: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(match dialect {
        Dialect::Sqlite => q.to_owned(),
        Dialect::Postgres => {
            let mut out = String::with_capacity(q.len() + 8);
            let mut n = 0;
            for c in q.chars() {
                if c == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            }
            out
        }
    })
}

/// The search's conditions on the table aliased `t` (`audit_search` or `audit_log`,
/// which name the search columns alike), each after ` AND `; [`bind_search`] binds
/// their values in the same order.
fn search_clauses(filter: &AuditFilter, t: &str) -> String {
    // `subject IN (?, …)`, one placeholder per member (at most
    // `http::audit::MAX_GROUP_MEMBERS`, well below either database's limit on bound
    // values); the (subject, seq) index serves each member.
    let group = filter.group.as_ref().map(|g| {
        let marks = vec!["?"; g.members.len()].join(", ");
        format!("subject IN ({marks})")
    });
    let mut clauses = Vec::new();
    if filter.from_ms.is_some() {
        clauses.push("time_ms >= ?");
    }
    if filter.to_ms.is_some() {
        clauses.push("time_ms < ?");
    }
    if filter.subject.is_some() {
        clauses.push("subject = ?");
    }
    if let Some(g) = &group {
        clauses.push(g.as_str());
    }
    if filter.client_ip.is_some() {
        clauses.push("client_ip = ?");
    }
    if filter.bucket.is_some() {
        clauses.push("bucket = ?");
    }
    if filter.operation.is_some() {
        clauses.push("operation = ?");
    }
    if filter.key.is_some() {
        clauses.push("object_key = ?");
    }
    // A prefix is a byte range, so that the (object_key, seq) index serves it:
    // `prefix <= key < prefix_end` (no upper bound when the prefix is all 0xff bytes;
    // an empty prefix matches every key).
    if let Some(p) = filter.key_prefix.as_deref().filter(|p| !p.is_empty()) {
        clauses.push("object_key >= ?");
        if prefix_end(p.as_bytes()).is_some() {
            clauses.push("object_key < ?");
        }
    }
    if filter.decision.is_some() {
        clauses.push("decision = ?");
    }
    if filter.error.is_some() {
        clauses.push("error_code = ?");
    }
    clauses.iter().map(|c| format!(" AND {t}.{c}")).collect()
}

/// Binds the values of [`search_clauses`] in order.
fn bind_search<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    filter: &AuditFilter,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    if let Some(v) = filter.from_ms {
        q = q.bind(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = filter.to_ms {
        q = q.bind(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = &filter.subject {
        q = q.bind(v.as_bytes().to_vec());
    }
    for m in filter.group.iter().flat_map(|g| &g.members) {
        q = q.bind(m.as_bytes().to_vec());
    }
    if let Some(v) = &filter.client_ip {
        q = q.bind(v.to_string());
    }
    if let Some(v) = &filter.bucket {
        q = q.bind(v.as_bytes().to_vec());
    }
    if let Some(v) = &filter.operation {
        q = q.bind(v.as_bytes().to_vec());
    }
    if let Some(v) = &filter.key {
        q = q.bind(v.as_bytes().to_vec());
    }
    if let Some(p) = filter.key_prefix.as_deref().filter(|p| !p.is_empty()) {
        q = q.bind(p.as_bytes().to_vec());
        if let Some(end) = prefix_end(p.as_bytes()) {
            q = q.bind(end);
        }
    }
    if let Some(v) = &filter.decision {
        q = q.bind(v.clone());
    }
    if let Some(v) = &filter.error {
        q = q.bind(v.as_str().to_owned());
    }
    q
}

/// The least byte string greater than every string starting with `prefix`: the
/// prefix with its last byte below 0xff incremented and what follows dropped; `None`
/// when every byte is 0xff (no such bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix.get(..=last)?.to_vec();
    *end.last_mut()? += 1;
    Some(end)
}
