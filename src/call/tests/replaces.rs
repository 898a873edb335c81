//! INVITE with Replaces from Microsoft (row 22, RFC 3891): the new dialog takes over the
//! Teams leg on the same media port with a new SRTP key (rows 41, 43), the replaced dialog is
//! released with BYE, the carrier leg never hears of it; refusals per RFC 3891 §3.

use super::*;
use crate::media::LegSide;

const NEW_KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz";
const NEW_CALL_ID: &str = "teams-replaces-1";

/// Microsoft's new dialog's offer: another media address and key, PCMU/PCMA/DTMF.
fn new_dialog_sdp() -> String {
    teams_sdp()
        .replace("52.112.1.1", "52.112.9.9")
        .replace("49152", "50100")
        .replace(TEAMS_KEY_B64, NEW_KEY_B64)
}

/// Microsoft's INVITE opening a new dialog with `Replaces: <replaces>`.
fn replaces_invite(replaces: &str, body: &str) -> Message {
    replaces_invite_with(replaces, "", body)
}

/// [`replaces_invite`] with `extra` header lines.
fn replaces_invite_with(replaces: &str, extra: &str, body: &str) -> Message {
    with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.2:5061;branch=z9hG4bKrepl1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=ms2\r\n\
             To: <sip:+12065550123@acme.sbc1.example.net:5068;user=phone>\r\n\
             Call-ID: {NEW_CALL_ID}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>\r\n\
             Supported: replaces\r\nReplaces: {replaces}\r\n{extra}"
        ),
        Some(body),
    )
}

/// `Replaces` naming the Teams dialog of `h`: (Call-ID, our tag, Microsoft's tag).
fn replaces_value(call_id: &str, ours: &str, theirs: &str, extra: &str) -> String {
    format!("{call_id};to-tag={ours};from-tag={theirs}{extra}")
}

fn tag_of(name_addr: &str) -> String {
    name_addr
        .split(";tag=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn srtp(commands: &[MediaCommand]) -> Vec<(SrtpKeys, SrtpKeys)> {
    commands
        .iter()
        .filter_map(|c| match c {
            MediaCommand::SetSrtp {
                leg: LegSide::Teams,
                inbound: Some(i),
                outbound: Some(o),
            } => Some((i.clone(), o.clone())),
            _ => None,
        })
        .collect()
}

fn crypto_key(sdp: &str) -> String {
    sdp.split("inline:")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .to_owned()
}

fn carrier_outputs(h: &Harness) -> usize {
    h.out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::SendRequest {
                    leg: LegId::Carrier,
                    ..
                } | Output::SendResponse {
                    leg: LegId::Carrier,
                    ..
                } | Output::SendAck {
                    leg: LegId::Carrier,
                    ..
                }
            )
        })
        .count()
}

fn carrier_bye(h: &Harness) -> Message {
    let ok = h
        .all
        .iter()
        .find_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } if parse(msg).status() == Some(200) => Some(parse(msg)),
            _ => None,
        })
        .unwrap();
    peer_in_dialog_request(
        "BYE",
        2,
        "carrier-call-1@10.0.0.1",
        &header(&ok, HeaderName::From),
        &header(&ok, HeaderName::To),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye",
    )
}

fn new_dialog_ack() -> Message {
    with_body(
        &format!(
            "ACK sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.2:5061;branch=z9hG4bKrack\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=ms2\r\n\
             To: <sip:+12065550123@acme.sbc1.example.net:5068;user=phone>;tag=x\r\n\
             Call-ID: {NEW_CALL_ID}\r\nCSeq: 1 ACK\r\n"
        ),
        None,
    )
}

/// Answered PSTN -> Teams call: (harness, our INVITE to Teams, our tag, the SDP we offered).
fn inbound_confirmed() -> (Harness, SentReq, String) {
    let (h, invite) = answered_inbound();
    let ours = tag_of(&header(&invite.msg, HeaderName::From));
    (h, invite, ours)
}

