//! Building new messages: responses to a request, and new requests (also used for ACK/CANCEL).
//! Output is wire bytes, re-parsed into a [`Message`] where a typed view is needed.

use bytes::{Bytes, BytesMut};

use super::header::HeaderName;
use super::message::Message;
use super::method::Method;

/// Builds a response to `request`: copies Via (all, in order), From, To, Call-ID, CSeq
/// byte for byte (RFC 3261 §8.2.6.2), adds a To tag when given and the request's To has none.
pub struct ResponseBuilder {
    pub(crate) out: BytesMut,
}

impl ResponseBuilder {
    pub fn new(request: &Message, status: u16, reason: &str) -> ResponseBuilder {
        let _ = (request, status, reason);
        todo!("sip module")
    }
    /// Add a To tag if the request's To had none (not used for 100 Trying).
    pub fn to_tag(self, tag: &str) -> ResponseBuilder {
        let _ = tag;
        todo!("sip module")
    }
    pub fn header(self, name: &HeaderName, value: &[u8]) -> ResponseBuilder {
        let _ = (name, value);
        todo!("sip module")
    }
    /// Finish with a body (sets Content-Type when given and Content-Length always).
    pub fn body(self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        let _ = (content_type, body);
        todo!("sip module")
    }
    /// Finish with no body (`Content-Length: 0`).
    pub fn build(self) -> Bytes {
        self.body(None, b"")
    }
    /// Best-effort error response for raw bytes that failed to parse fully but whose
    /// Via, From, To, Call-ID and CSeq are readable. `None` when they are not, or when
    /// the raw message is a response or an ACK (neither is ever answered).
    pub fn error_for_raw(raw: &[u8], status: u16, reason: &str) -> Option<Bytes> {
        let _ = (raw, status, reason);
        todo!("sip module")
    }
}

/// Builds a request line by line; the caller supplies every header it needs.
pub struct RequestBuilder {
    pub(crate) out: BytesMut,
}

impl RequestBuilder {
    pub fn new(method: &Method, request_uri: &[u8]) -> RequestBuilder {
        let _ = (method, request_uri);
        todo!("sip module")
    }
    pub fn header(self, name: &HeaderName, value: &[u8]) -> RequestBuilder {
        let _ = (name, value);
        todo!("sip module")
    }
    /// Copy a header line from another message byte for byte (every instance, in order).
    pub fn copy_header(self, from: &Message, name: &HeaderName) -> RequestBuilder {
        let _ = (from, name);
        todo!("sip module")
    }
    pub fn body(self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        let _ = (content_type, body);
        todo!("sip module")
    }
    pub fn build(self) -> Bytes {
        self.body(None, b"")
    }
}
