//! Every rule a configuration must satisfy. Each rule reports through [`Report`], which
//! attaches file and line, so all problems are listed at once.

use std::collections::HashMap;
use std::net::IpAddr;

use super::locate::Locator;
use super::numbers::{overlaps_between_owners, NumberBlock};
use super::schema::*;
use super::ConfigError;

pub struct Report<'a> {
    file: &'a str,
    locator: &'a Locator,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    pub fn new(file: &'a str, locator: &'a Locator) -> Report<'a> {
        Report {
            file,
            locator,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn make(&self, field: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.locator.line_of(field),
            field: field.to_string(),
            message,
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        let e = self.make(field, message.into());
        self.errors.push(e);
    }

    pub fn warn(&mut self, field: &str, message: impl Into<String>) {
        let w = self.make(field, message.into());
        self.warnings.push(w);
    }

    pub fn finish(self) -> (Vec<ConfigError>, Vec<ConfigError>) {
        (self.errors, self.warnings)
    }
}

/// Validate `config`; returns the parsed number blocks of each tenant (empty lists where a
/// tenant's numbers were invalid — the config is rejected then anyway).
pub fn validate(config: &Config, check_files: bool, r: &mut Report) -> Vec<Vec<NumberBlock>> {
    sbc(&config.sbc, r);
    sip(&config.sip, r);
    tls(config, check_files, r);
    listen(config, r);
    teams(config, r);
    trunks(&config.carrier_trunks, r);
    let numbers = tenants(config, r);
    media(config, r);
    lmo(config, r);
    ops(config, r);
    admin(config, check_files, r);
    cdr(&config.cdr, r);
    numbers
}

fn sbc(s: &SbcSection, r: &mut Report) {
    if let Err(e) = check_fqdn(&s.base_fqdn) {
        r.error("sbc.base_fqdn", e);
    }
    if s.sip_signaling_port == 0 {
        r.error("sbc.sip_signaling_port", "must be 1..=65535");
    }
    for (field, value) in [("sbc.vendor", &s.vendor), ("sbc.model", &s.model)] {
        if value.is_empty() {
            r.error(field, "must not be empty");
        } else if !value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'/')
        {
            r.error(
                field,
                "only printable ASCII without '/' (it becomes part of X-MS-SBC)",
            );
        }
    }
    if let Some(ip) = s.public_address {
        if ip.is_unspecified() {
            r.error(
                "sbc.public_address",
                "must be a concrete address, not 0.0.0.0/::",
            );
        }
    }
    for (i, server) in s.dns_servers.iter().enumerate() {
        if server.ip().is_unspecified() || server.port() == 0 {
            r.error(
                &format!("sbc.dns_servers[{i}]"),
                format!("{server} is not a DNS server address (ip:port, neither 0)"),
            );
        }
    }
    if let Some(ip) = s.bind_address {
        if ip.is_unspecified() {
            r.error(
                "sbc.bind_address",
                "must be a concrete address, not 0.0.0.0/:: (leave it out to let the OS choose)",
            );
        } else if let Err(e) = std::net::TcpListener::bind((ip, 0)) {
            // Every connection to Microsoft would fail later with the same error.
            r.error(
                "sbc.bind_address",
                format!("{ip} cannot be used on this machine: {e}"),
            );
        }
    }
}

