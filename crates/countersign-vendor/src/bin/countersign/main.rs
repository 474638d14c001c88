//! `countersign`: keys, signatures and documents of the Countersign protocol from the
//! command line.
//!
//! ```text
//! countersign keygen  --key-id vendor-2026 --out vendor-2026.key
//! countersign sign    --signing-key vendor-2026.key --audience gk.acme --method get \
//!                     --bucket reports --object org-1/a.pdf --subject user-42
//! countersign verify  --request <base64url> --signature <list> --public-key vendor-2026.key.pub
//! countersign inspect request.txt --signature <list> --public-key vendor-2026.key.pub
//! countersign put     --gatekeeper https://gk.acme --gatekeeper-key gk.pub --signing-key vendor-2026.key \
//!                     --audience gk.acme --bucket reports --object org-1/a.pdf --subject ops \
//!                     --content-type application/pdf a.pdf
//! countersign get     ... --object org-1/a.pdf --out a.pdf
//! countersign put     --profile acme --object org-1/a.pdf a.pdf   # settings from a profile
//! countersign cat     --object org-1/a.pdf > a.pdf                # the `default` profile
//! countersign head    --object org-1/a.pdf [--json]
//! countersign ls      --prefix org-1/ [--json]
//! countersign log verify --gatekeeper https://gk.acme --gatekeeper-key gk.pub \
//!                     --origin gk.acme/audit [--since saved.cp] [--save saved.cp]
//! countersign witness cosign --log https://gk.acme --log-key gk.pub --origin gk.acme/audit \
//!                     --state gk.state --key witness.key --name witness.example
//! countersign witness reset --state gk.state
//! ```
//!
//! Errors are one line on stderr: `countersign: error[<code>]: <sentence>`, where
//! `<code>` is the protocol's stable error code (or `invalid_key_file`,
//! `insecure_key_file`, `invalid_profile`, `io`, `usage`, `unreachable`, `bad_response`,
//! `interrupted`, and for
//! the witness `invalid_state_file` (exit 3) and `witness_halted` (exit 1)).
//!
//! Exit codes: see [`EXIT_CODES`].

mod cli;
mod input;
mod inspect;
mod log;
mod profile;
mod remote;
mod witness;

use clap::Parser as _;
use std::process::ExitCode;

/// The documented exit codes (also printed by `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (for verify/inspect: the document verifies, or no check was asked for)
  1  refused: the document is malformed, does not verify, or breaks the signing limits
  2  usage: bad command-line arguments
  3  local input: a file cannot be read or written, a key file is invalid or insecure,
     the profile file is invalid (`invalid_profile`)
  4  gatekeeper: unreachable (`unreachable`) or an answer that is not the protocol (`bad_response`)
130  interrupted (`interrupted`): `get` stopped by SIGINT or SIGTERM; no partial file is left

A refusal by the gatekeeper exits 1 with the gatekeeper's error code.";

/// A failure with its exit code, printed as one line.
pub struct Failure {
    /// Exit code (see [`EXIT_CODES`]).
    pub exit: u8,
    /// Stable error code.
    pub code: String,
    /// One sentence.
    pub message: String,
}

impl From<countersign_vendor::Error> for Failure {
    fn from(e: countersign_vendor::Error) -> Self {
        use countersign_vendor::Error as E;
        let exit = match e {
            E::Protocol(_) | E::Refused { .. } => 1,
            E::Unreachable { .. } | E::BadResponse { .. } => 4,
            _ => 3,
        };
        let message = match &e {
            countersign_vendor::Error::Protocol(p) => p.message().to_owned(),
            other => other.to_string(),
        };
        Self {
            exit,
            code: e.code().to_owned(),
            message,
        }
    }
}

impl From<countersign_core::Error> for Failure {
    fn from(e: countersign_core::Error) -> Self {
        countersign_vendor::Error::Protocol(e).into()
    }
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: 2,
            code: "usage".to_owned(),
            message: message.into(),
        }
    }

    /// An I/O error on `what` (exit 3).
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        Self {
            exit: 3,
            code: "io".to_owned(),
            message: format!("{what}: {e}"),
        }
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            let message = f.message.replace(['\n', '\r'], " ");
            eprintln!("countersign: error[{}]: {message}", f.code);
            ExitCode::from(f.exit)
        }
    }
}
