//! End-to-end forked PSTN -> Teams calls (rows 26, 27) through the SBC (in-process) with real
//! SIPp peers. The Microsoft stand-in (SIPp over TCP on 127.0.0.3) answers one INVITE the way
//! Microsoft does when a user has several endpoints (doc 2.4): 180 on early dialog A, 180 on
//! early dialog B, 183 with SDP on B (media port B), then 200 with other SDP on A (media port
//! A); it checks that the ACK and the final BYE are for dialog A. The carrier (SIPp over UDP
//! on 127.0.0.2) runs against one Lab per `early_media` policy; what it received is read from
//! its SIPp message trace and must be exactly what the policy lets through. After the answer
//! the carrier plays a PCMU pcap; the test's own UDP sockets sit on ports A and B and must
//! see the SBC's SRTP at A (the 200's address) and nothing at B (the 183's).
//!
//! Between the 183 and the 200 the test streams SRTP to the SBC as fork B's early media
//! (encrypted with webrtc-srtp under the key of the 183). With `relay` it must reach the
//! carrier; with `first_only` and `convert_183_to_180` the carrier was given no SDP answer, so
//! the SBC must authenticate it (the Teams side is set up) and forward none of it.
//!
//! Every wait is bounded; nothing asserts a duration. Needs root for SIPp's pcap replay.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
/// An SRTP packet of the pcap: 12 bytes RTP header, 160 bytes PCMU, 10 bytes auth tag.
const SRTP_PCMU_LEN: usize = 12 + 160 + 10;
/// How long the Teams stand-in waits between its 183 and its 200 (the early-media window).
const EARLY_PAUSE_MS: &str = "3000";
/// Early SRTP packets the test sends as fork B, 20 ms apart.
const EARLY_PACKETS: u16 = 25;

/// A scenario from `tests/sipp/forks` with its `@NAME@` placeholders replaced.
fn forks_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/forks")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    for placeholder in ["@CALLE", "@CALLER@", "@PORT_", "@EARLY", "@HOLD_MS@"] {
        assert!(
            !text.contains(placeholder),
            "unfilled placeholder {placeholder} in {file}"
        );
    }
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

