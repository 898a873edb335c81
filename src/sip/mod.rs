//! SIP message layer: parsing, framing, typed header access and builders over `bytes::Bytes`.
//!
//! No I/O lives here. A [`Message`] keeps the original wire bytes and an index of header
//! positions, so a header the SBC does not touch is re-sent byte for byte.
//!
//! API contract used by `transport`, `transaction`, `health` and (later) `call`.
//! Signatures here are stable; bodies are owned by the `sip` module's author.

pub mod builder;
pub mod edit;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod multipart;
pub mod parse;
pub mod reason;
mod scan;
pub mod uri;

pub use builder::{RequestBuilder, ResponseBuilder};
pub use edit::MessageEditor;
pub use error::{ParseError, ParseErrorKind};
pub use framing::{FrameEvent, StreamFramer};
pub use header::{CSeq, HeaderName, NameAddr, Via};
pub use message::{Message, StartLine};
pub use method::Method;
pub use reason::ReasonValue;
pub use uri::{SipUri, Uri};

/// Size limits applied while parsing; every value comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message (start line + headers + body), bytes. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Number of header lines (after unfolding). Default 128.
    pub max_headers: usize,
    /// Length of one (unfolded) header line, bytes. Default 8 KiB.
    pub max_header_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_headers: 128,
            max_header_line_bytes: 8 * 1024,
        }
    }
}

#[cfg(test)]
mod tests;
