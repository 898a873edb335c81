//! Ending cleanly: media inactivity, missing ACK, no answer, unanswered BYEs.

use super::*;
use crate::media::MediaEvent;

fn assert_bye_both_sides_then_finish(h: &mut Harness, reason: EndReason) {
    let byes: Vec<SentReq> = h
        .requests()
        .into_iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .collect();
    let mut legs: Vec<LegId> = byes.iter().map(|b| b.leg).collect();
    legs.sort_by_key(|l| l.label());
    assert_eq!(legs, vec![LegId::Carrier, LegId::Teams]);
    assert!(h.media().contains(&MediaCommand::Remove));
    assert!(h
        .records()
        .iter()
        .any(|r| matches!(r, CallRecord::Ended { reason: r2, .. } if *r2 == reason)));
    assert!(!h.finished());
    let (first, second) = (byes[0].clone(), byes[1].clone());
    h.respond(&first, 200, "x", &[], None);
    assert!(!h.finished());
    h.respond(&second, 200, "x", &[], None);
    assert!(h.finished());
}

#[test]
fn media_inactivity_sends_bye_both_sides() {
    let (mut h, _) = answered_inbound();
    // Another session's event is not ours.
    h.input(Input::Media(MediaEvent::Inactive {
        session: SessionId(99),
        leg: LegSide::Carrier,
    }));
    assert!(h.requests().is_empty());
    h.input(Input::Media(MediaEvent::Inactive {
        session: SessionId(7),
        leg: LegSide::Carrier,
    }));
    assert_bye_both_sides_then_finish(&mut h, EndReason::MediaInactive);
}

#[test]
fn missing_ack_sends_bye_both_sides() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
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
    h.fire(TimerKind::AckWait);
    assert_bye_both_sides_then_finish(&mut h, EndReason::AckTimeout);
}

#[test]
fn transaction_layer_ack_timeout_also_ends_the_call() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
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
    h.input(Input::TxFailed {
        leg: LegId::Carrier,
        tx: TxId(1000),
        reason: TxFailure::AckTimeout,
    });
    assert_bye_both_sides_then_finish(&mut h, EndReason::AckTimeout);
}

#[test]
fn no_answer_cancels_and_answers_480() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    h.fire(TimerKind::NoAnswer);
    assert_eq!(h.now - h.start, Duration::from_secs(180));
    h.response(480);
    h.request(Method::Cancel);
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Failed {
            status: 480,
            reason: EndReason::NoAnswer,
            ..
        }
    )));
    h.respond(&invite, 487, "ms1", &[], None);
    assert!(h.finished());
}

#[test]
fn unanswered_byes_end_at_the_teardown_guard() {
    let (mut h, _) = answered_inbound();
    h.input(Input::Media(MediaEvent::Inactive {
        session: SessionId(7),
        leg: LegSide::Teams,
    }));
    assert!(!h.finished());
    h.fire(TimerKind::Teardown);
    assert!(h.finished());
    // Nothing after Finished.
    h.input(Input::Timer(TimerKind::Teardown));
    assert!(h.out.is_empty());
}

#[test]
fn requests_the_driver_could_not_send_count_as_transport_failures() {
    let now = Instant::now();
    let mut call = Call::new_from_carrier(
        now,
        setup(),
        carrier_invite(Some(&carrier_sdp())),
        TxId(1000),
    );
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let mut next = None;
        while let Some(o) = call.poll() {
            if let Output::SendRequest { token, target, .. } = o {
                next = Some((token, target));
            }
        }
        let (token, target) = next.expect("an INVITE attempt");
        tokens.push(target);
        call.on_sent(now, token, None);
    }
    assert_eq!(
        tokens,
        vec![
            Target::TeamsProxy(0),
            Target::TeamsProxy(1),
            Target::TeamsProxy(2)
        ]
    );
    let mut finished = false;
    while let Some(o) = call.poll() {
        finished |= matches!(o, Output::Finished);
    }
    assert!(finished);
}

#[test]
fn bye_before_answer_is_481_and_unknown_methods_501() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let bye = peer_in_dialog_request(
        "BYE",
        2,
        "carrier-call-1@10.0.0.1",
        "<sip:a@10.0.0.1>;tag=c1",
        "<sip:b@192.0.2.10>",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx1",
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(7000),
        msg: bye,
    });
    let (_, _, refusal) = h.response(481);
    let ours = to_tag(&refusal).expect("our tag on the 481");
    let info = peer_in_dialog_request(
        "INFO",
        3,
        "carrier-call-1@10.0.0.1",
        "<sip:a@10.0.0.1>;tag=c1",
        &format!("<sip:b@192.0.2.10>;tag={ours}"),
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx2",
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(7001),
        msg: info,
    });
    h.response(501);
}

