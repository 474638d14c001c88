//! The SQLite writer: one OS thread that owns its own connection to the database file
//! and runs the request path's database work there.
//!
//! sqlx runs every SQLite statement on its connection's worker thread, so each
//! statement (and each pool check) costs a message to that thread and a wake-up back:
//! a GET made thirteen such hops. Here a request hands its whole unit of work to this
//! thread once: the thread takes every job queued (up to [`MAX_BATCH`]), answers the
//! reads, and writes all the queued audit appends in one `BEGIN IMMEDIATE … COMMIT`
//! (group commit), answering each append only once that transaction committed. While
//! one batch is on disk, the next queues up.
//!
//! Durability is the same as through sqlx: WAL with `synchronous = NORMAL`, so a
//! committed entry survives a crash of the process (kill -9); the WAL is synced at
//! checkpoints, not at every commit. Other writers (the integrator, `reconcile`, the
//! rest of the ledger on sqlx's connection, a second process) take SQLite's write lock
//! in turn; each waits for it up to the ledger's deadline (`busy_timeout`).

use super::{
    AppendJob, AuditEntry, CheckpointSigner, LedgerError, MAX_BATCH, Pending, Result, batch_nonces,
    chain, due_checkpoints, sweep_due, to_u64,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Work for the thread: a closure run with the connection (outside any transaction),
/// or with the reason there is none.
type Work = Box<dyn FnOnce(Result<&mut Connection>) + Send>;

enum Job {
    /// Boxed: an append is large, and the queue holds jobs by value.
    Append(Box<AppendJob>),
    Call(Work),
    /// Closes the connection and ends the thread, then answers; later jobs fail.
    Close(oneshot::Sender<()>),
}

/// The handle to the writer thread; cheap to clone. The thread ends once every
/// handle is dropped or [`SqliteThread::close`] was called.
#[derive(Clone)]
pub(super) struct SqliteThread {
    jobs: mpsc::Sender<Job>,
    /// How long a caller waits for its answer: the ledger's deadline for the queue and
    /// as much again for the work (whose lock waits `busy_timeout` bounds). A write
    /// stuck in the disk cannot be cancelled; its caller is answered anyway.
    patience: Duration,
}

impl SqliteThread {
    /// Opens a connection to the database file at `path` (which exists: the pool
    /// created and migrated it) and starts the thread.
    pub(super) fn start(
        path: PathBuf,
        signer: Arc<CheckpointSigner>,
        checkpoint_every: u64,
        deadline: Duration,
    ) -> Result<Self> {
        let conn = open(&path, deadline)?;
        let (jobs, queue) = mpsc::channel(super::QUEUE);
        let writer = Writer {
            path,
            conn: Some(conn),
            signer,
            checkpoint_every,
            deadline,
            appended: 0,
        };
        std::thread::Builder::new()
            .name("countersign-sqlite".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| LedgerError::Batch(format!("cannot start the SQLite thread: {e}")))?;
        Ok(Self {
            jobs,
            patience: deadline.saturating_mul(2),
        })
    }

    /// Appends `draft` in the next batch; see [`super::Ledger::append`].
    pub(super) async fn append(&self, draft: Pending) -> Result<AuditEntry> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Append(Box::new(AppendJob { draft, reply })))
            .await
            .map_err(|_| LedgerError::Sequencer)?;
        self.answer(answer).await
    }

    /// Waits for a job's answer, at most [`SqliteThread::patience`].
    async fn answer<T>(&self, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        tokio::time::timeout(self.patience, answer)
            .await
            .map_err(|_| LedgerError::Timeout(self.patience))?
            .map_err(|_| LedgerError::Sequencer)?
    }

    /// Runs `f` with the thread's connection, outside any transaction: one hop for a
    /// whole unit of work. A failure that leaves the connection inside a transaction
    /// makes the thread reopen it.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let _ = reply.send(conn.and_then(f));
        });
        self.jobs
            .send(Job::Call(work))
            .await
            .map_err(|_| LedgerError::Sequencer)?;
        self.answer(answer).await
    }

    /// Closes the connection once the jobs queued before are done, and waits (at most
    /// [`SqliteThread::patience`]) until it is closed; later calls fail.
    pub(super) async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).await.is_ok() {
            let _ = tokio::time::timeout(self.patience, closed).await;
        }
    }
}

