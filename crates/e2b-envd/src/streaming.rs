//! A stream of messages decoded from envelopes.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use serde::Deserialize;

use crate::codec::{Encoding, Message};
use crate::envelope::EnvelopeDecoder;
use crate::error::WireError;
use crate::{Code, ConnectError};

/// The raw bytes a [`Streaming`] decodes.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ConnectError>> + Send>>;

/// Which side is reading, which decides how the input may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A client reading a response: it must end with an end-of-stream frame.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    Response,
    /// A server reading a request: it ends at end of input, on a frame boundary.
    Request,
}

/// The messages of a stream: the responses of a server-streaming call (client side) or the
/// requests of a client-streaming call (server side).
///
/// Yields `Ok(message)` for each message in order, then ends. An error the peer sent in the
/// end-of-stream frame, a malformed or truncated stream, or a connection failure is yielded
/// once as `Err`, after which the stream ends: it never hangs on a broken peer.
pub struct Streaming<T> {
    body: Option<ByteStream>,
    decoder: EnvelopeDecoder,
    encoding: Encoding,
    direction: Direction,
    done: bool,
    draining: Option<Drain>,
    _message: PhantomData<fn() -> T>,
}

/// How long, and how many bytes, a response body is read past its end-of-stream frame.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);
const DRAIN_LIMIT: usize = 64 * 1024;

/// A response whose end-of-stream frame has arrived, read on to the end of its body. An
/// HTTP/1.1 body dropped before its end closes the connection, and the next call pays for a
/// new one (a TCP connection on loopback costs about a third of a short command's Start).
/// Bounded in time and bytes, so a peer that never ends the body cannot hang the stream.
struct Drain {
    /// What the stream yields once drained: nothing, or the error the peer sent.
    outcome: Option<ConnectError>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    left: usize,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("encoding", &self.encoding)
            .field("direction", &self.direction)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T: Message> Streaming<T> {
    pub(crate) fn new(
        body: ByteStream,
        encoding: Encoding,
        direction: Direction,
        max_message_size: usize,
    ) -> Self {
        let malformed = match direction {
            Direction::Response => Code::Internal,
            Direction::Request => Code::InvalidArgument,
        };
        Self {
            body: Some(body),
            decoder: EnvelopeDecoder::new(max_message_size, malformed),
            encoding,
            direction,
            done: false,
            draining: None,
            _message: PhantomData,
        }
    }

    /// The next message, or `None` at the end of the stream.
    ///
    /// # Errors
    /// The error that ended the stream.
    pub async fn message(&mut self) -> Result<Option<T>, ConnectError> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    fn fail(&mut self, error: ConnectError) -> Poll<Option<Result<T, ConnectError>>> {
        self.done = true;
        self.body = None;
        Poll::Ready(Some(Err(error)))
    }

    /// Takes the end-of-stream frame: starts draining a response; fails a request.
    fn end_stream(&mut self, payload: &[u8]) -> Option<Poll<Option<Result<T, ConnectError>>>> {
        if self.direction == Direction::Request {
            return Some(self.fail(ConnectError::invalid_argument(
                "a request stream may not carry an end-of-stream frame",
            )));
        }
        let outcome = match serde_json::from_slice::<EndStream>(payload) {
            Ok(EndStream { error: None }) => None,
            Ok(EndStream { error: Some(wire) }) => Some(wire.into_error().unwrap_or_else(|| {
                ConnectError::unknown("the end-of-stream error has an unknown code")
            })),
            Err(e) => Some(ConnectError::internal(format!(
                "invalid end-of-stream message: {e}"
            ))),
        };
        self.draining = Some(Drain {
            outcome,
            sleep: None,
            left: DRAIN_LIMIT,
        });
        None
    }

    /// Reads the body to its end (see [`Drain`]), then yields the stream's outcome.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, ConnectError>>> {
        let Some(drain) = self.draining.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(body) = self.body.as_mut() {
            loop {
                match body.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) if chunk.len() <= drain.left => {
                        drain.left -= chunk.len();
                    }
                    Poll::Ready(_) => break,
                    Poll::Pending => {
                        let sleep = drain
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(DRAIN_TIMEOUT)));
                        if sleep.as_mut().poll(cx).is_ready() {
                            break;
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
        self.body = None;
        self.done = true;
        let outcome = self.draining.take().and_then(|d| d.outcome);
        Poll::Ready(outcome.map(Err))
    }
}

impl<T: Message> Stream for Streaming<T> {
    type Item = Result<T, ConnectError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.draining.is_some() {
                return this.poll_drain(cx);
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.decoder.next_envelope() {
                Ok(Some(envelope)) if envelope.is_end_stream() => {
                    if let Some(failed) = this.end_stream(&envelope.data) {
                        return failed;
                    }
                    continue;
                }
                Ok(Some(envelope)) => {
                    let code = this.decoder_code();
                    return match this.encoding.decode::<T>(envelope.data, code) {
                        Ok(message) => Poll::Ready(Some(Ok(message))),
                        Err(error) => this.fail(error),
                    };
                }
                Ok(None) => {}
                Err(error) => return this.fail(error),
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(body.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => this.decoder.push(&chunk),
                Some(Err(error)) => return this.fail(error),
                None => {
                    this.body = None;
                    if let Err(error) = this.decoder.finish() {
                        return this.fail(error);
                    }
                    return match this.direction {
                        Direction::Request => {
                            this.done = true;
                            Poll::Ready(None)
                        }
                        Direction::Response => this.fail(ConnectError::transport(
                            Code::Unavailable,
                            "the stream ended without an end-of-stream message",
                            "connection closed early",
                        )),
                    };
                }
            }
        }
    }
}

impl<T> Streaming<T> {
    fn decoder_code(&self) -> Code {
        match self.direction {
            Direction::Response => Code::Internal,
            Direction::Request => Code::InvalidArgument,
        }
    }
}

/// The end-of-stream message: `{}` or `{"error":{…}}`, plus trailers we do not use.
#[derive(Deserialize)]
struct EndStream {
    #[serde(default)]
    error: Option<WireError>,
}
