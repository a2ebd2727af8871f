//! The egress proxy against real local servers, all on 127.0.0.0/8: an HTTP server recording the
//! headers it gets, a TLS server with two SNI names, and a TCP echo. "Sandboxes" are client
//! sockets bound to 127.0.0.x; the proxy's `original_dst` looks the destination up by the
//! client's port, as `SO_ORIGINAL_DST` would after an nftables redirect.
#![cfg(target_os = "linux")]

mod fake_internet;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2b_local::network::proxy::{EgressProxy, InterceptCa, Policies};
use e2b_local::network::rules::{EgressRules, NetworkRequest};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

const HTTP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
const TLS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 2);
const ECHO_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 3);
const SOCKS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 4);
const BANNER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 5);
const SANDBOX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER_SANDBOX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(5);

type Routes = Arc<Mutex<HashMap<u16, SocketAddrV4>>>;

struct Harness {
    proxy: SocketAddr,
    policies: Arc<Policies>,
    routes: Routes,
}

async fn harness(forbidden: fn(Ipv4Addr) -> bool, preamble_timeout: Duration) -> Harness {
    harness_with(
        EgressProxy::new().preamble_timeout(preamble_timeout),
        forbidden,
    )
    .await
}

async fn harness_with(proxy_settings: EgressProxy, forbidden: fn(Ipv4Addr) -> bool) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let policies = Arc::new(Policies::new());
    let routes = Routes::default();
    let lookup = routes.clone();
    let original_dst = move |stream: &TcpStream| {
        let port = stream.peer_addr()?.port();
        lookup
            .lock()
            .unwrap()
            .get(&port)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no route for this client"))
    };
    tokio::spawn(proxy_settings.serve(listener, policies.clone(), original_dst, forbidden));
    Harness {
        proxy,
        policies,
        routes,
    }
}

async fn default_harness() -> Harness {
    harness(|_| false, Duration::from_secs(10)).await
}

impl Harness {
    /// A connection from `sandbox` to `dst`, redirected to the proxy.
    async fn connect(&self, sandbox: Ipv4Addr, dst: SocketAddrV4) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((sandbox, 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        self.routes.lock().unwrap().insert(port, dst);
        socket.connect(self.proxy).await.unwrap()
    }

    fn set(&self, sandbox: Ipv4Addr, internet: Option<bool>, json: &str) {
        let request: NetworkRequest = serde_json::from_str(json).unwrap();
        let rules = EgressRules::from_request(internet, &request).unwrap();
        self.policies.set(sandbox, Arc::new(rules));
    }
}

/// An HTTP server answering `hello <host>` and recording each request's headers. `/close`
/// answers with `connection: close`; a request with `upgrade: echo` is switched (`101`) to a
/// byte echo.
async fn http_server() -> (SocketAddrV4, Arc<Mutex<Vec<HeaderMap>>>) {
    let listener = TcpListener::bind((HTTP_IP, 0)).await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            let service = hyper::service::service_fn(move |mut request: Request<_>| {
                let host = request.headers()["host"].to_str().unwrap().to_string();
                record.lock().unwrap().push(request.headers().clone());
                let mut response =
                    hyper::Response::new(Full::new(Bytes::from(format!("hello {host}"))));
                if request.uri().path() == "/close" {
                    response
                        .headers_mut()
                        .insert("connection", "close".parse().unwrap());
                }
                if request
                    .headers()
                    .get("upgrade")
                    .is_some_and(|u| u == "echo")
                {
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    response
                        .headers_mut()
                        .insert("connection", "upgrade".parse().unwrap());
                    response
                        .headers_mut()
                        .insert("upgrade", "echo".parse().unwrap());
                    let upgrade = hyper::upgrade::on(&mut request);
                    tokio::spawn(async move {
                        let mut io = TokioIo::new(upgrade.await.unwrap());
                        let mut buf = [0; 1024];
                        while let Ok(n @ 1..) = io.read(&mut buf).await {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen)
}

/// A TLS acceptor for `names` (each self-signed), and the roots that trust them.
fn tls_acceptor(names: &[&str]) -> (tokio_rustls::TlsAcceptor, rustls::RootCertStore) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    let mut roots = rustls::RootCertStore::empty();
    for name in names {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let key = provider.key_provider.load_private_key(key).unwrap();
        let cert_der = certified.cert.der().clone();
        roots.add(cert_der.clone()).unwrap();
        resolver
            .add(name, rustls::sign::CertifiedKey::new(vec![cert_der], key))
            .unwrap();
    }
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), roots)
}

/// A TLS server for `a.test` and `b.test` (self-signed): it writes `tls <sni>\n`, then echoes.
async fn tls_server() -> (SocketAddrV4, rustls::RootCertStore) {
    let (acceptor, roots) = tls_acceptor(&["a.test", "b.test"]);
    let listener = TcpListener::bind((TLS_IP, 0)).await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                tls.write_all(format!("tls {sni}\n").as_bytes())
                    .await
                    .unwrap();
                let mut buf = [0; 1024];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, roots)
}

fn client_config(roots: &rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth()
}

async fn tls_connect(
    stream: TcpStream,
    roots: &rustls::RootCertStore,
    name: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(roots)));
    let name = ServerName::try_from(name.to_string()).unwrap();
    timeout(WAIT, connector.connect(name, stream)).await?
}

