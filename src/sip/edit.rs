//! Re-sending a received message with a few changes: every header line not touched is
//! copied byte for byte (folding, compact names and odd spacing included); touched headers
//! are written in canonical long form; Content-Length is always recomputed.

use bytes::{BufMut, Bytes, BytesMut};

use super::builder::{put_header, put_line};
use super::header::HeaderName;
use super::message::{Message, StartLine};

enum Change {
    Remove(HeaderName),
    /// Replace every line of the header by one line, at the position of the first.
    Set(HeaderName, Bytes),
}

/// Builder returned by [`Message::edit`].
pub struct MessageEditor<'a> {
    msg: &'a Message,
    request_uri: Option<Bytes>,
    changes: Vec<Change>,
    prepend: Vec<(HeaderName, Bytes)>,
    append: Vec<(HeaderName, Bytes)>,
    body: Option<(Option<Bytes>, Bytes)>,
}

impl Message {
    /// Start re-writing this message (for forwarding on the other leg or re-sending).
    pub fn edit(&self) -> MessageEditor<'_> {
        MessageEditor {
            msg: self,
            request_uri: None,
            changes: Vec::new(),
            prepend: Vec::new(),
            append: Vec::new(),
            body: None,
        }
    }
}

impl MessageEditor<'_> {
    /// New Request-URI (ignored for responses).
    pub fn request_uri(mut self, uri: &[u8]) -> Self {
        self.request_uri = Some(Bytes::copy_from_slice(uri));
        self
    }
    /// Drop every line of `name`.
    pub fn remove(mut self, name: &HeaderName) -> Self {
        self.changes.push(Change::Remove(name.clone()));
        self
    }
    /// Replace all lines of `name` by one (at the first one's place, or appended).
    pub fn set(mut self, name: &HeaderName, value: &[u8]) -> Self {
        self.changes
            .push(Change::Set(name.clone(), Bytes::copy_from_slice(value)));
        self
    }
    /// Insert a line before all headers (a new top Via, for instance).
    pub fn prepend(mut self, name: &HeaderName, value: &[u8]) -> Self {
        self.prepend
            .push((name.clone(), Bytes::copy_from_slice(value)));
        self
    }
    /// Add a line after all headers.
    pub fn append(mut self, name: &HeaderName, value: &[u8]) -> Self {
        self.append
            .push((name.clone(), Bytes::copy_from_slice(value)));
        self
    }
    /// Replace the body; `content_type` replaces Content-Type when given.
    pub fn body(mut self, content_type: Option<&str>, body: &[u8]) -> Self {
        self.body = Some((
            content_type.map(|c| Bytes::copy_from_slice(c.as_bytes())),
            Bytes::copy_from_slice(body),
        ));
        self
    }

    pub fn finish(self) -> Bytes {
        let msg = self.msg;
        let raw = msg.bytes();
        let mut out = BytesMut::with_capacity(raw.len() + 256);
        let first = msg
            .header_entries()
            .first()
            .map_or(msg.body.start, |e| e.line_range.start);
        match (msg.start_line(), &self.request_uri) {
            (StartLine::Request { method, .. }, Some(uri)) => {
                out.put_slice(method.as_bytes());
                out.put_u8(b' ');
                out.put_slice(uri);
                out.put_slice(b" SIP/2.0\r\n");
            }
            _ => put_line(&mut out, start_line_bytes(raw, first)),
        }
        for (name, value) in &self.prepend {
            put_header(&mut out, name, value);
        }
        let mut new_content_type = self.body.as_ref().and_then(|(ct, _)| ct.clone());
        let mut set_done = vec![false; self.changes.len()];
        for entry in msg.header_entries() {
            if entry.name == HeaderName::ContentLength {
                continue;
            }
            if entry.name == HeaderName::ContentType {
                if let Some(ct) = new_content_type.take() {
                    put_header(&mut out, &HeaderName::ContentType, &ct);
                    continue;
                }
                if self.body.is_some() {
                    continue;
                }
            }
            let mut keep = true;
            for (i, change) in self.changes.iter().enumerate() {
                match change {
                    Change::Remove(name) if name.matches(&entry.name) => keep = false,
                    Change::Set(name, value) if name.matches(&entry.name) => {
                        keep = false;
                        if !set_done[i] {
                            put_header(&mut out, name, value);
                            set_done[i] = true;
                        }
                    }
                    _ => {}
                }
            }
            if keep {
                out.put_slice(&raw[entry.line_range.clone()]);
            }
        }
        for (i, change) in self.changes.iter().enumerate() {
            if let (Change::Set(name, value), false) = (change, set_done[i]) {
                put_header(&mut out, name, value);
            }
        }
        for (name, value) in &self.append {
            put_header(&mut out, name, value);
        }
        if let Some(ct) = new_content_type {
            put_header(&mut out, &HeaderName::ContentType, &ct);
        }
        let body = match &self.body {
            Some((_, body)) => body.clone(),
            None => msg.body(),
        };
        out.put_slice(b"Content-Length: ");
        out.put_slice(body.len().to_string().as_bytes());
        out.put_slice(b"\r\n\r\n");
        out.put_slice(&body);
        out.freeze()
    }
}

/// The start line as received (after any leading CRLFs), with its line ending.
fn start_line_bytes(raw: &[u8], headers_start: usize) -> &[u8] {
    let mut start = 0;
    while start < headers_start && matches!(raw[start], b'\r' | b'\n') {
        start += 1;
    }
    &raw[start..headers_start]
}
