//! `GatekeeperClient`: the page-facing class.

use crate::error::{CountersignError, describe};
use crate::http::{
    check_response, content_length, discard_body, header, network, protocol_error, read_body,
};
use crate::listing::{MAX_LIST_BODY_BYTES, signed_members, verify_page};
use crate::logged::LogReceipt;
use crate::options::Config;
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, hex, parse_b64};
use countersign_core::transport::{
    MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER, RECEIPT_HEADER, RECEIPT_SIGNATURE_HEADER,
    REQUEST_HEADER, SIGNATURE_HEADER, list_path, object_path,
};
use countersign_core::{
    BodyDigest, ContentType, Download, ErrorCode, ListPrefix, Manifest, ObjectKey, Operation,
    Receipt, Request, SignatureEntry, VerifiedDownload, verify_download,
};
use gloo_net::http::Request as HttpRequest;
use js_sys::{Array, Promise, Uint8Array};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

type Result<T> = std::result::Result<T, CountersignError>;

#[wasm_bindgen(typescript_custom_section)]
const CLIENT_OPTIONS: &str = r#"
/** A public key the client trusts, from the page's configuration. */
export interface TrustedKey {
  keyId: string;
  /** `gatekeeper` for the gatekeeper's keys, `vendor` for the uploaders'. */
  role: string;
  /** The 32-byte Ed25519 public key, unpadded base64url (as in the gatekeeper's config). */
  publicKey: string;
  notBefore?: number;
  notAfter?: number;
}

/** Options of `new GatekeeperClient(options)`. */
export interface ClientOptions {
  gatekeeperUrl: string;
  gatekeeperId: string;
  bucket: string;
  /** The signed-in vendor user. */
  subject: string;
  /** Request lifetime in seconds (default 120). */
  lifetimeSecs?: number;
  keys: TrustedKey[];
  vendorThreshold?: number;
  gatekeeperThreshold?: number;
  /** How many objects `getObjects` fetches at once (1–64, default 6). */
  concurrency?: number;
  /** Witness verifier keys (`name+keyid+base64`, type 0x04) `proveLogged` accepts. */
  logWitnesses?: string[];
  /** How many of `logWitnesses` must have cosigned the checkpoint (default 0). */
  logQuorum?: number;
  /** Has the vendor sign base64url canonical requests; one signature list each. */
  sign: (requests: string[]) => Promise<string[]> | string[];
}
"#;

/// A client for one gatekeeper, bucket and signed-in user.
#[wasm_bindgen]
pub struct GatekeeperClient {
    config: Rc<Config>,
}

/// An object whose receipt, manifest and bytes verified.
#[wasm_bindgen]
pub struct VerifiedObject {
    key: String,
    bytes: Vec<u8>,
    download: VerifiedDownload,
}

/// The outcome of a verified PUT.
#[wasm_bindgen]
pub struct PutResult {
    key: String,
    sha256: String,
    size: u64,
    receipt: Receipt,
}

pub(crate) fn now() -> u64 {
    // Whole seconds since the epoch; the clock is the browser's.
    (js_sys::Date::now() / 1000.0).floor() as u64
}

fn promise<T: Into<JsValue>>(f: impl std::future::Future<Output = Result<T>> + 'static) -> Promise {
    future_to_promise(async move { f.await.map(Into::into).map_err(Into::into) })
}

