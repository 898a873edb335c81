//! Re-INVITEs from either side (rows 39-41, 53): relay with SDP rewritten, hold as
//! `a=inactive` towards Teams, our media address and port fixed for the whole call, re-key,
//! ICE restart, glare, rejections, timeouts, refreshes and ACKs of our 2xx.

use super::*;
use crate::media::srtp::KeyMaterial;
use crate::media::LegSide;

const NEW_TEAMS_KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz";
const TEAMS_ICE: &str = "a=ice-ufrag:TeAm\r\na=ice-pwd:teamsicepassword0123456789\r\n\
                         a=candidate:1 1 UDP 2130706431 52.112.1.1 49152 typ host\r\n";
const RESTART_ICE: &str = "a=ice-ufrag:NeWu\r\na=ice-pwd:restartedpassword0123456789\r\n\
                           a=candidate:1 1 UDP 2130706431 52.112.1.1 49152 typ host\r\n";

/// Our fixed media addresses of `setup()` (row 41).
const TEAMS_C: &str = "c=IN IP4 198.51.100.10";
const TEAMS_M: &str = "m=audio 30000 ";
const CARRIER_C: &str = "c=IN IP4 192.0.2.10";
const CARRIER_M: &str = "m=audio 20000 ";

/// Teams SDP with `o=` version `version` and the direction line replaced.
fn teams_sdp_v(version: u32, direction: &str) -> String {
    teams_sdp()
        .replace("o=- 9 9 ", &format!("o=- 9 {version} "))
        .replace("a=sendrecv", direction)
}

fn carrier_sdp_v(version: u32, direction: &str) -> String {
    carrier_sdp()
        .replace("o=carrier 1 1 ", &format!("o=carrier 1 {version} "))
        .replace("a=sendrecv", direction)
}

/// A re-INVITE from Teams inside the dialog of our INVITE `invite` (inbound call).
fn teams_reinvite(invite: &SentReq, cseq: u32, sdp: Option<&str>) -> Message {
    with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtre{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>\r\n",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId)
        ),
        sdp,
    )
}

/// A re-INVITE from the carrier inside its dialog (inbound call).
fn carrier_reinvite(h: &Harness, cseq: u32, sdp: Option<&str>) -> Message {
    let ok = carrier_ack(h);
    with_body(
        &format!(
            "INVITE sip:+14255550100@192.0.2.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKcre{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:2065550123@10.0.0.1>;tag=c1\r\nTo: {}\r\n\
             Call-ID: carrier-call-1@10.0.0.1\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:2065550123@10.0.0.1:5060>\r\n",
            header(&ok, HeaderName::To)
        ),
        sdp,
    )
}

/// The peer's ACK for our 2xx `ok` to its re-INVITE.
fn ack_for(ok: &Message, cseq: u32, sdp: Option<&str>) -> Message {
    with_body(
        &format!(
            "ACK sip:sbc@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\n",
            header(ok, HeaderName::From),
            header(ok, HeaderName::To),
            header(ok, HeaderName::CallId),
        ),
        sdp,
    )
}

fn line<'a>(sdp: &'a str, prefix: &str) -> &'a str {
    sdp.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {sdp}"))
}

fn origin_version(sdp: &str) -> u64 {
    line(sdp, "o=").split(' ').nth(2).unwrap().parse().unwrap()
}

fn crypto_key(sdp: &str) -> String {
    let l = line(sdp, "a=crypto:");
    let start = l.find("inline:").unwrap() + 7;
    l[start..].split('|').next().unwrap().to_owned()
}

/// Row 41 (and 40): `sdp`, sent on `leg`, carries our fixed address and port, never 0.0.0.0.
fn assert_our_media(leg: LegId, sdp: &str) {
    let (c, m) = match leg {
        LegId::Teams => (TEAMS_C, TEAMS_M),
        LegId::Carrier => (CARRIER_C, CARRIER_M),
    };
    assert!(
        sdp.contains(&format!("{c}\r\n")),
        "row 41 c= on {leg:?}: {sdp}"
    );
    assert!(sdp.contains(m), "row 41 m= port on {leg:?}: {sdp}");
    assert!(!sdp.contains("0.0.0.0"), "row 40: {sdp}");
    assert_eq!(sdp.matches("c=").count(), 1, "{sdp}");
}

