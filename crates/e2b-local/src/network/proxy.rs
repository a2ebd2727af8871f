//! The transparent egress proxy: the firewall redirects a sandbox's outbound HTTP and TLS
//! connections here (`SO_ORIGINAL_DST` keeps the destination), and the proxy names each one by
//! its HTTP `Host` or TLS SNI, decides it with the sandbox's [`EgressRules`], and then relays it
//! to the original destination address, never to a re-resolved name: the sandbox chose the
//! address.
//!
//! - Denied: an HTTP client gets `403 Forbidden` with a short text body naming the host and the
//!   reason; anything else is reset. Each denial is logged.
//! - Without header rules a connection is decided once, by its first request's `Host` or its
//!   SNI, and then relayed as bytes.
//! - Plain HTTP when the sandbox has header rules: every request on the connection is parsed
//!   (hyper), decided by its own `Host`, and forwarded with its host's rule headers set. Over
//!   plain HTTP nothing proves who the destination is: a sandbox can send `Host: api.test` to any
//!   address it may reach, and the rule's headers go there.
//! - HTTPS to a host with a header rule, when [`EgressProxy::intercept_https`] is set: the proxy
//!   terminates the sandbox's TLS with a certificate from its own [`InterceptCa`] (which the
//!   sandbox trusts), opens its own TLS to the destination verifying the real certificate for
//!   the SNI name, and then relays HTTP/1.1 as above; requests whose `Host` is not the SNI name
//!   get `421`. Without interception such traffic passes through unmodified.
//! - A sandbox with an `egressProxy` has all its TCP redirected here. After the rules allowed
//!   a connection, the proxy opens it through that SOCKS5 proxy (TLS to it and RFC 1929
//!   credentials when configured) instead of directly: the CONNECT names the destination by
//!   the `Host`/SNI when an allowOut domain allowed it (the SOCKS proxy resolves it, E2B's
//!   "remote DNS"), else by the address the sandbox chose. Names are read on ports
//!   [`NAMED_PORTS`] only, so server-speaks-first protocols on other ports are not held up. A
//!   denied connection never reaches the SOCKS proxy. When the SOCKS proxy cannot be used
//!   (unreachable, TLS, credentials, not SOCKS5) the sandbox's connection is reset and the
//!   error goes to the sandbox's log ([`Policies::set_logger`]); there is no direct fallback.
//! - Replacing a sandbox's rules ([`Policies::set`]) cuts its open connections the new rules
//!   deny, and those whose way out (direct, or which `egressProxy`) changed;
//!   [`Policies::remove`] cuts them all.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use super::rules::{EgressProxyConfig, EgressRules, Verdict};

/// Most bytes read from a connection to find its `Host` or SNI; past this it is unnamed.
pub const PREAMBLE_LIMIT: usize = 16 * 1024;
/// Longest wait for those bytes; past this the connection is unnamed (server-speaks-first
/// protocols end up here).
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the original destination to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a denied HTTP client's leftover request bytes are read after the `403`, so that
/// closing does not reset the connection before the client reads the answer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Buffer size per direction of a relayed connection.
const RELAY_BUFFER: usize = 32 * 1024;
/// The ports whose connections the proxy names by HTTP `Host` or TLS SNI when it gets every
/// port of a sandbox (one with an `egressProxy`): where nearly all named traffic is, and
/// protocols where the server speaks first (SSH, SMTP) are rare.
pub const NAMED_PORTS: [u16; 2] = [80, 443];

type SandboxRules = Option<Arc<EgressRules>>;

/// Writes one line to a sandbox's own log (what `GET /sandboxes/{id}/logs` shows), at a level.
pub type SandboxLogger = Arc<dyn Fn(tracing::Level, &str) + Send + Sync>;

/// The egress rules of each sandbox, by the sandbox's source address. Shared by the API (which
/// sets them) and the proxy (which reads them per connection and watches for changes).
///
/// ```
/// use std::{net::Ipv4Addr, sync::Arc};
/// use e2b_local::network::{proxy::Policies, rules::{EgressRules, NetworkRequest}};
///
/// let policies = Policies::new();
/// let sandbox = Ipv4Addr::new(10, 11, 0, 2);
/// let rules = EgressRules::from_request(Some(false), &NetworkRequest::default()).unwrap();
/// policies.set(sandbox, Arc::new(rules));
/// assert!(policies.get(sandbox).is_some());
/// policies.remove(sandbox);
/// assert!(policies.get(sandbox).is_none());
/// ```
#[derive(Default)]
pub struct Policies {
    sandboxes: Mutex<HashMap<Ipv4Addr, watch::Sender<SandboxRules>>>,
    loggers: Mutex<HashMap<Ipv4Addr, SandboxLogger>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("sandboxes", &self.sandboxes)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// No sandboxes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the rules of the sandbox at `sandbox`; its open connections that the
    /// new rules deny are cut.
    pub fn set(&self, sandbox: Ipv4Addr, rules: Arc<EgressRules>) {
        match self.lock().entry(sandbox) {
            Entry::Occupied(entry) => {
                entry.get().send_replace(Some(rules));
            }
            Entry::Vacant(entry) => {
                entry.insert(watch::Sender::new(Some(rules)));
            }
        }
    }

