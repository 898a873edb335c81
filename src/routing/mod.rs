//! Routing: which tenant a call belongs to, number
//! normalisation, the order of trunks and Microsoft proxies to try, admission limits and the
//! per-tenant/per-trunk call metrics. Pure and I/O-free.
//!
//! A [`RoutingTable`] is built once per configuration and never changes; the app keeps it in an
//! `ArcSwap` and a call holds the `Arc` it started with, so a reload never changes the route of
//! a call in progress. Ids ([`TrunkId`], [`TenantId`], [`ProxyId`]) index into one table.
//!
//! PSTN → Teams (inbound): the trunk the transport identified the sender as
//! ([`crate::transport::Peer`]), then [`RoutingTable::route_inbound`] (called number → a
//! tenant that trunk serves; miss → 404).
//! Teams → PSTN (outbound): [`RoutingTable::route_outbound`] (Request-URI host → tenant, calling
//! number screening), then per attempt [`RoutingTable::outbound_numbers`] for the trunk chosen
//! by [`TrunkFailover`].

mod failover;
mod limits;
mod metrics;
mod numbers;
mod translate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{Config, NumberBlock, TransportKind};

pub use failover::{
    is_proxy_failover_trigger, is_trunk_failover_trigger, ProxyFailover, ProxyMemory, ProxyOutcome,
    ProxyStep, TrunkFailover, TrunkFailure, TrunkStep,
};
pub use limits::{AdmitGuard, CallLimiter, LimitReason, LimitScope, Rejection};
pub use metrics::{CallDirection, CallFailure, CallLabels, RoutingMetrics};
pub use numbers::{clean_number, is_e164, NumberMatch};
pub use translate::{RuleList, TrunkTranslation};

/// Index of a carrier trunk in its [`RoutingTable`] (same order as `[[carrier_trunk]]`).
/// The transport names a sender by its trunk's name ([`crate::transport::TrunkName`]),
/// which a reload keeps; [`RoutingTable::trunk_by_name`] turns it into this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(pub(crate) u16);

impl TrunkId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Index of a tenant in its [`RoutingTable`] (same order as `[[tenant]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub(crate) u16);

/// Index of a Microsoft proxy in its [`RoutingTable`] (same order as `teams.proxies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId(pub(crate) u8);

impl TenantId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}
impl ProxyId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A carrier trunk as routing sees it.
#[derive(Debug)]
pub struct Trunk {
    pub name: Arc<str>,
    /// `host:port` of the carrier's SIP peer.
    pub address: String,
    pub transport: TransportKind,
    pub max_concurrent_calls: Option<u32>,
    pub max_calls_per_second: Option<u32>,
    /// Networks its SIP and media come from: `allowed_source_cidrs`, or the address' IP.
    pub sources: Vec<IpNet>,
    translation: translate::TrunkTranslation,
}

impl Trunk {
    /// The trunk's `from_teams` rules for calling numbers (Teams -> PSTN), as
    /// [`RoutingTable::outbound_numbers`] applies them to the caller.
    pub fn outbound_calling_rules(&self) -> &RuleList {
        &self.translation.from_teams_calling
    }
}

/// A customer tenant (derived trunk).
#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    /// Derived-trunk FQDN, lowercase, no trailing dot: the Contact host towards Microsoft on
    /// this tenant's inbound calls (row 32).
    pub fqdn: Arc<str>,
    /// Carrier trunks in failover order (primary first).
    pub trunks: Vec<TrunkId>,
    /// Trunks of the downstream SBCs this tenant's proxy SBC relays for (LMO, row 61): they
    /// may call the tenant's numbers too.
    pub downstream_trunks: Vec<TrunkId>,
    /// Teams → PSTN calls must present one of the tenant's own numbers (doc §4.4).
    pub screen_calling_number: bool,
    pub max_concurrent_calls: Option<u32>,
    pub max_calls_per_second: Option<u32>,
}

/// A Microsoft proxy; the app resolves `host` afresh for every attempt (row 8).
#[derive(Debug, Clone)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    /// SNI / expected certificate name when it differs from `host`.
    pub tls_name: Option<String>,
}

/// Choices the configuration file does not (yet) express.
#[derive(Debug, Clone)]
pub struct RoutingOptions {
    /// Screen the calling number of Teams-originated calls against the tenant's numbers.
    pub screen_calling_numbers: bool,
}

