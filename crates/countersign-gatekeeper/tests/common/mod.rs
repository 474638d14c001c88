//! Test harness shared by the integration tests: backends (SQLite + local directory,
//! PostgreSQL + S3), a configured gatekeeper, request signing, and a view of the
//! bucket taken straight from the store (never through the gatekeeper).

#![allow(dead_code)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request as HttpRequest, Response};
use countersign_core::audit::AuditEntry;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, parse_b64};
use countersign_core::{
    BodyDigest, Bucket, ContentType, GatekeeperId, KeyId, Nonce, ObjectKey, Operation, Request,
    Role, SignatureEntry, Subject,
};
use countersign_gatekeeper::config::{Config, StorageConfig};
use countersign_gatekeeper::http::{AppState, PeerAddr, app};
use countersign_gatekeeper::ledger::{CheckpointSigner, Ledger};
use countersign_gatekeeper::server::build_state;
use futures::StreamExt as _;
use object_store::ObjectStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt as _;

pub const GK: &str = "gk.test";
pub const BUCKET: &str = "reports";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    countersign_core::text::hex(&b)
}

/// Which database and object store a test runs against.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Embedded defaults: SQLite and a local directory.
    SqliteLocal,
    /// PostgreSQL and an S3-compatible server, from the environment.
    PostgresS3 { pg_url: String, s3_endpoint: String },
}

impl Backend {
    /// The real backends from `scripts/services.sh`'s environment. Missing variables
    /// fail the test when `CI` or `COUNTERSIGN_REQUIRE_SERVICES=1` is set, and skip it
    /// (with a message) otherwise.
    pub fn from_env() -> Option<Self> {
        let pg = std::env::var("COUNTERSIGN_TEST_PG_URL").ok();
        let s3 = std::env::var("COUNTERSIGN_TEST_S3_ENDPOINT").ok();
        match (pg, s3) {
            (Some(pg_url), Some(s3_endpoint)) => Some(Self::PostgresS3 {
                pg_url,
                s3_endpoint,
            }),
            _ => {
                let required = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
                    || std::env::var("COUNTERSIGN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "COUNTERSIGN_TEST_PG_URL and COUNTERSIGN_TEST_S3_ENDPOINT must be set (run under scripts/services.sh)"
                );
                eprintln!(
                    "SKIPPED: PostgreSQL/S3 backend test; run under scripts/services.sh to include it"
                );
                None
            }
        }
    }
}

pub struct Keys {
    pub v1: SigningKey,
    pub v2: SigningKey,
    pub old: SigningKey,
    pub admin: SigningKey,
    pub stranger: SigningKey,
}

pub fn keys() -> Keys {
    Keys {
        v1: SigningKey::from_bytes(&[11; 32]),
        v2: SigningKey::from_bytes(&[12; 32]),
        old: SigningKey::from_bytes(&[13; 32]),
        admin: SigningKey::from_bytes(&[14; 32]),
        stranger: SigningKey::from_bytes(&[15; 32]),
    }
}

fn pk(k: &SigningKey) -> String {
    b64(&k.verifying_key().to_bytes())
}

/// Where this harness's bucket lives.
#[derive(Clone)]
pub enum BucketView {
    Dir(PathBuf),
    S3(Arc<dyn ObjectStore>),
}

pub struct Harness {
    pub state: AppState,
    pub config: Config,
    pub bucket: BucketView,
    pub dir: PathBuf,
    pub keys: Keys,
    /// Removes `dir` when the harness is dropped.
    _tmp: tempfile::TempDir,
}

/// A fresh directory under the system temp dir, removed when the guard is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("countersign-gk-test-")
        .tempdir()
        .unwrap()
}

/// Sends raw HTTP/1.1 to the S3 server to create a bucket (object_store cannot).
pub async fn create_s3_bucket(endpoint: &str, name: &str) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "creating bucket {name} failed: {text}"
    );
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn create_pg_database(url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("gk_{}", random_hex(6));
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _db) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// The bucket and database parts of the test configuration for a backend.
pub async fn backend_config(
    backend: &Backend,
    dir: &std::path::Path,
) -> (String, String, BucketView) {
    match backend {
        Backend::SqliteLocal => {
            let path = dir.join("bucket");
            (
                format!(
                    "[buckets.{BUCKET}]\nstore = \"local\"\npath = \"{}\"\ndeny_ips = [\"127.0.0.3/32\"]\n",
                    path.display()
                ),
                String::new(),
                BucketView::Dir(path),
            )
        }
        Backend::PostgresS3 {
            pg_url,
            s3_endpoint,
        } => {
            let s3_bucket = format!("gk-{}", random_hex(6));
            create_s3_bucket(s3_endpoint, &s3_bucket).await;
            let db = create_pg_database(pg_url).await;
            let store = countersign_gatekeeper::storage::build_object_store(
                &StorageConfig::S3 {
                    endpoint: s3_endpoint.clone(),
                    region: "us-east-1".into(),
                    s3_bucket: s3_bucket.clone(),
                    access_key_id: "testing".into(),
                    secret_access_key: countersign_gatekeeper::config::Secret::new("testing"),
                    allow_http: true,
                },
                std::time::Duration::from_secs(10),
            )
            .unwrap();
            (
                format!(
                    "[buckets.{BUCKET}]\nstore = \"s3\"\nendpoint = \"{s3_endpoint}\"\nregion = \"us-east-1\"\ns3_bucket = \"{s3_bucket}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\nallow_http = true\ndeny_ips = [\"127.0.0.3/32\"]\n"
                ),
                format!("[database]\nurl = \"{db}\"\n"),
                BucketView::S3(store),
            )
        }
    }
}

