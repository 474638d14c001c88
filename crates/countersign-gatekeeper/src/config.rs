//! Configuration: embedded defaults for a zero-config start, or a TOML file for
//! production. Every validation error names the offending key and says what is wrong.

use crate::acl::{Acl, AclRule, Effect, IpRules};
use countersign_core::note::NoteVerifier;
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

/// A configuration error: the key it concerns, its line in the file when it has one,
/// and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("config: {}{key}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// Dotted path of the offending key (`buckets.reports.endpoint`, `acl[1].groups[0]`).
    pub key: String,
    /// 1-based line in the TOML file of the key (or of its nearest enclosing table when
    /// the key is missing); `None` for problems outside a file (command-line flags).
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

pub(crate) fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        line: None,
        message: message.into(),
    }
}

/// A secret (an S3 secret key, a database URL with its password): its `Debug` prints
/// `[redacted]` and it has no `Display`, so it reaches no log or error message; the
/// value is read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
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
        secret_access_key: Secret,
        /// Allow plain-HTTP endpoints (test servers only). Over plain HTTP the S3
        /// client signs each request's payload hash (`x-amz-content-sha256`); over
        /// HTTPS it sends `UNSIGNED-PAYLOAD` and TLS protects the body.
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
    /// On SIGTERM/SIGINT, requests in progress get this long to finish.
    pub shutdown_grace_ms: u64,
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
            shutdown_grace_ms: 30_000,
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
    /// A second, plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`
    /// (`admin_listen`); when set, `/metrics` is served only there.
    pub admin_listen: Option<SocketAddr>,
    /// Directory for the key, the SQLite database and local buckets.
    pub data_dir: PathBuf,
    /// Path of the gatekeeper's signing key (generated on first start if missing).
    pub key_path: PathBuf,
    /// Key id of the gatekeeper's signing key.
    pub key_id: KeyId,
    /// Database URL: `sqlite://…` or `postgres://…` (it may hold a password).
    pub database_url: Secret,
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
    /// How often the Merkle tree is extended over new entries and a C2SP checkpoint
    /// signed (`audit.checkpoint_interval_ms`, default 1000).
    pub checkpoint_interval: std::time::Duration,
    /// The append-only file every signed tree checkpoint is also published to
    /// (`audit.published_checkpoints`, default `checkpoints.log` in `data_dir`).
    pub published_checkpoints: PathBuf,
    /// The witnesses that cosign the checkpoints, and their quorum (`[log]`).
    pub witnesses: WitnessPolicy,
    /// The S3 bucket every signed tree checkpoint is also published to, as a
    /// write-once (optionally object-locked) object (`[log.publish_bucket]`).
    pub publish_bucket: Option<crate::checkpoint_bucket::PublishBucketConfig>,
    /// The audit console at `/audit/` (`[console]`), off when `None`.
    pub console: Option<crate::http::console::ConsoleConfig>,
    /// Signed webhook alerts (`[[webhooks]]`), none by default.
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
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
            admin_listen: None,
            data_dir: data_dir.to_owned(),
            key_path: data_dir.join("gatekeeper.key"),
            key_id: KeyId::parse("gatekeeper-1").map_err(|e| err("key.key_id", e.message()))?,
            database_url: Secret::new(sqlite_url(&data_dir.join("gatekeeper.sqlite"))),
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
            checkpoint_interval: std::time::Duration::from_millis(DEFAULT_CHECKPOINT_INTERVAL_MS),
            published_checkpoints: data_dir.join(PUBLISHED_CHECKPOINTS_FILE),
            witnesses: WitnessPolicy::default(),
            publish_bucket: None,
            console: None,
            webhooks: Vec::new(),
        };
        Ok(config)
    }

    /// Reads and validates a TOML file, stopping at the first problem (see
    /// [`Config::check`] for all of them). Relative paths in it are relative to
    /// `data_dir`; `data_dir` from the command line wins over the file's.
    pub fn from_toml(text: &str, data_dir_override: Option<&Path>) -> Result<Self, ConfigError> {
        Self::check(text, data_dir_override).map_err(|mut problems| {
            problems.truncate(1);
            problems
                .pop()
                .unwrap_or_else(|| err("(file)", "is not valid"))
        })
    }

    /// Reads and validates a TOML file and returns every problem found, each with its
    /// TOML path and line: all syntax errors; else the first error of the file's
    /// shape (an unknown or mistyped key); else every invalid value (a value that
    /// depends on a broken one is not reported again).
    pub fn check(text: &str, data_dir_override: Option<&Path>) -> Result<Self, Vec<ConfigError>> {
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        let at_span = |span: Option<std::ops::Range<usize>>, message: &str| {
            let key = span
                .as_ref()
                .and_then(|s| path_at(doc.get_ref(), s.start))
                .unwrap_or_else(|| "(file)".to_owned());
            ConfigError {
                key,
                line: span.map(|s| line_at(text, s.start)),
                message: message.trim_end().to_owned(),
            }
        };
        if !syntax.is_empty() {
            // The document is incomplete here: name the line only.
            return Err(syntax
                .iter()
                .map(|e| ConfigError {
                    key: "(syntax)".to_owned(),
                    line: e.span().map(|s| line_at(text, s.start)),
                    message: e.message().trim_end().to_owned(),
                })
                .collect());
        }
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| vec![at_span(e.span(), e.message())])?;
        let mut problems = Vec::new();
        let config = raw.validate(data_dir_override, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems
                .into_iter()
                .map(|mut e| {
                    e.line = Some(line_of_path(doc.get_ref(), text, &e.key));
                    e
                })
                .collect()),
        }
    }

    /// The required roles and thresholds of an operation.
    pub fn threshold(&self, operation: &str) -> Option<&[(Role, usize)]> {
        self.thresholds.get(operation).map(Vec::as_slice)
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One step of a TOML path: a key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `acl[1].groups[0]` into steps; `None` if it is not such a path.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            out.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// The line of `path` in the document, or of its deepest part that exists (a
/// missing key is reported where its table is); line 1 if nothing matches.
fn line_of_path(doc: &toml::de::DeTable<'_>, text: &str, path: &str) -> usize {
    use toml::de::DeValue;
    let mut span: Option<std::ops::Range<usize>> = None;
    let mut table = Some(doc);
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for step in steps(path).unwrap_or_default() {
        let found = match (step, table, array) {
            (Step::Key(k), Some(t), _) => t
                .iter()
                .find(|(name, _)| name.get_ref() == k)
                .map(|(name, value)| (name.span(), value)),
            (Step::Index(i), _, Some(a)) => a.get(i).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((at, value)) = found else { break };
        span = Some(at);
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(&**a)),
            _ => (None, None),
        };
    }
    span.map_or(1, |s| line_at(text, s.start))
}

