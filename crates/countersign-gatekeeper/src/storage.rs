//! The object store behind the gatekeeper, through the `object_store` crate: a local
//! directory (embedded default) or an S3-compatible service, per bucket.
//!
//! **Opaque names.** An object's bytes are stored under `objects/<name>` and its
//! signed manifest under `manifests/<name>`, where `<name>` is 128 random bits (32
//! lowercase hex digits) chosen for each upload and recorded in the index before the
//! first byte is written. The object key lives only in the index and the manifest, so
//! every key the protocol allows is storable on every backend (no `p/x` vs `p/x/y`
//! clash, no segment-length limit), and the bucket's listing reveals no key.
//!
//! **Create-only.** A fresh name is never an existing object, and single-request
//! writes also use `PutMode::Create` (local: hard link; S3: `If-None-Match: *`), so
//! nothing is ever overwritten in storage.
//!
//! **Deadlines.** Every call, and every chunk of a stream, has the configured
//! deadline; the S3 client's own retries stop within it too.
//!
//! **Encryption at rest.** A bucket with encryption on (the default) stores each
//! object sealed by its [`ObjectCipher`] (`countersign_core::at_rest`): uploads seal
//! as they stream, reads fetch and open only the segments a range covers, and no
//! plaintext of a segment is released before its tag verified.

use crate::config::{BucketConfig, StorageConfig};
use crate::encryption::{BucketKeyring, ObjectCipher};
use bytes::{Bytes, BytesMut};
use countersign_core::at_rest;
use countersign_core::{BodyDigest, Bucket};
use futures::stream::{BoxStream, StreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// Bodies up to this size are buffered and stored with one create-only PUT; larger
/// ones stream through a multipart upload.
pub const SMALL_OBJECT_BYTES: usize = 8 * 1024 * 1024;
/// Multipart part size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// The capacity of the buffer a part is gathered in: a part and the end of the body
/// chunk that filled it, so that gathering a part never grows the allocation.
const PART_ALLOCATION: usize = PART_BYTES + 1024 * 1024;
/// Parts uploading at once per upload (besides the one being received).
pub const PARTS_IN_FLIGHT: usize = 2;
/// Folder of object bytes.
pub const OBJECTS_DIR: &str = "objects";
/// Folder of manifest sidecars.
pub const MANIFESTS_DIR: &str = "manifests";

/// The most memory one upload of `length` bytes buffers at once.
pub fn upload_buffer_bytes(length: u64) -> u64 {
    let small = SMALL_OBJECT_BYTES as u64;
    if length <= small {
        length
    } else {
        (PART_BYTES * (PARTS_IN_FLIGHT + 1)) as u64
    }
}

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
    /// The store did not answer within its deadline.
    #[error("the object store did not answer within {0:?}")]
    Timeout(Duration),
    /// A configuration problem found when building the store.
    #[error("{0}")]
    Config(String),
    /// Encrypted bytes failed authentication, or could not be sealed.
    #[error("{0}")]
    Sealing(countersign_core::Error),
}

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// One bucket's store. S3 uploads use the multipart API directly so that the upload
/// id can be recorded and the upload aborted after a crash; the local store stages
/// large uploads in files next to their final name, which recovery finds by listing.
#[derive(Clone)]
struct BucketStore {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    /// The directory of a local bucket: `object_store` does not list the staging
    /// files (`objects/<name>#<n>`) of uploads that died, so recovery reads it.
    local_root: Option<std::path::PathBuf>,
    /// How to list an S3 bucket's unfinished multipart uploads.
    s3_access: Option<crate::s3_uploads::S3Access>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("store", &self.store)
            .field("multipart", &self.multipart.is_some())
            .finish()
    }
}

/// The configured buckets.
#[derive(Clone, Debug)]
pub struct Storage {
    buckets: BTreeMap<Bucket, BucketStore>,
    /// The KEKs of each bucket with encryption on.
    keyrings: BTreeMap<Bucket, Arc<BucketKeyring>>,
    deadline: Duration,
    /// GET read-ahead tasks running now (see [`Storage::gets_in_flight`]).
    gets: Arc<AtomicUsize>,
}