pub fn config_text(bucket: &str, database: &str, extra: &str) -> String {
    let k = keys();
    format!(
        r#"
gatekeeper_id = "{GK}"

{database}

[limits]
max_object_bytes = 20000000
max_header_bytes = 8192
preauth_failures_per_sec = 1

[[keys]]
key_id = "v1"
role = "vendor"
public_key = "{v1}"

[[keys]]
key_id = "v2"
role = "vendor"
public_key = "{v2}"

[[keys]]
key_id = "old"
role = "vendor"
public_key = "{old}"
not_before = 1
not_after = 1000

[[keys]]
key_id = "admin1"
role = "customer-admin"
public_key = "{admin}"

[thresholds]
GET = {{ vendor = 1 }}
HEAD = {{ vendor = 1 }}
LIST = {{ vendor = 1 }}
PUT = {{ vendor = 2 }}
AUDIT = {{ customer-admin = 1 }}

{bucket}

[network]
trusted_proxies = ["127.0.0.9/32"]
deny_ips = ["127.0.0.2/32"]

[groups]
staff = ["user-staff"]
radiology = ["user-1", "user-staff"]
on-leave = []

[[acl]]
effect = "allow"
subjects = ["user-1"]
buckets = ["{BUCKET}"]
operations = ["GET", "HEAD", "PUT", "LIST"]

[[acl]]
effect = "allow"
groups = ["staff"]
buckets = ["{BUCKET}"]
prefix = "public/"
operations = ["GET", "LIST"]

[[acl]]
effect = "deny"
subjects = ["*"]
prefix = "secret/"
operations = ["GET", "HEAD", "PUT", "LIST"]

[cors]
origins = ["https://reports.example.com"]

[audit]
checkpoint_every = 5

{extra}
"#,
        v1 = pk(&k.v1),
        v2 = pk(&k.v2),
        old = pk(&k.old),
        admin = pk(&k.admin),
    )
}

impl Harness {
    pub async fn new(backend: &Backend) -> Self {
        Self::with_extra(backend, "").await
    }

    pub async fn with_extra(backend: &Backend, extra: &str) -> Self {
        let tmp = temp_dir();
        let dir = tmp.path().to_owned();
        let (bucket, database, view) = backend_config(backend, &dir).await;
        let text = config_text(&bucket, &database, extra);
        let config = Config::from_toml(&text, Some(&dir)).unwrap();
        let (state, _) = build_state(config.clone()).await.unwrap();
        Self {
            state,
            config,
            bucket: view,
            dir,
            keys: keys(),
            _tmp: tmp,
        }
    }

    /// A second gatekeeper instance on the same database and bucket.
    pub async fn second_instance(&self) -> AppState {
        build_state(self.config.clone()).await.unwrap().0
    }

    /// A separate connection to the database, to read what the gatekeeper wrote.
    pub async fn ledger(&self) -> Ledger {
        let signer = CheckpointSigner {
            gatekeeper: GatekeeperId::parse(GK).unwrap(),
            key: SigningKey::from_bytes(&[99; 32]),
            key_id: KeyId::parse("reader").unwrap(),
        };
        Ledger::connect(
            self.config.database_url.expose(),
            signer,
            1_000_000,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    pub async fn all_entries(&self) -> Vec<AuditEntry> {
        let l = self.ledger().await;
        let e = l.entries(0, 100_000).await.unwrap();
        l.close().await;
        e
    }

    pub async fn last_entry(&self) -> AuditEntry {
        self.all_entries().await.pop().expect("no audit entry")
    }

    /// Every path in the bucket, read from the store itself.
    pub async fn bucket_contents(&self) -> Vec<String> {
        let mut out = match &self.bucket {
            BucketView::Dir(d) => {
                let mut v = Vec::new();
                walk(d, d, &mut v);
                v
            }
            BucketView::S3(store) => {
                let mut v = Vec::new();
                let mut s = store.list(None);
                while let Some(m) = s.next().await {
                    v.push(m.unwrap().location.to_string());
                }
                v
            }
        };
        out.sort();
        out
    }

    pub async fn send(&self, req: HttpRequest<Body>) -> Response<Body> {
        self.send_from(req, "127.0.0.1").await
    }

    pub async fn send_from(&self, req: HttpRequest<Body>, ip: &str) -> Response<Body> {
        send_to(&self.state, req, ip).await
    }
}

pub async fn send_to(state: &AppState, mut req: HttpRequest<Body>, ip: &str) -> Response<Body> {
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerAddr(addr)));
    app(state.clone()).oneshot(req).await.unwrap()
}

fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// A request builder with sensible defaults that tests override.
pub struct Req {
    pub audience: String,
    pub bucket: String,
    pub op: Operation,
    pub subject: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

pub fn get(key: &str) -> Req {
    Req::new(Operation::Get {
        key: ObjectKey::parse(key).unwrap(),
        range: None,
    })
}
pub fn head(key: &str) -> Req {
    Req::new(Operation::Head {
        key: ObjectKey::parse(key).unwrap(),
    })
}
pub fn list(prefix: &str) -> Req {
    Req::new(Operation::List {
        prefix: countersign_core::ListPrefix::parse(prefix).unwrap(),
    })
}
pub fn put(key: &str, body: &[u8]) -> Req {
    Req::new(Operation::Put {
        key: ObjectKey::parse(key).unwrap(),
        content_type: ContentType::parse("application/pdf").unwrap(),
        body: BodyDigest::of(body),
    })
}

impl Req {
    pub fn new(op: Operation) -> Self {
        let t = now();
        Self {
            audience: GK.into(),
            bucket: BUCKET.into(),
            op,
            subject: "user-1".into(),
            issued_at: t - 5,
            expires_at: t + 120,
        }
    }

    pub fn request(&self) -> Request {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        Request::from_parts(
            GatekeeperId::parse(&self.audience).unwrap(),
            Bucket::parse(&self.bucket).unwrap(),
            self.op.clone(),
            Subject::parse(&self.subject).unwrap(),
            self.issued_at,
            self.expires_at,
            Nonce(nonce),
        )
        .unwrap()
    }
}

pub fn sign(key: &SigningKey, role: Role, key_id: &str, canonical: &[u8]) -> SignatureEntry {
    SignatureEntry::sign(key, role, KeyId::parse(key_id).unwrap(), canonical)
}

/// The default vendor signatures for a request (two for PUT, one otherwise).
pub fn vendor_sigs(canonical: &[u8], is_put: bool) -> String {
    let k = keys();
    let mut sigs = vec![sign(&k.v1, Role::vendor(), "v1", canonical)];
    if is_put {
        sigs.push(sign(&k.v2, Role::vendor(), "v2", canonical));
    }
    encode_list(&sigs)
}

pub fn url_of(request: &Request) -> String {
    match request.operation() {
        Operation::List { prefix } => format!(
            "/v1/objects/{}?prefix={}",
            request.bucket(),
            countersign_core::names::percent_encode(prefix.as_str())
        ),
        other => format!(
            "/v1/objects/{}/{}",
            request.bucket(),
            other.object_key().unwrap().to_url_path()
        ),
    }
}

pub fn http_method(request: &Request) -> &'static str {
    match request.method() {
        countersign_core::Method::Get | countersign_core::Method::List => "GET",
        countersign_core::Method::Head => "HEAD",
        countersign_core::Method::Put => "PUT",
    }
}

/// A fully signed HTTP request for `request` with `body`.
pub fn signed(request: &Request, body: Vec<u8>) -> HttpRequest<Body> {
    let canonical = request.encode();
    let sigs = vendor_sigs(
        &canonical,
        request.method() == countersign_core::Method::Put,
    );
    raw(
        http_method(request),
        &url_of(request),
        &b64(&canonical),
        &sigs,
        body,
    )
}

pub fn raw(
    method: &str,
    url: &str,
    request_header: &str,
    sig_header: &str,
    body: Vec<u8>,
) -> HttpRequest<Body> {
    HttpRequest::builder()
        .method(method)
        .uri(url)
        .header("countersign-request", request_header)
        .header("countersign-signature", sig_header)
        .body(Body::from(body))
        .unwrap()
}

pub async fn body_bytes(r: Response<Body>) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

/// The error code of a JSON error response.
pub async fn error_code(r: Response<Body>) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message in {v}"
    );
    v["error"]["code"].as_str().unwrap().to_owned()
}

pub fn header(r: &Response<Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

pub fn decode_header(r: &Response<Body>, name: &str) -> Vec<u8> {
    parse_b64(&header(r, name).unwrap(), name).unwrap()
}

pub fn header_sigs(r: &Response<Body>, name: &str) -> Vec<SignatureEntry> {
    parse_list(&header(r, name).unwrap()).unwrap()
}