/// An FQDN Microsoft accepts in Contact: a name, never an IP (row 15), at most 63 characters
/// (doc 1.2), at least two labels of letters, digits and inner hyphens.
pub fn check_fqdn(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{name:?} is an IP address; Microsoft refuses an IP in Contact (403), use an FQDN"
        ));
    }
    if name.len() > 63 {
        return Err(format!(
            "{name:?} is {} characters; Direct Routing allows at most 63",
            name.len()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{name:?} is not a fully qualified domain name"));
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{name:?} has an invalid label {label:?}"));
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{name:?} is numeric; use an FQDN"));
    }
    Ok(())
}

fn sip(s: &SipSection, r: &mut Report) {
    if !(1500..=1 << 20).contains(&s.max_message_bytes) {
        r.error(
            "sip.max_message_bytes",
            "must be 1500..=1048576 (Microsoft sends messages larger than 1500 bytes)",
        );
    }
    if !(16..=1024).contains(&s.max_headers) {
        r.error("sip.max_headers", "must be 16..=1024");
    }
    if !(256..=65536).contains(&s.max_header_line_bytes) {
        r.error("sip.max_header_line_bytes", "must be 256..=65536");
    } else if s.max_header_line_bytes > s.max_message_bytes {
        r.error(
            "sip.max_header_line_bytes",
            "must not exceed sip.max_message_bytes",
        );
    }
    if !(10..=10_000).contains(&s.t1_ms) {
        r.error("sip.t1_ms", "must be 10..=10000");
    }
    if s.t2_ms < s.t1_ms || s.t2_ms > 60_000 {
        r.error("sip.t2_ms", "must be at least sip.t1_ms and at most 60000");
    }
    if !(1..=60_000).contains(&s.t4_ms) {
        r.error("sip.t4_ms", "must be 1..=60000");
    }
    for (field, value) in [
        (
            "sip.max_transactions_per_source",
            s.max_transactions_per_source,
        ),
        ("sip.max_transactions_per_peer", s.max_transactions_per_peer),
    ] {
        if value == 0 {
            r.error(field, "must be at least 1");
        }
    }
    if s.max_transactions == 0 {
        r.error("sip.max_transactions", "must be at least 1");
    }
    if s.max_connections_per_ip == 0 {
        r.error("sip.max_connections_per_ip", "must be at least 1");
    }
    if s.max_connections < s.max_connections_per_ip {
        r.error(
            "sip.max_connections",
            "must be at least sip.max_connections_per_ip",
        );
    }
    for (field, value, max) in [
        ("sip.idle_timeout_seconds", s.idle_timeout_seconds, 86_400),
        (
            "sip.message_timeout_seconds",
            s.message_timeout_seconds,
            600,
        ),
        (
            "sip.tls_handshake_timeout_seconds",
            s.tls_handshake_timeout_seconds,
            600,
        ),
        (
            "sip.connect_timeout_seconds",
            s.connect_timeout_seconds,
            600,
        ),
    ] {
        if !(1..=max).contains(&value) {
            r.error(field, format!("must be 1..={max}"));
        }
    }
    if s.idle_timeout_seconds < 120 {
        r.warn(
            "sip.idle_timeout_seconds",
            "below 120: Microsoft keeps idle connections for 2 minutes; we would close first",
        );
    }
    if s.keepalive_interval_seconds >= s.idle_timeout_seconds {
        r.warn(
            "sip.keepalive_interval_seconds",
            "not below idle_timeout_seconds: pings cannot keep connections open",
        );
    }
    if s.max_connection_age_seconds > 3600 || s.max_connection_age_seconds == 0 {
        r.warn(
            "sip.max_connection_age_seconds",
            "Microsoft recommends renewing connections at least hourly (row 14)",
        );
    }
}

fn tls(config: &Config, check_files: bool, r: &mut Report) {
    let t = &config.tls;
    let needs_tls = config
        .listen
        .iter()
        .any(|l| l.transport == TransportKind::Tls)
        || config
            .teams
            .proxies
            .iter()
            .any(|p| p.transport() == TransportKind::Tls)
        || config
            .carrier_trunks
            .iter()
            .any(|c| c.transport == TransportKind::Tls);
    for (field, path) in [
        ("tls.cert_chain", &t.cert_chain),
        ("tls.private_key", &t.private_key),
    ] {
        match path {
            None if needs_tls => r.error(
                field,
                "required: a TLS listener, Teams proxy or carrier trunk uses TLS",
            ),
            Some(p) if check_files && !p.is_file() => {
                r.error(field, format!("file {} does not exist", p.display()))
            }
            _ => {}
        }
    }
    let roots = super::mapping::root_store(&t.roots);
    let roots_readable = match &roots {
        crate::transport::RootStoreSource::PemFile(path) => !check_files || path.is_file(),
        _ => true,
    };
    if !roots_readable {
        r.error(
            "tls.roots",
            format!(
                "must be \"microsoft\", \"webpki\" or an existing PEM file; {} not found",
                t.roots
            ),
        );
    } else if check_files {
        match crate::transport::missing_microsoft_roots(&roots) {
            Ok(missing) if !missing.is_empty() => r.warn(
                "tls.roots",
                format!(
                    "lacks roots Microsoft's proxies chain to (rows 7, 11): {}",
                    missing.join(", ")
                ),
            ),
            Ok(_) => {}
            Err(e) => r.error("tls.roots", e.to_string()),
        }
    }
    if let (true, Some(cert), Some(key)) = (check_files, &t.cert_chain, &t.private_key) {
        if cert.is_file() && key.is_file() {
            let mut names = vec![("sbc.base_fqdn".to_string(), config.sbc.base_fqdn.clone())];
            for (i, tenant) in config.tenants.iter().enumerate() {
                names.push((format!("tenant[{i}].fqdn"), tenant.fqdn.clone()));
            }
            // A name that is invalid anyway gets its own error; do not pile a second on it.
            names.retain(|(_, name)| check_fqdn(name).is_ok());
            for (is_error, field, message) in super::certcheck::check(cert, key, &names) {
                if is_error {
                    r.error(&field, message);
                } else {
                    r.warn(&field, message);
                }
            }
        }
    }
    if t.teams_peer_san.is_empty() {
        r.error(
            "tls.teams_peer_san",
            "at least one name Microsoft's certificate carries is required",
        );
    }
    for (i, name) in t.teams_peer_san.iter().enumerate() {
        if let Err(e) = check_dns_name(name) {
            r.error(&format!("tls.teams_peer_san[{i}]"), e);
        }
    }
    if !t.require_client_cert {
        r.warn(
            "tls.require_client_cert",
            "false: peers connecting over TLS are not authenticated (Teams always presents one)",
        );
    }
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("{name:?} is not a DNS name"));
    }
    Ok(())
}