    /// Where the proxy writes what the sandbox at `sandbox` should know (its `egressProxy`
    /// failing), until [`Policies::remove`].
    pub fn set_logger(&self, sandbox: Ipv4Addr, logger: SandboxLogger) {
        self.loggers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sandbox, logger);
    }

    /// Forgets the sandbox at `sandbox` and cuts all its open connections.
    pub fn remove(&self, sandbox: Ipv4Addr) {
        self.loggers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sandbox);
        if let Some(sender) = self.lock().remove(&sandbox) {
            sender.send_replace(None);
        }
    }

    fn logger(&self, sandbox: Ipv4Addr) -> Option<SandboxLogger> {
        self.loggers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sandbox)
            .cloned()
    }

    /// The current rules of the sandbox at `sandbox`.
    pub fn get(&self, sandbox: Ipv4Addr) -> Option<Arc<EgressRules>> {
        self.lock()
            .get(&sandbox)
            .and_then(|sender| sender.borrow().clone())
    }

    fn subscribe(&self, sandbox: Ipv4Addr) -> Option<watch::Receiver<SandboxRules>> {
        self.lock().get(&sandbox).map(watch::Sender::subscribe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Ipv4Addr, watch::Sender<SandboxRules>>> {
        // The map stays consistent whatever panicked while holding it: every change is one call.
        self.sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Most per-host certificates [`InterceptCa`] keeps; past this the cache starts over.
const MAX_CACHED_CERTIFICATES: usize = 1_024;
/// How long a per-host certificate is valid, and how long it is reused.
const LEAF_VALIDITY_DAYS: i64 = 90;
const LEAF_REUSE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The CA's subject; a CA regenerated from the same key with it verifies the old CA's leaves.
const CA_NAME: &str = "e2b-local egress proxy CA";
/// The only application protocol offered on intercepted connections.
const HTTP1_ALPN: &[u8] = b"http/1.1";

/// Why an [`InterceptCa`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterceptCaError {
    /// The CA key could not be generated or read.
    #[error("the egress proxy CA key is unusable: {0}")]
    Key(#[source] rcgen::Error),
    /// The CA certificate could not be made.
    #[error("could not make the egress proxy CA certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The TLS server configuration could not be made.
    #[error("could not configure TLS for the egress proxy CA: {0}")]
    Tls(#[source] rustls::Error),
}

/// The certificate authority the egress proxy signs per-host certificates with when it
/// terminates HTTPS for header rules. Each sandbox must trust [`InterceptCa::cert_pem`].
///
/// ```
/// use e2b_local::network::proxy::InterceptCa;
///
/// let ca = InterceptCa::generate().unwrap();
/// assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// // Keep the key to make the same CA after a restart: sandboxes keep trusting it.
/// let again = InterceptCa::from_key_pem(&ca.key_pem()).unwrap();
/// assert_eq!(again.key_pem(), ca.key_pem());
/// ```
pub struct InterceptCa {
    cert_pem: String,
    key_pem: String,
    /// Presents [`LeafIssuer`]'s certificates to sandboxes.
    server_config: Arc<rustls::ServerConfig>,
}

/// Makes (and caches) the per-host certificates a sandbox is shown.
struct LeafIssuer {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    leaves: Mutex<HashMap<String, (std::time::Instant, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for LeafIssuer {
    // Holds the CA key: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafIssuer").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for InterceptCa {
    // The key is a secret: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptCa").finish_non_exhaustive()
    }
}

impl InterceptCa {
    /// A new CA with a new key.
    ///
    /// # Errors
    /// [`InterceptCaError`] if the key or certificate cannot be made.
    pub fn generate() -> Result<Self, InterceptCaError> {
        Self::from_key(rcgen::KeyPair::generate().map_err(InterceptCaError::Key)?)
    }

    /// The CA of a key saved from [`InterceptCa::key_pem`]: certificates it signs verify
    /// against the CA certificate first made with that key.
    ///
    /// # Errors
    /// [`InterceptCaError::Key`] if `key_pem` is not a PEM private key rcgen can sign with.
    pub fn from_key_pem(key_pem: &str) -> Result<Self, InterceptCaError> {
        Self::from_key(rcgen::KeyPair::from_pem(key_pem).map_err(InterceptCaError::Key)?)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Self, InterceptCaError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, CA_NAME);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(InterceptCaError::Certificate)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key_pem = key.serialize_pem();
        let leaves = LeafIssuer {
            issuer: rcgen::Issuer::new(params, key),
            ca_der: cert.der().clone(),
            provider: provider.clone(),
            leaves: Mutex::default(),
        };
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(InterceptCaError::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(leaves));
        // Requests are relayed with hyper's HTTP/1; a client offering only h2 fails the handshake.
        server_config.alpn_protocols = vec![HTTP1_ALPN.to_vec()];
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            server_config: Arc::new(server_config),
        })
    }

    /// The CA certificate, PEM: what each sandbox's trust store must hold.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM: a secret, to keep only where [`InterceptCa::from_key_pem`]
    /// reads it back.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }
}

impl LeafIssuer {
    /// The certificate presented to a sandbox for `name`, made on first use and then reused.
    fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let name = name.to_ascii_lowercase();
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made, leaf)) = leaves.get(&name)
            && made.elapsed() < LEAF_REUSE
        {
            return Ok(leaf.clone());
        }
        let leaf = Arc::new(self.make_leaf(&name)?);
        if leaves.len() >= MAX_CACHED_CERTIFICATES {
            leaves.clear();
        }
        leaves.insert(name, (std::time::Instant::now(), leaf.clone()));
        Ok(leaf)
    }

    fn make_leaf(&self, name: &str) -> Result<CertifiedKey, String> {
        use chrono::Datelike;
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        // From yesterday, so a sandbox clock a little behind still accepts it.
        let start = chrono::Utc::now().date_naive() - chrono::Days::new(1);
        let end = start + chrono::Days::new(LEAF_VALIDITY_DAYS as u64);
        // A NaiveDate's fields always form a valid calendar date, as `date_time_ymd` needs.
        params.not_before =
            rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(private)
            .map_err(|e| e.to_string())?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            signing_key,
        ))
    }
}