#[wasm_bindgen]
impl GatekeeperClient {
    /// Creates a client. `options`: `gatekeeperUrl`, `gatekeeperId`, `bucket`,
    /// `subject`, optional `lifetimeSecs` (default 120), `keys` (the gatekeeper's and
    /// the vendor's public keys: `{keyId, role, publicKey, notBefore?, notAfter?}`,
    /// obtained from the page's configuration, never from the gatekeeper's response),
    /// optional `vendorThreshold`/`gatekeeperThreshold` (default 1), and
    /// `sign: async (requests: string[]) => string[]`, which asks the vendor backend to
    /// sign base64url canonical requests and returns one signature list per request.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ClientOptions")] options: JsValue,
    ) -> Result<GatekeeperClient> {
        crate::error::make_errors_extend_error();
        Ok(Self {
            config: Rc::new(Config::from_js(&options)?),
        })
    }

    /// Fetches and verifies one object. Rejects with a `CountersignError`.
    #[wasm_bindgen(js_name = getObject, unchecked_return_type = "Promise<VerifiedObject>")]
    pub fn get_object(&self, key: String) -> Promise {
        let config = self.config.clone();
        promise(async move {
            let key = ObjectKey::parse(&key)?;
            let request = build(
                &config,
                Operation::Get {
                    key: key.clone(),
                    range: None,
                },
            )?;
            let sigs = sign_one(&config, &request).await?;
            fetch_verified(&config, &request, &sigs, &key).await
        })
    }

    /// Fetches and verifies several objects with one signing call (a report page
    /// needs many), `options.concurrency` (default 6) at a time. Resolves to an array holding, per key, a `VerifiedObject` or the
    /// `CountersignError` for that key.
    #[wasm_bindgen(
        js_name = getObjects,
        unchecked_return_type = "Promise<Array<VerifiedObject | CountersignError>>"
    )]
    pub fn get_objects(&self, keys: Vec<String>) -> Promise {
        let config = self.config.clone();
        future_to_promise(async move {
            let out = Array::new();
            let mut pending = Vec::new();
            let mut requests = Vec::new();
            for key in keys {
                let built = ObjectKey::parse(&key)
                    .map_err(CountersignError::from)
                    .and_then(|k| {
                        let r = build(
                            &config,
                            Operation::Get {
                                key: k.clone(),
                                range: None,
                            },
                        )?;
                        Ok((k, r))
                    });
                match built {
                    Ok((k, r)) => {
                        pending.push(Ok(k));
                        requests.push(r);
                    }
                    Err(e) => pending.push(Err(e)),
                }
            }
            let mut signatures = sign_all(&config, &requests)
                .await
                .map_err(JsValue::from)?
                .into_iter();
            let mut requests = requests.into_iter();
            // The work, in the caller's order; `concurrency` workers take the next item
            // and write its result into the slot of the same index.
            let work: VecDeque<_> = pending
                .into_iter()
                .map(|item| item.map(|key| (key, requests.next(), signatures.next())))
                .enumerate()
                .collect();
            let work = Rc::new(RefCell::new(work));
            let workers = Array::new();
            for _ in 0..config.concurrency.min(work.borrow().len()) {
                let (work, config, out) = (work.clone(), config.clone(), out.clone());
                workers.push(&future_to_promise(async move {
                    loop {
                        let Some((slot, item)) = work.borrow_mut().pop_front() else {
                            return Ok(JsValue::UNDEFINED);
                        };
                        let result = match item {
                            Ok((key, Some(r), Some(Ok(s)))) => {
                                fetch_verified(&config, &r, &s, &key)
                                    .await
                                    .map(JsValue::from)
                            }
                            Ok((_, _, Some(Err(e)))) | Err(e) => Err(e),
                            Ok(_) => Err(CountersignError::other(
                                "bad_options",
                                "signing returned too few results",
                            )),
                        };
                        out.set(slot as u32, result.unwrap_or_else(JsValue::from));
                    }
                }));
            }
            JsFuture::from(Promise::all(&workers)).await?;
            Ok(out.into())
        })
    }

    /// Hashes `body` (in wasm), has the PUT signed, uploads it straight to the
    /// gatekeeper and verifies its receipt.
    #[wasm_bindgen(js_name = putObject, unchecked_return_type = "Promise<PutResult>")]
    pub fn put_object(&self, key: String, body: Vec<u8>, content_type: String) -> Promise {
        let config = self.config.clone();
        promise(async move {
            let key = ObjectKey::parse(&key)?;
            let digest = digest(&body).await;
            let op = Operation::Put {
                key: key.clone(),
                content_type: ContentType::parse(&content_type)?,
                body: digest,
            };
            let request = build(&config, op)?;
            let sigs = sign_one(&config, &request).await?;
            let url = config.url(&object_path(&config.bucket, &key));
            let http = HttpRequest::put(&url)
                .header(REQUEST_HEADER, &b64(&request))
                .header(SIGNATURE_HEADER, &encode_list(&sigs))
                .header("Content-Type", content_type.as_str())
                .body(Uint8Array::from(body.as_slice()))
                .map_err(|e| network("building the upload", e))?;
            let response = http.send().await.map_err(|e| network("uploading", e))?;
            let receipt = check_response(&config, &request, &response).await?;
            Ok(PutResult {
                key: key.to_string(),
                sha256: hex(&digest.sha256),
                size: digest.length,
                receipt: receipt.receipt().clone(),
            })
        })
    }

    /// Proves that the request of `receipt` (from `PutResult.receipt`,
    /// `VerifiedObject.receipt` or a refusal's `CountersignError.receipt`) was logged:
    /// fetches the log's signed checkpoint and the entry's inclusion proof in one
    /// request (`GET /v1/log/proof/<index>`, public, no signing call), and checks the
    /// checkpoint's signature under the configured gatekeeper keys, the witness quorum
    /// (`logWitnesses`, `logQuorum`) and the inclusion of the receipt's leaf. Rejects
    /// with `not_found` while the log has not integrated the entry yet (retry after
    /// its checkpoint interval, 1 s by default), `audit_chain_broken` if the leaf is
    /// not in the signed tree, `threshold_not_met` without the witness quorum,
    /// `invalid_field` for a proof of another entry or tree size.
    #[wasm_bindgen(js_name = proveLogged, unchecked_return_type = "Promise<LogProof>")]
    pub fn prove_logged(&self, receipt: &LogReceipt) -> Promise {
        let config = self.config.clone();
        let receipt = receipt.receipt.clone();
        promise(async move { crate::logged::prove(&config, &receipt).await })
    }

    /// Lists one page of the objects under `prefix` from the gatekeeper's index, at
    /// most `limit` of them (the gatekeeper's page size if omitted). Pass the previous
    /// page's `nextAfter` as `after` to continue. The page is the gatekeeper's signed
    /// listing, verified: it answers this very request, starts right after `after` and
    /// hides, adds or alters no object (else the promise rejects, with
    /// `listing_mismatch`, `bad_signature`, … as the code).
    #[wasm_bindgen(js_name = listObjects, unchecked_return_type = "Promise<ListPage>")]
    pub fn list_objects(
        &self,
        prefix: String,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Promise {
        let config = self.config.clone();
        promise(async move {
            let prefix = ListPrefix::parse(&prefix)?;
            // A cursor is an object key (the empty string, like none, is the first page).
            let after = match after.as_deref() {
                None | Some("") => None,
                Some(a) => Some(ObjectKey::parse(a)?),
            };
            let request = build(
                &config,
                Operation::List {
                    prefix: prefix.clone(),
                },
            )?;
            let sigs = sign_one(&config, &request).await?;
            let path = list_path(
                &config.bucket,
                prefix.as_str(),
                after.as_ref().map(ObjectKey::as_str),
                limit,
            );
            let response = HttpRequest::get(&config.url(&path))
                .header(REQUEST_HEADER, &b64(&request))
                .header(SIGNATURE_HEADER, &encode_list(&sigs))
                .send()
                .await
                .map_err(|e| network("listing", e))?;
            let receipt = check_response(&config, &request, &response).await?;
            let body = read_body(&response, MAX_LIST_BODY_BYTES, || {
                protocol_error(
                    ErrorCode::TooLarge,
                    format!("the LIST answer is larger than {MAX_LIST_BODY_BYTES} bytes"),
                )
            })
            .await?;
            let (listing, signature) = signed_members(&body)?;
            Ok(verify_page(
                &config.gatekeeper,
                &request,
                &listing,
                &signature,
                after.as_ref(),
                receipt.receipt().audit_seq,
            )?)
        })
    }
}

