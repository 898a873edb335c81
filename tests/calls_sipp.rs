//! End-to-end B2BUA calls through the SBC (started in-process) with real SIPp peers: SIPp over
//! UDP as the carrier trunk (127.0.0.2) and SIPp over TCP as the Microsoft proxy (127.0.0.3;
//! SIPp has no TLS, so the test configuration sets the proxies' transport to tcp). Media flows
//! through the SBC's relay: the carrier SIPp replays a PCMU pcap, the far side echoes it
//! (`-rtp_echo`). On the Teams leg the media is SRTP; one test proves it with an independent
//! implementation (webrtc-srtp) on the test's own socket.
//!
//! Checks are SIPp exit codes (every `<ereg check_it>` in `tests/sipp/calls` must hold and
//! every message must come in order) plus the SBC's own metrics. Every wait is bounded;
//! nothing asserts a duration. Needs root for SIPp's pcap replay (raw socket).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const ACME_DID: &str = "+4930123450";
const GLOBEX_DID: &str = "+4940555100";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);

fn packets(lab: &Lab, direction: &str) -> f64 {
    lab.metric("media_packets_total", &[("direction", direction)])
}

/// Rows 19, 21, 32 and media: a PSTN call to Acme's DID reaches the Teams stand-in with
/// `+E.164;user=phone`, Acme's FQDN in Contact and an SRTP offer; the carrier gets a plain
/// RTP answer; the pcap flows carrier -> SBC -> (SRTP) Teams -> echo -> SBC -> carrier; the
/// carrier hangs up.
#[test]
fn row19_21_32_pstn_to_teams_call_relays_media_and_carrier_hangs_up() {
    let (lab, proxy_port) = lab_with_one_proxy(50000);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "3000")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);

    // The pcap went out of the Teams leg (encrypted) and the echo came back decrypted and
    // authenticated (a bad tag would be dropped, not forwarded).
    let to_teams = packets(&lab, "carrier_to_teams");
    let to_carrier = packets(&lab, "teams_to_carrier");
    assert!(
        to_teams >= f64::from(PCAP_PACKETS) * 0.8,
        "carrier -> Teams packets: {to_teams}"
    );
    assert!(
        to_carrier >= f64::from(PCAP_PACKETS) * 0.8,
        "Teams -> carrier packets: {to_carrier}"
    );
    assert_eq!(
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]),
        0.0
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    lab.wait_idle();
}

/// BYE from the Teams side of a PSTN -> Teams call reaches the carrier (own dialog, own
/// Call-ID) and both legs end.
#[test]
fn pstn_to_teams_call_teams_hangs_up() {
    let (lab, proxy_port) = lab_with_one_proxy(50200);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas_bye.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("HOLD_MS", "2500"),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_wait_bye.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER)],
    );
    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    assert!(packets(&lab, "carrier_to_teams") > 0.0);
    lab.wait_idle();
}

/// Row 21: an INVITE without SDP from the carrier still reaches Teams with an SDP offer
/// (RTP/SAVP with a key: the Teams scenario checks it); the carrier gets our offer in the
/// 200 and answers in its ACK; media then flows both ways.
#[test]
fn row21_delayed_offer_from_carrier_becomes_early_offer_to_teams() {
    let (lab, proxy_port) = lab_with_one_proxy(50400);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_delayed.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "3000")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    assert!(packets(&lab, "carrier_to_teams") >= f64::from(PCAP_PACKETS) * 0.8);
    assert!(packets(&lab, "teams_to_carrier") >= f64::from(PCAP_PACKETS) * 0.8);
    lab.wait_idle();
}

/// The carrier caller gives up while Teams rings: CANCEL travels to Teams, both sides get
/// 487, nothing is left behind.
#[test]
fn cancel_before_answer_reaches_teams_and_frees_the_call() {
    let (lab, proxy_port) = lab_with_one_proxy(50600);
    let mut teams = teams_uas(lab.path(), "teams_uas_cancel.xml", proxy_port, &[]);
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_cancel.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER)],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
    assert_eq!(
        lab.metric("calls_answered_total", &[]),
        0.0,
        "a cancelled call is never answered"
    );
}

