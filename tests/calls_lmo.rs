//! Local Media Optimization (row 61) end to end: the SBC in-process as the proxy SBC of
//! tenant Acme (`[tenant.lmo] role = "proxy"`), a downstream SBC `vnsbc.contoso.example`
//! reached as its own carrier trunk (SIPp UAS on 127.0.0.6), SIPp as Microsoft behind the
//! mutual-TLS stand-in sending Teams -> PSTN INVITEs to the downstream SBC's FQDN with
//! `X-MS-UserLocation`, `X-MS-MediaPath` and `X-MS-UserSite`.
//!
//! `[media.teams]` binds 127.0.0.1, which is also its `internal_address`; `advertised` (the
//! public address a NAT would forward) is 127.0.0.11. An internal user's call gets
//! 127.0.0.1 in our 200's `c=` and ICE candidate, an external user's 127.0.0.11; both 200s
//! carry Record-Route and Contact at the tenant FQDN and TLS port; the call reaches the
//! downstream SBC's trunk, never the tenant's own.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::*;

const ACME_DID: &str = "+4930123450";
const PSTN_CALLEE: &str = "+4969555000";
const DOWNSTREAM: &str = "vnsbc.contoso.example";
const DOWNSTREAM_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
const ADVERTISED: &str = "127.0.0.11";
const LONG: Duration = Duration::from_secs(45);

fn lab(media_base: u16, downstream_port: u16) -> Lab {
    let mut spec = LabSpec::new(media_base);
    spec.teams_extra = "media_bypass = true".into();
    spec.teams_media_extra =
        format!("advertised = \"{ADVERTISED}\"\ninternal_address = \"{SBC_IP}\"");
    spec.carrier_extra = format!(
        "\n[[carrier_trunk]]\nname = \"vn-gw\"\naddress = \"{DOWNSTREAM_IP}:{downstream_port}\"\n\
         transport = \"udp\"\noptions_ping = false\n"
    );
    spec.tenants[0].extra = format!(
        "lmo = {{ role = \"proxy\", downstream_sbcs = [{{ fqdn = \"{DOWNSTREAM}\", carrier_trunk = \"vn-gw\" }}] }}"
    );
    lab_with_one_proxy_and(spec).0
}

/// Microsoft's call from an Acme user to the PSTN through the downstream SBC, the user at
/// `location`; our 200 must offer `expect_ip`.
fn call_through_downstream(lab: &Lab, downstream_port: u16, location: &str, expect_ip: &str) {
    let sink = UdpSocket::bind((TEAMS_IP, 0)).unwrap();
    let mut downstream = carrier_uas_on(
        lab,
        (DOWNSTREAM_IP, downstream_port).into(),
        "calls",
        "carrier_uas.xml",
        &[("CALLED", PSTN_CALLEE.trim_start_matches('+'))],
        SIPP_LIMIT,
    );
    let acme = format!("acme.{BASE}");
    let mut teams = teams_uac(
        lab,
        location,
        "teams_uac_lmo.xml",
        &[
            ("CALLED", PSTN_CALLEE),
            ("CALLER", ACME_DID),
            ("TARGET", DOWNSTREAM),
            ("TENANT", &acme),
            ("TENANT_RE", &regex_escape(&acme)),
            ("TLS_PORT", &lab.tls.to_string()),
            ("LOCATION", location),
            ("MEDIA_PATH", &format!("{acme}, {DOWNSTREAM}")),
            ("EXPECT_IP_RE", &regex_escape(expect_ip)),
            ("MEDIA_IP", &TEAMS_IP.to_string()),
            ("MEDIA_PORT", &sink.local_addr().unwrap().port().to_string()),
            ("CRYPTO", &new_inline_key()),
            ("HOLD_MS", "300"),
        ],
    );
    teams.expect_success(LONG);
    downstream.expect_success(LONG);
}

#[test]
fn row61_proxy_sbc_relays_to_the_downstream_sbc_with_the_address_for_the_users_location() {
    let downstream_port = free_udp_port(DOWNSTREAM_IP);
    let lab = lab(63400, downstream_port);
    call_through_downstream(&lab, downstream_port, "internal", &SBC_IP.to_string());
    call_through_downstream(&lab, downstream_port, "external", ADVERTISED);
    for location in ["internal", "external"] {
        assert_eq!(
            lab.metric("lmo_media_address_total", &[("location", location)]),
            1.0,
            "{location}"
        );
    }
    assert_eq!(
        lab.metric(
            "calls_answered_total",
            &[
                ("tenant", "acme"),
                ("trunk", "vn-gw"),
                ("direction", "outbound")
            ]
        ),
        2.0,
        "both calls went out through the downstream SBC's trunk"
    );
    assert_eq!(
        lab.metric("lmo_media_path_not_through_sbc_total", &[]),
        0.0,
        "Microsoft's media path starts at this SBC"
    );
    lab.wait_idle();
}
