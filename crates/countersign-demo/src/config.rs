//! The demo's directory: organisations with their grants, users, and reports, loaded
//! from one JSON file and checked as a whole before the server starts (the store is
//! in memory; the JSON file is its seed). See `demo-config.json` for an example.

use crate::error::ApiError;
use countersign_core::{Bucket, GatekeeperId, ListPrefix, Method, ObjectKey, Operation, Subject};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The JSON file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Gatekeeper id every signed request must be addressed to.
    pub gatekeeper: String,
    /// Base URL of that gatekeeper, for the report page.
    pub gatekeeper_url: String,
    /// Longest request lifetime the vendor signs, in seconds.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// Session lifetime in seconds.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
    /// Whether the session cookie carries `Secure` (turn off only for plain-HTTP demos
    /// on a non-localhost name).
    #[serde(default = "default_true")]
    pub cookie_secure: bool,
    /// Signing calls a user may burst.
    #[serde(default = "default_sign_burst")]
    pub sign_burst: u32,
    /// Signing calls a user may make per minute, sustained.
    #[serde(default = "default_sign_per_minute")]
    pub sign_per_minute: u32,
    /// The organisations.
    pub organisations: Vec<OrganisationFile>,
    /// The users.
    pub users: Vec<UserFile>,
    /// The reports.
    #[serde(default)]
    pub reports: Vec<ReportFile>,
}

fn default_max_lifetime() -> u64 {
    300
}
fn default_session_ttl() -> u64 {
    3600
}
fn default_true() -> bool {
    true
}
fn default_sign_burst() -> u32 {
    20
}
fn default_sign_per_minute() -> u32 {
    120
}

/// An organisation in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationFile {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What its users may do.
    pub grants: Vec<GrantFile>,
}

/// A grant in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFile {
    /// Bucket.
    pub bucket: String,
    /// Key prefix: empty (the whole bucket) or ending in `/`.
    pub prefix: String,
    /// Methods: `GET`, `HEAD`, `PUT`, `LIST`.
    pub methods: Vec<String>,
}

/// A user in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    /// Login name.
    pub username: String,
    /// The user id signed into requests (`subject`).
    pub subject: String,
    /// Organisation id.
    pub organisation: String,
    /// Argon2 PHC string (`countersign-demo hash-password`).
    pub password_hash: String,
    /// TOTP secret in base32.
    pub totp_secret: String,
}

/// A report in the file: a page over some objects of one bucket.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFile {
    /// Stable id.
    pub id: String,
    /// Owning organisation id.
    pub organisation: String,
    /// Title.
    pub title: String,
    /// Bucket of the objects.
    pub bucket: String,
    /// Object keys shown on the page.
    pub objects: Vec<String>,
}

/// One permission: `methods` on keys under `prefix` in `bucket`.
#[derive(Clone, Debug)]
pub struct Grant {
    bucket: Bucket,
    prefix: ListPrefix,
    methods: BTreeSet<Method>,
}

impl Grant {
    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The key prefix (empty, or ending in `/`).
    pub fn prefix(&self) -> &ListPrefix {
        &self.prefix
    }

    /// The methods allowed.
    pub fn methods(&self) -> impl Iterator<Item = Method> + '_ {
        self.methods.iter().copied()
    }

    /// Whether this grant allows `operation` on `bucket`. A LIST prefix must lie
    /// inside the granted prefix; an object key must start with it. Granted prefixes
    /// end in `/`, so `org-a/` never matches `org-ab/`.
    pub fn allows(&self, bucket: &Bucket, operation: &Operation) -> bool {
        &self.bucket == bucket
            && self.methods.contains(&operation.method())
            && operation.key_text().starts_with(self.prefix.as_str())
    }
}

/// An organisation.
#[derive(Clone, Debug)]
pub struct Organisation {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Grants.
    pub grants: Vec<Grant>,
}

/// A user.
#[derive(Clone, Debug)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Subject signed into requests.
    pub subject: Subject,
    /// Organisation id.
    pub organisation: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Decoded TOTP secret.
    pub totp_secret: Vec<u8>,
}

/// The checked directory.
#[derive(Clone, Debug)]
pub struct Directory {
    /// Audience of every signed request.
    pub gatekeeper: GatekeeperId,
    /// The gatekeeper's base URL, for the page.
    pub gatekeeper_url: String,
    /// Its origin (`scheme://host[:port]`), for the page's Content-Security-Policy.
    pub gatekeeper_origin: String,
    /// Longest lifetime signed.
    pub max_lifetime_secs: u64,
    /// Session lifetime.
    pub session_ttl_secs: u64,
    /// `Secure` cookie attribute.
    pub cookie_secure: bool,
    /// Rate limit burst.
    pub sign_burst: u32,
    /// Rate limit per minute.
    pub sign_per_minute: u32,
    /// Organisations by id.
    pub organisations: BTreeMap<String, Organisation>,
    /// Users by username.
    pub users: BTreeMap<String, User>,
    /// Reports by id.
    pub reports: BTreeMap<String, ReportFile>,
}