#[test]
fn transport_loss_towards_the_caller_during_setup_cancels_the_callee() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "p1", &[], None);
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: TxId(1000),
        reason: TxFailure::Transport,
    });
    assert!(h.responses().is_empty(), "nothing can reach Teams any more");
    let cancel = h.request(Method::Cancel);
    assert_eq!(cancel.leg, LegId::Carrier);
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Failed {
            reason: EndReason::TransportLost,
            ..
        }
    )));
    h.respond(&invite, 487, "p1", &[], None);
    assert!(h.finished());
}

#[test]
fn transport_loss_towards_the_caller_after_answer_sends_bye_both_sides() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
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
    h.input(Input::TxFailed {
        leg: LegId::Carrier,
        tx: TxId(1000),
        reason: TxFailure::Transport,
    });
    assert_bye_both_sides_then_finish(&mut h, EndReason::TransportLost);
}

/// RFC 3261 §12.2.2: the Call-ID alone does not make a request the dialog's. A BYE (or
/// re-INVITE, ACK) with a tag that is not ours in To, or not the peer's in From, is answered
/// 481 and changes nothing; the genuine BYE still ends the call.
#[test]
fn requests_with_the_call_id_but_foreign_tags_get_481_and_the_call_goes_on() {
    let (mut h, _) = answered_inbound();
    let ok = h
        .all
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } if parse(msg).status() == Some(200) => Some(parse(msg)),
            _ => None,
        })
        .expect("200 to carrier");
    let ours = to_tag(&ok).unwrap();
    let forged = [
        (
            "<sip:a@10.0.0.1>;tag=c1",
            "<sip:b@192.0.2.10>;tag=guessed".to_string(),
        ),
        (
            "<sip:a@10.0.0.1>;tag=other",
            format!("<sip:b@192.0.2.10>;tag={ours}"),
        ),
        ("<sip:a@10.0.0.1>", format!("<sip:b@192.0.2.10>;tag={ours}")),
    ];
    for (i, (from, to)) in forged.iter().enumerate() {
        for method in ["BYE", "INVITE"] {
            h.out.clear();
            let request = peer_in_dialog_request(
                method,
                10 + i as u32,
                "carrier-call-1@10.0.0.1",
                from,
                to,
                &format!("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKforged{method}{i}"),
            );
            h.input(Input::Request {
                leg: LegId::Carrier,
                tx: TxId(8000 + i as u64),
                msg: request,
            });
            h.response(481);
            assert!(
                h.requests().is_empty(),
                "{method} {from} {to}: nothing crosses"
            );
            assert!(
                h.media().is_empty(),
                "{method} {from} {to}: media untouched"
            );
            assert!(!h.finished());
        }
    }
    let bye = peer_in_dialog_request(
        "BYE",
        20,
        "carrier-call-1@10.0.0.1",
        "<sip:a@10.0.0.1>;tag=c1",
        &format!("<sip:b@192.0.2.10>;tag={ours}"),
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKbye",
    );
    h.out.clear();
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(9000),
        msg: bye,
    });
    h.response(200);
    assert_eq!(h.request(Method::Bye).leg, LegId::Teams);
}

/// An operator (or the end of a drain) ends an answered call: BYE on both legs, each with a
/// Reason saying why (RFC 3326), and the call record says who ended it.
#[test]
fn terminate_ends_an_answered_call_with_bye_and_reason_on_both_legs() {
    let (mut h, _) = answered_inbound();
    h.out.clear();
    h.input(Input::Terminate {
        reason: EndReason::Operator,
    });
    for bye in h
        .requests()
        .iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
    {
        assert_eq!(
            header(&bye.msg, HeaderName::Reason),
            "Q.850;cause=16;text=\"Ended by the operator\"",
            "{:?}",
            bye.leg
        );
    }
    assert_bye_both_sides_then_finish(&mut h, EndReason::Operator);
}

/// A drain that runs out of time during setup: the callee's INVITE is cancelled and the
/// caller gets 503 with Q.850 41, so a carrier may retry elsewhere.
#[test]
fn terminate_during_setup_cancels_the_callee_and_answers_the_caller_503() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 180, "ms1", &[], None);
    h.out.clear();
    h.input(Input::Terminate {
        reason: EndReason::Drained,
    });
    let (leg, _, refusal) = h.response(503);
    assert_eq!(leg, LegId::Carrier);
    assert_eq!(
        header(&refusal, HeaderName::Reason),
        "Q.850;cause=41;text=\"SBC shutting down\""
    );
    assert_eq!(h.request(Method::Cancel).leg, LegId::Teams);
    assert!(h.records().contains(&CallRecord::Failed {
        status: 503,
        class: StatusClass::of(503),
        reason: EndReason::Drained,
    }));
}
