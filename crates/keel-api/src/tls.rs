//! TLS for both listeners (rustls, ring provider): the certificate files, their reload, and a
//! listener that does handshakes off the accept path.
//!
//! [`TlsCerts`] holds the certificate being served behind an `ArcSwap`; a new handshake picks
//! up whatever is there, so a reload (SIGHUP, or a change of either file seen by polling) never
//! stops the server, and a reload that fails (bad PEM, key not matching) keeps the previous
//! certificate and logs a warning naming the file, never the key's bytes.
//!
//! [`TlsListener`] accepts TCP connections in a background task and runs each handshake in its
//! own task, bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number ([`MAX_HANDSHAKES`]), so a
//! slow or silent client never holds up the next accept. Finished streams go to the server
//! (axum through [`axum::serve::Listener`], tonic through [`TlsListener::into_stream`]) over a
//! bounded channel. The plain listeners are untouched when TLS is off.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A client has this long to complete its handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; beyond this, accepting waits (the kernel's
/// backlog queues the next connections).
pub const MAX_HANDSHAKES: usize = 512;
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;
/// Certificate reloads, by `result` (`ok`, `error`).
pub const RELOADS_TOTAL: &str = "keel_tls_reloads_total";
/// Connections to a TLS port that never became TLS, by `listener` (`rest`, `grpc`) and `reason`
/// (`handshake`: failed, `timeout`, `plain_http`: answered 400).
pub const HANDSHAKE_FAILURES_TOTAL: &str = "keel_tls_handshake_failures_total";
/// How often the certificate and key files are checked for a change, by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// The certificate (chain) and private key files a server serves TLS with, both PEM.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for a change (they are also re-read on SIGHUP).
    pub poll: Duration,
}

impl TlsConfig {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            poll: DEFAULT_POLL,
        }
    }
}

/// Why a certificate or key could not be loaded. The messages name the file and never quote
/// its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {}: {source}", path.display())]
    ReadCert { path: PathBuf, source: io::Error },
    #[error("cannot read the TLS key file {}: {source}", path.display())]
    ReadKey { path: PathBuf, source: io::Error },
    #[error(
        "no certificate in {}: {detail}; --tls-cert takes a PEM file with one or more `BEGIN CERTIFICATE` blocks, the server's first",
        path.display()
    )]
    BadCert { path: PathBuf, detail: String },
    #[error(
        "no usable private key in {} ({detail}): --tls-key takes a PEM file with one `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block, unencrypted",
        path.display()
    )]
    BadKey { path: PathBuf, detail: String },
    #[error(
        "the private key in {} does not belong to the certificate in {}: give the key the certificate was issued for",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
    }
}

/// The certificate being served, swapped in place on reload.
pub struct TlsCerts {
    config: TlsConfig,
    /// The files' stamps when they were loaded at start.
    loaded: (Stamp, Stamp),
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
}

struct Resolver(ArcSwap<CertifiedKey>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver(..)")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl std::fmt::Debug for TlsCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCerts")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TlsCerts {
    /// Reads and checks both files; the error says which one is wrong and how.
    pub fn load(config: TlsConfig) -> Result<Arc<TlsCerts>, TlsError> {
        // Both ring and aws-lc-rs are compiled in (through other crates), so the provider is
        // named rather than left to rustls's process default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Stamped before reading, so a change while reading is seen by the first poll.
        let loaded = (Stamp::of(&config.cert), Stamp::of(&config.key));
        let key = read_certified_key(&config, &provider)?;
        Ok(Arc::new(TlsCerts {
            config,
            loaded,
            provider,
            resolver: Arc::new(Resolver(ArcSwap::from_pointee(key))),
        }))
    }

    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// The certificate chain new handshakes are served, the server's first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.resolver.0.load().cert.clone()
    }

    /// Re-reads both files; on error the previous certificate stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_certified_key(&self.config, &self.provider)?;
        self.resolver.0.store(Arc::new(key));
        Ok(())
    }

    /// A rustls acceptor over these certificates, offering `alpn` (e.g. `h2` for gRPC).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> io::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::other(format!("cannot configure TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads on SIGHUP and whenever either file changes (checked every `poll`), until
    /// `shutdown`. A failed reload is logged (naming the file) and retried once a file changes
    /// again.
    pub fn spawn_reloader(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        // Taken before the task starts, so a SIGHUP from now on reloads rather than ends the
        // process.
        let mut hangup = hangup();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = self.loaded;
            loop {
                let forced = tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(()) = recv(&mut hangup) => true,
                    _ = tick.tick() => false,
                };
                let now = self.stamps();
                if !forced && now == seen {
                    continue;
                }
                seen = now;
                let why = if forced { "SIGHUP" } else { "file change" };
                match self.reload() {
                    Ok(()) => {
                        metrics::counter!(RELOADS_TOTAL, "result" => "ok").increment(1);
                        tracing::info!(
                            cert = %self.config.cert.display(),
                            key = %self.config.key.display(),
                            "reloaded the TLS certificate ({why})"
                        )
                    }
                    Err(e) => {
                        metrics::counter!(RELOADS_TOTAL, "result" => "error").increment(1);
                        tracing::warn!("TLS certificate not reloaded ({why}), still serving the previous one: {e}")
                    }
                }
            }
        })
    }

    fn stamps(&self) -> (Stamp, Stamp) {
        (Stamp::of(&self.config.cert), Stamp::of(&self.config.key))
    }
}

