//! Caller identity towards the carrier (row 57) and Diversion from History-Info (doc 2.9),
//! as pure functions of the Teams INVITE. The call flow (`flow/identity.rs`) applies them.
//!
//! Privacy (RFC 3323, RFC 3325), Teams -> PSTN:
//! * `Privacy: id` or `user`, or an anonymous From (`anonymous@...`, `@anonymous.invalid`, a
//!   display name "Anonymous") make our From `"Anonymous" <sip:anonymous@anonymous.invalid>`
//!   and our Contact carry no number. `header` hides the Contact number (and, like `history`,
//!   the call history). `none` and `session`/`critical` ask nothing of us. Values are
//!   case-insensitive and may be combined (`id;user`, `id, header`, several lines).
//! * A trusted carrier (RFC 3325 trust domain) gets the caller's asserted identity in
//!   `P-Asserted-Identity` when Teams sent one or asked for privacy — the number routing took
//!   from Teams' PAI (translated by the trunk's rules) — and Teams' `Privacy` values, so the
//!   carrier applies them at its own edge.
//! * An untrusted carrier never gets `P-Asserted-Identity` nor `Privacy` (the privacy service
//!   is applied here, RFC 3323 §5).
//!
//! Diversion (RFC 5806) from History-Info (RFC 7044; RFC 7544 interworking), when the trunk
//! wants it: an entry is a diverting user when it carries a `Reason` (escaped in its URI
//! headers, as Microsoft writes it: `?Reason=SIP%3Bcause%3D302...`) or when the next entry
//! carries an RFC 4458 `cause` URI parameter. One Diversion per diverting user, most recent
//! first, `<sip:NUMBER@our-host>;reason=R;counter=1`, the number after the trunk's `from_teams`
//! rules for calling numbers (Microsoft writes `+E.164`; a trunk that wants national numbers
//! gets them in Diversion as in From). Reasons:
//!
//! | History-Info                        | Diversion reason |
//! |-------------------------------------|------------------|
//! | Reason SIP cause 301, 302           | unconditional    |
//! | Reason SIP cause 486, 600           | user-busy        |
//! | Reason SIP cause 408, 480, 487      | no-answer (the forward on no reply cancels the ringing branch) |
//! | Reason SIP cause 603                | deflection       |
//! | Reason SIP cause 503, 504           | unavailable      |
//! | RFC 4458 `cause` 302 / 486 / 408    | unconditional / user-busy / no-answer |
//! | RFC 4458 `cause` 480, 487           | deflection       |
//! | RFC 4458 `cause` 503                | unavailable      |
//! | anything else                       | unknown          |
//!
//! An entry is private when its URI headers carry `Privacy=history` (or `header`/`session`)
//! or the request's Privacy has `history` or `header`: towards a trusted carrier it is sent
//! with `;privacy=full`, towards an untrusted one it is left out. The `np` tag of RFC 7044
//! means "no-op" (not privacy); such entries are not diversions. Entries whose user is not a
//! telephone number (`+` and digits) cannot be expressed and are skipped. History-Info itself
//! never crosses (topology hiding): messages are built from scratch. Garbage in History-Info
//! gives no Diversion, never a panic.

use bytes::Bytes;

use super::profile::sanitize_user;
use crate::routing::RuleList;
use crate::sip::{HeaderName, Message, NameAddr, Uri};

/// At most this many History-Info entries are read, and this many Diversions written.
const MAX_HISTORY_ENTRIES: usize = 32;
const MAX_DIVERSIONS: usize = 8;

/// The anonymous From of RFC 3323 §4.1.1.3.
pub(crate) const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

/// The Privacy values of a request (RFC 3323 §4.2, RFC 3325 §9.3, RFC 7044 §12).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrivacyRequest {
    pub id: bool,
    pub user: bool,
    pub header: bool,
    pub session: bool,
    pub history: bool,
    pub none: bool,
    pub critical: bool,
}

impl PrivacyRequest {
    /// Every `Privacy` line of `msg`; values split at `;` and `,`, case-insensitive; unknown
    /// values ignored.
    pub(crate) fn of(msg: &Message) -> PrivacyRequest {
        let mut p = PrivacyRequest::default();
        for line in msg.header_values(&HeaderName::Privacy) {
            let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
            for value in text.split([';', ',']).map(str::trim) {
                match value {
                    "id" => p.id = true,
                    "user" => p.user = true,
                    "header" => p.header = true,
                    "session" => p.session = true,
                    "history" => p.history = true,
                    "none" => p.none = true,
                    "critical" => p.critical = true,
                    _ => {}
                }
            }
        }
        p
    }

    /// The values as we pass them to a trusted carrier (`id;header`), `None` when none.
    pub(crate) fn header_value(&self) -> Option<String> {
        let values: Vec<&str> = [
            (self.none, "none"),
            (self.header, "header"),
            (self.session, "session"),
            (self.user, "user"),
            (self.id, "id"),
            (self.history, "history"),
            (self.critical, "critical"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, v)| *v)
        .collect();
        (!values.is_empty()).then(|| values.join(";"))
    }

