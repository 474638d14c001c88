//! The upload state machine. Each state owns what it has created and is the one
//! that finishes or undoes it; a transition consumes the state.
//!
//! ```text
//! Reserved ──(body received, digest matches)──▶ Received ──(allow entry durable)──▶ publish + index
//!    │                                            │
//!    └── abandon: abort staged bytes, release ────┘
//! ```
//!
//! - **Reserved**: the request's nonce is unused (checked in the same call), and an
//!   index row `pending` names the key, a fresh opaque storage name,
//!   the multipart upload id once there is one, and a deadline after which the upload
//!   is dead for certain (its request is cut at its signed `expires-at`). Bytes are
//!   staged invisibly under the storage name. Memory for the upload's buffers is held.
//! - **Received**: every signed byte arrived and matched the signed SHA-256 and
//!   length; nothing is visible yet.
//! - **publish + index**: the manifest sidecar and the object are written
//!   create-only, then the row becomes `stored` (only now is the object visible).
//!
//! Requests run in detached tasks, so a client that goes away cannot interrupt these
//! steps; a crash can, and then [`crate::reconcile`] finds the `pending` row past its
//! deadline and undoes the upload (discards its bytes, releases the key, and records
//! that in the audit log).

use crate::encryption::ObjectCipher;
use crate::error::ApiError;
use crate::http::Gatekeeper;
use crate::http::pipeline::Authorized;
use crate::ledger::{IndexedObject, Reservation, Reserve};
use crate::storage::{PendingPut, new_storage_name, upload_buffer_bytes};
use bytes::Bytes;
use countersign_core::at_rest::Binding;
use countersign_core::signature::encode_list;
use countersign_core::text::b64;
use countersign_core::{BodyDigest, ErrorCode, Manifest, ObjectKey};
use tokio::sync::OwnedSemaphorePermit;

/// A reserved key with its upload staged in progress.
pub struct Reserved {
    reservation: Reservation,
    pending: PendingPut,
    _memory: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved")
            .field("reservation", &self.reservation)
            .finish_non_exhaustive()
    }
}

/// An upload whose every byte arrived and matched the signed digest.
#[derive(Debug)]
pub struct Received(Reserved);

/// For a bucket with encryption on: a fresh data key for the object about to be
/// stored as `storage_name`, wrapped by the current KEK and recorded in the index
/// before any byte is written (so no stored ciphertext ever lacks its key).
async fn seal_new(
    gk: &Gatekeeper,
    auth: &Authorized,
    key: &ObjectKey,
    storage_name: &str,
) -> Result<Option<ObjectCipher>, ApiError> {
    let Some(ring) = gk.storage.keyring(auth.bucket()) else {
        return Ok(None);
    };
    let countersign_core::Operation::Put { body, .. } = auth.request().operation() else {
        return Err(ApiError::new(ErrorCode::Internal, "PUT expected"));
    };
    let (data_key, header, wrapped) = ring.new_object(auth.bucket(), storage_name).await?;
    gk.ledger
        .put_object_key(auth.bucket().as_str(), storage_name, &wrapped)
        .await
        .map_err(|e| {
            tracing::warn!("recording a data key failed: {e}");
            ApiError::audit_unavailable()
        })?;
    Ok(Some(ObjectCipher {
        key: data_key,
        header,
        binding: Binding::new(auth.bucket(), storage_name, key, body),
    }))
}

impl Reserved {
    /// Holds memory for the upload's buffers, reserves the key and starts staging.
    pub async fn begin(
        gk: &Gatekeeper,
        auth: &Authorized,
        key: &ObjectKey,
        length: u64,
    ) -> Result<Self, ApiError> {
        // Wait for memory as long as the request may run: answering early while the
        // client is still sending would reset the connection and lose the answer.
        let kib = u32::try_from(upload_buffer_bytes(length).div_ceil(1024)).unwrap_or(u32::MAX);
        let memory = tokio::time::timeout_at(
            tokio::time::Instant::from_std(auth.deadline()),
            gk.upload_memory.clone().acquire_many_owned(kib),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Overloaded,
                "the gatekeeper's memory for uploads in flight is in use; retry shortly",
            )
        })?;
        let now = crate::http::now_ms() / 1000;
        let reservation = Reservation {
            bucket: auth.bucket().to_string(),
            key: key.to_string(),
            storage_name: new_storage_name(),
            upload_id: String::new(),
            deadline: auth
                .request()
                .expires_at()
                .saturating_add(gk.config.limits.clock_skew_secs)
                .saturating_add(gk.config.limits.reservation_grace_secs)
                .max(now),
        };
        let nonce = auth.request().nonce().0;
        let reserved = gk.ledger.reserve(&reservation, &nonce).await.map_err(|e| {
            tracing::warn!("reserve failed: {e}");
            ApiError::audit_unavailable()
        })?;
        match reserved {
            Reserve::Reserved => {}
            Reserve::Replayed => {
                return Err(ApiError::new(
                    ErrorCode::Replayed,
                    "this request's nonce was already used",
                ));
            }
            Reserve::Taken => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    "an object with this key exists or is being uploaded; objects are never overwritten",
                ));
            }
        }
        let cipher = match seal_new(gk, auth, key, &reservation.storage_name).await {
            Ok(c) => c,
            Err(e) => {
                release(gk, &reservation).await;
                return Err(e);
            }
        };
        match gk
            .storage
            .begin_put(auth.bucket(), &reservation.storage_name, length, cipher)
        {
            Ok(pending) => Ok(Self {
                reservation,
                pending,
                _memory: memory,
            }),
            Err(e) => {
                tracing::warn!("begin put failed: {e}");
                release(gk, &reservation).await;
                Err(ApiError::storage_unavailable())
            }
        }
    }

    /// Stages the next chunk; records a multipart upload id as soon as one exists.
    pub async fn write(&mut self, gk: &Gatekeeper, chunk: Bytes) -> Result<(), ApiError> {
        let started = self.pending.write(chunk).await.map_err(|e| {
            tracing::warn!("staging an upload failed: {e}");
            ApiError::storage_unavailable()
        })?;
        if let Some(id) = started {
            self.reservation.upload_id = id;
            gk.ledger
                .set_upload_id(&self.reservation)
                .await
                .map_err(|e| {
                    tracing::warn!("recording an upload id failed: {e}");
                    ApiError::audit_unavailable()
                })?;
        }
        Ok(())
    }

    /// The digest of what arrived so far.
    pub fn digest(&self) -> BodyDigest {
        self.pending.digest()
    }

    /// Every byte arrived and matched.
    pub fn received(self) -> Received {
        Received(self)
    }

    /// Discards the staged bytes and releases the key.
    pub async fn abandon(self, gk: &Gatekeeper) {
        let r = self.reservation;
        if let Err(e) = self.pending.abort().await {
            tracing::warn!("aborting an upload failed (recovery will finish it): {e}");
        }
        release(gk, &r).await;
    }
}

