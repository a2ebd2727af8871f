//! Serving connections: hyper's HTTP/1.1 and HTTP/2 (`auto`) with timers, an idle timeout,
//! a cap on connections per peer address, and `{code, message}` bodies on hyper's own error
//! answers.
//!
//! `axum::serve` sets no timer, so a client that sends half a request head, or nothing,
//! would hold its connection forever. Here:
//!
//! * a request head must arrive within [`HttpLimits::header_read_timeout`] (hyper's HTTP/1
//!   timer, which also runs while a keep-alive connection waits for its next request); when it
//!   fires hyper closes the connection without an answer, as nginx does;
//! * a connection with no request in flight for [`HttpLimits::idle_timeout`] is shut down
//!   gracefully (this covers a client that never sends a byte, and HTTP/2, whose pings would
//!   otherwise keep it open), and dropped [`CLOSE_GRACE`] later if it is still open;
//! * at most [`HttpLimits::max_connections_per_peer`] connections per peer IP address are
//!   served at a time (upgraded connections, once spliced, no longer count); the next one is
//!   answered `429 {code, message}` with `Connection: close` and closed;
//! * hyper answers a request it cannot parse itself (400, 414 URI too long, 431 head too
//!   large) with an empty body; [`ClientIo`] recognises that answer on its way out and
//!   replaces it with the same status and a `{code, message}` body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::api::ApiError;

/// How long a connection asked to close (server shutdown, idle) may take before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Limits of the HTTP listener, against clients that hold connections open.
///
/// ```
/// use std::time::Duration;
/// use e2b_local::server::HttpLimits;
///
/// let limits = HttpLimits {
///     max_connections_per_peer: 64,
///     ..HttpLimits::default()
/// };
/// assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to receive a whole request head, counted from when the connection waits for one
    /// (so it also ends an idle HTTP/1.1 keep-alive connection). Default 30 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Default 30 s.
    pub idle_timeout: Duration,
    /// Connections served at once per peer IP address; loopback clients are one peer.
    /// Default 512, far above what the official SDK suites or 50 concurrent creates open.
    pub max_connections_per_peer: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections_per_peer: 512,
        }
    }
}

