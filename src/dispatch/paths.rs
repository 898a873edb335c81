//! Where a call's message goes: a Microsoft proxy resolved by FQDN for every attempt (row 8),
//! a carrier next hop, or an in-dialog target. Microsoft's connections carry Microsoft's
//! requests only (teams-direct-routing.md §1.7, rows 13-14): our in-dialog requests towards
//! Microsoft go to the proxy of the leg, on a connection we open (or reuse) to its FQDN,
//! with the dialog's Request-URI and Route set unchanged. Towards a carrier they go back on
//! the carrier's own connection when it opened one, else to its Contact.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::table::CallKey;
use super::{settings, Dispatcher, Pending, Resolved, Route};
use crate::call::{LegId, Target};
use crate::health::HostResolver;
use crate::ops::RateLimitedLog;
use crate::sip::Uri;
use crate::transport::{Destination, TransportKind};

/// What to do with a message for a target.
pub(super) enum Path {
    Now(Route),
    Resolve {
        host: String,
        port: u16,
        kind: TransportKind,
        server_name: Option<String>,
    },
    Unroutable,
}

impl Dispatcher {
    pub(super) fn path(&self, key: CallKey, leg: LegId, target: &Target) -> Path {
        let Some(slot) = self.table.get(key) else {
            return Path::Unroutable;
        };
        match target {
            Target::TeamsProxy(index) => proxy_path(slot, *index),
            Target::Dialog { .. } if leg == LegId::Teams => proxy_path(slot, slot.teams_proxy),
            Target::Carrier(index) => {
                let Some(target) = slot.carrier_targets.get(*index) else {
                    return Path::Unroutable;
                };
                let server_name = (target.transport == TransportKind::Tls && !is_ip(&target.host))
                    .then(|| target.host.clone());
                host_path(&target.host, target.port, target.transport, server_name)
            }
            Target::Dialog { uri, transport } => {
                // A carrier that opened its own connection gets our in-dialog requests on
                // it while it is open.
                if let Some(flow) = slot.flow(leg) {
                    if flow.kind.is_stream() && flow.connection.is_some() {
                        return Path::Now(Route::Back(flow.clone()));
                    }
                }
                let Ok(parsed) = Uri::parse(uri) else {
                    return Path::Unroutable;
                };
                let Some(sip) = parsed.as_sip() else {
                    return Path::Unroutable;
                };
                let host = String::from_utf8_lossy(sip.host_unbracketed()).into_owned();
                // The URI's own transport, else the one that reached this peer before.
                let kind = sip
                    .param("transport")
                    .flatten()
                    .and_then(|t| transport_token(t))
                    .or_else(|| slot.sent_kind(leg))
                    .unwrap_or(*transport);
                let port = sip.port.unwrap_or(kind.default_port());
                let server_name =
                    (kind == TransportKind::Tls && !is_ip(&host)).then(|| host.clone());
                host_path(&host, port, kind, server_name)
            }
        }
    }

    /// Look `host` up in a task of its own, its answer queued for the SIP core. `Err` hands
    /// `pending` back when [`MAX_RESOLVING`](super::MAX_RESOLVING) lookups are running.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resolve(
        &self,
        key: CallKey,
        leg: LegId,
        pending: Pending,
        host: String,
        port: u16,
        kind: TransportKind,
        server_name: Option<String>,
    ) -> Result<(), Pending> {
        // The answer's slot is taken now, so the lookup's result always has room.
        let Ok(slot) = self.resolved.clone().try_reserve_owned() else {
            self.resolve_refused.inc();
            if let Some(suppressed) = RESOLVE_REFUSED_LOG.check(&"limit", Instant::now()) {
                tracing::warn!(
                    limit = super::MAX_RESOLVING,
                    suppressed,
                    %host,
                    "too many DNS lookups running; target treated as unresolved"
                );
            }
            return Err(pending);
        };
        let resolver = self.resolver.clone();
        tokio::spawn(async move {
            let addresses = resolver.resolve(&host).await;
            let dest = addresses.first().map(|ip| Destination {
                kind,
                addr: SocketAddr::new(*ip, port),
                server_name,
            });
            slot.send(Resolved {
                call: key,
                leg,
                pending,
                dest,
            });
        });
        Ok(())
    }
}

static RESOLVE_REFUSED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(60));