/// The manifest sidecar stored next to an object (`manifests/<storage name>`).
pub(crate) fn manifest_sidecar(
    bucket: &str,
    key: &str,
    manifest: &[u8],
    signatures: &str,
) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "bucket": bucket,
            "key": key,
            "manifest": b64(manifest),
            "signatures": signatures,
        })
        .to_string(),
    )
}

/// Releases a reservation; if the database is down, recovery releases it after its
/// deadline.
async fn release(gk: &Gatekeeper, r: &Reservation) {
    if let Err(e) = gk.ledger.release(r).await {
        tracing::warn!("releasing a reservation failed (recovery will release it): {e}");
    }
}

impl Received {
    /// Writes the signed manifest sidecar and the object (create-only), then marks
    /// the index row stored. On failure everything is undone and the key released.
    pub async fn publish(
        self,
        gk: &Gatekeeper,
        auth: &Authorized,
        seq: u64,
    ) -> Result<IndexedObject, ApiError> {
        let Reserved {
            reservation,
            pending,
            _memory,
        } = self.0;
        let now = crate::http::now_ms() / 1000;
        let (content_type, digest) = match auth.request().operation() {
            countersign_core::Operation::Put {
                content_type, body, ..
            } => (content_type.to_string(), *body),
            _ => return Err(ApiError::new(ErrorCode::Internal, "PUT expected")),
        };
        let manifest =
            match Manifest::for_put(auth.verified(), gk.config.gatekeeper_id.clone(), now, seq) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("manifest failed: {e}");
                    Reserved {
                        reservation,
                        pending,
                        _memory,
                    }
                    .abandon(gk)
                    .await;
                    return Err(ApiError::new(
                        ErrorCode::Internal,
                        "the gatekeeper could not build the manifest",
                    ));
                }
            };
        let (manifest_bytes, manifest_sig) = manifest.sign(&gk.key, gk.key_id.clone());
        let manifest_signatures = encode_list(&[manifest_sig]);
        let sidecar = manifest_sidecar(
            &reservation.bucket,
            &reservation.key,
            &manifest_bytes,
            &manifest_signatures,
        );
        let undo = |reservation: Reservation| async move {
            if let Err(e) = gk
                .storage
                .discard_upload(
                    auth.bucket(),
                    &reservation.storage_name,
                    &reservation.upload_id,
                )
                .await
            {
                tracing::warn!("discarding a failed upload failed (recovery will finish it): {e}");
            }
            release(gk, &reservation).await;
        };
        if let Err(e) = pending.publish(sidecar).await {
            tracing::warn!("publishing an upload failed: {e}");
            undo(reservation).await;
            return Err(ApiError::storage_unavailable());
        }
        let indexed = IndexedObject {
            bucket: reservation.bucket.clone(),
            key: reservation.key.clone(),
            storage_name: reservation.storage_name.clone(),
            size: digest.length,
            sha256: digest.sha256,
            content_type,
            stored_at: now,
            manifest: manifest_bytes,
            manifest_signatures,
        };
        if let Err(e) = gk.ledger.commit(&indexed).await {
            tracing::warn!("index commit failed: {e}");
            undo(reservation).await;
            return Err(ApiError::audit_unavailable());
        }
        Ok(indexed)
    }

    /// Discards the upload (its allow entry could not be written).
    pub async fn abandon(self, gk: &Gatekeeper) {
        self.0.abandon(gk).await;
    }
}
