//! Allocation-free scanners over byte slices. Everything here returns ranges into the
//! slice it was given, so validation at parse time costs no allocation and typed views
//! are built later (on access) by slicing the shared `Bytes`.

use std::ops::Range;

use super::error::ParseErrorKind;

const fn build_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// RFC 3261 `token` characters.
static TOKEN: [bool; 256] = build_table(b"-.!%*_+`'~");
/// RFC 3261 `word` characters, plus `=`, `#`, `&` and `$` that real equipment puts in
/// Call-IDs (base64 padding, hashes) and that delimit nothing in that header (Call-ID).
static WORD: [bool; 256] = build_table(b"-.!%*_+`'~()<>:\\\"/[]?{}=#&$");
/// `user` characters: unreserved + user-unreserved, plus an unescaped `#` (Teams row 25).
static USER: [bool; 256] = build_table(b"-_.!~*'()&=+$,;?/#");
static PASSWORD: [bool; 256] = build_table(b"-_.!~*'()&=+$,");
/// `paramchar` = param-unreserved / unreserved (escapes handled separately).
static PARAMCHAR: [bool; 256] = build_table(b"[]/:&+$-_.!~*'()");
/// Header-parameter values: token, or host-like (IPv6 with `:` and brackets).
static GENVALUE: [bool; 256] = build_table(b"-.!%*_+`'~:[]");
static HOSTCHAR: [bool; 256] = build_table(b"-._");
/// Characters allowed in a URI `?headers` part (hnv-unreserved / unreserved / `=` / `&`).
static URI_HEADERS: [bool; 256] = build_table(b"[]/?:+$-_.!~*'()=&");

#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TOKEN[b as usize])
}

/// RFC 3261 `callid = word [ "@" word ]` (with the tolerated extras of [`WORD`]), in one
/// pass (every message is checked).
pub(crate) fn is_call_id(s: &[u8]) -> bool {
    let mut at = None;
    for (i, &b) in s.iter().enumerate() {
        if b == b'@' {
            if at.is_some() {
                return false;
            }
            at = Some(i);
        } else if !WORD[b as usize] {
            return false;
        }
    }
    match at {
        Some(i) => i > 0 && i + 1 < s.len(),
        None => !s.is_empty(),
    }
}

/// RFC 3261 `SIP-date` (rfc1123-date, RFC 2616 §3.3.1): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn is_sip_date(v: &[u8]) -> bool {
    const WKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Fixed width: each check below indexes inside these 29 bytes.
    if v.len() != 29 {
        return false;
    }
    let digits = |r: Range<usize>| v[r].iter().all(u8::is_ascii_digit);
    let one_of = |names: &[&[u8]], r: Range<usize>| {
        names.iter().any(|n| v[r.clone()].eq_ignore_ascii_case(n))
    };
    one_of(&WKDAYS, 0..3)
        && &v[3..5] == b", "
        && digits(5..7)
        && v[7] == b' '
        && one_of(&MONTHS, 8..11)
        && v[11] == b' '
        && digits(12..16)
        && v[16] == b' '
        && digits(17..19)
        && v[19] == b':'
        && digits(20..22)
        && v[22] == b':'
        && digits(23..25)
        && v[25..].eq_ignore_ascii_case(b" GMT")
}

/// Linear whitespace inside a header value: folding has already been checked by the
/// line splitter, so a CR or LF inside a value is always followed by SP/HT.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// Range of `s[r]` with leading and trailing LWS removed.
#[inline]
pub(crate) fn trim_lws(s: &[u8], r: Range<usize>) -> Range<usize> {
    let mut start = r.start;
    let mut end = r.end;
    while start < end && is_lws(s[start]) {
        start += 1;
    }
    while end > start && is_lws(s[end - 1]) {
        end -= 1;
    }
    start..end
}

