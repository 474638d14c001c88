//! A raw-socket HTTP/1.1 client: signed requests written byte by byte, so a test can
//! close the connection at any stage, send a body slowly, and see exactly what came
//! back (status, headers, receipt, error code).

use crate::common;
use countersign_core::text::{b64, parse_b64};
use countersign_core::{Method, Receipt, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A signed request, ready to be written to a socket.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The object key.
    pub key: String,
    /// The canonical request bytes (what the audit entry records).
    pub canonical: Vec<u8>,
    /// Request line and headers, ending with the blank line.
    pub head: Vec<u8>,
    /// The body (PUT only), shared: the journal keeps every request a test sent, and
    /// a copy of every body would take gigabytes.
    pub body: Arc<[u8]>,
    /// Whether it is a PUT.
    pub is_put: bool,
}

/// Lifetime of the requests the fault tests sign: short, so a reservation left by a
/// dead upload passes its deadline soon.
pub const LIFETIME_SECS: u64 = 10;

/// A signed PUT of `body` to `key`.
pub fn put(key: &str, body: &[u8]) -> Signed {
    put_shared(key, body.into())
}

/// A signed PUT of a body the caller keeps sharing (a retry loop signs the same bytes
/// again and again without copying them).
pub fn put_shared(key: &str, body: Arc<[u8]>) -> Signed {
    let mut r = common::put(key, &body);
    r.expires_at = common::now() + LIFETIME_SECS;
    build(&r.request(), key, body)
}

/// A signed GET of `key`.
pub fn get(key: &str) -> Signed {
    let mut r = common::get(key);
    r.expires_at = common::now() + LIFETIME_SECS;
    build(&r.request(), key, Arc::default())
}

fn build(request: &Request, key: &str, body: Arc<[u8]>) -> Signed {
    let canonical = request.encode();
    let is_put = request.method() == Method::Put;
    let sigs = common::vendor_sigs(&canonical, is_put);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\ncountersign-request: {}\r\ncountersign-signature: {}\r\n",
        common::http_method(request),
        common::url_of(request),
        b64(&canonical),
        sigs
    );
    if is_put {
        head.push_str(&format!(
            "content-length: {}\r\ncontent-type: application/pdf\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    Signed {
        key: key.to_owned(),
        canonical,
        head: head.into_bytes(),
        body,
        is_put,
    }
}

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON error code, if the body is an error.
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_owned)
    }

    /// The receipt, if one came back.
    pub fn receipt(&self) -> Option<Receipt> {
        let text = self.header("countersign-receipt")?;
        Receipt::parse(&parse_b64(text, "receipt").ok()?).ok()
    }

    /// One line for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            self.status,
            String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
        )
    }
}

async fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends the whole request and reads the whole response.
pub async fn exchange(port: u16, s: &Signed) -> std::io::Result<Resp> {
    let mut c = connect(port).await?;
    let sent = async {
        c.write_all(&s.head).await?;
        c.write_all(&s.body).await
    }
    .await;
    answer_after(&mut c, sent).await
}

/// The response, also when the gatekeeper answered (and closed) before the client
/// finished sending: then the answer is waiting in the receive buffer.
async fn answer_after(c: &mut TcpStream, sent: std::io::Result<()>) -> std::io::Result<Resp> {
    match (sent, read_response(c).await) {
        (_, Ok(r)) => Ok(r),
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}

/// Like [`exchange`], but sends the body in `chunk`-byte pieces with `pause` between
/// them (an upload that takes a while, so a fault can hit it in the middle).
pub async fn exchange_slowly(
    port: u16,
    s: &Signed,
    chunk: usize,
    pause: Duration,
) -> std::io::Result<Resp> {
    let mut c = connect(port).await?;
    let sent = async {
        c.write_all(&s.head).await?;
        for piece in s.body.chunks(chunk.max(1)) {
            c.write_all(piece).await?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
    .await;
    answer_after(&mut c, sent).await
}

/// A plain GET of a server path (`/healthz`, `/readyz`).
pub async fn plain_get(port: u16, path: &str) -> std::io::Result<Resp> {
    let mut c = connect(port).await?;
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    read_response(&mut c).await
}

/// Where a client gives up on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Right after the request headers, before any body byte.
    AfterHeaders,
    /// Half-way through the body.
    MidBody,
    /// Right after the last body byte, without waiting for the answer.
    AfterFullBody,
    /// After the response headers and a first part of the response body.
    MidResponse,
}

/// Sends `s` up to `stage`, then closes the socket: with a FIN, or with a reset when
/// `reset` is set.
pub async fn send_and_close(
    port: u16,
    s: &Signed,
    stage: Stage,
    reset: bool,
) -> std::io::Result<()> {
    let mut c = connect(port).await?;
    c.write_all(&s.head).await?;
    match stage {
        Stage::AfterHeaders => {}
        Stage::MidBody => {
            c.write_all(&s.body[..s.body.len() / 2]).await?;
            c.flush().await?;
            // Let the gatekeeper get into the upload before the client vanishes.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Stage::AfterFullBody => {
            c.write_all(&s.body).await?;
            c.flush().await?;
        }
        Stage::MidResponse => {
            c.write_all(&s.body).await?;
            let mut got = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = c.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = find(&got, b"\r\n\r\n")
                    && got.len() > end + 4
                {
                    break;
                }
            }
        }
    }
    if reset {
        c.set_zero_linger()?;
    }
    drop(c);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_response(c: &mut TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).await?;
    parse(&raw)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Parses a complete HTTP/1.1 response (the connection was closed after it).
pub fn parse(raw: &[u8]) -> std::io::Result<Resp> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no complete response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        && body.len() < len
        && status != 304
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("response body cut after {} of {len} bytes", body.len()),
        ));
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
