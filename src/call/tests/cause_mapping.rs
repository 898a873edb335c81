//! Row 58: Teams' Q.850 cause 34 on a 486 reaches the carrier as 17 (configurable), Reason
//! crossing on final responses and BYE, the configured status tables per direction (with row
//! 30's failover code still in force), and no retry after a 603 or any 4xx from Teams.

use super::*;

const BUSY_34: (&str, &str) = ("Reason", "Q.850;cause=34;text=\"Busy Here 7f3c-corr-id\"");
const MS_DIAG: (&str, &str) = (
    "X-MS-Diagnostics",
    "10500;reason=\"busy\";source=\"sip.pstnhub.microsoft.com\"",
);

fn setup_with(policy: ResponsePolicy) -> CallSetup {
    let mut s = setup();
    every_trunk(&mut s, |t| t.responses = policy.clone());
    s
}

/// PSTN -> Teams: Teams answers the first INVITE with `status` and `extra`; returns the
/// harness after that and the final response the carrier got.
fn teams_rejects(s: CallSetup, status: u16, extra: &[(&str, &str)]) -> (Harness, Message) {
    let mut h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.target, Target::TeamsProxy(0));
    h.respond(&invite, status, "ms1", extra, None);
    let finals: Vec<Message> = h
        .responses()
        .into_iter()
        .filter(|(leg, _, m)| *leg == LegId::Carrier && m.status().is_some_and(|s| s >= 300))
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(finals.len(), 1, "{:#?}", h.out);
    (h, finals.into_iter().next().unwrap())
}

fn reasons(m: &Message) -> Vec<String> {
    m.header_values(&HeaderName::Reason)
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn invites_sent(h: &Harness) -> usize {
    h.all
        .iter()
        .filter(|o| {
            matches!(o, Output::SendRequest { msg, .. } if parse(msg).method() == Some(&Method::Invite))
        })
        .count()
}

#[test]
fn row58_teams_486_cause_34_reaches_the_carrier_as_cause_17() {
    let (_, busy) = teams_rejects(setup(), 486, &[BUSY_34, MS_DIAG]);
    assert_eq!(busy.status(), Some(486));
    assert_eq!(reasons(&busy), vec!["Q.850;cause=17"]);
    let all = String::from_utf8_lossy(busy.bytes()).to_ascii_lowercase();
    assert!(!all.contains("x-ms-"), "{all}");
    assert!(
        !all.contains("corr-id"),
        "Teams' Reason text stays behind: {all}"
    );
}

#[test]
fn row58_busy_cause_is_configurable_strip_pass_or_another_cause() {
    let cases: &[(BusyCause, &[&str])] = &[
        (BusyCause::Strip, &[]),
        (BusyCause::Pass, &["Q.850;cause=34"]),
        (BusyCause::Rewrite(21), &["Q.850;cause=21"]),
        (BusyCause::Rewrite(17), &["Q.850;cause=17"]),
    ];
    for (busy_cause, expected) in cases {
        let policy = ResponsePolicy {
            busy_cause: *busy_cause,
            ..ResponsePolicy::default()
        };
        let (_, busy) = teams_rejects(setup_with(policy), 486, &[BUSY_34]);
        assert_eq!(reasons(&busy), *expected, "{busy_cause:?}");
    }
}

#[test]
fn row58_only_cause_34_of_a_486_is_rewritten_other_q850_causes_cross_as_sent() {
    let (_, busy) = teams_rejects(setup(), 486, &[("Reason", "Q.850;cause=17")]);
    assert_eq!(reasons(&busy), vec!["Q.850;cause=17"]);
    let (_, busy) = teams_rejects(setup(), 486, &[("Reason", "q.850 ; CAUSE=21")]);
    assert_eq!(reasons(&busy), vec!["Q.850;cause=21"]);
    // Cause 34 on another status is not the busy mapping problem: it crosses unchanged.
    let (_, unavailable) = teams_rejects(setup(), 480, &[("Reason", "Q.850;cause=34")]);
    assert_eq!(reasons(&unavailable), vec!["Q.850;cause=34"]);
    let (_, declined) = teams_rejects(setup(), 603, &[("Reason", "Q.850;cause=21")]);
    assert_eq!(reasons(&declined), vec!["Q.850;cause=21"]);
    // Strip applies to 486 only.
    let policy = ResponsePolicy {
        busy_cause: BusyCause::Strip,
        ..ResponsePolicy::default()
    };
    let (_, declined) = teams_rejects(setup_with(policy), 603, &[("Reason", "Q.850;cause=21")]);
    assert_eq!(reasons(&declined), vec!["Q.850;cause=21"]);
}

#[test]
fn row58_sip_and_malformed_reasons_do_not_cross() {
    for reason in [
        "SIP;cause=486;text=\"Busy\"",
        "Q.850",
        "Q.850;cause=",
        "Q.850;cause=0",
        "Q.850;cause=128",
        "Q.850;cause=1234",
        "Q.850;cause=3x",
        "garbage;;;==",
    ] {
        let (_, busy) = teams_rejects(setup(), 486, &[("Reason", reason)]);
        assert!(reasons(&busy).is_empty(), "{reason}: {:?}", reasons(&busy));
    }
    // No Reason from Teams: none is invented.
    let (_, busy) = teams_rejects(setup(), 486, &[]);
    assert!(reasons(&busy).is_empty());
    // The first Q.850 value counts when Teams sends a SIP and a Q.850 Reason.
    let (_, busy) = teams_rejects(setup(), 486, &[("Reason", "SIP;cause=486, Q.850;cause=34")]);
    assert_eq!(reasons(&busy), vec!["Q.850;cause=17"]);
}

#[test]
fn row58_no_reason_crosses_to_teams_on_teams_to_pstn_calls() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 486, "p1", &[("Reason", "Q.850;cause=17")], None);
    let (leg, _, busy) = h.response(486);
    assert_eq!(leg, LegId::Teams);
    assert!(reasons(&busy).is_empty());
}

