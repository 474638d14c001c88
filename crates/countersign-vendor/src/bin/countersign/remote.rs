//! `put` and `get` against a gatekeeper: sign the request, stream the body, verify the
//! gatekeeper's receipt and the object's manifest. `get` writes its output only after
//! the bytes matched the signed manifest: it streams into a temporary file created with
//! mode 0600 next to the output, renames it into place once verified, and removes it on
//! any failure or interruption.

use crate::Failure;
use crate::cli::hash_file;
use bytes::Bytes;
use clap::Args;
use countersign_core::text::b64;
use countersign_core::text::hex;
use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ContentType, Decision, ErrorCode, GatekeeperId, ObjectKey,
    Operation, Policy, Request, Role, Subject, VerifiedManifest,
};
use countersign_vendor::keys::load_public_keys;
use countersign_vendor::logged::SavedReceipt;
use countersign_vendor::transport::{
    DownloadHeaders, MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER, RECEIPT_HEADER,
    RECEIPT_SIGNATURE_HEADER, REQUEST_HEADER, SIGNATURE_HEADER, object_path, request_headers,
    role_policy, verify_download_headers, verify_manifest, verify_receipt,
};
use countersign_vendor::{Signer, SigningLimits, unix_now};
use sha2::{Digest as _, Sha256};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

/// Where and as whom to talk to a gatekeeper (shared by `put` and `get`).
#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// Gatekeeper base URL, such as `https://gk.example.com`
    #[arg(long, env = "COUNTERSIGN_GATEKEEPER_URL")]
    gatekeeper: String,
    /// Gatekeeper public key file(s): receipts and manifests must verify under them.
    #[arg(long = "gatekeeper-key", required = true)]
    gatekeeper_keys: Vec<PathBuf>,
    /// Secret key file (repeatable). Without it, keys come from $COUNTERSIGN_VENDOR_KEYS.
    #[arg(long = "signing-key")]
    signing_keys: Vec<PathBuf>,
    /// Public key files of vendor keys whose uploads are trusted [default: the signing keys].
    #[arg(long = "vendor-key")]
    vendor_keys: Vec<PathBuf>,
    /// Gatekeeper id the request is addressed to.
    #[arg(long)]
    audience: String,
    /// Bucket.
    #[arg(long)]
    bucket: String,
    /// Object key.
    #[arg(long)]
    object: String,
    /// The vendor user id the request is made for.
    #[arg(long)]
    subject: String,
    /// Request lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u64,
    /// No progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Save the gatekeeper's verified receipt (allow or deny) to this file, for
    /// `countersign audit prove`.
    #[arg(long)]
    receipt: Option<PathBuf>,
}

/// Arguments of `put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Media type stored with the object.
    #[arg(long)]
    content_type: String,
    /// The file to upload.
    file: PathBuf,
}

/// Arguments of `get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Output file (`-` for stdout, buffered in memory until verified).
    #[arg(long, short)]
    out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub(crate) fn unreachable(e: &reqwest::Error) -> Failure {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    Failure {
        exit: 4,
        code: "unreachable".to_owned(),
        message: format!("the gatekeeper could not be reached: {message}"),
    }
}

pub(crate) fn bad_response(message: impl Into<String>) -> Failure {
    Failure {
        exit: 4,
        code: "bad_response".to_owned(),
        message: message.into(),
    }
}

/// Shows `label [#####.....] 42% 12.0/28.5 MiB` on stderr, only on a terminal, at
/// most ten times a second.
struct Progress {
    label: String,
    total: u64,
    done: u64,
    shown: Option<Instant>,
    enabled: bool,
}

