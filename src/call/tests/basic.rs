//! Both directions' basic flows, CANCEL, BYE from each side, delayed offer.

use super::*;

#[test]
fn inbound_basic_flow_invite_18x_200_ack_bye() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    assert!(matches!(
        h.records()[0],
        CallRecord::Attempted {
            direction: Direction::Inbound
        }
    ));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Teams);
    assert_eq!(invite.target, Target::TeamsProxy(0));
    // Nothing of the carrier's topology crosses.
    let call_id = header(&invite.msg, HeaderName::CallId);
    assert_ne!(call_id, "carrier-call-1@10.0.0.1");
    assert_eq!(h.call.call_id(LegId::Teams), call_id.as_bytes());
    assert_eq!(
        h.call.call_id(LegId::Carrier),
        &b"carrier-call-1@10.0.0.1"[..]
    );
    assert!(!invite.msg.has_header(&HeaderName::RecordRoute));
    assert!(!invite.msg.has_header(&HeaderName::PAssertedIdentity));
    assert!(!String::from_utf8_lossy(invite.msg.bytes()).contains("10.0.0."));
    let via = invite.msg.top_via().unwrap();
    assert_eq!(&via.transport[..], b"TLS");
    assert_eq!(&via.host[..], b"acme.sbc1.example.net");
    assert!(via.has_rfc3261_branch());
    assert_eq!(invite.msg.cseq().unwrap().seq, 1);
    let offer = body(&invite.msg);
    assert!(offer.contains("m=audio 30000 RTP/SAVP"), "{offer}");
    assert!(offer.contains("c=IN IP4 198.51.100.10"));
    assert!(offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(offer.contains("|2^31"));
    assert!(offer.contains("a=rtcp-mux"));

    // 100 from Teams: nothing to relay (the transaction layer already sent our 100).
    h.respond(&invite, 100, "", &[], None);
    assert!(h.responses().is_empty());
    assert!(h.out.iter().any(|o| matches!(
        o,
        Output::CancelTimer {
            kind: TimerKind::HopTimeout
        }
    )));

    // 180 without SDP is relayed without SDP, with our tag and our Contact.
    h.respond(&invite, 180, "ms1", &[], None);
    let (leg, tx, ringing) = h.response(180);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(1000)));
    assert!(ringing.body().is_empty());
    let carrier_tag = to_tag(&ringing).unwrap();
    assert_ne!(carrier_tag, "ms1");
    assert_eq!(
        header(&ringing, HeaderName::Contact),
        "<sip:+14255550100@192.0.2.10:5060>"
    );

    // 183 with SDP: early media answer to the carrier, media set up.
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp()));
    let (_, _, progress) = h.response(183);
    let early = body(&progress);
    assert!(early.contains("m=audio 20000 RTP/AVP"), "{early}");
    assert!(!early.contains("crypto"));
    assert_eq!(to_tag(&progress).unwrap(), carrier_tag);
    assert!(h.media().iter().any(|c| matches!(
        c,
        MediaCommand::SetRemote {
            leg: LegSide::Teams,
            ..
        }
    )));

    // 200: ACK to Teams at once, then 200 to the carrier with the answer.
    h.advance(Duration::from_millis(2500));
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
    let (ack_leg, ack_target, ack) = &acks[0];
    assert_eq!(*ack_leg, LegId::Teams);
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    assert_eq!(to_tag(ack).as_deref(), Some("ms1"));
    assert_eq!(header(ack, HeaderName::CallId), call_id);
    assert_eq!(
        ack.request_uri().unwrap().raw(),
        &b"sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls"[..]
    );
    assert!(matches!(
        ack_target,
        Target::Dialog {
            transport: TransportKind::Tls,
            ..
        }
    ));
    let (_, _, ok) = h.response(200);
    let answer = body(&ok);
    assert!(answer.contains("c=IN IP4 192.0.2.10"));
    assert!(answer.contains("m=audio 20000 RTP/AVP 0 8 101"), "{answer}");
    assert_eq!(to_tag(&ok).unwrap(), carrier_tag);
    let media = h.media();
    assert!(media.contains(&MediaCommand::SetRemote {
        leg: LegSide::Teams,
        rtp: "52.112.1.1:49152".parse().unwrap(),
        rtcp: None,
        rtcp_mux: true,
    }));
    assert!(media.contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.1:40000".parse().unwrap(),
        rtcp: Some("10.0.0.1:40001".parse().unwrap()),
        rtcp_mux: false,
    }));
    let srtp = media
        .iter()
        .find_map(|c| match c {
            MediaCommand::SetSrtp {
                leg: LegSide::Teams,
                inbound,
                outbound,
            } => Some((inbound.clone(), outbound.clone())),
            _ => None,
        })
        .expect("SRTP keys set");
    // Teams' key is our inbound key; the key we offered is our outbound key.
    assert_eq!(srtp.0.unwrap().key.to_base64(), TEAMS_KEY_B64);
    let offered_key = offer
        .split("inline:")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(srtp.1.unwrap().key.to_base64(), offered_key);
    assert_eq!(
        media
            .iter()
            .filter(|c| matches!(c, MediaCommand::SetPayloadMap { .. }))
            .count(),
        2
    );
    assert!(h.records().contains(&CallRecord::Answered {
        setup_time: Duration::from_millis(2500)
    }));

    // Carrier ACK, then BYE from the carrier.
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    assert!(h.out.iter().any(|o| matches!(
        o,
        Output::CancelTimer {
            kind: TimerKind::AckWait
        }
    )));
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        "carrier-call-1@10.0.0.1",
        "<sip:2065550123@10.0.0.1>;tag=c1",
        &format!("<sip:+14255550100@192.0.2.10>;tag={carrier_tag}"),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbye1",
    );
    h.advance(Duration::from_secs(60));
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(2000),
        msg: bye,
    });
    let (leg, tx, _) = h.response(200);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(2000)));
    let teams_bye = h.request(Method::Bye);
    assert_eq!(teams_bye.leg, LegId::Teams);
    assert_eq!(teams_bye.msg.cseq().unwrap().seq, 2);
    assert_eq!(header(&teams_bye.msg, HeaderName::CallId), call_id);
    assert_eq!(to_tag(&teams_bye.msg).as_deref(), Some("ms1"));
    assert!(h.media().contains(&MediaCommand::Remove));
    assert!(h.records().contains(&CallRecord::Ended {
        reason: EndReason::ByeFromCarrier,
        duration: Duration::from_secs(60),
    }));
    assert!(!h.finished(), "waits for the BYE's answer");
    h.respond(&teams_bye, 200, "ms1", &[], None);
    assert!(h.finished());
    assert!(h.call.is_finished());
}

