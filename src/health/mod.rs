//! SIP OPTIONS health: answering OPTIONS (Teams checklist rows 34, 36, 59) and pinging peers
//! (rows 8, 33, 59).
//!
//! * [`options_response`] builds our 200 OK to an inbound OPTIONS.
//! * [`OptionsPinger`] is a sans-I/O state machine per peer: when a ping is due it yields an
//!   OPTIONS request, and it turns outcomes (a response, a timeout, a transport failure) into an
//!   up/down state with the last status and the time of the last change.
//! * [`run_pinger`] is the thin async driver: it sleeps until the next ping, re-resolves the
//!   peer's host every round, sends through an [`OptionsSender`] and publishes [`PeerHealth`].

mod answer;
mod driver;
mod metrics;
mod pinger;

pub use answer::{options_response, ALLOW_METHODS};
pub use driver::{run_pinger, DnsResolver, HostResolver, OptionsSender};
pub use metrics::HealthMetrics;
pub use pinger::{
    OptionsPing, OptionsPinger, PeerHealth, PeerState, PeerTarget, PingOutcome, PingerSettings,
    TEAMS_OPTIONS_INTERVAL,
};

/// Transport of a listener or peer, as written in Via (`TLS`) and in URIs (`transport=tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    /// Via transport token.
    pub fn via_token(&self) -> &'static str {
        match self {
            SipTransport::Udp => "UDP",
            SipTransport::Tcp => "TCP",
            SipTransport::Tls => "TLS",
        }
    }

    /// `transport=` URI parameter value.
    pub fn uri_param(&self) -> &'static str {
        match self {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        }
    }
}

/// Who we are on one listener: the FQDN (never an IP towards Teams, row 34), the port and
/// transport of the listener, and the product identity for `X-MS-SBC` (row 59) and
/// `Server`/`User-Agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbcIdentity {
    pub fqdn: String,
    pub port: u16,
    pub transport: SipTransport,
    pub vendor: String,
    pub model: String,
    pub version: String,
}

impl SbcIdentity {
    /// `X-MS-SBC` value: `<vendor>/<model>/<version>`.
    pub fn x_ms_sbc(&self) -> String {
        format!(
            "{}/{}/{}",
            header_safe(&self.vendor),
            header_safe(&self.model),
            header_safe(&self.version)
        )
    }

    /// `Server` / `User-Agent` value: `<vendor>-<model>/<version>` (one product token).
    pub fn product(&self) -> String {
        format!(
            "{}-{}/{}",
            header_safe(&self.vendor),
            header_safe(&self.model),
            header_safe(&self.version)
        )
    }

    /// `sip:<fqdn>:<port>` (From of our OPTIONS).
    pub fn uri(&self) -> String {
        format!("sip:{}:{}", uri_host(&self.fqdn), self.port)
    }

    /// `<sip:<fqdn>:<port>;transport=<t>>` (Contact, row 33/34).
    pub fn contact(&self) -> String {
        format!("<{};transport={}>", self.uri(), self.transport.uri_param())
    }
}

/// Configured text cannot break a header line: control characters and spaces are dropped.
fn header_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect()
}

/// An IPv6 literal needs brackets in a URI or Via.
fn uri_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
