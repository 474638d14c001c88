//! What a gatekeeper request costs the machine, not only how long it takes:
//!
//! - **Small-object GET cost**: for the gatekeeper process, CPU µs per request
//!   (`utime + stime` from `/proc/PID/stat` over the run), context switches per
//!   request (voluntary + involuntary, summed over `/proc/PID/task/*/status`) and,
//!   on PostgreSQL, database round trips, statements and transactions per request,
//!   counted by a small wire-protocol proxy between the gatekeeper and PostgreSQL.
//!   Side by side, in interleaved rounds: the crypto alone (two `verify_strict` +
//!   one `sign`, what a request must cost at least), nginx serving the same 4 KiB
//!   file from disk (if an `nginx` binary is found), and the gatekeeper on SQLite +
//!   local directory, SQLite + S3 and PostgreSQL + S3.
//! - **LIST cost follows the page**: stores N small objects under `a/` through the
//!   gatekeeper, then times LIST of `0/` (empty, sorts before them), `a/` with
//!   `limit=10`, `a/` full page, and `z/` (empty, sorts after them), through the
//!   gatekeeper (SQLite and PostgreSQL), and the index query alone in the bounded
//!   form the gatekeeper uses next to the earlier unbounded form.
//!
//! ```text
//! scripts/services.sh cargo bench -p countersign-gatekeeper --bench cost
//! ```
//!
//! Environment: `COUNTERSIGN_TEST_S3_ENDPOINT` (required), `COUNTERSIGN_TEST_PG_URL`
//! (optional; without it PostgreSQL is skipped), `COUNTERSIGN_BENCH_CONCURRENCY`
//! (default `1,8`), `COUNTERSIGN_BENCH_ROUNDS` (default 4),
//! `COUNTERSIGN_BENCH_ROUND_REQUESTS` (default 500), `COUNTERSIGN_BENCH_LIST_OBJECTS`
//! (default 5000; 0 skips the LIST part), `COUNTERSIGN_BENCH_LIST_REQUESTS` (LISTs
//! per prefix and round, default 20), `COUNTERSIGN_BENCH_NGINX` (the nginx binary;
//! default `nginx` on `PATH`; `off` skips it), `COUNTERSIGN_BENCH_GATEKEEPER` (the
//! gatekeeper binary; default the one this package builds: point it at another build
//! to compare two versions).
//!
//! Every request is signed by two vendor keys (threshold 2), so the gatekeeper does
//! two strict verifications and signs one receipt per request, like the baseline.

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
#[path = "signing/mod.rs"]
mod signing;

use common::{create_pg_database, create_s3_bucket, now, random_hex};
use countersign_core::ed25519_dalek::{Signer as _, SigningKey};
use countersign_core::text::b64;
use countersign_core::{
    BodyDigest, ContentType, Decision, GatekeeperId, KeyId, ListPrefix, ObjectKey, Operation,
    Receipt,
};
use load::{env_num, random_bytes, round};
use process::{
    Cost, NginxConfig, Server, clock_ticks_per_s, find_on_path, process_cost, spawn_gatekeeper,
    thread_cost,
};
use signing::{BUCKET, GK_ID, sign, sign_raw, vendor_keys};
use sqlx::Row as _;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SMALL_BYTES: usize = 4096;
const LIST_OBJECT_BYTES: usize = 64;

fn get_op(key: &ObjectKey) -> Operation {
    Operation::Get {
        key: key.clone(),
        range: None,
    }
}

fn put_op(key: &ObjectKey, body: &[u8]) -> Operation {
    Operation::Put {
        key: key.clone(),
        content_type: ContentType::parse("application/octet-stream").unwrap(),
        body: BodyDigest::of(body),
    }
}

fn list_op(prefix: &str) -> Operation {
    Operation::List {
        prefix: ListPrefix::parse(prefix).unwrap(),
    }
}

// --- PostgreSQL round trips ----------------------------------------------------------