#[test]
fn outbound_basic_flow_teams_to_pstn() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Carrier);
    assert_eq!(invite.target, Target::Carrier(0));
    assert_eq!(
        invite.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@10.0.0.1:5060"[..]
    );
    assert_ne!(header(&invite.msg, HeaderName::CallId), "teams-call-1");
    assert!(!String::from_utf8_lossy(invite.msg.bytes()).contains("pstnhub"));
    assert!(!invite.msg.has_header(&HeaderName::XMsSbc));
    let via = invite.msg.top_via().unwrap();
    assert_eq!(&via.transport[..], b"UDP");
    assert_eq!(&via.host[..], b"192.0.2.10");
    assert_eq!(
        header(&invite.msg, HeaderName::Contact),
        "<sip:+12065550123@192.0.2.10:5060>"
    );
    let offer = body(&invite.msg);
    assert!(offer.contains("m=audio 20000 RTP/AVP"), "{offer}");
    assert!(!offer.contains("crypto"));

    h.respond(&invite, 180, "pstn1", &[], None);
    let (leg, _, ringing) = h.response(180);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(
        header(&ringing, HeaderName::Contact),
        "<sip:+12065550123@acme.sbc1.example.net:5068;transport=tls>"
    );
    assert_eq!(
        header(&ringing, HeaderName::XMsSbc),
        "ExampleCorp/RustSBC/0.1.0"
    );

    h.respond(
        &invite,
        200,
        "pstn1",
        &[("Contact", "<sip:+14255550100@10.0.0.1:5060>")],
        Some(&carrier_sdp()),
    );
    let (ack_leg, ack_target, ack) = h.acks().remove(0);
    assert_eq!(ack_leg, LegId::Carrier);
    assert_eq!(
        ack.request_uri().unwrap().raw(),
        &b"sip:+14255550100@10.0.0.1:5060"[..]
    );
    assert!(matches!(
        ack_target,
        Target::Dialog {
            transport: TransportKind::Udp,
            ..
        }
    ));
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(1000));
    let answer = body(&ok);
    assert!(answer.contains("m=audio 30000 RTP/SAVP"), "{answer}");
    assert!(answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(answer.contains("a=rtcp-mux"));
    let media = h.media();
    let (inbound, outbound) = media
        .iter()
        .find_map(|c| match c {
            MediaCommand::SetSrtp {
                inbound, outbound, ..
            } => Some((inbound.clone().unwrap(), outbound.clone().unwrap())),
            _ => None,
        })
        .unwrap();
    assert_eq!(inbound.key.to_base64(), TEAMS_KEY_B64);
    let our_key = answer
        .split("inline:")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap();
    assert_eq!(outbound.key.to_base64(), our_key);

    // Teams ACKs, then hangs up.
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
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        "teams-call-1",
        "<sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1",
        &header(&ok, HeaderName::To),
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtbye",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(3000),
        msg: bye,
    });
    let (leg, _, bye_ok) = h.response(200);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(
        header(&bye_ok, HeaderName::XMsSbc),
        "ExampleCorp/RustSBC/0.1.0"
    );
    let carrier_bye = h.request(Method::Bye);
    assert_eq!(carrier_bye.leg, LegId::Carrier);
    assert_eq!(
        carrier_bye.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@10.0.0.1:5060"[..]
    );
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Ended {
            reason: EndReason::ByeFromTeams,
            ..
        }
    )));
    h.respond(&carrier_bye, 200, "pstn1", &[], None);
    assert!(h.finished());
}

