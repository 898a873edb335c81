//! Graceful drain (what SIGTERM starts; `teams_sbc::app::Running::drain`), end to end with
//! SIPp as the carrier and, behind the mutual-TLS stand-in, as Microsoft: `/readyz` turns
//! 503, new INVITEs and Microsoft's OPTIONS get 503 with Retry-After (Microsoft fails over),
//! a call in progress goes on, and a call still up when the drain times out gets BYE on both
//! legs with a Reason (Q.850 41); the drain then reports that no call is left.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);

fn options(local: std::net::SocketAddr, id: &str) -> String {
    format!(
        "OPTIONS sip:{BASE} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag={id}\r\nTo: <sip:{BASE}>\r\n\
         Call-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn invite(local: std::net::SocketAddr, id: &str) -> String {
    format!(
        "INVITE sip:{ACME_DID}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{PSTN_CALLER}@{local}>;tag={id}\r\nTo: <sip:{ACME_DID}@127.0.0.1>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{PSTN_CALLER}@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The first answer on `socket` within 10 s.
fn answer(socket: &UdpSocket) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 8192];
    loop {
        let n = socket.recv(&mut buf).expect("an answer within 10 s");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 100 ") {
            return text;
        }
    }
}

#[test]
fn a_drain_refuses_new_work_and_ends_calls_still_up_at_its_timeout_with_bye_on_both_legs() {
    let mut spec = LabSpec::new(45400);
    spec.ops_extra = "drain_timeout_seconds = 2".into();
    let (mut lab, proxy_port) = lab_with_one_proxy_and(spec);
    let drain_reason = r"Reason: Q\.850;cause=41";
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ("BYE_REASON_RE", drain_reason),
        ],
    );
    let mut carrier = carrier_uac(
        &lab,
        "carrier_uac_wait_bye.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("BYE_REASON_RE", drain_reason)],
    );
    lab.wait_for("the call to be answered", LONG, |lab| {
        lab.metric("calls_answered_total", &[]) >= 1.0
    });
    assert_eq!(http_get(lab.ops_addr(), "/readyz").0, 200);

    let mut drained = lab.drain();
    let (status, body) = http_get(lab.ops_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");

    // New work is refused with a Retry-After: a new call, and the health check Microsoft's
    // proxies (and carriers) use to pick an SBC.
    let probe = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    let local = probe.local_addr().unwrap();
    probe
        .send_to(invite(local, "drain-new").as_bytes(), lab.udp_addr())
        .unwrap();
    let refusal = answer(&probe);
    assert!(refusal.starts_with("SIP/2.0 503 "), "{refusal}");
    assert!(refusal.contains("\r\nRetry-After: "), "{refusal}");
    probe
        .send_to(options(local, "drain-ping").as_bytes(), lab.udp_addr())
        .unwrap();
    let refusal = answer(&probe);
    assert!(refusal.starts_with("SIP/2.0 503 "), "{refusal}");
    assert_eq!(lab.metric("calls_active", &[]), 1.0, "the call goes on");

    // At the drain timeout the call gets BYE on both legs with Q.850 41 (both SIPps check
    // it), and the drain reports that no call is left.
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_for("the drain to report", LONG, |_| drained.try_recv().is_ok());
    lab.wait_idle();
}

/// A call that ends by itself during a drain ends normally, and the drain reports at once.
#[test]
fn calls_ending_during_a_drain_end_normally_and_the_drain_reports_when_none_is_left() {
    let mut spec = LabSpec::new(45600);
    spec.ops_extra = "drain_timeout_seconds = 600".into();
    let (mut lab, proxy_port) = lab_with_one_proxy_and(spec);
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
    lab.wait_for("the call to be answered", LONG, |lab| {
        lab.metric("calls_answered_total", &[]) >= 1.0
    });
    let mut drained = lab.drain();
    assert!(drained.try_recv().is_err(), "a call is still up");
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_for("the drain to report", LONG, |_| drained.try_recv().is_ok());
    lab.wait_idle();
}
