//! Emergency location (row 56, RFC 6442, doc 2.12): Microsoft's multipart INVITE with a
//! PIDF-LO is answered from its SDP part, the location reaches the carrier unchanged next to
//! our SDP (a 415 gets SDP only), and nothing but SDP ever goes to Microsoft.

use super::*;
use crate::sip::multipart;

const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" entity=\"pres:alice@contoso.com\">\r\n\
<tuple id=\"t1\"><status><gp:geopriv><gp:location-info><civicAddress/></gp:location-info></gp:geopriv></status></tuple>\r\n\
</presence>";
const GEOLOCATION: &str = "<cid:alice-loc@contoso.com>;inserted-by=\"sip.pstnhub.microsoft.com\"";

/// `head` (request line and headers, no Content-Type/Length) with a multipart body of `sdp`
/// and the PIDF-LO, as Microsoft sends an emergency call.
fn multipart_request(head: &str, sdp: &str) -> Message {
    let body = format!(
        "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n\
         --unique-boundary-1\r\nContent-Type: application/pidf+xml\r\n\
         Content-ID: <alice-loc@contoso.com>\r\n\r\n{PIDF}\r\n--unique-boundary-1--\r\n"
    );
    parse(
        format!(
            "{head}Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn emergency_teams_invite() -> Message {
    multipart_request(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;user=phone SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKteams1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1\r\n\
             To: <sip:+12065550123@acme.sbc1.example.net:5068;user=phone>\r\n\
             Call-ID: teams-call-1\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n\
             Geolocation: {GEOLOCATION}\r\nGeolocation-Routing: yes\r\n"
        ),
        &teams_sdp(),
    )
}

fn parts(msg: &Message) -> Vec<multipart::BodyPart> {
    let ct = msg.content_type().unwrap();
    let boundary = multipart::boundary(&ct).unwrap();
    multipart::parse(&msg.body(), &boundary).unwrap()
}

/// Row 56, Teams -> PSTN: the SDP part is the offer; the carrier INVITE carries our SDP and
/// Microsoft's PIDF-LO byte for byte with its Content-ID, and the Geolocation headers; the
/// 200 to Microsoft is SDP only.
#[test]
fn row56_teams_emergency_location_reaches_the_carrier_next_to_our_sdp() {
    let mut h = Harness::outbound(setup(), emergency_teams_invite());
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Carrier);
    assert!(header(&invite.msg, HeaderName::ContentType).starts_with("multipart/mixed;boundary="));
    assert_eq!(
        header(&invite.msg, HeaderName::from_wire(b"Geolocation")),
        GEOLOCATION
    );
    assert_eq!(
        header(&invite.msg, HeaderName::from_wire(b"Geolocation-Routing")),
        "yes"
    );
    let parts = parts(&invite.msg);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].media_type, "application/sdp");
    let offer = String::from_utf8_lossy(&parts[0].content).into_owned();
    assert!(offer.contains("RTP/AVP"), "our plain-RTP offer: {offer}");
    assert!(offer.contains("c=IN IP4 192.0.2.10"), "{offer}");
    assert!(!offer.contains("crypto"), "{offer}");
    assert_eq!(parts[1].media_type, "application/pidf+xml");
    assert_eq!(parts[1].content, PIDF.as_bytes());
    assert!(
        String::from_utf8_lossy(&parts[1].headers).contains("Content-ID: <alice-loc@contoso.com>")
    );

    h.respond(
        &invite,
        200,
        "p1",
        &[("Contact", "<sip:x@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    let (leg, _, ok) = h.response(200);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(header(&ok, HeaderName::ContentType), "application/sdp");
    assert!(body(&ok).contains("RTP/SAVP"));
    assert!(!body(&ok).contains("pidf"));
}

/// RFC 5621 §9: a carrier that refuses the multipart body (415) gets the same INVITE with SDP
/// only on the same target; the emergency call goes through without the location.
#[test]
fn row56_carrier_415_gets_the_invite_again_with_sdp_only() {
    let mut h = Harness::outbound(setup(), emergency_teams_invite());
    let first = h.request(Method::Invite);
    h.respond(&first, 415, "p1", &[("Accept", "application/sdp")], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, first.target, "same target, not failover");
    assert_eq!(
        header(&second.msg, HeaderName::ContentType),
        "application/sdp"
    );
    assert!(!second
        .msg
        .has_header(&HeaderName::from_wire(b"Geolocation")));
    assert_eq!(
        body(&second.msg),
        String::from_utf8_lossy(&parts(&first.msg)[0].content)
    );
    assert_eq!(
        header(&second.msg, HeaderName::CallId),
        header(&first.msg, HeaderName::CallId)
    );
    // A second 415 is the carrier's final word, like any other 4xx (no trunk failover).
    h.respond(&second, 415, "p1", &[], None);
    assert!(h.requests().is_empty());
    let final_status = h
        .responses()
        .iter()
        .find_map(|(leg, _, m)| (*leg == LegId::Teams).then(|| m.status().unwrap()))
        .unwrap();
    assert!(final_status >= 400, "{final_status}");
}

/// Row 56, PSTN -> Teams: a carrier's multipart INVITE is answered from its SDP part; the
/// INVITE to Microsoft is SDP only, no location, no Geolocation header (415 / 540415).
#[test]
fn row56_carrier_multipart_invite_reaches_teams_as_sdp_only() {
    let invite = multipart_request(
        "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:2065550123@10.0.0.1:5060>\r\n\
         Geolocation: <cid:alice-loc@contoso.com>\r\n",
        &carrier_sdp(),
    );
    let h = Harness::inbound(setup(), invite);
    let to_teams = h.request(Method::Invite);
    assert_eq!(to_teams.leg, LegId::Teams);
    assert_eq!(
        header(&to_teams.msg, HeaderName::ContentType),
        "application/sdp"
    );
    assert!(!to_teams
        .msg
        .has_header(&HeaderName::from_wire(b"Geolocation")));
    let offer = body(&to_teams.msg);
    assert!(
        offer.contains("RTP/SAVP") && offer.contains("a=crypto:"),
        "{offer}"
    );
    assert!(
        !offer.contains("pidf") && !offer.contains("presence"),
        "{offer}"
    );
}

/// A multipart body that cannot be taken apart is refused with 400, nothing is sent on.
#[test]
fn row56_broken_multipart_invite_gets_400() {
    let text = String::from_utf8_lossy(emergency_teams_invite().bytes())
        .replace("boundary=unique-boundary-1", "boundary=other-boundary");
    let h = Harness::outbound(setup(), parse(text.as_bytes()));
    let (leg, _, _) = h.response(400);
    assert_eq!(leg, LegId::Teams);
    assert!(h.requests().is_empty());
}