fn listen(config: &Config, r: &mut Report) {
    if config.listen.is_empty() {
        r.error(
            "listen",
            "at least one [[listen]] entry is required (Teams needs a TLS listener)",
        );
        return;
    }
    let mut seen: HashMap<(bool, std::net::SocketAddr), usize> = HashMap::new();
    for (i, l) in config.listen.iter().enumerate() {
        let field = format!("listen[{i}].address");
        if l.address.port() == 0 {
            r.error(
                &field,
                "port 0 is not allowed; name the port peers connect to",
            );
        }
        // UDP and TCP may share a port number; two stream listeners or two UDP ones may not.
        let is_udp = l.transport == TransportKind::Udp;
        if let Some(first) = seen.insert((is_udp, l.address), i) {
            r.error(&field, format!("same address as listen[{first}]"));
        }
    }
    let port = config.sbc.sip_signaling_port;
    let has_signaling_listener = config
        .listen
        .iter()
        .any(|l| l.transport == TransportKind::Tls && l.address.port() == port);
    if !has_signaling_listener {
        r.error(
            "sbc.sip_signaling_port",
            format!("no [[listen]] entry with transport = \"tls\" on port {port} (row 12)"),
        );
    }
}

fn teams(config: &Config, r: &mut Report) {
    let t = &config.teams;
    if t.proxies.is_empty() {
        r.error("teams.proxies", "at least one Microsoft proxy is required");
    }
    for (i, p) in t.proxies.iter().enumerate() {
        let field = match p {
            TeamsProxy::Address(_) => format!("teams.proxies[{i}]"),
            TeamsProxy::Detailed(_) => format!("teams.proxies[{i}].address"),
        };
        if let Err(e) = check_host_port(p.address()) {
            r.error(&field, e);
        }
        if let Some(name) = p.tls_name() {
            if let Err(e) = check_dns_name(name) {
                r.error(&format!("teams.proxies[{i}].tls_name"), e);
            }
        }
        if p.transport() == TransportKind::Udp {
            r.error(
                &format!("teams.proxies[{i}].transport"),
                "Microsoft speaks TLS (tcp is allowed for tests only); udp is not",
            );
        } else if p.transport() == TransportKind::Tcp && !t.lab_plain_tcp {
            r.error(
                &format!("teams.proxies[{i}].transport"),
                "tcp is for labs only and needs teams.lab_plain_tcp = true; Microsoft speaks TLS",
            );
        }
    }
    if t.lab_plain_tcp {
        r.warn(
            "teams.lab_plain_tcp",
            "LAB ONLY: plain TCP from teams.allowed_source_cidrs is taken as Microsoft; \
             anyone able to send from those addresses can place calls",
        );
    }
    if !(1..=180).contains(&t.options_interval_seconds) {
        r.error(
            "teams.options_interval_seconds",
            "must be 1..=180 (Microsoft expects one OPTIONS per 60-180 s)",
        );
    } else if t.options_interval_seconds < 60 {
        r.warn(
            "teams.options_interval_seconds",
            "below 60 s: Microsoft expects 60-180 s; use short intervals only in tests",
        );
    }
    if !(1..=600).contains(&t.failover_time_seconds) {
        r.error("teams.failover_time_seconds", "must be 1..=600");
    }
    if !(1800..=86_400).contains(&t.session_expires_seconds) {
        r.error(
            "teams.session_expires_seconds",
            "must be 1800..=86400 (the SBC's own session interval is at least 1800 s, row 42)",
        );
    }
    for (i, code) in t.failover_response_codes.iter().enumerate() {
        if !(400..=699).contains(code) {
            r.error(
                &format!("teams.failover_response_codes[{i}]"),
                format!("{code} is not a SIP failure code (400..=699)"),
            );
        }
    }
    if t.max_concurrent_sessions == Some(0) {
        r.error("teams.max_concurrent_sessions", "0 would refuse every call");
    }
    if t.allowed_source_cidrs.is_empty() {
        r.error(
            "teams.allowed_source_cidrs",
            "empty: no Microsoft source would be accepted",
        );
    }
    if t.media_bypass {
        // Row 55: IPv6 only without media bypass.
        for (i, l) in config.listen.iter().enumerate() {
            if l.transport == TransportKind::Tls && l.address.is_ipv6() {
                r.error(
                    &format!("listen[{i}].address"),
                    "IPv6 Teams signalling is not supported with teams.media_bypass (row 55)",
                );
            }
        }
        let teams_media = config
            .media
            .teams
            .advertised_address(config.sbc.public_address);
        if teams_media.is_some_and(|ip| ip.is_ipv6()) || config.media.teams.bind.is_ipv6() {
            r.error(
                "media.teams",
                "IPv6 media towards Teams is not supported with teams.media_bypass (row 55)",
            );
        }
    }
}

