//! Argument parsing, the dispatch to each command's module, and the `keygen`, `sign`
//! and `verify` commands. Command modules share inputs through [`crate::input`], never
//! through this module.

use crate::input::{KEYS_ENV, PolicyArgs, decode_document, hash_file, read_arg};
use crate::{EXIT_CODES, Failure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, hex};
use countersign_core::{
    Bucket, ByteRange, ContentType, GatekeeperId, KeyId, ListPrefix, ObjectKey, Operation, Request,
    RequestVerifier, Role, Subject,
};
use countersign_vendor::{Signer, SigningLimits, VendorKey, unix_now};
use std::path::PathBuf;

/// Command-line interface of `countersign`.
#[derive(Parser, Debug)]
#[command(name = "countersign", version, about = "Countersign keys, signatures and documents", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a signing key: a secret key file (mode 0600) and its public key file.
    Keygen(KeygenArgs),
    /// Sign a canonical request (given, or built from fields) with the vendor's keys.
    Sign(SignArgs),
    /// Verify a canonical request's signatures against public keys.
    Verify(VerifyArgs),
    /// Pretty-print a canonical request, receipt or manifest and say whether it verifies.
    Inspect(crate::inspect::InspectArgs),
    /// Upload a file through a gatekeeper; verifies the receipt and manifest.
    Put(crate::remote::PutArgs),
    /// Download an object through a gatekeeper; writes it (mode 0600) only after it verified.
    Get(crate::remote::GetArgs),
    /// Print an object to stdout once its receipt, manifest and bytes verified.
    Cat(crate::remote::ObjectArgs),
    /// Print an object's verified manifest (size, SHA-256, type, uploader), without its bytes.
    Head(crate::remote::ObjectArgs),
    /// List the objects under a prefix from the gatekeeper's signed listing pages.
    Ls(crate::remote::LsArgs),
    /// Follow a gatekeeper's transparency log: `log verify`.
    Log(crate::log::LogArgs),
    /// Witness a gatekeeper's log: `witness cosign`, `witness reset`.
    Witness(crate::witness::WitnessArgs),
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// Key id (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    key_id: String,
    /// Role the key signs for.
    #[arg(long, default_value = "vendor")]
    role: String,
    /// First Unix second the key is valid.
    #[arg(long)]
    not_before: Option<u64>,
    /// First Unix second the key is no longer valid.
    #[arg(long)]
    not_after: Option<u64>,
    /// Secret key file to create (never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Public key file to create [default: OUT.pub].
    #[arg(long)]
    public_out: Option<PathBuf>,
}

/// The four methods, lowercase on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum MethodArg {
    Get,
    Head,
    Put,
    List,
}