#[inline]
fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Checks `s` against a character table, accepting `%HH` escapes.
fn all_escaped(s: &[u8], table: &[bool; 256]) -> bool {
    // Fast path: most values carry no escape at all.
    if s.iter().all(|&b| table[b as usize]) {
        return true;
    }
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if table[b as usize] {
            i += 1;
        } else if b == b'%' && i + 2 < s.len() && is_hex(s[i + 1]) && is_hex(s[i + 2]) {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// Index just past the run of `table` characters and `%HH` escapes starting at `i`.
#[inline]
fn escaped_run(s: &[u8], mut i: usize, table: &[bool; 256]) -> usize {
    while i < s.len() {
        let b = s[i];
        if table[b as usize] {
            i += 1;
        } else if b == b'%' && i + 2 < s.len() && is_hex(s[i + 1]) && is_hex(s[i + 2]) {
            i += 3;
        } else {
            break;
        }
    }
    i
}

/// Parses an unsigned decimal with at most `max_digits` digits (no sign, no spaces).
pub(crate) fn parse_decimal(s: &[u8], max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

/// Iterates the elements of a comma-separated header value, splitting only at commas
/// outside quoted strings and `<...>`. Yields trimmed ranges (possibly empty).
pub(crate) struct ListIter<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a [u8]) -> ListIter<'a> {
        ListIter {
            s,
            pos: 0,
            done: false,
        }
    }
}

impl Iterator for ListIter<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        // Jump between the only bytes that matter; quoted strings and `<...>` are skipped
        // whole, so the work is linear in the value and mostly done by memchr.
        while let Some(at) = memchr::memchr3(b',', b'"', b'<', &s[i..]) {
            let at = i + at;
            match s[at] {
                b',' => {
                    self.pos = at + 1;
                    return Some(trim_lws(s, start..at));
                }
                b'"' => match scan_quoted(s, at) {
                    Some(end) => i = end,
                    None => break,
                },
                _ => match memchr::memchr(b'>', &s[at..]) {
                    Some(close) => i = at + close + 1,
                    None => break,
                },
            }
        }
        self.done = true;
        Some(trim_lws(s, start..s.len()))
    }
}

/// Parses `;name[=value]` parameters starting at `i` until the end of `s`, calling `each`
/// with (name, value) ranges. LWS is allowed around `;` and `=` (RFC 3261 SEMI/EQUAL).
/// Values are tokens, host-like values, or quoted strings.
pub(crate) fn scan_params(
    s: &[u8],
    mut i: usize,
    mut each: impl FnMut(Range<usize>, Option<Range<usize>>),
) -> Option<()> {
    loop {
        i = skip_lws(s, i);
        if i >= s.len() {
            return Some(());
        }
        if s[i] != b';' {
            return None;
        }
        i = skip_lws(s, i + 1);
        let name_start = i;
        while i < s.len() && TOKEN[s[i] as usize] {
            i += 1;
        }
        if i == name_start {
            return None;
        }
        let name = name_start..i;
        let j = skip_lws(s, i);
        if j < s.len() && s[j] == b'=' {
            i = skip_lws(s, j + 1);
            let value_start = i;
            if i < s.len() && s[i] == b'"' {
                i = scan_quoted(s, i)?;
            } else {
                while i < s.len() && GENVALUE[s[i] as usize] {
                    i += 1;
                }
                if i == value_start {
                    return None;
                }
            }
            each(name, Some(value_start..i));
        } else {
            each(name, None);
        }
    }
}

/// `s[i]` is an opening quote; returns the index just past the closing quote.
pub(crate) fn scan_quoted(s: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                // quoted-pair: any char except CR/LF
                if i + 1 >= s.len() || matches!(s[i + 1], b'\r' | b'\n') {
                    return None;
                }
                i += 2;
            }
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// (name, value) ranges of URI parameters; four fit without allocating.
pub(crate) type ParamList = smallvec::SmallVec<[(Range<usize>, Option<Range<usize>>); 4]>;

/// Where the parts of a SIP/SIPS URI lie (relative to the URI slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SipUriSpans {
    pub secure: bool,
    pub user: Option<Range<usize>>,
    pub password: Option<Range<usize>>,
    pub host: Range<usize>,
    pub port: Option<u16>,
    /// From the first `;` to the start of `?headers` (or the end).
    pub params: Range<usize>,
    /// Each `;name[=value]` of `params`, found while validating.
    pub param_list: ParamList,
    pub headers: Option<Range<usize>>,
}

// A short-lived value on the stack, returned once per URI; boxing the large variant would
// cost an allocation per parse to save a memcpy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UriSpans {
    Sip(SipUriSpans),
    Opaque,
}

