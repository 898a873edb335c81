//! Session timers (RFC 4028, row 42): Microsoft's Session-Expires honoured, our refresh
//! re-INVITE at half the interval with the SDP unchanged, expiry when the peer does not
//! refresh, 422 both ways, and each leg's timer independent of the other.

use super::*;

/// `msg` with `extra` header lines inserted after the start line.
fn with_headers(msg: &Message, extra: &str) -> Message {
    let text = String::from_utf8_lossy(msg.bytes()).into_owned();
    let (first, rest) = text.split_once("\r\n").unwrap();
    parse(format!("{first}\r\n{extra}{rest}").as_bytes())
}

fn session_timer_kinds() -> [TimerKind; 4] {
    [
        TimerKind::SessionRefresh(LegId::Carrier),
        TimerKind::SessionRefresh(LegId::Teams),
        TimerKind::SessionExpiry(LegId::Carrier),
        TimerKind::SessionExpiry(LegId::Teams),
    ]
}

/// The last response we sent on `leg` with `status`.
fn last_response(h: &Harness, leg: LegId, status: u16) -> Message {
    h.all
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::SendResponse { leg: l, msg, .. } if *l == leg => {
                let m = parse(msg);
                (m.status() == Some(status)).then_some(m)
            }
            _ => None,
        })
        .expect("response sent")
}

/// Teams' ACK for our 200 on a Teams -> PSTN call.
fn teams_ack(h: &Harness) -> Message {
    let ok = last_response(h, LegId::Teams, 200);
    with_body(
        &format!(
            "ACK sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtack\r\nMax-Forwards: 70\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: teams-call-1\r\nCSeq: 1 ACK\r\n",
            header(&ok, HeaderName::From),
            header(&ok, HeaderName::To)
        ),
        None,
    )
}

/// A re-INVITE from Teams in the dialog of a Teams -> PSTN call.
fn teams_reinvite(h: &Harness, cseq: u32, extra: &str, sdp: Option<&str>) -> Message {
    let ok = last_response(h, LegId::Teams, 200);
    with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtre{cseq}\r\nMax-Forwards: 70\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: teams-call-1\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n{extra}",
            header(&ok, HeaderName::From),
            header(&ok, HeaderName::To)
        ),
        sdp,
    )
}

/// Teams -> PSTN call with Microsoft's session-timer headers `timer_headers`, answered by the
/// carrier (whose 200 has no Session-Expires) and ACKed by Teams.
fn answered_outbound(timer_headers: &str) -> (Harness, SentReq) {
    let mut h = Harness::outbound(setup(), teams_invite(timer_headers, &teams_sdp()));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Carrier);
    h.respond(
        &invite,
        200,
        "pstn1",
        &[("Contact", "<sip:carrier@10.0.0.1:5060>")],
        Some(&carrier_sdp()),
    );
    h.response(200);
    let ack = teams_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack,
    });
    (h, invite)
}

