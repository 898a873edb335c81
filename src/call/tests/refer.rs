//! Transfer by REFER from Microsoft (rows 36-38): byte-exact Refer-To / Referred-By copies,
//! NOTIFY progress, the Teams leg swapped on the same media session, failures reported.

use super::*;
use crate::media::LegSide;

const TEAMS_OK_TO: &str = "<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1";

/// A 400-character Refer-To (row 37 limit) with no user part and `x-m`/`x-t` parameters.
fn long_refer_to() -> String {
    let head = "<sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:fce2a4b8-1c3d-4e5f-8a9b-0c1d2e3f4a5b;x-t=72f988bf-86f1-41af-91ab-2d7cd011db47;x-pad=";
    let tail = ">";
    let pad = "a".repeat(400 - head.len() - tail.len());
    let value = format!("{head}{pad}{tail}");
    assert_eq!(value.len(), 400);
    value
}

const REFERRED_BY: &str = "<sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:0a1b2c3d-0000-4e5f-8a9b-111122223333;x-t=72f988bf-86f1-41af-91ab-2d7cd011db47;x-ti=b1c2d3e4f5a6;x-tt=sip%3A%2B14255550100%40sip.pstnhub.microsoft.com>";

fn refer(h: &Harness, invite: &SentReq, cseq: u32, refer_to: &str, referred_by: &str) -> Message {
    let _ = h;
    with_body(
        &format!(
            "REFER sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKrefer{cseq}\r\nMax-Forwards: 70\r\n\
             From: {TEAMS_OK_TO}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} REFER\r\n\
             Refer-To: {refer_to}\r\nReferred-By: {referred_by}\r\n\
             User-Agent: Microsoft.PSTNHub.SIPProxy v.2024.1.1.1 i.USWE.1\r\n",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId),
        ),
        None,
    )
}

fn teams_bye_on(call_id: &str, to: &str, from: &str, cseq: u32) -> Message {
    peer_in_dialog_request(
        "BYE",
        cseq,
        call_id,
        from,
        to,
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKoldbye",
    )
}

fn notifies(h: &Harness) -> Vec<SentReq> {
    h.requests()
        .into_iter()
        .filter(|r| r.msg.method() == Some(&Method::Notify))
        .collect()
}

/// Microsoft's 200 to a NOTIFY (the next one may go).
fn answer_notify(h: &mut Harness, notify: &SentReq) {
    h.respond(notify, 200, "ms1", &[], None);
}

/// Checks a NOTIFY of the refer subscription and returns its sipfrag status line.
fn sipfrag(notify: &SentReq, subscription_state: &str, call_id: &str) -> String {
    assert_eq!(notify.leg, LegId::Teams);
    assert_eq!(header(&notify.msg, HeaderName::CallId), call_id);
    assert_eq!(header(&notify.msg, HeaderName::Event), "refer");
    assert_eq!(
        header(&notify.msg, HeaderName::from_wire(b"Subscription-State")),
        subscription_state
    );
    assert_eq!(
        header(&notify.msg, HeaderName::ContentType),
        "message/sipfrag;version=2.0"
    );
    body(&notify.msg).trim_end().to_owned()
}

fn srtp_outbound(commands: &[MediaCommand]) -> Vec<SrtpKeys> {
    commands
        .iter()
        .filter_map(|c| match c {
            MediaCommand::SetSrtp {
                leg: LegSide::Teams,
                outbound: Some(k),
                ..
            } => Some(k.clone()),
            _ => None,
        })
        .collect()
}

fn teams_remote(commands: &[MediaCommand]) -> Vec<SocketAddr> {
    commands
        .iter()
        .filter_map(|c| match c {
            MediaCommand::SetRemote {
                leg: LegSide::Teams,
                rtp,
                ..
            } => Some(*rtp),
            _ => None,
        })
        .collect()
}

fn new_leg_sdp() -> String {
    teams_sdp()
        .replace("52.112.1.1", "52.112.9.9")
        .replace("49152", "50100")
        .replace(TEAMS_KEY_B64, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz")
}

/// Answered PSTN -> Teams call, REFER received: (harness, original INVITE, new INVITE).
fn referred(refer_to: &str) -> (Harness, SentReq, SentReq) {
    let (mut h, invite) = answered_inbound();
    let msg = refer(&h, &invite, 1, refer_to, REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg,
    });
    let (leg, tx, _) = h.response(202);
    assert_eq!((leg, tx), (LegId::Teams, TxId(5000)));
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    let call_id = header(&invite.msg, HeaderName::CallId);
    assert_eq!(
        sipfrag(&notify[0], "active;expires=60", &call_id),
        "SIP/2.0 100 Trying"
    );
    let new_invite = h.request(Method::Invite);
    answer_notify(&mut h, &notify[0]);
    (h, invite, new_invite)
}

