//! Publishing signed checkpoints to an S3 bucket the database writer cannot rewrite:
//! each checkpoint becomes the object `<prefix>/checkpoint/<size>`, written once
//! (`If-None-Match: *`, after a `HEAD`) and, with `object_lock_days`, locked in
//! COMPLIANCE mode until that many days from its upload — S3 then refuses to
//! overwrite or delete that version, even for the bucket's owner.
//!
//! The requests are signed with the SigV4 signer of [`crate::s3_uploads`] and sent
//! with the `reqwest` client the crate already has: `object_store` cannot set the
//! object-lock headers or read a bucket's object-lock configuration, and the AWS SDK
//! would add about a hundred crates for four requests.

use crate::config::Secret;
use crate::http::AppState;
use crate::ledger::Ledger;
use crate::s3_uploads::{amz_date, canonical_query, service_client, signature, uri_encode};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

/// How long one request to the checkpoint bucket may take.
pub const BUCKET_DEADLINE: Duration = Duration::from_secs(10);

/// The bucket checkpoints are published to (`[log.publish_bucket]`).
#[derive(Clone, Debug)]
pub struct PublishBucketConfig {
    /// Endpoint URL (path-style requests), e.g. `https://s3.eu-central-1.amazonaws.com`.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// The bucket's name.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Days each checkpoint stays locked (COMPLIANCE mode); `None`: no lock.
    pub object_lock_days: Option<u32>,
}

/// A client for the checkpoint bucket.
#[derive(Clone, Debug)]
pub struct CheckpointBucket {
    config: PublishBucketConfig,
    http: reqwest::Client,
    base: String,
    host: String,
}

/// One answer of the bucket.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: reqwest::StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its body.
    pub body: bytes::Bytes,
}

impl CheckpointBucket {
    /// A client whose every request gives up after `deadline`.
    pub fn new(config: PublishBucketConfig, deadline: Duration) -> Result<Self, String> {
        let (host, http) = service_client(
            &config.endpoint,
            "log.publish_bucket.endpoint",
            "S3",
            deadline,
        )?;
        Ok(Self {
            base: config.endpoint.trim_end_matches('/').to_owned(),
            config,
            http,
            host,
        })
    }

    /// The object key of the checkpoint of `size`.
    pub fn key(&self, size: u64) -> String {
        format!("{}checkpoint/{size}", self.key_prefix())
    }