/// Validates a URI and finds its parts. Other schemes are only checked for a well-formed
/// scheme and a non-empty, whitespace-free remainder.
pub(crate) fn scan_uri(u: &[u8]) -> Option<UriSpans> {
    let colon = memchr::memchr(b':', u)?;
    let scheme = &u[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let secure = if scheme.eq_ignore_ascii_case(b"sip") {
        false
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        true
    } else {
        let rest = &u[colon + 1..];
        // uric is ASCII: other characters are %-escaped (RFC 3261 §25.1, RFC 2396).
        if rest.is_empty()
            || rest
                .iter()
                .any(|&b| b <= b' ' || b >= 0x7f || matches!(b, b'<' | b'>' | b'"'))
        {
            return None;
        }
        return Some(UriSpans::Opaque);
    };
    let mut i = colon + 1;
    let (user, password) = match memchr::memchr(b'@', &u[i..]) {
        Some(at_rel) => {
            let at = i + at_rel;
            let userinfo = i..at;
            let (user, password) = match memchr::memchr(b':', &u[userinfo.clone()]) {
                Some(c) => (i..i + c, Some(i + c + 1..at)),
                None => (userinfo, None),
            };
            if user.is_empty() || !all_escaped(&u[user.clone()], &USER) {
                return None;
            }
            if let Some(p) = &password {
                if !all_escaped(&u[p.clone()], &PASSWORD) {
                    return None;
                }
            }
            i = at + 1;
            (Some(user), password)
        }
        None => (None, None),
    };
    let host_start = i;
    if i < u.len() && u[i] == b'[' {
        let close = i + memchr::memchr(b']', &u[i..])?;
        let inner = &u[i + 1..close];
        if inner.is_empty() || !inner.iter().all(|&b| is_hex(b) || b == b':' || b == b'.') {
            return None;
        }
        i = close + 1;
    } else {
        while i < u.len() && HOSTCHAR[u[i] as usize] {
            i += 1;
        }
        if i == host_start {
            return None;
        }
    }
    let host = host_start..i;
    let mut port = None;
    if i < u.len() && u[i] == b':' {
        let port_start = i + 1;
        i = port_start;
        while i < u.len() && u[i].is_ascii_digit() {
            i += 1;
        }
        let value = parse_decimal(&u[port_start..i], 5)?;
        port = Some(u16::try_from(value).ok()?);
    }
    let params_start = i;
    let mut param_list = ParamList::new();
    while i < u.len() && u[i] == b';' {
        // Name and value are runs of paramchar or escapes; whatever stops a run must be
        // `=`, `;`, `?` or the end, which the checks below and after the loop enforce.
        let name_start = i + 1;
        i = escaped_run(u, name_start, &PARAMCHAR);
        if i == name_start {
            return None;
        }
        let name = name_start..i;
        let mut value = None;
        if i < u.len() && u[i] == b'=' {
            let value_start = i + 1;
            i = escaped_run(u, value_start, &PARAMCHAR);
            value = Some(value_start..i);
        }
        param_list.push((name, value));
    }
    let params = params_start..i;
    let headers = if i < u.len() && u[i] == b'?' {
        let h = i + 1..u.len();
        if !all_escaped(&u[h.clone()], &URI_HEADERS) {
            return None;
        }
        i = u.len();
        Some(h)
    } else {
        None
    };
    if i != u.len() {
        return None;
    }
    Some(UriSpans::Sip(SipUriSpans {
        secure,
        user,
        password,
        host,
        port,
        params,
        param_list,
        headers,
    }))
}

/// Where the parts of a name-addr / addr-spec lie (relative to the value slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAddrSpans {
    /// Display name without quotes (quoted) or trimmed tokens (unquoted).
    pub display: Option<Range<usize>>,
    pub uri: Range<usize>,
    pub uri_spans: UriSpans,
    /// Start of header parameters (`;...`) after the URI / `>`.
    pub params_start: usize,
    pub tag: Option<Range<usize>>,
}

/// Validates a From/To/Contact/Route-style value (one list element).
pub(crate) fn scan_name_addr(v: &[u8]) -> Option<NameAddrSpans> {
    scan_name_addr_with(v, true)
}

/// The parse-time check of From/To/Contact: the name-addr structure (quotes, brackets,
/// display name, header parameters) and the URI's scheme; the URI's inside is checked when
/// the header is read (`Message::from()` and friends).
pub(crate) fn name_addr_shape_ok(v: &[u8]) -> bool {
    scan_name_addr_with(v, false).is_some()
}

