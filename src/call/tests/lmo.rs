//! Local Media Optimization (row 61): the Teams-leg media address follows Microsoft's
//! `X-MS-UserLocation` (internal users get the internal address, the others the public one),
//! on the same port, at the start of a call and on Microsoft's re-INVITEs; a proxy SBC
//! Record-Routes with its Contact's FQDN and keeps itself out of its own route set.

use super::*;

const INTERNAL: &str = "192.168.3.5";
/// The allocation's (public) address of `setup()`.
const EXTERNAL: &str = "198.51.100.10";

fn lmo_setup(guess: UserLocation) -> CallSetup {
    let mut s = setup();
    s.teams.local_media = Some(LocalMedia {
        internal: INTERNAL.parse().unwrap(),
        external: EXTERNAL.parse().unwrap(),
        inbound_guess: guess,
    });
    s
}

fn c_line(sdp: &str) -> &str {
    sdp.lines()
        .find(|l| l.starts_with("c="))
        .unwrap_or_default()
}

fn m_port(sdp: &str) -> &str {
    sdp.lines()
        .find(|l| l.starts_with("m=audio "))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
}

fn o_version(sdp: &str) -> u64 {
    sdp.lines()
        .find(|l| l.starts_with("o="))
        .and_then(|l| l.split(' ').nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn locations(h: &Harness) -> Vec<UserLocation> {
    h.all
        .iter()
        .filter_map(|o| match o {
            Output::Record(CallRecord::MediaLocation { location }) => Some(*location),
            _ => None,
        })
        .collect()
}

/// Teams -> PSTN with `extra` headers on Microsoft's INVITE, answered by the carrier: our 200
/// to Teams.
fn outbound_answer(s: CallSetup, extra: &str) -> (Harness, Message) {
    let mut h = Harness::outbound(s, teams_invite(extra, &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        200,
        "p1",
        &[("Contact", "<sip:x@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    let ok = h.response(200).2;
    (h, ok)
}

#[test]
fn row61_internal_user_gets_the_internal_address_external_and_unknown_the_public_one() {
    for (headers, address, location) in [
        (
            "X-MS-UserLocation: internal\r\nX-MS-MediaPath: acme.sbc1.example.net\r\n\
             X-MS-UserSite: Vietnam\r\n",
            INTERNAL,
            UserLocation::Internal,
        ),
        (
            "X-MS-UserLocation: External\r\n",
            EXTERNAL,
            UserLocation::External,
        ),
        // No LMO headers (BypassMode unset at Microsoft): the public address.
        ("", EXTERNAL, UserLocation::External),
    ] {
        let (h, ok) = outbound_answer(lmo_setup(UserLocation::Internal), headers);
        let sdp = body(&ok);
        assert_eq!(
            c_line(&sdp),
            format!("c=IN IP4 {address}"),
            "{headers}: {sdp}"
        );
        assert_eq!(
            m_port(&sdp),
            "30000",
            "the allocated port, whatever the address"
        );
        assert_eq!(locations(&h), [location]);
    }
}

#[test]
fn row61_without_lmo_the_headers_change_nothing() {
    let (h, ok) = outbound_answer(setup(), "X-MS-UserLocation: internal\r\n");
    assert_eq!(c_line(&body(&ok)), format!("c=IN IP4 {EXTERNAL}"));
    assert!(locations(&h).is_empty());
}

#[test]
fn row61_ice_candidate_follows_the_address_on_a_bypass_trunk() {
    let mut s = lmo_setup(UserLocation::Internal);
    s.teams.ice = Some(crate::sdp::IceCredentials::generate());
    let (_, ok) = outbound_answer(s, "X-MS-UserLocation: internal\r\n");
    let sdp = body(&ok);
    let candidate = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("ICE-lite candidate");
    assert!(
        candidate.contains(&format!(" {INTERNAL} 30000 typ host")),
        "{sdp}"
    );
    assert!(!sdp.contains(EXTERNAL), "{sdp}");
}

/// A re-INVITE from Microsoft on the answered inbound call `h` (our INVITE `invite`).
fn microsoft_reinvite(invite: &SentReq, cseq: u32, extra: &str, sdp: &str) -> Message {
    with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKlmo{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n{extra}",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId)
        ),
        Some(sdp),
    )
}

#[test]
fn row61_pstn_call_offers_the_guess_and_microsofts_reinvite_moves_it_on_the_same_port() {
    let mut h = Harness::inbound(
        lmo_setup(UserLocation::Internal),
        carrier_invite(Some(&carrier_sdp())),
    );
    let invite = h.request(Method::Invite);
    let offer = body(&invite.msg);
    assert_eq!(c_line(&offer), format!("c=IN IP4 {INTERNAL}"), "{offer}");
    assert_eq!(locations(&h), [UserLocation::Internal]);
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });

    // The user turns out to be external; Microsoft's SDP itself is unchanged (a refresh
    // would otherwise be answered with our last SDP).
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(600),
        msg: microsoft_reinvite(&invite, 2, "X-MS-UserLocation: external\r\n", &teams_sdp()),
    });
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(600)));
    let answer = body(&ok);
    assert_eq!(c_line(&answer), format!("c=IN IP4 {EXTERNAL}"), "{answer}");
    assert_eq!(m_port(&answer), m_port(&offer), "same port, same socket");
    assert!(
        o_version(&answer) > o_version(&offer),
        "new SDP, new version"
    );
    assert!(
        h.requests().iter().all(|r| r.leg != LegId::Carrier),
        "the carrier hears nothing of it"
    );
    assert_eq!(
        locations(&h),
        [UserLocation::Internal, UserLocation::External]
    );

    // The same location again: a plain refresh, our last SDP unchanged.
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(601),
        msg: microsoft_reinvite(&invite, 3, "X-MS-UserLocation: external\r\n", &teams_sdp()),
    });
    let again = body(&h.response(200).2);
    assert_eq!(again, answer);
    assert_eq!(locations(&h).len(), 2);
}

