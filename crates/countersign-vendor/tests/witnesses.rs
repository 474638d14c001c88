//! Witnesses as processes: `countersign witness serve` instances on 127.0.0.1, a
//! gatekeeper (in-process, SQLite; and PostgreSQL under `scripts/services.sh`) that
//! names three of them with a quorum of two, sends them its checkpoints and serves
//! the cosigned one; `countersign audit prove --quorum 2` against it.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::merkle::Hash;
use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use countersign_core::witness::AddCheckpoint;
use countersign_core::{AuthorizedKey, PublicKey, Role};
use countersign_gatekeeper::config::{Config, Secret, WitnessConfig};
use countersign_gatekeeper::server;
use countersign_vendor::VendorKey;
use countersign_vendor::keys::{load_public_keys, public_key_json};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .env_remove("COUNTERSIGN_VENDOR_KEYS")
        .env_remove("COUNTERSIGN_GATEKEEPER_URL")
        .env_remove("COUNTERSIGN_PROFILE")
        .env_remove("COUNTERSIGN_PROFILES")
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `countersign witness serve` process, killed when dropped.
struct WitnessProcess {
    child: Child,
    url: String,
}

impl WitnessProcess {
    /// Starts witness `name` (key `<name>.key`, state `<name>.state`) on `listen`.
    fn start(dir: &Path, name: &str, listen: &str, log_key: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .current_dir(dir)
            .args(["witness", "serve", "--listen", listen, "--log-key"])
            .arg(log_key)
            .args(["--origin", "local/audit", "--name", name])
            .args(["--key", &format!("{name}.key")])
            .args(["--state", &format!("{name}.state")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let prefix = format!("witness {name} listening on ");
        let (addr, vkey) = line
            .trim_end()
            .strip_prefix(&prefix)
            .and_then(|r| r.split_once(" vkey "))
            .unwrap_or_else(|| panic!("unexpected first line `{line}`"));
        assert!(NoteVerifier::parse(vkey).unwrap().is_cosigner());
        let addr = addr.to_owned();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 127.0.0.1 address nothing listens on (yet).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn http(
    rt: &tokio::runtime::Runtime,
    method: &str,
    url: &str,
    body: Vec<u8>,
) -> (u16, String, String) {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let r = match method {
            "POST" => client.post(url).body(body),
            _ => client.get(url),
        }
        .send()
        .await
        .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    })
}

/// Polls `GET /v1/log/checkpoint` until it is a checkpoint of at least `min_size`
/// cosigned by exactly the witnesses `names`; returns its size and note.
fn wait_for_cosigned(
    rt: &tokio::runtime::Runtime,
    gk_url: &str,
    log_key: &NoteVerifier,
    witnesses: &[NoteVerifier],
    min_size: u64,
    names: &[&str],
) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let (status, _, note) = http(rt, "GET", &format!("{gk_url}/v1/log/checkpoint"), vec![]);
        if status == 200 {
            let (cp, signed) = Checkpoint::open(note.as_bytes(), "local/audit", log_key).unwrap();
            let all: Vec<&NoteVerifier> = witnesses.iter().collect();
            let mut by: Vec<String> = signed
                .verify(&all)
                .map(|v| v.into_iter().map(|v| v.name).collect())
                .unwrap_or_default();
            by.sort();
            if cp.size() >= min_size && by == names {
                return (cp.size(), note);
            }
            last = note;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no checkpoint of at least {min_size} entries cosigned by {names:?} within 30 s; last:\n{last}"
    );
}

fn put(dir: &Path, gk_url: &str, object: &str, receipt: &str) {
    std::fs::write(dir.join("a.txt"), object.as_bytes()).unwrap();
    ok(&run(
        dir,
        &[
            "put",
            "--gatekeeper",
            gk_url,
            "--gatekeeper-key",
            "gatekeeper.pub",
            "--signing-key",
            "vendor-1.key",
            "--audience",
            "local",
            "--bucket",
            "local",
            "--object",
            object,
            "--subject",
            "ops-1",
            "--receipt",
            receipt,
            "--content-type",
            "text/plain",
            "a.txt",
        ],
    ));
}

fn prove(dir: &Path, gk_url: &str, receipt: &str, witnesses: &[String], quorum: &str) -> Output {
    let mut args = vec![
        "audit",
        "prove",
        receipt,
        "--gatekeeper",
        gk_url,
        "--gatekeeper-key",
        "gatekeeper.pub",
        "--quorum",
        quorum,
    ];
    for w in witnesses {
        args.extend(["--witness", w.as_str()]);
    }
    run(dir, &args)
}

/// Sends an `add-checkpoint` request straight to a witness.
fn add_checkpoint(
    rt: &tokio::runtime::Runtime,
    witness: &str,
    old: u64,
    proof: Vec<Hash>,
    note: &str,
) -> (u16, String, String) {
    let body = AddCheckpoint {
        old,
        proof,
        note: note.as_bytes().to_vec(),
    }
    .encode();
    http(rt, "POST", &format!("{witness}/add-checkpoint"), body)
}

/// A vendor key, witness keys `names`, and a gatekeeper's configuration and key
/// (published as `gatekeeper.pub` for the witnesses and the CLI), in `d`.
struct Setup {
    verifiers: Vec<NoteVerifier>,
    vkeys: Vec<String>,
    config: Config,
    gk_pub: PathBuf,
    log_key: NoteVerifier,
    log_signer: NoteSigner,
}

fn setup(d: &Path, names: &[&str]) -> Setup {
    ok(&run(
        d,
        &["keygen", "--key-id", "vendor-1", "--out", "vendor-1.key"],
    ));
    let mut verifiers = Vec::new();
    for n in names {
        let out = format!("{n}.key");
        ok(&run(
            d,
            &["keygen", "--key-id", n, "--role", "witness", "--out", &out],
        ));
        let key = VendorKey::load(d.join(out)).unwrap().remove(0);
        let signer = NoteSigner::cosigner(n, key.signing_key().clone()).unwrap();
        verifiers.push(NoteVerifier::parse(&signer.verifier_key()).unwrap());
    }
    let vkeys = verifiers.iter().map(NoteVerifier::to_text).collect();
    let data_dir = d.join("gk");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut config = Config::embedded(
        &data_dir,
        load_public_keys(d.join("vendor-1.key.pub")).unwrap(),
    )
    .unwrap();
    config.checkpoint_interval = Duration::from_millis(100);
    config.witnesses.timeout = Duration::from_secs(2);
    let (gk_key, _) = countersign_gatekeeper::config::load_or_create_key(&config.key_path).unwrap();
    let public = AuthorizedKey {
        key_id: config.key_id.clone(),
        role: Role::gatekeeper(),
        public_key: PublicKey::from_bytes(&gk_key.verifying_key().to_bytes()).unwrap(),
        not_before: None,
        not_after: None,
    };
    let gk_pub = d.join("gatekeeper.pub");
    std::fs::write(&gk_pub, public_key_json(&public)).unwrap();
    Setup {
        verifiers,
        vkeys,
        config,
        gk_pub,
        log_key: NoteVerifier::ed25519("local/audit", public.public_key).unwrap(),
        log_signer: NoteSigner::ed25519("local/audit", gk_key).unwrap(),
    }
}

/// The witnesses at `urls` (the verifiers' order), with a quorum.
fn name_witnesses(config: &mut Config, urls: &[String], verifiers: &[NoteVerifier], quorum: usize) {
    config.witnesses.witnesses = urls
        .iter()
        .zip(verifiers)
        .map(|(url, v)| WitnessConfig {
            url: url.clone(),
            verifier: v.clone(),
        })
        .collect();
    config.witnesses.quorum = quorum;
}

/// Starts the gatekeeper on a free 127.0.0.1 port; it stops when the runtime drops.
fn start_gatekeeper(config: Config) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (state, _) = rt.block_on(server::build_state(config)).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(server::serve(state, listener));
    (rt, url)
}

