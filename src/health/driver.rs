//! Thin async driver around [`OptionsPinger`]: clock, DNS and sending live here, nothing else.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use super::{OptionsPinger, PeerHealth, PeerTarget, PingOutcome};

/// Sends one OPTIONS and reports its outcome. The app implements it with the transport and
/// the transaction layer: open/reuse a connection to `dest` (for TLS, verify the certificate
/// against `peer.host`), run a client transaction with `request`, and resolve with the final
/// status, `Timeout` on Timer F, or `TransportFailure` when connecting or sending fails.
pub trait OptionsSender: Send + Sync + 'static {
    fn send_options(
        &self,
        peer: &PeerTarget,
        dest: SocketAddr,
        request: Bytes,
    ) -> impl Future<Output = PingOutcome> + Send;
}

/// Turns a host (FQDN or IP literal) into addresses, in preference order. Asked again every
/// round so a changed DNS answer is followed (row 8).
pub trait HostResolver: Send + Sync + 'static {
    fn resolve(&self, host: &str) -> impl Future<Output = Vec<IpAddr>> + Send;
}

/// [`HostResolver`] on hickory-resolver (system configuration, hosts file, TTL-respecting cache).
pub struct DnsResolver {
    resolver: TokioResolver,
}

impl DnsResolver {
    /// Resolver from `/etc/resolv.conf` and `/etc/hosts`.
    pub fn from_system() -> Result<Self, hickory_resolver::net::NetError> {
        Ok(DnsResolver {
            resolver: TokioResolver::builder_tokio()?.build()?,
        })
    }

    /// Resolver asking `servers` (UDP, TCP for truncated answers) in order; the system's
    /// when `servers` is empty (`[sbc] dns_servers`). No search domains: proxy and trunk
    /// names are fully qualified.
    pub fn for_servers(servers: &[SocketAddr]) -> Result<Self, hickory_resolver::net::NetError> {
        if servers.is_empty() {
            return Self::from_system();
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = server.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(server.ip(), true, connections)
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let resolver =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).build()?;
        Ok(DnsResolver { resolver })
    }

    pub fn new(resolver: TokioResolver) -> Self {
        DnsResolver { resolver }
    }
}

impl HostResolver for DnsResolver {
    async fn resolve(&self, host: &str) -> Vec<IpAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return vec![ip];
        }
        match self.resolver.lookup_ip(host).await {
            Ok(answer) => answer.iter().collect(),
            Err(error) => {
                tracing::warn!(%host, %error, "OPTIONS peer did not resolve");
                Vec::new()
            }
        }
    }
}

/// Addresses of one resolution tried in one round when connecting fails.
const MAX_ADDRESSES_PER_ROUND: usize = 3;

