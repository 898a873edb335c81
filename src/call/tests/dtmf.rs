//! Row 48 (RFC 4733 telephone-event end to end): when the legs number telephone-event
//! differently, the SDP each leg gets carries its own number and the media plane is told to
//! rewrite the payload type in both directions, already at the 183 (DTMF before answer, e.g.
//! to an IVR) and again at the 200.

use super::*;
use crate::media::{InbandDtmfPlan, MapDirection, PayloadMapping};

/// The carrier's offer: PCMU/0 and telephone-event/101.
fn carrier_offer_101() -> String {
    "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
     m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        .to_owned()
}

/// An SRTP SDP from Teams with PCMU and telephone-event under `te_pt`.
fn teams_sdp_with_te(te_pt: u8) -> String {
    format!(
        "v=0\r\no=- 9 9 IN IP4 52.112.1.1\r\ns=-\r\nc=IN IP4 52.112.1.1\r\nt=0 0\r\n\
         m=audio 49152 RTP/SAVP 0 {te_pt}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:{te_pt} telephone-event/8000\r\na=fmtp:{te_pt} 0-15\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY_B64}|2^31\r\n\
         a=rtcp-mux\r\na=sendrecv\r\n"
    )
}

/// A carrier SDP (answer) with PCMU and telephone-event under `te_pt`.
fn carrier_sdp_with_te(te_pt: u8) -> String {
    format!(
        "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 {te_pt}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:{te_pt} telephone-event/8000\r\na=fmtp:{te_pt} 0-16\r\na=sendrecv\r\n"
    )
}

fn payload_map(h: &Harness, direction: MapDirection) -> Vec<PayloadMapping> {
    let maps: Vec<_> = h
        .media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::SetPayloadMap {
                direction: d,
                mappings,
            } if d == direction => Some(mappings),
            _ => None,
        })
        .collect();
    assert_eq!(
        maps.len(),
        1,
        "one {direction:?} map, outputs: {:#?}",
        h.out
    );
    maps.into_iter().next().unwrap()
}

fn maps_to(mappings: &[PayloadMapping], from: u8) -> Option<u8> {
    mappings.iter().find(|m| m.from_pt == from).map(|m| m.to_pt)
}

/// The `telephone-event` payload type(s) of an SDP body.
fn te_numbers(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter(|l| l.contains("telephone-event/8000"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Asserts the payload maps of the last step: carrier 101 -> Teams 96, Teams 96 (its own
/// number) and 101 (ours, RFC 3264) -> carrier 101, PCMU unchanged.
fn assert_101_96_both_ways(h: &Harness, when: &str) {
    let to_teams = payload_map(h, MapDirection::CarrierToTeams);
    assert_eq!(maps_to(&to_teams, 101), Some(96), "{when}: {to_teams:?}");
    assert_eq!(maps_to(&to_teams, 0), Some(0), "{when}");
    let to_carrier = payload_map(h, MapDirection::TeamsToCarrier);
    assert_eq!(
        maps_to(&to_carrier, 96),
        Some(101),
        "{when}: {to_carrier:?}"
    );
    assert_eq!(maps_to(&to_carrier, 101), Some(101), "{when}");
    assert_eq!(maps_to(&to_carrier, 0), Some(0), "{when}");
    for m in to_teams.iter().chain(&to_carrier) {
        assert_eq!(m.clock_rate, 8000, "{when}: {m:?}");
    }
}

#[test]
fn row48_pstn_to_teams_dtmf_101_maps_to_teams_96_from_the_183_on() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_offer_101())));
    let invite = h.request(Method::Invite);
    // Our offer to Teams keeps the carrier's number.
    assert_eq!(te_numbers(&body(&invite.msg)), vec!["101"]);

    // 183 with SDP: early media, DTMF must already cross (before answer).
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp_with_te(96)));
    let (_, _, progress) = h.response(183);
    assert_eq!(
        te_numbers(&body(&progress)),
        vec!["101"],
        "carrier keeps 101"
    );
    assert!(body(&progress).contains("a=fmtp:101 0-15"));
    assert_101_96_both_ways(&h, "at the 183");

    // The 200 (same answer) sets the same maps again.
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp_with_te(96)),
    );
    let (_, _, ok) = h.response(200);
    assert_eq!(te_numbers(&body(&ok)), vec!["101"]);
    assert_101_96_both_ways(&h, "at the 200");
}

/// A 183 and a 200 with different numbers: the maps follow the latest answer.
#[test]
fn row48_payload_map_follows_a_200_that_renumbers_telephone_event() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_offer_101())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp_with_te(101)));
    let early = payload_map(&h, MapDirection::CarrierToTeams);
    assert_eq!(maps_to(&early, 101), Some(101));
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp_with_te(96)),
    );
    assert_101_96_both_ways(&h, "after the renumbering 200");
}