/// Row 22 (and 41, 43): PSTN -> Teams call, Microsoft replaces the Teams dialog.
#[test]
fn row22_invite_with_replaces_takes_over_the_teams_leg_of_a_pstn_to_teams_call() {
    let (mut h, invite, ours) = inbound_confirmed();
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    let first_srtp = srtp(
        &h.all
            .iter()
            .filter_map(|o| match o {
                Output::Media(c) => Some(c.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
    );
    let (old_inbound, old_outbound) = first_srtp.last().cloned().unwrap();
    let old_offer = body(&invite.msg);

    let msg = replaces_invite(
        &replaces_value(&old_call_id, &ours, "ms1", ""),
        &new_dialog_sdp(),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg,
    });

    // 200 with our answer: same Teams-side port (row 41), a new key (row 43).
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(6000)));
    assert_eq!(header(&ok, HeaderName::CallId), NEW_CALL_ID);
    let new_tag = to_tag(&ok).unwrap();
    assert_ne!(new_tag, ours);
    assert_eq!(
        header(&ok, HeaderName::Contact),
        "<sip:+12065550123@acme.sbc1.example.net:5068;transport=tls>"
    );
    let answer = body(&ok);
    assert!(answer.contains("m=audio 30000 RTP/SAVP 0 "), "{answer}");
    assert!(answer.contains("c=IN IP4 198.51.100.10"), "{answer}");
    assert!(answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert_ne!(crypto_key(&answer), crypto_key(&old_offer));

    // Media: the new dialog's address and keys, fresh contexts both ways.
    let media = h.media();
    assert!(media.contains(&MediaCommand::SetRemote {
        leg: LegSide::Teams,
        rtp: "52.112.9.9:50100".parse().unwrap(),
        rtcp: None,
        rtcp_mux: true,
    }));
    let (inbound, outbound) = srtp(&media).remove(0);
    assert_eq!(inbound.key.to_base64(), NEW_KEY_B64);
    assert_eq!(outbound.key.to_base64(), crypto_key(&answer));
    assert_ne!(inbound, old_inbound);
    assert_ne!(outbound, old_outbound);

    // RFC 3891 §3: we end the replaced dialog; the carrier hears nothing.
    let bye = h.request(Method::Bye);
    assert_eq!(bye.leg, LegId::Teams);
    assert_eq!(header(&bye.msg, HeaderName::CallId), old_call_id);
    assert_eq!(tag_of(&header(&bye.msg, HeaderName::From)), ours);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("ms1"));
    assert_eq!(carrier_outputs(&h), 0);
    assert!(!h.finished());

    // The ACK of the new dialog and the old dialog's 200 change nothing.
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: new_dialog_ack(),
    });
    assert!(h.out.is_empty(), "{:#?}", h.out);
    h.respond(&bye, 200, "ms1", &[], None);
    assert!(h.out.is_empty(), "{:#?}", h.out);

    // The carrier hangs up: the BYE goes to the new Teams dialog.
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6100),
        msg: carrier_bye(&h),
    });
    h.response(200);
    let bye = h.request(Method::Bye);
    assert_eq!(bye.leg, LegId::Teams);
    assert_eq!(header(&bye.msg, HeaderName::CallId), NEW_CALL_ID);
    assert_eq!(tag_of(&header(&bye.msg, HeaderName::From)), new_tag);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("ms2"));
    assert_eq!(
        bye.target,
        Target::Dialog {
            uri: Bytes::from_static(b"sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls"),
            transport: TransportKind::Tls,
        }
    );
    h.respond(&bye, 200, "ms2", &[], None);
    assert!(h.finished());

    // Row 22: nothing we sent Microsoft carried Replaces.
    for o in &h.all {
        if let Output::SendRequest {
            leg: LegId::Teams,
            msg,
            ..
        }
        | Output::SendResponse {
            leg: LegId::Teams,
            msg,
            ..
        } = o
        {
            assert!(!parse(msg).has_header(&HeaderName::Replaces));
        }
    }
}

#[test]
fn row22_replaces_with_tags_that_do_not_match_gets_481_and_the_call_goes_on() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    for (n, value) in [
        replaces_value(&call_id, "wrong", "ms1", ""),
        replaces_value(&call_id, &ours, "wrong", ""),
        // Tags the wrong way round: to-tag is compared with OUR tag.
        replaces_value(&call_id, "ms1", &ours, ""),
        replaces_value("another-call", &ours, "ms1", ""),
    ]
    .into_iter()
    .enumerate()
    {
        h.input(Input::Request {
            leg: LegId::Teams,
            tx: TxId(6000 + n as u64),
            msg: replaces_invite(&value, &new_dialog_sdp()),
        });
        let (_, tx, refused) = h.response(481);
        assert_eq!(tx, TxId(6000 + n as u64));
        assert!(to_tag(&refused).is_some());
        assert!(h.requests().is_empty() && h.media().is_empty(), "{value}");
    }
    // The old dialog is still the Teams leg.
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6100),
        msg: carrier_bye(&h),
    });
    let bye = h.request(Method::Bye);
    assert_eq!(header(&bye.msg, HeaderName::CallId), call_id);
}