/// The dotted path of the last key that starts at or before byte `offset` (in a
/// file that parsed, the key an error at `offset` is about).
fn path_at(doc: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    use toml::de::DeValue;
    fn walk(value: &DeValue<'_>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
        let mut consider = |start: usize, path: String, value: &DeValue<'_>| {
            if start <= offset && best.as_ref().is_none_or(|(b, _)| start >= *b) {
                *best = Some((start, path.clone()));
            }
            walk(value, &path, offset, best);
        };
        match value {
            DeValue::Table(t) => {
                for (k, v) in t {
                    let sep = if path.is_empty() { "" } else { "." };
                    consider(
                        k.span().start,
                        format!("{path}{sep}{}", k.get_ref()),
                        v.get_ref(),
                    );
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    consider(v.span().start, format!("{path}[{i}]"), v.get_ref());
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    for (k, v) in doc {
        if k.span().start <= offset && best.as_ref().is_none_or(|(b, _)| k.span().start >= *b) {
            best = Some((k.span().start, k.get_ref().to_string()));
        }
        walk(v.get_ref(), k.get_ref(), offset, &mut best);
    }
    best.map(|(_, path)| path)
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
    admin_listen: Option<String>,
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
    log: Option<RawLog>,
    console: Option<crate::http::console::RawConsole>,
    #[serde(default)]
    webhooks: Vec<crate::webhook::RawWebhook>,
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
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
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
    shutdown_grace_ms: Option<u64>,
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
    secret_access_key_file: Option<PathBuf>,
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
    checkpoint_interval_ms: Option<u64>,
    published_checkpoints: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    witnesses: Vec<RawWitness>,
    quorum: Option<usize>,
    witness_timeout_ms: Option<u64>,
    publish_bucket: Option<RawPublishBucket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublishBucket {
    endpoint: Option<String>,
    region: Option<String>,
    bucket: String,
    #[serde(default)]
    prefix: String,
    access_key_id: String,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    object_lock_days: Option<u32>,
}

impl RawPublishBucket {
    fn validate(
        self,
        data_dir: &Path,
        p: &mut Vec<ConfigError>,
    ) -> Option<crate::checkpoint_bucket::PublishBucketConfig> {
        const AT: &str = "log.publish_bucket";
        let region = self.region.unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            || reqwest::Url::parse(&endpoint).is_err()
        {
            p.push(err(
                format!("{AT}.endpoint"),
                format!(
                    "`{endpoint}` must be an http(s) URL like https://s3.eu-central-1.amazonaws.com"
                ),
            ));
        }
        if self.bucket.is_empty()
            || !self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/')
        {
            p.push(err(
                format!("{AT}.bucket"),
                "must be a bucket name (no `/`)",
            ));
        }
        let prefix_ok = self.prefix.split('/').all(|seg| !seg.is_empty())
            && self.prefix.bytes().all(|b| b.is_ascii_graphic());
        if !self.prefix.is_empty() && !prefix_ok {
            p.push(err(
                format!("{AT}.prefix"),
                "must be a key prefix like `gatekeeper-1/audit` (no leading, trailing or double `/`)",
            ));
        }
        if self.object_lock_days == Some(0) || self.object_lock_days.is_some_and(|d| d > 36_500) {
            p.push(err(
                format!("{AT}.object_lock_days"),
                "must be between 1 and 36500 (days)",
            ));
        }
        let secret = match secret(
            data_dir,
            &format!("{AT}.secret_access_key"),
            self.secret_access_key,
            self.secret_access_key_env,
            self.secret_access_key_file,
        ) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                p.push(err(
                    format!("{AT}.secret_access_key"),
                    "is required (or secret_access_key_env, secret_access_key_file)",
                ));
                None
            }
            Err(e) => {
                p.push(e);
                None
            }
        }?;
        Some(crate::checkpoint_bucket::PublishBucketConfig {
            endpoint,
            region,
            bucket: self.bucket,
            prefix: self.prefix,
            access_key_id: self.access_key_id,
            secret_access_key: secret,
            object_lock_days: self.object_lock_days,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    url: String,
    vkey: String,
}

/// A witness the gatekeeper sends its checkpoints to (`[[log.witnesses]]`).
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// Base URL of its `tlog-witness` API: requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// Its cosigner key (`cosignature/v1`), from the vkey; its name is the key's.
    pub verifier: NoteVerifier,
}

/// The witnesses and the quorum of `[log]`.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    /// The witnesses, each with a distinct name and key.
    pub witnesses: Vec<WitnessConfig>,
    /// How many of them must cosign a checkpoint before `GET /v1/log/checkpoint`
    /// serves it cosigned (1 to the number of witnesses; 0 without witnesses).
    pub quorum: usize,
    /// How long one `add-checkpoint` request may take.
    pub timeout: std::time::Duration,
}

/// Default of `log.witness_timeout_ms`.
pub const DEFAULT_WITNESS_TIMEOUT_MS: u64 = 5000;

impl Default for WitnessPolicy {
    /// No witnesses (and the default timeout).
    fn default() -> Self {
        Self {
            witnesses: Vec::new(),
            quorum: 0,
            timeout: std::time::Duration::from_millis(DEFAULT_WITNESS_TIMEOUT_MS),
        }
    }
}

impl RawLog {
    fn validate(self, p: &mut Vec<ConfigError>) -> WitnessPolicy {
        let mut witnesses: Vec<WitnessConfig> = Vec::new();
        for (i, w) in self.witnesses.into_iter().enumerate() {
            let key = format!("log.witnesses[{i}]");
            let url_ok = (w.url.starts_with("https://") || w.url.starts_with("http://"))
                && w.url.bytes().all(|b| b.is_ascii_graphic())
                && !w.url.contains(['?', '#']);
            if !url_ok {
                p.push(err(
                    format!("{key}.url"),
                    format!(
                        "`{}` must be an http(s) URL like https://witness.example.com (the API's base)",
                        w.url
                    ),
                ));
            }
            let verifier = match NoteVerifier::parse(&w.vkey) {
                Ok(v) if v.is_cosigner() => v,
                Ok(_) => {
                    p.push(err(
                        format!("{key}.vkey"),
                        "must be a witness's cosignature/v1 key (type 0x04), not a log's Ed25519 key",
                    ));
                    continue;
                }
                Err(e) => {
                    p.push(err(
                        format!("{key}.vkey"),
                        format!(
                            "is not a note verifier key `name+keyid+base64`: {}",
                            e.message()
                        ),
                    ));
                    continue;
                }
            };
            if witnesses.iter().any(|o| {
                o.verifier.name() == verifier.name() || o.verifier.to_text() == verifier.to_text()
            }) {
                p.push(err(
                    format!("{key}.vkey"),
                    format!("witness `{}` is named twice", verifier.name()),
                ));
                continue;
            }
            witnesses.push(WitnessConfig {
                url: w.url.trim_end_matches('/').to_owned(),
                verifier,
            });
        }
        let quorum = self.quorum.unwrap_or(witnesses.len());
        if quorum > witnesses.len() || (quorum == 0 && !witnesses.is_empty()) {
            p.push(err(
                "log.quorum",
                format!(
                    "must be between 1 and the number of witnesses ({})",
                    witnesses.len()
                ),
            ));
        }
        let timeout_ms = self
            .witness_timeout_ms
            .unwrap_or(DEFAULT_WITNESS_TIMEOUT_MS);
        if !(10..=60_000).contains(&timeout_ms) {
            p.push(err(
                "log.witness_timeout_ms",
                "must be between 10 (ms) and 60000 (one minute)",
            ));
        }
        WitnessPolicy {
            witnesses,
            quorum,
            timeout: std::time::Duration::from_millis(timeout_ms),
        }
    }
}

/// Default of `audit.checkpoint_interval_ms`.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 1000;
/// Default file name of `audit.published_checkpoints`, in `data_dir`.
pub const PUBLISHED_CHECKPOINTS_FILE: &str = "checkpoints.log";

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

/// Evaluates to `Some(value)`, or records the error in `$p` and evaluates to `None`.
macro_rules! check {
    ($p:ident, $e:expr) => {
        match $e {
            Ok(v) => Some(v),
            Err(e) => {
                $p.push(e);
                None
            }
        }
    };
}

/// A secret given inline (`KEY`), by environment variable (`KEY_env`) or in a file
/// (`KEY_file`, relative to `data_dir`, refused if group/other-readable): at most one
/// of the three; `None` if none is given.
pub(crate) fn secret(
    data_dir: &Path,
    key: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, env, file) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(Secret::new(v))),
        (None, Some(var), None) => {
            std::env::var(&var)
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| {
                    err(
                        format!("{key}_env"),
                        format!("environment variable `{var}` is not set"),
                    )
                })
        }
        (None, None, Some(path)) => {
            let path = resolve(data_dir, path);
            let at = format!("{key}_file");
            let file = std::fs::File::open(&path)
                .map_err(|e| err(&at, format!("cannot read {}: {e}", path.display())))?;
            let text = read_private(file, &at, 64 * 1024)?;
            Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
        }
        _ => Err(err(
            key,
            format!("set only one of {key}, {key}_env and {key}_file"),
        )),
    }
}

