//! The PostgreSQL sequencer: the single writer of this instance's audit appends.
//!
//! It takes every queued append (up to [`MAX_BATCH`]) and writes them as one batch,
//! on a connection of its own (no pool checkout, so no ping). Usually a batch is one
//! statement, one round trip: the chain head this instance's previous batch left is
//! kept in memory, and the statement ([`WRITE`]) takes the append lock, checks that
//! the log still ends at that head, and only then inserts the nonces, the entries
//! and any hash-chain checkpoint due. It runs outside a transaction block, so
//! PostgreSQL commits it as a whole or not at all.
//!
//! A used nonce is found by the primary key of `nonces` as the statement inserts it
//! (unique violation), not by reading the table first: the check is then always one
//! probe of that index, whatever plan PostgreSQL caches for the statement. (A read
//! `nonce = ANY(…)` was planned, while the table was small, as a sequential scan
//! that the cached plan kept as the table grew: each batch compared its nonces with
//! every recorded one.)
//!
//! When the head check cannot pass — the first batch (no head in memory), another
//! instance appended since this one's last batch — the statement writes nothing;
//! when a nonce was already used, or another instance's rows committed while it
//! waited for the lock (its snapshot predates them), it fails on the unique `nonce`
//! or `seq` and writes nothing either. The batch is then written once more in a
//! transaction that holds the lock across reading the head, recording the nonces (a
//! used one makes its entry a `replayed` denial) and inserting. Any other failure
//! fails the whole batch (every caller is answered `audit_unavailable`), closes the
//! connection and forgets the head; the next batch reconnects and re-reads it.

use super::{
    APPEND_LOCK_KEY, AppendJob, AuditEntry, CheckpointSigner, LedgerError, MAX_BATCH, Pending,
    Result, Row, batch_nonces, chain, due_checkpoints, hash32, sweep_due, to_u64,
};
use countersign_core::{Decision, ErrorCode};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AnyPool, Connection as _, Row as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// The last entry's sequence number and hash; `None` for an empty log.
type Head = Option<(u64, [u8; 32])>;

/// Writes a batch: `$1` the append lock's key; `$2`, `$3` the head the entries were
/// chained to (checked only if `$30`); `$4`, `$5` the nonces to record and their
/// expiry (a used one fails the statement on the primary key); `$6`–`$26` the
/// entries' columns; `$27`–`$29` the checkpoints due. Returns whether it wrote
/// (`false`: the head check failed, nothing was written).
const WRITE: &str = "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)::text AS taken),
head AS MATERIALIZED (SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1),
go AS MATERIALIZED (SELECT (SELECT taken FROM lock) IS NOT NULL AND (NOT $30::bool OR (
        (SELECT seq FROM head) IS NOT DISTINCT FROM $2::int8
    AND (SELECT entry_sha256 FROM head) IS NOT DISTINCT FROM $3::bytea)) AS ok),
new_nonces AS (INSERT INTO nonces (nonce, expires_at)
    SELECT * FROM unnest($4::bytea[], $5::int8[]) WHERE (SELECT ok FROM go) RETURNING 1),
entries AS (INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper,
        request_id, client_ip, operation, bucket, object_key, subject, decision, error_code,
        bytes, latency_us, request, request_sha256, request_length, signatures,
        signatures_sha256, signatures_length)
    SELECT * FROM unnest($6::int8[], $7::bytea[], $8::bytea[], $9::int8[], $10::text[],
        $11::bytea[], $12::text[], $13::bytea[], $14::bytea[], $15::bytea[], $16::bytea[],
        $17::text[], $18::text[], $19::int8[], $20::int8[], $21::bytea[], $22::bytea[],
        $23::int8[], $24::bytea[], $25::bytea[], $26::int8[])
    WHERE (SELECT ok FROM go) RETURNING 1),
checkpoints AS (INSERT INTO audit_checkpoints (seq, body, signatures)
    SELECT * FROM unnest($27::int8[], $28::bytea[], $29::text[])
    WHERE (SELECT ok FROM go) RETURNING 1)
SELECT ok FROM go";

/// PostgreSQL's SQLSTATE for a unique constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

/// The sequencer task's state; see the module documentation.
pub(super) struct Sequencer {
    pub(super) options: PgConnectOptions,
    /// The ledger's pool: once it is closed, appends fail too.
    pub(super) pool: AnyPool,
    pub(super) signer: Arc<CheckpointSigner>,
    pub(super) checkpoint_every: u64,
    pub(super) append_lock: Arc<Mutex<()>>,
    pub(super) deadline: Duration,
    pub(super) appended: u64,
    /// The connection, opened by the first batch and after a failure.
    pub(super) conn: Option<PgConnection>,
    /// The head this instance's last batch left; `None` when unknown.
    pub(super) head: Option<Head>,
}