/// Row 58: a 603 or any 4xx from a Teams proxy is final — no INVITE to the next proxy, the
/// carrier gets it (mapped) at once.
#[test]
fn row58_no_retry_after_603_or_any_4xx_from_teams() {
    let mut statuses: Vec<u16> = (400..=499).collect();
    statuses.extend([600, 603, 604, 606]);
    for status in statuses {
        let (h, final_response) = teams_rejects(setup(), status, &[("Retry-After", "1")]);
        assert_eq!(invites_sent(&h), 1, "{status} was retried");
        assert_eq!(
            final_response.status(),
            Some(map_final_status(status, false, false, &[408, 503, 504])),
            "{status}"
        );
        let attempts = h
            .all
            .iter()
            .filter(|o| matches!(o, Output::Record(CallRecord::TargetAttempt { .. })))
            .count();
        assert_eq!(attempts, 1, "{status}");
    }
    // 603 and the 4xx that carry meaning reach the carrier as they are.
    for status in [403, 404, 480, 486, 603] {
        let (_, final_response) = teams_rejects(setup(), status, &[]);
        assert_eq!(final_response.status(), Some(status));
    }
}

#[test]
fn row10_contrast_503_with_retry_after_is_the_only_response_that_moves_to_the_next_proxy() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(&invite, 503, "ms1", &[("Retry-After", "1")], None);
    assert_eq!(h.request(Method::Invite).target, Target::TeamsProxy(1));
    // Without Retry-After: final.
    let (h, final_response) = teams_rejects(setup(), 503, &[]);
    assert_eq!(invites_sent(&h), 1);
    assert_eq!(final_response.status(), Some(503));
}

