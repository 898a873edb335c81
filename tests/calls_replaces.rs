//! End-to-end INVITE with Replaces from Microsoft (row 22, RFC 3891) through the SBC
//! (in-process) with real SIPp peers: the carrier over UDP (127.0.0.2) calls a Teams DID; the
//! Microsoft proxy stand-in (SIPp UAS over TCP on 127.0.0.3) answers and logs its dialog's
//! Call-ID and tags; a second Microsoft stand-in (SIPp UAC over TCP from 127.0.0.3) then sends
//! an INVITE with `Replaces: <call-id>;to-tag=<SBC's tag>;from-tag=<Microsoft's tag>` and an
//! SRTP offer pointing at this test's own UDP socket. The SBC answers it 200 on the same
//! Teams-side media port with a new key (rows 41, 43), BYEs the first dialog (its SIPp
//! answers 200), and never touches the carrier (its scenario accepts no message in between);
//! the carrier's media reaches the new dialog's address encrypted with the new key (decrypted
//! here with webrtc-srtp) and the carrier's hang-up reaches the new dialog. The same runs on
//! a Teams -> PSTN call (the first stand-in is then a SIPp UAC, the carrier a SIPp UAS that
//! hangs up). Every check is a SIPp exit code, a decrypted packet or an SBC metric; every wait
//! is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
/// The carrier plays this many 20 ms packets (8 s): media flows before, during and after the
/// swap.
const CARRIER_PACKETS: u32 = 400;

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

/// A scenario from `tests/sipp/replaces` with its `@NAME@` placeholders replaced.
fn replaces_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/replaces")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let leftover = regex::Regex::new("@[A-Z_]+@").unwrap();
    assert!(
        !leftover.is_match(&text),
        "unfilled placeholder in {file}: {:?}",
        leftover.find(&text).map(|m| m.as_str())
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// One SIPp run in `dir` (one call, SIPp's own global timeout as a bound).
fn run_sipp(name: &str, dir: &Path, scenario: &Path, args: &[String]) -> Peer {
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

/// The fields after `marker` on the first line of a SIPp `*_logs.log` in `dir` that has it.
fn logged(dir: &Path, marker: &str) -> Option<Vec<String>> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with("_logs.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            let rest = line.split(marker).nth(1)?;
            return Some(rest.split_whitespace().map(str::to_owned).collect());
        }
    }
    None
}

/// Poll `dir`'s SIPp log for `marker` for at most `LONG`.
fn wait_logged(dir: &Path, marker: &str, peer: &mut Peer) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(fields) = logged(dir, marker) {
            return fields;
        }
        let ended = peer.wait(Duration::from_millis(50));
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "{} never logged {marker} (exit {ended:?}); SIPp errors:\n{}",
            peer.name,
            peer.errors()
        );
    }
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

/// Starts the second Microsoft stand-in: an INVITE with Replaces naming the first dialog
/// (`dialog` = Call-ID, the SBC's tag, Microsoft's tag, the SBC's media port and key, as the
/// first stand-in logged them), media to this test's socket. Checks its 200 (row 41: the same
/// Teams-side port; row 43: a new key) and that the carrier's media reaches the socket
/// encrypted with the new key (webrtc-srtp). `values`: PSTN and TEAMS_USER numbers.
fn replace_and_check_media(lab: &Lab, dialog: &[String], values: &[(&str, &str)]) -> Peer {
    let [call_id, sbc_tag, teams_tag, first_port, first_key] = dialog else {
        panic!("unexpected DIALOG log line: {dialog:?}");
    };
    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let our_key = new_inline_key();
    let acme = format!("acme.{BASE}");
    let replaces = format!("{call_id};to-tag={sbc_tag};from-tag={teams_tag}");
    let media_port = socket.local_addr().unwrap().port().to_string();
    let old_key = regex_escape(first_key);
    let mut all: Vec<(&str, &str)> = vec![
        ("TENANT", &acme),
        ("REPLACES", &replaces),
        ("MEDIA_IP", "127.0.0.3"),
        ("MEDIA_PORT", &media_port),
        ("CRYPTO", &our_key),
        ("SBC_PORT", first_port),
        ("OLD_KEY_RE", &old_key),
    ];
    all.extend_from_slice(values);
    let second_port = free_tcp_port(TEAMS_IP);
    let second_dir = lab.path().join("teams-second");
    let second_path = replaces_scenario(&second_dir, "teams_uac_replaces.xml", &all);
    let mut second = run_sipp(
        "Teams SIPp UAC (INVITE with Replaces)",
        &second_dir,
        &second_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            second_port.to_string(),
        ],
    );
    let media = wait_logged(&second_dir, "SBC-MEDIA ", &mut second);
    let [sbc_ip, sbc_port, sbc_key] = &media[..] else {
        panic!("unexpected SBC-MEDIA log line: {media:?}");
    };
    let sbc_media: SocketAddr = format!("{sbc_ip}:{sbc_port}").parse().unwrap();
    assert_eq!(sbc_port, first_port, "row 41: same Teams-side port");
    assert_ne!(sbc_key, first_key, "row 43: a new key for the new dialog");
    assert_ne!(sbc_key, &our_key);

    // The carrier's media now reaches the new dialog, encrypted with the new key.
    let mut decrypt = srtp_context(sbc_key);
    let mut decrypted = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(6);
    while decrypted < 25 && Instant::now() < deadline {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert_eq!(from, sbc_media, "media from the SBC's Teams-side port");
            if let Ok(plain) = decrypt.decrypt_rtp(&buf[..n]) {
                assert_eq!(plain[1] & 0x7f, 0, "PCMU towards Teams");
                decrypted += 1;
            }
        }
    }
    assert!(
        decrypted >= 25,
        "only {decrypted} SRTP packets with the new key reached the new dialog"
    );
    second
}

