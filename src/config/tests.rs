//! One test per validation rule; each asserts the field path and line in the error.

use std::path::Path;

use super::*;

const GOOD: &str = r#"
[sbc]
base_fqdn = "sbc.carrier.example"
vendor = "Example"
model = "SBC"

[tls]
cert_chain = "certs/sbc.pem"
private_key = "certs/sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.1:5070"

[[tenant]]
name = "acme"
fqdn = "acme.sbc.carrier.example"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[[tenant]]
name = "globex"
fqdn = "globex.sbc.carrier.example"
numbers = ["+4940*"]
carrier_trunk = "pstn"

[media.carrier]
bind = "127.0.0.1"
port_min = 20000
port_max = 20999

[media.teams]
bind = "127.0.0.1"
port_min = 30000
port_max = 30999
"#;

fn parse(text: &str) -> Result<Loaded, ConfigErrors> {
    parse_str(text, "t.toml", Path::new("/etc/sbc"), false)
}

/// Parse `GOOD` with `from` replaced by `to` and return the errors.
fn errors_with(from: &str, to: &str) -> Vec<ConfigError> {
    assert!(GOOD.contains(from), "test edit {from:?} not found");
    match parse(&GOOD.replacen(from, to, 1)) {
        Ok(_) => panic!("config with {to:?} accepted"),
        Err(e) => e.0,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn assert_error(errors: &[ConfigError], field: &str, fragment: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(fragment)),
        "no error on {field} containing {fragment:?}; got:\n{}",
        ConfigErrors(errors.to_vec())
    );
}