/// What tells that a file changed: its modification time, length and inode (a rename over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        Stamp(std::fs::metadata(path).ok().map(|m| {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), inode)
        }))
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, TLS files are reloaded on change only: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup() -> Hangup {
    None
}

/// The next SIGHUP; never, without a handler.
#[cfg(unix)]
async fn recv(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

fn read_certified_key(config: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(&config.cert).map_err(|source| TlsError::ReadCert {
        path: config.cert.clone(),
        source,
    })?;
    let key_pem = std::fs::read(&config.key).map_err(|source| TlsError::ReadKey {
        path: config.key.clone(),
        source,
    })?;
    let bad_cert = |detail: String| TlsError::BadCert {
        path: config.cert.clone(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad_cert(if PrivateKeyDer::from_pem_slice(&cert_pem).is_ok() {
            "it holds a private key (were --tls-cert and --tls-key swapped?)".into()
        } else {
            "no CERTIFICATE block".into()
        }));
    }
    // The key's own parse errors are not quoted: they could echo a fragment of the key.
    let bad_key = |detail: &str| TlsError::BadKey {
        path: config.key.clone(),
        detail: detail.into(),
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(bad_key("no private key block")),
        Err(_) => return Err(bad_key("not valid PEM")),
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| bad_key("not an RSA, ECDSA or Ed25519 key this server can use"))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(TlsError::KeyMismatch {
            cert: config.cert.clone(),
            key: config.key.clone(),
        }),
        Err(e) => Err(bad_cert(format!("the first certificate is not valid: {e}"))),
    }
}

/// A TLS connection, as both servers take it.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.peer),
        }
    }
}

/// A bound TCP listener that hands over connections once their TLS handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<TlsConn>,
    local: Option<SocketAddr>,
}

impl TlsListener {
    /// The REST port's listener: a client that speaks plain HTTP/1 to it gets a 400 saying to
    /// use https, rather than a TLS alert it cannot read.
    pub fn rest(tcp: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        TlsListener::new(tcp, acceptor, "rest")
    }

    /// The gRPC port's listener.
    pub fn grpc(tcp: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        TlsListener::new(tcp, acceptor, "grpc")
    }

    /// Starts accepting on `tcp` in the background; stops once this listener is dropped.
    fn new(tcp: TcpListener, acceptor: TlsAcceptor, name: &'static str) -> TlsListener {
        let local = tcp.local_addr().ok();
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = Accepting {
            acceptor,
            local,
            name,
            ready: tx,
        };
        tokio::spawn(accept_loop(tcp, accepting));
        TlsListener { ready, local }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming*`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<TlsConn>> + Send + 'static {
        futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(self.ready), Ok)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConn, SocketAddr) {
        match self.ready.recv().await {
            Some(conn) => {
                let peer = conn.peer;
                (conn, peer)
            }
            // The accept task only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local
            .ok_or_else(|| io::Error::other("the TLS listener's local address is unknown"))
    }
}

/// What every handshake task of a listener needs.
#[derive(Clone)]
struct Accepting {
    acceptor: TlsAcceptor,
    local: Option<SocketAddr>,
    /// `rest` or `grpc`; the REST port answers plain HTTP.
    name: &'static str,
    ready: mpsc::Sender<TlsConn>,
}

async fn accept_loop(tcp: TcpListener, accepting: Accepting) {
    // Dropping the set (when the server is gone) aborts the handshakes still running.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = accepting.ready.closed() => break,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = tcp.accept(), if handshakes.len() < MAX_HANDSHAKES => match accepted {
                Ok((stream, peer)) => {
                    handshakes.spawn(handshake(stream, peer, accepting.clone()));
                }
                Err(e) => accept_error(e).await,
            },
        }
    }
}

async fn handshake(stream: TcpStream, peer: SocketAddr, to: Accepting) {
    let _ = stream.set_nodelay(true);
    let attempt = async {
        if to.name == "rest" && speaks_plain_http(&stream).await {
            answer_plain_http(stream).await;
            return None;
        }
        Some(to.acceptor.accept(stream).await)
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Ok(Some(Ok(inner))) => {
            let conn = TlsConn {
                inner,
                local: to.local,
                peer,
            };
            let _ = to.ready.send(conn).await;
        }
        Ok(Some(Err(e))) => failed(&to, peer, "handshake", &e),
        Ok(None) => failed(&to, peer, "plain_http", &"plain HTTP, answered 400"),
        Err(_) => failed(&to, peer, "timeout", &"timed out"),
    }
}

/// A client's failed handshake is the client's business (an untrusted certificate, no common
/// protocol): counted, and not worth more than a debug line.
fn failed(to: &Accepting, peer: SocketAddr, reason: &'static str, e: &dyn std::fmt::Display) {
    metrics::counter!(HANDSHAKE_FAILURES_TOTAL, "listener" => to.name, "reason" => reason).increment(1);
    tracing::debug!(%peer, listener = to.name, "TLS handshake failed: {e}");
}

/// A TLS connection opens with a handshake record (0x16); an HTTP/1 request with its method's
/// capital letters.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

async fn answer_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const BODY: &str = "{\"error\":\"this port serves HTTPS (keel serve --tls-cert): use https:// and trust the server's certificate\"}";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client sent (bounded) before closing, so the close does not reset the
    // connection under the answer.
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while let Ok(n @ 1..) = stream.read(&mut sink).await {
        left = left.saturating_sub(n);
        if left == 0 {
            break;
        }
    }
}

/// As axum's own listener: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors) is logged and retried a second later.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