fn build_store(config: &StorageConfig, deadline: Duration) -> Result<BucketStore, StorageError> {
    match config {
        StorageConfig::Local { path } => {
            std::fs::create_dir_all(path).map_err(|e| {
                StorageError::Config(format!("cannot create {}: {e}", path.display()))
            })?;
            // fsync on every write: an acknowledged upload survives a crash of the
            // machine, not only of the process.
            let store = LocalFileSystem::new_with_prefix(path)?.with_fsync(true);
            Ok(BucketStore {
                store: Arc::new(store),
                multipart: None,
                local_root: Some(path.clone()),
                s3_access: None,
            })
        }
        StorageConfig::S3 {
            endpoint,
            region,
            s3_bucket,
            access_key_id,
            secret_access_key,
            allow_http,
        } => {
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: deadline,
                ..RetryConfig::default()
            };
            let s3 = Arc::new(
                // Client options first: they carry `allow_http`, which the builder's
                // own setter below must not be overwritten by.
                // No total request timeout: it would cut long downloads; every call
                // and every streamed chunk has its own deadline instead (`timed`).
                AmazonS3Builder::new()
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout_disabled()
                            .with_connect_timeout(deadline),
                    )
                    .with_endpoint(endpoint)
                    .with_region(region)
                    .with_bucket_name(s3_bucket)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose())
                    .with_allow_http(*allow_http)
                    // The SigV4 payload hash (`x-amz-content-sha256`) is a second
                    // SHA-256 of every stored byte, besides the manifest's of the
                    // plaintext (which hashes other bytes when the bucket encrypts,
                    // and the whole body rather than each part). Over HTTPS, TLS
                    // already protects the body in transit, so it is left out
                    // (`UNSIGNED-PAYLOAD`); over plain HTTP it is the only check the
                    // store makes that the body arrived unaltered, so it stays.
                    .with_unsigned_payload(endpoint.starts_with("https://"))
                    .with_virtual_hosted_style_request(false)
                    .with_retry(retry)
                    .build()?,
            );
            Ok(BucketStore {
                store: s3.clone(),
                multipart: Some(s3),
                local_root: None,
                s3_access: Some(crate::s3_uploads::S3Access {
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    bucket: s3_bucket.clone(),
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.expose().to_owned(),
                }),
            })
        }
    }
}

/// The `object_store` client of one bucket's configuration (for tools and tests that
/// read a bucket directly).
pub fn build_object_store(
    config: &StorageConfig,
    deadline: Duration,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Ok(build_store(config, deadline)?.store)
}

/// A fresh opaque storage name: 128 random bits as 32 lowercase hex digits.
pub fn new_storage_name() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    countersign_core::text::hex(&bytes)
}

/// Whether `name` has the shape of a storage name.
pub fn is_storage_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where an object's bytes live.
pub fn object_path(name: &str) -> Path {
    Path::from_iter([OBJECTS_DIR, name])
}

/// Where an object's manifest sidecar lives.
pub fn manifest_path(name: &str) -> Path {
    Path::from_iter([MANIFESTS_DIR, name])
}

/// A file found in a bucket's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// Its path in the store.
    pub path: String,
    /// The storage name it belongs to, if its shape says so (a local staging file
    /// `objects/<name>#<n>` belongs to `<name>`).
    pub storage_name: Option<String>,
}

impl Storage {
    /// Builds every bucket's store and loads the KEKs of those with encryption on
    /// (a missing, insecure or malformed key fails here, at start-up).
    pub fn from_config(
        buckets: &BTreeMap<Bucket, BucketConfig>,
        deadline: Duration,
    ) -> Result<Self, StorageError> {
        let mut map = BTreeMap::new();
        let mut keyrings = BTreeMap::new();
        for (name, b) in buckets {
            map.insert(name.clone(), build_store(&b.storage, deadline)?);
            if let Some(enc) = &b.encryption {
                let ring = BucketKeyring::load(enc, deadline)
                    .map_err(|e| StorageError::Config(format!("buckets.{name}.encryption: {e}")))?;
                keyrings.insert(name.clone(), Arc::new(ring));
            }
        }
        Ok(Self {
            buckets: map,
            keyrings,
            deadline,
            gets: Arc::default(),
        })
    }

    /// The GET read-ahead tasks running now. Each holds its object's open file (local
    /// store) or response body (S3) and ends, releasing them, when its response is
    /// dropped: a client that goes away mid-body leaves none behind.
    pub fn gets_in_flight(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }

    /// The KEKs of `bucket`, if it has encryption on.
    pub fn keyring(&self, bucket: &Bucket) -> Option<&Arc<BucketKeyring>> {
        self.keyrings.get(bucket)
    }

    fn bucket(&self, bucket: &Bucket) -> Result<&BucketStore, StorageError> {
        self.buckets
            .get(bucket)
            .ok_or_else(|| StorageError::UnknownBucket(bucket.to_string()))
    }

    /// Whether the bucket is configured.
    pub fn has_bucket(&self, bucket: &Bucket) -> bool {
        self.buckets.contains_key(bucket)
    }