fn uri_of(name_addr: &str) -> &str {
    name_addr.trim_start_matches('<').trim_end_matches('>')
}

#[test]
fn row37_refer_202_notify_100_and_new_invite_copies_400_char_refer_to_and_referred_by_verbatim() {
    let refer_to = long_refer_to();
    let (_h, invite, new_invite) = referred(&refer_to);
    let msg = &new_invite.msg;
    // Request-URI: the Refer-To URI byte for byte, on the wire (no user part, x-m/x-t kept).
    let wire = String::from_utf8_lossy(msg.bytes()).into_owned();
    let request_line = format!("INVITE {} SIP/2.0\r\n", uri_of(&refer_to));
    assert!(wire.starts_with(&request_line), "{wire}");
    assert_eq!(
        msg.request_uri().unwrap().raw().as_ref(),
        uri_of(&refer_to).as_bytes()
    );
    assert!(wire.contains(&format!("\r\nReferred-By: {REFERRED_BY}\r\n")));
    // Contact = tenant FQDN (row 32); a new dialog (Call-ID, From tag), towards the proxies.
    let contact = header(msg, HeaderName::Contact);
    assert!(
        contact.contains("@acme.sbc1.example.net:5068;transport=tls>"),
        "{contact}"
    );
    assert_eq!(new_invite.target, Target::TeamsProxy(0));
    assert_ne!(
        header(msg, HeaderName::CallId),
        header(&invite.msg, HeaderName::CallId)
    );
    assert_ne!(
        header(msg, HeaderName::From),
        header(&invite.msg, HeaderName::From)
    );
    assert!(header(msg, HeaderName::From)
        .starts_with("<sip:+12065550123@acme.sbc1.example.net;user=phone>;tag="));
    assert!(
        wire.contains("\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER\r\n"),
        "row 36"
    );
    // The offer keeps the media session's Teams-side port, with a new key.
    let sdp = body(msg);
    assert!(sdp.contains("m=audio 30000 RTP/SAVP"), "{sdp}");
    assert!(sdp.contains("a=crypto:"), "{sdp}");
    assert_ne!(
        sdp.lines().find(|l| l.starts_with("a=crypto:")),
        body(&invite.msg)
            .lines()
            .find(|l| l.starts_with("a=crypto:"))
    );
}

#[test]
fn row37_refer_to_with_e164_user_part_and_addr_spec_form_is_copied_too() {
    let (mut h, invite) = answered_inbound();
    let target = "sip:+14255550199@sip.pstnhub.microsoft.com:5061;user=phone";
    let msg = refer(&h, &invite, 1, target, REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg,
    });
    h.response(202);
    let new_invite = h.request(Method::Invite);
    assert_eq!(
        new_invite.msg.request_uri().unwrap().raw().as_ref(),
        target.as_bytes()
    );
}

#[test]
fn row37_refer_without_a_sip_refer_to_is_refused_and_nothing_is_sent() {
    let (mut h, invite) = answered_inbound();
    let msg = refer(&h, &invite, 1, "<tel:+14255550199>", REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg,
    });
    h.response(400);
    assert!(h.requests().is_empty());
}

