//! Signing keys and their files.
//!
//! A **secret key file** is a small JSON document, written with mode `0600` and refused
//! at load time if group or others may read it:
//!
//! ```json
//! {
//!   "format": "countersign-secret-key/v1",
//!   "key_id": "vendor-2026",
//!   "role": "vendor",
//!   "not_before": 1800000000,
//!   "not_after": null,
//!   "public_key": "<base64url, 32 bytes>",
//!   "secret_key": "<base64url, 32-byte Ed25519 seed>"
//! }
//! ```
//!
//! The matching **public key file** has `"format": "countersign-public-key/v1"` and no
//! `secret_key`; it is what the customer puts into the gatekeeper's policy. Either file
//! kind may also hold a JSON array of such objects (several keys for rotation). A
//! saved answer of a gatekeeper's `GET /v1/keys` is accepted as a public key file too. In
//! containers, the secret document (object or array) can come from an environment
//! variable instead of a file ([`keys_from_env`]).
//!
//! `not_before` / `not_after` are Unix seconds, the key's validity window
//! `[not_before, not_after)`, exactly as in
//! [`AuthorizedKey`].

use crate::error::{Error, Result};
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::text::{b64, parse_b64};
use countersign_core::{AuthorizedKey, ErrorCode, KeyId, PublicKey, Role, SignatureEntry};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::Path;
use zeroize::Zeroize as _;

/// `format` of a secret key document.
pub const SECRET_KEY_FORMAT: &str = "countersign-secret-key/v1";
/// `format` of a public key document.
pub const PUBLIC_KEY_FORMAT: &str = "countersign-public-key/v1";
/// Key files larger than this are refused.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyDoc {
    format: String,
    key_id: String,
    role: String,
    #[serde(default)]
    not_before: Option<u64>,
    #[serde(default)]
    not_after: Option<u64>,
    public_key: String,
    secret_key: String,
}

impl Drop for SecretKeyDoc {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyDoc {
    format: String,
    key_id: String,
    role: String,
    #[serde(default)]
    not_before: Option<u64>,
    #[serde(default)]
    not_after: Option<u64>,
    public_key: String,
}

/// The answer of a gatekeeper's `GET /v1/keys`, accepted as a public key file so an
/// operator can save it once (after checking it out of band) and pin it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatekeeperKeysDoc {
    gatekeeper: String,
    keys: Vec<GatekeeperKeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatekeeperKeyEntry {
    role: String,
    key_id: String,
    public_key: String,
}

/// One document or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(t) => vec![t],
            Self::Many(v) => v,
        }
    }
}

/// A secret Ed25519 signing key with its key id, role and validity window.
///
/// `Debug` never prints the secret; the secret is zeroed when the value is dropped.
#[derive(Clone)]
pub struct VendorKey {
    key_id: KeyId,
    role: Role,
    secret: SigningKey,
    public: PublicKey,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

impl fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorKey")
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .field("public_key", &b64(&self.public.to_bytes()))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn check_window(key_id: &KeyId, not_before: Option<u64>, not_after: Option<u64>) -> Result<()> {
    if let (Some(nb), Some(na)) = (not_before, not_after)
        && na <= nb
    {
        return Err(countersign_core::Error::new(
            ErrorCode::InvalidField,
            format!("key `{key_id}`: not_after ({na}) must be after not_before ({nb})"),
        )
        .into());
    }
    Ok(())
}

impl VendorKey {
    /// Generates a new key from the caller's RNG (use `rand_core::OsRng`).
    pub fn generate(
        key_id: KeyId,
        role: Role,
        not_before: Option<u64>,
        not_after: Option<u64>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let secret = SigningKey::generate(rng);
        Self::from_signing_key(secret, key_id, role, not_before, not_after)
    }

    /// Wraps an existing Ed25519 key; checks the window and that the public key is
    /// usable.
    pub fn from_signing_key(
        secret: SigningKey,
        key_id: KeyId,
        role: Role,
        not_before: Option<u64>,
        not_after: Option<u64>,
    ) -> Result<Self> {
        check_window(&key_id, not_before, not_after)?;
        let public = countersign_core::signature::public_key_of(&secret)?;
        Ok(Self {
            key_id,
            role,
            secret,
            public,
            not_before,
            not_after,
        })
    }