/// Row 22 (with 41, 43): Microsoft replaces the Teams dialog of an answered PSTN -> Teams
/// call with an INVITE with Replaces; the carrier leg stays as it is and its media and
/// hang-up reach the new dialog.
#[test]
fn row22_invite_with_replaces_from_teams_swaps_the_teams_dialog_and_keeps_the_carrier_leg() {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(52000);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);
    let acme = format!("acme.{BASE}");

    // The first Teams dialog: SIPp UAS at the configured proxy address.
    let first_dir = lab.path().join("teams-first");
    let first_path = replaces_scenario(
        &first_dir,
        "teams_uas_replaced.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&acme)),
        ],
    );
    let first_media = free_port_pair(TEAMS_IP);
    let mut first = run_sipp(
        "Teams SIPp UAS (replaced dialog)",
        &first_dir,
        &first_path,
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
            first_media.to_string(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    // The carrier calls the DID and plays 8 s of PCMU.
    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = replaces_scenario(
        &carrier_dir,
        "carrier_uac.xml",
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "9000")],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), CARRIER_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = run_sipp(
        "carrier SIPp UAC (Teams dialog replaced)",
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

    // The first dialog is confirmed: its identifiers and the SBC's first media port and key.
    let dialog = wait_logged(&first_dir, "DIALOG ", &mut first);
    let carrier_to_teams =
        |lab: &Lab| lab.metric("media_packets_total", &[("direction", "carrier_to_teams")]);
    lab.wait_for("carrier media before the swap", LONG, |lab| {
        carrier_to_teams(lab) > 0.0
    });
    let before_swap = carrier_to_teams(&lab);

    let mut second = replace_and_check_media(
        &lab,
        &dialog,
        &[("PSTN", PSTN_CALLER), ("TEAMS_USER", "+4930123499")],
    );

    for (peer, what) in [
        (&mut first, "first Teams dialog"),
        (&mut second, "second Teams dialog"),
        (&mut carrier, "carrier"),
    ] {
        let status = peer.wait(LONG);
        assert!(
            status.is_some_and(|s| s.success()),
            "{what} SIPp ended with {status:?}; errors:\n{}",
            peer.errors()
        );
    }

    // One call (the INVITE with Replaces made none), answered once, media before and after.
    assert_eq!(
        lab.metric(
            "calls_attempted_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    assert!(
        carrier_to_teams(&lab) > before_swap,
        "media flowed after the swap"
    );
    lab.wait_idle();
}

/// Row 22 on a Teams -> PSTN call: the Teams dialog is the one Microsoft opened (its Call-ID,
/// the SBC's tag in its To). A second Microsoft stand-in replaces it; the first gets the SBC's
/// BYE, the carrier (SIPp UAS) hears nothing until it hangs up, and its BYE reaches the new
/// dialog.
#[test]
fn row22_invite_with_replaces_on_a_teams_to_pstn_call_keeps_the_carrier_leg() {
    const PSTN_CALLEE: &str = "+4969555000";
    let unused_proxy = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(52200);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), unused_proxy)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{unused_proxy}")]);
    let acme = format!("acme.{BASE}");

    let carrier_dir = lab.path().join("carrier-uas");
    let carrier_path = replaces_scenario(
        &carrier_dir,
        "carrier_uas_hangup.xml",
        &[
            ("CALLED", PSTN_CALLEE.trim_start_matches('+')),
            ("HOLD_MS", "9000"),
        ],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), CARRIER_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = run_sipp(
        "carrier SIPp UAS (Teams dialog replaced)",
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
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let first_dir = lab.path().join("teams-first");
    let first_path = replaces_scenario(
        &first_dir,
        "teams_uac_replaced.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
        ],
    );
    let first_port = free_tcp_port(TEAMS_IP);
    let first_media = free_port_pair(TEAMS_IP);
    let mut first = run_sipp(
        "Teams SIPp UAC (replaced dialog)",
        &first_dir,
        &first_path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            first_port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            first_media.to_string(),
        ],
    );

    let dialog = wait_logged(&first_dir, "DIALOG ", &mut first);
    let carrier_to_teams =
        |lab: &Lab| lab.metric("media_packets_total", &[("direction", "carrier_to_teams")]);
    lab.wait_for("carrier media before the swap", LONG, |lab| {
        carrier_to_teams(lab) > 0.0
    });
    let before_swap = carrier_to_teams(&lab);
    let mut second = replace_and_check_media(
        &lab,
        &dialog,
        &[("PSTN", PSTN_CALLEE), ("TEAMS_USER", ACME_DID)],
    );

    for (peer, what) in [
        (&mut first, "first Teams dialog"),
        (&mut second, "second Teams dialog"),
        (&mut carrier, "carrier"),
    ] {
        let status = peer.wait(LONG);
        assert!(
            status.is_some_and(|s| s.success()),
            "{what} SIPp ended with {status:?}; errors:\n{}",
            peer.errors()
        );
    }
    assert_eq!(
        lab.metric(
            "calls_attempted_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    assert!(
        carrier_to_teams(&lab) > before_swap,
        "media flowed after the swap"
    );
    lab.wait_idle();
}