/// Microsoft's proxy `index` of the call's list, by its FQDN (checked in its certificate).
fn proxy_path(slot: &super::table::Slot, index: usize) -> Path {
    let Some(proxy) = slot
        .proxies
        .get(index)
        .and_then(|id| slot.routing.proxy(*id))
    else {
        return Path::Unroutable;
    };
    let kind = settings::kind_of(proxy.transport);
    let server_name = proxy
        .tls_name
        .clone()
        .or_else(|| (!is_ip(&proxy.host)).then(|| proxy.host.clone()));
    host_path(&proxy.host, proxy.port, kind, server_name)
}

fn transport_token(token: &[u8]) -> Option<TransportKind> {
    [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
        .into_iter()
        .find(|k| token.eq_ignore_ascii_case(k.via_token().as_bytes()))
}

fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

fn host_path(host: &str, port: u16, kind: TransportKind, server_name: Option<String>) -> Path {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Path::Now(Route::To(Destination {
            kind,
            addr: SocketAddr::new(ip, port),
            server_name,
        })),
        Err(_) => Path::Resolve {
            host: bare.to_string(),
            port,
            kind,
            server_name,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_are_sent_at_once_names_are_resolved() {
        assert!(matches!(
            host_path("127.0.0.3", 5061, TransportKind::Tcp, None),
            Path::Now(Route::To(Destination { addr, .. })) if addr.port() == 5061
        ));
        assert!(matches!(
            host_path("[::1]", 5061, TransportKind::Tls, None),
            Path::Now(_)
        ));
        assert!(matches!(
            host_path("sip.pstnhub.microsoft.com", 5061, TransportKind::Tls, None),
            Path::Resolve { .. }
        ));
        assert_eq!(transport_token(b"tcp"), Some(TransportKind::Tcp));
        assert_eq!(transport_token(b"sctp"), None);
    }

    const CONFIG: &str = r#"
[sbc]
base_fqdn = "sbc.example.test"

[tls]
cert_chain = "sbc.pem"
private_key = "sbc.key"

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[teams]
proxies = [{ address = "127.0.0.3:5061", transport = "tcp" }]
allowed_source_cidrs = ["127.0.0.3/32"]
lab_plain_tcp = true

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.2:5060"
allowed_source_cidrs = ["127.0.0.2/32"]

[[tenant]]
name = "acme"
fqdn = "acme.sbc.example.test"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media]
workers = 1

[media.carrier]
bind = "127.0.0.1"
port_min = 41900
port_max = 41909

[media.teams]
bind = "127.0.0.1"
port_min = 41910
port_max = 41919
"#;

    #[tokio::test]
    async fn lookups_beyond_the_limit_are_refused_and_every_answer_has_room() {
        let mut loaded =
            crate::config::parse_str(CONFIG, "test.toml", std::path::Path::new("."), false)
                .unwrap();
        // No call detail record file in the source tree (relative paths resolve against ".").
        loaded.config.cdr.enabled = false;
        let registry = prometheus::Registry::new();
        let local = vec![(TransportKind::Udp, "127.0.0.1:5060".parse().unwrap())];
        let (calls, mut events) = super::super::start(&loaded.config, &registry, local).unwrap();
        let ack = || Pending::Ack {
            msg: bytes::Bytes::from_static(b"ACK"),
        };
        let lookup = |calls: &Dispatcher, host: &str| {
            calls.resolve(
                CallKey(1),
                LegId::Carrier,
                ack(),
                host.to_string(),
                5060,
                TransportKind::Udp,
                None,
            )
        };
        // Every slot but one is held, as by lookups in flight; the last lookup's answer
        // waits in the channel, unread, and still holds its slot.
        let held: Vec<_> = (1..super::super::MAX_RESOLVING)
            .map(|_| calls.resolved.clone().try_reserve_owned().unwrap())
            .collect();
        assert!(lookup(&calls, "127.0.0.7").is_ok());
        assert!(matches!(
            lookup(&calls, "127.0.0.8"),
            Err(Pending::Ack { .. })
        ));
        assert_eq!(calls.resolve_refused.get(), 1);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .expect("the lookup answers")
            .expect("events open");
        match answer {
            super::super::DispatchEvent::Resolved(Resolved { dest, .. }) => assert_eq!(
                dest.map(|d| d.addr),
                Some("127.0.0.7:5060".parse().unwrap())
            ),
            other => panic!("unexpected {other:?}"),
        }
        // Its slot came back with the answer taken.
        assert!(lookup(&calls, "127.0.0.9").is_ok());
        drop(held);
        calls.shutdown();
    }
}