/// `host:port` with a non-empty host (name, IPv4 or `[IPv6]`) and a port 1..=65535.
pub fn check_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?} has an invalid port"))?;
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{text:?} has an invalid IPv6 address"))?;
        v6
    } else {
        if host.contains(':') {
            return Err(format!("{text:?}: write IPv6 addresses as [addr]:port"));
        }
        check_dns_name(host).map_err(|_| format!("{text:?} has an invalid host"))?;
        host
    };
    Ok((host.to_string(), port))
}

const KNOWN_CODECS: &[&str] = &[
    "PCMU",
    "PCMA",
    "G722",
    "G729",
    "SILK",
    "telephone-event",
    "CN",
];

fn trunks(list: &[CarrierTrunk], r: &mut Report) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, t) in list.iter().enumerate() {
        let f = |name: &str| format!("carrier_trunk[{i}].{name}");
        if let Err(e) = check_name(&t.name) {
            r.error(&f("name"), e);
        } else if let Some(first) = names.insert(&t.name, i) {
            r.error(
                &f("name"),
                format!(
                    "duplicate carrier trunk name {:?} (also carrier_trunk[{first}])",
                    t.name
                ),
            );
        }
        match check_host_port(&t.address) {
            Err(e) => r.error(&f("address"), e),
            Ok((host, _)) => {
                if t.allowed_source_cidrs.is_empty() && host.parse::<IpAddr>().is_err() {
                    r.error(
                        &f("allowed_source_cidrs"),
                        "required when address is a host name (which sources are this trunk?)",
                    );
                }
            }
        }
        let inbound = t.inbound_transports();
        if inbound.is_empty() {
            r.error(
                &f("inbound_transports"),
                "at least one transport is required",
            );
        }
        if let Some(name) = &t.tls_peer_name {
            if let Err(e) = check_dns_name(name) {
                r.error(&f("tls_peer_name"), e);
            } else if !inbound.contains(&TransportKind::Tls) && t.transport != TransportKind::Tls {
                r.error(
                    &f("tls_peer_name"),
                    "only meaningful for a trunk that uses TLS",
                );
            }
        }
        if t.max_concurrent_calls == Some(0) {
            r.error(&f("max_concurrent_calls"), "0 would refuse every call");
        }
        if t.max_calls_per_second == Some(0) {
            r.error(&f("max_calls_per_second"), "0 would refuse every call");
        }
        if t.codecs.is_empty() {
            r.error(&f("codecs"), "at least one codec is required");
        }
        for (j, c) in t.codecs.iter().enumerate() {
            if !KNOWN_CODECS.iter().any(|k| k.eq_ignore_ascii_case(c)) {
                r.error(
                    &format!("carrier_trunk[{i}].codecs[{j}]"),
                    format!("unknown codec {c:?}; known: {}", KNOWN_CODECS.join(", ")),
                );
            }
        }
        for (j, rule) in t.number_translation.iter().enumerate() {
            check_translation(
                rule,
                &format!("carrier_trunk[{i}].number_translation[{j}]"),
                r,
            );
        }
        if t.options_ping && !(1..=3600).contains(&t.options_interval_seconds) {
            r.error(&f("options_interval_seconds"), "must be 1..=3600");
        }
        if crate::call::EarlyMediaPolicy::from_name(&t.early_media).is_none() {
            r.error(
                &f("early_media"),
                format!(
                    "unknown early media policy {:?}; one of: {}",
                    t.early_media,
                    crate::call::EarlyMediaPolicy::NAMES.join(", ")
                ),
            );
        }
        response_rules(t, &f, r);
    }
}

