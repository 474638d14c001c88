//! `put`, `get`, `cat`, `head` and `ls`: thin commands over
//! [`countersign_vendor::Client`], which signs each request and verifies the
//! gatekeeper's receipt, the object's manifest, the bytes and the signed listing pages
//! before anything is printed or written. Settings come from flags, else from a
//! profile ([`crate::profile`]). Also the HTTP helpers the `log` command shares.

use crate::Failure;
use crate::input::public_keys;
pub(crate) use crate::input::runtime;
use crate::profile::{self, PROFILE_ENV, PROFILES_ENV};
use clap::Args;
use countersign_core::text::hex;
use countersign_core::{Bucket, ContentType, GatekeeperId, ObjectKey, Subject};
use countersign_vendor::client::{ObjectInfo, Progress};
use countersign_vendor::{Client, Signer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where and as whom to talk to a gatekeeper (shared by every remote command).
#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// Profile to take the settings below from [default: `default`, if the file has it].
    #[arg(long, env = PROFILE_ENV)]
    profile: Option<String>,
    /// Profile file [default: $XDG_CONFIG_HOME/countersign/profiles.toml, else
    /// ~/.config/countersign/profiles.toml].
    #[arg(long, env = PROFILES_ENV)]
    profiles: Option<PathBuf>,
    /// Gatekeeper base URL, such as `https://gk.example.com`
    #[arg(long, env = "COUNTERSIGN_GATEKEEPER_URL")]
    gatekeeper: Option<String>,
    /// Gatekeeper public key file(s): receipts, manifests and listings must verify under them.
    #[arg(long = "gatekeeper-key")]
    gatekeeper_keys: Vec<PathBuf>,
    /// Secret key file (repeatable). Without it (here or in the profile), keys come
    /// from $COUNTERSIGN_VENDOR_KEYS.
    #[arg(long = "signing-key")]
    signing_keys: Vec<PathBuf>,
    /// Public key files of vendor keys whose uploads are trusted [default: the signing keys].
    #[arg(long = "vendor-key")]
    vendor_keys: Vec<PathBuf>,
    /// Gatekeeper id the request is addressed to.
    #[arg(long)]
    audience: Option<String>,
    /// Bucket.
    #[arg(long)]
    bucket: Option<String>,
    /// The vendor user id the request is made for.
    #[arg(long)]
    subject: Option<String>,
    /// Request lifetime in seconds [default: 300].
    #[arg(long)]
    lifetime: Option<u64>,
    /// No progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

/// Arguments of `put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Object key.
    #[arg(long)]
    object: String,
    /// Media type stored with the object.
    #[arg(long, default_value = "application/octet-stream")]
    content_type: String,
    /// The file to upload.
    file: PathBuf,
    /// Save the gatekeeper's verified receipt to this file (JSON), for
    /// `countersign audit prove`.
    #[arg(long)]
    receipt: Option<PathBuf>,
}

/// Arguments of `get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Object key.
    #[arg(long)]
    object: String,
    /// Output file (`-` for stdout; an existing device or FIFO such as `/dev/null` is
    /// written into, never replaced), written once verified.
    #[arg(long, short)]
    out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Save the gatekeeper's verified receipt to this file (JSON), for
    /// `countersign audit prove`.
    #[arg(long)]
    receipt: Option<PathBuf>,
}

/// Arguments of `cat` and `head`.
#[derive(Args, Debug)]
pub struct ObjectArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Object key.
    #[arg(long)]
    object: String,
    /// `head`: print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// List the objects whose keys start with this prefix (empty: the whole bucket).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Print JSON (an array of objects) instead of one line per object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn unreachable(e: &reqwest::Error) -> Failure {
    countersign_vendor::Error::unreachable(e).into()
}

pub(crate) fn bad_response(message: impl Into<String>) -> Failure {
    Failure {
        exit: 4,
        code: "bad_response".to_owned(),
        message: message.into(),
    }
}

pub(crate) fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| unreachable(&e))
}

