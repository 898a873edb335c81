//! The parser proper: start line, header index, body.
//!
//! One pass over the buffer with `memchr`: the start line, then one logical header line
//! at a time (folding accepted), recording ranges only; every value octet is checked on
//! the way (no controls, UTF-8 text). What RFC 3261 makes mandatory is validated here
//! without allocation (top Via, From/To and Contact structure, Call-ID, CSeq,
//! Max-Forwards, Content-Length, Date); the insides of URIs and every other header are
//! parsed on access, where a bad value is an `Err` for the caller to answer with 400.

use std::ops::Range;

use bytes::Bytes;

use super::error::{ParseError, ParseErrorKind};
use super::header::{HeaderName, RFC3261_BRANCH_COOKIE};
use super::message::{HeaderEntry, Message, StartLine};
use super::method::Method;
use super::scan::{self, HeaderLines, ListIter};
use super::uri::Uri;
use super::Limits;

type Failure = (ParseErrorKind, usize);

/// A [`Failure`] and, for a bad octet, the header it was found in.
struct Rejection {
    kind: ParseErrorKind,
    offset: usize,
    header: Option<HeaderName>,
}

impl From<Failure> for Rejection {
    fn from((kind, offset): Failure) -> Rejection {
        Rejection {
            kind,
            offset,
            header: None,
        }
    }
}

/// Parse one message from a datagram or a frame. A missing Content-Length means the body
/// runs to the end of `buf`; bytes beyond Content-Length are discarded (RFC 3261 §18.3).
pub fn parse_message(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    parse_inner(&buf, limits).map_err(|r| ParseError {
        kind: r.kind,
        offset: r.offset,
        can_respond: r.kind != ParseErrorKind::Incomplete && super::builder::respondable(&buf),
        header: r.header,
    })
}

/// Where the single-instance headers were found while indexing.
#[derive(Default)]
struct Seen {
    via: Option<usize>,
    from: Option<usize>,
    to: Option<usize>,
    call_id: Option<usize>,
    cseq: Option<usize>,
    content_length: Option<usize>,
    max_forwards: Option<usize>,
    /// The first Contact line (there may be several).
    contact: Option<usize>,
    date: Option<usize>,
}

fn once(
    slot: &mut Option<usize>,
    index: usize,
    kind: ParseErrorKind,
    at: usize,
) -> Result<(), Failure> {
    if slot.is_some() {
        return Err((kind, at));
    }
    *slot = Some(index);
    Ok(())
}