/// Rows 8, 9, 10: proxies are tried in order; the first is a name (resolved for the attempt,
/// never pinned) whose port refuses connections, the second answers 503 + Retry-After, the
/// third answers: the call completes on the third.
#[test]
fn row8_9_10_failover_refused_then_503_retry_after_then_answer() {
    let refused = free_tcp_port(TEAMS_IP);
    let busy = free_tcp_port(TEAMS_IP);
    let good = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(50800);
    // The one call test that keeps the plain-TCP lab path (teams.lab_plain_tcp): connect
    // refused, 503 and answer straight from SIPp, no TLS stand-in in between.
    spec.tls_stand_in = false;
    spec.proxies = vec![
        LabSpec::tcp_proxy("localhost", refused),
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), busy),
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), good),
    ];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[
        format!("localhost:{refused}"),
        format!("{TEAMS_IP}:{busy}"),
        format!("{TEAMS_IP}:{good}"),
    ]);
    let mut busy_proxy = teams_uas(lab.path(), "teams_uas_503.xml", busy, &[]);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        good,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "1000")],
    );
    carrier.expect_success(LONG);
    busy_proxy.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// Admission limits: with Acme limited to one call, a second PSTN call while the first is
/// up gets 503 with Retry-After (the carrier may retry elsewhere); the first is unharmed.
#[test]
fn limits_exceeded_answer_503_with_retry_after() {
    let port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(51000);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), port)];
    spec.tenants[0].extra = "max_concurrent_calls = 1".into();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut first = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "4000")],
    );
    lab.wait_for("the first call to be answered", LONG, |lab| {
        lab.metric("calls_answered_total", &[]) >= 1.0
    });
    let retry_after_check = concat!(
        r#"      <ereg regexp="^ *[1-9][0-9]*" search_in="hdr" header="Retry-After:" check_it="true" assign_to="retry_after"/>"#,
        "\n",
        r#"      <log message="checked [$retry_after]"/>"#
    );
    let mut second = carrier_uac(
        &lab,
        "carrier_uac_status.xml",
        "+4930123451",
        &[
            ("CALLER", PSTN_CALLER),
            ("STATUS", "503"),
            ("CHECKS", retry_after_check),
        ],
    );
    second.expect_success(LONG);
    assert_eq!(
        lab.metric(
            "calls_rejected_total",
            &[("scope", "tenant"), ("reason", "concurrent")]
        ),
        1.0
    );
    first.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// Rows 31 and 32 with two tenants on one SBC: a PSTN call to Acme's DID reaches Teams with
/// Acme's FQDN in Contact and one to Globex's with Globex's; a Teams INVITE to
/// `globex.<base>` is routed with Globex's policy (its own numbers may call out, Acme's may
/// not: 403); an unknown subdomain gets 404, and so does a PSTN call to nobody's number.
#[test]
fn row31_32_two_tenants_on_one_sbc() {
    let (lab, proxy_port) = lab_with_one_proxy(51200);
    for (did, tenant) in [(ACME_DID, "acme"), (GLOBEX_DID, "globex")] {
        let mut teams = teams_uas(
            lab.path(),
            "teams_uas.xml",
            proxy_port,
            &[
                ("CALLED", did.trim_start_matches('+')),
                ("TENANT_RE", &regex_escape(&format!("{tenant}.{BASE}"))),
            ],
        );
        let mut carrier = carrier_uac(
            &lab,
            "carrier_uac.xml",
            did,
            &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
        );
        carrier.expect_success(LONG);
        teams.expect_success(LONG);
        lab.wait_idle();
        assert_eq!(
            lab.metric(
                "calls_answered_total",
                &[("tenant", tenant), ("direction", "inbound")]
            ),
            1.0
        );
    }

    // Globex's user calls out through globex.<base>.
    let media_sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let media_port = media_sink.local_addr().unwrap().port().to_string();
    let globex = format!("globex.{BASE}");
    let mut pstn = carrier_uas(
        &lab,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let mut teams = teams_uac(
        &lab,
        "globex-out",
        "teams_uac.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", "+4940555777"),
            ("TENANT", &globex),
            ("TENANT_RE", &regex_escape(&globex)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &media_port),
            ("CRYPTO", &new_inline_key()),
            ("HOLD_MS", "500"),
        ],
    );
    teams.expect_success(LONG);
    pstn.expect_success(LONG);
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "globex"), ("direction", "outbound")]
        ),
        1.0
    );

    // Globex's policy: Acme's number may not call out through Globex's trunk FQDN.
    let mut refused = teams_uac(
        &lab,
        "globex-screened",
        "teams_uac_status.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &globex),
            ("STATUS", "403"),
        ],
    );
    refused.expect_success(LONG);

    // A subdomain no tenant owns.
    let mut unknown = teams_uac(
        &lab,
        "unknown-tenant",
        "teams_uac_status.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &format!("initech.{BASE}")),
            ("STATUS", "404"),
        ],
    );
    unknown.expect_success(LONG);

    // A PSTN call to a number no tenant owns.
    let mut nobody = carrier_uac(
        &lab,
        "carrier_uac_status.xml",
        "+4989000000",
        &[("CALLER", PSTN_CALLER), ("STATUS", "404"), ("CHECKS", "")],
    );
    nobody.expect_success(LONG);
    lab.wait_idle();
}

