//! envd and port routing on the control plane's listener.
//!
//! A request goes to a sandbox when it carries the `E2b-Sandbox-Id` / `E2b-Sandbox-Port`
//! headers, when its Host is `<port>-<sandboxID>.<domain>` (this server's domain only), or when it is a pre-signed
//! `/files` URL (no headers) whose v1 signature matches a live sandbox's token. Everything
//! else is the control plane's.
//!
//! The proxy is a pooled hyper client whose connector opens a TCP connection inside the
//! sandbox's network namespace ([`SandboxHandle::connect`](crate::isolation::SandboxHandle::connect)),
//! so no host port is opened per sandbox. Bodies stream both ways; an answer the sandbox
//! sends before it has read the whole request body is passed through (`Upstream`,
//! `DrainOnDrop`). Pausing or killing a sandbox cancels its token, which cuts every open
//! response stream mid-body.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri, header};
use http_body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::WaitForCancellationFutureOwned;

use e2b_envd::ENVD_PORT;
use e2b_envd::headers;
use e2b_envd::signature::{self, Operation};

use crate::api::ApiError;
use crate::lifecycle::{Live, Manager, valid_sandbox_id};
use crate::state::SandboxState;

/// envd routes only the control plane may call; the proxy answers 404.
pub(crate) const INTERNAL_ROUTES: &[&str] = &[
    "/init",
    "/freeze",
    "/unfreeze",
    "/collapse",
    "/fsfreeze",
    "/fsthaw",
    "/upgrade",
];

/// Opens connections into sandboxes. The URI authority is `<sandboxID>:<port>`.
#[derive(Debug, Clone)]
pub(crate) struct SandboxConnector {
    mgr: Weak<Manager>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<Upstream>, std::io::Error>> + Send>>;

impl tower::Service<Uri> for SandboxConnector {
    type Response = TokioIo<Upstream>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mgr = self.mgr.clone();
        Box::pin(async move {
            let not_running = |id: &str| {
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!("sandbox {id} is not running"),
                )
            };
            let id = uri.host().unwrap_or("").to_owned();
            let port = uri.port_u16().unwrap_or(ENVD_PORT);
            let live = mgr
                .upgrade()
                .and_then(|m| m.get(&id))
                .ok_or_else(|| not_running(&id))?;
            let handle = live.handle.clone();
            let stream = tokio::task::spawn_blocking(move || handle.connect(port))
                .await
                .map_err(std::io::Error::other)??;
            stream.set_nonblocking(true)?;
            let _ = stream.set_nodelay(true);
            let tcp = tokio::net::TcpStream::from_std(stream)?;
            // Read in place: the record is not cloned per connection.
            let https = crate::lifecycle::lock(&live.rec)
                .network
                .as_ref()
                .is_some_and(|n| n.https_ports.contains(&port));
            let stream = if https {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(std::io::Error::other)?;
                // A port that accepts but never speaks TLS must not hold the request.
                let tls =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, sandbox_tls().connect(name, tcp))
                        .await
                        .map_err(|_| {
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("TLS handshake with port {port} of sandbox {id} timed out"),
                            )
                        })??;
                Transport::Tls(Box::new(tls))
            } else {
                Transport::Plain(tcp)
            };
            Ok(TokioIo::new(Upstream {
                stream,
                stopped_reading: false,
            }))
        })
    }
}

/// A connection into a sandbox that lets the sandbox answer early: a server may reply (e.g.
/// 400 to an upload it rejects) and close while the request body is still being sent. The
/// next write then fails with `EPIPE`/`ECONNRESET`, and hyper's client would report that
/// error instead of the response already waiting in the socket (a false 502). Once the peer
/// has stopped reading, the rest of the request body is discarded here, so hyper goes on to
/// read the response; if none comes, the read fails and the proxy answers 502 as before.
#[derive(Debug)]
pub(crate) struct Upstream {
    stream: Transport,
    /// The sandbox closed its side: writes are discarded.
    stopped_reading: bool,
}

