//! The fault-injection suite: the gatekeeper binary under kill -9, clients that vanish
//! at every stage of a request, a SQLite file system that fills up or turns immutable,
//! PostgreSQL stopped and restarted, S3 unreachable or frozen behind a proxy, and many
//! large uploads at once. Each test injects its fault while requests flow, heals it,
//! and then checks the end state the promises of DESIGN.md require
//! (`faultkit::verify_end_state`): nothing acknowledged lost, every request audited
//! with its true outcome, no key stuck, storage and index agreeing after `reconcile`,
//! `audit verify` passing. Tests print `FAULT-REPORT` lines (recovery times, requests
//! lost) for BENCHMARKS.md.
//!
//! Run: `scripts/services.sh cargo test -p countersign-gatekeeper --test faults`
//! (SQLite faults need root for tmpfs and chattr; with the services required they fail
//! instead of skipping).

// Tests may unwrap and index: a panic here is a failed test, not a denial of service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod faultkit;

use common::Backend;
use faultkit::client::{self, Signed, Stage};
use faultkit::gk::{Options, Server, World};
use faultkit::proxy::{Mode, Proxy};
use faultkit::sys;
use faultkit::{Journal, Outcome, Tracked, Violations};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// Defaults of the `[limits]` keys the tests rely on (the tests leave them unset).
const DATABASE_TIMEOUT: Duration = Duration::from_millis(3000);
const STORAGE_TIMEOUT: Duration = Duration::from_millis(5000);
const UPLOAD_MEMORY_BYTES: u64 = 268_435_456;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::SqliteLocal).await;
                }
            )*
        }
        mod postgres_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(b) = super::Backend::from_env() {
                        super::$name(&b).await;
                    }
                }
            )*
        }
    };
}

both_backends!(
    kill9_during_uploads_loses_no_acknowledged_put_and_leaves_nothing_stuck,
    put_client_gone_after_headers_is_audited_truthfully_and_frees_the_key,
    put_client_gone_mid_body_is_audited_truthfully_and_frees_the_key,
    put_client_gone_after_full_body_is_audited_truthfully_and_frees_the_key,
    get_client_gone_before_or_mid_response_keeps_one_truthful_entry_and_leaks_nothing,
    put_failing_after_a_sidecar_write_leaves_the_key_usable_and_no_orphans,
    concurrent_large_uploads_keep_rss_under_the_upload_memory_cap,
);

fn name(b: &Backend, test: &str) -> String {
    match b {
        Backend::SqliteLocal => format!("sqlite_local::{test}"),
        Backend::PostgresS3 { .. } => format!("postgres_s3::{test}"),
    }
}

fn closed() -> std::io::Result<client::Resp> {
    Err(std::io::Error::other("the client closed the connection"))
}

/// Time from `heal` to the first acknowledged PUT sent after it.
fn recovery(sent: &[(Instant, Tracked)], heal: Instant) -> Option<Duration> {
    sent.iter()
        .filter(|(at, t)| *at >= heal && t.req.is_put && t.outcome == Outcome::Acked)
        .map(|(at, t)| *at + t.elapsed - heal)
        .min()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".into(), |d| d.as_millis().to_string())
}