impl Default for RoutingOptions {
    fn default() -> Self {
        RoutingOptions {
            screen_calling_numbers: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("tenant {tenant:?}: no carrier trunk named {trunk:?}")]
    UnknownTrunk { tenant: String, trunk: String },
    #[error("tenant {tenant:?}: number {number:?}: {message}")]
    BadNumber {
        tenant: String,
        number: String,
        message: String,
    },
    #[error("number block {block} claimed by tenants {first:?} and {second:?}")]
    NumberConflict {
        block: String,
        first: String,
        second: String,
    },
    #[error("duplicate tenant fqdn {0:?}")]
    DuplicateFqdn(String),
    #[error("carrier trunk {trunk:?}: number_translation[{index}]: {message}")]
    BadPattern {
        trunk: String,
        index: usize,
        message: String,
    },
    #[error("teams.proxies[{index}]: {address:?} is not host:port")]
    BadProxy { index: usize, address: String },
    #[error("too many {0} (routing ids are 16-bit, proxies 8-bit)")]
    TooMany(&'static str),
}

/// Why an inbound (PSTN → Teams) call has no route. Every variant is answered with 404
/// (Microsoft would answer 404 for a non-E.164 number too, doc §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMiss {
    /// The called number is not E.164 after the trunk's translation rules.
    CalledNotE164 { translated: String },
    /// E.164, but no tenant owns it.
    UnknownNumber { called_e164: String },
    /// A tenant owns it, but the calling trunk is not one of that tenant's trunks: one
    /// carrier cannot reach another carrier's customers. Answered like an unknown number, so
    /// it tells nothing about who else is hosted here.
    TenantNotServed { tenant: TenantId },
}

impl InboundMiss {
    pub fn sip_status(&self) -> u16 {
        404
    }
}

/// The route of a PSTN → Teams call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub trunk: TrunkId,
    pub tenant: TenantId,
    pub matched_by: NumberMatch,
    /// Request-URI user part towards Microsoft (row 19).
    pub called_e164: String,
    /// From user part towards Microsoft (row 20); `None` when the calling number is absent or
    /// still not E.164 after translation (anonymous, withheld): the call layer decides.
    pub calling_e164: Option<String>,
}

/// Why an outbound (Teams → PSTN) call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundMiss {
    /// The Request-URI host is not a tenant's derived-trunk FQDN (row 31) → 404.
    UnknownHost,
    /// The calling number is not one of the tenant's numbers (screening) → 403.
    CallingNumberNotAllowed { tenant: TenantId },
}

impl OutboundMiss {
    pub fn sip_status(&self) -> u16 {
        match self {
            OutboundMiss::UnknownHost => 404,
            OutboundMiss::CallingNumberNotAllowed { .. } => 403,
        }
    }
}

/// The route of a Teams → PSTN call. Numbers are as Teams sent them (cleaned); translate them
/// for each trunk tried with [`RoutingTable::outbound_numbers`].
#[derive(Debug, Clone)]
pub struct OutboundRoute {
    pub tenant: TenantId,
    pub trunks: TrunkFailover,
    pub called: String,
    pub calling: Option<String>,
}

/// Called and calling numbers in the format a carrier trunk expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialNumbers {
    pub called: String,
    pub calling: Option<String>,
}

/// The immutable routing table of one configuration.
#[derive(Debug)]
pub struct RoutingTable {
    trunks: Vec<Trunk>,
    tenants: Vec<Tenant>,
    proxies: Vec<Proxy>,
    numbers: numbers::NumberIndex,
    /// Lowercase FQDN → tenant.
    hosts: HashMap<Box<str>, TenantId>,
    /// Lowercase FQDN of a downstream SBC (LMO proxy role, row 61) → its tenant and trunk.
    downstream: HashMap<Box<str>, (TenantId, TrunkId)>,
    max_concurrent_sessions: Option<u32>,
    proxy_hop_timeout: Duration,
    proxy_failed_hold: Duration,
}

impl RoutingTable {
    pub fn from_config(config: &Config) -> Result<RoutingTable, RoutingError> {
        RoutingTable::from_config_with(config, &RoutingOptions::default())
    }

