//! Encryption at rest: each bucket's keyring of key-encryption keys (KEKs) and the
//! envelope of each object's data key.
//!
//! Every stored object gets a fresh random data key; the object's bytes are sealed
//! with it in the `countersign_core::at_rest` format, and the data key is wrapped by
//! the bucket's current KEK and recorded, with the KEK's id and the object's header,
//! in the index (`object_keys`) before the first byte is written. The bucket holds
//! only ciphertext under opaque names; the KEKs never leave the gatekeeper.
//!
//! A KEK is 32 bytes, from a key file (refused if group or others may read it, as the
//! vendor SDK refuses secret keys) or from an environment variable, each holding the
//! bytes in unpadded base64url; or it is a key in a KMS (see [`crate::kms`]), which
//! generates and unwraps the data keys itself. The wrapped forms are specified in
//! `docs/PROTOCOL.md` ("Envelope keys").
//!
//! Data keys unwrapped by a KMS are kept in memory for a short while
//! ([`KMS_CACHE_TTL`], at most [`KMS_CACHE_ENTRIES`] keys, wiped when dropped), so
//! repeated GETs of an object pay one KMS round trip, not one each.

use crate::kms::{Kms, KmsConfig};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use countersign_core::at_rest::{Aead, Binding, DATA_KEY_BYTES, DataKey, HEADER_BYTES, Header};
use countersign_core::{Bucket, Error, ErrorCode};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The domain-separation prefix of a wrapped data key's associated data.
const WRAP_LABEL: &[u8] = b"countersign/v1/at-rest/wrap\n";
/// Bytes of a wrapped data key: nonce, encrypted key, tag.
pub const WRAPPED_BYTES: usize = NONCE_LEN + DATA_KEY_BYTES + 16;

/// Where a KEK's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSource {
    /// A file holding the 32 bytes in base64url, readable by its owner only.
    File(PathBuf),
    /// An environment variable holding the 32 bytes in base64url.
    Env(String),
    /// A key in a KMS speaking the AWS KMS API.
    Kms(KmsConfig),
}

/// One bucket's `[buckets.NAME.encryption]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// The id of the KEK that wraps new data keys; the others only unwrap.
    pub current: String,
    /// Every KEK by id.
    pub keys: BTreeMap<String, KekSource>,
    /// A key file of the bucket's default KEK, created (0600) at start-up if missing.
    pub generate: Option<PathBuf>,
}

/// `[buckets.NAME.encryption]` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncryption {
    enabled: Option<bool>,
    current: Option<String>,
    #[serde(default)]
    keys: Vec<RawKek>,
}

/// One `[[buckets.NAME.encryption.keys]]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKek {
    id: String,
    file: Option<PathBuf>,
    env: Option<String>,
    kms: Option<RawKms>,
}

/// `kms = { … }` of one KEK.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKms {
    key_id: String,
    region: String,
    endpoint: Option<String>,
    access_key_id: String,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    session_token: Option<String>,
    session_token_env: Option<String>,
    session_token_file: Option<PathBuf>,
    #[serde(default)]
    allow_http: bool,
}

impl RawKms {
    fn validate(self, data_dir: &Path, at: &str) -> Result<KmsConfig, crate::config::ConfigError> {
        use crate::config::err;
        for (name, value) in [
            ("key_id", &self.key_id),
            ("region", &self.region),
            ("access_key_id", &self.access_key_id),
        ] {
            if value.is_empty() {
                return Err(err(format!("{at}.{name}"), "must not be empty"));
            }
        }
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", self.region));
        if !(endpoint.starts_with("https://")
            || (self.allow_http && endpoint.starts_with("http://")))
        {
            return Err(err(
                format!("{at}.endpoint"),
                "must be an https:// URL (http:// only with allow_http = true)",
            ));
        }
        let key = format!("{at}.secret_access_key");
        let secret = crate::config::secret(
            data_dir,
            &key,
            self.secret_access_key,
            self.secret_access_key_env,
            self.secret_access_key_file,
        )?
        .ok_or_else(|| {
            err(
                &key,
                "is required (or secret_access_key_env, secret_access_key_file)",
            )
        })?;
        let key = format!("{at}.session_token");
        let session_token = crate::config::secret(
            data_dir,
            &key,
            self.session_token,
            self.session_token_env,
            self.session_token_file,
        )?;
        if let Some(token) = &session_token {
            // It travels as an HTTP header value.
            if token.expose().is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    &key,
                    "must be a non-empty string of visible ASCII characters",
                ));
            }
        }
        Ok(KmsConfig {
            key_id: self.key_id,
            region: self.region,
            endpoint,
            access_key_id: self.access_key_id,
            secret_access_key: secret,
            session_token,
        })
    }
}