fn uri_shape_ok(u: &[u8]) -> bool {
    // The scheme is the run of scheme characters, and it must end at a colon.
    let colon = u
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(u.len());
    colon > 0 && u[0].is_ascii_alphabetic() && colon + 1 < u.len() && u[colon] == b':'
}

fn scan_name_addr_with(v: &[u8], full_uri: bool) -> Option<NameAddrSpans> {
    let mut i = skip_lws(v, 0);
    if i >= v.len() {
        return None;
    }
    let mut display = None;
    let uri;
    if v[i] == b'"' {
        let end = scan_quoted(v, i)?;
        display = Some(i + 1..end - 1);
        i = skip_lws(v, end);
        if i >= v.len() || v[i] != b'<' {
            return None;
        }
        uri = scan_angle(v, i)?;
        i = uri.end + 1;
    } else {
        // Either `*(token LWS) <addr-spec>` or a bare addr-spec.
        let mut j = i;
        while j < v.len() && (TOKEN[v[j] as usize] || is_lws(v[j])) {
            j += 1;
        }
        if j < v.len() && v[j] == b'<' {
            let d = trim_lws(v, i..j);
            if !d.is_empty() {
                display = Some(d);
            }
            uri = scan_angle(v, j)?;
            i = uri.end + 1;
        } else {
            // addr-spec: the URI runs to the first `;` (header params); a URI with
            // `,` `?` or `;` of its own must be in angle brackets (RFC 3261 §20).
            let start = i;
            let mut k = i;
            while k < v.len() && v[k] != b';' && !is_lws(v[k]) {
                if matches!(v[k], b',' | b'?' | b'<' | b'>' | b'"') {
                    return None;
                }
                k += 1;
            }
            uri = start..k;
            i = k;
        }
    }
    let uri_spans = if full_uri {
        scan_uri(&v[uri.clone()])?
    } else if uri_shape_ok(&v[uri.clone()]) {
        UriSpans::Opaque
    } else {
        return None;
    };
    let params_start = i;
    let mut tag = None;
    let mut bad_tag = false;
    scan_params(v, i, |name, value| {
        if v[name.clone()].eq_ignore_ascii_case(b"tag") {
            // tag-param = "tag" EQUAL token (RFC 3261 §25.1): no quotes, no `:[]`.
            bad_tag |= !value.as_ref().is_some_and(|t| is_token(&v[t.clone()]));
            tag = value;
        }
    })?;
    if bad_tag {
        return None;
    }
    Some(NameAddrSpans {
        display,
        uri,
        uri_spans,
        params_start,
        tag,
    })
}

/// `v[i]` is `<`; returns the range strictly inside the brackets (no LWS allowed inside).
fn scan_angle(v: &[u8], i: usize) -> Option<Range<usize>> {
    let close = i + 1 + memchr::memchr(b'>', &v[i + 1..])?;
    let inner = i + 1..close;
    // A LF inside a value is always followed by SP/HT (folding), so three bytes suffice.
    if inner.is_empty() || memchr::memchr3(b' ', b'\t', b'\r', &v[inner.clone()]).is_some() {
        return None;
    }
    Some(inner)
}

/// Where the parts of one Via value lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViaSpans {
    pub transport: Range<usize>,
    pub host: Range<usize>,
    pub port: Option<u16>,
    pub branch: Option<Range<usize>>,
    pub received: Option<Range<usize>>,
    pub rport: Option<Option<u16>>,
}

fn expect_token(v: &[u8], i: usize) -> Option<Range<usize>> {
    let start = skip_lws(v, i);
    let mut j = start;
    while j < v.len() && TOKEN[v[j] as usize] {
        j += 1;
    }
    (j > start).then_some(start..j)
}

fn expect_byte(v: &[u8], i: usize, byte: u8) -> Option<usize> {
    let i = skip_lws(v, i);
    (i < v.len() && v[i] == byte).then_some(i + 1)
}