/// What the gatekeeper sent to PostgreSQL, counted from the frontend messages of the
/// wire protocol: a round trip is a `Sync` (end of an extended-protocol exchange) or a
/// simple `Query`; a lone `Sync` is sqlx's liveness ping before it hands out a pooled
/// connection; a statement is an `Execute` or a simple `Query`; a transaction is a
/// `BEGIN` or a statement outside one (autocommit).
#[derive(Default)]
struct PgCounters {
    round_trips: AtomicU64,
    pings: AtomicU64,
    statements: AtomicU64,
    transactions: AtomicU64,
    parses: AtomicU64,
    connections: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
struct PgCount {
    round_trips: u64,
    pings: u64,
    statements: u64,
    transactions: u64,
    parses: u64,
    connections: u64,
}

impl PgCounters {
    fn snapshot(&self) -> PgCount {
        PgCount {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            pings: self.pings.load(Ordering::Relaxed),
            statements: self.statements.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            parses: self.parses.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

impl PgCount {
    fn minus(self, b: Self) -> Self {
        Self {
            round_trips: self.round_trips - b.round_trips,
            pings: self.pings - b.pings,
            statements: self.statements - b.statements,
            transactions: self.transactions - b.transactions,
            parses: self.parses - b.parses,
            connections: self.connections - b.connections,
        }
    }
    fn add(&mut self, d: Self) {
        self.round_trips += d.round_trips;
        self.pings += d.pings;
        self.statements += d.statements;
        self.transactions += d.transactions;
        self.parses += d.parses;
        self.connections += d.connections;
    }
}

/// Parses the frontend side of one PostgreSQL connection as it passes.
struct FrontendParser {
    buf: Vec<u8>,
    started: bool,
    in_tx: bool,
    since_sync: u64,
}

impl FrontendParser {
    fn feed(&mut self, data: &[u8], c: &PgCounters) {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if !self.started {
                // SSLRequest, GSSENCRequest and the startup message carry no type byte.
                if rest.len() < 8 {
                    break;
                }
                let len = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
                if rest.len() < len {
                    break;
                }
                let code = u32::from_be_bytes(rest[4..8].try_into().unwrap());
                if code != 80_877_103 && code != 80_877_104 {
                    self.started = true;
                }
                at += len;
                continue;
            }
            if rest.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            if rest.len() < 1 + len {
                break;
            }
            let body = &rest[5..1 + len];
            match rest[0] {
                b'Q' => {
                    let sql = String::from_utf8_lossy(body).trim().to_ascii_uppercase();
                    c.round_trips.fetch_add(1, Ordering::Relaxed);
                    c.statements.fetch_add(1, Ordering::Relaxed);
                    if sql.starts_with("BEGIN") || sql.starts_with("START TRANSACTION") {
                        self.in_tx = true;
                        c.transactions.fetch_add(1, Ordering::Relaxed);
                    } else if sql.starts_with("COMMIT") || sql.starts_with("ROLLBACK") {
                        self.in_tx = false;
                    } else if !self.in_tx {
                        c.transactions.fetch_add(1, Ordering::Relaxed);
                    }
                    self.since_sync = 0;
                }
                b'S' => {
                    c.round_trips.fetch_add(1, Ordering::Relaxed);
                    if self.since_sync == 0 {
                        c.pings.fetch_add(1, Ordering::Relaxed);
                    }
                    self.since_sync = 0;
                }
                b'E' => {
                    c.statements.fetch_add(1, Ordering::Relaxed);
                    if !self.in_tx {
                        c.transactions.fetch_add(1, Ordering::Relaxed);
                    }
                    self.since_sync += 1;
                }
                b'P' => {
                    c.parses.fetch_add(1, Ordering::Relaxed);
                    self.since_sync += 1;
                }
                _ => self.since_sync += 1,
            }
            at += 1 + len;
        }
        self.buf.drain(..at);
    }
}

/// A TCP proxy on 127.0.0.1 in front of PostgreSQL that counts what passes; returns
/// its address.
async fn pg_counting_proxy(upstream: String, counters: Arc<PgCounters>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut parser = FrontendParser {
                    buf: Vec::new(),
                    started: false,
                    in_tx: false,
                    since_sync: 0,
                };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            parser.feed(&buf[..n], &counters);
                        }
                    }
                }
                let _ = sw.shutdown().await;
                let _ = down.await;
            });
        }
    });
    addr
}

// --- processes under test -------------------------------------------------------------

enum Store {
    Local,
    S3 { endpoint: String, bucket: String },
}

/// A gatekeeper process on 127.0.0.1, killed when dropped.
struct Gatekeeper {
    label: String,
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    pg: Option<(String, Arc<PgCounters>)>,
    /// CPU and wall time from exec until the process went quiet (start-up and the
    /// first recovery pass over the bucket).
    startup: (Cost, Duration),
}

/// Starts the binary (`COUNTERSIGN_BENCH_GATEKEEPER`, default this package's) and
/// returns it with its address once it listens.
fn start_gatekeeper(label: &str, dir: &Path) -> (Child, String) {
    let binary = std::env::var("COUNTERSIGN_BENCH_GATEKEEPER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_countersign-gatekeeper").to_owned());
    spawn_gatekeeper(
        &binary,
        &dir.join("gatekeeper.toml"),
        dir,
        &format!("gatekeeper {label}"),
    )
}

/// Waits until a process has used no CPU for 2 s; returns its whole cost so far and
/// the time from `since` to its last CPU tick.
fn settle(pid: u32, since: Instant) -> (Cost, Duration) {
    let mut last = process_cost(pid);
    let mut last_change = since.elapsed();
    let mut quiet = 0;
    while quiet < 8 && since.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(250));
        let c = process_cost(pid);
        if c.cpu_ticks == last.cpu_ticks {
            quiet += 1;
        } else {
            quiet = 0;
            last_change = since.elapsed();
        }
        last = c;
    }
    (last, last_change)
}