/// Builds a request for the configured audience, bucket and subject, valid from now.
fn build(config: &Config, operation: Operation) -> Result<Vec<u8>> {
    let request = Request::new(
        config.audience.clone(),
        config.bucket.clone(),
        operation,
        config.subject.clone(),
        now(),
        config.lifetime_secs,
        &mut rand_core::OsRng,
    )?;
    Ok(request.encode())
}

/// Calls the page's signing function once for all requests. Per request it may
/// return a signature list, or `{code, message}` when the vendor refused that request.
async fn sign_all(
    config: &Config,
    requests: &[Vec<u8>],
) -> Result<Vec<Result<Vec<SignatureEntry>>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let batch: Array = requests
        .iter()
        .map(|r| JsValue::from_str(&b64(r)))
        .collect();
    let returned = config
        .sign
        .call1(&JsValue::NULL, &batch)
        .map_err(|e| network("the signing function threw", describe(&e)))?;
    let resolved = JsFuture::from(Promise::resolve(&returned))
        .await
        .map_err(|e| refusal(&e).unwrap_or_else(|| network("signing failed", describe(&e))))?;
    let lists = resolved.dyn_into::<Array>().map_err(|_| {
        CountersignError::other(
            "bad_options",
            "the signing function must resolve to an array with one entry per request",
        )
    })?;
    if lists.length() as usize != requests.len() {
        return Err(CountersignError::other(
            "bad_options",
            format!(
                "signed {} requests, got {} results",
                requests.len(),
                lists.length()
            ),
        ));
    }
    Ok(lists
        .iter()
        .map(|entry| match entry.as_string() {
            Some(list) => parse_list(&list).map_err(Into::into),
            None => Err(refusal(&entry).unwrap_or_else(|| {
                CountersignError::other(
                    "bad_options",
                    "a signing result must be a signature list or {code, message}",
                )
            })),
        })
        .collect())
}

