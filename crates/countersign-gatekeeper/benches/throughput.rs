//! Gatekeeper vs direct S3, side by side against the same S3 server:
//!
//! - small-object GET: requests/s and p50/p99 latency through the gatekeeper (audit
//!   store PostgreSQL and SQLite) and straight to S3 with `object_store`, same client
//!   concurrency, in interleaved rounds so machine noise hits every target;
//! - large-object PUT and GET throughput through the gatekeeper (its bucket encrypted
//!   at rest, the default), through a second gatekeeper whose bucket is not
//!   encrypted, and direct, with the encrypting gatekeeper's peak RSS (`VmHWM`) per
//!   phase and the stored size overhead of encryption.
//! - large-object GET from a local-directory store (encrypted and not) next to
//!   nginx serving the same bytes from a file over HTTP on 127.0.0.1 (Debian's
//!   `nginx`, `sendfile on`), and reading that file with a 1 MiB buffer.
//! - the CPU time each gatekeeper process spends per MiB it moves (`utime + stime`).
//!
//! The gatekeeper runs as a separate process (the built binary with `--config`, or
//! the binary named by `COUNTERSIGN_BENCH_GATEKEEPER_BIN`, to measure another build
//! back to back with the same benchmark).
//!
//! ```text
//! scripts/services.sh cargo bench -p countersign-gatekeeper --bench throughput
//! ```
//!
//! Environment: `COUNTERSIGN_TEST_S3_ENDPOINT` (required), `COUNTERSIGN_TEST_PG_URL`
//! (optional; without it only SQLite is measured), `COUNTERSIGN_BENCH_LARGE_MIB`
//! (object sizes in MiB, default `64,1024`), `COUNTERSIGN_BENCH_CONCURRENCY` (client
//! concurrencies, default `1,8`),
//! `COUNTERSIGN_BENCH_LARGE_RUNS` (transfers per size and side, default 5 up to
//! 256 MiB, else 3), `COUNTERSIGN_BENCH_ROUNDS` (default 6), `COUNTERSIGN_BENCH_ROUND_REQUESTS`
//! (default 200), `COUNTERSIGN_BENCH_STORES` (which large-object phases run: `s3`,
//! `local`, default both), `COUNTERSIGN_BENCH_NGINX` (default: `nginx` on `PATH` or in
//! `/usr/sbin`; `none` leaves the nginx column out).

// A benchmark is a developer tool, not a server: a panic is a failed run with a
// message, so unwrap/expect/panic/indexing are fine here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The integration tests' harness: clock, random names, bucket and database creation.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "load/mod.rs"]
mod load;
// Each benchmark uses a part of the shared process helpers.
#[allow(dead_code)]
#[path = "process/mod.rs"]
mod process;

use bytes::Bytes;
use common::{create_pg_database, create_s3_bucket, now, random_hex};
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::signature::encode_list;
use countersign_core::text::b64;
use countersign_core::{
    BodyDigest, Bucket, ContentType, GatekeeperId, KeyId, Nonce, ObjectKey, Operation, Request,
    Role, SignatureEntry, Subject,
};
use countersign_gatekeeper::config::StorageConfig;
use countersign_gatekeeper::storage::build_object_store;
use futures::StreamExt as _;
use load::{env_num, random_bytes, round};
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};
use process::{NginxConfig, Server, find_on_path, process_cost, reset_peak_rss, status_kib};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GK_ID: &str = "gk.bench";
const BUCKET: &str = "bench";
const SMALL_BYTES: usize = 4096;
const BLOCK_BYTES: usize = 1024 * 1024;
/// Same part size and parts in flight as the gatekeeper's own uploads.
const PART_BYTES: usize = countersign_gatekeeper::storage::PART_BYTES;
const PARTS_IN_FLIGHT: usize = countersign_gatekeeper::storage::PARTS_IN_FLIGHT;
const MIB: f64 = 1024.0 * 1024.0;

fn vendor_key() -> SigningKey {
    SigningKey::from_bytes(&[21; 32])
}

/// The `Countersign-Request` and `Countersign-Signature` header values.
fn sign(op: Operation) -> (String, String) {
    let t = now();
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let request = Request::from_parts(
        GatekeeperId::parse(GK_ID).unwrap(),
        Bucket::parse(BUCKET).unwrap(),
        op,
        Subject::parse("bench-client").unwrap(),
        t - 5,
        t + 600,
        Nonce(nonce),
    )
    .unwrap();
    let canonical = request.encode();
    let sig = SignatureEntry::sign(
        &vendor_key(),
        Role::vendor(),
        KeyId::parse("v1").unwrap(),
        &canonical,
    );
    (b64(&canonical), encode_list(&[sig]))
}