/// Two clients doing PUT-then-GET of small objects until `stop`; every request with
/// the instant it was sent.
async fn steady_load(
    port: u16,
    journal: Journal,
    stop: Arc<AtomicBool>,
    prefix: &'static str,
) -> Vec<(Instant, Tracked)> {
    let client = |c: usize| {
        let journal = journal.clone();
        let stop = Arc::clone(&stop);
        async move {
            let mut out = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{prefix}/c{c}/{i}");
                i += 1;
                let at = Instant::now();
                let t = faultkit::send(
                    &journal,
                    port,
                    &client::put(&key, &faultkit::random_body(16 * 1024)),
                )
                .await;
                let acked = t.outcome == Outcome::Acked;
                out.push((at, t));
                if acked {
                    let at = Instant::now();
                    out.push((at, faultkit::send(&journal, port, &client::get(&key)).await));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            out
        }
    };
    let (a, b) = tokio::join!(client(0), client(1));
    a.into_iter().chain(b).collect()
}

/// Requests sent during `[from, to)` must be answered within `deadline` with success
/// or one of `codes`.
fn check_answers(
    sent: &[(Instant, Tracked)],
    from: Instant,
    to: Instant,
    deadline: Duration,
    codes: &[&str],
    fault: &str,
    v: &mut Violations,
) -> usize {
    let mut refused = 0;
    for (at, t) in sent.iter().filter(|(at, _)| *at >= from && *at < to) {
        let _ = at;
        v.check(t.elapsed <= deadline, || {
            format!(
                "during {fault}, a request for `{}` took {} ms (more than {} ms) to answer",
                t.req.key,
                t.elapsed.as_millis(),
                deadline.as_millis()
            )
        });
        match &t.outcome {
            Outcome::Acked => {}
            Outcome::Refused { code, .. } if codes.contains(&code.as_str()) => refused += 1,
            other => v.add(format!(
                "during {fault}, a request for `{}` ended {other:?}; expected success or one of {codes:?}",
                t.req.key
            )),
        }
    }
    refused
}

// --- kill -9 -------------------------------------------------------------------------

async fn kill9_during_uploads_loses_no_acknowledged_put_and_leaves_nothing_stuck(b: &Backend) {
    let test = name(b, "kill9_during_uploads");
    let w = World::new(b, Options::default()).await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    // Mostly a few MiB; 10 MiB goes through the multipart path.
    let sizes = [64 * 1024, 512 * 1024, MIB, 9 * MIB, 2 * MIB];
    let mut restart = None;
    for round in 0..3u64 {
        let mut server = w.start().await;
        if let Some(at) = restart.take() {
            let at: Instant = at;
            faultkit::report(
                &test,
                b,
                &[(
                    "restart_to_healthy_ms",
                    at.elapsed().as_millis().to_string(),
                )],
            );
        }
        let port = server.port;
        let clients: Vec<_> = (0..8usize)
            .map(|c| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    for i in 0usize.. {
                        let size = sizes[(c + i + round as usize) % sizes.len()];
                        let req = client::put(
                            &format!("kill/r{round}/c{c}/{i}"),
                            &faultkit::random_body(size),
                        );
                        let t0 = Instant::now();
                        let r = client::exchange_slowly(
                            port,
                            &req,
                            256 * 1024,
                            Duration::from_millis(15),
                        )
                        .await;
                        let dead = r.is_err();
                        faultkit::file(&journal, &req, &r, t0.elapsed());
                        if dead {
                            break;
                        }
                    }
                })
            })
            .collect();
        // Kill somewhere in the middle of the uploads, once this round has an
        // acknowledged PUT (on a loaded machine that can take a while).
        let wait = 2500 + (u64::from(faultkit::random_body(1)[0]) * 8);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let round_prefix = format!("kill/r{round}/");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20)
            && !journal
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.outcome == Outcome::Acked && t.req.key.starts_with(&round_prefix))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill9();
        restart = Some(Instant::now());
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_secs(30), c).await;
        }
    }
    let mut server = w.start().await;
    let killed: usize = journal
        .lock()
        .unwrap()
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::NoAnswer(_)))
        .count();
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    v.check(end.acked > 0, || {
        "no PUT was acknowledged before the kills, so the test proved nothing; upload less or kill later".into()
    });
    faultkit::report(
        &test,
        b,
        &[
            ("acked", end.acked.to_string()),
            ("killed_in_flight", killed.to_string()),
            ("lost", end.lost.to_string()),
            (
                "longest_key_unusable_ms",
                end.longest_unstick.as_millis().to_string(),
            ),
        ],
    );
    v.finish(&test);
}

// --- clients that vanish -------------------------------------------------------------