#[test]
fn row22_early_only_replaces_of_a_confirmed_dialog_gets_486() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&call_id, &ours, "ms1", ";early-only"),
            &new_dialog_sdp(),
        ),
    });
    h.response(486);
    assert!(h.requests().is_empty() && h.media().is_empty());
}

#[test]
fn row22_replaces_header_that_does_not_parse_gets_400() {
    let (mut h, invite, _) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(&format!("{call_id};to-tag="), &new_dialog_sdp()),
    });
    h.response(400);
    assert!(h.requests().is_empty() && h.media().is_empty());
}

#[test]
fn row22_replacing_offer_without_the_carriers_codec_gets_488_and_keeps_the_old_leg() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    // The call runs PCMU (the first codec both sides took); the new dialog offers PCMA only.
    let pcma_only = new_dialog_sdp()
        .replace("RTP/SAVP 0 8 101", "RTP/SAVP 8 101")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(&replaces_value(&call_id, &ours, "ms1", ""), &pcma_only),
    });
    h.response(488);
    assert!(h.requests().is_empty() && h.media().is_empty());
    assert_eq!(carrier_outputs(&h), 0, "the carrier leg is untouched");
}

#[test]
fn row22_replaces_while_a_transfer_is_in_progress_gets_491() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    let refer = with_body(
        &format!(
            "REFER sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKrefer1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 REFER\r\n\
             Refer-To: <sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>\r\n",
            header(&invite.msg, HeaderName::From),
        ),
        None,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg: refer,
    });
    h.response(202);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&call_id, &ours, "ms1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.response(491);
    assert!(h.requests().is_empty() && h.media().is_empty());
}

/// PSTN -> Teams call ringing at Microsoft (180 on early dialog `ms1`): our INVITE, our tag.
fn inbound_ringing(setup: CallSetup, body: Option<&str>) -> (Harness, SentReq, String) {
    let mut h = Harness::inbound(setup, carrier_invite(body));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    h.response(180);
    let ours = tag_of(&header(&invite.msg, HeaderName::From));
    (h, invite, ours)
}

/// Row 22, RFC 3891 §3: Microsoft replaces an early dialog of our ringing INVITE (a dialog
/// we initiated, the only kind of early dialog on our Teams leg). The new dialog answers the
/// call: Microsoft gets our 200 with SDES under a fresh key on our Teams port, the carrier its
/// 200 with the matching answer (its own payload numbers), the media follows the new dialog,
/// and our INVITE is cancelled; its 487 reaches nobody, the call goes on in the new dialog.
#[test]
fn row22_replaces_of_an_early_dialog_of_our_invite_answers_the_call_and_cancels_the_invite() {
    let (mut h, invite, ours) = inbound_ringing(setup(), Some(&carrier_sdp()));
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&old_call_id, &ours, "ms1", ";early-only"),
            &new_dialog_sdp(),
        ),
    });
    let responses = h.responses();
    let teams_ok = responses
        .iter()
        .find(|(leg, _, _)| *leg == LegId::Teams)
        .expect("200 to Microsoft");
    assert_eq!((teams_ok.1, teams_ok.2.status()), (TxId(6000), Some(200)));
    assert_eq!(header(&teams_ok.2, HeaderName::CallId), NEW_CALL_ID);
    let answer = body(&teams_ok.2);
    assert!(
        answer.contains("m=audio 30000 RTP/SAVP 0 8 101"),
        "{answer}"
    );
    assert!(answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert_ne!(crypto_key(&answer), crypto_key(&body(&invite.msg)));
    let carrier_ok = responses
        .iter()
        .find(|(leg, _, _)| *leg == LegId::Carrier)
        .expect("200 to the carrier");
    assert_eq!(
        (carrier_ok.1, carrier_ok.2.status()),
        (TxId(1000), Some(200))
    );
    let to_carrier = body(&carrier_ok.2);
    assert!(
        to_carrier.contains("m=audio 20000 RTP/AVP 0 8 101"),
        "{to_carrier}"
    );
    assert!(!to_carrier.contains("crypto"), "{to_carrier}");

    let cancel = h.request(Method::Cancel);
    assert_eq!(cancel.target, Target::TeamsProxy(0));
    assert_eq!(header(&cancel.msg, HeaderName::CallId), old_call_id);
    let media = h.media();
    for remote in [
        MediaCommand::SetRemote {
            leg: LegSide::Teams,
            rtp: "52.112.9.9:50100".parse().unwrap(),
            rtcp: None,
            rtcp_mux: true,
        },
        MediaCommand::SetRemote {
            leg: LegSide::Carrier,
            rtp: "10.0.0.1:40000".parse().unwrap(),
            rtcp: Some("10.0.0.1:40001".parse().unwrap()),
            rtcp_mux: false,
        },
    ] {
        assert!(media.contains(&remote), "{remote:?} in {media:?}");
    }
    let (inbound, outbound) = srtp(&media).remove(0);
    assert_eq!(inbound.key.to_base64(), NEW_KEY_B64);
    assert_eq!(outbound.key.to_base64(), crypto_key(&answer));
    assert!(media
        .iter()
        .any(|c| matches!(c, MediaCommand::SetPayloadMap { .. })));
    assert!(h
        .records()
        .iter()
        .any(|r| matches!(r, CallRecord::Answered { .. })));

    // Microsoft ends the replaced INVITE; nobody hears of it.
    h.respond(&invite, 487, "ms1", &[], None);
    assert!(h.responses().is_empty() && h.requests().is_empty());
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: new_dialog_ack(),
    });
    assert!(h.out.is_empty(), "{:#?}", h.out);
    // The call lives in the new dialog: Microsoft's BYE there ends it.
    let to = header(&teams_ok.2, HeaderName::To);
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        NEW_CALL_ID,
        "<sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone>;tag=ms2",
        &to,
        "SIP/2.0/TLS 52.114.1.2:5061;branch=z9hG4bKrbye",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6001),
        msg: bye,
    });
    let (leg, tx, _) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(6001)));
    assert_eq!(h.request(Method::Bye).leg, LegId::Carrier);
}