/// Ping one peer forever: at each due time resolve its host afresh, send the OPTIONS to the
/// first address (the next ones only if it cannot be reached), feed the outcome to the state machine and publish the peer's health on
/// `status` (routing reads it from a `watch::Receiver`). Stop it by aborting its task.
pub async fn run_pinger<S: OptionsSender, R: HostResolver>(
    mut pinger: OptionsPinger,
    sender: Arc<S>,
    resolver: Arc<R>,
    status: watch::Sender<PeerHealth>,
) {
    status.send_replace(pinger.health().clone());
    loop {
        if let Some(ping) = pinger.poll_ping(TokioInstant::now().into_std()) {
            let peer = pinger.peer().clone();
            let addresses = resolver.resolve(&peer.host).await;
            let mut outcome = PingOutcome::ResolveFailure;
            // Next address only when this one cannot be reached at all; a timeout already
            // took Timer F and the next round will resolve again.
            for (attempt, ip) in addresses
                .into_iter()
                .take(MAX_ADDRESSES_PER_ROUND)
                .enumerate()
            {
                let dest = SocketAddr::new(ip, peer.port);
                // The sender's own timeout is Timer F; this only guards a sender that never
                // answers.
                let limit = pinger
                    .poll_timeout()
                    .saturating_duration_since(TokioInstant::now().into_std());
                let request = if attempt == 0 {
                    ping.bytes.clone()
                } else {
                    pinger.retry(&ping).bytes
                };
                let send = sender.send_options(&peer, dest, request);
                outcome = tokio::time::timeout(limit, send)
                    .await
                    .unwrap_or(PingOutcome::Timeout);
                if outcome != PingOutcome::TransportFailure {
                    break;
                }
            }
            let now = TokioInstant::now().into_std();
            if pinger.on_outcome(now, &ping.call_id, outcome) {
                tracing::info!(
                    peer = %peer.name,
                    state = ?pinger.health().state,
                    last_status = ?pinger.health().last_status,
                    ?outcome,
                    "OPTIONS peer state changed"
                );
            }
            status.send_replace(pinger.health().clone());
        }
        tokio::time::sleep_until(TokioInstant::from_std(pinger.poll_timeout())).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use prometheus::Registry;
    use tokio::sync::mpsc;

    use super::*;
    use crate::health::{HealthMetrics, PeerState, PingerSettings, SbcIdentity, SipTransport};

    /// Answers with a different loopback address each round, like a DNS answer that changes.
    struct ChangingDns {
        round: Mutex<u8>,
    }

    impl HostResolver for ChangingDns {
        async fn resolve(&self, host: &str) -> Vec<IpAddr> {
            assert_eq!(host, "sip.pstnhub.example.test");
            let mut round = self.round.lock().unwrap();
            *round += 1;
            vec![IpAddr::from([127, 0, 0, *round])]
        }
    }

    /// Records each send with the health published before it, answers from a script.
    struct ScriptedSender {
        outcomes: Mutex<Vec<PingOutcome>>,
        health: watch::Receiver<PeerHealth>,
        sends: mpsc::UnboundedSender<(SocketAddr, Bytes, (PeerState, Option<u16>))>,
    }

    impl OptionsSender for ScriptedSender {
        async fn send_options(
            &self,
            _: &PeerTarget,
            dest: SocketAddr,
            request: Bytes,
        ) -> PingOutcome {
            let state = {
                let health = self.health.borrow();
                (health.state, health.last_status)
            };
            self.sends.send((dest, request, state)).unwrap();
            let mut outcomes = self.outcomes.lock().unwrap();
            if outcomes.is_empty() {
                PingOutcome::Response(200)
            } else {
                outcomes.remove(0)
            }
        }
    }

    fn pinger(interval: Duration) -> OptionsPinger {
        OptionsPinger::new(
            PeerTarget {
                name: "teams-sip".to_string(),
                host: "sip.pstnhub.example.test".to_string(),
                port: 5061,
                transport: SipTransport::Tls,
            },
            SbcIdentity {
                fqdn: "sbc1.example.net".to_string(),
                port: 5061,
                transport: SipTransport::Tls,
                product: crate::health::ProductHeaders::microsoft(
                    "ExampleCorp",
                    "RustSBC",
                    "0.1.0",
                ),
            },
            PingerSettings {
                interval,
                failures_before_down: 1,
            },
            HealthMetrics::register(&Registry::new()).unwrap(),
            TokioInstant::now().into_std(),
        )
    }

    #[tokio::test]
    async fn row8_each_round_resolves_again_and_follows_the_new_address() {
        let pinger = pinger(Duration::from_millis(40));
        let (status_tx, status_rx) = watch::channel(pinger.health().clone());
        let (sends_tx, mut sends_rx) = mpsc::unbounded_channel();
        let sender = Arc::new(ScriptedSender {
            outcomes: Mutex::new(vec![
                PingOutcome::Response(200),
                PingOutcome::Timeout,
                PingOutcome::Response(503),
            ]),
            health: status_rx.clone(),
            sends: sends_tx,
        });
        let resolver = Arc::new(ChangingDns {
            round: Mutex::new(0),
        });
        let task = tokio::spawn(run_pinger(pinger, sender, resolver, status_tx));
        let mut seen = Vec::new();
        for _ in 0..4 {
            let send = tokio::time::timeout(Duration::from_secs(10), sends_rx.recv())
                .await
                .expect("a ping within 10 s")
                .expect("sender alive");
            seen.push(send);
        }
        task.abort();
        let dests: Vec<SocketAddr> = seen.iter().map(|(d, _, _)| *d).collect();
        assert_eq!(
            dests,
            vec![
                "127.0.0.1:5061".parse().unwrap(),
                "127.0.0.2:5061".parse().unwrap(),
                "127.0.0.3:5061".parse().unwrap(),
                "127.0.0.4:5061".parse().unwrap(),
            ],
            "a changed DNS answer is followed on the next ping"
        );
        // Health before each send reflects the previous outcome: 200 -> up, timeout -> down,
        // 503 -> up again (any final response means the peer is alive).
        let states: Vec<(PeerState, Option<u16>)> = seen.iter().map(|(_, _, s)| *s).collect();
        assert_eq!(
            states,
            vec![
                (PeerState::Unknown, None),
                (PeerState::Up, Some(200)),
                (PeerState::Down, Some(200)),
                (PeerState::Up, Some(503)),
            ]
        );
        let call_ids: std::collections::HashSet<Vec<u8>> = seen
            .iter()
            .map(|(_, bytes, _)| {
                let text = String::from_utf8_lossy(bytes).to_string();
                let line = text
                    .lines()
                    .find(|l| l.starts_with("Call-ID:"))
                    .unwrap()
                    .to_string();
                line.into_bytes()
            })
            .collect();
        assert_eq!(call_ids.len(), 4, "fresh Call-ID per ping");
    }

    #[tokio::test]
    async fn unreachable_first_address_falls_back_to_the_next_in_the_same_round() {
        struct TwoAddresses;
        impl HostResolver for TwoAddresses {
            async fn resolve(&self, _: &str) -> Vec<IpAddr> {
                vec![IpAddr::from([127, 0, 0, 8]), IpAddr::from([127, 0, 0, 9])]
            }
        }
        let pinger = pinger(Duration::from_secs(60));
        let (status_tx, mut status_rx) = watch::channel(pinger.health().clone());
        let (sends_tx, mut sends_rx) = mpsc::unbounded_channel();
        let sender = Arc::new(ScriptedSender {
            outcomes: Mutex::new(vec![
                PingOutcome::TransportFailure,
                PingOutcome::Response(200),
            ]),
            health: status_rx.clone(),
            sends: sends_tx,
        });
        let task = tokio::spawn(run_pinger(
            pinger,
            sender,
            Arc::new(TwoAddresses),
            status_tx,
        ));
        let up = tokio::time::timeout(
            Duration::from_secs(10),
            status_rx.wait_for(|h| h.state == PeerState::Up),
        )
        .await
        .expect("up within 10 s")
        .map(|h| h.consecutive_failures);
        task.abort();
        assert_eq!(
            up.ok(),
            Some(0),
            "the failed first address is not a failed ping"
        );
        let first = sends_rx.try_recv().unwrap();
        let second = sends_rx.try_recv().unwrap();
        assert_eq!(first.0, "127.0.0.8:5061".parse().unwrap());
        assert_eq!(second.0, "127.0.0.9:5061".parse().unwrap());
        let call_id = |bytes: &Bytes| {
            let text = String::from_utf8_lossy(bytes).to_string();
            text.lines()
                .find(|l| l.starts_with("Call-ID:"))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            call_id(&first.1),
            call_id(&second.1),
            "the same ping, not a new one"
        );
        assert_ne!(
            first.1, second.1,
            "a new branch for the next address (RFC 3263)"
        );
    }

    #[tokio::test]
    async fn unresolvable_host_marks_the_peer_down() {
        struct NoDns;
        impl HostResolver for NoDns {
            async fn resolve(&self, _: &str) -> Vec<IpAddr> {
                Vec::new()
            }
        }
        let pinger = pinger(Duration::from_secs(60));
        let (status_tx, mut status_rx) = watch::channel(pinger.health().clone());
        let (sends_tx, mut sends_rx) = mpsc::unbounded_channel();
        let sender = Arc::new(ScriptedSender {
            outcomes: Mutex::new(Vec::new()),
            health: status_rx.clone(),
            sends: sends_tx,
        });
        let task = tokio::spawn(run_pinger(pinger, sender, Arc::new(NoDns), status_tx));
        let down = tokio::time::timeout(
            Duration::from_secs(10),
            status_rx.wait_for(|h| h.state == PeerState::Down),
        )
        .await
        .expect("down within 10 s")
        .map(|h| h.consecutive_failures);
        task.abort();
        assert_eq!(down.ok(), Some(1));
        assert!(
            sends_rx.try_recv().is_err(),
            "nothing sent without an address"
        );
    }

    #[tokio::test]
    async fn dns_resolver_passes_ip_literals_and_resolves_localhost() {
        let dns = DnsResolver::from_system().expect("system resolver configuration");
        assert_eq!(
            dns.resolve("127.0.0.1").await,
            vec![IpAddr::from([127, 0, 0, 1])]
        );
        assert_eq!(
            dns.resolve("[::1]").await,
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        let local = tokio::time::timeout(Duration::from_secs(10), dns.resolve("localhost"))
            .await
            .expect("hosts-file lookup within 10 s");
        assert!(
            local.iter().any(IpAddr::is_loopback),
            "localhost -> {local:?}"
        );
    }
}
