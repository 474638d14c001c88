//! Configuration: embedded defaults for a zero-config start, or a TOML file for
//! production. Every validation error names the offending key and says what is wrong.

use crate::acl::{Acl, AclRule, Effect, IpRules};
use countersign_core::{
    AuthorizedKey, Bucket, GatekeeperId, KeyId, Method, PublicKey, Role, Subject,
    ed25519_dalek::SigningKey,
};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The bucket name that audit requests (signed by `customer-admin` keys) must name.
/// No storage bucket may use it.
pub const AUDIT_BUCKET: &str = "countersign-audit";

/// The bucket of the zero-config start.
pub const EMBEDDED_BUCKET: &str = "local";

/// A configuration error: the key it concerns and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("config: {key}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending key (`buckets.reports.endpoint`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

pub(crate) fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Where a bucket's objects live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// A directory on the local file system.
    Local {
        /// The directory (created if missing).
        path: PathBuf,
    },
    /// An S3-compatible service.
    S3 {
        /// Endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com`.
        endpoint: String,
        /// Region.
        region: String,
        /// The bucket's name in S3.
        s3_bucket: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Allow plain-HTTP endpoints (test servers only).
        allow_http: bool,
    },
}

/// One bucket.
#[derive(Clone, Debug)]
pub struct BucketConfig {
    /// Where the objects live.
    pub storage: StorageConfig,
    /// IP rules for this bucket only.
    pub ip_rules: IpRules,
    /// Encryption at rest (`None`: off, which must be said with `enabled = false`).
    pub encryption: Option<crate::encryption::EncryptionConfig>,
}

/// Size and time limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest object a PUT may store.
    pub max_object_bytes: u64,
    /// Largest `Countersign-Request` / `Countersign-Signature` header value.
    pub max_header_bytes: usize,
    /// Longest request lifetime accepted.
    pub max_lifetime_secs: u64,
    /// Tolerated clock skew.
    pub clock_skew_secs: u64,
    /// Most keys one LIST page returns.
    pub max_list_page: u32,
    /// Deadline of every object-store call (and of each chunk of a stream).
    pub storage_timeout_ms: u64,
    /// Deadline of every database call, waiting for a connection included.
    pub database_timeout_ms: u64,
    /// A client must send a request's headers within this time.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves for this long is closed.
    pub idle_timeout_ms: u64,
    /// A PUT body slower than this (over 10-second windows) is cut (`timeout`).
    pub min_body_bytes_per_sec: u64,
    /// Most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Memory for upload buffers across all uploads in flight; a PUT that would
    /// exceed it waits briefly, then gets `overloaded`.
    pub upload_memory_bytes: u64,
    /// How often dead uploads and orphaned storage are reconciled.
    pub reconcile_interval_secs: u64,
    /// A reservation is dead this long after its request's signed `expires-at`.
    pub reservation_grace_secs: u64,
    /// Failed requests (before their signatures verified) allowed per client address
    /// as a burst; the allowance refills at `preauth_failures_per_sec`.
    pub preauth_failure_burst: u32,
    /// Refill rate of the allowance above.
    pub preauth_failures_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_object_bytes: 5 * 1024 * 1024 * 1024,
            max_header_bytes: 8 * 1024,
            max_lifetime_secs: 900,
            clock_skew_secs: 30,
            max_list_page: 1000,
            storage_timeout_ms: 5_000,
            database_timeout_ms: 3_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            min_body_bytes_per_sec: 8_192,
            max_connections: 1_024,
            upload_memory_bytes: 256 * 1024 * 1024,
            reconcile_interval_secs: 60,
            reservation_grace_secs: 10,
            preauth_failure_burst: 60,
            preauth_failures_per_sec: 10,
        }
    }
}

impl Limits {
    /// [`Limits::storage_timeout_ms`] as a duration.
    pub fn storage_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.storage_timeout_ms)
    }

    /// [`Limits::database_timeout_ms`] as a duration.
    pub fn database_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.database_timeout_ms)
    }
}