#[test]
fn bye_from_teams_on_inbound_call_ends_carrier_leg_with_its_route_set() {
    let (mut h, invite) = answered_inbound();
    let teams_ok_to = "<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1";
    let from = header(&invite.msg, HeaderName::From);
    let bye = peer_in_dialog_request(
        "BYE",
        1,
        &header(&invite.msg, HeaderName::CallId),
        teams_ok_to,
        &from,
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKmsbye",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(4000),
        msg: bye,
    });
    let (leg, _, _) = h.response(200);
    assert_eq!(leg, LegId::Teams);
    let carrier_bye = h.request(Method::Bye);
    assert_eq!(carrier_bye.leg, LegId::Carrier);
    // The carrier's dialog as the carrier set it up: its Call-ID, its Contact, its route set.
    assert_eq!(
        header(&carrier_bye.msg, HeaderName::CallId),
        "carrier-call-1@10.0.0.1"
    );
    assert_eq!(
        carrier_bye.msg.request_uri().unwrap().raw(),
        &b"sip:2065550123@10.0.0.1:5060"[..]
    );
    assert_eq!(
        header(&carrier_bye.msg, HeaderName::Route),
        "<sip:10.0.0.99;lr>"
    );
    assert_eq!(
        carrier_bye.target,
        Target::Dialog {
            uri: Bytes::from_static(b"sip:10.0.0.99;lr"),
            transport: TransportKind::Udp
        }
    );
    assert_eq!(to_tag(&carrier_bye.msg).as_deref(), Some("c1"));
    h.input(Input::TxFailed {
        leg: LegId::Carrier,
        tx: carrier_bye.tx,
        reason: TxFailure::Timeout,
    });
    assert!(h.finished(), "a BYE that times out still ends the call");
}

