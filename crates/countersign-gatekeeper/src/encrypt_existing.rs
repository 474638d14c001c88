//! `countersign-gatekeeper keys encrypt-existing`: moves the plaintext objects of an
//! encrypted bucket (stored before encryption was turned on) to the encrypted form
//! under a fresh opaque name, one object at a time, so that every object is readable
//! at every moment, old or new, never neither.
//!
//! For each stored object without a data key:
//!
//! 1. an `encryptions` row records the new storage name (it owns the name: recovery
//!    neither deletes its files nor its data key);
//! 2. a fresh data key is wrapped by the current KEK and recorded;
//! 3. the plaintext is read from the store and written sealed under the new name with
//!    its manifest sidecar (create-only); its SHA-256 and length must be the
//!    index's, or the object is left as it is (`stored_object_tampered`);
//! 4. an audit entry (operation `ENCRYPT`, `allow`, the object's size) is written;
//! 5. in one transaction the index row switches to the new name and the `encryptions`
//!    row goes; only then are the plaintext files deleted (if that is interrupted,
//!    they are orphans that recovery records and deletes).
//!
//! A run that was killed leaves at most an `encryptions` row per object in flight,
//! whose index row still names the plaintext: the next run discards the new copy
//! and starts that object again. Run one instance of the command at a time.

use crate::encryption::ObjectCipher;
use crate::ledger::{Encryption, IndexedObject, Ledger};
use crate::storage::{Storage, new_storage_name};
use countersign_core::at_rest::Binding;
use countersign_core::{BodyDigest, Bucket, Decision, Error, ErrorCode, ObjectKey};
use futures::StreamExt as _;

/// One object moved to the encrypted form.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Encrypted {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// Its plaintext storage name (deleted).
    pub from: String,
    /// Its encrypted storage name.
    pub to: String,
    /// Its size in bytes.
    pub bytes: u64,
}

fn index_error(e: crate::ledger::LedgerError) -> Error {
    Error::new(ErrorCode::AuditUnavailable, format!("the index: {e}"))
}

fn storage_error(e: crate::storage::StorageError) -> Error {
    match e {
        crate::storage::StorageError::Sealing(e) => e,
        e => Error::new(ErrorCode::StorageUnavailable, format!("the store: {e}")),
    }
}

/// Encrypts every plaintext object of every encrypted bucket; calls `each` after
/// every object switched. Returns how many were.
pub async fn encrypt_existing(
    ledger: &Ledger,
    storage: &Storage,
    mut each: impl FnMut(&Encrypted),
) -> Result<u64, String> {
    let mut total = 0;
    for bucket in storage.buckets() {
        if storage.keyring(bucket).is_none() {
            continue;
        }
        // What a killed run left in flight: its index rows still name the plaintext.
        for e in ledger
            .encryptions(bucket.as_str())
            .await
            .map_err(|e| format!("cannot read the index: {e}"))?
        {
            give_up(ledger, storage, bucket, &e)
                .await
                .map_err(|err| format!("{bucket}/{}: {}", e.key, err.message()))?;
        }
        let mut after = String::new();
        loop {
            let page = ledger
                .unencrypted_objects(bucket.as_str(), &after, 100)
                .await
                .map_err(|e| format!("cannot read the index: {e}"))?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.key.clone();
            for object in page {
                if let Some(done) = encrypt_one(ledger, storage, bucket, &object).await? {
                    total += 1;
                    each(&done);
                }
            }
        }
    }
    Ok(total)
}

/// Discards an object's new copy (files, data key, `encryptions` row).
async fn give_up(
    ledger: &Ledger,
    storage: &Storage,
    bucket: &Bucket,
    e: &Encryption,
) -> Result<(), Error> {
    storage
        .discard_upload(bucket, &e.new_name, "")
        .await
        .map_err(storage_error)?;
    ledger
        .drop_encryption(bucket.as_str(), e)
        .await
        .map_err(index_error)
}

