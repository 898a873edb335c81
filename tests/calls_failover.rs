//! End-to-end trunk failover of a Teams -> PSTN call (issue: a failover hop is tried with
//! its own trunk's settings) through the SBC (in-process) with real SIPp peers: SIPp as
//! Microsoft behind the mutual-TLS stand-in, trunk A (SIPp over UDP on 127.0.0.2) answering
//! 503, trunk B (SIPp over TCP on 127.0.0.6) with other codecs, number translation, Diversion,
//! in-band DTMF and early-media policy.
//!
//! Checks are SIPp exit codes: each `<ereg check_it>` must hold and every message must come in
//! order. Every wait is bounded; nothing asserts a duration.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;

const TRUNK_B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const ACME_DID: &str = "+4930123450";
const PSTN_CALLEE: &str = "+4969555000";
const DIVERTED: &str = "+14255550199";
const LONG: Duration = Duration::from_secs(45);

/// Rows 19, 47, 48 and doc 2.9 per hop: Teams calls through Acme, whose trunk A refuses with
/// 503 and whose failover trunk B gets an INVITE built for B alone:
/// * over B's transport (TCP) from our TCP listener, to B's address;
/// * the numbers through B's `from_teams` rules (national called number, `00` caller), the
///   Diversion built from History-Info through the same calling-number rules;
/// * an offer with B's codecs only (PCMA: no PCMU, no telephone-event);
///
/// while trunk A got its own: PCMU, PCMA and events, E.164 numbers, no Diversion. B answers
/// PCMA without events (in-band DTMF, converted for B): Teams' 183 and 200 carry PCMA and our
/// telephone-event under Teams' 101. B's `convert_183_to_180` (a PSTN -> Teams policy) does
/// not touch the 183 Teams gets.
#[test]
fn failover_hop_gets_an_invite_built_for_its_own_trunk() {
    let trunk_b_port = free_tcp_port(TRUNK_B_IP);
    let mut spec = LabSpec::new(58600);
    spec.tenants[0].extra = "failover_carrier_trunks = [\"pstn-b\"]".into();
    spec.carrier_extra = format!(
        r#"
[[carrier_trunk]]
name = "pstn-b"
address = "{TRUNK_B_IP}:{trunk_b_port}"
transport = "tcp"
codecs = ["PCMA"]
inband_dtmf = true
early_media = "convert_183_to_180"
diversion_from_history_info = true
options_ping = false
number_translation = [
  {{ pattern = '^\+49(\d+)$', replacement = '0$1', direction = "from_teams", field = "called" }},
  {{ pattern = '^\+(\d+)$', replacement = '00$1', direction = "from_teams", field = "calling" }},
]
"#
    );
    let (lab, _) = lab_with_one_proxy_and(spec);

    let trunk_a_dir = lab.path().join("trunk-a");
    let trunk_a_checks = sipp_checks(
        &[
            (
                "msg",
                r"^INVITE sip:\+4969555000@127\.0\.0\.2:[0-9]+ SIP/2\.0",
            ),
            ("msg", r"From: <sip:\+4930123450@127\.0\.0\.1>;tag="),
            ("body", r"m=audio [0-9]+ RTP/AVP 0 8 101[^ 0-9]"),
        ],
        &[("msg", "Diversion")],
    );
    let path = scenario_in(
        "identity",
        &trunk_a_dir,
        "carrier_uas_check.xml",
        &[("CHECKS", &trunk_a_checks), ("STATUS", "503")],
    );
    let mut trunk_a = sipp(
        "trunk A SIPp UAS (503)",
        &trunk_a_dir,
        &path,
        &[
            "-t".into(),
            "u1".into(),
            "-i".into(),
            CARRIER_IP.to_string(),
            "-p".into(),
            lab.carrier_port.to_string(),
        ],
    );
    wait_bound_udp((CARRIER_IP, lab.carrier_port).into());

    let trunk_b_dir = lab.path().join("trunk-b");
    let via = format!(r"Via: SIP/2\.0/TCP 127\.0\.0\.1:{};", lab.tcp);
    let trunk_b_checks = sipp_checks(
        &[
            (
                "msg",
                r"^INVITE sip:069555000@127\.0\.0\.6:[0-9]+;transport=tcp SIP/2\.0",
            ),
            ("msg", &via),
            ("msg", r"From: <sip:004930123450@127\.0\.0\.1>;tag="),
            (
                "msg",
                r"Diversion: <sip:0014255550199@127\.0\.0\.1>;reason=unconditional;counter=1",
            ),
            ("body", r"m=audio [0-9]+ RTP/AVP 8[^ 0-9]"),
        ],
        &[("body", "telephone-event"), ("body", "PCMU")],
    );
    let path = scenario(
        &trunk_b_dir,
        "carrier_uas_checked.xml",
        &[
            ("CHECKS", &trunk_b_checks),
            ("CODEC", "PCMA"),
            ("CODEC_PT", "8"),
        ],
    );
    let media_b = free_port_pair(TRUNK_B_IP);
    let mut trunk_b = sipp(
        "trunk B SIPp UAS (TCP)",
        &trunk_b_dir,
        &path,
        &[
            "-t".into(),
            "t1".into(),
            "-i".into(),
            TRUNK_B_IP.to_string(),
            "-p".into(),
            trunk_b_port.to_string(),
            "-mi".into(),
            TRUNK_B_IP.to_string(),
            "-mp".into(),
            media_b.to_string(),
        ],
    );
    wait_listening_tcp((TRUNK_B_IP, trunk_b_port).into());

    let teams_port = free_tcp_port(TEAMS_IP);
    let teams_dir = lab.path().join("teams-uac");
    let tenant = format!("acme.{BASE}");
    let key = new_inline_key();
    let path = scenario_in(
        "failover",
        &teams_dir,
        "teams_uac_failover.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &tenant),
            ("DIVERTED", DIVERTED),
            ("CRYPTO", &key),
            ("CODEC_PT", "8"),
            ("EVENTS_RE", " 101"),
        ],
    );
    let media_teams = free_port_pair(TEAMS_IP);
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
            "-mi".into(),
            TEAMS_IP.to_string(),
            "-mp".into(),
            media_teams.to_string(),
        ],
    );
    trunk_a.expect_success(LONG);
    teams.expect_success(LONG);
    trunk_b.expect_success(LONG);
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "outbound")]
        ),
        1.0
    );
    lab.wait_idle();

    // The call's detail record names both trunks and each hop's outcome, and the numbers
    // as trunk B got them (after B's translation).
    lab.wait_for("the call detail record", LONG, |lab| {
        lab.metric("cdr_records_total", &[("sink", "file")]) >= 1.0
    });
    let text = std::fs::read_to_string(lab.path().join("cdr/calls.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["direction"], "outbound");
    assert_eq!(
        record["trunks_tried"],
        serde_json::json!(["pstn", "pstn-b"])
    );
    assert_eq!(record["trunk"], "pstn-b");
    let hops: Vec<_> = record["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["trunk"].clone(),
                h["status"].clone(),
                h["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("pstn".into(), 503.into(), "rejected".into()),
            ("pstn-b".into(), 200.into(), "answered".into()),
        ],
        "{record:#}"
    );
    assert_eq!(record["numbers"]["called_received"], PSTN_CALLEE);
    assert_eq!(record["numbers"]["called_sent"], "069555000");
    assert_eq!(record["media"]["carrier"]["codec"], "PCMA");
}