/// Sends each request up to `stage`, closes, lets the gatekeeper settle, then resends
/// the very same bytes: `replayed` proves the first attempt used the nonce, and then it
/// must have its audit entry.
async fn cancel_then_replay(
    server: &Server,
    w: &World,
    journal: &Journal,
    reqs: &[Signed],
    stage: Stage,
    v: &mut Violations,
) {
    for (i, r) in reqs.iter().enumerate() {
        let _ = client::send_and_close(server.port, r, stage, i % 2 == 1).await;
        faultkit::file(journal, r, &closed(), Duration::ZERO);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = match faultkit::audit_rows(&w.database_url).await {
        Ok(r) => r,
        Err(e) => return v.add(e),
    };
    for r in reqs {
        let t = faultkit::send(journal, server.port, r).await;
        if let Outcome::Refused { code, .. } = &t.outcome
            && code == "replayed"
        {
            v.check(before.iter().any(|e| e.request == r.canonical), || {
                format!(
                    "{stage:?}: the request for `{}` used its nonce but has no audit entry",
                    r.key
                )
            });
        }
    }
}

async fn put_cancel(b: &Backend, stage: Stage, test: &str) {
    let test = name(b, test);
    let w = World::new(b, Options::default()).await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    let reqs: Vec<Signed> = (0..6)
        .map(|i| {
            // One large body takes the multipart path.
            let size = if i == 0 { 10 * MIB } else { 256 * 1024 };
            client::put(
                &format!("cancel/{stage:?}/{i}"),
                &faultkit::random_body(size),
            )
        })
        .collect();
    cancel_then_replay(&server, &w, &journal, &reqs, stage, &mut v).await;
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        &test,
        b,
        &[
            ("lost", end.lost.to_string()),
            (
                "longest_key_unusable_ms",
                end.longest_unstick.as_millis().to_string(),
            ),
        ],
    );
    v.finish(&test);
}

async fn put_client_gone_after_headers_is_audited_truthfully_and_frees_the_key(b: &Backend) {
    put_cancel(b, Stage::AfterHeaders, "put_client_gone_after_headers").await;
}

async fn put_client_gone_mid_body_is_audited_truthfully_and_frees_the_key(b: &Backend) {
    put_cancel(b, Stage::MidBody, "put_client_gone_mid_body").await;
}

async fn put_client_gone_after_full_body_is_audited_truthfully_and_frees_the_key(b: &Backend) {
    put_cancel(b, Stage::AfterFullBody, "put_client_gone_after_full_body").await;
}

async fn get_client_gone_before_or_mid_response_keeps_one_truthful_entry_and_leaks_nothing(
    b: &Backend,
) {
    let test = name(b, "get_client_gone");
    let w = World::new(b, Options::default()).await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    // Larger than the socket buffers, so the response is still streaming when the
    // client leaves.
    let body = faultkit::random_body(6 * MIB);
    let t = faultkit::send(&journal, server.port, &client::put("get/big", &body)).await;
    assert_eq!(t.outcome, Outcome::Acked, "storing the object to read");
    // Warm the connection pools (database, S3) with as many concurrent reads as the
    // cancelled batches send, so that the pools' idle connections are not counted as
    // files the cancelled requests left open.
    let warm =
        futures::future::join_all((0..6).map(|_| faultkit::read_back(&server, "get/big"))).await;
    assert!(warm.iter().all(Result::is_ok), "warm-up reads: {warm:?}");
    let fds = server.open_fds();
    let early: Vec<Signed> = (0..4).map(|_| client::get("get/big")).collect();
    cancel_then_replay(&server, &w, &journal, &early, Stage::AfterHeaders, &mut v).await;
    let mid: Vec<Signed> = (0..6).map(|_| client::get("get/big")).collect();
    cancel_then_replay(&server, &w, &journal, &mid, Stage::MidResponse, &mut v).await;
    match faultkit::audit_rows(&w.database_url).await {
        Ok(rows) => {
            for r in &mid {
                let allows = rows
                    .iter()
                    .filter(|e| e.request == r.canonical && e.decision == "allow")
                    .count();
                v.check(allows == 1, || {
                    format!("a GET that received response bytes has {allows} allow entries, not 1")
                });
            }
        }
        Err(e) => v.add(e),
    }
    // The abandoned responses release what they held.
    let settled = faultkit::eventually(Duration::from_secs(15), || async {
        server.open_fds() <= fds + 2
    })
    .await;
    v.check(settled.is_some(), || {
        format!(
            "open files of the gatekeeper stayed at {} (before the cancelled GETs: {fds})",
            server.open_fds()
        )
    });
    match faultkit::read_back(&server, "get/big").await {
        Ok(got) => v.check(got == body, || "the object reads back changed".into()),
        Err(e) => v.add(format!("after the cancelled GETs, a GET answers {e}")),
    }
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(&test, b, &[("lost", end.lost.to_string())]);
    v.finish(&test);
}

// --- a failed storage write after the first sidecar ----------------------------------