#[test]
fn row58_response_table_towards_the_carrier() {
    let policy = ResponsePolicy {
        to_carrier: vec![
            StatusRewrite { from: 480, to: 404 },
            StatusRewrite { from: 415, to: 488 },
            StatusRewrite { from: 486, to: 600 },
        ],
        ..ResponsePolicy::default()
    };
    let s = setup_with(policy);
    let (_, r) = teams_rejects(s.clone(), 480, &[]);
    assert_eq!(r.status(), Some(404));
    // Keyed by what Teams sent (415 would otherwise fold to 480).
    let (_, r) = teams_rejects(s.clone(), 415, &[]);
    assert_eq!(r.status(), Some(488));
    // The busy Reason rule still applies to Teams' 486.
    let (_, r) = teams_rejects(s.clone(), 486, &[BUSY_34]);
    assert_eq!(r.status(), Some(600));
    assert_eq!(reasons(&r), vec!["Q.850;cause=17"]);
    // Unlisted statuses keep the built-in mapping.
    let (_, r) = teams_rejects(s, 404, &[]);
    assert_eq!(r.status(), Some(404));
}

/// Final error statuses the last step sent to Teams.
fn finals_to_teams(h: &Harness) -> Vec<u16> {
    h.responses()
        .into_iter()
        .filter(|(leg, _, m)| *leg == LegId::Teams && m.status().is_some_and(|s| s >= 300))
        .filter_map(|(_, _, m)| m.status())
        .collect()
}

/// Teams -> PSTN: the carrier answers `status` (after `progress` 180 when set).
fn carrier_rejects(s: CallSetup, status: u16, progress: bool) -> u16 {
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let mut invite = h.request(Method::Invite);
    if progress {
        h.respond(&invite, 180, "p1", &[], None);
    }
    loop {
        h.respond(&invite, status, "p1", &[], None);
        let finals = finals_to_teams(&h);
        if let Some(status) = finals.first() {
            return *status;
        }
        // A transient failure moved to the next trunk target: fail that one the same way.
        invite = h.request(Method::Invite);
    }
}

#[test]
fn row58_row30_response_table_towards_teams_keeps_the_failover_code() {
    let policy = ResponsePolicy {
        to_teams: vec![
            StatusRewrite { from: 404, to: 480 },
            StatusRewrite { from: 503, to: 486 },
            StatusRewrite { from: 486, to: 500 },
        ],
        ..ResponsePolicy::default()
    };
    let s = setup_with(policy);
    assert_eq!(carrier_rejects(s.clone(), 404, false), 480);
    // Row 30: before any 18x a transient failure is the failover code, whatever the table.
    assert_eq!(carrier_rejects(s.clone(), 503, false), 503);
    // A table result that is transient becomes the failover code as well.
    assert_eq!(carrier_rejects(s.clone(), 486, false), 503);
    // After a 18x Microsoft does not fail over: the table decides.
    assert_eq!(carrier_rejects(s.clone(), 503, true), 486);
    assert_eq!(carrier_rejects(s, 486, true), 500);
    // Without a table, nothing changed.
    assert_eq!(carrier_rejects(setup(), 404, false), 404);
}

#[test]
fn row58_bye_from_teams_carries_its_q850_cause_to_the_carrier() {
    let (mut h, invite) = answered_inbound();
    let bye = peer_in_dialog_request(
        "BYE",
        9,
        &header(&invite.msg, HeaderName::CallId),
        "<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1",
        &header(&invite.msg, HeaderName::From),
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKbye1",
    );
    let text = String::from_utf8_lossy(bye.bytes()).replacen(
        "Content-Length",
        "Reason: Q.850;cause=16;text=\"a6b1 call ended by user\"\r\nX-MS-Diagnostics: 1;a=b\r\nContent-Length",
        1,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7000),
        msg: parse(text.as_bytes()),
    });
    let to_carrier = h.request(Method::Bye);
    assert_eq!(to_carrier.leg, LegId::Carrier);
    assert_eq!(reasons(&to_carrier.msg), vec!["Q.850;cause=16"]);
    assert!(!String::from_utf8_lossy(to_carrier.msg.bytes()).contains("X-MS"));
}

