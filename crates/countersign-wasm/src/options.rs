//! The options object the page passes to `new GatekeeperClient(options)`.

use crate::error::CountersignError;
use countersign_core::note::NoteVerifier;
use countersign_core::{
    AuthorizedKey, Bucket, GatekeeperId, KeyId, Keyring, Policy, PublicKey, Role, Subject,
};
use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOptions {
    gatekeeper_url: String,
    gatekeeper_id: String,
    bucket: String,
    subject: String,
    #[serde(default)]
    lifetime_secs: Option<u64>,
    keys: Vec<RawKey>,
    #[serde(default)]
    vendor_threshold: Option<usize>,
    #[serde(default)]
    gatekeeper_threshold: Option<usize>,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    log_witnesses: Vec<String>,
    #[serde(default)]
    log_quorum: Option<usize>,
    // Read separately: serde cannot hold a JavaScript function.
    #[serde(default, rename = "sign")]
    _sign: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawKey {
    key_id: String,
    role: String,
    public_key: String,
    #[serde(default)]
    not_before: Option<u64>,
    #[serde(default)]
    not_after: Option<u64>,
}

/// The client's validated configuration.
pub(crate) struct Config {
    pub base_url: String,
    pub audience: GatekeeperId,
    pub bucket: Bucket,
    pub subject: Subject,
    pub lifetime_secs: u64,
    /// The gatekeeper's keys: receipts and manifests must be signed by them.
    pub gatekeeper: Policy,
    /// The keys PUT requests must have been signed with (role `vendor`).
    pub uploader: Policy,
    /// `async (requests: string[]) => string[]`: base64url canonical requests in,
    /// signature lists out.
    pub sign: js_sys::Function,
    /// How many objects `getObjects` fetches at once.
    pub concurrency: usize,
    /// The log's note keys: the gatekeeper's keys under `<gatekeeper id>/audit`.
    pub log_keys: Vec<NoteVerifier>,
    /// Witness cosigner keys `proveLogged` accepts.
    pub witnesses: Vec<NoteVerifier>,
    /// How many of them must have cosigned the checkpoint.
    pub quorum: usize,
}

/// `getObjects` fetches this many objects at once unless told otherwise: what a
/// browser opens to one origin over HTTP/1.1.
pub(crate) const DEFAULT_CONCURRENCY: usize = 6;
/// The most `options.concurrency` may ask for.
pub(crate) const MAX_CONCURRENCY: usize = 64;

fn bad(message: impl Into<String>) -> CountersignError {
    CountersignError::other("bad_options", message)
}

impl Config {
    /// The URL of `path` (from `countersign_core::transport`) on the gatekeeper.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub(crate) fn from_js(options: &JsValue) -> Result<Self, CountersignError> {
        let raw: RawOptions = serde_wasm_bindgen::from_value(options.clone())
            .map_err(|e| bad(format!("options: {e}")))?;
        let sign = js_sys::Reflect::get(options, &JsValue::from_str("sign"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .ok_or_else(|| {
                bad("options.sign must be an async function (requests) => signature lists")
            })?;
        let base_url = raw.gatekeeper_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(bad("options.gatekeeperUrl must be an http(s) URL"));
        }
        let lifetime_secs = raw.lifetime_secs.unwrap_or(120);
        if lifetime_secs == 0 || lifetime_secs > countersign_core::canonical::MAX_LIFETIME_SECS {
            return Err(bad("options.lifetimeSecs must be 1 to 86400"));
        }
        let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(bad(format!(
                "options.concurrency must be 1 to {MAX_CONCURRENCY}"
            )));
        }
        let mut keys = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let bytes =
                countersign_core::text::parse_b64(&k.public_key, "a public key").map_err(|_| {
                    bad(format!(
                        "options.keys[{i}].publicKey must be 32 bytes of unpadded base64url"
                    ))
                })?;
            keys.push(AuthorizedKey {
                key_id: KeyId::parse(&k.key_id)?,
                role: Role::parse(&k.role)?,
                public_key: PublicKey::from_slice(&bytes)?,
                not_before: k.not_before,
                not_after: k.not_after,
            });
        }
        let audience = GatekeeperId::parse(&raw.gatekeeper_id)?;
        let origin = countersign_core::logged::log_origin(&audience);
        let log_keys = keys
            .iter()
            .filter(|k| k.role == Role::gatekeeper())
            .map(|k| NoteVerifier::ed25519(&origin, k.public_key))
            .collect::<Result<Vec<_>, _>>()?;
        let witnesses = raw
            .log_witnesses
            .iter()
            .enumerate()
            .map(|(i, w)| {
                NoteVerifier::parse(w)
                    .ok()
                    .filter(NoteVerifier::is_cosigner)
                    .ok_or_else(|| {
                        bad(format!(
                            "options.logWitnesses[{i}] must be a witness verifier key `name+keyid+base64` of type 0x04"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = raw.log_quorum.unwrap_or(0);
        if quorum > witnesses.len() {
            return Err(bad(
                "options.logQuorum may not exceed the number of options.logWitnesses",
            ));
        }
        let keyring = Keyring::new(keys)?;
        let gatekeeper = Policy::new(
            keyring.clone(),
            [(Role::gatekeeper(), raw.gatekeeper_threshold.unwrap_or(1))],
        )?;
        let uploader = Policy::new(
            keyring,
            [(Role::vendor(), raw.vendor_threshold.unwrap_or(1))],
        )?;
        Ok(Self {
            base_url,
            audience,
            bucket: Bucket::parse(&raw.bucket)?,
            subject: Subject::parse(&raw.subject)?,
            lifetime_secs,
            gatekeeper,
            uploader,
            sign,
            concurrency,
            log_keys,
            witnesses,
            quorum,
        })
    }
}