/// Reads `{code, message}` (a refusal by the vendor, or a thrown CountersignError).
fn refusal(value: &JsValue) -> Option<CountersignError> {
    let code = js_sys::Reflect::get(value, &JsValue::from_str("code"))
        .ok()?
        .as_string()?;
    let message = js_sys::Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    Some(CountersignError::protocol(&code, message))
}

/// Signs one request; its refusal becomes the error.
async fn sign_one(config: &Config, request: &[u8]) -> Result<Vec<SignatureEntry>> {
    sign_all(config, std::slice::from_ref(&request.to_vec()))
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(CountersignError::other("bad_options", "no signing result")))
}

/// SHA-256 and length of a body. Uses the browser's native `crypto.subtle.digest`
/// (about twice the speed of SHA-256 compiled to wasm; SHA-256 has no edge cases, so
/// the answer is the same) and falls back to the wasm implementation where
/// `crypto.subtle` is missing (pages not in a secure context).
pub(crate) async fn digest(bytes: &[u8]) -> BodyDigest {
    let subtle = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok())
        .map(|c| c.subtle())
        .filter(|s| !s.is_undefined());
    if let Some(subtle) = subtle
        && let Ok(promise) = subtle.digest_with_str_and_u8_array("SHA-256", bytes)
        && let Ok(buffer) = JsFuture::from(promise).await
        && let Ok(sha256) = <[u8; 32]>::try_from(Uint8Array::new(&buffer).to_vec())
    {
        return BodyDigest {
            sha256,
            length: bytes.len() as u64,
        };
    }
    BodyDigest::of(bytes)
}

/// GETs one object and verifies it. Before reading a byte of the body it verifies the
/// receipt (it must allow) and the manifest (this object, both signatures) and refuses
/// an answer that announces another length than the manifest signs; while the body
/// streams in it stops as soon as more bytes arrive than signed (`body_mismatch`);
/// then [`verify_download`] checks everything once more with the body's digest.
async fn fetch_verified(
    config: &Config,
    request: &[u8],
    sigs: &[SignatureEntry],
    key: &ObjectKey,
) -> Result<VerifiedObject> {
    let response = HttpRequest::get(&config.url(&object_path(&config.bucket, key)))
        .header(REQUEST_HEADER, &b64(request))
        .header(SIGNATURE_HEADER, &encode_list(sigs))
        .send()
        .await
        .map_err(|e| network("fetching from the gatekeeper", e))?;
    check_response(config, request, &response).await?;
    let receipt = parse_b64(&header(&response, RECEIPT_HEADER)?, "the receipt")?;
    let receipt_signatures = parse_list(&header(&response, RECEIPT_SIGNATURE_HEADER)?)?;
    let manifest = parse_b64(&header(&response, MANIFEST_HEADER)?, "the manifest")?;
    let manifest_signatures = parse_list(&header(&response, MANIFEST_SIGNATURE_HEADER)?)?;

    let early = Manifest::verify(
        &manifest,
        &manifest_signatures,
        &config.gatekeeper,
        &config.uploader,
    )?;
    early.check_object(&config.bucket, key)?;
    let signed = early.body().map(|b| b.length).ok_or_else(|| {
        protocol_error(
            ErrorCode::ManifestMismatch,
            "the manifest describes no body",
        )
    })?;
    if let Some(announced) = content_length(&response)?
        && announced != signed
    {
        discard_body(&response).await;
        return Err(protocol_error(
            ErrorCode::BodyMismatch,
            format!(
                "the gatekeeper announces {announced} bytes, the manifest signs {signed}: nothing was read"
            ),
        ));
    }
    let bytes = read_body(&response, signed, || {
        protocol_error(
            ErrorCode::BodyMismatch,
            format!("more bytes arrived than the {signed} the manifest signs; reading stopped"),
        )
    })
    .await?;

    let download = verify_download(
        &Download {
            request,
            receipt: &receipt,
            receipt_signatures: &receipt_signatures,
            manifest: &manifest,
            manifest_signatures: &manifest_signatures,
        },
        Some(&digest(&bytes).await),
        &config.gatekeeper,
        &config.uploader,
    )?;
    Ok(VerifiedObject {
        key: key.to_string(),
        bytes,
        download,
    })
}