    fn key_prefix(&self) -> String {
        match self.config.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        }
    }

    /// One request signed with the bucket's credentials; `key` `None` addresses the
    /// bucket, `query` is sent as given (for sub-resources like `retention`, with an
    /// empty value).
    pub async fn send(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let c = &self.config;
        let mut uri = format!("/{}", uri_encode(&c.bucket, false));
        if let Some(k) = key {
            uri.push('/');
            uri.push_str(&uri_encode(k, true));
        }
        let query = canonical_query(query);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let date = amz_date(now);
        let body_hash = countersign_core::text::hex(&<[u8; 32]>::from(Sha256::digest(&body)));
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), body_hash.clone()),
            ("x-amz-date".into(), date.clone()),
        ];
        signed.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        signed.sort();
        let names = signed
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let lines: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!("{method}\n{uri}\n{query}\n{lines}\n{names}\n{body_hash}");
        let sig = signature(c.secret_access_key.expose(), &c.region, &date, &canonical);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/s3/aws4_request, SignedHeaders={names}, Signature={sig}",
            c.access_key_id,
            date.get(..8).unwrap_or(""),
            c.region
        );
        let url = if query.is_empty() {
            format!("{}{uri}", self.base)
        } else {
            format!("{}{uri}?{query}", self.base)
        };
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("authorization", auth);
        for (k, v) in &signed {
            if k != "host" {
                request = request.header(k.as_str(), v.as_str());
            }
        }
        let what = format!("bucket `{}`: {method} {uri}", c.bucket);
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{what}: cannot be reached: {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| format!("{what}: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn refused(&self, action: &str, a: &Answer) -> String {
        let text = String::from_utf8_lossy(&a.body);
        let code = between(&text, "<Code>", "</Code>").unwrap_or("");
        let message = between(&text, "<Message>", "</Message>").unwrap_or("");
        format!(
            "bucket `{}`: {action} answered {} {code} {message}",
            self.config.bucket, a.status
        )
        .trim_end()
        .to_owned()
    }

    /// Checks at start-up that the bucket is reachable and, when `object_lock_days`
    /// is set, that object lock is enabled on it (`GET ?object-lock`).
    pub async fn check(&self) -> Result<(), String> {
        let a = self
            .send(reqwest::Method::HEAD, None, &[], &[], Vec::new())
            .await?;
        if !a.status.is_success() {
            return Err(format!(
                "bucket `{}` for the published checkpoints is not reachable: HEAD answered {}",
                self.config.bucket, a.status
            ));
        }
        if self.config.object_lock_days.is_none() {
            return Ok(());
        }
        let a = self
            .send(
                reqwest::Method::GET,
                None,
                &[("object-lock", "")],
                &[],
                Vec::new(),
            )
            .await?;
        let text = String::from_utf8_lossy(&a.body);
        let enabled = a.status.is_success()
            && between(&text, "<ObjectLockEnabled>", "</ObjectLockEnabled>") == Some("Enabled");
        if !enabled {
            return Err(format!(
                "bucket `{}` does not have object lock enabled, but log.publish_bucket.object_lock_days \
                 is set: create the bucket with object lock (x-amz-bucket-object-lock-enabled: true) \
                 or remove object_lock_days ({})",
                self.config.bucket,
                self.refused("GET ?object-lock", &a)
            ));
        }
        Ok(())
    }

    /// Writes the checkpoint note of `size` once. An object already there with the
    /// same bytes counts as published (another instance, or a retry after a lost
    /// answer); one with other bytes is an error (it is never overwritten).
    pub async fn put(&self, size: u64, note: &str) -> Result<(), String> {
        let key = self.key(size);
        if let Some(existing) = self.get_key(&key).await? {
            return same(&key, &existing, note);
        }
        let md5 = {
            use base64::Engine as _;
            use md5::Digest as _;
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(note.as_bytes()))
        };
        let mut headers = vec![
            ("content-md5", md5),
            ("content-type", "text/plain; charset=utf-8".to_owned()),
            ("if-none-match", "*".to_owned()),
        ];
        if let Some(days) = self.config.object_lock_days {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let until = amz_date(now + u64::from(days) * 86_400);
            headers.push(("x-amz-object-lock-mode", "COMPLIANCE".to_owned()));
            headers.push(("x-amz-object-lock-retain-until-date", iso8601(&until)));
        }
        let a = self
            .send(
                reqwest::Method::PUT,
                Some(&key),
                &[],
                &headers,
                note.as_bytes().to_vec(),
            )
            .await?;
        if a.status == reqwest::StatusCode::PRECONDITION_FAILED {
            // Written meanwhile (by another instance).
            let existing = self.get_key(&key).await?.unwrap_or_default();
            return same(&key, &existing, note);
        }
        if !a.status.is_success() {
            return Err(self.refused(&format!("PUT {key}"), &a));
        }
        Ok(())
    }

    async fn get_key(&self, key: &str) -> Result<Option<String>, String> {
        let a = self
            .send(reqwest::Method::GET, Some(key), &[], &[], Vec::new())
            .await?;
        if a.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(self.refused(&format!("GET {key}"), &a));
        }
        String::from_utf8(a.body.to_vec())
            .map(Some)
            .map_err(|_| format!("bucket object `{key}` is not UTF-8 text"))
    }

    /// The sizes of the published checkpoints, in increasing order.
    pub async fn sizes(&self) -> Result<Vec<u64>, String> {
        let prefix = format!("{}checkpoint/", self.key_prefix());
        let mut sizes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let a = self
                .send(reqwest::Method::GET, None, &query, &[], Vec::new())
                .await?;
            if !a.status.is_success() {
                return Err(self.refused("ListObjectsV2", &a));
            }
            let text = String::from_utf8_lossy(&a.body);
            for part in text.split("<Key>").skip(1) {
                let key = part.split("</Key>").next().unwrap_or("");
                let name = key.strip_prefix(&prefix).unwrap_or("");
                let size = name
                    .parse::<u64>()
                    .ok()
                    .filter(|n| n.to_string() == name)
                    .ok_or_else(|| {
                        format!(
                            "bucket `{}` holds `{key}`, which is not a checkpoint object: \
                             only <prefix>/checkpoint/<size> belongs there",
                            self.config.bucket
                        )
                    })?;
                sizes.push(size);
            }
            token = between(&text, "<NextContinuationToken>", "</NextContinuationToken>")
                .map(str::to_owned);
            if between(&text, "<IsTruncated>", "</IsTruncated>") != Some("true") || token.is_none()
            {
                break;
            }
        }
        sizes.sort_unstable();
        Ok(sizes)
    }

    /// The published checkpoint note of `size`.
    pub async fn get(&self, size: u64) -> Result<String, String> {
        let key = self.key(size);
        self.get_key(&key)
            .await?
            .ok_or_else(|| format!("bucket object `{key}` disappeared while it was read"))
    }

    /// Every published checkpoint note, in order of size.
    pub async fn notes(&self) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        for size in self.sizes().await? {
            notes.push(self.get(size).await?);
        }
        Ok(notes)
    }
}

