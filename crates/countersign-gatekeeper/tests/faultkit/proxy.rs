//! A TCP proxy in front of the S3 server whose traffic a test controls: pass it,
//! refuse it (every connection cut, new ones reset), freeze it (connections stay open
//! but no byte moves), or cut any connection whose client bytes contain a pattern.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Cut every open connection; reset new ones: the endpoint is unreachable.
    Refuse,
    /// Accept, but move no byte in either direction until the mode changes.
    Freeze,
    /// Forward, but cut a connection as soon as the client sends this byte string.
    CutOn(Vec<u8>),
}

struct Shared {
    mode: Mode,
    conns: Vec<JoinHandle<()>>,
}

/// The proxy; stops (and cuts every connection) when dropped.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared {
            mode: Mode::Pass,
            conns: Vec::new(),
        }));
        let upstream = upstream.to_owned();
        let s = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mode = s.lock().unwrap().mode.clone();
                if mode == Mode::Refuse {
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(connection(client, upstream.clone(), Arc::clone(&s)));
                let mut g = s.lock().unwrap();
                g.conns.retain(|h| !h.is_finished());
                g.conns.push(task);
            }
        });
        Self {
            port,
            shared,
            accept,
        }
    }

    /// The endpoint URL to give the gatekeeper.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the mode; `Refuse` also cuts every open connection.
    pub fn set(&self, mode: Mode) {
        let mut g = self.shared.lock().unwrap();
        if mode == Mode::Refuse {
            for c in g.conns.drain(..) {
                c.abort();
            }
        }
        g.mode = mode;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut g) = self.shared.lock() {
            for c in g.conns.drain(..) {
                c.abort();
            }
        }
    }
}

async fn connection(client: TcpStream, upstream: String, shared: Arc<Mutex<Shared>>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, Arc::clone(&shared), true);
    let down = pump(sr, cw, shared, false);
    // Either direction ending (or being cut) ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Mutex<Shared>>,
    client_to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The tail of the previous read, so a pattern split across reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let mode = shared.lock().unwrap().mode.clone();
            match mode {
                Mode::Freeze => tokio::time::sleep(Duration::from_millis(20)).await,
                Mode::Refuse => return,
                Mode::CutOn(pattern) if client_to_server => {
                    let mut window = std::mem::take(&mut tail);
                    window.extend_from_slice(&buf[..n]);
                    if window
                        .windows(pattern.len())
                        .any(|w| w == pattern.as_slice())
                    {
                        return;
                    }
                    let keep = window.len().saturating_sub(pattern.len());
                    tail = window.split_off(keep);
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
