//! Building new messages: responses to a request, and new requests (also used for ACK/CANCEL).
//! Output is wire bytes, re-parsed into a [`Message`] where a typed view is needed.
//!
//! Headers the builder writes use the canonical long name; lines copied from another
//! message keep their bytes (only the line ending is normalised to CRLF). Values given by
//! callers have CR and LF replaced by spaces so no caller can inject a header line.

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{HeaderName, NameAddr};
use super::message::Message;
use super::method::Method;
use super::scan::{self, HeaderLines};

/// Builds a response to `request`: copies Via (all, in order), From, To, Call-ID, CSeq
/// byte for byte (RFC 3261 §8.2.6.2), adds a To tag when given and the request's To has none.
pub struct ResponseBuilder {
    pub(crate) out: BytesMut,
    /// Offset in `out` just past the To value, where a tag is inserted.
    to_value_end: Option<usize>,
    to_has_tag: bool,
}

impl ResponseBuilder {
    pub fn new(request: &Message, status: u16, reason: &str) -> ResponseBuilder {
        let raw = request.bytes();
        let mut b = ResponseBuilder::start(status, reason, raw.len());
        for entry in request.header_entries() {
            if entry.name == HeaderName::Via {
                put_line(&mut b.out, &raw[entry.line_range.clone()]);
            }
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            let Some(entry) = request.header_entries().iter().find(|e| e.name == name) else {
                continue;
            };
            if name == HeaderName::To {
                b.out
                    .put_slice(&raw[entry.line_range.start..entry.value_range.end]);
                b.to_value_end = Some(b.out.len());
                b.out.put_slice(b"\r\n");
                b.to_has_tag = request.to().map_or(true, |to| to.tag.is_some());
            } else {
                put_line(&mut b.out, &raw[entry.line_range.clone()]);
            }
        }
        b
    }

    fn start(status: u16, reason: &str, capacity_hint: usize) -> ResponseBuilder {
        let mut out = BytesMut::with_capacity(capacity_hint.min(4096) + 128);
        out.put_slice(b"SIP/2.0 ");
        // Out-of-range codes are the caller's bug; clamp rather than write a broken line.
        let status = status.clamp(100, 699);
        out.put_slice(status.to_string().as_bytes());
        out.put_u8(b' ');
        put_clean(&mut out, reason.as_bytes());
        out.put_slice(b"\r\n");
        ResponseBuilder {
            out,
            to_value_end: None,
            to_has_tag: true,
        }
    }

    /// Add a To tag if the request's To had none (not used for 100 Trying).
    pub fn to_tag(mut self, tag: &str) -> ResponseBuilder {
        if let (Some(at), false) = (self.to_value_end, self.to_has_tag) {
            let tail = self.out.split_off(at);
            self.out.put_slice(b";tag=");
            put_clean(&mut self.out, tag.as_bytes());
            self.out.unsplit(tail);
            self.to_has_tag = true;
        }
        self
    }
    pub fn header(mut self, name: &HeaderName, value: &[u8]) -> ResponseBuilder {
        put_header(&mut self.out, name, value);
        self
    }
    /// Finish with a body (sets Content-Type when given and Content-Length always).
    pub fn body(self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        finish(self.out, content_type, body)
    }
    /// Finish with no body (`Content-Length: 0`).
    pub fn build(self) -> Bytes {
        self.body(None, b"")
    }
    /// Best-effort error response for raw bytes that failed to parse fully but whose
    /// Via, From, To, Call-ID and CSeq are readable. `None` when they are not, or when
    /// the raw message is a response or an ACK (neither is ever answered).
    pub fn error_for_raw(raw: &[u8], status: u16, reason: &str) -> Option<Bytes> {
        let found = RawEssentials::find(raw)?;
        let mut b = ResponseBuilder::start(status, reason, raw.len());
        for via in &found.vias {
            put_line(&mut b.out, &raw[via.clone()]);
        }
        put_line(&mut b.out, &raw[found.from.clone()]);
        b.out
            .put_slice(&raw[found.to.line.start..found.to.value.end]);
        let to_value = Bytes::copy_from_slice(&raw[found.to.value.clone()]);
        if NameAddr::parse(&to_value).is_ok_and(|to| to.tag.is_none()) {
            b.out.put_slice(b";tag=");
            b.out
                .put_slice(format!("{:016x}", rand::random::<u64>()).as_bytes());
        }
        b.out.put_slice(b"\r\n");
        put_line(&mut b.out, &raw[found.call_id.clone()]);
        put_line(&mut b.out, &raw[found.cseq.clone()]);
        Some(b.build())
    }
}

/// True when [`ResponseBuilder::error_for_raw`] can answer `raw`.
pub(crate) fn respondable(raw: &[u8]) -> bool {
    RawEssentials::find(raw).is_some()
}