impl Progress {
    fn new(label: &str, total: u64, disabled: bool) -> Self {
        Self {
            label: label.to_owned(),
            total,
            done: 0,
            shown: None,
            enabled: !disabled && std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.enabled
            && self
                .shown
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.shown = Some(Instant::now());
        let fraction = if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        };
        let filled = ((fraction * 30.0) as usize).min(30);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        eprint!(
            "\r{} [{}{}] {:>3.0}% {:.1}/{:.1} MiB",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled),
            fraction * 100.0,
            mib(self.done),
            mib(self.total)
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self) {
        if self.enabled {
            self.draw();
            eprintln!();
        }
    }
}

struct Prepared {
    signer: Signer,
    gatekeeper: Policy,
    uploader: Policy,
    base: String,
    audience: GatekeeperId,
    bucket: Bucket,
    key: ObjectKey,
}

fn prepare(r: &RemoteArgs) -> Result<Prepared, Failure> {
    let signer = if r.signing_keys.is_empty() {
        Signer::from_env(crate::cli::KEYS_ENV)?
    } else {
        Signer::from_key_files(&r.signing_keys)?
    };
    let signer = signer.with_limits(SigningLimits {
        max_lifetime_secs: r.lifetime.max(1),
        ..SigningLimits::default()
    })?;
    let mut gk_keys: Vec<AuthorizedKey> = Vec::new();
    for p in &r.gatekeeper_keys {
        gk_keys.extend(load_public_keys(p)?);
    }
    let gatekeeper = role_policy(gk_keys, &Role::gatekeeper(), 1)?;
    let vendor_keys: Vec<AuthorizedKey> = if r.vendor_keys.is_empty() {
        signer.authorized_keys()
    } else {
        let mut keys = Vec::new();
        for p in &r.vendor_keys {
            keys.extend(load_public_keys(p)?);
        }
        keys
    };
    let uploader = role_policy(vendor_keys, signer.role(), 1)?;
    let base = r.gatekeeper.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Failure::usage(format!(
            "--gatekeeper `{base}` must start with http:// or https://"
        )));
    }
    Ok(Prepared {
        signer,
        gatekeeper,
        uploader,
        base,
        audience: GatekeeperId::parse(&r.audience)?,
        bucket: Bucket::parse(&r.bucket)?,
        key: ObjectKey::parse(&r.object)?,
    })
}

impl Prepared {
    fn url(&self) -> String {
        format!("{}{}", self.base, object_path(&self.bucket, &self.key))
    }

    fn sign(
        &self,
        r: &RemoteArgs,
        operation: Operation,
    ) -> Result<(Vec<u8>, String, String), Failure> {
        let now = unix_now();
        let request = Request::new(
            self.audience.clone(),
            self.bucket.clone(),
            operation,
            Subject::parse(&r.subject)?,
            now,
            r.lifetime,
            &mut rand_core::OsRng,
        )?;
        let signature = self.signer.sign_request(&request, now)?;
        let canonical = request.encode();
        let (request_header, signature_header) =
            request_headers(&canonical, std::slice::from_ref(&signature));
        Ok((canonical, request_header, signature_header))
    }

    /// Verifies the receipt (it must allow) and the manifest of a success response.
    fn verify(
        &self,
        response: &reqwest::Response,
        canonical: &[u8],
    ) -> Result<(VerifiedManifest, u64), Failure> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    countersign_core::Error::new(
                        ErrorCode::Malformed,
                        format!("the gatekeeper's answer has no {name} header"),
                    )
                })
        };
        let receipt = verify_receipt(
            header(RECEIPT_HEADER)?,
            header(RECEIPT_SIGNATURE_HEADER)?,
            &self.audience,
            &self.gatekeeper,
            canonical,
        )?;
        if receipt.receipt().decision != Decision::Allow {
            return Err(countersign_core::Error::new(
                ErrorCode::ReceiptMismatch,
                "the gatekeeper answered with success but its receipt records a denial",
            )
            .into());
        }
        let manifest = verify_manifest(
            header(MANIFEST_HEADER)?,
            header(MANIFEST_SIGNATURE_HEADER)?,
            &self.gatekeeper,
            &self.uploader,
        )?;
        manifest.check_object(&self.bucket, &self.key)?;
        Ok((manifest, receipt.receipt().audit_seq))
    }
}