impl ResolvesServerCert for LeafIssuer {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name()?;
        match self.leaf(name) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                tracing::warn!(
                    name,
                    error = e,
                    "egress proxy: could not make a certificate"
                );
                None
            }
        }
    }
}

/// The destination a connection redirected by the firewall (nftables `redirect`) was sent to.
///
/// # Errors
/// The `getsockopt(SO_ORIGINAL_DST)` error: `ENOENT` for a connection conntrack did not
/// translate.
pub fn so_original_dst(stream: &TcpStream) -> io::Result<SocketAddrV4> {
    let addr = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst)?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

/// The transparent egress proxy's settings; [`EgressProxy::serve`] runs it.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use std::sync::Arc;
/// use e2b_local::network::proxy::{EgressProxy, Policies, so_original_dst};
///
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:15001").await?;
/// let policies = Arc::new(Policies::new());
/// tokio::spawn(EgressProxy::new().serve(listener, policies, so_original_dst, |dst| {
///     dst.is_link_local() || dst.is_loopback()
/// }));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct EgressProxy {
    preamble_timeout: Duration,
    connect_timeout: Duration,
    interception: Option<Arc<Interception>>,
    /// Verifies `egressProxy`s reached over TLS that bring no `caCert` of their own.
    tunnel_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for EgressProxy {
    fn default() -> Self {
        Self {
            preamble_timeout: PREAMBLE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            interception: None,
            tunnel_tls: None,
        }
    }
}

/// TLS on both sides of an intercepted HTTPS connection.
struct Interception {
    /// Terminates the sandbox's TLS with certificates from the [`InterceptCa`].
    acceptor: tokio_rustls::TlsAcceptor,
    /// Opens TLS to the destination, verifying its certificate.
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Interception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interception").finish_non_exhaustive()
    }
}

impl EgressProxy {
    /// The default settings ([`PREAMBLE_TIMEOUT`], [`CONNECT_TIMEOUT`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for a connection's first bytes before deciding it unnamed.
    pub fn preamble_timeout(mut self, timeout: Duration) -> Self {
        self.preamble_timeout = timeout;
        self
    }

    /// How long to wait for the original destination to accept.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Applies header rules to HTTPS too, by terminating TLS for hosts that have one: the
    /// sandbox gets a certificate from `ca` (so its trust store must hold [`InterceptCa::cert_pem`])
    /// and the proxy connects to the destination with `upstream`, which must verify server
    /// certificates (e.g. the system's roots). Only HTTP/1.1 is offered on both sides.
    pub fn intercept_https(mut self, ca: &InterceptCa, upstream: &rustls::ClientConfig) -> Self {
        let mut client = upstream.clone();
        client.alpn_protocols = vec![HTTP1_ALPN.to_vec()];
        self.interception = Some(Arc::new(Interception {
            acceptor: tokio_rustls::TlsAcceptor::from(ca.server_config.clone()),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        }));
        self
    }

    /// How the proxy verifies an `egressProxy` it reaches over TLS whose `tls.caCert` is not
    /// set: `config` must verify server certificates (e.g. the system's roots). Without it such
    /// a proxy cannot be used (its connections fail, with the reason in the sandbox's log).
    pub fn tunnel_tls(mut self, config: &rustls::ClientConfig) -> Self {
        self.tunnel_tls = Some(Arc::new(config.clone()));
        self
    }