/// Accepts and serves connections until `stop`, then waits for the open ones to close.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let peers = Peers::default();
    // Every connection task holds a sender; `recv` ends once all of them are gone.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // TCP_NODELAY: streamed envd events are small writes; with Nagle each would wait
        // for the client's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let peer = addr.ip().to_canonical();
        let Some(slot) = peers.acquire(peer, limits.max_connections_per_peer) else {
            tokio::spawn(refuse(tcp, peer, limits.max_connections_per_peer));
            continue;
        };
        let conn = connection(tcp, app.clone(), builder.clone(), limits, stop.clone());
        let open = open.clone();
        tokio::spawn(async move {
            conn.await;
            drop((slot, open));
        });
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Serves one connection until it ends, goes idle, or the server stops.
async fn connection(
    tcp: TcpStream,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(ClientIo {
        tcp,
        state: state.clone(),
        ended_at_flush: 0,
        replacement: None,
    });
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let exchange = Exchange::start(&svc_state);
        let app = app.clone();
        async move {
            let Ok(resp) = app.oneshot(req).await;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                exchange.state.upgraded.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(resp.map(|inner| {
                Body::new(Tracked {
                    inner,
                    _exchange: exchange,
                })
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop.cancelled() => {}
        () = state.idle_for(limits.idle_timeout) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

/// Answers a connection over the per-peer cap with 429 and closes it. The request is
/// drained briefly first, so closing does not reset the connection before the client has
/// read the answer.
async fn refuse(mut tcp: TcpStream, peer: IpAddr, max: usize) {
    let e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many connections from {peer}: at most {max} at a time"),
    );
    if tcp.write_all(&raw_response(&e)).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await {
            total += n;
            if total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A whole HTTP/1.1 response carrying `e` as `{code, message}`, closing the connection.
fn raw_response(e: &ApiError) -> Vec<u8> {
    let body = e.body();
    let mut out = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        e.status,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Open connections per peer address.
#[derive(Debug, Default, Clone)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Peers {
    /// A slot for one more connection from `peer`, or `None` at the cap.
    fn acquire(&self, peer: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut open = lock(&self.0);
        let n = open.entry(peer).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            peer,
        })
    }
}

/// One connection's place in [`Peers`], given back on drop.
#[derive(Debug)]
struct PeerSlot {
    peers: Peers,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.peers.0);
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the service tells the connection's IO and idle timer about its requests.
#[derive(Debug)]
struct ConnState {
    /// Requests handed to the service.
    dispatched: AtomicU64,
    /// Requests whose response body has ended (or was dropped).
    ended: AtomicU64,
    /// When the last request in flight ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// The connection was upgraded: what follows is not HTTP.
    upgraded: AtomicBool,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            dispatched: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            upgraded: AtomicBool::new(false),
        }
    }

    fn idle(&self) -> bool {
        self.dispatched.load(Ordering::Acquire) == self.ended.load(Ordering::Acquire)
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = *lock(&self.idle_since);
            if self.idle() && since.elapsed() >= timeout {
                return;
            }
            let from = if self.idle() { since } else { Instant::now() };
            tokio::time::sleep_until((from + timeout).into()).await;
        }
    }
}

/// One request in flight; ends when dropped with its response body.
#[derive(Debug)]
struct Exchange {
    state: Arc<ConnState>,
}

impl Exchange {
    fn start(state: &Arc<ConnState>) -> Self {
        state.dispatched.fetch_add(1, Ordering::AcqRel);
        Exchange {
            state: state.clone(),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        *lock(&self.state.idle_since) = Instant::now();
        self.state.ended.fetch_add(1, Ordering::AcqRel);
    }
}

/// A response body that ends its [`Exchange`] when dropped.
struct Tracked {
    inner: Body,
    _exchange: Exchange,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client's connection, replacing hyper's bodiless answer to an unparsable request.
///
/// hyper writes that answer only when every response it owed was written and flushed (it
/// reads the next request head only then), and it is the last thing it writes. So a write
/// is hyper's own answer when every dispatched exchange had ended by the last flush, the
/// connection is not upgraded, and the write is exactly one bodiless 400/414/431 head.
struct ClientIo {
    tcp: TcpStream,
    state: Arc<ConnState>,
    /// `ended` as of the last completed flush.
    ended_at_flush: u64,
    /// The `{code, message}` answer being written instead, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl ClientIo {
    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some((bytes, done)) = &mut self.replacement {
            while *done < bytes.len() {
                let n = std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &bytes[*done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                *done += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether a write starting here may be hyper's own answer (see the type's docs).
    fn between_exchanges(&self) -> bool {
        self.replacement.is_none()
            && !self.state.upgraded.load(Ordering::Relaxed)
            && self.state.dispatched.load(Ordering::Acquire) == self.ended_at_flush
    }
}

/// The `{code, message}` answer replacing hyper's bodiless `head`, if `head` is one.
fn json_for_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let message = match resp.code? {
        400 => "malformed HTTP request: the request line or a header could not be parsed",
        414 => "request URI is too long",
        431 => "request header fields are too large",
        _ => return None,
    };
    let mut bodiless = false;
    for h in resp.headers.iter() {
        match h.name.to_ascii_lowercase().as_str() {
            "content-length" if h.value == b"0" => bodiless = true,
            "date" | "connection" => {}
            _ => return None,
        }
    }
    let status = StatusCode::from_u16(resp.code?).ok()?;
    bodiless.then(|| raw_response(&ApiError::new(status, message)))
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.between_exchanges()
            && let Some(answer) = json_for_hyper_error(buf)
        {
            self.replacement = Some((answer, 0));
            // The rest, if the socket is full, goes out in `poll_flush`.
            if let Poll::Ready(Err(e)) = self.poll_replacement(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.between_exchanges() {
            // hyper's own answer is one head in one buffer; checked by `poll_write`.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Every exchange ended before this flush has had all its bytes written through here.
        let ended = self.state.ended.load(Ordering::Acquire);
        std::task::ready!(self.poll_replacement(cx))?;
        std::task::ready!(Pin::new(&mut self.tcp).poll_flush(cx))?;
        self.ended_at_flush = ended;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_parse_error_answers_are_replaced() {
        let json = |head: &str| {
            json_for_hyper_error(head.as_bytes()).map(|b| String::from_utf8(b).unwrap())
        };
        assert_eq!(
            json("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 05:00:00 GMT\r\n\r\n").as_deref(),
            Some("HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"code\":414,\"message\":\"request URI is too long\"}")
        );
        // A body, another status, another header, or a partial head: not hyper's answer.
        for head in [
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-mine: 1\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(json(head), None, "{head:?}");
        }
    }
}