/// Every SDP the call sent so far, per leg, has our fixed address and port (row 41).
fn assert_all_sent_sdp_stable(h: &Harness) {
    let mut seen = 0;
    for o in &h.all {
        let (leg, msg) = match o {
            Output::SendRequest { leg, msg, .. } | Output::SendResponse { leg, msg, .. } => {
                (*leg, parse(msg))
            }
            Output::SendAck { leg, msg, .. } => (*leg, parse(msg)),
            _ => continue,
        };
        let sdp = body(&msg);
        if !sdp.is_empty() {
            assert_our_media(leg, &sdp);
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected several SDPs, saw {seen}");
}

fn holds(h: &Harness) -> Vec<(LegSide, bool)> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::SetHold { leg, on_hold } => Some((leg, on_hold)),
            _ => None,
        })
        .collect()
}

fn srtp(h: &Harness) -> Vec<(Option<SrtpKeys>, Option<SrtpKeys>)> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::SetSrtp {
                leg: LegSide::Teams,
                inbound,
                outbound,
            } => Some((inbound, outbound)),
            _ => None,
        })
        .collect()
}

fn key_material(b64: &str) -> KeyMaterial {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut key = [0u8; 16];
    let mut salt = [0u8; 14];
    key.copy_from_slice(&bytes[..16]);
    salt.copy_from_slice(&bytes[16..30]);
    KeyMaterial::new(key, salt)
}

/// Carrier hold (row 39): relayed to Teams as a=inactive on our same address, Teams' 2xx
/// ACKed, both legs on hold in the media core, the carrier answered; resume the same way.
#[test]
fn row39_row41_carrier_hold_and_resume_are_relayed_to_teams() {
    let (mut h, invite) = answered_inbound();
    let first_offer = body(&invite.msg);
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6001),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    assert!(h.responses().is_empty(), "the carrier waits for Teams");
    let hold = h.request(Method::Invite);
    assert_eq!(hold.leg, LegId::Teams);
    assert_eq!(
        header(&hold.msg, HeaderName::CallId),
        header(&invite.msg, HeaderName::CallId)
    );
    assert_eq!(header(&hold.msg, HeaderName::CSeq), "2 INVITE");
    assert_eq!(to_tag(&hold.msg).as_deref(), Some("ms1"));
    let offer = body(&hold.msg);
    assert!(offer.contains("a=inactive\r\n"), "row 39: {offer}");
    assert!(!offer.contains("a=sendonly") && !offer.contains("a=recvonly"));
    assert_our_media(LegId::Teams, &offer);
    assert_eq!(line(&offer, "c="), line(&first_offer, "c="));
    assert_eq!(
        line(&offer, "m=").split(' ').nth(1),
        line(&first_offer, "m=").split(' ').nth(1)
    );
    assert_eq!(origin_version(&offer), origin_version(&first_offer) + 1);
    let hold_key = crypto_key(&offer);
    assert_ne!(
        hold_key,
        crypto_key(&first_offer),
        "each offer: a fresh key of ours"
    );

    h.respond(&hold, 200, "ms1", &[], Some(&teams_sdp_v(10, "a=inactive")));
    let acks = h.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, LegId::Teams);
    assert_eq!(header(&acks[0].2, HeaderName::CSeq), "2 ACK");
    let hold_state = holds(&h);
    assert!(
        hold_state.contains(&(LegSide::Carrier, true)),
        "{hold_state:?}"
    );
    assert!(
        hold_state.contains(&(LegSide::Teams, true)),
        "{hold_state:?}"
    );
    // Our offer's key from now on; Teams' unchanged key (the media core keeps its context).
    let installed = srtp(&h);
    assert_eq!(installed.len(), 1, "{:?}", h.media());
    let (inbound, outbound) = installed[0].clone();
    assert_eq!(inbound.unwrap().key, key_material(TEAMS_KEY_B64));
    assert_eq!(outbound.unwrap().key, key_material(&hold_key));
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(6001)));
    let answer = body(&ok);
    assert_our_media(LegId::Carrier, &answer);
    assert!(answer.contains("a=inactive"), "{answer}");
    assert!(!answer.contains("a=crypto"));
    let carrier_ack = ack_for(&ok, 2, None);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: carrier_ack,
    });
    assert!(
        h.out.is_empty(),
        "the ACK of our 2xx is consumed: {:?}",
        h.out
    );

    // Resume.
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6002),
        msg: carrier_reinvite(&h, 3, Some(&carrier_sdp_v(3, "a=sendrecv"))),
    });
    let resume = h.request(Method::Invite);
    assert_eq!(header(&resume.msg, HeaderName::CSeq), "3 INVITE");
    let offer = body(&resume.msg);
    assert!(offer.contains("a=sendrecv"), "{offer}");
    assert!(!offer.contains("a=inactive"));
    assert_our_media(LegId::Teams, &offer);
    assert_eq!(origin_version(&offer), origin_version(&first_offer) + 2);
    let resume_key = crypto_key(&offer);
    assert!(resume_key != hold_key && resume_key != crypto_key(&first_offer));
    h.respond(
        &resume,
        200,
        "ms1",
        &[],
        Some(&teams_sdp_v(11, "a=sendrecv")),
    );
    let hold_state = holds(&h);
    assert!(hold_state.contains(&(LegSide::Carrier, false)));
    assert!(hold_state.contains(&(LegSide::Teams, false)));
    let installed = srtp(&h);
    assert_eq!(installed.len(), 1, "{:?}", h.media());
    assert_eq!(
        installed[0].1.as_ref().map(|k| &k.key),
        Some(&key_material(&resume_key))
    );
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(6002));
    assert!(body(&ok).contains("a=sendrecv"));
    assert!(!h.finished());
    assert_all_sent_sdp_stable(&h);
}

