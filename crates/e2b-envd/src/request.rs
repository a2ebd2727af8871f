//! A message plus its per-call metadata.

use std::time::Duration;

use futures_core::Stream;
use http::header::{HeaderName, HeaderValue};
use http::{Extensions, HeaderMap};

/// A request message with the metadata of its call.
///
/// On the client it carries the headers to send and the call's timeout; on the server it
/// carries the headers received, the deadline from `Connect-Timeout-Ms`, and the HTTP
/// request's extensions (where middleware may put, say, the authenticated user).
///
/// ```
/// use std::time::Duration;
/// use e2b_envd::Request;
///
/// let request = Request::new("payload")
///     .with_timeout(Duration::from_secs(60))
///     .with_header("e2b-sandbox-id", "i1234");
/// assert_eq!(request.timeout(), Some(Duration::from_secs(60)));
/// assert_eq!(request.headers()["e2b-sandbox-id"], "i1234");
/// ```
#[derive(Debug)]
pub struct Request<T> {
    message: T,
    headers: HeaderMap,
    timeout: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
    extensions: Extensions,
}

impl<T> Request<T> {
    /// A request with no headers and no timeout.
    pub fn new(message: T) -> Self {
        Self {
            message,
            headers: HeaderMap::new(),
            timeout: None,
            deadline: None,
            extensions: Extensions::new(),
        }
    }

    /// The message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn message_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message out.
    pub fn into_message(self) -> T {
        self.message
    }

    /// The headers sent (client) or received (server).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Adds a header. Invalid names or values are skipped with a warning, since a header
    /// built from constants cannot be invalid and anything else should be validated earlier.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.insert(name, value);
            }
            _ => tracing::warn!(header = name, "skipping an invalid header"),
        }
        self
    }

    /// The call's timeout: sent as `Connect-Timeout-Ms` and enforced by the client.
    /// `None` (or zero) means no deadline.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets the call's timeout; zero means none.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }

    /// On the server: when the call's `Connect-Timeout-Ms` runs out.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    /// On the server: the HTTP request's extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The extensions, mutably.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Replaces the message, keeping the metadata.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        Request {
            message: f(self.message),
            headers: self.headers,
            timeout: self.timeout,
            deadline: self.deadline,
            extensions: self.extensions,
        }
    }

    #[cfg(feature = "server")]
    pub(crate) fn from_parts(
        message: T,
        headers: HeaderMap,
        deadline: Option<tokio::time::Instant>,
        extensions: Extensions,
    ) -> Self {
        Self {
            message,
            headers,
            timeout: None,
            deadline,
            extensions,
        }
    }
}

/// Anything that can be sent as a unary or server-streaming request: a message, or a
/// [`Request`] wrapping one.
pub trait IntoRequest<T> {
    /// Wraps the message in a request.
    fn into_request(self) -> Request<T>;
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}

/// Anything that can be sent as a client-streaming request: a `Stream` of messages, or a
/// [`Request`] wrapping one.
pub trait IntoStreamingRequest {
    /// The stream of messages.
    type Stream: Stream<Item = Self::Message> + Send + 'static;
    /// The message type.
    type Message;

    /// Wraps the stream in a request.
    fn into_streaming_request(self) -> Request<Self::Stream>;
}

impl<S> IntoStreamingRequest for S
where
    S: Stream + Send + 'static,
{
    type Stream = S;
    type Message = S::Item;

    fn into_streaming_request(self) -> Request<S> {
        Request::new(self)
    }
}

impl<S> IntoStreamingRequest for Request<S>
where
    S: Stream + Send + 'static,
{
    type Stream = S;
    type Message = S::Item;

    fn into_streaming_request(self) -> Request<S> {
        self
    }
}
