//! The gatekeeper as an operator runs it: the real binary with a config file, started,
//! killed with SIGKILL, stopped with SIGTERM, and its CLI (`reconcile`, `audit
//! verify`). Also what the process costs (RSS, open files), from /proc.

use super::client::{self, Resp};
use crate::common::{self, Backend, BucketView};
use countersign_gatekeeper::config::Config;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_countersign-gatekeeper");

/// How a test's world differs from the default.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Give the gatekeeper this S3 endpoint (a proxy) instead of the S3 server's.
    pub s3_endpoint: Option<String>,
    /// Use this database URL instead of the backend's.
    pub database_url: Option<String>,
}

/// A data dir, a config file, a database and a bucket: what a gatekeeper process
/// runs on, kept across restarts.
pub struct World {
    /// The data dir.
    pub dir: PathBuf,
    /// The config file.
    pub config_path: PathBuf,
    /// The database URL (as the gatekeeper resolves it).
    pub database_url: String,
    /// The bucket, read straight from the store.
    pub bucket: BucketView,
    /// The S3 server (direct, never through a proxy) and the bucket's name there.
    pub s3: Option<(String, String)>,
    _tmp: tempfile::TempDir,
}

impl World {
    /// A fresh world on `backend`.
    pub async fn new(backend: &Backend, options: Options) -> Self {
        let tmp = common::temp_dir();
        let dir = tmp.path().to_owned();
        let (mut bucket, mut database, view) = common::backend_config(backend, &dir).await;
        let mut s3 = None;
        if let Backend::PostgresS3 { s3_endpoint, .. } = backend {
            let name = bucket
                .lines()
                .find_map(|l| l.strip_prefix("s3_bucket = "))
                .unwrap()
                .trim_matches('"')
                .to_owned();
            s3 = Some((s3_endpoint.clone(), name));
            if let Some(proxy) = &options.s3_endpoint {
                bucket = bucket.replace(s3_endpoint.as_str(), proxy);
            }
        }
        if let Some(url) = &options.database_url {
            database = format!("[database]\nurl = \"{url}\"\n");
        }
        let text = format!(
            "data_dir = \"{}\"\n{}",
            dir.display(),
            common::config_text(&bucket, &database, "")
                // Requests live 10 s: a reservation left behind passes any deadline
                // derived from the request's lifetime soon.
                .replacen("[limits]\n", "[limits]\nmax_lifetime_secs = 60\n", 1)
        );
        let config_path = dir.join("gatekeeper.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::from_toml(&text, None).unwrap();
        Self {
            dir,
            config_path,
            database_url: config.database_url.expose().to_owned(),
            bucket: view,
            s3,
            _tmp: tmp,
        }
    }

    /// Starts a gatekeeper process and waits until `/healthz` answers.
    pub async fn start(&self) -> Server {
        let port = super::free_port();
        let log = self.dir.join(format!("gatekeeper-{port}.log"));
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            port,
            log,
        };
        let t = Instant::now();
        loop {
            if let Ok(r) = client::plain_get(port, "/healthz").await
                && r.status == 200
            {
                break;
            }
            if let Some(c) = server.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "the gatekeeper exited at start-up ({status}): {}",
                    server.log_text()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the gatekeeper did not answer /healthz within 60 s: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Runs the binary with `args` followed by `--config FILE`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `reconcile`: exit 0 and one JSON object per line, or why not.
    pub fn reconcile(&self) -> Result<Vec<serde_json::Value>, String> {
        reconcile_with(&self.config_path)
    }

    /// `audit verify` against the database.
    pub fn audit_verify(&self) -> Result<(), String> {
        let out = self.cli(&["audit", "verify"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`audit verify` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Every path in the bucket, read from the store itself.
    pub async fn storage_paths(&self) -> Vec<String> {
        match &self.bucket {
            BucketView::Dir(d) => super::sys::walk(d),
            BucketView::S3(store) => {
                use futures::StreamExt as _;
                let mut v = Vec::new();
                let mut s = store.list(None);
                while let Some(m) = s.next().await {
                    v.push(m.unwrap().location.to_string());
                }
                v.sort();
                v
            }
        }
    }

    /// Unfinished multipart uploads in the S3 bucket (0 for a local bucket).
    pub async fn multipart_uploads(&self) -> usize {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Some((endpoint, bucket)) = &self.s3 else {
            return 0;
        };
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        let req =
            format!("GET /{bucket}?uploads HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 200"), "listing uploads: {text}");
        text.matches("<UploadId>").count()
    }
}

/// A running gatekeeper process; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Its process id.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// What it wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it is still running after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .output();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, Iterator::count)
    }

    /// Sends a signed request.
    pub async fn send(&self, s: &client::Signed) -> std::io::Result<Resp> {
        client::exchange(self.port, s).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `countersign-gatekeeper reconcile --config FILE`: exit 0 and one JSON object per
/// line, or why not.
pub fn reconcile_with(config: &std::path::Path) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new(BIN)
        .arg("reconcile")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`countersign-gatekeeper reconcile` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map_err(|e| format!("reconcile printed a line that is not JSON ({e}): {l}"))
        })
        .collect()
}