/// Teams hold (a=inactive): relayed to the carrier on the carrier dialog, our carrier-side
/// address unchanged, answered back to Teams as a=inactive with our unchanged key.
#[test]
fn row39_teams_hold_is_relayed_to_the_carrier() {
    let (mut h, invite) = answered_inbound();
    let first_offer = body(&invite.msg);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6101),
        msg: teams_reinvite(&invite, 2, Some(&teams_sdp_v(10, "a=inactive"))),
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Carrier);
    assert_eq!(
        relayed.msg.request_uri().unwrap().raw().as_ref(),
        b"sip:2065550123@10.0.0.1:5060"
    );
    assert_eq!(
        header(&relayed.msg, HeaderName::CallId),
        "carrier-call-1@10.0.0.1"
    );
    assert_eq!(
        header(&relayed.msg, HeaderName::Route),
        "<sip:10.0.0.99;lr>"
    );
    assert_eq!(header(&relayed.msg, HeaderName::CSeq), "1 INVITE");
    assert_eq!(to_tag(&relayed.msg).as_deref(), Some("c1"));
    let offer = body(&relayed.msg);
    assert_our_media(LegId::Carrier, &offer);
    assert!(offer.contains("a=inactive"), "{offer}");
    assert!(!offer.contains("a=crypto") && !offer.contains("RTP/SAVP"));
    assert!(
        !offer.contains("52.112.1.1"),
        "no Teams address crosses: {offer}"
    );
    h.respond(
        &relayed,
        200,
        "c1",
        &[("Contact", "<sip:2065550123@10.0.0.1:5060>")],
        Some(&carrier_sdp_v(2, "a=inactive")),
    );
    assert_eq!(h.acks().len(), 1);
    assert_eq!(h.acks()[0].0, LegId::Carrier);
    assert_eq!(header(&h.acks()[0].2, HeaderName::CSeq), "1 ACK");
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(6101)));
    let answer = body(&ok);
    assert_our_media(LegId::Teams, &answer);
    assert!(answer.contains("a=inactive"));
    assert_eq!(
        crypto_key(&answer),
        crypto_key(&first_offer),
        "our key stays"
    );
    assert!(srtp(&h).is_empty());
    assert!(holds(&h).contains(&(LegSide::Teams, true)));
    assert!(holds(&h).contains(&(LegSide::Carrier, true)));
}

/// Row 40: a carrier hold with c=0.0.0.0 reaches Teams as a=inactive on our real address.
#[test]
fn row40_zero_address_hold_reaches_teams_as_inactive_with_our_address() {
    let (mut h, _invite) = answered_inbound();
    let sdp = carrier_sdp_v(2, "a=sendrecv").replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6201),
        msg: carrier_reinvite(&h, 2, Some(&sdp)),
    });
    let hold = h.request(Method::Invite);
    let offer = body(&hold.msg);
    assert_our_media(LegId::Teams, &offer);
    assert!(offer.contains("a=inactive"), "{offer}");
    h.respond(&hold, 200, "ms1", &[], Some(&teams_sdp_v(10, "a=inactive")));
    assert!(holds(&h).contains(&(LegSide::Carrier, true)));
    assert_eq!(h.response(200).1, TxId(6201));
}