fn get_op(key: &ObjectKey) -> Operation {
    Operation::Get {
        key: key.clone(),
        range: None,
    }
}

fn put_op(key: &ObjectKey, digest: BodyDigest) -> Operation {
    Operation::Put {
        key: key.clone(),
        content_type: ContentType::parse("application/octet-stream").unwrap(),
        body: digest,
    }
}

/// A gatekeeper process on 127.0.0.1, killed when dropped.
struct Gatekeeper {
    label: String,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Gatekeeper {
    /// A gatekeeper on the S3 bucket `s3 = (endpoint, bucket)`, or with `None` on a
    /// local directory in its data directory.
    fn start(
        label: &str,
        s3: Option<(&str, &str)>,
        database: Option<&str>,
        encrypted: bool,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("countersign-bench-")
            .tempdir()
            .unwrap();
        let storage = match s3 {
            Some((s3_endpoint, s3_bucket)) => format!(
                "store = \"s3\"\nendpoint = \"{s3_endpoint}\"\nregion = \"us-east-1\"\ns3_bucket = \"{s3_bucket}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\nallow_http = true"
            ),
            None => format!(
                "store = \"local\"\npath = \"{}\"",
                dir.path().join("bucket").display()
            ),
        };
        let database = database
            .map(|url| format!("[database]\nurl = \"{url}\"\n"))
            .unwrap_or_default();
        let config = format!(
            r#"gatekeeper_id = "{GK_ID}"

{database}
[limits]
max_object_bytes = 17179869184
# moto completes a 1 GiB multipart upload in more than the default 5 s.
storage_timeout_ms = 120000

[[keys]]
key_id = "v1"
role = "vendor"
public_key = "{pk}"

[thresholds]
GET = {{ vendor = 1 }}
HEAD = {{ vendor = 1 }}
LIST = {{ vendor = 1 }}
PUT = {{ vendor = 1 }}

[buckets.{BUCKET}]
{storage}
{encryption}

[[acl]]
effect = "allow"
subjects = ["*"]
operations = ["GET", "HEAD", "PUT", "LIST"]
"#,
            pk = b64(&vendor_key().verifying_key().to_bytes()),
            encryption = if encrypted {
                ""
            } else {
                "encryption = { enabled = false }"
            },
        );
        let path = dir.path().join("gatekeeper.toml");
        std::fs::write(&path, config).unwrap();
        let binary = std::env::var("COUNTERSIGN_BENCH_GATEKEEPER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_countersign-gatekeeper").to_owned());
        Self {
            label: label.to_owned(),
            server: Server::gatekeeper(&binary, &path, dir.path(), &format!("gatekeeper {label}")),
            _dir: dir,
        }
    }

    fn url(&self, key: &ObjectKey) -> String {
        format!(
            "{}/v1/objects/{BUCKET}/{}",
            self.server.base,
            key.to_url_path()
        )
    }

    /// A `/proc/<pid>/status` field in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.server.child.id(), field)
    }

    /// CPU time the process has used (user + system), from `/proc/<pid>/stat`.
    fn cpu_time(&self) -> Duration {
        process_cost(self.server.child.id()).cpu_time()
    }

    /// Resets the peak RSS to the current RSS.
    fn reset_peak(&self) -> bool {
        reset_peak_rss(self.server.child.id())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Gatekeeper(usize),
}

#[derive(Default)]
struct Samples {
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Samples {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
    fn percentile_ms(&self, p: usize) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        let i = (v.len() * p / 100).min(v.len().saturating_sub(1));
        v[i].as_secs_f64() * 1000.0
    }
}

