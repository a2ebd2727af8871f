//! The Connect client on reqwest.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt as _;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::codec::{Encoding, Message};
use crate::envelope;
use crate::error::error_chain;
use crate::headers::{ACCESS_TOKEN, CONNECT_PROTOCOL_VERSION, CONNECT_TIMEOUT_MS};
use crate::streaming::{ByteStream, Direction, Streaming};
use crate::{Code, ConnectError, DEFAULT_MAX_MESSAGE_SIZE, Request};

/// The most of a non-200 response body read to build its error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A Connect client for one base URL: the transport the generated service clients share.
///
/// Cheap to clone; clones share the connection pool.
///
/// ```no_run
/// # async fn run() -> Result<(), e2b_envd::ConnectError> {
/// use e2b_envd::Client;
/// use e2b_envd::pb::process::{ListRequest, process_client::ProcessClient};
///
/// let client = Client::builder("http://localhost:49983").build()?;
/// let processes = ProcessClient::new(client).list(ListRequest {}).await?;
/// println!("{} processes", processes.processes.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    encoding: Encoding,
    default_headers: HeaderMap,
    max_message_size: usize,
}

/// Builds a [`Client`].
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
    base_url: String,
    encoding: Encoding,
    default_headers: HeaderMap,
    max_message_size: usize,
    error: Option<ConnectError>,
}

impl ClientBuilder {
    /// Uses `http` for requests (its pool, TLS and timeouts) instead of a default client.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The codec for requests; JSON by default, as E2B's SDKs use.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A header sent with every call. An invalid name or value fails [`build`](Self::build).
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                if name == http::header::AUTHORIZATION || name.as_str() == ACCESS_TOKEN {
                    value.set_sensitive(true);
                }
                self.default_headers.insert(name, value);
            }
            _ => {
                self.error.get_or_insert_with(|| {
                    ConnectError::invalid_argument(format!("invalid header {name:?}"))
                });
            }
        }
        self
    }

    /// The largest message accepted in either direction; 64 MiB by default.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// `invalid_argument` for an invalid header or base URL; `internal` when the default
    /// HTTP client cannot be built (TLS initialisation).
    pub fn build(self) -> Result<Client, ConnectError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConnectError::invalid_argument(format!(
                "base URL {base_url:?} must start with http:// or https://"
            )));
        }
        let http = match self.http {
            Some(http) => http,
            None => default_http_client()?,
        };
        Ok(Client {
            http,
            base_url,
            encoding: self.encoding,
            default_headers: self.default_headers,
            max_message_size: self.max_message_size,
        })
    }
}

/// A reqwest client with rustls on the ring provider; see [`http_client_builder`].
///
/// # Errors
/// `internal` when TLS cannot be initialised.
pub fn default_http_client() -> Result<reqwest::Client, ConnectError> {
    http_client_builder()?
        .build()
        .map_err(|e| ConnectError::internal(format!("building the HTTP client: {e}")))
}

/// A reqwest client builder using [`tls_config`].
///
/// # Errors
/// `internal` when TLS cannot be initialised (no usable root certificates).
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, ConnectError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls_config()?))
}

/// The TLS configuration of every client this crate builds: rustls on the ring provider with
/// the platform's certificate verifier, offering HTTP/2 and HTTP/1.1 by ALPN.
///
/// It is made once per process and shared. Left to reqwest, every `build()` makes its own,
/// which costs milliseconds (4 ms against 4 µs here), and an SDK builds a client per sandbox.
/// Pass it to `reqwest::ClientBuilder::tls_backend_preconfigured`.
///
/// # Errors
/// `internal` when TLS cannot be initialised (no usable root certificates).
pub fn tls_config() -> Result<rustls::ClientConfig, ConnectError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    static TLS: std::sync::OnceLock<Result<rustls::ClientConfig, String>> =
        std::sync::OnceLock::new();
    let tls = TLS.get_or_init(|| {
        // reqwest is built without a default provider (aws-lc costs minutes of C compile);
        // installing ring is a no-op when the application already chose a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_platform_verifier())
            .map_err(|e| e.to_string())?
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    });
    tls.clone()
        .map_err(|e| ConnectError::internal(format!("initialising TLS: {e}")))
}

