//! New calls: which side an INVITE came from, its route, admission, media and the call's
//! setup (rows 19, 20, 31, 32; doc 4.4 screening; limits with 503 + Retry-After).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use ipnet::IpNet;

use super::settings;
use super::table::{Slot, TxEntry};
use super::{Dispatcher, Layer, Route};
use crate::call::{
    Call, CallNumbers, CallSetup, CarrierLegSetup, CarrierTarget, CarrierTrunkSettings, LegId,
    LmoHeaders, ProxyTarget, TeamsLegSetup, TeamsProfile,
};
use crate::cdr::CallLife;
use crate::routing::{
    AdmitGuard, CallDirection, CallLabels, OutboundMiss, ProxyId, TenantId, TrunkId,
};
use crate::sdp::IceCredentials;
use crate::sip::{HeaderName, Message, Uri};
use crate::transaction::TxId;
use crate::transport::{Peer, Source, TransportKind};

/// The pieces of a new call decided by routing.
struct NewCall {
    tenant: TenantId,
    carrier: CarrierLegSetup,
    teams: TeamsLegSetup,
    numbers: CallNumbers,
    labels: CallLabels,
    proxies: Vec<ProxyId>,
    carrier_targets: Vec<CarrierTarget>,
    /// The trunk of each of `carrier_targets`.
    carrier_target_trunks: Vec<TrunkId>,
    /// Who may speak in the carrier leg's dialogs (the calling trunk, or the first hop).
    carrier_owner: Peer,
    /// Networks the carrier leg's media may come from: those of every trunk the call may
    /// use (the one it came from, or each one failover may try).
    carrier_media_sources: Vec<IpNet>,
    guard: AdmitGuard,
    from_leg: LegId,
    /// Calling and called numbers as the caller sent them (for the call's detail record).
    received: (String, String),
}