impl Gatekeeper {
    /// `pg`: the database URL the bench itself uses, and the counters of the proxy the
    /// gatekeeper connects through.
    fn start(label: &str, store: &Store, pg: Option<(String, String, Arc<PgCounters>)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("countersign-bench-")
            .tempdir()
            .unwrap();
        let database = pg
            .as_ref()
            .map(|(_, proxied, _)| format!("[database]\nurl = \"{proxied}\"\n"))
            .unwrap_or_default();
        let bucket = match store {
            Store::Local => {
                let path = dir.path().join("bucket");
                std::fs::create_dir_all(&path).unwrap();
                format!("store = \"local\"\npath = \"{}\"", path.display())
            }
            Store::S3 { endpoint, bucket } => format!(
                "store = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\ns3_bucket = \"{bucket}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\nallow_http = true"
            ),
        };
        let [k1, k2] = vendor_keys();
        let config = format!(
            r#"gatekeeper_id = "{GK_ID}"

{database}
[[keys]]
key_id = "v1"
role = "vendor"
public_key = "{pk1}"

[[keys]]
key_id = "v2"
role = "vendor"
public_key = "{pk2}"

[limits]
# One recovery pass at start-up only, so that it does not land inside a measurement
# (it is measured on its own, at a restart).
reconcile_interval_secs = 86400

[thresholds]
GET = {{ vendor = 2 }}
HEAD = {{ vendor = 2 }}
LIST = {{ vendor = 2 }}
PUT = {{ vendor = 2 }}

[buckets.{BUCKET}]
{bucket}

[[acl]]
effect = "allow"
subjects = ["*"]
operations = ["GET", "HEAD", "PUT", "LIST"]
"#,
            pk1 = b64(&k1.verifying_key().to_bytes()),
            pk2 = b64(&k2.verifying_key().to_bytes()),
        );
        std::fs::write(dir.path().join("gatekeeper.toml"), config).unwrap();
        let t = Instant::now();
        let (child, base) = start_gatekeeper(label, dir.path());
        let startup = settle(child.id(), t);
        Self {
            label: label.to_owned(),
            child,
            base,
            dir,
            pg: pg.map(|(direct, _, c)| (direct, c)),
            startup,
        }
    }

    /// Stops the process and starts it again on the same data and database; returns
    /// what start-up and the recovery pass cost (and the database round trips).
    fn restart(&mut self) -> (Cost, Duration, Option<PgCount>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pg_before = self.pg_count();
        let t = Instant::now();
        let (child, base) = start_gatekeeper(&self.label, self.dir.path());
        self.child = child;
        self.base = base;
        let (cost, wall) = settle(self.child.id(), t);
        let pg = self.pg_count().zip(pg_before).map(|(a, b)| a.minus(b));
        (cost, wall, pg)
    }

    fn url(&self, key: &ObjectKey) -> String {
        format!("{}/v1/objects/{BUCKET}/{}", self.base, key.to_url_path())
    }

    fn list_url(&self, prefix: &str, limit: Option<u32>) -> String {
        let mut u = format!(
            "{}/v1/objects/{BUCKET}?prefix={}",
            self.base,
            countersign_core::names::percent_encode(prefix)
        );
        if let Some(l) = limit {
            u.push_str(&format!("&limit={l}"));
        }
        u
    }

    /// The URL the bench uses to read this gatekeeper's database directly.
    fn database_url(&self) -> String {
        match &self.pg {
            Some((direct, _)) => direct.clone(),
            None => format!(
                "sqlite://{}?mode=ro",
                self.dir.path().join("gatekeeper.sqlite").display()
            ),
        }
    }

    fn pg_count(&self) -> Option<PgCount> {
        self.pg.as_ref().map(|(_, c)| c.snapshot())
    }