#[test]
fn row48_teams_to_pstn_dtmf_127_maps_to_carrier_101_from_the_183_on() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp_with_te(127)));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Carrier);
    assert_eq!(te_numbers(&body(&invite.msg)), vec!["127"]);

    h.respond(&invite, 183, "pstn1", &[], Some(&carrier_sdp_with_te(101)));
    let (leg, _, progress) = h.response(183);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(te_numbers(&body(&progress)), vec!["127"], "Teams keeps 127");
    let check = |h: &Harness, when: &str| {
        let to_carrier = payload_map(h, MapDirection::TeamsToCarrier);
        assert_eq!(maps_to(&to_carrier, 127), Some(101), "{when}");
        let to_teams = payload_map(h, MapDirection::CarrierToTeams);
        // RFC 3264: the carrier sends with our offer's 127; with its own 101 it still arrives.
        assert_eq!(maps_to(&to_teams, 127), Some(127), "{when}");
        assert_eq!(maps_to(&to_teams, 101), Some(127), "{when}: {to_teams:?}");
    };
    check(&h, "at the 183");

    h.respond(
        &invite,
        200,
        "pstn1",
        &[("Contact", "<sip:pstn@10.0.0.1:5060>")],
        Some(&carrier_sdp_with_te(101)),
    );
    let (_, _, ok) = h.response(200);
    assert_eq!(te_numbers(&body(&ok)), vec!["127"]);
    check(&h, "at the 200");
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

/// A carrier offer with G.711 only: its DTMF is in-band.
fn carrier_offer_inband() -> String {
    "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
     m=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
     a=sendrecv\r\n"
        .to_owned()
}

/// Row 48, in-band half: a carrier without telephone-event. Teams is offered events anyway
/// and the media plane is told to turn the carrier's tones into events under Teams' number
/// (and to keep Teams' own events from the carrier), from the 183 on.
#[test]
fn row48_inband_carrier_gets_events_offered_to_teams_and_conversion_from_the_183() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_offer_inband())));
    let invite = h.request(Method::Invite);
    assert_eq!(te_numbers(&body(&invite.msg)), vec!["101"]);
    // CN too: the carrier offered none and the SBC makes its noise (row 49).
    assert!(body(&invite.msg).contains("m=audio 30000 RTP/SAVP 8 0 101 13\r\n"));

    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp_with_te(96)));
    let (_, _, progress) = h.response(183);
    assert!(
        te_numbers(&body(&progress)).is_empty(),
        "the carrier never gets events it did not offer"
    );
    // Teams answered PCMU only, so that is all the carrier was answered and will send.
    let plans = inband_plans(&h);
    assert_eq!(
        plans,
        vec![Some(InbandDtmfPlan {
            event_pt: 96,
            pcmu_pt: Some(0),
            pcma_pt: None,
            teams_event_pt: Some(101),
        })]
    );
}

/// A carrier with its own telephone-event needs no conversion; a trunk with it turned off
/// offers Teams only what the carrier offered.
#[test]
fn row48_no_conversion_when_the_carrier_has_events_or_the_trunk_turns_it_off() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_offer_101())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp_with_te(96)));
    assert_eq!(inband_plans(&h), vec![None]);

    let mut off = setup();
    every_trunk(&mut off, |t| t.inband_dtmf = false);
    let mut h = Harness::inbound(off, carrier_invite(Some(&carrier_offer_inband())));
    let invite = h.request(Method::Invite);
    assert!(te_numbers(&body(&invite.msg)).is_empty());
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp_with_te(96)));
    assert_eq!(inband_plans(&h), vec![None]);
}

/// Teams -> PSTN: Teams offers events, the carrier answers G.711 only; Teams' answer keeps
/// its event number and the carrier's tones are converted under it.
#[test]
fn row48_teams_to_pstn_inband_carrier_answer_keeps_teams_event_number() {
    let teams_offer = teams_sdp_with_te(127);
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_offer));
    let invite = h.request(Method::Invite);
    assert_eq!(te_numbers(&body(&invite.msg)), vec!["127"]);
    let carrier_answer = "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n\
                          t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    h.respond(&invite, 183, "c1", &[], Some(carrier_answer));
    let (_, _, progress) = h.response(183);
    assert_eq!(te_numbers(&body(&progress)), vec!["127"]);
    assert_eq!(
        inband_plans(&h),
        vec![Some(InbandDtmfPlan {
            event_pt: 127,
            pcmu_pt: Some(0),
            pcma_pt: None,
            teams_event_pt: Some(127),
        })]
    );
}
