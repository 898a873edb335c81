//! A parsed SIP message: the wire bytes plus an index of where each part lies.

use std::ops::Range;

use bytes::Bytes;

use super::error::{ParseError, ParseErrorKind};
use super::header::{CSeq, HeaderName, NameAddr, Via};
use super::method::Method;
use super::scan::{self, ListIter};
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
        let entry = self.headers.iter().find(|e| e.name.matches(name))?;
        if name.is_list() {
            let v = &self.buf[entry.value_range.clone()];
            let first = ListIter::new(v).next()?;
            let base = entry.value_range.start;
            Some(self.buf.slice(base + first.start..base + first.end))
        } else {
            Some(self.buf.slice(entry.value_range.clone()))
        }
    }
    /// Every value of a header in order; list headers are split at top-level commas
    /// (not inside quotes or `<>`).
    pub fn header_values(&self, name: &HeaderName) -> Vec<Bytes> {
        let mut out = Vec::new();
        for entry in self.headers.iter().filter(|e| e.name.matches(name)) {
            if name.is_list() {
                let base = entry.value_range.start;
                let v = &self.buf[entry.value_range.clone()];
                for element in ListIter::new(v).filter(|r| !r.is_empty()) {
                    out.push(self.buf.slice(base + element.start..base + element.end));
                }
            } else {
                out.push(self.buf.slice(entry.value_range.clone()));
            }
        }
        out
    }
    /// Every header line of `name`, exactly as received (including its line ending).
    pub fn header_lines(&self, name: &HeaderName) -> Vec<Bytes> {
        self.headers
            .iter()
            .filter(|e| e.name.matches(name))
            .map(|e| self.buf.slice(e.line_range.clone()))
            .collect()
    }
    /// True when at least one header line of `name` is present.
    pub fn has_header(&self, name: &HeaderName) -> bool {
        self.headers.iter().any(|e| e.name.matches(name))
    }
    /// Topmost Via.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let value = self
            .header(&HeaderName::Via)
            .ok_or(missing(HeaderName::Via))?;
        Via::parse(&value)
    }
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.header_values(&HeaderName::Via)
            .iter()
            .map(Via::parse)
            .collect()
    }
    pub fn call_id(&self) -> Option<Bytes> {
        self.header(&HeaderName::CallId)
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let value = self
            .header(&HeaderName::CSeq)
            .ok_or(missing(HeaderName::CSeq))?;
        CSeq::parse(&value)
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        let value = self
            .header(&HeaderName::From)
            .ok_or(missing(HeaderName::From))?;
        NameAddr::parse(&value)
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        let value = self
            .header(&HeaderName::To)
            .ok_or(missing(HeaderName::To))?;
        NameAddr::parse(&value)
    }
    /// Every Contact value in order; empty for none and for the `*` wildcard
    /// (see [`Message::contact_is_wildcard`]).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        if self.contact_is_wildcard() {
            return Ok(Vec::new());
        }
        self.header_values(&HeaderName::Contact)
            .iter()
            .map(NameAddr::parse)
            .collect()
    }
    /// `Contact: *` (REGISTER removing all bindings).
    pub fn contact_is_wildcard(&self) -> bool {
        self.header(&HeaderName::Contact)
            .is_some_and(|v| &v[..] == b"*")
    }
    /// Route values, topmost first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.header_values(&HeaderName::Route)
            .iter()
            .map(NameAddr::parse)
            .collect()
    }
    /// Record-Route values, topmost first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.header_values(&HeaderName::RecordRoute)
            .iter()
            .map(NameAddr::parse)
            .collect()
    }
    /// Tokens of a list header such as Allow, Supported or Require (all lines).
    pub fn tokens(&self, name: &HeaderName) -> Vec<Bytes> {
        self.header_values(name)
    }
    /// True when a token list header (Allow, Supported, Require, ...) holds `token`
    /// (compared case-insensitively).
    pub fn has_token(&self, name: &HeaderName, token: &str) -> bool {
        self.header_values(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
    pub fn max_forwards(&self) -> Option<u32> {
        let v = self.header(&HeaderName::MaxForwards)?;
        scan::parse_decimal(&v, 9).map(|v| v as u32)
    }
    pub fn content_length(&self) -> Option<usize> {
        let v = self.header(&HeaderName::ContentLength)?;
        scan::parse_decimal(&v, 10).and_then(|v| usize::try_from(v).ok())
    }
    pub fn content_type(&self) -> Option<Bytes> {
        self.header(&HeaderName::ContentType)
    }
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.clone())
    }
}

fn missing(_name: HeaderName) -> ParseError {
    ParseError {
        kind: ParseErrorKind::MissingHeader,
        offset: 0,
        can_respond: false,
        header: None,
    }
}
