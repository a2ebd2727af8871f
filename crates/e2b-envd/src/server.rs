//! The Connect server side: request decoding, deadlines and responses for the generated
//! service routers. Semantics (what a call does) belong to the service implementation.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request as HttpRequest;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, post};
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt as _;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;

use crate::codec::{Encoding, Message};
use crate::envelope::{self, EnvelopeDecoder, FLAG_END_STREAM};
use crate::headers::{
    CONNECT_CONTENT_ENCODING, CONNECT_PROTOCOL_VERSION, CONNECT_TIMEOUT_MS, CONTENT_ENCODING,
};
use crate::streaming::{Direction, Streaming};
use crate::{Code, ConnectError, DEFAULT_MAX_MESSAGE_SIZE, Request};

/// Settings shared by the methods of one served service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request message accepted; larger ones fail with `resource_exhausted`.
    pub max_message_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// What a call looks like before its body is read.
struct CallHead {
    encoding: Encoding,
    headers: HeaderMap,
    extensions: http::Extensions,
    deadline: Option<tokio::time::Instant>,
    body: Body,
}

/// Checks the headers common to every call. `Err` is the complete HTTP answer.
#[allow(clippy::result_large_err)] // the error path is rare and answered at once
fn call_head(request: HttpRequest, streaming: bool) -> Result<CallHead, Response> {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type, streaming) else {
        return Err(unsupported_media_type(content_type, streaming));
    };
    // Protocol errors below are reported the way the call reports any error.
    let fail = |error: ConnectError| {
        if streaming {
            streaming_error(encoding, error)
        } else {
            unary_error(error)
        }
    };
    if let Some(version) = parts.headers.get(CONNECT_PROTOCOL_VERSION)
        && version != "1"
    {
        return Err(fail(ConnectError::invalid_argument(format!(
            "unsupported Connect-Protocol-Version {version:?}; only \"1\" is supported"
        ))));
    }
    let compression = if streaming {
        CONNECT_CONTENT_ENCODING
    } else {
        CONTENT_ENCODING
    };
    if let Some(value) = parts.headers.get(compression)
        && value != "identity"
    {
        return Err(fail(ConnectError::unimplemented(format!(
            "{compression} {value:?} is not supported; send uncompressed messages"
        ))));
    }
    let deadline = match parse_timeout(&parts.headers) {
        Ok(timeout) => timeout.map(|t| tokio::time::Instant::now() + t),
        Err(error) => return Err(fail(error)),
    };
    Ok(CallHead {
        encoding,
        headers: parts.headers,
        extensions: parts.extensions,
        deadline,
        body,
    })
}

/// `Connect-Timeout-Ms`: one to ten ASCII digits.
fn parse_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ConnectError> {
    let Some(value) = headers.get(CONNECT_TIMEOUT_MS) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectError::invalid_argument(format!(
            "invalid Connect-Timeout-Ms header {value:?}: expected 1 to 10 digits"
        )));
    }
    let millis: u64 = text.parse().expect("ten digits fit in u64");
    Ok(Some(Duration::from_millis(millis)))
}

fn unsupported_media_type(content_type: &str, streaming: bool) -> Response {
    let expected = if streaming {
        "application/connect+json or application/connect+proto"
    } else {
        "application/json or application/proto"
    };
    let error = ConnectError::invalid_argument(format!(
        "unsupported content type {content_type:?}; this method takes {expected}"
    ));
    let mut response = unary_error(error);
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response.headers_mut().insert(
        "accept-post",
        HeaderValue::from_static(if streaming {
            "application/connect+json, application/connect+proto"
        } else {
            "application/json, application/proto"
        }),
    );
    response
}

/// A unary error: the code's HTTP status and the Connect JSON body.
pub(crate) fn unary_error(error: ConnectError) -> Response {
    let status = error.code().http_status();
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        error.to_json(),
    )
        .into_response()
}

/// A streaming answer that is only an end-of-stream frame carrying `error`.
fn streaming_error(encoding: Encoding, error: ConnectError) -> Response {
    streaming_response(encoding, Body::from(end_stream_frame(Some(&error))))
}

fn streaming_response(encoding: Encoding, body: Body) -> Response {
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.streaming_content_type()),
        )],
        body,
    )
        .into_response()
}

