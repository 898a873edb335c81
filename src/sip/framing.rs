//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3): messages are cut by Content-Length;
//! CRLF keep-alives (RFC 5626 §3.5.1) between messages are reported, not parsed.

use bytes::{Bytes, BytesMut};

use super::error::{ParseError, ParseErrorKind};
use super::header::HeaderName;
use super::scan::{self, HeaderLines};
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
///
/// Work is linear in the bytes pushed: the search for the end of the header block resumes
/// where it stopped, and once the header block is complete the frame length is remembered.
/// At most `2 * max_message_bytes` are ever buffered; pushing more makes the next
/// [`StreamFramer::next_event`] fail with `TooLarge`.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// Index up to which the current header block was searched for its end.
    scanned: usize,
    /// Length of the current message once its header block has been read.
    frame_len: Option<usize>,
    /// Bytes were refused because the buffer was full.
    overflow: bool,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::new(),
            limits,
            scanned: 0,
            frame_len: None,
            overflow: false,
        }
    }
    /// Append bytes read from the socket. Callers drain with `next_event` after each push;
    /// bytes beyond the buffer cap are refused and reported by the next `next_event`.
    pub fn push(&mut self, data: &[u8]) {
        if self.try_push(data).is_err() {
            self.overflow = true;
        }
    }
    /// Append bytes, refusing them when the buffer would exceed `2 * max_message_bytes`
    /// (a partial message plus one read's worth of pipelined data).
    pub fn try_push(&mut self, data: &[u8]) -> Result<(), ParseError> {
        let cap = self.limits.max_message_bytes.saturating_mul(2);
        if self.buf.len().saturating_add(data.len()) > cap {
            return Err(self.error(ParseErrorKind::TooLarge, self.buf.len()));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    /// Next complete event, `Ok(None)` when more bytes are needed. An error means the
    /// stream cannot be resynchronised (over-size header block, bad Content-Length):
    /// the connection should answer 400 if it can and be closed.
    ///
    /// A lone CRLF is reported as a pong as soon as it is seen, so a ping whose two CRLFs
    /// arrive in separate reads is seen as two pongs (RFC 5626 pings are sent in one write).
    pub fn next_event(&mut self) -> Result<Option<FrameEvent>, ParseError> {
        if self.overflow {
            return Err(self.error(ParseErrorKind::TooLarge, self.buf.len()));
        }
        if self.frame_len.is_none() && self.scanned == 0 {
            // Between messages: keep-alives, and stray LFs that carry no meaning.
            while self.buf.first() == Some(&b'\n') {
                let _ = self.buf.split_to(1);
            }
            if self.buf.starts_with(b"\r\n\r\n") {
                let _ = self.buf.split_to(4);
                return Ok(Some(FrameEvent::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if self.buf.len() == 3 && self.buf[2] == b'\r' {
                    return Ok(None);
                }
                let _ = self.buf.split_to(2);
                return Ok(Some(FrameEvent::Pong));
            }
            if self.buf.as_ref() == b"\r" {
                return Ok(None);
            }
        }
        let frame_len = match self.frame_len {
            Some(len) => len,
            None => {
                let Some(header_end) = self.find_header_end() else {
                    if self.buf.len() > self.limits.max_message_bytes {
                        return Err(self.error(ParseErrorKind::TooLarge, self.buf.len()));
                    }
                    return Ok(None);
                };
                let body_len = self.content_length(header_end)?;
                let len = header_end.saturating_add(body_len);
                if len > self.limits.max_message_bytes {
                    return Err(self.error(ParseErrorKind::TooLarge, header_end));
                }
                self.frame_len = Some(len);
                len
            }
        };
        if self.buf.len() < frame_len {
            return Ok(None);
        }
        self.frame_len = None;
        self.scanned = 0;
        Ok(Some(FrameEvent::Message(
            self.buf.split_to(frame_len).freeze(),
        )))
    }
    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// The buffered bytes not yet framed: after an error with `can_respond`, the caller builds
    /// its 400/513 from them (`ResponseBuilder::error_for_raw`).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Index just past the empty line ending the header block, if buffered. Resumes the
    /// search where the previous call stopped.
    fn find_header_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut i = self.scanned;
        while let Some(nl) = memchr::memchr(b'\n', &buf[i..]) {
            let nl = i + nl;
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = nl;
                    return None;
                }
                _ => i = nl + 1,
            }
        }
        self.scanned = buf.len();
        None
    }

    /// Content-Length of the header block `buf[..header_end]`; mandatory on streams.
    fn content_length(&self, header_end: usize) -> Result<usize, ParseError> {
        let block = &self.buf[..header_end];
        let first_line_end = memchr::memchr(b'\n', block).map_or(block.len(), |nl| nl + 1);
        let mut length = None;
        let lines = HeaderLines::new(block, first_line_end, usize::MAX / 4);
        for line in lines {
            let line = line.map_err(|(kind, at)| self.error(kind, at))?;
            if HeaderName::known(&block[line.name.clone()]) != Some(HeaderName::ContentLength) {
                continue;
            }
            let value = scan::parse_decimal(&block[line.value.clone()], 10)
                .and_then(|v| usize::try_from(v).ok());
            match (length, value) {
                (None, Some(v)) => length = Some(v),
                _ => return Err(self.error(ParseErrorKind::BadContentLength, line.value.start)),
            }
        }
        length.ok_or_else(|| self.error(ParseErrorKind::MissingHeader, header_end))
    }

    fn error(&self, kind: ParseErrorKind, offset: usize) -> ParseError {
        let end = self.buf.len().min(self.limits.max_message_bytes);
        ParseError {
            kind,
            offset,
            can_respond: super::builder::respondable(&self.buf[..end]),
            header: None,
        }
    }
}