async fn put_failing_after_a_sidecar_write_leaves_the_key_usable_and_no_orphans(b: &Backend) {
    let test = name(b, "put_failing_after_a_sidecar_write");
    if matches!(b, Backend::SqliteLocal) && !sys::root_for(&test) {
        return;
    }
    let (proxy, options) = match b {
        Backend::PostgresS3 { s3_endpoint, .. } => {
            let p = Proxy::start(s3_endpoint.trim_start_matches("http://")).await;
            let o = Options {
                s3_endpoint: Some(p.endpoint()),
                ..Options::default()
            };
            (Some(p), o)
        }
        Backend::SqliteLocal => (None, Options::default()),
    };
    let w = World::new(b, options).await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    // Whichever of the two files a PUT writes first, failing the other one is "a PUT
    // that fails after its first sidecar was written".
    for (n, target) in ["objects", "manifests"].into_iter().enumerate() {
        let warm = faultkit::send(
            &journal,
            server.port,
            &client::put(&format!("side/warm{n}"), b"warm"),
        )
        .await;
        v.check(warm.outcome == Outcome::Acked, || {
            format!("warm-up PUT: {:?}", warm.outcome)
        });
        let _fault = match (&proxy, &w.bucket) {
            (Some(p), _) => {
                let (_, s3_bucket) = w.s3.clone().unwrap();
                p.set(Mode::CutOn(
                    format!("PUT /{s3_bucket}/{target}/").into_bytes(),
                ));
                None
            }
            (None, common::BucketView::Dir(d)) => {
                let dir = d.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                Some(sys::Immutable::set(&[dir]).unwrap())
            }
            (None, common::BucketView::S3(_)) => unreachable!(),
        };
        let key = format!("side/{target}-fails");
        let req = client::put(&key, &faultkit::random_body(64 * 1024));
        let deadline = STORAGE_TIMEOUT * 3;
        let t0 = Instant::now();
        let r = tokio::time::timeout(deadline, client::exchange(server.port, &req)).await;
        match r {
            Ok(r) => {
                let t = faultkit::file(&journal, &req, &r, t0.elapsed());
                v.check(
                    t.outcome
                        == Outcome::Refused {
                            status: 503,
                            code: "storage_unavailable".into(),
                        },
                    || format!("a PUT while writes to {target}/ fail ended {:?}, expected 503 storage_unavailable", t.outcome),
                );
            }
            Err(_) => {
                faultkit::file(&journal, &req, &closed(), deadline);
                v.add(format!(
                    "a PUT while writes to {target}/ fail got no answer within {} ms",
                    deadline.as_millis()
                ));
            }
        }
        if let Some(p) = &proxy {
            p.set(Mode::Pass);
        }
    }
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        &test,
        b,
        &[
            ("lost", end.lost.to_string()),
            (
                "longest_key_unusable_ms",
                end.longest_unstick.as_millis().to_string(),
            ),
        ],
    );
    v.finish(&test);
}

// --- memory ----------------------------------------------------------------------------