/// Opens the thread's connection with the ledger's settings.
fn open(path: &std::path::Path, deadline: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(deadline)?;
    // The pool set WAL (a property of the file); this connection's own settings:
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

struct Writer {
    path: PathBuf,
    /// `None` after a failure left it in doubt: reopened by the next job.
    conn: Option<Connection>,
    signer: Arc<CheckpointSigner>,
    checkpoint_every: u64,
    deadline: Duration,
    appended: u64,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.blocking_recv() {
            jobs.push(first);
            while jobs.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::with_capacity(jobs.len());
            let mut close = None;
            for job in jobs.drain(..) {
                match job {
                    Job::Append(a) => appends.push(*a),
                    Job::Call(work) => {
                        work(self.connection());
                        self.discard_if_in_transaction();
                    }
                    Job::Close(reply) => close = Some(reply),
                }
            }
            self.append(appends);
            if let Some(reply) = close {
                // The connection closes (and SQLite checkpoints its WAL) before the
                // caller hears back.
                self.conn = None;
                let _ = reply.send(());
                return;
            }
        }
    }

    /// The connection, reopened if a failure discarded it.
    fn connection(&mut self) -> Result<&mut Connection> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => open(&self.path, self.deadline)?,
        };
        Ok(self.conn.insert(conn))
    }

    /// A failed COMMIT (a full disk) can leave the transaction open, and every later
    /// statement would run inside it and never commit: such a connection is closed.
    fn discard_if_in_transaction(&mut self) {
        if self.conn.as_ref().is_some_and(|c| !c.is_autocommit()) {
            self.conn = None;
        }
    }

    /// Writes the live appends of a batch in one transaction and answers each.
    fn append(&mut self, batch: Vec<AppendJob>) {
        let now = tokio::time::Instant::now();
        let (live, late): (Vec<_>, Vec<_>) = batch.into_iter().partition(|j| j.draft.expires > now);
        for job in late {
            let _ = job.reply.send(Err(LedgerError::Timeout(self.deadline)));
        }
        if live.is_empty() {
            return;
        }
        let (drafts, replies): (Vec<_>, Vec<_>) =
            live.into_iter().map(|j| (j.draft, j.reply)).unzip();
        let sweep = sweep_due(self.appended, drafts.len());
        let (signer, every) = (Arc::clone(&self.signer), self.checkpoint_every);
        let written = self
            .connection()
            .and_then(|conn| write(conn, &signer, every, drafts, sweep));
        match written {
            Ok(entries) => {
                self.appended += entries.len() as u64;
                for (reply, entry) in replies.into_iter().zip(entries) {
                    let _ = reply.send(Ok(entry));
                }
            }
            Err(e) => {
                self.conn = None;
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(LedgerError::Batch(why.clone())));
                }
            }
        }
    }
}

/// One batch in one transaction (rolled back when dropped uncommitted).
fn write(
    conn: &mut Connection,
    signer: &CheckpointSigner,
    checkpoint_every: u64,
    drafts: Vec<Pending>,
    sweep: bool,
) -> Result<Vec<AuditEntry>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if sweep {
        let now = i64::try_from(crate::http::now_ms() / 1000).unwrap_or(i64::MAX);
        tx.prepare_cached("DELETE FROM nonces WHERE expires_at <= ?1")?
            .execute([now])?;
    }
    let mut fresh: Vec<bool> = drafts.iter().map(|p| p.nonce.is_none()).collect();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO nonces (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT (nonce) DO NOTHING",
        )?;
        for (i, nonce, until) in batch_nonces(&drafts) {
            let inserted = insert.execute(rusqlite::params![nonce.as_slice(), until])? == 1;
            if let Some(f) = fresh.get_mut(i) {
                *f = inserted;
            }
        }
    }
    let head = tx
        .prepare_cached("SELECT seq, entry_sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?
        .map(|(seq, hash)| {
            Ok::<_, LedgerError>((to_u64(seq, "seq")?, super::hash32(hash, "entry_sha256")?))
        })
        .transpose()?;
    let rows = chain(&signer.gatekeeper, drafts, fresh, head)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, prev_sha256, entry_sha256, time_ms, gatekeeper, request_id,
             client_ip, operation, bucket, object_key, subject, decision, error_code, bytes,
             latency_us, request, request_sha256, request_length, signatures, signatures_sha256,
             signatures_length)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21)",
        )?;
        for r in &rows {
            let (e, c) = (&r.entry, &r.columns);
            insert.execute(rusqlite::params![
                r.seq,
                e.prev_sha256.as_slice(),
                r.hash.as_slice(),
                c.time_ms,
                e.gatekeeper.as_str(),
                e.request_id,
                e.client_ip.to_string(),
                e.operation,
                e.bucket,
                e.key,
                e.subject,
                e.decision.as_str(),
                e.decision
                    .error()
                    .map_or("", countersign_core::ErrorCode::as_str),
                c.bytes,
                c.latency_us,
                e.request.stored(),
                e.request.sha256().as_slice(),
                c.request_length,
                e.signatures.stored(),
                e.signatures.sha256().as_slice(),
                c.signatures_length,
            ])?;
        }
    }
    for (seq, body, signatures) in due_checkpoints(signer, checkpoint_every, &rows) {
        tx.prepare_cached(
            "INSERT INTO audit_checkpoints (seq, body, signatures) VALUES (?1, ?2, ?3)",
        )?
        .execute(rusqlite::params![seq, body, signatures])?;
    }
    tx.commit()?;
    Ok(rows.into_iter().map(|r| r.entry).collect())
}