async fn echo_server() -> SocketAddrV4 {
    let listener = TcpListener::bind((ECHO_IP, 0)).await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends one request with `host` (and `headers`) on a keep-alive client connection.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = Request::builder().uri("/path").header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = timeout(
        WAIT,
        sender.send_request(request.body(Empty::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn http_client<S>(stream: S) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn one_get(h: &Harness, dst: SocketAddrV4, host: &str) -> (StatusCode, String) {
    let mut sender = http_client(h.connect(SANDBOX, dst).await).await;
    get(&mut sender, host, &[]).await
}

/// Whether the peer closed (EOF or reset) within [`WAIT`].
async fn closed(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut buf = [0; 64];
    match timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

async fn echo_round(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    let mut buf = vec![0; message.len()];
    timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

const ONLY_ALLOWED_TEST: &str =
    r#"{"allowOut": ["allowed.test", "*.wild.test"], "denyOut": ["0.0.0.0/0"]}"#;

#[tokio::test]
async fn http_is_allowed_and_denied_by_host() {
    let h = default_harness().await;
    let (http, _) = http_server().await;
    h.set(SANDBOX, None, ONLY_ALLOWED_TEST);
    assert_eq!(
        one_get(&h, http, "allowed.test").await,
        (StatusCode::OK, "hello allowed.test".into())
    );
    assert_eq!(
        one_get(&h, http, "api.wild.test:8080").await,
        (StatusCode::OK, "hello api.wild.test:8080".into())
    );
    let denied = format!(
        "e2b-local egress proxy: access to wild.test ({HTTP_IP}) is denied: wild.test matches no allowOut domain and {HTTP_IP} is in denyOut entry 0.0.0.0/0\n"
    );
    assert_eq!(
        one_get(&h, http, "wild.test").await,
        (StatusCode::FORBIDDEN, denied)
    );
}

#[tokio::test]
async fn tls_is_allowed_and_denied_by_sni_on_the_same_ip() {
    let h = default_harness().await;
    let (tls, roots) = tls_server().await;
    h.set(SANDBOX, Some(false), r#"{"allowOut": ["a.test"]}"#);
    let mut stream = tls_connect(h.connect(SANDBOX, tls).await, &roots, "a.test")
        .await
        .unwrap();
    let mut greeting = [0; 11];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"tls a.test\n");
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"ping");
    // b.test is served by the same address, but only a.test is allowed.
    assert!(
        tls_connect(h.connect(SANDBOX, tls).await, &roots, "b.test")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn denied_name_on_an_allowed_name_s_ip_is_refused_over_http() {
    let h = default_harness().await;
    let (http, seen) = http_server().await;
    h.set(SANDBOX, Some(false), r#"{"allowOut": ["a.test"]}"#);
    assert_eq!(one_get(&h, http, "a.test").await.0, StatusCode::OK);
    assert_eq!(one_get(&h, http, "b.test").await.0, StatusCode::FORBIDDEN);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unnamed_traffic_is_decided_by_ip() {
    let h = default_harness().await;
    let echo = echo_server().await;
    h.set(
        SANDBOX,
        None,
        &format!(r#"{{"allowOut": ["{ECHO_IP}/32"], "denyOut": ["0.0.0.0/0"]}}"#),
    );
    let mut stream = h.connect(SANDBOX, echo).await;
    assert_eq!(echo_round(&mut stream, b"\x01binary").await, b"\x01binary");
    // Allowed by CIDR whatever the name says.
    let (http, _) = http_server().await;
    h.set(
        SANDBOX,
        None,
        &format!(r#"{{"allowOut": ["{HTTP_IP}"], "denyOut": ["0.0.0.0/0"]}}"#),
    );
    assert_eq!(
        one_get(&h, http, "unknown.test").await,
        (StatusCode::OK, "hello unknown.test".into())
    );
    // Not in the allowed CIDR: reset.
    let mut stream = h.connect(SANDBOX, echo).await;
    stream.write_all(b"\x01binary").await.unwrap();
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn header_rules_are_injected_per_request_and_replace_existing_headers() {
    let h = default_harness().await;
    let (http, seen) = http_server().await;
    h.set(
        SANDBOX,
        None,
        r#"{"allowOut": ["api.test", "other.test"], "denyOut": ["0.0.0.0/0"],
            "rules": {"api.test": [{"transform": {"headers": {
                "Authorization": "Bearer injected", "X-Secret": "s3cret"}}}]}}"#,
    );
    let mut sender = http_client(h.connect(SANDBOX, http).await).await;
    let sandbox_auth = [("authorization", "Bearer sandbox")];
    for _ in 0..2 {
        assert_eq!(
            get(&mut sender, "api.test", &sandbox_auth).await,
            (StatusCode::OK, "hello api.test".into())
        );
    }
    // The same connection to a host without a rule: nothing injected.
    assert_eq!(
        get(&mut sender, "other.test", &sandbox_auth).await,
        (StatusCode::OK, "hello other.test".into())
    );
    // And to a denied host: refused by the proxy, never reaching the server.
    assert_eq!(
        get(&mut sender, "denied.test", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for headers in &seen[..2] {
        assert_eq!(headers.get_all("authorization").iter().count(), 1);
        assert_eq!(headers["authorization"], "Bearer injected");
        assert_eq!(headers["x-secret"], "s3cret");
    }
    assert_eq!(seen[2]["authorization"], "Bearer sandbox");
    assert!(seen[2].get("x-secret").is_none());
}

#[tokio::test]
async fn policy_update_cuts_a_now_denied_connection_and_keeps_an_allowed_one() {
    let h = default_harness().await;
    let echo = echo_server().await;
    let allow_echo = format!(r#"{{"allowOut": ["{ECHO_IP}"], "denyOut": ["0.0.0.0/0"]}}"#);
    h.set(SANDBOX, None, &allow_echo);
    let mut stream = h.connect(SANDBOX, echo).await;
    assert_eq!(echo_round(&mut stream, b"one").await, b"one");
    // Still allowed (by another entry): the connection lives on.
    h.set(
        SANDBOX,
        None,
        r#"{"allowOut": ["127.0.0.0/8"], "denyOut": ["0.0.0.0/0"]}"#,
    );
    assert_eq!(echo_round(&mut stream, b"two").await, b"two");
    // Denied now: cut.
    h.set(SANDBOX, Some(false), "{}");
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn remove_cuts_all_of_a_sandbox_s_connections_and_only_its_own() {
    let h = default_harness().await;
    let echo = echo_server().await;
    let (tls, roots) = tls_server().await;
    h.set(SANDBOX, None, "{}");
    h.set(OTHER_SANDBOX, None, "{}");
    let mut first = h.connect(SANDBOX, echo).await;
    let mut second = h.connect(SANDBOX, echo).await;
    let mut other = h.connect(OTHER_SANDBOX, echo).await;
    let mut secure = tls_connect(h.connect(SANDBOX, tls).await, &roots, "b.test")
        .await
        .unwrap();
    for stream in [&mut first, &mut second, &mut other] {
        assert_eq!(echo_round(stream, b"hi").await, b"hi");
    }
    let mut greeting = [0; 11];
    secure.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"tls b.test\n");
    h.policies.remove(SANDBOX);
    assert!(closed(&mut first).await);
    assert!(closed(&mut second).await);
    assert!(closed(&mut secure).await);
    assert_eq!(echo_round(&mut other, b"still").await, b"still");
    // And new connections from the removed sandbox are refused.
    let mut again = h.connect(SANDBOX, echo).await;
    assert!(closed(&mut again).await);
}

#[tokio::test]
async fn unknown_source_is_closed() {
    let h = default_harness().await;
    let echo = echo_server().await;
    let mut stream = h.connect(Ipv4Addr::new(127, 0, 0, 9), echo).await;
    let _ = stream.write_all(b"hello").await;
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn forbidden_destinations_are_denied_whatever_the_rules() {
    let h = harness(
        |ip| ip == Ipv4Addr::new(127, 0, 1, 99),
        Duration::from_secs(10),
    )
    .await;
    h.set(SANDBOX, None, r#"{"allowOut": ["0.0.0.0/0", "a.test"]}"#);
    let forbidden = SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 99), 80);
    assert_eq!(
        one_get(&h, forbidden, "a.test").await,
        (
            StatusCode::FORBIDDEN,
            "e2b-local egress proxy: access to a.test (127.0.1.99) is denied: 127.0.1.99 is never reachable from a sandbox\n"
                .into()
        )
    );
}

#[tokio::test]
async fn oversized_preamble_is_unnamed_and_replayed_whole() {
    let h = default_harness().await;
    let echo = echo_server().await;
    // Allowed by default: the whole oversized head reaches the destination unchanged.
    h.set(SANDBOX, None, r#"{"allowOut": ["a.test"]}"#);
    let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 20_000));
    let mut stream = h.connect(SANDBOX, echo).await;
    assert_eq!(echo_round(&mut stream, &head).await, head);
    // Denied by default: an unnamed HTTP request gets a 403.
    h.set(SANDBOX, Some(false), r#"{"allowOut": ["a.test"]}"#);
    let mut stream = h.connect(SANDBOX, echo).await;
    stream.write_all(&head).await.unwrap();
    let mut answer = String::new();
    timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let body = format!(
        "e2b-local egress proxy: access to an unnamed host ({ECHO_IP}) is denied: {ECHO_IP} is in denyOut entry 0.0.0.0/0\n"
    );
    assert_eq!(
        answer,
        format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    );
}

#[tokio::test]
async fn silent_client_is_decided_unnamed_after_the_preamble_timeout() {
    let h = harness(|_| false, Duration::from_millis(300)).await;
    let echo = echo_server().await;
    h.set(
        SANDBOX,
        None,
        &format!(r#"{{"allowOut": ["{ECHO_IP}"], "denyOut": ["0.0.0.0/0"]}}"#),
    );
    let mut stream = h.connect(SANDBOX, echo).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(echo_round(&mut stream, b"late").await, b"late");
    // Denied when unnamed: reset after the timeout, without a byte sent.
    h.set(SANDBOX, Some(false), r#"{"allowOut": ["a.test"]}"#);
    let mut stream = h.connect(SANDBOX, echo).await;
    let started = std::time::Instant::now();
    assert!(closed(&mut stream).await);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

const API_RULE: &str = r#"{"allowOut": ["api.test"], "denyOut": ["0.0.0.0/0"],
    "rules": {"api.test": [{"transform": {"headers": {"X-Secret": "s3cret"}}}]}}"#;

#[tokio::test]
async fn with_header_rules_a_destination_close_closes_the_client_connection() {
    let h = default_harness().await;
    let (http, _) = http_server().await;
    h.set(SANDBOX, None, API_RULE);
    let mut sender = http_client(h.connect(SANDBOX, http).await).await;
    let request = Request::builder()
        .uri("/close")
        .header("host", "api.test")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello api.test");
    // The client's connection ends like the destination's did: no request can follow.
    assert!(timeout(WAIT, sender.ready()).await.unwrap().is_err());
}

/// Reads an HTTP response head, byte by byte.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = timeout(WAIT, stream.read_u8()).await.unwrap().unwrap();
        head.push(byte);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn with_header_rules_an_upgrade_becomes_a_byte_relay_that_policy_can_cut() {
    let h = default_harness().await;
    let (http, seen) = http_server().await;
    h.set(SANDBOX, None, API_RULE);
    let mut stream = h.connect(SANDBOX, http).await;
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(echo_round(&mut stream, b"tunnelled").await, b"tunnelled");
    assert_eq!(seen.lock().unwrap()[0]["x-secret"], "s3cret");
    h.set(SANDBOX, Some(false), "{}");
    assert!(closed(&mut stream).await);
}

const HTTPS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 4);

/// An HTTPS server for `api.test` and `plain.test` (self-signed) answering `hello <host> over
/// tls` and recording each request's headers; with the roots that trust it.
async fn https_server() -> (
    SocketAddrV4,
    rustls::RootCertStore,
    Arc<Mutex<Vec<HeaderMap>>>,
) {
    let (acceptor, roots) = tls_acceptor(&["api.test", "plain.test"]);
    let listener = TcpListener::bind((HTTPS_IP, 0)).await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let host = request.headers()["host"].to_str().unwrap().to_string();
                    record.lock().unwrap().push(request.headers().clone());
                    let body = Full::new(Bytes::from(format!("hello {host} over tls")));
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, roots, seen)
}

/// A proxy terminating HTTPS for header rules and trusting `upstream_roots` for destinations;
/// with the roots of a sandbox that trusts the proxy's CA.
async fn intercepting_harness(
    upstream_roots: &rustls::RootCertStore,
) -> (Harness, rustls::RootCertStore) {
    let first = InterceptCa::generate().unwrap();
    let mut sandbox_roots = rustls::RootCertStore::empty();
    sandbox_roots
        .add(CertificateDer::from_pem_slice(first.cert_pem().as_bytes()).unwrap())
        .unwrap();
    // The proxy runs with the CA made again from its saved key, as after a restart: sandboxes
    // trusting the first CA certificate still verify it.
    let ca = InterceptCa::from_key_pem(&first.key_pem()).unwrap();
    let upstream = client_config(upstream_roots);
    let h = harness_with(EgressProxy::new().intercept_https(&ca, &upstream), |_| {
        false
    })
    .await;
    (h, sandbox_roots)
}

const HTTPS_RULE: &str = r#"{"allowOut": ["api.test", "plain.test"], "denyOut": ["0.0.0.0/0"],
    "rules": {"api.test": [{"transform": {"headers": {"Authorization": "Bearer injected"}}}]}}"#;

#[tokio::test]
async fn https_header_rules_are_applied_by_terminating_tls() {
    let (https, server_roots, seen) = https_server().await;
    let (h, sandbox_roots) = intercepting_harness(&server_roots).await;
    h.set(SANDBOX, None, HTTPS_RULE);
    // The sandbox trusts only the proxy's CA: the handshake succeeding shows the proxy
    // terminated TLS.
    let tls = tls_connect(h.connect(SANDBOX, https).await, &sandbox_roots, "api.test")
        .await
        .unwrap();
    let mut sender = http_client(tls).await;
    let sandbox_auth = [("authorization", "Bearer sandbox")];
    for _ in 0..2 {
        assert_eq!(
            get(&mut sender, "api.test", &sandbox_auth).await,
            (StatusCode::OK, "hello api.test over tls".into())
        );
    }
    // A Host other than the name the destination proved is refused: the rule's headers go only
    // to api.test.
    assert_eq!(
        get(&mut sender, "plain.test", &[]).await,
        (
            StatusCode::MISDIRECTED_REQUEST,
            "e2b-local egress proxy: this connection is to api.test, not to plain.test\n".into()
        )
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for headers in seen.iter() {
        assert_eq!(headers.get_all("authorization").iter().count(), 1);
        assert_eq!(headers["authorization"], "Bearer injected");
    }
}

#[tokio::test]
async fn https_without_a_rule_passes_through_untouched() {
    let (https, server_roots, seen) = https_server().await;
    let (h, sandbox_roots) = intercepting_harness(&server_roots).await;
    h.set(SANDBOX, None, HTTPS_RULE);
    // The server's own certificate reaches the sandbox: the proxy's CA does not verify it...
    assert!(
        tls_connect(
            h.connect(SANDBOX, https).await,
            &sandbox_roots,
            "plain.test"
        )
        .await
        .is_err()
    );
    // ...the server's roots do.
    let tls = tls_connect(h.connect(SANDBOX, https).await, &server_roots, "plain.test")
        .await
        .unwrap();
    let mut sender = http_client(tls).await;
    assert_eq!(
        get(
            &mut sender,
            "plain.test",
            &[("authorization", "Bearer sandbox")]
        )
        .await,
        (StatusCode::OK, "hello plain.test over tls".into())
    );
    assert_eq!(seen.lock().unwrap()[0]["authorization"], "Bearer sandbox");
}

#[tokio::test]
async fn https_interception_refuses_a_destination_it_cannot_verify() {
    let (https, _, seen) = https_server().await;
    // The proxy trusts other roots than the server's certificate.
    let (_, other_roots) = tls_acceptor(&["api.test"]);
    let (h, sandbox_roots) = intercepting_harness(&other_roots).await;
    h.set(SANDBOX, None, HTTPS_RULE);
    assert!(
        tls_connect(h.connect(SANDBOX, https).await, &sandbox_roots, "api.test")
            .await
            .is_err()
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn through_an_egress_proxy_servers_that_speak_first_are_not_held_up_and_failures_are_logged()
{
    let h = default_harness().await;
    let socks_listener = TcpListener::bind((SOCKS_IP, 0)).await.unwrap();
    let socks = socks_listener.local_addr().unwrap();
    let tunneled = fake_internet::SocksLog::default();
    tokio::spawn(fake_internet::socks_server(
        socks_listener,
        false,
        None,
        tunneled.clone(),
    ));
    // A server that speaks first, as SSH does.
    let banner_listener = TcpListener::bind((BANNER_IP, 0)).await.unwrap();
    let SocketAddr::V4(banner) = banner_listener.local_addr().unwrap() else {
        unreachable!()
    };
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = banner_listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-banner\r\n").await;
        }
    });
    let logged = Arc::new(Mutex::new(Vec::new()));
    let sink = logged.clone();
    h.policies.set_logger(
        SANDBOX,
        Arc::new(move |level, line| sink.lock().unwrap().push((level, line.to_owned()))),
    );
    h.set(
        SANDBOX,
        None,
        &format!(r#"{{"egressProxy": {{"address": "{socks}"}}}}"#),
    );
    // Not a named port: relayed at once, not after the 10 s preamble timeout.
    let mut stream = h.connect(SANDBOX, banner).await;
    let mut line = [0; 16];
    timeout(Duration::from_secs(2), stream.read_exact(&mut line))
        .await
        .expect("the banner came late: the proxy waited for the client")
        .unwrap();
    assert_eq!(&line, b"SSH-2.0-banner\r\n");
    assert_eq!(
        *tunneled.lock().unwrap(),
        [format!("{} - {banner} ({banner})", socks.port())]
    );
    assert!(logged.lock().unwrap().is_empty());
    // A proxy nobody listens on: reset, and the sandbox's logger hears why.
    h.set(
        SANDBOX,
        None,
        &format!(r#"{{"egressProxy": {{"address": "{SOCKS_IP}:1"}}}}"#),
    );
    let mut stream = h.connect(SANDBOX, banner).await;
    assert!(closed(&mut stream).await);
    assert_eq!(
        *logged.lock().unwrap(),
        [(
            tracing::Level::ERROR,
            format!(
                "egress proxy: connection to {banner} reset: egressProxy {SOCKS_IP}:1 failed: connecting: Connection refused (os error 111)"
            )
        )]
    );
    assert_eq!(tunneled.lock().unwrap().len(), 1);
}