/// Moves one object; `None` if another run has it in flight.
async fn encrypt_one(
    ledger: &Ledger,
    storage: &Storage,
    bucket: &Bucket,
    o: &IndexedObject,
) -> Result<Option<Encrypted>, String> {
    let flight = Encryption {
        key: o.key.clone(),
        old_name: o.storage_name.clone(),
        new_name: new_storage_name(),
    };
    let audit = |decision: Decision| {
        let mut draft = crate::reconcile::tool_draft(b"ENCRYPT", bucket.as_str(), &o.key, decision);
        draft.bytes = o.size;
        ledger.append(draft, None)
    };
    let fail = |e: Error| format!("{bucket}/{}: {}", o.key, e.message());
    if !ledger
        .begin_encryption(bucket.as_str(), &flight)
        .await
        .map_err(|e| fail(index_error(e)))?
    {
        return Ok(None);
    }
    if let Err(e) = copy_sealed(ledger, storage, bucket, o, &flight.new_name).await {
        if let Err(undo) = give_up(ledger, storage, bucket, &flight).await {
            tracing::warn!(
                "encrypt-existing: undoing {bucket}/{} failed: {undo}",
                o.key
            );
        }
        if let Err(log) = audit(Decision::Deny(e.code())).await {
            tracing::warn!("encrypt-existing: cannot write the audit log: {log}");
        }
        return Err(fail(e));
    }
    if let Err(e) = audit(Decision::Allow).await {
        if let Err(undo) = give_up(ledger, storage, bucket, &flight).await {
            tracing::warn!(
                "encrypt-existing: undoing {bucket}/{} failed: {undo}",
                o.key
            );
        }
        return Err(format!("cannot write the audit log: {e}"));
    }
    let switched = ledger
        .switch_encryption(bucket.as_str(), &flight)
        .await
        .map_err(|e| fail(index_error(e)))?;
    if !switched {
        // Objects are never overwritten or deleted, so this is a damaged index.
        give_up(ledger, storage, bucket, &flight)
            .await
            .map_err(fail)?;
        return Err(fail(Error::new(
            ErrorCode::Internal,
            "its index row changed while it was being encrypted",
        )));
    }
    storage
        .discard_upload(bucket, &flight.old_name, "")
        .await
        .map_err(|e| {
            format!(
                "{bucket}/{}: encrypted, but deleting the plaintext copy failed (recovery \
                 deletes it): {e}",
                o.key
            )
        })?;
    Ok(Some(Encrypted {
        bucket: bucket.to_string(),
        key: o.key.clone(),
        from: flight.old_name,
        to: flight.new_name,
        bytes: o.size,
    }))
}

/// Records a fresh data key for `new_name`, then writes the object's plaintext sealed
/// under it, with the manifest sidecar; checks the plaintext against the index.
async fn copy_sealed(
    ledger: &Ledger,
    storage: &Storage,
    bucket: &Bucket,
    o: &IndexedObject,
    new_name: &str,
) -> Result<(), Error> {
    let ring = storage
        .keyring(bucket)
        .ok_or_else(|| Error::new(ErrorCode::KeyUnavailable, "the bucket has no keyring"))?;
    let (key, header, wrapped) = ring.new_object(bucket, new_name).await?;
    ledger
        .put_object_key(bucket.as_str(), new_name, &wrapped)
        .await
        .map_err(index_error)?;
    let digest = BodyDigest {
        sha256: o.sha256,
        length: o.size,
    };
    let cipher = ObjectCipher {
        key,
        header,
        binding: Binding::new(bucket, new_name, &ObjectKey::parse(&o.key)?, &digest),
    };
    let mut pending = storage
        .begin_put(bucket, new_name, o.size, Some(cipher))
        .map_err(storage_error)?;
    let copied = async {
        let mut plain = storage
            .get(bucket, &o.storage_name, 0..o.size, None)
            .await
            .map_err(storage_error)?;
        while let Some(chunk) = plain.next().await {
            pending
                .write(chunk.map_err(storage_error)?)
                .await
                .map_err(storage_error)?;
        }
        if pending.digest() != digest {
            return Err(Error::new(
                ErrorCode::StoredObjectTampered,
                "its stored plaintext differs from the SHA-256 and length in the index; \
                 left as it is",
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        if let Err(abort) = pending.abort().await {
            tracing::warn!("encrypt-existing: aborting an upload failed: {abort}");
        }
        return Err(e);
    }
    let sidecar = crate::upload::manifest_sidecar(
        bucket.as_str(),
        &o.key,
        &o.manifest,
        &o.manifest_signatures,
    );
    pending.publish(sidecar).await.map_err(storage_error)
}