/// Row 42: Microsoft's `Session-Expires: 90;refresher=uas` is honoured: our 200 copies it
/// with `Require: timer`; at half the interval we send Teams a re-INVITE with the SDP of our
/// 200 byte for byte (same o= version: a refresh), ACK its 200, and refresh again 45 s later.
/// The carrier leg (no timer in its 200) never sees any of it.
#[test]
fn row42_teams_refresher_uas_we_refresh_teams_at_half_interval() {
    let answered_at;
    let (mut h, carrier_invite) = answered_outbound(
        "Supported: timer\r\nSession-Expires: 90;refresher=uas\r\nMin-SE: 90\r\n",
    );
    // Our own offer towards the carrier: timers offered, our interval.
    assert!(carrier_invite
        .msg
        .has_token(&HeaderName::Supported, "timer"));
    assert_eq!(
        header(&carrier_invite.msg, HeaderName::SessionExpires),
        "1800"
    );
    assert_eq!(header(&carrier_invite.msg, HeaderName::MinSe), "90");

    let ok = last_response(&h, LegId::Teams, 200);
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uas");
    assert!(ok.has_token(&HeaderName::Require, "timer"));
    let our_sdp = body(&ok);
    {
        let refresh_at = h
            .armed(TimerKind::SessionRefresh(LegId::Teams))
            .expect("refresh armed");
        answered_at = refresh_at - Duration::from_secs(45);
        assert!(answered_at >= h.start && answered_at <= h.now);
    }
    assert_eq!(h.armed(TimerKind::SessionRefresh(LegId::Carrier)), None);
    assert_eq!(h.armed(TimerKind::SessionExpiry(LegId::Carrier)), None);
    assert_eq!(h.armed(TimerKind::SessionExpiry(LegId::Teams)), None);

    for round in 1..=2u32 {
        h.fire(TimerKind::SessionRefresh(LegId::Teams));
        assert_eq!(
            h.now,
            answered_at + Duration::from_secs(45 * u64::from(round))
        );
        let refresh = h.request(Method::Invite);
        assert_eq!(refresh.leg, LegId::Teams);
        assert!(matches!(refresh.target, Target::Dialog { .. }));
        assert_eq!(h.requests().len(), 1, "nothing towards the carrier");
        assert_eq!(
            body(&refresh.msg),
            our_sdp,
            "refresh re-offers our SDP unchanged"
        );
        assert_eq!(
            header(&refresh.msg, HeaderName::SessionExpires),
            "90;refresher=uac"
        );
        assert!(refresh.msg.has_token(&HeaderName::Supported, "timer"));
        assert_eq!(header(&refresh.msg, HeaderName::CallId), "teams-call-1");
        assert_eq!(refresh.msg.cseq().unwrap().seq, round);
        assert_eq!(
            refresh.msg.request_uri().unwrap().raw(),
            &b"sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls"[..]
        );
        assert!(refresh.msg.has_header(&HeaderName::XMsSbc));
        assert!(!refresh.msg.has_header(&HeaderName::Require));

        h.respond(
            &refresh,
            200,
            "t1",
            &[
                ("Session-Expires", "90;refresher=uac"),
                ("Require", "timer"),
            ],
            Some(&teams_sdp()),
        );
        assert!(h.media().is_empty(), "the same answer changes no media");
        let acks = h.acks();
        assert_eq!(acks.len(), 1);
        let (leg, _, ack) = &acks[0];
        assert_eq!(*leg, LegId::Teams);
        assert_eq!(ack.cseq().unwrap().seq, round);
        assert!(h.requests().is_empty());
        assert!(h.responses().is_empty());
        assert_eq!(
            h.armed(TimerKind::SessionRefresh(LegId::Teams)),
            Some(h.now + Duration::from_secs(45))
        );
    }
    assert!(!h.call.is_finished());
}

/// Row 42: Teams is the refresher (`refresher=uac`) and never refreshes: at
/// `90 - min(32, 90/3)` = 60 s the call ends with BYE on both legs (RFC 4028 §10).
#[test]
fn row42_teams_refresher_uac_without_refresh_ends_with_bye_on_both_legs() {
    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n");
    let ok = last_response(&h, LegId::Teams, 200);
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uac");
    assert!(ok.has_token(&HeaderName::Require, "timer"));
    assert_eq!(h.armed(TimerKind::SessionRefresh(LegId::Teams)), None);
    let expiry = h
        .armed(TimerKind::SessionExpiry(LegId::Teams))
        .expect("expiry armed");

    h.fire(TimerKind::SessionExpiry(LegId::Teams));
    assert_eq!(h.now, expiry);
    let byes: Vec<LegId> = h
        .requests()
        .iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .map(|r| r.leg)
        .collect();
    assert_eq!(byes.len(), 2, "{:#?}", h.out);
    assert!(byes.contains(&LegId::Teams) && byes.contains(&LegId::Carrier));
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Ended {
            reason: EndReason::SessionExpired,
            ..
        }
    )));
    assert_eq!(EndReason::SessionExpired.label(), "session_expired");
}

