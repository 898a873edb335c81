//! Forked early dialogs on PSTN -> Teams calls (row 26) and the carrier trunk's early-media
//! policy (row 27): Microsoft rings several endpoints (one 180 per fork, each its own
//! To-tag), sends a 183 with SDP on one fork and the 200 on another. Media must follow the
//! 200's SDP, the ACK goes to the answering fork, a 2xx of another fork is ACKed and
//! released, the losing early dialogs end without BYE and leave nothing behind, and the
//! carrier sees the 18x its policy allows.

use super::*;
use crate::media::srtp::{KeyMaterial, SrtpSuite as MediaSuite};
use crate::media::SrtpKeys;

const FORK1_CONTACT: &str = "<sip:f1@sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>";
const FORK2_CONTACT: &str = "<sip:f2@sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>";
/// base64("ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"): fork 2's key, different from fork 1's.
const FORK2_KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

fn fork_sdp(ip: &str, port: u16, key: &str, payloads: &str) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 9 9 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP {payloads}\r\n"
    );
    for pt in payloads.split(' ') {
        sdp.push_str(match pt {
            "0" => "a=rtpmap:0 PCMU/8000\r\n",
            "8" => "a=rtpmap:8 PCMA/8000\r\n",
            _ => "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        });
    }
    sdp.push_str(&format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31\r\na=rtcp-mux\r\na=sendrecv\r\n"
    ));
    sdp
}

/// Fork 1 (answers): 52.112.1.1:49152 with the usual Teams key.
fn fork1_sdp() -> String {
    fork_sdp("52.112.1.1", 49152, TEAMS_KEY_B64, "0 8 101")
}

/// Fork 2 (early media only): another address, port and key.
fn fork2_sdp() -> String {
    fork_sdp("52.112.2.2", 50002, FORK2_KEY_B64, "0 8 101")
}

fn keys_of(b64: &str) -> SrtpKeys {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut key = [0u8; 16];
    let mut salt = [0u8; 14];
    key.copy_from_slice(&raw[..16]);
    salt.copy_from_slice(&raw[16..30]);
    SrtpKeys::new(MediaSuite::AesCm128HmacSha1_80, KeyMaterial::new(key, salt))
}

fn remote(leg: LegSide, rtp: &str) -> MediaCommand {
    MediaCommand::SetRemote {
        leg,
        rtp: rtp.parse().unwrap(),
        rtcp: None,
        rtcp_mux: true,
    }
}

fn teams_remotes(commands: &[MediaCommand]) -> Vec<SocketAddr> {
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

fn teams_inbound_keys(commands: &[MediaCommand]) -> Vec<SrtpKeys> {
    commands
        .iter()
        .filter_map(|c| match c {
            MediaCommand::SetSrtp {
                leg: LegSide::Teams,
                inbound: Some(keys),
                ..
            } => Some(keys.clone()),
            _ => None,
        })
        .collect()
}

/// Any command that gives the carrier leg a destination or a payload map.
fn touches_carrier(commands: &[MediaCommand]) -> bool {
    commands.iter().any(|c| {
        matches!(
            c,
            MediaCommand::SetRemote {
                leg: LegSide::Carrier,
                ..
            } | MediaCommand::SetPayloadMap { .. }
        )
    })
}

fn inbound_with(policy: EarlyMediaPolicy) -> (Harness, SentReq) {
    let mut setup = setup();
    setup.carrier.trunk.early_media = policy;
    let h = Harness::inbound(setup, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    (h, invite)
}

/// Everything the carrier received so far on its INVITE: (status, SDP body).
fn to_carrier(h: &Harness) -> Vec<(u16, String)> {
    h.all
        .iter()
        .filter_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                tx: TxId(1000),
                msg,
            } => {
                let msg = parse(msg);
                Some((msg.status().unwrap(), body(&msg)))
            }
            _ => None,
        })
        .collect()
}

fn sdp_origin(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("o="))
        .unwrap_or_default()
        .to_owned()
}

fn audio_line(sdp: &str) -> String {
    sdp.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_default()
        .to_owned()
}

/// The forked flow of doc 2.4: 180 on fork 1, 180 on fork 2, 183 with SDP on fork 2.
/// Returns the media commands the 183 produced.
fn ring_two_forks(h: &mut Harness, invite: &SentReq) -> Vec<MediaCommand> {
    h.respond(invite, 100, "", &[], None);
    h.respond(invite, 180, "fork1", &[("Contact", FORK1_CONTACT)], None);
    h.respond(invite, 180, "fork2", &[("Contact", FORK2_CONTACT)], None);
    h.respond(
        invite,
        183,
        "fork2",
        &[("Contact", FORK2_CONTACT)],
        Some(&fork2_sdp()),
    );
    h.media()
}

