//! End-to-end caller identity, Diversion and cause mapping (rows 57, 58; doc 2.9, 2.11)
//! through the SBC (in-process) with real SIPp peers: the Microsoft stand-in is SIPp over TCP
//! on 127.0.0.3 (the test config sets the proxy transport to tcp; SIPp has no TLS), the
//! carrier trunk SIPp over UDP on 127.0.0.2.
//!
//! * Teams -> PSTN with ForwardPai/ForwardCallHistory (anonymous From, PAI, `Privacy: id`,
//!   two History-Info entries, X-MS headers) to an untrusted trunk that wants Diversion, and
//!   to a trusted one: the carrier SIPp checks every header with `ereg check_it`.
//! * PSTN -> Teams refused by Teams with 486 (Q.850 cause 34) and 603: the carrier SIPp checks
//!   the status and Reason it gets; a second configured proxy (the test's own TCP listener)
//!   must never be contacted (no retry after a 4xx/603, row 58).
//!
//! Checks are SIPp exit codes and the test's own listener; every wait is bounded.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(45);

fn sipp_peer(name: &str, dir: &Path, scenario: &Path, args: Vec<String>) -> Peer {
    sipp(name, dir, scenario, &args)
}

/// The carrier trunk's SIPp UAS (UDP) checking the SBC's INVITE and refusing with `status`.
fn carrier_uas(lab: &Lab, checks: &str, status: &str) -> Peer {
    let dir = lab.path().join("carrier-uas");
    let path = scenario_in(
        "identity",
        &dir,
        "carrier_uas_check.xml",
        &[("CHECKS", checks), ("STATUS", status)],
    );
    let peer = sipp_peer(
        "carrier SIPp UAS",
        &dir,
        &path,
        vec![
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());
    peer
}

/// The Microsoft stand-in placing the Teams -> PSTN call; expects `status` back.
fn teams_uac(lab: &Lab, status: &str) -> Peer {
    let port = free_tcp_port(TEAMS_IP);
    let dir = lab.path().join(format!("teams-uac-{port}"));
    let tenant = format!("acme.{BASE}");
    let path = scenario_in(
        "identity",
        &dir,
        "teams_uac_identity.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &tenant),
            ("STATUS", status),
        ],
    );
    let media = free_port_pair(TEAMS_IP);
    sipp_peer(
        "Teams SIPp UAC",
        &dir,
        &path,
        vec![
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
    )
}

fn lab_with_trunk(media_base: u16, carrier_extra: &str) -> Lab {
    let port = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![LabSpec::tcp_proxy(&TEAMS_IP.to_string(), port)];
    spec.carrier_extra = carrier_extra.to_string();
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[format!("{TEAMS_IP}:{port}")]);
    lab
}

const ANONYMOUS_FROM: &str = "From: \"Anonymous\" <sip:anonymous@anonymous\\.invalid>;tag=";
const DIVERSIONS: &str = "Diversion: <sip:\\+14255550188@127\\.0\\.0\\.1>;reason=user-busy;counter=1[[:space:]]+Diversion: <sip:\\+14255550199@127\\.0\\.0\\.1>;reason=unconditional;counter=1";