#[test]
fn row37_row38_notify_100_180_200_swaps_the_teams_leg_on_the_same_media_session() {
    let (mut h, invite, new_invite) = referred(&long_refer_to());
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    let first_keys = srtp_outbound(
        &h.all
            .iter()
            .filter_map(|o| match o {
                Output::Media(c) => Some(c.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(first_keys.len(), 1);

    // 180 with SDP: NOTIFY 180, early media of the new leg (row 38), nothing to the carrier.
    h.respond(
        &new_invite,
        180,
        "ms2",
        &[(
            "Contact",
            "<sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&new_leg_sdp()),
    );
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    assert_eq!(
        sipfrag(&notify[0], "active;expires=60", &old_call_id),
        "SIP/2.0 180 Ringing"
    );
    let media = h.media();
    assert_eq!(
        teams_remote(&media),
        vec!["52.112.9.9:50100".parse().unwrap()]
    );
    let new_keys = srtp_outbound(&media);
    assert_eq!(new_keys.len(), 1);
    assert_ne!(
        new_keys[0], first_keys[0],
        "the new leg gets a new SRTP key"
    );
    assert!(!media.iter().any(|c| matches!(
        c,
        MediaCommand::SetRemote {
            leg: LegSide::Carrier,
            ..
        } | MediaCommand::Remove
    )));
    assert!(h.out.iter().all(|o| !matches!(
        o,
        Output::SendResponse {
            leg: LegId::Carrier,
            ..
        } | Output::SendRequest {
            leg: LegId::Carrier,
            ..
        }
    )));

    // 200 while NOTIFY 180 is still unanswered: ACK, the new leg is the Teams leg, and
    // NOTIFY 200 waits for the 180's response so it cannot overtake it.
    let notify_180 = notify[0].clone();
    h.respond(
        &new_invite,
        200,
        "ms2",
        &[(
            "Contact",
            "<sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&new_leg_sdp()),
    );
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        header(&acks[0].2, HeaderName::CallId),
        header(&new_invite.msg, HeaderName::CallId)
    );
    assert!(notifies(&h).is_empty(), "one NOTIFY transaction at a time");
    answer_notify(&mut h, &notify_180);
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    assert_eq!(
        sipfrag(&notify[0], "terminated;reason=noresource", &old_call_id),
        "SIP/2.0 200 OK"
    );
    assert!(
        notify[0].msg.cseq().unwrap().seq > notify_180.msg.cseq().unwrap().seq,
        "CSeq in sending order"
    );
    assert!(!h.media().contains(&MediaCommand::Remove));
    assert_eq!(
        h.call.call_id(LegId::Teams).as_ref(),
        header(&new_invite.msg, HeaderName::CallId).as_bytes()
    );

    // Microsoft's BYE on the old dialog: 200, only that leg goes.
    let bye = teams_bye_on(
        &old_call_id,
        &header(&invite.msg, HeaderName::From),
        TEAMS_OK_TO,
        2,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5001),
        msg: bye,
    });
    let (_, tx, _) = h.response(200);
    assert_eq!(tx, TxId(5001));
    assert!(h.requests().is_empty());
    assert!(h.media().is_empty());
    assert!(!h.finished());

    // The carrier hangs up later: BYE goes to the new Teams dialog.
    let carrier_to = h
        .all
        .iter()
        .find_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } if parse(msg).status() == Some(200) => Some(header(&parse(msg), HeaderName::To)),
            _ => None,
        })
        .unwrap();
    let carrier_bye = peer_in_dialog_request(
        "BYE",
        2,
        "carrier-call-1@10.0.0.1",
        "<sip:2065550123@10.0.0.1>;tag=c1",
        &carrier_to,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye",
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(5002),
        msg: carrier_bye,
    });
    let teams_bye = h.request(Method::Bye);
    assert_eq!(
        header(&teams_bye.msg, HeaderName::CallId),
        header(&new_invite.msg, HeaderName::CallId)
    );
    assert_eq!(
        teams_bye.msg.request_uri().unwrap().raw().as_ref(),
        b"sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls"
    );
    h.respond(&teams_bye, 200, "ms2", &[], None);
    assert!(h.finished());
}

#[test]
fn row37_failed_new_leg_is_reported_in_notify_and_the_original_call_stays() {
    let (mut h, invite, new_invite) = referred(&long_refer_to());
    let old_call_id = header(&invite.msg, HeaderName::CallId);
    h.respond(&new_invite, 183, "ms2", &[], Some(&new_leg_sdp()));
    assert_eq!(
        teams_remote(&h.media()),
        vec!["52.112.9.9:50100".parse().unwrap()]
    );
    let notify_183 = notifies(&h);
    assert_eq!(notify_183.len(), 1);
    // Microsoft's answer to NOTIFY 183 is lost: its transaction times out, the next goes.
    h.respond(&new_invite, 486, "ms2", &[], None);
    assert!(notifies(&h).is_empty(), "one NOTIFY transaction at a time");
    let media = h.media();
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: notify_183[0].tx,
        reason: TxFailure::Timeout,
    });
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    assert_eq!(
        sipfrag(&notify[0], "terminated;reason=noresource", &old_call_id),
        "SIP/2.0 486 Busy Here"
    );
    answer_notify(&mut h, &notify[0]);
    // Media back to the original Teams leg, with the original keys.
    assert_eq!(
        teams_remote(&media),
        vec!["52.112.1.1:49152".parse().unwrap()]
    );
    assert!(!media.contains(&MediaCommand::Remove));
    assert!(!h.finished());
    assert_eq!(
        h.call.call_id(LegId::Teams).as_ref(),
        old_call_id.as_bytes()
    );

    // A second REFER is accepted again; this one times out -> NOTIFY 408.
    let msg = refer(&h, &invite, 2, &long_refer_to(), REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5003),
        msg,
    });
    h.response(202);
    let notify_100 = notifies(&h);
    assert_eq!(notify_100.len(), 1);
    // No answer from any proxy: each is tried in turn (same dialog, new transaction).
    let mut attempt = h.request(Method::Invite);
    answer_notify(&mut h, &notify_100[0]);
    let call_id = header(&attempt.msg, HeaderName::CallId);
    for index in 0..3 {
        assert_eq!(attempt.target, Target::TeamsProxy(index));
        assert_eq!(header(&attempt.msg, HeaderName::CallId), call_id);
        assert_eq!(attempt.msg.cseq().unwrap().seq, index as u32 + 1);
        assert!(notifies(&h).is_empty() || index == 0);
        h.input(Input::TxFailed {
            leg: LegId::Teams,
            tx: attempt.tx,
            reason: TxFailure::Timeout,
        });
        if index < 2 {
            attempt = h.request(Method::Invite);
        }
    }
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    assert_eq!(
        sipfrag(&notify[0], "terminated;reason=noresource", &old_call_id),
        "SIP/2.0 408 Request Timeout"
    );
    // No early media had taken over: nothing to restore.
    assert!(h.media().is_empty());

    // The original call still ends normally with BYE on the original Teams dialog.
    let bye = teams_bye_on(
        &old_call_id,
        &header(&invite.msg, HeaderName::From),
        TEAMS_OK_TO,
        3,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5004),
        msg: bye,
    });
    h.response(200);
    let carrier_bye = h.request(Method::Bye);
    assert_eq!(carrier_bye.leg, LegId::Carrier);
}

