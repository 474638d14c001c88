//! The object store behind the gatekeeper, through the `object_store` crate: a local
//! directory (embedded default) or an S3-compatible service, per bucket.
//!
//! The storage path is a stream transform: [`Transform`] seals plaintext chunks on the
//! way in and opens stored chunks on the way out. Today the only transform is
//! [`Identity`]; encryption at rest is a new `Transform`, and the request pipeline
//! does not change.
//!
//! A PUT streams into a [`PendingPut`] that hashes while it writes and keeps the
//! object invisible (a buffered small body, or an uncompleted multipart upload)
//! until [`PendingPut::publish`]; [`PendingPut::abort`] leaves nothing behind.

use crate::config::{BucketConfig, StorageConfig};
use bytes::{Bytes, BytesMut};
use countersign_core::{BodyDigest, Bucket, ObjectKey};
use futures::stream::{BoxStream, StreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Bodies up to this size are buffered and stored with one PUT; larger ones stream
/// through a multipart upload. Either way memory per request is bounded.
pub const SMALL_OBJECT_BYTES: usize = 8 * 1024 * 1024;
/// Multipart part size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight per upload.
pub const PARTS_IN_FLIGHT: usize = 4;
/// First key segment reserved for the gatekeeper's own objects (manifests).
pub const RESERVED_SEGMENT: &str = ".countersign";

/// A storage failure; answered as `storage_unavailable`, details in the server log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bucket is not configured.
    #[error("bucket `{0}` is not configured")]
    UnknownBucket(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The object already exists in the store.
    #[error("the object already exists in the store")]
    AlreadyExists,
    /// A configuration problem found when building the store.
    #[error("{0}")]
    Config(String),
}

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Turns plaintext into stored bytes and back, chunk by chunk.
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// A sealer for one new object.
    fn sealer(&self) -> Box<dyn Sealer>;
    /// The stored byte range that holds plaintext range `plain`.
    fn stored_range(&self, plain: Range<u64>) -> Range<u64>;
    /// Opens stored bytes read from [`Transform::stored_range`] into plaintext `plain`.
    fn open(&self, stored: ByteStream, plain: Range<u64>) -> ByteStream;
}

/// Seals one object's plaintext.
pub trait Sealer: Send {
    /// Seals the next plaintext chunk.
    fn update(&mut self, plain: Bytes) -> Bytes;
    /// The final stored bytes (e.g. an authentication tag), possibly empty.
    fn finish(&mut self) -> Bytes;
}

/// Stores plaintext as is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl Sealer for Identity {
    fn update(&mut self, plain: Bytes) -> Bytes {
        plain
    }
    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }
}

impl Transform for Identity {
    fn sealer(&self) -> Box<dyn Sealer> {
        Box::new(Identity)
    }
    fn stored_range(&self, plain: Range<u64>) -> Range<u64> {
        plain
    }
    fn open(&self, stored: ByteStream, _plain: Range<u64>) -> ByteStream {
        stored
    }
}

/// The configured buckets.
#[derive(Clone, Debug)]
pub struct Storage {
    buckets: BTreeMap<Bucket, Arc<dyn ObjectStore>>,
    transform: Arc<dyn Transform>,
}

/// Builds the `object_store` client for one bucket.
pub fn build_store(config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match config {
        StorageConfig::Local { path } => {
            std::fs::create_dir_all(path).map_err(|e| {
                StorageError::Config(format!("cannot create {}: {e}", path.display()))
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(path)?))
        }
        StorageConfig::S3 {
            endpoint,
            region,
            s3_bucket,
            access_key_id,
            secret_access_key,
            allow_http,
        } => Ok(Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_region(region)
                .with_bucket_name(s3_bucket)
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key)
                .with_allow_http(*allow_http)
                .with_virtual_hosted_style_request(false)
                .build()?,
        )),
    }
}

/// The store path of an object.
pub fn object_path(key: &ObjectKey) -> Path {
    Path::from_iter(key.segments())
}

/// The store path of an object's manifest.
pub fn manifest_path(key: &ObjectKey) -> Path {
    Path::from_iter(
        [RESERVED_SEGMENT, "manifests"]
            .into_iter()
            .chain(key.segments()),
    )
}

impl Storage {
    /// Builds every bucket's store, with the identity transform.
    pub fn from_config(buckets: &BTreeMap<Bucket, BucketConfig>) -> Result<Self, StorageError> {
        let mut map = BTreeMap::new();
        for (name, b) in buckets {
            map.insert(name.clone(), build_store(&b.storage)?);
        }
        Ok(Self {
            buckets: map,
            transform: Arc::new(Identity),
        })
    }