/// `scheme://host[:port]` of an `http` or `https` URL without credentials.
fn origin_of(url: &str) -> Result<String, ApiError> {
    let invalid = || {
        bad(format!(
            "gatekeeper_url `{url}` must be an http:// or https:// URL"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let clean = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if !matches!(scheme, "http" | "https") || authority.is_empty() || !authority.chars().all(clean)
    {
        return Err(invalid());
    }
    Ok(format!("{scheme}://{authority}"))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::config(message)
}

impl Directory {
    /// Parses and checks the JSON text of a config file.
    pub fn from_json(text: &str) -> Result<Self, ApiError> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|e| bad(format!("config file: {e}")))?;
        Self::from_file(file)
    }

    /// Checks a parsed config file: ids unique, references resolve, names valid,
    /// hashes and secrets decodable, report objects inside their organisation's grants.
    pub fn from_file(file: ConfigFile) -> Result<Self, ApiError> {
        let gatekeeper = GatekeeperId::parse(&file.gatekeeper)?;
        if file.max_lifetime_secs == 0
            || file.max_lifetime_secs > countersign_core::canonical::MAX_LIFETIME_SECS
        {
            return Err(bad("max_lifetime_secs must be 1 to 86400"));
        }
        if file.sign_burst == 0 || file.sign_per_minute == 0 || file.session_ttl_secs == 0 {
            return Err(bad(
                "sign_burst, sign_per_minute and session_ttl_secs must be positive",
            ));
        }
        let mut organisations = BTreeMap::new();
        for org in file.organisations {
            let mut grants = Vec::new();
            for g in org.grants {
                let prefix = ListPrefix::parse(&g.prefix)?;
                if !(g.prefix.is_empty() || g.prefix.ends_with('/')) {
                    return Err(bad(format!(
                        "organisation `{}`: prefix `{}` must be empty or end with `/`",
                        org.id, g.prefix
                    )));
                }
                let methods = g
                    .methods
                    .iter()
                    .map(|m| Method::parse(m))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                grants.push(Grant {
                    bucket: Bucket::parse(&g.bucket)?,
                    prefix,
                    methods,
                });
            }
            let id = org.id.clone();
            let entry = Organisation {
                id: org.id,
                name: org.name,
                grants,
            };
            if organisations.insert(id.clone(), entry).is_some() {
                return Err(bad(format!("organisation id `{id}` appears twice")));
            }
        }
        let mut users = BTreeMap::new();
        let mut subjects = BTreeSet::new();
        for u in file.users {
            if u.username.is_empty() || u.username.len() > crate::routes::MAX_USERNAME_BYTES {
                return Err(bad(format!(
                    "username `{}` must be 1 to {} bytes (the login form refuses longer ones)",
                    u.username.chars().take(40).collect::<String>(),
                    crate::routes::MAX_USERNAME_BYTES
                )));
            }
            if !organisations.contains_key(&u.organisation) {
                return Err(bad(format!(
                    "user `{}`: unknown organisation `{}`",
                    u.username, u.organisation
                )));
            }
            argon2::PasswordHash::new(&u.password_hash).map_err(|_| {
                bad(format!(
                    "user `{}`: password_hash is not an argon2 PHC string",
                    u.username
                ))
            })?;
            let totp_secret = crate::totp::base32_decode(&u.totp_secret)
                .filter(|s| crate::totp::usable(s))
                .ok_or_else(|| {
                    bad(format!(
                        "user `{}`: totp_secret must be base32 of at least {} bytes",
                        u.username,
                        crate::totp::MIN_SECRET_BYTES
                    ))
                })?;
            let subject = Subject::parse(&u.subject)?;
            if !subjects.insert(subject.clone()) {
                return Err(bad(format!("subject `{subject}` appears twice")));
            }
            let name = u.username.clone();
            let user = User {
                username: u.username,
                subject,
                organisation: u.organisation,
                password_hash: u.password_hash,
                totp_secret,
            };
            if users.insert(name.clone(), user).is_some() {
                return Err(bad(format!("username `{name}` appears twice")));
            }
        }
        let mut reports = BTreeMap::new();
        for r in file.reports {
            let org = organisations.get(&r.organisation).ok_or_else(|| {
                bad(format!(
                    "report `{}`: unknown organisation `{}`",
                    r.id, r.organisation
                ))
            })?;
            let bucket = Bucket::parse(&r.bucket)?;
            for key in &r.objects {
                let op = Operation::Get {
                    key: ObjectKey::parse(key)?,
                    range: None,
                };
                if !org.grants.iter().any(|g| g.allows(&bucket, &op)) {
                    return Err(bad(format!(
                        "report `{}`: `{key}` is outside organisation `{}`'s grants",
                        r.id, r.organisation
                    )));
                }
            }
            let id = r.id.clone();
            if reports.insert(id.clone(), r).is_some() {
                return Err(bad(format!("report id `{id}` appears twice")));
            }
        }
        if users.is_empty() {
            return Err(bad("the config has no users"));
        }
        Ok(Self {
            gatekeeper,
            gatekeeper_origin: origin_of(&file.gatekeeper_url)?,
            gatekeeper_url: file.gatekeeper_url,
            max_lifetime_secs: file.max_lifetime_secs,
            session_ttl_secs: file.session_ttl_secs,
            cookie_secure: file.cookie_secure,
            sign_burst: file.sign_burst,
            sign_per_minute: file.sign_per_minute,
            organisations,
            users,
            reports,
        })
    }
}

/// The gatekeeper configuration file the demo writes (`toml` does the quoting).
#[derive(serde::Serialize)]
struct GatekeeperToml<'a> {
    gatekeeper_id: &'a str,
    data_dir: String,
    limits: LimitsToml,
    keys: Vec<KeyToml>,
    buckets: BTreeMap<&'a str, BucketToml>,
    acl: Vec<AclToml<'a>>,
    cors: CorsToml<'a>,
}