impl EncryptionConfig {
    /// The default of a bucket that configures no keys: KEK `<bucket>-1` in the key
    /// file `<data_dir>/keys/<bucket>-1.kek`, generated on first start.
    pub fn generated(data_dir: &Path, bucket: &str) -> Self {
        let id = format!("{bucket}-1");
        let path = data_dir.join("keys").join(format!("{id}.kek"));
        Self {
            current: id.clone(),
            keys: [(id, KekSource::File(path.clone()))].into_iter().collect(),
            generate: Some(path),
        }
    }

    /// Validates a bucket's section: absent means on with the generated default key;
    /// off only with `enabled = false` (and then nothing else may be set).
    pub(crate) fn from_raw(
        raw: Option<RawEncryption>,
        data_dir: &Path,
        bucket: &str,
        at: &str,
    ) -> Result<Option<Self>, crate::config::ConfigError> {
        use crate::config::err;
        let Some(raw) = raw else {
            return Ok(Some(Self::generated(data_dir, bucket)));
        };
        if raw.enabled == Some(false) {
            if raw.current.is_some() || !raw.keys.is_empty() {
                return Err(err(
                    at,
                    "`enabled = false` turns encryption off; remove `current` and `keys`",
                ));
            }
            return Ok(None);
        }
        if raw.keys.is_empty() {
            if raw.current.is_some() {
                return Err(err(
                    format!("{at}.current"),
                    "names a key but `keys` is empty",
                ));
            }
            return Ok(Some(Self::generated(data_dir, bucket)));
        }
        let mut keys = BTreeMap::new();
        for (i, k) in raw.keys.into_iter().enumerate() {
            let here = format!("{at}.keys[{i}]");
            if !is_kek_id(&k.id) {
                return Err(err(
                    format!("{here}.id"),
                    "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                ));
            }
            let source = match (k.file, k.env, k.kms) {
                (Some(f), None, None) => KekSource::File(crate::config::resolve(data_dir, f)),
                (None, Some(v), None) => KekSource::Env(v),
                (None, None, Some(kms)) => {
                    KekSource::Kms(kms.validate(data_dir, &format!("{here}.kms"))?)
                }
                _ => {
                    return Err(err(here, "needs exactly one of `file`, `env` or `kms`"));
                }
            };
            if keys.insert(k.id.clone(), source).is_some() {
                return Err(err(
                    format!("{here}.id"),
                    format!("`{}` is used by two keys; KEK ids must be unique", k.id),
                ));
            }
        }
        let current = match raw.current {
            Some(c) if keys.contains_key(&c) => c,
            Some(c) => {
                return Err(err(
                    format!("{at}.current"),
                    format!("`{c}` is not one of the bucket's keys"),
                ));
            }
            None if keys.len() == 1 => keys.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(err(
                    format!("{at}.current"),
                    "is required when a bucket has several keys",
                ));
            }
        };
        Ok(Some(Self {
            current,
            keys,
            generate: None,
        }))
    }
}

/// A KEK id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_kek_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A data key wrapped by a KEK, and the object's header, as the index records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The KEK that wrapped it.
    pub kek_id: String,
    /// `nonce ‖ ciphertext ‖ tag` (60 bytes).
    pub wrapped: Vec<u8>,
    /// The object's 24-byte at-rest header.
    pub header: Vec<u8>,
}

/// What seals or opens one object.
#[derive(Debug)]
pub struct ObjectCipher {
    /// The object's data key.
    pub key: DataKey,
    /// Its header.
    pub header: Header,
    /// What its segments are bound to.
    pub binding: Binding,
}

/// One KEK: held here, or in a KMS.
enum Kek {
    /// 32 bytes in memory; wraps with AES-256-GCM.
    Local(LessSafeKey),
    /// A KMS key.
    Kms(Kms),
}

/// How long a data key unwrapped by a KMS stays in memory.
pub const KMS_CACHE_TTL: Duration = Duration::from_secs(300);
/// At most this many data keys unwrapped by a KMS stay in memory (per bucket).
pub const KMS_CACHE_ENTRIES: usize = 4096;

/// Data keys unwrapped by a KMS, by SHA-256 of (KEK id, bucket, storage name,
/// wrapped key): bounded in size and age, the bytes wiped when an entry goes.
#[derive(Default)]
struct DataKeyCache {
    entries: Mutex<HashMap<[u8; 32], CachedKey>>,
}