    /// Accepts and relays connections until the future is dropped (connections in progress
    /// continue).
    ///
    /// - `original_dst` gives an accepted connection's real destination ([`so_original_dst`]).
    /// - `forbidden` says which destinations no rule may open (the host's own addresses, other
    ///   sandboxes, link-local): they are denied whatever the sandbox's rules say.
    ///
    /// A connection from an address with no [`Policies`] entry is closed.
    pub async fn serve<D, F>(
        self,
        listener: TcpListener,
        policies: Arc<Policies>,
        original_dst: D,
        forbidden: F,
    ) where
        D: Fn(&TcpStream) -> io::Result<SocketAddrV4> + Send + Sync + 'static,
        F: Fn(Ipv4Addr) -> bool + Send + Sync + 'static,
    {
        let settings = Arc::new(self);
        let forbidden = Arc::new(forbidden);
        let own_addr = listener.local_addr().ok();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let source = match peer {
                SocketAddr::V4(v4) => *v4.ip(),
                SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                    Some(v4) => v4,
                    None => continue,
                },
            };
            let Some(rules) = policies.subscribe(source) else {
                tracing::debug!(%source, "egress proxy: connection from an unknown source");
                reset(stream);
                continue;
            };
            let dst = match original_dst(&stream) {
                // A connection made to the proxy itself, not redirected to it: relaying it would
                // loop.
                Ok(dst) if Some(SocketAddr::V4(dst)) == own_addr => {
                    reset(stream);
                    continue;
                }
                Ok(dst) => dst,
                Err(e) => {
                    tracing::warn!(%source, error = %e, "egress proxy: no original destination");
                    reset(stream);
                    continue;
                }
            };
            let connection = Connection {
                settings: settings.clone(),
                source,
                dst,
                rules,
                forbidden: forbidden.clone(),
                logger: policies.logger(source),
                route: None,
            };
            tokio::spawn(connection.run(stream));
        }
    }
}

/// What the first bytes of a connection say it is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Preamble {
    /// A TLS ClientHello, with its SNI.
    Tls(Option<String>),
    /// An HTTP/1 request, with its `Host` (port removed).
    Http(Option<String>),
    /// Neither, or not readable in time.
    Unknown,
}

impl Preamble {
    fn name(&self) -> Option<&str> {
        match self {
            Self::Tls(name) | Self::Http(name) => name.as_deref(),
            Self::Unknown => None,
        }
    }
}

/// Classifies the bytes read so far; `None` when more are needed.
fn classify(bytes: &[u8], complete: bool) -> Option<Preamble> {
    match bytes.first()? {
        // A TLS handshake record.
        0x16 => classify_tls(bytes, complete),
        b'A'..=b'Z' => classify_http(bytes, complete),
        _ => Some(Preamble::Unknown),
    }
}

fn classify_tls(bytes: &[u8], complete: bool) -> Option<Preamble> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Some(Preamble::Tls(None)),
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Some(Preamble::Tls(
            accepted.client_hello().server_name().map(str::to_string),
        )),
        Ok(None) if !complete => None,
        Ok(None) | Err(_) => Some(Preamble::Tls(None)),
    }
}

fn classify_http(bytes: &[u8], complete: bool) -> Option<Preamble> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Some(Preamble::Http(
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(host_name),
        )),
        Ok(httparse::Status::Partial) if !complete => None,
        // Cut short, or too many headers to find the Host: still HTTP, so a denial is a 403.
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Some(Preamble::Http(None))
        }
        Err(_) => Some(Preamble::Unknown),
    }
}

/// The name in a `Host` value: without the port, and without the brackets of an IPv6 literal.
fn host_name(host: &str) -> String {
    let host = host.trim();
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default().to_string();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host.to_string(),
    }
}

/// Reads until the preamble is classified, [`PREAMBLE_LIMIT`] bytes are read, the client stops
/// sending (EOF) or `deadline` passes. `Ok(None)`: the client closed without sending anything.
async fn read_preamble(
    stream: &mut TcpStream,
    deadline: Instant,
) -> io::Result<Option<(Preamble, Vec<u8>)>> {
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0; 4096];
    loop {
        let room = PREAMBLE_LIMIT - bytes.len();
        let read = match tokio::time::timeout_at(
            deadline,
            stream.read(&mut chunk[..room.min(4096)]),
        )
        .await
        {
            Ok(read) => Some(read?),
            Err(_) => None,
        };
        match read {
            Some(0) if bytes.is_empty() => return Ok(None),
            Some(n) if n > 0 => {
                bytes.extend_from_slice(&chunk[..n]);
                let complete = bytes.len() == PREAMBLE_LIMIT;
                if let Some(preamble) = classify(&bytes, complete) {
                    return Ok(Some((preamble, bytes)));
                }
            }
            // EOF after some bytes, or the deadline: decide with what there is.
            _ => {
                let preamble = classify(&bytes, true).unwrap_or(Preamble::Unknown);
                return Ok(Some((preamble, bytes)));
            }
        }
    }
}

/// A connection's way to its destination: a TCP stream, or a SOCKS5 tunnel (maybe in TLS).
trait UpstreamIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpstreamIo for T {}
type Upstream = Box<dyn UpstreamIo>;

/// Why a connection through a sandbox's `egressProxy` could not be opened.
#[derive(Debug)]
enum TunnelError {
    /// The SOCKS proxy itself failed (unreachable, TLS, credentials, not SOCKS5).
    Proxy(String),
    /// The SOCKS proxy answered that it could not open the connection.
    Destination(String),
}

struct Connection<F> {
    settings: Arc<EgressProxy>,
    source: Ipv4Addr,
    dst: SocketAddrV4,
    rules: watch::Receiver<SandboxRules>,
    forbidden: Arc<F>,
    logger: Option<SandboxLogger>,
    /// The `egressProxy` the connection was opened through (`None`: directly); when the
    /// sandbox's changes, the connection is cut.
    route: Option<EgressProxyConfig>,
}

