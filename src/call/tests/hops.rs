//! Trunk failover on Teams -> PSTN calls: every attempt is built for the trunk of its hop,
//! never the first trunk's (codecs and the offer, in-band DTMF, numbers, transport and our
//! address, early media; identity and Diversion in `identity.rs`, response tables in
//! `cause_mapping.rs`). The limiter slot that moves with the hop is the driver's
//! (`dispatch` tests).

use super::*;
use crate::media::InbandDtmfPlan;

/// Hop 0 (trunk A): PCMU and events, in-band DTMF off, numbers in E.164. Hop 1 (trunk B):
/// PCMA only, in-band DTMF on, national numbers, TCP on our port 5070, `first_only`.
fn two_trunks() -> CallSetup {
    let mut s = setup();
    let a = &mut s.carrier.targets[0];
    a.trunk.codecs = CodecList::new(["PCMU", "telephone-event"]);
    a.trunk.inband_dtmf = false;
    let b = &mut s.carrier.targets[1];
    b.trunk.codecs = CodecList::new(["PCMA"]);
    b.trunk.inband_dtmf = true;
    b.trunk.early_media = EarlyMediaPolicy::FirstOnly;
    b.transport = TransportKind::Tcp;
    b.local_port = 5070;
    b.numbers = CallNumbers {
        caller: "02065550123".into(),
        callee: "04255550100".into(),
    };
    s.carrier.trunk = s.carrier.targets[0].trunk.clone();
    s
}

/// Teams calls; trunk A refuses with 503; the INVITEs to A and B.
fn failed_over(s: CallSetup) -> (Harness, SentReq, SentReq) {
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    assert_eq!(first.target, Target::Carrier(0));
    h.respond(&first, 503, "a1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    (h, first, second)
}

fn m_line(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_default()
        .to_owned()
}

fn origin_session(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned()
}

fn inband_plans(h: &Harness) -> Vec<Option<InbandDtmfPlan>> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::SetInbandDtmf { plan } => Some(plan),
            _ => None,
        })
        .collect()
}

fn g711_answer(pt: u8, name: &str) -> String {
    format!(
        "v=0\r\no=carrier 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=sendrecv\r\n"
    )
}

/// Row 47: Teams offers PCMU, PCMA and events; trunk A is offered what it carries (PCMU,
/// events), trunk B after A's 503 only PCMA, in a new SDP session of its own. B's answer
/// sets up the call: Teams gets PCMA under its own number.
#[test]
fn row47_each_failover_hop_gets_an_offer_with_its_own_trunks_codecs() {
    let (mut h, first, second) = failed_over(two_trunks());
    let offer_a = body(&first.msg);
    let offer_b = body(&second.msg);
    assert!(m_line(&offer_a).ends_with("RTP/AVP 0 101"), "{offer_a}");
    assert!(m_line(&offer_b).ends_with("RTP/AVP 8"), "{offer_b}");
    assert!(!offer_b.contains("telephone-event"), "{offer_b}");
    assert_ne!(origin_session(&offer_a), origin_session(&offer_b));

    h.respond(&second, 200, "b1", &[], Some(&g711_answer(8, "PCMA")));
    let (leg, _, ok) = h.response(200);
    assert_eq!(leg, LegId::Teams);
    assert!(m_line(&body(&ok)).contains("RTP/SAVP 8"), "{}", body(&ok));
}