/// The text of SIPp's `*<suffix>` log in `dir` (empty until it exists).
fn sipp_log(dir: &Path, suffix: &str) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// The SBC's Teams media address and SRTP key, logged by the Teams stand-in once it has sent
/// its 183 (`EARLY-MEDIA ip port key`).
fn early_media_window(teams_dir: &Path) -> (SocketAddr, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = sipp_log(teams_dir, "_logs.log");
        if let Some(line) = log.lines().find(|l| l.contains("EARLY-MEDIA ")) {
            let mut fields = line
                .split("EARLY-MEDIA ")
                .nth(1)
                .unwrap()
                .split_whitespace();
            let ip = fields.next().unwrap();
            let port = fields.next().unwrap();
            let key = fields.next().unwrap().to_owned();
            return (format!("{ip}:{port}").parse().unwrap(), key);
        }
        assert!(
            Instant::now() < deadline,
            "the Teams stand-in never reached its early-media window; errors:\n{}",
            sipp_errors(teams_dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    packet.extend_from_slice(&0x0f0b_0002u32.to_be_bytes());
    packet.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    packet
}

/// Fork B's early media: SRTP under the 183's key to the SBC's Teams media port, while the
/// stand-in has not answered yet (checked after the last packet).
fn send_early_media(teams_dir: &Path) {
    let (sbc, key) = early_media_window(teams_dir);
    let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let mut context = srtp_context(&key);
    for seq in 0..EARLY_PACKETS {
        let packet = context.encrypt_rtp(&rtp_packet(seq)).unwrap();
        socket.send_to(&packet, sbc).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !sipp_log(teams_dir, "_logs.log").contains("ANSWERING"),
        "the stand-in answered before the early media was sent (raise EARLY_PAUSE_MS)"
    );
}

/// The messages SIPp received, from its `*_messages.log` in `dir`, in order.
fn received_messages(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with("_messages.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // Each entry: a dashed header line, "<TRANSPORT> message received [n] bytes :", a
        // blank line, the message.
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

/// (status, carries SDP) of every provisional response (not 100) the carrier received.
fn provisionals(messages: &[String]) -> Vec<(u16, bool)> {
    messages
        .iter()
        .filter_map(|m| {
            let status: u16 = m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
            (101..200)
                .contains(&status)
                .then(|| (status, m.contains("m=audio")))
        })
        .collect()
}

/// Counts the datagrams arriving on a socket of the test until stopped (bounded).
struct PortWatch {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Arrived>,
}

/// What a [`PortWatch`] received: the sizes of the (S)RTP packets, and the packet type of
/// the first RTCP packet of each (S)RTCP compound (the SBC's own reports, row 46; the
/// SRTCP header is in clear).
#[derive(Default)]
struct Arrived {
    rtp: Vec<usize>,
    rtcp: Vec<u8>,
}

impl PortWatch {
    fn start() -> PortWatch {
        let socket = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut arrived = Arrived::default();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    // Version 2 only (not STUN); RTCP by its packet type (RFC 5761 §4).
                    if n >= 8 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1]) {
                        arrived.rtcp.push(buf[1]);
                    } else if n >= 12 && buf[0] >> 6 == 2 {
                        arrived.rtp.push(n);
                    }
                }
            }
            arrived
        });
        PortWatch { port, stop, thread }
    }

    fn finish(self) -> Arrived {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// What the carrier must receive before the 200 under each policy (SIPp part) and exactly.
struct Expect {
    policy: &'static str,
    /// `<recv>` elements of the carrier scenario before the 200 (loops back to `early`).
    scenario: &'static str,
    provisionals: Vec<(u16, bool)>,
    /// Fork B's early media reaches the carrier.
    early_media_relayed: bool,
}

const LOOP_180: &str = r#"  <label id="early"/>
  <recv response="180" optional="true" next="early"/>"#;
const LOOP_180_183: &str = r#"  <label id="early"/>
  <recv response="180" optional="true" next="early"/>
  <recv response="183" optional="true" next="early"/>"#;

fn run_forked_call(expect: Expect, media_base: u16) {
    let proxy_port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), proxy_port)];
    spec.carrier_extra = format!("early_media = \"{}\"", expect.policy);
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{proxy_port}")]);

    let port_a = PortWatch::start();
    let port_b = PortWatch::start();
    let teams_dir = lab.path().join("teams-forks");
    let teams_path = forks_scenario(
        &teams_dir,
        "teams_uas_forks.xml",
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("PORT_A", &port_a.port.to_string()),
            ("PORT_B", &port_b.port.to_string()),
            ("EARLY_PAUSE_MS", EARLY_PAUSE_MS),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp_traced(
        "Teams SIPp UAS (forks)",
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
        ],
    );
    wait_listening_tcp((TEAMS_IP, proxy_port).into());

    let carrier_port = free_udp_port(CARRIER_IP);
    let carrier_dir = lab.path().join(format!("carrier-{carrier_port}"));
    let carrier_path = forks_scenario(
        &carrier_dir,
        "carrier_uac_forks.xml",
        &[
            ("CALLER", PSTN_CALLER),
            ("EARLY", expect.scenario),
            ("HOLD_MS", "2500"),
        ],
    );
    write_pcmu_pcap(&carrier_dir.join("pcmu.pcap"), PCAP_PACKETS);
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_traced(
        &format!("carrier SIPp UAC (early_media = {})", expect.policy),
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

    send_early_media(&teams_dir);
    let carrier_status = carrier.wait(LONG);
    let teams_status = teams.wait(LONG);
    assert!(
        carrier_status.is_some_and(|s| s.success()) && teams_status.is_some_and(|s| s.success()),
        "policy {}: carrier SIPp {carrier_status:?}, Teams SIPp {teams_status:?}\n\
         carrier errors:\n{}\nTeams errors:\n{}\ncarrier received:\n{:#?}",
        expect.policy,
        carrier.errors(),
        teams.errors(),
        received_messages(&carrier_dir)
    );
    lab.wait_idle();
    let Arrived { rtp: at_a, rtcp: _ } = port_a.finish();
    let Arrived {
        rtp: at_b,
        rtcp: rtcp_at_b,
    } = port_b.finish();

    // Row 27: exactly the 18x the policy lets through, SDP only where it allows.
    let received = received_messages(&carrier_dir);
    assert_eq!(
        provisionals(&received),
        expect.provisionals,
        "policy {}: carrier received {received:#?}",
        expect.policy
    );
    // Row 26: the media went to the 200's address (fork A), SRTP-protected, and none to the
    // address of fork B's 183: at most receiver reports on B's own early media (RTCP type
    // 201), never a sender report.
    assert!(
        at_a.len() as f64 >= f64::from(PCAP_PACKETS) * 0.8,
        "policy {}: {} packets at the 200's port",
        expect.policy,
        at_a.len()
    );
    assert!(
        at_a.iter().all(|&n| n == SRTP_PCMU_LEN),
        "SRTP sizes at A: {at_a:?}"
    );
    assert!(
        at_b.is_empty() && rtcp_at_b.iter().all(|&pt| pt == 201),
        "policy {}: {} RTP packets and RTCP of types {rtcp_at_b:?} at the 183's port",
        expect.policy,
        at_b.len(),
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0
    );
    // Row 27: fork B's early media. Authenticated either way (the Teams side is set up from
    // the 183 even when the carrier does not get it); forwarded only when the carrier got the
    // SDP answer, else dropped for want of a carrier destination. Nothing else comes from
    // the Teams side in this call (the stand-in sends no media).
    let early_to_carrier = lab.metric("media_packets_total", &[("direction", "teams_to_carrier")]);
    let no_remote = lab.metric("media_packets_dropped_total", &[("reason", "no_remote")]);
    assert_eq!(
        lab.metric("media_packets_dropped_total", &[("reason", "srtp_auth")]),
        0.0
    );
    if expect.early_media_relayed {
        assert!(
            early_to_carrier >= 1.0,
            "relay: no early media reached the carrier (dropped no_remote: {no_remote})"
        );
    } else {
        assert_eq!(
            early_to_carrier, 0.0,
            "policy {}: early media reached a carrier that got no SDP",
            expect.policy
        );
        assert!(
            no_remote >= 1.0,
            "policy {}: the early media never reached the SBC",
            expect.policy
        );
    }
}

