//! Row 52 (media bypass with forking), call layer: on a PSTN -> Teams bypass call every
//! forked Teams client that got our offer may send a 183 with its own SDP (own ufrag/pwd,
//! own To-tag) and run ICE with us before the 200, which may come from any fork. While
//! Teams' SDP comes from a 18x, ICE-lite must accept the checks of every fork (remote ufrag
//! open); the 200's SDP names the winner, whose ufrag alone is accepted from then on.

use super::*;

const FORK_A_CONTACT: &str = "<sip:fa@sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls>";
const FORK_B_CONTACT: &str = "<sip:fb@sip-du-b-us.pstnhub.microsoft.com:5061;transport=tls>";

/// A forked client's SDP: its own address, ICE credentials and candidate.
fn fork_sdp(ip: &str, port: u16, ufrag: &str) -> String {
    teams_sdp()
        .replace("52.112.1.1", ip)
        .replace("49152", &port.to_string())
        .replace(
            "a=rtcp-mux\r\n",
            &format!(
                "a=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{ufrag}password0123456789xyz\r\n\
             a=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\n"
            ),
        )
}

fn fork_a_sdp() -> String {
    fork_sdp("52.112.1.1", 49152, "fkAa")
}

fn fork_b_sdp() -> String {
    fork_sdp("52.112.2.2", 50002, "fkBb")
}

fn bypass_inbound(policy: EarlyMediaPolicy) -> (Harness, SentReq) {
    let mut s = setup();
    s.teams.ice = Some(crate::sdp::IceCredentials::generate());
    s.carrier.trunk.early_media = policy;
    let h = Harness::inbound(s, carrier_invite(Some(&carrier_sdp())));
    let invite = h.request(Method::Invite);
    (h, invite)
}

/// The remote ufrags of the EnableIceLite commands of the last step, in order.
fn ice_remote_ufrags(h: &Harness) -> Vec<Option<String>> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::EnableIceLite {
                leg: LegSide::Teams,
                remote_ufrag,
                ..
            } => Some(remote_ufrag),
            _ => None,
        })
        .collect()
}

/// Index of the Teams SetRemote to `rtp` and of the first EnableIceLite in the last step.
fn remote_then_ice(h: &Harness, rtp: &str) -> (Option<usize>, Option<usize>) {
    let media = h.media();
    let rtp: SocketAddr = rtp.parse().unwrap();
    let remote = media.iter().position(
        |c| matches!(c, MediaCommand::SetRemote { leg: LegSide::Teams, rtp: r, .. } if *r == rtp),
    );
    let ice = media
        .iter()
        .position(|c| matches!(c, MediaCommand::EnableIceLite { .. }));
    (remote, ice)
}

/// 180 on fork A, 183+SDP on fork A, 183+SDP on fork B: each early SDP opens ICE-lite to
/// any remote agent.
fn two_forks_early(h: &mut Harness, invite: &SentReq) {
    h.respond(invite, 100, "", &[], None);
    h.respond(invite, 180, "fa", &[("Contact", FORK_A_CONTACT)], None);
    assert!(ice_remote_ufrags(h).is_empty());
    h.respond(
        invite,
        183,
        "fa",
        &[("Contact", FORK_A_CONTACT)],
        Some(&fork_a_sdp()),
    );
    assert_eq!(ice_remote_ufrags(h), vec![None], "fork A's 183");
    h.respond(
        invite,
        183,
        "fb",
        &[("Contact", FORK_B_CONTACT)],
        Some(&fork_b_sdp()),
    );
    assert_eq!(ice_remote_ufrags(h), vec![None], "fork B's 183");
}

fn answer_on(h: &mut Harness, invite: &SentReq, tag: &str, contact: &str, sdp: Option<&str>) {
    h.respond(invite, 200, tag, &[("Contact", contact)], sdp);
}

/// Under every early-media policy (the SDP reaches the carrier or is withheld), the 183s of
/// two forks leave the remote ufrag open and the 200 of the second fork narrows it to that
/// fork's ufrag, after pointing the Teams leg at that fork's address.
#[test]
fn row52_early_sdp_of_forks_opens_ice_and_the_200_names_the_winner() {
    for policy in [
        EarlyMediaPolicy::FirstOnly,
        EarlyMediaPolicy::Convert183To180,
        EarlyMediaPolicy::Relay,
    ] {
        let (mut h, invite) = bypass_inbound(policy);
        two_forks_early(&mut h, &invite);
        answer_on(&mut h, &invite, "fb", FORK_B_CONTACT, Some(&fork_b_sdp()));
        assert_eq!(
            ice_remote_ufrags(&h),
            vec![Some("fkBb".to_owned())],
            "{policy:?}"
        );
        let (remote, ice) = remote_then_ice(&h, "52.112.2.2:50002");
        assert!(
            matches!((remote, ice), (Some(r), Some(i)) if r < i),
            "{policy:?}: SetRemote to fork B, then EnableIceLite: {:?}",
            h.media()
        );
        assert_eq!(h.acks().len(), 1);
    }
}

