//! [`Client`]: PUT, GET, HEAD and LIST through a gatekeeper, for vendor backends and
//! tools (feature `client`). Each call signs a fresh request with the client's
//! [`Signer`], sends it with the core's header names and URL layout
//! ([`countersign_core::transport`]), and verifies what comes back before returning:
//! the gatekeeper's receipt, the object's manifest, the downloaded bytes, the signed
//! listing pages. A refusal is [`Error::Refused`] with the gatekeeper's stable error
//! code and whether its signed denial receipt verified.
//!
//! Downloads never hand out unverified bytes: [`Client::get_to_file`] streams into a
//! temporary file (mode `0600`, next to the destination) that is renamed into place
//! only after the bytes matched the signed manifest, and removed on any failure or
//! when the future is dropped; [`Client::get_bytes`] buffers up to a bound the caller
//! gives; [`Client::get_into`] spools into an unnamed temporary file and copies to the
//! caller's writer only after verification.
//!
//! ```no_run
//! # async fn example() -> countersign_vendor::Result<()> {
//! use countersign_vendor::client::{Client, Progress};
//! use countersign_vendor::countersign_core::{Bucket, ContentType, GatekeeperId, ObjectKey, Subject};
//! use countersign_vendor::{Signer, keys::load_public_keys};
//!
//! let client = Client::builder(
//!     "https://gk.acme.example",
//!     GatekeeperId::parse("gk.acme")?,
//!     Subject::parse("ops")?,
//!     Signer::from_key_files(["vendor-2026.key"])?,
//!     load_public_keys("gatekeeper.pub")?,
//! )
//! .build()?;
//! let bucket = Bucket::parse("patient-reports")?;
//! let key = ObjectKey::parse("org-1/report.pdf")?;
//! let stored = client
//!     .put_file(&bucket, &key, &ContentType::parse("application/pdf")?, "report.pdf".as_ref(), None)
//!     .await?;
//! println!("stored as audit entry {}", stored.audit_seq);
//! let object = client.get_to_file(&bucket, &key, "copy.pdf".as_ref(), false, None).await?;
//! assert_eq!(object.body, stored.body);
//! for listed in client.list(&bucket, "org-1/").await? {
//!     println!("{} {} bytes", listed.key, listed.size);
//! }
//! # Ok(()) }
//! ```

use crate::error::{DenialReceipt, Error, Result};
use crate::logged::SavedReceipt;
use crate::signer::Signer;
use crate::transport::{
    DownloadHeaders, MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER, RECEIPT_HEADER,
    RECEIPT_SIGNATURE_HEADER, REQUEST_HEADER, SIGNATURE_HEADER, list_path, object_path,
    request_headers, role_policy, verify_download_headers, verify_list_response, verify_manifest,
    verify_receipt,
};
use bytes::Bytes;
use countersign_core::Receipt;
use countersign_core::listing::MAX_LISTING_BYTES;
use countersign_core::text::{b64, parse_b64};
use countersign_core::{
    AuthorizedKey, BodyDigest, Bucket, ContentType, Decision, Error as CoreError, ErrorCode,
    GatekeeperId, ListPrefix, ListedObject, ObjectKey, Operation, Policy, Request, Role, Subject,
    VerifiedListing, VerifiedManifest,
};
use sha2::{Digest as _, Sha256};
use std::io::Seek as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// A progress callback: called with (bytes transferred so far, total bytes) after
/// every chunk of an upload or download. It runs on the task that moves the bytes:
/// keep it cheap (update a counter or a progress bar).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Chunk size of uploads read from a file or reader.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The largest LIST answer read: a signed page is at most [`MAX_LISTING_BYTES`];
/// its base64url and the unsigned convenience members make the JSON up to about
/// three times as large.
const MAX_LIST_ANSWER: usize = 3 * MAX_LISTING_BYTES + 64 * 1024;

