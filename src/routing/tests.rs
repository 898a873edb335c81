//! Routing table, limiter and metrics tests over a real parsed configuration.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;

use super::*;
use crate::config;

const CONFIG: &str = r#"
[sbc]
base_fqdn = "sbc1.carrier.example"

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[media.carrier]
bind = "127.0.0.1"
port_min = 20000
port_max = 20999

[media.teams]
bind = "127.0.0.1"
port_min = 30000
port_max = 30999

[teams]
proxies = [
  "sip.pstnhub.microsoft.com:5061",
  "sip2.pstnhub.microsoft.com:5061",
  { address = "127.0.0.1:45061", transport = "tcp", tls_name = "sip3.pstnhub.microsoft.com" },
]
max_concurrent_sessions = 3
lab_plain_tcp = true

[[carrier_trunk]]
name = "pstn-a"
address = "pstn-a.carrier.example:5060"
allowed_source_cidrs = ["198.51.100.0/24", "2001:db8:a::/48"]
max_concurrent_calls = 2
max_calls_per_second = 2
number_translation = [
  { pattern = '^00(\d+)$', replacement = '+$1', direction = "to_teams", field = "both" },
  { pattern = '^0(\d+)$', replacement = '+49$1', direction = "to_teams", field = "both" },
  { pattern = '^\+49(\d+)$', replacement = '0$1', direction = "from_teams", field = "called" },
]

[[carrier_trunk]]
name = "pstn-b"
address = "192.0.2.10:5060"
number_translation = [
  { pattern = '^(\d{7})$', replacement = '+4940$1', direction = "to_teams" },
]

[[carrier_trunk]]
name = "pstn-b-core"
address = "pstn-b.carrier.example:5060"
allowed_source_cidrs = ["198.51.100.128/25"]

[[tenant]]
name = "acme"
fqdn = "acme.sbc1.carrier.example"
numbers = ["+4930123400-+4930123499", "+4930987650"]
carrier_trunk = "pstn-a"
max_concurrent_calls = 5
max_calls_per_second = 1

[[tenant]]
name = "globex"
fqdn = "Globex.SBC1.carrier.example"
numbers = ["+4940*", "+493013*"]
carrier_trunk = "pstn-b"
"#;

fn loaded() -> config::Loaded {
    config::parse_str(CONFIG, "routing.toml", Path::new("."), false).unwrap()
}