    /// The configured buckets.
    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.keys()
    }

    async fn within<T, E: Into<StorageError>>(
        &self,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.deadline, f)
            .await
            .map_err(|_| StorageError::Timeout(self.deadline))?
            .map_err(Into::into)
    }

    /// Checks that the bucket's store answers (a HEAD of a name that never exists).
    pub async fn probe(&self, bucket: &Bucket) -> Result<(), StorageError> {
        let b = self.bucket(bucket)?;
        match self
            .within(b.store.head(&Path::from("countersign-readiness-probe")))
            .await
        {
            Ok(_) | Err(StorageError::Store(object_store::Error::NotFound { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts an invisible upload of `length` plaintext bytes under the fresh
    /// `storage_name`, sealed by `cipher` if the bucket encrypts.
    pub fn begin_put(
        &self,
        bucket: &Bucket,
        storage_name: &str,
        length: u64,
        cipher: Option<ObjectCipher>,
    ) -> Result<PendingPut, StorageError> {
        let b = self.bucket(bucket)?;
        let sealer = cipher
            .map(|c| at_rest::Sealer::new(&c.key, c.header, &c.binding))
            .transpose()
            .map_err(StorageError::Sealing)?;
        let length = if sealer.is_some() {
            at_rest::stored_length(length)
        } else {
            length
        };
        Ok(PendingPut {
            store: b.store.clone(),
            multipart: b.multipart.clone(),
            deadline: self.deadline,
            name: storage_name.to_owned(),
            sealer,
            hasher: Sha256::new(),
            length: 0,
            // Exactly the memory the upload was granted (no doubling as it grows).
            state: State::Buffer(BytesMut::with_capacity(
                usize::try_from(length)
                    .unwrap_or(SMALL_OBJECT_BYTES)
                    .min(SMALL_OBJECT_BYTES),
            )),
        })
    }

    /// Streams plaintext bytes `range` of the object stored as `storage_name`, opened
    /// by `cipher` if it is encrypted, in 1 MiB pieces that a task of its own fetches
    /// ahead (see `produce`). Every read of the store must answer within the
    /// deadline.
    pub async fn get(
        &self,
        bucket: &Bucket,
        storage_name: &str,
        range: Range<u64>,
        cipher: Option<ObjectCipher>,
    ) -> Result<ByteStream, StorageError> {
        let expected = cipher
            .as_ref()
            .map(|c| at_rest::stored_length(c.binding.length()));
        let opener = cipher
            .map(|c| at_rest::Opener::new(&c.key, c.header, &c.binding, range.clone()))
            .transpose()
            .map_err(StorageError::Sealing)?;
        // An empty encrypted object is still read (its one empty segment), so that a
        // tampered one is refused rather than answered empty.
        let stored = opener.as_ref().map_or(range.clone(), |o| o.stored_range());
        if stored.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let b = self.bucket(bucket)?;
        if let Some(root) = &b.local_root
            && stored.end - stored.start <= WORKER_READ_BYTES
            && is_storage_name(storage_name)
        {
            let path = root.join(OBJECTS_DIR).join(storage_name);
            let items = read_small_local(&path, stored, opener, expected)?;
            return Ok(futures::stream::iter(items).boxed());
        }
        let options = GetOptions::new().with_range(Some(stored));
        let result = match self
            .within(b.store.get_opts(&object_path(storage_name), options))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // An encrypted object shorter than its index entry says was truncated
                // (the store refuses the range): that is tampering, not an outage.
                if let (Some(expected), Ok(meta)) = (
                    expected,
                    self.within(b.store.head(&object_path(storage_name))).await,
                ) && meta.size != expected
                {
                    return Err(StorageError::Sealing(countersign_core::Error::new(
                        countersign_core::ErrorCode::StoredObjectTampered,
                        format!(
                            "encrypted object: {} stored bytes where {expected} belong",
                            meta.size
                        ),
                    )));
                }
                return Err(e);
            }
        };
        let source = match result.payload {
            object_store::GetResultPayload::File(file, path) => Source::File {
                file: Arc::new(file),
                path,
                at: result.range.start,
                end: result.range.end,
            },
            object_store::GetResultPayload::Stream(s) => Source::Stream {
                stream: s,
                rest: Bytes::new(),
            },
        };
        let stored_len = result.range.end - result.range.start;
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let producer = Producer {
            source,
            opener,
            stored_len,
            deadline: self.deadline,
            tx,
            _running: Running::new(&self.gets),
        };
        tokio::spawn(producer.run());
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .flat_map(|piece| {
            futures::stream::iter(match piece {
                Ok(frames) => frames.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            })
        })
        .boxed())
    }

    /// Every file in the bucket's store (for recovery).
    pub async fn files(&self, bucket: &Bucket) -> Result<Vec<StoredFile>, StorageError> {
        let b = self.bucket(bucket)?;
        if let Some(root) = &b.local_root {
            return local_files(root).await;
        }
        let listing = self
            .within(async {
                b.store
                    .list(None)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(listing
            .into_iter()
            .map(|m| {
                let path = m.location.to_string();
                StoredFile {
                    storage_name: storage_name_of(&path),
                    path,
                }
            })
            .collect())
    }

    /// Deletes one file (recovery only: an upload that never completed).
    pub async fn delete_file(&self, bucket: &Bucket, path: &str) -> Result<(), StorageError> {
        let b = self.bucket(bucket)?;
        if let Some(root) = &b.local_root {
            // Staging files are not object_store paths; remove them directly.
            let file = root.join(path);
            return match tokio::fs::remove_file(&file).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StorageError::Config(format!("cannot delete {path}: {e}"))),
            };
        }
        match self.within(b.store.delete(&Path::from(path))).await {
            Ok(()) | Err(StorageError::Store(object_store::Error::NotFound { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes everything an unfinished upload under `storage_name` may have left:
    /// its multipart upload (if `upload_id` is known), its object and its manifest.
    pub async fn discard_upload(
        &self,
        bucket: &Bucket,
        storage_name: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let b = self.bucket(bucket)?;
        if let (Some(mp), false) = (&b.multipart, upload_id.is_empty()) {
            let id = upload_id.to_owned();
            match self
                .within(mp.abort_multipart(&object_path(storage_name), &id))
                .await
            {
                Ok(()) | Err(StorageError::Store(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        self.delete_file(bucket, object_path(storage_name).as_ref())
            .await?;
        self.delete_file(bucket, manifest_path(storage_name).as_ref())
            .await?;
        // A local upload that died mid-way leaves its staging files.
        if let Some(root) = &b.local_root {
            for f in local_files(root).await? {
                if f.storage_name.as_deref() == Some(storage_name) && f.path.contains('#') {
                    self.delete_file(bucket, &f.path).await?;
                }
            }
        }
        Ok(())
    }
}

impl Storage {
    /// The unfinished multipart uploads under `objects/` of an S3 bucket, as
    /// (storage name, upload id); none for a local bucket.
    pub async fn unfinished_uploads(
        &self,
        bucket: &Bucket,
        now: u64,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let b = self.bucket(bucket)?;
        let Some(access) = &b.s3_access else {
            return Ok(Vec::new());
        };
        let uploads = crate::s3_uploads::list_uploads(access, "objects/", now, self.deadline)
            .await
            .map_err(StorageError::Config)?;
        Ok(uploads
            .into_iter()
            .filter_map(|u| storage_name_of(&u.key).map(|n| (n, u.upload_id)))
            .collect())
    }

    /// Aborts one multipart upload (recovery only).
    pub async fn abort_upload(
        &self,
        bucket: &Bucket,
        storage_name: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let b = self.bucket(bucket)?;
        let Some(mp) = &b.multipart else {
            return Ok(());
        };
        let id = upload_id.to_owned();
        match self
            .within(mp.abort_multipart(&object_path(storage_name), &id))
            .await
        {
            Ok(()) | Err(StorageError::Store(object_store::Error::NotFound { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Plaintext bytes per piece of a GET: stored bytes are fetched, opened and handed
/// to the response in pieces of this size.
const GET_PIECE_BYTES: usize = 1024 * 1024;
/// Segments per piece of an encrypted GET.
const GET_PIECE_SEGMENTS: usize = GET_PIECE_BYTES / at_rest::SEGMENT_BYTES;
/// Pieces ready ahead of the one the response is sending.
const READ_AHEAD: usize = 2;
/// Stored bytes up to which a local GET reads its file on the request's worker
/// thread (see [`read_small_local`]).
const WORKER_READ_BYTES: u64 = 64 * 1024;

/// Where a GET's stored bytes come from.
enum Source {
    /// A local file, read on the blocking pool. (`object_store`'s own
    /// stream of a local file hands every 8 KiB to the blocking pool separately, a
    /// thread hop per 8 KiB that held a local GET to a fraction of a plain read.)
    File {
        file: Arc<std::fs::File>,
        path: std::path::PathBuf,
        at: u64,
        end: u64,
    },
    /// The store's response body, in whatever chunks it arrives; `rest` is the part
    /// of a chunk that belongs to the next piece.
    Stream {
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        rest: Bytes,
    },
}

/// Stored bytes as they were read: one buffer (a local file) or the store's
/// response chunks as they came (not copied together).
enum Stored {
    Buffer(BytesMut),
    Chunks(Vec<Bytes>),
}

impl Stored {
    fn len(&self) -> usize {
        match self {
            Self::Buffer(b) => b.len(),
            Self::Chunks(c) => c.iter().map(Bytes::len).sum(),
        }
    }
}

impl Source {
    /// The next `len` stored bytes: fewer only if the store's data ends first. Every
    /// read of the store must answer within `deadline`.
    async fn piece(&mut self, len: usize, deadline: Duration) -> Result<Stored, StorageError> {
        match self {
            Self::File {
                file,
                path,
                at,
                end,
            } => {
                let len = usize::try_from(*end - *at).map_or(len, |n| n.min(len));
                let (file, path, from) = (file.clone(), path.clone(), *at);
                let read = tokio::task::spawn_blocking(move || {
                    use std::io::{Read as _, Seek as _};
                    // `read_to_end` fills the vector's spare capacity without zeroing
                    // it first (a buffer zeroed for `read_exact` cost a memset of
                    // every byte), and a shorter file gives a shorter piece.
                    let mut buf = Vec::with_capacity(len);
                    (&*file)
                        .seek(std::io::SeekFrom::Start(from))
                        .and_then(|_| (&*file).take(len as u64).read_to_end(&mut buf))
                        .map_err(|e| {
                            std::io::Error::new(
                                e.kind(),
                                format!("{} at byte {from}: {e}", path.display()),
                            )
                        })?;
                    // No copy: the `Bytes` of a vector is unique.
                    Ok(BytesMut::from(Bytes::from(buf)))
                });
                let buf = timed(deadline, async {
                    read.await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r)
                        .map_err(|e| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })
                })
                .await?;
                *at += buf.len() as u64;
                Ok(Stored::Buffer(buf))
            }
            Self::Stream { stream, rest } => {
                let mut chunks = Vec::new();
                let mut left = len;
                loop {
                    if !rest.is_empty() {
                        let take = rest.split_to(rest.len().min(left));
                        left -= take.len();
                        chunks.push(take);
                    }
                    if left == 0 {
                        return Ok(Stored::Chunks(chunks));
                    }
                    match timed(deadline, async { stream.next().await.transpose() }).await? {
                        Some(chunk) => *rest = chunk,
                        None => return Ok(Stored::Chunks(chunks)),
                    }
                }
            }
        }
    }
}

/// Counts a running GET read-ahead task in [`Storage::gets_in_flight`] for as long as
/// it lives (it is dropped with the task, however the task ends).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A GET's read-ahead task: fetches the `stored_len` stored bytes piece by piece,
/// opens each encrypted piece, and sends each piece to the response as a list of
/// body frames, [`READ_AHEAD`] pieces ahead of it, so that fetching and decrypting
/// overlap with sending. It ends when the response is dropped (its receiver gone),
/// and with it the file handle or the store's response body it holds.
///
/// An encrypted piece is opened where it lies (a local file's piece where it was
/// read; S3 chunks gathered into one buffer first) and its plaintext moved together
/// over the tags, one frame per piece; unencrypted S3 chunks are passed on as they
/// came, uncopied. A segment's plaintext is sent only after its tag verified; a
/// failure is sent after the frames that verified before it, and ends the stream:
/// [`StorageError::Sealing`] (`stored_object_tampered`) for tampered or missing
/// bytes, the store's own error otherwise.
struct Producer {
    source: Source,
    opener: Option<at_rest::Opener>,
    stored_len: u64,
    deadline: Duration,
    tx: tokio::sync::mpsc::Sender<Result<Vec<Bytes>, StorageError>>,
    _running: Running,
}

impl Producer {
    async fn run(mut self) {
        let mut left = self.stored_len;
        let mut released = Vec::new();
        loop {
            let want = piece_len(self.opener.as_ref(), left);
            let piece = if want == 0 {
                Stored::Chunks(Vec::new())
            } else {
                let read = tokio::select! {
                    r = self.source.piece(want, self.deadline) => r,
                    // The response was dropped: stop fetching.
                    () = self.tx.closed() => return,
                };
                match read {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                }
            };
            let (frames, failure, done) =
                settle(self.opener.as_mut(), piece, want, &mut left, &mut released);
            if !frames.is_empty() && self.tx.send(Ok(frames)).await.is_err() {
                return;
            }
            if let Some(e) = failure {
                let _ = self.tx.send(Err(e)).await;
                return;
            }
            if done {
                return;
            }
        }
    }
}

/// The stored bytes of a GET's next piece: whole segments of an encrypted object,
/// up to [`GET_PIECE_BYTES`] of a plain one; 0 once a plain read has all its bytes
/// (an encrypted one then still gets an empty piece, for [`settle`] to finish it).
fn piece_len(opener: Option<&at_rest::Opener>, left: u64) -> usize {
    match opener {
        Some(o) => o.next_batch_len(GET_PIECE_SEGMENTS),
        None => usize::try_from(left).map_or(GET_PIECE_BYTES, |n| n.min(GET_PIECE_BYTES)),
    }
}

/// What a fetched piece (`want` stored bytes asked for) gives the response: its
/// body frames (an encrypted piece opened in place: only segments whose tag
/// verified), the failure to send after them, and whether the read is over. `left`
/// counts the stored bytes still to come; `released` is scratch space.
fn settle(
    opener: Option<&mut at_rest::Opener>,
    piece: Stored,
    want: usize,
    left: &mut u64,
    released: &mut Vec<Range<usize>>,
) -> (Vec<Bytes>, Option<StorageError>, bool) {
    let got = piece.len();
    let done = want == 0 || got == 0;
    *left = left.saturating_sub(got as u64);
    let (frames, failure) = match (opener, piece) {
        (None, piece) => (
            match piece {
                Stored::Buffer(b) => vec![b.freeze()],
                Stored::Chunks(c) => c,
            },
            (got < want).then(|| {
                StorageError::Store(object_store::Error::Generic {
                    store: "countersign",
                    source: format!("the stored object ended {left} bytes early").into(),
                })
            }),
        ),
        (Some(o), _) if got == 0 => (Vec::new(), o.finish().err().map(StorageError::Sealing)),
        (Some(o), piece) => {
            // Decrypting from the chunks straight into the frame
            // (`Opener::update`) measured slower than gathering them and
            // opening in place (BENCHMARKS.md, "GET path: copies and system
            // calls counted"), so S3 chunks are gathered first.
            let mut b = match piece {
                Stored::Buffer(b) => b,
                Stored::Chunks(chunks) => {
                    let mut b = BytesMut::with_capacity(got);
                    chunks.iter().for_each(|c| b.extend_from_slice(c));
                    b
                }
            };
            released.clear();
            let result = o.open_in_place(&mut b, released);
            // The segments' plaintexts are moved together over the tags
            // between them and sent as one frame: sent as a frame each, hyper
            // wrote every 64 KiB frame with its own `writev` (16 per MiB
            // instead of 2), which cost more CPU than this move saves
            // (BENCHMARKS.md, "GET path: copies and system calls counted").
            let start = released.first().map_or(0, |r| r.start);
            let mut end = start;
            for r in released.iter() {
                b.copy_within(r.clone(), end);
                end += r.len();
            }
            let frame = b.freeze().slice(start..end);
            (vec![frame], result.err().map(StorageError::Sealing))
        }
    };
    let frames = frames.into_iter().filter(|f| !f.is_empty()).collect();
    (frames, failure, done)
}

/// Reads the `stored` bytes of a small local object on the calling worker thread and
/// settles them as the read-ahead task would, into the items of the GET's stream.
/// A file shorter than the range is refused before any byte, as the store refuses
/// a range past a file's end: `stored_object_tampered` if the object is encrypted
/// (`expected`: its stored length), a store error otherwise.
///
/// Why on the worker: the file is in the page cache after its upload or its first
/// read, and an `open` and a read of up to [`WORKER_READ_BYTES`] then take a few
/// microseconds, where the store's local backend goes through tokio's blocking pool
/// twice (the `open` with its `statx`, then the read), and the read-ahead task once
/// more: hand-overs between threads, each with its futex wake-ups. The trade-off: a
/// disk that stalls (a cold read from a slow or failing disk) holds this worker, and
/// the tasks queued on it, for that long, and the store's deadline cannot cut a
/// system call short. Hence the bound of one small read; larger objects stream from
/// the blocking pool.
fn read_small_local(
    path: &std::path::Path,
    stored: Range<u64>,
    mut opener: Option<at_rest::Opener>,
    expected: Option<u64>,
) -> Result<Vec<Result<Bytes, StorageError>>, StorageError> {
    use std::io::{Read as _, Seek as _};
    let io_error = |e: std::io::Error| {
        StorageError::Store(match e.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.display().to_string(),
                source: Box::new(e),
            },
            _ => object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(std::io::Error::new(
                    e.kind(),
                    format!("{} at byte {}: {e}", path.display(), stored.start),
                )),
            },
        })
    };
    let len = stored.end - stored.start;
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.seek(std::io::SeekFrom::Start(stored.start))
        .and_then(|_| (&mut file).take(len).read_to_end(&mut buf))
        .map_err(io_error)?;
    if (buf.len() as u64) < len {
        let size = file.metadata().map_err(io_error)?.len();
        return Err(match expected {
            Some(expected) => StorageError::Sealing(countersign_core::Error::new(
                countersign_core::ErrorCode::StoredObjectTampered,
                format!("encrypted object: {size} stored bytes where {expected} belong"),
            )),
            None => StorageError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!(
                    "{}: range {}..{} past the end of a {size}-byte file",
                    path.display(),
                    stored.start,
                    stored.end
                )
                .into(),
            }),
        });
    }
    // No copy: the `Bytes` of a vector is unique, and a `BytesMut` splits in place.
    let mut rest = BytesMut::from(Bytes::from(buf));
    let (mut left, mut released, mut items) = (len, Vec::new(), Vec::with_capacity(2));
    loop {
        let want = piece_len(opener.as_ref(), left);
        let piece = rest.split_to(want.min(rest.len()));
        let (frames, failure, done) = settle(
            opener.as_mut(),
            Stored::Buffer(piece),
            want,
            &mut left,
            &mut released,
        );
        items.extend(frames.into_iter().map(Ok));
        if let Some(e) = failure {
            items.push(Err(e));
            return Ok(items);
        }
        if done {
            return Ok(items);
        }
    }
}

/// The storage name a file belongs to, if its path has the layout's shape (a local
/// staging file `objects/<name>#<n>` belongs to `<name>`).
fn storage_name_of(path: &str) -> Option<String> {
    path.split_once('/')
        .filter(|(dir, _)| *dir == OBJECTS_DIR || *dir == MANIFESTS_DIR)
        .and_then(|(_, rest)| rest.split('#').next())
        .filter(|n| is_storage_name(n))
        .map(str::to_owned)
}

/// Every file under a local bucket's `objects/` and `manifests/`, staging files
/// included.
async fn local_files(root: &std::path::Path) -> Result<Vec<StoredFile>, StorageError> {
    let mut out = Vec::new();
    for dir in [OBJECTS_DIR, MANIFESTS_DIR] {
        let mut entries = match tokio::fs::read_dir(root.join(dir)).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::Config(format!("cannot list {dir}: {e}"))),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| StorageError::Config(format!("cannot list {dir}: {e}")))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{dir}/{name}");
            out.push(StoredFile {
                storage_name: storage_name_of(&path),
                path,
            });
        }
    }
    Ok(out)
}

enum State {
    Buffer(BytesMut),
    /// The local store's staged multipart upload.
    Staged(WriteMultipart),
    /// An S3 multipart upload: its id, parts in flight, parts done.
    Multipart {
        id: String,
        buffer: BytesMut,
        next_part: usize,
        in_flight: JoinSet<Result<(usize, PartId), StorageError>>,
        done: Vec<Option<PartId>>,
    },
}

/// An upload in progress: hashed as it is written, invisible until published.
pub struct PendingPut {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    deadline: Duration,
    name: String,
    sealer: Option<at_rest::Sealer>,
    hasher: Sha256,
    length: u64,
    state: State,
}

impl PendingPut {
    /// Hashes and writes the next plaintext chunk, waiting while too many parts are in
    /// flight (back-pressure keeps memory bounded). Returns the multipart upload id
    /// when this write started one: the caller records it before writing more, so
    /// recovery can abort the upload if the process dies.
    pub async fn write(&mut self, chunk: Bytes) -> Result<Option<String>, StorageError> {
        self.hasher.update(&chunk);
        self.length += chunk.len() as u64;
        let sealed = match &mut self.sealer {
            Some(s) => {
                let mut out = Vec::with_capacity(chunk.len() + 64);
                s.update(&chunk, &mut out).map_err(StorageError::Sealing)?;
                Bytes::from(out)
            }
            None => chunk,
        };
        self.push(sealed).await
    }

    async fn push(&mut self, sealed: Bytes) -> Result<Option<String>, StorageError> {
        let deadline = self.deadline;
        let path = object_path(&self.name);
        match &mut self.state {
            State::Buffer(buf) if buf.len() + sealed.len() <= SMALL_OBJECT_BYTES => {
                buf.extend_from_slice(&sealed);
                Ok(None)
            }
            State::Buffer(buf) => {
                let mut first = std::mem::take(buf);
                first.extend_from_slice(&sealed);
                match &self.multipart {
                    Some(mp) => {
                        let id = timed(deadline, mp.create_multipart(&path)).await?;
                        // No part is sent before the caller has recorded the id: a
                        // crash now leaves at most an empty upload, which recovery
                        // can abort by that id.
                        self.state = State::Multipart {
                            id: id.clone(),
                            buffer: first,
                            next_part: 0,
                            in_flight: JoinSet::new(),
                            done: Vec::new(),
                        };
                        Ok(Some(id))
                    }
                    None => {
                        let upload = timed(deadline, self.store.put_multipart(&path)).await?;
                        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                        writer.put(first.freeze());
                        self.state = State::Staged(writer);
                        Ok(None)
                    }
                }
            }
            State::Staged(writer) => {
                timed(deadline, writer.wait_for_capacity(PARTS_IN_FLIGHT)).await?;
                writer.put(sealed);
                Ok(None)
            }
            State::Multipart { buffer, .. } => {
                buffer.extend_from_slice(&sealed);
                self.send_full_parts().await?;
                Ok(None)
            }
        }
    }

    /// Sends every full part of the S3 buffer, keeping at most [`PARTS_IN_FLIGHT`]
    /// uploading.
    async fn send_full_parts(&mut self) -> Result<(), StorageError> {
        while let State::Multipart { buffer, .. } = &self.state {
            if buffer.len() < PART_BYTES {
                break;
            }
            self.send_part(PART_BYTES).await?;
        }
        Ok(())
    }

    async fn send_part(&mut self, size: usize) -> Result<(), StorageError> {
        let deadline = self.deadline;
        let path = object_path(&self.name);
        let Some(mp) = self.multipart.clone() else {
            return Ok(());
        };
        let State::Multipart {
            id,
            buffer,
            next_part,
            in_flight,
            done,
        } = &mut self.state
        else {
            return Ok(());
        };
        while in_flight.len() >= PARTS_IN_FLIGHT {
            collect_part(in_flight, done).await?;
        }
        // The part takes the buffer's allocation and the bytes past it move to a new
        // one: a part split off with `split_to` would share its allocation with the
        // buffer, so each part in flight kept alive a grown allocation of its
        // neighbour's bytes too, and the upload's memory was no longer three parts.
        let size = size.min(buffer.len());
        let rest = buffer.get(size..).unwrap_or_default();
        let mut next = BytesMut::with_capacity(PART_ALLOCATION.max(rest.len()));
        next.extend_from_slice(rest);
        buffer.truncate(size);
        let part = std::mem::replace(buffer, next).freeze();
        let idx = *next_part;
        *next_part += 1;
        let id = id.clone();
        in_flight.spawn(async move {
            let part_deadline = write_deadline(deadline, part.len());
            let part_id = timed(part_deadline, mp.put_part(&path, &id, idx, part.into())).await?;
            Ok((idx, part_id))
        });
        Ok(())
    }

    /// The plaintext hash and length written so far.
    pub fn digest(&self) -> BodyDigest {
        BodyDigest {
            sha256: self.hasher.clone().finalize().into(),
            length: self.length,
        }
    }

    /// Stores the manifest sidecar, then makes the object visible under its name.
    /// Both writes are create-only.
    pub async fn publish(mut self, manifest: Bytes) -> Result<(), StorageError> {
        let deadline = self.deadline;
        if let Some(s) = &mut self.sealer {
            let mut tail = Vec::new();
            s.finish(&mut tail).map_err(StorageError::Sealing)?;
            if !tail.is_empty() {
                self.push(Bytes::from(tail)).await?;
            }
        }
        create(
            &self.store,
            &manifest_path(&self.name),
            PutPayload::from(manifest),
            deadline,
        )
        .await?;
        let path = object_path(&self.name);
        match self.state {
            State::Buffer(buf) => {
                create(&self.store, &path, PutPayload::from(buf.freeze()), deadline).await
            }
            State::Staged(writer) => {
                timed(deadline, writer.finish()).await?;
                Ok(())
            }
            State::Multipart { .. } => {
                if let State::Multipart { buffer, .. } = &self.state
                    && !buffer.is_empty()
                {
                    let n = buffer.len();
                    self.send_part(n).await?;
                }
                let Some(mp) = self.multipart.clone() else {
                    return Ok(());
                };
                let State::Multipart {
                    id,
                    mut in_flight,
                    mut done,
                    ..
                } = self.state
                else {
                    return Ok(());
                };
                while !in_flight.is_empty() {
                    collect_part(&mut in_flight, &mut done).await?;
                }
                let parts = done
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        StorageError::Config("a multipart part is missing".to_owned())
                    })?;
                timed(deadline, mp.complete_multipart(&path, &id, parts)).await?;
                Ok(())
            }
        }
    }

    /// Abandons the upload; nothing stays in the store.
    pub async fn abort(self) -> Result<(), StorageError> {
        let deadline = self.deadline;
        match self.state {
            State::Buffer(_) => Ok(()),
            State::Staged(writer) => timed(deadline, writer.abort()).await,
            State::Multipart { id, in_flight, .. } => {
                drop(in_flight);
                match &self.multipart {
                    Some(mp) => {
                        timed(deadline, mp.abort_multipart(&object_path(&self.name), &id)).await
                    }
                    None => Ok(()),
                }
            }
        }
    }
}

async fn collect_part(
    in_flight: &mut JoinSet<Result<(usize, PartId), StorageError>>,
    done: &mut Vec<Option<PartId>>,
) -> Result<(), StorageError> {
    match in_flight.join_next().await {
        Some(Ok(Ok((idx, part)))) => {
            if done.len() <= idx {
                done.resize(idx + 1, None);
            }
            if let Some(slot) = done.get_mut(idx) {
                *slot = Some(part);
            }
            Ok(())
        }
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(StorageError::Config(format!(
            "a part upload task failed: {e}"
        ))),
        None => Ok(()),
    }
}

/// The deadline of a write of `bytes`: the base deadline plus one second per MiB, so
/// a slow but working store is not mistaken for a frozen one.
fn write_deadline(base: Duration, bytes: usize) -> Duration {
    base + Duration::from_secs((bytes >> 20) as u64)
}

async fn timed<T, E: Into<StorageError>>(
    deadline: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(deadline, f)
        .await
        .map_err(|_| StorageError::Timeout(deadline))?
        .map_err(Into::into)
}

/// A create-only put: local files are hard-linked into place, S3 gets
/// `If-None-Match: *`. A store that cannot refuse overwrites gets a plain put (the
/// name is fresh, so there is nothing to overwrite).
async fn create(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    payload: PutPayload,
    deadline: Duration,
) -> Result<(), StorageError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let deadline = write_deadline(deadline, payload.content_length());
    match timed(deadline, store.put_opts(path, payload.clone(), opts)).await {
        Ok(_) => Ok(()),
        Err(StorageError::Store(object_store::Error::AlreadyExists { .. })) => {
            Err(StorageError::AlreadyExists)
        }
        Err(StorageError::Store(object_store::Error::NotImplemented { .. })) => {
            timed(deadline, store.put(path, payload)).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}
