//! End-to-end transfer by REFER from Microsoft (rows 36-38) through the SBC (in-process) with
//! real SIPp peers: the carrier over UDP (127.0.0.2) calls a Teams DID; the Microsoft proxy
//! stand-in (SIPp over TCP on 127.0.0.3, the test config sets the proxy transport to tcp)
//! answers, sends a REFER with a 400-character Refer-To (x-m/x-t, no user part) and checks
//! the 202 and the NOTIFY sequence; it then receives the SBC's new INVITE as a second call
//! (new Call-ID) and checks its Request-URI and Referred-By byte for byte with `ereg
//! check_it`, answers it and BYEs the old dialog. The carrier leg stays up through all of it
//! (its scenario accepts no message during the transfer) and hangs up at the end, which must
//! reach the new Teams dialog. Every check is a SIPp exit code or an SBC metric; every wait
//! is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if ".+*?()[]{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A scenario from `tests/sipp/refer` with its `@NAME@` placeholders replaced.
fn refer_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/refer")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let unfilled = ["@CALLE", "@TENANT", "@HOLD_MS@", "@REFER", "@CALLER@"];
    assert!(
        !unfilled.iter().any(|p| text.contains(p)),
        "unfilled placeholder in {file}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// SIPp with `calls` calls (the Teams stand-in sees the transfer's INVITE as a second call).
fn sipp_calls(name: &str, dir: &Path, scenario: &Path, calls: u32, args: &[String]) -> Peer {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args(["-m", &calls.to_string()])
        .args([
            "-nostdin",
            "-trace_err",
            "-trace_logs",
            "-trace_msg",
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn sipp ({e}); install it with `apt-get install -y sip-tester`")
        });
    Peer::from_child(name, child, dir)
}

/// Every message SIPp sent and received in `dir`, one line each (direction, start line,
/// Call-ID, CSeq and any sipfrag), for a failure report.
fn ladder(dir: &Path) -> String {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .ends_with("_messages.log")
        {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .replace("\r\n", "\n");
        for block in text.split("----------------------------------------------- ") {
            let Some((head, message)) = block.split_once("\n\n") else {
                continue;
            };
            let arrow = if head.contains("message received") {
                "<-"
            } else {
                "->"
            };
            let message = message.trim_start();
            let line = |prefix: &str| {
                message
                    .lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push(format!(
                "{arrow} {} | {} | {} | {}",
                message.lines().next().unwrap_or_default(),
                line("Call-ID:"),
                line("CSeq:"),
                line("SIP/2.0 ")
            ));
        }
    }
    out.join("\n")
}

/// Refer-To as Microsoft sends it for a Teams user target: proxy FQDN, no user part, x-m
/// (target MRI) and x-t (tenant), padded with a further parameter to exactly 400 characters.
fn refer_to_400() -> String {
    let head = "<sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:fce2a4b8-1c3d-4e5f-8a9b-0c1d2e3f4a5b;x-t=72f988bf-86f1-41af-91ab-2d7cd011db47;x-ti=";
    let value = format!("{head}{}>", "7".repeat(400 - head.len() - 1));
    assert_eq!(value.len(), 400);
    value
}

const REFERRED_BY: &str = "<sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:0a1b2c3d-0000-4e5f-8a9b-111122223333;x-t=72f988bf-86f1-41af-91ab-2d7cd011db47;x-ti=b1c2d3e4f5a6;x-tt=sip%3A%2B4930123450%40sip.pstnhub.microsoft.com>";

/// Rows 36, 37, 38: REFER from the Teams side of an answered PSTN -> Teams call: 202, NOTIFY
/// 100/180/200 (terminated) on the old dialog, a new INVITE back to the Microsoft proxy with
/// the Refer-To URI as Request-URI and Referred-By byte for byte and the tenant FQDN in
/// Contact; Microsoft's BYE on the old dialog releases only that leg; the carrier leg is never
/// touched and its final BYE reaches the new Teams dialog.
#[test]
fn row36_37_38_refer_from_teams_transfers_the_call_and_keeps_the_carrier_leg() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(51800);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let refer_to = refer_to_400();
    let refer_uri = refer_to.trim_start_matches('<').trim_end_matches('>');
    let teams_dir = lab.path().join("teams-refer");
    let teams_path = refer_scenario(
        &teams_dir,
        "teams_uas_refer.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("REFER_TO", &refer_to),
            ("REFER_URI_RE", &regex_escape(refer_uri)),
            ("REFERRED_BY", REFERRED_BY),
            (
                "REFERRED_BY_RE",
                &regex_escape(REFERRED_BY).replace('<', "&lt;"),
            ),
            ("REFER_AFTER_MS", "1000"),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_calls(
        "Teams SIPp UAS (REFER)",
        &teams_dir,
        &teams_path,
        2,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            proxy_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            teams_media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = refer_scenario(
        &carrier_dir,
        "carrier_uac.xml",
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "6000")],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), PCAP_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_calls(
        "carrier SIPp UAC (transfer)",
        &carrier_dir,
        &carrier_path,
        1,
        &[
            lab.udp_addr().to_string(),
            "-s".into(),
            ACME_DID.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            carrier_media.to_string(),
        ],
    );

    let carrier_status = carrier.wait(LONG);
    let teams_status = teams.wait(LONG);
    assert!(
        carrier_status.is_some_and(|s| s.success()) && teams_status.is_some_and(|s| s.success()),
        "carrier SIPp: {carrier_status:?}, Teams SIPp: {teams_status:?}\ncarrier errors:\n{}\nTeams errors:\n{}\nTeams ladder:\n{}",
        carrier.errors(),
        teams.errors(),
        ladder(&teams_dir)
    );

    let teams_received = received_messages(&teams_dir);
    assert!(
        teams_received
            .iter()
            .any(|m| m.starts_with("SIP/2.0 202 ") && m.contains("CSeq: 1 REFER")),
        "Microsoft never got the 202 to its REFER"
    );

    // One call, answered once, ended once by the carrier (the old Teams leg's BYE did not
    // end it).
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    assert!(lab.metric("media_packets_total", &[("direction", "carrier_to_teams")]) > 0.0);
    lab.wait_idle();
}

/// Row 38: Teams transfers an answered PSTN -> Teams call and the target rings with a 180
/// without SDP (no early media). The carrier, whose confirmed dialog gets no 18x, hears the
/// SBC's ringback on its media socket before the target's 200: PCMU (its codec), 425 Hz (a
/// Goertzel filter finds the tone in every frame), continuing the stream it was receiving
/// (same SSRC, the next sequence numbers, the marker on the first frame). When the target
/// answers, its media replaces the ringback.
#[test]
fn row38_carrier_hears_ringback_while_the_transfer_target_rings_without_sdp() {
    use std::net::UdpSocket;
    use teams_sbc::media::inband_dtmf::{tone_share, G711};

    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(53800);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let carrier_media = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    let teams_media = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    for socket in [&carrier_media, &teams_media] {
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
    }
    let (teams_key, target_key) = (new_inline_key(), new_inline_key());
    let teams_addr = teams_media.local_addr().unwrap();
    let teams_dir = lab.path().join("teams-ringback");
    let teams_path = scenario_in(
        "refer",
        &teams_dir,
        "teams_uas_refer_ringback.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("MEDIA_IP", &teams_addr.ip().to_string()),
            ("MEDIA_PORT", &teams_addr.port().to_string()),
            ("CRYPTO", &teams_key),
            ("CRYPTO2", &target_key),
            ("REFER_TO", &refer_to_400()),
            ("REFER_AFTER_MS", "2500"),
            ("RING_MS", "4000"),
        ],
    );
    let mut teams = sipp_calls(
        "Teams SIPp UAS (REFER, ringing without SDP)",
        &teams_dir,
        &teams_path,
        2,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            proxy_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            free_port_pair(TEAMS_IP).to_string(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_addr = carrier_media.local_addr().unwrap();
    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = scenario_in(
        "refer",
        &carrier_dir,
        "carrier_uac_media.xml",
        &[
            ("CALLER", PSTN_CALLER),
            ("MEDIA_IP", &carrier_addr.ip().to_string()),
            ("MEDIA_PORT", &carrier_addr.port().to_string()),
            ("HOLD_MS", "12000"),
        ],
    );
    let mut carrier = sipp_calls(
        "carrier SIPp UAC (transfer, media by the test)",
        &carrier_dir,
        &carrier_path,
        1,
        &[
            lab.udp_addr().to_string(),
            "-s".into(),
            ACME_DID.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            carrier_port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            free_port_pair(CARRIER_IP).to_string(),
        ],
    );
    let (sbc_teams, _) = wait_logged(&teams_dir, "SBC-OFFER ");
    let (_, profile) = wait_logged(&carrier_dir, "SBC-ANSWER ");
    assert_eq!(profile, "RTP/AVP");

    const TEAMS_SSRC: u32 = 0x7ea3_0038;
    const TARGET_SSRC: u32 = 0x7ea3_0039;
    const SPEECH: [u8; 160] = [0x33; 160];
    let frame = |ssrc: u32, seq: u16| {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&SPEECH);
        p
    };
    let seq_of = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
    let ssrc_of = |p: &[u8]| u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let is_rtp = |p: &Vec<u8>| p.len() >= 12 && !(192..=223).contains(&p[1]);

    // The original Teams leg speaks before the REFER: ten frames reach the carrier.
    let mut encrypt = srtp_context(&teams_key);
    for seq in 100..110u16 {
        let protected = encrypt.encrypt_rtp(&frame(TEAMS_SSRC, seq)).unwrap();
        teams_media.send_to(&protected, sbc_teams).unwrap();
    }
    let mut heard: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + LONG;
    while heard.iter().filter(|p| p[12..] == SPEECH).count() < 10 {
        assert!(
            Instant::now() < deadline,
            "Teams' speech never reached the carrier"
        );
        heard.extend(drain(&carrier_media).into_iter().filter(is_rtp));
    }
    let last_speech = seq_of(heard.last().unwrap());

    // The REFER, the target's 180 without SDP: the ringback, half a second of it.
    let mut tone: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + LONG;
    while tone.len() < 25 {
        assert!(
            Instant::now() < deadline,
            "no ringback reached the carrier; Teams SIPp errors:\n{}",
            teams.errors()
        );
        tone.extend(drain(&carrier_media).into_iter().filter(is_rtp));
    }
    assert!(
        !sipp_log_has(&teams_dir, "TRANSFER-ANSWERING"),
        "the ringback came only after the target's 200"
    );
    for (i, p) in tone.iter().enumerate() {
        assert_eq!(p.len(), 12 + 160, "20 ms frames");
        assert_eq!(p[1] & 0x7f, 0, "PCMU, the carrier's codec");
        assert_eq!(
            p[1] & 0x80 != 0,
            i == 0,
            "the marker on the first frame only"
        );
        assert_eq!(
            ssrc_of(p),
            TEAMS_SSRC,
            "the stream the carrier was receiving"
        );
        assert_eq!(seq_of(p), last_speech.wrapping_add(1 + i as u16), "gapless");
        let share = tone_share(G711::Ulaw, &p[12..], 425.0);
        assert!(share > 0.9, "frame {i}: 425 Hz share {share}");
    }

    // The target answers: its media (its own key and SSRC) replaces the ringback.
    let deadline = Instant::now() + LONG;
    while !sipp_log_has(&teams_dir, "TRANSFER-ANSWERING") {
        assert!(Instant::now() < deadline, "the target never answered");
        drain(&carrier_media);
    }
    let mut target = srtp_context(&target_key);
    let mut after: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + LONG;
    let mut seq = 5000u16;
    while after.iter().filter(|p| ssrc_of(p) == TARGET_SSRC).count() < 5 {
        assert!(
            Instant::now() < deadline,
            "the target's media never reached the carrier"
        );
        let protected = target.encrypt_rtp(&frame(TARGET_SSRC, seq)).unwrap();
        teams_media.send_to(&protected, sbc_teams).unwrap();
        seq += 1;
        after.extend(drain(&carrier_media).into_iter().filter(is_rtp));
    }
    let first_target = after
        .iter()
        .position(|p| ssrc_of(p) == TARGET_SSRC)
        .unwrap();
    assert!(
        after[first_target..]
            .iter()
            .all(|p| ssrc_of(p) == TARGET_SSRC && p[12..] == SPEECH),
        "no ringback once the target's media flows"
    );

    let carrier_status = carrier.wait(LONG);
    let teams_status = teams.wait(LONG);
    assert!(
        carrier_status.is_some_and(|s| s.success()) && teams_status.is_some_and(|s| s.success()),
        "carrier SIPp: {carrier_status:?}, Teams SIPp: {teams_status:?}\ncarrier errors:\n{}\nTeams errors:\n{}\nTeams ladder:\n{}",
        carrier.errors(),
        teams.errors(),
        ladder(&teams_dir)
    );
    assert!(
        received_messages(&teams_dir)
            .iter()
            .any(|m| m.starts_with("SIP/2.0 202 ") && m.contains("CSeq: 1 REFER")),
        "Microsoft never got the 202 to its REFER"
    );
    assert!(lab.metric("media_generated_packets_total", &[("kind", "ringback")]) >= 25.0);
    lab.wait_idle();
}
