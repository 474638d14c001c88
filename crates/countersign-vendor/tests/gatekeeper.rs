//! `countersign put` / `get` against a real gatekeeper (the `countersign-gatekeeper`
//! crate, run in-process on a free 127.0.0.1 port), and key rotation as the gatekeeper
//! sees it.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use countersign_core::signature::encode_list;
use countersign_core::text::{b64, parse_b64};
use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ContentType, ErrorCode, GatekeeperId, KeyId, ObjectKey,
    Operation, PublicKey, Request, Role, Subject,
};
use countersign_gatekeeper::{config::Config, server};
use countersign_vendor::keys::{load_public_keys, public_key_json};
use countersign_vendor::{Client, DenialReceipt, Signer, VendorKey, unix_now};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A gatekeeper serving on 127.0.0.1 until dropped.
struct Gatekeeper {
    runtime: tokio::runtime::Runtime,
    url: String,
    public_key_file: PathBuf,
    data_dir: PathBuf,
    state: countersign_gatekeeper::http::AppState,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gatekeeper {
    fn start(dir: &Path, vendor_keys: Vec<AuthorizedKey>) -> Self {
        Self::start_with(dir, vendor_keys, |_| {})
    }

    /// [`Gatekeeper::start`] with the embedded configuration changed by `change`.
    fn start_with(
        dir: &Path,
        vendor_keys: Vec<AuthorizedKey>,
        change: impl FnOnce(&mut Config),
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data_dir = dir.join("gk");
        let mut config = Config::embedded(&data_dir, vendor_keys).unwrap();
        change(&mut config);
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
        let task = runtime.spawn(server::serve(state.clone(), listener));
        Self {
            runtime,
            url,
            public_key_file,
            data_dir,
            state,
            task,
        }
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        self.task.abort();
        // Stopped as the process would stop: the database closed before the next step
        // (a backup copies its files).
        self.runtime.block_on(self.state.ledger.close());
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir)
        .env_remove("COUNTERSIGN_VENDOR_KEYS")
        .env_remove("COUNTERSIGN_GATEKEEPER_URL")
        .env_remove("COUNTERSIGN_PROFILE")
        .env_remove("COUNTERSIGN_PROFILES")
        // Profiles only from the test's own directory, never the user's.
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .args(args)
        .output()
        .unwrap()
}

fn outcome(o: &Output) -> (i32, String) {
    let err = String::from_utf8_lossy(&o.stderr);
    let code = err
        .lines()
        .find_map(|l| l.strip_prefix("countersign: error["))
        .and_then(|r| r.split(']').next())
        .unwrap_or("")
        .to_owned();
    (o.status.code().unwrap(), code)
}

fn keygen(dir: &Path, id: &str, extra: &[&str]) -> AuthorizedKey {
    let out = format!("{id}.key");
    let mut args = vec!["keygen", "--key-id", id, "--out", &out];
    args.extend_from_slice(extra);
    assert_eq!(run(dir, &args).status.code(), Some(0));
    load_public_keys(dir.join(format!("{id}.key.pub")))
        .unwrap()
        .remove(0)
}

/// The common `put`/`get` arguments.
fn remote<'a>(gk: &'a Gatekeeper, key_file: &'a str, object: &'a str) -> Vec<&'a str> {
    vec![
        "--gatekeeper",
        &gk.url,
        "--gatekeeper-key",
        gk.public_key_file.to_str().unwrap(),
        "--signing-key",
        key_file,
        "--audience",
        "local",
        "--bucket",
        "local",
        "--object",
        object,
        "--subject",
        "ops-1",
    ]
}

fn put(dir: &Path, gk: &Gatekeeper, key_file: &str, object: &str, file: &str) -> Output {
    let mut args = vec!["put"];
    args.extend(remote(gk, key_file, object));
    args.extend(["--content-type", "application/octet-stream", file]);
    run(dir, &args)
}