impl<F: Fn(Ipv4Addr) -> bool + Send + Sync + 'static> Connection<F> {
    async fn run(mut self, mut client: TcpStream) {
        let rules = self.rules.borrow().clone();
        self.route = rules.as_ref().and_then(|r| r.egress_proxy().cloned());
        // Without a tunnel only ports 80 and 443 are redirected here; with one every port is,
        // and the ports where names are rare are decided by address at once.
        let named = self.route.is_none() || NAMED_PORTS.contains(&self.dst.port());
        let (preamble, bytes) = if named {
            let deadline = Instant::now() + self.settings.preamble_timeout;
            match read_preamble(&mut client, deadline).await {
                Ok(Some(read)) => read,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(source = %self.source, error = %e, "egress proxy: read failed");
                    return;
                }
            }
        } else {
            (Preamble::Unknown, Vec::new())
        };
        let name = preamble.name().map(str::to_string);
        let verdict = self.decide(name.as_deref());
        if let Verdict::Deny(reason) = &verdict {
            self.log_denial(name.as_deref(), reason);
            if matches!(preamble, Preamble::Http(_)) {
                deny_http(client, name.as_deref(), *self.dst.ip(), reason).await;
            } else {
                reset(client);
            }
            return;
        }
        // The rules may have changed while the preamble was read: the connection goes the way
        // they say now.
        let rules = self.rules.borrow().clone();
        self.route = rules.as_ref().and_then(|r| r.egress_proxy().cloned());
        let upstream = match &self.route {
            None => self.connect_directly().await,
            Some(proxy) => {
                // The SOCKS proxy resolves a name only an allowOut domain allowed; any other
                // connection goes to the address the sandbox chose.
                let domain = name.as_deref().filter(|n| {
                    rules
                        .as_ref()
                        .is_some_and(|r| r.allowing_domain(n).is_some())
                });
                self.connect_through(proxy, domain).await
            }
        };
        let Some(upstream) = upstream else {
            reset(client);
            return;
        };
        let _ = client.set_nodelay(true);
        let has_header_rules = rules.as_ref().is_some_and(|r| r.has_header_rules());
        let client = ReplayStream {
            replay: bytes,
            replayed: 0,
            inner: client,
        };
        match (&preamble, &self.settings.interception) {
            (Preamble::Http(_), _) if has_header_rules => {
                self.relay_http(client, upstream, name, None).await;
            }
            (Preamble::Tls(Some(sni)), Some(interception))
                if rules.as_ref().and_then(|r| r.transform_for(sni)).is_some() =>
            {
                let interception = interception.clone();
                let sni = sni.clone();
                self.intercept(&interception, client, upstream, sni).await;
            }
            _ => self.relay_bytes(client, upstream, name).await,
        }
    }

    /// A TCP connection to the destination, or `None` (logged) when it failed.
    async fn connect_directly(&self) -> Option<Upstream> {
        match timeout(self.settings.connect_timeout, TcpStream::connect(self.dst)).await {
            Ok(Ok(upstream)) => {
                let _ = upstream.set_nodelay(true);
                Some(Box::new(upstream))
            }
            Ok(Err(e)) => {
                tracing::debug!(source = %self.source, dst = %self.dst, error = %e, "egress proxy: connect failed");
                None
            }
            Err(_) => {
                tracing::debug!(source = %self.source, dst = %self.dst, "egress proxy: connect timed out");
                None
            }
        }
    }

    /// A tunnel to the destination (`domain`, else the address) through the SOCKS5 `proxy`, or
    /// `None` when it failed: then the reason is in the server's and the sandbox's log.
    async fn connect_through(
        &self,
        proxy: &EgressProxyConfig,
        domain: Option<&str>,
    ) -> Option<Upstream> {
        let target = match domain {
            Some(name) => format!("{name}:{}", self.dst.port()),
            None => self.dst.to_string(),
        };
        let opened = timeout(
            self.settings.connect_timeout,
            tunnel(proxy, self.settings.tunnel_tls.as_ref(), domain, self.dst),
        )
        .await
        .unwrap_or_else(|_| {
            Err(TunnelError::Proxy(format!(
                "timed out after {:?}",
                self.settings.connect_timeout
            )))
        });
        let (level, message) = match opened {
            Ok(upstream) => return Some(upstream),
            Err(TunnelError::Proxy(e)) => (
                tracing::Level::ERROR,
                format!(
                    "egress proxy: connection to {target} reset: egressProxy {} failed: {e}",
                    proxy.address
                ),
            ),
            Err(TunnelError::Destination(e)) => (
                tracing::Level::WARN,
                format!(
                    "egress proxy: connection to {target} reset: egressProxy {} could not open it: {e}",
                    proxy.address
                ),
            ),
        };
        tracing::warn!(sandbox = %self.source, "{message}");
        if let Some(logger) = &self.logger {
            logger(level, &message);
        }
        None
    }

    /// Terminates the sandbox's TLS and opens the proxy's own to the destination, verified for
    /// `sni`, then relays HTTP with header rules.
    async fn intercept(
        self,
        interception: &Interception,
        client: ReplayStream,
        upstream: Upstream,
        sni: String,
    ) {
        let Ok(server_name) = ServerName::try_from(sni.clone()) else {
            return;
        };
        let handshakes = async {
            let upstream = interception
                .connector
                .connect(server_name, upstream)
                .await
                .map_err(|e| format!("TLS to the destination failed: {e}"))?;
            let client = interception
                .acceptor
                .accept(client)
                .await
                .map_err(|e| format!("TLS from the sandbox failed: {e}"))?;
            Ok::<_, String>((client, upstream))
        };
        match timeout(self.settings.connect_timeout, handshakes).await {
            Ok(Ok((client, upstream))) => {
                self.relay_http(client, upstream, Some(sni.clone()), Some(sni))
                    .await;
            }
            Ok(Err(e)) => {
                tracing::info!(sandbox = %self.source, dst = %self.dst, name = sni, error = e, "egress proxy: interception failed");
            }
            Err(_) => {
                tracing::info!(sandbox = %self.source, dst = %self.dst, name = sni, "egress proxy: interception timed out");
            }
        }
    }

    fn decide(&self, name: Option<&str>) -> Verdict {
        decide(&self.rules.borrow(), &*self.forbidden, *self.dst.ip(), name)
    }

    fn log_denial(&self, name: Option<&str>, reason: &str) {
        tracing::info!(
            sandbox = %self.source,
            dst = %self.dst,
            name = name.unwrap_or("-"),
            reason,
            "egress proxy: denied"
        );
    }

    /// Resolves when the sandbox's rules change so that this connection is denied or must
    /// leave another way (its `egressProxy` changed), or are removed; gives the reason.
    async fn cut(&mut self, name: Option<&str>) -> String {
        loop {
            if self.rules.changed().await.is_err() {
                return "the sandbox's rules were removed".into();
            }
            let rules = self.rules.borrow_and_update().clone();
            if rules.as_ref().and_then(|r| r.egress_proxy()) != self.route.as_ref() {
                return "the sandbox's egressProxy changed".into();
            }
            if let Verdict::Deny(reason) = decide(&rules, &*self.forbidden, *self.dst.ip(), name) {
                return reason;
            }
        }
    }

    async fn relay_bytes(
        mut self,
        mut client: ReplayStream,
        mut upstream: Upstream,
        name: Option<String>,
    ) {
        let relay = relay(&mut client, &mut upstream);
        tokio::select! {
            result = relay => {
                if let Err(e) = result {
                    tracing::debug!(source = %self.source, dst = %self.dst, error = %e, "egress proxy: relay ended");
                }
            }
            reason = self.cut(name.as_deref()) => {
                self.log_denial(name.as_deref(), &format!("cut: {reason}"));
                reset(client.inner);
            }
        }
    }

    /// Relays HTTP/1 request by request, deciding each by its `Host` and applying the header
    /// rule of that host. A request the destination upgrades (`101`, e.g. a WebSocket) turns the
    /// connection into a byte relay. `tls_name`: the name the destination proved over TLS; every
    /// request's `Host` must be it.
    async fn relay_http<C, U>(
        mut self,
        client: C,
        upstream: U,
        name: Option<String>,
        tls_name: Option<String>,
    ) where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, upstream_conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
                Ok(handshake) => handshake,
                Err(e) => {
                    tracing::debug!(error = %e, "egress proxy: upstream handshake failed");
                    return;
                }
            };
        // The upstream connection runs on its own so that a response body it has read keeps
        // reaching the client after it closes; it ends with this relay.
        let mut upstream_conn = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = upstream_conn.with_upgrades().await {
                tracing::debug!(error = %e, "egress proxy: upstream connection ended");
            }
        }));
        let (upgrade_tx, mut upgrade_rx) = tokio::sync::mpsc::channel(1);
        let exchange = Arc::new(Exchange {
            source: self.source,
            dst: self.dst,
            rules: self.rules.clone(),
            forbidden: self.forbidden.clone(),
            tls_name,
            sender: tokio::sync::Mutex::new(sender),
            upgrade: upgrade_tx,
        });
        let service = hyper::service::service_fn(move |request| {
            let exchange = exchange.clone();
            async move { Ok::<_, Infallible>(exchange.forward(request).await) }
        });
        let server = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(client), service)
            .with_upgrades();
        let mut server = std::pin::pin!(server);
        let mut upstream_open = true;
        loop {
            tokio::select! {
                result = server.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(source = %self.source, dst = %self.dst, error = %e, "egress proxy: http relay ended");
                    }
                    break;
                }
                _ = &mut upstream_conn.0, if upstream_open => {
                    // The destination closed (or upgraded): finish the exchange in flight, then
                    // close the client's side too, as a direct connection would end.
                    upstream_open = false;
                    server.as_mut().graceful_shutdown();
                }
                reason = self.cut(name.as_deref()) => {
                    self.log_denial(name.as_deref(), &format!("cut: {reason}"));
                    return;
                }
            }
        }
        let Ok((client_upgrade, upstream_upgrade)) = upgrade_rx.try_recv() else {
            return;
        };
        let tunnel = async {
            let (client, upstream) =
                tokio::try_join!(client_upgrade, upstream_upgrade).map_err(io::Error::other)?;
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            relay(&mut client, &mut upstream).await
        };
        tokio::select! {
            result = tunnel => {
                if let Err(e) = result {
                    tracing::debug!(source = %self.source, dst = %self.dst, error = %e, "egress proxy: upgraded relay ended");
                }
            }
            reason = self.cut(name.as_deref()) => {
                self.log_denial(name.as_deref(), &format!("cut: {reason}"));
            }
        }
    }
}

