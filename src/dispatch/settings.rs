//! What the dispatcher needs from the configuration, as plain data, and the mapping from the
//! TOML schema (the config module has no mapping for calls yet).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::call::{CallTimers, CarrierTrunkSettings};
use crate::config::{mapping, Config};
use crate::health::ProductHeaders;
use crate::routing::RoutingTable;
use crate::sdp::CodecList;
use crate::transport::{Peer, TransportKind};

/// Per tenant (same order as `RoutingTable::tenants`): its part of Local Media Optimization
/// (row 61).
#[derive(Debug, Clone, Default)]
pub struct TenantLegSettings {
    /// Teams-leg media addresses by the user's location; `None` without `[tenant.lmo]`.
    pub local_media: Option<crate::call::LocalMedia>,
    /// Proxy SBC role: Record-Route towards Microsoft (same FQDN as Contact).
    pub record_route: bool,
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// `sbc.base_fqdn` (the carrier trunk FQDN).
    pub base_fqdn: String,
    /// Our TLS port as Microsoft knows it (`SipSignalingPort`, Contact port towards Teams).
    pub sip_signaling_port: u16,
    /// Address put in Contact/Via towards carriers instead of the listener address.
    pub public_address: Option<IpAddr>,
    pub teams_codecs: CodecList,
    pub media_bypass: bool,
    pub failover_response_codes: Vec<u16>,
    pub forward_pai: bool,
    /// Per carrier trunk, in the order of `RoutingTable::trunks`.
    pub trunks: Vec<CarrierTrunkSettings>,
    pub tenants: Vec<TenantLegSettings>,
    pub timers: CallTimers,
    pub vendor: String,
    pub model: String,
    /// What our own answers say about the product, per side (row 59).
    pub microsoft_product: ProductHeaders,
    pub carrier_product: ProductHeaders,
    /// Names of the media interfaces of each leg.
    pub carrier_interface: String,
    pub teams_interface: String,
    pub limits: crate::sip::Limits,
    /// The calls' SIP traces (row 60).
    pub trace: super::TraceSettings,
}

impl DispatchSettings {
    /// `routing` is the table built from the same `config` (it holds the trunks' compiled
    /// number rules).
    pub fn from_config(config: &Config, routing: &RoutingTable) -> DispatchSettings {
        let per_hop = Duration::from_secs(config.sip.connect_timeout_seconds.max(1));
        // Answer Microsoft with a failover code before its FailoverTimeSeconds runs out.
        let progress_deadline =
            Duration::from_secs(config.teams.failover_time_seconds.saturating_sub(2).max(1));
        DispatchSettings {
            base_fqdn: config.sbc.base_fqdn.to_ascii_lowercase(),
            sip_signaling_port: config.sbc.sip_signaling_port,
            public_address: config.sbc.public_address,
            teams_codecs: CodecList::teams_default(),
            media_bypass: config.teams.media_bypass,
            failover_response_codes: config.teams.failover_response_codes.clone(),
            forward_pai: config.teams.forward_pai,
            trunks: config
                .carrier_trunks
                .iter()
                .zip(routing.trunks())
                .map(|(t, routed)| CarrierTrunkSettings {
                    codecs: CodecList::new(&t.codecs),
                    early_media: crate::call::EarlyMediaPolicy::from_name(&t.early_media)
                        .unwrap_or_default(),
                    responses: mapping::response_policy(t),
                    inband_dtmf: t.inband_dtmf,
                    comfort_noise: t.comfort_noise,
                    ringback: t.ringback_tone.plan(),
                    trusted: t.trusted,
                    diversion_from_history_info: t.diversion_from_history_info,
                    calling_number_rules: routed.outbound_calling_rules().clone(),
                })
                .collect(),
            tenants: config
                .tenants
                .iter()
                .map(|t| tenant_settings(config, t))
                .collect(),
            timers: CallTimers {
                hop_timeout: per_hop,
                progress_deadline,
                session_expires: Duration::from_secs(config.teams.session_expires_seconds),
                ..CallTimers::default()
            },
            vendor: config.sbc.vendor.clone(),
            model: config.sbc.model.clone(),
            microsoft_product: ProductHeaders::microsoft(
                &config.sbc.vendor,
                &config.sbc.model,
                env!("CARGO_PKG_VERSION"),
            ),
            carrier_product: ProductHeaders::carrier(config.sbc.carrier_user_agent.as_deref()),
            carrier_interface: "carrier".to_string(),
            teams_interface: "teams".to_string(),
            limits: mapping::sip_limits(config),
            trace: super::TraceSettings {
                call_bytes: config.ops.call_trace_bytes,
                call_messages: config.ops.call_trace_messages,
                keep: Duration::from_secs(config.ops.call_trace_keep_seconds),
                kept_bytes: config.ops.call_trace_kept_bytes,
                log_interval: Duration::from_secs(config.ops.call_trace_log_interval_seconds),
            },
        }
    }

    /// The product headers of an answer to `peer`.
    pub fn product_for(&self, peer: Option<Peer>) -> &ProductHeaders {
        match peer {
            Some(Peer::Microsoft) => &self.microsoft_product,
            _ => &self.carrier_product,
        }
    }

    /// Host for Contact/Via towards a carrier when the request used `local`.
    pub fn carrier_host(&self, local: SocketAddr) -> String {
        let ip = match self.public_address {
            Some(ip) => ip,
            None if local.ip().is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            None => local.ip(),
        };
        match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }
    }
}

fn tenant_settings(config: &Config, tenant: &crate::config::Tenant) -> TenantLegSettings {
    use crate::call::{LocalMedia, UserLocation};
    use crate::config::{LmoLocation, LmoRole};
    let Some(lmo) = &tenant.lmo else {
        return TenantLegSettings::default();
    };
    let teams = &config.media.teams;
    let local_media = teams.internal_address.and_then(|internal| {
        Some(LocalMedia {
            internal,
            external: teams.advertised_address(config.sbc.public_address)?,
            inbound_guess: match lmo.inbound_location {
                LmoLocation::Internal => UserLocation::Internal,
                LmoLocation::External => UserLocation::External,
            },
        })
    });
    TenantLegSettings {
        local_media,
        record_route: lmo.role == LmoRole::Proxy,
    }
}

/// `host:port` (validated at load) into host (brackets removed) and port.
pub(crate) fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// The transport module's kind for a config kind.
pub(crate) fn kind_of(kind: crate::config::TransportKind) -> TransportKind {
    mapping::transport_kind(kind)
}
