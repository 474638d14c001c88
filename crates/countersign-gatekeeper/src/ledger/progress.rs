//! The audit log's progress for the metrics endpoint: how many entries there are,
//! how many the newest signed checkpoint covers, and when the entries at the edge
//! between the two were appended.

use super::{Ledger, Result, to_i64, to_u64};
use crate::metrics::LogProgress;
use sqlx::Row as _;

impl Ledger {
    /// Reads the log's progress. The checkpoint is read before the entry count, so
    /// that an append in between can only make the lag look larger, never negative.
    pub async fn progress(&self) -> Result<LogProgress> {
        self.within(async {
            let checkpoint_size = sqlx::query("SELECT MAX(size) FROM tlog_checkpoints")
                .fetch_one(&self.pool)
                .await?
                .try_get::<Option<i64>, _>(0)?
                .map_or(Ok(0), |s| to_u64(s, "tree size"))?;
            let entries = sqlx::query("SELECT MAX(seq) FROM audit_log")
                .fetch_one(&self.pool)
                .await?
                .try_get::<Option<i64>, _>(0)?
                .map_or(Ok(0), |s| to_u64(s, "seq").map(|s| s.saturating_add(1)))?;
            // The newest entry the checkpoint covers and the oldest it does not.
            let from = checkpoint_size.saturating_sub(1);
            let rows = sqlx::query(
                self.sql("SELECT seq, time_ms FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT 2"),
            )
            .bind(to_i64(from, "seq")?)
            .fetch_all(&self.pool)
            .await?;
            let mut progress = LogProgress {
                entries,
                checkpoint_size,
                ..LogProgress::default()
            };
            for row in rows {
                let seq = to_u64(row.try_get::<i64, _>(0)?, "seq")?;
                let time = to_u64(row.try_get::<i64, _>(1)?, "time_ms")?;
                if seq < checkpoint_size {
                    progress.checkpoint_newest_ms = Some(time);
                } else if progress.oldest_unintegrated_ms.is_none() {
                    progress.oldest_unintegrated_ms = Some(time);
                }
            }
            Ok(progress)
        })
        .await
    }
}