    /// The Ed25519 secret key (for other signed formats, such as a witness's
    /// `cosignature/v1` note signatures).
    pub fn signing_key(&self) -> &SigningKey {
        &self.secret
    }

    /// The key id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    /// The role the key signs for.
    pub fn role(&self) -> &Role {
        &self.role
    }
    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }
    /// First second the key is valid, if limited.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }
    /// First second the key is no longer valid, if limited.
    pub fn not_after(&self) -> Option<u64> {
        self.not_after
    }

    /// Whether the key may sign at `t` (Unix seconds).
    pub fn valid_at(&self, t: u64) -> bool {
        self.authorized_key().valid_at(t)
    }

    /// The public half as a verifier sees it.
    pub fn authorized_key(&self) -> AuthorizedKey {
        AuthorizedKey {
            key_id: self.key_id.clone(),
            role: self.role.clone(),
            public_key: self.public,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }

    /// Signs any canonical document (request, receipt, …) as this key's role and id.
    /// Prefer [`crate::Signer`], which checks the request and picks the key by its window.
    pub fn sign_document(&self, document: &[u8]) -> SignatureEntry {
        SignatureEntry::sign(
            &self.secret,
            self.role.clone(),
            self.key_id.clone(),
            document,
        )
    }

    /// The secret key document (JSON). Treat the result as a secret.
    pub fn to_secret_json(&self) -> String {
        let doc = SecretKeyDoc {
            format: SECRET_KEY_FORMAT.to_owned(),
            key_id: self.key_id.to_string(),
            role: self.role.to_string(),
            not_before: self.not_before,
            not_after: self.not_after,
            public_key: b64(&self.public.to_bytes()),
            secret_key: b64(&self.secret.to_bytes()),
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    /// The public key document (JSON) for the gatekeeper's policy.
    pub fn to_public_json(&self) -> String {
        public_key_json(&self.authorized_key())
    }

    /// Parses secret key documents (one object or an array); `source_name` names the
    /// source in errors.
    pub fn parse_secret_json(text: &str, source_name: &str) -> Result<Vec<Self>> {
        let docs: OneOrMany<SecretKeyDoc> = serde_json::from_str(text).map_err(|e| {
            // serde_json's message names a position, never the secret's value.
            Error::key_file(
                source_name,
                format!("not a {SECRET_KEY_FORMAT} document: {e}"),
            )
        })?;
        let docs = docs.into_vec();
        if docs.is_empty() {
            return Err(Error::key_file(source_name, "the key list is empty"));
        }
        docs.iter()
            .map(|d| Self::from_doc(d, source_name))
            .collect()
    }

    fn from_doc(doc: &SecretKeyDoc, source_name: &str) -> Result<Self> {
        if doc.format != SECRET_KEY_FORMAT {
            return Err(Error::key_file(
                source_name,
                format!("`format` must be `{SECRET_KEY_FORMAT}`"),
            ));
        }
        let key_id = KeyId::parse(&doc.key_id)?;
        let role = Role::parse(&doc.role)?;
        let mut raw = parse_b64(&doc.secret_key, "secret_key")?;
        let seed: Result<[u8; 32], _> = raw.as_slice().try_into();
        raw.zeroize();
        let Ok(mut seed) = seed else {
            return Err(Error::key_file(
                source_name,
                format!("key `{key_id}`: secret_key must be 32 bytes"),
            ));
        };
        let secret = SigningKey::from_bytes(&seed);
        seed.zeroize();
        let key = Self::from_signing_key(secret, key_id, role, doc.not_before, doc.not_after)?;
        let public = parse_b64(&doc.public_key, "public_key")?;
        if public.as_slice() != key.public.to_bytes().as_slice() {
            return Err(Error::key_file(
                source_name,
                format!(
                    "key `{}`: public_key does not belong to secret_key",
                    key.key_id
                ),
            ));
        }
        Ok(key)
    }

    /// Loads a secret key file (one key or an array). Refuses, on Unix, a file that
    /// group or others may read.
    pub fn load(path: impl AsRef<Path>) -> Result<Vec<Self>> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Checked on the opened file, so a swap between check and read is harmless.
            let mode = file
                .metadata()
                .map_err(|e| Error::io(path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::InsecureKeyFile {
                    path: path.to_owned(),
                    mode: mode & 0o777,
                });
            }
        }
        let mut text = read_limited(file, path)?;
        let keys = Self::parse_secret_json(&text, &path.display().to_string());
        text.zeroize();
        keys
    }

    /// Writes the secret key file with mode `0600`; never overwrites an existing file.
    pub fn write_secret_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
        let mut json = self.to_secret_json();
        let written = file
            .write_all(json.as_bytes())
            .and_then(|()| file.sync_all());
        json.zeroize();
        written.map_err(|e| Error::io(path, e))
    }
}