    async fn put(&self, client: &reqwest::Client, key: &ObjectKey, body: &[u8]) {
        let (request, signature) = sign(put_op(key, body));
        let r = client
            .put(self.url(key))
            .header("countersign-request", request)
            .header("countersign-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT {key}: {status} {}",
            r.text().await.unwrap()
        );
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx (`COUNTERSIGN_BENCH_NGINX`, else `nginx` on `PATH` or in `/usr/sbin`), or
/// `None` if it is set to `off` or not found.
fn find_nginx() -> Option<String> {
    match std::env::var("COUNTERSIGN_BENCH_NGINX") {
        Ok(v) if v == "off" => None,
        Ok(v) => Some(v),
        Err(_) => find_on_path("nginx"),
    }
}

/// nginx with one process (no master) serving `file` as `/small` on 127.0.0.1, with
/// an access log line per request; `None` (and a note) if it does not start.
fn start_nginx(binary: &str, file: &[u8]) -> Option<(Server, tempfile::TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix("countersign-bench-nginx-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("small"), file).unwrap();
    let config = NginxConfig {
        access_log: true,
        worker_connections: 1024,
        keepalive_requests: Some(1_000_000),
        webdav_put: false,
    };
    match Server::nginx(binary, dir.path(), &root, &config) {
        Ok(server) => Some((server, dir)),
        Err(e) => {
            eprintln!("note: {e}; skipping the nginx baseline");
            None
        }
    }
}

// --- load -----------------------------------------------------------------------------

/// GETs of `url`, each with its own pre-signed headers (none for nginx).
async fn get_round(
    client: &reqwest::Client,
    url: String,
    signed: Vec<(String, String)>,
    n: usize,
    concurrency: usize,
    expect_len: usize,
) -> (Duration, Vec<Duration>) {
    let signed = Arc::new(signed);
    let client = client.clone();
    round(n, concurrency, move |i| {
        let mut req = client.get(&url);
        if let Some((request, signature)) = signed.get(i) {
            req = req
                .header("countersign-request", request.clone())
                .header("countersign-signature", signature.clone());
        }
        let fut = req.send();
        async move {
            let r = fut.await.unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            assert_eq!(body.len(), expect_len);
        }
    })
    .await
}

#[derive(Default)]
struct Samples {
    wall: Duration,
    latencies: Vec<Duration>,
    cost: Cost,
    pg: Option<PgCount>,
}

impl Samples {
    fn n(&self) -> f64 {
        self.latencies.len() as f64
    }
    fn rps(&self) -> f64 {
        self.n() / self.wall.as_secs_f64()
    }
    fn percentile_ms(&self, p: usize) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        let i = (v.len() * p / 100).min(v.len().saturating_sub(1));
        v[i].as_secs_f64() * 1000.0
    }
    fn cpu_us(&self) -> f64 {
        self.cost.cpu_ticks as f64 / clock_ticks_per_s() as f64 * 1e6 / self.n()
    }
    fn switches(&self) -> (f64, f64) {
        (
            self.cost.voluntary as f64 / self.n(),
            self.cost.involuntary as f64 / self.n(),
        )
    }
    fn record(&mut self, wall: Duration, lat: Vec<Duration>, cost: Cost, pg: Option<PgCount>) {
        self.wall += wall;
        self.latencies.extend(lat);
        self.cost.add(cost);
        if let Some(d) = pg {
            self.pg.get_or_insert_with(PgCount::default).add(d);
        }
    }
}

// --- the crypto alone -------------------------------------------------------------------

/// What the gatekeeper's signature work on one request is: two strict verifications of
/// vendor signatures over a canonical request, one receipt signature.
struct CryptoWork {
    keys: [countersign_core::ed25519_dalek::VerifyingKey; 2],
    message: Vec<u8>,
    signatures: [countersign_core::ed25519_dalek::Signature; 2],
    gatekeeper: SigningKey,
    receipt: Vec<u8>,
}

impl CryptoWork {
    fn new() -> Self {
        let [k1, k2] = vendor_keys();
        let key = ObjectKey::parse("small/0123abcd").unwrap();
        let (canonical, _) = sign_raw(get_op(&key));
        let gatekeeper = SigningKey::from_bytes(&[31; 32]);
        let (receipt, _) = Receipt {
            gatekeeper: GatekeeperId::parse(GK_ID).unwrap(),
            request_sha256: [7; 32],
            decision: Decision::Allow,
            decided_at: now(),
            audit_seq: 123_456,
            leaf_sha256: Some([3; 32]),
        }
        .sign(&gatekeeper, KeyId::parse("gk1").unwrap());
        Self {
            keys: [k1.verifying_key(), k2.verifying_key()],
            signatures: [k1.sign(&canonical), k2.sign(&canonical)],
            message: canonical,
            gatekeeper,
            receipt,
        }
    }

    fn once(&self) {
        for (k, s) in self.keys.iter().zip(&self.signatures) {
            k.verify_strict(&self.message, s).unwrap();
        }
        std::hint::black_box(self.gatekeeper.sign(std::hint::black_box(&self.receipt)));
    }

    /// At least `n` requests' worth, and at least `min` of wall time (CPU time is
    /// counted in 10 ms ticks), on a thread of its own: (operations, wall, that
    /// thread's cost).
    fn run(self: &Arc<Self>, n: usize, min: Duration) -> (usize, Duration, Cost) {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            let before = thread_cost();
            let t = Instant::now();
            let mut done = 0;
            while done < n || t.elapsed() < min {
                for _ in 0..100 {
                    me.once();
                }
                done += 100;
            }
            (done, t.elapsed(), thread_cost().minus(before))
        })
        .join()
        .unwrap()
    }
}

// --- main -------------------------------------------------------------------------------