/// Row 42: with no refresher named, a peer that supports timers (Microsoft) refreshes; the
/// expiry is 60 s after the answer for a 90 s interval.
#[test]
fn row42_no_refresher_named_teams_refreshes_and_expiry_is_two_thirds_in() {
    let (h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90\r\n");
    let ok = last_response(&h, LegId::Teams, 200);
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uac");
    let refresh_or_expiry = h.armed(TimerKind::SessionExpiry(LegId::Teams)).unwrap();
    assert!(refresh_or_expiry >= h.start + Duration::from_secs(60));
    assert!(refresh_or_expiry <= h.now + Duration::from_secs(60));
}

/// Row 42: a refresh re-INVITE from Teams (same SDP) is answered with Session-Expires and
/// restarts the expiry; the old deadline passes harmlessly, the new one ends the call.
#[test]
fn row42_refresh_received_restarts_the_expiry() {
    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n");
    let first_expiry = h.armed(TimerKind::SessionExpiry(LegId::Teams)).unwrap();
    h.advance(Duration::from_secs(40));
    let refresh = teams_reinvite(
        &h,
        2,
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        Some(&teams_sdp()),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(2001),
        msg: refresh,
    });
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(2001)));
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uac");
    assert!(ok.has_token(&HeaderName::Require, "timer"));
    assert!(h.requests().is_empty(), "a refresh stays on its leg");
    let second_expiry = h.armed(TimerKind::SessionExpiry(LegId::Teams)).unwrap();
    assert_eq!(second_expiry, h.now + Duration::from_secs(60));

    // The first deadline is stale now: nothing happens.
    h.now = first_expiry;
    h.input(Input::Timer(TimerKind::SessionExpiry(LegId::Teams)));
    assert!(h.requests().is_empty());
    assert!(!h.call.is_finished());

    h.fire(TimerKind::SessionExpiry(LegId::Teams));
    assert_eq!(
        h.requests()
            .iter()
            .filter(|r| r.msg.method() == Some(&Method::Bye))
            .count(),
        2
    );
}

/// RFC 4028 §8.1/§9: an INVITE asking for less than our Min-SE (90 s) gets 422 with
/// `Min-SE: 90` before anything is sent on; a re-INVITE doing so mid-call gets 422 too and
/// the call goes on.
#[test]
fn row42_interval_below_min_se_is_refused_with_422() {
    let h = Harness::outbound(
        setup(),
        teams_invite("Supported: timer\r\nSession-Expires: 60\r\n", &teams_sdp()),
    );
    let (leg, tx, refused) = h.response(422);
    assert_eq!((leg, tx), (LegId::Teams, TxId(1000)));
    assert_eq!(header(&refused, HeaderName::MinSe), "90");
    assert!(h.requests().is_empty());
    assert!(h.finished());

    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n");
    let small = teams_reinvite(
        &h,
        2,
        "Supported: timer\r\nSession-Expires: 30\r\n",
        Some(&teams_sdp()),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(2002),
        msg: small,
    });
    let (_, _, refused) = h.response(422);
    assert_eq!(header(&refused, HeaderName::MinSe), "90");
    assert!(!h.call.is_finished());
}