/// The lines an error response needs, found by a lenient scan that ignores limits and
/// stops at the first line it cannot split. None when one of them cannot be copied safely
/// (a NUL or a bare CR in it).
struct RawEssentials {
    vias: Vec<std::ops::Range<usize>>,
    from: std::ops::Range<usize>,
    to: scan::RawLine,
    call_id: std::ops::Range<usize>,
    cseq: std::ops::Range<usize>,
}

impl RawEssentials {
    fn find(raw: &[u8]) -> Option<RawEssentials> {
        let mut start = 0;
        while start < raw.len() && matches!(raw[start], b'\r' | b'\n') {
            start += 1;
        }
        let line_end = start + memchr::memchr(b'\n', &raw[start..])?;
        let start_line = &raw[start..line_end];
        if start_line.len() >= 4 && start_line[..4].eq_ignore_ascii_case(b"SIP/") {
            return None;
        }
        let method_end = memchr::memchr(b' ', start_line)?;
        let method = &start_line[..method_end];
        if !scan::is_token(method) || method == b"ACK" {
            return None;
        }
        let mut vias = Vec::new();
        let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
        for line in HeaderLines::new(raw, line_end + 1, usize::MAX / 4) {
            let Ok(line) = line else { break };
            if line.value.is_empty() {
                continue;
            }
            let name = HeaderName::known(&raw[line.name.clone()]);
            let copied = matches!(
                name,
                Some(
                    HeaderName::Via
                        | HeaderName::From
                        | HeaderName::To
                        | HeaderName::CallId
                        | HeaderName::CSeq
                )
            );
            if copied && line.unsafe_to_copy {
                return None;
            }
            match name {
                Some(HeaderName::Via) => vias.push(line.line),
                Some(HeaderName::From) => {
                    from.get_or_insert(line.line);
                }
                Some(HeaderName::To) => {
                    to.get_or_insert(line);
                }
                Some(HeaderName::CallId) => {
                    call_id.get_or_insert(line.line);
                }
                Some(HeaderName::CSeq) => {
                    if let Some(c) = scan::scan_cseq(&raw[line.value.clone()]) {
                        if &raw[line.value.clone()][c.1] == b"ACK" {
                            return None;
                        }
                    }
                    cseq.get_or_insert(line.line);
                }
                _ => {}
            }
        }
        if vias.is_empty() {
            return None;
        }
        Some(RawEssentials {
            vias,
            from: from?,
            to: to?,
            call_id: call_id?,
            cseq: cseq?,
        })
    }
}

/// Builds a request line by line; the caller supplies every header it needs.
pub struct RequestBuilder {
    pub(crate) out: BytesMut,
}

impl RequestBuilder {
    pub fn new(method: &Method, request_uri: &[u8]) -> RequestBuilder {
        let mut out = BytesMut::with_capacity(1024);
        put_clean(&mut out, method.as_bytes());
        out.put_u8(b' ');
        put_clean(&mut out, request_uri);
        out.put_slice(b" SIP/2.0\r\n");
        RequestBuilder { out }
    }
    pub fn header(mut self, name: &HeaderName, value: &[u8]) -> RequestBuilder {
        put_header(&mut self.out, name, value);
        self
    }
    /// Copy a header line from another message byte for byte (every instance, in order).
    pub fn copy_header(mut self, from: &Message, name: &HeaderName) -> RequestBuilder {
        let raw = from.bytes();
        for entry in from
            .header_entries()
            .iter()
            .filter(|e| e.name.matches(name))
        {
            put_line(&mut self.out, &raw[entry.line_range.clone()]);
        }
        self
    }
    pub fn body(self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        finish(self.out, content_type, body)
    }
    pub fn build(self) -> Bytes {
        self.body(None, b"")
    }
}

/// Writes a header line from another message, normalising its line ending to CRLF.
pub(crate) fn put_line(out: &mut BytesMut, line: &[u8]) {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    out.put_slice(&line[..end]);
    out.put_slice(b"\r\n");
}

pub(crate) fn put_header(out: &mut BytesMut, name: &HeaderName, value: &[u8]) {
    put_clean(out, name.as_bytes());
    out.put_slice(b": ");
    put_clean(out, value);
    out.put_slice(b"\r\n");
}

/// Copies `value`, replacing CR and LF by spaces.
fn put_clean(out: &mut BytesMut, value: &[u8]) {
    if memchr::memchr2(b'\r', b'\n', value).is_none() {
        out.put_slice(value);
    } else {
        out.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }
}

pub(crate) fn finish(mut out: BytesMut, content_type: Option<&str>, body: &[u8]) -> Bytes {
    if let Some(ct) = content_type {
        put_header(&mut out, &HeaderName::ContentType, ct.as_bytes());
    }
    out.put_slice(b"Content-Length: ");
    out.put_slice(body.len().to_string().as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
    out.freeze()
}