/// The largest error answer read (the gatekeeper's are one short JSON object).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Builds a [`Client`]; see [`Client::builder`].
pub struct ClientBuilder {
    base_url: String,
    audience: GatekeeperId,
    subject: Subject,
    signer: Signer,
    gatekeeper_keys: Vec<AuthorizedKey>,
    uploader_keys: Option<Vec<AuthorizedKey>>,
    lifetime_secs: u64,
    connect_timeout: Duration,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Public keys of vendor keys whose uploads a download trusts (the object's
    /// manifest must carry a PUT signed under them) [default: the signer's keys].
    pub fn uploader_keys(mut self, keys: impl IntoIterator<Item = AuthorizedKey>) -> Self {
        self.uploader_keys = Some(keys.into_iter().collect());
        self
    }

    /// Lifetime of each signed request in seconds [default: 300]. The signer's
    /// [`SigningLimits::max_lifetime_secs`](crate::SigningLimits::max_lifetime_secs) is raised to it if lower.
    pub fn lifetime_secs(mut self, secs: u64) -> Self {
        self.lifetime_secs = secs;
        self
    }

    /// Connect timeout of the default HTTP client [default: 10 s].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Uses this `reqwest` client (its TLS roots, proxies and timeouts) instead of a
    /// default one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Checks the settings and builds the client. Fails with `invalid_field` if the
    /// URL is not `http://` or `https://`, the lifetime is 0, or no key of role
    /// `gatekeeper` (or of the signer's role among the uploader keys) is given; with
    /// `wrong_audience` if the signer's limits name another audience; with
    /// `unreachable` if no HTTP client can be made.
    pub fn build(self) -> Result<Client> {
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(CoreError::new(
                ErrorCode::InvalidField,
                format!("the gatekeeper URL `{base_url}` must start with http:// or https://"),
            )
            .into());
        }
        if self.lifetime_secs == 0 {
            return Err(CoreError::new(
                ErrorCode::InvalidField,
                "the request lifetime must be at least one second",
            )
            .into());
        }
        let mut limits = self.signer.limits().clone();
        limits.max_lifetime_secs = limits.max_lifetime_secs.max(self.lifetime_secs);
        match &limits.audience {
            None => limits.audience = Some(self.audience.clone()),
            Some(only) if only != &self.audience => {
                return Err(CoreError::new(
                    ErrorCode::WrongAudience,
                    format!(
                        "the signer signs only for `{only}`, not for the client's gatekeeper `{}`",
                        self.audience
                    ),
                )
                .into());
            }
            Some(_) => {}
        }
        let signer = self.signer.with_limits(limits)?;
        let gatekeeper = role_policy(self.gatekeeper_keys, &Role::gatekeeper(), 1)?;
        let uploader_keys = self
            .uploader_keys
            .unwrap_or_else(|| signer.authorized_keys());
        let uploader = role_policy(uploader_keys, signer.role(), 1)?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(|e| Error::unreachable(&e))?,
        };
        Ok(Client {
            http,
            base_url,
            audience: self.audience,
            subject: self.subject,
            signer,
            gatekeeper,
            uploader,
            lifetime_secs: self.lifetime_secs,
        })
    }
}

/// A client of one gatekeeper, acting as one subject with the vendor's keys. Cheap to
/// share (`Arc` it); every call signs its own request with a fresh nonce.
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    audience: GatekeeperId,
    subject: Subject,
    signer: Signer,
    gatekeeper: Policy,
    uploader: Policy,
    lifetime_secs: u64,
}

/// What a verified PUT, GET or HEAD says about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The bucket.
    pub bucket: Bucket,
    /// The object key.
    pub key: ObjectKey,
    /// SHA-256 and length of the object's bytes, as signed in its manifest.
    pub body: BodyDigest,
    /// The media type signed at PUT.
    pub content_type: ContentType,
    /// The subject (vendor user id) the object was uploaded for.
    pub uploader: Subject,
    /// Unix seconds the gatekeeper stored the object.
    pub stored_at: u64,
    /// The audit entry of this request (from its receipt).
    pub audit_seq: u64,
    /// The verified receipt as received, with the request: save it (JSON) to prove
    /// later that the request was logged ([`crate::logged::prove_logged`]).
    pub receipt: SavedReceipt,
}