fn same(key: &str, existing: &str, note: &str) -> Result<(), String> {
    if existing == note {
        Ok(())
    } else {
        Err(format!(
            "bucket object `{key}` already holds another checkpoint of that size: \
             two different logs of one origin (a fork) or a rewritten database; it is left as it is"
        ))
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text.get(start..)?.find(close)? + start;
    text.get(start..end)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an `amz_date` (`YYYYMMDDTHHMMSSZ`).
fn iso8601(d: &str) -> String {
    let p = |a: usize, b: usize| d.get(a..b).unwrap_or("00");
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        p(0, 4),
        p(4, 6),
        p(6, 8),
        p(9, 11),
        p(11, 13),
        p(13, 15)
    )
}

/// Publishes signed checkpoints to the bucket, each once, in order of size.
#[derive(Debug)]
pub struct BucketPublisher {
    bucket: CheckpointBucket,
    last: u64,
}

impl BucketPublisher {
    /// Finds the largest size already in the bucket.
    pub async fn open(bucket: CheckpointBucket) -> Result<Self, String> {
        let last = bucket.sizes().await?.last().copied().unwrap_or(0);
        Ok(Self { bucket, last })
    }

    /// The largest tree size published so far.
    pub fn last_size(&self) -> u64 {
        self.last
    }

    /// Publishes every stored checkpoint larger than the last published one. Returns
    /// how many it wrote; after a failure the next call resumes where this one stopped.
    pub async fn publish_new(&mut self, ledger: &Ledger) -> Result<usize, String> {
        let mut written = 0;
        loop {
            let batch = ledger
                .tree_checkpoints(self.last, 1000)
                .await
                .map_err(|e| format!("cannot read checkpoints: {e}"))?;
            if batch.is_empty() {
                return Ok(written);
            }
            for c in batch {
                self.bucket.put(c.size, &c.note).await?;
                self.last = c.size;
                written += 1;
            }
        }
    }
}

/// With `[log.publish_bucket]`, publishes the stored checkpoints to the bucket every
/// `checkpoint_interval`, in a task of its own (a slow or unreachable bucket holds up
/// neither integration nor a request). A failed round is logged, counted in
/// `countersign_checkpoint_publish_failures_total` and resumed at the next tick.
pub fn spawn_publisher(state: AppState) {
    let Some(config) = state.config.publish_bucket.clone() else {
        return;
    };
    tokio::spawn(async move {
        let bucket = CheckpointBucket::new(config, BUCKET_DEADLINE);
        let mut publisher: Option<BucketPublisher> = None;
        let mut tick = tokio::time::interval(state.config.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = match (&bucket, publisher.as_mut()) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(p)) => p.publish_new(&state.ledger).await.map(|_| ()),
                (Ok(b), None) => match BucketPublisher::open(b.clone()).await {
                    Ok(p) => publisher
                        .insert(p)
                        .publish_new(&state.ledger)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                },
            };
            if let Some(p) = &publisher {
                state.metrics.checkpoint_published(p.last_size());
            }
            if let Err(e) = result {
                state.metrics.checkpoint_publish_failure();
                tracing::warn!(
                    "publishing checkpoints to the bucket (retrying at the next tick): {e}"
                );
            }
        }
    });
}