fn answer_on(h: &mut Harness, invite: &SentReq, tag: &str, contact: &str, sdp: &str) {
    h.respond(
        invite,
        200,
        tag,
        &[
            ("Contact", contact),
            (
                "Record-Route",
                "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>",
            ),
        ],
        Some(sdp),
    );
}

/// Teams' in-dialog request on the dialog of fork `tag` (From = Teams' side with that tag).
fn teams_request_on_fork(invite: &SentReq, method: &str, tag: &str) -> Message {
    let to_us = header(&invite.msg, HeaderName::From);
    let teams_side = format!(
        "{};tag={tag}",
        header(&invite.msg, HeaderName::To).trim_end()
    );
    peer_in_dialog_request(
        method,
        10,
        &header(&invite.msg, HeaderName::CallId),
        &teams_side,
        &to_us,
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKforkreq",
    )
}

/// Row 26 (relay policy, row 27): 2x180 on two forks, 183 with SDP on fork 2, 200 with other
/// SDP on fork 1. Media after the 200 points at fork 1's address and key, the ACK goes to
/// fork 1, the carrier's 200 keeps our address and the o= version of its 183 (same content).
#[test]
fn row26_row27_relay_media_follows_the_200_of_fork1_not_the_183_of_fork2() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Relay);
    let early = ring_two_forks(&mut h, &invite);
    assert_eq!(
        teams_remotes(&early),
        vec!["52.112.2.2:50002".parse().unwrap()]
    );
    assert_eq!(teams_inbound_keys(&early), vec![keys_of(FORK2_KEY_B64)]);

    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    let media = h.media();
    assert_eq!(
        teams_remotes(&media),
        vec!["52.112.1.1:49152".parse().unwrap()],
        "media moves to the answering fork: {media:#?}"
    );
    assert_eq!(teams_inbound_keys(&media), vec![keys_of(TEAMS_KEY_B64)]);
    assert!(media.contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.1:40000".parse().unwrap(),
        rtcp: Some("10.0.0.1:40001".parse().unwrap()),
        rtcp_mux: false,
    }));
    assert!(media
        .iter()
        .any(|c| matches!(c, MediaCommand::SetPayloadMap { .. })));

    // ACK on fork 1's dialog, to fork 1's route.
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(to_tag(&acks[0].2).as_deref(), Some("fork1"));
    assert_eq!(acks[0].0, LegId::Teams);

    // The carrier: 180, 180, 183 with SDP, 200 with the same SDP (same content, same o=).
    let seen = to_carrier(&h);
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![180, 180, 183, 200]);
    assert!(seen[0].1.is_empty() && seen[1].1.is_empty());
    assert!(seen[2].1.contains("m=audio 20000 RTP/AVP"), "{}", seen[2].1);
    assert_eq!(seen[3].1, seen[2].1, "same answer, same o= version");
    assert_eq!(h.call.state.early_dialog_count(), 0);
}

/// Row 26: the 200's SDP chooses another codec than the 183's: the carrier's 200 keeps our
/// address and port, and its o= version is one more than the 183's.
#[test]
fn row26_answer_with_other_content_bumps_the_origin_version_only() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Relay);
    ring_two_forks(&mut h, &invite);
    let pcma_only = fork_sdp("52.112.1.1", 49152, TEAMS_KEY_B64, "8 101");
    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &pcma_only);
    let seen = to_carrier(&h);
    let (early, ok) = (&seen[2].1, &seen[3].1);
    assert_ne!(early, ok);
    assert!(
        audio_line(ok).starts_with("m=audio 20000 RTP/AVP 8"),
        "{ok}"
    );
    assert!(ok.contains("c=IN IP4 192.0.2.10"));
    let version =
        |sdp: &str| -> u64 { sdp_origin(sdp).split(' ').nth(2).unwrap().parse().unwrap() };
    let session = |sdp: &str| sdp_origin(sdp).split(' ').nth(1).unwrap().to_owned();
    assert_eq!(session(early), session(ok));
    assert_eq!(version(ok), version(early) + 1);
}

