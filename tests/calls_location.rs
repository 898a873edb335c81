//! End-to-end emergency location (row 56; RFC 6442, RFC 5621; doc 2.12) through the SBC
//! (in-process) with real SIPp peers: the Microsoft stand-in is SIPp over TCP on 127.0.0.3
//! placing a Teams -> PSTN emergency call whose INVITE is `multipart/mixed` (SDP + PIDF-LO,
//! `Geolocation`), the carrier trunk SIPp over UDP on 127.0.0.2.
//!
//! * The carrier gets the PIDF-LO unchanged next to the SBC's own plain-RTP SDP, with the
//!   Geolocation headers; Microsoft gets an SDP-only 200; the call is answered and hung up.
//! * A carrier refusing the multipart body with 415 gets the INVITE again, SDP only, and the
//!   call goes through.
//!
//! Checks are SIPp `ereg check_it` actions and exit codes; every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const EMERGENCY: &str = "+49112";
const LONG: Duration = Duration::from_secs(45);
const REFUSE_415: &str = include_str!("sipp/location/refuse_415.xml.part");

/// A scenario from `tests/sipp/location` with its `@NAME@` placeholders replaced.
fn location_scenario(dir: &Path, file: &str, values: &[(&str, &str)]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp/location")
        .join(file);
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    for placeholder in ["@CALLE", "@TENANT@", "@FIRST@"] {
        assert!(
            !text.contains(placeholder),
            "unfilled {placeholder} in {file}"
        );
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn emergency_call(media_base: u16, carrier_first: &str) {
    let port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), port)];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);

    let dir = lab.path().join("carrier-uas");
    let path = location_scenario(
        &dir,
        "carrier_uas_location.xml",
        &[("FIRST", carrier_first)],
    );
    let carrier_media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp(
        "carrier SIPp UAS",
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
            carrier_media.to_string(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let dir = lab.path().join(format!("teams-uac-{port}"));
    let tenant = format!("acme.{BASE}");
    let path = location_scenario(
        &dir,
        "teams_uac_emergency.xml",
        &[
            ("CALLED", EMERGENCY),
            ("CALLER", ACME_DID),
            ("TENANT", &tenant),
        ],
    );
    let teams_media = free_port_pair(TEAMS_IP);
    let mut teams = sipp(
        "Teams SIPp UAC",
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
            teams_media.to_string(),
        ],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// Row 56: Microsoft's PIDF-LO reaches the carrier unchanged (Content-ID, civic address)
/// next to the SBC's plain-RTP SDP, with Geolocation and Geolocation-Routing; Microsoft's 200
/// is SDP only.
#[test]
fn row56_teams_emergency_call_carries_its_pidf_lo_to_the_carrier() {
    emergency_call(59600, "");
}

/// Row 56 with RFC 5621 §9: a carrier answering the multipart INVITE with 415 gets it again
/// with SDP only, no Geolocation, and the emergency call is answered.
#[test]
fn row56_carrier_refusing_multipart_gets_sdp_only_and_the_call_connects() {
    emergency_call(59800, REFUSE_415);
}
