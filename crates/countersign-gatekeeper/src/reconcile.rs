//! Recovery: every durable state a crash (or a dependency outage during cleanup) can
//! leave behind has an owner here, run at start-up, on a timer and by
//! `countersign-gatekeeper reconcile [--dry-run]`.
//!
//! - A `pending` reservation past its deadline belongs to an upload that is dead for
//!   certain (its request was cut at its signed `expires-at`): the reservation is
//!   released (the key is usable again), an audit entry records it, then its bytes
//!   are discarded (the S3 multipart upload aborted by its recorded id, staged or
//!   published files deleted). Such an upload was never acknowledged: the index row
//!   turns `stored` before a PUT is answered.
//! - A file under `objects/` or `manifests/` whose storage name no index row knows
//!   is left over from such an upload (a local staging file `objects/<name>#<n>`
//!   included): it is recorded and deleted.
//!
//! Both steps are idempotent and safe with several instances: releasing is a
//! conditional delete, and only the instance whose release took effect records it.

use crate::ledger::{AuditDraft, Ledger, Reservation};
use crate::storage::Storage;
use countersign_core::audit::CapturedHeader;
use countersign_core::{Bucket, Decision, ErrorCode};
use std::net::{IpAddr, Ipv4Addr};

/// One thing recovery did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    /// `release_reservation`, `abort_upload` or `delete_orphan`.
    pub action: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The object key (reservations) or the file's path in the store (orphans).
    pub target: String,
    /// The storage name concerned.
    pub storage_name: String,
}

fn draft(bucket: &str, target: &str, code: ErrorCode) -> AuditDraft {
    tool_draft(b"RECONCILE", bucket, target, Decision::Deny(code))
}

/// The audit entry of something the gatekeeper's own tools did (recovery, `keys
/// rewrap`, `keys encrypt-existing`): no client, no signed request; what was done
/// is told in the key field.
pub(crate) fn tool_draft(
    operation: &[u8],
    bucket: &str,
    target: &str,
    decision: Decision,
) -> AuditDraft {
    AuditDraft {
        time_ms: crate::http::now_ms(),
        request_id: Vec::new(),
        client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        operation: operation.to_vec(),
        bucket: bucket.as_bytes().to_vec(),
        key: target.as_bytes().to_vec(),
        subject: Vec::new(),
        decision,
        bytes: 0,
        latency_us: 0,
        request: CapturedHeader::whole(b""),
        signatures: CapturedHeader::whole(b""),
    }
}

/// Reconciles the index and every bucket at `now` (Unix seconds). With `dry_run`,
/// only reports.
pub async fn reconcile(
    ledger: &Ledger,
    storage: &Storage,
    now: u64,
    dry_run: bool,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    let expired = ledger
        .expired_reservations(now)
        .await
        .map_err(|e| format!("cannot read reservations: {e}"))?;
    for r in expired {
        let action = Action {
            action: "release_reservation",
            bucket: r.bucket.clone(),
            target: r.key.clone(),
            storage_name: r.storage_name.clone(),
        };
        if !dry_run {
            release_dead_upload(ledger, storage, &r).await?;
        }
        actions.push(action);
    }
    let buckets: Vec<Bucket> = storage.buckets().cloned().collect();
    for bucket in &buckets {
        let uploads = storage
            .unfinished_uploads(bucket, now)
            .await
            .map_err(|e| format!("cannot list multipart uploads of {bucket}: {e}"))?;
        for (name, upload_id) in uploads {
            // A live upload has its pending reservation; any other is left over.
            let live = ledger
                .storage_name_pending(bucket.as_str(), &name)
                .await
                .map_err(|e| format!("cannot read the index: {e}"))?;
            if live {
                continue;
            }
            let target = format!("objects/{name} (multipart upload {upload_id})");
            if !dry_run {
                ledger
                    .append(draft(bucket.as_str(), &target, ErrorCode::Internal), None)
                    .await
                    .map_err(|e| format!("cannot write the audit log: {e}"))?;
                storage
                    .abort_upload(bucket, &name, &upload_id)
                    .await
                    .map_err(|e| format!("cannot abort an upload in {bucket}: {e}"))?;
            }
            actions.push(Action {
                action: "abort_upload",
                bucket: bucket.to_string(),
                target,
                storage_name: name,
            });
        }
    }
    for bucket in buckets {
        let files = storage
            .files(&bucket)
            .await
            .map_err(|e| format!("cannot list bucket {bucket}: {e}"))?;
        for file in files {
            let Some(name) = file.storage_name else {
                continue;
            };
            let known = ledger
                .storage_name_known(bucket.as_str(), &name)
                .await
                .map_err(|e| format!("cannot read the index: {e}"))?;
            if known {
                continue;
            }
            if !dry_run {
                ledger
                    .append(
                        draft(bucket.as_str(), &file.path, ErrorCode::Internal),
                        None,
                    )
                    .await
                    .map_err(|e| format!("cannot write the audit log: {e}"))?;
                storage
                    .delete_file(&bucket, &file.path)
                    .await
                    .map_err(|e| format!("cannot delete {bucket}/{}: {e}", file.path))?;
            }
            actions.push(Action {
                action: "delete_orphan",
                bucket: bucket.to_string(),
                target: file.path,
                storage_name: name,
            });
        }
    }
    if !dry_run {
        // The data keys of uploads released above (or earlier, by a process that died
        // before it got here) have no index row left.
        ledger
            .sweep_object_keys()
            .await
            .map_err(|e| format!("cannot remove unused data keys: {e}"))?;
    }
    Ok(actions)
}

async fn release_dead_upload(
    ledger: &Ledger,
    storage: &Storage,
    r: &Reservation,
) -> Result<(), String> {
    let claimed = ledger
        .release(r)
        .await
        .map_err(|e| format!("cannot release a reservation: {e}"))?;
    if !claimed {
        return Ok(());
    }
    ledger
        .append(draft(&r.bucket, &r.key, ErrorCode::Timeout), None)
        .await
        .map_err(|e| format!("cannot write the audit log: {e}"))?;
    let bucket = Bucket::parse(&r.bucket).map_err(|e| e.to_string())?;
    if storage.has_bucket(&bucket) {
        storage
            .discard_upload(&bucket, &r.storage_name, &r.upload_id)
            .await
            .map_err(|e| format!("cannot discard an upload in {bucket}: {e}"))?;
    }
    Ok(())
}