fn table() -> RoutingTable {
    RoutingTable::from_config(&loaded().config).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trunk(t: &RoutingTable, name: &str) -> TrunkId {
    t.trunk_by_name(name).unwrap()
}

fn tenant(t: &RoutingTable, name: &str) -> TenantId {
    t.tenant_by_name(name).unwrap()
}

/// The sender of a carrier request is a trunk as the transport's peer rules (built from
/// this configuration) say: most specific network, the address literal, IPv6 and v4-mapped.
fn carrier_at(kind: crate::transport::TransportKind, s: &str) -> Option<TrunkId> {
    match config::mapping::peer_rules(&loaded().config).classify_plain(kind, ip(s)) {
        Some(crate::transport::Peer::Carrier(name)) => table().trunk_by_name(name.as_str()),
        _ => None,
    }
}

/// The networks a trunk's media may come from (the media engine's carrier leg gets them).
#[test]
fn trunk_sources_are_its_cidrs_or_its_address() {
    let t = table();
    let sources = |name: &str| {
        t.trunk(trunk(&t, name))
            .unwrap()
            .sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(sources("pstn-a"), ["198.51.100.0/24", "2001:db8:a::/48"]);
    assert_eq!(sources("pstn-b"), ["192.0.2.10/32"]);
}

#[test]
fn trunk_by_source_cidr_longest_prefix_ipv4_ipv6_and_address_literal() {
    use crate::transport::TransportKind::Udp;
    let t = table();
    let a = trunk(&t, "pstn-a");
    let b = trunk(&t, "pstn-b");
    let core = trunk(&t, "pstn-b-core");
    assert_eq!(carrier_at(Udp, "198.51.100.1"), Some(a));
    assert_eq!(carrier_at(Udp, "198.51.100.127"), Some(a));
    assert_eq!(
        carrier_at(Udp, "198.51.100.128"),
        Some(core),
        "/25 beats /24"
    );
    assert_eq!(carrier_at(Udp, "198.51.100.255"), Some(core));
    assert_eq!(carrier_at(Udp, "2001:db8:a:ffff::1"), Some(a));
    assert_eq!(carrier_at(Udp, "::ffff:198.51.100.7"), Some(a));
    assert_eq!(carrier_at(Udp, "192.0.2.10"), Some(b), "address literal");
    assert_eq!(carrier_at(Udp, "192.0.2.11"), None);
    assert_eq!(carrier_at(Udp, "2001:db8:b::1"), None);
    // A Microsoft address is never a carrier trunk.
    assert_eq!(carrier_at(Udp, "52.112.0.1"), None);
}

#[test]
fn row11_microsoft_ranges_speak_tls_only() {
    use crate::transport::TransportKind::{Tcp, Udp};
    let rules = config::mapping::peer_rules(&loaded().config);
    for inside in [
        "52.112.0.0",
        "52.115.255.255",
        "52.120.0.0",
        "52.123.255.255",
    ] {
        assert!(rules.may_be_tls_peer(ip(inside)), "{inside}");
        assert_eq!(rules.classify_plain(Udp, ip(inside)), None, "{inside}");
        // This configuration is a lab with a plain-TCP stand-in (teams.lab_plain_tcp).
        assert_eq!(
            rules.classify_plain(Tcp, ip(inside)),
            Some(crate::transport::Peer::Microsoft),
            "{inside}"
        );
    }
    for outside in ["52.111.255.255", "52.124.0.0"] {
        assert!(!rules.may_be_tls_peer(ip(outside)), "{outside}");
    }
}

#[test]
fn row19_row20_inbound_numbers_normalised_to_e164_then_tenant_found() {
    let t = table();
    let a = trunk(&t, "pstn-a");
    let route = t
        .route_inbound(a, "030123450", Some("0221 555-1234"))
        .unwrap();
    assert_eq!(route.tenant, tenant(&t, "acme"));
    assert_eq!(route.trunk, a);
    assert_eq!(route.matched_by, NumberMatch::Range);
    assert_eq!(route.called_e164, "+4930123450");
    assert_eq!(route.calling_e164.as_deref(), Some("+492215551234"));
    // International format from the carrier.
    let route = t
        .route_inbound(a, "004930987650", Some("0044201234567"))
        .unwrap();
    assert_eq!(route.matched_by, NumberMatch::Exact);
    assert_eq!(route.calling_e164.as_deref(), Some("+44201234567"));
    // Already E.164 passes untouched; anonymous caller stays None.
    let route = t
        .route_inbound(a, "+4930123499", Some("anonymous"))
        .unwrap();
    assert_eq!(route.called_e164, "+4930123499");
    assert_eq!(route.calling_e164, None);
    assert_eq!(
        t.route_inbound(a, "+4930123499", None)
            .unwrap()
            .calling_e164,
        None
    );
}

#[test]
fn translation_rules_are_per_trunk() {
    let t = table();
    let b = trunk(&t, "pstn-b");
    let route = t.route_inbound(b, "5551234", None).unwrap();
    assert_eq!(route.called_e164, "+49405551234");
    assert_eq!(route.tenant, tenant(&t, "globex"));
    assert_eq!(route.matched_by, NumberMatch::Prefix);
    // pstn-b has no national-prefix rule: 0-prefixed numbers stay non-E.164 → 404.
    let miss = t.route_inbound(b, "030123450", None).unwrap_err();
    assert_eq!(
        miss,
        InboundMiss::CalledNotE164 {
            translated: "030123450".into()
        }
    );
    assert_eq!(miss.sip_status(), 404);
}

#[test]
fn inbound_unknown_number_is_a_typed_404_miss() {
    let t = table();
    let a = trunk(&t, "pstn-a");
    let miss = t.route_inbound(a, "+4930123500", None).unwrap_err();
    assert_eq!(
        miss,
        InboundMiss::UnknownNumber {
            called_e164: "+4930123500".into()
        }
    );
    assert_eq!(miss.sip_status(), 404);
    // Range bounds: one below and one above acme's block; +493013* belongs to globex.
    let b = trunk(&t, "pstn-b");
    assert!(t.route_inbound(a, "+4930123399", None).is_err());
    assert_eq!(
        t.route_inbound(b, "+4930130000", None).unwrap().tenant,
        tenant(&t, "globex")
    );
    assert!(t.route_inbound(a, "+4930123500", None).is_err());
    assert!(t.route_inbound(a, "", None).is_err());
    assert!(t.route_inbound(a, "+", None).is_err());
}

/// One carrier cannot reach another carrier's customers: a tenant's numbers are reachable
/// only from the trunks that tenant names, and a miss looks like an unknown number.
#[test]
fn inbound_calls_reach_only_tenants_the_calling_trunk_serves() {
    let t = table();
    let a = trunk(&t, "pstn-a");
    let b = trunk(&t, "pstn-b");
    assert_eq!(
        t.route_inbound(b, "+4940777", None).unwrap().tenant,
        tenant(&t, "globex")
    );
    let miss = t.route_inbound(a, "+4940777", None).unwrap_err();
    assert_eq!(
        miss,
        InboundMiss::TenantNotServed {
            tenant: tenant(&t, "globex")
        }
    );
    assert_eq!(miss.sip_status(), 404);
    assert!(
        t.route_inbound(b, "+4930123450", None).is_err(),
        "acme is pstn-a's"
    );
}

#[test]
fn row31_row32_two_tenants_on_one_base_by_request_uri_host() {
    let t = table();
    let acme = tenant(&t, "acme");
    let globex = tenant(&t, "globex");
    assert_eq!(t.tenant_for_host("acme.sbc1.carrier.example"), Some(acme));
    assert_eq!(t.tenant_for_host("ACME.Sbc1.Carrier.Example"), Some(acme));
    assert_eq!(t.tenant_for_host("acme.sbc1.carrier.example."), Some(acme));
    assert_eq!(
        t.tenant_for_host("globex.sbc1.carrier.example"),
        Some(globex)
    );
    // Base alone, unknown sibling, deeper name, other base: not tenants.
    for host in [
        "sbc1.carrier.example",
        "initech.sbc1.carrier.example",
        "x.acme.sbc1.carrier.example",
        "acme.sbc2.carrier.example",
        "",
        ".",
    ] {
        assert_eq!(t.tenant_for_host(host), None, "{host:?}");
        let miss = t
            .route_outbound(host, "+4989123", Some("+4930123450"))
            .unwrap_err();
        assert_eq!(miss, OutboundMiss::UnknownHost);
        assert_eq!(miss.sip_status(), 404);
    }
    // Row 32: the Contact FQDN for an inbound call is the tenant found by DID.
    let inbound = t
        .route_inbound(trunk(&t, "pstn-b"), "+4940777", None)
        .unwrap();
    assert_eq!(
        &*t.tenant(inbound.tenant).unwrap().fqdn,
        "globex.sbc1.carrier.example"
    );
    let inbound = t
        .route_inbound(trunk(&t, "pstn-a"), "+4930987650", None)
        .unwrap();
    assert_eq!(
        &*t.tenant(inbound.tenant).unwrap().fqdn,
        "acme.sbc1.carrier.example"
    );
}

#[test]
fn outbound_route_gives_trunk_list_and_per_trunk_numbers() {
    let t = table();
    let route = t
        .route_outbound(
            "acme.sbc1.carrier.example",
            "+49 89 1234567",
            Some("+4930123401"),
        )
        .unwrap();
    assert_eq!(route.tenant, tenant(&t, "acme"));
    assert_eq!(route.trunks.trunks(), &[trunk(&t, "pstn-a")]);
    assert_eq!(route.called, "+49891234567");
    let first = route.trunks.current().unwrap();
    assert_eq!(
        t.outbound_numbers(first, &route),
        DialNumbers {
            called: "0891234567".into(),
            calling: Some("+4930123401".into()),
        }
    );
    // A trunk without from_teams rules sends the numbers as Teams sent them.
    assert_eq!(
        t.outbound_numbers(trunk(&t, "pstn-b"), &route).called,
        "+49891234567"
    );
}

#[test]
fn outbound_screening_403_for_numbers_not_owned_by_the_tenant() {
    let t = table();
    let host = "acme.sbc1.carrier.example";
    assert!(t
        .route_outbound(host, "+4989123", Some("+4930123400"))
        .is_ok());
    assert!(t
        .route_outbound(host, "+4989123", Some("+4930987650"))
        .is_ok());
    for calling in [
        Some("+4940555"),
        Some("+4930123500"),
        Some("anonymous"),
        Some(""),
        None,
    ] {
        let miss = t.route_outbound(host, "+4989123", calling).unwrap_err();
        assert_eq!(
            miss,
            OutboundMiss::CallingNumberNotAllowed {
                tenant: tenant(&t, "acme")
            },
            "{calling:?}"
        );
        assert_eq!(miss.sip_status(), 403);
    }
    // Screening off: any calling number passes.
    let open = RoutingTable::from_config_with(
        &loaded().config,
        &RoutingOptions {
            screen_calling_numbers: false,
        },
    )
    .unwrap();
    let route = open
        .route_outbound(host, "+4989123", Some("+4940555"))
        .unwrap();
    assert_eq!(route.calling.as_deref(), Some("+4940555"));
    assert!(open.route_outbound(host, "+4989123", None).is_ok());
}

#[test]
fn proxies_in_configured_order_with_hop_timeout_from_config() {
    let t = table();
    let names: Vec<&str> = t.proxies().iter().map(|p| p.host.as_str()).collect();
    assert_eq!(
        names,
        [
            "sip.pstnhub.microsoft.com",
            "sip2.pstnhub.microsoft.com",
            "127.0.0.1"
        ]
    );
    assert_eq!(t.proxies()[2].port, 45061);
    assert_eq!(t.proxies()[2].transport, config::TransportKind::Tcp);
    assert_eq!(
        t.proxies()[2].tls_name.as_deref(),
        Some("sip3.pstnhub.microsoft.com")
    );
    assert_eq!(t.proxy_hop_timeout(), Duration::from_secs(5));
    let now = Instant::now();
    let memory = t.proxy_memory(now);
    let mut f = t.proxy_failover(Some(&memory), now);
    let first = f.current().unwrap();
    assert_eq!(t.proxy(first).unwrap().host, "sip.pstnhub.microsoft.com");
    memory.record(first, ProxyOutcome::ConnectFailed, now);
    let next = match f.on_outcome(ProxyOutcome::ConnectFailed) {
        ProxyStep::TryNext(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(t.proxy(next).unwrap().host, "sip2.pstnhub.microsoft.com");
    // The next call starts with sip2: sip is demoted for the OPTIONS interval (60 s).
    let later = t.proxy_failover(Some(&memory), now + Duration::from_secs(59));
    assert_eq!(later.order()[0], next);
    let after = t.proxy_failover(Some(&memory), now + Duration::from_secs(60));
    assert_eq!(after.order()[0], first);
}

#[test]
fn conflicting_numbers_and_bad_references_are_errors_not_panics() {
    let mut c = loaded().config;
    c.tenants[1].numbers = vec!["+4930123450".into()];
    assert!(matches!(
        RoutingTable::from_config(&c),
        Err(RoutingError::NumberConflict { .. })
    ));
    let mut c = loaded().config;
    c.tenants[0].carrier_trunk = "nope".into();
    assert!(matches!(
        RoutingTable::from_config(&c),
        Err(RoutingError::UnknownTrunk { .. })
    ));
    let mut c = loaded().config;
    c.tenants[1].fqdn = "ACME.sbc1.carrier.example.".into();
    assert!(matches!(
        RoutingTable::from_config(&c),
        Err(RoutingError::DuplicateFqdn(_))
    ));
    let mut c = loaded().config;
    c.carrier_trunks[0].number_translation[0].pattern = "(".into();
    assert!(matches!(
        RoutingTable::from_config(&c),
        Err(RoutingError::BadPattern { index: 0, .. })
    ));
    let mut c = loaded().config;
    c.tenants[0].numbers.push("0301234".into());
    assert!(matches!(
        RoutingTable::from_config(&c),
        Err(RoutingError::BadNumber { .. })
    ));
}

// ---- limits ----

fn limiter(t: &RoutingTable, epoch: Instant) -> CallLimiter {
    CallLimiter::new(t, epoch)
}

#[test]
fn concurrency_guard_releases_on_drop_and_rejects_with_retry_after() {
    let t = table();
    let now = Instant::now();
    let l = limiter(&t, now);
    let a = trunk(&t, "pstn-a");
    let acme = tenant(&t, "acme");
    // pstn-a: 2 concurrent, 2 cps; spread calls over seconds so only concurrency bites.
    let g1 = l.try_admit(a, acme, now).unwrap();
    let g2 = l.try_admit(a, acme, now + Duration::from_secs(1)).unwrap();
    assert_eq!(l.active_on_trunk(a), 2);
    assert_eq!(l.active_for_tenant(acme), 2);
    assert_eq!(l.active_global(), 2);
    let r = l
        .try_admit(a, acme, now + Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(
        r,
        Rejection {
            scope: LimitScope::Trunk(a),
            reason: LimitReason::Concurrent,
            retry_after_secs: 1
        }
    );
    // The refused call left nothing behind.
    assert_eq!(l.active_global(), 2);
    assert_eq!(l.active_for_tenant(acme), 2);
    drop(g1);
    assert_eq!(l.active_on_trunk(a), 1);
    assert_eq!(l.active_global(), 1);
    let g3 = l.try_admit(a, acme, now + Duration::from_secs(3)).unwrap();
    drop((g2, g3));
    assert_eq!(l.active_on_trunk(a), 0);
    assert_eq!(l.active_for_tenant(acme), 0);
    assert_eq!(l.active_global(), 0);
}

#[test]
fn global_max_concurrent_sessions_applies_across_trunks() {
    let t = table();
    let now = Instant::now();
    let l = limiter(&t, now);
    let b = trunk(&t, "pstn-b");
    let core = trunk(&t, "pstn-b-core");
    let globex = tenant(&t, "globex");
    let guards: Vec<AdmitGuard> = [b, core, b]
        .iter()
        .map(|tr| l.try_admit(*tr, globex, now).unwrap())
        .collect();
    let r = l.try_admit(core, globex, now).unwrap_err();
    assert_eq!(r.scope, LimitScope::Global);
    assert_eq!(r.reason, LimitReason::Concurrent);
    drop(guards);
    assert!(l.try_admit(core, globex, now).is_ok());
}

#[test]
fn cps_bucket_with_simulated_clock_and_retry_after_value() {
    let t = table();
    let epoch = Instant::now();
    let l = limiter(&t, epoch);
    let a = trunk(&t, "pstn-a");
    let globex = tenant(&t, "globex"); // no tenant limits: only the trunk's 2 cps applies
    let at = |ms: u64| epoch + Duration::from_millis(ms);
    // Burst of 2, then one every 500 ms.
    drop(l.try_admit(a, globex, at(0)).unwrap());
    drop(l.try_admit(a, globex, at(0)).unwrap());
    let r = l.try_admit(a, globex, at(0)).unwrap_err();
    assert_eq!(r.scope, LimitScope::Trunk(a));
    assert_eq!(r.reason, LimitReason::CallsPerSecond);
    assert_eq!(r.retry_after_secs, 1, "500 ms rounds up to 1 s");
    assert!(l.try_admit(a, globex, at(499)).is_err());
    drop(l.try_admit(a, globex, at(500)).unwrap());
    assert!(l.try_admit(a, globex, at(500)).is_err());
    drop(l.try_admit(a, globex, at(1000)).unwrap());
    // A quiet period refills the burst, but never beyond it.
    for _ in 0..2 {
        drop(l.try_admit(a, globex, at(10_000)).unwrap());
    }
    assert!(l.try_admit(a, globex, at(10_000)).is_err());
    // A refusal holds no concurrency slot.
    assert_eq!(l.active_global(), 0);
}

#[test]
fn tenant_cps_refusal_gives_back_the_trunk_token() {
    let t = table();
    let epoch = Instant::now();
    let l = limiter(&t, epoch);
    let a = trunk(&t, "pstn-a");
    let acme = tenant(&t, "acme"); // 1 cps
    let globex = tenant(&t, "globex");
    drop(l.try_admit(a, acme, epoch).unwrap());
    let r = l.try_admit(a, acme, epoch).unwrap_err();
    assert_eq!(r.scope, LimitScope::Tenant(acme));
    assert_eq!(r.reason, LimitReason::CallsPerSecond);
    assert_eq!(r.retry_after_secs, 1);
    // pstn-a (2 cps) still has the token acme's refused call took and gave back.
    assert!(l.try_admit(a, globex, epoch).is_ok());
}

#[test]
fn long_cps_wait_rounds_up_to_whole_seconds() {
    let mut c = loaded().config;
    c.carrier_trunks[1].max_calls_per_second = Some(1);
    let t = RoutingTable::from_config(&c).unwrap();
    let epoch = Instant::now();
    let l = limiter(&t, epoch);
    let b = trunk(&t, "pstn-b");
    let g = tenant(&t, "globex");
    let at = |ms: u64| epoch + Duration::from_millis(ms);
    drop(l.try_admit(b, g, at(0)).unwrap());
    assert_eq!(l.try_admit(b, g, at(0)).unwrap_err().retry_after_secs, 1);
    assert_eq!(l.try_admit(b, g, at(1)).unwrap_err().retry_after_secs, 1);
    drop(l.try_admit(b, g, at(1000)).unwrap());
}

#[test]
fn failover_moves_the_trunk_slot() {
    let t = table();
    let now = Instant::now();
    let l = limiter(&t, now);
    let a = trunk(&t, "pstn-a");
    let b = trunk(&t, "pstn-b");
    let acme = tenant(&t, "acme");
    let mut g = l.try_admit(a, acme, now).unwrap();
    g.move_to_trunk(&l, b, now).unwrap();
    assert_eq!(g.trunk(), Some(b));
    assert_eq!(l.active_on_trunk(a), 0);
    assert_eq!(l.active_on_trunk(b), 1);
    assert_eq!(l.active_for_tenant(acme), 1);
    // Moving onto a full trunk fails and keeps the old slot.
    let _x = l
        .try_admit(a, tenant(&t, "globex"), now + Duration::from_secs(1))
        .unwrap();
    let _y = l
        .try_admit(a, tenant(&t, "globex"), now + Duration::from_secs(2))
        .unwrap();
    let r = g
        .move_to_trunk(&l, a, now + Duration::from_secs(3))
        .unwrap_err();
    assert_eq!(r.scope, LimitScope::Trunk(a));
    assert_eq!(g.trunk(), Some(b));
    assert_eq!(l.active_on_trunk(b), 1);
    drop(g);
    assert_eq!(l.active_on_trunk(b), 0);
    assert_eq!(l.active_for_tenant(acme), 0);
}

#[test]
fn reload_keeps_counters_of_calls_in_progress() {
    let t = table();
    let now = Instant::now();
    let old = limiter(&t, now);
    let a = trunk(&t, "pstn-a");
    let acme = tenant(&t, "acme");
    let g1 = old.try_admit(a, acme, now).unwrap();
    let g2 = old
        .try_admit(a, acme, now + Duration::from_secs(1))
        .unwrap();
    let mut c = loaded().config;
    c.carrier_trunks[0].max_concurrent_calls = Some(3);
    let new_table = RoutingTable::from_config(&c).unwrap();
    let new = old.reconfigured(&new_table);
    assert_eq!(new.active_on_trunk(a), 2);
    let g3 = new
        .try_admit(a, acme, now + Duration::from_secs(2))
        .unwrap();
    assert!(new
        .try_admit(a, acme, now + Duration::from_secs(3))
        .is_err());
    drop((g1, g2, g3));
    assert_eq!(new.active_on_trunk(a), 0);
    assert_eq!(new.active_global(), 0);
}

#[test]
fn concurrent_admission_never_exceeds_limits() {
    let mut c = loaded().config;
    c.carrier_trunks[0].max_calls_per_second = None;
    let t = Arc::new(RoutingTable::from_config(&c).unwrap());
    let epoch = Instant::now();
    let l = Arc::new(limiter(&t, epoch));
    let a = trunk(&t, "pstn-a"); // 2 concurrent
    let globex = tenant(&t, "globex");
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut admitted = 0u32;
                for i in 0..2000u64 {
                    let now = epoch + Duration::from_millis(thread * 1000 + i);
                    if let Ok(guard) = l.try_admit(a, globex, now) {
                        admitted += 1;
                        assert!(l.active_on_trunk(a) <= 2);
                        assert!(l.active_global() <= 3);
                        drop(guard);
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(admitted > 0);
    assert_eq!(l.active_on_trunk(a), 0);
    assert_eq!(l.active_for_tenant(globex), 0);
    assert_eq!(l.active_global(), 0);
}

#[test]
fn concurrent_cps_admits_exactly_the_burst() {
    let t = Arc::new(table());
    let epoch = Instant::now();
    let l = Arc::new(limiter(&t, epoch));
    let a = trunk(&t, "pstn-a"); // 2 cps, 2 concurrent
    let globex = tenant(&t, "globex");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                (0..100)
                    .filter(|_| l.try_admit(a, globex, epoch).is_ok())
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        admitted, 2,
        "a burst of 2 at one instant, whatever the interleaving"
    );
}

// ---- metrics ----

/// The value of the first sample of `name` carrying all `labels`, from the text exposition.
fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .map_or(f64::NAN, |v| v.parse().unwrap())
}

#[test]
fn metrics_per_tenant_and_trunk_with_bounded_labels() {
    let t = table();
    let registry = Registry::new();
    let m = RoutingMetrics::register(&registry).unwrap();
    let a = trunk(&t, "pstn-a");
    let acme = tenant(&t, "acme");
    let labels = t.call_labels(Some(acme), Some(a), CallDirection::Inbound);
    m.attempt(&labels);
    m.attempt(&labels);
    m.attempt(&labels);
    let lab = [
        ("tenant", "acme"),
        ("trunk", "pstn-a"),
        ("direction", "inbound"),
    ];
    assert_eq!(value(&registry, "calls_attempted_total", &lab), 3.0);
    assert_eq!(
        value(
            &registry,
            "calls_active",
            &[("tenant", "acme"), ("trunk", "pstn-a")]
        ),
        3.0
    );
    m.answered(&labels, Duration::from_millis(800));
    m.failed(&labels, CallFailure::Status(486));
    m.failed(&labels, CallFailure::Timeout);
    for _ in 0..3 {
        m.ended(&labels);
    }
    assert_eq!(value(&registry, "calls_answered_total", &lab), 1.0);
    assert_eq!(
        value(
            &registry,
            "calls_failed_total",
            &[("class", "4xx"), ("tenant", "acme")]
        ),
        1.0
    );
    assert_eq!(
        value(&registry, "calls_failed_total", &[("class", "timeout")]),
        1.0
    );
    assert_eq!(
        value(&registry, "calls_failed_user_total", &[("cause", "busy")]),
        1.0
    );
    assert_eq!(
        value(
            &registry,
            "calls_active",
            &[("tenant", "acme"), ("trunk", "pstn-a")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &registry,
            "call_setup_seconds_count",
            &[("direction", "inbound")]
        ),
        1.0
    );
    // Unknown tenant (e.g. a 404 miss) is labelled "unknown", never with input text.
    let unknown = t.call_labels(None, Some(a), CallDirection::Outbound);
    m.attempt(&unknown);
    assert_eq!(
        value(
            &registry,
            "calls_attempted_total",
            &[("tenant", "unknown"), ("trunk", "pstn-a")]
        ),
        1.0
    );
    let stale = t.call_labels(
        Some(TenantId(999)),
        Some(TrunkId(999)),
        CallDirection::Inbound,
    );
    m.attempt(&stale);
    assert_eq!(
        value(
            &registry,
            "calls_attempted_total",
            &[("tenant", "unknown"), ("trunk", "unknown")]
        ),
        1.0
    );
    m.rejected(&Rejection {
        scope: LimitScope::Trunk(a),
        reason: LimitReason::CallsPerSecond,
        retry_after_secs: 1,
    });
    assert_eq!(
        value(
            &registry,
            "calls_rejected_total",
            &[("scope", "trunk"), ("reason", "cps")]
        ),
        1.0
    );
}

#[test]
fn failure_classes_and_ner_causes() {
    use CallFailure::*;
    assert_eq!(Status(404).class(), "4xx");
    assert_eq!(Status(503).class(), "5xx");
    assert_eq!(Status(603).class(), "6xx");
    assert_eq!(Status(302).class(), "other");
    assert_eq!(Timeout.class(), "timeout");
    assert_eq!(Status(486).user_cause(), Some("busy"));
    assert_eq!(Status(600).user_cause(), Some("busy"));
    assert_eq!(Status(480).user_cause(), Some("no_answer"));
    assert_eq!(Status(487).user_cause(), Some("no_answer"));
    assert_eq!(Status(603).user_cause(), Some("rejected"));
    for not_effective in [Status(404), Status(408), Status(500), Status(503), Timeout] {
        assert_eq!(not_effective.user_cause(), None, "{not_effective:?}");
    }
}

#[test]
fn registering_twice_in_one_registry_is_an_error_not_a_panic() {
    let registry = Registry::new();
    RoutingMetrics::register(&registry).unwrap();
    assert!(RoutingMetrics::register(&registry).is_err());
}

#[test]
fn tenant_failover_trunks_follow_the_primary_in_configured_order() {
    let text = CONFIG.replacen(
        "carrier_trunk = \"pstn-a\"",
        "carrier_trunk = \"pstn-a\"\nfailover_carrier_trunks = [\"pstn-b-core\", \"pstn-b\"]",
        1,
    );
    let loaded = config::parse_str(&text, "routing.toml", Path::new("."), false).unwrap();
    let t = RoutingTable::from_config(&loaded.config).unwrap();
    let acme = t.tenant(tenant(&t, "acme")).unwrap();
    assert_eq!(
        acme.trunks,
        vec![
            trunk(&t, "pstn-a"),
            trunk(&t, "pstn-b-core"),
            trunk(&t, "pstn-b")
        ]
    );
    // A transient failure of the primary moves the outbound call to the next trunk.
    let mut route = t
        .route_outbound("acme.sbc1.carrier.example", "+4989123", Some("+4930123450"))
        .unwrap();
    assert_eq!(route.trunks.current(), Some(trunk(&t, "pstn-a")));
    assert_eq!(
        route.trunks.on_failure(TrunkFailure::Response(503)),
        TrunkStep::TryNext(trunk(&t, "pstn-b-core"))
    );
    assert_eq!(route.trunks.current(), Some(trunk(&t, "pstn-b-core")));
}

/// Row 61: a proxy SBC's downstream SBC FQDN (Microsoft's Request-URI host) routes Teams ->
/// PSTN calls to that SBC's trunk for its tenant, and that trunk may call the tenant's
/// numbers; the FQDN is no tenant of its own.
#[test]
fn row61_downstream_sbc_fqdn_routes_to_its_trunk_for_its_tenant() {
    let text = CONFIG.replacen(
        "carrier_trunk = \"pstn-a\"\nmax_concurrent_calls = 5",
        "carrier_trunk = \"pstn-a\"\n\
         lmo = { role = \"proxy\", downstream_sbcs = [{ fqdn = \"VNsbc.contoso.example\", carrier_trunk = \"pstn-b-core\" }] }\n\
         max_concurrent_calls = 5",
        1,
    );
    let text = text
        .replacen("[teams]\n", "[teams]\nmedia_bypass = true\n", 1)
        .replacen(
            "[media.teams]\nbind = \"127.0.0.1\"",
            "[media.teams]\nbind = \"127.0.0.1\"\ninternal_address = \"127.0.0.1\"",
            1,
        );
    let loaded = config::parse_str(&text, "routing.toml", Path::new("."), false).unwrap();
    let t = RoutingTable::from_config(&loaded.config).unwrap();
    let (acme, core) = (tenant(&t, "acme"), trunk(&t, "pstn-b-core"));
    assert_eq!(t.tenant_for_host("vnsbc.contoso.example"), None);
    assert_eq!(
        t.downstream_for_host("vnsbc.contoso.example."),
        Some((acme, core))
    );
    let route = t
        .route_outbound("VNSBC.contoso.example", "+84439263000", Some("+4930123450"))
        .unwrap();
    assert_eq!(route.tenant, acme);
    assert_eq!(route.trunks.trunks(), [core], "its trunk only");
    assert_eq!(
        t.route_inbound(core, "+4930123450", None).unwrap().tenant,
        acme
    );
    // Screening still applies: the calling number must be the tenant's.
    assert!(t
        .route_outbound("vnsbc.contoso.example", "+84439263000", Some("+4940777"))
        .is_err());
}
