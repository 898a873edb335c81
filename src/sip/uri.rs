//! SIP URIs (parsed) and other schemes (kept opaque).

use bytes::Bytes;

use super::error::ParseError;

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
        let _ = raw;
        todo!("sip module")
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
    /// Value of a URI parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<Option<&Bytes>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }
}