/// Row 57 and doc 2.9: towards an untrusted trunk that wants Diversion, the carrier gets an
/// anonymous From, a Contact without number, no P-Asserted-Identity, no Privacy, no
/// History-Info and no trace of the caller's number, and Diversion headers built from the two
/// History-Info entries (most recent first, our host). The trunk's `response_map.to_teams`
/// turns its 480 into the 404 Teams gets.
#[test]
fn row57_untrusted_trunk_gets_privacy_applied_and_diversion_from_history_info() {
    let lab = lab_with_trunk(
        58200,
        "diversion_from_history_info = true\nresponse_map.to_teams = [{ from = 480, to = 404 }]",
    );
    let did = ACME_DID.trim_start_matches('+');
    let mut carrier = carrier_uas(
        &lab,
        &sipp_checks(
            &[
                ("msg", ANONYMOUS_FROM),
                ("msg", "Contact: <sip:127\\.0\\.0\\.1:"),
                ("msg", DIVERSIONS),
            ],
            &[
                ("msg", "P-Asserted-Identity"),
                ("msg", "Privacy:"),
                ("msg", did),
                ("msg", "Contact: <sip:[^@>]*@"),
            ],
        ),
        "480",
    );
    let mut teams = teams_uac(&lab, "404");
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// Row 57: a trusted trunk gets the caller's asserted identity (the PAI number Teams sent, as
/// routing kept it) in P-Asserted-Identity and `Privacy: id`, still with an anonymous From;
/// Diversion as before. The trunk's 486 reaches Teams as 486.
#[test]
fn row57_trusted_trunk_gets_pai_and_privacy_id() {
    let lab = lab_with_trunk(58400, "trusted = true\ndiversion_from_history_info = true");
    let mut carrier = carrier_uas(
        &lab,
        &sipp_checks(
            &[
                ("msg", ANONYMOUS_FROM),
                (
                    "msg",
                    "P-Asserted-Identity: <sip:\\+4930123450@127\\.0\\.0\\.1>",
                ),
                ("msg", "Privacy: id"),
                ("msg", DIVERSIONS),
            ],
            &[("msg", "Contact: <sip:[^@>]*@")],
        ),
        "486",
    );
    let mut teams = teams_uac(&lab, "486");
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
}

/// A PSTN -> Teams call to Acme refused by the first Microsoft stand-in with `status` and
/// `reason`; the second configured proxy is the test's own TCP listener and must never be
/// contacted. The carrier SIPp checks what it gets with `carrier_checks`.
fn teams_refuses_and_is_not_retried(
    media_base: u16,
    status: &str,
    reason: &str,
    carrier_checks: &str,
) {
    let first = free_tcp_port(TEAMS_IP);
    let second = free_tcp_port(TEAMS_IP);
    let mut spec = LabSpec::new(media_base);
    spec.proxies = vec![
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), first),
        LabSpec::tcp_proxy(&TEAMS_IP.to_string(), second),
    ];
    let lab = Lab::start(spec);
    lab.wait_first_pings(&[
        format!("{TEAMS_IP}:{first}"),
        format!("{TEAMS_IP}:{second}"),
    ]);
    let second_proxy = TcpListener::bind((TEAMS_IP, second)).unwrap();
    second_proxy.set_nonblocking(true).unwrap();

    let dir = lab.path().join(format!("teams-{first}"));
    let path = scenario_in(
        "identity",
        &dir,
        "teams_uas_reject.xml",
        &[("STATUS", status), ("REASON", reason)],
    );
    let mut teams = sipp_peer(
        "Teams SIPp UAS",
        &dir,
        &path,
        vec![
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TEAMS_IP.to_string(),
            "-p".into(),
            first.to_string(),
        ],
    );
    wait_listening_tcp((TEAMS_IP, first).into());

    let port = free_udp_port(CARRIER_IP);
    let dir = lab.path().join(format!("carrier-{port}"));
    let path = scenario_in(
        "identity",
        &dir,
        "carrier_uac_refused.xml",
        &[
            ("CALLER", PSTN_CALLER),
            ("STATUS", status),
            ("CHECKS", carrier_checks),
        ],
    );
    let media = free_port_pair(CARRIER_IP);
    let mut carrier = sipp_peer(
        "carrier SIPp UAC",
        &dir,
        &path,
        vec![
            lab.udp_addr().to_string(),
            "-s".into(),
            ACME_DID.into(),
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            CARRIER_IP.to_string(),
            "-mp".into(),
            media.to_string(),
        ],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();
    // Any attempt at the second proxy would have started before the carrier got its final
    // answer; give a connect in flight a bounded moment to land, then nothing may be there.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match second_proxy.accept() {
            Ok((_, from)) => panic!("row 58: the SBC retried at the second proxy (from {from})"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("accept on the second proxy: {e}"),
        }
    }
    assert_eq!(
        lab.metric(
            "calls_failed_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        1.0,
        "one failed call, no second attempt"
    );
}

/// Row 58: Teams' 486 with Q.850 cause 34 (NICC) reaches the carrier as 486 with cause 17
/// (RFC 4497; the default of `q850_486_cause`), without Teams' text or X-MS diagnostics, and
/// is not retried at the next proxy.
#[test]
fn row58_teams_486_cause_34_reaches_carrier_as_cause_17_and_is_not_retried() {
    teams_refuses_and_is_not_retried(
        58600,
        "486",
        "Q.850;cause=34;text=\"Busy Here\"",
        &sipp_checks(
            &[("msg", "Reason: Q\\.850;cause=17")],
            &[("msg", "cause=34"), ("msg", "text=")],
        ),
    );
}

/// Row 58: Teams' 603 Decline reaches the carrier as 603 with its Q.850 cause (21, call
/// rejected) and is not retried at the next proxy.
#[test]
fn row58_teams_603_reaches_carrier_as_603_and_is_not_retried() {
    teams_refuses_and_is_not_retried(
        58800,
        "603",
        "Q.850;cause=21;text=\"Call rejected\"",
        &sipp_checks(&[("msg", "Reason: Q\\.850;cause=21")], &[("msg", "text=")]),
    );
}