fn parse_inner(buf: &Bytes, limits: &Limits) -> Result<Message, Rejection> {
    if buf.len() > limits.max_message_bytes {
        return Err((ParseErrorKind::TooLarge, limits.max_message_bytes).into());
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let mut start = 0;
    while start < buf.len() && matches!(buf[start], b'\r' | b'\n') {
        start += 1;
    }
    let line_end = match memchr::memchr(b'\n', &buf[start..]) {
        Some(nl) => start + nl,
        None => return Err((ParseErrorKind::Incomplete, buf.len()).into()),
    };
    let content_end = if line_end > start && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    if content_end - start > limits.max_header_line_bytes {
        return Err((ParseErrorKind::HeaderLineTooLong, start).into());
    }
    let start_line = parse_start_line(buf, start..content_end)?;

    let mut headers: Vec<HeaderEntry> = Vec::with_capacity(24);
    let mut seen = Seen::default();
    // Reported once the header block is known to be complete, so a truncated datagram
    // stays `Incomplete` (never answered).
    let mut bad_text: Option<Rejection> = None;
    let mut lines = HeaderLines::new(buf, line_end + 1, limits.max_header_line_bytes);
    for line in &mut lines {
        let line = line?;
        if headers.len() >= limits.max_headers {
            return Err((ParseErrorKind::TooManyHeaders, line.line.start).into());
        }
        let name = HeaderName::from_wire_in(buf, line.name.clone());
        if bad_text.is_none() {
            if let Some((kind, offset)) = bad_text_in(buf, &line, &name) {
                bad_text = Some(Rejection {
                    kind,
                    offset,
                    header: Some(name.clone()),
                });
            }
        }
        let index = headers.len();
        let at = line.line.start;
        match &name {
            HeaderName::Via => {
                seen.via.get_or_insert(index);
            }
            HeaderName::From => once(&mut seen.from, index, ParseErrorKind::BadFromTo, at)?,
            HeaderName::To => once(&mut seen.to, index, ParseErrorKind::BadFromTo, at)?,
            HeaderName::CallId => once(&mut seen.call_id, index, ParseErrorKind::BadCallId, at)?,
            HeaderName::CSeq => once(&mut seen.cseq, index, ParseErrorKind::BadCSeq, at)?,
            HeaderName::ContentLength => once(
                &mut seen.content_length,
                index,
                ParseErrorKind::BadContentLength,
                at,
            )?,
            HeaderName::MaxForwards => once(
                &mut seen.max_forwards,
                index,
                ParseErrorKind::BadMaxForwards,
                at,
            )?,
            HeaderName::Contact => {
                seen.contact.get_or_insert(index);
            }
            HeaderName::Other(other) if other.eq_ignore_ascii_case(b"date") => {
                once(&mut seen.date, index, ParseErrorKind::BadDate, at)?
            }
            _ => {}
        }
        headers.push(HeaderEntry {
            name,
            name_range: line.name,
            value_range: line.value,
            line_range: line.line,
        });
    }
    let Some(body_start) = lines.body_start else {
        return Err((ParseErrorKind::Incomplete, buf.len()).into());
    };
    if let Some(rejection) = bad_text {
        return Err(rejection);
    }

    validate(buf, &start_line, &headers, &seen)?;

    let body_end = match seen.content_length {
        Some(i) => {
            let r = headers[i].value_range.clone();
            let length = scan::parse_decimal(&buf[r.clone()], 10)
                .and_then(|l| usize::try_from(l).ok())
                .ok_or((ParseErrorKind::BadContentLength, r.start))?;
            if length > buf.len() - body_start {
                return Err((ParseErrorKind::BodyLengthMismatch, body_start).into());
            }
            body_start + length
        }
        None => buf.len(),
    };
    let buf = if body_end == buf.len() {
        buf.clone()
    } else {
        buf.slice(..body_end)
    };
    Ok(Message {
        buf,
        start: start_line,
        headers,
        body: body_start..body_end,
    })
}

/// The first octet of a header line's value its grammar does not allow, with why. Controls
/// after a backslash are quoted-pairs only inside a quoted string, and Subject
/// (TEXT-UTF8-TRIM) has no quoted strings.
fn bad_text_in(buf: &[u8], line: &scan::RawLine, name: &HeaderName) -> Option<Failure> {
    if line.bad_octet.is_some() {
        return line.bad_octet;
    }
    let escaped = line.escaped_control?;
    let control = if *name == HeaderName::Subject {
        escaped
    } else {
        line.value.start + scan::control_outside_quoted_pair(&buf[line.value.clone()])?
    };
    Some((ParseErrorKind::ControlCharacter, control))
}

fn parse_start_line(buf: &Bytes, line: Range<usize>) -> Result<StartLine, Failure> {
    let s = &buf[line.clone()];
    let at = line.start;
    if s.len() >= 4 && s[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', s).ok_or((ParseErrorKind::BadStartLine, at))?;
        if !s[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err((ParseErrorKind::BadVersion, at));
        }
        let rest = &s[sp + 1..];
        let code_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if code_len != 3 || (rest.len() > 3 && rest[3] != b' ') {
            return Err((ParseErrorKind::BadStatusCode, at + sp + 1));
        }
        let status = scan::parse_decimal(&rest[..3], 3).unwrap_or(0) as u16;
        if !(100..=699).contains(&status) {
            return Err((ParseErrorKind::BadStatusCode, at + sp + 1));
        }
        let reason_start = (at + sp + 1 + 4).min(line.end);
        let reason = &buf[reason_start..line.end];
        if let Some((kind, at)) = scan::first_bad_text_octet(reason) {
            return Err((kind, reason_start + at));
        }
        return Ok(StartLine::Response {
            status,
            reason: buf.slice(reason_start..line.end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, RFC 4475 §3.1.2.9/10)
    let sp1 = memchr::memchr(b' ', s).ok_or((ParseErrorKind::BadStartLine, at))?;
    let method = &s[..sp1];
    if !scan::is_token(method) {
        return Err((ParseErrorKind::BadMethod, at));
    }
    let sp2 = memchr::memrchr(b' ', s).unwrap_or(sp1);
    if sp2 == sp1 {
        return Err((ParseErrorKind::BadStartLine, at));
    }
    let version = &s[sp2 + 1..];
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        let looks_like_version = version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/");
        let kind = if looks_like_version {
            ParseErrorKind::BadVersion
        } else {
            ParseErrorKind::BadStartLine
        };
        return Err((kind, at + sp2 + 1));
    }
    let uri_range = at + sp1 + 1..at + sp2;
    let uri_bytes = &buf[uri_range.clone()];
    let bad_uri = (ParseErrorKind::BadRequestUri, uri_range.start);
    // No separate whitespace check: `scan_uri` admits no byte at or below SP in any part.
    if uri_bytes.is_empty() {
        return Err(bad_uri);
    }
    let uri = Uri::parse_owned(buf.slice(uri_range)).map_err(|_| bad_uri)?;
    // A Request-URI must not carry `?headers` (RFC 3261 §19.1.5; RFC 4475 §3.1.2.11).
    if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
        return Err(bad_uri);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

fn validate(
    buf: &[u8],
    start: &StartLine,
    headers: &[HeaderEntry],
    seen: &Seen,
) -> Result<(), Failure> {
    let value = |i: usize| &buf[headers[i].value_range.clone()];
    let missing = |slot: Option<usize>| slot.ok_or((ParseErrorKind::MissingHeader, 0));
    let via = missing(seen.via)?;
    let from = missing(seen.from)?;
    let to = missing(seen.to)?;
    let call_id = missing(seen.call_id)?;
    let cseq = missing(seen.cseq)?;

    // The top Via is what transactions match and responses route on; lower Vias are
    // only copied back verbatim, so they are checked when read (`Message::vias`).
    let top_via = &buf[headers[via].value_range.clone()];
    let first = ListIter::new(top_via).next().unwrap_or(0..0);
    let top = &top_via[first];
    let bad_via = (ParseErrorKind::BadVia, headers[via].value_range.start);
    let spans = scan::scan_via(top).ok_or(bad_via)?;
    // The magic cookie alone claims an RFC 3261 transaction identifier and gives none;
    // RFC 4475 §3.2.1 (badbranch) lets us refuse it, which keeps such requests from ever
    // matching each other as retransmissions.
    if spans
        .branch
        .is_some_and(|b| top[b].eq_ignore_ascii_case(RFC3261_BRANCH_COOKIE))
    {
        return Err(bad_via);
    }
    for i in [from, to] {
        if !scan::name_addr_shape_ok(value(i)) {
            return Err((ParseErrorKind::BadFromTo, headers[i].value_range.start));
        }
    }
    if !scan::is_call_id(value(call_id)) {
        return Err((
            ParseErrorKind::BadCallId,
            headers[call_id].value_range.start,
        ));
    }
    let cseq_value = value(cseq);
    let (_, method_range) = scan::scan_cseq(cseq_value)
        .ok_or((ParseErrorKind::BadCSeq, headers[cseq].value_range.start))?;
    if let StartLine::Request { method, .. } = start {
        if method.as_bytes() != &cseq_value[method_range] {
            return Err((
                ParseErrorKind::CSeqMethodMismatch,
                headers[cseq].value_range.start,
            ));
        }
    }
    if let Some(i) = seen.max_forwards {
        // Max-Forwards is an 8-bit hop count in practice; RFC 4475 §3.1.2.4 rejects 300.
        if scan::parse_decimal(value(i), 10).is_none_or(|v| v > 255) {
            return Err((ParseErrorKind::BadMaxForwards, headers[i].value_range.start));
        }
    }
    if let Some(i) = seen.content_length {
        if scan::parse_decimal(value(i), 10).is_none() {
            return Err((
                ParseErrorKind::BadContentLength,
                headers[i].value_range.start,
            ));
        }
    }
    if let Some(first) = seen.contact {
        // Shape only, like From/To: an unbracketed URI with `?` or `,` of its own (RFC 4475
        // §3.1.2.13) cannot be split from the header parameters. URIs are read on access.
        for entry in headers[first..]
            .iter()
            .filter(|e| e.name == HeaderName::Contact)
        {
            let v = &buf[entry.value_range.clone()];
            let bad = v != b"*"
                && ListIter::new(v)
                    .filter(|element| !element.is_empty())
                    .any(|element| !scan::name_addr_shape_ok(&v[element]));
            if bad {
                return Err((ParseErrorKind::BadContact, entry.value_range.start));
            }
        }
    }
    if let Some(i) = seen.date {
        // RFC 4475 §3.1.2.12 allows refusing a Date outside GMT; a B2BUA that re-sends it
        // should not pass on what the next hop may refuse.
        if !scan::is_sip_date(value(i)) {
            return Err((ParseErrorKind::BadDate, headers[i].value_range.start));
        }
    }
    Ok(())
}