/// The scenario, on the database at `database_url` (SQLite when `None`).
fn witnesses_scenario(database_url: Option<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let names = ["w1.example", "w2.example", "w3.example"];
    let Setup {
        verifiers,
        vkeys,
        mut config,
        gk_pub,
        log_key,
        log_signer,
    } = setup(d, &names);

    // Witnesses 1 and 2 run; witness 3 is down (nothing listens on its address).
    let w1 = WitnessProcess::start(d, names[0], "127.0.0.1:0", &gk_pub);
    let mut w2 = WitnessProcess::start(d, names[1], "127.0.0.1:0", &gk_pub);
    let w3_addr = free_addr();
    let urls = [w1.url.clone(), w2.url.clone(), format!("http://{w3_addr}")];
    name_witnesses(&mut config, &urls, &verifiers, 2);
    if let Some(url) = database_url {
        config.database_url = Secret::new(url);
    }
    let (rt, gk_url) = start_gatekeeper(config);

    // 2 of 3: the quorum is reached with witness 3 down.
    put(d, &gk_url, "org-1/a", "a.json");
    let (size1, _) = wait_for_cosigned(&rt, &gk_url, &log_key, &verifiers, 1, &names[..2]);
    let o = prove(d, &gk_url, "a.json", &vkeys, "2");
    assert!(
        ok(&o).contains("w1.example"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Three cosignatures are not there.
    let o = prove(d, &gk_url, "a.json", &vkeys, "3");
    assert!(String::from_utf8_lossy(&o.stderr).contains("threshold_not_met"));
    let (_, _, metrics) = http(&rt, "GET", &format!("{gk_url}/metrics"), vec![]);
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("countersign_witness_cosignature_age_seconds "))
        .expect("the metric is exported")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // Split view: a second checkpoint of the size witness 1 cosigned, genuinely
    // signed by the log's key over another tree. Witness 1 refuses it (409, naming
    // its size) and halts for the log.
    let (status, ct, body) = add_checkpoint(&rt, &w1.url, 0, vec![], "junk\n");
    assert_eq!(status, 400, "{body}");
    assert_eq!(ct, "text/plain; charset=utf-8");
    let cosigned_by_w1: u64 = {
        let honest = SignedNote::sign(
            Checkpoint::new("local/audit", size1, [0; 32], vec![])
                .unwrap()
                .body(),
            &[&log_signer],
        )
        .unwrap()
        .encode();
        let (status, ct, body) = add_checkpoint(&rt, &w1.url, 0, vec![], &honest);
        assert_eq!((status, ct.as_str()), (409, "text/x.tlog.size"), "{body}");
        body.trim_end().parse().unwrap()
    };
    assert!(cosigned_by_w1 >= size1);
    let forged = SignedNote::sign(
        Checkpoint::new("local/audit", cosigned_by_w1, [7; 32], vec![])
            .unwrap()
            .body(),
        &[&log_signer],
    )
    .unwrap()
    .encode();
    let (status, ct, body) = add_checkpoint(&rt, &w1.url, cosigned_by_w1, vec![], &forged);
    assert_eq!(
        (status, ct.as_str(), body),
        (409, "text/x.tlog.size", format!("{cosigned_by_w1}\n"))
    );
    let state = std::fs::read_to_string(d.join("w1.example.state")).unwrap();
    assert!(state.contains("fork: two checkpoints of"), "{state}");
    // A checkpoint signed by another key, or of another log, is not cosigned.
    let stranger = NoteSigner::ed25519(
        "local/audit",
        countersign_core::ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
    )
    .unwrap();
    let other = SignedNote::sign(
        Checkpoint::new("local/audit", 1, [1; 32], vec![])
            .unwrap()
            .body(),
        &[&stranger],
    )
    .unwrap()
    .encode();
    assert_eq!(add_checkpoint(&rt, &w2.url, 0, vec![], &other).0, 403);
    let elsewhere = SignedNote::sign(
        Checkpoint::new("elsewhere/audit", 1, [1; 32], vec![])
            .unwrap()
            .body(),
        &[&NoteSigner::ed25519(
            "elsewhere/audit",
            countersign_core::ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
        )
        .unwrap()],
    )
    .unwrap()
    .encode();
    assert_eq!(add_checkpoint(&rt, &w2.url, 0, vec![], &elsewhere).0, 404);

    // Witness 2 restarts on its address and remembers what it cosigned: a request
    // from size 0 is answered with its size.
    let w2_addr = w2.url.trim_start_matches("http://").to_owned();
    drop(w2);
    w2 = WitnessProcess::start(d, names[1], &w2_addr, &gk_pub);
    let (status, _, body) = add_checkpoint(&rt, &w2.url, 0, vec![], &forged);
    assert_eq!(status, 409);
    let remembered: u64 = body.trim_end().parse().unwrap();
    assert!(remembered >= size1, "{remembered}");
    // A proof that does not verify is refused (422) but, sent by anyone, is no
    // evidence against the log: witness 2 does not halt (it cosigns below).
    let longer = SignedNote::sign(
        Checkpoint::new("local/audit", remembered + 5, [9; 32], vec![])
            .unwrap()
            .body(),
        &[&log_signer],
    )
    .unwrap()
    .encode();
    let (status, _, body) = add_checkpoint(&rt, &w2.url, remembered, vec![[1; 32]], &longer);
    assert_eq!(status, 422, "{body}");
    let (status, _, _) = add_checkpoint(&rt, &w2.url, remembered + 6, vec![], &longer);
    assert_eq!(status, 400);
    // Witness 3 comes up; the log grows: witnesses 2 and 3 cosign, witness 1 (halted)
    // does not, and the gatekeeper serves the checkpoint without its cosignature.
    let _w3 = WitnessProcess::start(d, names[2], &w3_addr, &gk_pub);
    put(d, &gk_url, "org-1/b", "b.json");
    let (size2, _) = wait_for_cosigned(&rt, &gk_url, &log_key, &verifiers, size1 + 1, &names[1..]);
    assert!(size2 > size1);
    let (status, _, body) = add_checkpoint(&rt, &w1.url, cosigned_by_w1, vec![], &forged);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("halted"), "{body}");
    let o = prove(d, &gk_url, "b.json", &vkeys, "2");
    let out = ok(&o);
    assert!(
        out.contains("w2.example") && out.contains("w3.example") && !out.contains("w1.example"),
        "{out}"
    );
}