fn main() {
    let Ok(s3_endpoint) = std::env::var("COUNTERSIGN_TEST_S3_ENDPOINT") else {
        eprintln!(
            "error: COUNTERSIGN_TEST_S3_ENDPOINT is not set. Run the benchmark under the test services:\n  scripts/services.sh cargo bench -p countersign-gatekeeper --bench cost"
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

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(s3_endpoint: &str, pg_url: Option<&str>) {
    let concurrencies: Vec<usize> = std::env::var("COUNTERSIGN_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .map(|s| s.trim().parse().expect("COUNTERSIGN_BENCH_CONCURRENCY"))
        .collect();
    let rounds = env_num("COUNTERSIGN_BENCH_ROUNDS", 4);
    let per_round = env_num("COUNTERSIGN_BENCH_ROUND_REQUESTS", 500);
    let list_objects = env_num("COUNTERSIGN_BENCH_LIST_OBJECTS", 5000);
    let list_requests = env_num("COUNTERSIGN_BENCH_LIST_REQUESTS", 20);
    eprintln!("load average at start: {}", load());

    // One bucket per gatekeeper: a gatekeeper removes every file of its bucket that its
    // own index does not know (orphans of crashed uploads).
    let run_id = random_hex(6);
    let s3 = |side: &str| {
        let bucket = format!("gk-cost-{run_id}-{side}");
        (
            bucket.clone(),
            Store::S3 {
                endpoint: s3_endpoint.to_owned(),
                bucket,
            },
        )
    };
    let (sqlite_bucket, sqlite_s3) = s3("sqlite");
    create_s3_bucket(s3_endpoint, &sqlite_bucket).await;
    let mut gks = vec![
        Gatekeeper::start("SQLite + local dir", &Store::Local, None),
        Gatekeeper::start("SQLite + S3", &sqlite_s3, None),
    ];
    if let Some(pg) = pg_url {
        let direct = create_pg_database(pg).await;
        // postgres://user@host:port/db -> the same through the counting proxy.
        let (head, db) = direct.rsplit_once('/').unwrap();
        let (userinfo, hostport) = head
            .strip_prefix("postgres://")
            .and_then(|r| r.rsplit_once('@'))
            .expect("COUNTERSIGN_TEST_PG_URL: postgres://user@host:port/db");
        let counters = Arc::new(PgCounters::default());
        let proxy = pg_counting_proxy(hostport.to_owned(), Arc::clone(&counters)).await;
        let proxied = format!("postgres://{userinfo}@{proxy}/{db}");
        let (pg_bucket, pg_s3) = s3("pg");
        create_s3_bucket(s3_endpoint, &pg_bucket).await;
        gks.push(Gatekeeper::start(
            "PostgreSQL + S3",
            &pg_s3,
            Some((direct, proxied, counters)),
        ));
    } else {
        eprintln!("note: COUNTERSIGN_TEST_PG_URL is not set; PostgreSQL is not measured");
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let small = random_bytes(SMALL_BYTES);
    let nginx = find_nginx().and_then(|b| start_nginx(&b, &small));
    if nginx.is_none() {
        eprintln!("note: no nginx baseline (set COUNTERSIGN_BENCH_NGINX to its binary)");
    }

    // --- small-object GET cost ----------------------------------------------------
    let small_key = ObjectKey::parse(&format!("small/{}", random_hex(4))).unwrap();
    for gk in &gks {
        gk.put(&client, &small_key, &small).await;
    }
    let crypto = Arc::new(CryptoWork::new());
    // Targets: 0 = crypto alone, 1 = nginx (if any), then the gatekeepers.
    #[derive(Clone, Copy)]
    enum T {
        Crypto,
        Nginx,
        Gk(usize),
    }
    let mut targets = vec![T::Crypto];
    if nginx.is_some() {
        targets.push(T::Nginx);
    }
    targets.extend((0..gks.len()).map(T::Gk));
    let labels: Vec<String> = gks.iter().map(|g| g.label.clone()).collect();
    let name = |t: T| match t {
        T::Crypto => "crypto alone (2 verify_strict + 1 sign)".to_owned(),
        T::Nginx => "nginx 1 process, static 4 KiB file".to_owned(),
        T::Gk(g) => format!("gatekeeper, {}", labels[g]),
    };
    let mut small_results = Vec::new();
    for &concurrency in &concurrencies {
        eprintln!(
            "small-object GET cost: concurrency {concurrency}, {rounds} rounds x {per_round} requests per target (load {})",
            load()
        );
        let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
        let load_start = load();
        for r in 0..=rounds {
            for j in 0..targets.len() {
                let i = (j + r) % targets.len();
                // Round 0 is the warm-up (connections, statement caches), not recorded.
                let n = if r == 0 { 50 } else { per_round };
                let (wall, lat, cost, pg) = match targets[i] {
                    T::Crypto => {
                        let (ops, wall, cost) = crypto.run(n, Duration::from_millis(500));
                        (wall, vec![wall / ops as u32; ops], cost, None)
                    }
                    T::Nginx => {
                        let ngx = &nginx.as_ref().unwrap().0;
                        let pid = ngx.child.id();
                        let before = process_cost(pid);
                        let (wall, lat) = get_round(
                            &client,
                            format!("{}/small", ngx.base),
                            Vec::new(),
                            n,
                            concurrency,
                            SMALL_BYTES,
                        )
                        .await;
                        (wall, lat, process_cost(pid).minus(before), None)
                    }
                    T::Gk(g) => {
                        let gk = &gks[g];
                        let signed: Vec<_> = (0..n).map(|_| sign(get_op(&small_key))).collect();
                        let pid = gk.child.id();
                        let pg_before = gk.pg_count();
                        let before = process_cost(pid);
                        let (wall, lat) = get_round(
                            &client,
                            gk.url(&small_key),
                            signed,
                            n,
                            concurrency,
                            SMALL_BYTES,
                        )
                        .await;
                        let cost = process_cost(pid).minus(before);
                        let pg = gk.pg_count().zip(pg_before).map(|(a, b)| a.minus(b));
                        (wall, lat, cost, pg)
                    }
                };
                if r > 0 {
                    let s = &mut samples[i];
                    // For the crypto, `lat` holds one mean time per operation.
                    s.record(wall, lat, cost, pg);
                }
            }
        }
        small_results.push((concurrency, samples, load_start, load()));
    }

    // --- LIST ----------------------------------------------------------------------
    let mut list_results = Vec::new();
    let mut query_results = Vec::new();
    let mut restarts = Vec::new();
    if list_objects > 0 {
        // The LIST gatekeepers: one per database.
        let list_gks: Vec<usize> = (0..gks.len())
            .filter(|&g| g == 0 || gks[g].pg.is_some())
            .collect();
        let body = random_bytes(LIST_OBJECT_BYTES);
        for &g in &list_gks {
            let gk = &gks[g];
            eprintln!(
                "storing {list_objects} objects under a/ through {} (load {})",
                gk.label,
                load()
            );
            let signed: Arc<Vec<(ObjectKey, String, String)>> = Arc::new(
                (0..list_objects)
                    .map(|i| {
                        let key = ObjectKey::parse(&format!("a/{i:06}")).unwrap();
                        let (r, s) = sign(put_op(&key, &body));
                        (key, r, s)
                    })
                    .collect(),
            );
            let client2 = client.clone();
            let base = gk.base.clone();
            let body2 = body.clone();
            let pid = gk.child.id();
            let pg_before = gk.pg_count();
            let before = process_cost(pid);
            let (wall, lat) = round(list_objects, 8, move |i| {
                let (key, request, signature) = signed[i].clone();
                let fut = client2
                    .put(format!("{base}/v1/objects/{BUCKET}/{}", key.to_url_path()))
                    .header("countersign-request", request)
                    .header("countersign-signature", signature)
                    .body(body2.clone())
                    .send();
                async move {
                    let r = fut.await.unwrap();
                    assert!(r.status().is_success(), "PUT: {}", r.status());
                }
            })
            .await;
            let cost = process_cost(pid).minus(before);
            let pg = gk.pg_count().zip(pg_before).map(|(a, b)| a.minus(b));
            let mut s = Samples::default();
            s.record(wall, lat, cost, pg);
            eprintln!(
                "  stored in {:.1} s: {:.0} PUT/s, p50 {:.2} ms, {:.0} CPU us per PUT{}",
                wall.as_secs_f64(),
                s.rps(),
                s.percentile_ms(50),
                s.cpu_us(),
                pg.map(|p| {
                    let n = s.n();
                    format!(
                        ", per PUT {:.2} DB round trips ({:.2} pings), {:.2} statements, {:.2} transactions",
                        p.round_trips as f64 / n,
                        p.pings as f64 / n,
                        p.statements as f64 / n,
                        p.transactions as f64 / n
                    )
                })
                .unwrap_or_default()
            );
            list_results.push((
                g,
                "PUT 64 B (storing them), concurrency 8".to_owned(),
                s,
                list_objects,
            ));
        }

        // The cases: (prefix, limit, expected objects).
        let full = 1000.min(list_objects);
        let cases: Vec<(&str, Option<u32>, usize)> = vec![
            ("0/", None, 0),
            ("a/", Some(10), 10.min(list_objects)),
            ("a/", None, full),
            ("z/", None, 0),
        ];
        let mut per_case: Vec<Vec<Samples>> = list_gks
            .iter()
            .map(|_| cases.iter().map(|_| Samples::default()).collect())
            .collect();
        for r in 0..=rounds {
            for (gi, &g) in list_gks.iter().enumerate() {
                let gk = &gks[g];
                for (ci, (prefix, limit, expect)) in cases.iter().enumerate() {
                    let n = if r == 0 { 3 } else { list_requests };
                    let signed: Arc<Vec<(String, String)>> =
                        Arc::new((0..n).map(|_| sign(list_op(prefix))).collect());
                    let url = gk.list_url(prefix, *limit);
                    let client2 = client.clone();
                    let expect = *expect;
                    let pid = gk.child.id();
                    let pg_before = gk.pg_count();
                    let before = process_cost(pid);
                    let (wall, lat) = round(n, 1, move |i| {
                        let (request, signature) = signed[i].clone();
                        let fut = client2
                            .get(&url)
                            .header("countersign-request", request)
                            .header("countersign-signature", signature)
                            .send();
                        async move {
                            let r = fut.await.unwrap();
                            assert_eq!(r.status(), 200);
                            let v: serde_json::Value =
                                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                            assert_eq!(v["objects"].as_array().unwrap().len(), expect);
                        }
                    })
                    .await;
                    let cost = process_cost(pid).minus(before);
                    let pg = gk.pg_count().zip(pg_before).map(|(a, b)| a.minus(b));
                    if r > 0 {
                        per_case[gi][ci].record(wall, lat, cost, pg);
                    }
                }
            }
        }
        for (gi, &g) in list_gks.iter().enumerate() {
            for (ci, s) in std::mem::take(&mut per_case[gi]).into_iter().enumerate() {
                let (prefix, limit, expect) = cases[ci];
                let what = match limit {
                    Some(l) => format!("LIST {prefix} limit={l}"),
                    None => format!("LIST {prefix}"),
                };
                list_results.push((g, what, s, expect));
            }
        }

        // The index query alone: the bounded form in use, and the earlier form (no
        // upper bound, manifests read, rows past the prefix dropped by the caller).
        for &g in &list_gks {
            let gk = &gks[g];
            sqlx::any::install_default_drivers();
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(&gk.database_url())
                .await
                .unwrap();
            let pg = gk.pg.is_some();
            let ph = |n: usize| if pg { format!("${n}") } else { "?".to_owned() };
            let bounded = format!(
                "SELECT object_key, size, sha256, content_type, stored_at FROM objects
                 WHERE bucket = {} AND state = 'stored' AND object_key >= {} AND object_key < {}
                 ORDER BY object_key LIMIT {}",
                ph(1),
                ph(2),
                ph(3),
                ph(4)
            );
            let unbounded = format!(
                "SELECT bucket, object_key, size, sha256, content_type, stored_at, manifest,
                 manifest_signatures FROM objects
                 WHERE bucket = {} AND state = 'stored' AND object_key >= {}
                 ORDER BY object_key LIMIT {}",
                ph(1),
                ph(2),
                ph(3)
            );
            for prefix in ["0/", "a/", "z/"] {
                let upper = countersign_gatekeeper::ledger::prefix_upper_bound(prefix).unwrap();
                let mut times = [Vec::new(), Vec::new()];
                let mut rows = [0usize; 2];
                for rep in 0..(rounds.max(1) * 10 + 1) {
                    for (f, sql) in [&bounded, &unbounded].into_iter().enumerate() {
                        let t = Instant::now();
                        let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                            .bind(BUCKET.to_owned())
                            .bind(prefix.to_owned());
                        let q = if f == 0 { q.bind(upper.clone()) } else { q };
                        let got = q.bind(1001_i64).fetch_all(&pool).await.unwrap();
                        // The earlier code kept rows while they matched the prefix.
                        let kept = got
                            .iter()
                            .take_while(|r| r.get::<String, _>("object_key").starts_with(prefix))
                            .count();
                        std::hint::black_box(kept);
                        if rep > 0 {
                            times[f].push(t.elapsed());
                        }
                        rows[f] = got.len();
                    }
                }
                let med = |v: &mut Vec<Duration>| {
                    v.sort();
                    v[v.len() / 2].as_secs_f64() * 1000.0
                };
                let b = med(&mut times[0]);
                let u = med(&mut times[1]);
                query_results.push((g, prefix, b, rows[0], u, rows[1]));
            }
            pool.close().await;
        }

        // Start-up with N objects: the recovery pass lists the bucket and looks every
        // file up in the index.
        for &g in &list_gks {
            eprintln!(
                "restarting {} over {list_objects} objects (load {})",
                gks[g].label,
                load()
            );
            let (cost, wall, pg) = gks[g].restart();
            restarts.push((g, cost, wall, pg));
        }
    }

    // --- report ---------------------------------------------------------------------
    println!();
    println!(
        "Cost per request (gatekeeper = separate release process; CPU = utime+stime of the process over the run, USER_HZ ticks; switches summed over its threads)"
    );
    for (concurrency, samples, load_start, load_end) in &small_results {
        println!();
        println!(
            "Small-object GET, {SMALL_BYTES} B, concurrency {concurrency}, {rounds} interleaved rounds x {per_round} requests (load average {load_start} -> {load_end})"
        );
        println!(
            "{:<42} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>9}",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU us",
            "x crypto",
            "vol cs",
            "inv cs",
            "db rt"
        );
        let crypto_us = samples[0].cpu_us();
        for (i, t) in targets.iter().enumerate() {
            let s = &samples[i];
            let (v, inv) = s.switches();
            let rt =
                s.pg.map(|p| format!("{:.2}", p.round_trips as f64 / s.n()))
                    .unwrap_or_else(|| "-".into());
            if matches!(t, T::Crypto) {
                println!(
                    "{:<42} {:>8.0} {:>8} {:>8} {:>9.1} {:>9.2} {:>7} {:>7} {:>9}",
                    name(*t),
                    s.rps(),
                    "-",
                    "-",
                    s.cpu_us(),
                    1.0,
                    "-",
                    "-",
                    "-"
                );
            } else {
                println!(
                    "{:<42} {:>8.0} {:>8.2} {:>8.2} {:>9.1} {:>9.2} {:>7.2} {:>7.2} {:>9}",
                    name(*t),
                    s.rps(),
                    s.percentile_ms(50),
                    s.percentile_ms(99),
                    s.cpu_us(),
                    s.cpu_us() / crypto_us,
                    v,
                    inv,
                    rt
                );
            }
        }
        for (i, t) in targets.iter().enumerate() {
            if let Some(p) = samples[i].pg {
                let n = samples[i].n();
                println!(
                    "  {}: per request {:.2} round trips (of which {:.2} pool pings), {:.2} statements, {:.2} transactions, {:.3} statement parses; {} new connections",
                    name(*t),
                    p.round_trips as f64 / n,
                    p.pings as f64 / n,
                    p.statements as f64 / n,
                    p.transactions as f64 / n,
                    p.parses as f64 / n,
                    p.connections
                );
            }
        }
    }
    if !list_results.is_empty() {
        println!();
        println!(
            "LIST cost: {list_objects} objects under a/; LIST at concurrency 1, {rounds} rounds x {list_requests} per case; full page = 1000"
        );
        println!(
            "{:<22} {:<40} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7}",
            "gatekeeper", "request", "objects", "p50 ms", "mean ms", "CPU us", "vol cs", "db rt"
        );
        for (g, what, s, objects) in &list_results {
            let (v, _) = s.switches();
            let rt =
                s.pg.map(|p| format!("{:.2}", p.round_trips as f64 / s.n()))
                    .unwrap_or_else(|| "-".into());
            println!(
                "{:<22} {:<40} {:>8} {:>8.2} {:>8.2} {:>9.0} {:>7.2} {:>7}",
                gks[*g].label,
                what,
                objects,
                s.percentile_ms(50),
                s.wall.as_secs_f64() * 1000.0 / s.n(),
                s.cpu_us(),
                v,
                rt
            );
        }
        println!();
        println!(
            "The index query alone (bench process, one connection, median of {} runs, LIMIT 1001):",
            rounds.max(1) * 10
        );
        println!(
            "{:<22} {:<7} {:>16} {:>6} {:>18} {:>6} {:>7}",
            "database", "prefix", "bounded ms", "rows", "unbounded ms", "rows", "ratio"
        );
        for (g, prefix, b, br, u, ur) in &query_results {
            println!(
                "{:<22} {:<7} {:>16.3} {:>6} {:>18.3} {:>6} {:>7.1}",
                gks[*g].label,
                prefix,
                b,
                br,
                u,
                ur,
                u / b
            );
        }
    }
    println!();
    println!(
        "Start-up until the process is quiet (2 s without a CPU tick): schema, keys, and the recovery pass (bucket listing + one index lookup per file)"
    );
    println!(
        "{:<22} {:>8} {:>10} {:>10} {:>10}",
        "gatekeeper", "objects", "CPU ms", "until ms", "db rt"
    );
    for gk in &gks {
        println!(
            "{:<22} {:>8} {:>10.0} {:>10.0} {:>10}",
            gk.label,
            "1 or 0",
            gk.startup.0.cpu_ticks as f64 * 1000.0 / clock_ticks_per_s() as f64,
            gk.startup.1.as_secs_f64() * 1000.0,
            "-"
        );
    }
    for (g, cost, wall, pg) in &restarts {
        println!(
            "{:<22} {:>8} {:>10.0} {:>10.0} {:>10}",
            gks[*g].label,
            list_objects + 1,
            cost.cpu_ticks as f64 * 1000.0 / clock_ticks_per_s() as f64,
            wall.as_secs_f64() * 1000.0,
            pg.map(|p| p.round_trips.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!();
    println!("load average at the end: {}", load());
}