/// Writes the receipt header values `(receipt, signature)` of `canonical` to `path`
/// as a [`SavedReceipt`] (the caller verified them).
fn save_receipt(
    path: Option<&Path>,
    p: &Prepared,
    canonical: &[u8],
    (receipt, signature): (&str, &str),
) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let saved = SavedReceipt {
        gatekeeper: p.audience.to_string(),
        request: b64(canonical),
        receipt: receipt.trim().to_owned(),
        receipt_signature: signature.trim().to_owned(),
    };
    let json = serde_json::to_vec_pretty(&saved)
        .map_err(|e| bad_response(format!("cannot encode the receipt: {e}")))?;
    crate::log::write_atomically(path, &json)
}

/// The two receipt header values of an answer (empty if absent).
fn receipt_headers(response: &reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (header(RECEIPT_HEADER), header(RECEIPT_SIGNATURE_HEADER))
}

/// Turns a gatekeeper error answer into a failure with its code, saying whether the
/// signed denial receipt verified (and saving it to `save`, if given, when it does).
async fn refusal(
    response: reqwest::Response,
    p: &Prepared,
    canonical: &[u8],
    save: Option<&Path>,
) -> Failure {
    let status = response.status();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    let receipt = match (header(RECEIPT_HEADER), header(RECEIPT_SIGNATURE_HEADER)) {
        (Some(r), Some(s)) => match verify_receipt(r, s, &p.audience, &p.gatekeeper, canonical) {
            Ok(v) if v.receipt().decision != Decision::Allow => {
                match save_receipt(save, p, canonical, (r, s)) {
                    Ok(()) => "; its signed denial receipt verifies".to_owned(),
                    Err(f) => format!(
                        "; its signed denial receipt verifies but was not saved: {}",
                        f.message
                    ),
                }
            }
            Ok(_) => "; but its receipt says allow".to_owned(),
            Err(e) => format!("; its denial receipt does not verify ({})", e.code()),
        },
        _ => "; it sent no receipt".to_owned(),
    };
    let body = response.bytes().await.unwrap_or_default();
    let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_owned(),
                e.get("message")?.as_str()?.to_owned(),
            ))
        });
    match parsed {
        Some((code, message)) => Failure {
            exit: 1,
            code,
            message: format!("the gatekeeper refused ({status}): {message}{receipt}"),
        },
        None => bad_response(format!(
            "the gatekeeper answered {status} without a JSON error"
        )),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io("tokio runtime", &e))
}

pub(crate) fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| unreachable(&e))
}

/// Runs `put`.
pub fn put(a: PutArgs) -> Result<u8, Failure> {
    let p = prepare(&a.remote)?;
    let digest = hash_file(&a.file)?;
    let operation = Operation::Put {
        key: p.key.clone(),
        content_type: ContentType::parse(&a.content_type)?,
        body: digest,
    };
    let (canonical, request_header, signature_header) = p.sign(&a.remote, operation)?;
    let what = a.file.display().to_string();
    let file = std::fs::File::open(&a.file).map_err(|e| Failure::io(&what, &e))?;
    runtime()?.block_on(async {
        let mut progress = Progress::new("put", digest.length, a.remote.no_progress);
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        // Read the file in its own task so the upload streams with bounded memory.
        let reader = tokio::spawn(async move {
            let mut file = tokio::fs::File::from_std(file);
            let mut tx = tx;
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                let item = match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if futures::SinkExt::send(&mut tx, item).await.is_err() || failed {
                    break;
                }
            }
        });
        let counted = futures::StreamExt::map(rx, move |item| {
            if let Ok(chunk) = &item {
                progress.add(chunk.len() as u64);
                if progress.done == progress.total {
                    progress.finish();
                }
            }
            item
        });
        let response = client()?
            .put(p.url())
            .header(REQUEST_HEADER, request_header)
            .header(SIGNATURE_HEADER, signature_header)
            .header(reqwest::header::CONTENT_LENGTH, digest.length)
            .header(reqwest::header::CONTENT_TYPE, a.content_type.as_str())
            .body(reqwest::Body::wrap_stream(counted))
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        reader.abort();
        if !response.status().is_success() {
            return Err(refusal(response, &p, &canonical, a.remote.receipt.as_deref()).await);
        }
        let (manifest, seq) = p.verify(&response, &canonical)?;
        manifest.check_body(&digest)?;
        let (receipt, receipt_signature) = receipt_headers(&response);
        save_receipt(
            a.remote.receipt.as_deref(),
            &p,
            &canonical,
            (&receipt, &receipt_signature),
        )?;
        println!(
            "stored {}/{}: {} bytes, sha256 {}, audit-seq {seq}; receipt and manifest verified",
            p.bucket,
            p.key,
            digest.length,
            hex(&digest.sha256)
        );
        Ok(0)
    })
}