/// The replaced INVITE answers 200 crossing our CANCEL: that dialog is ACKed and released
/// with BYE on its own Call-ID; the call stays with the new dialog.
#[test]
fn row22_a_2xx_of_the_replaced_invite_crossing_the_cancel_is_released() {
    let (mut h, invite, ours) = inbound_ringing(setup(), Some(&carrier_sdp()));
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&old_call_id, &ours, "ms1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.request(Method::Cancel);
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
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(header(&acks[0].2, HeaderName::CallId), old_call_id);
    let bye = h.request(Method::Bye);
    assert_eq!(header(&bye.msg, HeaderName::CallId), old_call_id);
    assert!(h.responses().is_empty() && h.media().is_empty());
}

/// RFC 3891 §3 refusals around early dialogs: a `from-tag` that is no early dialog of our
/// INVITE, or our tag wrong: 481 and the call keeps ringing; an early dialog of a Teams ->
/// PSTN call (Microsoft initiated it): 481; a carrier that made no offer (delayed offer):
/// 488. Nothing is cancelled and the carrier hears nothing.
#[test]
fn row22_replaces_of_early_dialogs_we_cannot_take_over_is_refused() {
    let (mut h, invite, ours) = inbound_ringing(setup(), Some(&carrier_sdp()));
    let call_id = header(&invite.msg, HeaderName::CallId);
    for (replaces, status) in [
        (replaces_value(&call_id, &ours, "ms9", ""), 481),
        (replaces_value(&call_id, "nottags", "ms1", ""), 481),
    ] {
        h.input(Input::Request {
            leg: LegId::Teams,
            tx: TxId(6000),
            msg: replaces_invite(&replaces, &new_dialog_sdp()),
        });
        let (leg, _, _) = h.response(status);
        assert_eq!(leg, LegId::Teams);
        assert!(h.requests().is_empty() && h.media().is_empty());
    }

    let (mut h, invite, ours) = inbound_ringing(setup(), None);
    let call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&call_id, &ours, "ms1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.response(488);
    assert!(h.requests().is_empty() && h.media().is_empty());

    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let to_carrier = h.request(Method::Invite);
    h.respond(&to_carrier, 180, "c1", &[], None);
    let (_, _, ringing) = h.response(180);
    let ours = to_tag(&ringing).unwrap();
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value("teams-call-1", &ours, "t1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.response(481);
    assert!(h.requests().is_empty() && h.media().is_empty());
}

/// No ACK for our 200 to the new dialog: the old one is already released, so the call ends
/// with BYE on the new Teams dialog and on the carrier leg.
#[test]
fn row22_missing_ack_for_the_replacing_dialog_ends_the_call() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&call_id, &ours, "ms1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.response(200);
    h.advance(Duration::from_secs(32));
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: TxId(6000),
        reason: TxFailure::AckTimeout,
    });
    let byes: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .map(|r| (r.leg, header(&r.msg, HeaderName::CallId)))
        .collect();
    assert!(
        byes.contains(&(LegId::Teams, NEW_CALL_ID.to_owned())),
        "{byes:?}"
    );
    assert!(
        byes.iter().any(|(leg, _)| *leg == LegId::Carrier),
        "{byes:?}"
    );
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Ended {
            reason: EndReason::AckTimeout,
            ..
        }
    )));
}

