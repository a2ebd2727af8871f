//! Connect's streaming frames: a flags byte, a big-endian `u32` length, then the payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Code, ConnectError};

/// The size of an envelope's prefix.
pub const PREFIX_LEN: usize = 5;
/// Flag: the payload is compressed. Never sent by us; rejected when received.
pub const FLAG_COMPRESSED: u8 = 0b01;
/// Flag: the payload is the end-of-stream message.
pub const FLAG_END_STREAM: u8 = 0b10;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The flags byte.
    pub flags: u8,
    /// The payload.
    pub data: Bytes,
}

impl Envelope {
    /// Whether this is the end-of-stream frame.
    pub fn is_end_stream(&self) -> bool {
        self.flags & FLAG_END_STREAM != 0
    }
}

/// Appends a frame with `flags` whose payload `write` appends, filling in the length afterwards.
pub fn encode_with(buf: &mut BytesMut, flags: u8, write: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(flags);
    buf.put_u32(0);
    write(buf);
    let len = u32::try_from(buf.len() - start - PREFIX_LEN)
        .expect("messages are bounded far below 4 GiB by the maximum message size");
    buf[start + 1..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Reassembles frames from chunks of any size: split across reads, or several in one.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    buf: BytesMut,
    max_message_size: usize,
    /// The code for malformed input: `invalid_argument` on a server reading requests,
    /// `internal` on a client reading responses.
    malformed: Code,
}

impl EnvelopeDecoder {
    /// A decoder that rejects payloads over `max_message_size` bytes.
    pub fn new(max_message_size: usize, malformed: Code) -> Self {
        Self {
            buf: BytesMut::new(),
            max_message_size,
            malformed,
        }
    }

    /// Adds bytes read from the peer.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, if the buffered bytes hold one.
    ///
    /// # Errors
    /// `resource_exhausted` when a frame declares a payload over the maximum message size;
    /// the malformed code for a compressed frame.
    pub fn next_envelope(&mut self) -> Result<Option<Envelope>, ConnectError> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let flags = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max_message_size {
            return Err(ConnectError::resource_exhausted(format!(
                "message of {len} bytes is larger than the limit of {} bytes",
                self.max_message_size
            )));
        }
        if flags & FLAG_COMPRESSED != 0 {
            return Err(ConnectError::new(
                self.malformed,
                "received a compressed message, but no compression was negotiated",
            ));
        }
        if self.buf.len() < PREFIX_LEN + len {
            // Reserve once for the rest of this frame rather than growing chunk by chunk.
            self.buf.reserve(PREFIX_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        let data = self.buf.split_to(len).freeze();
        Ok(Some(Envelope { flags, data }))
    }

    /// Checks that the input ended on a frame boundary.
    ///
    /// # Errors
    /// The malformed code, saying how much of a frame was missing.
    pub fn finish(&self) -> Result<(), ConnectError> {
        match self.buf.len() {
            0 => Ok(()),
            n if n < PREFIX_LEN => Err(ConnectError::new(
                self.malformed,
                format!("stream truncated inside an envelope prefix ({n} of 5 bytes)"),
            )),
            n => {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                Err(ConnectError::new(
                    self.malformed,
                    format!(
                        "stream truncated inside a message ({} of {len} bytes)",
                        n - PREFIX_LEN
                    ),
                ))
            }
        }
    }
}
