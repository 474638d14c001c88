//! `countersign inspect`: pretty-print a canonical document (request, receipt,
//! manifest or listing) and say whether it verifies.

use crate::Failure;
use crate::input::{PolicyArgs, decode_document, read_arg, read_input};
use clap::Args;
use countersign_core::signature::parse_list;
use countersign_core::text::hex;
use countersign_core::{
    Approvals, ErrorCode, GatekeeperId, Listing, Manifest, ObjectKey, Receipt, Request,
    RequestVerifier, Role, SignatureEntry, canonical::MAX_LIFETIME_SECS,
};
use countersign_vendor::unix_now;

/// Arguments of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// File with the document (canonical text or base64url of it); `-` reads stdin.
    input: String,
    /// The signature list over the document (`role:key-id:sig,...`), or @FILE.
    #[arg(long)]
    signature: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// For a receipt or listing: the canonical request it answers (base64url, or @FILE).
    #[arg(long)]
    for_request: Option<String>,
    /// For a receipt: the id of the gatekeeper the request was sent to [default: the
    /// request's audience].
    #[arg(long)]
    gatekeeper_id: Option<String>,
    /// For a listing with --for-request: the cursor the LIST request was sent with
    /// (the previous page's next-after) [default: none, a first page].
    #[arg(long)]
    after: Option<String>,
    /// Unix time to judge a request's validity at [default: now].
    #[arg(long)]
    now: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Receipt,
    Manifest,
    Listing,
}

fn kind_of(doc: &[u8]) -> Result<Kind, Failure> {
    let header = doc.split(|&b| b == b'\n').next().unwrap_or_default();
    match header {
        b"countersign/v1/request" => Ok(Kind::Request),
        b"countersign/v1/receipt" => Ok(Kind::Receipt),
        b"countersign/v1/manifest" => Ok(Kind::Manifest),
        b"countersign/v1/listing" => Ok(Kind::Listing),
        _ => Err(countersign_core::Error::new(
            ErrorCode::UnsupportedVersion,
            "not a countersign/v1 request, receipt, manifest or listing",
        )
        .into()),
    }
}

/// Prints `name:value` lines as an aligned table (the document already parsed, so each
/// line is well formed).
fn print_fields(doc: &[u8], indent: &str) {
    let text = String::from_utf8_lossy(doc);
    let mut lines = text.lines();
    if let Some(header) = lines.next() {
        println!("{indent}{header}");
    }
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let shown = if value.is_empty() { "-" } else { value };
        println!("{indent}  {name:<19}{shown}");
    }
}

fn time_status(request: &Request, now: u64) -> String {
    if now < request.issued_at() {
        format!("not yet valid (starts in {} s)", request.issued_at() - now)
    } else if now >= request.expires_at() {
        format!("expired {} s ago", now - request.expires_at())
    } else {
        format!("valid for {} more s", request.expires_at() - now)
    }
}

fn print_request(request: &Request, canonical: &[u8], now: u64, indent: &str) {
    print_fields(canonical, indent);
    println!("{indent}  {:<19}{}", "(sha256)", hex(&request.digest()));
    println!(
        "{indent}  {:<19}{} s; {} at {now}",
        "(lifetime)",
        request.expires_at() - request.issued_at(),
        time_status(request, now)
    );
}