/// Row 22 on a Teams -> PSTN call: the Teams dialog is the one Microsoft opened (its Call-ID,
/// our tag in its To).
#[test]
fn row22_invite_with_replaces_takes_over_the_teams_leg_of_a_teams_to_pstn_call() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        200,
        "pstn1",
        &[("Contact", "<sip:+14255550100@10.0.0.1:5060>")],
        Some(&carrier_sdp()),
    );
    let (_, _, ok) = h.response(200);
    let ours = to_tag(&ok).unwrap();
    let ack = with_body(
        &format!(
            "ACK sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtack\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1\r\n\
             To: {}\r\nCall-ID: teams-call-1\r\nCSeq: 1 ACK\r\n",
            header(&ok, HeaderName::To)
        ),
        None,
    );
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack,
    });

    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value("teams-call-1", &ours, "t1", ""),
            &new_dialog_sdp(),
        ),
    });
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(6000));
    let answer = body(&ok);
    assert!(answer.contains("m=audio 30000 RTP/SAVP 0 "), "{answer}");
    let (inbound, _) = srtp(&h.media()).remove(0);
    assert_eq!(inbound.key.to_base64(), NEW_KEY_B64);
    let bye = h.request(Method::Bye);
    assert_eq!(
        (bye.leg, header(&bye.msg, HeaderName::CallId)),
        (LegId::Teams, "teams-call-1".to_owned())
    );
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("t1"));
    assert_eq!(tag_of(&header(&bye.msg, HeaderName::From)), ours);
    assert_eq!(carrier_outputs(&h), 0);
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: new_dialog_ack(),
    });
    assert!(h.out.is_empty(), "{:#?}", h.out);

    // The carrier (callee here) hangs up: BYE on the new Teams dialog.
    let carrier_bye = peer_in_dialog_request(
        "BYE",
        1,
        &header(&invite.msg, HeaderName::CallId),
        &format!("{};tag=pstn1", header(&invite.msg, HeaderName::To)),
        &header(&invite.msg, HeaderName::From),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye",
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6100),
        msg: carrier_bye,
    });
    let bye = h.request(Method::Bye);
    assert_eq!(
        (bye.leg, header(&bye.msg, HeaderName::CallId)),
        (LegId::Teams, NEW_CALL_ID.to_owned())
    );
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("ms2"));
}

/// A request on a Teams Call-ID the call has no dialog for (a refused Replaces' Call-ID the
/// driver still routes here) is never taken for the current dialog.
#[test]
fn request_on_an_unknown_teams_call_id_gets_481() {
    let (mut h, _, _) = inbound_confirmed();
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        NEW_CALL_ID,
        "<sip:+14255550199@sip.pstnhub.microsoft.com;user=phone>;tag=ms2",
        "<sip:+12065550123@acme.sbc1.example.net;user=phone>;tag=nope",
        "SIP/2.0/TLS 52.114.1.2:5061;branch=z9hG4bKstray",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: bye,
    });
    h.response(481);
    assert!(h.requests().is_empty() && !h.finished());
}

/// A re-INVITE in progress (the carrier's hold relayed to Teams, its answer still awaited):
/// the new dialog's offer would race it, so 491 (RFC 3261 §14.2).
#[test]
fn row22_replaces_while_a_reinvite_is_in_progress_gets_491() {
    let (mut h, invite, ours) = inbound_confirmed();
    let call_id = header(&invite.msg, HeaderName::CallId);
    let ok = carrier_ack(&h);
    let hold = with_body(
        &format!(
            "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKchold\r\nMax-Forwards: 70\r\n\
             From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: {}\r\n\
             Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 2 INVITE\r\n\
             Contact: <sip:2065550123@10.0.0.1:5060>\r\n",
            header(&ok, HeaderName::To)
        ),
        Some(
            &carrier_sdp()
                .replace("o=carrier 1 1 ", "o=carrier 1 2 ")
                .replace("a=sendrecv", "a=sendonly"),
        ),
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(5000),
        msg: hold,
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Teams, "the hold is relayed to Teams");
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(
            &replaces_value(&call_id, &ours, "ms1", ""),
            &new_dialog_sdp(),
        ),
    });
    h.response(491);
    assert!(h.requests().is_empty() && h.media().is_empty());
}

