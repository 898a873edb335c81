//! Parsers for the line values the SBC reads. Each takes the text after `x=` (or after
//! `a=name:`) and returns a borrowed view, or `None` when the value is malformed.

use std::net::IpAddr;

/// `c=` line: network type IN, address type IP4/IP6, unicast address. TTL / count suffixes of
/// multicast addresses are accepted and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub addr: IpAddr,
}

impl Connection {
    /// `0.0.0.0` (or `::`): the RFC 2543 way of putting a call on hold.
    pub fn is_hold_address(&self) -> bool {
        self.addr.is_unspecified()
    }
}

pub(crate) fn parse_connection(value: &str) -> Option<Connection> {
    let mut it = value.split_ascii_whitespace();
    let (net, kind, addr) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !net.eq_ignore_ascii_case("IN") {
        return None;
    }
    let addr = addr.split('/').next()?;
    let addr: IpAddr = addr.parse().ok()?;
    match (kind, addr) {
        (k, IpAddr::V4(_)) if k.eq_ignore_ascii_case("IP4") => Some(Connection { addr }),
        (k, IpAddr::V6(_)) if k.eq_ignore_ascii_case("IP6") => Some(Connection { addr }),
        _ => None,
    }
}

/// `o=<username> <sess-id> <sess-version> IN <IP4|IP6> <address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub username: &'a str,
    pub session_id: u64,
    pub session_version: u64,
    pub address_type: &'a str,
    pub address: &'a str,
}

pub(crate) fn parse_origin(value: &str) -> Option<Origin<'_>> {
    let mut it = value.split_ascii_whitespace();
    let username = it.next()?;
    let session_id = it.next()?.parse().ok()?;
    let session_version = it.next()?.parse().ok()?;
    let net = it.next()?;
    let address_type = it.next()?;
    let address = it.next()?;
    if it.next().is_some() || !net.eq_ignore_ascii_case("IN") {
        return None;
    }
    Some(Origin {
        username,
        session_id,
        session_version,
        address_type,
        address,
    })
}

/// Parsed `m=<media> <port>[/<count>] <proto> <fmt> ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaLine<'a> {
    pub media: &'a str,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: &'a str,
    /// Everything after the proto: the format list, tokens separated by spaces.
    pub formats: &'a str,
}

pub(crate) fn parse_media_line(value: &str) -> Option<MediaLine<'_>> {
    let (media, rest) = split_token(value)?;
    let (port_text, rest) = split_token(rest)?;
    let (proto, rest) = split_token(rest)?;
    let formats = rest.trim_matches(|c| c == ' ' || c == '\t');
    if formats.is_empty() || media.is_empty() || proto.is_empty() {
        return None;
    }
    let (port, port_count) = match port_text.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_text.parse().ok()?, None),
    };
    Some(MediaLine {
        media,
        port,
        port_count,
        proto,
        formats,
    })
}

/// Splits off the first space-separated token; `None` if there is no token.
fn split_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() {
        return None;
    }
    match s.find([' ', '\t']) {
        Some(i) => Some((&s[..i], &s[i..])),
        None => Some((s, "")),
    }
}

/// Splits an attribute line value `name[:value]` into name and optional value.
pub(crate) fn split_attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((name, v)) => (name, Some(v)),
        None => (value, None),
    }
}

/// Parses an RTP payload type number (0..=127).
pub(crate) fn parse_pt(token: &str) -> Option<u8> {
    if token.is_empty() || token.len() > 3 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// Leading payload type of `rtpmap`/`fmtp`/`rtcp-fb` values (`<pt> <rest>`), with the rest.
pub(crate) fn leading_pt(value: &str) -> Option<(u8, &str)> {
    let (token, rest) = split_token(value)?;
    Some((parse_pt(token)?, rest.trim_start_matches([' ', '\t'])))
}

/// Codec description of one payload type: from `a=rtpmap` or the static RFC 3551 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec<'a> {
    pub pt: u8,
    pub encoding: &'a str,
    pub clock_rate: u32,
    /// Audio channels; 1 when the rtpmap does not say.
    pub channels: u8,
}

impl Codec<'_> {
    /// Same encoding, clock rate and channel count (encoding names are case-insensitive).
    pub fn same_codec(&self, other: &Codec<'_>) -> bool {
        self.encoding.eq_ignore_ascii_case(other.encoding)
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
    }
}