impl Upstream {
    fn written(
        &mut self,
        r: Poll<std::io::Result<usize>>,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                self.stopped_reading = true;
                Poll::Ready(Ok(len))
            }
            r => r,
        }
    }
}

impl tokio::io::AsyncRead for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stopped_reading {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.written(r, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.stopped_reading {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.written(r, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stopped_reading {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stopped_reading {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The bytes to a sandbox port: plain TCP, or TLS for the ports the sandbox lists in
/// `network.httpsPorts` (a server in the sandbox that speaks HTTPS itself).
#[derive(Debug)]
enum Transport {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How long the TLS handshake with a sandbox's `httpsPorts` server may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS to a sandbox's `httpsPorts`: E2B does not verify the backend's certificate (so
/// self-signed ones work); signatures of the handshake are still checked.
fn sandbox_tls() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::LazyLock<tokio_rustls::TlsConnector> =
        std::sync::LazyLock::new(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyBackendCertificate(provider)))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
    CONNECTOR.clone()
}

/// Accepts any certificate of a sandbox's own server (see [`sandbox_tls`]).
#[derive(Debug)]
struct AnyBackendCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyBackendCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl hyper_util::client::legacy::connect::Connection for Upstream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// The proxy client, pooled per `(sandbox, port)`.
pub(crate) type ProxyClient = Client<SandboxConnector, Body>;

/// Builds the proxy client for `mgr`.
pub(crate) fn client(mgr: &Arc<Manager>) -> ProxyClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(8)
        .build(SandboxConnector {
            mgr: Arc::downgrade(mgr),
        })
}

/// State of the routing layer.
#[derive(Debug, Clone)]
pub(crate) struct RouterState {
    /// The manager.
    pub(crate) mgr: Arc<Manager>,
    /// The proxy client.
    pub(crate) client: ProxyClient,
}

/// Marks a response the router made itself (the request's body was not forwarded).
#[derive(Debug, Clone, Copy)]
struct LocalReply;

/// A reply made here, marked [`LocalReply`].
fn local_reply(reply: impl IntoResponse) -> Response {
    let mut r = reply.into_response();
    r.extensions_mut().insert(LocalReply);
    r
}

/// The body of the errors E2B's proxy answers itself: `{code, message}` plus what the
/// request was routed to. Fields are in alphabetical order, as E2B's proxy writes them.
#[derive(Debug, serde::Serialize)]
struct ProxyError<'a> {
    code: u16,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(rename = "sandboxId", skip_serializing_if = "Option::is_none")]
    sandbox_id: Option<&'a str>,
}

impl ProxyError<'_> {
    fn into_response(self, status: StatusCode) -> Response {
        local_reply((status, axum::Json(self)))
    }
}

/// Whether a request carries a body (`Content-Length` above 0, or chunked).
fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A reply made here to a request whose body was never read: hyper then closes the
/// connection after the response (the unread rest of the body is still on it), so the reply
/// says so. Without `Connection: close` a client reuses the connection and its next request
/// fails with a broken pipe (seen with the official Python SDK after a 502).
fn close_if_unread(mut resp: Response, body: bool) -> Response {
    if body && resp.extensions().get::<LocalReply>().is_some() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// 502 for an unknown, killed, paused or expired sandbox (E2B's proxy body, exactly).
pub(crate) fn not_found(id: &str) -> Response {
    ProxyError {
        code: 502,
        message: "The sandbox was not found",
        path: None,
        port: None,
        sandbox_id: Some(id),
    }
    .into_response(StatusCode::BAD_GATEWAY)
}

/// 502 when nothing listens on the port inside a running sandbox.
pub(crate) fn port_closed(id: &str, port: u16) -> Response {
    ProxyError {
        code: 502,
        message: "The sandbox is running but port is not open",
        path: None,
        port: Some(port),
        sandbox_id: Some(id),
    }
    .into_response(StatusCode::BAD_GATEWAY)
}

/// 404 for envd's [`INTERNAL_ROUTES`].
fn internal_route(path: &str) -> Response {
    ProxyError {
        code: 404,
        message: "This endpoint is reserved for the E2B control plane and cannot be called through the proxy",
        path: Some(path),
        port: None,
        sandbox_id: None,
    }
    .into_response(StatusCode::NOT_FOUND)
}

fn bad(message: String) -> Response {
    local_reply(ApiError::bad_request(message))
}

/// Where a request goes: `Some(Ok((id, port)))` to a sandbox, `Some(Err(resp))` answered
/// here, `None` to the control plane.
fn target(req: &Request, mgr: &Manager) -> Option<Result<(String, u16), Response>> {
    let h = req.headers();
    let id_h = h.get(headers::SANDBOX_ID);
    let port_h = h.get(headers::SANDBOX_PORT);
    if id_h.is_some() || port_h.is_some() {
        let (Some(id), Some(port)) = (id_h, port_h) else {
            let missing = if id_h.is_none() {
                "E2b-Sandbox-Id"
            } else {
                "E2b-Sandbox-Port"
            };
            return Some(Err(bad(format!("missing header {missing}"))));
        };
        let id = id.to_str().unwrap_or("");
        let Some(port) = port.to_str().ok().and_then(|p| p.parse::<u16>().ok()) else {
            return Some(Err(bad(format!(
                "invalid sandbox port {:?}",
                String::from_utf8_lossy(port.as_bytes())
            ))));
        };
        if !valid_sandbox_id(id) {
            return Some(Err(bad(format!("invalid sandbox ID {id:?}"))));
        }
        return Some(Ok((id.to_owned(), port)));
    }
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    if let Some(t) = parse_host(host, &mgr.config().domain) {
        return Some(Ok(t));
    }
    if req.uri().path() == "/files" {
        // A query that does not parse as pairs carries no signature either.
        let q = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map(|Query(q)| q)
            .unwrap_or_default();
        if q.iter().any(|(k, _)| k == "signature") {
            let op = if req.method() == http::Method::POST {
                Operation::Write
            } else {
                Operation::Read
            };
            return Some(match signed_target(mgr, &q, op) {
                Some(id) => Ok((id, ENVD_PORT)),
                None => Err(local_reply(ApiError::unauthorized("invalid signature"))),
            });
        }
    }
    None
}

/// `<port>-<sandboxID>[-<clientID>].<domain>` → `(id, port)`, for this server's `domain`
/// only (ASCII case-insensitive), so a Host naming any other domain stays with the control
/// plane. The SDKs send `<port>-<id>.<E2B_DOMAIN>`, with the listener's port when the domain
/// carries one (`localhost:3000`); a domain without a port also matches with any port.
pub(crate) fn parse_host(host: &str, domain: &str) -> Option<(String, u16)> {
    let (label, rest) = host.split_once('.')?;
    fn without_port(h: &str) -> &str {
        match h.rsplit_once(':') {
            Some((name, p)) if p.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    }
    let ours = rest.eq_ignore_ascii_case(domain)
        || (!domain.contains(':') && without_port(rest).eq_ignore_ascii_case(domain));
    if !ours {
        return None;
    }
    let mut parts = label.split('-');
    let port = parts.next()?.parse::<u16>().ok()?;
    let id = parts.next()?;
    valid_sandbox_id(id).then(|| (id.to_owned(), port))
}

/// The live, running sandbox whose token signs this `/files` query.
fn signed_target(mgr: &Manager, q: &[(String, String)], op: Operation) -> Option<String> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let sig = get("signature")?;
    let path = get("path").unwrap_or("");
    let user = get("username").unwrap_or("");
    let exp = get("signature_expiration").and_then(|e| e.parse::<i64>().ok());
    mgr.all().into_iter().find_map(|l| {
        let token = l.token.as_deref()?;
        signature::verify(sig, path, op, user, token, exp).then(|| l.record().id)
    })
}

/// The routing layer: sends sandbox traffic to the proxy, the rest to `next`.
pub(crate) async fn route(State(rs): State<RouterState>, req: Request, next: Next) -> Response {
    let body = has_body(&req);
    match target(&req, &rs.mgr) {
        None => next.run(req).await,
        Some(Err(resp)) => close_if_unread(resp, body),
        Some(Ok((id, port))) => close_if_unread(proxy(&rs, id, port, req).await, body),
    }
}

async fn proxy(rs: &RouterState, id: String, port: u16, req: Request) -> Response {
    if port == ENVD_PORT && INTERNAL_ROUTES.contains(&req.uri().path()) {
        return internal_route(req.uri().path());
    }
    let Some(mut live) = rs.mgr.get(&id) else {
        return not_found(&id);
    };
    let rec = live.record();
    if rec.state != SandboxState::Running && !rec.auto_resume {
        return not_found(&id);
    }
    if port != ENVD_PORT
        && let Some(refused) = check_traffic_token(&live, &id, req.headers())
    {
        return refused;
    }
    if rec.state != SandboxState::Running {
        // `autoResume`: this request wakes it and is then served.
        match rs.mgr.auto_resume(&id).await {
            Some(resumed) => live = resumed,
            None => return not_found(&id),
        }
    }
    let host_mask = mask_request_host(&live, port);
    let cancel = live.cancel_token();
    let mut req = req;
    // Upgrades (WebSocket and the like): keep `Connection`/`Upgrade` and splice the two
    // upgraded connections once the sandbox answers 101.
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let Ok(uri) = format!("http://{id}:{port}{pq}").parse::<Uri>() else {
        return bad(format!("invalid request target {pq:?}"));
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    for h in HOP_BY_HOP {
        if !(upgrade && (*h == "connection" || *h == "upgrade")) {
            parts.headers.remove(*h);
        }
    }
    // The token is the proxy's to check, not the sandbox's to see.
    parts.headers.remove(headers::TRAFFIC_ACCESS_TOKEN);
    if let Some(host) = host_mask {
        parts.headers.insert(header::HOST, host);
    }
    let req = http::Request::from_parts(parts, Body::new(DrainOnDrop::new(body)));
    let resp = tokio::select! {
        r = rs.client.request(req) => r,
        () = cancel.clone().cancelled_owned() => return not_found(&id),
    };
    match resp {
        Ok(mut resp) => {
            if let Some(client_upgrade) = client_upgrade
                && resp.status() == StatusCode::SWITCHING_PROTOCOLS
            {
                let upstream = hyper::upgrade::on(&mut resp);
                tokio::spawn(splice(client_upgrade, upstream, cancel));
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, Body::empty());
            }
            let (mut parts, body) = resp.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(*h);
            }
            let body = CutBody {
                inner: body,
                cancel: Box::pin(cancel.cancelled_owned()),
            };
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            let gone = rs
                .mgr
                .get(&id)
                .is_none_or(|l| l.record().state != SandboxState::Running);
            if gone {
                not_found(&id)
            } else {
                tracing::debug!("proxy to {id}:{port}: {e:?}");
                port_closed(&id, port)
            }
        }
    }
}

/// For a sandbox created with `allowPublicTraffic: false`: 403 with E2B's body unless the
/// request carries its traffic access token.
fn check_traffic_token(live: &Live, id: &str, h: &http::HeaderMap) -> Option<Response> {
    let expected = live.traffic_token.as_deref()?;
    let problem = match h.get(headers::TRAFFIC_ACCESS_TOKEN) {
        None => "is missing",
        Some(v) if signature::constant_time_eq(v.as_bytes(), expected.as_bytes()) => return None,
        Some(_) => "is invalid",
    };
    let body = serde_json::json!({
        "sandboxId": id,
        "message": format!(
            "Sandbox is secured with traffic access token. Token header '{}' {problem}",
            headers::TRAFFIC_ACCESS_TOKEN
        ),
        "code": 403,
    });
    Some((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
}

/// The `Host` a request to `port` carries when the sandbox has `maskRequestHost`
/// (`${PORT}` replaced by the port).
fn mask_request_host(live: &Live, port: u16) -> Option<http::HeaderValue> {
    let rec = crate::lifecycle::lock(&live.rec);
    let mask = rec.network.as_ref()?.mask_request_host.as_deref()?;
    http::HeaderValue::from_str(&mask.replace("${PORT}", &port.to_string())).ok()
}

/// Copies bytes both ways between an upgraded client connection and the sandbox until
/// either side closes, or the sandbox is paused or killed (then both are dropped).
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    cancel: tokio_util::sync::CancellationToken,
) {
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else {
        return;
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = cancel.cancelled() => {}
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// How long the rest of a request body is drained after the sandbox stopped reading it.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// The request body sent to a sandbox. When the proxy client lets go of it before its end
/// (the sandbox answered early, e.g. 400 to an upload, and closed), the rest is read and
/// discarded in the background for up to [`DRAIN_TIME`]: hyper would otherwise close the
/// client's connection under the upload, and a client still writing its body fails with a
/// broken pipe instead of reading the answer. The volume content API's uploads use it too,
/// for an upload refused part-way (507).
pub(crate) struct DrainOnDrop {
    inner: Option<Body>,
    ended: bool,
}

impl DrainOnDrop {
    pub(crate) fn new(body: Body) -> Self {
        DrainOnDrop {
            inner: Some(body),
            ended: false,
        }
    }
}

impl http_body::Body for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            self.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        if self.ended || http_body::Body::is_end_stream(&body) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let drain = async {
                    while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
                };
                let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            });
        }
    }
}

