//! Row 49: which comfort noise each leg gets, from the SDPs of both legs.

use super::*;
use crate::media::inband_dtmf::G711;
use crate::media::{ComfortNoisePlan, G711Target, LegSide};

fn plans(h: &Harness) -> Vec<(LegSide, Option<ComfortNoisePlan>)> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::SetComfortNoise { leg, plan } => Some((leg, plan)),
            _ => None,
        })
        .collect()
}

fn carrier_offer(formats: &str, maps: &str) -> String {
    format!(
        "v=0\r\no=carrier 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP {formats}\r\n{maps}a=sendrecv\r\n"
    )
}

fn teams_answer(formats: &str, maps: &str) -> String {
    format!(
        "v=0\r\no=- 9 9 IN IP4 52.112.1.1\r\ns=-\r\nc=IN IP4 52.112.1.1\r\nt=0 0\r\n\
         m=audio 49152 RTP/SAVP {formats}\r\n{maps}\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY_B64}|2^31\r\n\
         a=rtcp-mux\r\na=sendrecv\r\n"
    )
}

/// A PSTN -> Teams call from a carrier offering `formats` answered by Teams with `answer`
/// in a 183: the comfort-noise plans of the media commands.
fn inbound(
    setup: CallSetup,
    offer: &str,
    answer: &str,
) -> (Harness, Vec<(LegSide, Option<ComfortNoisePlan>)>) {
    let mut h = Harness::inbound(setup, carrier_invite(Some(offer)));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 183, "ms1", &[], Some(answer));
    let plans = plans(&h);
    (h, plans)
}

/// The carrier offers G.711 without CN: Teams is offered CN 13 and answers with it; Teams'
/// CN becomes PCMA noise for the carrier (the first G.711 it was answered), and Teams needs
/// nothing (the carrier never sends CN).
#[test]
fn row49_teams_cn_becomes_noise_for_a_carrier_without_cn() {
    let offer = carrier_offer("8 0", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n");
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&offer)));
    let invite = h.request(Method::Invite);
    let sdp = body(&invite.msg);
    assert!(
        sdp.contains("m=audio 30000 RTP/SAVP 8 0 101 13\r\n"),
        "{sdp}"
    );
    assert!(sdp.contains("a=rtpmap:13 CN/8000\r\n"));
    let answer = teams_answer("8 13", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n");
    h.respond(&invite, 183, "ms1", &[], Some(&answer));
    let (_, _, progress) = h.response(183);
    assert!(
        !body(&progress).contains("CN/8000"),
        "the carrier never offered CN"
    );
    assert_eq!(
        plans(&h),
        vec![
            (
                LegSide::Carrier,
                Some(ComfortNoisePlan {
                    cn_payload_types: [Some(13), None],
                    noise: Some(G711Target {
                        payload_type: 8,
                        law: G711::Alaw
                    }),
                })
            ),
            (LegSide::Teams, None),
        ]
    );
}

/// CN on both legs is relayed. A carrier offering CN to a Teams that answers without it
/// ends up without CN too (our answer to it has none): Teams' CN, should it come anyway,
/// becomes noise for the carrier, and the carrier's is left out towards Teams.
#[test]
fn row49_cn_on_both_legs_is_relayed_and_cn_negotiated_on_neither_is_not() {
    let offer = carrier_offer("0 13", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:13 CN/8000\r\n");
    let (_, both) = inbound(
        setup(),
        &offer,
        &teams_answer("0 13", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:13 CN/8000\r\n"),
    );
    assert_eq!(both, vec![(LegSide::Carrier, None), (LegSide::Teams, None)]);
    let (h, neither) = inbound(
        setup(),
        &offer,
        &teams_answer("0", "a=rtpmap:0 PCMU/8000\r\n"),
    );
    let (_, _, progress) = h.response(183);
    assert!(!body(&progress).contains("CN/8000"));
    assert_eq!(
        neither,
        vec![
            (
                LegSide::Carrier,
                Some(ComfortNoisePlan {
                    cn_payload_types: [Some(13), None],
                    noise: Some(G711Target {
                        payload_type: 0,
                        law: G711::Ulaw
                    }),
                })
            ),
            (
                LegSide::Teams,
                Some(ComfortNoisePlan {
                    cn_payload_types: [Some(13), None],
                    noise: None,
                })
            ),
        ]
    );
}

/// A trunk with `comfort_noise` off is offered to Teams as it is, and any CN Teams sends
/// anyway is left out towards it; so is CN towards a carrier without G.711.
#[test]
fn row49_trunk_without_comfort_noise_or_g711_gets_none() {
    let mut off = setup();
    every_trunk(&mut off, |t| t.comfort_noise = false);
    let offer = carrier_offer("0", "a=rtpmap:0 PCMU/8000\r\n");
    let mut h = Harness::inbound(off, carrier_invite(Some(&offer)));
    let invite = h.request(Method::Invite);
    assert!(!body(&invite.msg).contains("CN/8000"));
    h.respond(
        &invite,
        183,
        "ms1",
        &[],
        Some(&teams_answer("0", "a=rtpmap:0 PCMU/8000\r\n")),
    );
    let left_out = Some(ComfortNoisePlan {
        cn_payload_types: [Some(13), None],
        noise: None,
    });
    assert_eq!(
        plans(&h),
        vec![(LegSide::Carrier, left_out), (LegSide::Teams, left_out)]
    );

    let g729 = carrier_offer("18", "a=rtpmap:18 G729/8000\r\n");
    let (_, plans) = inbound(
        setup(),
        &g729,
        &teams_answer("18", "a=rtpmap:18 G729/8000\r\n"),
    );
    assert_eq!(plans[0], (LegSide::Carrier, left_out));
}
