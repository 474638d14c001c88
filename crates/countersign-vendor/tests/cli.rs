//! The `countersign` binary: keygen → sign → verify → inspect, error lines and exit
//! codes.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::text::{b64, parse_b64};
use countersign_core::{Decision, GatekeeperId, KeyId, Receipt, Request, Role};
use countersign_vendor::VendorKey;
use std::path::Path;
use std::process::{Command, Output};

const NOW: &str = "1800000000";

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .env_remove("COUNTERSIGN_VENDOR_KEYS")
        .env_remove("COUNTERSIGN_PROFILE")
        .env_remove("COUNTERSIGN_PROFILES")
        // Profiles only from the test's own directory, never the user's.
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Exit code, and the one stderr line's code if it failed.
fn outcome(o: &Output) -> (i32, String) {
    let err = stderr(o);
    let code = err
        .strip_prefix("countersign: error[")
        .and_then(|r| r.split(']').next())
        .unwrap_or("")
        .to_owned();
    if !err.is_empty() && o.status.code() != Some(2) {
        assert_eq!(err.lines().count(), 1, "errors are one line: {err}");
    }
    (o.status.code().unwrap(), code)
}

fn header(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap()
        .to_owned()
}

fn sign_get(dir: &Path, key: &str, object: &str) -> (String, String) {
    let o = run(
        dir,
        &[
            "sign",
            "--signing-key",
            key,
            "--audience",
            "gk.acme",
            "--method",
            "get",
            "--bucket",
            "reports",
            "--object",
            object,
            "--subject",
            "user-42",
            "--now",
            NOW,
        ],
    );
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    let out = stdout(&o);
    (
        header(&out, "Countersign-Request"),
        header(&out, "Countersign-Signature"),
    )
}

