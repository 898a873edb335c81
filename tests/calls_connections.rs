//! The connections the SBC keeps to Microsoft (teams-direct-routing.md §1.7, rows 6, 8, 13,
//! 14), end to end: the SBC in-process, SIPp as carrier and as Teams, Microsoft played by the
//! mutual-TLS stand-ins of `tests/common/microsoft.rs` (Microsoft's requests on connections
//! Microsoft opens, the SBC's on connections the SBC opens).
//!
//! * Microsoft closes its own connection mid-call, or SIGHUP reloads the certificate (every
//!   TLS connection closed): the carrier's BYE, or the SBC's session refresh, still reaches
//!   Microsoft, on a connection the SBC opened (a fresh one after the reload).
//! * Connections the SBC opened are retired at `sip.max_connection_age_seconds` (the hourly
//!   renewal, shortened here): the next request opens a new connection and a call in
//!   progress goes on.
//! * A changed DNS answer for `sip.pstnhub.microsoft.com` (a DNS responder of the test, named
//!   in `[sbc] dns_servers`) moves the next INVITE to the new address.
//!
//! Every check is a SIPp exit code, a stand-in's count or an SBC metric; every wait is
//! bounded; nothing asserts a duration.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use common::dns::DnsResponder;
use common::microsoft::MicrosoftStandIn;
use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLER: &str = "+4969111222";
const PSTN_CALLEE: &str = "+4969555000";
const LONG: Duration = Duration::from_secs(60);
/// Long enough for the test to act between the answer and the carrier's BYE.
const CARRIER_HOLD_MS: &str = "6000";

/// A lab with one Microsoft stand-in in front of a SIPp playing Teams; the stand-in.
fn lab(media_base: u16, sip_extra: &str) -> (Lab, u16) {
    let mut spec = LabSpec::new(media_base);
    spec.sip_extra = sip_extra.to_string();
    lab_with_one_proxy_and(spec)
}

fn stand_in(lab: &Lab, sipp_port: u16) -> &MicrosoftStandIn {
    lab.stand_in((TEAMS_IP, sipp_port).into())
        .expect("the lab put a stand-in in front of its Teams SIPp")
}

fn requests_from_sbc(stand_in: &MicrosoftStandIn, method: &str) -> usize {
    stand_in
        .requests_from_sbc()
        .iter()
        .filter(|line| line.starts_with(&format!("{method} ")))
        .count()
}

fn tls_connections_open(lab: &Lab) -> f64 {
    lab.metric("connections_open", &[("transport", "tls")])
}

/// A Teams -> PSTN call that the carrier hangs up after [`CARRIER_HOLD_MS`]: the Teams SIPp
/// waits for the SBC's BYE.
fn teams_call_the_carrier_ends(lab: &Lab, name: &str, media_sink: &UdpSocket) -> (Peer, Peer) {
    let carrier = carrier_uas(
        lab,
        "carrier_uas_bye.xml",
        &[
            ("CALLED", PSTN_CALLEE.trim_start_matches('+')),
            ("HOLD_MS", CARRIER_HOLD_MS),
        ],
    );
    let acme = format!("acme.{BASE}");
    let teams = teams_uac(
        lab,
        name,
        "teams_uac_wait_bye.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            (
                "MEDIA_PORT",
                &media_sink.local_addr().unwrap().port().to_string(),
            ),
            ("CRYPTO", &new_inline_key()),
        ],
    );
    (teams, carrier)
}

/// Microsoft's ACK of the SBC's 200 arrived: Microsoft sends nothing more until the BYE.
fn wait_acked(lab: &Lab) {
    lab.wait_for("Microsoft's ACK", LONG, |lab| {
        lab.metric(
            "sip_messages_received_total",
            &[("transport", "tls"), ("kind", "ACK")],
        ) >= 1.0
    });
}

fn wait_answered(lab: &Lab, direction: &str, calls: f64) {
    lab.wait_for("the call to be answered", LONG, |lab| {
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", direction)],
        ) >= calls
    });
}