/// The end-of-stream frame: `{}` or `{"error":{…}}`, always JSON.
fn end_stream_frame(error: Option<&ConnectError>) -> Bytes {
    let mut buf = BytesMut::new();
    let Ok(()) = envelope::encode_with(&mut buf, FLAG_END_STREAM, |buf| {
        match error {
            None => buf.extend_from_slice(b"{}"),
            Some(error) => {
                buf.extend_from_slice(b"{\"error\":");
                buf.extend_from_slice(&error.to_json());
                buf.extend_from_slice(b"}");
            }
        }
        Ok::<(), Infallible>(())
    });
    buf.freeze()
}

/// Reads a whole request body, failing past `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ConnectError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ConnectError::canceled(format!("reading the request: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ConnectError::resource_exhausted(format!(
                    "request of more than {limit} bytes is larger than the limit of {limit} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Runs `call` until `deadline`, turning expiry into `deadline_exceeded`.
async fn with_deadline<T>(
    deadline: Option<tokio::time::Instant>,
    call: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| Err(deadline_exceeded())),
        None => call.await,
    }
}

fn deadline_exceeded() -> ConnectError {
    ConnectError::deadline_exceeded("the call's Connect-Timeout-Ms passed")
}

/// The route of a unary method.
pub fn unary_route<S, Req, Resp, F, Fut>(
    service: Arc<S>,
    config: Arc<ServerConfig>,
    handler: F,
) -> MethodRouter
where
    S: Send + Sync + 'static,
    Req: Message,
    Resp: Message,
    F: Fn(Arc<S>, Request<Req>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ConnectError>> + Send + 'static,
{
    post(move |request: HttpRequest| {
        let (service, config, handler) = (service.clone(), config.clone(), handler.clone());
        async move {
            let head = match call_head(request, false) {
                Ok(head) => head,
                Err(response) => return response,
            };
            let encoding = head.encoding;
            let result = async {
                let body = read_body(head.body, config.max_message_size).await?;
                let message: Req = encoding.decode(body, Code::InvalidArgument)?;
                let request =
                    Request::from_parts(message, head.headers, head.deadline, head.extensions);
                with_deadline(head.deadline, handler(service, request)).await
            }
            .await;
            match result {
                Ok(message) => {
                    let mut body = BytesMut::new();
                    if let Err(error) = encoding.encode(&message, &mut body) {
                        return unary_error(error);
                    }
                    (
                        StatusCode::OK,
                        [(
                            CONTENT_TYPE,
                            HeaderValue::from_static(encoding.unary_content_type()),
                        )],
                        body.freeze(),
                    )
                        .into_response()
                }
                Err(error) => unary_error(error),
            }
        }
    })
}

/// The route of a server-streaming method.
pub fn server_streaming_route<S, Req, Resp, St, F, Fut>(
    service: Arc<S>,
    config: Arc<ServerConfig>,
    handler: F,
) -> MethodRouter
where
    S: Send + Sync + 'static,
    Req: Message,
    Resp: Message,
    St: Stream<Item = Result<Resp, ConnectError>> + Send + 'static,
    F: Fn(Arc<S>, Request<Req>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<St, ConnectError>> + Send + 'static,
{
    post(move |request: HttpRequest| {
        let (service, config, handler) = (service.clone(), config.clone(), handler.clone());
        async move {
            let head = match call_head(request, true) {
                Ok(head) => head,
                Err(response) => return response,
            };
            let encoding = head.encoding;
            let deadline = head.deadline;
            let opened = async {
                let message: Req =
                    read_single_message(head.body, encoding, config.max_message_size).await?;
                let request = Request::from_parts(message, head.headers, deadline, head.extensions);
                with_deadline(deadline, handler(service, request)).await
            }
            .await;
            match opened {
                Ok(stream) => streaming_response(
                    encoding,
                    Body::from_stream(ResponseFrames::new(stream, encoding, deadline)),
                ),
                Err(error) => streaming_error(encoding, error),
            }
        }
    })
}

/// The route of a client-streaming method.
pub fn client_streaming_route<S, Req, Resp, F, Fut>(
    service: Arc<S>,
    config: Arc<ServerConfig>,
    handler: F,
) -> MethodRouter
where
    S: Send + Sync + 'static,
    Req: Message,
    Resp: Message,
    F: Fn(Arc<S>, Request<Streaming<Req>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ConnectError>> + Send + 'static,
{
    post(move |request: HttpRequest| {
        let (service, config, handler) = (service.clone(), config.clone(), handler.clone());
        async move {
            let head = match call_head(request, true) {
                Ok(head) => head,
                Err(response) => return response,
            };
            let encoding = head.encoding;
            let body = head.body.into_data_stream().map(|chunk| {
                chunk
                    .map_err(|e| ConnectError::canceled(format!("reading the request stream: {e}")))
            });
            let messages = Streaming::new(
                Box::pin(body),
                encoding,
                Direction::Request,
                config.max_message_size,
            );
            let request =
                Request::from_parts(messages, head.headers, head.deadline, head.extensions);
            match with_deadline(head.deadline, handler(service, request)).await {
                Ok(message) => {
                    let mut body = BytesMut::new();
                    if let Err(error) =
                        envelope::encode_with(&mut body, 0, |buf| encoding.encode(&message, buf))
                    {
                        return streaming_error(encoding, error);
                    }
                    body.extend_from_slice(&end_stream_frame(None));
                    streaming_response(encoding, Body::from(body.freeze()))
                }
                Err(error) => streaming_error(encoding, error),
            }
        }
    })
}

/// The catch-all route of a service prefix: any method it does not have is `unimplemented`.
pub fn unimplemented_route(service_name: &'static str) -> MethodRouter {
    any(move |request: HttpRequest| async move {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let error =
            ConnectError::unimplemented(format!("{service_name}/{method} is not implemented"));
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match Encoding::from_content_type(content_type, true) {
            Some(encoding) => streaming_error(encoding, error),
            None => unary_error(error),
        }
    })
}

/// Reads the one request message of a server-streaming call.
async fn read_single_message<Req: Message>(
    body: Body,
    encoding: Encoding,
    max_message_size: usize,
) -> Result<Req, ConnectError> {
    let bytes = read_body(body, max_message_size.saturating_add(envelope::PREFIX_LEN)).await?;
    let mut decoder = EnvelopeDecoder::new(max_message_size, Code::InvalidArgument);
    decoder.push(&bytes);
    let envelope = decoder.next_envelope()?;
    decoder.finish()?;
    match envelope {
        Some(envelope) if !envelope.is_end_stream() => {
            encoding.decode(envelope.data, Code::InvalidArgument)
        }
        Some(_) => Err(ConnectError::invalid_argument(
            "a request stream may not carry an end-of-stream frame",
        )),
        None => Err(ConnectError::invalid_argument(
            "the request has no message: expected exactly one envelope",
        )),
    }
}

/// Encodes a service's response stream as envelopes, ending with the end-of-stream frame.
struct ResponseFrames<St> {
    inner: Option<Pin<Box<St>>>,
    encoding: Encoding,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<St> ResponseFrames<St> {
    fn new(stream: St, encoding: Encoding, deadline: Option<tokio::time::Instant>) -> Self {
        Self {
            inner: Some(Box::pin(stream)),
            encoding,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }

    fn finish(&mut self, error: Option<&ConnectError>) -> Poll<Option<Result<Bytes, Infallible>>> {
        // Dropping the service's stream first releases what it holds (subscriptions, files).
        self.inner = None;
        self.deadline = None;
        Poll::Ready(Some(Ok(end_stream_frame(error))))
    }
}

impl<St, Resp> Stream for ResponseFrames<St>
where
    St: Stream<Item = Result<Resp, ConnectError>>,
    Resp: Message,
{
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(sleep) = this.deadline.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return this.finish(Some(&deadline_exceeded()));
        }
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => {
                let mut buf = BytesMut::new();
                let encoding = this.encoding;
                match envelope::encode_with(&mut buf, 0, |buf| encoding.encode(&message, buf)) {
                    Ok(()) => Poll::Ready(Some(Ok(buf.freeze()))),
                    Err(error) => this.finish(Some(&error)),
                }
            }
            Poll::Ready(Some(Err(error))) => this.finish(Some(&error)),
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