/// Rows 42, 21: PSTN -> Teams, our INVITE offers our interval; Microsoft answers 422 with a
/// larger Min-SE: the INVITE is retried at the same proxy with the interval raised (new
/// CSeq, same Call-ID and From tag) and the carrier sees no 422. Teams' 200 names us the
/// refresher (`uac`): we refresh at half its interval with our offer unchanged.
#[test]
fn row42_422_from_teams_is_retried_with_raised_interval_then_we_refresh() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let first = h.request(Method::Invite);
    assert_eq!(first.target, Target::TeamsProxy(0));
    assert_eq!(header(&first.msg, HeaderName::SessionExpires), "1800");
    assert_eq!(header(&first.msg, HeaderName::MinSe), "90");
    assert!(first.msg.has_token(&HeaderName::Supported, "timer"));
    let offer = body(&first.msg);

    h.respond(&first, 422, "ms0", &[("Min-SE", "3600")], None);
    let retry = h.request(Method::Invite);
    assert_eq!(retry.target, Target::TeamsProxy(0));
    assert_eq!(header(&retry.msg, HeaderName::SessionExpires), "3600");
    assert_eq!(header(&retry.msg, HeaderName::MinSe), "3600");
    assert_eq!(
        header(&retry.msg, HeaderName::CallId),
        header(&first.msg, HeaderName::CallId)
    );
    assert_eq!(
        header(&retry.msg, HeaderName::From),
        header(&first.msg, HeaderName::From)
    );
    assert_eq!(
        retry.msg.cseq().unwrap().seq,
        first.msg.cseq().unwrap().seq + 1
    );
    assert_eq!(body(&retry.msg), offer);
    assert!(
        h.responses().is_empty(),
        "the carrier sees nothing of the 422"
    );

    h.respond(
        &retry,
        200,
        "ms1",
        &[
            (
                "Contact",
                "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
            ),
            ("Session-Expires", "3600;refresher=uac"),
            ("Require", "timer"),
        ],
        Some(&teams_sdp()),
    );
    let (leg, _, ok) = h.response(200);
    assert_eq!(leg, LegId::Carrier);
    assert!(
        !ok.has_header(&HeaderName::SessionExpires),
        "the carrier asked for no timer"
    );
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    assert_eq!(
        h.armed(TimerKind::SessionRefresh(LegId::Teams)),
        Some(h.now + Duration::from_secs(1800))
    );
    assert_eq!(h.armed(TimerKind::SessionRefresh(LegId::Carrier)), None);

    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    assert_eq!(refresh.leg, LegId::Teams);
    assert_eq!(body(&refresh.msg), offer, "same SDP, same o= version");
    assert_eq!(
        header(&refresh.msg, HeaderName::SessionExpires),
        "3600;refresher=uac"
    );
    assert_eq!(header(&refresh.msg, HeaderName::MinSe), "3600");
    assert_eq!(
        header(&refresh.msg, HeaderName::CallId),
        header(&first.msg, HeaderName::CallId)
    );
    // Microsoft's answer moved its media: taken like any answer to our offer.
    h.respond(
        &refresh,
        200,
        "ms1",
        &[("Session-Expires", "3600;refresher=uac")],
        Some(&teams_sdp().replace("49152", "49200")),
    );
    assert_eq!(h.acks().len(), 1);
    assert_eq!(h.acks()[0].0, LegId::Teams);
    let moved: SocketAddr = "52.112.1.1:49200".parse().unwrap();
    assert!(
        h.media().iter().any(|c| matches!(
            c,
            MediaCommand::SetRemote { leg: crate::media::LegSide::Teams, rtp, .. } if *rtp == moved
        )),
        "{:#?}",
        h.media()
    );
}

/// A peer that keeps answering 422 is given up after two retries: the caller gets a final
/// error, no further INVITE goes out.
#[test]
fn row42_422_loop_is_bounded() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let mut invite = h.request(Method::Invite);
    for min_se in ["2000", "4000"] {
        h.respond(&invite, 422, "ms0", &[("Min-SE", min_se)], None);
        invite = h.request(Method::Invite);
        assert_eq!(header(&invite.msg, HeaderName::SessionExpires), min_se);
    }
    h.respond(&invite, 422, "ms0", &[("Min-SE", "8000")], None);
    assert!(h
        .requests()
        .iter()
        .all(|r| r.msg.method() != Some(&Method::Invite)));
    let finals: Vec<u16> = h
        .responses()
        .iter()
        .filter(|r| r.0 == LegId::Carrier)
        .filter_map(|r| r.2.status())
        .filter(|s| *s >= 300)
        .collect();
    assert_eq!(finals.len(), 1, "{:#?}", h.out);
}

