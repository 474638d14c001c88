//! The options object the page passes to `new GatekeeperClient(options)`.

use crate::error::CountersignError;
use countersign_core::note::NoteVerifier;
use countersign_core::{
    AuthorizedKey, Bucket, GatekeeperId, KeyId, Keyring, Policy, PublicKey, Role, Subject,
};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// The fields of one options object, read by hand rather than through serde: serde's
/// type-error messages format floating-point numbers, and that formatting code alone
/// was ~20 KB of the `.wasm` (see BENCHMARKS.md).
pub(crate) struct Fields<'a> {
    object: &'a JsValue,
    /// Where the object is, for messages: `options` or `options.keys[3]`.
    path: String,
}

impl<'a> Fields<'a> {
    /// `value` as an object with no fields but `known`.
    pub(crate) fn new(
        value: &'a JsValue,
        path: String,
        known: &[&str],
    ) -> Result<Self, CountersignError> {
        if !value.is_object() || Array::is_array(value) {
            return Err(bad(format!("{path} must be an object")));
        }
        for name in Object::keys(value.unchecked_ref::<Object>()).iter() {
            let name = name.as_string().unwrap_or_default();
            if !known.contains(&name.as_str()) {
                return Err(bad(format!("{path}.{name} is not a known option")));
            }
        }
        Ok(Self {
            object: value,
            path,
        })
    }

    /// The field `name`; `None` when it is missing, `undefined` or `null`.
    fn get(&self, name: &str) -> Option<JsValue> {
        Reflect::get(self.object, &JsValue::from_str(name))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    pub(crate) fn string(&self, name: &str) -> Result<String, CountersignError> {
        self.get(name)
            .and_then(|v| v.as_string())
            .ok_or_else(|| bad(format!("{}.{name} must be a string", self.path)))
    }

    /// An optional whole number from 0 to 2^53 − 1 (what a JavaScript number holds exactly).
    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, CountersignError> {
        const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value.as_f64() {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a whole number in 0..=2^53-1"
            )]
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n) => Ok(Some(n as u64)),
            _ => Err(bad(format!(
                "{}.{name} must be a whole number from 0 to 2^53 - 1",
                self.path
            ))),
        }
    }

    fn count(&self, name: &str) -> Result<Option<usize>, CountersignError> {
        self.number(name)?
            .map(|n| {
                usize::try_from(n).map_err(|_| bad(format!("{}.{name} is too large", self.path)))
            })
            .transpose()
    }

    /// An array field (missing: empty).
    fn array(&self, name: &str, required: bool) -> Result<Vec<JsValue>, CountersignError> {
        match self.get(name) {
            None if !required => Ok(Vec::new()),
            Some(v) if Array::is_array(&v) => Ok(Array::from(&v).to_vec()),
            _ => Err(bad(format!("{}.{name} must be an array", self.path))),
        }
    }

    /// `keys`: the public keys the page trusts (`TrustedKey[]`).
    pub(crate) fn keys(&self) -> Result<Vec<AuthorizedKey>, CountersignError> {
        let mut keys = Vec::new();
        for (i, k) in self.array("keys", true)?.iter().enumerate() {
            let k = Fields::new(
                k,
                format!("options.keys[{i}]"),
                &["keyId", "role", "publicKey", "notBefore", "notAfter"],
            )?;
            let bytes = countersign_core::text::parse_b64(&k.string("publicKey")?, "a public key")
                .map_err(|_| {
                    bad(format!(
                        "options.keys[{i}].publicKey must be 32 bytes of unpadded base64url"
                    ))
                })?;
            keys.push(AuthorizedKey {
                key_id: KeyId::parse(&k.string("keyId")?)?,
                role: Role::parse(&k.string("role")?)?,
                public_key: PublicKey::from_slice(&bytes)?,
                not_before: k.number("notBefore")?,
                not_after: k.number("notAfter")?,
            });
        }
        Ok(keys)
    }

    /// `logWitnesses` and `logQuorum`: the witnesses of which `logQuorum` must have
    /// cosigned a checkpoint of the log.
    // Inlined into `Config::from_js`: as a call of its own it cost the default flavor
    // ~45 B of gzip, which its 120,000 B budget did not have.
    #[inline(always)]
    pub(crate) fn witnesses(&self) -> Result<(Vec<NoteVerifier>, usize), CountersignError> {
        let witnesses = self
            .array("logWitnesses", false)?
            .iter()
            .enumerate()
            .map(|(i, w)| {
                w.as_string()
                    .and_then(|w| NoteVerifier::parse(&w).ok())
                    .filter(NoteVerifier::is_cosigner)
                    .ok_or_else(|| {
                        bad(format!(
                            "options.logWitnesses[{i}] must be a witness verifier key `name+keyid+base64` of type 0x04"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = self.count("logQuorum")?.unwrap_or(0);
        if quorum > witnesses.len() {
            return Err(bad(
                "options.logQuorum may not exceed the number of options.logWitnesses",
            ));
        }
        Ok((witnesses, quorum))
    }
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
        let raw = Fields::new(
            options,
            "options".to_owned(),
            &[
                "gatekeeperUrl",
                "gatekeeperId",
                "bucket",
                "subject",
                "lifetimeSecs",
                "keys",
                "vendorThreshold",
                "gatekeeperThreshold",
                "concurrency",
                "logWitnesses",
                "logQuorum",
                "sign",
            ],
        )?;
        let sign = js_sys::Reflect::get(options, &JsValue::from_str("sign"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .ok_or_else(|| {
                bad("options.sign must be an async function (requests) => signature lists")
            })?;
        let base_url = raw
            .string("gatekeeperUrl")?
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(bad("options.gatekeeperUrl must be an http(s) URL"));
        }
        let lifetime_secs = raw.number("lifetimeSecs")?.unwrap_or(120);
        if lifetime_secs == 0 || lifetime_secs > countersign_core::canonical::MAX_LIFETIME_SECS {
            return Err(bad("options.lifetimeSecs must be 1 to 86400"));
        }
        let concurrency = raw.count("concurrency")?.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(bad(format!(
                "options.concurrency must be 1 to {MAX_CONCURRENCY}"
            )));
        }
        let keys = raw.keys()?;
        let audience = GatekeeperId::parse(&raw.string("gatekeeperId")?)?;
        let origin = countersign_core::logged::log_origin(&audience);
        let log_keys = keys
            .iter()
            .filter(|k| k.role == Role::gatekeeper())
            .map(|k| NoteVerifier::ed25519(&origin, k.public_key))
            .collect::<Result<Vec<_>, _>>()?;
        let (witnesses, quorum) = raw.witnesses()?;
        let keyring = Keyring::new(keys)?;
        let gatekeeper = Policy::new(
            keyring.clone(),
            [(
                Role::gatekeeper(),
                raw.count("gatekeeperThreshold")?.unwrap_or(1),
            )],
        )?;
        let uploader = Policy::new(
            keyring,
            [(Role::vendor(), raw.count("vendorThreshold")?.unwrap_or(1))],
        )?;
        Ok(Self {
            base_url,
            audience,
            bucket: Bucket::parse(&raw.string("bucket")?)?,
            subject: Subject::parse(&raw.string("subject")?)?,
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