/// Teams re-keys: answered here (the carrier sees nothing of SRTP) with a new key of ours,
/// and the media core gets fresh SRTP contexts with Teams' new inbound key.
#[test]
fn teams_rekey_installs_the_new_inbound_key_and_answers_with_a_fresh_key() {
    let (mut h, invite) = answered_inbound();
    let first_offer = body(&invite.msg);
    let rekey = teams_sdp_v(10, "a=sendrecv").replace(TEAMS_KEY_B64, NEW_TEAMS_KEY_B64);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6301),
        msg: teams_reinvite(&invite, 2, Some(&rekey)),
    });
    assert!(h.requests().is_empty(), "nothing the carrier sees changed");
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(6301)));
    let answer = body(&ok);
    assert_our_media(LegId::Teams, &answer);
    let our_new_key = crypto_key(&answer);
    assert_ne!(our_new_key, crypto_key(&first_offer));
    assert!(answer.contains("a=sendrecv"));
    let installed = srtp(&h);
    assert_eq!(installed.len(), 1, "{:?}", h.media());
    let (inbound, outbound) = installed[0].clone();
    assert_eq!(inbound.unwrap().key, key_material(NEW_TEAMS_KEY_B64));
    assert_eq!(outbound.unwrap().key, key_material(&our_new_key));

    // The same SDP again (a session refresh): no new SRTP contexts, same answer.
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack_for(&ok, 2, None),
    });
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6302),
        msg: teams_reinvite(&invite, 3, Some(&rekey)),
    });
    let (_, _, again) = h.response(200);
    assert_eq!(body(&again), answer, "refresh: same SDP, same o= version");
    assert!(srtp(&h).is_empty());
    assert!(h.requests().is_empty());
}

/// Keystream reuse: Teams re-keys in its answer to our relayed offer. Our outbound context
/// used to be rebuilt with our old key and rollover counter 0; now our offer carried a fresh
/// key of ours, and that key (never used before) is what the new outbound context gets, next
/// to Teams' new inbound key. A Teams answer that fails keeps everything as it was.
#[test]
fn row43_row53_keystream_reuse_teams_rekey_in_an_answer_gets_a_fresh_key_of_ours() {
    let (mut h, invite) = answered_inbound();
    let first_offer = body(&invite.msg);
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6401),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    let hold = h.request(Method::Invite);
    let offered_key = crypto_key(&body(&hold.msg));
    assert_ne!(offered_key, crypto_key(&first_offer));
    let rekeyed = teams_sdp_v(10, "a=inactive").replace(TEAMS_KEY_B64, NEW_TEAMS_KEY_B64);
    h.respond(&hold, 200, "ms1", &[], Some(&rekeyed));
    let installed = srtp(&h);
    assert_eq!(installed.len(), 1, "{:?}", h.media());
    let (inbound, outbound) = installed[0].clone();
    assert_eq!(inbound.unwrap().key, key_material(NEW_TEAMS_KEY_B64));
    let outbound = outbound.unwrap().key;
    assert_eq!(outbound, key_material(&offered_key));
    assert_ne!(outbound, key_material(&crypto_key(&first_offer)));
    let (_, tx, _) = h.response(200);
    assert_eq!(tx, TxId(6401));

    // Resume, which Teams rejects: no new contexts; the next offer's key is fresh again.
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6402),
        msg: carrier_reinvite(&h, 3, Some(&carrier_sdp_v(3, "a=sendrecv"))),
    });
    let resume = h.request(Method::Invite);
    let rejected_key = crypto_key(&body(&resume.msg));
    h.respond(&resume, 488, "ms1", &[], None);
    assert!(srtp(&h).is_empty(), "{:?}", h.media());
    h.response(488);
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6403),
        msg: carrier_reinvite(&h, 4, Some(&carrier_sdp_v(4, "a=sendrecv"))),
    });
    let again = h.request(Method::Invite);
    let next_key = crypto_key(&body(&again.msg));
    assert!(next_key != rejected_key && next_key != offered_key);
}

fn bypass_call() -> (Harness, SentReq) {
    let mut s = setup();
    s.teams.ice = Some(crate::sdp::IceCredentials::generate());
    let mut h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    let answer = teams_sdp().replace("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{TEAMS_ICE}"));
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
    let ack = carrier_ack(&h);
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack,
    });
    (h, invite)
}

