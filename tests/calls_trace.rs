//! Row 60 end to end: the SIP of each call, both legs, kept per call and logged at the end of
//! a failed call with Microsoft's `Reason` and diagnostics values. The SBC runs in-process
//! with SIPp as carrier and as Teams behind the mutual-TLS stand-in; this test binary installs
//! a JSON log subscriber of its own and reads what the SBC logged, and reads the traces
//! through `Running::call_traces` (what the ops API serves).
//!
//! * Microsoft refuses a PSTN -> Teams call with 403, a Q.850 Reason and
//!   `X-MS-Diagnostics: 510532;...`: one "call failed" line with the Call-IDs, tenant, trunk,
//!   status and Microsoft's values (its code, who produced it, what it means), then the trace
//!   of both legs in order with the SRTP keys redacted. A second failure of the same tenant
//!   within `call_trace_log_interval_seconds` logs its line but not its trace.
//! * A Teams -> PSTN call that Microsoft ends with a BYE carrying Q.850 cause 16 (normal
//!   clearing) logs nothing; one whose BYE carries cause 22 (`IceConnectivityChecksFailed`)
//!   is a failed call.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::Value;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const GLOBEX_USER: &str = "+4940555777";
const LONG: Duration = Duration::from_secs(45);

/// What the SBC logged in this test process, as JSON lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install the capturing subscriber (once per process, before any lab logs).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("warn,teams_sbc=info")
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// Logged lines with message `message` of tenant `tenant`.
fn logged(message: &str, tenant: &str) -> Vec<Value> {
    let bytes = logs().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == message && l["tenant"] == tenant)
        .collect()
}

fn lab(media_base: u16) -> (Lab, u16) {
    logs();
    let mut spec = LabSpec::new(media_base);
    spec.ops_extra = "call_trace_log_interval_seconds = 3600".into();
    lab_with_one_proxy_and(spec)
}

/// A PSTN -> Teams call to `did` that Microsoft refuses with 403 and its diagnostics.
fn refused_call(lab: &Lab, sipp_port: u16, did: &str) {
    let mut teams = teams_uas(lab.path(), "teams_uas_403_diagnostics.xml", sipp_port, &[]);
    let mut carrier = carrier_uac(
        lab,
        "carrier_uac_status.xml",
        did,
        &[("CALLER", PSTN_CALLER), ("STATUS", "403"), ("CHECKS", "")],
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
}

/// Where `needle` is in `text`, after `from`.
fn position(text: &str, from: usize, needle: &str) -> usize {
    from + text[from..]
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} missing after byte {from} of:\n{text}"))
}