impl Sequencer {
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<AppendJob>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let now = tokio::time::Instant::now();
            let (live, late): (Vec<_>, Vec<_>) =
                batch.drain(..).partition(|j| j.draft.expires > now);
            for job in late {
                let _ = job.reply.send(Err(LedgerError::Timeout(self.deadline)));
            }
            if live.is_empty() {
                continue;
            }
            let (drafts, replies): (Vec<_>, Vec<_>) =
                live.into_iter().map(|j| (j.draft, j.reply)).unzip();
            match self.write(drafts).await {
                Ok(entries) => {
                    for (reply, entry) in replies.into_iter().zip(entries) {
                        let _ = reply.send(Ok(entry));
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(LedgerError::Batch(why.clone())));
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Writes one batch within the deadline; nothing is returned unless it committed.
    /// On any failure the connection is closed and the head forgotten.
    async fn write(&mut self, drafts: Vec<Pending>) -> Result<Vec<AuditEntry>> {
        let lock = Arc::clone(&self.append_lock);
        let _guard = lock.lock().await;
        if self.pool.is_closed() {
            self.conn = None;
            return Err(LedgerError::Database(sqlx::Error::PoolClosed));
        }
        let deadline = self.deadline;
        let sweep = sweep_due(self.appended, drafts.len());
        let written = tokio::time::timeout(deadline, self.write_batch(drafts, sweep))
            .await
            .map_err(|_| LedgerError::Timeout(deadline))
            .and_then(|r| r);
        match written {
            Ok(rows) => {
                self.appended += rows.len() as u64;
                if let Some(last) = rows.last() {
                    self.head = Some(Some((last.entry.seq, last.hash)));
                }
                Ok(rows.into_iter().map(|r| r.entry).collect())
            }
            Err(e) => {
                // A connection cut mid-statement (the deadline) may still be inside
                // a transaction: it is closed, never reused.
                self.conn = None;
                self.head = None;
                Err(e)
            }
        }
    }

    async fn write_batch(&mut self, drafts: Vec<Pending>, sweep: bool) -> Result<Vec<Row>> {
        let conn = match self.conn.take() {
            Some(conn) => self.conn.insert(conn),
            None => self
                .conn
                .insert(PgConnection::connect_with(&self.options).await?),
        };
        if sweep {
            let now = i64::try_from(crate::http::now_ms() / 1000).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM nonces WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        let nonces = batch_nonces(&drafts);
        // Until the database says otherwise, every first use of a nonce in the batch
        // is taken as fresh (a later use of the same nonce is a replay).
        let mut fresh: Vec<bool> = drafts.iter().map(|p| p.nonce.is_none()).collect();
        for (i, _, _) in &nonces {
            if let Some(f) = fresh.get_mut(*i) {
                *f = true;
            }
        }
        let mut rows = chain(&self.signer.gatekeeper, drafts, fresh, self.head.flatten())?;
        if let Some(head) = self.head {
            let checkpoints = due_checkpoints(&self.signer, self.checkpoint_every, &rows);
            match write(conn, &rows, &nonces, &checkpoints, Some(head)).await {
                Ok(true) => return Ok(rows),
                Ok(false) => {}
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.write_locked(&mut rows, &nonces).await?;
        Ok(rows)
    }

    /// Writes the batch in a transaction that holds the append lock from reading the
    /// head to the commit; `rows` are re-chained to that head, and an entry whose
    /// nonce was already used becomes a `replayed` denial.
    async fn write_locked(
        &mut self,
        rows: &mut [Row],
        nonces: &[(usize, [u8; 16], i64)],
    ) -> Result<()> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| LedgerError::Batch("no database connection".into()))?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| {
                Ok::<_, LedgerError>((
                    to_u64(row.try_get::<i64, _>(0)?, "seq")?,
                    hash32(row.try_get::<Vec<u8>, _>(1)?, "entry_sha256")?,
                ))
            })
            .transpose()?;
        let mut replayed = vec![false; rows.len()];
        if !nonces.is_empty() {
            let inserted: std::collections::HashSet<Vec<u8>> = sqlx::query_scalar(
                "INSERT INTO nonces (nonce, expires_at) SELECT * FROM unnest($1::bytea[], $2::int8[])
                 ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
            )
            .bind(nonces.iter().map(|(_, n, _)| n.to_vec()).collect::<Vec<_>>())
            .bind(nonces.iter().map(|(_, _, e)| *e).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            for (i, n, _) in nonces {
                if let Some(r) = replayed.get_mut(*i) {
                    *r = !inserted.contains(n.as_slice());
                }
            }
        }
        rechain(rows, &replayed, head)?;
        let checkpoints = due_checkpoints(&self.signer, self.checkpoint_every, rows);
        let wrote = write(&mut tx, rows, &[], &checkpoints, None).await?;
        if !wrote {
            return Err(LedgerError::Batch("the locked write did not write".into()));
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Runs [`WRITE`]: with `check` (the head `rows` were chained to), only if the log
/// still ends there; without, unconditionally. A used nonce of `nonces` fails it
/// with a unique violation.
async fn write(
    conn: &mut PgConnection,
    rows: &[Row],
    nonces: &[(usize, [u8; 16], i64)],
    checkpoints: &[(i64, Vec<u8>, String)],
    check: Option<Head>,
) -> Result<bool, sqlx::Error> {
    let head = check.flatten();
    let seq = head
        .map(|(s, _)| i64::try_from(s).map_err(|e| sqlx::Error::Encode(Box::new(e))))
        .transpose()?;
    let entries = rows.iter().map(|r| (&r.entry, &r.columns));
    let q = sqlx::query_scalar::<_, bool>(WRITE)
        .bind(APPEND_LOCK_KEY)
        .bind(seq)
        .bind(head.map(|(_, h)| h.to_vec()))
        .bind(
            nonces
                .iter()
                .map(|(_, n, _)| n.to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(nonces.iter().map(|(_, _, e)| *e).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.prev_sha256.to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.hash.to_vec()).collect::<Vec<_>>())
        .bind(entries.clone().map(|(_, c)| c.time_ms).collect::<Vec<_>>())
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.gatekeeper.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.request_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.client_ip.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.operation.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.bucket.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.subject.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.decision.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.decision.error().map_or("", ErrorCode::as_str).to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(entries.clone().map(|(_, c)| c.bytes).collect::<Vec<_>>())
        .bind(
            entries
                .clone()
                .map(|(_, c)| c.latency_us)
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.request.stored().to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.request.sha256().to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(_, c)| c.request_length)
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.signatures.stored().to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .clone()
                .map(|(e, _)| e.signatures.sha256().to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .map(|(_, c)| c.signatures_length)
                .collect::<Vec<_>>(),
        )
        .bind(checkpoints.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.1.clone()).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.2.clone()).collect::<Vec<_>>())
        .bind(check.is_some());
    q.fetch_one(conn).await
}

/// Whether the statement failed on a unique constraint (it then wrote nothing).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == UNIQUE_VIOLATION)
}

/// Places `rows` after `head` again (sequence numbers, previous hashes, hashes), and
/// turns each `replayed` one into a `replayed` denial.
fn rechain(rows: &mut [Row], replayed: &[bool], head: Head) -> Result<()> {
    let (mut seq, mut prev) = match head {
        Some((last, hash)) => (last + 1, hash),
        None => (0, countersign_core::audit::GENESIS),
    };
    for (row, replayed) in rows.iter_mut().zip(replayed) {
        if *replayed {
            row.entry.decision = Decision::Deny(ErrorCode::Replayed);
        }
        row.entry.seq = seq;
        row.entry.prev_sha256 = prev;
        row.hash = row.entry.hash();
        row.seq = super::to_i64(seq, "seq")?;
        prev = row.hash;
        seq += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::ledger::{AuditDraft, NonceUse};
    use countersign_core::GatekeeperId;
    use countersign_core::audit::CapturedHeader;

    fn drafts(n: u8) -> Vec<Pending> {
        (0..n)
            .map(|i| {
                let draft = AuditDraft {
                    time_ms: 1_800_000_000_000 + u64::from(i),
                    request_id: vec![i],
                    client_ip: "127.0.0.1".parse().unwrap(),
                    operation: b"PUT".to_vec(),
                    bucket: b"reports".to_vec(),
                    key: vec![b'k', i],
                    subject: b"user-1".to_vec(),
                    decision: Decision::Allow,
                    bytes: 1,
                    latency_us: 2,
                    request: CapturedHeader::whole(b"r"),
                    signatures: CapturedHeader::whole(b"s"),
                };
                let nonce = NonceUse {
                    nonce: [i; 16],
                    until: 1_800_000_600,
                };
                Pending::new(draft, Some(nonce), Duration::from_secs(1)).unwrap()
            })
            .collect()
    }

    /// A batch chained to a guessed head and re-chained to the real one, with one
    /// nonce found used, is exactly the batch chained to the real head with that
    /// knowledge from the start.
    #[test]
    fn rechain_equals_chaining_with_what_the_database_said() {
        let gk = GatekeeperId::parse("gk-1").unwrap();
        let head = Some((41, [7u8; 32]));
        let mut guessed = chain(&gk, drafts(3), vec![true; 3], None).unwrap();
        rechain(&mut guessed, &[false, true, false], head).unwrap();
        let known = chain(&gk, drafts(3), vec![true, false, true], head).unwrap();
        assert_eq!(guessed.len(), known.len());
        for (g, k) in guessed.iter().zip(&known) {
            assert_eq!((g.seq, g.hash, &g.entry), (k.seq, k.hash, &k.entry));
        }
        assert_eq!(guessed[0].entry.seq, 42);
        assert_eq!(guessed[0].entry.prev_sha256, [7u8; 32]);
        assert_eq!(
            guessed[1].entry.decision,
            Decision::Deny(ErrorCode::Replayed)
        );
        countersign_core::audit::verify_chain(guessed.iter().map(|r| &r.entry), 42, [7u8; 32])
            .unwrap();
    }
}
