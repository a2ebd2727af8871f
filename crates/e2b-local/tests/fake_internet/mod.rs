//! A "fake internet" for the network tests: every packet stays in namespaces the test
//! made. Two network namespaces joined by a veth pair:
//!
//! ```text
//!  [ uplink netns: the server under test ]  198.51.100.2 ── 198.51.100.1  [ internet netns ]
//!    default route → 198.51.100.1                                           203.0.113.10 HTTP :80 (+ POST /sink), HTTPS :443, echo :7
//!                                                                           203.0.113.11 HTTP :80, echo :7
//!                                                                           203.0.113.53 DNS :53
//!                                                                           203.0.113.80 SOCKS5 :1080 (credentials),
//!                                                                             :1081 (none), :1443 (credentials, in TLS)
//! ```
//!
//! The internet namespace has no route anywhere else, and the uplink namespace's only way
//! out is the veth: nothing reaches the machine's own network. The test's code runs on
//! threads that joined the uplink namespace ([`FakeInternet::run`]), so the in-process
//! server, its `nft`/`conntrack` children and the test's HTTP client all live there.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::CloneFlags;

/// The uplink's address on the fake internet (sandboxes are NATed to it).
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The fake internet's side of the link.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Web server A: HTTP on 80, HTTPS on 443 (SNI `a.test`, `b.test`, certificates of
/// [`FakeInternet::ca`]), echo on 7.
pub const SERVER_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Web server B: HTTP on 80, echo on 7.
pub const SERVER_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// SERVER_A's UDP port that records every datagram ([`Servers::udp_received`]).
pub const UDP_LOG_PORT: u16 = 9999;
/// The fake internet's DNS server.
pub const DNS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
/// The fake internet's SOCKS5 servers ([`SOCKS_PORT`], [`SOCKS_OPEN_PORT`],
/// [`SOCKS_TLS_PORT`]); each tunnel it opens is recorded ([`Servers::socks_tunneled`]).
pub const SOCKS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
/// SOCKS5 requiring [`SOCKS_USER`] and [`SOCKS_PASSWORD`] (RFC 1929).
pub const SOCKS_PORT: u16 = 1080;
/// SOCKS5 without authentication.
pub const SOCKS_OPEN_PORT: u16 = 1081;
/// SOCKS5 with credentials inside TLS (certificate for [`SOCKS_TLS_NAME`] by [`FakeInternet::ca`]).
pub const SOCKS_TLS_PORT: u16 = 1443;
/// The name on the TLS SOCKS server's certificate.
pub const SOCKS_TLS_NAME: &str = "socks.test";
/// The SOCKS servers' username.
pub const SOCKS_USER: &str = "e2b";
/// The SOCKS servers' password.
pub const SOCKS_PASSWORD: &str = "s3cret";

/// Names the fake DNS answers (`*.wild.test` too, with SERVER_B).
pub fn zone() -> BTreeMap<&'static str, Ipv4Addr> {
    BTreeMap::from([
        ("a.test", SERVER_A),
        ("b.test", SERVER_A),
        ("c.test", SERVER_B),
        ("x.wild.test", SERVER_B),
        ("deep.x.wild.test", SERVER_B),
        ("wild.test", SERVER_B),
    ])
}

/// Both namespaces; removed on drop.
pub struct FakeInternet {
    /// Namespace of the server under test.
    pub uplink: String,
    /// Namespace of the servers.
    pub internet: String,
    /// The fake internet's certificate authority: it signs the TLS servers' certificates.
    pub ca: std::sync::Arc<FakeCa>,
}

/// A certificate authority of the fake internet.
pub struct FakeCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Its certificate (what a client must trust).
    pub cert: rustls::pki_types::CertificateDer<'static>,
    /// The same, PEM.
    pub cert_pem: String,
}