/// Row 53: an ICE restart from Teams (new ufrag/pwd) gets new local credentials in our
/// answer, the same candidate, and EnableIceLite with the new credentials.
#[test]
fn row53_ice_restart_gets_new_local_credentials() {
    let (mut h, invite) = bypass_call();
    let first_offer = body(&invite.msg);
    let old_ufrag = line(&first_offer, "a=ice-ufrag:").to_owned();
    let old_pwd = line(&first_offer, "a=ice-pwd:").to_owned();
    let restart = teams_sdp_v(10, "a=sendrecv")
        .replace("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{RESTART_ICE}"));
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6401),
        msg: teams_reinvite(&invite, 2, Some(&restart)),
    });
    assert!(h.requests().is_empty());
    let (_, _, ok) = h.response(200);
    let answer = body(&ok);
    assert_our_media(LegId::Teams, &answer);
    let ufrag = line(&answer, "a=ice-ufrag:").to_owned();
    let pwd = line(&answer, "a=ice-pwd:").to_owned();
    assert_ne!(ufrag, old_ufrag, "RFC 8445 §9: new ufrag");
    assert_ne!(pwd, old_pwd, "RFC 8445 §9: new pwd");
    assert_eq!(
        line(&answer, "a=candidate:"),
        line(&first_offer, "a=candidate:"),
        "same candidate (row 41)"
    );
    assert!(answer.contains("a=ice-lite"));
    let enabled: Vec<_> = h
        .media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::EnableIceLite {
                leg: LegSide::Teams,
                local_ufrag,
                local_pwd,
                remote_ufrag,
                forks_open: false,
            } => Some((local_ufrag, local_pwd, remote_ufrag)),
            _ => None,
        })
        .collect();
    assert_eq!(enabled.len(), 1);
    assert_eq!(format!("a=ice-ufrag:{}", enabled[0].0), ufrag);
    assert_eq!(format!("a=ice-pwd:{}", enabled[0].1), pwd);
    assert_eq!(enabled[0].2.as_deref(), Some("NeWu"));
    assert!(srtp(&h).is_empty(), "keys unchanged: contexts kept");

    // After nomination Teams re-INVITEs with the same credentials: ours stay too.
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack_for(&ok, 2, None),
    });
    let nominated = teams_sdp_v(11, "a=sendrecv").replace(
        "a=rtcp-mux\r\n",
        &format!("a=rtcp-mux\r\n{RESTART_ICE}a=remote-candidates:1 198.51.100.10 30000\r\n"),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6402),
        msg: teams_reinvite(&invite, 3, Some(&nominated)),
    });
    let (_, _, ok) = h.response(200);
    assert_eq!(line(&body(&ok), "a=ice-ufrag:"), ufrag);
    assert_eq!(line(&body(&ok), "a=ice-pwd:"), pwd);
}

/// RFC 3261 §14.2 glare: with our relayed re-INVITE pending on Teams, a re-INVITE from Teams
/// gets 491; a second one from the carrier gets 500 with Retry-After.
#[test]
fn glare_while_a_relayed_reinvite_is_pending() {
    let (mut h, invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6501),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    let pending = h.request(Method::Invite);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(6502),
        msg: teams_reinvite(&invite, 2, Some(&teams_sdp_v(10, "a=inactive"))),
    });
    let (leg, tx, _) = h.response(491);
    assert_eq!((leg, tx), (LegId::Teams, TxId(6502)));
    assert!(h.requests().is_empty());
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6503),
        msg: carrier_reinvite(&h, 3, Some(&carrier_sdp_v(3, "a=sendrecv"))),
    });
    let (leg, tx, resp) = h.response(500);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(6503)));
    assert!(resp.has_header(&HeaderName::RetryAfter));
    // The pending one completes normally.
    h.respond(
        &pending,
        200,
        "ms1",
        &[],
        Some(&teams_sdp_v(10, "a=inactive")),
    );
    assert_eq!(h.response(200).1, TxId(6501));
}

/// The other leg refuses: 488 stays 488, 491 stays 491, media untouched, call goes on; the
/// same change can be offered again later.
#[test]
fn rejected_relay_answers_the_offerer_and_keeps_media() {
    let (mut h, _invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6601),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    let hold = h.request(Method::Invite);
    h.respond(&hold, 488, "ms1", &[], None);
    let (leg, tx, _) = h.response(488);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(6601)));
    assert!(h.media().is_empty(), "media stays as it was");
    assert!(
        h.acks().is_empty(),
        "a non-2xx is ACKed by the transaction layer"
    );
    assert!(!h.finished());

    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6602),
        msg: carrier_reinvite(&h, 3, Some(&carrier_sdp_v(3, "a=sendonly"))),
    });
    let again = h.request(Method::Invite);
    assert_eq!(header(&again.msg, HeaderName::CSeq), "3 INVITE");
    assert!(body(&again.msg).contains("a=inactive"));
    h.respond(&again, 491, "ms1", &[], None);
    assert_eq!(h.response(491).1, TxId(6602));
    assert!(h.media().is_empty());
    assert!(!h.finished());
}