/// When a data key was unwrapped, and its bytes.
type CachedKey = (Instant, Zeroizing<[u8; DATA_KEY_BYTES]>);

impl DataKeyCache {
    fn id(w: &WrappedKey, bucket: &Bucket, storage_name: &str) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        for field in [
            w.kek_id.as_bytes(),
            bucket.as_str().as_bytes(),
            storage_name.as_bytes(),
            &w.wrapped,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        h.finalize().into()
    }

    fn get(&self, id: &[u8; 32]) -> Option<DataKey> {
        let entries = self.entries.lock().ok()?;
        let (at, bytes) = entries.get(id)?;
        (at.elapsed() < KMS_CACHE_TTL).then(|| DataKey::from_bytes(**bytes))
    }

    fn put(&self, id: [u8; 32], key: &DataKey) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= KMS_CACHE_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < KMS_CACHE_TTL);
        }
        if entries.len() >= KMS_CACHE_ENTRIES {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(id, (Instant::now(), Zeroizing::new(*key.as_bytes())));
    }
}

/// One bucket's KEKs.
pub struct BucketKeyring {
    current: String,
    keks: BTreeMap<String, Kek>,
    cache: DataKeyCache,
}

impl std::fmt::Debug for BucketKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketKeyring")
            .field("current", &self.current)
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key_unavailable(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::KeyUnavailable, message)
}

/// The KMS encryption context of an object's data key.
fn kms_context<'a>(
    kek_id: &'a str,
    bucket: &'a Bucket,
    storage_name: &'a str,
) -> [(&'a str, &'a str); 3] {
    [
        ("countersign:bucket", bucket.as_str()),
        ("countersign:kek", kek_id),
        ("countersign:object", storage_name),
    ]
}

/// A KMS failure as a request sees it: `key_unavailable`, details in the server log.
fn kms_error(kek_id: &str, e: &crate::kms::KmsError) -> Error {
    tracing::warn!("encryption at rest: {e}");
    key_unavailable(format!(
        "the key-encryption key `{kek_id}` (a KMS key) is unavailable right now"
    ))
}

/// Reads a KEK file, refusing one that group or others may read.
fn read_kek_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Checked on the opened file, so a swap between check and read is harmless.
        let mode = file
            .metadata()
            .map_err(|e| format!("{shown}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown}: group or others may read this key file (mode {:o}); chmod 600 it",
                mode & 0o777
            ));
        }
    }
    let mut text = String::new();
    file.by_ref()
        .take(1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(text)
}

fn kek_bytes(text: &str) -> Option<[u8; 32]> {
    crate::config::base64_decode(text.trim())?.try_into().ok()
}