/// Media bypass (rows 22, 41): the replacing dialog's answer is ICE-lite on the same address
/// and port, and the media core answers STUN for the new dialog's ufrag.
#[test]
fn row22_replaces_on_a_bypass_trunk_answers_ice_lite_on_the_same_port() {
    let mut bypass = setup();
    bypass.teams.ice = Some(crate::sdp::IceCredentials::generate());
    let mut h = Harness::inbound(bypass, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    let teams_answer = format!(
        "{}a=ice-ufrag:oldU\r\na=ice-pwd:oldpasswordoldpassword12\r\n",
        teams_sdp()
    );
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_answer),
    );
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    let ours = tag_of(&header(&invite.msg, HeaderName::From));
    let call_id = header(&invite.msg, HeaderName::CallId);
    let offer = format!(
        "{}a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\n\
         a=candidate:1 1 UDP 2130706431 52.112.9.9 50100 typ host\r\n",
        new_dialog_sdp()
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: replaces_invite(&replaces_value(&call_id, &ours, "ms1", ""), &offer),
    });
    let (_, _, ok) = h.response(200);
    let answer = body(&ok);
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("m=audio 30000 RTP/SAVP"), "{answer}");
    assert!(
        answer.contains(" 198.51.100.10 30000 typ host"),
        "our candidate is the same address and port: {answer}"
    );
    assert!(h.media().iter().any(|c| matches!(
        c,
        MediaCommand::EnableIceLite {
            leg: LegSide::Teams,
            remote_ufrag: Some(u),
            ..
        } if u == "newU"
    )));
}

/// Replaces from the carrier side is not interpreted (only Microsoft's is, row 22): with
/// `Require: replaces` the carrier gets 420 naming it (RFC 3261 §8.2.2.3) and Teams gets
/// nothing; without it the header is dropped like any carrier header (profile_rows row 22).
#[test]
fn row22_carrier_invite_requiring_replaces_gets_420_and_nothing_reaches_teams() {
    let invite = with_body(
        "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-2@10.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:2065550123@10.0.0.1:5060>\r\n\
         Replaces: carrier-call-1@10.0.0.1;to-tag=a;from-tag=b\r\nRequire: replaces\r\n",
        Some(&carrier_sdp()),
    );
    let h = Harness::inbound(setup(), invite);
    let (leg, _, refused) = h.response(420);
    assert_eq!(leg, LegId::Carrier);
    assert_eq!(
        header(&refused, HeaderName::from_wire(b"Unsupported")),
        "replaces"
    );
    assert!(h.requests().is_empty());
}

/// Row 42 with row 22: the INVITE with Replaces opens a new session whose timer is the one it
/// asks for; Microsoft refreshes (`refresher=uac`) and, when it never does, the call ends
/// with BYE on the new dialog and the carrier leg.
#[test]
fn row42_replacing_dialog_gets_the_session_timer_its_invite_asks_for() {
    let (mut h, invite, ours) = inbound_confirmed();
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    let msg = replaces_invite_with(
        &replaces_value(&old_call_id, &ours, "ms1", ""),
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        &new_dialog_sdp(),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6100),
        msg,
    });
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(6100));
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uac");
    assert!(ok.has_token(&HeaderName::Require, "timer"));
    assert_eq!(h.armed(TimerKind::SessionRefresh(LegId::Teams)), None);
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: new_dialog_ack(),
    });
    h.fire(TimerKind::SessionExpiry(LegId::Teams));
    let byes: Vec<(LegId, String)> = h
        .requests()
        .iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .map(|r| (r.leg, header(&r.msg, HeaderName::CallId)))
        .collect();
    assert!(
        byes.contains(&(LegId::Teams, NEW_CALL_ID.to_owned())),
        "{byes:?}"
    );
    assert!(
        byes.iter().any(|(leg, _)| *leg == LegId::Carrier),
        "{byes:?}"
    );
}
