//! End-to-end SDES (rows 43, 44, 48; doc 3.1) through the SBC (in-process) with SIPp as
//! Microsoft behind the mutual-TLS stand-in and SIPp as the carrier trunk echoing RTP; the
//! Teams media end is the test's own socket with webrtc-srtp, an SRTP implementation nobody
//! here wrote.
//!
//! Checks are SIPp exit codes (each `<ereg check_it>` must hold) and the decrypted echo.
//! Every wait is bounded; nothing asserts a duration.

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);

/// Rows 43, 44 (and 48 for events): Microsoft offers over `UDP/TLS/RTP/SAVP` with a DTLS
/// fingerprint, a crypto line asking for unencrypted SRTCP (which the SBC refuses by not
/// echoing it), a usable one, and telephone-event at 8000 and 16000 Hz. The carrier gets plain
/// RTP with the 8000 Hz event only; Microsoft gets an SDES answer over RTP/SAVP with one
/// crypto line under tag 2 and no DTLS attributes; and the call connects on that line: RTP
/// encrypted by webrtc-srtp under the tag-2 key reaches the carrier SIPp, whose echo comes
/// back under the key the SBC answered, decrypted by webrtc-srtp to the very payloads sent.
#[test]
fn row43_udp_tls_offer_with_a_refused_crypto_line_connects_on_the_usable_one() {
    let (lab, _) = lab_with_one_proxy(58800);
    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let carrier_dir = lab.path().join("carrier-uas");
    let carrier_checks = sipp_checks(
        &[
            ("body", r"m=audio [0-9]+ RTP/AVP 0 8 101[^ 0-9]"),
            ("body", "a=rtpmap:101 telephone-event/8000"),
        ],
        &[
            ("body", "crypto|fingerprint|setup|SAVP"),
            ("body", "telephone-event/16000"),
        ],
    );
    let path = scenario(
        &carrier_dir,
        "carrier_uas_checked.xml",
        &[
            ("CHECKS", &carrier_checks),
            ("CODEC", "PCMU"),
            ("CODEC_PT", "0"),
        ],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp(
        "carrier SIPp UAS",
        &carrier_dir,
        &path,
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

    let usable = new_inline_key();
    let refused = new_inline_key();
    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join("teams-uac");
    let tenant = format!("acme.{BASE}");
    let path = scenario_in(
        "sdes",
        &teams_dir,
        "teams_uac_sdes.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &tenant),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &usable),
            ("REFUSED_KEY", &refused),
            ("HOLD_MS", "4000"),
        ],
    );
    let mut teams = sipp(
        "Teams SIPp UAC",
        &teams_dir,
        &path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            teams_port.to_string(),
        ],
    );
    let (sbc_media, sbc_key) = wait_logged(&teams_dir, "SBC-MEDIA ");
    assert_ne!(sbc_key, usable, "the SBC announces its own key");

    const SENT: u16 = 50;
    let seqs: Vec<u16> = (1..=SENT).collect();
    let (echoed, _) = echo_round(
        &socket,
        sbc_media,
        &seqs,
        &mut srtp_context(&usable),
        &mut srtp_context(&sbc_key),
        None,
    );
    assert!(
        echoed.len() >= usize::from(SENT) * 8 / 10,
        "only {} of {SENT} packets came back decryptable: {echoed:?}",
        echoed.len()
    );
    // Under the refused line's key nothing of ours decrypts at the SBC: only tag 2 is in use.
    let (under_refused, _) = echo_round(
        &socket,
        sbc_media,
        &(1001..=1010).collect::<Vec<u16>>(),
        &mut srtp_context(&refused),
        &mut srtp_context(&sbc_key),
        None,
    );
    assert_eq!(under_refused, BTreeSet::new());
    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    lab.wait_idle();
}