#[test]
fn good_config_loads_with_defaults() {
    let loaded = parse(GOOD).unwrap();
    let c = &loaded.config;
    assert_eq!(c.sbc.sip_signaling_port, 5061);
    assert_eq!(c.sip.max_message_bytes, 65536);
    assert_eq!(c.tls.roots, "microsoft");
    assert!(c.tls.require_client_cert);
    assert_eq!(
        c.tls.teams_peer_san,
        crate::config::schema::MICROSOFT_PEER_NAMES
    );
    assert_eq!(c.teams.proxies.len(), 3);
    assert_eq!(
        c.teams.proxies[0].address(),
        "sip.pstnhub.microsoft.com:5061"
    );
    assert_eq!(c.teams.proxies[0].transport(), TransportKind::Tls);
    assert_eq!(c.teams.options_interval_seconds, 60);
    assert_eq!(c.teams.failover_time_seconds, 10);
    assert_eq!(c.teams.failover_response_codes, vec![408, 503, 504]);
    assert_eq!(c.teams.allowed_source_cidrs.len(), 3);
    assert_eq!(c.ops.metrics_listen.port(), 9090);
    assert_eq!(c.ops.log_format, LogFormat::Text);
    assert_eq!(
        c.tls.cert_chain.as_deref(),
        Some(Path::new("/etc/sbc/certs/sbc.pem"))
    );
    assert!(loaded
        .microsoft_product()
        .x_ms_sbc
        .is_some_and(|v| v.starts_with("Example/SBC/")));
    assert_eq!(loaded.carrier_product().server, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn tenant_lookup_by_number_and_fqdn() {
    let loaded = parse(GOOD).unwrap();
    assert_eq!(
        loaded.tenant_for_number("+4930123450").unwrap().name,
        "acme"
    );
    assert_eq!(loaded.tenant_for_number("4940555").unwrap().name, "globex");
    assert!(loaded.tenant_for_number("+4930123500").is_none());
    assert_eq!(
        loaded
            .tenant_for_fqdn("GLOBEX.sbc.carrier.example")
            .unwrap()
            .name,
        "globex"
    );
}

#[test]
fn syntax_error_has_line() {
    let text = GOOD.replacen("model = \"SBC\"", "model = \"SBC", 1);
    let e = parse(&text).unwrap_err().0;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, Some(line_of(&text, "model = ")));
}

#[test]
fn unknown_field_rejected_with_line() {
    let text = GOOD.replacen("vendor = \"Example\"", "vendr = \"Example\"", 1);
    let e = parse(&text).unwrap_err().0;
    assert!(e[0].message.contains("unknown field `vendr`"), "{}", e[0]);
    assert_eq!(e[0].line, Some(line_of(&text, "vendr")));
    let e = errors_with("[[carrier_trunk]]\n", "[[carrier_trunk]]\nflavour = 1\n");
    assert!(e[0].message.contains("unknown field `flavour`"), "{}", e[0]);
}

#[test]
fn unknown_carrier_trunk_reference_names_file_line_field() {
    let text = GOOD.replacen("carrier_trunk = \"pstn\"", "carrier_trunk = \"foo\"", 1);
    let e = parse(&text).unwrap_err().0;
    assert_error(
        &e,
        "tenant[0].carrier_trunk",
        "no carrier trunk named \"foo\"",
    );
    let line = line_of(&text, "carrier_trunk = \"foo\"");
    assert_eq!(
        e[0].to_string(),
        format!("t.toml:{line}: tenant[0].carrier_trunk: no carrier trunk named \"foo\"")
    );
}

#[test]
fn all_errors_are_collected() {
    let text = GOOD
        .replacen("carrier_trunk = \"pstn\"", "carrier_trunk = \"foo\"", 1)
        .replacen("name = \"globex\"", "name = \"acme\"", 1)
        .replacen("port_max = 30999", "port_max = 29000", 1);
    let e = parse(&text).unwrap_err().0;
    assert!(e.len() >= 3, "{}", ConfigErrors(e));
}

#[test]
fn base_fqdn_must_be_a_name_not_an_ip_row_15() {
    let e = errors_with(
        "base_fqdn = \"sbc.carrier.example\"",
        "base_fqdn = \"192.0.2.1\"",
    );
    assert_error(&e, "sbc.base_fqdn", "IP address");
    assert_eq!(e[0].line, Some(3));
}

#[test]
fn base_fqdn_longer_than_63_rejected() {
    let long = format!("{}.example", "a".repeat(60));
    let e = errors_with("sbc.carrier.example\"", &format!("{long}\""));
    assert_error(&e, "sbc.base_fqdn", "at most 63");
}

#[test]
fn tenant_fqdn_must_be_one_label_under_base() {
    let e = errors_with("acme.sbc.carrier.example", "a.b.sbc.carrier.example");
    assert_error(&e, "tenant[0].fqdn", "exactly one label");
    let e = errors_with("acme.sbc.carrier.example", "acme.other.example");
    assert_error(&e, "tenant[0].fqdn", "exactly one label");
    let e = errors_with("acme.sbc.carrier.example", "sbc.carrier.example");
    assert_error(&e, "tenant[0].fqdn", "exactly one label");
}

#[test]
fn tenant_fqdn_length_limit_63() {
    // base is 19 characters; a 44-character label makes 64.
    let e = errors_with("acme.sbc", &format!("{}.sbc", "a".repeat(44)));
    assert_error(&e, "tenant[0].fqdn", "at most 63");
}

#[test]
fn duplicate_tenant_name_and_fqdn() {
    let e = errors_with("name = \"globex\"", "name = \"acme\"");
    assert_error(&e, "tenant[1].name", "duplicate tenant name");
    let e = errors_with("globex.sbc", "acme.sbc");
    assert_error(&e, "tenant[1].fqdn", "duplicate tenant fqdn");
}

#[test]
fn overlapping_numbers_between_tenants() {
    let text = GOOD.replacen("\"+4940*\"", "\"+4941*\", \"+4930123450\"", 1);
    let e = parse(&text).unwrap_err().0;
    assert_error(&e, "tenant[1].numbers[1]", "overlaps tenant[0].numbers[0]");
    assert_eq!(e[0].line, Some(line_of(&text, "+4930123450")));
}

#[test]
fn invalid_numbers_rejected() {
    let e = errors_with("\"+4940*\"", "\"04940\"");
    assert_error(&e, "tenant[1].numbers[0]", "must start with '+'");
}

#[test]
fn duplicate_trunk_name_and_bad_address() {
    let text = GOOD.replacen(
        "[[tenant]]",
        "[[carrier_trunk]]\nname = \"pstn\"\naddress = \"nohost\"\n\n[[tenant]]",
        1,
    );
    let e = parse(&text).unwrap_err().0;
    assert_error(&e, "carrier_trunk[1].name", "duplicate carrier trunk name");
    assert_error(&e, "carrier_trunk[1].address", "host:port");
}

#[test]
fn trunk_with_host_name_needs_source_cidrs() {
    let e = errors_with("127.0.0.1:5070", "pstn.carrier.example:5060");
    assert_error(&e, "carrier_trunk[0].allowed_source_cidrs", "required");
}

#[test]
fn trunk_name_must_be_label_safe() {
    let e = errors_with("name = \"pstn\"", "name = \"Pstn Main\"");
    assert_error(&e, "carrier_trunk[0].name", "a-z");
}

#[test]
fn bad_cidr_rejected_with_line() {
    let text = GOOD.replacen(
        "address = \"127.0.0.1:5070\"",
        "address = \"127.0.0.1:5070\"\nallowed_source_cidrs = [\"10.0.0.0/33\"]",
        1,
    );
    let e = parse(&text).unwrap_err().0;
    assert_eq!(e[0].line, Some(line_of(&text, "10.0.0.0/33")));
}

#[test]
fn translation_rules_must_compile_and_reference_groups() {
    let text = GOOD.replacen(
        "address = \"127.0.0.1:5070\"",
        "address = \"127.0.0.1:5070\"\n\
         number_translation = [\n\
           { pattern = \"^0(\\\\d+)$\", replacement = \"+49$1\" },\n\
           { pattern = \"^(\", replacement = \"x\" },\n\
           { pattern = \"^0(\\\\d+)$\", replacement = \"+49$2\" },\n\
         ]",
        1,
    );
    let e = parse(&text).unwrap_err().0;
    assert_eq!(e.len(), 2, "{}", ConfigErrors(e.clone()));
    assert_error(
        &e,
        "carrier_trunk[0].number_translation[1].pattern",
        "does not compile",
    );
    assert_error(
        &e,
        "carrier_trunk[0].number_translation[2].replacement",
        "$2",
    );
    assert_eq!(e[0].line, Some(line_of(&text, "\"^(\"")));
}

#[test]
fn unknown_codec_rejected() {
    let e = errors_with(
        "address = \"127.0.0.1:5070\"",
        "address = \"127.0.0.1:5070\"\ncodecs = [\"PCMA\", \"AMR\"]",
    );
    assert_error(&e, "carrier_trunk[0].codecs[1]", "unknown codec");
}

#[test]
fn options_interval_range_and_warning() {
    let e = errors_with(
        "[media.carrier]",
        "[teams]\noptions_interval_seconds = 181\n\n[media.carrier]",
    );
    assert_error(&e, "teams.options_interval_seconds", "1..=180");
    let text = GOOD.replacen(
        "[media.carrier]",
        "[teams]\noptions_interval_seconds = 5\n\n[media.carrier]",
        1,
    );
    let loaded = parse(&text).unwrap();
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.field == "teams.options_interval_seconds"));
}

#[test]
fn failover_codes_must_be_failures() {
    let e = errors_with(
        "[media.carrier]",
        "[teams]\nfailover_response_codes = [408, 200]\n\n[media.carrier]",
    );
    assert_error(&e, "teams.failover_response_codes[1]", "200");
}