/// What each request of a parsed HTTP connection needs.
struct Exchange<F> {
    source: Ipv4Addr,
    dst: SocketAddrV4,
    rules: watch::Receiver<SandboxRules>,
    forbidden: Arc<F>,
    /// The name an intercepted destination proved over TLS.
    tls_name: Option<String>,
    sender: tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>,
    /// Both ends of an upgraded exchange, for the relay to join once hyper lets go.
    upgrade: tokio::sync::mpsc::Sender<(hyper::upgrade::OnUpgrade, hyper::upgrade::OnUpgrade)>,
}

impl<F: Fn(Ipv4Addr) -> bool + Send + Sync + 'static> Exchange<F> {
    async fn forward(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .map(host_name);
        if let Some(tls_name) = &self.tls_name
            && !host
                .as_deref()
                .is_some_and(|host| host.trim_end_matches('.').eq_ignore_ascii_case(tls_name))
        {
            // The rule's headers may only reach the server that proved the rule's name.
            return text_response(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "e2b-local egress proxy: this connection is to {tls_name}, not to {}\n",
                    host.as_deref().unwrap_or("an unnamed host")
                ),
            );
        }
        let rules = self.rules.borrow().clone();
        let dst = *self.dst.ip();
        if let Verdict::Deny(reason) = decide(&rules, &*self.forbidden, dst, host.as_deref()) {
            tracing::info!(
                sandbox = %self.source,
                dst = %self.dst,
                name = host.as_deref().unwrap_or("-"),
                reason,
                "egress proxy: denied"
            );
            return text_response(
                StatusCode::FORBIDDEN,
                denial_body(host.as_deref(), dst, &reason),
            );
        }
        if let (Some(rules), Some(host)) = (&rules, &host)
            && let Some(transform) = rules.transform_for(host)
        {
            for (name, value) in transform.headers() {
                // Both were validated with the same types when the rules were made.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    request.headers_mut().insert(name, value);
                }
            }
        }
        let client_upgrade = request
            .headers()
            .contains_key(header::UPGRADE)
            .then(|| hyper::upgrade::on(&mut request));
        let mut sender = self.sender.lock().await;
        if sender.ready().await.is_err() {
            return text_response(
                StatusCode::BAD_GATEWAY,
                "e2b-local egress proxy: the destination closed the connection\n".into(),
            );
        }
        let mut response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    format!("e2b-local egress proxy: the destination failed: {e}\n"),
                );
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            // One upgrade per connection: nothing follows it on either side.
            let _ = self.upgrade.try_send((client_upgrade, upstream_upgrade));
        }
        response.map(BodyExt::boxed)
    }
}