/// Row 58: the Q.850 busy rule and the final-status tables of one trunk.
fn response_rules(t: &CarrierTrunk, f: &dyn Fn(&str) -> String, r: &mut Report) {
    match &t.q850_486_cause {
        Q850Cause::Number(n) if !(1..=127).contains(n) => r.error(
            &f("q850_486_cause"),
            format!("{n} is not a Q.850 cause (1..=127); or use \"strip\" / \"pass\""),
        ),
        Q850Cause::Word(w) if w != "strip" && w != "pass" => r.error(
            &f("q850_486_cause"),
            format!("{w:?}: use a Q.850 cause number (1..=127), \"strip\" or \"pass\""),
        ),
        _ => {}
    }
    for (direction, entries) in [
        ("to_carrier", &t.response_map.to_carrier),
        ("to_teams", &t.response_map.to_teams),
    ] {
        for (j, entry) in entries.iter().enumerate() {
            let field = |name: &str| f(&format!("response_map.{direction}[{j}].{name}"));
            if !(300..=699).contains(&entry.from) {
                r.error(
                    &field("from"),
                    format!("{} is not a final error status (300..=699)", entry.from),
                );
            } else if entries[..j].iter().any(|e| e.from == entry.from) {
                r.error(
                    &field("from"),
                    format!("{} is mapped twice in this table", entry.from),
                );
            }
            let to = entry.to;
            if !(400..=699).contains(&to) {
                r.error(
                    &field("to"),
                    format!(
                        "{to}: map to a final error status (400..=699); a failure never becomes \
                         a 2xx, and a 3xx would need the peer's Contacts, which never cross"
                    ),
                );
            } else if to == 401 || to == 407 {
                r.error(
                    &field("to"),
                    format!("{to} needs our own authentication challenge; use 403"),
                );
            }
        }
    }
}

fn check_translation(rule: &TranslationRule, base: &str, r: &mut Report) {
    match regex::Regex::new(&rule.pattern) {
        Err(e) => r.error(
            &format!("{base}.pattern"),
            format!("does not compile: {}", first_line(&e.to_string())),
        ),
        Ok(re) => {
            let groups = re.captures_len();
            let names: Vec<&str> = re.capture_names().flatten().collect();
            for reference in replacement_refs(&rule.replacement) {
                let ok = match reference.parse::<usize>() {
                    Ok(n) => n < groups,
                    Err(_) => names.contains(&reference.as_str()),
                };
                if !ok {
                    r.error(
                        &format!("{base}.replacement"),
                        format!("refers to ${reference}, which the pattern does not capture"),
                    );
                }
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Group references in a `regex` replacement string: `$1`, `${1}`, `$name`, `${name}`.
fn replacement_refs(replacement: &str) -> Vec<String> {
    let bytes = replacement.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'{') {
            if let Some(end) = replacement[i + 2..].find('}') {
                out.push(replacement[i + 2..i + 2 + end].to_string());
                i += end + 3;
                continue;
            }
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if end > start {
            out.push(replacement[start..end].to_string());
        }
        i = end.max(i + 1);
    }
    out
}

/// Names are metric labels and log keys: short, lowercase ASCII.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: use 1-64 characters of a-z, 0-9, '-' and '_'"
        ))
    }
}

