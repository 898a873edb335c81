//! Header names (with RFC 3261 compact forms) and the typed headers a B2BUA routes on.

use bytes::Bytes;

use super::error::ParseError;
use super::method::Method;
use super::uri::Uri;

/// Header names the SBC knows. Matching is case-insensitive and accepts the compact
/// forms `i m e l c f s k t v r b o u x`. Everything else is `Other` (compared
/// case-insensitively by the lookup functions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,                // v
    From,               // f
    To,                 // t
    CallId,             // i
    CSeq,
    Contact,            // m
    Route,
    RecordRoute,
    MaxForwards,
    ContentLength,      // l
    ContentType,        // c
    ContentEncoding,    // e
    Allow,
    Supported,          // k
    Require,
    Subject,            // s
    ReferTo,            // r
    ReferredBy,         // b
    Event,              // o
    AllowEvents,        // u
    SessionExpires,     // x
    MinSe,
    UserAgent,
    Server,
    PAssertedIdentity,
    Privacy,
    RetryAfter,
    Reason,
    Replaces,
    Expires,
    /// `X-MS-SBC` (Teams checklist row 59).
    XMsSbc,
    Other(Bytes),
}

impl HeaderName {
    /// Recognise a header name as written on the wire (any case, long or compact form).
    pub fn from_wire(name: &[u8]) -> HeaderName {
        let _ = name;
        todo!("sip module")
    }

    /// Canonical long form used when the SBC writes the header.
    pub fn as_str(&self) -> &str {
        todo!("sip module")
    }

    /// True for headers whose value is a comma-separated list (Via, Contact, Route,
    /// Record-Route, Allow, Supported, Require, ...), so one line may carry several values.
    pub fn is_list(&self) -> bool {
        todo!("sip module")
    }
}

/// One parsed Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, ... upper-cased.
    pub transport: Bytes,
    pub host: Bytes,
    pub port: Option<u16>,
    /// The `branch` parameter, if any.
    pub branch: Option<Bytes>,
    pub received: Option<Bytes>,
    /// `Some(None)` for a bare `rport`, `Some(Some(p))` when a value is present.
    pub rport: Option<Option<u16>>,
    /// The raw value, for re-sending unchanged.
    pub raw: Bytes,
}

impl Via {
    /// RFC 3261 magic cookie check (`z9hG4bK` prefix): RFC 3261-style branch matching.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .as_ref()
            .is_some_and(|b| b.len() > 7 && b[..7].eq_ignore_ascii_case(b"z9hG4bK"))
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// A name-addr or addr-spec (From, To, Contact, Route, Record-Route, Refer-To, P-Asserted-Identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name without quotes, if any.
    pub display_name: Option<Bytes>,
    pub uri: Uri,
    /// The `tag` parameter (header parameter, outside the angle brackets).
    pub tag: Option<Bytes>,
    /// Header parameters (outside `<>`), raw `name[=value]` pairs in order, tag included.
    pub params: Vec<(Bytes, Option<Bytes>)>,
    /// The raw value, for re-sending unchanged.
    pub raw: Bytes,
}

impl NameAddr {
    pub fn parse(value: &Bytes) -> Result<NameAddr, ParseError> {
        let _ = value;
        todo!("sip module")
    }
}