fn get(
    dir: &Path,
    gk: &Gatekeeper,
    key_file: &str,
    object: &str,
    out: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec!["get"];
    args.extend(remote(gk, key_file, object));
    args.extend(["--out", out]);
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn put_and_get_through_a_real_gatekeeper() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let vendor = keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, vec![vendor]);

    // 3 MiB of non-repeating bytes.
    let data: Vec<u8> = (0u32..3 * 1024 * 1024 / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(d.join("big.bin"), &data).unwrap();
    let object = "org-1/reports/big file ü.bin";

    let o = put(d, &gk, "vendor-1.key", object, "big.bin");
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("receipt and manifest verified"));

    let o = get(d, &gk, "vendor-1.key", object, "out.bin", &[]);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(std::fs::read(d.join("out.bin")).unwrap() == data);
    // Output to stdout.
    let o = get(d, &gk, "vendor-1.key", object, "-", &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout == data);
    // The output file is never silently replaced.
    assert_eq!(
        outcome(&get(d, &gk, "vendor-1.key", object, "out.bin", &[])),
        (3, "io".into())
    );
    assert_eq!(
        outcome(&get(
            d,
            &gk,
            "vendor-1.key",
            object,
            "out.bin",
            &["--force"]
        ))
        .0,
        0
    );

    // A FIFO (like a device such as /dev/null) is written into, never renamed over,
    // with or without --force, and only with verified bytes.
    let fifo = d.join("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for extra in [&[][..], &["--force"][..]] {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let o = get(d, &gk, "vendor-1.key", object, "out.fifo", extra);
        assert_eq!(
            outcome(&o),
            (0, String::new()),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(reader.join().unwrap() == data);
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &std::fs::symlink_metadata(&fifo).unwrap().file_type()
        ));
    }

    // Objects are never overwritten; missing objects are not found.
    let o = put(d, &gk, "vendor-1.key", object, "big.bin");
    assert_eq!(outcome(&o), (1, "already_exists".into()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed denial receipt verifies"));
    assert_eq!(
        outcome(&get(d, &gk, "vendor-1.key", "org-1/missing", "m.bin", &[])),
        (1, "not_found".into())
    );
    assert!(!d.join("m.bin").exists());

    // A receipt from a gatekeeper key we do not trust is refused, and nothing is written.
    let stranger = VendorKey::generate(
        KeyId::parse("gatekeeper-1").unwrap(),
        Role::gatekeeper(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    std::fs::write(d.join("stranger.pub"), stranger.to_public_json()).unwrap();
    let mut args = vec!["get"];
    let strange_remote: Vec<&str> = remote(&gk, "vendor-1.key", object)
        .into_iter()
        .map(|a| {
            if a.ends_with("gatekeeper.pub") {
                "stranger.pub"
            } else {
                a
            }
        })
        .collect();
    args.extend(strange_remote);
    args.extend(["--out", "untrusted.bin"]);
    assert_eq!(outcome(&run(d, &args)), (1, "bad_signature".into()));
    assert!(!d.join("untrusted.bin").exists());

    // Bytes changed in the bucket behind the gatekeeper's back: refused by the
    // gatekeeper, nothing written.
    std::fs::write(d.join("small.txt"), b"the original bytes").unwrap();
    assert_eq!(
        put(d, &gk, "vendor-1.key", "org-1/small.txt", "small.txt")
            .status
            .code(),
        Some(0)
    );
    // The bucket holds opaque names; the manifest sidecar names the key.
    let bucket = gk.data_dir.join("buckets/local");
    let name = std::fs::read_dir(bucket.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|n| {
            let text = std::fs::read_to_string(bucket.join("manifests").join(n)).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["key"] == "org-1/small.txt"
        })
        .unwrap();
    // Encrypted at rest (the default): the bucket holds no plaintext.
    let stored = bucket.join("objects").join(name);
    let ciphertext = std::fs::read(&stored).unwrap();
    assert!(
        !ciphertext
            .windows(b"original".len())
            .any(|w| w == b"original")
    );
    std::fs::write(&stored, b"the tampered bytes").unwrap();
    let o = get(
        d,
        &gk,
        "vendor-1.key",
        "org-1/small.txt",
        "small-out.txt",
        &[],
    );
    assert_eq!(outcome(&o), (1, "stored_object_tampered".into()));
    assert!(!d.join("small-out.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".countersign-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // Wrong audience: the gatekeeper refuses with the protocol's code.
    let mut args = vec!["get"];
    args.extend(remote(&gk, "vendor-1.key", object));
    let audience = args.iter().position(|a| *a == "--audience").unwrap() + 1;
    args[audience] = "elsewhere";
    args.extend(["--out", "x.bin"]);
    assert_eq!(outcome(&run(d, &args)), (1, "wrong_audience".into()));

    // Nothing listens: exit 4.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{free}");
    let mut args = vec!["get"];
    args.extend(
        remote(&gk, "vendor-1.key", object)
            .into_iter()
            .map(|a| if a == gk.url { dead.as_str() } else { a }),
    );
    args.extend(["--out", "x.bin"]);
    assert_eq!(outcome(&run(d, &args)), (4, "unreachable".into()));
}

/// A [`Client`] of `gk` signing with the key file `key_file` in `dir`, trusting
/// `gatekeeper_key` (a public key file).
fn sdk_client(
    dir: &Path,
    gk: &Gatekeeper,
    url: &str,
    key_file: &str,
    gatekeeper_key: &Path,
) -> Client {
    Client::builder(
        url,
        GatekeeperId::parse("local").unwrap(),
        Subject::parse("ops-1").unwrap(),
        Signer::from_key_files([dir.join(key_file)]).unwrap(),
        load_public_keys(gatekeeper_key).unwrap(),
    )
    .lifetime_secs(120)
    .build()
    .unwrap_or_else(|e| panic!("client for {}: {e}", gk.url))
}

fn refused_code(e: &countersign_vendor::Error) -> (&'static str, Option<DenialReceipt>) {
    match e {
        countersign_vendor::Error::Refused { receipt, .. } => (e.code(), Some(*receipt)),
        other => (other.code(), None),
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that passes requests through and
/// changes one digit of the `decided-at` field inside every answer's receipt header,
/// keeping it well formed: only its signature can tell.
fn receipt_tampering_proxy(upstream: &str) -> String {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(&upstream).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if server.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8(head).unwrap();
                let mut out = String::new();
                for line in text.split_inclusive("\r\n") {
                    match line.strip_prefix("countersign-receipt: ") {
                        Some(value) => {
                            let mut receipt = parse_b64(value.trim(), "receipt").unwrap();
                            let at = receipt
                                .windows(11)
                                .position(|w| w == b"decided-at:")
                                .unwrap()
                                + 12;
                            receipt[at] = if receipt[at] == b'1' { b'2' } else { b'1' };
                            out.push_str(&format!("countersign-receipt: {}\r\n", b64(&receipt)));
                        }
                        None => out.push_str(line),
                    }
                }
                if client.write_all(out.as_bytes()).is_ok() {
                    let _ = std::io::copy(&mut server, &mut client);
                }
            });
        }
    });
    url
}

/// Yields `left` bytes of 7s, then fails.
struct FailingReader {
    left: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("the disk went away")));
        }
        let n = self.left.min(buf.remaining());
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// The SDK's `Client` against a real gatekeeper: the CLI's scenarios, through the API.
#[test]
fn sdk_client_put_get_head_list_through_a_real_gatekeeper() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let vendor = keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, vec![vendor]);
    let client = sdk_client(d, &gk, &gk.url, "vendor-1.key", &gk.public_key_file);
    let bucket = Bucket::parse("local").unwrap();
    let text = ContentType::parse("text/plain").unwrap();

    // 3 MiB from a file, streamed, with progress.
    let data: Vec<u8> = (0u32..3 * 1024 * 1024 / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(d.join("big.bin"), &data).unwrap();
    let big = ObjectKey::parse("org-1/big ü.bin").unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let progress: countersign_vendor::client::Progress =
        std::sync::Arc::new(move |done, total| record.lock().unwrap().push((done, total)));
    let octets = ContentType::parse("application/octet-stream").unwrap();
    let stored = gk
        .runtime
        .block_on(client.put_file(&bucket, &big, &octets, &d.join("big.bin"), Some(progress)))
        .unwrap();
    assert_eq!(stored.body, BodyDigest::of(&data));
    assert_eq!(
        (stored.key.clone(), stored.content_type.clone()),
        (big.clone(), octets.clone())
    );
    assert_eq!(stored.uploader.as_str(), "ops-1");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 1, "progress per chunk: {seen:?}");
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

    // Objects are never overwritten: the refusal carries the code and a verified receipt.
    let e = gk
        .runtime
        .block_on(client.put_file(&bucket, &big, &octets, &d.join("big.bin"), None))
        .unwrap_err();
    assert_eq!(
        refused_code(&e),
        (
            "already_exists",
            Some(DenialReceipt::Verified(ErrorCode::AlreadyExists))
        )
    );

    // GET to a file, to memory, to a writer; HEAD; all agree with the PUT.
    let got = gk
        .runtime
        .block_on(client.get_to_file(&bucket, &big, &d.join("out.bin"), false, None))
        .unwrap();
    assert!(std::fs::read(d.join("out.bin")).unwrap() == data);
    assert_eq!((got.body, got.stored_at), (stored.body, stored.stored_at));
    assert!(got.audit_seq > stored.audit_seq);
    let e = gk
        .runtime
        .block_on(client.get_to_file(&bucket, &big, &d.join("out.bin"), false, None))
        .unwrap_err();
    assert_eq!(e.code(), "io", "an existing file is not replaced");
    let (bytes, _) = gk
        .runtime
        .block_on(client.get_bytes(&bucket, &big, data.len() as u64))
        .unwrap();
    assert!(bytes == data);
    let e = gk
        .runtime
        .block_on(client.get_bytes(&bucket, &big, data.len() as u64 - 1))
        .unwrap_err();
    assert_eq!(e.code(), "too_large");
    let mut sink = Vec::new();
    gk.runtime
        .block_on(client.get_into(&bucket, &big, &mut sink, None))
        .unwrap();
    assert!(sink == data);
    let head = gk.runtime.block_on(client.head(&bucket, &big)).unwrap();
    assert_eq!((head.body, &head.content_type), (stored.body, &octets));

    // Not found, for every operation that names an object.
    let missing = ObjectKey::parse("org-1/missing").unwrap();
    let not_found = (
        "not_found",
        Some(DenialReceipt::Verified(ErrorCode::NotFound)),
    );
    let e = gk
        .runtime
        .block_on(client.get_to_file(&bucket, &missing, &d.join("m.bin"), false, None))
        .unwrap_err();
    assert_eq!(refused_code(&e), not_found);
    assert!(!d.join("m.bin").exists());
    let e = gk
        .runtime
        .block_on(client.head(&bucket, &missing))
        .unwrap_err();
    assert_eq!(refused_code(&e), not_found);

    // LIST: five more objects, pages of two, each page verified and chained.
    for i in 0..5 {
        let key = ObjectKey::parse(&format!("org-2/n{i}.txt")).unwrap();
        gk.runtime
            .block_on(client.put_bytes(&bucket, &key, &text, format!("note {i}").into_bytes()))
            .unwrap();
    }
    let first = gk
        .runtime
        .block_on(client.list_page(&bucket, "org-2/", None, Some(2)))
        .unwrap();
    let keys = |l: &countersign_core::VerifiedListing| {
        l.listing()
            .objects()
            .iter()
            .map(|o| o.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), ["org-2/n0.txt", "org-2/n1.txt"]);
    let next = first.listing().next_after().cloned().unwrap();
    let second = gk
        .runtime
        .block_on(client.list_page(&bucket, "org-2/", Some(&next), Some(2)))
        .unwrap();
    assert_eq!(keys(&second), ["org-2/n2.txt", "org-2/n3.txt"]);
    let all = gk.runtime.block_on(client.list(&bucket, "org-2/")).unwrap();
    let listed: Vec<_> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        listed,
        [
            "org-2/n0.txt",
            "org-2/n1.txt",
            "org-2/n2.txt",
            "org-2/n3.txt",
            "org-2/n4.txt"
        ]
    );
    assert_eq!(all[4].sha256, BodyDigest::of(b"note 4").sha256);
    let everything = gk.runtime.block_on(client.list(&bucket, "")).unwrap();
    assert_eq!(everything.len(), 6);
    assert!(
        gk.runtime
            .block_on(client.list(&bucket, "org-3/"))
            .unwrap()
            .is_empty()
    );

    // A gatekeeper key we do not trust: every answer is refused, nothing is written.
    let stranger = VendorKey::generate(
        KeyId::parse("gatekeeper-1").unwrap(),
        Role::gatekeeper(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    std::fs::write(d.join("stranger.pub"), stranger.to_public_json()).unwrap();
    let untrusting = sdk_client(d, &gk, &gk.url, "vendor-1.key", &d.join("stranger.pub"));
    let e = gk
        .runtime
        .block_on(untrusting.get_to_file(&bucket, &big, &d.join("untrusted.bin"), false, None))
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    assert!(!d.join("untrusted.bin").exists());
    let e = gk
        .runtime
        .block_on(untrusting.head(&bucket, &big))
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    let e = gk
        .runtime
        .block_on(untrusting.list(&bucket, ""))
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    // A refusal whose receipt does not verify is still a refusal, marked as such.
    let e = gk
        .runtime
        .block_on(untrusting.get_bytes(&bucket, &missing, 10))
        .unwrap_err();
    assert_eq!(
        refused_code(&e),
        (
            "not_found",
            Some(DenialReceipt::Invalid(ErrorCode::BadSignature))
        )
    );

    // A receipt changed on the way: refused, nothing written, no file left behind.
    let evil = receipt_tampering_proxy(&gk.url);
    let tampered = sdk_client(d, &gk, &evil, "vendor-1.key", &gk.public_key_file);
    let e = gk
        .runtime
        .block_on(tampered.get_to_file(&bucket, &big, &d.join("tampered.bin"), false, None))
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    assert!(!d.join("tampered.bin").exists());
    let e = gk
        .runtime
        .block_on(tampered.head(&bucket, &big))
        .unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".countersign-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // A source that fails mid-upload is reported as `io`, and nothing is stored.
    let partial = ObjectKey::parse("org-1/partial.bin").unwrap();
    let e = gk
        .runtime
        .block_on(client.put_reader(
            &bucket,
            &partial,
            &octets,
            BodyDigest::of(&[7u8; 2048]),
            FailingReader { left: 1024 },
            None,
        ))
        .unwrap_err();
    assert!(matches!(e, countersign_vendor::Error::Io { .. }), "{e:?}");
    let e = gk
        .runtime
        .block_on(client.head(&bucket, &partial))
        .unwrap_err();
    assert_eq!(e.code(), "not_found");

    // Nothing listens: unreachable.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = sdk_client(
        d,
        &gk,
        &format!("http://{free}"),
        "vendor-1.key",
        &gk.public_key_file,
    );
    let e = gk.runtime.block_on(dead.head(&bucket, &big)).unwrap_err();
    assert_eq!(e.code(), "unreachable");
    assert!(matches!(e, countersign_vendor::Error::Unreachable { .. }));
}