#[wasm_bindgen]
impl VerifiedObject {
    /// The object key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The verified bytes (a copy).
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> Uint8Array {
        Uint8Array::from(self.bytes.as_slice())
    }

    /// The bytes decoded as UTF-8 (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The content type the uploader's signature bound.
    #[wasm_bindgen(getter, js_name = contentType)]
    pub fn content_type(&self) -> String {
        self.download
            .manifest
            .content_type()
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// The vendor user who uploaded the object.
    #[wasm_bindgen(getter)]
    pub fn uploader(&self) -> String {
        self.download.manifest.uploader().to_string()
    }

    /// Unix seconds at which the gatekeeper stored the object.
    #[wasm_bindgen(getter, js_name = storedAt)]
    pub fn stored_at(&self) -> f64 {
        self.download.manifest.manifest().stored_at() as f64
    }

    /// SHA-256 of the bytes, lowercase hex.
    #[wasm_bindgen(getter)]
    pub fn sha256(&self) -> String {
        self.download
            .manifest
            .body()
            .map(|b| hex(&b.sha256))
            .unwrap_or_default()
    }

    /// Size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.bytes.len() as f64
    }

    /// The audit-log sequence number of this read.
    #[wasm_bindgen(getter, js_name = auditSeq)]
    pub fn audit_seq(&self) -> f64 {
        self.download.receipt.receipt().audit_seq as f64
    }
    /// The gatekeeper's verified receipt, for `client.proveLogged`.
    #[wasm_bindgen(getter)]
    pub fn receipt(&self) -> LogReceipt {
        LogReceipt {
            receipt: self.download.receipt.receipt().clone(),
        }
    }

    /// Key ids that signed: `{uploader: [...], gatekeeper: [...]}`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "{ uploader: string[]; gatekeeper: string[] }"
    )]
    pub fn signers(&self) -> JsValue {
        let ids = |a: &countersign_core::Approvals| -> Array {
            a.iter()
                .flat_map(|(_, ids)| ids.iter().map(|id| JsValue::from_str(id.as_str())))
                .collect()
        };
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(
            &out,
            &"uploader".into(),
            &ids(self.download.manifest.uploader_approvals()),
        );
        let _ = js_sys::Reflect::set(
            &out,
            &"gatekeeper".into(),
            &ids(self.download.manifest.gatekeeper_approvals()),
        );
        out.into()
    }

    /// A `blob:` URL of the verified bytes with their signed content type, for `<img>`
    /// or `<iframe>`; release it with `URL.revokeObjectURL`.
    #[wasm_bindgen(js_name = objectUrl)]
    pub fn object_url(&self) -> Result<String> {
        let parts = Array::of1(&Uint8Array::from(self.bytes.as_slice()));
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(&self.content_type());
        let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
            .map_err(|e| CountersignError::other("internal", describe(&e)))?;
        web_sys::Url::create_object_url_with_blob(&blob)
            .map_err(|e| CountersignError::other("internal", describe(&e)))
    }
}

#[wasm_bindgen]
impl PutResult {
    /// The object key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }
    /// SHA-256 of the uploaded bytes, lowercase hex.
    #[wasm_bindgen(getter)]
    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }
    /// Size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.size as f64
    }
    /// The audit-log sequence number of the upload.
    #[wasm_bindgen(getter, js_name = auditSeq)]
    pub fn audit_seq(&self) -> f64 {
        self.receipt.audit_seq as f64
    }
    /// The gatekeeper's verified receipt, for `client.proveLogged`.
    #[wasm_bindgen(getter)]
    pub fn receipt(&self) -> LogReceipt {
        LogReceipt {
            receipt: self.receipt.clone(),
        }
    }
}
