//! `countersign-demo`: run the demo vendor app, and the small helpers its config needs.
//!
//! ```text
//! countersign-demo serve --config demo-config.json --listen 127.0.0.1:8080 --signing-key vendor.key \
//!                  --gatekeeper-key gatekeeper-keys.json --www www --pkg pkg
//! echo 'a password' | countersign-demo hash-password
//! countersign-demo new-totp-secret
//! countersign-demo totp-code --secret <base32>
//! countersign-demo gatekeeper-config --config demo-config.json --vendor-key vendor.key.pub \
//!                  --data-dir gk --origin http://127.0.0.1:8080 > gatekeeper.toml
//! ```
//!
//! Errors are one line, `countersign-demo: error[<code>]: <sentence>`; the exit code is
//! 0 on success, 1 on any error, 2 on bad arguments.

use clap::{Parser, Subcommand};
use countersign_demo::{AppState, app, config::Directory, totp};
use countersign_vendor::Signer;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Environment variable with secret key documents when no `--signing-key` is given.
const KEYS_ENV: &str = "COUNTERSIGN_VENDOR_KEYS";

#[derive(Parser)]
#[command(
    name = "countersign-demo",
    version,
    about = "Countersign demo vendor app"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app.
    Serve {
        /// The JSON config (organisations, users, reports).
        #[arg(long)]
        config: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Secret key file (repeat for rotation); without it, $COUNTERSIGN_VENDOR_KEYS.
        #[arg(long = "signing-key")]
        signing_keys: Vec<PathBuf>,
        /// The gatekeeper's public keys (a key file, or a saved `GET /v1/keys` answer),
        /// pinned in the page's configuration; repeatable.
        #[arg(long = "gatekeeper-key")]
        gatekeeper_keys: Vec<PathBuf>,
        /// Directory of the report page (`www/`); with `--pkg`.
        #[arg(long, requires = "pkg")]
        www: Option<PathBuf>,
        /// Directory of the built npm package (`pkg/`), served at `/pkg/`; with `--www`.
        #[arg(long, requires = "www")]
        pkg: Option<PathBuf>,
    },
    /// Hash a password (read from one line of stdin) for the config file.
    HashPassword,
    /// Print a fresh random TOTP secret (base32) for the config file.
    NewTotpSecret,
    /// Print a gatekeeper configuration (TOML) matching the demo: its vendor keys,
    /// local buckets, CORS for the report page, and an ACL mirroring the grants.
    GatekeeperConfig {
        /// The demo's JSON config.
        #[arg(long)]
        config: PathBuf,
        /// Public key file(s) of the vendor keys the gatekeeper trusts.
        #[arg(long = "vendor-key", required = true)]
        vendor_keys: Vec<PathBuf>,
        /// The gatekeeper's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Origin of the report page, e.g. `http://127.0.0.1:8080`.
        #[arg(long)]
        origin: String,
    },
    /// Print the current TOTP code for a base32 secret (for demos and scripts).
    TotpCode {
        /// The base32 secret.
        #[arg(long)]
        secret: String,
    },
}

fn fail(code: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("countersign-demo: error[{code}]: {message}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            signing_keys,
            gatekeeper_keys,
            www,
            pkg,
        } => {
            let text = match std::fs::read_to_string(&config) {
                Ok(t) => t,
                Err(e) => return fail("io", format!("{}: {e}", config.display())),
            };
            let directory = match Directory::from_json(&text) {
                Ok(d) => d,
                Err(e) => return fail(e.code, e.message),
            };
            let signer = if signing_keys.is_empty() {
                Signer::from_env(KEYS_ENV)
            } else {
                Signer::from_key_files(&signing_keys)
            };
            let signer = match signer {
                Ok(s) => s,
                Err(e) => return fail(e.code(), e),
            };
            let mut pinned = Vec::new();
            for path in &gatekeeper_keys {
                match countersign_vendor::keys::load_public_keys(path) {
                    Ok(k) => pinned.extend(k),
                    Err(e) => return fail(e.code(), e),
                }
            }
            let mut state = match AppState::new(directory, signer) {
                Ok(s) => s.with_gatekeeper_keys(pinned),
                Err(e) => return fail(e.code, e.message),
            };
            if let (Some(www), Some(pkg)) = (www, pkg) {
                for dir in [&www, &pkg] {
                    if !dir.is_dir() {
                        return fail("io", format!("{} is not a directory", dir.display()));
                    }
                }
                state = state.with_assets(countersign_demo::assets::Assets { www, pkg });
            }
            let listener = match tokio::net::TcpListener::bind(&listen).await {
                Ok(l) => l,
                Err(e) => return fail("io", format!("cannot listen on {listen}: {e}")),
            };
            eprintln!("countersign-demo: listening on http://{listen}");
            // The peer address feeds the login backoff per client address.
            let service =
                app(Arc::new(state)).into_make_service_with_connect_info::<std::net::SocketAddr>();
            let served = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("io", e),
            }
        }
        Command::HashPassword => {
            use argon2::PasswordHasher as _;
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                return fail("io", e);
            }
            let password = line.trim_end_matches(['\n', '\r']);
            let salt = argon2::password_hash::SaltString::generate(&mut rand_core::OsRng);
            match argon2::Argon2::default().hash_password(password.as_bytes(), &salt) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("internal", e),
            }
        }
        Command::GatekeeperConfig {
            config,
            vendor_keys,
            data_dir,
            origin,
        } => {
            let directory = match std::fs::read_to_string(&config) {
                Ok(text) => match Directory::from_json(&text) {
                    Ok(d) => d,
                    Err(e) => return fail(e.code, e.message),
                },
                Err(e) => return fail("io", format!("{}: {e}", config.display())),
            };
            let mut keys = Vec::new();
            for path in &vendor_keys {
                match countersign_vendor::keys::load_public_keys(path) {
                    Ok(k) => keys.extend(k),
                    Err(e) => return fail(e.code(), e),
                }
            }
            print!("{}", directory.gatekeeper_toml(&keys, &data_dir, &origin));
            ExitCode::SUCCESS
        }
        Command::NewTotpSecret => {
            use rand_core::RngCore as _;
            let mut secret = [0u8; 20];
            rand_core::OsRng.fill_bytes(&mut secret);
            println!("{}", totp::base32_encode(&secret));
            ExitCode::SUCCESS
        }
        Command::TotpCode { secret } => match totp::base32_decode(&secret) {
            Some(bytes) => {
                println!("{}", totp::code_at(&bytes, countersign_vendor::unix_now()));
                ExitCode::SUCCESS
            }
            None => fail("invalid_field", "the secret is not base32"),
        },
    }
}
