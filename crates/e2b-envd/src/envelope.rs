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
///
/// # Errors
/// What `write` returns; `buf` is then left as it was.
pub fn encode_with<E>(
    buf: &mut BytesMut,
    flags: u8,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E> {
    let start = buf.len();
    buf.put_u8(flags);
    buf.put_u32(0);
    if let Err(error) = write(buf) {
        buf.truncate(start);
        return Err(error);
    }
    let len = u32::try_from(buf.len() - start - PREFIX_LEN)
        .expect("messages are bounded far below 4 GiB by the maximum message size");
    buf[start + 1..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[(u8, &[u8])]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for (flags, payload) in payloads {
            encode_with(&mut buf, *flags, |b| {
                b.extend_from_slice(payload);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        buf.to_vec()
    }

    fn decode_all(decoder: &mut EnvelopeDecoder) -> Vec<Envelope> {
        let mut out = Vec::new();
        while let Some(envelope) = decoder.next_envelope().unwrap() {
            out.push(envelope);
        }
        out
    }

    #[test]
    fn prefix_is_flags_then_big_endian_length() {
        assert_eq!(frames(&[(0, b"{}")]), [0, 0, 0, 0, 2, b'{', b'}']);
        assert_eq!(frames(&[(FLAG_END_STREAM, b"")]), [2, 0, 0, 0, 0]);
    }

    #[test]
    fn a_stream_split_at_every_byte_boundary_decodes_the_same() {
        let wire = frames(&[
            (0, b"first"),
            (0, b""),
            (0, &[7; 300]),
            (FLAG_END_STREAM, b"{}"),
        ]);
        let mut whole = EnvelopeDecoder::new(1024, Code::Internal);
        whole.push(&wire);
        let expected = decode_all(&mut whole);
        assert_eq!(expected.len(), 4);
        for split in 0..=wire.len() {
            let mut decoder = EnvelopeDecoder::new(1024, Code::Internal);
            decoder.push(&wire[..split]);
            let mut got = decode_all(&mut decoder);
            decoder.push(&wire[split..]);
            got.extend(decode_all(&mut decoder));
            assert_eq!(got, expected, "split at {split}");
            decoder.finish().unwrap();
        }
        // And one byte at a time.
        let mut decoder = EnvelopeDecoder::new(1024, Code::Internal);
        let mut got = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            got.extend(decode_all(&mut decoder));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn truncation_is_reported_with_what_was_missing() {
        let wire = frames(&[(0, b"hello")]);
        let mut decoder = EnvelopeDecoder::new(1024, Code::InvalidArgument);
        decoder.push(&wire[..7]);
        assert_eq!(decoder.next_envelope().unwrap(), None);
        let error = decoder.finish().unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(
            error.message(),
            "stream truncated inside a message (2 of 5 bytes)"
        );

        let mut decoder = EnvelopeDecoder::new(1024, Code::Internal);
        decoder.push(&wire[..3]);
        let error = decoder.finish().unwrap_err();
        assert_eq!(error.code(), Code::Internal);
        assert_eq!(
            error.message(),
            "stream truncated inside an envelope prefix (3 of 5 bytes)"
        );
    }

    #[test]
    fn oversize_messages_are_resource_exhausted_before_buffering() {
        let mut decoder = EnvelopeDecoder::new(16, Code::Internal);
        decoder.push(&[0, 0, 0, 0, 17]);
        let error = decoder.next_envelope().unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted);
        assert_eq!(
            error.message(),
            "message of 17 bytes is larger than the limit of 16 bytes"
        );
    }

    #[test]
    fn compressed_frames_are_rejected() {
        let mut decoder = EnvelopeDecoder::new(16, Code::InvalidArgument);
        decoder.push(&frames(&[(FLAG_COMPRESSED, b"x")]));
        let error = decoder.next_envelope().unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
    }
}