/// No answer from Teams to the relayed re-INVITE: the carrier gets 500 and the call stays.
#[test]
fn relayed_reinvite_timeout_answers_500_and_keeps_the_call() {
    let (mut h, _invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6701),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    let hold = h.request(Method::Invite);
    h.advance(Duration::from_secs(32));
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: hold.tx,
        reason: TxFailure::Timeout,
    });
    let (leg, tx, _) = h.response(500);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(6701)));
    assert!(h.requests().is_empty(), "no BYE");
    assert!(h.media().is_empty());
    assert!(!h.finished());
    // A later change is relayed again.
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6702),
        msg: carrier_reinvite(&h, 3, Some(&carrier_sdp_v(3, "a=sendonly"))),
    });
    assert_eq!(h.request(Method::Invite).leg, LegId::Teams);
}

/// A re-INVITE without SDP (RFC 4028 refresh, delayed offer) is answered here with our last
/// SDP; the answer in the ACK updates the media, and the carrier's new address is used.
#[test]
fn reinvite_without_sdp_is_answered_locally_and_the_ack_answer_applies() {
    let (mut h, _invite) = answered_inbound();
    let last_to_carrier = body(&carrier_ack_ok(&h));
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6801),
        msg: carrier_reinvite(&h, 2, None),
    });
    assert!(h.requests().is_empty(), "no relay");
    assert!(h.media().is_empty());
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(6801)));
    assert_eq!(body(&ok), last_to_carrier, "our last SDP, same o= version");
    let moved = carrier_sdp_v(2, "a=sendrecv").replace("m=audio 40000", "m=audio 40100");
    h.input(Input::Ack {
        leg: LegId::Carrier,
        msg: ack_for(&ok, 2, Some(&moved)),
    });
    assert!(h.media().contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.1:40100".parse().unwrap(),
        rtcp: Some("10.0.0.1:40101".parse().unwrap()),
        rtcp_mux: false,
    }));
    assert!(!h.finished());
}

/// The carrier moves its media (new port, same codecs and direction): answered here with
/// our unchanged SDP towards the carrier, Teams never hears of it.
#[test]
fn carrier_address_change_is_answered_locally() {
    let (mut h, _invite) = answered_inbound();
    let moved = carrier_sdp_v(2, "a=sendrecv").replace("c=IN IP4 10.0.0.1", "c=IN IP4 10.0.0.7");
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(6901),
        msg: carrier_reinvite(&h, 2, Some(&moved)),
    });
    assert!(h.requests().is_empty());
    let (_, _, ok) = h.response(200);
    assert_our_media(LegId::Carrier, &body(&ok));
    assert!(h.media().contains(&MediaCommand::SetRemote {
        leg: LegSide::Carrier,
        rtp: "10.0.0.7:40000".parse().unwrap(),
        rtcp: Some("10.0.0.7:40001".parse().unwrap()),
        rtcp_mux: false,
    }));
    assert!(srtp(&h).is_empty());
}

/// RFC 3261 §14.2: our 2xx to a re-INVITE never ACKed -> BYE on both legs.
#[test]
fn missing_ack_for_a_reinvite_2xx_ends_the_call() {
    let (mut h, invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7001),
        msg: teams_reinvite(&invite, 2, Some(&teams_sdp())),
    });
    h.response(200);
    h.advance(Duration::from_secs(32));
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: TxId(7001),
        reason: TxFailure::AckTimeout,
    });
    let byes: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.msg.method() == Some(&Method::Bye))
        .collect();
    assert_eq!(byes.len(), 2);
    assert!(h.records().contains(&CallRecord::Ended {
        reason: EndReason::AckTimeout,
        duration: Duration::from_secs(32),
    }));
}

/// The ACK of our re-INVITE 2xx is consumed; a stale AckTimeout afterwards changes nothing.
#[test]
fn ack_for_a_reinvite_2xx_is_consumed() {
    let (mut h, invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7101),
        msg: teams_reinvite(&invite, 2, Some(&teams_sdp())),
    });
    let (_, _, ok) = h.response(200);
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack_for(&ok, 2, None),
    });
    assert!(h.out.is_empty());
    h.input(Input::TxFailed {
        leg: LegId::Teams,
        tx: TxId(7101),
        reason: TxFailure::AckTimeout,
    });
    assert!(h.out.is_empty(), "{:?}", h.out);
}