#[test]
fn teams_proxies_override_with_transport() {
    let text = GOOD.replacen(
        "[media.carrier]",
        "[teams]\nlab_plain_tcp = true\nproxies = [\"127.0.0.1:15061\", { address = \"127.0.0.1:15062\", transport = \"tcp\" }]\n\n[media.carrier]",
        1,
    );
    let loaded = parse(&text).unwrap();
    let p = &loaded.config.teams.proxies;
    assert_eq!(p[0].transport(), TransportKind::Tls);
    assert_eq!(p[1].address(), "127.0.0.1:15062");
    assert_eq!(p[1].transport(), TransportKind::Tcp);
    let e = errors_with(
        "[media.carrier]",
        "[teams]\nproxies = [{ address = \"127.0.0.1:15062\", transport = \"udp\" }]\n\n[media.carrier]",
    );
    assert_error(&e, "teams.proxies[0].transport", "udp");
}

#[test]
fn teams_needs_tls_listener_on_signaling_port_row_12() {
    let e = errors_with(
        "base_fqdn = \"sbc.carrier.example\"",
        "base_fqdn = \"sbc.carrier.example\"\nsip_signaling_port = 5068",
    );
    assert_error(&e, "sbc.sip_signaling_port", "5068");
}

#[test]
fn tls_files_required_when_tls_used() {
    let e = errors_with("cert_chain = \"certs/sbc.pem\"\n", "");
    assert_error(&e, "tls.cert_chain", "required");
}

#[test]
fn tls_files_must_exist_when_checked() {
    let e = parse_str(GOOD, "t.toml", Path::new("/nonexistent-dir"), true)
        .unwrap_err()
        .0;
    assert_error(&e, "tls.cert_chain", "does not exist");
    assert_error(&e, "tls.private_key", "does not exist");
}

#[test]
fn ipv6_not_with_media_bypass_row_55() {
    let text = GOOD
        .replacen(
            "address = \"127.0.0.1:5061\"",
            "address = \"[::1]:5061\"",
            1,
        )
        .replacen(
            "[media.carrier]",
            "[teams]\nmedia_bypass = true\n\n[media.carrier]",
            1,
        );
    let e = parse(&text).unwrap_err().0;
    assert_error(&e, "listen[1].address", "row 55");
    // Without bypass IPv6 is fine.
    let text = GOOD.replacen(
        "address = \"127.0.0.1:5061\"",
        "address = \"[::1]:5061\"",
        1,
    );
    parse(&text).unwrap();
}

#[test]
fn duplicate_listener_rejected() {
    let e = errors_with(
        "[[carrier_trunk]]",
        "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5061\"\n\n[[carrier_trunk]]",
    );
    assert_error(&e, "listen[2].address", "same address as listen[1]");
}

#[test]
fn media_ranges_validated() {
    let e = errors_with("port_max = 30999", "port_max = 20500");
    assert_error(&e, "media.teams.port_min", "below port_max");
    let e = errors_with("port_min = 30000", "port_min = 20500");
    assert_error(&e, "media.teams.port_min", "overlaps");
}

/// RTP Bleed: strict latching unless the operator chooses otherwise.
#[test]
fn rtp_bleed_media_latching_defaults_to_strict() {
    use crate::media::settings::LatchingMode as Media;
    let loaded = parse(GOOD).unwrap();
    assert_eq!(loaded.config.media.latching, LatchingMode::Strict);
    assert_eq!(
        mapping::media_settings(&loaded.config).latching,
        Media::Strict { after_packets: 3 }
    );
    for (name, mode) in [
        ("off", Media::Off),
        ("learn", Media::Learn { after_packets: 3 }),
    ] {
        let text = GOOD.replacen(
            "[media.carrier]",
            &format!("[media]\nlatching = \"{name}\"\n\n[media.carrier]"),
            1,
        );
        let loaded = parse(&text).unwrap();
        assert_eq!(mapping::media_settings(&loaded.config).latching, mode);
    }
}

#[test]
fn media_needs_concrete_advertised_address_row_40() {
    let e = errors_with("bind = \"127.0.0.1\"", "bind = \"0.0.0.0\"");
    assert_error(&e, "media.carrier.advertised", "required");
    let text = GOOD
        .replacen("bind = \"127.0.0.1\"", "bind = \"0.0.0.0\"", 1)
        .replacen(
            "model = \"SBC\"",
            "model = \"SBC\"\npublic_address = \"192.0.2.10\"",
            1,
        );
    let loaded = parse(&text).unwrap();
    assert_eq!(
        loaded
            .config
            .media
            .carrier
            .advertised_address(loaded.config.sbc.public_address),
        Some("192.0.2.10".parse().unwrap())
    );
}

#[test]
fn vendor_must_fit_x_ms_sbc() {
    let e = errors_with("vendor = \"Example\"", "vendor = \"Ex/ample\"");
    assert_error(&e, "sbc.vendor", "'/'");
}

#[test]
fn sip_limits_validated() {
    let e = errors_with(
        "[tls]",
        "[sip]\nmax_message_bytes = 100\nt1_ms = 0\n\n[tls]",
    );
    assert_error(&e, "sip.max_message_bytes", "1500");
    assert_error(&e, "sip.t1_ms", "10..=10000");
}

#[test]
fn log_level_must_parse() {
    let e = errors_with("[tls]", "[ops]\nlog_level = \"info,=[\"\n\n[tls]");
    assert_error(&e, "ops.log_level", "log filter");
}

#[test]
fn zero_limits_rejected() {
    let e = errors_with(
        "carrier_trunk = \"pstn\"",
        "carrier_trunk = \"pstn\"\nmax_concurrent_calls = 0",
    );
    assert_error(&e, "tenant[0].max_concurrent_calls", "0");
}