#[test]
fn witnesses_cosign_a_quorum_on_sqlite() {
    witnesses_scenario(None);
}

/// A gatekeeper restarted with a witness named (a `[log]` change needs a restart)
/// sends its newest stored checkpoint at once, without waiting for a new entry.
#[test]
fn a_restarted_gatekeeper_sends_its_newest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = setup(d, &["w1.example"]);
    let (rt, gk_url) = start_gatekeeper(s.config.clone());
    put(d, &gk_url, "org-1/a", "a.json");
    let (size, _) = wait_for_cosigned(&rt, &gk_url, &s.log_key, &s.verifiers, 1, &[]);
    drop(rt);
    let w1 = WitnessProcess::start(d, "w1.example", "127.0.0.1:0", &s.gk_pub);
    let mut config = s.config;
    name_witnesses(&mut config, std::slice::from_ref(&w1.url), &s.verifiers, 1);
    let (rt, gk_url) = start_gatekeeper(config);
    let (cosigned, _) = wait_for_cosigned(
        &rt,
        &gk_url,
        &s.log_key,
        &s.verifiers,
        size,
        &["w1.example"],
    );
    assert_eq!(cosigned, size);
    assert!(prove(d, &gk_url, "a.json", &s.vkeys, "1").status.success());
}

#[test]
fn witnesses_cosign_a_quorum_on_postgres() {
    let Ok(url) = std::env::var("COUNTERSIGN_TEST_PG_URL") else {
        let required = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
            || std::env::var("COUNTERSIGN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "COUNTERSIGN_TEST_PG_URL must be set (run under scripts/services.sh)"
        );
        eprintln!("SKIPPED: PostgreSQL test; run under scripts/services.sh to include it");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = format!("gk_witness_{}", std::process::id());
    let db = rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (base, _) = url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    });
    witnesses_scenario(Some(db));
}

