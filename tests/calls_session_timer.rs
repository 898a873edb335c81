//! End-to-end session timers (RFC 4028, row 42) through the SBC (in-process) with real SIPp
//! peers: the Microsoft proxy stand-in (SIPp over TCP on 127.0.0.3; SIPp has no TLS) places a
//! Teams -> PSTN call with `Session-Expires: 90` as Microsoft offers timers on non-bypass
//! calls; the carrier (SIPp over UDP on 127.0.0.2) answers without timers.
//!
//! * `refresher=uas` (the SBC refreshes): the SBC's refresh re-INVITE must reach the Teams
//!   stand-in half-way through the interval with `Session-Expires: 90;refresher=uac` and the
//!   SDP of its 200 unchanged (same o= line, compared here from the SIPp log); the carrier
//!   must never see it (its scenario fails on any request but the final BYE).
//! * `refresher=uac` and the stand-in never refreshes: the SBC must BYE both legs before the
//!   session would expire (SE - min(32, SE/3) = 60 s after the answer).
//!
//! These run in real time (about 45 and 60 s); the two tests run in parallel, each with its
//! own Lab and ports. Every check is a SIPp exit code, a logged value or an SBC metric; every
//! wait is bounded.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLEE: &str = "+4969555000";
/// SIPp's own global limit, beyond every bounded wait of the scenarios.
const SIPP_LIMIT: &str = "150s";
const WAIT: Duration = Duration::from_secs(160);

/// A scenario from `tests/sipp/session_timer` with its `@NAME@` placeholders replaced.
fn timer_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/session_timer")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let unfilled = ["@CALLE", "@TENANT@", "@MEDIA_", "@CRYPTO@", "_WAIT_MS@"];
    assert!(
        !unfilled.iter().any(|p| text.contains(p)),
        "unfilled placeholder in {file}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// SIPp for one call with a global limit long enough for a session interval.
fn sipp_long(name: &str, dir: &Path, scenario: &Path, args: &[String]) -> Peer {
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
            SIPP_LIMIT,
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

/// A Lab whose Microsoft stand-in's first OPTIONS has failed (so SIPp sees none) and whose
/// media inactivity limit is longer than the test (no RTP flows here; only timers end calls).
fn lab(media_base: u16) -> Lab {
    let port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), port)];
    // Ends the [teams] table with a [media] table of its own ([media.*] follow later).
    spec.teams_extra = "\n[media]\ninactivity_timeout_seconds = 600\n".into();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);
    lab
}

/// The carrier trunk: SIPp UAS over UDP on the trunk's address.
fn carrier_uas(lab: &Lab) -> Peer {
    let dir = lab.path().join("carrier-uas");
    let path = timer_scenario(
        &dir,
        "carrier_uas.xml",
        &[
            ("CALLED", PSTN_CALLEE.trim_start_matches('+')),
            ("BYE_WAIT_MS", "120000"),
        ],
    );
    let media = free_port_pair(CARRIER_IP);
    let peer = sipp_long(
        "carrier SIPp UAS (session timer)",
        &dir,
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
            media.to_string(),
            "-rtp_echo".into(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());
    peer
}

/// The Microsoft stand-in calling out through Acme's trunk FQDN (SIPp UAC over TCP). Its
/// media address is `sink` (nothing is sent; the SBC's packets, if any, land there).
fn teams_uac(lab: &Lab, file: &str, sink: &UdpSocket, waits: (&str, &str)) -> (Peer, PathBuf) {
    let port = free_tcp_port(TEAMS_IP);
    let dir = lab.path().join(format!("teams-{port}"));
    let key: [u8; 30] = rand::random();
    let path = timer_scenario(
        &dir,
        file,
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &format!("acme.{BASE}")),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            (
                "CRYPTO",
                &base64::engine::general_purpose::STANDARD.encode(key),
            ),
            waits,
        ],
    );
    let media = free_port_pair(TEAMS_IP);
    let peer = sipp_long(
        &format!("Teams SIPp UAC ({file})"),
        &dir,
        &path,
        &[
            lab.teams_entry().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            media.to_string(),
        ],
    );
    (peer, dir)
}

/// A value the Teams SIPp logged as `<tag> <value>`.
fn logged(dir: &Path, tag: &str) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with("_logs.log") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        if let Some(line) = text.lines().find(|l| l.contains(tag)) {
            return line
                .split(tag)
                .nth(1)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
        }
    }
    None
}

fn expect_both(teams: &mut Peer, carrier: &mut Peer) {
    let teams_status = teams.wait(WAIT);
    let carrier_status = carrier.wait(WAIT);
    assert!(
        teams_status.is_some_and(|s| s.success()) && carrier_status.is_some_and(|s| s.success()),
        "Teams SIPp: {teams_status:?}, carrier SIPp: {carrier_status:?}\nTeams errors:\n{}\ncarrier errors:\n{}",
        teams.errors(),
        carrier.errors()
    );
}

/// Row 42: Microsoft offers `Session-Expires: 90;refresher=uas`; the SBC answers with it and
/// `Require: timer`, refreshes the Teams leg with a re-INVITE half-way through (our SDP
/// unchanged, same o= line), ACKs Microsoft's 200; the carrier leg never sees the refresh.
#[test]
fn row42_sbc_refreshes_the_teams_leg_at_half_interval_and_the_carrier_sees_nothing() {
    let lab = lab(58400);
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let mut carrier = carrier_uas(&lab);
    let (mut teams, teams_dir) = teams_uac(
        &lab,
        "teams_uac_refresh.xml",
        &sink,
        ("REFRESH_WAIT_MS", "80000"),
    );
    expect_both(&mut teams, &mut carrier);

    let answered = logged(&teams_dir, "ORIGIN-200").expect("o= line of our 200 logged");
    let refreshed = logged(&teams_dir, "ORIGIN-REFRESH").expect("o= line of the refresh logged");
    assert_eq!(
        refreshed, answered,
        "a refresh re-offers the SDP unchanged (same o= version)"
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    lab.wait_idle();
}

/// Row 42: Microsoft is the refresher (`refresher=uac`) and never refreshes: the SBC ends the
/// call with BYE to the Teams stand-in and to the carrier before the session expires.
#[test]
fn row42_unrefreshed_session_is_ended_with_bye_on_both_legs() {
    let lab = lab(58600);
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let mut carrier = carrier_uas(&lab);
    // The BYE is due 60 s after the answer and must come before the 90 s interval runs out.
    let (mut teams, _) = teams_uac(
        &lab,
        "teams_uac_expire.xml",
        &sink,
        ("BYE_WAIT_MS", "88000"),
    );
    expect_both(&mut teams, &mut carrier);
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    lab.wait_idle();
}