#[test]
fn missing_file_reports_path() {
    let e = load(Path::new("/nonexistent/sbc.toml")).unwrap_err().0;
    assert!(e[0]
        .to_string()
        .starts_with("/nonexistent/sbc.toml: cannot read"));
}

#[test]
fn maps_to_module_settings() {
    let loaded = parse(GOOD).unwrap();
    let t = mapping::transport_settings(&loaded.config);
    assert_eq!(t.listeners.len(), 2);
    assert_eq!(t.listeners[1].kind, crate::transport::TransportKind::Tls);
    assert_eq!(t.listeners[1].bind, "127.0.0.1:5061".parse().unwrap());
    let tls = t.tls.unwrap();
    assert_eq!(
        tls.required_peer_sans,
        crate::config::schema::MICROSOFT_PEER_NAMES
    );
    assert_eq!(tls.roots, crate::transport::RootStoreSource::Microsoft);
    assert!(tls.require_client_cert);
    assert_eq!(t.limits.max_message_bytes, 65536);
    assert_eq!(t.idle_timeout, std::time::Duration::from_secs(180));
    let peers = mapping::ping_peers(&loaded.config);
    // Three Microsoft proxies by default, plus the trunk (options_ping defaults to true).
    assert_eq!(peers.len(), 4);
    assert!(peers[..3].iter().all(|p| p.is_teams));
    assert_eq!(peers[0].target.host, "sip.pstnhub.microsoft.com");
    assert_eq!(peers[0].target.port, 5061);
    assert_eq!(peers[0].target.transport, crate::health::SipTransport::Tls);
    assert_eq!(
        peers[0].settings.interval,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(peers[3].target.name, "pstn");
    assert_eq!(peers[3].target.transport, crate::health::SipTransport::Udp);
    assert!(!peers[3].is_teams);
    let media = mapping::media_settings(&loaded.config);
    assert_eq!(media.interfaces.len(), 2);
    assert_eq!(media.interfaces[1].name, "teams");
    assert_eq!(media.interfaces[1].port_min, 30000);
    assert_eq!(media.validate(), Ok(()));
    let tx = mapping::transaction_settings(&loaded.config);
    assert_eq!(tx.t1, std::time::Duration::from_millis(500));
    assert_eq!(tx.max_transactions, 100_000);
}

#[test]
fn transport_timeouts_validated() {
    let e = errors_with(
        "[tls]",
        "[sip]\nconnect_timeout_seconds = 0\nmax_connections = 1\n\n[tls]",
    );
    assert_error(&e, "sip.connect_timeout_seconds", "1..=600");
    assert_error(&e, "sip.max_connections", "max_connections_per_ip");
}

#[test]
fn row11_peer_rules_hold_every_microsoft_range_and_each_trunk() {
    use crate::transport::{Peer, TransportKind as Kind};
    let text = GOOD.replacen(
        "address = \"127.0.0.1:5070\"",
        "address = \"127.0.0.1:5070\"\n\n[[carrier_trunk]]\nname = \"second\"\naddress = \"pstn2.example:5060\"\nallowed_source_cidrs = [\"198.51.100.0/28\"]",
        1,
    );
    let loaded = parse(&text).unwrap();
    let rules = mapping::peer_rules(&loaded.config);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    for teams in [
        "52.112.0.0",
        "52.115.255.255",
        "52.120.0.1",
        "52.123.255.255",
        "::ffff:52.114.1.1",
    ] {
        assert!(rules.may_be_tls_peer(ip(teams)), "{teams}");
        assert_eq!(rules.classify_plain(Kind::Udp, ip(teams)), None, "{teams}");
    }
    for outside in ["52.111.255.255", "52.124.0.0", "10.0.0.1", "::1"] {
        assert!(!rules.may_be_tls_peer(ip(outside)), "{outside}");
        assert_eq!(rules.classify_plain(Kind::Udp, ip(outside)), None);
    }
    let names = ["pstn", "second"];
    let trunk = |i: usize| Some(Peer::Carrier(crate::transport::TrunkName::new(names[i])));
    assert_eq!(rules.classify_plain(Kind::Udp, ip("127.0.0.1")), trunk(0));
    assert_eq!(
        rules.classify_plain(Kind::Tcp, ip("127.0.0.1")),
        trunk(0),
        "a UDP trunk may move a large request to TCP"
    );
    assert_eq!(rules.classify_plain(Kind::Udp, ip("127.0.0.2")), None);
    assert_eq!(
        rules.classify_plain(Kind::Udp, ip("198.51.100.15")),
        trunk(1)
    );
    assert_eq!(rules.classify_plain(Kind::Udp, ip("198.51.100.16")), None);
}

#[test]
fn lab_plain_tcp_to_microsoft_must_be_asked_for() {
    let text = format!(
        "{GOOD}\n[teams]\nproxies = [{{ address = \"127.0.0.3:5060\", transport = \"tcp\" }}]\n"
    );
    let e = parse(&text).unwrap_err().0;
    assert_error(&e, "teams.proxies[0].transport", "lab_plain_tcp");
    let lab = text.replacen("[teams]", "[teams]\nlab_plain_tcp = true", 1);
    let loaded = parse(&lab).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("teams.lab_plain_tcp")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn row2_row35_certificate_coverage_and_row5_usage() {
    let dir = tempfile::tempdir().unwrap();
    let certs = crate::devcerts::generate(dir.path(), "sbc.carrier.example").unwrap();
    let names: Vec<(String, String)> = [
        ("base", "sbc.carrier.example"),
        ("tenant", "acme.sbc.carrier.example"),
        ("two_labels", "a.b.sbc.carrier.example"),
        ("other", "sbc.other.example"),
    ]
    .iter()
    .map(|(f, n)| (f.to_string(), n.to_string()))
    .collect();
    let findings = certcheck::check(&certs.sbc_chain_pem, &certs.sbc_key_pem, &names);
    let fields: Vec<&str> = findings.iter().map(|(_, f, _)| f.as_str()).collect();
    assert_eq!(fields, vec!["two_labels", "other"], "{findings:?}");
    assert!(findings.iter().all(|(is_error, _, _)| *is_error));

    // The CA alone as chain: one certificate, not covering the names -> errors and a row 3
    // warning.
    let findings = certcheck::check(&certs.ca_pem, &certs.sbc_key_pem, &names[..1]);
    assert!(findings.iter().any(|(e, f, _)| *e && f == "base"));
    assert!(findings.iter().any(|(e, _, m)| !*e && m.contains("row 3")));
    // A key file without a key.
    let findings = certcheck::check(&certs.sbc_chain_pem, &certs.ca_pem, &names[..1]);
    assert!(findings
        .iter()
        .any(|(e, f, m)| *e && f == "tls.private_key" && m.contains("no private key")));
}

#[test]
fn metrics_port_must_not_clash_with_sip() {
    let e = errors_with(
        "[tls]",
        "[ops]\nmetrics_listen = \"127.0.0.1:5061\"\n\n[tls]",
    );
    assert_error(&e, "ops.metrics_listen", "listen[1]");
}

#[test]
fn typo_in_proxy_table_names_the_field() {
    let text = GOOD.replacen(
        "[media.carrier]",
        "[teams]\nproxies = [{ adress = \"127.0.0.1:1\" }]\n\n[media.carrier]",
        1,
    );
    let e = parse(&text).unwrap_err().0;
    assert!(e[0].message.contains("unknown field `adress`"), "{}", e[0]);
    assert_eq!(e[0].line, Some(line_of(&text, "adress")));
    let text = GOOD.replacen(
        "[media.carrier]",
        "[teams]\nproxies = [5061]\n\n[media.carrier]",
        1,
    );
    let e = parse(&text).unwrap_err().0;
    assert!(e[0].message.contains("host:port"), "{}", e[0]);
}

/// Row 11: the transport hears exactly the peers of the configuration.
#[test]
fn transport_peers_are_the_configured_peers() {
    let loaded = parse(GOOD).unwrap();
    let peers = mapping::transport_settings(&loaded.config).peers.unwrap();
    assert_eq!(peers, mapping::peer_rules(&loaded.config));
    assert!(peers.may_be_tls_peer("52.114.1.1".parse().unwrap()));
    let udp = crate::transport::TransportKind::Udp;
    assert!(peers
        .classify_plain(udp, "127.0.0.1".parse().unwrap())
        .is_some());
    assert!(peers
        .classify_plain(udp, "127.0.0.2".parse().unwrap())
        .is_none());
}

#[test]
fn failover_carrier_trunks_must_exist_and_not_repeat() {
    let ok = GOOD.replacen(
        "carrier_trunk = \"pstn\"",
        "carrier_trunk = \"pstn\"\nfailover_carrier_trunks = []",
        1,
    );
    assert!(parse(&ok).is_ok());
    let e = errors_with(
        "carrier_trunk = \"pstn\"",
        "carrier_trunk = \"pstn\"\nfailover_carrier_trunks = [\"nope\"]",
    );
    assert_error(
        &e,
        "tenant[0].failover_carrier_trunks[0]",
        "no carrier trunk named \"nope\"",
    );
    let e = errors_with(
        "carrier_trunk = \"pstn\"",
        "carrier_trunk = \"pstn\"\nfailover_carrier_trunks = [\"pstn\"]",
    );
    assert_error(
        &e,
        "tenant[0].failover_carrier_trunks[0]",
        "carrier trunk \"pstn\" is listed twice",
    );
}

/// Row 42: our own session interval is at least 1800 s; the error names the field and file.
#[test]
fn session_expires_at_least_1800_seconds() {
    let loaded = parse(GOOD).unwrap();
    assert_eq!(loaded.config.teams.session_expires_seconds, 1800);
    let text = GOOD.replacen(
        "[media.carrier]",
        "[teams]\nsession_expires_seconds = 3600\n\n[media.carrier]",
        1,
    );
    assert_eq!(
        parse(&text).unwrap().config.teams.session_expires_seconds,
        3600
    );
    let e = errors_with(
        "[media.carrier]",
        "[teams]\nsession_expires_seconds = 90\n\n[media.carrier]",
    );
    assert_error(&e, "teams.session_expires_seconds", "at least 1800");
    let shown = ConfigErrors(e).to_string();
    assert!(
        shown.contains("t.toml") && shown.contains("teams.session_expires_seconds"),
        "{shown}"
    );
}

/// Row 58 and doc 2.9: the trunk's Diversion switch, Q.850 busy rule and status tables load
/// into the call module's policy; defaults are off / cause 17 / no tables.
#[test]
fn row58_trunk_response_policy_loads_and_maps() {
    use crate::call::{BusyCause, StatusRewrite};
    let loaded = parse(GOOD).unwrap();
    let trunk = &loaded.config.carrier_trunks[0];
    assert!(!trunk.diversion_from_history_info);
    let policy = mapping::response_policy(trunk);
    assert_eq!(policy, crate::call::ResponsePolicy::default());
    assert_eq!(policy.busy_cause, BusyCause::Rewrite(17));
    let text = GOOD.replacen(
        "address = \"127.0.0.1:5070\"",
        "address = \"127.0.0.1:5070\"\ndiversion_from_history_info = true\n\
         q850_486_cause = \"strip\"\n\
         response_map.to_carrier = [{ from = 480, to = 404 }]\n\
         response_map.to_teams = [{ from = 404, to = 480 }, { from = 415, to = 488 }]",
        1,
    );
    let loaded = parse(&text).unwrap();
    let trunk = &loaded.config.carrier_trunks[0];
    assert!(trunk.diversion_from_history_info);
    let policy = mapping::response_policy(trunk);
    assert_eq!(policy.busy_cause, BusyCause::Strip);
    assert_eq!(
        policy.to_carrier,
        vec![StatusRewrite { from: 480, to: 404 }]
    );
    assert_eq!(
        policy.to_teams,
        vec![
            StatusRewrite { from: 404, to: 480 },
            StatusRewrite { from: 415, to: 488 }
        ]
    );
    for (value, expected) in [
        ("\"pass\"", BusyCause::Pass),
        ("21", BusyCause::Rewrite(21)),
        ("34", BusyCause::Rewrite(34)),
    ] {
        let text = GOOD.replacen(
            "address = \"127.0.0.1:5070\"",
            &format!("address = \"127.0.0.1:5070\"\nq850_486_cause = {value}"),
            1,
        );
        let loaded = parse(&text).unwrap();
        assert_eq!(
            mapping::response_policy(&loaded.config.carrier_trunks[0]).busy_cause,
            expected
        );
        // The dispatcher's per-trunk settings carry it.
        let routing = crate::routing::RoutingTable::from_config(&loaded.config).unwrap();
        let settings = crate::dispatch::DispatchSettings::from_config(&loaded.config, &routing);
        assert_eq!(settings.trunks[0].responses.busy_cause, expected);
    }
}

#[test]
fn row58_bad_q850_cause_and_status_tables_name_field_and_file() {
    let trunk = "address = \"127.0.0.1:5070\"";
    let with = |extra: &str| errors_with(trunk, &format!("{trunk}\n{extra}"));
    for (extra, fragment) in [
        ("q850_486_cause = 0", "not a Q.850 cause"),
        ("q850_486_cause = 128", "not a Q.850 cause"),
        ("q850_486_cause = \"drop\"", "\"strip\" or \"pass\""),
    ] {
        assert_error(&with(extra), "carrier_trunk[0].q850_486_cause", fragment);
    }
    let e = with("response_map.to_carrier = [{ from = 180, to = 404 }]");
    assert_error(
        &e,
        "carrier_trunk[0].response_map.to_carrier[0].from",
        "300..=699",
    );
    let e = with("response_map.to_teams = [{ from = 486, to = 200 }]");
    assert_error(&e, "carrier_trunk[0].response_map.to_teams[0].to", "2xx");
    let e = with("response_map.to_teams = [{ from = 486, to = 302 }]");
    assert_error(
        &e,
        "carrier_trunk[0].response_map.to_teams[0].to",
        "400..=699",
    );
    let e = with("response_map.to_carrier = [{ from = 486, to = 407 }]");
    assert_error(
        &e,
        "carrier_trunk[0].response_map.to_carrier[0].to",
        "use 403",
    );
    let e = with("response_map.to_carrier = [{ from = 486, to = 480 }, { from = 486, to = 600 }]");
    assert_error(
        &e,
        "carrier_trunk[0].response_map.to_carrier[1].from",
        "mapped twice",
    );
    let e = with("response_map.to_carrier = [{ from = 4860, to = 480 }]");
    assert_error(
        &e,
        "carrier_trunk[0].response_map.to_carrier[0].from",
        "300..=699",
    );
    // The message names the file and the line of the offending entry.
    let text = GOOD.replacen(
        trunk,
        &format!("{trunk}\nresponse_map.to_teams = [{{ from = 486, to = 200 }}]"),
        1,
    );
    let e = errors_with(
        trunk,
        &format!("{trunk}\nresponse_map.to_teams = [{{ from = 486, to = 200 }}]"),
    );
    let shown = ConfigErrors(e.clone()).to_string();
    assert!(
        shown.contains("t.toml") && shown.contains("response_map.to_teams[0].to"),
        "{shown}"
    );
    let err = e
        .iter()
        .find(|e| e.field == "carrier_trunk[0].response_map.to_teams[0].to")
        .unwrap();
    assert_eq!(err.line, Some(line_of(&text, "response_map.to_teams")));
    // Unknown keys in the table are typos, not silently ignored.
    let e = match parse(&GOOD.replacen(
        trunk,
        &format!("{trunk}\nresponse_map.to_carier = [{{ from = 486, to = 480 }}]"),
        1,
    )) {
        Ok(_) => panic!("typo accepted"),
        Err(e) => ConfigErrors(e.0).to_string(),
    };
    assert!(e.contains("to_carier"), "{e}");
}

#[test]
fn bind_address_must_be_usable_here_and_reaches_the_transport() {
    let e = errors_with(
        "model = \"SBC\"",
        "model = \"SBC\"\nbind_address = \"0.0.0.0\"",
    );
    assert_error(&e, "sbc.bind_address", "concrete");
    // TEST-NET-1 is never an address of this machine.
    let e = errors_with(
        "model = \"SBC\"",
        "model = \"SBC\"\nbind_address = \"192.0.2.77\"",
    );
    assert_error(&e, "sbc.bind_address", "cannot be used on this machine");
    let text = GOOD.replacen(
        "model = \"SBC\"",
        "model = \"SBC\"\nbind_address = \"127.0.0.9\"",
        1,
    );
    let loaded = parse(&text).unwrap();
    assert_eq!(
        crate::config::mapping::transport_settings(&loaded.config).outbound_bind,
        Some("127.0.0.9".parse().unwrap())
    );
}

/// Rows 38, 46, 49: ringback, our own RTCP and comfort noise are on unless a trunk or the
/// media table turns them off; the ringback tone is one of the named plans.
#[test]
fn row38_row46_row49_generated_media_defaults_and_choices() {
    use crate::media::TonePlan;
    let loaded = parse(GOOD).unwrap();
    let trunk = &loaded.config.carrier_trunks[0];
    assert!(trunk.comfort_noise);
    assert_eq!(trunk.ringback_tone.plan(), Some(TonePlan::ETSI));
    assert!(loaded.config.media.rtcp_reports);
    assert!(mapping::media_settings(&loaded.config).rtcp_reports);

    for (name, plan) in [
        ("us", Some(TonePlan::US)),
        ("off", None),
        ("etsi", Some(TonePlan::ETSI)),
    ] {
        let text = GOOD.replacen(
            "address = \"127.0.0.1:5070\"\n",
            &format!(
                "address = \"127.0.0.1:5070\"\nringback_tone = \"{name}\"\ncomfort_noise = false\n"
            ),
            1,
        );
        let loaded = parse(&text).unwrap();
        let trunk = &loaded.config.carrier_trunks[0];
        assert_eq!(trunk.ringback_tone.plan(), plan);
        assert!(!trunk.comfort_noise);
    }
    let e = errors_with(
        "address = \"127.0.0.1:5070\"\n",
        "address = \"127.0.0.1:5070\"\nringback_tone = \"uk\"\n",
    );
    let shown = ConfigErrors(e).to_string();
    assert!(
        shown.contains("t.toml:22:") && shown.contains("expected one of `etsi`, `us`, `off`"),
        "{shown}"
    );
    let text = GOOD.replacen(
        "[media.carrier]",
        "[media]\nrtcp_reports = false\n\n[media.carrier]",
        1,
    );
    assert!(!mapping::media_settings(&parse(&text).unwrap().config).rtcp_reports);
}

#[test]
fn row8_dns_servers_are_ip_and_port() {
    let e = errors_with(
        "model = \"SBC\"",
        "model = \"SBC\"\ndns_servers = [\"127.0.0.53:53\", \"0.0.0.0:53\", \"10.0.0.1:0\"]",
    );
    assert_error(&e, "sbc.dns_servers[1]", "not a DNS server address");
    assert_error(&e, "sbc.dns_servers[2]", "not a DNS server address");
    assert!(!e.iter().any(|e| e.field == "sbc.dns_servers[0]"), "{e:?}");
    let e = errors_with(
        "model = \"SBC\"",
        "model = \"SBC\"\ndns_servers = [\"ns1:53\"]",
    );
    assert!(e[0].message.contains("invalid socket address"), "{}", e[0]);
    let loaded = parse(&GOOD.replacen(
        "model = \"SBC\"",
        "model = \"SBC\"\ndns_servers = [\"[::1]:5353\"]",
        1,
    ))
    .unwrap();
    assert_eq!(
        loaded.config.sbc.dns_servers,
        vec!["[::1]:5353".parse::<std::net::SocketAddr>().unwrap()]
    );
}

/// Row 61: `[tenant.lmo]` needs media bypass and an internal address the Teams media sockets
/// receive on; downstream SBCs belong to proxy-role tenants, are unique, are not our own
/// FQDNs and name existing trunks.
#[test]
fn row61_lmo_configuration_is_checked() {
    let tenant = "carrier_trunk = \"pstn\"";
    assert!(GOOD.contains(tenant));
    let with = |lmo: &str, extra_from: &str, extra_to: &str| {
        GOOD.replacen(tenant, &format!("{tenant}\nlmo = {lmo}"), 1)
            .replacen(extra_from, extra_to, 1)
    };
    let errors = |text: String| match parse(&text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    };
    let e = errors(with("{ role = \"central\" }", "", ""));
    assert_error(&e, "tenant[0].lmo", "media_bypass");
    assert_error(&e, "media.teams.internal_address", "required");
    let bypass = "[teams]\nmedia_bypass = true";
    let teams_media = "[media.teams]";
    let e = errors(with(
        "{ role = \"central\", downstream_sbcs = [{ fqdn = \"vn.contoso.example\", carrier_trunk = \"pstn\" }] }",
        "[media.carrier]",
        &format!("{bypass}\n\n[media.carrier]"),
    ));
    assert_error(&e, "tenant[0].lmo.downstream_sbcs", "only a proxy SBC");
    let proxy = "{ role = \"proxy\", downstream_sbcs = [\
                 { fqdn = \"vn.contoso.example\", carrier_trunk = \"nope\" }, \
                 { fqdn = \"VN.contoso.example\", carrier_trunk = \"pstn\" }, \
                 { fqdn = \"acme.sbc.carrier.example\", carrier_trunk = \"pstn\" }] }";
    let text = with(
        proxy,
        "[media.carrier]",
        &format!("{bypass}\n\n[media.carrier]"),
    )
    .replacen(
        teams_media,
        &format!("{teams_media}\ninternal_address = \"10.9.9.9\""),
        1,
    );
    let e = errors(text);
    assert_error(
        &e,
        "tenant[0].lmo.downstream_sbcs[0].carrier_trunk",
        "no carrier trunk",
    );
    assert_error(&e, "tenant[0].lmo.downstream_sbcs[1].fqdn", "listed twice");
    assert_error(&e, "tenant[0].lmo.downstream_sbcs[2].fqdn", "own FQDN");
    assert_error(&e, "media.teams.internal_address", "would not reach them");
    let e = errors(GOOD.replacen(
        "[media.carrier]",
        "[media.carrier]\ninternal_address = \"10.0.0.1\"",
        1,
    ));
    assert_error(&e, "media.carrier.internal_address", "only [media.teams]");

    // A valid proxy SBC: both addresses reach the dispatcher's tenant settings.
    let good = with(
        "{ role = \"proxy\", inbound_location = \"external\", downstream_sbcs = [{ fqdn = \"vn.contoso.example\", carrier_trunk = \"pstn\" }] }",
        "[media.carrier]",
        &format!("{bypass}\n\n[media.carrier]"),
    );
    // [media.teams] binds 127.0.0.1: that is the internal address its sockets receive on.
    let good = good.replacen(
        teams_media,
        &format!("{teams_media}\ninternal_address = \"127.0.0.1\""),
        1,
    );
    let loaded = parse(&good).unwrap();
    let routing = crate::routing::RoutingTable::from_config(&loaded.config).unwrap();
    let settings = crate::dispatch::DispatchSettings::from_config(&loaded.config, &routing);
    let acme = &settings.tenants[0];
    assert!(acme.record_route);
    let media = acme.local_media.unwrap();
    assert_eq!(media.internal.to_string(), "127.0.0.1");
    assert_eq!(media.inbound_guess, crate::call::UserLocation::External);
}

#[test]
fn admin_api_off_a_loopback_address_needs_a_token() {
    let text = GOOD.replacen("[tls]", "[admin]\nlisten = \"0.0.0.0:9091\"\n\n[tls]", 1);
    let e = parse(&text).unwrap_err().0;
    assert_error(&e, "admin.listen", "token_file");
    let error = e.iter().find(|e| e.field == "admin.listen").unwrap();
    assert_eq!(error.line, Some(line_of(&text, "0.0.0.0:9091")));
    // On loopback it starts, with a warning.
    let loaded = parse(&GOOD.replacen("[tls]", "[admin]\n\n[tls]", 1)).unwrap();
    let admin = loaded.config.admin.unwrap();
    assert_eq!(admin.listen, default_admin_listen());
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.field == "admin.token_file"));
}