/// Row 26: a 2xx from fork 2 after fork 1 answered is ACKed and released with BYE on fork 2's
/// dialog (its tag, its Contact); it changes nothing else. Requests of Teams on fork 2's
/// dialog are answered 481; fork 1's BYE ends the call.
#[test]
fn row26_late_200_of_fork2_is_acked_and_released_and_fork2_requests_get_481() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::FirstOnly);
    ring_two_forks(&mut h, &invite);
    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: carrier_ack(&h),
    });

    h.respond(
        &invite,
        200,
        "fork2",
        &[("Contact", FORK2_CONTACT)],
        Some(&fork2_sdp()),
    );
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(to_tag(&acks[0].2).as_deref(), Some("fork2"));
    assert_eq!(
        acks[0].2.request_uri().unwrap().raw(),
        &b"sip:f2@sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls"[..]
    );
    let bye = h.request(Method::Bye);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("fork2"));
    assert_eq!(bye.leg, LegId::Teams);
    assert_eq!(
        bye.msg.request_uri().unwrap().raw(),
        &b"sip:f2@sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls"[..]
    );
    assert_eq!(bye.msg.cseq().unwrap().seq, 2);
    assert!(h.responses().is_empty() && h.media().is_empty());
    h.respond(&bye, 200, "fork2", &[], None);
    assert!(h.out.is_empty(), "the released fork needs nothing more");

    for method in ["BYE", "INFO", "INVITE"] {
        let request = teams_request_on_fork(&invite, method, "fork2");
        h.input(Input::Request {
            leg: LegId::Teams,
            tx: TxId(5000),
            msg: request,
        });
        let (leg, tx, _) = h.response(481);
        assert_eq!((leg, tx), (LegId::Teams, TxId(5000)));
        assert!(h.requests().is_empty() && !h.finished());
    }

    let bye = teams_request_on_fork(&invite, "BYE", "fork1");
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5001),
        msg: bye,
    });
    h.response(200);
    let carrier_bye = h.request(Method::Bye);
    assert_eq!(carrier_bye.leg, LegId::Carrier);
}

/// Row 27, first_only: the carrier gets the first 18x only (the first 180), none of the later
/// 18x of any fork; the withheld 183 sets up the Teams side only (no carrier destination, no
/// payload map: nothing early reaches a carrier that was never given an answer); the 200 then
/// brings the answer and the full media.
#[test]
fn row27_first_only_relays_one_180_and_withholds_the_183() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::FirstOnly);
    let early = ring_two_forks(&mut h, &invite);
    assert_eq!(to_carrier(&h), vec![(180, String::new())]);
    assert_eq!(
        early,
        {
            let mut expected = vec![remote(LegSide::Teams, "52.112.2.2:50002")];
            expected.extend(
                early
                    .iter()
                    .filter(|c| matches!(c, MediaCommand::SetSrtp { .. }))
                    .cloned(),
            );
            expected
        },
        "Teams side only: {early:#?}"
    );
    assert_eq!(teams_inbound_keys(&early), vec![keys_of(FORK2_KEY_B64)]);
    assert!(!touches_carrier(&early));

    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    let media = h.media();
    assert_eq!(
        teams_remotes(&media),
        vec!["52.112.1.1:49152".parse().unwrap()]
    );
    assert_eq!(teams_inbound_keys(&media), vec![keys_of(TEAMS_KEY_B64)]);
    assert!(touches_carrier(&media));
    let seen = to_carrier(&h);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, 200);
    assert!(
        seen[1].1.contains("m=audio 20000 RTP/AVP 0"),
        "{}",
        seen[1].1
    );
    assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("fork1"));
}

/// Row 27, first_only, when an endpoint skips 180: the first 18x is the 183 with SDP, and it
/// goes to the carrier as it is (early media); the later 180 does not.
#[test]
fn row27_first_only_relays_a_first_183_with_its_sdp() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::FirstOnly);
    h.respond(&invite, 183, "fork2", &[], Some(&fork2_sdp()));
    assert!(touches_carrier(&h.media()));
    h.respond(&invite, 180, "fork1", &[], None);
    assert!(h.responses().is_empty());
    let seen = to_carrier(&h);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 183);
    assert!(seen[0].1.contains("m=audio 20000 RTP/AVP"));
    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    assert_eq!(
        teams_remotes(&h.media()),
        vec!["52.112.1.1:49152".parse().unwrap()]
    );
    assert_eq!(to_carrier(&h)[1].0, 200);
}

