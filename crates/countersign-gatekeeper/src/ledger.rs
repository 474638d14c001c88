//! The database: the hash-chained audit log with signed checkpoints, the nonce table
//! that stops replays across every instance sharing the database, and the object
//! index that answers LIST and HEAD without asking S3.
//!
//! One implementation speaks both SQLite (the embedded default) and PostgreSQL (for
//! several instances) through sqlx's `Any` driver; the few differences are in
//! [`Dialect`]. The same test suite runs against both.

use crate::audit::AuditFilter;
use countersign_core::audit::{AuditEntry, Checkpoint, GENESIS};
use countersign_core::{Decision, ErrorCode, GatekeeperId, KeyId, ed25519_dalek::SigningKey};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row as _};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

/// A database failure. Callers answer `audit_unavailable` (fail closed); the detail
/// goes to the server log only.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row cannot be read back (tampering or a bug).
    #[error("corrupt row: {0}")]
    Corrupt(String),
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
    /// Client address.
    pub client_ip: IpAddr,
    /// Operation.
    pub operation: String,
    /// Bucket as requested.
    pub bucket: String,
    /// Key or prefix as requested.
    pub key: String,
    /// Subject, if parsed.
    pub subject: String,
    /// Decision.
    pub decision: Decision,
    /// Body bytes.
    pub bytes: u64,
    /// Microseconds from arrival to decision.
    pub latency_us: u64,
    /// Canonical request as received.
    pub request: Vec<u8>,
    /// Signature header as received.
    pub signatures: String,
}

/// A row of the object index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedObject {
    /// Bucket.
    pub bucket: String,
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
    /// Signed manifest bytes.
    pub manifest: Vec<u8>,
    /// The gatekeeper's signature list over the manifest.
    pub manifest_signatures: String,
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
    checkpoint_every: u64,
    append_lock: Arc<Mutex<()>>,
    nonce_inserts: Arc<AtomicU64>,
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