/// Where a verified download goes.
enum Sink {
    Memory(Vec<u8>),
    File(TempOutput),
}

/// The download's temporary file, next to the output so the final rename stays on one
/// file system. It is created with mode 0600 from the start (a download holds patient
/// data; the umask's 0644 would let every local user read it), and it is removed
/// whenever it is dropped before [`TempOutput::persist`]: an error, a failed
/// verification, an early return or a panic never leaves a partial file behind.
struct TempOutput {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl TempOutput {
    /// Creates a fresh temporary file for `out` (never an existing one: `create_new`).
    fn create(out: &Path) -> Result<Self, Failure> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut nonce = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let path = out.with_file_name(format!(".{name}.countersign-{}", hex(&nonce)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, DOWNLOAD_MODE);
        let file = options
            .open(&path)
            .map_err(|e| Failure::io(&path.display().to_string(), &e))?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(chunk),
            None => Err(std::io::Error::other("the file is already closed")),
        };
        written.map_err(|e| Failure::io(&self.path.display().to_string(), &e))
    }

    /// Flushes the bytes to disk and moves the file to `out`. Without `replace`, an
    /// `out` that appeared since the start is not replaced (a hard link fails if the
    /// name exists, where a rename would silently overwrite it).
    fn persist(mut self, out: &Path, replace: bool) -> Result<(), Failure> {
        let what = out.display().to_string();
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| Failure::io(&what, &e))?;
        }
        if replace {
            return std::fs::rename(&self.path, out).map_err(|e| Failure::io(&what, &e));
        }
        match std::fs::hard_link(&self.path, out) {
            // `self` is dropped next, which removes the temporary name.
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Failure::io(&what, &exists_error()))
            }
            // A file system without hard links: check, then rename.
            Err(_) if !out.exists() => {
                std::fs::rename(&self.path, out).map_err(|e| Failure::io(&what, &e))
            }
            Err(_) => Err(Failure::io(&what, &exists_error())),
        }
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        drop(self.file.take());
        // After a rename the name is gone already: nothing to do, nothing to report.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Mode of a downloaded file: read and write for its owner only.
#[cfg(unix)]
const DOWNLOAD_MODE: u32 = 0o600;

fn exists_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "exists (use --force to replace it)",
    )
}

impl Sink {
    fn open(out: &Path, force: bool) -> Result<Self, Failure> {
        if out == Path::new("-") {
            return Ok(Self::Memory(Vec::new()));
        }
        if out.exists() && !force {
            return Err(Failure::io(&out.display().to_string(), &exists_error()));
        }
        Ok(Self::File(TempOutput::create(out)?))
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        match self {
            Self::Memory(v) => {
                v.extend_from_slice(chunk);
                Ok(())
            }
            Self::File(temp) => temp.write(chunk),
        }
    }