impl FakeCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake internet CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        FakeCa {
            issuer: rcgen::Issuer::new(params, key),
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
        }
    }

    /// A certificate and key for `name`, signed by this CA.
    fn leaf(&self, name: &str) -> rustls::sign::CertifiedKey {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let key = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        rustls::sign::CertifiedKey::new(vec![cert.der().clone()], key)
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl FakeInternet {
    /// Makes both namespaces and the link between them.
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let uplink = format!("e2bt-up-{tag}");
        let internet = format!("e2bt-inet-{tag}");
        let fi = FakeInternet {
            uplink,
            internet,
            ca: std::sync::Arc::new(FakeCa::new()),
        };
        let (up, inet) = (&fi.uplink, &fi.internet);
        ip(&["netns", "add", up]);
        ip(&["netns", "add", inet]);
        let (vu, vi) = (
            format!("vu{n}x{}", std::process::id() % 10000),
            format!("vi{n}x{}", std::process::id() % 10000),
        );
        ip(&[
            "link", "add", &vu, "netns", up, "type", "veth", "peer", "name", &vi, "netns", inet,
        ]);
        for (ns, dev, addr) in [(up, &vu, "198.51.100.2/24"), (inet, &vi, "198.51.100.1/24")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&["-n", up, "route", "add", "default", "via", "198.51.100.1"]);
        for a in [SERVER_A, SERVER_B, DNS, SOCKS] {
            ip(&["-n", inet, "addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        fi
    }

    /// Runs `fut` to completion on a fresh multi-threaded runtime whose threads are in the
    /// uplink namespace (and so are the processes they spawn).
    pub fn block_on<F: std::future::Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        let ns = self.uplink.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(&ns);
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(fut)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Starts the fake internet's servers; they stop when the value is dropped.
    pub fn serve(&self) -> Servers {
        let ns = self.internet.clone();
        let ca = self.ca.clone();
        let udp_received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let received = udp_received.clone();
        let socks_tunneled = SocksLog::default();
        let tunneled = socks_tunneled.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for addr in [SERVER_A, SERVER_B] {
                    let http = tokio::net::TcpListener::bind((addr, 80)).await.unwrap();
                    tokio::spawn(async move {
                        let app = axum::Router::new()
                            .route("/sink", axum::routing::post(sink))
                            .fallback(echo_request);
                        axum::serve(http, app).await.unwrap();
                    });
                    let echo = tokio::net::TcpListener::bind((addr, 7)).await.unwrap();
                    tokio::spawn(tcp_echo(echo));
                }
                let tls = tokio::net::TcpListener::bind((SERVER_A, 443))
                    .await
                    .unwrap();
                tokio::spawn(https_echo(tls, ca.clone()));
                let dns = tokio::net::UdpSocket::bind((DNS, 53)).await.unwrap();
                tokio::spawn(dns_server(dns));
                let udp = tokio::net::UdpSocket::bind((SERVER_A, UDP_LOG_PORT))
                    .await
                    .unwrap();
                tokio::spawn(udp_log(udp, received));
                for (port, auth, tls) in [
                    (SOCKS_PORT, true, false),
                    (SOCKS_OPEN_PORT, false, false),
                    (SOCKS_TLS_PORT, true, true),
                ] {
                    let listener = tokio::net::TcpListener::bind((SOCKS, port)).await.unwrap();
                    let tls = tls.then(|| tls_acceptor(&ca, &[SOCKS_TLS_NAME]));
                    tokio::spawn(socks_server(listener, auth, tls, tunneled.clone()));
                }
                ready_tx.send(()).unwrap();
                let _ = stopped.await;
            });
        });
        ready_rx
            .recv()
            .expect("fake internet servers did not start");
        Servers {
            stop: Some(stop),
            thread: Some(thread),
            udp_received,
            socks_tunneled,
        }
    }
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        for ns in [&self.uplink, &self.internet] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// Joins the calling thread to the named network namespace.
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(f.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
}

/// The fake internet's servers, running while this lives.
pub struct Servers {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    udp_received: std::sync::Arc<std::sync::Mutex<Vec<(Ipv4Addr, String)>>>,
    socks_tunneled: SocksLog,
}

/// What the SOCKS servers tunneled, one line per connection.
pub type SocksLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Servers {
    /// Every tunnel the SOCKS servers opened, oldest first, as
    /// `"<port> <user or -> <target as requested> (<what it connected to>)"`, e.g.
    /// `"1080 e2b a.test:80 (203.0.113.10:80)"`.
    pub fn socks_tunneled(&self) -> Vec<String> {
        self.socks_tunneled.lock().unwrap().clone()
    }

    /// What reached SERVER_A's UDP port [`UDP_LOG_PORT`]: source address and payload.
    pub fn udp_received(&self) -> Vec<(Ipv4Addr, String)> {
        self.udp_received.lock().unwrap().clone()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers every request with what it received: `{"host", "method", "path", "headers"}`.
async fn echo_request(req: axum::extract::Request) -> axum::Json<serde_json::Value> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    axum::Json(serde_json::json!({
        "host": headers.get("host"),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "headers": headers,
    }))
}

/// `POST /sink`: reads the whole body and answers its length (for throughput benchmarks).
async fn sink(body: axum::body::Body) -> String {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut n = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        n += chunk.len();
    }
    n.to_string()
}