impl ObjectInfo {
    fn new(manifest: &VerifiedManifest, audit_seq: u64, receipt: SavedReceipt) -> Result<Self> {
        let missing = || {
            Error::from(CoreError::new(
                ErrorCode::ManifestMismatch,
                "the manifest does not describe a stored object",
            ))
        };
        Ok(Self {
            bucket: manifest.bucket().clone(),
            key: manifest.key().ok_or_else(missing)?.clone(),
            body: *manifest.body().ok_or_else(missing)?,
            content_type: manifest.content_type().ok_or_else(missing)?.clone(),
            uploader: manifest.uploader().clone(),
            stored_at: manifest.manifest().stored_at(),
            audit_seq,
            receipt,
        })
    }
}

/// A signed request ready to send.
struct Signed {
    canonical: Vec<u8>,
    request_header: String,
    signature_header: String,
}

impl Client {
    /// A builder for a client of the gatekeeper at `base_url` (`https://…`) whose id
    /// is `audience`, signing as `subject` with `signer`; receipts, manifests and
    /// listings must verify under `gatekeeper_keys` (keys of role `gatekeeper`; others
    /// are ignored).
    pub fn builder(
        base_url: impl Into<String>,
        audience: GatekeeperId,
        subject: Subject,
        signer: Signer,
        gatekeeper_keys: impl IntoIterator<Item = AuthorizedKey>,
    ) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            audience,
            subject,
            signer,
            gatekeeper_keys: gatekeeper_keys.into_iter().collect(),
            uploader_keys: None,
            lifetime_secs: 300,
            connect_timeout: Duration::from_secs(10),
            http: None,
        }
    }

    /// The gatekeeper's base URL (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The gatekeeper id requests are addressed to.
    pub fn audience(&self) -> &GatekeeperId {
        &self.audience
    }

    fn sign(&self, bucket: &Bucket, operation: Operation) -> Result<Signed> {
        let now = crate::unix_now();
        let request = Request::new(
            self.audience.clone(),
            bucket.clone(),
            operation,
            self.subject.clone(),
            now,
            self.lifetime_secs,
            &mut rand_core::OsRng,
        )?;
        let signature = self.signer.sign_request(&request, now)?;
        let canonical = request.encode();
        let (request_header, signature_header) =
            request_headers(&canonical, std::slice::from_ref(&signature));
        Ok(Signed {
            canonical,
            request_header,
            signature_header,
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        signed: &Signed,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header(REQUEST_HEADER, &signed.request_header)
            .header(SIGNATURE_HEADER, &signed.signature_header)
    }

    /// Sends a request; a non-success answer becomes [`Error::Refused`], with the code
    /// of its JSON error body, or without one (HEAD) the code its receipt records;
    /// `bad_response` if it has neither.
    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        signed: &Signed,
    ) -> Result<reqwest::Response> {
        let response = builder.send().await.map_err(|e| Error::unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refusal(response, &signed.canonical).await)
        }
    }

    /// Turns a gatekeeper error answer into [`Error::Refused`] with its code, saying
    /// whether the signed denial receipt verified.
    async fn refusal(&self, response: reqwest::Response, canonical: &[u8]) -> Error {
        let status = response.status().as_u16();
        let receipt = match (
            header(&response, RECEIPT_HEADER),
            header(&response, RECEIPT_SIGNATURE_HEADER),
        ) {
            (Some(r), Some(s)) => {
                match verify_receipt(r, s, &self.audience, &self.gatekeeper, canonical) {
                    Ok(v) => match v.decision() {
                        Decision::Deny(code) => DenialReceipt::Verified(code),
                        Decision::Allow => DenialReceipt::SaysAllow,
                    },
                    Err(Error::Protocol(e)) => DenialReceipt::Invalid(e.code()),
                    // `verify_receipt` fails with protocol errors only.
                    Err(_) => DenialReceipt::Invalid(ErrorCode::Malformed),
                }
            }
            _ => DenialReceipt::Missing,
        };
        let header_receipt = header(&response, RECEIPT_HEADER).map(str::to_owned);
        let body = match read_bounded(response, MAX_ERROR_BODY).await {
            Ok(body) => body,
            Err(e) => return e,
        };
        match parse_error_body(&body) {
            Some((code, message)) => Error::Refused {
                status,
                code,
                message,
                receipt,
            },
            // A HEAD answer has no body: the receipt carries the code (as trustworthy
            // as a JSON body when it does not verify, which `receipt` says).
            None => match denied_code(header_receipt.as_deref()) {
                Some(code) => Error::Refused {
                    status,
                    code,
                    message: "the answer has no body; the code is its receipt's".to_owned(),
                    receipt,
                },
                None => Error::BadResponse {
                    message: format!(
                        "the gatekeeper answered {status} without a JSON error or a receipt of the protocol"
                    ),
                },
            },
        }
    }

    /// A verified receipt `(receipt, signature)` of `canonical`, as it is saved.
    fn saved_receipt(&self, canonical: &[u8], (receipt, signature): (&str, &str)) -> SavedReceipt {
        SavedReceipt {
            gatekeeper: self.audience.to_string(),
            request: b64(canonical),
            receipt: receipt.trim().to_owned(),
            receipt_signature: signature.trim().to_owned(),
        }
    }

    /// Verifies the receipt (it must allow the request) and the manifest of a success
    /// answer for `bucket`/`key`.
    fn verify_answer(
        &self,
        response: &reqwest::Response,
        canonical: &[u8],
        bucket: &Bucket,
        key: &ObjectKey,
    ) -> Result<ObjectInfo> {
        let receipt = verify_receipt(
            required_header(response, RECEIPT_HEADER)?,
            required_header(response, RECEIPT_SIGNATURE_HEADER)?,
            &self.audience,
            &self.gatekeeper,
            canonical,
        )?;
        if receipt.decision() != Decision::Allow {
            return Err(CoreError::new(
                ErrorCode::ReceiptMismatch,
                "the gatekeeper answered with success but its receipt records a denial",
            )
            .into());
        }
        let manifest = verify_manifest(
            required_header(response, MANIFEST_HEADER)?,
            required_header(response, MANIFEST_SIGNATURE_HEADER)?,
            &self.gatekeeper,
            &self.uploader,
        )?;
        manifest.check_object(bucket, key)?;
        let saved = self.saved_receipt(canonical, response_receipt(response)?);
        ObjectInfo::new(&manifest, receipt.receipt().audit_seq, saved)
    }

    /// Uploads the file at `path`: reads it once to sign its SHA-256 and length, then
    /// streams it (with bounded memory). See [`Client::put_reader`].
    pub async fn put_file(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        content_type: &ContentType,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<ObjectInfo> {
        let body = hash_file(path).await?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        self.put_reader(bucket, key, content_type, body, file, progress)
            .await
    }

    /// Uploads `bytes` from memory.
    pub async fn put_bytes(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        content_type: &ContentType,
        bytes: impl Into<Bytes>,
    ) -> Result<ObjectInfo> {
        let bytes: Bytes = bytes.into();
        let body = BodyDigest {
            sha256: Sha256::digest(&bytes).into(),
            length: bytes.len() as u64,
        };
        let signed = self.sign(
            bucket,
            Operation::Put {
                key: key.clone(),
                content_type: content_type.clone(),
                body,
            },
        )?;
        self.finish_put(
            bucket,
            key,
            content_type,
            &signed,
            body,
            reqwest::Body::from(bytes),
        )
        .await
    }

    /// Uploads the bytes `reader` yields, which must be exactly `body` (SHA-256 and
    /// length; the signed request binds them, so they are known before the upload).
    /// The gatekeeper checks them and refuses a mismatch with `body_mismatch`; on
    /// success its receipt must allow the request and the returned manifest must name
    /// this object, body and type. `progress` sees every chunk sent.
    ///
    /// If the gatekeeper answers before reading the whole body (a refusal such as
    /// `already_exists`), the HTTP stack returns that answer when it arrived before
    /// the connection failed; a reset connection that lost the answer is
    /// `unreachable`.
    pub async fn put_reader<R>(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        content_type: &ContentType,
        body: BodyDigest,
        reader: R,
        progress: Option<Progress>,
    ) -> Result<ObjectInfo>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let signed = self.sign(
            bucket,
            Operation::Put {
                key: key.clone(),
                content_type: content_type.clone(),
                body,
            },
        )?;
        let total = body.length;
        // A read error ends the upload; it is kept to be reported as what it is (`io`),
        // not as the failed request it causes.
        let read_error = Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
        let failed = Arc::clone(&read_error);
        let chunks = futures::stream::unfold((reader, 0u64), move |(mut reader, sent)| {
            let progress = progress.clone();
            let failed = Arc::clone(&failed);
            async move {
                let mut buf = vec![0u8; UPLOAD_CHUNK];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let sent = sent + n as u64;
                        if let Some(p) = &progress {
                            p(sent, total);
                        }
                        Some((Ok(Bytes::from(buf)), (reader, sent)))
                    }
                    Err(e) => {
                        let reported = std::io::Error::new(e.kind(), e.to_string());
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(e);
                        }
                        Some((Err(reported), (reader, sent)))
                    }
                }
            }
        });
        let sent = self
            .finish_put(
                bucket,
                key,
                content_type,
                &signed,
                body,
                reqwest::Body::wrap_stream(chunks),
            )
            .await;
        match (sent, read_error.lock().ok().and_then(|mut e| e.take())) {
            (Err(Error::Unreachable { .. }), Some(e)) => Err(Error::io("the upload's source", e)),
            (result, _) => result,
        }
    }

    async fn finish_put(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        content_type: &ContentType,
        signed: &Signed,
        body: BodyDigest,
        stream: reqwest::Body,
    ) -> Result<ObjectInfo> {
        let builder = self
            .request(reqwest::Method::PUT, &object_path(bucket, key), signed)
            .header(reqwest::header::CONTENT_LENGTH, body.length)
            .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
            .body(stream);
        let response = self.send(builder, signed).await?;
        let info = self.verify_answer(&response, &signed.canonical, bucket, key)?;
        if info.body != body || &info.content_type != content_type {
            return Err(CoreError::new(
                ErrorCode::ManifestMismatch,
                "the stored object's manifest does not name the body and type that were sent",
            )
            .into());
        }
        Ok(info)
    }

    /// The verified manifest of an object, without its bytes (a signed HEAD).
    pub async fn head(&self, bucket: &Bucket, key: &ObjectKey) -> Result<ObjectInfo> {
        let signed = self.sign(bucket, Operation::Head { key: key.clone() })?;
        let builder = self.request(reqwest::Method::HEAD, &object_path(bucket, key), &signed);
        let response = self.send(builder, &signed).await?;
        let headers = download_headers(&response)?;
        let verified = verify_download_headers(
            &signed.canonical,
            &headers,
            None,
            &self.gatekeeper,
            &self.uploader,
        )?;
        verified.manifest.check_object(bucket, key)?;
        let saved = self.saved_receipt(
            &signed.canonical,
            (headers.receipt, headers.receipt_signature),
        );
        ObjectInfo::new(
            &verified.manifest,
            verified.receipt.receipt().audit_seq,
            saved,
        )
    }

    /// Downloads an object and verifies it, streaming its bytes into `spool` (which
    /// the caller keeps private until this returns `Ok`).
    async fn download(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        max_len: Option<u64>,
        spool: &mut (dyn std::io::Write + Send),
        progress: Option<&Progress>,
    ) -> Result<ObjectInfo> {
        let signed = self.sign(
            bucket,
            Operation::Get {
                key: key.clone(),
                range: None,
            },
        )?;
        let builder = self.request(reqwest::Method::GET, &object_path(bucket, key), &signed);
        let mut response = self.send(builder, &signed).await?;
        // Checked before any byte is read so a bad answer is refused early; the
        // authoritative check is `verify_download_headers` once the bytes are in.
        let expected = self
            .verify_answer(&response, &signed.canonical, bucket, key)?
            .body;
        if let Some(max) = max_len.filter(|&max| expected.length > max) {
            return Err(CoreError::new(
                ErrorCode::TooLarge,
                format!(
                    "the object has {} bytes, more than the {max} this call accepts",
                    expected.length
                ),
            )
            .into());
        }
        let headers = download_headers(&response)?;
        let headers = OwnedHeaders::from(&headers);
        let mut hasher = Sha256::new();
        let mut length = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| Error::unreachable(&e))? {
            length += chunk.len() as u64;
            if length > expected.length {
                return Err(CoreError::new(
                    ErrorCode::BodyMismatch,
                    format!(
                        "the body is longer than the signed {} bytes",
                        expected.length
                    ),
                )
                .into());
            }
            hasher.update(&chunk);
            spool
                .write_all(&chunk)
                .map_err(|e| Error::io("the download's temporary file", e))?;
            if let Some(p) = progress {
                p(length, expected.length);
            }
        }
        let got = BodyDigest {
            sha256: hasher.finalize().into(),
            length,
        };
        let headers = headers.borrow();
        let verified = verify_download_headers(
            &signed.canonical,
            &headers,
            Some(&got),
            &self.gatekeeper,
            &self.uploader,
        )?;
        let saved = self.saved_receipt(
            &signed.canonical,
            (headers.receipt, headers.receipt_signature),
        );
        ObjectInfo::new(
            &verified.manifest,
            verified.receipt.receipt().audit_seq,
            saved,
        )
    }

    /// Downloads an object into memory, refusing (`too_large`, before reading the
    /// body) an object whose signed length is above `max_len`. The bytes are returned
    /// only after the receipt, the manifest and the bytes themselves verified.
    pub async fn get_bytes(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        max_len: u64,
    ) -> Result<(Vec<u8>, ObjectInfo)> {
        let mut buffer = Vec::new();
        let info = self
            .download(bucket, key, Some(max_len), &mut buffer, None)
            .await?;
        Ok((buffer, info))
    }

    /// Downloads an object into the file `out`. The bytes go to a temporary file in
    /// the same directory, created with mode `0600` (a download holds patient data),
    /// flushed to disk and renamed to `out` only after they verified; without
    /// `replace` an existing `out` is never replaced (`io`, checked again at the
    /// rename). On any error, and if this future is dropped, the temporary file is
    /// removed. An `out` that exists and is neither a regular file nor a directory (a
    /// device such as `/dev/null`, a FIFO, a socket, also through a symbolic link) is
    /// never renamed over: the verified bytes are written into it, as
    /// [`Self::get_into`] writes them, with or without `replace`.
    pub async fn get_to_file(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        out: &Path,
        replace: bool,
        progress: Option<Progress>,
    ) -> Result<ObjectInfo> {
        if std::fs::metadata(out).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let mut sink = std::fs::OpenOptions::new()
                .write(true)
                .open(out)
                .map_err(|e| Error::io(out, e))?;
            return self.get_into(bucket, key, &mut sink, progress).await;
        }
        if !replace && out.exists() {
            return Err(Error::io(out, exists_error()));
        }
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".countersign-")
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let info = self
            .download(bucket, key, None, temp.as_file_mut(), progress.as_ref())
            .await?;
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io(temp.path(), e))?;
        let persisted = if replace {
            temp.persist(out).map(drop)
        } else {
            temp.persist_noclobber(out).map(drop)
        };
        persisted.map_err(|e| {
            let error = if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                exists_error()
            } else {
                e.error
            };
            Error::io(out, error)
        })?;
        Ok(info)
    }

    /// Downloads an object and, once verified, copies it to `sink` (stdout, a socket):
    /// the bytes are spooled through an unnamed temporary file first, so `sink` never
    /// sees a byte that did not verify.
    pub async fn get_into(
        &self,
        bucket: &Bucket,
        key: &ObjectKey,
        sink: &mut (dyn std::io::Write + Send),
        progress: Option<Progress>,
    ) -> Result<ObjectInfo> {
        let mut spool = tempfile::tempfile().map_err(|e| Error::io("a temporary file", e))?;
        let info = self
            .download(bucket, key, None, &mut spool, progress.as_ref())
            .await?;
        spool
            .rewind()
            .and_then(|()| std::io::copy(&mut spool, sink))
            .and_then(|_| sink.flush())
            .map_err(|e| Error::io("the output", e))?;
        Ok(info)
    }

    /// One verified page of a listing: the objects under `prefix` after `after`, at
    /// most `limit` (the gatekeeper's default if `None`). Continue with the page's
    /// [`Listing::next_after`](countersign_core::Listing::next_after) while it has one.
    pub async fn list_page(
        &self,
        bucket: &Bucket,
        prefix: &str,
        after: Option<&ObjectKey>,
        limit: Option<u32>,
    ) -> Result<VerifiedListing> {
        let prefix = ListPrefix::parse(prefix)?;
        let signed = self.sign(
            bucket,
            Operation::List {
                prefix: prefix.clone(),
            },
        )?;
        let path = list_path(bucket, prefix.as_str(), after.map(ObjectKey::as_str), limit);
        let builder = self.request(reqwest::Method::GET, &path, &signed);
        let response = self.send(builder, &signed).await?;
        let body = read_bounded(response, MAX_LIST_ANSWER).await?;
        verify_list_response(&body, &self.gatekeeper, &signed.canonical, after)
    }

    /// Every object under `prefix`, page after verified page, in key order.
    pub async fn list(&self, bucket: &Bucket, prefix: &str) -> Result<Vec<ListedObject>> {
        let mut objects = Vec::new();
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = self.list_page(bucket, prefix, after.as_ref(), None).await?;
            objects.extend_from_slice(page.listing().objects());
            match page.listing().next_after() {
                Some(next) => after = Some(next.clone()),
                None => return Ok(objects),
            }
        }
    }
}