fn read_limited(file: std::fs::File, path: &Path) -> Result<String> {
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        text.zeroize();
        return Err(Error::key_file(
            path.display().to_string(),
            format!("key files are at most {MAX_KEY_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Reads secret keys from the environment variable `name` (a secret key document,
/// or an array of them), for containers that receive secrets that way.
pub fn keys_from_env(name: &str) -> Result<Vec<VendorKey>> {
    let source = format!("${name}");
    let mut text = std::env::var(name).map_err(|e| {
        Error::key_file(
            &source,
            match e {
                std::env::VarError::NotPresent => "the variable is not set".to_owned(),
                std::env::VarError::NotUnicode(_) => "the variable is not UTF-8".to_owned(),
            },
        )
    })?;
    let keys = VendorKey::parse_secret_json(&text, &source);
    text.zeroize();
    keys
}

/// The public key document (JSON) of an authorized key.
pub fn public_key_json(key: &AuthorizedKey) -> String {
    let doc = PublicKeyDoc {
        format: PUBLIC_KEY_FORMAT.to_owned(),
        key_id: key.key_id.to_string(),
        role: key.role.to_string(),
        not_before: key.not_before,
        not_after: key.not_after,
        public_key: b64(&key.public_key.to_bytes()),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// Parses public key documents (one object or an array), or a saved answer of a
/// gatekeeper's `GET /v1/keys` (`{"gatekeeper", "keys": [{"role", "key_id",
/// "public_key"}]}`).
pub fn parse_public_keys(text: &str, source_name: &str) -> Result<Vec<AuthorizedKey>> {
    if let Ok(doc) = serde_json::from_str::<GatekeeperKeysDoc>(text) {
        countersign_core::GatekeeperId::parse(&doc.gatekeeper)?;
        return doc
            .keys
            .iter()
            .map(|k| {
                Ok(AuthorizedKey {
                    public_key: PublicKey::from_slice(&parse_b64(&k.public_key, "public_key")?)?,
                    role: Role::parse(&k.role)?,
                    key_id: KeyId::parse(&k.key_id)?,
                    not_before: None,
                    not_after: None,
                })
            })
            .collect();
    }
    let docs: OneOrMany<PublicKeyDoc> = serde_json::from_str(text).map_err(|e| {
        Error::key_file(
            source_name,
            format!("not a {PUBLIC_KEY_FORMAT} document: {e}"),
        )
    })?;
    docs.into_vec()
        .into_iter()
        .map(|d| {
            if d.format != PUBLIC_KEY_FORMAT {
                return Err(Error::key_file(
                    source_name,
                    format!("`format` must be `{PUBLIC_KEY_FORMAT}`"),
                ));
            }
            let key_id = KeyId::parse(&d.key_id)?;
            check_window(&key_id, d.not_before, d.not_after)?;
            Ok(AuthorizedKey {
                public_key: PublicKey::from_slice(&parse_b64(&d.public_key, "public_key")?)?,
                role: Role::parse(&d.role)?,
                key_id,
                not_before: d.not_before,
                not_after: d.not_after,
            })
        })
        .collect()
}

/// Loads a public key file (one key or an array).
pub fn load_public_keys(path: impl AsRef<Path>) -> Result<Vec<AuthorizedKey>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let text = read_limited(file, path)?;
    parse_public_keys(&text, &path.display().to_string())
}