#[test]
fn cancel_from_carrier_before_answer() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    let cancel = with_body(
        "CANCEL sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 CANCEL\r\n",
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(1001),
        msg: cancel,
    });
    let (_, tx, _) = h.response(200);
    assert_eq!(tx, TxId(1001));
    let (_, tx, _) = h.response(487);
    assert_eq!(tx, TxId(1000));
    let teams_cancel = h.request(Method::Cancel);
    assert_eq!(teams_cancel.leg, LegId::Teams);
    assert_eq!(teams_cancel.target, Target::TeamsProxy(0));
    assert_eq!(
        teams_cancel.msg.top_via().unwrap().branch,
        invite.msg.top_via().unwrap().branch,
        "CANCEL matches the INVITE's transaction"
    );
    assert_eq!(teams_cancel.msg.cseq().unwrap().seq, 1);
    assert_eq!(
        header(&teams_cancel.msg, HeaderName::XMsSbc),
        "ExampleCorp/RustSBC/0.1.0"
    );
    assert!(h.media().contains(&MediaCommand::Remove));
    assert!(h.records().contains(&CallRecord::Failed {
        status: 487,
        class: StatusClass::ClientError,
        reason: EndReason::CancelledByCaller
    }));
    assert!(!h.finished());
    h.respond(&teams_cancel, 200, "ms1", &[], None);
    assert!(!h.finished());
    h.respond(&invite, 487, "ms1", &[], None);
    assert!(h.finished());
}

#[test]
fn cancel_before_any_response_waits_for_a_provisional() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    let cancel = with_body(
        "CANCEL sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\nMax-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: 1 CANCEL\r\n",
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(1001),
        msg: cancel,
    });
    h.response(487);
    assert!(
        h.requests().is_empty(),
        "RFC 3261 §9.1: no CANCEL before a provisional"
    );
    h.respond(&invite, 100, "", &[], None);
    h.request(Method::Cancel);
    // A 200 that crosses the CANCEL is ACKed and released.
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:ms@sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    assert_eq!(h.acks().len(), 1);
    let bye = h.request(Method::Bye);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("ms1"));
    assert!(h.responses().is_empty(), "the caller already has its 487");
    assert!(!h.finished());
    h.respond(&bye, 200, "ms1", &[], None);
    assert!(h.finished());
}

#[test]
fn delayed_offer_from_carrier_becomes_early_offer_to_teams() {
    let mut h = Harness::inbound(setup(), carrier_invite(None));
    let invite = h.request(Method::Invite);
    let offer = body(&invite.msg);
    // Row 21: the SBC offers to Teams itself, from the trunk's codec list.
    assert!(
        offer.contains("m=audio 30000 RTP/SAVP 0 8 9 18 101 13"),
        "{offer}"
    );
    assert!(offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"));
    // A 183 with SDP cannot carry an offer to the carrier unreliably: relayed without SDP.
    h.respond(&invite, 183, "ms1", &[], Some(&teams_sdp()));
    assert!(h.response(183).2.body().is_empty());
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
    // Row 28: Teams is ACKed at once, before the carrier has answered anything.
    let ack_at = h
        .out
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::SendAck {
                    leg: LegId::Teams,
                    ..
                }
            )
        })
        .unwrap();
    let ok_at = h
        .out
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::SendResponse {
                    leg: LegId::Carrier,
                    ..
                }
            )
        })
        .unwrap();
    assert!(ack_at < ok_at);
    let (_, _, ok) = h.response(200);
    let carrier_offer = body(&ok);
    assert!(
        carrier_offer.contains("m=audio 20000 RTP/AVP 0 8 101"),
        "{carrier_offer}"
    );
    assert!(!carrier_offer.contains("crypto"));
    let media = h.media();
    assert!(media
        .iter()
        .any(|c| matches!(c, MediaCommand::SetSrtp { .. })));
    assert!(!media.iter().any(|c| matches!(
        c,
        MediaCommand::SetRemote {
            leg: LegSide::Carrier,
            ..
        }
    )));
    // The carrier's answer arrives in its ACK.
    let ack = carrier_ack_with(&h, Some(&carrier_sdp()));
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    let media = h.media();
    assert!(media.contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.1:40000".parse().unwrap(),
        rtcp: Some("10.0.0.1:40001".parse().unwrap()),
        rtcp_mux: false,
    }));
    assert_eq!(
        media
            .iter()
            .filter(|c| matches!(c, MediaCommand::SetPayloadMap { .. }))
            .count(),
        2
    );
}