/// Rows 13, 14: Microsoft closes the connection it opened for its INVITE (as it does when
/// idle); then the carrier hangs up. The BYE reaches Microsoft on a connection the SBC
/// opened, never on Microsoft's.
#[test]
fn row13_row14_microsoft_closes_its_connection_mid_call_and_the_bye_goes_on_ours() {
    let (lab, sipp_port) = lab(62000, "");
    let stand_in = stand_in(&lab, sipp_port);
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let (mut teams, mut carrier) = teams_call_the_carrier_ends(&lab, "ms-closes", &sink);
    wait_acked(&lab);
    let before = tls_connections_open(&lab);
    stand_in.close_microsoft_connections();
    lab.wait_for("the SBC to see Microsoft's connection close", LONG, |lab| {
        tls_connections_open(lab) < before
    });
    assert_eq!(
        requests_from_sbc(stand_in, "BYE"),
        0,
        "the carrier hung up before Microsoft's connection was gone; raise CARRIER_HOLD_MS"
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    assert_eq!(requests_from_sbc(stand_in, "BYE"), 1);
    lab.wait_idle();
}

/// Rows 6, 14: SIGHUP (the certificate reload, `TransportHandle::reload_tls`) closes every
/// TLS connection mid-call; the carrier's BYE reaches Microsoft on a new connection the SBC
/// opens with the reloaded certificate.
#[test]
fn row6_row14_after_sighup_the_bye_reaches_microsoft_on_a_new_connection_of_ours() {
    let (lab, sipp_port) = lab(62200, "");
    let stand_in = stand_in(&lab, sipp_port);
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let (mut teams, mut carrier) = teams_call_the_carrier_ends(&lab, "sighup", &sink);
    wait_acked(&lab);
    let ours_before = stand_in.sbc_connections();
    lab.running().transport.reload_tls().unwrap();
    lab.wait_for("every TLS connection to close", LONG, |lab| {
        tls_connections_open(lab) == 0.0
    });
    assert_eq!(
        requests_from_sbc(stand_in, "BYE"),
        0,
        "the carrier hung up before the reload; raise CARRIER_HOLD_MS"
    );
    carrier.expect_success(LONG);
    teams.expect_success(LONG);
    assert_eq!(requests_from_sbc(stand_in, "BYE"), 1);
    assert_eq!(
        stand_in.sbc_connections(),
        ours_before + 1,
        "the BYE went on one new connection of the SBC"
    );
    lab.wait_idle();
}

/// Rows 14, 42: Microsoft closes its connection after the answer of a call on which the SBC
/// is the session refresher (`Session-Expires: 90;refresher=uas`); the refresh re-INVITE
/// reaches Microsoft half-way through the interval on a connection the SBC opened. Runs
/// about 50 s (the interval is Microsoft's minimum of 90 s).
#[test]
fn row14_row42_session_refresh_after_microsoft_closed_its_connection_goes_on_ours() {
    let (lab, sipp_port) = {
        let mut spec = LabSpec::new(62400);
        // No RTP flows here; only the timers may end the call.
        spec.media_extra = "inactivity_timeout_seconds = 600".into();
        lab_with_one_proxy_and(spec)
    };
    let stand_in = stand_in(&lab, sipp_port);
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let limit = "150s";
    let mut carrier = carrier_uas_from(
        &lab,
        "session_timer",
        "carrier_uas.xml",
        &[
            ("CALLED", PSTN_CALLEE.trim_start_matches('+')),
            ("BYE_WAIT_MS", "120000"),
        ],
        limit,
    );
    let mut teams = teams_uac_from(
        &lab,
        "refresh",
        "session_timer",
        "teams_uac_refresh.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TENANT", &format!("acme.{BASE}")),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            ("CRYPTO", &new_inline_key()),
            ("REFRESH_WAIT_MS", "80000"),
        ],
        limit,
    );
    wait_acked(&lab);
    let before = tls_connections_open(&lab);
    stand_in.close_microsoft_connections();
    lab.wait_for("the SBC to see Microsoft's connection close", LONG, |lab| {
        tls_connections_open(lab) < before
    });
    assert_eq!(requests_from_sbc(stand_in, "INVITE"), 0, "no refresh yet");
    let wait = Duration::from_secs(160);
    let (teams_status, carrier_status) = (teams.wait(wait), carrier.wait(wait));
    assert!(
        teams_status.is_some_and(|s| s.success()) && carrier_status.is_some_and(|s| s.success()),
        "Teams SIPp: {teams_status:?}, carrier SIPp: {carrier_status:?}\nTeams errors:\n{}\n\
         carrier errors:\n{}",
        teams.errors(),
        carrier.errors()
    );
    assert_eq!(
        requests_from_sbc(stand_in, "INVITE"),
        1,
        "the refresh re-INVITE went on the SBC's connection"
    );
    lab.wait_idle();
}

