//! Test support: a scripted stand-in for the code interpreter's server (port 49999) on
//! 127.0.0.1, on its own runtime thread, that records every request and answers each with
//! the next scripted [`Reply`], streamed chunk by chunk. The SDK reaches it in debug mode
//! with `E2B_SANDBOX_URL` pointing at it, as it reaches e2b-local's router.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// How long to wait before sending the status line.
    pub head_delay: Duration,
    /// The body: each chunk after its delay.
    pub chunks: Vec<(Duration, Vec<u8>)>,
}

impl Reply {
    /// 200 with `body` in one chunk.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::status(200, body)
    }

    /// `status` with `body` in one chunk.
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            head_delay: Duration::ZERO,
            chunks: vec![(Duration::ZERO, body.into())],
        }
    }

    /// 200 with these chunks, each after its delay.
    pub fn chunks(chunks: Vec<(Duration, Vec<u8>)>) -> Self {
        Reply {
            status: 200,
            head_delay: Duration::ZERO,
            chunks,
        }
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query, as sent (still percent-encoded).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    /// Set when a client went away before its body was fully sent.
    disconnected: AtomicBool,
}

pub struct FakeServer {
    pub base: String,
    state: Arc<State>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakeServer {
    pub fn start(replies: impl IntoIterator<Item = Reply>) -> Self {
        let state = Arc::new(State::default());
        state.replies.lock().unwrap().extend(replies);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("fake-code-interpreter".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = axum::Router::new().fallback(
                        move |method: Method,
                              uri: Uri,
                              headers: HeaderMap,
                              body: axum::body::Bytes| {
                            answer(shared.clone(), method, uri, headers, body)
                        },
                    );
                    tokio::select! {
                        r = axum::serve(listener, app) => r.unwrap(),
                        _ = shutdown_rx => {}
                    }
                });
            })
            .unwrap();
        let addr = addr_rx.recv().unwrap();
        FakeServer {
            base: format!("http://{addr}"),
            state,
            _shutdown: shutdown_tx,
        }
    }

    /// Debug mode pointed at this server, as `E2B_DEBUG=true E2B_SANDBOX_URL=...` would.
    pub fn config(&self) -> e2b::ConnectionConfig {
        e2b::ConnectionConfig::new()
            .with_debug(true)
            .with_sandbox_url(&self.base)
            .with_request_timeout(Some(Duration::from_secs(10)))
    }

    /// The requests so far, without envd's `/health` probes.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn disconnected(&self) -> bool {
        self.state.disconnected.load(Ordering::SeqCst)
    }
}

/// Sets `disconnected` when dropped before the body was sent.
struct BodyGuard {
    /// Taken when the body was sent.
    state: Option<Arc<State>>,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.disconnected.store(true, Ordering::SeqCst);
        }
    }
}

async fn answer(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // `is_running` in debug mode asks envd's /health at the same URL: the sandbox runs.
    if method == Method::GET && uri.path() == "/health" {
        return Response::builder().status(204).body(Body::empty()).unwrap();
    }
    state.requests.lock().unwrap().push(Recorded {
        method,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers,
        body: body.to_vec(),
    });
    let Some(reply) = state.replies.lock().unwrap().pop_front() else {
        return Response::builder()
            .status(500)
            .body(Body::from("no reply scripted"))
            .unwrap();
    };
    tokio::time::sleep(reply.head_delay).await;
    let guard = BodyGuard {
        state: Some(state.clone()),
    };
    let chunks: VecDeque<(Duration, Vec<u8>)> = reply.chunks.into();
    let stream =
        futures_util::stream::unfold((chunks, guard), |(mut chunks, mut guard)| async move {
            match chunks.pop_front() {
                Some((delay, bytes)) => {
                    tokio::time::sleep(delay).await;
                    Some((
                        Ok::<_, std::io::Error>(axum::body::Bytes::from(bytes)),
                        (chunks, guard),
                    ))
                }
                None => {
                    guard.state.take();
                    None
                }
            }
        });
    Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