#[test]
fn bye_from_the_carrier_carries_no_reason_to_teams() {
    let (mut h, _) = answered_inbound();
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
    let bye = with_body(
        &format!(
            "BYE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: carrier-call-1@10.0.0.1\r\nCSeq: 2 BYE\r\n\
             Reason: Q.850;cause=16\r\n",
            header(&ok, HeaderName::From),
            header(&ok, HeaderName::To)
        ),
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(7001),
        msg: bye,
    });
    let to_teams = h.request(Method::Bye);
    assert_eq!(to_teams.leg, LegId::Teams);
    assert!(reasons(&to_teams.msg).is_empty());
}

#[test]
fn timeouts_carry_no_stale_reason() {
    // Proxy 0 answers 503 + Retry-After with a Reason, the others never answer: the carrier's
    // final status comes from the timeouts and carries no Reason.
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        503,
        "ms1",
        &[("Retry-After", "1"), ("Reason", "Q.850;cause=41")],
        None,
    );
    for _ in 0..2 {
        let next = h.request(Method::Invite);
        h.input(Input::TxFailed {
            leg: LegId::Teams,
            tx: next.tx,
            reason: TxFailure::Timeout,
        });
    }
    let (_, _, last) = h.response(503);
    assert!(reasons(&last).is_empty());
}

/// Microsoft cancelling a Teams -> PSTN call with a Q.850 cause (RFC 3326): the carrier's
/// CANCEL carries it; a SIP-protocol Reason ("call completed elsewhere") does not cross.
#[test]
fn row58_teams_cancel_q850_reason_reaches_the_carrier_cancel() {
    for (reason, expected) in [
        (
            "Q.850;cause=16;text=\"Normal call clearing\"",
            Some("Q.850;cause=16"),
        ),
        ("SIP;cause=200;text=\"Call completed elsewhere\"", None),
    ] {
        let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
        let invite = h.request(Method::Invite);
        h.respond(&invite, 180, "pstn1", &[], None);
        let cancel = with_body(
            &format!(
                "CANCEL sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
                 Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKteams1\r\nMax-Forwards: 70\r\n\
                 From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1\r\n\
                 To: <sip:+12065550123@acme.sbc1.example.net:5068;user=phone>\r\n\
                 Call-ID: teams-call-1\r\nCSeq: 1 CANCEL\r\nReason: {reason}\r\n"
            ),
            None,
        );
        h.input(Input::Request {
            leg: LegId::Teams,
            tx: TxId(1001),
            msg: cancel,
        });
        let carrier_cancel = h.request(Method::Cancel);
        assert_eq!(carrier_cancel.leg, LegId::Carrier);
        let got = carrier_cancel
            .msg
            .has_header(&HeaderName::Reason)
            .then(|| header(&carrier_cancel.msg, HeaderName::Reason));
        assert_eq!(got.as_deref(), expected, "{reason}");
    }
}

/// Teams -> PSTN failing over between trunks with different tables: the final error is mapped
/// by the table of the trunk that sent it, not of the first trunk tried.
#[test]
fn row58_response_table_of_the_trunk_that_answered_decides_after_failover() {
    let mut s = setup();
    s.carrier.targets[0].trunk.responses.to_teams = vec![StatusRewrite { from: 404, to: 480 }];
    s.carrier.targets[1].trunk.responses.to_teams = vec![StatusRewrite { from: 404, to: 410 }];
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let first = h.request(Method::Invite);
    assert_eq!(first.target, Target::Carrier(0));
    h.respond(&first, 503, "p1", &[], None);
    let second = h.request(Method::Invite);
    assert_eq!(second.target, Target::Carrier(1));
    h.respond(&second, 404, "p2", &[], None);
    let finals = finals_to_teams(&h);
    assert_eq!(finals, vec![410]);
}