#[test]
fn row37_second_refer_while_one_is_in_progress_gets_491() {
    let (mut h, invite, _new_invite) = referred(&long_refer_to());
    let msg = refer(&h, &invite, 2, &long_refer_to(), REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5005),
        msg,
    });
    h.response(491);
    assert!(h.requests().is_empty());
}

#[test]
fn row37_carrier_hangup_during_transfer_cancels_the_ringing_new_leg() {
    let (mut h, _invite, new_invite) = referred(&long_refer_to());
    h.respond(&new_invite, 180, "ms2", &[], None);
    let carrier_to = h
        .all
        .iter()
        .find_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } if parse(msg).status() == Some(200) => Some(header(&parse(msg), HeaderName::To)),
            _ => None,
        })
        .unwrap();
    let carrier_bye = peer_in_dialog_request(
        "BYE",
        2,
        "carrier-call-1@10.0.0.1",
        "<sip:2065550123@10.0.0.1>;tag=c1",
        &carrier_to,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye",
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(5006),
        msg: carrier_bye,
    });
    let cancel = h.request(Method::Cancel);
    assert_eq!(
        cancel.msg.request_uri().unwrap().raw(),
        new_invite.msg.request_uri().unwrap().raw()
    );
    let bye = h.request(Method::Bye);
    assert_eq!(bye.leg, LegId::Teams);
    h.respond(&bye, 200, "ms1", &[], None);
    assert!(
        !h.finished(),
        "waits for the cancelled INVITE's final answer"
    );
    h.respond(&new_invite, 487, "ms2", &[], None);
    assert!(h.finished());
}