/// Validates one Via element: `SIP / 2.0 / transport LWS sent-by *( ; via-param )`.
pub(crate) fn scan_via(v: &[u8]) -> Option<ViaSpans> {
    // Nearly every Via starts `SIP/2.0/` with no LWS inside the protocol part.
    let i = if v.len() >= 8 && v[..4].eq_ignore_ascii_case(b"SIP/") && &v[4..8] == b"2.0/" {
        8
    } else {
        let name = expect_token(v, 0)?;
        if !v[name.clone()].eq_ignore_ascii_case(b"SIP") {
            return None;
        }
        let i = expect_byte(v, name.end, b'/')?;
        let version = expect_token(v, i)?;
        if &v[version.clone()] != b"2.0" {
            return None;
        }
        expect_byte(v, version.end, b'/')?
    };
    let transport = expect_token(v, i)?;
    let mut i = transport.end;
    if i >= v.len() || !is_lws(v[i]) {
        return None;
    }
    i = skip_lws(v, i);
    let host_start = i;
    if i < v.len() && v[i] == b'[' {
        let close = i + memchr::memchr(b']', &v[i..])?;
        if !v[i + 1..close]
            .iter()
            .all(|&b| is_hex(b) || b == b':' || b == b'.')
            || close == i + 1
        {
            return None;
        }
        i = close + 1;
    } else {
        while i < v.len() && HOSTCHAR[v[i] as usize] {
            i += 1;
        }
        if i == host_start {
            return None;
        }
    }
    let host = host_start..i;
    let mut port = None;
    let j = skip_lws(v, i);
    if j < v.len() && v[j] == b':' {
        let p = skip_lws(v, j + 1);
        let mut k = p;
        while k < v.len() && v[k].is_ascii_digit() {
            k += 1;
        }
        port = Some(u16::try_from(parse_decimal(&v[p..k], 5)?).ok()?);
        i = k;
    }
    let mut branch = None;
    let mut received = None;
    let mut rport = None;
    let mut bad = false;
    scan_params(v, i, |name, value| {
        let n = &v[name];
        if n.eq_ignore_ascii_case(b"branch") {
            // via-branch = "branch" EQUAL token (RFC 3261 §25.1).
            bad |= !value.as_ref().is_some_and(|b| is_token(&v[b.clone()]));
            branch = value;
        } else if n.eq_ignore_ascii_case(b"received") {
            received = value;
            bad |= received.is_none();
        } else if n.eq_ignore_ascii_case(b"rport") {
            rport = Some(match value {
                None => None,
                Some(r) => match parse_decimal(&v[r], 5).and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => Some(p),
                    None => {
                        bad = true;
                        None
                    }
                },
            });
        }
    })?;
    if bad {
        return None;
    }
    Some(ViaSpans {
        transport,
        host,
        port,
        branch,
        received,
        rport,
    })
}

/// CSeq value: `1*DIGIT LWS Method`; the number must be below 2**31 (RFC 3261 §8.1.1.5).
pub(crate) fn scan_cseq(v: &[u8]) -> Option<(u32, Range<usize>)> {
    let start = skip_lws(v, 0);
    let mut i = start;
    while i < v.len() && v[i].is_ascii_digit() {
        i += 1;
    }
    let seq = parse_decimal(&v[start..i], 10)?;
    if seq >= 1 << 31 {
        return None;
    }
    if i >= v.len() || !is_lws(v[i]) {
        return None;
    }
    let method = expect_token(v, i)?;
    if skip_lws(v, method.end) != v.len() {
        return None;
    }
    Some((seq as u32, method))
}