/// Rows 26, 27 with `early_media = "relay"`: the carrier gets 180, 180 and the 183 with an
/// SDP answer; media still follows the 200 of the other fork.
#[test]
fn row26_row27_forked_call_relay_policy() {
    run_forked_call(
        Expect {
            policy: "relay",
            scenario: LOOP_180_183,
            provisionals: vec![(180, false), (180, false), (183, true)],
            early_media_relayed: true,
        },
        57000,
    );
}

/// Rows 26, 27 with `early_media = "first_only"` (the default): the carrier gets the first
/// 180 only (a 183 would fail its scenario); media follows the 200 of fork A.
#[test]
fn row26_row27_forked_call_first_only_policy() {
    run_forked_call(
        Expect {
            policy: "first_only",
            scenario: LOOP_180,
            provisionals: vec![(180, false)],
            early_media_relayed: false,
        },
        57200,
    );
}

/// Rows 26, 27 with `early_media = "convert_183_to_180"`: three 180 without SDP (the 183
/// converted), never a 183; media follows the 200 of fork A.
#[test]
fn row26_row27_forked_call_convert_183_to_180_policy() {
    run_forked_call(
        Expect {
            policy: "convert_183_to_180",
            scenario: LOOP_180,
            provisionals: vec![(180, false), (180, false), (180, false)],
            early_media_relayed: false,
        },
        57400,
    );
}

/// Row 27: an unknown `early_media` value is refused at load with the file and the field.
#[test]
fn row27_unknown_early_media_policy_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    // Any shipped example with a carrier trunk will do; add the bad field to its first trunk.
    let example = std::fs::read_dir(&good)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("[[carrier_trunk]]")
        })
        .expect("an example config with a carrier trunk in configs/");
    let text = std::fs::read_to_string(&example).unwrap().replacen(
        "[[carrier_trunk]]\n",
        "[[carrier_trunk]]\nearly_media = \"sometimes\"\n",
        1,
    );
    let path = dir.path().join("bad-early-media.toml");
    std::fs::write(&path, text).unwrap();
    let error = match teams_sbc::config::load(&path) {
        Ok(_) => panic!("early_media = \"sometimes\" was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("bad-early-media.toml"), "{error}");
    assert!(error.contains("carrier_trunk[0].early_media"), "{error}");
    assert!(
        error.contains("first_only") && error.contains("convert_183_to_180"),
        "{error}"
    );
}