/// Optional TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The gatekeeper's complete, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This gatekeeper's id: the audience requests must name.
    pub gatekeeper_id: GatekeeperId,
    /// Address to listen on, if the file names one.
    pub listen: Option<SocketAddr>,
    /// Directory for the key, the SQLite database and local buckets.
    pub data_dir: PathBuf,
    /// Path of the gatekeeper's signing key (generated on first start if missing).
    pub key_path: PathBuf,
    /// Key id of the gatekeeper's signing key.
    pub key_id: KeyId,
    /// Database URL: `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Limits.
    pub limits: Limits,
    /// Vendor and customer-admin keys.
    pub keys: Vec<AuthorizedKey>,
    /// Per operation, the roles and thresholds required (`AUDIT` for audit requests).
    pub thresholds: BTreeMap<String, Vec<(Role, usize)>>,
    /// Buckets by name.
    pub buckets: BTreeMap<Bucket, BucketConfig>,
    /// Global IP rules.
    pub ip_rules: IpRules,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The access control list.
    pub acl: Acl,
    /// TLS, if enabled.
    pub tls: Option<TlsConfig>,
    /// Origins allowed to call the API from a browser.
    pub cors_origins: Vec<String>,
    /// An audit checkpoint is signed after this many entries.
    pub checkpoint_every: u64,
}

/// The operations a threshold can be set for.
pub const THRESHOLD_OPERATIONS: [&str; 5] = ["GET", "HEAD", "PUT", "LIST", "AUDIT"];

impl Config {
    /// The embedded defaults: one local bucket `local` under `data_dir`, SQLite in
    /// `data_dir`, the given vendor keys (threshold 1), an ACL that lets every subject
    /// do everything, and no customer-admin keys (audit API disabled until configured).
    pub fn embedded(data_dir: &Path, vendor_keys: Vec<AuthorizedKey>) -> Result<Self, ConfigError> {
        let bucket = Bucket::parse(EMBEDDED_BUCKET).map_err(|e| err("buckets", e.message()))?;
        let mut buckets = BTreeMap::new();
        buckets.insert(
            bucket,
            BucketConfig {
                storage: StorageConfig::Local {
                    path: data_dir.join("buckets").join(EMBEDDED_BUCKET),
                },
                ip_rules: IpRules::default(),
                encryption: Some(crate::encryption::EncryptionConfig::generated(
                    data_dir,
                    EMBEDDED_BUCKET,
                )),
            },
        );
        let vendor = Role::vendor();
        let thresholds = ["GET", "HEAD", "PUT", "LIST"]
            .into_iter()
            .map(|op| (op.to_owned(), vec![(vendor.clone(), 1)]))
            .collect();
        let config = Self {
            gatekeeper_id: GatekeeperId::parse("local")
                .map_err(|e| err("gatekeeper_id", e.message()))?,
            listen: None,
            data_dir: data_dir.to_owned(),
            key_path: data_dir.join("gatekeeper.key"),
            key_id: KeyId::parse("gatekeeper-1").map_err(|e| err("key.key_id", e.message()))?,
            database_url: sqlite_url(&data_dir.join("gatekeeper.sqlite")),
            limits: Limits::default(),
            keys: vendor_keys,
            thresholds,
            buckets,
            ip_rules: IpRules::default(),
            trusted_proxies: Vec::new(),
            acl: Acl {
                groups: BTreeMap::new(),
                rules: vec![AclRule {
                    effect: Effect::Allow,
                    subjects: BTreeSet::new(),
                    groups: BTreeSet::new(),
                    everyone: true,
                    buckets: None,
                    prefix: String::new(),
                    operations: [Method::Get, Method::Head, Method::Put, Method::List]
                        .into_iter()
                        .collect(),
                }],
            },
            tls: None,
            cors_origins: Vec::new(),
            checkpoint_every: 100,
        };
        Ok(config)
    }

