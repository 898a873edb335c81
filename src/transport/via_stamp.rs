//! RFC 3261 §18.2.1 and RFC 3581 §4: the server transport records where a request really came
//! from in its top Via (`received`, and `rport` filled with the source port when the client
//! asked for it), so every response built by copying the Via, and the §18.2.2 response
//! routing, reach a client behind NAT. Only requests that need it are rewritten.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::sip::{Limits, Message};

/// The request with its top Via stamped, or `None` when nothing needs to change (a response,
/// no rport asked for and the sent-by host already equal to the source address).
pub(crate) fn stamp_top_via(
    message: &Message,
    remote: SocketAddr,
    limits: &Limits,
) -> Option<Message> {
    if !message.is_request() {
        return None;
    }
    let via = message.top_via().ok()?;
    let wants_rport = matches!(via.rport, Some(None));
    let source_ip = remote.ip().to_string();
    let host = String::from_utf8_lossy(&via.host);
    let host_matches = host.trim_start_matches('[').trim_end_matches(']') == source_ip;
    if !wants_rport && host_matches {
        return None;
    }
    let buf = message.bytes();
    let (start, end) = locate(buf, &via.raw)?;

    let mut value = BytesMut::with_capacity(via.raw.len() + 48);
    let mut params = via.raw.split(|&b| b == b';');
    value.put_slice(params.next()?);
    for param in params {
        let name = param.split(|&b| b == b'=').next().unwrap_or(param);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"rport") || name.eq_ignore_ascii_case(b"received") {
            continue;
        }
        value.put_u8(b';');
        value.put_slice(param);
    }
    value.put_slice(b";received=");
    value.put_slice(source_ip.as_bytes());
    if via.rport.is_some() {
        value.put_slice(b";rport=");
        value.put_slice(remote.port().to_string().as_bytes());
    }

    let mut out = BytesMut::with_capacity(buf.len() + value.len());
    out.put_slice(&buf[..start]);
    out.put_slice(&value);
    out.put_slice(&buf[end..]);
    Message::parse(out.freeze(), &stamped_limits(limits)).ok()
}

/// The stamp adds a few dozen bytes; a request that fitted before must still parse.
fn stamped_limits(limits: &Limits) -> Limits {
    Limits {
        max_message_bytes: limits.max_message_bytes.saturating_add(96),
        max_header_line_bytes: limits.max_header_line_bytes.saturating_add(96),
        ..*limits
    }
}

/// Byte range of the top Via value inside the message. The parser hands out slices of the
/// message buffer, so the offset is found by address; a value that is not such a slice (an
/// unfolded copy) is left unstamped rather than searched for.
fn locate(buf: &Bytes, raw: &Bytes) -> Option<(usize, usize)> {
    let base = buf.as_ptr() as usize;
    let at = raw.as_ptr() as usize;
    if raw.is_empty() || at < base || at + raw.len() > base + buf.len() {
        return None;
    }
    let start = at - base;
    Some((start, start + raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(via: &str) -> Message {
        let raw = format!(
            "OPTIONS sip:sbc.example.test SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlower\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(raw), &Limits::default()).unwrap()
    }

    fn remote() -> SocketAddr {
        "192.0.2.7:40123".parse().unwrap()
    }

    #[test]
    fn bare_rport_is_filled_and_received_added() {
        let msg = request("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport;alias");
        let stamped = stamp_top_via(&msg, remote(), &Limits::default()).unwrap();
        let via = stamped.top_via().unwrap();
        assert_eq!(via.rport, Some(Some(40123)));
        assert_eq!(via.received.as_deref(), Some(&b"192.0.2.7"[..]));
        assert_eq!(via.branch.as_deref(), Some(&b"z9hG4bK1"[..]));
        let text = String::from_utf8_lossy(stamped.bytes()).into_owned();
        assert!(
            text.contains(";alias;received=192.0.2.7;rport=40123\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlower\r\n"));
    }

    #[test]
    fn received_added_when_sent_by_differs_without_rport() {
        let msg = request("SIP/2.0/UDP client.example:5060;branch=z9hG4bK2");
        let stamped = stamp_top_via(&msg, remote(), &Limits::default()).unwrap();
        let via = stamped.top_via().unwrap();
        assert_eq!(via.received.as_deref(), Some(&b"192.0.2.7"[..]));
        assert_eq!(via.rport, None);
    }

    #[test]
    fn untouched_when_sent_by_is_the_source_and_no_rport() {
        let msg = request("SIP/2.0/UDP 192.0.2.7:40123;branch=z9hG4bK3");
        assert!(stamp_top_via(&msg, remote(), &Limits::default()).is_none());
    }

    #[test]
    fn rport_with_a_value_and_a_matching_host_is_left_alone() {
        let msg = request("SIP/2.0/UDP 192.0.2.7:5060;rport=5060;branch=z9hG4bK4");
        let stamped = stamp_top_via(&msg, remote(), &Limits::default());
        // rport with a value is not a request to fill it; sent-by equals the source host.
        assert!(stamped.is_none());
    }

    #[test]
    fn ipv6_source_is_written_without_brackets() {
        let msg = request("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK5;rport");
        let stamped = stamp_top_via(
            &msg,
            "[2001:db8::2]:5070".parse().unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let via = stamped.top_via().unwrap();
        assert_eq!(via.received.as_deref(), Some(&b"2001:db8::2"[..]));
        assert_eq!(via.rport, Some(Some(5070)));
    }

    #[test]
    fn responses_are_never_stamped() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK6;rport\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = Message::parse(Bytes::from(raw), &Limits::default()).unwrap();
        assert!(stamp_top_via(&msg, remote(), &Limits::default()).is_none());
    }
}