/// Our refresh meets glare (491): retried after RFC 3261 §14.1's random wait (2.1-4 s on the
/// leg whose Call-ID we own); a 481 to the retry ends the call with BYE on both legs.
#[test]
fn row42_refresh_491_is_retried_and_481_ends_the_call() {
    let mut h = Harness::inbound(setup(), carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        200,
        "ms1",
        &[
            (
                "Contact",
                "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
            ),
            ("Session-Expires", "1800;refresher=uac"),
        ],
        Some(&teams_sdp()),
    );
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    h.respond(&refresh, 491, "ms1", &[], None);
    assert!(h.requests().is_empty());
    let retry_at = h.armed(TimerKind::SessionRefresh(LegId::Teams)).unwrap();
    assert!(retry_at >= h.now + Duration::from_millis(2100));
    assert!(retry_at <= h.now + Duration::from_secs(4));

    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let again = h.request(Method::Invite);
    assert_eq!(body(&again.msg), body(&refresh.msg));
    assert_eq!(
        again.msg.cseq().unwrap().seq,
        refresh.msg.cseq().unwrap().seq + 1
    );
    h.respond(&again, 481, "ms1", &[], None);
    let byes: Vec<LegId> = h
        .requests()
        .iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .map(|r| r.leg)
        .collect();
    assert_eq!(byes.len(), 2);
    assert!(h.records().iter().any(|r| matches!(
        r,
        CallRecord::Ended {
            reason: EndReason::SessionRefreshFailed,
            ..
        }
    )));
}

/// No answer to our refresh (transaction timeout): the dialog is gone, BYE on both legs.
#[test]
fn row42_refresh_timeout_ends_the_call() {
    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n");
    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: refresh.tx,
        reason: TxFailure::Timeout,
    });
    assert_eq!(
        h.requests()
            .iter()
            .filter(|r| r.msg.method() == Some(&Method::Bye))
            .count(),
        2
    );
}

/// The carrier leg runs its own timer: a carrier INVITE with Session-Expires and no
/// `Supported: timer` makes us the refresher there (RFC 4028 §9), with no `Require: timer`;
/// the carrier refresh carries the carrier-side SDP and Teams sees nothing of it.
#[test]
fn row42_carrier_session_expires_without_timer_support_makes_us_refresher() {
    let invite = with_headers(
        &carrier_invite(Some(&carrier_sdp())),
        "Session-Expires: 1800\r\n",
    );
    let mut h = Harness::inbound(setup(), invite);
    let teams = h.request(Method::Invite);
    h.respond(
        &teams,
        200,
        "ms1",
        &[(
            "Contact",
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>",
        )],
        Some(&teams_sdp()),
    );
    let (_, _, ok) = h.response(200);
    assert_eq!(
        header(&ok, HeaderName::SessionExpires),
        "1800;refresher=uas"
    );
    assert!(!ok.has_header(&HeaderName::Require));
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    assert_eq!(
        h.armed(TimerKind::SessionRefresh(LegId::Teams)),
        None,
        "Teams' 200 had no Session-Expires: no timer there"
    );
    h.fire(TimerKind::SessionRefresh(LegId::Carrier));
    let refresh = h.request(Method::Invite);
    assert_eq!(refresh.leg, LegId::Carrier);
    assert_eq!(h.requests().len(), 1);
    assert_eq!(body(&refresh.msg), body(&ok));
    assert_eq!(
        header(&refresh.msg, HeaderName::CallId),
        "carrier-call-1@10.0.0.1"
    );
    assert_eq!(
        header(&refresh.msg, HeaderName::SessionExpires),
        "1800;refresher=uac"
    );
    // The carrier answers without Session-Expires: its timer stops (RFC 4028 §7.2).
    h.respond(&refresh, 200, "c1", &[], Some(&carrier_sdp()));
    assert_eq!(h.acks().len(), 1);
    assert!(
        !h.out.iter().any(|o| matches!(
            o,
            Output::SetTimer {
                kind: TimerKind::SessionRefresh(_) | TimerKind::SessionExpiry(_),
                ..
            }
        )),
        "{:#?}",
        h.out
    );
    h.advance(Duration::from_secs(3600));
    for kind in session_timer_kinds() {
        h.input(Input::Timer(kind));
        assert!(h.requests().is_empty(), "{kind:?}");
    }
    assert!(!h.call.is_finished());
}