    /// The caller's number must not be shown (From, Contact).
    fn hides_caller(&self) -> bool {
        self.id || self.user
    }
}

/// True when a From (or any name-addr) is the anonymous identity of RFC 3323 or a common
/// variant of it.
pub(crate) fn is_anonymous(name_addr: &NameAddr) -> bool {
    let display_anonymous = name_addr
        .display_name
        .as_ref()
        .is_some_and(|d| d.trim_ascii().eq_ignore_ascii_case(b"anonymous"));
    let uri_anonymous = match &name_addr.uri {
        Uri::Sip(sip) => {
            sip.user
                .as_ref()
                .is_some_and(|u| u.eq_ignore_ascii_case(b"anonymous"))
                || sip.host.eq_ignore_ascii_case(b"anonymous.invalid")
        }
        Uri::Opaque(raw) => raw.windows(9).any(|w| w.eq_ignore_ascii_case(b"anonymous")),
    };
    display_anonymous || uri_anonymous
}

/// The number of a `sip:` URI's user part or of a `tel:` URI.
pub(crate) fn uri_number(uri: &Uri) -> Option<String> {
    let raw = match uri {
        Uri::Sip(sip) => sip.user.clone()?,
        Uri::Opaque(raw) => {
            let rest = raw
                .get(..4)
                .filter(|s| s.eq_ignore_ascii_case(b"tel:"))
                .map(|_| raw.slice(4..))?;
            let end = memchr::memchr2(b';', b'?', &rest).unwrap_or(rest.len());
            rest.slice(..end)
        }
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The number of the first P-Asserted-Identity value that has one (Teams may send a tel: and
/// a sip: identity).
pub(crate) fn asserted_number(msg: &Message) -> Option<String> {
    msg.header_values(&HeaderName::PAssertedIdentity)
        .iter()
        .filter_map(|v| NameAddr::parse(v).ok())
        .find_map(|n| uri_number(&n.uri))
        .filter(|n| !n.eq_ignore_ascii_case("anonymous"))
}

/// What the SBC writes about the caller on the carrier leg of a Teams -> PSTN call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CarrierIdentity {
    /// User part of our From; `None` = the anonymous From.
    pub from_user: Option<String>,
    /// User part of our Contact.
    pub contact_user: Option<String>,
    /// P-Asserted-Identity, Privacy and Diversion lines, in order.
    pub headers: Vec<(HeaderName, String)>,
}

/// The carrier trunk's identity settings for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CarrierTrust<'a> {
    /// Our host on the carrier leg (From/PAI/Diversion URIs).
    pub host: &'a str,
    pub trusted: bool,
    pub diversion: bool,
    /// The trunk's `from_teams` calling-number rules: a Diversion number goes through them
    /// like the caller's number (Microsoft writes `+E.164`, the trunk may want another form).
    pub calling_number_rules: &'a RuleList,
}

/// Identity of a Teams -> PSTN call towards the carrier. `routed_caller` is the caller number
/// routing decided (from Teams' PAI when there was one, else From; translated).
pub(crate) fn towards_carrier(
    invite: &Message,
    routed_caller: &str,
    trunk: CarrierTrust<'_>,
) -> CarrierIdentity {
    let privacy = PrivacyRequest::of(invite);
    let from_anonymous = invite.from().ok().is_some_and(|f| is_anonymous(&f));
    let routed = sanitize_user(routed_caller);
    let routed_known = !routed.is_empty() && !routed.eq_ignore_ascii_case("anonymous");
    let teams_pai = asserted_number(invite);
    let hidden = privacy.hides_caller() || from_anonymous || !routed_known;
    let from_user = (!hidden).then(|| routed.clone());
    let contact_user = from_user.clone().filter(|_| !privacy.header);
    let mut headers = Vec::new();
    if trunk.trusted {
        // The asserted identity: routing's number (taken from the PAI and translated), else
        // the PAI as Teams sent it.
        let asserted = if routed_known {
            Some(routed)
        } else {
            teams_pai.as_deref().map(sanitize_user)
        };
        let wanted = teams_pai.is_some() || privacy.hides_caller();
        if let Some(number) = asserted.filter(|n| wanted && !n.is_empty()) {
            headers.push((
                HeaderName::PAssertedIdentity,
                format!("<sip:{number}@{}>", trunk.host),
            ));
        }
        if let Some(value) = privacy.header_value() {
            headers.push((HeaderName::Privacy, value));
        }
    }
    if trunk.diversion {
        let all_private = privacy.history || privacy.header;
        for d in diversions(invite) {
            let private = d.private || all_private;
            if private && !trunk.trusted {
                continue;
            }
            let number = trunk.calling_number_rules.apply(&d.number);
            let number = sanitize_user(&number);
            if number.is_empty() {
                continue;
            }
            headers.push((
                diversion_header(),
                diversion_value(&number, d.reason, trunk.host, private),
            ));
        }
    }
    CarrierIdentity {
        from_user,
        contact_user,
        headers,
    }
}

pub(crate) fn diversion_header() -> HeaderName {
    HeaderName::Other(Bytes::from_static(b"Diversion"))
}

pub(crate) fn history_info_header() -> HeaderName {
    HeaderName::Other(Bytes::from_static(b"History-Info"))
}

/// One diverting user found in History-Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DivertingUser {
    /// `+` and digits.
    pub number: String,
    /// RFC 5806 reason token.
    pub reason: &'static str,
    pub private: bool,
}