/// Opens a connection to `domain` (else `dst`), port `dst`'s, through the SOCKS5 `proxy`:
/// TCP to its address (a name resolved now), TLS when its `tls` says so (verified with its
/// `caCert`, else `host_roots`), RFC 1929 credentials when it has them.
async fn tunnel(
    proxy: &EgressProxyConfig,
    host_roots: Option<&Arc<rustls::ClientConfig>>,
    domain: Option<&str>,
    dst: SocketAddrV4,
) -> Result<Upstream, TunnelError> {
    let tcp = TcpStream::connect(proxy.address.as_str())
        .await
        .map_err(|e| TunnelError::Proxy(format!("connecting: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let target: tokio_socks::TargetAddr<'_> = match domain {
        Some(name) => tokio_socks::TargetAddr::Domain(name.into(), dst.port()),
        None => tokio_socks::TargetAddr::Ip(SocketAddr::V4(dst)),
    };
    match proxy.tls.as_ref().filter(|tls| tls.enabled) {
        None => Ok(Box::new(socks_connect(tcp, target, proxy).await?)),
        Some(tls) => {
            let config = match &tls.ca_cert {
                // Validated when the rules were made; a failure here is still reported.
                Some(pem) => Arc::new(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TunnelError::Proxy(format!("TLS: {e}")))?
                    .with_root_certificates(
                        super::rules::proxy_roots(pem).map_err(TunnelError::Proxy)?,
                    )
                    .with_no_client_auth(),
                ),
                None => host_roots.cloned().ok_or_else(|| {
                    TunnelError::Proxy("TLS: this server has no trust roots for it".into())
                })?,
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => proxy_host(&proxy.address).to_owned(),
            };
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| TunnelError::Proxy(format!("TLS: server name {name:?}: {e}")))?;
            let tls_stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| TunnelError::Proxy(format!("TLS: {e}")))?;
            Ok(Box::new(socks_connect(tls_stream, target, proxy).await?))
        }
    }
}

