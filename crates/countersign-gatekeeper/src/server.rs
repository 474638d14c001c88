//! Starting the gatekeeper: key, database, stores, and the listener (plain TCP or
//! TLS with rustls).

use crate::config::{Config, load_or_create_key};
use crate::http::{AppState, Gatekeeper, PeerAddr, app};
use crate::ledger::{CheckpointSigner, Ledger};
use crate::storage::Storage;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    let ledger = Ledger::connect(&config.database_url, signer, config.checkpoint_every)
        .await
        .map_err(|e| StartError(format!("cannot open the database: {e}")))?;
    let storage = Storage::from_config(&config.buckets)
        .map_err(|e| StartError(format!("cannot open a bucket: {e}")))?;
    let gk = Gatekeeper::new(config, key, ledger, storage)
        .map_err(|e| StartError(format!("invalid policy: {e}")))?;
    Ok((Arc::new(gk), created))
}

/// A TLS listener: accepts TCP connections and finishes handshakes concurrently, so a
/// slow handshake cannot stall the accept loop.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                no_delay(&tcp);
                let acceptor = acceptor.clone();
                let sender = tx.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await;
                    if let Ok(Ok(tls)) = handshake {
                        let _ = sender.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(conn) = self.ready.recv().await {
                return conn;
            }
            // The accept task ended; nothing more will come.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Turns off Nagle's algorithm on an accepted connection. hyper writes a response's
/// head and its streamed body separately; with Nagle on, the body waits for the
/// client's (delayed) ACK of the head, which adds up to ~40 ms to small responses.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        eprintln!("cannot set TCP_NODELAY: {e}");
    }
}

/// The plain-TCP listener; every accepted connection gets `TCP_NODELAY`.
pub struct PlainListener(TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, peer) = Listener::accept(&mut self.0).await;
        no_delay(&tcp);
        (tcp, peer)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        Self(*stream.remote_addr())
    }
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

/// Serves `state` on `listener` until the process is stopped.
pub async fn serve(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    let tls = state.config.tls.clone();
    let router = app(state);
    match tls {
        None => {
            axum::serve(
                PlainListener(listener),
                router.into_make_service_with_connect_info::<PeerAddr>(),
            )
            .await
        }
        Some(t) => {
            let acceptor = tls_acceptor(&t.cert, &t.key).map_err(|e| std::io::Error::other(e.0))?;
            let listener = TlsListener::new(listener, acceptor)?;
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<PeerAddr>(),
            )
            .await
        }
    }
}