fn tenants(config: &Config, r: &mut Report) -> Vec<Vec<NumberBlock>> {
    let base = config.sbc.base_fqdn.to_ascii_lowercase();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut fqdns: HashMap<String, usize> = HashMap::new();
    let mut all_blocks: Vec<Vec<(usize, NumberBlock)>> = Vec::new();
    for (i, t) in config.tenants.iter().enumerate() {
        let f = |name: &str| format!("tenant[{i}].{name}");
        if let Err(e) = check_name(&t.name) {
            r.error(&f("name"), e);
        } else if let Some(first) = names.insert(&t.name, i) {
            r.error(
                &f("name"),
                format!("duplicate tenant name {:?} (also tenant[{first}])", t.name),
            );
        }
        let fqdn = t.fqdn.to_ascii_lowercase();
        match check_fqdn(&fqdn) {
            Err(e) => r.error(&f("fqdn"), e),
            Ok(()) => match fqdn.strip_suffix(&format!(".{base}")) {
                Some(label) if !label.contains('.') => {
                    if let Some(first) = fqdns.insert(fqdn.clone(), i) {
                        r.error(
                            &f("fqdn"),
                            format!("duplicate tenant fqdn {fqdn:?} (also tenant[{first}])"),
                        );
                    }
                }
                _ => r.error(
                    &f("fqdn"),
                    format!(
                        "{fqdn:?} must be exactly one label under sbc.base_fqdn {base:?} \
                         (a wildcard certificate *.{base} covers one label only)"
                    ),
                ),
            },
        }
        if !config
            .carrier_trunks
            .iter()
            .any(|c| c.name == t.carrier_trunk)
        {
            r.error(
                &f("carrier_trunk"),
                format!("no carrier trunk named {:?}", t.carrier_trunk),
            );
        }
        for (j, name) in t.failover_carrier_trunks.iter().enumerate() {
            let field = format!("tenant[{i}].failover_carrier_trunks[{j}]");
            if !config.carrier_trunks.iter().any(|c| c.name == *name) {
                r.error(&field, format!("no carrier trunk named {name:?}"));
            } else if *name == t.carrier_trunk || t.failover_carrier_trunks[..j].contains(name) {
                r.error(&field, format!("carrier trunk {name:?} is listed twice"));
            }
        }
        if t.max_concurrent_calls == Some(0) {
            r.error(&f("max_concurrent_calls"), "0 would refuse every call");
        }
        if t.max_calls_per_second == Some(0) {
            r.error(&f("max_calls_per_second"), "0 would refuse every call");
        }
        if t.numbers.is_empty() {
            r.warn(
                &f("numbers"),
                "no numbers: calls from the carrier cannot reach this tenant",
            );
        }
        let mut blocks = Vec::new();
        for (j, text) in t.numbers.iter().enumerate() {
            match NumberBlock::parse(text) {
                Err(e) => r.error(&format!("tenant[{i}].numbers[{j}]"), e),
                Ok(block) => blocks.push((j, block)),
            }
        }
        all_blocks.push(blocks);
    }
    // Numbers shared by two tenants, reported on the later one.
    let placed: Vec<(usize, usize, &NumberBlock)> = all_blocks
        .iter()
        .enumerate()
        .flat_map(|(i, blocks)| blocks.iter().map(move |(j, block)| (i, *j, block)))
        .collect();
    let owned: Vec<(usize, &NumberBlock)> = placed.iter().map(|(i, _, b)| (*i, *b)).collect();
    for (later, earlier) in overlaps_between_owners(&owned) {
        let (Some((i, j, block)), Some((other_t, other_j, other))) =
            (placed.get(later), placed.get(earlier))
        else {
            continue;
        };
        let other_name = config
            .tenants
            .get(*other_t)
            .map(|t| t.name.as_str())
            .unwrap_or_default();
        r.error(
            &format!("tenant[{i}].numbers[{j}]"),
            format!(
                "{block} overlaps tenant[{other_t}].numbers[{other_j}] ({other}) of tenant \
                 {other_name:?}"
            ),
        );
    }
    all_blocks
        .into_iter()
        .map(|blocks| blocks.into_iter().map(|(_, block)| block).collect())
        .collect()
}

fn media(config: &Config, r: &mut Report) {
    let m = &config.media;
    let interfaces = [("media.carrier", &m.carrier), ("media.teams", &m.teams)];
    for (base, iface) in interfaces {
        if iface.port_min == 0 || iface.port_min >= iface.port_max {
            r.error(
                &format!("{base}.port_min"),
                "must be at least 1 and below port_max",
            );
        } else if u32::from(iface.port_max) - u32::from(iface.port_min) < 3 {
            r.error(
                &format!("{base}.port_max"),
                "the range must hold at least two RTP/RTCP port pairs",
            );
        }
        if iface.port_min % 2 == 1 {
            r.warn(
                &format!("{base}.port_min"),
                "odd: RTP conventionally uses even ports",
            );
        }
        match iface.advertised_address(config.sbc.public_address) {
            None => r.error(
                &format!("{base}.advertised"),
                "required when bind is 0.0.0.0/:: and sbc.public_address is unset \
                 (this address goes into SDP c=)",
            ),
            Some(ip) if ip.is_unspecified() => r.error(
                &format!("{base}.advertised"),
                "must not be 0.0.0.0 (row 40: never send c=0.0.0.0)",
            ),
            Some(_) => {}
        }
    }
    let (c, t) = (&m.carrier, &m.teams);
    let shares_address = c.bind == t.bind || c.bind.is_unspecified() || t.bind.is_unspecified();
    if shares_address && c.port_min <= t.port_max && t.port_min <= c.port_max {
        r.error(
            "media.teams.port_min",
            "port range overlaps media.carrier's on the same address",
        );
    }
    if m.carrier.internal_address.is_some() {
        r.error(
            "media.carrier.internal_address",
            "only [media.teams] has an internal address (Local Media Optimization)",
        );
    }
    if m.workers > 1024 {
        r.error("media.workers", "must be 0 (one per CPU) ..= 1024");
    }
    if !(1..=86_400).contains(&m.inactivity_timeout_seconds) {
        r.error("media.inactivity_timeout_seconds", "must be 1..=86400");
    }
}