/// SHA-256 and length of a file, read in chunks.
pub async fn hash_file(path: &Path) -> Result<BodyDigest> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(|e| Error::io(path, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        length += n as u64;
    }
    Ok(BodyDigest {
        sha256: hasher.finalize().into(),
        length,
    })
}

/// The code and message of the gatekeeper's JSON error body
/// (`{"error":{"code":"…","message":"…"}}`, see
/// [`countersign_core::transport::error_body`]); `None` if the body is not one or
/// its code is not a protocol code.
pub fn parse_error_body(body: &[u8]) -> Option<(ErrorCode, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        code: String,
        message: String,
    }
    let parsed: Body = serde_json::from_slice(body).ok()?;
    Some((
        ErrorCode::from_str_code(&parsed.error.code)?,
        parsed.error.message,
    ))
}

/// The denial code a receipt header records, read without verifying it.
fn denied_code(receipt_header: Option<&str>) -> Option<ErrorCode> {
    let bytes = parse_b64(receipt_header?.trim(), "the receipt header").ok()?;
    Receipt::parse(&bytes).ok()?.decision.error()
}

async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::unreachable(&e))? {
        if body.len() + chunk.len() > max {
            return Err(Error::BadResponse {
                message: format!("the gatekeeper's answer is longer than {max} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn required_header<'a>(response: &'a reqwest::Response, name: &str) -> Result<&'a str> {
    header(response, name).ok_or_else(|| {
        CoreError::new(
            ErrorCode::Malformed,
            format!("the gatekeeper's answer has no {name} header"),
        )
        .into()
    })
}

/// The receipt header values `(receipt, signature)` of an answer.
fn response_receipt(response: &reqwest::Response) -> Result<(&str, &str)> {
    Ok((
        required_header(response, RECEIPT_HEADER)?,
        required_header(response, RECEIPT_SIGNATURE_HEADER)?,
    ))
}

fn download_headers(response: &reqwest::Response) -> Result<DownloadHeaders<'_>> {
    Ok(DownloadHeaders {
        receipt: required_header(response, RECEIPT_HEADER)?,
        receipt_signature: required_header(response, RECEIPT_SIGNATURE_HEADER)?,
        manifest: required_header(response, MANIFEST_HEADER)?,
        manifest_signature: required_header(response, MANIFEST_SIGNATURE_HEADER)?,
    })
}

/// The four download headers, kept while the body (which borrows the response
/// mutably) is read.
struct OwnedHeaders([String; 4]);

impl From<&DownloadHeaders<'_>> for OwnedHeaders {
    fn from(h: &DownloadHeaders<'_>) -> Self {
        Self([
            h.receipt.to_owned(),
            h.receipt_signature.to_owned(),
            h.manifest.to_owned(),
            h.manifest_signature.to_owned(),
        ])
    }
}

impl OwnedHeaders {
    fn borrow(&self) -> DownloadHeaders<'_> {
        let [receipt, receipt_signature, manifest, manifest_signature] = &self.0;
        DownloadHeaders {
            receipt,
            receipt_signature,
            manifest,
            manifest_signature,
        }
    }
}

fn exists_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() -> Result<()> {
        use crate::{SigningLimits, VendorKey};
        use countersign_core::KeyId;
        let vendor = || -> Result<Signer> {
            let key = VendorKey::generate(
                KeyId::parse("v1")?,
                Role::vendor(),
                None,
                None,
                &mut rand_core::OsRng,
            )?;
            Signer::new([key])
        };
        let gk_key = VendorKey::generate(
            KeyId::parse("g1")?,
            Role::gatekeeper(),
            None,
            None,
            &mut rand_core::OsRng,
        )?;
        let gk = || [gk_key.authorized_key()];
        let builder =
            |url: &str, signer: Signer, keys: Vec<AuthorizedKey>| -> Result<ClientBuilder> {
                Ok(Client::builder(
                    url,
                    GatekeeperId::parse("gk.acme")?,
                    Subject::parse("ops")?,
                    signer,
                    keys,
                ))
            };
        let code = |r: Result<Client>| r.err().map(|e| e.code());
        assert_eq!(
            code(builder("ftp://gk", vendor()?, gk().to_vec())?.build()),
            Some("invalid_field")
        );
        assert_eq!(
            code(
                builder("http://gk", vendor()?, gk().to_vec())?
                    .lifetime_secs(0)
                    .build()
            ),
            Some("invalid_field")
        );
        assert_eq!(
            code(builder("http://gk", vendor()?, Vec::new())?.build()),
            Some("invalid_field")
        );
        // A vendor key is not a gatekeeper key.
        let not_gk = vendor()?.authorized_keys();
        assert_eq!(
            code(builder("http://gk", vendor()?, not_gk)?.build()),
            Some("invalid_field")
        );
        assert_eq!(
            code(
                builder("http://gk", vendor()?, gk().to_vec())?
                    .uploader_keys([])
                    .build()
            ),
            Some("invalid_field")
        );
        let elsewhere = vendor()?.with_limits(SigningLimits {
            audience: Some(GatekeeperId::parse("gk.other")?),
            ..SigningLimits::default()
        })?;
        assert_eq!(
            code(builder("http://gk", elsewhere, gk().to_vec())?.build()),
            Some("wrong_audience")
        );
        let client = builder("http://gk/", vendor()?, gk().to_vec())?
            .lifetime_secs(900)
            .build()?;
        assert_eq!(
            (client.base_url(), client.audience().as_str()),
            ("http://gk", "gk.acme")
        );
        Ok(())
    }

    #[test]
    fn error_bodies() {
        let body = countersign_core::transport::error_body(ErrorCode::AlreadyExists, "taken \"x\"");
        assert_eq!(
            parse_error_body(body.as_bytes()),
            Some((ErrorCode::AlreadyExists, "taken \"x\"".to_owned()))
        );
        assert_eq!(
            parse_error_body(b"{\"error\":{\"code\":\"no_such_code\",\"message\":\"m\"}}"),
            None
        );
        assert_eq!(parse_error_body(b"<html>"), None);
        assert_eq!(
            parse_error_body(b"{\"error\":{\"code\":\"malformed\"}}"),
            None
        );
    }
}
