//! Small requests through the gatekeeper next to nginx, the way a newcomer would
//! measure them.
//!
//! - **1 KiB GET and PUT**: the gatekeeper (SQLite + local directory) and Debian's
//!   nginx (one process, no master) serving the same directory (PUT through nginx's
//!   WebDAV module), each loaded by `wrk` (one thread) replaying pre-signed requests,
//!   every request with its own nonce (nginx gets the same requests and ignores the
//!   headers). Printed per method and concurrency: requests/s, the ratio to nginx, CPU
//!   µs per request of the server process (`utime + stime`, `/proc/PID/stat`), its
//!   context switches per request (voluntary + involuntary over all its threads,
//!   `/proc/PID/task/*/status`), p50 and p99, and the p50 the gatekeeper adds to
//!   nginx's. The crypto a request needs at least (two strict verifications and one
//!   signature) is timed in-process for reference.
//! - **Counted per request** when `perf` works (`perf stat -p PID` over each wrk run):
//!   the server's CPU time from `task-clock` (nanoseconds, not 10 ms ticks), its
//!   context switches and its system calls (`raw_syscalls:sys_enter`), and any extra
//!   events named in `COUNTERSIGN_BENCH_PERF_EVENTS` (e.g. a `perf probe` on `malloc`
//!   to count allocations). Counted events are steadier than times on a loaded machine.
//! - **Two builds side by side**: `COUNTERSIGN_BENCH_BASELINE` names an older
//!   gatekeeper binary; it gets its own directory and the same requests, and runs in
//!   every cell right after nginx and before the current build.
//!
//! ```text
//! scripts/bench-vs-nginx.sh
//! ```
//!
//! Environment: `COUNTERSIGN_BENCH_SECS` (seconds per wrk run,
//! default 5), `COUNTERSIGN_BENCH_CONCURRENCY` (default `1,16`),
//! `COUNTERSIGN_BENCH_GATEKEEPER` (the gatekeeper binary; default the one this
//! package builds: point it at another build to compare two versions),
//! `COUNTERSIGN_BENCH_NGINX` and `COUNTERSIGN_BENCH_WRK` (default `nginx` and `wrk`
//! on `PATH`), `COUNTERSIGN_BENCH_MAX_RATE` (requests/s the pre-signed set is sized
//! for, default 20000: a run that exhausts it reports `reused` > 0, and the reused
//! requests are refused as replays), `COUNTERSIGN_BENCH_METHODS` (default `GET,PUT`),
//! `COUNTERSIGN_BENCH_PERF` (`0` skips `perf stat`). Audit append throughput is
//! measured by the `audit_append` bench.

// A benchmark is a developer tool, not a server: a panic is a failed run with a
// message, so unwrap/expect/panic/indexing are fine here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;
// This bench drives its load with wrk, so `round` goes unused here.
#[allow(dead_code)]
#[path = "load/mod.rs"]
mod load;
// Each benchmark uses a part of the shared process helpers.
#[allow(dead_code)]
#[path = "process/mod.rs"]
mod process;
#[path = "signing/mod.rs"]
mod signing;

use common::now;
use countersign_core::ed25519_dalek::SigningKey;
use countersign_core::text::b64;
use countersign_core::{
    BodyDigest, ContentType, Decision, GatekeeperId, KeyId, ObjectKey, Operation, Receipt,
};
use load::{env_num, random_bytes};
use process::{NginxConfig, Server, find_on_path, process_cost};
use signing::{BUCKET, GK_ID, sign, vendor_keys};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SMALL: usize = 1024;

fn put_op(key: &str, body: &[u8]) -> Operation {
    Operation::Put {
        key: ObjectKey::parse(key).unwrap(),
        content_type: ContentType::parse("application/octet-stream").unwrap(),
        body: BodyDigest::of(body),
    }
}

// --- what a process costs ----------------------------------------------------------

/// `perf stat` attached to a process for the length of one wrk run.
struct PerfStat {
    child: Child,
    out: PathBuf,
}

/// The events counted for every server: CPU time, context switches, system calls,
/// then the extra events of `COUNTERSIGN_BENCH_PERF_EVENTS`.
fn perf_events() -> Vec<String> {
    let mut events: Vec<String> = ["task-clock", "context-switches", "raw_syscalls:sys_enter"]
        .map(str::to_owned)
        .into();
    if let Ok(extra) = std::env::var("COUNTERSIGN_BENCH_PERF_EVENTS") {
        events.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
        );
    }
    events
}