/// Payload type in `table` carrying the same codec as `codec`: `codec.pt` itself when it
/// matches there, else the first match (RFC 3264 §6.1 asks answers to reuse offer numbers).
pub(crate) fn matching_pt(table: &[Codec<'_>], codec: &Codec<'_>) -> Option<u8> {
    if table
        .iter()
        .any(|c| c.pt == codec.pt && c.same_codec(codec))
    {
        return Some(codec.pt);
    }
    table.iter().find(|c| c.same_codec(codec)).map(|c| c.pt)
}

/// Parses `a=rtpmap:` value `<pt> <encoding>/<clock>[/<channels>]`.
pub(crate) fn parse_rtpmap(value: &str) -> Option<Codec<'_>> {
    let (pt, rest) = leading_pt(value)?;
    let rest = rest.trim_end();
    let mut parts = rest.split('/');
    let encoding = parts.next().filter(|e| !e.is_empty())?;
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse().ok()?,
        None => 1,
    };
    if parts.next().is_some() || encoding.contains([' ', '\t']) {
        return None;
    }
    Some(Codec {
        pt,
        encoding,
        clock_rate,
        channels,
    })
}

/// Static payload types (RFC 3551 table 4) that may appear without `a=rtpmap`.
pub(crate) fn static_codec(pt: u8) -> Option<Codec<'static>> {
    let (encoding, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(Codec {
        pt,
        encoding,
        clock_rate,
        channels: 1,
    })
}

/// Media direction attribute (RFC 3264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub connection: Option<Connection>,
}

pub(crate) fn parse_rtcp(value: &str) -> Option<RtcpAttr> {
    let (port, rest) = split_token(value)?;
    let port = port.parse().ok()?;
    let rest = rest.trim();
    let connection = if rest.is_empty() {
        None
    } else {
        Some(parse_connection(rest)?)
    };
    Some(RtcpAttr { port, connection })
}

/// `a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub foundation: &'a str,
    pub component: u16,
    pub transport: &'a str,
    pub priority: u32,
    /// As written: usually an IP address, possibly an mDNS/FQDN name.
    pub address: &'a str,
    pub port: u16,
    pub kind: &'a str,
}

impl Candidate<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

pub(crate) fn parse_candidate(value: &str) -> Option<Candidate<'_>> {
    let mut it = value.split_ascii_whitespace();
    let foundation = it.next()?;
    let component = it.next()?.parse().ok()?;
    let transport = it.next()?;
    let priority = it.next()?.parse().ok()?;
    let address = it.next()?;
    let port = it.next()?.parse().ok()?;
    if it.next()? != "typ" {
        return None;
    }
    let kind = it.next()?;
    Some(Candidate {
        foundation,
        component,
        transport,
        priority,
        address,
        port,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_forms() {
        let c = parse_connection("IN IP4 192.0.2.1").unwrap();
        assert_eq!(c.addr.to_string(), "192.0.2.1");
        assert!(parse_connection("IN IP4 0.0.0.0")
            .unwrap()
            .is_hold_address());
        assert!(parse_connection("IN IP6 2001:db8::1").is_some());
        assert!(parse_connection("IN IP4 224.2.1.1/127/3").is_some());
        assert!(parse_connection("IN IP6 192.0.2.1").is_none());
        assert!(parse_connection("IN IP4 host.example").is_none());
        assert!(parse_connection("IN IP4").is_none());
        assert!(parse_connection("ATM IP4 1.2.3.4").is_none());
    }

    #[test]
    fn media_line_forms() {
        let m = parse_media_line("audio 49170/2 RTP/AVP 0 8  101").unwrap();
        assert_eq!(
            (m.media, m.port, m.port_count, m.proto, m.formats),
            ("audio", 49170, Some(2), "RTP/AVP", "0 8  101")
        );
        assert!(parse_media_line("audio 49170 RTP/AVP").is_none());
        assert!(parse_media_line("audio 70000 RTP/AVP 0").is_none());
        assert!(parse_media_line("").is_none());
    }

    #[test]
    fn rtpmap_forms() {
        let c = parse_rtpmap("111 SILK/16000").unwrap();
        assert_eq!(
            (c.pt, c.encoding, c.clock_rate, c.channels),
            (111, "SILK", 16000, 1)
        );
        let c = parse_rtpmap("96 opus/48000/2").unwrap();
        assert_eq!(c.channels, 2);
        assert!(parse_rtpmap("128 PCMU/8000").is_none());
        assert!(parse_rtpmap("0 PCMU").is_none());
        assert!(parse_rtpmap("0 PCMU/x").is_none());
    }

    #[test]
    fn candidate_and_rtcp() {
        let c = parse_candidate("1 1 UDP 2130706431 192.0.2.1 50000 typ host").unwrap();
        assert_eq!((c.component, c.port, c.kind), (1, 50000, "host"));
        assert!(parse_candidate("1 1 UDP 2130706431 192.0.2.1 50000 host").is_none());
        let r = parse_rtcp("53021 IN IP4 192.0.2.7").unwrap();
        assert_eq!(r.port, 53021);
        assert!(r.connection.is_some());
        assert_eq!(parse_rtcp("9").unwrap().connection, None);
        assert!(parse_rtcp("x").is_none());
    }
}