    pub fn from_config_with(
        config: &Config,
        options: &RoutingOptions,
    ) -> Result<RoutingTable, RoutingError> {
        if config.carrier_trunks.len() > usize::from(u16::MAX) {
            return Err(RoutingError::TooMany("carrier trunks"));
        }
        if config.tenants.len() > usize::from(u16::MAX) {
            return Err(RoutingError::TooMany("tenants"));
        }
        if config.teams.proxies.len() > usize::from(u8::MAX) {
            return Err(RoutingError::TooMany("Microsoft proxies"));
        }
        let mut trunks = Vec::with_capacity(config.carrier_trunks.len());
        for t in &config.carrier_trunks {
            let translation =
                translate::TrunkTranslation::compile(&t.number_translation).map_err(|e| {
                    RoutingError::BadPattern {
                        trunk: t.name.clone(),
                        index: e.index,
                        message: e.message,
                    }
                })?;
            let trunk_sources = t.source_networks();
            trunks.push(Trunk {
                name: Arc::from(t.name.as_str()),
                address: t.address.clone(),
                transport: t.transport,
                max_concurrent_calls: t.max_concurrent_calls,
                max_calls_per_second: t.max_calls_per_second,
                sources: trunk_sources,
                translation,
            });
        }

        let mut tenants = Vec::with_capacity(config.tenants.len());
        let mut hosts = HashMap::new();
        let mut downstream = HashMap::new();
        let mut blocks: Vec<(TenantId, NumberBlock)> = Vec::new();
        for (i, t) in config.tenants.iter().enumerate() {
            let id = TenantId(i as u16);
            let trunk = trunks
                .iter()
                .position(|c| *c.name == *t.carrier_trunk)
                .ok_or_else(|| RoutingError::UnknownTrunk {
                    tenant: t.name.clone(),
                    trunk: t.carrier_trunk.clone(),
                })?;
            let fqdn = normalise_host(&t.fqdn);
            if hosts.insert(Box::from(fqdn.as_str()), id).is_some() {
                return Err(RoutingError::DuplicateFqdn(fqdn));
            }
            for number in &t.numbers {
                let block =
                    NumberBlock::parse(number).map_err(|message| RoutingError::BadNumber {
                        tenant: t.name.clone(),
                        number: number.clone(),
                        message,
                    })?;
                blocks.push((id, block));
            }
            let mut tenant_trunks = vec![TrunkId(trunk as u16)];
            for name in &t.failover_carrier_trunks {
                let failover = trunks
                    .iter()
                    .position(|c| *c.name == **name)
                    .ok_or_else(|| RoutingError::UnknownTrunk {
                        tenant: t.name.clone(),
                        trunk: name.clone(),
                    })?;
                let id = TrunkId(failover as u16);
                if !tenant_trunks.contains(&id) {
                    tenant_trunks.push(id);
                }
            }
            let mut downstream_trunks = Vec::new();
            for d in t.lmo.iter().flat_map(|l| l.downstream_sbcs.iter()) {
                let trunk = trunks
                    .iter()
                    .position(|c| *c.name == *d.carrier_trunk)
                    .ok_or_else(|| RoutingError::UnknownTrunk {
                        tenant: t.name.clone(),
                        trunk: d.carrier_trunk.clone(),
                    })?;
                let trunk = TrunkId(trunk as u16);
                let host = normalise_host(&d.fqdn);
                if hosts.contains_key(host.as_str())
                    || downstream
                        .insert(Box::from(host.as_str()), (id, trunk))
                        .is_some()
                {
                    return Err(RoutingError::DuplicateFqdn(host));
                }
                if !downstream_trunks.contains(&trunk) {
                    downstream_trunks.push(trunk);
                }
            }
            tenants.push(Tenant {
                name: Arc::from(t.name.as_str()),
                fqdn: Arc::from(fqdn.as_str()),
                trunks: tenant_trunks,
                downstream_trunks,
                screen_calling_number: options.screen_calling_numbers,
                max_concurrent_calls: t.max_concurrent_calls,
                max_calls_per_second: t.max_calls_per_second,
            });
        }
        let numbers =
            numbers::NumberIndex::build(blocks.iter().map(|(id, b)| (*id, b))).map_err(|c| {
                RoutingError::NumberConflict {
                    block: c.block,
                    first: tenants[c.tenants.0.index()].name.to_string(),
                    second: tenants[c.tenants.1.index()].name.to_string(),
                }
            })?;

        let mut proxies = Vec::with_capacity(config.teams.proxies.len());
        for (index, p) in config.teams.proxies.iter().enumerate() {
            let bad = || RoutingError::BadProxy {
                index,
                address: p.address().to_string(),
            };
            let (host, port) = p.address().rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            proxies.push(Proxy {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                transport: p.transport(),
                tls_name: p.tls_name().map(str::to_string),
            });
        }

        Ok(RoutingTable {
            trunks,
            tenants,
            proxies,
            numbers,
            hosts,
            downstream,
            max_concurrent_sessions: config.teams.max_concurrent_sessions,
            // Until the config has a dedicated per-hop INVITE timeout, the connect timeout is
            // the time after which a silent proxy counts as unreachable (vendor practice: a
            // few seconds; RFC 3261 Timer B's 32 s is far too slow, doc §2.7).
            proxy_hop_timeout: Duration::from_secs(config.sip.connect_timeout_seconds.max(1)),
            // A failed proxy stays demoted until the next OPTIONS round would have re-checked it.
            proxy_failed_hold: Duration::from_secs(config.teams.options_interval_seconds.max(1)),
        })
    }

