//! Header names (with RFC 3261 compact forms) and the typed headers a B2BUA routes on.

use bytes::Bytes;

use super::error::{ParseError, ParseErrorKind};
use super::method::Method;
use super::scan;
use super::uri::Uri;

/// Header names the SBC knows. Matching is case-insensitive and accepts the compact
/// forms `i m e l c f s k t v r b o u x`. Everything else is `Other` (compared
/// case-insensitively by the lookup functions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,    // v
    From,   // f
    To,     // t
    CallId, // i
    CSeq,
    Contact, // m
    Route,
    RecordRoute,
    MaxForwards,
    ContentLength,   // l
    ContentType,     // c
    ContentEncoding, // e
    Allow,
    Supported, // k
    Require,
    Subject,        // s
    ReferTo,        // r
    ReferredBy,     // b
    Event,          // o
    AllowEvents,    // u
    SessionExpires, // x
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
        HeaderName::known(name).unwrap_or_else(|| HeaderName::Other(Bytes::copy_from_slice(name)))
    }

    /// Like [`HeaderName::from_wire`], but an unknown name is a slice of `buf` (no copy).
    /// `range` must hold a token (the header line splitter guarantees it).
    pub(crate) fn from_wire_in(buf: &Bytes, range: std::ops::Range<usize>) -> HeaderName {
        HeaderName::known_token(&buf[range.clone()])
            .unwrap_or_else(|| HeaderName::Other(buf.slice(range)))
    }

    /// The known header for `name`, `None` for an extension header.
    pub fn known(name: &[u8]) -> Option<HeaderName> {
        if !scan::is_token(name) {
            return None;
        }
        HeaderName::known_token(name)
    }

    /// [`HeaderName::known`] for a name already checked to be a token: a token holds no
    /// byte that `| 0x20` could fold onto a letter or `-` except the letter's other case.
    #[inline]
    pub(crate) fn known_token(name: &[u8]) -> Option<HeaderName> {
        use HeaderName::*;
        let lower = |i: usize| name[i] | 0x20;
        let is = |canonical: &[u8]| eq_fold_token(name, canonical);
        let h = match name.len() {
            0 => return None,
            1 => match lower(0) {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b's' => Subject,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'o' => Event,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                _ => return None,
            },
            2 if is(b"to") => To,
            3 if is(b"via") => Via,
            4 => match lower(0) {
                b'f' if is(b"from") => From,
                b'c' if is(b"cseq") => CSeq,
                _ => return None,
            },
            5 => match lower(0) {
                b'r' if is(b"route") => Route,
                b'a' if is(b"allow") => Allow,
                b'e' if is(b"event") => Event,
                _ => return None,
            },
            6 => match lower(0) {
                b'm' if is(b"min-se") => MinSe,
                b's' if is(b"server") => Server,
                b'r' if is(b"reason") => Reason,
                _ => return None,
            },
            7 => match lower(0) {
                b'c' if is(b"call-id") => CallId,
                b'c' if is(b"contact") => Contact,
                b'r' if is(b"require") => Require,
                b's' if is(b"subject") => Subject,
                b'p' if is(b"privacy") => Privacy,
                b'e' if is(b"expires") => Expires,
                _ => return None,
            },
            8 => match lower(0) {
                b'r' if is(b"refer-to") => ReferTo,
                b'r' if is(b"replaces") => Replaces,
                b'x' if is(b"x-ms-sbc") => XMsSbc,
                _ => return None,
            },
            9 if is(b"supported") => Supported,
            10 if is(b"user-agent") => UserAgent,
            11 => match lower(0) {
                b'r' if is(b"referred-by") => ReferredBy,
                b'r' if is(b"retry-after") => RetryAfter,
                _ => return None,
            },
            12 => match lower(0) {
                b'm' if is(b"max-forwards") => MaxForwards,
                b'r' if is(b"record-route") => RecordRoute,
                b'c' if is(b"content-type") => ContentType,
                b'a' if is(b"allow-events") => AllowEvents,
                _ => return None,
            },
            14 if is(b"content-length") => ContentLength,
            15 if is(b"session-expires") => SessionExpires,
            16 if is(b"content-encoding") => ContentEncoding,
            19 if is(b"p-asserted-identity") => PAssertedIdentity,
            _ => return None,
        };
        Some(h)
    }

    /// Canonical long form used when the SBC writes the header.
    pub fn as_str(&self) -> &str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            Allow => "Allow",
            Supported => "Supported",
            Require => "Require",
            Subject => "Subject",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            Event => "Event",
            AllowEvents => "Allow-Events",
            SessionExpires => "Session-Expires",
            MinSe => "Min-SE",
            UserAgent => "User-Agent",
            Server => "Server",
            PAssertedIdentity => "P-Asserted-Identity",
            Privacy => "Privacy",
            RetryAfter => "Retry-After",
            Reason => "Reason",
            Replaces => "Replaces",
            Expires => "Expires",
            XMsSbc => "X-MS-SBC",
            // Header names are tokens (checked by the parser); a name built by code from
            // non-UTF-8 bytes is written as an empty string rather than panicking.
            Other(name) => std::str::from_utf8(name).unwrap_or(""),
        }
    }

    /// The name as bytes (canonical for known headers, as given for `Other`).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            HeaderName::Other(name) => name,
            known => known.as_str().as_bytes(),
        }
    }

    /// True for headers whose value is a comma-separated list (Via, Contact, Route,
    /// Record-Route, Allow, Supported, Require, ...), so one line may carry several values.
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Allow
                | Supported
                | Require
                | ContentEncoding
                | AllowEvents
                | PAssertedIdentity
                | Reason
        )
    }

    /// Same header, comparing extension names case-insensitively (RFC 3261 §7.3.1).
    pub fn matches(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

/// `name` (a token) equals the lower-case `canonical` ignoring ASCII case, compared eight
/// bytes at a time: within a token, `| 0x20` only folds upper-case letters.
#[inline]
fn eq_fold_token(name: &[u8], canonical: &[u8]) -> bool {
    if name.len() != canonical.len() {
        return false;
    }
    let mut a = name.chunks_exact(8);
    let mut b = canonical.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        let x = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let y = u64::from_le_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        if x | 0x2020_2020_2020_2020 != y {
            return false;
        }
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(&x, &y)| x | 0x20 == y)
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

/// The magic cookie that starts an RFC 3261 branch (§8.1.1.7).
pub(crate) const RFC3261_BRANCH_COOKIE: &[u8] = b"z9hG4bK";

impl Via {
    /// RFC 3261 magic cookie check (`z9hG4bK` prefix): RFC 3261-style branch matching.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.as_ref().is_some_and(|b| {
            b.len() > RFC3261_BRANCH_COOKIE.len()
                && b[..RFC3261_BRANCH_COOKIE.len()].eq_ignore_ascii_case(RFC3261_BRANCH_COOKIE)
        })
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
        let trimmed = scan::trim_lws(value, 0..value.len());
        let value = value.slice(trimmed);
        let spans = scan::scan_name_addr(&value).ok_or(ParseError {
            kind: ParseErrorKind::BadFromTo,
            offset: 0,
            can_respond: false,
            header: None,
        })?;
        let uri = Uri::from_spans(value.slice(spans.uri.clone()), &spans.uri_spans);
        let mut params = Vec::new();
        // Already validated by scan_name_addr, so this pass cannot fail.
        let _ = scan::scan_params(&value, spans.params_start, |name, v| {
            params.push((value.slice(name), v.map(|v| value.slice(v))));
        });
        Ok(NameAddr {
            display_name: spans.display.map(|d| value.slice(d)),
            uri,
            tag: spans.tag.map(|t| value.slice(t)),
            params,
            raw: value,
        })
    }

    /// Value of a header parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<Option<&Bytes>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }
}