    /// Reads and validates a TOML file. Relative paths in it are relative to
    /// `data_dir`; `data_dir` from the command line wins over the file's.
    pub fn from_toml(text: &str, data_dir_override: Option<&Path>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let key = e.span().and_then(|s| text.get(..s.start)).map_or_else(
                || "(file)".to_owned(),
                |before| format!("line {}", before.lines().count().max(1)),
            );
            err(key, message)
        })?;
        raw.validate(data_dir_override)
    }

    /// The required roles and thresholds of an operation.
    pub fn threshold(&self, operation: &str) -> Option<&[(Role, usize)]> {
        self.thresholds.get(operation).map(Vec::as_slice)
    }
}

/// A `sqlite://` URL that creates the file if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gatekeeper_id: String,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    key: Option<RawKey>,
    database: Option<RawDatabase>,
    limits: Option<RawLimits>,
    #[serde(default)]
    keys: Vec<RawAuthorizedKey>,
    #[serde(default)]
    thresholds: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    buckets: BTreeMap<String, RawBucket>,
    network: Option<RawNetwork>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    acl: Vec<RawRule>,
    tls: Option<RawTls>,
    cors: Option<RawCors>,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    path: Option<PathBuf>,
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_object_bytes: Option<u64>,
    max_header_bytes: Option<usize>,
    max_lifetime_secs: Option<u64>,
    clock_skew_secs: Option<u64>,
    max_list_page: Option<u32>,
    storage_timeout_ms: Option<u64>,
    database_timeout_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    min_body_bytes_per_sec: Option<u64>,
    max_connections: Option<usize>,
    upload_memory_bytes: Option<u64>,
    reconcile_interval_secs: Option<u64>,
    reservation_grace_secs: Option<u64>,
    preauth_failure_burst: Option<u32>,
    preauth_failures_per_sec: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorizedKey {
    key_id: String,
    role: String,
    public_key: String,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    store: String,
    path: Option<PathBuf>,
    endpoint: Option<String>,
    region: Option<String>,
    s3_bucket: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    deny_ips: Vec<String>,
    encryption: Option<crate::encryption::RawEncryption>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    deny_ips: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    effect: String,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    prefix: String,
    operations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    origins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<u64>,
}

