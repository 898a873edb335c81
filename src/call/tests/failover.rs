//! Proxy failover towards Teams (rows 9, 10) and trunk failover towards the carrier with the
//! failover code towards Teams (rows 29, 30).

use super::*;

const MS_CONTACT: (&str, &str) = (
    "Contact",
    "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
);

#[test]
fn row9_row10_proxy0_connect_failure_proxy1_503_retry_after_proxy2_answers() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let first = h.request(Method::Invite);
    assert_eq!(first.target, Target::TeamsProxy(0));
    assert_eq!(
        first.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone"[..]
    );

    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: first.tx,
        reason: TxFailure::ConnectFailed,
    });
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::TeamsProxy(1));
    assert_eq!(
        second.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@sip2.pstnhub.microsoft.com:5061;user=phone"[..]
    );
    assert_eq!(second.msg.cseq().unwrap().seq, 2);
    assert_ne!(
        second.msg.top_via().unwrap().branch,
        first.msg.top_via().unwrap().branch
    );
    assert_eq!(
        header(&second.msg, HeaderName::CallId),
        header(&first.msg, HeaderName::CallId)
    );
    assert_eq!(
        second.msg.from().unwrap().tag,
        first.msg.from().unwrap().tag
    );
    assert!(
        h.responses().is_empty(),
        "the carrier hears nothing of the failover"
    );

    h.respond(&second, 503, "ms2", &[("Retry-After", "1")], None);
    let third = h.request(Method::Invite);
    assert_eq!(third.target, Target::TeamsProxy(2));
    assert_eq!(third.msg.cseq().unwrap().seq, 3);
    assert!(h.responses().is_empty());

    h.respond(&third, 180, "ms3", &[], None);
    h.response(180);
    h.respond(&third, 200, "ms3", &[MS_CONTACT], Some(&teams_sdp()));
    h.response(200);
    assert_eq!(h.acks()[0].2.cseq().unwrap().seq, 3);
    let attempts: Vec<usize> = h
        .all
        .iter()
        .filter_map(|o| match o {
            Output::Record(CallRecord::TargetAttempt { index, .. }) => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![0, 1, 2]);
}

#[test]
fn row9_hop_timeout_moves_on_and_a_late_answer_is_released() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let first = h.request(Method::Invite);
    h.fire(TimerKind::HopTimeout);
    assert_eq!(h.now - h.start, Duration::from_secs(4));
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::TeamsProxy(1));
    // The abandoned proxy wakes up: CANCEL it so the user does not ring twice.
    h.respond(&first, 180, "late", &[], None);
    let cancel = h.request(Method::Cancel);
    assert_eq!(cancel.target, Target::TeamsProxy(0));
    assert!(h.responses().is_empty());
    // It answers anyway (crossing the CANCEL): ACK it and BYE it, keep the call on proxy 1.
    h.respond(&first, 200, "late", &[MS_CONTACT], Some(&teams_sdp()));
    assert_eq!(h.acks().len(), 1);
    let bye = h.request(Method::Bye);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("late"));
    assert!(h.responses().is_empty());
    h.respond(&second, 200, "ms2", &[MS_CONTACT], Some(&teams_sdp()));
    h.response(200);
}

#[test]
fn a_stale_hop_timer_after_a_provisional_does_nothing() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let first = h.request(Method::Invite);
    h.respond(&first, 100, "", &[], None);
    h.advance(Duration::from_secs(5));
    h.input(Input::Timer(TimerKind::HopTimeout));
    assert!(h.requests().is_empty());
}

#[test]
fn all_proxies_failing_answers_the_carrier_503() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    for index in 0..3 {
        let invite = h.request(Method::Invite);
        assert_eq!(invite.target, Target::TeamsProxy(index));
        h.input(Input::TxFailed {
            leg: LegId::Teams,
            tx: invite.tx,
            reason: TxFailure::Transport,
        });
    }
    let (leg, tx, _) = h.response(503);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(1000)));
    assert!(h.records().contains(&CallRecord::Failed {
        status: 503,
        class: StatusClass::ServerError,
        reason: EndReason::AllTargetsFailed
    }));
    assert!(h.media().contains(&MediaCommand::Remove));
    assert!(h.finished());
}

#[test]
fn teams_final_errors_are_relayed_without_failover() {
    for (teams, carrier) in [
        (486, 486),
        (404, 404),
        (603, 603),
        (503, 503),
        (408, 408),
        (401, 403),
    ] {
        let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
        let invite = h.request(Method::Invite);
        h.respond(&invite, teams, "ms1", &[], None);
        assert!(
            h.requests().is_empty(),
            "{teams}: no failover without Retry-After"
        );
        h.response(carrier);
        assert!(h.finished());
    }
}

#[test]
fn row30_transient_carrier_failure_tries_next_trunk_then_failover_code_to_teams() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    assert_eq!(first.target, Target::Carrier(0));
    h.respond(&first, 500, "p1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    assert_eq!(
        second.msg.request_uri().unwrap().raw(),
        &b"sip:+14255550100@10.0.0.2:5060"[..]
    );
    h.input(Input::TxFailed {
        leg: LegId::Carrier,
        tx: second.tx,
        reason: TxFailure::Timeout,
    });
    let (leg, _, resp) = h.response(503);
    assert_eq!(leg, LegId::Teams);
    assert_eq!(
        header(&resp, HeaderName::XMsSbc),
        "ExampleCorp/RustSBC/0.1.0"
    );
    // No 18x went to Teams before the failover code.
    let provisional = h.all.iter().any(|o| match o {
        Output::SendResponse {
            leg: LegId::Teams,
            msg,
            ..
        } => parse(msg).status().is_some_and(|s| s < 200),
        _ => false,
    });
    assert!(!provisional);
}

#[test]
fn row30_failover_code_follows_configuration() {
    let mut s = setup();
    s.teams.failover_response_codes = vec![504];
    s.carrier.targets.truncate(1);
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.respond(&first, 408, "p1", &[], None);
    h.response(504);
}

#[test]
fn carrier_failure_after_ringing_is_relayed_as_is() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.respond(&first, 180, "p1", &[], None);
    h.response(180);
    h.respond(&first, 503, "p1", &[], None);
    assert!(h.requests().is_empty(), "no trunk failover after a 18x");
    h.response(503);
}

#[test]
fn definitive_carrier_answers_end_the_call_without_trunk_failover() {
    for status in [486, 404, 603] {
        let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
        let first = h.request(Method::Invite);
        h.respond(&first, status, "p1", &[], None);
        assert!(h.requests().is_empty());
        h.response(status);
    }
}

#[test]
fn row29_no_progress_from_the_carrier_in_time_gives_teams_a_failover_code() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    h.respond(&first, 100, "", &[], None);
    h.fire(TimerKind::ProgressDeadline);
    assert_eq!(h.now - h.start, Duration::from_secs(8));
    h.response(503);
    let cancel = h.request(Method::Cancel);
    assert_eq!(cancel.leg, LegId::Carrier);
    h.respond(&first, 487, "p1", &[], None);
    assert!(h.finished());
}

#[test]
fn a_teams_timeout_after_ringing_is_not_failed_over() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let first = h.request(Method::Invite);
    h.respond(&first, 180, "ms1", &[], None);
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: first.tx,
        reason: TxFailure::Timeout,
    });
    assert!(h.requests().is_empty(), "the user must not ring twice");
    h.response(503);
    assert!(h.finished());
}