#[test]
fn keygen_sign_verify_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(d, &["keygen", "--key-id", "vendor-2026", "--out", "v.key"]);
    assert_eq!(outcome(&o).0, 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("v.key.pub"));
    // keygen never overwrites.
    assert_eq!(
        outcome(&run(d, &["keygen", "--key-id", "x", "--out", "v.key"])),
        (3, "io".into())
    );

    let (request, signature) = sign_get(d, "v.key", "org-1/report 7.pdf");
    let canonical = parse_b64(&request, "r").unwrap();
    let parsed = Request::parse(&canonical).unwrap();
    assert_eq!(parsed.operation().key_text(), "org-1/report 7.pdf");
    assert_eq!(parsed.issued_at(), 1_800_000_000);
    assert_eq!(parsed.expires_at(), 1_800_000_300);
    assert!(signature.starts_with("vendor:vendor-2026:"));

    let verify = |req: &str, sig: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--request",
            req,
            "--signature",
            sig,
            "--public-key",
            "v.key.pub",
            "--now",
            "1800000010",
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    let ok = verify(&request, &signature, &[]);
    assert_eq!(outcome(&ok), (0, String::new()));
    assert!(stdout(&ok).contains("approved by vendor:vendor-2026"));
    assert_eq!(
        outcome(&verify(&request, &signature, &["--audience", "gk.other"])),
        (1, "wrong_audience".into())
    );
    assert_eq!(
        outcome(&verify(&request, &signature, &["--max-lifetime", "60"])),
        (1, "lifetime_too_long".into())
    );
    // A different request under the same signature.
    let (other, _) = sign_get(d, "v.key", "org-1/other.pdf");
    assert_eq!(
        outcome(&verify(&other, &signature, &[])),
        (1, "bad_signature".into())
    );
    // Expired by the time it is checked.
    let late = run(
        d,
        &[
            "verify",
            "--request",
            &request,
            "--signature",
            &signature,
            "--public-key",
            "v.key.pub",
            "--now",
            "1800000400",
        ],
    );
    assert_eq!(outcome(&late), (1, "expired".into()));
    // Another vendor key does not know this key id.
    run(d, &["keygen", "--key-id", "stranger", "--out", "s.key"]);
    let o = run(
        d,
        &[
            "verify",
            "--request",
            &request,
            "--signature",
            &signature,
            "--public-key",
            "s.key.pub",
            "--now",
            "1800000010",
        ],
    );
    assert_eq!(outcome(&o), (1, "unknown_key".into()));

    // inspect: raw canonical text from a file, base64url from stdin-like file.
    std::fs::write(d.join("req.txt"), &canonical).unwrap();
    std::fs::write(d.join("req.b64"), format!("{request}\n")).unwrap();
    std::fs::write(d.join("sig.txt"), &signature).unwrap();
    for input in ["req.txt", "req.b64"] {
        let o = run(
            d,
            &[
                "inspect",
                input,
                "--signature",
                "@sig.txt",
                "--public-key",
                "v.key.pub",
                "--now",
                "1800000010",
            ],
        );
        assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.starts_with("countersign/v1/request\n"), "{out}");
        assert!(
            out.contains("key                org-1/report 7.pdf"),
            "{out}"
        );
        assert!(out.contains("valid for 290 more s"), "{out}");
        assert!(out.contains("verifies: yes"), "{out}");
    }
    let o = run(d, &["inspect", "req.txt"]);
    assert_eq!(outcome(&o).0, 0);
    assert!(stdout(&o).contains("verifies: not checked"));
    let o = run(
        d,
        &[
            "inspect",
            "req.txt",
            "--signature",
            &signature,
            "--public-key",
            "s.key.pub",
            "--now",
            "1800000010",
        ],
    );
    assert_eq!(outcome(&o), (1, "unknown_key".into()));
    assert!(stdout(&o).contains("verifies: no (unknown_key)"));
    // Re-signing an existing canonical request gives a signature over the same bytes.
    let o = run(
        d,
        &[
            "sign",
            "--signing-key",
            "v.key",
            "--request",
            "@req.txt",
            "--now",
            NOW,
            "--json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["request"], request.as_str());
    assert_eq!(json["key_id"], "vendor-2026");
}

#[test]
fn inspect_receipts_and_refuse_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gk = VendorKey::generate(
        KeyId::parse("gk-1").unwrap(),
        Role::gatekeeper(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    std::fs::write(d.join("gk.pub"), gk.to_public_json()).unwrap();
    run(d, &["keygen", "--key-id", "v1", "--out", "v.key"]);
    let (request, _) = sign_get(d, "v.key", "a/b");
    let canonical = parse_b64(&request, "r").unwrap();
    let receipt = Receipt {
        gatekeeper: GatekeeperId::parse("gk.acme").unwrap(),
        request_sha256: Request::parse(&canonical).unwrap().digest(),
        decision: Decision::Allow,
        decided_at: 1_800_000_001,
        audit_seq: 3,
    };
    let bytes = receipt.encode();
    std::fs::write(d.join("receipt.b64"), b64(&bytes)).unwrap();
    let sig = countersign_core::signature::encode_list(&[gk.sign_document(&bytes)]);
    let o = run(
        d,
        &[
            "inspect",
            "receipt.b64",
            "--signature",
            &sig,
            "--public-key",
            "gk.pub",
            "--for-request",
            &request,
        ],
    );
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    assert!(stdout(&o).contains("audit-seq          3"));
    assert!(stdout(&o).contains("verifies: yes, for this request"));
    let (other, _) = sign_get(d, "v.key", "a/c");
    let o = run(
        d,
        &[
            "inspect",
            "receipt.b64",
            "--signature",
            &sig,
            "--public-key",
            "gk.pub",
            "--for-request",
            &other,
        ],
    );
    assert_eq!(outcome(&o), (1, "receipt_mismatch".into()));

    // A manifest: the gatekeeper's signature outside, the vendor's PUT inside.
    let vendor = VendorKey::load(d.join("v.key")).unwrap().remove(0);
    let put = Request::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        countersign_core::Bucket::parse("reports").unwrap(),
        countersign_core::Operation::Put {
            key: countersign_core::ObjectKey::parse("a/new.txt").unwrap(),
            content_type: countersign_core::ContentType::parse("text/plain").unwrap(),
            body: countersign_core::BodyDigest::of(b"hi"),
        },
        countersign_core::Subject::parse("user-42").unwrap(),
        1_800_000_000,
        60,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let put_sig = vendor.sign_document(&put.encode());
    let policy = countersign_core::Policy::new(
        countersign_core::Keyring::new([vendor.authorized_key()]).unwrap(),
        [(Role::vendor(), 1)],
    )
    .unwrap();
    let verifier = countersign_core::RequestVerifier::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        policy,
        300,
        30,
    )
    .unwrap();
    let verified = verifier
        .verify(&put.encode(), &[put_sig], 1_800_000_001)
        .unwrap();
    let manifest = countersign_core::Manifest::for_put(
        &verified,
        GatekeeperId::parse("gk.acme").unwrap(),
        1_800_000_002,
        4,
    )
    .unwrap();
    let (m_bytes, m_sig) = manifest.sign(
        &countersign_core::ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        KeyId::parse("gk-9").unwrap(),
    );
    std::fs::write(d.join("manifest.txt"), &m_bytes).unwrap();
    let m_sig = countersign_core::signature::encode_list(&[m_sig]);
    let gk9 = VendorKey::from_signing_key(
        countersign_core::ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        KeyId::parse("gk-9").unwrap(),
        Role::gatekeeper(),
        None,
        None,
    )
    .unwrap();
    std::fs::write(d.join("gk9.pub"), gk9.to_public_json()).unwrap();
    let o = run(
        d,
        &[
            "inspect",
            "manifest.txt",
            "--signature",
            &m_sig,
            "--public-key",
            "gk9.pub",
            "--public-key",
            "v.key.pub",
        ],
    );
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("(PUT signed by)    vendor:v1"), "{out}");
    assert!(out.contains("key                a/new.txt"), "{out}");
    assert!(
        out.contains("verifies: yes (stored by gatekeeper:gk-9; uploaded under vendor:v1)"),
        "{out}"
    );
    // Without the uploader's key the manifest does not verify.
    run(d, &["keygen", "--key-id", "stranger", "--out", "s.key"]);
    let o = run(
        d,
        &[
            "inspect",
            "manifest.txt",
            "--signature",
            &m_sig,
            "--public-key",
            "gk9.pub",
            "--public-key",
            "s.key.pub",
        ],
    );
    assert_eq!(outcome(&o), (1, "unknown_key".into()));

    std::fs::write(d.join("junk.txt"), "countersign/v1/request\naudience:gk\n").unwrap();
    assert_eq!(
        outcome(&run(d, &["inspect", "junk.txt"])),
        (1, "non_canonical".into())
    );
    std::fs::write(d.join("junk2.txt"), "countersign/v9/thing\n").unwrap();
    assert_eq!(
        outcome(&run(d, &["inspect", "junk2.txt"])),
        (1, "unsupported_version".into())
    );
    std::fs::write(d.join("junk3.txt"), "%%%").unwrap();
    assert_eq!(
        outcome(&run(d, &["inspect", "junk3.txt"])),
        (1, "malformed".into())
    );
    assert_eq!(
        outcome(&run(d, &["inspect", "missing.txt"])),
        (3, "io".into())
    );
}