impl Via {
    /// Parse one Via value (one element of a possibly comma-separated line).
    pub fn parse(value: &Bytes) -> Result<Via, ParseError> {
        let trimmed = scan::trim_lws(value, 0..value.len());
        let value = value.slice(trimmed);
        let spans = scan::scan_via(&value).ok_or(ParseError {
            kind: ParseErrorKind::BadVia,
            offset: 0,
            can_respond: false,
            header: None,
        })?;
        let transport = &value[spans.transport.clone()];
        let transport = match KNOWN_TRANSPORTS
            .iter()
            .find(|t| t.as_bytes().eq_ignore_ascii_case(transport))
        {
            Some(t) => Bytes::from_static(t.as_bytes()),
            None => Bytes::from(transport.to_ascii_uppercase()),
        };
        Ok(Via {
            transport,
            host: value.slice(spans.host),
            port: spans.port,
            branch: spans.branch.map(|b| value.slice(b)),
            received: spans.received.map(|r| value.slice(r)),
            rport: spans.rport,
            raw: value,
        })
    }
}

const KNOWN_TRANSPORTS: [&str; 6] = ["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"];

impl CSeq {
    /// Parse a CSeq value (`1*DIGIT LWS Method`, number below 2**31).
    pub fn parse(value: &[u8]) -> Result<CSeq, ParseError> {
        let (seq, method) = scan::scan_cseq(value).ok_or(ParseError {
            kind: ParseErrorKind::BadCSeq,
            offset: 0,
            can_respond: false,
            header: None,
        })?;
        Ok(CSeq {
            seq,
            method: Method::from_token(&value[method]),
        })
    }
}