/// BYE while a relayed re-INVITE is pending: the offerer's re-INVITE gets 487 (RFC 3261
/// §15.1.2) and a late 2xx to ours is still ACKed.
#[test]
fn bye_during_a_relayed_reinvite_answers_it_487() {
    let (mut h, invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(7201),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    let hold = h.request(Method::Invite);
    let bye = peer_in_dialog_request(
        "BYE",
        3,
        &header(&invite.msg, HeaderName::CallId),
        "<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1",
        &header(&invite.msg, HeaderName::From),
        "SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKtbye",
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7202),
        msg: bye,
    });
    let (leg, tx, _) = h.response(487);
    assert_eq!((leg, tx), (LegId::Carrier, TxId(7201)));
    let carrier_bye = h.request(Method::Bye);
    assert!(!h.finished());
    h.respond(&hold, 200, "ms1", &[], Some(&teams_sdp_v(10, "a=inactive")));
    assert_eq!(h.acks().len(), 1, "a late 2xx is ACKed");
    h.respond(&carrier_bye, 200, "c1", &[], None);
    assert!(h.finished());
}

/// PSTN <- Teams call (Teams is the caller): a Teams hold is relayed to the carrier callee.
#[test]
fn outbound_call_teams_hold_is_relayed_to_the_carrier() {
    let mut h = Harness::outbound(setup(), teams_invite("", &teams_sdp()));
    let invite = h.request(Method::Invite);
    h.respond(
        &invite,
        200,
        "p1",
        &[("Contact", "<sip:x@10.0.0.1>")],
        Some(&carrier_sdp()),
    );
    let ok = h.response(200).2;
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack_for(&ok, 1, None),
    });
    let reinvite = with_body(
        &format!(
            "INVITE sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKoh\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;tag=t1\r\n\
             To: {}\r\nCall-ID: teams-call-1\r\nCSeq: 2 INVITE\r\n",
            header(&ok, HeaderName::To)
        ),
        Some(&teams_sdp_v(10, "a=inactive")),
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7301),
        msg: reinvite,
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Carrier);
    assert_eq!(header(&relayed.msg, HeaderName::CSeq), "2 INVITE");
    assert_eq!(
        relayed.msg.request_uri().unwrap().raw().as_ref(),
        b"sip:x@10.0.0.1"
    );
    assert!(body(&relayed.msg).contains("a=inactive"));
    h.respond(
        &relayed,
        200,
        "p1",
        &[],
        Some(&carrier_sdp_v(2, "a=inactive")),
    );
    let (leg, tx, ok) = h.response(200);
    assert_eq!((leg, tx), (LegId::Teams, TxId(7301)));
    assert!(body(&ok).contains("a=inactive"));
    assert_all_sent_sdp_stable(&h);
}

/// The last 200 we sent the carrier.
fn carrier_ack_ok(h: &Harness) -> Message {
    h.all
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
        .unwrap()
}

/// RFC 3261 §12.2.2: a re-INVITE with an old CSeq is refused with 500 and nothing moves.
#[test]
fn reinvite_with_an_old_cseq_gets_500() {
    let (mut h, invite) = answered_inbound();
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7401),
        msg: teams_reinvite(&invite, 5, Some(&teams_sdp())),
    });
    let (_, _, ok) = h.response(200);
    h.input(Input::Ack {
        leg: LegId::Teams,
        msg: ack_for(&ok, 5, None),
    });
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7402),
        msg: teams_reinvite(&invite, 4, Some(&teams_sdp_v(10, "a=inactive"))),
    });
    assert_eq!(h.response(500).1, TxId(7402));
    assert!(h.requests().is_empty() && h.media().is_empty());
}

/// While a transfer (REFER, row 37) swaps the Teams leg, a re-INVITE from either side gets 491.
#[test]
fn reinvite_during_a_transfer_gets_491() {
    let (mut h, invite) = answered_inbound();
    let refer = with_body(
        &format!(
            "REFER sip:+12065550123@acme.sbc1.example.net:5068;transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKrefer1\r\nMax-Forwards: 70\r\n\
             From: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>;tag=ms1\r\n\
             To: {}\r\nCall-ID: {}\r\nCSeq: 1 REFER\r\n\
             Refer-To: <sip:+14255550199@sip.pstnhub.microsoft.com;user=phone>\r\n",
            header(&invite.msg, HeaderName::From),
            header(&invite.msg, HeaderName::CallId),
        ),
        None,
    );
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7501),
        msg: refer,
    });
    h.response(202);
    h.input(Input::Request {
        leg: LegId::Carrier,
        tx: TxId(7502),
        msg: carrier_reinvite(&h, 2, Some(&carrier_sdp_v(2, "a=sendonly"))),
    });
    assert_eq!(h.response(491).1, TxId(7502));
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7503),
        msg: teams_reinvite(&invite, 2, Some(&teams_sdp_v(10, "a=inactive"))),
    });
    assert_eq!(h.response(491).1, TxId(7503));
    assert!(h.requests().is_empty() && h.media().is_empty());
}