/// Teams -> PSTN call (Teams was the caller, its dialog one where we are UAS): the transfer
/// still sends the new INVITE to the proxies with the PSTN party as caller, swaps the Teams
/// leg and keeps the carrier dialog; a later Teams BYE on the new dialog ends the call.
#[test]
fn row37_transfer_of_a_teams_to_pstn_call_swaps_the_teams_leg_and_keeps_the_carrier() {
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
    let our_to = header(&ok, HeaderName::To);
    let teams_from = "<sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1";
    let ack = with_body(
        &format!(
            "ACK sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtack\r\nMax-Forwards: 70\r\n\
             From: {teams_from}\r\nTo: {our_to}\r\nCall-ID: teams-call-1\r\nCSeq: 1 ACK\r\n"
        ),
        None,
    );
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack,
    });
    let refer_msg = with_body(
        &format!(
            "REFER sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKrefer\r\nMax-Forwards: 70\r\n\
             From: {teams_from}\r\nTo: {our_to}\r\nCall-ID: teams-call-1\r\nCSeq: 2 REFER\r\n\
             Refer-To: {}\r\nReferred-By: {REFERRED_BY}\r\n",
            long_refer_to()
        ),
        None,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6000),
        msg: refer_msg,
    });
    h.response(202);
    let notify = notifies(&h);
    assert_eq!(notify.len(), 1);
    assert_eq!(
        sipfrag(&notify[0], "active;expires=60", "teams-call-1"),
        "SIP/2.0 100 Trying"
    );
    // The NOTIFY goes to Microsoft's Contact via its Record-Route.
    assert!(matches!(
        &notify[0].target,
        Target::Dialog { uri, .. } if uri.as_ref() == b"sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr"
    ));
    let new_invite = h.request(Method::Invite);
    answer_notify(&mut h, &notify[0]);
    assert_eq!(
        new_invite.msg.request_uri().unwrap().raw().as_ref(),
        uri_of(&long_refer_to()).as_bytes()
    );
    // The PSTN party (the callee of this call) is the caller of the new leg.
    assert!(header(&new_invite.msg, HeaderName::From)
        .starts_with("<sip:+14255550100@acme.sbc1.example.net;user=phone>;tag="));
    h.respond(
        &new_invite,
        200,
        "ms2",
        &[(
            "Contact",
            "<sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&new_leg_sdp()),
    );
    assert_eq!(
        sipfrag(
            &notifies(&h)[0],
            "terminated;reason=noresource",
            "teams-call-1"
        ),
        "SIP/2.0 200 OK"
    );
    assert_eq!(
        teams_remote(&h.media()),
        vec!["52.112.9.9:50100".parse().unwrap()]
    );

    // Old dialog BYE: only that leg.
    let old_bye = teams_bye_on("teams-call-1", &our_to, teams_from, 3);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6001),
        msg: old_bye,
    });
    h.response(200);
    assert!(h.requests().is_empty());

    // BYE from Teams on the new dialog ends the call: BYE to the carrier.
    let new_call_id = header(&new_invite.msg, HeaderName::CallId);
    let new_bye = teams_bye_on(
        &new_call_id,
        &header(&new_invite.msg, HeaderName::From),
        "<sip:sip.pstnhub.microsoft.com>;tag=ms2",
        1,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6002),
        msg: new_bye,
    });
    h.response(200);
    let carrier_bye = h.request(Method::Bye);
    assert_eq!(carrier_bye.leg, LegId::Carrier);
    assert_eq!(
        header(&carrier_bye.msg, HeaderName::CallId),
        header(&invite.msg, HeaderName::CallId)
    );
}

/// Row 42 after a transfer (rows 37, 38): the new Teams dialog negotiates its own session
/// timer like our first INVITE; when its 2xx makes us the refresher, the refresh goes on the
/// new dialog at half its interval, and the old dialog's timer is gone with it.
#[test]
fn row42_new_leg_of_a_transfer_runs_its_own_session_timer() {
    let (mut h, invite, new_invite) = referred(&long_refer_to());
    assert!(new_invite.msg.has_token(&HeaderName::Supported, "timer"));
    assert_eq!(header(&new_invite.msg, HeaderName::SessionExpires), "1800");
    assert_eq!(header(&new_invite.msg, HeaderName::MinSe), "90");
    h.respond(
        &new_invite,
        200,
        "ms2",
        &[
            (
                "Contact",
                "<sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>",
            ),
            ("Session-Expires", "120;refresher=uac"),
            ("Require", "timer"),
        ],
        Some(&new_leg_sdp()),
    );
    assert_eq!(h.acks().len(), 1);
    assert_eq!(
        h.armed(TimerKind::SessionRefresh(LegId::Teams)),
        Some(h.now + Duration::from_secs(60))
    );
    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    assert_eq!(refresh.leg, LegId::Teams);
    assert_eq!(
        header(&refresh.msg, HeaderName::CallId),
        header(&new_invite.msg, HeaderName::CallId)
    );
    assert_ne!(
        header(&refresh.msg, HeaderName::CallId),
        header(&invite.msg, HeaderName::CallId)
    );
    assert_eq!(
        header(&refresh.msg, HeaderName::SessionExpires),
        "120;refresher=uac"
    );
    assert_eq!(
        refresh.msg.request_uri().unwrap().raw().as_ref(),
        b"sip:sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls"
    );
}