/// Local Media Optimization (row 61): `[tenant.lmo]` needs media bypass and an internal
/// address the Teams media sockets receive on; downstream SBCs are unique FQDNs reached by
/// existing trunks, on proxy-role tenants only.
fn lmo(config: &Config, r: &mut Report) {
    let teams = &config.media.teams;
    let mut downstream: HashMap<String, String> = HashMap::new();
    let mut any = false;
    for (i, t) in config.tenants.iter().enumerate() {
        let Some(lmo) = &t.lmo else { continue };
        any = true;
        let f = |name: &str| format!("tenant[{i}].lmo.{name}");
        if !config.teams.media_bypass {
            r.error(
                &format!("tenant[{i}].lmo"),
                "Local Media Optimization needs teams.media_bypass = true (Microsoft requires \
                 -MediaBypass $true with -BypassMode)",
            );
        }
        if lmo.role == LmoRole::Central && !lmo.downstream_sbcs.is_empty() {
            r.error(
                &f("downstream_sbcs"),
                "only a proxy SBC (role = \"proxy\") has downstream SBCs",
            );
        }
        for (j, d) in lmo.downstream_sbcs.iter().enumerate() {
            let field = format!("tenant[{i}].lmo.downstream_sbcs[{j}]");
            let fqdn = d.fqdn.trim_end_matches('.').to_ascii_lowercase();
            if let Err(e) = check_fqdn(&fqdn) {
                r.error(&format!("{field}.fqdn"), e);
            } else if fqdn == config.sbc.base_fqdn.to_ascii_lowercase()
                || config
                    .tenants
                    .iter()
                    .any(|other| other.fqdn.eq_ignore_ascii_case(&fqdn))
            {
                r.error(
                    &format!("{field}.fqdn"),
                    format!("{fqdn:?} is this SBC's own FQDN, not a downstream SBC's"),
                );
            } else if let Some(first) = downstream.insert(fqdn.clone(), field.clone()) {
                r.error(
                    &format!("{field}.fqdn"),
                    format!("downstream SBC {fqdn:?} is listed twice (also {first})"),
                );
            }
            if !config
                .carrier_trunks
                .iter()
                .any(|c| c.name == d.carrier_trunk)
            {
                r.error(
                    &format!("{field}.carrier_trunk"),
                    format!("no carrier trunk named {:?}", d.carrier_trunk),
                );
            }
        }
    }
    if !any {
        return;
    }
    match teams.internal_address {
        None => r.error(
            "media.teams.internal_address",
            "required by [tenant.lmo]: the address offered to Teams users inside the \
             corporate network",
        ),
        Some(ip) if ip.is_unspecified() || ip.is_ipv6() => r.error(
            "media.teams.internal_address",
            "must be a concrete IPv4 address (media bypass candidates are IPv4, row 55)",
        ),
        Some(ip) if !teams.bind.is_unspecified() && teams.bind != ip => r.error(
            "media.teams.internal_address",
            format!(
                "the Teams media sockets bind {}; media sent to {ip} would not reach them \
                 (bind it or 0.0.0.0)",
                teams.bind
            ),
        ),
        Some(_) => {}
    }
}