#[derive(Args, Debug)]
struct SignArgs {
    /// Secret key file (repeat for rotation). Without it, keys come from $COUNTERSIGN_VENDOR_KEYS.
    #[arg(long = "signing-key")]
    signing_keys: Vec<PathBuf>,
    /// A canonical request to sign: base64url, or @FILE (raw canonical bytes or base64url).
    #[arg(long, conflicts_with_all = ["audience", "method", "bucket", "object", "prefix", "range", "content_type", "body", "subject"])]
    request: Option<String>,
    /// Gatekeeper id the request is addressed to.
    #[arg(long, required_unless_present = "request")]
    audience: Option<String>,
    /// Operation.
    #[arg(long, value_enum, required_unless_present = "request")]
    method: Option<MethodArg>,
    /// Bucket.
    #[arg(long, required_unless_present = "request")]
    bucket: Option<String>,
    /// Object key (GET, HEAD, PUT).
    #[arg(long)]
    object: Option<String>,
    /// List prefix (LIST; may be empty).
    #[arg(long)]
    prefix: Option<String>,
    /// Inclusive byte range `first-last` (GET).
    #[arg(long)]
    range: Option<String>,
    /// Media type (PUT).
    #[arg(long)]
    content_type: Option<String>,
    /// File whose SHA-256 and length the PUT binds.
    #[arg(long)]
    body: Option<PathBuf>,
    /// The vendor user id the request is for.
    #[arg(long, required_unless_present = "request")]
    subject: Option<String>,
    /// Lifetime in seconds of a request built from fields.
    #[arg(long, default_value_t = 300)]
    lifetime: u64,
    /// Longest lifetime this command signs.
    #[arg(long, default_value_t = 900)]
    max_lifetime: u64,
    /// Unix time to sign at [default: now].
    #[arg(long)]
    now: Option<u64>,
    /// Print JSON instead of the two header lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The canonical request: base64url, or @FILE (raw canonical bytes or base64url).
    #[arg(long)]
    request: String,
    /// The signature list (`role:key-id:sig,...`), or @FILE.
    #[arg(long)]
    signature: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Gatekeeper id the request must be addressed to [default: the request's own].
    #[arg(long)]
    audience: Option<String>,
    /// Longest accepted lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    max_lifetime: u64,
    /// Tolerated clock skew in seconds.
    #[arg(long, default_value_t = 30)]
    clock_skew: u64,
    /// Unix time to verify at [default: now].
    #[arg(long)]
    now: Option<u64>,
}

/// Runs the command; `Ok` carries the exit code.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Keygen(a) => keygen(a),
        Command::Sign(a) => sign(a),
        Command::Verify(a) => verify(a),
        Command::Inspect(a) => crate::inspect::inspect(a),
        Command::Put(a) => crate::remote::put(a),
        Command::Get(a) => crate::remote::get(a),
        Command::Cat(a) => crate::remote::cat(a),
        Command::Head(a) => crate::remote::head(a),
        Command::Ls(a) => crate::remote::ls(a),
        Command::Log(a) => crate::log::run(a),
        Command::Witness(a) => crate::witness::run(a),
    }
}