impl Ledger {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and creates the tables if
    /// they are missing.
    pub async fn connect(
        url: &str,
        signer: CheckpointSigner,
        checkpoint_every: u64,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let options = AnyPoolOptions::new().acquire_timeout(std::time::Duration::from_secs(5));
        // SQLite has one writer; one connection avoids SQLITE_BUSY on lock upgrades,
        // and its statements take microseconds.
        let options = match dialect {
            Dialect::Sqlite => options.max_connections(1),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(url).await?;
        let ledger = Self {
            pool,
            dialect,
            signer: Arc::new(signer),
            checkpoint_every: checkpoint_every.max(1),
            append_lock: Arc::new(Mutex::new(())),
            nonce_inserts: Arc::new(AtomicU64::new(0)),
        };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// The SQL flavour in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection; later calls fail (used at shutdown, and by tests to
    /// simulate a database outage).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Adapts placeholders to the dialect. Every query text is built from constants
    /// in this module; values are always bound, never spliced in.
    fn sql(&self, q: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.dialect {
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

    async fn migrate(&self) -> Result<()> {
        let (blob, text_key) = match self.dialect {
            Dialect::Sqlite => ("BLOB", "TEXT"),
            Dialect::Postgres => ("BYTEA", "TEXT COLLATE \"C\""),
        };
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&self.pool)
                .await?;
            sqlx::query("PRAGMA synchronous=NORMAL")
                .execute(&self.pool)
                .await?;
        }
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS audit_log (
                    seq BIGINT PRIMARY KEY,
                    prev_sha256 {blob} NOT NULL,
                    entry_sha256 {blob} NOT NULL,
                    time_ms BIGINT NOT NULL,
                    gatekeeper TEXT NOT NULL,
                    client_ip TEXT NOT NULL,
                    operation TEXT NOT NULL,
                    bucket TEXT NOT NULL,
                    object_key {text_key} NOT NULL,
                    subject TEXT NOT NULL,
                    decision TEXT NOT NULL,
                    error_code TEXT NOT NULL,
                    bytes BIGINT NOT NULL,
                    latency_us BIGINT NOT NULL,
                    request {blob} NOT NULL,
                    signatures TEXT NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS audit_time ON audit_log (time_ms)".to_owned(),
            "CREATE INDEX IF NOT EXISTS audit_subject ON audit_log (subject)".to_owned(),
            format!(
                "CREATE TABLE IF NOT EXISTS audit_checkpoints (
                    seq BIGINT PRIMARY KEY,
                    body {blob} NOT NULL,
                    signatures TEXT NOT NULL)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS nonces (
                    nonce {blob} PRIMARY KEY,
                    expires_at BIGINT NOT NULL)"
            ),
            "CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at)".to_owned(),
            format!(
                "CREATE TABLE IF NOT EXISTS objects (
                    bucket TEXT NOT NULL,
                    object_key {text_key} NOT NULL,
                    state TEXT NOT NULL,
                    size BIGINT NOT NULL,
                    sha256 {blob} NOT NULL,
                    content_type TEXT NOT NULL,
                    stored_at BIGINT NOT NULL,
                    manifest {blob} NOT NULL,
                    manifest_signatures TEXT NOT NULL,
                    PRIMARY KEY (bucket, object_key))"
            ),
        ];
        for s in statements {
            sqlx::query(AssertSqlSafe(s)).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Appends an entry to the chain and returns it with its sequence number. Appends
    /// are serialized: in-process by a mutex, and across instances sharing PostgreSQL
    /// by a transaction-scoped advisory lock (the primary key on `seq` is the last
    /// line of defence). Every `checkpoint_every` entries a signed checkpoint is
    /// written in the same transaction.
    pub async fn append(&self, draft: AuditDraft) -> Result<AuditEntry> {
        let _guard = self.append_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(727470001)")
                .execute(&mut *tx)
                .await?;
        }
        let last = sqlx::query("SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev) = match last {
            Some(row) => (
                to_u64(row.try_get::<i64, _>(0)?, "seq")? + 1,
                hash32(row.try_get::<Vec<u8>, _>(1)?, "entry_sha256")?,
            ),
            None => (0, GENESIS),
        };
        let entry = AuditEntry {
            seq,
            prev_sha256: prev,
            time_ms: draft.time_ms,
            gatekeeper: self.signer.gatekeeper.clone(),
            client_ip: draft.client_ip,
            operation: draft.operation,
            bucket: draft.bucket,
            key: draft.key,
            subject: draft.subject,
            decision: draft.decision,
            bytes: draft.bytes,
            latency_us: draft.latency_us,
            request: draft.request,
            signatures: draft.signatures,
        };
        let hash = entry.hash();
        sqlx::query(self.sql(
            "INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper, client_ip,
             operation, bucket, object_key, subject, decision, error_code, bytes, latency_us,
             request, signatures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(to_i64(entry.seq, "seq")?)
        .bind(entry.prev_sha256.to_vec())
        .bind(hash.to_vec())
        .bind(to_i64(entry.time_ms, "time")?)
        .bind(entry.gatekeeper.as_str().to_owned())
        .bind(entry.client_ip.to_string())
        .bind(entry.operation.clone())
        .bind(entry.bucket.clone())
        .bind(entry.key.clone())
        .bind(entry.subject.clone())
        .bind(entry.decision.as_str().to_owned())
        .bind(
            entry
                .decision
                .error()
                .map_or("", ErrorCode::as_str)
                .to_owned(),
        )
        .bind(to_i64(entry.bytes, "bytes")?)
        .bind(to_i64(entry.latency_us, "latency")?)
        .bind(entry.request.clone())
        .bind(entry.signatures.clone())
        .execute(&mut *tx)
        .await?;
        if (seq + 1) % self.checkpoint_every == 0 {
            let checkpoint = Checkpoint {
                gatekeeper: self.signer.gatekeeper.clone(),
                seq,
                head_sha256: hash,
                created_at: entry.time_ms / 1000,
            };
            let (body, sig) = checkpoint.sign(&self.signer.key, self.signer.key_id.clone());
            sqlx::query(
                self.sql("INSERT INTO audit_checkpoints (seq, body, signatures) VALUES (?, ?, ?)"),
            )
            .bind(to_i64(seq, "seq")?)
            .bind(body)
            .bind(countersign_core::signature::encode_list(&[sig]))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(entry)
    }

    /// Signs a checkpoint over the current head now (used by `audit export` so an
    /// export always ends with a checkpoint). Returns `None` for an empty log.
    pub async fn checkpoint_now(&self, now_secs: u64) -> Result<Option<StoredCheckpoint>> {
        let _guard = self.append_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(727470001)")
                .execute(&mut *tx)
                .await?;
        }
        let Some(row) =
            sqlx::query("SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")
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
            self.sql("INSERT INTO audit_checkpoints (seq, body, signatures) VALUES (?, ?, ?)"),
        )
        .bind(to_i64(seq, "seq")?)
        .bind(body.clone())
        .bind(signatures.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(StoredCheckpoint { body, signatures }))
    }

    /// Records a nonce until `until` (Unix seconds). Returns `false` if it was already
    /// recorded: a replay. Expired nonces are swept now and then.
    pub async fn use_nonce(&self, nonce: &[u8; 16], until: u64, now: u64) -> Result<bool> {
        let n = self.nonce_inserts.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(1024) {
            sqlx::query(self.sql("DELETE FROM nonces WHERE expires_at <= ?"))
                .bind(to_i64(now, "now")?)
                .execute(&self.pool)
                .await?;
        }
        let done = sqlx::query(self.sql(
            "INSERT INTO nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
        ))
        .bind(nonce.to_vec())
        .bind(to_i64(until, "expiry")?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Reserves `bucket/key` for an upload in progress. Returns `false` if the key is
    /// stored or being uploaded: objects are never overwritten.
    pub async fn reserve(&self, bucket: &str, key: &str, now: u64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "INSERT INTO objects (bucket, object_key, state, size, sha256, content_type, stored_at,
             manifest, manifest_signatures) VALUES (?, ?, 'pending', 0, ?, '', ?, ?, '')
             ON CONFLICT (bucket, object_key) DO NOTHING",
        ))
        .bind(bucket.to_owned())
        .bind(key.to_owned())
        .bind(Vec::<u8>::new())
        .bind(to_i64(now, "now")?)
        .bind(Vec::<u8>::new())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops a reservation whose upload was abandoned.
    pub async fn release(&self, bucket: &str, key: &str) -> Result<()> {
        sqlx::query(
            self.sql(
                "DELETE FROM objects WHERE bucket = ? AND object_key = ? AND state = 'pending'",
            ),
        )
        .bind(bucket.to_owned())
        .bind(key.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a reserved key as stored, with its manifest.
    pub async fn commit(&self, o: &IndexedObject) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE objects SET state = 'stored', size = ?, sha256 = ?, content_type = ?,
             stored_at = ?, manifest = ?, manifest_signatures = ?
             WHERE bucket = ? AND object_key = ? AND state = 'pending'",
        ))
        .bind(to_i64(o.size, "size")?)
        .bind(o.sha256.to_vec())
        .bind(o.content_type.clone())
        .bind(to_i64(o.stored_at, "stored_at")?)
        .bind(o.manifest.clone())
        .bind(o.manifest_signatures.clone())
        .bind(o.bucket.clone())
        .bind(o.key.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a key is stored or reserved.
    pub async fn key_taken(&self, bucket: &str, key: &str) -> Result<bool> {
        let row =
            sqlx::query(self.sql("SELECT 1 FROM objects WHERE bucket = ? AND object_key = ?"))
                .bind(bucket.to_owned())
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    fn object_from_row(row: &AnyRow) -> Result<IndexedObject> {
        Ok(IndexedObject {
            bucket: row.try_get("bucket")?,
            key: row.try_get("object_key")?,
            size: to_u64(row.try_get("size")?, "size")?,
            sha256: hash32(row.try_get("sha256")?, "sha256")?,
            content_type: row.try_get("content_type")?,
            stored_at: to_u64(row.try_get("stored_at")?, "stored_at")?,
            manifest: row.try_get("manifest")?,
            manifest_signatures: row.try_get("manifest_signatures")?,
        })
    }

    /// A stored object's index row.
    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<IndexedObject>> {
        let row = sqlx::query(self.sql(
            "SELECT bucket, object_key, size, sha256, content_type, stored_at, manifest,
             manifest_signatures FROM objects
             WHERE bucket = ? AND object_key = ? AND state = 'stored'",
        ))
        .bind(bucket.to_owned())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::object_from_row).transpose()
    }

    /// Up to `limit` stored objects of `bucket` whose key starts with `prefix` and
    /// sorts after `after`, in byte order.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<IndexedObject>> {
        let start = if after > prefix { after } else { prefix };
        let op = if after > prefix { ">" } else { ">=" };
        let rows = sqlx::query(self.sql(&format!(
            "SELECT bucket, object_key, size, sha256, content_type, stored_at, manifest,
             manifest_signatures FROM objects
             WHERE bucket = ? AND state = 'stored' AND object_key {op} ?
             ORDER BY object_key LIMIT ?"
        )))
        .bind(bucket.to_owned())
        .bind(start.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let o = Self::object_from_row(row)?;
            // Keys sort bytewise, so every match follows `prefix` contiguously.
            if !o.key.starts_with(prefix) {
                break;
            }
            out.push(o);
        }
        Ok(out)
    }

    fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
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
            request: row.try_get("request")?,
            signatures: row.try_get("signatures")?,
        })
    }

    const ENTRY_COLUMNS: &'static str =
        "seq, prev_sha256, time_ms, gatekeeper, client_ip, operation, bucket,
        object_key, subject, decision, error_code, bytes, latency_us, request, signatures";

    /// Up to `limit` entries with `seq >= from`, in order.
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(self.sql(&format!(
            "SELECT {} FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?",
            Self::ENTRY_COLUMNS
        )))
        .bind(to_i64(from, "seq")?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::entry_from_row).collect()
    }

    /// Entries matching `filter`, in order, at most `filter.limit`.
    pub async fn search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut clauses = vec!["seq >= ?".to_owned()];
        if filter.from_ms.is_some() {
            clauses.push("time_ms >= ?".into());
        }
        if filter.to_ms.is_some() {
            clauses.push("time_ms < ?".into());
        }
        if filter.subject.is_some() {
            clauses.push("subject = ?".into());
        }
        if filter.client_ip.is_some() {
            clauses.push("client_ip = ?".into());
        }
        if filter.key_prefix.is_some() {
            clauses.push("substr(object_key, 1, CAST(? AS INTEGER)) = ?".into());
        }
        if filter.decision.is_some() {
            clauses.push("decision = ?".into());
        }
        if filter.error.is_some() {
            clauses.push("error_code = ?".into());
        }
        let sql = self.sql(&format!(
            "SELECT {} FROM audit_log WHERE {} ORDER BY seq LIMIT ?",
            Self::ENTRY_COLUMNS,
            clauses.join(" AND ")
        ));
        let mut q = sqlx::query(sql).bind(to_i64(filter.after_seq, "seq")?);
        if let Some(v) = filter.from_ms {
            q = q.bind(to_i64(v, "from")?);
        }
        if let Some(v) = filter.to_ms {
            q = q.bind(to_i64(v, "to")?);
        }
        if let Some(v) = &filter.subject {
            q = q.bind(v.clone());
        }
        if let Some(v) = &filter.client_ip {
            q = q.bind(v.to_string());
        }
        if let Some(v) = &filter.key_prefix {
            let chars = i64::try_from(v.chars().count()).unwrap_or(i64::MAX);
            q = q.bind(chars).bind(v.clone());
        }
        if let Some(v) = &filter.decision {
            q = q.bind(v.clone());
        }
        if let Some(v) = &filter.error {
            q = q.bind(v.as_str().to_owned());
        }
        let rows = q
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        let out = rows
            .iter()
            .map(Self::entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(out)
    }

    /// Every stored checkpoint, in order.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query("SELECT body, signatures FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
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