async fn small_round(
    target: Target,
    n: usize,
    concurrency: usize,
    store: &Arc<dyn ObjectStore>,
    gks: &[Gatekeeper],
    client: &reqwest::Client,
    keys: &[ObjectKey],
) -> (Duration, Vec<Duration>) {
    match target {
        Target::Direct => {
            let store = Arc::clone(store);
            let path = object_path(&keys[0]);
            round(n, concurrency, move |_| {
                let store = Arc::clone(&store);
                let path = path.clone();
                async move {
                    let body = store.get(&path).await.unwrap().bytes().await.unwrap();
                    assert_eq!(body.len(), SMALL_BYTES);
                }
            })
            .await
        }
        Target::Gatekeeper(g) => {
            let key = &keys[g];
            // Signing is the client's work and happens before the clock starts.
            let signed: Arc<Vec<(String, String)>> =
                Arc::new((0..n).map(|_| sign(get_op(key))).collect());
            let url = gks[g].url(key);
            let client = client.clone();
            round(n, concurrency, move |i| {
                let (request, signature) = signed[i].clone();
                let fut = client
                    .get(&url)
                    .header("countersign-request", request)
                    .header("countersign-signature", signature)
                    .send();
                async move {
                    let r = fut.await.unwrap();
                    assert_eq!(r.status(), 200);
                    assert_eq!(r.bytes().await.unwrap().len(), SMALL_BYTES);
                }
            })
            .await
        }
    }
}

/// A large body: one random 1 MiB block repeated (no copies on the client side).
struct LargeBody {
    block: Bytes,
    blocks: usize,
    digest: BodyDigest,
}

impl LargeBody {
    fn new(mib: usize) -> Self {
        let block = Bytes::from(random_bytes(BLOCK_BYTES));
        let mut h = Sha256::new();
        for _ in 0..mib {
            h.update(&block);
        }
        Self {
            block,
            blocks: mib,
            digest: BodyDigest {
                sha256: h.finalize().into(),
                length: (mib * BLOCK_BYTES) as u64,
            },
        }
    }
}

async fn put_direct(store: &Arc<dyn ObjectStore>, key: &ObjectKey, body: &LargeBody) -> Duration {
    let t = Instant::now();
    let upload = store.put_multipart(&object_path(key)).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    for _ in 0..body.blocks {
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await.unwrap();
        writer.put(body.block.clone());
    }
    writer.finish().await.unwrap();
    t.elapsed()
}

async fn put_gk(
    client: &reqwest::Client,
    gk: &Gatekeeper,
    key: &ObjectKey,
    body: &LargeBody,
) -> Duration {
    let (request, signature) = sign(put_op(key, body.digest));
    let block = body.block.clone();
    let stream = futures::stream::iter(
        (0..body.blocks).map(move |_| Ok::<Bytes, std::io::Error>(block.clone())),
    );
    let t = Instant::now();
    let r = client
        .put(gk.url(key))
        .header("countersign-request", request)
        .header("countersign-signature", signature)
        .header("content-length", body.digest.length)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "gatekeeper PUT: {status} {text}");
    t.elapsed()
}

async fn get_direct(store: &Arc<dyn ObjectStore>, key: &ObjectKey, length: u64) -> Duration {
    let t = Instant::now();
    let mut s = store.get(&object_path(key)).await.unwrap().into_stream();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        n += chunk.unwrap().len() as u64;
    }
    assert_eq!(n, length);
    t.elapsed()
}

async fn get_gk(
    client: &reqwest::Client,
    gk: &Gatekeeper,
    key: &ObjectKey,
    length: u64,
) -> Duration {
    let (request, signature) = sign(get_op(key));
    let r = client
        .get(gk.url(key))
        .header("countersign-request", request)
        .header("countersign-signature", signature);
    get_url(r, length).await
}

/// Sends a GET and reads its body to the end; the time from sending to the last byte.
async fn get_url(r: reqwest::RequestBuilder, length: u64) -> Duration {
    let t = Instant::now();
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        n += chunk.unwrap().len() as u64;
    }
    assert_eq!(n, length);
    t.elapsed()
}

/// nginx (`COUNTERSIGN_BENCH_NGINX`, else `nginx` on `PATH` or in `/usr/sbin`), or
/// `None` if it is set to `none`.
fn nginx_binary() -> Option<String> {
    match std::env::var("COUNTERSIGN_BENCH_NGINX") {
        Ok(v) if v == "none" => None,
        Ok(v) => Some(v),
        Err(_) => Some(find_on_path("nginx").expect(
            "no nginx found: install it (apt-get install nginx), or set COUNTERSIGN_BENCH_NGINX=none",
        )),
    }
}