/// The SOCKS5 handshake and CONNECT over `stream`.
async fn socks_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    target: tokio_socks::TargetAddr<'_>,
    proxy: &EgressProxyConfig,
) -> Result<tokio_socks::tcp::Socks5Stream<S>, TunnelError> {
    use tokio_socks::Error as E;
    use tokio_socks::tcp::Socks5Stream;
    let connected = match (&proxy.username, &proxy.password) {
        (Some(user), Some(password)) => {
            Socks5Stream::connect_with_password_and_socket(stream, target, user, password).await
        }
        _ => Socks5Stream::connect_with_socket(stream, target).await,
    };
    connected.map_err(|e| match e {
        // The proxy's answer to the CONNECT: it could not, or would not, open it.
        E::GeneralSocksServerFailure
        | E::ConnectionNotAllowedByRuleset
        | E::NetworkUnreachable
        | E::HostUnreachable
        | E::ConnectionRefused
        | E::TtlExpired => TunnelError::Destination(e.to_string()),
        E::NoAcceptableAuthMethods if proxy.username.is_none() => TunnelError::Proxy(
            "it accepts none of the offered authentication methods (it may need credentials)"
                .into(),
        ),
        E::PasswordAuthFailure(_) => {
            TunnelError::Proxy("it refused the username and password".into())
        }
        other => TunnelError::Proxy(format!("SOCKS5: {other}")),
    })
}

/// The host of a validated `host:port` (brackets of an IPv6 literal removed).
fn proxy_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies both ways until both sides are done.
async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    // Larger than tokio's 8 KiB default: fewer syscalls per byte on bulk transfers.
    tokio::io::copy_bidirectional_with_sizes(a, b, RELAY_BUFFER, RELAY_BUFFER).await
}

/// A forbidden destination is denied first; then the sandbox's rules decide.
fn decide(
    rules: &SandboxRules,
    forbidden: &(dyn Fn(Ipv4Addr) -> bool + Sync),
    dst: Ipv4Addr,
    name: Option<&str>,
) -> Verdict {
    if forbidden(dst) {
        return Verdict::Deny(format!("{dst} is never reachable from a sandbox"));
    }
    match rules {
        Some(rules) => rules.decide(dst, name),
        None => Verdict::Deny("the sandbox's rules were removed".into()),
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn denial_body(name: Option<&str>, dst: Ipv4Addr, reason: &str) -> String {
    format!(
        "e2b-local egress proxy: access to {} ({dst}) is denied: {reason}\n",
        name.unwrap_or("an unnamed host")
    )
}

fn text_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::FORBIDDEN {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Answers a denied HTTP connection with `403` and closes it.
async fn deny_http(mut client: TcpStream, name: Option<&str>, dst: Ipv4Addr, reason: &str) {
    let body = denial_body(name, dst, reason);
    let head = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if client.write_all(head.as_bytes()).await.is_err()
        || client.write_all(body.as_bytes()).await.is_err()
        || client.shutdown().await.is_err()
    {
        return;
    }
    // Closing with unread bytes would reset the connection and could destroy the answer before
    // the client reads it.
    let mut sink = [0; 4096];
    let _ = timeout(DRAIN_TIMEOUT, async {
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Closes with a TCP reset, as a refused connection would look.
fn reset(stream: TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger);
    drop(stream);
}

/// The client's stream with the bytes already read for the preamble put back in front.
struct ReplayStream {
    replay: Vec<u8>,
    replayed: usize,
    inner: TcpStream,
}

impl AsyncRead for ReplayStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReplayStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("a.test"), "a.test");
        assert_eq!(host_name(" a.test:8080 "), "a.test");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("a.test:"), "a.test");
    }

    #[test]
    fn classifies_http() {
        let request = b"GET / HTTP/1.1\r\nHost: A.test:80\r\nUser-Agent: x\r\n\r\n";
        assert_eq!(
            classify(request, false),
            Some(Preamble::Http(Some("A.test".into())))
        );
        assert_eq!(classify(&request[..20], false), None);
        assert_eq!(classify(&request[..20], true), Some(Preamble::Http(None)));
        assert_eq!(
            classify(b"GET / HTTP/1.0\r\n\r\n", false),
            Some(Preamble::Http(None))
        );
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH\r\n", false),
            Some(Preamble::Unknown)
        );
        assert_eq!(classify(b"\x00\x01", false), Some(Preamble::Unknown));
        assert_eq!(classify(b"", true), None);
    }

    #[test]
    fn classifies_garbage_tls_as_unnamed_tls() {
        assert_eq!(
            classify(b"\x16\x03\x01\x00\x05hello", false),
            Some(Preamble::Tls(None))
        );
        assert_eq!(classify(b"\x16\x03", false), None);
        assert_eq!(classify(b"\x16\x03", true), Some(Preamble::Tls(None)));
    }

    #[tokio::test]
    async fn original_dst_of_an_untranslated_connection_is_an_error_or_itself() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Without NAT conntrack either has no entry (ENOENT) or its original tuple is the
        // connection itself.
        match so_original_dst(&accepted) {
            Ok(dst) => assert_eq!(SocketAddr::V4(dst), addr),
            Err(e) => assert!(
                matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOENT | nix::libc::ENOPROTOOPT)
                ),
                "{e}"
            ),
        }
    }
}