#[test]
fn row60_microsofts_refusal_is_logged_with_its_diagnostics_and_the_sip_of_both_legs() {
    let (lab, sipp_port) = lab(63000);
    refused_call(&lab, sipp_port, ACME_DID);
    lab.wait_for("the failed call's log line", LONG, |_| {
        !logged("call failed", "acme").is_empty()
    });
    let failed = &logged("call failed", "acme")[0];
    assert_eq!(failed["trunk"], "pstn");
    assert_eq!(failed["direction"], "inbound");
    assert_eq!(failed["status"], 403);
    assert_eq!(failed["end"], "rejected");
    assert_eq!(failed["ms_code"], 510532);
    assert_eq!(failed["ms_code_from"], "microsoft");
    assert!(
        failed["ms_hint"].as_str().unwrap().contains("Contact FQDN"),
        "{failed}"
    );
    assert!(
        failed["ms_reason"].as_str().unwrap().starts_with(
            "Q.850;cause=21;text=\"4b5e7d1a-2f0c-4c1e-9d8a-aa01bb02cc03;NoTrunkConfigFound\""
        ),
        "{failed}"
    );
    assert!(
        failed["ms_diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("510532;reason=\"No trunk config was found\""),
        "{failed}"
    );
    let call_ids: Vec<&str> = failed["call_ids"].as_str().unwrap().split(' ').collect();
    assert_eq!(call_ids.len(), 2, "carrier and Teams Call-IDs: {failed}");

    // The trace follows the line: both legs, in order, keys redacted.
    let traces = logged("call SIP trace", "acme");
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(traces[0]["call"], failed["call"]);
    let text = traces[0]["trace"].as_str().unwrap();
    let carrier_invite = position(text, 0, " carrier <- udp 127.0.0.2:");
    let carrier_invite = position(text, carrier_invite, "\nINVITE sip:+4930123450@");
    let teams_invite = position(text, carrier_invite, " teams -> tls 127.0.0.3:");
    let teams_invite = position(text, teams_invite, "\nINVITE sip:+4930123450@");
    let refusal = position(text, teams_invite, " teams <- tls ");
    let refusal = position(text, refusal, "\nSIP/2.0 403 Forbidden\n");
    let diagnostics = position(text, refusal, "\nX-MS-Diagnostics: 510532;");
    let to_carrier = position(text, diagnostics, " carrier -> udp 127.0.0.2:");
    position(text, to_carrier, "\nSIP/2.0 403 ");
    assert!(
        text.contains("a=crypto:"),
        "our offer to Teams is kept: {text}"
    );
    assert!(
        text.match_indices("inline:")
            .all(|(at, _)| text[at..].starts_with("inline:[redacted]")),
        "an SRTP key reached the log: {text}"
    );

    // The same trace through the ops read interface, by either Call-ID.
    let traces_api = &lab.running().call_traces;
    let kept = traces_api
        .find_by_call_id(call_ids[1])
        .expect("kept after the call");
    assert_eq!(kept.tenant, "acme");
    assert!(kept.ended.is_some() && kept.failed());
    assert!(kept.messages.len() >= 4, "{kept}");
    assert_eq!(
        traces_api.find_by_call_id(call_ids[0]).unwrap().key,
        kept.key
    );
    assert!(lab.metric("call_traces", &[]) >= 1.0);
    assert!(lab.metric("call_trace_bytes", &[]) > 0.0);

    // A second failure of acme within the interval: its line, not its trace.
    let second_port = free_tcp_port(TEAMS_IP);
    lab.stand_in((TEAMS_IP, sipp_port).into())
        .unwrap()
        .route_default_to((TEAMS_IP, second_port).into());
    refused_call(&lab, second_port, "+4930123451");
    lab.wait_for("the second failed call's log line", LONG, |_| {
        logged("call failed", "acme").len() == 2
    });
    lab.wait_idle();
    assert_eq!(
        logged("call SIP trace", "acme").len(),
        1,
        "rate-limited per tenant"
    );
}

/// A Teams -> PSTN call of a Globex user that Microsoft hangs up with `reason`.
fn call_ended_by_microsoft(lab: &Lab, name: &str, reason: &str) {
    let sink = std::net::UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let mut carrier = carrier_uas(
        lab,
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
    );
    let globex = format!("globex.{BASE}");
    let mut teams = teams_uac(
        lab,
        name,
        "teams_uac_bye_reason.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", GLOBEX_USER),
            ("TENANT", &globex),
            ("TENANT_RE", &regex_escape(&globex)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            ("CRYPTO", &new_inline_key()),
            ("HOLD_MS", "300"),
            ("REASON", reason),
        ],
    );
    teams.expect_success(LONG);
    carrier.expect_success(LONG);
    lab.wait_idle();
}

#[test]
fn row60_bye_with_an_abnormal_reason_fails_the_call_and_normal_clearing_does_not() {
    let (lab, _) = lab(63200);
    call_ended_by_microsoft(&lab, "normal", "Q.850;cause=16;text=\"NormalCallClearing\"");
    assert!(
        logged("call failed", "globex").is_empty(),
        "normal clearing is not a failure: {:?}",
        logged("call failed", "globex")
    );
    let ice =
        "Q.850;cause=22;text=\"5e2a0c1d-77f3-4d2b-8f0e-0123456789ab;IceConnectivityChecksFailed\"";
    call_ended_by_microsoft(&lab, "ice-failed", ice);
    let failed = logged("call failed", "globex");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["direction"], "outbound");
    assert_eq!(failed[0]["end"], "bye_teams");
    assert_eq!(
        failed[0]["status"], 0,
        "answered calls have no final status"
    );
    assert_eq!(failed[0]["bye_reason"], ice);
    assert!(
        failed[0]["ms_reason"]
            .as_str()
            .unwrap()
            .contains("IceConnectivityChecksFailed"),
        "{}",
        failed[0]
    );
    let traces = logged("call SIP trace", "globex");
    assert_eq!(traces.len(), 1);
    let text = traces[0]["trace"].as_str().unwrap();
    let bye = position(text, 0, " teams <- tls ");
    position(text, bye, "\nBYE sip:");
    assert!(text.contains("\nReason: Q.850;cause=22;"), "{text}");
}