/// Records the source and payload of every datagram.
async fn udp_log(
    socket: tokio::net::UdpSocket,
    received: std::sync::Arc<std::sync::Mutex<Vec<(Ipv4Addr, String)>>>,
) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let SocketAddr::V4(from) = from {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            received.lock().unwrap().push((*from.ip(), text));
        }
    }
}

/// Echoes every byte back, per connection.
async fn tcp_echo(listener: tokio::net::TcpListener) {
    while let Ok((mut conn, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = conn.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// TLS for `names` (certificates of the fake CA, chosen by SNI).
fn tls_acceptor(ca: &FakeCa, names: &[&str]) -> tokio_rustls::TlsAcceptor {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    for name in names {
        resolver.add(name, ca.leaf(name)).unwrap();
    }
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(resolver));
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// A SOCKS5 server (fast-socks5's protocol, CONNECT only), with RFC 1929 credentials when
/// `auth`, inside TLS when `tls` is given. Names are resolved with [`zone`] only, so a tunnel
/// never leaves the fake internet; each tunnel opened is recorded in `log`.
pub async fn socks_server(
    listener: tokio::net::TcpListener,
    auth: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
    log: SocksLog,
) {
    let port = listener.local_addr().unwrap().port();
    while let Ok((stream, _)) = listener.accept().await {
        let (tls, log) = (tls.clone(), log.clone());
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        socks_session(stream, port, auth, log).await;
                    }
                }
                None => socks_session(stream, port, auth, log).await,
            }
        });
    }
}

async fn socks_session<S>(stream: S, port: u16, auth: bool, log: SocksLog)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use fast_socks5::server::Socks5ServerProtocol;
    use fast_socks5::util::target_addr::TargetAddr;
    use fast_socks5::{ReplyError, Socks5Command};
    let (proto, user) = if auth {
        let mut user = None;
        let accepted = Socks5ServerProtocol::accept_password_auth(stream, |u, p| {
            let good = u == SOCKS_USER && p == SOCKS_PASSWORD;
            user = Some(u);
            good
        })
        .await;
        match accepted {
            Ok((proto, _)) => (proto, user.unwrap_or_default()),
            Err(_) => return,
        }
    } else {
        match Socks5ServerProtocol::accept_no_auth(stream).await {
            Ok(proto) => (proto, "-".to_owned()),
            Err(_) => return,
        }
    };
    let Ok((proto, command, target)) = proto.read_command().await else {
        return;
    };
    if command != Socks5Command::TCPConnect {
        let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
        return;
    }
    let (requested, addr) = match &target {
        TargetAddr::Ip(addr) => (addr.to_string(), Some(*addr)),
        TargetAddr::Domain(name, port) => (
            format!("{name}:{port}"),
            zone()
                .get(name.as_str())
                .map(|ip| SocketAddr::from((*ip, *port))),
        ),
    };
    let Some(addr) = addr else {
        let _ = proto.reply_error(&ReplyError::HostUnreachable).await;
        return;
    };
    let Ok(mut upstream) = tokio::net::TcpStream::connect(addr).await else {
        let _ = proto.reply_error(&ReplyError::ConnectionRefused).await;
        return;
    };
    log.lock()
        .unwrap()
        .push(format!("{port} {user} {requested} ({addr})"));
    let Ok(mut client) = proto.reply_success(upstream.local_addr().unwrap()).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// HTTPS for `a.test` and `b.test` (certificates of the fake CA, chosen by SNI): answers
/// like the HTTP servers, plus `"tls": true`.
async fn https_echo(listener: tokio::net::TcpListener, ca: std::sync::Arc<FakeCa>) {
    use tower::ServiceExt as _;
    let acceptor = tls_acceptor(&ca, &["a.test", "b.test"]);
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let axum::Json(mut v) = echo_request(req).await;
        v["tls"] = serde_json::Value::Bool(true);
        axum::Json(v)
    });
    while let Ok((stream, _)) = listener.accept().await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The fake internet's DNS: A records of [`zone`], NXDOMAIN for other names.
async fn dns_server(socket: tokio::net::UdpSocket) {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
    let zone = zone();
    let mut buf = vec![0u8; 4096];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_queries(query.queries.clone());
        if let Some(q) = query.queries.first() {
            let name = q.name().to_ascii();
            match zone.get(name.trim_end_matches('.')) {
                Some(addr) if q.query_type() == RecordType::A => {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(*addr))));
                }
                Some(_) => {}
                None => reply.metadata.response_code = ResponseCode::NXDomain,
            }
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

/// `SocketAddr` of `addr:port`.
pub fn at(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((addr, port))
}