    pub fn trunks(&self) -> &[Trunk] {
        &self.trunks
    }
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }
    pub fn proxies(&self) -> &[Proxy] {
        &self.proxies
    }
    pub fn trunk(&self, id: TrunkId) -> Option<&Trunk> {
        self.trunks.get(id.index())
    }
    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(id.index())
    }
    pub fn proxy(&self, id: ProxyId) -> Option<&Proxy> {
        self.proxies.get(id.index())
    }
    /// How the transport names the sender of `trunk`'s requests.
    pub fn carrier_peer(&self, trunk: TrunkId) -> crate::transport::Peer {
        let name = self
            .trunk(trunk)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| std::sync::Arc::from(""));
        crate::transport::Peer::Carrier(crate::transport::TrunkName::from(name))
    }

    pub fn trunk_by_name(&self, name: &str) -> Option<TrunkId> {
        self.trunks
            .iter()
            .position(|t| *t.name == *name)
            .map(|i| TrunkId(i as u16))
    }
    pub fn tenant_by_name(&self, name: &str) -> Option<TenantId> {
        self.tenants
            .iter()
            .position(|t| *t.name == *name)
            .map(|i| TenantId(i as u16))
    }
    /// `teams.max_concurrent_sessions` (`MaxConcurrentSessions`).
    pub fn max_concurrent_sessions(&self) -> Option<u32> {
        self.max_concurrent_sessions
    }
    /// How long to wait for any response from a Microsoft proxy before trying the next one.
    pub fn proxy_hop_timeout(&self) -> Duration {
        self.proxy_hop_timeout
    }

    /// Proxy order for a new INVITE towards Teams.
    pub fn proxy_failover(
        &self,
        memory: Option<&ProxyMemory>,
        now: std::time::Instant,
    ) -> ProxyFailover {
        ProxyFailover::new(self.proxies.len(), memory, now)
    }

    /// Shared "recently failed" marks for this table's proxies.
    pub fn proxy_memory(&self, epoch: std::time::Instant) -> ProxyMemory {
        ProxyMemory::new(self.proxies.len(), self.proxy_failed_hold, epoch)
    }

    /// The tenant owning an E.164 number (`+` optional).
    pub fn tenant_for_number(&self, number: &str) -> Option<(TenantId, NumberMatch)> {
        self.numbers.lookup(number)
    }

    /// The tenant whose derived-trunk FQDN is `host` (case-insensitive, trailing dot
    /// tolerated). The base FQDN alone is not a tenant.
    pub fn tenant_for_host(&self, host: &str) -> Option<TenantId> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(host.to_ascii_lowercase().as_str()).copied()
        } else {
            self.hosts.get(host).copied()
        }
    }

    /// The tenant and trunk of a downstream SBC FQDN (LMO proxy role, row 61).
    pub fn downstream_for_host(&self, host: &str) -> Option<(TenantId, TrunkId)> {
        let host = normalise_host(host);
        self.downstream.get(host.as_str()).copied()
    }

    /// PSTN → Teams: translate the numbers with the trunk's `to_teams` rules and find the
    /// tenant by called number (exact, then range, then longest prefix).
    pub fn route_inbound(
        &self,
        trunk: TrunkId,
        called: &str,
        calling: Option<&str>,
    ) -> Result<InboundRoute, InboundMiss> {
        let rules = self.trunk(trunk).map(|t| &t.translation);
        let called = clean_number(called);
        let called = match rules {
            Some(r) => r.to_teams_called.apply(&called).into_owned(),
            None => called.into_owned(),
        };
        if !is_e164(&called) {
            return Err(InboundMiss::CalledNotE164 { translated: called });
        }
        let Some((tenant, matched_by)) = self.numbers.lookup(&called) else {
            return Err(InboundMiss::UnknownNumber {
                called_e164: called,
            });
        };
        let served = self
            .tenants
            .get(tenant.index())
            .is_some_and(|t| t.trunks.contains(&trunk) || t.downstream_trunks.contains(&trunk));
        if !served {
            return Err(InboundMiss::TenantNotServed { tenant });
        }
        let calling_e164 = calling.and_then(|raw| {
            let cleaned = clean_number(raw);
            let translated = match rules {
                Some(r) => r.to_teams_calling.apply(&cleaned).into_owned(),
                None => cleaned.into_owned(),
            };
            is_e164(&translated).then_some(translated)
        });
        Ok(InboundRoute {
            trunk,
            tenant,
            matched_by,
            called_e164: called,
            calling_e164,
        })
    }

    /// Teams → PSTN: tenant by Request-URI host, then calling-number screening. `calling` is
    /// the identity to screen: the P-Asserted-Identity number when Microsoft forwards PAI
    /// (anonymous From), else the From user part.
    pub fn route_outbound(
        &self,
        request_uri_host: &str,
        called: &str,
        calling: Option<&str>,
    ) -> Result<OutboundRoute, OutboundMiss> {
        // A downstream SBC's FQDN (LMO, row 61): its tenant, through its trunk only; when
        // that fails Microsoft tries the next gateway of the tenant's voice route.
        let (tenant_id, trunks) = match self.tenant_for_host(request_uri_host) {
            Some(tenant) => (tenant, None),
            None => {
                let (tenant, trunk) = self
                    .downstream_for_host(request_uri_host)
                    .ok_or(OutboundMiss::UnknownHost)?;
                (tenant, Some(trunk))
            }
        };
        let tenant = &self.tenants[tenant_id.index()];
        let calling = calling
            .map(|c| clean_number(c).into_owned())
            .filter(|c| !c.is_empty());
        if tenant.screen_calling_number {
            let owned_by_tenant = calling
                .as_deref()
                .filter(|c| is_e164(c))
                .and_then(|c| self.numbers.lookup(c))
                .is_some_and(|(owner, _)| owner == tenant_id);
            if !owned_by_tenant {
                return Err(OutboundMiss::CallingNumberNotAllowed { tenant: tenant_id });
            }
        }
        Ok(OutboundRoute {
            tenant: tenant_id,
            trunks: match trunks {
                Some(trunk) => TrunkFailover::new(&[trunk]),
                None => TrunkFailover::new(&tenant.trunks),
            },
            called: clean_number(called).into_owned(),
            calling,
        })
    }

    /// The numbers of an outbound call as `trunk` expects them (its `from_teams` rules).
    pub fn outbound_numbers(&self, trunk: TrunkId, route: &OutboundRoute) -> DialNumbers {
        match self.trunk(trunk) {
            Some(t) => DialNumbers {
                called: t
                    .translation
                    .from_teams_called
                    .apply(&route.called)
                    .into_owned(),
                calling: route
                    .calling
                    .as_deref()
                    .map(|c| t.outbound_calling_rules().apply(c).into_owned()),
            },
            None => DialNumbers {
                called: route.called.clone(),
                calling: route.calling.clone(),
            },
        }
    }

    /// Metric labels for a call (names from this table only; unknown ids → "unknown").
    pub fn call_labels(
        &self,
        tenant: Option<TenantId>,
        trunk: Option<TrunkId>,
        direction: CallDirection,
    ) -> CallLabels {
        CallLabels::new(
            tenant.and_then(|t| self.tenant(t)).map(|t| t.name.clone()),
            trunk.and_then(|t| self.trunk(t)).map(|t| t.name.clone()),
            direction,
        )
    }
}

/// Lowercase, without a trailing dot.
fn normalise_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}
