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
mod board;
mod driver;
mod metrics;
mod pinger;

pub use answer::{options_response, ALLOW_METHODS};
pub use board::{seconds_since, PeerBoard, PeerReport};
pub use driver::{run_pinger, DnsResolver, HostResolver, OptionsSender};
pub use metrics::HealthMetrics;
pub use pinger::{
    OptionsPing, OptionsPinger, PeerHealth, PeerState, PeerTarget, PingOutcome, PingerSettings,
    TEAMS_OPTIONS_INTERVAL,
};

use crate::sip::{HeaderName, RequestBuilder, ResponseBuilder};

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

/// What the SBC says about its product to one peer. Microsoft gets `X-MS-SBC:
/// vendor/model/version` on every request and response, as its checklist asks (row 59), and
/// nothing else; carriers get a `Server` / `User-Agent` only when the operator configured
/// one. Strangers get no answer at all, so no scanner learns a version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductHeaders {
    pub x_ms_sbc: Option<String>,
    /// `Server` on responses, `User-Agent` on requests.
    pub server: Option<String>,
}

impl ProductHeaders {
    /// Towards Microsoft: `X-MS-SBC: <vendor>/<model>/<version>`.
    pub fn microsoft(vendor: &str, model: &str, version: &str) -> ProductHeaders {
        ProductHeaders {
            x_ms_sbc: Some(format!(
                "{}/{}/{}",
                header_safe(vendor),
                header_safe(model),
                header_safe(version)
            )),
            server: None,
        }
    }

    /// Towards a carrier: the configured `Server` / `User-Agent` text, if any.
    pub fn carrier(configured: Option<&str>) -> ProductHeaders {
        ProductHeaders {
            x_ms_sbc: None,
            server: configured
                .map(|text| text.chars().filter(|c| !c.is_control()).collect::<String>())
                .filter(|text| !text.trim().is_empty()),
        }
    }

    /// The headers of a response, as name and value.
    pub fn response_headers(&self) -> Vec<(HeaderName, bytes::Bytes)> {
        let mut headers = Vec::new();
        if let Some(value) = &self.x_ms_sbc {
            headers.push((HeaderName::XMsSbc, value.clone().into()));
        }
        if let Some(value) = &self.server {
            headers.push((HeaderName::Server, value.clone().into()));
        }
        headers
    }

    /// Add the headers to a response.
    pub fn to_response(&self, mut builder: ResponseBuilder) -> ResponseBuilder {
        for (name, value) in self.response_headers() {
            builder = builder.header(&name, &value);
        }
        builder
    }

    /// Add the headers to a request.
    pub fn to_request(&self, mut builder: RequestBuilder) -> RequestBuilder {
        if let Some(value) = &self.x_ms_sbc {
            builder = builder.header(&HeaderName::XMsSbc, value.as_bytes());
        }
        if let Some(value) = &self.server {
            builder = builder.header(&HeaderName::UserAgent, value.as_bytes());
        }
        builder
    }
}

/// Who we are on one listener: the FQDN (never an IP towards Teams, row 34), the port and
/// transport of the listener, and what we say about our product to that peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbcIdentity {
    pub fqdn: String,
    pub port: u16,
    pub transport: SipTransport,
    pub product: ProductHeaders,
}

impl SbcIdentity {
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
