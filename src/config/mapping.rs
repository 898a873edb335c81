//! Conversions from [`Config`](super::Config) to the plain settings structs of other modules,
//! so those modules never depend on the configuration schema.

use std::time::Duration;

use super::{Config, TransportKind};
use crate::transaction::TransactionSettings;
use crate::transport::{
    self, ListenerSpec, MicrosoftRule, PeerRules, RootStoreSource, TlsSettings, TransportSettings,
    TrunkRule,
};

/// SIP parser limits.
pub fn sip_limits(config: &Config) -> crate::sip::Limits {
    crate::sip::Limits {
        max_message_bytes: config.sip.max_message_bytes,
        max_headers: config.sip.max_headers,
        max_header_line_bytes: config.sip.max_header_line_bytes,
    }
}

pub fn transport_kind(kind: TransportKind) -> transport::TransportKind {
    match kind {
        TransportKind::Udp => transport::TransportKind::Udp,
        TransportKind::Tcp => transport::TransportKind::Tcp,
        TransportKind::Tls => transport::TransportKind::Tls,
    }
}

fn seconds_or_none(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

pub fn transport_settings(config: &Config) -> TransportSettings {
    let s = &config.sip;
    let tls = match (&config.tls.cert_chain, &config.tls.private_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert_chain_pem: cert.clone(),
            key_pem: key.clone(),
            roots: root_store(&config.tls.roots),
            require_client_cert: config.tls.require_client_cert,
            required_peer_sans: config.tls.teams_peer_san.clone(),
        }),
        _ => None,
    };
    TransportSettings {
        listeners: config
            .listen
            .iter()
            .map(|l| ListenerSpec {
                kind: transport_kind(l.transport),
                bind: l.address,
            })
            .collect(),
        tls,
        limits: sip_limits(config),
        max_connections_per_ip: s.max_connections_per_ip,
        max_connections: s.max_connections,
        idle_timeout: Duration::from_secs(s.idle_timeout_seconds),
        keepalive_interval: seconds_or_none(s.keepalive_interval_seconds),
        message_timeout: Duration::from_secs(s.message_timeout_seconds),
        tls_handshake_timeout: Duration::from_secs(s.tls_handshake_timeout_seconds),
        connect_timeout: Duration::from_secs(s.connect_timeout_seconds),
        max_connection_age: seconds_or_none(s.max_connection_age_seconds),
        peers: Some(peer_rules(config)),
        outbound_bind: config.sbc.bind_address,
        ..TransportSettings::default()
    }
}

/// `tls.roots`: a built-in set by name, else a PEM file.
pub fn root_store(roots: &str) -> RootStoreSource {
    match roots {
        "microsoft" => RootStoreSource::Microsoft,
        "webpki" => RootStoreSource::WebPki,
        path => RootStoreSource::PemFile(path.into()),
    }
}

/// Who may speak to the SBC (row 11; rows 4 and 7 for certificates): Microsoft over TLS
/// from its ranges with one of its names, each trunk over its transports from its networks.
pub fn peer_rules(config: &Config) -> PeerRules {
    let microsoft = MicrosoftRule {
        networks: config.teams.allowed_source_cidrs.clone(),
        certificate_names: config.tls.teams_peer_san.clone(),
        plain_tcp_lab: config.teams.lab_plain_tcp,
    };
    let trunks = config
        .carrier_trunks
        .iter()
        .map(|t| TrunkRule {
            name: crate::transport::TrunkName::new(&t.name),
            networks: t.source_networks(),
            transports: t
                .inbound_transports()
                .into_iter()
                .map(transport_kind)
                .collect(),
            certificate_name: t.tls_peer_name.clone(),
        })
        .collect();
    PeerRules::new(microsoft, trunks)
}

pub fn transaction_settings(config: &Config) -> TransactionSettings {
    TransactionSettings {
        t1: Duration::from_millis(config.sip.t1_ms),
        t2: Duration::from_millis(config.sip.t2_ms),
        t4: Duration::from_millis(config.sip.t4_ms),
        max_transactions: config.sip.max_transactions,
        max_transactions_per_source: config.sip.max_transactions_per_source,
        max_transactions_per_peer: config.sip.max_transactions_per_peer,
        ..TransactionSettings::default()
    }
}

/// Media relay settings: interfaces named "carrier" and "teams".
pub fn media_settings(config: &Config) -> crate::media::settings::MediaSettings {
    use crate::media::settings::{InterfaceSettings, LatchingMode, MediaSettings};
    let defaults = MediaSettings::default();
    let after_packets = match defaults.latching {
        LatchingMode::Learn { after_packets } | LatchingMode::Strict { after_packets } => {
            after_packets
        }
        LatchingMode::Off => 1,
    };
    let interface = |name: &str, m: &super::MediaInterface| InterfaceSettings {
        name: name.to_string(),
        bind_ip: m.bind,
        advertised_ip: m.advertised_address(config.sbc.public_address),
        port_min: m.port_min,
        port_max: m.port_max,
    };
    MediaSettings {
        interfaces: vec![
            interface("carrier", &config.media.carrier),
            interface("teams", &config.media.teams),
        ],
        workers: config.media.workers,
        latching: match config.media.latching {
            super::LatchingMode::Off => LatchingMode::Off,
            super::LatchingMode::Learn => LatchingMode::Learn { after_packets },
            super::LatchingMode::Strict => LatchingMode::Strict { after_packets },
        },
        inactivity_timeout: Duration::from_secs(config.media.inactivity_timeout_seconds),
        rtcp_reports: config.media.rtcp_reports,
        ..defaults
    }
}