fn approvers(approvals: &Approvals) -> String {
    approvals
        .iter()
        .flat_map(|(role, ids)| ids.iter().map(move |id| format!("{role}:{id}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_signatures(label: &str, sigs: &[SignatureEntry]) {
    for s in sigs {
        println!("  {label:<19}{}:{}", s.role, s.key_id);
    }
}

/// Runs `inspect`.
pub fn inspect(a: InspectArgs) -> Result<u8, Failure> {
    let now = a.now.unwrap_or_else(unix_now);
    let doc = decode_document(&read_input(&a.input)?)?;
    let kind = kind_of(&doc)?;
    let signatures = match &a.signature {
        Some(s) => {
            let text = String::from_utf8(read_arg(s)?)
                .map_err(|_| Failure::usage("the signature list is not UTF-8"))?;
            Some(parse_list(text.trim())?)
        }
        None => None,
    };
    let keys = a.policy.keys()?;

    // Parse (an error here is the answer) and print.
    match kind {
        Kind::Request => {
            let request = Request::parse(&doc)?;
            print_request(&request, &doc, now, "");
        }
        Kind::Receipt => {
            let receipt = Receipt::parse(&doc)?;
            print_fields(&doc, "");
            if let Some(code) = receipt.decision.error() {
                println!("  {:<19}denied with `{code}`", "(decision)");
            }
        }
        Kind::Manifest => {
            let manifest = Manifest::parse(&doc)?;
            print_fields(&doc, "");
            println!("  stored object's PUT request:");
            let request = manifest.request();
            print_request(request, &request.encode(), now, "    ");
            print_signatures("(PUT signed by)", manifest.request_signatures());
        }
        Kind::Listing => {
            let listing = Listing::parse(&doc)?;
            print_fields(&doc, "");
            println!(
                "  {:<19}{} object(s){}",
                "(page)",
                listing.objects().len(),
                if listing.next_after().is_some() {
                    "; more follow"
                } else {
                    "; the last page"
                }
            );
        }
    }
    let Some(signatures) = signatures else {
        println!("verifies: not checked (no --signature)");
        return Ok(0);
    };
    print_signatures("(signature)", &signatures);
    if keys.is_empty() {
        println!("verifies: not checked (no --public-key)");
        return Ok(0);
    }

    let is_gatekeeper = |r: &Role| r.as_str() == Role::GATEKEEPER;
    let not_gatekeeper = |r: &Role| r.as_str() != Role::GATEKEEPER;
    let outcome: Result<String, Failure> = (|| match kind {
        Kind::Request => {
            let request = Request::parse(&doc)?;
            let verifier = RequestVerifier::new(
                request.audience().clone(),
                a.policy.policy(&keys, None)?,
                MAX_LIFETIME_SECS,
                30,
            )?;
            let verified = verifier.verify(&doc, &signatures, now)?;
            Ok(format!(
                "yes at {now} (approved by {})",
                approvers(verified.approvals())
            ))
        }
        Kind::Receipt => {
            let policy = a.policy.policy(&keys, Some(&is_gatekeeper))?;
            match &a.for_request {
                Some(req) => {
                    let request = decode_document(&read_arg(req)?)?;
                    let gatekeeper = match &a.gatekeeper_id {
                        Some(id) => GatekeeperId::parse(id)?,
                        None => Request::parse(&request)
                            .map_err(|e| {
                                Failure::usage(format!(
                                    "the request does not parse ({}): name the gatekeeper with --gatekeeper-id",
                                    e.code()
                                ))
                            })?
                            .audience()
                            .clone(),
                    };
                    let verified =
                        Receipt::verify(&doc, &signatures, &gatekeeper, &policy, &request)?;
                    Ok(format!(
                        "yes, for this request (approved by {})",
                        approvers(verified.approvals())
                    ))
                }
                None => {
                    let receipt = Receipt::parse(&doc)?;
                    let approvals = policy.approve(&doc, &signatures, receipt.decided_at)?;
                    Ok(format!(
                        "yes (approved by {}); which request it answers was not checked (no --for-request)",
                        approvers(&approvals)
                    ))
                }
            }
        }
        Kind::Listing => {
            let policy = a.policy.policy(&keys, Some(&is_gatekeeper))?;
            match &a.for_request {
                Some(req) => {
                    let request = decode_document(&read_arg(req)?)?;
                    let after = a.after.as_deref().map(ObjectKey::parse).transpose()?;
                    let verified = Listing::verify(&doc, &signatures, &policy, &request)?;
                    verified.check_after(after.as_ref())?;
                    Ok(format!(
                        "yes, for this request and cursor (approved by {})",
                        approvers(verified.approvals())
                    ))
                }
                None => {
                    let listing = Listing::parse(&doc)?;
                    let approvals = policy.approve(&doc, &signatures, listing.listed_at())?;
                    Ok(format!(
                        "yes (approved by {}); which request it answers was not checked (no --for-request)",
                        approvers(&approvals)
                    ))
                }
            }
        }
        Kind::Manifest => {
            let gatekeeper = a.policy.policy(&keys, Some(&is_gatekeeper))?;
            let uploader = a.policy.policy(&keys, Some(&not_gatekeeper))?;
            let verified = Manifest::verify(&doc, &signatures, &gatekeeper, &uploader)?;
            Ok(format!(
                "yes (stored by {}; uploaded under {})",
                approvers(verified.gatekeeper_approvals()),
                approvers(verified.uploader_approvals())
            ))
        }
    })();
    match outcome {
        Ok(line) => {
            println!("verifies: {line}");
            Ok(0)
        }
        Err(f) => {
            println!("verifies: no ({})", f.code);
            Err(f)
        }
    }
}
