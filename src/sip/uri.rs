//! SIP URIs (parsed) and other schemes (kept opaque).

use bytes::Bytes;

use super::error::{ParseError, ParseErrorKind};
use super::scan::{self, UriSpans};

/// A URI as found in a request line or name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:`, `urn:`, `http:` and any other scheme: kept verbatim.
    Opaque(Bytes),
}

/// `sip:` or `sips:` URI. `user` keeps escapes as received; an unescaped `#` is accepted
/// (Teams checklist row 25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<Bytes>,
    pub password: Option<Bytes>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: Bytes,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order (e.g. `transport`, `user`, `lr`, `x-m`).
    pub params: Vec<(Bytes, Option<Bytes>)>,
    /// `?headers` part, raw, without the `?`.
    pub headers: Option<Bytes>,
    /// The whole URI as received.
    pub raw: Bytes,
}

impl Uri {
    pub fn parse(raw: &Bytes) -> Result<Uri, ParseError> {
        Uri::parse_owned(raw.clone())
    }

    /// [`Uri::parse`] taking the bytes by value (saves a reference count round trip).
    pub(crate) fn parse_owned(raw: Bytes) -> Result<Uri, ParseError> {
        let spans = scan::scan_uri(&raw).ok_or(ParseError {
            kind: ParseErrorKind::BadRequestUri,
            offset: 0,
            can_respond: false,
            header: None,
        })?;
        Ok(Uri::from_spans(raw, &spans))
    }

    /// Builds the typed URI from spans already validated by `scan::scan_uri`.
    pub(crate) fn from_spans(raw: Bytes, spans: &UriSpans) -> Uri {
        match spans {
            UriSpans::Opaque => Uri::Opaque(raw),
            UriSpans::Sip(s) => {
                let params = s
                    .param_list
                    .iter()
                    .map(|(name, value)| {
                        (raw.slice(name.clone()), value.clone().map(|v| raw.slice(v)))
                    })
                    .collect();
                Uri::Sip(SipUri {
                    secure: s.secure,
                    user: s.user.clone().map(|r| raw.slice(r)),
                    password: s.password.clone().map(|r| raw.slice(r)),
                    host: raw.slice(s.host.clone()),
                    port: s.port,
                    params,
                    headers: s.headers.clone().map(|r| raw.slice(r)),
                    raw,
                })
            }
        }
    }

    /// The scheme as written (`sip`, `sips`, `tel`, ...).
    pub fn scheme(&self) -> &[u8] {
        let raw = self.raw();
        match memchr::memchr(b':', raw) {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    }

    pub fn raw(&self) -> &Bytes {
        match self {
            Uri::Sip(u) => &u.raw,
            Uri::Opaque(b) => b,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Opaque(_) => None,
        }
    }
}

impl SipUri {
    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &[u8] {
        let h = &self.host[..];
        if h.len() >= 2 && h[0] == b'[' && h[h.len() - 1] == b']' {
            &h[1..h.len() - 1]
        } else {
            h
        }
    }

    /// Value of a URI parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<Option<&Bytes>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }
}
