//! The media half of the border through the whole SBC (in-process, docs/architecture.md
//! "Trust at the border"): a Teams -> PSTN call whose Teams media is this test's socket
//! (webrtc-srtp) and whose carrier is a SIPp UAS on 127.0.0.2 (the trunk) echoing RTP. Mid
//! call, RTP injected into the SBC's carrier-leg port from 127.0.0.66 (neither the SDP's
//! host nor in the trunk's networks) and plain RTP sent to the SBC's Teams-leg port are
//! dropped and counted, while the genuine stream keeps coming back. Every wait is bounded.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);
const FOREIGN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);

/// Where the SBC's carrier leg receives RTP: the c= and m= of the INVITE the carrier got.
fn sbc_carrier_media(carrier_dir: &std::path::Path) -> SocketAddr {
    let invite = received_messages(carrier_dir)
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the carrier got the SBC's INVITE");
    let ip = sdp_line(&invite, "c=")
        .and_then(|l| l.rsplit(' ').next())
        .expect("c= line");
    let port = sdp_line(&invite, "m=audio ")
        .and_then(|l| l.split(' ').nth(1))
        .expect("m= line");
    format!("{ip}:{port}").parse().expect("SBC media address")
}

/// RTP Bleed through the SBC: every injected packet is dropped as `unknown_source` (the
/// trunk's networks came from its configuration), none reaches Teams (each echo is checked
/// under the SBC's key by `echo_round`), and the genuine stream goes on between them. Plain
/// RTP to the Teams leg never passes either.
#[test]
fn rtp_bleed_injection_mid_call_is_dropped_and_the_genuine_stream_is_unaffected() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(52600);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let carrier_dir = lab.path().join("carrier-uas");
    let carrier_path = scenario(
        &carrier_dir,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAS (echo)",
        &carrier_dir,
        &carrier_path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let teams_key = new_inline_key();
    let acme = format!("acme.{BASE}");
    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join(format!("teams-media-{teams_port}"));
    let teams_path = scenario(
        &teams_dir,
        "teams_uac_media.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &teams_key),
            ("HOLD_MS", "12000"),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAC (media from the test)",
        &teams_dir,
        &teams_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            teams_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
        ],
    );

    let (sbc_teams_media, sbc_key) = wait_logged(&teams_dir, "SBC-MEDIA ");
    let sbc_carrier_media = sbc_carrier_media(&carrier_dir);
    let mut encrypt = srtp_context(&teams_key);
    let mut decrypt = srtp_context(&sbc_key);
    let (before, _) = echo_round(
        &socket,
        sbc_teams_media,
        &(1..=20).collect::<Vec<u16>>(),
        &mut encrypt,
        &mut decrypt,
        None,
    );
    assert!(before.len() >= 16, "only {} of 20 came back", before.len());

    let injector = UdpSocket::bind((FOREIGN_IP, 0)).unwrap();
    const INJECTED: u16 = 40;
    let mut after = std::collections::BTreeSet::new();
    for seq in 21..21 + INJECTED {
        // An injected packet right before each genuine one: were it forwarded, its echo
        // would fail `echo_round`'s payload check under the SBC's key.
        let mut forged = rtp_packet(seq);
        forged[12..].fill(0x55);
        injector.send_to(&forged, sbc_carrier_media).unwrap();
        let (echoed, _) = echo_round(
            &socket,
            sbc_teams_media,
            &[seq],
            &mut encrypt,
            &mut decrypt,
            None,
        );
        after.extend(echoed);
    }
    assert!(
        after.len() >= usize::from(INJECTED) * 8 / 10,
        "the genuine stream: only {} of {INJECTED} came back",
        after.len()
    );
    let dropped = |reason: &str| lab.metric("media_packets_dropped_total", &[("reason", reason)]);
    lab.wait_for("injected packets counted", LONG, |_| {
        dropped("unknown_source") >= f64::from(INJECTED)
    });
    assert_eq!(dropped("unknown_source"), f64::from(INJECTED));

    // Plain RTP to the Teams leg, from the Teams media address itself.
    const PLAIN: u16 = 5;
    for seq in 100..100 + PLAIN {
        socket.send_to(&rtp_packet(seq), sbc_teams_media).unwrap();
    }
    lab.wait_for("plain RTP on the Teams leg counted", LONG, |_| {
        dropped("srtp_auth") >= f64::from(PLAIN)
    });
    assert_eq!(dropped("srtp_auth"), f64::from(PLAIN));

    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    lab.wait_idle();
}