/// Microsoft offers every codec it has where it answered one: a re-key offer with a longer
/// codec list still stays on the Teams leg, answered with the carrier's codecs only.
#[test]
fn teams_offer_with_more_codecs_is_answered_locally() {
    let (mut h, invite) = answered_inbound();
    let offer = teams_sdp_v(10, "a=sendrecv")
        .replace("RTP/SAVP 0 8 101", "RTP/SAVP 9 0 8 101")
        .replace("a=rtpmap:0 PCMU", "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU")
        .replace(TEAMS_KEY_B64, NEW_TEAMS_KEY_B64);
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7601),
        msg: teams_reinvite(&invite, 2, Some(&offer)),
    });
    assert!(h.requests().is_empty(), "the carrier hears nothing");
    let (_, _, ok) = h.response(200);
    let answer = body(&ok);
    assert_our_media(LegId::Teams, &answer);
    assert!(
        line(&answer, "m=").starts_with("m=audio 30000 RTP/SAVP 0 8 101"),
        "{answer}"
    );
    assert_eq!(srtp(&h).len(), 1);
}

/// The codec in use is no longer offered: the carrier must renegotiate, so it is relayed.
#[test]
fn teams_offer_dropping_the_codec_in_use_is_relayed() {
    let (mut h, invite) = answered_inbound();
    let offer = teams_sdp_v(10, "a=sendrecv")
        .replace("RTP/SAVP 0 8 101", "RTP/SAVP 8 101")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7701),
        msg: teams_reinvite(&invite, 2, Some(&offer)),
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Carrier);
    let carrier_offer = body(&relayed.msg);
    assert!(
        line(&carrier_offer, "m=").starts_with("m=audio 20000 RTP/AVP 8 101"),
        "{carrier_offer}"
    );
    h.respond(
        &relayed,
        200,
        "c1",
        &[],
        Some(&carrier_sdp_v(2, "a=sendrecv").replace("RTP/AVP 0 8 101", "RTP/AVP 8 101")),
    );
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(7701));
    assert!(line(&body(&ok), "m=").starts_with("m=audio 30000 RTP/SAVP 8 101"));
    assert!(h
        .media()
        .iter()
        .any(|c| matches!(c, MediaCommand::SetPayloadMap { .. })));
}

/// Row 53 with a relay: Teams holds and restarts ICE in one offer; the hold goes to the
/// carrier, and Teams' answer carries new ICE-lite credentials once the carrier answered.
#[test]
fn row53_ice_restart_inside_a_relayed_hold() {
    let (mut h, invite) = bypass_call();
    let first_offer = body(&invite.msg);
    let offer = teams_sdp_v(10, "a=inactive")
        .replace("a=rtcp-mux\r\n", &format!("a=rtcp-mux\r\n{RESTART_ICE}"));
    h.input(Input::Request {
        leg: LegId::Teams,
        tx: TxId(7801),
        msg: teams_reinvite(&invite, 2, Some(&offer)),
    });
    let relayed = h.request(Method::Invite);
    assert_eq!(relayed.leg, LegId::Carrier);
    assert!(
        !body(&relayed.msg).contains("ice-"),
        "ICE stays on the Teams leg"
    );
    h.respond(
        &relayed,
        200,
        "c1",
        &[],
        Some(&carrier_sdp_v(2, "a=inactive")),
    );
    let (_, tx, ok) = h.response(200);
    assert_eq!(tx, TxId(7801));
    let answer = body(&ok);
    assert_our_media(LegId::Teams, &answer);
    assert!(answer.contains("a=inactive"));
    assert_ne!(
        line(&answer, "a=ice-ufrag:"),
        line(&first_offer, "a=ice-ufrag:")
    );
    assert_eq!(
        line(&answer, "a=candidate:"),
        line(&first_offer, "a=candidate:")
    );
    assert!(h.media().iter().any(|c| matches!(
        c,
        MediaCommand::EnableIceLite { remote_ufrag: Some(r), local_ufrag, .. }
            if r == "NeWu" && answer.contains(&format!("a=ice-ufrag:{local_ufrag}"))
    )));
}