#[test]
fn admin_api_port_must_not_clash() {
    let e = errors_with("[tls]", "[admin]\nlisten = \"127.0.0.1:9090\"\n\n[tls]");
    assert_error(&e, "admin.listen", "ops.metrics_listen");
    let e = errors_with("[tls]", "[admin]\nlisten = \"127.0.0.1:5061\"\n\n[tls]");
    assert_error(&e, "admin.listen", "listen[1]");
}

#[test]
fn admin_token_file_is_checked_and_resolved_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    std::fs::write(dir.path().join("good"), "  0123456789abcdef0123\n").unwrap();
    let text = GOOD.replacen(
        "[tls]",
        "[admin]\nlisten = \"[::]:9091\"\ntoken_file = \"short\"\n\n[tls]",
        1,
    );
    let e = parse_str(&text, "t.toml", dir.path(), true).unwrap_err().0;
    assert_error(&e, "admin.token_file", "at least 16");
    let error = e.iter().find(|e| e.field == "admin.token_file").unwrap();
    assert_eq!(error.line, Some(line_of(&text, "token_file")));
    let text = text.replace("\"short\"", "\"good\"");
    let e = parse_str(&text, "t.toml", dir.path(), true)
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(
        !e.iter().any(|e| e.field.starts_with("admin")),
        "{}",
        ConfigErrors(e)
    );
    assert_eq!(
        read_admin_token(&dir.path().join("good")).unwrap(),
        "0123456789abcdef0123"
    );
    // Readable by others: a warning.
    use std::os::unix::fs::PermissionsExt;
    let good = dir.path().join("good");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(validate::token_file_exposed(&good), None);
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(validate::token_file_exposed(&good).is_some_and(|w| w.contains("chmod 600")));
}