impl BucketKeyring {
    /// Loads every KEK of a bucket's configuration. A missing, unreadable, insecure
    /// or malformed key is an error at start-up, naming the key. KMS keys are only
    /// configured here; [`BucketKeyring::check`] reaches them.
    pub fn load(config: &EncryptionConfig, deadline: Duration) -> Result<Self, String> {
        if let Some(path) = &config.generate
            && !path.exists()
        {
            create_kek_file(path)
                .map_err(|e| format!("cannot create the key file {}: {e}", path.display()))?;
            tracing::warn!(
                "encryption at rest: generated key-encryption key `{}` in {} (keep a copy: \
                 without it the objects cannot be read)",
                config.current,
                path.display()
            );
        }
        let mut keks = BTreeMap::new();
        for (id, source) in &config.keys {
            let text = match source {
                KekSource::File(path) => read_kek_file(path)?,
                KekSource::Env(var) => std::env::var(var).map_err(|_| {
                    format!("KEK `{id}`: the environment variable {var} is not set")
                })?,
                KekSource::Kms(kms) => {
                    let client =
                        Kms::new(kms.clone(), deadline).map_err(|e| format!("KEK `{id}`: {e}"))?;
                    keks.insert(id.clone(), Kek::Kms(client));
                    continue;
                }
            };
            let bytes = kek_bytes(&text)
                .ok_or_else(|| format!("KEK `{id}`: must hold 32 bytes in unpadded base64url"))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| format!("KEK `{id}`: unusable key"))?;
            keks.insert(id.clone(), Kek::Local(LessSafeKey::new(key)));
        }
        if !keks.contains_key(&config.current) {
            return Err(format!(
                "the current KEK `{}` is not among the bucket's keys",
                config.current
            ));
        }
        Ok(Self {
            current: config.current.clone(),
            keks,
            cache: DataKeyCache::default(),
        })
    }

    /// The id of the KEK that wraps new data keys.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Whether the keyring holds KEK `id`.
    pub fn has(&self, id: &str) -> bool {
        self.keks.contains_key(id)
    }

    /// Reaches every KMS key of the keyring: each must exist, be enabled and both
    /// generate and decrypt data keys. The message names the KEK.
    pub async fn check(&self) -> Result<(), String> {
        for (id, kek) in &self.keks {
            if let Kek::Kms(kms) = kek {
                kms.check().await.map_err(|e| format!("KEK `{id}`: {e}"))?;
            }
        }
        Ok(())
    }

    /// A fresh data key and header for a new object, and the data key wrapped by
    /// the current KEK (generated by the KMS if the current KEK is a KMS key).
    pub async fn new_object(
        &self,
        bucket: &Bucket,
        storage_name: &str,
    ) -> Result<(DataKey, Header, WrappedKey), Error> {
        use rand_core::RngCore as _;
        let (key, wrapped) = match self.keks.get(&self.current) {
            Some(Kek::Kms(kms)) => {
                let context = kms_context(&self.current, bucket, storage_name);
                let (mut bytes, blob) = kms
                    .generate_data_key(&context)
                    .await
                    .map_err(|e| kms_error(&self.current, &e))?;
                let key = DataKey::from_bytes(bytes);
                bytes.fill(0);
                (key, blob)
            }
            _ => {
                let mut bytes = [0u8; DATA_KEY_BYTES];
                rand_core::OsRng.fill_bytes(&mut bytes);
                let key = DataKey::from_bytes(bytes);
                bytes.fill(0);
                let wrapped = self.wrap(&self.current, &key, bucket, storage_name).await?;
                (key, wrapped)
            }
        };
        let mut salt = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut salt);
        let header = Header {
            aead: Aead::Aes256Gcm,
            salt,
        };
        Ok((
            key,
            header,
            WrappedKey {
                kek_id: self.current.clone(),
                wrapped,
                header: header.encode().to_vec(),
            },
        ))
    }

    /// Wraps `key` with KEK `kek_id` for object `storage_name` of `bucket`.
    pub async fn wrap(
        &self,
        kek_id: &str,
        key: &DataKey,
        bucket: &Bucket,
        storage_name: &str,
    ) -> Result<Vec<u8>, Error> {
        use rand_core::RngCore as _;
        let kek = match self.keks.get(kek_id) {
            Some(Kek::Local(kek)) => kek,
            Some(Kek::Kms(kms)) => {
                let context = kms_context(kek_id, bucket, storage_name);
                return kms
                    .encrypt(key.as_bytes(), &context)
                    .await
                    .map_err(|e| kms_error(kek_id, &e));
            }
            None => {
                return Err(key_unavailable(format!(
                    "KEK `{kek_id}` is not in the keyring"
                )));
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand_core::OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(WRAPPED_BYTES);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.as_bytes());
        let mut sealed = out.split_off(NONCE_LEN);
        kek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(kek_id, bucket, storage_name)),
            &mut sealed,
        )
        .map_err(|_| Error::new(ErrorCode::Internal, "wrapping a data key failed"))?;
        out.extend_from_slice(&sealed);
        sealed.fill(0);
        Ok(out)
    }

    /// Unwraps an object's data key and parses its header.
    pub async fn open(
        &self,
        w: &WrappedKey,
        bucket: &Bucket,
        storage_name: &str,
    ) -> Result<(DataKey, Header), Error> {
        let wrong = || {
            key_unavailable(format!(
                "the key-encryption key `{}` does not unwrap the object's data key",
                w.kek_id
            ))
        };
        let key = match self.keks.get(&w.kek_id) {
            None => {
                return Err(key_unavailable(format!(
                    "the object's key-encryption key `{}` is not in the keyring",
                    w.kek_id
                )));
            }
            Some(Kek::Local(kek)) => {
                let (nonce, sealed) = w.wrapped.split_at_checked(NONCE_LEN).ok_or_else(wrong)?;
                let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
                let mut buf = Zeroizing::new(sealed.to_vec());
                let plain = kek
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(wrap_aad(&w.kek_id, bucket, storage_name)),
                        &mut buf,
                    )
                    .map_err(|_| wrong())?;
                let bytes: [u8; DATA_KEY_BYTES] = (&*plain).try_into().map_err(|_| wrong())?;
                DataKey::from_bytes(bytes)
            }
            Some(Kek::Kms(kms)) => {
                let id = DataKeyCache::id(w, bucket, storage_name);
                match self.cache.get(&id) {
                    Some(key) => key,
                    None => {
                        let context = kms_context(&w.kek_id, bucket, storage_name);
                        let mut bytes =
                            kms.decrypt(&w.wrapped, &context)
                                .await
                                .map_err(|e| match e {
                                    crate::kms::KmsError::Refused { .. } => {
                                        tracing::warn!("encryption at rest: {e}");
                                        wrong()
                                    }
                                    _ => kms_error(&w.kek_id, &e),
                                })?;
                        let key = DataKey::from_bytes(bytes);
                        bytes.fill(0);
                        self.cache.put(id, &key);
                        key
                    }
                }
            }
        };
        if w.header.len() != HEADER_BYTES {
            return Err(Error::new(
                ErrorCode::StoredObjectTampered,
                "the index holds no valid header for this object",
            ));
        }
        Ok((key, Header::parse(&w.header)?))
    }
}
/// `WRAP_LABEL ‖ u32be(len) ‖ kek id ‖ u32be(len) ‖ bucket ‖ u32be(len) ‖ storage name`.
fn wrap_aad(kek_id: &str, bucket: &Bucket, storage_name: &str) -> Vec<u8> {
    let mut aad = WRAP_LABEL.to_vec();
    for field in [kek_id, bucket.as_str(), storage_name] {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

/// Creates a new KEK file (mode 0600, never overwriting) holding 32 random bytes.
pub fn create_kek_file(path: &Path) -> std::io::Result<()> {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let text = countersign_core::text::b64(&bytes);
    bytes.fill(0);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::config::write_private(path, text.as_bytes())
}

/// One KEK of one bucket, as `keys status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KekStatus {
    /// The bucket.
    pub bucket: String,
    /// The KEK.
    pub kek_id: String,
    /// Whether it wraps new data keys.
    pub current: bool,
    /// Whether the configuration still lists it.
    pub configured: bool,
    /// Data keys it wraps.
    pub objects: u64,
    /// Whether it can be removed from the configuration: not current, wraps nothing.
    pub retirable: bool,
}

/// Every KEK that is configured or still wraps data keys, per encrypted bucket.
pub async fn status(
    ledger: &crate::ledger::Ledger,
    storage: &crate::storage::Storage,
) -> Result<Vec<KekStatus>, String> {
    let mut out = Vec::new();
    for bucket in storage.buckets() {
        let ring = storage.keyring(bucket);
        let uses = ledger
            .key_uses(bucket.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut ids: std::collections::BTreeSet<String> =
            uses.iter().map(|u| u.kek_id.clone()).collect();
        if let Some(r) = ring {
            ids.extend(r.keks.keys().cloned());
        }
        for id in ids {
            let objects = uses
                .iter()
                .find(|u| u.kek_id == id)
                .map_or(0, |u| u.objects);
            let current = ring.is_some_and(|r| r.current == id);
            out.push(KekStatus {
                bucket: bucket.to_string(),
                configured: ring.is_some_and(|r| r.has(&id)),
                retirable: !current && objects == 0,
                kek_id: id,
                current,
                objects,
            });
        }
    }
    Ok(out)
}

/// The start-up check of every encrypted bucket: every KMS key answers; no KEK that
/// still wraps a data key may be missing from the configuration (a KEK is retired
/// only when `keys status` says so); and every configured KEK in use unwraps one of
/// its stored data keys (a different key under the same id is refused here, not at
/// the first GET). Each message names the bucket and the KEK.
pub async fn check_keys(
    ledger: &crate::ledger::Ledger,
    storage: &crate::storage::Storage,
) -> Result<(), String> {
    // Data keys of uploads that were released are not uses.
    ledger
        .sweep_object_keys()
        .await
        .map_err(|e| format!("cannot read the data keys: {e}"))?;
    for bucket in storage.buckets() {
        let ring = storage.keyring(bucket);
        if let Some(ring) = ring {
            ring.check()
                .await
                .map_err(|e| format!("bucket `{bucket}`: {e}"))?;
        }
        let uses = ledger
            .key_uses(bucket.as_str())
            .await
            .map_err(|e| format!("cannot read the data keys: {e}"))?;
        for u in &uses {
            let Some(ring) = ring.filter(|r| r.has(&u.kek_id)) else {
                let what = if ring.is_some() {
                    "is not in its configuration"
                } else {
                    "is needed, but encryption is off for the bucket"
                };
                return Err(format!(
                    "bucket `{bucket}`: KEK `{}` still wraps {} data keys and {what}; put it \
                     back in [buckets.{bucket}.encryption] keys (and run `countersign-gatekeeper \
                     keys rewrap` before retiring it: `keys status` shows when it may go)",
                    u.kek_id, u.objects
                ));
            };
            if let Some((name, wrapped)) = ledger
                .object_key_sample(bucket.as_str(), &u.kek_id)
                .await
                .map_err(|e| format!("cannot read the data keys: {e}"))?
            {
                ring.open(&wrapped, bucket, &name).await.map_err(|e| {
                    format!(
                        "bucket `{bucket}`: KEK `{}` does not unwrap the stored data key of \
                         object {name} (is it the right key?): {}",
                        u.kek_id,
                        e.message()
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// One data key moved to the current KEK.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rewrapped {
    /// The bucket.
    pub bucket: String,
    /// The object's storage name.
    pub storage_name: String,
    /// The KEK that wrapped it.
    pub from: String,
    /// The current KEK that wraps it now.
    pub to: String,
}

/// Re-wraps every data key that another KEK than the bucket's current one wraps,
/// without touching object bytes. Each row is replaced on its own, only if it is
/// unchanged since read, so an interrupted run is resumed by running it again.
/// Calls `each` after every replaced row.
///
/// Audited: for every encrypted bucket, an entry (operation `REWRAP`, decision
/// `allow`) before its first row (`start: to KEK <current>`) and one after its last
/// (`finish: <n> data keys to KEK <current>`); a run that stops on an error records
/// `failed after <n> data keys: <reason>` (decision `deny` with the error's code)
/// as far as the log can be written. If the log cannot be written, nothing is
/// re-wrapped.
pub async fn rewrap(
    ledger: &crate::ledger::Ledger,
    storage: &crate::storage::Storage,
    mut each: impl FnMut(&Rewrapped),
) -> Result<u64, String> {
    use countersign_core::Decision;
    let audit = |bucket: &Bucket, what: String, decision: Decision| {
        let draft = crate::reconcile::tool_draft(b"REWRAP", bucket.as_str(), &what, decision);
        async move {
            ledger
                .append(draft, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot write the audit log: {e}"))
        }
    };
    let mut total = 0;
    for bucket in storage.buckets() {
        let Some(ring) = storage.keyring(bucket) else {
            continue;
        };
        let current = ring.current.clone();
        audit(bucket, format!("start: to KEK {current}"), Decision::Allow).await?;
        let mut done = 0;
        match rewrap_bucket(ledger, bucket, ring, &mut done, &mut each).await {
            Ok(()) => {
                audit(
                    bucket,
                    format!("finish: {done} data keys to KEK {current}"),
                    Decision::Allow,
                )
                .await?;
            }
            Err(e) => {
                let what = format!("failed after {done} data keys: {}", e.message());
                if let Err(log) = audit(bucket, what, Decision::Deny(e.code())).await {
                    tracing::warn!("keys rewrap: {log}");
                }
                return Err(format!(
                    "bucket `{bucket}`: stopped after {done} data keys: {}",
                    e.message()
                ));
            }
        }
        total += done;
    }
    Ok(total)
}

/// Re-wraps one bucket's data keys, counting them in `done`.
async fn rewrap_bucket(
    ledger: &crate::ledger::Ledger,
    bucket: &Bucket,
    ring: &BucketKeyring,
    done: &mut u64,
    each: &mut impl FnMut(&Rewrapped),
) -> Result<(), Error> {
    let index = |e: crate::ledger::LedgerError| {
        Error::new(ErrorCode::AuditUnavailable, format!("the index: {e}"))
    };
    let mut after = String::new();
    loop {
        let page = ledger
            .object_keys_not_wrapped_by(bucket.as_str(), &ring.current, &after, 500)
            .await
            .map_err(index)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = last.clone();
        for (name, old) in page {
            let (key, _) = ring
                .open(&old, bucket, &name)
                .await
                .map_err(|e| Error::new(e.code(), format!("object {name}: {}", e.message())))?;
            let new = WrappedKey {
                kek_id: ring.current.clone(),
                wrapped: ring.wrap(&ring.current, &key, bucket, &name).await?,
                header: old.header.clone(),
            };
            if ledger
                .rewrap_object_key(bucket.as_str(), &name, &old, &new)
                .await
                .map_err(index)?
            {
                *done += 1;
                each(&Rewrapped {
                    bucket: bucket.to_string(),
                    storage_name: name,
                    from: old.kek_id,
                    to: new.kek_id,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keyring(dir: &Path, ids: &[&str], current: &str) -> BucketKeyring {
        let mut keys = BTreeMap::new();
        for id in ids {
            let path = dir.join(format!("{id}.key"));
            if !path.exists() {
                create_kek_file(&path).unwrap();
            }
            keys.insert((*id).to_owned(), KekSource::File(path));
        }
        BucketKeyring::load(
            &EncryptionConfig {
                current: current.into(),
                keys,
                generate: None,
            },
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn wraps_and_unwraps_only_for_its_object_and_kek() {
        let dir = tempfile::tempdir().unwrap();
        let ring = keyring(dir.path(), &["a", "b"], "a");
        let bucket = Bucket::parse("reports").unwrap();
        let name = "00112233445566778899aabbccddeeff";
        let (key, header, w) = ring.new_object(&bucket, name).await.unwrap();
        assert_eq!(w.kek_id, "a");
        assert_eq!(w.wrapped.len(), WRAPPED_BYTES);
        let (k2, h2) = ring.open(&w, &bucket, name).await.unwrap();
        assert_eq!(k2.as_bytes(), key.as_bytes());
        assert_eq!(h2, header);
        let code = |r: Result<(DataKey, Header), Error>| r.unwrap_err().code();
        let open = |w: WrappedKey, b: Bucket, n: &'static str| {
            let ring = &ring;
            async move { ring.open(&w, &b, n).await }
        };
        // Another object's name, another bucket, another KEK id: refused.
        let other = "ffeeddccbbaa99887766554433221100";
        assert_eq!(
            code(open(w.clone(), bucket.clone(), other).await),
            ErrorCode::KeyUnavailable
        );
        let b2 = Bucket::parse("other").unwrap();
        assert_eq!(
            code(open(w.clone(), b2, name).await),
            ErrorCode::KeyUnavailable
        );
        let relabelled = WrappedKey {
            kek_id: "b".into(),
            ..w.clone()
        };
        assert_eq!(
            code(open(relabelled, bucket.clone(), name).await),
            ErrorCode::KeyUnavailable
        );
        let unknown = WrappedKey {
            kek_id: "gone".into(),
            ..w.clone()
        };
        assert_eq!(
            code(open(unknown, bucket.clone(), name).await),
            ErrorCode::KeyUnavailable
        );
        // Rewrapped to `b`, it opens under `b`.
        let rewrapped = WrappedKey {
            kek_id: "b".into(),
            wrapped: ring.wrap("b", &key, &bucket, name).await.unwrap(),
            ..w
        };
        assert_eq!(
            ring.open(&rewrapped, &bucket, name)
                .await
                .unwrap()
                .0
                .as_bytes(),
            key.as_bytes()
        );
    }

    #[test]
    fn refuses_bad_key_sources_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        create_kek_file(&path).unwrap();
        let cfg = |source: KekSource, current: &str| EncryptionConfig {
            current: current.into(),
            keys: [("k".to_owned(), source)].into_iter().collect(),
            generate: None,
        };
        let load = |c: EncryptionConfig| BucketKeyring::load(&c, Duration::from_secs(5));
        assert!(load(cfg(KekSource::File(path.clone()), "k")).is_ok());
        let err = load(cfg(KekSource::File(path.clone()), "x")).unwrap_err();
        assert!(err.contains("current KEK `x`"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = load(cfg(KekSource::File(path.clone()), "k")).unwrap_err();
            assert!(err.contains("group or others"), "{err}");
        }
        let err = load(cfg(KekSource::File(dir.path().join("none")), "k")).unwrap_err();
        assert!(err.contains("none"), "{err}");
        let err = load(cfg(
            KekSource::Env("COUNTERSIGN_TEST_KEK_SURELY_UNSET".into()),
            "k",
        ))
        .unwrap_err();
        assert!(err.contains("is not set"), "{err}");
        let short = dir.path().join("short.key");
        crate::config::write_private(&short, b"AAAA").unwrap();
        let err = load(cfg(KekSource::File(short), "k")).unwrap_err();
        assert!(err.contains("32 bytes"), "{err}");
    }

    fn from_toml(text: &str, dir: &Path) -> Result<Option<EncryptionConfig>, String> {
        let raw: RawEncryption = toml::from_str(text).map_err(|e| e.to_string())?;
        EncryptionConfig::from_raw(Some(raw), dir, "reports", "buckets.reports.encryption")
            .map_err(|e| format!("{}: {}", e.key, e.message))
    }

    #[test]
    fn kms_keks_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("kms.secret");
        crate::config::write_private(&secret, b"s3cr3t\n").unwrap();
        let kms = |extra: &str| {
            format!(
                "keys = [{{ id = \"k\", kms = {{ key_id = \"alias/reports\", region = \"eu-west-1\", access_key_id = \"AKIA\"{extra} }} }}]"
            )
        };
        let ok = from_toml(
            &kms(", secret_access_key_file = \"kms.secret\""),
            dir.path(),
        )
        .unwrap()
        .unwrap();
        let KekSource::Kms(k) = &ok.keys["k"] else {
            panic!("{ok:?}");
        };
        assert_eq!(k.endpoint, "https://kms.eu-west-1.amazonaws.com");
        assert_eq!(k.secret_access_key.expose(), "s3cr3t");
        assert!(k.session_token.is_none());
        assert!(!format!("{ok:?}").contains("s3cr3t"));
        // Temporary credentials: the session token, here from a file.
        crate::config::write_private(&dir.path().join("kms.token"), b"FwoGZXIvYXdzE+token/=\n")
            .unwrap();
        let temp = from_toml(
            &kms(", secret_access_key = \"x\", session_token_file = \"kms.token\""),
            dir.path(),
        )
        .unwrap()
        .unwrap();
        let KekSource::Kms(k) = &temp.keys["k"] else {
            panic!("{temp:?}");
        };
        assert_eq!(
            k.session_token.as_ref().map(crate::config::Secret::expose),
            Some("FwoGZXIvYXdzE+token/=")
        );
        assert!(!format!("{temp:?}").contains("token/="));
        let err = |extra: &str| from_toml(&kms(extra), dir.path()).unwrap_err();
        let e = err("");
        assert!(
            e.starts_with("buckets.reports.encryption.keys[0].kms.secret_access_key:"),
            "{e}"
        );
        let e = err(", secret_access_key = \"x\", endpoint = \"http://127.0.0.1:1\"");
        assert!(
            e.starts_with("buckets.reports.encryption.keys[0].kms.endpoint:"),
            "{e}"
        );
        let local = from_toml(
            &kms(
                ", secret_access_key = \"x\", endpoint = \"http://127.0.0.1:1\", allow_http = true",
            ),
            dir.path(),
        );
        assert!(local.is_ok(), "{local:?}");
        let e = err(", secret_access_key = \"x\", secret_access_key_env = \"Y\"");
        assert!(e.contains("set only one of"), "{e}");
        let e = err(", secret_access_key = \"x\", session_token = \"two words\"");
        assert!(
            e.starts_with("buckets.reports.encryption.keys[0].kms.session_token: must be"),
            "{e}"
        );
        let e = err(
            ", secret_access_key = \"x\", session_token_env = \"COUNTERSIGN_TEST_NO_SUCH_VAR\"",
        );
        assert!(e.contains("is not set"), "{e}");
        let e = from_toml(
            "keys = [{ id = \"k\", file = \"a\", kms = { key_id = \"a\", region = \"r\", access_key_id = \"a\", secret_access_key = \"x\" } }]",
            dir.path(),
        )
        .unwrap_err();
        assert!(e.contains("exactly one of `file`, `env` or `kms`"), "{e}");
        let e = from_toml(
            "keys = [{ id = \"k\", kms = { key_id = \"\", region = \"r\", access_key_id = \"a\", secret_access_key = \"x\" } }]",
            dir.path(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("buckets.reports.encryption.keys[0].kms.key_id: must not be empty"),
            "{e}"
        );
    }

    #[test]
    fn the_data_key_cache_is_bounded() {
        let cache = DataKeyCache::default();
        let bucket = Bucket::parse("reports").unwrap();
        let w = |i: usize| WrappedKey {
            kek_id: "k".into(),
            wrapped: i.to_be_bytes().to_vec(),
            header: Vec::new(),
        };
        let first = DataKeyCache::id(&w(0), &bucket, "n");
        assert_ne!(first, DataKeyCache::id(&w(0), &bucket, "m"));
        for i in 0..KMS_CACHE_ENTRIES + 10 {
            let key = DataKey::from_bytes([(i % 251) as u8; DATA_KEY_BYTES]);
            cache.put(DataKeyCache::id(&w(i), &bucket, "n"), &key);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), KMS_CACHE_ENTRIES);
        // The oldest went first; the newest is there.
        assert!(cache.get(&first).is_none());
        let last = KMS_CACHE_ENTRIES + 9;
        let got = cache
            .get(&DataKeyCache::id(&w(last), &bucket, "n"))
            .unwrap();
        assert_eq!(got.as_bytes(), &[(last % 251) as u8; DATA_KEY_BYTES]);
    }
}
