//! Plaintext objects being moved to the encrypted form by `keys encrypt-existing`
//! (`encryptions`, see `crate::encrypt_existing`): one row per object in flight,
//! owning its new storage name until the index row switches to it.

use super::{IndexedObject, Ledger, LedgerError, Result, discard_on_error};
use sqlx::Row as _;

/// One object in flight: its stored plaintext name and the encrypted copy's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    /// The object key.
    pub key: String,
    /// The plaintext copy, which the index names until the switch.
    pub old_name: String,
    /// The encrypted copy.
    pub new_name: String,
}

impl Ledger {
    /// Up to `limit` stored objects of `bucket` after key `after`, in key order, that
    /// have no data key: written before encryption was turned on.
    pub async fn unencrypted_objects(
        &self,
        bucket: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<IndexedObject>> {
        self.within(async {
            let rows = sqlx::query(self.sql(
                "SELECT object_key, storage_name, size, sha256, content_type, stored_at, manifest,
                 manifest_signatures FROM objects o
                 WHERE bucket = ? AND state = 'stored' AND object_key > ?
                 AND NOT EXISTS (SELECT 1 FROM object_keys k
                   WHERE k.bucket = o.bucket AND k.storage_name = o.storage_name)
                 ORDER BY object_key LIMIT ?",
            ))
            .bind(bucket.to_owned())
            .bind(after.to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| IndexedObject::from_row(bucket, row.try_get("object_key")?, row))
                .collect()
        })
        .await
    }

    /// The objects of `bucket` in flight (left by a run that stopped).
    pub async fn encryptions(&self, bucket: &str) -> Result<Vec<Encryption>> {
        self.within(async {
            let rows = sqlx::query(self.sql(
                "SELECT object_key, old_name, new_name FROM encryptions WHERE bucket = ?
                 ORDER BY object_key",
            ))
            .bind(bucket.to_owned())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Encryption {
                        key: r.try_get("object_key")?,
                        old_name: r.try_get("old_name")?,
                        new_name: r.try_get("new_name")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Records that `e.new_name` is being written for `e.key`. Returns `false` if the
    /// object is already in flight.
    pub async fn begin_encryption(&self, bucket: &str, e: &Encryption) -> Result<bool> {
        self.within(async {
            let done = sqlx::query(self.sql(
                "INSERT INTO encryptions (bucket, object_key, old_name, new_name)
                 VALUES (?, ?, ?, ?) ON CONFLICT (bucket, object_key) DO NOTHING",
            ))
            .bind(bucket.to_owned())
            .bind(e.key.clone())
            .bind(e.old_name.clone())
            .bind(e.new_name.clone())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Gives up an object in flight whose index row still names its plaintext copy:
    /// forgets the new copy's data key and the row (its files are discarded first by
    /// the caller; any left are orphans for recovery).
    pub async fn drop_encryption(&self, bucket: &str, e: &Encryption) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let result = self
            .within(async {
                let mut tx = self.begin_write(&mut conn).await?;
                sqlx::query(self.sql(
                    "DELETE FROM object_keys WHERE bucket = ? AND storage_name = ?
                     AND NOT EXISTS (SELECT 1 FROM objects
                       WHERE bucket = ? AND object_key = ? AND storage_name = ?)",
                ))
                .bind(bucket.to_owned())
                .bind(e.new_name.clone())
                .bind(bucket.to_owned())
                .bind(e.key.clone())
                .bind(e.new_name.clone())
                .execute(&mut *tx)
                .await?;
                sqlx::query(self.sql(
                    "DELETE FROM encryptions WHERE bucket = ? AND object_key = ? AND new_name = ?",
                ))
                .bind(bucket.to_owned())
                .bind(e.key.clone())
                .bind(e.new_name.clone())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            })
            .await;
        discard_on_error(&mut conn, result)
    }

    /// Switches the index row of `e.key` from the plaintext copy to the encrypted one
    /// and ends the flight, in one transaction. Returns `false` (and changes nothing)
    /// if the row no longer names the plaintext copy.
    pub async fn switch_encryption(&self, bucket: &str, e: &Encryption) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let result = self
            .within(async {
                let mut tx = self.begin_write(&mut conn).await?;
                let switched = sqlx::query(self.sql(
                    "UPDATE objects SET storage_name = ?
                     WHERE bucket = ? AND object_key = ? AND storage_name = ? AND state = 'stored'",
                ))
                .bind(e.new_name.clone())
                .bind(bucket.to_owned())
                .bind(e.key.clone())
                .bind(e.old_name.clone())
                .execute(&mut *tx)
                .await?;
                if switched.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let ended = sqlx::query(self.sql(
                    "DELETE FROM encryptions WHERE bucket = ? AND object_key = ? AND new_name = ?",
                ))
                .bind(bucket.to_owned())
                .bind(e.key.clone())
                .bind(e.new_name.clone())
                .execute(&mut *tx)
                .await?;
                if ended.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Err(LedgerError::Corrupt(format!(
                        "{bucket}/{}: its encryption is no longer in flight",
                        e.key
                    )));
                }
                tx.commit().await?;
                Ok(true)
            })
            .await;
        discard_on_error(&mut conn, result)
    }
}