#[test]
fn cdr_defaults_to_the_file_sink_next_to_the_config() {
    let loaded = parse(GOOD).unwrap();
    let settings = mapping::cdr_settings(&loaded.config);
    let file = settings.file.expect("the file sink is the default");
    assert_eq!(file.path, Path::new("/etc/sbc/cdr/calls.jsonl"));
    assert_eq!(
        file.fsync,
        crate::cdr::FsyncPolicy::Interval(std::time::Duration::from_secs(1))
    );
    assert!(settings.webhook.is_none());
    let off = parse(&format!("{GOOD}\n[cdr]\nenabled = false\n")).unwrap();
    assert!(!mapping::cdr_settings(&off.config).enabled());
}

#[test]
fn cdr_settings_are_validated_with_line_and_field() {
    let text = format!(
        "{GOOD}\n[cdr]\nqueue_records = 0\n[cdr.file]\nrotate_bytes = 100\nfsync = \"batch\"\n\
         [cdr.webhook]\nurl = \"https://cdr.example.net/in\"\nbatch_records = 50\n\
         buffer_records = 10\nretry_initial_ms = 1000\nretry_max_ms = 10\n"
    );
    let errors = parse(&text).unwrap_err().0;
    assert_error(&errors, "cdr.queue_records", "1..=1000000");
    assert_error(&errors, "cdr.file.rotate_bytes", "at least 4096");
    assert_error(&errors, "cdr.webhook.url", "only http://");
    assert_error(&errors, "cdr.webhook.buffer_records", "batch_records");
    assert_error(&errors, "cdr.webhook.retry_max_ms", "retry_initial_ms");
    let rotate = errors
        .iter()
        .find(|e| e.field == "cdr.file.rotate_bytes")
        .unwrap();
    assert_eq!(rotate.line, Some(line_of(&text, "rotate_bytes = 100")));
    let url = errors
        .iter()
        .find(|e| e.field == "cdr.webhook.url")
        .unwrap();
    assert_eq!(url.line, Some(line_of(&text, "url = ")));
    let typo = parse(&format!("{GOOD}\n[cdr.file]\nrotate_byte = 1\n")).unwrap_err();
    assert!(typo.0[0].message.contains("unknown field"), "{typo}");
}
