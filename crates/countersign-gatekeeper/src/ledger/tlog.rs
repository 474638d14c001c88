//! The audit log's Merkle tree in the database (see `docs/PROTOCOL.md`,
//! "Transparency log"): integration of appended entries into the tree, its hash
//! tiles and the signed C2SP checkpoints.
//!
//! Sequencing and integration are separate steps: [`Ledger::append`] durably gives
//! each entry its sequence number (the request path waits only for that), and
//! [`Ledger::integrate`] later reads entries that are already stored, extends the tree
//! over them, stores the changed tiles and the new right edge, and signs a checkpoint,
//! all in one transaction. Whatever interrupts it, the tree and the checkpoints are
//! either both extended or both as they were. With several instances on PostgreSQL a
//! transaction-scoped advisory lock lets exactly one integrate at a time; another
//! instance skips its turn, and takes over when the first stops.

use super::{Dialect, Ledger, LedgerError, Result, discard_on_error, to_i64, to_u64};
use countersign_core::merkle::{Hash, TreeBuilder, leaf_hash};
use countersign_core::note::{Checkpoint, NoteSigner, SignedNote};
use countersign_core::tiles::{TILE_HEIGHT, TILE_WIDTH};
use sqlx::Row as _;
use std::collections::BTreeMap;

/// The PostgreSQL advisory lock of integration (appends use another one).
const INTEGRATE_LOCK: i64 = 727_470_002;

pub use countersign_core::logged::log_origin;

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeCheckpoint {
    /// The tree size it covers.
    pub size: u64,
    /// The signed note, as text.
    pub note: String,
}

/// A stored checkpoint with witnesses' cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignedCheckpoint {
    /// The checkpoint, as the gatekeeper signed it.
    pub checkpoint: TreeCheckpoint,
    /// The cosignatures: time (POSIX seconds) and signature line, newest first.
    pub cosignatures: Vec<(u64, String)>,
}

impl CosignedCheckpoint {
    /// The note with the cosignature lines appended (a C2SP signed note).
    pub fn note(&self) -> String {
        let mut note = self.checkpoint.note.clone();
        for (_, line) in &self.cosignatures {
            note.push_str(line);
        }
        note
    }

    /// When the quorum was reached: the time of the `quorum`-th newest cosignature.
    pub fn quorum_time(&self, quorum: usize) -> Option<u64> {
        self.cosignatures
            .get(quorum.checked_sub(1)?)
            .map(|(time, _)| *time)
    }
}