fn ringback_commands(media: &[MediaCommand]) -> Vec<Option<crate::media::Ringback>> {
    media
        .iter()
        .filter_map(|c| match c {
            MediaCommand::SetRingback { ringback } => Some(*ringback),
            _ => None,
        })
        .collect()
}

fn etsi_ringback_in_pcmu() -> Option<crate::media::Ringback> {
    Some(crate::media::Ringback {
        plan: crate::media::TonePlan::ETSI,
        target: crate::media::G711Target {
            payload_type: 0,
            law: crate::media::inband_dtmf::G711::Ulaw,
        },
    })
}

/// Row 38: the target rings without SDP: the carrier (whose confirmed dialog gets no 18x)
/// hears our ringback in its G.711 (PCMU, the first codec it was answered) until the 200,
/// whose media takes over after the ringback stops; a second 180 changes nothing.
#[test]
fn row38_target_ringing_without_sdp_gets_the_carrier_ringback_until_the_200() {
    let (mut h, _invite, new_invite) = referred(&long_refer_to());
    h.respond(&new_invite, 180, "ms2", &[], None);
    assert_eq!(ringback_commands(&h.media()), vec![etsi_ringback_in_pcmu()]);
    assert!(
        teams_remote(&h.media()).is_empty(),
        "no media of the new leg yet"
    );
    h.respond(&new_invite, 180, "ms2", &[], None);
    assert!(ringback_commands(&h.media()).is_empty());

    h.respond(&new_invite, 200, "ms2", &[], Some(&new_leg_sdp()));
    let media = h.media();
    assert_eq!(ringback_commands(&media), vec![None]);
    let stop = media
        .iter()
        .position(|c| matches!(c, MediaCommand::SetRingback { .. }));
    let new_remote = media.iter().position(|c| {
        matches!(
            c,
            MediaCommand::SetRemote {
                leg: LegSide::Teams,
                ..
            }
        )
    });
    assert!(
        stop < new_remote,
        "the ringback stops before the new media: {media:?}"
    );
}

/// Row 38: early media of the target (a 183 with SDP after the 180) replaces the ringback;
/// the 200 without SDP then changes nothing more.
#[test]
fn row38_early_media_of_the_target_ends_the_ringback() {
    let (mut h, _invite, new_invite) = referred(&long_refer_to());
    h.respond(&new_invite, 180, "ms2", &[], None);
    assert_eq!(ringback_commands(&h.media()), vec![etsi_ringback_in_pcmu()]);
    h.respond(&new_invite, 183, "ms2", &[], Some(&new_leg_sdp()));
    let media = h.media();
    assert_eq!(ringback_commands(&media), vec![None]);
    assert_eq!(
        teams_remote(&media),
        vec!["52.112.9.9:50100".parse().unwrap()]
    );
    h.respond(&new_invite, 180, "ms2", &[], None);
    assert!(
        ringback_commands(&h.media()).is_empty(),
        "early media plays, not our ringback"
    );
    h.respond(&new_invite, 200, "ms2", &[], None);
    assert!(ringback_commands(&h.media()).is_empty());
}

/// Row 38: a transfer that fails while ringing stops the ringback; a trunk without ringback
/// never gets one.
#[test]
fn row38_failed_transfer_stops_the_ringback_and_a_trunk_can_turn_it_off() {
    let (mut h, _invite, new_invite) = referred(&long_refer_to());
    h.respond(&new_invite, 180, "ms2", &[], None);
    h.respond(&new_invite, 486, "ms2", &[], None);
    assert_eq!(ringback_commands(&h.media()), vec![None]);

    let mut quiet = setup();
    every_trunk(&mut quiet, |t| t.ringback = None);
    let mut h = Harness::inbound(quiet, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 200, "ms1", &[], Some(&teams_sdp()));
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    let msg = refer(&h, &invite, 1, &long_refer_to(), REFERRED_BY);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg,
    });
    let new_invite = h.request(Method::Invite);
    h.respond(&new_invite, 180, "ms2", &[], None);
    h.respond(&new_invite, 200, "ms2", &[], Some(&new_leg_sdp()));
    assert!(!h
        .all
        .iter()
        .any(|o| matches!(o, Output::Media(MediaCommand::SetRingback { .. }))));
}