/// One peer the health module pings with OPTIONS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingPeer {
    pub target: crate::health::PeerTarget,
    pub settings: crate::health::PingerSettings,
    /// SNI / certificate name when it differs from the host (a stand-in at an IP address).
    pub tls_name: Option<String>,
    /// A Microsoft proxy (feeds readiness) rather than a carrier trunk.
    pub is_teams: bool,
}

pub fn sip_transport(kind: TransportKind) -> crate::health::SipTransport {
    use crate::health::SipTransport;
    match kind {
        TransportKind::Udp => SipTransport::Udp,
        TransportKind::Tcp => SipTransport::Tcp,
        TransportKind::Tls => SipTransport::Tls,
    }
}

/// `host:port` (validated at load) into its parts; IPv6 brackets removed.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// Every Teams proxy (named by its address, the `peer` metric label) and every carrier trunk
/// with `options_ping` (named by the trunk name).
pub fn ping_peers(config: &Config) -> Vec<PingPeer> {
    use crate::health::{PeerTarget, PingerSettings};
    let settings = |seconds: u64| PingerSettings {
        interval: Duration::from_secs(seconds),
        ..PingerSettings::default()
    };
    let mut peers = Vec::new();
    for proxy in &config.teams.proxies {
        if let Some((host, port)) = split_host_port(proxy.address()) {
            peers.push(PingPeer {
                target: PeerTarget {
                    name: proxy.address().to_string(),
                    host,
                    port,
                    transport: sip_transport(proxy.transport()),
                },
                settings: settings(config.teams.options_interval_seconds),
                tls_name: proxy.tls_name().map(str::to_string),
                is_teams: true,
            });
        }
    }
    for trunk in config.carrier_trunks.iter().filter(|t| t.options_ping) {
        if let Some((host, port)) = split_host_port(&trunk.address) {
            peers.push(PingPeer {
                target: PeerTarget {
                    name: trunk.name.clone(),
                    host,
                    port,
                    transport: sip_transport(trunk.transport),
                },
                settings: settings(trunk.options_interval_seconds),
                tls_name: None,
                is_teams: false,
            });
        }
    }
    peers
}

/// A carrier trunk's final-response policy for the call module (row 58). Validation has
/// checked every value; anything else falls back to the default.
pub fn response_policy(trunk: &super::CarrierTrunk) -> crate::call::ResponsePolicy {
    use crate::call::{BusyCause, ResponsePolicy, StatusRewrite};
    let table = |entries: &[super::StatusMapEntry]| {
        entries
            .iter()
            .map(|e| StatusRewrite {
                from: e.from,
                to: e.to,
            })
            .collect()
    };
    let busy_cause = match &trunk.q850_486_cause {
        super::Q850Cause::Number(n) => u8::try_from(*n)
            .ok()
            .filter(|c| (1..=127).contains(c))
            .map(BusyCause::Rewrite)
            .unwrap_or_default(),
        super::Q850Cause::Word(w) if w == "strip" => BusyCause::Strip,
        super::Q850Cause::Word(w) if w == "pass" => BusyCause::Pass,
        super::Q850Cause::Word(_) => BusyCause::default(),
    };
    ResponsePolicy {
        to_carrier: table(&trunk.response_map.to_carrier),
        to_teams: table(&trunk.response_map.to_teams),
        busy_cause,
    }
}

/// `[cdr]` as the CDR sinks take it (no sink when `enabled = false`).
pub fn cdr_settings(config: &Config) -> crate::cdr::CdrSettings {
    use crate::cdr::{CdrSettings, FileSinkSettings, FsyncPolicy, WebhookSettings};
    let c = &config.cdr;
    if !c.enabled {
        return CdrSettings::default();
    }
    let ms = Duration::from_millis;
    let file = c.file.enabled.then(|| FileSinkSettings {
        path: c.file.path.clone(),
        rotate_bytes: c.file.rotate_bytes,
        rotate_after: (c.file.rotate_seconds > 0)
            .then(|| Duration::from_secs(c.file.rotate_seconds)),
        keep_files: c.file.keep_files,
        fsync: match c.file.fsync {
            super::CdrFsync::Batch => FsyncPolicy::Batch,
            super::CdrFsync::Interval => FsyncPolicy::Interval(ms(c.file.fsync_interval_ms)),
            super::CdrFsync::Never => FsyncPolicy::Never,
        },
        batch_records: c.file.batch_records,
        queue_records: c.queue_records,
    });
    let webhook = c.webhook.as_ref().map(|w| WebhookSettings {
        url: w.url.clone(),
        batch_records: w.batch_records,
        batch_delay: ms(w.batch_delay_ms),
        buffer_records: w.buffer_records,
        max_attempts: w.max_attempts,
        retry_initial: ms(w.retry_initial_ms),
        retry_max: ms(w.retry_max_ms),
        timeout: ms(w.timeout_ms),
        queue_records: c.queue_records,
    });
    CdrSettings { file, webhook }
}