#[test]
fn reinvite_refresh_is_answered_with_the_same_sdp() {
    let (mut h, invite) = answered_inbound();
    let first_offer = body(&invite.msg);
    let reinvite = with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKre1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: 5 INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId)
        ),
        Some(&teams_sdp()),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg: reinvite,
    });
    let (leg, _, ok) = h.response(200);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(
        body(&ok),
        first_offer,
        "same media address and origin version (row 41)"
    );
    assert!(h.media().contains(&MediaCommand::SetHold {
        leg: LegSide::Teams,
        on_hold: false
    }));
    assert!(
        h.requests().is_empty(),
        "a refresh does not cross to the carrier"
    );
}

#[test]
fn row26_media_follows_the_200_of_another_fork() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "fork1", &[], None);
    h.respond(&invite, 180, "fork2", &[], None);
    assert_eq!(h.response(180).0, LegId::Carrier);
    let fork2_sdp = teams_sdp().replace("52.112.1.1", "52.112.2.2");
    h.respond(&invite, 183, "fork2", &[], Some(&fork2_sdp));
    assert!(h.media().contains(&MediaCommand::SetRemote {
        leg: LegSide::Teams,
        rtp: "52.112.2.2:49152".parse().unwrap(),
        rtcp: None,
        rtcp_mux: true,
    }));
    let (_, _, early) = h.response(183);
    h.respond(
        &invite,
        200,
        "fork1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    assert!(h.media().contains(&MediaCommand::SetRemote {
        leg: LegSide::Teams,
        rtp: "52.112.1.1:49152".parse().unwrap(),
        rtcp: None,
        rtcp_mux: true,
    }));
    let (_, _, ok) = h.response(200);
    // The carrier sees one dialog (one To tag) and the same answer (no o= version change).
    assert_eq!(to_tag(&ok), to_tag(&early));
    assert_eq!(body(&ok), body(&early));
    assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("fork1"));
    // A 200 from the other fork is ACKed and released; the retransmitted 200 only re-ACKed.
    h.respond(
        &invite,
        200,
        "fork2",
        &[(
            "Contact",
            "<sip:f2@sip-du-b.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&fork2_sdp),
    );
    assert_eq!(h.acks().len(), 1);
    let bye = h.request(Method::Bye);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("fork2"));
    assert!(h.responses().is_empty() && h.media().is_empty());
    h.respond(
        &invite,
        200,
        "fork1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    assert_eq!(h.acks().len(), 1);
    assert!(
        h.requests().is_empty(),
        "a retransmitted 200 of the answered fork gets its ACK only"
    );
}

// Hold/resume re-INVITEs (relayed across the legs) are tested in tests/reinvite.rs.

#[test]
fn unsupported_required_extension_is_refused_with_420() {
    let invite = String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes()).replacen(
        "CSeq: 1 INVITE\r\n",
        "CSeq: 1 INVITE\r\nRequire: 100rel\r\n",
        1,
    );
    let h = Harness::inbound(setup(), parse(invite.as_bytes()));
    let (_, _, resp) = h.response(420);
    assert_eq!(
        header(&resp, HeaderName::from_wire(b"Unsupported")),
        "100rel"
    );
    assert!(h.requests().is_empty());
    assert!(h.finished());
    let failed: Vec<_> = h
        .records()
        .into_iter()
        .filter(|r| matches!(r, CallRecord::Failed { .. }))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(h.out.last(), Some(Output::Finished)));
}

