//! The wrapped data keys of encrypted objects (`object_keys`), one row per stored
//! name, written before the object's first byte (see `crate::encryption`).

use super::{Ledger, Result, Writer};
use crate::encryption::WrappedKey;
use sqlx::Row as _;

/// How many objects of a bucket one KEK wraps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyUse {
    /// The KEK.
    pub kek_id: String,
    /// Data keys it wraps.
    pub objects: u64,
}

/// The request path's statements (PUT, GET), shared by the SQLite thread and the pool.
const PUT_OBJECT_KEY: &str =
    "INSERT INTO object_keys (bucket, storage_name, kek_id, wrapped, header)
     VALUES (?, ?, ?, ?, ?)";
const OBJECT_KEY: &str =
    "SELECT kek_id, wrapped, header FROM object_keys WHERE bucket = ? AND storage_name = ?";

impl Ledger {
    /// Records the wrapped data key of the object to be stored as `storage_name`.
    pub async fn put_object_key(
        &self,
        bucket: &str,
        storage_name: &str,
        key: &WrappedKey,
    ) -> Result<()> {
        if let Writer::Sqlite(thread) = &self.writer {
            let (bucket, name, key) = (bucket.to_owned(), storage_name.to_owned(), key.clone());
            return thread
                .call(move |c| {
                    c.prepare_cached(PUT_OBJECT_KEY)?
                        .execute(rusqlite::params![
                            bucket,
                            name,
                            key.kek_id,
                            key.wrapped,
                            key.header
                        ])?;
                    Ok(())
                })
                .await;
        }
        self.within(async {
            sqlx::query(self.sql(PUT_OBJECT_KEY))
                .bind(bucket.to_owned())
                .bind(storage_name.to_owned())
                .bind(key.kek_id.clone())
                .bind(key.wrapped.clone())
                .bind(key.header.clone())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// The wrapped data key of `storage_name`, if the object is encrypted.
    pub async fn object_key(&self, bucket: &str, storage_name: &str) -> Result<Option<WrappedKey>> {
        if let Writer::Sqlite(thread) = &self.writer {
            use rusqlite::OptionalExtension as _;
            let (bucket, name) = (bucket.to_owned(), storage_name.to_owned());
            return thread
                .call(move |c| {
                    Ok(c.prepare_cached(OBJECT_KEY)?
                        .query_row(rusqlite::params![bucket, name], |r| {
                            Ok(WrappedKey {
                                kek_id: r.get(0)?,
                                wrapped: r.get(1)?,
                                header: r.get(2)?,
                            })
                        })
                        .optional()?)
                })
                .await;
        }
        self.within(async {
            let row = sqlx::query(self.sql(OBJECT_KEY))
                .bind(bucket.to_owned())
                .bind(storage_name.to_owned())
                .fetch_optional(&self.pool)
                .await?;
            row.map(|r| {
                Ok(WrappedKey {
                    kek_id: r.try_get("kek_id")?,
                    wrapped: r.try_get("wrapped")?,
                    header: r.try_get("header")?,
                })
            })
            .transpose()
        })
        .await
    }

    /// Up to `limit` encrypted objects of `bucket` whose data key is wrapped by another
    /// KEK than `current`, after storage name `after`, in name order.
    pub async fn object_keys_not_wrapped_by(
        &self,
        bucket: &str,
        current: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, WrappedKey)>> {
        self.within(async {
            let rows = sqlx::query(self.sql(
                "SELECT storage_name, kek_id, wrapped, header FROM object_keys
                 WHERE bucket = ? AND kek_id <> ? AND storage_name > ?
                 ORDER BY storage_name LIMIT ?",
            ))
            .bind(bucket.to_owned())
            .bind(current.to_owned())
            .bind(after.to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok((
                        r.try_get("storage_name")?,
                        WrappedKey {
                            kek_id: r.try_get("kek_id")?,
                            wrapped: r.try_get("wrapped")?,
                            header: r.try_get("header")?,
                        },
                    ))
                })
                .collect()
        })
        .await
    }

    /// One data key of `bucket` wrapped by `kek_id`, with its storage name, if any
    /// (the start-up check unwraps it to prove the configured KEK is the right one).
    pub async fn object_key_sample(
        &self,
        bucket: &str,
        kek_id: &str,
    ) -> Result<Option<(String, WrappedKey)>> {
        self.within(async {
            let row = sqlx::query(self.sql(
                "SELECT storage_name, kek_id, wrapped, header FROM object_keys
                 WHERE bucket = ? AND kek_id = ? ORDER BY storage_name LIMIT 1",
            ))
            .bind(bucket.to_owned())
            .bind(kek_id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
            row.map(|r| {
                Ok((
                    r.try_get("storage_name")?,
                    WrappedKey {
                        kek_id: r.try_get("kek_id")?,
                        wrapped: r.try_get("wrapped")?,
                        header: r.try_get("header")?,
                    },
                ))
            })
            .transpose()
        })
        .await
    }

    /// Replaces the wrapped data key of `storage_name` if it is still `old` (so a
    /// concurrent rewrap is never undone). Returns whether it was replaced.
    pub async fn rewrap_object_key(
        &self,
        bucket: &str,
        storage_name: &str,
        old: &WrappedKey,
        new: &WrappedKey,
    ) -> Result<bool> {
        self.within(async {
            let done = sqlx::query(self.sql(
                "UPDATE object_keys SET kek_id = ?, wrapped = ?
                 WHERE bucket = ? AND storage_name = ? AND kek_id = ? AND wrapped = ?",
            ))
            .bind(new.kek_id.clone())
            .bind(new.wrapped.clone())
            .bind(bucket.to_owned())
            .bind(storage_name.to_owned())
            .bind(old.kek_id.clone())
            .bind(old.wrapped.clone())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// How many data keys of `bucket` each KEK wraps (a KEK absent here wraps none
    /// and may be retired).
    pub async fn key_uses(&self, bucket: &str) -> Result<Vec<KeyUse>> {
        self.within(async {
            let rows = sqlx::query(self.sql(
                "SELECT kek_id, COUNT(*) AS n FROM object_keys WHERE bucket = ?
                 GROUP BY kek_id ORDER BY kek_id",
            ))
            .bind(bucket.to_owned())
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(KeyUse {
                        kek_id: r.try_get("kek_id")?,
                        objects: super::to_u64(r.try_get("n")?, "count")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Removes the wrapped data keys whose storage name no index row (stored or
    /// pending) nor object being encrypted has any more: uploads that were released.
    /// A key row is written only while its reservation (or `encryptions` row) exists,
    /// so a live upload's key is never removed.
    pub async fn sweep_object_keys(&self) -> Result<u64> {
        self.within(async {
            let done = sqlx::query(self.sql(
                "DELETE FROM object_keys WHERE NOT EXISTS (SELECT 1 FROM objects o
                 WHERE o.bucket = object_keys.bucket AND o.storage_name = object_keys.storage_name)
                 AND NOT EXISTS (SELECT 1 FROM encryptions e
                 WHERE e.bucket = object_keys.bucket AND e.new_name = object_keys.storage_name)",
            ))
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}