/// nginx, one process and worker, serving the files of `root` the way a user would
/// serve a static file (`sendfile on`, as `vs_nginx` runs it), no access log; its
/// config and logs in a directory of its own.
fn start_nginx(binary: &str, root: &std::path::Path) -> (Server, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("countersign-bench-nginx-")
        .tempdir()
        .unwrap();
    let config = NginxConfig {
        access_log: false,
        worker_connections: 64,
        keepalive_requests: None,
        webdav_put: false,
    };
    let server = Server::nginx(binary, dir.path(), root, &config).unwrap_or_else(|e| panic!("{e}"));
    (server, dir)
}

/// Reads a file to its end with a 1 MiB buffer (the local store's direct baseline).
async fn read_file(path: &std::path::Path, length: u64) -> Duration {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let t = Instant::now();
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0; BLOCK_BYTES];
        let mut n = 0u64;
        loop {
            match f.read(&mut buf).unwrap() {
                0 => break,
                k => n += k as u64,
            }
        }
        assert_eq!(n, length);
        t.elapsed()
    })
    .await
    .unwrap()
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

#[derive(Default)]
struct LargeRow {
    direct: Vec<Duration>,
    /// Through the gatekeeper whose bucket is not encrypted.
    plain: Vec<Duration>,
    /// Through the gatekeeper whose bucket is encrypted.
    gk: Vec<Duration>,
    peak_kib: u64,
    before_kib: u64,
    /// The encrypted object's stored size (PUT rows).
    stored_bytes: u64,
    /// CPU time of the unencrypted and the encrypted gatekeeper process over all
    /// their transfers.
    cpu_plain: Duration,
    cpu_gk: Duration,
    /// nginx serving the same bytes from a file (local GET rows).
    nginx: Vec<Duration>,
}

impl LargeRow {
    /// Median throughput of each side: direct, unencrypted, encrypted.
    fn rates(&self, bytes: u64) -> (f64, f64, f64) {
        let med = |v: &[Duration]| {
            let mut v: Vec<f64> = v.iter().map(|d| mib_per_s(bytes, *d)).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        (med(&self.direct), med(&self.plain), med(&self.gk))
    }

    /// CPU milliseconds per MiB moved: unencrypted, encrypted.
    fn cpu_ms_per_mib(&self, bytes: u64) -> (f64, f64) {
        let per = |cpu: Duration, n: usize| {
            cpu.as_secs_f64() * 1000.0 / (bytes as f64 / MIB * n.max(1) as f64)
        };
        (
            per(self.cpu_plain, self.plain.len()),
            per(self.cpu_gk, self.gk.len()),
        )
    }
}

/// A new gatekeeper process with a bucket (and, with PostgreSQL, a database) of its
/// own, and a direct client of that bucket.
async fn fresh_gatekeeper(
    label: &str,
    s3_endpoint: &str,
    pg_url: Option<&str>,
    encrypted: bool,
) -> (Gatekeeper, Arc<dyn ObjectStore>) {
    let bucket = format!("gk-bench-{}-{label}", random_hex(6));
    create_s3_bucket(s3_endpoint, &bucket).await;
    let db = match pg_url {
        Some(pg) => Some(create_pg_database(pg).await),
        None => None,
    };
    let gk = Gatekeeper::start(
        label,
        Some((s3_endpoint, &bucket)),
        db.as_deref(),
        encrypted,
    );
    (gk, s3_store(s3_endpoint, &bucket))
}

fn s3_store(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    build_object_store(
        &StorageConfig::S3 {
            endpoint: endpoint.to_owned(),
            region: "us-east-1".into(),
            s3_bucket: bucket.to_owned(),
            access_key_id: "testing".into(),
            secret_access_key: countersign_gatekeeper::config::Secret::new("testing"),
            allow_http: true,
        },
        Duration::from_secs(60),
    )
    .unwrap()
}

/// Where the direct-S3 baseline stores an object (the gatekeeper uses opaque names).
fn object_path(key: &ObjectKey) -> object_store::path::Path {
    object_store::path::Path::from_iter(key.segments())
}

fn main() {
    let Ok(s3_endpoint) = std::env::var("COUNTERSIGN_TEST_S3_ENDPOINT") else {
        eprintln!(
            "error: COUNTERSIGN_TEST_S3_ENDPOINT is not set. Run the benchmark under the test services:\n  scripts/services.sh cargo bench -p countersign-gatekeeper --bench throughput"
        );
        std::process::exit(2);
    };
    let pg_url = std::env::var("COUNTERSIGN_TEST_PG_URL").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&s3_endpoint, pg_url.as_deref()));
}