const OUR_RECORD_ROUTE: &str = "<sip:acme.sbc1.example.net:5068;transport=tls;lr>";

fn proxy_setup() -> CallSetup {
    let mut s = lmo_setup(UserLocation::Internal);
    s.teams_profile.record_route = true;
    s
}

#[test]
fn row17_row61_proxy_sbc_record_routes_with_its_contact_fqdn_and_routes_past_itself() {
    // PSTN -> Teams: our INVITE carries our Record-Route, same FQDN and port as Contact.
    let mut h = Harness::inbound(proxy_setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    assert_eq!(
        invite.msg.header_values(&HeaderName::RecordRoute),
        [Bytes::from_static(OUR_RECORD_ROUTE.as_bytes())],
        "only ours: the carrier's never crosses"
    );
    let contact = invite.msg.contacts().unwrap()[0]
        .uri
        .as_sip()
        .unwrap()
        .clone();
    assert_eq!(&contact.host[..], b"acme.sbc1.example.net");
    assert_eq!(contact.port, Some(5068));
    // Microsoft's 200 lists its own Record-Route above ours; in-dialog requests go by
    // Microsoft's only.
    h.respond(
        &invite,
        200,
        "ms1",
        &[
            (
                "Record-Route",
                "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>",
            ),
            ("Record-Route", OUR_RECORD_ROUTE),
            (
                "Contact",
                "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
            ),
        ],
        Some(&teams_sdp()),
    );
    let (_, _, teams_ack) = h
        .acks()
        .into_iter()
        .find(|(leg, _, _)| *leg == LegId::Teams)
        .expect("ACK to Teams");
    assert_eq!(
        teams_ack.header_values(&HeaderName::Route),
        [Bytes::from_static(
            b"<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>"
        )]
    );
    assert!(!teams_ack.has_header(&HeaderName::RecordRoute));

    // Teams -> PSTN: our 180 and 200 to Microsoft carry it too.
    let mut h = Harness::outbound(proxy_setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    assert!(
        !invite.msg.has_header(&HeaderName::RecordRoute),
        "never towards the carrier"
    );
    h.respond(&invite, 180, "p1", &[], None);
    let ringing = h.response(180).2;
    h.respond(
        &invite,
        200,
        "p1",
        &[("Contact", "<sip:x@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    let ok = h.response(200).2;
    for m in [&ringing, &ok] {
        assert_eq!(
            m.header_values(&HeaderName::RecordRoute),
            [Bytes::from_static(OUR_RECORD_ROUTE.as_bytes())],
            "{}",
            String::from_utf8_lossy(m.bytes())
        );
    }
}
