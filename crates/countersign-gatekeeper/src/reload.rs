//! The policy a running gatekeeper can change without a restart: keys, thresholds,
//! the ACL and groups, IP rules and trusted proxies. It lives behind an
//! [`arc_swap::ArcSwap`]: a request takes one snapshot when it starts and keeps it to
//! its end, so a reload (SIGHUP or `POST /v1/audit/reload`) never changes the rules
//! under a request in progress, and the next request sees the new policy.
//!
//! A reload reads the configuration file again and validates all of it; if any
//! problem is found, or a setting that only a restart can change differs, the old
//! policy stays. Either way the attempt is an audit entry (operation
//! [`RELOAD_OPERATION`], key `sha256:` + the file's SHA-256 in hex; see
//! `docs/PROTOCOL.md`).

use crate::acl::{Acl, IpRules};
use crate::config::{Config, ConfigError};
use crate::http::Gatekeeper;
use crate::http::pipeline::Operation;
use crate::ledger::AuditDraft;
use countersign_core::audit::CapturedHeader;
use countersign_core::{Bucket, Decision, ErrorCode, Keyring, Policy, RequestVerifier, Role};
use ipnet::IpNet;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// The `operation` of a reload's audit entry. It contains `:`, which no HTTP method
/// can, so no client request can produce an entry that looks like a reload.
pub const RELOAD_OPERATION: &str = "policy:reload";

/// The reloadable part of the configuration, ready for requests.
#[derive(Debug)]
pub struct LivePolicy {
    /// The access control list.
    pub acl: Acl,
    /// Global IP rules.
    pub ip_rules: IpRules,
    /// Each bucket's own IP rules.
    pub bucket_ip_rules: BTreeMap<Bucket, IpRules>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Per operation, the verifier of its threshold policy. Operations whose
    /// threshold needs keys that are not configured have none: their requests fail
    /// with `unknown_key`.
    pub(crate) verifiers: BTreeMap<Operation, RequestVerifier>,
}

impl LivePolicy {
    /// Builds the policy of `config`.
    pub fn new(config: &Config) -> Result<Self, countersign_core::Error> {
        let keyring = Keyring::new(config.keys.iter().cloned())?;
        let mut verifiers = BTreeMap::new();
        let mut thresholds = config.thresholds.clone();
        if !thresholds.contains_key("AUDIT")
            && keyring.iter().any(|k| k.role == Role::customer_admin())
        {
            thresholds.insert("AUDIT".to_owned(), vec![(Role::customer_admin(), 1)]);
        }
        for (op, roles) in thresholds {
            let Some(op) = Operation::from_policy_name(&op) else {
                continue;
            };
            if roles
                .iter()
                .all(|(role, _)| keyring.iter().any(|k| &k.role == role))
            {
                let policy = Policy::new(keyring.clone(), roles)?;
                let verifier = RequestVerifier::new(
                    config.gatekeeper_id.clone(),
                    policy,
                    config.limits.max_lifetime_secs,
                    config.limits.clock_skew_secs,
                )?;
                verifiers.insert(op, verifier);
            }
        }
        Ok(Self {
            acl: config.acl.clone(),
            ip_rules: config.ip_rules.clone(),
            bucket_ip_rules: config
                .buckets
                .iter()
                .map(|(name, b)| (name.clone(), b.ip_rules.clone()))
                .collect(),
            trusted_proxies: config.trusted_proxies.clone(),
            verifiers,
        })
    }
}

/// Where the running configuration came from, so that it can be read again.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    /// The TOML file.
    pub path: PathBuf,
    /// `--data-dir`, if it was given (it wins over the file's `data_dir`).
    pub data_dir: Option<PathBuf>,
}

/// Who asked for a reload; recorded as the audit entry's subject.
#[derive(Clone, Debug)]
pub enum Requester {
    /// The process received SIGHUP.
    Signal,
    /// A customer-admin request; its signed subject.
    Admin(String),
}

impl Requester {
    fn subject(&self) -> String {
        match self {
            Self::Signal => "SIGHUP".to_owned(),
            Self::Admin(subject) => format!("admin:{subject}"),
        }
    }
}

/// A reload that kept the old policy.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gatekeeper was started without a configuration file.
    #[error("this gatekeeper runs without a configuration file (zero-config); nothing to reload")]
    NoFile,
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The file has problems, or changes settings that need a restart.
    #[error("the new configuration was refused; the old policy stays: {}", join(.0))]
    Invalid(Vec<ConfigError>),
    /// The audit entry of the reload could not be written: nothing was changed.
    #[error("the reload's audit entry cannot be written; the old policy stays")]
    AuditUnavailable,
}

