//! Starting the gatekeeper: key, database, stores, recovery, and the listener (plain
//! TCP or TLS with rustls) with its bounds: at most `max_connections` connections,
//! request headers within `header_read_timeout_ms`, connections on which nothing moves
//! for `idle_timeout_ms` closed. [`serve_until`] drains on shutdown: it stops
//! accepting, lets in-flight requests finish for up to `shutdown_grace_ms`, and
//! returns.

use crate::config::{Config, load_or_create_key};
use crate::http::{AppState, Gatekeeper, PeerAddr, admin_app, app};
use crate::ledger::{CheckpointSigner, Ledger};
use crate::storage::Storage;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt as _;

/// A start-up failure, with a sentence for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Loads (or creates) the key, connects the database and stores, and returns the
/// state. `created_key` says whether the key was generated now.
pub async fn build_state(config: Config) -> Result<(AppState, bool), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError(format!(
            "cannot create data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let (key, created) =
        load_or_create_key(&config.key_path).map_err(|e| StartError(e.to_string()))?;
    let signer = CheckpointSigner {
        gatekeeper: config.gatekeeper_id.clone(),
        key: key.clone(),
        key_id: config.key_id.clone(),
    };
    let ledger = Ledger::connect(
        config.database_url.expose(),
        signer,
        config.checkpoint_every,
        config.limits.database_timeout(),
    )
    .await
    .map_err(|e| StartError(format!("cannot open the database: {e}")))?;
    ledger
        .register_key(&config.key_id, &key.verifying_key().to_bytes())
        .await
        .map_err(|e| StartError(e.to_string()))?;
    let storage = Storage::from_config(&config.buckets, config.limits.storage_timeout())
        .map_err(|e| StartError(format!("cannot open a bucket: {e}")))?;
    crate::encryption::check_keys(&ledger, &storage)
        .await
        .map_err(|e| StartError(format!("encryption at rest: {e}")))?;
    let gk = Gatekeeper::new(config, key, ledger, storage)
        .map_err(|e| StartError(format!("invalid policy: {e}")))?;
    let state = Arc::new(gk);
    crate::webhook::spawn(&state);
    Ok((state, created))
}

/// Runs recovery now and then every `reconcile_interval_secs`, for as long as the
/// process lives. Failures are logged and retried at the next tick.
pub fn spawn_reconciler(state: AppState) {
    let every = Duration::from_secs(state.config.limits.reconcile_interval_secs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = crate::http::now_ms() / 1000;
            match crate::reconcile::reconcile(&state.ledger, &state.storage, now, false).await {
                Ok(actions) => {
                    for a in actions {
                        tracing::info!("reconcile: {} {}/{}", a.action, a.bucket, a.storage_name);
                    }
                }
                Err(e) => tracing::warn!("reconcile failed (retrying later): {e}"),
            }
        }
    });
}

/// Builds the rustls acceptor from PEM files.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, StartError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError(format!("tls.cert {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError(format!("tls.key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError(format!("tls: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An I/O stream that notes when a byte last moved, for the idle timeout.
struct Watched<T> {
    inner: T,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    /// Forwarded, so hyper writes a response's headers and body frames with one
    /// `writev` instead of first copying every body byte into its own buffer (which
    /// it does for a stream that does not say it writes vectors).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection with the router until it ends or goes idle. When
/// `stopping` turns true, the connection finishes the request in progress (if any)
/// and closes instead of waiting for another.
async fn serve_connection<T>(
    io: T,
    peer: SocketAddr,
    router: axum::Router,
    config: &Config,
    mut stopping: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let io = Watched {
        inner: io,
        last: last.clone(),
        epoch,
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.limits.header_read_timeout_ms))
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = Duration::from_millis(config.limits.idle_timeout_ms);
    let mut draining = false;
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let quiet_until = epoch + since + idle;
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stopping.wait_for(|s| *s), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(quiet_until.into()) => {
                let since_now = Duration::from_millis(last.load(Ordering::Relaxed));
                if epoch + since_now + idle <= Instant::now() {
                    // Nothing moved for the idle timeout: close (a request still being
                    // processed runs on in its own task and is recorded).
                    return;
                }
            }
        }
    }
}