fn need<T>(v: Option<T>, key: String, what: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| err(key, format!("is required for {what}")))
}

impl RawConfig {
    /// Validates every section, recording each problem in `p` (independent parts are
    /// all checked; a part that depends on a broken one is skipped). `None` if any.
    fn validate(
        self,
        data_dir_override: Option<&Path>,
        p: &mut Vec<ConfigError>,
    ) -> Option<Config> {
        let gatekeeper_id = check!(
            p,
            GatekeeperId::parse(&self.gatekeeper_id).map_err(|e| err("gatekeeper_id", e.message()))
        );
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
            .transpose();
        let listen = check!(p, listen);
        let admin_listen = self
            .admin_listen
            .map(|l| {
                l.parse::<SocketAddr>().map_err(|_| {
                    err(
                        "admin_listen",
                        format!("`{l}` is not an address like 127.0.0.1:9464"),
                    )
                })
            })
            .transpose();
        let admin_listen = check!(p, admin_listen);
        let data_dir = match (data_dir_override, self.data_dir) {
            (Some(d), _) => d.to_owned(),
            (None, Some(d)) => d,
            (None, None) => {
                // Reported; the rest is still checked (relative secret-file paths
                // then resolve against the current directory).
                p.push(err("data_dir", "is required (or pass --data-dir)"));
                PathBuf::new()
            }
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
        let key_id = check!(
            p,
            KeyId::parse(&key_id).map_err(|e| err("key.key_id", e.message()))
        );
        let database_url = match self.database {
            Some(d) => match check!(
                p,
                secret(&data_dir, "database.url", d.url, d.url_env, d.url_file)
            ) {
                Some(Some(url))
                    if url.expose().starts_with("sqlite:")
                        || url.expose().starts_with("postgres://")
                        || url.expose().starts_with("postgresql://") =>
                {
                    url
                }
                Some(Some(_)) => {
                    p.push(err(
                        "database.url",
                        "must start with sqlite: or postgres://",
                    ));
                    Secret::new("")
                }
                Some(None) => {
                    p.push(err(
                        "database.url",
                        "is required in [database] (or url_env, url_file)",
                    ));
                    Secret::new("")
                }
                None => Secret::new(""),
            },
            None => Secret::new(sqlite_url(&data_dir.join("gatekeeper.sqlite"))),
        };
        let mut limits = Limits::default();
        if let Some(l) = self.limits {
            if let Some(v) = l.max_object_bytes {
                limits.max_object_bytes = v;
            }
            if let Some(v) = l.max_header_bytes {
                if !(256..=65_536).contains(&v) {
                    p.push(err(
                        "limits.max_header_bytes",
                        "must be between 256 and 65536",
                    ));
                } else {
                    limits.max_header_bytes = v;
                }
            }
            if let Some(v) = l.max_lifetime_secs {
                if v == 0 || v > countersign_core::canonical::MAX_LIFETIME_SECS {
                    p.push(err(
                        "limits.max_lifetime_secs",
                        "must be between 1 and 86400",
                    ));
                } else {
                    limits.max_lifetime_secs = v;
                }
            }
            if let Some(v) = l.clock_skew_secs {
                if v > 600 {
                    p.push(err("limits.clock_skew_secs", "must be at most 600"));
                } else {
                    limits.clock_skew_secs = v;
                }
            }
            if let Some(v) = l.max_list_page {
                let most = countersign_core::listing::MAX_LISTING_OBJECTS;
                if v == 0 || v as usize > most {
                    p.push(err(
                        "limits.max_list_page",
                        format!(
                            "must be between 1 and {most} (a signed listing holds at most {most} objects)"
                        ),
                    ));
                } else {
                    limits.max_list_page = v;
                }
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
            check!(
                p,
                ranged(
                    "storage_timeout_ms",
                    l.storage_timeout_ms,
                    100,
                    600_000,
                    &mut limits.storage_timeout_ms,
                )
            );
            check!(
                p,
                ranged(
                    "database_timeout_ms",
                    l.database_timeout_ms,
                    100,
                    600_000,
                    &mut limits.database_timeout_ms,
                )
            );
            check!(
                p,
                ranged(
                    "header_read_timeout_ms",
                    l.header_read_timeout_ms,
                    100,
                    600_000,
                    &mut limits.header_read_timeout_ms,
                )
            );
            check!(
                p,
                ranged(
                    "idle_timeout_ms",
                    l.idle_timeout_ms,
                    100,
                    3_600_000,
                    &mut limits.idle_timeout_ms,
                )
            );
            check!(
                p,
                ranged(
                    "min_body_bytes_per_sec",
                    l.min_body_bytes_per_sec,
                    0,
                    1 << 30,
                    &mut limits.min_body_bytes_per_sec,
                )
            );
            check!(
                p,
                ranged(
                    "upload_memory_bytes",
                    l.upload_memory_bytes,
                    32 << 20,
                    1 << 40,
                    &mut limits.upload_memory_bytes,
                )
            );
            check!(
                p,
                ranged(
                    "reconcile_interval_secs",
                    l.reconcile_interval_secs,
                    1,
                    86_400,
                    &mut limits.reconcile_interval_secs,
                )
            );
            check!(
                p,
                ranged(
                    "reservation_grace_secs",
                    l.reservation_grace_secs,
                    1,
                    86_400,
                    &mut limits.reservation_grace_secs,
                )
            );
            check!(
                p,
                ranged(
                    "shutdown_grace_ms",
                    l.shutdown_grace_ms,
                    0,
                    3_600_000,
                    &mut limits.shutdown_grace_ms,
                )
            );
            let mut n = limits.max_connections as u64;
            check!(
                p,
                ranged(
                    "max_connections",
                    l.max_connections.map(|v| v as u64),
                    1,
                    1_000_000,
                    &mut n,
                )
            );
            limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
            let mut n = u64::from(limits.preauth_failure_burst);
            check!(
                p,
                ranged(
                    "preauth_failure_burst",
                    l.preauth_failure_burst.map(u64::from),
                    1,
                    1_000_000,
                    &mut n,
                )
            );
            limits.preauth_failure_burst = u32::try_from(n).unwrap_or(u32::MAX);
            let mut n = u64::from(limits.preauth_failures_per_sec);
            check!(
                p,
                ranged(
                    "preauth_failures_per_sec",
                    l.preauth_failures_per_sec.map(u64::from),
                    1,
                    1_000_000,
                    &mut n,
                )
            );
            limits.preauth_failures_per_sec = u32::try_from(n).unwrap_or(u32::MAX);
        }

        // Keys and buckets that are declared but broken (already reported) still
        // count below, so that their breakage is not reported a second time.
        let declared_roles: Vec<String> = self.keys.iter().map(|k| k.role.clone()).collect();
        let declared_buckets: BTreeSet<String> = self.buckets.keys().cloned().collect();
        let mut keys = Vec::new();
        let mut seen_ids = BTreeSet::new();
        let mut seen_keys: BTreeMap<Vec<u8>, KeyId> = BTreeMap::new();
        for (i, k) in self.keys.into_iter().enumerate() {
            let at = |f: &str| format!("keys[{i}].{f}");
            let Some(key_id) = check!(
                p,
                KeyId::parse(&k.key_id).map_err(|e| err(at("key_id"), e.message()))
            ) else {
                continue;
            };
            if !seen_ids.insert(key_id.clone()) {
                p.push(err(
                    at("key_id"),
                    format!("`{key_id}` is used by two keys; key ids must be unique"),
                ));
                continue;
            }
            let Some(role) = check!(
                p,
                Role::parse(&k.role).map_err(|e| err(at("role"), e.message()))
            ) else {
                continue;
            };
            if role == Role::gatekeeper() {
                p.push(err(
                    at("role"),
                    "gatekeeper keys are not configured here; the gatekeeper's own key is in [key]",
                ));
                continue;
            }
            let Some(raw) = base64_decode(&k.public_key) else {
                p.push(err(
                    at("public_key"),
                    "must be 32 bytes in unpadded base64url",
                ));
                continue;
            };
            let Some(public_key) = check!(
                p,
                PublicKey::from_slice(&raw).map_err(|e| err(at("public_key"), e.message()))
            ) else {
                continue;
            };
            // One key under two ids would count twice towards a threshold.
            if let Some(first) = seen_keys.insert(raw.clone(), key_id.clone()) {
                p.push(err(
                    at("public_key"),
                    format!(
                        "is already configured as key `{first}`; one public key may have only one key id (duplicate_key)"
                    ),
                ));
                continue;
            }
            if let (Some(nb), Some(na)) = (k.not_before, k.not_after)
                && na <= nb
            {
                p.push(err(at("not_after"), "must be after not_before"));
                continue;
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
                p.push(err(
                    format!("thresholds.{op}"),
                    "is not an operation; use GET, HEAD, PUT, LIST or AUDIT",
                ));
                continue;
            }
            if roles.is_empty() {
                p.push(err(
                    format!("thresholds.{op}"),
                    "must require at least one role",
                ));
                continue;
            }
            let mut list = Vec::new();
            for (role, n) in roles {
                let key = format!("thresholds.{op}.{role}");
                let Some(role) = check!(
                    p,
                    Role::parse(&role).map_err(|e| err(key.clone(), e.message()))
                ) else {
                    continue;
                };
                let available = declared_roles
                    .iter()
                    .filter(|r| **r == role.as_str())
                    .count();
                let Some(n) = usize::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1 && *n <= available)
                else {
                    p.push(err(key, format!("must be between 1 and the {available} configured key(s) of role `{role}`")));
                    continue;
                };
                list.push((role, n));
            }
            thresholds.insert(op, list);
        }
        for op in ["GET", "HEAD", "PUT", "LIST"] {
            if !thresholds.contains_key(op) {
                if !declared_roles.iter().any(|r| r == Role::VENDOR) {
                    p.push(err(
                        format!("thresholds.{op}"),
                        "is not set and there is no key of role `vendor` to default to",
                    ));
                    continue;
                }
                thresholds.insert(op.to_owned(), vec![(Role::vendor(), 1)]);
            }
        }

        let mut buckets = BTreeMap::new();
        if declared_buckets.is_empty() {
            p.push(err("buckets", "at least one bucket is required"));
        }
        for (name, b) in self.buckets {
            let at = |f: &str| format!("buckets.{name}.{f}");
            let Some(bucket) = check!(
                p,
                Bucket::parse(&name).map_err(|e| err(format!("buckets.{name}"), e.message()))
            ) else {
                continue;
            };
            if name == AUDIT_BUCKET {
                p.push(err(
                    format!("buckets.{name}"),
                    "is reserved for audit requests",
                ));
                continue;
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
                    let secret = match check!(
                        p,
                        secret(
                            &data_dir,
                            &at("secret_access_key"),
                            b.secret_access_key,
                            b.secret_access_key_env,
                            b.secret_access_key_file
                        )
                    ) {
                        Some(Some(s)) => s,
                        Some(None) => {
                            p.push(err(
                                at("secret_access_key"),
                                "is required for an s3 bucket (or secret_access_key_env, secret_access_key_file)",
                            ));
                            continue;
                        }
                        None => continue,
                    };
                    let Some(endpoint) =
                        check!(p, need(b.endpoint, at("endpoint"), "an s3 bucket"))
                    else {
                        continue;
                    };
                    if !(endpoint.starts_with("https://")
                        || (b.allow_http && endpoint.starts_with("http://")))
                    {
                        p.push(err(
                            at("endpoint"),
                            "must be an https:// URL (http:// only with allow_http = true)",
                        ));
                        continue;
                    }
                    let Some(access_key_id) = check!(
                        p,
                        need(b.access_key_id, at("access_key_id"), "an s3 bucket")
                    ) else {
                        continue;
                    };
                    StorageConfig::S3 {
                        endpoint,
                        region: b.region.unwrap_or_else(|| "us-east-1".to_owned()),
                        s3_bucket: b.s3_bucket.unwrap_or_else(|| name.clone()),
                        access_key_id,
                        secret_access_key: secret,
                        allow_http: b.allow_http,
                    }
                }
                other => {
                    p.push(err(
                        at("store"),
                        format!("`{other}` is not a store; use \"local\" or \"s3\""),
                    ));
                    continue;
                }
            };
            let (Some(allow), Some(deny)) = (
                check!(p, cidrs(&b.allow_ips, &at("allow_ips"))),
                check!(p, cidrs(&b.deny_ips, &at("deny_ips"))),
            ) else {
                continue;
            };
            let Some(encryption) = check!(
                p,
                crate::encryption::EncryptionConfig::from_raw(
                    b.encryption,
                    &data_dir,
                    &name,
                    &at("encryption"),
                )
            ) else {
                continue;
            };
            let ip_rules = IpRules { allow, deny };
            buckets.insert(
                bucket,
                BucketConfig {
                    storage,
                    ip_rules,
                    encryption,
                },
            );
        }

        let network = self.network.unwrap_or(RawNetwork {
            trusted_proxies: Vec::new(),
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
        });
        let allow = check!(p, cidrs(&network.allow_ips, "network.allow_ips"));
        let deny = check!(p, cidrs(&network.deny_ips, "network.deny_ips"));
        let trusted_proxies = check!(
            p,
            cidrs(&network.trusted_proxies, "network.trusted_proxies")
        );

        let mut groups = BTreeMap::new();
        for (name, members) in self.groups {
            let mut set = BTreeSet::new();
            for (i, m) in members.iter().enumerate() {
                if let Some(s) = check!(
                    p,
                    Subject::parse(m).map_err(|e| err(format!("groups.{name}[{i}]"), e.message()))
                ) {
                    set.insert(s);
                }
            }
            groups.insert(name, set);
        }
        let mut rules = Vec::new();
        for (i, r) in self.acl.into_iter().enumerate() {
            let reported = p.len();
            let at = |f: &str| format!("acl[{i}].{f}");
            let effect = match r.effect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => {
                    p.push(err(
                        at("effect"),
                        format!("`{other}` must be \"allow\" or \"deny\""),
                    ));
                    Effect::Deny
                }
            };
            let everyone = r.subjects.iter().any(|s| s == "*");
            let mut subjects = BTreeSet::new();
            for (j, s) in r.subjects.iter().enumerate().filter(|(_, s)| *s != "*") {
                if let Some(s) = check!(
                    p,
                    Subject::parse(s)
                        .map_err(|e| err(format!("acl[{i}].subjects[{j}]"), e.message()))
                ) {
                    subjects.insert(s);
                }
            }
            for (j, g) in r.groups.iter().enumerate() {
                if !groups.contains_key(g) {
                    p.push(err(
                        format!("acl[{i}].groups[{j}]"),
                        format!("group `{g}` is not defined in [groups]"),
                    ));
                }
            }
            if !everyone && r.subjects.is_empty() && r.groups.is_empty() {
                p.push(err(
                    at("subjects"),
                    "a rule needs subjects, groups, or subjects = [\"*\"]",
                ));
            }
            let rule_buckets = if r.buckets.iter().any(|b| b == "*") || r.buckets.is_empty() {
                None
            } else {
                let mut set = BTreeSet::new();
                for (j, b) in r.buckets.iter().enumerate() {
                    let Some(bucket) = check!(
                        p,
                        Bucket::parse(b)
                            .map_err(|e| err(format!("acl[{i}].buckets[{j}]"), e.message()))
                    ) else {
                        continue;
                    };
                    if !declared_buckets.contains(b) {
                        p.push(err(
                            format!("acl[{i}].buckets[{j}]"),
                            format!("bucket `{b}` is not defined in [buckets]"),
                        ));
                    }
                    set.insert(bucket);
                }
                Some(set)
            };
            if !r.prefix.is_empty() {
                check!(
                    p,
                    countersign_core::ListPrefix::parse(&r.prefix)
                        .map_err(|e| err(at("prefix"), e.message()))
                );
            }
            let mut operations = BTreeSet::new();
            for (j, op) in r.operations.iter().enumerate() {
                match Method::parse(op) {
                    Ok(m) => {
                        operations.insert(m);
                    }
                    Err(_) => p.push(err(
                        format!("acl[{i}].operations[{j}]"),
                        format!("`{op}` must be GET, HEAD, PUT or LIST"),
                    )),
                }
            }
            if r.operations.is_empty() {
                p.push(err(at("operations"), "must name at least one operation"));
            }
            if p.len() > reported {
                continue;
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
                p.push(err(
                    format!("cors.origins[{i}]"),
                    format!(
                        "`{o}` must be an origin like https://reports.example.com (scheme and host, no path)"
                    ),
                ));
            }
        }
        let (checkpoint_every, interval_ms, published) = match self.audit {
            Some(a) => (
                a.checkpoint_every,
                a.checkpoint_interval_ms,
                a.published_checkpoints,
            ),
            None => (None, None, None),
        };
        let checkpoint_every = checkpoint_every.unwrap_or(100);
        if checkpoint_every == 0 {
            p.push(err("audit.checkpoint_every", "must be at least 1"));
        }
        let interval_ms = interval_ms.unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_MS);
        if !(10..=3_600_000).contains(&interval_ms) {
            p.push(err(
                "audit.checkpoint_interval_ms",
                "must be between 10 (ms) and 3600000 (one hour)",
            ));
        }
        let published_checkpoints = match published {
            Some(path) => resolve(&data_dir, path),
            None => data_dir.join(PUBLISHED_CHECKPOINTS_FILE),
        };
        let mut log = self.log.unwrap_or(RawLog {
            witnesses: Vec::new(),
            quorum: None,
            witness_timeout_ms: None,
            publish_bucket: None,
        });
        let publish_bucket = log
            .publish_bucket
            .take()
            .and_then(|b| b.validate(&data_dir, p));
        let witnesses = log.validate(p);
        let console = self.console.and_then(|c| c.validate(&data_dir, p));
        let webhooks: Vec<_> = self
            .webhooks
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| w.validate(i, &data_dir, p))
            .collect();
        if !p.is_empty() {
            return None;
        }
        Some(Config {
            gatekeeper_id: gatekeeper_id?,
            listen: listen?,
            admin_listen: admin_listen?,
            data_dir,
            key_path,
            key_id: key_id?,
            database_url,
            limits,
            keys,
            thresholds,
            buckets,
            ip_rules: IpRules {
                allow: allow?,
                deny: deny?,
            },
            trusted_proxies: trusted_proxies?,
            acl: Acl { groups, rules },
            tls,
            cors_origins,
            checkpoint_every,
            checkpoint_interval: std::time::Duration::from_millis(interval_ms),
            published_checkpoints,
            witnesses,
            publish_bucket,
            console,
            webhooks,
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
    match std::fs::File::open(path) {
        Ok(file) => {
            let text = read_private(file, &key, 1024)?;
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

/// Reads at most `limit` bytes of a secret file, refusing it, on Unix, if group or
/// others may read it (like the vendor SDK's key loader; checked on the opened file,
/// so a swap after the check is harmless). The check is repeated rather than shared:
/// the two crates share only the core, which does no I/O.
fn read_private(file: std::fs::File, key: &str, limit: u64) -> Result<String, ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file
            .metadata()
            .map_err(|e| err(key, format!("cannot read the file's mode: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(
                key,
                format!(
                    "the secret file is readable by group or others (mode {:03o}); run `chmod 600` on it",
                    mode & 0o777
                ),
            ));
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, limit), &mut text)
        .map_err(|e| err(key, format!("cannot read the file: {e}")))?;
    Ok(text)
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
