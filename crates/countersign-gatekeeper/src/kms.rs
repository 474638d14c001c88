//! A key-encryption key held by a key management service that speaks the AWS KMS
//! API (AWS KMS itself, or a compatible service): the data key of a new object comes
//! from `GenerateDataKey`, a stored one is unwrapped by `Decrypt`, and `keys rewrap`
//! wraps an existing data key with `Encrypt`. The KEK never leaves the KMS.
//!
//! Each call is one `POST /` in the AWS JSON 1.1 protocol (`X-Amz-Target:
//! TrentService.<Action>`), signed with Signature Version 4 for the service `kms`.
//! The signer is the one `crate::s3_uploads` already uses (checked in its tests
//! against `object_store`'s own signer), over the `reqwest` client the crate already
//! has: the AWS SDK for Rust (`aws-sdk-kms` with `aws-config`) would add about a
//! hundred crates (the smithy runtime, its own HTTP stack and credential chain) to
//! the gatekeeper's build for three JSON calls, and even `aws-sigv4` alone brings the
//! smithy runtime and type crates for what is sixty lines here.
//!
//! Every data key is bound to its object by the KMS encryption context
//! (`countersign:bucket`, `countersign:object` (the storage name) and
//! `countersign:kek`), so a wrapped key moved to another object does not decrypt.

use crate::config::Secret;
use sha2::{Digest as _, Sha256};
use std::time::Duration;

/// Where a KMS key lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsConfig {
    /// The key's id, ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    /// The region, e.g. `eu-central-1`.
    pub region: String,
    /// The endpoint URL, by default `https://kms.<region>.amazonaws.com`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials (AWS STS), sent as
    /// `X-Amz-Security-Token` and signed; `None` for long-term access keys.
    pub session_token: Option<Secret>,
}