#[derive(serde::Serialize)]
struct LimitsToml {
    max_lifetime_secs: u64,
}

#[derive(serde::Serialize)]
struct KeyToml {
    key_id: String,
    role: String,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

#[derive(serde::Serialize)]
struct BucketToml {
    store: &'static str,
}

#[derive(serde::Serialize)]
struct AclToml<'a> {
    effect: &'static str,
    subjects: Vec<&'a str>,
    buckets: [&'a str; 1],
    prefix: &'a str,
    operations: Vec<&'a str>,
}

#[derive(serde::Serialize)]
struct CorsToml<'a> {
    origins: [&'a str; 1],
}

impl Directory {
    /// A gatekeeper configuration (TOML, see the gatekeeper's example file) that
    /// matches this directory, for running the demo: the customer trusts
    /// `vendor_keys`, keeps each bucket in a local folder under `data_dir`, allows the
    /// report page's `origin` (CORS), and has its **own** ACL that mirrors the
    /// organisations' grants per user, so a request the vendor should never have
    /// signed is refused by the customer too.
    pub fn gatekeeper_toml(
        &self,
        vendor_keys: &[countersign_core::AuthorizedKey],
        data_dir: &std::path::Path,
        origin: &str,
    ) -> String {
        let keys = vendor_keys
            .iter()
            .map(|k| KeyToml {
                key_id: k.key_id.as_str().to_owned(),
                role: k.role.as_str().to_owned(),
                public_key: countersign_core::text::b64(&k.public_key.to_bytes()),
                not_before: k.not_before,
                not_after: k.not_after,
            })
            .collect();
        let buckets = self
            .organisations
            .values()
            .flat_map(|o| {
                o.grants
                    .iter()
                    .map(|g| (g.bucket.as_str(), BucketToml { store: "local" }))
            })
            .collect();
        let mut acl = Vec::new();
        for org in self.organisations.values() {
            let subjects: Vec<&str> = self
                .users
                .values()
                .filter(|u| u.organisation == org.id)
                .map(|u| u.subject.as_str())
                .collect();
            if subjects.is_empty() {
                continue;
            }
            acl.extend(org.grants.iter().map(|g| AclToml {
                effect: "allow",
                subjects: subjects.clone(),
                buckets: [g.bucket.as_str()],
                prefix: g.prefix.as_str(),
                operations: g.methods.iter().map(|m| m.as_str()).collect(),
            }));
        }
        let file = GatekeeperToml {
            gatekeeper_id: self.gatekeeper.as_str(),
            data_dir: data_dir.to_string_lossy().into_owned(),
            limits: LimitsToml {
                max_lifetime_secs: self.max_lifetime_secs,
            },
            keys,
            buckets,
            acl,
            cors: CorsToml { origins: [origin] },
        };
        // Serializing plain strings, numbers and lists into TOML cannot fail.
        let body = toml::to_string(&file).unwrap_or_default();
        format!("# Generated by `countersign-demo gatekeeper-config`.\n{body}")
    }
}