impl Dispatcher {
    pub(super) fn new_call(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: Source,
    ) {
        if self.draining {
            // Microsoft fails over on 503 (FailoverResponseCodes), carriers on Retry-After.
            let reason = "Service Unavailable (draining)";
            self.reply(
                now,
                layer,
                tx,
                &msg,
                503,
                reason,
                Some(60),
                from.peer.clone(),
            );
            return;
        }
        // The transport decided who sent it (transport, certificate and address together).
        match from.peer {
            Some(Peer::Microsoft) => self.new_from_teams(now, layer, tx, msg, from),
            Some(Peer::Carrier(ref name)) => match self.routing.trunk_by_name(name.as_str()) {
                Some(trunk) => self.new_from_carrier(now, layer, tx, msg, from, trunk),
                // A trunk a reload removed is still heard for the calls it had; nothing new.
                None => self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    403,
                    "Forbidden (trunk no longer configured)",
                    None,
                    from.peer.clone(),
                ),
            },
            None => self.reply(
                now,
                layer,
                tx,
                &msg,
                403,
                "Forbidden (unknown source)",
                None,
                None,
            ),
        }
    }

    fn new_from_carrier(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: Source,
        trunk: TrunkId,
    ) {
        let routing = self.routing.clone();
        let called = msg.request_uri().and_then(number_of).unwrap_or_default();
        let calling = msg.from().ok().and_then(|f| number_of(&f.uri));
        let calling_received = calling.clone().unwrap_or_default();
        let route = match routing.route_inbound(trunk, &called, calling.as_deref()) {
            Ok(route) => route,
            Err(miss) => {
                tracing::info!(?miss, "PSTN call without a tenant");
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    miss.sip_status(),
                    "Not Found",
                    None,
                    from.peer.clone(),
                );
                return;
            }
        };
        let guard = match self.limiter.try_admit(trunk, route.tenant, now) {
            Ok(guard) => guard,
            Err(rejection) => {
                self.metrics.rejected(&rejection);
                let retry = Some(rejection.retry_after_secs);
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    503,
                    "Service Unavailable",
                    retry,
                    from.peer.clone(),
                );
                return;
            }
        };
        let Some(tenant) = routing.tenant(route.tenant) else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                500,
                "Server Internal Error",
                None,
                from.peer.clone(),
            );
            return;
        };
        let proxies: Vec<_> = routing
            .proxy_failover(Some(&self.proxy_memory), now)
            .order()
            .to_vec();
        let proxy_targets = proxies
            .iter()
            .filter_map(|id| routing.proxy(*id))
            .map(|p| ProxyTarget {
                fqdn: p.host.clone(),
                port: p.port,
            })
            .collect();
        let numbers = CallNumbers {
            caller: route
                .calling_e164
                .clone()
                .or(calling)
                .unwrap_or_else(|| "anonymous".to_string()),
            callee: route.called_e164.clone(),
        };
        let carrier = CarrierLegSetup {
            local_host: self.settings.carrier_host(from.local),
            local_port: from.local.port(),
            transport: from.kind,
            targets: Vec::new(),
            trunk: self.trunk_settings(trunk),
            offer_rtcp_mux: false,
        };
        let teams = self.teams_leg(route.tenant, &tenant.fqdn, proxy_targets, Some(trunk));
        let labels = routing.call_labels(Some(route.tenant), Some(trunk), CallDirection::Inbound);
        let carrier_media_sources = routing
            .trunk(trunk)
            .map(|t| t.sources.clone())
            .unwrap_or_default();
        let parts = NewCall {
            carrier,
            teams,
            numbers,
            labels,
            proxies,
            carrier_targets: Vec::new(),
            carrier_target_trunks: Vec::new(),
            tenant: route.tenant,
            carrier_owner: routing.carrier_peer(trunk),
            carrier_media_sources,
            guard,
            from_leg: LegId::Carrier,
            received: (calling_received, called),
        };
        self.create(now, layer, tx, msg, from, parts);
    }

    fn new_from_teams(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: Source,
    ) {
        let routing = self.routing.clone();
        let host = msg
            .request_uri()
            .and_then(Uri::as_sip)
            .map(|u| String::from_utf8_lossy(u.host_unbracketed()).into_owned())
            .unwrap_or_default();
        let called = msg.request_uri().and_then(number_of).unwrap_or_default();
        let pai = msg
            .header(&HeaderName::PAssertedIdentity)
            .and_then(|v| number_in_header(&v));
        let calling = pai.or_else(|| msg.from().ok().and_then(|f| number_of(&f.uri)));
        let route = match routing.route_outbound(&host, &called, calling.as_deref()) {
            Ok(route) => route,
            Err(miss) => {
                let reason = match miss {
                    OutboundMiss::UnknownHost => "Not Found (unknown trunk FQDN)",
                    OutboundMiss::CallingNumberNotAllowed { .. } => {
                        "Forbidden (calling number not assigned to the tenant)"
                    }
                };
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    miss.sip_status(),
                    reason,
                    None,
                    from.peer.clone(),
                );
                return;
            }
        };
        let Some(trunk) = route.trunks.current() else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                503,
                "Service Unavailable (no trunk)",
                None,
                from.peer.clone(),
            );
            return;
        };
        let guard = match self.limiter.try_admit(trunk, route.tenant, now) {
            Ok(guard) => guard,
            Err(rejection) => {
                self.metrics.rejected(&rejection);
                let retry = Some(rejection.retry_after_secs);
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    503,
                    "Service Unavailable",
                    retry,
                    from.peer.clone(),
                );
                return;
            }
        };
        let Some(tenant) = routing.tenant(route.tenant) else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                500,
                "Server Internal Error",
                None,
                from.peer.clone(),
            );
            return;
        };
        // Our requests to Microsoft in this call's dialog go to its proxies, in order.
        let proxies: Vec<_> = routing
            .proxy_failover(Some(&self.proxy_memory), now)
            .order()
            .to_vec();
        // Every hop with its own trunk: transport, our address for it, settings, numbers.
        let (targets, target_trunks): (Vec<CarrierTarget>, Vec<TrunkId>) = route
            .trunks
            .trunks()
            .iter()
            .filter_map(|id| {
                let t = routing.trunk(*id)?;
                let (host, port) = settings::split_host_port(&t.address)?;
                let host = match host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                    _ => host,
                };
                let transport = settings::kind_of(t.transport);
                let local = self.local_for(transport, from.local);
                let dial = routing.outbound_numbers(*id, &route);
                let target = CarrierTarget {
                    host,
                    port,
                    transport,
                    local_host: self.settings.carrier_host(local),
                    local_port: local.port(),
                    trunk: self.trunk_settings(*id),
                    numbers: CallNumbers {
                        caller: dial.calling.unwrap_or_else(|| "anonymous".to_string()),
                        callee: dial.called,
                    },
                };
                Some((target, *id))
            })
            .unzip();
        let Some(first) = targets.first() else {
            self.reply(
                now,
                layer,
                tx,
                &msg,
                503,
                "Service Unavailable (no trunk)",
                None,
                from.peer,
            );
            return;
        };
        let numbers = first.numbers.clone();
        let carrier = CarrierLegSetup {
            local_host: first.local_host.clone(),
            local_port: first.local_port,
            transport: first.transport,
            targets: targets.clone(),
            trunk: first.trunk.clone(),
            offer_rtcp_mux: false,
        };
        let teams = self.teams_leg(route.tenant, &tenant.fqdn, Vec::new(), None);
        self.note_media_path(&msg, &tenant.fqdn);
        let labels = routing.call_labels(Some(route.tenant), Some(trunk), CallDirection::Outbound);
        let carrier_media_sources = route
            .trunks
            .trunks()
            .iter()
            .filter_map(|id| routing.trunk(*id))
            .flat_map(|t| t.sources.iter().copied())
            .collect();
        let parts = NewCall {
            carrier,
            teams,
            numbers,
            labels,
            proxies,
            carrier_targets: targets,
            carrier_target_trunks: target_trunks,
            tenant: route.tenant,
            carrier_owner: routing.carrier_peer(trunk),
            carrier_media_sources,
            guard,
            from_leg: LegId::Teams,
            received: (calling.unwrap_or_default(), called),
        };
        self.create(now, layer, tx, msg, from, parts);
    }

    /// The settings of `trunk` (the config defaults for an id this table does not know).
    fn trunk_settings(&self, trunk: TrunkId) -> CarrierTrunkSettings {
        self.settings
            .trunks
            .get(trunk.index())
            .cloned()
            .unwrap_or_default()
    }

    /// Our listener for `transport` (the one a request came in on when there is none).
    fn local_for(&self, transport: TransportKind, fallback: SocketAddr) -> SocketAddr {
        self.local
            .iter()
            .find(|(k, _)| *k == transport)
            .map(|(_, a)| *a)
            .unwrap_or(fallback)
    }

    /// `calling_trunk`: the trunk that placed a PSTN -> Teams call. Its P-Asserted-Identity
    /// reaches Teams (`forward_pai`, row 20) only when that trunk is trusted: an untrusted
    /// carrier could otherwise present any number as verified.
    fn teams_leg(
        &self,
        tenant: TenantId,
        fqdn: &str,
        proxies: Vec<ProxyTarget>,
        calling_trunk: Option<TrunkId>,
    ) -> TeamsLegSetup {
        let caller_trusted = calling_trunk
            .and_then(|t| self.settings.trunks.get(t.index()))
            .is_some_and(|t| t.trusted);
        let lmo = self.settings.tenants.get(tenant.index());
        TeamsLegSetup {
            tenant_fqdn: fqdn.to_string(),
            sip_port: self.settings.sip_signaling_port,
            proxies,
            codecs: self.settings.teams_codecs.clone(),
            ice: self.settings.media_bypass.then(IceCredentials::generate),
            failover_response_codes: self.settings.failover_response_codes.clone(),
            forward_pai: self.settings.forward_pai && caller_trusted,
            local_media: lmo.and_then(|t| t.local_media),
        }
    }

    fn create(
        &mut self,
        now: Instant,
        layer: &mut Layer,
        tx: TxId,
        msg: Message,
        from: Source,
        parts: NewCall,
    ) {
        let allocation = match self.media.create_session(
            &self.settings.carrier_interface,
            &self.settings.teams_interface,
            &parts.carrier_media_sources,
        ) {
            Ok(allocation) => allocation,
            Err(error) => {
                tracing::warn!(%error, "no media session for a new call");
                self.reply(
                    now,
                    layer,
                    tx,
                    &msg,
                    503,
                    "Service Unavailable",
                    Some(1),
                    from.peer.clone(),
                );
                return;
            }
        };
        let setup = CallSetup {
            media: allocation,
            teams: parts.teams,
            carrier: parts.carrier,
            numbers: parts.numbers,
            teams_profile: TeamsProfile {
                record_route: self
                    .settings
                    .tenants
                    .get(parts.tenant.index())
                    .is_some_and(|t| t.record_route),
                ..TeamsProfile::new(
                    &self.settings.vendor,
                    &self.settings.model,
                    env!("CARGO_PKG_VERSION"),
                )
            },
            timers: self.settings.timers,
        };
        let invite = msg.clone();
        let life = self.cdr.enabled().then(|| {
            let direction = match parts.from_leg {
                LegId::Carrier => crate::call::Direction::Inbound,
                LegId::Teams => crate::call::Direction::Outbound,
            };
            let (calling_received, called_received) = parts.received;
            let numbers = crate::cdr::Numbers {
                calling_received,
                called_received,
                calling_sent: setup.numbers.caller.clone(),
                called_sent: setup.numbers.callee.clone(),
            };
            Box::new(CallLife::new(
                direction,
                now,
                numbers,
                setup.teams.ice.is_some(),
            ))
        });
        let call = match parts.from_leg {
            LegId::Carrier => Call::new_from_carrier(now, setup, msg, tx),
            LegId::Teams => Call::new_from_teams(now, setup, msg, tx),
        };
        let key = self.table.next_key();
        let call_ids = [
            call.call_id(LegId::Carrier).clone(),
            call.call_id(LegId::Teams).clone(),
        ];
        self.traces.begin(key, &parts.labels, &call_ids, now);
        self.trace_received(
            now,
            key,
            parts.from_leg,
            &Route::Back(from.clone()),
            &invite,
        );
        let mut flows = [None, None];
        flows[match parts.from_leg {
            LegId::Carrier => 0,
            LegId::Teams => 1,
        }] = Some(from);
        let slot = Slot {
            call_ids,
            call,
            session: Some(allocation.id),
            guard: Some(parts.guard),
            labels: parts.labels,
            routing: self.routing.clone(),
            proxies: parts.proxies,
            teams_proxy: 0,
            carrier_targets: parts.carrier_targets,
            carrier_target_trunks: parts.carrier_target_trunks,
            owners: [parts.carrier_owner, Peer::Microsoft],
            flows,
            sent_kinds: [None, None],
            transactions: Vec::new(),
            attempted: false,
            media_removed: false,
            outcome: None,
            life,
        };
        self.table.insert(key, slot);
        self.table.add_tx(
            tx,
            TxEntry {
                call: key,
                leg: parts.from_leg,
                client: false,
                responded: false,
                proxy: None,
            },
        );
        self.drain(now, layer, key);
    }
}