/// Why a KMS call failed. The message names the key, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// No answer: connection refused, timed out, or the service is down (5xx).
    #[error("KMS key `{key}` at {endpoint}: cannot be reached: {detail}")]
    Unreachable {
        /// The configured key.
        key: String,
        /// The endpoint.
        endpoint: String,
        /// What happened.
        detail: String,
    },
    /// The KMS answered with an error (`NotFoundException`, `DisabledException`,
    /// `InvalidCiphertextException`, `AccessDeniedException`, …).
    #[error("KMS key `{key}`: {action} refused: {kind}: {message}")]
    Refused {
        /// The configured key.
        key: String,
        /// The action.
        action: &'static str,
        /// The error type the KMS gave.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The answer was not what the API specifies.
    #[error("KMS key `{key}`: {action} answered something unreadable: {detail}")]
    Malformed {
        /// The configured key.
        key: String,
        /// The action.
        action: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// A client for one KMS key.
#[derive(Clone)]
pub struct Kms {
    config: KmsConfig,
    http: reqwest::Client,
    host: String,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("key_id", &self.config.key_id)
            .field("endpoint", &self.config.endpoint)
            .finish_non_exhaustive()
    }
}

/// An encryption context: names and values the KMS binds to a ciphertext.
pub type Context<'a> = [(&'a str, &'a str)];

impl Kms {
    /// A client whose every call gives up after `deadline`.
    pub fn new(config: KmsConfig, deadline: Duration) -> Result<Self, String> {
        let (host, http) =
            crate::s3_uploads::service_client(&config.endpoint, "endpoint", "KMS", deadline)?;
        Ok(Self { config, http, host })
    }

    /// The configured key id.
    pub fn key_id(&self) -> &str {
        &self.config.key_id
    }

    /// A fresh 32-byte data key: its plaintext and the KMS's ciphertext of it.
    pub async fn generate_data_key(
        &self,
        context: &Context<'_>,
    ) -> Result<([u8; 32], Vec<u8>), KmsError> {
        const ACTION: &str = "GenerateDataKey";
        let answer = self
            .call(
                ACTION,
                serde_json::json!({
                    "KeyId": self.config.key_id,
                    "KeySpec": "AES_256",
                    "EncryptionContext": context_json(context),
                }),
            )
            .await?;
        let plain = self.blob(&answer, ACTION, "Plaintext")?;
        let plain = self.key_bytes(plain, ACTION)?;
        Ok((plain, self.blob(&answer, ACTION, "CiphertextBlob")?))
    }

    /// The KMS's ciphertext of `plaintext` (a data key wrapped anew).
    pub async fn encrypt(
        &self,
        plaintext: &[u8; 32],
        context: &Context<'_>,
    ) -> Result<Vec<u8>, KmsError> {
        const ACTION: &str = "Encrypt";
        let answer = self
            .call(
                ACTION,
                serde_json::json!({
                    "KeyId": self.config.key_id,
                    "Plaintext": base64_std(plaintext),
                    "EncryptionContext": context_json(context),
                }),
            )
            .await?;
        self.blob(&answer, ACTION, "CiphertextBlob")
    }

    /// The data key in `ciphertext`, which must have been made by this key with this
    /// context (AWS KMS refuses another key's ciphertext when `KeyId` is given).
    pub async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &Context<'_>,
    ) -> Result<[u8; 32], KmsError> {
        const ACTION: &str = "Decrypt";
        let answer = self
            .call(
                ACTION,
                serde_json::json!({
                    "KeyId": self.config.key_id,
                    "CiphertextBlob": base64_std(ciphertext),
                    "EncryptionContext": context_json(context),
                }),
            )
            .await?;
        let plain = self.blob(&answer, ACTION, "Plaintext")?;
        self.key_bytes(plain, ACTION)
    }

    /// Checks that the key exists, is enabled and both generates and decrypts data
    /// keys (with a context of its own, so the check's key unwraps nothing stored).
    pub async fn check(&self) -> Result<(), KmsError> {
        let context = [("countersign:check", "readiness")];
        let (plain, blob) = self.generate_data_key(&context).await?;
        let back = self.decrypt(&blob, &context).await?;
        if back != plain {
            return Err(KmsError::Malformed {
                key: self.config.key_id.clone(),
                action: "Decrypt",
                detail: "it returned another data key than the one generated".into(),
            });
        }
        Ok(())
    }

    fn malformed(&self, action: &'static str, detail: impl Into<String>) -> KmsError {
        KmsError::Malformed {
            key: self.config.key_id.clone(),
            action,
            detail: detail.into(),
        }
    }

    fn blob(
        &self,
        answer: &serde_json::Value,
        action: &'static str,
        field: &str,
    ) -> Result<Vec<u8>, KmsError> {
        answer
            .get(field)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(s).ok()
            })
            .ok_or_else(|| self.malformed(action, format!("no base64 `{field}`")))
    }

    fn key_bytes(&self, mut plain: Vec<u8>, action: &'static str) -> Result<[u8; 32], KmsError> {
        let out = <[u8; 32]>::try_from(plain.as_slice())
            .map_err(|_| self.malformed(action, format!("a {}-byte data key", plain.len())));
        zeroize::Zeroize::zeroize(&mut plain);
        out
    }

    /// One signed AWS JSON 1.1 call.
    async fn call(
        &self,
        action: &'static str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        let body = body.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let date = crate::s3_uploads::amz_date(now);
        let target = format!("TrentService.{action}");
        const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
        let c = &self.config;
        let token = c.session_token.as_ref().map(Secret::expose);
        // The canonical headers, sorted by name, each one of them signed.
        let mut headers = vec![
            ("content-type", CONTENT_TYPE),
            ("host", self.host.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        headers.extend(token.map(|t| ("x-amz-security-token", t)));
        headers.push(("x-amz-target", target.as_str()));
        let signed = headers
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let body_hash = countersign_core::text::hex(&<[u8; 32]>::from(Sha256::digest(&body)));
        let canonical = format!("POST\n/\n\n{canonical_headers}\n{signed}\n{body_hash}");
        let signature = crate::s3_uploads::service_signature(
            c.secret_access_key.expose(),
            &c.region,
            "kms",
            &date,
            &canonical,
        );
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/kms/aws4_request, SignedHeaders={signed}, Signature={signature}",
            c.access_key_id,
            date.get(..8).unwrap_or(""),
            c.region
        );
        let unreachable = |detail: String| KmsError::Unreachable {
            key: c.key_id.clone(),
            endpoint: c.endpoint.clone(),
            detail,
        };
        let request = self
            .http
            .post(&c.endpoint)
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-date", &date)
            .header("x-amz-target", &target)
            .header("authorization", authorization);
        let request = match token {
            Some(t) => request.header("x-amz-security-token", t),
            None => request,
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(format!("{action}: {e}")))?;
        let status = response.status();
        let text = response
            .bytes()
            .await
            .map_err(|e| unreachable(format!("{action}: {e}")))?;
        if status.is_server_error() {
            return Err(unreachable(format!("{action} answered {status}")));
        }
        let answer: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|_| self.malformed(action, format!("HTTP {status} without a JSON body")))?;
        if !status.is_success() {
            let field = |name: &str| {
                answer
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            // `__type` may carry a namespace: `com.amazonaws.kms#NotFoundException`.
            let kind = field("__type").unwrap_or_else(|| status.to_string());
            let kind = kind.rsplit('#').next().unwrap_or_default().to_owned();
            let message = field("message")
                .or_else(|| field("Message"))
                .unwrap_or_default();
            return Err(KmsError::Refused {
                key: c.key_id.clone(),
                action,
                kind,
                message,
            });
        }
        Ok(answer)
    }
}

fn context_json(context: &Context<'_>) -> serde_json::Value {
    serde_json::Value::Object(
        context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect(),
    )
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
