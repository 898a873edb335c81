//! Header policy per leg (architecture principle 5): what the SBC writes into every message
//! on a leg. The Teams profile carries Microsoft's rules (rows 15-23, 32, 36, 59); the carrier
//! profile is plain RFC 3261. The call flow asks the policy, it never tests "is this Teams".

use crate::sip::HeaderName;
use crate::transport::TransportKind;

/// Settings of the Teams header policy (from config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsProfile {
    /// Value of `X-MS-SBC`: `vendor/model/version` (row 59).
    pub x_ms_sbc: String,
    /// List `REFER` in Allow so Microsoft hands transfers to the SBC (row 36).
    pub advertise_refer: bool,
    /// The SBC is a proxy SBC of Local Media Optimization (row 61): its dialog-creating
    /// INVITEs and responses towards Microsoft carry a Record-Route with the same FQDN and
    /// port as Contact (the one exception to row 17).
    pub record_route: bool,
}

impl TeamsProfile {
    pub fn new(vendor: &str, model: &str, version: &str) -> TeamsProfile {
        TeamsProfile {
            x_ms_sbc: format!("{vendor}/{model}/{version}"),
            advertise_refer: true,
            record_route: false,
        }
    }

    fn allow(&self) -> &'static str {
        if self.advertise_refer {
            "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER"
        } else {
            "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY"
        }
    }
}

impl Default for TeamsProfile {
    fn default() -> Self {
        TeamsProfile::new("teams-sbc", "teams-sbc", env!("CARGO_PKG_VERSION"))
    }
}

/// The carrier header policy: our address as Contact/Via, nothing Microsoft-specific.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierProfile {
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
}

/// Headers a leg's policy adds or forbids. One per leg of a call.
#[derive(Debug, Clone)]
pub(crate) enum LegPolicy {
    Teams {
        /// Tenant FQDN (row 32) and our TLS port (row 16).
        fqdn: String,
        port: u16,
        profile: TeamsProfile,
    },
    Carrier(CarrierProfile),
}

impl LegPolicy {
    pub(crate) fn transport(&self) -> TransportKind {
        match self {
            LegPolicy::Teams { .. } => TransportKind::Tls,
            LegPolicy::Carrier(c) => c.transport,
        }
    }

    /// Our host for From/To URIs we write on this leg (never an IP towards Teams, row 15).
    pub(crate) fn local_host(&self) -> &str {
        match self {
            LegPolicy::Teams { fqdn, .. } => fqdn,
            LegPolicy::Carrier(c) => &c.host,
        }
    }

    /// Our top Via for a new client transaction.
    pub(crate) fn via(&self, branch: &str) -> String {
        match self {
            LegPolicy::Teams { fqdn, port, .. } => {
                format!("SIP/2.0/TLS {fqdn}:{port};branch={branch}")
            }
            LegPolicy::Carrier(c) => format!(
                "SIP/2.0/{} {}:{};branch={branch};rport",
                c.transport.via_token(),
                c.host,
                c.port
            ),
        }
    }

    /// Our Contact: tenant FQDN, TLS port and `transport=tls` towards Teams (rows 15, 16, 32),
    /// `sip:` only (row 18); our carrier-side address otherwise.
    pub(crate) fn contact(&self, user: Option<&str>) -> String {
        let user = user
            .filter(|u| !u.is_empty())
            .map(|u| format!("{}@", sanitize_user(u)))
            .unwrap_or_default();
        match self {
            LegPolicy::Teams { fqdn, port, .. } => {
                format!("<sip:{user}{fqdn}:{port};transport=tls>")
            }
            LegPolicy::Carrier(c) => match c.transport {
                TransportKind::Udp => format!("<sip:{user}{}:{}>", c.host, c.port),
                other => format!(
                    "<sip:{user}{}:{};transport={}>",
                    c.host,
                    c.port,
                    other.label()
                ),
            },
        }
    }

    /// Our Record-Route on this leg, when its policy inserts one (row 17's exception for a
    /// proxy SBC, row 61): the Contact's FQDN and port, loose routing.
    pub(crate) fn record_route(&self) -> Option<String> {
        match self {
            LegPolicy::Teams {
                fqdn,
                port,
                profile,
            } if profile.record_route => Some(format!("<sip:{fqdn}:{port};transport=tls;lr>")),
            _ => None,
        }
    }

    /// A number as it goes into a URI user part on this leg: `+E164` towards Teams (rows 19,
    /// 20) when the number is all digits; as given otherwise.
    pub(crate) fn number(&self, number: &str) -> String {
        let clean = sanitize_user(number);
        match self {
            LegPolicy::Teams { .. }
                if !clean.is_empty() && clean.bytes().all(|b| b.is_ascii_digit()) =>
            {
                format!("+{clean}")
            }
            _ => clean,
        }
    }

    /// URI parameters for a telephone number URI on this leg (`user=phone` towards Teams, row 19).
    pub(crate) fn number_uri_params(&self) -> &'static str {
        match self {
            LegPolicy::Teams { .. } => ";user=phone",
            LegPolicy::Carrier(_) => "",
        }
    }

    /// Headers added to every request and response we send on this leg (Allow: row 36,
    /// X-MS-SBC: row 59).
    pub(crate) fn extra_headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            LegPolicy::Teams { profile, .. } => vec![
                (HeaderName::Allow, profile.allow().to_owned()),
                (HeaderName::XMsSbc, profile.x_ms_sbc.clone()),
            ],
            LegPolicy::Carrier(_) => vec![(
                HeaderName::Allow,
                "INVITE, ACK, CANCEL, BYE, OPTIONS".to_owned(),
            )],
        }
    }
}

/// Keeps only characters that are safe in a URI user part; an unescaped `#` (Microsoft sends
/// them, row 25) is written escaped as RFC 3261 asks.
pub(crate) fn sanitize_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for c in user.chars() {
        if c == '#' {
            out.push_str("%23");
        } else if c.is_ascii_alphanumeric() || "+-_.!~*'()&=$,/%".contains(c) {
            out.push(c);
        }
    }
    out
}
