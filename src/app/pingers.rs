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
    self, DnsResolver, HealthMetrics, OptionsPinger, OptionsSender, PeerHealth, PeerTarget,
    PingOutcome,
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
        if self.commands.send(command).await.is_err() {
            return PingOutcome::TransportFailure;
        }
        outcome.await.unwrap_or(PingOutcome::TransportFailure)
    }
}

/// One pinger per Teams proxy and per carrier trunk with `options_ping`; Teams proxies feed
/// `/readyz`.
pub(super) fn start_pingers(
    config: &Config,
    identity: &IdentityTemplate,
    metrics: &HealthMetrics,
    readiness: &Arc<Readiness>,
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
    });
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
        let (status_tx, status_rx) = watch::channel(pinger.health().clone());
        tasks.push(tokio::spawn(health::run_pinger(
            pinger,
            sender.clone(),
            resolver.clone(),
            status_tx,
        )));
        if peer.is_teams {
            tasks.push(tokio::spawn(follow_teams_proxy(
                name,
                status_rx,
                readiness.clone(),
            )));
        }
    }
    Ok(tasks)
}

pub(super) async fn follow_teams_proxy(
    name: String,
    mut status: watch::Receiver<PeerHealth>,
    readiness: Arc<Readiness>,
) {
    loop {
        let up = status.borrow_and_update().is_up();
        readiness.set_teams_proxy_up(&name, up);
        if status.changed().await.is_err() {
            readiness.set_teams_proxy_up(&name, false);
            return;
        }
    }
}