/// A response body that ends with an error (so the client connection is aborted) once the
/// sandbox is paused or killed.
struct CutBody {
    inner: hyper::body::Incoming,
    cancel: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.cancel.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "sandbox was paused or killed",
            ))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(std::io::Error::other)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_like_e2b_proxy() {
        let d = "localhost:3000";
        assert_eq!(
            parse_host("49983-iabc123.localhost:3000", d),
            Some(("iabc123".into(), 49983))
        );
        assert_eq!(
            parse_host("49983-iabc123.LocalHost:3000", d),
            Some(("iabc123".into(), 49983))
        );
        assert_eq!(
            parse_host("8080-iabc-6532622b.e2b.local", "e2b.local"),
            Some(("iabc".into(), 8080))
        );
        assert_eq!(
            parse_host("8080-iabc.e2b.local:8443", "e2b.local"),
            Some(("iabc".into(), 8080))
        );
        assert_eq!(parse_host("localhost:3000", d), None);
        assert_eq!(parse_host("127.0.0.1:3000", d), None);
        assert_eq!(parse_host("8080-iabc", d), None);
        assert_eq!(parse_host("x-iabc.localhost:3000", d), None);
        assert_eq!(parse_host("80-I.localhost:3000", d), None);
        // Only the configured domain (and, when it has one, its port) routes.
        assert_eq!(parse_host("49983-iabc.evil.com", d), None);
        assert_eq!(parse_host("49983-iabc.localhost:3001", d), None);
        assert_eq!(parse_host("49983-iabc.localhost", d), None);
        assert_eq!(parse_host("49983-iabc.evil.localhost:3000", d), None);
        assert_eq!(
            parse_host("49983-iabc.e2b.local.evil.com", "e2b.local"),
            None
        );
    }

    #[tokio::test]
    async fn proxy_errors_are_e2b_bodies_byte_for_byte() {
        let body = |r: Response| async {
            let b = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(
            body(not_found("iabc")).await,
            r#"{"code":502,"message":"The sandbox was not found","sandboxId":"iabc"}"#
        );
        assert_eq!(
            body(port_closed("iabc", 8000)).await,
            r#"{"code":502,"message":"The sandbox is running but port is not open","port":8000,"sandboxId":"iabc"}"#
        );
        assert_eq!(
            body(bad("invalid sandbox ID \"A\"".into())).await,
            r#"{"code":400,"message":"invalid sandbox ID \"A\""}"#
        );
    }
}