/// Whether `perf stat` can count this machine's software events (and is wanted).
fn perf_available() -> bool {
    std::env::var("COUNTERSIGN_BENCH_PERF").as_deref() != Ok("0")
        && Command::new("perf")
            .args(["stat", "-x,", "-e", &perf_events().join(","), "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

impl PerfStat {
    fn start(pid: u32, dir: &Path) -> Self {
        let out = dir.join("perf-stat.csv");
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", &perf_events().join(","), "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start perf");
        // perf attaches to every thread before it counts.
        std::thread::sleep(Duration::from_millis(300));
        Self { child, out }
    }

    /// Stops counting (SIGINT makes perf print its totals) and returns each event's
    /// count, in the order of [`perf_events`].
    fn stop(mut self) -> Vec<f64> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        perf_events()
            .iter()
            .map(|event| {
                text.lines()
                    .map(|l| l.split(',').collect::<Vec<_>>())
                    .find(|f| f.len() > 2 && f[2].starts_with(event.as_str()))
                    .and_then(|f| f[0].parse::<f64>().ok())
                    // perf prints task-clock in milliseconds.
                    .map_or(
                        f64::NAN,
                        |v| if event == "task-clock" { v * 1e3 } else { v },
                    )
            })
            .collect()
    }
}

// --- servers --------------------------------------------------------------------------

fn gatekeeper(binary: &str, dir: &Path, bucket: &Path) -> Server {
    let [k1, k2] = vendor_keys();
    let config = format!(
        r#"gatekeeper_id = "{GK_ID}"

[[keys]]
key_id = "v1"
role = "vendor"
public_key = "{pk1}"

[[keys]]
key_id = "v2"
role = "vendor"
public_key = "{pk2}"

[limits]
reconcile_interval_secs = 86400

[thresholds]
GET = {{ vendor = 2 }}
PUT = {{ vendor = 2 }}

[buckets.{BUCKET}]
store = "local"
path = "{bucket}"

[[acl]]
effect = "allow"
subjects = ["*"]
operations = ["GET", "PUT"]
"#,
        pk1 = b64(&k1.verifying_key().to_bytes()),
        pk2 = b64(&k2.verifying_key().to_bytes()),
        bucket = bucket.display(),
    );
    std::fs::write(dir.join("gatekeeper.toml"), config).unwrap();
    Server::gatekeeper(binary, &dir.join("gatekeeper.toml"), dir, "gatekeeper")
}

/// nginx, one process, serving `root` (GET) and taking PUTs under `/put/` into it;
/// defaults otherwise, an access log line per request included.
fn nginx(binary: &str, dir: &Path, root: &Path) -> Server {
    let config = NginxConfig {
        access_log: true,
        worker_connections: 1024,
        keepalive_requests: Some(1_000_000),
        webdav_put: true,
    };
    Server::nginx(binary, dir, root, &config).unwrap_or_else(|e| panic!("{e}"))
}

// --- wrk ------------------------------------------------------------------------------

/// Pre-formats every request once (so that the Lua side costs wrk little), sends them
/// in order, and prints one `RESULT` line.
const WRK_SCRIPT: &str = r#"
local reqs = {}
local n = 0
local sent = 0
init = function(args)
  local body = nil
  if args[2] ~= "" then
    local f = io.open(args[2], "rb"); body = f:read("*a"); f:close()
  end
  for l in io.lines(args[1]) do
    local method, path, req, sig = l:match("^(%S+) (%S+) (%S+) (%S+)$")
    n = n + 1
    reqs[n] = wrk.format(method, path, {
      ["countersign-request"] = req,
      ["countersign-signature"] = sig,
      ["content-type"] = "application/octet-stream",
    }, body)
  end
end
request = function()
  sent = sent + 1
  return reqs[(sent - 1) % n + 1]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;

struct Run {
    rps: f64,
    cpu_us: f64,
    switches: f64,
    p50_us: f64,
    p99_us: f64,
    refused: u64,
    reused: u64,
    /// Per request, the [`perf_events`] counts (empty without perf).
    counted: Vec<f64>,
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no {name}: {line}"))
}

/// Runs wrk against `server` with the requests of `lines` (one thread, `connections`
/// connections, `secs` seconds).
#[allow(clippy::too_many_arguments)]
fn wrk(
    wrk_bin: &str,
    dir: &Path,
    server: &Server,
    lines: &[String],
    body: Option<&Path>,
    connections: usize,
    secs: usize,
    perf: bool,
) -> Run {
    let script = dir.join("replay.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let list = dir.join("requests.txt");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let pid = server.child.id();
    let counting = perf.then(|| PerfStat::start(pid, dir));
    let before = process_cost(pid);
    let out = Command::new(wrk_bin)
        .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")])
        .arg("-s")
        .arg(&script)
        .arg(&server.base)
        .arg("--")
        .arg(&list)
        .arg(body.map(|b| b.display().to_string()).unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {wrk_bin}: {e}"));
    let after = process_cost(pid);
    let counted = counting.map(PerfStat::stop).unwrap_or_default();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let requests = field(line, "requests");
    let n = requests.max(1) as f64;
    Run {
        rps: requests as f64 / (field(line, "duration_us") as f64 / 1e6),
        cpu_us: after.minus(before).cpu_time().as_secs_f64() * 1e6 / n,
        switches: after.minus(before).switches() as f64 / n,
        p50_us: field(line, "p50_us") as f64,
        p99_us: field(line, "p99_us") as f64,
        refused: field(line, "non2xx") + field(line, "socket_errors"),
        reused: requests.saturating_sub(lines.len() as u64),
        counted: counted.into_iter().map(|c| c / n).collect(),
    }
}

fn find(var: &str, name: &str) -> String {
    std::env::var(var)
        .ok()
        .or_else(|| find_on_path(name))
        .unwrap_or_else(|| {
            panic!("no `{name}` found: install it (apt-get install {name}) or set {var}")
        })
}

/// The stored file of the object `small`: the bucket directory's only regular file
/// under `objects/` (its manifest is under `manifests/`).
fn stored_file(bucket: &Path) -> String {
    let mut found = Vec::new();
    let mut stack = vec![bucket.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(bucket).unwrap().display().to_string();
            if !rel.starts_with("objects") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(rel);
            }
        }
    }
    assert_eq!(found.len(), 1, "expected one stored file, found {found:?}");
    found.remove(0)
}

/// Two strict verifications of a canonical GET request and one receipt signature,
/// in µs: what a request costs at least.
fn crypto_us() -> f64 {
    use countersign_core::ed25519_dalek::Signer as _;
    let (request, _) = sign(Operation::Get {
        key: ObjectKey::parse("small").unwrap(),
        range: None,
    });
    let canonical = countersign_core::text::parse_b64(&request, "").unwrap();
    let keys = vendor_keys();
    let signatures = keys.each_ref().map(|k| k.sign(&canonical));
    let receipt_key = SigningKey::from_bytes(&[7; 32]);
    let receipt = Receipt {
        gatekeeper: GatekeeperId::parse(GK_ID).unwrap(),
        request_sha256: [1; 32],
        decision: Decision::Allow,
        decided_at: now(),
        audit_seq: 1,
        leaf_sha256: Some([3; 32]),
    };
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        for (k, s) in keys.iter().zip(&signatures) {
            k.verifying_key().verify_strict(&canonical, s).unwrap();
        }
        std::hint::black_box(receipt.sign(&receipt_key, KeyId::parse("gk").unwrap()));
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn requests(secs: usize) -> usize {
    env_num("COUNTERSIGN_BENCH_MAX_RATE", 20_000) * secs
}

/// A gatekeeper under test: its build, process and directory.
struct Subject {
    name: &'static str,
    dir: tempfile::TempDir,
    server: Server,
}

/// Starts the gatekeeper `binary` in a directory of its own and stores the object
/// every GET reads; returns it with the stored file's path (relative to its bucket).
async fn start_subject(name: &'static str, binary: &str, body: &[u8]) -> (Subject, String) {
    let dir = tempfile::Builder::new()
        .prefix("countersign-bench-")
        .tempdir()
        .unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let server = gatekeeper(binary, dir.path(), &bucket);
    let (request, signature) = sign(put_op("small", body));
    let r = reqwest::Client::new()
        .put(format!("{}/v1/objects/{BUCKET}/small", server.base))
        .header("countersign-request", request)
        .header("countersign-signature", signature)
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status.is_success(),
        "PUT small ({name}): {status} {}",
        r.text().await.unwrap()
    );
    let file = stored_file(&bucket);
    (Subject { name, dir, server }, file)
}

fn print_row(method: &str, c: usize, name: &str, r: &Run, base: &Run) {
    let extra: String = r.counted.iter().map(|v| format!(" {v:>10.1}")).collect();
    println!(
        "{method:<4} {c:>3} {name:<10} {:>9.0} {:>7.3} {:>8.1} {:>9.2} {:>8.0} {:>8.0} {:>9} {:>8} {:>7}{extra}",
        r.rps,
        r.rps / base.rps,
        r.cpu_us,
        r.switches,
        r.p50_us,
        r.p99_us,
        if name == "nginx" {
            "-".to_owned()
        } else {
            format!("{:.0}", r.p50_us - base.p50_us)
        },
        r.refused,
        if name == "nginx" {
            "-".to_owned()
        } else {
            r.reused.to_string()
        },
    );
}

async fn http_vs_nginx(secs: usize, levels: &[usize], methods: &[String]) {
    let wrk_bin = find("COUNTERSIGN_BENCH_WRK", "wrk");
    let nginx_bin = find("COUNTERSIGN_BENCH_NGINX", "nginx");
    let current = std::env::var("COUNTERSIGN_BENCH_GATEKEEPER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_countersign-gatekeeper").to_owned());
    let body = random_bytes(SMALL);
    let mut subjects = Vec::new();
    if let Ok(baseline) = std::env::var("COUNTERSIGN_BENCH_BASELINE") {
        subjects.push(start_subject("baseline", &baseline, &body).await);
    }
    subjects.push(start_subject("gatekeeper", &current, &body).await);
    // nginx serves the current build's bucket directory.
    let (last, file) = subjects.last().unwrap();
    let bucket = last.dir.path().join("bucket");
    let body_file = last.dir.path().join("body");
    std::fs::write(&body_file, &body).unwrap();
    let ngx_dir = last.dir.path().join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let ngx = nginx(&nginx_bin, &ngx_dir, &bucket);
    let perf = perf_available();
    println!(
        "1 KiB requests, wrk -t1 replaying pre-signed requests, {secs} s per run; \
         nginx serves the gatekeeper's stored file `{file}` ({} bytes) from the same directory",
        std::fs::metadata(bucket.join(file)).unwrap().len()
    );
    println!(
        "crypto alone (2 verify_strict + 1 receipt signature): {:.0} µs/request",
        crypto_us()
    );
    if perf {
        println!(
            "counted per request by perf stat: {} (task-clock in µs)",
            perf_events().join(", ")
        );
    } else {
        println!("perf stat: not available (or COUNTERSIGN_BENCH_PERF=0): no counted columns");
    }
    println!();
    let counted_heads: String = if perf {
        perf_events()
            .iter()
            .map(|e| format!(" {:>10}", e.rsplit(':').next().unwrap_or(e)))
            .collect()
    } else {
        String::new()
    };
    println!(
        "{:<4} {:>3} {:<10} {:>9} {:>7} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>7}{counted_heads}",
        "op",
        "c",
        "server",
        "req/s",
        "ratio",
        "CPU µs",
        "ctx sw",
        "p50 µs",
        "p99 µs",
        "+p50 µs",
        "refused",
        "reused"
    );
    let mut run_no = 0;
    for method in methods {
        let method = method.as_str();
        for &c in levels {
            run_no += 1;
            let n = requests(secs);
            let mut ngx_lines = Vec::with_capacity(n);
            let mut gk_lines = Vec::with_capacity(n);
            for i in 0..n {
                let (path, op) = if method == "GET" {
                    (
                        format!("/v1/objects/{BUCKET}/small"),
                        Operation::Get {
                            key: ObjectKey::parse("small").unwrap(),
                            range: None,
                        },
                    )
                } else {
                    let key = format!("put/{run_no}/{i}");
                    (format!("/v1/objects/{BUCKET}/{key}"), put_op(&key, &body))
                };
                let (req, sig) = sign(op);
                let ngx_path = if method == "GET" {
                    format!("/{file}")
                } else {
                    format!("/put/{run_no}/{i}")
                };
                gk_lines.push(format!("{method} {path} {req} {sig}"));
                ngx_lines.push(format!("{method} {ngx_path} {req} {sig}"));
            }
            let put_body = (method == "PUT").then_some(body_file.as_path());
            let base = wrk(
                &wrk_bin, &ngx_dir, &ngx, &ngx_lines, put_body, c, secs, perf,
            );
            print_row(method, c, "nginx", &base, &base);
            // Each build gets the same requests: their nonces are its own log's.
            for (s, _) in &subjects {
                let r = wrk(
                    &wrk_bin,
                    s.dir.path(),
                    &s.server,
                    &gk_lines,
                    put_body,
                    c,
                    secs,
                    perf,
                );
                print_row(method, c, s.name, &r, &base);
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let secs = env_num("COUNTERSIGN_BENCH_SECS", 5);
    let levels: Vec<usize> = std::env::var("COUNTERSIGN_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("COUNTERSIGN_BENCH_CONCURRENCY: numbers")
        })
        .collect();
    let methods: Vec<String> = std::env::var("COUNTERSIGN_BENCH_METHODS")
        .unwrap_or_else(|_| "GET,PUT".into())
        .split(',')
        .map(|m| m.trim().to_uppercase())
        .inspect(|m| {
            assert!(
                m == "GET" || m == "PUT",
                "COUNTERSIGN_BENCH_METHODS: GET and/or PUT"
            )
        })
        .collect();
    rt.block_on(async {
        http_vs_nginx(secs, &levels, &methods).await;
    });
}