/// A client built from flags over the profile, and the bucket.
struct Remote {
    client: Client,
    bucket: Bucket,
    progress: bool,
}

fn required(value: Option<String>, flag: &str, member: &str) -> Result<String, Failure> {
    value
        .ok_or_else(|| Failure::usage(format!("{flag} is required (or `{member}` in the profile)")))
}

/// The flag's values if any were given, else the profile's.
fn either(flag: Vec<PathBuf>, profile: Vec<PathBuf>) -> Vec<PathBuf> {
    if flag.is_empty() { profile } else { flag }
}

impl RemoteArgs {
    fn connect(self) -> Result<Remote, Failure> {
        let p = profile::load(self.profiles.as_deref(), self.profile.as_deref())?;
        let url = required(
            self.gatekeeper.or(p.gatekeeper),
            "--gatekeeper",
            "gatekeeper",
        )?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "--gatekeeper `{url}` must start with http:// or https://"
            )));
        }
        let gatekeeper_keys = either(self.gatekeeper_keys, p.gatekeeper_keys);
        if gatekeeper_keys.is_empty() {
            return Err(Failure::usage(
                "--gatekeeper-key is required (or `gatekeeper_keys` in the profile)",
            ));
        }
        let audience = required(self.audience.or(p.audience), "--audience", "audience")?;
        let subject = required(self.subject.or(p.subject), "--subject", "subject")?;
        let bucket = required(self.bucket.or(p.bucket), "--bucket", "bucket")?;
        let signing_keys = either(self.signing_keys, p.signing_keys);
        let signer = if signing_keys.is_empty() {
            Signer::from_env(crate::input::KEYS_ENV)?
        } else {
            Signer::from_key_files(&signing_keys)?
        };
        let mut builder = Client::builder(
            url,
            GatekeeperId::parse(&audience)?,
            Subject::parse(&subject)?,
            signer,
            public_keys(&gatekeeper_keys)?,
        )
        .lifetime_secs(self.lifetime.or(p.lifetime).unwrap_or(300).max(1));
        let vendor_keys = either(self.vendor_keys, p.vendor_keys);
        if !vendor_keys.is_empty() {
            builder = builder.uploader_keys(public_keys(&vendor_keys)?);
        }
        Ok(Remote {
            client: builder.build()?,
            bucket: Bucket::parse(&bucket)?,
            progress: !self.no_progress,
        })
    }
}

impl Remote {
    /// A progress bar on stderr (hidden unless stderr is a terminal) and its callback.
    fn progress(&self, label: &'static str) -> (indicatif::ProgressBar, Option<Progress>) {
        if !self.progress {
            return (indicatif::ProgressBar::hidden(), None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("#>."));
        }
        bar.set_prefix(label);
        let shown = bar.clone();
        let callback: Progress = Arc::new(move |done, total| {
            shown.set_length(total);
            shown.set_position(done);
        });
        (bar, Some(callback))
    }
}

/// Writes the verified receipt of `info` to `path` (if given), as JSON.
fn save_receipt(path: Option<&Path>, info: &ObjectInfo) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let json = serde_json::to_vec_pretty(&info.receipt)
        .map_err(|e| bad_response(format!("cannot encode the receipt: {e}")))?;
    crate::log::write_atomically(path, &json)
}

