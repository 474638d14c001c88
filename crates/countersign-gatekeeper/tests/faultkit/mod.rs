//! The fault-injection kit: a controllable TCP proxy ([`proxy`]), the gatekeeper as a
//! process ([`gk`]), a raw-socket client ([`client`]), operating-system faults
//! ([`sys`]), and the end-state check every fault test ends with
//! ([`verify_end_state`]): the promises of DESIGN.md, checked from the outside.

pub mod client;
pub mod gk;
pub mod proxy;
pub mod sys;

use client::{Resp, Signed};
use countersign_core::{Decision, Receipt};
use gk::{Server, World};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Random bytes.
pub fn random_body(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

/// How a request ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Acked,
    /// An error answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// The JSON error code (empty if none).
        code: String,
    },
    /// No (complete) answer: the connection failed, was cut, or the client left.
    NoAnswer(String),
}

/// A request a test sent, and what came of it.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// The request.
    pub req: Signed,
    /// Its end.
    pub outcome: Outcome,
    /// The receipt that came back, if any.
    pub receipt: Option<Receipt>,
    /// Time from send to answer.
    pub elapsed: Duration,
}

/// Every request a test sent.
pub type Journal = Arc<Mutex<Vec<Tracked>>>;

/// A new, empty journal.
pub fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

/// Files a finished exchange in the journal and returns what was filed.
pub fn file(
    journal: &Journal,
    req: &Signed,
    r: &std::io::Result<Resp>,
    elapsed: Duration,
) -> Tracked {
    let (outcome, receipt) = match r {
        Ok(resp) if (200..300).contains(&resp.status) => (Outcome::Acked, resp.receipt()),
        Ok(resp) => (
            Outcome::Refused {
                status: resp.status,
                code: resp.code().unwrap_or_default(),
            },
            resp.receipt(),
        ),
        Err(e) => (Outcome::NoAnswer(e.to_string()), None),
    };
    let t = Tracked {
        req: req.clone(),
        outcome,
        receipt,
        elapsed,
    };
    journal.lock().unwrap().push(t.clone());
    t
}

/// Sends `req` and files the result.
pub async fn send(journal: &Journal, port: u16, req: &Signed) -> Tracked {
    let t = Instant::now();
    let r = client::exchange(port, req).await;
    file(journal, req, &r, t.elapsed())
}

/// Broken promises found by a test; it fails with all of them at the end, so one run
/// shows everything that is wrong, not only the first thing.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    /// Records a broken promise.
    pub fn add(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }

    /// Records `what()` unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.add(what());
        }
    }

    /// Takes over another list's violations.
    pub fn absorb(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// Fails the test with every violation found.
    pub fn finish(self, test: &str) {
        if self.0.is_empty() {
            return;
        }
        let shown: Vec<String> = self.0.iter().take(40).map(|s| format!("  - {s}")).collect();
        panic!(
            "{test}: {} broken promise(s){}:\n{}",
            self.0.len(),
            if self.0.len() > 40 { " (first 40)" } else { "" },
            shown.join("\n")
        );
    }
}

/// Prints a measured number in a form BENCHMARKS.md is written from.
pub fn report(test: &str, backend: &crate::common::Backend, fields: &[(&str, String)]) {
    let b = match backend {
        crate::common::Backend::SqliteLocal => "sqlite+local",
        crate::common::Backend::PostgresS3 { .. } => "postgres+s3",
    };
    let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("FAULT-REPORT {test} backend={b} {}", f.join(" "));
}

/// One audit entry, read straight from the database.
#[derive(Clone, Debug)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// Key or prefix.
    pub key: String,
    /// allow or deny.
    pub decision: String,
    /// Error code of a denial.
    pub error: String,
    /// Canonical request bytes.
    pub request: Vec<u8>,
}

async fn pool(url: &str) -> Result<sqlx::AnyPool, String> {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))
}

/// Every audit entry, in order.
pub async fn audit_rows(url: &str) -> Result<Vec<AuditRow>, String> {
    use sqlx::Row as _;
    let p = pool(url).await?;
    let rows = sqlx::query(
        "SELECT seq, operation, object_key, decision, error_code, request FROM audit_log ORDER BY seq",
    )
    .fetch_all(&p)
    .await
    .map_err(|e| format!("cannot read audit_log: {e}"))?;
    p.close().await;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                seq: r.try_get(0).map_err(|e| e.to_string())?,
                // TEXT in older schemas, the raw bytes as received in newer ones.
                key: r.try_get::<String, _>(2).or_else(|_| {
                    r.try_get::<Vec<u8>, _>(2)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .map_err(|e| e.to_string())
                })?,
                decision: r.try_get(3).map_err(|e| e.to_string())?,
                error: r.try_get(4).map_err(|e| e.to_string())?,
                // The log keeps the `countersign-request` header text as received:
                // decode it to compare with the canonical bytes the client sent.
                request: {
                    let raw: Vec<u8> = r.try_get(5).map_err(|e| e.to_string())?;
                    std::str::from_utf8(&raw)
                        .ok()
                        .and_then(|t| countersign_core::text::parse_b64(t, "request").ok())
                        .unwrap_or(raw)
                },
            })
        })
        .collect()
}