/// Index of the first octet of `buf[from..end]` outside printable ASCII (0x20..=0x7e),
/// HTAB excepted: line ends, controls and the lead byte of every non-ASCII character.
/// Header values are long runs of printable bytes, so eight bytes are tested at once for any
/// byte below 0x20 or above 0x7e; the lowest such byte is exact (a borrow or carry only
/// propagates upwards), and a tab found that way is stepped over.
#[inline]
pub(crate) fn find_non_printable(buf: &[u8], mut i: usize, end: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let end = end.min(buf.len());
    while i + 8 <= end {
        let Ok(chunk) = <[u8; 8]>::try_from(&buf[i..i + 8]) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let below = word.wrapping_sub(ONES * 0x20) & !word;
        let above = word.wrapping_add(ONES) | word;
        let flagged = (below | above) & HIGHS;
        if flagged == 0 {
            i += 8;
            continue;
        }
        let j = i + (flagged.trailing_zeros() / 8) as usize;
        if buf[j] != b'\t' {
            return Some(j);
        }
        i = j + 1;
    }
    while i < end {
        if !is_printable_or_tab(buf[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline]
fn is_printable_or_tab(b: u8) -> bool {
    matches!(b, b' '..=b'~' | b'\t')
}

/// Length of the character at `s[at]` when it may appear in UTF-8 text (RFC 3261 TEXT-UTF8),
/// else why not: a control (C0, DEL, C1) or octets that are not UTF-8 (std's decoder refuses
/// overlong forms, surrogates and code points beyond U+10FFFF).
pub(crate) fn text_char_len(s: &[u8], at: usize) -> Result<usize, ParseErrorKind> {
    let window = s.get(at..s.len().min(at.saturating_add(4))).unwrap_or(&[]);
    let valid = match std::str::from_utf8(window) {
        Ok(text) => text,
        Err(e) => window
            .get(..e.valid_up_to())
            .and_then(|prefix| std::str::from_utf8(prefix).ok())
            .unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) if c.is_control() && c != '\t' => Err(ParseErrorKind::ControlCharacter),
        Some(c) => Ok(c.len_utf8()),
        None => Err(ParseErrorKind::InvalidUtf8),
    }
}

/// The first octet of `s` that UTF-8 text does not allow (HTAB is allowed), with why.
pub(crate) fn first_bad_text_octet(s: &[u8]) -> Option<(ParseErrorKind, usize)> {
    let mut i = 0;
    while let Some(at) = find_non_printable(s, i, s.len()) {
        match text_char_len(s, at) {
            Ok(len) => i = at + len,
            Err(kind) => return Some((kind, at)),
        }
    }
    None
}

/// Index of the first control octet in the header value `s` that is not the escaped
/// character of a quoted-pair inside a quoted string (RFC 3261 §25.1), the one place the
/// grammar admits controls (RFC 4475 §3.1.1.2). Folding (CR, LF, HTAB) is whitespace.
pub(crate) fn control_outside_quoted_pair(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => i += 1,
            b if (b < b' ' && !is_lws(b)) || b == 0x7f => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// One header line found by [`HeaderLines`]; all ranges are absolute into the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawLine {
    pub name: Range<usize>,
    pub value: Range<usize>,
    pub line: Range<usize>,
    /// The first octet of the value that no header may carry (a control other than HTAB,
    /// a bare CR, octets that are not UTF-8), with why. The line is still split, so framing
    /// and error answers can go on; the parser refuses the message.
    pub bad_octet: Option<(ParseErrorKind, usize)>,
    /// The first control octet right after a backslash: valid only as a quoted-pair inside
    /// a quoted string, which the header's grammar decides.
    pub escaped_control: Option<usize>,
    /// The line holds a NUL or a bare CR: it must not be copied into an answer (a bare CR
    /// could end the copied line early at the peer, a NUL cuts C strings short).
    pub unsafe_to_copy: bool,
}

/// Splits a header block into logical (unfolded) lines. Stops at the empty line; after
/// that `body_start` holds the index of the first body byte. Accepts CRLF and bare LF.
/// Every value octet is classified on the way (see [`RawLine::bad_octet`]).
pub(crate) struct HeaderLines<'a> {
    buf: &'a [u8],
    pos: usize,
    pub body_start: Option<usize>,
    /// Longest logical line accepted; longer lines yield `HeaderLineTooLong`.
    max_line: usize,
    failed: bool,
}

impl<'a> HeaderLines<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize, max_line: usize) -> HeaderLines<'a> {
        HeaderLines {
            buf,
            pos,
            body_start: None,
            max_line,
            failed: false,
        }
    }

    fn fail(
        &mut self,
        kind: ParseErrorKind,
        at: usize,
    ) -> Option<Result<RawLine, (ParseErrorKind, usize)>> {
        self.failed = true;
        Some(Err((kind, at)))
    }
}