    /// Replaces the transform (for encryption at rest).
    pub fn with_transform(mut self, transform: Arc<dyn Transform>) -> Self {
        self.transform = transform;
        self
    }

    fn store(&self, bucket: &Bucket) -> Result<&Arc<dyn ObjectStore>, StorageError> {
        self.buckets
            .get(bucket)
            .ok_or_else(|| StorageError::UnknownBucket(bucket.to_string()))
    }

    /// Whether the bucket is configured.
    pub fn has_bucket(&self, bucket: &Bucket) -> bool {
        self.buckets.contains_key(bucket)
    }

    /// Starts an invisible upload of `key`.
    pub fn begin_put(&self, bucket: &Bucket, key: &ObjectKey) -> Result<PendingPut, StorageError> {
        Ok(PendingPut {
            store: Arc::clone(self.store(bucket)?),
            path: object_path(key),
            manifest_path: manifest_path(key),
            sealer: self.transform.sealer(),
            hasher: Sha256::new(),
            length: 0,
            state: State::Buffer(BytesMut::new()),
        })
    }

    /// Streams plaintext bytes `range` of `key`.
    pub async fn get(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let store = self.store(bucket)?;
        let stored = self.transform.stored_range(range.clone());
        let options = GetOptions::new().with_range(Some(stored));
        let result = store.get_opts(&object_path(key), options).await?;
        let stream = result
            .into_stream()
            .map(|r| r.map_err(StorageError::from))
            .boxed();
        Ok(self.transform.open(stream, range))
    }
}

enum State {
    Buffer(BytesMut),
    Multipart(WriteMultipart),
}

/// An upload in progress: hashed as it is written, invisible until published.
pub struct PendingPut {
    store: Arc<dyn ObjectStore>,
    path: Path,
    manifest_path: Path,
    sealer: Box<dyn Sealer>,
    hasher: Sha256,
    length: u64,
    state: State,
}

impl PendingPut {
    /// Hashes and writes the next plaintext chunk, waiting while too many parts are in
    /// flight (back-pressure keeps memory constant).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.hasher.update(&chunk);
        self.length += chunk.len() as u64;
        let sealed = self.sealer.update(chunk);
        self.push(sealed).await
    }

    async fn push(&mut self, sealed: Bytes) -> Result<(), StorageError> {
        match &mut self.state {
            State::Buffer(buf) if buf.len() + sealed.len() <= SMALL_OBJECT_BYTES => {
                buf.extend_from_slice(&sealed);
            }
            State::Buffer(buf) => {
                let upload = self.store.put_multipart(&self.path).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                writer.put(std::mem::take(buf).freeze());
                writer.put(sealed);
                self.state = State::Multipart(writer);
            }
            State::Multipart(writer) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(sealed);
            }
        }
        Ok(())
    }

    /// The plaintext hash and length written so far.
    pub fn digest(&self) -> BodyDigest {
        BodyDigest {
            sha256: self.hasher.clone().finalize().into(),
            length: self.length,
        }
    }

    /// Stores the manifest next to the object, then makes the object visible. Neither
    /// write overwrites an existing object where the store can refuse it.
    pub async fn publish(mut self, manifest: Bytes) -> Result<(), StorageError> {
        let tail = self.sealer.finish();
        if !tail.is_empty() {
            self.push(tail).await?;
        }
        create(&self.store, &self.manifest_path, PutPayload::from(manifest)).await?;
        match self.state {
            State::Buffer(buf) => {
                create(&self.store, &self.path, PutPayload::from(buf.freeze())).await
            }
            State::Multipart(writer) => {
                writer.finish().await?;
                Ok(())
            }
        }
    }

    /// Abandons the upload; nothing stays in the store.
    pub async fn abort(self) -> Result<(), StorageError> {
        match self.state {
            State::Buffer(_) => Ok(()),
            State::Multipart(writer) => Ok(writer.abort().await?),
        }
    }
}

/// A put that refuses to overwrite where the store supports it (local files, and S3
/// services that honour `If-None-Match`); elsewhere the database reservation is the
/// guard.
async fn create(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    payload: PutPayload,
) -> Result<(), StorageError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(path, payload.clone(), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::AlreadyExists),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(path, payload).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