/// A random SDES inline key (16-byte key + 14-byte salt, base64).
fn new_inline_key() -> String {
    let raw: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn srtp_context(inline: &str) -> Context {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .expect("SDES inline key is base64");
    assert_eq!(raw.len(), 30, "AES_CM_128 key + salt");
    Context::new(
        &raw[..16],
        &raw[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap()
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x7e57_0001u32.to_be_bytes());
    packet.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    packet
}

/// The SBC's Teams media address and key, as the Teams SIPp logged them from the 200.
fn logged_sbc_media(dir: &Path) -> Option<(SocketAddr, String)> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with("_logs.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let line = text.lines().find(|l| l.contains("SBC-MEDIA "))?;
        let mut fields = line.split("SBC-MEDIA ").nth(1)?.split_whitespace();
        let ip = fields.next()?;
        let port = fields.next()?;
        let key = fields.next()?.to_string();
        return Some((format!("{ip}:{port}").parse().ok()?, key));
    }
    None
}

/// Rows 15, 31 and SRTP on the Teams leg, checked independently: a Teams -> PSTN call to
/// `acme.<base>`; the Teams stand-in's media address is this test's socket, which encrypts
/// RTP with the key it offered (webrtc-srtp), the SBC decrypts it and relays plain RTP to
/// the carrier SIPp, whose echo comes back re-encrypted with the key the SBC answered;
/// webrtc-srtp decrypts it to the very payloads sent. Teams hangs up.
#[test]
fn row15_31_teams_to_pstn_call_with_srtp_checked_by_webrtc_srtp() {
    let (lab, _) = lab_with_one_proxy(51400);
    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let our_key = new_inline_key();
    let acme = format!("acme.{BASE}");
    let mut pstn = carrier_uas(
        &lab,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let mut teams = teams_uac(
        &lab,
        "acme-out",
        "teams_uac.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &socket.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &our_key),
            ("HOLD_MS", "4000"),
        ],
    );
    let deadline = Instant::now() + LONG;
    let (sbc_media, sbc_key) = loop {
        if let Some(found) = logged_sbc_media(&teams_dir(&lab, "acme-out")) {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the Teams stand-in never got a 200 with SDP; SIPp errors:\n{}",
            sipp_errors(&teams_dir(&lab, "acme-out"))
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(sbc_key, our_key, "the SBC must announce its own key");

    let mut encrypt = srtp_context(&our_key);
    let mut decrypt = srtp_context(&sbc_key);
    const SENT: u16 = 50;
    let mut echoed = std::collections::BTreeSet::new();
    let mut buf = [0u8; 2048];
    for seq in 1..=SENT {
        let protected = encrypt.encrypt_rtp(&rtp_packet(seq)).unwrap();
        socket.send_to(&protected, sbc_media).unwrap();
        // Read what has come back so far (20 ms pacing comes from the read timeout).
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            if let Ok(plain) = decrypt.decrypt_rtp(&buf[..n]) {
                let seq = u16::from_be_bytes([plain[2], plain[3]]);
                assert_eq!(&plain[12..], &rtp_packet(seq)[12..], "payload of {seq}");
                echoed.insert(seq);
            }
            if n > 0 {
                break;
            }
        }
    }
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && echoed.len() < usize::from(SENT) {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if let Ok(plain) = decrypt.decrypt_rtp(&buf[..n]) {
                let seq = u16::from_be_bytes([plain[2], plain[3]]);
                assert_eq!(&plain[12..], &rtp_packet(seq)[12..], "payload of {seq}");
                echoed.insert(seq);
            }
        }
    }
    assert!(
        echoed.len() >= usize::from(SENT) * 8 / 10,
        "only {} of {SENT} packets came back decryptable",
        echoed.len()
    );
    teams.expect_success(LONG);
    pstn.expect_success(LONG);
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    lab.wait_idle();
}

fn teams_dir(lab: &Lab, name: &str) -> std::path::PathBuf {
    std::fs::read_dir(lab.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| lab.path().join(name))
}