/// One Diversion value: `<sip:NUMBER@host>;reason=R;counter=1[;privacy=full]`.
fn diversion_value(number: &str, reason: &str, host: &str, private: bool) -> String {
    let privacy = if private { ";privacy=full" } else { "" };
    format!("<sip:{number}@{host}>;reason={reason};counter=1{privacy}")
}

/// One History-Info entry, as far as a Diversion needs it.
#[derive(Debug, Clone)]
struct HistoryEntry {
    number: Option<String>,
    /// SIP cause of the escaped Reason (RFC 7044: why this target was retargeted away from).
    reason_cause: Option<u16>,
    /// RFC 4458 `cause` URI parameter (why the request was retargeted to this target).
    cause_param: Option<u16>,
    private: bool,
}

/// The diverting users of `invite`'s History-Info, most recent first.
pub(crate) fn diversions(invite: &Message) -> Vec<DivertingUser> {
    let entries: Vec<HistoryEntry> = invite
        .header_values(&history_info_header())
        .iter()
        .flat_map(split_top_level)
        .take(MAX_HISTORY_ENTRIES)
        .filter_map(|entry| parse_entry(&entry))
        .collect();
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let next_cause = entries.get(i + 1).and_then(|n| n.cause_param);
        let reason = match (next_cause, entry.reason_cause) {
            (Some(cause), _) => cause_param_reason(cause),
            (None, Some(cause)) => response_reason(cause),
            (None, None) => continue,
        };
        let Some(number) = entry.number.clone() else {
            continue;
        };
        out.push(DivertingUser {
            number,
            reason,
            private: entry.private,
        });
    }
    out.reverse();
    out.truncate(MAX_DIVERSIONS);
    out
}

/// Diversion reason for the SIP status a diverting user's branch ended with.
fn response_reason(status: u16) -> &'static str {
    match status {
        301 | 302 => "unconditional",
        486 | 600 => "user-busy",
        408 | 480 | 487 => "no-answer",
        603 => "deflection",
        503 | 504 => "unavailable",
        _ => "unknown",
    }
}

/// Diversion reason for an RFC 4458 `cause` value (RFC 7544 §5).
fn cause_param_reason(cause: u16) -> &'static str {
    match cause {
        302 => "unconditional",
        486 => "user-busy",
        408 => "no-answer",
        480 | 487 => "deflection",
        503 => "unavailable",
        _ => "unknown",
    }
}

fn parse_entry(text: &Bytes) -> Option<HistoryEntry> {
    let name_addr = NameAddr::parse(text).ok()?;
    let number = uri_number(&name_addr.uri)
        .map(|n| percent_decode(&n))
        .filter(|n| is_phone_number(n));
    let mut entry = HistoryEntry {
        number,
        reason_cause: None,
        cause_param: None,
        private: false,
    };
    if let Uri::Sip(sip) = &name_addr.uri {
        entry.cause_param = sip
            .param("cause")
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(parse_status);
        for header in sip.headers.iter().flat_map(|h| h.split(|b| *b == b'&')) {
            let Some(eq) = header.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (name, value) = (&header[..eq], percent_decode_bytes(&header[eq + 1..]));
            if name.eq_ignore_ascii_case(b"Reason") {
                entry.reason_cause = entry.reason_cause.or_else(|| sip_reason_cause(&value));
            } else if name.eq_ignore_ascii_case(b"Privacy") {
                let value = value.to_ascii_lowercase();
                entry.private |= ["history", "header", "session", "id"]
                    .iter()
                    .any(|p| value.contains(p));
            }
        }
    } else if let Uri::Opaque(raw) = &name_addr.uri {
        let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
        entry.cause_param = text
            .split(';')
            .find_map(|p| p.strip_prefix("cause="))
            .and_then(parse_status);
    }
    Some(entry)
}

/// The cause of a `SIP;cause=302;text="..."` Reason value.
fn sip_reason_cause(value: &str) -> Option<u16> {
    let mut parts = value.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("SIP") {
        return None;
    }
    parts.find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("cause")
            .then(|| parse_status(v))
            .flatten()
    })
}

fn parse_status(text: &str) -> Option<u16> {
    let text = text.trim();
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|s| (300..=699).contains(s))
}

fn is_phone_number(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn percent_decode(text: &str) -> String {
    percent_decode_bytes(text.as_bytes())
}

/// `%XX` escapes decoded; a broken escape is kept as written. Non-UTF-8 becomes U+FFFD.
fn percent_decode_bytes(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Elements of a header line split at commas outside `<...>` and quotes.
fn split_top_level(line: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, &b) in line.iter().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                out.push(line.slice(start..i));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(line.slice(start..));
    out.into_iter()
        .map(|e| {
            let lead = e.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let len = e[lead..].trim_ascii_end().len();
            e.slice(lead..lead + len)
        })
        .filter(|e| !e.is_empty())
        .collect()
}