fn keygen(a: KeygenArgs) -> Result<u8, Failure> {
    let key = VendorKey::generate(
        KeyId::parse(&a.key_id)?,
        Role::parse(&a.role)?,
        a.not_before,
        a.not_after,
        &mut rand_core::OsRng,
    )?;
    let public_out = a.public_out.unwrap_or_else(|| {
        let mut p = a.out.clone().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    });
    if public_out.exists() {
        return Err(Failure::io(
            &public_out.display().to_string(),
            &std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    key.write_secret_file(&a.out)?;
    std::fs::write(&public_out, key.to_public_json())
        .map_err(|e| Failure::io(&public_out.display().to_string(), &e))?;
    println!("secret key: {}", a.out.display());
    println!("public key: {}", public_out.display());
    println!(
        "key id:     {} (role {}, public {})",
        key.key_id(),
        key.role(),
        b64(&key.public_key().to_bytes())
    );
    Ok(0)
}

fn signer_for(paths: &[PathBuf], max_lifetime: u64) -> Result<Signer, Failure> {
    let signer = if paths.is_empty() {
        Signer::from_env(KEYS_ENV)?
    } else {
        Signer::from_key_files(paths)?
    };
    Ok(signer.with_limits(SigningLimits {
        max_lifetime_secs: max_lifetime,
        ..SigningLimits::default()
    })?)
}

fn missing(flag: &str, method: &str) -> Failure {
    Failure::usage(format!("{method} needs {flag}"))
}

fn build_operation(a: &SignArgs, method: MethodArg) -> Result<Operation, Failure> {
    let object = |name: &str| {
        a.object
            .as_deref()
            .ok_or_else(|| missing("--object", name))
            .and_then(|o| Ok(ObjectKey::parse(o)?))
    };
    let unexpected = |flag: &str, present: bool, name: &str| {
        if present {
            Err(Failure::usage(format!("{flag} does not apply to {name}")))
        } else {
            Ok(())
        }
    };
    match method {
        MethodArg::Get => {
            unexpected("--prefix", a.prefix.is_some(), "GET")?;
            unexpected("--body", a.body.is_some(), "GET")?;
            let range = match a.range.as_deref() {
                None => None,
                Some(r) => {
                    let (first, last) = r
                        .split_once('-')
                        .and_then(|(f, l)| Some((f.parse().ok()?, l.parse().ok()?)))
                        .ok_or_else(|| Failure::usage(format!("range `{r}` must be first-last")))?;
                    Some(ByteRange::new(first, last)?)
                }
            };
            Ok(Operation::Get {
                key: object("GET")?,
                range,
            })
        }
        MethodArg::Head => {
            unexpected("--range", a.range.is_some(), "HEAD")?;
            unexpected("--body", a.body.is_some(), "HEAD")?;
            Ok(Operation::Head {
                key: object("HEAD")?,
            })
        }
        MethodArg::Put => {
            unexpected("--range", a.range.is_some(), "PUT")?;
            let body = a.body.as_deref().ok_or_else(|| missing("--body", "PUT"))?;
            let content_type = a
                .content_type
                .as_deref()
                .ok_or_else(|| missing("--content-type", "PUT"))?;
            Ok(Operation::Put {
                key: object("PUT")?,
                content_type: ContentType::parse(content_type)?,
                body: hash_file(body)?,
            })
        }
        MethodArg::List => {
            unexpected("--object", a.object.is_some(), "LIST")?;
            unexpected("--range", a.range.is_some(), "LIST")?;
            Ok(Operation::List {
                prefix: ListPrefix::parse(a.prefix.as_deref().unwrap_or(""))?,
            })
        }
    }
}

fn sign(a: SignArgs) -> Result<u8, Failure> {
    let now = a.now.unwrap_or_else(unix_now);
    let signer = signer_for(&a.signing_keys, a.max_lifetime)?;
    let request = match (&a.request, a.method) {
        (Some(given), _) => Request::parse(&decode_document(&read_arg(given)?)?)?,
        (None, Some(method)) => {
            let field = |v: &Option<String>, flag: &str| {
                v.clone()
                    .ok_or_else(|| Failure::usage(format!("{flag} is required")))
            };
            Request::new(
                GatekeeperId::parse(&field(&a.audience, "--audience")?)?,
                Bucket::parse(&field(&a.bucket, "--bucket")?)?,
                build_operation(&a, method)?,
                Subject::parse(&field(&a.subject, "--subject")?)?,
                now,
                a.lifetime,
                &mut rand_core::OsRng,
            )?
        }
        (None, None) => return Err(Failure::usage("give --request or --method and fields")),
    };
    let signature = signer.sign_request(&request, now)?;
    let canonical = request.encode();
    let list = encode_list(std::slice::from_ref(&signature));
    if a.json {
        let out = serde_json::json!({
            "request": b64(&canonical),
            "signature": list,
            "key_id": signature.key_id.as_str(),
            "request_sha256": hex(&request.digest()),
            "expires_at": request.expires_at(),
        });
        println!("{out}");
    } else {
        println!("Countersign-Request: {}", b64(&canonical));
        println!("Countersign-Signature: {list}");
    }
    Ok(0)
}

fn verify(a: VerifyArgs) -> Result<u8, Failure> {
    let now = a.now.unwrap_or_else(unix_now);
    let canonical = decode_document(&read_arg(&a.request)?)?;
    let signature_text = String::from_utf8(read_arg(&a.signature)?)
        .map_err(|_| Failure::usage("the signature list is not UTF-8"))?;
    let signatures = parse_list(signature_text.trim())?;
    if a.policy.public_keys.is_empty() {
        return Err(Failure::usage("verify needs at least one --public-key"));
    }
    let keys = a.policy.keys()?;
    let policy = a.policy.policy(&keys, None)?;
    let request = Request::parse(&canonical)?;
    let audience = match &a.audience {
        Some(aud) => GatekeeperId::parse(aud)?,
        None => request.audience().clone(),
    };
    let verifier = RequestVerifier::new(audience, policy, a.max_lifetime, a.clock_skew)?;
    let verified = verifier.verify(&canonical, &signatures, now)?;
    let approvers: Vec<String> = verified
        .approvals()
        .iter()
        .flat_map(|(role, ids)| ids.iter().map(move |id| format!("{role}:{id}")))
        .collect();
    println!(
        "ok: {} {}/{} for {} verifies (approved by {})",
        request.method(),
        request.bucket(),
        request.operation().key_text(),
        request.subject(),
        approvers.join(", ")
    );
    Ok(0)
}