fn ops(config: &Config, r: &mut Report) {
    let o = &config.ops;
    let clash = config.listen.iter().position(|l| {
        l.transport != TransportKind::Udp
            && l.address.port() == o.metrics_listen.port()
            && (l.address.ip() == o.metrics_listen.ip()
                || l.address.ip().is_unspecified()
                || o.metrics_listen.ip().is_unspecified())
    });
    if let Some(i) = clash {
        r.error(
            "ops.metrics_listen",
            format!("same TCP port as listen[{i}]"),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&o.log_level) {
        r.error("ops.log_level", format!("not a valid log filter: {e}"));
    }
    if o.call_trace_bytes > 1 << 20 {
        r.error("ops.call_trace_bytes", "must be at most 1048576 (per call)");
    } else if (1..1024).contains(&o.call_trace_bytes) {
        r.warn(
            "ops.call_trace_bytes",
            "below 1024: not even one INVITE fits; use 0 to keep no message",
        );
    }
    if !(1..=1024).contains(&o.call_trace_messages) {
        r.error("ops.call_trace_messages", "must be 1..=1024");
    }
    if o.call_trace_keep_seconds > 86_400 {
        r.error("ops.call_trace_keep_seconds", "must be at most 86400");
    }
    if o.call_trace_kept_bytes > 1 << 32 {
        r.error("ops.call_trace_kept_bytes", "must be at most 4294967296");
    }
    if o.call_trace_log_interval_seconds > 86_400 {
        r.error(
            "ops.call_trace_log_interval_seconds",
            "must be at most 86400",
        );
    }
}

fn admin(config: &Config, check_files: bool, r: &mut Report) {
    let Some(admin) = &config.admin else {
        return;
    };
    match &admin.token_file {
        None if !admin.listen.ip().is_loopback() => r.error(
            "admin.listen",
            format!(
                "{} is not a loopback address: set admin.token_file so the API asks for a token",
                admin.listen
            ),
        ),
        None => r.warn(
            "admin.token_file",
            "not set: every local user can use the admin API (end calls, drain)",
        ),
        Some(path) if check_files => match super::read_admin_token(path) {
            Err(e) => r.error("admin.token_file", e),
            Ok(_) => {
                if let Some(warning) = token_file_exposed(path) {
                    r.warn("admin.token_file", warning);
                }
            }
        },
        Some(_) => {}
    }
    let same_port = |other: std::net::SocketAddr| {
        other.port() == admin.listen.port()
            && (other.ip() == admin.listen.ip()
                || other.ip().is_unspecified()
                || admin.listen.ip().is_unspecified())
    };
    if same_port(config.ops.metrics_listen) {
        r.error("admin.listen", "same TCP port as ops.metrics_listen");
    }
    if let Some(i) = config
        .listen
        .iter()
        .position(|l| l.transport != TransportKind::Udp && same_port(l.address))
    {
        r.error("admin.listen", format!("same TCP port as listen[{i}]"));
    }
}

/// A warning when other users than its owner may read the token file.
pub fn token_file_exposed(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} can be read by other users than its owner (chmod 600)",
            path.display()
        )
    })
}

fn cdr(c: &CdrSection, r: &mut Report) {
    if !(1..=1_000_000).contains(&c.queue_records) {
        r.error("cdr.queue_records", "must be 1..=1000000");
    }
    let f = &c.file;
    if f.path.as_os_str().is_empty() || f.path.file_name().is_none() {
        r.error("cdr.file.path", "must name a file");
    }
    if (1..4096).contains(&f.rotate_bytes) {
        r.error(
            "cdr.file.rotate_bytes",
            "must be 0 (never) or at least 4096",
        );
    }
    if (1..10).contains(&f.rotate_seconds) {
        r.error(
            "cdr.file.rotate_seconds",
            "must be 0 (never) or at least 10",
        );
    }
    if f.keep_files > 10_000 {
        r.error("cdr.file.keep_files", "must be at most 10000");
    }
    if !(10..=60_000).contains(&f.fsync_interval_ms) {
        r.error("cdr.file.fsync_interval_ms", "must be 10..=60000");
    }
    if !(1..=10_000).contains(&f.batch_records) {
        r.error("cdr.file.batch_records", "must be 1..=10000");
    }
    let Some(w) = &c.webhook else {
        return;
    };
    if let Err(e) = crate::cdr::webhook::check_url(&w.url) {
        r.error("cdr.webhook.url", e);
    }
    if !(1..=10_000).contains(&w.batch_records) {
        r.error("cdr.webhook.batch_records", "must be 1..=10000");
    }
    if w.batch_delay_ms > 60_000 {
        r.error("cdr.webhook.batch_delay_ms", "must be at most 60000");
    }
    if w.buffer_records < w.batch_records || w.buffer_records > 1_000_000 {
        r.error(
            "cdr.webhook.buffer_records",
            "must be at least batch_records and at most 1000000",
        );
    }
    if !(1..=100).contains(&w.max_attempts) {
        r.error("cdr.webhook.max_attempts", "must be 1..=100");
    }
    if !(10..=600_000).contains(&w.retry_initial_ms) {
        r.error("cdr.webhook.retry_initial_ms", "must be 10..=600000");
    }
    if w.retry_max_ms < w.retry_initial_ms || w.retry_max_ms > 3_600_000 {
        r.error(
            "cdr.webhook.retry_max_ms",
            "must be at least retry_initial_ms and at most 3600000",
        );
    }
    if !(100..=120_000).contains(&w.timeout_ms) {
        r.error("cdr.webhook.timeout_ms", "must be 100..=120000");
    }
}