fn cidrs(list: &[String], key: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(
                        format!("{key}[{i}]"),
                        format!("`{s}` is not an IP address or CIDR block like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

pub(crate) fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

fn need<T>(v: Option<T>, key: String, what: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| err(key, format!("is required for {what}")))
}

impl RawConfig {
    fn validate(self, data_dir_override: Option<&Path>) -> Result<Config, ConfigError> {
        let gatekeeper_id = GatekeeperId::parse(&self.gatekeeper_id)
            .map_err(|e| err("gatekeeper_id", e.message()))?;
        let listen = self
            .listen
            .map(|l| {
                l.parse::<SocketAddr>().map_err(|_| {
                    err(
                        "listen",
                        format!("`{l}` is not an address like 127.0.0.1:8080"),
                    )
                })
            })
            .transpose()?;
        let data_dir = match (data_dir_override, self.data_dir) {
            (Some(d), _) => d.to_owned(),
            (None, Some(d)) => d,
            (None, None) => return Err(err("data_dir", "is required (or pass --data-dir)")),
        };
        let (key_path, key_id) = match self.key {
            Some(k) => (
                resolve(
                    &data_dir,
                    k.path.unwrap_or_else(|| PathBuf::from("gatekeeper.key")),
                ),
                k.key_id.unwrap_or_else(|| "gatekeeper-1".to_owned()),
            ),
            None => (data_dir.join("gatekeeper.key"), "gatekeeper-1".to_owned()),
        };
        let key_id = KeyId::parse(&key_id).map_err(|e| err("key.key_id", e.message()))?;
        let database_url = match self.database {
            Some(d)
                if d.url.starts_with("sqlite:")
                    || d.url.starts_with("postgres://")
                    || d.url.starts_with("postgresql://") =>
            {
                d.url
            }
            Some(_) => {
                return Err(err(
                    "database.url",
                    "must start with sqlite: or postgres://",
                ));
            }
            None => sqlite_url(&data_dir.join("gatekeeper.sqlite")),
        };
        let mut limits = Limits::default();
        if let Some(l) = self.limits {
            if let Some(v) = l.max_object_bytes {
                limits.max_object_bytes = v;
            }
            if let Some(v) = l.max_header_bytes {
                if !(256..=65_536).contains(&v) {
                    return Err(err(
                        "limits.max_header_bytes",
                        "must be between 256 and 65536",
                    ));
                }
                limits.max_header_bytes = v;
            }
            if let Some(v) = l.max_lifetime_secs {
                if v == 0 || v > countersign_core::canonical::MAX_LIFETIME_SECS {
                    return Err(err(
                        "limits.max_lifetime_secs",
                        "must be between 1 and 86400",
                    ));
                }
                limits.max_lifetime_secs = v;
            }
            if let Some(v) = l.clock_skew_secs {
                if v > 600 {
                    return Err(err("limits.clock_skew_secs", "must be at most 600"));
                }
                limits.clock_skew_secs = v;
            }
            if let Some(v) = l.max_list_page {
                let most = countersign_core::listing::MAX_LISTING_OBJECTS;
                if v == 0 || v as usize > most {
                    return Err(err(
                        "limits.max_list_page",
                        format!(
                            "must be between 1 and {most} (a signed listing holds at most {most} objects)"
                        ),
                    ));
                }
                limits.max_list_page = v;
            }
            let ranged = |name: &str, v: Option<u64>, lo: u64, hi: u64, slot: &mut u64| match v {
                Some(v) if !(lo..=hi).contains(&v) => Err(err(
                    format!("limits.{name}"),
                    format!("must be between {lo} and {hi}"),
                )),
                Some(v) => {
                    *slot = v;
                    Ok(())
                }
                None => Ok(()),
            };
            ranged(
                "storage_timeout_ms",
                l.storage_timeout_ms,
                100,
                600_000,
                &mut limits.storage_timeout_ms,
            )?;
            ranged(
                "database_timeout_ms",
                l.database_timeout_ms,
                100,
                600_000,
                &mut limits.database_timeout_ms,
            )?;
            ranged(
                "header_read_timeout_ms",
                l.header_read_timeout_ms,
                100,
                600_000,
                &mut limits.header_read_timeout_ms,
            )?;
            ranged(
                "idle_timeout_ms",
                l.idle_timeout_ms,
                100,
                3_600_000,
                &mut limits.idle_timeout_ms,
            )?;
            ranged(
                "min_body_bytes_per_sec",
                l.min_body_bytes_per_sec,
                0,
                1 << 30,
                &mut limits.min_body_bytes_per_sec,
            )?;
            ranged(
                "upload_memory_bytes",
                l.upload_memory_bytes,
                32 << 20,
                1 << 40,
                &mut limits.upload_memory_bytes,
            )?;
            ranged(
                "reconcile_interval_secs",
                l.reconcile_interval_secs,
                1,
                86_400,
                &mut limits.reconcile_interval_secs,
            )?;
            ranged(
                "reservation_grace_secs",
                l.reservation_grace_secs,
                1,
                86_400,
                &mut limits.reservation_grace_secs,
            )?;
            let mut n = limits.max_connections as u64;
            ranged(
                "max_connections",
                l.max_connections.map(|v| v as u64),
                1,
                1_000_000,
                &mut n,
            )?;
            limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
            let mut n = u64::from(limits.preauth_failure_burst);
            ranged(
                "preauth_failure_burst",
                l.preauth_failure_burst.map(u64::from),
                1,
                1_000_000,
                &mut n,
            )?;
            limits.preauth_failure_burst = u32::try_from(n).unwrap_or(u32::MAX);
            let mut n = u64::from(limits.preauth_failures_per_sec);
            ranged(
                "preauth_failures_per_sec",
                l.preauth_failures_per_sec.map(u64::from),
                1,
                1_000_000,
                &mut n,
            )?;
            limits.preauth_failures_per_sec = u32::try_from(n).unwrap_or(u32::MAX);
        }

        let mut keys = Vec::new();
        let mut seen_ids = BTreeSet::new();
        let mut seen_keys: BTreeMap<Vec<u8>, KeyId> = BTreeMap::new();
        for (i, k) in self.keys.into_iter().enumerate() {
            let at = |f: &str| format!("keys[{i}].{f}");
            let key_id = KeyId::parse(&k.key_id).map_err(|e| err(at("key_id"), e.message()))?;
            if !seen_ids.insert(key_id.clone()) {
                return Err(err(
                    at("key_id"),
                    format!("`{key_id}` is used by two keys; key ids must be unique"),
                ));
            }
            let role = Role::parse(&k.role).map_err(|e| err(at("role"), e.message()))?;
            if role == Role::gatekeeper() {
                return Err(err(
                    at("role"),
                    "gatekeeper keys are not configured here; the gatekeeper's own key is in [key]",
                ));
            }
            let raw = base64_decode(&k.public_key)
                .ok_or_else(|| err(at("public_key"), "must be 32 bytes in unpadded base64url"))?;
            let public_key =
                PublicKey::from_slice(&raw).map_err(|e| err(at("public_key"), e.message()))?;
            // One key under two ids would count twice towards a threshold.
            if let Some(first) = seen_keys.insert(raw.clone(), key_id.clone()) {
                return Err(err(
                    at("public_key"),
                    format!(
                        "is already configured as key `{first}`; one public key may have only one key id (duplicate_key)"
                    ),
                ));
            }
            if let (Some(nb), Some(na)) = (k.not_before, k.not_after)
                && na <= nb
            {
                return Err(err(at("not_after"), "must be after not_before"));
            }
            keys.push(AuthorizedKey {
                key_id,
                role,
                public_key,
                not_before: k.not_before,
                not_after: k.not_after,
            });
        }

        let mut thresholds = BTreeMap::new();
        for (op, roles) in self.thresholds {
            if !THRESHOLD_OPERATIONS.contains(&op.as_str()) {
                return Err(err(
                    format!("thresholds.{op}"),
                    "is not an operation; use GET, HEAD, PUT, LIST or AUDIT",
                ));
            }
            let mut list = Vec::new();
            for (role, n) in roles {
                let key = format!("thresholds.{op}.{role}");
                let role = Role::parse(&role).map_err(|e| err(key.clone(), e.message()))?;
                let available = keys.iter().filter(|k| k.role == role).count();
                let n = usize::try_from(n).ok().filter(|n| *n >= 1 && *n <= available).ok_or_else(|| {
                    err(key.clone(), format!("must be between 1 and the {available} configured key(s) of role `{role}`"))
                })?;
                list.push((role, n));
            }
            if list.is_empty() {
                return Err(err(
                    format!("thresholds.{op}"),
                    "must require at least one role",
                ));
            }
            thresholds.insert(op, list);
        }
        for op in ["GET", "HEAD", "PUT", "LIST"] {
            if !thresholds.contains_key(op) {
                let available = keys.iter().filter(|k| k.role == Role::vendor()).count();
                if available == 0 {
                    return Err(err(
                        format!("thresholds.{op}"),
                        "is not set and there is no key of role `vendor` to default to",
                    ));
                }
                thresholds.insert(op.to_owned(), vec![(Role::vendor(), 1)]);
            }
        }

        let mut buckets = BTreeMap::new();
        for (name, b) in self.buckets {
            let at = |f: &str| format!("buckets.{name}.{f}");
            let bucket =
                Bucket::parse(&name).map_err(|e| err(format!("buckets.{name}"), e.message()))?;
            if name == AUDIT_BUCKET {
                return Err(err(
                    format!("buckets.{name}"),
                    "is reserved for audit requests",
                ));
            }
            let storage = match b.store.as_str() {
                "local" => StorageConfig::Local {
                    path: resolve(
                        &data_dir,
                        b.path
                            .unwrap_or_else(|| PathBuf::from("buckets").join(&name)),
                    ),
                },
                "s3" => {
                    let secret = match (b.secret_access_key, b.secret_access_key_env) {
                        (Some(s), None) => s,
                        (None, Some(var)) => std::env::var(&var).map_err(|_| {
                            err(
                                at("secret_access_key_env"),
                                format!("environment variable `{var}` is not set"),
                            )
                        })?,
                        (Some(_), Some(_)) => {
                            return Err(err(
                                at("secret_access_key"),
                                "set either secret_access_key or secret_access_key_env, not both",
                            ));
                        }
                        (None, None) => {
                            return Err(err(
                                at("secret_access_key"),
                                "is required for an s3 bucket (or secret_access_key_env)",
                            ));
                        }
                    };
                    let endpoint = need(b.endpoint, at("endpoint"), "an s3 bucket")?;
                    if !(endpoint.starts_with("https://")
                        || (b.allow_http && endpoint.starts_with("http://")))
                    {
                        return Err(err(
                            at("endpoint"),
                            "must be an https:// URL (http:// only with allow_http = true)",
                        ));
                    }
                    StorageConfig::S3 {
                        endpoint,
                        region: b.region.unwrap_or_else(|| "us-east-1".to_owned()),
                        s3_bucket: b.s3_bucket.unwrap_or_else(|| name.clone()),
                        access_key_id: need(b.access_key_id, at("access_key_id"), "an s3 bucket")?,
                        secret_access_key: secret,
                        allow_http: b.allow_http,
                    }
                }
                other => {
                    return Err(err(
                        at("store"),
                        format!("`{other}` is not a store; use \"local\" or \"s3\""),
                    ));
                }
            };
            let ip_rules = IpRules {
                allow: cidrs(&b.allow_ips, &at("allow_ips"))?,
                deny: cidrs(&b.deny_ips, &at("deny_ips"))?,
            };
            let encryption = crate::encryption::EncryptionConfig::from_raw(
                b.encryption,
                &data_dir,
                &name,
                &at("encryption"),
            )?;
            buckets.insert(
                bucket,
                BucketConfig {
                    storage,
                    ip_rules,
                    encryption,
                },
            );
        }
        if buckets.is_empty() {
            return Err(err("buckets", "at least one bucket is required"));
        }

        let (ip_rules, trusted_proxies) = match self.network {
            Some(n) => (
                IpRules {
                    allow: cidrs(&n.allow_ips, "network.allow_ips")?,
                    deny: cidrs(&n.deny_ips, "network.deny_ips")?,
                },
                cidrs(&n.trusted_proxies, "network.trusted_proxies")?,
            ),
            None => (IpRules::default(), Vec::new()),
        };

        let mut groups = BTreeMap::new();
        for (name, members) in self.groups {
            let mut set = BTreeSet::new();
            for (i, m) in members.iter().enumerate() {
                set.insert(
                    Subject::parse(m)
                        .map_err(|e| err(format!("groups.{name}[{i}]"), e.message()))?,
                );
            }
            groups.insert(name, set);
        }
        let mut rules = Vec::new();
        for (i, r) in self.acl.into_iter().enumerate() {
            let at = |f: &str| format!("acl[{i}].{f}");
            let effect = match r.effect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => {
                    return Err(err(
                        at("effect"),
                        format!("`{other}` must be \"allow\" or \"deny\""),
                    ));
                }
            };
            let everyone = r.subjects.iter().any(|s| s == "*");
            let mut subjects = BTreeSet::new();
            for (j, s) in r.subjects.iter().enumerate().filter(|(_, s)| *s != "*") {
                subjects.insert(
                    Subject::parse(s)
                        .map_err(|e| err(format!("acl[{i}].subjects[{j}]"), e.message()))?,
                );
            }
            for (j, g) in r.groups.iter().enumerate() {
                if !groups.contains_key(g) {
                    return Err(err(
                        format!("acl[{i}].groups[{j}]"),
                        format!("group `{g}` is not defined in [groups]"),
                    ));
                }
            }
            if !everyone && subjects.is_empty() && r.groups.is_empty() {
                return Err(err(
                    at("subjects"),
                    "a rule needs subjects, groups, or subjects = [\"*\"]",
                ));
            }
            let rule_buckets = if r.buckets.iter().any(|b| b == "*") || r.buckets.is_empty() {
                None
            } else {
                let mut set = BTreeSet::new();
                for (j, b) in r.buckets.iter().enumerate() {
                    let bucket = Bucket::parse(b)
                        .map_err(|e| err(format!("acl[{i}].buckets[{j}]"), e.message()))?;
                    if !buckets.contains_key(&bucket) {
                        return Err(err(
                            format!("acl[{i}].buckets[{j}]"),
                            format!("bucket `{b}` is not defined in [buckets]"),
                        ));
                    }
                    set.insert(bucket);
                }
                Some(set)
            };
            if !r.prefix.is_empty() {
                countersign_core::ListPrefix::parse(&r.prefix)
                    .map_err(|e| err(at("prefix"), e.message()))?;
            }
            let mut operations = BTreeSet::new();
            for (j, op) in r.operations.iter().enumerate() {
                operations.insert(Method::parse(op).map_err(|_| {
                    err(
                        format!("acl[{i}].operations[{j}]"),
                        format!("`{op}` must be GET, HEAD, PUT or LIST"),
                    )
                })?);
            }
            if operations.is_empty() {
                return Err(err(at("operations"), "must name at least one operation"));
            }
            rules.push(AclRule {
                effect,
                subjects,
                groups: r.groups.into_iter().collect(),
                everyone,
                buckets: rule_buckets,
                prefix: r.prefix,
                operations,
            });
        }

        let tls = self.tls.map(|t| TlsConfig {
            cert: resolve(&data_dir, t.cert),
            key: resolve(&data_dir, t.key),
        });
        let cors_origins = self.cors.map(|c| c.origins).unwrap_or_default();
        for (i, o) in cors_origins.iter().enumerate() {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && o.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(err(
                    format!("cors.origins[{i}]"),
                    format!(
                        "`{o}` must be an origin like https://reports.example.com (scheme and host, no path)"
                    ),
                ));
            }
        }
        let checkpoint_every = self.audit.and_then(|a| a.checkpoint_every).unwrap_or(100);
        if checkpoint_every == 0 {
            return Err(err("audit.checkpoint_every", "must be at least 1"));
        }
        Ok(Config {
            gatekeeper_id,
            listen,
            data_dir,
            key_path,
            key_id,
            database_url,
            limits,
            keys,
            thresholds,
            buckets,
            ip_rules,
            trusted_proxies,
            acl: Acl { groups, rules },
            tls,
            cors_origins,
            checkpoint_every,
        })
    }
}