fn join(problems: &[ConfigError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ReloadError {
    /// The error code of the refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoFile | Self::Unreadable { .. } | Self::Invalid(_) => ErrorCode::InvalidField,
            Self::AuditUnavailable => ErrorCode::AuditUnavailable,
        }
    }
}

/// A reload that took effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// SHA-256 of the configuration file now in force.
    pub sha256: [u8; 32],
    /// The audit entry's sequence number.
    pub seq: u64,
}

/// The settings that only a restart changes, by their TOML path, where `new` differs
/// from `old`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<ConfigError> {
    let mut changed = Vec::new();
    let mut check = |key: &str, same: bool| {
        if !same {
            changed.push(ConfigError {
                key: key.to_owned(),
                line: None,
                message: "changes only on restart; restart the gatekeeper (or undo the change) to reload the policy".to_owned(),
            });
        }
    };
    check("gatekeeper_id", old.gatekeeper_id == new.gatekeeper_id);
    check("listen", old.listen == new.listen);
    check("admin_listen", old.admin_listen == new.admin_listen);
    check("data_dir", old.data_dir == new.data_dir);
    check(
        "key",
        old.key_path == new.key_path && old.key_id == new.key_id,
    );
    check("database", old.database_url == new.database_url);
    check("limits", old.limits == new.limits);
    check("tls", old.tls == new.tls);
    check("cors", old.cors_origins == new.cors_origins);
    let console = |c: &Config| c.console.as_ref().map(|c| c.client_dir.clone());
    check("console", console(old) == console(new));
    check("audit", old.checkpoint_every == new.checkpoint_every);
    let witnesses = |c: &Config| {
        let w = &c.witnesses;
        let list: Vec<(String, String)> = w
            .witnesses
            .iter()
            .map(|w| (w.url.clone(), w.verifier.to_text()))
            .collect();
        (list, w.quorum, w.timeout)
    };
    check("log", witnesses(old) == witnesses(new));
    let stores = |c: &Config| {
        c.buckets
            .iter()
            .map(|(name, b)| (name.clone(), b.storage.clone()))
            .collect::<Vec<_>>()
    };
    check("buckets", stores(old) == stores(new));
    changed
}

/// Reads the configuration file again and, if all of it is valid and only the policy
/// changed, swaps the policy in. Every attempt is written to the audit log first; if
/// that fails, nothing changes.
pub async fn reload(gk: &Gatekeeper, by: &Requester) -> Result<Reloaded, ReloadError> {
    let source = gk.reload_source.get().ok_or(ReloadError::NoFile)?;
    let bytes = std::fs::read(&source.path).map_err(|e| ReloadError::Unreadable {
        path: source.path.display().to_string(),
        error: e.to_string(),
    })?;
    let sha256: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let outcome = match String::from_utf8(bytes) {
        Err(_) => Err(vec![ConfigError {
            key: "(file)".to_owned(),
            line: None,
            message: "is not UTF-8".to_owned(),
        }]),
        Ok(text) => Config::check(&text, source.data_dir.as_deref()).and_then(|new| {
            let changed = restart_only_changes(&gk.config, &new);
            if !changed.is_empty() {
                return Err(changed);
            }
            LivePolicy::new(&new).map_err(|e| {
                vec![ConfigError {
                    key: "keys".to_owned(),
                    line: None,
                    message: e.to_string(),
                }]
            })
        }),
    };
    let decision = match &outcome {
        Ok(_) => Decision::Allow,
        Err(_) => Decision::Deny(ErrorCode::InvalidField),
    };
    let draft = AuditDraft {
        time_ms: crate::http::now_ms(),
        request_id: Vec::new(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        operation: RELOAD_OPERATION.as_bytes().to_vec(),
        bucket: crate::config::AUDIT_BUCKET.as_bytes().to_vec(),
        key: format!("sha256:{}", countersign_core::text::hex(&sha256)).into_bytes(),
        subject: by.subject().into_bytes(),
        decision,
        bytes: 0,
        latency_us: 0,
        request: CapturedHeader::whole(b""),
        signatures: CapturedHeader::whole(b""),
    };
    // The log first: a policy change nobody can see did not happen.
    let entry = gk
        .ledger
        .append(draft, None)
        .await
        .map_err(|_| ReloadError::AuditUnavailable)?;
    match outcome {
        Ok(policy) => {
            gk.policy.store(std::sync::Arc::new(policy));
            Ok(Reloaded {
                sha256,
                seq: entry.seq,
            })
        }
        Err(problems) => Err(ReloadError::Invalid(problems)),
    }
}
