//! OPTIONS pingers for the Teams proxies and carrier trunks, sending through the SIP core.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::answers::{transport_of, IdentityTemplate};
use super::sip_core::Command;
use super::AppError;
use crate::config::{mapping, Config};
use crate::health::{
    self, DnsResolver, HealthMetrics, OptionsPinger, OptionsSender, PeerBoard, PeerHealth,
    PeerReport, PeerTarget, PingOutcome,
};
use crate::ops::Readiness;
use crate::sip::{self, Message};
use crate::transport::{Destination, TransportKind};

/// [`OptionsSender`] that hands pings to the SIP core and waits for the transaction outcome.
pub(super) struct CoreSender {
    commands: mpsc::Sender<Command>,
    limits: sip::Limits,
    /// Teams proxy name -> TLS name override (a stand-in at an IP address in labs/tests).
    tls_names: HashMap<String, String>,
    /// Where each round trip is noted (the admin API shows it).
    board: Arc<PeerBoard>,
}

impl OptionsSender for CoreSender {
    async fn send_options(
        &self,
        peer: &PeerTarget,
        dest: SocketAddr,
        request: Bytes,
    ) -> PingOutcome {
        let request = match Message::parse(request, &self.limits) {
            Ok(m) => m,
            Err(error) => {
                tracing::error!(%error, peer = %peer.name, "our own OPTIONS does not parse");
                return PingOutcome::TransportFailure;
            }
        };
        let kind = transport_of(peer.transport);
        let server_name = match self.tls_names.get(&peer.name) {
            Some(name) => Some(name.clone()),
            None if kind == TransportKind::Tls
                && peer
                    .host
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_err() =>
            {
                Some(peer.host.clone())
            }
            None => None,
        };
        let (reply, outcome) = oneshot::channel();
        let command = Command::SendOptions {
            dest: Destination {
                kind,
                addr: dest,
                server_name,
            },
            request: Box::new(request),
            reply,
        };
        let sent = Instant::now();
        if self.commands.send(command).await.is_err() {
            return PingOutcome::TransportFailure;
        }
        let outcome = outcome.await.unwrap_or(PingOutcome::TransportFailure);
        if let PingOutcome::Response(_) = outcome {
            self.board.set_rtt(&peer.name, sent.elapsed());
        }
        outcome
    }
}

/// One pinger per Teams proxy and per carrier trunk with `options_ping`; Teams proxies feed
/// `/readyz`.
pub(super) fn start_pingers(
    config: &Config,
    identity: &IdentityTemplate,
    metrics: &HealthMetrics,
    readiness: &Arc<Readiness>,
    board: &Arc<PeerBoard>,
    commands: mpsc::Sender<Command>,
) -> Result<Vec<JoinHandle<()>>, AppError> {
    let resolver = Arc::new(
        DnsResolver::for_servers(&config.sbc.dns_servers)
            .map_err(|e| AppError::Dns(e.to_string()))?,
    );
    let peers = mapping::ping_peers(config);
    let tls_names = peers
        .iter()
        .filter_map(|p| Some((p.target.name.clone(), p.tls_name.clone()?)))
        .collect();
    let sender = Arc::new(CoreSender {
        commands,
        limits: mapping::sip_limits(config),
        tls_names,
        board: board.clone(),
    });
    board.clear();
    let mut tasks = Vec::new();
    for peer in peers {
        let local = identity.for_ping(transport_of(peer.target.transport), peer.is_teams);
        let name = peer.target.name.clone();
        if peer.is_teams {
            readiness.add_teams_proxy(&name);
        }
        let pinger = OptionsPinger::new(
            peer.target,
            local,
            peer.settings,
            metrics.clone(),
            Instant::now(),
        );
        board.add(
            &name,
            PeerReport {
                is_teams: peer.is_teams,
                target: format!("{}:{}", pinger.peer().host, pinger.peer().port),
                transport: pinger.peer().transport.uri_param(),
                health: pinger.health().clone(),
                rtt: None,
            },
        );
        let (status_tx, status_rx) = watch::channel(pinger.health().clone());
        tasks.push(tokio::spawn(health::run_pinger(
            pinger,
            sender.clone(),
            resolver.clone(),
            status_tx,
        )));
        tasks.push(tokio::spawn(follow_peer(
            name,
            peer.is_teams,
            status_rx,
            readiness.clone(),
            board.clone(),
        )));
    }
    Ok(tasks)
}

/// Publish a peer's health on the board and, for a Teams proxy, to `/readyz`.
pub(super) async fn follow_peer(
    name: String,
    is_teams: bool,
    mut status: watch::Receiver<PeerHealth>,
    readiness: Arc<Readiness>,
    board: Arc<PeerBoard>,
) {
    loop {
        let health = status.borrow_and_update().clone();
        board.set_health(&name, &health);
        if is_teams {
            readiness.set_teams_proxy_up(&name, health.is_up());
        }
        if status.changed().await.is_err() {
            if is_teams {
                readiness.set_teams_proxy_up(&name, false);
            }
            return;
        }
    }
}