/// A witness killed (SIGKILL) while it cosigns a stream of checkpoints remembers, once
/// restarted, the last checkpoint it answered with a cosignature (or the one it was
/// cosigning when killed, whose answer never left): its state is never lost or torn.
#[test]
fn a_killed_witness_remembers_what_it_cosigned() {
    use countersign_core::merkle::{MemoryTree, leaf_hash};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&run(
        d,
        &[
            "keygen",
            "--key-id",
            "gk",
            "--role",
            "gatekeeper",
            "--out",
            "gk.key",
        ],
    ));
    ok(&run(
        d,
        &[
            "keygen",
            "--key-id",
            "w1",
            "--role",
            "witness",
            "--out",
            "w1.example.key",
        ],
    ));
    let gk_key = VendorKey::load(d.join("gk.key")).unwrap().remove(0);
    let log_signer = NoteSigner::ed25519("local/audit", gk_key.signing_key().clone()).unwrap();
    let tree = Arc::new(MemoryTree::from_leaves(
        (0..100_000u64)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect(),
    ));
    let note = move |tree: &MemoryTree, size: u64| {
        SignedNote::sign(
            Checkpoint::new("local/audit", size, tree.root(size).unwrap(), vec![])
                .unwrap()
                .body(),
            &[&log_signer],
        )
        .unwrap()
        .encode()
    };
    let note = Arc::new(note);
    let rt = Arc::new(tokio::runtime::Runtime::new().unwrap());
    let acked = Arc::new(AtomicU64::new(0));
    let mut addr = "127.0.0.1:0".to_owned();
    for round in 0..3u64 {
        let w = WitnessProcess::start(d, "w1.example", &addr, &d.join("gk.key.pub"));
        addr = w.url.trim_start_matches("http://").to_owned();
        // After a restart the witness names what it remembers.
        let (status, _, body) = add_checkpoint(&rt, &w.url, 0, vec![], &note(&tree, 1));
        let remembered: u64 = if round == 0 {
            // A new witness cosigns the first checkpoint it is shown.
            assert_eq!(status, 200, "{body}");
            1
        } else {
            assert_eq!(status, 409, "{body}");
            let remembered = body.trim_end().parse().unwrap();
            let last = acked.load(Ordering::SeqCst);
            // The previous round stepped by `round` entries a request.
            assert!(
                remembered == last || remembered == last + round,
                "round {round}: cosigned up to {last}, remembers {remembered}"
            );
            remembered
        };
        acked.store(remembered, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (tree, note, rt, acked, stop, url) = (
                tree.clone(),
                note.clone(),
                rt.clone(),
                acked.clone(),
                stop.clone(),
                w.url.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let old = acked.load(Ordering::SeqCst);
                    let new = old + 1 + round;
                    let proof = tree.consistency_proof(old, new).unwrap();
                    let body = AddCheckpoint {
                        old,
                        proof,
                        note: note(&tree, new).into_bytes(),
                    }
                    .encode();
                    let sent = rt.block_on(async {
                        reqwest::Client::new()
                            .post(format!("{url}/add-checkpoint"))
                            .body(body)
                            .send()
                            .await
                    });
                    match sent {
                        Ok(r) if r.status() == 200 => acked.store(new, Ordering::SeqCst),
                        Ok(r) => panic!("the witness answered {}", r.status()),
                        Err(_) => return,
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300 + 70 * round));
        drop(w);
        stop.store(true, Ordering::SeqCst);
        sender.join().unwrap();
        let cosigned = acked.load(Ordering::SeqCst);
        assert!(
            cosigned > remembered,
            "round {round}: no cosignature at all"
        );
        eprintln!("round {round}: cosigned from {remembered} to {cosigned}, then killed");
    }
}