    fn commit(self, out: &Path, force: bool) -> Result<(), Failure> {
        match self {
            Self::Memory(v) => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&v)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| Failure::io("stdout", &e))
            }
            Self::File(temp) => temp.persist(out, force),
        }
    }
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM; Ctrl-C elsewhere).
/// On Unix the handlers are installed by this call, before any file exists, so no
/// signal slips through between creating the temporary file and waiting for it.
fn interrupted() -> Result<impl Future<Output = ()>, Failure> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let installed =
            signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
        let (mut interrupt, mut terminate) =
            installed.map_err(|e| Failure::io("signal handler", &e))?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Runs `get`.
pub fn get(a: GetArgs) -> Result<u8, Failure> {
    let p = prepare(&a.remote)?;
    let operation = Operation::Get {
        key: p.key.clone(),
        range: None,
    };
    let (canonical, request_header, signature_header) = p.sign(&a.remote, operation)?;
    runtime()?.block_on(async {
        let mut response = client()?
            .get(p.url())
            .header(REQUEST_HEADER, request_header)
            .header(SIGNATURE_HEADER, signature_header)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            return Err(refusal(response, &p, &canonical, a.remote.receipt.as_deref()).await);
        }
        // Checked now so a bad answer is refused before any byte is downloaded; the
        // authoritative check is `verify_download_headers` once the bytes are in.
        let (manifest, _) = p.verify(&response, &canonical)?;
        let expected = manifest.body().copied().ok_or_else(|| {
            Failure::from(countersign_core::Error::new(
                ErrorCode::ManifestMismatch,
                "the manifest describes no body",
            ))
        })?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let ((receipt, receipt_signature), manifest_header, manifest_signature) = (
            receipt_headers(&response),
            header(MANIFEST_HEADER),
            header(MANIFEST_SIGNATURE_HEADER),
        );
        // From here on a temporary file exists: Ctrl-C (or SIGTERM) must end through
        // the code below, which drops it, not kill the process with the file left.
        let stop = interrupted()?;
        let mut sink = Sink::open(&a.out, a.force)?;
        let mut progress = Progress::new("get", expected.length, a.remote.no_progress);
        let mut hasher = Sha256::new();
        let mut length = 0u64;
        let streamed = async {
            while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(&e))? {
                length += chunk.len() as u64;
                if length > expected.length {
                    return Err(countersign_core::Error::new(
                        ErrorCode::BodyMismatch,
                        format!(
                            "the body is longer than the signed {} bytes",
                            expected.length
                        ),
                    )
                    .into());
                }
                hasher.update(&chunk);
                sink.write(&chunk)?;
                progress.add(chunk.len() as u64);
            }
            progress.finish();
            let got = BodyDigest {
                sha256: hasher.finalize().into(),
                length,
            };
            let headers = DownloadHeaders {
                receipt: &receipt,
                receipt_signature: &receipt_signature,
                manifest: &manifest_header,
                manifest_signature: &manifest_signature,
            };
            Ok::<countersign_core::download::VerifiedDownload, Failure>(verify_download_headers(
                &canonical,
                &headers,
                Some(&got),
                &p.gatekeeper,
                &p.uploader,
            )?)
        };
        let streamed = tokio::select! {
            result = streamed => result,
            () = stop => Err(Failure {
                exit: 130,
                code: "interrupted".to_owned(),
                message: "interrupted; the partial download was removed".to_owned(),
            }),
        };
        // On an error `sink` is dropped on return, and with it the temporary file.
        let verified = streamed?;
        let seq = verified.receipt.receipt().audit_seq;
        let manifest = verified.manifest;
        sink.commit(&a.out, a.force)?;
        save_receipt(
            a.remote.receipt.as_deref(),
            &p,
            &canonical,
            (&receipt, &receipt_signature),
        )?;
        eprintln!(
            "countersign: {}/{}: {} bytes verified (uploaded by {}, audit-seq {seq})",
            p.bucket,
            p.key,
            expected.length,
            manifest.uploader()
        );
        Ok(0)
    })
}