/// A server that refuses a PUT as soon as it has read the request head, without
/// reading the body, and keeps the connection open: the client must hand over that
/// early answer (with its code) instead of waiting on, or failing, the upload.
#[test]
fn an_early_refusal_of_a_put_is_read_while_the_body_is_still_being_sent() {
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keygen(d, "vendor-1", &[]);
    let gatekeeper = VendorKey::generate(
        KeyId::parse("gatekeeper-1").unwrap(),
        Role::gatekeeper(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    std::fs::write(d.join("gk.pub"), gatekeeper.to_public_json()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let body = countersign_core::transport::error_body(ErrorCode::AlreadyExists, "taken");
        write!(
            conn,
            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Read nothing more until the client has its answer: an upload that had to
        // finish first would never end.
        let _ = done_rx.recv_timeout(std::time::Duration::from_secs(60));
        drop(conn);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::builder(
        url,
        GatekeeperId::parse("local").unwrap(),
        Subject::parse("ops-1").unwrap(),
        Signer::from_key_files([d.join("vendor-1.key")]).unwrap(),
        load_public_keys(d.join("gk.pub")).unwrap(),
    )
    .build()
    .unwrap();
    // 32 MiB: far more than the socket buffers hold, so the upload is still going.
    let data = vec![5u8; 32 * 1024 * 1024];
    let (bucket, key) = (
        Bucket::parse("local").unwrap(),
        ObjectKey::parse("org-1/big.bin").unwrap(),
    );
    let octets = ContentType::parse("application/octet-stream").unwrap();
    let put = client.put_bytes(&bucket, &key, &octets, data);
    let answer = runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(20), put).await });
    done_tx.send(()).unwrap();
    let e = answer
        .expect("the early answer was not handed over while the body was being sent")
        .unwrap_err();
    assert_eq!(
        refused_code(&e),
        ("already_exists", Some(DenialReceipt::Missing))
    );
    drop(client);
    drop(runtime);
    server.join().unwrap();
}

/// `ls`, `head`, `cat` and profiles through the CLI.
#[test]
fn ls_head_cat_and_profiles_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let vendor = keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, vec![vendor]);

    // Without a profile every setting is a flag; a missing one is a usage error.
    std::fs::write(d.join("a.txt"), b"first note").unwrap();
    let o = run(d, &["put", "--object", "org-1/a.txt", "a.txt"]);
    assert_eq!(
        outcome(&o),
        (2, "usage".into()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The `default` profile, at the documented place: relative key paths are next to it.
    let config = d.join(".config/countersign");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(d.join("vendor-1.key"), config.join("vendor-1.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            config.join("vendor-1.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    std::fs::copy(&gk.public_key_file, config.join("gk.pub")).unwrap();
    let profile = |name: &str| {
        format!(
            "[{name}]\ngatekeeper = \"{}\"\ngatekeeper_keys = [\"gk.pub\"]\nsigning_keys = [\"vendor-1.key\"]\naudience = \"local\"\nsubject = \"ops-1\"\nbucket = \"local\"\n",
            gk.url
        )
    };
    std::fs::write(config.join("profiles.toml"), profile("default")).unwrap();
    let o = run(
        d,
        &[
            "put",
            "--object",
            "org-1/a.txt",
            "--content-type",
            "text/plain",
            "a.txt",
        ],
    );
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(d.join("b.bin"), b"second").unwrap();
    let o = run(d, &["put", "--object", "org-1/b.bin", "b.bin"]);
    assert_eq!(outcome(&o), (0, String::new()));

    // ls: one line per object, or JSON.
    let o = run(d, &["ls", "--prefix", "org-1/"]);
    assert_eq!(outcome(&o), (0, String::new()));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("org-1/a.txt") && lines[0].contains("text/plain"));
    assert!(lines[1].ends_with("org-1/b.bin") && lines[1].contains("application/octet-stream"));
    let o = run(d, &["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed[0]["key"], "org-1/a.txt");
    assert_eq!(listed[0]["size"], 10);
    assert_eq!(
        listed[0]["sha256"],
        countersign_core::text::hex(&BodyDigest::of(b"first note").sha256)
    );
    let o = run(d, &["ls", "--prefix", "org-9/"]);
    assert_eq!(
        (outcome(&o), o.stdout.is_empty()),
        ((0, String::new()), true)
    );

    // head: the verified manifest.
    let o = run(d, &["head", "--object", "org-1/a.txt", "--json"]);
    assert_eq!(outcome(&o), (0, String::new()));
    let head: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&head["size"], &head["content_type"], &head["uploader"]),
        (
            &serde_json::json!(10),
            &serde_json::json!("text/plain"),
            &serde_json::json!("ops-1")
        )
    );
    let o = run(d, &["head", "--object", "org-1/a.txt"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("size:         10"));
    assert_eq!(
        outcome(&run(d, &["head", "--object", "org-1/none"])),
        (1, "not_found".into())
    );

    // cat: the verified bytes on stdout, nothing on a refusal.
    let o = run(d, &["cat", "--object", "org-1/b.bin"]);
    assert_eq!(
        (outcome(&o), o.stdout.as_slice()),
        ((0, String::new()), &b"second"[..])
    );
    let o = run(d, &["cat", "--object", "org-1/none"]);
    assert_eq!(
        (outcome(&o), o.stdout.is_empty()),
        ((1, "not_found".into()), true)
    );

    // Flags override the profile.
    let o = run(
        d,
        &["head", "--object", "org-1/a.txt", "--audience", "elsewhere"],
    );
    assert_eq!(outcome(&o), (1, "wrong_audience".into()));

    // A named profile from a file given with --profiles.
    std::fs::write(d.join("team.toml"), profile("staging")).unwrap();
    std::fs::copy(&gk.public_key_file, d.join("gk.pub")).unwrap();
    let o = run(
        d,
        &[
            "cat",
            "--profiles",
            "team.toml",
            "--profile",
            "staging",
            "--object",
            "org-1/a.txt",
        ],
    );
    assert_eq!(
        (outcome(&o), o.stdout.as_slice()),
        ((0, String::new()), &b"first note"[..])
    );
    // ... which must exist.
    let o = run(d, &["ls", "--profiles", "team.toml", "--profile", "prod"]);
    assert_eq!(outcome(&o), (3, "invalid_profile".into()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no profile `prod` (it has: staging)"));
    let o = run(d, &["ls", "--profile", "prod"]);
    assert_eq!(outcome(&o), (3, "invalid_profile".into()));
    // A misspelt member is an error naming its line, not a silently dropped setting.
    std::fs::write(
        d.join("typo.toml"),
        "[default]\nbucket = \"local\"\ngatekeper = \"x\"\n",
    )
    .unwrap();
    let o = run(d, &["ls", "--profiles", "typo.toml"]);
    assert_eq!(outcome(&o), (3, "invalid_profile".into()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3") && err.contains("gatekeper"), "{err}");
    // A profile file that was named must exist.
    assert_eq!(
        outcome(&run(d, &["ls", "--profiles", "none.toml"])),
        (3, "io".into())
    );
}

/// Sends a PUT signed by `key` straight to the gatekeeper (the CLI would refuse to
/// sign with a retired key) and returns the error code, if any.
fn raw_put(gk: &Gatekeeper, key: &VendorKey, object: &str) -> Option<String> {
    let body = b"rotation".to_vec();
    let now = unix_now();
    let request = Request::new(
        GatekeeperId::parse("local").unwrap(),
        Bucket::parse("local").unwrap(),
        Operation::Put {
            key: ObjectKey::parse(object).unwrap(),
            content_type: ContentType::parse("text/plain").unwrap(),
            body: BodyDigest::of(&body),
        },
        Subject::parse("ops-1").unwrap(),
        now,
        60,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let canonical = request.encode();
    let signature = encode_list(&[key.sign_document(&canonical)]);
    let url = format!(
        "{}/v1/objects/local/{}",
        gk.url,
        ObjectKey::parse(object).unwrap().to_url_path()
    );
    gk.runtime.block_on(async {
        let response = reqwest::Client::new()
            .put(url)
            .header("Countersign-Request", b64(&canonical))
            .header("Countersign-Signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            return None;
        }
        let json: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        Some(json["error"]["code"].as_str().unwrap().to_owned())
    })
}

#[test]
fn key_rotation_as_the_gatekeeper_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let now = unix_now();
    let retired_at = (now - 10).to_string();
    let started_at = (now - 3600).to_string();
    let old_public = keygen(d, "vendor-2025", &["--not-after", &retired_at]);
    let new_public = keygen(d, "vendor-2026", &["--not-before", &started_at]);
    let removed_public = keygen(d, "vendor-2024", &[]);
    let _ = removed_public; // generated but never given to the gatekeeper
    let mut gk = Gatekeeper::start(d, vec![old_public, new_public]);
    // Pin the gatekeeper's key from its own `GET /v1/keys` answer (checked out of band
    // in real life); the CLI accepts that document as a public key file.
    let keys = gk.runtime.block_on(async {
        reqwest::get(format!("{}/v1/keys", gk.url))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    std::fs::write(d.join("gk-keys.json"), &keys).unwrap();
    assert_eq!(
        load_public_keys(d.join("gk-keys.json")).unwrap(),
        load_public_keys(&gk.public_key_file).unwrap()
    );
    gk.public_key_file = d.join("gk-keys.json");
    let load = |name: &str| VendorKey::load(d.join(name)).unwrap().remove(0);

    // The vendor side refuses to sign with the retired key ...
    std::fs::write(d.join("r.txt"), b"rotation").unwrap();
    assert_eq!(
        outcome(&put(d, &gk, "vendor-2025.key", "org-1/r1.txt", "r.txt")),
        (1, "key_outside_window".into())
    );
    // ... and the gatekeeper refuses a request signed by it anyway.
    assert_eq!(
        raw_put(&gk, &load("vendor-2025.key"), "org-1/r2.txt").as_deref(),
        Some("key_outside_window")
    );
    // A key the customer removed from the policy is unknown.
    assert_eq!(
        raw_put(&gk, &load("vendor-2024.key"), "org-1/r3.txt").as_deref(),
        Some("unknown_key")
    );
    // The current key works, and a signer holding both keys picks it.
    assert_eq!(raw_put(&gk, &load("vendor-2026.key"), "org-1/r4.txt"), None);
    let mut args = vec!["put"];
    args.extend(remote(&gk, "vendor-2025.key", "org-1/r5.txt"));
    args.extend([
        "--signing-key",
        "vendor-2026.key",
        "--content-type",
        "text/plain",
        "r.txt",
    ]);
    let o = run(d, &args);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Reading it back: the manifest's uploader key must be trusted; the old key's
    // public file alone does not vouch for an upload signed by the new key.
    let mut args = vec!["get"];
    args.extend(remote(&gk, "vendor-2026.key", "org-1/r5.txt"));
    args.extend(["--vendor-key", "vendor-2025.key.pub", "--out", "r5.txt"]);
    assert_eq!(outcome(&run(d, &args)), (1, "unknown_key".into()));
    assert_eq!(
        outcome(&get(
            d,
            &gk,
            "vendor-2026.key",
            "org-1/r5.txt",
            "r5.txt",
            &[]
        ))
        .0,
        0
    );
    assert_eq!(std::fs::read(d.join("r5.txt")).unwrap(), b"rotation");
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` that passes every GET on,
/// one request per connection, after `rewrite(path, body)`.
fn proxy(upstream: &str, rewrite: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + 'static) -> String {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
            // The request's headers (signed requests carry theirs), but for its own.
            let mut headers = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() <= 2 {
                    break;
                }
                let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
                if name != "host" && name != "connection" {
                    headers.push_str(&h);
                }
            }
            let mut up = std::net::TcpStream::connect(&upstream).unwrap();
            write!(
                up,
                "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n{headers}\r\n"
            )
            .unwrap();
            let mut response = Vec::new();
            up.read_to_end(&mut response).unwrap();
            let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&response[..split]).into_owned();
            let status = head.lines().next().unwrap().to_owned();
            let body = rewrite(&path, response[split + 4..].to_vec());
            write!(
                conn,
                "{status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            conn.write_all(&body).unwrap();
        }
    });
    url
}

/// `log verify` through `url` (the gatekeeper or a proxy) with extra arguments.
fn log_verify(dir: &Path, gk: &Gatekeeper, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "log",
        "verify",
        "--gatekeeper",
        url,
        "--gatekeeper-key",
        gk.public_key_file.to_str().unwrap(),
        "--origin",
        "local/audit",
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// The size of the checkpoint in `file`.
fn checkpoint_size(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

/// Runs `log verify --save file` until its checkpoint covers at least `entries`.
fn save_checkpoint(dir: &Path, gk: &Gatekeeper, file: &str, entries: u64) {
    let mut last = String::new();
    for _ in 0..100 {
        let o = log_verify(dir, gk, &gk.url, &["--save", file]);
        if o.status.code() == Some(0) && checkpoint_size(&dir.join(file)) >= entries {
            return;
        }
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("no checkpoint of {entries} entries within 20 s: {last}");
}

#[test]
fn log_verify_follows_the_tiles_and_detects_tampering_and_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, load_public_keys(d.join("vendor-1.key.pub")).unwrap());
    let key = VendorKey::load(d.join("vendor-1.key")).unwrap().remove(0);

    assert_eq!(raw_put(&gk, &key, "org-1/a"), None);
    save_checkpoint(d, &gk, "old.cp", 1);
    let old = checkpoint_size(&d.join("old.cp"));

    // More than one full level-0 tile, so that a level-1 tile is checked too.
    for i in 0..300 {
        assert_eq!(raw_put(&gk, &key, &format!("org-1/{i}")), None);
    }
    save_checkpoint(d, &gk, "new.cp", old + 300);
    let new = checkpoint_size(&d.join("new.cp"));

    let o = log_verify(d, &gk, &gk.url, &["--since", "old.cp"]);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("log local/audit verified: "), "{out}");
    assert!(out.contains(&format!(
        "consistent with the saved checkpoint of {old} entries"
    )));

    // A proxy that flips one bit of a hash in the first (full) level-0 tile.
    let flip = proxy(&gk.url, |path, mut body| {
        if path == "/v1/log/tile/0/000" {
            body[40] ^= 1;
        }
        body
    });
    let o = log_verify(d, &gk, &flip, &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tile/1/000"));

    // A proxy that flips a hash of the level-1 tile: its hashes no longer match the
    // level-0 tiles below.
    let flip1 = proxy(&gk.url, |path, mut body| {
        if path.starts_with("/v1/log/tile/1/000") {
            body[0] ^= 1;
        }
        body
    });
    let o = log_verify(d, &gk, &flip1, &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));

    // A tile cut short.
    let cut = proxy(&gk.url, |path, mut body| {
        if path == "/v1/log/tile/0/000" {
            body.truncate(32);
        }
        body
    });
    let o = log_verify(d, &gk, &cut, &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));

    // Rollback: the server presents the old (genuinely signed) checkpoint to a client
    // that saved the newer one.
    let old_note = std::fs::read(d.join("old.cp")).unwrap();
    let rollback = proxy(&gk.url, move |path, body| {
        if path == "/v1/log/checkpoint" {
            return old_note.clone();
        }
        body
    });
    let o = log_verify(d, &gk, &rollback, &[]);
    assert_eq!(outcome(&o).0, 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = log_verify(d, &gk, &rollback, &["--since", "new.cp"]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "rollback: the log has {old} entries, fewer than the {new}"
        )),
        "{err}"
    );

    // A checkpoint of another key, or of another origin, is refused.
    keygen(d, "other", &["--role", "gatekeeper"]);
    let o = run(
        d,
        &[
            "log",
            "verify",
            "--gatekeeper",
            &gk.url,
            "--gatekeeper-key",
            "other.key.pub",
            "--origin",
            "local/audit",
        ],
    );
    assert_eq!(outcome(&o).0, 1, "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        d,
        &[
            "log",
            "verify",
            "--gatekeeper",
            &gk.url,
            "--gatekeeper-key",
            gk.public_key_file.to_str().unwrap(),
            "--origin",
            "elsewhere/audit",
        ],
    );
    assert_eq!(outcome(&o), (1, "wrong_audience".to_owned()));
}

/// `witness cosign` against `url` with the test's witness key and state.
fn cosign(dir: &Path, gk: &Gatekeeper, url: &str) -> Output {
    run(
        dir,
        &[
            "witness",
            "cosign",
            "--log",
            url,
            "--log-key",
            gk.public_key_file.to_str().unwrap(),
            "--origin",
            "local/audit",
            "--state",
            "witness.state",
            "--key",
            "witness-1.key",
            "--name",
            "witness.example",
        ],
    )
}

#[test]
fn witness_cosigns_only_checkpoints_that_extend_the_last_one() {
    use countersign_core::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keygen(d, "vendor-1", &[]);
    let witness = keygen(d, "witness-1", &["--role", "witness"]);
    let gk = Gatekeeper::start(d, load_public_keys(d.join("vendor-1.key.pub")).unwrap());
    let key = VendorKey::load(d.join("vendor-1.key")).unwrap().remove(0);
    let (log_key, _) =
        countersign_gatekeeper::config::load_or_create_key(&gk.data_dir.join("gatekeeper.key"))
            .unwrap();
    let log_signer = NoteSigner::ed25519("local/audit", log_key).unwrap();

    assert_eq!(raw_put(&gk, &key, "org-1/a"), None);
    save_checkpoint(d, &gk, "cp1", 1);
    let cp1 = std::fs::read(d.join("cp1")).unwrap();
    let size1 = checkpoint_size(&d.join("cp1"));

    // A cosignature that verifies under the witness's key.
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut cosigned = cp1.clone();
    cosigned.extend_from_slice(&o.stdout);
    let verifier = NoteVerifier::cosigner("witness.example", witness.public_key).unwrap();
    SignedNote::parse(&cosigned)
        .unwrap()
        .verify(&[&verifier])
        .unwrap();

    // Split view: a second checkpoint of the same size, genuinely signed by the log's
    // key, over another tree.
    let forged = Checkpoint::new("local/audit", size1, [7; 32], vec![]).unwrap();
    let forged = SignedNote::sign(forged.body(), &[&log_signer])
        .unwrap()
        .encode();
    let split = proxy(&gk.url, move |path, body| {
        if path == "/v1/log/checkpoint" {
            return forged.clone().into_bytes();
        }
        body
    });
    let o = cosign(d, &gk, &split);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("fork: two checkpoints of") && err.contains("halts"),
        "{err}"
    );

    // Halted: not even the honest log is cosigned until an operator resets.
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(outcome(&o), (1, "witness_halted".to_owned()));
    assert!(o.stdout.is_empty());
    let o = run(d, &["witness", "reset", "--state", "witness.state"]);
    assert_eq!(outcome(&o), (0, String::new()));
    assert!(String::from_utf8_lossy(&o.stdout).contains("it had halted: fork"));
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The log grows: the witness follows it (a consistency proof from the tiles).
    for i in 0..3 {
        assert_eq!(raw_put(&gk, &key, &format!("org-1/{i}")), None);
    }
    save_checkpoint(d, &gk, "cp2", size1 + 3);
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A larger checkpoint, signed by the log's key, over a tree that does not extend
    // the one cosigned: the consistency proof from the tiles fails.
    let size2 = checkpoint_size(&d.join("cp2"));
    let forged = Checkpoint::new("local/audit", size2 + 5, [9; 32], vec![]).unwrap();
    let forged = SignedNote::sign(forged.body(), &[&log_signer])
        .unwrap()
        .encode();
    let fork = proxy(&gk.url, move |path, body| {
        if path == "/v1/log/checkpoint" {
            return forged.clone().into_bytes();
        }
        body
    });
    // The tiles of the forged size do not exist yet: more entries first.
    for i in 3..10 {
        assert_eq!(raw_put(&gk, &key, &format!("org-1/{i}")), None);
    }
    save_checkpoint(d, &gk, "cp3", size2 + 5);
    let o = cosign(d, &gk, &fork);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not extend"));
    assert_eq!(
        outcome(&cosign(d, &gk, &gk.url)),
        (1, "witness_halted".to_owned())
    );
    let o = run(d, &["witness", "reset", "--state", "witness.state"]);
    assert_eq!(outcome(&o), (0, String::new()));
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Rollback: the log shows the older checkpoint again.
    let rollback = proxy(&gk.url, move |path, body| {
        if path == "/v1/log/checkpoint" {
            return cp1.clone();
        }
        body
    });
    let o = cosign(d, &gk, &rollback);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rollback"));
    let o = cosign(d, &gk, &gk.url);
    assert_eq!(outcome(&o), (1, "witness_halted".to_owned()));
}

/// `audit prove` of `receipt` through `url` with extra arguments.
fn prove(dir: &Path, gk: &Gatekeeper, url: &str, receipt: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        "prove",
        receipt,
        "--gatekeeper",
        url,
        "--gatekeeper-key",
        gk.public_key_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// `audit prove` until the log has integrated the entry (`not_found` before).
fn prove_when_integrated(dir: &Path, gk: &Gatekeeper, receipt: &str, extra: &[&str]) -> Output {
    for _ in 0..100 {
        let o = prove(dir, gk, &gk.url, receipt, extra);
        if outcome(&o).1 != "not_found" {
            return o;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the entry of {receipt} was not integrated within 20 s");
}

#[test]
fn audit_prove_shows_that_a_put_and_a_get_were_logged() {
    use countersign_vendor::countersign_core::note::NoteSigner;
    use countersign_vendor::logged::SavedReceipt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let vendor = keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, vec![vendor]);
    std::fs::write(d.join("a.txt"), b"logged").unwrap();

    let mut args = vec!["put"];
    args.extend(remote(&gk, "vendor-1.key", "org-1/a.txt"));
    args.extend([
        "--receipt",
        "put.json",
        "--content-type",
        "text/plain",
        "a.txt",
    ]);
    assert_eq!(outcome(&run(d, &args)), (0, String::new()));
    // A refused request saves nothing (the SDK's and the browser's errors carry the
    // deny receipt).
    let o = get(
        d,
        &gk,
        "vendor-1.key",
        "org-1/missing",
        "m.bin",
        &["--receipt", "deny.json"],
    );
    assert_eq!(outcome(&o), (1, "not_found".to_owned()));
    assert!(!d.join("deny.json").exists());
    // A download.
    let o = get(
        d,
        &gk,
        "vendor-1.key",
        "org-1/a.txt",
        "a.out",
        &["--receipt", "get.json"],
    );
    assert_eq!(outcome(&o), (0, String::new()));

    for file in ["put.json", "get.json"] {
        let o = prove_when_integrated(d, &gk, file, &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            outcome(&o),
            (0, String::new()),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.starts_with("logged: entry "), "{out}");
        assert!(
            out.contains(" of local/audit, in the signed checkpoint of "),
            "{out}"
        );
    }

    // A customer admin holding the entry's bytes checks that it records the decision
    // (the GET's entry follows the refusal's).
    let saved = SavedReceipt::parse(&std::fs::read(d.join("get.json")).unwrap()).unwrap();
    let receipt = countersign_vendor::countersign_core::Receipt::parse(
        &countersign_vendor::countersign_core::text::parse_b64(&saved.receipt, "r").unwrap(),
    )
    .unwrap();
    assert!(receipt.leaf_sha256.is_some());
    let entries = gk
        .runtime
        .block_on(
            gk.state
                .ledger
                .entries(receipt.audit_seq.saturating_sub(1), 2),
        )
        .unwrap();
    let (before, this) = (&entries[0], &entries[1]);
    assert_eq!(this.seq, receipt.audit_seq);
    // The entry carries the request id the client was answered with.
    assert_eq!(this.request_id.as_ref().map(Vec::len), Some(32));
    std::fs::write(d.join("entry.bin"), this.encode()).unwrap();
    std::fs::write(d.join("other.bin"), before.encode()).unwrap();
    let o = prove(d, &gk, &gk.url, "get.json", &["--entry", "entry.bin"]);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("the entry records `allow`"));
    assert_eq!(before.decision.to_string(), "deny not_found");
    let o = prove(d, &gk, &gk.url, "get.json", &["--entry", "other.bin"]);
    assert_eq!(outcome(&o), (1, "receipt_mismatch".to_owned()));

    // A receipt file edited after it was saved (another leaf hash) no longer verifies.
    let mut forged = saved.clone();
    let text = String::from_utf8(
        countersign_vendor::countersign_core::text::parse_b64(&saved.receipt, "r").unwrap(),
    )
    .unwrap();
    let leaf = text.lines().last().unwrap().to_owned();
    let edited = text.replace(&leaf, &format!("leaf-sha256:{}", "00".repeat(32)));
    forged.receipt = countersign_vendor::countersign_core::text::b64(edited.as_bytes());
    std::fs::write(d.join("forged.json"), serde_json::to_vec(&forged).unwrap()).unwrap();
    let o = prove(d, &gk, &gk.url, "forged.json", &[]);
    assert_eq!(outcome(&o), (1, "bad_signature".to_owned()));
    std::fs::write(d.join("junk.json"), b"{}").unwrap();
    assert_eq!(
        outcome(&prove(d, &gk, &gk.url, "junk.json", &[])),
        (1, "malformed".to_owned())
    );

    // A server that lies about a hash the proof uses is caught.
    let flip = proxy(&gk.url, |path, mut body| {
        // Every hash of the leaf tile (the proof uses the siblings, not the leaf's own).
        if path.starts_with("/v1/log/tile/0/") {
            body.iter_mut().for_each(|b| *b ^= 1);
        }
        body
    });
    let o = prove(d, &gk, &flip, "put.json", &[]);
    assert_eq!(
        outcome(&o),
        (1, "audit_chain_broken".to_owned()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Witnesses: a quorum the checkpoint does not carry is refused.
    let witness = NoteSigner::cosigner(
        "w1.example",
        countersign_vendor::countersign_core::ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier_key();
    let o = prove(
        d,
        &gk,
        &gk.url,
        "put.json",
        &["--witness", &witness, "--quorum", "1"],
    );
    assert_eq!(outcome(&o), (1, "threshold_not_met".to_owned()));
    let o = prove(d, &gk, &gk.url, "put.json", &["--quorum", "1"]);
    assert_eq!(outcome(&o).0, 2);
}

/// `countersign audit verify` checks an export without the gatekeeper: a whole
/// export verifies; an entry rewritten (with its readable fields), an entry removed
/// and a tail cut below the signed tree checkpoint each fail.
#[test]
fn audit_verify_checks_an_export_without_the_gatekeeper() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let vendor = keygen(d, "vendor-1", &[]);
    let gk = Gatekeeper::start(d, vec![vendor]);
    std::fs::write(d.join("a.txt"), b"exported").unwrap();
    for i in 0..3 {
        let o = put(d, &gk, "vendor-1.key", &format!("org-1/{i}.txt"), "a.txt");
        assert_eq!(outcome(&o), (0, String::new()));
    }
    let export = |name: &str| {
        let text = gk.runtime.block_on(async {
            use futures::TryStreamExt as _;
            gk.state.ledger.integrate(10_000).await.unwrap();
            let chunks: Vec<bytes::Bytes> = countersign_gatekeeper::http::audit::export_jsonl(
                &gk.state.ledger,
                1_900_000_000,
                true,
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
            String::from_utf8(chunks.concat()).unwrap()
        });
        std::fs::write(d.join(name), &text).unwrap();
        text
    };
    let verify = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            file,
            "--gatekeeper-key",
            "gatekeeper.pub",
        ];
        args.extend_from_slice(extra);
        run(d, &args)
    };
    let text = export("export.jsonl");
    let o = verify("export.jsonl", &["--require-tree"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("audit log OK: 3 entries chained"), "{out}");
    assert!(
        out.contains("the first 3 entries match the signed tree checkpoint"),
        "{out}"
    );

    let lines: Vec<&str> = text.lines().collect();
    let entry_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"type\":\"entry\""))
        .collect();
    let write = |name: &str, ls: &[String]| std::fs::write(d.join(name), ls.join("\n")).unwrap();
    // The second entry rewritten as another, valid entry: the third no longer chains.
    let mut swapped: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    swapped[entry_lines[1]] = lines[entry_lines[0]].to_owned();
    write("swapped.jsonl", &swapped);
    assert_eq!(
        outcome(&verify("swapped.jsonl", &[])),
        (1, "audit_chain_broken".into())
    );
    // The middle entry removed.
    let mut removed: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    removed.remove(entry_lines[1]);
    write("removed.jsonl", &removed);
    assert_eq!(
        outcome(&verify("removed.jsonl", &[])),
        (1, "audit_chain_broken".into())
    );
    // The tail cut, chain checkpoints dropped: the signed tree still covers it.
    let cut: Vec<String> = lines[..entry_lines[2]]
        .iter()
        .filter(|l| !l.contains("\"type\":\"checkpoint\""))
        .map(|l| (*l).to_owned())
        .collect();
    write("cut.jsonl", &cut);
    let o = verify("cut.jsonl", &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".into()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("entries were removed"));
    // Without the tree checkpoint, --require-tree refuses.
    write(
        "no-tree.jsonl",
        &lines[1..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        outcome(&verify("no-tree.jsonl", &["--require-tree"])),
        (1, "audit_chain_broken".into())
    );
}

/// A gatekeeper whose `admin-1` key (a `customer-admin`) may read the audit log.
/// Its database is `database_url` (PostgreSQL), or SQLite in its data directory.
fn start_with_admin(dir: &Path, database_url: Option<&str>) -> Gatekeeper {
    let admin = load_public_keys(dir.join("admin-1.key.pub")).unwrap();
    Gatekeeper::start_with(
        dir,
        load_public_keys(dir.join("vendor-1.key.pub")).unwrap(),
        |c| {
            if let Some(url) = database_url {
                c.database_url = countersign_gatekeeper::config::Secret::new(url);
            }
            c.keys.extend(admin);
            c.thresholds
                .insert("AUDIT".into(), vec![(Role::customer_admin(), 1)]);
        },
    )
}

/// `audit verify --url` through `url` with the admin key and extra arguments.
fn audit_verify_url(dir: &Path, gk: &Gatekeeper, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        "verify",
        "--url",
        url,
        "--gatekeeper-key",
        gk.public_key_file.to_str().unwrap(),
        "--admin-key",
        "admin-1.key",
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// Runs `sql` on the database at `url` (`sqlite://…` or `postgres://…`).
fn sql(rt: &tokio::runtime::Runtime, url: &str, sql: &str) {
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

/// A database to back up and restore (the gatekeeper stopped): SQLite files copied,
/// or a PostgreSQL database cloned as a template.
enum Db {
    Sqlite(PathBuf),
    Postgres { server: String, name: String },
}

impl Db {
    fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres { server, name } => format!("{server}/{name}"),
        }
    }

    /// Copies the database `from` to `to` (names or file paths).
    fn copy(&self, rt: &tokio::runtime::Runtime, from: &str, to: &str) {
        match self {
            Self::Sqlite(_) => {
                // The database file and its write-ahead log, as they are.
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{to}{suffix}"));
                    let source = format!("{from}{suffix}");
                    if Path::new(&source).exists() {
                        std::fs::copy(&source, format!("{to}{suffix}")).unwrap();
                    }
                }
            }
            Self::Postgres { server, .. } => {
                let admin = format!("{server}/postgres");
                // The stopped gatekeeper's connections may linger a moment.
                sql(
                    rt,
                    &admin,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ('{from}', '{to}') AND pid <> pg_backend_pid()"
                    ),
                );
                sql(rt, &admin, &format!("DROP DATABASE IF EXISTS {to}"));
                sql(rt, &admin, &format!("CREATE DATABASE {to} TEMPLATE {from}"));
            }
        }
    }

    /// The name [`Db::copy`] takes for the database itself, and for its backup.
    fn names(&self, dir: &Path) -> (String, String) {
        match self {
            Self::Sqlite(path) => (
                path.display().to_string(),
                dir.join("backup.sqlite").display().to_string(),
            ),
            Self::Postgres { name, .. } => (name.clone(), format!("{name}_backup")),
        }
    }
}

#[test]
fn audit_verify_over_http_checks_entry_bundles_and_detects_tampering_and_rollback() {
    audit_verify_over_http_scenario(None);
}

#[test]
fn audit_verify_over_http_detects_tampering_and_rollback_on_postgres() {
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
    let name = format!("gk_verify_{}", std::process::id());
    let (server, _) = url.rsplit_once('/').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    sql(&rt, &url, &format!("CREATE DATABASE {name}"));
    audit_verify_over_http_scenario(Some(Db::Postgres {
        server: server.to_owned(),
        name,
    }));
}

/// Verifies a gatekeeper's log over HTTP, then attacks it: a server that alters an
/// entry, the database rewritten in place, the database restored from a backup.
fn audit_verify_over_http_scenario(pg: Option<Db>) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keygen(d, "vendor-1", &[]);
    keygen(d, "admin-1", &["--role", "customer-admin"]);
    let key = VendorKey::load(d.join("vendor-1.key")).unwrap().remove(0);
    let db = pg.unwrap_or_else(|| Db::Sqlite(d.join("gk").join("gatekeeper.sqlite")));
    let pg_url = match &db {
        Db::Postgres { .. } => Some(db.url()),
        Db::Sqlite(_) => None,
    };
    let (db_name, backup_name) = db.names(d);
    let gk = start_with_admin(d, pg_url.as_deref());
    let tools = tokio::runtime::Runtime::new().unwrap();
    let published = gk.state.config.published_checkpoints.clone();
    let published_arg = published.to_str().unwrap().to_owned();
    for i in 0..20 {
        assert_eq!(raw_put(&gk, &key, &format!("org-1/{i}")), None);
    }
    save_checkpoint(d, &gk, "backup.cp", 20);
    // A backup of the database, taken with the gatekeeper stopped.
    drop(gk);
    db.copy(&tools, &db_name, &backup_name);
    let gk = start_with_admin(d, pg_url.as_deref());

    // More than a full entry bundle, so that a full and a partial bundle are checked.
    for i in 20..300 {
        assert_eq!(raw_put(&gk, &key, &format!("org-1/{i}")), None);
    }
    save_checkpoint(d, &gk, "new.cp", 300);
    let o = audit_verify_url(
        d,
        &gk,
        &gk.url,
        &[
            "--state",
            "state.cp",
            "--since",
            "backup.cp",
            "--published",
            &published_arg,
        ],
    );
    assert_eq!(
        outcome(&o),
        (0, String::new()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("audit log local/audit OK: "), "{out}");
    assert!(out.contains("match the signed checkpoint"), "{out}");
    let verified = checkpoint_size(&d.join("state.cp"));
    assert!(verified >= 300, "{verified}");

    // Published checkpoints out of order: the log went back between two of them.
    let mut notes = Vec::new();
    let mut lines = countersign_core::note::NoteLines::default();
    for line in std::fs::read_to_string(&published).unwrap().lines() {
        notes.extend(lines.push(line).unwrap());
    }
    assert!(notes.len() >= 2, "{notes:?}");
    notes.reverse();
    let reordered: String = notes.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(d.join("reordered.log"), reordered).unwrap();
    let o = audit_verify_url(d, &gk, &gk.url, &["--published", "reordered.log"]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the published checkpoints go back from size"),
        "{err}"
    );

    // Without the admin key's role, the bundles are refused.
    let mut args = vec![
        "audit",
        "verify",
        "--url",
        &gk.url,
        "--gatekeeper-key",
        gk.public_key_file.to_str().unwrap(),
        "--admin-key",
        "vendor-1.key",
    ];
    let o = run(d, &args);
    assert_eq!(outcome(&o), (1, "threshold_not_met".to_owned()));
    // --url and an export file exclude each other.
    args.push("export.jsonl");
    assert_eq!(run(d, &args).status.code(), Some(2));

    // A server that alters one entry of the first bundle (a rewrite the tiles and the
    // signed root do not follow).
    let rewrite = proxy(&gk.url, |path, mut body| {
        if path == "/v1/audit/tile/entries/000" {
            let at = body.windows(6).position(|w| w == b"org-1/").unwrap();
            body[at + 6] = b'X';
        }
        body
    });
    let o = audit_verify_url(d, &gk, &rewrite, &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not hash to its leaf in tile tile/0/000"),
        "{err}"
    );

    // The database rewritten in place: an allow becomes a deny.
    sql(
        &tools,
        &db.url(),
        "UPDATE audit_log SET decision = 'deny', error_code = 'expired' WHERE seq = 7",
    );
    let o = audit_verify_url(d, &gk, &gk.url, &[]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("audit entry 7 does not hash to its leaf"),
        "{err}"
    );

    // Rollback: the database restored from the backup, the gatekeeper restarted (its
    // key and its published file are unchanged).
    drop(gk);
    db.copy(&tools, &backup_name, &db_name);
    let gk = start_with_admin(d, pg_url.as_deref());
    let o = audit_verify_url(d, &gk, &gk.url, &["--state", "state.cp"]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "rollback: the checkpoint of the last run (state file) covers {verified} entries"
        )),
        "{err}"
    );
    let o = audit_verify_url(d, &gk, &gk.url, &["--published", &published_arg]);
    assert_eq!(outcome(&o), (1, "audit_chain_broken".to_owned()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rollback: the published checkpoint covers"),
        "{err}"
    );
    // The state file still holds the last good checkpoint.
    assert_eq!(checkpoint_size(&d.join("state.cp")), verified);
}