impl Client {
    /// Starts building a client for `base_url`, e.g. `http://localhost:49983`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            http: None,
            base_url: base_url.into(),
            encoding: Encoding::default(),
            default_headers: HeaderMap::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            error: None,
        }
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The codec requests use.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn post(
        &self,
        path: &str,
        content_type: &'static str,
        request: &Request<impl Sized>,
    ) -> reqwest::RequestBuilder {
        let mut headers = self.default_headers.clone();
        for (name, value) in request.headers() {
            headers.insert(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CONNECT_PROTOCOL_VERSION, HeaderValue::from_static("1"));
        if let Some(timeout) = request.timeout() {
            headers.insert(CONNECT_TIMEOUT_MS, HeaderValue::from(timeout_ms(timeout)));
        }
        self.http
            .post(format!("{}{path}", self.base_url))
            .headers(headers)
    }

    /// A unary call: one request, one response.
    ///
    /// # Errors
    /// The peer's Connect error, a transport failure, or `deadline_exceeded`.
    pub async fn unary<Req: Message, Resp: Message>(
        &self,
        path: &str,
        request: Request<Req>,
    ) -> Result<Resp, ConnectError> {
        let mut body = BytesMut::new();
        self.encoding
            .encode(request.message(), &mut body)
            .map_err(|e| request_error(path, e))?;
        let mut builder = self
            .post(path, self.encoding.unary_content_type(), &request)
            .body(body.freeze());
        if let Some(timeout) = request.timeout() {
            builder = builder.timeout(timeout);
        }
        let response = builder.send().await.map_err(|e| send_error(path, e))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(error_response(response).await);
        }
        check_content_type(&response, self.encoding.unary_content_type(), path)?;
        let body = read_limited(response, self.max_message_size).await?;
        self.encoding.decode(body, Code::Internal)
    }

    /// A server-streaming call: one request, a stream of responses.
    ///
    /// The call's timeout covers the whole stream.
    ///
    /// # Errors
    /// The peer's Connect error or a transport failure before the stream starts; errors
    /// after that come out of the returned [`Streaming`].
    pub async fn server_streaming<Req: Message, Resp: Message>(
        &self,
        path: &str,
        request: Request<Req>,
    ) -> Result<Streaming<Resp>, ConnectError> {
        let mut body = BytesMut::new();
        envelope::encode_with(&mut body, 0, |buf| {
            self.encoding.encode(request.message(), buf)
        })
        .map_err(|e| request_error(path, e))?;
        let builder = self
            .post(path, self.encoding.streaming_content_type(), &request)
            .body(body.freeze());
        self.open_stream(path, builder, request.timeout()).await
    }

    /// A client-streaming call: a stream of requests, one response.
    ///
    /// # Errors
    /// The peer's Connect error, a transport failure, or `deadline_exceeded`.
    pub async fn client_streaming<S, Req, Resp>(
        &self,
        path: &str,
        request: Request<S>,
    ) -> Result<Resp, ConnectError>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: Message,
        Resp: Message,
    {
        let encoding = self.encoding;
        let builder = self.post(path, encoding.streaming_content_type(), &request);
        let timeout = request.timeout();
        let frames = request.into_message().map(move |message| {
            let mut buf = BytesMut::new();
            // An unencodable message aborts the request body; the server then sees a cut
            // stream, and the call fails.
            envelope::encode_with(&mut buf, 0, |buf| encoding.encode(&message, buf))
                .map(|()| buf.freeze())
        });
        let builder = builder.body(reqwest::Body::wrap_stream(frames));
        let mut responses = self.open_stream::<Resp>(path, builder, timeout).await?;
        let Some(response) = responses.message().await? else {
            return Err(ConnectError::internal(format!(
                "{path} ended without a response message"
            )));
        };
        if responses.message().await?.is_some() {
            return Err(ConnectError::internal(format!(
                "{path} sent more than one response message"
            )));
        }
        Ok(response)
    }

    async fn open_stream<Resp: Message>(
        &self,
        path: &str,
        builder: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<Streaming<Resp>, ConnectError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let send = builder.send();
        let response = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, send)
                .await
                .map_err(|_| deadline_error(path))?,
            None => send.await,
        }
        .map_err(|e| send_error(path, e))?;
        if response.status() != http::StatusCode::OK {
            return Err(error_response(response).await);
        }
        check_content_type(&response, self.encoding.streaming_content_type(), path)?;
        let path_owned = path.to_owned();
        let body = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| body_error(&path_owned, e)));
        let body: ByteStream = match deadline {
            Some(deadline) => Box::pin(Deadline {
                inner: Box::pin(body),
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                path: path.to_owned(),
                expired: false,
            }),
            None => Box::pin(body),
        };
        Ok(Streaming::new(
            body,
            self.encoding,
            Direction::Response,
            self.max_message_size,
        ))
    }
}

/// `Connect-Timeout-Ms` allows at most 10 digits.
fn timeout_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 9_999_999_999)
}

/// A request that cannot be encoded is the caller's mistake.
fn request_error(path: &str, error: ConnectError) -> ConnectError {
    ConnectError::invalid_argument(format!("{path}: {}", error.message()))
}

fn deadline_error(path: &str) -> ConnectError {
    ConnectError::deadline_exceeded(format!("{path}: the call's timeout passed"))
}

fn send_error(path: &str, error: reqwest::Error) -> ConnectError {
    if error.is_timeout() {
        return deadline_error(path);
    }
    let message = format!("{path}: {}", error_chain(&error));
    ConnectError::transport(Code::Unavailable, message, error)
}

fn body_error(path: &str, error: reqwest::Error) -> ConnectError {
    if error.is_timeout() {
        return deadline_error(path);
    }
    let message = format!(
        "{path}: reading the response failed: {}",
        error_chain(&error)
    );
    ConnectError::transport(Code::Unavailable, message, error)
}

fn check_content_type(
    response: &reqwest::Response,
    expected: &str,
    path: &str,
) -> Result<(), ConnectError> {
    let actual = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if actual
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(expected)
    {
        Ok(())
    } else {
        Err(ConnectError::internal(format!(
            "{path}: expected a {expected} response, got content type {actual:?}"
        )))
    }
}

async fn error_response(response: reqwest::Response) -> ConnectError {
    let status = response.status().as_u16();
    let body = read_limited(response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    ConnectError::from_http_response(status, &body)
}

/// Reads a whole body, failing with `resource_exhausted` past `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ConnectError> {
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(too_large(len, limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| body_error(response.url().path(), e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large((body.len() + chunk.len()) as u64, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn too_large(len: u64, limit: usize) -> ConnectError {
    ConnectError::resource_exhausted(format!(
        "message of {len} bytes is larger than the limit of {limit} bytes"
    ))
}

/// Ends a response body with `deadline_exceeded` when the call's timeout passes.
struct Deadline {
    inner: ByteStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    path: String,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, ConnectError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(deadline_error(&self.path))));
        }
        Poll::Pending
    }
}
