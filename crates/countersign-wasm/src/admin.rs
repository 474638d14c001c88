//! Customer-admin requests for the audit API (`docs/API.md`, "Audit"), for a page
//! whose admin key never leaves the browser (a non-extractable WebCrypto Ed25519 key).
//!
//! The core builds the canonical request — a `LIST` of bucket `countersign-audit`
//! with the prefix of the action, a fresh random nonce and a validity window from the
//! browser's clock — and the message the key signs; the page signs that message with
//! `crypto.subtle.sign("Ed25519", key, message)` and hands the 64-byte signature back
//! for the `Countersign-Signature` header. No protocol byte is built in JavaScript.
//!
//! ```js
//! const req = new AuditRequest({ gatekeeperId: "gk.acme", subject: "admin-ann",
//!                                keyId: "admin-ann-1", action: "read" });
//! const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", key, req.signingMessage));
//! const r = await fetch("/v1/audit/search?decision=deny", { headers: {
//!   "Countersign-Request": req.requestHeader,
//!   "Countersign-Signature": req.signatureHeader(sig) } });
//! ```

use crate::error::CountersignError;
use crate::options::Fields;
use countersign_core::signature::{encode_list, signing_message};
use countersign_core::text::b64;
use countersign_core::{
    Bucket, GatekeeperId, KeyId, ListPrefix, Operation, Request, Role, SignatureEntry, Subject,
};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

type Result<T> = std::result::Result<T, CountersignError>;

#[wasm_bindgen(typescript_custom_section)]
const AUDIT_REQUEST_OPTIONS: &str = r#"
/** Options of `new AuditRequest(options)`. */
export interface AuditRequestOptions {
  /** The gatekeeper's id (`gatekeeper_id` of its configuration): the request's audience. */
  gatekeeperId: string;
  /** The signed-in admin, recorded as the request's subject. */
  subject: string;
  /** The admin key's id in the gatekeeper's `[[keys]]` (role `customer-admin`). */
  keyId: string;
  /** `read` for search, export and entry bundles; `reload` for `POST /v1/audit/reload`. */
  action: "read" | "reload";
  /** Request lifetime in seconds (1–86400, default 60). */
  lifetimeSecs?: number;
}
"#;

/// The bucket audit requests name.
const AUDIT_BUCKET: &str = "countersign-audit";

/// One signed-to-be audit request: single use (its nonce is fresh; the gatekeeper
/// refuses a second use as `replayed`).
#[wasm_bindgen]
pub struct AuditRequest {
    request: Vec<u8>,
    key_id: KeyId,
}

fn bad(message: impl Into<String>) -> CountersignError {
    CountersignError::other("bad_options", message)
}

/// What an audit request may do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AuditAction {
    /// Search, export and entry bundles.
    Read,
    /// `POST /v1/audit/reload`.
    Reload,
}

impl AuditRequest {
    /// The request of `action` for `gatekeeper` by `subject` with the admin key
    /// `key_id`, valid from now for `lifetime` seconds, with a fresh nonce.
    pub(crate) fn build(
        gatekeeper: GatekeeperId,
        subject: Subject,
        key_id: KeyId,
        action: AuditAction,
        lifetime: u64,
    ) -> Result<Self> {
        let prefix = match action {
            AuditAction::Read => "",
            AuditAction::Reload => "reload",
        };
        let request = Request::new(
            gatekeeper,
            Bucket::parse(AUDIT_BUCKET)?,
            Operation::List {
                prefix: ListPrefix::parse(prefix)?,
            },
            subject,
            crate::client::now(),
            lifetime,
            &mut rand_core::OsRng,
        )?;
        Ok(Self {
            request: request.encode(),
            key_id,
        })
    }
}

#[wasm_bindgen]
impl AuditRequest {
    /// Builds the canonical request of `options.action`, valid from now for
    /// `options.lifetimeSecs`, with a fresh nonce from `crypto.getRandomValues`.
    /// Errors (`bad_options`, or the protocol code of a bad name) say which field.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "AuditRequestOptions")] options: JsValue,
    ) -> Result<AuditRequest> {
        crate::error::make_errors_extend_error();
        let o = Fields::new(
            &options,
            "options".to_owned(),
            &["gatekeeperId", "subject", "keyId", "action", "lifetimeSecs"],
        )?;
        let action = o.string("action")?;
        let action = match action.as_str() {
            "read" => AuditAction::Read,
            "reload" => AuditAction::Reload,
            other => {
                return Err(bad(format!(
                    "options.action must be read or reload, not `{other}`"
                )));
            }
        };
        let lifetime = o.number("lifetimeSecs")?.unwrap_or(60);
        if lifetime == 0 || lifetime > countersign_core::canonical::MAX_LIFETIME_SECS {
            return Err(bad("options.lifetimeSecs must be 1 to 86400"));
        }
        Self::build(
            GatekeeperId::parse(&o.string("gatekeeperId")?)?,
            Subject::parse(&o.string("subject")?)?,
            KeyId::parse(&o.string("keyId")?)?,
            action,
            lifetime,
        )
    }

    /// The canonical request's bytes (a copy, in an `ArrayBuffer` of its own).
    #[wasm_bindgen(getter, unchecked_return_type = "Uint8Array<ArrayBuffer>")]
    pub fn canonical(&self) -> Uint8Array {
        Uint8Array::from(self.request.as_slice())
    }

    /// The bytes the admin key signs (role `customer-admin`, the key id, the request;
    /// `docs/PROTOCOL.md`, "Signatures"): pass them to `crypto.subtle.sign`, which
    /// takes an `ArrayBuffer`-backed view (this is a copy in one of its own).
    #[wasm_bindgen(
        getter,
        js_name = signingMessage,
        unchecked_return_type = "Uint8Array<ArrayBuffer>"
    )]
    pub fn signing_message(&self) -> Uint8Array {
        let m = signing_message(&Role::customer_admin(), &self.key_id, &self.request);
        Uint8Array::from(m.as_slice())
    }

    /// The `Countersign-Request` header: the canonical request, base64url.
    #[wasm_bindgen(getter, js_name = requestHeader)]
    pub fn request_header(&self) -> String {
        b64(&self.request)
    }

    /// The `Countersign-Signature` header for the 64-byte Ed25519 `signature` of
    /// `signingMessage` (`bad_options` for another length).
    #[wasm_bindgen(js_name = signatureHeader)]
    pub fn signature_header(&self, signature: &[u8]) -> Result<String> {
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| bad("an Ed25519 signature is 64 bytes"))?;
        Ok(encode_list(&[SignatureEntry {
            role: Role::customer_admin(),
            key_id: self.key_id.clone(),
            signature,
        }]))
    }
}