impl Dispatcher {
    /// Microsoft's `X-MS-MediaPath` (row 61) on a Teams -> PSTN INVITE that does not start at
    /// this SBC asks for media straight to a downstream SBC; the SBC anchors the media anyway.
    fn note_media_path(&self, invite: &Message, tenant_fqdn: &str) {
        let headers = LmoHeaders::of(invite);
        let ours = [tenant_fqdn, self.settings.base_fqdn.as_str()];
        if headers.media_path_starts_at(&ours) == Some(false) {
            self.lmo_metrics.path_not_through_sbc.inc();
            tracing::debug!(
                media_path = %headers.media_path.join(", "),
                site = headers.site.as_deref().unwrap_or(""),
                "X-MS-MediaPath leaves this SBC out; media stays anchored here"
            );
        }
    }
}

/// The number in a SIP or tel URI (user part of `sip:`, subscriber of `tel:`).
fn number_of(uri: &Uri) -> Option<String> {
    if let Some(sip) = uri.as_sip() {
        return sip
            .user
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
    }
    let raw = String::from_utf8_lossy(uri.raw());
    let rest = raw
        .strip_prefix("tel:")
        .or_else(|| raw.strip_prefix("TEL:"))?;
    Some(rest.split(';').next().unwrap_or(rest).to_string())
}

/// The number of the first URI in a P-Asserted-Identity value.
fn number_in_header(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let inner = match (text.find('<'), text.find('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text.split(',').next()?.trim(),
    };
    let uri = Uri::parse(&Bytes::copy_from_slice(inner.as_bytes())).ok()?;
    number_of(&uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_sip_and_tel_uris() {
        let sip = Uri::parse(&Bytes::from_static(
            b"sip:+4930123456@acme.example;user=phone",
        ))
        .unwrap();
        assert_eq!(number_of(&sip).as_deref(), Some("+4930123456"));
        assert_eq!(
            number_in_header(b"\"Alice\" <tel:+14255550100;ext=1>").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(
            number_in_header(b"<sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(number_in_header(b"garbage <"), None);
    }
}