/// The timers of an ended call are gone with it.
#[test]
fn row42_session_timers_are_cancelled_when_the_call_ends() {
    let (mut h, invite) =
        answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n");
    assert!(h.armed(TimerKind::SessionRefresh(LegId::Teams)).is_some());
    // The carrier hangs up.
    let ok = h
        .all
        .iter()
        .find_map(|o| match o {
            Output::SendAck { msg, .. } => Some(parse(msg)),
            _ => None,
        })
        .unwrap();
    let bye = with_body(
        &format!(
            "BYE sip:+12065550123@192.0.2.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcbye\r\nMax-Forwards: 70\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n",
            header(&ok, HeaderName::To),
            header(&ok, HeaderName::From),
            header(&invite.msg, HeaderName::CallId)
        ),
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(3000),
        msg: bye,
    });
    let teams_bye = h.request(Method::Bye);
    h.respond(&teams_bye, 200, "x", &[], None);
    assert!(h.call.is_finished());
    for kind in session_timer_kinds() {
        assert_eq!(h.armed(kind), None, "{kind:?}");
    }
}

/// Glare (RFC 3261 §14.2): a re-INVITE from Teams while our refresh is open gets 491; the
/// 200 to our refresh still restarts the timer.
#[test]
fn row42_reinvite_during_our_refresh_gets_491() {
    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n");
    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    let theirs = teams_reinvite(&h, 2, "", Some(&teams_sdp()));
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(2003),
        msg: theirs,
    });
    let (_, tx, _) = h.response(491);
    assert_eq!(tx, TxId(2003));
    assert!(h.requests().is_empty());
    h.respond(
        &refresh,
        200,
        "t1",
        &[("Session-Expires", "90;refresher=uac")],
        Some(&teams_sdp()),
    );
    assert_eq!(h.acks().len(), 1);
    assert_eq!(
        h.armed(TimerKind::SessionRefresh(LegId::Teams)),
        Some(h.now + Duration::from_secs(45))
    );
}

/// RFC 3261 §14.1 with row 42: our refresh falls due while Teams' hold re-INVITE is being
/// relayed to the carrier. No second INVITE goes to Teams then; the refresh waits, and the
/// 2xx we give Teams' re-INVITE is itself the refresh that restarts the interval.
#[test]
fn row42_refresh_waits_while_a_relayed_reinvite_is_open_on_the_leg() {
    let (mut h, _) = answered_outbound("Supported: timer\r\nSession-Expires: 90;refresher=uas\r\n");
    h.advance(Duration::from_secs(40));
    let hold = teams_sdp()
        .replace("o=- 9 9 ", "o=- 9 10 ")
        .replace("a=sendrecv", "a=inactive");
    let reinvite = teams_reinvite(&h, 2, "", Some(&hold));
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(2101),
        msg: reinvite,
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Carrier);

    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    assert!(
        h.requests().is_empty(),
        "no refresh INVITE on a dialog with an INVITE open: {:#?}",
        h.out
    );
    let retry = h
        .armed(TimerKind::SessionRefresh(LegId::Teams))
        .expect("refresh re-armed");
    assert!(retry > h.now);
    assert!(!h.call.is_finished());

    // The carrier takes the hold: our 200 to Teams carries the timer and restarts it.
    h.respond(
        &relayed,
        200,
        "pstn1",
        &[],
        Some(&carrier_sdp().replace("a=sendrecv", "a=inactive")),
    );
    let ok = last_response(&h, LegId::Teams, 200);
    assert_eq!(header(&ok, HeaderName::CSeq), "2 INVITE");
    assert_eq!(header(&ok, HeaderName::SessionExpires), "90;refresher=uas");
    assert_eq!(
        h.armed(TimerKind::SessionRefresh(LegId::Teams)),
        Some(h.now + Duration::from_secs(45))
    );
    let ack = with_body(
        &format!(
            "ACK sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtack2\r\nMax-Forwards: 70\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: teams-call-1\r\nCSeq: 2 ACK\r\n",
            header(&ok, HeaderName::From),
            header(&ok, HeaderName::To)
        ),
        None,
    );
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack,
    });
    h.fire(TimerKind::SessionRefresh(LegId::Teams));
    let refresh = h.request(Method::Invite);
    assert_eq!(refresh.leg, LegId::Teams);
    assert_eq!(
        header(&refresh.msg, HeaderName::SessionExpires),
        "90;refresher=uac"
    );
}