#[test]
fn key_sources_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, &["keygen", "--key-id", "v1", "--out", "v.key"]);
    let fields = [
        "--audience",
        "gk.acme",
        "--method",
        "list",
        "--bucket",
        "reports",
        "--prefix",
        "org-1/",
        "--subject",
        "u1",
        "--now",
        NOW,
    ];

    // Keys from the environment (containers).
    let secret = std::fs::read_to_string(d.join("v.key")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(d)
        .env("COUNTERSIGN_VENDOR_KEYS", &secret)
        .arg("sign")
        .args(fields)
        .output()
        .unwrap();
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    assert!(stdout(&o).contains("Countersign-Signature: vendor:v1:"));
    // Neither a file nor the variable.
    let mut args = vec!["sign"];
    args.extend_from_slice(&fields);
    assert_eq!(outcome(&run(d, &args)), (3, "invalid_key_file".into()));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.join("v.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut args = vec!["sign", "--signing-key", "v.key"];
        args.extend_from_slice(&fields);
        let o = run(d, &args);
        assert_eq!(outcome(&o), (3, "insecure_key_file".into()));
        assert!(stderr(&o).contains("chmod 600"));
        std::fs::set_permissions(d.join("v.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // A key whose window has closed cannot sign.
    run(
        d,
        &[
            "keygen",
            "--key-id",
            "old",
            "--not-after",
            "1700000000",
            "--out",
            "old.key",
        ],
    );
    let mut args = vec!["sign", "--signing-key", "old.key"];
    args.extend_from_slice(&fields);
    assert_eq!(outcome(&run(d, &args)), (1, "key_outside_window".into()));
    // Usage errors exit 2; bad field values are protocol errors.
    assert_eq!(
        run(d, &["sign", "--signing-key", "v.key"]).status.code(),
        Some(2)
    );
    let o = run(
        d,
        &[
            "sign",
            "--signing-key",
            "v.key",
            "--audience",
            "gk.acme",
            "--method",
            "get",
            "--bucket",
            "reports",
            "--object",
            "a/../b",
            "--subject",
            "u",
            "--now",
            NOW,
        ],
    );
    assert_eq!(outcome(&o), (1, "invalid_key_path".into()));
    let o = run(
        d,
        &[
            "sign",
            "--signing-key",
            "v.key",
            "--audience",
            "gk.acme",
            "--method",
            "put",
            "--bucket",
            "reports",
            "--object",
            "a/b",
            "--subject",
            "u",
            "--now",
            NOW,
        ],
    );
    assert_eq!(outcome(&o), (2, "usage".into()));
    assert!(stdout(&run(d, &["--help"])).contains("Exit codes:"));
}

/// `get`'s output file: created 0600 whatever the umask, never left half-written.
#[cfg(unix)]
mod downloads {
    use super::*;
    use countersign_core::{AuthorizedKey, PublicKey};
    use countersign_gatekeeper::{config::Config, server};
    use countersign_vendor::keys::{load_public_keys, public_key_json};
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    /// A gatekeeper on 127.0.0.1 until dropped.
    struct Gatekeeper {
        _runtime: tokio::runtime::Runtime,
        url: String,
        public_key_file: PathBuf,
    }

    impl Gatekeeper {
        fn start(dir: &Path, vendor_keys: Vec<AuthorizedKey>) -> Self {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let config = Config::embedded(&dir.join("gk"), vendor_keys).unwrap();
            let (state, _) = runtime.block_on(server::build_state(config)).unwrap();
            let public = AuthorizedKey {
                key_id: state.key_id().clone(),
                role: Role::gatekeeper(),
                public_key: PublicKey::from_bytes(&state.public_key()).unwrap(),
                not_before: None,
                not_after: None,
            };
            let public_key_file = dir.join("gatekeeper.pub");
            std::fs::write(&public_key_file, public_key_json(&public)).unwrap();
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            runtime.spawn(server::serve(state, listener));
            Self {
                _runtime: runtime,
                url,
                public_key_file,
            }
        }
    }

    /// What the man in the middle does to the gatekeeper's answer.
    #[derive(Clone, Copy)]
    enum Tamper {
        /// Flips one bit of the body (well after a chunk-size line, if any).
        FlipBodyByte,
        /// Sends the headers and some of the body, then goes silent.
        Stall,
    }

    /// A TCP proxy on 127.0.0.1 in front of `upstream`; returns its URL.
    fn proxy(upstream: &str, tamper: Tamper) -> String {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&upstream).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
                std::thread::spawn(move || answer(server, client, tamper));
            }
        });
        url
    }

    fn answer(mut from: TcpStream, mut to: TcpStream, tamper: Tamper) {
        let mut head = Vec::new();
        let mut body_at: Option<usize> = None;
        let mut offset = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &mut buf[..n];
            if body_at.is_none() {
                head.extend_from_slice(chunk);
                body_at = head
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4);
            }
            let mut send = n;
            if let Some(body) = body_at {
                match tamper {
                    Tamper::FlipBodyByte => {
                        let at = body + 64;
                        if (offset..offset + n).contains(&at) {
                            chunk[at - offset] ^= 1;
                        }
                    }
                    Tamper::Stall => {
                        let stop = body + 1000;
                        if offset + n >= stop {
                            send = stop.saturating_sub(offset);
                            let _ = to.write_all(&chunk[..send]);
                            std::thread::sleep(Duration::from_secs(60));
                            return;
                        }
                    }
                }
            }
            if to.write_all(&chunk[..send]).is_err() {
                return;
            }
            offset += n;
        }
    }

    /// Runs the CLI under umask 022 (what would give 0644 files).
    fn umask_022(dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir)
            .env_remove("COUNTERSIGN_VENDOR_KEYS")
            .env_remove("COUNTERSIGN_GATEKEEPER_URL")
            .env_remove("COUNTERSIGN_PROFILE")
            .env_remove("COUNTERSIGN_PROFILES")
            .env("XDG_CONFIG_HOME", dir.join(".config"))
            .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_countersign"))
            .args(args);
        cmd
    }

    fn get_args<'a>(gatekeeper: &'a str, key_file: &'a str, out: &'a str) -> Vec<&'a str> {
        vec![
            "get",
            "--gatekeeper",
            gatekeeper,
            "--gatekeeper-key",
            key_file,
            "--signing-key",
            "vendor-1.key",
            "--audience",
            "local",
            "--bucket",
            "local",
            "--object",
            "org-1/scan.txt",
            "--subject",
            "ops-1",
            "--no-progress",
            "--out",
            out,
        ]
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Files the download may have left: the output and temporary names.
    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("out") || n.contains(".countersign-"))
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Gatekeeper, Vec<u8>) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let o = run(
            d,
            &["keygen", "--key-id", "vendor-1", "--out", "vendor-1.key"],
        );
        assert_eq!(outcome(&o), (0, String::new()));
        let vendor = load_public_keys(d.join("vendor-1.key.pub")).unwrap();
        let gk = Gatekeeper::start(d, vendor);
        // Letters only: no byte of the body looks like HTTP framing to the proxy.
        let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(d.join("scan.txt"), &data).unwrap();
        let key = gk.public_key_file.to_str().unwrap().to_owned();
        let o = run(
            d,
            &[
                "put",
                "--gatekeeper",
                &gk.url,
                "--gatekeeper-key",
                &key,
                "--signing-key",
                "vendor-1.key",
                "--audience",
                "local",
                "--bucket",
                "local",
                "--object",
                "org-1/scan.txt",
                "--subject",
                "ops-1",
                "--content-type",
                "text/plain",
                "--no-progress",
                "scan.txt",
            ],
        );
        assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
        (tmp, gk, data)
    }

    #[test]
    fn get_writes_owner_only_files_even_under_a_permissive_umask() {
        let (tmp, gk, data) = setup();
        let d = tmp.path();
        let key = gk.public_key_file.to_str().unwrap();

        let o = umask_022(d, &get_args(&gk.url, key, "out.txt"))
            .output()
            .unwrap();
        assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
        assert!(std::fs::read(d.join("out.txt")).unwrap() == data);
        assert_eq!(mode(&d.join("out.txt")), 0o600);

        // The shell's own files do get 0644 under this umask: the 0600 is ours.
        let o = Command::new("sh")
            .current_dir(d)
            .args(["-c", "umask 022 && : > out-shell.txt"])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(mode(&d.join("out-shell.txt")), 0o644);

        // `--force` over a world-readable file replaces it with an owner-only one.
        std::fs::set_permissions(
            d.join("out-shell.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let mut args = get_args(&gk.url, key, "out-shell.txt");
        args.push("--force");
        let o = umask_022(d, &args).output().unwrap();
        assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
        assert_eq!(mode(&d.join("out-shell.txt")), 0o600);
        assert!(std::fs::read(d.join("out-shell.txt")).unwrap() == data);

        // Without `--force` nothing is replaced.
        let o = umask_022(d, &get_args(&gk.url, key, "out.txt"))
            .output()
            .unwrap();
        assert_eq!(outcome(&o), (3, "io".into()));
        let mut left = leftovers(d);
        left.sort();
        assert_eq!(left, ["out-shell.txt", "out.txt"]);
    }

    #[test]
    fn a_download_that_fails_verification_leaves_no_file() {
        let (tmp, gk, _) = setup();
        let d = tmp.path();
        let key = gk.public_key_file.to_str().unwrap();
        let evil = proxy(&gk.url, Tamper::FlipBodyByte);
        let o = umask_022(d, &get_args(&evil, key, "out.txt"))
            .output()
            .unwrap();
        assert_eq!(outcome(&o), (1, "body_mismatch".into()), "{}", stderr(&o));
        assert!(leftovers(d).is_empty(), "left behind: {:?}", leftovers(d));
    }

    #[test]
    fn an_interrupted_download_leaves_no_file() {
        let (tmp, gk, _) = setup();
        let d = tmp.path();
        let key = gk.public_key_file.to_str().unwrap();
        let slow = proxy(&gk.url, Tamper::Stall);
        let child = umask_022(d, &get_args(&slow, key, "out.txt"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the partial download to appear: already owner-only.
        let started = Instant::now();
        let partial = loop {
            if let Some(name) = leftovers(d).into_iter().next() {
                break d.join(name);
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no download");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(mode(&partial), 0o600);
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(outcome(&o), (130, "interrupted".into()), "{}", stderr(&o));
        assert!(leftovers(d).is_empty(), "left behind: {:?}", leftovers(d));
    }
}

/// Signs a LIST request for `prefix` with the CLI; returns the two header values.
fn sign_list(dir: &Path, key: &str, prefix: &str) -> (String, String) {
    let o = run(
        dir,
        &[
            "sign",
            "--signing-key",
            key,
            "--audience",
            "gk.acme",
            "--method",
            "list",
            "--bucket",
            "reports",
            "--prefix",
            prefix,
            "--subject",
            "user-42",
            "--now",
            NOW,
        ],
    );
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    let out = stdout(&o);
    (
        header(&out, "Countersign-Request"),
        header(&out, "Countersign-Signature"),
    )
}

#[test]
fn inspect_listings_and_deny_receipts() {
    use countersign_core::{ListedObject, Listing, ObjectKey, Policy, RequestVerifier};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gk = VendorKey::from_signing_key(
        countersign_core::ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        KeyId::parse("gk-9").unwrap(),
        Role::gatekeeper(),
        None,
        None,
    )
    .unwrap();
    std::fs::write(d.join("gk.pub"), gk.to_public_json()).unwrap();
    run(d, &["keygen", "--key-id", "v1", "--out", "v.key"]);
    let vendor = VendorKey::load(d.join("v.key")).unwrap().remove(0);
    let (request, signature) = sign_list(d, "v.key", "org-1/");
    let canonical = parse_b64(&request, "r").unwrap();
    let verified = RequestVerifier::new(
        GatekeeperId::parse("gk.acme").unwrap(),
        Policy::new(
            countersign_core::Keyring::new([vendor.authorized_key()]).unwrap(),
            [(Role::vendor(), 1)],
        )
        .unwrap(),
        300,
        30,
    )
    .unwrap()
    .verify(
        &canonical,
        &countersign_core::signature::parse_list(&signature).unwrap(),
        1_800_000_001,
    )
    .unwrap();
    let object = |key: &str| ListedObject {
        key: ObjectKey::parse(key).unwrap(),
        size: 2,
        sha256: countersign_core::BodyDigest::of(b"hi").sha256,
        content_type: countersign_core::ContentType::parse("text/plain").unwrap(),
        stored_at: 1_799_999_000,
    };
    let listing = Listing::for_request(
        &verified,
        GatekeeperId::parse("gk.acme").unwrap(),
        5,
        1_800_000_001,
        Some(ObjectKey::parse("org-1/a&b c%d").unwrap()),
        vec![object("org-1/b"), object("org-1/c")],
        true,
    )
    .unwrap();
    let bytes = listing.encode();
    std::fs::write(d.join("listing.txt"), &bytes).unwrap();
    let sig = countersign_core::signature::encode_list(&[gk.sign_document(&bytes)]);
    let inspect = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "inspect",
            file,
            "--signature",
            &sig,
            "--public-key",
            "gk.pub",
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };

    let o = inspect("listing.txt", &[]);
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("(page)             2 object(s); more follow"),
        "{out}"
    );
    assert!(
        out.contains("which request it answers was not checked"),
        "{out}"
    );

    let o = inspect(
        "listing.txt",
        &["--for-request", &request, "--after", "org-1/a&b c%d"],
    );
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .contains("verifies: yes, for this request and cursor (approved by gatekeeper:gk-9)")
    );
    // Another cursor (here: the first page), another request.
    assert_eq!(
        outcome(&inspect("listing.txt", &["--for-request", &request])),
        (1, "listing_mismatch".into())
    );
    let (other, _) = sign_list(d, "v.key", "org-1/");
    assert_eq!(
        outcome(&inspect(
            "listing.txt",
            &["--for-request", &other, "--after", "org-1/a&b c%d"]
        )),
        (1, "listing_mismatch".into())
    );
    // An object hidden after signing.
    let hidden: String = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("count:2", "count:1")
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("object:org-1/b "))
        .collect();
    std::fs::write(d.join("hidden.txt"), hidden).unwrap();
    assert_eq!(
        outcome(&inspect("hidden.txt", &[])),
        (1, "bad_signature".into())
    );

    // A deny receipt verifies too, for the gatekeeper named with --gatekeeper-id.
    let receipt = Receipt {
        gatekeeper: GatekeeperId::parse("gk.other").unwrap(),
        request_sha256: Request::parse(&canonical).unwrap().digest(),
        decision: Decision::Deny(countersign_core::ErrorCode::WrongAudience),
        decided_at: 1_800_000_001,
        audit_seq: 6,
    };
    let r_bytes = receipt.encode();
    std::fs::write(d.join("deny.txt"), &r_bytes).unwrap();
    let r_sig = countersign_core::signature::encode_list(&[gk.sign_document(&r_bytes)]);
    let inspect_receipt = |extra: &[&str]| {
        let mut args = vec![
            "inspect",
            "deny.txt",
            "--signature",
            &r_sig,
            "--public-key",
            "gk.pub",
            "--for-request",
            &request,
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    let o = inspect_receipt(&["--gatekeeper-id", "gk.other"]);
    assert_eq!(outcome(&o), (0, String::new()), "{}", stderr(&o));
    assert!(stdout(&o).contains("denied with `wrong_audience`"));
    // By default the gatekeeper is the request's audience, which did not sign it.
    assert_eq!(
        outcome(&inspect_receipt(&[])),
        (1, "receipt_mismatch".into())
    );
}