/// Serves `state` on `listener` until the process is stopped: recovery runs first
/// and then on a timer, and the audit tree is extended every `checkpoint_interval`.
pub async fn serve(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    serve_until(state, listener, std::future::pending())
        .await
        .map(|_| ())
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Requests and connections still running when the grace period ran out (0: all
    /// finished). Whatever they left behind is finished by recovery at the next start.
    pub abandoned: usize,
}

/// Serves `state` on `listener` until `shutdown` completes, then drains: the
/// listener is closed at once (new connections are refused), idle keep-alive
/// connections are closed, requests in progress run to their end for up to
/// `limits.shutdown_grace_ms`, and the database pool is closed.
pub async fn serve_until(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<Drained> {
    spawn_reconciler(state.clone());
    crate::transparency::spawn_integrator(state.clone());
    let tls = match &state.config.tls {
        Some(t) => Some(tls_acceptor(&t.cert, &t.key).map_err(|e| std::io::Error::other(e.0))?),
        None => None,
    };
    let config = Arc::new(state.config.clone());
    let router = app(state.clone());
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let Some((permit, tcp, peer)) = accepted else {
            continue;
        };
        no_delay(&tcp);
        let router = router.clone();
        let config = config.clone();
        let tls = tls.clone();
        let stopping = stopping.clone();
        state.tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, peer, router, &config, stopping).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        Duration::from_millis(config.limits.header_read_timeout_ms),
                        acceptor.accept(tcp),
                    )
                    .await;
                    if let Ok(Ok(stream)) = handshake {
                        serve_connection(stream, peer, router, &config, stopping).await;
                    }
                }
            }
        });
    }
    drop(listener);
    // `send_replace` reaches connections whatever their receivers are doing.
    stop.send_replace(true);
    state.tasks.close();
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    let abandoned = match tokio::time::timeout(grace, state.tasks.wait()).await {
        Ok(()) => 0,
        Err(_) => state.tasks.len(),
    };
    state.ledger.close().await;
    Ok(Drained { abandoned })
}

/// Serves the admin router ([`admin_app`]: `/metrics`, `/healthz`, `/readyz`) on
/// `listener`, in plain HTTP with the same header and idle timeouts as the main
/// listener and at most 16 connections at once, until the returned task is aborted.
/// It is meant for a private address that only the monitoring system reaches.
pub fn spawn_admin(state: AppState, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = Arc::new(state.config.clone());
        let router = admin_app(state);
        let slots = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
        // Admin connections are not drained at shutdown: the task is aborted.
        let (_never, stopping) = watch::channel(false);
        loop {
            let Some((permit, tcp, peer)) = accept(&listener, &slots).await else {
                continue;
            };
            no_delay(&tcp);
            let (router, config, stopping) = (router.clone(), config.clone(), stopping.clone());
            tokio::spawn(async move {
                let _permit = permit;
                serve_connection(tcp, peer, router, &config, stopping).await;
            });
        }
    })
}

/// Most connections the admin listener serves at once.
const ADMIN_CONNECTIONS: usize = 16;

/// Waits for a connection slot and a connection; `None` after a failed accept.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((tcp, peer)) => Some((permit, tcp, peer)),
        Err(e) => {
            // Out of file descriptors, usually: wait instead of spinning.
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Turns off Nagle's algorithm on an accepted connection. hyper writes a response's
/// head and its streamed body separately; with Nagle on, the body waits for the
/// client's (delayed) ACK of the head, which adds up to ~40 ms to small responses.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!("cannot set TCP_NODELAY: {e}");
    }
}