/// Row 27, convert_183_to_180: every 18x reaches the carrier, the 183 as 180, none with SDP;
/// the carrier leg gets no media destination before the 200.
#[test]
fn row27_convert_turns_the_183_into_180_without_sdp() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Convert183To180);
    let early = ring_two_forks(&mut h, &invite);
    let seen = to_carrier(&h);
    assert_eq!(
        seen,
        vec![
            (180, String::new()),
            (180, String::new()),
            (180, String::new())
        ]
    );
    assert_eq!(
        teams_remotes(&early),
        vec!["52.112.2.2:50002".parse().unwrap()]
    );
    assert!(!touches_carrier(&early));
    // One carrier dialog: every 180 has the same To tag.
    let tags: Vec<_> = h
        .all
        .iter()
        .filter_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Carrier,
                msg,
                ..
            } => to_tag(&parse(msg)),
            _ => None,
        })
        .collect();
    assert!(tags.windows(2).all(|w| w[0] == w[1]));

    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    let media = h.media();
    assert!(touches_carrier(&media));
    assert_eq!(
        teams_remotes(&media),
        vec!["52.112.1.1:49152".parse().unwrap()]
    );
    let seen = to_carrier(&h);
    assert_eq!(seen[3].0, 200);
    assert!(seen[3].1.contains("m=audio 20000 RTP/AVP"));
}

/// Rows 26, 27: a 183 without any 180 (convert policy: one 180 to the carrier), then the 200
/// on the same fork repeating no SDP: the answer is the one that fork sent early.
#[test]
fn row26_183_without_180_then_200_without_sdp_on_the_same_fork() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Convert183To180);
    h.respond(&invite, 183, "only", &[], Some(&fork2_sdp()));
    assert_eq!(to_carrier(&h), vec![(180, String::new())]);
    h.respond(&invite, 200, "only", &[("Contact", FORK2_CONTACT)], None);
    assert_eq!(
        teams_remotes(&h.media()),
        vec!["52.112.2.2:50002".parse().unwrap()]
    );
    assert!(touches_carrier(&h.media()));
    let (_, _, ok) = h.response(200);
    assert!(body(&ok).contains("m=audio 20000 RTP/AVP"));
    assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("only"));
    assert!(h.requests().is_empty(), "no BYE: the call is up");
}

/// Row 26: a 200 on a fork that never sent a 18x: answered directly, no 18x to the carrier
/// under any policy.
#[test]
fn row26_200_without_any_18x() {
    for policy in [
        EarlyMediaPolicy::FirstOnly,
        EarlyMediaPolicy::Convert183To180,
        EarlyMediaPolicy::Relay,
    ] {
        let (mut h, invite) = inbound_with(policy);
        answer_on(&mut h, &invite, "direct", FORK1_CONTACT, &fork1_sdp());
        let seen = to_carrier(&h);
        assert_eq!(seen.len(), 1, "{policy:?}");
        assert_eq!(seen[0].0, 200);
        assert_eq!(
            teams_remotes(&h.media()),
            vec!["52.112.1.1:49152".parse().unwrap()]
        );
        assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("direct"));
        assert_eq!(h.call.state.early_dialog_count(), 0);
    }
}

/// Row 27, relay: a second 183 with other SDP (media bypass: one per client) moves the Teams
/// side to it and reaches the carrier with the same answer (same o= version).
#[test]
fn row27_relay_second_183_of_another_fork_updates_media() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Relay);
    h.respond(&invite, 183, "fork1", &[], Some(&fork1_sdp()));
    h.respond(&invite, 183, "fork2", &[], Some(&fork2_sdp()));
    assert_eq!(
        teams_remotes(&h.media()),
        vec!["52.112.2.2:50002".parse().unwrap()]
    );
    let seen = to_carrier(&h);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1]);
}

