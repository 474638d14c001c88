//! Inputs shared by several commands: documents given inline or as `@FILE`, public
//! keys and thresholds, the secret-key environment variable, file digests.

use crate::Failure;
use clap::Args;
use countersign_core::text::parse_b64;
use countersign_core::{AuthorizedKey, BodyDigest, ErrorCode, Keyring, Policy, Role};
use countersign_vendor::keys::load_public_keys;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Environment variable holding secret key documents when no `--signing-key` is given.
pub const KEYS_ENV: &str = "COUNTERSIGN_VENDOR_KEYS";

/// `role=threshold`.
#[derive(Clone, Debug)]
pub struct Requirement {
    /// Role.
    pub role: Role,
    /// Threshold.
    pub threshold: usize,
}

fn parse_requirement(s: &str) -> Result<Requirement, String> {
    let (role, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` must be role=threshold"))?;
    Ok(Requirement {
        role: Role::parse(role).map_err(|e| e.message().to_owned())?,
        threshold: n
            .parse()
            .map_err(|_| format!("threshold `{n}` is not a number"))?,
    })
}

/// Public keys and thresholds shared by `verify` and `inspect`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Public key file (one key or a JSON array; repeatable).
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
    /// Required role and threshold, e.g. `vendor=1` (repeatable) [default: every role of the keys, 1 each].
    #[arg(long = "require", value_parser = parse_requirement)]
    pub require: Vec<Requirement>,
}

impl PolicyArgs {
    /// All public keys.
    pub fn keys(&self) -> Result<Vec<AuthorizedKey>, Failure> {
        public_keys(&self.public_keys)
    }

    /// The policy over `keys` restricted to roles `only` (all if `None`).
    pub fn policy(
        &self,
        keys: &[AuthorizedKey],
        only: Option<&dyn Fn(&Role) -> bool>,
    ) -> Result<Policy, Failure> {
        let keep = |r: &Role| only.is_none_or(|f| f(r));
        let mut require: Vec<(Role, usize)> = self
            .require
            .iter()
            .filter(|r| keep(&r.role))
            .map(|r| (r.role.clone(), r.threshold))
            .collect();
        if self.require.is_empty() {
            for k in keys {
                if keep(&k.role) && !require.iter().any(|(r, _)| r == &k.role) {
                    require.push((k.role.clone(), 1));
                }
            }
        }
        let keyring = Keyring::new(keys.iter().filter(|k| keep(&k.role)).cloned())?;
        Ok(Policy::new(keyring, require)?)
    }
}

/// The public keys of every file in `paths` (each one key or a JSON array).
pub fn public_keys(paths: &[PathBuf]) -> Result<Vec<AuthorizedKey>, Failure> {
    let mut keys = Vec::new();
    for path in paths {
        keys.extend(load_public_keys(path)?);
    }
    Ok(keys)
}

/// Reads a value given inline or as `@FILE` (`@-` for stdin).
pub fn read_arg(value: &str) -> Result<Vec<u8>, Failure> {
    match value.strip_prefix('@') {
        Some(path) => read_input(path),
        None => Ok(value.as_bytes().to_vec()),
    }
}

/// Reads a file, or stdin for `-`, up to 1 MiB.
pub fn read_input(path: &str) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let result = if path == "-" {
        std::io::stdin().take(1 << 20).read_to_end(&mut out)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_end(&mut out))
    };
    result.map_err(|e| Failure::io(path, &e))?;
    Ok(out)
}

/// Canonical bytes from raw canonical text or base64url of it.
pub fn decode_document(bytes: &[u8]) -> Result<Vec<u8>, Failure> {
    if bytes.starts_with(b"countersign/") {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        countersign_core::Error::new(
            ErrorCode::Malformed,
            "the document is neither canonical text nor base64url",
        )
    })?;
    Ok(parse_b64(text.trim(), "the document")?)
}

/// SHA-256 and length of a file, read in chunks (the SDK's
/// [`hash_file`](countersign_vendor::client::hash_file)).
pub fn hash_file(path: &Path) -> Result<BodyDigest, Failure> {
    Ok(runtime()?.block_on(countersign_vendor::client::hash_file(path))?)
}

/// The single-threaded runtime the commands that talk HTTP or read files run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::io("tokio runtime", &e))
}