#[test]
fn bypass_trunk_enables_ice_lite_on_the_teams_leg() {
    let mut s = setup();
    s.teams.ice = Some(IceCredentials::new("abcd1234", "abcdefghijklmnopqrstuvwx").unwrap());
    let mut h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    let offer = body(&invite.msg);
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=ice-ufrag:abcd1234"));
    let answer = teams_sdp().replace(
        "a=rtcp-mux",
        "a=rtcp-mux\r\na=ice-ufrag:msuf\r\na=ice-pwd:mspasswordmspasswordmspw",
    );
    h.respond(
        &invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&answer),
    );
    assert!(h.media().contains(&MediaCommand::EnableIceLite {
        leg: LegSide::Teams,
        local_ufrag: "abcd1234".into(),
        local_pwd: "abcdefghijklmnopqrstuvwx".into(),
        remote_ufrag: Some("msuf".into()),
        forks_open: false,
    }));
}

#[test]
fn forward_pai_takes_a_tel_uri() {
    let mut s = setup();
    s.teams.forward_pai = true;
    let invite = String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes()).replace(
        "P-Asserted-Identity: <sip:+12065559999@10.0.0.1>",
        "P-Asserted-Identity: <tel:2065559999;npdi>",
    );
    let h = Harness::inbound(s, parse(invite.as_bytes()));
    let from = h.request(Method::Invite).msg.from().unwrap();
    assert_eq!(
        from.uri.as_sip().unwrap().user.as_deref(),
        Some(&b"+2065559999"[..])
    );
}

#[test]
fn max_forwards_decrements_across_the_b2bua_and_zero_is_refused() {
    let invite = String::from_utf8_lossy(carrier_invite(Some(&carrier_sdp())).bytes())
        .replace("Max-Forwards: 70", "Max-Forwards: 5");
    let h = Harness::inbound(setup(), parse(invite.as_bytes()));
    assert_eq!(h.request(Method::Invite).msg.max_forwards(), Some(4));
    let invite = invite.replace("Max-Forwards: 5", "Max-Forwards: 0");
    let h = Harness::inbound(setup(), parse(invite.as_bytes()));
    h.response(483);
    assert!(h.requests().is_empty());
    assert!(h.finished());
}

/// RFC 3261 §12.1.1: our 18x and 200 to a carrier INVITE carry every Record-Route of it, in
/// order, so record-routing carrier proxies see the ACK and BYE; re-INVITE answers and
/// responses towards Teams carry none (row 17).
#[test]
fn responses_to_a_carrier_invite_echo_its_record_routes_in_order() {
    let invite = carrier_invite(Some(&carrier_sdp()));
    let text = String::from_utf8_lossy(invite.bytes()).replace(
        "Record-Route: <sip:10.0.0.99;lr>\r\n",
        "Record-Route: <sip:edge.carrier.example;lr;ftag=c1>, <sip:10.0.0.99;lr>\r\n\
         Record-Route: <sip:core.carrier.example;lr>\r\n",
    );
    let mut h = Harness::inbound(setup(), parse(text.as_bytes()));
    let teams_invite = h.request(Method::Invite);
    h.respond(&teams_invite, 180, "ms1", &[], None);
    let expected = vec![
        "<sip:edge.carrier.example;lr;ftag=c1>".to_owned(),
        "<sip:10.0.0.99;lr>".to_owned(),
        "<sip:core.carrier.example;lr>".to_owned(),
    ];
    let routes = |m: &Message| -> Vec<String> {
        m.header_values(&HeaderName::RecordRoute)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let (leg, _, ringing) = h.response(180);
    assert_eq!(leg, LegId::Carrier);
    assert_eq!(routes(&ringing), expected);
    h.respond(
        &teams_invite,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    let (_, _, ok) = h.response(200);
    assert_eq!(routes(&ok), expected);
    assert!(!teams_invite.msg.has_header(&HeaderName::RecordRoute));
}
