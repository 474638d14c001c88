//! `countersign-gatekeeper`: run the gatekeeper, and verify, search and export its
//! audit log.

use clap::{Args, Parser, Subcommand};
use countersign_core::KeyId;
use countersign_gatekeeper::audit::{AuditLine, AuditRecord, verify_export};
use countersign_gatekeeper::checkpoint_bucket::{BUCKET_DEADLINE, CheckpointBucket};
use countersign_gatekeeper::config::{Config, load_or_create_key, parse_vendor_key_flag};
use countersign_gatekeeper::http::audit::{export_jsonl, parse_filter};
use countersign_gatekeeper::http::gatekeeper_policy;
use countersign_gatekeeper::ledger::log_origin;
use countersign_gatekeeper::ledger::{CheckpointSigner, Ledger, LedgerError};
use countersign_gatekeeper::reload::{ReloadSource, Requester, reload};
use countersign_gatekeeper::server;
use countersign_gatekeeper::transparency::{checkpoint_verifier, verify_tree, verify_tree_against};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "countersign-gatekeeper",
    version,
    about = "The Countersign gatekeeper"
)]
struct Cli {
    /// Server log format: `human` (one line per event) or `json` (one object per
    /// line). Levels and targets come from `RUST_LOG` (default `info`).
    #[arg(
        long,
        global = true,
        env = "COUNTERSIGN_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Sends `tracing` events to standard error, filtered by `RUST_LOG`.
fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (overrides the config file's `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        source: Source,
        /// Zero-config only: a vendor key as KEY-ID=BASE64URL-PUBLIC-KEY (repeatable).
        #[arg(long = "vendor-key")]
        vendor_keys: Vec<String>,
    },
    /// Undo uploads that died (a crash, an outage during cleanup) and delete files
    /// no index row knows; prints one JSON line per action. The server also does this
    /// at start-up and every `reconcile_interval_secs`.
    Reconcile {
        #[command(flatten)]
        source: Source,
        /// Only print what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Encryption at rest: what each key-encryption key wraps, and re-wrapping.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: prints every problem with its TOML path and
    /// line and exits 1, or prints `FILE: OK` and exits 0. Secrets are never printed.
    Check {
        /// The TOML file.
        file: PathBuf,
        /// Resolve relative paths against this directory instead of the file's
        /// `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// One JSON line per KEK and bucket: current, configured, objects it wraps, and
    /// whether it may be retired (not current, wraps nothing).
    Status {
        #[command(flatten)]
        source: Source,
    },
    /// Re-wrap every data key to its bucket's current KEK without rewriting object
    /// bytes; one JSON line per object. Safe to interrupt and run again. Audited.
    Rewrap {
        #[command(flatten)]
        source: Source,
    },
    /// Encrypt the plaintext objects of every encrypted bucket (stored before
    /// encryption was on) under fresh opaque names, one at a time, each readable
    /// throughout; one JSON line per object. Safe to kill and run again (one run at a
    /// time). Audited.
    EncryptExisting {
        #[command(flatten)]
        source: Source,
    },
}

#[derive(Args, Clone)]
struct Source {
    /// Directory for the key, the SQLite database and local buckets.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A TOML configuration file (see gatekeeper.example.toml).
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check the signed checkpoints; exits non-zero on
    /// any altered, removed or reordered entry.
    Verify {
        #[command(flatten)]
        source: Source,
        /// Verify this exported JSONL file instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The gatekeeper's public key (base64url); default: the key in the data dir.
        #[arg(long)]
        public_key: Option<String>,
        /// The gatekeeper key's id; default: from the configuration.
        #[arg(long)]
        key_id: Option<String>,
        /// The published checkpoints to check the database's Merkle tree against;
        /// default: `audit.published_checkpoints` of the configuration.
        #[arg(long)]
        published: Option<PathBuf>,
        /// Check against the checkpoints in the configuration's `[log.publish_bucket]`
        /// (`<prefix>/checkpoint/<size>`) instead of the published file.
        #[arg(long, conflicts_with = "published")]
        bucket: bool,
    },
    /// Print matching entries as JSONL.
    Search {
        #[command(flatten)]
        source: Source,
        /// Entries from this Unix millisecond.
        #[arg(long)]
        from_ms: Option<u64>,
        /// Entries before this Unix millisecond.
        #[arg(long)]
        to_ms: Option<u64>,
        /// Exact subject.
        #[arg(long)]
        subject: Option<String>,
        /// Entries of the members of this group, as `[groups]` of the configuration
        /// read now defines it (not as it was when the entries were written).
        #[arg(long)]
        group: Option<String>,
        /// Exact client IP.
        #[arg(long)]
        ip: Option<String>,
        /// Exact bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Exact operation (GET, HEAD, PUT, LIST, AUDIT).
        #[arg(long)]
        operation: Option<String>,
        /// Key or prefix starting with this.
        #[arg(long)]
        key_prefix: Option<String>,
        /// allow or deny.
        #[arg(long)]
        decision: Option<String>,
        /// Error code.
        #[arg(long)]
        error: Option<String>,
        /// Most entries.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Write the whole log, with signed checkpoints, as JSONL.
    Export {
        #[command(flatten)]
        source: Source,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn load_config(source: &Source, vendor_keys: &[String]) -> Result<Config, String> {
    match (&source.config, &source.data_dir) {
        (Some(path), dir) => {
            if !vendor_keys.is_empty() {
                return Err(
                    "--vendor-key is for the zero-config start; put keys in the config file".into(),
                );
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_toml(&text, dir.as_deref()).map_err(|e| e.to_string())
        }
        (None, Some(dir)) => {
            let keys = vendor_keys
                .iter()
                .map(|k| parse_vendor_key_flag(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            Config::embedded(dir, keys).map_err(|e| e.to_string())
        }
        (None, None) => Err("pass --data-dir DIR (zero-config) or --config FILE".into()),
    }
}

/// `keys status`, `keys rewrap` and `keys encrypt-existing`.
async fn keys(command: KeysCommand) -> Result<(), String> {
    use countersign_gatekeeper::encryption;
    let (KeysCommand::Status { source }
    | KeysCommand::Rewrap { source }
    | KeysCommand::EncryptExisting { source }) = &command;
    let config = load_config(source, &[])?;
    let ledger = open_ledger(&config).await?;
    let storage = countersign_gatekeeper::storage::Storage::from_config(
        &config.buckets,
        config.limits.storage_timeout(),
    )
    .map_err(|e| format!("cannot open a bucket: {e}"))?;
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Status { .. } => {
            for s in encryption::status(&ledger, &storage).await? {
                let line = serde_json::to_string(&s).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
        }
        KeysCommand::Rewrap { .. } => {
            let n = encryption::rewrap(&ledger, &storage, |r| {
                if let Ok(line) = serde_json::to_string(r) {
                    let _ = writeln!(out, "{line}");
                }
            })
            .await?;
            eprintln!("rewrapped {n} data keys");
        }
        KeysCommand::EncryptExisting { .. } => {
            let n = countersign_gatekeeper::encrypt_existing::encrypt_existing(
                &ledger,
                &storage,
                |r| {
                    if let Ok(line) = serde_json::to_string(r) {
                        let _ = writeln!(out, "{line}");
                    }
                },
            )
            .await?;
            eprintln!("encrypted {n} objects");
        }
    }
    Ok(())
}

async fn open_ledger(config: &Config) -> Result<Ledger, String> {
    let (key, _) = load_or_create_key(&config.key_path).map_err(|e| e.to_string())?;
    let signer = CheckpointSigner {
        gatekeeper: config.gatekeeper_id.clone(),
        key,
        key_id: config.key_id.clone(),
    };
    Ledger::connect(
        config.database_url.expose(),
        signer,
        config.checkpoint_every,
        config.limits.database_timeout(),
    )
    .await
    .map_err(|e| format!("cannot open the database: {e}"))
}

/// Reloads the policy at every SIGHUP, for as long as the process lives. The handler
/// is installed before this returns, so a SIGHUP never kills a started server.
fn reload_on_sighup(state: countersign_gatekeeper::http::AppState) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reload(&state, &Requester::Signal).await {
                Ok(done) => tracing::info!(
                    "SIGHUP: policy reloaded: sha256 {}",
                    countersign_core::text::hex(&done.sha256)
                ),
                Err(e) => tracing::warn!("SIGHUP: policy reload refused: {e}"),
            }
        }
    });
    Ok(())
}

/// Completes at the first SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install the SIGTERM/SIGINT handlers; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name}: no longer accepting connections; draining requests in progress");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            listen,
            source,
            vendor_keys,
        } => {
            let config = load_config(&source, &vendor_keys)?;
            let addr = listen
                .or(config.listen)
                .ok_or("pass --listen ADDR or set `listen` in the config file")?;
            let (state, created) = server::build_state(config)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(path) = &source.config {
                let _ = state.reload_source.set(ReloadSource {
                    path: path.clone(),
                    data_dir: source.data_dir.clone(),
                });
            }
            reload_on_sighup(state.clone())?;
            let pk = countersign_core::text::b64(&state.public_key());
            tracing::info!(
                "gatekeeper `{}` key `{}` public key {pk}{}",
                state.config.gatekeeper_id,
                state.key_id(),
                if created { " (generated now)" } else { "" }
            );
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let scheme = if state.config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(
                "listening on {scheme}://{}",
                listener.local_addr().map_err(|e| e.to_string())?
            );
            let admin = match state.config.admin_listen {
                Some(admin_addr) => {
                    let admin_listener =
                        tokio::net::TcpListener::bind(admin_addr)
                            .await
                            .map_err(|e| {
                                format!("cannot listen on {admin_addr} (admin_listen): {e}")
                            })?;
                    tracing::info!(
                        "admin listener (metrics, health) on http://{}",
                        admin_listener.local_addr().map_err(|e| e.to_string())?
                    );
                    Some(server::spawn_admin(state.clone(), admin_listener))
                }
                None => None,
            };
            if let Some(b) = &state.config.publish_bucket {
                CheckpointBucket::new(b.clone(), BUCKET_DEADLINE)?
                    .check()
                    .await
                    .map_err(|e| format!("log.publish_bucket: {e}"))?;
            }
            let drained = server::serve_until(state, listener, stop_signal())
                .await
                .map_err(|e| format!("server stopped: {e}"))?;
            if let Some(admin) = admin {
                admin.abort();
            }
            if drained.abandoned == 0 {
                tracing::info!("stopped: every request finished");
            } else {
                tracing::warn!(
                    "stopped: {} requests or connections were still running at the grace deadline; recovery finishes them at the next start",
                    drained.abandoned
                );
            }
            Ok(())
        }
        Command::Audit { command } => audit(command).await,
        Command::Config {
            command: ConfigCommand::Check { file, data_dir },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            match Config::check(&text, data_dir.as_deref()) {
                Ok(_) => {
                    println!("{}: OK", file.display());
                    Ok(())
                }
                Err(problems) => {
                    let mut out = std::io::stdout().lock();
                    for p in &problems {
                        let at = p.line.map(|l| format!(":{l}")).unwrap_or_default();
                        writeln!(out, "{}{at}: {}: {}", file.display(), p.key, p.message)
                            .map_err(|e| e.to_string())?;
                    }
                    Err(format!("{}: {} problem(s)", file.display(), problems.len()))
                }
            }
        }
        Command::Keys { command } => keys(command).await,
        Command::Reconcile { source, dry_run } => {
            let config = load_config(&source, &[])?;
            let ledger = open_ledger(&config).await?;
            let storage = countersign_gatekeeper::storage::Storage::from_config(
                &config.buckets,
                config.limits.storage_timeout(),
            )
            .map_err(|e| format!("cannot open a bucket: {e}"))?;
            let actions = countersign_gatekeeper::reconcile::reconcile(
                &ledger,
                &storage,
                now_secs(),
                dry_run,
            )
            .await?;
            let mut out = std::io::stdout().lock();
            for a in &actions {
                let line = serde_json::to_string(a).map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

async fn audit(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Verify {
            source,
            file,
            public_key,
            key_id,
            published,
            bucket,
        } => {
            let config = match &file {
                Some(_) => load_config(&source, &[]).ok(),
                None => Some(load_config(&source, &[])?),
            };
            let pk: [u8; 32] = match (public_key, &config) {
                (Some(b), _) => countersign_gatekeeper::config::base64_decode(&b)
                    .and_then(|v| v.try_into().ok())
                    .ok_or("--public-key must be 32 bytes in base64url")?,
                (None, Some(c)) => {
                    let (key, _) = load_or_create_key(&c.key_path).map_err(|e| e.to_string())?;
                    key.verifying_key().to_bytes()
                }
                (None, None) => {
                    return Err(
                        "pass --public-key, or --data-dir/--config to read the gatekeeper key"
                            .into(),
                    );
                }
            };
            let key_id = match (key_id, &config) {
                (Some(k), _) => KeyId::parse(&k).map_err(|e| e.to_string())?,
                (None, Some(c)) => c.key_id.clone(),
                (None, None) => KeyId::parse("gatekeeper-1").map_err(|e| e.to_string())?,
            };
            let policy = gatekeeper_policy(&key_id, &pk).map_err(|e| e.to_string())?;
            match (file, config) {
                (Some(f), _) => {
                    let file = std::fs::File::open(&f)
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                    let log_key = countersign_core::signature::PublicKey::from_bytes(&pk)
                        .map_err(|e| e.to_string())?;
                    let report = verify_export(std::io::BufReader::new(file), &policy, log_key)
                        .map_err(|e| format!("audit log INVALID: {e}"))?;
                    let tree = report.tree_size.map_or_else(
                        || "no tree checkpoint in the file".to_owned(),
                        |n| format!("the first {n} entries match the signed tree checkpoint"),
                    );
                    println!(
                        "audit log OK: {} entries, {} signed checkpoints verified, {tree}, head {}",
                        report.entries, report.checkpoints, report.head
                    );
                }
                (None, Some(config)) => {
                    // The database, read once in order and in constant memory: the hash
                    // chain and its checkpoints, and the Merkle tree against the
                    // checkpoints published outside the database.
                    let ledger = open_ledger(&config).await?;
                    let verifier = checkpoint_verifier(&config.gatekeeper_id, &pk)?;
                    let origin = log_origin(&config.gatekeeper_id);
                    let (tree, against) = if bucket {
                        let b = config
                            .publish_bucket
                            .clone()
                            .ok_or("--bucket: the configuration has no [log.publish_bucket]")?;
                        let name = format!("bucket `{}`", b.bucket);
                        let notes = CheckpointBucket::new(b, BUCKET_DEADLINE)?
                            .notes()
                            .await
                            .map_err(|e| format!("audit log INVALID: {e}"))?;
                        let notes = notes.into_iter().map(Ok);
                        let tree =
                            verify_tree_against(&ledger, notes, &verifier, &origin, &policy).await;
                        (tree, name)
                    } else {
                        let path =
                            published.unwrap_or_else(|| config.published_checkpoints.clone());
                        let tree = verify_tree(&ledger, &path, &verifier, &origin, &policy).await;
                        (tree, path.display().to_string())
                    };
                    let tree = tree.map_err(|e| format!("audit log INVALID: {e}"))?;
                    println!(
                        "audit log OK: {} entries, {} signed checkpoints verified, head {}",
                        tree.entries,
                        tree.chain_checkpoints,
                        countersign_core::text::hex(&tree.head)
                    );
                    println!(
                        "audit tree OK: {} entries, {} published and {} stored checkpoints verified against {}, root {}",
                        tree.entries,
                        tree.published,
                        tree.stored,
                        against,
                        countersign_core::text::hex(&tree.root)
                    );
                }
                (None, None) => return Err("pass --data-dir DIR or --config FILE".into()),
            }
            Ok(())
        }
        AuditCommand::Search {
            source,
            from_ms,
            to_ms,
            subject,
            group,
            ip,
            bucket,
            operation,
            key_prefix,
            decision,
            error,
            limit,
        } => {
            let config = load_config(&source, &[])?;
            let ledger = open_ledger(&config).await?;
            let mut query = Vec::new();
            let enc = countersign_core::names::percent_encode;
            if let Some(v) = from_ms {
                query.push(format!("from_ms={v}"));
            }
            if let Some(v) = to_ms {
                query.push(format!("to_ms={v}"));
            }
            for (k, v) in [
                ("subject", subject),
                ("group", group),
                ("ip", ip),
                ("bucket", bucket),
                ("operation", operation),
                ("key_prefix", key_prefix),
                ("decision", decision),
                ("error", error),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(&v)));
                }
            }
            query.push(format!("limit={limit}"));
            let filter =
                parse_filter(&query.join("&"), &config.acl.groups).map_err(|e| e.message)?;
            if let Some(g) = &filter.group {
                // On stderr, so that stdout stays the entries' JSONL.
                eprintln!(
                    "group `{}` in the configuration read now: {}",
                    g.name,
                    if g.members.is_empty() {
                        "no members".to_owned()
                    } else {
                        g.members.join(", ")
                    }
                );
            }
            let entries = ledger
                .search(&filter)
                .await
                .map_err(|e| format!("search failed: {e}"))?;
            let mut out = std::io::stdout().lock();
            for e in &entries {
                let line =
                    serde_json::to_string(&AuditLine::Entry(Box::new(AuditRecord::from_entry(e))))
                        .map_err(|e| e.to_string())?;
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        AuditCommand::Export { source, out } => {
            let config = load_config(&source, &[])?;
            let ledger = open_ledger(&config).await?;
            let lines = export_jsonl(&ledger, now_secs(), true)
                .await
                .map_err(|e| format!("export failed: {e}"))?;
            match out {
                // Written next to the target and renamed into place once complete and
                // on disk, so a failed export never leaves a file that looks whole.
                Some(path) => {
                    let dir = path
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    let cannot =
                        |e: std::io::Error| format!("cannot write {}: {e}", path.display());
                    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
                    write_stream(lines, &mut tmp).await?;
                    tmp.as_file().sync_all().map_err(cannot)?;
                    tmp.persist(&path).map_err(|e| cannot(e.error))?;
                    Ok(())
                }
                None => write_stream(lines, &mut std::io::stdout().lock()).await,
            }
        }
    }
}

/// Writes an export's chunks to `out` as they come.
async fn write_stream(
    lines: impl futures::Stream<Item = Result<bytes::Bytes, LedgerError>>,
    out: &mut impl Write,
) -> Result<(), String> {
    use futures::TryStreamExt as _;
    futures::pin_mut!(lines);
    while let Some(chunk) = lines
        .try_next()
        .await
        .map_err(|e| format!("export failed: {e}"))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write the export: {e}"))?;
    }
    out.flush()
        .map_err(|e| format!("cannot write the export: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
