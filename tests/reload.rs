//! Live reload of the whole configuration (what SIGHUP does), end to end with SIPp over the
//! mutual-TLS Microsoft stand-in: a tenant added, a trunk with a call up on it removed, a
//! number range changed, then a broken file. No call drops; new calls route by the new
//! configuration; a broken file changes nothing and says why.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const PSTN_CALLER: &str = "+4969111222";
const LONG: Duration = Duration::from_secs(45);
const SECOND_TRUNK_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 5);

/// A second trunk at 127.0.0.5 serving its own tenant: the one the reload removes.
const SECOND_TRUNK: &str = r#"
[[carrier_trunk]]
name = "pstn2"
address = "127.0.0.5:5060"
options_ping = false

[[tenant]]
name = "umbrella"
fqdn = "umbrella.sbc.example.test"
numbers = ["+4989777*"]
carrier_trunk = "pstn2"
"#;

fn invite(local: SocketAddr, called: &str, id: &str) -> String {
    format!(
        "INVITE sip:{called}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{PSTN_CALLER}@{local}>;tag={id}\r\nTo: <sip:{called}@127.0.0.1>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{PSTN_CALLER}@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The final answer to `id` (or `None` when nothing comes back in 3 s: silence).
fn final_answer(socket: &UdpSocket, id: &str) -> Option<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 8192];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains(&format!("Call-ID: {id}")) && !text.starts_with("SIP/2.0 1") {
                return Some(text);
            }
        }
    }
    None
}

#[test]
fn reload_adds_a_tenant_removes_a_trunk_with_a_call_up_and_changes_ranges_without_dropping_a_call()
{
    let mut spec = LabSpec::new(45800);
    spec.carrier_extra = SECOND_TRUNK.into();
    let (mut lab, proxy_port) = lab_with_one_proxy_and(spec);
    let before = lab.config_text();

    // A call on the trunk the reload removes, held through the reload.
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", "4989777100"),
            ("TENANT_RE", &regex_escape(&format!("umbrella.{BASE}"))),
        ],
    );
    let mut held = carrier_uac_from(
        &lab,
        SECOND_TRUNK_IP,
        "carrier_uac.xml",
        "+4989777100",
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "6000")],
    );
    lab.wait_for("the held call to be answered", LONG, |lab| {
        lab.metric("calls_answered_total", &[("tenant", "umbrella")]) >= 1.0
    });

    // The reload: the second trunk and its tenant go, a tenant comes, acme's range shrinks.
    let after = before
        .replace(SECOND_TRUNK, "")
        .replace(r#"["+4930123400-+4930123499"]"#, r#"["+4930123400-+4930123449"]"#)
        + "\n[[tenant]]\nname = \"initech\"\nfqdn = \"initech.sbc.example.test\"\nnumbers = [\"+4972111*\"]\ncarrier_trunk = \"pstn\"\n";
    assert_ne!(before, after);
    lab.reload_with(&after)
        .expect("the new configuration is taken");
    assert_eq!(lab.metric("config_reloads_total", &[]), 1.0);
    assert_eq!(
        lab.metric("config_reload_duration_seconds_count", &[]),
        1.0,
        "the reload put in force is timed"
    );

    // The call on the removed trunk goes on to its own end, on both legs.
    held.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();

    // New calls route by the new configuration.
    let carrier = UdpSocket::bind((CARRIER_IP, 0)).unwrap();
    let local = carrier.local_addr().unwrap();
    carrier
        .send_to(
            invite(local, "+4930123460", "out-of-range").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    let answer = final_answer(&carrier, "out-of-range").expect("an answer");
    assert!(answer.starts_with("SIP/2.0 404 "), "shrunk range: {answer}");
    let removed = UdpSocket::bind((SECOND_TRUNK_IP, 0)).unwrap();
    let local2 = removed.local_addr().unwrap();
    removed
        .send_to(
            invite(local2, "+4989777100", "removed-trunk").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    // Still heard until the next reload (it had a call), but given nothing new.
    let answer = final_answer(&removed, "removed-trunk").expect("an answer");
    assert!(
        answer.starts_with("SIP/2.0 403 "),
        "removed trunk: {answer}"
    );
    let mut teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        proxy_port,
        &[
            ("CALLED", "4972111500"),
            ("TENANT_RE", &regex_escape(&format!("initech.{BASE}"))),
        ],
    );
    let mut caller = carrier_uac(
        &lab,
        "carrier_uac.xml",
        "+4972111500",
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
    );
    caller.expect_success(LONG);
    teams.expect_success(LONG);
    lab.wait_idle();

    // A broken file changes nothing and says where it is broken.
    let broken = after.replace(
        "[[tenant]]\nname = \"initech\"",
        "[[tenant]]\nname = \"initech\"\nbogus = 1",
    );
    let error = lab.reload_with(&broken).expect_err("refused");
    assert!(error.contains("bogus"), "{error}");
    assert_eq!(
        lab.metric("config_reload_failures_total", &[("reason", "invalid")]),
        1.0
    );
    assert_eq!(lab.metric("config_reloads_total", &[]), 1.0);
    assert_eq!(
        lab.metric("config_reload_duration_seconds_count", &[]),
        1.0,
        "a refused reload is not timed"
    );
    carrier
        .send_to(
            invite(local, "+4930123460", "still-shrunk").as_bytes(),
            lab.udp_addr(),
        )
        .unwrap();
    let answer = final_answer(&carrier, "still-shrunk").expect("an answer");
    assert!(answer.starts_with("SIP/2.0 404 "), "{answer}");

    // Listeners cannot change under a reload: refused with a message naming them.
    let moved = after
        .replacen(
            "[[listen]]\ntransport = \"udp\"",
            "[[listen]]\ntransport = \"udp\"\n# moved",
            1,
        )
        .replacen(&format!("127.0.0.1:{}", lab.udp), "127.0.0.1:9", 1);
    let error = lab.reload_with(&moved).expect_err("refused");
    assert!(error.contains("[[listen]]"), "{error}");
}
