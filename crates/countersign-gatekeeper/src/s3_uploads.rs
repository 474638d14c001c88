//! Listing a bucket's unfinished S3 multipart uploads, for recovery.
//!
//! A multipart upload's id is known only once S3 has created it, so a crash (or a
//! retried CreateMultipartUpload whose first answer was lost) can leave an upload
//! whose id the index never recorded. `object_store` cannot list multipart uploads,
//! so this module sends the one request it needs — `GET /{bucket}?uploads&prefix=…`
//! (ListMultipartUploads) — signed with AWS Signature Version 4 (header form).
//! Aborting goes through `object_store` again, by id. The signing is checked in the
//! tests against `object_store`'s own SigV4 signer.

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

/// SHA-256 of the empty body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The S3 endpoint and credentials of one bucket.
#[derive(Clone)]
pub struct S3Access {
    /// Endpoint URL (path-style requests), e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// The bucket's name in S3.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Access")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An unfinished multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The object key it would create.
    pub key: String,
    /// Its id.
    pub upload_id: String,
}

/// `YYYYMMDDTHHMMSSZ` of Unix seconds `t` (UTC).
pub fn amz_date(t: u64) -> String {
    let days = i64::try_from(t / 86_400).unwrap_or(0);
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// URI-encodes as SigV4 wants: unreserved characters as they are, everything else
/// `%XX` (uppercase); `/` too unless `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The SigV4 signature of a canonical request, at `amz_date`, for `s3` in `region`.
pub fn signature(secret: &str, region: &str, amz_date: &str, canonical_request: &str) -> String {
    service_signature(secret, region, "s3", amz_date, canonical_request)
}

/// The SigV4 signature of a canonical request, at `amz_date`, for `service` (`s3`,
/// `kms`) in `region`.
pub fn service_signature(
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    canonical_request: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        countersign_core::text::hex(&<[u8; 32]>::from(Sha256::digest(
            canonical_request.as_bytes()
        )))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let sig = hmac(&k_signing, to_sign.as_bytes());
    sig.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical query string of `params` (encoded and sorted by name, then value).
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text.get(start..)?.find(close)? + start;
    text.get(start..end)
}

/// Every unfinished multipart upload of keys starting with `prefix`.
pub async fn list_uploads(
    access: &S3Access,
    prefix: &str,
    now: u64,
    deadline: Duration,
) -> Result<Vec<Upload>, String> {
    let client = reqwest::Client::builder()
        .timeout(deadline)
        .build()
        .map_err(|e| e.to_string())?;
    let base = access.endpoint.trim_end_matches('/');
    let host = base
        .split_once("://")
        .map_or(base, |(_, h)| h)
        .split('/')
        .next()
        .unwrap_or("");
    let mut out = Vec::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut params = vec![("uploads", ""), ("prefix", prefix)];
        if let Some((k, u)) = &markers {
            params.push(("key-marker", k.as_str()));
            params.push(("upload-id-marker", u.as_str()));
        }
        let query = canonical_query(&params);
        let uri = format!("/{}", uri_encode(&access.bucket, false));
        let date = amz_date(now);
        let canonical = format!(
            "GET\n{uri}\n{query}\nhost:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
        );
        let sig = signature(&access.secret_access_key, &access.region, &date, &canonical);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}",
            access.access_key_id,
            date.get(..8).unwrap_or(""),
            access.region
        );
        let resp = client
            .get(format!("{base}{uri}?{query}"))
            .header("x-amz-date", &date)
            .header("x-amz-content-sha256", EMPTY_SHA256)
            .header("authorization", auth)
            .send()
            .await
            .map_err(|e| format!("ListMultipartUploads: {e}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("ListMultipartUploads: {e}"))?;
        if !status.is_success() {
            return Err(format!("ListMultipartUploads answered {status}"));
        }
        for block in text.split("<Upload>").skip(1) {
            if let (Some(k), Some(u)) = (
                between(block, "<Key>", "</Key>"),
                between(block, "<UploadId>", "</UploadId>"),
            ) {
                out.push(Upload {
                    key: k.to_owned(),
                    upload_id: u.to_owned(),
                });
            }
        }
        let truncated = between(&text, "<IsTruncated>", "</IsTruncated>") == Some("true");
        let next = (
            between(&text, "<NextKeyMarker>", "</NextKeyMarker>"),
            between(&text, "<NextUploadIdMarker>", "</NextUploadIdMarker>"),
        );
        match (truncated, next) {
            (true, (Some(k), Some(u))) if !k.is_empty() => {
                markers = Some((k.to_owned(), u.to_owned()));
            }
            _ => return Ok(out),
        }
    }
}

/// For a SigV4 service at `endpoint` (named `field` in messages): the `host` header
/// value it signs, and an HTTP client (`what` names it) whose every request gives up
/// after `deadline`.
pub(crate) fn service_client(
    endpoint: &str,
    field: &str,
    what: &str,
    deadline: std::time::Duration,
) -> Result<(String, reqwest::Client), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("{field} `{endpoint}`: {e}"))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(format!("{field} `{endpoint}` has no host")),
    };
    let http = reqwest::Client::builder()
        .timeout(deadline)
        .connect_timeout(deadline)
        .build()
        .map_err(|e| format!("cannot build the {what} client: {e}"))?;
    Ok((host, http))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_798_761_599), "20261231T235959Z");
    }

    /// Our SigV4 gives the signature `object_store`'s signer gives, on the query form
    /// of a request it presigns.
    #[tokio::test]
    async fn signature_matches_object_store() {
        use object_store::signer::Signer as _;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_region("eu-west-3")
            .with_bucket_name("my-bucket")
            .with_endpoint("http://127.0.0.1:9000")
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
            .build()
            .unwrap();
        let path = object_store::path::Path::from("objects/0123 ab");
        let url = s3
            .signed_url(axum::http::Method::GET, &path, Duration::from_secs(300))
            .await
            .unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let date = get("X-Amz-Date");
        let params: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let path = percent_encoding::percent_decode_str(url.path())
            .decode_utf8()
            .unwrap();
        let canonical = format!(
            "GET\n{}\n{}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
            uri_encode(&path, true),
            canonical_query(&params)
        );
        assert_eq!(
            signature(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "eu-west-3",
                &date,
                &canonical
            ),
            get("X-Amz-Signature")
        );
    }
}
