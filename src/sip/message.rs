//! A parsed SIP message: the wire bytes plus an index of where each part lies.

use std::ops::Range;

use bytes::Bytes;

use super::error::ParseError;
use super::header::{CSeq, HeaderName, NameAddr, Via};
use super::method::Method;
use super::uri::Uri;
use super::Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: Bytes },
}

/// One header line in the index (after unfolding); ranges index into `Message::bytes()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    pub name: HeaderName,
    /// The name exactly as on the wire.
    pub name_range: Range<usize>,
    /// The value with surrounding whitespace trimmed (may contain folded line breaks).
    pub value_range: Range<usize>,
    /// The whole line including its CRLF, for byte-exact re-sending.
    pub line_range: Range<usize>,
}

/// A SIP request or response over shared bytes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) buf: Bytes,
    pub(crate) start: StartLine,
    pub(crate) headers: Vec<HeaderEntry>,
    pub(crate) body: Range<usize>,
}

impl Message {
    /// Parse one complete message (a UDP datagram, or a frame cut by [`super::StreamFramer`]).
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        super::parse::parse_message(buf, limits)
    }

    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }
    pub fn header_entries(&self) -> &[HeaderEntry] {
        &self.headers
    }
    /// First value of a header (for list headers: the first element of the first line).
    pub fn header(&self, name: &HeaderName) -> Option<Bytes> {
        let _ = name;
        todo!("sip module")
    }
    /// Every value of a header in order; list headers are split at top-level commas
    /// (not inside quotes or `<>`).
    pub fn header_values(&self, name: &HeaderName) -> Vec<Bytes> {
        let _ = name;
        todo!("sip module")
    }
    /// Topmost Via.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        todo!("sip module")
    }
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        todo!("sip module")
    }
    pub fn call_id(&self) -> Option<Bytes> {
        self.header(&HeaderName::CallId)
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        todo!("sip module")
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        todo!("sip module")
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        todo!("sip module")
    }
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        todo!("sip module")
    }
    pub fn max_forwards(&self) -> Option<u32> {
        todo!("sip module")
    }
    pub fn content_length(&self) -> Option<usize> {
        todo!("sip module")
    }
    pub fn content_type(&self) -> Option<Bytes> {
        self.header(&HeaderName::ContentType)
    }
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.clone())
    }
}
