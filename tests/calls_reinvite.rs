//! End-to-end re-INVITEs through the SBC (in-process) with real SIPp peers (rows 39-41): the
//! carrier over UDP (127.0.0.2) calls a Teams DID; the Microsoft proxy stand-in (SIPp over
//! TCP on 127.0.0.3) answers. The carrier holds (a=sendonly) and resumes; each is relayed to
//! the Teams side, which checks with `ereg check_it` that hold arrives as a=inactive (never
//! sendonly/recvonly, row 39), still SRTP, never 0.0.0.0 (row 40). Then the Teams side re-keys
//! (a new SDES key); the SBC answers it itself with a new key of its own, and the carrier
//! dialog sees nothing of it; then Teams holds (a=inactive), which reaches the carrier as a
//! re-INVITE with a=inactive on the SBC's same carrier-side address. The test then reads both
//! SIPp message logs (-trace_msg) and checks that every SDP the SBC sent to each peer carries
//! the same c= address and m= port (row 41). Every check is a SIPp exit code, a message
//! assertion or an SBC metric; every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
/// Teams' new SDES key (30 bytes of key and salt, base64) in its re-key re-INVITE.
const NEW_TEAMS_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz";

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

/// A scenario from `tests/sipp/reinvite` with its `@NAME@` placeholders replaced.
fn reinvite_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/reinvite")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let unfilled = ["@CALLE", "@TENANT", "@QUIET_MS@", "@NEW_KEY@"];
    assert!(
        !unfilled.iter().any(|p| text.contains(p)),
        "unfilled placeholder in {file}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// One SIPp call; `-trace_msg` keeps every message it sent and received.
fn sipp_traced(name: &str, dir: &Path, scenario: &Path, args: &[String]) -> Peer {
    require("sipp", "sip-tester");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(args)
        .args([
            "-m",
            "1",
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

/// The messages SIPp received (from its `*_messages.log` in `dir`), in order, LF line ends.
fn received_messages(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with("_messages.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .replace("\r\n", "\n");
        for block in text.split("----------------------------------------------- ") {
            let Some((head, message)) = block.split_once("\n\n") else {
                continue;
            };
            if head.contains("message received") {
                out.push(message.trim_start().to_owned());
            }
        }
    }
    out
}

/// The first line of `message` starting with `prefix` (SDP lines sit at the line start).
fn sdp_line<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
}

/// (first line, c= line, m= port, crypto key if any) of each received message with SDP.
fn sdp_summaries(messages: &[String]) -> Vec<(String, String, String, Option<String>)> {
    messages
        .iter()
        .filter_map(|m| {
            let c = sdp_line(m, "c=")?.to_owned();
            let port = sdp_line(m, "m=audio ")?.split(' ').nth(1)?.to_owned();
            let key = sdp_line(m, "a=crypto:").and_then(|l| {
                let start = l.find("inline:")? + "inline:".len();
                l[start..].split('|').next().map(str::to_owned)
            });
            Some((m.lines().next()?.trim().to_owned(), c, port, key))
        })
        .collect()
}

/// Rows 39, 40, 41: hold and resume from the carrier relayed to Teams (hold as a=inactive,
/// no 0.0.0.0), a Teams re-key answered by the SBC with a fresh key and never shown to the
/// carrier, a Teams hold relayed to the carrier, and one media address and port per leg in
/// every SDP the SBC sent.
#[test]
fn row39_40_41_hold_resume_rekey_and_teams_hold_keep_our_media_address() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(57600);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let teams_dir = lab.path().join("teams-reinvite");
    let teams_path = reinvite_scenario(
        &teams_dir,
        "teams_uas.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("NEW_KEY", NEW_TEAMS_KEY),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAS (re-INVITE)",
        &teams_dir,
        &teams_path,
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
    let carrier_path = reinvite_scenario(
        &carrier_dir,
        "carrier_uac.xml",
        &[("CALLER", PSTN_CALLER), ("QUIET_MS", "10000")],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), PCAP_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        "carrier SIPp UAC (hold/resume)",
        &carrier_dir,
        &carrier_path,
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
        "carrier SIPp: {carrier_status:?}, Teams SIPp: {teams_status:?}\ncarrier errors:\n{}\nTeams errors:\n{}",
        carrier.errors(),
        teams.errors()
    );

    // Row 41 towards Teams: the INVITE, the hold and resume re-INVITEs and the 200s to the
    // re-key and to Teams' hold all carry one c= and one m= port; the re-key got a new key
    // of ours, kept for the Teams hold.
    let teams_sdps = sdp_summaries(&received_messages(&teams_dir));
    let firsts: Vec<&str> = teams_sdps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(teams_sdps.len(), 5, "SDPs received by Teams: {firsts:?}");
    assert!(firsts[..3].iter().all(|l| l.starts_with("INVITE ")));
    assert!(firsts[3..].iter().all(|l| l.starts_with("SIP/2.0 200")));
    for (first, c, port, _) in &teams_sdps {
        assert_eq!(c, &teams_sdps[0].1, "row 41: c= changed in {first}");
        assert_eq!(port, &teams_sdps[0].2, "row 41: m= port changed in {first}");
        assert!(!c.contains("0.0.0.0"), "row 40");
    }
    let initial_key = teams_sdps[0].3.clone().expect("SRTP key in the INVITE");
    assert_eq!(
        teams_sdps[1].3.as_ref(),
        Some(&initial_key),
        "hold keeps our key"
    );
    assert_eq!(
        teams_sdps[2].3.as_ref(),
        Some(&initial_key),
        "resume keeps our key"
    );
    let rekey_answer = teams_sdps[3]
        .3
        .clone()
        .expect("SRTP key in the re-key answer");
    assert_ne!(rekey_answer, initial_key, "re-key: a fresh key of ours");
    assert_ne!(rekey_answer, NEW_TEAMS_KEY, "never Teams' own key echoed");
    assert_eq!(
        teams_sdps[4].3.as_ref(),
        Some(&rekey_answer),
        "Teams' hold (same key from Teams) keeps our key"
    );

    // Row 41 towards the carrier: the 200s to the INVITE, the hold and the resume, and the
    // relayed Teams hold; the only request from the SBC on the carrier dialog is that hold
    // (the re-key stayed on the Teams leg).
    let carrier_messages = received_messages(&carrier_dir);
    let carrier_sdps = sdp_summaries(&carrier_messages);
    let firsts: Vec<&str> = carrier_sdps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        carrier_sdps.len(),
        4,
        "SDPs received by the carrier: {firsts:?}"
    );
    assert!(firsts[..3].iter().all(|l| l.starts_with("SIP/2.0 200")));
    assert!(firsts[3].starts_with("INVITE "));
    for (first, c, port, key) in &carrier_sdps {
        assert_eq!(c, &carrier_sdps[0].1, "row 41: c= changed in {first}");
        assert_eq!(
            port, &carrier_sdps[0].2,
            "row 41: m= port changed in {first}"
        );
        assert!(key.is_none(), "no SRTP towards the carrier");
    }
    let requests: Vec<&String> = carrier_messages
        .iter()
        .filter(|m| !m.starts_with("SIP/2.0"))
        .collect();
    assert!(
        requests.len() == 2
            && requests[0].starts_with("INVITE ")
            && requests[1].starts_with("ACK "),
        "only the relayed Teams hold and the ACK of its 200: {requests:?}"
    );

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