async fn concurrent_large_uploads_keep_rss_under_the_upload_memory_cap(b: &Backend) {
    let test = name(b, "concurrent_large_uploads_rss");
    let w = World::new(b, Options::default()).await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = server.rss_kib();
    // 64 bodies just under the size the gatekeeper used to buffer whole: 512 MiB in
    // flight, twice the default upload memory.
    let body = Arc::new(faultkit::random_body(8 * MIB - 4096));
    let port = server.port;
    let tasks: Vec<_> = (0..64)
        .map(|c| {
            let journal = journal.clone();
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    let t =
                        faultkit::send(&journal, port, &client::put(&format!("rss/{c}"), &body))
                            .await;
                    match &t.outcome {
                        Outcome::Refused { code, .. }
                            if code == "overloaded" && t0.elapsed() < Duration::from_secs(120) =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        _ => return t,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let t = t.await.unwrap();
        v.check(t.outcome == Outcome::Acked, || {
            format!("upload `{}` under load ended {:?}", t.req.key, t.outcome)
        });
    }
    let peak = server.peak_rss_kib();
    let cap = baseline + UPLOAD_MEMORY_BYTES / 1024 + 64 * 1024;
    v.check(peak <= cap, || {
        format!(
            "peak RSS {} MiB exceeds {} MiB (start {} MiB + upload_memory_bytes 256 MiB + 64 MiB)",
            peak / 1024,
            cap / 1024,
            baseline / 1024
        )
    });
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        &test,
        b,
        &[
            ("rss_start_mib", (baseline / 1024).to_string()),
            ("rss_peak_mib", (peak / 1024).to_string()),
            ("lost", end.lost.to_string()),
        ],
    );
    v.finish(&test);
}

// --- SQLite ----------------------------------------------------------------------------

/// Runs the steady load, calls `inject` after a second, `heal` after three more, and
/// returns what was sent plus the instants of the fault and the heal.
async fn load_through<I, H>(
    server: &Server,
    journal: &Journal,
    prefix: &'static str,
    inject: I,
    heal: H,
) -> (Vec<(Instant, Tracked)>, Instant, Instant)
where
    I: FnOnce(),
    H: FnOnce(),
{
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(steady_load(
        server.port,
        journal.clone(),
        Arc::clone(&stop),
        prefix,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fault = Instant::now();
    inject();
    tokio::time::sleep(Duration::from_secs(3)).await;
    heal();
    let healed = Instant::now();
    // Run until a PUT after the heal succeeded, at most 30 s.
    let _ = faultkit::eventually(Duration::from_secs(30), || async {
        journal
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(4)
            .any(|t| t.req.is_put && t.outcome == Outcome::Acked)
            && healed.elapsed() > Duration::from_secs(1)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    (load.await.unwrap(), fault, healed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_filesystem_full_fails_closed_and_loses_no_acknowledged_put() {
    let test = "sqlite_filesystem_full";
    if !sys::root_for(test) {
        return;
    }
    let fs = sys::Tmpfs::mount("8m");
    let url = countersign_gatekeeper::config::sqlite_url(&fs.dir.join("gk.sqlite"));
    let w = World::new(
        &Backend::SqliteLocal,
        Options {
            database_url: Some(url),
            ..Options::default()
        },
    )
    .await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    let filler = std::sync::Mutex::new(None);
    let (sent, fault, healed) = load_through(
        &server,
        &journal,
        "full",
        || *filler.lock().unwrap() = Some(fs.fill()),
        || {
            if let Some(f) = filler.lock().unwrap().take() {
                std::fs::remove_file(f).unwrap();
            }
        },
    )
    .await;
    let refused = check_answers(
        &sent,
        fault,
        healed,
        DATABASE_TIMEOUT * 3,
        &["audit_unavailable"],
        "a full file system",
        &mut v,
    );
    let rec = recovery(&sent, healed);
    v.check(rec.is_some(), || {
        "no PUT succeeded after the file system had space again".into()
    });
    // Acknowledged means durable: a crash right now loses nothing.
    server.kill9();
    let mut server = w.start().await;
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        test,
        &Backend::SqliteLocal,
        &[
            ("refused_during_fault", refused.to_string()),
            ("recovery_ms", ms(rec)),
            ("acked", end.acked.to_string()),
            ("lost", end.lost.to_string()),
        ],
    );
    v.finish(test);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_made_immutable_mid_run_fails_closed_and_recovers() {
    let test = "sqlite_immutable";
    if !sys::root_for(test) {
        return;
    }
    let fs = sys::Tmpfs::mount("64m");
    let db = fs.dir.join("gk.sqlite");
    let url = countersign_gatekeeper::config::sqlite_url(&db);
    let w = World::new(
        &Backend::SqliteLocal,
        Options {
            database_url: Some(url),
            ..Options::default()
        },
    )
    .await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    let files: Vec<_> = ["gk.sqlite", "gk.sqlite-wal", "gk.sqlite-shm"]
        .iter()
        .map(|f| fs.dir.join(f))
        .chain([fs.dir.clone()])
        .collect();
    let guard = std::sync::Mutex::new(None);
    let (sent, fault, healed) = load_through(
        &server,
        &journal,
        "immutable",
        || *guard.lock().unwrap() = Some(sys::Immutable::set(&files).unwrap()),
        || drop(guard.lock().unwrap().take()),
    )
    .await;
    let refused_i = check_answers(
        &sent,
        fault,
        healed,
        DATABASE_TIMEOUT * 3,
        &["audit_unavailable"],
        "chattr +i",
        &mut v,
    );
    let rec_i = recovery(&sent, healed);
    v.check(rec_i.is_some(), || {
        "no PUT succeeded after chattr -i".into()
    });
    server.kill9();
    let mut server = w.start().await;
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        test,
        &Backend::SqliteLocal,
        &[
            ("refused_immutable", refused_i.to_string()),
            ("recovery_immutable_ms", ms(rec_i)),
            ("acked", end.acked.to_string()),
            ("lost", end.lost.to_string()),
        ],
    );
    v.finish(test);
}

// --- PostgreSQL ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_fails_closed_within_its_deadline_and_recovers_with_no_key_stuck() {
    let test = "postgres_stopped";
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    // A cluster of this test's own: stopping the shared one would break the others.
    let pg = sys::PgCluster::start();
    let backend = Backend::PostgresS3 {
        pg_url: pg.url(),
        s3_endpoint,
    };
    let w = World::new(&backend, Options::default()).await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    // An upload that is in flight when the database goes away.
    let slow = client::put("pg/in-flight", &faultkit::random_body(4 * MIB));
    let slow_task = {
        let (port, slow) = (server.port, slow.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r =
                client::exchange_slowly(port, &slow, 128 * 1024, Duration::from_millis(60)).await;
            (r, t0.elapsed())
        })
    };
    let port = server.port;
    let (sent, fault, healed) = load_through(
        &server,
        &journal,
        "pg",
        || pg.stop().unwrap(),
        || pg.start_again().unwrap(),
    )
    .await;
    let (r, took) = slow_task.await.unwrap();
    faultkit::file(&journal, &slow, &r, took);
    let refused = check_answers(
        &sent,
        fault + Duration::from_millis(200),
        healed,
        DATABASE_TIMEOUT * 3,
        &["audit_unavailable"],
        "a PostgreSQL outage",
        &mut v,
    );
    let rec = recovery(&sent, healed);
    v.check(rec.is_some(), || {
        "no PUT succeeded after PostgreSQL came back".into()
    });
    let ready = faultkit::eventually(Duration::from_secs(30), || async {
        client::plain_get(port, "/readyz")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    v.check(ready.is_some(), || {
        "/readyz did not return 200 after PostgreSQL came back".into()
    });
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        test,
        &backend,
        &[
            ("refused_during_fault", refused.to_string()),
            ("recovery_ms", ms(rec)),
            ("readyz_recovery_ms", ms(ready)),
            ("acked", end.acked.to_string()),
            ("lost", end.lost.to_string()),
        ],
    );
    v.finish(test);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_readyz_reports_it_and_healthz_stays_live() {
    let test = "postgres_stopped_readyz";
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let pg = sys::PgCluster::start();
    let backend = Backend::PostgresS3 {
        pg_url: pg.url(),
        s3_endpoint,
    };
    let w = World::new(&backend, Options::default()).await;
    let server = w.start().await;
    let mut v = Violations::default();
    let ok = client::plain_get(server.port, "/readyz").await;
    v.check(ok.as_ref().is_ok_and(|r| r.status == 200), || {
        format!(
            "/readyz with every dependency up: {:?}",
            ok.as_ref().map(client::Resp::describe)
        )
    });
    pg.stop().unwrap();
    probe_readiness(&server, DATABASE_TIMEOUT * 3, "PostgreSQL stopped", &mut v).await;
    pg.start_again().unwrap();
    v.finish(test);
}

/// During an outage: `/readyz` answers 503 with a JSON error within `deadline`, and
/// `/healthz` (liveness) answers 200.
async fn probe_readiness(server: &Server, deadline: Duration, fault: &str, v: &mut Violations) {
    match tokio::time::timeout(deadline, client::plain_get(server.port, "/readyz")).await {
        Ok(Ok(r)) => v.check(r.status == 503 && r.code().is_some(), || {
            format!(
                "with {fault}, /readyz answered {} (expected 503 with a JSON error)",
                r.describe()
            )
        }),
        Ok(Err(e)) => v.add(format!("with {fault}, /readyz failed: {e}")),
        Err(_) => v.add(format!(
            "with {fault}, /readyz did not answer within {} ms",
            deadline.as_millis()
        )),
    }
    match tokio::time::timeout(deadline, client::plain_get(server.port, "/healthz")).await {
        Ok(Ok(r)) => v.check(r.status == 200, || {
            format!(
                "with {fault}, /healthz (liveness) answered {}",
                r.describe()
            )
        }),
        Ok(Err(e)) => v.add(format!("with {fault}, /healthz failed: {e}")),
        Err(_) => v.add(format!(
            "with {fault}, /healthz did not answer within {} ms",
            deadline.as_millis()
        )),
    }
}

// --- S3 --------------------------------------------------------------------------------

/// S3 behind a proxy in `mode` for `hold`: a PUT and a GET sent when the fault starts
/// must answer 503 `storage_unavailable` within 3× the storage timeout; `/readyz`
/// reports it, `/healthz` stays 200. Then the end state.
async fn s3_outage(mode: Mode, hold: Duration, test: &str) {
    let Some(b) = Backend::from_env() else {
        return;
    };
    let Backend::PostgresS3 { s3_endpoint, .. } = &b else {
        unreachable!()
    };
    let proxy = Proxy::start(s3_endpoint.trim_start_matches("http://")).await;
    let w = World::new(
        &b,
        Options {
            s3_endpoint: Some(proxy.endpoint()),
            ..Options::default()
        },
    )
    .await;
    let mut server = w.start().await;
    let journal = faultkit::journal();
    let mut v = Violations::default();
    let body = faultkit::random_body(512 * 1024);
    let t = faultkit::send(&journal, server.port, &client::put("s3/before", &body)).await;
    assert_eq!(t.outcome, Outcome::Acked, "PUT before the fault");
    proxy.set(mode.clone());
    let fault = Instant::now();
    let deadline = STORAGE_TIMEOUT * 3;
    let port = server.port;
    let put_req = client::put("s3/during", &faultkit::random_body(256 * 1024));
    let get_req = client::get("s3/before");
    let timed = |req: Signed| {
        let journal = journal.clone();
        async move {
            let t0 = Instant::now();
            match tokio::time::timeout(deadline, client::exchange(port, &req)).await {
                Ok(r) => Some(faultkit::file(&journal, &req, &r, t0.elapsed())),
                Err(_) => {
                    faultkit::file(&journal, &req, &closed(), deadline);
                    None
                }
            }
        }
    };
    let mut probes = Violations::default();
    let fault_name = format!("S3 {mode:?}");
    let (put_t, get_t, ()) = tokio::join!(
        timed(put_req),
        timed(get_req),
        probe_readiness(&server, deadline, &fault_name, &mut probes)
    );
    for (what, t) in [("PUT", put_t), ("GET", get_t)] {
        match t {
            Some(t) => v.check(
                t.outcome
                    == Outcome::Refused {
                        status: 503,
                        code: "storage_unavailable".into(),
                    },
                || format!("a {what} with S3 {mode:?} ended {:?} after {} ms; expected 503 storage_unavailable", t.outcome, t.elapsed.as_millis()),
            ),
            None => v.add(format!(
                "a {what} with S3 {mode:?} got no answer within {} ms (3× storage_timeout_ms)",
                deadline.as_millis()
            )),
        }
    }
    v.absorb(probes);
    if let Some(rest) = hold.checked_sub(fault.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    proxy.set(Mode::Pass);
    let healed = Instant::now();
    let rec = faultkit::eventually(Duration::from_secs(60), || async {
        let key = format!("s3/after-{}", common::random_hex(4));
        faultkit::send(&journal, port, &client::put(&key, b"after"))
            .await
            .outcome
            == Outcome::Acked
    })
    .await;
    v.check(rec.is_some(), || {
        "no PUT succeeded within 60 s after S3 came back".into()
    });
    let ready = faultkit::eventually(Duration::from_secs(30), || async {
        client::plain_get(port, "/readyz")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    let _ = healed;
    let end = faultkit::verify_end_state(&w, &mut server, &journal, &mut v).await;
    faultkit::report(
        test,
        &b,
        &[
            ("recovery_ms", ms(rec)),
            ("readyz_recovery_ms", ms(ready)),
            ("acked", end.acked.to_string()),
            ("lost", end.lost.to_string()),
        ],
    );
    v.finish(test);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_frozen_requests_end_within_their_deadline_and_readyz_reports_it() {
    // Longer than the deadline, so a request that waits for the freeze to end fails.
    s3_outage(
        Mode::Freeze,
        STORAGE_TIMEOUT * 3 + Duration::from_secs(3),
        "s3_frozen",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_fails_with_storage_unavailable_and_recovers() {
    s3_outage(Mode::Refuse, Duration::from_secs(6), "s3_unreachable").await;
}