/// Row 14: connections the SBC opened are retired at `sip.max_connection_age_seconds` (the
/// hourly renewal; 3 s here) and take no new request: once every connection the SBC opened
/// is retired, a second call's INVITE opens a new connection, and the BYE of the first call,
/// set up on a retired connection and still in progress, goes on a new one too; both calls
/// end normally.
#[test]
fn row14_renewed_connection_carries_the_next_request_and_the_call_in_progress_goes_on() {
    let (lab, sipp_port) = lab(62600, "max_connection_age_seconds = 3");
    let stand_in = stand_in(&lab, sipp_port);
    let retired = |lab: &Lab| lab.metric("connections_retired_total", &[("transport", "tls")]);
    // The first call holds long past the connection's age.
    let mut first_teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        sipp_port,
        &[
            ("CALLED", ACME_DID.trim_start_matches('+')),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut first = carrier_uac(
        &lab,
        "carrier_uac.xml",
        ACME_DID,
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "15000")],
    );
    wait_answered(&lab, "inbound", 1.0);
    lab.wait_for(
        "every connection the SBC opened to be retired",
        LONG,
        |lab| retired(lab) >= stand_in.sbc_connections() as f64,
    );
    let old_connections = stand_in.sbc_connections();
    let mark = stand_in.requests_from_sbc_by_connection().len();
    assert_eq!(
        requests_from_sbc(stand_in, "BYE"),
        0,
        "the first call still runs"
    );

    // The second call: the stand-in's SIPp serves one call, so another one plays Teams.
    let second_port = free_tcp_port(TEAMS_IP);
    stand_in.route_default_to((TEAMS_IP, second_port).into());
    let mut second_teams = teams_uas(
        lab.path(),
        "teams_uas.xml",
        second_port,
        &[
            ("CALLED", "4930123451"),
            ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
        ],
    );
    let mut second = carrier_uac(
        &lab,
        "carrier_uac.xml",
        "+4930123451",
        &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
    );
    second.expect_success(LONG);
    second_teams.expect_success(LONG);
    first.expect_success(LONG);
    first_teams.expect_success(LONG);

    let later = stand_in.requests_from_sbc_by_connection()[mark..].to_vec();
    assert!(
        later.iter().any(|(_, l)| l.starts_with("INVITE "))
            && later.iter().filter(|(_, l)| l.starts_with("BYE ")).count() == 2,
        "the second call and both BYEs came after the retirement: {later:?}"
    );
    assert!(
        later.iter().all(|(n, _)| *n > old_connections),
        "a retired connection took a new request: {later:?} (old: 1..={old_connections})"
    );
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[("tenant", "acme"), ("direction", "inbound")]
        ),
        2.0
    );
    lab.wait_idle();
}

/// A TCP port free on both addresses (two stand-ins behind one FQDN and port).
fn port_free_on(a: Ipv4Addr, b: Ipv4Addr) -> u16 {
    for _ in 0..100 {
        let port = free_tcp_port(a);
        if TcpListener::bind((b, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both {a} and {b}");
}

/// Row 8: the SBC resolves `sip.pstnhub.microsoft.com` for every attempt, with the DNS
/// servers of `[sbc] dns_servers`. The test's DNS responder answers 127.0.0.3 for the first
/// call and 127.0.0.4 for the second (TTL 0); a TLS stand-in listens on each. The first
/// INVITE reaches the first, the second INVITE the second.
#[test]
fn row8_changed_dns_answer_moves_the_next_invite_to_the_new_address() {
    const NAME: &str = "sip.pstnhub.microsoft.com";
    let dns = DnsResponder::start(SBC_IP);
    dns.set(NAME, TEAMS_IP);
    let port = port_free_on(TEAMS_IP, TEAMS_IP2);
    let mut spec = LabSpec::new(62800);
    spec.proxies = vec![format!("\"{NAME}:{port}\"")];
    spec.sbc_extra = format!("dns_servers = [\"{}\"]", dns.addr);
    let lab = Lab::start(spec);
    let certs = lab.path().join("certs");
    let sources = [TEAMS_IP, TEAMS_IP2];
    let first = MicrosoftStandIn::start_at(&certs, (TEAMS_IP, port).into(), sources, BASE);
    let second = MicrosoftStandIn::start_at(&certs, (TEAMS_IP2, port).into(), sources, BASE);

    let call = |stand_in: &MicrosoftStandIn, did: &str| {
        let sipp_port = free_tcp_port(TEAMS_IP);
        stand_in.route_default_to(SocketAddr::from((TEAMS_IP, sipp_port)));
        let mut teams = teams_uas(
            lab.path(),
            "teams_uas.xml",
            sipp_port,
            &[
                ("CALLED", did.trim_start_matches('+')),
                ("TENANT_RE", &regex_escape(&format!("acme.{BASE}"))),
            ],
        );
        let mut carrier = carrier_uac(
            &lab,
            "carrier_uac.xml",
            did,
            &[("CALLER", PSTN_CALLER), ("HOLD_MS", "500")],
        );
        carrier.expect_success(LONG);
        teams.expect_success(LONG);
    };

    call(&first, ACME_DID);
    assert_eq!(requests_from_sbc(&first, "INVITE"), 1);
    assert_eq!(requests_from_sbc(&second, "INVITE"), 0);
    let asked = dns.queries(NAME);
    assert!(asked >= 1, "the SBC asked the configured DNS server");

    dns.set(NAME, TEAMS_IP2);
    call(&second, "+4930123451");
    assert_eq!(
        requests_from_sbc(&second, "INVITE"),
        1,
        "the INVITE after the changed answer went to the new address"
    );
    assert_eq!(
        requests_from_sbc(&first, "INVITE"),
        1,
        "and not to the old one"
    );
    assert!(dns.queries(NAME) > asked, "resolved again, not pinned");
    lab.wait_idle();
    assert_eq!(first.violations() + second.violations(), 0);
}