/// Decodes unpadded base64url.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()
}

/// Parses `KEY-ID=BASE64URL-PUBLIC-KEY` (the `--vendor-key` flag) as a vendor key.
pub fn parse_vendor_key_flag(s: &str) -> Result<AuthorizedKey, ConfigError> {
    let (id, pk) = s
        .split_once('=')
        .ok_or_else(|| err("--vendor-key", "must be KEY-ID=PUBLIC-KEY (base64url)"))?;
    let key_id = KeyId::parse(id).map_err(|e| err("--vendor-key", e.message()))?;
    let raw = base64_decode(pk)
        .ok_or_else(|| err("--vendor-key", "the public key must be unpadded base64url"))?;
    let public_key = PublicKey::from_slice(&raw).map_err(|e| err("--vendor-key", e.message()))?;
    Ok(AuthorizedKey {
        key_id,
        role: Role::vendor(),
        public_key,
        not_before: None,
        not_after: None,
    })
}

/// Loads the gatekeeper's signing key from `path`, or generates one there (mode 0600)
/// with the OS RNG if the file does not exist. The file holds the 32-byte seed in
/// base64url.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), ConfigError> {
    let key = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let raw = base64_decode(&text)
                .ok_or_else(|| err(&key, "the gatekeeper key file must hold a base64url seed"))?;
            let seed: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| err(&key, "the gatekeeper key file must hold 32 bytes"))?;
            Ok((SigningKey::from_bytes(&seed), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| err(&key, format!("cannot create the directory: {e}")))?;
            }
            let text = countersign_core::text::b64(&seed);
            write_private(path, text.as_bytes())
                .map_err(|e| err(&key, format!("cannot write the key: {e}")))?;
            Ok((SigningKey::from_bytes(&seed), true))
        }
        Err(e) => Err(err(&key, format!("cannot read the key: {e}"))),
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