impl Iterator for HeaderLines<'_> {
    type Item = Result<RawLine, (ParseErrorKind, usize)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.body_start.is_some() {
            return None;
        }
        let buf = self.buf;
        let start = self.pos;
        if start >= buf.len() {
            return self.fail(ParseErrorKind::Incomplete, start);
        }
        match buf[start] {
            b'\n' => {
                self.body_start = Some(start + 1);
                return None;
            }
            b'\r' => {
                if start + 1 < buf.len() && buf[start + 1] == b'\n' {
                    self.body_start = Some(start + 2);
                    return None;
                }
                if start + 1 >= buf.len() {
                    return self.fail(ParseErrorKind::Incomplete, start);
                }
                return self.fail(ParseErrorKind::BadHeaderLine, start);
            }
            b' ' | b'\t' => return self.fail(ParseErrorKind::BadHeaderLine, start),
            _ => {}
        }
        // The name is a token run, then optional SP/HT, then the colon.
        let mut colon = start;
        while colon < buf.len() && TOKEN[buf[colon] as usize] {
            colon += 1;
        }
        let name_end = colon;
        while colon < buf.len() && matches!(buf[colon], b' ' | b'\t') {
            colon += 1;
        }
        if colon >= buf.len() {
            return self.fail(ParseErrorKind::Incomplete, buf.len());
        }
        if name_end == start || buf[colon] != b':' {
            return self.fail(ParseErrorKind::BadHeaderLine, start);
        }
        let limit_end = buf
            .len()
            .min(start.saturating_add(self.max_line).saturating_add(2));
        let mut search = colon.min(limit_end);
        let mut bad_octet = None;
        let mut escaped_control = None;
        let mut unsafe_to_copy = false;
        let line_end;
        loop {
            let Some(at) = find_non_printable(buf, search, limit_end) else {
                if limit_end < buf.len() {
                    return self.fail(ParseErrorKind::HeaderLineTooLong, start);
                }
                return self.fail(ParseErrorKind::Incomplete, buf.len());
            };
            search = at + 1;
            let nl = match buf[at] {
                b'\n' => at,
                b'\r' => match buf.get(at + 1) {
                    Some(b'\n') => at + 1,
                    Some(_) => {
                        // A bare CR would be re-sent verbatim and could be read as a line
                        // break by the next hop.
                        bad_octet.get_or_insert((ParseErrorKind::ControlCharacter, at));
                        unsafe_to_copy = true;
                        continue;
                    }
                    None => return self.fail(ParseErrorKind::Incomplete, buf.len()),
                },
                // Not even as a quoted-pair: a NUL cuts the value short in C-string peers.
                0 => {
                    bad_octet.get_or_insert((ParseErrorKind::ControlCharacter, at));
                    unsafe_to_copy = true;
                    continue;
                }
                b if b.is_ascii() && at > colon && buf[at - 1] == b'\\' => {
                    escaped_control.get_or_insert(at);
                    continue;
                }
                _ => {
                    match text_char_len(buf, at) {
                        Ok(len) => search = at + len,
                        Err(kind) => {
                            bad_octet.get_or_insert((kind, at));
                        }
                    }
                    continue;
                }
            };
            if nl + 1 >= buf.len() {
                return self.fail(ParseErrorKind::Incomplete, buf.len());
            }
            if matches!(buf[nl + 1], b' ' | b'\t') {
                search = nl + 1;
                continue;
            }
            line_end = nl + 1;
            break;
        }
        let mut content_end = line_end - 1;
        if content_end > colon && buf[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        if content_end - start > self.max_line {
            return self.fail(ParseErrorKind::HeaderLineTooLong, start);
        }
        // Usually one SP after the colon and nothing before the CRLF: check the common
        // case inline and leave folded or padded values to the general trim.
        let mut value_start = colon + 1;
        if value_start < content_end && buf[value_start] == b' ' {
            value_start += 1;
        }
        let value = if value_start < content_end
            && !is_lws(buf[value_start])
            && !is_lws(buf[content_end - 1])
        {
            value_start..content_end
        } else {
            trim_lws(buf, value_start..content_end)
        };
        self.pos = line_end;
        Some(Ok(RawLine {
            name: start..name_end,
            value,
            line: start..line_end,
            bad_octet,
            escaped_control,
            unsafe_to_copy,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_iter_respects_quotes_and_angles() {
        let v = br#""Doe, John" <sip:a@b;x=1,2>;tag=1 , <sip:c@d>,"#;
        let parts: Vec<&[u8]> = ListIter::new(v).map(|r| &v[r]).collect();
        assert_eq!(
            parts,
            vec![
                &br#""Doe, John" <sip:a@b;x=1,2>;tag=1"#[..],
                &b"<sip:c@d>"[..],
                &b""[..]
            ]
        );
    }

    #[test]
    fn escapes_must_have_two_hex_digits() {
        assert!(all_escaped(b"a%20b", &USER));
        assert!(!all_escaped(b"a%2", &USER));
        assert!(!all_escaped(b"a%", &USER));
        assert!(!all_escaped(b"a%zz", &USER));
    }

    #[test]
    fn non_printable_search_matches_a_plain_scan() {
        let mut samples: Vec<Vec<u8>> = vec![
            b"abc\tdef\x01ghij\rklm".to_vec(),
            b"\t\t\t\t\t\t\t\t\t\n".to_vec(),
            "caf\u{e9} \u{2603} value without break".as_bytes().to_vec(),
            b"0123456789abcdef\x00x".to_vec(),
            b"~~~~~~~~\x7f~~~~~~~\xff\x7e".to_vec(),
            b"\x0d".to_vec(),
            Vec::new(),
        ];
        samples.push((0u8..=255).rev().collect());
        samples.push((0u8..=255).collect());
        for s in &samples {
            for from in 0..=s.len() {
                for end in from..=s.len() {
                    let plain = s[from..end]
                        .iter()
                        .position(|&b| !is_printable_or_tab(b))
                        .map(|p| from + p);
                    assert_eq!(
                        find_non_printable(s, from, end),
                        plain,
                        "{s:?} {from} {end}"
                    );
                }
            }
        }
    }

    #[test]
    fn text_octets_follow_utf8_and_refuse_controls() {
        let control = Err(ParseErrorKind::ControlCharacter);
        let invalid = Err(ParseErrorKind::InvalidUtf8);
        assert_eq!(text_char_len("\u{e9}".as_bytes(), 0), Ok(2));
        assert_eq!(text_char_len("\u{2603}".as_bytes(), 0), Ok(3));
        assert_eq!(text_char_len("\u{1f600}x".as_bytes(), 0), Ok(4));
        assert_eq!(
            text_char_len("\u{feff}".as_bytes(), 0),
            Ok(3),
            "a BOM is text"
        );
        for bad in [&b"\x00"[..], b"\x07", b"\x1b", b"\x7f", b"\r", b"\n"] {
            assert_eq!(text_char_len(bad, 0), control, "{bad:?}");
        }
        // C1 controls (U+0080..U+009F) in UTF-8.
        assert_eq!(text_char_len(b"\xc2\x80", 0), control);
        assert_eq!(text_char_len(b"\xc2\x9f", 0), control);
        assert_eq!(text_char_len(b"\xc2\xa0", 0), Ok(2));
        for bad in [
            &b"\xe9"[..],            // Latin-1
            b"\xc3",                 // truncated
            b"\xc3(",                // bad continuation
            b"\x80",                 // lone continuation
            b"\xc0\xaf",             // overlong '/'
            b"\xc1\xbf",             // overlong
            b"\xe0\x80\xaf",         // overlong
            b"\xf0\x80\x80\xaf",     // overlong
            b"\xed\xa0\x80",         // surrogate
            b"\xf4\x90\x80\x80",     // beyond U+10FFFF
            b"\xf8\x88\x80\x80\x80", // five-byte form
            b"\xff",
        ] {
            assert_eq!(text_char_len(bad, 0), invalid, "{bad:?}");
        }
        assert_eq!(first_bad_text_octet("ok \u{e9}\tfine".as_bytes()), None);
        assert_eq!(
            first_bad_text_octet(b"ok\xe9\x07"),
            Some((ParseErrorKind::InvalidUtf8, 2))
        );
    }

    #[test]
    fn controls_only_as_quoted_pairs_inside_quotes() {
        assert_eq!(control_outside_quoted_pair(b"\"a\\\x07b\" <sip:a@b>"), None);
        assert_eq!(control_outside_quoted_pair(b"\"a\\\x7f\""), None);
        assert_eq!(control_outside_quoted_pair(b"a\\\x07b"), Some(2));
        assert_eq!(control_outside_quoted_pair(b"\"a\\\\\x07\""), Some(4));
        assert_eq!(control_outside_quoted_pair(b"\"a\" \\\x07"), Some(5));
        assert_eq!(control_outside_quoted_pair(b"a\r\n b\tc"), None);
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(scan_cseq(b"1 INVITE").map(|c| c.0), Some(1));
        assert!(scan_cseq(b"2147483648 INVITE").is_none());
        assert!(scan_cseq(b"36893488147419103232 INVITE").is_none());
        assert!(scan_cseq(b"1INVITE").is_none());
        assert!(scan_cseq(b"1 INVITE x").is_none());
    }
}