/// Row 26: the carrier cancels while two forks ring (one with early media): one CANCEL for
/// the INVITE covers every fork; a 200 of a fork racing the CANCEL is ACKed and released on
/// its own dialog; after the 487 the call finishes with no timer left and no early dialog.
#[test]
fn row26_cancel_during_forked_early_dialogs() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::FirstOnly);
    ring_two_forks(&mut h, &invite);
    let cancel = with_body(
        "CANCEL sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcarrier1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:2065550123@10.0.0.1>;tag=c1\r\n\
         To: <sip:+14255550100@192.0.2.10>\r\n\
         Call-ID: carrier-call-1@10.0.0.1\r\n\
         CSeq: 1 CANCEL\r\n",
        None,
    );
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(2000),
        msg: cancel,
    });
    h.response(487);
    let teams_cancel = h.request(Method::Cancel);
    assert_eq!(teams_cancel.leg, LegId::Teams);
    assert!(!h.finished());

    // Fork 1 answered before the CANCEL reached Microsoft (so no 487 follows: the proxy
    // forwarded a 2xx as the INVITE's final response).
    answer_on(&mut h, &invite, "fork1", FORK1_CONTACT, &fork1_sdp());
    assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("fork1"));
    let bye = h.request(Method::Bye);
    assert_eq!(to_tag(&bye.msg).as_deref(), Some("fork1"));
    assert!(h.responses().is_empty(), "the carrier already has its 487");
    assert!(
        teams_remotes(&h.media()).is_empty(),
        "a cancelled call moves no media"
    );
    assert_eq!(h.call.state.early_dialog_count(), 0);

    // Fork 2's early dialog is gone: a request on it gets 481.
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(5000),
        msg: teams_request_on_fork(&invite, "INFO", "fork2"),
    });
    h.response(481);

    h.respond(&teams_cancel, 200, "fork2", &[], None);
    assert!(!h.finished());
    h.respond(&bye, 200, "fork1", &[], None);
    assert!(h.finished());
    // Every timer set was cancelled or fired: nothing is left for the driver to run.
    let mut pending: std::collections::HashSet<TimerKind> = Default::default();
    for o in &h.all {
        match o {
            Output::SetTimer { kind, .. } => {
                pending.insert(*kind);
            }
            Output::CancelTimer { kind } => {
                pending.remove(kind);
            }
            _ => {}
        }
    }
    assert!(pending.is_empty(), "timers left: {pending:?}");
    assert_eq!(
        to_carrier(&h).iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![180, 487]
    );
}

/// Row 26: the INVITE fails after forks rang (486): the early dialogs end with it, without
/// BYE, and the carrier gets the failure.
#[test]
fn row26_final_error_ends_every_early_dialog_without_bye() {
    let (mut h, invite) = inbound_with(EarlyMediaPolicy::Relay);
    ring_two_forks(&mut h, &invite);
    assert_eq!(h.call.state.early_dialog_count(), 2);
    h.respond(&invite, 486, "fork1", &[], None);
    assert_eq!(h.call.state.early_dialog_count(), 0);
    assert!(h.requests().is_empty(), "no BYE for early dialogs");
    h.response(486);
    assert!(h.finished());
}

/// Row 27 concerns what reaches the carrier: on Teams -> PSTN calls the 18x go to Microsoft,
/// which gets every one of them (a trunk's `first_only` does not apply). Forks of the
/// carrier's side are handled the same way as Microsoft's (row 26): the 200 of fork c1 wins
/// after fork c2's early media, and a request of the carrier on c2's dialog gets 481.
#[test]
fn row26_row27_teams_to_pstn_relays_every_18x_and_carrier_forks_end() {
    let mut s = setup();
    every_trunk(&mut s, |t| t.early_media = EarlyMediaPolicy::FirstOnly);
    let mut h = Harness::outbound(s, teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        180,
        "c1",
        &[("Contact", "<sip:c1@10.0.0.1>")],
        None,
    );
    h.respond(
        &invite,
        180,
        "c2",
        &[("Contact", "<sip:c2@10.0.0.2>")],
        None,
    );
    let other_carrier_sdp = carrier_sdp().replace("10.0.0.1", "10.0.0.2");
    h.respond(&invite, 183, "c2", &[], Some(&other_carrier_sdp));
    let to_teams: Vec<(u16, bool)> = h
        .all
        .iter()
        .filter_map(|o| match o {
            Output::SendResponse {
                leg: LegId::Teams,
                msg,
                ..
            } => {
                let msg = parse(msg);
                Some((msg.status().unwrap(), !msg.body().is_empty()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(to_teams, vec![(180, false), (180, false), (183, true)]);

    h.respond(
        &invite,
        200,
        "c1",
        &[("Contact", "<sip:c1@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    assert!(h.media().contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.1:40000".parse().unwrap(),
        rtcp: Some("10.0.0.1:40001".parse().unwrap()),
        rtcp_mux: false,
    }));
    assert_eq!(to_tag(&h.acks()[0].2).as_deref(), Some("c1"));

    let carrier_request = |tag: &str| {
        peer_in_dialog_request(
            "BYE",
            5,
            &header(&invite.msg, HeaderName::CallId),
            &format!("{};tag={tag}", header(&invite.msg, HeaderName::To)),
            &header(&invite.msg, HeaderName::From),
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKc2bye",
        )
    };
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6000),
        msg: carrier_request("c2"),
    });
    assert_eq!(h.response(481).0, LegId::Carrier);
    assert!(h.requests().is_empty());
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6001),
        msg: carrier_request("c1"),
    });
    assert_eq!(h.response(200).0, LegId::Carrier);
    assert_eq!(h.request(Method::Bye).leg, LegId::Teams);
}