/// Runs `put`.
pub fn put(a: PutArgs) -> Result<u8, Failure> {
    let r = a.remote.connect()?;
    let key = ObjectKey::parse(&a.object)?;
    let content_type = ContentType::parse(&a.content_type)?;
    let (bar, progress) = r.progress("put");
    let info =
        runtime()?.block_on(
            r.client
                .put_file(&r.bucket, &key, &content_type, &a.file, progress),
        );
    bar.finish_and_clear();
    let info = info?;
    save_receipt(a.receipt.as_deref(), &info)?;
    println!(
        "stored {}/{}: {} bytes, sha256 {}, audit-seq {}; receipt and manifest verified",
        info.bucket,
        info.key,
        info.body.length,
        hex(&info.body.sha256),
        info.audit_seq
    );
    Ok(0)
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

/// Downloads to `out` (`-`: stdout); SIGINT or SIGTERM drops the download, and with
/// it the temporary file, and exits 130.
fn download(r: &Remote, key: &ObjectKey, out: &Path, force: bool) -> Result<ObjectInfo, Failure> {
    let (bar, progress) = r.progress("get");
    let result = runtime()?.block_on(async {
        let stop = interrupted()?;
        let to_stdout = out == Path::new("-");
        let get = async {
            if to_stdout {
                let mut stdout = std::io::stdout();
                r.client
                    .get_into(&r.bucket, key, &mut stdout, progress)
                    .await
            } else {
                r.client
                    .get_to_file(&r.bucket, key, out, force, progress)
                    .await
            }
        };
        tokio::select! {
            result = get => result.map_err(Failure::from),
            () = stop => Err(Failure {
                exit: 130,
                code: "interrupted".to_owned(),
                message: "interrupted; the partial download was removed".to_owned(),
            }),
        }
    });
    bar.finish_and_clear();
    result
}

/// Runs `get`.
pub fn get(a: GetArgs) -> Result<u8, Failure> {
    let r = a.remote.connect()?;
    let key = ObjectKey::parse(&a.object)?;
    let info = download(&r, &key, &a.out, a.force)?;
    save_receipt(a.receipt.as_deref(), &info)?;
    eprintln!(
        "countersign: {}/{}: {} bytes verified (uploaded by {}, audit-seq {})",
        info.bucket, info.key, info.body.length, info.uploader, info.audit_seq
    );
    Ok(0)
}

/// Runs `cat`: the verified object on stdout.
pub fn cat(a: ObjectArgs) -> Result<u8, Failure> {
    let r = a.remote.connect()?;
    let key = ObjectKey::parse(&a.object)?;
    download(&r, &key, Path::new("-"), false)?;
    Ok(0)
}

/// Runs `head`: the object's verified manifest.
pub fn head(a: ObjectArgs) -> Result<u8, Failure> {
    let r = a.remote.connect()?;
    let key = ObjectKey::parse(&a.object)?;
    let info = runtime()?.block_on(r.client.head(&r.bucket, &key))?;
    if a.json {
        let out = serde_json::json!({
            "bucket": info.bucket.as_str(),
            "key": info.key.as_str(),
            "size": info.body.length,
            "sha256": hex(&info.body.sha256),
            "content_type": info.content_type.as_str(),
            "uploader": info.uploader.as_str(),
            "stored_at": info.stored_at,
            "audit_seq": info.audit_seq,
        });
        println!("{out}");
    } else {
        println!("bucket:       {}", info.bucket);
        println!("key:          {}", info.key);
        println!("size:         {}", info.body.length);
        println!("sha256:       {}", hex(&info.body.sha256));
        println!("content-type: {}", info.content_type);
        println!("uploader:     {}", info.uploader);
        println!("stored-at:    {}", info.stored_at);
        println!(
            "audit-seq:    {} (receipt and manifest verified)",
            info.audit_seq
        );
    }
    Ok(0)
}

/// Runs `ls`: every object under the prefix, from verified listing pages.
pub fn ls(a: LsArgs) -> Result<u8, Failure> {
    let r = a.remote.connect()?;
    let objects = runtime()?.block_on(r.client.list(&r.bucket, &a.prefix))?;
    if a.json {
        let out: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| {
                serde_json::json!({
                    "key": o.key.as_str(),
                    "size": o.size,
                    "sha256": hex(&o.sha256),
                    "content_type": o.content_type.as_str(),
                    "stored_at": o.stored_at,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        for o in &objects {
            println!(
                "{:>12}  {:>10}  {}  {:<24}  {}",
                o.size,
                o.stored_at,
                hex(&o.sha256),
                o.content_type,
                o.key
            );
        }
    }
    Ok(0)
}
