//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3): messages are cut by Content-Length;
//! CRLF keep-alives (RFC 5626 §3.5.1) between messages are reported, not parsed.

use bytes::{Bytes, BytesMut};

use super::error::ParseError;
use super::Limits;

/// What the framer found at the front of the stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// One whole message's bytes (parse with `Message::parse`).
    Message(Bytes),
    /// A double-CRLF keep-alive ping: answer with a single CRLF (pong).
    Ping,
    /// A single CRLF pong.
    Pong,
}

/// Accumulates stream bytes and cuts whole messages out of them.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer { buf: BytesMut::new(), limits }
    }
    /// Append bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// Next complete event, `Ok(None)` when more bytes are needed. An error means the
    /// stream cannot be resynchronised (over-size header block, bad Content-Length):
    /// the connection should answer 400 if it can and be closed.
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, ParseError> {
        todo!("sip module")
    }
    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