/// A 200 from the fork that sent its SDP early and does not repeat it: the winner's early
/// ufrag becomes the only one accepted.
#[test]
fn row52_200_without_sdp_names_the_early_fork() {
    let (mut h, invite) = bypass_inbound(EarlyMediaPolicy::Relay);
    two_forks_early(&mut h, &invite);
    answer_on(&mut h, &invite, "fa", FORK_A_CONTACT, None);
    assert_eq!(ice_remote_ufrags(&h), vec![Some("fkAa".to_owned())]);
    let (remote, ice) = remote_then_ice(&h, "52.112.1.1:49152");
    assert!(matches!((remote, ice), (Some(r), Some(i)) if r < i));
}

/// The 200 may come from a fork that sent no 183: its ufrag is the one accepted.
#[test]
fn row52_200_from_a_fork_without_183() {
    let (mut h, invite) = bypass_inbound(EarlyMediaPolicy::FirstOnly);
    h.respond(
        &invite,
        183,
        "fa",
        &[("Contact", FORK_A_CONTACT)],
        Some(&fork_a_sdp()),
    );
    assert_eq!(ice_remote_ufrags(&h), vec![None]);
    answer_on(&mut h, &invite, "fb", FORK_B_CONTACT, Some(&fork_b_sdp()));
    assert_eq!(ice_remote_ufrags(&h), vec![Some("fkBb".to_owned())]);
}

/// Teams -> PSTN: Teams' SDP is its INVITE's offer, one agent; the carrier's 18x and 200 keep
/// ICE-lite strict to that agent's ufrag.
#[test]
fn row52_teams_to_pstn_keeps_the_offerers_ufrag() {
    let mut s = setup();
    s.teams.ice = Some(crate::sdp::IceCredentials::generate());
    let mut h = Harness::outbound(s, teams_invite("", &fork_a_sdp()));
    let invite = h.request(Method::Invite);
    assert_eq!(invite.leg, LegId::Carrier);
    h.respond(&invite, 183, "pstn1", &[], Some(&carrier_sdp()));
    assert_eq!(ice_remote_ufrags(&h), vec![Some("fkAa".to_owned())]);
    h.respond(&invite, 200, "pstn1", &[], Some(&carrier_sdp()));
    assert_eq!(ice_remote_ufrags(&h), vec![Some("fkAa".to_owned())]);
}

/// `forks_open` of the EnableIceLite commands of the last step, in order.
fn ice_forks_open(h: &Harness) -> Vec<bool> {
    h.media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::EnableIceLite {
                leg: LegSide::Teams,
                forks_open,
                ..
            } => Some(forks_open),
            _ => None,
        })
        .collect()
}

/// A Teams endpoint on a bypass trunk whose SDP has no ICE names no agent in its 183 nor in
/// its 200, yet only the 183 keeps the forks open: from the 200 on, an inbound key replaced
/// (a transfer's target, a re-INVITE) stops authenticating at once (found by
/// scripts/interop.sh, whose baresip clients do no ICE on loopback).
#[test]
fn row52_only_early_sdp_keeps_forks_open_even_without_ice() {
    let (mut h, invite) = bypass_inbound(EarlyMediaPolicy::FirstOnly);
    h.respond(&invite, 100, "", &[], None);
    h.respond(
        &invite,
        183,
        "fa",
        &[("Contact", FORK_A_CONTACT)],
        Some(&teams_sdp()),
    );
    assert_eq!(ice_remote_ufrags(&h), vec![None]);
    assert_eq!(ice_forks_open(&h), vec![true], "the 183");
    answer_on(&mut h, &invite, "fa", FORK_A_CONTACT, Some(&teams_sdp()));
    assert_eq!(ice_remote_ufrags(&h), vec![None], "no agent named");
    assert_eq!(ice_forks_open(&h), vec![false], "the 200 closes the forks");
}