impl Ledger {
    /// Extends the tree over up to `max_entries` stored entries past its end, stores
    /// the tiles that changed, and signs and stores a checkpoint of the new size with
    /// the gatekeeper's key. Returns the new checkpoint, or `None` if there was
    /// nothing to integrate or another instance is integrating right now.
    pub async fn integrate(&self, max_entries: u32) -> Result<Option<TreeCheckpoint>> {
        let origin = log_origin(&self.signer.gatekeeper);
        let signer = NoteSigner::ed25519(&origin, self.signer.key.clone())
            .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        let mut conn = self.write_conn().await?;
        let result = self
            .within(async {
                let mut tx = self.begin_write(&mut conn).await?;
                if self.dialect == Dialect::Postgres {
                    let row = sqlx::query(self.sql("SELECT pg_try_advisory_xact_lock(?)"))
                        .bind(INTEGRATE_LOCK)
                        .fetch_one(&mut *tx)
                        .await?;
                    if !row.try_get::<bool, _>(0)? {
                        return Ok(None);
                    }
                }
                let mut tree = match sqlx::query("SELECT size, edge FROM tlog_state WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    Some(row) => {
                        let size = to_u64(row.try_get::<i64, _>(0)?, "tree size")?;
                        let edge: Vec<u8> = row.try_get(1)?;
                        let edge = edge
                            .chunks_exact(32)
                            .filter_map(|c| Hash::try_from(c).ok())
                            .collect();
                        TreeBuilder::from_edge(size, edge)
                            .map_err(|e| LedgerError::Corrupt(e.to_string()))?
                    }
                    None => TreeBuilder::new(),
                };
                let rows = sqlx::query(self.sql(&format!(
                    "SELECT {} FROM audit_log a WHERE a.seq >= ? ORDER BY a.seq LIMIT ?",
                    Self::ENTRY_COLUMNS
                )))
                .bind(to_i64(tree.size(), "tree size")?)
                .bind(i64::from(max_entries))
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    return Ok(None);
                }
                let start = tree.size();
                // The tiles this batch changes: (tile level, tile index) -> hashes.
                let mut tiles: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
                for row in &rows {
                    let entry = Self::entry_from_row(row)?;
                    if entry.seq != tree.size() {
                        return Err(LedgerError::Corrupt(format!(
                            "the audit log has no entry {} (the next is {}): it cannot be integrated",
                            tree.size(),
                            entry.seq
                        )));
                    }
                    let mut stored = Vec::new();
                    tree.push_with(leaf_hash(&entry.encode()), |level, index, hash| {
                        if level % TILE_HEIGHT == 0 {
                            stored.push((level / TILE_HEIGHT, index, *hash));
                        }
                    })
                    .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
                    for (tile_level, index, hash) in stored {
                        let key = (tile_level, index / TILE_WIDTH);
                        let tile = match tiles.entry(key) {
                            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                            std::collections::btree_map::Entry::Vacant(v) => {
                                let old = sqlx::query(self.sql(
                                    "SELECT hashes FROM tlog_tiles WHERE level = ? AND idx = ?",
                                ))
                                .bind(i64::from(key.0))
                                .bind(to_i64(key.1, "tile index")?)
                                .fetch_optional(&mut *tx)
                                .await?
                                .map(|r| r.try_get::<Vec<u8>, _>(0))
                                .transpose()?
                                .unwrap_or_default();
                                v.insert(old)
                            }
                        };
                        if tile.len() as u64 != (index % TILE_WIDTH) * 32 {
                            return Err(LedgerError::Corrupt(format!(
                                "tile {}/{} holds {} bytes where hash {index} belongs",
                                key.0,
                                key.1,
                                tile.len()
                            )));
                        }
                        tile.extend_from_slice(&hash);
                    }
                }
                for ((level, index), hashes) in tiles {
                    sqlx::query(self.sql(
                        "INSERT INTO tlog_tiles (level, idx, hashes) VALUES (?, ?, ?)
                         ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
                    ))
                    .bind(i64::from(level))
                    .bind(to_i64(index, "tile index")?)
                    .bind(hashes)
                    .execute(&mut *tx)
                    .await?;
                }
                let size = tree.size();
                // The search columns of the entries just integrated, in the same
                // transaction: `audit_search` holds exactly the entries below the tree
                // size. A row already there (the tree was rebuilt from an earlier
                // size) takes the values of the entry integrated now.
                sqlx::query(self.sql(
                    "INSERT INTO audit_search (seq, time_ms, client_ip, operation, bucket,
                     object_key, subject, decision, error_code)
                     SELECT seq, time_ms, client_ip, operation, bucket, object_key, subject,
                     decision, error_code FROM audit_log WHERE seq >= ? AND seq < ?
                     ON CONFLICT (seq) DO UPDATE SET time_ms = excluded.time_ms,
                     client_ip = excluded.client_ip, operation = excluded.operation,
                     bucket = excluded.bucket, object_key = excluded.object_key,
                     subject = excluded.subject, decision = excluded.decision,
                     error_code = excluded.error_code",
                ))
                .bind(to_i64(start, "tree size")?)
                .bind(to_i64(size, "tree size")?)
                .execute(&mut *tx)
                .await?;
                sqlx::query(self.sql(
                    "INSERT INTO tlog_state (id, size, edge) VALUES (1, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET size = excluded.size, edge = excluded.edge",
                ))
                .bind(to_i64(size, "tree size")?)
                .bind(tree.edge().concat())
                .execute(&mut *tx)
                .await?;
                let checkpoint = Checkpoint::new(&origin, size, tree.root(), Vec::new())
                    .and_then(|cp| SignedNote::sign(cp.body(), &[&signer]))
                    .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
                let note = checkpoint.encode();
                sqlx::query(self.sql("INSERT INTO tlog_checkpoints (size, note) VALUES (?, ?)"))
                    .bind(to_i64(size, "tree size")?)
                    .bind(note.clone())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(TreeCheckpoint { size, note }))
            })
            .await;
        discard_on_error(&mut conn, result)
    }

    /// The newest signed checkpoint, if the tree has one.
    pub async fn latest_tree_checkpoint(&self) -> Result<Option<TreeCheckpoint>> {
        let row = self
            .within(async {
                Ok(sqlx::query(
                    "SELECT size, note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?)
            })
            .await?;
        row.map(|r| {
            Ok(TreeCheckpoint {
                size: to_u64(r.try_get::<i64, _>(0)?, "tree size")?,
                note: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Records a witness's cosignature of the stored checkpoint of `size` (checked by
    /// the caller): `witness` is the witness's vkey, `time` the cosignature's
    /// timestamp and `line` its signature line. A newer cosignature by the same
    /// witness of the same checkpoint replaces an older one; an older one is ignored.
    pub async fn store_cosignature(
        &self,
        size: u64,
        witness: &str,
        time: u64,
        line: &str,
    ) -> Result<()> {
        let q = sqlx::query(self.sql(
            "INSERT INTO tlog_cosignatures (size, witness, time, line) VALUES (?, ?, ?, ?)
             ON CONFLICT (size, witness) DO UPDATE SET time = excluded.time, line = excluded.line
             WHERE excluded.time > tlog_cosignatures.time",
        ))
        .bind(to_i64(size, "tree size")?)
        .bind(witness.to_owned())
        .bind(to_i64(time, "cosignature time")?)
        .bind(line.to_owned());
        self.within(async { Ok(q.execute(&self.pool).await.map(|_| ())?) })
            .await
    }

    /// The newest stored checkpoint that at least `quorum` of the `witnesses`
    /// (vkeys) cosigned, with those cosignatures (newest first), if there is one.
    pub async fn newest_cosigned_checkpoint(
        &self,
        witnesses: &[String],
        quorum: usize,
    ) -> Result<Option<CosignedCheckpoint>> {
        if witnesses.is_empty() || quorum == 0 {
            return Ok(None);
        }
        let marks = vec!["?"; witnesses.len()].join(", ");
        let mut q = sqlx::query(self.sql(&format!(
            // The subquery walks the primary key (size, witness) from the end and stops
            // at the first size with the quorum: it does not grow with the log.
            "SELECT size, note FROM tlog_checkpoints WHERE size = (
                 SELECT size FROM tlog_cosignatures WHERE witness IN ({marks})
                 GROUP BY size HAVING COUNT(*) >= ? ORDER BY size DESC LIMIT 1)"
        )));
        for w in witnesses {
            q = q.bind(w.clone());
        }
        let q = q.bind(i64::try_from(quorum).unwrap_or(i64::MAX));
        let Some(row) = self
            .within(async { Ok(q.fetch_optional(&self.pool).await?) })
            .await?
        else {
            return Ok(None);
        };
        let checkpoint = TreeCheckpoint {
            size: to_u64(row.try_get::<i64, _>(0)?, "tree size")?,
            note: row.try_get(1)?,
        };
        let mut q = sqlx::query(self.sql(&format!(
            "SELECT time, line FROM tlog_cosignatures WHERE size = ? AND witness IN ({marks})
             ORDER BY time DESC"
        )))
        .bind(to_i64(checkpoint.size, "tree size")?);
        for w in witnesses {
            q = q.bind(w.clone());
        }
        let rows = self
            .within(async { Ok(q.fetch_all(&self.pool).await?) })
            .await?;
        let cosignatures = rows
            .iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get::<i64, _>(0)?, "cosignature time")?,
                    r.try_get::<String, _>(1)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CosignedCheckpoint {
            checkpoint,
            cosignatures,
        }))
    }

    /// Up to `limit` stored checkpoints of sizes above `after`, by size.
    pub async fn tree_checkpoints(&self, after: u64, limit: u32) -> Result<Vec<TreeCheckpoint>> {
        let rows = self
            .within(async {
                Ok(sqlx::query(self.sql(
                    "SELECT size, note FROM tlog_checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                ))
                .bind(to_i64(after, "tree size")?)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TreeCheckpoint {
                    size: to_u64(r.try_get::<i64, _>(0)?, "tree size")?,
                    note: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// The SHA-256 recorded with entry `seq` when it was appended (the hash chain
    /// pins every other entry's content through the next entry's link; this pins the
    /// last one).
    pub async fn recorded_entry_hash(&self, seq: u64) -> Result<Option<Hash>> {
        let q = sqlx::query(self.sql("SELECT entry_sha256 FROM audit_log WHERE seq = ?"))
            .bind(to_i64(seq, "seq")?);
        let row = self
            .within(async { Ok(q.fetch_optional(&self.pool).await?) })
            .await?;
        row.map(|r| super::hash32(r.try_get(0)?, "entry_sha256"))
            .transpose()
    }

    /// The stored hashes of tile `index` of tile level `level` (all that the tree
    /// holds so far: a full tile is 8,192 bytes), if there are any.
    pub async fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>> {
        let q = sqlx::query(self.sql("SELECT hashes FROM tlog_tiles WHERE level = ? AND idx = ?"))
            .bind(i64::from(level))
            .bind(to_i64(index, "tile index")?);
        let row = self
            .within(async { Ok(q.fetch_optional(&self.pool).await?) })
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }
}