/// Row 47: a hop whose trunk carries none of Teams' codecs is not tried at all: the call
/// goes on to the next hop; with none left, Teams gets the failover code for the failure of
/// the last hop tried (row 30). No hop able to take the offer at all: 488 to Teams.
#[test]
fn row47_a_hop_whose_trunk_takes_none_of_teams_codecs_is_skipped() {
    let mut s = setup();
    let mut g729 = s.carrier.targets[1].clone();
    g729.trunk.codecs = CodecList::new(["G729"]);
    let third = CarrierTarget {
        host: "10.0.0.3".into(),
        ..s.carrier.targets[0].clone()
    };
    s.carrier.targets = vec![s.carrier.targets[0].clone(), g729.clone(), third];
    let mut h = Harness::outbound(s.clone(), teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.respond(&first, 503, "a1", &[], None);
    let next = h.request(Method::Invite);
    assert_eq!(next.target, Target::Carrier(2));

    s.carrier.targets.truncate(2);
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.respond(&first, 500, "a1", &[], None);
    assert!(h.requests().is_empty());
    h.response(503);

    let mut none = setup();
    every_trunk(&mut none, |t| t.codecs = CodecList::new(["G729"]));
    let h = Harness::outbound(none, teams_invite("", &teams_sdp()));
    assert!(h.requests().is_empty());
    h.response(488);
}

/// Row 48: the in-band DTMF rule is the trunk's of the hop that answers. Trunk B answers
/// G.711 without events and has conversion on: Teams gets its event number back and the
/// media plane converts B's tones, although trunk A (first tried) has it off. The other
/// way round, B without conversion: Teams gets no events.
#[test]
fn row48_the_answering_hops_trunk_decides_inband_dtmf() {
    let (mut h, _, second) = failed_over(two_trunks());
    h.respond(&second, 200, "b1", &[], Some(&g711_answer(8, "PCMA")));
    let (_, _, ok) = h.response(200);
    assert!(
        body(&ok).contains("a=rtpmap:101 telephone-event/8000"),
        "{}",
        body(&ok)
    );
    assert_eq!(
        inband_plans(&h),
        vec![Some(InbandDtmfPlan {
            event_pt: 101,
            pcmu_pt: None,
            pcma_pt: Some(8),
            teams_event_pt: Some(101),
        })]
    );

    let mut s = two_trunks();
    s.carrier.targets[0].trunk.inband_dtmf = true;
    s.carrier.targets[1].trunk.inband_dtmf = false;
    s.carrier.trunk.inband_dtmf = true;
    let (mut h, _, second) = failed_over(s);
    h.respond(&second, 200, "b1", &[], Some(&g711_answer(8, "PCMA")));
    let (_, _, ok) = h.response(200);
    assert!(!body(&ok).contains("telephone-event"), "{}", body(&ok));
    assert_eq!(inband_plans(&h), vec![None]);
}

/// Rows 19, 20 (carrier side): each hop's INVITE carries the numbers as its trunk's
/// translation rules made them: E.164 to trunk A, national numbers to trunk B (Request-URI,
/// To, From, Contact).
#[test]
fn row19_each_failover_hop_gets_the_numbers_its_trunk_translated() {
    let (_, first, second) = failed_over(two_trunks());
    assert_eq!(
        first.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@10.0.0.1:5060"[..]
    );
    assert!(header(&first.msg, HeaderName::From).starts_with("<sip:+12065550123@"));
    assert_eq!(
        second.msg.request_uri().unwrap().raw(),
        &b"sip:04255550100@10.0.0.2:5060;transport=tcp"[..]
    );
    assert_eq!(
        header(&second.msg, HeaderName::To),
        "<sip:04255550100@10.0.0.2>"
    );
    assert!(header(&second.msg, HeaderName::From).starts_with("<sip:02065550123@192.0.2.10>;tag="));
    assert!(header(&second.msg, HeaderName::Contact).starts_with("<sip:02065550123@"));
}

/// Each hop is reached over its trunk's transport, from our listener for it (Via sent-by,
/// Contact), with the same Call-ID and From tag (one carrier dialog being set up).
#[test]
fn each_failover_hop_uses_its_transport_and_our_address_for_it() {
    let (_, first, second) = failed_over(two_trunks());
    let via = |m: &Message| header(m, HeaderName::Via);
    assert!(
        via(&first.msg).starts_with("SIP/2.0/UDP 192.0.2.10:5060;"),
        "{}",
        via(&first.msg)
    );
    assert!(
        via(&second.msg).starts_with("SIP/2.0/TCP 192.0.2.10:5070;"),
        "{}",
        via(&second.msg)
    );
    assert_eq!(
        header(&second.msg, HeaderName::Contact),
        "<sip:02065550123@192.0.2.10:5070;transport=tcp>"
    );
    assert_eq!(
        header(&first.msg, HeaderName::CallId),
        header(&second.msg, HeaderName::CallId)
    );
    assert_eq!(
        second.msg.from().unwrap().tag,
        first.msg.from().unwrap().tag
    );
}

/// Row 27 belongs to PSTN -> Teams calls (which of Microsoft's 18x reach a trunk). On a
/// Teams -> PSTN call the hop's trunk B has `first_only`, yet both of its 18x reach
/// Microsoft, the second with its early SDP: Microsoft handles every 18x itself, and no
/// trunk's policy filters what goes to Teams.
#[test]
fn row27_teams_to_pstn_failover_hop_relays_every_18x_whatever_its_early_media_policy() {
    let (mut h, _, second) = failed_over(two_trunks());
    h.respond(&second, 180, "b1", &[], None);
    h.response(180);
    h.respond(&second, 183, "b1", &[], Some(&g711_answer(8, "PCMA")));
    let (leg, _, progress) = h.response(183);
    assert_eq!(leg, LegId::Teams);
    assert!(m_line(&body(&progress)).contains("RTP/SAVP 8"));
}

/// Trunk A stays silent, the hop timer moves the call to trunk B (TCP); A's late 200 is
/// released (ACK and BYE) the way A is reached, over UDP from our UDP address, not B's.
#[test]
fn a_late_answer_of_an_abandoned_hop_is_released_over_that_hops_transport() {
    let mut h = Harness::outbound(two_trunks(), teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.fire(TimerKind::HopTimeout);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    h.respond(
        &first,
        200,
        "late",
        &[("Contact", "<sip:late@10.0.0.1:5060>")],
        Some(&g711_answer(0, "PCMU")),
    );
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    let (_, target, ack) = &acks[0];
    assert_eq!(
        *target,
        Target::Dialog {
            uri: Bytes::from_static(b"sip:late@10.0.0.1:5060"),
            transport: TransportKind::Udp,
        }
    );
    assert!(header(ack, HeaderName::Via).starts_with("SIP/2.0/UDP 192.0.2.10:5060;"));
    let bye = h.request(Method::Bye);
    assert!(header(&bye.msg, HeaderName::Via).starts_with("SIP/2.0/UDP 192.0.2.10:5060;"));
    assert!(h.responses().is_empty(), "Teams waits for trunk B");
}

/// Row 49: comfort noise comes from the trunk of the hop that answered: trunk A has it off,
/// trunk B on (noise in B's PCMA); then the other way round.
#[test]
fn row49_the_answering_hops_trunk_decides_comfort_noise() {
    let carrier_noise = |h: &Harness| {
        h.media().into_iter().find_map(|c| match c {
            MediaCommand::SetComfortNoise {
                leg: crate::media::LegSide::Carrier,
                plan,
            } => Some(plan.and_then(|p| p.noise)),
            _ => None,
        })
    };
    for b_on in [true, false] {
        let mut s = two_trunks();
        s.carrier.targets[0].trunk.comfort_noise = !b_on;
        s.carrier.targets[1].trunk.comfort_noise = b_on;
        s.carrier.trunk = s.carrier.targets[0].trunk.clone();
        let (mut h, _, second) = failed_over(s);
        h.respond(&second, 200, "b1", &[], Some(&g711_answer(8, "PCMA")));
        h.response(200);
        let noise = carrier_noise(&h).expect("a comfort-noise plan for the carrier leg");
        assert_eq!(
            noise.map(|g| g.payload_type),
            b_on.then_some(8),
            "trunk B comfort_noise = {b_on}"
        );
    }
}
