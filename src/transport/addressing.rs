//! Where a response goes (RFC 3261 §18.2.2 with the RFC 3581 `rport` extension), as pure
//! functions of the request's source address and its top Via.
//!
//! The transport never rewrites the request's Via, so the source address the request came
//! from stands in for the `received`/`rport` values we would have added (RFC 3261 §18.2.1,
//! RFC 3581 §4). A `received` or `rport=<port>` already in the top Via of a request we
//! received was written by its sender, not by a server on the path (a server adds them to
//! the Via of the hop it received from, which is ours to add here), so they are ignored:
//! trusting them would let anyone direct our answers at a third party.

use std::net::{IpAddr, SocketAddr};

use crate::sip::Via;

use super::TransportKind;

/// Destination of a response over UDP.
///
/// * The IP is always the source IP (the `received` value we would add); a sent-by host or a
///   sender-supplied `received` is never trusted.
/// * `rport` present (with or without a value): the source port (RFC 3581 §4).
/// * no `rport`: the sent-by port, or 5060 when absent.
pub fn udp_response_target(source: SocketAddr, via: &Via) -> SocketAddr {
    let port = match via.rport {
        Some(_) => source.port(),
        None => via.port.unwrap_or(TransportKind::Udp.default_port()),
    };
    SocketAddr::new(source.ip(), port)
}

/// Where to open a new connection when the stream a request arrived on has closed
/// (RFC 3261 §18.2.2: "to the IP address in the received parameter ... using the port in
/// the sent-by value"; the received value is the source IP, see the module docs; a
/// connection's source port is ephemeral, so `rport` is ignored).
/// Returns the address and, when the sent-by host is a name, the name to present as SNI
/// and verify the peer certificate against.
pub fn stream_fallback_target(
    kind: TransportKind,
    source: SocketAddr,
    via: &Via,
) -> (SocketAddr, Option<String>) {
    let ip = source.ip();
    let port = via.port.unwrap_or(kind.default_port());
    let host = String::from_utf8_lossy(&via.host).into_owned();
    let host_is_name = parse_ip(&via.host).is_none() && !host.is_empty();
    (SocketAddr::new(ip, port), host_is_name.then_some(host))
}

/// An IP literal, with or without IPv6 brackets.
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn via(
        transport: &str,
        host: &str,
        port: Option<u16>,
        received: Option<&str>,
        rport: Option<Option<u16>>,
    ) -> Via {
        Via {
            transport: Bytes::copy_from_slice(transport.as_bytes()),
            host: Bytes::copy_from_slice(host.as_bytes()),
            port,
            branch: Some(Bytes::from_static(b"z9hG4bK776asdhds")),
            received: received.map(|r| Bytes::copy_from_slice(r.as_bytes())),
            rport,
            raw: Bytes::new(),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn udp_sent_by_matches_source_uses_sent_by_port() {
        let v = via("UDP", "192.0.2.10", Some(5070), None, None);
        assert_eq!(
            udp_response_target(addr("192.0.2.10:40000"), &v),
            addr("192.0.2.10:5070")
        );
    }

    #[test]
    fn udp_without_port_defaults_to_5060() {
        let v = via("UDP", "192.0.2.10", None, None, None);
        assert_eq!(
            udp_response_target(addr("192.0.2.10:40000"), &v),
            addr("192.0.2.10:5060")
        );
    }

    #[test]
    fn udp_sent_by_differs_goes_to_source_ip_and_sent_by_port() {
        // A NATed client: Via says a private address, the packet came from the public one.
        let v = via("UDP", "10.0.0.5", Some(5062), None, None);
        assert_eq!(
            udp_response_target(addr("198.51.100.7:31000"), &v),
            addr("198.51.100.7:5062")
        );
        let named = via("UDP", "pbx.example.com", None, None, None);
        assert_eq!(
            udp_response_target(addr("198.51.100.7:31000"), &named),
            addr("198.51.100.7:5060")
        );
    }

    #[test]
    fn udp_bare_rport_uses_source_port() {
        let v = via("UDP", "10.0.0.5", Some(5060), None, Some(None));
        assert_eq!(
            udp_response_target(addr("198.51.100.7:31000"), &v),
            addr("198.51.100.7:31000")
        );
    }

    #[test]
    fn udp_sender_supplied_received_and_rport_values_are_not_trusted() {
        // Written by the sender to aim our answer at 203.0.113.9:4444 (reflection).
        let v = via(
            "UDP",
            "10.0.0.5",
            Some(5060),
            Some("203.0.113.9"),
            Some(Some(4444)),
        );
        assert_eq!(
            udp_response_target(addr("198.51.100.7:31000"), &v),
            addr("198.51.100.7:31000")
        );
    }

    #[test]
    fn udp_ipv6_goes_to_the_source() {
        let v = via("UDP", "[2001:db8::5]", None, Some("[2001:db8::9]"), None);
        assert_eq!(
            udp_response_target(addr("[2001:db8::7]:3000"), &v),
            addr("[2001:db8::7]:5060")
        );
    }

    #[test]
    fn stream_fallback_uses_source_ip_and_sent_by_port() {
        let v = via(
            "TLS",
            "sip-du-a-eu.pstnhub.microsoft.com",
            Some(5061),
            None,
            Some(None),
        );
        let (target, name) =
            stream_fallback_target(TransportKind::Tls, addr("52.112.1.1:49999"), &v);
        assert_eq!(target, addr("52.112.1.1:5061"));
        assert_eq!(name.as_deref(), Some("sip-du-a-eu.pstnhub.microsoft.com"));
    }

    #[test]
    fn stream_fallback_default_ports_and_ip_hosts() {
        let v = via("TCP", "192.0.2.1", None, None, None);
        let (target, name) = stream_fallback_target(TransportKind::Tcp, addr("192.0.2.1:1234"), &v);
        assert_eq!(target, addr("192.0.2.1:5060"));
        assert_eq!(name, None);
        let (target, _) = stream_fallback_target(TransportKind::Tls, addr("192.0.2.1:1234"), &v);
        assert_eq!(target, addr("192.0.2.1:5061"));
    }

    #[test]
    fn stream_fallback_ignores_a_sender_supplied_received() {
        // Would make us connect to 192.0.2.77 on the sender's behalf.
        let v = via("TCP", "host.example", Some(5080), Some("192.0.2.77"), None);
        let (target, _) = stream_fallback_target(TransportKind::Tcp, addr("192.0.2.1:1234"), &v);
        assert_eq!(target, addr("192.0.2.1:5080"));
    }
}
