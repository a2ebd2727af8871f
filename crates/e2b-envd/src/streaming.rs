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
    _message: PhantomData<fn() -> T>,
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

    fn end_stream(&mut self, payload: &[u8]) -> Poll<Option<Result<T, ConnectError>>> {
        self.done = true;
        self.body = None;
        if self.direction == Direction::Request {
            return self.fail(ConnectError::invalid_argument(
                "a request stream may not carry an end-of-stream frame",
            ));
        }
        match serde_json::from_slice::<EndStream>(payload) {
            Ok(EndStream { error: None }) => Poll::Ready(None),
            Ok(EndStream { error: Some(wire) }) => match wire.into_error() {
                Some(error) => self.fail(error),
                None => self.fail(ConnectError::unknown(
                    "the end-of-stream error has an unknown code",
                )),
            },
            Err(e) => self.fail(ConnectError::internal(format!(
                "invalid end-of-stream message: {e}"
            ))),
        }
    }
}

impl<T: Message> Stream for Streaming<T> {
    type Item = Result<T, ConnectError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.decoder.next_envelope() {
                Ok(Some(envelope)) if envelope.is_end_stream() => {
                    return this.end_stream(&envelope.data);
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