/// One row of the object index.
#[derive(Clone, Debug)]
pub struct ObjectRow {
    /// Object key.
    pub key: String,
    /// `pending` or `stored`.
    pub state: String,
    /// The random storage name of a stored object (`None` while pending, or when the
    /// index has no such column).
    pub storage_name: Option<String>,
}

/// The index rows of the test bucket; the flag says whether `storage_name` exists.
pub async fn object_rows(url: &str) -> Result<(Vec<ObjectRow>, bool), String> {
    use sqlx::Row as _;
    let p = pool(url).await?;
    let bucket = crate::common::BUCKET;
    let with_name = sqlx::query(
        "SELECT object_key, state, storage_name FROM objects WHERE bucket = $1 ORDER BY object_key",
    )
    .bind(bucket)
    .fetch_all(&p)
    .await;
    let (rows, has_name) = match with_name {
        Ok(r) => (r, true),
        Err(_) => (
            sqlx::query(
                "SELECT object_key, state FROM objects WHERE bucket = $1 ORDER BY object_key",
            )
            .bind(bucket)
            .fetch_all(&p)
            .await
            .map_err(|e| format!("cannot read objects: {e}"))?,
            false,
        ),
    };
    p.close().await;
    let out = rows
        .iter()
        .map(|r| {
            Ok(ObjectRow {
                key: r.try_get(0).map_err(|e| e.to_string())?,
                state: r.try_get(1).map_err(|e| e.to_string())?,
                storage_name: if has_name {
                    r.try_get::<Option<String>, _>(2)
                        .map_err(|e| e.to_string())?
                } else {
                    None
                },
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((out, has_name))
}

/// How long a key whose upload died may stay unusable: the request's lifetime, the
/// default reservation grace (30 s), and slack for a reconcile pass.
pub const UNSTICK_WITHIN: Duration = Duration::from_secs(client::LIFETIME_SECS + 30 + 20);

/// Reads `key` through the gatekeeper: `Some(bytes)` on 200.
pub async fn read_back(server: &Server, key: &str) -> Result<Vec<u8>, String> {
    match server.send(&client::get(key)).await {
        Ok(r) if r.status == 200 => Ok(r.body),
        Ok(r) => Err(r.describe()),
        Err(e) => Err(e.to_string()),
    }
}

/// PUTs `body` to `key` until it is stored (201), or a 409 is explained by the object
/// existing with these bytes. Returns how long that took, or `None` (a violation) if
/// the key stayed unusable for [`UNSTICK_WITHIN`].
pub async fn unstick(
    server: &Server,
    journal: &Journal,
    key: &str,
    body: &Arc<[u8]>,
    v: &Mutex<Violations>,
) -> Option<Duration> {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < UNSTICK_WITHIN {
        let t = send(
            journal,
            server.port,
            &client::put_shared(key, Arc::clone(body)),
        )
        .await;
        match &t.outcome {
            Outcome::Acked => return Some(t0.elapsed()),
            Outcome::Refused { code, .. } if code == "already_exists" => {
                match read_back(server, key).await {
                    Ok(b) if *b == **body => return Some(t0.elapsed()),
                    Ok(_) => last = "409 already_exists, and the stored bytes differ".into(),
                    Err(e) => last = format!("409 already_exists, but a GET answers {e}"),
                }
            }
            other => last = format!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    v.lock().unwrap().add(format!(
        "key `{key}` is stuck: a PUT after its upload died still fails after {} s (last: {last})",
        UNSTICK_WITHIN.as_secs()
    ));
    None
}

/// What [`verify_end_state`] measured.
#[derive(Debug, Default)]
pub struct EndState {
    /// Acknowledged PUTs not readable byte-identical.
    pub lost: usize,
    /// Acknowledged PUTs checked.
    pub acked: usize,
    /// Longest time a dead upload's key stayed unusable during the check.
    pub longest_unstick: Duration,
}

/// The end state every fault test asserts, with the gatekeeper running again after the
/// fault healed:
/// 1. every acknowledged PUT reads back byte-identical;
/// 2. no key is stuck: a PUT to a key whose earlier upload did not succeed eventually
///    gets 201, or 409 only when that object exists (a `reconcile` runs meanwhile);
/// 3. every request has its documented audit entries with the true outcome: at most one
///    `allow`; an acknowledged request has its `allow` and no later `deny`; a refusal
///    with a receipt has the entry the receipt names (no sequence number reused or
///    lost); a PUT's `allow` is followed by its object being stored or by a `deny`
///    (its own, or reconcile's for the key);
/// 4. after the gatekeeper stops and `reconcile` runs: storage holds exactly the
///    objects and manifests of stored index rows, no reservation is pending, no
///    multipart upload is unfinished, and `audit verify` passes.
///
/// Stops `server`.
pub async fn verify_end_state(
    world: &World,
    server: &mut Server,
    journal: &Journal,
    v: &mut Violations,
) -> EndState {
    let mut end = EndState::default();
    let sent: Vec<Tracked> = journal.lock().unwrap().clone();

    // 1. Nothing acknowledged is lost.
    let mut acked_keys = BTreeSet::new();
    for t in sent
        .iter()
        .filter(|t| t.req.is_put && t.outcome == Outcome::Acked)
    {
        end.acked += 1;
        acked_keys.insert(t.req.key.clone());
        match read_back(server, &t.req.key).await {
            Ok(b) if *b == *t.req.body => {}
            Ok(b) => {
                end.lost += 1;
                v.add(format!(
                    "acknowledged PUT `{}` reads back {} bytes that differ from the {} stored",
                    t.req.key,
                    b.len(),
                    t.req.body.len()
                ));
            }
            Err(e) => {
                end.lost += 1;
                v.add(format!(
                    "acknowledged PUT `{}` is lost: GET answers {e}",
                    t.req.key
                ));
            }
        }
    }

    // 2. Nothing stuck.
    let mut unfinished: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    for t in sent.iter().filter(|t| t.req.is_put) {
        if !acked_keys.contains(&t.req.key) {
            unfinished.insert(t.req.key.clone(), t.req.body.clone());
        }
    }
    let shared = Mutex::new(std::mem::take(v));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reconciler = {
        let done = Arc::clone(&done);
        let path = world.config_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = gk::reconcile_with(&path)
                    && first_error.is_none()
                {
                    first_error = Some(e);
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            first_error
        })
    };
    let waits = futures::future::join_all(
        unfinished
            .iter()
            .map(|(k, b)| unstick(server, journal, k, b, &shared)),
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reconcile_error = reconciler.await.unwrap();
    *v = shared.into_inner().unwrap();
    end.longest_unstick = waits.into_iter().flatten().max().unwrap_or_default();

    // 3. The audit log tells the truth.
    let sent: Vec<Tracked> = journal.lock().unwrap().clone();
    match (
        audit_rows(&world.database_url).await,
        object_rows(&world.database_url).await,
    ) {
        (Ok(rows), Ok((objects, _))) => audit_truth(&rows, &objects, &sent, v),
        (Err(e), _) | (_, Err(e)) => v.add(e),
    }

    // 4. After reconcile, storage and index agree; the log verifies.
    server.stop();
    if let Err(e) = world.reconcile() {
        v.add(e);
    } else if let Some(e) = reconcile_error {
        v.add(format!("a reconcile while the gatekeeper ran: {e}"));
    }
    check_layout(world, v).await;
    let uploads = world.multipart_uploads().await;
    v.check(uploads == 0, || {
        format!("{uploads} unfinished multipart upload(s) left in S3 after reconcile")
    });
    if let Err(e) = world.audit_verify() {
        v.add(e);
    }
    end
}

/// Rule 3 of [`verify_end_state`].
pub fn audit_truth(rows: &[AuditRow], objects: &[ObjectRow], sent: &[Tracked], v: &mut Violations) {
    let stored: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o.state == "stored")
        .map(|o| o.key.as_str())
        .collect();
    let ours: BTreeSet<&[u8]> = sent.iter().map(|t| t.req.canonical.as_slice()).collect();
    let by_seq: BTreeMap<i64, &AuditRow> = rows.iter().map(|r| (r.seq, r)).collect();
    for t in sent {
        let key = &t.req.key;
        let mine: Vec<&AuditRow> = rows
            .iter()
            .filter(|r| r.request == t.req.canonical)
            .collect();
        let allows: Vec<&&AuditRow> = mine.iter().filter(|r| r.decision == "allow").collect();
        v.check(allows.len() <= 1, || {
            format!("a request for `{key}` has {} allow entries", allows.len())
        });
        if let Some(r) = &t.receipt {
            let seq = i64::try_from(r.audit_seq).unwrap_or(-1);
            match by_seq.get(&seq) {
                None => v.add(format!(
                    "the receipt for `{key}` names audit entry {seq}, which is not in the log"
                )),
                Some(row) if row.request != t.req.canonical => v.add(format!(
                    "the receipt for `{key}` names audit entry {seq}, which records another request (`{}`): a sequence number was reused",
                    row.key
                )),
                Some(row) => {
                    let expected = match r.decision {
                        Decision::Allow => ("allow", String::new()),
                        Decision::Deny(c) => ("deny", c.as_str().to_owned()),
                    };
                    v.check(
                        row.decision == expected.0 && row.error == expected.1,
                        || format!(
                            "the receipt for `{key}` says {expected:?}, its audit entry {seq} says {} {}",
                            row.decision, row.error
                        ),
                    );
                }
            }
        }
        let allow_seq = allows.first().map(|r| r.seq);
        let own_deny_after = |s: i64| {
            mine.iter()
                .any(|r| r.seq > s && r.decision == "deny" && r.error != "replayed")
        };
        match &t.outcome {
            Outcome::Acked => match allow_seq {
                None => v.add(format!(
                    "acknowledged {} `{key}` has no allow entry",
                    if t.req.is_put { "PUT" } else { "GET" }
                )),
                Some(s) => v.check(!own_deny_after(s), || {
                    format!("acknowledged request `{key}` has a deny entry after its allow")
                }),
            },
            Outcome::Refused { code, status }
                if code != "audit_unavailable" && !code.is_empty() =>
            {
                v.check(
                    mine.iter().any(|r| r.decision == "deny" && &r.error == code),
                    || format!("a request for `{key}` was refused ({status} {code}) but the log has no deny entry with that code"),
                );
            }
            _ => {}
        }
        if t.req.is_put
            && let Some(s) = allow_seq
        {
            let undone_by_reconcile = rows.iter().any(|r| {
                r.seq > s
                    && &r.key == key
                    && r.decision == "deny"
                    && !ours.contains(r.request.as_slice())
            });
            v.check(
                own_deny_after(s) || undone_by_reconcile || stored.contains(key.as_str()),
                || format!(
                    "the PUT of `{key}` has an allow entry ({s}) but is neither stored nor followed by a deny entry (its own or reconcile's): {:?}",
                    t.outcome
                ),
            );
        }
    }
}

fn storage_name(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.split_once('/')?;
    let ok = (dir == "objects" || dir == "manifests")
        && name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some((dir, name))
}

/// Rule 4's storage part: the bucket holds exactly `objects/<name>` and
/// `manifests/<name>` of every stored row, and no reservation is pending.
pub async fn check_layout(world: &World, v: &mut Violations) {
    let (objects, has_name) = match object_rows(&world.database_url).await {
        Ok(o) => o,
        Err(e) => return v.add(e),
    };
    if !has_name {
        v.add("the objects table has no storage_name column, so storage cannot be matched to the index");
    }
    let names: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.state == "stored")
        .filter_map(|o| o.storage_name.clone())
        .collect();
    let paths = world.storage_paths().await;
    let present: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    let mut unknown = Vec::new();
    let mut outside = Vec::new();
    for p in &paths {
        match storage_name(p) {
            Some((_, name)) if names.contains(name) => {}
            Some(_) => unknown.push(p.as_str()),
            None => outside.push(p.as_str()),
        }
    }
    // One line per kind, with examples: a layout problem is one problem.
    let examples = |v: &[&str]| v.iter().take(3).copied().collect::<Vec<_>>().join("`, `");
    v.check(unknown.is_empty(), || {
        format!(
            "after reconcile, storage holds {} file(s) no stored index row names, e.g. `{}`",
            unknown.len(),
            examples(&unknown)
        )
    });
    v.check(outside.is_empty(), || {
        format!(
            "after reconcile, storage holds {} file(s) outside the layout objects/<name>, manifests/<name>, e.g. `{}`",
            outside.len(),
            examples(&outside)
        )
    });
    let mut missing = Vec::new();
    for o in objects.iter().filter(|o| o.state == "stored") {
        match &o.storage_name {
            Some(n) => {
                for dir in ["objects", "manifests"] {
                    if !present.contains(format!("{dir}/{n}").as_str()) {
                        missing.push(format!("{}: {dir}/{n}", o.key));
                    }
                }
            }
            None if has_name => missing.push(format!("{}: no storage_name", o.key)),
            None => {}
        }
    }
    v.check(missing.is_empty(), || {
        format!(
            "{} stored index row(s) lack their file in storage, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        )
    });
    for o in objects.iter().filter(|o| o.state != "stored") {
        v.add(format!(
            "after reconcile, the reservation of `{}` is still `{}`",
            o.key, o.state
        ));
    }
}

/// Waits until `cond` holds, polling, for at most `within`. Returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < within {
        if cond().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