async fn run(s3_endpoint: &str, pg_url: Option<&str>) {
    let concurrencies: Vec<usize> = std::env::var("COUNTERSIGN_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("COUNTERSIGN_BENCH_CONCURRENCY: client concurrencies, comma-separated")
        })
        .collect();
    let rounds = env_num("COUNTERSIGN_BENCH_ROUNDS", 6);
    let per_round = env_num("COUNTERSIGN_BENCH_ROUND_REQUESTS", 200);
    let large_mib: Vec<usize> = std::env::var("COUNTERSIGN_BENCH_LARGE_MIB")
        .unwrap_or_else(|_| "64,1024".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("COUNTERSIGN_BENCH_LARGE_MIB: sizes in MiB, comma-separated")
        })
        .collect();
    let stores = std::env::var("COUNTERSIGN_BENCH_STORES").unwrap_or_else(|_| "s3,local".into());
    let stores: Vec<&str> = stores.split(',').map(str::trim).collect();
    let nginx_bin = if stores.contains(&"local") {
        nginx_binary()
    } else {
        None
    };

    // One S3 bucket per side: a gatekeeper treats every file in its bucket that its
    // own index does not know as an orphan of a crashed upload and removes it, so two
    // gatekeepers with separate databases must not share a bucket.
    let run_id = random_hex(6);
    let direct_bucket = format!("gk-bench-{run_id}-direct");
    create_s3_bucket(s3_endpoint, &direct_bucket).await;
    let store = s3_store(s3_endpoint, &direct_bucket);

    // One gatekeeper per audit store, each with its own bucket on the same S3 server.
    let mut gks = Vec::new();
    if let Some(pg) = pg_url {
        let db = create_pg_database(pg).await;
        let bucket = format!("gk-bench-{run_id}-pg");
        create_s3_bucket(s3_endpoint, &bucket).await;
        gks.push(Gatekeeper::start(
            "PostgreSQL",
            Some((s3_endpoint, &bucket)),
            Some(&db),
            true,
        ));
    } else {
        eprintln!(
            "note: COUNTERSIGN_TEST_PG_URL is not set; measuring the SQLite audit store only"
        );
    }
    let bucket = format!("gk-bench-{run_id}-sqlite");
    create_s3_bucket(s3_endpoint, &bucket).await;
    gks.push(Gatekeeper::start(
        "SQLite",
        Some((s3_endpoint, &bucket)),
        None,
        true,
    ));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // --- small-object GET -------------------------------------------------------
    // Each gatekeeper indexes its own objects (its own database): one object each,
    // stored through it; the direct client reads a copy of the first one.
    let small = random_bytes(SMALL_BYTES);
    let mut small_keys = Vec::new();
    for gk in &gks {
        let key = ObjectKey::parse(&format!("small/{}", random_hex(4))).unwrap();
        let (request, signature) = sign(put_op(&key, BodyDigest::of(&small)));
        let r = client
            .put(gk.url(&key))
            .header("countersign-request", request)
            .header("countersign-signature", signature)
            .body(small.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "small PUT: {}", r.status());
        small_keys.push(key);
    }
    // The gatekeeper stores bytes under opaque names: the direct client reads its own
    // copy, stored under the key itself.
    store
        .put(&object_path(&small_keys[0]), small.clone().into())
        .await
        .unwrap();
    let mut targets = vec![Target::Direct];
    targets.extend((0..gks.len()).map(Target::Gatekeeper));
    let mut small_results = Vec::new();
    for &concurrency in &concurrencies {
        let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
        eprintln!(
            "small-object GET: {} targets, {rounds} rounds x {per_round} requests, concurrency {concurrency}",
            targets.len()
        );
        for &t in &targets {
            small_round(t, 50, concurrency, &store, &gks, &client, &small_keys).await; // warm-up
        }
        for r in 0..rounds {
            // Rotate the order so no target always runs first or last.
            for j in 0..targets.len() {
                let i = (j + r) % targets.len();
                let (wall, lat) = small_round(
                    targets[i],
                    per_round,
                    concurrency,
                    &store,
                    &gks,
                    &client,
                    &small_keys,
                )
                .await;
                samples[i].wall += wall;
                samples[i].latencies.extend(lat);
            }
        }
        small_results.push((concurrency, samples));
    }

    // --- large objects ----------------------------------------------------------
    // Fresh gatekeeper processes for every size (encrypted, and unencrypted as the
    // baseline; audit store PostgreSQL if there is one), so each size's RSS starts
    // from the same state: an allocator keeps memory from earlier, larger transfers.
    let audit_store = if pg_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut peak_reset = true;
    let mut large_rows = Vec::new();
    for &mib in large_mib.iter().filter(|_| stores.contains(&"s3")) {
        eprintln!("large objects: {mib} MiB");
        let (gk, gk_store) = fresh_gatekeeper("encrypted", s3_endpoint, pg_url, true).await;
        let gk = &gk;
        let (gk_plain, plain_store) =
            fresh_gatekeeper("unencrypted", s3_endpoint, pg_url, false).await;
        let body = LargeBody::new(mib);
        let reps = env_num(
            "COUNTERSIGN_BENCH_LARGE_RUNS",
            if mib <= 256 { 5 } else { 3 },
        );
        let mut put = LargeRow::default();
        let mut get = LargeRow::default();
        for rep in 0..reps {
            let dk =
                ObjectKey::parse(&format!("large/direct-{mib}-{rep}-{}", random_hex(3))).unwrap();
            let gkk = ObjectKey::parse(&format!("large/gk-{mib}-{rep}-{}", random_hex(3))).unwrap();
            // Rotate the order of the three sides so none always runs first.
            let order = [0, 1, 2].map(|i| (i + rep) % 3);
            for &side in &order {
                match side {
                    0 => put.direct.push(put_direct(&store, &dk, &body).await),
                    1 => {
                        let cpu = gk_plain.cpu_time();
                        put.plain
                            .push(put_gk(&client, &gk_plain, &gkk, &body).await);
                        put.cpu_plain += gk_plain.cpu_time() - cpu;
                    }
                    _ => {
                        peak_reset &= gk.reset_peak();
                        put.before_kib = put.before_kib.max(gk.status_kib("VmRSS"));
                        let cpu = gk.cpu_time();
                        put.gk.push(put_gk(&client, gk, &gkk, &body).await);
                        put.cpu_gk += gk.cpu_time() - cpu;
                        put.peak_kib = put.peak_kib.max(gk.status_kib("VmHWM"));
                    }
                }
            }
            for &side in order.iter().rev() {
                match side {
                    0 => get
                        .direct
                        .push(get_direct(&store, &dk, body.digest.length).await),
                    1 => {
                        let cpu = gk_plain.cpu_time();
                        get.plain
                            .push(get_gk(&client, &gk_plain, &gkk, body.digest.length).await);
                        get.cpu_plain += gk_plain.cpu_time() - cpu;
                    }
                    _ => {
                        peak_reset &= gk.reset_peak();
                        get.before_kib = get.before_kib.max(gk.status_kib("VmRSS"));
                        let cpu = gk.cpu_time();
                        get.gk
                            .push(get_gk(&client, gk, &gkk, body.digest.length).await);
                        get.cpu_gk += gk.cpu_time() - cpu;
                        get.peak_kib = get.peak_kib.max(gk.status_kib("VmHWM"));
                    }
                }
            }
            // Stored size of the encrypted object, then free the S3 server's memory
            // (the gatekeeper never deletes; we do).
            let _ = store.delete(&object_path(&dk)).await;
            for s in [&gk_store, &plain_store] {
                let stored: Vec<_> = s.list(None).collect().await;
                for m in stored.into_iter().flatten() {
                    if std::ptr::eq(s, &gk_store) && m.location.as_ref().starts_with("objects/") {
                        put.stored_bytes = m.size;
                    }
                    let _ = s.delete(&m.location).await;
                }
            }
        }
        large_rows.push((mib, body.digest.length, put, get));
    }

    // --- large objects, local store: GET ----------------------------------------
    // Fresh gatekeepers (SQLite, bucket in a local directory) per size; direct = a
    // copy of the body in a file, read with a 1 MiB buffer. Both files were just
    // written, so both sides read from the page cache.
    let mut local_rows = Vec::new();
    for &mib in large_mib.iter().filter(|_| stores.contains(&"local")) {
        eprintln!("large objects, local store: {mib} MiB");
        let gk = Gatekeeper::start("local-encrypted", None, None, true);
        let gk_plain = Gatekeeper::start("local-unencrypted", None, None, false);
        let body = LargeBody::new(mib);
        let direct_dir = tempfile::Builder::new()
            .prefix("countersign-bench-direct-")
            .tempdir()
            .unwrap();
        let direct_file = direct_dir.path().join("object");
        {
            use std::io::Write as _;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&direct_file).unwrap());
            for _ in 0..body.blocks {
                f.write_all(&body.block).unwrap();
            }
            f.into_inner().unwrap().sync_all().unwrap();
        }
        let key = ObjectKey::parse(&format!("large/local-{mib}-{}", random_hex(3))).unwrap();
        put_gk(&client, &gk, &key, &body).await;
        put_gk(&client, &gk_plain, &key, &body).await;
        let reps = env_num(
            "COUNTERSIGN_BENCH_LARGE_RUNS",
            if mib <= 256 { 5 } else { 3 },
        );
        let nginx = nginx_bin
            .as_deref()
            .map(|bin| start_nginx(bin, direct_dir.path()));
        let sides = if nginx.is_some() { 4 } else { 3 };
        let mut get = LargeRow::default();
        for rep in 0..reps {
            for side in (0..sides).map(|i| (i + rep) % sides) {
                match side {
                    0 => get
                        .direct
                        .push(read_file(&direct_file, body.digest.length).await),
                    3 => {
                        let url = format!("{}/object", nginx.as_ref().unwrap().0.base);
                        get.nginx
                            .push(get_url(client.get(url), body.digest.length).await);
                    }
                    1 => {
                        let cpu = gk_plain.cpu_time();
                        get.plain
                            .push(get_gk(&client, &gk_plain, &key, body.digest.length).await);
                        get.cpu_plain += gk_plain.cpu_time() - cpu;
                    }
                    _ => {
                        peak_reset &= gk.reset_peak();
                        get.before_kib = get.before_kib.max(gk.status_kib("VmRSS"));
                        let cpu = gk.cpu_time();
                        get.gk
                            .push(get_gk(&client, &gk, &key, body.digest.length).await);
                        get.cpu_gk += gk.cpu_time() - cpu;
                        get.peak_kib = get.peak_kib.max(gk.status_kib("VmHWM"));
                    }
                }
            }
        }
        local_rows.push((mib, body.digest.length, get));
    }

    // --- report -----------------------------------------------------------------
    println!();
    println!(
        "Gatekeeper vs direct S3 (same moto server at {s3_endpoint}, one bucket per side); gatekeeper = separate process, release build"
    );
    println!();
    println!(
        "Small-object GET: {SMALL_BYTES} B, {rounds} interleaved rounds x {per_round} requests per target and concurrency"
    );
    println!(
        "{:<5} {:<34} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "conc", "target", "req/s", "p50 ms", "p99 ms", "req/s ratio", "added p50 ms"
    );
    let mut added_p50 = Vec::new();
    for (concurrency, samples) in &small_results {
        let direct_p50 = samples[0].percentile_ms(50);
        let direct_rps = samples[0].rps();
        for (i, t) in targets.iter().enumerate() {
            let s = &samples[i];
            let name = match t {
                Target::Direct => "direct S3 (object_store)".to_owned(),
                Target::Gatekeeper(g) => format!("gatekeeper, audit store {}", gks[*g].label),
            };
            let added = s.percentile_ms(50) - direct_p50;
            if let Target::Gatekeeper(g) = t {
                added_p50.push((*concurrency, gks[*g].label.clone(), added));
            }
            println!(
                "{:<5} {:<34} {:>9.0} {:>9.2} {:>9.2} {:>12.2} {:>12.2}",
                concurrency,
                name,
                s.rps(),
                s.percentile_ms(50),
                s.percentile_ms(99),
                s.rps() / direct_rps,
                added
            );
        }
    }
    println!();
    println!(
        "Large objects (gatekeeper audit store {}, fresh processes per size): median MiB/s; peak RSS = gatekeeper VmHWM during the phase{}",
        audit_store,
        if peak_reset {
            " (reset before each transfer)"
        } else {
            " (could not reset: peak since start)"
        }
    );
    println!(
        "{:<10} {:<4} {:>5} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12} {:>12} {:>10} {:>14}",
        "size",
        "op",
        "runs",
        "direct",
        "gk plain",
        "gk enc",
        "enc/plain",
        "enc/direct",
        "RSS before",
        "peak RSS",
        "overhead",
        "CPU ms/MiB"
    );
    let mut min_ratio = f64::INFINITY;
    let mut min_enc_ratio = f64::INFINITY;
    let mut max_overhead = 0f64;
    let mut peaks = Vec::new();
    for (mib, bytes, put, get) in &large_rows {
        for (op, row) in [("PUT", put), ("GET", get)] {
            let (d, p, g) = row.rates(*bytes);
            min_ratio = min_ratio.min(g / d);
            min_enc_ratio = min_enc_ratio.min(g / p);
            peaks.push(row.peak_kib);
            let overhead = if op == "PUT" {
                let o = (row.stored_bytes as f64 - *bytes as f64) / *bytes as f64 * 100.0;
                max_overhead = max_overhead.max(o);
                format!("{o:.4} %")
            } else {
                String::new()
            };
            let (cpu_plain, cpu_enc) = row.cpu_ms_per_mib(*bytes);
            println!(
                "{:<10} {:<4} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2} {:>8.1} MiB {:>8.1} MiB {:>10} {:>6.2} / {:>5.2}",
                format!("{mib} MiB"),
                op,
                row.gk.len(),
                d,
                p,
                g,
                g / p,
                g / d,
                row.before_kib as f64 / 1024.0,
                row.peak_kib as f64 / 1024.0,
                overhead,
                cpu_plain,
                cpu_enc
            );
        }
    }
    println!(
        "(MiB/s, medians; RSS and peak RSS of the encrypting gatekeeper; overhead = stored size / body size - 1; CPU = user + system time of the gatekeeper process per MiB, unencrypted / encrypted)"
    );
    println!();
    println!(
        "Large-object GET from a local-directory store (SQLite, fresh processes per size; file = reading the body's file with a 1 MiB buffer; nginx = nginx serving that file over HTTP on 127.0.0.1): median MiB/s"
    );
    println!(
        "{:<10} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "size",
        "runs",
        "file",
        "nginx",
        "gk plain",
        "gk enc",
        "enc/plain",
        "plain/nginx",
        "enc/nginx",
        "enc/file",
        "RSS before",
        "peak RSS",
        "CPU ms/MiB"
    );
    for (mib, bytes, row) in &local_rows {
        let (d, p, g) = row.rates(*bytes);
        min_ratio = min_ratio.min(g / d);
        let mut n: Vec<f64> = row.nginx.iter().map(|t| mib_per_s(*bytes, *t)).collect();
        n.sort_by(f64::total_cmp);
        let n = n.get(n.len() / 2).copied().unwrap_or(f64::NAN);
        let (cpu_plain, cpu_enc) = row.cpu_ms_per_mib(*bytes);
        println!(
            "{:<10} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>11.2} {:>10.2} {:>10.2} {:>8.1} MiB {:>8.1} MiB {:>6.2} / {:>5.2}",
            format!("{mib} MiB"),
            row.gk.len(),
            d,
            n,
            p,
            g,
            g / p,
            p / n,
            g / n,
            g / d,
            row.before_kib as f64 / 1024.0,
            row.peak_kib as f64 / 1024.0,
            cpu_plain,
            cpu_enc,
        );
    }
    println!();
    println!("Goals:");
    for (concurrency, label, added) in &added_p50 {
        println!(
            "  added p50 latency <= 1 ms ({label}, concurrency {concurrency}): {added:.2} ms -> {}",
            if *added <= 1.0 { "met" } else { "MISSED" }
        );
    }
    if !large_rows.is_empty() {
        println!(
            "  large-object throughput >= 90% of direct: worst ratio {:.2} -> {}",
            min_ratio,
            if min_ratio >= 0.9 { "met" } else { "MISSED" }
        );
        println!(
            "  encrypted >= 90% of unencrypted: worst ratio {:.2} -> {}",
            min_enc_ratio,
            if min_enc_ratio >= 0.9 {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "  stored size overhead <= 0.05 % for objects >= 1 MiB: worst {:.4} % -> {}",
            max_overhead,
            if max_overhead <= 0.05 {
                "met"
            } else {
                "MISSED"
            }
        );
        let lo = peaks.iter().copied().min().unwrap_or(0) as f64 / 1024.0;
        let hi = peaks.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "  RSS independent of object size: peak {lo:.1}-{hi:.1} MiB over sizes {:?} MiB",
            large_mib
        );
    }
}
